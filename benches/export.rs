//! `cargo bench --bench export`: how fast the release binary exports one million stored events as CSV,
//! and that its memory stays flat whatever the size of the export (it streams rows).
//!
//! Steps: build (or reuse) a database of 1,000,000 events under `target/bench-data/`, written with the
//! library's writer in commits of 10,000: ten lives of 100,000 events shaped like a selling live (a
//! quarter claims, each with an auto-sale; chat, likes, joins, viewer counts, shares and gifts) from
//! 5,000 viewers with TikTok-sized avatar URLs. Then run `tiklive --quiet export` as a child: the
//! default kind (every event, with its NDJSON line) with `--out` (temporary file, fsync, rename), with
//! stdout redirected to a file, and to /dev/null (no disk at all); a tenth of it with `--out` (memory
//! must not depend on size); and every other kind once. Each run's rows are counted in its output and checked
//! against the database; its peak RSS is the child's VmHWM polled from /proc (`ru_maxrss` would include
//! what the child inherited between fork and exec), and its CPU time comes from `wait4`.
//!
//! Environment: `TIKLIVE_BENCH_EXPORT_EVENTS=N` builds a smaller database (quick checks);
//! `TIKLIVE_BENCH_RUNS=N` times the main run N times (default 3, best reported).

#[path = "support/common.rs"]
mod common;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use tiklive::claims::Claim;
use tiklive::events::{Event, EventData, EventUser, SocialKind, TopViewer};
use tiklive::money::PriceList;
use tiklive::store::{AutoSale, LiveSource, NewLive, StoreWriter, WriterConfig};

/// The product targets quoted in the README, on the 2-core reference machine.
const TARGET_ROWS_PER_SEC: f64 = 1_000_000.0;
/// The peak RSS of the full export may exceed that of a tenth of it by this much at most.
const FLAT_MEMORY_SLACK_MB: f64 = 4.0;

/// Bump when the generated database changes, so a cached one is rebuilt.
const GENERATOR_VERSION: u32 = 1;
const LIVES: u64 = 10;
const VIEWERS: u64 = 5_000;
/// 2026-10-01T18:00:00Z; live `k` starts `k` days later.
const FIRST_LIVE_MS: i64 = 1_790_877_600_000;
const DAY_MS: i64 = 86_400_000;
const EVENT_STEP_MS: i64 = 72;

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("export bench: FAILED (see above)");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("export bench: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<bool, Box<dyn std::error::Error>> {
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_tiklive"));
    let data_dir = common::data_dir();
    fs::create_dir_all(&data_dir)?;
    let events = common::env_number::<u64>("TIKLIVE_BENCH_EXPORT_EVENTS").unwrap_or(1_000_000);
    let timed_runs = common::env_number::<u64>("TIKLIVE_BENCH_RUNS")
        .unwrap_or(3)
        .max(1);

    let started = Instant::now();
    let (db, generated) = cached_database(&data_dir, events)?;
    println!(
        "{} {} ({:.0} MB) in {:.1} s",
        if generated { "generated" } else { "reused" },
        db.display(),
        fs::metadata(&db)?.len() as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );
    let expected = Expected::read(&db)?;
    let load = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average before timing: {}", load.trim());

    let out = data_dir.join("export-out.csv");
    let db_arg = db.display().to_string();
    let export = |kind: &str, extra: &[&str], to: Output| -> io::Result<Run> {
        let mut args = vec!["--quiet", "export", kind, "--db", &db_arg];
        args.extend(extra);
        run_child(&exe, &args, to, &data_dir)
    };
    let out_arg = out.display().to_string();
    let mut ok = true;

    // The README figure: every event to a file, atomically, best of `timed_runs`.
    let mut to_file = Vec::new();
    for _ in 0..timed_runs {
        let _ = fs::remove_file(&out);
        let mut r = export("events", &["--out", &out_arg], Output::Null)?;
        r.rows = Some(count_rows(&out)?);
        r.bytes = fs::metadata(&out)?.len();
        ok &= check("events --out", r.rows, expected.events);
        to_file.push(r);
    }
    to_file.sort_by_key(|r| r.wall);
    let best = to_file[0].clone();
    let redirected = {
        let mut r = export("events", &[], Output::File(&out))?;
        r.rows = Some(count_rows(&out)?);
        r.bytes = fs::metadata(&out)?.len();
        ok &= check("events > file", r.rows, expected.events);
        r
    };
    let devnull = export("events", &[], Output::Null)?;
    let until = format!("{}", (FIRST_LIVE_MS + DAY_MS) / 1000);
    let tenth = {
        // Through `--out`, as the full run it is compared with: the same code, only a tenth of the rows.
        let _ = fs::remove_file(&out);
        let mut r = export(
            "events",
            &["--until", &until, "--out", &out_arg],
            Output::Null,
        )?;
        r.rows = Some(count_rows(&out)?);
        r.bytes = fs::metadata(&out)?.len();
        ok &= check("events --until", r.rows, expected.first_live);
        r
    };

    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!();
    println!(
        "### `tiklive export` ({} stored events, {} lives; {} cores)",
        common::thousands(expected.events),
        LIVES,
        threads
    );
    println!();
    println!("| run | rows | wall | rows/s | CSV | MB/s | CPU user+sys | peak RSS |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    let row = |name: &str, r: &Run, rows: u64, bytes: u64| {
        let secs = r.wall.as_secs_f64();
        println!(
            "| {name} | {} | {:.2} s | {} | {:.0} MB | {:.0} | {:.2} s | {:.1} MB |",
            common::thousands(rows),
            secs,
            common::thousands((rows as f64 / secs) as u64),
            bytes as f64 / 1e6,
            bytes as f64 / 1e6 / secs,
            (r.user + r.sys).as_secs_f64(),
            r.peak_rss_kb as f64 / 1024.0
        );
    };
    row(
        &format!("`export --out FILE` (events), best of {timed_runs}"),
        &best,
        expected.events,
        best.bytes,
    );
    row(
        "`export > FILE` (events, no fsync)",
        &redirected,
        expected.events,
        redirected.bytes,
    );
    row(
        "`export > /dev/null` (events)",
        &devnull,
        expected.events,
        best.bytes,
    );
    row(
        "`export --until --out FILE` (events, the first live)",
        &tenth,
        expected.first_live,
        tenth.bytes,
    );
    for (kind, rows) in expected.kinds() {
        let _ = fs::remove_file(&out);
        let mut r = export(kind, &["--out", &out_arg], Output::Null)?;
        let written = count_rows(&out)?;
        r.bytes = fs::metadata(&out)?.len();
        ok &= check(kind, Some(written), rows);
        row(&format!("`export {kind} --out FILE`"), &r, rows, r.bytes);
    }
    let _ = fs::remove_file(&out);

    println!();
    let rate = expected.events as f64 / best.wall.as_secs_f64();
    let cpu_rate = expected.events as f64 / devnull.wall.as_secs_f64();
    let (full_mb, tenth_mb) = (
        best.peak_rss_kb as f64 / 1024.0,
        tenth.peak_rss_kb as f64 / 1024.0,
    );
    println!(
        "Target ≥ {} rows/s to a file: {} ({} rows/s with --out; {} rows/s to /dev/null).",
        common::thousands(TARGET_ROWS_PER_SEC as u64),
        if rate >= TARGET_ROWS_PER_SEC {
            "met"
        } else {
            "MISSED"
        },
        common::thousands(rate as u64),
        common::thousands(cpu_rate as u64)
    );
    let flat = full_mb <= tenth_mb + FLAT_MEMORY_SLACK_MB;
    println!(
        "Memory flat: {} (peak RSS {full_mb:.1} MB for {} rows, {tenth_mb:.1} MB for {}).",
        if flat { "yes" } else { "NO" },
        common::thousands(expected.events),
        common::thousands(expected.first_live)
    );
    if !flat {
        ok = false;
    }
    Ok(ok)
}

/// Whether a run wrote the rows expected; says so when not.
fn check(name: &str, rows: Option<u64>, expected: u64) -> bool {
    match rows {
        Some(rows) if rows != expected => {
            eprintln!("!!! {name}: {rows} rows written, {expected} expected");
            false
        }
        _ => true,
    }
}

/// Where a child's stdout goes.
#[derive(Clone, Copy)]
enum Output<'a> {
    Null,
    File(&'a Path),
}

#[derive(Debug, Clone)]
struct Run {
    wall: Duration,
    user: Duration,
    sys: Duration,
    peak_rss_kb: u64,
    rows: Option<u64>,
    bytes: u64,
}

/// Runs `exe args` (stderr to `work_dir/export-stderr.log`) and measures it; an exit other than 0 is
/// an error.
fn run_child(exe: &Path, args: &[&str], stdout: Output, work_dir: &Path) -> io::Result<Run> {
    let mut cmd = Command::new(exe);
    cmd.args(args).current_dir(work_dir).stdin(Stdio::null());
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("TIKLIVE_") {
            cmd.env_remove(&key);
        }
    }
    cmd.stdout(match stdout {
        Output::Null => Stdio::null(),
        Output::File(path) => Stdio::from(fs::File::create(path)?),
    });
    let log = work_dir.join("export-stderr.log");
    cmd.stderr(Stdio::from(fs::File::create(&log)?));
    let started = Instant::now();
    let child = cmd.spawn()?;
    let pid = child.id() as libc::pid_t;
    let status_path = format!("/proc/{pid}/status");
    let mut peak_rss_kb = 0;
    let mut status = 0;
    // SAFETY: rusage is plain data that wait4 fills for the child spawned above.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        if let Ok(text) = fs::read_to_string(&status_path) {
            let hwm = text
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap_or(0);
            peak_rss_kb = peak_rss_kb.max(hwm);
        }
        let reaped = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        if reaped == pid {
            break;
        }
        if reaped == -1 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return Err(io::Error::last_os_error());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let wall = started.elapsed();
    // Already reaped: dropping the handle does not wait again.
    drop(child);
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        return Err(io::Error::other(format!(
            "tiklive {} failed (wait status {status:#x}); see {}",
            args.join(" "),
            log.display()
        )));
    }
    let time = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    Ok(Run {
        wall,
        user: time(usage.ru_utime),
        sys: time(usage.ru_stime),
        peak_rss_kb,
        rows: None,
        bytes: 0,
    })
}

/// Rows of a CSV file below its header. No generated text holds a line break, so lines are rows.
fn count_rows(path: &Path) -> io::Result<u64> {
    use io::Read;
    let mut file = fs::File::open(path)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut lines = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(lines.saturating_sub(1));
        }
        lines += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
    }
}

/// What the database holds, counted with plain SQL, to check each export's row count.
struct Expected {
    events: u64,
    first_live: u64,
    by_type: Vec<(&'static str, u64)>,
}

impl Expected {
    fn read(db: &Path) -> rusqlite::Result<Expected> {
        let conn =
            rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        let count = |sql: &str| -> rusqlite::Result<u64> {
            conn.query_row(sql, [], |r| r.get::<_, i64>(0))
                .map(|n| n as u64)
        };
        let mut by_type = Vec::new();
        for (kind, sql) in [
            ("chat", "SELECT count(*) FROM events WHERE type = 'chat'"),
            (
                "gifts",
                "SELECT count(*) FROM events WHERE type = 'gift' AND gift_streaking = 0",
            ),
            ("likes", "SELECT count(*) FROM events WHERE type = 'like'"),
            (
                "members",
                "SELECT count(*) FROM events WHERE type = 'member'",
            ),
            (
                "social",
                "SELECT count(*) FROM events WHERE type = 'social'",
            ),
            (
                "viewers",
                "SELECT count(*) FROM events WHERE type = 'room_user'",
            ),
            ("claims", "SELECT count(*) FROM claims"),
            ("sales", "SELECT count(*) FROM sales"),
            ("buyers", "SELECT count(*) FROM buyers"),
        ] {
            by_type.push((kind, count(sql)?));
        }
        Ok(Expected {
            events: count("SELECT count(*) FROM events")?,
            first_live: count("SELECT count(*) FROM events WHERE live_id = 1")?,
            by_type,
        })
    }

    fn kinds(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        self.by_type.iter().copied()
    }
}

/// The database of `events` events, generated once and reused; `true` when generated now. It is built
/// under a temporary name and renamed when complete, so an interrupted run is not reused.
fn cached_database(dir: &Path, events: u64) -> Result<(PathBuf, bool), Box<dyn std::error::Error>> {
    let path = dir.join(format!("export-v{GENERATOR_VERSION}-e{events}.db"));
    if path.exists() {
        // Migrated to this binary's schema here, untimed, rather than inside the first timed export.
        drop(tiklive::store::Store::open(&path)?);
        return Ok((path, false));
    }
    let building = dir.join(format!("export-v{GENERATOR_VERSION}-e{events}.db.building"));
    for suffix in ["", "-wal", "-shm"] {
        let _ = fs::remove_file(format!("{}{suffix}", building.display()));
    }
    let prices = PriceList::parse("A1,12.50\nA2,7\nA3,29.90\nB1,5\n", "EUR")?;
    let writer = StoreWriter::spawn(
        &building,
        WriterConfig {
            max_batch: 10_000,
            auto_sale: Some(AutoSale { prices }),
            ..WriterConfig::default()
        },
    )?;
    let viewers: Vec<EventUser> = (0..VIEWERS).map(viewer).collect();
    let per_live = events.div_ceil(LIVES);
    let mut n = 0u64;
    for live in 0..LIVES {
        let started = FIRST_LIVE_MS + live as i64 * DAY_MS;
        let room = 7_290_000_000_000_000_000 + live;
        let id = writer.begin_live(NewLive {
            host: "boutique_mode".into(),
            room_id: room,
            title: Some("Vente du soir 👗".into()),
            source: LiveSource::Watch,
            started_ms: started,
        })?;
        for i in 0..per_live.min(events - n) {
            let user = &viewers[(n.wrapping_mul(2_654_435_761) % VIEWERS) as usize];
            let ts = started + i as i64 * EVENT_STEP_MS;
            writer.send(id, &event(room, n, ts, user, &viewers))?;
            n += 1;
        }
    }
    writer.finish()?;
    fs::rename(&building, &path)?;
    Ok((path, true))
}

fn viewer(i: u64) -> EventUser {
    const NAMES: [&str; 6] = ["Léa", "Sofia ✨", "Maëlys 🌸", "Inès", "Chloé 💕", "Jade"];
    EventUser {
        id: 6_800_000_000_000_000_000 + i * 7_919,
        unique_id: format!("acheteuse.{i}"),
        nickname: format!("{} {i}", NAMES[i as usize % NAMES.len()]),
        avatar_url: Some(format!(
            "https://p16-sign-va.tiktokcdn.com/tos-maliva-avt-0068/{:032x}~c5_100x100.webp?\
             x-expires=1791072000&x-signature=Q{:027x}%3D",
            i.wrapping_mul(0x9e37_79b9_7f4a_7c15),
            i * 31
        )),
        follow_role: i % 3,
        is_moderator: i.is_multiple_of(500),
        is_subscriber: i.is_multiple_of(7),
        gifter_level: i % 30,
    }
}

/// Event `n` of the stream: per 8 events, two claims, a chat line, a like, a join, a viewer count, a
/// share or follow, and a finished gift.
fn event(room: u64, n: u64, ts_ms: i64, user: &EventUser, viewers: &[EventUser]) -> Event {
    let (item, variant) = (
        ["A1", "A2", "A3", "B1"][(n % 4) as usize],
        ["S", "M", "L"][(n % 3) as usize],
    );
    let data = match n % 8 {
        0 | 1 => {
            let comment = format!("JP {item} {variant} x{}", 1 + n % 2);
            EventData::Chat {
                claim: Some(Claim {
                    item: Some(item.into()),
                    variant: Some(variant.into()),
                    quantity: 1 + (n % 2) as u32,
                    raw: comment.clone(),
                }),
                comment,
                emotes: Vec::new(),
            }
        }
        2 => EventData::Chat {
            comment: "trop belle cette robe 😍 elle existe en bleu ?".into(),
            emotes: Vec::new(),
            claim: None,
        },
        3 => EventData::Like {
            like_count: 15,
            total_like_count: 10_000 + n,
        },
        4 => EventData::Member {
            action_id: 1,
            member_count: 800 + n % 50,
        },
        5 => EventData::RoomUser {
            viewer_count: 800 + n % 50,
            total_viewers: 5_000 + n / 8,
            top_viewers: (0..3)
                .map(|rank| TopViewer {
                    rank: rank + 1,
                    coin_count: 1_000 - rank * 100,
                    user: Some(viewers[rank as usize].clone()),
                })
                .collect(),
        },
        6 => EventData::Social {
            social_type: if n % 16 == 6 {
                SocialKind::Share
            } else {
                SocialKind::Follow
            },
            action_id: if n % 16 == 6 { 3 } else { 1 },
            share_count: n % 16 / 6,
            display_key: "pm_mt_guidance_share".into(),
        },
        _ => EventData::Gift {
            gift_id: 5655,
            gift_name: "Rose".into(),
            gift_type: 1,
            repeat_count: 1 + n % 5,
            repeat_end: true,
            streaking: false,
            group_id: n,
            diamond_count: 1,
            total_diamonds: 1 + n % 5,
            gift_image_url: Some("https://p16-webcast.tiktokcdn.com/img/maliva/webcast-va/eba3a9bb85c33e017f3648eaf88d7189~tplv-obj.png".into()),
            receiver_user_id: None,
        },
    };
    Event {
        room_id: room,
        msg_id: 7_500_000_000_000_000_000 + n,
        ts_ms,
        user: (n % 8 != 5).then(|| user.clone()),
        data,
        raw: None,
    }
}
