//! `export --out`'s temporary file, written around the page cache where the file system allows: the
//! bytes go to disk by direct I/O (Linux's `O_DIRECT`) from a second thread, in aligned blocks, while
//! the export goes on formatting the next ones. Buffered writes copy every byte into the page cache and
//! leave the kernel to write it back, which the final fsync then waits for: with a 870 MB export that
//! was a third of its CPU time and a third of its wall time. A file system that refuses direct I/O
//! (tmpfs before Linux 6.6, some network file systems), and systems other than Linux, get ordinary
//! writes: the same bytes.

use std::fs::File;
use std::io::{self, Write};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::thread::JoinHandle;

/// Bytes per block handed to the writing thread: large enough that each direct write keeps the disk
/// busy, small enough that the blocks in flight cost little memory.
const BLOCK: usize = 1 << 20;
/// Direct I/O needs the buffer's address, the file offset and the length aligned to the device's
/// logical block size: 4 KiB covers every common disk.
const ALIGN: usize = 4096;
/// Blocks in existence at most: one being filled, one being written, one waiting to be.
const BLOCKS: usize = 3;

/// A file written in blocks by a thread of its own. Bytes written are in the file once
/// [`DirectFile::finish`] has returned `Ok`; the caller still syncs it.
pub struct DirectFile {
    filling: Block,
    blocks: usize,
    to_disk: Option<SyncSender<Block>>,
    written: Receiver<Block>,
    thread: Option<JoinHandle<io::Result<Mode>>>,
}

/// How the writing thread ended up writing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Every block went around the page cache, but for the unaligned end of the last one.
    Direct,
    /// Through the page cache, from the first block or since the file system refused a direct write.
    Buffered,
}

impl DirectFile {
    /// Starts writing `file` (opened for writing, at offset 0) from a second thread.
    pub fn new(file: &File) -> io::Result<DirectFile> {
        let mut file = file.try_clone()?;
        let (to_disk, to_write) = mpsc::sync_channel::<Block>(1);
        let (written_back, written) = mpsc::sync_channel::<Block>(BLOCKS);
        let thread = std::thread::Builder::new()
            .name("tiklive-out".into())
            .spawn(move || {
                let mut mode = if set_direct(&file, true) {
                    Mode::Direct
                } else {
                    Mode::Buffered
                };
                for block in to_write {
                    write_block(&mut file, block.filled(), &mut mode)?;
                    // Gone once the writer has finished: then the block is simply dropped.
                    let _ = written_back.try_send(block);
                }
                Ok(mode)
            })?;
        Ok(DirectFile {
            filling: Block::new(),
            blocks: 1,
            to_disk: Some(to_disk),
            written,
            thread: Some(thread),
        })
    }

    /// Writes what is left and waits for the writing thread: its first error, or how it wrote.
    pub fn finish(mut self) -> io::Result<Mode> {
        let last = std::mem::take(&mut self.filling);
        if !last.filled().is_empty() {
            self.hand_over(last)?;
        }
        drop(self.to_disk.take());
        self.join()
    }

    /// Gives a block to the writing thread; if it has stopped, its error.
    fn hand_over(&mut self, block: Block) -> io::Result<()> {
        match &self.to_disk {
            Some(to_disk) if to_disk.send(block).is_ok() => Ok(()),
            _ => Err(self.stopped()),
        }
    }

    /// Why the writing thread stopped early: its error, once it has ended.
    fn stopped(&mut self) -> io::Error {
        drop(self.to_disk.take());
        match self.join() {
            Err(err) => err,
            Ok(_) => io::Error::other("the thread writing the file has stopped"),
        }
    }

    fn join(&mut self) -> io::Result<Mode> {
        match self.thread.take() {
            Some(thread) => thread
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            None => Err(io::Error::other("the thread writing the file has stopped")),
        }
    }

    /// An empty block: a new one while fewer than [`BLOCKS`] exist, else one the thread has written.
    fn next_block(&mut self) -> io::Result<Block> {
        let written = match self.written.try_recv() {
            Ok(block) => Some(block),
            Err(_) if self.blocks < BLOCKS => {
                self.blocks += 1;
                return Ok(Block::new());
            }
            Err(_) => self.written.recv().ok(),
        };
        match written {
            Some(mut block) => {
                block.len = 0;
                Ok(block)
            }
            None => Err(self.stopped()),
        }
    }
}

impl Drop for DirectFile {
    /// Unfinished (an error elsewhere): stops the thread after the block it is writing.
    fn drop(&mut self) {
        drop(self.to_disk.take());
        let _ = self.join();
    }
}

impl Write for DirectFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.filling.append(buf);
        if self.filling.is_full() {
            let next = self.next_block()?;
            let full = std::mem::replace(&mut self.filling, next);
            self.hand_over(full)?;
        }
        Ok(n)
    }

    /// Nothing to do: blocks are written as they fill, and the last one by `finish`.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// [`BLOCK`] bytes at an aligned address, inside a vector a little larger (safe code, no allocator
/// calls of our own); `len` of them are filled. The default block is empty, with no room.
#[derive(Default)]
struct Block {
    bytes: Vec<u8>,
    start: usize,
    len: usize,
}

impl Block {
    fn new() -> Block {
        let bytes = vec![0; BLOCK + ALIGN];
        let start = (ALIGN - bytes.as_ptr() as usize % ALIGN) % ALIGN;
        Block {
            bytes,
            start,
            len: 0,
        }
    }

    /// Copies as much of `buf` as fits; how much that was.
    fn append(&mut self, buf: &[u8]) -> usize {
        let n = buf.len().min(BLOCK - self.len);
        let at = self.start + self.len;
        self.bytes[at..at + n].copy_from_slice(&buf[..n]);
        self.len += n;
        n
    }

    fn is_full(&self) -> bool {
        self.len == BLOCK
    }

    fn filled(&self) -> &[u8] {
        &self.bytes[self.start..self.start + self.len]
    }
}

/// Writes all of `data`. Direct writes need aligned lengths: the unaligned end of the last block is
/// written buffered (the mode stays `Direct`: only the last block can end unaligned); a block the file
/// system refuses to take directly is written buffered, and so is everything after it.
fn write_block(file: &mut File, data: &[u8], mode: &mut Mode) -> io::Result<()> {
    let aligned = match mode {
        Mode::Direct => data.len() - data.len() % ALIGN,
        Mode::Buffered => data.len(),
    };
    let (head, tail) = data.split_at(aligned);
    write_or_fall_back(file, head, mode)?;
    if !tail.is_empty() {
        if *mode == Mode::Direct {
            set_direct(file, false);
        }
        file.write_all(tail)?;
    }
    Ok(())
}

/// Writes all of `data`; on a direct write refused as invalid (a file system that only accepts some
/// alignments, or a short write that left the file offset unaligned), goes on buffered.
fn write_or_fall_back(file: &mut File, mut data: &[u8], mode: &mut Mode) -> io::Result<()> {
    while !data.is_empty() {
        match file.write(data) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => data = &data[n..],
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) if *mode == Mode::Direct && err.raw_os_error() == Some(libc::EINVAL) => {
                set_direct(file, false);
                *mode = Mode::Buffered;
            }
            Err(err) => return Err(err),
        }
    }
    Ok(())
}

/// Turns direct I/O on or off for `file`; whether it is now on.
#[cfg(target_os = "linux")]
fn set_direct(file: &File, on: bool) -> bool {
    use std::os::fd::AsRawFd;
    let fd = file.as_raw_fd();
    // SAFETY: fcntl on a descriptor `file` owns and keeps open; F_GETFL and F_SETFL touch no memory.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 {
            return false;
        }
        let wanted = if on {
            flags | libc::O_DIRECT
        } else {
            flags & !libc::O_DIRECT
        };
        libc::fcntl(fd, libc::F_SETFL, wanted) == 0 && on
    }
}

#[cfg(not(target_os = "linux"))]
fn set_direct(_file: &File, _on: bool) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// Writes `data` in pieces of the given sizes (cycling), then finishes; the file's bytes and mode.
    fn write_in_pieces(path: &Path, data: &[u8], pieces: &[usize]) -> (Vec<u8>, Mode) {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .unwrap();
        let mut out = DirectFile::new(&file).unwrap();
        let mut rest = data;
        for size in pieces.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (piece, after) = rest.split_at((*size).min(rest.len()));
            out.write_all(piece).unwrap();
            rest = after;
        }
        out.flush().unwrap();
        let mode = out.finish().unwrap();
        file.sync_all().unwrap();
        (std::fs::read(path).unwrap(), mode)
    }

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 4093) as u8).collect()
    }

    #[test]
    fn every_size_is_written_exactly_whatever_the_pieces() {
        let dir = tempfile::tempdir().unwrap();
        // Where the file system takes direct I/O, every block goes around the page cache.
        let expected_mode = if takes_direct_io(dir.path()) {
            Mode::Direct
        } else {
            Mode::Buffered
        };
        let sizes = [
            0,
            1,
            ALIGN - 1,
            ALIGN,
            ALIGN + 1,
            BLOCK - 1,
            BLOCK,
            BLOCK + 1,
            3 * BLOCK + ALIGN,
            5 * BLOCK + 12_345,
        ];
        for (i, size) in sizes.into_iter().enumerate() {
            let data = pattern(size);
            for (j, pieces) in [&[445_000usize][..], &[1, 4095, 70_000, BLOCK + 3]]
                .into_iter()
                .enumerate()
            {
                let (read, mode) =
                    write_in_pieces(&dir.path().join(format!("{i}-{j}")), &data, pieces);
                assert_eq!(read.len(), data.len(), "size {size}, pieces {pieces:?}");
                assert_eq!(mode, expected_mode, "size {size}, pieces {pieces:?}");
                assert!(read == data, "size {size}, pieces {pieces:?}: bytes differ");
            }
        }
    }

    /// Whether files in `dir` take direct I/O (most local file systems on Linux).
    fn takes_direct_io(dir: &Path) -> bool {
        let file = File::create(dir.join("probe")).unwrap();
        set_direct(&file, true)
    }

    #[test]
    fn a_block_the_file_system_refuses_to_take_directly_is_written_buffered() {
        let dir = tempfile::tempdir().unwrap();
        if !takes_direct_io(dir.path()) {
            return;
        }
        let path = dir.path().join("out");
        let mut file = File::create(&path).unwrap();
        assert!(set_direct(&file, true));
        let mut block = Block::new();
        block.append(&pattern(BLOCK));
        let mut mode = Mode::Direct;
        let aligned = &block.filled()[..2 * ALIGN];
        write_block(&mut file, aligned, &mut mode).unwrap();
        assert_eq!(mode, Mode::Direct);
        // A buffer one byte off its alignment: direct I/O refuses it (EINVAL).
        let misaligned = &block.filled()[1..2 * ALIGN + 1];
        write_block(&mut file, misaligned, &mut mode).unwrap();
        assert_eq!(mode, Mode::Buffered);
        write_block(&mut file, &block.filled()[..100], &mut mode).unwrap();
        drop(file);
        let expected = [aligned, misaligned, &block.filled()[..100]].concat();
        assert!(std::fs::read(&path).unwrap() == expected, "bytes differ");
    }

    #[cfg(unix)]
    #[test]
    fn a_write_that_fails_on_the_thread_is_an_error_of_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("read-only");
        std::fs::write(&path, b"").unwrap();
        let file = File::open(&path).unwrap();
        let mut out = DirectFile::new(&file).unwrap();
        let data = pattern(BLOCK);
        // The first full block goes to the thread, which fails; a later write or `finish` says so.
        let mut failed = None;
        for _ in 0..BLOCKS + 2 {
            if let Err(err) = out.write_all(&data) {
                failed = Some(err);
                break;
            }
        }
        let err = match failed {
            Some(err) => err,
            None => out.finish().unwrap_err(),
        };
        assert_eq!(err.raw_os_error(), Some(libc::EBADF), "{err}");
    }
}
