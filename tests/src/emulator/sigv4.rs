//! Server-side AWS Signature Version 4 verification for the emulator,
//! written from the published algorithm (canonical request → string to sign
//! → HMAC chain), with openssl for SHA-256 and HMAC-SHA256.
//!
//! Pure: a request's parts and the current time in, the caller's credential
//! or the service error the real endpoint would answer out. No I/O here.

use std::time::{Duration, SystemTime};

use chrono::{DateTime, NaiveDateTime, Utc};
use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::sign::Signer;

use super::wire::ServiceError;

/// A credential the emulated service knows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credential {
    pub access_key_id: String,
    pub secret_access_key: String,
    /// When set, requests must carry it in `X-Amz-Security-Token`.
    pub session_token: Option<String>,
}

impl Credential {
    pub fn new(access_key_id: &str, secret_access_key: &str) -> Self {
        Credential {
            access_key_id: access_key_id.to_string(),
            secret_access_key: secret_access_key.to_string(),
            session_token: None,
        }
    }

    pub fn with_session_token(mut self, token: &str) -> Self {
        self.session_token = Some(token.to_string());
        self
    }
}

/// The parts of an HTTP request that SigV4 covers.
#[derive(Clone, Copy, Debug)]
pub struct RequestParts<'a> {
    pub method: &'a str,
    /// Path and query as received (`/` or `/path?a=b`).
    pub target: &'a str,
    /// Every header as received, names in any case, repeated names allowed.
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
}

impl RequestParts<'_> {
    fn header_values(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.header_values(name).into_iter().next()
    }
}

pub const SIGNATURE_MISMATCH: &str = "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.";
pub const INVALID_TOKEN: &str = "The security token included in the request is invalid.";

/// Checks SigV4 signatures for one service in one region.
#[derive(Clone, Debug)]
pub struct Verifier {
    pub region: String,
    pub service: String,
    pub credentials: Vec<Credential>,
    /// How far X-Amz-Date may be from now, either way.
    pub max_skew: Duration,
}

struct Authorization<'a> {
    access_key_id: &'a str,
    date: &'a str,
    region: &'a str,
    service: &'a str,
    terminator: &'a str,
    signed_headers: Vec<&'a str>,
    signature: &'a str,
}

fn incomplete(message: impl Into<String>) -> ServiceError {
    ServiceError::client("IncompleteSignatureException", message)
}

fn invalid(message: impl Into<String>) -> ServiceError {
    ServiceError::client("InvalidSignatureException", message)
}

fn parse_authorization(value: &str) -> Result<Authorization<'_>, ServiceError> {
    let rest = value.strip_prefix("AWS4-HMAC-SHA256 ").ok_or_else(|| {
        incomplete(format!(
            "Authorization header must start with 'AWS4-HMAC-SHA256 ', got '{}'",
            value.split(' ').next().unwrap_or("")
        ))
    })?;
    let mut credential = None;
    let mut signed_headers = None;
    let mut signature = None;
    for part in rest.split(',') {
        let part = part.trim();
        let (key, val) = part.split_once('=').ok_or_else(|| {
            incomplete(format!(
                "Authorization header part '{part}' is not key=value"
            ))
        })?;
        match key {
            "Credential" => credential = Some(val),
            "SignedHeaders" => signed_headers = Some(val),
            "Signature" => signature = Some(val),
            _ => {}
        }
    }
    let missing = |name: &str| {
        incomplete(format!(
            "Authorization header requires '{name}' parameter. Authorization={value}"
        ))
    };
    let credential = credential.ok_or_else(|| missing("Credential"))?;
    let signed_headers = signed_headers.ok_or_else(|| missing("SignedHeaders"))?;
    let signature = signature.ok_or_else(|| missing("Signature"))?;
    let scope: Vec<&str> = credential.split('/').collect();
    let [access_key_id, date, region, service, terminator] = scope[..] else {
        return Err(incomplete(format!(
            "Credential '{credential}' must be <access key>/<date>/<region>/<service>/aws4_request"
        )));
    };
    Ok(Authorization {
        access_key_id,
        date,
        region,
        service,
        terminator,
        signed_headers: signed_headers.split(';').collect(),
        signature,
    })
}

impl Verifier {
    pub fn new(region: &str, service: &str, credentials: Vec<Credential>) -> Self {
        Verifier {
            region: region.to_string(),
            service: service.to_string(),
            credentials,
            max_skew: Duration::from_secs(300),
        }
    }

    /// Verifies the request's signature; returns the credential it was made
    /// with.
    pub fn verify(
        &self,
        req: &RequestParts<'_>,
        now: SystemTime,
    ) -> Result<&Credential, ServiceError> {
        let Some(authorization) = req.header("authorization") else {
            return Err(ServiceError::client(
                "MissingAuthenticationTokenException",
                "Missing Authentication Token",
            ));
        };
        let auth = parse_authorization(authorization)?;
        let credential = self
            .credentials
            .iter()
            .find(|c| c.access_key_id == auth.access_key_id)
            .ok_or_else(|| ServiceError::client("UnrecognizedClientException", INVALID_TOKEN))?;
        let token = req.header("x-amz-security-token");
        if token != credential.session_token.as_deref() {
            return Err(ServiceError::client(
                "UnrecognizedClientException",
                INVALID_TOKEN,
            ));
        }
        if auth.terminator != "aws4_request" {
            return Err(invalid(format!(
                "Credential should be scoped with a valid terminator: 'aws4_request', not '{}'.",
                auth.terminator
            )));
        }
        if auth.service != self.service {
            return Err(invalid(format!(
                "Credential should be scoped to correct service: '{}'. ",
                self.service
            )));
        }
        if auth.region != self.region {
            return Err(invalid(format!(
                "Credential should be scoped to a valid region, not '{}'. ",
                auth.region
            )));
        }
        let amz_date = req.header("x-amz-date").ok_or_else(|| {
            incomplete("Authorization header requires existence of a 'X-Amz-Date' header.")
        })?;
        let signed_at = NaiveDateTime::parse_from_str(amz_date, "%Y%m%dT%H%M%SZ")
            .map_err(|_| {
                incomplete(format!(
                    "X-Amz-Date '{amz_date}' is not in the form YYYYMMDDTHHMMSSZ"
                ))
            })?
            .and_utc();
        if !amz_date.starts_with(auth.date) || auth.date.len() != 8 {
            return Err(invalid(format!(
                "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '{}' != '{}', from '{amz_date}'.",
                auth.date,
                &amz_date[..8.min(amz_date.len())]
            )));
        }
        let now: DateTime<Utc> = now.into();
        let skew = chrono::Duration::from_std(self.max_skew).expect("skew fits chrono");
        if signed_at < now - skew {
            return Err(invalid(format!(
                "Signature expired: {amz_date} is now earlier than {} ({} - {} min.)",
                (now - skew).format("%Y%m%dT%H%M%SZ"),
                now.format("%Y%m%dT%H%M%SZ"),
                self.max_skew.as_secs() / 60
            )));
        }
        if signed_at > now + skew {
            return Err(invalid(format!(
                "Signature not yet current: {amz_date} is still later than {} ({} + {} min.)",
                (now + skew).format("%Y%m%dT%H%M%SZ"),
                now.format("%Y%m%dT%H%M%SZ"),
                self.max_skew.as_secs() / 60
            )));
        }
        if !auth.signed_headers.contains(&"host") {
            return Err(invalid(
                "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.",
            ));
        }
        let canonical = canonical_request(req, &auth.signed_headers);
        let scope = format!(
            "{}/{}/{}/aws4_request",
            auth.date, auth.region, auth.service
        );
        let string_to_sign = format!(
            "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
            hex(&openssl::sha::sha256(canonical.as_bytes()))
        );
        let key = signing_key(
            &credential.secret_access_key,
            auth.date,
            auth.region,
            auth.service,
        );
        let expected = hex(&hmac(&key, string_to_sign.as_bytes()));
        let given = auth.signature.to_ascii_lowercase();
        if expected.len() != given.len()
            || !openssl::memcmp::eq(expected.as_bytes(), given.as_bytes())
        {
            return Err(invalid(SIGNATURE_MISMATCH));
        }
        Ok(credential)
    }
}

/// The SigV4 canonical request, from the headers the client says it signed.
pub fn canonical_request(req: &RequestParts<'_>, signed_headers: &[&str]) -> String {
    let (path, query) = req.target.split_once('?').unwrap_or((req.target, ""));
    let mut out = String::new();
    out.push_str(req.method);
    out.push('\n');
    out.push_str(&canonical_uri(path));
    out.push('\n');
    out.push_str(&canonical_query(query));
    out.push('\n');
    for name in signed_headers {
        let values: Vec<String> = req
            .header_values(name)
            .into_iter()
            .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        out.push_str(&name.to_ascii_lowercase());
        out.push(':');
        out.push_str(&values.join(","));
        out.push('\n');
    }
    out.push('\n');
    out.push_str(&signed_headers.join(";"));
    out.push('\n');
    out.push_str(&hex(&openssl::sha::sha256(req.body)));
    out
}

/// Non-S3 services normalise the path and encode it a second time.
fn canonical_uri(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut normalised = String::from("/");
    normalised.push_str(&segments.join("/"));
    if path.ends_with('/') && !segments.is_empty() {
        normalised.push('/');
    }
    uri_encode(&normalised, false)
}

fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (
                uri_encode(&percent_decode(k), true),
                uri_encode(&percent_decode(v), true),
            )
        })
        .collect();
    pairs.sort();
    pairs
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

fn uri_encode(input: &str, encode_slash: bool) -> String {
    let mut out = String::new();
    for byte in input.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(byte as char)
            }
            b'/' if !encode_slash => out.push('/'),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

fn percent_decode(input: &str) -> String {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Some(b) = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let pkey = PKey::hmac(key).expect("HMAC keys of any length are accepted");
    let mut signer = Signer::new(MessageDigest::sha256(), &pkey).expect("HMAC-SHA256 is available");
    signer.update(data).expect("HMAC update cannot fail");
    signer.sign_to_vec().expect("HMAC finalisation cannot fail")
}

fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> Vec<u8> {
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac(&k_date, region.as_bytes());
    let k_service = hmac(&k_region, service.as_bytes());
    hmac(&k_service, b"aws4_request")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_credential_types::Credentials;
    use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
    use aws_sigv4::sign::v4;

    const SERVICE: &str = "codedeploy-commands";
    const REGION: &str = "us-east-1";
    const BODY: &[u8] = br#"{"HostIdentifier":"arn:aws:iam::123456789012:user/host"}"#;

    struct Signed {
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    }

    impl Signed {
        fn parts(&self) -> RequestParts<'_> {
            RequestParts {
                method: "POST",
                target: "/",
                headers: &self.headers,
                body: &self.body,
            }
        }
    }

    /// Signs a PollHostCommand request the way an SDK-based client would.
    fn signed(
        key: &str,
        secret: &str,
        token: Option<&str>,
        region: &str,
        service: &str,
        at: SystemTime,
    ) -> Signed {
        let headers = vec![
            (
                "content-type".to_string(),
                "application/x-amz-json-1.1".to_string(),
            ),
            (
                "x-amz-target".to_string(),
                "CodeDeployCommandService_v20141006.PollHostCommand".to_string(),
            ),
            ("host".to_string(), "127.0.0.1:4567".to_string()),
        ];
        let identity =
            Credentials::new(key, secret, token.map(str::to_string), None, "test").into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(region)
            .name(service)
            .time(at)
            .settings(SigningSettings::default())
            .build()
            .unwrap()
            .into();
        let request = SignableRequest::new(
            "POST",
            "http://127.0.0.1:4567/",
            headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            SignableBody::Bytes(BODY),
        )
        .unwrap();
        let (instructions, _) = sign(request, &params).unwrap().into_parts();
        let mut all = headers.clone();
        for (name, value) in instructions.headers() {
            all.push((name.to_string(), value.to_string()));
        }
        Signed {
            headers: all,
            body: BODY.to_vec(),
        }
    }

    fn verifier() -> Verifier {
        Verifier::new(
            REGION,
            SERVICE,
            vec![
                Credential::new("AKIDEXAMPLE", "secret-one"),
                Credential::new("ASIATEMP", "secret-two").with_session_token("token-xyz"),
            ],
        )
    }

    fn error_of(result: Result<&Credential, ServiceError>) -> ServiceError {
        result.expect_err("the request must be rejected")
    }

    #[test]
    fn accepts_a_request_signed_by_aws_sigv4() {
        let now = SystemTime::now();
        let req = signed("AKIDEXAMPLE", "secret-one", None, REGION, SERVICE, now);
        let v = verifier();
        let cred = v.verify(&req.parts(), now).unwrap();
        assert_eq!(cred.access_key_id, "AKIDEXAMPLE");
    }

    #[test]
    fn accepts_header_names_in_any_case_and_unsigned_extra_headers() {
        let now = SystemTime::now();
        let mut req = signed("AKIDEXAMPLE", "secret-one", None, REGION, SERVICE, now);
        for (name, _) in &mut req.headers {
            if name == "host" {
                *name = "Host".to_string();
            }
        }
        req.headers
            .push(("User-Agent".to_string(), "added-after-signing".to_string()));
        assert!(verifier().verify(&req.parts(), now).is_ok());
    }

    #[test]
    fn wrong_secret_is_an_invalid_signature() {
        let now = SystemTime::now();
        let req = signed("AKIDEXAMPLE", "not-the-secret", None, REGION, SERVICE, now);
        let err = error_of(verifier().verify(&req.parts(), now));
        assert_eq!(err.error_type, "InvalidSignatureException");
        assert_eq!(err.message, SIGNATURE_MISMATCH);
        assert_eq!(err.status, 400);
    }

    #[test]
    fn tampered_body_or_signed_header_is_an_invalid_signature() {
        let now = SystemTime::now();
        let mut req = signed("AKIDEXAMPLE", "secret-one", None, REGION, SERVICE, now);
        req.body = br#"{"HostIdentifier":"someone-else"}"#.to_vec();
        let err = error_of(verifier().verify(&req.parts(), now));
        assert_eq!(err.error_type, "InvalidSignatureException");

        let mut req = signed("AKIDEXAMPLE", "secret-one", None, REGION, SERVICE, now);
        for (name, value) in &mut req.headers {
            if name == "x-amz-target" {
                *value = "CodeDeployCommandService_v20141006.PutHostCommandComplete".to_string();
            }
        }
        let err = error_of(verifier().verify(&req.parts(), now));
        assert_eq!(err.error_type, "InvalidSignatureException");
    }

    #[test]
    fn unknown_access_key_is_unrecognized() {
        let now = SystemTime::now();
        let req = signed("AKIDUNKNOWN", "secret-one", None, REGION, SERVICE, now);
        let err = error_of(verifier().verify(&req.parts(), now));
        assert_eq!(err.error_type, "UnrecognizedClientException");
        assert_eq!(err.message, INVALID_TOKEN);
    }

    #[test]
    fn wrong_service_or_region_in_scope_is_rejected() {
        let now = SystemTime::now();
        let req = signed("AKIDEXAMPLE", "secret-one", None, REGION, "codedeploy", now);
        let err = error_of(verifier().verify(&req.parts(), now));
        assert_eq!(err.error_type, "InvalidSignatureException");
        assert!(
            err.message.contains("codedeploy-commands"),
            "{}",
            err.message
        );

        let req = signed("AKIDEXAMPLE", "secret-one", None, "eu-west-1", SERVICE, now);
        let err = error_of(verifier().verify(&req.parts(), now));
        assert_eq!(err.error_type, "InvalidSignatureException");
        assert!(err.message.contains("eu-west-1"), "{}", err.message);
    }

    #[test]
    fn session_token_must_match_when_the_credential_has_one() {
        let now = SystemTime::now();
        let req = signed(
            "ASIATEMP",
            "secret-two",
            Some("token-xyz"),
            REGION,
            SERVICE,
            now,
        );
        assert!(verifier().verify(&req.parts(), now).is_ok());

        let req = signed("ASIATEMP", "secret-two", None, REGION, SERVICE, now);
        let err = error_of(verifier().verify(&req.parts(), now));
        assert_eq!(err.error_type, "UnrecognizedClientException");

        let req = signed(
            "ASIATEMP",
            "secret-two",
            Some("stale"),
            REGION,
            SERVICE,
            now,
        );
        let err = error_of(verifier().verify(&req.parts(), now));
        assert_eq!(err.error_type, "UnrecognizedClientException");
    }

    #[test]
    fn signatures_older_or_newer_than_five_minutes_are_rejected() {
        let now = SystemTime::now();
        let old = now - Duration::from_secs(6 * 60);
        let req = signed("AKIDEXAMPLE", "secret-one", None, REGION, SERVICE, old);
        let err = error_of(verifier().verify(&req.parts(), now));
        assert!(
            err.message.starts_with("Signature expired"),
            "{}",
            err.message
        );

        let future = now + Duration::from_secs(6 * 60);
        let req = signed("AKIDEXAMPLE", "secret-one", None, REGION, SERVICE, future);
        let err = error_of(verifier().verify(&req.parts(), now));
        assert!(
            err.message.starts_with("Signature not yet current"),
            "{}",
            err.message
        );

        let slightly_old = now - Duration::from_secs(4 * 60);
        let req = signed(
            "AKIDEXAMPLE",
            "secret-one",
            None,
            REGION,
            SERVICE,
            slightly_old,
        );
        assert!(verifier().verify(&req.parts(), now).is_ok());
    }

    #[test]
    fn missing_or_malformed_authorization_is_reported() {
        let now = SystemTime::now();
        let mut req = signed("AKIDEXAMPLE", "secret-one", None, REGION, SERVICE, now);
        req.headers.retain(|(n, _)| n != "authorization");
        let err = error_of(verifier().verify(&req.parts(), now));
        assert_eq!(err.error_type, "MissingAuthenticationTokenException");

        req.headers.push((
            "authorization".to_string(),
            "AWS4-HMAC-SHA256 Credential=x".to_string(),
        ));
        let err = error_of(verifier().verify(&req.parts(), now));
        assert_eq!(err.error_type, "IncompleteSignatureException");
    }

    #[test]
    fn canonical_uri_and_query_follow_the_published_rules() {
        assert_eq!(canonical_uri("/"), "/");
        assert_eq!(canonical_uri("/a/./b/../c"), "/a/c");
        assert_eq!(canonical_uri("/a%20b"), "/a%2520b");
        assert_eq!(canonical_query("b=2&a=1&a=0"), "a=0&a=1&b=2");
        assert_eq!(canonical_query("k=a%2Fb c"), "k=a%2Fb%20c");
    }
}
