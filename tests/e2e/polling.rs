//! The poll loop as the service sees it: who the host says it is, the
//! headers every request carries, and what happens when the service
//! rejects the host's credentials.

use std::time::{Duration, SystemTime};

use codedeploy_e2e::emulator::{Operation, SIGNATURE_MISMATCH};
use codedeploy_e2e::testbed::{HOST_ARN, SESSION_ARN, SESSION_TOKEN};
use codedeploy_e2e::{
    BundleType, Deployment, HostRegistration, OnPremisesIdentity, Revision, TestBed,
};

use crate::support::*;

#[test]
fn idle_agent_polls_as_its_on_premises_identity_with_signed_requests() {
    let bed = TestBed::start("idle-polling");
    bed.start_agent(&agent_binary());
    let polled = bed.emulator.wait_until(Duration::from_secs(30), |e| {
        e.count(Operation::PollHostCommand) >= 2 || !bed.agent_running()
    });
    ensure!(
        bed,
        polled && bed.emulator.count(Operation::PollHostCommand) >= 2,
        "the agent polls at least twice within 30 s"
    );

    for call in bed.emulator.calls_of(Operation::PollHostCommand) {
        ensure_eq!(bed, call.status, 200, "poll #{} is accepted", call.seq);
        ensure_eq!(
            bed,
            call.request["HostIdentifier"].as_str(),
            Some(HOST_ARN),
            "the host identifier is the on-premises iam_user_arn"
        );
        ensure!(
            bed,
            call.header("content-type")
                .is_some_and(|v| v.starts_with("application/x-amz-json-1.1")),
            "content type of poll #{}",
            call.seq
        );
        ensure!(
            bed,
            call.header("x-amz-codedeploy-agent-version")
                .is_some_and(|v| !v.trim().is_empty()),
            "poll #{} carries x-amz-codedeploy-agent-version",
            call.seq
        );
    }
    ensure!(bed, bed.agent_running(), "the idle agent keeps running");
}

#[test]
fn bad_secret_is_reported_and_polling_continues_with_backoff() {
    let bed = TestBed::start("bad-secret");
    let mut config = bed.agent_config();
    config.identity = OnPremisesIdentity::IamUser {
        arn: HOST_ARN.to_string(),
        access_key_id: bed.credential.access_key_id.clone(),
        secret_access_key: "definitely-not-the-secret".to_string(),
    };
    bed.start_agent_with(&agent_binary(), &config);

    let rejected = |e: &codedeploy_e2e::Emulator| {
        e.calls_of(Operation::PollHostCommand)
            .into_iter()
            .filter(|c| c.error_type.as_deref() == Some("InvalidSignatureException"))
            .count()
    };
    // Full jitter below the official backoff (10, 13, 17 s): four polls come
    // within 0 + 10 + 13 + 17 s and a second each for the 1 s grid.
    let seen = bed.emulator.wait_until(Duration::from_secs(60), |e| {
        rejected(e) >= 4 || !bed.agent_running()
    });
    ensure!(
        bed,
        seen && rejected(&bed.emulator) >= 4,
        "four polls rejected with InvalidSignatureException within 60 s"
    );

    let polls = bed.emulator.calls_of(Operation::PollHostCommand);
    ensure!(
        bed,
        polls
            .iter()
            .all(|c| c.status == 400 && c.response["message"] == SIGNATURE_MISMATCH),
        "every poll is rejected with the signature-mismatch message"
    );
    // After the n-th error in a row the agent waits a random time below the
    // official backoff, then for the next slot of its 1 s interval: never
    // sooner than the interval, never later than the cap and one interval.
    for (n, cap_secs) in [(1usize, 10.0), (2, 13.0), (3, 17.0)] {
        let gap = polls[n]
            .at
            .duration_since(polls[n - 1].at)
            .unwrap_or_default()
            .as_secs_f64();
        ensure!(
            bed,
            (0.8..=cap_secs + 1.6).contains(&gap),
            "after error {n} the agent polled again after {gap:.2} s, expected 1 s to {} s",
            cap_secs + 1.0
        );
    }
    ensure!(
        bed,
        bed.agent_running(),
        "a credential error does not stop the agent"
    );

    let logged = bed.emulator.wait_until(Duration::from_secs(5), |_| {
        bed.agent_output().contains("InvalidSignatureException")
    });
    ensure!(
        bed,
        logged,
        "the agent's output names InvalidSignatureException"
    );
}

#[test]
fn first_poll_waits_the_start_up_delay_and_later_polls_keep_to_their_slots() {
    let bed = TestBed::start("poll-grid");
    let mut config = bed.agent_config();
    // This test sets its own start-up delay.
    config
        .extra_lines
        .retain(|line| !line.contains("startup_delay_max_seconds"));
    config.wait_between_runs = 2;
    let config = config
        .extra_line(":startup_delay_max_seconds: 3")
        .extra_line(":poll_jitter_percent: 20");
    let spawned = SystemTime::now();
    bed.start_agent_with(&agent_binary(), &config);
    let polled = bed.emulator.wait_until(Duration::from_secs(30), |e| {
        e.count(Operation::PollHostCommand) >= 6 || !bed.agent_running()
    });
    ensure!(bed, polled, "six polls within 30 s");

    // The agent names its delay; the first poll does not come sooner.
    let output = bed.agent_output();
    let delay: f64 = output
        .split("first poll in ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|secs| secs.parse().ok())
        .unwrap_or_else(|| panic!("the agent logs its start-up delay\n{}", bed.report()));
    ensure!(
        bed,
        delay < 3.0,
        "the delay {delay} s is below the 3 s maximum"
    );
    let polls = bed.emulator.calls_of(Operation::PollHostCommand);
    let first = polls[0].at.duration_since(spawned).unwrap_or_default();
    ensure!(
        bed,
        first.as_secs_f64() >= delay - 0.1,
        "the first poll came {first:?} after the start, the delay was {delay} s"
    );
    // Every later poll lands in its slot (first poll + k × 2 s) or up to 20 %
    // of the interval (0.4 s) after it: the jitter never adds up.
    for (k, poll) in polls.iter().enumerate().take(6).skip(1) {
        let since_first = poll
            .at
            .duration_since(polls[0].at)
            .unwrap_or_default()
            .as_secs_f64();
        let slot = 2.0 * k as f64;
        ensure!(
            bed,
            since_first >= slot - 0.05 && since_first <= slot + 0.4 + 0.3,
            "poll {k} came {since_first:.3} s after the first, its slot is at {slot} s (+0.4 s jitter)"
        );
    }
}

#[test]
fn session_credentials_from_a_credentials_file_sign_every_request() {
    let bed = TestBed::start_as("session-credentials", HostRegistration::IamSession);
    let install = bed.path().join("srv/app");
    let revision = Revision::new()
        .file("appspec.yml", appspec("site", &install, &[]))
        .file("site/index.html", "<p>session</p>\n");
    let location = bed.upload(
        "session-revisions",
        "app/session.tgz",
        &revision,
        BundleType::Tgz,
    );
    let deployment = Deployment::new("App", "App-Group", location);
    bed.emulator.add_deployment(deployment.clone());
    bed.start_agent(&agent_binary());
    expect_success(&bed, &deployment);

    ensure_eq!(
        bed,
        read(&install.join("index.html")),
        "<p>session</p>\n",
        "installed file"
    );
    for call in bed.emulator.calls().iter().filter(|c| c.method == "POST") {
        ensure_eq!(bed, call.status, 200, "call #{} is accepted", call.seq);
        ensure_eq!(
            bed,
            call.header("x-amz-security-token"),
            Some(SESSION_TOKEN),
            "call #{} carries the session token",
            call.seq
        );
    }
    let poll = &bed.emulator.calls_of(Operation::PollHostCommand)[0];
    ensure_eq!(
        bed,
        poll.request["HostIdentifier"].as_str(),
        Some(SESSION_ARN),
        "the host identifier is the on-premises iam_session_arn"
    );
}
