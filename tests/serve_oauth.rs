//! "Connect TikTok" from the dashboard: the Login Kit web flow through `tiklive serve` over HTTPS
//! (a certificate from gen-cert), against the strict mock provider (tests/support/oauth.rs), with the
//! test acting as the browser: the cookie, TikTok's redirect, the callback, the accounts listing, a
//! forged, replayed or cookieless callback refused, and no token or client secret in anything the
//! server printed or answered.

mod support;

use std::path::Path;

use support::api::{Response, Server, http_request, serve_command};
use support::oauth::*;
use support::{Mock, Scenario, run, tiklive};

/// Everything the server answered, for the secret scan.
#[derive(Default)]
struct Transcript(Vec<String>);

impl Transcript {
    fn keep(&mut self, r: Response) -> Response {
        let mut text = r.body.clone();
        for (k, v) in &r.headers {
            // TikTok's redirect carries the code by design; the server's own answers must not.
            text.push_str(&format!("\n{k}: {v}"));
        }
        self.0.push(text);
        r
    }

    fn assert_no_secrets(&self, mock: &OAuthMock) {
        support::oauth::assert_no_secrets(mock, &self.0);
    }
}

fn get(server: &Server, path: &str, cookie: Option<&str>) -> Response {
    let mut headers = Vec::new();
    if let Some(cookie) = cookie {
        headers.push(("Cookie".to_owned(), cookie.to_owned()));
    }
    http_request(
        server.api,
        server.tls_root.as_deref(),
        "GET",
        path,
        &headers,
        None,
    )
    .unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

/// `name=value` of the server's Set-Cookie.
fn cookie_of(r: &Response) -> String {
    let set = r.header("set-cookie").expect("a Set-Cookie");
    for attribute in ["HttpOnly", "SameSite=Lax", "Secure", "Path=/"] {
        assert!(set.contains(attribute), "{attribute} missing: {set}");
    }
    set.split(';').next().unwrap().trim().to_owned()
}

/// GET /oauth, then TikTok's authorize page (the mock answers at once with the redirect back):
/// the cookie and the callback path+query on the server.
fn authorize(server: &Server, transcript: &mut Transcript, port: u16) -> (String, String) {
    let started = transcript.keep(get(server, "/oauth", None));
    assert_eq!(started.status, 302, "{}", started.body);
    let cookie = cookie_of(&started);
    let url = started.header("location").unwrap().to_owned();
    assert_eq!(url_param(&url, "client_key").as_deref(), Some(CLIENT_KEY));
    let back = browser_get(&url);
    assert_eq!(back.status, 302, "the mock refused: {}", back.body);
    let location = back.location.unwrap();
    let prefix = format!("https://localhost:{port}");
    let target = location
        .strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("not back to the server: {location}"))
        .to_owned();
    assert!(target.starts_with("/callback/?code="), "{target}");
    (cookie, target)
}

fn start(dir: &Path, mock: &OAuthMock, webcast: &Mock) -> (Server, u16) {
    let made = run({
        let mut cmd = tiklive(dir);
        cmd.args(["gen-cert", "--out-dir", "certs"]);
        cmd
    });
    assert_eq!(made.code(), Some(0), "{made}");
    let (mut cmd, port, ws_port) = serve_command(
        webcast,
        dir,
        &["--tls-cert", "certs/cert.pem", "--tls-key", "certs/key.pem"],
    );
    cmd.env("TIKTOK_CLIENT_KEY", CLIENT_KEY)
        .env("TIKTOK_CLIENT_SECRET", CLIENT_SECRET)
        .env(
            "TIKTOK_REDIRECT_URI",
            format!("https://localhost:{port}/callback/"),
        )
        .env("TIKLIVE_AUTH_URL", &mock.url)
        .env("TIKLIVE_OPEN_API_URL", &mock.url)
        .env("TIKLIVE_LOG", "trace");
    let server = Server {
        child: cmd.spawn().unwrap(),
        api: ([127, 0, 0, 1], port).into(),
        feed: ([127, 0, 0, 1], ws_port).into(),
        token: None,
        tls_root: Some(std::fs::read(dir.join("certs/cert.pem")).unwrap()),
    };
    server.wait_healthy();
    (server, port)
}

#[test]
fn connects_a_tiktok_account_from_the_dashboard_over_https() {
    let mock = OAuthMock::start(Provider {
        redirect_uri: "https://localhost:*/callback/".into(),
        ..Provider::default()
    });
    let webcast = Mock::start(Scenario::default());
    let dir = tempfile::tempdir().unwrap();
    let (mut server, port) = start(dir.path(), &mock, &webcast);
    let mut transcript = Transcript::default();

    // Nothing connected yet.
    let listed = transcript.keep(get(&server, "/accounts", None)).json();
    assert_eq!(listed["accounts"], serde_json::json!([]));
    assert_eq!(listed["oauth_configured"], true);

    // The whole flow, as a browser.
    let (cookie, target) = authorize(&server, &mut transcript, port);
    // Without the cookie: refused (and the state is spent).
    let cookieless = transcript.keep(get(&server, &target, None));
    assert_eq!(cookieless.status, 400, "{}", cookieless.body);
    assert_eq!(cookieless.json()["error"]["code"], "oauth_state");

    let (cookie2, target2) = authorize(&server, &mut transcript, port);
    // Another browser's cookie: refused.
    let wrong = transcript.keep(get(&server, &target2, Some(&cookie)));
    assert_eq!(wrong.status, 400, "{}", wrong.body);

    let (cookie3, target3) = authorize(&server, &mut transcript, port);
    assert_ne!(cookie2, cookie3);
    let done = transcript.keep(get(&server, &target3, Some(&cookie3)));
    assert_eq!(done.status, 302, "{}", done.body);
    assert_eq!(
        done.header("location"),
        Some(format!("/#connected=@{USERNAME}").as_str())
    );
    // Replayed: refused.
    let replayed = transcript.keep(get(&server, &target3, Some(&cookie3)));
    assert_eq!(replayed.status, 400, "{}", replayed.body);
    // A forged state: refused.
    let forged = target3.replace("state=", "state=x");
    let forged = transcript.keep(get(&server, &forged, Some(&cookie3)));
    assert_eq!(forged.status, 400, "{}", forged.body);

    // POST /webhook takes the form body.
    let (cookie4, target4) = authorize(&server, &mut transcript, port);
    let form = target4.split_once('?').unwrap().1;
    let posted = transcript.keep(
        http_request(
            server.api,
            server.tls_root.as_deref(),
            "POST",
            "/webhook",
            &[("Cookie".to_owned(), cookie4)],
            Some(form.as_bytes()),
        )
        .unwrap(),
    );
    assert_eq!(posted.status, 302, "{}", posted.body);

    let listed = transcript.keep(get(&server, "/accounts", None)).json();
    let accounts = listed["accounts"].as_array().unwrap();
    assert_eq!(accounts.len(), 1, "{listed}");
    let account = &accounts[0];
    assert_eq!(account["username"], USERNAME);
    assert_eq!(account["avatar_url"], AVATAR);
    assert!(
        account["scopes"].as_array().unwrap().len() == 3,
        "{account}"
    );
    assert!(account["access_expires_at"].is_string(), "{account}");
    let text = account.to_string();
    assert!(!text.contains("token\""), "{text}");

    // Unknown paths stay 404, not 405.
    assert_eq!(get(&server, "/no-such-page", None).status, 404);

    server.tls_root = None;
    let out = server.terminate();
    assert_eq!(out.code(), Some(0), "{out}");
    transcript.0.push(out.stdout.clone());
    transcript.0.push(out.stderr.clone());

    // Stored as `tiklive login` stores it.
    let status = run({
        let mut cmd = tiklive(dir.path());
        cmd.args(["login", "--status", "--json"]);
        cmd
    });
    assert_eq!(status.code(), Some(0), "{status}");
    assert!(status.stdout.contains(OPEN_ID), "{status}");
    transcript.0.push(status.stdout.clone());
    transcript.0.push(status.stderr.clone());

    transcript.assert_no_secrets(&mock);
    mock.assert_no_violation();
}

#[test]
fn without_a_client_key_the_routes_say_so_and_the_server_runs() {
    let webcast = Mock::start(Scenario::default());
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = serve_command(&webcast, dir.path(), &[]);
    cmd.0.env_remove("TIKTOK_CLIENT_KEY");
    let port = cmd.1;
    let server = Server {
        child: cmd.0.spawn().unwrap(),
        api: ([127, 0, 0, 1], port).into(),
        feed: ([127, 0, 0, 1], cmd.2).into(),
        token: None,
        tls_root: None,
    };
    server.wait_healthy();
    for path in ["/oauth", "/callback/?code=x&state=y", "/webhook"] {
        let r = server.get(path);
        assert_eq!(r.status, 503, "{path}: {}", r.body);
        assert_eq!(r.json()["error"]["code"], "oauth_not_configured");
    }
    let listed = server.get("/accounts").json();
    assert_eq!(listed["oauth_configured"], false);
    assert_eq!(listed["accounts"], serde_json::json!([]));
}
