//! Opening the webcast WebSocket (§1.6): the URL built from the fetch result, the signed User-Agent and
//! cookies, an HTTP CONNECT tunnel when a proxy is configured, and TikTok's "200 instead of 101"
//! handshake rejection.

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream, tungstenite};

use super::lookup::{Http, cookie_header};
use super::{ConnectError, SignedConnection, encode_component};

pub(super) type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The push server URL with the query string the web client sends, route params last (they override
/// ours on collision), then the literal `version_code=270000` suffix of the production client.
pub(super) fn socket_url(signed: &SignedConnection, user_agent: &str, compress: bool) -> String {
    let result = &signed.result;
    let (browser_name, browser_version) = user_agent.split_once('/').unwrap_or((user_agent, ""));
    let room_id = signed.room_id.to_string();
    let last_rtt = fastrand::u32(100..=200).to_string();
    let mut params: Vec<(&str, &str)> = vec![
        ("version_code", "180800"),
        ("aid", "1988"),
        ("app_language", "en"),
        ("app_name", "tiktok_web"),
        (
            "browser_platform",
            if user_agent.contains("Windows") {
                "Win32"
            } else {
                "MacIntel"
            },
        ),
        ("browser_language", "en-US"),
        ("browser_name", browser_name),
        ("browser_version", browser_version),
        ("browser_online", "true"),
        ("cookie_enabled", "true"),
        ("tz_name", "Europe/Berlin"),
        ("device_platform", "web"),
        ("identity", "audience"),
        ("live_id", "12"),
        ("webcast_language", "en"),
        ("ws_direct", "0"),
        ("sup_ws_ds_opt", "1"),
        ("update_version_code", "2.0.0"),
        ("did_rule", "3"),
        ("screen_height", "1080"),
        ("screen_width", "1920"),
        ("heartbeat_duration", "0"),
        ("resp_content_type", "protobuf"),
        ("history_comment_count", "6"),
        ("client_enter", "1"),
        ("last_rtt", &last_rtt),
        ("room_id", &room_id),
        ("internal_ext", &result.internal_ext),
        ("cursor", &result.cursor),
    ];
    if compress {
        params.insert(params.len() - 3, ("compress", "gzip"));
    }
    for route in &result.route_params {
        if route.value.is_empty() {
            continue;
        }
        params.retain(|(k, _)| *k != route.key);
        params.push((&route.key, &route.value));
    }
    let mut url = result.push_server.clone();
    url.push(if url.contains('?') { '&' } else { '?' });
    for (i, (k, v)) in params.iter().enumerate() {
        if i > 0 {
            url.push('&');
        }
        encode_component(k, &mut url);
        url.push('=');
        encode_component(v, &mut url);
    }
    url.push_str("&version_code=270000");
    url
}

fn tls_connector() -> Connector {
    super::init_tls();
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Connector::Rustls(Arc::new(config))
}

/// Opens the WebSocket and completes the handshake within the HTTP timeout.
pub(super) async fn open(
    http: &Http,
    url: &str,
    cookies: &[(String, String)],
) -> Result<Socket, ConnectError> {
    let mut request = url
        .into_client_request()
        .map_err(|e| ConnectError::network("the push server URL is invalid", e))?;
    let headers = request.headers_mut();
    let header = |v: &str| {
        HeaderValue::from_str(v)
            .map_err(|_| ConnectError::Config("a header value has invalid characters".into()))
    };
    headers.insert("user-agent", header(&http.config.user_agent)?);
    headers.insert("cookie", header(&cookie_header(cookies))?);
    let config = WebSocketConfig::default()
        .max_message_size(Some(crate::recording::MAX_RECORD))
        .max_frame_size(Some(crate::recording::MAX_RECORD));
    let secure = url.starts_with("wss:");
    let connector = secure.then(tls_connector);
    let connect = async {
        match &http.config.proxy {
            None => {
                tokio_tungstenite::connect_async_tls_with_config(
                    request,
                    Some(config),
                    true,
                    connector,
                )
                .await
            }
            Some(proxy) => {
                let stream = tunnel(proxy, url)
                    .await
                    .map_err(|e| tungstenite::Error::Io(std::io::Error::other(e.to_string())))?;
                tokio_tungstenite::client_async_tls_with_config(
                    request,
                    stream,
                    Some(config),
                    connector,
                )
                .await
            }
        }
    };
    let timeout = http
        .config
        .http_timeout
        .max(std::time::Duration::from_secs(1));
    match tokio::time::timeout(timeout, connect).await {
        Err(_) => Err(ConnectError::network(
            "cannot open the WebSocket",
            format!("no handshake within {} s", timeout.as_secs_f32()),
        )),
        Ok(Ok((socket, _response))) => Ok(socket),
        Ok(Err(tungstenite::Error::Http(response))) => {
            let status = response.status().as_u16();
            let header = |name: &str| {
                response
                    .headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            if status == 200 {
                let reason = header("handshake-msg").unwrap_or_else(|| "no reason given".into());
                let code = header("handshake-status").unwrap_or_default();
                Err(ConnectError::HandshakeRejected(
                    format!("{reason} {code}").trim().to_owned(),
                ))
            } else {
                Err(ConnectError::network(
                    "the WebSocket handshake failed",
                    format!("HTTP {status}"),
                ))
            }
        }
        Ok(Err(e)) => Err(ConnectError::network("cannot open the WebSocket", e)),
    }
}

/// Opens an HTTP CONNECT tunnel through `proxy` to the host of `target`.
async fn tunnel(proxy: &str, target: &str) -> Result<TcpStream, ConnectError> {
    let bad = || ConnectError::Config("--proxy is not a valid http:// proxy URL".into());
    let proxy = reqwest::Url::parse(proxy).map_err(|_| bad())?;
    if proxy.scheme() != "http" {
        return Err(ConnectError::Config(
            "only http:// proxies can carry the WebSocket".into(),
        ));
    }
    let proxy_host = proxy.host_str().ok_or_else(bad)?;
    let proxy_port = proxy.port_or_known_default().unwrap_or(3128);
    let target = reqwest::Url::parse(target)
        .map_err(|e| ConnectError::network("the push server URL is invalid", e))?;
    let host = target
        .host_str()
        .ok_or_else(|| ConnectError::network("the push server URL is invalid", "no host"))?;
    let port = target
        .port_or_known_default()
        .unwrap_or(if target.scheme() == "wss" { 443 } else { 80 });
    let mut stream = TcpStream::connect((proxy_host, proxy_port))
        .await
        .map_err(|e| ConnectError::network("cannot reach the proxy", e))?;
    let mut request = format!("CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n");
    if !proxy.username().is_empty() {
        let credentials = format!(
            "{}:{}",
            percent_decode(proxy.username()),
            percent_decode(proxy.password().unwrap_or(""))
        );
        request.push_str(&format!(
            "Proxy-Authorization: Basic {}\r\n",
            crate::base64(credentials.as_bytes())
        ));
    }
    request.push_str("\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| ConnectError::network("cannot talk to the proxy", e))?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 16 * 1024 {
            return Err(ConnectError::network(
                "the proxy answered",
                "an oversized header",
            ));
        }
        let n = stream
            .read(&mut byte)
            .await
            .map_err(|e| ConnectError::network("cannot talk to the proxy", e))?;
        if n == 0 {
            return Err(ConnectError::network(
                "the proxy closed the tunnel",
                "no answer",
            ));
        }
        head.push(byte[0]);
    }
    let status_line = String::from_utf8_lossy(&head);
    let status_line = status_line.lines().next().unwrap_or("");
    if status_line.split_whitespace().nth(1) != Some("200") {
        return Err(ConnectError::network(
            "the proxy refused the tunnel",
            status_line.to_owned(),
        ));
    }
    Ok(stream)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).and_then(|&b| hex(b)),
                bytes.get(i + 2).and_then(|&b| hex(b)),
            )
        {
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{FetchResult, HeaderEntry};

    fn signed(push_server: &str) -> SignedConnection {
        SignedConnection {
            result: FetchResult {
                cursor: "c_1".into(),
                internal_ext: "fetch_time:1|x".into(),
                push_server: push_server.into(),
                route_params: vec![
                    HeaderEntry {
                        key: "imprp".into(),
                        value: "abc".into(),
                    },
                    HeaderEntry {
                        key: "ws_direct".into(),
                        value: "1".into(),
                    },
                    HeaderEntry {
                        key: "empty".into(),
                        value: String::new(),
                    },
                ],
                ..Default::default()
            },
            result_bytes: Default::default(),
            cookies: Vec::new(),
            room_id: 42,
        }
    }

    #[test]
    fn socket_url_carries_cursor_route_params_and_version_suffix() {
        let url = socket_url(
            &signed("wss://push.example/webcast/im/push/"),
            "Mozilla/5.0 (X)",
            true,
        );
        assert!(
            url.starts_with("wss://push.example/webcast/im/push/?version_code=180800&aid=1988")
        );
        assert!(url.contains("&compress=gzip&"));
        assert!(url.contains("&room_id=42&internal_ext=fetch_time%3A1%7Cx&cursor=c_1"));
        assert!(url.contains("&imprp=abc"));
        assert!(url.contains("&ws_direct=1"));
        assert!(!url.contains("ws_direct=0"));
        assert!(!url.contains("empty="));
        assert!(url.ends_with("&version_code=270000"));
        let plain = socket_url(&signed("ws://h/p?x=1"), "UA", false);
        assert!(plain.starts_with("ws://h/p?x=1&version_code=180800"));
        assert!(!plain.contains("compress"));
    }

    #[test]
    fn basic_auth_is_standard_base64() {
        assert_eq!(crate::base64(b"user:pass"), "dXNlcjpwYXNz");
        assert_eq!(percent_decode("p%40ss"), "p@ss");
    }
}
