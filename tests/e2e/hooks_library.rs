//! The ready-made hook scripts in `hooks/`, run for real with /bin/sh:
//! waiting for an HTTP service on loopback (through `codedeploy-agent health`,
//! curl and wget), driving a systemd unit (through a fake `systemctl` on PATH:
//! PID 1 here is not systemd, so the real one cannot start units), draining
//! the connections to a port (counted with `ss` and from /proc/net/tcp), and
//! the disk-space check.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use codedeploy_e2e::http_target::{Behavior, HttpTarget};

use crate::support::agent_binary;

/// A hook never takes longer than this in these tests.
const HOOK_DEADLINE: Duration = Duration::from_secs(30);

fn hook_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../hooks")
        .join(name)
}

struct HookRun {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    elapsed: Duration,
}

impl HookRun {
    fn describe(&self) -> String {
        format!(
            "exit {:?} after {:?}\n--- stdout ---\n{}--- stderr ---\n{}",
            self.code, self.elapsed, self.stdout, self.stderr
        )
    }
}

/// Starts `hooks/<name> ARGS` with extra environment; output goes to files
/// in `dir`.
fn spawn_hook(dir: &Path, name: &str, args: &[&str], env: &[(String, String)]) -> (Child, Instant) {
    let mut command = Command::new(hook_path(name));
    command
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(dir.join(format!("{name}.stdout"))).unwrap())
        .stderr(std::fs::File::create(dir.join(format!("{name}.stderr"))).unwrap());
    for (key, value) in env {
        command.env(key, value);
    }
    (command.spawn().expect("the hook starts"), Instant::now())
}

/// Waits for a hook started by [`spawn_hook`], killing it at the deadline.
fn finish_hook(dir: &Path, name: &str, mut child: Child, started: Instant) -> HookRun {
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if started.elapsed() > HOOK_DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let run = HookRun {
        code,
        stdout: std::fs::read_to_string(dir.join(format!("{name}.stdout"))).unwrap_or_default(),
        stderr: std::fs::read_to_string(dir.join(format!("{name}.stderr"))).unwrap_or_default(),
        elapsed: started.elapsed(),
    };
    assert!(
        code.is_some(),
        "{name} did not finish in time\n{}",
        run.describe()
    );
    run
}

fn run_hook(dir: &Path, name: &str, args: &[&str], env: &[(String, String)]) -> HookRun {
    let (child, started) = spawn_hook(dir, name, args, env);
    finish_hook(dir, name, child, started)
}

fn system_path() -> String {
    std::env::var("PATH").unwrap_or_else(|_| "/usr/sbin:/usr/bin:/sbin:/bin".to_string())
}

/// PATH with a directory holding `codedeploy-agent` (the binary under test) first.
fn path_with_agent(dir: &Path) -> String {
    let bin = dir.join("agent-bin");
    std::fs::create_dir_all(&bin).unwrap();
    let link = bin.join("codedeploy-agent");
    if !link.exists() {
        std::os::unix::fs::symlink(agent_binary(), &link).unwrap();
    }
    format!("{}:{}", bin.display(), system_path())
}

/// Environment variables for a hook.
type Env = Vec<(String, String)>;

fn env(pairs: &[(&str, &str)]) -> Env {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn wait_for_http_uses_the_agent_health_command_when_it_is_installed() {
    let tmp = tempfile::tempdir().unwrap();
    let target = HttpTarget::start(Behavior::HealthyAfter(2));
    let mut vars = env(&[
        ("HEALTH_INTERVAL", "0.1"),
        ("HEALTH_RETRIES", "10"),
        ("HEALTH_SUCCESSES", "2"),
        ("HEALTH_STATUS", "200"),
        ("HEALTH_BODY", "status: ok"),
    ]);
    vars.push(("PATH".to_string(), path_with_agent(tmp.path())));
    let run = run_hook(
        tmp.path(),
        "wait-for-http.sh",
        &[&target.url("/health")],
        &vars,
    );
    assert_eq!(run.code, Some(0), "{}", run.describe());
    assert!(
        run.stdout.contains("with codedeploy-agent health"),
        "{}",
        run.describe()
    );
    assert!(
        run.stdout
            .contains("healthy: 2 successful attempts in a row after 4 attempts"),
        "{}",
        run.describe()
    );
    assert_eq!(target.requests(), 4);
}

#[test]
fn wait_for_http_falls_back_to_curl_and_wget() {
    for tool in ["curl", "wget"] {
        let tmp = tempfile::tempdir().unwrap();
        let target = HttpTarget::start(Behavior::HealthyAfter(2));
        let mut vars = env(&[
            ("HEALTH_INTERVAL", "0.1"),
            ("HEALTH_RETRIES", "10"),
            ("HEALTH_BODY", "status: ok"),
            // No agent with the health command: the script picks curl by itself.
            ("CODEDEPLOY_AGENT", "/nonexistent/codedeploy-agent"),
        ]);
        if tool == "wget" {
            vars.push(("HEALTH_TOOL".to_string(), "wget".to_string()));
        }
        let run = run_hook(tmp.path(), "wait-for-http.sh", &[], &{
            let mut v = vars.clone();
            v.push(("HEALTH_URL".to_string(), target.url("/health")));
            v
        });
        assert_eq!(run.code, Some(0), "{tool}\n{}", run.describe());
        assert!(
            run.stdout.contains(&format!("with {tool}")),
            "{tool}\n{}",
            run.describe()
        );
        assert!(
            run.stdout
                .contains("attempt 1/10: HTTP 503, expected 2xx: failed"),
            "{tool}\n{}",
            run.describe()
        );
        assert!(
            run.stdout
                .contains("healthy: 1 successful attempts in a row after 3 attempts"),
            "{tool}\n{}",
            run.describe()
        );

        let down = HttpTarget::start(Behavior::Unhealthy);
        let mut v = vars.clone();
        v.push(("HEALTH_RETRIES".to_string(), "3".to_string()));
        let run = run_hook(tmp.path(), "wait-for-http.sh", &[&down.url("/")], &v);
        assert_eq!(run.code, Some(1), "{tool}\n{}", run.describe());
        assert!(
            run.stdout
                .contains("unhealthy: no 1 successful attempts in a row within 3 attempts"),
            "{tool}\n{}",
            run.describe()
        );
        assert!(
            run.elapsed < Duration::from_secs(10),
            "{tool}: {:?}",
            run.elapsed
        );
    }
}

#[test]
fn wait_for_http_gives_up_on_a_hanging_service_and_refuses_bad_settings() {
    let tmp = tempfile::tempdir().unwrap();
    let hanging = HttpTarget::start(Behavior::Hang);
    let vars = env(&[
        ("HEALTH_TIMEOUT", "1"),
        ("HEALTH_INTERVAL", "0.1"),
        ("HEALTH_RETRIES", "2"),
        ("HEALTH_TOOL", "curl"),
    ]);
    let run = run_hook(tmp.path(), "wait-for-http.sh", &[&hanging.url("/")], &vars);
    assert_eq!(run.code, Some(1), "{}", run.describe());
    assert!(
        run.stdout.contains("no answer within 1s"),
        "{}",
        run.describe()
    );
    assert!(run.elapsed < Duration::from_secs(8), "{:?}", run.elapsed);

    let run = run_hook(tmp.path(), "wait-for-http.sh", &[], &[]);
    assert_eq!(run.code, Some(2), "{}", run.describe());
    assert!(run.stderr.contains("no URL"), "{}", run.describe());
    let run = run_hook(
        tmp.path(),
        "wait-for-http.sh",
        &["http://127.0.0.1:1/"],
        &env(&[("HEALTH_RETRIES", "many")]),
    );
    assert_eq!(run.code, Some(2), "{}", run.describe());
}

/// A stand-in for systemctl: keeps each unit's state in a directory, logs
/// every call, and makes a started unit pass through `activating` (or end
/// `failed`) as the test asks.
const FAKE_SYSTEMCTL: &str = r#"#!/bin/sh
dir="$FAKE_SYSTEMD_DIR"
echo "$*" >> "$dir/calls"
cmd="$1"; shift
# Options such as --no-pager come before the unit.
while [ $# -gt 1 ]; do shift; done
unit="$1"
state_file="$dir/$unit.state"
polls_file="$dir/$unit.polls"
state=$(cat "$state_file" 2>/dev/null || echo inactive)
case "$cmd" in
start|restart)
    if [ "${FAKE_START:-ok}" = fail ]; then echo failed > "$state_file"; exit 0; fi
    echo activating > "$state_file"; echo "${FAKE_ACTIVATING_POLLS:-2}" > "$polls_file" ;;
stop)
    echo deactivating > "$state_file"; echo 1 > "$polls_file" ;;
is-active)
    case "$state" in
    activating|deactivating)
        left=$(cat "$polls_file")
        if [ "$left" -le 0 ]; then
            if [ "$state" = activating ]; then state=active; else state=inactive; fi
            echo "$state" > "$state_file"
        else
            echo $((left - 1)) > "$polls_file"
        fi ;;
    esac
    # FAKE_DIES=yes: active once, failed from the next look on (a Type=simple
    # unit whose process exits just after the fork).
    if [ "$state" = active ] && [ "${FAKE_DIES:-no}" = yes ]; then
        if [ -f "$dir/$unit.seen" ]; then state=failed; echo failed > "$state_file"; fi
        touch "$dir/$unit.seen"
    fi
    echo "$state"
    [ "$state" = active ] ;;
show)
    echo "${FAKE_MAIN_PID:-4242}" ;;
status)
    echo "* $unit - fake unit"; echo "   Active: $state" ;;
daemon-reload) ;;
*) echo "fake systemctl: unknown command $cmd" >&2; exit 1 ;;
esac
"#;

/// A directory with the fake `systemctl`, and the environment to use it.
fn fake_systemd(dir: &Path) -> Env {
    use std::os::unix::fs::PermissionsExt;
    let bin = dir.join("fake-bin");
    let state = dir.join("systemd-state");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::create_dir_all(&state).unwrap();
    let systemctl = bin.join("systemctl");
    std::fs::File::create(&systemctl)
        .and_then(|mut f| f.write_all(FAKE_SYSTEMCTL.as_bytes()))
        .unwrap();
    std::fs::set_permissions(&systemctl, std::fs::Permissions::from_mode(0o755)).unwrap();
    env(&[
        ("PATH", &format!("{}:{}", bin.display(), system_path())),
        ("FAKE_SYSTEMD_DIR", &state.display().to_string()),
        ("SERVICE_INTERVAL", "0.1"),
        ("SERVICE_SETTLE", "1"),
    ])
}

fn calls(dir: &Path) -> Vec<String> {
    crate::support::lines(&dir.join("systemd-state/calls"))
}

#[test]
fn systemd_unit_starts_and_waits_until_the_unit_is_active() {
    let tmp = tempfile::tempdir().unwrap();
    let mut vars = fake_systemd(tmp.path());
    vars.push(("SERVICE_DAEMON_RELOAD".to_string(), "yes".to_string()));
    let run = run_hook(
        tmp.path(),
        "systemd-unit.sh",
        &["start", "webshop.service"],
        &vars,
    );
    assert_eq!(run.code, Some(0), "{}", run.describe());
    assert!(
        run.stdout.contains("webshop.service is active"),
        "{}",
        run.describe()
    );
    // Two polls see it activating, the third active; a second later it is
    // still active with the same main process.
    assert_eq!(
        calls(tmp.path()),
        [
            "daemon-reload",
            "start webshop.service",
            "is-active webshop.service",
            "is-active webshop.service",
            "is-active webshop.service",
            "show -P MainPID webshop.service",
            "is-active webshop.service",
            "show -P MainPID webshop.service",
        ]
    );

    // The event decides the action: ApplicationStop stops a running unit.
    let mut stop = vars.clone();
    stop.push(("LIFECYCLE_EVENT".to_string(), "ApplicationStop".to_string()));
    stop.push(("SERVICE_UNIT".to_string(), "webshop.service".to_string()));
    let run = run_hook(tmp.path(), "systemd-unit.sh", &[], &stop);
    assert_eq!(run.code, Some(0), "{}", run.describe());
    assert!(
        run.stdout.contains("webshop.service is stopped"),
        "{}",
        run.describe()
    );
    assert!(calls(tmp.path()).contains(&"stop webshop.service".to_string()));
}

#[test]
fn systemd_unit_fails_for_a_unit_that_fails_or_never_gets_active() {
    let tmp = tempfile::tempdir().unwrap();
    let vars = fake_systemd(tmp.path());

    let mut failing = vars.clone();
    failing.push(("FAKE_START".to_string(), "fail".to_string()));
    let run = run_hook(
        tmp.path(),
        "systemd-unit.sh",
        &["restart", "api.service"],
        &failing,
    );
    assert_eq!(run.code, Some(1), "{}", run.describe());
    assert!(
        run.stderr.contains("api.service failed"),
        "{}",
        run.describe()
    );
    assert!(
        run.stderr.contains("Active: failed"),
        "the unit's status is shown\n{}",
        run.describe()
    );

    let mut dies = vars.clone();
    dies.push(("FAKE_DIES".to_string(), "yes".to_string()));
    let run = run_hook(
        tmp.path(),
        "systemd-unit.sh",
        &["start", "flaky.service"],
        &dies,
    );
    assert_eq!(run.code, Some(1), "{}", run.describe());
    assert!(
        run.stderr
            .contains("flaky.service was active, then failed within 1s"),
        "a unit that dies just after it became active fails the hook\n{}",
        run.describe()
    );

    let mut stuck = vars.clone();
    stuck.push(("FAKE_ACTIVATING_POLLS".to_string(), "100000".to_string()));
    stuck.push(("SERVICE_WAIT".to_string(), "2".to_string()));
    let run = run_hook(
        tmp.path(),
        "systemd-unit.sh",
        &["start", "slow.service"],
        &stuck,
    );
    assert_eq!(run.code, Some(1), "{}", run.describe());
    assert!(
        run.stderr
            .contains("slow.service is still activating after 2s"),
        "{}",
        run.describe()
    );
    assert!(
        run.elapsed >= Duration::from_secs(1) && run.elapsed < Duration::from_secs(8),
        "{:?}",
        run.elapsed
    );
}

#[test]
fn systemd_unit_stop_of_a_unit_that_is_not_running_does_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let mut vars = fake_systemd(tmp.path());
    vars.push(("LIFECYCLE_EVENT".to_string(), "ApplicationStop".to_string()));
    let run = run_hook(
        tmp.path(),
        "systemd-unit.sh",
        &["", "never-installed.service"],
        &vars,
    );
    assert_eq!(run.code, Some(0), "{}", run.describe());
    assert!(run
        .stdout
        .contains("never-installed.service is inactive: nothing to stop"));
    assert_eq!(calls(tmp.path()), ["is-active never-installed.service"]);

    for (args, expected) in [
        (vec!["start"], "no unit"),
        (
            vec!["reload", "x.service"],
            "must be start, stop or restart",
        ),
    ] {
        let run = run_hook(
            tmp.path(),
            "systemd-unit.sh",
            &args,
            &fake_systemd(tmp.path()),
        );
        assert_eq!(run.code, Some(2), "{args:?}\n{}", run.describe());
        assert!(
            run.stderr.contains(expected),
            "{args:?}\n{}",
            run.describe()
        );
    }
}

#[test]
fn drain_connections_waits_until_the_port_has_no_connections() {
    for source in ["ss", "proc"] {
        let tmp = tempfile::tempdir().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port().to_string();
        let vars = env(&[
            ("DRAIN_INTERVAL", "0.1"),
            ("DRAIN_TIMEOUT", "20"),
            ("DRAIN_SOURCE", source),
        ]);

        // Nothing connected: drained at once.
        let run = run_hook(tmp.path(), "drain-connections.sh", &[&port], &vars);
        assert_eq!(run.code, Some(0), "{source}\n{}", run.describe());
        assert!(
            run.stdout.contains(&format!("port {port} is drained")),
            "{source}\n{}",
            run.describe()
        );

        // Two clients connected; the hook waits until both have gone.
        let clients: Vec<(TcpStream, TcpStream)> = (0..2)
            .map(|_| {
                let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
                let (server_side, _) = listener.accept().unwrap();
                (client, server_side)
            })
            .collect();
        let (child, started) = spawn_hook(tmp.path(), "drain-connections.sh", &[&port], &vars);
        std::thread::sleep(Duration::from_millis(1200));
        drop(clients);
        let run = finish_hook(tmp.path(), "drain-connections.sh", child, started);
        assert_eq!(run.code, Some(0), "{source}\n{}", run.describe());
        assert!(
            run.stdout.contains(&format!(
                "2 established connection(s) to port {port} (counted with {source})"
            )),
            "{source}\n{}",
            run.describe()
        );
        assert!(
            run.elapsed >= Duration::from_millis(1100),
            "{source}: waited {:?}",
            run.elapsed
        );
        assert!(
            run.elapsed < Duration::from_secs(6),
            "{source}: {:?}",
            run.elapsed
        );

        // A client that stays: the timeout fails the hook.
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server_side, _) = listener.accept().unwrap();
        let mut short = vars.clone();
        short.push(("DRAIN_TIMEOUT".to_string(), "1".to_string()));
        let run = run_hook(tmp.path(), "drain-connections.sh", &[&port], &short);
        assert_eq!(run.code, Some(1), "{source}\n{}", run.describe());
        assert!(
            run.stderr.contains(&format!(
                "1 connection(s) to port {port} still open after 1s"
            )),
            "{source}\n{}",
            run.describe()
        );
        drop((client, server_side));
    }
    let tmp = tempfile::tempdir().unwrap();
    let run = run_hook(tmp.path(), "drain-connections.sh", &["http"], &[]);
    assert_eq!(run.code, Some(2), "{}", run.describe());
}

#[test]
fn check_disk_space_compares_free_space_with_the_minimum() {
    let tmp = tempfile::tempdir().unwrap();
    let not_yet = tmp.path().join("srv/app/releases");
    let not_yet = not_yet.to_str().unwrap();
    /// Arguments, environment, exit status, text expected in the output.
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], i32, &'a str);
    let cases: &[Case<'_>] = &[
        (&[not_yet, "1K"], &[], 0, "free (needed: 1K, 1K)"),
        (
            &[],
            &[("DISK_PATH", "/"), ("DISK_MIN_FREE", "0%")],
            0,
            "/ has",
        ),
        (
            &[not_yet, "1000000T"],
            &[],
            1,
            "less than the 1073741824000000K (1000000T) needed",
        ),
        (&[not_yet, "100%"], &[], 1, "(100%) needed"),
        (&[not_yet, "1"], &[("DISK_MIN_INODES", "1")], 0, ""),
        (&[not_yet, "lots"], &[], 2, "is not a size"),
        (&[not_yet, "150%"], &[], 2, "more than 100%"),
    ];
    for (args, pairs, code, expected) in cases {
        let run = run_hook(tmp.path(), "check-disk-space.sh", args, &env(pairs));
        assert_eq!(
            run.code,
            Some(*code),
            "{args:?} {pairs:?}\n{}",
            run.describe()
        );
        assert!(
            run.stdout.contains(expected) || run.stderr.contains(expected),
            "{args:?}: expected {expected:?}\n{}",
            run.describe()
        );
    }
}
