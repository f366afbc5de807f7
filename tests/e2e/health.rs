//! `codedeploy-agent health`: the real binary against a real HTTP service on
//! loopback that turns healthy after some requests, that stays unhealthy, and
//! that hangs; TCP and command probes; exit codes and time bounds.

use std::net::TcpListener;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use codedeploy_e2e::http_target::{Behavior, HttpTarget};

use crate::support::agent_binary;

/// Runs `codedeploy-agent health ARGS`; the output and how long it took.
fn health(args: &[&str]) -> (Output, Duration) {
    let started = Instant::now();
    let output = Command::new(agent_binary())
        .arg("health")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("the agent binary runs");
    (output, started.elapsed())
}

fn describe(output: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout ---\n{}--- stderr ---\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn attempt_lines(output: &Output) -> Vec<String> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|l| l.starts_with("attempt "))
        .map(str::to_string)
        .collect()
}

#[test]
fn a_service_that_turns_healthy_is_reported_healthy_after_enough_successes() {
    let target = HttpTarget::start(Behavior::HealthyAfter(3));
    let url = target.url("/health");
    let (output, elapsed) = health(&[
        "--http",
        &url,
        "--expect-status",
        "200",
        "--expect-body",
        "status: o[k]",
        "--timeout",
        "2s",
        "--interval",
        "100ms",
        "--retries",
        "10",
        "--successes",
        "2",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let attempts = attempt_lines(&output);
    assert_eq!(
        attempts.len(),
        5,
        "3 unhealthy, then 2 healthy in a row\n{}",
        describe(&output)
    );
    assert!(
        attempts[0].starts_with("attempt 1/10: HTTP 503, expected 200 in "),
        "{}",
        attempts[0]
    );
    assert!(
        attempts[0].ends_with(": failed (0/2 in a row)"),
        "{}",
        attempts[0]
    );
    assert!(
        attempts[3].contains("HTTP 200, body matches /status: o[k]/"),
        "{}",
        attempts[3]
    );
    assert!(
        attempts[4].ends_with(": ok (2/2 in a row)"),
        "{}",
        attempts[4]
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.lines().last().is_some_and(
            |l| l.starts_with("healthy: 2 successful attempts in a row after 5 attempts")
        ),
        "{}",
        describe(&output)
    );
    assert_eq!(target.requests(), 5);
    // Four pauses of 100ms, and quick answers.
    assert!(elapsed >= Duration::from_millis(400), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
}

#[test]
fn a_service_that_stays_unhealthy_exits_1_after_the_attempts() {
    let target = HttpTarget::start(Behavior::Unhealthy);
    let (output, elapsed) = health(&[
        "--http",
        &target.url("/"),
        "--timeout",
        "1s",
        "--interval",
        "100ms",
        "--retries",
        "4",
    ]);
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    assert_eq!(attempt_lines(&output).len(), 4, "{}", describe(&output));
    assert!(String::from_utf8_lossy(&output.stdout)
        .contains("unhealthy: no 1 successful attempts in a row within 4 attempts"));
    assert_eq!(target.requests(), 4);
    assert!(elapsed < Duration::from_secs(4), "{elapsed:?}");

    // A body that never matches is unhealthy too, even with status 200.
    let target = HttpTarget::start(Behavior::HealthyAfter(0));
    let (output, _) = health(&[
        "--http",
        &target.url("/"),
        "--expect-body",
        "^ready$",
        "--interval",
        "0s",
        "--retries",
        "2",
    ]);
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    assert!(attempt_lines(&output)[0].contains("HTTP 200, body does not match /^ready$/"));
}

#[test]
fn a_hanging_service_is_bounded_by_the_attempt_timeout() {
    let target = HttpTarget::start(Behavior::Hang);
    let (output, elapsed) = health(&[
        "--http",
        &target.url("/health"),
        "--timeout",
        "500ms",
        "--interval",
        "100ms",
        "--retries",
        "3",
    ]);
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let attempts = attempt_lines(&output);
    assert_eq!(attempts.len(), 3, "{}", describe(&output));
    assert!(
        attempts.iter().all(|a| a.contains("timed out")),
        "{}",
        describe(&output)
    );
    // 3 × 500ms + 2 × 100ms, with slack for start-up, and far from hanging.
    assert!(elapsed >= Duration::from_millis(1700), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(6), "{elapsed:?}");
}

#[test]
fn successes_must_come_in_a_row_and_hopeless_checks_stop_early() {
    // 2 in a row are needed and only 3 attempts allowed: after a failure on
    // the second attempt, 1 attempt left cannot make it.
    let target = HttpTarget::start(Behavior::Unhealthy);
    let (output, _) = health(&[
        "--http",
        &target.url("/"),
        "--interval",
        "0s",
        "--retries",
        "3",
        "--successes",
        "2",
    ]);
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    assert_eq!(attempt_lines(&output).len(), 2, "{}", describe(&output));
}

#[test]
fn tcp_and_command_probes() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = format!("127.0.0.1:{}", listener.local_addr().unwrap().port());
    let (output, _) = health(&["--tcp", &address, "--retries", "1"]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert!(attempt_lines(&output)[0].contains(&format!("connected to {address}")));
    drop(listener);
    let (output, _) = health(&["--tcp", &address, "--retries", "2", "--interval", "0s"]);
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    assert!(
        attempt_lines(&output)[0].contains("cannot connect"),
        "{}",
        describe(&output)
    );

    let dir = tempfile::tempdir().unwrap();
    let flag = dir.path().join("ready");
    // The command succeeds from its third run on.
    let command = format!(
        "n=$(cat '{0}' 2>/dev/null || echo 0); n=$((n+1)); echo $n > '{0}'; [ $n -ge 3 ]",
        flag.display()
    );
    let (output, _) = health(&["--exec", &command, "--interval", "50ms", "--retries", "5"]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let attempts = attempt_lines(&output);
    assert_eq!(attempts.len(), 3, "{}", describe(&output));
    assert!(attempts[0].contains("exit status 1"), "{}", attempts[0]);

    // A command that outlives the attempt is killed with what it started.
    let (output, elapsed) = health(&["--exec", "sleep 30", "--timeout", "300ms", "--retries", "1"]);
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    assert!(
        attempt_lines(&output)[0].contains("timed out after 300ms"),
        "{}",
        describe(&output)
    );
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
}

#[test]
fn usage_errors_exit_2() {
    let cases: &[(&[&str], &str)] = &[
        (&[], "--http"),
        (
            &["--http", "http://127.0.0.1:1/", "--tcp", "127.0.0.1:1"],
            "cannot be used with",
        ),
        (
            &["--http", "127.0.0.1:1"],
            "must start with http:// or https://",
        ),
        (
            &["--http", "http://127.0.0.1:1/", "--timeout", "5 parsecs"],
            "--timeout",
        ),
        (
            &["--http", "http://127.0.0.1:1/", "--expect-status", "fine"],
            "--expect-status",
        ),
        (
            &["--http", "http://127.0.0.1:1/", "--expect-body", "("],
            "--expect-body",
        ),
        (&["--tcp", "127.0.0.1", "--retries", "1"], "HOST:PORT"),
        (
            &["--exec", "true", "--expect-status", "200"],
            "apply to --http only",
        ),
        (
            &["--exec", "true", "--retries", "1", "--successes", "2"],
            "fewer attempts",
        ),
    ];
    for (args, expected) in cases {
        let (output, _) = health(args);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}\n{}",
            describe(&output)
        );
        assert!(
            String::from_utf8_lossy(&output.stderr).contains(expected),
            "{args:?}: expected {expected:?}\n{}",
            describe(&output)
        );
    }
}
