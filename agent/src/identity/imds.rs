//! EC2 instance metadata: the instance identity document, partition and domain,
//! and the instance profile's credentials, read with IMDSv2 tokens (IMDSv1 only
//! as a fallback the operator can forbid). Never goes through a proxy; every
//! request is bounded in time and retried twice. Parsing what metadata answers
//! is pure and lives beside the client.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use serde::Deserialize;
use tokio::sync::Mutex;

use crate::http::{ClientError, ClientSettings, Proxying, Redirects};

/// The metadata service address; `AWS_EC2_METADATA_SERVICE_ENDPOINT` overrides it.
pub const DEFAULT_ENDPOINT: &str = "http://169.254.169.254";
const TOKEN_TTL_SECONDS: &str = "21600";
/// Waits before the second and third attempt of a request.
const RETRY_DELAYS: [Duration; 2] = [Duration::from_secs(1), Duration::from_secs(2)];
/// Lists the instance profile's role; the role's credentials are below it.
const SECURITY_CREDENTIALS: &str = "/latest/meta-data/iam/security-credentials/";

#[derive(Debug, thiserror::Error)]
pub enum ImdsError {
    #[error("instance metadata at {endpoint} did not answer {path}: {detail}")]
    Unreachable {
        endpoint: String,
        path: String,
        detail: String,
    },
    #[error(
        "instance metadata refused an IMDSv2 token ({detail}) and :disable_imds_v1: forbids IMDSv1; enable IMDSv2 tokens for this instance (metadata options, hop limit) or set :disable_imds_v1: false"
    )]
    TokenRefused { detail: String },
    #[error("this EC2 instance has no IAM instance profile (instance metadata lists no role under {SECURITY_CREDENTIALS}); attach one that allows CodeDeploy")]
    NoInstanceProfile,
    #[error("instance metadata answered {path} with HTTP {status}")]
    Status { path: String, status: u16 },
    #[error("instance metadata {path} is not what the agent expects: {source}")]
    Invalid {
        path: String,
        #[source]
        source: DocumentError,
    },
}

/// What is wrong with a document instance metadata answered. A credentials
/// document is never quoted, nor is serde_json's message about it kept (it can
/// quote the value it choked on, a secret): only where it broke.
#[derive(Debug, thiserror::Error)]
pub enum DocumentError {
    #[error(transparent)]
    IdentityJson(serde_json::Error),
    #[error("{name} '{value}' is not valid")]
    IdentityField { name: &'static str, value: String },
    #[error("not a credentials document (line {line}, column {column})")]
    CredentialsJson { line: usize, column: usize },
    #[error("the role's credentials are not available (Code {code})")]
    CredentialsUnavailable { code: String },
    #[error("AccessKeyId and SecretAccessKey must not be empty")]
    EmptyKeys,
    #[error("Expiration '{written}' is not an RFC 3339 time: {source}")]
    Expiration {
        written: String,
        #[source]
        source: chrono::ParseError,
    },
}

/// Whether IMDSv1 (no token) may be used when a token cannot be had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImdsV1 {
    Allowed,
    Disabled,
}

#[derive(Debug)]
pub struct Imds {
    http: reqwest::Client,
    endpoint: String,
    v1: ImdsV1,
    token: Mutex<Option<String>>,
    timeout: Duration,
    /// The IMDSv1 fallback is a warning once, then a debug line.
    warned_v1: AtomicBool,
}

/// What instance metadata tells about this instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceIdentity {
    pub region: String,
    pub account_id: String,
    pub instance_id: String,
    pub partition: String,
    pub domain: String,
}

impl InstanceIdentity {
    /// `arn:<partition>:ec2:<region>:<account>:instance/<instance id>`.
    pub fn host_identifier(&self) -> String {
        format!(
            "arn:{}:ec2:{}:{}:instance/{}",
            self.partition, self.region, self.account_id, self.instance_id
        )
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct IdentityDocument {
    region: String,
    account_id: String,
    instance_id: String,
}

/// The region, account and instance of an identity document (pure).
pub fn parse_identity_document(json: &str) -> Result<(String, String, String), DocumentError> {
    let doc: IdentityDocument = serde_json::from_str(json).map_err(DocumentError::IdentityJson)?;
    for (name, value) in [
        ("region", &doc.region),
        ("accountId", &doc.account_id),
        ("instanceId", &doc.instance_id),
    ] {
        if value.is_empty() || value.contains(['/', ':', ' ']) {
            return Err(DocumentError::IdentityField {
                name,
                value: value.clone(),
            });
        }
    }
    Ok((doc.region, doc.account_id, doc.instance_id))
}

impl Imds {
    pub fn new(
        endpoint: Option<String>,
        v1: ImdsV1,
        timeout: Duration,
    ) -> Result<Imds, ClientError> {
        let endpoint = endpoint
            .or_else(|| std::env::var("AWS_EC2_METADATA_SERVICE_ENDPOINT").ok())
            .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string())
            .trim_end_matches('/')
            .to_string();
        let http = ClientSettings {
            user_agent: None,
            connect_timeout: timeout.min(Duration::from_secs(2)),
            read_timeout: None,
            total_timeout: Some(timeout),
            // Link-local: never through a proxy.
            proxy: Proxying::Direct,
            redirects: Redirects::Follow(10),
            max_idle_per_host: None,
            keepalive: None,
        }
        .build("instance metadata")?;
        Ok(Imds {
            http,
            endpoint,
            v1,
            token: Mutex::new(None),
            timeout,
            warned_v1: AtomicBool::new(false),
        })
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Reads the identity document, partition and domain.
    pub async fn instance_identity(&self) -> Result<InstanceIdentity, ImdsError> {
        let path = "/latest/dynamic/instance-identity/document";
        let document = self.get(path).await?;
        let (region, account_id, instance_id) =
            parse_identity_document(&document).map_err(|source| ImdsError::Invalid {
                path: path.to_string(),
                source,
            })?;
        let partition = self
            .get("/latest/meta-data/services/partition")
            .await?
            .trim()
            .to_string();
        let domain = self
            .get("/latest/meta-data/services/domain")
            .await?
            .trim()
            .to_string();
        Ok(InstanceIdentity {
            region,
            account_id,
            instance_id,
            partition,
            domain,
        })
    }

    /// The instance profile's role and its current credentials.
    pub async fn instance_profile_credentials(&self) -> Result<(String, Credentials), ImdsError> {
        let listing = match self.get(SECURITY_CREDENTIALS).await {
            Err(ImdsError::Status { status: 404, .. }) => return Err(ImdsError::NoInstanceProfile),
            other => other?,
        };
        let role = listing
            .lines()
            .map(str::trim)
            .find(|line| !line.is_empty())
            .ok_or(ImdsError::NoInstanceProfile)?
            .to_string();
        let path = format!("{SECURITY_CREDENTIALS}{role}");
        let document = self.get(&path).await?;
        let credentials = parse_role_credentials(&document)
            .map_err(|source| ImdsError::Invalid { path, source })?;
        Ok((role, credentials))
    }

    /// GET a metadata path: up to three attempts; a 401 with a token fetches a
    /// fresh token once.
    pub async fn get(&self, path: &str) -> Result<String, ImdsError> {
        let mut last_error = None;
        for attempt in 0..=RETRY_DELAYS.len() {
            if attempt > 0 {
                tokio::time::sleep(RETRY_DELAYS[attempt - 1]).await;
            }
            match self.get_once(path).await {
                Ok(body) => return Ok(body),
                Err(e @ (ImdsError::TokenRefused { .. } | ImdsError::Invalid { .. })) => {
                    return Err(e)
                }
                Err(e @ ImdsError::Status { status: 404, .. }) => return Err(e),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.expect("the loop runs at least once and records every failure"))
    }

    async fn get_once(&self, path: &str) -> Result<String, ImdsError> {
        let mut refreshed = false;
        loop {
            let token = self.token(refreshed).await?;
            let mut request = self.http.get(format!("{}{path}", self.endpoint));
            if let Some(token) = &token {
                request = request.header("X-aws-ec2-metadata-token", token.as_str());
            }
            let response = request
                .send()
                .await
                .map_err(|e| self.unreachable(path, e))?;
            let status = response.status().as_u16();
            if status == 401 && token.is_some() && !refreshed {
                refreshed = true;
                continue;
            }
            if status != 200 {
                return Err(ImdsError::Status {
                    path: path.to_string(),
                    status,
                });
            }
            return response.text().await.map_err(|e| self.unreachable(path, e));
        }
    }

    /// The session token; `None` means IMDSv1 (allowed and no token to be had).
    async fn token(&self, force_new: bool) -> Result<Option<String>, ImdsError> {
        let mut cached = self.token.lock().await;
        if let (Some(token), false) = (cached.as_ref(), force_new) {
            return Ok(Some(token.clone()));
        }
        let result = self
            .http
            .put(format!("{}/latest/api/token", self.endpoint))
            .header("X-aws-ec2-metadata-token-ttl-seconds", TOKEN_TTL_SECONDS)
            .timeout(self.timeout)
            .send()
            .await;
        let failure = match result {
            Ok(response) if response.status().as_u16() == 200 => match response.text().await {
                Ok(token) if !token.trim().is_empty() => {
                    *cached = Some(token.trim().to_string());
                    return Ok(cached.clone());
                }
                Ok(_) => "an empty token".to_string(),
                Err(e) => e.to_string(),
            },
            Ok(response) => format!("HTTP {}", response.status().as_u16()),
            Err(e) if self.v1 == ImdsV1::Disabled => {
                // Nothing answered: that is not a refusal, and may pass on retry.
                return Err(self.unreachable("/latest/api/token", e));
            }
            Err(e) => crate::http::error_chain(&e),
        };
        *cached = None;
        match self.v1 {
            ImdsV1::Allowed => {
                if self.warned_v1.swap(true, Ordering::Relaxed) {
                    tracing::debug!("no IMDSv2 token ({failure}); using IMDSv1");
                } else {
                    tracing::warn!("no IMDSv2 token ({failure}); falling back to IMDSv1");
                }
                Ok(None)
            }
            ImdsV1::Disabled => Err(ImdsError::TokenRefused { detail: failure }),
        }
    }

    fn unreachable(&self, path: &str, error: reqwest::Error) -> ImdsError {
        ImdsError::Unreachable {
            endpoint: self.endpoint.clone(),
            path: path.to_string(),
            detail: if error.is_timeout() {
                "timed out".to_string()
            } else {
                crate::http::error_chain(&error)
            },
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RoleCredentialsDocument {
    code: Option<String>,
    access_key_id: String,
    secret_access_key: String,
    token: String,
    expiration: String,
}

/// The credentials of an instance-profile role document (pure): keys, session
/// token and expiry. Error texts never quote the document (it holds secrets).
pub fn parse_role_credentials(json: &str) -> Result<Credentials, DocumentError> {
    let doc: RoleCredentialsDocument =
        serde_json::from_str(json).map_err(|e| DocumentError::CredentialsJson {
            line: e.line(),
            column: e.column(),
        })?;
    if let Some(code) = doc.code.as_deref().filter(|c| *c != "Success") {
        return Err(DocumentError::CredentialsUnavailable {
            code: code.to_string(),
        });
    }
    if doc.access_key_id.is_empty() || doc.secret_access_key.is_empty() {
        return Err(DocumentError::EmptyKeys);
    }
    let expiry = chrono::DateTime::parse_from_rfc3339(doc.expiration.trim()).map_err(|source| {
        DocumentError::Expiration {
            written: doc.expiration.clone(),
            source,
        }
    })?;
    let expiry = SystemTime::from(expiry.with_timezone(&chrono::Utc));
    Ok(Credentials::new(
        doc.access_key_id,
        doc.secret_access_key,
        (!doc.token.is_empty()).then_some(doc.token),
        Some(expiry),
        "ec2-instance-profile",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_credentials_document() {
        let doc = r#"{"Code":"Success","LastUpdated":"2026-01-01T00:00:00Z","Type":"AWS-HMAC","AccessKeyId":"ASIAX","SecretAccessKey":"sk","Token":"tok","Expiration":"2026-01-01T06:00:00Z"}"#;
        let c = parse_role_credentials(doc).unwrap();
        assert_eq!(
            (c.access_key_id(), c.secret_access_key(), c.session_token()),
            ("ASIAX", "sk", Some("tok"))
        );
        assert_eq!(
            c.expiry(),
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_247_200))
        );
        let cases = [
            (
                r#"{"Code":"AssumeRoleUnauthorizedAccess","AccessKeyId":"","SecretAccessKey":"","Token":"","Expiration":""}"#,
                "Code AssumeRoleUnauthorizedAccess",
            ),
            (
                r#"{"AccessKeyId":"A","SecretAccessKey":"s3cr3t","Token":"t","Expiration":"tomorrow"}"#,
                "RFC 3339",
            ),
            (
                r#"{"AccessKeyId":"A","SecretAccessKey":"s3cr3t"}"#,
                "not a credentials document",
            ),
        ];
        for (doc, expected) in cases {
            let message = parse_role_credentials(doc).unwrap_err().to_string();
            assert!(message.contains(expected), "{doc}: {message}");
            assert!(!message.contains("s3cr3t"), "{message}");
        }
    }

    #[test]
    fn host_identifier_per_partition() {
        let cases = [
            (
                "aws",
                "us-east-1",
                "arn:aws:ec2:us-east-1:123456789012:instance/i-0abc",
            ),
            (
                "aws-cn",
                "cn-north-1",
                "arn:aws-cn:ec2:cn-north-1:123456789012:instance/i-0abc",
            ),
            (
                "aws-us-gov",
                "us-gov-west-1",
                "arn:aws-us-gov:ec2:us-gov-west-1:123456789012:instance/i-0abc",
            ),
        ];
        for (partition, region, expected) in cases {
            let id = InstanceIdentity {
                region: region.into(),
                account_id: "123456789012".into(),
                instance_id: "i-0abc".into(),
                partition: partition.into(),
                domain: "amazonaws.com".into(),
            };
            assert_eq!(id.host_identifier(), expected);
        }
    }

    #[test]
    fn identity_document_fields() {
        let doc = r#"{"accountId":"123456789012","architecture":"x86_64","instanceId":"i-0abc","region":"eu-west-1","version":"2017-09-30"}"#;
        assert_eq!(
            parse_identity_document(doc).unwrap(),
            ("eu-west-1".into(), "123456789012".into(), "i-0abc".into())
        );
        assert!(
            parse_identity_document(r#"{"accountId":"1","instanceId":"i/../x","region":"r"}"#)
                .is_err()
        );
        assert!(parse_identity_document("{}").is_err());
    }
}
