//! The WebSocket feed: the upgrade handshake (done here, on the raw hyper request, so that every
//! client shares the feed's ready-made texts instead of copying them), then per client: the status,
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
use tokio::sync::broadcast::error::RecvError;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use super::AppState;
use super::api::{ApiError, error_response};
use super::feed::{FeedItem, FeedKind};

/// A client whose socket takes longer than this to accept what it is sent is dropped.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Messages queued for one client before its socket is written, when it has a backlog: enough to
/// save system calls, small enough that 500 clients' buffers stay a few megabytes.
const WRITE_BATCH: usize = 64;

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

async fn serve_client<S>(socket: WebSocketStream<S>, state: Arc<AppState>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut sink, mut stream) = socket.split();
    let mut shutdown = state.shutdown.clone();
    let status = super::lives::status_message(&state.lives.statuses().await);
    let snapshot = state.feed.snapshot();
    let mut receiver = snapshot.receiver;
    let mut subscription = Subscription::default();
    let hello = async {
        sink.feed(Message::Text(status.into())).await?;
        for item in &snapshot.recent {
            sink.feed(Message::Text(item.text.clone())).await?;
        }
        sink.send(Message::Text(Utf8Bytes::from_static(
            r#"{"type":"synced"}"#,
        )))
        .await
    };
    let close = match tokio::time::timeout(SEND_TIMEOUT, hello).await {
        Ok(Ok(())) => loop {
            tokio::select! {
                biased;
                _ = shutdown.changed() => break Close::With(CloseCode::Away, "the server is shutting down"),
                incoming = stream.next() => match incoming {
                    Some(Ok(Message::Text(text))) => match serde_json::from_str::<Subscription>(&text) {
                        Ok(wanted) => subscription = wanted,
                        Err(err) => {
                            let reply = serde_json::json!({"type": "error", "error": {"code": "bad_request", "message": format!("not a subscription: {err}")}});
                            if sink.send(Message::Text(reply.to_string().into())).await.is_err() {
                                break Close::Gone;
                            }
                        }
                    },
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break Close::Gone,
                    Some(Ok(_)) => {}
                },
                received = receiver.recv() => {
                    let first = match received {
                        Ok(item) => item,
                        Err(RecvError::Lagged(_)) => break Close::With(CloseCode::Again, "too slow: the feed got too far ahead of this client"),
                        Err(RecvError::Closed) => break Close::With(CloseCode::Away, "the server is shutting down"),
                    };
                    let mut lagged = false;
                    let write = async {
                        let mut batch = 0;
                        let mut next = Some(first);
                        while let Some(item) = next.take() {
                            if subscription.wants(&item) {
                                sink.feed(Message::Text(item.text.clone())).await?;
                                batch += 1;
                            }
                            if batch < WRITE_BATCH {
                                match receiver.try_recv() {
                                    Ok(item) => next = Some(item),
                                    Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_)) => lagged = true,
                                    Err(_) => {}
                                }
                            }
                        }
                        sink.flush().await
                    };
                    match tokio::time::timeout(SEND_TIMEOUT, write).await {
                        Ok(Ok(())) if !lagged => {}
                        Ok(Ok(())) => break Close::With(CloseCode::Again, "too slow: the feed got too far ahead of this client"),
                        Ok(Err(_)) => break Close::Gone,
                        Err(_) => break Close::With(CloseCode::Again, "too slow: the client stopped reading"),
                    }
                }
            }
        },
        Ok(Err(_)) => Close::Gone,
        Err(_) => Close::With(CloseCode::Again, "too slow: the client stopped reading"),
    };
    if let Close::With(code, reason) = close {
        tracing::debug!(%reason, "closing a WebSocket client");
        let frame = CloseFrame {
            code,
            reason: Utf8Bytes::from_static(reason),
        };
        let _ = tokio::time::timeout(
            Duration::from_secs(1),
            sink.send(Message::Close(Some(frame))),
        )
        .await;
    }
}
