//! The streaming DownloadBundle: an archive body is unpacked while it arrives,
//! and the same bytes are written to `bundle.tar` in the same pass (a tee), so
//! that unpacking overlaps the network and the bundle is read once.
//!
//! Owns the hand-over between the async body and the blocking tar reader: a
//! bounded channel of chunks, so memory stays flat whatever the bundle size
//! (a slow disk makes the download wait, never the other way round). Each
//! chunk carries its place in the object and is written there, so the parts
//! of a ranged download may arrive side by side; the tar reader gets the
//! bytes in order, as far as they are written without a gap. Owns the
//! choice to stream at all: the first bytes decide, and anything that is not
//! plainly the declared tar or tgz (a zip, which needs its central directory;
//! a tgz that is really a plain tar; bytes nothing recognises) is downloaded
//! first and unpacked after, exactly as without streaming. Never checks
//! entries itself: every per-entry rule lives in `unpack/target.rs`.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use tokio::sync::mpsc;

use super::error::{ArchiveFormat, BrokenOff, BundleError};
use super::sniff::sniff_archive;
use super::unpack::{unpack_tar_stream, unpack_with, TarCompression};
use crate::config::BundlePolicy;
use crate::deployment_spec::BundleType;
use crate::shutdown::Shutdown;

/// Chunks in flight between the body and the tar reader. A body chunk is at
/// most a few hundred KiB, so this bounds the buffered bundle to a few MiB.
const CHANNEL_CHUNKS: usize = 8;

/// Bytes of the body looked at before choosing to stream: a tar header, where
/// the `ustar` magic sits.
const HEAD_LEN: usize = 512;

/// Prefix of the temporary bundle file beside `bundle.tar` (the fault tests
/// look for it to prove nothing partial is left).
pub(super) const PARTIAL_PREFIX: &str = ".bundle-download-";

/// A response body, chunk by chunk. The S3 body and the ranged download
/// (`s3/ranged.rs`) implement it; tests feed chunks of their own, including a
/// body that breaks off. Used as `dyn Body`: [`receive`] (and the blocking
/// task it starts) is compiled once, not once per kind of body.
pub(super) trait Body: Send {
    /// The next chunk with its place in the object, `None` at the end;
    /// `Err(Fetch::BrokenOff)` (with the transport's error) when the body
    /// broke off, `Err(Fetch::Final)` when fetching again cannot help (the
    /// object changed under a ranged download). Chunks may come in any
    /// order (a ranged download's parts arrive side by side), never
    /// overlapping.
    fn next_chunk(&mut self) -> BoxFuture<'_, Result<Option<Placed>, Fetch>>;
}

/// A chunk of a body and the offset of its first byte in the object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Placed {
    pub at: u64,
    pub bytes: Bytes,
}

/// Places the chunks of a body that arrive in the object's order, one after
/// the other.
#[derive(Debug, Default)]
pub(super) struct InOrder {
    next: u64,
}

impl InOrder {
    pub(super) fn place(&mut self, bytes: Bytes) -> Placed {
        let at = self.next;
        self.next += bytes.len() as u64;
        Placed { at, bytes }
    }
}

/// Why one attempt failed: whether fetching again may help.
#[derive(Debug)]
pub(super) enum Fetch {
    /// The body stopped midway: fetching again may help.
    BrokenOff(BrokenOff),
    Final(BundleError),
}

impl From<BundleError> for Fetch {
    fn from(error: BundleError) -> Fetch {
        Fetch::Final(error)
    }
}

/// Where one bundle goes: the file the official layout keeps, the directory
/// it unpacks to, and the rules each entry is checked against.
#[derive(Debug, Clone)]
pub(super) struct Destination {
    pub bundle_file: PathBuf,
    pub archive_dir: PathBuf,
    pub policy: BundlePolicy,
    /// The agent's stop request, checked at every entry.
    pub stop: Shutdown,
}

/// How a body with these first bytes, declared as `declared`, is unpacked.
/// Pure.
fn streaming_for(declared: BundleType, head: &[u8]) -> Option<TarCompression> {
    match (declared, sniff_archive(head)) {
        (BundleType::Tgz, Some(BundleType::Tgz)) => Some(TarCompression::Gzip),
        (BundleType::Tar, Some(BundleType::Tar)) => Some(TarCompression::None),
        _ => None,
    }
}

/// Receives `body` into `destination`: streamed through the tar reader when
/// its first bytes allow (see [`streaming_for`]), else written whole and then
/// unpacked. Either way `bundle.tar` holds the whole body on success, and a
/// new `deployment-archive/` holds the revision. Each chunk is written to the
/// bundle file at its place, so a ranged download's parts go to disk as they
/// come, and the tar reader follows the bytes written without a gap.
pub(super) async fn receive(
    body: &mut dyn Body,
    declared: BundleType,
    destination: &Destination,
) -> Result<(), Fetch> {
    let (sender, receiver) = mpsc::channel::<Piece>(CHANNEL_CHUNKS);
    let blocking = {
        let destination = destination.clone();
        tokio::task::spawn_blocking(move || unpack_received(receiver, declared, &destination))
    };

    // The body goes to the blocking side as it comes; a closed channel means
    // that side has stopped (it could not write) and will say why.
    let mut broken = None;
    loop {
        match body.next_chunk().await {
            Ok(Some(chunk)) => {
                if sender.send(Piece::Data(chunk)).await.is_err() {
                    break;
                }
            }
            Ok(None) => break,
            Err(cause) => {
                broken = Some(cause);
                break;
            }
        }
    }
    let last = match broken {
        Some(_) => Piece::BrokeOff,
        None => Piece::End,
    };
    let _ = sender.send(last).await;
    drop(sender);

    let outcome = blocking.await.map_err(|source| {
        Fetch::Final(BundleError::UnpackTask {
            format: ArchiveFormat::Tar,
            source,
        })
    })?;
    // A body that broke off is fetched again whatever the unpacking made of
    // the truncated stream: the next attempt starts from an empty archive
    // directory, and the partial bundle file is already gone. A body that
    // failed for good says why, whatever the unpacking made of it.
    if let Some(cause) = broken {
        return Err(cause);
    }
    outcome.map_err(Fetch::Final)
}

/// The blocking side: the first bytes choose how the body is unpacked.
fn unpack_received(
    receiver: mpsc::Receiver<Piece>,
    declared: BundleType,
    destination: &Destination,
) -> Result<(), BundleError> {
    let mut tee = open_tee(receiver, destination)?;
    let mut head = Vec::with_capacity(HEAD_LEN);
    // A failure here (the body broke off, the file could not be written) is
    // the tee's to report when it finishes.
    let streaming = match (&mut tee).take(HEAD_LEN as u64).read_to_end(&mut head) {
        Ok(_) => streaming_for(declared, &head),
        Err(_) => None,
    };
    match streaming {
        Some(compression) => stream_unpack(tee, head, compression, destination),
        None => download_then_unpack(tee, declared, destination),
    }
}

/// What the async side hands over.
enum Piece {
    Data(Placed),
    /// The body ended normally.
    End,
    /// The body broke off; the async side knows why.
    BrokeOff,
}

/// How the body ended, as the blocking side saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyEnd {
    Open,
    Complete,
    /// Broke off, ended with a gap, or the async side went away without
    /// saying it was done.
    Incomplete,
}

/// Which bytes of the bundle file are written: all below `prefix`, and runs
/// beyond it (a ranged download's parts ahead of the first unfinished one).
/// Pure.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Written {
    prefix: u64,
    /// Start → end (exclusive) of each run beyond the prefix, none touching.
    runs: BTreeMap<u64, u64>,
}

/// A chunk that would write bytes already written.
#[derive(Debug, thiserror::Error)]
#[error("the download handed over bytes {at}-{} twice", .at + .len - 1)]
struct Overlap {
    at: u64,
    len: u64,
}

impl Written {
    /// Records `len` bytes written at `at`.
    fn add(&mut self, at: u64, len: u64) -> Result<(), Overlap> {
        let overlap = Overlap { at, len };
        let Some(end) = at.checked_add(len) else {
            return Err(overlap);
        };
        if len == 0 {
            return Ok(());
        }
        if at < self.prefix {
            return Err(overlap);
        }
        let mut start = at;
        if let Some((&before, &before_end)) = self.runs.range(..=at).next_back() {
            if before_end > at {
                return Err(overlap);
            }
            if before_end == at {
                start = before;
            }
        }
        let mut end = end;
        if let Some((&after, &after_end)) = self.runs.range(at + 1..).next() {
            if after < end {
                return Err(overlap);
            }
            if after == end {
                self.runs.remove(&after);
                end = after_end;
            }
        }
        self.runs.insert(start, end);
        while let Some(end) = self.runs.remove(&self.prefix) {
            self.prefix = end;
        }
        Ok(())
    }

    /// The first bytes not written below the last one written, if any.
    fn first_gap(&self) -> Option<std::ops::Range<u64>> {
        let (&start, _) = self.runs.first_key_value()?;
        Some(self.prefix..start)
    }
}

/// The blocking side of the channel as a `Read`: every chunk is written to
/// the partial bundle file at its place, and the reader gets the bytes in
/// order as far as they are written without a gap, from the chunk just
/// taken when it is the next one, else from the file.
struct Tee {
    receiver: mpsc::Receiver<Piece>,
    file: tempfile::NamedTempFile,
    /// The chunk last taken.
    current: Option<Placed>,
    /// The offset of the next byte the reader gets.
    read_at: u64,
    written: Written,
    end: BodyEnd,
    /// The first failure to write the bundle file; it decides the outcome.
    write_error: Option<io::Error>,
}

impl Tee {
    fn new(receiver: mpsc::Receiver<Piece>, bundle_file: &Path) -> io::Result<Tee> {
        let dir = bundle_file
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let file = tempfile::Builder::new()
            .prefix(PARTIAL_PREFIX)
            .tempfile_in(dir)?;
        Ok(Tee {
            receiver,
            file,
            current: None,
            read_at: 0,
            written: Written::default(),
            end: BodyEnd::Open,
            write_error: None,
        })
    }

    /// Handles one piece: a chunk is written at its place. `false` once the
    /// body is over (or writing failed, after which nothing more is taken).
    fn handle(&mut self, piece: Option<Piece>) -> bool {
        match piece {
            Some(Piece::Data(chunk)) => {
                let len = chunk.bytes.len() as u64;
                let written = self
                    .written
                    .add(chunk.at, len)
                    .map_err(io::Error::other)
                    .and_then(|()| self.file.as_file().write_all_at(&chunk.bytes, chunk.at));
                if let Err(e) = written {
                    self.write_error = Some(e);
                    // Closing the channel stops the download.
                    self.receiver.close();
                    return false;
                }
                self.current = Some(chunk);
                true
            }
            Some(Piece::End) => {
                match self.written.first_gap() {
                    None => self.end = BodyEnd::Complete,
                    Some(gap) => {
                        // A body that says it is done must have handed
                        // over every byte: a hole is never a bundle.
                        self.write_error = Some(io::Error::other(format!(
                            "the download ended without bytes {}-{}",
                            gap.start,
                            gap.end - 1
                        )));
                        self.end = BodyEnd::Incomplete;
                    }
                }
                false
            }
            Some(Piece::BrokeOff) | None => {
                self.end = BodyEnd::Incomplete;
                false
            }
        }
    }

    fn open(&self) -> bool {
        self.end == BodyEnd::Open && self.write_error.is_none()
    }

    /// Waits for the next piece and handles it.
    fn take_piece(&mut self) -> bool {
        if !self.open() {
            return false;
        }
        let piece = self.receiver.blocking_recv();
        self.handle(piece)
    }

    /// Handles the pieces already waiting, without waiting: the download
    /// keeps flowing while the reader works through what is written.
    fn take_ready(&mut self) {
        while self.open() {
            match self.receiver.try_recv() {
                Ok(piece) => {
                    self.handle(Some(piece));
                }
                Err(mpsc::error::TryRecvError::Empty) => return,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    self.handle(None);
                }
            }
        }
    }

    /// Writes what the reader left unread (tar padding after the end of the
    /// archive, or everything when unpacking failed) to the bundle file.
    fn drain(&mut self) {
        while self.take_piece() {}
    }

    /// Renames the partial file to `bundle_file` when the whole body was
    /// written; drops (removes) it otherwise.
    fn finish(self, bundle_file: &Path) -> Result<BodyEnd, BundleError> {
        let write_error = |source| BundleError::Write {
            path: bundle_file.to_path_buf(),
            source,
        };
        if let Some(error) = self.write_error {
            return Err(write_error(error));
        }
        if self.end == BodyEnd::Complete {
            // No fsync: nothing reads bundle.tar after the unpack, and the
            // unpacked tree it would protect is not synced either (a crash
            // fails the command, which the next deployment redoes).
            self.file
                .persist(bundle_file)
                .map_err(|e| write_error(e.error))?;
        }
        Ok(self.end)
    }
}

impl Read for Tee {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        self.take_ready();
        loop {
            if let Some(e) = &self.write_error {
                return Err(io::Error::new(
                    e.kind(),
                    format!("could not write the bundle file: {e}"),
                ));
            }
            if let Some(chunk) = &self.current {
                let from = self.read_at.wrapping_sub(chunk.at);
                if self.read_at >= chunk.at && from < chunk.bytes.len() as u64 {
                    let rest = &chunk.bytes[from as usize..];
                    let n = rest.len().min(buf.len());
                    buf[..n].copy_from_slice(&rest[..n]);
                    self.read_at += n as u64;
                    return Ok(n);
                }
            }
            if self.read_at < self.written.prefix {
                let ahead = self.written.prefix - self.read_at;
                let n = buf.len().min(usize::try_from(ahead).unwrap_or(usize::MAX));
                let got = self.file.as_file().read_at(&mut buf[..n], self.read_at)?;
                if got == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the bundle file is shorter than what was written to it",
                    ));
                }
                self.read_at += got as u64;
                return Ok(got);
            }
            if !self.take_piece() {
                return match (&self.write_error, self.end) {
                    (Some(_), _) => continue,
                    (None, BodyEnd::Complete) => Ok(0),
                    (None, _) => Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the download broke off",
                    )),
                };
            }
        }
    }
}

/// The tee that writes the body to the bundle file's temporary twin.
fn open_tee(
    receiver: mpsc::Receiver<Piece>,
    destination: &Destination,
) -> Result<Tee, BundleError> {
    Tee::new(receiver, &destination.bundle_file).map_err(|source| BundleError::Write {
        path: destination.bundle_file.clone(),
        source,
    })
}

/// Streams the body through the tar reader into the archive directory while
/// the tee writes the bundle file; `head` is what the tee gave already.
fn stream_unpack(
    mut tee: Tee,
    head: Vec<u8>,
    compression: TarCompression,
    destination: &Destination,
) -> Result<(), BundleError> {
    // Two threads: this one parses the tar and writes the files while the
    // read-ahead thread takes the body from the tee (which writes the bundle
    // file) and inflates it.
    let unpacked = unpack_tar_stream(
        io::Cursor::new(head).chain(&mut tee),
        compression,
        &destination.archive_dir,
        &destination.policy,
        &destination.stop,
    );
    tee.drain();
    // A failure to write the bundle file, or a body cut short, outranks what
    // the tar reader made of it.
    match tee.finish(&destination.bundle_file)? {
        BodyEnd::Complete => unpacked,
        _ => {
            if unpacked.is_ok() {
                // The archive was whole but the body was not: the retry
                // unpacks again; leave nothing that looks finished.
                let _ = super::unpack::remove_tree(&destination.archive_dir);
            }
            Ok(())
        }
    }
}

/// The body written whole to `bundle.tar`, then unpacked from the file, as
/// before streaming existed: for zip, and for bytes that are not plainly the
/// declared tar or tgz (their failure, if any, is the same as it always was).
fn download_then_unpack(
    mut tee: Tee,
    declared: BundleType,
    destination: &Destination,
) -> Result<(), BundleError> {
    tee.drain();
    match tee.finish(&destination.bundle_file)? {
        BodyEnd::Complete => unpack_with(
            &destination.bundle_file,
            declared,
            &destination.archive_dir,
            &destination.policy,
            &destination.stop,
        ),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests;
