//! Hook resource bounds through the daemon: `:hook_memory_limit_mb:` in the
//! agent's configuration, a hook allocating past it, and what the service is
//! told. Needs root and a mounted memory controller (CI has both); says so
//! when skipped.

use std::path::Path;

use codedeploy_e2e::{BundleType, Deployment, Revision, TestBed};

use crate::support::*;

const BUCKET: &str = "bounded-revisions";

/// Why this host cannot give the agent a memory cgroup, if it cannot.
fn no_memory_cgroup() -> Option<String> {
    if !nix::unistd::Uid::effective().is_root() {
        return Some("not root: cgroups are not writable".into());
    }
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let v1 = own.lines().any(|l| {
        l.split(':')
            .nth(1)
            .is_some_and(|c| c.split(',').any(|c| c == "memory"))
    });
    let v2 = std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers")
        .is_ok_and(|c| c.split_whitespace().any(|c| c == "memory"));
    (!v1 && !v2).then(|| "no memory controller is mounted".into())
}

#[test]
fn a_hook_past_hook_memory_limit_mb_fails_the_deployment_as_out_of_memory() {
    if let Some(why) = no_memory_cgroup() {
        eprintln!("{why}: skipping");
        return;
    }
    let bed = TestBed::start("bounds-oom");
    let install = bed.path().join("srv/app");
    let hooks = [hook("AfterInstall", "scripts/hungry.sh")];
    let revision = Revision::new()
        .file("appspec.yml", appspec("site", &install, &hooks))
        .file("site/index.html", "<p>hello</p>\n")
        // tail keeps a line that never ends: 300 MiB of it.
        .script(
            "scripts/hungry.sh",
            "#!/bin/sh\necho 'warming the cache'\nhead -c 300M /dev/zero | tail > /dev/null\n",
        );
    let location = bed.upload(BUCKET, "app/hungry.tar", &revision, BundleType::Tar);
    let deployment = Deployment::new("App", "App-Group", location);
    bed.emulator.add_deployment(deployment.clone());
    let config = bed.agent_config().extra_line(":hook_memory_limit_mb: 64");
    bed.start_agent_with(&agent_binary(), &config);

    let failed = expect_failure_at(&bed, &deployment, "AfterInstall");
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
        "an out-of-memory hook is ScriptFailed (4)"
    );
    ensure_eq!(
        bed,
        diagnostics.script_name,
        "scripts/hungry.sh",
        "the script's location"
    );
    ensure_eq!(
        bed,
        diagnostics.message,
        "Script at specified location: scripts/hungry.sh was killed because it exceeded :hook_memory_limit_mb: of 64 MiB (out of memory; exit code 137)",
        "the message says out of memory and names the bound"
    );
    ensure!(
        bed,
        diagnostics.log.contains("[stdout]warming the cache"),
        "the log tail: {:?}",
        diagnostics.log
    );
    ensure!(
        bed,
        bed.agent_running(),
        "a failed deployment does not stop the agent"
    );
    let agent_pid = bed.agent_pid().expect("the agent runs");
    bed.stop_agent(std::time::Duration::from_secs(10));
    let left = hook_groups_left(agent_pid);
    ensure!(
        bed,
        left.is_empty(),
        "the agent removed its hook cgroups when it stopped: {left:?}"
    );
}

/// The hook groups of the agent `pid` left in this process's cgroups (the
/// agent's, since the test bed starts it from here). Other tests' agents,
/// running at the same time in the same cgroups, have groups of their own
/// there: a group's name ends with `-<agent pid>-<n>`.
fn hook_groups_left(pid: u32) -> Vec<std::path::PathBuf> {
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let marker = format!("-{pid}-");
    own.lines()
        .filter_map(|l| l.splitn(3, ':').nth(2))
        .flat_map(|path| {
            ["memory", "cpuacct", "unified", "systemd", ""].map(|mount| {
                Path::new("/sys/fs/cgroup")
                    .join(mount)
                    .join(path.trim_start_matches('/'))
                    .join("codedeploy-hooks")
            })
        })
        .filter_map(|parent| std::fs::read_dir(parent).ok())
        .flat_map(|entries| entries.flatten().map(|e| e.path()))
        .filter(|group| {
            group.is_dir()
                && group
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.rsplit_once('-'))
                    .is_some_and(|(head, _)| format!("{head}-").ends_with(&marker))
        })
        .collect()
}
