//! Configuration sources below the command line: `.env` in the working directory (never overriding the
//! real environment) and the logging filter. Flags and `TIKLIVE_*` variables are read by clap.

use std::io::IsTerminal;
use std::io::Write;

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

/// Logs go to stderr, never stdout. `TIKLIVE_LOG` (an `EnvFilter` string) overrides the level chosen by
/// `--quiet` / `-v`. Colours only on a terminal.
pub fn init_logging(quiet: bool, verbose: u8) {
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
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        // Its own report of a failed write is an eprintln!, which panics when stderr is closed.
        .log_internal_errors(false)
        .try_init();
}
