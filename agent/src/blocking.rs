//! Blocking work off the agent's one runtime thread. Walking, copying and
//! removing file trees can take seconds; on the current-thread runtime that
//! would stall polling, acknowledgements and every other command, so such
//! steps run on tokio's blocking pool and are awaited here.

/// A blocking step that did not finish: it panicked or the runtime is
/// shutting down.
#[derive(Debug, thiserror::Error)]
#[error("the {what} task failed: {source}")]
pub struct TaskFailed {
    what: &'static str,
    #[source]
    source: tokio::task::JoinError,
}

/// Runs `step` on the blocking pool; `what` names it in the error.
pub async fn off_runtime<T, F>(what: &'static str, step: F) -> Result<T, TaskFailed>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(step)
        .await
        .map_err(|source| TaskFailed { what, source })
}
