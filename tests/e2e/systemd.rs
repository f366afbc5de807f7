//! The packaged agent under a real init: the `.deb` (and the `.rpm`) built by
//! `packaging/build` from the binary under test, installed in a Debian root
//! booted with systemd as its PID 1 (`codedeploy_e2e::container`), configured
//! as an operator would (the on-premises registration, the CA chain and the
//! endpoints of this test's emulator and moto, all on 127.0.0.1), then driven
//! with `dpkg`, `apt-get` and `systemctl`.
//!
//! Where containers cannot boot (not root, systemd-nspawn missing) each test
//! prints `skipping: <reason>` and returns; CI runs as root and runs them.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use codedeploy_e2e::container::{target_dir, CommandOutput, Container};
use codedeploy_e2e::{AgentConfig, BundleType, Deployment, Revision, TestBed};

use crate::support::*;

const BUCKET: &str = "systemd-revisions";
const UNIT: &str = "codedeploy-agent";
const CONFIG: &str = "/etc/codedeploy-agent/conf/codedeployagent.yml";
const ON_PREMISES: &str = "/etc/codedeploy-agent/conf/codedeploy.onpremises.yml";
const CA_CHAIN: &str = "/opt/codedeploy-agent/certs/host-agent-deployment-signer-ca-chain.pem";
const ROOT_DIR: &str = "/opt/codedeploy-agent/deployment-root";
const AGENT_LOG: &str = "/var/log/aws/codedeploy-agent/codedeploy-agent.log";

/// A package built from the binary under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Package {
    /// The workspace's version.
    Deb,
    /// A higher version, to upgrade to.
    #[allow(dead_code)] // the upgrade test
    DebNewer,
    #[allow(dead_code)] // the .rpm test
    Rpm,
}

impl Package {
    fn build(self) -> PathBuf {
        static BUILT: Mutex<Vec<(Package, PathBuf)>> = Mutex::new(Vec::new());
        let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, path)) = built.iter().find(|(p, _)| *p == self) {
            return path.clone();
        }
        let (format, version) = match self {
            Package::Deb => ("deb", None),
            Package::DebNewer => ("deb", Some(newer_version())),
            Package::Rpm => ("rpm", None),
        };
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut command = std::process::Command::new(workspace.join("packaging/build"));
        command
            .arg(format)
            .arg("--binary")
            .arg(env!("CARGO_BIN_EXE_codedeploy-agent"))
            .arg("--out")
            .arg(packages_dir())
            // The operators' format, in a fraction of the time.
            .args(["--xz-level", "0"]);
        if let Some(version) = &version {
            command.arg("--version").arg(version);
        }
        let output = command
            .output()
            .unwrap_or_else(|e| panic!("cannot run packaging/build: {e}"));
        let stdout = String::from_utf8_lossy(&output.stdout);
        let path = PathBuf::from(stdout.lines().last().unwrap_or_default());
        assert!(
            output.status.success() && path.is_file(),
            "packaging/build {format} failed ({}):\n{stdout}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        built.push((self, path.clone()));
        path
    }
}

/// The workspace's version (`[workspace.package]`), as `--version` prints it.
fn workspace_version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

fn newer_version() -> String {
    format!("{}+systemd.2", workspace_version())
}

/// `<target>/packaging/systemd-tier-<pid>`: this process's packages. Those of
/// processes that have ended are removed.
fn packages_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let parent = target_dir().join("packaging");
        let prefix = "systemd-tier-";
        if let Ok(entries) = std::fs::read_dir(&parent) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let ended = name
                    .strip_prefix(prefix)
                    .and_then(|pid| pid.parse::<u32>().ok())
                    .is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists());
                if ended {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
        let dir = parent.join(format!("{prefix}{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("the packages directory can be created");
        dir
    })
    .clone()
}

/// One test's world: the emulator and moto on the host, a booted container.
/// Drops the container first (powered off), then the test bed.
struct Host {
    container: Container,
    bed: TestBed,
}

impl Host {
    /// Boots a container and starts the test bed; `None` (with the reason
    /// on stderr) where containers cannot boot.
    fn start(name: &str) -> Option<Host> {
        let container = match Container::boot(name) {
            Ok(container) => container,
            Err(reason) => {
                eprintln!("skipping: {reason}");
                return None;
            }
        };
        eprintln!(
            "codedeploy-e2e: container {} booted in {:.2} s",
            container.machine(),
            container.booted_in().as_secs_f64()
        );
        let bed = TestBed::start(name);
        Some(Host { container, bed })
    }

    /// The emulator's calls, the agent's log and the unit's journal.
    fn report(&self) -> String {
        let status = self
            .container
            .run(&["systemctl", "status", "--no-pager", "-n", "0", UNIT]);
        format!(
            "{}=== {AGENT_LOG} (in the container) ===\n{}\n=== systemctl status ===\n{}{}\n{}",
            self.bed.emulator.report(),
            tail(&self.container.read(AGENT_LOG), 20_000),
            status.stdout,
            status.stderr,
            self.container.report()
        )
    }

    /// The configuration files an operator writes: `codedeployagent.yml`
    /// pointing at this test's emulator and moto (the package's paths
    /// otherwise), the on-premises registration and the CA chain that signs
    /// this test's deployment specifications.
    fn configure(&self, extra_lines: &[&str]) {
        let config = self.agent_config(extra_lines);
        self.container
            .write(CONFIG, config.agent_yaml(), 0o644)
            .expect("the configuration can be written");
        self.container
            .write(
                ON_PREMISES,
                config
                    .on_premises_yaml()
                    .expect("the host is registered on premises"),
                0o600,
            )
            .expect("the on-premises file can be written");
        let ca = self.container.host_path(CA_CHAIN);
        std::fs::create_dir_all(ca.parent().expect("the CA path has a folder"))
            .expect("the certs folder can be created");
        self.bed
            .pki
            .write_ca_chain(&ca)
            .expect("the CA chain can be written");
    }

    fn agent_config(&self, extra_lines: &[&str]) -> AgentConfig {
        let mut config = self.bed.agent_config();
        config.dir = PathBuf::from("/etc/codedeploy-agent/conf");
        config.log_dir = PathBuf::from("/var/log/aws/codedeploy-agent");
        config.pid_dir = PathBuf::from("/opt/codedeploy-agent/state/.pid");
        config.root_dir = PathBuf::from(ROOT_DIR);
        config.on_premises_config_file = PathBuf::from(ON_PREMISES);
        config.ca_file = PathBuf::from(CA_CHAIN);
        extra_lines
            .iter()
            .fold(config, |config, line| config.extra_line(line))
    }

    /// Copies `package` into the container's /var/tmp; its path there.
    fn copy_package(&self, package: Package) -> String {
        let built = package.build();
        let name = built
            .file_name()
            .expect("a package file has a name")
            .to_string_lossy();
        let inside = format!("/var/tmp/{name}");
        self.container
            .copy_in(&built, &inside)
            .expect("the package can be copied into the container");
        inside
    }

    /// `dpkg -i` of `package`, keeping configuration files already in place
    /// (`--force-confold`, as an image build that seeds them answers dpkg's
    /// question about a conffile it did not install).
    fn dpkg_install(&self, package: Package) -> CommandOutput {
        let inside = self.copy_package(package);
        let output = self
            .container
            .run(&["dpkg", "-i", "--force-confold", &inside]);
        ensure!(self, output.success(), "dpkg -i succeeds:\n{output}");
        output
    }

    /// `systemctl <verb> codedeploy-agent`, which must succeed.
    fn systemctl(&self, verb: &str) -> CommandOutput {
        let output = self.container.run(&["systemctl", verb, UNIT]);
        ensure!(self, output.success(), "systemctl {verb}:\n{output}");
        output
    }

    /// `systemctl is-active codedeploy-agent`.
    fn unit_state(&self) -> String {
        self.container
            .run(&["systemctl", "is-active", UNIT])
            .stdout_line()
            .to_string()
    }

    /// The agent's pid as the host sees it (systemd's MainPID is the
    /// container's view).
    fn main_pid(&self) -> u32 {
        self.container
            .run(&["systemctl", "show", "-P", "MainPID", UNIT])
            .stdout_line()
            .parse()
            .unwrap_or(0)
    }

    /// Is the process `pid` (as the container sees it) running inside?
    fn alive(&self, pid: u32) -> bool {
        let stat = self.container.read(&format!("/proc/{pid}/stat"));
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X")
    }

    /// A pid written by a hook into the container's `path`.
    fn read_pid(&self, path: &str, timeout: Duration) -> Option<u32> {
        read_pid(&self.container.host_path(path), timeout)
    }

    fn deploy(&self, key: &str, revision: &Revision, previous: Option<&Deployment>) -> Deployment {
        let location = self.bed.upload(BUCKET, key, revision, BundleType::Tgz);
        let deployment = match previous {
            Some(previous) => Deployment::next_in_group(previous, location),
            None => Deployment::new("App", "App-Group", location),
        };
        self.bed.emulator.add_deployment(deployment.clone());
        deployment
    }

    fn expect_success(&self, deployment: &Deployment) {
        let outcome = self
            .bed
            .emulator
            .wait_for_deployment_end(&deployment.deployment_id, DEPLOYMENT_DEADLINE);
        ensure!(
            self,
            outcome.is_succeeded(),
            "deployment {} should succeed: {outcome}",
            deployment.deployment_id
        );
    }
}

fn tail(text: &str, max: usize) -> &str {
    let mut start = text.len().saturating_sub(max);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

/// A revision installing `site/` to /srv/app, with `hooks` (event, `/bin/sh`
/// body) as scripts/<event>.sh.
fn revision(tag: &str, hooks: &[(&str, &str)]) -> Revision {
    let locations: Vec<(String, String)> = hooks
        .iter()
        .map(|(event, _)| (event.to_string(), format!("scripts/{event}.sh")))
        .collect();
    let hook_list: Vec<Hook<'_>> = locations.iter().map(|(e, l)| hook(e, l)).collect();
    let mut revision = Revision::new()
        .file(
            "appspec.yml",
            appspec("site", Path::new("/srv/app"), &hook_list),
        )
        .file("site/index.html", format!("<p>{tag}</p>\n"));
    for ((_, location), (_, body)) in locations.iter().zip(hooks) {
        revision = revision.script(location, format!("#!/bin/sh\n{body}\n"));
    }
    revision
}

#[test]
fn dpkg_install_enables_and_starts_the_service_which_polls_and_deploys() {
    let Some(host) = Host::start("dpkg-starts") else {
        return;
    };
    host.configure(&[]);
    let install = host.dpkg_install(Package::Deb);
    ensure!(
        host,
        !install.stderr.contains("refuse to start") && !install.stderr.contains("not running here"),
        "postinst finds the CA chain and systemd:\n{install}"
    );
    let enabled = host.container.run(&["systemctl", "is-enabled", UNIT]);
    ensure_eq!(
        host,
        enabled.stdout_line(),
        "enabled",
        "enabled for the next boot"
    );
    ensure_eq!(
        host,
        host.unit_state(),
        "active",
        "dpkg -i started the service"
    );

    let deployment = host.deploy(
        "app/first.tgz",
        &revision(
            "first",
            &[(
                "AfterInstall",
                "cat /proc/self/cgroup > /var/tmp/hook-cgroup\nsystemctl is-active codedeploy-agent",
            )],
        ),
        None,
    );
    host.expect_success(&deployment);
    ensure_eq!(
        host,
        host.container.read("/srv/app/index.html"),
        "<p>first</p>\n",
        "the revision is installed in the container"
    );
    let cgroup = host.container.read("/var/tmp/hook-cgroup");
    ensure!(
        host,
        cgroup.contains("/system.slice/codedeploy-agent.service"),
        "the hook ran inside the service's cgroup:\n{cgroup}"
    );
    ensure_eq!(
        host,
        host.unit_state(),
        "active",
        "the service runs on after the deployment"
    );
}

/// An ApplicationStart hook that starts a long-running application, and an
/// ApplicationStop hook that stops it (run from this revision by the next
/// deployment).
fn application_revision(tag: &str) -> Revision {
    revision(
        tag,
        &[
            (
                "ApplicationStop",
                "if [ -f /var/tmp/app.pid ]; then kill \"$(cat /var/tmp/app.pid)\"; rm /var/tmp/app.pid; fi",
            ),
            (
                "ApplicationStart",
                "setsid sleep 3600 </dev/null >/dev/null 2>&1 &\necho $! > /var/tmp/app.pid",
            ),
        ],
    )
}

#[test]
fn an_application_a_hook_started_survives_systemctl_stop_and_the_next_deployment_stops_it() {
    let Some(host) = Host::start("app-survives") else {
        return;
    };
    host.configure(&[]);
    host.dpkg_install(Package::Deb);
    let first = host.deploy("app/first.tgz", &application_revision("first"), None);
    host.expect_success(&first);
    let app = host.read_pid("/var/tmp/app.pid", Duration::from_secs(5));
    ensure!(
        host,
        app.is_some(),
        "ApplicationStart wrote the application's pid"
    );
    let app = app.unwrap();
    ensure!(
        host,
        host.alive(app),
        "the application runs after the deployment"
    );

    let agent = host.main_pid();
    host.systemctl("stop");
    ensure_eq!(host, host.unit_state(), "inactive", "the agent is stopped");
    ensure!(
        host,
        !host.alive(agent),
        "the agent process (pid {agent}) has exited"
    );
    ensure!(
        host,
        host.alive(app),
        "KillMode=process: the application (pid {app}) outlives the agent's stop"
    );

    host.systemctl("start");
    ensure_eq!(
        host,
        host.unit_state(),
        "active",
        "systemctl start brings it back"
    );
    let second = host.deploy(
        "app/second.tgz",
        &application_revision("second"),
        Some(&first),
    );
    host.expect_success(&second);
    ensure!(
        host,
        wait_until(Duration::from_secs(5), || !host.alive(app)),
        "the next deployment's ApplicationStop (from the first revision) stopped pid {app}"
    );
    let restarted = host.read_pid("/var/tmp/app.pid", Duration::from_secs(5));
    ensure!(
        host,
        restarted.is_some_and(|pid| pid != app && host.alive(pid)),
        "the second revision's ApplicationStart started it again ({restarted:?})"
    );
}
