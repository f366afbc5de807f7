//! End-to-end tests of the agent: the real `codedeploy-agent` binary, a real
//! S3 server (moto), real hook processes and real signatures, driven by the
//! Commands emulator. Each test asserts what the service was told and what
//! ended up on disk, and prints the emulator's calls and the agent's output
//! when an assertion fails.
//!
//! Built as an integration test of the agent package so that
//! `CARGO_BIN_EXE_codedeploy-agent` names the binary under test.

/// `assert!` whose failure message also carries the test bed's report
/// (emulator calls, deployments, agent output).
macro_rules! ensure {
    ($bed:expr, $cond:expr, $($arg:tt)+) => {
        assert!($cond, "{}\n{}", format!($($arg)+), $bed.report())
    };
}

/// `assert_eq!` with the test bed's report.
macro_rules! ensure_eq {
    ($bed:expr, $left:expr, $right:expr, $($arg:tt)+) => {
        assert_eq!($left, $right, "{}\n{}", format!($($arg)+), $bed.report())
    };
}

mod support;

mod bounds;
mod bundles;
mod chaos;
mod concurrency;
mod control;
mod daemon;
mod failures;
mod faults;
mod footprint;
mod github;
mod hardening;
mod health;
mod hooks_library;
mod identity;
mod in_place;
mod local;
mod metrics;
mod migration;
mod names;
mod parity;
mod polling;
mod proxy;
mod ranged;
mod restart;
mod systemd;
mod validate;
