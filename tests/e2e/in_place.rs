//! Successful in-place deployments: what the service is told for every
//! command, what is installed, which hooks run from which revision with
//! which environment, and the deployment root the agent leaves behind.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use codedeploy_e2e::{BundleType, Deployment, Revision, TestBed};

use crate::support::*;

const APP: &str = "WebShop";
const GROUP: &str = "WebShop-Production";
const BUCKET: &str = "webshop-revisions";
const KEY: &str = "webshop/webshop.tgz";

const HOOKED_EVENTS: [(&str, &str); 5] = [
    ("ApplicationStop", "scripts/application_stop.sh"),
    ("BeforeInstall", "scripts/before_install.sh"),
    ("AfterInstall", "scripts/after_install.sh"),
    ("ApplicationStart", "scripts/application_start.sh"),
    ("ValidateService", "scripts/validate_service.sh"),
];

/// A revision tagged `tag`: content/ copied to `install`, every hook a
/// recording script.
fn webshop_revision(
    tag: &str,
    install: &Path,
    hooks_log: &Path,
    index: &str,
    extra: Option<(&str, &str)>,
) -> Revision {
    let hooks: Vec<Hook<'_>> = HOOKED_EVENTS.iter().map(|(e, l)| hook(e, l)).collect();
    let mut revision = Revision::new()
        .file("appspec.yml", appspec("content", install, &hooks))
        .file("content/index.html", index)
        .file(
            "content/css/site.css",
            "body { font-family: sans-serif; }\n",
        )
        .script(
            "content/bin/run.sh",
            "#!/bin/sh\nexec python3 -m http.server 8080\n",
        );
    if let Some((path, contents)) = extra {
        revision = revision.file(path, contents);
    }
    for (_, location) in HOOKED_EVENTS {
        revision = revision.script(location, recording_hook(tag, hooks_log));
    }
    revision
}

#[test]
fn in_place_deployment_of_a_tgz_revision_succeeds() {
    let bed = TestBed::start("in-place-tgz");
    let install = bed.path().join("srv/webshop");
    let hooks_log = bed.path().join("hooks.log");

    // First deployment.
    let rev1 = webshop_revision(
        "rev1",
        &install,
        &hooks_log,
        "<h1>WebShop v1</h1>\n",
        Some(("content/old-banner.txt", "summer sale\n")),
    );
    let loc1 = bed.upload(BUCKET, KEY, &rev1, BundleType::Tgz);
    let d1 = Deployment::new(APP, GROUP, loc1);
    bed.emulator.add_deployment(d1.clone());
    bed.start_agent(&agent_binary());
    expect_success(&bed, &d1);

    ensure_command_cycle(&bed, &d1);
    let record = bed.emulator.deployment(&d1.deployment_id).unwrap();
    for command in &record.commands {
        ensure!(
            bed,
            !command.acknowledgements.is_empty(),
            "{} was not acknowledged",
            command.command_name
        );
        let diagnostics = command.diagnostics();
        ensure!(
            bed,
            diagnostics.is_some_and(|d| d.error_code == 0 && d.message.starts_with("Succeeded")),
            "{} should complete Succeeded with error_code 0: {:?}",
            command.command_name,
            command.completion()
        );
        ensure_eq!(
            bed,
            command.completions.len(),
            1,
            "{} should be completed exactly once",
            command.command_name
        );
    }
    let noop = |name: &str| record.command(name).and_then(|c| c.acknowledged_noop());
    ensure_eq!(
        bed,
        noop("ApplicationStop"),
        Some(true),
        "first ApplicationStop has no previous revision: a noop"
    );
    ensure_eq!(
        bed,
        noop("DownloadBundle"),
        Some(false),
        "DownloadBundle is never a noop"
    );
    ensure_eq!(bed, noop("Install"), Some(false), "Install is never a noop");
    ensure_eq!(
        bed,
        noop("BeforeInstall"),
        Some(false),
        "BeforeInstall has a script"
    );

    // Hooks ran in order, from this revision, with the deployment's
    // environment; ApplicationStop had no previous revision to run from.
    let expected: Vec<String> = [
        "BeforeInstall",
        "AfterInstall",
        "ApplicationStart",
        "ValidateService",
    ]
    .iter()
    .map(|e| expected_hook_line("rev1", e, &d1))
    .collect();
    ensure_eq!(
        bed,
        lines(&hooks_log),
        expected,
        "hook runs of the first deployment"
    );

    // Files are in place.
    ensure_eq!(
        bed,
        read(&install.join("index.html")),
        "<h1>WebShop v1</h1>\n",
        "installed index.html"
    );
    ensure_eq!(
        bed,
        read(&install.join("css/site.css")),
        "body { font-family: sans-serif; }\n",
        "installed css/site.css"
    );
    ensure_eq!(
        bed,
        read(&install.join("old-banner.txt")),
        "summer sale\n",
        "installed old-banner.txt"
    );
    let mode =
        std::fs::metadata(install.join("bin/run.sh")).map(|m| m.permissions().mode() & 0o777);
    ensure!(
        bed,
        matches!(mode, Ok(m) if m & 0o111 != 0),
        "bin/run.sh keeps its executable mode: {mode:?}"
    );

    // The deployment root.
    let dir1 = deployment_dir(&bed, &d1);
    ensure!(
        bed,
        dir1.join("bundle.tar").is_file(),
        "{}/bundle.tar exists",
        dir1.display()
    );
    ensure!(
        bed,
        dir1.join("deployment-archive/appspec.yml").is_file(),
        "{}/deployment-archive/appspec.yml exists",
        dir1.display()
    );
    let scripts_log = read(&dir1.join("logs/scripts.log"));
    ensure!(
        bed,
        scripts_log.contains("LifecycleEvent - BeforeInstall"),
        "scripts.log names the BeforeInstall event:\n{scripts_log}"
    );
    ensure!(
        bed,
        scripts_log.contains(&format!(
            "[stdout]rev1: BeforeInstall hook ran for {}",
            d1.deployment_id
        )),
        "scripts.log has the hook's stdout:\n{scripts_log}"
    );
    let instructions = bed.root_dir().join("deployment-instructions");
    let last = instructions.join(format!("{}_last_successful_install", d1.group_id));
    ensure_eq!(
        bed,
        read(&last).trim(),
        dir1.to_string_lossy(),
        "{} names the first deployment's folder",
        last.display()
    );

    // Second deployment of the same group: ApplicationStop now runs the
    // first revision's script; the new revision replaces the old files.
    let rev2 = webshop_revision("rev2", &install, &hooks_log, "<h1>WebShop v2</h1>\n", None);
    let loc2 = bed.upload(BUCKET, KEY, &rev2, BundleType::Tgz);
    let d2 = Deployment::next_in_group(&d1, loc2);
    ensure!(
        bed,
        d2.revision.version != d1.revision.version,
        "a new object version"
    );
    bed.emulator.add_deployment(d2.clone());
    expect_success(&bed, &d2);
    ensure_command_cycle(&bed, &d2);

    let record = bed.emulator.deployment(&d2.deployment_id).unwrap();
    ensure_eq!(
        bed,
        record
            .command("ApplicationStop")
            .and_then(|c| c.acknowledged_noop()),
        Some(false),
        "the second ApplicationStop has the first revision's script"
    );
    let mut expected_all = expected.clone();
    expected_all.push(expected_hook_line("rev1", "ApplicationStop", &d2));
    for event in [
        "BeforeInstall",
        "AfterInstall",
        "ApplicationStart",
        "ValidateService",
    ] {
        expected_all.push(expected_hook_line("rev2", event, &d2));
    }
    ensure_eq!(
        bed,
        lines(&hooks_log),
        expected_all,
        "hook runs after the second deployment"
    );
    ensure_eq!(
        bed,
        read(&install.join("index.html")),
        "<h1>WebShop v2</h1>\n",
        "index.html of revision 2"
    );
    ensure!(
        bed,
        !install.join("old-banner.txt").exists(),
        "a file only the first revision had is removed by the second install"
    );
    let dir2 = deployment_dir(&bed, &d2);
    ensure_eq!(
        bed,
        read(&last).trim(),
        dir2.to_string_lossy(),
        "{} names the second deployment's folder",
        last.display()
    );
    let scripts_log2 = read(&dir2.join("logs/scripts.log"));
    ensure!(
        bed,
        scripts_log2.contains("LifecycleEvent - ApplicationStop")
            && scripts_log2.contains(&format!("[stdout]rev1: ApplicationStop hook ran for {}", d2.deployment_id)),
        "the old revision's ApplicationStop writes to the current deployment's scripts.log:\n{scripts_log2}"
    );
    ensure!(
        bed,
        bed.agent_running(),
        "the agent keeps running after deployments"
    );
}
