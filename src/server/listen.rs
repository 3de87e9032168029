//! The sockets of `serve`: plain TCP or TLS (rustls, with the PEM files from `tiklive gen-cert`),
//! HTTP/1.1 through hyper with WebSocket upgrades, and a graceful stop that lets requests in flight
//! finish. WebSocket upgrades are answered here; every other request goes to the warp routes.

use std::convert::Infallible;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use warp::Filter;

use super::AppState;
use super::api::{ApiError, error_response};

/// A client must send its request headers (and finish a TLS handshake) within this time.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the certificate or key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the certificate {path}: {reason}")]
    Cert { path: String, reason: String },
    #[error("cannot read the private key {path}: {reason}")]
    Key { path: String, reason: String },
    #[error("the certificate and key do not make a TLS configuration: {0}")]
    Config(String),
}

/// A TLS acceptor from PEM files.
pub fn tls_acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<_, _>>())
        .map_err(|e| TlsError::Cert {
            path: cert.display().to_string(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Cert {
            path: cert.display().to_string(),
            reason: "no certificate in the file".into(),
        });
    }
    // The error of a key file never quotes its content.
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key {
        path: key.display().to_string(),
        reason: match e {
            rustls::pki_types::pem::Error::NoItemsFound => "no private key in the file".into(),
            rustls::pki_types::pem::Error::Io(io) => io.to_string(),
            _ => "not a PEM private key".into(),
        },
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    // WebSockets upgrade HTTP/1.1 connections.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// What a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Serves {
    /// The API, the dashboard, and the WebSocket at `/ws`.
    Everything,
    /// Only the WebSocket feed, at any path.
    FeedOnly,
}

/// Accepts connections until `state.shutdown` fires, then stops accepting; the connections already
/// open are watched by `graceful`.
pub async fn accept_loop(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    serves: Serves,
    state: Arc<AppState>,
    graceful: Arc<GracefulShutdown>,
) {
    let routes = super::api::routes(Arc::clone(&state));
    let mut shutdown = state.shutdown.clone();
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(err) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!(%err, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let service = {
            let state = Arc::clone(&state);
            let warp_service = TowerToHyperService::new(warp::service(
                routes.clone().with(warp::log::custom(log_request)),
            ));
            hyper::service::service_fn(move |req: Request<Incoming>| {
                let state = Arc::clone(&state);
                let warp_service = warp_service.clone();
                async move {
                    let is_feed = match serves {
                        Serves::Everything => req.uri().path() == "/ws",
                        Serves::FeedOnly => true,
                    };
                    if is_feed {
                        if super::ws::is_upgrade(&req) {
                            return Ok::<_, Infallible>(super::ws::upgrade(req, state));
                        }
                        return Ok(error_response(&ApiError::new(
                            StatusCode::UPGRADE_REQUIRED,
                            "upgrade_required",
                            "this address serves the WebSocket feed: connect with a WebSocket client",
                        )));
                    }
                    hyper::service::Service::call(&warp_service, req).await
                }
            })
        };
        let tls = tls.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT);
            let result = match tls {
                None => {
                    let conn =
                        builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                    watcher.watch(conn.into_owned()).await
                }
                Some(acceptor) => {
                    match tokio::time::timeout(HEADER_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => {
                            let conn = builder
                                .serve_connection_with_upgrades(TokioIo::new(stream), service);
                            watcher.watch(conn.into_owned()).await
                        }
                        Ok(Err(err)) => {
                            tracing::debug!(%peer, %err, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    }
                }
            };
            if let Err(err) = result {
                tracing::debug!(%peer, %err, "connection ended with an error");
            }
        });
    }
}

fn log_request(info: warp::log::Info<'_>) {
    tracing::debug!(
        method = %info.method(),
        path = info.path(),
        status = info.status().as_u16(),
        elapsed_ms = info.elapsed().as_millis() as u64,
        "request"
    );
}
