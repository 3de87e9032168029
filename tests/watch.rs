//! End-to-end tests of `tiklive watch` (and `replay` of its recordings): the real binary runs against
//! loopback mocks of TikTok and the signing service (tests/support), and each test states what a user
//! sees on stdout, stderr and in the exit code, and what the mock saw the client do on the wire.

mod support;

use std::collections::HashSet;

use serde_json::{Value, json};
use support::*;
use tiklive::protocol::BaseMessage;

/// The signing service's API key in scenarios that require one. It must never be printed.
const KEY: &str = "mock-sign-key-5c1e0b7a9d";
const ROSE_GROUP: u64 = 1_767_225_600_123;
/// The log id of the captured push frame (PROTOCOL.md §6.7), which asks for an ack with `-`.
const CAPTURED_FRAME_LOG_ID: u64 = 5_092_463_814_493_970_448;

fn ids(messages: &[&BaseMessage]) -> Vec<u64> {
    messages.iter().map(|m| m.msg_id).collect()
}

// ---------------------------------------------------------------------------------------------------
// Reading the output

/// Checks the fixed keys of every line and returns the lines.
fn lines(out: &Output) -> Vec<Value> {
    let events = out.events();
    for e in &events {
        assert_eq!(e["v"], 1, "{e}");
        let ty = e["type"].as_str().unwrap_or_else(|| panic!("no type: {e}"));
        let ts = e["ts"].as_str().unwrap_or_else(|| panic!("no ts: {e}"));
        assert!(
            ts.len() == 24 && ts.ends_with('Z') && &ts[10..11] == "T",
            "ts is not RFC 3339 with milliseconds: {e}"
        );
        let room = e["room_id"]
            .as_str()
            .unwrap_or_else(|| panic!("room_id is not a string: {e}"));
        assert!(
            room.bytes().all(|b| b.is_ascii_digit()) && !room.is_empty(),
            "{e}"
        );
        if ty == "connection" {
            assert!(e["msg_id"].is_null(), "{e}");
        } else {
            let id = e["msg_id"]
                .as_str()
                .unwrap_or_else(|| panic!("msg_id is not a string: {e}"));
            assert!(id.parse::<u64>().is_ok_and(|n| n != 0), "{e}");
        }
    }
    events
}

/// Message ids of the lines that are not connection lines, in order.
fn printed_ids(events: &[Value]) -> Vec<u64> {
    events
        .iter()
        .filter(|e| e["type"] != "connection")
        .map(|e| e["msg_id"].as_str().unwrap().parse().unwrap())
        .collect()
}

fn connection_states(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .filter(|e| e["type"] == "connection")
        .map(|e| e["state"].as_str().unwrap())
        .collect()
}

/// Asserts one drop and one successful reconnect, and returns the `reconnecting` line.
fn reconnected_once(events: &[Value]) -> &Value {
    assert_eq!(
        connection_states(events),
        [
            "connected",
            "reconnecting",
            "connected",
            "gap",
            "disconnected"
        ]
    );
    events
        .iter()
        .find(|e| e["state"] == "reconnecting")
        .unwrap()
}

fn line(events: &[Value], msg_id: u64) -> &Value {
    let id = msg_id.to_string();
    events
        .iter()
        .find(|e| e["msg_id"] == id.as_str())
        .unwrap_or_else(|| panic!("no line with msg_id {id}"))
}

fn assert_no_duplicates(events: &[Value]) {
    let ids = printed_ids(events);
    let unique: HashSet<_> = ids.iter().collect();
    assert_eq!(
        unique.len(),
        ids.len(),
        "a msg_id was printed twice: {ids:?}"
    );
}

fn assert_secret_not_printed(out: &Output, secret: &str) {
    assert!(
        !out.stdout.contains(secret) && !out.stderr.contains(secret),
        "{secret:?} was printed\n{out}"
    );
}

/// What every accepted connection must show, whatever the scenario: no violation, the enter frame
/// first, heartbeats numbered from 1, every ack, and one identity (User-Agent, cookies) from the
/// signing answer to the WebSocket.
fn assert_clean_protocol(state: &State) {
    assert!(
        state.violations.is_empty(),
        "mock violations: {:#?}",
        state.violations
    );
    let page_ua = state
        .requests
        .iter()
        .find(|r| r.role != Role::Sign)
        .and_then(|r| r.request.header("user-agent"))
        .map(str::to_owned);
    for conn in state.accepted() {
        let signing = &state.signings[conn.signing.expect("accepted without signing")];
        let ClientFrame::Enter(enter) = &conn.from_client[0] else {
            panic!("first client frame: {:?}", conn.from_client[0]);
        };
        assert_eq!(enter.room_id, signing.room_id);
        assert_eq!(enter.live_id, 12);
        assert_ne!(enter.enter_unique_id, 0);
        let enters = conn
            .from_client
            .iter()
            .filter(|f| matches!(f, ClientFrame::Enter(_)))
            .count();
        assert_eq!(enters, 1);
        let seqs = conn.heartbeat_seqs();
        assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
        assert_eq!(conn.unacked(), Vec::<u64>::new(), "frames never acked");
        let request = conn.request.as_ref().unwrap();
        let ua = request.header("user-agent").unwrap();
        assert_eq!(ua, signing.user_agent);
        assert!(ua.starts_with("Mozilla/5.0"), "{ua}");
        if let Some(page_ua) = &page_ua {
            assert_eq!(
                ua, page_ua,
                "the WebSocket and TikTok's web API saw different browsers"
            );
        }
        let cookies = request.cookies();
        let cookie = |name: &str| {
            cookies
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(cookie("ttwid"), Some(signing.ttwid.as_str()));
        assert_eq!(cookie("tt_chain_token"), Some(signing.chain_token.as_str()));
        assert_eq!(cookie("tt-target-idc"), Some("useast1a"));
        assert_eq!(request.param("imprp"), Some(signing.imprp.as_str()));
        assert_eq!(request.param("version_code"), Some("270000"));
    }
}

// ---------------------------------------------------------------------------------------------------
// Scenarios

/// A whole live: history from the signing service, a claim, likes, a join, a Rose streak, a
/// non-streakable gift, a follow and a share, a real captured push frame, the real captured payloads,
/// viewer counts, heartbeats, then the end of the live followed by a message that must not be printed.
struct Normal {
    scenario: Scenario,
    /// Message ids printed by default, in order.
    expected: Vec<u64>,
    /// Message ids printed with `--gift-streaks`, in order.
    expected_with_streaks: Vec<u64>,
    /// Chat messages, in order.
    chats: Vec<u64>,
    claim: u64,
    rose_steps: Vec<u64>,
    rose_final: u64,
    lion: u64,
    follow: u64,
    share: u64,
    viewers: u64,
    end: u64,
}

const CAPTURED_MEMBER_1: u64 = 7_270_196_813_217_958_699;
const CAPTURED_MEMBER_2: u64 = 7_273_941_110_900_738_848;
const CAPTURED_EMOTE_CHAT: u64 = 7_270_204_318_916_594_464;
const CAPTURED_ROSE_START: u64 = 7_270_201_542_891_817_761;
const CAPTURED_SHARE: u64 = 7_270_211_734_014_528_288;
const CAPTURED_IM_DELETE: u64 = 7_270_208_754_506_189_573;
const CAPTURED_LIKE: u64 = 7_267_603_013_186_423_585;

fn normal() -> Normal {
    let (buyer, fan) = (buyer(), fan());
    let mut m = Messages::new(ROOM_ID);
    let history = [
        m.chat(&fan, "bonjour !"),
        m.chat(&buyer, "c'est quoi le prix du 12 ?"),
    ];
    let claim = m.chat(&buyer, "JP A12 M x2");
    let like = m.like(&fan, 5, 120);
    let join = m.member(&buyer, 87);
    let roses: Vec<_> = (1..=3)
        .map(|n| m.gift(&fan, &rose(), n, false, ROSE_GROUP))
        .collect();
    let rose_final = m.gift(&fan, &rose(), 3, true, ROSE_GROUP);
    let lion_gift = m.gift(&buyer, &lion(), 1, false, ROSE_GROUP + 1);
    let follow = m.social(&fan, "pm_main_follow_message_viewer_2", 1, 0);
    let share = m.social(&buyer, "pm_mt_guidance_share", 3, 1);
    let viewers = m.room_user(118, 342);
    let end = m.control(3);
    let after_end = m.chat(&fan, "JP 99");
    let captured = [
        capture("member-join-1.pb", "WebcastMemberMessage"),
        capture("member-join-2.pb", "WebcastMemberMessage"),
        capture("chat-emote-only.pb", "WebcastChatMessage"),
        capture("gift-rose-streak-start.pb", "WebcastGiftMessage"),
        capture("social-share.pb", "WebcastSocialMessage"),
        capture("im-delete.pb", "WebcastImDeleteMessage"),
    ];
    let scenario = Scenario::default()
        .api_key(KEY)
        .history(history.to_vec())
        .script(vec![
            Step::frame(vec![claim.clone(), like.clone(), join.clone()]),
            Step::frame(vec![roses[0].clone(), roses[1].clone()]),
            Step::Frame(
                Enc::Plain,
                vec![roses[2].clone(), rose_final.clone(), lion_gift.clone()],
            ),
            Step::frame(vec![follow.clone(), share.clone()]),
            Step::Raw(capture_bytes("pushframe-like.bin")),
            Step::frame(captured.to_vec()),
            Step::frame(vec![viewers.clone()]),
            Step::WaitHeartbeats(2),
            Step::frame(vec![end.clone(), after_end]),
        ]);
    let before_roses = ids(&[&history[0], &history[1], &claim, &like, &join]);
    let after_roses = |streaks: bool| {
        let mut v = vec![
            rose_final.msg_id,
            lion_gift.msg_id,
            follow.msg_id,
            share.msg_id,
        ];
        v.extend([
            CAPTURED_LIKE,
            CAPTURED_MEMBER_1,
            CAPTURED_MEMBER_2,
            CAPTURED_EMOTE_CHAT,
        ]);
        if streaks {
            v.push(CAPTURED_ROSE_START);
        }
        v.extend([
            CAPTURED_SHARE,
            CAPTURED_IM_DELETE,
            viewers.msg_id,
            end.msg_id,
        ]);
        v
    };
    let mut expected = before_roses.clone();
    expected.extend(after_roses(false));
    let mut expected_with_streaks = before_roses;
    expected_with_streaks.extend(roses.iter().map(|r| r.msg_id));
    expected_with_streaks.extend(after_roses(true));
    Normal {
        scenario,
        expected,
        expected_with_streaks,
        chats: vec![
            history[0].msg_id,
            history[1].msg_id,
            claim.msg_id,
            CAPTURED_EMOTE_CHAT,
        ],
        claim: claim.msg_id,
        rose_steps: roses.iter().map(|r| r.msg_id).collect(),
        rose_final: rose_final.msg_id,
        lion: lion_gift.msg_id,
        follow: follow.msg_id,
        share: share.msg_id,
        viewers: viewers.msg_id,
        end: end.msg_id,
    }
}

/// A live whose first connection is dropped: the second signing answer's history and first frame
/// repeat messages already printed, then new ones follow.
struct Dropped {
    scenario: Scenario,
    expected: Vec<u64>,
}

fn dropped() -> Dropped {
    let (buyer, fan) = (buyer(), fan());
    let mut m = Messages::new(ROOM_ID);
    let a = m.chat(&buyer, "JP 12");
    let b = m.like(&fan, 3, 10);
    let c = m.member(&fan, 40);
    let d = m.chat(&fan, "JP 14 rouge");
    let e = m.gift(&buyer, &lion(), 1, false, 77);
    let end = m.control(3);
    let scenario = Scenario::default()
        .history(Vec::new())
        .history(vec![b.clone()])
        .script(vec![
            Step::frame(vec![a.clone(), b.clone()]),
            Step::frame(vec![c.clone()]),
            Step::Drop,
        ])
        .script(vec![
            Step::frame(vec![c.clone(), d.clone()]),
            Step::frame(vec![e.clone(), end.clone()]),
        ]);
    Dropped {
        scenario,
        expected: ids(&[&a, &b, &c, &d, &e, &end]),
    }
}

/// A one-chat live, for the lookup tests.
fn short_live(scenario: Scenario) -> (Scenario, u64) {
    let mut m = Messages::new(ROOM_ID);
    let chat = m.chat(&buyer(), "JP 7");
    let end = m.control(3);
    (
        scenario.script(vec![Step::frame(vec![chat.clone(), end])]),
        chat.msg_id,
    )
}

// ---------------------------------------------------------------------------------------------------
// Tests

#[test]
fn normal_stream_prints_every_event_once_and_speaks_the_protocol() {
    let live = normal();
    let mock = Mock::start(live.scenario);
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = watch(&mock, dir.path(), "@seller", &[]);
    cmd.env("TIKLIVE_SIGN_API_KEY", KEY);
    let out = run(cmd);
    assert_eq!(out.code(), Some(0), "{out}");
    let events = lines(&out);

    assert_eq!(printed_ids(&events), live.expected, "{out}");
    assert_no_duplicates(&events);
    assert_eq!(connection_states(&events), ["connected", "disconnected"]);
    let (first, last) = (&events[0], events.last().unwrap());
    assert_eq!(first["state"], "connected");
    assert_eq!(first["room_id"], ROOM_ID.to_string());
    assert_eq!(last["state"], "disconnected");
    assert_eq!(last["reason"], "the live ended");
    let end = &events[events.len() - 2];
    assert_eq!(end["type"], "control");
    assert_eq!(end["action"], "stream_end");
    assert_eq!(end["action_id"], 3);
    assert_eq!(end["msg_id"], live.end.to_string());

    let claim = line(&events, live.claim);
    assert_eq!(claim["type"], "chat");
    assert_eq!(claim["comment"], "JP A12 M x2");
    assert_eq!(
        claim["claim"],
        json!({"item": "A12", "variant": "M", "quantity": 2, "raw": "JP A12 M x2"})
    );
    assert_eq!(claim["user"]["unique_id"], "camille.shop");
    assert_eq!(claim["user"]["nickname"], "Camille 🛍️");
    assert_eq!(claim["room_id"], ROOM_ID.to_string());
    assert_eq!(claim["ts"], "2026-01-01T00:00:00.750Z");
    for id in &live.chats[..2] {
        assert!(
            line(&events, *id).get("claim").is_none(),
            "history chat has no claim"
        );
    }

    // The Rose streak: one line, the final one, with the streak's total.
    let rose_group = ROSE_GROUP.to_string();
    let rose_lines: Vec<_> = events
        .iter()
        .filter(|e| e["group_id"] == rose_group.as_str())
        .collect();
    assert_eq!(rose_lines.len(), 1, "{rose_lines:?}");
    let rose = rose_lines[0];
    assert_eq!(rose["msg_id"], live.rose_final.to_string());
    assert_eq!(rose["gift_name"], "Rose");
    assert_eq!(rose["repeat_count"], 3);
    assert_eq!(rose["repeat_end"], true);
    assert_eq!(rose["streaking"], false);
    assert_eq!(rose["diamond_count"], 1);
    assert_eq!(rose["total_diamonds"], 3);
    assert!(events.iter().all(|e| e["streaking"] != true));
    let lion = line(&events, live.lion);
    assert_eq!(
        (lion["gift_type"].as_u64(), lion["total_diamonds"].as_u64()),
        (Some(2), Some(29_999))
    );
    assert_eq!(line(&events, live.follow)["social_type"], "follow");
    assert_eq!(line(&events, live.share)["social_type"], "share");
    let viewers = line(&events, live.viewers);
    assert_eq!(
        (
            viewers["viewer_count"].as_u64(),
            viewers["total_viewers"].as_u64()
        ),
        (Some(118), Some(342))
    );

    // Real captured bytes, end to end (PROTOCOL.md §6).
    let member = line(&events, CAPTURED_MEMBER_1);
    assert_eq!(member["type"], "member");
    assert_eq!(member["user"]["nickname"], "\u{1F5E3}\u{FE0F}");
    assert_eq!(member["user"]["unique_id"], "ttx.zyn");
    assert_eq!(member["user"]["id"], "6653906685407985669");
    assert_eq!(member["user"]["gifter_level"], 8);
    assert_eq!(member["member_count"], 165);
    assert_eq!(member["room_id"], "7270140534545550112");
    assert_eq!(member["ts"], "2023-08-22T17:16:44.212Z");
    let member2 = line(&events, CAPTURED_MEMBER_2);
    assert_eq!(member2["user"]["nickname"], "Emilka Forczek");
    assert_eq!(member2["user"]["unique_id"], "emilkaforczek");
    assert_eq!(member2["member_count"], 774);
    let like = line(&events, CAPTURED_LIKE);
    assert_eq!(like["type"], "like");
    assert_eq!(
        (
            like["like_count"].as_u64(),
            like["total_like_count"].as_u64()
        ),
        (Some(15), Some(14470))
    );
    assert_eq!(like["user"]["nickname"], "hulajnoga czek");
    assert_eq!(like["ts"], "2023-08-15T17:31:28.710Z");
    let emote_chat = line(&events, CAPTURED_EMOTE_CHAT);
    assert_eq!(emote_chat["comment"], "");
    assert_eq!(emote_chat["emotes"].as_array().unwrap().len(), 19);
    assert_eq!(emote_chat["user"]["unique_id"], "almando29");
    assert_eq!(emote_chat["user"]["is_subscriber"], true);
    let share = line(&events, CAPTURED_SHARE);
    assert_eq!(share["social_type"], "share");
    assert_eq!(share["share_count"], 25);
    assert_eq!(share["user"]["nickname"], "mr A.L.F.A");
    assert_eq!(
        line(&events, CAPTURED_IM_DELETE)["delete_user_ids"],
        json!(["7223833453145474054"])
    );

    assert_secret_not_printed(&out, KEY);

    let state = mock.finished();
    assert_clean_protocol(&state);
    let pages = state.requests(Role::Web);
    assert_eq!(pages.len(), 1, "the live page gave the room: no api-live");
    assert_eq!(pages[0].request.path, "/@seller/live");
    let info = state.requests(Role::Webcast);
    assert_eq!(info.len(), 1);
    assert_eq!(
        info[0].request.param("room_id"),
        Some(ROOM_ID.to_string().as_str())
    );
    assert_eq!(state.signings.len(), 1);
    let signing = &state.signings[0];
    assert_eq!(
        signing.cursor_asked, "",
        "a fresh connect asks for no cursor"
    );
    assert_eq!(signing.api_key.as_deref(), Some(KEY));
    assert_eq!(signing.room_id, ROOM_ID);
    assert_eq!(state.conns.len(), 1);
    let conn = &state.conns[0];
    assert_eq!(conn.handshake, Handshake::Accepted);
    assert!(conn.gzip, "compress=gzip by default");
    let encodings: HashSet<_> = conn.sent.iter().map(|s| s.enc).collect();
    assert_eq!(
        encodings,
        HashSet::from([
            FrameEnc::Control,
            FrameEnc::Gzip,
            FrameEnc::Plain,
            FrameEnc::Raw
        ])
    );
    assert!(conn.heartbeat_seqs().len() >= 2);
    let captured_ack = conn.from_client.iter().find_map(|f| match f {
        ClientFrame::Ack {
            log_id: CAPTURED_FRAME_LOG_ID,
            payload,
        } => Some(payload.clone()),
        _ => None,
    });
    assert_eq!(
        captured_ack.as_deref(),
        Some(&b"-"[..]),
        "the captured frame's ack (§2.6)"
    );
    assert_eq!(conn.acked.len(), 8, "every msg frame acked once");
    assert!(
        conn.end.as_deref().is_some_and(|e| e.starts_with("close")),
        "{:?}",
        conn.end
    );
}

#[test]
fn gift_streaks_flag_prints_each_streak_update() {
    let live = normal();
    let mock = Mock::start(live.scenario);
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = watch(&mock, dir.path(), "seller", &["--gift-streaks"]);
    cmd.env("TIKLIVE_SIGN_API_KEY", KEY);
    let out = run(cmd);
    assert_eq!(out.code(), Some(0), "{out}");
    let events = lines(&out);
    assert_eq!(printed_ids(&events), live.expected_with_streaks, "{out}");
    for (n, id) in live.rose_steps.iter().enumerate() {
        let step = line(&events, *id);
        assert_eq!(step["streaking"], true, "{step}");
        assert_eq!(step["repeat_end"], false);
        assert_eq!(step["repeat_count"], n as u64 + 1);
        assert_eq!(step["total_diamonds"], n as u64 + 1);
    }
    let last = line(&events, live.rose_final);
    assert_eq!(
        (last["streaking"].as_bool(), last["repeat_count"].as_u64()),
        (Some(false), Some(3))
    );
    let captured = line(&events, CAPTURED_ROSE_START);
    assert_eq!(captured["streaking"], true);
    assert_eq!(captured["gift_name"], "Rose");
    assert_eq!(captured["gift_id"], 5655);
    assert_eq!(captured["repeat_count"], 1);
    assert_eq!(captured["user"]["unique_id"], "malowana_");
    assert_clean_protocol(&mock.finished());
}

/// Four chats in a gzip frame, a raw frame, a gzip frame without header and a gzip frame.
fn mixed_compression() -> (Scenario, Vec<u64>) {
    let mut m = Messages::new(ROOM_ID);
    let u = fan();
    let chats: Vec<_> = ["un", "deux", "trois", "quatre"]
        .iter()
        .map(|t| m.chat(&u, t))
        .collect();
    let end = m.control(3);
    let scenario = Scenario::default().script(vec![
        Step::Frame(Enc::Auto, vec![chats[0].clone()]),
        Step::Frame(Enc::Plain, vec![chats[1].clone()]),
        Step::Frame(Enc::GzipNoHeader, vec![chats[2].clone()]),
        Step::Frame(Enc::Auto, vec![chats[3].clone(), end.clone()]),
    ]);
    let mut expected: Vec<_> = chats.iter().map(|c| c.msg_id).collect();
    expected.push(end.msg_id);
    (scenario, expected)
}

#[test]
fn gzip_and_uncompressed_frames_mix() {
    let (scenario, expected) = mixed_compression();
    let mock = Mock::start(scenario);
    let dir = tempfile::tempdir().unwrap();
    let out = run(watch(&mock, dir.path(), "seller", &[]));
    assert_eq!(out.code(), Some(0), "{out}");
    let events = lines(&out);
    assert_eq!(printed_ids(&events), expected, "{out}");
    let comments: Vec<_> = events
        .iter()
        .filter_map(|e| e["comment"].as_str())
        .collect();
    assert_eq!(comments, ["un", "deux", "trois", "quatre"]);
    let state = mock.finished();
    assert_clean_protocol(&state);
    let conn = &state.conns[0];
    assert_eq!(
        conn.request.as_ref().unwrap().param("compress"),
        Some("gzip")
    );
    let encodings: Vec<_> = conn.sent.iter().map(|s| s.enc).collect();
    assert_eq!(
        encodings,
        [
            FrameEnc::Control,
            FrameEnc::Gzip,
            FrameEnc::Plain,
            FrameEnc::GzipNoHeader,
            FrameEnc::Gzip
        ]
    );
}

#[test]
fn no_compress_asks_for_raw_payloads() {
    let (scenario, expected) = mixed_compression();
    let mock = Mock::start(scenario);
    let dir = tempfile::tempdir().unwrap();
    let out = run(watch(&mock, dir.path(), "seller", &["--no-compress"]));
    assert_eq!(out.code(), Some(0), "{out}");
    assert_eq!(printed_ids(&lines(&out)), expected, "{out}");
    let state = mock.finished();
    assert_clean_protocol(&state);
    let conn = &state.conns[0];
    assert!(!conn.gzip);
    assert!(
        conn.request
            .as_ref()
            .unwrap()
            .query
            .iter()
            .all(|(k, _)| k != "compress")
    );
    assert!(
        conn.sent
            .iter()
            .all(|s| matches!(s.enc, FrameEnc::Plain | FrameEnc::Control)),
        "{:?}",
        conn.sent
    );
}

#[test]
fn dropped_connection_resumes_from_the_last_cursor_without_duplicates() {
    let live = dropped();
    let mock = Mock::start(live.scenario);
    let dir = tempfile::tempdir().unwrap();
    let out = run(watch(&mock, dir.path(), "seller", &[]));
    assert_eq!(out.code(), Some(0), "{out}");
    let events = lines(&out);
    assert_eq!(printed_ids(&events), live.expected, "{out}");
    assert_no_duplicates(&events);
    let reconnecting = reconnected_once(&events);
    assert_eq!(reconnecting["attempt"], 1);
    assert!(
        reconnecting["delay_ms"].as_u64().is_some_and(|d| d >= 100),
        "{reconnecting}"
    );
    let gap = events.iter().find(|e| e["state"] == "gap").unwrap();
    assert!(
        gap["reason"].as_str().unwrap().contains("may be missing"),
        "{gap}"
    );

    let state = mock.finished();
    assert_clean_protocol(&state);
    assert_eq!(state.signings.len(), 2);
    assert_eq!(state.signings[0].cursor_asked, "");
    let last_seen = state.conns[0].last_cursor().unwrap();
    assert_eq!(
        state.signings[1].cursor_asked, last_seen,
        "the reconnect resumes at the last cursor"
    );
    assert_eq!(state.conns[0].end.as_deref(), Some("dropped by the mock"));
    assert_eq!(state.accepted().len(), 2);
}

#[test]
fn silent_connection_is_declared_dead_and_replaced() {
    let mut m = Messages::new(ROOM_ID);
    let a = m.chat(&buyer(), "JP 3");
    let b = m.chat(&fan(), "JP 4 noir");
    let end = m.control(3);
    let scenario = Scenario::default()
        .script(vec![Step::frame(vec![a.clone()]), Step::Silence])
        .script(vec![
            Step::frame(vec![b.clone()]),
            Step::frame(vec![end.clone()]),
        ]);
    let mock = Mock::start(scenario);
    let dir = tempfile::tempdir().unwrap();
    let out = run(watch(&mock, dir.path(), "seller", &["--dead-after", "1s"]));
    assert_eq!(out.code(), Some(0), "{out}");
    let events = lines(&out);
    assert_eq!(printed_ids(&events), ids(&[&a, &b, &end]));
    let reconnecting = reconnected_once(&events);
    assert!(
        reconnecting["reason"]
            .as_str()
            .unwrap()
            .contains("no frame for 1 s"),
        "{reconnecting}"
    );
    let state = mock.finished();
    assert_clean_protocol(&state);
    let silent = &state.conns[0];
    assert!(
        !silent.heartbeat_seqs().is_empty(),
        "heartbeats go on while the server is silent"
    );
    assert!(
        silent.end.as_deref().is_some_and(|e| !e.contains("mock")),
        "the client, not the mock, ended the silent connection: {:?}",
        silent.end
    );
}

#[test]
fn server_close_frame_triggers_a_reconnect() {
    let mut m = Messages::new(ROOM_ID);
    let a = m.chat(&buyer(), "JP 5");
    let b = m.chat(&fan(), "JP 6");
    let end = m.control(3);
    let scenario = Scenario::default()
        .script(vec![
            Step::frame(vec![a.clone()]),
            Step::Close(1000, String::new()),
        ])
        .script(vec![Step::frame(vec![b.clone(), end.clone()])]);
    let mock = Mock::start(scenario);
    let dir = tempfile::tempdir().unwrap();
    let out = run(watch(&mock, dir.path(), "seller", &[]));
    assert_eq!(out.code(), Some(0), "{out}");
    let events = lines(&out);
    assert_eq!(printed_ids(&events), ids(&[&a, &b, &end]));
    let reconnecting = events
        .iter()
        .find(|e| e["state"] == "reconnecting")
        .expect("a reconnect");
    assert_eq!(reconnecting["attempt"], 1);
    assert!(
        reconnecting["reason"]
            .as_str()
            .unwrap()
            .contains("code 1000"),
        "{reconnecting}"
    );
    let state = mock.finished();
    assert_clean_protocol(&state);
    assert_eq!(state.accepted().len(), 2);
}

#[test]
fn malformed_frames_are_skipped_and_the_run_goes_on() {
    let u = buyer();
    let mut m = Messages::new(ROOM_ID);
    let before = m.chat(&u, "avant");
    let lost = m.chat(&u, "perdu dans un gzip corrompu");
    let bad_chat = m.undecodable("WebcastChatMessage");
    let after = m.chat(&u, "après");
    let foo = m.unknown("WebcastFooMessage");
    let last = m.chat(&u, "encore");
    let end = m.control(3);
    let scenario = Scenario::default().script(vec![
        Step::frame(vec![before.clone()]),
        Step::Raw(b"\xff\xff\xff\xff\x0fnot a push frame".to_vec()),
        Step::Text("hello".into()),
        Step::Frame(Enc::CorruptGzip, vec![lost.clone()]),
        Step::frame(vec![bad_chat.clone(), after.clone()]),
        Step::frame(vec![foo.clone(), last.clone()]),
        Step::frame(vec![end.clone()]),
    ]);
    let mock = Mock::start(scenario);
    let dir = tempfile::tempdir().unwrap();
    let out = run(watch(&mock, dir.path(), "seller", &[]));
    assert_eq!(out.code(), Some(0), "{out}");
    let events = lines(&out);
    assert_eq!(
        printed_ids(&events),
        ids(&[&before, &after, &foo, &last, &end]),
        "{out}"
    );
    assert_eq!(connection_states(&events), ["connected", "disconnected"]);
    let unknown = line(&events, foo.msg_id);
    assert_eq!(unknown["type"], "unknown");
    assert_eq!(unknown["method"], "WebcastFooMessage");
    assert_eq!(unknown["room_id"], ROOM_ID.to_string());
    assert!(
        out.stderr.contains("did not decode"),
        "bad frames are reported on stderr\n{out}"
    );
    assert!(!out.stderr.contains("panicked"), "{out}");
    assert_clean_protocol(&mock.finished());
}

#[test]
fn gives_up_with_exit_5_after_max_retries() {
    let mut m = Messages::new(ROOM_ID);
    let a = m.chat(&buyer(), "JP 8");
    // Only the first connection is served; every later one is closed as soon as it is accepted.
    let scenario = Scenario::default().script(vec![Step::frame(vec![a.clone()]), Step::Drop]);
    let mock = Mock::start(scenario);
    let dir = tempfile::tempdir().unwrap();
    let out = run(watch(&mock, dir.path(), "seller", &[]));
    assert_eq!(out.code(), Some(5), "{out}");
    let events = lines(&out);
    assert_eq!(printed_ids(&events), [a.msg_id]);
    assert_eq!(
        connection_states(&events),
        [
            "connected",
            "reconnecting",
            "reconnecting",
            "reconnecting",
            "disconnected"
        ]
    );
    let attempts: Vec<_> = events
        .iter()
        .filter(|e| e["state"] == "reconnecting")
        .map(|e| e["attempt"].as_u64().unwrap())
        .collect();
    assert_eq!(attempts, [1, 2, 3]);
    assert!(out.stderr.contains("gave up after 3 attempts"), "{out}");
    assert!(
        out.stderr.contains("WebSocket"),
        "the last failure is named\n{out}"
    );
    let state = mock.finished();
    assert!(state.violations.is_empty(), "{:#?}", state.violations);
    assert_eq!(state.signings.len(), 4, "every attempt signs a new URL");
    let handshakes: Vec<_> = state.conns.iter().map(|c| c.handshake.clone()).collect();
    assert_eq!(
        handshakes,
        [
            Handshake::Accepted,
            Handshake::RefusedTcp,
            Handshake::RefusedTcp,
            Handshake::RefusedTcp
        ]
    );
}

#[test]
fn sign_rate_limit_exits_4_and_says_when_to_retry() {
    let mock = Mock::start(Scenario::default().api_key(KEY).rate_limited());
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = watch(&mock, dir.path(), "seller", &[]);
    cmd.env("TIKLIVE_SIGN_API_KEY", KEY);
    let out = run(cmd);
    assert_eq!(out.code(), Some(4), "{out}");
    assert!(out.stderr.contains("retry in 42 s"), "{out}");
    assert!(out.stderr.contains("anon-minute"), "{out}");
    assert!(out.stderr.contains("Too many connections started"), "{out}");
    assert_secret_not_printed(&out, KEY);
    let events = lines(&out);
    assert_eq!(connection_states(&events), ["disconnected"]);
    let state = mock.finished();
    assert!(state.violations.is_empty(), "{:#?}", state.violations);
    assert_eq!(
        state.signings.len(),
        1,
        "a rate limit at start is not retried"
    );
    assert_eq!(state.signings[0].status, 429);
    assert!(state.conns.is_empty());
}

#[test]
fn wrong_or_missing_api_key_exits_4_without_printing_keys() {
    let wrong = "wrong-key-0d9f7e2b41";
    for key in [Some(wrong), None] {
        let mock = Mock::start(Scenario::default().api_key(KEY));
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = watch(&mock, dir.path(), "seller", &[]);
        if let Some(key) = key {
            cmd.env("TIKLIVE_SIGN_API_KEY", key);
        }
        let out = run(cmd);
        assert_eq!(out.code(), Some(4), "{out}");
        assert!(out.stderr.contains("HTTP 401"), "{out}");
        assert!(out.stderr.contains("API key"), "{out}");
        assert_secret_not_printed(&out, KEY);
        assert_secret_not_printed(&out, wrong);
        let state = mock.finished();
        assert!(state.violations.is_empty(), "{:#?}", state.violations);
        assert_eq!(state.signings.len(), 1);
        assert_eq!(state.signings[0].status, 401);
        assert_eq!(state.signings[0].api_key.as_deref(), key);
        assert!(state.conns.is_empty());
    }
}

#[test]
fn offline_host_exits_3() {
    let offline = || Scenario::default().host("closed_shop", Host::Offline(OFFLINE_ROOM_ID));
    // Found offline on the live page.
    let mock = Mock::start(offline());
    let dir = tempfile::tempdir().unwrap();
    let out = run(watch(
        &mock,
        dir.path(),
        "https://www.tiktok.com/@closed_shop/live",
        &[],
    ));
    assert_eq!(out.code(), Some(3), "{out}");
    assert!(out.stderr.contains("@closed_shop is not live"), "{out}");
    let state = mock.finished();
    assert!(state.violations.is_empty(), "{:#?}", state.violations);
    assert_eq!(state.requests(Role::Web).len(), 1);
    assert_eq!(
        state.requests(Role::Web)[0].request.path,
        "/@closed_shop/live"
    );
    assert!(state.signings.is_empty() && state.conns.is_empty());

    // Found offline by room info, when the room id is given.
    let mock = Mock::start(offline().forbid_web());
    let room = OFFLINE_ROOM_ID.to_string();
    let out = run(watch(
        &mock,
        dir.path(),
        "closed_shop",
        &["--room-id", &room],
    ));
    assert_eq!(out.code(), Some(3), "{out}");
    assert!(out.stderr.contains("not live"), "{out}");
    let state = mock.finished();
    assert!(state.violations.is_empty(), "{:#?}", state.violations);
    let info = state.requests(Role::Webcast);
    assert_eq!(info.len(), 1);
    assert_eq!(info[0].request.param("room_id"), Some(room.as_str()));
    assert!(state.signings.is_empty() && state.conns.is_empty());
}

#[test]
fn unknown_user_exits_3() {
    let mock = Mock::start(Scenario::default());
    let dir = tempfile::tempdir().unwrap();
    let out = run(watch(&mock, dir.path(), "@nobody_here_404", &[]));
    assert_eq!(out.code(), Some(3), "{out}");
    assert!(
        out.stderr.contains("@nobody_here_404 was not found"),
        "{out}"
    );
    let state = mock.finished();
    assert!(state.violations.is_empty(), "{:#?}", state.violations);
    let paths: Vec<_> = state
        .requests(Role::Web)
        .iter()
        .map(|r| r.request.path.clone())
        .collect();
    assert_eq!(paths, ["/@nobody_here_404/live", "/api-live/user/room/"]);
    assert!(state.signings.is_empty() && state.conns.is_empty());
}

#[test]
fn blocked_live_page_falls_back_to_api_live() {
    let (scenario, chat) =
        short_live(Scenario::default().host("shy_seller", Host::BlockedPage(ROOM_ID)));
    let mock = Mock::start(scenario);
    let dir = tempfile::tempdir().unwrap();
    let out = run(watch(&mock, dir.path(), "shy_seller", &[]));
    assert_eq!(out.code(), Some(0), "{out}");
    let events = lines(&out);
    assert_eq!(line(&events, chat)["comment"], "JP 7");
    let state = mock.finished();
    assert_clean_protocol(&state);
    let web = state.requests(Role::Web);
    let paths: Vec<_> = web.iter().map(|r| r.request.path.as_str()).collect();
    assert_eq!(paths, ["/@shy_seller/live", "/api-live/user/room/"]);
    let api = &web[1].request;
    assert_eq!(api.param("uniqueId"), Some("shy_seller"));
    assert_eq!(api.param("sourceType"), Some("54"));
    assert_eq!(api.param("aid"), Some("1988"));
    assert_eq!(state.signings[0].room_id, ROOM_ID);
}

#[test]
fn room_id_flag_skips_the_web_lookup() {
    let (scenario, chat) = short_live(Scenario::default().forbid_web());
    let mock = Mock::start(scenario);
    let dir = tempfile::tempdir().unwrap();
    let room = ROOM_ID.to_string();
    let out = run(watch(&mock, dir.path(), "seller", &["--room-id", &room]));
    assert_eq!(out.code(), Some(0), "{out}");
    assert_eq!(line(&lines(&out), chat)["comment"], "JP 7");
    let state = mock.finished();
    assert_clean_protocol(&state);
    assert!(state.requests(Role::Web).is_empty());
    assert_eq!(
        state.requests(Role::Webcast)[0].request.param("room_id"),
        Some(room.as_str())
    );
    assert_eq!(state.signings[0].room_id, ROOM_ID);
}

#[test]
fn handshake_rejection_exits_4_with_tiktoks_reason() {
    let mock = Mock::start(Scenario::default().conn(Conn::RejectHandshake));
    let dir = tempfile::tempdir().unwrap();
    let out = run(watch(&mock, dir.path(), "seller", &[]));
    assert_eq!(out.code(), Some(4), "{out}");
    assert!(out.stderr.contains("illegal secret key"), "{out}");
    assert!(out.stderr.contains("rejected the WebSocket"), "{out}");
    let state = mock.finished();
    assert!(
        state.violations.is_empty(),
        "the client's handshake was right: {:#?}",
        state.violations
    );
    assert_eq!(
        state.signings.len(),
        1,
        "a rejected signature is not retried"
    );
    assert_eq!(state.conns.len(), 1);
    assert_eq!(
        state.conns[0].handshake,
        Handshake::Rejected("illegal secret key".into())
    );
}

#[test]
fn filter_chat_prints_only_chat_lines() {
    let live = normal();
    let mock = Mock::start(live.scenario);
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = watch(&mock, dir.path(), "seller", &["--filter", "chat"]);
    cmd.env("TIKLIVE_SIGN_API_KEY", KEY);
    let out = run(cmd);
    assert_eq!(out.code(), Some(0), "the live still ends at its end\n{out}");
    let events = lines(&out);
    assert!(events.iter().all(|e| e["type"] == "chat"), "{out}");
    assert_eq!(printed_ids(&events), live.chats);
    assert_clean_protocol(&mock.finished());
}

#[test]
fn claims_only_prints_only_claims() {
    let live = normal();
    let mock = Mock::start(live.scenario);
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = watch(&mock, dir.path(), "seller", &["--claims-only"]);
    cmd.env("TIKLIVE_SIGN_API_KEY", KEY);
    let out = run(cmd);
    assert_eq!(out.code(), Some(0), "{out}");
    let events = lines(&out);
    assert_eq!(printed_ids(&events), [live.claim], "{out}");
    assert_eq!(events[0]["claim"]["item"], "A12");
    assert_clean_protocol(&mock.finished());
}

#[test]
fn recording_replays_to_the_same_lines() {
    let live = dropped();
    let mock = Mock::start(live.scenario);
    let dir = tempfile::tempdir().unwrap();
    let out = run(watch(
        &mock,
        dir.path(),
        "seller",
        &["--record", "live.rec"],
    ));
    assert_eq!(out.code(), Some(0), "{out}");
    assert_clean_protocol(&mock.finished());
    let watched: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| !l.contains(r#""type":"connection""#))
        .collect();
    assert_eq!(watched.len(), live.expected.len(), "{out}");

    let replay = || {
        let mut cmd = tiklive(dir.path());
        cmd.args(["replay", "live.rec"]);
        let out = run(cmd);
        assert_eq!(out.code(), Some(0), "{out}");
        out.stdout
    };
    let first = replay();
    let replayed: Vec<&str> = first.lines().collect();
    assert_eq!(replayed, watched);
    assert_eq!(replay(), first, "replay is deterministic");
}

#[test]
fn closed_stdout_ends_the_run_quietly() {
    let mut m = Messages::new(ROOM_ID);
    let history = m.chat(&fan(), "salut");
    let a = m.chat(&buyer(), "JP 1");
    let b = m.chat(&buyer(), "JP 2");
    let scenario = Scenario::default().history(vec![history]).script(vec![
        Step::frame(vec![a]),
        Step::WaitRelease,
        Step::frame(vec![b]),
    ]);
    let mock = Mock::start(scenario);
    let dir = tempfile::tempdir().unwrap();
    let mut child = watch(&mock, dir.path(), "seller", &[]).spawn().unwrap();
    // `tiklive watch … | head -1`
    let first = first_line_then_close(&mut child);
    let first: Value = serde_json::from_str(&first).unwrap();
    assert_eq!(
        (first["type"].as_str(), first["state"].as_str()),
        (Some("connection"), Some("connected"))
    );
    mock.release();
    let out = finish(child);
    assert_eq!(out.code(), Some(0), "{out}");
    let stderr = out.stderr.to_lowercase();
    assert!(
        !stderr.contains("error") && !stderr.contains("panicked"),
        "{out}"
    );
    let state = mock.finished();
    assert!(state.violations.is_empty(), "{:#?}", state.violations);
    assert_eq!(
        state.signings.len(),
        1,
        "no reconnect after the reader left"
    );
}

#[test]
fn rate_limit_while_reconnecting_is_waited_out() {
    let mut m = Messages::new(ROOM_ID);
    let a = m.chat(&buyer(), "JP 21");
    let b = m.chat(&fan(), "JP 22");
    let end = m.control(3);
    let scenario = Scenario::default()
        .sign_answers(vec![
            SignMode::Normal,
            SignMode::RateLimited { retry_after: 1 },
            SignMode::Normal,
        ])
        .script(vec![Step::frame(vec![a.clone()]), Step::Drop])
        .script(vec![Step::frame(vec![b.clone(), end.clone()])]);
    let mock = Mock::start(scenario);
    let dir = tempfile::tempdir().unwrap();
    let out = run(watch(&mock, dir.path(), "seller", &[]));
    assert_eq!(out.code(), Some(0), "{out}");
    let events = lines(&out);
    assert_eq!(printed_ids(&events), ids(&[&a, &b, &end]));
    assert_eq!(
        connection_states(&events),
        [
            "connected",
            "reconnecting",
            "reconnecting",
            "connected",
            "gap",
            "disconnected"
        ]
    );
    let waited = events
        .iter()
        .filter(|e| e["state"] == "reconnecting")
        .nth(1)
        .unwrap();
    assert_eq!(waited["attempt"], 2);
    assert!(
        waited["reason"].as_str().unwrap().contains("rate limit"),
        "{waited}"
    );
    assert!(
        waited["delay_ms"].as_u64().unwrap() >= 1000,
        "retry-after is honoured: {waited}"
    );
    let state = mock.finished();
    assert_clean_protocol(&state);
    let statuses: Vec<_> = state.signings.iter().map(|s| s.status).collect();
    assert_eq!(statuses, [200, 429, 200]);
    let last_seen = state.conns[0].last_cursor().unwrap();
    assert_eq!(state.signings[2].cursor_asked, last_seen);
}

#[test]
fn live_ending_during_a_reconnect_ends_the_run_normally() {
    let mut m = Messages::new(ROOM_ID);
    let a = m.chat(&buyer(), "JP 31");
    // Room info says live at start, offline when the client checks again after the drop.
    let scenario = Scenario::default()
        .ends_after_room_infos(1)
        .script(vec![Step::frame(vec![a.clone()]), Step::Drop]);
    let mock = Mock::start(scenario);
    let dir = tempfile::tempdir().unwrap();
    let out = run(watch(&mock, dir.path(), "seller", &[]));
    assert_eq!(out.code(), Some(0), "{out}");
    let events = lines(&out);
    assert_eq!(printed_ids(&events), [a.msg_id]);
    assert_eq!(
        connection_states(&events),
        ["connected", "reconnecting", "disconnected"]
    );
    assert_eq!(
        events.last().unwrap()["reason"],
        "the host is no longer live"
    );
    let state = mock.finished();
    assert_clean_protocol(&state);
    assert_eq!(state.requests(Role::Webcast).len(), 2);
    assert_eq!(
        state.signings.len(),
        1,
        "no new signature for an ended live"
    );
}
