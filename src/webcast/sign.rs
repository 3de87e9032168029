//! The signing service's connect route (§1.5): it performs TikTok's first fetch for us and returns the
//! protobuf fetch result (cursor, push server, route params) plus the cookies the WebSocket must carry.

use std::time::Duration;

use bytes::Bytes;
use prost::Message;
use reqwest::header::HeaderMap;
use serde_json::Value;

use super::lookup::{Http, without_url};
use super::{ConnectError, query_string};
use crate::protocol::FetchResult;

/// What one successful signing request gives us; valid for a few seconds only.
#[derive(Debug, Clone)]
pub struct SignedConnection {
    pub result: FetchResult,
    /// The fetch result exactly as received (recorded for replay).
    pub result_bytes: Bytes,
    /// Cookies from `x-set-tt-cookie`.
    pub cookies: Vec<(String, String)>,
    /// The room id, replaced by `x-room-id` when the service sends one.
    pub room_id: u64,
}

impl Http {
    /// Asks the signing service for a signed first fetch of `room_id`, resuming at `cursor`.
    pub async fn sign(
        &self,
        room_id: u64,
        cursor: Option<&str>,
    ) -> Result<SignedConnection, ConnectError> {
        let query = query_string([
            ("client", "tiklive"),
            ("cursor", cursor.unwrap_or("")),
            ("user_agent", self.config.user_agent.as_str()),
            ("client_enter", "true"),
            ("platform", "web"),
        ]);
        let url = format!(
            "{}/webcast/rooms/{room_id}/connect?{query}",
            self.config.sign_url.trim_end_matches('/')
        );
        let mut request = self
            .client
            .get(url)
            .header("accept", "application/protobuf,application/json")
            .header("user-agent", concat!("tiklive/", env!("CARGO_PKG_VERSION")));
        if let Some(key) = &self.config.sign_api_key {
            request = request.header("x-api-key", key);
        }
        if let Some(session) = &self.config.session_id {
            let idc = self.config.tt_target_idc.as_deref().unwrap_or("useast1a");
            request = request.header(
                "x-cookie-header",
                format!("sessionid={session}; tt-target-idc={idc}"),
            );
        }
        let response = request.send().await.map_err(|e| {
            ConnectError::network("cannot reach the signing service", without_url(e))
        })?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.bytes().await.map_err(|e| {
            ConnectError::network("cannot read the signing service's answer", without_url(e))
        })?;
        if status != 200 {
            return Err(sign_error(status, &headers, &body));
        }
        if body.is_empty() {
            return Err(ConnectError::SignIncomplete("a fetch result (empty body)"));
        }
        let cookies = headers
            .get("x-set-tt-cookie")
            .and_then(|v| v.to_str().ok())
            .map(parse_cookie_string)
            .unwrap_or_default();
        if cookies.is_empty() {
            return Err(ConnectError::SignIncomplete("cookies (x-set-tt-cookie)"));
        }
        let result = FetchResult::decode(body.clone()).map_err(|e| {
            ConnectError::network("the signing service's fetch result is not protobuf", e)
        })?;
        if result.cursor.is_empty() {
            return Err(ConnectError::SignIncomplete("a cursor in the fetch result"));
        }
        if result.push_server.is_empty() {
            return Err(ConnectError::SignIncomplete(
                "a push server in the fetch result",
            ));
        }
        let room_id = headers
            .get("x-room-id")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(room_id);
        Ok(SignedConnection {
            result,
            result_bytes: body,
            cookies,
            room_id,
        })
    }
}

/// Splits `a=1; b=2` into pairs, dropping cookie attributes (`Path`, `Expires`, …) if a service sends
/// a Set-Cookie style string.
pub(super) fn parse_cookie_string(text: &str) -> Vec<(String, String)> {
    const ATTRIBUTES: [&str; 7] = [
        "path", "domain", "expires", "max-age", "samesite", "secure", "httponly",
    ];
    text.split([';', ','])
        .filter_map(|part| {
            let (name, value) = part.trim().split_once('=')?;
            let name = name.trim();
            if name.is_empty() || ATTRIBUTES.contains(&name.to_ascii_lowercase().as_str()) {
                return None;
            }
            Some((name.to_owned(), value.trim().to_owned()))
        })
        .collect()
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn sign_error(status: u16, headers: &HeaderMap, body: &[u8]) -> ConnectError {
    let json: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let mut message = json["message"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| {
            String::from_utf8_lossy(&body[..body.len().min(200)])
                .trim()
                .to_owned()
        });
    let trimmed = message.trim_end_matches(['.', ' ']).len();
    message.truncate(trimmed);
    if message.is_empty() {
        message = "no explanation given".into();
    }
    if let Some(id) = header_str(headers, "x-request-id").or(header_str(headers, "x-log-id")) {
        message = format!("{message} (request id {id})");
    }
    match status {
        429 => {
            let label = json["limit_label"]
                .as_str()
                .map(|l| format!(" ({l})"))
                .unwrap_or_default();
            let now = crate::events::now_ms() / 1000;
            let seconds =
                |name: &str| header_str(headers, name).and_then(|v| v.trim().parse::<i64>().ok());
            // retry-after is relative; the reset headers may be absolute epoch seconds or relative.
            let retry_after = seconds("retry-after")
                .or_else(|| {
                    ["x-ratelimit-reset", "ratelimit-reset"]
                        .iter()
                        .find_map(|h| seconds(h))
                        .map(|v| if v > 1_000_000_000 { v - now } else { v })
                })
                .or_else(|| seconds("ratelimit-remaining"))
                .filter(|s| *s >= 0)
                .map(|s| Duration::from_secs(s as u64));
            let retry = match retry_after {
                Some(d) => format!("; retry in {} s", d.as_secs()),
                None => "; retry later".to_owned(),
            };
            ConnectError::SignRateLimited {
                label,
                message,
                retry,
                retry_after,
            }
        }
        401..=403 => ConnectError::SignUnauthorized { status, message },
        _ => ConnectError::SignFailed { status, message },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_strings_keep_every_pair_but_not_attributes() {
        assert_eq!(
            parse_cookie_string("ttwid=1%7Cabc; tt_chain_token=xyz; Path=/; HttpOnly"),
            vec![
                ("ttwid".to_owned(), "1%7Cabc".to_owned()),
                ("tt_chain_token".to_owned(), "xyz".to_owned())
            ]
        );
        assert!(parse_cookie_string("").is_empty());
    }

    #[test]
    fn rate_limit_says_when_to_retry() {
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", "42".parse().unwrap());
        let err = sign_error(
            429,
            &headers,
            br#"{"message":"Too many connections started, try again later.","limit_label":"anon-minute"}"#,
        );
        let text = err.to_string();
        assert!(text.contains("retry in 42 s"), "{text}");
        assert!(text.contains("(anon-minute)"), "{text}");
        assert_eq!(err.exit(), crate::error::Exit::Refused);
    }

    #[test]
    fn payment_required_explains_key_or_plan() {
        let err = sign_error(402, &HeaderMap::new(), br#"{"message":"premium"}"#);
        assert!(err.to_string().contains("API key"));
        assert_eq!(err.exit(), crate::error::Exit::Refused);
    }
}
