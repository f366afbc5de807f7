//! Who the host is and what it signs with, end to end: an EC2 instance
//! identified through the instance-metadata emulator (IMDSv2 tokens, the
//! IMDSv1 fallback, its refusal, unreachable or hanging metadata at
//! start-up, the host identifier and signing region of each partition),
//! instance-profile credentials renewed before they expire during a long
//! hook, and an on-premises session credentials file rotated while the
//! agent polls. The Commands emulator checks every signature against the
//! keys it currently accepts.

use std::path::Path;
use std::time::{Duration, Instant};

use codedeploy_e2e::emulator::{Call, Credential, Operation};
use codedeploy_e2e::imds::{ImdsConfig, RoleCredentials};
use codedeploy_e2e::testbed::{
    INSTANCE_ACCESS_KEY_ID, INSTANCE_SECRET_ACCESS_KEY, INSTANCE_TOKEN, SESSION_ACCESS_KEY_ID,
    SESSION_SECRET_ACCESS_KEY, SESSION_TOKEN,
};
use codedeploy_e2e::{BundleType, Deployment, HostRegistration, Revision, TestBed};

use crate::support::*;

const BUCKET: &str = "identity-revisions";
const START_UP_BOUND: Duration = Duration::from_secs(30);

/// The access key id a call was signed with (from its Authorization header).
fn signed_with(call: &Call) -> Option<&str> {
    let authorization = call.header("authorization")?;
    let (_, rest) = authorization.split_once("Credential=")?;
    rest.split('/').next()
}

fn aws_instance() -> ImdsConfig {
    ImdsConfig::new("aws", "us-east-1", "amazonaws.com")
}

/// Waits until the emulator has answered `n` polls with 200 (or the agent died).
fn wait_for_accepted_polls(bed: &TestBed, n: usize, timeout: Duration) -> bool {
    let accepted = |e: &codedeploy_e2e::Emulator| {
        e.calls_of(Operation::PollHostCommand)
            .iter()
            .filter(|c| c.status == 200)
            .count()
    };
    bed.emulator
        .wait_until(timeout, |e| accepted(e) >= n || !bed.agent_running());
    accepted(&bed.emulator) >= n
}

fn plain_revision(install: &Path) -> Revision {
    Revision::new()
        .file("appspec.yml", appspec("site", install, &[]))
        .file("site/index.html", "<p>ec2</p>\n")
}

#[test]
fn ec2_instance_polls_and_deploys_as_its_instance_arn_with_imdsv2_and_profile_credentials() {
    let bed = TestBed::start_ec2("ec2-imdsv2", aws_instance());
    let install = bed.path().join("srv/app");
    let location = bed.upload(
        BUCKET,
        "app/ec2.tgz",
        &plain_revision(&install),
        BundleType::Tgz,
    );
    let deployment = Deployment::new("App", "App-Group", location);
    bed.emulator.add_deployment(deployment.clone());
    bed.start_agent(&agent_binary());
    expect_success(&bed, &deployment);
    ensure_eq!(
        bed,
        read(&install.join("index.html")),
        "<p>ec2</p>\n",
        "installed file"
    );

    let instance_arn = bed.imds().config().host_identifier();
    for poll in bed.emulator.calls_of(Operation::PollHostCommand) {
        ensure_eq!(
            bed,
            poll.request["HostIdentifier"].as_str(),
            Some(instance_arn.as_str()),
            "poll #{} names the instance ARN",
            poll.seq
        );
    }
    for call in bed.emulator.calls().iter().filter(|c| c.method == "POST") {
        ensure_eq!(bed, call.status, 200, "call #{} is accepted", call.seq);
        ensure_eq!(
            bed,
            (signed_with(call), call.header("x-amz-security-token")),
            (Some(INSTANCE_ACCESS_KEY_ID), Some(INSTANCE_TOKEN)),
            "call #{} is signed with the instance profile's credentials",
            call.seq
        );
    }

    let requests = bed.imds().requests();
    ensure!(
        bed,
        requests
            .first()
            .is_some_and(|r| r.method == "PUT" && r.path == "/latest/api/token"),
        "the agent asks for an IMDSv2 token first: {requests:?}"
    );
    let gets: Vec<_> = requests.iter().filter(|r| r.method == "GET").collect();
    ensure!(
        bed,
        !gets.is_empty() && gets.iter().all(|r| r.with_valid_token && r.status == 200),
        "every metadata read carries a token: {requests:?}"
    );
    let output = bed.agent_output();
    ensure!(
        bed,
        output.contains(&format!(
            "EC2 instance {instance_arn} in us-east-1 (partition aws, domain amazonaws.com)"
        )),
        "the start-up log says how the host was identified"
    );
    for secret in [INSTANCE_SECRET_ACCESS_KEY, INSTANCE_TOKEN] {
        ensure!(
            bed,
            !output.contains(secret),
            "the instance profile's secrets never reach the agent's output"
        );
    }
}

#[test]
fn imdsv1_is_used_when_the_instance_refuses_tokens() {
    let mut instance = aws_instance();
    instance.tokens = false;
    let bed = TestBed::start_ec2("ec2-imdsv1", instance);
    bed.start_agent(&agent_binary());
    ensure!(
        bed,
        wait_for_accepted_polls(&bed, 2, Duration::from_secs(40)),
        "the agent identifies itself through IMDSv1 and polls"
    );
    let requests = bed.imds().requests();
    ensure!(
        bed,
        requests
            .iter()
            .any(|r| r.method == "PUT" && r.path == "/latest/api/token" && r.status == 403),
        "a token was asked for and refused: {requests:?}"
    );
    let gets: Vec<_> = requests.iter().filter(|r| r.method == "GET").collect();
    ensure!(
        bed,
        gets.len() >= 4 && gets.iter().all(|r| !r.with_valid_token && r.status == 200),
        "identity and credentials were read without a token: {requests:?}"
    );
    let poll = &bed.emulator.calls_of(Operation::PollHostCommand)[0];
    ensure_eq!(
        bed,
        poll.request["HostIdentifier"].as_str(),
        Some(bed.imds().config().host_identifier().as_str()),
        "the host identifier"
    );
    ensure!(
        bed,
        bed.agent_output().contains("falling back to IMDSv1"),
        "the fallback is logged"
    );
}

#[test]
fn refused_tokens_with_imds_v1_disabled_stop_the_agent_at_start_up() {
    let mut instance = aws_instance();
    instance.tokens = false;
    let bed = TestBed::start_ec2("ec2-no-v1", instance);
    let config = bed.agent_config().extra_line(":disable_imds_v1: true");
    let started = Instant::now();
    bed.start_agent_with(&agent_binary(), &config);
    let status = bed.wait_for_agent_exit(START_UP_BOUND);
    ensure!(
        bed,
        status.is_some_and(|s| !s.success()),
        "the agent exits with a failure status within {START_UP_BOUND:?} (after {:?}: {status:?})",
        started.elapsed()
    );
    let output = bed.agent_output();
    ensure!(
        bed,
        output.contains("refused an IMDSv2 token (HTTP 403)")
            && output.contains(":disable_imds_v1: forbids IMDSv1"),
        "the error says that tokens were refused and IMDSv1 is disabled"
    );
    let requests = bed.imds().requests();
    ensure!(
        bed,
        requests.iter().all(|r| r.method == "PUT"),
        "no metadata is read without a token: {requests:?}"
    );
    ensure_eq!(
        bed,
        bed.emulator.calls().len(),
        0,
        "an agent without an identity never calls the service"
    );
}

#[test]
fn unreachable_instance_metadata_is_a_clear_start_up_error_in_bounded_time() {
    let bed = TestBed::start_ec2("ec2-unreachable", aws_instance());
    // A loopback port nobody listens on: connections are refused at once.
    let closed = format!("http://127.0.0.1:{}", codedeploy_e2e::s3::free_port());
    let config = bed
        .agent_config()
        .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", &closed);
    let started = Instant::now();
    bed.start_agent_with(&agent_binary(), &config);
    let status = bed.wait_for_agent_exit(START_UP_BOUND);
    let took = started.elapsed();
    ensure!(
        bed,
        status.is_some_and(|s| !s.success()) && took < START_UP_BOUND,
        "the agent gives up with a failure status in under {START_UP_BOUND:?} (took {took:?}, {status:?})"
    );
    let stderr_and_log = bed.agent_output();
    ensure!(
        bed,
        stderr_and_log.contains(&format!("instance metadata at {closed} did not answer"))
            && stderr_and_log.contains("no on-premises registration")
            && stderr_and_log.contains(&config.on_premises_config_file.display().to_string()),
        "the error names the metadata endpoint and the missing on-premises file"
    );
}

#[test]
fn sigterm_while_instance_metadata_hangs_ends_the_start_up_cleanly() {
    let bed = TestBed::start_ec2("ec2-hanging", aws_instance());
    // Connections complete in the listen backlog and are never answered.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    let endpoint = format!(
        "http://{}",
        silent
            .local_addr()
            .expect("a bound listener has an address")
    );
    let config = bed
        .agent_config()
        .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", &endpoint);
    bed.start_agent_with(&agent_binary(), &config);
    let waiting = bed.emulator.wait_until(Duration::from_secs(10), |_| {
        bed.agent_output().contains("starting with") || !bed.agent_running()
    });
    ensure!(bed, waiting && bed.agent_running(), "the agent is starting");
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    bed.signal_agent("TERM");
    let status = bed.wait_for_agent_exit(Duration::from_secs(5));
    ensure!(
        bed,
        status.is_some_and(|s| s.success()),
        "SIGTERM ends a start-up stuck on instance metadata at once, cleanly: {status:?} after {:?}",
        started.elapsed()
    );
    ensure!(
        bed,
        bed.agent_output()
            .contains("SIGTERM received during start-up: stopping"),
        "the stop is logged"
    );
    drop(silent);
}

#[test]
fn host_identifier_and_signing_region_follow_the_instance_partition() {
    let cases = [
        ("aws", "us-west-2", "amazonaws.com"),
        ("aws-cn", "cn-north-1", "amazonaws.com.cn"),
        ("aws-us-gov", "us-gov-west-1", "amazonaws.com"),
    ];
    for (partition, region, domain) in cases {
        let bed = TestBed::start_ec2(
            &format!("ec2-{partition}"),
            ImdsConfig::new(partition, region, domain),
        );
        bed.start_agent(&agent_binary());
        ensure!(
            bed,
            wait_for_accepted_polls(&bed, 1, Duration::from_secs(40)),
            "{partition}: a poll signed for {region} is accepted by the {region} service"
        );
        let poll = &bed.emulator.calls_of(Operation::PollHostCommand)[0];
        let expected =
            format!("arn:{partition}:ec2:{region}:123456789012:instance/i-0123456789abcdef0");
        ensure_eq!(
            bed,
            poll.request["HostIdentifier"].as_str(),
            Some(expected.as_str()),
            "{partition}: the host identifier"
        );
        ensure!(
            bed,
            poll.header("authorization")
                .is_some_and(|a| a.contains(&format!("/{region}/codedeploy-commands/aws4_request"))),
            "{partition}: the signature is scoped to {region}"
        );
        ensure!(
            bed,
            bed.agent_output()
                .contains(&format!("(partition {partition}, domain {domain})")),
            "{partition}: the domain comes from instance metadata"
        );
        bed.stop_agent(Duration::from_secs(10));
    }
}

#[test]
fn instance_profile_credentials_are_renewed_before_they_expire_during_a_long_hook() {
    let bed = TestBed::start_ec2("ec2-renewal", aws_instance());
    // Inside the 5-minute renewal window 20 s after the agent starts.
    let lifetime = Duration::from_secs(5 * 60 + 20);
    let issued = Instant::now();
    bed.imds().set_credentials(RoleCredentials::expiring_in(
        INSTANCE_ACCESS_KEY_ID,
        INSTANCE_SECRET_ACCESS_KEY,
        INSTANCE_TOKEN,
        lifetime,
    ));
    let install = bed.path().join("srv/app");
    let started_marker = bed.path().join("hook-started");
    let go = bed.path().join("hook-go");
    let revision = Revision::new()
        .file("site/index.html", "<p>ec2</p>\n")
        .script(
        "scripts/wait.sh",
        format!(
            "#!/bin/sh\ntouch '{}'\ni=0\nwhile [ ! -f '{}' ] && [ $i -lt 1200 ]; do sleep 0.1; i=$((i+1)); done\n",
            started_marker.display(),
            go.display()
        ),
    )
    .file(
        "appspec.yml",
        appspec(
            "site",
            &install,
            &[Hook {
                event: "BeforeInstall",
                location: "scripts/wait.sh",
                timeout: Some(300),
            }],
        ),
    );
    let location = bed.upload(BUCKET, "app/renewal.tgz", &revision, BundleType::Tgz);
    let deployment = Deployment::new("App", "App-Group", location);
    bed.emulator.add_deployment(deployment.clone());
    bed.start_agent(&agent_binary());

    let hook_running = bed.emulator.wait_until(DEPLOYMENT_DEADLINE, |_| {
        started_marker.exists() || !bed.agent_running()
    });
    ensure!(
        bed,
        hook_running && bed.agent_running(),
        "the long hook started"
    );
    let signed_before = bed.emulator.calls().len();
    let fetches_before = bed.imds().credential_fetches();

    // The old credentials are now inside their renewal window; the instance
    // has new ones, and the service no longer takes the old.
    let inside_window = Duration::from_secs(22);
    if let Some(rest) = inside_window.checked_sub(issued.elapsed()) {
        std::thread::sleep(rest);
    }
    let renewed = Credential::new(
        "ASIAE2EINSTANCEPROF2",
        "e2e/Instance+Profile/Renewed0123456789",
    )
    .with_session_token("IQoJRenewedInstanceProfileTokenForCodeDeployE2E");
    bed.imds().set_credentials(RoleCredentials::expiring_in(
        &renewed.access_key_id,
        &renewed.secret_access_key,
        renewed.session_token.as_deref().unwrap_or_default(),
        Duration::from_secs(6 * 3600),
    ));
    bed.emulator.set_credentials(vec![renewed.clone()]);
    let rotated_at = bed.emulator.calls().len();
    std::fs::write(&go, "").expect("the go file can be written");

    expect_success(&bed, &deployment);
    let calls = bed.emulator.calls();
    for call in &calls[..rotated_at] {
        ensure_eq!(bed, call.status, 200, "call #{} is accepted", call.seq);
    }
    ensure!(
        bed,
        calls.len() > rotated_at,
        "the agent spoke to the service after the renewal"
    );
    // The agent keeps polling while the hook runs, so a request signed a
    // moment before the rotation may arrive after it and be refused; the
    // agent then renews and retries. Every accepted call after the rotation
    // carries the new credentials, and at most the in-flight few do not.
    let mut refused_old = 0;
    for call in &calls[rotated_at..] {
        let new_key = (signed_with(call), call.header("x-amz-security-token"))
            == (
                Some(renewed.access_key_id.as_str()),
                renewed.session_token.as_deref(),
            );
        if new_key {
            ensure_eq!(bed, call.status, 200, "call #{} is accepted", call.seq);
        } else {
            ensure!(
                bed,
                call.status != 200,
                "call #{} after the renewal with the old credentials is refused, not accepted",
                call.seq
            );
            refused_old += 1;
        }
    }
    ensure!(
        bed,
        refused_old <= 2,
        "only requests in flight at the rotation use the old credentials: {refused_old}"
    );
    ensure!(
        bed,
        signed_before >= 6 && fetches_before <= 3,
        "credentials are cached, not fetched per request: {fetches_before} fetches for {signed_before} signed calls"
    );
    ensure!(
        bed,
        bed.agent_output()
            .contains("instance-profile credentials renewed (access key ASIAE2EINSTANCEPROF2)"),
        "the renewal is logged by access key id only"
    );
    ensure!(
        bed,
        !bed.agent_output().contains(&renewed.secret_access_key),
        "the new secret never reaches the agent's output"
    );
}

#[test]
fn rotated_session_credentials_file_is_used_for_every_later_request() {
    let bed = TestBed::start_as("session-rotation", HostRegistration::IamSession);
    bed.start_agent(&agent_binary());
    ensure!(
        bed,
        wait_for_accepted_polls(&bed, 2, Duration::from_secs(30)),
        "the agent polls with the first session credentials"
    );

    // The registration tooling writes new session credentials; the old ones
    // stay valid until the service sees the new ones in use.
    let rotated = Credential::new(
        "ASIAE2ETESTSESSION02",
        "e2e/Session+Secret/rotated0123456789ab",
    )
    .with_session_token("IQoJRotatedSessionTokenForCodeDeployE2E");
    bed.emulator
        .set_credentials(vec![bed.credential.clone(), rotated.clone()]);
    let credentials_file = bed.agent_dir().join("credentials");
    codedeploy_e2e::agent::write_credentials_file(
        &credentials_file,
        &rotated.access_key_id,
        &rotated.secret_access_key,
        rotated.session_token.as_deref(),
    )
    .expect("the credentials file can be rewritten");
    let switched = bed.emulator.wait_until(Duration::from_secs(15), |e| {
        e.calls()
            .iter()
            .any(|c| signed_with(c) == Some(rotated.access_key_id.as_str()))
    });
    ensure!(
        bed,
        switched,
        "a request signed with the rotated keys arrives"
    );
    // Old keys revoked from now on.
    bed.emulator.set_credentials(vec![rotated.clone()]);
    let first_new = bed
        .emulator
        .calls()
        .iter()
        .position(|c| signed_with(c) == Some(rotated.access_key_id.as_str()))
        .expect("seen above");

    let install = bed.path().join("srv/app");
    let location = bed.upload(
        BUCKET,
        "app/session-rotation.tgz",
        &plain_revision(&install),
        BundleType::Tgz,
    );
    let deployment = Deployment::new("App", "App-Group", location);
    bed.emulator.add_deployment(deployment.clone());
    expect_success(&bed, &deployment);
    ensure!(
        bed,
        wait_for_accepted_polls(
            &bed,
            bed.emulator.count(Operation::PollHostCommand) + 2,
            Duration::from_secs(30)
        ),
        "polling goes on after the deployment"
    );

    let calls = bed.emulator.calls();
    for call in &calls {
        ensure_eq!(bed, call.status, 200, "call #{} is accepted", call.seq);
    }
    for call in &calls[first_new..] {
        ensure_eq!(
            bed,
            (signed_with(call), call.header("x-amz-security-token")),
            (
                Some(rotated.access_key_id.as_str()),
                rotated.session_token.as_deref()
            ),
            "call #{} after the rotation uses the rotated credentials",
            call.seq
        );
    }
    ensure!(
        bed,
        calls[..first_new]
            .iter()
            .all(|c| signed_with(c) == Some(SESSION_ACCESS_KEY_ID)),
        "calls before the rotation used the first credentials"
    );
    let output = bed.agent_output();
    for secret in [
        SESSION_SECRET_ACCESS_KEY,
        SESSION_TOKEN,
        rotated.secret_access_key.as_str(),
        rotated.session_token.as_deref().unwrap_or_default(),
    ] {
        ensure!(
            bed,
            !output.contains(secret),
            "session secrets never reach the agent's output"
        );
    }
}
