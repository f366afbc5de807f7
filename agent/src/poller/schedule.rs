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
//!   window: [`retry_backoff`].

use std::time::Duration;

use fastrand::Rng;

use crate::config::MAX_POLL_JITTER_PERCENT;

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

fn nanos(n: u128) -> Duration {
    Duration::from_nanos(u64::try_from(n).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    fn schedule(interval: u64, jitter: u32, startup: u64) -> Schedule {
        Schedule {
            wait_between_runs: secs(interval as f64),
            wait_after_throttle_error: 60 * S,
            poll_jitter_percent: jitter,
            startup_delay_max: secs(startup as f64),
        }
    }

    /// A cadence with a known phase (what `Cadence::new` would have drawn).
    fn cadence(phase: f64) -> Cadence {
        Cadence {
            phase: secs(phase),
            consecutive_errors: 0,
            consecutive_throttles: 0,
        }
    }

    #[test]
    fn backoff_cap_follows_the_official_table() {
        let expected = [10, 13, 17, 21, 27, 34, 44, 56, 71, 90, 90, 90];
        for (i, cap) in expected.iter().enumerate() {
            assert_eq!(error_backoff_cap(i as u32 + 1), *cap * S, "n = {}", i + 1);
        }
        assert_eq!(error_backoff_cap(0), 10 * S, "n = 0 counts as the first");
    }

    #[test]
    fn start_up_delay_is_uniform_below_its_maximum() {
        let mut rng = Rng::with_seed(7);
        for (startup, interval) in [(30, 30), (0, 30), (5, 1)] {
            let s = schedule(interval, 0, startup);
            let draws: Vec<Duration> = (0..2000)
                .map(|_| Cadence::new(&s, &mut rng).first_poll())
                .collect();
            let max = secs(startup as f64);
            if startup == 0 {
                assert!(draws.iter().all(|d| d.is_zero()), "no delay when it is 0");
                continue;
            }
            assert!(draws.iter().all(|d| *d < max), "below {max:?}");
            // Each quarter of the range gets about a quarter of the draws.
            for quarter in 0..4 {
                let (low, high) = (max * quarter / 4, max * (quarter + 1) / 4);
                let n = draws.iter().filter(|d| **d >= low && **d < high).count();
                assert!((400..600).contains(&n), "{n} draws in [{low:?}, {high:?})");
            }
        }
    }

    #[test]
    fn idle_polls_stay_on_the_agent_grid() {
        // (interval, phase, poll started, answer arrived) -> next poll
        let cases = [
            // On its slot, answered at once: the next slot.
            (30, 7.0, 7.0, 7.1, 37.0),
            (30, 7.0, 37.0, 37.5, 67.0),
            // A poll held by the service past the next slot: the one after.
            (30, 7.0, 7.0, 40.0, 67.0),
            // Off-grid (after a command), the next slot at least half an
            // interval later.
            (30, 7.0, 20.0, 20.2, 37.0),
            (30, 7.0, 30.0, 30.2, 67.0),
            // A phase longer than the interval keeps its offset.
            (10, 25.0, 25.0, 25.3, 35.0),
            // The test harness's 1 s interval with a 0.5 s held poll.
            (1, 0.0, 3.0, 3.5, 4.0),
            // No interval at all: poll again when the answer is in.
            (0, 0.0, 3.0, 3.5, 3.5),
        ];
        let mut rng = Rng::with_seed(1);
        for (interval, phase, started, now, expected) in cases {
            let s = schedule(interval, 0, interval);
            for outcome in [PollOutcome::Idle, PollOutcome::Redelivered] {
                let next =
                    cadence(phase).next_poll(&s, outcome, secs(started), secs(now), &mut rng);
                assert_eq!(
                    next,
                    secs(expected),
                    "{outcome:?} interval {interval} phase {phase} started {started} now {now}"
                );
            }
        }
    }

    #[test]
    fn per_poll_jitter_lands_after_the_slot_and_never_accumulates() {
        let s = schedule(30, 10, 30);
        let mut rng = Rng::with_seed(3);
        let mut c = cadence(5.0);
        let mut at = c.first_poll();
        for k in 1..=1000u32 {
            at = c.next_poll(&s, PollOutcome::Idle, at, at + secs(0.2), &mut rng);
            let slot = secs(5.0) + 30 * S * k;
            assert!(
                at >= slot && at < slot + 3 * S,
                "poll {k} at {at:?}, slot {slot:?}"
            );
        }
    }

    #[test]
    fn a_new_command_is_followed_by_a_poll_at_once() {
        let s = schedule(30, 0, 30);
        let mut rng = Rng::with_seed(1);
        let mut c = cadence(7.0);
        let next = c.next_poll(&s, PollOutcome::Command, secs(7.0), secs(7.3), &mut rng);
        assert_eq!(next, secs(7.3));
        // A finished command brings the planned poll forward, unless the agent
        // is backing off from errors.
        assert_eq!(c.after_command_finished(secs(37.0), secs(12.0)), secs(12.0));
        c.next_poll(&s, PollOutcome::Failed, secs(13.0), secs(13.1), &mut rng);
        assert_eq!(c.after_command_finished(secs(37.0), secs(14.0)), secs(37.0));
    }

    #[test]
    fn errors_back_off_with_full_jitter_below_the_official_cap_then_join_the_grid() {
        // 1 s interval: the grid does not hide the backoff.
        let s = schedule(1, 0, 1);
        let mut rng = Rng::with_seed(11);
        for n in 1..=12u32 {
            let cap = error_backoff_cap(n).as_secs_f64();
            let mut waits = Vec::new();
            for _ in 0..500 {
                let mut c = cadence(0.0);
                c.consecutive_errors = n - 1;
                let next = c.next_poll(&s, PollOutcome::Failed, secs(100.0), secs(100.2), &mut rng);
                assert_eq!(next.subsec_nanos(), 0, "on the 1 s grid: {next:?}");
                waits.push((next - secs(100.0)).as_secs_f64());
            }
            let (min, max) = waits
                .iter()
                .fold((f64::MAX, 0f64), |(lo, hi), w| (lo.min(*w), hi.max(*w)));
            let mean = waits.iter().sum::<f64>() / waits.len() as f64;
            assert!(min >= 1.0, "n={n}: never sooner than the next slot ({min})");
            assert!(max <= cap + 1.0, "n={n}: at most the cap {cap} ({max})");
            // Full jitter: spread over the whole range, centred on half the cap.
            assert!(
                min < 0.2 * cap + 1.0 && max > 0.8 * cap,
                "n={n}: {min}..{max}"
            );
            assert!((mean - cap / 2.0).abs() < 0.15 * cap, "n={n}: mean {mean}");
        }
        // At the default 30 s interval the first errors retry at the next slot.
        let s = schedule(30, 0, 30);
        let mut c = cadence(4.0);
        let next = c.next_poll(&s, PollOutcome::Failed, secs(4.0), secs(4.5), &mut rng);
        assert_eq!(next, secs(34.0));
        assert_eq!(c.consecutive_failures(), 1);
        c.next_poll(&s, PollOutcome::Idle, secs(34.0), secs(34.1), &mut rng);
        assert_eq!(
            c.consecutive_failures(),
            0,
            "an answered poll resets the count"
        );
    }

    #[test]
    fn throttling_waits_longer_and_doubles_its_spread() {
        let s = schedule(1, 0, 1);
        let mut rng = Rng::with_seed(5);
        // (throttles in a row, least wait, widest wait) after the poll at 100 s.
        let cases = [
            (1, 60.0, 120.0),
            (2, 60.0, 180.0),
            (3, 60.0, 300.0),
            (9, 60.0, 300.0),
        ];
        for (n, least, widest) in cases {
            let mut waits = Vec::new();
            for _ in 0..400 {
                let mut c = cadence(0.0);
                c.consecutive_throttles = n - 1;
                let next = c.next_poll(
                    &s,
                    PollOutcome::Throttled,
                    secs(100.0),
                    secs(100.0),
                    &mut rng,
                );
                waits.push((next - secs(100.0)).as_secs_f64());
            }
            let min = waits.iter().cloned().fold(f64::MAX, f64::min);
            let max = waits.iter().cloned().fold(0.0, f64::max);
            assert!(min >= least, "n={n}: {min} >= {least}");
            assert!(max <= widest + 1.0, "n={n}: {max} <= {widest}");
            assert!(
                max > least + 0.8 * (widest - least),
                "n={n}: spread reaches {max}"
            );
        }
    }

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
