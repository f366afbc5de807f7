//! The service verbs where PID 1 is not systemd (this machine): `start`
//! starts the agent in the background, `status` reads what it does from the
//! disk, `stop` and `restart` act as the unit would, `--version` prints what
//! `.version` holds. The same verbs under a real systemd are in `systemd.rs`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use codedeploy_e2e::{AgentConfig, BundleType, Deployment, DeploymentStatus, Revision, TestBed};

use crate::support::*;

const BUCKET: &str = "control-revisions";

/// One `codedeploy-agent -c <config> ARGS` run.
struct Verb {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn verb(config: &AgentConfig, config_file: &Path, args: &[&str]) -> Verb {
    let mut command = Command::new(agent_binary());
    command
        .arg("--config")
        .arg(config_file)
        .args(args)
        .stdin(Stdio::null());
    config.apply_env(&mut command);
    let output = command.output().expect("codedeploy-agent runs");
    Verb {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

impl std::fmt::Display for Verb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Kills an agent `start` left running when a test ends early.
struct Started(Option<u32>);

impl Drop for Started {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            kill_pid(pid);
        }
    }
}

fn pid_in(line: &str) -> Option<u32> {
    let after = line.split("pid ").nth(1)?;
    after
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

fn json(verb: &Verb) -> serde_json::Value {
    serde_json::from_str(&verb.stdout).unwrap_or_else(|e| panic!("status --json: {e}\n{verb}"))
}

fn sleeping_revision(install: &Path, release: &Path) -> Revision {
    Revision::new()
        .file(
            "appspec.yml",
            appspec(
                "content",
                install,
                &[hook("BeforeInstall", "scripts/wait_for_release.sh")],
            ),
        )
        .file("content/index.html", "<p>v1</p>\n")
        .script(
            "scripts/wait_for_release.sh",
            format!(
                "#!/bin/sh\nwhile [ ! -e '{}' ]; do sleep 0.1; done\n",
                release.display()
            ),
        )
}

#[test]
fn version_prints_what_the_version_file_holds() {
    let output = Command::new(agent_binary())
        .arg("--version")
        .output()
        .expect("codedeploy-agent runs");
    assert_eq!(output.status.code(), Some(0));
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let version = text
        .strip_prefix("agent_version: ")
        .and_then(|v| v.strip_suffix('\n'))
        .unwrap_or_else(|| panic!("{text:?}"));
    assert!(
        version.split('.').count() == 3 && version.split('.').all(|n| n.parse::<u32>().is_ok()),
        "{text:?}"
    );
}

#[test]
fn start_status_stop_and_restart_without_systemd() {
    assert!(
        !Path::new("/run/systemd/system").exists(),
        "this test is for hosts whose PID 1 is not systemd; systemd.rs covers the others"
    );
    let bed = TestBed::start("control");
    let config = bed.agent_config();
    let config_file = bed.write_agent_files(&config);

    let before = verb(&config, &config_file, &["status"]);
    assert_eq!(before.code, Some(3), "no agent yet: not running\n{before}");
    assert!(
        before.stdout.starts_with("codedeploy-agent: not running ("),
        "{before}"
    );
    assert_eq!(
        json(&verb(&config, &config_file, &["status", "--json"]))["agent"]["state"],
        "not_running"
    );

    let started = verb(&config, &config_file, &["start"]);
    let pid = pid_in(&started.stdout);
    let mut guard = Started(pid);
    assert_eq!(started.code, Some(0), "{started}");
    let pid = pid.unwrap_or_else(|| panic!("start names the pid\n{started}"));
    assert!(pid_alive(pid), "the started agent runs\n{started}");
    let again = verb(&config, &config_file, &["start"]);
    assert_eq!(
        (again.code, pid_in(&again.stdout)),
        (Some(0), Some(pid)),
        "a second start finds it running\n{again}"
    );

    // A deployment whose hook waits: status shows it in progress.
    let install = bed.path().join("srv/app");
    let release = bed.path().join("release");
    let location = bed.upload(
        BUCKET,
        "app/sleeping.tgz",
        &sleeping_revision(&install, &release),
        BundleType::Tgz,
    );
    let deployment = Deployment::new("App", "App-Group", location);
    bed.emulator.add_deployment(deployment.clone());
    let in_progress = wait_until(Duration::from_secs(60), || {
        json(&verb(&config, &config_file, &["status", "--json"]))["in_progress"][0]["script"]
            == "scripts/wait_for_release.sh"
    });
    let running = verb(&config, &config_file, &["status"]);
    assert!(in_progress, "status shows the hook running\n{running}");
    assert_eq!(running.code, Some(0), "{running}");
    assert!(
        running
            .stdout
            .starts_with(&format!("codedeploy-agent: running (pid {pid}, since ")),
        "{running}"
    );
    assert!(
        running.stdout.contains(&format!(
            "  {} BeforeInstall for ",
            deployment.deployment_id
        )) && running
            .stdout
            .contains("script scripts/wait_for_release.sh since "),
        "the command, its deployment and its script\n{running}"
    );
    let status = json(&verb(&config, &config_file, &["status", "--json"]));
    assert_eq!(status["agent"]["pid"], pid);
    assert_eq!(
        status["in_progress"][0]["deployment_id"],
        deployment.deployment_id.as_str()
    );
    assert_eq!(status["in_progress"][0]["command"], "BeforeInstall");
    assert_eq!(
        status["in_progress"][0]["group_id"],
        deployment.group_id.as_str()
    );

    std::fs::write(&release, "").unwrap();
    // The agent is not the test bed's own child: wait on the emulator.
    let succeeded = wait_until(Duration::from_secs(60), || {
        bed.emulator
            .deployment(&deployment.deployment_id)
            .is_some_and(|d| matches!(d.status, DeploymentStatus::Succeeded))
    });
    assert!(succeeded, "the deployment succeeds\n{}", bed.report());
    let done = verb(&config, &config_file, &["status", "--json"]);
    let status = json(&done);
    let last = &status["last_deployments"][0];
    assert_eq!(
        (
            last["deployment_id"].as_str(),
            last["state"].as_str(),
            last["command"].as_str()
        ),
        (
            Some(deployment.deployment_id.as_str()),
            Some("Succeeded"),
            Some("ValidateService")
        ),
        "{done}"
    );
    let scripts_log = PathBuf::from(last["scripts_log"].as_str().unwrap_or_default());
    assert!(
        std::fs::read_to_string(&scripts_log).is_ok_and(|t| t.contains("wait_for_release.sh")),
        "the scripts.log named is the deployment's\n{done}"
    );
    assert!(
        status["in_progress"].as_array().is_some_and(Vec::is_empty),
        "{done}"
    );

    let restarted = verb(&config, &config_file, &["restart"]);
    let new_pid = restarted
        .stdout
        .split_once("; started")
        .and_then(|(_, started)| pid_in(started));
    guard.0 = new_pid;
    assert_eq!(restarted.code, Some(0), "{restarted}");
    assert!(
        restarted.stdout.contains(&format!("stopped (pid {pid})")) && !pid_alive(pid),
        "{restarted}"
    );
    let new_pid = new_pid.unwrap_or_else(|| panic!("{restarted}"));
    assert_ne!(new_pid, pid);
    assert_eq!(verb(&config, &config_file, &["status"]).code, Some(0));

    let stopped = verb(&config, &config_file, &["stop"]);
    assert_eq!(stopped.code, Some(0), "{stopped}");
    assert!(
        stopped.stdout.contains(&format!("stopped (pid {new_pid})")),
        "{stopped}"
    );
    assert!(!pid_alive(new_pid), "the agent is gone after stop");
    guard.0 = None;
    let after = verb(&config, &config_file, &["status"]);
    assert_eq!(after.code, Some(3), "{after}");
    assert!(
        after.stdout.contains(&format!(
            "group {}: {} ValidateService succeeded",
            deployment.group_id, deployment.deployment_id
        )),
        "the last deployment stays on record\n{after}"
    );
    let stop_again = verb(&config, &config_file, &["stop"]);
    assert_eq!(
        (stop_again.code, stop_again.stdout.trim()),
        (Some(0), "codedeploy-agent: not running"),
        "{stop_again}"
    );
}

#[test]
fn status_reports_a_failed_deployment_with_its_code_and_a_killed_agent_as_not_running() {
    let bed = TestBed::start("status-failed");
    let install = bed.path().join("srv/app");
    let revision = Revision::new()
        .file(
            "appspec.yml",
            appspec(
                "content",
                &install,
                &[hook("AfterInstall", "scripts/fail.sh")],
            ),
        )
        .file("content/index.html", "<p>v1</p>\n")
        .script("scripts/fail.sh", "#!/bin/sh\necho broken >&2\nexit 3\n");
    let location = bed.upload(BUCKET, "app/failing.tgz", &revision, BundleType::Tgz);
    let deployment = Deployment::new("App", "App-Group", location);
    bed.emulator.add_deployment(deployment.clone());
    bed.start_agent(&agent_binary());
    expect_failure_at(&bed, &deployment, "AfterInstall");

    let config = bed.agent_config();
    let config_file = config.config_path();
    let status = verb(&config, &config_file, &["status"]);
    assert_eq!(status.code, Some(0), "{status}");
    assert!(
        status.stdout.contains(&format!(
            "group {}: {} FAILED at AfterInstall (",
            deployment.group_id, deployment.deployment_id
        )) && status.stdout.contains(
            "    code 4: Script at specified location: scripts/fail.sh failed with exit code 3\n"
        ),
        "{status}"
    );

    bed.kill_agent();
    let killed = verb(&config, &config_file, &["status"]);
    assert_eq!(killed.code, Some(3), "{killed}");
    assert!(
        killed
            .stdout
            .starts_with("codedeploy-agent: not running (its pid file names pid "),
        "a killed agent leaves its pid file: status says it did not stop cleanly\n{killed}"
    );
}
