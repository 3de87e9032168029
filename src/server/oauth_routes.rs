//! "Connect TikTok" from the dashboard: the Login Kit web flow on `serve`'s own routes.
//!
//! - `GET /oauth` sets an HttpOnly, SameSite=Lax cookie (Secure over HTTPS) holding a fresh browser
//!   binding, starts a login bound to it (random `state`, single use, 10 minutes) and answers 302 to
//!   TikTok's authorize page.
//! - `GET /callback`, `GET /webhook` and `POST /webhook` (form body or query) take TikTok's redirect:
//!   the `state` must be pending and the cookie must be the one that started it; the code is
//!   exchanged and the account stored exactly as `tiklive login` does, then 302 to
//!   `/#connected=@handle`. TikTok's `error` goes back to `/#oauth_error=...`.
//! - `GET /accounts` lists the stored accounts (no token), behind the API token like the other reads.
//!
//! `/oauth` and the callbacks take no bearer token (the browser follows TikTok's redirect and cannot
//! add a header); the state and the cookie protect them. No token, code or client secret is logged
//! or returned.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use serde_json::json;
use warp::filters::BoxedFilter;
use warp::http::{HeaderValue, StatusCode, header};
use warp::reply::Response;
use warp::{Filter, Rejection};

use super::AppState;
use super::api::{ApiError, MAX_BODY, error_response, json_response, reject};
use crate::events::now_ms;
use crate::oauth::{
    AccountSummary, Callback, OAuthClient, OAuthError, PendingLogins, complete_login,
    list_accounts, new_browser_binding,
};

/// The cookie binding a login to the browser that started it.
const COOKIE: &str = "tiklive_oauth";

/// The web flow's shared state: the app's client and the logins in progress.
pub(crate) struct OAuthWeb {
    client: OAuthClient,
    pending: PendingLogins,
    /// Whether the cookie gets `Secure` (the server speaks HTTPS).
    secure: bool,
}

impl OAuthWeb {
    pub(crate) fn new(client: OAuthClient, secure: bool) -> OAuthWeb {
        OAuthWeb {
            client,
            pending: PendingLogins::new(),
            secure,
        }
    }

    fn cookie(&self, value: &str, max_age: u64) -> String {
        let secure = if self.secure { "; Secure" } else { "" };
        format!("{COOKIE}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}")
    }
}

fn not_configured() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "oauth_not_configured",
        "connecting TikTok accounts is not configured on this server: set TIKTOK_CLIENT_KEY, \
         TIKTOK_CLIENT_SECRET and TIKTOK_REDIRECT_URI (this server's /callback/ URL, as registered \
         for the app) and restart `tiklive serve`",
    )
}

/// An OAuth failure as an API error; its message never holds a secret (see `oauth`).
fn api_error(err: &OAuthError) -> ApiError {
    let (status, code) = match err {
        OAuthError::Config(_) => (StatusCode::SERVICE_UNAVAILABLE, "oauth_not_configured"),
        OAuthError::State(_) => (StatusCode::BAD_REQUEST, "oauth_state"),
        OAuthError::Denied { .. } => (StatusCode::FORBIDDEN, "oauth_denied"),
        OAuthError::Refused { .. } | OAuthError::NeedsLogin(_) => {
            (StatusCode::BAD_GATEWAY, "tiktok_refused")
        }
        OAuthError::Network { .. } => (StatusCode::BAD_GATEWAY, "tiktok_unreachable"),
        OAuthError::Protocol { .. } => (StatusCode::BAD_GATEWAY, "tiktok_protocol"),
        OAuthError::Timeout(_) => (StatusCode::GATEWAY_TIMEOUT, "timeout"),
        OAuthError::NoAccount(_) => (StatusCode::NOT_FOUND, "not_found"),
        OAuthError::Store(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
    };
    if status.is_server_error() {
        tracing::warn!("TikTok login from the dashboard failed: {err}");
    } else {
        tracing::info!("TikTok login from the dashboard refused: {err}");
    }
    ApiError::new(status, code, err.to_string())
}

/// Percent-encodes everything but unreserved characters (for a URL fragment).
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'@') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A 302 to `location`, never cached, never leaking the URL it came from.
fn redirect(location: &str, cookie: Option<&str>) -> Response {
    let mut response = Response::new(Default::default());
    *response.status_mut() = StatusCode::FOUND;
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(location) {
        headers.insert(header::LOCATION, value);
    }
    if let Some(cookie) = cookie.and_then(|c| HeaderValue::from_str(c).ok()) {
        headers.insert(header::SET_COOKIE, cookie);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// `GET /oauth`: a new binding cookie and a 302 to TikTok. With an API token, the link carries it
/// (`/oauth?token=...`): otherwise anyone who reaches the server could add their account to it.
fn start(state: &AppState, query: &str) -> Result<Response, ApiError> {
    let token = super::api::query_param(query, "token");
    state.auth.check(None, token.as_deref())?;
    let web = state.oauth.as_ref().ok_or_else(not_configured)?;
    let binding = new_browser_binding().map_err(|e| api_error(&e))?;
    let authorization = web
        .pending
        .begin(&web.client, &binding)
        .map_err(|e| api_error(&e))?;
    let max_age = PendingLogins::DEFAULT_TTL.as_secs();
    Ok(redirect(
        &authorization.url,
        Some(web.cookie(&binding, max_age).as_str()),
    ))
}

/// The callbacks: check, exchange, store, and send the browser back to the dashboard.
async fn finish(state: Arc<AppState>, params: String, cookie: Option<String>) -> Response {
    let Some(web) = state.oauth.clone() else {
        return error_response(&not_configured());
    };
    let callback = Callback::from_query(&params);
    let binding = cookie.unwrap_or_default();
    let result = complete_login(
        &web.client,
        &state.db_path,
        &web.pending,
        &callback,
        &binding,
    )
    .await;
    // The binding has done its job, whatever the outcome.
    let clear = web.cookie("", 0);
    match result {
        Ok(login) => {
            for note in &login.notes {
                tracing::warn!("{note}");
            }
            let label = login.account.label();
            tracing::info!(account = %label, "TikTok account connected from the dashboard");
            let handle = match &login.account.username {
                Some(handle) => format!("@{handle}"),
                None => label,
            };
            redirect(
                &format!("/#connected={}", encode(&handle)),
                Some(clear.as_str()),
            )
        }
        Err(OAuthError::Denied { error, description }) => {
            let err = OAuthError::Denied { error, description };
            let message = api_error(&err).message;
            redirect(
                &format!("/#oauth_error={}", encode(&message)),
                Some(clear.as_str()),
            )
        }
        Err(OAuthError::State(_)) if binding.is_empty() => {
            let err = ApiError::new(
                StatusCode::BAD_REQUEST,
                "oauth_state",
                "the login cookie is missing: start again from the dashboard's \"Connect TikTok\" \
                 (GET /oauth) in this browser, with cookies allowed for this site",
            );
            tracing::info!("TikTok login from the dashboard refused: {}", err.message);
            error_response(&err)
        }
        Err(err) => {
            let mut response = error_response(&api_error(&err));
            if let Ok(value) = HeaderValue::from_str(&clear) {
                response.headers_mut().insert(header::SET_COOKIE, value);
            }
            response
        }
    }
}

/// `GET /accounts`: every stored account, without a secret.
async fn accounts(state: Arc<AppState>) -> Result<Response, Rejection> {
    let accounts = list_accounts(&state.db_path)
        .await
        .map_err(|e| reject(api_error(&e)))?;
    let now = now_ms();
    let summaries: Vec<AccountSummary> = accounts.iter().map(|a| a.summary(now)).collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "accounts": summaries,
            "oauth_configured": state.oauth.is_some(),
            "connect_url": state.oauth.as_ref().map(|_| "/oauth"),
        }),
    ))
}

/// The routes of the web flow; `auth` is the API token check.
pub(super) fn routes<S, A>(with_state: S, auth: A) -> BoxedFilter<(Response,)>
where
    S: Filter<Extract = (Arc<AppState>,), Error = Infallible> + Clone + Send + Sync + 'static,
    A: Filter<Extract = (), Error = Rejection> + Clone + Send + Sync + 'static,
{
    let query = || warp::query::raw().or(warp::any().map(String::new)).unify();
    let cookie = || warp::cookie::optional::<String>(COOKIE);

    let oauth = warp::path!("oauth")
        .and(warp::get())
        .and(with_state.clone())
        .and(query())
        .and_then(|state: Arc<AppState>, query: String| async move {
            start(&state, &query).map_err(reject)
        });
    let get_callback = warp::path!("callback")
        .or(warp::path!("webhook"))
        .unify()
        .and(warp::get())
        .and(with_state.clone())
        .and(query())
        .and(cookie())
        .then(finish);
    let post_callback = warp::path!("webhook")
        .and(warp::post())
        .and(with_state.clone())
        .and(query())
        .and(warp::body::content_length_limit(MAX_BODY))
        .and(warp::body::bytes())
        .and(cookie())
        .then(
            |state: Arc<AppState>, query: String, body: Bytes, cookie: Option<String>| {
                let body = String::from_utf8_lossy(&body);
                let params = match (query.is_empty(), body.trim().is_empty()) {
                    (_, true) => query,
                    (true, false) => body.trim().to_owned(),
                    (false, false) => format!("{query}&{}", body.trim()),
                };
                finish(state, params, cookie)
            },
        );
    let list = warp::path!("accounts")
        .and(warp::get())
        .and(auth)
        .and(with_state)
        .and_then(accounts);
    oauth
        .or(get_callback)
        .unify()
        .or(post_callback)
        .unify()
        .or(list)
        .unify()
        .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fragments_are_encoded() {
        assert_eq!(encode("@shop.fr"), "@shop.fr");
        assert_eq!(encode("a b&c#d"), "a%20b%26c%23d");
    }
}
