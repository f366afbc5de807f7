//! When to poll next (pure): the pause between polls, and the backoff after
//! errors, with the official agent's numbers.

use std::time::Duration;

/// The cap on consecutive errors counted by the backoff.
const MAX_COUNTED_ERRORS: u32 = 10;
/// The longest error backoff, reached at the tenth consecutive error.
const MAX_BACKOFF_SECS: f64 = 90.0;
const BACKOFF_BASE: f64 = 1.2675;

/// What the last poll attempt came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PollOutcome {
    /// The service had nothing for this host.
    Idle,
    /// A command was handled; the service may have the next one ready.
    Handled,
    /// The service throttled the agent.
    Throttled,
    /// Any other error (network, credentials, service fault).
    Failed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    pub wait_between_runs: Duration,
    pub wait_after_throttle_error: Duration,
}

impl Schedule {
    /// The wait before the next poll. `consecutive_errors` counts this attempt
    /// when it failed; `attempt_took` is how long the failed attempt lasted.
    pub fn next_wait(
        &self,
        outcome: PollOutcome,
        consecutive_errors: u32,
        attempt_took: Duration,
    ) -> Duration {
        match outcome {
            // Like the official 2.x: after a command, ask again at once.
            PollOutcome::Handled => Duration::ZERO,
            PollOutcome::Idle => self.wait_between_runs,
            PollOutcome::Throttled => self.wait_after_throttle_error + self.wait_between_runs,
            PollOutcome::Failed => {
                error_backoff(consecutive_errors, attempt_took) + self.wait_between_runs
            }
        }
    }
}

/// `floor(1.2675^n × 90 / 1.2675^10)` seconds for n consecutive errors (capped at
/// 10), less the failed attempt's time rounded up to whole seconds.
pub fn error_backoff(consecutive_errors: u32, attempt_took: Duration) -> Duration {
    let n = consecutive_errors.clamp(1, MAX_COUNTED_ERRORS) as i32;
    let secs = (BACKOFF_BASE.powi(n) * MAX_BACKOFF_SECS
        / BACKOFF_BASE.powi(MAX_COUNTED_ERRORS as i32))
    .floor() as u64;
    let took = attempt_took.as_secs() + u64::from(attempt_took.subsec_nanos() > 0);
    Duration::from_secs(secs.saturating_sub(took))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_follows_the_official_table() {
        let expected = [10, 13, 17, 21, 27, 34, 44, 56, 71, 90, 90, 90];
        for (i, secs) in expected.iter().enumerate() {
            assert_eq!(
                error_backoff(i as u32 + 1, Duration::ZERO),
                Duration::from_secs(*secs),
                "n = {}",
                i + 1
            );
        }
    }

    #[test]
    fn backoff_subtracts_the_failed_attempt_rounded_up() {
        assert_eq!(
            error_backoff(1, Duration::from_millis(2100)),
            Duration::from_secs(7)
        );
        assert_eq!(error_backoff(1, Duration::from_secs(80)), Duration::ZERO);
    }

    #[test]
    fn waits_per_outcome() {
        let s = Schedule {
            wait_between_runs: Duration::from_secs(1),
            wait_after_throttle_error: Duration::from_secs(60),
        };
        assert_eq!(
            s.next_wait(PollOutcome::Idle, 0, Duration::ZERO),
            Duration::from_secs(1)
        );
        assert_eq!(
            s.next_wait(PollOutcome::Handled, 0, Duration::ZERO),
            Duration::ZERO
        );
        assert_eq!(
            s.next_wait(PollOutcome::Throttled, 1, Duration::ZERO),
            Duration::from_secs(61)
        );
        assert_eq!(
            s.next_wait(PollOutcome::Failed, 2, Duration::ZERO),
            Duration::from_secs(14)
        );
    }
}
