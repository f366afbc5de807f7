//! Shared pieces of the end-to-end tests: the agent binary under test,
//! deadlines, appspec and hook-script builders, and small checks on files
//! and processes.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use codedeploy_e2e::emulator::CommandRecord;
use codedeploy_e2e::{Deployment, Outcome, TestBed};

/// The binary under test: this package's `codedeploy-agent`, unless
/// `CODEDEPLOY_E2E_AGENT` names another agent executable to hold to the
/// same behaviour.
pub fn agent_binary() -> String {
    std::env::var("CODEDEPLOY_E2E_AGENT")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_codedeploy-agent").to_string())
}

/// Upper bound for one whole deployment (7 commands at a 1 s poll interval
/// take well under this).
pub const DEPLOYMENT_DEADLINE: Duration = Duration::from_secs(90);

/// The environment a recording hook writes, in this order.
pub const HOOK_ENV: &str = "$LIFECYCLE_EVENT $DEPLOYMENT_ID $APPLICATION_NAME $DEPLOYMENT_GROUP_NAME $DEPLOYMENT_GROUP_ID $BUNDLE_BUCKET $BUNDLE_KEY $BUNDLE_VERSION $BUNDLE_ETAG";

/// A hook script that appends `<tag> <HOOK_ENV>` to `log` and says so on
/// stdout.
pub fn recording_hook(tag: &str, log: &Path) -> String {
    format!(
        "#!/bin/sh\n\
         echo \"{tag} {HOOK_ENV}\" >> '{}'\n\
         echo \"{tag}: $LIFECYCLE_EVENT hook ran for $DEPLOYMENT_ID\"\n",
        log.display()
    )
}

/// The line a recording hook of revision `tag` writes for `event` of
/// `deployment`.
pub fn expected_hook_line(tag: &str, event: &str, deployment: &Deployment) -> String {
    let r = &deployment.revision;
    format!(
        "{tag} {event} {} {} {} {} {} {} {} {}",
        deployment.deployment_id,
        deployment.application_name,
        deployment.group_name,
        deployment.group_id,
        r.bucket,
        r.key,
        r.version.as_deref().unwrap_or(""),
        r.etag.as_deref().unwrap_or("")
    )
}

/// One hook of an appspec.
pub struct Hook<'a> {
    pub event: &'a str,
    pub location: &'a str,
    pub timeout: Option<u32>,
}

pub fn hook<'a>(event: &'a str, location: &'a str) -> Hook<'a> {
    Hook {
        event,
        location,
        timeout: None,
    }
}

/// An appspec (version 0.0, linux) copying `source` to `destination`, with
/// one script per listed hook.
pub fn appspec(source: &str, destination: &Path, hooks: &[Hook<'_>]) -> String {
    let mut text = format!(
        "version: 0.0\nos: linux\nfiles:\n  - source: {source}\n    destination: {}\n",
        destination.display()
    );
    if !hooks.is_empty() {
        text.push_str("hooks:\n");
        for h in hooks {
            text.push_str(&format!("  {}:\n    - location: {}\n", h.event, h.location));
            if let Some(t) = h.timeout {
                text.push_str(&format!("      timeout: {t}\n"));
            }
        }
    }
    text
}

/// The lines of a text file (none when it does not exist).
pub fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .map(|t| t.lines().map(str::to_string).collect())
        .unwrap_or_default()
}

pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| format!("<cannot read {}: {e}>", path.display()))
}

/// `<root>/<group id>/<deployment id>`.
pub fn deployment_dir(bed: &TestBed, deployment: &Deployment) -> PathBuf {
    bed.root_dir()
        .join(&deployment.group_id)
        .join(&deployment.deployment_id)
}

/// Kills a process a test left behind (a hook's child, a started agent).
pub fn kill_pid(pid: u32) {
    let _ = std::process::Command::new("kill")
        .arg("-KILL")
        .arg(pid.to_string())
        .status();
}

/// Is the process alive (running, not a zombie)?
pub fn pid_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// Reads a pid written by a hook, waiting a little for the file.
pub fn read_pid(path: &Path, timeout: Duration) -> Option<u32> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(pid) = std::fs::read_to_string(path)
            .ok()
            .and_then(|t| t.trim().parse().ok())
        {
            return Some(pid);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits for the deployment to end; the outcome must be a success.
pub fn expect_success(bed: &TestBed, deployment: &Deployment) {
    let outcome = bed.wait_for_deployment_end(&deployment.deployment_id, DEPLOYMENT_DEADLINE);
    ensure!(
        bed,
        outcome.is_succeeded(),
        "deployment {} should succeed: {outcome}",
        deployment.deployment_id
    );
}

/// Waits for the deployment to end; it must fail at `command`. Returns the
/// failed command's record.
pub fn expect_failure_at(bed: &TestBed, deployment: &Deployment, command: &str) -> CommandRecord {
    let outcome = bed.wait_for_deployment_end(&deployment.deployment_id, DEPLOYMENT_DEADLINE);
    let failed = match &outcome {
        Outcome::Failed { command, .. } => command.clone(),
        other => panic!(
            "deployment {} should fail at {command}, but: {other}\n{}",
            deployment.deployment_id,
            bed.report()
        ),
    };
    ensure_eq!(
        bed,
        failed.command_name,
        command,
        "the deployment failed at the wrong command"
    );
    ensure_eq!(
        bed,
        failed.completion().map(|c| c.status.as_str()),
        Some("Failed"),
        "the failed command's completion"
    );
    failed
}

/// Every completed command of `deployment` went through the whole cycle, in
/// order: its specification fetched, then acknowledged, then completed once.
pub fn ensure_command_cycle(bed: &TestBed, deployment: &Deployment) {
    use codedeploy_e2e::emulator::Operation;
    let calls = bed.emulator.calls();
    let record = bed
        .emulator
        .deployment(&deployment.deployment_id)
        .expect("the deployment was added");
    let position = |op: Operation, key: &str, value: &str| {
        calls
            .iter()
            .position(|c| c.operation == Some(op) && c.status == 200 && c.request[key] == value)
    };
    for command in record.commands.iter().filter(|c| !c.completions.is_empty()) {
        let spec = position(
            Operation::GetDeploymentSpecification,
            "DeploymentExecutionId",
            &command.deployment_execution_id,
        );
        let ack = position(
            Operation::PutHostCommandAcknowledgement,
            "HostCommandIdentifier",
            &command.host_command_identifier,
        );
        let complete = position(
            Operation::PutHostCommandComplete,
            "HostCommandIdentifier",
            &command.host_command_identifier,
        );
        ensure!(
            bed,
            matches!((spec, ack, complete), (Some(s), Some(a), Some(c)) if s < a && a < c),
            "{}: GetDeploymentSpecification, then PutHostCommandAcknowledgement, then \
             PutHostCommandComplete (call positions {spec:?}, {ack:?}, {complete:?})",
            command.command_name
        );
        ensure_eq!(
            bed,
            command.completions.len(),
            1,
            "{} is completed exactly once",
            command.command_name
        );
    }
}

/// Writes a revision as a directory tree (modes and links as described).
pub fn write_tree(revision: &codedeploy_e2e::Revision, dir: &Path) {
    use codedeploy_e2e::bundle::Entry;
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).unwrap();
    for (path, entry) in revision.entries() {
        let target = dir.join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        match entry {
            Entry::File { contents, mode } => {
                std::fs::write(&target, contents).unwrap();
                std::fs::set_permissions(&target, std::fs::Permissions::from_mode(*mode)).unwrap();
            }
            Entry::Dir { mode } => {
                std::fs::create_dir_all(&target).unwrap();
                std::fs::set_permissions(&target, std::fs::Permissions::from_mode(*mode)).unwrap();
            }
            Entry::Symlink { target: link } => std::os::unix::fs::symlink(link, &target).unwrap(),
        }
    }
}

/// A revision of `files` one-byte files in folders of a thousand, whose
/// appspec installs nothing: its cost is all in unpacking (a few seconds for
/// 190,000 files), long enough to stop it midway.
pub fn many_files_revision(files: usize) -> codedeploy_e2e::Revision {
    (0..files).fold(
        codedeploy_e2e::Revision::new().file("appspec.yml", "version: 0.0\nos: linux\n"),
        |revision, i| revision.file(&format!("content/d{:03}/f{i:06}", i / 1000), "x"),
    )
}

/// A revision whose `deep/` folder nests `levels` folders, one in the other,
/// each an entry of its own, installed to `install`.
pub fn nested_revision(levels: usize, install: &Path) -> codedeploy_e2e::Revision {
    let appspec = format!(
        "version: 0.0\nos: linux\nfiles:\n  - source: deep\n    destination: {}\n",
        install.display()
    );
    let mut path = String::from("deep");
    let mut revision = codedeploy_e2e::Revision::new().file("appspec.yml", appspec);
    for _ in 0..levels {
        revision = revision.dir(&path, 0o755);
        path.push_str("/d");
    }
    revision
}

/// Waits up to `timeout` for `ready`, polling every 10 ms.
pub fn wait_until(timeout: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if ready() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    ready()
}

/// Sends SIGTERM to `child` and waits up to `timeout` for it to exit: how
/// long it took and its status, `None` (the child is then killed) when it
/// did not exit in time.
pub fn terminate(
    child: &mut std::process::Child,
    timeout: Duration,
) -> (Duration, Option<std::process::ExitStatus>) {
    let _ = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let started = Instant::now();
    let mut status = None;
    wait_until(timeout, || {
        status = child.try_wait().ok().flatten();
        status.is_some()
    });
    let took = started.elapsed();
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    (took, status)
}

/// `YYYY-MM-DDTHH:MM:SS LEVEL [<program>(<pid>)]: component: ...`, the agent
/// log's line layout: the component, when the line has that shape.
pub fn log_line_component<'a>(line: &'a str, program: &str, pid: u32) -> Option<&'a str> {
    let (timestamp, rest) = line.split_once(' ')?;
    let timestamp_ok = timestamp.len() == 19
        && timestamp.as_bytes()[10] == b'T'
        && timestamp
            .chars()
            .enumerate()
            .all(|(i, c)| matches!(i, 4 | 7 | 10 | 13 | 16) || c.is_ascii_digit());
    let (level, rest) = rest.split_once(' ')?;
    let known_level = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"].contains(&level);
    let rest = rest.strip_prefix(&format!("[{program}({pid})]: "))?;
    let (component, _) = rest.split_once(": ")?;
    let component_ok = !component.is_empty()
        && component
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_');
    (timestamp_ok && known_level && component_ok).then_some(component)
}
