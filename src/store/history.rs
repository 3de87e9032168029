//! Read-only views of stored history for the server's API: a live's events page by page (newest
//! first, as stored JSON lines), the claims in arrival order with their sales, and one buyer across
//! lives.

use rusqlite::{Connection, OptionalExtension, params_from_iter, types::Value};
use serde::Serialize;

use super::{StoreError, spans, sql_id};
use crate::events::rfc3339_ms;

/// A stored event: its time, its message id and the JSON line `watch` printed for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    pub ts_ms: i64,
    pub msg_id: u64,
    pub json: String,
}

/// Events of `host`'s lives (every host when `None`), of one `type` if given, older than message
/// `before` if given: at most `limit`, returned oldest first. "Older" is by time, then message id;
/// the spans of ids that may hold them are read newest first (`store::spans`).
pub fn events_page(
    conn: &Connection,
    host: Option<&str>,
    type_name: Option<&str>,
    before: Option<u64>,
    limit: u32,
) -> Result<Vec<StoredEvent>, StoreError> {
    let mut sql =
        String::from("SELECT e.ts, e.msg_id, e.json FROM events e WHERE e.id BETWEEN ? AND ?");
    let mut values: Vec<Value> = Vec::new();
    if let Some(host) = host {
        sql.push_str(" AND e.live_id IN (SELECT id FROM lives WHERE host = ?)");
        values.push(host.to_owned().into());
    }
    if let Some(type_name) = type_name {
        sql.push_str(" AND e.type = ?");
        values.push(type_name.to_owned().into());
    }
    let mut window = (i64::MIN, i64::MAX);
    if let Some(before) = before {
        let anchor: Option<(i64, i64)> = conn
            .query_row(
                "SELECT ts, msg_id FROM events WHERE msg_id = ?1 LIMIT 1",
                [sql_id(before)],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let Some((ts, msg_id)) = anchor else {
            return Ok(Vec::new());
        };
        sql.push_str(" AND (e.ts < ? OR (e.ts = ? AND e.msg_id < ?))");
        values.extend([ts.into(), ts.into(), msg_id.into()]);
        window.1 = ts;
    }
    sql.push_str(" ORDER BY e.ts DESC, e.msg_id DESC LIMIT ?");
    let mut stmt = conn.prepare(&sql)?;
    let read = |first: i64, last: i64, limit: usize| {
        let bounds = [Value::from(first), Value::from(last)];
        let limit = [Value::from(limit as i64)];
        stmt.query_map(
            params_from_iter(bounds.iter().chain(&values).chain(&limit)),
            |r| {
                Ok(StoredEvent {
                    ts_ms: r.get(0)?,
                    msg_id: r.get::<_, i64>(1)? as u64,
                    json: r.get(2)?,
                })
            },
        )?
        .collect()
    };
    // Message ids are compared as SQLite stores them (signed), like the ORDER BY.
    let mut lines = spans::newest(
        &spans::id_spans(conn)?,
        window,
        limit as usize,
        read,
        |event| (event.ts_ms, event.msg_id as i64),
    )?;
    lines.reverse();
    Ok(lines)
}

/// A claim with its buyer and the sales made from its message.
#[derive(Debug, Clone, Serialize)]
pub struct ClaimView {
    pub id: i64,
    pub live_id: i64,
    pub room_id: String,
    pub msg_id: String,
    pub buyer_id: Option<String>,
    pub unique_id: Option<String>,
    pub nickname: Option<String>,
    pub item: Option<String>,
    pub variant: Option<String>,
    pub quantity: i64,
    pub raw: String,
    pub ts: String,
    /// 1 for the first claim of its live, 2 for the next… (who claimed first is provable).
    pub rank: i64,
    pub sale_ids: Vec<i64>,
}

/// The latest `limit` claims (of one live, of one buyer, if given), in arrival order: time, then
/// message id.
pub fn claims(
    conn: &Connection,
    live: Option<i64>,
    buyer: Option<i64>,
    limit: u32,
) -> Result<Vec<ClaimView>, StoreError> {
    let sql = "SELECT c.id, c.live_id, c.room_id, c.msg_id, c.buyer_id, b.unique_id, b.nickname, \
               c.item, c.variant, c.quantity, c.raw, c.ts, \
               (SELECT COUNT(*) FROM claims o WHERE o.live_id = c.live_id \
                  AND (o.ts < c.ts OR (o.ts = c.ts AND o.msg_id <= c.msg_id))), \
               (SELECT group_concat(s.id) FROM sales s WHERE s.room_id = c.room_id AND s.msg_id = c.msg_id) \
               FROM claims c LEFT JOIN buyers b ON b.id = c.buyer_id \
               WHERE (?1 IS NULL OR c.live_id = ?1) AND (?2 IS NULL OR c.buyer_id = ?2) \
               ORDER BY c.ts DESC, c.msg_id DESC LIMIT ?3";
    let mut stmt = conn.prepare(sql)?;
    let mut claims = stmt
        .query_map(rusqlite::params![live, buyer, i64::from(limit)], |r| {
            let sales: Option<String> = r.get(13)?;
            Ok(ClaimView {
                id: r.get(0)?,
                live_id: r.get(1)?,
                room_id: (r.get::<_, i64>(2)? as u64).to_string(),
                msg_id: (r.get::<_, i64>(3)? as u64).to_string(),
                buyer_id: r
                    .get::<_, Option<i64>>(4)?
                    .map(|id| (id as u64).to_string()),
                unique_id: r.get(5)?,
                nickname: r.get(6)?,
                item: r.get(7)?,
                variant: r.get(8)?,
                quantity: r.get(9)?,
                raw: r.get(10)?,
                ts: rfc3339_ms(r.get(11)?),
                rank: r.get(12)?,
                sale_ids: sales
                    .map(|s| s.split(',').filter_map(|id| id.parse().ok()).collect())
                    .unwrap_or_default(),
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    claims.reverse();
    Ok(claims)
}

/// One buyer across lives: who they are, where they were seen, what they claimed and bought.
#[derive(Debug, Clone, Serialize)]
pub struct BuyerHistory {
    pub id: String,
    pub unique_id: String,
    pub nickname: String,
    pub avatar_url: Option<String>,
    pub first_seen: String,
    pub last_seen: String,
    pub lives: Vec<BuyerLive>,
    pub claims: Vec<ClaimView>,
}

/// A live a buyer was seen in, with how much they did there.
#[derive(Debug, Clone, Serialize)]
pub struct BuyerLive {
    pub live_id: i64,
    pub host: String,
    pub room_id: String,
    pub started: String,
    pub events: i64,
    pub comments: i64,
    pub gift_diamonds: i64,
}

/// The history of buyer `id` (TikTok's user id, as stored), or `None` if never seen.
pub fn buyer(conn: &Connection, id: i64) -> Result<Option<BuyerHistory>, StoreError> {
    let Some(mut buyer) = conn
        .query_row(
            "SELECT id, unique_id, nickname, avatar_url, first_seen, last_seen FROM buyers WHERE id = ?1",
            [id],
            |r| {
                Ok(BuyerHistory {
                    id: (r.get::<_, i64>(0)? as u64).to_string(),
                    unique_id: r.get(1)?,
                    nickname: r.get(2)?,
                    avatar_url: r.get(3)?,
                    first_seen: rfc3339_ms(r.get(4)?),
                    last_seen: rfc3339_ms(r.get(5)?),
                    lives: Vec::new(),
                    claims: Vec::new(),
                })
            },
        )
        .optional()?
    else {
        return Ok(None);
    };
    let mut stmt = conn.prepare(
        "SELECT l.id, l.host, l.room_id, l.started_at, COUNT(*), \
         SUM(e.type = 'chat'), COALESCE(SUM(e.total_diamonds), 0) \
         FROM events e JOIN lives l ON l.id = e.live_id WHERE e.user_id = ?1 \
         GROUP BY l.id ORDER BY l.started_at",
    )?;
    buyer.lives = stmt
        .query_map([id], |r| {
            Ok(BuyerLive {
                live_id: r.get(0)?,
                host: r.get(1)?,
                room_id: (r.get::<_, i64>(2)? as u64).to_string(),
                started: rfc3339_ms(r.get(3)?),
                events: r.get(4)?,
                comments: r.get(5)?,
                gift_diamonds: r.get(6)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    buyer.claims = claims(conn, None, Some(id), u32::MAX)?;
    Ok(Some(buyer))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::{chat, like, live, user};
    use crate::store::{LiveSource, NewLive, Store, StoreWriter, WriterConfig};

    /// Every page of `events_page`, newest page first, put back together: the events, oldest first.
    fn all_pages(
        conn: &Connection,
        host: Option<&str>,
        type_name: Option<&str>,
    ) -> Vec<(i64, u64)> {
        let mut pages = Vec::new();
        let mut before = None;
        loop {
            let page = events_page(conn, host, type_name, before, 700).unwrap();
            let Some(oldest) = page.first() else { break };
            before = Some(oldest.msg_id);
            pages.push(page);
        }
        pages
            .into_iter()
            .rev()
            .flatten()
            .map(|e| (e.ts_ms, e.msg_id))
            .collect()
    }

    #[test]
    fn events_of_the_same_time_in_different_spans_page_by_message_id() {
        let store = Store::open_in_memory().unwrap();
        store
            .conn()
            .execute_batch(
                "INSERT INTO lives (id, host, room_id, source, started_at) VALUES (1, 'shop', 7, 'watch', 0);
                 INSERT INTO events (id, live_id, room_id, msg_id, type, ts, json) VALUES
                     (1, 1, 7, 11, 'chat', 100, '{}'), (2, 1, 7, 12, 'chat', 100, '{}'),
                     (3, 1, 7, 13, 'chat', 100, '{}'), (4, 1, 7, 14, 'chat', 90, '{}');
                 INSERT INTO event_spans VALUES (1, 1, 100, 100), (2, 2, 100, 100), (3, 3, 100, 100),
                     (4, 4, 90, 90);",
            )
            .unwrap();
        let page = |before: Option<u64>| -> Vec<u64> {
            events_page(store.conn(), None, None, before, 1)
                .unwrap()
                .iter()
                .map(|e| e.msg_id)
                .collect()
        };
        // Each span may hold the newest: all three are read.
        assert_eq!(page(None), [13]);
        assert_eq!(page(Some(13)), [12]);
        assert_eq!(page(Some(12)), [11]);
        assert_eq!(page(Some(11)), [14]);
        assert_eq!(page(Some(14)), [0; 0]);
    }

    #[test]
    fn pages_of_events_follow_their_times_across_commits_and_a_replay_of_older_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let writer = StoreWriter::spawn(
            &path,
            WriterConfig {
                max_batch: 300,
                ..WriterConfig::default()
            },
        )
        .unwrap();
        let shop = writer.begin_live(live("shop")).unwrap();
        let anna = user(42, "anna");
        // Live events a few seconds out of order (times 1,000,000 + 10 × i, pairs swapped), every
        // third a chat; in the middle, a replay of another host's older events.
        let live_event = |i: u64| {
            let ts = 1_000_000 + 10 * (i ^ 1) as i64;
            match i % 3 {
                0 => chat(i, anna.clone(), ts, "hello", None),
                _ => like(i, 42, ts),
            }
        };
        for i in 1..=5_000 {
            writer.send(shop, &live_event(i)).unwrap();
        }
        let replay = writer
            .begin_live(NewLive {
                source: LiveSource::Replay,
                ..live("other")
            })
            .unwrap();
        for i in 0..1_500 {
            writer
                .send(replay, &like(100_000 + i, 7, 500 + i as i64))
                .unwrap();
        }
        for i in 5_001..=9_000 {
            writer.send(shop, &live_event(i)).unwrap();
        }
        writer.finish().unwrap();

        let store = Store::open_existing(&path).unwrap();
        let conn = store.conn();
        let spans: i64 = conn
            .query_row("SELECT count(*) FROM event_spans", [], |r| r.get(0))
            .unwrap();
        assert!((3..=10).contains(&spans), "{spans} spans");
        let expected = |condition: &str| -> Vec<(i64, u64)> {
            conn.prepare(&format!(
                "SELECT e.ts, e.msg_id FROM events e JOIN lives l ON l.id = e.live_id \
                 WHERE {condition} ORDER BY e.ts, e.msg_id"
            ))
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
        };
        let every = all_pages(conn, None, None);
        assert_eq!(every.len(), 10_500);
        assert_eq!(every, expected("1"));
        assert_eq!(
            all_pages(conn, Some("shop"), None),
            expected("l.host = 'shop'")
        );
        let chats = all_pages(conn, Some("shop"), Some("chat"));
        assert_eq!(chats.len(), 3_000);
        assert_eq!(chats, expected("l.host = 'shop' AND e.type = 'chat'"));
        assert_eq!(all_pages(conn, Some("other"), None).len(), 1_500);
        assert!(all_pages(conn, Some("nobody"), None).is_empty());
    }
}
