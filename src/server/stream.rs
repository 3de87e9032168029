//! Response bodies that are written while they are sent: a CSV export runs on a blocking thread and
//! hands the connection 64 KiB chunks through a small channel, so a million-row export holds a few
//! chunks in memory, never the file; a client that goes away stops the export.

use std::io::{self, Write};
use std::path::PathBuf;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use tokio::sync::mpsc;

use crate::export;
use crate::store::Store;

/// The body type of every response: warp's, or a stream.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Bytes handed to the connection at a time.
const CHUNK: usize = 64 * 1024;
/// Chunks waiting for the client at most.
const CHUNKS_IN_FLIGHT: usize = 4;

/// A checked export, attached by the API to an empty response; the connection streams it.
#[derive(Debug, Clone)]
pub struct ExportJob {
    pub db_path: PathBuf,
    pub request: export::Request,
}

/// Turns a warp response into one with our body type, streaming an export if one is attached.
pub fn finish(response: warp::reply::Response) -> hyper::Response<Body> {
    let (mut parts, body) = response.into_parts();
    match parts.extensions.remove::<ExportJob>() {
        Some(job) => hyper::Response::from_parts(parts, export_body(job)),
        None => hyper::Response::from_parts(parts, body.map_err(BoxError::from).boxed_unsync()),
    }
}

fn export_body(job: ExportJob) -> Body {
    let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(CHUNKS_IN_FLIGHT);
    tokio::task::spawn_blocking(move || {
        let mut out = ChannelWriter {
            tx: tx.clone(),
            buf: Vec::with_capacity(CHUNK),
        };
        let result = Store::open(&job.db_path)
            .map_err(|e| io::Error::other(e.to_string()))
            .and_then(|store| {
                export::write_csv(
                    store.conn(),
                    &job.request,
                    &mut out,
                    &mut export::NoProgress,
                )
                .map_err(|e| io::Error::other(e.to_string()))
            })
            .and_then(|_| out.flush());
        if let Err(err) = result
            && err.kind() != io::ErrorKind::BrokenPipe
        {
            tracing::error!(%err, "the export stopped; the client gets a truncated response");
            // An error frame aborts the chunked response, so the client cannot mistake it for a
            // complete file.
            let _ = tx.blocking_send(Err(err));
        }
    });
    let chunks = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|chunk| (chunk.map(Frame::data).map_err(BoxError::from), rx))
    });
    StreamBody::new(chunks).boxed_unsync()
}

/// A `Write` that sends full chunks to the connection, waiting while the client is behind.
struct ChannelWriter {
    tx: mpsc::Sender<io::Result<Bytes>>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the client went away"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}
