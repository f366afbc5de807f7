//! 2.1's RESTART mode: a deployment naming an earlier one with
//! `ReuseArchiveFromDeploymentId` takes its revision from that deployment's
//! folder on the host, without downloading it; every reason not to reuse
//! (the folder gone, incomplete, of another group, the key off) falls back to
//! the download and says so.

use std::os::unix::fs::MetadataExt;

use codedeploy_e2e::{BundleType, Deployment, Revision, TestBed};

use crate::support::*;

const BUCKET: &str = "restarts";

/// How many times moto served `key` (GetObject, whatever the version).
fn downloads(bed: &TestBed, key: &str) -> usize {
    bed.s3
        .log()
        .lines()
        .filter(|line| line.contains(&format!("\"GET /{BUCKET}/{key}")))
        .count()
}

fn bundle_source(bed: &TestBed, deployment: &Deployment) -> String {
    read(&deployment_dir(bed, deployment).join(".bundle-source"))
}

fn app_revision(bed: &TestBed, tag: &str) -> Revision {
    let install = bed.path().join("srv/app");
    let runs = bed.path().join("runs");
    Revision::new()
        .file(
            "appspec.yml",
            appspec("site", &install, &[hook("AfterInstall", "hooks/after.sh")]),
        )
        .file("site/index.html", format!("<p>{tag}</p>\n"))
        .script(
            "hooks/after.sh",
            format!(
                "#!/bin/sh\necho \"$DEPLOYMENT_ID\" >> '{}'\n",
                runs.display()
            ),
        )
}

#[test]
fn a_restart_takes_the_earlier_deployments_revision_from_the_host_without_downloading() {
    let bed = TestBed::start("restart-reuse");
    let location = bed.upload(
        BUCKET,
        "app/v1.tgz",
        &app_revision(&bed, "v1"),
        BundleType::Tgz,
    );
    let first = Deployment::new("App", "App-Group", location);
    bed.emulator.add_deployment(first.clone());
    bed.start_agent(&agent_binary());
    expect_success(&bed, &first);
    let fetched = downloads(&bed, "app/v1.tgz");
    ensure!(
        bed,
        fetched >= 1,
        "the first deployment downloaded the bundle"
    );
    ensure_eq!(
        bed,
        bundle_source(&bed, &first),
        "downloaded",
        "the first one's marker"
    );

    let restart = Deployment::restart_of(&first);
    bed.emulator.add_deployment(restart.clone());
    expect_success(&bed, &restart);
    ensure_eq!(
        bed,
        downloads(&bed, "app/v1.tgz"),
        fetched,
        "the restart downloaded nothing"
    );
    ensure_eq!(
        bed,
        bundle_source(&bed, &restart),
        "archive-reuse",
        "the restart's marker"
    );
    let (old, new) = (deployment_dir(&bed, &first), deployment_dir(&bed, &restart));
    let ino = |p: std::path::PathBuf| std::fs::metadata(p).map(|m| m.ino()).ok();
    ensure_eq!(
        bed,
        ino(new.join("bundle.tar")),
        ino(old.join("bundle.tar")),
        "bundle.tar is a hard link to the earlier one"
    );
    ensure_eq!(
        bed,
        read(&new.join("deployment-archive/site/index.html")),
        "<p>v1</p>\n",
        "the archive is a copy"
    );
    ensure_eq!(
        bed,
        lines(&bed.path().join("runs")),
        vec![first.deployment_id.clone(), restart.deployment_id.clone()],
        "the restart ran its hooks from the reused revision"
    );
    ensure!(
        bed,
        bed.agent_output().contains(&format!(
            "reusing deployment {}'s revision on this host instead of downloading it",
            first.deployment_id
        )),
        "the agent says it reused the revision"
    );
}

#[test]
fn every_reason_not_to_reuse_falls_back_to_the_download() {
    let bed = TestBed::start("restart-fallbacks");
    let location = bed.upload(
        BUCKET,
        "app/v1.tgz",
        &app_revision(&bed, "v1"),
        BundleType::Tgz,
    );
    let first = Deployment::new("App", "App-Group", location.clone());
    bed.emulator.add_deployment(first.clone());
    bed.start_agent(&agent_binary());
    expect_success(&bed, &first);
    let other_install = bed.path().join("srv/other");
    let other_revision = Revision::new()
        .file("appspec.yml", appspec("site", &other_install, &[]))
        .file("site/index.html", "<p>other</p>\n");
    let other_location = bed.upload(BUCKET, "other/v1.tgz", &other_revision, BundleType::Tgz);
    let other = Deployment::new("Other", "Other-Group", other_location);
    bed.emulator.add_deployment(other.clone());
    expect_success(&bed, &other);

    let fall_back = |restart: Deployment, reason: &str| {
        let before = downloads(&bed, "app/v1.tgz");
        bed.emulator.add_deployment(restart.clone());
        expect_success(&bed, &restart);
        ensure_eq!(
            bed,
            bundle_source(&bed, &restart),
            "downloaded",
            "{reason}: the marker"
        );
        ensure!(
            bed,
            downloads(&bed, "app/v1.tgz") > before,
            "{reason}: the bundle was downloaded"
        );
        ensure!(
            bed,
            bed.agent_output().contains(reason),
            "{reason}: the agent says why it downloaded"
        );
        restart
    };
    // A deployment of another group is not in this group's folder.
    let restart = Deployment::next_in_group(&first, location.clone())
        .reuse_archive_from(&other.deployment_id);
    fall_back(restart, "is not on this host");
    // The earlier copy lost its appspec.
    let first_dir = deployment_dir(&bed, &first);
    std::fs::remove_file(first_dir.join("deployment-archive/appspec.yml")).unwrap();
    fall_back(Deployment::restart_of(&first), "has no appspec");
    // The earlier folder is gone.
    std::fs::remove_dir_all(&first_dir).unwrap();
    fall_back(Deployment::restart_of(&first), "is not on this host");
    // Not a deployment id at all.
    let restart =
        Deployment::next_in_group(&first, location.clone()).reuse_archive_from("d-../../etc");
    let last = fall_back(restart, "is not a deployment id");
    // The operator turned reuse off.
    bed.stop_agent(std::time::Duration::from_secs(10));
    let config = bed
        .agent_config()
        .extra_line(":enable_archive_reuse: false");
    bed.start_agent_with(&agent_binary(), &config);
    fall_back(
        Deployment::restart_of(&last),
        ":enable_archive_reuse: is false",
    );
}
