//! The one path from a decoded fetch result to NDJSON lines, shared by `watch` and `replay` so that a
//! replayed recording prints exactly what the live run printed. Rendering (decode, filter, serialise)
//! is pure and runs on any thread; emitting (de-duplication, stream end, writing) is sequential.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::io::{self, Write};

use crate::events::{DecodeOptions, EVENT_TYPES, Event, EventData, decode_message};
use crate::protocol::FetchResult;
use crate::store::{LiveId, PreparedEvent, SEND_CHUNK, StoreError, StoreWriter, WriterStats};

/// Counters reported at the end of a run: nothing is dropped without being counted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub frames: u64,
    /// Frames that were not valid protobuf or whose payload did not inflate.
    pub bad_frames: u64,
    pub messages: u64,
    /// Messages whose payload did not decode for their method (skipped).
    pub bad_messages: u64,
    /// Messages with a method tiklive does not model, by method.
    pub unknown_methods: BTreeMap<String, u64>,
    pub printed: u64,
    pub duplicates: u64,
}

impl Stats {
    pub fn merge(&mut self, other: &Stats) {
        self.frames += other.frames;
        self.bad_frames += other.bad_frames;
        self.messages += other.messages;
        self.bad_messages += other.bad_messages;
        for (method, n) in &other.unknown_methods {
            *self.unknown_methods.entry(method.clone()).or_default() += n;
        }
        self.printed += other.printed;
        self.duplicates += other.duplicates;
    }

    pub fn unknown_total(&self) -> u64 {
        self.unknown_methods.values().sum()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown event type {0:?} in --filter (known: {known})", known = EVENT_TYPES.join(", "))]
pub struct UnknownEventType(pub String);

/// Which events reach the output.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// `None` means every type.
    types: Option<Vec<&'static str>>,
    claims_only: bool,
    gift_streaks: bool,
}

impl EventFilter {
    pub fn new(
        types: &[String],
        claims_only: bool,
        gift_streaks: bool,
    ) -> Result<Self, UnknownEventType> {
        let types = if types.is_empty() {
            None
        } else {
            let mut known = Vec::new();
            for t in types.iter().flat_map(|t| t.split(',')).map(str::trim) {
                if t.is_empty() {
                    continue;
                }
                let name = EVENT_TYPES
                    .iter()
                    .find(|k| **k == t)
                    .ok_or_else(|| UnknownEventType(t.to_owned()))?;
                known.push(*name);
            }
            // An empty list (`TIKLIVE_FILTER=` in .env) means no filter, not "print nothing".
            (!known.is_empty()).then_some(known)
        };
        Ok(EventFilter {
            types,
            claims_only,
            gift_streaks,
        })
    }

    pub fn accepts(&self, event: &Event) -> bool {
        if let EventData::Gift {
            streaking: true, ..
        } = event.data
            && !self.gift_streaks
        {
            return false;
        }
        if self.claims_only && event.claim().is_none() {
            return false;
        }
        match &self.types {
            Some(types) => types.contains(&event.data.type_name()),
            None => true,
        }
    }
}

/// One rendered line: its message id (for de-duplication) and where it ends in the batch buffer.
#[derive(Debug, Clone, Copy)]
struct Line {
    msg_id: u64,
    end: usize,
    ends_stream: bool,
}

/// Lines rendered from one or more fetch results, ready to be emitted in order.
#[derive(Debug, Default)]
pub struct RenderedBatch {
    buf: Vec<u8>,
    lines: Vec<Line>,
    /// With a store, what each line stores, aligned with `lines` (`None`: nothing to store).
    rows: Vec<Option<PreparedEvent>>,
    pub stats: Stats,
}

impl RenderedBatch {
    pub fn clear(&mut self) {
        self.buf.clear();
        self.lines.clear();
        self.rows.clear();
        self.stats = Stats::default();
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }
}

/// Decodes, filters and serialises events. Cheap to clone and safe to share between threads.
#[derive(Debug, Clone, Default)]
pub struct Renderer {
    pub decode: DecodeOptions,
    pub filter: EventFilter,
    /// When set, every printed event is also prepared for the store, as a row of this live.
    pub store_live: Option<LiveId>,
}

impl Renderer {
    pub fn new(decode: DecodeOptions, filter: EventFilter) -> Self {
        Renderer {
            decode,
            filter,
            store_live: None,
        }
    }

    /// Renders every message of a fetch result; messages that fail to decode are counted and skipped.
    pub fn render_result(&self, result: &FetchResult, out: &mut RenderedBatch) {
        let fallback_ts = result.now as i64;
        for msg in &result.messages {
            out.stats.messages += 1;
            match decode_message(msg, fallback_ts, &self.decode) {
                Ok(event) => {
                    if let EventData::Unknown { method } = &event.data {
                        *out.stats.unknown_methods.entry(method.clone()).or_default() += 1;
                    }
                    self.render_event(&event, out);
                }
                Err(err) => {
                    out.stats.bad_messages += 1;
                    tracing::debug!(method = %msg.method, msg_id = msg.msg_id, %err, "skipped a message that did not decode");
                }
            }
        }
    }

    /// Renders one event if the filter lets it through. Stream-end events are always rendered so that
    /// the emitter can stop, but are only printed when the filter accepts them.
    pub fn render_event(&self, event: &Event, out: &mut RenderedBatch) {
        let accepted = self.filter.accepts(event);
        let ends_stream = event.ends_stream();
        if !accepted && !ends_stream {
            return;
        }
        let start = out.buf.len();
        if accepted {
            event.write_json(&mut out.buf);
        }
        if let Some(live) = self.store_live {
            // The stored JSON is the printed line, without its newline.
            let json = &out.buf[start..out.buf.len().saturating_sub(1).max(start)];
            out.rows.push(
                accepted
                    .then(|| PreparedEvent::new(live, event, json))
                    .flatten(),
            );
        }
        out.lines.push(Line {
            msg_id: event.msg_id,
            end: out.buf.len(),
            ends_stream,
        });
    }
}

/// Remembers the last `capacity` message ids, so a reconnect that resumes from an older cursor, or a
/// recording that holds the same message twice, never prints a message twice.
#[derive(Debug)]
pub struct Dedupe {
    seen: HashSet<u64>,
    order: VecDeque<u64>,
    capacity: usize,
}

impl Dedupe {
    pub fn new(capacity: usize) -> Self {
        Dedupe {
            seen: HashSet::with_capacity(capacity.min(1 << 16)),
            order: VecDeque::with_capacity(capacity.min(1 << 16)),
            capacity: capacity.max(1),
        }
    }

    /// True the first time an id is offered. Id 0 (no id) is never a duplicate.
    pub fn first_time(&mut self, id: u64) -> bool {
        if id == 0 {
            return true;
        }
        if !self.seen.insert(id) {
            return false;
        }
        if self.order.len() == self.capacity
            && let Some(old) = self.order.pop_front()
        {
            self.seen.remove(&old);
        }
        self.order.push_back(id);
        true
    }
}

/// What the emitter saw in a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Emitted {
    Continue,
    /// A control message ended the live; nothing after it is printed.
    StreamEnded,
}

/// Writes rendered lines in order, skipping duplicates, and stops at the end of the stream. With a
/// store attached, every line written is also stored: what is printed is what is stored.
pub struct Emitter<W: Write> {
    out: W,
    dedupe: Dedupe,
    flush_each_line: bool,
    store: Option<Store>,
    pub stats: Stats,
}

/// The store an emitter writes to, and the first error that stopped it.
struct Store {
    writer: StoreWriter,
    live: LiveId,
    /// Rows not handed to the writer yet: they go in chunks, at the latest at the end of each batch.
    pending: Vec<PreparedEvent>,
    failure: Option<StoreError>,
}

impl<W: Write> Emitter<W> {
    pub fn new(out: W, dedupe_window: usize, flush_each_line: bool) -> Self {
        Emitter {
            out,
            dedupe: Dedupe::new(dedupe_window),
            flush_each_line,
            store: None,
            stats: Stats::default(),
        }
    }

    /// Stores every line emitted from now on, as events of `live` (the renderer's `store_live`).
    pub fn attach_store(&mut self, writer: StoreWriter, live: LiveId) {
        self.store = Some(Store {
            writer,
            live,
            pending: Vec::with_capacity(SEND_CHUNK),
            failure: None,
        });
    }

    /// Commits what was stored and stops the writer: what it did, or why storing stopped. A store
    /// error does not stop the printing (a seller keeps seeing the live), but it is reported here.
    pub fn finish_store(&mut self) -> Option<Result<WriterStats, StoreError>> {
        self.send_pending();
        let store = self.store.take()?;
        let finished = store.writer.finish();
        Some(match store.failure {
            Some(first) => Err(first),
            None => finished,
        })
    }

    /// Queues a row for the store; hands a full chunk to the writer.
    fn store_row(&mut self, row: PreparedEvent) {
        let Some(store) = self.store.as_mut() else {
            return;
        };
        store.pending.push(row);
        if store.pending.len() >= SEND_CHUNK {
            self.send_pending();
        }
    }

    /// Hands the queued rows to the writer.
    fn send_pending(&mut self) {
        let Some(store) = self.store.as_mut() else {
            return;
        };
        if store.pending.is_empty() {
            return;
        }
        let rows = std::mem::replace(&mut store.pending, Vec::with_capacity(SEND_CHUNK));
        self.store(|w, _| w.send_prepared(rows));
    }

    fn store(&mut self, send: impl FnOnce(&StoreWriter, LiveId) -> Result<(), StoreError>) {
        let Some(store) = self.store.as_mut() else {
            return;
        };
        if store.failure.is_some() {
            return;
        }
        if let Err(err) = send(&store.writer, store.live) {
            tracing::error!(%err, "the database stopped accepting events; printing goes on, storing has stopped");
            store.failure = Some(err);
        }
    }

    /// Emits a batch. An `Err` is an output error (for instance a closed pipe): the caller ends quietly.
    pub fn emit(&mut self, batch: &mut RenderedBatch) -> io::Result<Emitted> {
        self.stats.merge(&batch.stats);
        let mut start = 0;
        let mut rows = std::mem::take(&mut batch.rows).into_iter();
        for line in &batch.lines {
            let bytes = &batch.buf[start..line.end];
            start = line.end;
            let row = rows.next().flatten();
            if !self.dedupe.first_time(line.msg_id) {
                self.stats.duplicates += 1;
                continue;
            }
            if !bytes.is_empty() {
                // Stored before it is written: a closed stdout must not lose the line that found it.
                match row {
                    Some(row) => self.store_row(row),
                    None => self.store(|w, _| {
                        w.skip();
                        Ok(())
                    }),
                }
                self.out.write_all(bytes)?;
                self.stats.printed += 1;
                if self.flush_each_line {
                    self.out.flush()?;
                }
            }
            if line.ends_stream {
                self.send_pending();
                self.out.flush()?;
                return Ok(Emitted::StreamEnded);
            }
        }
        self.send_pending();
        Ok(Emitted::Continue)
    }

    /// Stores a line tiklive makes itself without printing it (after stdout was closed).
    pub fn store_event(&mut self, event: &Event) {
        self.send_pending();
        self.store(|w, live| w.send(live, event));
    }

    /// Stores the live's title (from room info), after the rows queued before it.
    pub fn store_live_title(&mut self, title: &str) {
        self.send_pending();
        self.store(|w, live| w.set_live_title(live, title));
    }

    /// Writes a line tiklive makes itself (connection changes); never de-duplicated.
    pub fn emit_event(&mut self, renderer: &Renderer, event: &Event) -> io::Result<()> {
        self.store_event(event);
        let mut batch = RenderedBatch::default();
        renderer.render_event(event, &mut batch);
        if !batch.buf.is_empty() {
            self.out.write_all(&batch.buf)?;
            self.out.flush()?;
            self.stats.printed += 1;
        }
        Ok(())
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedupe_forgets_the_oldest_id_past_its_window() {
        let mut d = Dedupe::new(2);
        assert!(d.first_time(1));
        assert!(!d.first_time(1));
        assert!(d.first_time(2));
        assert!(d.first_time(3)); // evicts 1
        assert!(d.first_time(1));
        assert!(!d.first_time(3));
        assert!(d.first_time(0) && d.first_time(0));
    }

    #[test]
    fn filter_rejects_unknown_types_and_splits_commas() {
        assert!(EventFilter::new(&["chat,gift".into()], false, false).is_ok());
        let err = EventFilter::new(&["chat,gifts".into()], false, false).unwrap_err();
        assert!(err.to_string().contains("\"gifts\""));
    }
}
