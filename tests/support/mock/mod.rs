//! A strict loopback stand-in for every network peer of `tiklive watch`: TikTok's web site (live page,
//! api-live), its webcast API (room info), the signing service and the push WebSocket. Each peer listens
//! on its own port, answers like the real one (PROTOCOL.md §1–§2, §5), refuses what the real one
//! refuses, and records what the client sent so that tests can assert it. Anything the client does that
//! TikTok would not accept is recorded as a violation; tests assert there are none.

mod peers;
pub use peers::room_title;
mod push;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tiklive::protocol::{BaseMessage, HeartBeat, ImEnterRoom};
use tokio::net::TcpListener;
use tokio::runtime::Runtime;

use super::http::Request;
use super::messages::ROOM_ID;

/// How long the mock waits for something the client must do (enter, ack, heartbeat, leave) before it
/// records a violation. Generous: the machine running the tests may be loaded.
const CLIENT_DEADLINE: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------------------
// What a test asks the mock to do

/// A TikTok account as the web site and webcast API describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// Live in this room.
    Live(u64),
    /// Has this room but is not live (status 4 everywhere).
    Offline(u64),
    /// No such user: SIGI_STATE without `LiveRoom`, api-live `user_not_found`.
    Unknown,
    /// Live in this room, but the live page is a captcha page without SIGI_STATE, so only api-live
    /// gives the room.
    BlockedPage(u64),
    /// Offline in this room for the first `n` requests of their live page, live from then on (a
    /// host who starts a live while tiklive waits).
    LiveAfter(u64, usize),
    /// Live in this room, but the live page and api-live answer 503 until api-live has been asked
    /// `n` times (TikTok failing the first `n` lookups).
    Unavailable(u64, usize),
}

/// How a push frame's payload is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enc {
    /// gzip with `compress_type: gzip` when the client asked for `compress=gzip`, raw otherwise.
    Auto,
    /// Raw, `compress_type: none`, whatever the client asked.
    Plain,
    /// gzip without any header (peers detect it by the magic bytes), only when the client asked for
    /// gzip; raw otherwise.
    GzipNoHeader,
    /// `compress_type: gzip` and a payload that starts like gzip but is not; no ack is expected.
    CorruptGzip,
}

/// One thing the push server does on a connection, in order.
#[derive(Debug, Clone)]
pub enum Step {
    /// A `msg` frame carrying these messages in a fetch result with a new cursor and `need_ack`.
    Frame(Enc, Vec<BaseMessage>),
    /// These bytes as one binary WebSocket message (a captured frame, or garbage).
    Raw(Vec<u8>),
    /// A text WebSocket message (TikTok sends none; clients ignore them).
    Text(String),
    /// Wait until the client has sent this many heartbeats on this connection.
    WaitHeartbeats(usize),
    /// Wait until the test calls `Mock::release`.
    WaitRelease,
    /// Wait for every ack, then drop the TCP connection without a close frame.
    Drop,
    /// Wait for every ack, then send a close frame with this code and reason.
    Close(u16, String),
    /// Wait for every ack, then send nothing more while the socket stays open.
    Silence,
    /// Await this future, then send its messages as a `msg` frame like [`Step::Frame`]: a bench paces
    /// frames by wall clock and stamps messages at the moment they are sent.
    Lazy(Lazy),
}

/// Messages that will be ready later.
pub type LaterMessages =
    std::pin::Pin<Box<dyn std::future::Future<Output = Vec<BaseMessage>> + Send>>;

/// The messages of a [`Step::Lazy`], made when the step is reached.
#[derive(Clone)]
pub struct Lazy(pub Arc<dyn Fn() -> LaterMessages + Send + Sync>);

impl std::fmt::Debug for Lazy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Lazy(..)")
    }
}

impl Step {
    pub fn frame(messages: Vec<BaseMessage>) -> Step {
        Step::Frame(Enc::Auto, messages)
    }
}

/// What the push server does with the n-th WebSocket connection.
#[derive(Debug, Clone)]
pub enum Conn {
    Script(Vec<Step>),
    /// Check the handshake, then refuse it the way TikTok does (200 + `handshake-msg`).
    RejectHandshake,
    /// Close the TCP connection as soon as it is accepted.
    RefuseTcp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignMode {
    Normal,
    /// Answer 429 with `retry-after` set to this many seconds.
    RateLimited {
        retry_after: u64,
    },
    /// Answer 200 without the `x-set-tt-cookie` header (TikTok detected the sign server).
    NoCookie,
    /// Answer 200 with a fetch result whose cursor is empty (a blocked initial fetch).
    NoCursor,
}

#[derive(Debug, Clone)]
pub struct Scenario {
    pub hosts: Vec<(String, Host)>,
    /// When set, the signing service requires this `x-api-key`.
    pub api_key: Option<String>,
    /// How the n-th signing request is answered; beyond the list, like its last entry (`Normal` when
    /// empty).
    pub sign: Vec<SignMode>,
    /// Messages in the fetch result of the n-th signing answer (the "history").
    pub histories: Vec<Vec<BaseMessage>>,
    /// Plans of the WebSocket connections, in order; connections beyond the list are refused (TCP).
    pub conns: Vec<Conn>,
    /// Any request to the web site is a violation (the client was given `--room-id`).
    pub forbid_web: bool,
    /// When set, room info reports the live rooms offline after this many room-info requests (the
    /// host ends the live while the client is away).
    pub live_room_infos: Option<usize>,
    /// A logged-in client: `(session id, data centre)`. TikTok then expects the session cookies and the
    /// account's `tt-target-idc` everywhere, and the signing service the session in `x-cookie-header`.
    pub session: Option<(String, String)>,
}

impl Default for Scenario {
    fn default() -> Self {
        Scenario {
            hosts: vec![("seller".into(), Host::Live(ROOM_ID))],
            api_key: None,
            sign: Vec::new(),
            histories: Vec::new(),
            conns: Vec::new(),
            forbid_web: false,
            live_room_infos: None,
            session: None,
        }
    }
}

impl Scenario {
    pub fn host(mut self, user: &str, host: Host) -> Self {
        self.hosts.push((user.into(), host));
        self
    }
    pub fn api_key(mut self, key: &str) -> Self {
        self.api_key = Some(key.into());
        self
    }
    /// Every signing request gets a 429 with `retry-after: 42`.
    pub fn rate_limited(mut self) -> Self {
        self.sign = vec![SignMode::RateLimited { retry_after: 42 }];
        self
    }
    pub fn sign_answers(mut self, answers: Vec<SignMode>) -> Self {
        self.sign = answers;
        self
    }
    pub fn ends_after_room_infos(mut self, n: usize) -> Self {
        self.live_room_infos = Some(n);
        self
    }
    pub fn history(mut self, messages: Vec<BaseMessage>) -> Self {
        self.histories.push(messages);
        self
    }
    pub fn script(mut self, steps: Vec<Step>) -> Self {
        self.conns.push(Conn::Script(steps));
        self
    }
    pub fn conn(mut self, conn: Conn) -> Self {
        self.conns.push(conn);
        self
    }
    pub fn session(mut self, id: &str, idc: &str) -> Self {
        self.session = Some((id.into(), idc.into()));
        self
    }
    pub fn forbid_web(mut self) -> Self {
        self.forbid_web = true;
        self
    }
}

// ---------------------------------------------------------------------------------------------------
// What the mock saw

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Web,
    Webcast,
    Sign,
}

#[derive(Debug, Clone)]
pub struct HttpRecord {
    pub role: Role,
    pub request: Request,
    pub status: u16,
}

/// One request to the signing service and, when it succeeded, what it handed out.
#[derive(Debug, Clone, Default)]
pub struct Signing {
    pub room_id: u64,
    pub status: u16,
    /// The `cursor` parameter: empty on a fresh connect, the last cursor seen on a reconnect.
    pub cursor_asked: String,
    pub user_agent: String,
    pub api_key: Option<String>,
    /// The `x-cookie-header` sent for a logged-in connection.
    pub cookie_header: Option<String>,
    pub imprp: String,
    pub ttwid: String,
    pub chain_token: String,
    pub cursor: String,
    pub internal_ext: String,
    /// A WebSocket was opened with this signature (it may be used once).
    pub used: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameEnc {
    Gzip,
    Plain,
    GzipNoHeader,
    CorruptGzip,
    Raw,
    Text,
    /// A frame that is not a `msg` batch (`im_enter_room_resp`).
    Control,
}

/// A frame the mock sent.
#[derive(Debug, Clone)]
pub struct Sent {
    pub log_id: u64,
    pub enc: FrameEnc,
    /// The internal_ext the ack must carry, when the frame asked for one.
    pub ack: Option<String>,
    pub cursor: Option<String>,
    pub msg_ids: Vec<u64>,
}

/// A frame the client sent.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientFrame {
    Enter(ImEnterRoom),
    Heartbeat(HeartBeat),
    Ack { log_id: u64, payload: Vec<u8> },
    Other(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handshake {
    Pending,
    Accepted,
    /// Answered 200 with this `handshake-msg`.
    Rejected(String),
    RefusedTcp,
    /// Not a WebSocket upgrade the mock could answer.
    Invalid(String),
}

#[derive(Debug, Clone)]
pub struct WsConn {
    pub handshake: Handshake,
    pub request: Option<Request>,
    /// Index of the signing whose URL was used.
    pub signing: Option<usize>,
    /// The client asked for `compress=gzip`.
    pub gzip: bool,
    pub from_client: Vec<ClientFrame>,
    pub sent: Vec<Sent>,
    pub acked: Vec<u64>,
    /// How the client's side ended: `close <code>`, `eof`, `error: …`, or `dropped by the mock`.
    pub end: Option<String>,
}

impl WsConn {
    fn new() -> Self {
        WsConn {
            handshake: Handshake::Pending,
            request: None,
            signing: None,
            gzip: false,
            from_client: Vec::new(),
            sent: Vec::new(),
            acked: Vec::new(),
            end: None,
        }
    }

    pub fn entered(&self) -> bool {
        matches!(self.from_client.first(), Some(ClientFrame::Enter(_)))
    }

    pub fn heartbeat_seqs(&self) -> Vec<u64> {
        self.from_client
            .iter()
            .filter_map(|f| match f {
                ClientFrame::Heartbeat(hb) => Some(hb.send_packet_seq_id),
                _ => None,
            })
            .collect()
    }

    /// Log ids of frames that asked for an ack and did not get one.
    pub fn unacked(&self) -> Vec<u64> {
        self.sent
            .iter()
            .filter(|s| s.ack.is_some() && !self.acked.contains(&s.log_id))
            .map(|s| s.log_id)
            .collect()
    }

    /// The cursor of the last decodable batch sent.
    pub fn last_cursor(&self) -> Option<&str> {
        self.sent.iter().rev().find_map(|s| s.cursor.as_deref())
    }
}

#[derive(Debug, Clone, Default)]
pub struct State {
    pub requests: Vec<HttpRecord>,
    pub signings: Vec<Signing>,
    pub conns: Vec<WsConn>,
    /// Everything the client did that TikTok would not accept.
    pub violations: Vec<String>,
    pub released: bool,
    /// WebSocket connections still being served.
    pub active: usize,
    next_log_id: u64,
}

impl State {
    pub fn requests(&self, role: Role) -> Vec<&HttpRecord> {
        self.requests.iter().filter(|r| r.role == role).collect()
    }

    /// How many times `user`'s live page was answered: one per check of whether they are live.
    pub fn live_page_requests(&self, user: &str) -> usize {
        let page = format!("/@{user}/live");
        self.requests(Role::Web)
            .iter()
            .filter(|r| r.request.path == page)
            .count()
    }

    /// How many times room info was asked for, about any room.
    pub fn room_info_requests(&self) -> usize {
        self.requests(Role::Webcast)
            .iter()
            .filter(|r| r.request.path == "/webcast/room/info/")
            .count()
    }

    /// How many times api-live was asked about `user` and answered.
    pub fn api_live_requests(&self, user: &str) -> usize {
        self.requests(Role::Web)
            .iter()
            .filter(|r| {
                r.request.path == "/api-live/user/room/"
                    && r.request.param("uniqueId") == Some(user)
            })
            .count()
    }

    pub fn accepted(&self) -> Vec<&WsConn> {
        self.conns
            .iter()
            .filter(|c| c.handshake == Handshake::Accepted)
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------------
// The servers

struct Shared {
    scenario: Scenario,
    ws_port: u16,
    state: Mutex<State>,
    changed: Condvar,
    notify: tokio::sync::Notify,
    ws_index: AtomicUsize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn update<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let r = f(&mut self.lock());
        self.changed.notify_all();
        self.notify.notify_waiters();
        r
    }

    fn violation(&self, text: String) {
        self.update(|s| s.violations.push(text));
    }

    /// Waits until `cond` holds; false on timeout.
    async fn wait_until(&self, timeout: Duration, mut cond: impl FnMut(&State) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if cond(&self.lock()) {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return cond(&self.lock());
            }
        }
    }

    fn host_of_room(&self, room_id: u64) -> Option<Host> {
        self.scenario
            .hosts
            .iter()
            .find(|(_, h)| match h {
                Host::Live(r)
                | Host::Offline(r)
                | Host::BlockedPage(r)
                | Host::LiveAfter(r, _)
                | Host::Unavailable(r, _) => *r == room_id,
                Host::Unknown => false,
            })
            .map(|(user, host)| self.now(user, host))
    }

    fn host_of_user(&self, user: &str) -> Host {
        self.scenario
            .hosts
            .iter()
            .find(|(u, _)| u == user)
            .map_or(Host::Unknown, |(user, host)| self.now(user, host))
    }

    /// What a host is at this moment: `LiveAfter(room, n)` turns live once their live page has been
    /// answered `n` times, `Unavailable(room, n)` once api-live has (requests are recorded once
    /// answered).
    fn now(&self, user: &str, host: &Host) -> Host {
        match *host {
            Host::LiveAfter(room, n) => {
                if self.lock().live_page_requests(user) >= n {
                    Host::Live(room)
                } else {
                    Host::Offline(room)
                }
            }
            Host::Unavailable(room, n) if self.lock().api_live_requests(user) >= n => {
                Host::Live(room)
            }
            ref other => other.clone(),
        }
    }
}

/// The running mock. Dropping it stops every server.
pub struct Mock {
    shared: Arc<Shared>,
    pub web_url: String,
    pub webcast_url: String,
    pub sign_url: String,
    runtime: Option<Runtime>,
}

impl Mock {
    /// The port of the push server (the WebSocket).
    pub fn ws_port(&self) -> u16 {
        self.shared.ws_port
    }

    pub fn start(scenario: Scenario) -> Mock {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("mock runtime");
        let bind = || {
            runtime
                .block_on(TcpListener::bind("127.0.0.1:0"))
                .expect("bind a loopback port")
        };
        let (web, webcast, sign, ws) = (bind(), bind(), bind(), bind());
        let url = |l: &TcpListener| format!("http://{}", l.local_addr().unwrap());
        let (web_url, webcast_url, sign_url) = (url(&web), url(&webcast), url(&sign));
        let shared = Arc::new(Shared {
            scenario,
            ws_port: ws.local_addr().unwrap().port(),
            state: Mutex::new(State {
                next_log_id: 7_390_000_000_000_000_001,
                ..Default::default()
            }),
            changed: Condvar::new(),
            notify: tokio::sync::Notify::new(),
            ws_index: AtomicUsize::new(0),
        });
        for (listener, role) in [
            (web, Role::Web),
            (webcast, Role::Webcast),
            (sign, Role::Sign),
        ] {
            let shared = shared.clone();
            runtime.spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    tokio::spawn(peers::serve_http(shared.clone(), role, stream));
                }
            });
        }
        {
            let shared = shared.clone();
            runtime.spawn(async move {
                while let Ok((stream, _)) = ws.accept().await {
                    let index = shared.ws_index.fetch_add(1, Ordering::SeqCst);
                    shared.update(|s| {
                        s.conns.push(WsConn::new());
                        s.active += 1;
                    });
                    let shared = shared.clone();
                    tokio::spawn(async move {
                        push::serve_ws(&shared, index, stream).await;
                        shared.update(|s| s.active -= 1);
                    });
                }
            });
        }
        Mock {
            shared,
            web_url,
            webcast_url,
            sign_url,
            runtime: Some(runtime),
        }
    }

    /// A snapshot of everything recorded so far.
    pub fn state(&self) -> State {
        self.shared.lock().clone()
    }

    /// Lets scripts waiting at `Step::WaitRelease` go on.
    pub fn release(&self) {
        self.shared.update(|s| s.released = true);
    }

    /// Waits until every WebSocket connection has been fully served (call it after the client exited),
    /// then returns the final state.
    pub fn finished(&self) -> State {
        let deadline = std::time::Instant::now() + CLIENT_DEADLINE + Duration::from_secs(10);
        let mut state = self.shared.lock();
        while state.active > 0 {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            assert!(
                !left.is_zero(),
                "the mock is still serving {} WebSocket connection(s): {:#?}",
                state.active,
                state.conns
            );
            state = self
                .shared
                .changed
                .wait_timeout(state, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        state.clone()
    }
}

impl Drop for Mock {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn token(len: usize) -> String {
    std::iter::repeat_with(fastrand::alphanumeric)
        .take(len)
        .collect()
}
