//! End-to-end tests of `watch` options beyond the protocol itself: an HTTP proxy that must carry the
//! WebSocket too, a logged-in session, the exit codes of Ctrl-C and SIGTERM, and `.env` precedence.

mod support;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use support::*;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

/// A live that has a chat, waits for the test to release it, then ends.
fn paused_live() -> (Scenario, u64) {
    let mut m = Messages::new(ROOM_ID);
    let chat = m.chat(&buyer(), "jp 3 rouge");
    let end = m.control(3);
    (
        Scenario::default().script(vec![
            Step::frame(vec![chat.clone()]),
            Step::WaitRelease,
            Step::frame(vec![end]),
        ]),
        chat.msg_id,
    )
}

fn short_live(scenario: Scenario) -> (Scenario, u64) {
    let mut m = Messages::new(ROOM_ID);
    let chat = m.chat(&buyer(), "JP A1 x3");
    let end = m.control(3);
    (
        scenario.script(vec![Step::frame(vec![chat.clone(), end])]),
        chat.msg_id,
    )
}

fn chat_line(out: &Output, msg_id: u64) -> Value {
    let id = msg_id.to_string();
    out.events()
        .into_iter()
        .find(|e| e["msg_id"] == id.as_str())
        .unwrap_or_else(|| panic!("no line with msg_id {id}\n{out}"))
}

// ---------------------------------------------------------------------------------------------------
// A tiny HTTP proxy: CONNECT tunnels (the WebSocket, and HTTPS) and absolute-form GETs (plain HTTP),
// requiring Basic credentials, recording what it carried.

#[derive(Default, Debug)]
struct ProxyLog {
    connects: Vec<String>,
    gets: Vec<String>,
    refused: Vec<String>,
}

struct Proxy {
    addr: SocketAddr,
    log: Arc<Mutex<ProxyLog>>,
    _runtime: tokio::runtime::Runtime,
}

fn start_proxy(credentials: &'static str) -> Proxy {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let log = Arc::new(Mutex::new(ProxyLog::default()));
    let expected_auth = format!("Basic {}", tiklive::base64(credentials.as_bytes()));
    let shared = Arc::clone(&log);
    runtime.spawn(async move {
        loop {
            let Ok((client, _)) = listener.accept().await else {
                return;
            };
            let log = Arc::clone(&shared);
            let expected_auth = expected_auth.clone();
            tokio::spawn(async move {
                let _ = proxy_one(client, &log, &expected_auth).await;
            });
        }
    });
    Proxy {
        addr,
        log,
        _runtime: runtime,
    }
}

async fn proxy_one(
    client: tokio::net::TcpStream,
    log: &Mutex<ProxyLog>,
    expected_auth: &str,
) -> std::io::Result<()> {
    let mut client = tokio::io::BufReader::new(client);
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        if client.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        if line == "\r\n" {
            break;
        }
        head.push(line.trim_end().to_owned());
    }
    let request_line = head.first().cloned().unwrap_or_default();
    let auth = head.iter().find_map(|h| {
        let (k, v) = h.split_once(':')?;
        k.eq_ignore_ascii_case("proxy-authorization")
            .then(|| v.trim().to_owned())
    });
    if auth.as_deref() != Some(expected_auth) {
        log.lock().unwrap().refused.push(request_line);
        client
            .get_mut()
            .write_all(b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .await?;
        return Ok(());
    }
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or("");
    let target = parts.next().unwrap_or("").to_owned();
    if method == "CONNECT" {
        log.lock().unwrap().connects.push(target.clone());
        let mut upstream = tokio::net::TcpStream::connect(&target).await?;
        client
            .get_mut()
            .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
            .await?;
        tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
        return Ok(());
    }
    // Absolute-form request for plain HTTP: forward it in origin form.
    let rest = target.strip_prefix("http://").unwrap_or(&target).to_owned();
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    log.lock().unwrap().gets.push(format!("{host}{path}"));
    let mut upstream = tokio::net::TcpStream::connect(host).await?;
    let mut forwarded = format!(
        "{method} {} HTTP/1.1\r\n",
        if path.is_empty() { "/" } else { path }
    );
    for h in &head[1..] {
        let name = h.split(':').next().unwrap_or("").to_ascii_lowercase();
        if name != "proxy-authorization" && name != "proxy-connection" {
            forwarded.push_str(h);
            forwarded.push_str("\r\n");
        }
    }
    forwarded.push_str("\r\n");
    upstream.write_all(forwarded.as_bytes()).await?;
    tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
    Ok(())
}

#[test]
fn proxy_carries_every_request_and_the_websocket() {
    let (scenario, chat) = short_live(Scenario::default());
    let mock = Mock::start(scenario);
    let proxy = start_proxy("shop:s3cr3t-pr0xy");
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = watch(&mock, dir.path(), "seller", &[]);
    cmd.env_remove("NO_PROXY").env(
        "TIKLIVE_PROXY",
        format!("http://shop:s3cr3t-pr0xy@{}", proxy.addr),
    );
    let out = run(cmd);
    assert_eq!(out.code(), Some(0), "{out}");
    assert_eq!(chat_line(&out, chat)["claim"]["quantity"], 3);
    assert!(
        !out.stdout.contains("s3cr3t") && !out.stderr.contains("s3cr3t"),
        "{out}"
    );
    let log = proxy.log.lock().unwrap();
    assert!(log.refused.is_empty(), "{log:?}");
    let ws_port = mock.ws_port();
    assert!(
        log.connects
            .iter()
            .any(|t| t.ends_with(&format!(":{ws_port}"))),
        "the WebSocket did not go through the proxy: {log:?}"
    );
    for path in ["/@seller/live", "/webcast/room/info/", "/webcast/rooms/"] {
        assert!(
            log.gets.iter().any(|g| g.contains(path)),
            "{path} did not go through the proxy: {log:?}"
        );
    }
    assert!(mock.finished().violations.is_empty());
}

#[test]
fn proxy_refusal_is_a_clear_network_error() {
    let mock = Mock::start(Scenario::default());
    let proxy = start_proxy("shop:right");
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = watch(&mock, dir.path(), "seller", &["--max-retries", "1"]);
    cmd.env_remove("NO_PROXY")
        .env("TIKLIVE_PROXY", format!("http://shop:wrong@{}", proxy.addr));
    let out = run(cmd);
    assert_eq!(out.code(), Some(5), "{out}");
    assert!(!out.stderr.contains("wrong@"), "{out}");
    assert!(!proxy.log.lock().unwrap().refused.is_empty());
}

#[test]
fn logged_in_session_sends_session_cookies_everywhere_and_never_prints_them() {
    let session = "5e55104-feedc0ffee";
    let (scenario, chat) = short_live(Scenario::default().session(session, "eu-ttp2"));
    let mock = Mock::start(scenario);
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = watch(&mock, dir.path(), "seller", &["-v"]);
    cmd.env("TIKLIVE_SESSION_ID", session)
        .env("TIKLIVE_TT_TARGET_IDC", "eu-ttp2");
    let out = run(cmd);
    assert_eq!(out.code(), Some(0), "{out}");
    chat_line(&out, chat);
    assert!(
        !out.stdout.contains(session) && !out.stderr.contains(session),
        "the session id was printed\n{out}"
    );
    let state = mock.finished();
    assert!(state.violations.is_empty(), "{:#?}", state.violations);
    assert_eq!(
        state.signings[0].cookie_header.as_deref(),
        Some(format!("sessionid={session}; tt-target-idc=eu-ttp2").as_str())
    );
    let ws = state.conns[0].request.as_ref().unwrap();
    let cookie = ws.header("cookie").unwrap();
    assert!(cookie.contains(&format!("sid_tt={session}")), "{cookie}");
}

/// Starts `watch` on a live that waits, and returns once the first chat line is out.
fn started(
    mock: &Mock,
    dir: &std::path::Path,
    stdin: std::process::Stdio,
) -> (std::process::Child, BufReader<std::process::ChildStdout>) {
    let mut child = watch(mock, dir, "seller", &[])
        .stdin(stdin)
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let deadline = std::time::Instant::now() + RUN_LIMIT;
    let mut line = String::new();
    while std::time::Instant::now() < deadline {
        line.clear();
        if stdout.read_line(&mut line).unwrap_or(0) == 0 {
            break;
        }
        if line.contains("\"type\":\"chat\"") {
            return (child, stdout);
        }
    }
    let _ = child.kill();
    let out = finish(child);
    panic!("no chat line in time (last {line:?})\n{out}");
}

fn signal_ends_with(signal: i32, code: i32) {
    let (scenario, _) = paused_live();
    let mock = Mock::start(scenario);
    let dir = tempfile::tempdir().unwrap();
    let (child, mut stdout) = started(&mock, dir.path(), std::process::Stdio::null());
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(child.id() as i32, signal) }, 0);
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    let out = finish(child);
    assert_eq!(out.code(), Some(code), "{out}\n{rest}");
    let last: Value = serde_json::from_str(rest.lines().last().expect("a last line")).unwrap();
    assert_eq!(last["type"], "connection");
    assert_eq!(last["state"], "disconnected");
    assert_eq!(last["reason"], "interrupted");
    assert_eq!(last["room_id"], ROOM_ID.to_string());
    mock.release();
}

#[test]
fn ctrl_c_exits_130_after_a_last_line() {
    signal_ends_with(libc::SIGINT, 130);
}

#[test]
fn sigterm_exits_143_after_a_last_line() {
    signal_ends_with(libc::SIGTERM, 143);
}

#[test]
fn failure_after_lookup_names_the_room_on_the_last_line() {
    let mock = Mock::start(Scenario::default().rate_limited());
    let dir = tempfile::tempdir().unwrap();
    let out = run(watch(&mock, dir.path(), "seller", &[]));
    assert_eq!(out.code(), Some(4), "{out}");
    let last = out.events().pop().unwrap();
    assert_eq!(last["state"], "disconnected");
    assert_eq!(last["room_id"], ROOM_ID.to_string());
}

#[test]
fn dotenv_is_read_but_the_environment_and_flags_win() {
    let (scenario, chat) = short_live(Scenario::default());
    let mock = Mock::start(scenario);
    let dir = tempfile::tempdir().unwrap();
    // .env points the sign URL at a dead port, the environment overrides it with the mock; .env's
    // filter applies (nothing overrides it); .env's blank values count as unset.
    std::fs::write(
        dir.path().join(".env"),
        "TIKLIVE_SIGN_URL=http://127.0.0.1:9\nTIKLIVE_FILTER=chat\nTIKLIVE_RECORD=\nTIKLIVE_CLAIM_PATTERN=\n",
    )
    .unwrap();
    let out = run(watch(&mock, dir.path(), "seller", &[]));
    assert_eq!(out.code(), Some(0), "{out}");
    let events = out.events();
    assert!(events.iter().all(|e| e["type"] == "chat"), "{out}");
    assert_eq!(chat_line(&out, chat)["claim"]["item"], "A1");
    // A flag beats both.
    let (scenario, _) = short_live(Scenario::default());
    let mock = Mock::start(scenario);
    let out = run(watch(
        &mock,
        dir.path(),
        "seller",
        &["--filter", "connection"],
    ));
    assert_eq!(out.code(), Some(0), "{out}");
    assert!(
        out.events().iter().all(|e| e["type"] == "connection"),
        "{out}"
    );
}

#[test]
fn incomplete_signing_answers_are_errors_retried_then_exit_5() {
    for (mode, needle) in [
        (SignMode::NoCookie, "without cookies (x-set-tt-cookie)"),
        (SignMode::NoCursor, "without a cursor"),
    ] {
        let mock = Mock::start(Scenario::default().sign_answers(vec![mode]));
        let dir = tempfile::tempdir().unwrap();
        let out = run(watch(&mock, dir.path(), "seller", &["--max-retries", "1"]));
        assert_eq!(out.code(), Some(5), "{out}");
        assert!(out.stderr.contains(needle), "{out}");
        let state = mock.finished();
        assert_eq!(state.signings.len(), 2, "one retry");
        assert!(
            state.conns.is_empty(),
            "no socket without a complete signature"
        );
    }
}

#[test]
fn closing_stdin_pipe_ends_the_run_with_exit_0() {
    let (scenario, _) = paused_live();
    let mock = Mock::start(scenario);
    let dir = tempfile::tempdir().unwrap();
    let (mut child, mut stdout) = started(&mock, dir.path(), std::process::Stdio::piped());
    drop(child.stdin.take());
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    let out = finish(child);
    assert_eq!(out.code(), Some(0), "{out}\n{rest}");
    let last: Value = serde_json::from_str(rest.lines().last().expect("a last line")).unwrap();
    assert_eq!(last["state"], "disconnected");
    assert_eq!(last["reason"], "stdin was closed");
    mock.release();
}
