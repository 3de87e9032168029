//! `tiklive export` end to end, through the binary on a database filled by the library's writer: each
//! kind's header and values, every form of --since/--until, the live, room and user filters, formula
//! neutralisation proved on the bytes, BOM, delimiters and --excel-fr, the atomic --out, a closed
//! stdout, incremental cursors, and the exit codes of what cannot be exported.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::{Output, finish, first_line_then_close, run, tiklive};
use tiklive::claims::Claim;
use tiklive::events::{Event, EventData, EventUser, SocialKind, now_ms};
use tiklive::money::PriceList;
use tiklive::store::{AutoSale, LiveSource, NewLive, Store, StoreWriter, WriterConfig};

/// 2026-01-01T00:00:00Z: the first live; the second is a day later.
const T0: i64 = 1_767_225_600_000;
const DAY: i64 = 86_400_000;
/// The room of the support mocks, for the first live.
const ROOM_1: u64 = support::ROOM_ID;
const ROOM_2: u64 = 7_280_000_000_000_000_002;
const ANNA: u64 = 6_900_000_000_000_000_001;
/// Above i64::MAX: stored negative, it must come out as TikTok wrote it.
const BIG: u64 = 18_000_000_000_000_000_007;

/// Nicknames a viewer could pick to have a spreadsheet run something.
const FORMULAS: [&str; 5] = ["=HYPERLINK(\"http://x\")", "@SUM(1)", "+1", "-1", "\tTab"];

fn user(id: u64, handle: &str, nickname: &str) -> EventUser {
    EventUser {
        id,
        unique_id: handle.into(),
        nickname: nickname.into(),
        avatar_url: Some(format!("https://p16.example/{handle}.webp")),
        follow_role: 0,
        is_moderator: false,
        is_subscriber: false,
        gifter_level: 0,
    }
}

fn anna() -> EventUser {
    user(ANNA, "anna", "Anna ✨")
}

fn big() -> EventUser {
    user(BIG, "grand_id", "Grand")
}

fn attacker(i: usize) -> EventUser {
    user(
        6_900_000_000_000_000_100 + i as u64,
        &format!("m{i}"),
        FORMULAS[i],
    )
}

/// Message ids: `msg(n)`, so that tests can name them.
fn msg(n: u64) -> u64 {
    7_300_000_000_000_000_000 + n
}

fn event(room: u64, n: u64, ts_ms: i64, user: Option<EventUser>, data: EventData) -> Event {
    Event {
        room_id: room,
        msg_id: msg(n),
        ts_ms,
        user,
        data,
        raw: None,
    }
}

fn chat(comment: &str, claim: Option<(&str, Option<&str>, u32)>) -> EventData {
    EventData::Chat {
        comment: comment.into(),
        emotes: Vec::new(),
        claim: claim.map(|(item, variant, quantity)| Claim {
            item: Some(item.into()),
            variant: variant.map(Into::into),
            quantity,
            raw: comment.into(),
        }),
    }
}

fn rose(repeat_count: u64, streaking: bool) -> EventData {
    EventData::Gift {
        gift_id: 5655,
        gift_name: "Rose".into(),
        gift_type: 1,
        repeat_count,
        repeat_end: !streaking,
        streaking,
        group_id: 1,
        diamond_count: 1,
        total_diamonds: repeat_count,
        gift_image_url: None,
        receiver_user_id: None,
    }
}

fn like(count: u64, total: u64) -> EventData {
    EventData::Like {
        like_count: count,
        total_like_count: total,
    }
}

fn social(kind: SocialKind, share_count: u64) -> EventData {
    EventData::Social {
        social_type: kind,
        action_id: 1,
        share_count,
        display_key: "pm_mt_guidance_share".into(),
    }
}

fn live(host: &str, room_id: u64, started_ms: i64, source: LiveSource) -> NewLive {
    NewLive {
        host: host.into(),
        room_id,
        title: None,
        source,
        started_ms,
    }
}

/// Stores `lives` (each with its events) with the library's writer; claims of A12 and C3 get a
/// priced pending sale (auto-sale), others an unpriced one.
fn store(db: &Path, lives: Vec<(NewLive, Vec<Event>)>) {
    let prices = PriceList::parse("A12,12.50\nC3,7\n", "EUR").unwrap();
    let config = WriterConfig {
        auto_sale: Some(AutoSale { prices }),
        ..WriterConfig::default()
    };
    let writer = StoreWriter::spawn(db, config).unwrap();
    for (new_live, events) in lives {
        let id = writer.begin_live(new_live).unwrap();
        for e in &events {
            writer.send(id, e).unwrap();
        }
    }
    writer.finish().unwrap();
}

/// A temp dir with `x.db`: two lives, every kind of row, a user id above i64::MAX and nicknames that
/// are formulas. Events get ids 1 to 15 in this order.
struct Fixture {
    dir: tempfile::TempDir,
    db: PathBuf,
    /// Every stored event, in id order.
    events: Vec<Event>,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("x.db");
    let first = vec![
        event(
            ROOM_1,
            1,
            T0 + 1000,
            Some(anna()),
            chat("JP A12 M x2", Some(("A12", Some("M"), 2))),
        ),
        event(
            ROOM_1,
            2,
            T0 + 2000,
            Some(attacker(0)),
            chat("bonjour; ça va ?", None),
        ),
        event(ROOM_1, 3, T0 + 3000, Some(anna()), rose(1, true)),
        event(ROOM_1, 4, T0 + 3500, Some(anna()), rose(3, false)),
        event(ROOM_1, 5, T0 + 4000, Some(anna()), like(15, 1500)),
        event(
            ROOM_1,
            6,
            T0 + 5000,
            Some(attacker(1)),
            EventData::Member {
                action_id: 1,
                member_count: 87,
            },
        ),
        event(
            ROOM_1,
            7,
            T0 + 6000,
            Some(anna()),
            social(SocialKind::Follow, 0),
        ),
        event(
            ROOM_1,
            8,
            T0 + 6500,
            Some(attacker(2)),
            social(SocialKind::Share, 2),
        ),
        event(
            ROOM_1,
            9,
            T0 + 7000,
            None,
            EventData::RoomUser {
                viewer_count: 118,
                total_viewers: 342,
                top_viewers: Vec::new(),
            },
        ),
        event(
            ROOM_1,
            10,
            T0 + 8000,
            Some(big()),
            chat("jp b7", Some(("B7", None, 1))),
        ),
        event(ROOM_1, 11, T0 + 9000, Some(attacker(3)), chat("=1+1", None)),
        event(
            ROOM_1,
            12,
            T0 + 9500,
            Some(attacker(4)),
            chat("salut", None),
        ),
    ];
    let recent = now_ms() - 3_600_000;
    let second = vec![
        event(
            ROOM_2,
            13,
            T0 + DAY + 1000,
            Some(anna()),
            chat("jp C3 L", Some(("C3", Some("L"), 1))),
        ),
        event(ROOM_2, 14, T0 + DAY + 2000, Some(big()), like(5, 20)),
        event(ROOM_2, 15, recent, Some(anna()), like(1, 21)),
    ];
    let events = [first.clone(), second.clone()].concat();
    store(
        &db,
        vec![
            (live("shop", ROOM_1, T0, LiveSource::Watch), first),
            (live("shop", ROOM_2, T0 + DAY, LiveSource::Replay), second),
        ],
    );
    // A seller's note that looks like a formula, and a cancelled sale.
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch(
        "UPDATE sales SET note = '-2 pour Anna' WHERE item = 'A12';
         UPDATE sales SET status = 'cancelled' WHERE item = 'B7';",
    )
    .unwrap();
    Fixture { dir, db, events }
}

impl Fixture {
    /// `tiklive export ARGS --db x.db`, run in the fixture's dir.
    fn export(&self, args: &[&str]) -> Output {
        run(export_cmd(self.dir.path(), &self.db, args))
    }

    /// Runs an export that must fail with `code`, saying `needle` on stderr and printing nothing.
    fn refused(&self, args: &[&str], code: i32, needle: &str) {
        let out = self.export(args);
        assert_eq!(out.code(), Some(code), "{args:?}: {out}");
        assert!(out.stderr.contains(needle), "{args:?}: {out}");
        assert!(out.stdout.is_empty(), "{args:?}: {out}");
    }

    /// A successful export's CSV as rows of cells, the header first.
    fn table(&self, args: &[&str]) -> Vec<Vec<String>> {
        let out = self.export(args);
        assert_eq!(out.code(), Some(0), "{args:?}: {out}");
        parse(out.stdout.as_bytes(), b',')
    }
}

fn export_cmd(dir: &Path, db: &Path, args: &[&str]) -> Command {
    let mut cmd = tiklive(dir);
    cmd.arg("export").args(args).arg("--db").arg(db);
    cmd
}

fn parse(bytes: &[u8], delimiter: u8) -> Vec<Vec<String>> {
    csv::ReaderBuilder::new()
        .has_headers(false)
        .delimiter(delimiter)
        .from_reader(bytes)
        .records()
        .map(|r| r.unwrap().iter().map(str::to_owned).collect())
        .collect()
}

/// The cells of column `name` below the header.
fn column(table: &[Vec<String>], name: &str) -> Vec<String> {
    let at = table[0]
        .iter()
        .position(|c| c == name)
        .unwrap_or_else(|| panic!("no column {name} in {:?}", table[0]));
    table[1..].iter().map(|row| row[at].clone()).collect()
}

/// The message ids (the `msg(n)` numbers) of the rows.
fn msgs(table: &[Vec<String>]) -> Vec<u64> {
    column(table, "msg_id")
        .iter()
        .map(|m| m.parse::<u64>().unwrap() - msg(0))
        .collect()
}

fn header(kind: &str) -> Vec<String> {
    tiklive::export::Kind::ALL
        .iter()
        .find(|k| k.name() == kind)
        .unwrap()
        .columns()
        .into_iter()
        .map(str::to_owned)
        .collect()
}

fn strings(cells: &[&str]) -> Vec<String> {
    cells.iter().map(|c| (*c).to_owned()).collect()
}

/// The first cells of most rows: id, live_id, room_id, msg_id (of message `msg(n)`).
fn ids(id: u64, live: u64, room: u64, n: u64) -> Vec<String> {
    [id, live, room, msg(n)].map(|v| v.to_string()).to_vec()
}

/// The cells user_id, unique_id, nickname (as written: the nickname neutralised).
fn who(user: &EventUser) -> Vec<String> {
    let nickname = if user.nickname.starts_with(['=', '+', '-', '@', '\t']) {
        format!("'{}", user.nickname)
    } else {
        user.nickname.clone()
    };
    vec![user.id.to_string(), user.unique_id.clone(), nickname]
}

#[test]
fn events_rows_carry_every_column_and_the_ndjson_line() {
    let f = fixture();
    let table = f.table(&[]);
    assert_eq!(
        table[0],
        strings(&[
            "id",
            "live_id",
            "room_id",
            "msg_id",
            "type",
            "time",
            "user_id",
            "unique_id",
            "nickname",
            "comment",
            "gift_id",
            "gift_name",
            "repeat_count",
            "total_diamonds",
            "streaking",
            "like_count",
            "total_like_count",
            "viewer_count",
            "json"
        ])
    );
    assert_eq!(
        table.len(),
        1 + 15,
        "every stored event, the streak update included"
    );
    assert_eq!(
        column(&table, "id"),
        (1..=15).map(|i| i.to_string()).collect::<Vec<_>>()
    );
    let empty = |n: usize| vec![String::new(); n];
    assert_eq!(
        table[1],
        [
            ids(1, 1, ROOM_1, 1),
            strings(&["chat", "2026-01-01T00:00:01.000Z"]),
            who(&anna()),
            strings(&["JP A12 M x2"]),
            empty(8),
            vec![f.events[0].to_json_line()],
        ]
        .concat()
    );
    assert_eq!(
        table[3],
        [
            ids(3, 1, ROOM_1, 3),
            strings(&["gift", "2026-01-01T00:00:03.000Z"]),
            who(&anna()),
            strings(&["", "5655", "Rose", "1", "1", "1", "", "", ""]),
            vec![f.events[2].to_json_line()],
        ]
        .concat()
    );
    assert_eq!(column(&table, "streaking")[3], "0", "the finished streak");
    assert_eq!(column(&table, "viewer_count")[8], "118");
    assert_eq!(
        column(&table, "user_id")[8],
        "",
        "viewer counts have no user"
    );
    assert_eq!(column(&table, "like_count")[4], "15");
    assert_eq!(column(&table, "total_like_count")[4], "1500");
    assert_eq!(column(&table, "user_id")[9], BIG.to_string());
    // Each json cell is the event's NDJSON line, byte for byte.
    for (cell, event) in column(&table, "json").iter().zip(&f.events) {
        assert_eq!(cell, &event.to_json_line());
    }
    assert_eq!(column(&table, "live_id")[12..], strings(&["2", "2", "2"]));
}

#[test]
fn each_kind_writes_its_columns_with_their_values() {
    let f = fixture();
    let row = |parts: &[Vec<String>]| parts.concat();

    let chat = f.table(&["chat"]);
    assert_eq!(chat[0], header("chat"));
    assert_eq!(msgs(&chat), [1, 2, 10, 11, 12, 13]);
    let first = ["2026-01-01T00:00:01.000Z"];
    let claim = ["JP A12 M x2", "A12", "M", "2"];
    assert_eq!(
        chat[1],
        row(&[
            ids(1, 1, ROOM_1, 1),
            strings(&first),
            who(&anna()),
            strings(&claim)
        ])
    );
    assert_eq!(chat[2][8..], strings(&["bonjour; ça va ?", "", "", ""]));
    assert_eq!(
        chat[3][5..],
        row(&[who(&big()), strings(&["jp b7", "B7", "", "1"])])
    );

    let gifts = f.table(&["gifts"]);
    assert_eq!(gifts[0], header("gifts"));
    let time = ["2026-01-01T00:00:03.500Z"];
    let gift = ["5655", "Rose", "3", "1", "3"];
    assert_eq!(
        gifts[1..],
        [row(&[
            ids(4, 1, ROOM_1, 4),
            strings(&time),
            who(&anna()),
            strings(&gift)
        ])],
        "only the finished streak: its diamonds are not counted twice"
    );

    let likes = f.table(&["likes"]);
    assert_eq!(likes[0], header("likes"));
    assert_eq!(msgs(&likes), [5, 14, 15]);
    assert_eq!(likes[1][8..], strings(&["15", "1500"]));
    assert_eq!(likes[2][5..], row(&[who(&big()), strings(&["5", "20"])]));

    let members = f.table(&["members"]);
    assert_eq!(members[0], header("members"));
    assert_eq!(msgs(&members), [6]);
    assert_eq!(members[1][6..], strings(&["m1", "'@SUM(1)", "1"]));

    let social = f.table(&["social"]);
    assert_eq!(social[0], header("social"));
    assert_eq!(msgs(&social), [7, 8]);
    assert_eq!(social[1][8..], strings(&["follow", "0"]));
    assert_eq!(social[2][8..], strings(&["share", "2"]));

    let viewers = f.table(&["viewers"]);
    let counts = ["2026-01-01T00:00:07.000Z", "118", "342"];
    assert_eq!(
        viewers,
        [
            header("viewers"),
            row(&[ids(9, 1, ROOM_1, 9), strings(&counts)])
        ]
    );

    let claims = f.table(&["claims"]);
    assert_eq!(claims[0], header("claims"));
    let claim = |id, live, room, n, time: &str, user: &EventUser, cells: &[&str]| {
        row(&[
            ids(id, live, room, n),
            strings(&[time]),
            who(user),
            strings(cells),
        ])
    };
    assert_eq!(
        claims[1..],
        [
            claim(
                1,
                1,
                ROOM_1,
                1,
                first[0],
                &anna(),
                &["A12", "M", "2", "JP A12 M x2", "1"]
            ),
            claim(
                2,
                1,
                ROOM_1,
                10,
                "2026-01-01T00:00:08.000Z",
                &big(),
                &["B7", "", "1", "jp b7", "2"]
            ),
            claim(
                3,
                2,
                ROOM_2,
                13,
                "2026-01-02T00:00:01.000Z",
                &anna(),
                &["C3", "L", "1", "jp C3 L", "1"]
            ),
        ]
    );
    // The rank is the order in the live, not in the export.
    assert_eq!(
        column(&f.table(&["claims", "--user", "@grand_id"]), "rank"),
        ["2"]
    );

    let sales = f.table(&["sales"]);
    assert_eq!(sales[0], header("sales"));
    assert_eq!(sales.len(), 4);
    let cells = |row: &[String]| row[..15].to_vec();
    let sold = [
        "A12",
        "M",
        "2",
        "12.50",
        "EUR",
        "25.00",
        "pending",
        "'-2 pour Anna",
    ];
    assert_eq!(
        cells(&sales[1]),
        row(&[ids(1, 1, ROOM_1, 1), who(&anna()), strings(&sold)])
    );
    let cancelled = ["B7", "", "1", "", "", "", "cancelled", ""];
    assert_eq!(
        cells(&sales[2]),
        row(&[ids(2, 1, ROOM_1, 10), who(&big()), strings(&cancelled)])
    );
    assert_eq!(cells(&sales[3])[10..13], strings(&["7.00", "EUR", "7.00"]));
    for time in [column(&sales, "created"), column(&sales, "updated")].concat() {
        assert!(
            time.len() == 24 && time.starts_with("20") && time.ends_with('Z'),
            "{time}"
        );
    }

    let buyers = f.table(&["buyers"]);
    assert_eq!(buyers[0], header("buyers"));
    assert_eq!(buyers.len(), 1 + 2 + FORMULAS.len());
    let last_like = column(&f.table(&["likes"]), "time")[2].clone();
    assert_eq!(
        buyers[1],
        row(&[
            who(&anna()),
            strings(&[
                "https://p16.example/anna.webp",
                first[0],
                &last_like,
                "7",
                "2",
                "2"
            ])
        ])
    );
    // The cancelled sale does not count.
    assert_eq!(
        buyers.last().unwrap()[0],
        BIG.to_string(),
        "ordered by id, above i64::MAX last"
    );
    assert_eq!(buyers.last().unwrap()[6..], strings(&["2", "1", "0"]));
}

#[test]
fn since_and_until_accept_every_time_form() {
    let f = fixture();
    let rows = |args: &[&str]| msgs(&f.table(&[&["events"], args].concat()));
    let second_day = [13, 14, 15];
    for since in [
        "2026-01-02T00:00:00Z",
        "2026-01-02T01:00:00+01:00",
        "2026-01-02",
        "20260102",
        "1767312000",
        "1767312000000",
    ] {
        assert_eq!(rows(&["--since", since]), second_day, "--since {since}");
    }
    for until in ["2026-01-02", "1767312000", "2026-01-01T23:59:59.999-00:00"] {
        assert_eq!(
            rows(&["--until", until]),
            (1..=12).collect::<Vec<_>>(),
            "--until {until}"
        );
    }
    // Since is inclusive, until exclusive, to the millisecond.
    assert_eq!(
        rows(&[
            "--since",
            "2026-01-01T00:00:02Z",
            "--until",
            "2026-01-01T00:00:04.000Z"
        ]),
        [2, 3, 4]
    );
    assert_eq!(
        rows(&[
            "--since",
            "2026-01-01T00:00:02.001Z",
            "--until",
            "2026-01-01T00:00:04.001Z"
        ]),
        [3, 4, 5]
    );
    // Durations count back from now: only the like of an hour ago is recent.
    for recent in ["90m", "24h", "7d", "2w"] {
        assert_eq!(rows(&["--since", recent]), [15], "--since {recent}");
    }
    assert_eq!(rows(&["--until", "30m"]), (1..=15).collect::<Vec<_>>());
    assert_eq!(rows(&["--until", "90m"]).len(), 14);
    // Each kind applies them to its own time.
    assert_eq!(msgs(&f.table(&["claims", "--since", "2026-01-02"])), [13]);
    assert_eq!(
        column(&f.table(&["sales", "--since", "1h"]), "id"),
        ["1", "2", "3"]
    );
    assert_eq!(f.table(&["sales", "--until", "1h"]).len(), 1, "created now");
    let buyers = f.table(&["buyers", "--since", "2026-01-02", "--until", "2026-01-03"]);
    assert_eq!(
        buyers[1..]
            .iter()
            .map(|r| r[1].as_str())
            .collect::<Vec<_>>(),
        ["anna", "grand_id"]
    );
    // Counted within the window: the sales were created today, outside it.
    assert_eq!(buyers[1][6..], strings(&["1", "1", "0"]));
    assert_eq!(buyers[2][6..], strings(&["1", "0", "0"]));
}

#[test]
fn live_room_and_user_filters_pick_their_rows_and_unknown_ones_exit_7() {
    let f = fixture();
    let rows = |args: &[&str]| msgs(&f.table(args));
    assert_eq!(rows(&["--live", "2"]), [13, 14, 15]);
    assert_eq!(
        rows(&["--live", "1", "--since", "2026-01-01T00:00:09Z"]),
        [11, 12]
    );
    assert_eq!(
        rows(&["--room", &ROOM_1.to_string()]),
        (1..=12).collect::<Vec<_>>()
    );
    assert_eq!(rows(&["likes", "--room", &ROOM_2.to_string()]), [14, 15]);
    assert_eq!(rows(&["--user", "@anna"]), [1, 3, 4, 5, 7, 13, 15]);
    assert_eq!(
        rows(&["--user", &ANNA.to_string(), "--live", "2"]),
        [13, 15]
    );
    assert_eq!(rows(&["--user", "grand_id"]), [10, 14]);
    assert_eq!(rows(&["chat", "--user", &BIG.to_string()]), [10]);
    assert_eq!(rows(&["claims", "--live", "1"]), [1, 10]);
    assert_eq!(
        column(&f.table(&["sales", "--user", "@anna"]), "item"),
        ["A12", "C3"]
    );
    assert_eq!(column(&f.table(&["sales", "--live", "2"]), "item"), ["C3"]);
    let nine = "2026-01-01T00:00:09.000Z";
    let buyers = f.table(&["buyers", "--live", "2"]);
    assert_eq!(column(&buyers, "unique_id"), ["anna", "grand_id"]);
    assert_eq!(column(&buyers, "events"), ["2", "1"]);
    assert_eq!(
        f.table(&["buyers", "--user", "@m3"])[1..],
        [[
            who(&attacker(3)),
            strings(&["https://p16.example/m3.webp", nine, nine, "1", "0", "0"])
        ]
        .concat()]
    );

    for (args, needle) in [
        (vec!["--live", "99"], "no live 99"),
        (vec!["--room", "123"], "no live of room 123"),
        (vec!["--user", "@nobody"], "no user @nobody"),
        (vec!["sales", "--user", "424242"], "no user 424242"),
    ] {
        f.refused(&args, 7, needle);
    }
}

#[test]
fn cells_that_a_spreadsheet_would_run_get_a_leading_quote() {
    let f = fixture();
    for kind in ["events", "chat", "members", "social", "buyers"] {
        let out = f.export(&[kind]);
        assert_eq!(out.code(), Some(0), "{out}");
        let bytes = out.stdout.as_bytes();
        // No field starts with a formula character, whatever column it is in.
        for row in parse(bytes, b',') {
            for cell in row {
                assert!(
                    !cell.starts_with(['=', '+', '-', '@', '\t', '\r']),
                    "{kind}: {cell:?}"
                );
            }
        }
        let contains = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
        if kind != "chat" && kind != "social" {
            // The members and events rows of m1; events and buyers have every attacker.
            assert!(contains(b",m1,'@SUM(1),"), "{kind}: {}", out.stdout);
        }
        if matches!(kind, "events" | "buyers") {
            assert!(
                contains(b",m0,\"'=HYPERLINK(\"\"http://x\"\")\","),
                "{kind}"
            );
            assert!(contains(b",m2,'+1,"), "{kind}");
            assert!(contains(b",m3,'-1,"), "{kind}");
            assert!(contains(b",m4,'\tTab,"), "{kind}");
            assert!(
                !contains(b",=HYPERLINK") && !contains(b",\"=HYPERLINK"),
                "{kind}"
            );
        }
        if kind == "chat" {
            assert!(contains(b",'=1+1,"), "comments too: {}", out.stdout);
            assert!(contains(b",m0,\"'=HYPERLINK(\"\"http://x\"\")\","));
        }
    }
    // Text in the middle of a cell, and numbers, are left alone.
    let chat = f.table(&["chat"]);
    assert_eq!(column(&chat, "comment")[0], "JP A12 M x2");
    assert_eq!(column(&f.table(&["sales"]), "note")[0], "'-2 pour Anna");
}

#[test]
fn bom_delimiter_and_french_excel() {
    let f = fixture();
    let out = f.export(&["likes", "--bom"]);
    assert_eq!(out.code(), Some(0), "{out}");
    assert!(
        out.stdout
            .as_bytes()
            .starts_with(b"\xEF\xBB\xBFid,live_id,"),
        "{out}"
    );
    assert!(f.export(&["likes"]).stdout.starts_with("id,live_id,"));

    let out = f.export(&["chat", "--delimiter", ";"]);
    assert_eq!(out.code(), Some(0), "{out}");
    assert!(
        out.stdout.starts_with("id;live_id;room_id;msg_id;time;"),
        "{out}"
    );
    // A cell holding the delimiter is quoted.
    assert!(out.stdout.contains(";\"bonjour; ça va ?\";"), "{out}");
    assert_eq!(parse(out.stdout.as_bytes(), b';'), f.table(&["chat"]));
    let tab = f.export(&["chat", "--delimiter", "tab"]);
    assert!(tab.stdout.starts_with("id\tlive_id\t"), "{tab}");

    let out = f.export(&["sales", "--excel-fr"]);
    assert_eq!(out.code(), Some(0), "{out}");
    let bytes = out.stdout.as_bytes();
    assert!(
        bytes.starts_with(b"\xEF\xBB\xBFid;live_id;room_id;"),
        "{out}"
    );
    let rows = parse(&bytes[3..], b';');
    assert_eq!(column(&rows, "unit_price"), ["12,50", "", "7,00"]);
    assert_eq!(column(&rows, "total"), ["25,00", "", "7,00"]);
    assert!(out.stdout.contains(";12,50;EUR;25,00;pending;"), "{out}");
    // Only prices take the decimal comma.
    assert_eq!(column(&rows, "quantity"), ["2", "1", "1"]);
}

#[test]
fn out_replaces_the_file_whole_or_not_at_all() {
    let f = fixture();
    let dir = f.dir.path().join("exports");
    std::fs::create_dir(&dir).unwrap();
    let target = dir.join("events.csv");
    std::fs::write(&target, "yesterday's file\n").unwrap();
    let out = f.export(&["--out", target.to_str().unwrap()]);
    assert_eq!(out.code(), Some(0), "{out}");
    assert!(out.stdout.is_empty(), "{out}");
    assert_eq!(
        std::fs::read_to_string(&target).unwrap(),
        f.export(&[]).stdout,
        "the whole export"
    );
    assert_eq!(entries(&dir), ["events.csv"], "no temporary file left");

    // A directory is not a file to write: a usage error naming a file in it, and nothing written.
    let blocked = dir.join("blocked.csv");
    std::fs::create_dir(&blocked).unwrap();
    let slash = format!("{}/", dir.join("new").display());
    for target in [blocked.to_str().unwrap(), &slash] {
        let out = f.export(&["--out", target]);
        assert_eq!(out.code(), Some(2), "{out}");
        assert!(
            out.stderr.contains("is a directory") && out.stderr.contains("export.csv"),
            "{out}"
        );
        assert_eq!(entries(&dir), ["blocked.csv", "events.csv"]);
    }

    // A directory that refuses new files: a clear error, exit 1, the previous file untouched.
    let locked = f.dir.path().join("locked");
    std::fs::create_dir(&locked).unwrap();
    let previous = locked.join("daily.csv");
    std::fs::write(&previous, "id\n1\n").unwrap();
    let mut cmd = export_cmd(f.dir.path(), &f.db, &["--out", previous.to_str().unwrap()]);
    as_someone_who_cannot_write(&mut cmd, f.dir.path(), &locked);
    let out = run(cmd);
    assert_eq!(out.code(), Some(1), "{out}");
    assert!(
        out.stderr
            .contains(&format!("cannot create a file in {}", locked.display()))
            && out.stderr.contains("ermission denied"),
        "{out}"
    );
    assert_eq!(std::fs::read_to_string(&previous).unwrap(), "id\n1\n");
    assert_eq!(entries(&locked), ["daily.csv"]);
    // So that the temp dir can be removed.
    let writable = std::os::unix::fs::PermissionsExt::from_mode(0o755);
    std::fs::set_permissions(&locked, writable).unwrap();
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Makes `locked` read-only, and `cmd` unable to write into it even when the tests run as root (who
/// may write anywhere): then the child runs as `nobody`, and gets the fixture directory (and the
/// database in it) so that it can still open the database.
fn as_someone_who_cannot_write(cmd: &mut Command, fixture_dir: &Path, locked: &Path) {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    std::fs::set_permissions(locked, std::fs::Permissions::from_mode(0o555)).unwrap();
    if unsafe { libc::geteuid() } != 0 {
        return;
    }
    const NOBODY: u32 = 65534;
    for entry in std::fs::read_dir(fixture_dir).unwrap() {
        let path = entry.unwrap().path();
        if path != locked {
            std::os::unix::fs::chown(&path, Some(NOBODY), Some(NOBODY)).unwrap();
        }
    }
    std::os::unix::fs::chown(fixture_dir, Some(NOBODY), Some(NOBODY)).unwrap();
    cmd.uid(NOBODY).gid(NOBODY);
}

#[test]
fn a_closed_stdout_ends_the_export_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("x.db");
    // Far more than a pipe holds, so that the export is still writing when the reader goes.
    let events = (1..=5_000)
        .map(|n| {
            event(
                ROOM_1,
                n,
                T0 + n as i64,
                Some(anna()),
                chat("trop belle cette robe", None),
            )
        })
        .collect();
    store(
        &db,
        vec![(live("shop", ROOM_1, T0, LiveSource::Watch), events)],
    );
    let mut child = export_cmd(dir.path(), &db, &[]).spawn().unwrap();
    let first = first_line_then_close(&mut child);
    assert!(first.starts_with("id,live_id,"), "{first}");
    let out = finish(child);
    assert_eq!(out.code(), Some(0), "{out}");
    assert_eq!(out.stderr, "", "no error text");
}

#[test]
fn incremental_exports_only_what_was_stored_since_the_last_one() {
    let f = fixture();
    let daily = |kind: &str| f.export(&[kind, "--incremental", "daily"]);
    let out = daily("chat");
    assert_eq!(out.code(), Some(0), "{out}");
    assert_eq!(
        msgs(&parse(out.stdout.as_bytes(), b',')),
        [1, 2, 10, 11, 12, 13]
    );
    let out = daily("chat");
    assert_eq!(out.code(), Some(0), "{out}");
    assert_eq!(out.stdout, header("chat").join(",") + "\n", "nothing new");

    // A new live: two chats and a like.
    store(
        &f.db,
        vec![(
            live("shop", ROOM_2, T0 + 2 * DAY, LiveSource::Watch),
            vec![
                event(
                    ROOM_2,
                    16,
                    T0 + 2 * DAY,
                    Some(anna()),
                    chat("jp A12", Some(("A12", None, 1))),
                ),
                event(ROOM_2, 17, T0 + 2 * DAY + 1, Some(big()), like(1, 1)),
                event(
                    ROOM_2,
                    18,
                    T0 + 2 * DAY + 2,
                    Some(big()),
                    chat("merci", None),
                ),
            ],
        )],
    );
    let out = daily("chat");
    assert_eq!(out.code(), Some(0), "{out}");
    let rows = parse(out.stdout.as_bytes(), b',');
    assert_eq!(msgs(&rows), [16, 18]);
    assert_eq!(column(&rows, "live_id"), ["3", "3"]);
    assert_eq!(daily("chat").stdout.lines().count(), 1);

    // Names are per kind; claims keep their own cursor.
    let reused = "the incremental export \"daily\" exports chat, not gifts";
    f.refused(&["gifts", "--incremental", "daily"], 2, reused);
    let claims = f.export(&["claims", "--incremental", "claims-daily"]);
    assert_eq!(
        msgs(&parse(claims.stdout.as_bytes(), b',')),
        [1, 10, 13, 16]
    );

    // A failed export does not move the cursor: the next one writes the same rows.
    let likes_to = |path: &Path| {
        let out = f.export(&[
            "likes",
            "--incremental",
            "l",
            "--out",
            path.to_str().unwrap(),
        ]);
        let rows = std::fs::read(path)
            .ok()
            .map(|bytes| msgs(&parse(&bytes, b',')));
        (out.code(), rows)
    };
    let nowhere = f.dir.path().join("no-such-dir").join("likes.csv");
    assert_eq!(likes_to(&nowhere), (Some(1), None));
    let target = f.dir.path().join("likes.csv");
    assert_eq!(likes_to(&target), (Some(0), Some(vec![5, 14, 15, 17])));
    assert_eq!(likes_to(&target), (Some(0), Some(vec![])));

    f.refused(&["buyers", "--incremental", "b"], 2, "incrementally");
}

#[test]
fn bad_times_kinds_and_delimiters_exit_2() {
    let f = fixture();
    for (args, needle) in [
        (
            vec!["--since", "yesterday"],
            "--since: invalid time \"yesterday\"",
        ),
        (vec!["--until", "2026-13-01"], "--until: invalid time"),
        (
            vec!["--since", "2026-01-02", "--until", "2026-01-01"],
            "the time range is empty: since 2026-01-02T00:00:00.000Z is not before until 2026-01-01T00:00:00.000Z",
        ),
        (vec!["bogus"], "bogus"),
        (
            vec!["--delimiter", ";;"],
            "--delimiter: invalid delimiter \";;\"",
        ),
        (vec!["--delimiter", "\""], "--delimiter"),
        (vec!["--delimiter", ""], "--delimiter"),
        (vec!["--live", "1", "--room", "7"], "cannot be used with"),
        (
            vec!["viewers", "--user", "@anna"],
            "viewer counts have no user",
        ),
        (vec!["--incremental", " "], "cannot be empty"),
    ] {
        f.refused(&args, 2, needle);
    }
}

#[test]
fn a_database_that_cannot_be_opened_exits_6_and_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("bookmarks.db");
    rusqlite::Connection::open(&other)
        .unwrap()
        .execute_batch("CREATE TABLE bookmarks (url TEXT); INSERT INTO bookmarks VALUES ('x');")
        .unwrap();
    let text = dir.path().join("notes.db");
    std::fs::write(
        &text,
        "not a database at all, just some notes\n".repeat(100),
    )
    .unwrap();
    for (path, cause) in [
        (&other, "another application"),
        (&text, "file is not a database"),
    ] {
        let before = std::fs::read(path).unwrap();
        let out = run(export_cmd(dir.path(), path, &[]));
        assert_eq!(out.code(), Some(6), "{out}");
        assert!(out.stderr.contains(&*path.to_string_lossy()), "{out}");
        assert_eq!(out.stderr.matches(cause).count(), 1, "said once: {out}");
        assert!(out.stdout.is_empty(), "{out}");
        assert_eq!(std::fs::read(path).unwrap(), before);
    }
    let missing = dir.path().join("typo.db");
    let out = run(export_cmd(dir.path(), &missing, &[]));
    assert_eq!(out.code(), Some(6), "{out}");
    assert!(out.stderr.contains("typo.db"), "{out}");
    assert_eq!(out.stderr.matches("no such file").count(), 1, "{out}");
    assert!(!missing.exists(), "no database is created by an export");
    let empty = dir.path().join("empty.db");
    std::fs::write(&empty, "").unwrap();
    let out = run(export_cmd(dir.path(), &empty, &[]));
    assert_eq!(out.code(), Some(6), "{out}");
    assert!(out.stderr.contains("an empty file"), "{out}");
    assert_eq!(std::fs::read(&empty).unwrap(), b"", "left empty");
    // A directory where the database should be: opening it fails, it is not "created".
    let out = run(export_cmd(dir.path(), dir.path(), &[]));
    assert_eq!(out.code(), Some(6), "{out}");
    assert!(
        out.stderr.contains("cannot open the database") && !out.stderr.contains("create"),
        "{out}"
    );
    assert_eq!(out.stderr.matches("Is a directory").count(), 1, "{out}");
}

#[test]
fn an_empty_database_exports_the_header_only() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("x.db");
    drop(Store::open(&db).unwrap());
    for kind in tiklive::export::Kind::ALL {
        let out = run(export_cmd(dir.path(), &db, &[kind.name(), "--since", "7d"]));
        assert_eq!(out.code(), Some(0), "{kind}: {out}");
        assert_eq!(out.stdout, kind.columns().join(",") + "\n", "{kind}");
    }
    let out = run(export_cmd(
        dir.path(),
        &db,
        &["chat", "--incremental", "first"],
    ));
    assert_eq!(out.code(), Some(0), "{out}");
    assert_eq!(out.stdout.lines().count(), 1);
}

/// A database in `dir` of one live with `rows` chat events, event `i` at `i` seconds, its JSON line's
/// comment `i` zero-padded to `width` (an SQL expression of `i`).
fn database_of_chat(dir: &Path, rows: u32, width: &str) -> std::path::PathBuf {
    let db = dir.join("chat.db");
    drop(Store::open(&db).unwrap());
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch(&format!(
            "INSERT INTO lives (host, room_id, source, started_at) VALUES ('shop', 1, 'watch', 0);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {rows})
             INSERT INTO events (live_id, room_id, msg_id, type, ts, comment, json)
             SELECT 1, 1, i, 'chat', i * 1000, 'jp ' || i,
                    printf('{{\"type\":\"chat\",\"comment\":\"%0*d\"}}', {width}, i)
             FROM n;"
        ))
        .unwrap();
    db
}

/// Ctrl-C or SIGTERM (a cron job's timeout, systemd's stop) while `--out` is being written: the export
/// ends by that signal, as it would have without tiklive's handler (a shell loop around it stops), and
/// leaves neither the file nor its hidden temporary copy, nor moves its `--incremental` cursor.
#[test]
fn an_interrupted_export_to_a_file_leaves_no_partial_file() {
    let dir = tempfile::tempdir().unwrap();
    let db = database_of_chat(dir.path(), 200_000, "400");
    for signal in [libc::SIGINT, libc::SIGTERM] {
        let out_dir = dir.path().join(format!("out-{signal}"));
        std::fs::create_dir(&out_dir).unwrap();
        let target = out_dir.join("all.csv");
        let mut child = export_cmd(
            dir.path(),
            &db,
            &[
                "events",
                "--incremental",
                "nightly",
                "--out",
                target.to_str().unwrap(),
            ],
        )
        .spawn()
        .unwrap();
        let started = std::time::Instant::now();
        while std::fs::read_dir(&out_dir).unwrap().next().is_none() {
            if child.try_wait().unwrap().is_some() {
                panic!(
                    "the export ended before its file appeared: {}",
                    finish(child)
                );
            }
            assert!(started.elapsed() < std::time::Duration::from_secs(20));
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        unsafe { libc::kill(child.id() as i32, signal) };
        let out = finish(child);
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&out.status),
            Some(signal),
            "{out}"
        );
        let left: Vec<_> = std::fs::read_dir(&out_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(left.is_empty(), "left behind: {left:?}");
    }
    let cursors: i64 = rusqlite::Connection::open(&db)
        .unwrap()
        .query_row("SELECT count(*) FROM export_cursors", [], |r| r.get(0))
        .unwrap();
    assert_eq!(cursors, 0, "no cursor moved");
}

/// `--out` writes around the page cache in aligned blocks of 1 MiB where the file system allows (the
/// end of the last block through the cache): whatever the path, the file holds exactly the bytes the
/// same export writes to stdout, here 9 MB in nine blocks and an unaligned end.
#[test]
fn a_large_export_to_a_file_has_the_same_bytes_as_on_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let db = database_of_chat(dir.path(), 22_000, "300 + i % 97");
    let stdout = export_cmd(dir.path(), &db, &["events"]).output().unwrap();
    assert!(stdout.status.success(), "{stdout:?}");
    assert!(stdout.stdout.len() > 9 << 20, "{}", stdout.stdout.len());
    assert!(!stdout.stdout.len().is_multiple_of(4096));
    let target = dir.path().join("large.csv");
    let out = export_cmd(
        dir.path(),
        &db,
        &["events", "--out", target.to_str().unwrap()],
    )
    .output()
    .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout.is_empty());
    let written = std::fs::read(&target).unwrap();
    assert_eq!(written.len(), stdout.stdout.len());
    assert!(written == stdout.stdout, "the file differs from stdout");
}
