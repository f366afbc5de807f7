//! The one shutdown signal of the process: triggered by SIGTERM/SIGINT, handed to
//! the poller and the hook runner; every long wait selects on it.

use tokio::sync::watch;

/// The sending half, held by whoever decides that the agent stops.
#[derive(Debug)]
pub struct ShutdownTrigger(watch::Sender<bool>);

/// A cheap, cloneable view of the shutdown state.
#[derive(Debug, Clone)]
pub struct Shutdown(watch::Receiver<bool>);

/// A new, untriggered shutdown signal.
pub fn channel() -> (ShutdownTrigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (ShutdownTrigger(tx), Shutdown(rx))
}

/// A signal that is never triggered: for work nothing stops (tests, and
/// callers that have no shutdown of their own).
pub fn never() -> Shutdown {
    channel().1
}

impl ShutdownTrigger {
    pub fn trigger(&self) {
        // Receivers may all be gone already; then nobody is left to stop.
        let _ = self.0.send(true);
    }
}

impl Shutdown {
    pub fn is_triggered(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once shutdown has been triggered (at once if it already was).
    pub async fn triggered(&mut self) {
        // An error means the trigger was dropped: treat that as a shutdown too.
        let _ = self.0.wait_for(|stop| *stop).await;
    }
}
