//! The WebSocket feed: the upgrade handshake (done here, on the raw hyper request, so that every
//! client writes the feed's ready-made frames to its socket as they are), then per client: the status,
//! the recent events, `synced`, and everything live. A client that falls too far behind is closed with
//! a reason rather than buffered without bound; shutdown closes every client with 1001.

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
/// Bytes written to one client before it goes back to reading what it sends and to the shutdown
/// signal, when it has a backlog of batches.
const WRITE_BATCH: usize = 256 << 10;

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
    // The client no longer counts as one, nor holds the feed's backlog.
    drop(receiver);
    if let Close::With(code, reason) = close {
        tracing::debug!(%reason, "closing a WebSocket client");
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
/// `deadline`. Whatever tungstenite still holds (a pong, an error reply) goes out whole first; then the
/// feed's frames are written to the socket as they are: the shared bytes when the client wants every
/// message, else the ones it wants, copied together into `picked`. Each `write` either writes or
/// does nothing, so a timeout knows exactly what of a frame is left.
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
    let io = socket.get_mut();
    let (mut written, mut lagged) = (0, false);
    let mut next = Some(first);
    while let Some(batch) = next.take() {
        let frames: &[u8] = if subscription.wants_everything() {
            &batch.frames
        } else {
            picked.clear();
            for (i, item) in batch.items.iter().enumerate() {
                if subscription.wants(item) {
                    picked.extend_from_slice(batch.frame(i));
                }
            }
            picked
        };
        let mut done = 0;
        while done < frames.len() {
            match tokio::time::timeout_at(deadline, io.write(&frames[done..])).await {
                Ok(Ok(n)) if n > 0 => done += n,
                Ok(_) => return Err(Stop::Gone),
                Err(_) => return Err(Stop::TimedOut(frames[done..].to_vec())),
            }
        }
        written += done;
        if written < WRITE_BATCH {
            match receiver.try_recv() {
                Ok(batch) => next = Some(batch),
                Err(TryRecvError::Lagged(_)) => lagged = true,
                Err(_) => {}
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
