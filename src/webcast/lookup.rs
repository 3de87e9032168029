//! TikTok's web endpoints: the HTTP identity we present (§1.1), username → room id through the live
//! page's SIGI_STATE and then api-live (§1.3), and the room-info live check (§1.4).

use reqwest::header::{self, HeaderMap, HeaderValue};
use serde_json::Value;

use super::{ClientConfig, ConnectError, query_string};

/// Strips a live URL, `/live` and the leading `@` from what the user typed (§1.0).
pub fn normalise_username(input: &str) -> String {
    let mut s = input.trim();
    for prefix in ["https://", "http://"] {
        s = s.strip_prefix(prefix).unwrap_or(s);
    }
    for host in ["www.tiktok.com/", "m.tiktok.com/", "tiktok.com/"] {
        s = s.strip_prefix(host).unwrap_or(s);
    }
    let s = s.split(['?', '#']).next().unwrap_or("");
    let s = s.trim_end_matches('/');
    let s = s.strip_suffix("/live").unwrap_or(s);
    let s = s.strip_prefix('@').unwrap_or(s);
    s.trim().to_owned()
}

/// The HTTP side of one connection: one client, one device identity, the cookie jar we send.
pub(super) struct Http {
    pub client: reqwest::Client,
    pub device_id: String,
    pub config: ClientConfig,
}

impl Http {
    pub fn new(config: &ClientConfig) -> Result<Self, ConnectError> {
        super::init_tls();
        let mut builder = reqwest::Client::builder()
            .timeout(config.http_timeout)
            .connect_timeout(config.http_timeout);
        if let Some(proxy) = &config.proxy {
            let proxy = reqwest::Proxy::all(proxy)
                .map_err(|_| ConnectError::Config("--proxy is not a valid proxy URL".into()))?;
            builder = builder.proxy(proxy);
        }
        let client = builder
            .build()
            .map_err(|e| ConnectError::network("cannot set up HTTP", e))?;
        let device_id = (0..19)
            .map(|i| char::from(b'0' + fastrand::u8(if i == 0 { 1..10 } else { 0..10 })))
            .collect();
        Ok(Http {
            client,
            device_id,
            config: config.clone(),
        })
    }

    /// The `Cookie` header towards TikTok before signing: the data-centre cookie, plus the session
    /// cookies of a logged-in account.
    pub fn base_cookies(&self) -> Vec<(String, String)> {
        let idc = self
            .config
            .tt_target_idc
            .clone()
            .unwrap_or_else(|| "useast1a".into());
        let mut cookies = vec![("tt-target-idc".to_owned(), idc)];
        if let Some(session) = &self.config.session_id {
            for name in ["sessionid", "sessionid_ss", "sid_tt"] {
                cookies.push((name.to_owned(), session.clone()));
            }
        }
        cookies
    }

    fn tiktok_headers(&self) -> HeaderMap {
        let mut h = HeaderMap::new();
        let ua = HeaderValue::from_str(&self.config.user_agent)
            .unwrap_or_else(|_| HeaderValue::from_static("Mozilla/5.0"));
        h.insert(header::USER_AGENT, ua);
        for (name, value) in [
            ("accept", "text/html,application/json,application/protobuf"),
            ("accept-language", "en-US,en;q=0.9"),
            ("cache-control", "max-age=0"),
            ("referer", "https://www.tiktok.com/"),
            ("origin", "https://www.tiktok.com"),
            ("sec-fetch-site", "same-site"),
            ("sec-fetch-mode", "cors"),
            ("sec-fetch-dest", "empty"),
            ("sec-fetch-ua-mobile", "?0"),
        ] {
            h.insert(name, HeaderValue::from_static(value));
        }
        if let Ok(cookie) = HeaderValue::from_str(&cookie_header(&self.base_cookies())) {
            h.insert(header::COOKIE, cookie);
        }
        h
    }

    /// The query parameters every TikTok web request carries (§1.1).
    pub fn web_params(&self) -> Vec<(&'static str, String)> {
        let ua = &self.config.user_agent;
        let (browser_name, browser_version) = ua.split_once('/').unwrap_or((ua, ""));
        let windows = ua.contains("Windows");
        vec![
            ("aid", "1988".into()),
            ("app_language", "en".into()),
            ("app_name", "tiktok_web".into()),
            ("browser_language", "en-US".into()),
            ("browser_name", browser_name.into()),
            ("browser_online", "true".into()),
            (
                "browser_platform",
                if windows { "Win32" } else { "MacIntel" }.into(),
            ),
            ("browser_version", browser_version.into()),
            ("cookie_enabled", "true".into()),
            ("device_platform", "web_pc".into()),
            ("focus_state", "true".into()),
            ("from_page", "user".into()),
            ("history_len", "10".into()),
            ("is_fullscreen", "false".into()),
            ("is_page_visible", "true".into()),
            ("screen_height", "1080".into()),
            ("screen_width", "1920".into()),
            ("tz_name", "Europe/Berlin".into()),
            ("referer", "https://www.tiktok.com/".into()),
            ("root_referer", "https://www.tiktok.com/".into()),
            ("channel", "tiktok_web".into()),
            ("data_collection_enabled", "true".into()),
            ("os", if windows { "windows" } else { "mac" }.into()),
            ("priority_region", "US".into()),
            ("region", "US".into()),
            (
                "user_is_login",
                self.config.session_id.is_some().to_string(),
            ),
            ("webcast_language", "en".into()),
            ("device_id", self.device_id.clone()),
        ]
    }

    async fn get_text(&self, url: String, what: &str) -> Result<(u16, String), ConnectError> {
        let response = self
            .client
            .get(url)
            .headers(self.tiktok_headers())
            .send()
            .await
            .map_err(|e| ConnectError::network(format!("cannot reach {what}"), without_url(e)))?;
        let status = response.status().as_u16();
        let body = response
            .text()
            .await
            .map_err(|e| ConnectError::network(format!("cannot read {what}"), without_url(e)))?;
        Ok((status, body))
    }

    fn with_params(&self, base: &str, path: &str, extra: &[(&str, &str)]) -> String {
        let params = self.web_params();
        let pairs = params
            .iter()
            .map(|(k, v)| (*k, v.as_str()))
            .chain(extra.iter().copied());
        format!(
            "{}{}?{}",
            base.trim_end_matches('/'),
            path,
            query_string(pairs)
        )
    }

    /// Resolves the room id of `unique_id`; an offline user is an error.
    pub async fn resolve_room_id(&self) -> Result<u64, ConnectError> {
        let user = &self.config.unique_id;
        let mut reasons = Vec::new();
        let mut no_live_room = false;
        let page = format!(
            "{}/@{}/live",
            self.config.web_url.trim_end_matches('/'),
            user
        );
        match self.get_text(page, "the live page").await {
            Ok((200, html)) => match parse_sigi_state(&html) {
                SigiState::Room { room_id, status } => {
                    if status == Some(4) {
                        return Err(ConnectError::Offline(user.clone()));
                    }
                    if room_id != 0 {
                        return Ok(room_id);
                    }
                    no_live_room = true;
                    reasons.push("live page: the user has no room".to_owned());
                }
                SigiState::NoLiveRoom => {
                    no_live_room = true;
                    reasons.push("live page: no LiveRoom in SIGI_STATE".to_owned());
                }
                SigiState::Blocked(why) => reasons.push(format!("live page: {why}")),
            },
            Ok((status, _)) => reasons.push(format!("live page: HTTP {status}")),
            Err(e) => reasons.push(e.to_string()),
        }
        let url = self.with_params(
            &self.config.web_url,
            "/api-live/user/room/",
            &[("uniqueId", user), ("sourceType", "54")],
        );
        match self.get_text(url, "api-live").await {
            Ok((200, body)) => match serde_json::from_str::<Value>(&body) {
                Ok(json) => match api_live_room(&json) {
                    ApiLive::Room { room_id, status } => {
                        if status == Some(4) {
                            return Err(ConnectError::Offline(user.clone()));
                        }
                        return Ok(room_id);
                    }
                    ApiLive::NotFound => return Err(ConnectError::UserNotFound(user.clone())),
                    ApiLive::Error(why) => reasons.push(format!("api-live: {why}")),
                },
                Err(_) => reasons.push("api-live: the answer is not JSON (blocked?)".into()),
            },
            Ok((status, _)) => reasons.push(format!("api-live: HTTP {status}")),
            Err(e) => reasons.push(e.to_string()),
        }
        if no_live_room {
            return Err(ConnectError::UserNotFound(user.clone()));
        }
        Err(ConnectError::RoomLookup {
            user: user.clone(),
            reasons: reasons.join("; "),
        })
    }

    /// Checks the room with room info: status 4 means offline. Other failures are not fatal, since
    /// room info is not needed to connect (age-restricted rooms answer with an almost empty body);
    /// they leave [`RoomInfo`] empty.
    pub async fn check_live(&self, room_id: u64) -> Result<RoomInfo, ConnectError> {
        let id = room_id.to_string();
        let url = self.with_params(
            &self.config.webcast_url,
            "/webcast/room/info/",
            &[("room_id", &id)],
        );
        match self.get_text(url, "room info").await {
            Ok((200, body)) => {
                let json: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                let data = &json["data"];
                if data["status"].as_i64() == Some(4) {
                    return Err(ConnectError::Offline(self.config.unique_id.clone()));
                }
                if data.get("prompts").is_some() || json["status_code"].as_i64() == Some(4003110) {
                    tracing::warn!(
                        "room info is restricted (age-restricted or private live); connecting anyway"
                    );
                }
                Ok(RoomInfo::from_data(data))
            }
            Ok((status, _)) => {
                tracing::debug!(status, "room info failed; connecting anyway");
                Ok(RoomInfo::default())
            }
            Err(e) => {
                tracing::debug!(%e, "room info failed; connecting anyway");
                Ok(RoomInfo::default())
            }
        }
    }
}

/// What room info says about a live that tiklive keeps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoomInfo {
    /// The title the host gave the live; `None` when room info had none (or failed).
    pub title: Option<String>,
}

/// Titles longer than this many characters are cut (TikTok's own limit is far below).
const MAX_TITLE_CHARS: usize = 200;

impl RoomInfo {
    fn from_data(data: &Value) -> RoomInfo {
        let title = data["title"]
            .as_str()
            .map(|t| t.trim().chars().take(MAX_TITLE_CHARS).collect::<String>())
            .filter(|t| !t.is_empty());
        RoomInfo { title }
    }
}

/// `name=value; name=value`.
pub(super) fn cookie_header(cookies: &[(String, String)]) -> String {
    cookies
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// reqwest's errors quote the URL, which carries our whole query string; keep messages short.
pub(crate) fn without_url(err: reqwest::Error) -> String {
    let err = err.without_url();
    let mut detail = if err.is_timeout() {
        format!("timed out ({err})")
    } else {
        err.to_string()
    };
    let mut source = std::error::Error::source(&err);
    while let Some(s) = source {
        detail = format!("{detail}: {s}");
        source = s.source();
    }
    detail
}

#[derive(Debug, PartialEq, Eq)]
pub enum SigiState {
    Room { room_id: u64, status: Option<i64> },
    NoLiveRoom,
    Blocked(String),
}

/// Reads `LiveRoom.liveRoomUserInfo` from the live page's `<script id="SIGI_STATE">` JSON.
pub fn parse_sigi_state(html: &str) -> SigiState {
    let Some(start) = html.find("id=\"SIGI_STATE\"") else {
        return if html.contains("tiktok-verify-page") {
            SigiState::Blocked("captcha page (tiktok-verify-page)".into())
        } else {
            SigiState::Blocked("no SIGI_STATE in the page (blocked by TikTok?)".into())
        };
    };
    let rest = &html[start..];
    let Some(open) = rest.find('>') else {
        return SigiState::Blocked("SIGI_STATE tag is cut short".into());
    };
    let rest = &rest[open + 1..];
    let Some(close) = rest.find("</script>") else {
        return SigiState::Blocked("SIGI_STATE tag is cut short".into());
    };
    let Ok(json) = serde_json::from_str::<Value>(&rest[..close]) else {
        return SigiState::Blocked("SIGI_STATE is not JSON (captcha-blocked?)".into());
    };
    let info = &json["LiveRoom"]["liveRoomUserInfo"];
    if info.is_null() {
        return SigiState::NoLiveRoom;
    }
    let room_id = info["user"]["roomId"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .or_else(|| {
            info["liveRoom"]["roomId"]
                .as_str()
                .and_then(|s| s.parse().ok())
        })
        .unwrap_or(0);
    let status = info["liveRoom"]["status"]
        .as_i64()
        .or_else(|| info["user"]["status"].as_i64());
    SigiState::Room { room_id, status }
}

enum ApiLive {
    Room { room_id: u64, status: Option<i64> },
    NotFound,
    Error(String),
}

fn api_live_room(json: &Value) -> ApiLive {
    let code = json["statusCode"].as_i64().unwrap_or(-1);
    let message = json["message"].as_str().unwrap_or("");
    if message == "user_not_found" || code == 19881007 {
        return ApiLive::NotFound;
    }
    if code != 0 {
        return ApiLive::Error(format!("statusCode {code} {message}").trim().to_owned());
    }
    let data = &json["data"];
    match data["user"]["roomId"]
        .as_str()
        .and_then(|s| s.parse::<u64>().ok())
    {
        Some(room_id) if room_id != 0 => ApiLive::Room {
            room_id,
            status: data["liveRoom"]["status"]
                .as_i64()
                .or_else(|| data["user"]["status"].as_i64()),
        },
        _ => ApiLive::NotFound,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_info_gives_the_title_trimmed_and_bounded() {
        let title = |data: Value| RoomInfo::from_data(&data).title;
        assert_eq!(
            title(serde_json::json!({"status": 2, "title": " Vente live 🛍️ robes "})).as_deref(),
            Some("Vente live 🛍️ robes")
        );
        assert_eq!(title(serde_json::json!({"status": 2, "title": "  "})), None);
        assert_eq!(title(serde_json::json!({"status": 2, "title": 7})), None);
        // What an age-restricted room answers.
        assert_eq!(title(serde_json::json!({"prompts": ""})), None);
        let long = title(serde_json::json!({"title": "é".repeat(500)})).unwrap();
        assert_eq!(long.chars().count(), MAX_TITLE_CHARS);
    }

    #[test]
    fn usernames_are_normalised_from_every_form() {
        for input in [
            "@seller",
            "seller",
            " seller ",
            "https://www.tiktok.com/@seller/live",
            "https://www.tiktok.com/@seller/live?lang=fr",
            "www.tiktok.com/@seller",
            "tiktok.com/@seller/",
        ] {
            assert_eq!(normalise_username(input), "seller", "{input}");
        }
    }

    #[test]
    fn sigi_state_gives_room_and_status() {
        let html = r#"<html><script id="SIGI_STATE" type="application/json">{"LiveRoom":{"liveRoomUserInfo":{"user":{"roomId":"7270193599273683745","status":2},"liveRoom":{"status":2}}}}</script></html>"#;
        assert_eq!(
            parse_sigi_state(html),
            SigiState::Room {
                room_id: 7270193599273683745,
                status: Some(2)
            }
        );
        assert_eq!(
            parse_sigi_state(
                r#"<script id="SIGI_STATE" type="application/json">{"AppContext":{}}</script>"#
            ),
            SigiState::NoLiveRoom
        );
        assert!(matches!(
            parse_sigi_state("<div class=tiktok-verify-page>"),
            SigiState::Blocked(_)
        ));
        assert!(matches!(
            parse_sigi_state(r#"<script id="SIGI_STATE">{not json</script>"#),
            SigiState::Blocked(_)
        ));
    }
}
