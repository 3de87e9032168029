//! The WebSocket feed: the upgrade handshake (done here, on the raw hyper request, so that every
//! client writes the feed's ready-made frames to its socket as they are), then per client: the status,
//! the recent events, `synced`, and everything live. A client that falls too far behind is closed with
//! a reason rather than buffered without bound; shutdown closes every client with 1001.

use std::io::IoSlice;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::io::AsyncWriteExt;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use super::AppState;
use super::api::{ApiError, error_response};
use super::feed::{FeedBatch, FeedItem, FeedKind};

/// A client whose socket takes longer than this to accept what it is sent is dropped.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client being dropped has to read what it was sent and the close frame.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// Bytes written to one client in one round, when it has a backlog of batches, before it goes back
/// to reading what it sends and to the shutdown signal.
const WRITE_BATCH: usize = 256 << 10;
/// Batches in one round at most (one `writev` takes up to 1,024 buffers).
const MAX_SLICES: usize = 256;

/// True for a request asking for a WebSocket upgrade.
pub fn is_upgrade(req: &Request<Incoming>) -> bool {
    let has = |name: header::HeaderName, value: &str| {
        req.headers().get_all(name).iter().any(|v| {
            v.to_str()
                .map(|v| v.split(',').any(|p| p.trim().eq_ignore_ascii_case(value)))
                .unwrap_or(false)
        })
    };
    has(header::CONNECTION, "upgrade") && has(header::UPGRADE, "websocket")
}

/// Answers an upgrade request: 101 and a feed client, or an error response.
pub fn upgrade(mut req: Request<Incoming>, state: Arc<AppState>) -> warp::reply::Response {
    if req.method() != hyper::Method::GET {
        return error_response(&ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "a WebSocket upgrade is a GET",
        ));
    }
    let token = super::api::query_param(req.uri().query().unwrap_or(""), "token");
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if let Err(err) = state.auth.check(bearer.as_deref(), token.as_deref()) {
        return error_response(&err);
    }
    if req.headers().get(header::SEC_WEBSOCKET_VERSION) != Some(&HeaderValue::from_static("13")) {
        return error_response(&ApiError::bad_request("Sec-WebSocket-Version must be 13"));
    }
    let Some(key) = req.headers().get(header::SEC_WEBSOCKET_KEY).cloned() else {
        return error_response(&ApiError::bad_request("Sec-WebSocket-Key is missing"));
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                // Clients send little (a subscription), so a small read buffer: 500 clients with the
                // default 128 KiB each would hold 64 MB for nothing.
                let config = WebSocketConfig::default()
                    .read_buffer_size(4 << 10)
                    .max_message_size(Some(64 << 10))
                    .max_frame_size(Some(64 << 10))
                    .write_buffer_size(16 << 10)
                    .max_write_buffer_size(4 << 20);
                let socket = WebSocketStream::from_raw_socket(
                    TokioIo::new(upgraded),
                    Role::Server,
                    Some(config),
                )
                .await;
                serve_client(socket, state).await;
            }
            Err(err) => tracing::debug!(%err, "WebSocket upgrade failed"),
        }
    });
    let mut response = warp::reply::Response::default();
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(accept) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) {
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    response
}

/// What a client asked to receive: `{"subscribe": ["chat", ...], "live": "user"}`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Subscription {
    subscribe: Option<Vec<String>>,
    live: Option<String>,
}

impl Subscription {
    fn wants_everything(&self) -> bool {
        self.subscribe.is_none() && self.live.is_none()
    }

    fn wants(&self, item: &FeedItem) -> bool {
        match &item.kind {
            FeedKind::Event {
                live, type_name, ..
            } => {
                self.live.as_deref().is_none_or(|l| l == &**live)
                    && self
                        .subscribe
                        .as_ref()
                        .is_none_or(|types| types.iter().any(|t| t == type_name))
            }
            FeedKind::Status | FeedKind::Sale => true,
        }
    }
}

enum Close {
    /// The client left.
    Gone,
    /// Close with this code and reason.
    With(CloseCode, &'static str),
}

async fn serve_client<S>(mut socket: WebSocketStream<S>, state: Arc<AppState>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut shutdown = state.shutdown.clone();
    let status = super::lives::status_message(&state.lives.statuses().await);
    let snapshot = state.feed.snapshot();
    let mut receiver = snapshot.receiver;
    let mut subscription = Subscription::default();
    // A filtered client's frames, copied out of the shared batches.
    let mut picked = Vec::new();
    // The rest of a frame cut by a write that timed out: it goes before the close frame.
    let mut unsent = Vec::new();
    let hello = async {
        socket.feed(Message::Text(status.into())).await?;
        for item in &snapshot.recent {
            socket.feed(Message::Text(item.text.clone())).await?;
        }
        socket
            .send(Message::Text(Utf8Bytes::from_static(
                r#"{"type":"synced"}"#,
            )))
            .await
    };
    let close = match tokio::time::timeout(SEND_TIMEOUT, hello).await {
        Ok(Ok(())) => loop {
            tokio::select! {
                biased;
                _ = shutdown.changed() => break Close::With(CloseCode::Away, "the server is shutting down"),
                incoming = socket.next() => match incoming {
                    Some(Ok(Message::Text(text))) => match serde_json::from_str::<Subscription>(&text) {
                        Ok(wanted) => subscription = wanted,
                        Err(err) => {
                            let reply = serde_json::json!({"type": "error", "error": {"code": "bad_request", "message": format!("not a subscription: {err}")}});
                            if socket.send(Message::Text(reply.to_string().into())).await.is_err() {
                                break Close::Gone;
                            }
                        }
                    },
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break Close::Gone,
                    Some(Ok(_)) => {}
                },
                received = receiver.recv() => {
                    let first = match received {
                        Ok(batch) => batch,
                        Err(RecvError::Lagged(_)) => break Close::With(CloseCode::Again, "too slow: the feed got too far ahead of this client"),
                        Err(RecvError::Closed) => break Close::With(CloseCode::Away, "the server is shutting down"),
                    };
                    let deadline = tokio::time::Instant::now() + SEND_TIMEOUT;
                    match write_round(&mut socket, first, &mut receiver, &subscription, &mut picked, deadline).await {
                        Ok(Round::Written) => {}
                        Ok(Round::Lagged) => break Close::With(CloseCode::Again, "too slow: the feed got too far ahead of this client"),
                        Err(Stop::Gone) => break Close::Gone,
                        Err(Stop::TimedOut(rest)) => {
                            unsent = rest;
                            break Close::With(CloseCode::Again, "too slow: the client stopped reading");
                        }
                    }
                }
            }
        },
        Ok(Err(_)) => Close::Gone,
        Err(_) => Close::With(CloseCode::Again, "too slow: the client stopped reading"),
    };
    if let Close::With(code, reason) = close {
        tracing::debug!(%reason, "closing a WebSocket client");
        // A client dropped as too slow no longer counts, nor holds the feed's backlog, while it has
        // time to read its close frame; at shutdown the server waits until no client counts, so a
        // client stays counted until its close frame is out.
        let receiver = (code == CloseCode::Away).then_some(receiver);
        let frame = CloseFrame {
            code,
            reason: Utf8Bytes::from_static(reason),
        };
        // A slow client that still reads gets the close frame after what it was sent.
        let goodbye = async {
            socket.get_mut().write_all(&unsent).await?;
            socket
                .send(Message::Close(Some(frame)))
                .await
                .map_err(std::io::Error::other)
        };
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, goodbye).await;
        drop(receiver);
    }
}

/// How a write round ended.
enum Round {
    Written,
    /// Written, but the client had fallen more than the feed's backlog behind.
    Lagged,
}

/// Why a write round stopped.
enum Stop {
    /// The connection failed.
    Gone,
    /// The deadline passed; the rest of the frame being written, if one was cut.
    TimedOut(Vec<u8>),
}

/// Writes `first` and the batches queued after it (up to [`WRITE_BATCH`] bytes) to the client, by
/// `deadline`, in as few system calls as the socket allows. Whatever tungstenite still holds (a pong,
/// an error reply) goes out whole first; then the feed's frames are written to the socket as they are:
/// the shared bytes when the client wants every message, else the ones it wants, copied together into
/// `picked`. Each `write` either writes or does nothing, so a timeout knows exactly what is left.
async fn write_round<S>(
    socket: &mut WebSocketStream<S>,
    first: Arc<FeedBatch>,
    receiver: &mut tokio::sync::broadcast::Receiver<Arc<FeedBatch>>,
    subscription: &Subscription,
    picked: &mut Vec<u8>,
    deadline: tokio::time::Instant,
) -> Result<Round, Stop>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    match tokio::time::timeout_at(deadline, socket.flush()).await {
        Ok(Ok(())) => {}
        Ok(Err(_)) => return Err(Stop::Gone),
        Err(_) => return Err(Stop::TimedOut(Vec::new())),
    }
    // A client that was slow to wake finds several batches waiting: they go out together.
    let mut lagged = false;
    let mut batches = vec![first];
    let mut queued = batches[0].frames.len();
    while queued < WRITE_BATCH && batches.len() < MAX_SLICES {
        match receiver.try_recv() {
            Ok(batch) => {
                queued += batch.frames.len();
                batches.push(batch);
            }
            Err(TryRecvError::Lagged(_)) => {
                lagged = true;
                break;
            }
            Err(_) => break,
        }
    }
    let slices: Vec<&[u8]> = if subscription.wants_everything() {
        batches.iter().map(|b| &b.frames[..]).collect()
    } else {
        picked.clear();
        for batch in &batches {
            for (i, item) in batch.items.iter().enumerate() {
                if subscription.wants(item) {
                    picked.extend_from_slice(batch.frame(i));
                }
            }
        }
        vec![&picked[..]]
    };
    let mut io_slices: Vec<IoSlice<'_>> = slices.iter().map(|s| IoSlice::new(s)).collect();
    let mut unwritten = &mut io_slices[..];
    // Drops the empty slices in front, so that writing nothing means a closed socket.
    IoSlice::advance_slices(&mut unwritten, 0);
    let io = socket.get_mut();
    while !unwritten.is_empty() {
        match tokio::time::timeout_at(deadline, io.write_vectored(unwritten)).await {
            Ok(Ok(n)) if n > 0 => IoSlice::advance_slices(&mut unwritten, n),
            Ok(_) => return Err(Stop::Gone),
            Err(_) => {
                return Err(Stop::TimedOut(
                    unwritten.iter().flat_map(|s| s.iter()).copied().collect(),
                ));
            }
        }
    }
    match tokio::time::timeout_at(deadline, io.flush()).await {
        Ok(Ok(())) if lagged => Ok(Round::Lagged),
        Ok(Ok(())) => Ok(Round::Written),
        Ok(Err(_)) => Err(Stop::Gone),
        Err(_) => Err(Stop::TimedOut(Vec::new())),
    }
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use super::*;
    use crate::server::feed::Feed;

    /// A socket that takes at most `per_call` bytes per write, across buffers, and after `stall_after`
    /// bytes takes nothing more (a client that stopped reading).
    struct Trickle {
        written: Vec<u8>,
        per_call: usize,
        stall_after: usize,
        vectored_calls: usize,
    }

    impl tokio::io::AsyncRead for Trickle {
        fn poll_read(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            _: &mut tokio::io::ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            Poll::Pending
        }
    }

    impl tokio::io::AsyncWrite for Trickle {
        fn poll_write(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            self.poll_write_vectored(cx, &[IoSlice::new(buf)])
        }

        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<std::io::Result<usize>> {
            let room = self
                .per_call
                .min(self.stall_after.saturating_sub(self.written.len()));
            if room == 0 {
                return Poll::Pending;
            }
            self.vectored_calls += 1;
            let mut taken = 0;
            for buf in bufs {
                let take = buf.len().min(room - taken);
                self.written.extend_from_slice(&buf[..take]);
                taken += take;
                if taken == room {
                    break;
                }
            }
            Poll::Ready(Ok(taken))
        }

        fn is_write_vectored(&self) -> bool {
            true
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    fn item(type_name: &'static str, text: String) -> FeedItem {
        FeedItem {
            kind: FeedKind::Event {
                live: "shop".into(),
                type_name,
                msg_id: 1,
                ts_ms: 0,
            },
            text: text.into(),
        }
    }

    /// Three batches published before the round starts, and what every client should receive.
    fn three_batches(feed: &Feed) -> Vec<Arc<FeedBatch>> {
        let mut receiver = feed.snapshot().receiver;
        for b in 0..3 {
            feed.publish_all((0..4).map(|i| {
                let kind = if i % 2 == 0 { "chat" } else { "like" };
                item(
                    kind,
                    format!(
                        "{{\"batch\":{b},\"i\":{i},\"pad\":\"{}\"}}",
                        "p".repeat(40 * i)
                    ),
                )
            }));
        }
        (0..3).map(|_| receiver.try_recv().unwrap()).collect()
    }

    async fn round(
        socket: Trickle,
        subscription: Subscription,
    ) -> (Result<Round, Stop>, Trickle, Vec<Arc<FeedBatch>>) {
        let feed = Feed::default();
        let mut receiver = feed.snapshot().receiver;
        let batches = three_batches(&feed);
        let mut socket = WebSocketStream::from_raw_socket(socket, Role::Server, None).await;
        let first = receiver.recv().await.unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_millis(200);
        let result = write_round(
            &mut socket,
            first,
            &mut receiver,
            &subscription,
            &mut Vec::new(),
            deadline,
        )
        .await;
        (result, socket.into_inner(), batches)
    }

    fn trickle(per_call: usize, stall_after: usize) -> Trickle {
        Trickle {
            written: Vec::new(),
            per_call,
            stall_after,
            vectored_calls: 0,
        }
    }

    #[tokio::test]
    async fn a_round_writes_every_waiting_batch_whole_through_partial_writes() {
        let (result, socket, batches) =
            round(trickle(37, usize::MAX), Subscription::default()).await;
        assert!(matches!(result, Ok(Round::Written)));
        let all: Vec<u8> = batches.iter().flat_map(|b| b.frames.to_vec()).collect();
        assert_eq!(socket.written, all);
        // Several buffers per call: fewer calls than one per batch per 37 bytes.
        let one_by_one: usize = batches.iter().map(|b| b.frames.len().div_ceil(37)).sum();
        assert!(
            socket.vectored_calls < one_by_one,
            "{}",
            socket.vectored_calls
        );
    }

    #[tokio::test]
    async fn a_subscribed_client_gets_only_the_frames_it_asked_for() {
        let subscription = Subscription {
            subscribe: Some(vec!["like".into()]),
            live: None,
        };
        let (result, socket, batches) = round(trickle(1000, usize::MAX), subscription).await;
        assert!(matches!(result, Ok(Round::Written)));
        let likes: Vec<u8> = batches
            .iter()
            .flat_map(|b| {
                (0..b.items.len())
                    .filter(|i| i % 2 == 1)
                    .flat_map(|i| b.frame(i).to_vec())
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(socket.written, likes);
    }

    #[tokio::test]
    async fn a_stalled_write_hands_back_exactly_the_rest() {
        let (result, socket, batches) = round(trickle(50, 333), Subscription::default()).await;
        let all: Vec<u8> = batches.iter().flat_map(|b| b.frames.to_vec()).collect();
        match result {
            Err(Stop::TimedOut(rest)) => {
                assert_eq!(socket.written.len(), 333);
                assert_eq!([socket.written, rest].concat(), all);
            }
            _ => panic!("expected a timeout"),
        }
    }
}
