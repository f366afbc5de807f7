//! The streaming DownloadBundle: an archive body is unpacked while it arrives,
//! and the same bytes are written to `bundle.tar` in the same pass (a tee), so
//! that unpacking overlaps the network and the bundle is read once.
//!
//! Owns the hand-over between the async body and the blocking tar reader: a
//! bounded channel of chunks, so memory stays flat whatever the bundle size
//! (a slow disk makes the download wait, never the other way round). Owns the
//! choice to stream at all: the first bytes decide, and anything that is not
//! plainly the declared tar or tgz (a zip, which needs its central directory;
//! a tgz that is really a plain tar; bytes nothing recognises) is downloaded
//! first and unpacked after, exactly as without streaming. Never checks
//! entries itself: every per-entry rule lives in `unpack/target.rs`.

use std::io::{self, Read, Write};
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
    /// The next chunk, `None` at the end; `Err(Fetch::BrokenOff)` (with the
    /// transport's error) when the body broke off, `Err(Fetch::Final)` when
    /// fetching again cannot help (the object changed under a ranged
    /// download).
    fn next_chunk(&mut self) -> BoxFuture<'_, Result<Option<Bytes>, Fetch>>;
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
/// new `deployment-archive/` holds the revision.
pub(super) async fn receive(
    body: &mut dyn Body,
    declared: BundleType,
    destination: &Destination,
) -> Result<(), Fetch> {
    let mut head: Vec<Bytes> = Vec::new();
    let mut head_len = 0;
    let mut ended = false;
    while head_len < HEAD_LEN {
        match body.next_chunk().await? {
            Some(chunk) => {
                head_len += chunk.as_ref().len();
                head.push(chunk);
            }
            None => {
                ended = true;
                break;
            }
        }
    }
    let first_bytes: Vec<u8> = head
        .iter()
        .flat_map(|c| c.as_ref().iter().copied())
        .take(HEAD_LEN)
        .collect();
    let compression = streaming_for(declared, &first_bytes);

    let (sender, receiver) = mpsc::channel::<Piece<Bytes>>(CHANNEL_CHUNKS);
    let blocking = {
        let destination = destination.clone();
        tokio::task::spawn_blocking(move || match compression {
            Some(compression) => stream_unpack(receiver, compression, &destination),
            None => download_then_unpack(receiver, declared, &destination),
        })
    };

    // The body goes to the blocking side as it comes; a closed channel means
    // that side has stopped (it could not write) and will say why.
    let mut broken = None;
    let mut pieces = head.into_iter().map(Ok);
    loop {
        let next = match pieces.next() {
            Some(chunk) => chunk,
            None if ended => break,
            None => match body.next_chunk().await {
                Ok(Some(chunk)) => Ok(chunk),
                Ok(None) => break,
                Err(cause) => Err(cause),
            },
        };
        match next {
            Ok(chunk) => {
                if sender.send(Piece::Data(chunk)).await.is_err() {
                    break;
                }
            }
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

/// What the async side hands over.
enum Piece<C> {
    Data(C),
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
    /// Broke off, or the async side went away without saying it was done.
    Incomplete,
}

/// The blocking side of the channel as a `Read`, writing every chunk to the
/// partial bundle file before the reader sees it.
struct Tee<C> {
    receiver: mpsc::Receiver<Piece<C>>,
    file: tempfile::NamedTempFile,
    current: Option<C>,
    offset: usize,
    end: BodyEnd,
    /// The first failure to write the bundle file; it decides the outcome.
    write_error: Option<io::Error>,
}

impl<C: AsRef<[u8]>> Tee<C> {
    fn new(receiver: mpsc::Receiver<Piece<C>>, bundle_file: &Path) -> io::Result<Tee<C>> {
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
            offset: 0,
            end: BodyEnd::Open,
            write_error: None,
        })
    }

    /// Takes the next piece off the channel; `false` once the body is over
    /// (or writing failed, after which nothing more is taken).
    fn take_piece(&mut self) -> bool {
        if self.end != BodyEnd::Open || self.write_error.is_some() {
            return false;
        }
        match self.receiver.blocking_recv() {
            Some(Piece::Data(chunk)) => {
                if let Err(e) = self.file.as_file_mut().write_all(chunk.as_ref()) {
                    self.write_error = Some(e);
                    // Closing the channel stops the download.
                    self.receiver.close();
                    return false;
                }
                self.current = Some(chunk);
                self.offset = 0;
                true
            }
            Some(Piece::End) => {
                self.end = BodyEnd::Complete;
                false
            }
            Some(Piece::BrokeOff) | None => {
                self.end = BodyEnd::Incomplete;
                false
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

impl<C: AsRef<[u8]>> Read for Tee<C> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if let Some(chunk) = &self.current {
                let rest = &chunk.as_ref()[self.offset..];
                if !rest.is_empty() {
                    let n = rest.len().min(buf.len());
                    buf[..n].copy_from_slice(&rest[..n]);
                    self.offset += n;
                    return Ok(n);
                }
            }
            if !self.take_piece() {
                return match (&self.write_error, self.end) {
                    (Some(e), _) => Err(io::Error::new(
                        e.kind(),
                        format!("could not write the bundle file: {e}"),
                    )),
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
fn open_tee<C: AsRef<[u8]>>(
    receiver: mpsc::Receiver<Piece<C>>,
    destination: &Destination,
) -> Result<Tee<C>, BundleError> {
    Tee::new(receiver, &destination.bundle_file).map_err(|source| BundleError::Write {
        path: destination.bundle_file.clone(),
        source,
    })
}

/// Streams the body through the tar reader into the archive directory while
/// the tee writes the bundle file.
fn stream_unpack<C: AsRef<[u8]> + Send>(
    receiver: mpsc::Receiver<Piece<C>>,
    compression: TarCompression,
    destination: &Destination,
) -> Result<(), BundleError> {
    let mut tee = open_tee(receiver, destination)?;
    // Two threads: this one parses the tar and writes the files while the
    // read-ahead thread takes the body from the tee (which writes the bundle
    // file) and inflates it.
    let unpacked = unpack_tar_stream(
        &mut tee,
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
fn download_then_unpack<C: AsRef<[u8]>>(
    receiver: mpsc::Receiver<Piece<C>>,
    declared: BundleType,
    destination: &Destination,
) -> Result<(), BundleError> {
    let mut tee = open_tee(receiver, destination)?;
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
