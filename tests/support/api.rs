//! A small blocking HTTP/1.1 and WebSocket client for the tests of `tiklive serve`, plain or over TLS,
//! and a helper that starts the server against the mock on free ports and waits until it is healthy.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_tungstenite::tungstenite::{self, Message, WebSocket};

use super::{FAST, Mock};

/// An HTTP response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Where a running `tiklive serve` listens, and how to reach it.
pub struct Server {
    pub child: Child,
    pub api: SocketAddr,
    pub feed: SocketAddr,
    pub token: Option<String>,
    /// The certificate to trust, for HTTPS.
    pub tls_root: Option<Vec<u8>>,
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `tiklive serve` pointed at the mock, on free ports, with `extra` flags; not yet started.
pub fn serve_command(mock: &Mock, dir: &Path, extra: &[&str]) -> (std::process::Command, u16, u16) {
    let (port, ws_port) = (free_port(), free_port());
    let mut cmd = super::tiklive(dir);
    cmd.env("TIKLIVE_WEB_URL", &mock.web_url)
        .env("TIKLIVE_WEBCAST_URL", &mock.webcast_url)
        .env("TIKLIVE_SIGN_URL", &mock.sign_url)
        .arg("serve")
        .args([
            "--port",
            &port.to_string(),
            "--ws-port",
            &ws_port.to_string(),
        ]);
    for (flag, value) in FAST {
        if !extra.contains(flag) {
            cmd.args([flag, value]);
        }
    }
    cmd.args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    (cmd, port, ws_port)
}

impl Server {
    /// Starts the server and waits until `/health` answers 200.
    pub fn start(mock: &Mock, dir: &Path, extra: &[&str]) -> Server {
        let (mut cmd, port, ws_port) = serve_command(mock, dir, extra);
        let child = cmd.spawn().expect("spawn tiklive serve");
        let server = Server {
            child,
            api: SocketAddr::from(([127, 0, 0, 1], port)),
            feed: SocketAddr::from(([127, 0, 0, 1], ws_port)),
            token: None,
            tls_root: None,
        };
        server.wait_healthy();
        server
    }

    pub fn wait_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = self.try_request("GET", "/health", None)
                && r.status == 200
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "tiklive serve did not become healthy"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn get(&self, path: &str) -> Response {
        self.request("GET", path, None)
    }

    pub fn request(&self, method: &str, path: &str, body: Option<&str>) -> Response {
        self.try_request(method, path, body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    pub fn try_request(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> std::io::Result<Response> {
        let mut headers = Vec::new();
        if let Some(token) = &self.token {
            headers.push(("Authorization".to_owned(), format!("Bearer {token}")));
        }
        http_request(
            self.api,
            self.tls_root.as_deref(),
            method,
            path,
            &headers,
            body.map(str::as_bytes),
        )
    }

    /// Polls `GET path` until `ready` accepts the JSON.
    pub fn wait_for(
        &self,
        path: &str,
        what: &str,
        ready: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let r = self.get(path);
            let value = r.json();
            if ready(&value) {
                return value;
            }
            assert!(
                Instant::now() < deadline,
                "waited in vain for {what}: {value}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A WebSocket client of the feed at `addr` + `path`.
    pub fn websocket(
        &self,
        addr: SocketAddr,
        path: &str,
    ) -> Result<WebSocket<TcpStream>, tungstenite::Error> {
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut request = tungstenite::client::IntoClientRequest::into_client_request(format!(
            "ws://{addr}{path}"
        ))
        .unwrap();
        if let Some(token) = &self.token {
            request
                .headers_mut()
                .insert("authorization", format!("Bearer {token}").parse().unwrap());
        }
        tungstenite::client(request, stream)
            .map(|(socket, _)| socket)
            .map_err(|e| match e {
                tungstenite::HandshakeError::Failure(e) => e,
                tungstenite::HandshakeError::Interrupted(_) => {
                    panic!("blocking handshake interrupted")
                }
            })
    }

    /// Sends SIGTERM and collects the output.
    pub fn terminate(mut self) -> super::Output {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let child = std::mem::replace(&mut self.child, dummy_child());
        super::finish(child)
    }
}

fn dummy_child() -> Child {
    std::process::Command::new("true").spawn().unwrap()
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads the next text message of a feed client as JSON.
pub fn next_json(socket: &mut WebSocket<TcpStream>) -> serde_json::Value {
    loop {
        match socket.read().expect("read the feed") {
            Message::Text(text) => return serde_json::from_str(&text).expect("feed JSON"),
            Message::Close(frame) => panic!("the feed closed: {frame:?}"),
            _ => {}
        }
    }
}

/// One request on a new connection (`Connection: close`), over TLS when `tls_root` is given.
pub fn http_request(
    addr: SocketAddr,
    tls_root: Option<&[u8]>,
    method: &str,
    path: &str,
    headers: &[(String, String)],
    body: Option<&[u8]>,
) -> std::io::Result<Response> {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(20)))?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(body) = body {
        head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    head.push_str("\r\n");
    let mut raw = Vec::new();
    match tls_root {
        None => {
            let mut stream = stream;
            stream.write_all(head.as_bytes())?;
            stream.write_all(body.unwrap_or_default())?;
            stream.read_to_end(&mut raw)?;
        }
        Some(root) => {
            let mut tls = tls_client(stream, root);
            tls.write_all(head.as_bytes())?;
            tls.write_all(body.unwrap_or_default())?;
            match tls.read_to_end(&mut raw) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {}
                Err(e) => return Err(e),
            }
        }
    }
    parse_response(&raw)
}

fn tls_client(
    stream: TcpStream,
    root_pem: &[u8],
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    use rustls::pki_types::pem::PemObject;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(root_pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    rustls::StreamOwned::new(conn, stream)
}

fn parse_response(raw: &[u8]) -> std::io::Result<Response> {
    let mut reader = BufReader::new(raw);
    let mut status_line = String::new();
    reader.read_line(&mut status_line)?;
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {status_line:?}")))?;
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest)?;
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked { dechunk(&rest) } else { rest };
    Ok(Response {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(end) = data.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(std::str::from_utf8(&data[..end]).unwrap().trim(), 16)
            .unwrap_or(0);
        if size == 0 {
            break;
        }
        out.extend_from_slice(&data[end + 2..end + 2 + size]);
        data = &data[end + 2 + size + 2..];
    }
    out
}
