//! One module per subcommand: each turns its clap arguments into core types and runs them. `run`
//! dispatches and returns the exit code; errors carry their own codes (see `error::exit_for`).

pub mod replay;
pub mod watch;

use crate::claims::ClaimParser;
use crate::cli::{Cli, Command, OutputArgs};
use crate::error::Exit;
use crate::events::DecodeOptions;
use crate::pipeline::{EventFilter, Renderer};

pub fn run(cli: Cli) -> anyhow::Result<Exit> {
    match cli.command {
        Command::Watch(args) => watch::run(*args),
        Command::Replay(args) => replay::run(args),
    }
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
