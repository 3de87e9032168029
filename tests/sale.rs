//! `tiklive sale` as a script and a seller use it: against a temp database filled through the library,
//! sales are created from claims (the id read back from the JSON on stdout), from other messages (with
//! a note on stderr) and by hand; listed as NDJSON with filters; updated and cancelled; and every
//! refusal exits with its documented code and says what to do.

mod support;

use std::path::{Path, PathBuf};

use serde_json::Value;
use support::{Output, ROOM_ID as ROOM, run, tiklive};
use tiklive::claims::Claim;
use tiklive::events::{Event, EventData, EventUser};
use tiklive::store::{LiveSource, NewLive, StoreWriter, WriterConfig};

/// Above 2^63: ids must travel as strings, every bit kept.
const CLAIM: u64 = 9_300_000_000_000_000_101;
const HELLO: u64 = 9_300_000_000_000_000_102;
const VIEWERS: u64 = 9_300_000_000_000_000_103;
const BOB_CLAIM: u64 = 9_300_000_000_000_000_104;
const ANNA: u64 = 6_800_000_000_000_000_042;
const BOB: u64 = 43;

fn user(id: u64, handle: &str) -> EventUser {
    EventUser {
        id,
        unique_id: handle.to_owned(),
        nickname: format!("{handle} ✨"),
        avatar_url: None,
        follow_role: 0,
        is_moderator: false,
        is_subscriber: false,
        gifter_level: 0,
    }
}

fn chat(msg_id: u64, ts_ms: i64, who: EventUser, comment: &str, claim: Option<Claim>) -> Event {
    Event {
        room_id: ROOM,
        msg_id,
        ts_ms,
        user: Some(who),
        data: EventData::Chat {
            comment: comment.to_owned(),
            emotes: Vec::new(),
            claim,
        },
        raw: None,
    }
}

/// One stored live: anna claims A12 M ×2 and says hello, a viewer count (no user), bob claims 7.
/// Returns the database path and the live's id.
fn database(dir: &Path) -> (PathBuf, i64) {
    let path = dir.join("x.db");
    let writer = StoreWriter::spawn(&path, WriterConfig::default()).unwrap();
    let live = writer
        .begin_live(NewLive {
            host: "shop".into(),
            room_id: ROOM,
            title: None,
            source: LiveSource::Watch,
            started_ms: 1_000,
        })
        .unwrap();
    let claim = |item: &str, variant: Option<&str>, quantity| Claim {
        item: Some(item.into()),
        variant: variant.map(str::to_owned),
        quantity,
        raw: format!("jp {item}"),
    };
    let viewers = Event {
        room_id: ROOM,
        msg_id: VIEWERS,
        ts_ms: 1_300,
        user: None,
        data: EventData::RoomUser {
            viewer_count: 120,
            total_viewers: 300,
            top_viewers: Vec::new(),
        },
        raw: None,
    };
    for event in [
        chat(
            CLAIM,
            1_100,
            user(ANNA, "anna"),
            "JP A12 M x2",
            Some(claim("A12", Some("M"), 2)),
        ),
        chat(HELLO, 1_200, user(ANNA, "anna"), "bonjour", None),
        viewers,
        chat(
            BOB_CLAIM,
            1_400,
            user(BOB, "bob"),
            "jp 7",
            Some(claim("7", None, 1)),
        ),
    ] {
        writer.send(live, &event).unwrap();
    }
    writer.finish().unwrap();
    (path, live.get())
}

/// `tiklive sale ARGS --db DB`, stdout a pipe (so JSON).
fn sale(dir: &Path, db: &Path, args: &[&str]) -> Output {
    let mut cmd = tiklive(dir);
    cmd.arg("sale").args(args).arg("--db").arg(db);
    run(cmd)
}

/// The one JSON object a successful create, update or cancel prints.
fn one(out: &Output) -> Value {
    assert_eq!(out.code(), Some(0), "{out}");
    let lines = out.events();
    assert_eq!(lines.len(), 1, "{out}");
    lines.into_iter().next().unwrap()
}

fn id_of(sale: &Value) -> String {
    sale["id"].as_i64().expect("a numeric id").to_string()
}

fn fails(out: &Output, code: i32, says: &str) {
    assert_eq!(out.code(), Some(code), "{out}");
    assert!(out.stdout.is_empty(), "nothing on stdout: {out}");
    assert!(out.stderr.contains(says), "{says:?}: {out}");
}

#[test]
fn a_sale_from_a_claim_prints_its_json_and_the_id_reads_it_back() {
    let dir = tempfile::tempdir().unwrap();
    let (db, live) = database(dir.path());
    let claim = CLAIM.to_string();
    let out = sale(
        dir.path(),
        &db,
        &["create", "--message", &claim, "--price", "12,50"],
    );
    let created = one(&out);
    assert!(!out.stderr.contains("not a claim"), "{out}");
    assert_eq!(created["msg_id"], claim.as_str());
    assert_eq!(created["room_id"], ROOM.to_string());
    assert_eq!(created["live_id"], live);
    assert_eq!(created["buyer_id"], ANNA.to_string());
    assert_eq!(created["unique_id"], "anna");
    assert_eq!(created["nickname"], "anna ✨");
    assert_eq!(
        (&created["item"], &created["variant"]),
        (&"A12".into(), &"M".into())
    );
    assert_eq!(created["quantity"], 2);
    assert_eq!(
        (
            &created["unit_price"],
            &created["currency"],
            &created["total"]
        ),
        (&"12.50".into(), &"EUR".into(), &"25.00".into())
    );
    assert_eq!(created["status"], "pending");
    assert!(created["claim_id"].is_i64(), "{created}");
    assert_eq!(created["created"], created["updated"]);

    let listed = sale(dir.path(), &db, &["list"]);
    assert_eq!(listed.code(), Some(0), "{listed}");
    assert_eq!(listed.events(), [created], "list shows the same object");

    // Flags override the claim; TIKLIVE_CURRENCY is the currency of a bare price.
    let mut cmd = tiklive(dir.path());
    cmd.env("TIKLIVE_CURRENCY", "usd")
        .args(["sale", "create", "--force", "--message", &claim])
        .args([
            "--item",
            "B7",
            "--variant",
            "L",
            "--qty",
            "3",
            "--price",
            "2",
        ])
        .args(["--note", "gift wrap", "--json", "--db"])
        .arg(&db);
    let forced = one(&run(cmd));
    assert_eq!(
        (&forced["item"], &forced["variant"]),
        (&"B7".into(), &"L".into())
    );
    assert_eq!(
        (
            &forced["quantity"],
            &forced["unit_price"],
            &forced["currency"],
            &forced["total"]
        ),
        (&3.into(), &"2.00".into(), &"USD".into(), &"6.00".into())
    );
    assert_eq!(forced["note"], "gift wrap");
}

#[test]
fn a_message_that_is_not_a_claim_makes_a_sale_with_a_note_on_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let (db, _) = database(dir.path());
    let hello = HELLO.to_string();
    let out = sale(
        dir.path(),
        &db,
        &["create", "--message", &hello, "--item", "A1"],
    );
    let created = one(&out);
    assert!(out.stderr.contains("not a claim"), "{out}");
    assert_eq!(
        (&created["item"], &created["quantity"]),
        (&"A1".into(), &1.into())
    );
    assert!(
        created["claim_id"].is_null() && created["unit_price"].is_null(),
        "{created}"
    );
    assert_eq!(created["msg_id"], hello.as_str());
    // --quiet keeps stderr for errors.
    let mut cmd = tiklive(dir.path());
    cmd.args([
        "--quiet",
        "sale",
        "create",
        "--force",
        "--message",
        &hello,
        "--db",
    ])
    .arg(&db);
    let out = run(cmd);
    one(&out);
    assert!(out.stderr.is_empty(), "{out}");
}

#[test]
fn a_second_sale_for_a_message_is_refused_with_exit_7_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let (db, _) = database(dir.path());
    let claim = CLAIM.to_string();
    let first = id_of(&one(&sale(
        dir.path(),
        &db,
        &["create", "--message", &claim],
    )));
    let again = sale(dir.path(), &db, &["create", "--message", &claim]);
    fails(&again, 7, &format!("already has sale {first}"));
    assert!(again.stderr.contains("--force"), "{again}");
    let forced = sale(dir.path(), &db, &["create", "--message", &claim, "--force"]);
    let second = id_of(&one(&forced));
    assert_ne!(first, second);
    assert!(
        forced
            .stderr
            .contains(&format!("already had sale(s) {first}")),
        "{forced}"
    );
    // Once both are cancelled, the message can be sold again without --force.
    one(&sale(dir.path(), &db, &["cancel", &first]));
    one(&sale(dir.path(), &db, &["cancel", &second]));
    one(&sale(dir.path(), &db, &["create", "--message", &claim]));
    // ...and a cancelled one cannot come back while it is.
    let back = sale(dir.path(), &db, &["update", &first, "--status", "pending"]);
    fails(&back, 7, "cancel sale");
}

#[test]
fn a_manual_sale_by_handle_goes_to_the_buyers_live() {
    let dir = tempfile::tempdir().unwrap();
    let (db, live) = database(dir.path());
    let out = sale(
        dir.path(),
        &db,
        &[
            "create", "--buyer", "@bob", "--item", "Z9", "--price", "5 USD", "--qty", "2",
        ],
    );
    let manual = one(&out);
    assert_eq!(
        (&manual["buyer_id"], &manual["unique_id"]),
        (&BOB.to_string().into(), &"bob".into())
    );
    assert_eq!(
        (&manual["live_id"], &manual["room_id"]),
        (&live.into(), &ROOM.to_string().into())
    );
    assert!(
        manual["msg_id"].is_null() && manual["claim_id"].is_null(),
        "{manual}"
    );
    assert_eq!(
        (&manual["total"], &manual["currency"]),
        (&"10.00".into(), &"USD".into())
    );
    let live_flag = live.to_string();
    let by_id = sale(
        dir.path(),
        &db,
        &[
            "create",
            "--buyer",
            &ANNA.to_string(),
            "--item",
            "Z9",
            "--live",
            &live_flag,
        ],
    );
    assert_eq!(one(&by_id)["unique_id"], "anna");
    // A French seller's price, with the euro sign and a narrow no-break space between thousands.
    let euros = one(&sale(
        dir.path(),
        &db,
        &[
            "create",
            "--buyer",
            "@bob",
            "--item",
            "Z9",
            "--price",
            "1\u{202f}250,50 €",
            "--currency",
            "USD",
        ],
    ));
    assert_eq!(
        (&euros["unit_price"], &euros["currency"]),
        (&"1250.50".into(), &"EUR".into()),
        "{euros}"
    );

    fails(
        &sale(
            dir.path(),
            &db,
            &["create", "--buyer", "@ghost", "--item", "Z9"],
        ),
        7,
        "no buyer \"@ghost\"",
    );
    fails(
        &sale(
            dir.path(),
            &db,
            &["create", "--buyer", "@bob", "--item", "Z9", "--live", "99"],
        ),
        7,
        "no live 99",
    );
    fails(
        &sale(dir.path(), &db, &["create", "--buyer", "@bob"]),
        2,
        "--item",
    );

    // Stdout that fails (a full disk): exit 1, and the error names the sale that was made anyway, so
    // a script that retries can tell.
    let before = sale(dir.path(), &db, &["list"]).events().len();
    let mut cmd = tiklive(dir.path());
    cmd.args(["sale", "create", "--buyer", "@bob", "--item", "Z9", "--db"])
        .arg(&db)
        .stdout(std::fs::File::create("/dev/full").unwrap());
    let out = run(cmd);
    assert_eq!(out.code(), Some(1), "{out}");
    let made = sale(dir.path(), &db, &["list"]).events();
    assert_eq!(made.len(), before + 1);
    let id = id_of(made.last().unwrap());
    assert!(
        out.stderr
            .contains(&format!("sale {id} was created, but could not be printed")),
        "{out}"
    );
}

#[test]
fn lists_are_ndjson_oldest_first_with_filters() {
    let dir = tempfile::tempdir().unwrap();
    let (db, live) = database(dir.path());
    let empty = sale(dir.path(), &db, &["list"]);
    assert_eq!(
        (empty.code(), empty.stdout.as_str()),
        (Some(0), ""),
        "{empty}"
    );

    let a = id_of(&one(&sale(
        dir.path(),
        &db,
        &["create", "--message", &CLAIM.to_string()],
    )));
    let b = id_of(&one(&sale(
        dir.path(),
        &db,
        &["create", "--message", &BOB_CLAIM.to_string()],
    )));
    let c = id_of(&one(&sale(
        dir.path(),
        &db,
        &["create", "--buyer", "@bob", "--item", "X", "--price", "1"],
    )));
    one(&sale(dir.path(), &db, &["update", &b, "--status", "paid"]));
    let ids = |args: &[&str]| -> Vec<String> {
        let mut all = vec!["list"];
        all.extend_from_slice(args);
        let out = sale(dir.path(), &db, &all);
        assert_eq!(out.code(), Some(0), "{out}");
        out.events().iter().map(id_of).collect()
    };
    assert_eq!(ids(&[]), [a.as_str(), b.as_str(), c.as_str()]);
    assert_eq!(ids(&["--buyer", "@bob"]), [b.as_str(), c.as_str()]);
    assert_eq!(
        ids(&["--buyer", "anna", "--live", &live.to_string()]),
        [a.as_str()]
    );
    assert_eq!(ids(&["--status", "paid"]), [b.as_str()]);
    assert_eq!(
        ids(&["--status", "pending", "--since", "1h"]),
        [a.as_str(), c.as_str()]
    );
    assert!(ids(&["--since", "2999-01-01"]).is_empty());
    assert!(ids(&["--status", "cancelled"]).is_empty());

    fails(
        &sale(dir.path(), &db, &["list", "--since", "yesterday"]),
        2,
        "invalid time",
    );
    fails(
        &sale(dir.path(), &db, &["list", "--status", "shipped"]),
        2,
        "shipped",
    );
    fails(
        &sale(dir.path(), &db, &["list", "--buyer", "@ghost"]),
        7,
        "@ghost",
    );
}

#[test]
fn update_then_cancel_a_sale() {
    let dir = tempfile::tempdir().unwrap();
    let (db, _) = database(dir.path());
    let created = one(&sale(
        dir.path(),
        &db,
        &["create", "--message", &CLAIM.to_string()],
    ));
    let id = id_of(&created);
    let paid = one(&sale(
        dir.path(),
        &db,
        &[
            "update", &id, "--status", "paid", "--price", "1500 JPY", "--qty", "1", "--note",
            "cash",
        ],
    ));
    assert_eq!(paid["status"], "paid");
    assert_eq!(
        (
            &paid["unit_price"],
            &paid["currency"],
            &paid["total"],
            &paid["quantity"]
        ),
        (&"1500".into(), &"JPY".into(), &"1500".into(), &1.into())
    );
    assert_eq!(
        (&paid["note"], &paid["created"]),
        (&"cash".into(), &created["created"])
    );
    let (before, after) = (
        created["updated"].as_str().unwrap(),
        paid["updated"].as_str().unwrap(),
    );
    assert!(after > before, "updated moved: {before} -> {after}");

    let cancelled = one(&sale(dir.path(), &db, &["cancel", &id]));
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(
        (&cancelled["note"], &cancelled["total"]),
        (&"cash".into(), &"1500".into())
    );
    let twice = one(&sale(dir.path(), &db, &["cancel", &id]));
    assert_eq!(twice, cancelled, "cancelling again changes nothing");
    let listed = sale(dir.path(), &db, &["list", "--status", "cancelled"]);
    assert_eq!(listed.events(), [cancelled]);

    fails(
        &sale(dir.path(), &db, &["update", &id]),
        2,
        "nothing to change",
    );
    fails(
        &sale(dir.path(), &db, &["update", "999", "--status", "paid"]),
        7,
        "no sale 999",
    );
    fails(&sale(dir.path(), &db, &["cancel", "999"]), 7, "no sale 999");
}

#[test]
fn bad_input_exits_2_and_unknown_things_exit_7_without_writing() {
    let dir = tempfile::tempdir().unwrap();
    let (db, _) = database(dir.path());
    let claim = CLAIM.to_string();
    // Each line: the arguments (split on spaces), then what the error says.
    let cases = format!(
        "create --message {claim} --price 12.505 | invalid price
         create --message {claim} --price -3 | negative
         create --message {claim} --price 3 --currency EURO | EURO
         create --message {claim} --price 3 --currency EUT | EUT
         create --message {claim} --price 3_ABC | ABC
         create --message {claim} --price 1_2_3 | thousands
         create --message {claim} --price $3 | code
         create --message abc | invalid message id
         create --message 18446744073709551616 | invalid message id
         create --message {claim} --qty 0 | --qty
         create --item A1 | --message
         create --message {claim} --buyer @bob --item A | cannot be used
         create --buyer @bob --item A --force | cannot be used
         update 1 --price douze | invalid price
         update 1 --qty -2 | -2"
    );
    for case in cases.lines() {
        let (args, says) = case.trim().split_once(" | ").unwrap();
        let args: Vec<&str> = args.split(' ').collect();
        fails(&sale(dir.path(), &db, &args), 2, says);
    }
    fails(
        &sale(
            dir.path(),
            &db,
            &["create", "--message", &VIEWERS.to_string()],
        ),
        2,
        "without a user",
    );
    fails(
        &sale(dir.path(), &db, &["create", "--message", "12345"]),
        7,
        "no message 12345",
    );
    let out = sale(dir.path(), &db, &["list"]);
    assert_eq!(
        (out.code(), out.stdout.as_str()),
        (Some(0), ""),
        "no sale was made: {out}"
    );
}

#[test]
fn a_file_that_is_not_a_tiklive_database_or_no_file_exits_6_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.txt");
    std::fs::write(
        &text,
        "not a database, but long enough to have a header ".repeat(4),
    )
    .unwrap();
    let other = dir.path().join("other.db");
    rusqlite::Connection::open(&other)
        .unwrap()
        .execute_batch("CREATE TABLE bookmarks (url TEXT); INSERT INTO bookmarks VALUES ('x');")
        .unwrap();
    for (path, says) in [(&text, "not a database"), (&other, "another application")] {
        let before = std::fs::read(path).unwrap();
        for args in [
            &["list"][..],
            &["create", "--message", "1"],
            &["create", "--buyer", "@a", "--item", "A"],
            &["update", "1", "--status", "paid"],
            &["cancel", "1"],
        ] {
            fails(&sale(dir.path(), path, args), 6, says);
        }
        assert_eq!(
            std::fs::read(path).unwrap(),
            before,
            "{} untouched",
            path.display()
        );
    }
    // A mistyped --db is an error, not a new database that has no sales.
    let typo = dir.path().join("tiklve.db");
    for args in [&["list"][..], &["create", "--buyer", "@a", "--item", "A"]] {
        let out = sale(dir.path(), &typo, args);
        fails(&out, 6, "no such file");
        assert_eq!(out.stderr.matches("no such file").count(), 1, "{out}");
    }
    assert!(!typo.exists(), "no database created");
}

#[test]
fn a_terminal_gets_a_table_unless_json_is_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let (db, _) = database(dir.path());
    let claim = CLAIM.to_string();
    one(&sale(
        dir.path(),
        &db,
        &["create", "--message", &claim, "--price", "12.50"],
    ));

    let table = on_terminal(dir.path(), &db, &["list"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 2, "{table}");
    for column in [
        "ID", "STATUS", "BUYER", "ITEM", "VARIANT", "QTY", "PRICE", "TOTAL", "CREATED",
    ] {
        assert!(lines[0].contains(column), "{column}: {table}");
    }
    for cell in ["pending", "@anna", "A12", "M", "12.50 EUR", "25.00 EUR"] {
        assert!(lines[1].contains(cell), "{cell}: {table}");
    }
    let json = on_terminal(dir.path(), &db, &["list", "--json"]);
    let sale: Value = serde_json::from_str(json.trim()).unwrap_or_else(|e| panic!("{e}: {json}"));
    assert_eq!(sale["item"], "A12");
}

/// Runs `tiklive sale ARGS --db DB` with stdout on a pseudo-terminal and returns what it printed.
fn on_terminal(dir: &Path, db: &Path, args: &[&str]) -> String {
    use std::io::Read;
    use std::os::fd::{FromRawFd, OwnedFd};
    let (mut master, mut slave) = (0, 0);
    // SAFETY: openpty writes two new descriptors, which are owned just below.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    let mut cmd = tiklive(dir);
    cmd.arg("sale").args(args).arg("--db").arg(db).stdout(slave);
    let child = cmd.spawn().unwrap();
    // `cmd` holds the last copy of the terminal's slave side: drop it so reading ends with the child.
    drop(cmd);
    let reader = std::thread::spawn(move || {
        let mut text = Vec::new();
        // Linux ends a pty whose slave is closed with EIO rather than EOF.
        let _ = std::fs::File::from(master).read_to_end(&mut text);
        text
    });
    let out = support::finish(child);
    assert_eq!(out.code(), Some(0), "{out}");
    // The terminal turns "\n" into "\r\n".
    String::from_utf8(reader.join().unwrap())
        .unwrap()
        .replace("\r\n", "\n")
}
