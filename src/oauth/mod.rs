//! TikTok Login Kit (OAuth 2.0, v2) for sellers' accounts: the configuration of an app, the secrets it
//! handles, the errors TikTok gives, and the flows built on them. `tiklive login`/`logout` drive them
//! from the command line; a web server (`serve`) can drive the same flows from its routes.
//!
//! The pieces, from the wire up:
//! - [`pkce`]: verifiers, challenges (hex, as TikTok's desktop Login Kit wants), `state` values.
//! - [`client`]: the HTTP calls to TikTok (token exchange, refresh, revoke, user info, creator info),
//!   which check the body for an error whatever the HTTP status.
//! - [`accounts`]: the `accounts` table: who is logged in, with which tokens and scopes.
//! - [`flow`]: what a login, a refresh and a logout do, end to end: [`PendingLogins`] (single-use
//!   `state` with its PKCE verifier), [`complete_login`], [`refresh_if_expiring`], [`logout`].
//! - [`loopback`]: the one-shot callback server of the desktop flow on `127.0.0.1`.
//!
//! Tokens and the client secret are [`Secret`]s: their `Debug` is redacted, they have no `Display`
//! and no `Serialize`, and no error message contains them.

pub mod accounts;
pub mod client;
pub mod flow;
pub mod loopback;
pub mod pkce;

use std::time::Duration;

pub use accounts::{Account, AccountSummary};
pub use client::{CreatorInfo, OAuthClient, TokenSet, UserInfo};
pub use flow::{
    Authorization, Callback, Login, LogoutOutcome, PendingLogin, PendingLogins, complete_login,
    find_account, fresh_creator_info, list_accounts, logout, new_browser_binding,
    refresh_if_expiring, refresh_now, valid_account,
};
pub use pkce::ChallengeEncoding;

/// Where TikTok's authorize page lives; [`AUTHORIZE_PATH`] is appended.
pub const DEFAULT_AUTH_URL: &str = "https://www.tiktok.com";
/// Where TikTok's Open API lives; the `/v2/...` paths are appended.
pub const DEFAULT_OPEN_API_URL: &str = "https://open.tiktokapis.com";
/// The desktop flow's redirect URI when `TIKTOK_REDIRECT_URI` is not set.
pub const DEFAULT_REDIRECT_URI: &str = "http://127.0.0.1:3455/callback/";
/// The scopes asked for by default: profile (`username` needs `user.info.profile`) and creator info
/// (`video.publish`).
pub const DEFAULT_SCOPES: &str = "user.info.basic,user.info.profile,video.publish";

pub const AUTHORIZE_PATH: &str = "/v2/auth/authorize/";
pub const TOKEN_PATH: &str = "/v2/oauth/token/";
pub const REVOKE_PATH: &str = "/v2/oauth/revoke/";
pub const USER_INFO_PATH: &str = "/v2/user/info/";
pub const CREATOR_INFO_PATH: &str = "/v2/post/publish/creator_info/query/";

/// The scope creator info needs.
pub const SCOPE_VIDEO_PUBLISH: &str = "video.publish";
/// The scope `username` (the @handle) needs in user info.
pub const SCOPE_USER_PROFILE: &str = "user.info.profile";

/// A token or the client secret. Its `Debug` prints `Secret(redacted)`; the value is only reachable
/// through [`Secret::expose`], which the code calls where the value goes on the wire or into the
/// database, nowhere else.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(redacted)")
    }
}

/// One TikTok app (its Login Kit credentials and redirect URI) and where TikTok is.
#[derive(Debug, Clone)]
pub struct OAuthConfig {
    /// The app's Client key (TikTok's name for `client_id`).
    pub client_key: String,
    pub client_secret: Secret,
    /// Exactly as registered in the app (scheme, host, port, path, trailing slash).
    pub redirect_uri: String,
    /// Asked for on the authorize page, sent comma-separated.
    pub scopes: Vec<String>,
    /// Base URL of the authorize page (default [`DEFAULT_AUTH_URL`]).
    pub auth_url: String,
    /// Base URL of the Open API (default [`DEFAULT_OPEN_API_URL`]).
    pub open_api_url: String,
    /// How the PKCE challenge is encoded: hex for the desktop flow; see [`pkce`].
    pub challenge: ChallengeEncoding,
    /// Timeout of each request to TikTok.
    pub http_timeout: Duration,
    /// An access token this close to its expiry is refreshed before use.
    pub refresh_before: Duration,
}

impl OAuthConfig {
    /// Splits a scope list given as `a,b` (spaces and empty items ignored).
    pub fn parse_scopes(text: &str) -> Vec<String> {
        let mut scopes: Vec<String> = Vec::new();
        for scope in text
            .split([',', ' '])
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            if !scopes.iter().any(|s| s == scope) {
                scopes.push(scope.to_owned());
            }
        }
        scopes
    }

    /// Checks what can be checked before talking to TikTok.
    pub fn validate(&self) -> Result<(), OAuthError> {
        if self.client_key.trim().is_empty() || self.client_secret.expose().trim().is_empty() {
            return Err(OAuthError::Config(
                "set TIKTOK_CLIENT_KEY and TIKTOK_CLIENT_SECRET (in .env or the environment) to the \
                 Client key and Client secret of your TikTok app"
                    .into(),
            ));
        }
        if self.scopes.is_empty() {
            return Err(OAuthError::Config("no scope to ask for".into()));
        }
        for (name, url) in [
            ("the auth URL", &self.auth_url),
            ("the Open API URL", &self.open_api_url),
        ] {
            let parsed = reqwest::Url::parse(url)
                .map_err(|_| OAuthError::Config(format!("{name} {url:?} is not a URL")))?;
            if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
                return Err(OAuthError::Config(format!(
                    "{name} {url:?} is not an http(s) URL"
                )));
            }
        }
        Ok(())
    }

    /// `base` + `path`, whatever trailing slash `base` has.
    pub(crate) fn join(base: &str, path: &str) -> String {
        format!("{}{path}", base.trim_end_matches('/'))
    }
}

/// An error TikTok returned: its code, description and `log_id` (which TikTok support asks for).
/// Never the request that caused it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TikTokError {
    pub code: String,
    pub description: String,
    pub log_id: Option<String>,
    pub http_status: u16,
}

impl std::fmt::Display for TikTokError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.code)?;
        if !self.description.is_empty() {
            write!(f, ": {}", self.description)?;
        }
        if let Some(log_id) = &self.log_id {
            write!(f, " (log_id {log_id})")?;
        }
        Ok(())
    }
}

impl TikTokError {
    /// The refresh token is no longer valid: revoked, expired or rotated away. Only a new login helps.
    pub fn needs_login(&self) -> bool {
        matches!(
            self.code.as_str(),
            "invalid_grant" | "access_token_invalid" | "invalid_client" | "unauthorized_client"
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    /// Missing or invalid configuration (exit 2).
    #[error("{0}")]
    Config(String),
    /// TikTok answered with an error (exit 8).
    #[error("TikTok refused {action}: {error}")]
    Refused {
        action: &'static str,
        error: TikTokError,
    },
    /// The callback carried `error`: the user refused, or TikTok would not let them authorise (exit 8).
    #[error("{}", denied_message(error, description.as_deref()))]
    Denied {
        error: String,
        description: Option<String>,
    },
    /// A callback whose `state` is missing, unknown, expired, already used or bound to another
    /// browser (exit 8).
    #[error("{0}")]
    State(String),
    /// The browser never came back (exit 8).
    #[error("{0}")]
    Timeout(String),
    /// The account must log in again: its refresh token was revoked, expired or rotated away (exit 8).
    #[error("{0}")]
    NeedsLogin(String),
    /// TikTok could not be reached, or the loopback port could not be used (exit 5).
    #[error("{context}: {message}")]
    Network { context: String, message: String },
    /// TikTok answered something that is neither a success nor one of its errors (exit 1).
    #[error("unexpected answer from TikTok ({context}): {message}")]
    Protocol { context: String, message: String },
    /// No stored account matches (exit 7).
    #[error("{0}")]
    NoAccount(String),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

fn denied_message(error: &str, description: Option<&str>) -> String {
    let mut text = format!("the login was not authorised: TikTok returned error={error}");
    if let Some(description) = description.filter(|d| !d.is_empty()) {
        text.push_str(&format!(" ({description})"));
    }
    if error == "access_denied" {
        text.push_str("; the consent was refused, or this account may not use the app (a sandbox app only accepts its target users)");
    }
    text
}

impl From<rusqlite::Error> for OAuthError {
    fn from(err: rusqlite::Error) -> Self {
        OAuthError::Store(crate::store::StoreError::Sqlite(err))
    }
}

impl OAuthError {
    pub(crate) fn network(context: impl Into<String>, err: reqwest::Error) -> Self {
        OAuthError::Network {
            context: context.into(),
            message: crate::webcast::without_url(err),
        }
    }

    /// The exit code (see `error::Exit`).
    pub fn exit(&self) -> crate::error::Exit {
        use crate::error::Exit;
        match self {
            OAuthError::Config(_) => Exit::Usage,
            OAuthError::Refused { .. }
            | OAuthError::Denied { .. }
            | OAuthError::State(_)
            | OAuthError::Timeout(_)
            | OAuthError::NeedsLogin(_) => Exit::Auth,
            OAuthError::Network { .. } => Exit::Network,
            OAuthError::Protocol { .. } => Exit::Failure,
            OAuthError::NoAccount(_) => Exit::NotFound,
            OAuthError::Store(e) => crate::error::store_exit(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_do_not_show_in_debug_output() {
        let config = OAuthConfig {
            client_key: "key".into(),
            client_secret: Secret::new("s3cr3t-value"),
            redirect_uri: "http://127.0.0.1:3455/callback/".into(),
            scopes: vec!["user.info.basic".into()],
            auth_url: DEFAULT_AUTH_URL.into(),
            open_api_url: DEFAULT_OPEN_API_URL.into(),
            challenge: ChallengeEncoding::Hex,
            http_timeout: Duration::from_secs(1),
            refresh_before: Duration::from_secs(1),
        };
        let text = format!("{config:?} {:?}", Secret::new("act.abc"));
        assert!(
            !text.contains("s3cr3t") && !text.contains("act.abc"),
            "{text}"
        );
        assert!(text.contains("redacted"));
    }

    #[test]
    fn scopes_split_on_commas_and_spaces_once_each() {
        assert_eq!(
            OAuthConfig::parse_scopes(" user.info.basic, video.publish,,user.info.basic "),
            ["user.info.basic", "video.publish"]
        );
    }

    #[test]
    fn tiktok_errors_show_code_description_and_log_id() {
        let error = TikTokError {
            code: "invalid_grant".into(),
            description: "Authorization code is expired.".into(),
            log_id: Some("2024".into()),
            http_status: 200,
        };
        assert_eq!(
            error.to_string(),
            "invalid_grant: Authorization code is expired. (log_id 2024)"
        );
        assert!(error.needs_login());
    }
}
