//! `cargo bench --bench serve`: fan-out latency and memory of `tiklive serve` (issue 4). The loopback
//! mock of TikTok (the tests' one) pushes chat at a steady rate, paced by wall clock (by default 100
//! frames/s of 50 messages: 5,000 events/s, for 20 s); every comment carries the time its frame was
//! built and sent (`bench t=<unix nanos>`). The release `tiklive serve` follows the live and stores
//! everything, as usual; SERVE_CLIENTS (500) WebSocket clients in this process read `/ws` (a lean
//! frame reader on a plain socket, so that the clients take little of the two cores the server runs
//! on), find the stamp by substring search and record receive time minus stamp in a fixed-bucket
//! histogram each, merged at the end. The server's VmRSS and VmHWM are sampled from /proc every 250 ms.
//!
//! Knobs: SERVE_CLIENTS, SERVE_EVENTS_PER_SEC, SERVE_SECONDS, SERVE_PER_FRAME (messages per push
//! frame). Targets: p99 < 20 ms, peak RSS < 100 MB, every event delivered to every client; the verdict
//! is printed, and SERVE_STRICT=1 makes a miss exit with status 1.

#[path = "../tests/support/mod.rs"]
mod support;

use std::net::SocketAddr;
use std::process::Stdio;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use support::api::{Server, free_port};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

type Frame = std::pin::Pin<
    Box<dyn std::future::Future<Output = Vec<tiklive::protocol::BaseMessage>> + Send>,
>;

const MARK: &str = "bench t=";
const TARGET_P99_MS: f64 = 20.0;
const TARGET_RSS_MB: f64 = 100.0;

fn knob<T: FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// Latency buckets: 50 µs wide up to 100 ms, then 5 ms wide up to 10 s, then one overflow bucket.
const FINE: u64 = 50;
const FINE_END: u64 = 100_000;
const COARSE: u64 = 5_000;
const COARSE_END: u64 = 10_000_000;
const BUCKETS: usize = (FINE_END / FINE + (COARSE_END - FINE_END) / COARSE + 1) as usize;

fn bucket(us: u64) -> usize {
    if us < FINE_END {
        (us / FINE) as usize
    } else if us < COARSE_END {
        (FINE_END / FINE + (us - FINE_END) / COARSE) as usize
    } else {
        BUCKETS - 1
    }
}

/// The upper bound of a bucket, in µs.
fn bucket_top(b: usize) -> u64 {
    let b = b as u64;
    if b < FINE_END / FINE {
        (b + 1) * FINE
    } else {
        FINE_END + (b + 1 - FINE_END / FINE) * COARSE
    }
}

/// What one client saw.
struct ClientResult {
    hist: Vec<u64>,
    events: u64,
    max_us: u64,
    closed: Option<String>,
}

fn main() {
    let clients: usize = knob("SERVE_CLIENTS", 500);
    let rate: usize = knob("SERVE_EVENTS_PER_SEC", 5_000);
    let seconds: u64 = knob("SERVE_SECONDS", 20);
    let per_frame: usize = knob("SERVE_PER_FRAME", 50).clamp(1, rate);
    let fps = (rate / per_frame).max(1);
    let frames = fps * seconds as usize;
    let events = (frames * per_frame) as u64;
    let period = Duration::from_secs_f64(1.0 / fps as f64);

    // The script: wait until the clients are in, then one frame every `period` from `start`.
    let start: Arc<OnceLock<Instant>> = Arc::new(OnceLock::new());
    let messages = Arc::new(Mutex::new(Messages::new(ROOM_ID)));
    let users: Arc<Vec<_>> = Arc::new(
        (0..500)
            .map(|i| {
                viewer(
                    6_900_000_000_000_100_000 + i,
                    &format!("Acheteuse {i} ✨"),
                    &format!("buyer_{i}"),
                )
            })
            .collect(),
    );
    let first_sent = Arc::new(AtomicU64::new(0));
    let last_sent = Arc::new(AtomicU64::new(0));
    let mut steps = vec![Step::WaitRelease];
    for k in 0..frames {
        let (start, messages, users) = (start.clone(), messages.clone(), users.clone());
        let (first_sent, last_sent) = (first_sent.clone(), last_sent.clone());
        steps.push(Step::Lazy(Lazy(Arc::new(move || {
            let (start, messages, users) = (start.clone(), messages.clone(), users.clone());
            let (first_sent, last_sent) = (first_sent.clone(), last_sent.clone());
            let frame: Frame = Box::pin(async move {
                let at = *start.get().expect("start set before release") + period * k as u32;
                tokio::time::sleep_until(at.into()).await;
                let now = unix_nanos();
                let _ = first_sent.compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
                last_sent.store(now, Ordering::Relaxed);
                let mut m = messages.lock().unwrap();
                (0..per_frame)
                    .map(|i| {
                        let user = &users[(k * per_frame + i) % users.len()];
                        m.chat(user, &format!("{MARK}{now} frame {k} #{i}"))
                    })
                    .collect()
            });
            frame
        }))));
    }
    steps.push(Step::Silence);
    let mock = Mock::start(Scenario::default().script(steps));

    // The release server, storing in a new database.
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let db = dir.path().join("serve.db");
    let mut cmd = tiklive(dir.path());
    cmd.env("TIKLIVE_WEB_URL", &mock.web_url)
        .env("TIKLIVE_WEBCAST_URL", &mock.webcast_url)
        .env("TIKLIVE_SIGN_URL", &mock.sign_url)
        .arg("serve")
        .args(["--user", "@seller", "--port", &port.to_string()])
        .args(["--ws-port", "0", "--db"])
        .arg(&db);
    for (flag, value) in FAST {
        cmd.args([flag, value]);
    }
    let log = std::fs::File::create(dir.path().join("serve.log")).unwrap();
    cmd.stdout(Stdio::null()).stderr(log);
    let child = cmd.spawn().expect("spawn tiklive serve");
    let pid = child.id();
    let api = SocketAddr::from(([127, 0, 0, 1], port));
    let mut server = Server {
        child,
        api,
        feed: api,
        token: None,
        tls_root: None,
    };
    server.wait_healthy();
    server.wait_for("/status", "the live to be connected", |s| {
        s["lives"][0]["state"] == "connected"
    });

    // RSS sampler.
    let sampling = Arc::new(AtomicUsize::new(1));
    let sampler = {
        let sampling = sampling.clone();
        std::thread::spawn(move || {
            let path = format!("/proc/{pid}/status");
            let (mut peak_rss, mut hwm, mut samples) = (0u64, 0u64, Vec::new());
            while sampling.load(Ordering::Relaxed) == 1 {
                if let Ok(text) = std::fs::read_to_string(&path) {
                    let field = |name: &str| -> u64 {
                        text.lines()
                            .find_map(|l| l.strip_prefix(name))
                            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                            .unwrap_or(0)
                    };
                    let rss = field("VmRSS:");
                    peak_rss = peak_rss.max(rss);
                    hwm = hwm.max(field("VmHWM:"));
                    samples.push(rss);
                }
                std::thread::sleep(Duration::from_millis(250));
            }
            (peak_rss, hwm, samples)
        })
    };

    // The clients, on one runtime.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let synced = Arc::new(AtomicUsize::new(0));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let connect_started = Instant::now();
    let handles: Vec<_> = runtime.block_on(async {
        let mut handles = Vec::with_capacity(clients);
        for _ in 0..clients {
            let socket = connect_feed(api).await.expect("connect to /ws");
            handles.push(tokio::spawn(client(
                socket,
                events,
                synced.clone(),
                stop_rx.clone(),
            )));
        }
        handles
    });
    while synced.load(Ordering::Relaxed) < clients {
        assert!(
            connect_started.elapsed() < Duration::from_secs(15),
            "only {} of {clients} clients synced",
            synced.load(Ordering::Relaxed)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let connect_time = connect_started.elapsed();
    let rss_before_kib = rss_now(pid);
    let (cpu_before, clients_cpu_before) = (cpu_seconds(pid), cpu_seconds(std::process::id()));
    let cpu_started = Instant::now();

    // Go: the stream, then up to 10 s for the clients to drain.
    start
        .set(Instant::now() + Duration::from_millis(100))
        .unwrap();
    mock.release();
    let stream_end = Instant::now() + period * frames as u32 + Duration::from_millis(100);
    let results: Vec<ClientResult> = runtime.block_on(async {
        let all = futures_util::future::join_all(handles);
        let deadline = tokio::time::Instant::from_std(stream_end + Duration::from_secs(10));
        tokio::pin!(all);
        let results = tokio::select! {
            r = &mut all => r,
            _ = tokio::time::sleep_until(deadline) => {
                let _ = stop_tx.send(true);
                all.await
            }
        };
        results.into_iter().map(|r| r.unwrap()).collect()
    });
    let sent_span_s = (last_sent.load(Ordering::Relaxed) as f64
        - first_sent.load(Ordering::Relaxed) as f64)
        / 1e9;
    let rss_after_kib = rss_now(pid);
    let cpu_span = cpu_started.elapsed().as_secs_f64();
    let server_cpu = cpu_seconds(pid) - cpu_before;
    let clients_cpu = cpu_seconds(std::process::id()) - clients_cpu_before;
    sampling.store(0, Ordering::Relaxed);
    let (peak_rss_kib, hwm_kib, samples) = sampler.join().unwrap();
    let stored = server.get("/status").json()["lives"][0]["events"].clone();
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let _ = server.child.wait();
    drop(runtime);

    // Merge and report.
    let mut hist = vec![0u64; BUCKETS];
    let (mut delivered, mut max_us, mut closed) = (0u64, 0u64, Vec::new());
    for r in &results {
        for (h, c) in hist.iter_mut().zip(&r.hist) {
            *h += c;
        }
        delivered += r.events;
        max_us = max_us.max(r.max_us);
        if let Some(why) = &r.closed {
            closed.push(why.clone());
        }
    }
    let quantile = |q: f64| -> f64 {
        let total: u64 = hist.iter().sum();
        let want = ((total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (b, c) in hist.iter().enumerate() {
            seen += c;
            if seen >= want {
                return bucket_top(b).min(max_us) as f64 / 1000.0;
            }
        }
        f64::NAN
    };
    let expected = events * clients as u64;
    let p99 = quantile(0.99);
    let peak_mb = peak_rss_kib.max(hwm_kib) as f64 / 1024.0;
    let mid = samples.get(samples.len() / 2).copied().unwrap_or(0);
    println!(
        "| serve: {clients} WebSocket clients, {rate} events/s ({fps} frames/s of {per_frame}) for {seconds} s | |"
    );
    println!("|---|---|");
    println!(
        "| clients connected and synced | {clients} in {:.2} s |",
        connect_time.as_secs_f64()
    );
    println!(
        "| events sent by the mock | {events} in {sent_span_s:.2} s ({:.0}/s) |",
        if sent_span_s > 0.0 {
            (events - per_frame as u64) as f64 / sent_span_s
        } else {
            f64::NAN
        }
    );
    println!("| events the server counted | {stored} |");
    println!(
        "| delivered / expected | {delivered} / {expected} ({:.3} %) |",
        100.0 * delivered as f64 / expected as f64
    );
    println!(
        "| clients closed by the server | {}{} |",
        closed.len(),
        closed
            .first()
            .map(|w| format!(" (first: {w})"))
            .unwrap_or_default()
    );
    for (name, q) in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99.9", 0.999)] {
        println!("| latency {name} | {:.2} ms |", quantile(q));
    }
    println!("| latency max | {:.2} ms |", max_us as f64 / 1000.0);
    println!(
        "| server RSS: synced / mid-stream / end / peak (VmHWM) | {:.1} / {:.1} / {:.1} / {peak_mb:.1} MB |",
        rss_before_kib as f64 / 1024.0,
        mid as f64 / 1024.0,
        rss_after_kib as f64 / 1024.0,
    );
    println!(
        "| CPU from release to the end ({cpu_span:.1} s): server / bench process: mock and clients (user+sys) | {server_cpu:.1} s ({:.0} % of a core) / {clients_cpu:.1} s ({:.0} %) |",
        100.0 * server_cpu / cpu_span,
        100.0 * clients_cpu / cpu_span,
    );
    let mut misses = Vec::new();
    if p99.is_nan() || p99 >= TARGET_P99_MS {
        misses.push(format!("p99 {p99:.2} ms ≥ {TARGET_P99_MS} ms"));
    }
    if peak_mb >= TARGET_RSS_MB {
        misses.push(format!("peak RSS {peak_mb:.1} MB ≥ {TARGET_RSS_MB} MB"));
    }
    if delivered != expected {
        misses.push(format!("{} events not delivered", expected - delivered));
    }
    if misses.is_empty() {
        println!(
            "| verdict | PASS (p99 < {TARGET_P99_MS} ms, RSS < {TARGET_RSS_MB} MB, all delivered) |"
        );
    } else {
        println!("| verdict | FAIL: {} |", misses.join("; "));
        if std::env::var_os("SERVE_STRICT").is_some() {
            std::process::exit(1);
        }
    }
}

/// User plus system CPU time of a process so far, from /proc/PID/stat (fields 14 and 15, in clock
/// ticks, usually 1/100 s).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name, in parentheses, may hold spaces: count fields after its closing one.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // After ")": state is field 3, so utime (14) and stime (15) are at 11 and 12.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (ticks(11) + ticks(12)) / hz.max(1.0)
}

fn rss_now(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// The opening handshake of a feed client (RFC 6455 section 4.1), on a plain socket: the bench reads
/// frames itself, so that 500 clients cost the shared two cores as little as possible.
async fn connect_feed(api: SocketAddr) -> std::io::Result<tokio::net::TcpStream> {
    let mut socket = tokio::net::TcpStream::connect(api).await?;
    socket.set_nodelay(true)?;
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: {api}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    socket.write_all(request.as_bytes()).await?;
    // The response is read byte by byte up to its blank line, so that no frame is read with it.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8];
        if socket.read(&mut byte).await? == 0 {
            return Err(std::io::Error::other(
                "the server closed during the handshake",
            ));
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    if !head.starts_with("HTTP/1.1 101") || !head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") {
        return Err(std::io::Error::other(format!("not an upgrade: {head}")));
    }
    Ok(socket)
}

/// One feed client: waits for `synced`, then records the latency of every stamped event until it has
/// seen `events` of them, the server closes it, or the bench stops it. Frames from a server are never
/// masked; the bench's server sends unfragmented text frames and, at the end, a close frame.
async fn client(
    mut socket: tokio::net::TcpStream,
    events: u64,
    synced: Arc<AtomicUsize>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> ClientResult {
    let mut r = ClientResult {
        hist: vec![0; BUCKETS],
        events: 0,
        max_us: 0,
        closed: None,
    };
    let mark = memchr::memmem::Finder::new(MARK);
    let mut is_synced = false;
    let mut buf = vec![0u8; 256 << 10];
    let (mut start, mut end) = (0usize, 0usize);
    'read: while r.events < events {
        if end == buf.len() {
            buf.copy_within(start..end, 0);
            end -= start;
            start = 0;
            if end == buf.len() {
                buf.resize(buf.len() * 2, 0);
            }
        }
        let n = tokio::select! {
            n = socket.read(&mut buf[end..]) => n,
            _ = stop.changed() => break,
        };
        match n {
            Ok(0) => {
                r.closed = Some("end of stream".into());
                break;
            }
            Ok(n) => end += n,
            Err(e) => {
                r.closed = Some(e.to_string());
                break;
            }
        }
        let now_us = unix_nanos() / 1000;
        // Every whole frame in the buffer.
        loop {
            let pending = &buf[start..end];
            if pending.len() < 2 {
                break;
            }
            let (len, header) = match pending[1] & 0x7f {
                126 if pending.len() >= 4 => {
                    (u16::from_be_bytes([pending[2], pending[3]]) as usize, 4)
                }
                127 if pending.len() >= 10 => (
                    u64::from_be_bytes(pending[2..10].try_into().unwrap()) as usize,
                    10,
                ),
                126 | 127 => break,
                len => (len as usize, 2),
            };
            if pending.len() < header + len {
                break;
            }
            let opcode = pending[0] & 0x0f;
            let payload = &pending[header..header + len];
            start += header + len;
            match opcode {
                0x1 => {}
                0x8 => {
                    r.closed =
                        Some(String::from_utf8_lossy(payload.get(2..).unwrap_or(b"")).into_owned());
                    break 'read;
                }
                _ => continue,
            }
            if !is_synced {
                if payload == br#"{"type":"synced"}"# {
                    is_synced = true;
                    synced.fetch_add(1, Ordering::Relaxed);
                }
                continue;
            }
            let Some(at) = mark.find(payload) else {
                continue;
            };
            let digits = &payload[at + MARK.len()..];
            let stamp = digits
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
            let us = now_us.saturating_sub(stamp / 1000);
            r.hist[bucket(us)] += 1;
            r.max_us = r.max_us.max(us);
            r.events += 1;
        }
        if start == end {
            (start, end) = (0, 0);
        }
    }
    r
}
