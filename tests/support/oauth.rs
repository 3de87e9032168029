//! A strict loopback stand-in for TikTok's Login Kit and Open API (OAUTH.md §1–§5): the authorize page,
//! the token endpoint (code and refresh grants, form-encoded only), revoke, user info and creator info.
//! It checks what TikTok checks (client key and secret, the exact redirect URI, the PKCE verifier
//! against the hex challenge, single-use codes, scopes, bearer tokens), answers errors the way TikTok
//! does (some with HTTP 200), rotates refresh tokens, and wraps the v2 API in its envelope. Anything a
//! client does that TikTok would refuse is also recorded as a violation; tests assert there are none.
//! It also acts as the browser: [`browser_get`] follows what `tiklive login` prints.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream as StdStream;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;

use super::http::{Request, parse_query, percent_decode, read_request, respond};

pub const CLIENT_KEY: &str = "awtestclientkey42";
pub const CLIENT_SECRET: &str = "Zq8-cLiEnT-sEcReT-never-printed-7f3a";
/// A desktop app's redirect URI with the wildcard port (OAUTH.md §1.2).
pub const REDIRECT_ANY_PORT: &str = "http://127.0.0.1:*/callback/";
pub const OPEN_ID: &str = "-000OpenIdOfShop42";
pub const UNION_ID: &str = "union-shop-42";
pub const USERNAME: &str = "shop.fr";
pub const NICKNAME: &str = "La Boutique";
pub const AVATAR: &str = "https://p16.example/avatar-shop.jpeg";

/// How the provider behaves for one test.
#[derive(Debug, Clone)]
pub struct Provider {
    /// The redirect URI registered for the app (`*` as port: any port).
    pub redirect_uri: String,
    /// Scopes the app may ask for.
    pub app_scopes: Vec<String>,
    /// The user refuses consent: the callback carries `error=access_denied`.
    pub deny: bool,
    /// The user unticks these scopes on the consent page.
    pub untick: Vec<String>,
    /// `expires_in` of access tokens, seconds.
    pub access_ttl: i64,
    /// `refresh_expires_in`, seconds.
    pub refresh_ttl: i64,
    /// How long the token endpoint takes to answer a refresh (widens race windows).
    pub refresh_delay: Duration,
}

impl Default for Provider {
    fn default() -> Self {
        Provider {
            redirect_uri: REDIRECT_ANY_PORT.into(),
            app_scopes: ["user.info.basic", "user.info.profile", "video.publish"]
                .map(String::from)
                .to_vec(),
            deny: false,
            untick: Vec::new(),
            access_ttl: 86_400,
            refresh_ttl: 31_536_000,
            refresh_delay: Duration::from_millis(0),
        }
    }
}

#[derive(Debug, Clone)]
struct Code {
    challenge: String,
    redirect_uri: String,
    scopes: Vec<String>,
    used: bool,
}

#[derive(Debug, Clone)]
struct Access {
    scopes: Vec<String>,
    expires: Instant,
    revoked: bool,
}

#[derive(Debug, Clone)]
struct Refresh {
    scopes: Vec<String>,
    access: String,
    valid: bool,
}

/// One request the provider received, without its secrets.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    /// `grant_type` of token requests.
    pub grant: Option<String>,
    pub status: u16,
    /// The OAuth or envelope error answered, if any.
    pub error: Option<String>,
}

#[derive(Debug, Default)]
pub struct ProviderState {
    codes: HashMap<String, Code>,
    access: HashMap<String, Access>,
    refresh: HashMap<String, Refresh>,
    pub seen: Vec<Seen>,
    pub violations: Vec<String>,
    /// Every code and token handed out, and the client secret: what must never be printed.
    pub secrets: Vec<String>,
    /// Refresh requests being answered right now, and the most ever at once.
    refreshing: usize,
    pub max_concurrent_refreshes: usize,
    next: u64,
}

impl ProviderState {
    fn token(&mut self, prefix: &str) -> String {
        self.next += 1;
        let token = format!("{prefix}{:016x}{:08x}", fastrand::u64(..), self.next as u32);
        self.secrets.push(token.clone());
        token
    }

    fn log_id(&mut self) -> String {
        self.next += 1;
        format!("20240101000000{:06}", self.next)
    }

    pub fn grants(&self) -> Vec<String> {
        self.seen.iter().filter_map(|s| s.grant.clone()).collect()
    }

    pub fn count(&self, path: &str) -> usize {
        self.seen.iter().filter(|s| s.path == path).count()
    }

    /// Answers to token requests that carried an error.
    pub fn token_errors(&self) -> Vec<String> {
        self.seen
            .iter()
            .filter(|s| s.path == "/v2/oauth/token/")
            .filter_map(|s| s.error.clone())
            .collect()
    }
}

struct Shared {
    provider: Provider,
    state: Mutex<ProviderState>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, ProviderState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The running provider; dropping it stops it.
pub struct OAuthMock {
    shared: Arc<Shared>,
    /// Base URL for both `TIKLIVE_AUTH_URL` and `TIKLIVE_OPEN_API_URL`.
    pub url: String,
    runtime: Option<Runtime>,
}

impl Drop for OAuthMock {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Fails if any code, token or client secret the mock handed out or knows appears in `texts` (what
/// tiklive printed, answered or showed a browser), whole or by its random core.
pub fn assert_no_secrets<'a>(mock: &OAuthMock, texts: impl IntoIterator<Item = &'a String>) {
    let secrets = mock.state().secrets.clone();
    assert!(secrets.contains(&CLIENT_SECRET.to_owned()));
    for text in texts {
        for secret in &secrets {
            // The random part too, in case a prefix was cut or encoded.
            let core = secret.get(4..16).unwrap_or(secret);
            assert!(
                !text.contains(secret.as_str()) && !text.contains(core),
                "a secret ({}…) was printed:\n{text}",
                &secret[..4]
            );
        }
    }
}

impl OAuthMock {
    pub fn start(provider: Provider) -> OAuthMock {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("provider runtime");
        let listener = runtime
            .block_on(TcpListener::bind("127.0.0.1:0"))
            .expect("bind a loopback port");
        let url = format!("http://{}", listener.local_addr().unwrap());
        let shared = Arc::new(Shared {
            provider,
            state: Mutex::new(ProviderState {
                secrets: vec![CLIENT_SECRET.to_owned()],
                ..Default::default()
            }),
        });
        let serving = shared.clone();
        runtime.spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(serving.clone(), stream));
            }
        });
        OAuthMock {
            shared,
            url,
            runtime: Some(runtime),
        }
    }

    pub fn state(&self) -> MutexGuard<'_, ProviderState> {
        self.shared.lock()
    }

    /// Every access token handed out so far expires now.
    pub fn expire_access_tokens(&self) {
        let mut state = self.shared.lock();
        let now = Instant::now();
        for access in state.access.values_mut() {
            access.expires = now;
        }
    }

    /// The user removed the app in TikTok's settings: every token stops working.
    pub fn revoke_everything(&self) {
        let mut state = self.shared.lock();
        for refresh in state.refresh.values_mut() {
            refresh.valid = false;
        }
        for access in state.access.values_mut() {
            access.revoked = true;
        }
    }

    /// The refresh tokens currently valid.
    pub fn live_refresh_tokens(&self) -> usize {
        self.shared
            .lock()
            .refresh
            .values()
            .filter(|r| r.valid)
            .count()
    }

    pub fn assert_no_violation(&self) {
        let state = self.shared.lock();
        assert!(
            state.violations.is_empty(),
            "the client did what TikTok refuses: {:#?}",
            state.violations
        );
    }
}

type Answer = (u16, Vec<(&'static str, String)>, Vec<u8>);

fn json_answer(status: u16, value: Value) -> Answer {
    (
        status,
        vec![("Content-Type", "application/json".into())],
        value.to_string().into_bytes(),
    )
}

/// The body after the head, `Content-Length` bytes of it.
async fn read_body(stream: &mut TcpStream, request: &Request) -> std::io::Result<Vec<u8>> {
    let length: usize = request
        .header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = request.tail.clone();
    let mut chunk = [0u8; 4096];
    while body.len() < length {
        let n = tokio::time::timeout(Duration::from_secs(20), stream.read(&mut chunk))
            .await
            .map_err(|_| std::io::Error::other("body not received within 20 s"))??;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(length);
    Ok(body)
}

async fn serve(shared: Arc<Shared>, mut stream: TcpStream) {
    let request = match read_request(&mut stream).await {
        Ok(Some(r)) => r,
        _ => return,
    };
    let body = match read_body(&mut stream, &request).await {
        Ok(body) => body,
        Err(e) => {
            shared
                .lock()
                .violations
                .push(format!("unreadable body: {e}"));
            return;
        }
    };
    let (status, headers, answer, grant) = match request.path.as_str() {
        "/v2/auth/authorize/" => {
            let (s, h, b) = authorize(&shared, &request);
            (s, h, b, None)
        }
        "/v2/oauth/token/" => token(&shared, &request, &body).await,
        "/v2/oauth/revoke/" => {
            let (s, h, b) = revoke(&shared, &request, &body);
            (s, h, b, None)
        }
        "/v2/user/info/" => {
            let (s, h, b) = user_info(&shared, &request, &body);
            (s, h, b, None)
        }
        "/v2/post/publish/creator_info/query/" => {
            let (s, h, b) = creator_info(&shared, &request);
            (s, h, b, None)
        }
        other => {
            shared.lock().violations.push(format!(
                "{} {other}: no such TikTok endpoint",
                request.method
            ));
            (404, Vec::new(), b"Not Found".to_vec(), None)
        }
    };
    let error = serde_json::from_slice::<Value>(&answer)
        .ok()
        .and_then(|v| match v.get("error") {
            Some(Value::String(code)) => Some(code.clone()),
            Some(Value::Object(e)) => e
                .get("code")
                .and_then(Value::as_str)
                .filter(|c| *c != "ok")
                .map(str::to_owned),
            _ => None,
        });
    shared.lock().seen.push(Seen {
        method: request.method.clone(),
        path: request.path.clone(),
        grant,
        status,
        error,
    });
    let _ = respond(&mut stream, status, &headers, &answer).await;
}

/// TikTok's page for a request it will not send back ("We couldn't log in with TikTok").
fn error_page(shared: &Shared, param: &str, why: String) -> Answer {
    shared
        .lock()
        .violations
        .push(format!("authorize: {param}: {why}"));
    (
        200,
        vec![("Content-Type", "text/html".into())],
        format!("<html>We couldn't log in with TikTok. Correct the following: {param}</html>")
            .into_bytes(),
    )
}

/// Whether `uri` matches the registered one, where a registered `*` port matches any port.
pub fn redirect_matches(registered: &str, uri: &str) -> bool {
    match registered.split_once(":*") {
        None => registered == uri,
        Some((before, after)) => uri
            .strip_prefix(before)
            .and_then(|rest| rest.strip_prefix(':'))
            .and_then(|rest| {
                let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
                (digits > 0).then(|| &rest[digits..])
            })
            .is_some_and(|rest| rest == after),
    }
}

fn encode(value: &str) -> String {
    let mut out = String::new();
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn authorize(shared: &Shared, request: &Request) -> Answer {
    let provider = &shared.provider;
    if request.method != "GET" {
        return error_page(shared, "method", request.method.clone());
    }
    for (name, _) in &request.query {
        if request.query.iter().filter(|(n, _)| n == name).count() > 1 {
            return error_page(shared, name, "repeated".into());
        }
    }
    let param = |name: &str| request.param(name).unwrap_or("").to_owned();
    if request.param("client_id").is_some() {
        return error_page(
            shared,
            "client_key",
            "client_id is not TikTok's name".into(),
        );
    }
    if param("client_key") != CLIENT_KEY {
        return error_page(shared, "client_key", param("client_key"));
    }
    if param("response_type") != "code" {
        return error_page(shared, "response_type", param("response_type"));
    }
    let scope = param("scope");
    if scope.is_empty() || scope.contains(' ') {
        return error_page(
            shared,
            "scope",
            format!("{scope:?}: comma-separated, no spaces"),
        );
    }
    let scopes: Vec<String> = scope.split(',').map(str::to_owned).collect();
    if let Some(bad) = scopes.iter().find(|s| !provider.app_scopes.contains(s)) {
        return error_page(shared, "scope", format!("{bad} is not a scope of the app"));
    }
    let redirect_uri = param("redirect_uri");
    if !redirect_matches(&provider.redirect_uri, &redirect_uri) {
        return error_page(
            shared,
            "redirect_uri",
            format!("{redirect_uri:?} is not {:?}", provider.redirect_uri),
        );
    }
    let state = param("state");
    if state.is_empty() {
        return error_page(shared, "state", "missing".into());
    }
    let challenge = param("code_challenge");
    if challenge.len() != 64
        || !challenge
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return error_page(
            shared,
            "code_challenge",
            format!("{challenge:?} is not the hex SHA-256 a desktop app sends"),
        );
    }
    if param("code_challenge_method") != "S256" {
        return error_page(
            shared,
            "code_challenge_method",
            param("code_challenge_method"),
        );
    }
    let location = if provider.deny {
        format!(
            "{redirect_uri}?error=access_denied&error_description={}&state={}",
            encode("The user denied the authorization request."),
            encode(&state)
        )
    } else {
        let granted: Vec<String> = scopes
            .into_iter()
            .filter(|s| !provider.untick.contains(s))
            .collect();
        let mut st = shared.lock();
        // Real codes carry `*` and `!`, which arrive percent-encoded (OAUTH.md §1.3).
        let code = format!("{}*1!6431.u1", st.token("c0de"));
        st.codes.insert(
            code.clone(),
            Code {
                challenge,
                redirect_uri: redirect_uri.clone(),
                scopes: granted.clone(),
                used: false,
            },
        );
        format!(
            "{redirect_uri}?code={}&scopes={}&state={}",
            encode(&code),
            encode(&granted.join(",")),
            encode(&state)
        )
    };
    (302, vec![("Location", location)], Vec::new())
}

fn oauth_error(shared: &Shared, status: u16, code: &str, description: &str) -> Answer {
    let log_id = shared.lock().log_id();
    json_answer(
        status,
        json!({"error": code, "error_description": description, "log_id": log_id}),
    )
}

/// The form of a POST to the OAuth endpoints, after the checks every one of them makes.
fn oauth_form(
    shared: &Shared,
    request: &Request,
    body: &[u8],
) -> Result<HashMap<String, String>, Answer> {
    let violation = |text: String| shared.lock().violations.push(text);
    if request.method != "POST" {
        violation(format!("{} {}: POST only", request.method, request.path));
        return Err(oauth_error(
            shared,
            405,
            "invalid_request",
            "Method not allowed.",
        ));
    }
    let content_type = request.header("content-type").unwrap_or("");
    if content_type.split(';').next().map(str::trim) != Some("application/x-www-form-urlencoded") {
        violation(format!("{}: Content-Type {content_type:?}", request.path));
        return Err(oauth_error(
            shared,
            400,
            "invalid_request",
            "The request parameters are malformed.",
        ));
    }
    if request.header("authorization").is_some() {
        violation(format!(
            "{}: an Authorization header (TikTok takes the credentials in the body)",
            request.path
        ));
    }
    if !request.query.is_empty() {
        violation(format!("{}: parameters in the query string", request.path));
    }
    let text = String::from_utf8_lossy(body);
    let pairs = parse_query(&text);
    let mut form = HashMap::new();
    for (k, v) in pairs {
        if form.insert(k.clone(), v).is_some() {
            violation(format!("{}: {k} sent twice", request.path));
        }
    }
    if form.contains_key("client_id") {
        violation(format!("{}: client_id instead of client_key", request.path));
    }
    if form.get("client_key").map(String::as_str) != Some(CLIENT_KEY) {
        violation(format!("{}: wrong client_key", request.path));
        return Err(oauth_error(
            shared,
            401,
            "invalid_client",
            "Client key or secret is incorrect.",
        ));
    }
    match form.get("client_secret").map(String::as_str) {
        None | Some("") => {
            violation(format!("{}: no client_secret", request.path));
            return Err(oauth_error(
                shared,
                400,
                "invalid_request",
                "Client secret is missed in request.",
            ));
        }
        Some(CLIENT_SECRET) => {}
        Some(_) => {
            violation(format!("{}: wrong client_secret", request.path));
            return Err(oauth_error(
                shared,
                401,
                "invalid_client",
                "Client key or secret is incorrect.",
            ));
        }
    }
    Ok(form)
}

fn issue(shared: &Shared, scopes: Vec<String>) -> Answer {
    let provider = &shared.provider;
    let mut st = shared.lock();
    let access = st.token("act.");
    let refresh = st.token("rft.");
    st.access.insert(
        access.clone(),
        Access {
            scopes: scopes.clone(),
            expires: Instant::now() + Duration::from_secs(provider.access_ttl.max(0) as u64),
            revoked: false,
        },
    );
    st.refresh.insert(
        refresh.clone(),
        Refresh {
            scopes: scopes.clone(),
            access: access.clone(),
            valid: true,
        },
    );
    drop(st);
    json_answer(
        200,
        json!({
            "access_token": access,
            "expires_in": provider.access_ttl,
            "open_id": OPEN_ID,
            "refresh_expires_in": provider.refresh_ttl,
            "refresh_token": refresh,
            "scope": scopes.join(","),
            "token_type": "Bearer",
        }),
    )
}

async fn token(
    shared: &Arc<Shared>,
    request: &Request,
    body: &[u8],
) -> (u16, Vec<(&'static str, String)>, Vec<u8>, Option<String>) {
    let form = match oauth_form(shared, request, body) {
        Ok(form) => form,
        Err((s, h, b)) => return (s, h, b, None),
    };
    let grant = form.get("grant_type").cloned();
    let (s, h, b) = match grant.as_deref() {
        Some("authorization_code") => exchange(shared, &form),
        Some("refresh_token") => {
            {
                let mut st = shared.lock();
                st.refreshing += 1;
                st.max_concurrent_refreshes = st.max_concurrent_refreshes.max(st.refreshing);
            }
            tokio::time::sleep(shared.provider.refresh_delay).await;
            let answer = refresh(shared, &form);
            shared.lock().refreshing -= 1;
            answer
        }
        _ => oauth_error(
            shared,
            400,
            "unsupported_grant_type",
            "The grant type is not supported.",
        ),
    };
    (s, h, b, grant)
}

fn exchange(shared: &Shared, form: &HashMap<String, String>) -> Answer {
    let field = |name: &str| form.get(name).map(String::as_str).unwrap_or("");
    let code = field("code");
    if code.is_empty() {
        shared.lock().violations.push("token: no code".into());
        return oauth_error(
            shared,
            400,
            "invalid_request",
            "The request parameters are malformed.",
        );
    }
    let entry = {
        let mut st = shared.lock();
        match st.codes.get_mut(code) {
            Some(entry) if !entry.used => {
                entry.used = true;
                Some(entry.clone())
            }
            _ => None,
        }
    };
    // Unknown and already-used codes get TikTok's answer with HTTP 200 (OAUTH.md §3.4).
    let Some(entry) = entry else {
        return oauth_error(
            shared,
            200,
            "invalid_grant",
            "Authorization code is expired.",
        );
    };
    if field("redirect_uri") != entry.redirect_uri {
        shared.lock().violations.push(format!(
            "token: redirect_uri {:?} differs from the authorize request's {:?}",
            field("redirect_uri"),
            entry.redirect_uri
        ));
        return oauth_error(
            shared,
            400,
            "invalid_request",
            "Redirect_uri is not matched with the uri when requesting code.",
        );
    }
    let verifier = field("code_verifier");
    let digest = ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes());
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    let verifier_ok = (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
    if !verifier_ok || hex != entry.challenge {
        shared
            .lock()
            .violations
            .push("token: the code_verifier does not match the challenge".into());
        return oauth_error(
            shared,
            400,
            "invalid_request",
            "Code verifier or code challenge is invalid.",
        );
    }
    issue(shared, entry.scopes)
}

fn refresh(shared: &Shared, form: &HashMap<String, String>) -> Answer {
    let token = form.get("refresh_token").cloned().unwrap_or_default();
    let entry = {
        let mut st = shared.lock();
        match st.refresh.get_mut(&token) {
            Some(entry) if entry.valid => {
                // Rotation: the refresh token sent, and its access token, stop working.
                entry.valid = false;
                let entry = entry.clone();
                if let Some(access) = st.access.get_mut(&entry.access) {
                    access.revoked = true;
                }
                Some(entry)
            }
            _ => None,
        }
    };
    match entry {
        Some(entry) => issue(shared, entry.scopes),
        None => oauth_error(
            shared,
            400,
            "invalid_grant",
            "Refresh token is invalid or expired.",
        ),
    }
}

fn revoke(shared: &Shared, request: &Request, body: &[u8]) -> Answer {
    let form = match oauth_form(shared, request, body) {
        Ok(form) => form,
        Err(answer) => return answer,
    };
    let token = form.get("token").cloned().unwrap_or_default();
    let mut st = shared.lock();
    let now = Instant::now();
    let valid = st
        .access
        .get(&token)
        .is_some_and(|a| !a.revoked && a.expires > now);
    if !valid {
        drop(st);
        return oauth_error(
            shared,
            200,
            "invalid_request",
            "The access token is invalid or expired.",
        );
    }
    if let Some(access) = st.access.get_mut(&token) {
        access.revoked = true;
    }
    for refresh in st.refresh.values_mut().filter(|r| r.access == token) {
        refresh.valid = false;
    }
    drop(st);
    json_answer(200, json!({}))
}

fn envelope(shared: &Shared, status: u16, code: &str, message: &str, data: Value) -> Answer {
    let log_id = shared.lock().log_id();
    json_answer(
        status,
        json!({"data": data, "error": {"code": code, "message": message, "log_id": log_id}}),
    )
}

/// The scopes of a valid bearer token, or TikTok's 401.
fn bearer(shared: &Shared, request: &Request) -> Result<Vec<String>, Answer> {
    let token = request
        .header("authorization")
        .and_then(|h| h.strip_prefix("Bearer "))
        .unwrap_or("");
    let st = shared.lock();
    match st.access.get(token) {
        Some(a) if !a.revoked && a.expires > Instant::now() => Ok(a.scopes.clone()),
        _ => {
            drop(st);
            Err(envelope(
                shared,
                401,
                "access_token_invalid",
                "The access token is invalid or not found in the request.",
                json!({}),
            ))
        }
    }
}

fn user_info(shared: &Shared, request: &Request, body: &[u8]) -> Answer {
    if request.method != "GET" {
        shared
            .lock()
            .violations
            .push(format!("user info: {}", request.method));
        return envelope(shared, 405, "invalid_params", "GET only", json!({}));
    }
    if !body.is_empty() {
        shared
            .lock()
            .violations
            .push("user info: a GET with a body".into());
    }
    let scopes = match bearer(shared, request) {
        Ok(scopes) => scopes,
        Err(answer) => return answer,
    };
    let Some(fields) = request.param("fields").filter(|f| !f.is_empty()) else {
        shared.lock().violations.push("user info: no fields".into());
        return envelope(
            shared,
            400,
            "invalid_params",
            "fields is required",
            json!({}),
        );
    };
    let mut user = serde_json::Map::new();
    for field in fields.split(',') {
        let (scope, value) = match field {
            "open_id" => ("user.info.basic", json!(OPEN_ID)),
            "union_id" => ("user.info.basic", json!(UNION_ID)),
            "avatar_url" => ("user.info.basic", json!(AVATAR)),
            "display_name" => ("user.info.basic", json!(NICKNAME)),
            "username" => ("user.info.profile", json!(USERNAME)),
            other => {
                shared
                    .lock()
                    .violations
                    .push(format!("user info: unknown field {other}"));
                return envelope(shared, 400, "invalid_params", "unknown field", json!({}));
            }
        };
        if !scopes.iter().any(|s| s == scope) {
            shared
                .lock()
                .violations
                .push(format!("user info: {field} without {scope}"));
            return envelope(
                shared,
                400,
                "scope_permission_missed",
                "The user did not authorize the scope required for some fields.",
                json!({}),
            );
        }
        user.insert(field.to_owned(), value);
    }
    envelope(shared, 200, "ok", "", json!({"user": user}))
}

fn creator_info(shared: &Shared, request: &Request) -> Answer {
    if request.method != "POST" {
        shared
            .lock()
            .violations
            .push(format!("creator info: {}", request.method));
        return envelope(shared, 405, "invalid_params", "POST only", json!({}));
    }
    let content_type = request.header("content-type").unwrap_or("");
    if !content_type.starts_with("application/json") {
        shared
            .lock()
            .violations
            .push(format!("creator info: Content-Type {content_type:?}"));
    }
    let scopes = match bearer(shared, request) {
        Ok(scopes) => scopes,
        Err(answer) => return answer,
    };
    if !scopes.iter().any(|s| s == "video.publish") {
        return envelope(
            shared,
            401,
            "scope_not_authorized",
            "The user did not authorize the scope required for completing this request.",
            json!({}),
        );
    }
    envelope(
        shared,
        200,
        "ok",
        "",
        json!({
            "creator_avatar_url": "https://p16.example/creator-shop.jpeg",
            "creator_username": USERNAME,
            "creator_nickname": NICKNAME,
            "privacy_level_options": ["PUBLIC_TO_EVERYONE", "MUTUAL_FOLLOW_FRIENDS", "SELF_ONLY"],
            "comment_disabled": false,
            "duet_disabled": true,
            "stitch_disabled": false,
            "max_video_post_duration_sec": 600,
        }),
    )
}

/// What the browser got.
#[derive(Debug)]
pub struct BrowserResponse {
    pub status: u16,
    pub location: Option<String>,
    pub body: String,
}

/// A GET of an `http://127.0.0.1:port/...` URL, as a browser sends it, without following redirects.
pub fn browser_get(url: &str) -> BrowserResponse {
    let rest = url.strip_prefix("http://").expect("an http:// URL");
    let (authority, target) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let target = if target.is_empty() { "/" } else { target };
    let mut stream = StdStream::connect(authority).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "GET {target} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: Mozilla/5.0 (test browser)\r\n\
         Accept: text/html\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let location = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("location")
            .then(|| v.trim().to_owned())
    });
    BrowserResponse {
        status,
        location,
        body: body.to_owned(),
    }
}

/// The value of `name` in a URL's query, decoded.
pub fn url_param(url: &str, name: &str) -> Option<String> {
    let query = url.split_once('?')?.1;
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (percent_decode(k) == name).then(|| percent_decode(v))
    })
}
