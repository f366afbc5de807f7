//! Deployments that fail: a hook's exit code, a hook's timeout (and the
//! processes it started), a specification the agent must not trust, a
//! bundle whose ETag does not match, a destination that already exists.
//! Each checks the error code and message the service receives and that
//! the deployment went no further.

use std::time::Duration;

use codedeploy_e2e::{BundleType, Deployment, Revision, SpecFormat, TestBed};

use crate::support::*;

const BUCKET: &str = "failing-revisions";

fn simple_revision(install: &std::path::Path, hooks: &[Hook<'_>]) -> Revision {
    Revision::new()
        .file("appspec.yml", appspec("site", install, hooks))
        .file("site/index.html", "<p>hello</p>\n")
}

#[test]
fn failing_hook_stops_the_deployment_and_reports_script_and_exit_code() {
    let bed = TestBed::start("failing-hook");
    let install = bed.path().join("srv/app");
    let hooks_log = bed.path().join("hooks.log");
    let hooks = [
        hook("BeforeInstall", "scripts/before_install.sh"),
        hook("AfterInstall", "scripts/after_install.sh"),
        hook("ApplicationStart", "scripts/application_start.sh"),
    ];
    let revision = simple_revision(&install, &hooks)
        .script("scripts/before_install.sh", recording_hook("r", &hooks_log))
        .script(
            "scripts/after_install.sh",
            format!(
                "#!/bin/sh\n{}\necho 'checking configuration'\necho 'config value DB_URL is missing' >&2\necho 'giving up'\nexit 3\n",
                recording_hook("r", &hooks_log).trim_start_matches("#!/bin/sh\n")
            ),
        )
        .script("scripts/application_start.sh", recording_hook("r", &hooks_log));
    let location = bed.upload(BUCKET, "app/failing.tar", &revision, BundleType::Tar);
    let deployment = Deployment::new("App", "App-Group", location);
    bed.emulator.add_deployment(deployment.clone());
    bed.start_agent(&agent_binary());

    let failed = expect_failure_at(&bed, &deployment, "AfterInstall");
    ensure_command_cycle(&bed, &deployment);
    let diagnostics = failed.diagnostics().cloned();
    ensure!(
        bed,
        diagnostics.is_some(),
        "AfterInstall's completion carries diagnostics"
    );
    let diagnostics = diagnostics.unwrap();
    ensure_eq!(
        bed,
        diagnostics.error_code,
        4,
        "a script exiting non-zero is ScriptFailed (4)"
    );
    ensure_eq!(
        bed,
        diagnostics.script_name,
        "scripts/after_install.sh",
        "script_name is the hook location"
    );
    ensure!(
        bed,
        diagnostics
            .message
            .contains("Script at specified location: scripts/after_install.sh")
            && diagnostics.message.contains("failed with exit code 3"),
        "message names the script and the exit code: {:?}",
        diagnostics.message
    );
    for line in [
        "[stdout]checking configuration",
        "[stderr]config value DB_URL is missing",
        "[stdout]giving up",
    ] {
        ensure!(
            bed,
            diagnostics.log.contains(line),
            "log carries {line:?}: {:?}",
            diagnostics.log
        );
    }

    let record = bed.emulator.deployment(&deployment.deployment_id).unwrap();
    ensure_eq!(
        bed,
        record.issued(),
        vec![
            "ApplicationStop",
            "DownloadBundle",
            "BeforeInstall",
            "Install",
            "AfterInstall"
        ],
        "no command after the failed AfterInstall"
    );
    // Give a wrongly continuing agent a moment to show itself.
    std::thread::sleep(Duration::from_secs(2));
    let ran: Vec<String> = lines(&hooks_log)
        .iter()
        .map(|l| l.split(' ').nth(1).unwrap_or("").to_string())
        .collect();
    ensure_eq!(
        bed,
        ran,
        vec!["BeforeInstall", "AfterInstall"],
        "hooks that ran"
    );
    ensure_eq!(
        bed,
        bed.emulator.completes().len(),
        5,
        "one completion per issued command, the failed one sent once"
    );
    ensure!(
        bed,
        bed.agent_running(),
        "a failed deployment does not stop the agent"
    );
}

#[test]
fn a_daemon_started_by_a_hook_that_then_fails_is_stopped_with_it() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("not root: the hook runs without a tracking cgroup; skipping");
        return;
    }
    let bed = TestBed::start("hook-fails-daemon");
    let install = bed.path().join("srv/app");
    let daemon_pid = bed.path().join("daemon.pid");
    let hooks = [hook("ApplicationStart", "scripts/start.sh")];
    let script = format!(
        "#!/bin/sh\n\
         setsid sh -c 'echo $$ > {}; exec sleep 300' </dev/null >/dev/null 2>&1 &\n\
         while [ ! -s '{}' ]; do sleep 0.05; done\n\
         echo 'the configuration is broken' >&2\n\
         exit 1\n",
        daemon_pid.display(),
        daemon_pid.display()
    );
    let revision = simple_revision(&install, &hooks).script("scripts/start.sh", script);
    let location = bed.upload(BUCKET, "app/daemon.tgz", &revision, BundleType::Tgz);
    let deployment = Deployment::new("App", "App-Group", location);
    bed.emulator.add_deployment(deployment.clone());
    bed.start_agent(&agent_binary());

    let failed = expect_failure_at(&bed, &deployment, "ApplicationStart");
    let code = failed.diagnostics().map(|d| d.error_code);
    ensure_eq!(bed, code, Some(4), "a failing script is ScriptFailed (4)");
    let pid = read_pid(&daemon_pid, Duration::from_secs(2))
        .unwrap_or_else(|| panic!("the hook wrote its daemon's pid\n{}", bed.report()));
    ensure!(
        bed,
        wait_until(Duration::from_secs(10), || !pid_alive(pid)),
        "the daemon {pid} the failed hook started in a new session is still alive"
    );
}

#[test]
fn hook_exceeding_its_timeout_is_killed_with_its_children() {
    let bed = TestBed::start("hook-timeout");
    let install = bed.path().join("srv/app");
    let child_pid = bed.path().join("child.pid");
    let script_pid = bed.path().join("script.pid");
    let session_pid = bed.path().join("session.pid");
    let group_pid = bed.path().join("group.pid");
    let hooks = [Hook {
        event: "BeforeInstall",
        location: "scripts/warm_cache.sh",
        timeout: Some(2),
    }];
    // Two children leave the script's process group, as daemons do: one in
    // a new session, one in a new process group.
    let script = format!(
        "#!/bin/sh\n\
         sleep 300 &\n\
         echo $! > '{}'\n\
         echo $$ > '{}'\n\
         setsid sh -c 'echo $$ > {}; exec sleep 300' </dev/null >/dev/null 2>&1 &\n\
         perl -e 'setpgrp(0, 0); open(my $f, \">\", $ARGV[0]) or die; print $f $$; close $f; exec(\"sleep\", \"300\")' '{}' </dev/null >/dev/null 2>&1 &\n\
         echo 'warming the cache in the background'\n\
         sleep 300\n",
        child_pid.display(),
        script_pid.display(),
        session_pid.display(),
        group_pid.display()
    );
    let revision = simple_revision(&install, &hooks).script("scripts/warm_cache.sh", script);
    let location = bed.upload(BUCKET, "app/slow.tgz", &revision, BundleType::Tgz);
    let deployment = Deployment::new("App", "App-Group", location);
    bed.emulator.add_deployment(deployment.clone());
    bed.start_agent(&agent_binary());

    let failed = expect_failure_at(&bed, &deployment, "BeforeInstall");
    let diagnostics = failed.diagnostics().cloned().unwrap_or_else(|| {
        panic!(
            "BeforeInstall's completion carries diagnostics\n{}",
            bed.report()
        )
    });
    ensure_eq!(
        bed,
        diagnostics.error_code,
        3,
        "a timed-out script is ScriptTimedOut (3)"
    );
    ensure_eq!(
        bed,
        diagnostics.script_name,
        "scripts/warm_cache.sh",
        "script_name"
    );
    ensure!(
        bed,
        diagnostics
            .message
            .contains("failed to complete in 2 seconds"),
        "message gives the timeout: {:?}",
        diagnostics.message
    );

    // Reported promptly: the timeout plus a grace period, not the 300 s
    // the script would take.
    let calls = bed.emulator.calls();
    let issued_at = calls
        .iter()
        .find(|c| {
            c.response
                .pointer("/HostCommand/CommandName")
                .and_then(|v| v.as_str())
                == Some("BeforeInstall")
        })
        .map(|c| c.at);
    let completed_at = failed.completion().map(|c| c.at);
    if let (Some(issued), Some(completed)) = (issued_at, completed_at) {
        let took = completed.duration_since(issued).unwrap_or_default();
        ensure!(
            bed,
            took < Duration::from_secs(20),
            "the timeout was reported after {took:?}"
        );
    }

    // Without root no cgroup tracks the hook, and only its process group
    // is reached (README, "What a stopped hook takes with it").
    let tracked = nix::unistd::Uid::effective().is_root();
    if !tracked {
        eprintln!("not root: the hook runs without a tracking cgroup; not checking the processes that left its group");
    }
    let mut watched = vec![&script_pid, &child_pid];
    if tracked {
        watched.extend([&session_pid, &group_pid]);
    }
    let pids: Vec<u32> = watched
        .iter()
        .map(|p| {
            read_pid(p, Duration::from_secs(2))
                .unwrap_or_else(|| panic!("the hook wrote {}\n{}", p.display(), bed.report()))
        })
        .collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while pids.iter().any(|p| pid_alive(*p)) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    for pid in &pids {
        ensure!(
            bed,
            !pid_alive(*pid),
            "process {pid} started by the timed-out hook is still alive"
        );
    }
    ensure!(
        bed,
        !bed.emulator
            .deployment(&deployment.deployment_id)
            .unwrap()
            .issued()
            .contains(&"Install"),
        "no Install after the failed BeforeInstall"
    );
}

#[test]
fn spec_signed_by_an_unknown_ca_is_rejected() {
    let bed = TestBed::start("foreign-ca");
    let install = bed.path().join("srv/app");
    let revision = simple_revision(&install, &[]);
    let location = bed.upload(BUCKET, "app/foreign.zip", &revision, BundleType::Zip);
    let deployment =
        Deployment::new("App", "App-Group", location).spec_format(SpecFormat::SignedByForeignCa);
    bed.emulator.add_deployment(deployment.clone());
    bed.start_agent(&agent_binary());

    let failed = expect_failure_at(&bed, &deployment, "ApplicationStop");
    let diagnostics = failed
        .diagnostics()
        .cloned()
        .unwrap_or_else(|| panic!("the completion carries diagnostics\n{}", bed.report()));
    ensure_eq!(
        bed,
        diagnostics.error_code,
        5,
        "an untrusted spec is UnknownError (5)"
    );
    let message = diagnostics.message.to_lowercase();
    ensure!(
        bed,
        message.contains("signature")
            || message.contains("certificate")
            || message.contains("verif"),
        "message says the signature/certificate is not trusted: {:?}",
        diagnostics.message
    );
    ensure!(
        bed,
        !install.exists(),
        "nothing installed from an untrusted spec"
    );
    ensure!(
        bed,
        !deployment_dir(&bed, &deployment)
            .join("bundle.tar")
            .exists(),
        "nothing downloaded for an untrusted spec"
    );
    ensure_eq!(
        bed,
        bed.emulator
            .deployment(&deployment.deployment_id)
            .unwrap()
            .issued(),
        vec!["ApplicationStop"],
        "no further command"
    );
}

#[test]
fn unsigned_text_json_spec_is_rejected_by_the_daemon() {
    let bed = TestBed::start("text-json");
    let install = bed.path().join("srv/app");
    let revision = simple_revision(&install, &[]);
    let location = bed.upload(BUCKET, "app/text.tar", &revision, BundleType::Tar);
    let deployment =
        Deployment::new("App", "App-Group", location).spec_format(SpecFormat::TextJson);
    bed.emulator.add_deployment(deployment.clone());
    bed.start_agent(&agent_binary());

    let failed = expect_failure_at(&bed, &deployment, "ApplicationStop");
    let diagnostics = failed
        .diagnostics()
        .cloned()
        .unwrap_or_else(|| panic!("the completion carries diagnostics\n{}", bed.report()));
    ensure_eq!(bed, diagnostics.error_code, 5, "error code");
    ensure!(
        bed,
        diagnostics
            .message
            .contains("Unsupported DeploymentSpecification format: TEXT/JSON"),
        "message: {:?}",
        diagnostics.message
    );
    ensure!(bed, !install.exists(), "nothing installed");
}

#[test]
fn etag_mismatch_fails_download_bundle_naming_bucket_and_key() {
    let bed = TestBed::start("etag-mismatch");
    let install = bed.path().join("srv/app");
    let revision = simple_revision(&install, &[]);
    let mut location = bed.upload(BUCKET, "app/etag-check.tgz", &revision, BundleType::Tgz);
    let real_etag = location.etag.clone().unwrap();
    let wrong_etag = "0123456789abcdef0123456789abcdef".to_string();
    ensure!(
        bed,
        real_etag != wrong_etag,
        "the test's wrong ETag differs from the real one"
    );
    location.etag = Some(wrong_etag.clone());
    let deployment = Deployment::new("App", "App-Group", location);
    bed.emulator.add_deployment(deployment.clone());
    bed.start_agent(&agent_binary());

    let failed = expect_failure_at(&bed, &deployment, "DownloadBundle");
    let diagnostics = failed
        .diagnostics()
        .cloned()
        .unwrap_or_else(|| panic!("the completion carries diagnostics\n{}", bed.report()));
    ensure_eq!(
        bed,
        diagnostics.error_code,
        5,
        "a download failure is UnknownError (5)"
    );
    ensure_eq!(
        bed,
        diagnostics.script_name,
        "",
        "no script for a download failure"
    );
    for part in [
        BUCKET,
        "app/etag-check.tgz",
        wrong_etag.as_str(),
        real_etag.as_str(),
    ] {
        ensure!(
            bed,
            diagnostics.message.contains(part),
            "message names {part:?}: {:?}",
            diagnostics.message
        );
    }
    ensure!(
        bed,
        diagnostics.message.to_lowercase().contains("etag"),
        "message is about the ETag: {:?}",
        diagnostics.message
    );
    ensure!(bed, !install.exists(), "nothing installed");
}

#[test]
fn existing_file_at_the_destination_fails_install_by_default() {
    let bed = TestBed::start("file-exists-disallow");
    let install = bed.path().join("srv/app");
    std::fs::create_dir_all(&install).unwrap();
    std::fs::write(install.join("index.html"), "hand-made page\n").unwrap();
    let revision = simple_revision(&install, &[]);
    let location = bed.upload(BUCKET, "app/disallow.tar", &revision, BundleType::Tar);
    let deployment = Deployment::new("App", "App-Group", location);
    bed.emulator.add_deployment(deployment.clone());
    bed.start_agent(&agent_binary());

    let failed = expect_failure_at(&bed, &deployment, "Install");
    let diagnostics = failed
        .diagnostics()
        .cloned()
        .unwrap_or_else(|| panic!("the completion carries diagnostics\n{}", bed.report()));
    ensure_eq!(bed, diagnostics.error_code, 5, "error code");
    let path = install.join("index.html");
    ensure!(
        bed,
        diagnostics.message.contains("already exists")
            && diagnostics.message.contains(&*path.to_string_lossy()),
        "message names the existing file: {:?}",
        diagnostics.message
    );
    ensure_eq!(
        bed,
        read(&path),
        "hand-made page\n",
        "the existing file is untouched"
    );
}
