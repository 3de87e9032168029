//! `cargo bench --bench replay`: end-to-end throughput and memory of `tiklive replay` on the benchmark
//! recording (20,000 push frames, ~160,000 events, ~100 MB on the wire, 90% gzip; see
//! `support/recording.rs`), plus an in-process breakdown of where a single thread spends its time.
//!
//! Steps: generate (or reuse) the recording under `target/bench-data/`; run the release binary twice
//! with stdout to a file and require byte-identical output with the expected line count; time three
//! runs with stdout to /dev/null (best, median, events/s, MB/s, peak RSS of the child from `wait4`);
//! one run with `--threads 1`; print a Markdown table.
//!
//! Environment: `TIKLIVE_BENCH_FRAMES=N` generates a smaller recording (quick checks);
//! `TIKLIVE_BENCH_RUNS=N` changes the number of timed runs (default 3);
//! `TIKLIVE_BENCH_GENERATE_ONLY=1` stops after generating the recording and printing its stats.

#[path = "support/common.rs"]
mod common;
#[path = "support/recording.rs"]
mod recording;

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use prost::Message;
use tiklive::events::{DecodeOptions, decode_message};
use tiklive::pipeline::{Emitter, RenderedBatch, Renderer};
use tiklive::protocol::{self as pb, FetchResult, PushFrame};
use tiklive::recording::{RecordingReader, render_frame};

use recording::{GenStats, Spec, cached_recording};

/// Product targets on the 2-core reference machine.
const TARGET_EVENTS_PER_SEC: f64 = 150_000.0;
const TARGET_PEAK_RSS_MB: f64 = 50.0;

/// One child run: wall time and what `wait4` reported about the child alone.
#[derive(Debug, Clone, Copy)]
struct Run {
    wall: Duration,
    user: Duration,
    sys: Duration,
    max_rss_kb: u64,
    /// Peak RSS of the launcher process: the floor under `max_rss_kb` (see [`Launcher`]).
    launcher_rss_kb: u64,
}

/// Set in the environment of the launcher process (see [`Launcher`]).
const LAUNCHER_ENV: &str = "TIKLIVE_BENCH_LAUNCHER_PROCESS";

fn main() -> ExitCode {
    if std::env::var_os(LAUNCHER_ENV).is_some() {
        return launcher_main();
    }
    // Start the launcher first, while this process is still small (see `Launcher`).
    let launcher = match Launcher::start() {
        Ok(l) => l,
        Err(e) => {
            eprintln!("replay bench: cannot start the launcher process: {e}");
            return ExitCode::FAILURE;
        }
    };
    match run(launcher) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("replay bench: FAILED (see above)");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("replay bench: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(mut launcher: Launcher) -> io::Result<bool> {
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_tiklive"));
    let data_dir = common::data_dir();
    let mut spec = Spec::benchmark();
    if let Some(frames) = common::env_number::<usize>("TIKLIVE_BENCH_FRAMES") {
        spec.frames = frames;
    }
    let timed_runs = common::env_number::<usize>("TIKLIVE_BENCH_RUNS")
        .unwrap_or(3)
        .max(1);

    let started = Instant::now();
    let (path, stats, generated) = cached_recording(&data_dir, &spec)?;
    println!(
        "{} {} in {:.1} s",
        if generated { "generated" } else { "reused" },
        path.display(),
        started.elapsed().as_secs_f64()
    );
    println!("{}", stats.summary());
    if std::env::var_os("TIKLIVE_BENCH_GENERATE_ONLY").is_some() {
        return Ok(true);
    }
    let mut ok = true;

    // Correctness: two runs to a file must agree byte for byte and print the expected lines.
    let out_a = data_dir.join("replay-out-a.ndjson");
    let out_b = data_dir.join("replay-out-b.ndjson");
    // Printing alone; the store has its own runs below.
    let no_store = ["--no-store".to_string()];
    let run_a = launcher.run(&exe, &path, &no_store, Some(&out_a), &data_dir)?;
    let run_b = launcher.run(&exe, &path, &no_store, Some(&out_b), &data_dir)?;
    let identical = files_identical(&out_a, &out_b)?;
    let census = count_lines(&out_a)?;
    if identical {
        // Keep one output for inspection; a differing pair is kept for diffing.
        let _ = std::fs::remove_file(&out_b);
    }
    println!(
        "output: {} lines, {:.1} MB, byte-identical across two runs: {}",
        census.lines,
        census.bytes as f64 / 1e6,
        if identical { "yes" } else { "NO" }
    );
    println!("  by type: {}", census.by_type_text());
    if !identical {
        eprintln!(
            "!!! two replays of the same recording differ: {} vs {}",
            out_a.display(),
            out_b.display()
        );
        ok = false;
    }
    if census.lines != stats.expected_lines {
        eprintln!(
            "!!! replay printed {} lines, the generator expects {} (messages {} - streak updates {} - duplicates {})",
            census.lines,
            stats.expected_lines,
            stats.messages,
            stats.streak_updates,
            stats.duplicates
        );
        ok = false;
    }
    println!(
        "  (to-file runs: {:.3} s and {:.3} s; last stderr line: {})",
        run_a.wall.as_secs_f64(),
        run_b.wall.as_secs_f64(),
        last_line(&data_dir.join("replay-stderr.log"))
    );

    // Timing: stdout to /dev/null. Other processes skew wall times on a small machine: say so.
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load1: f64 = load
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    println!("load average before timing: {}", load.trim());
    if load1 > 0.5 {
        println!(
            "  (the machine is busy: wall times and events/s are pessimistic; CPU times are not)"
        );
    }
    let mut runs: Vec<Run> = (0..timed_runs)
        .map(|_| launcher.run(&exe, &path, &no_store, None, &data_dir))
        .collect::<io::Result<_>>()?;
    for (i, r) in runs.iter().enumerate() {
        println!(
            "run {}: {:.3} s wall, {:.3} s user, {:.3} s sys, peak RSS {:.1} MB",
            i + 1,
            r.wall.as_secs_f64(),
            r.user.as_secs_f64(),
            r.sys.as_secs_f64(),
            r.max_rss_kb as f64 / 1024.0
        );
    }
    let single = launcher.run(
        &exe,
        &path,
        &["--no-store".into(), "--threads".into(), "1".into()],
        None,
        &data_dir,
    )?;
    println!(
        "--threads 1: {:.3} s wall, {:.3} s user, {:.3} s sys, peak RSS {:.1} MB",
        single.wall.as_secs_f64(),
        single.user.as_secs_f64(),
        single.sys.as_secs_f64(),
        single.max_rss_kb as f64 / 1024.0
    );
    runs.sort_by_key(|r| r.wall);
    let best = runs[0];
    let median = runs[runs.len() / 2];
    let peak_rss_kb = runs.iter().map(|r| r.max_rss_kb).max().unwrap_or(0);
    println!(
        "(peak RSS is the child's own; floor from the launcher process: {:.1} MB)",
        runs.iter().map(|r| r.launcher_rss_kb).max().unwrap_or(0) as f64 / 1024.0
    );

    // Storing: every printed event into a new database (default commit settings, then bulk).
    let db = data_dir.join("replay-store.db");
    let mut store_runs = Vec::new();
    for (name, extra) in [
        ("`replay --db new.db` (commits of 1,000 events)", vec![]),
        (
            "`replay --db new.db --commit-events 10000`",
            vec!["--commit-events".to_string(), "10000".to_string()],
        ),
    ] {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
        }
        let mut args = vec!["--db".to_string(), db.display().to_string()];
        args.extend(extra);
        let r = launcher.run(&exe, &path, &args, None, &data_dir)?;
        let stored: i64 = rusqlite::Connection::open(&db)
            .and_then(|c| c.query_row("SELECT count(*) FROM events", [], |row| row.get(0)))
            .map_err(io::Error::other)?;
        let stored = stored as u64;
        let size = std::fs::metadata(&db).map_or(0, |m| m.len());
        println!(
            "{name}: {:.3} s wall, {:.3} s user, {:.3} s sys, peak RSS {:.1} MB, {stored} events stored, {:.0} MB",
            r.wall.as_secs_f64(),
            r.user.as_secs_f64(),
            r.sys.as_secs_f64(),
            r.max_rss_kb as f64 / 1024.0,
            size as f64 / 1e6
        );
        if stored != census.lines {
            eprintln!("!!! {stored} events stored, {} printed", census.lines);
            ok = false;
        }
        store_runs.push((name, r));
    }

    // Where one thread spends its time.
    let stages = profile_stages(&path)?;

    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let lines = census.lines as f64;
    let wire_mb = stats.file_bytes as f64 / 1e6;
    println!();
    println!(
        "### `tiklive replay` throughput ({} frames, {} events, {:.0} MB on the wire, {:.0} MB inflated, {}% gzip; {} cores)",
        stats.frames,
        census.lines,
        stats.wire_bytes as f64 / 1e6,
        stats.inflated_bytes as f64 / 1e6,
        (100 * stats.gzip_frames)
            .checked_div(stats.frames)
            .unwrap_or(0),
        threads
    );
    println!();
    println!(
        "| run | wall (best) | wall (median) | events/s (best) | wire MB/s | CPU user+sys | peak RSS |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let row = |name: &str, best: Run, median: Run, rss_kb: u64| {
        println!(
            "| {name} | {:.2} s | {:.2} s | {} | {:.0} | {:.2} s | {:.1} MB |",
            best.wall.as_secs_f64(),
            median.wall.as_secs_f64(),
            common::thousands((lines / best.wall.as_secs_f64()) as u64),
            wire_mb / best.wall.as_secs_f64(),
            (best.user + best.sys).as_secs_f64(),
            rss_kb as f64 / 1024.0
        );
    };
    row(
        &format!("`replay` (default: {threads} threads), best of {timed_runs}"),
        best,
        median,
        peak_rss_kb,
    );
    row(
        "`replay --threads 1`, 1 run",
        single,
        single,
        single.max_rss_kb,
    );
    for (name, r) in &store_runs {
        row(name, *r, *r, r.max_rss_kb);
    }
    println!();
    println!(
        "Targets: ≥ {} events/s, peak RSS < {:.0} MB. Output byte-identical across runs: {}.",
        common::thousands(TARGET_EVENTS_PER_SEC as u64),
        TARGET_PEAK_RSS_MB,
        if identical { "yes" } else { "NO" }
    );
    let eps = lines / best.wall.as_secs_f64();
    let rss_mb = peak_rss_kb as f64 / 1024.0;
    println!(
        "events/s target: {} ({}); memory target: {} ({:.1} MB)",
        if eps >= TARGET_EVENTS_PER_SEC {
            "met"
        } else {
            "MISSED"
        },
        common::thousands(eps as u64),
        if rss_mb < TARGET_PEAK_RSS_MB {
            "met"
        } else {
            "MISSED"
        },
        rss_mb
    );
    println!();
    println!("{}", stages.table(&stats));
    Ok(ok)
}

/// Spawns and reaps the `tiklive` runs, so that their peak RSS is their own.
///
/// Linux carries a process's RSS high-water mark across `execve`, and std spawns children with
/// `posix_spawn` (the child shares the parent's memory until it execs), so `ru_maxrss` of a child
/// spawned by this bench would include the bench's own peak (it reads ~90 MB of output). The launcher
/// is a copy of this binary started before the bench allocates anything: it stays at ~2 MB, spawns
/// each run on request and reports what `wait4` says about it.
struct Launcher {
    child: std::process::Child,
    requests: Option<std::process::ChildStdin>,
    replies: BufReader<std::process::ChildStdout>,
}

impl Launcher {
    fn start() -> io::Result<Launcher> {
        let mut child = Command::new(std::env::current_exe()?)
            .env(LAUNCHER_ENV, "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let requests = child.stdin.take();
        let replies = BufReader::new(child.stdout.take().expect("piped stdout"));
        Ok(Launcher {
            child,
            requests,
            replies,
        })
    }

    /// Runs `tiklive replay` on `recording`, stdout to `out` (or /dev/null), stderr to
    /// `work_dir/replay-stderr.log`.
    fn run(
        &mut self,
        exe: &Path,
        recording: &Path,
        extra: &[String],
        out: Option<&Path>,
        work_dir: &Path,
    ) -> io::Result<Run> {
        let mut fields: Vec<String> = vec![
            out.map_or("-".into(), |p| p.display().to_string()),
            work_dir.display().to_string(),
            exe.display().to_string(),
            "replay".into(),
            recording.display().to_string(),
        ];
        fields.extend(extra.iter().cloned());
        if fields.iter().any(|f| f.contains(['\t', '\n'])) {
            return Err(io::Error::other(
                "paths with tabs or newlines are not supported",
            ));
        }
        let requests = self.requests.as_mut().expect("launcher is running");
        writeln!(requests, "{}", fields.join("\t"))?;
        requests.flush()?;
        let mut reply = String::new();
        self.replies.read_line(&mut reply)?;
        let mut it = reply.split_whitespace();
        match it.next() {
            Some("ok") => {
                let mut num = || -> io::Result<u64> {
                    it.next()
                        .and_then(|v| v.parse().ok())
                        .ok_or_else(|| io::Error::other(format!("bad launcher reply {reply:?}")))
                };
                Ok(Run {
                    wall: Duration::from_nanos(num()?),
                    user: Duration::from_micros(num()?),
                    sys: Duration::from_micros(num()?),
                    max_rss_kb: num()?,
                    launcher_rss_kb: num()?,
                })
            }
            _ => Err(io::Error::other(format!(
                "tiklive replay failed: {}; see {}",
                reply.trim(),
                work_dir.join("replay-stderr.log").display()
            ))),
        }
    }
}

impl Drop for Launcher {
    fn drop(&mut self) {
        // End of input ends the launcher's loop.
        drop(self.requests.take());
        let _ = self.child.wait();
    }
}

/// The launcher process: one request per stdin line (`OUT\tCWD\tEXE\tARGS…`, OUT `-` for
/// /dev/null), one reply per request (`ok WALL_NS USER_US SYS_US MAXRSS_KB LAUNCHER_MAXRSS_KB`).
fn launcher_main() -> ExitCode {
    let stdin = io::stdin();
    let mut stdout = io::stdout();
    for line in stdin.lines() {
        let Ok(line) = line else { break };
        let reply = match launch(&line) {
            Ok(r) => r,
            Err(e) => format!("err {e}"),
        };
        if writeln!(stdout, "{reply}")
            .and_then(|_| stdout.flush())
            .is_err()
        {
            break;
        }
    }
    ExitCode::SUCCESS
}

fn launch(line: &str) -> io::Result<String> {
    let fields: Vec<&str> = line.split('\t').collect();
    let [out, cwd, exe, args @ ..] = fields.as_slice() else {
        return Err(io::Error::other("malformed request"));
    };
    let mut cmd = Command::new(exe);
    cmd.args(args);
    // No `.env`, no TIKLIVE_* variable may change what is printed.
    cmd.current_dir(cwd);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("TIKLIVE_") {
            cmd.env_remove(&key);
        }
    }
    cmd.stdin(Stdio::null());
    cmd.stdout(if *out == "-" {
        Stdio::null()
    } else {
        Stdio::from(File::create(out)?)
    });
    cmd.stderr(Stdio::from(File::create(
        Path::new(cwd).join("replay-stderr.log"),
    )?));
    let started = Instant::now();
    let child = cmd.spawn()?;
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: rusage is plain data that wait4 fills for the child we just spawned.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let reaped = loop {
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == -1 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
            continue;
        }
        break r;
    };
    let wall = started.elapsed();
    // Already reaped: dropping the handle does not wait again.
    drop(child);
    if reaped != pid {
        return Err(io::Error::last_os_error());
    }
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        return Err(io::Error::other(format!("wait status {status:#x}")));
    }
    let mut own: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut own) };
    let us = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    Ok(format!(
        "ok {} {} {} {} {}",
        wall.as_nanos(),
        us(usage.ru_utime),
        us(usage.ru_stime),
        usage.ru_maxrss,
        own.ru_maxrss
    ))
}

fn files_identical(a: &Path, b: &Path) -> io::Result<bool> {
    if std::fs::metadata(a)?.len() != std::fs::metadata(b)?.len() {
        return Ok(false);
    }
    let (mut ra, mut rb) = (
        BufReader::new(File::open(a)?),
        BufReader::new(File::open(b)?),
    );
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let na = read_fill(&mut ra, &mut ba)?;
        let nb = read_fill(&mut rb, &mut bb)?;
        if na != nb || ba[..na] != bb[..nb] {
            return Ok(false);
        }
        if na == 0 {
            return Ok(true);
        }
    }
}

fn read_fill(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

#[derive(Default)]
struct Census {
    lines: u64,
    bytes: u64,
    by_type: std::collections::BTreeMap<String, u64>,
}

impl Census {
    fn by_type_text(&self) -> String {
        self.by_type
            .iter()
            .map(|(t, n)| format!("{t}={n}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Counts lines and their `"type"` (every line starts with `{"v":1,"type":"…"`).
fn count_lines(path: &Path) -> io::Result<Census> {
    let data = std::fs::read(path)?;
    let mut census = Census {
        bytes: data.len() as u64,
        ..Default::default()
    };
    const PREFIX: &[u8] = b"{\"v\":1,\"type\":\"";
    for line in data.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        census.lines += 1;
        let kind = line
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split(|&b| b == b'"').next())
            .map(|t| String::from_utf8_lossy(t).into_owned())
            .unwrap_or_else(|| "<malformed>".into());
        *census.by_type.entry(kind).or_default() += 1;
    }
    Ok(census)
}

fn last_line(path: &Path) -> String {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.lines().last().map(str::to_owned))
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------------
// In-process stage breakdown, one thread.

#[derive(Default)]
struct Stages {
    read: Duration,
    frame_decode: Duration,
    inflate: Duration,
    result_decode: Duration,
    /// `decode_message`: protobuf decode of the event plus building the `Event`.
    message_decode: Duration,
    /// Protobuf decode alone (a separate pass over the same messages).
    protobuf_only: Duration,
    json: Duration,
    emit: Duration,
    render_frame_total: Duration,
    events: u64,
}

impl Stages {
    fn table(&self, stats: &GenStats) -> String {
        let total = self.frame_decode
            + self.inflate
            + self.result_decode
            + self.message_decode
            + self.json
            + self.emit;
        let mut s = String::new();
        s.push_str("#### Where one thread spends its time (in-process, release build)\n\n");
        s.push_str("| stage | time | share | throughput |\n|---|---:|---:|---:|\n");
        let mut row = |name: &str, d: Duration, rate: String| {
            s.push_str(&format!(
                "| {name} | {:.3} s | {:.0}% | {rate} |\n",
                d.as_secs_f64(),
                100.0 * d.as_secs_f64() / total.as_secs_f64().max(1e-9)
            ));
        };
        let mbps = |bytes: u64, d: Duration| {
            format!("{:.0} MB/s", bytes as f64 / 1e6 / d.as_secs_f64().max(1e-9))
        };
        let eps = |n: u64, d: Duration| {
            format!(
                "{} msg/s",
                common::thousands((n as f64 / d.as_secs_f64().max(1e-9)) as u64)
            )
        };
        row(
            "push frame decode",
            self.frame_decode,
            mbps(stats.wire_bytes, self.frame_decode),
        );
        row(
            "gzip inflate",
            self.inflate,
            mbps(stats.inflated_bytes, self.inflate),
        );
        row(
            "fetch result decode",
            self.result_decode,
            mbps(stats.inflated_bytes, self.result_decode),
        );
        row(
            "decode_message (protobuf + Event)",
            self.message_decode,
            eps(stats.messages, self.message_decode),
        );
        row(
            "  of which protobuf decode alone",
            self.protobuf_only,
            eps(stats.messages, self.protobuf_only),
        );
        row("Event::write_json", self.json, eps(self.events, self.json));
        row(
            "emit (dedupe + write to sink)",
            self.emit,
            eps(self.events, self.emit),
        );
        row("**sum of stages**", total, eps(self.events, total));
        s.push_str(&format!(
            "\nFor comparison: reading the file {:.3} s; `render_frame` over all frames (one thread, no emit) {:.3} s = {} events/s.\n",
            self.read.as_secs_f64(),
            self.render_frame_total.as_secs_f64(),
            common::thousands((self.events as f64 / self.render_frame_total.as_secs_f64().max(1e-9)) as u64)
        ));
        s
    }
}

fn profile_stages(path: &Path) -> io::Result<Stages> {
    let mut st = Stages::default();
    let t = Instant::now();
    let mut reader = RecordingReader::new(BufReader::with_capacity(1 << 20, File::open(path)?));
    let mut frames: Vec<Bytes> = Vec::new();
    while let Some(f) = reader.next_frame().map_err(io::Error::other)? {
        frames.push(f);
    }
    st.read = t.elapsed();

    let renderer = Renderer::default();
    let opts = DecodeOptions::default();
    let mut emitter = Emitter::new(io::sink(), 100_000, false);
    let mut json = Vec::with_capacity(1 << 16);
    for frame in &frames {
        let t0 = Instant::now();
        let push = PushFrame::decode(frame.clone()).map_err(io::Error::other)?;
        let t1 = Instant::now();
        let payload = pb::frame_payload(&push).map_err(io::Error::other)?;
        let t2 = Instant::now();
        let result = FetchResult::decode(payload).map_err(io::Error::other)?;
        let t3 = Instant::now();
        st.frame_decode += t1 - t0;
        st.inflate += t2 - t1;
        st.result_decode += t3 - t2;
        let mut events = Vec::with_capacity(result.messages.len());
        let t4 = Instant::now();
        for msg in &result.messages {
            if let Ok(e) = decode_message(msg, result.now as i64, &opts) {
                events.push(e);
            }
        }
        let t5 = Instant::now();
        for e in &events {
            if renderer.filter.accepts(e) {
                json.clear();
                e.write_json(&mut json);
                st.events += 1;
            }
        }
        let t6 = Instant::now();
        st.message_decode += t5 - t4;
        st.json += t6 - t5;
        let t7 = Instant::now();
        for msg in &result.messages {
            protobuf_only(msg);
        }
        st.protobuf_only += t7.elapsed();
        // Emit: render the frame (untimed) then time the emitter alone.
        let mut batch = RenderedBatch::default();
        renderer.render_result(&result, &mut batch);
        let t8 = Instant::now();
        emitter.emit(&mut batch)?;
        st.emit += t8.elapsed();
    }
    let t = Instant::now();
    let mut batch = RenderedBatch::default();
    for frame in &frames {
        batch.clear();
        render_frame(&renderer, frame.clone(), &mut batch);
    }
    st.render_frame_total = t.elapsed();
    Ok(st)
}

/// The protobuf decode `decode_message` does for the method, and nothing else.
fn protobuf_only(msg: &pb::BaseMessage) {
    let p = msg.payload.clone();
    let ok = match msg.method.as_str() {
        "WebcastChatMessage" => pb::ChatMessage::decode(p).is_ok(),
        "WebcastGiftMessage" => pb::GiftMessage::decode(p).is_ok(),
        "WebcastLikeMessage" => pb::LikeMessage::decode(p).is_ok(),
        "WebcastMemberMessage" => pb::MemberMessage::decode(p).is_ok(),
        "WebcastSocialMessage" => pb::SocialMessage::decode(p).is_ok(),
        "WebcastRoomUserSeqMessage" => pb::RoomUserSeqMessage::decode(p).is_ok(),
        "WebcastEmoteChatMessage" => pb::EmoteChatMessage::decode(p).is_ok(),
        "WebcastSubNotifyMessage" => pb::SubNotifyMessage::decode(p).is_ok(),
        _ => pb::CommonOnly::decode(p).is_ok(),
    };
    std::hint::black_box(ok);
}
