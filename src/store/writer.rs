//! The one writer of the database. rusqlite is blocking, so the connection lives on its own thread, fed
//! by a bounded channel and writing in batched transactions: one commit per `max_batch` events or
//! `max_delay`, whichever comes first. A slow disk makes `send` wait (with a warning), never drops an
//! event; an error on the writer thread stops it and is returned by the next `send`, `flush` or
//! `finish`, never swallowed.

use std::collections::HashMap;
use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, SyncSender};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::{Connection, ErrorCode, TransactionBehavior, params};

use crate::events::{Event, EventData, now_ms};
use crate::money::PriceList;

use super::queue::{Pop, Queue};
use super::raw::RawStatement;
use super::row::{EventRow, Op, UserRow};
use super::{DEFAULT_BUSY_TIMEOUT, LiveId, NewLive, StoreError, spans};

/// Times a batch is tried again when another program holds the write lock past the busy timeout.
const BUSY_RETRIES: u32 = 3;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriterConfig {
    /// Events that may wait for the writer before `send` blocks: enough for the producer to go on
    /// while a batch commits (a live fills it only when it outruns the disk), small because a crash
    /// loses what waits here as well as the batch being written: at most `max_batch +
    /// channel_capacity` events.
    pub channel_capacity: usize,
    /// The most events committed in one transaction.
    pub max_batch: usize,
    /// The longest an event waits for its transaction to start committing.
    pub max_delay: Duration,
    /// How long the writer waits for another connection's write lock before retrying.
    pub busy_timeout: Duration,
    /// While a writer runs, a batch rewrites a buyer's row only for a new buyer, a change of handle
    /// or nickname, or an earlier `first_seen`; the `last_seen` of every buyer seen since is written
    /// in one transaction this often (wall clock), and exactly by `flush` and `finish`. Rewriting the
    /// row of every active buyer as time moves would scatter writes over the whole `buyers` table in
    /// every commit (4,000 viewers are 40 pages of 16 KiB), more than doubling what a commit writes.
    pub last_seen_every: Duration,
    /// `watch --auto-sale`: a pending sale for every new claim, in the claim's transaction.
    pub auto_sale: Option<AutoSale>,
}

/// Events per [`StoreWriter::send_prepared`] call that callers aim for: large enough that the channel
/// hand-off costs nothing per event, small enough that the queue bound stays meaningful.
pub const SEND_CHUNK: usize = 64;

/// How `--auto-sale` prices the sales it creates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AutoSale {
    /// Unit prices by item code; a claim for an item not in the list gets a sale without a price.
    pub prices: PriceList,
}

impl AutoSale {
    /// Says on stderr that claims become pending sales: after the line saying where events go.
    pub fn announce(&self) {
        tracing::info!(
            prices = self.prices.len(),
            "a pending sale will be created for every claim"
        );
    }
}

impl Default for WriterConfig {
    fn default() -> Self {
        WriterConfig {
            channel_capacity: 1024,
            max_batch: 1000,
            max_delay: Duration::from_millis(100),
            busy_timeout: DEFAULT_BUSY_TIMEOUT,
            last_seen_every: Duration::from_secs(60),
            auto_sale: None,
        }
    }
}

/// What the writer did, returned by [`StoreWriter::finish`]: nothing is dropped without being counted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// New rows in `events`.
    pub events: u64,
    /// Events already stored (same room and message id: a reconnect or a second replay).
    pub duplicates: u64,
    /// New rows in `claims`.
    pub claims: u64,
    /// Pending sales created by `--auto-sale`.
    pub auto_sales: u64,
    /// Events without a message id, which are not stored because they could not be de-duplicated.
    pub skipped: u64,
    /// Batch transactions committed.
    pub transactions: u64,
    /// Times `send` found the channel full and waited for the writer.
    pub producer_waits: u64,
    /// Time spent after the last commit closing the database: the final checkpoint, which copies what
    /// is left in the WAL into the database file and syncs it.
    pub closing: Duration,
}

impl WriterStats {
    /// The end-of-run log line of a command that stored events.
    pub fn log(&self) {
        tracing::info!(
            stored = self.events,
            already_stored = self.duplicates,
            claims = self.claims,
            auto_sales = self.auto_sales,
            without_id = self.skipped,
            "database up to date"
        );
    }
}

/// An event turned into what the database stores, built on the caller's thread (in `replay`, on every
/// decoding thread) from the NDJSON line already written for it; see [`StoreWriter::send_prepared`].
#[derive(Debug, Clone, PartialEq)]
pub struct PreparedEvent(Op);

impl PreparedEvent {
    /// `None` for an event the store does not keep (no message id; connection lines go through
    /// [`StoreWriter::send`]). `json` is the event's NDJSON line without its newline.
    pub fn new(live: LiveId, event: &Event, json: &[u8]) -> Option<PreparedEvent> {
        if matches!(event.data, EventData::Connection { .. }) {
            return None;
        }
        let json = String::from_utf8_lossy(json).into_owned();
        Op::from_event_with_json(live, event, || json).map(PreparedEvent)
    }
}

/// Writes events to the database from a dedicated thread. `send` may be called from several threads.
pub struct StoreWriter {
    queue: Arc<Queue<Command>>,
    thread: Option<JoinHandle<Result<WriterStats, StoreError>>>,
    shared: Arc<Shared>,
}

enum Command {
    /// Several at once: one channel hand-off (and at most one wake-up) per chunk, not per event.
    Ops(Vec<Op>),
    BeginLive(NewLive, SyncSender<Result<LiveId, StoreError>>),
    Flush(SyncSender<()>),
}

/// State the producers and the writer thread both see.
struct Shared {
    /// Why the writer thread stopped, set before it drops its end of the channel.
    failure: OnceLock<String>,
    producer_waits: AtomicU64,
    skipped: AtomicU64,
    started: Instant,
    /// Milliseconds after `started` (plus one; 0 is never) of the last "channel full" warning.
    last_warning: AtomicU64,
    /// Batches the writer has committed, freed by the next producer to send: the producer has time to
    /// spare while the writer is the bottleneck, and frees what its own thread allocated (the rows'
    /// strings) faster than the writer would.
    spent: Mutex<Vec<Vec<Op>>>,
}

/// Committed batches waiting for a producer, at most; past this the writer frees them itself.
const SPENT_BATCHES: usize = 4;

impl StoreWriter {
    /// Opens (creating and migrating) the database at `path` and starts the writer thread.
    pub fn spawn(path: &Path, config: WriterConfig) -> Result<StoreWriter, StoreError> {
        let conn = super::open_connection(path, config.busy_timeout)?;
        // The indexes of a long live outgrow SQLite's default 2 MiB page cache; 4 MiB holds the pages
        // appends touch (the right edges of the table and its two indexes) with room to spare, and keeps
        // `watch` small.
        conn.pragma_update(None, "cache_size", -4_096)?;
        // Checkpoints run on a thread of their own (see `Checkpointer`), so the writer only appends to
        // the WAL; it checkpoints itself only if that thread falls far behind (320 MB of WAL). Once a
        // checkpoint has copied everything, the WAL starts over and its file is cut back to 64 MB.
        conn.pragma_update(None, "wal_autocheckpoint", 20_000)?;
        let checkpointer = Checkpointer::spawn(path, config.busy_timeout)?;
        conn.pragma_update(None, "journal_size_limit", 64 << 20)?;
        let queue = Arc::new(Queue::new(config.channel_capacity));
        let shared = Arc::new(Shared {
            failure: OnceLock::new(),
            producer_waits: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            started: Instant::now(),
            last_warning: AtomicU64::new(0),
            spent: Mutex::new(Vec::new()),
        });
        let writer = Writer {
            conn,
            config,
            shared: Arc::clone(&shared),
            batch: Vec::new(),
            buyers: HashMap::new(),
            checkpointer: Some(checkpointer),
            last_seen_written: Instant::now(),
            stats: WriterStats::default(),
        };
        let thread = {
            let queue = Arc::clone(&queue);
            std::thread::Builder::new()
                .name("tiklive-store".into())
                .spawn(move || writer.run(&queue))
                .map_err(|e| StoreError::WriterGone(format!("cannot start its thread: {e}")))?
        };
        Ok(StoreWriter {
            queue,
            thread: Some(thread),
            shared,
        })
    }

    /// Adds a row to `lives` and returns its id, once it is committed.
    pub fn begin_live(&self, live: NewLive) -> Result<LiveId, StoreError> {
        let (reply, answer) = mpsc::sync_channel(1);
        self.submit(Command::BeginLive(live, reply))?;
        answer.recv().map_err(|_| self.gone())?
    }

    /// Queues an event of `live`. Connection lines are not stored as events: a `disconnected` line sets
    /// the live's `ended_at`, and a line's room id fills in a live started without one. Waits while the
    /// channel is full.
    pub fn send(&self, live: LiveId, event: &Event) -> Result<(), StoreError> {
        match Op::from_event(live, event) {
            Some(op) => self.submit(Command::Ops(vec![op])),
            None => {
                if !matches!(event.data, EventData::Connection { .. }) {
                    self.shared.skipped.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(
                        kind = event.data.type_name(),
                        "not storing an event without a message id"
                    );
                }
                Ok(())
            }
        }
    }

    /// Queues events prepared with [`PreparedEvent::new`], in order, as one hand-off to the writer
    /// thread (callers send chunks of [`SEND_CHUNK`] or so). Waits while the queue is full.
    pub fn send_prepared(&self, events: Vec<PreparedEvent>) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        self.submit(Command::Ops(events.into_iter().map(|e| e.0).collect()))
    }

    /// Why the writer thread stopped, if it did: events sent now would be lost.
    pub fn failure(&self) -> Option<String> {
        self.shared.failure.get().cloned()
    }

    /// Counts an event that was not stored because it has no message id.
    pub fn skip(&self) {
        self.shared.skipped.fetch_add(1, Ordering::Relaxed);
    }

    /// Records when a live ended (Unix milliseconds).
    pub fn end_live(&self, live: LiveId, ended_ms: i64) -> Result<(), StoreError> {
        self.submit(Command::Ops(vec![Op::Live {
            live,
            room_id: None,
            ended_ms: Some(ended_ms),
            title: None,
        }]))
    }

    /// Records the title room info gives the live (it may change while the live runs).
    pub fn set_live_title(&self, live: LiveId, title: &str) -> Result<(), StoreError> {
        self.submit(Command::Ops(vec![Op::Live {
            live,
            room_id: None,
            ended_ms: None,
            title: Some(title.to_owned()),
        }]))
    }

    /// Returns once everything sent before is committed: readers then see it.
    pub fn flush(&self) -> Result<(), StoreError> {
        let (reply, answer) = mpsc::sync_channel(1);
        self.submit(Command::Flush(reply))?;
        answer.recv().map_err(|_| self.gone())
    }

    /// Commits everything sent, stops the thread and returns what it did, or the error that stopped it.
    /// Dropping the writer does the same and logs the error.
    pub fn finish(mut self) -> Result<WriterStats, StoreError> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<WriterStats, StoreError> {
        self.queue.finish();
        let thread = self
            .thread
            .take()
            .ok_or_else(|| StoreError::WriterGone("it was already finished".into()))?;
        let mut stats = thread
            .join()
            .map_err(|_| StoreError::WriterGone("its thread panicked".into()))??;
        stats.producer_waits = self.shared.producer_waits.load(Ordering::Relaxed);
        stats.skipped = self.shared.skipped.load(Ordering::Relaxed);
        Ok(stats)
    }

    fn submit(&self, command: Command) -> Result<(), StoreError> {
        // The thread records its failure before it closes the queue: check it first, so the very next
        // call reports it.
        if self.shared.failure.get().is_some() {
            return Err(self.gone());
        }
        // One batch at a time (a thousand rows or so), taken out under the lock and freed after it.
        let spent = self.shared.spent.try_lock().ok().and_then(|mut s| s.pop());
        drop(spent);
        let weight = match &command {
            Command::Ops(ops) => ops.len(),
            _ => 1,
        };
        self.queue
            .push(command, weight, || self.shared.channel_full())
            .map_err(|_| self.gone())
    }

    fn gone(&self) -> StoreError {
        let reason = self.shared.failure.get().cloned();
        StoreError::WriterGone(reason.unwrap_or_else(|| "its thread has ended".into()))
    }
}

impl Drop for StoreWriter {
    fn drop(&mut self) {
        if self.thread.is_some()
            && let Err(err) = self.shutdown()
        {
            tracing::error!(%err, "the database writer failed");
        }
    }
}

impl Shared {
    /// Leaves a committed batch for a producer to free (see `spent`).
    fn hand_back(&self, batch: Vec<Op>) {
        let unwanted = match self.spent.try_lock() {
            Ok(mut spent) if spent.len() < SPENT_BATCHES => {
                spent.push(batch);
                None
            }
            _ => Some(batch),
        };
        // Freed here, after the lock.
        drop(unwanted);
    }

    /// Counts a wait and warns, at most once a second, that the database is the bottleneck.
    fn channel_full(&self) {
        let waits = self.producer_waits.fetch_add(1, Ordering::Relaxed) + 1;
        let now = self.started.elapsed().as_millis() as u64 + 1;
        let last = self.last_warning.load(Ordering::Relaxed);
        if (last == 0 || now.saturating_sub(last) >= 1000)
            && self
                .last_warning
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                waits,
                "the database is slower than the live; waiting for it (no event is dropped)"
            );
        }
    }
}

/// Copies committed WAL pages back into the database on a second thread and connection, while the
/// writer goes on appending: a checkpoint is mostly kernel time spent copying pages, which then runs
/// beside the writer's SQLite work instead of in it. `PASSIVE` never blocks the writer or readers.
struct Checkpointer {
    nudge: Option<SyncSender<()>>,
    thread: Option<JoinHandle<()>>,
    /// Rows committed since the last nudge.
    pending_rows: u64,
}

/// Rows (about 15 MB of WAL) between two checkpoints: each one syncs the disk twice, so checkpointing
/// after every small commit would cost more than it saves.
const CHECKPOINT_ROWS: u64 = 20_000;

impl Checkpointer {
    fn spawn(path: &Path, busy_timeout: Duration) -> Result<Checkpointer, StoreError> {
        let conn = super::open_connection(path, busy_timeout)?;
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        // It reads WAL frames and writes pages; it has nothing to cache.
        conn.pragma_update(None, "cache_size", -256)?;
        // One pending nudge is enough: a checkpoint copies everything committed when it starts.
        let (nudge, nudged) = mpsc::sync_channel::<()>(1);
        let thread = std::thread::Builder::new()
            .name("tiklive-checkpoint".into())
            .spawn(move || {
                while nudged.recv().is_ok() {
                    let done = conn
                        .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(0));
                    if let Err(err) = done {
                        // Not fatal: the writer checkpoints itself past its own threshold.
                        tracing::debug!(%err, "background checkpoint failed");
                    }
                }
            })
            .map_err(|e| {
                StoreError::WriterGone(format!("cannot start its checkpoint thread: {e}"))
            })?;
        Ok(Checkpointer {
            nudge: Some(nudge),
            thread: Some(thread),
            pending_rows: 0,
        })
    }

    /// Counts committed rows and asks for a checkpoint every [`CHECKPOINT_ROWS`], unless one is
    /// already pending.
    fn committed(&mut self, rows: u64) {
        self.pending_rows += rows;
        if self.pending_rows >= CHECKPOINT_ROWS
            && let Some(nudge) = &self.nudge
        {
            self.pending_rows = 0;
            let _ = nudge.try_send(());
        }
    }
}

/// Stops the thread after the checkpoint in progress, if any.
impl Drop for Checkpointer {
    fn drop(&mut self) {
        drop(self.nudge.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The writer thread's state.
struct Writer {
    conn: Connection,
    config: WriterConfig,
    shared: Arc<Shared>,
    batch: Vec<Op>,
    /// What this writer knows of the `buyers` rows it has touched.
    buyers: BuyerCache,
    checkpointer: Option<Checkpointer>,
    /// When lagging `last_seen` times were last written.
    last_seen_written: Instant,
    stats: WriterStats,
}

#[derive(Default)]
struct Counts {
    events: u64,
    duplicates: u64,
    claims: u64,
    auto_sales: u64,
}

impl Writer {
    fn run(mut self, queue: &Queue<Command>) -> Result<WriterStats, StoreError> {
        // Commands taken from the queue and not handled yet. Dropped only after a failure is recorded,
        // so that a producer waiting on a reply in one of them learns why.
        let mut taken = VecDeque::new();
        let result = self
            .write_until_finished(queue, &mut taken)
            .map_err(|e| self.failed(e));
        queue.close();
        drop(taken);
        let closing = Instant::now();
        drop(self.checkpointer.take());
        let mut stats = std::mem::take(&mut self.stats);
        // Closing the last connection copies the rest of the WAL into the database and deletes it.
        drop(self);
        stats.closing = closing.elapsed();
        result.map(|()| stats)
    }

    /// Records why the writer stops, for every producer that calls it next (the first reason wins).
    fn failed(&self, err: StoreError) -> StoreError {
        let _ = self.shared.failure.set(err.to_string());
        err
    }

    /// Batches events into transactions of at most `max_batch`, each committed at the latest
    /// `max_delay` after its first event arrived; handles the other commands in order.
    fn write_until_finished(
        &mut self,
        queue: &Queue<Command>,
        taken: &mut VecDeque<Command>,
    ) -> Result<(), StoreError> {
        let max_batch = self.config.max_batch.max(1);
        let mut deadline: Option<Instant> = None;
        loop {
            while let Some(command) = taken.pop_front() {
                match command {
                    Command::Ops(ops) => {
                        if self.batch.is_empty() {
                            deadline = Some(Instant::now() + self.config.max_delay);
                        }
                        self.batch.extend(ops);
                        // Full transactions only; what is left over starts the next one.
                        while self.batch.len() >= max_batch {
                            let rest = self.batch.split_off(max_batch);
                            self.commit_batch()?;
                            self.batch = rest;
                            deadline = (!self.batch.is_empty())
                                .then(|| Instant::now() + self.config.max_delay);
                        }
                    }
                    // The caller waits on `reply`: the failure is recorded before it is dropped.
                    Command::BeginLive(live, reply) => {
                        self.commit_batch().map_err(|e| self.failed(e))?;
                        deadline = None;
                        let _ = reply.send(self.begin_live(&live));
                    }
                    Command::Flush(reply) => {
                        self.commit_batch().map_err(|e| self.failed(e))?;
                        deadline = None;
                        self.write_last_seen().map_err(|e| self.failed(e))?;
                        let _ = reply.send(());
                    }
                }
            }
            // Events keep arriving below `max_batch`: the oldest must not wait past its deadline.
            if deadline.is_some_and(|d| Instant::now() >= d) {
                self.commit_batch()?;
                deadline = None;
            }
            match queue.pop_all(deadline) {
                Pop::Items(items) => taken.extend(items),
                Pop::Timeout => {
                    self.commit_batch()?;
                    deadline = None;
                }
                Pop::Finished => break,
            }
        }
        self.commit_batch()?;
        self.write_last_seen()
    }

    /// Brings every lagging buyer's `last_seen` up to date.
    fn write_last_seen(&mut self) -> Result<(), StoreError> {
        self.last_seen_written = Instant::now();
        let lagging: Vec<(i64, i64)> = self
            .buyers
            .iter()
            .filter(|(_, k)| k.latest_last > k.stored_last)
            .map(|(id, k)| (*id, k.latest_last))
            .collect();
        if !lagging.is_empty() {
            retry_busy(|| {
                let tx = self
                    .conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)?;
                {
                    let mut update = tx.prepare_cached(
                        "UPDATE buyers SET last_seen = ?2 WHERE id = ?1 AND last_seen < ?2",
                    )?;
                    for (id, last) in &lagging {
                        update.execute(params![id, last])?;
                    }
                }
                tx.commit()
            })?;
            for (id, last) in lagging {
                if let Some(known) = self.buyers.get_mut(&id) {
                    known.stored_last = known.stored_last.max(last);
                }
            }
        }
        if self.buyers.len() > MAX_CACHED_BUYERS {
            self.buyers.clear();
        }
        Ok(())
    }

    fn begin_live(&self, live: &NewLive) -> Result<LiveId, StoreError> {
        self.conn
            .prepare_cached(
                "INSERT INTO lives (host, room_id, title, source, started_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                live.host,
                super::sql_id(live.room_id),
                live.title,
                live.source.as_str(),
                live.started_ms
            ])?;
        Ok(LiveId(self.conn.last_insert_rowid()))
    }

    /// Commits the batch in one transaction (never more than `max_batch` events: the loop that fills
    /// it commits as soon as it is full).
    fn commit_batch(&mut self) -> Result<(), StoreError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.batch);
        let committed = self.commit_part(&batch);
        self.batch = Vec::with_capacity(batch.len());
        self.shared.hand_back(batch);
        committed
    }

    fn commit_part(&mut self, part: &[Op]) -> Result<(), StoreError> {
        let auto_sale = self.config.auto_sale.as_ref();
        let counts = retry_busy(|| {
            let written = write_batch(&mut self.conn, part, &mut self.buyers, auto_sale);
            // A rolled-back transaction may leave the cache ahead of the database.
            if written.is_err() {
                self.buyers.clear();
            }
            written
        })?;
        if self.buyers.len() > MAX_CACHED_BUYERS
            || self.last_seen_written.elapsed() >= self.config.last_seen_every
        {
            self.write_last_seen()?;
        }
        self.stats.events += counts.events;
        self.stats.duplicates += counts.duplicates;
        self.stats.claims += counts.claims;
        self.stats.auto_sales += counts.auto_sales;
        self.stats.transactions += 1;
        if let Some(checkpointer) = &mut self.checkpointer {
            checkpointer.committed(counts.events);
        }
        Ok(())
    }
}

/// Runs a transaction again when another program held the write lock past the busy timeout (a long
/// `sales` edit, say). The transaction was rolled back, so running it again is safe.
fn retry_busy<T>(mut transaction: impl FnMut() -> rusqlite::Result<T>) -> rusqlite::Result<T> {
    let mut attempt = 0;
    loop {
        match transaction() {
            Err(err)
                if attempt < BUSY_RETRIES
                    && matches!(
                        err.sqlite_error_code(),
                        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
                    ) =>
            {
                attempt += 1;
                tracing::warn!(%err, attempt, "another program holds the database's write lock; trying again");
            }
            result => return result,
        }
    }
}

const INSERT_CLAIM: &str = "INSERT INTO claims (event_id, live_id, room_id, msg_id, buyer_id, item, variant, \
     quantity, raw, ts) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) ON CONFLICT DO NOTHING";

/// The latest handle, nickname and avatar win (latest by event time, so replaying an old recording
/// does not undo a rename); a missing avatar does not erase a known one. An existing row is rewritten
/// only for a new handle or nickname, or an earlier `first_seen` (see
/// [`WriterConfig::last_seen_every`] for `last_seen`): a new avatar alone does not count, since
/// TikTok re-signs avatar URLs.
const UPSERT_BUYER: &str = "INSERT INTO buyers (id, unique_id, nickname, avatar_url, first_seen, last_seen) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
     ON CONFLICT (id) DO UPDATE SET \
     unique_id = CASE WHEN excluded.last_seen >= buyers.last_seen THEN excluded.unique_id ELSE buyers.unique_id END, \
     nickname = CASE WHEN excluded.last_seen >= buyers.last_seen THEN excluded.nickname ELSE buyers.nickname END, \
     avatar_url = CASE WHEN excluded.last_seen >= buyers.last_seen \
         THEN coalesce(excluded.avatar_url, buyers.avatar_url) \
         ELSE coalesce(buyers.avatar_url, excluded.avatar_url) END, \
     first_seen = min(buyers.first_seen, excluded.first_seen), \
     last_seen = max(buyers.last_seen, excluded.last_seen) \
     WHERE excluded.first_seen < buyers.first_seen \
     OR (excluded.last_seen >= buyers.last_seen \
         AND (excluded.unique_id <> buyers.unique_id OR excluded.nickname <> buyers.nickname))";

/// A pending sale for a new claim, unless the message already has a sale that is not cancelled (one
/// made by hand from another process while the claim waited in a batch).
const INSERT_AUTO_SALE: &str = "INSERT INTO sales (live_id, room_id, buyer_id, claim_id, msg_id, item, variant, \
     quantity, unit_price_cents, currency, status, note, created_at, updated_at) \
     SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 'pending', NULL, ?11, ?11 \
     WHERE NOT EXISTS (SELECT 1 FROM sales WHERE room_id = ?2 AND msg_id = ?5 AND status <> 'cancelled')";

const UPDATE_LIVE: &str = "UPDATE lives SET \
     room_id = CASE WHEN room_id = 0 AND ?2 IS NOT NULL THEN ?2 ELSE room_id END, \
     ended_at = coalesce(?3, ended_at), \
     title = coalesce(?4, title) \
     WHERE id = ?1";

/// `ON CONFLICT DO NOTHING` rather than `INSERT OR IGNORE`: it skips only a message already stored,
/// where OR IGNORE would also silently skip a row breaking any other constraint.
const INSERT_EVENT: &str = "INSERT INTO events (live_id, room_id, msg_id, type, ts, user_id, unique_id, \
     nickname, comment, gift_id, gift_name, repeat_count, total_diamonds, gift_streaking, like_count, \
     total_like_count, viewer_count, json) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18) \
     ON CONFLICT (msg_id, room_id) DO NOTHING";

/// Writes one batch in one transaction.
fn write_batch(
    conn: &mut Connection,
    batch: &[Op],
    buyers: &mut BuyerCache,
    auto_sale: Option<&AutoSale>,
) -> rusqlite::Result<Counts> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    // Buyers first: claims reference them.
    upsert_buyers(&tx, batch, buyers)?;
    let mut counts = Counts::default();
    {
        // Through the C API (see `store::raw`), prepared once per batch of up to a thousand inserts.
        let mut event_stmt = RawStatement::prepare(&tx, INSERT_EVENT)?;
        let mut claim_stmt = tx.prepare_cached(INSERT_CLAIM)?;
        let mut live_stmt = tx.prepare_cached(UPDATE_LIVE)?;
        let mut sale_stmt = match auto_sale {
            Some(_) => Some(tx.prepare_cached(INSERT_AUTO_SALE)?),
            None => None,
        };
        let now = now_ms();
        let mut lives = LiveSpans::default();
        let mut added = spans::Added::default();
        for op in batch {
            let row = match op {
                Op::Event(row) => row,
                Op::Live {
                    live,
                    room_id,
                    ended_ms,
                    title,
                } => {
                    live_stmt.execute(params![live.0, room_id, ended_ms, title])?;
                    continue;
                }
            };
            lives.widen(row);
            if insert_event(&mut event_stmt, row)? == 0 {
                counts.duplicates += 1;
                continue;
            }
            counts.events += 1;
            let id = tx.last_insert_rowid();
            added.push(&tx, id, row.ts)?;
            if let Some(claim) = &row.claim {
                let inserted = claim_stmt.execute(params![
                    id,
                    row.live.0,
                    row.room_id,
                    row.msg_id,
                    row.user.as_ref().and_then(|u| u.id),
                    claim.item,
                    claim.variant,
                    claim.quantity,
                    claim.raw,
                    row.ts,
                ])?;
                counts.claims += inserted as u64;
                let buyer = row.user.as_ref().and_then(|u| u.id);
                if let (Some(stmt), Some(policy), 1, Some(buyer)) =
                    (&mut sale_stmt, auto_sale, inserted, buyer)
                {
                    let price = claim.item.as_deref().and_then(|i| policy.prices.get(i));
                    counts.auto_sales += stmt.execute(params![
                        row.live.0,
                        row.room_id,
                        buyer,
                        tx.last_insert_rowid(),
                        row.msg_id,
                        claim.item,
                        claim.variant,
                        claim.quantity.max(1),
                        price.map(|p| p.minor),
                        price.map(|p| &p.currency),
                        now,
                    ])? as u64;
                }
            }
        }
        lives.write(&tx)?;
        added.record(&tx)?;
    }
    tx.commit()?;
    Ok(counts)
}

fn insert_event(stmt: &mut RawStatement<'_>, row: &EventRow) -> rusqlite::Result<u64> {
    let user = row.user.as_ref();
    let d = &row.data;
    stmt.execute(|b| {
        b.int(1, Some(row.live.0));
        b.int(2, Some(row.room_id));
        b.int(3, Some(row.msg_id));
        b.text(4, Some(row.kind));
        b.int(5, Some(row.ts));
        b.int(6, user.and_then(|u| u.id));
        b.text(7, user.map(|u| u.unique_id.as_str()));
        b.text(8, user.map(|u| u.nickname.as_str()));
        b.text(9, d.comment.as_deref());
        b.int(10, d.gift_id);
        b.text(11, d.gift_name.as_deref());
        b.int(12, d.repeat_count);
        b.int(13, d.total_diamonds);
        b.int(14, d.gift_streaking.map(i64::from));
        b.int(15, d.like_count);
        b.int(16, d.total_like_count);
        b.int(17, d.viewer_count);
        b.text(18, Some(&row.json));
    })
}

/// How the events of a batch widen their lives: the room id of a live started without one, its start
/// to its earliest event and, for a replay (whose events are from the past), its end to the latest.
/// Gathered as the events are inserted (one walk over the batch); a batch nearly always holds one
/// live, so a short list beats a map.
#[derive(Default)]
struct LiveSpans(Vec<LiveSpan>);

struct LiveSpan {
    live: LiveId,
    room_id: i64,
    first: i64,
    last: i64,
}

impl LiveSpans {
    fn widen(&mut self, row: &EventRow) {
        match self.0.iter_mut().find(|s| s.live == row.live) {
            Some(span) => {
                span.first = span.first.min(row.ts);
                span.last = span.last.max(row.ts);
            }
            None => self.0.push(LiveSpan {
                live: row.live,
                room_id: row.room_id,
                first: row.ts,
                last: row.ts,
            }),
        }
    }

    fn write(&self, conn: &Connection) -> rusqlite::Result<()> {
        let mut update = conn.prepare_cached(
            "UPDATE lives SET \
             room_id = CASE WHEN room_id = 0 THEN ?2 ELSE room_id END, \
             started_at = min(started_at, ?3), \
             ended_at = CASE WHEN source = 'replay' THEN max(coalesce(ended_at, ?4), ?4) ELSE ended_at END \
             WHERE id = ?1",
        )?;
        for span in &self.0 {
            update.execute(params![span.live.0, span.room_id, span.first, span.last])?;
        }
        Ok(())
    }
}

/// What the writer last wrote to, or read from, a `buyers` row, so that a batch runs the upsert only
/// for the buyers it would change: most batches name the same viewers again and change nothing.
/// Another process writing the same buyers meanwhile can make this stale; the upsert's own conditions
/// still keep the latest handle, so staleness only delays an update until the next change.
#[derive(Debug)]
struct KnownBuyer {
    unique_id: String,
    nickname: String,
    first_seen: i64,
    /// `last_seen` as stored.
    stored_last: i64,
    /// The latest event time seen; `write_last_seen` stores it.
    latest_last: i64,
}

type BuyerCache = HashMap<i64, KnownBuyer>;

/// Past this many, the cache is emptied after the next `last_seen` write (about 100 bytes each).
const MAX_CACHED_BUYERS: usize = 200_000;

/// One upsert per buyer per batch rather than per event, and only for a buyer the row of which would
/// change (the same conditions as [`UPSERT_BUYER`]'s `WHERE`): a batch of likes and joins names far
/// fewer people than it has events, and mostly people already stored.
fn upsert_buyers(conn: &Connection, batch: &[Op], cache: &mut BuyerCache) -> rusqlite::Result<()> {
    struct Seen<'a> {
        latest: &'a UserRow,
        first: i64,
        last: i64,
    }
    let mut seen: HashMap<i64, Seen<'_>> = HashMap::new();
    for op in batch {
        let Op::Event(row) = op else { continue };
        let Some((user, id)) = row.user.as_ref().and_then(|u| Some((u, u.id?))) else {
            continue;
        };
        let entry = seen.entry(id).or_insert(Seen {
            latest: user,
            first: row.ts,
            last: row.ts,
        });
        if row.ts >= entry.last {
            entry.latest = user;
            entry.last = row.ts;
        }
        entry.first = entry.first.min(row.ts);
    }
    let mut changed: Vec<_> = seen
        .into_iter()
        .filter(|(id, s)| match cache.get_mut(id) {
            Some(known) => {
                let renamed =
                    s.latest.unique_id != known.unique_id || s.latest.nickname != known.nickname;
                let write = s.first < known.first_seen || (s.last >= known.stored_last && renamed);
                known.latest_last = known.latest_last.max(s.last);
                write
            }
            None => true,
        })
        .collect();
    // In key order, the B-tree is walked once.
    changed.sort_unstable_by_key(|(id, _)| *id);
    let mut upsert = conn.prepare_cached(UPSERT_BUYER)?;
    let mut read = conn.prepare_cached(
        "SELECT unique_id, nickname, first_seen, last_seen FROM buyers WHERE id = ?1",
    )?;
    for (id, s) in changed {
        upsert.execute(params![
            id,
            s.latest.unique_id,
            s.latest.nickname,
            s.latest.avatar_url,
            s.first,
            s.last,
        ])?;
        // The row as it is now, whatever the upsert decided.
        let (unique_id, nickname, first_seen, stored_last) =
            read.query_row([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
        let latest_last = cache
            .get(&id)
            .map_or(s.last, |k| k.latest_last.max(s.last))
            .max(stored_last);
        cache.insert(
            id,
            KnownBuyer {
                unique_id,
                nickname,
                first_seen,
                stored_last,
                latest_last,
            },
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::ConnectionState;
    use crate::store::test_support::{ROOM, chat, claim, gift, like, live, user};
    use crate::store::{LiveSource, Store};

    /// A writer on a new database in a temporary directory, with one live begun.
    struct Fixture {
        _dir: tempfile::TempDir,
        path: std::path::PathBuf,
        w: StoreWriter,
        l: LiveId,
    }

    fn start(config: WriterConfig) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let w = StoreWriter::spawn(&path, config).unwrap();
        let l = w.begin_live(live("shop")).unwrap();
        Fixture {
            _dir: dir,
            path,
            w,
            l,
        }
    }

    fn count(path: &Path, sql: &str) -> i64 {
        Store::open(path)
            .unwrap()
            .conn()
            .query_row(sql, [], |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn an_event_sent_twice_is_stored_once_even_by_another_writer() {
        let Fixture {
            _dir,
            path,
            w: watch,
            l: first,
        } = start(WriterConfig::default());
        let event = chat(
            5,
            user(42, "anna"),
            1_000,
            "jp 12 M",
            Some(claim("12", "M", 1)),
        );

        watch.send(first, &event).unwrap();
        watch.send(first, &event).unwrap();
        let stats = watch.finish().unwrap();
        assert_eq!((stats.events, stats.duplicates, stats.claims), (1, 1, 1));

        // A replay of the same live, later.
        let replay = StoreWriter::spawn(&path, WriterConfig::default()).unwrap();
        let second = replay
            .begin_live(NewLive {
                source: LiveSource::Replay,
                ..live("shop")
            })
            .unwrap();
        assert_ne!(first, second);
        replay.send(second, &event).unwrap();
        replay.send(second, &like(6, 42, 1_001)).unwrap();
        let stats = replay.finish().unwrap();
        assert_eq!((stats.events, stats.duplicates, stats.claims), (1, 1, 0));

        assert_eq!(count(&path, "SELECT count(*) FROM events"), 2);
        assert_eq!(count(&path, "SELECT count(*) FROM claims"), 1);
        assert_eq!(
            count(&path, "SELECT live_id FROM events WHERE msg_id = 5"),
            first.get()
        );
        assert_eq!(
            count(&path, "SELECT count(*) FROM lives WHERE source = 'replay'"),
            1
        );
    }

    #[test]
    fn buyers_are_keyed_by_user_id_and_keep_the_latest_handle() {
        let Fixture { _dir, path, w, l } = start(WriterConfig::default());
        w.send(l, &chat(1, user(42, "anna"), 1_000, "hi", None))
            .unwrap();
        w.flush().unwrap();
        // Renamed; and, in the same batch, an older event that arrives late.
        w.send(l, &chat(2, user(42, "anna_shop"), 3_000, "hello", None))
            .unwrap();
        w.send(l, &chat(3, user(42, "anna_old"), 500, "late", None))
            .unwrap();
        w.send(l, &like(4, 7, 2_000)).unwrap();
        w.flush().unwrap();
        // An older event in a later batch does not undo the rename either.
        w.send(l, &chat(5, user(42, "anna_older"), 200, "older", None))
            .unwrap();
        // Unchanged: the row is not rewritten now, but `finish` writes the exact time.
        w.flush().unwrap();
        w.send(l, &chat(6, user(42, "anna_shop"), 3_500, "again", None))
            .unwrap();
        w.finish().unwrap();

        let store = Store::open(&path).unwrap();
        let buyer: (String, String, String, i64, i64) = store
            .conn()
            .query_row(
                "SELECT unique_id, nickname, avatar_url, first_seen, last_seen FROM buyers WHERE id = 42",
                [],
                |r| r.try_into(),
            )
            .unwrap();
        assert_eq!(
            buyer,
            (
                "anna_shop".into(),
                "anna_shop ✨".into(),
                "https://p16.example/anna_shop.webp".into(),
                200,
                3_500
            )
        );
        assert_eq!(count(&path, "SELECT count(*) FROM buyers"), 2);
        // Every event of the person, whatever handle it was sent under.
        assert_eq!(
            count(&path, "SELECT count(*) FROM events WHERE user_id = 42"),
            5
        );
    }

    #[test]
    fn claims_are_recorded_in_order_of_arrival_with_their_buyer() {
        let Fixture { _dir, path, w, l } = start(WriterConfig::default());
        let anna = user(42, "anna");
        let bob = user(43, "bob");
        // Sent out of order: arrival order is by TikTok's time, then message id.
        w.send(
            l,
            &chat(30, anna.clone(), 2_000, "jp 3", Some(claim("3", "L", 1))),
        )
        .unwrap();
        w.send(
            l,
            &chat(20, bob.clone(), 1_000, "jp 2", Some(claim("2", "S", 2))),
        )
        .unwrap();
        w.send(
            l,
            &chat(10, anna.clone(), 1_000, "jp 1", Some(claim("1", "M", 3))),
        )
        .unwrap();
        w.send(l, &chat(40, bob, 1_500, "trop beau", None)).unwrap();
        w.send(l, &gift(50, 42, 1_600, 5, false)).unwrap();
        let stats = w.finish().unwrap();
        assert_eq!((stats.events, stats.claims), (5, 3));

        let store = Store::open(&path).unwrap();
        let mut stmt = store
            .conn()
            .prepare(
                "SELECT c.msg_id, c.buyer_id, c.item, c.variant, c.quantity, c.raw, c.live_id, e.msg_id
                 FROM claims c JOIN events e ON e.id = c.event_id ORDER BY c.ts, c.msg_id",
            )
            .unwrap();
        type ClaimRow = (i64, i64, String, String, u32, String, i64, i64);
        let rows: Vec<ClaimRow> = stmt
            .query_map([], |r| r.try_into())
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let l = l.get();
        assert_eq!(
            rows,
            [
                (10, 42, "1".into(), "M".into(), 3, "jp 1 M x3".into(), l, 10),
                (20, 43, "2".into(), "S".into(), 2, "jp 2 S x2".into(), l, 20),
                (30, 42, "3".into(), "L".into(), 1, "jp 3 L x1".into(), l, 30),
            ]
        );
    }

    #[test]
    fn a_batch_mixing_new_claims_and_duplicates_gives_each_claim_its_own_event_and_sale() {
        let Fixture { _dir, path, w, l } = start(WriterConfig {
            max_batch: 1000,
            max_delay: Duration::from_secs(3600),
            auto_sale: Some(AutoSale {
                prices: PriceList::default(),
            }),
            ..WriterConfig::default()
        });
        let is_claim = |msg: u64| msg.is_multiple_of(7) || [3, 16, 17].contains(&msg);
        let event = |msg: u64| {
            if is_claim(msg) {
                let item = msg.to_string();
                chat(
                    msg,
                    user(msg % 5 + 1, "anna"),
                    msg as i64,
                    "jp",
                    Some(claim(&item, "M", 1)),
                )
            } else {
                like(msg, msg % 5 + 1, msg as i64)
            }
        };
        // Stored first: messages 1 to 5, message 3 a claim.
        for msg in 1..=5 {
            w.send(l, &event(msg)).unwrap();
        }
        w.flush().unwrap();
        // One batch of 41 events: messages 1 to 5 again, 21 (a claim) twice in a row, and claims next
        // to each other (16, 17).
        for msg in 1..=40 {
            w.send(l, &event(msg)).unwrap();
            if msg == 21 {
                w.send(l, &event(msg)).unwrap();
            }
        }
        let stats = w.finish().unwrap();
        let claims = (1..=40).filter(|&m| is_claim(m)).count() as u64;
        assert_eq!(
            (
                stats.events,
                stats.duplicates,
                stats.claims,
                stats.auto_sales
            ),
            (40, 6, claims, claims)
        );
        assert_eq!(count(&path, "SELECT count(*) FROM claims"), claims as i64);
        // Each claim and its sale point at the event of their own message.
        assert_eq!(
            count(
                &path,
                "SELECT count(*) FROM claims c JOIN events e ON e.id = c.event_id AND e.msg_id = c.msg_id
                 JOIN sales s ON s.claim_id = c.id AND s.msg_id = c.msg_id AND s.item = CAST(c.msg_id AS TEXT)"
            ),
            claims as i64
        );
        // Ids follow the order of arrival.
        assert_eq!(
            count(
                &path,
                "SELECT count(*) FROM events a JOIN events b ON a.msg_id < b.msg_id AND a.id > b.id"
            ),
            0
        );
    }

    #[test]
    fn full_batches_commit_at_once_and_finish_flushes_the_rest() {
        let Fixture { _dir, path, w, l } = start(WriterConfig {
            max_batch: 1000,
            max_delay: Duration::from_secs(3600),
            ..WriterConfig::default()
        });
        for msg in 1..=2500 {
            w.send(l, &like(msg, msg % 50 + 1, msg as i64)).unwrap();
        }
        let stats = w.finish().unwrap();
        assert_eq!((stats.events, stats.transactions), (2500, 3));
        assert_eq!(count(&path, "SELECT count(*) FROM events"), 2500);
        assert_eq!(count(&path, "SELECT count(*) FROM buyers"), 50);
        // The three commits' ids and times, in one span (adjacent, and under SPAN_IDS ids together).
        assert_eq!(
            count(
                &path,
                "SELECT count(*) FROM event_spans WHERE first_id = 1 AND last_id = 2500 \
                 AND min_ts = 1 AND max_ts = 2500"
            ),
            count(&path, "SELECT count(*) FROM event_spans")
        );
        assert_eq!(count(&path, "SELECT count(*) FROM event_spans"), 1);
    }

    #[test]
    fn every_event_is_in_a_span_of_its_time_whatever_else_writes_the_table() {
        let Fixture { _dir, path, w, l } = start(WriterConfig::default());
        let other = Store::open(&path).unwrap();
        let write_other = |id: Option<i64>, msg: i64, ts: i64| {
            other
                .conn()
                .execute(
                    "INSERT INTO events (id, live_id, room_id, msg_id, type, ts, json) \
                     VALUES (?1, ?2, 7, ?3, 'like', ?4, '{}')",
                    params![id, l.get(), msg, ts],
                )
                .unwrap();
        };
        for msg in 1..=10 {
            w.send(l, &like(msg, 1, 1_000 + msg as i64)).unwrap();
        }
        w.flush().unwrap();
        // A program that records no span (an older tiklive, the shell) writes between two commits.
        write_other(None, 1_000, 5);
        for msg in 11..=20 {
            w.send(l, &like(msg, 1, 1_000 + msg as i64)).unwrap();
        }
        w.flush().unwrap();
        // Past the largest id SQLite has, it gives ids at random, not one after another.
        write_other(Some(i64::MAX), 1_001, 7);
        for msg in 21..=60 {
            w.send(l, &like(msg, 1, 1_000 + msg as i64)).unwrap();
        }
        w.finish().unwrap();
        assert_eq!(count(&path, "SELECT count(*) FROM events"), 62);
        let outside = "SELECT count(*) FROM events e WHERE NOT EXISTS (SELECT 1 FROM event_spans s \
                       WHERE e.id BETWEEN s.first_id AND s.last_id AND e.ts BETWEEN s.min_ts AND s.max_ts)";
        // Only the last event of the other program, which no commit followed, has no span yet.
        assert_eq!(count(&path, outside), 1);
        assert_eq!(
            count(
                &path,
                "SELECT count(*) FROM event_spans a JOIN event_spans b \
                          ON a.first_id < b.first_id AND a.last_id >= b.first_id"
            ),
            0,
            "no two spans overlap"
        );
    }

    #[test]
    fn a_quiet_batch_commits_after_max_delay() {
        let Fixture { _dir, path, w, l } = start(WriterConfig {
            max_delay: Duration::from_millis(50),
            ..WriterConfig::default()
        });
        let reader = Store::open(&path).unwrap();
        let visible = |n: i64| {
            let start = Instant::now();
            loop {
                let got: i64 = reader
                    .conn()
                    .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
                    .unwrap();
                if got == n {
                    return start.elapsed();
                }
                assert!(start.elapsed() < Duration::from_secs(5), "never committed");
                std::thread::sleep(Duration::from_millis(5));
            }
        };
        for n in 1..=2 {
            w.send(l, &like(n as u64, 1, n)).unwrap();
            // 50 ms, with a wide margin for a loaded CI machine.
            assert!(visible(n) < Duration::from_secs(1));
        }
        assert_eq!(w.finish().unwrap().transactions, 2);
    }

    #[test]
    fn last_seen_is_written_every_so_often_while_the_writer_runs() {
        for (every, written) in [(Duration::ZERO, true), (Duration::from_secs(3600), false)] {
            let Fixture { _dir, path, w, l } = start(WriterConfig {
                max_delay: Duration::from_millis(10),
                last_seen_every: every,
                ..WriterConfig::default()
            });
            let reader = Store::open(&path).unwrap();
            let read = || -> (i64, i64) {
                reader
                    .conn()
                    .query_row(
                        "SELECT (SELECT count(*) FROM events), \
                                (SELECT last_seen FROM buyers WHERE id = 42)",
                        [],
                        |r| Ok((r.get(0)?, r.get::<_, Option<i64>>(1)?.unwrap_or(0))),
                    )
                    .unwrap()
            };
            let wait = |until: &dyn Fn((i64, i64)) -> bool| {
                let start = Instant::now();
                while !until(read()) {
                    assert!(start.elapsed() < Duration::from_secs(5), "{:?}", read());
                    std::thread::sleep(Duration::from_millis(5));
                }
            };
            w.send(l, &chat(1, user(42, "anna"), 1_000, "hi", None))
                .unwrap();
            wait(&|(events, _)| events == 1);
            // The same person 89 s later, unchanged: not a reason to rewrite the row in the batch.
            w.send(l, &chat(2, user(42, "anna"), 90_000, "again", None))
                .unwrap();
            wait(&|(events, _)| events == 2);
            if written {
                wait(&|(_, last_seen)| last_seen == 90_000);
            } else {
                std::thread::sleep(Duration::from_millis(100));
                assert_eq!(read(), (2, 1_000), "written before its time");
            }
            w.finish().unwrap();
            assert_eq!(read(), (2, 90_000), "finish writes the exact time");
        }
    }

    #[test]
    fn a_full_channel_makes_send_wait_and_loses_nothing() {
        let Fixture { _dir, path, w, l } = start(WriterConfig {
            channel_capacity: 1,
            max_batch: 100,
            max_delay: Duration::from_millis(10),
            ..WriterConfig::default()
        });
        // Another program holds the write lock for a while: the writer stalls like on a slow disk.
        let blocker = rusqlite::Connection::open(&path).unwrap();
        blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
        let producer = std::thread::spawn(move || {
            for msg in 1..=10_000u64 {
                w.send(l, &like(msg, msg % 100 + 1, msg as i64)).unwrap();
            }
            w
        });
        std::thread::sleep(Duration::from_millis(300));
        blocker.execute_batch("COMMIT").unwrap();
        let stats = producer.join().unwrap().finish().unwrap();
        assert_eq!(stats.events, 10_000);
        assert!(stats.producer_waits > 0, "{stats:?}");
        assert_eq!(count(&path, "SELECT count(*) FROM events"), 10_000);
    }

    #[test]
    fn connection_lines_and_end_live_update_the_live_not_the_events() {
        let Fixture { _dir, path, w, .. } = start(WriterConfig::default());
        let l = w
            .begin_live(NewLive {
                room_id: 0,
                ..live("shop")
            })
            .unwrap();
        let line = |state, ts_ms| Event {
            ts_ms,
            ..Event::connection(
                ROOM,
                EventData::Connection {
                    state,
                    attempt: None,
                    delay_ms: None,
                    reason: None,
                },
            )
        };
        w.send(l, &line(ConnectionState::Connected, 1_000)).unwrap();
        w.send(l, &line(ConnectionState::Disconnected, 9_000))
            .unwrap();
        let mut no_id = like(0, 1, 2_000);
        no_id.msg_id = 0;
        w.send(l, &no_id).unwrap();
        w.flush().unwrap();
        let column = |name: &str| {
            count(
                &path,
                &format!("SELECT {name} FROM lives WHERE id = {}", l.get()),
            )
        };
        let ended = || column("ended_at");
        assert_eq!(column("room_id"), ROOM as i64);
        assert_eq!(ended(), 9_000);
        let title = || -> Option<String> {
            rusqlite::Connection::open(&path)
                .unwrap()
                .query_row("SELECT title FROM lives WHERE id = ?1", [l.get()], |r| {
                    r.get(0)
                })
                .unwrap()
        };
        assert_eq!(title().as_deref(), Some("Vente du soir"), "as begun");
        w.set_live_title(l, "Vente live 🛍️").unwrap();
        w.flush().unwrap();
        assert_eq!(title().as_deref(), Some("Vente live 🛍️"));
        w.set_live_title(l, "Dernières pièces").unwrap();
        w.end_live(l, 9_500).unwrap();
        let stats = w.finish().unwrap();
        assert_eq!(ended(), 9_500);
        assert_eq!(
            title().as_deref(),
            Some("Dernières pièces"),
            "a later title wins, the end keeps it"
        );
        assert_eq!(count(&path, "SELECT count(*) FROM events"), 0);
        assert_eq!((stats.events, stats.skipped), (0, 1));
    }

    #[test]
    fn an_error_on_the_writer_thread_surfaces_on_send_and_finish() {
        let Fixture { _dir, w, .. } = start(WriterConfig::default());
        // A live that is not in this database breaks the foreign key.
        w.send(LiveId(999), &like(1, 1, 1)).unwrap();
        let err = w.flush().unwrap_err();
        assert!(
            matches!(&err, StoreError::WriterGone(why) if why.contains("FOREIGN KEY")),
            "{err:?}"
        );
        let err = w.send(LiveId(999), &like(2, 1, 2)).unwrap_err();
        assert!(matches!(err, StoreError::WriterGone(_)), "{err:?}");
        let err = w.finish().unwrap_err();
        assert!(matches!(err, StoreError::Sqlite(_)), "{err:?}");
    }
}
