//! Blue/green deployments through every traffic event, and which revision
//! each hook runs from (LIFECYCLE.md "Which revision a hook runs from"):
//! Before/AfterBlockTraffic and ApplicationStop from the last successful
//! revision (noops on a fresh host), the install events and
//! Before/AfterAllowTraffic from the current one; in a blue/green rollback,
//! Before/AfterBlockTraffic from the most recently downloaded revision and
//! Before/AfterAllowTraffic from the last successful one. Every hook gets the
//! running deployment's environment.

use std::path::Path;

use codedeploy_e2e::{BundleType, Deployment, Revision, TestBed};

use super::noop_flags;
use crate::support::*;

/// The commands of a blue/green deployment, in the service's order.
const BLUE_GREEN_EVENTS: [&str; 11] = [
    "BeforeBlockTraffic",
    "AfterBlockTraffic",
    "ApplicationStop",
    "DownloadBundle",
    "BeforeInstall",
    "Install",
    "AfterInstall",
    "ApplicationStart",
    "ValidateService",
    "BeforeAllowTraffic",
    "AfterAllowTraffic",
];

const HOOK_EVENTS: [&str; 9] = [
    "BeforeBlockTraffic",
    "AfterBlockTraffic",
    "ApplicationStop",
    "BeforeInstall",
    "AfterInstall",
    "ApplicationStart",
    "ValidateService",
    "BeforeAllowTraffic",
    "AfterAllowTraffic",
];

/// A revision with a recording hook tagged `tag` for every hook event; its
/// BeforeInstall records, then fails when `fail_before_install`.
fn storefront(tag: &str, install: &Path, hooks_log: &Path, fail_before_install: bool) -> Revision {
    let locations: Vec<String> = HOOK_EVENTS
        .iter()
        .map(|e| format!("hooks/{e}.sh"))
        .collect();
    let hooks: Vec<Hook<'_>> = HOOK_EVENTS
        .iter()
        .zip(&locations)
        .map(|(e, l)| hook(e, l))
        .collect();
    let mut revision = Revision::new()
        .file("appspec.yml", appspec("www", install, &hooks))
        .file("www/index.html", format!("storefront {tag}\n"));
    for (event, location) in HOOK_EVENTS.iter().zip(&locations) {
        let mut script = recording_hook(tag, hooks_log);
        if fail_before_install && *event == "BeforeInstall" {
            script.push_str("echo 'health check of the new fleet failed' >&2\nexit 1\n");
        }
        revision = revision.script(location, script);
    }
    revision
}

fn blue_green(deployment: Deployment) -> Deployment {
    deployment
        .deployment_type("BLUE_GREEN")
        .events(&BLUE_GREEN_EVENTS)
}

#[test]
fn blue_green_deployment_and_rollback_run_traffic_hooks_from_the_right_revision() {
    let bed = TestBed::start("parity-blue-green");
    let install = bed.path().join("srv/storefront");
    let hooks_log = bed.path().join("hooks.log");
    let rev1 = storefront("blue", &install, &hooks_log, false);
    let rev2 = storefront("green", &install, &hooks_log, true);
    let loc1 = bed.upload("storefront", "storefront.tgz", &rev1, BundleType::Tgz);
    let loc2 = bed.upload("storefront", "storefront.tgz", &rev2, BundleType::Tgz);
    bed.start_agent(&agent_binary());

    // 1. First blue/green deployment on this host.
    let d1 = blue_green(Deployment::new("Storefront", "Storefront-BG", loc1.clone()));
    bed.emulator.add_deployment(d1.clone());
    expect_success(&bed, &d1);
    ensure_command_cycle(&bed, &d1);
    ensure_eq!(
        bed,
        bed.emulator.deployment(&d1.deployment_id).unwrap().issued(),
        BLUE_GREEN_EVENTS.to_vec(),
        "every blue/green command is handed out and succeeds"
    );
    let expected_noops: Vec<(String, Option<bool>)> = BLUE_GREEN_EVENTS
        .iter()
        .map(|e| {
            let noop = matches!(
                *e,
                "BeforeBlockTraffic" | "AfterBlockTraffic" | "ApplicationStop"
            );
            (e.to_string(), Some(noop))
        })
        .collect();
    ensure_eq!(
        bed,
        noop_flags(&bed, &d1),
        expected_noops,
        "with no previous revision, the block-traffic events and ApplicationStop are noops"
    );
    let mut expected: Vec<String> = [
        "BeforeInstall",
        "AfterInstall",
        "ApplicationStart",
        "ValidateService",
        "BeforeAllowTraffic",
        "AfterAllowTraffic",
    ]
    .iter()
    .map(|e| expected_hook_line("blue", e, &d1))
    .collect();
    ensure_eq!(
        bed,
        lines(&hooks_log),
        expected,
        "the first deployment's hooks, from its own revision"
    );

    // 2. A second blue/green deployment downloads the green revision and
    //    fails in BeforeInstall: green is now the most recent download,
    //    blue stays the last successful install.
    let d2 = blue_green(Deployment::next_in_group(&d1, loc2));
    bed.emulator.add_deployment(d2.clone());
    let failed = expect_failure_at(&bed, &d2, "BeforeInstall");
    ensure_eq!(
        bed,
        failed.diagnostics().map(|d| d.error_code),
        Some(4),
        "the green BeforeInstall fails with its exit code"
    );
    ensure!(
        bed,
        noop_flags(&bed, &d2)
            .iter()
            .take(3)
            .all(|(_, noop)| *noop == Some(false)),
        "the block-traffic events and ApplicationStop now have the blue revision's scripts: {:?}",
        noop_flags(&bed, &d2)
    );
    for event in ["BeforeBlockTraffic", "AfterBlockTraffic", "ApplicationStop"] {
        expected.push(expected_hook_line("blue", event, &d2));
    }
    expected.push(expected_hook_line("green", "BeforeInstall", &d2));
    ensure_eq!(
        bed,
        lines(&hooks_log),
        expected,
        "the second deployment stops traffic and the application with the blue scripts"
    );

    // 3. The blue/green rollback: blocking traffic runs the most recently
    //    downloaded (green) scripts, allowing it the last successful (blue)
    //    ones, all with the rollback's environment.
    let rollback = Deployment::next_in_group(&d1, loc1)
        .creator("codeDeployRollback")
        .deployment_type("BLUE_GREEN")
        .events(&[
            "BeforeBlockTraffic",
            "AfterBlockTraffic",
            "BeforeAllowTraffic",
            "AfterAllowTraffic",
        ]);
    bed.emulator.add_deployment(rollback.clone());
    expect_success(&bed, &rollback);
    ensure_command_cycle(&bed, &rollback);
    ensure!(
        bed,
        noop_flags(&bed, &rollback)
            .iter()
            .all(|(_, noop)| *noop == Some(false)),
        "every rollback event has scripts: {:?}",
        noop_flags(&bed, &rollback)
    );
    expected.extend([
        expected_hook_line("green", "BeforeBlockTraffic", &rollback),
        expected_hook_line("green", "AfterBlockTraffic", &rollback),
        expected_hook_line("blue", "BeforeAllowTraffic", &rollback),
        expected_hook_line("blue", "AfterAllowTraffic", &rollback),
    ]);
    ensure_eq!(
        bed,
        lines(&hooks_log),
        expected,
        "the rollback's traffic hooks"
    );
    let rollback_dir = deployment_dir(&bed, &rollback);
    ensure!(
        bed,
        !rollback_dir.join("deployment-archive").exists(),
        "the rollback downloads nothing"
    );
    let scripts_log = read(&rollback_dir.join("logs/scripts.log"));
    ensure!(
        bed,
        scripts_log.contains("LifecycleEvent - BeforeAllowTraffic")
            && scripts_log.contains(&format!(
                "[stdout]blue: BeforeAllowTraffic hook ran for {}",
                rollback.deployment_id
            )),
        "the old revisions' hooks log to the rollback's scripts.log:\n{scripts_log}"
    );
    ensure_eq!(
        bed,
        read(&install.join("index.html")),
        "storefront blue\n",
        "the blue revision is still installed"
    );
}
