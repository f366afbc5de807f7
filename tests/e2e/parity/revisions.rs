//! One deployment group, several deployments: the second deployment stops the
//! application with the first revision's ApplicationStop (and the second
//! deployment's environment), Install removes what the first revision
//! installed (the cleanup file) before the new files land, and old
//! deployment folders are pruned to `max_revisions`, never the last
//! successful one.

use std::collections::BTreeSet;
use std::path::Path;

use codedeploy_e2e::{BundleType, Deployment, Revision, TestBed};

use super::{deployment_folders, instructions_file, mode_of, noop_flags, scripts_log};
use crate::support::*;

const APP: &str = "Catalog";
const GROUP: &str = "Catalog-Fleet";
const BUCKET: &str = "catalog-revisions";

/// The revision `tag`: `app/` copied to `install`, recording hooks for
/// ApplicationStop, BeforeInstall and ApplicationStart. ApplicationStop also
/// notes which index.html was installed when it ran.
fn catalog_revision(tag: &str, install: &Path, hooks_log: &Path, stop_saw: &Path) -> Revision {
    let hooks = [
        hook("ApplicationStop", "scripts/stop.sh"),
        hook("BeforeInstall", "scripts/before_install.sh"),
        hook("ApplicationStart", "scripts/start.sh"),
    ];
    let stop = format!(
        "{}echo \"{tag} stopped while index.html was: $(cat '{}')\" >> '{}'\n",
        recording_hook(tag, hooks_log),
        install.join("index.html").display(),
        stop_saw.display()
    );
    Revision::new()
        .file("appspec.yml", appspec("app", install, &hooks))
        .script("scripts/stop.sh", stop)
        .script("scripts/before_install.sh", recording_hook(tag, hooks_log))
        .script("scripts/start.sh", recording_hook(tag, hooks_log))
        .script(
            "app/bin/serve.sh",
            format!("#!/bin/sh\necho serving {tag}\n"),
        )
}

#[test]
fn second_deployment_stops_the_first_revision_and_replaces_its_files() {
    let bed = TestBed::start("parity-two-revisions");
    let install = bed.path().join("srv/catalog");
    let hooks_log = bed.path().join("hooks.log");
    let stop_saw = bed.path().join("stop-saw.log");
    // Put there by an operator, not by a deployment: Install never removes it.
    std::fs::create_dir_all(&install).unwrap();
    std::fs::write(install.join("operator-notes.txt"), "do not delete\n").unwrap();

    let rev1 = catalog_revision("rev1", &install, &hooks_log, &stop_saw)
        .file("app/index.html", "catalog v1\n")
        .file("app/conf/catalog.conf", "items=100\n")
        .file("app/legacy/import.csv", "id,name\n")
        .file("app/only-in-v1.txt", "going away\n");
    let rev2 = catalog_revision("rev2", &install, &hooks_log, &stop_saw)
        .file("app/index.html", "catalog v2\n")
        .file_with_mode("app/conf/catalog.conf", "items=200\n", 0o600)
        .file("app/reports/weekly.txt", "new in v2\n");

    let d1 = Deployment::new(
        APP,
        GROUP,
        bed.upload(BUCKET, "catalog.tgz", &rev1, BundleType::Tgz),
    );
    bed.emulator.add_deployment(d1.clone());
    bed.start_agent(&agent_binary());
    expect_success(&bed, &d1);
    ensure_command_cycle(&bed, &d1);
    ensure_eq!(
        bed,
        read(&install.join("only-in-v1.txt")),
        "going away\n",
        "the first revision is installed"
    );

    let d2 = Deployment::next_in_group(
        &d1,
        bed.upload(BUCKET, "catalog.tgz", &rev2, BundleType::Tgz),
    );
    bed.emulator.add_deployment(d2.clone());
    expect_success(&bed, &d2);
    ensure_command_cycle(&bed, &d2);

    // ApplicationStop: nothing to stop on the first deployment; on the
    // second, the first revision's script, with the second deployment's
    // environment, while the first revision is still installed.
    let stop_noop = |d: &Deployment| {
        noop_flags(&bed, d)
            .into_iter()
            .find(|(name, _)| name == "ApplicationStop")
            .and_then(|(_, noop)| noop)
    };
    ensure_eq!(
        bed,
        stop_noop(&d1),
        Some(true),
        "first ApplicationStop is a noop"
    );
    ensure_eq!(
        bed,
        stop_noop(&d2),
        Some(false),
        "second ApplicationStop has the first revision's script"
    );
    let expected = vec![
        expected_hook_line("rev1", "BeforeInstall", &d1),
        expected_hook_line("rev1", "ApplicationStart", &d1),
        expected_hook_line("rev1", "ApplicationStop", &d2),
        expected_hook_line("rev2", "BeforeInstall", &d2),
        expected_hook_line("rev2", "ApplicationStart", &d2),
    ];
    ensure_eq!(
        bed,
        lines(&hooks_log),
        expected,
        "hooks of both deployments"
    );
    ensure_eq!(
        bed,
        lines(&stop_saw),
        vec!["rev1 stopped while index.html was: catalog v1".to_string()],
        "ApplicationStop runs before the new revision is installed"
    );
    let log2 = scripts_log(&bed, &d2);
    ensure!(
        bed,
        log2.starts_with(&[
            "LifecycleEvent - ApplicationStop".to_string(),
            "Script - scripts/stop.sh".to_string(),
            format!(
                "[stdout]rev1: ApplicationStop hook ran for {}",
                d2.deployment_id
            ),
        ]),
        "the old revision's ApplicationStop logs to the second deployment's scripts.log: {log2:#?}"
    );

    let deployments_log = read(
        &bed.root_dir()
            .join("deployment-logs/codedeploy-agent-deployments.log"),
    );
    ensure!(
        bed,
        deployments_log.lines().any(|l| l.ends_with(&format!(
            "] [{id}][stdout]rev1: ApplicationStop hook ran for {id}",
            id = d2.deployment_id
        ))),
        "the deployments log tags the old revision's output with the second deployment:\n{deployments_log}"
    );

    // Files: common ones updated (content and mode), the first revision's
    // own files and directories gone, the second's new ones there, the
    // operator's file untouched.
    ensure_eq!(
        bed,
        read(&install.join("index.html")),
        "catalog v2\n",
        "index.html"
    );
    ensure_eq!(
        bed,
        read(&install.join("conf/catalog.conf")),
        "items=200\n",
        "conf/catalog.conf content"
    );
    ensure_eq!(
        bed,
        mode_of(&install.join("conf/catalog.conf")),
        Some(0o600),
        "conf/catalog.conf takes the second revision's mode"
    );
    ensure_eq!(
        bed,
        read(&install.join("reports/weekly.txt")),
        "new in v2\n",
        "reports/weekly.txt"
    );
    for gone in ["only-in-v1.txt", "legacy/import.csv", "legacy"] {
        ensure!(
            bed,
            !install.join(gone).exists(),
            "{gone} of the first revision is removed by the second Install"
        );
    }
    ensure_eq!(
        bed,
        read(&install.join("operator-notes.txt")),
        "do not delete\n",
        "a file no deployment installed stays"
    );

    // The cleanup file now lists exactly what the second Install created
    // (the pre-existing destination is not among them), one path a line.
    let cleanup = std::fs::read_to_string(instructions_file(&bed, &d2.group_id, "-cleanup"))
        .unwrap_or_default();
    ensure!(
        bed,
        cleanup.ends_with('\n'),
        "every cleanup line is complete: {cleanup:?}"
    );
    let listed: BTreeSet<&str> = cleanup.lines().collect();
    let created: Vec<String> = [
        "index.html",
        "conf",
        "conf/catalog.conf",
        "reports",
        "reports/weekly.txt",
        "bin",
        "bin/serve.sh",
    ]
    .iter()
    .map(|p| install.join(p).to_string_lossy().into_owned())
    .collect();
    ensure_eq!(
        bed,
        listed,
        created.iter().map(String::as_str).collect::<BTreeSet<_>>(),
        "the cleanup file after the second Install"
    );
    let install_json: serde_json::Value = serde_json::from_str(&read(&instructions_file(
        &bed,
        &d2.group_id,
        "-install.json",
    )))
    .unwrap_or(serde_json::Value::Null);
    let archive2 = deployment_dir(&bed, &d2).join("deployment-archive");
    ensure!(
        bed,
        install_json["instructions"]
            .as_array()
            .is_some_and(|steps| steps.iter().any(|s| s["type"] == "copy"
                && s["source"] == archive2.join("app/index.html").to_string_lossy().as_ref()
                && s["destination"] == install.join("index.html").to_string_lossy().as_ref())),
        "-install.json holds the second Install's copies: {install_json}"
    );
    ensure_eq!(
        bed,
        read(&instructions_file(
            &bed,
            &d2.group_id,
            "_last_successful_install"
        ))
        .trim(),
        deployment_dir(&bed, &d2).to_string_lossy(),
        "the last successful install is the second deployment"
    );
}

/// A revision installing `index.html` = `text` to `install`, with an
/// ApplicationStop hook that records which revision stopped the application
/// and a BeforeInstall hook that fails when `fail_before_install`.
fn numbered_revision(
    text: &str,
    install: &Path,
    hooks_log: &Path,
    fail_before_install: bool,
) -> Revision {
    let hooks = [
        hook("ApplicationStop", "scripts/stop.sh"),
        hook("BeforeInstall", "scripts/before_install.sh"),
    ];
    let before_install = if fail_before_install {
        "#!/bin/sh\necho 'disk check failed' >&2\nexit 1\n".to_string()
    } else {
        "#!/bin/sh\nexit 0\n".to_string()
    };
    Revision::new()
        .file("appspec.yml", appspec("site", install, &hooks))
        .file("site/index.html", format!("{text}\n"))
        .script("scripts/stop.sh", recording_hook(text, hooks_log))
        .script("scripts/before_install.sh", before_install)
}

/// Deploys `revisions` one after the other to one group of an agent keeping
/// two revisions; returns the deployments and the folders left after each.
fn deploy_in_sequence(
    bed: &TestBed,
    revisions: &[(Revision, bool)],
) -> (Vec<Deployment>, Vec<Vec<String>>) {
    let config = bed.agent_config().extra_line(":max_revisions: 2");
    bed.start_agent_with(&agent_binary(), &config);
    let mut deployments: Vec<Deployment> = Vec::new();
    let mut folders = Vec::new();
    for (i, (revision, succeeds)) in revisions.iter().enumerate() {
        let location = bed.upload(BUCKET, &format!("site-{i}.tar"), revision, BundleType::Tar);
        let deployment = match deployments.last() {
            None => Deployment::new(APP, GROUP, location),
            Some(previous) => Deployment::next_in_group(previous, location),
        };
        bed.emulator.add_deployment(deployment.clone());
        if *succeeds {
            expect_success(bed, &deployment);
        } else {
            expect_failure_at(bed, &deployment, "BeforeInstall");
        }
        folders.push(deployment_folders(bed, &deployment.group_id));
        deployments.push(deployment);
    }
    (deployments, folders)
}

fn sorted(ids: &[&Deployment]) -> Vec<String> {
    let mut ids: Vec<String> = ids.iter().map(|d| d.deployment_id.clone()).collect();
    ids.sort();
    ids
}

#[test]
fn max_revisions_keeps_the_current_and_the_previous_deployment_folders() {
    let bed = TestBed::start("parity-max-revisions");
    let install = bed.path().join("srv/site");
    let hooks_log = bed.path().join("hooks.log");
    let revisions: Vec<(Revision, bool)> = (1..=4)
        .map(|n| {
            (
                numbered_revision(&format!("v{n}"), &install, &hooks_log, false),
                true,
            )
        })
        .collect();
    let (d, folders) = deploy_in_sequence(&bed, &revisions);

    ensure_eq!(
        bed,
        folders,
        vec![
            sorted(&[&d[0]]),
            sorted(&[&d[0], &d[1]]),
            sorted(&[&d[1], &d[2]]),
            sorted(&[&d[2], &d[3]]),
        ],
        "deployment folders under <root>/<group id>/ after each deployment (max_revisions 2)"
    );
    ensure_eq!(
        bed,
        read(&install.join("index.html")),
        "v4\n",
        "the fourth revision is installed"
    );
    ensure_eq!(
        bed,
        lines(&hooks_log),
        (1..=3)
            .map(|n| expected_hook_line(&format!("v{n}"), "ApplicationStop", &d[n]))
            .collect::<Vec<_>>(),
        "each ApplicationStop ran the previous revision's script"
    );
}

#[test]
fn max_revisions_never_deletes_the_last_successful_revision() {
    let bed = TestBed::start("parity-max-revisions-failed");
    let install = bed.path().join("srv/site");
    let hooks_log = bed.path().join("hooks.log");
    // The third deployment fails before Install: the second stays the last
    // successful one.
    let revisions = vec![
        (numbered_revision("v1", &install, &hooks_log, false), true),
        (numbered_revision("v2", &install, &hooks_log, false), true),
        (numbered_revision("v3", &install, &hooks_log, true), false),
        (numbered_revision("v4", &install, &hooks_log, false), true),
    ];
    let (d, folders) = deploy_in_sequence(&bed, &revisions);

    ensure_eq!(
        bed,
        folders,
        vec![
            sorted(&[&d[0]]),
            sorted(&[&d[0], &d[1]]),
            sorted(&[&d[1], &d[2]]),
            // The failed third deployment's folder goes, the last successful
            // (second) one stays beside the current one.
            sorted(&[&d[1], &d[3]]),
        ],
        "deployment folders under <root>/<group id>/ after each deployment (max_revisions 2)"
    );
    ensure_eq!(
        bed,
        lines(&hooks_log),
        vec![
            expected_hook_line("v1", "ApplicationStop", &d[1]),
            expected_hook_line("v2", "ApplicationStop", &d[2]),
            expected_hook_line("v2", "ApplicationStop", &d[3]),
        ],
        "after the failed deployment, ApplicationStop runs the last successful revision's script"
    );
    ensure_eq!(
        bed,
        read(&install.join("index.html")),
        "v4\n",
        "the fourth revision is installed"
    );
}

#[test]
fn application_stop_fails_when_the_last_successful_revision_folder_is_gone() {
    let bed = TestBed::start("parity-previous-folder-gone");
    let install = bed.path().join("srv/site");
    let hooks_log = bed.path().join("hooks.log");
    bed.start_agent(&agent_binary());
    let d1 = Deployment::new(
        APP,
        GROUP,
        bed.upload(
            BUCKET,
            "site.tar",
            &numbered_revision("v1", &install, &hooks_log, false),
            BundleType::Tar,
        ),
    );
    bed.emulator.add_deployment(d1.clone());
    expect_success(&bed, &d1);

    // Someone cleans up the deployment root by hand.
    let gone = deployment_dir(&bed, &d1);
    std::fs::remove_dir_all(&gone).unwrap();
    let v2 = bed.upload(
        BUCKET,
        "site.tar",
        &numbered_revision("v2", &install, &hooks_log, false),
        BundleType::Tar,
    );
    let d2 = Deployment::next_in_group(&d1, v2.clone());
    bed.emulator.add_deployment(d2.clone());
    let failed = expect_failure_at(&bed, &d2, "ApplicationStop");
    ensure!(
        bed,
        failed.acknowledgements.is_empty(),
        "the noop check fails before the acknowledgement"
    );
    let message = failed
        .diagnostics()
        .map(|d| (d.error_code, d.message.clone()));
    let archive = gone.join("deployment-archive");
    let last_successful = instructions_file(&bed, &d1.group_id, "_last_successful_install");
    ensure!(
        bed,
        message.as_ref().is_some_and(|(code, text)| *code == 5
            && text.starts_with(&format!(
                "The CodeDeploy agent did not find an AppSpec file within the unpacked revision directory at revision-relative path \"appspec.yml\". The revision was unpacked to directory \"{}\", and the AppSpec file was expected but not found at path \"{}\".",
                archive.display(),
                archive.join("appspec.yml").display()
            ))
            && text.contains(&gone.display().to_string())
            && text.contains(&last_successful.display().to_string())),
        "code 5 with the official message, naming the gone folder and the file to remove: {message:?}"
    );

    // What the message advises: without the last successful install, the
    // next deployment has nothing to stop.
    std::fs::remove_file(&last_successful).unwrap();
    let d3 = Deployment::next_in_group(&d1, v2);
    bed.emulator.add_deployment(d3.clone());
    expect_success(&bed, &d3);
    ensure_eq!(
        bed,
        noop_flags(&bed, &d3).first().cloned(),
        Some(("ApplicationStop".to_string(), Some(true))),
        "ApplicationStop is a noop once the last successful install is forgotten"
    );
    ensure_eq!(
        bed,
        read(&install.join("index.html")),
        "v2\n",
        "the second revision is installed"
    );
}
