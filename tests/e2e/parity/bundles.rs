//! Bundle layouts beyond `tests/e2e/bundles.rs` (which has a zip and a tgz
//! in a top-level folder and a flat tar): a tgz built by `git archive
//! --prefix` itself (with its pax global header), and a flat zip with links,
//! private and setuid modes and nested directories, installed as the official
//! agent installs them (links recreated, file modes and times kept, setuid
//! only from a tar, directories made with the default mode, zip entries owned
//! by the agent's user).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use codedeploy_e2e::{BundleType, Deployment, Revision, S3Location, TestBed};

use super::{default_directory_mode, mode_of, owner_of};
use crate::support::*;

#[test]
fn zip_revision_keeps_links_and_modes_and_makes_directories_with_the_default_mode() {
    let bed = TestBed::start("parity-zip-layout");
    let install = bed.path().join("srv/ledger");
    let hooks_log = bed.path().join("hooks.log");
    let hooks = [hook("AfterInstall", "scripts/after_install.sh")];
    let revision = Revision::new()
        .file("appspec.yml", appspec("dist", &install, &hooks))
        .file("dist/ledger-1.9.conf", "mode=strict\n")
        .symlink("dist/ledger.conf", "ledger-1.9.conf")
        .file_with_mode("dist/secrets/token", "s3cr3t\n", 0o600)
        .dir("dist/secrets", 0o700)
        .file_with_mode("dist/lib/native/libledger.so", "\x7fELF", 0o755)
        .file_with_mode("dist/share/doc/README", "read me\n", 0o444)
        // unzip (without -K) drops setuid, setgid and sticky bits.
        .file_with_mode("dist/bin/ledger-helper", "#!/bin/sh\n", 0o4755)
        .script(
            "scripts/after_install.sh",
            recording_hook("zip", &hooks_log),
        );
    let location = bed.upload(
        "ledger-revisions",
        "ledger/ledger.zip",
        &revision,
        BundleType::Zip,
    );
    let deployment = Deployment::new("Ledger", "Ledger-Fleet", location);
    bed.emulator.add_deployment(deployment.clone());
    bed.start_agent(&agent_binary());
    expect_success(&bed, &deployment);

    let link = install.join("ledger.conf");
    ensure_eq!(
        bed,
        std::fs::read_link(&link).ok(),
        Some(PathBuf::from("ledger-1.9.conf")),
        "a link to a file is installed as the same link"
    );
    ensure_eq!(
        bed,
        read(&link),
        "mode=strict\n",
        "the link resolves to the installed file"
    );
    let dir_mode = default_directory_mode();
    // Zip entries carry no owner: everything belongs to the agent's user
    // (root, in production and in CI).
    let agent_user = (
        nix::unistd::geteuid().as_raw(),
        nix::unistd::getegid().as_raw(),
    );
    // (path, mode)
    let expected: &[(&str, u32)] = &[
        ("ledger-1.9.conf", 0o644),
        ("secrets/token", 0o600),
        ("secrets", dir_mode),
        ("lib/native/libledger.so", 0o755),
        ("lib/native", dir_mode),
        ("lib", dir_mode),
        ("share/doc/README", 0o444),
        ("bin/ledger-helper", 0o755),
    ];
    for (relative, mode) in expected {
        let path = install.join(relative);
        ensure_eq!(
            bed,
            (mode_of(&path), owner_of(&path)),
            (Some(*mode), Some(agent_user)),
            "{relative}: mode {mode:o}, owned by the agent's user"
        );
    }
    ensure_eq!(
        bed,
        lines(&hooks_log),
        vec![expected_hook_line("zip", "AfterInstall", &deployment)],
        "the zip's hook is executable and runs"
    );
}

/// Runs git in `repo` as a throwaway identity; the error says what failed.
fn git(repo: &Path, args: &[&str]) -> Result<(), String> {
    let output = Command::new("git")
        .args(["-c", "user.name=e2e", "-c", "user.email=e2e@example.com"])
        .args(["-c", "init.defaultBranch=main", "-c", "core.fileMode=true"])
        .args(args)
        .current_dir(repo)
        .output()
        .map_err(|e| format!("cannot run git: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "git {} failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

#[test]
fn tgz_made_by_git_archive_with_a_prefix_is_deployed() {
    if Command::new("git").arg("--version").output().is_err() {
        eprintln!(
            "SKIPPED tgz_made_by_git_archive_with_a_prefix_is_deployed: git is not installed"
        );
        return;
    }
    let bed = TestBed::start("parity-git-archive");
    let install = bed.path().join("srv/shop");
    let hooks_log = bed.path().join("hooks.log");
    let repo = bed.path().join("repo");
    let hooks = [hook("AfterInstall", "deploy/after_install.sh")];
    let files: &[(&str, String, u32)] = &[
        ("appspec.yml", appspec("src", &install, &hooks), 0o644),
        ("src/shop.py", "print('shop')\n".to_string(), 0o644),
        (
            "src/bin/run",
            "#!/bin/sh\nexec python3 shop.py\n".to_string(),
            0o755,
        ),
        (
            "deploy/after_install.sh",
            recording_hook("git", &hooks_log),
            0o755,
        ),
    ];
    for (path, contents, mode) in files {
        let path = repo.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, contents).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(*mode)).unwrap();
    }
    let bundle = bed.path().join("shop-1.0.0.tar.gz");
    let archived = git(&repo, &["init", "-q"])
        .and_then(|()| git(&repo, &["add", "-A"]))
        .and_then(|()| git(&repo, &["commit", "-qm", "release 1.0.0"]))
        .and_then(|()| {
            git(
                &repo,
                &[
                    "archive",
                    "--format=tar.gz",
                    "--prefix=shop-1.0.0/",
                    "-o",
                    &bundle.to_string_lossy(),
                    "HEAD",
                ],
            )
        });
    if let Err(e) = archived {
        panic!("{e}\n{}", bed.report());
    }
    let bucket = "git-archives";
    bed.s3
        .create_versioned_bucket(bucket)
        .unwrap_or_else(|e| panic!("{e}\n{}", bed.s3.log()));
    let object = bed
        .s3
        .put_object(
            bucket,
            "shop/shop-1.0.0.tar.gz",
            std::fs::read(&bundle).unwrap(),
        )
        .unwrap_or_else(|e| panic!("{e}\n{}", bed.s3.log()));
    let deployment = Deployment::new(
        "Shop",
        "Shop-Fleet",
        S3Location::of(&object, BundleType::Tgz),
    );
    bed.emulator.add_deployment(deployment.clone());
    bed.start_agent(&agent_binary());
    expect_success(&bed, &deployment);

    let archive = deployment_dir(&bed, &deployment).join("deployment-archive");
    let mut top: Vec<String> = std::fs::read_dir(&archive)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    top.sort();
    ensure_eq!(
        bed,
        top,
        vec!["appspec.yml", "deploy", "src"],
        "the prefix folder is the archive root; the pax global header is no file"
    );
    // git archive writes files 0664 and executables 0775 (tar.umask 0002);
    // a root extraction keeps them exactly, and so does Install.
    let dir_mode = default_directory_mode();
    let expected: &[(&str, u32)] = &[("shop.py", 0o664), ("bin/run", 0o775), ("bin", dir_mode)];
    for (relative, mode) in expected {
        ensure_eq!(
            bed,
            mode_of(&install.join(relative)),
            Some(*mode),
            "{relative}: mode {mode:o}"
        );
    }
    ensure_eq!(
        bed,
        lines(&hooks_log),
        vec![expected_hook_line("git", "AfterInstall", &deployment)],
        "the hook from the git archive ran"
    );
}
