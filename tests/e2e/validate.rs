//! `codedeploy-agent validate`: a corpus of broken bundles, generated here
//! (directories, archives and bare appspec files), each with the exact
//! problems expected, all reported at once with file and line; and the exit
//! statuses.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use codedeploy_e2e::{BundleType, Revision};

use crate::support::{agent_binary, many_files_revision, terminate, wait_until, write_tree};

fn validate(args: &[&str]) -> Output {
    Command::new(agent_binary())
        .arg("validate")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("the agent binary runs")
}

fn describe(output: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout ---\n{}--- stderr ---\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The output lines with `shown` (the path as printed) replaced by `<file>`.
fn report(output: &Output, shown: &str) -> Vec<String> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| l.replace(shown, "<file>"))
        .collect()
}

const VALID_APPSPEC: &str = "\
version: 0.0
os: linux
files:
  - source: content
    destination: /srv/app
hooks:
  ApplicationStart:
    - location: scripts/start.sh
      timeout: 60
";

fn valid_revision() -> Revision {
    Revision::new()
        .file("appspec.yml", VALID_APPSPEC)
        .file("content/index.html", "hi\n")
        .script("scripts/start.sh", "#!/bin/sh\necho start\n")
}

/// Every problem a bundle can have on this host, each on its own line.
const BROKEN_APPSPEC: &str = "\
version: 0.0
os: linux
files:
  - source: content
    destination: /srv/app
  - source: missing-dir
    destination: /srv/other
permissions:
  - object: /srv/app
    owner: no-such-user-xyz
    mode: 0644
hooks:
  BeforeInstall:
    - location: scripts/missing.sh
  AfterInstall:
    - location: scripts/no-shebang.sh
    - location: scripts/bad-interpreter.sh
      runas: no-such-user-xyz
  ApplicationStart:
    - location: scripts/crlf.sh
    - location: scripts/env-missing.sh
  ValidateService:
    - location: scripts/not-executable.sh
      timeout: -5
";

fn broken_revision() -> Revision {
    Revision::new()
        .file("appspec.yml", BROKEN_APPSPEC)
        .file("content/index.html", "hi\n")
        .script("scripts/no-shebang.sh", "echo no interpreter line\n")
        .script(
            "scripts/bad-interpreter.sh",
            "#!/opt/python9/bin/python9\nprint(1)\n",
        )
        .script("scripts/crlf.sh", "#!/bin/sh\r\necho edited on windows\r\n")
        .script("scripts/env-missing.sh", "#!/usr/bin/env no-such-runtime\n")
        .file("scripts/not-executable.sh", "#!/bin/sh\necho\n")
}

/// What `validate` says about the broken revision, wherever it sits.
const BROKEN_REPORT: &[&str] = &[
    "<file>:6: error: files: source missing-dir does not exist in the bundle",
    "<file>:10: error: permissions: owner no-such-user-xyz does not exist on this host",
    "<file>:14: error: hooks.BeforeInstall: script scripts/missing.sh does not exist in the bundle",
    "<file>:17: error: hooks.AfterInstall: script scripts/bad-interpreter.sh names the interpreter /opt/python9/bin/python9 in its #! line, which does not exist or is not executable on this host",
    "<file>:18: error: runas user no-such-user-xyz does not exist on this host",
    "<file>:20: error: hooks.ApplicationStart: script scripts/crlf.sh has Windows line endings: its #! line names '/bin/sh\\r', which does not exist; convert it to Unix line endings",
    "<file>:21: error: hooks.ApplicationStart: script scripts/env-missing.sh runs no-such-runtime through /usr/bin/env, but no-such-runtime is not on this host's PATH",
    "<file>:24: error: hooks.ValidateService[0].timeout: the number -5 is not valid; it must be a whole number of seconds greater than 0",
    "<file>:16: warning: hooks.AfterInstall: script scripts/no-shebang.sh has no #! line: it runs with /bin/sh (as with the official agent); start it with #!/bin/sh, or the interpreter it needs, to make that explicit",
    "<file>:23: warning: hooks.ValidateService: script scripts/not-executable.sh is not executable; the agent makes it executable (chmod +x) before running it, but setting the mode in the bundle says what is meant",
    "<file>: 8 problems, 2 warnings",
];

#[test]
fn a_valid_bundle_passes_as_a_directory_an_archive_or_an_appspec_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("bundle");
    write_tree(&valid_revision(), &dir);
    let tgz = tmp.path().join("bundle.tgz");
    std::fs::write(
        &tgz,
        valid_revision()
            .with_top_folder("app-1.0")
            .to_tgz()
            .unwrap(),
    )
    .unwrap();
    let zip = tmp.path().join("bundle.zip");
    std::fs::write(&zip, valid_revision().to_zip().unwrap()).unwrap();
    let tar = tmp.path().join("bundle.tar");
    std::fs::write(&tar, valid_revision().to_tar().unwrap()).unwrap();
    let cases = [
        (dir.clone(), format!("{}/appspec.yml", dir.display())),
        (tgz.clone(), format!("{}!appspec.yml", tgz.display())),
        (zip.clone(), format!("{}!appspec.yml", zip.display())),
        (tar.clone(), format!("{}!appspec.yml", tar.display())),
        (
            dir.join("appspec.yml"),
            format!("{}/appspec.yml", dir.display()),
        ),
    ];
    for (path, shown) in cases {
        let output = validate(&[path.to_str().unwrap()]);
        assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
        assert_eq!(
            report(&output, &shown),
            ["<file>: valid (0 warnings)"],
            "{}",
            describe(&output)
        );
    }
}

#[test]
fn every_problem_of_a_broken_bundle_is_reported_at_once_with_its_line() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("bundle");
    write_tree(&broken_revision(), &dir);
    let output = validate(&[dir.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    assert_eq!(
        report(&output, &format!("{}/appspec.yml", dir.display())),
        BROKEN_REPORT
    );

    // The same revision as an archive: unpacked by the agent's own unpacker,
    // so the modes (the not-executable script) survive.
    for bundle_type in [BundleType::Tgz, BundleType::Zip] {
        let archive = tmp
            .path()
            .join(format!("broken.{}", bundle_type.extension()));
        std::fs::write(&archive, broken_revision().build(bundle_type).unwrap()).unwrap();
        let output = validate(&[archive.to_str().unwrap()]);
        assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
        assert_eq!(
            report(&output, &format!("{}!appspec.yml", archive.display())),
            BROKEN_REPORT,
            "{bundle_type}"
        );
    }
}

/// One bundle of the corpus: its files, and the exact report.
struct Case {
    name: &'static str,
    revision: Revision,
    args: &'static [&'static str],
    /// The appspec as the report names it, relative to the bundle.
    shown: &'static str,
    exit: i32,
    report: &'static [&'static str],
}

#[test]
fn the_corpus_of_broken_bundles() {
    let cases = vec![
        Case {
            name: "no-appspec",
            revision: Revision::new().file("index.html", "hi\n"),
            args: &[],
            shown: "appspec.yml",
            exit: 1,
            report: &[
                "<file>: error: the bundle has no appspec.yml at its top (nor appspec.yaml or appspec.yml); the appspec must sit at the top of the revision",
                "<file>: 1 problem, 0 warnings",
            ],
        },
        Case {
            name: "yaml-name-only",
            revision: Revision::new().file("appspec.yaml", "version: 0.0\nos: linux\n"),
            args: &[],
            shown: "appspec.yaml",
            exit: 0,
            report: &[
                "<file>: warning: the deployment expects appspec.yml; Install falls back to appspec.yaml, but hooks look for exactly appspec.yml and would not find it: rename the file or set the deployment's AppSpecFilename to appspec.yaml",
                "<file>: valid (1 warning)",
            ],
        },
        Case {
            name: "custom-name",
            revision: Revision::new().file("deploy.yml", "version: 0.0\nos: linux\nhooks:\n  AfterInstall:\n    - location: gone.sh\n"),
            args: &["--appspec-filename", "deploy.yml"],
            shown: "deploy.yml",
            exit: 1,
            report: &[
                "<file>:5: error: hooks.AfterInstall: script gone.sh does not exist in the bundle",
                "<file>: 1 problem, 0 warnings",
            ],
        },
        Case {
            name: "quoted-version",
            revision: Revision::new().file("appspec.yml", "version: \"0.0\"\nos: linux\n"),
            args: &[],
            shown: "appspec.yml",
            exit: 1,
            report: &[
                "<file>:1: error: version: must be the number 0.0, not the string \"0.0\" (remove the quotes)",
                "<file>: 1 problem, 0 warnings",
            ],
        },
        Case {
            name: "yaml-syntax",
            revision: Revision::new().file("appspec.yml", "version: 0.0\nos: linux\nhooks:\n  AfterInstall:\n    - location: a.sh\n   timeout: 5\n"),
            args: &[],
            shown: "appspec.yml",
            exit: 1,
            report: &[
                "<file>:6: error: did not find expected key, while parsing a block mapping",
                "<file>: 1 problem, 0 warnings",
            ],
        },
        Case {
            name: "timeout-beyond-a-day",
            revision: Revision::new()
                .file("appspec.yml", "version: 0.0\nos: linux\nhooks:\n  AfterInstall:\n    - location: a.sh\n      timeout: 9223372036854775807\n")
                .script("a.sh", "#!/bin/sh\n"),
            args: &[],
            shown: "appspec.yml",
            exit: 1,
            report: &[
                "<file>:6: error: hooks.AfterInstall[0].timeout: the number 9223372036854775807 is above the longest timeout this agent accepts, 86400 seconds (24 hours, its limit for one command); give at most that (the service documents one hour, 3600 seconds, for each lifecycle event's scripts)",
                "<file>: 1 problem, 0 warnings",
            ],
        },
        Case {
            name: "link-outside",
            revision: Revision::new()
                .file("appspec.yml", "version: 0.0\nos: linux\nhooks:\n  ApplicationStop:\n    - location: scripts/stop.sh\n")
                .symlink("scripts/stop.sh", "../../outside.sh"),
            args: &[],
            shown: "appspec.yml",
            exit: 1,
            report: &[
                "<file>:5: error: hooks.ApplicationStop: script scripts/stop.sh is a link to <tmp>/outside.sh, outside the revision; the agent refuses to run it",
                "<file>: 1 problem, 0 warnings",
            ],
        },
        Case {
            name: "warnings-only",
            revision: Revision::new()
                .file(
                    "appspec.yml",
                    "version: 0.0\nos: linux\nfile_exist_behavior: OVERWRITE\nhooks:\n  Warmup:\n    - location: warm.sh\n",
                )
                .script("warm.sh", "#!/bin/sh\n"),
            args: &[],
            shown: "appspec.yml",
            exit: 0,
            report: &[
                "<file>: warning: unknown top-level key 'file_exist_behavior' is ignored (known keys: version, os, file_exists_behavior, files, permissions, hooks)",
                "<file>: warning: hooks: 'Warmup' is not a standard lifecycle event; it runs only when the deployment lists it as a custom event",
                "<file>: valid (2 warnings)",
            ],
        },
    ];
    for case in cases {
        let tmp = tempfile::tempdir().unwrap();
        let real_tmp = std::fs::canonicalize(tmp.path()).unwrap();
        std::fs::write(tmp.path().join("outside.sh"), "#!/bin/sh\n").unwrap();
        let dir = tmp.path().join("bundle");
        write_tree(&case.revision, &dir);
        let mut args: Vec<&str> = vec![dir.to_str().unwrap()];
        args.extend_from_slice(case.args);
        let output = validate(&args);
        let got: Vec<String> = report(&output, &format!("{}/{}", dir.display(), case.shown))
            .iter()
            .map(|l| l.replace(&real_tmp.display().to_string(), "<tmp>"))
            .collect();
        assert_eq!(got, case.report, "{}\n{}", case.name, describe(&output));
        assert_eq!(
            output.status.code(),
            Some(case.exit),
            "{}\n{}",
            case.name,
            describe(&output)
        );
    }
}

#[test]
fn unusable_paths_and_archives() {
    let tmp = tempfile::tempdir().unwrap();
    let output = validate(&[tmp.path().join("nothing-here").to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("cannot read"),
        "{}",
        describe(&output)
    );

    // A gzip stream that is cut short: a problem with the bundle, not usage.
    let truncated = tmp.path().join("cut.tgz");
    let bytes = valid_revision().to_tgz().unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let output = validate(&[truncated.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.starts_with(&format!(
            "{}: error: the tgz bundle cannot be unpacked: Error extracting tar archive",
            truncated.display()
        )),
        "{}",
        describe(&output)
    );
}

/// `validate -c CONFIG PATH` with the temporary folder under `tmpdir`.
fn validate_with(config: &std::path::Path, path: &std::path::Path) -> Output {
    validate(&["-c", config.to_str().unwrap(), path.to_str().unwrap()])
}

#[test]
fn flow_heavy_yaml_is_refused_at_once_as_the_deployment_refuses_it() {
    let tmp = tempfile::tempdir().unwrap();
    let cases = [
        ("brackets-160000.yml", 160_000),
        ("brackets-1mb.yml", 1024 * 1024 - 30),
    ];
    for (name, brackets) in cases {
        let appspec = tmp.path().join(name);
        std::fs::write(
            &appspec,
            format!("version: 0.0\nos: linux\nx: {}\n", "[".repeat(brackets)),
        )
        .unwrap();
        let started = std::time::Instant::now();
        let output = validate(&[appspec.to_str().unwrap()]);
        let took = started.elapsed();
        assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
        assert!(
            String::from_utf8_lossy(&output.stdout).contains(&format!(
                "it holds {brackets} `[` and `{{` characters, more than the 10000 the agent reads"
            )),
            "{}",
            describe(&output)
        );
        // The lenient second parse took 78 s on 160,000 brackets, minutes on 1 MB.
        assert!(took < std::time::Duration::from_secs(2), "{name}: {took:?}");
    }
}

#[test]
fn validate_runs_the_deployment_s_checks_under_the_agent_configuration() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("codedeployagent.yml");
    std::fs::write(
        &config,
        "---\n:reject_unsafe_permissions_in_bundle: true\n:reject_symlinks_in_bundle: true\n:archive_max_extraction_size: 1048576\n",
    )
    .unwrap();
    let tgz = |name: &str, revision: Revision| {
        let path = tmp.path().join(name);
        std::fs::write(&path, revision.to_tgz().unwrap()).unwrap();
        path
    };
    let dir = |name: &str, revision: Revision| {
        let path = tmp.path().join(name);
        write_tree(&revision, &path);
        path
    };
    let setuid = tgz(
        "setuid.tgz",
        valid_revision().file_with_mode("content/tool", "#!/bin/sh\n", 0o4755),
    );
    let linked = tgz(
        "linked.tgz",
        valid_revision().symlink("content/current", "index.html"),
    );
    let large = tgz(
        "large.tgz",
        valid_revision().file("content/big.bin", vec![0u8; 2 * 1024 * 1024]),
    );
    let cases = [
        (
            setuid,
            "has the setuid or setgid bit (reject_unsafe_permissions_in_bundle is true)",
        ),
        (
            linked,
            "links are not allowed in a revision (reject_symlinks_in_bundle is true)",
        ),
        (
            large,
            "unpacks to more than archive_max_extraction_size (1048576 bytes)",
        ),
    ];
    let refused = |config: &std::path::Path, cases: &[(PathBuf, &str)]| {
        for (bundle, expected) in cases {
            let output = validate_with(config, bundle);
            assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
            assert!(
                String::from_utf8_lossy(&output.stdout).contains(expected),
                "{expected}\n{}",
                describe(&output)
            );
        }
    };
    refused(&config, &cases);
    let defaults = tmp.path().join("absent.yml");
    for (bundle, _) in &cases {
        let output = validate_with(&defaults, bundle);
        assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    }

    // Bundles that deploy nowhere, whatever the configuration.
    let installs_all =
        "version: 0.0\nos: linux\nfiles:\n  - source: /\n    destination: /srv/app\n";
    let big_appspec = dir(
        "big-appspec",
        valid_revision().file(
            "appspec.yml",
            format!("{VALID_APPSPEC}# {}\n", "x".repeat(20 * 1024 * 1024)),
        ),
    );
    // Textually inside its top folder, outside once the folder is promoted:
    // it then names the deployment folder's logs/.
    let leaves_once_unpacked = tgz(
        "leaves.tgz",
        Revision::new()
            .file("appspec.yml", installs_all)
            .symlink("out", "../logs")
            .with_top_folder("app"),
    );
    let loop_dir = dir("loop", valid_revision().symlink("content/again", "."));
    let outside_dir = dir("outside", valid_revision().symlink("content/etc", "/etc"));
    let cases = [
        (
            big_appspec,
            "an AppSpec larger than 4194304 bytes is refused",
        ),
        (
            leaves_once_unpacked,
            "error: Install would fail: The revision's symbolic link",
        ),
        (
            loop_dir,
            "leads back into a directory being copied (a loop)",
        ),
        (
            outside_dir,
            "points to a directory outside the revision (/etc)",
        ),
    ];
    refused(&defaults, &cases);
}

#[test]
fn sigterm_stops_validate_within_a_second_and_removes_its_temporary_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let bundle = tmp.path().join("many.tgz");
    std::fs::write(&bundle, many_files_revision(190_000).to_tgz().unwrap()).unwrap();
    let temp_root = tmp.path().join("tmp");
    std::fs::create_dir(&temp_root).unwrap();
    let mut child = Command::new(agent_binary())
        .args(["validate", bundle.to_str().unwrap()])
        .env("TMPDIR", &temp_root)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the agent binary runs");
    let unpacking = || {
        std::fs::read_dir(&temp_root)
            .into_iter()
            .flatten()
            .flatten()
            .any(|temp| temp.path().join("deployment-archive/content/d001").exists())
    };
    assert!(
        wait_until(std::time::Duration::from_secs(60), unpacking),
        "the unpack gets under way"
    );
    let (took, status) = terminate(&mut child, std::time::Duration::from_secs(20));
    assert!(
        status.is_some_and(|s| s.code() == Some(3))
            && took < std::time::Duration::from_millis(1500),
        "stopped at the next entry: {status:?} after {took:?}"
    );
    let left: Vec<_> = std::fs::read_dir(&temp_root).unwrap().flatten().collect();
    assert!(left.is_empty(), "nothing is left behind: {left:?}");
}

#[test]
fn keys_written_twice_below_the_top_level_are_reported_as_warnings() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("bundle");
    let appspec = VALID_APPSPEC
        .replace(
            "    destination: /srv/app\n",
            "    destination: /srv/app\n    destination: /srv/other\n",
        )
        .replace(
            "      timeout: 60\n",
            "      timeout: 60\n      timeout: 90\n",
        );
    write_tree(&valid_revision().file("appspec.yml", appspec), &dir);
    let output = validate(&[dir.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert_eq!(
        report(&output, &format!("{}/appspec.yml", dir.display())),
        [
            "<file>: warning: files[0]: 'destination' appears more than once; only the last one counts",
            "<file>: warning: hooks.ApplicationStart[0]: 'timeout' appears more than once; only the last one counts",
            "<file>: valid (2 warnings)",
        ],
        "{}",
        describe(&output)
    );
}
