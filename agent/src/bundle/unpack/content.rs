//! The bytes of a file entry, written into a file that the target has
//! already created inside the archive directory: through one reusable buffer,
//! with the agent's stop request checked between two buffers; a sparse file
//! with its holes left as holes, after every number its headers give is
//! checked. Never opens, creates or names a path: where a file goes is the
//! target's decision alone.

use std::fs;
use std::io::{self, Read, Seek, SeekFrom, Write};

use super::{entry_io, is_disk_full, unsafe_entry, ExtractError, SparseContent};
use crate::bundle::read_ahead::fill;
use crate::bundle::sparse::{self, PaxChunks};
use crate::shutdown::Shutdown;

/// Bytes of file content written at a time.
const COPY_BUFFER: usize = 128 * 1024;

/// Writes file content for a [`super::target::Target`].
pub(super) struct ContentWriter {
    /// File content goes through this buffer (empty until the first file):
    /// a few large writes per file instead of `io::copy`'s 8 KiB ones.
    buffer: Vec<u8>,
    /// Checked at each buffer: a stop request is acted on within a second,
    /// not at the end of a large file.
    stop: Shutdown,
}

impl ContentWriter {
    pub(super) fn new(stop: &Shutdown) -> ContentWriter {
        ContentWriter {
            buffer: Vec::new(),
            stop: stop.clone(),
        }
    }

    /// Copies `content` to its end into `file`; the bytes written.
    pub(super) fn write(
        &mut self,
        name: &str,
        content: &mut dyn Read,
        file: &mut fs::File,
    ) -> Result<u64, ExtractError> {
        self.copy(content, |data| file.write_all(data))?
            .map_err(|source| content_io(name, source))
    }

    /// Writes a sparse entry's content into `file`, its holes left as holes,
    /// after checking every number its headers give.
    pub(super) fn write_sparse(
        &mut self,
        name: &str,
        sparse: SparseContent,
        content: &mut dyn Read,
        file: &mut fs::File,
    ) -> Result<(), ExtractError> {
        let refused = |error: sparse::SparseError| unsafe_entry(name, error.to_string());
        let ended_early = || {
            entry_io(
                name,
                io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the archive ends inside this file",
                ),
            )
        };
        let (layout, carried) = match sparse {
            SparseContent::Expanded { size } => {
                let copied = self
                    .copy(&mut content.take(size), |data| {
                        sparse::write_leaving_holes(file, data)
                    })?
                    .map_err(|source| content_io(name, source))?;
                if copied < size {
                    return Err(ended_early());
                }
                return file
                    .set_len(size)
                    .map_err(|source| content_io(name, source));
            }
            SparseContent::Pax { layout, carried } => (layout, carried),
        };
        let (chunks, carried) = match layout.chunks {
            PaxChunks::Listed(chunks) => (chunks, carried),
            PaxChunks::MapInContent => {
                let (chunks, consumed) = sparse::read_map(content).map_err(|e| match e {
                    sparse::MapReadError::Io(source) => entry_io(name, source),
                    sparse::MapReadError::Sparse(error) => refused(error),
                })?;
                let data = carried.checked_sub(consumed).ok_or_else(|| {
                    refused(sparse::SparseError::MalformedMap(
                        "the map is larger than the entry",
                    ))
                })?;
                (chunks, data)
            }
        };
        sparse::check_chunks(&chunks, layout.size, carried).map_err(refused)?;
        for chunk in chunks.iter().filter(|c| c.length > 0) {
            file.seek(SeekFrom::Start(chunk.offset))
                .map_err(|source| content_io(name, source))?;
            let copied = self.write(name, &mut content.take(chunk.length), file)?;
            if copied < chunk.length {
                return Err(ended_early());
            }
        }
        // What no chunk covers stays a hole.
        file.set_len(layout.size)
            .map_err(|source| content_io(name, source))
    }

    /// Copies `content` to the end through the buffer, handing each filled
    /// buffer to `write`; gives up between two buffers once a stop is asked.
    fn copy(
        &mut self,
        content: &mut dyn Read,
        mut write: impl FnMut(&[u8]) -> io::Result<()>,
    ) -> Result<io::Result<u64>, ExtractError> {
        if self.buffer.len() < COPY_BUFFER {
            self.buffer.resize(COPY_BUFFER, 0);
        }
        let buffer = &mut self.buffer;
        let mut copied = 0;
        loop {
            if self.stop.is_triggered() {
                return Err(ExtractError::Stopped);
            }
            // The buffer filled as far as the content goes, then written.
            let (len, error) = fill(content, buffer);
            if let Some(error) = error {
                return Ok(Err(error));
            }
            if len == 0 {
                return Ok(Ok(copied));
            }
            if let Err(error) = write(&buffer[..len]) {
                return Ok(Err(error));
            }
            copied += len as u64;
        }
    }
}

/// A failure writing an entry's content: a full disk is the disk's, not the
/// entry's (it is reported as such).
fn content_io(name: &str, source: io::Error) -> ExtractError {
    match is_disk_full(&source) {
        true => ExtractError::Io(source),
        false => entry_io(name, source),
    }
}
