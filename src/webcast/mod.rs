//! The TikTok LIVE client: username → room id, the signing service, the WebSocket session with its
//! heartbeats and acks, and reconnection (PROTOCOL.md §1). It hands frames to a `LiveHandler` and knows
//! nothing about what is printed or stored.

mod lookup;
mod session;
mod sign;
mod socket;

use std::time::Duration;

use crate::error::Exit;

pub(crate) use lookup::without_url;
pub use lookup::{RoomInfo, normalise_username, parse_sigi_state};
pub use session::{Incoming, LiveEnd, LiveHandler, Verdict, find_live, reconnect_delay, run_live};
pub use sign::SignedConnection;

/// Everything the client needs, resolved from defaults, `.env`, environment and flags.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Normalised username (no `@`, no URL).
    pub unique_id: String,
    pub room_id: Option<u64>,
    pub web_url: String,
    pub webcast_url: String,
    pub sign_url: String,
    pub sign_api_key: Option<String>,
    pub session_id: Option<String>,
    pub tt_target_idc: Option<String>,
    pub proxy: Option<String>,
    pub user_agent: String,
    pub max_retries: u32,
    pub retry_delay: Duration,
    pub dead_after: Duration,
    pub heartbeat_interval: Duration,
    pub http_timeout: Duration,
    pub compress: bool,
}

/// Why connecting failed. Each variant maps to a documented exit code.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("user @{0} was not found on TikTok, or cannot go live")]
    UserNotFound(String),
    #[error("@{0} is not live right now")]
    Offline(String),
    #[error("could not find the room of @{user}: {reasons}")]
    RoomLookup { user: String, reasons: String },
    #[error(
        "the signing service's rate limit is reached{label}: {message}{retry}. An API key (TIKLIVE_SIGN_API_KEY) raises the limit"
    )]
    SignRateLimited {
        label: String,
        message: String,
        retry: String,
        retry_after: Option<Duration>,
    },
    #[error(
        "the signing service refused the request (HTTP {status}): {message}. It needs an API key (TIKLIVE_SIGN_API_KEY) or a plan that includes this feature"
    )]
    SignUnauthorized { status: u16, message: String },
    #[error("the signing service failed (HTTP {status}): {message}")]
    SignFailed { status: u16, message: String },
    #[error("the signing service answered without {0}; TikTok may be blocking it, try again later")]
    SignIncomplete(&'static str),
    #[error(
        "TikTok rejected the WebSocket connection: {0}. The signed URL was refused; check TIKLIVE_SESSION_ID / TIKLIVE_TT_TARGET_IDC, or try again later"
    )]
    HandshakeRejected(String),
    #[error("{context}: {message}")]
    Network { context: String, message: String },
    #[error("invalid configuration: {0}")]
    Config(String),
}

impl ConnectError {
    pub fn exit(&self) -> Exit {
        match self {
            ConnectError::UserNotFound(_) | ConnectError::Offline(_) => Exit::NotLive,
            ConnectError::SignRateLimited { .. }
            | ConnectError::SignUnauthorized { .. }
            | ConnectError::HandshakeRejected(_) => Exit::Refused,
            ConnectError::RoomLookup { .. }
            | ConnectError::SignFailed { .. }
            | ConnectError::SignIncomplete(_)
            | ConnectError::Network { .. } => Exit::Network,
            ConnectError::Config(_) => Exit::Usage,
        }
    }

    /// Errors worth another try after a delay (a reconnect loop keeps going on these).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ConnectError::Network { .. }
                | ConnectError::SignFailed { .. }
                | ConnectError::SignIncomplete(_)
                | ConnectError::RoomLookup { .. }
        )
    }

    pub(crate) fn network(context: impl Into<String>, err: impl std::fmt::Display) -> Self {
        ConnectError::Network {
            context: context.into(),
            message: err.to_string(),
        }
    }
}

/// Installs the ring crypto provider for rustls once per process (reqwest and the WebSocket share it).
pub fn init_tls() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// Percent-encodes a query component (everything but RFC 3986 unreserved characters).
pub(crate) fn encode_component(value: &str, out: &mut String) {
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

/// Builds `k1=v1&k2=v2` with both sides percent-encoded.
pub(crate) fn query_string<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut out = String::new();
    for (k, v) in pairs {
        if !out.is_empty() {
            out.push('&');
        }
        encode_component(k, &mut out);
        out.push('=');
        encode_component(v, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_components_are_percent_encoded() {
        assert_eq!(
            query_string([("user_agent", "Mozilla/5.0 (X; Y)"), ("a", "1")]),
            "user_agent=Mozilla%2F5.0%20%28X%3B%20Y%29&a=1"
        );
    }

    #[test]
    fn error_classes_map_to_documented_exit_codes() {
        assert_eq!(ConnectError::Offline("x".into()).exit(), Exit::NotLive);
        assert_eq!(
            ConnectError::HandshakeRejected("illegal secret key".into()).exit(),
            Exit::Refused
        );
        assert_eq!(ConnectError::network("x", "y").exit(), Exit::Network);
    }
}
