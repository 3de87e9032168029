//! `tiklive serve` end to end: the real binary against the loopback TikTok mock, driven the way a
//! script or the dashboard drives it: the HTTP API, the WebSocket feed, sales, auth off loopback, body
//! limits, HTTPS, and a graceful SIGTERM with the store committed.

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::api::{Server, http_request, next_json, serve_command};
use support::*;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

/// A live with a claim, a gift, likes and viewers, then (after `release`) a second chat line; the
/// socket then stays open.
fn live() -> Scenario {
    let mut m = Messages::new(ROOM_ID);
    let (buyer, fan) = (buyer(), fan());
    let first = vec![
        m.chat(&buyer, "JP A12 M"),
        m.gift(&fan, &rose(), 3, true, 1),
        m.like(&fan, 5, 120),
        m.room_user(118, 342),
    ];
    Scenario::default().script(vec![
        Step::frame(first),
        Step::WaitRelease,
        Step::frame(vec![m.chat(&fan, "bonjour !")]),
        Step::Silence,
    ])
}

fn wait_connected(server: &Server, events: u64) -> Value {
    server.wait_for("/status", "the live to be connected", |s| {
        s["lives"][0]["state"] == "connected" && s["lives"][0]["events"].as_u64() >= Some(events)
    })
}

#[test]
fn serve_answers_the_api_and_feeds_websocket_clients() {
    let scenario = live();
    let mock = Mock::start(scenario);
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&mock, dir.path(), &["--user", "@seller"]);

    let status = wait_connected(&server, 4);
    let live = &status["lives"][0];
    assert_eq!(live["username"], "seller");
    assert_eq!(live["room_id"], ROOM_ID.to_string());
    assert_eq!(live["title"], room_title(ROOM_ID).trim());
    assert_eq!(live["viewer_count"], 118);
    assert_eq!(live["total_likes"], 120);
    assert_eq!(live["gifts"], 1);
    assert_eq!(live["gift_diamonds"], 3);
    assert_eq!(live["claims"], 1);

    // The recent events, as watch prints them (connection line first).
    let events = server.get("/events?live=seller&type=chat").json();
    let chats = events["events"].as_array().unwrap();
    assert_eq!(chats.len(), 1, "{events}");
    let claim = &chats[0];
    assert_eq!(claim["comment"], "JP A12 M");
    assert_eq!(claim["claim"]["item"], "A12");
    assert_eq!(claim["claim"]["variant"], "M");
    assert_eq!(claim["user"]["unique_id"], "camille.shop");
    let claim_id = claim["msg_id"].as_str().unwrap().to_owned();

    // A feed client: status, the recent events, synced, then what comes live.
    let mut ws = server.websocket(server.api, "/ws").unwrap();
    let first = next_json(&mut ws);
    assert_eq!(first["type"], "status");
    assert_eq!(first["lives"][0]["state"], "connected");
    let mut initial = Vec::new();
    loop {
        let msg = next_json(&mut ws);
        if msg["type"] == "synced" {
            break;
        }
        initial.push(msg);
    }
    let types: Vec<&str> = initial
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["connection", "chat", "gift", "like", "room_user"]);
    // The second port serves the same feed at any path.
    let mut ws2 = server.websocket(server.feed, "/anything").unwrap();
    assert_eq!(next_json(&mut ws2)["type"], "status");
    while next_json(&mut ws2)["type"] != "synced" {}
    ws2.send(Message::text(r#"{"subscribe": ["sale"]}"#))
        .unwrap();

    mock.release();
    let live_chat = loop {
        let msg = next_json(&mut ws);
        if msg["type"] == "chat" {
            break msg;
        }
    };
    assert_eq!(live_chat["comment"], "bonjour !");

    // A sale from the claim, through the API, announced on the feed.
    let created = server.request(
        "POST",
        "/sales",
        Some(&json!({"message_id": claim_id, "price": "12.50", "quantity": 2}).to_string()),
    );
    assert_eq!(created.status, 201, "{}", created.body);
    let sale = created.json();
    let sale_id = sale["id"].as_i64().unwrap();
    assert_eq!(
        created.header("location"),
        Some(format!("/sales/{sale_id}").as_str())
    );
    assert_eq!(sale["item"], "A12");
    assert_eq!(sale["variant"], "M");
    assert_eq!(sale["quantity"], 2);
    assert_eq!(sale["unit_price"], "12.50");
    assert_eq!(sale["total"], "25.00");
    assert_eq!(sale["currency"], "EUR");
    assert_eq!(sale["status"], "pending");
    assert_eq!(sale["unique_id"], "camille.shop");
    let announced = loop {
        let msg = next_json(&mut ws);
        if msg["type"] == "sale" {
            break msg;
        }
    };
    assert_eq!(announced["sale"]["id"], sale_id);
    // The subscribed client got the sale, and no chat line.
    let mut got = next_json(&mut ws2);
    while got["type"] == "status" {
        got = next_json(&mut ws2);
    }
    assert_eq!(got["type"], "sale", "{got}");

    // Same rules as the command line: a second sale for the message is a conflict unless forced.
    let again = server.request(
        "POST",
        "/sales",
        Some(&json!({"message_id": claim_id}).to_string()),
    );
    assert_eq!(again.status, 409, "{}", again.body);
    assert_eq!(again.json()["error"]["code"], "conflict");
    let unknown = server.request("POST", "/sales", Some(r#"{"message_id": "123"}"#));
    assert_eq!(unknown.status, 404);
    let both = server.request(
        "POST",
        "/sales",
        Some(r#"{"message_id": "1", "buyer": "@x"}"#),
    );
    assert_eq!(both.status, 400);
    let bad_price = server.request(
        "POST",
        "/sales",
        Some(&json!({"message_id": claim_id, "price": "douze", "force": true}).to_string()),
    );
    assert_eq!(bad_price.status, 400);
    assert!(
        bad_price.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("douze")
    );
    let manual = server.request(
        "POST",
        "/sales",
        Some(r#"{"buyer": "@lea_b", "item": "B7", "price": 9}"#),
    );
    assert_eq!(manual.status, 201, "{}", manual.body);
    assert_eq!(manual.json()["unit_price"], "9.00");

    let paid = server.request(
        "PATCH",
        &format!("/sales/{sale_id}"),
        Some(r#"{"status": "paid", "note": "virement"}"#),
    );
    assert_eq!(paid.status, 200, "{}", paid.body);
    assert_eq!(paid.json()["status"], "paid");
    assert_eq!(paid.json()["note"], "virement");
    let sales = server.get("/sales?status=paid").json();
    assert_eq!(sales["sales"].as_array().unwrap().len(), 1);
    assert_eq!(
        server.get("/sales").json()["sales"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let cancelled = server.request("DELETE", &format!("/sales/{}", manual.json()["id"]), None);
    assert_eq!(cancelled.json()["status"], "cancelled");
    assert_eq!(
        server
            .request("PATCH", "/sales/999", Some(r#"{"status": "paid"}"#))
            .status,
        404
    );

    // Claims in arrival order with their sales, and a buyer's history.
    let claims = server.wait_for("/claims", "the stored claim", |c| {
        c["claims"].as_array().is_some_and(|a| !a.is_empty())
    });
    assert_eq!(claims["claims"][0]["msg_id"], claim_id.as_str());
    assert_eq!(claims["claims"][0]["rank"], 1);
    assert_eq!(claims["claims"][0]["sale_ids"], json!([sale_id]));
    let buyer = server.get("/buyers/@camille.shop");
    assert_eq!(buyer.status, 200, "{}", buyer.body);
    assert_eq!(buyer.json()["claims"].as_array().unwrap().len(), 1);
    assert_eq!(buyer.json()["lives"][0]["host"], "seller");
    assert_eq!(server.get("/buyers/@nobody").status, 404);

    // CSV with the export's filters.
    let csv = server.get("/export/sales.csv");
    assert_eq!(csv.status, 200);
    assert!(csv.header("content-type").unwrap().starts_with("text/csv"));
    let lines: Vec<&str> = csv.body.lines().collect();
    assert_eq!(lines.len(), 3, "{}", csv.body);
    assert!(lines[0].starts_with("id,"));
    let chat_fr = server.get("/export/chat.csv?excel_fr=1");
    assert!(chat_fr.body.starts_with('\u{feff}'));
    assert!(chat_fr.body.contains("bonjour !"));
    assert_eq!(server.get("/export/nope.csv").status, 404);
    assert_eq!(
        server.get("/export/chat.csv?since=yesterday-ish").status,
        400
    );
    // The same refusals as `tiklive export`: an empty time range, an unknown user.
    let empty = server.get("/export/chat.csv?since=2026-01-02&until=2026-01-01");
    assert_eq!(empty.status, 400, "{}", empty.body);
    assert!(
        empty.json()["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("the time range is empty")),
        "{}",
        empty.body
    );
    assert_eq!(server.get("/export/chat.csv?user=@nobody").status, 404);
    assert_eq!(server.get("/export/viewers.csv?user=@seller").status, 400);

    // Errors are JSON with a fitting status.
    let missing = server.get("/nope");
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["error"]["code"], "not_found");
    assert_eq!(server.get("/events?tpye=chat").status, 400);
    assert_eq!(
        server.request("POST", "/sales", Some("{not json")).status,
        400
    );
    let huge = format!("{{\"note\": \"{}\"}}", "x".repeat(70_000));
    let refused = server.request("POST", "/sales", Some(&huge));
    assert_eq!(refused.status, 413, "{}", refused.body);
    assert_eq!(refused.json()["error"]["code"], "payload_too_large");

    // The dashboard is served with a policy that forbids inline scripts.
    let page = server.get("/");
    assert_eq!(page.status, 200);
    assert!(
        page.header("content-security-policy")
            .unwrap()
            .contains("script-src 'self'")
    );

    // SIGTERM: clients are told the server is going away, the store is committed, exit 0.
    let started = Instant::now();
    let pid = server.child.id();
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let close = loop {
        match ws.read() {
            Ok(Message::Close(frame)) => break frame,
            Ok(_) => {}
            Err(e) => panic!("no close frame: {e}"),
        }
    };
    assert_eq!(close.unwrap().code, CloseCode::Away);
    let out = server.terminate();
    assert_eq!(out.code(), Some(0), "{out}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(out.stderr.contains("storing events in"), "{out}");

    let db = rusqlite::Connection::open(default_db(dir.path())).unwrap();
    let stored: i64 = db
        .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
        .unwrap();
    assert_eq!(stored, 5);
    let ended: Option<i64> = db
        .query_row("SELECT ended_at FROM lives", [], |r| r.get(0))
        .unwrap();
    assert!(ended.is_some());
    let sales: i64 = db
        .query_row("SELECT count(*) FROM sales", [], |r| r.get(0))
        .unwrap();
    assert_eq!(sales, 2);
}

/// After a restart, `/events` of a host still starts with what was stored before it, followed by what
/// the new run has seen (kept in memory, connection lines included), each event once.
#[test]
fn events_stored_before_a_restart_are_still_served_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let first_mock = Mock::start(live());
    let server = Server::start(&first_mock, dir.path(), &["--user", "seller"]);
    wait_connected(&server, 4);
    let out = server.terminate();
    assert_eq!(out.code(), Some(0), "{out}");

    // The second run's live: messages of its own (the first run's ids are used up), one the same.
    let mut m = Messages::new(ROOM_ID);
    let again = m.chat(&buyer(), "JP A12 M");
    for _ in 0..10 {
        m.chat(&fan(), "used up");
    }
    let second = Scenario::default().script(vec![
        Step::frame(vec![
            again,
            m.chat(&fan(), "de retour"),
            m.like(&fan(), 2, 130),
        ]),
        Step::Silence,
    ]);
    let second_mock = Mock::start(second);
    let server = Server::start(&second_mock, dir.path(), &["--user", "seller"]);
    wait_connected(&server, 3);
    let all = server.get("/events?live=seller").json();
    let summary: Vec<String> = all["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            format!(
                "{} {}",
                e["type"].as_str().unwrap(),
                e["comment"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            "gift ",
            "like ",
            "room_user ",
            "connection ",
            "chat JP A12 M",
            "chat de retour",
            "like "
        ],
        "{all}"
    );
    // The limit keeps the newest; one type reaches into the store as well.
    let last_two = server.get("/events?live=seller&limit=2").json();
    assert_eq!(last_two["events"][0]["comment"], "de retour", "{last_two}");
    assert_eq!(last_two["events"][1]["type"], "like", "{last_two}");
    let likes = server.get("/events?live=seller&type=like").json();
    let totals: Vec<u64> = likes["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["total_like_count"].as_u64().unwrap())
        .collect();
    assert_eq!(totals, [120, 130], "{likes}");
}

#[test]
fn connect_and_disconnect_follow_lives_on_demand() {
    let scenario = live();
    let mock = Mock::start(scenario.host("ghost", Host::Unknown));
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        &mock,
        dir.path(),
        &[
            "--log-file",
            "logs/serve.log",
            "--cors-origin",
            "https://shop.example",
        ],
    );
    assert_eq!(server.get("/status").json(), json!({"lives": []}));
    // Browsers of the named origin may call the API; others get no CORS grant.
    let preflight = |origin: &str| {
        let headers = [
            ("Origin".to_owned(), origin.to_owned()),
            (
                "Access-Control-Request-Method".to_owned(),
                "POST".to_owned(),
            ),
            (
                "Access-Control-Request-Headers".to_owned(),
                "content-type".to_owned(),
            ),
        ];
        http_request(server.api, None, "OPTIONS", "/sales", &headers, None).unwrap()
    };
    let allowed = preflight("https://shop.example");
    assert_eq!(allowed.status, 200, "{}", allowed.body);
    assert_eq!(
        allowed.header("access-control-allow-origin"),
        Some("https://shop.example")
    );
    let other = preflight("https://evil.example");
    assert_eq!(other.status, 403, "{}", other.body);
    assert!(other.header("access-control-allow-origin").is_none());

    let connected = server.request(
        "POST",
        "/connect",
        Some(r#"{"username": "https://www.tiktok.com/@seller/live"}"#),
    );
    assert_eq!(connected.status, 202, "{}", connected.body);
    assert_eq!(connected.json()["live"]["username"], "seller");
    wait_connected(&server, 4);

    let ghost = server.request("POST", "/connect", Some(r#"{"username": "ghost"}"#));
    assert_eq!(ghost.status, 202);
    let status = server.wait_for("/status", "ghost to fail", |s| {
        s["lives"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["username"] == "ghost" && l["state"] == "disconnected")
    });
    let ghost = status["lives"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["username"] == "ghost")
        .unwrap()
        .clone();
    assert!(
        ghost["error"].as_str().unwrap().contains("not found"),
        "{ghost}"
    );

    let stopped = server.request("POST", "/disconnect", Some(r#"{"username": "seller"}"#));
    assert_eq!(stopped.status, 200);
    assert_eq!(stopped.json()["live"]["state"], "disconnected");
    assert_eq!(
        server
            .request("POST", "/disconnect", Some(r#"{"username": "nobody"}"#))
            .status,
        404
    );
    assert_eq!(
        server
            .request("POST", "/connect", Some(r#"{"username": ""}"#))
            .status,
        400
    );
    assert_eq!(
        server
            .request("POST", "/connect", Some(r#"{"user": "x"}"#))
            .status,
        400
    );
    let out = server.terminate();
    assert_eq!(out.code(), Some(0), "{out}");
    // --log-file: the same lines as stderr, in a file named after the day, without colours.
    let logs: Vec<_> = std::fs::read_dir(dir.path().join("logs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(logs.len(), 1, "{logs:?}");
    let name = logs[0].file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.starts_with("serve.log.20"), "{name}");
    let logged = std::fs::read_to_string(&logs[0]).unwrap();
    assert!(
        logged.contains("dashboard and API on http://127.0.0.1:"),
        "{logged}"
    );
    assert!(logged.contains("shutting down"), "{logged}");
    assert!(!logged.contains('\u{1b}'));
}

#[test]
fn an_offline_host_is_checked_again_and_each_of_their_lives_followed() {
    // Offline for two checks; then a live that ends, and, at the next check, another one.
    let mut m = Messages::new(ROOM_ID);
    let (first, second) = (m.chat(&buyer(), "JP A12 M"), m.chat(&fan(), "re !"));
    let scenario = Scenario {
        hosts: vec![("seller".into(), Host::LiveAfter(ROOM_ID, 2))],
        ..Scenario::default()
    }
    .script(vec![Step::frame(vec![first.clone(), m.control(3)])])
    .script(vec![Step::frame(vec![second.clone()]), Step::Silence]);
    let mock = Mock::start(scenario);
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        &mock,
        dir.path(),
        &["--user", "@seller", "--offline-poll", "1s"],
    );

    let offline = server.wait_for("/status", "the host offline, with the next check", |s| {
        s["lives"][0]["state"] == "offline" && s["lives"][0]["next_check_at"].is_string()
    });
    assert_eq!(offline["lives"][0]["live_id"], Value::Null, "{offline}");
    let status = server.wait_for("/status", "the second live to be followed", |s| {
        s["lives"][0]["state"] == "connected"
            && s["lives"][0]["live_id"] == 2
            && s["lives"][0]["events"].as_u64() >= Some(1)
    });
    let live = &status["lives"][0];
    assert_eq!(live["next_check_at"], Value::Null);
    assert_eq!(
        live["claims"], 0,
        "counters start again with each live: {live}"
    );
    let checks = mock.state().live_page_requests("seller");
    assert_eq!(checks, 4, "two offline checks, one per live");
    // The check that finds a live asks room info; following it does not ask again.
    assert_eq!(
        mock.state().room_info_requests(),
        2,
        "room info once per live"
    );

    // One row per live, none for the checks; each live has its own events.
    let db = rusqlite::Connection::open(default_db(dir.path())).unwrap();
    let read = || -> Vec<(i64, Option<i64>, i64)> {
        db.prepare(
            "SELECT l.id, l.ended_at, (SELECT count(*) FROM events e WHERE e.live_id = l.id AND e.type = 'chat') \
             FROM lives l ORDER BY l.id",
        )
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
    };
    // The second live's chat is committed within the commit interval (100 ms).
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut lives = read();
    while lives.len() == 2 && lives[1].2 == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        lives = read();
    }
    assert_eq!(lives.len(), 2, "{lives:?}");
    assert!(lives[0].1.is_some(), "the first live ended: {lives:?}");
    assert_eq!((lives[0].2, lives[1].2), (1, 1), "{lives:?}");
    let violations = mock.state().violations;
    assert!(violations.is_empty(), "{violations:#?}");
}

#[test]
fn a_failed_check_is_retried_with_the_reconnect_delays_not_the_poll() {
    // TikTok's lookups fail twice (503), then the host is found live.
    let mut m = Messages::new(ROOM_ID);
    let chat = m.chat(&buyer(), "JP 7");
    let scenario = Scenario {
        hosts: vec![("seller".into(), Host::Unavailable(ROOM_ID, 2))],
        ..Scenario::default()
    }
    .script(vec![Step::frame(vec![chat]), Step::Silence]);
    let mock = Mock::start(scenario);
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let server = Server::start(
        &mock,
        dir.path(),
        &[
            "--user",
            "@seller",
            "--offline-poll",
            "60s",
            "--retry-delay",
            "200ms",
        ],
    );
    wait_connected(&server, 1);
    // 200 ms then 400 ms (plus jitter), not the 60 s poll.
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    let state = mock.state();
    assert_eq!(
        (
            state.live_page_requests("seller"),
            state.api_live_requests("seller")
        ),
        (3, 2),
        "two failed checks (live page and api-live each), then the live page finds the room"
    );
    assert!(state.violations.is_empty(), "{:#?}", state.violations);
}

#[test]
fn off_loopback_the_token_is_required() {
    let scenario = live();
    let mock = Mock::start(scenario);
    let dir = tempfile::tempdir().unwrap();
    let (mut cmd, _, _) = serve_command(&mock, dir.path(), &["--bind", "0.0.0.0"]);
    cmd.env_remove("TIKLIVE_API_TOKEN");
    let out = run(cmd);
    assert_eq!(out.code(), Some(2), "{out}");
    assert!(out.stderr.contains("TIKLIVE_API_TOKEN"), "{out}");

    let token = "s3cret-token-for-tests";
    let (mut cmd, port, ws_port) = serve_command(&mock, dir.path(), &["--bind", "0.0.0.0"]);
    cmd.env("TIKLIVE_API_TOKEN", token);
    let mut server = Server {
        child: cmd.spawn().unwrap(),
        api: ([127, 0, 0, 1], port).into(),
        feed: ([127, 0, 0, 1], ws_port).into(),
        token: None,
        tls_root: None,
    };
    server.wait_healthy();
    let refused = server.get("/status");
    assert_eq!(refused.status, 401);
    assert_eq!(refused.json()["error"]["code"], "unauthorized");
    assert_eq!(
        server
            .request("POST", "/connect", Some(r#"{"username": "seller"}"#))
            .status,
        401
    );
    match server.websocket(server.api, "/ws") {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 401)
        }
        other => panic!(
            "the feed accepted a client without the token: {:?}",
            other.map(|_| ())
        ),
    }
    let wrong = http_request(
        server.api,
        None,
        "GET",
        "/status",
        &[("Authorization".into(), "Bearer nope".into())],
        None,
    )
    .unwrap();
    assert_eq!(wrong.status, 401);
    let mut ws = server
        .websocket(server.feed, &format!("/?token={token}"))
        .unwrap();
    assert_eq!(next_json(&mut ws)["type"], "status");
    // Linking a TikTok account needs the token too (in the link, since a browser follows it).
    assert_eq!(server.get("/oauth").status, 401);
    let oauth = server.get(&format!("/oauth?token={token}"));
    assert_eq!(
        oauth.json()["error"]["code"],
        "oauth_not_configured",
        "{}",
        oauth.body
    );
    server.token = Some(token.into());
    assert_eq!(server.get("/status").status, 200);
    let out = server.terminate();
    assert_eq!(out.code(), Some(0), "{out}");
    assert!(!out.stderr.contains(token), "the token was logged: {out}");
}

#[test]
fn serves_https_with_a_certificate_from_gen_cert() {
    let scenario = live();
    let mock = Mock::start(scenario);
    let dir = tempfile::tempdir().unwrap();
    let made = run({
        let mut cmd = tiklive(dir.path());
        cmd.args(["gen-cert", "--out-dir", "certs"]);
        cmd
    });
    assert_eq!(made.code(), Some(0), "{made}");
    let (mut cmd, port, ws_port) = serve_command(
        &mock,
        dir.path(),
        &[
            "--tls-cert",
            "certs/cert.pem",
            "--tls-key",
            "certs/key.pem",
            "--user",
            "seller",
        ],
    );
    let mut server = Server {
        child: cmd.spawn().unwrap(),
        api: ([127, 0, 0, 1], port).into(),
        feed: ([127, 0, 0, 1], ws_port).into(),
        token: None,
        tls_root: Some(std::fs::read(dir.path().join("certs/cert.pem")).unwrap()),
    };
    server.wait_healthy();
    wait_connected(&server, 4);
    assert_eq!(
        server.get("/events?live=seller").json()["events"]
            .as_array()
            .unwrap()
            .len(),
        5
    );
    // The feed over WSS, on both ports.
    let root = server.tls_root.clone().unwrap();
    for addr in [server.api, server.feed] {
        let path = if addr == server.api { "/ws" } else { "/" };
        let mut feed = support::api::wss(addr, path, &root);
        assert_eq!(next_json(&mut feed)["type"], "status");
        let mut first = next_json(&mut feed);
        while first["type"] != "chat" {
            first = next_json(&mut feed);
        }
        assert_eq!(first["comment"], "JP A12 M");
    }
    // Plain HTTP on the TLS port gets nothing useful.
    let plain = http_request(server.api, None, "GET", "/health", &[], None);
    assert!(plain.map(|r| r.status != 200).unwrap_or(true));
    server.tls_root = None;
    let out = server.terminate();
    assert_eq!(out.code(), Some(0), "{out}");

    let (cmd, _, _) = serve_command(
        &mock,
        dir.path(),
        &[
            "--tls-cert",
            "certs/cert.pem",
            "--tls-key",
            "certs/missing.pem",
        ],
    );
    let out = run(cmd);
    assert_eq!(out.code(), Some(1), "{out}");
    assert!(out.stderr.contains("certs/missing.pem"), "{out}");
}

#[test]
fn a_client_that_stops_reading_is_dropped_with_a_reason() {
    let mut m = Messages::new(ROOM_ID);
    let fan = fan();
    let padding = "x".repeat(300);
    let mut script = vec![Step::WaitRelease];
    for frame in 0..200 {
        let chats = (0..100)
            .map(|i| m.chat(&fan, &format!("{frame}/{i} {padding}")))
            .collect();
        script.push(Step::frame(chats));
    }
    script.push(Step::Silence);
    let mock = Mock::start(Scenario::default().script(script));
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&mock, dir.path(), &["--user", "seller"]);
    wait_connected(&server, 0);
    let mut slow = server.websocket(server.feed, "/").unwrap();
    assert_eq!(next_json(&mut slow)["type"], "status");
    // 20,000 events of ~600 bytes: far more than the socket buffers and the feed's backlog hold.
    mock.release();
    server.wait_for("/status", "every event", |s| {
        s["lives"][0]["events"].as_u64() >= Some(20_000)
    });
    let started = Instant::now();
    server.wait_for("/health", "the slow client to be dropped", |h| {
        h["clients"] == 0
    });
    assert!(started.elapsed() < Duration::from_secs(15));
    let close = loop {
        match slow.read() {
            Ok(Message::Close(frame)) => break frame.expect("a close frame with a reason"),
            Ok(_) => {}
            Err(e) => panic!("no close frame: {e}"),
        }
    };
    assert_eq!(close.code, CloseCode::Again);
    assert!(close.reason.contains("too slow"), "{close:?}");
    let out = server.terminate();
    assert_eq!(out.code(), Some(0), "{out}");
}
