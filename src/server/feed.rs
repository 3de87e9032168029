//! The live feed every WebSocket client reads: one broadcast of batches of ready-made messages (each
//! serialised and framed once, as JSON text and as the WebSocket frame that carries it, and shared by
//! every client), and the last events of each live, kept so that a new client starts with the recent
//! chat. A snapshot and a subscription are taken under one lock, so a client neither misses nor repeats
//! an event between the two.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::Utf8Bytes;
use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

/// Events of each live kept in memory for new clients and for `GET /events`.
pub const RECENT_PER_LIVE: usize = 100;

/// How many published batches (one per push frame from TikTok, or one status or sale message) a client
/// may fall behind before it is dropped as too slow: several seconds of a busy live. A batch is freed
/// once every client has it, so the backlog holds memory only for clients that lag.
pub const CLIENT_BACKLOG: usize = 512;

/// What a feed message is, for subscriptions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedKind {
    /// An event of a live, as `watch` prints it; `type_name` is its `type`.
    Event {
        live: Arc<str>,
        type_name: &'static str,
        msg_id: u64,
        ts_ms: i64,
    },
    /// `{"type": "status", "lives": [...]}`.
    Status,
    /// `{"type": "sale", "sale": {...}}`.
    Sale,
}

/// One message of the feed: its kind and its JSON text.
#[derive(Debug)]
pub struct FeedItem {
    pub kind: FeedKind,
    pub text: Utf8Bytes,
}

/// Messages published together, and the WebSocket frames that carry them, back to back: a client that
/// wants them all writes `frames` to its socket as it is, with one system call.
#[derive(Debug)]
pub struct FeedBatch {
    pub items: Vec<Arc<FeedItem>>,
    pub frames: Bytes,
    /// Where each item's frame ends in `frames`.
    ends: Vec<usize>,
}

impl FeedBatch {
    fn new(items: Vec<Arc<FeedItem>>) -> FeedBatch {
        let size = items.iter().map(|i| i.text.len() + 10).sum();
        let mut frames = Vec::with_capacity(size);
        let mut ends = Vec::with_capacity(items.len());
        for item in &items {
            write_text_frame(&mut frames, item.text.as_bytes());
            ends.push(frames.len());
        }
        FeedBatch {
            items,
            frames: frames.into(),
            ends,
        }
    }

    /// The frame of the `i`th item.
    pub fn frame(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.frames[start..self.ends[i]]
    }
}

/// Appends `text` as one unfragmented text frame, with tungstenite's own header encoding; unmasked,
/// since a server does not mask what it sends (RFC 6455 section 5.2).
fn write_text_frame(out: &mut Vec<u8>, text: &[u8]) {
    let header = FrameHeader {
        opcode: OpCode::Data(Data::Text),
        ..FrameHeader::default()
    };
    // Writing to a Vec cannot fail.
    let _ = header.format(text.len() as u64, out);
    out.extend_from_slice(text);
}

/// What a new client receives before the live feed: the recent events of every live, oldest first.
pub struct Snapshot {
    pub recent: Vec<Arc<FeedItem>>,
    pub receiver: broadcast::Receiver<Arc<FeedBatch>>,
}

pub struct Feed {
    sender: broadcast::Sender<Arc<FeedBatch>>,
    recent: Mutex<HashMap<Arc<str>, VecDeque<Arc<FeedItem>>>>,
    /// The `updated` time last announced for each sale, so that a change is announced once.
    announced_sales: Mutex<HashMap<i64, i64>>,
}

impl Default for Feed {
    fn default() -> Self {
        let (sender, _) = broadcast::channel(CLIENT_BACKLOG);
        Feed {
            sender,
            recent: Mutex::new(HashMap::new()),
            announced_sales: Mutex::new(HashMap::new()),
        }
    }
}

impl Feed {
    /// Publishes an item; events are also kept among their live's recent ones.
    pub fn publish(&self, item: FeedItem) {
        self.publish_all(std::iter::once(item));
    }

    /// Publishes items as one batch, framed here (outside the lock); events are also kept among
    /// their live's recent ones.
    pub fn publish_all(&self, items: impl IntoIterator<Item = FeedItem>) {
        let items: Vec<Arc<FeedItem>> = items.into_iter().map(Arc::new).collect();
        if items.is_empty() {
            return;
        }
        let batch = Arc::new(FeedBatch::new(items));
        let mut recent = lock(&self.recent);
        for item in &batch.items {
            if let FeedKind::Event { live, .. } = &item.kind {
                let ring = recent.entry(Arc::clone(live)).or_default();
                if ring.len() == RECENT_PER_LIVE {
                    ring.pop_front();
                }
                ring.push_back(Arc::clone(item));
            }
        }
        let _ = self.sender.send(batch);
    }

    /// The recent events of every live and a receiver of everything published after them.
    pub fn snapshot(&self) -> Snapshot {
        let recent = lock(&self.recent);
        let receiver = self.sender.subscribe();
        let mut lives: Vec<_> = recent.iter().collect();
        lives.sort_by(|a, b| a.0.cmp(b.0));
        Snapshot {
            recent: lives
                .into_iter()
                .flat_map(|(_, ring)| ring.iter().cloned())
                .collect(),
            receiver,
        }
    }

    /// The recent events of one live, oldest first.
    pub fn recent_of(&self, live: &str) -> Vec<Arc<FeedItem>> {
        lock(&self.recent)
            .get(live)
            .map(|ring| ring.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Announces a sale unless this version of it (its `updated` time) was announced already.
    pub fn announce_sale(&self, sale: &crate::orders::Sale) {
        {
            let mut announced = lock(&self.announced_sales);
            if announced.get(&sale.id) == Some(&sale.updated_ms) {
                return;
            }
            announced.insert(sale.id, sale.updated_ms);
        }
        let text = serde_json::json!({"type": "sale", "sale": sale}).to_string();
        self.publish(FeedItem {
            kind: FeedKind::Sale,
            text: text.into(),
        });
    }

    pub fn clients(&self) -> usize {
        self.sender.receiver_count()
    }
}

/// A poisoned lock only means a thread panicked while holding it; the data is still usable.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(live: &str, msg_id: u64) -> FeedItem {
        FeedItem {
            kind: FeedKind::Event {
                live: live.into(),
                type_name: "chat",
                msg_id,
                ts_ms: 0,
            },
            text: format!("{{\"msg_id\":\"{msg_id}\"}}").into(),
        }
    }

    #[test]
    fn keeps_the_last_hundred_events_of_each_live() {
        let feed = Feed::default();
        for id in 1..=150 {
            feed.publish(event("a", id));
        }
        feed.publish(event("b", 1000));
        let a = feed.recent_of("a");
        assert_eq!(a.len(), RECENT_PER_LIVE);
        assert!(matches!(a[0].kind, FeedKind::Event { msg_id: 51, .. }));
        assert_eq!(feed.snapshot().recent.len(), RECENT_PER_LIVE + 1);
    }

    #[test]
    fn a_snapshot_is_followed_by_exactly_what_comes_after_it() {
        let feed = Feed::default();
        feed.publish(event("a", 1));
        let mut snap = feed.snapshot();
        feed.publish(event("a", 2));
        assert_eq!(snap.recent.len(), 1);
        let next = snap.receiver.try_recv().unwrap();
        assert_eq!(next.items.len(), 1);
        assert!(matches!(
            next.items[0].kind,
            FeedKind::Event { msg_id: 2, .. }
        ));
        assert!(snap.receiver.try_recv().is_err());
    }

    #[test]
    fn a_batch_frames_each_item_as_a_websocket_text_frame() {
        let long = "y".repeat(300);
        let huge = "z".repeat(70_000);
        let feed = Feed::default();
        let mut receiver = feed.snapshot().receiver;
        feed.publish_all(["hi", long.as_str(), huge.as_str()].map(|text| FeedItem {
            kind: FeedKind::Sale,
            text: text.to_owned().into(),
        }));
        let batch = receiver.try_recv().unwrap();
        assert_eq!(batch.frame(0), b"\x81\x02hi");
        assert_eq!(&batch.frame(1)[..4], &[0x81, 126, 0x01, 0x2c]);
        assert_eq!(&batch.frame(1)[4..], long.as_bytes());
        assert_eq!(&batch.frame(2)[..2], &[0x81, 127]);
        assert_eq!(batch.frame(2)[2..10], (huge.len() as u64).to_be_bytes());
        assert_eq!(&batch.frame(2)[10..], huge.as_bytes());
        assert_eq!(
            batch.frames.len(),
            (2 + 2) + (4 + 300) + (10 + 70_000),
            "the frames back to back, nothing else"
        );
        // tungstenite reads the same bytes back as the three texts.
        let mut reader = tokio_tungstenite::tungstenite::protocol::WebSocket::from_raw_socket(
            std::io::Cursor::new(batch.frames.to_vec()),
            tokio_tungstenite::tungstenite::protocol::Role::Client,
            None,
        );
        for want in ["hi", long.as_str(), huge.as_str()] {
            let got = reader.read().unwrap();
            assert_eq!(got.to_text().unwrap(), want);
        }
    }
}
