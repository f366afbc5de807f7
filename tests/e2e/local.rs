//! `codedeploy-local`: the real binary deploying a local directory, local tar,
//! tgz and zip archives and an S3 object, with all events and with `--events`
//! subsets and custom events; its option checks and failure output; and that a
//! local deployment leaves the same files, modes and hook runs as the agent
//! deploying the same revision for the service.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use codedeploy_e2e::{BundleType, Deployment, Revision, TestBed};

use crate::support::*;

/// Upper bound for one local deployment.
const LOCAL_DEADLINE: Duration = Duration::from_secs(60);

/// Every event a local deployment runs by default that can have scripts.
const LOCAL_HOOKS: [&str; 9] = [
    "BeforeBlockTraffic",
    "AfterBlockTraffic",
    "ApplicationStop",
    "BeforeInstall",
    "AfterInstall",
    "ApplicationStart",
    "ValidateService",
    "BeforeAllowTraffic",
    "AfterAllowTraffic",
];

fn local_binary() -> &'static str {
    env!("CARGO_BIN_EXE_codedeploy-local")
}

/// What one `codedeploy-local` run did.
pub(crate) struct LocalRun {
    pub(crate) code: Option<i32>,
    pid: u32,
    stdout: String,
    stderr: String,
}

impl LocalRun {
    pub(crate) fn describe(&self) -> String {
        format!(
            "exit {:?}\n--- stdout ---\n{}--- stderr ---\n{}",
            self.code, self.stdout, self.stderr
        )
    }

    /// `<root>/<group>/<deployment id>` from the "Starting ..." line.
    fn deployment_dir(&self) -> PathBuf {
        let line = self
            .stdout
            .lines()
            .find_map(|l| l.strip_prefix("Starting to execute deployment from within folder "))
            .unwrap_or_else(|| panic!("no starting line\n{}", self.describe()));
        PathBuf::from(line)
    }

    fn deployment_id(&self) -> String {
        self.deployment_dir()
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
}

/// A host for local deployments: a temporary directory with an agent
/// configuration file whose deployment root and logs live inside it.
struct LocalHost {
    dir: tempfile::TempDir,
}

impl LocalHost {
    fn new(name: &str) -> LocalHost {
        LocalHost::with_extra(name, "")
    }

    fn with_extra(name: &str, extra_config: &str) -> LocalHost {
        let dir = tempfile::Builder::new()
            .prefix(&format!("codedeploy-local-{name}-"))
            .tempdir()
            .expect("a temporary directory");
        let host = LocalHost { dir };
        let config = format!(
            "---\n:root_dir: {}\n:log_dir: {}\n{extra_config}",
            host.root().display(),
            host.path().join("log").display()
        );
        std::fs::write(host.config(), config).expect("the configuration file can be written");
        host
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn root(&self) -> PathBuf {
        self.path().join("deployment-root")
    }

    fn config(&self) -> PathBuf {
        self.path().join("codedeployagent.yml")
    }

    /// Runs `codedeploy-local -c <config> ARGS`, bounded in time.
    fn run(&self, args: &[&str]) -> LocalRun {
        self.run_with_env(args, &[])
    }

    fn run_with_env(&self, args: &[&str], env: &[(&str, &str)]) -> LocalRun {
        let config = self.config();
        let mut full: Vec<&str> = vec!["-c", config.to_str().expect("UTF-8 path")];
        full.extend_from_slice(args);
        run_local(self.path(), &full, env)
    }
}

/// Runs the binary with output captured to files; kills it at the deadline.
pub(crate) fn run_local(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> LocalRun {
    let stamp = format!("{}", fastrand_suffix());
    let out_path = dir.join(format!("local-{stamp}.stdout"));
    let err_path = dir.join(format!("local-{stamp}.stderr"));
    let mut command = Command::new(local_binary());
    command
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).expect("stdout file"))
        .stderr(std::fs::File::create(&err_path).expect("stderr file"));
    for name in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_PROFILE",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "http_proxy",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
    ] {
        command.env_remove(name);
    }
    command.envs(env.iter().copied());
    let mut child = command.spawn().expect("codedeploy-local starts");
    let deadline = Instant::now() + LOCAL_DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().expect("the child can be waited for") {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let run = LocalRun {
        code: status.and_then(|s| s.code()),
        pid: child.id(),
        stdout: std::fs::read_to_string(&out_path).unwrap_or_default(),
        stderr: std::fs::read_to_string(&err_path).unwrap_or_default(),
    };
    assert!(
        status.is_some(),
        "codedeploy-local did not finish in time\n{}",
        run.describe()
    );
    run
}

fn fastrand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
}

/// A revision installing `content/` to `install`, with a recording hook
/// (tagged `tag`) for every event in `events`.
fn recording_revision(tag: &str, install: &Path, hooks_log: &Path, events: &[&str]) -> Revision {
    let hooks: Vec<Hook<'_>> = events
        .iter()
        .map(|e| hook(e, "scripts/record.sh"))
        .collect();
    Revision::new()
        .file("appspec.yml", appspec("content", install, &hooks))
        .file("content/index.html", format!("<h1>{tag}</h1>\n"))
        .file_with_mode("content/private/key.pem", "secret\n", 0o600)
        .script("content/bin/run.sh", "#!/bin/sh\necho run\n")
        .symlink("content/current", "index.html")
        .script("scripts/record.sh", recording_hook(tag, hooks_log))
}

/// A file tree: relative path → kind, mode, owner, content or link target.
fn snapshot(root: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let relative = path.strip_prefix(root).unwrap().display().to_string();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let owner = format!("{}:{}", meta.uid(), meta.gid());
            let described = if meta.file_type().is_symlink() {
                format!("link -> {}", std::fs::read_link(&path).unwrap().display())
            } else if meta.is_dir() {
                walk(root, &path, out);
                format!("dir {:o} {owner}", meta.mode() & 0o7777)
            } else {
                format!(
                    "file {:o} {owner} {:?}",
                    meta.mode() & 0o7777,
                    std::fs::read_to_string(&path).unwrap_or_default()
                )
            };
            out.insert(relative, described);
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// The recorded hook lines with the deployment id replaced, so that runs
/// of two deployments compare.
fn hook_lines_without(hooks_log: &Path, deployment_id: &str) -> Vec<String> {
    lines(hooks_log)
        .iter()
        .map(|l| l.replace(deployment_id, "<deployment>"))
        .collect()
}

/// The scripts.log lines without their timestamps.
fn scripts_log_events(deployment_dir: &Path, deployment_id: &str) -> Vec<String> {
    lines(&deployment_dir.join("logs/scripts.log"))
        .iter()
        .map(|l| {
            l.get(20..)
                .unwrap_or("")
                .replace(deployment_id, "<deployment>")
        })
        .collect()
}

fn assert_succeeded(run: &LocalRun) {
    assert_eq!(
        run.code,
        Some(0),
        "the local deployment should succeed\n{}",
        run.describe()
    );
    assert!(
        run.stdout
            .lines()
            .any(|l| l == "AppSpec file valid. Local deployment successful"),
        "{}",
        run.describe()
    );
}

#[test]
fn each_bundle_type_deploys_with_all_default_events() {
    for kind in ["directory", "tar", "tgz", "zip"] {
        let host = LocalHost::new(kind);
        let install = host.path().join("srv/app");
        let hooks_log = host.path().join("hooks.log");
        let revision = recording_revision(kind, &install, &hooks_log, &LOCAL_HOOKS);
        let location = match kind {
            "directory" => {
                let dir = host.path().join("bundle");
                write_tree(&revision, &dir);
                dir
            }
            archive => {
                let bundle_type = match archive {
                    "tar" => BundleType::Tar,
                    "tgz" => BundleType::Tgz,
                    _ => BundleType::Zip,
                };
                let file = host.path().join(format!("app.{archive}"));
                std::fs::write(&file, revision.build(bundle_type).unwrap()).unwrap();
                file
            }
        };
        let location = location.display().to_string();
        let run = host.run(&["-l", &location]);
        assert_succeeded(&run);

        let dir = run.deployment_dir();
        let id = run.deployment_id();
        assert_eq!(
            dir,
            host.root().join("default-local-deployment-group").join(&id)
        );
        let random = id.strip_prefix("d-").and_then(|r| r.strip_suffix("-local"));
        assert!(
            random.is_some_and(|r| r.len() == 9
                && r.chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())),
            "deployment id {id}"
        );
        // First deployment on this host: the events that run from the
        // installed revision have nothing to run.
        let expected: Vec<String> = LOCAL_HOOKS[3..]
            .iter()
            .map(|event| {
                format!(
                    "{kind} {event} {id} {location} LocalFleet default-local-deployment-group    "
                )
            })
            .collect();
        assert_eq!(
            lines(&hooks_log),
            expected,
            "{kind}: hook runs\n{}",
            run.describe()
        );
        for event in &LOCAL_HOOKS[..3] {
            assert!(
                run.stdout.contains(&format!(
                    "{event}: skipped (no earlier revision on this host to run it from)"
                )),
                "{kind}\n{}",
                run.describe()
            );
        }
        for event in [
            "DownloadBundle",
            "Install",
            "ValidateService",
            "AfterAllowTraffic",
        ] {
            assert!(
                run.stdout.contains(&format!("{event}: succeeded")),
                "{kind}\n{}",
                run.describe()
            );
        }
        assert_eq!(
            read(&install.join("index.html")),
            format!("<h1>{kind}</h1>\n")
        );
        let mode = |p: &str| {
            std::fs::metadata(install.join(p))
                .unwrap()
                .permissions()
                .mode()
                & 0o7777
        };
        assert_eq!(mode("private/key.pem"), 0o600, "{kind}");
        assert_eq!(mode("bin/run.sh"), 0o755, "{kind}");
        assert_eq!(
            std::fs::read_link(install.join("current")).unwrap(),
            Path::new("index.html"),
            "{kind}"
        );
        assert_eq!(
            dir.join("bundle.tar").exists(),
            kind != "directory",
            "{kind}: bundle.tar"
        );
        assert!(
            dir.join("deployment-archive/appspec.yml").is_file(),
            "{kind}"
        );
        assert!(run.stdout.contains(&format!(
            "See the deployment log at {} for more details",
            dir.join("logs/scripts.log").display()
        )));
        let last = host
            .root()
            .join("deployment-instructions/default-local-deployment-group_last_successful_install");
        assert_eq!(read(&last).trim(), dir.display().to_string(), "{kind}");
        assert!(
            read(&host.path().join("log/codedeploy-local.log")).contains(&id),
            "{kind}: the local log names the deployment"
        );
    }
}

#[test]
fn the_local_log_has_the_agent_logs_line_layout() {
    let host = LocalHost::new("log-layout");
    let install = host.path().join("srv/app");
    let hooks_log = host.path().join("hooks.log");
    let bundle = host.path().join("bundle");
    write_tree(
        &recording_revision("layout", &install, &hooks_log, &LOCAL_HOOKS),
        &bundle,
    );
    let run = host.run(&["-l", bundle.to_str().expect("UTF-8 path")]);
    assert_succeeded(&run);

    let log = read(&host.path().join("log/codedeploy-local.log"));
    let lines: Vec<&str> = log.lines().collect();
    assert!(lines.len() > 10, "the local log has lines:\n{log}");
    for line in &lines {
        assert!(
            log_line_component(line, "codedeploy-local", run.pid).is_some(),
            "every line has timestamp, level, [codedeploy-local({})] and component: {line:?}\n{log}",
            run.pid
        );
    }
    let tagged = format!("[deployment_id={}] ", run.deployment_id());
    assert!(
        lines.iter().any(|l| l.contains(&tagged)),
        "the deployment's lines carry its id as the agent's do ({tagged}):\n{log}"
    );
}

#[test]
fn a_second_local_deployment_stops_the_first_revision_and_replaces_its_files() {
    let host = LocalHost::new("second");
    let install = host.path().join("srv/app");
    let hooks_log = host.path().join("hooks.log");
    let bundle = host.path().join("bundle");
    write_tree(
        &recording_revision(
            "v1",
            &install,
            &hooks_log,
            &["ApplicationStop", "ApplicationStart"],
        )
        .file("content/v1-only.txt", "old\n"),
        &bundle,
    );
    let location = bundle.display().to_string();
    let first = host.run(&["-l", &location, "-a", "Shop"]);
    assert_succeeded(&first);

    std::fs::remove_dir_all(&bundle).unwrap();
    write_tree(
        &recording_revision(
            "v2",
            &install,
            &hooks_log,
            &["ApplicationStop", "ApplicationStart"],
        ),
        &bundle,
    );
    let second = host.run(&["-l", &location, "-a", "Shop"]);
    assert_succeeded(&second);

    let (id1, id2) = (first.deployment_id(), second.deployment_id());
    assert_ne!(id1, id2);
    let group = "LocalFleet default-local-deployment-group    ";
    assert_eq!(
        lines(&hooks_log),
        [
            format!("v1 ApplicationStart {id1} Shop {group}"),
            // ApplicationStop runs the first revision's script with the
            // second deployment's environment.
            format!("v1 ApplicationStop {id2} Shop {group}"),
            format!("v2 ApplicationStart {id2} Shop {group}"),
        ],
        "{}",
        second.describe()
    );
    assert!(
        !install.join("v1-only.txt").exists(),
        "the first revision's files are cleaned up"
    );
    assert_eq!(read(&install.join("index.html")), "<h1>v2</h1>\n");
}

#[test]
fn events_subsets_run_only_what_is_asked_plus_download_and_install() {
    let cases: &[(&str, &[&str], &[&str])] = &[
        (
            "ApplicationStart",
            &["ApplicationStart"],
            &["DownloadBundle", "Install", "ApplicationStart"],
        ),
        (
            "BeforeInstall,ValidateService",
            &["BeforeInstall", "ValidateService"],
            &[
                "DownloadBundle",
                "BeforeInstall",
                "Install",
                "ValidateService",
            ],
        ),
        (
            "DownloadBundle,Install",
            &[],
            &["DownloadBundle", "Install"],
        ),
    ];
    for (events, hooks_run, reported) in cases {
        let host = LocalHost::new("events");
        let install = host.path().join("srv/app");
        let hooks_log = host.path().join("hooks.log");
        let bundle = host.path().join("bundle");
        write_tree(
            &recording_revision("sub", &install, &hooks_log, &LOCAL_HOOKS),
            &bundle,
        );
        let run = host.run(&["-l", &bundle.display().to_string(), "-e", events]);
        assert_succeeded(&run);
        let ran: Vec<String> = lines(&hooks_log)
            .iter()
            .filter_map(|l| l.split(' ').nth(1).map(str::to_string))
            .collect();
        assert_eq!(ran, *hooks_run, "--events {events}\n{}", run.describe());
        let lines_reported: Vec<&str> = run
            .stdout
            .lines()
            .filter_map(|l| l.split_once(": ").map(|(event, _)| event))
            .filter(|e| !e.contains(' '))
            .collect();
        assert_eq!(
            lines_reported,
            *reported,
            "--events {events}\n{}",
            run.describe()
        );
        assert!(install.join("index.html").is_file(), "Install always runs");
    }
}

#[test]
fn custom_events_run_in_the_given_order_and_must_exist_in_the_appspec() {
    let host = LocalHost::new("custom");
    let install = host.path().join("srv/app");
    let hooks_log = host.path().join("hooks.log");
    let bundle = host.path().join("bundle");
    write_tree(
        &recording_revision(
            "c",
            &install,
            &hooks_log,
            &["Seed", "Warmup", "ValidateService"],
        ),
        &bundle,
    );
    let location = bundle.display().to_string();
    let run = host.run(&[
        "-l",
        &location,
        "-e",
        "DownloadBundle,Seed,Install,Warmup,ValidateService",
    ]);
    assert_succeeded(&run);
    let ran: Vec<String> = lines(&hooks_log)
        .iter()
        .filter_map(|l| l.split(' ').nth(1).map(str::to_string))
        .collect();
    assert_eq!(
        ran,
        ["Seed", "Warmup", "ValidateService"],
        "{}",
        run.describe()
    );

    // Custom events the appspec has but the run does not list fail Install.
    let run = host.run(&["-l", &location, "-e", "ValidateService"]);
    assert_eq!(run.code, Some(1), "{}", run.describe());
    assert!(
        run.stdout.contains("Install: FAILED")
            && run.stdout.contains(
                "appspec.yml file contains unknown lifecycle events: [\"Seed\", \"Warmup\"]"
            ),
        "{}",
        run.describe()
    );

    // A custom event the appspec does not have fails Install too.
    let run = host.run(&["-l", &location, "-e", "Seed,Warmup,Reindex"]);
    assert_eq!(run.code, Some(1), "{}", run.describe());
    assert!(
        run.stdout.contains(
            "You specified a lifecycle event which is not a default one and doesn't exist in your appspec.yml file: Reindex"
        ),
        "{}",
        run.describe()
    );
}

#[test]
fn a_failing_script_is_named_with_its_output_and_the_log() {
    let host = LocalHost::new("failing");
    let install = host.path().join("srv/app");
    let bundle = host.path().join("bundle");
    let revision = Revision::new()
        .file(
            "appspec.yml",
            appspec("content", &install, &[hook("AfterInstall", "scripts/migrate.sh")]),
        )
        .file("content/index.html", "x\n")
        .script(
            "scripts/migrate.sh",
            "#!/bin/sh\necho applying migration 42\necho 'relation \"users\" already exists' >&2\nexit 3\n",
        );
    write_tree(&revision, &bundle);
    let run = host.run(&["-l", &bundle.display().to_string()]);
    assert_eq!(run.code, Some(1), "{}", run.describe());
    let dir = run.deployment_dir();
    let expected = [
        "AfterInstall: FAILED".to_string(),
        format!(
            "Your local deployment failed while trying to execute your script at {}",
            dir.join("deployment-archive/scripts/migrate.sh").display()
        ),
        "Script at specified location: scripts/migrate.sh failed with exit code 3".to_string(),
        "    [stdout]applying migration 42".to_string(),
        "    [stderr]relation \"users\" already exists".to_string(),
        format!(
            "See the deployment log at {} for more details",
            dir.join("logs/scripts.log").display()
        ),
    ];
    for line in &expected {
        assert!(
            run.stdout.lines().any(|l| l == line),
            "missing {line:?}\n{}",
            run.describe()
        );
    }
    assert!(
        !run.stdout.contains("Local deployment successful"),
        "{}",
        run.describe()
    );
    assert!(
        !run.stdout.contains("ApplicationStart:"),
        "events after the failure do not run"
    );
    assert!(
        read(&dir.join("logs/scripts.log")).contains("[stderr]relation \"users\" already exists")
    );
}

#[test]
fn invalid_options_exit_2_without_deploying() {
    let host = LocalHost::new("options");
    let bundle = host.path().join("bundle");
    write_tree(
        &Revision::new().file("appspec.yml", "version: 0.0\nos: linux\n"),
        &bundle,
    );
    let no_appspec = host.path().join("empty");
    std::fs::create_dir_all(&no_appspec).unwrap();
    let b = bundle.display().to_string();
    let e = no_appspec.display().to_string();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["-t", "tgz"], "--type needs --bundle-location"),
        (
            vec!["-l", "does-not-exist"],
            "the bundle location does-not-exist does not exist",
        ),
        (
            vec!["-l", &b, "-t", "zip"],
            "is a directory, but --type is zip",
        ),
        (vec!["-l", &e], "has no appspec.yml at its top"),
        (vec!["-l", "http://example.com/app.tgz"], "only local paths"),
        (
            vec![
                "-l",
                "https://api.github.com/repos/acme/shop/zipball/0123abc",
                "-t",
                "tar",
            ],
            "asks GitHub for a zipball, but --type is tar",
        ),
        (vec!["-l", &b, "-b", "sometimes"], "--file-exists-behavior"),
        (
            vec!["-l", &b, "-e", "Install,DownloadBundle"],
            "Install before DownloadBundle",
        ),
        (vec!["-l", &b, "-e", "AllowTraffic"], "load balancer"),
        (vec!["-l", &b, "-g", "../escape"], "cannot contain '/'"),
    ];
    for (args, expected) in cases {
        let run = host.run(&args);
        assert_eq!(run.code, Some(2), "{args:?}\n{}", run.describe());
        assert!(
            run.stderr.contains(expected),
            "{args:?}: expected {expected:?}\n{}",
            run.describe()
        );
        assert!(!host.root().exists(), "{args:?}: nothing is deployed");
    }
    // An unknown flag is clap's usage error, also 2.
    let run = host.run(&["--bundle", &b]);
    assert_eq!(run.code, Some(2), "{}", run.describe());
}

#[test]
fn a_missing_configuration_file_means_the_built_in_defaults() {
    let host = LocalHost::new("no-config");
    let missing = host.path().join("absent.yml");
    // An invalid location stops the run before anything is deployed under
    // the default root.
    let run = run_local(
        host.path(),
        &["-c", missing.to_str().unwrap(), "-l", "nowhere"],
        &[],
    );
    assert_eq!(run.code, Some(2), "{}", run.describe());
    assert!(
        run.stderr.contains(&format!(
            "note: the agent configuration file {} does not exist; using the built-in defaults (deployment root /opt/codedeploy-agent/deployment-root",
            missing.display()
        )),
        "{}",
        run.describe()
    );
}

#[test]
fn local_and_agent_deployments_of_one_revision_leave_the_same_host() {
    let bed = TestBed::start("local-parity");
    let install = bed.path().join("srv/webshop");
    let hooks_log = bed.path().join("hooks.log");
    let events = [
        "BeforeInstall",
        "AfterInstall",
        "ApplicationStart",
        "ValidateService",
    ];
    let revision = recording_revision("rev", &install, &hooks_log, &events)
        .file_with_mode("content/bin/setuid-tool", "#!/bin/sh\n", 0o4750)
        .dir("content/uploads", 0o1777)
        .owned_by("content/private/key.pem", 4321, 8765);
    let location = bed.upload("parity", "webshop/webshop.tgz", &revision, BundleType::Tgz);
    let deployment = Deployment::new("WebShop", "WebShop-Production", location.clone());
    bed.emulator.add_deployment(deployment.clone());
    bed.start_agent(&agent_binary());
    expect_success(&bed, &deployment);
    bed.stop_agent(Duration::from_secs(10));

    let agent_files = snapshot(&install);
    let agent_hooks = hook_lines_without(&hooks_log, &deployment.deployment_id);
    let agent_dir = deployment_dir(&bed, &deployment);
    let agent_scripts_log = scripts_log_events(&agent_dir, &deployment.deployment_id);
    ensure!(
        bed,
        agent_files.len() >= 7,
        "the agent installed the revision: {agent_files:#?}"
    );
    ensure_eq!(bed, agent_hooks.len(), 4, "the agent ran the four hooks");

    // The same revision, deployed by codedeploy-local on a fresh deployment
    // root: from S3 (same environment), then from a local copy of the bundle.
    let encode = |v: &str| {
        v.replace('%', "%25")
            .replace('"', "%22")
            .replace('+', "%2B")
            .replace('&', "%26")
    };
    let s3_url = format!(
        "s3://{}/{}?versionId={}&etag={}",
        location.bucket,
        location.key,
        encode(location.version.as_deref().unwrap_or("")),
        encode(location.etag.as_deref().unwrap_or(""))
    );
    let local_file = bed.path().join("webshop.tgz");
    std::fs::write(&local_file, revision.to_tgz().unwrap()).unwrap();
    let local_file = local_file.display().to_string();
    for (name, bundle_location) in [("s3", s3_url.as_str()), ("file", local_file.as_str())] {
        std::fs::remove_dir_all(&install).unwrap();
        std::fs::remove_file(&hooks_log).unwrap();
        let host = LocalHost::with_extra(
            name,
            &format!(":s3_endpoint_override: {}\n", bed.s3.endpoint()),
        );
        let run = host.run_with_env(
            &[
                "-l",
                bundle_location,
                "-a",
                &deployment.application_name,
                "-d",
                &deployment.group_name,
                "-g",
                &deployment.group_id,
            ],
            &[
                ("AWS_ACCESS_KEY_ID", "AKIALOCALTEST0000001"),
                ("AWS_SECRET_ACCESS_KEY", "local-test-secret"),
                ("AWS_REGION", "us-east-1"),
            ],
        );
        ensure!(bed, run.code == Some(0), "{name}: {}", run.describe());
        let id = run.deployment_id();
        ensure_eq!(
            bed,
            snapshot(&install),
            agent_files,
            "{name}: same files, modes and owners"
        );
        let local_hooks = hook_lines_without(&hooks_log, &id);
        if name == "s3" {
            ensure_eq!(
                bed,
                local_hooks,
                agent_hooks,
                "{name}: same hooks, order and environment"
            );
        } else {
            // A local file has no bucket, key, version or ETag to tell.
            let without_bundle = |lines: &[String]| -> Vec<String> {
                lines
                    .iter()
                    .map(|l| l.split(' ').take(6).collect::<Vec<_>>().join(" "))
                    .collect()
            };
            ensure_eq!(
                bed,
                without_bundle(&local_hooks),
                without_bundle(&agent_hooks),
                "{name}: same hooks, order and environment"
            );
        }
        ensure_eq!(
            bed,
            scripts_log_events(&run.deployment_dir(), &id),
            agent_scripts_log,
            "{name}: same scripts.log"
        );
    }
}

#[test]
fn a_revision_of_a_thousand_nested_folders_deploys_in_seconds() {
    let host = LocalHost::new("nested");
    let install = host.path().join("srv/deep");
    let bundle = host.path().join("nested.tgz");
    std::fs::write(&bundle, nested_revision(1000, &install).to_tgz().unwrap()).unwrap();
    let started = Instant::now();
    let run = host.run(&["-l", bundle.to_str().unwrap()]);
    let took = started.elapsed();
    assert_eq!(run.code, Some(0), "{}", run.describe());
    // Unpack and the install plan walk each folder once: cubic costs took
    // 21 s here, and the planner's recursion overflowed its stack.
    assert!(
        took < Duration::from_secs(10),
        "deployed in {took:?}\n{}",
        run.describe()
    );
    let deepest = (1..1000).fold(install, |path, _| path.join("d"));
    assert!(deepest.is_dir(), "the deepest folder is installed");
}

#[test]
fn sigterm_stops_a_long_unpack_within_a_second_and_leaves_no_half_archive() {
    let host = LocalHost::new("sigterm-unpack");
    let bundle = host.path().join("many.tgz");
    std::fs::write(&bundle, many_files_revision(190_000).to_tgz().unwrap()).unwrap();
    let config = host.config();
    let mut child = Command::new(local_binary())
        .args([
            "-c",
            config.to_str().unwrap(),
            "-l",
            bundle.to_str().unwrap(),
        ])
        .current_dir(host.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("codedeploy-local starts");
    let group = host.root().join("default-local-deployment-group");
    let archive = || {
        std::fs::read_dir(&group)
            .into_iter()
            .flatten()
            .flatten()
            .map(|deployment| deployment.path().join("deployment-archive"))
            .find(|archive| archive.join("content/d001").exists())
    };
    assert!(
        wait_until(LOCAL_DEADLINE, || archive().is_some()),
        "the unpack gets under way"
    );
    let archive = archive().expect("the archive being unpacked");
    let (took, status) = terminate(&mut child, Duration::from_secs(20));
    assert!(
        status.is_some_and(|s| s.code() == Some(1)) && took < Duration::from_millis(1500),
        "stopped at the next entry, the deployment failed: {status:?} after {took:?}"
    );
    assert!(
        !archive.exists(),
        "the half-unpacked archive is removed: {}",
        archive.display()
    );
}

#[test]
fn a_key_written_twice_in_a_files_entry_keeps_the_last_as_the_official_agent_and_is_logged() {
    let host = LocalHost::new("duplicate-key");
    let (first, second) = (host.path().join("first"), host.path().join("second"));
    let appspec = format!(
        "version: 0.0\nos: linux\nfiles:\n  - source: content\n    destination: {}\n    destination: {}\n",
        first.display(),
        second.display()
    );
    let bundle = host.path().join("bundle");
    write_tree(
        &Revision::new()
            .file("appspec.yml", appspec)
            .file("content/index.html", "hi\n"),
        &bundle,
    );
    let run = host.run(&["-l", bundle.to_str().unwrap()]);
    assert_eq!(run.code, Some(0), "{}", run.describe());
    assert!(second.join("index.html").is_file() && !first.exists());
    let log = read(&host.path().join("log/codedeploy-local.log"));
    assert!(
        log.contains(
            "appspec.yml: files[0]: 'destination' appears more than once; only the last one counts"
        ),
        "the deployment log says which key was written twice:\n{log}"
    );
}

/// A tar revision (made by GNU tar with `--sparse`, PAX 1.0) whose `data/disk.img`
/// is 1 GiB of which 6 bytes are data.
fn sparse_revision(dir: &Path, install: &Path) -> PathBuf {
    use std::io::{Seek, SeekFrom, Write};
    let tree = dir.join("sparse-tree");
    std::fs::create_dir_all(tree.join("data")).unwrap();
    std::fs::write(tree.join("appspec.yml"), appspec("data", install, &[])).unwrap();
    let mut image = std::fs::File::create(tree.join("data/disk.img")).unwrap();
    image.seek(SeekFrom::Start(300_000_000)).unwrap();
    image.write_all(b"hello\n").unwrap();
    image.set_len(1 << 30).unwrap();
    let bundle = dir.join("sparse.tar");
    let status = Command::new("tar")
        .args(["--format=posix", "-cSf"])
        .arg(&bundle)
        .arg("-C")
        .arg(&tree)
        .args(["appspec.yml", "data"])
        .status()
        .expect("GNU tar runs");
    assert!(status.success());
    std::fs::remove_dir_all(&tree).unwrap();
    bundle
}

#[test]
fn a_sparse_file_lands_with_its_holes_and_counts_its_full_size_against_the_cap() {
    let host = LocalHost::new("sparse");
    let install = host.path().join("srv/images");
    let bundle = sparse_revision(host.path(), &install);
    let run = host.run(&["-l", &bundle.display().to_string()]);
    assert_succeeded(&run);
    let archived = run
        .deployment_dir()
        .join("deployment-archive/data/disk.img");
    for path in [archived, install.join("disk.img")] {
        let meta = std::fs::metadata(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(meta.len(), 1 << 30, "{}", path.display());
        assert!(
            meta.blocks() * 512 <= 1 << 20,
            "{}: {} bytes on disk for 6 bytes of data",
            path.display(),
            meta.blocks() * 512
        );
        let mut file = std::fs::File::open(&path).unwrap();
        let mut read = [0u8; 8];
        std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(299_999_999)).unwrap();
        std::io::Read::read_exact(&mut file, &mut read).unwrap();
        assert_eq!(&read, b"\0hello\n\0", "{}", path.display());
    }

    let capped =
        LocalHost::with_extra("sparse-capped", ":archive_max_extraction_size: 104857600\n");
    let install = capped.path().join("srv/images");
    let bundle = sparse_revision(capped.path(), &install);
    let run = capped.run(&["-l", &bundle.display().to_string()]);
    assert_eq!(run.code, Some(1), "{}", run.describe());
    assert!(
        run.stdout.contains("entry 'data/disk.img': the revision unpacks to more than archive_max_extraction_size (104857600 bytes)"),
        "{}",
        run.describe()
    );
    assert!(!install.exists(), "nothing is installed");
}

#[test]
fn a_timeout_too_large_for_a_deadline_is_refused_with_its_line_before_any_script_runs() {
    let host = LocalHost::new("huge-timeout");
    let install = host.path().join("srv/app");
    let bundle = host.path().join("bundle");
    let started = host.path().join("hook-started");
    let mut text = appspec("content", &install, &[]);
    text.push_str(
        "hooks:\n  BeforeInstall:\n    - location: scripts/long.sh\n      timeout: 9223372036854775807\n",
    );
    let revision = Revision::new()
        .file("appspec.yml", text)
        .file("content/index.html", "x\n")
        .script(
            "scripts/long.sh",
            format!("#!/bin/sh\necho $$ > {}\nsleep 1000\n", started.display()),
        );
    write_tree(&revision, &bundle);
    let run = host.run(&["-l", &bundle.display().to_string()]);
    assert_eq!(
        run.code,
        Some(1),
        "a failed deployment, not a panic\n{}",
        run.describe()
    );
    let refused = run
        .stdout
        .lines()
        .find(|l| {
            l.starts_with("Your local deployment failed during BeforeInstall: Invalid AppSpec file")
        })
        .unwrap_or_else(|| panic!("no BeforeInstall failure\n{}", run.describe()));
    for part in [
        "deployment-archive/appspec.yml: hooks.BeforeInstall[0].timeout: the number 9223372036854775807 is above the longest timeout this agent accepts, 86400 seconds",
        "at line 9",
    ] {
        assert!(refused.contains(part), "file, key, bound and line: {part:?} in {refused}");
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !started.exists(),
        "the script must not run under an appspec that failed to parse\n{}",
        run.describe()
    );
}

#[test]
fn a_panic_in_codedeploy_local_fails_the_deployment_and_stops_its_scripts() {
    let host = LocalHost::new("panic");
    let install = host.path().join("srv/app");
    let bundle = host.path().join("bundle");
    let pid_file = host.path().join("hook.pid");
    let child_pid_file = host.path().join("hook-child.pid");
    // Test builds panic when a hook prints this line (the `test-panic`
    // feature); the hook and a child it started are running then.
    let script = format!(
        "#!/bin/sh\nsleep 1000 &\necho $! > '{}'\necho $$ > '{}'\necho 'codedeploy-agent-test: panic'\nsleep 1000\n",
        child_pid_file.display(),
        pid_file.display()
    );
    write_tree(
        &Revision::new()
            .file(
                "appspec.yml",
                appspec(
                    "content",
                    &install,
                    &[hook("BeforeInstall", "scripts/b.sh")],
                ),
            )
            .file("content/index.html", "hi\n")
            .script("scripts/b.sh", script),
        &bundle,
    );
    let run = host.run(&["-l", &bundle.display().to_string()]);
    assert_eq!(run.code, Some(1), "a failed deployment\n{}", run.describe());
    assert!(
        run.stdout.contains("BeforeInstall: FAILED")
            && run.stdout.contains(
                "internal error while running BeforeInstall (panic: deliberate panic for a test"
            ),
        "the panic is reported as the event's failure\n{}",
        run.describe()
    );
    for file in [&pid_file, &child_pid_file] {
        let pid = read_pid(file, Duration::from_secs(1))
            .unwrap_or_else(|| panic!("{} was written\n{}", file.display(), run.describe()));
        let gone = wait_until(Duration::from_secs(5), || !pid_alive(pid));
        if !gone {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        assert!(
            gone,
            "hook process {pid} outlived the panic\n{}",
            run.describe()
        );
    }
    assert!(
        !install.join("index.html").exists(),
        "nothing after the failed event ran"
    );
}
