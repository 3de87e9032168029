//! The desktop flow's callback (OAUTH.md §1.2, §7.3): a one-shot HTTP server on the loopback address
//! of the registered redirect URI, serving its path only, that hands the first callback to
//! [`complete_login`](super::complete_login), shows the browser the outcome, and stops. A timeout
//! tells the user what to check, since TikTok shows its errors on its own page and never comes back.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use super::flow::{Callback, Login, PendingLogins, complete_login};
use super::{OAuthClient, OAuthError};

/// A loopback redirect URI as registered for a desktop app: `http://127.0.0.1:3455/callback/`,
/// `http://localhost:*/callback/` (any port), `http://[::1]:3455/cb`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoopbackRedirect {
    host: String,
    /// `None`: the registered URI has the `*` wildcard port, or none was given; any port will do.
    port: Option<u16>,
    path: String,
}

impl LoopbackRedirect {
    /// Parses the registered URI; `port` (`--port`) replaces its port.
    pub fn parse(uri: &str, port: Option<u16>) -> Result<LoopbackRedirect, OAuthError> {
        let bad = |why: &str| {
            OAuthError::Config(format!(
                "the redirect URI {uri:?} cannot be used by `tiklive login`: {why} (register e.g. \
                 http://127.0.0.1:3455/callback/ for the desktop Login Kit and set TIKTOK_REDIRECT_URI)"
            ))
        };
        let rest = uri
            .strip_prefix("http://")
            .ok_or_else(|| bad("it must start with http://"))?;
        if rest.contains(['?', '#']) {
            return Err(bad("TikTok allows no query or fragment in it"));
        }
        let (authority, path) = match rest.find('/') {
            Some(at) => rest.split_at(at),
            None => (rest, "/"),
        };
        let (host, port_text) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or_else(|| bad("bad IPv6 host"))?;
            (format!("[{host}]"), after.strip_prefix(':'))
        } else {
            match authority.split_once(':') {
                Some((host, port)) => (host.to_owned(), Some(port)),
                None => (authority.to_owned(), None),
            }
        };
        if !matches!(host.as_str(), "127.0.0.1" | "localhost" | "[::1]") {
            return Err(bad("its host must be 127.0.0.1, localhost or [::1]"));
        }
        let registered = match port_text {
            None | Some("*") => None,
            Some(p) => Some(
                p.parse::<u16>()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| bad("bad port"))?,
            ),
        };
        Ok(LoopbackRedirect {
            host,
            port: port.or(registered),
            path: path.to_owned(),
        })
    }

    /// The port to listen on (0: any free one).
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(0)
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    /// The URI with `port`, as sent to TikTok.
    pub fn uri(&self, port: u16) -> String {
        format!("http://{}:{port}{}", self.host, self.path)
    }

    fn bind_addr(&self) -> SocketAddr {
        let ip = if self.host == "[::1]" {
            IpAddr::V6(Ipv6Addr::LOCALHOST)
        } else {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        };
        SocketAddr::new(ip, self.port())
    }
}

/// How the command line runs the desktop flow.
#[derive(Debug, Clone)]
pub struct DesktopLogin {
    pub redirect: LoopbackRedirect,
    /// How long to wait for the browser to come back.
    pub timeout: Duration,
}

/// The whole desktop login: listens on the redirect URI, calls `announce` with the authorize URL (to
/// print it and open a browser), waits for the callback, completes the login and tells the browser.
pub async fn desktop_login(
    client: &OAuthClient,
    db: &Path,
    options: &DesktopLogin,
    announce: impl FnOnce(&str),
) -> Result<Login, OAuthError> {
    let addr = options.redirect.bind_addr();
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| OAuthError::Network {
            context: format!(
                "cannot listen on {addr} for the login callback (is another program using port {}? \
                 use --port, and register the redirect URI with that port or with *)",
                addr.port()
            ),
            message: e.to_string(),
        })?;
    let port = listener
        .local_addr()
        .map_err(|e| OAuthError::Network {
            context: "cannot read the callback port".into(),
            message: e.to_string(),
        })?
        .port();
    let redirect_uri = options.redirect.uri(port);
    tracing::debug!(%redirect_uri, "waiting for the login callback");
    let pending = PendingLogins::new();
    let authorization = pending.begin_with_redirect(client, &redirect_uri, "")?;
    announce(&authorization.url);

    let (tx, mut rx) = mpsc::channel::<(Callback, TcpStream)>(1);
    let path = options.redirect.path().to_owned();
    let accept = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve_connection(stream, path.clone(), tx.clone()));
        }
    });
    let next = tokio::time::timeout(options.timeout, rx.recv()).await;
    // One callback only: later connections are refused or told so.
    accept.abort();
    drop(rx);
    let Ok(Some((callback, mut stream))) = next else {
        return Err(OAuthError::Timeout(format!(
            "no login came back within {}s. Check the page TikTok shows in the browser: it reports \
             problems with the client key, the scopes or the redirect URI there instead of coming back. \
             The redirect URI {redirect_uri} must be registered exactly (scheme, host, port, path, \
             trailing slash) in the Login Kit settings of a desktop app, and your account must be \
             allowed to use the app (a sandbox's target users). Then run `tiklive login` again",
            options.timeout.as_secs()
        )));
    };
    let result = complete_login(client, db, &pending, &callback, "").await;
    let page = match &result {
        Ok(login) => page(
            "Logged in",
            &format!(
                "tiklive is now logged in as {}. You can close this tab.",
                login.account.label()
            ),
        ),
        Err(e) => page("Login failed", &format!("{e}")),
    };
    let status = if result.is_ok() { 200 } else { 400 };
    let _ = respond(&mut stream, status, "text/html; charset=utf-8", &page).await;
    result
}

/// Reads one request; sends a callback on its path to the flow, answers anything else itself.
async fn serve_connection(
    mut stream: TcpStream,
    path: String,
    tx: mpsc::Sender<(Callback, TcpStream)>,
) {
    let Ok(Ok(Some(target))) =
        tokio::time::timeout(Duration::from_secs(10), read_target(&mut stream)).await
    else {
        return;
    };
    let (method, target) = target;
    let (request_path, query) = target.split_once('?').unwrap_or((&target, ""));
    if request_path != path {
        let _ = respond(
            &mut stream,
            404,
            "text/plain; charset=utf-8",
            "Not the login callback.\n",
        )
        .await;
        return;
    }
    if method != "GET" {
        let _ = respond(&mut stream, 405, "text/plain; charset=utf-8", "GET only.\n").await;
        return;
    }
    let callback = Callback::from_query(query);
    // Only the first callback is taken; later ones find the channel full or closed.
    if let Err(e) = tx.try_send((callback, stream)) {
        let (_, mut stream) = e.into_inner();
        let _ = respond(
            &mut stream,
            409,
            "text/plain; charset=utf-8",
            "This login is already being completed.\n",
        )
        .await;
    }
}

/// The method and target of an HTTP/1.x request line (the head is read up to 16 KiB).
async fn read_target(stream: &mut TcpStream) -> std::io::Result<Option<(String, String)>> {
    let mut buf = Vec::with_capacity(2048);
    let mut chunk = [0u8; 2048];
    loop {
        if buf.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
        if buf.len() > 16 * 1024 {
            return Ok(None);
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let head = String::from_utf8_lossy(&buf);
    let mut parts = head.lines().next().unwrap_or("").split(' ');
    match (parts.next(), parts.next()) {
        (Some(method), Some(target)) => Ok(Some((method.to_owned(), target.to_owned()))),
        _ => Ok(None),
    }
}

async fn respond(
    stream: &mut TcpStream,
    status: u16,
    content_type: &str,
    body: &str,
) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        _ => "Bad Request",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nReferrer-Policy: no-referrer\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.flush().await?;
    stream.shutdown().await
}

/// A minimal HTML page; `text` is escaped.
fn page(title: &str, text: &str) -> String {
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>tiklive: {title}</title></head>\
         <body><h1>{title}</h1><p>{}</p></body></html>\n",
        escape_html(text)
    )
}

fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_redirects_parse_with_their_port_or_a_wildcard() {
        let r = LoopbackRedirect::parse("http://127.0.0.1:3455/callback/", None).unwrap();
        assert_eq!((r.port(), r.path()), (3455, "/callback/"));
        assert_eq!(r.uri(3455), "http://127.0.0.1:3455/callback/");
        let r = LoopbackRedirect::parse("http://localhost:*/cb", None).unwrap();
        assert_eq!(r.port(), 0);
        assert_eq!(r.uri(5000), "http://localhost:5000/cb");
        let r = LoopbackRedirect::parse("http://127.0.0.1:3455/callback/", Some(4000)).unwrap();
        assert_eq!(r.port(), 4000);
        let r = LoopbackRedirect::parse("http://[::1]:3455", None).unwrap();
        assert_eq!(r.uri(3455), "http://[::1]:3455/");
        for bad in [
            "https://127.0.0.1:3455/callback/",
            "http://example.com:3455/callback/",
            "http://127.0.0.1:3455/callback/?x=1",
            "http://127.0.0.1:99999/callback/",
            "http://127.0.0.1:abc/",
            "127.0.0.1:3455",
        ] {
            assert!(
                matches!(
                    LoopbackRedirect::parse(bad, None),
                    Err(OAuthError::Config(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn pages_escape_what_they_show() {
        let html = page("Login failed", "error=<script>&\"'");
        assert!(
            html.contains("error=&lt;script&gt;&amp;&quot;&#39;"),
            "{html}"
        );
    }
}
