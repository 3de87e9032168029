//! Configuration sources below the command line: `.env` in the working directory (never overriding the
//! real environment) and the logging filter. Flags and `TIKLIVE_*` variables are read by clap.

use std::io::IsTerminal;
use std::io::Write;
use std::path::Path;

use tracing_subscriber::fmt::writer::MakeWriterExt;

use tracing_subscriber::EnvFilter;

/// Loads `.env` from the working directory if there is one. Variables already set win. An empty
/// `TIKLIVE_*` variable counts as unset, so a copied `.env.example` with blank values behaves like no
/// file at all. Call it first thing in `main`, before any thread exists.
pub fn load_dotenv() {
    match dotenvy::dotenv() {
        Ok(_) => {}
        Err(e) if e.not_found() => {}
        // A malformed .env should not stop the program, but the user must hear about it.
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "tiklive: ignoring .env: {e}");
        }
    }
    let blank: Vec<_> = std::env::vars_os()
        .filter(|(k, v)| k.to_string_lossy().starts_with("TIKLIVE_") && v.is_empty())
        .map(|(k, _)| k)
        .collect();
    for key in blank {
        // SAFETY: called at the start of `main`, while the process has a single thread.
        unsafe { std::env::remove_var(key) };
    }
}

/// Logs go to stderr, never stdout, and also to `log_file` (rotated daily: `FILE.YYYY-MM-DD`) when
/// given. `TIKLIVE_LOG` (an `EnvFilter` string) overrides the level chosen by `--quiet` / `-v`. Colours
/// only on a terminal, and never with a log file.
pub fn init_logging(quiet: bool, verbose: u8, log_file: Option<&Path>) -> Result<(), String> {
    let level = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "info",
        (false, 1) => "debug",
        (false, _) => "trace",
    };
    let filter = std::env::var("TIKLIVE_LOG")
        .ok()
        .filter(|f| !f.trim().is_empty())
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| {
            EnvFilter::new(if quiet {
                "error".to_owned()
            } else {
                format!("warn,tiklive={level}")
            })
        });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        // Its own report of a failed write is an eprintln!, which panics when stderr is closed.
        .log_internal_errors(false);
    match log_file {
        None => {
            let _ = builder
                .with_writer(std::io::stderr)
                .with_ansi(std::io::stderr().is_terminal())
                .try_init();
        }
        Some(path) => {
            let name = path
                .file_name()
                .ok_or_else(|| format!("--log-file {} names no file", path.display()))?;
            let dir = match path.parent() {
                Some(dir) if !dir.as_os_str().is_empty() => dir,
                _ => Path::new("."),
            };
            let appender = tracing_appender::rolling::Builder::new()
                .rotation(tracing_appender::rolling::Rotation::DAILY)
                .filename_prefix(name.to_string_lossy())
                .build(dir)
                .map_err(|e| format!("cannot open the log file {}: {e}", path.display()))?;
            let _ = builder
                .with_writer(std::io::stderr.and(appender))
                .with_ansi(false)
                .try_init();
        }
    }
    Ok(())
}
