//! Reading a stream on a second thread while the caller consumes it, so that
//! unpacking a tgz uses both of a small host's cores: in the streaming
//! DownloadBundle one thread receives the body, writes `bundle.tar` and
//! inflates while the other parses the tar and writes the revision's files
//! (a tgz read from a file, as GitHub's or codedeploy-local's, is inflated
//! the same way). Without it the two halves take turns.
//!
//! Owns only the hand-over: fixed-size blocks travel between the threads and
//! are reused, so memory stays bounded (4 MiB ahead, enough to let a folder
//! of small files, slow to create, overlap the inflate of the large files
//! that follow) whatever the stream's size. The reading thread lives exactly
//! as long as one call; no thread is kept waiting for the next bundle. Never
//! interprets the bytes.

use std::io::{self, Read};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread;

/// Bytes handed over at a time: large enough that the hand-over costs nothing
/// next to the work on either side.
const BLOCK: usize = 256 * 1024;

/// Blocks filled ahead of the consumer: 4 MiB. With 3 (768 KiB) the large
/// revision's DownloadBundle took 1.7 s instead of 1.3 s, each thread
/// waiting on the other in turn.
const BLOCKS_AHEAD: usize = 16;

/// A block as it travels: its buffer (always `BLOCK` long) and how much of it
/// holds data.
type Filled = (Vec<u8>, usize);

/// Runs `consume` on what `source` yields, reading `source` on a thread of
/// its own. When `consume` returns before the end (it is done, or it failed),
/// the reading thread stops at its next block; `source` is left where that
/// thread stopped, so the caller may go on reading it. When no thread can be
/// started, `consume` reads `source` directly.
pub(super) fn read_ahead<R, T>(source: &mut R, consume: impl FnOnce(&mut dyn Read) -> T) -> T
where
    R: Read + Send,
{
    let threaded = thread::scope(|scope| {
        let (filled_tx, filled_rx) = sync_channel::<io::Result<Filled>>(BLOCKS_AHEAD);
        let (empty_tx, empty_rx) = sync_channel::<Vec<u8>>(BLOCKS_AHEAD + 2);
        let reader = &mut *source;
        let spawned = thread::Builder::new()
            .name("codedeploy-read-ahead".to_string())
            .spawn_scoped(scope, move || pump(reader, &filled_tx, &empty_rx));
        let Ok(handle) = spawned else {
            return Err(consume);
        };
        let mut pipe = Pipe {
            filled: filled_rx,
            empty: empty_tx,
            current: None,
            offset: 0,
        };
        let outcome = consume(&mut pipe);
        // Dropping the receiving end is what stops the reading thread.
        drop(pipe);
        let _ = handle.join();
        Ok(outcome)
    });
    threaded.unwrap_or_else(|consume| consume(source))
}

/// The reading thread: fills blocks until `source` ends or fails, or the
/// consumer goes away. The end of `source` is told by hanging up.
fn pump(source: &mut dyn Read, filled: &SyncSender<io::Result<Filled>>, empty: &Receiver<Vec<u8>>) {
    loop {
        let mut block = empty.try_recv().unwrap_or_else(|_| vec![0; BLOCK]);
        let (len, error) = fill(source, &mut block);
        if len > 0 && filled.send(Ok((block, len))).is_err() {
            return;
        }
        if let Some(error) = error {
            let _ = filled.send(Err(error));
            return;
        }
        if len == 0 {
            return;
        }
    }
}

/// Reads into `block` until it is full, `source` ends, or reading fails;
/// what was read before a failure is kept.
pub(super) fn fill(source: &mut dyn Read, block: &mut [u8]) -> (usize, Option<io::Error>) {
    let mut len = 0;
    while len < block.len() {
        match source.read(&mut block[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (len, Some(e)),
        }
    }
    (len, None)
}

/// The consumer's side: blocks as a `Read`, each returned for reuse once read.
struct Pipe {
    filled: Receiver<io::Result<Filled>>,
    empty: SyncSender<Vec<u8>>,
    current: Option<Filled>,
    offset: usize,
}

impl Read for Pipe {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if let Some((block, len)) = &self.current {
                if self.offset < *len {
                    let n = (*len - self.offset).min(buf.len());
                    buf[..n].copy_from_slice(&block[self.offset..self.offset + n]);
                    self.offset += n;
                    return Ok(n);
                }
            }
            if let Some((block, _)) = self.current.take() {
                let _ = self.empty.try_send(block);
            }
            match self.filled.recv() {
                Ok(Ok(next)) => {
                    self.current = Some(next);
                    self.offset = 0;
                }
                Ok(Err(error)) => return Err(error),
                // The reading thread hung up: the end of the stream.
                Err(_) => return Ok(0),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A source that yields `data` in uneven reads, then fails if asked to.
    struct Uneven {
        data: Vec<u8>,
        at: usize,
        fail_at_end: bool,
    }

    impl Read for Uneven {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.at == self.data.len() {
                return match self.fail_at_end {
                    true => Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "corrupt deflate stream",
                    )),
                    false => Ok(0),
                };
            }
            let n = (self.data.len() - self.at)
                .min(buf.len())
                .min(7919 + self.at % 5000);
            buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
            self.at += n;
            Ok(n)
        }
    }

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    #[test]
    fn the_consumer_reads_exactly_what_the_source_yields() {
        for len in [0, 1, BLOCK - 1, BLOCK, BLOCK + 1, 5 * BLOCK + 12345] {
            let expected = data(len);
            let mut source = Uneven {
                data: expected.clone(),
                at: 0,
                fail_at_end: false,
            };
            let got = read_ahead(&mut source, |pipe| {
                let mut out = Vec::new();
                pipe.read_to_end(&mut out).map(|_| out)
            })
            .unwrap();
            assert_eq!(got.len(), expected.len(), "length {len}");
            assert!(got == expected, "content differs at length {len}");
        }
    }

    #[test]
    fn a_failure_reaches_the_consumer_after_the_data_before_it() {
        let expected = data(2 * BLOCK + 100);
        let mut source = Uneven {
            data: expected.clone(),
            at: 0,
            fail_at_end: true,
        };
        let (got, error) = read_ahead(&mut source, |pipe| {
            let mut out = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                match pipe.read(&mut buf) {
                    Ok(0) => return (out, None),
                    Ok(n) => out.extend_from_slice(&buf[..n]),
                    Err(e) => return (out, Some(e)),
                }
            }
        });
        assert!(got == expected);
        let error = error.expect("the source's failure is passed on");
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        assert!(error.to_string().contains("corrupt deflate stream"));
    }

    #[test]
    fn a_consumer_that_stops_early_leaves_the_rest_to_the_caller() {
        let expected = data(40 * BLOCK);
        let mut source = Uneven {
            data: expected.clone(),
            at: 0,
            fail_at_end: false,
        };
        let mut first = [0u8; 1000];
        read_ahead(&mut source, |pipe| pipe.read_exact(&mut first)).unwrap();
        assert_eq!(first[..], expected[..1000]);
        // The reading thread ran at most a few blocks ahead, then stopped;
        // the caller reads the rest from where it stopped.
        let taken = source.at;
        assert!(taken < expected.len(), "the thread stopped before the end");
        let mut rest = Vec::new();
        source.read_to_end(&mut rest).unwrap();
        assert!(rest[..] == expected[taken..]);
    }
}
