//! Real scripts in temporary revisions, run by the real runner.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use super::outcome::{Exit, Stream};
use super::spawn::command_line;
use super::watch::MAX_LINE_BYTES;
use super::*;
use crate::hooks::bounds::Leftovers;
use crate::shutdown::{self, ShutdownTrigger};

const GRACE: Duration = Duration::from_millis(500);

struct Fixture {
    _tmp: tempfile::TempDir,
    archive: PathBuf,
    scripts_log: PathBuf,
    deployments_log: PathBuf,
    pid_file: PathBuf,
    env: Vec<(String, String)>,
    bounds: Enforcer,
}

impl Fixture {
    fn new() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(tmp.path()).unwrap();
        let archive = root.join("deployment-archive");
        fs::create_dir(&archive).unwrap();
        let pid_file = root.join("background.pid");
        Fixture {
            archive,
            scripts_log: root.join("logs/scripts.log"),
            deployments_log: root.join("deployment-logs/codedeploy-agent-deployments.log"),
            env: vec![
                ("LIFECYCLE_EVENT".into(), "BeforeInstall".into()),
                ("DEPLOYMENT_ID".into(), "d-TEST".into()),
                ("PID_FILE".into(), pid_file.to_str().unwrap().into()),
            ],
            pid_file,
            bounds: Enforcer::disabled(),
            _tmp: tmp,
        }
    }

    fn script(&self, location: &str, body: &str, mode: u32) {
        let path = self.archive.join(location);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
    }

    async fn run(&self, scripts: &[HookScript]) -> Result<(), ScriptFailure> {
        let (_trigger, shutdown) = shutdown::channel();
        self.run_with(scripts, shutdown).await
    }

    async fn run_with(
        &self,
        scripts: &[HookScript],
        shutdown: Shutdown,
    ) -> Result<(), ScriptFailure> {
        let run = EventRun {
            event: &LifecycleEvent::BeforeInstall,
            scripts,
            archive_dir: &self.archive,
            env: &self.env,
            scripts_log: &self.scripts_log,
            deployments_log: Some(&self.deployments_log),
            deployment_id: "d-TEST",
            policy: &HookPolicy::default(),
            bounds: &self.bounds,
        };
        run_event_with_grace(&run, shutdown, GRACE).await
    }

    fn background_pid(&self) -> Pid {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Ok(text) = fs::read_to_string(&self.pid_file) {
                if let Ok(pid) = text.trim().parse() {
                    return Pid::from_raw(pid);
                }
            }
            assert!(
                Instant::now() < deadline,
                "the script never wrote its background pid"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn hook(location: &str, timeout_seconds: u64) -> HookScript {
    HookScript {
        location: location.into(),
        timeout: Duration::from_secs(timeout_seconds),
        runas: None,
        sudo: false,
    }
}

/// Gone, or a zombie nobody reaps (containers' init often does not).
fn is_dead(pid: Pid) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
    }
}

fn wait_until_dead(pid: Pid) -> bool {
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        if is_dead(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// scripts.log lines without their timestamps, checking the timestamp format.
fn scripts_log_texts(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|line| {
            let (stamp, text) = line.split_at(19);
            chrono::NaiveDateTime::parse_from_str(stamp, "%Y-%m-%d %H:%M:%S")
                .unwrap_or_else(|e| panic!("{line}: {e}"));
            text.strip_prefix(' ')
                .unwrap_or_else(|| panic!("{line}"))
                .to_string()
        })
        .collect()
}

#[tokio::test]
async fn a_successful_script_sees_the_environment_and_is_logged() {
    // Set in the agent's own environment, but not by this deployment: removed.
    std::env::set_var("BUNDLE_VERSION", "inherited-from-the-agent");
    let fixture = Fixture::new();
    fixture.script(
        "scripts/ok.sh",
        "echo \"event=$LIFECYCLE_EVENT id=$DEPLOYMENT_ID version=${BUNDLE_VERSION-unset}\"\necho oops >&2\nprintf '\\377\\033[31mred\\033[0m\\n'\npwd",
        0o755,
    );
    fixture.run(&[hook("scripts/ok.sh", 30)]).await.unwrap();

    let texts = scripts_log_texts(&fixture.scripts_log);
    assert_eq!(
        texts[..2],
        ["LifecycleEvent - BeforeInstall", "Script - scripts/ok.sh"]
    );
    let mut output = texts[2..].to_vec();
    output.sort();
    let cwd = std::env::current_dir().unwrap();
    let mut expected = vec![
        "[stdout]event=BeforeInstall id=d-TEST version=unset".to_string(),
        "[stderr]oops".to_string(),
        "[stdout]\u{fffd}red".to_string(),
        format!("[stdout]{}", cwd.display()),
    ];
    expected.sort();
    assert_eq!(output, expected);

    let deployments = fs::read_to_string(&fixture.deployments_log).unwrap();
    let first = deployments.lines().next().unwrap();
    assert!(
        first.starts_with('[') && first.ends_with("] [d-TEST]LifecycleEvent - BeforeInstall"),
        "{first}"
    );
    chrono::NaiveDateTime::parse_from_str(&first[1..24], "%Y-%m-%d %H:%M:%S%.3f").unwrap();
    assert_eq!(deployments.lines().count(), texts.len());
}

#[tokio::test]
async fn a_failing_script_stops_the_event_with_code_4_and_the_log_tail() {
    let fixture = Fixture::new();
    fixture.script("fail.sh", "echo before failing\nexit 3", 0o755);
    fixture.script("never.sh", "touch \"$PID_FILE\"", 0o755);
    let failure = fixture
        .run(&[hook("fail.sh", 30), hook("never.sh", 30)])
        .await
        .unwrap_err();
    assert_eq!(failure.code, ErrorCode::ScriptFailed);
    assert_eq!(failure.script_name, "fail.sh");
    assert_eq!(
        failure.message,
        "Script at specified location: fail.sh failed with exit code 3"
    );
    assert_eq!(
        failure.log,
        "LifecycleEvent - BeforeInstall\nScript - fail.sh\n[stdout]before failing\n"
    );
    assert!(!fixture.pid_file.exists(), "the second script must not run");
}

#[tokio::test]
async fn a_timed_out_script_and_everything_it_started_are_killed() {
    let fixture = Fixture::new();
    fixture.script(
        "slow.sh",
        "sleep 300 &\necho $! > \"$PID_FILE\"\nsleep 300",
        0o755,
    );
    let started = Instant::now();
    let failure = fixture.run(&[hook("slow.sh", 1)]).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(failure.code, ErrorCode::ScriptTimedOut);
    assert_eq!(
        failure.message,
        "Script at specified location: slow.sh failed to complete in 1 seconds"
    );
    assert!(
        wait_until_dead(fixture.background_pid()),
        "the background child survived"
    );
}

#[tokio::test]
async fn a_script_ignoring_sigterm_is_killed_after_the_grace_period() {
    let fixture = Fixture::new();
    fixture.script(
        "stubborn.sh",
        "trap '' TERM\necho $$ > \"$PID_FILE\"\nwhile true; do sleep 0.1; done",
        0o755,
    );
    let started = Instant::now();
    let failure = fixture.run(&[hook("stubborn.sh", 1)]).await.unwrap_err();
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_secs(1) + GRACE && elapsed < Duration::from_secs(5),
        "{elapsed:?}"
    );
    assert_eq!(failure.code, ErrorCode::ScriptTimedOut);
    assert!(wait_until_dead(fixture.background_pid()));
}

#[tokio::test]
async fn output_left_open_by_a_leftover_child_is_code_6() {
    let fixture = Fixture::new();
    fixture.script(
        "daemon.sh",
        "sleep 300 &\necho $! > \"$PID_FILE\"\necho started",
        0o755,
    );
    let failure = fixture.run(&[hook("daemon.sh", 1)]).await.unwrap_err();
    assert_eq!(failure.code, ErrorCode::OutputsLeftOpen);
    assert_eq!(
        failure.message,
        "Script at specified location: daemon.sh failed to close STDOUT"
    );
    assert!(
        failure.log.ends_with("[stdout]started\n"),
        "{}",
        failure.log
    );
    // The leftover is the application's business: not killed.
    let pid = fixture.background_pid();
    assert!(!is_dead(pid));
    let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
}

#[tokio::test]
async fn a_missing_script_is_code_1_with_its_absolute_path() {
    let fixture = Fixture::new();
    let failure = fixture
        .run(&[hook("scripts/nope.sh", 30)])
        .await
        .unwrap_err();
    assert_eq!(failure.code, ErrorCode::ScriptMissing);
    assert_eq!(
        failure.message,
        format!(
            "Script does not exist at specified location: {}/scripts/nope.sh",
            fixture.archive.display()
        )
    );
    assert_eq!(failure.log, "LifecycleEvent - BeforeInstall\n");
}

#[tokio::test]
async fn a_script_without_execute_permission_is_made_executable() {
    let fixture = Fixture::new();
    fixture.script("plain.sh", "echo ran", 0o644);
    fixture.run(&[hook("plain.sh", 30)]).await.unwrap();
    let mode = fs::metadata(fixture.archive.join("plain.sh"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o111, 0o111);
}

#[tokio::test]
async fn a_script_killed_by_a_signal_names_it() {
    let fixture = Fixture::new();
    fixture.script("suicide.sh", "kill -9 $$", 0o755);
    let failure = fixture.run(&[hook("suicide.sh", 30)]).await.unwrap_err();
    assert_eq!(failure.code, ErrorCode::ScriptFailed);
    assert_eq!(
        failure.message,
        "Script at specified location: suicide.sh failed: killed by signal SIGKILL"
    );
}

#[tokio::test]
async fn a_script_reached_through_a_link_out_of_the_revision_is_refused() {
    let fixture = Fixture::new();
    symlink("/bin/true", fixture.archive.join("escape.sh")).unwrap();
    let failure = fixture.run(&[hook("escape.sh", 30)]).await.unwrap_err();
    assert_eq!(failure.code, ErrorCode::UnknownError);
    assert!(
        failure.message.contains("outside the revision directory"),
        "{}",
        failure.message
    );

    let failure = fixture.run(&[hook("../outside.sh", 30)]).await.unwrap_err();
    assert_eq!(failure.code, ErrorCode::UnknownError);
}

#[tokio::test]
async fn shutdown_stops_a_running_script_at_once() {
    let fixture = Fixture::new();
    fixture.script("long.sh", "echo $$ > \"$PID_FILE\"\nsleep 300", 0o755);
    let (trigger, shutdown): (ShutdownTrigger, Shutdown) = shutdown::channel();
    let stopper = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        trigger.trigger();
    };
    let started = Instant::now();
    let scripts = [hook("long.sh", 300)];
    let (result, ()) = tokio::join!(fixture.run_with(&scripts, shutdown), stopper);
    let failure = result.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(failure.code, ErrorCode::ScriptFailed);
    assert!(
        failure
            .message
            .ends_with("was stopped because the CodeDeploy agent is shutting down"),
        "{}",
        failure.message
    );
    assert!(wait_until_dead(fixture.background_pid()));
}

#[tokio::test]
async fn an_event_without_scripts_writes_nothing() {
    let fixture = Fixture::new();
    fixture.run(&[]).await.unwrap();
    assert!(!fixture.scripts_log.exists());
}

#[tokio::test]
async fn very_long_lines_are_split() {
    let fixture = Fixture::new();
    fixture.script(
        "long-line.sh",
        "head -c 40000 /dev/zero | tr '\\0' x",
        0o755,
    );
    fixture.run(&[hook("long-line.sh", 30)]).await.unwrap();
    let texts = scripts_log_texts(&fixture.scripts_log);
    let lengths: Vec<usize> = texts[2..]
        .iter()
        .map(|t| t.len() - "[stdout]".len())
        .collect();
    assert_eq!(
        lengths,
        [MAX_LINE_BYTES, MAX_LINE_BYTES, 40000 - 2 * MAX_LINE_BYTES]
    );
}

#[tokio::test]
async fn runas_goes_through_su_with_the_path_quoted() {
    if !Path::new("/usr/bin/su").exists() && !Path::new("/bin/su").exists() {
        eprintln!("su is not installed: skipping");
        return;
    }
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("not root: skipping");
        return;
    }
    let fixture = Fixture::new();
    fixture.script(
        "dir with space/it's.sh",
        "echo \"as $(id -un) event=$LIFECYCLE_EVENT\"",
        0o755,
    );
    let mut script = hook("dir with space/it's.sh", 30);
    script.runas = Some("root".into());
    fixture.run(&[script]).await.unwrap();
    let texts = scripts_log_texts(&fixture.scripts_log);
    assert_eq!(texts.last().unwrap(), "[stdout]as root event=BeforeInstall");

    let mut failing = hook("fail.sh", 30);
    fixture.script("fail.sh", "exit 2", 0o755);
    failing.runas = Some("root".into());
    let failure = fixture.run(&[failing]).await.unwrap_err();
    assert_eq!(
        failure.message,
        "Script at specified location: fail.sh run as user root failed with exit code 2"
    );
}

#[test]
fn command_lines_follow_runas_and_sudo() {
    let path = Path::new("/a/it's.sh");
    let cases: &[(Option<&str>, bool, &str)] = &[
        (None, false, "/a/it's.sh"),
        (None, true, "sudo -E /a/it's.sh"),
        (Some("deploy"), false, "su deploy -c '/a/it'\\''s.sh'"),
        (
            Some("deploy"),
            true,
            "sudo -E su deploy -c '/a/it'\\''s.sh'",
        ),
    ];
    for (runas, sudo, expected) in cases {
        let mut script = hook("it's.sh", 1);
        script.runas = runas.map(str::to_string);
        script.sudo = *sudo;
        let (program, args) = command_line(path, &script);
        let line: Vec<String> = std::iter::once(program)
            .chain(args)
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(line.join(" "), *expected);
    }
}

/// A script, how its run ended, and the code and message the service is told
/// (`None`: success).
type Told<'a> = (&'a HookScript, Outcome, Option<(ErrorCode, &'a str)>);

#[test]
fn each_outcome_is_told_in_the_official_agents_words() {
    let plain = hook("scripts/run.sh", 30);
    let as_deploy = HookScript {
        runas: Some("deploy".into()),
        ..hook("scripts/run.sh", 30)
    };
    let archive = "/var/deploy/d-TEST/deployment-archive";
    let outside = hook("../outside.sh", 30);
    let enoent = || std::io::Error::from_raw_os_error(libc::ENOENT);
    let cases: [Told; 18] = [
        (&plain, Outcome::Exited(Exit::Code(0)), None),
        (
            &plain,
            Outcome::Exited(Exit::Code(3)),
            Some((ErrorCode::ScriptFailed, "Script at specified location: scripts/run.sh failed with exit code 3")),
        ),
        (
            &as_deploy,
            Outcome::Exited(Exit::Code(7)),
            Some((ErrorCode::ScriptFailed, "Script at specified location: scripts/run.sh run as user deploy failed with exit code 7")),
        ),
        (
            &plain,
            Outcome::Exited(Exit::Signal(libc::SIGKILL)),
            Some((ErrorCode::ScriptFailed, "Script at specified location: scripts/run.sh failed: killed by signal SIGKILL")),
        ),
        (
            &plain,
            Outcome::Exited(Exit::Signal(200)),
            Some((ErrorCode::ScriptFailed, "Script at specified location: scripts/run.sh failed: killed by signal signal 200")),
        ),
        (
            &plain,
            Outcome::Exited(Exit::Unknown),
            Some((ErrorCode::ScriptFailed, "Script at specified location: scripts/run.sh failed with an unknown exit status")),
        ),
        (
            &plain,
            Outcome::OutOfMemory { exit: Exit::Code(137), limit_mb: 64 },
            Some((ErrorCode::ScriptFailed, "Script at specified location: scripts/run.sh was killed because it exceeded :hook_memory_limit_mb: of 64 MiB (out of memory; exit code 137)")),
        ),
        (
            &as_deploy,
            Outcome::OutOfMemory { exit: Exit::Signal(libc::SIGKILL), limit_mb: 8 },
            Some((ErrorCode::ScriptFailed, "Script at specified location: scripts/run.sh run as user deploy was killed because it exceeded :hook_memory_limit_mb: of 8 MiB (out of memory; killed by signal SIGKILL)")),
        ),
        (
            &as_deploy,
            Outcome::TimedOut,
            Some((ErrorCode::ScriptTimedOut, "Script at specified location: scripts/run.sh failed to complete in 30 seconds")),
        ),
        (
            &plain,
            Outcome::LeftOpen(Stream::Stdout),
            Some((ErrorCode::OutputsLeftOpen, "Script at specified location: scripts/run.sh failed to close STDOUT")),
        ),
        (
            &plain,
            Outcome::LeftOpen(Stream::Stderr),
            Some((ErrorCode::OutputsLeftOpen, "Script at specified location: scripts/run.sh failed to close STDERR")),
        ),
        (
            &as_deploy,
            Outcome::Stopped,
            Some((ErrorCode::ScriptFailed, "Script at specified location: scripts/run.sh run as user deploy was stopped because the CodeDeploy agent is shutting down")),
        ),
        (
            &plain,
            Outcome::CouldNotStart(enoent()),
            Some((ErrorCode::ScriptFailed, "Script at specified location: scripts/run.sh failed with error NotFound with message No such file or directory (os error 2)")),
        ),
        (
            &plain,
            Outcome::WaitFailed(std::io::Error::from_raw_os_error(libc::EINTR)),
            Some((ErrorCode::ScriptFailed, "Script at specified location: scripts/run.sh failed with error Interrupted with message Interrupted system call (os error 4)")),
        ),
        (
            &plain,
            Outcome::Missing { path: Path::new(archive).join("scripts/run.sh") },
            Some((ErrorCode::ScriptMissing, "Script does not exist at specified location: /var/deploy/d-TEST/deployment-archive/scripts/run.sh")),
        ),
        (
            &plain,
            Outcome::NotExecutable,
            Some((ErrorCode::ScriptNotExecutable, "Unable to set script at specified location: scripts/run.sh as executable")),
        ),
        (
            &plain,
            Outcome::ResolvesOutside { real: "/bin/true".into(), real_archive: archive.into() },
            Some((ErrorCode::UnknownError, "Script at specified location: scripts/run.sh resolves to /bin/true, outside the revision directory /var/deploy/d-TEST/deployment-archive; hooks run only scripts inside the revision")),
        ),
        (
            &outside,
            Outcome::LeavesRevision {
                archive_dir: archive.into(),
            },
            Some((ErrorCode::UnknownError, "Script location ../outside.sh leaves the revision directory /var/deploy/d-TEST/deployment-archive; hooks run only scripts inside the revision")),
        ),
    ];
    for (script, outcome, expected) in cases {
        let told = failure(script, &outcome).map(|f| (f.code, f.message));
        let expected = expected.map(|(code, message)| (code, message.to_string()));
        assert_eq!(told, expected, "{outcome:?}");
    }
}

#[test]
fn only_the_agents_own_kills_carry_a_kill_reason() {
    let script = hook("scripts/run.sh", 30);
    let cases = [
        (Outcome::TimedOut, Some(KillReason::Timeout)),
        (
            Outcome::OutOfMemory {
                exit: Exit::Signal(9),
                limit_mb: 64,
            },
            Some(KillReason::MemoryBound),
        ),
        (Outcome::Stopped, Some(KillReason::Shutdown)),
        (Outcome::Exited(Exit::Code(1)), None),
        (Outcome::Exited(Exit::Signal(9)), None),
        (Outcome::LeftOpen(Stream::Stdout), None),
    ];
    for (outcome, reason) in cases {
        let killed = failure(&script, &outcome).and_then(|f| f.killed);
        assert_eq!(killed, reason, "{outcome:?}");
    }
}

#[test]
fn a_failed_exit_under_the_oom_killer_is_out_of_memory_and_leftovers_follow_the_outcome() {
    let cases: [(Outcome, u64, &str, Leftovers); 5] = [
        (
            Outcome::Exited(Exit::Code(0)),
            2,
            "Exited(Code(0))",
            Leftovers::Release,
        ),
        (
            Outcome::Exited(Exit::Code(137)),
            0,
            "Exited(Code(137))",
            Leftovers::Kill,
        ),
        (
            Outcome::Exited(Exit::Code(137)),
            1,
            "OutOfMemory { exit: Code(137), limit_mb: 64 }",
            Leftovers::Kill,
        ),
        (
            Outcome::LeftOpen(Stream::Stdout),
            1,
            "LeftOpen(Stdout)",
            Leftovers::Release,
        ),
        (Outcome::TimedOut, 1, "TimedOut", Leftovers::Kill),
    ];
    for (outcome, oom_kills, expected, leftovers) in cases {
        assert_eq!(outcome.leftovers(), leftovers, "{outcome:?}");
        let amended = outcome.with_oom_kills(oom_kills, Some(64));
        assert_eq!(format!("{amended:?}"), expected);
    }
}

#[tokio::test]
async fn a_script_without_a_shebang_line_runs_under_the_shell_like_the_official_agent() {
    let f = Fixture::new();
    let path = f.archive.join("scripts/plain.sh");
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, "echo \"no shebang in $LIFECYCLE_EVENT\"\n").unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    f.run(&[hook("scripts/plain.sh", 10)]).await.unwrap();
    let lines = scripts_log_texts(&f.scripts_log);
    assert!(
        lines
            .iter()
            .any(|l| l == "[stdout]no shebang in BeforeInstall"),
        "{lines:?}"
    );
}

mod bounded;
