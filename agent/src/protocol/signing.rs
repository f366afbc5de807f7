//! SigV4 signing of Commands requests, through aws-sigv4. The signed headers are
//! host, content-type, x-amz-target, the agent-version header and x-amz-date
//! (plus x-amz-security-token for session credentials).

use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningError, SigningSettings};
use aws_sigv4::sign::v4;
use aws_sigv4::sign::v4::signing_params::BuildError;

/// Why a request could not be signed.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("cannot build signing parameters: {0}")]
    Parameters(#[source] BuildError),
    #[error("cannot sign request to {url}: {source}")]
    Request {
        url: String,
        #[source]
        source: SigningError,
    },
}

/// Returns the headers to add to the request (Authorization, X-Amz-Date, ...).
pub fn sign_request(
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    credentials: &Credentials,
    region: &str,
    signing_name: &str,
    time: SystemTime,
) -> Result<Vec<(String, String)>, SignError> {
    let identity = credentials.clone().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(signing_name)
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .map_err(SignError::Parameters)?
        .into();
    let signable = SignableRequest::new(
        "POST",
        url,
        headers.iter().copied(),
        SignableBody::Bytes(body),
    )
    .map_err(|source| SignError::Request {
        url: url.to_string(),
        source,
    })?;
    let (instructions, _signature) = sign(signable, &params)
        .map_err(|source| SignError::Request {
            url: url.to_string(),
            source,
        })?
        .into_parts();
    let (new_headers, _params) = instructions.into_parts();
    Ok(new_headers
        .into_iter()
        .map(|h| (h.name().to_string(), h.value().to_string()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn signature_names_service_region_and_signed_headers() {
        let creds = Credentials::new("AKIDEXAMPLE", "secret", None, None, "test");
        let time = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let headers = sign_request(
            "https://codedeploy-commands.us-east-1.amazonaws.com/",
            &[
                ("content-type", "application/x-amz-json-1.1"),
                (
                    "x-amz-target",
                    "CodeDeployCommandService_v20141006.PollHostCommand",
                ),
            ],
            br#"{"HostIdentifier":"h"}"#,
            &creds,
            "us-east-1",
            "codedeploy-commands",
            time,
        )
        .unwrap();
        let auth = &headers
            .iter()
            .find(|(n, _)| n == "authorization")
            .unwrap()
            .1;
        assert!(auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20231114/us-east-1/codedeploy-commands/aws4_request"), "{auth}");
        assert!(
            auth.contains("SignedHeaders=content-type;host;x-amz-date;x-amz-target"),
            "{auth}"
        );
        assert!(headers
            .iter()
            .any(|(n, v)| n == "x-amz-date" && v == "20231114T221320Z"));
        assert!(!headers.iter().any(|(n, _)| n == "x-amz-security-token"));
    }

    #[test]
    fn session_token_is_sent_and_signed() {
        let creds = Credentials::new("ASIA", "secret", Some("tok".into()), None, "test");
        let headers = sign_request(
            "http://127.0.0.1:1/",
            &[],
            b"{}",
            &creds,
            "eu-west-1",
            "codedeploy-commands",
            SystemTime::now(),
        )
        .unwrap();
        assert!(headers
            .iter()
            .any(|(n, v)| n == "x-amz-security-token" && v == "tok"));
    }
}
