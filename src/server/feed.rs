//! The live feed every WebSocket client reads: one broadcast of ready-made JSON texts (serialised once,
//! shared by every client), and the last events of each live, kept so that a new client starts with
//! the recent chat. A snapshot and a subscription are taken under one lock, so a client neither misses
//! nor repeats an event between the two.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::Utf8Bytes;

/// Events of each live kept in memory for new clients and for `GET /events`.
pub const RECENT_PER_LIVE: usize = 100;

/// How many messages a client may fall behind before it is dropped as too slow.
pub const CLIENT_BACKLOG: usize = 4096;

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

/// What a new client receives before the live feed: the recent events of every live, oldest first.
pub struct Snapshot {
    pub recent: Vec<Arc<FeedItem>>,
    pub receiver: broadcast::Receiver<Arc<FeedItem>>,
}

pub struct Feed {
    sender: broadcast::Sender<Arc<FeedItem>>,
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

    /// Publishes a batch of events of one live under one lock.
    pub fn publish_all(&self, items: impl IntoIterator<Item = FeedItem>) {
        let mut recent = lock(&self.recent);
        for item in items {
            let item = Arc::new(item);
            if let FeedKind::Event { live, .. } = &item.kind {
                let ring = recent.entry(Arc::clone(live)).or_default();
                if ring.len() == RECENT_PER_LIVE {
                    ring.pop_front();
                }
                ring.push_back(Arc::clone(&item));
            }
            let _ = self.sender.send(item);
        }
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
        assert!(matches!(next.kind, FeedKind::Event { msg_id: 2, .. }));
        assert!(snap.receiver.try_recv().is_err());
    }
}
