//! `tiklive watch @user`: follows a live and prints every event as NDJSON, flushed per line, with
//! connection life-cycle lines, optional recording of raw frames, and the documented exit codes.

use std::io::{self, BufWriter, Stdout, Write};

use anyhow::Context;

use crate::cli::WatchArgs;
use crate::error::{Exit, is_closed_pipe};
use crate::events::{Event, now_ms};
use crate::pipeline::{Emitted, Emitter, RenderedBatch, Renderer};
use crate::protocol::FrameContent;
use crate::recording::RecordingWriter;
use crate::store::{LiveSource, NewLive};
use crate::webcast::{
    Incoming, LiveEnd, LiveHandler, RoomInfo, Verdict, normalise_username, run_live,
};

pub fn run(args: WatchArgs) -> anyhow::Result<Exit> {
    let mut renderer = super::renderer(&args.output)?;
    let unique_id = normalise_username(&args.user);
    if unique_id.is_empty() && args.connection.room_id.is_none() {
        return Err(
            crate::error::UsageError(format!("{:?} is not a TikTok username", args.user)).into(),
        );
    }
    let c = &args.connection;
    let config = super::client_config(c, unique_id);
    let recorder = match args.record.as_ref().filter(|p| !p.as_os_str().is_empty()) {
        Some(path) => Some(
            RecordingWriter::append(path)
                .with_context(|| format!("cannot open the recording {}", path.display()))?,
        ),
        None => None,
    };
    let auto_sale = super::auto_sale(&args.auto_sale, args.store.no_store)?;
    let store = super::start_store(
        &args.store,
        auto_sale,
        NewLive {
            host: config.unique_id.clone(),
            room_id: c.room_id.unwrap_or(0),
            title: None,
            source: LiveSource::Watch,
            started_ms: now_ms(),
        },
    )?;
    let mut emitter = Emitter::new(
        BufWriter::new(io::stdout()),
        args.output.dedupe_window,
        true,
    );
    if let Some((writer, live)) = store {
        renderer.store_live = Some(live);
        emitter.attach_store(writer, live);
    }
    let mut handler = WatchHandler {
        renderer,
        emitter,
        recorder,
        batch: RenderedBatch::default(),
        end: None,
        room_id: c.room_id.unwrap_or(0),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let outcome = runtime.block_on(async {
        tokio::select! {
            result = run_live(&config, None, &mut handler) => Outcome::Live(result),
            _ = tokio::signal::ctrl_c() => Outcome::Signal(Exit::Interrupted),
            _ = super::sigterm() => Outcome::Signal(Exit::Terminated),
            _ = stdin_closed() => Outcome::StdinClosed,
        }
    });
    let result = match outcome {
        Outcome::Live(Ok(LiveEnd::Stopped)) => match handler.end {
            Some(End::OutputClosed) => {
                handler.disconnected("stdout was closed");
                Ok(Exit::Success)
            }
            Some(End::StreamEnded) | None => {
                handler.disconnected("the live ended");
                Ok(Exit::Success)
            }
        },
        Outcome::Live(Ok(LiveEnd::Offline)) => {
            handler.disconnected("the host is no longer live");
            Ok(Exit::Success)
        }
        Outcome::Live(Err(err)) => {
            handler.disconnected(&err.to_string());
            Err(err.into())
        }
        Outcome::Signal(exit) => {
            handler.disconnected("interrupted");
            Ok(exit)
        }
        Outcome::StdinClosed => {
            handler.disconnected("stdin was closed");
            Ok(Exit::Success)
        }
    };
    super::log_stats(&handler.emitter.stats);
    // Every accepted event is committed before the process exits, whatever ended the run.
    super::finish_store(&mut handler.emitter)?;
    result
}

enum Outcome {
    Live(Result<LiveEnd, crate::webcast::ConnectError>),
    Signal(Exit),
    StdinClosed,
}

enum End {
    StreamEnded,
    OutputClosed,
}

struct WatchHandler {
    renderer: Renderer,
    emitter: Emitter<BufWriter<Stdout>>,
    recorder: Option<RecordingWriter>,
    batch: RenderedBatch,
    end: Option<End>,
    room_id: u64,
}

impl WatchHandler {
    fn output_failed(&mut self, err: io::Error) -> Verdict {
        if !is_closed_pipe(&err) {
            tracing::error!(%err, "cannot write to stdout");
        }
        self.end = Some(End::OutputClosed);
        Verdict::Stop
    }

    /// The last line of a run (printed unless stdout is gone; stored in any case, as the live's end).
    fn disconnected(&mut self, reason: &str) {
        let event = Event::disconnected(self.room_id, reason);
        if matches!(self.end, Some(End::OutputClosed)) {
            self.emitter.store_event(&event);
            return;
        }
        let _ = self.emitter.emit_event(&self.renderer, &event);
        let _ = self.emitter.flush();
    }
}

impl LiveHandler for WatchHandler {
    fn room_found(&mut self, room_id: u64) {
        self.room_id = room_id;
    }

    fn room_info(&mut self, info: &RoomInfo) {
        if let Some(title) = &info.title {
            self.emitter.store_live_title(title);
        }
    }

    fn handle(&mut self, incoming: Incoming<'_>) -> Verdict {
        match incoming {
            Incoming::Connection(mut event) => {
                if event.room_id != 0 {
                    self.room_id = event.room_id;
                } else {
                    event.room_id = self.room_id;
                }
                match self.emitter.emit_event(&self.renderer, &event) {
                    Ok(()) => Verdict::Continue,
                    Err(e) => self.output_failed(e),
                }
            }
            Incoming::Frame { raw, decoded } => {
                if let Some(recorder) = &mut self.recorder
                    && let Err(err) = recorder.write_frame(raw)
                {
                    tracing::error!(%err, "cannot write the recording; recording stops, printing goes on");
                    self.recorder = None;
                }
                self.batch.clear();
                self.batch.stats.frames = 1;
                match decoded {
                    Ok(FrameContent::Messages { result, .. }) => {
                        self.renderer.render_result(result, &mut self.batch)
                    }
                    Ok(FrameContent::Control { payload_type }) => {
                        tracing::debug!(%payload_type, "control frame");
                    }
                    Err(_) => self.batch.stats.bad_frames = 1,
                }
                match self.emitter.emit(&mut self.batch) {
                    Ok(Emitted::Continue) => Verdict::Continue,
                    Ok(Emitted::StreamEnded) => {
                        self.end = Some(End::StreamEnded);
                        Verdict::Stop
                    }
                    Err(e) => self.output_failed(e),
                }
            }
        }
    }
}

/// Resolves when stdin is a pipe and its writer closes it, so a parent process can stop `watch` by
/// closing our stdin. A terminal, `/dev/null` or a file never ends the run (cron and systemd give us
/// those).
async fn stdin_closed() {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        let is_pipe = std::fs::metadata("/proc/self/fd/0")
            .or_else(|_| std::fs::metadata("/dev/stdin"))
            .map(|m| m.file_type().is_fifo())
            .unwrap_or(false);
        if is_pipe {
            // A plain thread, not spawn_blocking: the runtime must not wait for it at exit.
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            std::thread::spawn(move || {
                let mut sink = [0u8; 4096];
                let mut stdin = io::stdin();
                while let Ok(1..) = io::Read::read(&mut stdin, &mut sink) {}
                let _ = tx.send(());
            });
            let _ = rx.await;
            return;
        }
    }
    std::future::pending::<()>().await
}

impl Drop for WatchHandler {
    fn drop(&mut self) {
        let _ = self.emitter.flush();
        let _ = io::stdout().flush();
    }
}
