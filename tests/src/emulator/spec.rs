//! The `GenericEnvelope` of GetDeploymentSpecification: the specification
//! JSON wrapped as `PKCS7/JSON` (PEM PKCS#7 signed-data, content attached,
//! signer certificate embedded), as `TEXT/JSON`, or under another format.

use openssl::pkcs7::{Pkcs7, Pkcs7Flags};
use openssl::stack::Stack;

use super::deployment::SpecFormat;
use super::wire::Envelope;
use crate::ca::{CertifiedKey, TestPki};

/// Signs `content` as PKCS#7 signed-data and returns its PEM text.
pub fn sign_pkcs7_pem(
    content: &[u8],
    signer: &CertifiedKey,
) -> Result<String, openssl::error::ErrorStack> {
    let extra_certs = Stack::new()?;
    // BINARY: sign the bytes as they are, no S/MIME text canonicalisation.
    let pkcs7 = Pkcs7::sign(
        &signer.cert,
        &signer.key,
        &extra_certs,
        content,
        Pkcs7Flags::BINARY,
    )?;
    Ok(String::from_utf8(pkcs7.to_pem()?).expect("PEM is ASCII"))
}

/// The envelope for `spec_json` in `format`.
pub fn envelope(format: &SpecFormat, spec_json: &str, pki: &TestPki) -> Envelope {
    let signed = |signer: &CertifiedKey| Envelope {
        format: "PKCS7/JSON".to_string(),
        payload: sign_pkcs7_pem(spec_json.as_bytes(), signer)
            .expect("signing with a freshly generated key cannot fail"),
    };
    match format {
        SpecFormat::SignedByTestCa => signed(&pki.trusted.signer),
        SpecFormat::SignedByForeignCa => signed(&pki.foreign.signer),
        SpecFormat::TextJson => Envelope {
            format: "TEXT/JSON".to_string(),
            payload: spec_json.to_string(),
        },
        SpecFormat::Other(name) => Envelope {
            format: name.clone(),
            payload: spec_json.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::x509::store::X509StoreBuilder;
    use openssl::x509::X509;

    fn verify_with(root: &X509, pem: &str) -> Result<Vec<u8>, openssl::error::ErrorStack> {
        let pkcs7 = Pkcs7::from_pem(pem.as_bytes())?;
        let mut store = X509StoreBuilder::new()?;
        store.add_cert(root.clone())?;
        let store = store.build();
        let certs = Stack::new()?;
        let mut out = Vec::new();
        pkcs7.verify(&certs, &store, None, Some(&mut out), Pkcs7Flags::empty())?;
        Ok(out)
    }

    #[test]
    fn pkcs7_round_trip_verifies_against_the_trusted_root_only() {
        let pki = TestPki::generate().unwrap();
        let spec = r#"{"DeploymentId":"d-ABCDEFGHI","Revision":{"RevisionType":"S3"}}"#;
        let env = envelope(&SpecFormat::SignedByTestCa, spec, &pki);
        assert_eq!(env.format, "PKCS7/JSON");
        assert!(env.payload.starts_with("-----BEGIN PKCS7-----"));
        let content = verify_with(&pki.trusted.root.cert, &env.payload).unwrap();
        assert_eq!(content, spec.as_bytes());
        assert!(verify_with(&pki.foreign.root.cert, &env.payload).is_err());

        let foreign = envelope(&SpecFormat::SignedByForeignCa, spec, &pki);
        assert!(verify_with(&pki.trusted.root.cert, &foreign.payload).is_err());
        assert_eq!(
            verify_with(&pki.foreign.root.cert, &foreign.payload).unwrap(),
            spec.as_bytes()
        );
    }

    #[test]
    fn signer_certificate_is_embedded() {
        let pki = TestPki::generate().unwrap();
        let env = envelope(&SpecFormat::SignedByTestCa, "{}", &pki);
        let pkcs7 = Pkcs7::from_pem(env.payload.as_bytes()).unwrap();
        let certs = pkcs7
            .signed()
            .and_then(|s| s.certificates())
            .expect("certificates are embedded");
        assert_eq!(certs.len(), 1);
        assert_eq!(
            certs.get(0).unwrap().to_der().unwrap(),
            pki.trusted.signer.cert.to_der().unwrap()
        );
    }

    #[test]
    fn text_and_other_formats_carry_the_json() {
        let pki = TestPki::generate().unwrap();
        let env = envelope(&SpecFormat::TextJson, "{\"a\":1}", &pki);
        assert_eq!(env.format, "TEXT/JSON");
        assert_eq!(env.payload, "{\"a\":1}");
        let env = envelope(&SpecFormat::Other("XML".into()), "{}", &pki);
        assert_eq!(env.format, "XML");
    }
}
