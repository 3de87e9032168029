//! The lives `serve` follows: one task per live, each with its own connection, reconnect policy and
//! status. A live's events go to the store (through the shared writer) and to the feed, exactly as
//! `watch` would print and store them.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::feed::{Feed, FeedItem, FeedKind, lock};
use crate::events::{
    ConnectionState, DecodeOptions, Event, EventData, decode_message, now_ms, rfc3339_ms,
};
use crate::pipeline::{Dedupe, EventFilter};
use crate::protocol::FrameContent;
use crate::store::{LiveId, LiveSource, NewLive, PreparedEvent, SEND_CHUNK, StoreWriter};
use crate::webcast::{
    ClientConfig, ConnectError, Incoming, LiveEnd, LiveHandler, RoomInfo, Verdict, find_live,
    reconnect_delay, run_live,
};

/// Message ids remembered per live to drop the repeats a reconnect brings.
const DEDUPE_WINDOW: usize = 100_000;

/// What a live is doing, as `/status` and the dashboard show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LiveState {
    /// Looking up the room and opening the connection.
    Connecting,
    Connected,
    /// The connection dropped, or checking whether the host is live failed; waiting before the next
    /// try.
    Reconnecting,
    /// The host is not live (or stopped being live while tiklive reconnected).
    Offline,
    /// TikTok ended the stream.
    Ended,
    /// Stopped by `POST /disconnect`, by shutdown, or by an error (see `error`).
    Disconnected,
}

/// One live's status and counters since its last (re)connection.
#[derive(Debug, Clone, Serialize)]
pub struct LiveStatus {
    pub username: String,
    pub state: LiveState,
    pub room_id: Option<String>,
    /// The title room info gave the live.
    pub title: Option<String>,
    pub live_id: Option<i64>,
    pub viewer_count: Option<u64>,
    pub total_likes: u64,
    pub gifts: u64,
    pub gift_diamonds: u64,
    pub events: u64,
    pub claims: u64,
    pub last_event_at: Option<String>,
    pub reconnect_attempts: u32,
    pub error: Option<String>,
    /// While the host is not followed (offline, their live ended, or a check failed): when `serve`
    /// checks again.
    pub next_check_at: Option<String>,
}

impl LiveStatus {
    fn new(username: &str) -> LiveStatus {
        LiveStatus {
            username: username.to_owned(),
            state: LiveState::Connecting,
            room_id: None,
            title: None,
            live_id: None,
            viewer_count: None,
            total_likes: 0,
            gifts: 0,
            gift_diamonds: 0,
            events: 0,
            claims: 0,
            last_event_at: None,
            reconnect_attempts: 0,
            error: None,
            next_check_at: None,
        }
    }

    /// Counts an event in the totals.
    fn count(&mut self, event: &Event) {
        self.events += 1;
        self.last_event_at = Some(rfc3339_ms(event.ts_ms));
        match &event.data {
            EventData::Chat { claim: Some(_), .. } => self.claims += 1,
            EventData::Gift { total_diamonds, .. } => {
                self.gifts += 1;
                self.gift_diamonds += total_diamonds;
            }
            EventData::Like {
                like_count,
                total_like_count,
            } => {
                // TikTok's running total when it sends one, else our own sum.
                self.total_likes = if *total_like_count > 0 {
                    (*total_like_count).max(self.total_likes)
                } else {
                    self.total_likes + like_count
                };
            }
            EventData::RoomUser { viewer_count, .. } => self.viewer_count = Some(*viewer_count),
            _ => {}
        }
    }
}

/// What every live task shares with the server.
pub struct LiveContext {
    pub feed: Arc<Feed>,
    pub writer: Arc<StoreWriter>,
    pub client: ClientConfig,
    pub decode: DecodeOptions,
    /// Set when a status changed; the status ticker publishes it.
    pub status_dirty: AtomicBool,
    /// How often to check whether a host who is not live has started; `None`: give up at once.
    pub offline_poll: Option<Duration>,
}

struct Slot {
    status: Arc<Mutex<LiveStatus>>,
    run: Option<Run>,
}

struct Run {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

/// Every live followed, by username.
pub struct Lives {
    context: Arc<LiveContext>,
    slots: tokio::sync::Mutex<BTreeMap<String, Slot>>,
}

impl Lives {
    pub fn new(context: Arc<LiveContext>) -> Lives {
        Lives {
            context,
            slots: tokio::sync::Mutex::new(BTreeMap::new()),
        }
    }

    /// Connects to `username`'s live, first stopping a connection already running (a forced
    /// reconnection).
    pub async fn connect(&self, username: &str) -> LiveStatus {
        let mut slots = self.slots.lock().await;
        let slot = slots.entry(username.to_owned()).or_insert_with(|| Slot {
            status: Arc::new(Mutex::new(LiveStatus::new(username))),
            run: None,
        });
        if let Some(run) = slot.run.take() {
            stop(run).await;
        }
        *lock(&slot.status) = LiveStatus::new(username);
        let (stop_tx, stop_rx) = oneshot::channel();
        let task = tokio::spawn(follow(
            Arc::clone(&self.context),
            username.to_owned(),
            Arc::clone(&slot.status),
            stop_rx,
        ));
        slot.run = Some(Run {
            stop: stop_tx,
            task,
        });
        let status = lock(&slot.status).clone();
        self.context.publish_status_now(&slots);
        status
    }

    /// Stops following `username`; `None` if it is not followed.
    pub async fn disconnect(&self, username: &str) -> Option<LiveStatus> {
        let mut slots = self.slots.lock().await;
        let slot = slots.get_mut(username)?;
        if let Some(run) = slot.run.take() {
            stop(run).await;
        }
        let status = lock(&slot.status).clone();
        self.context.publish_status_now(&slots);
        Some(status)
    }

    /// Stops every live (at shutdown), each writing its `disconnected` line.
    pub async fn disconnect_all(&self) {
        let mut slots = self.slots.lock().await;
        let runs: Vec<Run> = slots.values_mut().filter_map(|s| s.run.take()).collect();
        futures_util::future::join_all(runs.into_iter().map(stop)).await;
    }

    pub async fn statuses(&self) -> Vec<LiveStatus> {
        statuses(&*self.slots.lock().await)
    }

    /// Publishes the status if a counter changed since the last time.
    pub async fn publish_status_if_changed(&self) {
        if self.context.status_dirty.swap(false, Ordering::AcqRel) {
            let slots = self.slots.lock().await;
            self.context.publish_status_now(&slots);
        }
    }
}

fn statuses(slots: &BTreeMap<String, Slot>) -> Vec<LiveStatus> {
    slots.values().map(|s| lock(&s.status).clone()).collect()
}

/// The `{"type": "status", "lives": [...]}` message.
pub fn status_message(lives: &[LiveStatus]) -> String {
    serde_json::json!({"type": "status", "lives": lives}).to_string()
}

impl LiveContext {
    fn publish_status_now(&self, slots: &BTreeMap<String, Slot>) {
        self.status_dirty.store(false, Ordering::Release);
        self.feed.publish(FeedItem {
            kind: FeedKind::Status,
            text: status_message(&statuses(slots)).into(),
        });
    }
}

async fn stop(run: Run) {
    let _ = run.stop.send(());
    if let Err(err) = run.task.await
        && err.is_panic()
    {
        tracing::error!("a live task panicked: {err}");
    }
}

/// Follows a host until stopped or an error ends it: while they are not live, checks again every
/// `offline_poll`; follows each live they start; once a live is over, waits for the next one. A
/// `lives` row is begun only when a live is found, so the checks leave nothing in the database.
async fn follow(
    context: Arc<LiveContext>,
    username: String,
    status: Arc<Mutex<LiveStatus>>,
    mut stop: oneshot::Receiver<()>,
) {
    let config = ClientConfig {
        unique_id: username.clone(),
        ..context.client.clone()
    };
    // Checks in a row that failed (not "not live": failed to tell).
    let mut failures = 0u32;
    loop {
        let found = tokio::select! {
            found = find_live(&config) => found,
            _ = &mut stop => return stopped_waiting(&context, &status),
        };
        let wait = match found {
            Ok(found) => {
                failures = 0;
                if follow_live(&context, &config, found, &status, &mut stop).await == LiveOver::Done
                {
                    return;
                }
                context.offline_poll
            }
            Err(ConnectError::Offline(_)) => {
                failures = 0;
                tracing::info!(user = %username, "the host is not live");
                wait_state(&context, &status, LiveState::Offline, None);
                context.offline_poll
            }
            // TikTok or the network failing is not the host's doing: the next check comes sooner, with
            // the reconnect policy's delays (never later than the poll). Without a poll, the policy's
            // number of tries applies.
            Err(err) if err.is_retryable() => {
                failures += 1;
                if context.offline_poll.is_none() && failures > config.max_retries {
                    fail(&context, &status, err.to_string());
                    return;
                }
                tracing::warn!(user = %username, attempt = failures, "cannot check whether the host is live: {err}");
                wait_state(
                    &context,
                    &status,
                    LiveState::Reconnecting,
                    Some(err.to_string()),
                );
                lock(&status).reconnect_attempts = failures;
                let backoff = reconnect_delay(&config, failures);
                Some(
                    context
                        .offline_poll
                        .map_or(backoff, |poll| poll.min(backoff)),
                )
            }
            Err(err) => {
                fail(&context, &status, err.to_string());
                return;
            }
        };
        let Some(wait) = wait else {
            return;
        };
        lock(&status).next_check_at = Some(rfc3339_ms(
            now_ms().saturating_add(i64::try_from(wait.as_millis()).unwrap_or(i64::MAX)),
        ));
        context.status_dirty.store(true, Ordering::Release);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = &mut stop => return stopped_waiting(&context, &status),
        }
        lock(&status).next_check_at = None;
    }
}

/// Whether to wait for the host's next live once one is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LiveOver {
    WaitForNext,
    Done,
}

/// Follows one live that `find_live` has `found` (its room and room info), until it ends, fails, or
/// is stopped.
async fn follow_live(
    context: &Arc<LiveContext>,
    config: &ClientConfig,
    found: (u64, RoomInfo),
    status: &Arc<Mutex<LiveStatus>>,
    stop: &mut oneshot::Receiver<()>,
) -> LiveOver {
    let room_id = found.0;
    let username = &config.unique_id;
    // The counters start again with each live.
    *lock(status) = LiveStatus {
        room_id: Some(room_id.to_string()),
        ..LiveStatus::new(username)
    };
    context.status_dirty.store(true, Ordering::Release);
    let live = {
        let writer = Arc::clone(&context.writer);
        let host = username.clone();
        tokio::task::spawn_blocking(move || {
            writer.begin_live(NewLive {
                host,
                room_id,
                title: None,
                source: LiveSource::Watch,
                started_ms: now_ms(),
            })
        })
        .await
    };
    let live = match live {
        Ok(Ok(live)) => live,
        Ok(Err(err)) => {
            fail(context, status, format!("cannot record the live: {err}"));
            return LiveOver::Done;
        }
        Err(err) => {
            fail(context, status, format!("cannot record the live: {err}"));
            return LiveOver::Done;
        }
    };
    lock(status).live_id = Some(live.get());
    // The room is known: reconnections go straight to it.
    let config = ClientConfig {
        room_id: Some(room_id),
        ..config.clone()
    };
    let mut handler = ServeHandler {
        live_name: username.as_str().into(),
        context: Arc::clone(context),
        status: Arc::clone(status),
        live,
        room_id,
        dedupe: Dedupe::new(DEDUPE_WINDOW),
        filter: EventFilter::default(),
        rows: Vec::with_capacity(SEND_CHUNK),
        items: Vec::new(),
        ended: false,
    };
    let outcome = tokio::select! {
        result = run_live(&config, Some(found), &mut handler) => Some(result),
        _ = &mut *stop => None,
    };
    let (state, reason, error, over) = match outcome {
        None => (
            LiveState::Disconnected,
            "disconnected".to_owned(),
            None,
            LiveOver::Done,
        ),
        Some(Ok(LiveEnd::Stopped)) if handler.ended => (
            LiveState::Ended,
            "the live ended".to_owned(),
            None,
            LiveOver::WaitForNext,
        ),
        Some(Ok(LiveEnd::Stopped)) => (
            LiveState::Disconnected,
            "stopped".to_owned(),
            None,
            LiveOver::Done,
        ),
        Some(Ok(LiveEnd::Offline)) | Some(Err(ConnectError::Offline(_))) => (
            LiveState::Offline,
            "the host is not live".to_owned(),
            None,
            LiveOver::WaitForNext,
        ),
        Some(Err(err)) => {
            let text = err.to_string();
            (
                LiveState::Disconnected,
                text.clone(),
                Some(text),
                LiveOver::Done,
            )
        }
    };
    if let Some(error) = &error {
        tracing::warn!(user = %username, "{error}");
    } else {
        tracing::info!(user = %username, "{reason}");
    }
    handler.finish(state, reason, error);
    over
}

/// Shows that the host is not being followed right now, and why the last check failed, if it did.
fn wait_state(
    context: &LiveContext,
    status: &Mutex<LiveStatus>,
    state: LiveState,
    error: Option<String>,
) {
    let mut status = lock(status);
    status.state = state;
    status.error = error;
    context.status_dirty.store(true, Ordering::Release);
}

/// Stopped (`POST /disconnect`, shutdown) while waiting for a live: there is no live to end.
fn stopped_waiting(context: &LiveContext, status: &Mutex<LiveStatus>) {
    let mut status = lock(status);
    status.state = LiveState::Disconnected;
    status.next_check_at = None;
    context.status_dirty.store(true, Ordering::Release);
}

/// Marks a live as stopped by an error before it could start.
fn fail(context: &LiveContext, status: &Mutex<LiveStatus>, error: String) {
    tracing::error!("{error}");
    let mut status = lock(status);
    status.state = LiveState::Disconnected;
    status.error = Some(error);
    context.status_dirty.store(true, Ordering::Release);
}

struct ServeHandler {
    live_name: Arc<str>,
    context: Arc<LiveContext>,
    status: Arc<Mutex<LiveStatus>>,
    live: LiveId,
    room_id: u64,
    dedupe: Dedupe,
    filter: EventFilter,
    rows: Vec<PreparedEvent>,
    items: Vec<FeedItem>,
    ended: bool,
}

impl ServeHandler {
    /// Serialises an accepted event once: the stored row and the feed text share the bytes.
    fn take(&mut self, event: &Event) {
        let mut line = Vec::with_capacity(512);
        event.write_json(&mut line);
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        if let Some(row) = PreparedEvent::new(self.live, event, &line) {
            self.rows.push(row);
        }
        // write_json writes valid UTF-8 (serde_json strings and ASCII punctuation).
        let text = String::from_utf8(line)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
        self.items.push(FeedItem {
            kind: FeedKind::Event {
                live: Arc::clone(&self.live_name),
                type_name: event.data.type_name(),
                msg_id: event.msg_id,
                ts_ms: event.ts_ms,
            },
            text: text.into(),
        });
    }

    /// Hands the rows to the store and the items to the feed.
    fn send(&mut self) {
        if !self.rows.is_empty() {
            let rows = std::mem::replace(&mut self.rows, Vec::with_capacity(SEND_CHUNK));
            if let Err(err) = self.context.writer.send_prepared(rows) {
                tracing::error!(%err, "the database stopped accepting events; the feed goes on");
            }
        }
        if !self.items.is_empty() {
            self.context.feed.publish_all(self.items.drain(..));
        }
    }

    fn set_state(&mut self, state: LiveState, attempt: Option<u32>) {
        let mut status = lock(&self.status);
        status.state = state;
        if let Some(attempt) = attempt {
            status.reconnect_attempts = attempt;
        }
        if self.room_id != 0 {
            status.room_id = Some(self.room_id.to_string());
        }
        drop(status);
        self.context.status_dirty.store(true, Ordering::Release);
    }

    /// The last line of a run, stored (it ends the live in the database) and published.
    fn finish(&mut self, state: LiveState, reason: String, error: Option<String>) {
        let event = Event::disconnected(self.room_id, reason);
        if let Err(err) = self.context.writer.send(self.live, &event) {
            tracing::error!(%err, "cannot record the end of the live");
        }
        self.take(&event);
        self.send();
        {
            let mut status = lock(&self.status);
            status.error = error;
        }
        self.set_state(state, None);
    }
}

impl LiveHandler for ServeHandler {
    fn room_found(&mut self, room_id: u64) {
        self.room_id = room_id;
        lock(&self.status).room_id = Some(room_id.to_string());
        self.context.status_dirty.store(true, Ordering::Release);
    }

    fn room_info(&mut self, info: &RoomInfo) {
        let Some(title) = &info.title else { return };
        self.send();
        if let Err(err) = self.context.writer.set_live_title(self.live, title) {
            tracing::error!(%err, "cannot record the live's title");
        }
        lock(&self.status).title = Some(title.clone());
        self.context.status_dirty.store(true, Ordering::Release);
    }

    fn handle(&mut self, incoming: Incoming<'_>) -> Verdict {
        match incoming {
            Incoming::Connection(mut event) => {
                if event.room_id == 0 {
                    event.room_id = self.room_id;
                } else {
                    self.room_id = event.room_id;
                }
                if let EventData::Connection { state, attempt, .. } = &event.data {
                    match state {
                        ConnectionState::Connected => self.set_state(LiveState::Connected, None),
                        ConnectionState::Reconnecting => {
                            self.set_state(LiveState::Reconnecting, *attempt)
                        }
                        _ => {}
                    }
                }
                if let Err(err) = self.context.writer.send(self.live, &event) {
                    tracing::error!(%err, "the database stopped accepting events; the feed goes on");
                }
                self.take(&event);
                self.send();
                Verdict::Continue
            }
            Incoming::Frame { decoded, .. } => {
                let Ok(FrameContent::Messages { result, .. }) = decoded else {
                    return Verdict::Continue;
                };
                let fallback_ts = result.now as i64;
                let mut counted = Vec::new();
                for msg in &result.messages {
                    let event = match decode_message(msg, fallback_ts, &self.context.decode) {
                        Ok(event) => event,
                        Err(err) => {
                            tracing::debug!(method = %msg.method, %err, "skipped a message that did not decode");
                            continue;
                        }
                    };
                    let ends = event.ends_stream();
                    if !self.filter.accepts(&event) && !ends {
                        continue;
                    }
                    if !self.dedupe.first_time(event.msg_id) {
                        continue;
                    }
                    self.take(&event);
                    counted.push(event);
                    if ends {
                        self.ended = true;
                        break;
                    }
                }
                if !counted.is_empty() {
                    let mut status = lock(&self.status);
                    for event in &counted {
                        status.count(event);
                    }
                    drop(status);
                    self.context.status_dirty.store(true, Ordering::Release);
                }
                self.send();
                if self.ended {
                    Verdict::Stop
                } else {
                    Verdict::Continue
                }
            }
        }
    }
}
