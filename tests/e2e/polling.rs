//! The poll loop as the service sees it: who the host says it is, the
//! headers every request carries, and what happens when the service
//! rejects the host's credentials.

use std::time::Duration;

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
    let seen = bed.emulator.wait_until(Duration::from_secs(40), |e| {
        rejected(e) >= 2 || !bed.agent_running()
    });
    ensure!(
        bed,
        seen && rejected(&bed.emulator) >= 2,
        "two polls rejected with InvalidSignatureException within 40 s"
    );

    let polls = bed.emulator.calls_of(Operation::PollHostCommand);
    ensure!(
        bed,
        polls
            .iter()
            .all(|c| c.status == 400 && c.response["message"] == SIGNATURE_MISMATCH),
        "every poll is rejected with the signature-mismatch message"
    );
    let gap = polls[1].at.duration_since(polls[0].at).unwrap_or_default();
    ensure!(
        bed,
        gap >= Duration::from_secs(9),
        "after the first error the agent backs off about 10 s, but polled again after {gap:?}"
    );
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
