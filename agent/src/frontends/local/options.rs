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
mod tests;
