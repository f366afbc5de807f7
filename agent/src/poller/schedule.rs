//! When to poll next (pure: no clock, no I/O; randomness comes from the RNG the
//! caller passes in, so tests seed it). Times are offsets from the agent's
//! start, as the caller's monotonic clock measures them.
//!
//! The design keeps a fleet restarted in the same second from polling in step,
//! and keeps it from falling back into step after an outage or a throttling
//! storm:
//!
//! - **A stable phase.** At start each agent draws a phase uniformly from
//!   `[0, startup_delay_max)` (default: one `wait_between_runs`). Its idle
//!   polls then sit on its own grid, `phase + k × wait_between_runs`. Anchoring
//!   matters: if every poll re-drew its position (an interval jittered around
//!   its previous poll), agents' phases would drift apart and together, every
//!   interval would be a fresh draw, and over ten minutes the busiest second
//!   is the maximum of ~600 draws; on a fixed grid it is the maximum of ~30.
//!   For 1,000 agents at 30 s that is the difference between a typical peak of
//!   ~1.55× the mean and ~1.37× (`fleet_sim.rs` measures it; with independent
//!   agents each second's count is binomial, so about one random fleet in 9
//!   still has one second above 1.5× (51 polls where 33.3 are expected): no
//!   schedule of independent agents avoids that).
//! - **Per-poll jitter, off by default.** `:poll_jitter_percent:` lets each
//!   poll land up to that share of the interval after its slot (at most 50 %).
//!   The jitter never accumulates (the next poll is placed from the grid, not
//!   from the last poll), but it still costs: a poll that moves re-draws which
//!   second it falls in. Measured for 1,000 agents at 30 s: the mean peak goes
//!   from 1.37× with none to 1.40× with 30 ms, 1.54× with 1.5 s (5 %). The
//!   start-up phase already spreads a fleet, so the default is 0.
//! - **Errors back off with full jitter.** After n consecutive errors the
//!   earliest retry is a uniform draw from zero to the official agent's
//!   backoff (10, 13, 17, … 90 s, capped at the tenth error), counted from the
//!   start of the failed attempt; the retry then waits for the next slot of
//!   the agent's own grid. A retry is never sooner than the next slot (the
//!   normal cadence), and a fleet that failed together comes back on its
//!   original, spread-out phases instead of as a herd.
//! - **Throttling backs off longer.** After n consecutive throttling answers
//!   the earliest retry is `wait_after_throttle_error` plus a uniform draw up
//!   to `wait_after_throttle_error × 2^(n-1)` (at most 4 minutes), then the
//!   next slot of the grid. The first throttle waits 60–120 s (the official
//!   agent's 60 s plus its 30 s interval, on average), later ones longer.
//! - **Commands are fetched at once.** After taking a new command the agent
//!   polls again at once (the service may have another deployment's command
//!   ready), and after a command finishes too (the next lifecycle event of
//!   that deployment is usually waiting); neither moves the grid.
//! - **Requests other than polls** (a Complete that must arrive, a spec fetch
//!   hit by a network error) retry with full jitter over a short, doubling
//!   window: [`retry_backoff`](super::backoff::retry_backoff).

use std::time::Duration;

use fastrand::Rng;

use crate::config::MAX_POLL_JITTER_PERCENT;

use super::backoff::uniform;

/// The cap on consecutive errors counted by the error backoff.
const MAX_COUNTED_ERRORS: u32 = 10;
/// The longest error backoff, reached at the tenth consecutive error.
const MAX_BACKOFF_SECS: f64 = 90.0;
const BACKOFF_BASE: f64 = 1.2675;
/// The widest random spread added to `wait_after_throttle_error`.
const MAX_THROTTLE_SPREAD: Duration = Duration::from_secs(240);

/// The configured cadence (from codedeployagent.yml; may change on SIGHUP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// The interval between idle polls.
    pub wait_between_runs: Duration,
    /// The least wait after a throttling answer.
    pub wait_after_throttle_error: Duration,
    /// How far after its slot a poll may land, in percent of the interval
    /// (0 to [`MAX_POLL_JITTER_PERCENT`]).
    pub poll_jitter_percent: u32,
    /// The first poll comes after a random delay below this.
    pub startup_delay_max: Duration,
}

impl Schedule {
    /// The official intervals, no per-poll jitter, and a start-up delay of up
    /// to one interval (our defaults).
    pub fn new(wait_between_runs: Duration, wait_after_throttle_error: Duration) -> Schedule {
        Schedule {
            wait_between_runs,
            wait_after_throttle_error,
            poll_jitter_percent: 0,
            startup_delay_max: wait_between_runs,
        }
    }

    fn jitter_window(&self) -> Duration {
        self.wait_between_runs * self.poll_jitter_percent.min(MAX_POLL_JITTER_PERCENT) / 100
    }
}

/// What the last poll came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PollOutcome {
    /// The service had nothing for this host.
    Idle,
    /// A new command was taken: the service may have another one ready.
    Command,
    /// The service handed out a command this agent is already running.
    Redelivered,
    /// The service throttled the agent.
    Throttled,
    /// Any other error (network, credentials, service fault).
    Failed,
}

/// One agent's position in time: its phase and how many errors in a row it
/// has seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cadence {
    phase: Duration,
    consecutive_errors: u32,
    consecutive_throttles: u32,
}

impl Cadence {
    /// Draws the agent's phase, which is also its start-up delay.
    pub fn new(schedule: &Schedule, rng: &mut Rng) -> Cadence {
        Cadence {
            phase: uniform(rng, schedule.startup_delay_max),
            consecutive_errors: 0,
            consecutive_throttles: 0,
        }
    }

    /// When the first poll goes out.
    pub fn first_poll(&self) -> Duration {
        self.phase
    }

    /// Errors (throttling included) since the last answered poll.
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_errors + self.consecutive_throttles
    }

    /// When the next poll goes out, after a poll that started at `started`
    /// and ended at `now` with `outcome`.
    pub fn next_poll(
        &mut self,
        schedule: &Schedule,
        outcome: PollOutcome,
        started: Duration,
        now: Duration,
        rng: &mut Rng,
    ) -> Duration {
        let now = now.max(started);
        // Whatever happened, the next slot is at least half an interval after
        // this poll went out, so that a poll landing late in its slot (jitter,
        // a held answer) is never followed by one right away.
        let not_before = started + schedule.wait_between_runs / 2;
        match outcome {
            PollOutcome::Command => {
                self.reset();
                now
            }
            PollOutcome::Idle | PollOutcome::Redelivered => {
                self.reset();
                self.on_grid(schedule, now.max(not_before), rng)
            }
            PollOutcome::Throttled => {
                self.consecutive_throttles = self.consecutive_throttles.saturating_add(1);
                let doubling = 1u32 << (self.consecutive_throttles - 1).min(16);
                let spread = schedule
                    .wait_after_throttle_error
                    .saturating_mul(doubling)
                    .min(MAX_THROTTLE_SPREAD);
                let earliest = now + schedule.wait_after_throttle_error + uniform(rng, spread);
                self.on_grid(schedule, earliest.max(not_before), rng)
            }
            PollOutcome::Failed => {
                self.consecutive_errors = self.consecutive_errors.saturating_add(1);
                let earliest = started + uniform(rng, error_backoff_cap(self.consecutive_errors));
                self.on_grid(schedule, earliest.max(now).max(not_before), rng)
            }
        }
    }

    /// When to poll after a command finished, given the poll planned for
    /// `planned`: at once, unless the agent is backing off from errors.
    pub fn after_command_finished(&self, planned: Duration, now: Duration) -> Duration {
        if self.consecutive_failures() == 0 {
            planned.min(now)
        } else {
            planned
        }
    }

    fn reset(&mut self) {
        self.consecutive_errors = 0;
        self.consecutive_throttles = 0;
    }

    /// The first slot of this agent's grid at or after `earliest`, plus this
    /// poll's jitter.
    fn on_grid(&self, schedule: &Schedule, earliest: Duration, rng: &mut Rng) -> Duration {
        let interval = schedule.wait_between_runs;
        if interval.is_zero() {
            return earliest;
        }
        let interval_ns = interval.as_nanos();
        // The phase may exceed the interval (a start-up delay longer than
        // it, or an interval shortened on SIGHUP): the grid keeps its offset.
        let offset = self.phase.as_nanos() % interval_ns;
        let at = earliest.as_nanos();
        let slot = if at <= offset {
            offset
        } else {
            offset + (at - offset).div_ceil(interval_ns) * interval_ns
        };
        nanos(slot) + uniform(rng, schedule.jitter_window())
    }
}

/// The official agent's backoff after `consecutive_errors` errors in a row:
/// `floor(1.2675^n × 90 / 1.2675^10)` seconds, n capped at 10 (10, 13, 17, …,
/// 90 s). Full jitter draws the actual wait below it.
pub fn error_backoff_cap(consecutive_errors: u32) -> Duration {
    let n = consecutive_errors.clamp(1, MAX_COUNTED_ERRORS) as i32;
    let secs = (BACKOFF_BASE.powi(n) * MAX_BACKOFF_SECS
        / BACKOFF_BASE.powi(MAX_COUNTED_ERRORS as i32))
    .floor() as u64;
    Duration::from_secs(secs)
}

fn nanos(n: u128) -> Duration {
    Duration::from_nanos(u64::try_from(n).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests;
