//! Random waits (pure: the caller passes the RNG, so tests seed it): the
//! uniform draw every schedule uses, and the backoff between retries of a
//! request other than a poll (a Complete that must arrive, a spec fetch hit
//! by a network error): one second plus full jitter over a window doubling
//! from 1 s to 30 s.

use std::time::Duration;

use fastrand::Rng;

/// The first retry of a request comes within this, then the window doubles.
const RETRY_BASE: Duration = Duration::from_secs(1);
/// The widest window a request retry is drawn from.
const RETRY_CAP: Duration = Duration::from_secs(30);

/// The wait before retry number `attempt` (1 for the first retry) of a request
/// that failed: one second plus full jitter over a window doubling from 1 s to
/// 30 s. The second keeps a refused connection from spinning.
pub fn retry_backoff(attempt: u32, rng: &mut Rng) -> Duration {
    let doubling = 1u32 << attempt.saturating_sub(1).min(16);
    RETRY_BASE + uniform(rng, RETRY_BASE.saturating_mul(doubling).min(RETRY_CAP))
}

/// A uniform draw from `[0, max)` (zero when `max` is zero).
pub fn uniform(rng: &mut Rng, max: Duration) -> Duration {
    let max = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
    if max == 0 {
        Duration::ZERO
    } else {
        Duration::from_nanos(rng.u64(0..max))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_retries_wait_one_second_plus_a_doubling_window() {
        let mut rng = Rng::with_seed(9);
        for (attempt, widest) in [
            (1, 2.0),
            (2, 3.0),
            (3, 5.0),
            (5, 17.0),
            (6, 31.0),
            (40, 31.0),
        ] {
            let waits: Vec<f64> = (0..300)
                .map(|_| retry_backoff(attempt, &mut rng).as_secs_f64())
                .collect();
            let min = waits.iter().cloned().fold(f64::MAX, f64::min);
            let max = waits.iter().cloned().fold(0.0, f64::max);
            assert!(
                min >= 1.0 && max < widest,
                "attempt {attempt}: {min}..{max}"
            );
            assert!(
                max > 1.0 + 0.8 * (widest - 1.0),
                "attempt {attempt}: reaches {max}"
            );
        }
    }
}
