//! `cargo bench --bench store`: how fast the database writer stores events, apart from decoding.
//!
//! The events are those of the replay benchmark's recording (`support/recording.rs`: ~150,000
//! real-sized JSON lines with TikTok's long avatar URLs, 4,000 viewers). They are decoded and
//! rendered first, untimed; the timed part is what `watch` and `replay` do per event once rendered
//! (de-duplicate, queue the prepared row) plus all of the writer's work, up to the last commit, into
//! a new database: the ingest rate, which the target is about. The close that follows (SQLite's final
//! checkpoint of the WAL into the database file, and its sync) happens once per run and is reported
//! beside it, with a rate that includes it. Reported per commit size, with the database size.

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
    println!(
        "| commit size | events stored | transactions | producer waits | to the last commit | events/s | closing (final checkpoint) | events/s, closing included | database |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut ok = true;
    for commit_events in [1_000usize, 10_000] {
        let db = dir.path().join(format!("store-{commit_events}.db"));
        let writer = StoreWriter::spawn(
            &db,
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
        let size = std::fs::metadata(&db)?.len();
        let ingest = elapsed.saturating_sub(stats.closing);
        let eps = stats.events as f64 / ingest.as_secs_f64();
        println!(
            "| {} | {} | {} | {} | {:.2} s | {} | {:.2} s | {} | {:.0} MB |",
            commit_events,
            common::thousands(stats.events),
            stats.transactions,
            stats.producer_waits,
            ingest.as_secs_f64(),
            common::thousands(eps as u64),
            stats.closing.as_secs_f64(),
            common::thousands((stats.events as f64 / elapsed.as_secs_f64()) as u64),
            size as f64 / 1e6
        );
        if commit_events == 1_000 && eps < TARGET_EVENTS_PER_SEC {
            println!(
                "target {TARGET_EVENTS_PER_SEC} events/s with the default commit size: MISSED"
            );
            ok = false;
        }
    }
    Ok(ok)
}
