//! The emulator over real HTTP: requests signed with the `aws-sigv4` crate,
//! sent on a TCP socket, answered by the running server.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use serde_json::{json, Value};

use super::*;
use crate::bundle::BundleType;

const HOST: &str = "arn:aws:iam::123456789012:user/http-test";

fn start() -> Emulator {
    let mut config = EmulatorConfig::new(
        HOST,
        vec![Credential::new("AKIDHTTP", "right-secret")],
        TestPki::generate().unwrap(),
    );
    config.poll_hold = Duration::from_millis(50);
    Emulator::start(config).unwrap()
}

struct Answer {
    status: u16,
    body: Value,
}

fn send(emulator: &Emulator, secret: &str, target: Option<&str>, body: &str) -> Answer {
    let raw = signed_request(emulator, secret, target, body);
    let mut stream = TcpStream::connect(("127.0.0.1", emulator.port())).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(raw.as_bytes()).unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let text = String::from_utf8(response).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    Answer {
        status,
        body: serde_json::from_str(body).unwrap_or(Value::String(body.to_string())),
    }
}

/// A whole signed request as it goes on the wire.
fn signed_request(emulator: &Emulator, secret: &str, target: Option<&str>, body: &str) -> String {
    let host = format!("127.0.0.1:{}", emulator.port());
    let mut headers = vec![
        ("content-type".to_string(), CONTENT_TYPE.to_string()),
        ("host".to_string(), host.clone()),
    ];
    if let Some(op) = target {
        headers.push(("x-amz-target".to_string(), format!("{TARGET_PREFIX}{op}")));
    }
    let identity = Credentials::new("AKIDHTTP", secret, None, None, "test").into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name(SIGNING_NAME)
        .time(SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .unwrap()
        .into();
    let signable = SignableRequest::new(
        "POST",
        format!("http://{host}/"),
        headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        SignableBody::Bytes(body.as_bytes()),
    )
    .unwrap();
    let (instructions, _) = sign(signable, &params).unwrap().into_parts();
    for (k, v) in instructions.headers() {
        headers.push((k.to_string(), v.to_string()));
    }
    let mut raw = String::from("POST / HTTP/1.1\r\n");
    for (k, v) in &headers {
        raw.push_str(&format!("{k}: {v}\r\n"));
    }
    raw.push_str(&format!(
        "content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    ));
    raw
}

fn location() -> S3Location {
    S3Location {
        bucket: "bucket".into(),
        key: "app.tar".into(),
        bundle_type: BundleType::Tar,
        version: Some("v1".into()),
        etag: Some("etag1".into()),
    }
}

#[test]
fn a_whole_deployment_over_http() {
    let emulator = start();
    let deployment =
        Deployment::new("App", "Group", location()).events(&["DownloadBundle", "Install"]);
    let id = deployment.deployment_id.clone();
    emulator.add_deployment(deployment);
    let poll_body = json!({"HostIdentifier": HOST}).to_string();
    for expected in ["DownloadBundle", "Install"] {
        let poll = send(
            &emulator,
            "right-secret",
            Some("PollHostCommand"),
            &poll_body,
        );
        assert_eq!(poll.status, 200, "{}", poll.body);
        let command = &poll.body["HostCommand"];
        assert_eq!(command["CommandName"], expected);
        let spec = send(
            &emulator,
            "right-secret",
            Some("GetDeploymentSpecification"),
            &json!({"DeploymentExecutionId": command["DeploymentExecutionId"], "HostIdentifier": HOST}).to_string(),
        );
        assert_eq!(spec.status, 200, "{}", spec.body);
        assert!(
            spec.body["DeploymentSpecification"]["GenericEnvelope"]["Payload"]
                .as_str()
                .unwrap()
                .starts_with("-----BEGIN PKCS7-----")
        );
        let ack = send(
            &emulator,
            "right-secret",
            Some("PutHostCommandAcknowledgement"),
            &json!({"HostCommandIdentifier": command["HostCommandIdentifier"],
                    "Diagnostics": {"Format": "JSON", "Payload": "{\"IsCommandNoop\":false}"}})
            .to_string(),
        );
        assert_eq!(ack.body, json!({"CommandStatus": "InProgress"}));
        let done = send(
            &emulator,
            "right-secret",
            Some("PutHostCommandComplete"),
            &json!({"HostCommandIdentifier": command["HostCommandIdentifier"], "CommandStatus": "Succeeded",
                    "Diagnostics": {"Format": "JSON", "Payload": "{\"error_code\":0,\"script_name\":\"\",\"message\":\"Succeeded: \",\"log\":\"\"}"}})
            .to_string(),
        );
        assert_eq!((done.status, done.body), (200, json!({})));
    }
    let outcome = emulator.wait_for_deployment_end(&id, Duration::from_secs(5));
    assert!(outcome.is_succeeded(), "{outcome}\n{}", emulator.report());
    assert_eq!(emulator.count(Operation::PutHostCommandComplete), 2);
    assert_eq!(emulator.completes().len(), 2);
    assert_eq!(emulator.completes()[0].command_name, "DownloadBundle");
    let empty = send(
        &emulator,
        "right-secret",
        Some("PollHostCommand"),
        &poll_body,
    );
    assert_eq!((empty.status, empty.body), (200, json!({})));
    let report = emulator.report();
    assert!(report.contains("DownloadBundle"), "{report}");
}

#[test]
fn errors_are_json_with_type_and_message() {
    let emulator = start();
    let bad = send(
        &emulator,
        "wrong-secret",
        Some("PollHostCommand"),
        &json!({"HostIdentifier": HOST}).to_string(),
    );
    assert_eq!(bad.status, 400);
    assert_eq!(bad.body["__type"], "InvalidSignatureException");
    assert_eq!(bad.body["message"], SIGNATURE_MISMATCH);

    let unknown = send(&emulator, "right-secret", Some("DeleteEverything"), "{}");
    assert_eq!(unknown.status, 400);
    assert_eq!(unknown.body["__type"], "UnknownOperationException");

    let malformed = send(&emulator, "right-secret", Some("PollHostCommand"), "{oops");
    assert_eq!(malformed.body["__type"], "SerializationException");

    let wrong_host = send(
        &emulator,
        "right-secret",
        Some("PollHostCommand"),
        &json!({"HostIdentifier": "arn:aws:iam::1:user/other"}).to_string(),
    );
    assert_eq!(wrong_host.status, 400);
    assert_eq!(wrong_host.body["__type"], "ClientException");

    emulator.inject_error(Operation::PollHostCommand, ServiceError::throttling(), 1);
    let throttled = send(
        &emulator,
        "right-secret",
        Some("PollHostCommand"),
        &json!({"HostIdentifier": HOST}).to_string(),
    );
    assert_eq!(throttled.body["__type"], "ThrottlingException");

    let calls = emulator.calls();
    assert_eq!(calls.len(), 5);
    assert_eq!(
        calls[0].error_type.as_deref(),
        Some("InvalidSignatureException")
    );
    assert_eq!(calls[0].operation, Some(Operation::PollHostCommand));
    assert!(calls[0].header("authorization").is_some());
    assert_eq!(calls[1].operation, None);
}

#[test]
fn waits_end_at_their_deadline() {
    let emulator = start();
    let deployment = Deployment::new("App", "Group", location());
    let id = deployment.deployment_id.clone();
    emulator.add_deployment(deployment);
    let started = std::time::Instant::now();
    let outcome = emulator.wait_for_deployment_end(&id, Duration::from_millis(300));
    assert!(matches!(outcome, Outcome::TimedOut(Some(_))), "{outcome}");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(matches!(
        emulator.wait_for_deployment_end("d-NOPE", Duration::from_millis(10)),
        Outcome::TimedOut(None)
    ));
}

#[test]
fn a_request_whose_sender_hung_up_is_still_heard_before_the_emulator_is_quiet() {
    let mut config = EmulatorConfig::new(
        HOST,
        vec![Credential::new("AKIDHTTP", "right-secret")],
        TestPki::generate().unwrap(),
    );
    config.poll_hold = Duration::from_millis(1500);
    let emulator = Emulator::start(config).unwrap();
    let poll = json!({ "HostIdentifier": HOST }).to_string();
    let raw = signed_request(&emulator, "right-secret", Some("PollHostCommand"), &poll);
    // Sent, then the sender is gone, as an agent killed right after writing.
    TcpStream::connect(("127.0.0.1", emulator.port()))
        .unwrap()
        .write_all(raw.as_bytes())
        .unwrap();
    // The held poll is still being answered: not quiet yet.
    assert!(!emulator.wait_quiet(Duration::from_millis(50), Duration::from_millis(500)));
    assert!(emulator.wait_quiet(Duration::from_millis(50), Duration::from_secs(10)));
    assert_eq!(emulator.calls_of(Operation::PollHostCommand).len(), 1);
    let started = std::time::Instant::now();
    assert!(emulator.wait_quiet(Duration::from_millis(10), Duration::from_secs(10)));
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "an idle emulator is quiet at once"
    );
}
