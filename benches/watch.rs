//! `cargo bench --bench watch`: memory and throughput of `tiklive watch` on a long stream, end to end
//! through the loopback mock of TikTok (the same one the tests use): 15,000 push frames of 8 messages
//! (120,000 events, more than the 100,000-id de-duplication window), gzip'ed, every frame acked.
//! Reports wall time, events/s and the child's peak resident memory (VmHWM). Events are stored in a
//! new database, as by default; `WATCH_EXTRA=--no-store` measures printing alone.

#[path = "../tests/support/mod.rs"]
mod support;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Instant;

use support::*;

const FRAMES: usize = 15_000;

/// `WATCH_FRAMES=N` overrides the stream length; `WATCH_EXTRA="--flag …"` adds flags to watch.
fn frames() -> usize {
    std::env::var("WATCH_FRAMES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(FRAMES)
}
const PER_FRAME: usize = 8;

fn main() {
    let mut m = Messages::new(ROOM_ID);
    let users: Vec<_> = (0..500)
        .map(|i| {
            viewer(
                6_900_000_000_000_100_000 + i,
                &format!("Acheteuse {i} ✨"),
                &format!("buyer_{i}"),
            )
        })
        .collect();
    let mut steps = Vec::with_capacity(FRAMES + 1);
    for f in 0..frames() {
        let batch = (0..PER_FRAME)
            .map(|i| {
                let user = &users[(f * PER_FRAME + i) % users.len()];
                match i {
                    0..=2 => m.chat(user, &format!("JP A{} M x{}", f % 90, 1 + i)),
                    3 => m.chat(user, "trop belle cette robe 😍 elle existe en bleu ?"),
                    4 => m.like(user, 15, 10_000 + f as u64),
                    5 => m.member(user, 800 + (f % 50) as u64),
                    6 => m.room_user(800 + (f % 50) as u64, 5_000 + f as u64),
                    _ => m.social(user, "pm_mt_guidance_share", 3, 1),
                }
            })
            .collect();
        steps.push(Step::frame(batch));
    }
    steps.push(Step::frame(vec![m.control(3)]));
    let mock = Mock::start(Scenario::default().script(steps));
    let dir = tempfile::tempdir().unwrap();
    let extra = std::env::var("WATCH_EXTRA").unwrap_or_default();
    let mut args = vec!["--quiet"];
    args.extend(extra.split_whitespace());
    let mut cmd = watch(&mock, dir.path(), "seller", &args);
    println!("| watch {} | |", args.join(" "));
    cmd.stdout(Stdio::piped());
    // WATCH_WRAPPER="valgrind --tool=massif" profiles the child.
    if let Ok(wrapper) = std::env::var("WATCH_WRAPPER") {
        let mut words = wrapper.split_whitespace();
        let mut wrapped = std::process::Command::new(words.next().unwrap());
        wrapped
            .args(words)
            .arg(cmd.get_program())
            .args(cmd.get_args());
        for (k, v) in cmd.get_envs() {
            match v {
                Some(v) => wrapped.env(k, v),
                None => wrapped.env_remove(k),
            };
        }
        wrapped
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped());
        cmd = wrapped;
    }
    let start = Instant::now();
    let mut child = cmd.spawn().expect("spawn tiklive");
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let counter =
        std::thread::spawn(move || stdout.lines().inspect(|l| assert!(l.is_ok())).count() as u64);
    let (status, maxrss_kib) = wait_with_peak_rss(&mut child);
    let lines = counter.join().unwrap();
    let elapsed = start.elapsed();
    assert_eq!(status, 0, "watch failed");
    let state = mock.finished();
    assert!(state.violations.is_empty(), "{:#?}", state.violations);
    let events = lines - 2; // the connected and disconnected lines
    assert_eq!(
        events as usize,
        frames() * PER_FRAME + 1,
        "every event printed once"
    );
    println!("|---|---|");
    println!("| frames / events | {} / {events} |", frames());
    println!("| wall time | {:.2} s |", elapsed.as_secs_f64());
    println!(
        "| events/s | {:.0} |",
        events as f64 / elapsed.as_secs_f64()
    );
    println!(
        "| peak RSS of tiklive watch | {:.1} MB |",
        maxrss_kib as f64 / 1024.0
    );
    println!(
        "| acks sent | {} of {} |",
        state.conns[0].acked.len(),
        state.conns[0]
            .sent
            .iter()
            .filter(|s| s.ack.is_some())
            .count()
    );
    // Printing alone must stay under 20 MB; storing adds SQLite's page cache, the writer's queue and
    // batch, and a second thread's allocations.
    let target_mib = if args.contains(&"--no-store") { 20 } else { 32 };
    assert!(
        maxrss_kib < target_mib * 1024,
        "watch used {maxrss_kib} KiB, over the {target_mib} MB target"
    );
}

/// Waits for the child and returns its exit code and peak resident set size in KiB. The peak is the
/// child's `VmHWM`, polled from /proc until it exits: `ru_maxrss` from wait4 is no good here, because
/// Linux folds the RSS the child had between fork and exec (a copy of this process, mock included)
/// into it.
fn wait_with_peak_rss(child: &mut std::process::Child) -> (i32, i64) {
    let status_path = format!("/proc/{}/status", child.id());
    let mut peak_kib = 0i64;
    loop {
        if let Ok(text) = std::fs::read_to_string(&status_path) {
            let hwm = text
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap_or(0);
            peak_kib = peak_kib.max(hwm);
        }
        if let Some(status) = child.try_wait().expect("wait for watch") {
            return (status.code().unwrap_or(-1), peak_kib);
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}
