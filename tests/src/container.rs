//! A Debian root booted with systemd as its PID 1 (`systemd-nspawn -b`), for
//! the tests that need a real init: the packages' maintainer scripts, the
//! unit's `KillMode=`, `Restart=` and `ExecReload=`, stopping and restarting
//! the service with a hook running.
//!
//! One tree is debootstrapped once (bookworm minbase with systemd, dbus,
//! procps and rpm; [`base_tree`]) and cached under `<target>/packaging/`, as
//! `packaging/check` caches its own; a bullseye one ([`BULLSEYE`]) likewise,
//! for the glibc-floor build. No container ever writes to it: each boots
//! an overlay of it whose writable layer is a tmpfs, mounted in a mount
//! namespace of the container's own, so that its changes vanish with it (also
//! when the test process is killed) and any number of containers run side by
//! side. A container shares the host's network namespace (no
//! `--private-network`): an agent inside reaches the emulator and moto on
//! 127.0.0.1. Commands run inside through `nsenter`; files are read and
//! written through `/proc/<container PID 1>/root`.
//!
//! It needs root, `systemd-nspawn` (apt `systemd-container`), `nsenter`,
//! `unshare` and `setsid` (util-linux), and `debootstrap` for the first tree.
//! [`availability`] names what is missing, so that a test can say why it
//! skips; a container that cannot boot where all of them are present is a
//! failure, never a skip.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::agent::tail;

/// The release of the cached tree.
pub const SUITE: &str = "bookworm";
/// What the tree holds beyond minbase: an init and what `systemctl` and
/// `journalctl` need, `ps`/`pgrep` for the tests, and rpm for the .rpm's
/// scriptlets.
const INCLUDE: &str = "systemd,systemd-sysv,dbus,procps,rpm";
/// A Debian release whose tree containers boot: [`BOOKWORM`] (the tier's) or
/// [`BULLSEYE`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Release {
    /// debootstrap's suite name.
    pub suite: &'static str,
    /// Packages beyond minbase (debootstrap's `--include=`).
    include: &'static str,
}

/// Debian 12 (glibc 2.36, systemd 252): every test of the tier but one.
pub const BOOKWORM: Release = Release {
    suite: SUITE,
    include: INCLUDE,
};

/// Debian 11 (glibc 2.31, systemd 247), the oldest Debian the packages support
/// (packaging/glibc-floor). The same package names as bookworm's; no rpm, whose
/// scriptlets are tested on bookworm.
pub const BULLSEYE: Release = Release {
    suite: "bullseye",
    include: "systemd,systemd-sysv,dbus,procps",
};

/// How long a boot may take before it is a failure (about 1 s here).
const BOOT_TIMEOUT: Duration = Duration::from_secs(90);
/// How long a clean power-off may take before the container is killed.
const POWEROFF_TIMEOUT: Duration = Duration::from_secs(30);
/// The environment of commands run inside: nothing of the test process's.
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Why no container can boot here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unavailable {
    /// systemd-nspawn and the mounts need root.
    NotRoot,
    /// A program is not on `PATH` (the apt package that has it).
    Missing {
        program: &'static str,
        package: &'static str,
    },
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unavailable::NotRoot => write!(
                f,
                "systemd-nspawn cannot boot a container: the tests do not run as root"
            ),
            Unavailable::Missing { program, package } => write!(
                f,
                "systemd-nspawn cannot boot a container: {program} is not installed \
                 (apt package {package}; scripts/setup installs it)"
            ),
        }
    }
}

/// Whether containers can boot here: root, and every program they need.
pub fn availability() -> Result<(), Unavailable> {
    if !is_root() {
        return Err(Unavailable::NotRoot);
    }
    for (program, package) in [
        ("systemd-nspawn", "systemd-container"),
        ("nsenter", "util-linux"),
        ("unshare", "util-linux"),
        ("setsid", "util-linux"),
        ("debootstrap", "debootstrap"),
    ] {
        if !on_path(program) {
            return Err(Unavailable::Missing { program, package });
        }
    }
    Ok(())
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

fn on_path(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| {
            std::fs::metadata(dir.join(program))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    })
}

/// The workspace's target directory (`CARGO_TARGET_DIR` when set).
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

/// The cached tree, debootstrapped on first use (about 400 MB and a minute
/// and a half). Concurrent test processes each debootstrap into a directory
/// of their own and the first to finish wins, as in `packaging/check`; the
/// mirror is the one this machine's apt uses, else debootstrap's default.
pub fn base_tree() -> Result<PathBuf, String> {
    base_tree_of(BOOKWORM)
}

/// The cached tree of `release`, as [`base_tree`] does for bookworm. Every
/// release comes from the mirror this machine's apt uses for bookworm: one
/// archive holds them all.
pub fn base_tree_of(release: Release) -> Result<PathBuf, String> {
    static BUILT: Mutex<Vec<(Release, PathBuf)>> = Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, tree)) = built.iter().find(|(r, _)| *r == release) {
        return Ok(tree.clone());
    }
    let Release { suite, include } = release;
    let packaging = target_dir().join("packaging");
    let tree = packaging.join(format!("debootstrap-{suite}-systemd"));
    // A tree is renamed into place only once debootstrap has finished.
    if !tree.join("usr/lib/systemd/systemd").exists() {
        std::fs::create_dir_all(&packaging)
            .map_err(|e| format!("cannot create {}: {e}", packaging.display()))?;
        let partial = tempfile::Builder::new()
            .prefix(&format!("debootstrap-{suite}-systemd.partial."))
            .tempdir_in(&packaging)
            .map_err(|e| format!("cannot create a directory in {}: {e}", packaging.display()))?;
        let mirror = apt_mirror();
        eprintln!(
            "codedeploy-e2e: debootstrap --variant=minbase --include={include} {suite} {} \
             into {} (once; kept for later runs)",
            mirror.as_deref().unwrap_or("(default mirror)"),
            tree.display()
        );
        let output = Command::new("debootstrap")
            .arg("--variant=minbase")
            .arg(format!("--include={include}"))
            .arg(suite)
            .arg(partial.path())
            .args(mirror.as_deref())
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run debootstrap: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "debootstrap of the container tree failed ({}):\n{}",
                output.status,
                tail(&String::from_utf8_lossy(&output.stdout), 4000)
            ));
        }
        // The downloaded .debs are 70 MB that no test reads.
        if let Ok(entries) = std::fs::read_dir(partial.path().join("var/cache/apt/archives")) {
            for entry in entries.flatten() {
                if entry.path().extension().is_some_and(|e| e == "deb") {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        let partial = partial.keep();
        // Another process may have finished first: keep one.
        if std::fs::rename(&partial, &tree).is_err() {
            let _ = std::fs::remove_dir_all(&partial);
        }
    }
    if !tree.join("usr/lib/systemd/systemd").exists() {
        return Err(format!("{} holds no systemd", tree.display()));
    }
    built.push((release, tree.clone()));
    Ok(tree)
}

fn apt_mirror() -> Option<String> {
    let output = Command::new("apt-get")
        .args(["indextargets", "--format", "$(REPO_URI)"])
        .args(["Identifier: Packages", &format!("Release: {SUITE}")])
        .arg("Component: main")
        .stderr(Stdio::null())
        .output()
        .ok()?;
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .next()
        .map(str::to_string)
        .filter(|l| !l.is_empty())
}

/// What a command run inside printed, and how it ended.
#[derive(Clone, Debug)]
pub struct CommandOutput {
    pub command: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl CommandOutput {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// The exit code (`None`: ended by a signal).
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// stdout with its trailing newline removed.
    pub fn stdout_line(&self) -> &str {
        self.stdout.trim_end()
    }
}

impl fmt::Display for CommandOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "$ {}\n[{}]\n--- stdout ---\n{}--- stderr ---\n{}",
            self.command, self.status, self.stdout, self.stderr
        )
    }
}

/// A booted container. Dropping it powers it off (and kills it if that does
/// not finish in time); a test that panics gets its journal on stderr.
#[derive(Debug)]
pub struct Container {
    machine: String,
    nspawn: Child,
    pid1: u32,
    /// The console log (`console.log`) and the mount point of the container's
    /// tmpfs (`mnt/`, empty as seen from the host).
    dir: Option<TempDir>,
    booted_in: Duration,
}

impl Container {
    /// Boots a container named after `name` (made unique) and waits until
    /// `systemctl is-system-running` says `running` or `degraded`.
    /// `Err` when containers cannot boot here ([`availability`]); panics when
    /// they should but this one does not.
    pub fn boot(name: &str) -> Result<Container, Unavailable> {
        Self::boot_on(name, BOOKWORM)
    }

    /// [`Container::boot`] of `release`'s tree.
    pub fn boot_on(name: &str, release: Release) -> Result<Container, Unavailable> {
        availability()?;
        let tree = base_tree_of(release).unwrap_or_else(|e| panic!("{e}"));
        let started = Instant::now();
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let mut machine: String = name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .take(40)
            .collect();
        machine = format!(
            "{machine}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let dir = tempfile::Builder::new()
            .prefix(&format!("codedeploy-e2e-container-{machine}-"))
            .tempdir()
            .expect("a temporary directory can be created");
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).expect("the mount point can be created");
        let console = std::fs::File::create(dir.path().join("console.log"))
            .expect("the console log can be created");
        // The tmpfs and the overlay live in a private mount namespace, which
        // ends with systemd-nspawn: nothing is left mounted on the host.
        let script = r#"set -e
mount -t tmpfs -o mode=0755 codedeploy-e2e "$1"
mkdir "$1/upper" "$1/work" "$1/root"
mount -t overlay overlay -o "lowerdir=$2,upperdir=$1/upper,workdir=$1/work" "$1/root"
exec systemd-nspawn -D "$1/root" -b --register=no --keep-unit --console=passive -M "$3"
"#;
        let nspawn = Command::new("setsid")
            .args(["unshare", "--mount", "--propagation", "private"])
            .args(["sh", "-c", script, "sh"])
            .arg(&mnt)
            .arg(&tree)
            .arg(&machine)
            .stdin(Stdio::null())
            .stdout(console.try_clone().expect("the console log can be shared"))
            .stderr(console)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start systemd-nspawn: {e}"));
        let mut container = Container {
            machine,
            nspawn,
            pid1: 0,
            dir: Some(dir),
            booted_in: Duration::ZERO,
        };
        let deadline = started + BOOT_TIMEOUT;
        container.pid1 = loop {
            if let Some(pid) = container_init(container.nspawn.id()) {
                break pid;
            }
            if let Ok(Some(status)) = container.nspawn.try_wait() {
                panic!(
                    "systemd-nspawn exited before the container's systemd started ({status}):\n{}",
                    container.console()
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "no container systemd after {BOOT_TIMEOUT:?}:\n{}",
                    container.console()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut state = String::new();
        while Instant::now() < deadline {
            state = container
                .run(&["systemctl", "is-system-running"])
                .stdout_line()
                .to_string();
            if state == "running" || state == "degraded" {
                container.booted_in = started.elapsed();
                return Ok(container);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "the container's systemd is '{state}' after {BOOT_TIMEOUT:?}:\n{}",
            container.report()
        )
    }

    /// The container's PID 1 (its systemd) as the host sees it.
    pub fn pid1(&self) -> u32 {
        self.pid1
    }

    /// The machine name (the container's hostname), unique to this boot.
    pub fn machine(&self) -> &str {
        &self.machine
    }

    /// From starting systemd-nspawn to `is-system-running` saying so.
    pub fn booted_in(&self) -> Duration {
        self.booted_in
    }

    /// A command that runs `argv` inside the container (all its namespaces,
    /// its root), with a clean environment.
    pub fn command(&self, argv: &[&str]) -> Command {
        let mut command = Command::new("nsenter");
        command
            .arg("-t")
            .arg(self.pid1.to_string())
            .arg("-a")
            .arg("--")
            .args(argv)
            .env_clear()
            .env("PATH", PATH)
            .env("HOME", "/root")
            .env("LANG", "C.UTF-8")
            .env("TERM", "dumb")
            .stdin(Stdio::null());
        command
    }

    /// Runs `argv` inside and waits for it.
    pub fn run(&self, argv: &[&str]) -> CommandOutput {
        let output = self
            .command(argv)
            .output()
            .unwrap_or_else(|e| panic!("cannot run nsenter: {e}"));
        CommandOutput {
            command: argv.join(" "),
            status: output.status,
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Runs a `/bin/sh -c` script inside.
    pub fn sh(&self, script: &str) -> CommandOutput {
        let mut output = self.run(&["sh", "-c", script]);
        output.command = script.to_string();
        output
    }

    /// Where the container's `path` is, as seen from the host (while it runs).
    pub fn host_path(&self, path: &str) -> PathBuf {
        let relative = path.trim_start_matches('/');
        Path::new(&format!("/proc/{}/root", self.pid1)).join(relative)
    }

    /// Writes `contents` to the container's `path` (parents created) with
    /// `mode`. Not under `/tmp`: that is a tmpfs of the container's own,
    /// which the host path does not reach until it is mounted.
    pub fn write(&self, path: &str, contents: impl AsRef<[u8]>, mode: u32) -> io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let target = self.host_path(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&target, contents)?;
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode))
    }

    /// Copies the host's file `from` to the container's `to`.
    pub fn copy_in(&self, from: &Path, to: &str) -> io::Result<()> {
        let target = self.host_path(to);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::copy(from, &target).map(|_| ())
    }

    /// The container's file `path` (empty when it cannot be read).
    pub fn read(&self, path: &str) -> String {
        std::fs::read(self.host_path(path))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    pub fn exists(&self, path: &str) -> bool {
        self.host_path(path).symlink_metadata().is_ok()
    }

    /// The last `lines` lines of this boot's journal.
    pub fn journal(&self, lines: usize) -> String {
        let output = self.run(&[
            "journalctl",
            "--no-pager",
            "-b",
            "-o",
            "short-monotonic",
            "-n",
            &lines.to_string(),
        ]);
        format!("{}{}", output.stdout, output.stderr)
    }

    /// What systemd-nspawn and the container's console printed.
    pub fn console(&self) -> String {
        self.dir
            .as_ref()
            .and_then(|d| std::fs::read(d.path().join("console.log")).ok())
            .map(|b| tail(&String::from_utf8_lossy(&b), 8000).to_string())
            .unwrap_or_default()
    }

    /// For assertion messages: the failed units and the journal's end.
    pub fn report(&self) -> String {
        let failed = self.run(&["systemctl", "--failed", "--no-pager", "--no-legend"]);
        format!(
            "=== container {} (PID 1 = host pid {}) ===\n--- failed units ---\n{}\
             --- journal (last 300 lines) ---\n{}",
            self.machine,
            self.pid1,
            failed.stdout,
            self.journal(300)
        )
    }

    /// Powers the container off (SIGRTMIN+4 to its systemd) and waits for
    /// systemd-nspawn to exit; kills both after [`POWEROFF_TIMEOUT`].
    /// Returns systemd-nspawn's exit status.
    pub fn poweroff(&mut self) -> Option<ExitStatus> {
        if let Ok(Some(status)) = self.nspawn.try_wait() {
            return Some(status);
        }
        signal(self.pid1, "RTMIN+4");
        let deadline = Instant::now() + POWEROFF_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.nspawn.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // SIGKILL to a PID 1 ends its whole PID namespace.
        signal(self.pid1, "KILL");
        let _ = self.nspawn.kill();
        self.nspawn.wait().ok()
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if std::thread::panicking() && self.nspawn.try_wait().ok().flatten().is_none() {
            eprintln!("{}", self.report());
        }
        self.poweroff();
        if let Some(dir) = self.dir.take() {
            if std::thread::panicking() {
                let kept = dir.keep();
                eprintln!(
                    "codedeploy-e2e: container console log kept in {}",
                    kept.join("console.log").display()
                );
            }
        }
    }
}

/// The systemd that systemd-nspawn (`nspawn_pid` or its exec'd descendant)
/// started as the container's PID 1.
fn container_init(nspawn_pid: u32) -> Option<u32> {
    let mut pids = vec![nspawn_pid];
    while let Some(pid) = pids.pop() {
        let children =
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        for child in children.split_whitespace().filter_map(|c| c.parse().ok()) {
            if comm(pid).as_deref() == Some("systemd-nspawn")
                && comm(child).as_deref() == Some("systemd")
            {
                return Some(child);
            }
            pids.push(child);
        }
    }
    None
}

fn comm(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|c| c.trim_end().to_string())
}

fn signal(pid: u32, name: &str) {
    let _ = Command::new("kill")
        .arg("-s")
        .arg(name)
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unavailable_says_what_is_missing_and_where_it_comes_from() {
        let missing = Unavailable::Missing {
            program: "systemd-nspawn",
            package: "systemd-container",
        };
        assert_eq!(
            missing.to_string(),
            "systemd-nspawn cannot boot a container: systemd-nspawn is not installed \
             (apt package systemd-container; scripts/setup installs it)"
        );
        assert!(Unavailable::NotRoot.to_string().contains("root"));
    }

    #[test]
    fn a_booted_container_runs_systemd_as_pid_1_and_powers_off() {
        let mut container = match Container::boot("harness") {
            Ok(c) => c,
            Err(reason) => {
                eprintln!("skipping: {reason}");
                return;
            }
        };
        assert_eq!(container.read("/proc/1/comm").trim(), "systemd");
        let state = container.run(&["systemctl", "is-system-running"]);
        assert!(
            matches!(state.stdout_line(), "running" | "degraded"),
            "{state}"
        );
        container
            .write("/var/tmp/from-host", "hello\n", 0o644)
            .unwrap();
        let cat = container.run(&["cat", "/var/tmp/from-host"]);
        assert_eq!(cat.stdout, "hello\n", "{cat}");
        let false_ = container.sh("exit 3");
        assert_eq!(false_.code(), Some(3));
        let status = container.poweroff();
        assert!(status.is_some_and(|s| s.success()), "{status:?}");
    }
}
