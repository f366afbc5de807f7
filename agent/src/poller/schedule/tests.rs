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
            let next = cadence(phase).next_poll(&s, outcome, secs(started), secs(now), &mut rng);
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
