//! One module per subcommand: each turns its clap arguments into core types and runs them. `run`
//! dispatches and returns the exit code; errors carry their own codes (see `error::exit_for`).

pub mod export;
pub mod replay;
pub mod sale;
pub mod watch;

use std::path::PathBuf;

use crate::claims::ClaimParser;
use crate::cli::{Cli, Command, DbArgs, OutputArgs};
use crate::error::{Exit, UsageError};
use crate::events::DecodeOptions;
use crate::pipeline::{EventFilter, Renderer};

pub fn run(cli: Cli) -> anyhow::Result<Exit> {
    match cli.command {
        Command::Watch(args) => watch::run(*args),
        Command::Replay(args) => replay::run(args),
        Command::Sale(command) => sale::run(command),
        Command::Export(args) => export::run(args, cli.quiet),
    }
}

/// The database file: `--db` / `TIKLIVE_DB`, else the default under the XDG data directory.
pub(crate) fn db_path(args: &DbArgs) -> anyhow::Result<PathBuf> {
    match &args.db {
        Some(path) => Ok(path.clone()),
        None => crate::store::default_db_path().ok_or_else(|| {
            UsageError(
                "no database path: set --db or TIKLIVE_DB (neither XDG_DATA_HOME nor HOME is set)"
                    .into(),
            )
            .into()
        }),
    }
}

/// Opens (creating and migrating) the database for a command that reads or edits it.
pub(crate) fn open_store(args: &DbArgs) -> anyhow::Result<crate::store::Store> {
    let path = db_path(args)?;
    Ok(crate::store::Store::open(&path)?)
}

/// The renderer both `watch` and `replay` build from the same output flags.
pub(crate) fn renderer(args: &OutputArgs) -> anyhow::Result<Renderer> {
    let claims = match args.claim_pattern.as_deref().filter(|p| !p.is_empty()) {
        Some(pattern) => ClaimParser::with_keyword_pattern(pattern)?,
        None => ClaimParser::new(),
    };
    let filter = EventFilter::new(&args.filter, args.claims_only, args.gift_streaks)?;
    Ok(Renderer::new(
        DecodeOptions {
            include_raw: args.include_raw,
            claims,
        },
        filter,
    ))
}

/// Logs the end-of-run counters: nothing is skipped silently.
pub(crate) fn log_stats(stats: &crate::pipeline::Stats) {
    tracing::info!(
        frames = stats.frames,
        messages = stats.messages,
        printed = stats.printed,
        duplicates = stats.duplicates,
        bad_frames = stats.bad_frames,
        bad_messages = stats.bad_messages,
        unknown = stats.unknown_total(),
        "done"
    );
    if !stats.unknown_methods.is_empty() {
        let list: Vec<String> = stats
            .unknown_methods
            .iter()
            .map(|(m, n)| format!("{m}×{n}"))
            .collect();
        tracing::debug!("unknown methods: {}", list.join(", "));
    }
}
