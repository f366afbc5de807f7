//! Install on real files: a revision in a temporary directory installed under
//! another temporary directory, twice, with the cleanup file in between.

use std::fs;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::*;
use crate::appspec::parse;

struct Host {
    _tmp: tempfile::TempDir,
    root: PathBuf,
}

impl Host {
    fn new() -> Host {
        let tmp = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(tmp.path()).unwrap();
        for dir in ["rev1", "rev2", "instructions", "dest"] {
            fs::create_dir(root.join(dir)).unwrap();
        }
        Host { _tmp: tmp, root }
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.root.join(relative)
    }

    fn write(&self, relative: &str, content: &str, mode: u32) {
        let path = self.path(relative);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, content).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
    }

    fn install(
        &self,
        revision: &str,
        appspec: &str,
        behavior: FileExistsBehavior,
    ) -> Result<(), InstallError> {
        let text = appspec.replace("DEST", self.path("dest").to_str().unwrap());
        let appspec = parse(&text, Path::new("appspec.yml")).unwrap();
        install(&InstallRequest {
            appspec: &appspec,
            archive_dir: &self.path(revision),
            file_exists_behavior: behavior,
            cleanup_file: &self.path("instructions/g-1-cleanup"),
            instructions_file: &self.path("instructions/g-1-install.json"),
            policy: crate::config::InstallPolicy::default(),
            stop: &crate::shutdown::never(),
        })
    }

    fn cleanup_lines(&self) -> Vec<String> {
        let root = format!("{}/", self.root.display());
        fs::read_to_string(self.path("instructions/g-1-cleanup"))
            .unwrap()
            .lines()
            .map(|l| l.replace(&root, ""))
            .collect()
    }
}

const WHOLE_REVISION: &str =
    "version: 0.0\nos: linux\nfiles:\n  - source: /\n    destination: DEST/app\n";

#[test]
fn install_copies_the_revision_and_records_what_it_created() {
    let host = Host::new();
    host.write("rev1/appspec.yml", "version: 0.0", 0o644);
    host.write("rev1/bin/start.sh", "#!/bin/sh\n", 0o4755);
    host.write("rev1/conf/app.conf", "a=1\n", 0o640);
    symlink("conf/app.conf", host.path("rev1/current.conf")).unwrap();
    let old = filetime(1_500_000_000);
    fs::File::options()
        .write(true)
        .open(host.path("rev1/conf/app.conf"))
        .unwrap()
        .set_times(old)
        .unwrap();

    host.install("rev1", WHOLE_REVISION, FileExistsBehavior::Disallow)
        .unwrap();

    let app = host.path("dest/app");
    assert_eq!(
        fs::read_to_string(app.join("bin/start.sh")).unwrap(),
        "#!/bin/sh\n"
    );
    assert_eq!(
        fs::metadata(app.join("bin/start.sh")).unwrap().mode() & 0o7777,
        0o4755
    );
    assert_eq!(
        fs::metadata(app.join("conf/app.conf")).unwrap().mode() & 0o7777,
        0o640
    );
    assert_eq!(
        fs::metadata(app.join("conf/app.conf")).unwrap().mtime(),
        1_500_000_000
    );
    assert_eq!(
        fs::read_link(app.join("current.conf")).unwrap(),
        Path::new("conf/app.conf")
    );
    assert_eq!(
        host.cleanup_lines(),
        [
            // The folders of a run of copies first, then its files.
            "dest/app",
            "dest/app/bin",
            "dest/app/conf",
            "dest/app/appspec.yml",
            "dest/app/bin/start.sh",
            "dest/app/conf/app.conf",
            "dest/app/current.conf",
        ]
    );
    let json: serde_json::Value = serde_json::from_str(
        &fs::read_to_string(host.path("instructions/g-1-install.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        json["instructions"][0],
        serde_json::json!({"type": "mkdir", "directory": app.to_str().unwrap()})
    );
    assert_eq!(json["instructions"][1]["type"], "copy");
    assert_eq!(
        json["instructions"][1]["source"],
        host.path("rev1/appspec.yml").to_str().unwrap()
    );
    // No temporary files were left beside the installed ones.
    assert_eq!(fs::read_dir(&app).unwrap().count(), 4);
}

fn filetime(seconds: u64) -> fs::FileTimes {
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(seconds);
    fs::FileTimes::new().set_accessed(time).set_modified(time)
}

#[test]
fn the_next_install_removes_the_previous_revision_first() {
    let host = Host::new();
    host.write("rev1/appspec.yml", "one", 0o644);
    host.write("rev1/old-only.txt", "old", 0o644);
    host.write("rev1/data/cache.txt", "x", 0o644);
    host.write("rev1/logs/.keep", "", 0o644);
    host.install("rev1", WHOLE_REVISION, FileExistsBehavior::Disallow)
        .unwrap();
    // The application writes into one of the revision's directories.
    host.write("dest/app/logs/app.log", "runtime", 0o644);
    // Something the cleanup lists is already gone.
    fs::remove_file(host.path("dest/app/data/cache.txt")).unwrap();

    host.write("rev2/appspec.yml", "two", 0o644);
    host.install("rev2", WHOLE_REVISION, FileExistsBehavior::Disallow)
        .unwrap();

    let app = host.path("dest/app");
    assert_eq!(fs::read_to_string(app.join("appspec.yml")).unwrap(), "two");
    assert!(!app.join("old-only.txt").exists());
    assert!(!app.join("data").exists());
    // A directory that is not empty stays, with the application's file.
    assert_eq!(
        fs::read_to_string(app.join("logs/app.log")).unwrap(),
        "runtime"
    );
    assert!(!app.join("logs/.keep").exists());
    // dest/app survived (it holds logs/), so this Install did not create it.
    assert_eq!(host.cleanup_lines(), ["dest/app/appspec.yml"]);
}

#[test]
fn an_interrupted_cleanup_line_is_ignored() {
    let host = Host::new();
    host.write("dest/victim", "keep me", 0o644);
    host.write("dest/listed", "remove me", 0o644);
    let listed = host.path("dest/listed");
    let victim = host.path("dest/victim");
    fs::write(
        host.path("instructions/g-1-cleanup"),
        format!("{}\n{}", listed.display(), victim.display()),
    )
    .unwrap();
    // What the Install that wrote it planned, as it would have listed it.
    fs::write(
        host.path("instructions/g-1-install.json"),
        serde_json::json!({"instructions": [
            {"type": "copy", "source": "/r/listed", "destination": listed},
            {"type": "copy", "source": "/r/victim", "destination": victim},
        ]})
        .to_string(),
    )
    .unwrap();
    host.write("rev1/appspec.yml", "x", 0o644);
    host.install("rev1", WHOLE_REVISION, FileExistsBehavior::Disallow)
        .unwrap();
    assert!(!listed.exists());
    assert_eq!(fs::read_to_string(&victim).unwrap(), "keep me");
}

#[test]
fn existing_files_follow_file_exists_behavior() {
    let appspec = "version: 0.0\nos: linux\nfiles:\n  - source: app.conf\n    destination: DEST\n";
    let cases: &[(FileExistsBehavior, Result<&str, &str>)] = &[
        (
            FileExistsBehavior::Disallow,
            Err("a specified file already exists at this location"),
        ),
        (FileExistsBehavior::Overwrite, Ok("new")),
        (FileExistsBehavior::Retain, Ok("existing")),
    ];
    for (behavior, expected) in cases {
        let host = Host::new();
        host.write("rev1/app.conf", "new", 0o644);
        host.write("dest/app.conf", "existing", 0o644);
        let result = host.install("rev1", appspec, *behavior);
        match expected {
            Ok(content) => {
                result.unwrap();
                assert_eq!(
                    fs::read_to_string(host.path("dest/app.conf")).unwrap(),
                    *content,
                    "{behavior}"
                );
            }
            Err(fragment) => {
                let message = result.unwrap_err().to_string();
                assert!(message.contains(fragment), "{message}");
                assert_eq!(
                    fs::read_to_string(host.path("dest/app.conf")).unwrap(),
                    "existing"
                );
            }
        }
    }
}

#[test]
fn overwrite_writes_through_a_host_link_to_a_file_and_keeps_the_link() {
    // As `cp -p` and the official agent: the host's link stays, the file it
    // points to gets the content, the mode and the destination's permissions.
    let host = Host::new();
    host.write("rev1/app.conf", "new", 0o644);
    host.write("rev1/other.conf", "other", 0o644);
    host.write("shared/app.conf", "maintained on the host", 0o600);
    host.write("shared/other.conf", "maintained on the host", 0o600);
    symlink(host.path("shared/app.conf"), host.path("dest/app.conf")).unwrap();
    symlink(host.path("shared/other.conf"), host.path("dest/other.conf")).unwrap();
    let appspec = "version: 0.0\nos: linux\nfiles:\n  - source: app.conf\n    destination: DEST\n  - source: other.conf\n    destination: DEST\npermissions:\n  - object: DEST/other.conf\n    mode: 640\n";
    host.install("rev1", appspec, FileExistsBehavior::Overwrite)
        .unwrap();
    for (name, content, mode) in [("app.conf", "new", 0o644), ("other.conf", "other", 0o640)] {
        let link = host.path(&format!("dest/{name}"));
        let linked = host.path(&format!("shared/{name}"));
        assert_eq!(fs::read_link(&link).unwrap(), linked, "{name}");
        assert_eq!(fs::read_to_string(&linked).unwrap(), content, "{name}");
        assert_eq!(
            fs::metadata(&linked).unwrap().mode() & 0o7777,
            mode,
            "{name}"
        );
    }
    // The link is what this Install put in place: the next one removes the
    // link and leaves the host's file.
    assert!(host.cleanup_lines().contains(&"dest/app.conf".to_string()));
    host.write("rev2/appspec.yml", "version: 0.0", 0o644);
    host.install(
        "rev2",
        "version: 0.0\nos: linux\nfiles:\n  - source: appspec.yml\n    destination: DEST/next\n",
        FileExistsBehavior::Disallow,
    )
    .unwrap();
    assert!(fs::symlink_metadata(host.path("dest/app.conf")).is_err());
    assert_eq!(
        fs::read_to_string(host.path("shared/app.conf")).unwrap(),
        "new"
    );
}

#[test]
fn a_link_in_the_revision_replaces_a_host_link_and_a_dangling_link_is_replaced() {
    let host = Host::new();
    symlink("app.conf.dist", host.path("rev1/app.conf")).unwrap();
    host.write("rev1/extra.conf", "extra", 0o644);
    host.write("shared/app.conf", "maintained on the host", 0o600);
    symlink(host.path("shared/app.conf"), host.path("dest/app.conf")).unwrap();
    symlink(host.path("nowhere"), host.path("dest/extra.conf")).unwrap();
    host.install(
        "rev1",
        "version: 0.0\nos: linux\nfiles:\n  - source: /\n    destination: DEST\n",
        FileExistsBehavior::Overwrite,
    )
    .unwrap();
    assert_eq!(
        fs::read_link(host.path("dest/app.conf")).unwrap(),
        PathBuf::from("app.conf.dist")
    );
    assert_eq!(
        fs::read_to_string(host.path("shared/app.conf")).unwrap(),
        "maintained on the host"
    );
    assert!(fs::symlink_metadata(host.path("dest/extra.conf"))
        .unwrap()
        .is_file());
    assert!(!host.path("nowhere").exists());
}

#[test]
fn directory_links_inside_are_copied_and_outside_are_refused() {
    let host = Host::new();
    host.write("rev1/real/file", "inside", 0o644);
    symlink("real", host.path("rev1/alias")).unwrap();
    host.install("rev1", WHOLE_REVISION, FileExistsBehavior::Disallow)
        .unwrap();
    let alias = host.path("dest/app/alias");
    assert!(fs::symlink_metadata(&alias).unwrap().is_dir());
    assert_eq!(fs::read_to_string(alias.join("file")).unwrap(), "inside");

    let host = Host::new();
    host.write("secret/key", "s3cr3t", 0o600);
    symlink(host.path("secret"), host.path("rev1/leak")).unwrap();
    let err = host
        .install("rev1", WHOLE_REVISION, FileExistsBehavior::Disallow)
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("points to a directory outside the revision"),
        "{err}"
    );
    // A source written through that link is refused too.
    let err = host
        .install(
            "rev1",
            "version: 0.0\nos: linux\nfiles:\n  - source: leak/key\n    destination: DEST\n",
            FileExistsBehavior::Disallow,
        )
        .unwrap_err();
    assert!(err.to_string().contains("outside the revision"), "{err}");
    assert!(!host.path("dest/key").exists());
}

#[test]
fn permissions_are_applied_to_installed_paths() {
    let host = Host::new();
    host.write("rev1/bin/run.sh", "#!/bin/sh\n", 0o644);
    host.write("rev1/bin/data.txt", "d", 0o644);
    let appspec = format!(
        "{WHOLE_REVISION}permissions:\n  - object: DEST/app/bin\n    pattern: \"*.sh\"\n    mode: 750\n    owner: root\n    group: root\n  - object: DEST/app\n    type: [directory]\n    mode: 711\n"
    );
    host.install("rev1", &appspec, FileExistsBehavior::Disallow)
        .unwrap();
    let mode = |p: &str| fs::metadata(host.path(p)).unwrap().mode() & 0o7777;
    assert_eq!(mode("dest/app/bin/run.sh"), 0o750);
    assert_eq!(mode("dest/app/bin/data.txt"), 0o644);
    assert_eq!(mode("dest/app/bin"), 0o711);

    let host = Host::new();
    host.write("rev1/f", "x", 0o644);
    let appspec = format!(
        "{WHOLE_REVISION}permissions:\n  - object: DEST/app/f\n    owner: no-such-user-here\n"
    );
    let err = host
        .install("rev1", &appspec, FileExistsBehavior::Disallow)
        .unwrap_err();
    assert!(
        err.to_string().contains("user 'no-such-user-here'"),
        "{err}"
    );
}

#[test]
fn effective_behavior_prefers_the_appspec_then_the_deployment() {
    use FileExistsBehavior::*;
    assert_eq!(effective_behavior(Some(Retain), Some(Overwrite)), Retain);
    assert_eq!(effective_behavior(None, Some(Overwrite)), Overwrite);
    assert_eq!(effective_behavior(None, None), Disallow);
}

/// The permission-step hardening keys against the steps they are about.
#[test]
fn the_install_policy_refuses_setid_modes_and_unconfined_types_when_asked() {
    use crate::appspec::{Mode, SeLinuxContext};
    use crate::config::{InstallPolicy, SeLinuxTypes, SetIdBits};
    let chmod = |mode: &str| Instruction::Chmod {
        file: "/srv/app/tool".into(),
        mode: Mode::parse(mode).unwrap(),
    };
    let context = |type_: &str| Instruction::SetContext {
        file: "/srv/app/tool".into(),
        context: Box::new(SeLinuxContext {
            user: None,
            type_: type_.to_string(),
            range: None,
        }),
    };
    let default = InstallPolicy::default();
    let strict = InstallPolicy {
        setid_modes: SetIdBits::Refuse,
        selinux: SeLinuxTypes::RefuseUnconfined,
        ..default
    };
    let cases: Vec<(Instruction, InstallPolicy, Option<&str>)> = vec![
        (chmod("4755"), default, None),
        (chmod("4755"), strict, Some("mode 4755, with the setuid or setgid bit (reject_unsafe_permissions_in_bundle is true)")),
        (chmod("2750"), strict, Some("mode 2750")),
        (chmod("1777"), strict, None),
        (chmod("0755"), strict, None),
        (context("unconfined_t"), default, None),
        (context("unconfined_t"), strict, Some("the SELinux type unconfined_t, which runs unconfined (reject_unconfined_selinux_in_bundle is true)")),
        (context("kernel_t"), strict, Some("kernel_t")),
        (context("init_t"), strict, Some("init_t")),
        (context("httpd_sys_content_t"), strict, None),
    ];
    for (instruction, policy, refusal) in cases {
        match (check_step(&instruction, &policy), refusal) {
            (Ok(()), None) => {}
            (Err(e), Some(fragment)) => {
                let message = e.to_string();
                assert!(
                    message.contains("refuses a permission step on /srv/app/tool")
                        && message.contains(fragment),
                    "{instruction:?}: {message}"
                );
            }
            (got, expected) => {
                panic!("{instruction:?} under {policy:?}: {got:?}, expected {expected:?}")
            }
        }
    }
}

/// A revision of hundreds of files lands whole: every file with its content,
/// mode and time, links as links, no temporary file left, and a cleanup file
/// that names each path once, every directory before what it holds, so that
/// the next Install removes it all.
#[test]
fn many_files_land_with_a_true_cleanup_record() {
    let host = Host::new();
    host.write("rev1/appspec.yml", "version: 0.0", 0o644);
    let mut expected = vec!["dest/app".to_string(), "dest/app/appspec.yml".to_string()];
    for d in 0..3 {
        expected.push(format!("dest/app/d{d}"));
        for f in 0..150 {
            let mode = [0o644, 0o600, 0o755][f % 3];
            host.write(&format!("rev1/d{d}/f{f:03}"), &format!("{d}/{f}"), mode);
            expected.push(format!("dest/app/d{d}/f{f:03}"));
        }
        symlink(format!("f{:03}", d), host.path(&format!("rev1/d{d}/link"))).unwrap();
        expected.push(format!("dest/app/d{d}/link"));
    }
    fs::File::options()
        .write(true)
        .open(host.path("rev1/d1/f007"))
        .unwrap()
        .set_times(filetime(1_500_000_000))
        .unwrap();

    host.install("rev1", WHOLE_REVISION, FileExistsBehavior::Disallow)
        .unwrap();

    let app = host.path("dest/app");
    for d in 0..3 {
        for f in 0..150 {
            let path = app.join(format!("d{d}/f{f:03}"));
            assert_eq!(fs::read_to_string(&path).unwrap(), format!("{d}/{f}"));
            assert_eq!(
                fs::metadata(&path).unwrap().mode() & 0o7777,
                [0o644, 0o600, 0o755][f % 3],
                "{}",
                path.display()
            );
        }
        assert_eq!(
            fs::read_link(app.join(format!("d{d}/link"))).unwrap(),
            Path::new(&format!("f{d:03}"))
        );
        // Nothing but the revision's files: no temporary files left.
        assert_eq!(
            fs::read_dir(app.join(format!("d{d}"))).unwrap().count(),
            151
        );
    }
    assert_eq!(
        fs::metadata(app.join("d1/f007")).unwrap().mtime(),
        1_500_000_000
    );
    let lines = host.cleanup_lines();
    let mut sorted = lines.clone();
    sorted.sort();
    expected.sort();
    assert_eq!(sorted, expected, "each created path listed once");
    for (index, line) in lines.iter().enumerate() {
        let parent = Path::new(line).parent().unwrap().to_str().unwrap();
        if parent != "dest" {
            let listed_at = lines.iter().position(|l| l == parent).unwrap();
            assert!(listed_at < index, "{parent} is listed before {line}");
        }
    }

    // The next Install replays that record and removes every file.
    host.write("rev2/appspec.yml", "version: 0.0", 0o644);
    host.install("rev2", WHOLE_REVISION, FileExistsBehavior::Disallow)
        .unwrap();
    assert_eq!(
        fs::read_dir(&app).unwrap().count(),
        1,
        "only the new appspec.yml is left"
    );
}

/// Two deployment groups installing under one new parent directory plan its
/// creation each; the one that comes second finds it made and goes on,
/// leaving the directory to the cleanup file of the group that made it. A
/// file standing where a directory goes still fails.
#[test]
fn a_directory_made_by_another_group_after_planning_is_used_not_recorded() {
    let host = Host::new();
    let shared = host.path("dest/srv");
    let own = shared.join("blue");
    let plan = InstallPlan {
        instructions: vec![
            Instruction::Mkdir {
                directory: shared.clone(),
            },
            Instruction::Mkdir {
                directory: own.clone(),
            },
        ],
    };
    fs::create_dir(&shared).unwrap();
    let log = host.path("instructions/g-1-cleanup");
    let mut cleanup = cleanup::CleanupLog::create(&log).unwrap();
    apply::apply(
        plan.instructions.iter().cloned().map(Ok),
        &mut cleanup,
        crate::config::PermissionLinks::Skip,
        &crate::shutdown::never(),
    )
    .unwrap();
    drop(cleanup);
    assert!(own.is_dir());
    assert_eq!(host.cleanup_lines(), vec!["dest/srv/blue".to_string()]);

    fs::remove_dir(&own).unwrap();
    fs::write(&own, "not a directory").unwrap();
    let mut cleanup = cleanup::CleanupLog::create(&log).unwrap();
    let err = apply::apply(
        plan.instructions.iter().cloned().map(Ok),
        &mut cleanup,
        crate::config::PermissionLinks::Skip,
        &crate::shutdown::never(),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("dest/srv/blue"),
        "the error names the path: {err}"
    );
}

/// The agent killed in the middle of a copy leaves the partial file beside
/// the destination; the next Install removes it with the interrupted
/// revision's files (its directory then being empty goes too), and a copy
/// that finds its own partial file left over replaces it.
#[test]
fn partial_files_of_an_interrupted_install_are_removed_by_the_next_one() {
    let host = Host::new();
    host.write("rev1/appspec.yml", "one", 0o644);
    host.write("rev1/data/big.bin", "whole", 0o644);
    host.install("rev1", WHOLE_REVISION, FileExistsBehavior::Disallow)
        .unwrap();
    // As the kill leaves it: big.bin listed, only its partial file on disk.
    let big = host.path("dest/app/data/big.bin");
    fs::remove_file(&big).unwrap();
    fs::write(cleanup::partial_path(&big), "half").unwrap();
    // And a partial file of a destination the next revision installs.
    let conf = host.path("dest/app/conf.txt");
    fs::write(cleanup::partial_path(&conf), "stale").unwrap();

    host.write("rev2/appspec.yml", "two", 0o644);
    host.write("rev2/conf.txt", "fresh", 0o644);
    host.install("rev2", WHOLE_REVISION, FileExistsBehavior::Disallow)
        .unwrap();

    let app = host.path("dest/app");
    assert!(
        !app.join("data").exists(),
        "data/ and its partial file are gone"
    );
    assert_eq!(fs::read_to_string(&conf).unwrap(), "fresh");
    let mut names: Vec<String> = fs::read_dir(&app)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["appspec.yml", "conf.txt"]);
}

#[test]
fn partial_file_names_stay_beside_their_destination_and_within_name_max() {
    let short = Path::new("/srv/app/index.html");
    assert_eq!(
        cleanup::partial_path(short),
        Path::new("/srv/app/.index.html.codedeploy-partial")
    );
    let long_a = format!("/srv/{}a", "x".repeat(240));
    let long_b = format!("/srv/{}b", "x".repeat(240));
    let (a, b) = (
        cleanup::partial_path(Path::new(&long_a)),
        cleanup::partial_path(Path::new(&long_b)),
    );
    for partial in [&a, &b] {
        assert_eq!(partial.parent(), Some(Path::new("/srv")));
        assert!(partial.file_name().unwrap().len() <= 255, "{partial:?}");
    }
    assert_ne!(a, b, "names that share their first 200 bytes still differ");
    assert_eq!(
        a,
        cleanup::partial_path(Path::new(&long_a)),
        "deterministic"
    );
}

/// Copies run on several threads; when some fail, the failure reported is
/// the one the plan meets first, whichever thread met it, and the file it
/// names is in the cleanup record.
#[test]
fn the_first_failing_copy_in_plan_order_is_the_one_reported() {
    let host = Host::new();
    host.write("rev1/appspec.yml", "version: 0.0", 0o644);
    for d in 0..4 {
        for f in 0..100 {
            host.write(&format!("rev1/d{d}/f{f:03}"), "x", 0o644);
        }
    }
    // A directory where a copy's partial file goes: that copy cannot land.
    for blocked in [
        "dest/app/d2/.f090.codedeploy-partial",
        "dest/app/d3/.f010.codedeploy-partial",
    ] {
        fs::create_dir_all(host.path(blocked)).unwrap();
    }

    let error = host
        .install("rev1", WHOLE_REVISION, FileExistsBehavior::Disallow)
        .unwrap_err()
        .to_string();
    let first = host.path("dest/app/d2/f090");
    assert!(error.contains(first.to_str().unwrap()), "{error}");
    assert!(host
        .cleanup_lines()
        .contains(&"dest/app/d2/f090".to_string()));
}

/// Install plans into a file on disk and keeps nothing per file in memory:
/// a conflict met at the last of thousands of files must still fail before
/// anything is installed, name that file, and leave the previous
/// install.json as it was and no plan file behind.
#[test]
fn a_conflict_at_the_last_of_many_files_fails_before_anything_is_installed() {
    let host = Host::new();
    for n in 0..3000 {
        host.write(&format!("rev1/d{:02}/f{n:04}", n % 30), "new", 0o644);
    }
    fs::write(
        host.path("instructions/g-1-install.json"),
        "{\"instructions\":[]}",
    )
    .unwrap();
    // The walk goes folder by folder in name order: d29/f2999 comes last.
    host.write("dest/app/d29/f2999", "existing", 0o644);
    let error = host
        .install("rev1", WHOLE_REVISION, FileExistsBehavior::Disallow)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("d29/f2999") && error.contains("already exists"),
        "{error}"
    );
    let mut installed: Vec<PathBuf> = Vec::new();
    let mut folders = vec![host.path("dest")];
    while let Some(folder) = folders.pop() {
        for entry in fs::read_dir(folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                folders.push(path);
            } else {
                installed.push(path);
            }
        }
    }
    assert_eq!(installed, [host.path("dest/app/d29/f2999")]);
    assert_eq!(
        fs::read_to_string(host.path("instructions/g-1-install.json")).unwrap(),
        "{\"instructions\":[]}"
    );
    let mut left: Vec<String> = fs::read_dir(host.path("instructions"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["g-1-install.json"]);
}

/// Two `files` entries into one tree are the case where the planner
/// remembers destinations: both conflicts it catches there are caught
/// whichever entry comes first, and disjoint entries install side by side.
#[test]
fn files_entries_that_share_a_tree_are_checked_against_each_other() {
    let cases: &[(&str, Result<&[&str], &str>)] = &[
        (
            "  - source: conf\n    destination: DEST/app\n  - source: more\n    destination: DEST/app\n",
            Err("copies two sources"),
        ),
        (
            "  - source: conf\n    destination: DEST/app\n  - source: more\n    destination: DEST/web\n",
            Ok(&["app/a.conf", "web/a.conf"]),
        ),
        (
            "  - source: conf\n    destination: DEST/app\n  - source: other/b.conf\n    destination: DEST/app\n",
            Ok(&["app/a.conf", "app/b.conf"]),
        ),
    ];
    for (files, expected) in cases {
        let host = Host::new();
        host.write("rev1/conf/a.conf", "one", 0o644);
        host.write("rev1/more/a.conf", "two", 0o644);
        host.write("rev1/other/b.conf", "three", 0o644);
        let appspec = format!("version: 0.0\nos: linux\nfiles:\n{files}");
        let result = host.install("rev1", &appspec, FileExistsBehavior::Disallow);
        match expected {
            Ok(paths) => {
                result.unwrap();
                for path in *paths {
                    assert!(
                        host.path(&format!("dest/{path}")).is_file(),
                        "{files}: {path}"
                    );
                }
            }
            Err(fragment) => {
                let message = result.unwrap_err().to_string();
                assert!(message.contains(fragment), "{files}: {message}");
                assert!(!host.path("dest/app/a.conf").exists(), "{files}");
            }
        }
    }
}
