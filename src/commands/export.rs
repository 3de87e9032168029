//! `tiklive export`: stored history as CSV, for cron jobs and spreadsheets. Turns the flags into an
//! `export::Request`, resolves the user, writes to stdout or atomically to `--out`, draws a progress
//! bar on a terminal, and moves an `--incremental` cursor only once the output is complete.

use std::fs::{self, File, OpenOptions};
use std::io::{self, IsTerminal};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock, mpsc};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::direct_file::DirectFile;
use crate::cli::{ExportArgs, ExportKind};
use crate::error::{Exit, NotFoundError, UsageError, is_closed_pipe};
use crate::events::{now_ms, parse_time_arg};
use crate::export::{
    self, CsvFormat, Cursor, ExportError, Filters, Kind, Progress, Request, Written,
};
use crate::server::lock;

/// Exports walking through fewer row ids than this finish too fast for a progress bar to help.
const LARGE_EXPORT: u64 = 200_000;

pub fn run(args: ExportArgs, quiet: bool) -> anyhow::Result<Exit> {
    let now = now_ms();
    let kind = kind_of(args.kind);
    let format = csv_format(&args)?;
    let time = |flag: &str, text: &Option<String>| -> anyhow::Result<Option<i64>> {
        text.as_deref()
            .map(|t| parse_time_arg(t, now).map_err(|e| UsageError(format!("{flag}: {e}"))))
            .transpose()
            .map_err(Into::into)
    };
    let since_ms = time("--since", &args.since)?;
    let until_ms = time("--until", &args.until)?;
    let filters = Filters {
        since_ms,
        until_ms,
        live: args.live,
        room: args.room,
        user: None,
    };
    let user = args.user.as_deref();
    // Usage errors before the database is opened.
    export::check_filters(kind, &filters, user).map_err(command_error)?;
    let store = super::open_store(&args.db)?;
    let filters = export::resolve_filters(&store, kind, filters, user).map_err(command_error)?;
    let conn = store.conn();
    let cursor = match &args.incremental {
        Some(name) => Some(Cursor::load(conn, name, kind).map_err(command_error)?),
        None => None,
    };
    let request = Request {
        kind,
        filters,
        format,
        after_id: cursor.as_ref().map_or(0, Cursor::last_id),
    };
    let output_is_terminal = args.out.is_none() && io::stdout().is_terminal();
    let mut bar = Bar::new(!quiet && io::stderr().is_terminal() && !output_is_terminal);

    // Once the output is complete.
    let advance = |written: &Written| -> anyhow::Result<()> {
        if let Some(cursor) = &cursor {
            cursor
                .advance(conn, written, now_ms())
                .map_err(command_error)?;
        }
        Ok(())
    };
    let written = match &args.out {
        Some(path) => write_atomically(
            path,
            |file| export::write_csv(conn, &request, file, &mut bar),
            advance,
        )?,
        None => match export::write_csv(conn, &request, io::stdout(), &mut bar) {
            Ok(written) => {
                advance(&written)?;
                written
            }
            // `| head`: the reader has all it wanted. The cursor stays where it was.
            Err(ExportError::Write(e)) if is_closed_pipe(&e) => return Ok(Exit::Success),
            Err(ExportError::Write(e)) => {
                return Err(anyhow::Error::new(e).context("cannot write the CSV to stdout"));
            }
            Err(e) => return Err(command_error(e)),
        },
    };
    drop(bar);
    tracing::info!(
        rows = written.rows,
        "exported {kind}{}",
        args.out
            .as_ref()
            .map(|p| format!(" to {}", p.display()))
            .unwrap_or_default()
    );
    Ok(Exit::Success)
}

fn kind_of(kind: ExportKind) -> Kind {
    match kind {
        ExportKind::Events => Kind::Events,
        ExportKind::Chat => Kind::Chat,
        ExportKind::Gifts => Kind::Gifts,
        ExportKind::Likes => Kind::Likes,
        ExportKind::Members => Kind::Members,
        ExportKind::Social => Kind::Social,
        ExportKind::Viewers => Kind::Viewers,
        ExportKind::Claims => Kind::Claims,
        ExportKind::Sales => Kind::Sales,
        ExportKind::Buyers => Kind::Buyers,
    }
}

/// `--excel-fr` gives a BOM, `;` and decimal commas; `--bom` and `--delimiter` add to or override it.
fn csv_format(args: &ExportArgs) -> Result<CsvFormat, UsageError> {
    let mut format = if args.excel_fr {
        CsvFormat::excel_fr()
    } else {
        CsvFormat::default()
    };
    format.bom |= args.bom;
    if let Some(text) = &args.delimiter {
        format.delimiter =
            export::parse_delimiter(text).map_err(|e| UsageError(format!("--delimiter: {e}")))?;
    }
    Ok(format)
}

/// Gives the core's errors the exit codes the command line documents.
fn command_error(err: ExportError) -> anyhow::Error {
    match err {
        ExportError::Invalid(message) => UsageError(message).into(),
        ExportError::NotFound(message) => NotFoundError(message).into(),
        other => other.into(),
    }
}

/// Writes `target` through a temporary file in the same directory, synced and then renamed over it:
/// whoever reads `target` (a cron job's next step) sees the previous file or the complete new one,
/// never a part. The temporary file is removed when anything fails.
///
/// `then` runs once the file is in place (an `--incremental` cursor is moved there): a signal that
/// comes meanwhile ends the export only after it, so a replaced file and its cursor go together.
fn write_atomically(
    target: &Path,
    write: impl FnOnce(&mut DirectFile) -> Result<Written, ExportError>,
    then: impl FnOnce(&Written) -> anyhow::Result<()>,
) -> anyhow::Result<Written> {
    // `Path::file_name` ignores a trailing slash: "out/" would be written as "out", then fail.
    if target.is_dir() || target.as_os_str().as_encoded_bytes().ends_with(b"/") {
        return Err(UsageError(format!(
            "--out {} is a directory: name the file to write in it, e.g. {}",
            target.display(),
            target.join("export.csv").display()
        ))
        .into());
    }
    let name = target
        .file_name()
        .with_context(|| format!("--out {} does not name a file", target.display()))?;
    let dir = match target.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    };
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(name);
    temp_name.push(format!(
        ".{}-{:08x}.tmp",
        std::process::id(),
        fastrand::u32(..)
    ));
    let temp = dir.join(temp_name);
    listen_for_signals()?;
    let file = {
        // Made while the signal thread waits, so that it either finds the file or none is made.
        let mut pending = lock(&PENDING_TEMP);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)
            .with_context(|| format!("cannot create a file in {}", dir.display()))?;
        *pending = Some(temp.clone());
        file
    };
    let written = (|| {
        // A file replaced every night keeps the permissions it was given.
        if let Ok(meta) = fs::metadata(target) {
            let _ = file.set_permissions(meta.permissions());
        }
        let mut out = DirectFile::new(&file)?;
        let written = write(&mut out);
        let finished = out.finish();
        let written = written.map_err(command_error)?;
        let mode = finished?;
        tracing::debug!(?mode, "wrote {}", temp.display());
        file.sync_all()?;
        drop(file);
        Ok::<_, anyhow::Error>(written)
    })();
    // From here to the end of `then`, a signal waits for this lock.
    let mut pending = lock(&PENDING_TEMP);
    let renamed = written.and_then(|written| {
        fs::rename(&temp, target)?;
        Ok(written)
    });
    *pending = None;
    let written = match renamed {
        Ok(written) => written,
        Err(err) => {
            let _ = fs::remove_file(&temp);
            return Err(err.context(format!("cannot write {}", target.display())));
        }
    };
    // Makes the rename itself durable before an --incremental cursor records the export; some
    // file systems cannot sync a directory, and the file is in place anyway.
    if let Ok(dir) = File::open(&dir) {
        let _ = dir.sync_all();
    }
    then(&written)?;
    drop(pending);
    Ok(written)
}

/// The temporary file of `--out` while it is written, which SIGINT (Ctrl-C) or SIGTERM (a cron job's
/// or systemd's timeout) would otherwise leave behind: a hidden, partial file per interrupted run. The
/// signal thread takes this lock before it acts, and keeps it.
static PENDING_TEMP: Mutex<Option<PathBuf>> = Mutex::new(None);

/// Starts, once, the thread that waits for SIGINT or SIGTERM, and returns once it listens for both.
/// On a signal it removes the pending temporary file, if any, and ends the process by that signal, as
/// its default action would have (so a shell loop around the export stops on Ctrl-C, and systemd sees
/// the signal).
fn listen_for_signals() -> io::Result<()> {
    static LISTENING: OnceLock<Result<(), String>> = OnceLock::new();
    LISTENING
        .get_or_init(|| spawn_signal_thread().map_err(|e| e.to_string()))
        .clone()
        .map_err(|e| io::Error::other(format!("cannot watch for Ctrl-C: {e}")))
}

fn spawn_signal_thread() -> io::Result<()> {
    let (ready, is_ready) = mpsc::sync_channel::<io::Result<()>>(1);
    std::thread::Builder::new()
        .name("tiklive-signals".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build()
            {
                Ok(runtime) => runtime,
                Err(err) => {
                    let _ = ready.send(Err(err));
                    return;
                }
            };
            let signal = runtime.block_on(async move {
                #[cfg(unix)]
                {
                    use tokio::signal::unix::{SignalKind, signal};
                    let (mut interrupt, mut terminate) = match (
                        signal(SignalKind::interrupt()),
                        signal(SignalKind::terminate()),
                    ) {
                        (Ok(interrupt), Ok(terminate)) => (interrupt, terminate),
                        (Err(err), _) | (_, Err(err)) => {
                            let _ = ready.send(Err(err));
                            return None;
                        }
                    };
                    let _ = ready.send(Ok(()));
                    tokio::select! {
                        _ = interrupt.recv() => Some(Exit::Interrupted),
                        _ = terminate.recv() => Some(Exit::Terminated),
                    }
                }
                #[cfg(not(unix))]
                {
                    let interrupt = tokio::signal::ctrl_c();
                    let _ = ready.send(Ok(()));
                    interrupt.await.ok().map(|()| Exit::Interrupted)
                }
            });
            if let Some(exit) = signal {
                // Kept until the process is gone: the main thread makes no file after this.
                let mut pending = lock(&PENDING_TEMP);
                if let Some(temp) = pending.take() {
                    let _ = fs::remove_file(temp);
                }
                die_by(exit);
            }
        })?;
    is_ready
        .recv()
        .unwrap_or_else(|_| Err(io::Error::other("the signal thread stopped")))
}

/// Ends the process by the signal `exit` stands for, or with its code where that cannot be done.
fn die_by(exit: Exit) -> ! {
    #[cfg(unix)]
    {
        let signal = match exit {
            Exit::Terminated => libc::SIGTERM,
            _ => libc::SIGINT,
        };
        // SAFETY: restoring a signal's default action and raising it are async-signal-safe, and
        // this is an ordinary thread, not a signal handler.
        unsafe {
            libc::signal(signal, libc::SIG_DFL);
            libc::raise(signal);
        }
    }
    std::process::exit(exit as i32)
}

/// The progress bar: on stderr, only when allowed and the export is large; cleared when dropped.
struct Bar {
    allowed: bool,
    bar: Option<ProgressBar>,
}

impl Bar {
    fn new(allowed: bool) -> Bar {
        Bar { allowed, bar: None }
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

impl Progress for Bar {
    fn begin(&mut self, total: u64) {
        if !shows_bar(self.allowed, total) {
            return;
        }
        let style = ProgressStyle::with_template("{percent:>3}% {wide_bar} {eta} left")
            .expect("the template is valid");
        self.bar = Some(
            ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr())
                .with_style(style),
        );
    }

    fn advance(&mut self, done: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(done);
        }
    }
}

/// A bar only where someone watches (stderr a terminal, no `--quiet`, stdout not that terminal) and
/// long enough to be worth one.
fn shows_bar(allowed: bool, total: u64) -> bool {
    allowed && total >= LARGE_EXPORT
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::ValueEnum;
    use std::io::Write;

    #[test]
    fn every_kind_on_the_command_line_is_the_core_kind_of_the_same_name() {
        let names: Vec<String> = ExportKind::value_variants()
            .iter()
            .map(|k| {
                let value = k.to_possible_value().unwrap();
                assert_eq!(value.get_name(), kind_of(*k).name());
                value.get_name().to_owned()
            })
            .collect();
        let core: Vec<&str> = Kind::ALL.iter().map(|k| k.name()).collect();
        assert_eq!(names, core);
    }

    #[test]
    fn a_bar_needs_permission_and_a_large_export() {
        assert!(shows_bar(true, LARGE_EXPORT));
        assert!(!shows_bar(true, LARGE_EXPORT - 1), "small export");
        assert!(!shows_bar(false, u64::MAX), "pipe or --quiet");
        assert!(!shows_bar(true, 0), "size unknown");
    }

    #[test]
    fn a_failed_write_leaves_the_previous_file_and_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.csv");
        fs::write(&target, "before\n").unwrap();
        let err = write_atomically(
            &target,
            |file| {
                file.write_all(b"half a fi").unwrap();
                Err(ExportError::Write(io::Error::other("disk full")))
            },
            |_| panic!("a failed export has no cursor to move"),
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("disk full"), "{err:#}");
        assert_eq!(fs::read_to_string(&target).unwrap(), "before\n");
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "{names:?}");

        let mut then_saw = None;
        write_atomically(
            &target,
            |file| {
                file.write_all(b"after\n").unwrap();
                Ok(Written::default())
            },
            |_| {
                then_saw = Some(fs::read_to_string(&target).unwrap());
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(then_saw.as_deref(), Some("after\n"), "after the rename");
        assert_eq!(fs::read_to_string(&target).unwrap(), "after\n");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
