//! Several commands at once: deployments of two deployment groups running
//! side by side, a command the service hands out again while it runs, and a
//! throttling storm hitting every operation the agent uses.

use std::path::Path;
use std::time::Duration;

use codedeploy_e2e::emulator::{Operation, Storm};
use codedeploy_e2e::{BundleType, Deployment, Revision, TestBed};

use crate::support::*;

/// A hook that appends `<tag> start <time>`, sleeps, then `<tag> end <time>`
/// (seconds since the epoch, with nanoseconds) to `timeline`.
fn timed_hook(tag: &str, timeline: &Path, sleep_secs: u32) -> String {
    format!(
        "#!/bin/sh\n\
         echo \"{tag} start $(date +%s.%N)\" >> '{timeline}'\n\
         sleep {sleep_secs}\n\
         echo \"{tag} end $(date +%s.%N)\" >> '{timeline}'\n",
        timeline = timeline.display()
    )
}

/// The `start` and `end` times `timed_hook` recorded for `tag`.
fn interval(timeline: &[String], tag: &str) -> Option<(f64, f64)> {
    let time = |what: &str| {
        timeline.iter().find_map(|line| {
            let mut words = line.split_whitespace();
            (words.next() == Some(tag) && words.next() == Some(what))
                .then(|| words.next()?.parse::<f64>().ok())
                .flatten()
        })
    };
    Some((time("start")?, time("end")?))
}

#[test]
fn two_deployment_groups_run_at_the_same_time_and_both_succeed() {
    let bed = TestBed::start("concurrent-groups");
    bed.emulator.set_parallel_groups(true);
    let timeline = bed.path().join("timeline");
    let mut deployments = Vec::new();
    for group in ["blue", "green"] {
        let install = bed.path().join(format!("srv/{group}"));
        let revision = Revision::new()
            .file(
                "appspec.yml",
                appspec(
                    "site",
                    &install,
                    &[
                        hook("BeforeInstall", "hooks/timed.sh"),
                        hook("ApplicationStart", "hooks/timed.sh"),
                    ],
                ),
            )
            .file("site/index.html", format!("<p>{group}</p>\n"))
            .script(
                "hooks/timed.sh",
                timed_hook(&format!("{group}-$LIFECYCLE_EVENT"), &timeline, 2),
            );
        let location = bed.upload(
            "concurrent-revisions",
            &format!("{group}/app.tgz"),
            &revision,
            BundleType::Tgz,
        );
        let deployment = Deployment::new("App", &format!("App-{group}"), location);
        bed.emulator.add_deployment(deployment.clone());
        deployments.push((group, install, deployment));
    }
    bed.start_agent(&agent_binary());
    for (_, _, deployment) in &deployments {
        expect_success(&bed, deployment);
        ensure_command_cycle(&bed, deployment);
    }
    for (group, install, _) in &deployments {
        ensure_eq!(
            bed,
            read(&install.join("index.html")),
            format!("<p>{group}</p>\n"),
            "{group}'s revision is installed in its own place"
        );
    }

    let timeline = lines(&timeline);
    for event in ["BeforeInstall", "ApplicationStart"] {
        let blue = interval(&timeline, &format!("blue-{event}"));
        let green = interval(&timeline, &format!("green-{event}"));
        let (Some(blue), Some(green)) = (blue, green) else {
            panic!("both groups ran {event}: {timeline:?}\n{}", bed.report());
        };
        ensure!(
            bed,
            blue.0 < green.1 && green.0 < blue.1,
            "the {event} hooks of the two groups overlap in time: blue {blue:?}, green {green:?}"
        );
    }
    // The emulator hands out one command per group at once: the hooks could
    // only overlap if the agent ran both groups' commands together.
    ensure!(
        bed,
        bed.agent_running(),
        "the agent keeps running after both deployments"
    );
}

#[test]
fn a_command_handed_out_again_while_it_runs_is_run_once() {
    let bed = TestBed::start("redelivered");
    bed.emulator.redeliver_in_progress(3);
    let install = bed.path().join("srv/app");
    let runs = bed.path().join("runs");
    let revision = Revision::new()
        .file(
            "appspec.yml",
            appspec(
                "site",
                &install,
                &[hook("AfterInstall", "hooks/after_install.sh")],
            ),
        )
        .file("site/index.html", "<p>once</p>\n")
        .script(
            "hooks/after_install.sh",
            format!(
                "#!/bin/sh\necho \"$LIFECYCLE_EVENT $DEPLOYMENT_ID\" >> '{}'\nsleep 3\n",
                runs.display()
            ),
        );
    let location = bed.upload("redelivery", "app/once.tgz", &revision, BundleType::Tgz);
    let deployment = Deployment::new("App", "App-Group", location);
    bed.emulator.add_deployment(deployment.clone());
    bed.start_agent(&agent_binary());
    expect_success(&bed, &deployment);
    ensure_command_cycle(&bed, &deployment);

    let record = bed
        .emulator
        .deployment(&deployment.deployment_id)
        .expect("the deployment was added");
    let after_install = record
        .command("AfterInstall")
        .expect("AfterInstall is one of the in-place events");
    ensure!(
        bed,
        after_install.times_redelivered >= 1,
        "the service handed AfterInstall out again while it ran ({} times)",
        after_install.times_redelivered
    );
    ensure_eq!(
        bed,
        lines(&runs),
        vec![format!("AfterInstall {}", deployment.deployment_id)],
        "the hook ran once"
    );
    for command in &record.commands {
        ensure_eq!(
            bed,
            command.acknowledgements.len(),
            1,
            "{} is acknowledged once, however often it was handed out",
            command.command_name
        );
    }
    let specs = bed.emulator.count(Operation::GetDeploymentSpecification);
    ensure_eq!(
        bed,
        specs,
        record.commands.len(),
        "one spec fetch per command: a redelivered command is not prepared again"
    );
    ensure!(
        bed,
        bed.agent_output().contains("not running it twice"),
        "the agent says it skipped the redelivered command"
    );
}

#[test]
fn a_throttling_storm_on_every_operation_is_ridden_out_and_every_complete_arrives() {
    let bed = TestBed::start("throttling-storm");
    let install = bed.path().join("srv/app");
    let log = bed.path().join("hooks.log");
    let revision = Revision::new()
        .file(
            "appspec.yml",
            appspec(
                "site",
                &install,
                &[
                    hook("BeforeInstall", "hooks/record.sh"),
                    hook("ApplicationStart", "hooks/record.sh"),
                ],
            ),
        )
        .file("site/index.html", "<p>storm</p>\n")
        .script("hooks/record.sh", recording_hook("storm", &log));
    let location = bed.upload("storm", "app/storm.tgz", &revision, BundleType::Tgz);
    // Four commands: every request may take two tries and a closed gate.
    let deployment = Deployment::new("App", "App-Group", location).events(&[
        "DownloadBundle",
        "BeforeInstall",
        "Install",
        "ApplicationStart",
    ]);
    bed.emulator.add_deployment(deployment.clone());
    // The agent's first polls are throttled; then, for as long as the
    // deployment takes, every operation's requests are throttled in turn.
    bed.emulator.throttle_storm(Storm::Requests(2));
    let config = bed
        .agent_config()
        .extra_line(":wait_after_throttle_error: 1");
    bed.start_agent_with(&agent_binary(), &config);
    let throttled = |op: Operation| {
        bed.emulator
            .calls_of(op)
            .iter()
            .filter(|c| c.error_type.as_deref() == Some("ThrottlingException"))
            .count()
    };
    let first_storm_over = bed.emulator.wait_until(Duration::from_secs(60), |_| {
        throttled(Operation::PollHostCommand) >= 2 || !bed.agent_running()
    });
    ensure!(
        bed,
        first_storm_over && throttled(Operation::PollHostCommand) >= 2,
        "the agent keeps polling through throttled polls"
    );
    bed.emulator.throttle_storm(Storm::Alternating(
        std::time::Instant::now() + Duration::from_secs(300),
    ));
    let outcome = bed.wait_for_deployment_end(
        &deployment.deployment_id,
        DEPLOYMENT_DEADLINE + Duration::from_secs(60),
    );
    ensure!(
        bed,
        outcome.is_succeeded(),
        "the deployment succeeds through the storm: {outcome}"
    );
    ensure_command_cycle(&bed, &deployment);

    for op in [
        Operation::PollHostCommand,
        Operation::GetDeploymentSpecification,
        Operation::PutHostCommandAcknowledgement,
        Operation::PutHostCommandComplete,
    ] {
        ensure!(
            bed,
            throttled(op) >= 1,
            "{} was throttled at least once",
            op.name()
        );
    }
    let record = bed
        .emulator
        .deployment(&deployment.deployment_id)
        .expect("the deployment was added");
    for command in &record.commands {
        ensure_eq!(
            bed,
            command
                .completions
                .iter()
                .map(|c| c.status.as_str())
                .collect::<Vec<_>>(),
            vec!["Succeeded"],
            "{}'s Complete arrived once, Succeeded",
            command.command_name
        );
    }
    ensure_eq!(
        bed,
        lines(&log),
        vec![
            expected_hook_line("storm", "BeforeInstall", &deployment),
            expected_hook_line("storm", "ApplicationStart", &deployment),
        ],
        "each hook ran once"
    );
    ensure_eq!(
        bed,
        read(&install.join("index.html")),
        "<p>storm</p>\n",
        "the revision is installed"
    );
}

/// The times (since the emulator started) of the calls of `operation` about
/// the command `host_command_identifier`.
fn calls_about(bed: &TestBed, operation: Operation, host_command_identifier: &str) -> Vec<f64> {
    bed.emulator
        .calls_of(operation)
        .iter()
        .filter(|call| call.request["HostCommandIdentifier"] == host_command_identifier)
        .map(|call| call.elapsed.as_secs_f64())
        .collect()
}

#[test]
fn removing_old_revisions_of_many_files_does_not_hold_up_polling() {
    let bed = TestBed::start("retention-off-runtime");
    let install = bed.path().join("srv/app");
    let revision = Revision::new()
        .file("appspec.yml", appspec("site", &install, &[]))
        .file("site/index.html", "<p>new</p>\n");
    let location = bed.upload("retention", "app/new.tgz", &revision, BundleType::Tgz);
    let deployment = Deployment::new("App", "App-Group", location);
    // Four earlier revisions of 60,000 files each: removing them takes
    // seconds, which on the agent's one runtime thread would stop its polls.
    let group_dir = bed.root_dir().join(&deployment.group_id);
    for old in 1..=4 {
        let archive = group_dir.join(format!("d-OLD{old:07}/deployment-archive"));
        for chunk in 0..60 {
            let dir = archive.join(format!("node_modules/p{chunk}"));
            std::fs::create_dir_all(&dir).unwrap();
            for file in 0..1000 {
                std::fs::File::create(dir.join(format!("f{file}.js"))).unwrap();
            }
        }
    }
    bed.emulator.add_deployment(deployment.clone());
    let config = bed
        .agent_config()
        .extra_line(":max_revisions: 1")
        .extra_line(":poll_jitter_percent: 10");
    bed.start_agent_with(&agent_binary(), &config);
    expect_success(&bed, &deployment);
    ensure!(
        bed,
        std::fs::read_dir(&group_dir).unwrap().count() == 1,
        "only the new revision's folder is left in {}",
        group_dir.display()
    );

    let record = bed.emulator.deployment(&deployment.deployment_id).unwrap();
    let download = &record
        .command("DownloadBundle")
        .unwrap()
        .host_command_identifier;
    let acknowledged = calls_about(&bed, Operation::PutHostCommandAcknowledgement, download)[0];
    let completed = calls_about(&bed, Operation::PutHostCommandComplete, download)[0];
    let polls: Vec<f64> = bed
        .emulator
        .calls_of(Operation::PollHostCommand)
        .iter()
        .map(|call| call.elapsed.as_secs_f64())
        .collect();
    // Polls go on every second (+10 % jitter) while DownloadBundle removes
    // the old revisions: no gap in the window is longer than a slot.
    let mut times: Vec<f64> = polls
        .iter()
        .copied()
        .filter(|t| (acknowledged..=completed).contains(t))
        .collect();
    times.insert(0, acknowledged);
    times.push(completed);
    let longest = times
        .windows(2)
        .map(|pair| pair[1] - pair[0])
        .fold(0.0, f64::max);
    ensure!(
        bed,
        longest < 1.6,
        "the longest wait between polls during DownloadBundle ({:.2} s, from {acknowledged:.2} to {completed:.2} s) was {longest:.2} s",
        completed - acknowledged
    );
}
