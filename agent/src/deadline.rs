//! Deadlines that cannot overflow. `Instant + Duration` panics when the sum
//! does not fit the clock, and some durations come from input (an appspec's
//! `timeout`, a configuration value): on the agent's one runtime thread that
//! panic would stop every deployment. Here a sum past what the clock holds
//! means "never".

use std::time::{Duration, SystemTime};

/// Far enough to mean never (about 30 years), near enough for any clock.
const NEVER: Duration = Duration::from_secs(30 * 365 * 86_400);

/// A point in time that a duration can be added to without panicking.
pub trait Moment: Copy {
    fn checked_add(self, wait: Duration) -> Option<Self>;
}

impl Moment for std::time::Instant {
    fn checked_add(self, wait: Duration) -> Option<Self> {
        std::time::Instant::checked_add(&self, wait)
    }
}

impl Moment for tokio::time::Instant {
    fn checked_add(self, wait: Duration) -> Option<Self> {
        tokio::time::Instant::checked_add(&self, wait)
    }
}

impl Moment for SystemTime {
    fn checked_add(self, wait: Duration) -> Option<Self> {
        SystemTime::checked_add(&self, wait)
    }
}

/// `start + wait`, or "never" (30 years on) when that does not fit. A clock
/// that cannot hold even that is left at `start` (no real clock is so close
/// to its end).
pub fn after<T: Moment>(start: T, wait: Duration) -> T {
    start
        .checked_add(wait)
        .or_else(|| start.checked_add(NEVER))
        .unwrap_or(start)
}

/// `after(now, wait)` on the runtime's clock.
pub fn from_now(wait: Duration) -> tokio::time::Instant {
    after(tokio::time::Instant::now(), wait)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_that_do_not_fit_mean_never_instead_of_panicking() {
        let start = std::time::Instant::now();
        let cases = [
            (Duration::from_secs(5), Duration::from_secs(5)),
            (Duration::ZERO, Duration::ZERO),
            (Duration::from_secs(u64::MAX), NEVER),
            (Duration::MAX, NEVER),
        ];
        for (wait, expected) in cases {
            assert_eq!(after(start, wait) - start, expected, "{wait:?}");
        }
        let now = SystemTime::now();
        assert_eq!(
            after(now, Duration::MAX).duration_since(now).ok(),
            Some(NEVER)
        );
    }
}
