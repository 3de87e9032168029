//! `tiklive serve`, the long-running form of tiklive: it follows lives, stores everything, and serves
//! an HTTP API, a WebSocket feed and the dashboard. This module wires the parts together and owns the
//! order of shutdown: stop accepting, close WebSockets with 1001, stop the lives, commit the store.

mod api;
mod feed;
mod listen;
mod lives;
mod oauth_routes;
mod stream;
mod ws;

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use api::MAX_BODY;
pub use listen::TlsError;
pub use lives::{LiveState, LiveStatus};

use crate::error::UsageError;
use crate::events::{DecodeOptions, now_ms};
use crate::store::{Store, StoreWriter, WriterConfig};
use crate::webcast::ClientConfig;
use feed::Feed;
pub(crate) use feed::lock;
use lives::{LiveContext, Lives};

/// How often a changed status is published, at most.
const STATUS_EVERY: Duration = Duration::from_millis(250);
/// How often the database is asked for sales changed by anyone (the API, another process).
const SALES_POLL_EVERY: Duration = Duration::from_millis(500);
/// The whole shutdown takes at most about this long.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// Everything `serve` needs, resolved from flags, environment and defaults.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub bind: IpAddr,
    pub port: u16,
    /// The second port serving only the feed; `None` for none.
    pub ws_port: Option<u16>,
    pub api_token: Option<String>,
    pub cors_origins: Vec<String>,
    pub tls: Option<(PathBuf, PathBuf)>,
    pub db_path: PathBuf,
    pub writer: WriterConfig,
    /// Hosts followed from the start (normalised usernames).
    pub users: Vec<String>,
    /// The connection settings of every live; `unique_id` is set per live.
    pub client: ClientConfig,
    /// How often to check again whether a host who is not live has started; `None`: never.
    pub offline_poll: Option<std::time::Duration>,
    pub decode: DecodeOptions,
    /// The currency of prices given without one.
    pub currency: String,
    /// The TikTok app of the dashboard's "Connect TikTok"; `None`: not configured.
    pub oauth: Option<crate::oauth::OAuthClient>,
}

/// What the API handlers and the WebSocket clients share.
pub(crate) struct AppState {
    store: Mutex<Store>,
    db_path: PathBuf,
    writer: Arc<StoreWriter>,
    lives: Lives,
    feed: Arc<Feed>,
    auth: api::Auth,
    cors_origins: Vec<String>,
    currency: String,
    shutdown: watch::Receiver<bool>,
    oauth: Option<Arc<oauth_routes::OAuthWeb>>,
}

/// The addresses a running server listens on (the ports may have been 0).
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    pub api: SocketAddr,
    pub feed: Option<SocketAddr>,
}

/// Runs the server until `stop` resolves, then shuts down in order. `on_bound` is told the addresses
/// once the sockets listen.
pub async fn serve(
    config: ServeConfig,
    stop: impl Future<Output = ()>,
    on_bound: impl FnOnce(Bound),
) -> anyhow::Result<()> {
    let token = config.api_token.clone().filter(|t| !t.is_empty());
    if !config.bind.is_loopback() && token.is_none() {
        return Err(UsageError(format!(
            "refusing to serve on {} without an API token: set TIKLIVE_API_TOKEN (or --api-token), \
             or bind to 127.0.0.1",
            config.bind
        ))
        .into());
    }
    let tls = match &config.tls {
        Some((cert, key)) => Some(listen::tls_acceptor(cert, key)?),
        None => None,
    };
    let store = Store::open(&config.db_path)?;
    let writer = Arc::new(StoreWriter::spawn(&config.db_path, config.writer.clone())?);
    tracing::info!("storing events in {}", config.db_path.display());
    if let Some(policy) = &config.writer.auto_sale {
        policy.announce();
    }

    let api_listener = bind(config.bind, config.port, "--port / PORT").await?;
    let feed_listener = match config.ws_port {
        Some(port) => Some(bind(config.bind, port, "--ws-port / WS_PORT").await?),
        None => None,
    };
    let bound = Bound {
        api: api_listener.local_addr()?,
        feed: feed_listener.as_ref().map(|l| l.local_addr()).transpose()?,
    };

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let feed = Arc::new(Feed::default());
    let context = Arc::new(LiveContext {
        feed: Arc::clone(&feed),
        writer: Arc::clone(&writer),
        client: config.client.clone(),
        decode: config.decode.clone(),
        status_dirty: AtomicBool::new(false),
        offline_poll: config.offline_poll,
    });
    let state = Arc::new(AppState {
        store: Mutex::new(store),
        db_path: config.db_path.clone(),
        writer: Arc::clone(&writer),
        lives: Lives::new(context),
        feed,
        auth: api::Auth::new(token),
        cors_origins: config.cors_origins.clone(),
        currency: config.currency.clone(),
        shutdown: shutdown_rx,
        oauth: config
            .oauth
            .clone()
            .map(|client| Arc::new(oauth_routes::OAuthWeb::new(client, tls.is_some()))),
    });

    let graceful = Arc::new(GracefulShutdown::new());
    let mut accepting = Vec::new();
    accepting.push(tokio::spawn(listen::accept_loop(
        api_listener,
        tls.clone(),
        listen::Serves::Everything,
        Arc::clone(&state),
        Arc::clone(&graceful),
    )));
    if let Some(listener) = feed_listener {
        accepting.push(tokio::spawn(listen::accept_loop(
            listener,
            tls.clone(),
            listen::Serves::FeedOnly,
            Arc::clone(&state),
            Arc::clone(&graceful),
        )));
    }
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!("dashboard and API on {scheme}://{}", bound.api);
    if let Some(addr) = bound.feed {
        let scheme = if tls.is_some() { "wss" } else { "ws" };
        tracing::info!("WebSocket feed also on {scheme}://{addr}");
    }
    on_bound(bound);

    for user in &config.users {
        state.lives.connect(user).await;
    }
    let background = tokio::spawn(background(Arc::clone(&state)));

    stop.await;
    tracing::info!("shutting down");
    let _ = shutdown_tx.send(true);
    background.abort();
    for task in accepting {
        let _ = task.await;
    }
    let stopped = async {
        state.lives.disconnect_all().await;
        // Every live has written its last line; wait for the clients to have their close frames.
        while state.feed.clients() > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    if tokio::time::timeout(SHUTDOWN_GRACE, stopped).await.is_err() {
        tracing::warn!("some lives or clients did not stop in time");
    }
    let graceful = Arc::try_unwrap(graceful).ok();
    if let Some(graceful) = graceful
        && tokio::time::timeout(Duration::from_secs(1), graceful.shutdown())
            .await
            .is_err()
    {
        tracing::warn!("some requests were still running at exit");
    }
    // Commit what the writer holds, whatever else is still running.
    let writer = Arc::clone(&state.writer);
    drop(state);
    tokio::task::spawn_blocking(move || finish_writer(writer))
        .await
        .context("the store writer")?
}

/// Commits and stops the writer; the last reference finishes it.
fn finish_writer(writer: Arc<StoreWriter>) -> anyhow::Result<()> {
    match Arc::try_unwrap(writer) {
        Ok(writer) => {
            writer.finish()?.log();
            Ok(())
        }
        Err(writer) => {
            // A live task still holds it: flush what it sent so far.
            writer.flush()?;
            tracing::info!("database up to date");
            Ok(())
        }
    }
}

async fn bind(ip: IpAddr, port: u16, flag: &str) -> anyhow::Result<TcpListener> {
    let addr = SocketAddr::new(ip, port);
    TcpListener::bind(addr).await.map_err(|err| {
        let hint = if err.kind() == std::io::ErrorKind::AddrInUse {
            format!(": another program uses port {port}; choose another with {flag}")
        } else {
            String::new()
        };
        anyhow::anyhow!("cannot listen on {addr}: {err}{hint}")
    })
}

/// Publishes status changes and sales changed by anyone, until shutdown.
async fn background(state: Arc<AppState>) {
    let mut status_tick = tokio::time::interval(STATUS_EVERY);
    let mut sales_tick = tokio::time::interval(SALES_POLL_EVERY);
    let mut since = now_ms();
    loop {
        tokio::select! {
            _ = status_tick.tick() => state.lives.publish_status_if_changed().await,
            _ = sales_tick.tick() => {
                let from = since;
                let polled = {
                    let state = Arc::clone(&state);
                    tokio::task::spawn_blocking(move || crate::orders::changed_since(&lock(&state.store), from)).await
                };
                match polled {
                    Ok(Ok(sales)) => {
                        for sale in &sales {
                            since = since.max(sale.updated_ms);
                            state.feed.announce_sale(sale);
                        }
                    }
                    Ok(Err(err)) => tracing::warn!(%err, "cannot read the sales"),
                    Err(err) => tracing::warn!(%err, "cannot read the sales"),
                }
            }
        }
    }
}
