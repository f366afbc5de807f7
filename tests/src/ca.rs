//! The test PKI: a root CA and a deployment-spec signer issued by it (the
//! agent is told to trust the root), plus an unrelated "foreign" CA and signer
//! for negative tests; the trusted root also issues the certificate of the
//! loopback HTTPS endpoints (`tls_relay`). Everything is generated at test time with the openssl
//! crate; nothing is read from disk and no key ever leaves the test.
//!
//! Only certificate plumbing lives here; signing deployment specifications
//! is the emulator's job (`emulator::spec`).

use std::io;
use std::path::Path;

use openssl::asn1::{Asn1Integer, Asn1Time};
use openssl::bn::{BigNum, MsbOption};
use openssl::error::ErrorStack;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::x509::extension::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
    SubjectKeyIdentifier,
};
use openssl::x509::{X509Builder, X509Name, X509NameBuilder, X509};

/// A certificate together with its private key.
#[derive(Debug, Clone)]
pub struct CertifiedKey {
    pub cert: X509,
    pub key: PKey<Private>,
}

impl CertifiedKey {
    /// The certificate as PEM text.
    pub fn cert_pem(&self) -> String {
        String::from_utf8(
            self.cert
                .to_pem()
                .expect("an in-memory certificate encodes to PEM"),
        )
        .expect("PEM is ASCII")
    }
}

/// One certificate authority and the spec signer it issued.
#[derive(Debug, Clone)]
pub struct SigningAuthority {
    pub root: CertifiedKey,
    pub signer: CertifiedKey,
}

impl SigningAuthority {
    /// Generates a root CA named `<name> Root CA` and a signer named
    /// `<name> Deployment Signer`.
    pub fn generate(name: &str) -> Result<Self, ErrorStack> {
        let root = issue_root(&format!("{name} Root CA"))?;
        let signer = issue_signer(&format!("{name} Deployment Signer"), &root)?;
        Ok(SigningAuthority { root, signer })
    }

    /// The CA chain as PEM (the root certificate): what the agent's
    /// `deployment_spec_ca_file` holds.
    pub fn chain_pem(&self) -> String {
        self.root.cert_pem()
    }
}

/// The PKI a test runs with: the trusted authority and a foreign one.
#[derive(Debug, Clone)]
pub struct TestPki {
    /// The authority whose root the agent trusts.
    pub trusted: SigningAuthority,
    /// An authority the agent knows nothing about.
    pub foreign: SigningAuthority,
}

impl TestPki {
    pub fn generate() -> Result<Self, ErrorStack> {
        Ok(TestPki {
            trusted: SigningAuthority::generate("CodeDeploy E2E Test")?,
            foreign: SigningAuthority::generate("Foreign Test")?,
        })
    }

    /// A TLS server certificate for 127.0.0.1, issued by the trusted root:
    /// a client that trusts the CA chain file accepts the endpoint.
    pub fn loopback_server(&self) -> Result<CertifiedKey, ErrorStack> {
        issue_loopback_server(&self.trusted.root)
    }

    /// Writes the trusted CA chain PEM to `path`.
    pub fn write_ca_chain(&self, path: &Path) -> io::Result<()> {
        std::fs::write(path, self.trusted.chain_pem())
    }
}

fn new_key() -> Result<PKey<Private>, ErrorStack> {
    PKey::from_rsa(Rsa::generate(2048)?)
}

fn random_serial() -> Result<Asn1Integer, ErrorStack> {
    let mut serial = BigNum::new()?;
    serial.rand(126, MsbOption::MAYBE_ZERO, false)?;
    serial.to_asn1_integer()
}

fn subject_name(common_name: &str) -> Result<X509Name, ErrorStack> {
    let mut name = X509NameBuilder::new()?;
    name.append_entry_by_text("C", "US")?;
    name.append_entry_by_text("O", "codedeploy-e2e")?;
    name.append_entry_by_text("CN", common_name)?;
    Ok(name.build())
}

fn base_builder(common_name: &str, key: &PKey<Private>) -> Result<X509Builder, ErrorStack> {
    let mut builder = X509Builder::new()?;
    builder.set_version(2)?;
    let serial = random_serial()?;
    builder.set_serial_number(&serial)?;
    let subject = subject_name(common_name)?;
    builder.set_subject_name(&subject)?;
    builder.set_pubkey(key)?;
    // Backdated a little so clock skew between processes never matters.
    let not_before = Asn1Time::from_unix(chrono::Utc::now().timestamp() - 3600)?;
    builder.set_not_before(&not_before)?;
    let not_after = Asn1Time::days_from_now(30)?;
    builder.set_not_after(&not_after)?;
    Ok(builder)
}

fn issue_root(common_name: &str) -> Result<CertifiedKey, ErrorStack> {
    let key = new_key()?;
    let mut builder = base_builder(common_name, &key)?;
    // Self-signed: the issuer is the subject.
    let issuer = subject_name(common_name)?;
    builder.set_issuer_name(&issuer)?;
    builder.append_extension(BasicConstraints::new().critical().ca().build()?)?;
    builder.append_extension(
        KeyUsage::new()
            .critical()
            .key_cert_sign()
            .crl_sign()
            .build()?,
    )?;
    let ski = SubjectKeyIdentifier::new().build(&builder.x509v3_context(None, None))?;
    builder.append_extension(ski)?;
    builder.sign(&key, MessageDigest::sha256())?;
    Ok(CertifiedKey {
        cert: builder.build(),
        key,
    })
}

fn issue_signer(common_name: &str, issuer: &CertifiedKey) -> Result<CertifiedKey, ErrorStack> {
    let key = new_key()?;
    let mut builder = base_builder(common_name, &key)?;
    builder.set_issuer_name(issuer.cert.subject_name())?;
    builder.append_extension(BasicConstraints::new().critical().build()?)?;
    builder.append_extension(KeyUsage::new().critical().digital_signature().build()?)?;
    // emailProtection makes the S/MIME purpose check of PKCS7_verify pass too.
    builder.append_extension(ExtendedKeyUsage::new().email_protection().build()?)?;
    let ski =
        SubjectKeyIdentifier::new().build(&builder.x509v3_context(Some(&issuer.cert), None))?;
    builder.append_extension(ski)?;
    let aki = AuthorityKeyIdentifier::new()
        .keyid(true)
        .build(&builder.x509v3_context(Some(&issuer.cert), None))?;
    builder.append_extension(aki)?;
    builder.sign(&issuer.key, MessageDigest::sha256())?;
    Ok(CertifiedKey {
        cert: builder.build(),
        key,
    })
}

fn issue_loopback_server(issuer: &CertifiedKey) -> Result<CertifiedKey, ErrorStack> {
    let key = new_key()?;
    let mut builder = base_builder("127.0.0.1", &key)?;
    builder.set_issuer_name(issuer.cert.subject_name())?;
    builder.append_extension(BasicConstraints::new().critical().build()?)?;
    builder.append_extension(
        KeyUsage::new()
            .critical()
            .digital_signature()
            .key_encipherment()
            .build()?,
    )?;
    builder.append_extension(ExtendedKeyUsage::new().server_auth().build()?)?;
    // Clients match the address against the SAN, never the common name.
    let san = SubjectAlternativeName::new()
        .ip("127.0.0.1")
        .build(&builder.x509v3_context(Some(&issuer.cert), None))?;
    builder.append_extension(san)?;
    builder.sign(&issuer.key, MessageDigest::sha256())?;
    Ok(CertifiedKey {
        cert: builder.build(),
        key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::stack::Stack;
    use openssl::x509::store::X509StoreBuilder;
    use openssl::x509::X509StoreContext;

    fn verifies(chain_root: &X509, leaf: &X509) -> bool {
        let mut store = X509StoreBuilder::new().unwrap();
        store.add_cert(chain_root.clone()).unwrap();
        let store = store.build();
        let mut ctx = X509StoreContext::new().unwrap();
        let untrusted = Stack::new().unwrap();
        ctx.init(&store, leaf, &untrusted, |c| c.verify_cert())
            .unwrap()
    }

    #[test]
    fn signer_chains_to_its_own_root_only() {
        let pki = TestPki::generate().unwrap();
        assert!(verifies(&pki.trusted.root.cert, &pki.trusted.signer.cert));
        assert!(verifies(&pki.foreign.root.cert, &pki.foreign.signer.cert));
        assert!(!verifies(&pki.trusted.root.cert, &pki.foreign.signer.cert));
    }

    #[test]
    fn loopback_server_certificate_chains_to_the_trusted_root() {
        let pki = TestPki::generate().unwrap();
        let server = pki.loopback_server().unwrap();
        assert!(verifies(&pki.trusted.root.cert, &server.cert));
        assert!(!verifies(&pki.foreign.root.cert, &server.cert));
    }

    #[test]
    fn ca_chain_file_holds_the_trusted_root() {
        let pki = TestPki::generate().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca-chain.pem");
        pki.write_ca_chain(&path).unwrap();
        let certs = X509::stack_from_pem(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(certs.len(), 1);
        assert_eq!(
            certs[0].to_der().unwrap(),
            pki.trusted.root.cert.to_der().unwrap()
        );
    }
}
