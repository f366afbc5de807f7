//! Who this host is (its host identifier and region) and the credentials it signs
//! with. On-premises hosts read the registration file; the credentials of an IAM
//! session are re-read whenever the rotated file changes. EC2 instances read
//! instance metadata and sign with the instance profile, renewed before expiry.
//! When to renew is decided by pure functions; secrets never reach a log line.

pub mod imds;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;

use crate::config::{AgentConfig, OnPremisesIdentity};
use imds::{Imds, ImdsV1};

/// Instance-profile credentials are renewed when they have less than this left.
pub const REFRESH_WINDOW: Duration = Duration::from_secs(5 * 60);
/// Inside the window, metadata may keep handing out the same credentials for a
/// while: ask again at most this often.
pub const RENEW_RETRY: Duration = Duration::from_secs(30);
/// A credentials file is re-read at least this often even when its metadata
/// looks unchanged (a rotation tool may preserve the modification time).
pub const SESSION_FILE_MAX_AGE: Duration = Duration::from_secs(5 * 60);
/// The time limit of one instance-metadata request.
const IMDS_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("cannot identify this host: there is no on-premises registration ({} is missing or names no IAM ARN), and as an EC2 instance: {source}. Register the on-premises host and write that file, or check that instance metadata is reachable", file.display())]
    NoIdentity {
        file: PathBuf,
        source: imds::ImdsError,
    },
    #[error("cannot get instance-profile credentials: {0}")]
    InstanceProfile(imds::ImdsError),
    #[error("cannot read credentials from {}: {source}", file.display())]
    CredentialsFileRead {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read credentials from {}: {source}", file.display())]
    CredentialsFile {
        file: PathBuf,
        #[source]
        source: IncompleteProfile,
    },
    #[error(transparent)]
    HttpClient(#[from] crate::http::ClientError),
}

/// A shared-credentials file whose `[default]` profile lacks a key.
#[derive(Debug, thiserror::Error)]
#[error("the [default] profile needs aws_access_key_id and aws_secret_access_key")]
pub struct IncompleteProfile;

/// The host's identity as the service knows it.
#[derive(Debug)]
pub struct HostIdentity {
    pub host_identifier: String,
    pub region: String,
    /// The DNS suffix when known from instance metadata; else derived from the region.
    pub domain: Option<String>,
    pub credentials: CredentialSource,
    /// Where the identity came from, for the start-up log line.
    pub origin: IdentityOrigin,
}

/// How the host was identified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentityOrigin {
    OnPremisesUser,
    OnPremisesSession,
    /// An EC2 instance signing with the named instance-profile role.
    Ec2 {
        partition: String,
        role: String,
    },
}

/// Where signing credentials come from.
pub enum CredentialSource {
    Static(Credentials),
    /// A shared-credentials file rotated by the registration tooling.
    SessionFile {
        file: PathBuf,
        cache: Mutex<Option<SessionFileCache>>,
    },
    /// The EC2 instance profile, cached until it nears expiry.
    InstanceProfile {
        imds: Imds,
        cache: tokio::sync::Mutex<Option<ProfileCache>>,
    },
}

/// The credentials read from a session file and what the file looked like then.
#[derive(Debug)]
pub struct SessionFileCache {
    stamp: FileStamp,
    read_at: SystemTime,
    credentials: Credentials,
}

/// What tells that a file was replaced or rewritten. The change time catches
/// an in-place rewrite that put the modification time back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    pub modified: SystemTime,
    pub changed: (i64, i64),
    pub len: u64,
    pub inode: u64,
}

/// Instance-profile credentials and when they were fetched.
#[derive(Debug)]
pub struct ProfileCache {
    credentials: Credentials,
    fetched_at: SystemTime,
    /// The service refused them: renew at the next use (keeping them if
    /// metadata has nothing newer).
    refused: bool,
}

impl std::fmt::Debug for CredentialSource {
    // Credentials never reach a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CredentialSource::Static(c) => write!(f, "Static({})", c.access_key_id()),
            CredentialSource::SessionFile { file, .. } => {
                write!(f, "SessionFile({})", file.display())
            }
            CredentialSource::InstanceProfile { .. } => f.write_str("InstanceProfile"),
        }
    }
}

/// What to do with cached instance-profile credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renewal {
    /// Fresh enough: sign with them.
    NotYet,
    /// Inside the refresh window: fetch new ones, but the old still sign if that fails.
    Due,
    /// Expired (or without a usable expiry margin): they must be replaced.
    Required,
}

/// Whether cached instance-profile credentials expiring at `expiry`, fetched
/// at `fetched_at`, should be renewed at `now` (pure).
pub fn renewal(expiry: Option<SystemTime>, fetched_at: SystemTime, now: SystemTime) -> Renewal {
    let Some(expiry) = expiry else {
        return Renewal::NotYet;
    };
    let left = expiry.duration_since(now).unwrap_or(Duration::ZERO);
    // A signature made in the last seconds may reach the service after expiry.
    if left < Duration::from_secs(15) {
        return Renewal::Required;
    }
    if left > REFRESH_WINDOW {
        return Renewal::NotYet;
    }
    let window_opened = expiry.checked_sub(REFRESH_WINDOW).unwrap_or(expiry);
    let fetched_before_window = fetched_at < window_opened;
    let last_try_is_old = now
        .duration_since(fetched_at)
        .is_ok_and(|since| since >= RENEW_RETRY);
    if fetched_before_window || last_try_is_old {
        Renewal::Due
    } else {
        Renewal::NotYet
    }
}

/// Whether a session credentials file must be read again (pure): it changed,
/// or the last read is old enough that an unnoticed rewrite is possible.
pub fn session_file_stale(
    seen: FileStamp,
    read_at: SystemTime,
    now: FileStamp,
    at: SystemTime,
) -> bool {
    seen != now
        || at
            .duration_since(read_at)
            .is_ok_and(|age| age >= SESSION_FILE_MAX_AGE)
}

impl CredentialSource {
    /// The credentials to sign the next request with.
    pub async fn current(&self) -> Result<Credentials, IdentityError> {
        match self {
            CredentialSource::Static(credentials) => Ok(credentials.clone()),
            CredentialSource::SessionFile { file, cache } => session_credentials(file, cache),
            CredentialSource::InstanceProfile { imds, cache } => {
                profile_credentials(imds, &mut *cache.lock().await).await
            }
        }
    }
}

/// The cached instance-profile credentials, renewed when [`renewal`] says so.
async fn profile_credentials(
    imds: &Imds,
    cache: &mut Option<ProfileCache>,
) -> Result<Credentials, IdentityError> {
    let now = SystemTime::now();
    let decision = match cache.as_ref() {
        None => Renewal::Required,
        Some(c) => match renewal(c.credentials.expiry(), c.fetched_at, now) {
            Renewal::NotYet if c.refused => Renewal::Due,
            decision => decision,
        },
    };
    if decision == Renewal::NotYet {
        if let Some(cached) = cache.as_ref() {
            return Ok(cached.credentials.clone());
        }
    }
    match imds.instance_profile_credentials().await {
        Ok((_role, credentials)) => {
            if let Some(old) = cache.as_ref() {
                if old.credentials.access_key_id() != credentials.access_key_id() {
                    tracing::info!(
                        "instance-profile credentials renewed (access key {})",
                        credentials.access_key_id()
                    );
                }
            }
            *cache = Some(ProfileCache {
                credentials: credentials.clone(),
                fetched_at: now,
                refused: false,
            });
            Ok(credentials)
        }
        Err(error) => match (decision, cache.as_mut()) {
            (Renewal::Due, Some(cached)) => {
                tracing::warn!(
                    "cannot renew instance-profile credentials yet, signing with the current ones until they expire: {error}"
                );
                // Count the failed try so that renewal waits RENEW_RETRY.
                cached.fetched_at = now;
                cached.refused = false;
                Ok(cached.credentials.clone())
            }
            _ => Err(IdentityError::InstanceProfile(error)),
        },
    }
}

/// The session credentials file's `[default]` keys, read again when
/// [`session_file_stale`] says so.
fn session_credentials(
    file: &Path,
    cache: &Mutex<Option<SessionFileCache>>,
) -> Result<Credentials, IdentityError> {
    let stamp = file_stamp(file).map_err(|source| IdentityError::CredentialsFileRead {
        file: file.to_path_buf(),
        source,
    })?;
    let now = SystemTime::now();
    let mut cache = cache
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(cached) = cache.as_ref() {
        if !session_file_stale(cached.stamp, cached.read_at, stamp, now) {
            return Ok(cached.credentials.clone());
        }
    }
    let credentials = read_credentials_file(file)?;
    if let Some(old) = cache.as_ref() {
        if old.credentials.access_key_id() != credentials.access_key_id() {
            tracing::info!(
                "{} changed: signing with access key {}",
                file.display(),
                credentials.access_key_id()
            );
        }
    }
    *cache = Some(SessionFileCache {
        stamp,
        read_at: now,
        credentials: credentials.clone(),
    });
    Ok(credentials)
}

impl CredentialSource {
    /// The service refused the current credentials: the next
    /// [`CredentialSource::current`] looks for new ones instead of trusting the
    /// cache (a rotated file, renewed instance-profile keys).
    pub async fn invalidate(&self) {
        match self {
            CredentialSource::Static(_) => {}
            CredentialSource::SessionFile { cache, .. } => {
                *cache
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner()) = None;
            }
            CredentialSource::InstanceProfile { cache, .. } => {
                if let Some(cached) = cache.lock().await.as_mut() {
                    cached.refused = true;
                }
            }
        }
    }
}

fn file_stamp(file: &Path) -> std::io::Result<FileStamp> {
    use std::os::unix::fs::MetadataExt;
    let metadata = std::fs::metadata(file)?;
    Ok(FileStamp {
        modified: metadata.modified()?,
        changed: (metadata.ctime(), metadata.ctime_nsec()),
        len: metadata.len(),
        inode: metadata.ino(),
    })
}

/// Resolves the host identity from the configuration: the on-premises file
/// when it names an ARN, else instance metadata.
pub async fn resolve(config: &AgentConfig) -> Result<HostIdentity, IdentityError> {
    let on_premises = crate::config::load_on_premises(&config.on_premises_config_file)?;
    match on_premises {
        Some(OnPremisesIdentity::IamUser {
            arn,
            access_key_id,
            secret_access_key,
            region,
        }) => Ok(HostIdentity {
            host_identifier: arn,
            region,
            domain: None,
            credentials: CredentialSource::Static(Credentials::new(
                access_key_id,
                secret_access_key,
                None,
                None,
                "on-premises-iam-user",
            )),
            origin: IdentityOrigin::OnPremisesUser,
        }),
        Some(OnPremisesIdentity::IamSession {
            arn,
            credentials_file,
            region,
        }) => {
            let source = CredentialSource::SessionFile {
                file: credentials_file,
                cache: Mutex::new(None),
            };
            // Fail at start-up, not at the first poll, when the file is unusable.
            source.current().await?;
            Ok(HostIdentity {
                host_identifier: arn,
                region,
                domain: None,
                credentials: source,
                origin: IdentityOrigin::OnPremisesSession,
            })
        }
        None => {
            let v1 = if config.disable_imds_v1 {
                ImdsV1::Disabled
            } else {
                ImdsV1::Allowed
            };
            let imds = Imds::new(None, v1, IMDS_TIMEOUT)?;
            let instance =
                imds.instance_identity()
                    .await
                    .map_err(|source| IdentityError::NoIdentity {
                        file: config.on_premises_config_file.clone(),
                        source,
                    })?;
            // Fail at start-up when the instance has no usable profile.
            let (role, credentials) = imds
                .instance_profile_credentials()
                .await
                .map_err(IdentityError::InstanceProfile)?;
            let source = CredentialSource::InstanceProfile {
                imds,
                cache: tokio::sync::Mutex::new(Some(ProfileCache {
                    credentials,
                    fetched_at: SystemTime::now(),
                    refused: false,
                })),
            };
            Ok(HostIdentity {
                host_identifier: instance.host_identifier(),
                region: instance.region,
                domain: Some(instance.domain),
                credentials: source,
                origin: IdentityOrigin::Ec2 {
                    partition: instance.partition,
                    role,
                },
            })
        }
    }
}

fn read_credentials_file(file: &Path) -> Result<Credentials, IdentityError> {
    let text =
        std::fs::read_to_string(file).map_err(|source| IdentityError::CredentialsFileRead {
            file: file.to_path_buf(),
            source,
        })?;
    parse_shared_credentials(&text).map_err(|source| IdentityError::CredentialsFile {
        file: file.to_path_buf(),
        source,
    })
}

/// The `[default]` profile of a shared-credentials file (pure).
pub fn parse_shared_credentials(text: &str) -> Result<Credentials, IncompleteProfile> {
    let mut in_default = false;
    let (mut key, mut secret, mut token) = (None, None, None);
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if line.starts_with('[') {
            in_default = line == "[default]";
            continue;
        }
        if !in_default {
            continue;
        }
        if let Some((name, value)) = line.split_once('=') {
            let value = value.trim().to_string();
            match name.trim() {
                "aws_access_key_id" => key = Some(value),
                "aws_secret_access_key" => secret = Some(value),
                "aws_session_token" => token = Some(value),
                _ => {}
            }
        }
    }
    match (key, secret) {
        (Some(key), Some(secret)) => Ok(Credentials::new(
            key,
            secret,
            token,
            None,
            "on-premises-iam-session",
        )),
        _ => Err(IncompleteProfile),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_profile_renewal_schedule() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let min = |m: u64| Duration::from_secs(60 * m);
        let s = Duration::from_secs;
        // (expiry after t0, fetched after t0, now after t0, decision)
        let cases = [
            (Some(min(60)), s(0), min(10), Renewal::NotYet),
            (Some(min(60)), s(0), min(54) + s(59), Renewal::NotYet),
            // The window opens at expiry - 5 min: the first look inside renews.
            (Some(min(60)), s(0), min(55) + s(1), Renewal::Due),
            // Renewed inside the window (same credentials came back): wait a bit.
            (Some(min(60)), min(56), min(56) + s(10), Renewal::NotYet),
            (Some(min(60)), min(56), min(56) + s(30), Renewal::Due),
            // Credentials handed out already inside the window renew every 30 s.
            (Some(min(4)), s(0), s(20), Renewal::NotYet),
            (Some(min(4)), s(0), s(31), Renewal::Due),
            (Some(min(60)), s(0), min(60) - s(10), Renewal::Required),
            (Some(min(60)), s(0), min(61), Renewal::Required),
            (None, s(0), min(600), Renewal::NotYet),
        ];
        for (expiry, fetched, now, expected) in cases {
            assert_eq!(
                renewal(expiry.map(|e| t0 + e), t0 + fetched, t0 + now),
                expected,
                "expiry {expiry:?} fetched {fetched:?} now {now:?}"
            );
        }
    }

    #[test]
    fn session_file_is_reread_on_change_or_age() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let stamp = FileStamp {
            modified: t,
            changed: (1_800_000_000, 0),
            len: 100,
            inode: 7,
        };
        let later = |secs| t + Duration::from_secs(secs);
        assert!(!session_file_stale(stamp, t, stamp, later(60)));
        assert!(session_file_stale(stamp, t, stamp, later(300)));
        for changed in [
            FileStamp {
                modified: later(1),
                ..stamp
            },
            FileStamp {
                changed: (1_800_000_001, 0),
                ..stamp
            },
            FileStamp { len: 101, ..stamp },
            FileStamp { inode: 8, ..stamp },
        ] {
            assert!(
                session_file_stale(stamp, t, changed, later(1)),
                "{changed:?}"
            );
        }
    }

    #[test]
    fn shared_credentials_default_profile() {
        let c = parse_shared_credentials("[other]\naws_access_key_id = X\n[default]\naws_access_key_id = AK\naws_secret_access_key = SK\naws_session_token = TK\n").unwrap();
        assert_eq!(c.access_key_id(), "AK");
        assert_eq!(c.secret_access_key(), "SK");
        assert_eq!(c.session_token(), Some("TK"));
        assert!(parse_shared_credentials("[default]\naws_access_key_id = AK\n").is_err());
    }

    #[test]
    fn refused_session_credentials_are_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("creds");
        std::fs::write(
            &file,
            "[default]\naws_access_key_id = A2\naws_secret_access_key = S\n",
        )
        .unwrap();
        // A cache that believes the file, as it is on disk now, holds A1.
        let cached = SessionFileCache {
            stamp: file_stamp(&file).unwrap(),
            read_at: SystemTime::now(),
            credentials: Credentials::new("A1", "S", None, None, "test"),
        };
        let source = CredentialSource::SessionFile {
            file: file.clone(),
            cache: Mutex::new(Some(cached)),
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let key = || {
            rt.block_on(source.current())
                .unwrap()
                .access_key_id()
                .to_string()
        };
        assert_eq!(key(), "A1", "an unchanged file is not read again");
        rt.block_on(source.invalidate());
        assert_eq!(key(), "A2", "refused credentials are read again");
    }

    #[test]
    fn session_file_is_reread_when_it_changes() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("creds");
        std::fs::write(
            &file,
            "[default]\naws_access_key_id = A1\naws_secret_access_key = S1\n",
        )
        .unwrap();
        let source = CredentialSource::SessionFile {
            file: file.clone(),
            cache: Mutex::new(None),
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        assert_eq!(rt.block_on(source.current()).unwrap().access_key_id(), "A1");
        std::fs::write(
            &file,
            "[default]\naws_access_key_id = A2\naws_secret_access_key = S2\n",
        )
        .unwrap();
        let later = SystemTime::now() + std::time::Duration::from_secs(5);
        std::fs::File::options()
            .write(true)
            .open(&file)
            .unwrap()
            .set_modified(later)
            .unwrap();
        assert_eq!(rt.block_on(source.current()).unwrap().access_key_id(), "A2");
    }
}
