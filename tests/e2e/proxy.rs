//! The agent behind a real forward proxy (tinyproxy on loopback): with
//! `:proxy_uri:` every Commands call and every S3 request goes through the
//! proxy, as its log shows; without it, `HTTP(S)_PROXY` and `NO_PROXY` from
//! the environment decide, for both clients alike.

use std::time::Duration;

use codedeploy_e2e::emulator::Operation;
use codedeploy_e2e::proxy::{ForwardProxy, ProxiedRequest, ProxyCredentials};
use codedeploy_e2e::{BundleType, Deployment, Revision, TestBed};

use crate::support::*;

const BUCKET: &str = "proxied-revisions";

fn deploy(bed: &TestBed, key: &str) -> Deployment {
    let install = bed.path().join("srv/app");
    let revision = Revision::new()
        .file("appspec.yml", appspec("site", &install, &[]))
        .file("site/index.html", format!("<p>{key}</p>\n"));
    let location = bed.upload(BUCKET, key, &revision, BundleType::Tgz);
    let deployment = Deployment::new("App", "App-Group", location);
    bed.emulator.add_deployment(deployment.clone());
    deployment
}

fn start_proxy(bed: &TestBed, credentials: Option<&ProxyCredentials>) -> ForwardProxy {
    ForwardProxy::start_with(&bed.path().join("proxy"), credentials)
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The proxied requests whose URL starts with `prefix`.
fn proxied_to(requests: &[ProxiedRequest], prefix: &str) -> Vec<ProxiedRequest> {
    requests
        .iter()
        .filter(|r| r.url.starts_with(prefix))
        .cloned()
        .collect()
}

/// Every Commands call the emulator answered went through the proxy: the
/// proxy logged as many POSTs to the emulator as the emulator received.
fn ensure_all_commands_calls_proxied(bed: &TestBed, proxy: &ForwardProxy) {
    let emulator_url = format!("{}/", bed.emulator.endpoint());
    let matched = bed.emulator.wait_until(Duration::from_secs(10), |e| {
        proxied_to(&proxy.requests(), &emulator_url).len() == e.calls().len()
    });
    let proxied = proxied_to(&proxy.requests(), &emulator_url);
    ensure!(
        bed,
        matched && proxied.iter().all(|r| r.method == "POST"),
        "the proxy forwarded each of the {} Commands calls ({} POSTs logged)\n{}",
        bed.emulator.calls().len(),
        proxied.len(),
        proxy.log()
    );
}

#[test]
fn proxy_uri_carries_all_control_plane_and_s3_traffic() {
    let bed = TestBed::start("proxy-uri");
    let credentials = ProxyCredentials {
        user: "deployer".to_string(),
        password: "proxy-pass-4321".to_string(),
    };
    let proxy = start_proxy(&bed, Some(&credentials));
    let proxy_uri = format!(
        "http://{}:{}@127.0.0.1:{}",
        credentials.user,
        credentials.password,
        proxy.port()
    );
    // NO_PROXY=127.0.0.1 stays set by the harness: an explicit proxy ignores it.
    let config = bed
        .agent_config()
        .extra_line(&format!(":proxy_uri: {proxy_uri}"));
    let deployment = deploy(&bed, "app/proxied.tgz");
    bed.start_agent_with(&agent_binary(), &config);
    expect_success(&bed, &deployment);
    ensure_command_cycle(&bed, &deployment);

    ensure_all_commands_calls_proxied(&bed, &proxy);
    let revision = &deployment.revision;
    let object_url = format!("{}/{}/{}", bed.s3.endpoint(), revision.bucket, revision.key);
    let downloads = proxied_to(&proxy.requests(), &object_url);
    ensure!(
        bed,
        !downloads.is_empty() && downloads.iter().all(|r| r.method == "GET"),
        "the bundle was fetched from S3 through the proxy ({object_url})\n{}",
        proxy.log()
    );
    let output = bed.agent_output();
    ensure!(
        bed,
        output.contains(&format!(
            "goes through proxy http://deployer:***@127.0.0.1:{}",
            proxy.port()
        )) && !output.contains(&credentials.password),
        "the proxy is logged with its password masked"
    );
}

#[test]
fn proxy_environment_variables_are_honoured_and_no_proxy_bypasses_them() {
    let bed = TestBed::start("proxy-env");
    let proxy = start_proxy(&bed, None);
    let through_proxy = bed
        .agent_config()
        .env("HTTP_PROXY", &proxy.url())
        .env("HTTPS_PROXY", &proxy.url())
        .env("NO_PROXY", "")
        .env("no_proxy", "");
    let first = deploy(&bed, "app/env-proxied.tgz");
    bed.start_agent_with(&agent_binary(), &through_proxy);
    expect_success(&bed, &first);
    ensure_all_commands_calls_proxied(&bed, &proxy);
    let object_url = format!(
        "{}/{}/{}",
        bed.s3.endpoint(),
        first.revision.bucket,
        first.revision.key
    );
    ensure!(
        bed,
        !proxied_to(&proxy.requests(), &object_url).is_empty(),
        "HTTP_PROXY carries the S3 download too\n{}",
        proxy.log()
    );
    bed.stop_agent(Duration::from_secs(20));

    // A proxy that cannot be reached, bypassed for 127.0.0.1.
    let proxied_so_far = proxy.requests().len();
    let dead_proxy = format!("http://127.0.0.1:{}", codedeploy_e2e::s3::free_port());
    let bypassing = bed
        .agent_config()
        .env("HTTP_PROXY", &dead_proxy)
        .env("HTTPS_PROXY", &dead_proxy)
        .env("NO_PROXY", "127.0.0.1")
        .env("no_proxy", "127.0.0.1");
    let second = Deployment::next_in_group(&first, {
        let install = bed.path().join("srv/app");
        let revision = Revision::new()
            .file("appspec.yml", appspec("site", &install, &[]))
            .file("site/index.html", "<p>direct</p>\n");
        bed.upload(BUCKET, "app/direct.tgz", &revision, BundleType::Tgz)
    });
    bed.emulator.add_deployment(second.clone());
    bed.start_agent_with(&agent_binary(), &bypassing);
    expect_success(&bed, &second);
    ensure!(
        bed,
        bed.emulator
            .calls_of(Operation::PutHostCommandComplete)
            .iter()
            .all(|c| c.status == 200),
        "every completion is accepted"
    );
    ensure_eq!(
        bed,
        proxy.requests().len(),
        proxied_so_far,
        "with NO_PROXY=127.0.0.1 nothing goes through a proxy"
    );
}
