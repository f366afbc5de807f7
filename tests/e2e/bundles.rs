//! Bundle types and layouts other than the plain tgz: a zip and a tgz whose
//! content sits in one top-level folder, and a tar deployed with the
//! deployment's OVERWRITE file-exists behaviour.

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use codedeploy_e2e::{BundleType, Deployment, Revision, TestBed};

use crate::support::*;

/// Deploys a revision whose content sits in one top-level folder, as
/// `bundle_type`: the folder's content becomes the archive root, files keep
/// their modes and times, and the hooks run from the promoted folder.
fn deploy_from_a_top_level_folder(bundle_type: BundleType, tag: &str) {
    let bed = TestBed::start(&format!("{tag}-top-folder"));
    let install = bed.path().join("srv/gateway");
    let hooks_log = bed.path().join("hooks.log");
    let hooks = [
        hook("BeforeInstall", "scripts/before_install.sh"),
        hook("ValidateService", "scripts/validate.sh"),
    ];
    let revision = Revision::new()
        .file("appspec.yml", appspec("build", &install, &hooks))
        .file("build/gateway.yaml", "port: 8443\n")
        .script("build/bin/gateway", "#!/bin/sh\necho gateway\n")
        .script("scripts/before_install.sh", recording_hook(tag, &hooks_log))
        .script("scripts/validate.sh", recording_hook(tag, &hooks_log))
        .with_top_folder("gateway-3.2.0");
    let key = format!("gateway/gateway-3.2.0.{tag}");
    let location = bed.upload("gateway-revisions", &key, &revision, bundle_type);
    let deployment = Deployment::new("Gateway", "Gateway-Fleet", location);
    bed.emulator.add_deployment(deployment.clone());
    bed.start_agent(&agent_binary());
    expect_success(&bed, &deployment);
    ensure_command_cycle(&bed, &deployment);

    let archive = deployment_dir(&bed, &deployment).join("deployment-archive");
    ensure!(
        bed,
        archive.join("appspec.yml").is_file()
            && archive.join("build/gateway.yaml").is_file()
            && !archive.join("gateway-3.2.0").exists(),
        "the top-level folder's content is the archive root: {}",
        archive.display()
    );
    ensure_eq!(
        bed,
        read(&install.join("gateway.yaml")),
        "port: 8443\n",
        "installed gateway.yaml"
    );
    let mode =
        std::fs::metadata(install.join("bin/gateway")).map(|m| m.permissions().mode() & 0o777);
    ensure!(
        bed,
        matches!(mode, Ok(0o755)),
        "bin/gateway keeps its mode: {mode:?}"
    );
    let mtime = |p: &std::path::Path| std::fs::metadata(p).map(|m| m.mtime()).ok();
    ensure_eq!(
        bed,
        mtime(&install.join("gateway.yaml")),
        mtime(&archive.join("build/gateway.yaml")),
        "the installed file keeps the archive's modification time"
    );
    ensure_eq!(
        bed,
        lines(&hooks_log),
        vec![
            expected_hook_line(tag, "BeforeInstall", &deployment),
            expected_hook_line(tag, "ValidateService", &deployment),
        ],
        "hooks run from the promoted folder"
    );
}

#[test]
fn zip_revision_in_a_top_level_folder_is_deployed_from_that_folder() {
    deploy_from_a_top_level_folder(BundleType::Zip, "zip");
}

#[test]
fn tgz_revision_in_a_top_level_folder_is_deployed_from_that_folder() {
    deploy_from_a_top_level_folder(BundleType::Tgz, "tgz");
}

#[test]
fn tar_revision_overwrites_existing_files_when_the_deployment_says_overwrite() {
    let bed = TestBed::start("tar-overwrite");
    let install = bed.path().join("srv/docs");
    std::fs::create_dir_all(&install).unwrap();
    std::fs::write(install.join("index.html"), "stale page\n").unwrap();
    std::fs::write(install.join("unrelated.txt"), "keep me\n").unwrap();
    let revision = Revision::new()
        .file("appspec.yml", appspec("public", &install, &[]))
        .file("public/index.html", "fresh page\n");
    let location = bed.upload("tar-revisions", "docs/docs.tar", &revision, BundleType::Tar);
    let deployment =
        Deployment::new("Docs", "Docs-Group", location).file_exists_behavior("OVERWRITE");
    bed.emulator.add_deployment(deployment.clone());
    bed.start_agent(&agent_binary());
    expect_success(&bed, &deployment);

    ensure_eq!(
        bed,
        read(&install.join("index.html")),
        "fresh page\n",
        "OVERWRITE replaces the file"
    );
    ensure_eq!(
        bed,
        read(&install.join("unrelated.txt")),
        "keep me\n",
        "files the revision does not name stay"
    );
    ensure!(
        bed,
        deployment_dir(&bed, &deployment)
            .join("bundle.tar")
            .is_file(),
        "the bundle is saved as bundle.tar"
    );
}
