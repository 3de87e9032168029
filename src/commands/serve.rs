//! `tiklive serve`: turns the flags into a `server::ServeConfig`, runs the server on a multi-threaded
//! runtime, and stops it on SIGTERM or Ctrl-C with exit 0 once the store is committed.

use anyhow::Context;

use crate::claims::ClaimParser;
use crate::cli::ServeArgs;
use crate::error::{Exit, UsageError};
use crate::events::DecodeOptions;
use crate::money::parse_currency;
use crate::server::{ServeConfig, serve};
use crate::store::WriterConfig;
use crate::webcast::normalise_username;

pub fn run(args: ServeArgs) -> anyhow::Result<Exit> {
    let mut users = Vec::new();
    // An empty TIKTOK_USERNAME (a copied .env.example) names nobody.
    for user in args.users.iter().filter(|u| !u.trim().is_empty()) {
        let name = normalise_username(user);
        if name.is_empty() {
            return Err(UsageError(format!("{user:?} is not a TikTok username")).into());
        }
        if !users.contains(&name) {
            users.push(name);
        }
    }
    if args.connection.room_id.is_some() && users.len() > 1 {
        return Err(UsageError(
            "--room-id names the room of one live: follow a single --user with it".into(),
        )
        .into());
    }
    let auto_sale = super::auto_sale(&args.auto_sale, false)?;
    let currency = parse_currency(&args.auto_sale.currency).map_err(UsageError)?;
    let claims = match args.claim_pattern.as_deref().filter(|p| !p.is_empty()) {
        Some(pattern) => ClaimParser::with_keyword_pattern(pattern)?,
        None => ClaimParser::new(),
    };
    let config = ServeConfig {
        bind: args.bind,
        port: args.port,
        ws_port: (args.ws_port != 0).then_some(args.ws_port),
        api_token: args.api_token.clone(),
        cors_origins: args.cors_origins.clone(),
        tls: args.tls_cert.clone().zip(args.tls_key.clone()),
        db_path: super::db_path(&args.db)?,
        writer: WriterConfig {
            max_batch: args.commit_events as usize,
            max_delay: args.commit_interval,
            auto_sale,
            ..WriterConfig::default()
        },
        users,
        client: super::client_config(&args.connection, String::new()),
        decode: DecodeOptions {
            include_raw: false,
            claims,
        },
        currency,
    };
    crate::webcast::init_tls();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let stop = async {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => tracing::info!("interrupted"),
                _ = super::sigterm() => tracing::info!("terminated"),
            }
        };
        serve(config, stop, |_| {}).await
    })?;
    Ok(Exit::Success)
}
