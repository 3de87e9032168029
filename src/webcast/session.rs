//! One live, end to end: look up the room, sign, open the socket, enter the room, heartbeat, ack, and
//! reconnect with backoff when the connection drops or goes quiet (§1.7–§1.8).

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use super::lookup::{Http, RoomInfo};
use super::socket::{self, Socket};
use super::{ClientConfig, ConnectError, SignedConnection};
use crate::events::{ConnectionState, Event, EventData, rfc3339_ms};
use crate::protocol::{
    FrameContent, FrameError, decode_frame, encode_ack, encode_enter_room, encode_heartbeat,
    wrap_fetch_result,
};

/// What the client hands to its handler.
pub enum Incoming<'a> {
    /// A binary WebSocket message as received (the signing service's first batch is wrapped as a
    /// push frame), and what it decoded to.
    Frame {
        raw: &'a [u8],
        decoded: Result<&'a FrameContent, &'a FrameError>,
    },
    /// A connection life-cycle event (connected, reconnecting, gap).
    Connection(Box<Event>),
}

/// The handler's answer: keep going, or stop now (the stream ended, or the output went away).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Continue,
    Stop,
}

pub trait LiveHandler {
    fn handle(&mut self, incoming: Incoming<'_>) -> Verdict;

    /// Called once the room id is known (before any connection line), so that lines written after a
    /// failure can still name the room.
    fn room_found(&mut self, _room_id: u64) {}

    /// Called with what room info said, after `room_found` and again after each reconnect (a host
    /// may retitle a live while it runs).
    fn room_info(&mut self, _info: &RoomInfo) {}
}

/// How a live run ended without an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LiveEnd {
    /// The handler said stop.
    Stopped,
    /// While reconnecting, TikTok reported the room offline: the live is over.
    Offline,
}

enum SessionEnd {
    Stopped,
    Dropped { reason: String, frames: u64 },
}

/// Where to resume after a drop.
#[derive(Default)]
struct Resume {
    cursor: Option<String>,
    last_ts_ms: Option<i64>,
}

impl Resume {
    /// Remembers the cursor and server time of a batch (the first one or any later frame).
    fn advance(&mut self, result: &crate::protocol::FetchResult) {
        if !result.cursor.is_empty() {
            self.cursor = Some(result.cursor.clone());
        }
        if result.now > 0 {
            self.last_ts_ms = Some(result.now as i64);
        }
    }
}

/// The wait before attempt `attempt` (from 1) of the reconnect policy: n × `retry_delay` plus up
/// to 20 % jitter.
pub fn reconnect_delay(config: &ClientConfig, attempt: u32) -> Duration {
    let base = config.retry_delay.saturating_mul(attempt);
    base + base.mul_f64(fastrand::f64() * 0.2)
}

/// The reconnect policy: attempt n waits [`reconnect_delay`]; more than
/// `max_retries` failures in a row is the end.
struct Backoff<'a> {
    config: &'a ClientConfig,
    failures: u32,
}

impl Backoff<'_> {
    /// Counts a failure; returns the delay before the next attempt, or the give-up error.
    fn next(&mut self, reason: &str, at_least: Option<Duration>) -> Result<Duration, ConnectError> {
        self.failures += 1;
        if self.failures > self.config.max_retries {
            return Err(ConnectError::Network {
                context: format!("gave up after {} attempts", self.config.max_retries),
                message: reason.to_owned(),
            });
        }
        let delay = reconnect_delay(self.config, self.failures);
        Ok(at_least.unwrap_or(Duration::ZERO).max(delay))
    }

    /// Announces the attempt to the handler and waits. `false` when the handler wants to stop.
    async fn wait(
        &self,
        room_id: u64,
        delay: Duration,
        reason: &str,
        handler: &mut impl LiveHandler,
    ) -> bool {
        tracing::warn!(attempt = self.failures, delay_ms = delay.as_millis() as u64, %reason, "retrying");
        let line = Event::connection(
            room_id,
            EventData::Connection {
                state: ConnectionState::Reconnecting,
                attempt: Some(self.failures),
                delay_ms: Some(delay.as_millis() as u64),
                reason: Some(reason.to_owned()),
            },
        );
        if handler.handle(Incoming::Connection(Box::new(line))) == Verdict::Stop {
            return false;
        }
        tokio::time::sleep(delay).await;
        true
    }
}

/// Finds the room and checks it is live, retrying network failures with the reconnect policy.
async fn find_live_room(
    http: &Http,
    backoff: &mut Backoff<'_>,
    handler: &mut impl LiveHandler,
) -> Result<Option<(u64, RoomInfo)>, ConnectError> {
    loop {
        match look_up(http).await {
            Ok(found) => return Ok(Some(found)),
            Err(e) if e.is_retryable() => {
                let reason = e.to_string();
                let delay = backoff.next(&reason, None)?;
                let room = http.config.room_id.unwrap_or(0);
                if !backoff.wait(room, delay, &reason, handler).await {
                    return Ok(None);
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// Checks once, without retrying, whether the host of `config` is live: their room and what room
/// info says of it. [`ConnectError::Offline`] when they are not.
pub async fn find_live(config: &ClientConfig) -> Result<(u64, RoomInfo), ConnectError> {
    look_up(&Http::new(config)?).await
}

/// One lookup: the room (given, or found from the username) and room info's word on it.
async fn look_up(http: &Http) -> Result<(u64, RoomInfo), ConnectError> {
    let room_id = match http.config.room_id {
        Some(id) => id,
        None => http.resolve_room_id().await?,
    };
    let info = http.check_live(room_id).await?;
    Ok((room_id, info))
}

/// Follows one live until the handler stops, the room goes offline, or reconnecting fails
/// `max_retries` times in a row. `found` is what [`find_live`] has just said, when the caller asked
/// it: the room and room info are then not asked for again.
pub async fn run_live(
    config: &ClientConfig,
    found: Option<(u64, RoomInfo)>,
    handler: &mut impl LiveHandler,
) -> Result<LiveEnd, ConnectError> {
    let http = Http::new(config)?;
    let mut backoff = Backoff {
        config,
        failures: 0,
    };
    let found = match found {
        Some(found) => found,
        None => match find_live_room(&http, &mut backoff, handler).await? {
            Some(found) => found,
            None => return Ok(LiveEnd::Stopped),
        },
    };
    let (room_id, info) = found;
    handler.room_found(room_id);
    handler.room_info(&info);
    tracing::info!(user = %config.unique_id, room_id, "connecting");

    let mut resume = Resume::default();
    let mut drop_reason: Option<String> = None;
    loop {
        let outcome = match http.sign(room_id, resume.cursor.as_deref()).await {
            Ok(signed) => {
                session(&http, signed, handler, &mut resume, drop_reason.as_deref()).await
            }
            Err(e) => Err(e),
        };
        let mut wait = None;
        let reason = match outcome {
            Ok(SessionEnd::Stopped) => return Ok(LiveEnd::Stopped),
            Ok(SessionEnd::Dropped { reason, frames }) => {
                if frames > 0 {
                    backoff.failures = 0;
                }
                reason
            }
            Err(e) if e.is_retryable() => e.to_string(),
            // A rate limit while reconnecting is waited out when the service says for how long.
            Err(ConnectError::SignRateLimited {
                retry_after: Some(after),
                ..
            }) if drop_reason.is_some() && after <= Duration::from_secs(120) => {
                wait = Some(after);
                "the signing service's rate limit".to_owned()
            }
            Err(e) => return Err(e),
        };
        let delay = backoff.next(&reason, wait)?;
        if !backoff.wait(room_id, delay, &reason, handler).await {
            return Ok(LiveEnd::Stopped);
        }
        drop_reason = Some(reason);
        match http.check_live(room_id).await {
            Ok(info) => handler.room_info(&info),
            Err(ConnectError::Offline(_)) => return Ok(LiveEnd::Offline),
            // Anything else shows in the connection attempt that follows.
            Err(_) => {}
        }
    }
}

/// One connection: open, announce, process frames until the handler stops or the socket drops.
async fn session(
    http: &Http,
    signed: SignedConnection,
    handler: &mut impl LiveHandler,
    resume: &mut Resume,
    after_drop: Option<&str>,
) -> Result<SessionEnd, ConnectError> {
    let config = &http.config;
    let room_id = signed.room_id;
    let url = socket::socket_url(&signed, &config.user_agent, config.compress);
    let mut cookies = http.base_cookies();
    for (name, value) in &signed.cookies {
        cookies.retain(|(n, _)| n != name);
        cookies.push((name.clone(), value.clone()));
    }
    let mut ws = socket::open(http, &url, &cookies).await?;
    tracing::info!(room_id, "connected");

    let connected = Event::connection(
        room_id,
        EventData::Connection {
            state: ConnectionState::Connected,
            attempt: None,
            delay_ms: None,
            reason: None,
        },
    );
    if handler.handle(Incoming::Connection(Box::new(connected))) == Verdict::Stop {
        return Ok(close(ws).await);
    }
    if let Some(reason) = after_drop {
        let since = resume
            .last_ts_ms
            .map(rfc3339_ms)
            .unwrap_or_else(|| "the start".into());
        let gap = Event::connection(
            room_id,
            EventData::Connection {
                state: ConnectionState::Gap,
                attempt: None,
                delay_ms: None,
                reason: Some(format!(
                    "reconnected after: {reason}; messages since {since} may be missing"
                )),
            },
        );
        if handler.handle(Incoming::Connection(Box::new(gap))) == Verdict::Stop {
            return Ok(close(ws).await);
        }
    }

    // The signing service's first batch: no frame, no log id, never acked (§1.7).
    resume.advance(&signed.result);
    let first = FrameContent::Messages {
        log_id: 0,
        result: signed.result,
    };
    let wrapped = wrap_fetch_result(&signed.result_bytes);
    if handler.handle(Incoming::Frame {
        raw: &wrapped,
        decoded: Ok(&first),
    }) == Verdict::Stop
    {
        return Ok(close(ws).await);
    }

    let enter_id = fastrand::u64(1..=i64::MAX as u64);
    if let Err(e) = ws
        .send(Message::Binary(encode_enter_room(room_id, enter_id).into()))
        .await
    {
        return Ok(dropped(format!("could not enter the room: {e}"), 0));
    }
    let interval = config.heartbeat_interval.max(Duration::from_millis(10));
    let mut heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    let mut heartbeat_seq = 0u64;
    let dead_after = config.dead_after.max(Duration::from_millis(10));
    let dead = tokio::time::sleep(dead_after);
    tokio::pin!(dead);
    let mut frames = 0u64;

    loop {
        tokio::select! {
            message = ws.next() => {
                let bytes = match message {
                    Some(Ok(Message::Binary(bytes))) => bytes,
                    Some(Ok(Message::Close(frame))) => {
                        let reason = match frame {
                            Some(f) => format!("the server closed the connection (code {}{})", u16::from(f.code),
                                if f.reason.is_empty() { String::new() } else { format!(": {}", f.reason) }),
                            None => "the server closed the connection".to_owned(),
                        };
                        return Ok(dropped(reason, frames));
                    }
                    Some(Ok(_)) => continue, // text, ping, pong: TikTok sends none we use
                    Some(Err(e)) => return Ok(dropped(format!("the connection failed: {e}"), frames)),
                    None => return Ok(dropped("the connection closed".to_owned(), frames)),
                };
                frames += 1;
                dead.as_mut().reset(tokio::time::Instant::now() + dead_after);
                let decoded = decode_frame(bytes.clone());
                if let Ok(FrameContent::Messages { log_id, result }) = &decoded {
                    // Ack first, before any processing (§2.3).
                    if result.need_ack
                        && let Err(e) = ws.send(Message::Binary(encode_ack(*log_id, &result.internal_ext).into())).await
                    {
                        return Ok(dropped(format!("could not ack a frame: {e}"), frames));
                    }
                    resume.advance(result);
                }
                if let Err(e) = &decoded {
                    tracing::warn!(%e, "skipped a frame that did not decode");
                }
                if handler.handle(Incoming::Frame { raw: &bytes, decoded: decoded.as_ref() }) == Verdict::Stop {
                    return Ok(close(ws).await);
                }
            }
            _ = heartbeat.tick() => {
                heartbeat_seq += 1;
                if let Err(e) = ws.send(Message::Binary(encode_heartbeat(room_id, heartbeat_seq).into())).await {
                    return Ok(dropped(format!("could not send a heartbeat: {e}"), frames));
                }
            }
            _ = &mut dead => {
                return Ok(dropped(format!("no frame for {} s", dead_after.as_secs_f32()), frames));
            }
        }
    }
}

fn dropped(reason: String, frames: u64) -> SessionEnd {
    SessionEnd::Dropped { reason, frames }
}

/// Closes the socket politely, without waiting long for the server's answer.
async fn close(mut ws: Socket) -> SessionEnd {
    let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(None)).await;
    SessionEnd::Stopped
}
