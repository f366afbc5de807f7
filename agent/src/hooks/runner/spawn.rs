//! Starting a hook script's process: the command line (the path itself, or
//! through `sudo` / `su` for `runas`), the environment it gets, its own
//! process group with stdin closed and both outputs piped, and the bounds'
//! half that runs between fork and exec (joining its cgroup, priorities,
//! rlimits). Never hands a path to a shell unquoted.

// Unsafe by necessity: the pre_exec hooks that place a script in its group, cgroup and bounds between fork and exec. Each block says why it is sound.
#![allow(unsafe_code)]

use std::ffi::OsString;
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Stdio;

use nix::errno::Errno;

use super::EventRun;
use crate::appspec::HookScript;
use crate::hooks::bounds::Confinement;
use crate::hooks::environment::variables_to_remove;
use crate::hooks::policy::agent_user;
use crate::hooks::script_log::strip_controls;

/// The audit line: who runs what, as whom, for which deployment.
pub(super) fn log_start(run: &EventRun<'_>, script: &HookScript, path: &Path) {
    tracing::info!(
        "hook start: deployment {} event {} script {} (location {}) agent user {} runas {} sudo {} timeout {} s",
        run.deployment_id,
        run.event,
        path.display(),
        strip_controls(&script.location),
        agent_user(),
        script.runas.as_deref().map_or("-".into(), strip_controls),
        script.sudo,
        script.timeout.as_secs()
    );
}

/// Spawns the script at `path` (already located and executable).
pub(super) fn start(
    run: &EventRun<'_>,
    script: &HookScript,
    path: &Path,
    confinement: &Confinement,
) -> io::Result<tokio::process::Child> {
    let (program, args) = command_line(path, script);
    // The error of a missing `sudo` or `su` must not read as if the script
    // itself were missing.
    let through = (program != path.as_os_str()).then(|| program.clone());
    let started = match spawn(run, confinement, program, args) {
        // A script without a `#!` line: the official agent hands the path to a
        // shell, which runs such a file as a shell script. Do the same.
        Err(e)
            if e.raw_os_error() == Some(Errno::ENOEXEC as i32)
                && script.runas.is_none()
                && !script.sudo =>
        {
            spawn(
                run,
                confinement,
                OsString::from("/bin/sh"),
                vec![path.as_os_str().to_owned()],
            )
        }
        other => other,
    };
    started.map_err(|e| match through {
        Some(program) => io::Error::new(
            e.kind(),
            format!("cannot start {}: {e}", program.to_string_lossy()),
        ),
        None => e,
    })
}

fn spawn(
    run: &EventRun<'_>,
    confinement: &Confinement,
    program: OsString,
    args: Vec<OsString>,
) -> io::Result<tokio::process::Child> {
    let mut command = std::process::Command::new(program);
    command
        .args(args)
        .envs(run.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so that a timeout can reach everything it started.
        .process_group(0);
    let inherited = std::env::vars_os().map(|(name, _)| name);
    for name in variables_to_remove(run.env, &run.policy.env, inherited) {
        command.env_remove(name);
    }
    if let Some(bounds) = confinement.pre_exec() {
        // SAFETY: `apply_in_child` makes only async-signal-safe system
        // calls on values prepared before the fork, and the descriptors it
        // writes to stay open until `confinement` is dropped, after spawn.
        unsafe {
            command.pre_exec(move || bounds.apply_in_child());
        }
    }
    if let Some(limit) = run.policy.core_limit {
        // SAFETY: setrlimit is an async-signal-safe system call on a
        // value copied before the fork. The hook gets back the core
        // limit the agent started with (see `core_dumps`).
        unsafe {
            command.pre_exec(move || crate::core_dumps::set_core_soft_limit(limit));
        }
    }
    tokio::process::Command::from(command).spawn()
}

/// The program and arguments for a script: the path itself; `sudo -E <path>`;
/// `su <user> -c '<path>'` or `sudo -E su <user> -c '<path>'` (the user's
/// shell reads the path, so it is quoted for it). `-E`: sudo's default
/// `env_reset` would otherwise drop the deployment's variables
/// (`LIFECYCLE_EVENT`, `DEPLOYMENT_ID`, ...) that every hook gets.
pub(crate) fn command_line(path: &Path, script: &HookScript) -> (OsString, Vec<OsString>) {
    let su_args = |user: &str| vec![OsString::from(user), "-c".into(), shell_quoted(path)];
    let sudo = |rest: Vec<OsString>| ("sudo".into(), [vec!["-E".into()], rest].concat());
    match (&script.runas, script.sudo) {
        (Some(user), false) => ("su".into(), su_args(user)),
        (Some(user), true) => sudo([vec!["su".into()], su_args(user)].concat()),
        (None, true) => sudo(vec![path.into()]),
        (None, false) => (path.into(), Vec::new()),
    }
}

/// `'...'` with embedded single quotes as `'\''`: one word for any POSIX shell.
fn shell_quoted(path: &Path) -> OsString {
    let mut quoted = vec![b'\''];
    for byte in path.as_os_str().as_bytes() {
        if *byte == b'\'' {
            quoted.extend_from_slice(b"'\\''");
        } else {
            quoted.push(*byte);
        }
    }
    quoted.push(b'\'');
    OsString::from_vec(quoted)
}
