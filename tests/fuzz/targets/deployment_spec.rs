//! Fuzz target: the GetDeploymentSpecification answer, both envelopes. The
//! first byte picks the envelope format (PKCS7/JSON, TEXT/JSON, or an unknown
//! one); the rest is the payload. A PKCS7 payload goes through signature
//! verification against a throwaway CA, so openssl's parsing of hostile
//! PKCS7 is exercised; an unsigned spec goes straight to the spec parser.
//! Nothing may panic, and a forged payload can never verify.

use std::sync::OnceLock;

use codedeploy_agent::config::SpecVerification;
use codedeploy_agent::deployment_spec::{parse_spec, SpecVerifier, UnsignedSpecs};
use codedeploy_agent::protocol::Envelope;
use openssl::asn1::Asn1Time;
use openssl::bn::BigNum;
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::PKey;
use openssl::x509::{X509NameBuilder, X509};

/// A self-signed CA made once per process: its key is never used to sign a
/// spec, so no fuzz input can carry a valid signature.
fn verifier() -> &'static SpecVerifier {
    static VERIFIER: OnceLock<SpecVerifier> = OnceLock::new();
    VERIFIER.get_or_init(|| {
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).expect("P-256 is built in");
        let key = PKey::from_ec_key(EcKey::generate(&group).expect("EC key generation"))
            .expect("EC key to PKey");
        let mut name = X509NameBuilder::new().expect("name builder");
        name.append_entry_by_text("CN", "fuzz CA")
            .expect("CN entry");
        let name = name.build();
        let mut cert = X509::builder().expect("certificate builder");
        cert.set_version(2).expect("version");
        let serial = BigNum::from_u32(1)
            .and_then(|n| n.to_asn1_integer())
            .expect("serial");
        cert.set_serial_number(&serial).expect("serial");
        cert.set_subject_name(&name).expect("subject");
        cert.set_issuer_name(&name).expect("issuer");
        cert.set_pubkey(&key).expect("public key");
        cert.set_not_before(&Asn1Time::days_from_now(0).expect("time"))
            .expect("not before");
        cert.set_not_after(&Asn1Time::days_from_now(1).expect("time"))
            .expect("not after");
        cert.sign(&key, MessageDigest::sha256())
            .expect("self-signature");
        let pem = cert.build().to_pem().expect("PEM");
        SpecVerifier::from_pem(&pem, SpecVerification::SignatureAndChain).expect("a valid CA")
    })
}

pub fn run(data: &[u8]) {
    let Some((&selector, payload)) = data.split_first() else {
        return;
    };
    let format = match selector % 3 {
        0 => "PKCS7/JSON",
        1 => "TEXT/JSON",
        _ => "TEXT/YAML",
    };
    let envelope = Envelope {
        format: format.to_string(),
        payload: String::from_utf8_lossy(payload).into_owned(),
    };
    open_and_parse(&envelope);
}

/// Opens `envelope` as the daemon would (unsigned specs allowed, so the
/// parser is reached too) and parses what it holds.
pub fn open_and_parse(envelope: &Envelope) {
    match verifier().open(envelope, UnsignedSpecs::Allowed) {
        Ok(json) => {
            assert_ne!(
                envelope.format, "PKCS7/JSON",
                "a payload no key of the CA signed was accepted"
            );
            if let Err(error) = parse_spec(&json) {
                assert!(
                    !error.to_string().is_empty(),
                    "a spec error without a message"
                );
            }
        }
        Err(error) => assert!(
            !error.to_string().is_empty(),
            "an envelope error without a message"
        ),
    }
}
