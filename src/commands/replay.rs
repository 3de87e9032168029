//! `tiklive replay FILE`: prints a recording's events exactly as `watch` printed them, decoding frames
//! on every core.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read};

use anyhow::Context;

use crate::cli::ReplayArgs;
use crate::error::{Exit, is_closed_pipe};
use crate::events::now_ms;
use crate::pipeline::Emitter;
use crate::recording::{ReplayError, replay};
use crate::store::{LiveSource, NewLive};

pub fn run(args: ReplayArgs) -> anyhow::Result<Exit> {
    let mut renderer = super::renderer(&args.output)?;
    let input: Box<dyn Read + Send> = if args.file.as_os_str() == "-" {
        Box::new(io::stdin())
    } else {
        Box::new(BufReader::with_capacity(
            256 * 1024,
            File::open(&args.file)
                .with_context(|| format!("cannot open {}", args.file.display()))?,
        ))
    };
    let threads = args.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
    });
    let stdout = io::stdout().lock();
    let mut emitter = Emitter::new(
        BufWriter::with_capacity(256 * 1024, stdout),
        args.output.dedupe_window,
        false,
    );
    let host = args
        .host
        .as_deref()
        .map(crate::webcast::normalise_username)
        .or_else(|| {
            let stem = args.file.file_stem()?.to_string_lossy().into_owned();
            Some(stem).filter(|s| !s.is_empty() && s != "-")
        })
        .unwrap_or_else(|| "stdin".into());
    let store = super::start_store(
        &args.store,
        None,
        NewLive {
            host,
            room_id: 0,
            title: None,
            source: LiveSource::Replay,
            started_ms: now_ms(),
        },
    )?;
    if let Some((writer, live)) = store {
        renderer.store_live = Some(live);
        emitter.attach_store(writer, live);
    }
    let (stats, result) = replay(input, &renderer, &mut emitter, threads);
    super::log_stats(&stats);
    super::finish_store(&mut emitter)?;
    match result {
        Ok(_) => Ok(Exit::Success),
        Err(ReplayError::Output(e)) if is_closed_pipe(&e) => Ok(Exit::Success),
        Err(e) => Err(e).with_context(|| format!("replay of {} stopped", args.file.display())),
    }
}
