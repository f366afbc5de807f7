//! Hooks under resource bounds, on this host's real cgroups (root and the
//! cpu, cpuacct, memory and pids controllers, as in CI), and the rlimit
//! fallback. A test skips, saying why, only when the host genuinely cannot
//! give it a writable controller. Each test makes its own parent group and
//! removes it.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::*;
use crate::config::{CpuPercent, HookBounds, Nice, Priority};
use crate::hooks::bounds::{detect, CgroupLayout, HOOKS_GROUP};

static NEXT: AtomicU64 = AtomicU64::new(1);

/// Bounds on this host's real cgroups, under a parent group of the test's
/// own (removed with the fixture's enforcer); `false` (printed) when the
/// host cannot.
fn on_real_cgroups(fixture: &mut Fixture, bounds: HookBounds) -> bool {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("not root: cgroups are not writable; skipping");
        return false;
    }
    let layout = detect(
        &fs::read_to_string("/proc/self/mountinfo").unwrap_or_default(),
        &fs::read_to_string("/proc/self/cgroup").unwrap_or_default(),
    );
    let group = format!(
        "{HOOKS_GROUP}-test-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let enforcer = Enforcer::with_layout(bounds, &layout, &group);
    if !enforcer.uses_cgroups_fully() {
        eprintln!(
            "the controllers for {bounds:?} are not mounted writable here ({layout:?}); skipping"
        );
        return false;
    }
    fixture.bounds = enforcer;
    true
}

fn bounds(cpu: Option<u64>, memory_mb: Option<u64>, processes: Option<u64>) -> HookBounds {
    HookBounds {
        cpu_percent: cpu.and_then(CpuPercent::new),
        memory_limit_mb: memory_mb,
        max_processes: processes,
        priority: Priority::default(),
    }
}

/// The agent's log lines while the guard lives (this thread only).
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// The tests here share the machine's real cgroup hierarchies and read the
/// agent's own log lines; one at a time keeps their groups and captures apart.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn capture_logs() -> (Captured, tracing::subscriber::DefaultGuard) {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    (captured, tracing::subscriber::set_default(subscriber))
}

/// A copy of `sleep` whose path carries a marker unique to this test, so
/// that its processes can be found (or shown gone) in /proc.
fn marked_sleep(fixture: &Fixture, name: &str) -> (PathBuf, String) {
    let marker = format!(
        "sleep-{name}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let path = fixture.archive.parent().unwrap().join(&marker);
    let sleep = ["/bin/sleep", "/usr/bin/sleep"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("coreutils sleep is installed");
    fs::copy(sleep, &path).unwrap();
    (path, marker)
}

/// Processes whose command line holds `marker`.
fn processes_with(marker: &str) -> Vec<Pid> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .map(Pid::from_raw)
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|cmdline| String::from_utf8_lossy(&cmdline).contains(marker))
                && !is_dead(*pid)
        })
        .collect()
}

#[tokio::test]
async fn a_cpu_bound_hook_gets_its_share_of_one_cpu() {
    let _serial = SERIAL.lock().await;
    // A hook that spins for 3 s of wall time gets its share of one CPU over
    // the time it ran, by the cgroup's own accounting, plus 5 % for period
    // boundaries. (The "20 % for 3 s, at most 0.3 CPU-seconds" cannot
    // both hold: 20 % of 3 s is 0.6; the 10 % row is the 0.3 one.)
    for percent in [10u64, 20] {
        let mut fixture = Fixture::new();
        if !on_real_cgroups(&mut fixture, bounds(Some(percent), None, None)) {
            return;
        }
        // Busy for 3 s of wall time; unbounded that is 3 CPU-seconds.
        fixture.script(
            "spin.sh",
            "sh -c 'while :; do :; done' &\nspin=$!\nsleep 3\nkill $spin",
            0o755,
        );
        let (logs, _guard) = capture_logs();
        let started = std::time::Instant::now();
        fixture.run(&[hook("spin.sh", 30)]).await.unwrap();
        let wall = started.elapsed().as_secs_f64();
        let logs = logs.text();
        let cpu_seconds: f64 = logs
            .split("cpu_seconds=")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no cgroup accounting in the log:\n{logs}"));
        let most = percent as f64 / 100.0 * wall * 1.05;
        eprintln!(
            "{percent} % of one CPU for {wall:.2} s of wall time: {cpu_seconds} CPU-seconds \
             by the cgroup's accounting (at most {most:.3})"
        );
        assert!(
            (0.02..=most).contains(&cpu_seconds),
            "at {percent} % for {wall:.2} s the hook used {cpu_seconds} CPU-seconds (at most {most:.3})"
        );
    }
}

#[tokio::test]
async fn a_hook_past_its_memory_bound_is_killed_and_reported_out_of_memory() {
    let _serial = SERIAL.lock().await;
    let mut fixture = Fixture::new();
    if !on_real_cgroups(&mut fixture, bounds(None, Some(64), None)) {
        return;
    }
    // tail keeps a line that never ends: 300 MiB of it.
    fixture.script(
        "hungry.sh",
        "echo allocating\nhead -c 300M /dev/zero | tail > /dev/null",
        0o755,
    );
    let failure = fixture.run(&[hook("hungry.sh", 60)]).await.unwrap_err();
    assert_eq!(failure.code, ErrorCode::ScriptFailed);
    assert_eq!(
        failure.message,
        "Script at specified location: hungry.sh was killed because it exceeded :hook_memory_limit_mb: of 64 MiB (out of memory; exit code 137)"
    );
    assert!(
        failure.log.contains("[stdout]allocating"),
        "{}",
        failure.log
    );
    assert_eq!(failure.code, ErrorCode::ScriptFailed);
}

#[tokio::test]
async fn a_fork_loop_stops_at_the_process_bound_and_the_script_fails_cleanly() {
    let _serial = SERIAL.lock().await;
    let mut fixture = Fixture::new();
    if !on_real_cgroups(&mut fixture, bounds(None, None, Some(16))) {
        return;
    }
    let (sleep, marker) = marked_sleep(&fixture, "forks");
    fixture.script(
        "forks.sh",
        &format!(
            "i=0\nwhile [ $i -lt 200 ]; do\n  '{}' 300 >/dev/null 2>&1 &\n  i=$((i+1))\ndone\necho all started",
            sleep.display()
        ),
        0o755,
    );
    let started = Instant::now();
    let failure = fixture.run(&[hook("forks.sh", 60)]).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(failure.code, ErrorCode::ScriptFailed);
    assert!(
        failure
            .message
            .starts_with("Script at specified location: forks.sh failed with exit code"),
        "{}",
        failure.message
    );
    assert!(!failure.log.contains("all started"), "{}", failure.log);
    // A failed hook's leftovers are killed with its group.
    assert_eq!(processes_with(&marker), []);
}

#[tokio::test]
async fn a_double_forked_sleeper_dies_with_its_timed_out_hook() {
    let _serial = SERIAL.lock().await;
    let mut fixture = Fixture::new();
    if !on_real_cgroups(&mut fixture, bounds(None, None, Some(64))) {
        return;
    }
    let (sleep, marker) = marked_sleep(&fixture, "escape");
    // A new session and a dead parent: out of the process group and
    // reparented, as a daemonizing program does.
    fixture.script(
        "escape.sh",
        &format!(
            "(setsid '{}' 300 >/dev/null 2>&1 &)\nsleep 300",
            sleep.display()
        ),
        0o755,
    );
    let failure = fixture.run(&[hook("escape.sh", 1)]).await.unwrap_err();
    assert_eq!(failure.code, ErrorCode::ScriptTimedOut);
    assert_eq!(processes_with(&marker), []);
}

/// With bounds or only tracked, what a successful hook leaves running is the
/// application: it keeps running, outside the hook's group.
#[tokio::test]
async fn what_a_successful_hook_leaves_running_keeps_running_outside_its_group() {
    let _serial = SERIAL.lock().await;
    for bounds in [bounds(None, Some(64), Some(64)), HookBounds::default()] {
        let mut fixture = Fixture::new();
        if !on_real_cgroups(&mut fixture, bounds) {
            return;
        }
        let (sleep, marker) = marked_sleep(&fixture, "app");
        fixture.script(
            "start.sh",
            &format!(
                "{}\necho started",
                escaping_sleep(Escape::NewSession, &sleep)
            ),
            0o755,
        );
        fixture.run(&[hook("start.sh", 30)]).await.unwrap();
        let left = started(&marker).await;
        assert_eq!(left.len(), 1, "the application keeps running ({bounds:?})");
        let cgroups = fs::read_to_string(format!("/proc/{}/cgroup", left[0])).unwrap();
        let _ = nix::sys::signal::kill(left[0], Signal::SIGKILL);
        assert!(
            !cgroups.contains(HOOKS_GROUP),
            "the application is still inside the hook's group ({bounds:?}):\n{cgroups}"
        );
    }
}

#[tokio::test]
async fn without_a_writable_cgroup_rlimits_and_nice_apply_and_one_warning_says_so() {
    let _serial = SERIAL.lock().await;
    let (logs, _guard) = capture_logs();
    let mut fixture = Fixture::new();
    let bounds = HookBounds {
        priority: Priority {
            nice: Nice::new(5),
            io: None,
        },
        ..bounds(Some(20), Some(256), Some(4096))
    };
    let layout = CgroupLayout {
        v1: vec![],
        v2: Some(PathBuf::from("/nonexistent/cgroup")),
        named: None,
    };
    fixture.bounds = Enforcer::with_layout(bounds, &layout, HOOKS_GROUP);
    fixture.script(
        "limits.sh",
        "echo \"vm=$(ulimit -v) procs=$(ulimit -p) nice=$(cut -d ' ' -f 19 /proc/self/stat)\"",
        0o755,
    );
    fixture
        .run(&[hook("limits.sh", 30), hook("limits.sh", 30)])
        .await
        .unwrap();
    let texts = scripts_log_texts(&fixture.scripts_log);
    let outputs: Vec<&String> = texts.iter().filter(|t| t.starts_with("[stdout]")).collect();
    assert_eq!(
        outputs, ["[stdout]vm=262144 procs=4096 nice=5"; 2],
        "{texts:?}"
    );
    let logs = logs.text();
    assert_eq!(
        logs.matches("hook resource bounds cannot use cgroups")
            .count(),
        1,
        "{logs}"
    );
    assert!(logs.contains("/nonexistent/cgroup"), "{logs}");
}

/// Starts `sleep` in the background the way a daemonizing hook does: out of
/// the script's process group, its output closed so the hook can end.
fn escaping_sleep(how: Escape, sleep: &Path) -> String {
    let sleep = sleep.display();
    match how {
        Escape::NewSession => format!("(setsid '{sleep}' 300 >/dev/null 2>&1 &)"),
        Escape::NewProcessGroup => {
            format!("perl -e 'setpgrp(0, 0); exec @ARGV' '{sleep}' 300 >/dev/null 2>&1 &")
        }
        Escape::None => format!("'{sleep}' 300 >/dev/null 2>&1 &"),
    }
}

#[derive(Debug, Clone, Copy)]
enum Escape {
    NewSession,
    NewProcessGroup,
    None,
}

/// Waits for a marked process to show up (the hook may end before its
/// forked child has exec'd the marked program).
async fn started(marker: &str) -> Vec<Pid> {
    for _ in 0..50 {
        let found = processes_with(marker);
        if !found.is_empty() {
            return found;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    Vec::new()
}

#[tokio::test]
async fn without_bounds_a_hook_that_times_out_takes_every_descendant_with_it() {
    let _serial = SERIAL.lock().await;
    for escape in [Escape::NewSession, Escape::NewProcessGroup] {
        let mut fixture = Fixture::new();
        if !on_real_cgroups(&mut fixture, HookBounds::default()) {
            return;
        }
        let (sleep, marker) = marked_sleep(&fixture, "timeout");
        fixture.script(
            "escape.sh",
            &format!("{}\nsleep 300", escaping_sleep(escape, &sleep)),
            0o755,
        );
        let failure = fixture.run(&[hook("escape.sh", 2)]).await.unwrap_err();
        assert_eq!(failure.code, ErrorCode::ScriptTimedOut, "{escape:?}");
        assert_eq!(
            processes_with(&marker),
            [],
            "{escape:?} survived the timeout"
        );
    }
}

#[tokio::test]
async fn without_bounds_a_daemon_started_by_a_failing_hook_is_killed() {
    let _serial = SERIAL.lock().await;
    for escape in [Escape::NewSession, Escape::NewProcessGroup, Escape::None] {
        let mut fixture = Fixture::new();
        if !on_real_cgroups(&mut fixture, HookBounds::default()) {
            return;
        }
        let (sleep, marker) = marked_sleep(&fixture, "failing");
        fixture.script(
            "fail.sh",
            &format!(
                "{}\nwhile ! pgrep -f '{marker}' >/dev/null; do sleep 0.05; done\nexit 3",
                escaping_sleep(escape, &sleep)
            ),
            0o755,
        );
        let failure = fixture.run(&[hook("fail.sh", 30)]).await.unwrap_err();
        assert_eq!(failure.code, ErrorCode::ScriptFailed, "{escape:?}");
        assert_eq!(
            processes_with(&marker),
            [],
            "{escape:?} survived the failed hook"
        );
    }
}

/// Where no cgroup can be made, the README promises exactly this: the
/// script's process group is stopped on a timeout and on a failed exit, a
/// process that left it is not.
#[tokio::test]
async fn without_a_cgroup_the_process_group_is_stopped_and_what_left_it_is_not() {
    let _serial = SERIAL.lock().await;
    let (logs, _guard) = capture_logs();
    let mut fixture = Fixture::new();
    let layout = CgroupLayout {
        v1: vec![],
        v2: Some(PathBuf::from("/nonexistent/cgroup")),
        named: None,
    };
    fixture.bounds = Enforcer::with_layout(HookBounds::default(), &layout, HOOKS_GROUP);
    let (sleep, in_group) = marked_sleep(&fixture, "in-group");
    let (escaper, escaped) = marked_sleep(&fixture, "escaped");
    fixture.script(
        "fail.sh",
        &format!(
            "{}\n{}\nwhile ! pgrep -f '{escaped}' >/dev/null || ! pgrep -f '{in_group}' >/dev/null; do sleep 0.05; done\nexit 3",
            escaping_sleep(Escape::None, &sleep),
            escaping_sleep(Escape::NewSession, &escaper),
        ),
        0o755,
    );
    let failure = fixture.run(&[hook("fail.sh", 30)]).await.unwrap_err();
    assert_eq!(failure.code, ErrorCode::ScriptFailed);
    let survivors = processes_with(&escaped);
    for pid in &survivors {
        let _ = nix::sys::signal::kill(*pid, Signal::SIGKILL);
    }
    assert!(
        wait_gone(&in_group).await,
        "the script's process group outlived its failure"
    );
    assert_eq!(survivors.len(), 1, "the setsid process is out of reach");
    let logs = logs.text();
    assert_eq!(
        logs.matches("hook scripts cannot be tracked in cgroups")
            .count(),
        1,
        "{logs}"
    );
    assert!(logs.contains("setsid"), "{logs}");
}

async fn wait_gone(marker: &str) -> bool {
    for _ in 0..50 {
        if processes_with(marker).is_empty() {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    false
}
