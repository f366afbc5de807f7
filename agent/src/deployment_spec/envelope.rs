//! Opening the deployment-specification envelope: a `PKCS7/JSON` payload is
//! verified (signature, and by default the signer's chain up to the configured CA
//! file) before a single byte of its content is used. `TEXT/JSON` is accepted only
//! where the caller says unsigned specs are allowed (the local CLI).

use std::path::{Path, PathBuf};

use openssl::pkcs7::{Pkcs7, Pkcs7Flags};
use openssl::stack::Stack;
use openssl::x509::store::{X509Store, X509StoreBuilder};
use openssl::x509::{X509PurposeId, X509};

use super::SpecError;
use crate::config::SpecVerification;
use crate::protocol::Envelope;

/// Whether an unsigned `TEXT/JSON` spec may be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnsignedSpecs {
    Refused,
    /// Only the local CLI builds its own unsigned specs.
    Allowed,
}

/// Why the trusted CA chain cannot be loaded (the agent does not start).
#[derive(Debug, thiserror::Error)]
pub enum CaChainError {
    #[error("cannot read the deployment-spec CA chain {}: {source}; install the CodeDeploy signer CA chain there or point :deployment_spec_ca_file: at it", file.display())]
    Read {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {source}", file.display())]
    Invalid {
        file: PathBuf,
        #[source]
        source: InvalidChain,
    },
}

/// What is wrong with the PEM text of a CA chain.
#[derive(Debug, thiserror::Error)]
pub enum InvalidChain {
    #[error("not a PEM certificate chain: {0}")]
    NotPem(#[source] openssl::error::ErrorStack),
    #[error("the CA chain holds no certificate")]
    Empty,
    #[error("{0}")]
    Store(#[source] openssl::error::ErrorStack),
}

/// Verifies signed specs against the trusted CA chain.
pub struct SpecVerifier {
    store: X509Store,
    mode: SpecVerification,
}

impl std::fmt::Debug for SpecVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpecVerifier")
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl SpecVerifier {
    /// Loads the CA chain file (PEM, one or more certificates).
    pub fn from_ca_file(file: &Path, mode: SpecVerification) -> Result<SpecVerifier, CaChainError> {
        let pem = std::fs::read(file).map_err(|source| CaChainError::Read {
            file: file.to_path_buf(),
            source,
        })?;
        SpecVerifier::from_pem(&pem, mode).map_err(|source| CaChainError::Invalid {
            file: file.to_path_buf(),
            source,
        })
    }

    pub fn from_pem(pem: &[u8], mode: SpecVerification) -> Result<SpecVerifier, InvalidChain> {
        let certs = X509::stack_from_pem(pem).map_err(InvalidChain::NotPem)?;
        if certs.is_empty() {
            return Err(InvalidChain::Empty);
        }
        let mut builder = X509StoreBuilder::new().map_err(InvalidChain::Store)?;
        for cert in certs {
            builder.add_cert(cert).map_err(InvalidChain::Store)?;
        }
        // The service's signer certificate is not an S/MIME certificate: the chain
        // is checked for trust and validity, not for a particular purpose.
        builder
            .set_purpose(X509PurposeId::ANY)
            .map_err(InvalidChain::Store)?;
        Ok(SpecVerifier {
            store: builder.build(),
            mode,
        })
    }

    /// The spec JSON inside the envelope, once it is known to be genuine.
    pub fn open(&self, envelope: &Envelope, unsigned: UnsignedSpecs) -> Result<String, SpecError> {
        match (envelope.format.as_str(), unsigned) {
            ("PKCS7/JSON", _) => self.verify_pkcs7(&envelope.payload),
            ("TEXT/JSON", UnsignedSpecs::Allowed) => Ok(envelope.payload.clone()),
            (format, _) => Err(SpecError::UnsupportedFormat {
                format: format.to_string(),
            }),
        }
    }

    fn verify_pkcs7(&self, payload: &str) -> Result<String, SpecError> {
        let pkcs7 = Pkcs7::from_pem(payload.as_bytes())
            .map_err(rejected("the PKCS7 payload cannot be read"))?;
        let flags = match self.mode {
            SpecVerification::SignatureAndChain => Pkcs7Flags::empty(),
            SpecVerification::SignatureOnly => Pkcs7Flags::NOVERIFY,
        };
        let no_extra_certs =
            Stack::new().map_err(rejected("no certificate stack could be made"))?;
        let mut content = Vec::new();
        pkcs7
            .verify(
                &no_extra_certs,
                &self.store,
                None,
                Some(&mut content),
                flags,
            )
            .map_err(rejected(
                "the signature does not verify against the trusted CA chain",
            ))?;
        std::str::from_utf8(&content)
            .map(str::to_string)
            .map_err(SpecError::NotUtf8)
    }
}

/// The error for a failed check of the envelope.
fn rejected(check: &'static str) -> impl FnOnce(openssl::error::ErrorStack) -> SpecError {
    move |source| SpecError::Signature { check, source }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::asn1::Asn1Time;
    use openssl::bn::BigNum;
    use openssl::hash::MessageDigest;
    use openssl::pkey::{PKey, Private};
    use openssl::rsa::Rsa;
    use openssl::x509::extension::{BasicConstraints, KeyUsage};
    use openssl::x509::{X509Builder, X509NameBuilder};

    fn key() -> PKey<Private> {
        PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap()
    }

    const DAY: i64 = 24 * 3600;

    fn now() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    }

    /// A certificate valid from `valid.0` to `valid.1` (Unix seconds).
    fn cert_valid(
        cn: &str,
        key: &PKey<Private>,
        issuer: Option<(&X509, &PKey<Private>)>,
        ca: bool,
        valid: (i64, i64),
    ) -> X509 {
        let mut name = X509NameBuilder::new().unwrap();
        name.append_entry_by_text("CN", cn).unwrap();
        let name = name.build();
        let mut b = X509Builder::new().unwrap();
        b.set_version(2).unwrap();
        b.set_serial_number(
            &BigNum::from_u32(fastrand::u32(1..u32::MAX))
                .unwrap()
                .to_asn1_integer()
                .unwrap(),
        )
        .unwrap();
        b.set_subject_name(&name).unwrap();
        b.set_issuer_name(issuer.map(|(c, _)| c.subject_name()).unwrap_or(&name))
            .unwrap();
        b.set_pubkey(key).unwrap();
        b.set_not_before(&Asn1Time::from_unix(valid.0).unwrap())
            .unwrap();
        b.set_not_after(&Asn1Time::from_unix(valid.1).unwrap())
            .unwrap();
        if ca {
            b.append_extension(BasicConstraints::new().critical().ca().build().unwrap())
                .unwrap();
            b.append_extension(KeyUsage::new().key_cert_sign().build().unwrap())
                .unwrap();
        } else {
            b.append_extension(KeyUsage::new().digital_signature().build().unwrap())
                .unwrap();
        }
        b.sign(
            issuer.map(|(_, k)| k).unwrap_or(key),
            MessageDigest::sha256(),
        )
        .unwrap();
        b.build()
    }

    /// A CA and a signed envelope whose content is `content`.
    fn signed(content: &str) -> (X509, Envelope) {
        signed_by_signer_valid(content, (now() - DAY, now() + 2 * DAY))
    }

    /// As `signed`, with the signer's certificate valid over `valid`.
    fn signed_by_signer_valid(content: &str, valid: (i64, i64)) -> (X509, Envelope) {
        let (ca_key, signer_key) = (key(), key());
        let ca = cert_valid(
            "Test Deployment CA",
            &ca_key,
            None,
            true,
            (now() - 30 * DAY, now() + 30 * DAY),
        );
        let signer = cert_valid(
            "Test Deployment Signer",
            &signer_key,
            Some((&ca, &ca_key)),
            false,
            valid,
        );
        let pkcs7 = Pkcs7::sign(
            &signer,
            &signer_key,
            &Stack::new().unwrap(),
            content.as_bytes(),
            Pkcs7Flags::BINARY,
        )
        .unwrap();
        let payload = String::from_utf8(pkcs7.to_pem().unwrap()).unwrap();
        (
            ca,
            Envelope {
                format: "PKCS7/JSON".into(),
                payload,
            },
        )
    }

    fn verifier(ca: &X509, mode: SpecVerification) -> SpecVerifier {
        SpecVerifier::from_pem(&ca.to_pem().unwrap(), mode).unwrap()
    }

    #[test]
    fn spec_signed_under_the_trusted_ca_opens() {
        let (ca, envelope) = signed(r#"{"DeploymentId":"d-1"}"#);
        let json = verifier(&ca, SpecVerification::SignatureAndChain)
            .open(&envelope, UnsignedSpecs::Refused)
            .unwrap();
        assert_eq!(json, r#"{"DeploymentId":"d-1"}"#);
    }

    #[test]
    fn spec_signed_under_another_ca_is_rejected_unless_chain_checks_are_off() {
        let (_, envelope) = signed("{}");
        let (other_ca, _) = signed("{}");
        let err = verifier(&other_ca, SpecVerification::SignatureAndChain)
            .open(&envelope, UnsignedSpecs::Refused)
            .unwrap_err();
        assert!(err.to_string().contains("does not verify"), "{err}");
        assert!(verifier(&other_ca, SpecVerification::SignatureOnly)
            .open(&envelope, UnsignedSpecs::Refused)
            .is_ok());
    }

    #[test]
    fn spec_whose_signer_expired_or_is_not_yet_valid_is_rejected() {
        let cases = [
            ("expired yesterday", (now() - 10 * DAY, now() - DAY)),
            ("valid from tomorrow", (now() + DAY, now() + 10 * DAY)),
        ];
        for (what, valid) in cases {
            let (ca, envelope) = signed_by_signer_valid(r#"{"DeploymentId":"d-1"}"#, valid);
            let err = verifier(&ca, SpecVerification::SignatureAndChain)
                .open(&envelope, UnsignedSpecs::Refused)
                .expect_err(what);
            assert!(err.to_string().contains("does not verify"), "{what}: {err}");
        }
    }

    #[test]
    fn unsigned_and_garbage_payloads_are_rejected_with_a_reason() {
        let (ca, _) = signed("{}");
        let v = verifier(&ca, SpecVerification::SignatureAndChain);
        for payload in [
            "",
            "{\"DeploymentId\":\"d-1\"}",
            "-----BEGIN PKCS7-----\nAAAA\n-----END PKCS7-----\n",
        ] {
            let envelope = Envelope {
                format: "PKCS7/JSON".into(),
                payload: payload.into(),
            };
            let err = v.open(&envelope, UnsignedSpecs::Refused).unwrap_err();
            assert!(err.to_string().contains("rejected"), "{payload:?}: {err}");
        }
    }

    #[test]
    fn tampered_content_is_rejected_even_without_chain_checks() {
        let (ca, envelope) = signed(r#"{"DeploymentId":"d-1111"}"#);
        let pkcs7 = Pkcs7::from_pem(envelope.payload.as_bytes()).unwrap();
        let mut der = pkcs7.to_der().unwrap();
        let at = der.windows(4).position(|w| w == b"1111").unwrap();
        der[at] = b'2';
        let tampered = Pkcs7::from_der(&der).unwrap();
        let envelope = Envelope {
            format: "PKCS7/JSON".into(),
            payload: String::from_utf8(tampered.to_pem().unwrap()).unwrap(),
        };
        assert!(verifier(&ca, SpecVerification::SignatureOnly)
            .open(&envelope, UnsignedSpecs::Refused)
            .is_err());
    }

    #[test]
    fn text_json_only_where_allowed_and_other_formats_never() {
        let (ca, _) = signed("{}");
        let v = verifier(&ca, SpecVerification::SignatureAndChain);
        let text = Envelope {
            format: "TEXT/JSON".into(),
            payload: "{}".into(),
        };
        assert_eq!(
            v.open(&text, UnsignedSpecs::Refused)
                .unwrap_err()
                .to_string(),
            "Unsupported DeploymentSpecification format: TEXT/JSON"
        );
        assert_eq!(v.open(&text, UnsignedSpecs::Allowed).unwrap(), "{}");
        let other = Envelope {
            format: "XML".into(),
            payload: "".into(),
        };
        assert_eq!(
            v.open(&other, UnsignedSpecs::Allowed)
                .unwrap_err()
                .to_string(),
            "Unsupported DeploymentSpecification format: XML"
        );
    }

    #[test]
    fn missing_ca_file_says_how_to_fix_it() {
        let err = SpecVerifier::from_ca_file(
            Path::new("/nonexistent/ca.pem"),
            SpecVerification::SignatureAndChain,
        )
        .err()
        .unwrap()
        .to_string();
        assert!(
            err.contains("/nonexistent/ca.pem") && err.contains(":deployment_spec_ca_file:"),
            "{err}"
        );
    }
}
