//! `codedeploy-local`'s options, checked and turned into a [`LocalDeployment`]
//! (CONFIG.md "codedeploy-local", LIFECYCLE.md "Local CLI"). Pure: what the
//! bundle location is on disk arrives as a [`LocationKind`] the caller looked
//! up, so every rule here is tested by tables.

use std::path::{Path, PathBuf};

use crate::appspec::FileExistsBehavior;
use crate::deployment_spec::BundleType;
use crate::event::LifecycleEvent;

pub const DEFAULT_DEPLOYMENT_GROUP: &str = "default-local-deployment-group";
pub const DEFAULT_DEPLOYMENT_GROUP_NAME: &str = "LocalFleet";
pub const DEFAULT_APPSPEC_FILENAME: &str = "appspec.yml";

/// The options as typed on the command line, before any check.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawOptions {
    pub bundle_location: Option<String>,
    pub bundle_type: Option<String>,
    pub file_exists_behavior: Option<String>,
    pub deployment_group: Option<String>,
    pub deployment_group_name: Option<String>,
    pub application_name: Option<String>,
    pub events: Option<String>,
    pub appspec_filename: Option<String>,
}

/// What a local bundle location is on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocationKind {
    Missing,
    /// A file, and the archive type its first bytes show (`None`: not recognised).
    File {
        sniffed: Option<BundleType>,
    },
    /// A directory, and the names of the regular files at its top.
    Directory {
        files: Vec<String>,
    },
}

/// Where the revision comes from, once checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BundleSource {
    LocalFile {
        path: PathBuf,
        bundle_type: BundleType,
    },
    LocalDirectory {
        path: PathBuf,
    },
    S3 {
        bucket: String,
        key: String,
        bundle_type: BundleType,
        version: Option<String>,
        etag: Option<String>,
    },
    /// A commit's archive from the GitHub API, fetched anonymously (the local
    /// CLI has no token to give); `Tar` for a tarball URL, `Zip` for a zipball.
    GitHub {
        account: String,
        repository: String,
        commit: String,
        bundle_type: BundleType,
    },
}

/// A checked local deployment: everything the spec is built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalDeployment {
    pub source: BundleSource,
    /// `None` leaves the choice to the appspec, then DISALLOW.
    pub file_exists_behavior: Option<FileExistsBehavior>,
    pub deployment_group_id: String,
    pub deployment_group_name: String,
    pub application_name: String,
    pub appspec_filename: String,
    /// In the order they run; DownloadBundle and Install always among them.
    pub events: Vec<LifecycleEvent>,
    /// The default events plus the custom ones asked for.
    pub all_possible_events: Vec<String>,
}

/// Why the options cannot be used; the message says what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct OptionError(pub String);

fn invalid(message: impl Into<String>) -> OptionError {
    OptionError(message.into())
}

/// The events a local deployment runs when `--events` is not given.
pub fn default_events() -> Vec<LifecycleEvent> {
    LifecycleEvent::STANDARD
        .iter()
        .filter(|e| !e.is_reserved())
        .cloned()
        .collect()
}

/// Checks the options. `cwd` makes a relative location absolute; `inspect`
/// tells what a local path is.
pub fn resolve(
    raw: &RawOptions,
    cwd: &Path,
    inspect: impl Fn(&Path) -> LocationKind,
) -> Result<LocalDeployment, OptionError> {
    if raw.bundle_type.is_some() && raw.bundle_location.is_none() {
        return Err(invalid(
            "--type needs --bundle-location: without a location the current directory is deployed as a directory",
        ));
    }
    let bundle_type = raw.bundle_type.as_deref().map(parse_type).transpose()?;
    let appspec_filename = non_empty(raw.appspec_filename.as_deref(), "--appspec-filename")?
        .unwrap_or(DEFAULT_APPSPEC_FILENAME)
        .to_string();
    if appspec_filename.contains('/') {
        return Err(invalid(format!(
            "--appspec-filename {appspec_filename} must be a file name at the top of the revision, without '/'"
        )));
    }
    let written_location = raw
        .bundle_location
        .clone()
        .unwrap_or_else(|| cwd.display().to_string());
    let source = match parse_location(&written_location)? {
        Location::S3 {
            bucket,
            key,
            version,
            etag,
        } => {
            let bundle_type = match bundle_type {
                Some(BundleType::Directory) => {
                    return Err(invalid(format!(
                        "{written_location} is an S3 object: --type must be tar, tgz or zip"
                    )))
                }
                Some(t) => t,
                None => type_from_name(&key).ok_or_else(|| {
                    invalid(format!(
                        "cannot tell the bundle type of {written_location} from its name; give --type tar, tgz or zip"
                    ))
                })?,
            };
            BundleSource::S3 {
                bucket,
                key,
                bundle_type,
                version,
                etag,
            }
        }
        Location::GitHub {
            account,
            repository,
            commit,
            bundle_type: asked,
        } => {
            // The URL says which archive comes; --type may only agree with it.
            match (asked, bundle_type) {
                (_, None) => {}
                (BundleType::Tar, Some(BundleType::Tar | BundleType::Tgz)) => {}
                (BundleType::Zip, Some(BundleType::Zip)) => {}
                (_, Some(given)) => {
                    return Err(invalid(format!(
                        "{written_location} asks GitHub for a {}, but --type is {}; give --type {} or leave it out",
                        if asked == BundleType::Zip { "zipball" } else { "tarball" },
                        given.name(),
                        if asked == BundleType::Zip { "zip" } else { "tar" },
                    )))
                }
            }
            BundleSource::GitHub {
                account,
                repository,
                commit,
                bundle_type: asked,
            }
        }
        Location::Path(path) => {
            let path = cwd.join(path);
            local_source(
                &path,
                &written_location,
                bundle_type,
                &appspec_filename,
                &inspect,
            )?
        }
    };
    let deployment_group_id = non_empty(raw.deployment_group.as_deref(), "--deployment-group")?
        .unwrap_or(DEFAULT_DEPLOYMENT_GROUP)
        .to_string();
    if deployment_group_id.contains('/')
        || deployment_group_id == "."
        || deployment_group_id == ".."
    {
        return Err(invalid(format!(
            "--deployment-group {deployment_group_id} names a folder under the deployment root: it cannot contain '/' or be '.' or '..'"
        )));
    }
    let file_exists_behavior = raw
        .file_exists_behavior
        .as_deref()
        .map(|b| b.trim().to_uppercase().parse::<FileExistsBehavior>())
        .transpose()
        .map_err(|e| invalid(format!("--file-exists-behavior: {e}")))?;
    let (events, all_possible_events) = plan_events(raw.events.as_deref())?;
    Ok(LocalDeployment {
        source,
        file_exists_behavior,
        deployment_group_id,
        deployment_group_name: non_empty(
            raw.deployment_group_name.as_deref(),
            "--deployment-group-name",
        )?
        .unwrap_or(DEFAULT_DEPLOYMENT_GROUP_NAME)
        .to_string(),
        application_name: non_empty(raw.application_name.as_deref(), "--application-name")?
            .map(str::to_string)
            .unwrap_or(written_location),
        appspec_filename,
        events,
        all_possible_events,
    })
}

fn non_empty<'a>(value: Option<&'a str>, option: &str) -> Result<Option<&'a str>, OptionError> {
    match value.map(str::trim) {
        Some("") => Err(invalid(format!("{option} cannot be empty"))),
        other => Ok(other),
    }
}

fn parse_type(written: &str) -> Result<BundleType, OptionError> {
    match written.trim() {
        "tar" => Ok(BundleType::Tar),
        "tgz" => Ok(BundleType::Tgz),
        "zip" => Ok(BundleType::Zip),
        "directory" => Ok(BundleType::Directory),
        other => Err(invalid(format!(
            "--type {other} is not valid; use tar, tgz, zip or directory"
        ))),
    }
}

fn local_source(
    path: &Path,
    written: &str,
    bundle_type: Option<BundleType>,
    appspec_filename: &str,
    inspect: &impl Fn(&Path) -> LocationKind,
) -> Result<BundleSource, OptionError> {
    match (inspect(path), bundle_type) {
        (LocationKind::Missing, _) => Err(invalid(format!(
            "the bundle location {written} does not exist"
        ))),
        (LocationKind::Directory { .. }, Some(t)) if t != BundleType::Directory => {
            Err(invalid(format!(
                "{written} is a directory, but --type is {}; use --type directory (or leave --type out)",
                t.name()
            )))
        }
        (LocationKind::Directory { files }, _) => {
            if files.iter().any(|a| a == appspec_filename) {
                return Ok(BundleSource::LocalDirectory {
                    path: path.to_path_buf(),
                });
            }
            let other_appspec = files
                .iter()
                .find(|f| f.to_lowercase().contains("appspec"));
            let hint = match other_appspec {
                Some(other) => format!(" (it has {other}: give --appspec-filename {other})"),
                None => String::new(),
            };
            Err(invalid(format!(
                "the bundle directory {written} has no {appspec_filename} at its top{hint}"
            )))
        }
        (LocationKind::File { .. }, Some(BundleType::Directory)) => Err(invalid(format!(
            "{written} is a file, but --type is directory; give the archive's type: tar, tgz or zip"
        ))),
        (LocationKind::File { sniffed }, Some(given)) => match sniffed {
            Some(actual) if actual != given => Err(invalid(format!(
                "{written} is a {} archive, but --type is {}",
                actual.name(),
                given.name()
            ))),
            _ => Ok(BundleSource::LocalFile {
                path: path.to_path_buf(),
                bundle_type: given,
            }),
        },
        (LocationKind::File { sniffed }, None) => sniffed
            .map(|bundle_type| BundleSource::LocalFile {
                path: path.to_path_buf(),
                bundle_type,
            })
            .ok_or_else(|| {
                invalid(format!(
                    "cannot tell what kind of archive {written} is; give --type tar, tgz or zip"
                ))
            }),
    }
}

/// A bundle location as written.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Location {
    S3 {
        bucket: String,
        key: String,
        version: Option<String>,
        etag: Option<String>,
    },
    /// `https://api.github.com/repos/<account>/<repository>/<tarball|zipball>/<commit>`;
    /// `bundle_type` is `Tar` for a tarball, `Zip` for a zipball.
    GitHub {
        account: String,
        repository: String,
        commit: String,
        bundle_type: BundleType,
    },
    Path(PathBuf),
}

fn parse_location(written: &str) -> Result<Location, OptionError> {
    let written = written.trim();
    if let Some(rest) = written.strip_prefix("s3://") {
        return parse_s3(written, rest);
    }
    if let Some(rest) = written.strip_prefix("https://api.github.com/repos/") {
        let parts: Vec<&str> = rest.split('/').collect();
        return match parts.as_slice() {
            [account, repository, format @ ("tarball" | "zipball"), commit]
                if !account.is_empty() && !repository.is_empty() && !commit.is_empty() =>
            {
                Ok(Location::GitHub {
                    account: account.to_string(),
                    repository: repository.to_string(),
                    commit: commit.to_string(),
                    bundle_type: if *format == "zipball" {
                        BundleType::Zip
                    } else {
                        BundleType::Tar
                    },
                })
            }
            _ => Err(invalid(format!(
                "{written} is not a GitHub revision URL; the form is https://api.github.com/repos/<account>/<repository>/tarball|zipball/<commit>"
            ))),
        };
    }
    if written.starts_with("http://") || written.starts_with("https://") {
        return Err(invalid(format!(
            "{written}: only local paths, s3://bucket/key and https://api.github.com/repos/... locations are supported"
        )));
    }
    Ok(Location::Path(PathBuf::from(written)))
}

fn parse_s3(written: &str, rest: &str) -> Result<Location, OptionError> {
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (bucket, key) = path
        .split_once('/')
        .filter(|(b, k)| !b.is_empty() && !k.is_empty())
        .ok_or_else(|| {
            invalid(format!(
                "{written} must name a bucket and a key: s3://bucket/key"
            ))
        })?;
    let (mut version, mut etag) = (None, None);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_decode(value)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| invalid(format!("{written}: {name} has no usable value")))?;
        match name {
            "versionId" => version = Some(value),
            "etag" => etag = Some(value),
            other => {
                return Err(invalid(format!(
                    "{written}: unknown parameter {other}; only versionId and etag are understood"
                )))
            }
        }
    }
    Ok(Location::S3 {
        bucket: bucket.to_string(),
        key: key.to_string(),
        version,
        etag,
    })
}

/// `%XX` escapes decoded; `None` for a broken escape or non-UTF-8 result.
fn percent_decode(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = value.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The archive type an object key's extension names.
fn type_from_name(name: &str) -> Option<BundleType> {
    let lower = name.to_ascii_lowercase();
    if lower.ends_with(".tar.gz") || lower.ends_with(".tgz") {
        Some(BundleType::Tgz)
    } else if lower.ends_with(".tar") {
        Some(BundleType::Tar)
    } else if lower.ends_with(".zip") {
        Some(BundleType::Zip)
    } else {
        None
    }
}

/// The events to run, in order, and the AllPossibleLifecycleEvents list.
///
/// The order given is kept. DownloadBundle, when not listed, goes before the
/// first event that needs the new revision (everything but ApplicationStop
/// and the block-traffic events, which run from the installed revision);
/// Install, when not listed, goes right after DownloadBundle (after
/// BeforeInstall when that follows it). Events that need the new revision
/// cannot come before DownloadBundle, and events that need it installed
/// cannot come before Install.
pub fn plan_events(
    written: Option<&str>,
) -> Result<(Vec<LifecycleEvent>, Vec<String>), OptionError> {
    let defaults = default_events();
    let all_default: Vec<String> = defaults.iter().map(|e| e.name().to_string()).collect();
    let Some(written) = written else {
        return Ok((defaults, all_default));
    };
    let mut events: Vec<LifecycleEvent> = Vec::new();
    for name in written.split(',').map(str::trim) {
        if name.is_empty() {
            return Err(invalid(format!(
                "--events {written} has an empty event name"
            )));
        }
        let event = LifecycleEvent::from_name(name);
        if event.is_reserved() {
            return Err(invalid(format!(
                "{name} is performed by CodeDeploy with a load balancer and cannot run locally"
            )));
        }
        if events.contains(&event) {
            return Err(invalid(format!("--events lists {name} twice")));
        }
        events.push(event);
    }
    let runs_from_installed_revision = |e: &LifecycleEvent| {
        matches!(
            e,
            LifecycleEvent::ApplicationStop
                | LifecycleEvent::BeforeBlockTraffic
                | LifecycleEvent::AfterBlockTraffic
        )
    };
    if !events.contains(&LifecycleEvent::DownloadBundle) {
        let at = events
            .iter()
            .position(|e| !runs_from_installed_revision(e))
            .unwrap_or(events.len());
        events.insert(at, LifecycleEvent::DownloadBundle);
    }
    let download = position(&events, &LifecycleEvent::DownloadBundle);
    if !events.contains(&LifecycleEvent::Install) {
        let mut at = download + 1;
        if events.get(at) == Some(&LifecycleEvent::BeforeInstall) {
            at += 1;
        }
        events.insert(at, LifecycleEvent::Install);
    }
    let install = position(&events, &LifecycleEvent::Install);
    if install < download {
        return Err(invalid("--events lists Install before DownloadBundle"));
    }
    for (index, event) in events.iter().enumerate() {
        let needs_installed = matches!(
            event,
            LifecycleEvent::AfterInstall
                | LifecycleEvent::ApplicationStart
                | LifecycleEvent::ValidateService
                | LifecycleEvent::BeforeAllowTraffic
                | LifecycleEvent::AfterAllowTraffic
        );
        if index < download && !runs_from_installed_revision(event) {
            return Err(invalid(format!(
                "--events lists {event} before DownloadBundle, but it runs from the new revision: move it after DownloadBundle"
            )));
        }
        if index < install && needs_installed {
            return Err(invalid(format!(
                "--events lists {event} before Install: move it after Install"
            )));
        }
        if index > install && *event == LifecycleEvent::BeforeInstall {
            return Err(invalid(
                "--events lists BeforeInstall after Install: move it before Install",
            ));
        }
    }
    let mut all_possible = all_default;
    for event in &events {
        if matches!(event, LifecycleEvent::Custom(_)) {
            all_possible.push(event.name().to_string());
        }
    }
    Ok((events, all_possible))
}

fn position(events: &[LifecycleEvent], event: &LifecycleEvent) -> usize {
    events
        .iter()
        .position(|e| e == event)
        .expect("the event was inserted just before when missing")
}

/// `d-` + 9 random upper-case letters or digits + `-local`.
pub fn deployment_id(rng: &mut fastrand::Rng) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let random: String = (0..9)
        .map(|_| char::from(ALPHABET[rng.usize(..ALPHABET.len())]))
        .collect();
    format!("d-{random}-local")
}

#[cfg(test)]
mod tests {
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
}
