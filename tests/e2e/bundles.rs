//! Bundle types and layouts other than the plain tgz: a zip whose content
//! sits in one top-level folder, and a tar deployed with the deployment's
//! OVERWRITE file-exists behaviour.

use std::os::unix::fs::PermissionsExt;

use codedeploy_e2e::{BundleType, Deployment, Revision, TestBed};

use crate::support::*;

#[test]
fn zip_revision_in_a_top_level_folder_is_deployed() {
    let bed = TestBed::start("zip-top-folder");
    let install = bed.path().join("opt/reports");
    let hooks_log = bed.path().join("hooks.log");
    let hooks = [
        hook("BeforeInstall", "scripts/before_install.sh"),
        hook("ApplicationStart", "scripts/start.sh"),
    ];
    let revision = Revision::new()
        .file("appspec.yml", appspec("dist", &install, &hooks))
        .file("dist/report.cfg", "interval=60\n")
        .script("dist/bin/report", "#!/bin/sh\necho report\n")
        .script(
            "scripts/before_install.sh",
            recording_hook("zip", &hooks_log),
        )
        .script("scripts/start.sh", recording_hook("zip", &hooks_log))
        .with_top_folder("reports-2.3.1");
    let location = bed.upload(
        "zip-revisions",
        "reports/reports-2.3.1.zip",
        &revision,
        BundleType::Zip,
    );
    let deployment = Deployment::new("Reports", "Reports-Fleet", location);
    bed.emulator.add_deployment(deployment.clone());
    bed.start_agent(&agent_binary());
    expect_success(&bed, &deployment);
    ensure_command_cycle(&bed, &deployment);

    let archive = deployment_dir(&bed, &deployment).join("deployment-archive");
    ensure!(
        bed,
        archive.join("appspec.yml").is_file(),
        "the single top-level folder becomes the archive root: {}",
        archive.display()
    );
    ensure_eq!(
        bed,
        read(&install.join("report.cfg")),
        "interval=60\n",
        "installed report.cfg"
    );
    let mode =
        std::fs::metadata(install.join("bin/report")).map(|m| m.permissions().mode() & 0o777);
    ensure!(
        bed,
        matches!(mode, Ok(m) if m & 0o111 != 0),
        "zip entry modes are kept: {mode:?}"
    );
    let expected: Vec<String> = ["BeforeInstall", "ApplicationStart"]
        .iter()
        .map(|e| expected_hook_line("zip", e, &deployment))
        .collect();
    ensure_eq!(
        bed,
        lines(&hooks_log),
        expected,
        "hooks of the zip revision (executable from zip modes)"
    );
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
