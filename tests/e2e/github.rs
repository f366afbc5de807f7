//! GitHub revisions end to end, against a fake GitHub on 127.0.0.1 (the
//! agent's `:github_endpoint_override:`): a tarball fetched with the
//! deployment's token through the API's redirect and deployed from its
//! `<account>-<repo>-<sha>/` folder, an anonymous zipball, a server error
//! retried after 10 s, a 404 that fails DownloadBundle at once, and
//! `codedeploy-local` deploying a GitHub URL. The token must reach the API's
//! `Authorization` header and nothing else: no log line, no message, no file.
//!
//! As a safety net, `HTTPS_PROXY` points at a closed loopback port: a request
//! that missed the override (to api.github.com) would fail there instead of
//! leaving the machine.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

use codedeploy_e2e::github::{github_deployment, FakeGitHub, GitHubSource};
use codedeploy_e2e::{AgentConfig, BundleType, Deployment, Revision, TestBed};

use crate::support::*;

const TOKEN: &str = "ghp_e2eGitHubTokenNeverLogged0123456789";
const COMMIT: &str = "1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d";

/// `http://127.0.0.1:<a port nothing listens on>`.
fn closed_loopback_proxy() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port is free");
    let port = listener.local_addr().expect("a bound address").port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

/// The bed's agent configuration, fetching GitHub revisions from `github`.
fn agent_config(bed: &TestBed, github: &FakeGitHub) -> AgentConfig {
    bed.agent_config()
        .extra_line(&format!(":github_endpoint_override: {}", github.endpoint()))
        .env("HTTPS_PROXY", &closed_loopback_proxy())
}

fn source(repository: &str, bundle_type: Option<BundleType>, token: Option<&str>) -> GitHubSource {
    GitHubSource {
        account: "acme".to_string(),
        repository: repository.to_string(),
        commit: COMMIT.to_string(),
        bundle_type,
        token: token.map(str::to_string),
    }
}

/// A revision installing `site/` to `install`, whose BeforeInstall and
/// ValidateService hooks append `<event> <BUNDLE_COMMIT> <DEPLOYMENT_ID>` to
/// `hooks_log`, inside the top-level folder GitHub gives its archives.
fn github_revision(source: &GitHubSource, install: &Path, hooks_log: &Path) -> Revision {
    let hooks = [
        hook("BeforeInstall", "scripts/record.sh"),
        hook("ValidateService", "scripts/record.sh"),
    ];
    Revision::new()
        .file("appspec.yml", appspec("site", install, &hooks))
        .file(
            "site/index.html",
            format!("<h1>{}</h1>\n", source.repository),
        )
        .script("site/bin/serve", "#!/bin/sh\necho serving\n")
        .script(
            "scripts/record.sh",
            format!(
                "#!/bin/sh\necho \"$LIFECYCLE_EVENT $BUNDLE_COMMIT $DEPLOYMENT_ID\" >> '{}'\n",
                hooks_log.display()
            ),
        )
        .with_top_folder(&format!(
            "{}-{}-{}",
            source.account,
            source.repository,
            &source.commit[..7]
        ))
}

/// Publishes `revision` as `source`'s archive (a tgz for a tarball, as
/// GitHub's are, whatever the BundleType says; a zip for a zipball).
fn publish(github: &FakeGitHub, source: &GitHubSource, revision: &Revision) {
    let bytes = match source.bundle_type {
        Some(BundleType::Zip) => revision.to_zip(),
        _ => revision.to_tgz(),
    }
    .expect("an in-memory revision can be archived");
    github.publish(
        &source.account,
        &source.repository,
        &source.commit,
        source.format(),
        bytes,
    );
}

/// Files under `dir` whose content holds `needle`.
fn files_containing(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        match entry.file_type() {
            Ok(t) if t.is_dir() => found.extend(files_containing(&path, needle)),
            Ok(t) if t.is_file() => {
                let bytes = std::fs::read(&path).unwrap_or_default();
                if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                    found.push(path);
                }
            }
            _ => {}
        }
    }
    found
}

/// What the revision's hooks recorded for `deployment`.
fn expected_hooks(deployment: &Deployment) -> Vec<String> {
    ["BeforeInstall", "ValidateService"]
        .iter()
        .map(|event| format!("{event} {COMMIT} {}", deployment.deployment_id))
        .collect()
}

#[test]
fn github_tarball_is_fetched_with_the_token_through_the_redirect_and_deployed_from_its_top_folder()
{
    let bed = TestBed::start("github-tarball");
    let github = FakeGitHub::start();
    let install = bed.path().join("srv/storefront");
    let hooks_log = bed.path().join("hooks.log");
    let source = source("storefront", Some(BundleType::Tar), Some(TOKEN));
    publish(
        &github,
        &source,
        &github_revision(&source, &install, &hooks_log),
    );
    let deployment = github_deployment("Storefront", "Storefront-Fleet", &source);
    bed.emulator.add_deployment(deployment.clone());
    bed.start_agent_with(&agent_binary(), &agent_config(&bed, &github));
    expect_success(&bed, &deployment);
    ensure_command_cycle(&bed, &deployment);
    let report = github.report();

    ensure_eq!(
        bed,
        read(&install.join("index.html")),
        "<h1>storefront</h1>\n",
        "installed index.html\n{report}"
    );
    let archive = deployment_dir(&bed, &deployment).join("deployment-archive");
    ensure!(
        bed,
        archive.join("appspec.yml").is_file()
            && archive.join("site/bin/serve").is_file()
            && !archive.join("acme-storefront-1a2b3c4").exists(),
        "the archive's top-level folder is the revision root: {}",
        archive.display()
    );
    let bundle =
        std::fs::read(deployment_dir(&bed, &deployment).join("bundle.tar")).unwrap_or_default();
    ensure!(
        bed,
        bundle.starts_with(&[0x1f, 0x8b]),
        "bundle.tar keeps the gzip-compressed tarball as GitHub sent it"
    );
    ensure_eq!(
        bed,
        lines(&hooks_log),
        expected_hooks(&deployment),
        "hooks see BUNDLE_COMMIT"
    );

    let api = github.requests_to(&source.api_path());
    ensure!(
        bed,
        api.len() == 1
            && api[0].status == 302
            && api[0].authorization.as_deref() == Some(&format!("token {TOKEN}")),
        "one API request, with `Authorization: token <token>`, answered by a redirect\n{report}"
    );
    let archive_requests: Vec<_> = github
        .requests()
        .into_iter()
        .filter(|r| {
            r.path
                .starts_with("/codeload/acme/storefront/legacy.tar.gz/")
        })
        .collect();
    ensure!(
        bed,
        archive_requests.len() == 1 && archive_requests[0].status == 200,
        "the redirect was followed to the archive\n{report}"
    );

    ensure!(
        bed,
        !bed.agent_output().contains(TOKEN),
        "the token is in the agent's output"
    );
    let leaked = files_containing(&bed.agent_dir(), TOKEN);
    ensure!(
        bed,
        leaked.is_empty(),
        "the token was written to {leaked:?}"
    );
}

#[test]
fn anonymous_github_zipball_is_deployed_without_an_authorization_header() {
    let bed = TestBed::start("github-zipball");
    let github = FakeGitHub::start();
    let install = bed.path().join("srv/catalog");
    let hooks_log = bed.path().join("hooks.log");
    let source = source("catalog", Some(BundleType::Zip), None);
    publish(
        &github,
        &source,
        &github_revision(&source, &install, &hooks_log),
    );
    let deployment = github_deployment("Catalog", "Catalog-Fleet", &source);
    bed.emulator.add_deployment(deployment.clone());
    bed.start_agent_with(&agent_binary(), &agent_config(&bed, &github));
    expect_success(&bed, &deployment);
    let report = github.report();

    ensure_eq!(
        bed,
        read(&install.join("index.html")),
        "<h1>catalog</h1>\n",
        "installed index.html\n{report}"
    );
    ensure!(
        bed,
        std::fs::metadata(install.join("bin/serve"))
            .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777 == 0o755)
            .unwrap_or(false),
        "bin/serve keeps its mode from the zip"
    );
    ensure_eq!(
        bed,
        lines(&hooks_log),
        expected_hooks(&deployment),
        "hooks see BUNDLE_COMMIT"
    );
    let requests = github.requests();
    ensure!(
        bed,
        requests
            .iter()
            .any(|r| r.path == source.api_path() && r.status == 302)
            && requests.iter().all(|r| r.authorization.is_none()),
        "the zipball was asked for, with no Authorization header\n{report}"
    );
}

#[test]
fn github_server_error_is_retried_after_10_seconds() {
    let bed = TestBed::start("github-retry");
    let github = FakeGitHub::start();
    let install = bed.path().join("srv/billing");
    let hooks_log = bed.path().join("hooks.log");
    let source = source("billing", None, Some(TOKEN));
    publish(
        &github,
        &source,
        &github_revision(&source, &install, &hooks_log),
    );
    github.fail_next(&[500]);
    let deployment = github_deployment("Billing", "Billing-Fleet", &source);
    bed.emulator.add_deployment(deployment.clone());
    bed.start_agent_with(&agent_binary(), &agent_config(&bed, &github));
    expect_success(&bed, &deployment);
    let report = github.report();

    let api = github.requests_to(&source.api_path());
    ensure!(
        bed,
        api.len() == 2 && api[0].status == 500 && api[1].status == 302,
        "a 500, then the redirect\n{report}"
    );
    let wait = api[1].at - api[0].at;
    ensure!(
        bed,
        wait >= Duration::from_millis(9_900) && wait < Duration::from_secs(20),
        "the retry came {wait:?} after the 500, not 10 s\n{report}"
    );
    ensure_eq!(
        bed,
        read(&install.join("index.html")),
        "<h1>billing</h1>\n",
        "installed index.html"
    );
    let output = bed.agent_output();
    ensure!(
        bed,
        output.contains("failed (500); trying again in 10 s") && !output.contains(TOKEN),
        "the retry is logged, without the token"
    );
}

#[test]
fn github_404_fails_download_bundle_at_once_naming_the_url_and_code_without_the_token() {
    let bed = TestBed::start("github-404");
    let github = FakeGitHub::start();
    // Nothing published: the API answers 404.
    let source = source("missing", Some(BundleType::Tar), Some(TOKEN));
    let deployment = github_deployment("Missing", "Missing-Fleet", &source);
    bed.emulator.add_deployment(deployment.clone());
    bed.start_agent_with(&agent_binary(), &agent_config(&bed, &github));
    let failed = expect_failure_at(&bed, &deployment, "DownloadBundle");
    let report = github.report();

    let message = failed
        .diagnostics()
        .map(|d| d.message.clone())
        .unwrap_or_default();
    let url = format!("{}{}", github.endpoint(), source.api_path());
    ensure!(
        bed,
        message.starts_with(&format!(
            "Could not download bundle at '{url}' after 0 retries. Server returned codes: 404"
        )),
        "DownloadBundle's message: {message}"
    );
    ensure!(
        bed,
        !message.contains(TOKEN) && !bed.agent_output().contains(TOKEN),
        "the token is in the message or the agent's output"
    );
    ensure_eq!(
        bed,
        github.requests_to(&source.api_path()).len(),
        1,
        "a 404 is not retried\n{report}"
    );
    let dir = deployment_dir(&bed, &deployment);
    let leftovers: Vec<String> = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n != "logs")
                .collect()
        })
        .unwrap_or_default();
    ensure!(
        bed,
        leftovers.is_empty(),
        "no bundle.tar, partial download or archive is left: {leftovers:?}"
    );
}

#[test]
fn codedeploy_local_deploys_a_github_zipball_url_anonymously() {
    let github = FakeGitHub::start();
    let dir = tempfile::Builder::new()
        .prefix("codedeploy-local-github-")
        .tempdir()
        .expect("a temporary directory");
    let install = dir.path().join("srv/cli");
    let hooks_log = dir.path().join("hooks.log");
    let source = source("cli", Some(BundleType::Zip), None);
    publish(
        &github,
        &source,
        &github_revision(&source, &install, &hooks_log),
    );
    let config = dir.path().join("codedeployagent.yml");
    std::fs::write(
        &config,
        format!(
            "---\n:root_dir: {}\n:log_dir: {}\n:github_endpoint_override: {}\n",
            dir.path().join("deployment-root").display(),
            dir.path().join("log").display(),
            github.endpoint()
        ),
    )
    .expect("the configuration file can be written");
    let location = format!("https://api.github.com/repos/acme/cli/zipball/{COMMIT}");
    let proxy = closed_loopback_proxy();
    let run = crate::local::run_local(
        dir.path(),
        &["-c", &config.display().to_string(), "-l", &location],
        &[
            ("HTTPS_PROXY", proxy.as_str()),
            ("NO_PROXY", "127.0.0.1,localhost"),
        ],
    );
    let describe = || format!("{}{}", run.describe(), github.report());
    assert!(
        run.code == Some(0),
        "codedeploy-local should succeed\n{}",
        describe()
    );
    assert_eq!(
        read(&install.join("index.html")),
        "<h1>cli</h1>\n",
        "{}",
        describe()
    );
    let hooks = lines(&hooks_log);
    assert!(
        hooks.len() == 2
            && hooks
                .iter()
                .all(|l| l.split(' ').nth(1) == Some(COMMIT) && l.ends_with("-local")),
        "hooks see BUNDLE_COMMIT: {hooks:?}\n{}",
        describe()
    );
    let requests = github.requests();
    assert!(
        requests.iter().any(|r| r.path == source.api_path())
            && requests.iter().all(|r| r.authorization.is_none()),
        "the zipball URL's commit was fetched anonymously\n{}",
        describe()
    );
}
