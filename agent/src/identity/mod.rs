//! Who this host is (its host identifier and region) and the credentials it signs
//! with. On-premises hosts read the registration file; the credentials of an IAM
//! session are re-read whenever the rotated file changes. EC2 instances read
//! instance metadata and sign with the instance profile, renewed before expiry.

pub mod imds;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use aws_credential_types::provider::ProvideCredentials;
use aws_credential_types::Credentials;

use crate::config::{AgentConfig, OnPremisesIdentity};
use imds::{Imds, ImdsV1};

/// Instance-profile credentials are renewed when they have less than this left.
const REFRESH_WINDOW: Duration = Duration::from_secs(5 * 60);
/// The time limit of one instance-metadata request.
const IMDS_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("this host has no on-premises registration ({} is missing or names no IAM ARN) and is not an EC2 instance: {source}. Register an on-premises host and write that file, or check that instance metadata is reachable", file.display())]
    NoIdentity {
        file: PathBuf,
        source: imds::ImdsError,
    },
    #[error("cannot get instance-profile credentials: {0}. Check that the instance has an IAM instance profile")]
    InstanceProfile(String),
    #[error("cannot read credentials from {}: {message}", file.display())]
    CredentialsFile { file: PathBuf, message: String },
    #[error("{0}")]
    Invalid(String),
}

/// The host's identity as the service knows it.
#[derive(Debug)]
pub struct HostIdentity {
    pub host_identifier: String,
    pub region: String,
    /// The DNS suffix when known from instance metadata; else derived from the region.
    pub domain: Option<String>,
    pub credentials: CredentialSource,
}

/// Where signing credentials come from.
pub enum CredentialSource {
    Static(Credentials),
    /// A shared-credentials file rotated by the registration tooling.
    SessionFile {
        file: PathBuf,
        cache: Mutex<Option<(SystemTime, Credentials)>>,
    },
    /// The EC2 instance profile, cached until it nears expiry.
    InstanceProfile {
        provider: aws_config::imds::credentials::ImdsCredentialsProvider,
        cache: tokio::sync::Mutex<Option<Credentials>>,
    },
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

impl CredentialSource {
    /// The credentials to sign the next request with.
    pub async fn current(&self) -> Result<Credentials, IdentityError> {
        match self {
            CredentialSource::InstanceProfile { provider, cache } => {
                let mut cache = cache.lock().await;
                if let Some(credentials) = cache.as_ref() {
                    let fresh = credentials
                        .expiry()
                        .and_then(|expiry| expiry.duration_since(SystemTime::now()).ok())
                        .map(|left| left > REFRESH_WINDOW)
                        .unwrap_or(true);
                    if fresh {
                        return Ok(credentials.clone());
                    }
                }
                let credentials = provider.provide_credentials().await.map_err(|e| {
                    IdentityError::InstanceProfile(crate::protocol::client::error_chain(&e))
                })?;
                *cache = Some(credentials.clone());
                Ok(credentials)
            }
            CredentialSource::Static(credentials) => Ok(credentials.clone()),
            CredentialSource::SessionFile { file, cache } => {
                let modified = std::fs::metadata(file)
                    .and_then(|m| m.modified())
                    .map_err(|e| IdentityError::CredentialsFile {
                        file: file.clone(),
                        message: e.to_string(),
                    })?;
                let mut cache = cache
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                if let Some((seen, credentials)) = cache.as_ref() {
                    if *seen == modified {
                        return Ok(credentials.clone());
                    }
                }
                let credentials = read_credentials_file(file)?;
                *cache = Some((modified, credentials.clone()));
                Ok(credentials)
            }
        }
    }
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
            })
        }
        None => {
            let v1 = if config.disable_imds_v1 {
                ImdsV1::Disabled
            } else {
                ImdsV1::Allowed
            };
            let imds = Imds::new(None, v1, IMDS_TIMEOUT).map_err(IdentityError::Invalid)?;
            let instance =
                imds.instance_identity()
                    .await
                    .map_err(|source| IdentityError::NoIdentity {
                        file: config.on_premises_config_file.clone(),
                        source,
                    })?;
            let source = instance_profile(imds.endpoint())?;
            source.current().await?;
            Ok(HostIdentity {
                host_identifier: instance.host_identifier(),
                region: instance.region,
                domain: Some(instance.domain),
                credentials: source,
            })
        }
    }
}

fn instance_profile(endpoint: &str) -> Result<CredentialSource, IdentityError> {
    use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https();
    let provider_config =
        aws_config::provider_config::ProviderConfig::default().with_http_client(http);
    let client = aws_config::imds::Client::builder()
        .configure(&provider_config)
        .endpoint(endpoint)
        .map_err(|e| {
            IdentityError::Invalid(format!("bad instance metadata endpoint {endpoint}: {e}"))
        })?
        .build();
    let provider = aws_config::imds::credentials::ImdsCredentialsProvider::builder()
        .configure(&provider_config)
        .imds_client(client)
        .build();
    Ok(CredentialSource::InstanceProfile {
        provider,
        cache: tokio::sync::Mutex::new(None),
    })
}

fn read_credentials_file(file: &Path) -> Result<Credentials, IdentityError> {
    let text = std::fs::read_to_string(file).map_err(|e| IdentityError::CredentialsFile {
        file: file.to_path_buf(),
        message: e.to_string(),
    })?;
    parse_shared_credentials(&text).map_err(|message| IdentityError::CredentialsFile {
        file: file.to_path_buf(),
        message,
    })
}

/// The `[default]` profile of a shared-credentials file (pure).
pub fn parse_shared_credentials(text: &str) -> Result<Credentials, String> {
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
        _ => Err(
            "the [default] profile needs aws_access_key_id and aws_secret_access_key".to_string(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_credentials_default_profile() {
        let c = parse_shared_credentials("[other]\naws_access_key_id = X\n[default]\naws_access_key_id = AK\naws_secret_access_key = SK\naws_session_token = TK\n").unwrap();
        assert_eq!(c.access_key_id(), "AK");
        assert_eq!(c.secret_access_key(), "SK");
        assert_eq!(c.session_token(), Some("TK"));
        assert!(parse_shared_credentials("[default]\naws_access_key_id = AK\n").is_err());
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
