//! The textfile metrics (`:metrics_textfile:`): the series and values after
//! a successful and a failed deployment, checked by Prometheus' own
//! `promtool`; a reader never sees the file half-written; an idle agent never
//! touches it; its counters survive a restart.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use codedeploy_e2e::emulator::Operation;
use codedeploy_e2e::{BundleType, Deployment, Revision, TestBed};

use crate::support::*;

/// promtool, as `scripts/setup` provides it (or `$PROMTOOL`).
fn promtool() -> PathBuf {
    let path = std::env::var_os("PROMTOOL")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/promtool"));
    assert!(
        path.is_file(),
        "promtool is missing at {}: run scripts/setup",
        path.display()
    );
    path
}

/// The value of one series (`name{labels}` exactly as written) in `text`.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// A revision whose AfterInstall hook exits with `exit_code`.
fn revision(install: &Path, exit_code: u8) -> Revision {
    Revision::new()
        .file(
            "appspec.yml",
            appspec("site", install, &[hook("AfterInstall", "hooks/after.sh")]),
        )
        .file("site/index.html", "<p>metrics</p>\n")
        .script("hooks/after.sh", format!("#!/bin/sh\nexit {exit_code}\n"))
}

#[test]
fn metrics_after_a_good_and_a_bad_deployment_pass_promtool_and_survive_a_restart() {
    let bed = TestBed::start("metrics");
    let prom = bed.path().join("textfile/codedeploy_agent.prom");
    let config = bed
        .agent_config()
        .extra_line(&format!(":metrics_textfile: {}", prom.display()));

    // A reader in a loop: every read is a whole file.
    let reading = Arc::new(AtomicBool::new(true));
    let reader = {
        let (prom, reading) = (prom.clone(), Arc::clone(&reading));
        std::thread::spawn(move || {
            let (mut reads, mut torn) = (0u32, Vec::new());
            while reading.load(Ordering::Relaxed) {
                if let Ok(text) = std::fs::read_to_string(&prom) {
                    reads += 1;
                    let whole = text.starts_with("# HELP codedeploy_agent_info ")
                        && text.ends_with('\n')
                        && text.lines().last().is_some_and(|l| {
                            l.starts_with("codedeploy_agent_throttled_since_timestamp_seconds ")
                        });
                    if !whole {
                        torn.push(text);
                    }
                }
            }
            (reads, torn)
        })
    };

    let good_install = bed.path().join("srv/web");
    let location = bed.upload(
        "metrics",
        "web.tgz",
        &revision(&good_install, 0),
        BundleType::Tgz,
    );
    let good = Deployment::new("Shop", "Web-Fleet", location);
    bed.emulator.add_deployment(good.clone());
    bed.start_agent_with(&agent_binary(), &config);
    expect_success(&bed, &good);
    let bad_install = bed.path().join("srv/jobs");
    let location = bed.upload(
        "metrics",
        "jobs.tgz",
        &revision(&bad_install, 3),
        BundleType::Tgz,
    );
    let bad = Deployment::new("Shop", "Jobs-Fleet", location);
    bed.emulator.add_deployment(bad.clone());
    expect_failure_at(&bed, &bad, "AfterInstall");
    // The Complete is sent after the file is written.
    reading.store(false, Ordering::Relaxed);
    let (reads, torn) = reader.join().unwrap();
    ensure!(bed, reads > 0, "the reader saw the file");
    ensure!(
        bed,
        torn.is_empty(),
        "{} of {reads} reads saw a partial file, the first:\n{:?}",
        torn.len(),
        torn.first()
    );

    let text = read(&prom);
    let config_path = config.config_path();
    let expected = [
        (
            format!(
                "codedeploy_agent_info{{version=\"{}\",config_file=\"{}\"}}",
                env!("CARGO_PKG_VERSION"),
                config_path.display()
            ),
            1.0,
        ),
        (
            "codedeploy_agent_deployments_total{deployment_group=\"Web-Fleet\",result=\"succeeded\"}".into(),
            1.0,
        ),
        (
            "codedeploy_agent_deployments_total{deployment_group=\"Jobs-Fleet\",result=\"failed\"}".into(),
            1.0,
        ),
        (
            "codedeploy_agent_last_deployment_succeeded{deployment_group=\"Web-Fleet\"}".into(),
            1.0,
        ),
        (
            "codedeploy_agent_last_deployment_succeeded{deployment_group=\"Jobs-Fleet\"}".into(),
            0.0,
        ),
        ("codedeploy_agent_failed_commands_total{error_code=\"4\"}".into(), 1.0),
        ("codedeploy_agent_hook_scripts_killed_total{reason=\"timeout\"}".into(), 0.0),
        ("codedeploy_agent_poll_errors_total{kind=\"throttling\"}".into(), 0.0),
        ("codedeploy_agent_throttled_since_timestamp_seconds".into(), 0.0),
    ];
    for (series, wanted) in &expected {
        ensure_eq!(
            bed,
            value(&text, series),
            Some(*wanted),
            "{series} in\n{text}"
        );
    }
    for event in [
        "DownloadBundle",
        "Install",
        "AfterInstall",
        "ValidateService",
    ] {
        let series = format!(
            "codedeploy_agent_lifecycle_event_duration_seconds{{lifecycle_event=\"{event}\"}}"
        );
        ensure!(
            bed,
            value(&text, &series).is_some_and(|s| (0.0..60.0).contains(&s)),
            "{series} in\n{text}"
        );
    }
    ensure!(
        bed,
        !text.contains(&good.deployment_id) && !text.contains(&bad.deployment_id),
        "no deployment id is a label:\n{text}"
    );
    ensure_eq!(
        bed,
        std::fs::metadata(&prom).map(|m| m.mode() & 0o777).ok(),
        Some(0o644),
        "the file is world-readable for node_exporter"
    );
    let checked = std::process::Command::new(promtool())
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(&prom).unwrap())
        .output()
        .unwrap();
    ensure!(
        bed,
        checked.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );

    // A restart keeps the counters and starts the run figures afresh.
    let started_before = value(&text, "codedeploy_agent_start_time_seconds").unwrap();
    bed.stop_agent(Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(1100));
    bed.start_agent_with(&agent_binary(), &config);
    let deadline = Instant::now() + Duration::from_secs(20);
    let restarted = loop {
        let text = read(&prom);
        if value(&text, "codedeploy_agent_start_time_seconds") > Some(started_before) {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "the restarted agent rewrote the file\n{}",
            bed.report()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    for (series, wanted) in &expected[1..6] {
        ensure_eq!(
            bed,
            value(&restarted, series),
            Some(*wanted),
            "{series} after a restart"
        );
    }
}

#[test]
fn an_idle_agent_never_touches_the_metrics_file() {
    let bed = TestBed::start("metrics-idle");
    let prom = bed.path().join("textfile/codedeploy_agent.prom");
    let config = bed
        .agent_config()
        .extra_line(&format!(":metrics_textfile: {}", prom.display()));
    bed.start_agent_with(&agent_binary(), &config);
    let polled = bed.emulator.wait_until(Duration::from_secs(20), |e| {
        e.count(Operation::PollHostCommand) >= 1 || !bed.agent_running()
    });
    ensure!(bed, polled, "the agent polls");
    let stamp = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| (m.ino(), m.mtime(), m.mtime_nsec()))
            .ok()
    };
    let written = stamp(&prom);
    ensure!(bed, written.is_some(), "the file is written at start");
    let polls = bed.emulator.count(Operation::PollHostCommand);
    let idle = bed.emulator.wait_until(Duration::from_secs(20), |e| {
        e.count(Operation::PollHostCommand) >= polls + 4 || !bed.agent_running()
    });
    ensure!(bed, idle, "four more polls while idle");
    ensure_eq!(
        bed,
        stamp(&prom),
        written,
        "the file is not touched between deployments"
    );
}

#[test]
fn the_readmes_alert_rules_pass_promtool_and_name_only_metrics_the_agent_writes() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .expect("README.md is readable");
    let rules = readme
        .split("Three alert rules to start from:")
        .nth(1)
        .and_then(|rest| rest.split("```yaml\n").nth(1))
        .and_then(|block| block.split("```").next())
        .expect("README.md has the alert rules in a yaml block");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rules.yml");
    std::fs::write(&file, rules).unwrap();
    let checked = std::process::Command::new(promtool())
        .args(["check", "rules"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        checked.status.success(),
        "promtool check rules:\n{}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    let documented = |name: &str| readme.contains(&format!("| `{name}"));
    for name in rules
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|word| word.starts_with("codedeploy_agent_"))
    {
        assert!(documented(name), "{name} is in the README's metrics table");
    }
}
