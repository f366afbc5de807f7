//! How long and how often a request to the Commands service is sent again:
//! throttling, network errors, server faults and refused credentials are
//! transient; any other refusal is final. Each retry is logged, with the
//! shared jittered backoff between attempts.

use std::future::Future;
use std::time::{Duration, Instant};

use crate::protocol::{CommandsError, ErrorClass};
use crate::shutdown::Shutdown;

use super::backoff::retry_backoff;

/// How long a Complete is retried before the agent gives up on it (the
/// service has long timed the command out by then).
pub(super) const COMPLETE_PATIENCE: Duration = Duration::from_secs(3600);
/// How long a spec fetch or an acknowledgement is retried before the command
/// is reported Failed.
pub(super) const REQUEST_PATIENCE: Duration = Duration::from_secs(300);
/// Once the agent is stopping, a request is tried at most this many times.
const ATTEMPTS_WHILE_STOPPING: u32 = 5;

/// Sends a request until the service answers it: transient failures (once
/// the client's throttle gate opens) are tried again with jittered backoff
/// for up to `patience`, each retry logged. Any other refusal is final. Once
/// the agent is stopping, a request gets [`ATTEMPTS_WHILE_STOPPING`]
/// attempts at most.
pub(super) async fn persist<T, F, Fut>(
    what: &str,
    patience: Duration,
    shutdown: &Shutdown,
    mut send: F,
) -> Result<T, CommandsError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, CommandsError>>,
{
    let started = Instant::now();
    let mut rng = fastrand::Rng::new();
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let error = match send().await {
            Ok(answer) => return Ok(answer),
            Err(error) => error,
        };
        let final_answer = !is_transient(&error);
        let out_of_time = started.elapsed() >= patience
            || (shutdown.is_triggered() && attempt >= ATTEMPTS_WHILE_STOPPING);
        if final_answer || out_of_time {
            if out_of_time && !final_answer {
                tracing::error!(
                    "{what}: still failing after {attempt} attempts in {} s",
                    started.elapsed().as_secs()
                );
            }
            return Err(error);
        }
        let wait = retry_backoff(attempt, &mut rng);
        tracing::warn!(
            "{what} failed (attempt {attempt}), trying again in {:.1} s: {error}",
            wait.as_secs_f64()
        );
        tokio::time::sleep(wait).await;
    }
}

/// Whether a failed request may succeed if sent again unchanged.
fn is_transient(error: &CommandsError) -> bool {
    match error.class() {
        ErrorClass::Throttling | ErrorClass::Connection | ErrorClass::Credentials => true,
        // An answer garbled on the way (a proxy cutting the body, a broken
        // load balancer) says nothing about whether the request took effect;
        // the service takes the same acknowledgement or Complete again.
        ErrorClass::Other => match error {
            CommandsError::Service { status, .. } => *status >= 500,
            CommandsError::Decode { .. } => true,
            _ => false,
        },
    }
}
