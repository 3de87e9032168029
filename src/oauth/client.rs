//! The HTTP calls to TikTok's Login Kit and Open API (OAUTH.md §3–§5): the authorize URL, the token
//! exchange, refresh and revoke (form-encoded, credentials in the body), user info and creator info
//! (TikTok's `{"data", "error"}` envelope). Every answer is judged by its body, since TikTok returns
//! some errors with HTTP 200; errors keep TikTok's code, description and `log_id` and nothing of the
//! request.

use std::time::Duration;

use reqwest::header::{self, HeaderValue};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{
    AUTHORIZE_PATH, CREATOR_INFO_PATH, OAuthConfig, OAuthError, REVOKE_PATH, SCOPE_USER_PROFILE,
    Secret, TOKEN_PATH, TikTokError, USER_INFO_PATH,
};
use crate::webcast::query_string;

/// What the token endpoint hands out, for a code or a refresh token. `Debug` redacts the tokens.
#[derive(Debug, Clone)]
pub struct TokenSet {
    pub open_id: String,
    /// The scopes granted (the user may have unticked some).
    pub scopes: Vec<String>,
    pub access_token: Secret,
    /// Seconds the access token remains valid, from the moment of the answer.
    pub expires_in: i64,
    pub refresh_token: Secret,
    /// Seconds the refresh token remains valid.
    pub refresh_expires_in: i64,
}

/// The profile `/v2/user/info/` gives (OAUTH.md §4). `username` needs `user.info.profile`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct UserInfo {
    #[serde(default)]
    pub open_id: Option<String>,
    #[serde(default)]
    pub union_id: Option<String>,
    #[serde(default)]
    pub avatar_url: Option<String>,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
}

/// What `/v2/post/publish/creator_info/query/` says about a creator (OAUTH.md §5). Every field is
/// optional: TikTok sends `data: {}` with its errors. A cache only: posting must ask again.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatorInfo {
    #[serde(default)]
    pub creator_avatar_url: Option<String>,
    #[serde(default)]
    pub creator_username: Option<String>,
    #[serde(default)]
    pub creator_nickname: Option<String>,
    #[serde(default)]
    pub privacy_level_options: Vec<String>,
    #[serde(default)]
    pub comment_disabled: Option<bool>,
    #[serde(default)]
    pub duet_disabled: Option<bool>,
    #[serde(default)]
    pub stitch_disabled: Option<bool>,
    #[serde(default)]
    pub max_video_post_duration_sec: Option<i64>,
}

/// A client for one TikTok app. Cheap to clone (reqwest's client is shared); usable from any tokio
/// runtime.
#[derive(Debug, Clone)]
pub struct OAuthClient {
    http: reqwest::Client,
    config: OAuthConfig,
}

impl OAuthClient {
    /// Checks the configuration and builds the HTTP client (rustls, no redirects followed: nothing
    /// that carries a credential is ever sent to a host the configuration does not name).
    pub fn new(config: OAuthConfig) -> Result<OAuthClient, OAuthError> {
        config.validate()?;
        crate::webcast::init_tls();
        let http = reqwest::Client::builder()
            .timeout(config.http_timeout)
            .connect_timeout(config.http_timeout.min(Duration::from_secs(30)))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("tiklive/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| OAuthError::network("cannot set up HTTP", e))?;
        Ok(OAuthClient { http, config })
    }

    pub fn config(&self) -> &OAuthConfig {
        &self.config
    }

    /// The authorize page URL for `state` and a PKCE challenge, with the configured redirect URI.
    pub fn authorize_url(&self, state: &str, code_challenge: &str) -> String {
        self.authorize_url_for(&self.config.redirect_uri, state, code_challenge)
    }

    /// [`authorize_url`](Self::authorize_url) for another redirect URI (the loopback flow learns its
    /// port only once it listens).
    pub fn authorize_url_for(
        &self,
        redirect_uri: &str,
        state: &str,
        code_challenge: &str,
    ) -> String {
        let scope = self.config.scopes.join(",");
        let query = query_string([
            ("client_key", self.config.client_key.as_str()),
            ("scope", scope.as_str()),
            ("response_type", "code"),
            ("redirect_uri", redirect_uri),
            ("state", state),
            ("code_challenge", code_challenge),
            ("code_challenge_method", "S256"),
            // Always show the consent page, so the user sees the scopes and can pick an account.
            ("disable_auto_auth", "1"),
        ]);
        format!(
            "{}?{query}",
            OAuthConfig::join(&self.config.auth_url, AUTHORIZE_PATH)
        )
    }

    /// Exchanges an authorization code (already URL-decoded once) for tokens.
    pub async fn exchange_code(
        &self,
        code: &str,
        code_verifier: &Secret,
        redirect_uri: &str,
    ) -> Result<TokenSet, OAuthError> {
        let form = query_string([
            ("client_key", self.config.client_key.as_str()),
            ("client_secret", self.config.client_secret.expose()),
            ("code", code),
            ("grant_type", "authorization_code"),
            ("redirect_uri", redirect_uri),
            ("code_verifier", code_verifier.expose()),
        ]);
        self.token_request(form, "the authorization code").await
    }

    /// Trades a refresh token for a new pair. TikTok rotates refresh tokens: the one sent stops
    /// working once this succeeds, so the caller must store the new one before anything else.
    pub async fn refresh(&self, refresh_token: &Secret) -> Result<TokenSet, OAuthError> {
        let form = query_string([
            ("client_key", self.config.client_key.as_str()),
            ("client_secret", self.config.client_secret.expose()),
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token.expose()),
        ]);
        self.token_request(form, "the refresh token").await
    }

    /// Revokes the user's authorisation of the app (the access token and its refresh token).
    pub async fn revoke(&self, access_token: &Secret) -> Result<(), OAuthError> {
        let form = query_string([
            ("client_key", self.config.client_key.as_str()),
            ("client_secret", self.config.client_secret.expose()),
            ("token", access_token.expose()),
        ]);
        let (status, body) = self.post_form(REVOKE_PATH, form, "revoke").await?;
        let value: Value = if body.iter().all(u8::is_ascii_whitespace) {
            Value::Object(Default::default())
        } else {
            serde_json::from_slice(&body).map_err(|_| not_json("revoke", status))?
        };
        if let Some(error) = oauth_error(&value, status) {
            return Err(OAuthError::Refused {
                action: "to revoke the token",
                error,
            });
        }
        if !(200..300).contains(&status) {
            return Err(OAuthError::Refused {
                action: "to revoke the token",
                error: http_error(status, &value),
            });
        }
        Ok(())
    }

    /// The user's profile. `username` is asked for only when `scopes` include `user.info.profile`,
    /// since TikTok refuses fields the token has no scope for.
    pub async fn user_info(
        &self,
        access_token: &Secret,
        scopes: &[String],
    ) -> Result<UserInfo, OAuthError> {
        let mut fields = String::from("open_id,union_id,avatar_url,display_name");
        if scopes.iter().any(|s| s == SCOPE_USER_PROFILE) {
            fields.push_str(",username");
        }
        let url = format!(
            "{}?{}",
            OAuthConfig::join(&self.config.open_api_url, USER_INFO_PATH),
            query_string([("fields", fields.as_str())])
        );
        let response = self
            .http
            .get(url)
            .bearer_auth(access_token.expose())
            .send()
            .await
            .map_err(|e| OAuthError::network("cannot reach TikTok for user info", e))?;
        let data = envelope(response, "user info").await?;
        let user = data.get("user").cloned().unwrap_or(Value::Null);
        serde_json::from_value(user).map_err(|e| OAuthError::Protocol {
            context: "user info".into(),
            message: e.to_string(),
        })
    }

    /// The creator's posting settings (needs `video.publish`).
    pub async fn creator_info(&self, access_token: &Secret) -> Result<CreatorInfo, OAuthError> {
        let response = self
            .http
            .post(OAuthConfig::join(
                &self.config.open_api_url,
                CREATOR_INFO_PATH,
            ))
            .bearer_auth(access_token.expose())
            .header(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json; charset=UTF-8"),
            )
            .body("{}")
            .send()
            .await
            .map_err(|e| OAuthError::network("cannot reach TikTok for creator info", e))?;
        let data = envelope(response, "creator info").await?;
        serde_json::from_value(data).map_err(|e| OAuthError::Protocol {
            context: "creator info".into(),
            message: e.to_string(),
        })
    }

    async fn post_form(
        &self,
        path: &str,
        form: String,
        context: &str,
    ) -> Result<(u16, bytes::Bytes), OAuthError> {
        let response = self
            .http
            .post(OAuthConfig::join(&self.config.open_api_url, path))
            .header(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/x-www-form-urlencoded"),
            )
            .header(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"))
            .body(form)
            .send()
            .await
            .map_err(|e| OAuthError::network(format!("cannot reach TikTok ({context})"), e))?;
        let status = response.status().as_u16();
        let body = response.bytes().await.map_err(|e| {
            OAuthError::network(format!("cannot read TikTok's answer ({context})"), e)
        })?;
        Ok((status, body))
    }

    async fn token_request(
        &self,
        form: String,
        what: &'static str,
    ) -> Result<TokenSet, OAuthError> {
        let (status, body) = self.post_form(TOKEN_PATH, form, "token").await?;
        let value: Value =
            serde_json::from_slice(&body).map_err(|_| not_json("token endpoint", status))?;
        parse_token_answer(&value, status).map_err(|error| match error {
            Ok(error) => OAuthError::Refused {
                action: what,
                error,
            },
            Err(message) => OAuthError::Protocol {
                context: "token endpoint".into(),
                message,
            },
        })
    }
}

fn not_json(context: &str, status: u16) -> OAuthError {
    OAuthError::Protocol {
        context: context.into(),
        message: format!("HTTP {status} with a body that is not JSON"),
    }
}

/// The OAuth error in a token or revoke answer: `{"error": "...", "error_description", "log_id"}`, or
/// the v2 envelope's `{"error": {"code", "message", "log_id"}}` with a code other than `ok`.
fn oauth_error(value: &Value, status: u16) -> Option<TikTokError> {
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
    match value.get("error") {
        Some(Value::String(code)) if !code.is_empty() => Some(TikTokError {
            code: code.clone(),
            description: text(value.get("error_description")).unwrap_or_default(),
            log_id: text(value.get("log_id")).or_else(|| text(value.get("logid"))),
            http_status: status,
        }),
        Some(Value::Object(error)) => envelope_error(error, status),
        _ => None,
    }
}

/// The v2 envelope's error object, unless its code is `ok`.
fn envelope_error(error: &serde_json::Map<String, Value>, status: u16) -> Option<TikTokError> {
    let text = |key: &str| error.get(key).and_then(Value::as_str).map(str::to_owned);
    let code = text("code").unwrap_or_default();
    if code == "ok" {
        return None;
    }
    Some(TikTokError {
        code: if code.is_empty() {
            format!("http_{status}")
        } else {
            code
        },
        description: text("message").unwrap_or_default(),
        log_id: text("log_id").or_else(|| text("logid")),
        http_status: status,
    })
}

fn http_error(status: u16, value: &Value) -> TikTokError {
    let log_id = value
        .get("log_id")
        .and_then(Value::as_str)
        .map(str::to_owned);
    TikTokError {
        code: format!("http_{status}"),
        description: "TikTok answered with an HTTP error".into(),
        log_id,
        http_status: status,
    }
}

/// A token answer: `Err(Ok(_))` for TikTok's error, `Err(Err(_))` for an answer that is not one.
fn parse_token_answer(value: &Value, status: u16) -> Result<TokenSet, Result<TikTokError, String>> {
    if let Some(error) = oauth_error(value, status) {
        return Err(Ok(error));
    }
    // The documented answer is flat; accept one wrapped in `data` too.
    let body = match value.get("access_token") {
        Some(_) => value,
        None => value.get("data").unwrap_or(value),
    };
    let text = |key: &str| {
        body.get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let seconds = |key: &str| {
        body.get(key).and_then(|v| {
            v.as_i64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        })
    };
    let (Some(access), Some(refresh), Some(open_id)) =
        (text("access_token"), text("refresh_token"), text("open_id"))
    else {
        if !(200..300).contains(&status) {
            return Err(Ok(http_error(status, value)));
        }
        return Err(Err(format!(
            "HTTP {status} without access_token, refresh_token and open_id"
        )));
    };
    let (Some(expires_in), Some(refresh_expires_in)) =
        (seconds("expires_in"), seconds("refresh_expires_in"))
    else {
        return Err(Err("no expires_in or refresh_expires_in".into()));
    };
    Ok(TokenSet {
        open_id,
        scopes: OAuthConfig::parse_scopes(&text("scope").unwrap_or_default()),
        access_token: Secret::new(access),
        expires_in: expires_in.max(0),
        refresh_token: Secret::new(refresh),
        refresh_expires_in: refresh_expires_in.max(0),
    })
}

/// The `data` of a v2 API answer, or its error. Succeeds only on `error.code == "ok"`.
async fn envelope(response: reqwest::Response, context: &str) -> Result<Value, OAuthError> {
    let status = response.status().as_u16();
    let body = response
        .bytes()
        .await
        .map_err(|e| OAuthError::network(format!("cannot read TikTok's answer ({context})"), e))?;
    let value: Value = serde_json::from_slice(&body).map_err(|_| not_json(context, status))?;
    let refused = |error| OAuthError::Refused {
        action: if context == "user info" {
            "the user info request"
        } else {
            "the creator info request"
        },
        error,
    };
    match value.get("error") {
        Some(Value::Object(error)) => {
            if let Some(error) = envelope_error(error, status) {
                return Err(refused(error));
            }
        }
        _ => return Err(refused(http_error(status, &value))),
    }
    Ok(value
        .get("data")
        .cloned()
        .unwrap_or(Value::Object(Default::default())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_error_in_a_200_body_is_an_error() {
        let answer = json!({"error": "invalid_grant", "error_description": "Authorization code is expired.", "log_id": "L1"});
        let error = parse_token_answer(&answer, 200).unwrap_err().unwrap();
        assert_eq!(
            (error.code.as_str(), error.log_id.as_deref()),
            ("invalid_grant", Some("L1"))
        );
    }

    #[test]
    fn an_envelope_error_on_the_token_endpoint_is_an_error() {
        let answer = json!({"data": {}, "error": {"code": "invalid_params", "message": "bad", "logid": "L2"}});
        let error = parse_token_answer(&answer, 200).unwrap_err().unwrap();
        assert_eq!(error.to_string(), "invalid_params: bad (log_id L2)");
    }

    #[test]
    fn a_token_answer_without_tokens_is_not_a_success() {
        let problem = parse_token_answer(&json!({"open_id": "x"}), 200).unwrap_err();
        assert!(problem.is_err());
        let error = parse_token_answer(&json!({}), 500).unwrap_err().unwrap();
        assert_eq!(error.code, "http_500");
    }

    #[test]
    fn a_token_answer_gives_every_field() {
        let answer = json!({
            "access_token": "act.1", "expires_in": 86400, "open_id": "o1",
            "refresh_expires_in": "31536000", "refresh_token": "rft.1",
            "scope": "user.info.basic,video.publish", "token_type": "Bearer"
        });
        let tokens = parse_token_answer(&answer, 200).unwrap();
        assert_eq!(tokens.open_id, "o1");
        assert_eq!(tokens.access_token.expose(), "act.1");
        assert_eq!(tokens.refresh_token.expose(), "rft.1");
        assert_eq!(
            (tokens.expires_in, tokens.refresh_expires_in),
            (86400, 31536000)
        );
        assert_eq!(tokens.scopes, ["user.info.basic", "video.publish"]);
        let debug = format!("{tokens:?}");
        assert!(
            !debug.contains("act.1") && !debug.contains("rft.1"),
            "{debug}"
        );
    }

    #[test]
    fn creator_info_accepts_the_empty_data_of_errors() {
        let info: CreatorInfo = serde_json::from_value(json!({})).unwrap();
        assert_eq!(info, CreatorInfo::default());
    }
}
