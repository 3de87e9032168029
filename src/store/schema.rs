//! The database schema as a list of forward migrations. `PRAGMA user_version` is the number of
//! migrations applied; opening a database applies the missing ones in one transaction, and refuses a
//! database whose version is higher than this binary knows, without writing to it.
//!
//! Ids from TikTok (room, message, user) are stored as INTEGER: they are below 2^63. Times are Unix
//! milliseconds. Never edit a migration that has shipped: add one.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, TransactionBehavior};

use super::StoreError;

/// `PRAGMA application_id` of a tiklive database ("TKLV"), so that `--db` pointed at another
/// application's database is refused instead of receiving tiklive's tables.
const APPLICATION_ID: i32 = 0x544b_4c56;

/// The schema version this binary creates and understands.
pub const SUPPORTED_VERSION: u32 = MIGRATIONS.len() as u32;

/// Migration `i` takes a database from version `i` to version `i + 1`.
pub const MIGRATIONS: &[&str] = &[
    // 1: lives, the buyers seen in them, and every event.
    r#"
    CREATE TABLE lives (
        id          INTEGER PRIMARY KEY,
        host        TEXT    NOT NULL,
        room_id     INTEGER NOT NULL,
        title       TEXT,
        source      TEXT    NOT NULL CHECK (source IN ('watch', 'replay')),
        started_at  INTEGER NOT NULL,
        ended_at    INTEGER
    );
    CREATE INDEX lives_room ON lives (room_id);
    CREATE INDEX lives_started ON lives (started_at);

    -- Keyed on TikTok's permanent numeric user id: the @handle and nickname can change, and the row
    -- keeps the latest ones seen.
    CREATE TABLE buyers (
        id          INTEGER PRIMARY KEY,
        unique_id   TEXT    NOT NULL,
        nickname    TEXT    NOT NULL,
        avatar_url  TEXT,
        first_seen  INTEGER NOT NULL,
        last_seen   INTEGER NOT NULL
    );
    CREATE INDEX buyers_unique_id ON buyers (unique_id);

    -- One row per typed event except connection lines. The columns are derived from the event by
    -- `store::row`, and `json` is the event's NDJSON line, so the two cannot disagree.
    CREATE TABLE events (
        id                INTEGER PRIMARY KEY,
        live_id           INTEGER NOT NULL REFERENCES lives (id),
        room_id           INTEGER NOT NULL,
        msg_id            INTEGER NOT NULL,
        type              TEXT    NOT NULL,
        ts                INTEGER NOT NULL,
        user_id           INTEGER,
        unique_id         TEXT,
        nickname          TEXT,
        comment           TEXT,
        gift_id           INTEGER,
        gift_name         TEXT,
        repeat_count      INTEGER,
        total_diamonds    INTEGER,
        gift_streaking    INTEGER,
        like_count        INTEGER,
        total_like_count  INTEGER,
        viewer_count      INTEGER,
        json              TEXT    NOT NULL,
        UNIQUE (room_id, msg_id)
    );
    -- One index besides the unique key: every index costs ingest speed, and exports and the API read
    -- a time range and filter the rest (type, live, user) as they scan it.
    CREATE INDEX events_ts ON events (ts);

    PRAGMA application_id = 1414220886;
    "#,
    // 2: claims, sales and export cursors.
    r#"
    -- Every chat event whose claim parser matched. Arrival order is (ts, msg_id).
    CREATE TABLE claims (
        id        INTEGER PRIMARY KEY,
        event_id  INTEGER NOT NULL UNIQUE REFERENCES events (id),
        live_id   INTEGER NOT NULL REFERENCES lives (id),
        room_id   INTEGER NOT NULL,
        msg_id    INTEGER NOT NULL,
        buyer_id  INTEGER REFERENCES buyers (id),
        item      TEXT,
        variant   TEXT,
        quantity  INTEGER NOT NULL,
        raw       TEXT    NOT NULL,
        ts        INTEGER NOT NULL,
        UNIQUE (room_id, msg_id)
    );
    CREATE INDEX claims_order ON claims (ts, msg_id);
    CREATE INDEX claims_live ON claims (live_id, ts, msg_id);
    CREATE INDEX claims_buyer ON claims (buyer_id);

    -- Claims recorded in `events` before this table existed.
    INSERT INTO claims (event_id, live_id, room_id, msg_id, buyer_id, item, variant, quantity, raw, ts)
    SELECT e.id, e.live_id, e.room_id, e.msg_id, b.id,
           json_extract(e.json, '$.claim.item'), json_extract(e.json, '$.claim.variant'),
           json_extract(e.json, '$.claim.quantity'), json_extract(e.json, '$.claim.raw'), e.ts
    FROM events e LEFT JOIN buyers b ON b.id = e.user_id
    WHERE e.type = 'chat' AND json_type(e.json, '$.claim') = 'object'
    ORDER BY e.ts, e.msg_id;

    -- What a seller sold. Prices are INTEGER minor units (cents; yen for JPY) of an ISO 4217 currency,
    -- both unset until the price is known.
    CREATE TABLE sales (
        id                INTEGER PRIMARY KEY,
        live_id           INTEGER NOT NULL REFERENCES lives (id),
        room_id           INTEGER NOT NULL,
        buyer_id          INTEGER NOT NULL REFERENCES buyers (id),
        claim_id          INTEGER REFERENCES claims (id),
        msg_id            INTEGER,
        item              TEXT,
        variant           TEXT,
        quantity          INTEGER NOT NULL DEFAULT 1 CHECK (quantity > 0),
        unit_price_cents  INTEGER CHECK (unit_price_cents >= 0),
        currency          TEXT    CHECK (currency GLOB '[A-Z][A-Z][A-Z]'),
        status            TEXT    NOT NULL DEFAULT 'pending'
                          CHECK (status IN ('pending', 'confirmed', 'paid', 'cancelled')),
        note              TEXT,
        created_at        INTEGER NOT NULL,
        updated_at        INTEGER NOT NULL,
        CHECK ((unit_price_cents IS NULL) = (currency IS NULL)),
        -- A sale made from a claim carries the claim's message id, so the unique index below sees it.
        CHECK (claim_id IS NULL OR msg_id IS NOT NULL)
    );
    -- "One sale per message unless forced" is checked by the code that creates sales, inside the
    -- write transaction (a forced second sale is legitimate, so no unique index can say it).
    CREATE INDEX sales_message ON sales (room_id, msg_id) WHERE msg_id IS NOT NULL;
    CREATE INDEX sales_live ON sales (live_id);
    CREATE INDEX sales_buyer ON sales (buyer_id);
    CREATE INDEX sales_claim ON sales (claim_id);

    -- Incremental exports: the last row id each named export has written, and of which kind (ids of
    -- different tables cannot be compared, so a name serves one kind only). `updated_at` is the time
    -- of the last export that used the cursor.
    CREATE TABLE export_cursors (
        name        TEXT    PRIMARY KEY,
        kind        TEXT    NOT NULL,
        last_id     INTEGER NOT NULL DEFAULT 0,
        updated_at  INTEGER NOT NULL
    );
    "#,
    // 3: TikTok accounts logged in with Login Kit (`tiklive login`), with their OAuth tokens. The tokens
    // are why the database and its -wal/-shm files are created 0600.
    r#"
    -- One row per TikTok account, keyed on the app-scoped `open_id`. Times are Unix milliseconds. The
    -- creator_* columns and the three *_disabled flags cache the last creator info (posting must ask
    -- TikTok again); privacy_level_options is a JSON array. `refresh_lease_until` is set while one
    -- process refreshes the tokens, so that two processes never spend the same refresh token.
    CREATE TABLE accounts (
        open_id                      TEXT    PRIMARY KEY,
        union_id                     TEXT,
        username                     TEXT,
        display_name                 TEXT,
        avatar_url                   TEXT,
        scopes                       TEXT    NOT NULL,
        access_token                 TEXT    NOT NULL,
        access_expires_at            INTEGER NOT NULL,
        refresh_token                TEXT    NOT NULL,
        refresh_expires_at           INTEGER NOT NULL,
        refreshed_at                 INTEGER NOT NULL,
        refresh_lease_until          INTEGER,
        creator_avatar_url           TEXT,
        creator_username             TEXT,
        creator_nickname             TEXT,
        privacy_level_options        TEXT,
        comment_disabled             INTEGER,
        duet_disabled                INTEGER,
        stitch_disabled              INTEGER,
        max_video_post_duration_sec  INTEGER,
        creator_info_at              INTEGER,
        created_at                   INTEGER NOT NULL,
        updated_at                   INTEGER NOT NULL
    );
    CREATE INDEX accounts_username ON accounts (username);
    "#,
    // 4: the unique keys of events and claims put the message id first. A message is looked up by its
    // id alone (`sale create --message`, the API's paging anchor), which the old (room_id, msg_id) keys
    // could not serve without reading every event; and storing an event compared two integers per
    // step of the key's B-tree instead of one, the room id being the same for a whole live. The claims'
    // own (room_id, msg_id) key goes: a claim's `event_id` is unique and its event's key already is.
    // The tables are rebuilt (SQLite cannot change a table's constraints in place), with the same
    // columns and ids, by `migrate_to` with foreign keys off and checked before it commits.
    r#"
    CREATE TABLE events_v4 (
        id                INTEGER PRIMARY KEY,
        live_id           INTEGER NOT NULL REFERENCES lives (id),
        room_id           INTEGER NOT NULL,
        msg_id            INTEGER NOT NULL,
        type              TEXT    NOT NULL,
        ts                INTEGER NOT NULL,
        user_id           INTEGER,
        unique_id         TEXT,
        nickname          TEXT,
        comment           TEXT,
        gift_id           INTEGER,
        gift_name         TEXT,
        repeat_count      INTEGER,
        total_diamonds    INTEGER,
        gift_streaking    INTEGER,
        like_count        INTEGER,
        total_like_count  INTEGER,
        viewer_count      INTEGER,
        json              TEXT    NOT NULL,
        UNIQUE (msg_id, room_id)
    );
    INSERT INTO events_v4 SELECT * FROM events ORDER BY id;
    DROP TABLE events;
    ALTER TABLE events_v4 RENAME TO events;
    CREATE INDEX events_ts ON events (ts);

    CREATE TABLE claims_v4 (
        id        INTEGER PRIMARY KEY,
        event_id  INTEGER NOT NULL UNIQUE REFERENCES events (id),
        live_id   INTEGER NOT NULL REFERENCES lives (id),
        room_id   INTEGER NOT NULL,
        msg_id    INTEGER NOT NULL,
        buyer_id  INTEGER REFERENCES buyers (id),
        item      TEXT,
        variant   TEXT,
        quantity  INTEGER NOT NULL,
        raw       TEXT    NOT NULL,
        ts        INTEGER NOT NULL
    );
    INSERT INTO claims_v4 SELECT * FROM claims ORDER BY id;
    DROP TABLE claims;
    ALTER TABLE claims_v4 RENAME TO claims;
    CREATE INDEX claims_order ON claims (ts, msg_id);
    CREATE INDEX claims_live ON claims (live_id, ts, msg_id);
    CREATE INDEX claims_buyer ON claims (buyer_id);
    "#,
    // 5: events lose their time index. Keeping it up to date was a sixth of the writer's work (its keys
    // arrive out of order, and the B-tree splits pages in the middle). Events are stored in about the
    // order of their times, so a coarse map does the index's job: `event_spans` says, for runs of
    // consecutive ids that all hold an event, the earliest and latest time of those events
    // (`store::spans`). The writer adds one row per commit, or widens the one before. Existing events
    // get a span per run of consecutive ids, cut every 4,096 ids.
    r#"
    CREATE TABLE event_spans (
        first_id  INTEGER PRIMARY KEY,
        last_id   INTEGER NOT NULL,
        min_ts    INTEGER NOT NULL,
        max_ts    INTEGER NOT NULL,
        CHECK (first_id <= last_id AND min_ts <= max_ts)
    );
    -- Events whose time is not an integer (written by hand) have no span: they are read for any range.
    INSERT INTO event_spans (first_id, last_id, min_ts, max_ts)
    SELECT min(id), max(id), min(ts), max(ts)
    FROM (SELECT id, ts, sum(starts) OVER (ORDER BY id) AS run
          FROM (SELECT id, ts, lag(id) OVER (ORDER BY id) IS NOT id - 1 AS starts
                FROM events WHERE typeof(ts) = 'integer'))
    GROUP BY run, id >> 12;
    DROP INDEX events_ts;

    -- tiklive never deletes events or changes their ids or times, but the `sqlite3` shell may. Every id
    -- a span covers holds an event with an integer time (so no insert can land inside a span), and
    -- these keep it so, at no cost to inserts: an event that goes, moves to another id (`rowid`
    -- included: no `OF id`), or gets a time that is not an integer leaves its span, which is cut in
    -- two around its old id (a new id is free, so no span covers it); a new integer time widens the
    -- span the event is in. The two cuts are the same SQL: a trigger fires for one kind of
    -- statement. (`REPLACE` deletes without firing triggers unless `PRAGMA recursive_triggers` is on.)
    CREATE TRIGGER event_spans_after_delete AFTER DELETE ON events
    BEGIN
        INSERT INTO event_spans (first_id, last_id, min_ts, max_ts)
        SELECT old.id + 1, last_id, min_ts, max_ts FROM event_spans
        WHERE first_id = (SELECT max(first_id) FROM event_spans WHERE first_id <= old.id)
          AND last_id > old.id;
        UPDATE event_spans SET last_id = old.id - 1
        WHERE first_id = (SELECT max(first_id) FROM event_spans WHERE first_id < old.id)
          AND last_id >= old.id;
        DELETE FROM event_spans WHERE first_id = old.id;
    END;
    CREATE TRIGGER event_spans_after_move AFTER UPDATE ON events
    WHEN old.id <> new.id OR typeof(new.ts) <> 'integer'
    BEGIN
        INSERT INTO event_spans (first_id, last_id, min_ts, max_ts)
        SELECT old.id + 1, last_id, min_ts, max_ts FROM event_spans
        WHERE first_id = (SELECT max(first_id) FROM event_spans WHERE first_id <= old.id)
          AND last_id > old.id;
        UPDATE event_spans SET last_id = old.id - 1
        WHERE first_id = (SELECT max(first_id) FROM event_spans WHERE first_id < old.id)
          AND last_id >= old.id;
        DELETE FROM event_spans WHERE first_id = old.id;
    END;
    CREATE TRIGGER event_spans_after_retime AFTER UPDATE ON events
    WHEN old.ts IS NOT new.ts AND typeof(new.ts) = 'integer'
    BEGIN
        UPDATE event_spans SET min_ts = min(min_ts, new.ts), max_ts = max(max_ts, new.ts)
        WHERE first_id = (SELECT max(first_id) FROM event_spans WHERE first_id <= new.id)
          AND last_id >= new.id;
    END;
    "#,
];

fn user_version(conn: &Connection) -> rusqlite::Result<u32> {
    conn.pragma_query_value(None, "user_version", |r| r.get(0))
}

/// Refuses, before anything is written, a database that is not tiklive's or is newer than this binary.
pub(super) fn check_version(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let read = || -> rusqlite::Result<(u32, i32, bool)> {
        let version = user_version(conn)?;
        let app: i32 = conn.pragma_query_value(None, "application_id", |r| r.get(0))?;
        let has_tables =
            conn.query_row("SELECT EXISTS (SELECT 1 FROM sqlite_schema)", [], |r| {
                r.get(0)
            })?;
        Ok((version, app, has_tables))
    };
    let (version, app, has_tables) = read().map_err(|source| StoreError::Open {
        path: path.to_owned(),
        source,
    })?;
    let ours = app == APPLICATION_ID || (app == 0 && version == 0 && !has_tables);
    if !ours {
        return Err(StoreError::NotTiklive {
            path: path.to_owned(),
        });
    }
    if version > SUPPORTED_VERSION {
        return Err(StoreError::TooNew {
            path: path.to_owned(),
            found: version,
            supported: SUPPORTED_VERSION,
        });
    }
    Ok(())
}

/// Brings the database to [`SUPPORTED_VERSION`].
pub(super) fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let found = migrate_to(conn, MIGRATIONS.len()).map_err(|source| StoreError::Open {
        path: path.to_owned(),
        source,
    })?;
    // Only if a newer tiklive migrated the file between `check_version` and here.
    if found > MIGRATIONS.len() {
        return Err(StoreError::TooNew {
            path: path.to_owned(),
            found: found as u32,
            supported: SUPPORTED_VERSION,
        });
    }
    Ok(())
}

/// Applies the migrations up to `target` (a number of migrations) in one transaction; returns the
/// version found. A database at or past `target` is not written to.
fn migrate_to(conn: &mut Connection, target: usize) -> rusqlite::Result<usize> {
    migrate_with(conn, &MIGRATIONS[..target])
}

/// [`migrate_to`] with the list of migrations given (tests give one that breaks a reference).
fn migrate_with(conn: &mut Connection, migrations: &[&str]) -> rusqlite::Result<usize> {
    let target = migrations.len();
    let found = user_version(conn)? as usize;
    if found >= target {
        return Ok(found);
    }
    // A migration that rebuilds a table drops the old one, which with foreign keys on would delete
    // (or refuse to delete) the rows of the tables referring to it. So, as SQLite's documentation on
    // changing a table asks, foreign keys are off while migrating (the pragma is ignored inside a
    // transaction) and checked before committing; they are on again whatever happens.
    //
    // Another process may be migrating the same file: rebuilding a long history holds the write lock
    // for seconds (13 to 15 per million events for migration 4), longer than the usual busy timeout,
    // so this waits for the lock up to `MIGRATION_LOCK_WAIT`, then finds the work done.
    let enforced: bool = conn.pragma_query_value(None, "foreign_keys", |r| r.get(0))?;
    let busy_timeout: i64 = conn.pragma_query_value(None, "busy_timeout", |r| r.get(0))?;
    conn.pragma_update(None, "foreign_keys", false)?;
    conn.busy_timeout(MIGRATION_LOCK_WAIT)?;
    let migrated = apply_migrations(conn, migrations);
    let restored = conn
        .pragma_update(None, "foreign_keys", enforced)
        .and_then(|()| conn.busy_timeout(Duration::from_millis(busy_timeout.max(0) as u64)));
    let found = migrated?;
    restored?;
    Ok(found)
}

/// How long opening a database waits for another process's migration of it.
const MIGRATION_LOCK_WAIT: Duration = Duration::from_secs(600);

/// Rows whose foreign key points nowhere, in the whole database.
fn broken_references(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| {
        r.get(0)
    })
}

fn apply_migrations(conn: &mut Connection, migrations: &[&str]) -> rusqlite::Result<usize> {
    let target = migrations.len();
    // IMMEDIATE takes the write lock first, so that two processes opening an old database at once
    // migrate it once: the second one reads the version again under the lock.
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let found = user_version(&tx)? as usize;
    if found < target {
        // Compared after the migrations, which must not add any; some may be older (a row deleted in
        // the `sqlite3` shell, where foreign keys are off by default), and those do not block it.
        let broken_before = broken_references(&tx)?;
        if found > 0 {
            // Once per upgrade, which may take a while (see above).
            tracing::info!(
                db = tx.path().unwrap_or("?"),
                from = found,
                to = target,
                "upgrading the database's schema; this happens once"
            );
        }
        for sql in &migrations[found..] {
            tx.execute_batch(sql)?;
        }
        let broken_after = broken_references(&tx)?;
        if broken_after > broken_before {
            // Rolled back when `tx` drops.
            return Err(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY),
                Some(format!(
                    "the upgrade to schema version {target} would leave {} more rows whose foreign \
                     key points nowhere ({broken_before} before); it was not applied",
                    broken_after - broken_before
                )),
            ));
        }
        tx.pragma_update(None, "user_version", target as u32)?;
    }
    tx.commit()?;
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    #[test]
    fn application_id_constant_matches_the_migration() {
        assert!(MIGRATIONS[0].contains(&format!("application_id = {APPLICATION_ID};")));
    }

    #[test]
    fn older_database_is_migrated_on_open_and_keeps_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v1.db");
        {
            let mut conn = Connection::open(&path).unwrap();
            conn.pragma_update(None, "journal_mode", "wal").unwrap();
            migrate_to(&mut conn, 1).unwrap();
            assert_eq!(user_version(&conn).unwrap(), 1);
            conn.execute_batch(
                r#"
                INSERT INTO lives (id, host, room_id, source, started_at) VALUES (1, 'shop', 7, 'watch', 100);
                INSERT INTO buyers VALUES (42, 'anna', 'Anna', NULL, 1000, 1000);
                INSERT INTO events (live_id, room_id, msg_id, type, ts, user_id, comment, json)
                VALUES (1, 7, 900, 'chat', 1000, 42, 'jp 12 M',
                        '{"v":1,"type":"chat","comment":"jp 12 M","claim":{"item":"12","variant":"M","quantity":2,"raw":"jp 12 M"}}'),
                       (1, 7, 901, 'chat', 1001, 42, 'hello', '{"v":1,"type":"chat","comment":"hello"}'),
                       (1, 7, 902, 'like', 1002, 42, NULL, '{"v":1,"type":"like"}');
                "#,
            )
            .unwrap();
        }

        let store = Store::open(&path).unwrap();
        let conn = store.conn();
        assert_eq!(user_version(conn).unwrap(), SUPPORTED_VERSION);
        let count = |table: &str| -> i64 {
            conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
                .unwrap()
        };
        assert_eq!(
            (count("lives"), count("buyers"), count("events")),
            (1, 1, 3)
        );
        // The claim already in `events` got its row in the new table.
        let claim: (i64, i64, Option<String>, Option<String>, i64, String) = conn
            .query_row(
                "SELECT msg_id, buyer_id, item, variant, quantity, raw FROM claims",
                [],
                |r| r.try_into(),
            )
            .unwrap();
        assert_eq!(
            claim,
            (
                900,
                42,
                Some("12".into()),
                Some("M".into()),
                2,
                "jp 12 M".into()
            )
        );
        assert_eq!(count("sales") + count("export_cursors"), 0);
        drop(store);
        // Opening again applies nothing.
        let again = Store::open(&path).unwrap();
        assert_eq!(user_version(again.conn()).unwrap(), SUPPORTED_VERSION);
    }

    #[test]
    fn version_3_gets_message_first_keys_and_keeps_every_row_and_reference() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v3.db");
        {
            let mut conn = Connection::open(&path).unwrap();
            conn.pragma_update(None, "journal_mode", "wal").unwrap();
            conn.pragma_update(None, "foreign_keys", true).unwrap();
            migrate_to(&mut conn, 3).unwrap();
            conn.execute_batch(
                r#"
                INSERT INTO lives (id, host, room_id, source, started_at) VALUES (1, 'shop', 7, 'watch', 100);
                INSERT INTO buyers VALUES (42, 'anna', 'Anna', NULL, 1000, 1000);
                INSERT INTO events (id, live_id, room_id, msg_id, type, ts, user_id, json)
                VALUES (10, 1, 7, 900, 'chat', 1000, 42, '{"type":"chat"}'),
                       (11, 1, 7, 901, 'like', 1001, 42, '{"type":"like"}'),
                       (12, 1, 8, 900, 'chat', 1002, 42, '{"type":"chat"}');
                INSERT INTO claims (id, event_id, live_id, room_id, msg_id, buyer_id, quantity, raw, ts)
                VALUES (5, 10, 1, 7, 900, 42, 1, 'jp', 1000);
                INSERT INTO sales (id, live_id, room_id, buyer_id, claim_id, msg_id, created_at, updated_at)
                VALUES (3, 1, 7, 42, 5, 900, 0, 0);
                "#,
            )
            .unwrap();
        }
        let store = Store::open(&path).unwrap();
        let conn = store.conn();
        assert_eq!(user_version(conn).unwrap(), SUPPORTED_VERSION);
        let ids = |sql: &str| -> Vec<i64> {
            let mut stmt = conn.prepare(sql).unwrap();
            stmt.query_map([], |r| r.get(0))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap()
        };
        assert_eq!(ids("SELECT id FROM events ORDER BY id"), [10, 11, 12]);
        assert_eq!(ids("SELECT event_id FROM claims"), [10]);
        assert_eq!(ids("SELECT claim_id FROM sales"), [5]);
        let fk: bool = conn
            .pragma_query_value(None, "foreign_keys", |r| r.get(0))
            .unwrap();
        assert!(fk, "foreign keys are on again after the migration");
        assert!(ids("PRAGMA foreign_key_check").is_empty());
        // The same message in one room is still refused, in another room still allowed.
        let insert = |room: i64| {
            conn.execute(
                "INSERT INTO events (live_id, room_id, msg_id, type, ts, json) VALUES (1, ?1, 901, 'chat', 0, '{}')",
                [room],
            )
        };
        assert!(insert(7).is_err());
        insert(8).unwrap();
        // A claim's event is still a checked reference.
        assert!(
            conn.execute(
                "INSERT INTO claims (event_id, live_id, room_id, msg_id, quantity, raw, ts) VALUES (999, 1, 7, 1, 1, 'jp', 0)",
                [],
            )
            .is_err()
        );
        // A message is found by its id alone through the key, not by reading every event.
        let plan: String = conn
            .query_row(
                "EXPLAIN QUERY PLAN SELECT id FROM events WHERE msg_id = ?1 ORDER BY id DESC LIMIT 1",
                [900],
                |r| r.get(3),
            )
            .unwrap();
        assert!(
            plan.contains("INDEX sqlite_autoindex_events_1 (msg_id=?)"),
            "{plan}"
        );
    }

    #[test]
    fn version_4_trades_the_time_index_for_spans_of_runs_of_ids() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v4.db");
        {
            let mut conn = Connection::open(&path).unwrap();
            migrate_to(&mut conn, 4).unwrap();
            conn.execute(
                "INSERT INTO lives (id, host, room_id, source, started_at) VALUES (1, 'shop', 7, 'watch', 0)",
                [],
            )
            .unwrap();
            // Ids 1..=5000 but 100, at times 10 × id; a replay of older events at 9000..=9002; two
            // events written by hand at the lowest ids, with a hole between them.
            conn.execute_batch(
                "WITH RECURSIVE n (id) AS (SELECT 1 UNION ALL SELECT id + 1 FROM n WHERE id < 5000) \
                 INSERT INTO events (id, live_id, room_id, msg_id, type, ts, json) \
                 SELECT id, 1, 7, id, 'like', 10 * id, '{}' FROM n WHERE id <> 100; \
                 INSERT INTO events (id, live_id, room_id, msg_id, type, ts, json) VALUES \
                 (9000, 1, 7, 9000, 'chat', 5, '{}'), (9001, 1, 7, 9001, 'chat', 7, '{}'), \
                 (9002, 1, 7, 9002, 'chat', 6, '{}'), \
                 (-9223372036854775808, 1, 7, 20001, 'chat', 1, '{}'), \
                 (-9223372036854775806, 1, 7, 20002, 'chat', 2, '{}');",
            )
            .unwrap();
        }
        let store = Store::open(&path).unwrap();
        let conn = store.conn();
        let spans: Vec<(i64, i64, i64, i64)> = conn
            .prepare("SELECT first_id, last_id, min_ts, max_ts FROM event_spans ORDER BY first_id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        // Every id a span covers holds an event.
        assert_eq!(
            spans,
            [
                (i64::MIN, i64::MIN, 1, 1),
                (i64::MIN + 2, i64::MIN + 2, 2, 2),
                (1, 99, 10, 990),
                (101, 4095, 1010, 40_950),
                (4096, 5000, 40_960, 50_000),
                (9000, 9002, 5, 7)
            ]
        );
        let indexes: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'events' \
                 AND name NOT LIKE 'sqlite_autoindex_%'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(indexes, 0, "events_ts is gone");
    }

    #[test]
    fn a_migration_that_breaks_a_reference_is_rolled_back_but_an_older_broken_one_does_not_block() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v3-broken.db");
        let mut conn = Connection::open(&path).unwrap();
        migrate_to(&mut conn, 3).unwrap();
        // Written with foreign keys off, as in the `sqlite3` shell: a claim of an event that does not
        // exist, and an event with its claim.
        conn.pragma_update(None, "foreign_keys", false).unwrap();
        conn.execute_batch(
            "INSERT INTO lives (id, host, room_id, source, started_at) VALUES (1, 'shop', 7, 'watch', 100);
             INSERT INTO claims (event_id, live_id, room_id, msg_id, quantity, raw, ts) VALUES (999, 1, 7, 1, 1, 'jp', 0);
             INSERT INTO events (id, live_id, room_id, msg_id, type, ts, json) VALUES (5, 1, 7, 2, 'chat', 0, '{}');
             INSERT INTO claims (event_id, live_id, room_id, msg_id, quantity, raw, ts) VALUES (5, 1, 7, 2, 1, 'jp', 0);",
        )
        .unwrap();
        conn.pragma_update(None, "foreign_keys", true).unwrap();
        // A migration that deletes the event of a claim is refused, and changes nothing.
        let mut breaking = MIGRATIONS[..3].to_vec();
        breaking.push("CREATE TABLE scratch (x); DELETE FROM events WHERE id = 5;");
        let err = migrate_with(&mut conn, &breaking).unwrap_err().to_string();
        assert!(
            err.contains("1 more rows") && err.contains("(1 before)"),
            "{err}"
        );
        assert_eq!(user_version(&conn).unwrap(), 3, "nothing was applied");
        let left: (i64, i64) = conn
            .query_row(
                "SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM sqlite_schema WHERE name = 'scratch')",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(left, (1, 0));
        let fk: bool = conn
            .pragma_query_value(None, "foreign_keys", |r| r.get(0))
            .unwrap();
        assert!(fk, "foreign keys are on again after the failure");
        // The real migration goes through, and keeps the older broken row as it was.
        migrate_to(&mut conn, 4).unwrap();
        assert_eq!(user_version(&conn).unwrap(), 4);
        assert_eq!(broken_references(&conn).unwrap(), 1);
    }

    #[test]
    fn opening_waits_for_another_process_migrating_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v3-busy.db");
        {
            let mut conn = Connection::open(&path).unwrap();
            conn.pragma_update(None, "journal_mode", "wal").unwrap();
            migrate_to(&mut conn, 3).unwrap();
        }
        // Another connection holds the write lock for longer than the usual busy timeout (5 s).
        let holder = Connection::open(&path).unwrap();
        holder.execute_batch("BEGIN IMMEDIATE").unwrap();
        let released = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_secs(6));
            holder.execute_batch("COMMIT").unwrap();
        });
        let started = std::time::Instant::now();
        let store = Store::open(&path).unwrap();
        assert!(started.elapsed() >= std::time::Duration::from_secs(6));
        assert_eq!(user_version(store.conn()).unwrap(), SUPPORTED_VERSION);
        let timeout: i64 = store
            .conn()
            .pragma_query_value(None, "busy_timeout", |r| r.get(0))
            .unwrap();
        assert_eq!(timeout, 5000, "the usual timeout again");
        released.join().unwrap();
    }

    #[test]
    fn newer_database_is_refused_and_left_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("future.db");
        drop(Store::open(&path).unwrap());
        {
            let conn = Connection::open(&path).unwrap();
            conn.pragma_update(None, "user_version", 99).unwrap();
            conn.pragma_update(None, "journal_mode", "delete").unwrap();
        }
        let before = std::fs::read(&path).unwrap();
        let err = Store::open(&path).unwrap_err();
        match &err {
            StoreError::TooNew {
                path: p,
                found,
                supported,
            } => {
                assert_eq!(
                    (p.as_path(), *found, *supported),
                    (path.as_path(), 99, SUPPORTED_VERSION)
                );
            }
            other => panic!("expected TooNew, got {other:?}"),
        }
        let msg = err.to_string();
        assert!(msg.contains("future.db") && msg.contains("99"), "{msg}");
        assert_eq!(
            std::fs::read(&path).unwrap(),
            before,
            "the file was modified"
        );
        let conn = Connection::open(&path).unwrap();
        assert_eq!(user_version(&conn).unwrap(), 99);
    }

    #[test]
    fn sales_check_their_status_and_price() {
        let store = Store::open_in_memory().unwrap();
        let conn = store.conn();
        conn.execute_batch(
            "INSERT INTO lives (id, host, room_id, source, started_at) VALUES (1, 'shop', 7, 'watch', 0);
             INSERT INTO buyers VALUES (42, 'anna', 'Anna', NULL, 0, 0);",
        )
        .unwrap();
        let sale = |status: &str| {
            conn.execute(
                "INSERT INTO sales (live_id, room_id, buyer_id, msg_id, item, unit_price_cents, currency,
                                    status, created_at, updated_at)
                 VALUES (1, 7, 42, 900, '12', 1500, 'EUR', ?1, 0, 0)",
                [status],
            )
        };
        sale("cancelled").unwrap();
        sale("pending").unwrap();
        assert!(sale("shipped").is_err(), "status is checked");
        let no_currency = conn.execute(
            "INSERT INTO sales (live_id, room_id, buyer_id, unit_price_cents, created_at, updated_at)
             VALUES (1, 7, 42, 1500, 0, 0)",
            [],
        );
        assert!(no_currency.is_err(), "a price needs its currency");
    }
}
