//! One module per subcommand: each turns its clap arguments into core types and runs them. `run`
//! dispatches and returns the exit code; errors carry their own codes (see `error::exit_for`).

mod direct_file;
pub mod export;
pub mod gen_cert;
pub mod login;
pub mod replay;
pub mod sale;
pub mod serve;
pub mod watch;

use std::path::PathBuf;

use crate::claims::ClaimParser;
use crate::cli::{AutoSaleArgs, Cli, Command, ConnectionArgs, DbArgs, OutputArgs, StoreArgs};
use crate::error::{Exit, UsageError};
use crate::events::DecodeOptions;
use crate::money::{PriceList, parse_currency};
use crate::pipeline::{Emitter, EventFilter, Renderer};
use crate::store::{AutoSale, LiveId, NewLive, StoreWriter, WriterConfig};
use crate::webcast::ClientConfig;

pub fn run(cli: Cli) -> anyhow::Result<Exit> {
    match cli.command {
        Command::Watch(args) => watch::run(*args),
        Command::Replay(args) => replay::run(args),
        Command::Sale(command) => sale::run(command),
        Command::Export(args) => export::run(args, cli.quiet),
        Command::GenCert(args) => gen_cert::run(&args),
        Command::Serve(args) => serve::run(*args),
        Command::Login(args) => login::run_login(args),
        Command::Logout(args) => login::run_logout(args),
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

/// Starts the database writer of `watch` or `replay` and records the live, unless `--no-store`. Its
/// first log line says where the events go.
pub(crate) fn start_store(
    args: &StoreArgs,
    auto_sale: Option<AutoSale>,
    live: NewLive,
) -> anyhow::Result<Option<(StoreWriter, LiveId)>> {
    if args.no_store {
        tracing::info!("not storing events (--no-store)");
        return Ok(None);
    }
    let path = db_path(&args.db)?;
    tracing::info!("storing events in {}", path.display());
    if let Some(policy) = &auto_sale {
        policy.announce();
    }
    let config = WriterConfig {
        max_batch: args.commit_events as usize,
        max_delay: args.commit_interval,
        auto_sale,
        ..WriterConfig::default()
    };
    let writer = StoreWriter::spawn(&path, config)?;
    let live = writer.begin_live(live)?;
    Ok(Some((writer, live)))
}

/// Commits what the emitter stored and reports it; an error if storing stopped during the run.
pub(crate) fn finish_store<W: std::io::Write>(emitter: &mut Emitter<W>) -> anyhow::Result<()> {
    match emitter.finish_store() {
        None => Ok(()),
        Some(Ok(stats)) => {
            stats.log();
            Ok(())
        }
        Some(Err(err)) => Err(anyhow::Error::new(err).context(
            "storing stopped during the run: the events printed after that are not in the database",
        )),
    }
}

/// The `--auto-sale` policy, with its price list read and checked before the live starts.
pub(crate) fn auto_sale(args: &AutoSaleArgs, no_store: bool) -> anyhow::Result<Option<AutoSale>> {
    if !args.auto_sale {
        if args.price_list.is_some() {
            tracing::warn!("--price-list is only used with --auto-sale");
        }
        return Ok(None);
    }
    // Checked here rather than by clap: a `TIKLIVE_NO_STORE=false` in .env must not conflict.
    if no_store {
        return Err(UsageError(
            "--auto-sale records sales in the database: it cannot be used with --no-store".into(),
        )
        .into());
    }
    let currency = parse_currency(&args.currency).map_err(UsageError)?;
    let prices = match &args.price_list {
        Some(path) => PriceList::load(path, &currency).map_err(UsageError)?,
        None => PriceList::default(),
    };
    Ok(Some(AutoSale { prices }))
}

/// Opens (and migrates) the existing database of a command that reads or edits it (`export`, `sale`).
pub(crate) fn open_store(args: &DbArgs) -> anyhow::Result<crate::store::Store> {
    Ok(crate::store::Store::open_existing(&db_path(args)?)?)
}

/// The renderer both `watch` and `replay` build from the same output flags.
pub(crate) fn renderer(args: &OutputArgs) -> anyhow::Result<Renderer> {
    let claims = claim_parser(args.claim_pattern.as_deref())?;
    let filter = EventFilter::new(&args.filter, args.claims_only, args.gift_streaks)?;
    Ok(Renderer::new(
        DecodeOptions {
            include_raw: args.include_raw,
            claims,
        },
        filter,
    ))
}

/// The claim parser of `--claim-pattern` (watch, replay, serve): the default keywords when unset or empty.
pub(crate) fn claim_parser(pattern: Option<&str>) -> anyhow::Result<ClaimParser> {
    Ok(match pattern.filter(|p| !p.is_empty()) {
        Some(pattern) => ClaimParser::with_keyword_pattern(pattern)?,
        None => ClaimParser::new(),
    })
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

/// The connection settings of `watch` and `serve`, for the live of `unique_id`.
pub(crate) fn client_config(c: &ConnectionArgs, unique_id: String) -> ClientConfig {
    ClientConfig {
        unique_id,
        room_id: c.room_id,
        web_url: c.web_url.clone(),
        webcast_url: c.webcast_url.clone(),
        sign_url: c.sign_url.clone(),
        sign_api_key: c.sign_api_key.clone().filter(|k| !k.is_empty()),
        session_id: c.session_id.clone().filter(|s| !s.is_empty()),
        tt_target_idc: c.tt_target_idc.clone().filter(|s| !s.is_empty()),
        proxy: c.proxy.clone().filter(|s| !s.is_empty()),
        user_agent: c.user_agent.clone(),
        max_retries: c.max_retries,
        retry_delay: c.retry_delay,
        dead_after: c.dead_after,
        heartbeat_interval: c.heartbeat_interval,
        http_timeout: c.http_timeout,
        compress: !c.no_compress,
    }
}

/// Resolves on SIGTERM (systemd's stop), never where there is no such signal.
#[cfg(unix)]
pub(crate) async fn sigterm() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut s) => {
            s.recv().await;
        }
        Err(_) => std::future::pending().await,
    }
}

#[cfg(not(unix))]
pub(crate) async fn sigterm() {
    std::future::pending().await
}
