//! The agent as a long-running service: a crash (SIGKILL) in the middle of a
//! hook and the restart that reports it, SIGTERM with a hook running (waited
//! for, then stopped; at once on a second SIGTERM), a second agent refused
//! by the pid lock, the agent log's lines (format, deployment id, no
//! secrets) and its rotation, and SIGHUP re-reading the configuration while
//! a command runs; a panic in one command (a test-only step) contained to it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use codedeploy_e2e::emulator::{CommandRecord, Diagnostics, Operation};
use codedeploy_e2e::testbed::{SESSION_SECRET_ACCESS_KEY, SESSION_TOKEN};
use codedeploy_e2e::{AgentProcess, BundleType, Deployment, HostRegistration, Revision, TestBed};

use crate::support::*;

const BUCKET: &str = "daemon-revisions";
const FAILED_AFTER_RESTART: &str =
    "Failed: Failing in-progress lifecycle event after an agent restart.";

/// A revision whose BeforeInstall hook runs `script` (a `/bin/sh` body).
fn revision_with_before_install(install: &Path, script: &str) -> Revision {
    Revision::new()
        .file(
            "appspec.yml",
            appspec(
                "site",
                install,
                &[hook("BeforeInstall", "scripts/before_install.sh")],
            ),
        )
        .file("site/index.html", "<p>daemon</p>\n")
        .script(
            "scripts/before_install.sh",
            format!("#!/bin/sh\n{script}\n"),
        )
}

/// A hook body that writes its pid to `pid_file`, then becomes `sleep`.
fn sleeping_hook(pid_file: &Path, seconds: u32) -> String {
    format!(
        "echo $$ > '{}.tmp' && mv '{0}.tmp' '{0}'\nexec sleep {seconds}",
        pid_file.display()
    )
}

fn deploy(bed: &TestBed, key: &str, revision: &Revision) -> Deployment {
    let location = bed.upload(BUCKET, key, revision, BundleType::Tgz);
    let deployment = Deployment::new("App", "App-Group", location);
    bed.emulator.add_deployment(deployment.clone());
    deployment
}

fn command(bed: &TestBed, deployment: &Deployment, name: &str) -> Option<CommandRecord> {
    bed.emulator
        .deployment(&deployment.deployment_id)
        .and_then(|d| d.command(name).cloned())
}

/// The calls of `operation` that arrived after `since`.
/// The diagnostics of `name`, which the service must have been told Failed.
fn reported_failure(bed: &TestBed, deployment: &Deployment, name: &str, what: &str) -> Diagnostics {
    let record = command(bed, deployment, name);
    ensure_eq!(
        bed,
        record
            .as_ref()
            .and_then(|c| c.completion().map(|c| c.status.clone())),
        Some("Failed".to_string()),
        "{what}"
    );
    record
        .and_then(|c| c.diagnostics().cloned())
        .unwrap_or_else(|| panic!("{name} was completed without diagnostics\n{}", bed.report()))
}

fn calls_after(bed: &TestBed, operation: Operation, since: std::time::SystemTime) -> usize {
    bed.emulator
        .calls_of(operation)
        .iter()
        .filter(|c| c.at > since)
        .count()
}

fn ongoing_files(bed: &TestBed) -> Vec<String> {
    std::fs::read_dir(bed.root_dir().join("ongoing-deployment"))
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Found by the random-kill soak: an agent killed after its Complete was
/// delivered but before it removed the tracking file reported the command a
/// second time (Failed, code 7) after its restart. The restarted agent now
/// asks the service (the acknowledgement's answer) before reporting.
#[test]
fn a_command_already_reported_before_the_agent_died_is_not_reported_again() {
    let bed = TestBed::start("reported-then-killed");
    let install = bed.path().join("srv/app");
    let revision = Revision::new()
        .file("appspec.yml", appspec("site", &install, &[]))
        .file("site/index.html", "<p>once</p>\n");
    let location = bed.upload("reported", "app.tgz", &revision, BundleType::Tgz);
    let deployment = Deployment::new("App", "App-Group", location);
    bed.emulator.add_deployment(deployment.clone());
    bed.start_agent(&agent_binary());
    expect_success(&bed, &deployment);
    bed.kill_agent();
    let _ = bed.wait_for_agent_exit(Duration::from_secs(10));
    // What the agent leaves when it dies between the Complete and the
    // removal of its tracking file.
    let record = bed.emulator.deployment(&deployment.deployment_id).unwrap();
    let last = record.command("ValidateService").unwrap().clone();
    let tracking = bed.root_dir().join("ongoing-deployment");
    std::fs::create_dir_all(&tracking).unwrap();
    std::fs::write(
        tracking.join(&deployment.deployment_id),
        &last.host_command_identifier,
    )
    .unwrap();

    bed.start_agent(&agent_binary());
    let asked = bed.emulator.wait_until(Duration::from_secs(20), |e| {
        e.deployment(&deployment.deployment_id).and_then(|d| {
            d.command("ValidateService")
                .map(|c| c.acknowledgements.len())
        }) > Some(last.acknowledgements.len())
            && e.count(Operation::PollHostCommand) > 1
    });
    ensure!(
        bed,
        asked,
        "the restarted agent asked the service about the command"
    );
    let after = bed.emulator.deployment(&deployment.deployment_id).unwrap();
    let completions = &after.command("ValidateService").unwrap().completions;
    ensure_eq!(
        bed,
        completions
            .iter()
            .map(|c| c.status.as_str())
            .collect::<Vec<_>>(),
        vec!["Succeeded"],
        "ValidateService is reported once, as it ended"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !bed.agent_output().contains("not reporting it again") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    ensure!(
        bed,
        bed.agent_output().contains("not reporting it again"),
        "the agent says why it did not report the command"
    );
    ensure!(
        bed,
        std::fs::read_dir(&tracking).unwrap().next().is_none(),
        "the tracking file is gone"
    );
}

#[test]
fn killed_agent_reports_the_interrupted_command_after_restart_and_deploys_again() {
    let bed = TestBed::start("kill-9");
    let install = bed.path().join("srv/app");
    let pid_file = bed.path().join("hook.pid");
    let first = deploy(
        &bed,
        "app/first.tgz",
        &revision_with_before_install(&install, &sleeping_hook(&pid_file, 300)),
    );
    bed.start_agent(&agent_binary());
    let hook_pid = read_pid(&pid_file, DEPLOYMENT_DEADLINE);
    ensure!(bed, hook_pid.is_some(), "the BeforeInstall hook started");
    let hook_pid = hook_pid.unwrap();

    bed.kill_agent();
    // The hook outlives a SIGKILLed agent (as on a real host); end it here.
    kill_pid(hook_pid);
    let before_install = command(&bed, &first, "BeforeInstall").expect("issued");
    ensure!(
        bed,
        before_install.completions.is_empty(),
        "the killed agent completed nothing"
    );
    ensure_eq!(
        bed,
        ongoing_files(&bed),
        vec![first.deployment_id.clone()],
        "the tracking file of the interrupted command is left behind"
    );

    let restarted = std::time::SystemTime::now();
    bed.start_agent(&agent_binary());
    let reported = bed.emulator.wait_until(Duration::from_secs(30), |_| {
        command(&bed, &first, "BeforeInstall").is_some_and(|c| !c.completions.is_empty())
    });
    ensure!(
        bed,
        reported,
        "the restarted agent reports the interrupted command"
    );
    let completion_at = command(&bed, &first, "BeforeInstall")
        .and_then(|c| c.completion().map(|c| c.at))
        .expect("reported above");
    let polls_before_report = bed
        .emulator
        .calls_of(Operation::PollHostCommand)
        .iter()
        .filter(|c| c.at > restarted && c.at < completion_at)
        .count();
    ensure!(
        bed,
        polls_before_report <= 1,
        "the report comes within one poll of the restart ({polls_before_report} polls before it)"
    );
    let diagnostics = reported_failure(&bed, &first, "BeforeInstall", "status");
    ensure_eq!(
        bed,
        (diagnostics.error_code, diagnostics.message.as_str()),
        (7, FAILED_AFTER_RESTART),
        "FailedAfterRestart"
    );
    ensure!(
        bed,
        ongoing_files(&bed).is_empty(),
        "the tracking file is gone"
    );

    let second = Deployment::next_in_group(
        &first,
        bed.upload(
            BUCKET,
            "app/second.tgz",
            &revision_with_before_install(&install, "echo second"),
            BundleType::Tgz,
        ),
    );
    bed.emulator.add_deployment(second.clone());
    expect_success(&bed, &second);
    ensure_eq!(
        bed,
        read(&install.join("index.html")),
        "<p>daemon</p>\n",
        "the next deployment installs"
    );
}

#[test]
fn sigterm_waits_for_the_running_hook_then_stops_it_and_reports_it_failed() {
    let bed = TestBed::start("sigterm-abort");
    let install = bed.path().join("srv/app");
    let pid_file = bed.path().join("hook.pid");
    let deployment = deploy(
        &bed,
        "app/long.tgz",
        &revision_with_before_install(&install, &sleeping_hook(&pid_file, 120)),
    );
    let max_wait = Duration::from_secs(3);
    let config = bed.agent_config().extra_line(&format!(
        ":kill_agent_max_wait_time_seconds: {}",
        max_wait.as_secs()
    ));
    bed.start_agent_with(&agent_binary(), &config);
    let hook_pid = read_pid(&pid_file, DEPLOYMENT_DEADLINE);
    ensure!(bed, hook_pid.is_some(), "the BeforeInstall hook started");
    let hook_pid = hook_pid.unwrap();

    let signalled = std::time::SystemTime::now();
    let started = Instant::now();
    bed.signal_agent("TERM");
    let status = bed.wait_for_agent_exit(max_wait + Duration::from_secs(30));
    let took = started.elapsed();
    if pid_alive(hook_pid) {
        kill_pid(hook_pid);
        panic!("the hook outlived the agent's stop\n{}", bed.report());
    }
    ensure!(
        bed,
        status.is_some_and(|s| s.success()),
        "the agent exits cleanly after SIGTERM: {status:?}"
    );
    ensure!(
        bed,
        took >= max_wait && took < max_wait + Duration::from_secs(6),
        "the agent waits {max_wait:?} for the hook, then stops it and exits (took {took:?})"
    );
    let diagnostics = reported_failure(
        &bed,
        &deployment,
        "BeforeInstall",
        "the stopped command is reported",
    );
    ensure!(
        bed,
        diagnostics.message.contains("shutting down")
            && diagnostics.script_name == "scripts/before_install.sh",
        "the diagnostics say the script was stopped by the shutdown: {diagnostics:?}"
    );
    ensure_eq!(
        bed,
        calls_after(&bed, Operation::PollHostCommand, signalled),
        0,
        "no poll after SIGTERM"
    );
    ensure!(
        bed,
        ongoing_files(&bed).is_empty(),
        "a reported command leaves no tracking file"
    );
}

#[test]
fn a_second_sigterm_stops_the_running_hook_without_waiting() {
    let bed = TestBed::start("sigterm-twice");
    let install = bed.path().join("srv/app");
    let pid_file = bed.path().join("hook.pid");
    let deployment = deploy(
        &bed,
        "app/long.tgz",
        &revision_with_before_install(&install, &sleeping_hook(&pid_file, 120)),
    );
    let config = bed
        .agent_config()
        .extra_line(":kill_agent_max_wait_time_seconds: 600");
    bed.start_agent_with(&agent_binary(), &config);
    let hook_pid = read_pid(&pid_file, DEPLOYMENT_DEADLINE);
    ensure!(bed, hook_pid.is_some(), "the BeforeInstall hook started");
    let hook_pid = hook_pid.unwrap();

    bed.signal_agent("TERM");
    std::thread::sleep(Duration::from_secs(1));
    ensure!(
        bed,
        bed.agent_running(),
        "the first SIGTERM waits for the hook"
    );
    let started = Instant::now();
    bed.signal_agent("TERM");
    let status = bed.wait_for_agent_exit(Duration::from_secs(20));
    let took = started.elapsed();
    if pid_alive(hook_pid) {
        kill_pid(hook_pid);
        panic!("the hook outlived the agent's stop\n{}", bed.report());
    }
    ensure!(
        bed,
        status.is_some_and(|s| s.success()) && took < Duration::from_secs(6),
        "the second SIGTERM stops the hook and the agent at once ({took:?}, {status:?})"
    );
    reported_failure(
        &bed,
        &deployment,
        "BeforeInstall",
        "the stopped command is reported",
    );
}

#[test]
fn sigterm_lets_a_hook_that_ends_in_time_complete_before_the_agent_exits() {
    let bed = TestBed::start("sigterm-finish");
    let install = bed.path().join("srv/app");
    let marker = bed.path().join("hook-started");
    let deployment = deploy(
        &bed,
        "app/short.tgz",
        &revision_with_before_install(
            &install,
            &format!("touch '{}'\nsleep 2\necho finished", marker.display()),
        ),
    );
    let config = bed
        .agent_config()
        .extra_line(":kill_agent_max_wait_time_seconds: 20");
    bed.start_agent_with(&agent_binary(), &config);
    let running = bed.emulator.wait_until(DEPLOYMENT_DEADLINE, |_| {
        marker.exists() || !bed.agent_running()
    });
    ensure!(bed, running && bed.agent_running(), "the hook started");

    let signalled = std::time::SystemTime::now();
    bed.signal_agent("TERM");
    let status = bed.wait_for_agent_exit(Duration::from_secs(20));
    ensure!(
        bed,
        status.is_some_and(|s| s.success()),
        "the agent exits cleanly once the hook is done: {status:?}"
    );
    let before_install = command(&bed, &deployment, "BeforeInstall").expect("issued");
    ensure_eq!(
        bed,
        before_install.completion().map(|c| c.status.as_str()),
        Some("Succeeded"),
        "the hook that ended within the wait is reported Succeeded before exit"
    );
    ensure_eq!(
        bed,
        calls_after(&bed, Operation::PollHostCommand, signalled),
        0,
        "a stopping agent takes no new command"
    );
    ensure!(
        bed,
        command(&bed, &deployment, "Install").is_some_and(|c| c.times_issued == 0),
        "Install stays with the service for the next agent"
    );
}

#[test]
fn a_second_agent_on_the_same_pid_dir_refuses_to_start() {
    let bed = TestBed::start("second-agent");
    let config = bed.agent_config();
    bed.start_agent_with(&agent_binary(), &config);
    let polled = bed.emulator.wait_until(Duration::from_secs(30), |e| {
        e.count(Operation::PollHostCommand) >= 1 || !bed.agent_running()
    });
    ensure!(bed, polled && bed.agent_running(), "the first agent runs");
    let first_pid = bed.agent_pid().expect("running");

    let mut second_config = config.clone();
    second_config.dir = config.dir.join("second");
    let mut second = AgentProcess::spawn(Path::new(&agent_binary()), &second_config)
        .expect("the second agent can be started");
    let status = second.wait_for_exit(Duration::from_secs(20));
    let pid_file = config.pid_dir.join("codedeploy-agent.pid");
    let stderr = second.stderr();
    ensure!(
        bed,
        status.is_some_and(|s| !s.success()),
        "the second agent exits with a failure status: {status:?}\n{stderr}"
    );
    ensure!(
        bed,
        stderr.contains("another agent is already running")
            && stderr.contains(&pid_file.display().to_string())
            && stderr.contains(&format!("pid {first_pid}")),
        "the refusal names the pid file and the running agent's pid: {stderr}"
    );
    ensure!(bed, bed.agent_running(), "the first agent keeps running");
    ensure_eq!(
        bed,
        read(&pid_file).trim(),
        first_pid.to_string(),
        "the pid file still names the first agent"
    );
}

#[test]
fn agent_log_lines_carry_pid_component_and_deployment_id_and_never_secrets() {
    let bed = TestBed::start_as("agent-log", HostRegistration::IamSession);
    let install = bed.path().join("srv/app");
    let deployment = deploy(
        &bed,
        "app/logged.tgz",
        &revision_with_before_install(&install, "echo hook output"),
    );
    bed.start_agent(&agent_binary());
    expect_success(&bed, &deployment);
    let pid = bed.agent_pid().expect("running");
    bed.stop_agent(Duration::from_secs(20));

    let log_path = bed.agent_dir().join("log/codedeploy-agent.log");
    let log = read(&log_path);
    let lines: Vec<&str> = log.lines().collect();
    ensure!(bed, lines.len() > 10, "the agent log has lines");
    for line in &lines {
        ensure!(
            bed,
            log_line_component(line, "codedeploy-agent", pid).is_some(),
            "every line has timestamp, level, [codedeploy-agent({pid})] and component: {line:?}"
        );
    }
    let components: std::collections::BTreeSet<&str> = lines
        .iter()
        .filter_map(|l| log_line_component(l, "codedeploy-agent", pid))
        .collect();
    for component in ["daemon", "poller"] {
        ensure!(
            bed,
            components.contains(component),
            "component {component} appears: {components:?}"
        );
    }
    let record = bed.emulator.deployment(&deployment.deployment_id).unwrap();
    for name in record.issued() {
        let tagged = lines.iter().any(|l| {
            l.contains(&format!("deployment_id={}", deployment.deployment_id))
                && l.contains(&format!("lifecycle_event={name}"))
        });
        ensure!(
            bed,
            tagged,
            "grepping the log for the deployment id finds the {name} command's lines"
        );
    }
    let output = bed.agent_output();
    for secret in [SESSION_SECRET_ACCESS_KEY, SESSION_TOKEN] {
        ensure!(
            bed,
            !output.contains(secret),
            "no secret in the log, stdout or stderr"
        );
    }
}

/// Lines across `<log>` and its rotated files, oldest file first.
fn all_log_lines(log: &Path) -> (Vec<PathBuf>, Vec<String>) {
    let dir = log.parent().expect("a log file has a folder");
    let name = log
        .file_name()
        .expect("a log file has a name")
        .to_string_lossy()
        .into_owned();
    let mut files: Vec<(u32, PathBuf)> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| {
                    let file = e.file_name().to_string_lossy().into_owned();
                    let rest = file.strip_prefix(&name)?;
                    let order = match rest {
                        "" => 0,
                        ".rotated" => 1000,
                        numbered => numbered.strip_prefix('.')?.parse().ok()?,
                    };
                    Some((order, e.path()))
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort_by_key(|(order, _)| std::cmp::Reverse(*order));
    let lines = files
        .iter()
        .flat_map(|(_, path)| lines(path))
        .collect::<Vec<_>>();
    (files.into_iter().map(|(_, p)| p).collect(), lines)
}

/// Each idle poll ends in exactly one "next poll in" debug line.
fn poll_lines(lines: &[String]) -> usize {
    lines.iter().filter(|l| l.contains("next poll in")).count()
}

#[test]
fn agent_log_rotates_by_size_without_losing_or_splitting_lines() {
    let bed = TestBed::start("log-rotation");
    // About 1 KiB per file: a rotation every few polls.
    let config = bed.agent_config().extra_line(":log_max_size_mb: 0.001");
    bed.start_agent_with(&agent_binary(), &config);
    let log = config.log_dir.join("codedeploy-agent.log");
    let rotated_twice = bed.emulator.wait_until(Duration::from_secs(90), |_| {
        config.log_dir.join("codedeploy-agent.log.2").exists() || !bed.agent_running()
    });
    ensure!(bed, rotated_twice, "the log was rotated twice within 90 s");
    let pid = bed.agent_pid().expect("running");
    bed.stop_agent(Duration::from_secs(20));

    let (files, lines) = all_log_lines(&log);
    for file in &files {
        let size = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
        ensure!(
            bed,
            size <= 1048,
            "{} stays within the bound ({size} bytes)",
            file.display()
        );
    }
    ensure!(
        bed,
        !config.log_dir.join("codedeploy-agent.log.8").exists(),
        "at most 7 rotated files"
    );
    for line in &lines {
        ensure!(
            bed,
            log_line_component(line, "codedeploy-agent", pid).is_some(),
            "no line is split by a rotation: {line:?}"
        );
    }
    let polls = bed.emulator.count(Operation::PollHostCommand);
    let logged = poll_lines(&lines);
    ensure!(
        bed,
        logged + 1 >= polls && logged <= polls,
        "every poll's line survives the rotations ({logged} lines for {polls} polls)"
    );
}

#[test]
fn agent_log_moved_away_or_truncated_by_logrotate_is_followed() {
    let bed = TestBed::start("logrotate");
    let config = bed.agent_config().extra_line(":log_max_size_mb: 0");
    bed.start_agent_with(&agent_binary(), &config);
    let log = config.log_dir.join("codedeploy-agent.log");
    let polled = bed.emulator.wait_until(Duration::from_secs(30), |e| {
        e.count(Operation::PollHostCommand) >= 2 || !bed.agent_running()
    });
    ensure!(bed, polled, "the agent polls");

    // logrotate `create`: the file is renamed and the agent must reopen it.
    std::fs::rename(&log, config.log_dir.join("codedeploy-agent.log.rotated"))
        .expect("the log can be renamed");
    let reopened = bed.emulator.wait_until(Duration::from_secs(10), |_| {
        poll_lines(&lines(&log)) >= 2 || !bed.agent_running()
    });
    ensure!(
        bed,
        reopened,
        "the agent writes to a new file at the log's path"
    );

    // logrotate `copytruncate`: the agent goes on at the start of the file.
    std::fs::copy(&log, config.log_dir.join("codedeploy-agent.log.1"))
        .expect("the log can be copied");
    std::fs::File::options()
        .write(true)
        .open(&log)
        .and_then(|f| f.set_len(0))
        .expect("the log can be truncated");
    let written = bed.emulator.wait_until(Duration::from_secs(10), |_| {
        poll_lines(&lines(&log)) >= 2 || !bed.agent_running()
    });
    ensure!(bed, written, "the agent keeps writing after the truncation");
    let pid = bed.agent_pid().expect("running");
    bed.stop_agent(Duration::from_secs(20));

    let bytes = std::fs::read(&log).expect("the log exists");
    ensure!(
        bed,
        bytes.first() != Some(&0),
        "appending after a truncation leaves no hole of zero bytes"
    );
    for line in lines(&log) {
        ensure!(
            bed,
            log_line_component(&line, "codedeploy-agent", pid).is_some(),
            "lines after the truncation are whole: {line:?}"
        );
    }
}

#[test]
fn sighup_reloads_verbosity_and_poll_interval_without_dropping_the_running_command() {
    let bed = TestBed::start("sighup");
    let install = bed.path().join("srv/app");
    let marker = bed.path().join("hook-started");
    let deployment = deploy(
        &bed,
        "app/reload.tgz",
        &revision_with_before_install(
            &install,
            &format!("touch '{}'\nsleep 4\necho done", marker.display()),
        ),
    );
    let mut config = bed.agent_config();
    config.verbose = false;
    config.wait_between_runs = 1;
    bed.start_agent_with(&agent_binary(), &config);
    let running = bed.emulator.wait_until(DEPLOYMENT_DEADLINE, |_| {
        marker.exists() || !bed.agent_running()
    });
    ensure!(bed, running && bed.agent_running(), "the hook started");
    let pid = bed.agent_pid().expect("running");

    config.verbose = true;
    config.wait_between_runs = 3;
    config.write().expect("the configuration can be rewritten");
    bed.signal_agent("HUP");
    expect_success(&bed, &deployment);
    ensure_command_cycle(&bed, &deployment);

    let ended = bed
        .emulator
        .completes()
        .last()
        .map(|c| c.completion.at)
        .expect("completed");
    let idle_polls = |e: &codedeploy_e2e::Emulator| {
        e.calls_of(Operation::PollHostCommand)
            .into_iter()
            .filter(|c| c.at > ended)
            .collect::<Vec<_>>()
    };
    bed.emulator
        .wait_until(Duration::from_secs(30), |e| idle_polls(e).len() >= 4);
    let polls = idle_polls(&bed.emulator);
    ensure!(bed, polls.len() >= 4, "the agent goes on polling");
    // Each idle poll is held 0.5 s by the emulator, then the agent waits.
    for pair in polls.windows(2).skip(1) {
        let gap = pair[1].at.duration_since(pair[0].at).unwrap_or_default();
        ensure!(
            bed,
            gap >= Duration::from_millis(2900),
            "polls are now 3 s apart, not 1 s (gap {gap:?})"
        );
    }
    ensure_eq!(
        bed,
        bed.agent_pid(),
        Some(pid),
        "the agent was not restarted"
    );

    let log = read(&config.log_dir.join("codedeploy-agent.log"));
    let reload_line = log
        .lines()
        .position(|l| l.contains("SIGHUP: configuration reloaded"));
    ensure!(bed, reload_line.is_some(), "the reload is logged");
    let reload_line = reload_line.unwrap();
    let debug_lines = |lines: &mut dyn Iterator<Item = &str>| {
        lines
            .filter(|l| l.split(' ').nth(1) == Some("DEBUG"))
            .count()
    };
    ensure_eq!(
        bed,
        debug_lines(&mut log.lines().take(reload_line)),
        0,
        "no debug lines before the reload (verbose false)"
    );
    ensure!(
        bed,
        debug_lines(&mut log.lines().skip(reload_line)) > 0,
        "debug lines after the reload (verbose true)"
    );
}

#[test]
fn a_second_sigterm_stops_an_unpack_in_progress_at_the_next_entry() {
    let bed = TestBed::start("sigterm-unpack");
    let deployment = deploy(&bed, "app/many.tgz", &many_files_revision(190_000));
    let config = bed
        .agent_config()
        .extra_line(":kill_agent_max_wait_time_seconds: 600");
    bed.start_agent_with(&agent_binary(), &config);
    let archive = deployment_dir(&bed, &deployment).join("deployment-archive");
    ensure!(
        bed,
        wait_until(DEPLOYMENT_DEADLINE, || archive
            .join("content/d001")
            .exists()),
        "the unpack gets under way"
    );
    bed.signal_agent("TERM");
    std::thread::sleep(Duration::from_millis(200));
    ensure!(
        bed,
        bed.agent_running(),
        "the first SIGTERM lets the command run"
    );
    let started = Instant::now();
    bed.signal_agent("TERM");
    let status = bed.wait_for_agent_exit(Duration::from_secs(40));
    let took = started.elapsed();
    ensure!(
        bed,
        status.is_some_and(|s| s.success()) && took < Duration::from_secs(3),
        "the second SIGTERM stops the unpack at its next entry ({took:?}, {status:?})"
    );
    let diagnostics = reported_failure(
        &bed,
        &deployment,
        "DownloadBundle",
        "the stopped command is reported",
    );
    ensure!(
        bed,
        diagnostics.message.contains("shutting down"),
        "the diagnostics say the unpack was stopped by the shutdown: {diagnostics:?}"
    );
    ensure!(
        bed,
        !archive.exists(),
        "the half-unpacked archive is removed"
    );
}

#[test]
fn a_panic_in_one_command_fails_it_stops_its_scripts_and_the_agent_deploys_again() {
    let bed = TestBed::start("panic");
    let install = bed.path().join("srv/app");
    let pid_file = bed.path().join("hook.pid");
    let child_pid_file = bed.path().join("hook-child.pid");
    // Test builds of the agent panic when a hook prints this line (the
    // `test-panic` feature); the hook and a child it started are running then.
    let panicking = deploy(
        &bed,
        "app/panics.tgz",
        &revision_with_before_install(
            &install,
            &format!(
                "sleep 1000 &\necho $! > '{}'\necho $$ > '{}'\necho 'codedeploy-agent-test: panic'\nsleep 1000",
                child_pid_file.display(),
                pid_file.display()
            ),
        ),
    );
    bed.start_agent(&agent_binary());
    expect_failure_at(&bed, &panicking, "BeforeInstall");
    let diagnostics = reported_failure(
        &bed,
        &panicking,
        "BeforeInstall",
        "the panicked command is reported",
    );
    ensure!(
        bed,
        diagnostics.error_code == 5
            && diagnostics
                .message
                .contains("internal error while running BeforeInstall")
            && diagnostics
                .message
                .contains("panic: deliberate panic for a test"),
        "the diagnostics name the panic: {diagnostics:?}"
    );
    let pids: Vec<u32> = [&pid_file, &child_pid_file]
        .iter()
        .filter_map(|file| read_pid(file, Duration::from_secs(1)))
        .collect();
    ensure_eq!(
        bed,
        pids.len(),
        2,
        "the hook and its child wrote their pids"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while pids.iter().any(|pid| pid_alive(*pid)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let survivors: Vec<u32> = pids.iter().copied().filter(|pid| pid_alive(*pid)).collect();
    survivors.iter().for_each(|pid| kill_pid(*pid));
    ensure!(
        bed,
        survivors.is_empty(),
        "the hook processes running at the panic are stopped: {survivors:?} survived"
    );
    ensure!(bed, bed.agent_running(), "the agent survives the panic");

    let next = deploy(
        &bed,
        "app/next.tgz",
        &revision_with_before_install(&install, "echo fine"),
    );
    expect_success(&bed, &next);
    ensure!(
        bed,
        install.join("index.html").is_file(),
        "the next deployment installed its files"
    );
}
