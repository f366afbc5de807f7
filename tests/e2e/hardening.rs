//! Hardening end to end: hook output that tries to drive a terminal and floods
//! the log, the 2.x hardening keys against the revisions they are about, and
//! the agent's own process hygiene (no core dumps, `.version`, retired keys).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use codedeploy_e2e::{BundleType, Deployment, Revision, TestBed};

use crate::support::*;

const BUCKET: &str = "hardening-revisions";

/// The agent's memory high-water mark and current size, in KiB.
fn memory_kib(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    };
    Some((field("VmHWM:")?, field("VmRSS:")?))
}

/// The files of `dir` whose names start with `prefix`, sorted.
fn files_named(dir: &Path, prefix: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn has_terminal_control(text: &str) -> bool {
    text.chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
}

#[test]
fn flood_of_escaped_output_is_cleaned_rotated_and_kept_out_of_memory() {
    const MIB: u64 = 1024 * 1024;
    let bed = TestBed::start("hook-output-flood");
    let install = bed.path().join("srv/flood");
    // 300 MB of 1000-byte lines (so `head -c` ends on a whole line), each with a colour sequence, framed by lines
    // that carry OSC titles, cursor moves, carriage returns and a bell. The pause
    // before the stderr line lets the agent drain the stdout pipe first: the two
    // pipes are read as their data comes, so without it their order may vary.
    let script = "#!/bin/sh\n\
        printf '\\033]0;owned title\\007\\033[2J\\033[1;31mstarting\\033[0m flood\\r\\n'\n\
        yes \"$(printf 'line \\033[32mgreen\\033[0m %0979d' 7)\" | head -c 300000000\n\
        printf '\\033[1mflood\\033[0m done\\a\\b\\n'\n\
        sleep 2\n\
        echo 'finished with errors' >&2\n\
        exit 3\n";
    let revision = Revision::new()
        .file(
            "appspec.yml",
            appspec(
                "site",
                &install,
                &[hook("AfterInstall", "scripts/flood.sh")],
            ),
        )
        .file("site/index.html", "<p>flood</p>\n")
        .script("scripts/flood.sh", script);
    let location = bed.upload(BUCKET, "flood.tgz", &revision, BundleType::Tgz);
    let deployment = Deployment::new("Flood", "Flood-Group", location);
    bed.emulator.add_deployment(deployment.clone());
    let config = bed
        .agent_config()
        .extra_line(":scripts_log_max_size_mb: 1")
        .extra_line(":scripts_log_max_files: 3");
    bed.start_agent_with(&agent_binary(), &config);
    let pid = bed.agent_pid().expect("the agent runs");

    // Sample the agent's memory while the hook floods it.
    let started = Instant::now();
    let mut peak_rss = 0;
    let outcome = loop {
        if let Some((_, rss)) = memory_kib(pid) {
            peak_rss = peak_rss.max(rss);
        }
        let outcome = bed.wait_for_deployment_end(&deployment.deployment_id, Duration::ZERO);
        if outcome.is_succeeded() || started.elapsed() > Duration::from_secs(240) {
            break outcome;
        }
        if let codedeploy_e2e::Outcome::Failed { .. } = outcome {
            break outcome;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let (hwm, _) = memory_kib(pid).expect("the agent still runs");
    eprintln!(
        "300 MB of hook output in {:.1} s: agent VmHWM {hwm} KiB, sampled peak VmRSS {peak_rss} KiB",
        started.elapsed().as_secs_f64()
    );
    ensure!(
        bed,
        !outcome.is_succeeded(),
        "the flood hook exits 3: {outcome}"
    );
    let failed = expect_failure_at(&bed, &deployment, "AfterInstall");
    // Whatever the volume, the agent holds a line and the diagnostics' tail.
    ensure!(
        bed,
        hwm < 64 * 1024,
        "the agent's memory stays bounded: VmHWM {hwm} KiB after 300 MB of output"
    );

    let logs = deployment_dir(&bed, &deployment).join("logs");
    let names = files_named(&logs, "scripts.log");
    ensure_eq!(
        bed,
        names,
        ["scripts.log", "scripts.log.1", "scripts.log.2"],
        "scripts.log is rotated and keeps 3 files in all"
    );
    for name in &names {
        let text = std::fs::read(logs.join(name)).expect("a scripts log");
        ensure!(
            bed,
            text.len() as u64 <= MIB,
            "{name} holds {} bytes, more than 1 MiB",
            text.len()
        );
        let text = String::from_utf8_lossy(&text);
        ensure!(
            bed,
            !has_terminal_control(&text),
            "{name} holds a control character"
        );
    }
    let newest = read(&logs.join("scripts.log"));
    ensure!(
        bed,
        newest.contains(&format!(" [stdout]line green {:0979}\n", 7))
            && newest.contains(" [stdout]flood done\n")
            && newest.contains(" [stderr]finished with errors\n"),
        "the newest scripts.log ends with the clean end of the output"
    );
    let deployments_log = bed
        .root_dir()
        .join("deployment-logs/codedeploy-agent-deployments.log");
    ensure!(
        bed,
        std::fs::metadata(&deployments_log).is_ok_and(|m| m.len() <= MIB),
        "the deployments log is bounded the same way"
    );

    let diagnostics = failed.diagnostics().cloned().expect("diagnostics");
    ensure_eq!(bed, diagnostics.error_code, 4, "the hook exited 3");
    ensure!(
        bed,
        diagnostics
            .log
            .ends_with("[stdout]flood done\n[stderr]finished with errors\n")
            && diagnostics.log.contains("[stdout]line green 0000")
            && !has_terminal_control(&diagnostics.log),
        "the diagnostics carry the clean tail: {:?}",
        diagnostics.log
    );
    let agent_log = read(&bed.agent_dir().join("log/codedeploy-agent.log"));
    let audit: Vec<&str> = agent_log
        .lines()
        .filter(|l| l.contains("hook start:"))
        .collect();
    ensure_eq!(bed, audit.len(), 1, "one audit line per hook start");
    let expected = format!(
        "hook start: deployment {} event AfterInstall script {}",
        deployment.deployment_id,
        deployment_dir(&bed, &deployment)
            .join("deployment-archive/scripts/flood.sh")
            .display()
    );
    ensure!(
        bed,
        audit[0].contains(&expected) && audit[0].contains("agent user root runas - sudo false"),
        "the audit line names deployment, event, script, users and sudo: {}",
        audit[0]
    );
}

/// One revision deployed under a configuration: how it must end.
struct KeyCase {
    name: &'static str,
    config: &'static [&'static str],
    revision: Revision,
    /// `None`: the deployment succeeds. Else the failing command, the error
    /// code and a fragment of the message the service receives.
    refused: Option<(&'static str, i64, &'static str)>,
}

fn with_hook(script: &str) -> Revision {
    Revision::new()
        .file(
            "appspec.yml",
            "version: 0.0\nos: linux\nhooks:\n  BeforeInstall:\n    - location: scripts/check.sh\n",
        )
        .script("scripts/check.sh", script.to_string())
}

#[test]
fn each_hardening_key_refuses_or_accepts_its_revisions() {
    let setuid =
        || with_hook("#!/bin/sh\nexit 0\n").file_with_mode("bin/tool", "#!/bin/sh\n", 0o4755);
    let linked = || with_hook("#!/bin/sh\nexit 0\n").symlink("current", "scripts/check.sh");
    let big = || with_hook("#!/bin/sh\nexit 0\n").file("data.bin", vec![b'x'; 200_000]);
    let cases = vec![
        KeyCase {
            name: "setuid entry, default",
            config: &[],
            revision: setuid(),
            refused: None,
        },
        KeyCase {
            name: "setuid entry, reject_unsafe_permissions_in_bundle",
            config: &[":reject_unsafe_permissions_in_bundle: true"],
            revision: setuid(),
            refused: Some((
                "DownloadBundle",
                5,
                "Error extracting tar archive: entry 'bin/tool': its mode 4755 has the setuid or setgid bit (reject_unsafe_permissions_in_bundle is true)",
            )),
        },
        KeyCase {
            name: "link inside the revision, default",
            config: &[],
            revision: linked(),
            refused: None,
        },
        KeyCase {
            name: "link inside the revision, reject_symlinks_in_bundle",
            config: &[":reject_symlinks_in_bundle: true"],
            revision: linked(),
            refused: Some((
                "DownloadBundle",
                5,
                "entry 'current': links are not allowed in a revision (reject_symlinks_in_bundle is true)",
            )),
        },
        KeyCase {
            name: "link leaving the revision, even with reject_path_traversal_in_bundle false",
            config: &[":reject_path_traversal_in_bundle: false"],
            revision: with_hook("#!/bin/sh\nexit 0\n").symlink("passwd", "../../../etc/passwd"),
            refused: Some((
                "DownloadBundle",
                5,
                "entry 'passwd': it is a symbolic link to '../../../etc/passwd', which leads outside the archive",
            )),
        },
        KeyCase {
            name: "200 kB revision under a 100 KiB archive_max_extraction_size",
            config: &[":archive_max_extraction_size: 100KiB"],
            revision: big(),
            refused: Some((
                "DownloadBundle",
                5,
                "the revision unpacks to more than archive_max_extraction_size (102400 bytes)",
            )),
        },
        KeyCase {
            name: "200 kB revision under the default cap",
            config: &[],
            revision: big(),
            refused: None,
        },
        KeyCase {
            name: "a hook location leaving the revision stops the event before any script",
            config: &[],
            revision: Revision::new()
                .file(
                    "appspec.yml",
                    "version: 0.0\nos: linux\nhooks:\n  BeforeInstall:\n    - location: scripts/first.sh\n    - location: scripts/../../../../../../bin/true\n",
                )
                .script("scripts/first.sh", "#!/bin/sh\necho ran > \"$(dirname \"$0\")/../../ran\"\n"),
            refused: Some((
                "BeforeInstall",
                5,
                "hooks.BeforeInstall[1].location: 'scripts/../../../../../../bin/true' climbs out of the revision with '..'; hooks run only scripts inside the revision",
            )),
        },
        KeyCase {
            name: "hook environment, default: everything the agent has",
            config: &[],
            revision: with_hook(
                "#!/bin/sh\n[ \"$AGENT_ONLY_SETTING\" = visible ] && [ \"$LD_LIBRARY_PATH\" = /nonexistent/lib ] && [ -n \"$DEPLOYMENT_ID\" ]\n",
            ),
            refused: None,
        },
        KeyCase {
            name: "hook environment, allowlist and loader variables stripped",
            config: &[
                ":restrict_hook_env_to_allowlist: true",
                ":strip_loader_env_in_hooks: true",
            ],
            revision: with_hook(
                "#!/bin/sh\n[ -z \"$AGENT_ONLY_SETTING\" ] && [ -z \"${LD_LIBRARY_PATH+set}\" ] && [ -n \"$DEPLOYMENT_ID\" ] && [ -n \"$PATH\" ] && [ -n \"$HOME\" ]\n",
            ),
            refused: None,
        },
    ];
    for (index, case) in cases.into_iter().enumerate() {
        let bed = TestBed::start(&format!("hardening-key-{index}"));
        let location = bed.upload(
            BUCKET,
            &format!("case-{index}.tar"),
            &case.revision,
            BundleType::Tar,
        );
        let deployment = Deployment::new("Hardening", &format!("Group-{index}"), location);
        bed.emulator.add_deployment(deployment.clone());
        let mut config = bed
            .agent_config()
            .env("AGENT_ONLY_SETTING", "visible")
            .env("LD_LIBRARY_PATH", "/nonexistent/lib");
        for line in case.config {
            config = config.extra_line(line);
        }
        bed.start_agent_with(&agent_binary(), &config);
        match case.refused {
            None => expect_success(&bed, &deployment),
            Some((command, code, fragment)) => {
                let failed = expect_failure_at(&bed, &deployment, command);
                let diagnostics = failed.diagnostics().cloned().expect("diagnostics");
                ensure_eq!(bed, diagnostics.error_code, code, "{}", case.name);
                ensure!(
                    bed,
                    diagnostics.message.contains(fragment),
                    "{}: expected «{fragment}» in {:?}",
                    case.name,
                    diagnostics.message
                );
                ensure!(
                    bed,
                    !deployment_dir(&bed, &deployment).join("ran").exists(),
                    "{}: no script ran",
                    case.name
                );
            }
        }
    }
}

/// A revision of many small files, as a hostile bundle of a million empty
/// ones is, past a lowered `:archive_max_entries:`: DownloadBundle fails with
/// the key named, nothing of it stays, and the next revision deploys.
#[test]
fn a_revision_past_archive_max_entries_is_refused_and_the_next_one_deploys() {
    let bed = TestBed::start("archive-max-entries");
    let install = bed.path().join("srv/many");
    let small = || {
        Revision::new()
            .file("appspec.yml", appspec("site", &install, &[]))
            .file("site/index.html", "<p>small</p>\n")
    };
    let many = (0..150).fold(small(), |revision, i| {
        revision.file(&format!("site/empty/{i:03}"), "")
    });
    let location = bed.upload(BUCKET, "many.tgz", &many, BundleType::Tgz);
    let refused = Deployment::new("Many", "Many-Group", location);
    bed.emulator.add_deployment(refused.clone());
    let config = bed.agent_config().extra_line(":archive_max_entries: 100");
    bed.start_agent_with(&agent_binary(), &config);

    let failed = expect_failure_at(&bed, &refused, "DownloadBundle");
    let diagnostics = failed.diagnostics().cloned().expect("diagnostics");
    ensure_eq!(bed, diagnostics.error_code, 5, "an unpack failure");
    ensure!(
        bed,
        diagnostics.message.contains(
            "Error extracting tar archive: the revision has more than 100 entries (archive_max_entries); raise that key if this revision is genuinely that large"
        ),
        "the service is told the cap and the key: {:?}",
        diagnostics.message
    );
    let archive = deployment_dir(&bed, &refused).join("deployment-archive");
    ensure!(
        bed,
        !archive.exists(),
        "the half-unpacked archive is removed: {}",
        archive.display()
    );
    ensure!(bed, !install.exists(), "nothing was installed");
    ensure!(bed, bed.agent_running(), "the agent keeps running");

    let location = bed.upload(BUCKET, "small.tgz", &small(), BundleType::Tgz);
    let next = Deployment::new("Many", "Many-Group", location);
    bed.emulator.add_deployment(next.clone());
    expect_success(&bed, &next);
    ensure_eq!(
        bed,
        read(&install.join("index.html")),
        "<p>small</p>\n",
        "the small revision is installed"
    );
}

/// Raises this process's soft core limit to its hard limit for as long as the
/// guard lives, so that processes started meanwhile may dump core.
struct CoreLimitRaised(libc::rlimit);

// getrlimit/setrlimit: libc has no safe form of either.
#[allow(unsafe_code)]
impl CoreLimitRaised {
    fn raise() -> CoreLimitRaised {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit/setrlimit read and write one rlimit each.
        unsafe {
            assert_eq!(libc::getrlimit(libc::RLIMIT_CORE, &mut limit), 0);
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            assert_eq!(libc::setrlimit(libc::RLIMIT_CORE, &raised), 0);
        }
        CoreLimitRaised(limit)
    }
}

#[allow(unsafe_code)]
impl Drop for CoreLimitRaised {
    fn drop(&mut self) {
        // SAFETY: as above.
        unsafe { libc::setrlimit(libc::RLIMIT_CORE, &self.0) };
    }
}

/// Soft "Max core file size" of a process, from /proc/PID/limits.
fn soft_core_limit(pid: u32) -> Option<String> {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))?;
    line["Max core file size".len()..]
        .split_whitespace()
        .next()
        .map(str::to_string)
}

fn core_files(dir: &Path) -> Vec<String> {
    files_named(dir, "core")
}

#[test]
fn the_agent_cannot_dump_core_writes_its_version_and_names_each_retired_key_once() {
    let bed = TestBed::start("process-hygiene");
    let install = bed.path().join("srv/hygiene");
    let limit_file = bed.path().join("hook-core-limit");
    let revision = Revision::new()
        .file(
            "appspec.yml",
            appspec(
                "site",
                &install,
                &[hook("ApplicationStart", "scripts/limit.sh")],
            ),
        )
        .file("site/index.html", "<p>hygiene</p>\n")
        .script(
            "scripts/limit.sh",
            format!("#!/bin/sh\nulimit -c > {}\n", limit_file.display()),
        );
    let location = bed.upload(BUCKET, "hygiene.tar", &revision, BundleType::Tar);
    let deployment = Deployment::new("Hygiene", "Hygiene-Group", location);
    bed.emulator.add_deployment(deployment.clone());
    let retired = [
        "children",
        "wait_between_spawning_children",
        "shared_dir",
        "user",
        "instance_service_region",
        "instance_service_port",
        "codedeploy_test_profile",
        "ssl_verify_peer",
    ];
    let mut config = bed.agent_config();
    for key in retired {
        let value = if key == "ssl_verify_peer" {
            "false"
        } else {
            "4"
        };
        config = config.extra_line(&format!(":{key}: {value}"));
    }
    {
        let _raised = CoreLimitRaised::raise();
        bed.start_agent_with(&agent_binary(), &config);
    }
    let pid = bed.agent_pid().expect("the agent runs");
    expect_success(&bed, &deployment);

    // The agent lowered its own limit, and gave the hook the one it started with.
    ensure_eq!(
        bed,
        soft_core_limit(pid).as_deref(),
        Some("0"),
        "the agent's soft core file size limit"
    );
    ensure_eq!(
        bed,
        read(&limit_file).trim(),
        "unlimited",
        "the hook's core limit is the one the agent was started with"
    );

    let version = read(&bed.agent_dir().join(".version"));
    ensure_eq!(
        bed,
        version,
        format!("agent_version: {}\n", env!("CARGO_PKG_VERSION")),
        ".version beside the deployment root"
    );

    let log = read(&bed.agent_dir().join("log/codedeploy-agent.log"));
    for key in retired {
        let warnings = log
            .lines()
            .filter(|l| {
                l.contains(" WARN ") && l.contains(&format!("`:{key}:` this key is retired"))
            })
            .count();
        ensure_eq!(bed, warnings, 1, "one warning for the retired key {key}");
    }
    ensure!(
        bed,
        log.contains("core dumps disabled: dumpable 0, core file size limit 0"),
        "the start-up reads the core settings back"
    );

    // The proof: SIGABRT makes a dumpable process with this limit leave a core
    // file in its working directory (core_pattern permitting); the agent leaves none.
    let control_dir = bed.path().join("control");
    std::fs::create_dir_all(&control_dir).unwrap();
    {
        let _raised = CoreLimitRaised::raise();
        let _ = std::process::Command::new("sh")
            .args(["-c", "ulimit -c unlimited; kill -ABRT $$"])
            .current_dir(&control_dir)
            .status();
    }
    let agent_dir: PathBuf =
        std::fs::read_link(format!("/proc/{pid}/cwd")).expect("the agent's cwd");
    ensure!(
        bed,
        core_files(&agent_dir).is_empty(),
        "no core file before the signal"
    );
    bed.signal_agent("ABRT");
    let exit = bed.wait_for_agent_exit(Duration::from_secs(10));
    ensure!(bed, exit.is_some(), "SIGABRT ends the agent");
    std::thread::sleep(Duration::from_millis(500));
    if core_files(&control_dir).is_empty() {
        eprintln!(
            "core_pattern does not leave core files in the working directory here; \
             the agent's dumpable flag and core limit were checked above"
        );
    } else {
        ensure_eq!(
            bed,
            core_files(&agent_dir),
            Vec::<String>::new(),
            "the agent leaves no core file where a dumpable process leaves one"
        );
    }
}
