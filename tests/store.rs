//! The store seen from outside: `watch` and `replay` against the loopback mocks put in the database
//! exactly what they print, never twice, with `--auto-sale` sales, a database tiklive must not touch
//! refused with exit 6, an old schema migrated, and nothing accepted lost when the process is killed.

mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};
use serde_json::Value;
use support::*;
use tiklive::protocol::BaseMessage;

/// A read-only connection, as a script inspecting the database would open it.
fn open(path: &Path) -> Connection {
    Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap()
}

fn count(db: &Connection, sql: &str) -> i64 {
    db.query_row(sql, [], |r| r.get(0)).unwrap()
}

/// A short live: a claim, gifts (one streak), a like, a join, viewers, then the end of the live.
struct Live {
    scenario: Scenario,
    claim: BaseMessage,
}

fn live() -> Live {
    let (buyer, fan) = (buyer(), fan());
    let mut m = Messages::new(ROOM_ID);
    let history = vec![m.chat(&fan, "bonjour !")];
    let claim = m.chat(&buyer, "JP A12 M x2");
    let other_claim = m.chat(&fan, "jp b7");
    let roses: Vec<_> = (1..=3)
        .map(|n| m.gift(&fan, &rose(), n, n == 3, 1_767_225_600_123))
        .collect();
    let scenario = Scenario::default().history(history).script(vec![
        Step::frame(vec![claim.clone(), m.like(&fan, 5, 120), other_claim]),
        Step::frame(roses),
        Step::frame(vec![m.member(&buyer, 87), m.room_user(118, 342)]),
        Step::frame(vec![m.control(3)]),
    ]);
    Live { scenario, claim }
}

fn printed_events(out: &Output) -> Vec<Value> {
    out.events()
        .into_iter()
        .filter(|e| e["type"] != "connection")
        .collect()
}

#[test]
fn watch_stores_exactly_what_it_prints() {
    let live = live();
    let mock = Mock::start(live.scenario);
    let dir = tempfile::tempdir().unwrap();
    let out = run(watch(&mock, dir.path(), "seller", &[]));
    assert_eq!(out.code(), Some(0), "{out}");
    let db_path = default_db(dir.path());
    let first_line = out.stderr.lines().next().unwrap_or_default();
    assert!(
        first_line.contains("storing events in")
            && first_line.contains(&*db_path.to_string_lossy()),
        "the first stderr line says where the data goes: {out}"
    );

    let printed: Vec<String> = out
        .stdout
        .lines()
        .filter(|l| !l.contains(r#""type":"connection""#))
        .map(str::to_owned)
        .collect();
    // The history chat, 2 claims, a like, the final rose, a join, viewers and the end of the live.
    assert_eq!(printed.len(), 8, "{out}");
    let db = open(&db_path);
    let stored: Vec<String> = db
        .prepare("SELECT json FROM events ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(stored, printed, "the stored JSON is the printed line");

    // The typed columns agree with the line.
    for event in printed_events(&out) {
        let msg_id: u64 = event["msg_id"].as_str().unwrap().parse().unwrap();
        let (kind, user_id, unique_id): (String, Option<i64>, Option<String>) = db
            .query_row(
                "SELECT type, user_id, unique_id FROM events WHERE room_id = ?1 AND msg_id = ?2",
                [ROOM_ID as i64, msg_id as i64],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!(kind, event["type"].as_str().unwrap());
        assert_eq!(
            user_id.map(|id| (id as u64).to_string()),
            event["user"]["id"].as_str().map(str::to_owned)
        );
        assert_eq!(unique_id.as_deref(), event["user"]["unique_id"].as_str());
    }
    let rose: (i64, i64, i64) = db
        .query_row(
            "SELECT gift_id, repeat_count, gift_streaking FROM events WHERE type = 'gift'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(
        rose,
        (5655, 3, 0),
        "only the finished streak was printed and stored"
    );

    // The claims, in order of arrival, with their buyers.
    let claims: Vec<(i64, String, Option<String>, i64, String)> = db
        .prepare(
            "SELECT c.msg_id, c.item, c.variant, c.quantity, b.unique_id
             FROM claims c JOIN buyers b ON b.id = c.buyer_id ORDER BY c.ts, c.msg_id",
        )
        .unwrap()
        .query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        claims,
        [
            (
                live.claim.msg_id as i64,
                "A12".into(),
                Some("M".into()),
                2,
                buyer_handle()
            ),
            (
                live.claim.msg_id as i64 + 1,
                "B7".into(),
                None,
                1,
                "lea_b".into()
            ),
        ]
    );
    assert_eq!(count(&db, "SELECT count(*) FROM buyers"), 2);
    assert_eq!(
        count(&db, "SELECT count(*) FROM sales"),
        0,
        "no --auto-sale"
    );

    // One live, with its host, room, title (from room info, trimmed) and end.
    let (host, room, source, title, ended): (String, i64, String, String, Option<i64>) = db
        .query_row(
            "SELECT host, room_id, source, title, ended_at FROM lives",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .unwrap();
    assert_eq!(
        (host.as_str(), room, source.as_str()),
        ("seller", ROOM_ID as i64, "watch")
    );
    assert_eq!(title, room_title(ROOM_ID).trim());
    assert!(ended.is_some());

    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&db_path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

fn buyer_handle() -> String {
    buyer().display_id
}

#[test]
fn no_store_writes_no_database_and_db_flag_picks_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let mock = Mock::start(live().scenario);
    let out = run(watch(&mock, dir.path(), "seller", &["--no-store"]));
    assert_eq!(out.code(), Some(0), "{out}");
    assert!(out.stderr.contains("not storing"), "{out}");
    assert!(!default_db(dir.path()).exists());
    assert!(!dir.path().join("data").exists());

    let mock = Mock::start(live().scenario);
    let mut cmd = watch(&mock, dir.path(), "seller", &[]);
    cmd.env("TIKLIVE_DB", dir.path().join("env.db"));
    let out = run(cmd);
    assert_eq!(out.code(), Some(0), "{out}");
    assert_eq!(
        count(
            &open(&dir.path().join("env.db")),
            "SELECT count(*) FROM events"
        ),
        8
    );

    let mock = Mock::start(live().scenario);
    let mut cmd = watch(&mock, dir.path(), "seller", &["--db", "flag.db"]);
    cmd.env("TIKLIVE_DB", dir.path().join("env.db"));
    let out = run(cmd);
    assert_eq!(out.code(), Some(0), "{out}");
    assert_eq!(
        count(
            &open(&dir.path().join("flag.db")),
            "SELECT count(*) FROM events"
        ),
        8
    );
    let env_db = open(&dir.path().join("env.db"));
    assert_eq!(
        count(&env_db, "SELECT count(*) FROM events"),
        8,
        "a second watch of the same live adds no duplicate"
    );
    assert_eq!(count(&env_db, "SELECT count(*) FROM lives"), 1);
}

#[test]
fn a_recording_replayed_twice_is_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let mock = Mock::start(live().scenario);
    let out = run(watch(
        &mock,
        dir.path(),
        "seller",
        &["--no-store", "--record", "live.rec"],
    ));
    assert_eq!(out.code(), Some(0), "{out}");
    let replay = || {
        let mut cmd = tiklive(dir.path());
        cmd.args(["replay", "live.rec", "--db", "r.db"]);
        let out = run(cmd);
        assert_eq!(out.code(), Some(0), "{out}");
        out
    };
    let first = replay();
    let second = replay();
    assert_eq!(
        first.stdout, second.stdout,
        "replay prints the same lines both times"
    );
    let db = open(&dir.path().join("r.db"));
    assert_eq!(count(&db, "SELECT count(*) FROM events"), 8);
    assert_eq!(count(&db, "SELECT count(*) FROM claims"), 2);
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM lives WHERE source = 'replay' AND host = 'live'"
        ),
        2
    );
    // A replayed live spans its events and knows its room, from the events themselves.
    let (room, started, ended, first_ts, last_ts): (i64, i64, i64, i64, i64) = db
        .query_row(
            "SELECT l.room_id, l.started_at, l.ended_at, (SELECT min(ts) FROM events), (SELECT max(ts) FROM events)
             FROM lives l ORDER BY l.id LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .unwrap();
    assert_eq!((room, started, ended), (ROOM_ID as i64, first_ts, last_ts));
    assert!(second.stderr.contains("already_stored=8"), "{second}");
}

#[test]
fn auto_sale_creates_a_pending_sale_per_claim_with_the_price_list() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("prices.csv"), "item;price\nA12;12,50\n").unwrap();
    let mock = Mock::start(live().scenario);
    let out = run(watch(
        &mock,
        dir.path(),
        "seller",
        &[
            "--auto-sale",
            "--price-list",
            "prices.csv",
            "--currency",
            "chf",
        ],
    ));
    assert_eq!(out.code(), Some(0), "{out}");
    let mut lines = out.stderr.lines();
    assert!(
        lines
            .next()
            .unwrap_or_default()
            .contains("storing events in")
            && lines
                .next()
                .unwrap_or_default()
                .contains("a pending sale will be created for every claim prices=1"),
        "where the data goes first, then the sales: {out}"
    );
    let db = open(&default_db(dir.path()));
    type SaleRow = (
        String,
        Option<String>,
        i64,
        Option<i64>,
        Option<String>,
        String,
        i64,
    );
    let sales: Vec<SaleRow> = db
        .prepare(
            "SELECT s.item, s.variant, s.quantity, s.unit_price_cents, s.currency, s.status, s.claim_id
             FROM sales s ORDER BY s.id",
        )
        .unwrap()
        .query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let claim_ids: Vec<i64> = db
        .prepare("SELECT id FROM claims ORDER BY ts, msg_id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        sales,
        [
            (
                "A12".into(),
                Some("M".into()),
                2,
                Some(1250),
                Some("CHF".into()),
                "pending".into(),
                claim_ids[0]
            ),
            (
                "B7".into(),
                None,
                1,
                None,
                None,
                "pending".into(),
                claim_ids[1]
            ),
        ],
        "an item missing from the price list gets a sale without a price"
    );

    // A bad price list is a usage error before anything connects.
    std::fs::write(dir.path().join("bad.csv"), "A12,12.50\nB7,douze\n").unwrap();
    let mock = Mock::start(live().scenario);
    let out = run(watch(
        &mock,
        dir.path(),
        "seller",
        &["--auto-sale", "--price-list", "bad.csv"],
    ));
    assert_eq!(out.code(), Some(2), "{out}");
    assert!(
        out.stderr.contains("bad.csv") && out.stderr.contains("line 2"),
        "{out}"
    );
    assert!(mock.state().requests(Role::Web).is_empty());
    let out = run(watch(
        &mock,
        dir.path(),
        "seller",
        &["--auto-sale", "--no-store"],
    ));
    assert_eq!(out.code(), Some(2), "{out}");
}

#[test]
fn a_database_tiklive_must_not_touch_is_refused_with_exit_6() {
    let dir = tempfile::tempdir().unwrap();
    let mock = Mock::start(live().scenario);
    // Another application's SQLite database, a text file, and a tiklive database from the future.
    let other = dir.path().join("other.db");
    Connection::open(&other)
        .unwrap()
        .execute_batch("CREATE TABLE notes (t TEXT); INSERT INTO notes VALUES ('x');")
        .unwrap();
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "not a database, long enough to have a header ........................................................").unwrap();
    let future = dir.path().join("future.db");
    {
        let mut cmd = tiklive(dir.path());
        cmd.args(["replay", "-", "--db"]).arg(&future);
        let out = run(cmd);
        assert_eq!(out.code(), Some(0), "{out}");
        Connection::open(&future)
            .unwrap()
            .pragma_update(None, "user_version", 99)
            .unwrap();
    }
    for (path, says) in [
        (&other, "another application"),
        (&text, "not a database"),
        (&future, "newer"),
    ] {
        let before = std::fs::read(path).unwrap();
        let out = run(watch(
            &mock,
            dir.path(),
            "seller",
            &["--db", path.to_str().unwrap()],
        ));
        assert_eq!(out.code(), Some(6), "{out}");
        assert!(out.stderr.contains(says), "{says}: {out}");
        assert!(out.stdout.is_empty(), "{out}");
        assert_eq!(std::fs::read(path).unwrap(), before, "left untouched");
        let mut cmd = tiklive(dir.path());
        cmd.args(["replay", "-", "--db"]).arg(path);
        assert_eq!(run(cmd).code(), Some(6));
    }
    assert!(
        mock.state().requests(Role::Web).is_empty(),
        "refused before connecting"
    );
}

#[test]
fn a_database_of_schema_version_1_is_migrated_with_its_claims() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    let claim_json = r#"{"v":1,"type":"chat","ts":"2026-01-01T00:00:00.000Z","room_id":"7","msg_id":"900","user":{"id":"42","unique_id":"anna","nickname":"Anna"},"comment":"jp 12","claim":{"item":"12","variant":null,"quantity":3,"raw":"jp 12"}}"#;
    {
        let db = Connection::open(&path).unwrap();
        db.execute_batch(tiklive::store::MIGRATIONS[0]).unwrap();
        db.pragma_update(None, "user_version", 1).unwrap();
        db.execute_batch(&format!(
            "INSERT INTO lives VALUES (1, 'shop', 7, NULL, 'watch', 0, NULL);
             INSERT INTO buyers VALUES (42, 'anna', 'Anna', NULL, 0, 0);
             INSERT INTO events (live_id, room_id, msg_id, type, ts, user_id, unique_id, nickname, comment, json)
             VALUES (1, 7, 900, 'chat', 1767225600000, 42, 'anna', 'Anna', 'jp 12', '{claim_json}');"
        ))
        .unwrap();
    }
    // Any command that opens the database migrates it.
    let mut cmd = tiklive(dir.path());
    cmd.args(["replay", "-", "--db", "old.db"]);
    let out = run(cmd);
    assert_eq!(out.code(), Some(0), "{out}");
    let db = open(&path);
    let version: i64 = db
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, tiklive::store::SUPPORTED_VERSION as i64);
    let claim: (i64, i64, String, i64) = db
        .query_row(
            "SELECT msg_id, buyer_id, item, quantity FROM claims",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    assert_eq!(claim, (900, 42, "12".into(), 3));
    assert_eq!(
        count(&db, "SELECT count(*) FROM events"),
        1,
        "the old rows are kept"
    );
    // Rebuilt by migration 4: the claim still points at its event, and the key is message first.
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM claims c JOIN events e ON e.id = c.event_id AND e.msg_id = 900"
        ),
        1
    );
    let key: String = db
        .query_row(
            "SELECT group_concat(name) FROM pragma_index_info('sqlite_autoindex_events_1')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(key, "msg_id,room_id");
    assert!(
        out.stderr.contains("upgrading the database's schema") && out.stderr.contains("old.db"),
        "the upgrade is said once, with the file: {out}"
    );
}

/// A long stream of chat, likes and claims in frames of 50 messages.
fn fast_stream(m: &mut Messages, frames: usize) -> Vec<Step> {
    let (buyer, fan) = (buyer(), fan());
    (0..frames)
        .map(|f| {
            Step::frame(
                (0..50)
                    .map(|i| match i % 5 {
                        0 => m.chat(&buyer, &format!("JP {f}-{i}")),
                        1 | 2 => m.like(&fan, 1, (f * 50 + i) as u64),
                        _ => m.chat(&fan, "trop beau"),
                    })
                    .collect(),
            )
        })
        .collect()
}

/// Reads stdout lines on a thread; the count of lines read so far is shared.
fn read_lines(child: &mut std::process::Child) -> std::sync::Arc<std::sync::Mutex<Vec<String>>> {
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let stdout = child.stdout.take().unwrap();
    let sink = std::sync::Arc::clone(&lines);
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            sink.lock().unwrap().push(line);
        }
    });
    lines
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn sigterm_commits_everything_printed_even_with_a_long_commit_interval() {
    let mut m = Messages::new(ROOM_ID);
    let mut script = fast_stream(&mut m, 10);
    script.push(Step::WaitRelease);
    let mock = Mock::start(Scenario::default().script(script));
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = watch(
        &mock,
        dir.path(),
        "seller",
        &["--commit-interval", "1h", "--commit-events", "100000"],
    );
    let mut child = cmd.spawn().unwrap();
    let lines = read_lines(&mut child);
    wait_for("500 events", || lines.lock().unwrap().len() > 500);
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(143));
    let db = open(&default_db(dir.path()));
    assert_eq!(count(&db, "SELECT count(*) FROM events"), 500);
    assert_eq!(count(&db, "SELECT count(*) FROM claims"), 100);
    assert!(
        count(&db, "SELECT ended_at FROM lives") > 0,
        "the live's end is stored"
    );
}

#[test]
fn sigkill_loses_at_most_the_last_batch_and_keeps_the_database_sound() {
    let mut m = Messages::new(ROOM_ID);
    let mut script = fast_stream(&mut m, 20);
    script.push(Step::WaitRelease);
    script.extend(fast_stream(&mut m, 400));
    script.push(Step::WaitRelease);
    let mock = Mock::start(Scenario::default().script(script));
    let dir = tempfile::tempdir().unwrap();
    let db_path = default_db(dir.path());
    let mut cmd = watch(&mock, dir.path(), "seller", &["--auto-sale"]);
    cmd.stdin(Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let lines = read_lines(&mut child);
    wait_for("the first 1,000 events", || {
        lines.lock().unwrap().len() > 1000
    });
    // A sale made by hand while the live is being stored, from another process.
    let first_claim: Value = serde_json::from_str(&lines.lock().unwrap()[1]).unwrap();
    assert!(first_claim["claim"].is_object(), "{first_claim}");
    wait_for("the first batch to be committed", || {
        db_path.exists() && count(&open(&db_path), "SELECT count(*) FROM events") == 1000
    });
    let mut sale = tiklive(dir.path());
    sale.args([
        "sale", "update", "1", "--status", "paid", "--price", "9.90", "--json",
    ]);
    let out = run(sale);
    assert_eq!(out.code(), Some(0), "{out}");
    let paid: Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(paid["status"], "paid");

    // The fast part of the stream, killed in its middle.
    mock.release();
    wait_for("5,000 more events", || lines.lock().unwrap().len() > 6000);
    child.kill().unwrap();
    child.wait().unwrap();
    let printed = lines.lock().unwrap().len() as i64;

    let db = Connection::open(&db_path).unwrap();
    let check: String = db
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    let fk: i64 = count(&db, "SELECT count(*) FROM pragma_foreign_key_check");
    assert_eq!(fk, 0);
    let stored = count(&db, "SELECT count(*) FROM events");
    // In flight at the kill: the batch being written (1,000), the writer's queue (1,024) and the frame
    // being printed (50).
    assert!(
        stored >= printed - 1000 - 1024 - 50,
        "{printed} printed, {stored} stored: more than the last batch and the queue behind it lost"
    );
    let (status, cents): (String, i64) = db
        .query_row(
            "SELECT status, unit_price_cents FROM sales WHERE id = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(
        (status.as_str(), cents),
        ("paid", 990),
        "the sale made before the kill is there"
    );
    assert_eq!(
        count(&db, "SELECT count(*) FROM claims"),
        count(&db, "SELECT count(*) FROM sales"),
        "every stored claim has its auto sale (same transaction)"
    );
}

/// `tiklive export KIND` of the database `dir` holds, as (header, rows of name → cell).
fn export(dir: &Path, kind: &str) -> Vec<std::collections::HashMap<String, String>> {
    let mut cmd = tiklive(dir);
    cmd.args(["export", kind]);
    let out = run(cmd);
    assert_eq!(out.code(), Some(0), "{out}");
    let mut reader = csv::Reader::from_reader(out.stdout.as_bytes());
    let header: Vec<String> = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_owned)
        .collect();
    reader
        .records()
        .map(|r| {
            header
                .iter()
                .cloned()
                .zip(r.unwrap().iter().map(str::to_owned))
                .collect()
        })
        .collect()
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => u8::from(*b).to_string(),
        other => other.to_string(),
    }
}

#[test]
fn every_export_kind_matches_what_watch_printed() {
    let live = live();
    let mock = Mock::start(live.scenario);
    let dir = tempfile::tempdir().unwrap();
    let out = run(watch(&mock, dir.path(), "seller", &["--auto-sale"]));
    assert_eq!(out.code(), Some(0), "{out}");
    let printed = printed_events(&out);
    let by_type = |t: &str| -> Vec<&Value> { printed.iter().filter(|e| e["type"] == t).collect() };

    // Every kind: one row per printed event of its type, in order, with the printed values.
    let user_columns = |row: &std::collections::HashMap<String, String>, e: &Value| {
        assert_eq!(row["msg_id"], text(&e["msg_id"]));
        assert_eq!(row["room_id"], text(&e["room_id"]));
        assert_eq!(row["time"], text(&e["ts"]));
        assert_eq!(row["user_id"], text(&e["user"]["id"]));
        assert_eq!(row["unique_id"], text(&e["user"]["unique_id"]));
        assert_eq!(row["nickname"], text(&e["user"]["nickname"]));
    };
    let events = export(dir.path(), "events");
    assert_eq!(events.len(), printed.len());
    for (row, e) in events.iter().zip(&printed) {
        assert_eq!(row["type"], text(&e["type"]));
        assert_eq!(row["msg_id"], text(&e["msg_id"]));
        assert_eq!(row["time"], text(&e["ts"]));
        let json: Value = serde_json::from_str(&row["json"]).unwrap();
        assert_eq!(&json, e, "the json column is the printed line");
    }
    let chat = export(dir.path(), "chat");
    assert_eq!(chat.len(), by_type("chat").len());
    for (row, e) in chat.iter().zip(by_type("chat")) {
        user_columns(row, e);
        assert_eq!(row["comment"], text(&e["comment"]));
        assert_eq!(row["claim_item"], text(&e["claim"]["item"]));
        assert_eq!(row["claim_variant"], text(&e["claim"]["variant"]));
        assert_eq!(row["claim_quantity"], text(&e["claim"]["quantity"]));
    }
    let gifts = export(dir.path(), "gifts");
    assert_eq!(gifts.len(), by_type("gift").len());
    for (row, e) in gifts.iter().zip(by_type("gift")) {
        user_columns(row, e);
        for column in [
            "gift_id",
            "gift_name",
            "repeat_count",
            "diamond_count",
            "total_diamonds",
        ] {
            assert_eq!(row[column], text(&e[column]), "{column}");
        }
    }
    let likes = export(dir.path(), "likes");
    assert_eq!(likes.len(), by_type("like").len());
    for (row, e) in likes.iter().zip(by_type("like")) {
        user_columns(row, e);
        assert_eq!(row["like_count"], text(&e["like_count"]));
        assert_eq!(row["total_like_count"], text(&e["total_like_count"]));
    }
    let members = export(dir.path(), "members");
    assert_eq!(members.len(), by_type("member").len());
    for (row, e) in members.iter().zip(by_type("member")) {
        user_columns(row, e);
        assert_eq!(row["action_id"], text(&e["action_id"]));
    }
    let viewers = export(dir.path(), "viewers");
    assert_eq!(viewers.len(), by_type("room_user").len());
    for (row, e) in viewers.iter().zip(by_type("room_user")) {
        assert_eq!(row["viewer_count"], text(&e["viewer_count"]));
        assert_eq!(row["total_viewers"], text(&e["total_viewers"]));
    }
    assert!(
        export(dir.path(), "social").is_empty(),
        "no social event in this live"
    );

    let claims = export(dir.path(), "claims");
    let printed_claims: Vec<&Value> = printed.iter().filter(|e| e["claim"].is_object()).collect();
    assert_eq!(claims.len(), printed_claims.len());
    for (rank, (row, e)) in claims.iter().zip(&printed_claims).enumerate() {
        user_columns(row, e);
        assert_eq!(row["item"], text(&e["claim"]["item"]));
        assert_eq!(row["raw"], text(&e["claim"]["raw"]));
        assert_eq!(row["rank"], (rank + 1).to_string());
    }
    let sales = export(dir.path(), "sales");
    assert_eq!(sales.len(), printed_claims.len(), "one auto sale per claim");
    for (row, e) in sales.iter().zip(&printed_claims) {
        assert_eq!(row["msg_id"], text(&e["msg_id"]));
        assert_eq!(row["buyer_id"], text(&e["user"]["id"]));
        assert_eq!(row["status"], "pending");
        assert_eq!(row["quantity"], text(&e["claim"]["quantity"]));
    }
    let buyers = export(dir.path(), "buyers");
    let mut ids: Vec<String> = printed
        .iter()
        .filter_map(|e| e["user"]["id"].as_str().map(str::to_owned))
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(
        buyers
            .iter()
            .map(|b| b["id"].clone())
            .collect::<Vec<_>>()
            .len(),
        ids.len()
    );
    for b in &buyers {
        let seen = printed
            .iter()
            .filter(|e| text(&e["user"]["id"]) == b["id"])
            .count();
        assert_eq!(b["events"], seen.to_string(), "{b:?}");
    }
}
