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
use std::time::{Duration, Instant};

use codedeploy_e2e::agent::tail;
use codedeploy_e2e::container::{target_dir, CommandOutput, Container};
use codedeploy_e2e::emulator::{CommandRecord, Diagnostics, Operation};
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
    DebNewer,
    Rpm,
    /// A higher version, to upgrade to.
    RpmNewer,
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
            Package::RpmNewer => ("rpm", Some(newer_version())),
        };
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut command = std::process::Command::new(workspace.join("packaging/build"));
        command
            .arg(format)
            .arg("--binary")
            .arg(packaged_agent_binary())
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

    /// `dpkg -i` of `package` as it is, which must succeed without a question.
    fn dpkg_install_plain(&self, package: Package) -> CommandOutput {
        let inside = self.copy_package(package);
        let output = self.container.run(&["dpkg", "-i", &inside]);
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

/// The journal entries of the agent's unit that carry `field=value`, as
/// JSON objects.
fn journal_entries(host: &Host, filter: &str) -> Vec<serde_json::Value> {
    let output =
        host.container
            .run(&["journalctl", "--no-pager", "-o", "json", "-u", UNIT, filter]);
    ensure!(host, output.success(), "journalctl {filter}:\n{output}");
    output
        .stdout
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

#[test]
fn journalctl_by_deployment_id_returns_that_deployments_lines_and_no_others() {
    let Some(host) = Host::start("journal-fields") else {
        return;
    };
    host.configure(&[]);
    host.dpkg_install(Package::Deb);
    let hooks = [("AfterInstall", "echo installed")];
    let first = host.deploy("app/journal-1.tgz", &revision("one", &hooks), None);
    host.expect_success(&first);
    let second = host.deploy("app/journal-2.tgz", &revision("two", &hooks), Some(&first));
    host.expect_success(&second);
    host.container.run(&["journalctl", "--sync"]);

    for (mine, other) in [(&first, &second), (&second, &first)] {
        let id = &mine.deployment_id;
        let entries = journal_entries(&host, &format!("DEPLOYMENT_ID={id}"));
        let field =
            |entry: &serde_json::Value, name: &str| entry[name].as_str().map(str::to_string);
        let events: std::collections::BTreeSet<String> = entries
            .iter()
            .filter_map(|e| field(e, "LIFECYCLE_EVENT"))
            .collect();
        ensure!(
            host,
            [
                "DownloadBundle",
                "Install",
                "AfterInstall",
                "ValidateService"
            ]
            .iter()
            .all(|e| events.contains(*e)),
            "the lines of {id} name each command's lifecycle event: {events:?}"
        );
        for entry in &entries {
            ensure_eq!(
                host,
                field(entry, "DEPLOYMENT_ID").as_ref(),
                Some(id),
                "only {id}'s lines: {entry}"
            );
            ensure_eq!(
                host,
                field(entry, "DEPLOYMENT_GROUP_ID").as_ref(),
                Some(&mine.group_id),
                "each line names the deployment group: {entry}"
            );
            ensure!(
                host,
                field(entry, "HOST_COMMAND").is_some(),
                "each line names its command: {entry}"
            );
            let message = field(entry, "MESSAGE").unwrap_or_default();
            ensure!(
                host,
                !message.contains(&other.deployment_id),
                "no line of {} in {id}'s: {message}",
                other.deployment_id
            );
        }
        ensure!(
            host,
            entries
                .iter()
                .any(|e| field(e, "HOOK_SCRIPT").as_deref() == Some("scripts/AfterInstall.sh")),
            "a line logged while the hook ran names it"
        );
    }
    let all = journal_entries(&host, &format!("_SYSTEMD_UNIT={UNIT}.service"));
    ensure!(
        host,
        all.iter().any(|e| e["DEPLOYMENT_ID"].is_null()),
        "lines outside any deployment (start, polling) have no DEPLOYMENT_ID"
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

const HOOK_PID: &str = "/var/tmp/hook.pid";
const FAILED_AFTER_RESTART: &str =
    "Failed: Failing in-progress lifecycle event after an agent restart.";

/// A revision whose BeforeInstall hook writes its pid to [`HOOK_PID`], then
/// sleeps `seconds`.
fn sleeping_revision(tag: &str, seconds: u32) -> Revision {
    revision(
        tag,
        &[(
            "BeforeInstall",
            &format!(
                "echo $$ > {HOOK_PID}.tmp && mv {HOOK_PID}.tmp {HOOK_PID}\nsleep {seconds}\necho slept"
            ),
        )],
    )
}

impl Host {
    /// The record of `deployment`'s command `name`.
    fn command(&self, deployment: &Deployment, name: &str) -> Option<CommandRecord> {
        self.bed
            .emulator
            .deployment(&deployment.deployment_id)
            .and_then(|d| d.command(name).cloned())
    }

    /// The status and diagnostics `name` was completed with.
    fn completion(&self, deployment: &Deployment, name: &str) -> Option<(String, Diagnostics)> {
        self.command(deployment, name).and_then(|c| {
            c.completion()
                .map(|completion| completion.status.clone())
                .zip(c.diagnostics().cloned())
        })
    }

    /// Installs the package with `extra_lines` in the configuration, starts
    /// `revision` and waits until its BeforeInstall hook runs; the hook's pid.
    fn deploy_until_hook_runs(
        &self,
        extra_lines: &[&str],
        revision: &Revision,
    ) -> (Deployment, u32) {
        self.configure(extra_lines);
        self.dpkg_install(Package::Deb);
        let deployment = self.deploy("app/hook.tgz", revision, None);
        let hook = self.read_pid(HOOK_PID, DEPLOYMENT_DEADLINE);
        ensure!(self, hook.is_some(), "the BeforeInstall hook started");
        (deployment, hook.unwrap())
    }
}

#[test]
fn systemctl_stop_waits_for_the_running_hook_and_reports_it_before_the_agent_exits() {
    let Some(host) = Host::start("stop-waits") else {
        return;
    };
    let (deployment, hook) = host.deploy_until_hook_runs(
        &[":kill_agent_max_wait_time_seconds: 60"],
        &sleeping_revision("waits", 4),
    );
    let agent = host.main_pid();
    let started = Instant::now();
    host.systemctl("stop");
    let took = started.elapsed();
    let stopped_at = std::time::SystemTime::now();
    ensure!(
        host,
        took >= Duration::from_secs(2) && took < Duration::from_secs(30),
        "systemctl stop waits for the hook's 4 s (took {took:?})"
    );
    ensure!(
        host,
        !host.alive(hook) && !host.alive(agent),
        "the hook ended, then the agent exited"
    );
    let completion = host
        .command(&deployment, "BeforeInstall")
        .and_then(|c| c.completion().cloned());
    ensure!(
        host,
        completion
            .as_ref()
            .is_some_and(|c| c.status == "Succeeded" && c.at <= stopped_at),
        "BeforeInstall was reported Succeeded before systemctl stop returned: {completion:?}"
    );
    ensure_eq!(
        host,
        host.unit_state(),
        "inactive",
        "a clean stop (not failed)"
    );
    ensure!(
        host,
        host.command(&deployment, "Install")
            .is_some_and(|c| c.times_issued == 0),
        "the stopping agent takes no further command"
    );
}

#[test]
fn systemctl_stop_stops_a_hook_outlasting_the_max_wait_and_reports_it_failed_before_exit() {
    let Some(host) = Host::start("stop-max-wait") else {
        return;
    };
    let (deployment, hook) = host.deploy_until_hook_runs(
        &[":kill_agent_max_wait_time_seconds: 3"],
        &sleeping_revision("outlasts", 300),
    );
    let started = Instant::now();
    host.systemctl("stop");
    let took = started.elapsed();
    let stopped_at = std::time::SystemTime::now();
    ensure!(
        host,
        took >= Duration::from_secs(3) && took < Duration::from_secs(20),
        "systemctl stop waits the 3 s of :kill_agent_max_wait_time_seconds:, no longer (took {took:?})"
    );
    ensure!(
        host,
        !host.alive(hook),
        "the agent stopped the hook before it exited"
    );
    let completion = host
        .command(&deployment, "BeforeInstall")
        .and_then(|c| c.completion().cloned());
    ensure!(
        host,
        completion
            .as_ref()
            .is_some_and(|c| c.status == "Failed" && c.at <= stopped_at),
        "BeforeInstall was reported Failed before systemctl stop returned: {completion:?}"
    );
    let (_, diagnostics) = host
        .completion(&deployment, "BeforeInstall")
        .expect("completed above");
    ensure!(
        host,
        diagnostics.message.contains("shutting down"),
        "the diagnostics say the agent stopped it: {diagnostics:?}"
    );
    ensure_eq!(host, host.unit_state(), "inactive", "a clean stop");
}

#[test]
fn systemctl_restart_mid_hook_reports_the_cut_short_command_failed_then_the_new_agent_deploys() {
    let Some(host) = Host::start("restart-mid-hook") else {
        return;
    };
    let (first, hook) = host.deploy_until_hook_runs(
        &[":kill_agent_max_wait_time_seconds: 3"],
        &sleeping_revision("cut-short", 300),
    );
    let old_agent = host.main_pid();
    let started = Instant::now();
    host.systemctl("restart");
    let took = started.elapsed();
    let restarted_at = std::time::SystemTime::now();
    let new_agent = host.main_pid();
    ensure!(
        host,
        host.unit_state() == "active" && new_agent != old_agent && new_agent != 0,
        "a new agent runs (pid {old_agent} -> {new_agent})"
    );
    ensure!(
        host,
        took >= Duration::from_secs(3) && took < Duration::from_secs(20),
        "the restart's stop waits the 3 s max wait for the hook (took {took:?})"
    );
    ensure!(host, !host.alive(hook), "the cut-short hook no longer runs");
    // The stopping agent reports the command it cut short itself, before it
    // exits: ScriptFailed (4), "shutting down". FailedAfterRestart (7), from
    // the next agent, is for an agent that could not report (kill -9, below).
    let completion = host.completion(&first, "BeforeInstall");
    ensure!(
        host,
        completion
            .as_ref()
            .is_some_and(|(status, d)| status == "Failed"
                && d.error_code == 4
                && d.message.contains("shutting down")),
        "BeforeInstall is reported Failed by the stopping agent: {completion:?}"
    );
    let completed_at = host
        .command(&first, "BeforeInstall")
        .and_then(|c| c.completion().map(|c| c.at))
        .expect("reported above");
    ensure!(
        host,
        completed_at <= restarted_at,
        "reported before systemctl restart returned"
    );

    let second = host.deploy("app/second.tgz", &revision("second", &[]), Some(&first));
    host.expect_success(&second);
    ensure_eq!(
        host,
        host.container.read("/srv/app/index.html"),
        "<p>second</p>\n",
        "the next deployment installs"
    );
}

#[test]
fn agent_killed_mid_hook_is_restarted_by_systemd_and_reports_the_command_failed_after_restart() {
    let Some(host) = Host::start("kill-9") else {
        return;
    };
    let (first, hook) = host.deploy_until_hook_runs(&[], &sleeping_revision("killed", 300));
    let old_agent = host.main_pid();
    let kill = host.container.run(&["kill", "-9", &old_agent.to_string()]);
    ensure!(host, kill.success(), "kill -9 the agent:\n{kill}");
    let killed_at = Instant::now();
    // Restart=on-failure, RestartSec=10s.
    let restarted = wait_until(Duration::from_secs(40), || {
        let pid = host.main_pid();
        pid != 0 && pid != old_agent && host.unit_state() == "active"
    });
    ensure!(
        host,
        restarted,
        "systemd restarts the agent after kill -9 (Restart=on-failure)"
    );
    let waited = killed_at.elapsed();
    ensure!(
        host,
        waited >= Duration::from_secs(9),
        "after RestartSec=10s (restarted after {waited:?})"
    );
    let reported = host.bed.emulator.wait_until(Duration::from_secs(30), |_| {
        host.completion(&first, "BeforeInstall").is_some()
    });
    ensure!(
        host,
        reported,
        "the restarted agent reports the interrupted command"
    );
    let (status, diagnostics) = host
        .completion(&first, "BeforeInstall")
        .expect("reported above");
    ensure_eq!(
        host,
        (
            status.as_str(),
            diagnostics.error_code,
            diagnostics.message.as_str()
        ),
        ("Failed", 7, FAILED_AFTER_RESTART),
        "FailedAfterRestart"
    );
    // KillMode=process: the hook a SIGKILLed agent left behind still runs in
    // the unit's cgroup, as on a host; it is this test's to end.
    if host.alive(hook) {
        host.container.run(&["kill", "-9", &hook.to_string()]);
    }

    let second = host.deploy("app/second.tgz", &revision("second", &[]), Some(&first));
    host.expect_success(&second);
    ensure_eq!(
        host,
        host.container.read("/srv/app/index.html"),
        "<p>second</p>\n",
        "the next deployment installs"
    );
}

#[test]
fn systemctl_reload_applies_a_changed_wait_between_runs_without_restarting_the_agent() {
    let Some(host) = Host::start("reload") else {
        return;
    };
    host.configure(&[]);
    host.dpkg_install(Package::Deb);
    let polled = host.bed.emulator.wait_until(Duration::from_secs(30), |e| {
        e.count(Operation::PollHostCommand) >= 2
    });
    ensure!(host, polled, "the agent polls every second");
    let agent = host.main_pid();

    let mut config = host.agent_config(&[]);
    config.wait_between_runs = 3;
    host.container
        .write(CONFIG, config.agent_yaml(), 0o644)
        .expect("the configuration can be rewritten");
    host.systemctl("reload");
    let reloaded = std::time::SystemTime::now();
    let polls_since = |e: &codedeploy_e2e::Emulator| {
        e.calls_of(Operation::PollHostCommand)
            .into_iter()
            .filter(|c| c.at > reloaded)
            .collect::<Vec<_>>()
    };
    host.bed
        .emulator
        .wait_until(Duration::from_secs(30), |e| polls_since(e).len() >= 4);
    let polls = polls_since(&host.bed.emulator);
    ensure!(host, polls.len() >= 4, "the agent goes on polling");
    // The first gap may straddle the reload; each idle poll is held 0.5 s
    // by the emulator, then the agent waits.
    for pair in polls.windows(2).skip(1) {
        let gap = pair[1].at.duration_since(pair[0].at).unwrap_or_default();
        ensure!(
            host,
            gap >= Duration::from_millis(2900),
            "polls are now 3 s apart, not 1 s (gap {gap:?})"
        );
    }
    ensure_eq!(
        host,
        host.main_pid(),
        agent,
        "reload did not restart the agent"
    );
    ensure!(
        host,
        host.container
            .read(AGENT_LOG)
            .contains("SIGHUP: configuration reloaded"),
        "the agent logs the reload"
    );
}

/// The names in the container's /etc/codedeploy-agent/conf, sorted.
fn conf_files(host: &Host) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(host.container.host_path("/etc/codedeploy-agent/conf"))
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
    names.sort();
    names
}

/// Is `path` a file or folder in the container?
fn present(host: &Host, path: &str) -> bool {
    host.container.exists(path)
}

#[test]
fn dpkg_upgrade_restarts_the_service_keeping_the_operators_configuration_and_remove_and_purge_do_what_readme_says(
) {
    let Some(host) = Host::start("upgrade-remove") else {
        return;
    };
    host.configure(&[]);
    host.dpkg_install(Package::Deb);
    let first = host.deploy("app/first.tgz", &revision("first", &[]), None);
    host.expect_success(&first);
    let deployment_dir = format!("{ROOT_DIR}/{}/{}", first.group_id, first.deployment_id);
    ensure!(
        host,
        present(&host, &deployment_dir),
        "{deployment_dir} exists"
    );

    // The operator changes the configuration; the upgrade is a plain dpkg -i,
    // which must neither prompt nor replace it.
    host.configure(&[":max_revisions: 3"]);
    let operators = host.container.read(CONFIG);
    // (The first install's --force-confold left the package's file beside
    // the seeded one as .dpkg-dist.)
    let conf_before = conf_files(&host);
    let old_agent = host.main_pid();
    let upgrade = host.dpkg_install_plain(Package::DebNewer);
    let restarted = wait_until(Duration::from_secs(30), || {
        let pid = host.main_pid();
        pid != 0 && pid != old_agent && host.unit_state() == "active"
    });
    ensure!(
        host,
        restarted,
        "the upgrade restarted the running agent:\n{upgrade}"
    );
    // Not /opt/codedeploy-agent/.version: the restarted agent writes its
    // own version there, and both packages hold the same binary.
    let installed = host
        .container
        .run(&["dpkg-query", "-W", "-f=${Version}", "codedeploy-agent"]);
    ensure_eq!(
        host,
        installed.stdout,
        format!("{}-1", newer_version()),
        "the new version is installed"
    );
    ensure_eq!(
        host,
        host.container.read(CONFIG),
        operators,
        "the operator's configuration is kept"
    );
    ensure_eq!(
        host,
        conf_files(&host),
        conf_before,
        "no new configuration file beside it"
    );
    let second = host.deploy("app/second.tgz", &revision("second", &[]), Some(&first));
    host.expect_success(&second);

    let agent = host.main_pid();
    let remove = host
        .container
        .run(&["apt-get", "remove", "-y", "codedeploy-agent"]);
    ensure!(host, remove.success(), "apt-get remove:\n{remove}");
    ensure!(
        host,
        !host.alive(agent),
        "apt-get remove stopped the agent (pid {agent})"
    );
    let status = host.container.run(&[
        "dpkg-query",
        "-W",
        "-f=${db:Status-Abbrev}",
        "codedeploy-agent",
    ]);
    ensure_eq!(host, status.stdout, "rc ", "removed, configuration kept");
    ensure!(
        host,
        !present(&host, "/opt/codedeploy-agent/bin/codedeploy-agent")
            && !present(&host, "/lib/systemd/system/codedeploy-agent.service")
            && !present(
                &host,
                "/etc/systemd/system/multi-user.target.wants/codedeploy-agent.service"
            ),
        "the binary, the unit and its enablement are gone"
    );
    ensure_eq!(
        host,
        host.container.read(CONFIG),
        operators,
        "the configuration stays"
    );
    ensure!(
        host,
        present(&host, &deployment_dir)
            && present(&host, &format!("{ROOT_DIR}/deployment-instructions"))
            && present(&host, AGENT_LOG),
        "the deployment root and the log stay"
    );

    let purge = host
        .container
        .run(&["apt-get", "remove", "--purge", "-y", "codedeploy-agent"]);
    ensure!(host, purge.success(), "apt-get remove --purge:\n{purge}");
    let status = host.container.run(&[
        "dpkg-query",
        "-W",
        "-f=${db:Status-Abbrev}",
        "codedeploy-agent",
    ]);
    ensure!(
        host,
        status.stdout.is_empty() || status.stdout == "un ",
        "purged: '{}'",
        status.stdout
    );
    for gone in [
        "/opt/codedeploy-agent",
        "/var/log/aws/codedeploy-agent",
        CONFIG,
        "/etc/default/codedeploy-agent",
    ] {
        ensure!(host, !present(&host, gone), "purge removes {gone}");
    }
    ensure!(
        host,
        present(&host, ON_PREMISES),
        "purge keeps the on-premises registration"
    );
    ensure_eq!(
        host,
        host.container.read("/srv/app/index.html"),
        "<p>second</p>\n",
        "files deployments installed elsewhere stay"
    );
}

/// `rpm -q --qf <format> codedeploy-agent` in the container.
fn rpm_query(host: &Host, format: &str) -> String {
    host.container
        .run(&["rpm", "-q", "--qf", format, "codedeploy-agent"])
        .stdout
}

/// There is no RPM-based root to be had here (packaging/README.md): the .rpm
/// goes into the Debian container with `--nodeps`, its scriptlets run
/// against the same real systemd.
#[test]
fn rpm_scriptlets_start_the_service_restart_it_on_upgrade_and_stop_it_on_erase() {
    let Some(host) = Host::start("rpm") else {
        return;
    };
    host.configure(&[]);
    let package = host.copy_package(Package::Rpm);
    let install = host.container.run(&["rpm", "-i", "--nodeps", &package]);
    ensure!(host, install.success(), "rpm -i:\n{install}");
    ensure!(
        host,
        !install.stderr.contains("refuse to start") && !install.stderr.contains("not running here"),
        "%post finds the CA chain and systemd:\n{install}"
    );
    let enabled = host.container.run(&["systemctl", "is-enabled", UNIT]);
    ensure_eq!(
        host,
        enabled.stdout_line(),
        "enabled",
        "%post enables the unit"
    );
    ensure_eq!(
        host,
        host.unit_state(),
        "active",
        "%post started the service"
    );
    ensure!(
        host,
        present(&host, "/usr/lib/systemd/system/codedeploy-agent.service")
            && present(&host, "/etc/sysconfig/codedeploy-agent"),
        "the rpm's unit and environment file are in the rpm places"
    );
    let first = host.deploy("app/first.tgz", &revision("first", &[]), None);
    host.expect_success(&first);

    host.configure(&[":max_revisions: 3"]);
    let operators = host.container.read(CONFIG);
    let conf_before = conf_files(&host);
    let old_agent = host.main_pid();
    let newer = host.copy_package(Package::RpmNewer);
    let upgrade = host.container.run(&["rpm", "-U", "--nodeps", &newer]);
    ensure!(host, upgrade.success(), "rpm -U:\n{upgrade}");
    let restarted = wait_until(Duration::from_secs(30), || {
        let pid = host.main_pid();
        pid != 0 && pid != old_agent && host.unit_state() == "active"
    });
    ensure!(
        host,
        restarted,
        "%post restarted the running agent:\n{upgrade}"
    );
    ensure_eq!(
        host,
        rpm_query(&host, "%{VERSION}"),
        newer_version().replace('-', "~"),
        "the new version is installed"
    );
    ensure_eq!(
        host,
        host.container.read(CONFIG),
        operators,
        "the operator's configuration is kept"
    );
    ensure_eq!(host, conf_files(&host), conf_before, "no .rpmnew beside it");
    let second = host.deploy("app/second.tgz", &revision("second", &[]), Some(&first));
    host.expect_success(&second);

    let agent = host.main_pid();
    let erase = host.container.run(&["rpm", "-e", "codedeploy-agent"]);
    ensure!(host, erase.success(), "rpm -e:\n{erase}");
    ensure!(
        host,
        !host.alive(agent),
        "%preun stopped the agent (pid {agent})"
    );
    let state = host.container.run(&["systemctl", "is-enabled", UNIT]);
    ensure!(
        host,
        !state.success(),
        "the unit is gone or disabled: {}",
        state.stdout_line()
    );
    ensure!(
        host,
        !present(&host, "/opt/codedeploy-agent/bin/codedeploy-agent")
            && !present(&host, "/usr/lib/systemd/system/codedeploy-agent.service"),
        "the binary and the unit are gone"
    );
    ensure_eq!(
        host,
        host.container.read(CONFIG),
        operators,
        "the changed configuration stays in place"
    );
    ensure!(
        host,
        !present(&host, &format!("{CONFIG}.rpmsave")),
        "not as .rpmsave"
    );
    ensure!(
        host,
        present(
            &host,
            &format!("{ROOT_DIR}/{}/{}", second.group_id, second.deployment_id)
        ),
        "the deployment root stays"
    );
}

/// A revision installing `webshop.service` (its `[Service]` lines) into
/// /etc/systemd/system, whose ApplicationStop and ApplicationStart run the
/// hook library's `systemd-unit.sh` (the event picks the action).
fn unit_revision(service: &str) -> Revision {
    let library = Path::new(env!("CARGO_MANIFEST_DIR")).join("../hooks/systemd-unit.sh");
    let script = std::fs::read(&library).expect("hooks/systemd-unit.sh can be read");
    Revision::new()
        .file(
            "appspec.yml",
            "version: 0.0\nos: linux\nfiles:\n  - source: unit\n    destination: /etc/systemd/system\n\
             hooks:\n  ApplicationStop:\n    - location: scripts/systemd-unit.sh\n\
             \x20 ApplicationStart:\n    - location: scripts/systemd-unit.sh\n",
        )
        .file(
            "unit/webshop.service",
            format!("[Service]\n{service}\n"),
        )
        .script("scripts/systemd-unit.sh", script)
        .file(
            "scripts/hooks.conf",
            "SERVICE_UNIT=webshop.service\nSERVICE_DAEMON_RELOAD=yes\nSERVICE_WAIT=15\n",
        )
}

/// Waits for `deployment` to fail, which must be at ApplicationStart; the
/// log tail the script's failure was reported with.
fn application_start_failure_log(host: &Host, deployment: &Deployment) -> String {
    let outcome = host
        .bed
        .emulator
        .wait_for_deployment_end(&deployment.deployment_id, DEPLOYMENT_DEADLINE);
    let failed = outcome.failed_command().cloned();
    ensure_eq!(
        host,
        failed.as_ref().map(|c| c.command_name.as_str()),
        Some("ApplicationStart"),
        "the deployment fails at ApplicationStart: {outcome}"
    );
    failed
        .and_then(|c| c.diagnostics().cloned())
        .map(|d| d.log)
        .unwrap_or_default()
}

#[test]
fn hook_library_systemd_unit_starts_stops_and_reports_a_failing_unit_with_the_real_systemctl() {
    let Some(host) = Host::start("systemd-unit") else {
        return;
    };
    host.configure(&[]);
    host.dpkg_install(Package::Deb);
    let first = host.deploy(
        "app/unit.tgz",
        &unit_revision("ExecStart=/bin/sleep 3600"),
        None,
    );
    host.expect_success(&first);
    let webshop = host
        .container
        .run(&["systemctl", "is-active", "webshop.service"]);
    ensure_eq!(
        host,
        webshop.stdout_line(),
        "active",
        "ApplicationStart started the revision's unit (daemon-reload first)"
    );
    let webshop_pid: u32 = host
        .container
        .run(&["systemctl", "show", "-P", "MainPID", "webshop.service"])
        .stdout_line()
        .parse()
        .unwrap_or(0);

    // The next revision's unit cannot start (Type=exec: systemctl start
    // waits for the exec, which fails): its ApplicationStart fails the
    // deployment, after the first revision's ApplicationStop stopped the
    // running one.
    let second = host.deploy(
        "app/unit-failing.tgz",
        &unit_revision("Type=exec\nExecStart=/opt/webshop/missing-binary"),
        Some(&first),
    );
    let log = application_start_failure_log(&host, &second);
    let stop = host.command(&second, "ApplicationStop");
    ensure_eq!(
        host,
        stop.as_ref()
            .and_then(|c| c.completion().map(|c| c.status.as_str())),
        Some("Succeeded"),
        "ApplicationStop stopped the first revision's unit"
    );
    ensure!(
        host,
        webshop_pid != 0 && !host.alive(webshop_pid),
        "the first unit's process (pid {webshop_pid}) is gone"
    );
    ensure!(
        host,
        log.contains("systemctl start webshop.service failed") && log.contains("Active: failed"),
        "the script says the unit failed and shows its status: {log}"
    );

    // A Type=simple unit is active as soon as it is forked: one whose
    // process exits a moment later still fails ApplicationStart.
    let third = host.deploy(
        "app/unit-dying.tgz",
        &unit_revision("ExecStart=/bin/sh -c 'sleep 1; exit 3'"),
        Some(&second),
    );
    let log = application_start_failure_log(&host, &third);
    ensure!(
        host,
        log.contains("webshop.service was active, then"),
        "the script says the unit died after it was active: {log}"
    );
}

/// The overall exposure score `systemd-analyze security` ends with
/// ("→ Overall exposure level for codedeploy-agent.service: 9.6 UNSAFE :-{").
fn exposure(output: &str) -> Option<(f64, String)> {
    let line = output
        .lines()
        .find(|l| l.contains("Overall exposure level"))?;
    let mut words = line.split_once(".service: ")?.1.split_whitespace();
    let score = words.next()?.parse().ok()?;
    Some((score, words.next().unwrap_or_default().to_string()))
}

/// `systemd-analyze security codedeploy-agent.service`, as packaging/README.md
/// records it.
const RECORDED_EXPOSURE: f64 = 9.6;

#[test]
fn systemd_analyze_security_scores_the_installed_unit_as_recorded() {
    let Some(host) = Host::start("security") else {
        return;
    };
    host.configure(&[]);
    host.dpkg_install(Package::Deb);
    let analysis = host.container.run(&[
        "systemd-analyze",
        "security",
        "--no-pager",
        &format!("{UNIT}.service"),
    ]);
    let score = exposure(&analysis.stdout);
    ensure!(
        host,
        score.is_some(),
        "systemd-analyze security gives an exposure score:\n{analysis}"
    );
    let (score, verdict) = score.unwrap();
    eprintln!("codedeploy-e2e: systemd-analyze security {UNIT}.service: {score} {verdict}");
    // Recorded in packaging/README.md (bookworm's systemd 252), beside the
    // unit's reason for each directive left out: a unit change that moves
    // the score updates the record.
    ensure!(
        host,
        (score - RECORDED_EXPOSURE).abs() < 0.05,
        "the exposure score recorded in packaging/README.md ({RECORDED_EXPOSURE}) still holds: \
         {score} {verdict}\n{analysis}"
    );
    ensure!(
        host,
        analysis.stdout.contains("✓ LockPersonality="),
        "LockPersonality=yes, the one directive that is on, counts:\n{analysis}"
    );
}

/// `/opt/codedeploy-agent/bin/codedeploy-agent VERB` inside the container.
fn agent_verb(host: &Host, args: &[&str]) -> CommandOutput {
    let mut argv = vec!["/opt/codedeploy-agent/bin/codedeploy-agent"];
    argv.extend_from_slice(args);
    host.container.run(&argv)
}

#[test]
fn the_official_verbs_act_through_systemctl_and_status_reads_the_disk() {
    let Some(host) = Host::start("verbs") else {
        return;
    };
    let (deployment, hook) = host.deploy_until_hook_runs(
        &[":kill_agent_max_wait_time_seconds: 60"],
        &sleeping_revision("verbs", 600),
    );
    let agent = host.main_pid();

    let status = agent_verb(&host, &["status"]);
    ensure_eq!(
        host,
        status.code(),
        Some(0),
        "status while a hook runs:\n{status}"
    );
    ensure!(
        host,
        status
            .stdout
            .starts_with(&format!("codedeploy-agent: running (pid {agent}, since "))
            && status.stdout.contains(&format!(
                "  {} BeforeInstall for ",
                deployment.deployment_id
            ))
            && status
                .stdout
                .contains("script scripts/BeforeInstall.sh since "),
        "status names the agent, the command and the hook in progress:\n{status}"
    );
    let json = agent_verb(&host, &["status", "--json"]);
    let parsed: serde_json::Value = serde_json::from_str(&json.stdout).unwrap_or_default();
    ensure_eq!(
        host,
        parsed["in_progress"][0]["deployment_id"].as_str(),
        Some(deployment.deployment_id.as_str()),
        "status --json parses and names the deployment:\n{json}"
    );

    // `restart` goes through systemd: a new main process, the unit active.
    let _ = host.container.run(&["kill", "-KILL", &hook.to_string()]);
    let restarted = agent_verb(&host, &["restart"]);
    ensure!(
        host,
        restarted.success()
            && restarted
                .stdout
                .contains("systemctl restart codedeploy-agent.service"),
        "restart is systemctl restart:\n{restarted}"
    );
    let new_agent = host.main_pid();
    ensure!(
        host,
        new_agent != 0 && new_agent != agent && host.unit_state() == "active",
        "a new agent runs under the unit (was {agent}, now {new_agent})"
    );

    let stopped = agent_verb(&host, &["stop"]);
    ensure!(host, stopped.success(), "stop:\n{stopped}");
    ensure_eq!(
        host,
        host.unit_state(),
        "inactive",
        "stop is systemctl stop"
    );
    let status = agent_verb(&host, &["status"]);
    ensure_eq!(
        host,
        status.code(),
        Some(3),
        "status once stopped:\n{status}"
    );
    ensure!(
        host,
        status.stdout.contains(&format!(
            "{} FAILED at BeforeInstall",
            deployment.deployment_id
        )) && status
            .stdout
            .contains("scripts.log: /opt/codedeploy-agent/deployment-root/"),
        "status keeps the last deployment's result and its scripts.log:\n{status}"
    );

    let started = agent_verb(&host, &["start"]);
    ensure!(
        host,
        started.success() && host.unit_state() == "active",
        "start is systemctl start:\n{started}"
    );
    let version = agent_verb(&host, &["--version"]);
    let on_disk = host.container.read("/opt/codedeploy-agent/.version");
    ensure_eq!(
        host,
        version.stdout,
        on_disk,
        "--version prints what .version holds"
    );
}

/// Names the agent binary the packages are made from; scripts/test sets it to
/// its glibc 2.17 build (packaging/glibc-floor).
const PACKAGE_AGENT_BINARY: &str = "PACKAGE_AGENT_BINARY";

/// The glibc 2.17 build of the agent, when [`PACKAGE_AGENT_BINARY`] names it.
fn glibc_floor_binary() -> Option<PathBuf> {
    std::env::var_os(PACKAGE_AGENT_BINARY)
        .filter(|path| !path.is_empty())
        .map(PathBuf::from)
}

/// The agent binary the packages are made from: the glibc 2.17 build, else
/// (plain `cargo test`) this test build's own, which needs the build host's
/// glibc; that is said once.
fn packaged_agent_binary() -> PathBuf {
    glibc_floor_binary().unwrap_or_else(|| {
        static NOTED: std::sync::Once = std::sync::Once::new();
        NOTED.call_once(|| {
            eprintln!(
                "codedeploy-e2e: {PACKAGE_AGENT_BINARY} is not set: the packages hold this test \
                 build's codedeploy-agent, not the glibc 2.17 build scripts/test makes"
            )
        });
        PathBuf::from(env!("CARGO_BIN_EXE_codedeploy-agent"))
    })
}

impl Host {
    /// [`Host::start`] on a container of `release`.
    fn start_on(name: &str, release: codedeploy_e2e::container::Release) -> Option<Host> {
        let container = match Container::boot_on(name, release) {
            Ok(container) => container,
            Err(reason) => {
                eprintln!("skipping: {reason}");
                return None;
            }
        };
        eprintln!(
            "codedeploy-e2e: {} container {} booted in {:.2} s",
            release.suite,
            container.machine(),
            container.booted_in().as_secs_f64()
        );
        let bed = TestBed::start(name);
        Some(Host { container, bed })
    }
}

#[test]
fn the_glibc_2_17_build_installs_and_deploys_on_debian_11() {
    if glibc_floor_binary().is_none() {
        eprintln!(
            "skipping: {PACKAGE_AGENT_BINARY} is not set (scripts/test sets it to the glibc 2.17 \
             build; this test build needs the host's glibc, newer than Debian 11's 2.31)"
        );
        return;
    }
    let Some(host) = Host::start_on("bullseye", codedeploy_e2e::container::BULLSEYE) else {
        return;
    };
    let debian = host.container.read("/etc/debian_version");
    ensure!(
        host,
        debian.starts_with("11."),
        "the container is Debian 11: {debian}"
    );
    let ldd = host.container.run(&["ldd", "--version"]);
    let glibc = ldd.stdout.lines().next().unwrap_or_default();
    ensure!(
        host,
        glibc.ends_with(" 2.31"),
        "its glibc is 2.31, older than the 2.34 a native build needs:\n{ldd}"
    );

    host.configure(&[]);
    host.dpkg_install(Package::Deb);
    for binary in ["codedeploy-agent", "codedeploy-local"] {
        let version = host
            .container
            .run(&[&format!("/opt/codedeploy-agent/bin/{binary}"), "--version"]);
        ensure!(
            host,
            version.success() && version.stdout.contains(workspace_version()),
            "{binary} starts on glibc 2.31:\n{version}"
        );
    }
    ensure_eq!(
        host,
        host.unit_state(),
        "active",
        "dpkg -i started the service under systemd 247"
    );

    let deployment = host.deploy(
        "app/bullseye.tgz",
        &revision(
            "bullseye",
            &[("AfterInstall", "systemctl is-active codedeploy-agent")],
        ),
        None,
    );
    host.expect_success(&deployment);
    ensure_eq!(
        host,
        host.container.read("/srv/app/index.html"),
        "<p>bullseye</p>\n",
        "the revision is installed in the Debian 11 container"
    );
    ensure_eq!(
        host,
        host.unit_state(),
        "active",
        "the service runs on after the deployment"
    );
}
