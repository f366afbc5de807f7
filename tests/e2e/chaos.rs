//! A short soak of random kills (the long one is `scripts/bench --chaos
//! 300`, recorded in RELIABILITY.md): the agent SIGKILLed at a random moment
//! of each deployment, restarted, and every invariant of
//! `codedeploy_e2e::chaos` checked after each restart.

use codedeploy_e2e::chaos::soak;
use codedeploy_e2e::TestBed;

use crate::support::*;

#[test]
fn twenty_random_kills_break_no_invariant() {
    let bed = TestBed::start("chaos");
    // CHAOS_SEED repeats a run's kill times (the seed is in every failure).
    let seed = std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    let report = soak(&bed, &agent_binary(), 20, 400, seed, |line| {
        eprintln!("{line}")
    });
    ensure_eq!(bed, report.kills, 20, "twenty kills (seed {seed})");
    ensure!(
        bed,
        report.violations.is_empty(),
        "seed {seed}: {} invariants broken:\n{}\nkills by phase:\n{}",
        report.violations.len(),
        report.violations.join("\n"),
        report.table()
    );
    let ((fds_first, fds_last), (rss_first, rss_last)) = (report.fds, report.rss_kib);
    ensure!(
        bed,
        fds_last <= fds_first + 2,
        "seed {seed}: open descriptors grew from {fds_first} to {fds_last} across restarts"
    );
    ensure!(
        bed,
        rss_last <= rss_first + 2048,
        "seed {seed}: RSS grew from {rss_first} to {rss_last} KiB across restarts"
    );
}
