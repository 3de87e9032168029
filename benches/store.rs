//! `cargo bench --bench store`: how fast the database writer stores events, apart from decoding.
//!
//! The events are those of the replay benchmark's recording (`support/recording.rs`: ~150,000
//! real-sized JSON lines with TikTok's long avatar URLs, 4,000 viewers). They are decoded and
//! rendered first, untimed; the timed part is what `watch` and `replay` do per event once rendered
//! (de-duplicate, queue the prepared row) plus all of the writer's work, up to the last commit, into
//! a new database: the ingest rate, which the target is about. The close that follows (SQLite's final
//! checkpoint of the WAL into the database file, and its sync) happens once per run and is reported
//! beside it, with a rate that includes it. Reported per commit size, with the database size.
//!
//! Each commit size is timed `TIKLIVE_BENCH_RUNS` times (default 3), each run into a new database;
//! the row of the median run is printed, with the best and worst rates beside it, and the target is
//! judged on the median. (The reference VM's speed varies by up to 2× from one run to the next.)

#[path = "support/common.rs"]
mod common;
#[path = "support/recording.rs"]
mod recording;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use tiklive::pipeline::{Emitter, RenderedBatch, Renderer};
use tiklive::recording::{RecordingReader, render_frame};
use tiklive::store::{LiveSource, NewLive, StoreWriter, WriterConfig};

/// The product target on the 2-core reference machine.
const TARGET_EVENTS_PER_SEC: f64 = 200_000.0;

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("store bench: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<bool, Box<dyn std::error::Error>> {
    let data_dir = common::data_dir();
    let mut spec = recording::Spec::benchmark();
    if let Some(frames) = common::env_number::<usize>("TIKLIVE_BENCH_FRAMES") {
        spec.frames = frames;
    }
    let (path, _, _) = recording::cached_recording(&data_dir, &spec)?;
    let frames = {
        let mut reader = RecordingReader::new(std::io::BufReader::new(std::fs::File::open(&path)?));
        let mut frames = Vec::new();
        while let Some(frame) = reader.next_frame()? {
            frames.push(frame);
        }
        frames
    };
    // TIKLIVE_BENCH_DB_DIR=/dev/shm measures without the disk.
    let db_dir = std::env::var_os("TIKLIVE_BENCH_DB_DIR").map_or(data_dir.clone(), PathBuf::from);
    let dir = tempfile::tempdir_in(&db_dir)?;
    let runs = common::env_number::<usize>("TIKLIVE_BENCH_RUNS")
        .unwrap_or(3)
        .max(1);
    println!(
        "| commit size | events stored | transactions | producer waits | to the last commit | events/s (median of {runs}) | best – worst | closing (final checkpoint) | events/s, closing included | database |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut ok = true;
    for commit_events in [1_000usize, 10_000] {
        let mut timed: Vec<Run> = (0..runs)
            .map(|run| {
                store_once(
                    &frames,
                    &dir.path().join(format!("store-{commit_events}-{run}.db")),
                    commit_events,
                )
            })
            .collect::<Result<_, _>>()?;
        timed.sort_by(|a, b| a.events_per_sec.total_cmp(&b.events_per_sec));
        let median = &timed[timed.len() / 2];
        let (worst, best) = (&timed[0], &timed[timed.len() - 1]);
        println!(
            "| {} | {} | {} | {} | {:.2} s | {} | {} – {} | {:.2} s | {} | {:.0} MB |",
            commit_events,
            common::thousands(median.events),
            median.transactions,
            median.producer_waits,
            median.ingest_secs,
            common::thousands(median.events_per_sec as u64),
            common::thousands(best.events_per_sec as u64),
            common::thousands(worst.events_per_sec as u64),
            median.closing_secs,
            common::thousands(median.with_closing_per_sec as u64),
            median.db_bytes as f64 / 1e6
        );
        if commit_events == 1_000 && median.events_per_sec < TARGET_EVENTS_PER_SEC {
            println!(
                "target {TARGET_EVENTS_PER_SEC} events/s with the default commit size: MISSED"
            );
            ok = false;
        }
    }
    Ok(ok)
}

/// One timed run: what the table prints.
struct Run {
    events: u64,
    transactions: u64,
    producer_waits: u64,
    ingest_secs: f64,
    events_per_sec: f64,
    closing_secs: f64,
    with_closing_per_sec: f64,
    db_bytes: u64,
}

/// Stores the rendered `frames` into a new database at `db`, committing every `commit_events`.
fn store_once(
    frames: &[bytes::Bytes],
    db: &std::path::Path,
    commit_events: usize,
) -> Result<Run, Box<dyn std::error::Error>> {
    let writer = StoreWriter::spawn(
        db,
        WriterConfig {
            max_batch: commit_events,
            ..WriterConfig::default()
        },
    )?;
    let live = writer.begin_live(NewLive {
        host: "bench".into(),
        room_id: 0,
        title: None,
        source: LiveSource::Replay,
        started_ms: 0,
    })?;
    let renderer = Renderer {
        store_live: Some(live),
        ..Renderer::default()
    };
    let mut batches: Vec<RenderedBatch> = frames
        .iter()
        .map(|frame| {
            let mut batch = RenderedBatch::default();
            render_frame(&renderer, frame.clone(), &mut batch);
            batch
        })
        .collect();
    let mut emitter = Emitter::new(std::io::sink(), 100_000, false);
    emitter.attach_store(writer, live);
    let started = Instant::now();
    for batch in &mut batches {
        emitter.emit(batch)?;
    }
    let stats = emitter.finish_store().expect("a store is attached")?;
    let elapsed = started.elapsed();
    let ingest = elapsed.saturating_sub(stats.closing);
    let db_bytes = std::fs::metadata(db)?.len();
    // The next run writes a database of its own; this one is not needed.
    std::fs::remove_file(db)?;
    Ok(Run {
        events: stats.events,
        transactions: stats.transactions,
        producer_waits: stats.producer_waits,
        ingest_secs: ingest.as_secs_f64(),
        events_per_sec: stats.events as f64 / ingest.as_secs_f64(),
        closing_secs: stats.closing.as_secs_f64(),
        with_closing_per_sec: stats.events as f64 / elapsed.as_secs_f64(),
        db_bytes,
    })
}
