//! `tiklive serve`: turns the flags into a `server::ServeConfig`, runs the server on a multi-threaded
//! runtime, and stops it on SIGTERM or Ctrl-C with exit 0 once the store is committed.

use anyhow::Context;

use crate::cli::ServeArgs;
use crate::error::{Exit, UsageError};
use crate::events::DecodeOptions;
use crate::money::parse_currency;
use crate::oauth::{OAuthClient, OAuthConfig};
use crate::server::{ServeConfig, serve};
use crate::store::WriterConfig;
use crate::webcast::normalise_username;

/// How long before its expiry an access token is refreshed (as `login`'s default).
const REFRESH_BEFORE: std::time::Duration = std::time::Duration::from_secs(5 * 60);

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
    let claims = super::claim_parser(args.claim_pattern.as_deref())?;
    let oauth = oauth_client(&args)?;
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
        offline_poll: (!args.offline_poll.is_zero()).then_some(args.offline_poll),
        decode: DecodeOptions {
            include_raw: false,
            claims,
        },
        currency,
        oauth,
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

/// The app of the dashboard's "Connect TikTok", when TIKTOK_CLIENT_KEY (or --client-key) is set;
/// `None` otherwise (the OAuth routes then answer 503). A key without a secret is a usage error.
fn oauth_client(args: &ServeArgs) -> anyhow::Result<Option<OAuthClient>> {
    if args
        .oauth
        .client_key
        .as_deref()
        .is_none_or(|k| k.trim().is_empty())
    {
        return Ok(None);
    }
    let scheme = if args.tls_cert.is_some() {
        "https"
    } else {
        "http"
    };
    let redirect_uri = match args.redirect_uri.as_deref().map(str::trim) {
        Some(uri) if !uri.is_empty() => uri.to_owned(),
        _ => format!("{scheme}://localhost:{}/callback/", args.port),
    };
    let path = reqwest::Url::parse(&redirect_uri)
        .map_err(|_| UsageError(format!("the redirect URI {redirect_uri:?} is not a URL")))?
        .path()
        .trim_end_matches('/')
        .to_owned();
    if !path.ends_with("/callback") && !path.ends_with("/webhook") {
        tracing::warn!(
            "the redirect URI {redirect_uri} does not end in /callback/ or /webhook/: TikTok will \
             send the browser where this server does not take it"
        );
    }
    let config: OAuthConfig = super::login::oauth_config(
        &args.oauth,
        &args.scopes,
        &redirect_uri,
        args.connection.http_timeout,
        REFRESH_BEFORE,
    );
    let client = OAuthClient::new(config)?;
    tracing::info!("\"Connect TikTok\" redirects back to {redirect_uri}");
    Ok(Some(client))
}
