//! Recordings of raw push frames (`watch --record`), and `replay`'s parallel pipeline over them: frames
//! are decoded and rendered on every core, then emitted in their original order by one thread.
//!
//! Format: a sequence of records, each a 4-byte big-endian length followed by that many bytes of one
//! WebSocket binary message exactly as received.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::path::Path;
use std::sync::mpsc::{Receiver, sync_channel};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use crate::pipeline::{Emitted, Emitter, RenderedBatch, Renderer, Stats};
use crate::protocol::{FrameContent, decode_frame};

/// Largest record accepted; a longer length prefix means the file is not a recording or is corrupt.
pub const MAX_RECORD: usize = 64 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum RecordingError {
    #[error("recording is truncated: record at byte {offset} is cut short")]
    Truncated { offset: u64 },
    #[error(
        "not a tiklive recording, or corrupt: record at byte {offset} claims {len} bytes (limit {MAX_RECORD})"
    )]
    TooLarge { offset: u64, len: u64 },
    #[error("cannot read the recording: {0}")]
    Read(#[source] io::Error),
}

/// Appends frames to a recording file, flushing each one so that a killed run keeps what it received.
pub struct RecordingWriter {
    out: BufWriter<File>,
}

impl RecordingWriter {
    pub fn append(path: &Path) -> io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(RecordingWriter {
            out: BufWriter::new(file),
        })
    }

    pub fn write_frame(&mut self, frame: &[u8]) -> io::Result<()> {
        let len = u32::try_from(frame.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame over 4 GiB"))?;
        self.out.write_all(&len.to_be_bytes())?;
        self.out.write_all(frame)?;
        self.out.flush()
    }
}

/// Reads records one by one.
pub struct RecordingReader<R> {
    input: R,
    offset: u64,
}

impl<R: Read> RecordingReader<R> {
    pub fn new(input: R) -> Self {
        RecordingReader { input, offset: 0 }
    }

    /// The next frame, `None` at a clean end of file.
    pub fn next_frame(&mut self) -> Result<Option<Bytes>, RecordingError> {
        let mut len = [0u8; 4];
        let got = read_full(&mut self.input, &mut len).map_err(RecordingError::Read)?;
        if got == 0 {
            return Ok(None);
        }
        let offset = self.offset;
        if got < 4 {
            return Err(RecordingError::Truncated { offset });
        }
        let len = u32::from_be_bytes(len) as usize;
        if len > MAX_RECORD {
            return Err(RecordingError::TooLarge {
                offset,
                len: len as u64,
            });
        }
        let mut frame = vec![0u8; len];
        if read_full(&mut self.input, &mut frame).map_err(RecordingError::Read)? < len {
            return Err(RecordingError::Truncated { offset });
        }
        self.offset += 4 + len as u64;
        Ok(Some(Bytes::from(frame)))
    }
}

fn read_full(input: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Decodes one frame into `out`, counting frames that do not decode.
pub fn render_frame(renderer: &Renderer, frame: Bytes, out: &mut RenderedBatch) {
    out.stats.frames += 1;
    match decode_frame(frame) {
        Ok(FrameContent::Messages { result, .. }) => renderer.render_result(&result, out),
        Ok(FrameContent::Control { .. }) => {}
        Err(err) => {
            out.stats.bad_frames += 1;
            tracing::warn!(%err, "skipped a frame that did not decode");
        }
    }
}

/// Why a replay stopped early.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Recording(#[from] RecordingError),
    /// Writing the output failed (a closed pipe is reported here too; the caller decides).
    #[error("cannot write output: {0}")]
    Output(#[source] io::Error),
}

/// Frames handed to a worker at once: large enough to amortise channel traffic, small enough to keep
/// memory flat.
const FRAMES_PER_JOB: usize = 32;

enum Job {
    Frames(u64, Vec<Bytes>),
    Failed(u64, RecordingError),
}

enum Done {
    Batch(u64, RenderedBatch),
    Failed(u64, RecordingError),
}

/// Replays a recording to `out` using `threads` decoding threads, printing lines in recording order.
/// Returns the counters, including those of lines printed before an error.
pub fn replay<R: Read + Send, W: Write>(
    input: R,
    renderer: &Renderer,
    emitter: &mut Emitter<W>,
    threads: usize,
) -> (Stats, Result<Emitted, ReplayError>) {
    let threads = threads.max(1);
    let result = std::thread::scope(|scope| {
        let (job_tx, job_rx) = sync_channel::<Job>(threads * 2);
        let (done_tx, done_rx) = sync_channel::<Done>(threads * 2);
        scope.spawn(move || {
            let mut reader = RecordingReader::new(input);
            let mut seq = 0;
            loop {
                let mut frames = Vec::with_capacity(FRAMES_PER_JOB);
                let mut failure = None;
                while frames.len() < FRAMES_PER_JOB {
                    match reader.next_frame() {
                        Ok(Some(frame)) => frames.push(frame),
                        Ok(None) => break,
                        Err(err) => {
                            failure = Some(err);
                            break;
                        }
                    }
                }
                let last = failure.is_some() || frames.len() < FRAMES_PER_JOB;
                if !frames.is_empty() {
                    if job_tx.send(Job::Frames(seq, frames)).is_err() {
                        return;
                    }
                    seq += 1;
                }
                if let Some(err) = failure {
                    let _ = job_tx.send(Job::Failed(seq, err));
                }
                if last {
                    return;
                }
            }
        });
        let job_rx = Arc::new(Mutex::new(job_rx));
        for _ in 0..threads {
            let job_rx = Arc::clone(&job_rx);
            let done_tx = done_tx.clone();
            scope.spawn(move || worker(renderer, &job_rx, &done_tx));
        }
        drop(done_tx);
        emit_in_order(&done_rx, emitter)
    });
    (emitter.stats.clone(), result)
}

fn worker(
    renderer: &Renderer,
    jobs: &Mutex<Receiver<Job>>,
    done: &std::sync::mpsc::SyncSender<Done>,
) {
    loop {
        let job = match jobs.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let out = match job {
            Ok(Job::Frames(seq, frames)) => {
                let mut batch = RenderedBatch::default();
                for frame in frames {
                    render_frame(renderer, frame, &mut batch);
                }
                Done::Batch(seq, batch)
            }
            Ok(Job::Failed(seq, err)) => Done::Failed(seq, err),
            Err(_) => return,
        };
        if done.send(out).is_err() {
            return;
        }
    }
}

fn emit_in_order<W: Write>(
    done: &Receiver<Done>,
    emitter: &mut Emitter<W>,
) -> Result<Emitted, ReplayError> {
    let mut pending: BTreeMap<u64, Done> = BTreeMap::new();
    let mut next = 0u64;
    for item in done.iter() {
        let seq = match &item {
            Done::Batch(seq, _) | Done::Failed(seq, _) => *seq,
        };
        pending.insert(seq, item);
        while let Some(item) = pending.remove(&next) {
            next += 1;
            match item {
                Done::Batch(_, mut batch) => {
                    if emitter.emit(&mut batch).map_err(ReplayError::Output)?
                        == Emitted::StreamEnded
                    {
                        return Ok(Emitted::StreamEnded);
                    }
                }
                Done::Failed(_, err) => {
                    emitter.flush().map_err(ReplayError::Output)?;
                    return Err(err.into());
                }
            }
        }
    }
    emitter.flush().map_err(ReplayError::Output)?;
    Ok(Emitted::Continue)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_reports_truncation_and_absurd_lengths() {
        let mut r = RecordingReader::new(&[0u8, 0, 0, 2, 1, 2, 0, 0][..]);
        assert_eq!(r.next_frame().unwrap().unwrap().as_ref(), &[1, 2]);
        assert!(matches!(
            r.next_frame(),
            Err(RecordingError::Truncated { offset: 6 })
        ));
        let mut r = RecordingReader::new(&[0xffu8, 0xff, 0xff, 0xff][..]);
        assert!(matches!(
            r.next_frame(),
            Err(RecordingError::TooLarge { .. })
        ));
        let mut r = RecordingReader::new(&[][..]);
        assert!(r.next_frame().unwrap().is_none());
    }
}
