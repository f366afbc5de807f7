//! The on-premises registration file (codedeploy.onpremises.yml, plain keys):
//! which IAM identity this host is and in which region it lives. Pure parsing.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::ConfigError;

/// How an on-premises host identifies itself and signs its requests.
#[derive(Clone, PartialEq, Eq)]
pub enum OnPremisesIdentity {
    /// Static keys of an IAM user; the host identifier is the user ARN.
    IamUser {
        arn: String,
        access_key_id: String,
        secret_access_key: String,
        region: String,
    },
    /// Rotating session credentials in a shared-credentials file; the host
    /// identifier is the session ARN.
    IamSession {
        arn: String,
        credentials_file: PathBuf,
        region: String,
    },
}

impl OnPremisesIdentity {
    pub fn host_identifier(&self) -> &str {
        match self {
            OnPremisesIdentity::IamUser { arn, .. }
            | OnPremisesIdentity::IamSession { arn, .. } => arn,
        }
    }

    pub fn region(&self) -> &str {
        match self {
            OnPremisesIdentity::IamUser { region, .. }
            | OnPremisesIdentity::IamSession { region, .. } => region,
        }
    }
}

impl std::fmt::Debug for OnPremisesIdentity {
    // The secret key never reaches a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OnPremisesIdentity::IamUser {
                arn,
                access_key_id,
                region,
                ..
            } => f
                .debug_struct("IamUser")
                .field("arn", arn)
                .field("access_key_id", access_key_id)
                .field("region", region)
                .finish_non_exhaustive(),
            OnPremisesIdentity::IamSession {
                arn,
                credentials_file,
                region,
            } => f
                .debug_struct("IamSession")
                .field("arn", arn)
                .field("credentials_file", credentials_file)
                .field("region", region)
                .finish(),
        }
    }
}

#[derive(Deserialize, Default)]
struct RawOnPremises {
    iam_user_arn: Option<String>,
    iam_session_arn: Option<String>,
    aws_access_key_id: Option<String>,
    aws_secret_access_key: Option<String>,
    aws_credentials_file: Option<String>,
    region: Option<String>,
}

/// Parses the file. `Ok(None)` when it names neither ARN: the host is then
/// treated as an EC2 instance, as the official agent does.
pub fn parse_on_premises(
    text: &str,
    file: &Path,
) -> Result<Option<OnPremisesIdentity>, ConfigError> {
    let invalid = |detail: String| ConfigError::OnPremises {
        file: file.to_path_buf(),
        message: detail,
    };
    let raw: RawOnPremises = if text.trim().is_empty() {
        RawOnPremises::default()
    } else {
        serde_norway::from_str(text).map_err(|source| ConfigError::OnPremisesYaml {
            file: file.to_path_buf(),
            source,
        })?
    };
    let required = |value: Option<String>, field: &str, arn_key: &str| {
        value.filter(|v| !v.trim().is_empty()).ok_or_else(|| {
            invalid(format!(
                "'{field}' key is required when '{arn_key}' is provided."
            ))
        })
    };
    match (raw.iam_user_arn, raw.iam_session_arn) {
        (Some(_), Some(_)) => Err(invalid(
            "On Premises config cannot contain both 'iam_user_arn' and 'iam_session_arn' keys."
                .to_string(),
        )),
        (Some(arn), None) => Ok(Some(OnPremisesIdentity::IamUser {
            access_key_id: required(raw.aws_access_key_id, "aws_access_key_id", "iam_user_arn")?,
            secret_access_key: required(
                raw.aws_secret_access_key,
                "aws_secret_access_key",
                "iam_user_arn",
            )?,
            region: required(raw.region, "region", "iam_user_arn")?,
            arn,
        })),
        (None, Some(arn)) => Ok(Some(OnPremisesIdentity::IamSession {
            credentials_file: PathBuf::from(required(
                raw.aws_credentials_file,
                "aws_credentials_file",
                "iam_session_arn",
            )?),
            region: required(raw.region, "region", "iam_session_arn")?,
            arn,
        })),
        (None, None) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Option<OnPremisesIdentity>, ConfigError> {
        parse_on_premises(
            text,
            Path::new("/etc/codedeploy-agent/conf/codedeploy.onpremises.yml"),
        )
    }

    #[test]
    fn iam_user_file_gives_static_identity() {
        let id = parse("---\naws_access_key_id: AKID\naws_secret_access_key: s3cr3t\niam_user_arn: arn:aws:iam::123456789012:user/host\nregion: us-west-2\n")
            .unwrap()
            .unwrap();
        assert_eq!(id.host_identifier(), "arn:aws:iam::123456789012:user/host");
        assert_eq!(id.region(), "us-west-2");
        assert!(!format!("{id:?}").contains("s3cr3t"));
    }

    #[test]
    fn iam_session_file_names_the_credentials_file() {
        let id = parse("iam_session_arn: arn:aws:sts::1:assumed-role/r/host\naws_credentials_file: /etc/codedeploy-agent/conf/.aws_credentials\nregion: eu-west-1\n")
            .unwrap()
            .unwrap();
        assert!(
            matches!(id, OnPremisesIdentity::IamSession { ref credentials_file, .. } if credentials_file == Path::new("/etc/codedeploy-agent/conf/.aws_credentials"))
        );
    }

    #[test]
    fn errors_follow_the_official_wording() {
        let cases = [
            (
                "iam_user_arn: a\niam_session_arn: b\n",
                "cannot contain both 'iam_user_arn' and 'iam_session_arn'",
            ),
            (
                "iam_user_arn: a\naws_secret_access_key: s\nregion: r\n",
                "'aws_access_key_id' key is required when 'iam_user_arn' is provided.",
            ),
            (
                "iam_session_arn: a\nregion: r\n",
                "'aws_credentials_file' key is required when 'iam_session_arn' is provided.",
            ),
            (
                "iam_user_arn: [unclosed\n",
                "format of the following on-premises configuration file is invalid",
            ),
        ];
        for (text, expected) in cases {
            let message = parse(text).unwrap_err().to_string();
            assert!(message.contains(expected), "{text:?} gave {message}");
        }
    }

    #[test]
    fn a_file_without_arn_means_ec2() {
        assert_eq!(parse("region: us-east-1\n").unwrap(), None);
        assert_eq!(parse("").unwrap(), None);
    }
}
