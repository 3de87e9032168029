//! Where, in the order of their ids, the events of a time range lie. `events` has no index on its time
//! (keeping one up to date was a sixth of the writer's work); events are stored in about the order of
//! their times, so `event_spans` maps runs of ids to the earliest and latest time of their events, and
//! readers turn a time range into the runs of ids to scan, filtering the time as they go.
//!
//! The writer records one span per commit, or widens the span before when the two are adjacent and
//! small. Every id a span covers holds an event, so nothing can be written inside a span; triggers
//! (schema 5) keep it so when the `sqlite3` shell deletes events or changes their ids or times. Ids
//! that no span covers (events written some other way: an older tiklive still running when the
//! database was upgraded, or the shell) are read whatever the time range, until the writer's next
//! commit gives them a span.

use std::cmp::Reverse;

use rusqlite::{Connection, OptionalExtension, Row, params};

/// A span widens while it has fewer ids than this: any event of the span that may match means reading
/// all of it, so spans stay small, but merging commits keeps a few rows per live rather than one per
/// 100 ms commit.
pub const SPAN_IDS: i64 = 4096;

/// The events with ids `first..=last`, and the range of their times when known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdSpan {
    pub first: i64,
    pub last: i64,
    /// The earliest and the latest time (Unix ms) of the span's events; `None` for ids no span covers.
    pub times: Option<(i64, i64)>,
}

impl IdSpan {
    /// Whether an event of the span may have a time in `from..=to`.
    pub fn may_hold(&self, from: i64, to: i64) -> bool {
        self.times
            .is_none_or(|(earliest, latest)| latest >= from && earliest <= to)
    }

    /// The latest time an event of the span may have.
    fn latest(&self) -> i64 {
        self.times.map_or(i64::MAX, |(_, latest)| latest)
    }
}

/// A row of `event_spans`.
#[derive(Debug, Clone, Copy)]
struct Recorded {
    first: i64,
    last: i64,
    earliest: i64,
    latest: i64,
}

impl Recorded {
    /// Reads (first id, last id, earliest time, latest time).
    fn of(row: &Row<'_>) -> rusqlite::Result<Recorded> {
        Ok(Recorded {
            first: row.get(0)?,
            last: row.get(1)?,
            earliest: row.get(2)?,
            latest: row.get(3)?,
        })
    }

    /// The smallest span holding both.
    fn merge(self, other: Recorded) -> Recorded {
        Recorded {
            first: self.first.min(other.first),
            last: self.last.max(other.last),
            earliest: self.earliest.min(other.earliest),
            latest: self.latest.max(other.latest),
        }
    }

    fn insert(self, conn: &Connection) -> rusqlite::Result<()> {
        conn.prepare_cached(
            "INSERT INTO event_spans (first_id, last_id, min_ts, max_ts) VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![self.first, self.last, self.earliest, self.latest])?;
        Ok(())
    }
}

impl From<Recorded> for IdSpan {
    fn from(r: Recorded) -> IdSpan {
        IdSpan {
            first: r.first,
            last: r.last,
            times: Some((r.earliest, r.latest)),
        }
    }
}

/// The ids and times of the events a commit adds, recorded as spans of consecutive ids.
#[derive(Debug, Default)]
pub(crate) struct Added(Option<Recorded>);

impl Added {
    /// Event `id`, at time `ts`, was just inserted. SQLite gives the id after the largest, so a
    /// commit's ids follow each other; when they do not (past `i64::MAX`, it picks ids at random),
    /// the run so far is recorded on its own.
    pub(crate) fn push(&mut self, conn: &Connection, id: i64, ts: i64) -> rusqlite::Result<()> {
        match &mut self.0 {
            Some(run) if run.last.checked_add(1) == Some(id) => {
                run.last = id;
                run.earliest = run.earliest.min(ts);
                run.latest = run.latest.max(ts);
                Ok(())
            }
            run => match run.replace(Recorded {
                first: id,
                last: id,
                earliest: ts,
                latest: ts,
            }) {
                Some(done) => record(conn, done),
                None => Ok(()),
            },
        }
    }

    /// Records the last run, in the commit's transaction.
    pub(crate) fn record(self, conn: &Connection) -> rusqlite::Result<()> {
        self.0.map_or(Ok(()), |run| record(conn, run))
    }
}

/// Records, inside the transaction that wrote them, that events `span.first..=span.last` have times
/// `span.earliest..=span.latest`. The span merges with the one it continues while the two stay under
/// [`SPAN_IDS`] ids, and with any it overlaps (an id freed without the triggers knowing, by a `REPLACE`
/// in the shell, and given again), so that spans never overlap. Events between the span before and this one, written without a span (by
/// an older tiklive still running after the upgrade, or the `sqlite3` shell), get a span of their own
/// first, so that readers do not have to read them whatever the time range.
fn record(conn: &Connection, mut span: Recorded) -> rusqlite::Result<()> {
    let mut before = conn.prepare_cached(
        "SELECT first_id, last_id, min_ts, max_ts FROM event_spans WHERE first_id <= ?1 \
         ORDER BY first_id DESC LIMIT 1",
    )?;
    let mut delete = conn.prepare_cached("DELETE FROM event_spans WHERE first_id = ?1")?;
    let previous = loop {
        let other = before.query_row([span.last], Recorded::of).optional()?;
        match other {
            Some(other)
                if other.last >= span.first
                    || (other.last.checked_add(1) == Some(span.first)
                        && i128::from(span.last) - i128::from(other.first)
                            < i128::from(SPAN_IDS)) =>
            {
                delete.execute([other.first])?;
                span = span.merge(other);
            }
            other => break other,
        }
    };
    // The ids after the span before (if any) and before this one.
    let unrecorded = previous
        .map_or(Some(i64::MIN), |p| p.last.checked_add(1))
        .filter(|&from| from < span.first);
    if let Some(from) = unrecorded
        && let Some(run) = whole_run(conn, from, span.first - 1)?
    {
        run.insert(conn)?;
    }
    span.insert(conn)
}

/// The events with ids `from..=to` as one span, if they fill every id from the first to the last and
/// all have integer times: an event could later be written at a hole with any time, and one written by
/// hand may have a time of any type.
fn whole_run(conn: &Connection, from: i64, to: i64) -> rusqlite::Result<Option<Recorded>> {
    conn.prepare_cached(
        "SELECT min(id), max(id), min(ts), max(ts), count(*), \
                count(*) = total(typeof(ts) = 'integer') \
         FROM events WHERE id BETWEEN ?1 AND ?2",
    )?
    .query_row([from, to], |r| {
        let (Some(first), Some(last)) = (r.get::<_, Option<i64>>(0)?, r.get::<_, Option<i64>>(1)?)
        else {
            return Ok(None);
        };
        let (count, integer_times): (i64, bool) = (r.get(4)?, r.get(5)?);
        let whole = i128::from(last) - i128::from(first) + 1 == i128::from(count);
        // The times are read only once known to be integers.
        if !(whole && integer_times) {
            return Ok(None);
        }
        Recorded::of(r).map(Some)
    })
}

/// Every stored event's id, in order: the recorded spans, and between them the runs of ids that hold
/// events no span covers (narrowed to the first and last such id), with no time.
pub fn id_spans(conn: &Connection) -> rusqlite::Result<Vec<IdSpan>> {
    let recorded: Vec<IdSpan> = conn
        .prepare_cached(
            "SELECT first_id, last_id, min_ts, max_ts FROM event_spans ORDER BY first_id",
        )?
        .query_map([], |r| Recorded::of(r).map(IdSpan::from))?
        .collect::<Result<_, _>>()?;
    // Two subqueries, each read from one end of the id range.
    let mut held = conn.prepare_cached(
        "SELECT (SELECT min(id) FROM events WHERE id BETWEEN ?1 AND ?2), \
                (SELECT max(id) FROM events WHERE id BETWEEN ?1 AND ?2)",
    )?;
    let mut uncovered = |from: i64, to: i64| -> rusqlite::Result<Option<IdSpan>> {
        let ids: (Option<i64>, Option<i64>) =
            held.query_row([from, to], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(ids.0.zip(ids.1).map(|(first, last)| IdSpan {
            first,
            last,
            times: None,
        }))
    };
    let mut spans = Vec::with_capacity(recorded.len() + 1);
    // The first id not accounted for yet; `None` once past `i64::MAX`.
    let mut next = Some(i64::MIN);
    for span in recorded {
        if let Some(from) = next.filter(|&from| from < span.first) {
            spans.extend(uncovered(from, span.first - 1)?);
        }
        next = span
            .last
            .checked_add(1)
            .and_then(|after| next.map(|n| n.max(after)));
        spans.push(span);
    }
    if let Some(from) = next {
        spans.extend(uncovered(from, i64::MAX)?);
    }
    Ok(spans)
}

/// The smallest range of ids holding every event of `spans` that may have a time in `from..=to`.
pub fn hull(spans: &[IdSpan], from: i64, to: i64) -> Option<(i64, i64)> {
    let mut holding = spans.iter().filter(|s| s.may_hold(from, to));
    let first = holding.next()?;
    let last = holding.next_back().unwrap_or(first);
    Some((first.first, last.last))
}

/// The `limit` newest rows, by `key` (a time, then whatever breaks ties), that `read` finds in the
/// spans that may hold a time in `from..=to`; newest first. `read(first, last, limit)` returns at most
/// `limit` rows of the events with ids `first..=last`, newest first. Spans are read from the latest
/// times down, until none is left that could hold a row newer than the `limit`-th found.
pub fn newest<T>(
    spans: &[IdSpan],
    (from, to): (i64, i64),
    limit: usize,
    mut read: impl FnMut(i64, i64, usize) -> rusqlite::Result<Vec<T>>,
    key: impl Fn(&T) -> (i64, i64),
) -> rusqlite::Result<Vec<T>> {
    let mut order: Vec<&IdSpan> = spans.iter().filter(|s| s.may_hold(from, to)).collect();
    order.sort_by_key(|s| Reverse(s.latest()));
    let mut found: Vec<T> = Vec::new();
    for span in order {
        if limit == 0 || (found.len() == limit && span.latest() < key(&found[limit - 1]).0) {
            break;
        }
        found.extend(read(span.first, span.last, limit)?);
        found.sort_by_key(|row| Reverse(key(row)));
        found.truncate(limit);
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    /// A span as (first id, last id, times).
    type Row = (i64, i64, Option<(i64, i64)>);

    fn spans(store: &Store) -> Vec<Row> {
        id_spans(store.conn())
            .unwrap()
            .into_iter()
            .map(|s| (s.first, s.last, s.times))
            .collect()
    }

    /// Events with these ids and times, in live 1, written without spans.
    fn insert_events(store: &Store, events: &[(i64, i64)]) {
        let conn = store.conn();
        conn.execute(
            "INSERT OR IGNORE INTO lives (id, host, room_id, source, started_at) \
             VALUES (1, 'shop', 7, 'watch', 0)",
            [],
        )
        .unwrap();
        for (id, ts) in events {
            conn.execute(
                "INSERT INTO events (id, live_id, room_id, msg_id, type, ts, json) \
                 VALUES (?1, 1, 7, ?1, 'chat', ?2, '{}')",
                [id, ts],
            )
            .unwrap();
        }
    }

    /// Records the span as the writer does.
    fn record_span(conn: &Connection, first: i64, last: i64, earliest: i64, latest: i64) {
        record(
            conn,
            Recorded {
                first,
                last,
                earliest,
                latest,
            },
        )
        .unwrap();
    }

    fn recorded(conn: &Connection) -> Vec<(i64, i64, i64, i64)> {
        conn.prepare("SELECT * FROM event_spans ORDER BY first_id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn a_commit_continues_the_span_before_until_it_is_full_and_never_overlaps_one() {
        let store = Store::open_in_memory().unwrap();
        let conn = store.conn();
        insert_events(&store, &[(1, 100), (2, 90), (3, 120), (4, 110)]);
        record_span(conn, 1, 2, 90, 100);
        record_span(conn, 3, 4, 110, 120);
        assert_eq!(spans(&store), [(1, 4, Some((90, 120)))]);

        // A span of SPAN_IDS ids is full: the next commit starts its own.
        record_span(conn, 5, SPAN_IDS, 130, 140);
        record_span(conn, SPAN_IDS + 1, SPAN_IDS + 1, 150, 150);
        // A gap in the ids (another process's commit in between, with its own span) is not bridged.
        record_span(conn, SPAN_IDS + 5, SPAN_IDS + 6, 160, 170);
        assert_eq!(
            recorded(conn),
            [
                (1, SPAN_IDS, 90, 140),
                (SPAN_IDS + 1, SPAN_IDS + 1, 150, 150),
                (SPAN_IDS + 5, SPAN_IDS + 6, 160, 170)
            ]
        );

        // Ids given again (the last events were deleted) merge with every span they overlap, whatever
        // its size, so that no id has two spans.
        record_span(conn, SPAN_IDS - 1, SPAN_IDS + 5, 10, 20);
        assert_eq!(recorded(conn), [(1, SPAN_IDS + 6, 10, 170)]);
    }

    #[test]
    fn a_commit_gives_a_span_to_the_events_written_without_one_just_before_it() {
        let store = Store::open_in_memory().unwrap();
        let conn = store.conn();
        // Events 1..=2 before any span; 3..=4 recorded; 5..=6 by a program that records no span.
        insert_events(&store, &[(1, 10), (2, 20), (3, 300), (4, 400)]);
        record_span(conn, 3, 4, 300, 400);
        insert_events(&store, &[(5, 50), (6, 60), (7, 700)]);
        record_span(conn, 7, 7, 700, 700);
        assert_eq!(
            recorded(conn),
            [
                (1, 2, 10, 20),
                (3, 4, 300, 400),
                (5, 6, 50, 60),
                (7, 7, 700, 700)
            ]
        );
        // The next commit continues them all, small and adjacent as they are.
        insert_events(&store, &[(8, 800)]);
        record_span(conn, 8, 8, 800, 800);
        assert_eq!(recorded(conn), [(1, 8, 10, 800)]);
    }

    #[test]
    fn a_commit_whose_ids_do_not_follow_each_other_records_each_run() {
        let store = Store::open_in_memory().unwrap();
        let conn = store.conn();
        insert_events(&store, &[(1, 10), (2, 20), (9, 90), (5, 50)]);
        let mut added = Added::default();
        for (id, ts) in [(1, 10), (2, 20), (9, 90), (5, 50)] {
            added.push(conn, id, ts).unwrap();
        }
        added.record(conn).unwrap();
        assert_eq!(
            recorded(conn),
            [(1, 2, 10, 20), (5, 5, 50, 50), (9, 9, 90, 90)]
        );
    }

    #[test]
    fn deleting_the_newest_events_or_changing_a_time_in_the_shell_keeps_the_spans_true() {
        let store = Store::open_in_memory().unwrap();
        let conn = store.conn();
        insert_events(
            &store,
            &[(1, 1000), (2, 1100), (3, 1200), (4, 1300), (5, 10)],
        );
        record_span(conn, 1, 5, 10, 1300);
        conn.execute("DELETE FROM events WHERE id >= 4", [])
            .unwrap();
        assert_eq!(recorded(conn), [(1, 3, 10, 1300)]);
        // SQLite gives id 4 again, to a program that records no span: it is read whatever the time.
        conn.execute(
            "INSERT INTO events (live_id, room_id, msg_id, type, ts, json) VALUES (1, 7, 44, 'chat', 5000, '{}')",
            [],
        )
        .unwrap();
        let all = id_spans(conn).unwrap();
        assert_eq!(hull(&all, 4000, i64::MAX), Some((4, 4)));
        // A time changed by hand widens its span.
        conn.execute("UPDATE events SET ts = 9000 WHERE id = 2", [])
            .unwrap();
        assert_eq!(recorded(conn), [(1, 3, 10, 9000)]);
        assert_eq!(hull(&id_spans(conn).unwrap(), 8000, 8000), Some((1, 4)));
        // An event deleted in the middle, or moved to another id, cuts its span around its old id, so
        // that an event written there later is read whatever its time.
        conn.execute("DELETE FROM events WHERE id = 2", []).unwrap();
        conn.execute("UPDATE events SET id = 50 WHERE id = 1", [])
            .unwrap();
        assert_eq!(recorded(conn), [(3, 3, 10, 9000)]);
        insert_events(&store, &[(2, 7000)]);
        assert_eq!(hull(&id_spans(conn).unwrap(), 7000, 7000), Some((2, 50)));
        // Every event deleted: no span left.
        conn.execute("DELETE FROM events", []).unwrap();
        assert!(recorded(conn).is_empty());
    }

    #[test]
    fn an_event_whose_time_is_not_an_integer_has_no_span_and_stops_no_commit() {
        let store = Store::open_in_memory().unwrap();
        let conn = store.conn();
        insert_events(&store, &[(1, 100), (2, 200), (3, 300)]);
        record_span(conn, 1, 3, 100, 300);
        // Written by hand: a text time and a fractional one, then a commit after them.
        conn.execute_batch(
            "INSERT INTO events (id, live_id, room_id, msg_id, type, ts, json) VALUES
                 (4, 1, 7, 4, 'chat', 'soon', '{}'), (5, 1, 7, 5, 'chat', 2.5, '{}'),
                 (6, 1, 7, 6, 'chat', 600, '{}');",
        )
        .unwrap();
        let mut added = Added::default();
        added.push(conn, 6, 600).unwrap();
        added.record(conn).unwrap();
        // A time changed by hand to a text cuts its event out of its span.
        conn.execute("UPDATE events SET ts = 'later' WHERE id = 2", [])
            .unwrap();
        assert_eq!(
            spans(&store),
            [
                (1, 1, Some((100, 300))),
                (2, 2, None),
                (3, 3, Some((100, 300))),
                (4, 5, None),
                (6, 6, Some((600, 600)))
            ]
        );
    }

    /// Random writes by two writers and by hand (ids anywhere, near the ends of i64 too; deletes,
    /// moves, new times): after each, every time range gives through the spans what a full scan gives.
    #[test]
    fn random_writes_never_hide_an_event_from_a_time_range() {
        for seed in 0..300 {
            let mut rng = fastrand::Rng::with_seed(seed);
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("t.db");
            let mut writers = [Store::open(&path).unwrap(), Store::open(&path).unwrap()];
            let shell = Store::open(&path).unwrap();
            let conn = shell.conn();
            insert_events(&shell, &[]);
            let mut msg = 0i64;
            let mut done = Vec::new();
            for _ in 0..40 {
                let events = events_of(conn);
                let some_id = |rng: &mut fastrand::Rng| match rng.u8(..6) {
                    0 => i64::MAX - rng.i64(0..3),
                    1 => i64::MIN + rng.i64(0..3),
                    2 if !events.is_empty() => events[rng.usize(..events.len())].0,
                    _ => rng.i64(-5..60),
                };
                let ts = rng.i64(0..1000);
                msg += 1;
                let step = match rng.u8(..9) {
                    0..=2 => {
                        let writer = &mut writers[rng.usize(..2)];
                        let times: Vec<i64> =
                            (0..rng.usize(1..6)).map(|_| rng.i64(0..1000)).collect();
                        let tx = writer.conn_mut().transaction().unwrap();
                        let mut added = Added::default();
                        for ts in &times {
                            msg += 1;
                            tx.execute(
                                "INSERT INTO events (live_id, room_id, msg_id, type, ts, json) \
                                 VALUES (1, 7, ?1, 'chat', ?2, '{}')",
                                [msg, *ts],
                            )
                            .unwrap();
                            added.push(&tx, tx.last_insert_rowid(), *ts).unwrap();
                        }
                        added.record(&tx).unwrap();
                        tx.commit().unwrap();
                        format!("commit at {times:?}")
                    }
                    3 => {
                        let id = some_id(&mut rng);
                        conn.execute(
                            "INSERT OR IGNORE INTO events (id, live_id, room_id, msg_id, type, ts, json) \
                             VALUES (?1, 1, 7, ?2, 'chat', ?3, '{}')",
                            [id, msg, ts],
                        )
                        .unwrap();
                        format!("insert {id} at {ts}")
                    }
                    4 => {
                        conn.execute(
                            "INSERT INTO events (live_id, room_id, msg_id, type, ts, json) \
                             VALUES (1, 7, ?1, 'chat', ?2, '{}')",
                            [msg, ts],
                        )
                        .unwrap();
                        format!("insert at {ts}")
                    }
                    5 => {
                        let id = some_id(&mut rng);
                        conn.execute("DELETE FROM events WHERE id >= ?1", [id])
                            .unwrap();
                        format!("delete from {id}")
                    }
                    6 => {
                        let id = some_id(&mut rng);
                        conn.execute("UPDATE events SET ts = ?2 WHERE id = ?1", [id, ts])
                            .unwrap();
                        format!("{id} to time {ts}")
                    }
                    7 => {
                        let (id, to) = (some_id(&mut rng), some_id(&mut rng));
                        // The rowid by its other names too: no trigger `OF id` would see those.
                        let column = ["id", "rowid", "_rowid_"][rng.usize(..3)];
                        conn.execute(
                            &format!("UPDATE OR IGNORE events SET {column} = ?2 WHERE id = ?1"),
                            [id, to],
                        )
                        .unwrap();
                        format!("{id} to {column} {to}")
                    }
                    _ => {
                        let id = some_id(&mut rng);
                        conn.execute("DELETE FROM events WHERE id = ?1", [id])
                            .unwrap();
                        format!("delete {id}")
                    }
                };
                done.push(step);
                let events = events_of(conn);
                let spans = id_spans(conn).unwrap();
                assert!(
                    spans.windows(2).all(|w| w[0].last < w[1].first),
                    "seed {seed}: {done:?}: {spans:?}"
                );
                for _ in 0..4 {
                    let (a, b) = (rng.i64(0..1000), rng.i64(0..1000));
                    let (from, to) = (a.min(b), a.max(b));
                    let matching = |id_range: (i64, i64)| -> Vec<(i64, i64)> {
                        let mut rows: Vec<(i64, i64)> = events
                            .iter()
                            .filter(|(id, ts)| {
                                (id_range.0..=id_range.1).contains(id) && (from..=to).contains(ts)
                            })
                            .map(|&(id, ts)| (ts, id))
                            .collect();
                        rows.sort_by_key(|row| Reverse(*row));
                        rows
                    };
                    let full = matching((i64::MIN, i64::MAX));
                    let hulled = hull(&spans, from, to).map_or_else(Vec::new, matching);
                    assert_eq!(hulled, full, "seed {seed}: {done:?}: {from}..={to}");
                    let limit = rng.usize(1..4);
                    let newest = newest(
                        &spans,
                        (from, to),
                        limit,
                        |first, last, limit| {
                            Ok(matching((first, last)).into_iter().take(limit).collect())
                        },
                        |row: &(i64, i64)| *row,
                    )
                    .unwrap();
                    assert_eq!(
                        newest,
                        full[..limit.min(full.len())],
                        "seed {seed}: {done:?}"
                    );
                }
            }
        }
    }

    /// Every event as (id, time), in id order.
    fn events_of(conn: &Connection) -> Vec<(i64, i64)> {
        conn.prepare("SELECT id, ts FROM events ORDER BY id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn ids_no_span_covers_are_spans_without_times_narrowed_to_the_events_they_hold() {
        let store = Store::open_in_memory().unwrap();
        let conn = store.conn();
        insert_events(&store, &[(3, 300), (4, 400)]);
        record_span(conn, 3, 4, 300, 400);
        insert_events(&store, &[(10, 1000), (11, 1100)]);
        record_span(conn, 10, 12, 1000, 1200);
        // Written afterwards by a program that records no span; 5..=7 never held an event.
        insert_events(&store, &[(-5, 1), (8, 800), (9, 900), (20, 2000)]);
        assert_eq!(
            spans(&store),
            [
                (-5, -5, None),
                (3, 4, Some((300, 400))),
                (8, 9, None),
                (10, 12, Some((1000, 1200))),
                (20, 20, None),
            ]
        );
        let all = id_spans(conn).unwrap();
        // Unknown times may hold any time; recorded ones only their own.
        assert_eq!(hull(&all, 1000, 1100), Some((-5, 20)));
        let recorded: Vec<IdSpan> = all.iter().copied().filter(|s| s.times.is_some()).collect();
        assert_eq!(hull(&recorded, 350, 1000), Some((3, 12)));
        assert_eq!(hull(&recorded, 401, 999), None);
        assert_eq!(hull(&recorded, 1200, i64::MAX), Some((10, 12)));

        // No span, no event.
        let empty = Store::open_in_memory().unwrap();
        assert_eq!(spans(&empty), []);
    }

    #[test]
    fn newest_reads_the_latest_spans_first_and_stops_when_no_older_one_can_matter() {
        // Each event's time is its id × 100, except ids 4..=6, a replay of older events (id × 5).
        let time = |id: i64| {
            if (4..=6).contains(&id) {
                id * 5
            } else {
                id * 100
            }
        };
        let span = |first: i64, last: i64| IdSpan {
            first,
            last,
            times: Some((time(first), time(last))),
        };
        let spans = [span(1, 3), span(4, 6), span(7, 9)];
        // The rows of ids `first..=last` with a time in `window`, as the callers' SQL reads them.
        let run = |window: (i64, i64), limit: usize| {
            let mut reads = Vec::new();
            let read = |first: i64, last: i64, limit: usize| {
                reads.push((first, last));
                let mut rows: Vec<(i64, i64)> = (first..=last)
                    .map(|id| (time(id), id))
                    .filter(|(ts, _)| (window.0..=window.1).contains(ts))
                    .collect();
                rows.sort_by_key(|row| Reverse(*row));
                rows.truncate(limit);
                Ok(rows)
            };
            let found = newest(&spans, window, limit, read, |row: &(i64, i64)| *row).unwrap();
            (found, reads)
        };
        // 700..=900 first, then 100..=300 for the fourth; the replay's 30 cannot beat 300.
        assert_eq!(
            run((i64::MIN, i64::MAX), 4),
            (
                vec![(900, 9), (800, 8), (700, 7), (300, 3)],
                vec![(7, 9), (1, 3)]
            )
        );
        // Older spans cannot beat the one row found.
        assert_eq!(run((i64::MIN, 700), 1), (vec![(700, 7)], vec![(7, 9)]));
        assert_eq!(run((0, 250), 2), (vec![(200, 2), (100, 1)], vec![(1, 3)]));
        assert_eq!(
            run((0, 99), 5),
            (vec![(30, 6), (25, 5), (20, 4)], vec![(4, 6)])
        );
        assert_eq!(run((0, 99), 0), (vec![], vec![]));
    }
}
