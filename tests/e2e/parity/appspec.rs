//! Appspecs the official agent refuses, refused at the same command: a
//! missing one at BeforeInstall's noop check (after a successful
//! DownloadBundle; hooks look for exactly AppSpecFilename, no `.yaml`
//! fallback), an invalid one at BeforeInstall's noop check or, reached
//! first, at Install, with error code 5 and a message naming the file, the
//! key and the line, the previous revision's files left in place.

use codedeploy_e2e::{BundleType, CommandRecord, Deployment, Revision, TestBed};

use crate::support::*;

const BUCKET: &str = "appspec-revisions";

/// The failed command's error code and message; the command must not have
/// been acknowledged (the noop check fails before the acknowledgement).
fn unacknowledged_failure(bed: &TestBed, failed: &CommandRecord) -> (i64, String) {
    ensure!(
        bed,
        failed.acknowledgements.is_empty(),
        "{} fails in its noop check, before the acknowledgement",
        failed.command_name
    );
    failed
        .diagnostics()
        .map(|d| (d.error_code, d.message.clone()))
        .unwrap_or_else(|| panic!("the completion carries diagnostics\n{}", bed.report()))
}

fn not_found_message(archive: &std::path::Path, expected: &str) -> String {
    format!(
        "The CodeDeploy agent did not find an AppSpec file within the unpacked revision directory at revision-relative path \"{expected}\". The revision was unpacked to directory \"{}\", and the AppSpec file was expected but not found at path \"{}\".",
        archive.display(),
        archive.join(expected).display()
    )
}

#[test]
fn missing_appspec_fails_before_install_naming_the_expected_path() {
    let bed = TestBed::start("parity-missing-appspec");
    let install = bed.path().join("srv/app");
    bed.start_agent(&agent_binary());

    // No appspec at all.
    let bare = Revision::new().file("site/index.html", "<p>no appspec</p>\n");
    let d1 = Deployment::new(
        "Bare",
        "Bare-Fleet",
        bed.upload(BUCKET, "bare.tar", &bare, BundleType::Tar),
    );
    // Only appspec.yaml, and the deployment names no AppSpecFilename: Install
    // would find it, but hooks look for exactly appspec.yml.
    let yaml_only = Revision::new()
        .file(
            "appspec.yaml",
            appspec(
                "site",
                &install,
                &[hook("BeforeInstall", "scripts/before_install.sh")],
            ),
        )
        .file("site/index.html", "<p>appspec.yaml</p>\n")
        .script("scripts/before_install.sh", "#!/bin/sh\necho prepared\n");
    let yaml_location = bed.upload(BUCKET, "yaml-only.tgz", &yaml_only, BundleType::Tgz);
    let d2 = Deployment::new("Yaml", "Yaml-Fleet", yaml_location.clone());

    for deployment in [&d1, &d2] {
        bed.emulator.add_deployment(deployment.clone());
        let failed = expect_failure_at(&bed, deployment, "BeforeInstall");
        let record = bed.emulator.deployment(&deployment.deployment_id).unwrap();
        ensure_eq!(
            bed,
            record
                .command("DownloadBundle")
                .and_then(|c| c.completion())
                .map(|c| c.status.as_str()),
            Some("Succeeded"),
            "DownloadBundle succeeds without looking at the appspec"
        );
        ensure_eq!(
            bed,
            record
                .command("ApplicationStop")
                .and_then(|c| c.acknowledged_noop()),
            Some(true),
            "ApplicationStop of a first deployment is a noop"
        );
        let archive = deployment_dir(&bed, deployment).join("deployment-archive");
        let (code, message) = unacknowledged_failure(&bed, &failed);
        ensure_eq!(bed, code, 5, "a missing appspec is UnknownError (5)");
        ensure!(
            bed,
            message.starts_with(&not_found_message(&archive, "appspec.yml")),
            "the message names the expected path:\n{message}"
        );
    }
    ensure!(bed, !install.exists(), "nothing is installed");

    // The same revision deploys once the deployment names its appspec.
    let d3 = Deployment::new("Yaml", "Yaml-Named", yaml_location).appspec_filename("appspec.yaml");
    bed.emulator.add_deployment(d3.clone());
    expect_success(&bed, &d3);
    ensure_eq!(
        bed,
        read(&install.join("index.html")),
        "<p>appspec.yaml</p>\n",
        "installed with AppSpecFilename appspec.yaml"
    );
}

#[test]
fn invalid_appspec_fails_with_file_key_and_line_and_keeps_the_previous_revision() {
    let bed = TestBed::start("parity-invalid-appspec");
    let install = bed.path().join("srv/app");
    bed.start_agent(&agent_binary());
    let good = Revision::new()
        .file("appspec.yml", appspec("site", &install, &[]))
        .file("site/index.html", "<p>good</p>\n");
    let d1 = Deployment::new(
        "Shop",
        "Shop-Fleet",
        bed.upload(BUCKET, "good.tar", &good, BundleType::Tar),
    );
    bed.emulator.add_deployment(d1.clone());
    expect_success(&bed, &d1);

    // A timeout of 0 on line 9: BeforeInstall's noop check reads the
    // appspec first and refuses it.
    let bad_timeout = Revision::new()
        .file(
            "appspec.yml",
            format!(
                "{}hooks:\n  BeforeInstall:\n    - location: scripts/before_install.sh\n      timeout: 0\n",
                appspec("site", &install, &[])
            ),
        )
        .file("site/index.html", "<p>bad timeout</p>\n")
        .script("scripts/before_install.sh", "#!/bin/sh\n");
    let d2 = Deployment::next_in_group(
        &d1,
        bed.upload(BUCKET, "bad-timeout.tar", &bad_timeout, BundleType::Tar),
    );
    bed.emulator.add_deployment(d2.clone());
    let failed = expect_failure_at(&bed, &d2, "BeforeInstall");
    let (code, message) = unacknowledged_failure(&bed, &failed);
    let appspec2 = deployment_dir(&bed, &d2).join("deployment-archive/appspec.yml");
    ensure_eq!(bed, code, 5, "an invalid appspec is UnknownError (5)");
    for part in [
        appspec2.to_string_lossy().as_ref(),
        "hooks.BeforeInstall[0].timeout",
        "line 9",
    ] {
        ensure!(
            bed,
            message.contains(part),
            "the message names {part:?}:\n{message}"
        );
    }

    // A relative destination on line 5, reaching Install first (no
    // BeforeInstall command): Install refuses it before touching the host.
    let bad_destination = Revision::new()
        .file(
            "appspec.yml",
            "version: 0.0\nos: linux\nfiles:\n  - source: site\n    destination: srv/app\n",
        )
        .file("site/index.html", "<p>bad destination</p>\n");
    let d3 = Deployment::next_in_group(
        &d1,
        bed.upload(
            BUCKET,
            "bad-destination.tar",
            &bad_destination,
            BundleType::Tar,
        ),
    )
    .events(&["ApplicationStop", "DownloadBundle", "Install"]);
    bed.emulator.add_deployment(d3.clone());
    let failed = expect_failure_at(&bed, &d3, "Install");
    let diagnostics = failed
        .diagnostics()
        .cloned()
        .unwrap_or_else(|| panic!("Install's completion carries diagnostics\n{}", bed.report()));
    let appspec3 = deployment_dir(&bed, &d3).join("deployment-archive/appspec.yml");
    ensure_eq!(bed, diagnostics.error_code, 5, "error code");
    for part in [
        appspec3.to_string_lossy().as_ref(),
        "files[0].destination",
        "'srv/app' must be an absolute path",
        "line 5",
    ] {
        ensure!(
            bed,
            diagnostics.message.contains(part),
            "the message names {part:?}:\n{}",
            diagnostics.message
        );
    }

    ensure_eq!(
        bed,
        read(&install.join("index.html")),
        "<p>good</p>\n",
        "the previous revision's files stay in place"
    );
    ensure_eq!(
        bed,
        read(&super::instructions_file(
            &bed,
            &d1.group_id,
            "_last_successful_install"
        ))
        .trim(),
        deployment_dir(&bed, &d1).to_string_lossy(),
        "the first deployment stays the last successful install"
    );
    ensure!(
        bed,
        read(&super::instructions_file(&bed, &d1.group_id, "-cleanup"))
            .lines()
            .any(|l| l == install.join("index.html").to_string_lossy()),
        "the cleanup file still describes the installed revision"
    );
}
