//! Watching a running hook script: its output logged line by line as it
//! comes, its exit, its deadline and the agent's shutdown, until one of them
//! ends the watch. Only reads and waits; stopping the script is
//! `terminate.rs`'s business.

use std::process::ExitStatus;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Child;
use tokio::time::Instant;

use super::outcome::{Outcome, Stream};
use crate::hooks::script_log::{clean_output, ScriptLog};
use crate::shutdown::Shutdown;

/// Output lines longer than this are split, so that a script printing without
/// newlines cannot make the agent's memory grow.
pub(super) const MAX_LINE_BYTES: usize = 16 * 1024;

/// How the watch ended.
pub(super) struct Watched {
    pub outcome: Outcome,
    /// Whether the script's leader exited (and was reaped) during the watch;
    /// if not, it is still running and must be terminated.
    pub reaped: bool,
}

/// Logs the child's output until it exits with both pipes at their end, its
/// `deadline` passes or the agent shuts down.
pub(super) async fn watch(
    child: &mut Child,
    log: &mut ScriptLog,
    shutdown: &mut Shutdown,
    deadline: Instant,
) -> Watched {
    let mut stdout = OutputLines::new(child.stdout.take());
    let mut stderr = OutputLines::new(child.stderr.take());
    let mut status: Option<ExitStatus> = None;
    let outcome = loop {
        if let Some(status) = status {
            if stdout.done() && stderr.done() {
                break Outcome::Exited(status.into());
            }
        }
        tokio::select! {
            line = stdout.next_line(), if !stdout.done() => {
                if let Some(line) = line {
                    #[cfg(feature = "test-panic")]
                    panic_if_asked(&line);
                    log.line(&format!("[stdout]{}", clean_output(&line)));
                }
            }
            line = stderr.next_line(), if !stderr.done() => {
                if let Some(line) = line {
                    log.line(&format!("[stderr]{}", clean_output(&line)));
                }
            }
            exited = child.wait(), if status.is_none() => match exited {
                Ok(exited) => status = Some(exited),
                Err(e) => break Outcome::WaitFailed(e),
            },
            _ = tokio::time::sleep_until(deadline) => {
                break match status {
                    None => Outcome::TimedOut,
                    Some(_) if !stdout.done() => Outcome::LeftOpen(Stream::Stdout),
                    Some(_) => Outcome::LeftOpen(Stream::Stderr),
                };
            }
            _ = shutdown.triggered() => break Outcome::Stopped,
        }
    };
    Watched {
        outcome,
        reaped: status.is_some(),
    }
}

/// Test builds only: a hook printing this line makes the agent panic while
/// the hook runs, so that the tests can show the panic contained.
#[cfg(feature = "test-panic")]
fn panic_if_asked(line: &[u8]) {
    if line == b"codedeploy-agent-test: panic" {
        panic!("deliberate panic for a test: a hook asked for one");
    }
}

/// Lines from one output pipe. `next_line` is cancel-safe (it only changes
/// state after a read completes), so it can sit in a `select!` loop.
struct OutputLines<R> {
    reader: Option<R>,
    pending: Vec<u8>,
}

impl<R: AsyncRead + Unpin> OutputLines<R> {
    fn new(reader: Option<R>) -> OutputLines<R> {
        OutputLines {
            reader,
            pending: Vec::new(),
        }
    }

    /// The pipe reached its end (or failed) and every line was handed out.
    fn done(&self) -> bool {
        self.reader.is_none() && self.pending.is_empty()
    }

    async fn next_line(&mut self) -> Option<Vec<u8>> {
        loop {
            if let Some(line) = self.take_line() {
                return Some(line);
            }
            let Some(reader) = &mut self.reader else {
                return (!self.pending.is_empty()).then(|| std::mem::take(&mut self.pending));
            };
            let mut chunk = [0u8; 8192];
            match reader.read(&mut chunk).await {
                Ok(0) => self.reader = None,
                Ok(n) => self.pending.extend_from_slice(&chunk[..n]),
                Err(error) => {
                    tracing::warn!(%error, "cannot read hook output");
                    self.reader = None;
                }
            }
        }
    }

    fn take_line(&mut self) -> Option<Vec<u8>> {
        if let Some(end) = self.pending.iter().position(|b| *b == b'\n') {
            let mut line: Vec<u8> = self.pending.drain(..=end).collect();
            line.pop();
            return Some(line);
        }
        (self.pending.len() >= MAX_LINE_BYTES)
            .then(|| self.pending.drain(..MAX_LINE_BYTES).collect())
    }
}
