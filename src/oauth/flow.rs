//! What logging in, refreshing and logging out do, end to end, independent of who drives them: the
//! command line (`tiklive login`, through `loopback`) or a web server (`serve`, from its routes). Every
//! function is async and `Send`, so it runs on a multi-thread tokio runtime; database work goes to
//! tokio's blocking pool.
//!
//! A web flow, for a server:
//! 1. `GET /login`: make a browser binding with [`new_browser_binding`], set it as an HttpOnly,
//!    Secure, SameSite=Lax cookie, call [`PendingLogins::begin`] with it, answer 302 to
//!    [`Authorization::url`].
//! 2. `GET <redirect path>`: [`Callback::from_query`] on the raw query string, then
//!    [`complete_login`] with the cookie's value; it checks `state` (single use, 10 minutes, same
//!    browser), exchanges the code, fetches user and creator info and stores the account.
//! 3. Before any call that needs a token: [`refresh_if_expiring`] (or [`valid_account`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use super::accounts::{self, Account, RefreshClaim};
use super::client::{CreatorInfo, OAuthClient, TokenSet, UserInfo};
use super::pkce::{self, constant_time_eq};
use super::{OAuthError, SCOPE_VIDEO_PUBLISH, Secret};
use crate::events::now_ms;
use crate::store::Store;

/// A login started and not finished yet: what [`PendingLogins::take`] hands back for a valid `state`.
#[derive(Debug)]
pub struct PendingLogin {
    pub code_verifier: Secret,
    /// The redirect URI of the authorize request, which the token request must repeat exactly.
    pub redirect_uri: String,
    pub started: Instant,
}

struct Entry {
    state: String,
    binding: String,
    login: PendingLogin,
}

/// Where to send the browser, and the `state` that will come back.
#[derive(Debug, Clone)]
pub struct Authorization {
    pub url: String,
    pub state: String,
}

/// The logins in progress of one process: each `state` is random (256 bits), single use, valid for
/// [`PendingLogins::DEFAULT_TTL`], kept with its PKCE verifier and bound to the browser that started
/// it. Share one (e.g. in an `Arc`) between a server's routes.
pub struct PendingLogins {
    entries: Mutex<Vec<Entry>>,
    ttl: Duration,
}

impl Default for PendingLogins {
    fn default() -> Self {
        PendingLogins::new()
    }
}

impl std::fmt::Debug for PendingLogins {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingLogins")
            .field("pending", &self.lock().len())
            .field("ttl", &self.ttl)
            .finish()
    }
}

/// A random value to bind a login to a browser (an HttpOnly cookie's value, for a server).
pub fn new_browser_binding() -> Result<String, OAuthError> {
    pkce::random_token()
}

impl PendingLogins {
    pub const DEFAULT_TTL: Duration = Duration::from_secs(10 * 60);
    /// Beyond this many logins in progress, the oldest are forgotten (a flood cannot grow memory).
    pub const MAX_PENDING: usize = 1024;

    pub fn new() -> PendingLogins {
        PendingLogins::with_ttl(PendingLogins::DEFAULT_TTL)
    }

    pub fn with_ttl(ttl: Duration) -> PendingLogins {
        PendingLogins {
            entries: Mutex::new(Vec::new()),
            ttl,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts a login with the client's configured redirect URI. `binding` is the value of the
    /// browser's cookie (see [`new_browser_binding`]); the callback must come with the same value.
    pub fn begin(&self, client: &OAuthClient, binding: &str) -> Result<Authorization, OAuthError> {
        self.begin_with_redirect(client, &client.config().redirect_uri, binding)
    }

    /// [`begin`](Self::begin) with another redirect URI (the loopback flow knows its port late).
    pub fn begin_with_redirect(
        &self,
        client: &OAuthClient,
        redirect_uri: &str,
        binding: &str,
    ) -> Result<Authorization, OAuthError> {
        let state = pkce::random_token()?;
        let verifier = pkce::new_verifier()?;
        let challenge = pkce::challenge(&verifier, client.config().challenge);
        let url = client.authorize_url_for(redirect_uri, &state, &challenge);
        let mut entries = self.lock();
        let ttl = self.ttl;
        entries.retain(|e| e.login.started.elapsed() < ttl);
        if entries.len() >= Self::MAX_PENDING {
            let excess = entries.len() + 1 - Self::MAX_PENDING;
            entries.drain(..excess);
        }
        entries.push(Entry {
            state: state.clone(),
            binding: binding.to_owned(),
            login: PendingLogin {
                code_verifier: Secret::new(verifier),
                redirect_uri: redirect_uri.to_owned(),
                started: Instant::now(),
            },
        });
        Ok(Authorization { url, state })
    }

    /// Takes the login `state` belongs to. It is gone afterwards, whatever the outcome: a state is
    /// never accepted twice. Fails when the state is unknown, already used, expired, or was started
    /// with another `binding`.
    pub fn take(&self, state: &str, binding: &str) -> Result<PendingLogin, OAuthError> {
        let mut entries = self.lock();
        // Compared in constant time, each one: no timing says how much of a state was right.
        let at = entries
            .iter()
            .position(|e| constant_time_eq(e.state.as_bytes(), state.as_bytes()));
        let Some(at) = at else {
            return Err(OAuthError::State(
                "the login callback's state is unknown or was already used: start the login again"
                    .into(),
            ));
        };
        let entry = entries.remove(at);
        if entry.login.started.elapsed() >= self.ttl {
            return Err(OAuthError::State(format!(
                "the login expired (more than {} minutes passed): start it again",
                self.ttl.as_secs() / 60
            )));
        }
        if !constant_time_eq(entry.binding.as_bytes(), binding.as_bytes()) {
            return Err(OAuthError::State(
                "the login callback came from another browser than the one that started it".into(),
            ));
        }
        Ok(entry.login)
    }

    /// Logins in progress (expired ones included until the next `begin`).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The query of a redirect back from TikTok, percent-decoded once (OAUTH.md §1.3). `Debug` redacts the
/// code.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Callback {
    pub code: Option<Secret>,
    pub state: Option<String>,
    /// The scopes granted, as TikTok lists them in the callback.
    pub scopes: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
}

impl Callback {
    /// Parses `a=b&c=d` (without the `?`), decoding `%XX` and `+` exactly once.
    pub fn from_query(query: &str) -> Callback {
        let mut callback = Callback::default();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = form_decode(value);
            match form_decode(key).as_str() {
                "code" => callback.code = Some(Secret::new(value)),
                "state" => callback.state = Some(value),
                "scopes" => callback.scopes = Some(value),
                "error" => callback.error = Some(value),
                "error_description" => callback.error_description = Some(value),
                _ => {}
            }
        }
        callback
    }
}

/// `application/x-www-form-urlencoded` decoding: `+` is a space, `%XX` a byte; a malformed escape is
/// kept as it is.
pub(crate) fn form_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(hi), Some(lo)) => {
                    out.push((hi * 16 + lo) as u8);
                    i += 3;
                }
                _ => {
                    out.push(b'%');
                    i += 1;
                }
            },
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A finished login: the stored account, and what the user should know (scopes not granted, creator
/// info not available).
#[derive(Debug, Clone)]
pub struct Login {
    pub account: Account,
    pub notes: Vec<String>,
}

/// Finishes a login from TikTok's redirect: checks `state` against `pending` (and `binding`, the
/// browser's cookie value; the command line passes the empty string it began with), reports an
/// `error` the callback carries, exchanges the code with the PKCE verifier, fetches user info and
/// (with `video.publish`) creator info, and stores the account in the database at `db`, as
/// `tiklive login` does. A scope that was not granted is a note, not a failure.
pub async fn complete_login(
    client: &OAuthClient,
    db: &Path,
    pending: &PendingLogins,
    callback: &Callback,
    binding: &str,
) -> Result<Login, OAuthError> {
    if let Some(error) = &callback.error {
        // The state is spent either way; a wrong one does not hide TikTok's error.
        if let Some(state) = &callback.state {
            let _ = pending.take(state, binding);
        }
        return Err(OAuthError::Denied {
            error: error.clone(),
            description: callback.error_description.clone(),
        });
    }
    let Some(state) = callback.state.as_deref().filter(|s| !s.is_empty()) else {
        return Err(OAuthError::State(
            "the login callback has no state: it did not come from the login tiklive started"
                .into(),
        ));
    };
    let login = pending.take(state, binding)?;
    let Some(code) = callback.code.as_ref().filter(|c| !c.is_empty()) else {
        return Err(OAuthError::Protocol {
            context: "login callback".into(),
            message: "neither a code nor an error".into(),
        });
    };
    let tokens = client
        .exchange_code(code.expose(), &login.code_verifier, &login.redirect_uri)
        .await?;
    finish_login(client, db, tokens).await
}

/// After the exchange: profile, creator info, storage.
async fn finish_login(
    client: &OAuthClient,
    db: &Path,
    tokens: TokenSet,
) -> Result<Login, OAuthError> {
    let mut notes = Vec::new();
    let missing: Vec<&str> = client
        .config()
        .scopes
        .iter()
        .filter(|s| !tokens.scopes.contains(s))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() && !tokens.scopes.is_empty() {
        notes.push(format!(
            "TikTok did not grant {} (granted: {})",
            missing.join(", "),
            tokens.scopes.join(", ")
        ));
    }
    let user = match client.user_info(&tokens.access_token, &tokens.scopes).await {
        Ok(user) => user,
        Err(e) => {
            notes.push(format!("no profile: {e}"));
            UserInfo::default()
        }
    };
    if user
        .open_id
        .as_deref()
        .is_some_and(|id| id != tokens.open_id)
    {
        return Err(OAuthError::Protocol {
            context: "user info".into(),
            message: "the open_id differs from the token's".into(),
        });
    }
    let creator = if tokens.scopes.iter().any(|s| s == SCOPE_VIDEO_PUBLISH) {
        match client.creator_info(&tokens.access_token).await {
            Ok(info) => Some(info),
            Err(e) => {
                notes.push(format!("no creator info: {e}"));
                None
            }
        }
    } else {
        notes.push(format!(
            "no creator info: it needs the {SCOPE_VIDEO_PUBLISH} scope, which this login does not have"
        ));
        None
    };
    let account = Account::from_login(&tokens, &user, creator, now_ms());
    let stored = account.clone();
    with_store(db, move |store| accounts::save(store.conn(), &stored)).await?;
    Ok(Login { account, notes })
}

/// The account `spec` names (`@handle`, handle or open id; `None`: the only one).
pub async fn find_account(db: &Path, spec: Option<&str>) -> Result<Account, OAuthError> {
    let spec = spec.map(str::to_owned);
    with_store(db, move |store| {
        accounts::find(store.conn(), spec.as_deref())
    })
    .await
}

/// Every stored account.
pub async fn list_accounts(db: &Path) -> Result<Vec<Account>, OAuthError> {
    with_store(db, |store| accounts::list(store.conn())).await
}

/// The account `spec` names, with an access token valid for at least the configured
/// `refresh_before`: what a command that calls TikTok on the user's behalf starts with.
pub async fn valid_account(
    client: &OAuthClient,
    db: &Path,
    spec: Option<&str>,
) -> Result<Account, OAuthError> {
    let account = find_account(db, spec).await?;
    refresh_if_expiring(client, db, &account.open_id).await
}

/// The account with tokens that do not expire within `refresh_before`: refreshed first if they do.
/// Two refreshes of one account never run at once: within the process (a lock per account) nor across
/// processes (a lease taken in a write transaction). The rotated refresh token is stored before this
/// returns, even if the caller's future is dropped meanwhile.
pub async fn refresh_if_expiring(
    client: &OAuthClient,
    db: &Path,
    open_id: &str,
) -> Result<Account, OAuthError> {
    refresh(client, db, open_id, false).await
}

/// Refreshes now (`tiklive login --refresh`), unless another refresh of the account finished while
/// this one waited for it.
pub async fn refresh_now(
    client: &OAuthClient,
    db: &Path,
    open_id: &str,
) -> Result<Account, OAuthError> {
    refresh(client, db, open_id, true).await
}

/// The lock of one (database, account) pair.
type RefreshLock = Arc<tokio::sync::Mutex<()>>;

/// One lock per (database, account) in this process.
static REFRESH_LOCKS: LazyLock<Mutex<HashMap<(PathBuf, String), RefreshLock>>> =
    LazyLock::new(Default::default);

fn refresh_lock(db: &Path, open_id: &str) -> RefreshLock {
    let mut locks = REFRESH_LOCKS.lock().unwrap_or_else(|e| e.into_inner());
    locks
        .entry((db.to_owned(), open_id.to_owned()))
        .or_default()
        .clone()
}

async fn refresh(
    client: &OAuthClient,
    db: &Path,
    open_id: &str,
    force: bool,
) -> Result<Account, OAuthError> {
    // Runs as a task of its own: once TikTok has rotated the refresh token, nothing (not even the
    // caller giving up) may stop the new one from being stored.
    let (client, db, open_id) = (client.clone(), db.to_owned(), open_id.to_owned());
    let task = tokio::spawn(async move { refresh_task(&client, &db, &open_id, force).await });
    task.await.map_err(|e| OAuthError::Protocol {
        context: "refresh".into(),
        message: e.to_string(),
    })?
}

async fn refresh_task(
    client: &OAuthClient,
    db: &Path,
    open_id: &str,
    force: bool,
) -> Result<Account, OAuthError> {
    let lock = refresh_lock(db, open_id);
    let asked = now_ms();
    let _guard = lock.lock().await;
    let config = client.config();
    let before_ms = config.refresh_before.as_millis().min(i64::MAX as u128) as i64;
    // Long enough for one refresh request; a process that died holding it delays others this long.
    let lease_ms = (config.http_timeout.as_millis() as i64).saturating_mul(2) + 5_000;
    let account = loop {
        let id = open_id.to_owned();
        let claim = with_store(db, move |store| {
            accounts::claim_refresh(
                store.conn_mut(),
                &id,
                now_ms(),
                before_ms,
                force.then_some(asked),
                lease_ms,
            )
        })
        .await?;
        match claim {
            RefreshClaim::Fresh(account) => return Ok(account),
            RefreshClaim::Claimed(account) => break account,
            RefreshClaim::Busy => {
                tracing::debug!("another process is refreshing this account; waiting");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    let release = |db: &Path| {
        let id = open_id.to_owned();
        let db = db.to_owned();
        async move {
            with_store(&db, move |store| {
                accounts::release_refresh(store.conn(), &id)
            })
            .await
        }
    };
    if account.refresh_expires_at <= now_ms() {
        release(db).await?;
        return Err(needs_login(&account, "its refresh token has expired"));
    }
    tracing::debug!(account = %account.label(), "refreshing the access token");
    match client.refresh(&account.refresh_token).await {
        Ok(tokens) => {
            if tokens.open_id != account.open_id {
                release(db).await?;
                return Err(OAuthError::Protocol {
                    context: "refresh".into(),
                    message: "TikTok returned tokens of another open_id".into(),
                });
            }
            let id = open_id.to_owned();
            let now = now_ms();
            let account = with_store(db, move |store| {
                accounts::store_refreshed(store.conn(), &id, &tokens, now)?;
                accounts::get(store.conn(), &id)
            })
            .await?;
            account.ok_or_else(|| {
                OAuthError::NoAccount(format!(
                    "the account {open_id} was logged out during the refresh"
                ))
            })
        }
        Err(OAuthError::Refused { error, .. }) if error.needs_login() => {
            release(db).await?;
            Err(needs_login(
                &account,
                &format!("TikTok no longer accepts its refresh token ({error})"),
            ))
        }
        Err(e) => {
            release(db).await?;
            Err(e)
        }
    }
}

fn needs_login(account: &Account, why: &str) -> OAuthError {
    OAuthError::NeedsLogin(format!(
        "the login of {} is no longer valid: {why}; run `tiklive login` again",
        account.label()
    ))
}

/// What [`logout`] did.
#[derive(Debug, Clone)]
pub struct LogoutOutcome {
    pub account: Account,
    /// True when TikTok confirmed the revocation.
    pub revoked: bool,
    /// Why it was not revoked, when it was not.
    pub note: Option<String>,
}

/// Revokes the account's authorisation at TikTok (refreshing a token about to expire first) and
/// deletes the account from the database. A token TikTok no longer accepts is deleted anyway; when
/// TikTok cannot be reached, nothing is deleted and the error is returned. Without a client
/// (`--local-only`), it only deletes.
pub async fn logout(
    client: Option<&OAuthClient>,
    db: &Path,
    open_id: &str,
) -> Result<LogoutOutcome, OAuthError> {
    let id = open_id.to_owned();
    let Some(mut account) = with_store(db, move |store| accounts::get(store.conn(), &id)).await?
    else {
        return Err(OAuthError::NoAccount(format!(
            "the account {open_id} is not logged in"
        )));
    };
    let mut revoked = false;
    let mut note = None;
    if let Some(client) = client {
        match refresh_if_expiring(client, db, open_id).await {
            Ok(fresh) => account = fresh,
            Err(e @ OAuthError::NeedsLogin(_)) => note = Some(e.to_string()),
            Err(e) => return Err(e),
        }
        if note.is_none() {
            match client.revoke(&account.access_token).await {
                Ok(()) => revoked = true,
                Err(e @ OAuthError::Refused { .. }) => note = Some(e.to_string()),
                Err(e) => return Err(e),
            }
        }
    } else {
        note = Some("not revoked at TikTok (--local-only)".into());
    }
    let id = open_id.to_owned();
    with_store(db, move |store| accounts::delete(store.conn(), &id)).await?;
    Ok(LogoutOutcome {
        account,
        revoked,
        note,
    })
}

/// Runs `f` on a freshly opened [`Store`] on tokio's blocking pool.
async fn with_store<T, F>(db: &Path, f: F) -> Result<T, OAuthError>
where
    T: Send + 'static,
    F: FnOnce(&mut Store) -> Result<T, OAuthError> + Send + 'static,
{
    let path = db.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut store = Store::open(&path)?;
        f(&mut store)
    })
    .await
    .map_err(|e| OAuthError::Protocol {
        context: "database task".into(),
        message: e.to_string(),
    })?
}

/// Creator info is optional at login; this is what a later command uses to fetch it fresh.
pub async fn fresh_creator_info(
    client: &OAuthClient,
    db: &Path,
    open_id: &str,
) -> Result<CreatorInfo, OAuthError> {
    let account = refresh_if_expiring(client, db, open_id).await?;
    client.creator_info(&account.access_token).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oauth::{ChallengeEncoding, OAuthConfig};

    fn client() -> OAuthClient {
        OAuthClient::new(OAuthConfig {
            client_key: "key".into(),
            client_secret: Secret::new("secret"),
            redirect_uri: "https://shop.example/callback/".into(),
            scopes: vec!["user.info.basic".into()],
            auth_url: "https://auth.example".into(),
            open_api_url: "https://api.example".into(),
            challenge: ChallengeEncoding::Hex,
            http_timeout: Duration::from_secs(5),
            refresh_before: Duration::from_secs(300),
        })
        .unwrap()
    }

    fn param(url: &str, name: &str) -> String {
        let query = url.split_once('?').unwrap().1;
        query
            .split('&')
            .find_map(|p| p.strip_prefix(&format!("{name}=")))
            .map(form_decode)
            .unwrap()
    }

    #[test]
    fn the_authorize_url_has_every_parameter_tiktok_needs() {
        let pending = PendingLogins::new();
        let auth = pending.begin(&client(), "cookie").unwrap();
        assert!(
            auth.url
                .starts_with("https://auth.example/v2/auth/authorize/?client_key=key&"),
            "{}",
            auth.url
        );
        assert_eq!(param(&auth.url, "scope"), "user.info.basic");
        assert_eq!(param(&auth.url, "response_type"), "code");
        assert_eq!(
            param(&auth.url, "redirect_uri"),
            "https://shop.example/callback/"
        );
        assert!(
            auth.url
                .contains("redirect_uri=https%3A%2F%2Fshop.example%2Fcallback%2F")
        );
        assert_eq!(param(&auth.url, "state"), auth.state);
        assert_eq!(param(&auth.url, "code_challenge_method"), "S256");
        let challenge = param(&auth.url, "code_challenge");
        let login = pending.take(&auth.state, "cookie").unwrap();
        assert_eq!(
            challenge,
            pkce::challenge(login.code_verifier.expose(), ChallengeEncoding::Hex)
        );
        assert_eq!(challenge.len(), 64);
    }

    #[test]
    fn a_state_is_single_use_bound_to_its_browser_and_expires() {
        let client = client();
        let pending = PendingLogins::new();
        let auth = pending.begin(&client, "cookie-a").unwrap();
        assert!(pending.take(&auth.state, "cookie-a").is_ok());
        assert!(matches!(
            pending.take(&auth.state, "cookie-a"),
            Err(OAuthError::State(_))
        ));
        let auth = pending.begin(&client, "cookie-a").unwrap();
        let err = pending.take(&auth.state, "cookie-b").unwrap_err();
        assert!(err.to_string().contains("another browser"), "{err}");
        assert!(
            pending.take(&auth.state, "cookie-a").is_err(),
            "spent anyway"
        );
        assert!(pending.take("made-up", "cookie-a").is_err());

        let short = PendingLogins::with_ttl(Duration::from_millis(1));
        let auth = short.begin(&client, "").unwrap();
        std::thread::sleep(Duration::from_millis(5));
        let err = short.take(&auth.state, "").unwrap_err();
        assert!(err.to_string().contains("expired"), "{err}");
    }

    #[test]
    fn the_flows_can_run_on_a_multi_thread_runtime() {
        fn send<T: Send>(_: T) {}
        fn shared<T: Send + Sync>() {}
        let client = client();
        let pending = PendingLogins::new();
        let db = Path::new("unused.db");
        let callback = Callback::default();
        send(complete_login(&client, db, &pending, &callback, ""));
        send(refresh_if_expiring(&client, db, "open-1"));
        send(valid_account(&client, db, None));
        send(logout(Some(&client), db, "open-1"));
        shared::<PendingLogins>();
        shared::<OAuthClient>();
    }

    #[test]
    fn pending_logins_are_capped() {
        let client = client();
        let pending = PendingLogins::new();
        let first = pending.begin(&client, "").unwrap();
        for _ in 0..PendingLogins::MAX_PENDING {
            pending.begin(&client, "").unwrap();
        }
        assert_eq!(pending.len(), PendingLogins::MAX_PENDING);
        assert!(pending.take(&first.state, "").is_err(), "the oldest went");
    }

    #[test]
    fn the_callback_is_decoded_exactly_once() {
        let callback =
            Callback::from_query("code=abc%2A1%216431.u1%2525&state=s%2Bt+u&scopes=a%2Cb");
        assert_eq!(callback.code.unwrap().expose(), "abc*1!6431.u1%25");
        assert_eq!(callback.state.as_deref(), Some("s+t u"));
        assert_eq!(callback.scopes.as_deref(), Some("a,b"));
        let denied = Callback::from_query("error=access_denied&error_description=The+user+said+no");
        assert_eq!(denied.error.as_deref(), Some("access_denied"));
        assert_eq!(
            denied.error_description.as_deref(),
            Some("The user said no")
        );
        assert_eq!(form_decode("100%"), "100%");
        assert_eq!(form_decode("%zz%4"), "%zz%4");
    }

    #[tokio::test]
    async fn a_callback_with_an_error_or_a_bad_state_stores_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("t.db");
        let client = client();
        let pending = PendingLogins::new();
        let auth = pending.begin(&client, "").unwrap();
        let denied = Callback::from_query(&format!(
            "error=access_denied&error_description=no&state={}",
            auth.state
        ));
        let err = complete_login(&client, &db, &pending, &denied, "")
            .await
            .unwrap_err();
        assert!(matches!(err, OAuthError::Denied { .. }), "{err}");
        assert!(err.to_string().contains("access_denied"), "{err}");
        assert!(pending.is_empty(), "the state is spent");
        let wrong = Callback::from_query("code=c&state=forged");
        let err = complete_login(&client, &db, &pending, &wrong, "")
            .await
            .unwrap_err();
        assert!(matches!(err, OAuthError::State(_)), "{err}");
        assert!(list_accounts(&db).await.unwrap().is_empty());
    }
}
