//! Tests of the codedeploy-local command line: the event plans, the bundle location and type rules, and the defaults.

use super::*;

fn names(events: &[LifecycleEvent]) -> Vec<&str> {
    events.iter().map(LifecycleEvent::name).collect()
}

#[test]
fn event_plans() {
    type Plan<'a> = Result<&'a [&'a str], &'a str>;
    let cases: &[(Option<&str>, Plan<'_>)] = &[
        (
            None,
            Ok(&[
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
            ]),
        ),
        (
            Some("ApplicationStop,BeforeInstall,ApplicationStart"),
            Ok(&[
                "ApplicationStop",
                "DownloadBundle",
                "BeforeInstall",
                "Install",
                "ApplicationStart",
            ]),
        ),
        (
            Some("ValidateService"),
            Ok(&["DownloadBundle", "Install", "ValidateService"]),
        ),
        (
            Some("Warmup, ValidateService"),
            Ok(&["DownloadBundle", "Install", "Warmup", "ValidateService"]),
        ),
        (
            Some("DownloadBundle,Seed,Install,AfterInstall"),
            Ok(&["DownloadBundle", "Seed", "Install", "AfterInstall"]),
        ),
        (
            Some("Install,DownloadBundle"),
            Err("Install before DownloadBundle"),
        ),
        (
            Some("AfterInstall,Install"),
            Err("AfterInstall before Install"),
        ),
        (
            Some("DownloadBundle,ApplicationStart,Install"),
            Err("ApplicationStart before Install"),
        ),
        (
            Some("Seed,DownloadBundle"),
            Err("Seed before DownloadBundle"),
        ),
        (
            Some("Install,BeforeInstall"),
            Err("BeforeInstall after Install"),
        ),
        (Some("AllowTraffic"), Err("load balancer")),
        (
            Some("ApplicationStart,,ValidateService"),
            Err("empty event name"),
        ),
        (Some("ValidateService,ValidateService"), Err("twice")),
    ];
    for (written, expected) in cases {
        let got = plan_events(*written);
        match (expected, got) {
            (Ok(expected), Ok((events, _))) => {
                assert_eq!(names(&events), *expected, "{written:?}")
            }
            (Err(expected), Err(error)) => {
                assert!(error.0.contains(expected), "{written:?}: {error}")
            }
            (expected, got) => panic!("{written:?}: expected {expected:?}, got {got:?}"),
        }
    }
}

#[test]
fn custom_events_join_all_possible_events() {
    let (_, all) = plan_events(Some("Warmup,ValidateService")).unwrap();
    assert_eq!(all.len(), 12);
    assert_eq!(all.last().map(String::as_str), Some("Warmup"));
    assert!(all.iter().any(|e| e == "BeforeAllowTraffic"));
    assert!(!all.iter().any(|e| e == "AllowTraffic"));
}

fn kind_of(path: &Path) -> LocationKind {
    match path.to_str().unwrap_or("") {
        "/srv/app" => LocationKind::Directory {
            files: vec!["README".into(), "appspec.yml".into()],
        },
        "/srv/yaml-only" => LocationKind::Directory {
            files: vec!["appspec.yaml".into(), "index.html".into()],
        },
        "/srv/app.tgz" => LocationKind::File {
            sniffed: Some(BundleType::Tgz),
        },
        "/srv/app.bin" => LocationKind::File { sniffed: None },
        _ => LocationKind::Missing,
    }
}

fn resolved(raw: RawOptions) -> Result<LocalDeployment, OptionError> {
    resolve(&raw, Path::new("/srv"), kind_of)
}

fn raw(location: Option<&str>, bundle_type: Option<&str>) -> RawOptions {
    RawOptions {
        bundle_location: location.map(str::to_string),
        bundle_type: bundle_type.map(str::to_string),
        ..RawOptions::default()
    }
}

#[test]
fn bundle_locations_and_types() {
    let local_file = |path: &str, bundle_type| BundleSource::LocalFile {
        path: PathBuf::from(path),
        bundle_type,
    };
    let github = |bundle_type| BundleSource::GitHub {
        account: "acme".into(),
        repository: "shop".into(),
        commit: "abc123".into(),
        bundle_type,
    };
    let cases: Vec<(RawOptions, Result<BundleSource, &str>)> = vec![
        (
            RawOptions::default(),
            Err("the bundle location /srv does not exist"),
        ),
        (
            raw(Some("app"), None),
            Ok(BundleSource::LocalDirectory {
                path: PathBuf::from("/srv/app"),
            }),
        ),
        (
            raw(Some("/srv/app"), Some("directory")),
            Ok(BundleSource::LocalDirectory {
                path: PathBuf::from("/srv/app"),
            }),
        ),
        (
            raw(Some("/srv/app"), Some("tgz")),
            Err("is a directory, but --type is tgz"),
        ),
        (
            raw(None, Some("tgz")),
            Err("--type needs --bundle-location"),
        ),
        (
            raw(Some("app.tgz"), None),
            Ok(local_file("/srv/app.tgz", BundleType::Tgz)),
        ),
        (
            raw(Some("app.tgz"), Some("tgz")),
            Ok(local_file("/srv/app.tgz", BundleType::Tgz)),
        ),
        (
            raw(Some("app.tgz"), Some("zip")),
            Err("is a tgz archive, but --type is zip"),
        ),
        (
            raw(Some("app.tgz"), Some("directory")),
            Err("is a file, but --type is directory"),
        ),
        (
            raw(Some("app.bin"), Some("tar")),
            Ok(local_file("/srv/app.bin", BundleType::Tar)),
        ),
        (
            raw(Some("app.bin"), None),
            Err("cannot tell what kind of archive"),
        ),
        (
            raw(Some("app.tgz"), Some("rar")),
            Err("--type rar is not valid"),
        ),
        (raw(Some("missing"), None), Err("missing does not exist")),
        (
            raw(Some("yaml-only"), None),
            Err("give --appspec-filename appspec.yaml"),
        ),
        (
            raw(
                Some("s3://bucket/releases/app.tar.gz?versionId=v%2B1&etag=%22abc%22"),
                None,
            ),
            Ok(BundleSource::S3 {
                bucket: "bucket".into(),
                key: "releases/app.tar.gz".into(),
                bundle_type: BundleType::Tgz,
                version: Some("v+1".into()),
                etag: Some("\"abc\"".into()),
            }),
        ),
        (
            raw(Some("s3://bucket/app"), Some("zip")),
            Ok(BundleSource::S3 {
                bucket: "bucket".into(),
                key: "app".into(),
                bundle_type: BundleType::Zip,
                version: None,
                etag: None,
            }),
        ),
        (
            raw(Some("s3://bucket/app"), None),
            Err("cannot tell the bundle type"),
        ),
        (
            raw(Some("s3://bucket"), None),
            Err("must name a bucket and a key"),
        ),
        (
            raw(Some("s3://b/k.zip?region=x"), None),
            Err("unknown parameter region"),
        ),
        (
            raw(Some("s3://b/k.zip"), Some("directory")),
            Err("--type must be tar, tgz or zip"),
        ),
        (
            raw(
                Some("https://api.github.com/repos/acme/shop/tarball/abc123"),
                None,
            ),
            Ok(github(BundleType::Tar)),
        ),
        (
            raw(
                Some("https://api.github.com/repos/acme/shop/zipball/abc123"),
                None,
            ),
            Ok(github(BundleType::Zip)),
        ),
        (
            raw(
                Some("https://api.github.com/repos/acme/shop/tarball/abc123"),
                Some("tgz"),
            ),
            Ok(github(BundleType::Tar)),
        ),
        (
            raw(
                Some("https://api.github.com/repos/acme/shop/zipball/abc123"),
                Some("zip"),
            ),
            Ok(github(BundleType::Zip)),
        ),
        (
            raw(
                Some("https://api.github.com/repos/acme/shop/tarball/abc123"),
                Some("zip"),
            ),
            Err("asks GitHub for a tarball, but --type is zip; give --type tar"),
        ),
        (
            raw(
                Some("https://api.github.com/repos/acme/shop/zipball/abc123"),
                Some("directory"),
            ),
            Err("asks GitHub for a zipball, but --type is directory"),
        ),
        (
            raw(
                Some("https://api.github.com/repos/acme/shop/archive/abc123"),
                None,
            ),
            Err("not a GitHub revision URL"),
        ),
        (
            raw(
                Some("https://api.github.com/repos/acme/shop/tarball/"),
                None,
            ),
            Err("not a GitHub revision URL"),
        ),
        (
            raw(Some("https://api.github.com/repos/acme"), None),
            Err("not a GitHub revision URL"),
        ),
        (
            raw(Some("http://example.com/app.tgz"), None),
            Err("only local paths"),
        ),
    ];
    for (raw, expected) in cases {
        let got = resolved(raw.clone()).map(|d| d.source);
        match (&expected, &got) {
            (Ok(expected), Ok(got)) => assert_eq!(got, expected, "{raw:?}"),
            (Err(expected), Err(error)) => {
                assert!(error.0.contains(expected), "{raw:?}: {error}")
            }
            _ => panic!("{raw:?}: expected {expected:?}, got {got:?}"),
        }
    }
}

#[test]
fn defaults_and_other_options() {
    let deployment = resolved(raw(Some("app"), None)).unwrap();
    assert_eq!(
        deployment.deployment_group_id,
        "default-local-deployment-group"
    );
    assert_eq!(deployment.deployment_group_name, "LocalFleet");
    assert_eq!(deployment.application_name, "app");
    assert_eq!(deployment.appspec_filename, "appspec.yml");
    assert_eq!(deployment.file_exists_behavior, None);
    assert_eq!(deployment.events, default_events());

    let mut options = raw(Some("yaml-only"), None);
    options.appspec_filename = Some("appspec.yaml".into());
    options.file_exists_behavior = Some("overwrite".into());
    options.deployment_group = Some("g-123".into());
    options.application_name = Some("Shop".into());
    let deployment = resolved(options.clone()).unwrap();
    assert_eq!(
        deployment.file_exists_behavior,
        Some(FileExistsBehavior::Overwrite)
    );
    assert_eq!(deployment.deployment_group_id, "g-123");
    assert_eq!(deployment.application_name, "Shop");

    type Change = Box<dyn Fn(&mut RawOptions)>;
    let failures: Vec<(Change, &str)> = vec![
        (
            Box::new(|o| o.file_exists_behavior = Some("sometimes".into())),
            "--file-exists-behavior",
        ),
        (
            Box::new(|o| o.deployment_group = Some("../etc".into())),
            "cannot contain '/'",
        ),
        (
            Box::new(|o| o.deployment_group = Some(" ".into())),
            "--deployment-group cannot be empty",
        ),
        (
            Box::new(|o| o.appspec_filename = Some("conf/appspec.yml".into())),
            "without '/'",
        ),
    ];
    for (change, expected) in failures {
        let mut changed = options.clone();
        change(&mut changed);
        let error = resolved(changed).unwrap_err();
        assert!(error.0.contains(expected), "{error}");
    }
}

#[test]
fn deployment_ids_have_the_local_shape() {
    let mut rng = fastrand::Rng::with_seed(7);
    for _ in 0..50 {
        let id = deployment_id(&mut rng);
        let random = id
            .strip_prefix("d-")
            .and_then(|r| r.strip_suffix("-local"))
            .unwrap();
        assert_eq!(random.len(), 9, "{id}");
        assert!(
            random
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()),
            "{id}"
        );
    }
    assert_ne!(deployment_id(&mut rng), deployment_id(&mut rng));
}
