//! Hook execution as the official agent does it: `runas` runs the script
//! through `su <user> -c` (that user's identity and HOME, the agent's
//! environment with the CodeDeploy variables kept, the agent's working
//! directory), a failure names the user; a script whose background child
//! keeps its stdout or stderr open fails with code 6 once its timeout is
//! over, the child left running; hook variables without a value are removed
//! from the environment; a script without execute permission is made
//! executable, a missing one fails with code 1. `sudo: true` runs the
//! script through the real `sudo` (as root, or with `runas` as that user
//! through `sudo su`), keeping the deployment's variables; without `sudo` on
//! the host such a hook fails naming it.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use codedeploy_e2e::{BundleType, Deployment, Revision, TestBed};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::accounts::{skip_unless_root, HostUser};
use super::{owner_of, scripts_log};
use crate::support::*;

/// Prints who runs it, where, and what CodeDeploy told it.
const IDENTITY_SCRIPT: &str = "#!/bin/sh
echo \"whoami=$(whoami)\"
echo \"HOME=$HOME\"
echo \"USER=$USER\"
echo \"LOGNAME=$LOGNAME\"
echo \"pwd=$(pwd)\"
echo \"env $LIFECYCLE_EVENT $DEPLOYMENT_ID $APPLICATION_NAME $DEPLOYMENT_GROUP_NAME $DEPLOYMENT_GROUP_ID $BUNDLE_BUCKET $BUNDLE_KEY $BUNDLE_VERSION $BUNDLE_ETAG\"
touch \"$HOME/hook-was-here\"
";

/// The deployment's variables as [`IDENTITY_SCRIPT`] prints them in `event`.
fn env_line(deployment: &Deployment, event: &str) -> String {
    format!("[stdout]{}", expected_hook_line("env", event, deployment))
}

/// What scripts.log holds for `scripts/identity.sh` ([`IDENTITY_SCRIPT`])
/// run in `event` as `user`, whose home is `home`.
fn identity_lines(
    bed: &TestBed,
    deployment: &Deployment,
    event: &str,
    user: &str,
    home: &str,
) -> Vec<String> {
    vec![
        format!("LifecycleEvent - {event}"),
        "Script - scripts/identity.sh".to_string(),
        format!("[stdout]whoami={user}"),
        format!("[stdout]HOME={home}"),
        format!("[stdout]USER={user}"),
        format!("[stdout]LOGNAME={user}"),
        format!("[stdout]pwd={}", bed.agent_dir().display()),
        env_line(deployment, event),
    ]
}

/// The first `count` lines of scripts.log from `event`'s heading on.
fn event_lines(log: &[String], event: &str, count: usize) -> Vec<String> {
    let heading = format!("LifecycleEvent - {event}");
    log.iter()
        .skip_while(|l| **l != heading)
        .take(count)
        .cloned()
        .collect()
}

#[test]
fn runas_hook_runs_as_that_user_with_its_home_and_the_deployment_environment() {
    if skip_unless_root("runas_hook_runs_as_that_user_with_its_home_and_the_deployment_environment")
    {
        return;
    }
    let runner = HostUser::create("run");
    let bed = TestBed::start("parity-runas");
    // The test's directory is private (0700); the deployment root below it
    // must be reachable by the user, as /opt/codedeploy-agent is.
    std::fs::set_permissions(bed.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let install = bed.path().join("srv/worker");
    let appspec_text = format!(
        "{}hooks:
  BeforeInstall:
    - location: scripts/identity.sh
  ApplicationStart:
    - location: scripts/identity.sh
      runas: {user}
  ValidateService:
    - location: scripts/validate.sh
      runas: {user}
      timeout: 30
",
        appspec("app", &install, &[]),
        user = runner.name
    );
    let revision = Revision::new()
        .file("appspec.yml", appspec_text)
        .file("app/worker.conf", "threads=4\n")
        .script("scripts/identity.sh", IDENTITY_SCRIPT)
        .script(
            "scripts/validate.sh",
            "#!/bin/sh\necho \"validating as $(whoami)\"\nexit 7\n",
        );
    let location = bed.upload("worker-revisions", "worker.zip", &revision, BundleType::Zip);
    let deployment = Deployment::new("Worker", "Worker-Fleet", location);
    bed.emulator.add_deployment(deployment.clone());
    bed.start_agent(&agent_binary());

    let failed = expect_failure_at(&bed, &deployment, "ValidateService");
    let diagnostics = failed.diagnostics().cloned();
    ensure_eq!(
        bed,
        diagnostics
            .as_ref()
            .map(|d| (d.error_code, d.script_name.as_str(), d.message.as_str())),
        Some((
            4,
            "scripts/validate.sh",
            format!(
                "Script at specified location: scripts/validate.sh run as user {} failed with exit code 7",
                runner.name
            )
            .as_str()
        )),
        "a failing runas script names the user"
    );
    ensure!(
        bed,
        diagnostics.as_ref().is_some_and(|d| d
            .log
            .contains(&format!("[stdout]validating as {}", runner.name))),
        "the log tail has the script's output: {diagnostics:?}"
    );

    let log = scripts_log(&bed, &deployment);
    let before_install = event_lines(&log, "BeforeInstall", 8);
    let start = event_lines(&log, "ApplicationStart", 8);
    let runner_home = runner.home.to_string_lossy().into_owned();
    // Without runas the script is the agent's (root's) own child; USER and
    // LOGNAME are whatever the agent had, so only whoami is compared.
    ensure_eq!(
        bed,
        before_install.get(2).cloned(),
        Some("[stdout]whoami=root".to_string()),
        "BeforeInstall without runas runs as the agent's user: {log:#?}"
    );
    ensure_eq!(
        bed,
        before_install.get(7).cloned(),
        Some(env_line(&deployment, "BeforeInstall")),
        "BeforeInstall gets the CodeDeploy variables: {log:#?}"
    );
    ensure_eq!(
        bed,
        start,
        identity_lines(
            &bed,
            &deployment,
            "ApplicationStart",
            &runner.name,
            &runner_home
        ),
        "ApplicationStart with runas: {} (scripts.log)",
        runner.name
    );
    ensure_eq!(
        bed,
        owner_of(&runner.home.join("hook-was-here")).map(|(uid, _)| uid),
        Some(runner.uid),
        "what the runas script creates belongs to {}",
        runner.name
    );
}

/// A BeforeInstall script that starts `sleep 60` in the background with
/// `redirect` applied, records its pid in `pid_file`, and exits 0.
fn background_child_script(redirect: &str, pid_file: &std::path::Path) -> String {
    format!(
        "#!/bin/sh\n\
         sleep 60 {redirect} &\n\
         echo $! > '{}'\n\
         echo 'worker started in the background'\n\
         exit 0\n",
        pid_file.display()
    )
}

/// Kills the recorded background child when the test ends, pass or fail.
struct Leftover(Option<u32>);

impl Drop for Leftover {
    fn drop(&mut self) {
        if let Some(pid) = self.0.and_then(|p| i32::try_from(p).ok()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

#[test]
fn background_child_holding_the_output_fails_with_code_6_after_the_timeout() {
    let bed = TestBed::start("parity-outputs-left-open");
    bed.start_agent(&agent_binary());
    // (case, redirect of the background child, expected failure)
    let cases: &[(&str, &str, Option<&str>)] = &[
        ("stdout", "2>/dev/null", Some("STDOUT")),
        ("stderr", ">/dev/null", Some("STDERR")),
        // The documented way to start a daemon from a hook.
        ("detached", ">/dev/null 2>&1", None),
    ];
    for (case, redirect, stream) in cases {
        let install = bed.path().join("srv").join(case);
        let pid_file = bed.path().join(format!("{case}.pid"));
        let hooks = [Hook {
            event: "BeforeInstall",
            location: "scripts/start_worker.sh",
            timeout: Some(3),
        }];
        let revision = Revision::new()
            .file("appspec.yml", appspec("app", &install, &hooks))
            .file("app/worker.conf", "threads=4\n")
            .script(
                "scripts/start_worker.sh",
                background_child_script(redirect, &pid_file),
            );
        let location = bed.upload(
            "worker-revisions",
            &format!("{case}.tar"),
            &revision,
            BundleType::Tar,
        );
        let deployment = Deployment::new("Worker", &format!("Worker-{case}"), location);
        bed.emulator.add_deployment(deployment.clone());

        let outcome = bed.wait_for_deployment_end(&deployment.deployment_id, DEPLOYMENT_DEADLINE);
        let leftover = Leftover(read_pid(&pid_file, Duration::from_secs(2)));
        ensure!(
            bed,
            leftover.0.is_some(),
            "{case}: the hook recorded its background child's pid"
        );
        match stream {
            Some(stream) => {
                let failed = outcome.failed_command().cloned();
                ensure_eq!(
                    bed,
                    failed.as_ref().map(|c| c.command_name.as_str()),
                    Some("BeforeInstall"),
                    "{case}: the deployment fails at BeforeInstall: {outcome}"
                );
                let diagnostics = failed.as_ref().and_then(|c| c.diagnostics()).cloned();
                ensure_eq!(
                    bed,
                    diagnostics
                        .as_ref()
                        .map(|d| (d.error_code, d.script_name.as_str(), d.message.as_str())),
                    Some((
                        6,
                        "scripts/start_worker.sh",
                        format!(
                            "Script at specified location: scripts/start_worker.sh failed to close {stream}"
                        )
                        .as_str()
                    )),
                    "{case}: OutputsLeftOpen"
                );
                ensure!(
                    bed,
                    diagnostics.as_ref().is_some_and(|d| d
                        .log
                        .contains("[stdout]worker started in the background")),
                    "{case}: the log tail has the script's output: {diagnostics:?}"
                );
                // Reported once the 3 s timeout is over, not after the
                // child's 60 s.
                let took = failed.as_ref().and_then(|c| {
                    let acked = bed.emulator.calls().into_iter().find(|call| {
                        call.request["HostCommandIdentifier"] == c.host_command_identifier.as_str()
                    })?;
                    c.completion()?.at.duration_since(acked.at).ok()
                });
                ensure!(
                    bed,
                    took.is_some_and(|t| t >= Duration::from_secs(3) && t < Duration::from_secs(20)),
                    "{case}: code 6 is reported when the timeout is over: {took:?}"
                );
            }
            None => ensure!(
                bed,
                outcome.is_succeeded(),
                "{case}: a child with its output redirected does not hold the hook: {outcome}"
            ),
        }
        // The official agent leaves the child alone: it is usually the
        // application being started.
        ensure!(
            bed,
            leftover.0.is_some_and(pid_alive),
            "{case}: the background child is left running"
        );
    }
}

#[test]
fn hook_variables_without_a_value_are_removed_not_inherited_from_the_agent() {
    let bed = TestBed::start("parity-unset-variables");
    let install = bed.path().join("srv/app");
    let hooks = [hook("BeforeInstall", "scripts/show_bundle.sh")];
    let revision = Revision::new()
        .file("appspec.yml", appspec("app", &install, &hooks))
        .file("app/app.conf", "x=1\n")
        .script(
            "scripts/show_bundle.sh",
            "#!/bin/sh\necho \"bundle=$BUNDLE_BUCKET $BUNDLE_KEY ${BUNDLE_VERSION-unset} ${BUNDLE_ETAG-unset} ${BUNDLE_COMMIT-unset}\"\n",
        );
    let mut location = bed.upload("plain-revisions", "app.tar", &revision, BundleType::Tar);
    // A deployment of "the latest object", with no version and no ETag.
    location.version = None;
    location.etag = None;
    let deployment = Deployment::new("App", "App-Fleet", location);
    bed.emulator.add_deployment(deployment.clone());
    // Values the agent itself inherited must not pass for the deployment's.
    let config = bed
        .agent_config()
        .env("BUNDLE_VERSION", "stale-version")
        .env("BUNDLE_ETAG", "stale-etag")
        .env("BUNDLE_COMMIT", "stale-commit");
    bed.start_agent_with(&agent_binary(), &config);
    expect_success(&bed, &deployment);

    let log = scripts_log(&bed, &deployment);
    ensure!(
        bed,
        log.contains(&"[stdout]bundle=plain-revisions app.tar unset unset unset".to_string()),
        "BUNDLE_VERSION, BUNDLE_ETAG and BUNDLE_COMMIT are unset for an unversioned S3 object: {log:#?}"
    );
}

#[test]
fn non_executable_script_is_made_executable_and_a_missing_one_fails_with_code_1() {
    let bed = TestBed::start("parity-script-files");
    let install = bed.path().join("srv/app");
    let hooks = [
        hook("BeforeInstall", "scripts/prepare.sh"),
        hook("AfterInstall", "scripts/not-in-the-revision.sh"),
    ];
    let revision = Revision::new()
        .file("appspec.yml", appspec("app", &install, &hooks))
        .file("app/app.conf", "x=1\n")
        // Mode 0644, as zips made on Windows carry scripts.
        .file("scripts/prepare.sh", "#!/bin/sh\necho prepared\n");
    let location = bed.upload("plain-revisions", "scripts.zip", &revision, BundleType::Zip);
    let deployment = Deployment::new("App", "App-Scripts", location);
    bed.emulator.add_deployment(deployment.clone());
    bed.start_agent(&agent_binary());

    let failed = expect_failure_at(&bed, &deployment, "AfterInstall");
    let archive = deployment_dir(&bed, &deployment).join("deployment-archive");
    ensure!(
        bed,
        scripts_log(&bed, &deployment).contains(&"[stdout]prepared".to_string()),
        "the non-executable BeforeInstall script was made executable and ran"
    );
    ensure_eq!(
        bed,
        super::mode_of(&archive.join("scripts/prepare.sh")).map(|m| m & 0o111),
        Some(0o111),
        "the script is executable now (chmod +x)"
    );
    ensure_eq!(
        bed,
        failed
            .diagnostics()
            .map(|d| (d.error_code, d.script_name.clone(), d.message.clone())),
        Some((
            1,
            "scripts/not-in-the-revision.sh".to_string(),
            format!(
                "Script does not exist at specified location: {}",
                archive.join("scripts/not-in-the-revision.sh").display()
            )
        )),
        "a missing script is ScriptMissing (1), naming its absolute path"
    );
}

/// [`IDENTITY_SCRIPT`] (without its mark in HOME), then what sudo tells the
/// command it runs.
fn sudo_identity_script() -> String {
    IDENTITY_SCRIPT.replace(
        "touch \"$HOME/hook-was-here\"\n",
        "echo \"sudo=$SUDO_USER $SUDO_COMMAND\"\n",
    )
}

/// A deployment whose hooks are `hooks_yaml`, all running
/// [`sudo_identity_script`] as `scripts/identity.sh`.
fn sudo_deployment(bed: &TestBed, hooks_yaml: &str, key: &str) -> Deployment {
    let install = bed.path().join("srv/worker");
    let revision = Revision::new()
        .file(
            "appspec.yml",
            format!("{}hooks:\n{hooks_yaml}", appspec("app", &install, &[])),
        )
        .file("app/worker.conf", "threads=4\n")
        .script("scripts/identity.sh", sudo_identity_script());
    let location = bed.upload("worker-revisions", key, &revision, BundleType::Tgz);
    let deployment = Deployment::new("Worker", key, location);
    bed.emulator.add_deployment(deployment.clone());
    deployment
}

#[test]
fn sudo_hooks_run_through_real_sudo_as_root_or_the_runas_user_with_the_deployment_environment() {
    if skip_unless_root("sudo_hooks_run_through_real_sudo") {
        return;
    }
    let sudo = std::process::Command::new("sudo").arg("-V").output();
    assert!(
        sudo.is_ok_and(|o| o.status.success()),
        "this test runs the real sudo: install it with `apt-get install sudo` (scripts/setup does)"
    );
    let runner = HostUser::create("sudo");
    let bed = TestBed::start("parity-sudo");
    // The user's shell must reach the script below the test's directory.
    std::fs::set_permissions(bed.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let hooks = format!(
        "  BeforeInstall:
    - location: scripts/identity.sh
      sudo: true
  ApplicationStart:
    - location: scripts/identity.sh
      runas: {}
      sudo: true
",
        runner.name
    );
    let deployment = sudo_deployment(&bed, &hooks, "sudo.tgz");
    bed.start_agent(&agent_binary());
    expect_success(&bed, &deployment);

    let log = scripts_log(&bed, &deployment);
    let script = deployment_dir(&bed, &deployment).join("deployment-archive/scripts/identity.sh");
    let before_install = event_lines(&log, "BeforeInstall", 9);
    ensure_eq!(
        bed,
        [2, 7, 8].map(|i| before_install.get(i).cloned().unwrap_or_default()),
        [
            "[stdout]whoami=root".to_string(),
            env_line(&deployment, "BeforeInstall"),
            format!("[stdout]sudo=root {}", script.display()),
        ],
        "BeforeInstall with sudo runs the script through sudo as root, with the \
         deployment's variables: {log:#?}"
    );
    let start = event_lines(&log, "ApplicationStart", 9);
    let runner_home = runner.home.to_string_lossy().into_owned();
    let mut expected = identity_lines(
        &bed,
        &deployment,
        "ApplicationStart",
        &runner.name,
        &runner_home,
    );
    expected.push(format!(
        "[stdout]sudo=root /usr/bin/su {} -c '{}'",
        runner.name,
        script.display()
    ));
    ensure_eq!(
        bed,
        start,
        expected,
        "ApplicationStart with runas {} and sudo: through sudo su, as that user with its \
         home and the deployment's variables",
        runner.name
    );
}

#[test]
fn a_sudo_hook_without_sudo_on_the_host_fails_naming_sudo() {
    let bed = TestBed::start("parity-sudo-missing");
    let hooks = "  BeforeInstall:
    - location: scripts/identity.sh
      sudo: true
";
    let deployment = sudo_deployment(&bed, hooks, "no-sudo.tgz");
    // A PATH where no sudo is found: as on a host without the package.
    let empty_bin = bed.path().join("empty-bin");
    std::fs::create_dir_all(&empty_bin).unwrap();
    let config = bed
        .agent_config()
        .env("PATH", &empty_bin.display().to_string());
    bed.start_agent_with(&agent_binary(), &config);

    let failed = expect_failure_at(&bed, &deployment, "BeforeInstall");
    let diagnostics = failed
        .diagnostics()
        .cloned()
        .unwrap_or_else(|| panic!("BeforeInstall's failure has diagnostics\n{}", bed.report()));
    ensure_eq!(
        bed,
        (diagnostics.error_code, diagnostics.script_name.as_str()),
        (4, "scripts/identity.sh"),
        "a script that cannot be started is a script failure"
    );
    ensure!(
        bed,
        diagnostics
            .message
            .contains("cannot start sudo: No such file or directory"),
        "the message says that sudo is what is missing: {}",
        diagnostics.message
    );
}
