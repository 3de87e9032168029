//! `tiklive login` and `tiklive logout` as a user runs them, against a strict mock of TikTok's Login
//! Kit (tests/support/oauth.rs), with the test acting as the browser that follows the printed URL:
//! success, refused consent, a forged state, a replayed code, refresh before expiry, a revoked
//! refresh token, concurrent refreshes, and no token or client secret in anything printed.

mod support;

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;
use support::oauth::*;
use support::{Output, RUN_LIMIT, default_db, finish, run, tiklive};

/// `tiklive ARGS` with the app's credentials and both base URLs pointed at the mock, full trace logs
/// (so the secret scan sees everything tiklive could log), and no display.
fn cmd(dir: &Path, mock: &OAuthMock, args: &[&str]) -> Command {
    let mut cmd = tiklive(dir);
    for name in [
        "TIKTOK_CLIENT_KEY",
        "TIKTOK_CLIENT_SECRET",
        "TIKTOK_REDIRECT_URI",
        "DISPLAY",
        "WAYLAND_DISPLAY",
    ] {
        cmd.env_remove(name);
    }
    cmd.env("TIKTOK_CLIENT_KEY", CLIENT_KEY)
        .env("TIKTOK_CLIENT_SECRET", CLIENT_SECRET)
        .env("TIKTOK_REDIRECT_URI", REDIRECT_ANY_PORT)
        .env("TIKLIVE_AUTH_URL", &mock.url)
        .env("TIKLIVE_OPEN_API_URL", &mock.url)
        .env("TIKLIVE_LOG", "trace")
        .args(args);
    cmd
}

/// Everything printed in one test (stdout, stderr, the pages the browser got), for the secret scan.
#[derive(Default)]
struct Transcript(Vec<String>);

impl Transcript {
    fn output(&mut self, out: Output) -> Output {
        self.0.push(out.stdout.clone());
        self.0.push(out.stderr.clone());
        out
    }

    /// A page tiklive's callback server showed (not TikTok's redirects, which carry the code).
    fn page(&mut self, page: BrowserResponse) -> BrowserResponse {
        self.0.push(page.body.clone());
        page
    }

    /// No code, token or client secret the mock handed out or knows appears in what tiklive printed
    /// or showed the browser.
    fn assert_no_secrets(&self, mock: &OAuthMock) {
        support::oauth::assert_no_secrets(mock, &self.0);
    }
}

/// A running `tiklive login`, its stderr read line by line.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
    stderr: std::thread::JoinHandle<String>,
    stdout: std::thread::JoinHandle<String>,
}

fn spawn(mut cmd: Command) -> Running {
    let mut child = cmd.spawn().expect("spawn tiklive");
    let (tx, lines) = mpsc::channel();
    let err = child.stderr.take().unwrap();
    let stderr = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            all.push_str(&line);
            all.push('\n');
            let _ = tx.send(line);
        }
        all
    });
    let mut out = child.stdout.take().unwrap();
    let stdout = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = out.read_to_string(&mut text);
        text
    });
    Running {
        child,
        lines,
        stderr,
        stdout,
    }
}

impl Running {
    /// The authorize URL, from the line of its own tiklive prints on stderr.
    fn authorize_url(&self, mock: &OAuthMock) -> String {
        let prefix = format!("{}/v2/auth/authorize/?", mock.url);
        loop {
            match self.lines.recv_timeout(RUN_LIMIT) {
                Ok(line) if line.starts_with(&prefix) => return line,
                Ok(_) => continue,
                Err(_) => panic!("tiklive printed no authorize URL"),
            }
        }
    }

    fn finish(self) -> Output {
        // The pipes are already taken, so `finish` only waits, with its time limit.
        let waited = finish(self.child);
        Output {
            status: waited.status,
            stdout: self.stdout.join().unwrap(),
            stderr: self.stderr.join().unwrap(),
        }
    }
}

/// Starts `tiklive login --no-browser EXTRA` and returns it with the authorize URL it printed.
fn start_login(dir: &Path, mock: &OAuthMock, extra: &[&str]) -> (Running, String) {
    let mut args = vec!["login", "--no-browser"];
    args.extend_from_slice(extra);
    let running = spawn(cmd(dir, mock, &args));
    let url = running.authorize_url(mock);
    (running, url)
}

/// The browser on TikTok's page: consent given (or refused), sent back to the redirect URI.
fn consent(url: &str) -> String {
    let page = browser_get(url);
    assert_eq!(
        page.status, 302,
        "TikTok's page did not send the browser back: {page:?}"
    );
    page.location.expect("a Location")
}

/// A full successful login; returns the callback URL the browser followed.
fn login_ok(t: &mut Transcript, dir: &Path, mock: &OAuthMock, extra: &[&str]) -> (Output, String) {
    let (running, url) = start_login(dir, mock, extra);
    let callback = consent(&url);
    let page = t.page(browser_get(&callback));
    let out = t.output(running.finish());
    assert_eq!(out.code(), Some(0), "{out}");
    assert_eq!(page.status, 200, "{page:?}");
    assert!(page.body.contains("Logged in"), "{page:?}");
    (out, callback)
}

fn with_param(url: &str, name: &str, value: &str) -> String {
    let (base, query) = url.split_once('?').unwrap();
    let query: Vec<String> = query
        .split('&')
        .map(|pair| {
            if pair.starts_with(&format!("{name}=")) {
                format!("{name}={value}")
            } else {
                pair.to_owned()
            }
        })
        .collect();
    format!("{base}?{}", query.join("&"))
}

fn account_row(dir: &Path) -> Option<(String, String, Option<String>)> {
    if !default_db(dir).exists() {
        return None;
    }
    let conn = rusqlite::Connection::open(default_db(dir)).unwrap();
    conn.query_row(
        "SELECT access_token, refresh_token, username FROM accounts",
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )
    .ok()
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn json_lines(out: &Output) -> Vec<Value> {
    out.stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}\n{out}")))
        .collect()
}

#[test]
fn login_stores_the_account_and_status_and_logout_use_it() {
    let mock = OAuthMock::start(Provider::default());
    let dir = tempfile::tempdir().unwrap();
    let mut t = Transcript::default();
    let (running, url) = start_login(dir.path(), &mock, &["--json"]);

    // The authorize request carries everything TikTok's desktop Login Kit needs.
    assert_eq!(url_param(&url, "client_key").as_deref(), Some(CLIENT_KEY));
    assert_eq!(
        url_param(&url, "scope").as_deref(),
        Some("user.info.basic,user.info.profile,video.publish")
    );
    assert_eq!(url_param(&url, "response_type").as_deref(), Some("code"));
    let redirect = url_param(&url, "redirect_uri").unwrap();
    assert!(redirect_matches(REDIRECT_ANY_PORT, &redirect), "{redirect}");
    let challenge = url_param(&url, "code_challenge").unwrap();
    assert!(
        challenge.len() == 64
            && challenge
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
        "{challenge}"
    );
    assert_eq!(
        url_param(&url, "code_challenge_method").as_deref(),
        Some("S256")
    );
    assert!(url_param(&url, "state").unwrap().len() >= 43);

    let callback = consent(&url);
    assert!(callback.starts_with(&redirect), "{callback}");
    assert!(
        callback.contains("%2A1%216431.u1"),
        "the code arrives percent-encoded: {callback}"
    );
    let page = t.page(browser_get(&callback));
    assert_eq!(page.status, 200, "{page:?}");
    assert!(page.body.contains("@shop.fr"), "{page:?}");
    let out = t.output(running.finish());
    assert_eq!(out.code(), Some(0), "{out}");

    let printed = json_lines(&out);
    assert_eq!(printed.len(), 1, "{out}");
    let account = &printed[0];
    assert_eq!(account["open_id"], OPEN_ID);
    assert_eq!(account["union_id"], UNION_ID);
    assert_eq!(account["username"], USERNAME);
    assert_eq!(account["display_name"], NICKNAME);
    assert_eq!(account["avatar_url"], AVATAR);
    assert_eq!(account["needs_login"], false);
    assert_eq!(account["creator"]["max_video_post_duration_sec"], 600);
    assert_eq!(account["creator"]["duet_disabled"], true);
    assert_eq!(account["creator"]["comment_disabled"], false);
    assert_eq!(
        account["creator"]["privacy_level_options"],
        serde_json::json!(["PUBLIC_TO_EVERYONE", "MUTUAL_FOLLOW_FRIENDS", "SELF_ONLY"])
    );
    assert!(account.get("access_token").is_none() && account.get("refresh_token").is_none());

    // Stored, with the tokens, in files only the owner can read.
    let (access, refresh, username) = account_row(dir.path()).expect("an account row");
    assert!(access.starts_with("act.") && refresh.starts_with("rft."));
    assert_eq!(username.as_deref(), Some(USERNAME));
    let db = default_db(dir.path());
    assert_eq!(mode(&db), 0o600);
    for suffix in ["-wal", "-shm"] {
        let side = db.with_file_name(format!("tiklive.db{suffix}"));
        if side.exists() {
            assert_eq!(mode(&side), 0o600, "{}", side.display());
        }
    }

    let status = t.output(run(cmd(
        dir.path(),
        &mock,
        &["login", "--status", "--json"],
    )));
    assert_eq!(status.code(), Some(0), "{status}");
    let listed = json_lines(&status);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["username"], USERNAME);
    assert_eq!(
        listed[0]["scopes"],
        serde_json::json!(["user.info.basic", "user.info.profile", "video.publish"])
    );
    let text = t.output(run(cmd(dir.path(), &mock, &["login", "--status"])));
    assert_eq!(text.code(), Some(0), "{text}");
    for needle in ["ACCOUNT", "@shop.fr", NICKNAME, OPEN_ID, "video.publish"] {
        assert!(text.stdout.contains(needle), "{needle}: {text}");
    }

    // A token far from expiry is used as it is: no refresh before the revoke.
    let out = t.output(run(cmd(
        dir.path(),
        &mock,
        &["logout", "@shop.fr", "--json"],
    )));
    assert_eq!(out.code(), Some(0), "{out}");
    let result = &json_lines(&out)[0];
    assert_eq!(
        (&result["revoked"], &result["deleted"]),
        (&Value::Bool(true), &Value::Bool(true))
    );
    assert_eq!(mock.state().grants(), ["authorization_code"]);
    assert_eq!(mock.state().count("/v2/oauth/revoke/"), 1);
    assert_eq!(mock.live_refresh_tokens(), 0, "revoked at TikTok");
    assert_eq!(account_row(dir.path()), None, "deleted here");
    let status = t.output(run(cmd(
        dir.path(),
        &mock,
        &["login", "--status", "--json"],
    )));
    assert_eq!((status.code(), status.stdout.as_str()), (Some(0), ""));

    mock.assert_no_violation();
    t.assert_no_secrets(&mock);
}

#[test]
fn refused_consent_exits_8_with_tiktoks_error_and_stores_nothing() {
    let mock = OAuthMock::start(Provider {
        deny: true,
        ..Provider::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let mut t = Transcript::default();
    let (running, url) = start_login(dir.path(), &mock, &[]);
    let callback = consent(&url);
    assert!(callback.contains("error=access_denied"), "{callback}");
    let page = t.page(browser_get(&callback));
    assert_eq!(page.status, 400);
    assert!(page.body.contains("access_denied"), "{page:?}");
    let out = t.output(running.finish());
    assert_eq!(out.code(), Some(8), "{out}");
    assert!(out.stderr.contains("error=access_denied"), "{out}");
    assert!(
        out.stderr
            .contains("The user denied the authorization request."),
        "{out}"
    );
    assert_eq!(out.stdout, "");
    assert_eq!(mock.state().count("/v2/oauth/token/"), 0);
    assert_eq!(account_row(dir.path()), None);
    mock.assert_no_violation();
    t.assert_no_secrets(&mock);
}

#[test]
fn a_callback_with_a_forged_state_is_refused_before_any_exchange() {
    let mock = OAuthMock::start(Provider::default());
    let dir = tempfile::tempdir().unwrap();
    let mut t = Transcript::default();
    let (running, url) = start_login(dir.path(), &mock, &[]);
    let callback = consent(&url);
    let forged = with_param(&callback, "state", "forged-by-someone-else");
    let page = t.page(browser_get(&forged));
    assert_eq!(page.status, 400, "{page:?}");
    let out = t.output(running.finish());
    assert_eq!(out.code(), Some(8), "{out}");
    assert!(out.stderr.contains("state"), "{out}");
    assert_eq!(
        mock.state().count("/v2/oauth/token/"),
        0,
        "the code was not spent"
    );
    assert_eq!(account_row(dir.path()), None);
    mock.assert_no_violation();
    t.assert_no_secrets(&mock);
}

#[test]
fn a_replayed_code_is_refused_even_in_an_http_200_answer() {
    let mock = OAuthMock::start(Provider::default());
    let dir = tempfile::tempdir().unwrap();
    let mut t = Transcript::default();
    let (_, first_callback) = login_ok(&mut t, dir.path(), &mock, &[]);
    let stored = account_row(dir.path()).unwrap();

    // A second login, whose callback carries the first one's code with the right state.
    let (running, url) = start_login(dir.path(), &mock, &[]);
    let state = url_param(&url, "state").unwrap();
    let redirect = url_param(&url, "redirect_uri").unwrap();
    let code = first_callback
        .split(['?', '&'])
        .find_map(|p| p.strip_prefix("code="))
        .unwrap();
    let replay = format!("{redirect}?code={code}&state={state}");
    let page = t.page(browser_get(&replay));
    assert_eq!(page.status, 400, "{page:?}");
    let out = t.output(running.finish());
    assert_eq!(out.code(), Some(8), "{out}");
    assert!(
        out.stderr
            .contains("invalid_grant: Authorization code is expired."),
        "{out}"
    );
    assert!(out.stderr.contains("log_id"), "{out}");
    let state_seen = mock.state();
    let rejected = state_seen
        .seen
        .iter()
        .find(|s| s.error.as_deref() == Some("invalid_grant"))
        .expect("the replay reached TikTok");
    assert_eq!(rejected.status, 200, "TikTok's error came with HTTP 200");
    drop(state_seen);
    assert_eq!(
        account_row(dir.path()),
        Some(stored),
        "the account is untouched"
    );
    mock.assert_no_violation();
    t.assert_no_secrets(&mock);
}

#[test]
fn an_access_token_about_to_expire_is_refreshed_before_use_and_rotation_is_kept() {
    // 60 s of validity is inside the default 5-minute refresh window.
    let mock = OAuthMock::start(Provider {
        access_ttl: 60,
        ..Provider::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let mut t = Transcript::default();
    login_ok(&mut t, dir.path(), &mock, &[]);
    let (_, first_refresh, _) = account_row(dir.path()).unwrap();

    // An explicit refresh rotates the refresh token; the old one is dead at TikTok.
    let out = t.output(run(cmd(
        dir.path(),
        &mock,
        &["login", "--refresh", "--json"],
    )));
    assert_eq!(out.code(), Some(0), "{out}");
    assert_eq!(json_lines(&out)[0]["username"], USERNAME);
    let (_, second_refresh, _) = account_row(dir.path()).unwrap();
    assert_ne!(first_refresh, second_refresh);
    assert_eq!(mock.live_refresh_tokens(), 1);

    // The access token has now expired at TikTok: logout refreshes before it revokes.
    mock.expire_access_tokens();
    let out = t.output(run(cmd(dir.path(), &mock, &["logout", "--json"])));
    assert_eq!(out.code(), Some(0), "{out}");
    assert_eq!(json_lines(&out)[0]["revoked"], true, "{out}");
    assert_eq!(
        mock.state().grants(),
        ["authorization_code", "refresh_token", "refresh_token"]
    );
    assert!(mock.state().token_errors().is_empty());
    mock.assert_no_violation();
    t.assert_no_secrets(&mock);
}

#[test]
fn a_revoked_refresh_token_asks_for_a_new_login() {
    let mock = OAuthMock::start(Provider::default());
    let dir = tempfile::tempdir().unwrap();
    let mut t = Transcript::default();
    login_ok(&mut t, dir.path(), &mock, &[]);
    mock.revoke_everything();
    let out = t.output(run(cmd(dir.path(), &mock, &["login", "--refresh"])));
    assert_eq!(out.code(), Some(8), "{out}");
    assert!(out.stderr.contains("run `tiklive login` again"), "{out}");
    assert!(out.stderr.contains("invalid_grant"), "{out}");
    // The account is still listed, and logout cleans it up even though TikTok refuses the revoke.
    let status = t.output(run(cmd(
        dir.path(),
        &mock,
        &["login", "--status", "--json"],
    )));
    assert_eq!(json_lines(&status).len(), 1);
    let out = t.output(run(cmd(dir.path(), &mock, &["logout", "--json"])));
    assert_eq!(out.code(), Some(0), "{out}");
    assert_eq!(json_lines(&out)[0]["revoked"], false);
    assert_eq!(account_row(dir.path()), None);
    mock.assert_no_violation();
    t.assert_no_secrets(&mock);
}

#[test]
fn concurrent_refreshes_never_spend_one_refresh_token_twice() {
    let mock = OAuthMock::start(Provider {
        refresh_delay: Duration::from_millis(300),
        ..Provider::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let mut t = Transcript::default();
    login_ok(&mut t, dir.path(), &mock, &[]);
    let children: Vec<Child> = (0..4)
        .map(|_| {
            cmd(dir.path(), &mock, &["login", "--refresh"])
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = t.output(finish(child));
        assert_eq!(out.code(), Some(0), "{out}");
    }
    let state = mock.state();
    assert!(state.token_errors().is_empty(), "{:?}", state.seen);
    assert_eq!(state.max_concurrent_refreshes, 1);
    assert!(
        state
            .grants()
            .iter()
            .filter(|g| *g == "refresh_token")
            .count()
            >= 1
    );
    drop(state);
    assert_eq!(mock.live_refresh_tokens(), 1);
    mock.assert_no_violation();
    t.assert_no_secrets(&mock);
}

#[test]
fn an_exact_redirect_uri_and_an_unticked_scope() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let registered = format!("http://127.0.0.1:{port}/callback/");
    let mock = OAuthMock::start(Provider {
        redirect_uri: registered.clone(),
        untick: vec!["video.publish".into()],
        ..Provider::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let mut t = Transcript::default();
    let (running, url) = {
        let mut c = cmd(dir.path(), &mock, &["login", "--no-browser"]);
        c.env("TIKTOK_REDIRECT_URI", &registered);
        let running = spawn(c);
        let url = running.authorize_url(&mock);
        (running, url)
    };
    assert_eq!(
        url_param(&url, "redirect_uri").as_deref(),
        Some(registered.as_str())
    );
    let callback = consent(&url);
    t.page(browser_get(&callback));
    let out = t.output(running.finish());
    assert_eq!(out.code(), Some(0), "{out}");
    // A scope left out is a note, not a failure; creator info needs it.
    assert!(out.stderr.contains("did not grant video.publish"), "{out}");
    assert!(
        out.stdout.contains("account: @shop.fr (La Boutique)"),
        "{out}"
    );
    assert!(!out.stdout.contains("privacy options"), "{out}");
    assert_eq!(
        mock.state().count("/v2/post/publish/creator_info/query/"),
        0
    );
    mock.assert_no_violation();
    t.assert_no_secrets(&mock);
}

#[test]
fn usage_errors_missing_accounts_and_a_browser_that_never_comes_back() {
    let mock = OAuthMock::start(Provider::default());
    let dir = tempfile::tempdir().unwrap();
    let mut t = Transcript::default();

    let mut no_key = cmd(dir.path(), &mock, &["login", "--no-browser"]);
    no_key.env_remove("TIKTOK_CLIENT_KEY");
    let out = t.output(run(no_key));
    assert_eq!(out.code(), Some(2), "{out}");
    assert!(out.stderr.contains("TIKTOK_CLIENT_KEY"), "{out}");

    let out = t.output(run(cmd(dir.path(), &mock, &["login", "@shop"])));
    assert_eq!(out.code(), Some(2), "{out}");

    let mut bad_uri = cmd(dir.path(), &mock, &["login", "--no-browser"]);
    bad_uri.env("TIKTOK_REDIRECT_URI", "https://shop.example/callback/");
    let out = t.output(run(bad_uri));
    assert_eq!(out.code(), Some(2), "{out}");

    for args in [
        &["logout"][..],
        &["login", "--refresh"],
        &["login", "--status", "@nobody"],
    ] {
        let out = t.output(run(cmd(dir.path(), &mock, args)));
        assert_eq!(out.code(), Some(7), "{args:?}: {out}");
        assert!(out.stderr.contains("tiklive login"), "{args:?}: {out}");
    }

    let out = t.output(run(cmd(
        dir.path(),
        &mock,
        &["login", "--no-browser", "--timeout", "1s"],
    )));
    assert_eq!(out.code(), Some(8), "{out}");
    assert!(out.stderr.contains("must be registered exactly"), "{out}");
    assert!(
        out.stderr.contains("/v2/auth/authorize/?"),
        "the URL was printed: {out}"
    );
    assert_eq!(mock.state().seen.len(), 0);
    t.assert_no_secrets(&mock);
}

#[test]
fn no_token_or_secret_in_any_output_of_a_whole_lifecycle() {
    // Every path that handles tokens, with full trace logging, text and JSON; then a scan.
    let mock = OAuthMock::start(Provider {
        access_ttl: 60,
        ..Provider::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let mut t = Transcript::default();
    login_ok(&mut t, dir.path(), &mock, &["-vv"]);
    login_ok(&mut t, dir.path(), &mock, &["--json"]);
    for args in [
        &["login", "--status"][..],
        &["login", "--status", "--json"],
        &["login", "--refresh", "-vv"],
        &["login", "--refresh", "--json"],
    ] {
        let out = t.output(run(cmd(dir.path(), &mock, args)));
        assert_eq!(out.code(), Some(0), "{args:?}: {out}");
    }
    let (access, refresh, _) = account_row(dir.path()).unwrap();
    assert!(mock.state().secrets.contains(&access) && mock.state().secrets.contains(&refresh));
    mock.revoke_everything();
    let out = t.output(run(cmd(dir.path(), &mock, &["login", "--refresh", "-vv"])));
    assert_eq!(out.code(), Some(8), "{out}");
    let out = t.output(run(cmd(dir.path(), &mock, &["logout", "-vv"])));
    assert_eq!(out.code(), Some(0), "{out}");
    assert!(
        t.0.iter().map(String::len).sum::<usize>() > 1000,
        "logs were collected"
    );
    t.assert_no_secrets(&mock);
}

#[test]
fn the_port_flag_replaces_a_wildcard_port_and_a_busy_port_exits_5() {
    let mock = OAuthMock::start(Provider::default());
    let dir = tempfile::tempdir().unwrap();
    let mut t = Transcript::default();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    let (running, url) = start_login(dir.path(), &mock, &["--port", &port]);
    assert_eq!(
        url_param(&url, "redirect_uri"),
        Some(format!("http://127.0.0.1:{port}/callback/"))
    );
    let callback = consent(&url);
    t.page(browser_get(&callback));
    let out = t.output(running.finish());
    assert_eq!(out.code(), Some(0), "{out}");

    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_port = busy.local_addr().unwrap().port().to_string();
    let out = t.output(run(cmd(
        dir.path(),
        &mock,
        &["login", "--no-browser", "--port", &busy_port],
    )));
    assert_eq!(out.code(), Some(5), "{out}");
    assert!(out.stderr.contains(&format!("port {busy_port}")), "{out}");
    mock.assert_no_violation();
    t.assert_no_secrets(&mock);
}
