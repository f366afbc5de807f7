use std::time::Duration;

use super::*;
use AttemptFailure::{BrokenOff, Status, Transport};

/// A real transport error, made without the network: a request whose URL
/// cannot even be built.
fn transport_error() -> reqwest::Error {
    reqwest::Client::new()
        .get("no scheme, no host")
        .build()
        .unwrap_err()
}

fn revision(bundle_type: BundleType, token: Option<&str>) -> GitHubRevision {
    GitHubRevision {
        account: "acme".into(),
        repository: "storefront".into(),
        commit_id: "1a2b3c4d5e6f".into(),
        bundle_type,
        access_token: token.map(str::to_string),
    }
}

#[test]
fn the_archive_url_names_tarball_or_zipball_by_bundle_type() {
    let cases = [
        (
            DEFAULT_GITHUB_ENDPOINT,
            BundleType::Tar,
            "https://api.github.com/repos/acme/storefront/tarball/1a2b3c4d5e6f",
        ),
        (
            DEFAULT_GITHUB_ENDPOINT,
            BundleType::Zip,
            "https://api.github.com/repos/acme/storefront/zipball/1a2b3c4d5e6f",
        ),
        // Anything but zip is a tarball, as in the official agent.
        (
            DEFAULT_GITHUB_ENDPOINT,
            BundleType::Tgz,
            "https://api.github.com/repos/acme/storefront/tarball/1a2b3c4d5e6f",
        ),
        (
            "http://127.0.0.1:8080/",
            BundleType::Tar,
            "http://127.0.0.1:8080/repos/acme/storefront/tarball/1a2b3c4d5e6f",
        ),
        (
            "https://github.example/api/v3",
            BundleType::Zip,
            "https://github.example/api/v3/repos/acme/storefront/zipball/1a2b3c4d5e6f",
        ),
    ];
    for (endpoint, bundle_type, expected) in cases {
        assert_eq!(
            archive_url(endpoint, &revision(bundle_type, None)),
            expected,
            "{endpoint} {bundle_type:?}"
        );
    }
}

#[test]
fn names_in_the_archive_url_cannot_change_its_route() {
    let mut odd = revision(BundleType::Tar, None);
    odd.account = "ac/me".into();
    odd.repository = "shop?x=1#y".into();
    odd.commit_id = "feature branch".into();
    assert_eq!(
        archive_url(DEFAULT_GITHUB_ENDPOINT, &odd),
        "https://api.github.com/repos/ac%2Fme/shop%3Fx%3D1%23y/tarball/feature%20branch"
    );
    let mut plain = revision(BundleType::Tar, None);
    plain.repository = "my_repo-2.0~rc".into();
    assert!(archive_url(DEFAULT_GITHUB_ENDPOINT, &plain).contains("/acme/my_repo-2.0~rc/"));
}

#[test]
fn server_errors_are_retried_after_10_30_and_90_seconds_then_given_up() {
    let s = Duration::from_secs;
    let cases: Vec<(Vec<AttemptFailure>, Option<Duration>)> = vec![
        (vec![], None),
        (vec![Status(500)], Some(s(10))),
        (vec![Status(500), Status(502)], Some(s(30))),
        (vec![Status(500), Status(502), Status(503)], Some(s(90))),
        (
            vec![Status(500), Status(502), Status(503), Status(500)],
            None,
        ),
        (vec![Status(429)], Some(s(10))),
        (vec![Transport(transport_error())], Some(s(10))),
        (vec![BrokenOff(transport_error())], Some(s(10))),
        // Client errors end it at once, whenever they come.
        (vec![Status(404)], None),
        (vec![Status(401)], None),
        (vec![Status(403)], None),
        (vec![Status(500), Status(404)], None),
    ];
    for (attempts, expected) in cases {
        assert_eq!(next_retry(&attempts), expected, "{attempts:?}");
    }
}

#[test]
fn the_failure_message_has_the_official_form() {
    let url = "https://api.github.com/repos/acme/storefront/tarball/1a2b3c4d5e6f";
    assert_eq!(
        download_failure_message(url, &[Status(500), Status(500), Status(500), Status(503)]),
        "Could not download bundle at 'https://api.github.com/repos/acme/storefront/tarball/1a2b3c4d5e6f' \
         after 3 retries. Server returned codes: 500, 500, 500, 503"
    );
    let cause = error_chain(&transport_error());
    assert!(cause.contains(": "), "the causes are shown: {cause}");
    assert_eq!(
        download_failure_message(
            url,
            &[
                Transport(transport_error()),
                BrokenOff(transport_error()),
                Status(502),
                Status(502)
            ]
        ),
        format!(
            "Could not download bundle at '{url}' after 3 retries. Server returned codes: \
             {cause}, the download broke off: {cause}, 502, 502"
        )
    );
    let not_found = download_failure_message(url, &[Status(404)]);
    assert!(
        not_found.starts_with(&format!(
            "Could not download bundle at '{url}' after 0 retries. Server returned codes: 404. "
        )),
        "{not_found}"
    );
    assert!(not_found.contains("HTTP 404 is not retried"), "{not_found}");
    let unauthorized = download_failure_message(url, &[Status(500), Status(401)]);
    assert!(
        unauthorized.contains("after 1 retries. Server returned codes: 500, 401. HTTP 401"),
        "{unauthorized}"
    );
}

#[test]
fn the_error_shows_the_message_and_never_the_token() {
    let revision = revision(BundleType::Tar, Some("ghp_SECRET"));
    let url = archive_url(DEFAULT_GITHUB_ENDPOINT, &revision);
    let error = GitHubError::Download {
        url: url.clone(),
        attempts: vec![Status(401)],
    };
    let text = error.to_string();
    assert!(text.starts_with(&format!("Could not download bundle at '{url}'")));
    assert!(!text.contains("ghp_SECRET") && !format!("{error:?}").contains("ghp_SECRET"));
    assert!(!format!("{revision:?}").contains("ghp_SECRET"));
}
