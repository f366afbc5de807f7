//! The agent behind a real forward proxy (tinyproxy on loopback): with
//! `:proxy_uri:` every Commands call and every S3 request goes through the
//! proxy, as its log shows; without it, `HTTP(S)_PROXY` and `NO_PROXY` from
//! the environment decide, for both clients alike. Over HTTPS (the emulator
//! and S3 behind TLS relays with a certificate of the test CA, which the
//! agent trusts through `SSL_CERT_FILE`) both clients open CONNECT tunnels
//! through the proxy and nothing crosses it in clear.

use std::time::Duration;

use codedeploy_e2e::emulator::Operation;
use codedeploy_e2e::proxy::{ForwardProxy, ProxiedRequest, ProxyCredentials};
use codedeploy_e2e::tls_relay::TlsRelay;
use codedeploy_e2e::{AgentConfig, BundleType, Deployment, Revision, TestBed};

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

/// A proxy that demands Basic credentials, and those credentials.
fn start_proxy_requiring_credentials(bed: &TestBed) -> (ForwardProxy, ProxyCredentials) {
    let credentials = ProxyCredentials {
        user: "deployer".to_string(),
        password: "proxy-pass-4321".to_string(),
    };
    (start_proxy(bed, Some(&credentials)), credentials)
}

/// `:proxy_uri:` for `proxy`, with the credentials in it.
fn proxy_uri(proxy: &ForwardProxy, credentials: &ProxyCredentials) -> String {
    format!(
        "http://{}:{}@127.0.0.1:{}",
        credentials.user,
        credentials.password,
        proxy.port()
    )
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
    let (proxy, credentials) = start_proxy_requiring_credentials(&bed);
    // NO_PROXY=127.0.0.1 stays set by the harness: an explicit proxy ignores it.
    let config = bed
        .agent_config()
        .extra_line(&format!(":proxy_uri: {}", proxy_uri(&proxy, &credentials)));
    let deployment = deploy(&bed, "app/proxied.tgz");
    bed.start_agent_with(&agent_binary(), &config);
    expect_success(&bed, &deployment);
    ensure_command_cycle(&bed, &deployment);

    ensure_all_commands_calls_proxied(&bed, &proxy);
    let revision = &deployment.revision;
    let object_url = format!("{}/{}/{}", bed.s3.endpoint(), revision.bucket, revision.key);
    // A HEAD learns the object's size, then a GET fetches it.
    let downloads = proxied_to(&proxy.requests(), &object_url);
    ensure!(
        bed,
        downloads.iter().any(|r| r.method == "GET")
            && downloads
                .iter()
                .all(|r| r.method == "GET" || r.method == "HEAD"),
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

/// The emulator and S3, each behind a TLS relay on loopback.
struct HttpsEndpoints {
    commands: TlsRelay,
    s3: TlsRelay,
}

impl HttpsEndpoints {
    fn start(bed: &TestBed) -> HttpsEndpoints {
        let identity = bed
            .pki
            .loopback_server()
            .expect("the test CA issues a server certificate");
        let relay = |port| TlsRelay::start(&identity, port).expect("a TLS relay starts");
        HttpsEndpoints {
            commands: relay(bed.emulator.port()),
            s3: relay(bed.s3.port()),
        }
    }

    /// The agent's configuration for the HTTPS endpoints, trusting the
    /// test CA (and only it) through `SSL_CERT_FILE`.
    fn agent_config(&self, bed: &TestBed) -> AgentConfig {
        let mut config = bed.agent_config();
        let ca_file = config.ca_file.display().to_string();
        config = config.env("SSL_CERT_FILE", &ca_file);
        config.deploy_control_endpoint = self.commands.endpoint();
        config.s3_endpoint_override = self.s3.endpoint();
        config
    }
}

/// Everything went through the proxy as CONNECT tunnels to the two TLS
/// endpoints, each TLS session through a tunnel of its own, and no request
/// crossed the proxy in clear.
fn ensure_tls_tunnelled(bed: &TestBed, proxy: &ForwardProxy, endpoints: &HttpsEndpoints) {
    let tunnels_to = |relay: &TlsRelay| {
        let target = format!("127.0.0.1:{}", relay.port());
        proxy
            .requests()
            .iter()
            .filter(|r| r.method == "CONNECT" && r.url == target)
            .count()
    };
    let relays = [("Commands", &endpoints.commands), ("S3", &endpoints.s3)];
    // The proxy's log can trail the last handshake a little.
    let settled = wait_until(Duration::from_secs(10), || {
        relays
            .iter()
            .all(|(_, relay)| tunnels_to(relay) == relay.handshakes())
    });
    for (name, relay) in relays {
        ensure!(
            bed,
            settled && relay.handshakes() >= 1,
            "the {name} endpoint was reached over TLS through CONNECT tunnels only: \
             {} TLS sessions, {} tunnels\n{}",
            relay.handshakes(),
            tunnels_to(relay),
            proxy.log()
        );
    }
    let in_clear: Vec<_> = proxy
        .requests()
        .into_iter()
        .filter(|r| r.method != "CONNECT")
        .collect();
    ensure!(
        bed,
        in_clear.is_empty(),
        "no request crossed the proxy in clear: {in_clear:?}"
    );
}

#[test]
fn proxy_uri_tunnels_tls_to_the_commands_service_and_s3() {
    let bed = TestBed::start("proxy-uri-tls");
    let (proxy, credentials) = start_proxy_requiring_credentials(&bed);
    let endpoints = HttpsEndpoints::start(&bed);
    let config = endpoints
        .agent_config(&bed)
        .extra_line(&format!(":proxy_uri: {}", proxy_uri(&proxy, &credentials)));
    let deployment = deploy(&bed, "app/proxied-tls.tgz");
    bed.start_agent_with(&agent_binary(), &config);
    expect_success(&bed, &deployment);
    ensure_command_cycle(&bed, &deployment);
    ensure_tls_tunnelled(&bed, &proxy, &endpoints);
}

#[test]
fn https_proxy_tunnels_tls_to_the_commands_service_and_s3() {
    let bed = TestBed::start("https-proxy-tls");
    let proxy = start_proxy(&bed, None);
    let endpoints = HttpsEndpoints::start(&bed);
    // HTTP_PROXY leads nowhere: only HTTPS_PROXY can carry HTTPS requests.
    let dead_proxy = format!("http://127.0.0.1:{}", codedeploy_e2e::s3::free_port());
    let config = endpoints
        .agent_config(&bed)
        .env("HTTPS_PROXY", &proxy.url())
        .env("HTTP_PROXY", &dead_proxy)
        .env("NO_PROXY", "")
        .env("no_proxy", "");
    let deployment = deploy(&bed, "app/env-proxied-tls.tgz");
    bed.start_agent_with(&agent_binary(), &config);
    expect_success(&bed, &deployment);
    ensure_command_cycle(&bed, &deployment);
    ensure_tls_tunnelled(&bed, &proxy, &endpoints);
}
