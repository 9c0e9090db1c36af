//! Certificates made per test: a CA, and leaf certificates it signs for
//! `localhost` / `127.0.0.1` (server and client use), written as PEM files.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
    SanType,
};

/// A CA of a test; it signs leaves into `dir`.
pub struct TestCa {
    certificate: Certificate,
    key: KeyPair,
    dir: PathBuf,
    name: String,
}

/// A leaf's PEM files.
#[derive(Debug, Clone)]
pub struct Leaf {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

impl TestCa {
    /// A new CA called `name`, its files in `dir` (`{name}-ca.pem`).
    pub fn new(dir: &Path, name: &str) -> TestCa {
        let key = KeyPair::generate().expect("a CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, format!("Switchboard test CA {name}"));
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let certificate = params.self_signed(&key).expect("a self-signed CA");
        std::fs::write(dir.join(format!("{name}-ca.pem")), certificate.pem()).expect("CA file");
        TestCa { certificate, key, dir: dir.to_owned(), name: name.to_owned() }
    }

    pub fn ca_file(&self) -> PathBuf {
        self.dir.join(format!("{}-ca.pem", self.name))
    }

    /// A certificate for `localhost` and 127.0.0.1, good for servers and
    /// clients, written as `{leaf}.pem` and `{leaf}-key.pem`.
    pub fn leaf(&self, leaf: &str) -> Leaf {
        let files = Leaf {
            cert_file: self.dir.join(format!("{leaf}.pem")),
            key_file: self.dir.join(format!("{leaf}-key.pem")),
        };
        self.write_leaf(&files, leaf);
        files
    }

    /// Signs a new certificate into `files` (a renewal, or a move to this CA).
    pub fn write_leaf(&self, files: &Leaf, common_name: &str) {
        let key = KeyPair::generate().expect("a leaf key");
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).expect("leaf parameters");
        params.subject_alt_names.push(SanType::IpAddress(std::net::IpAddr::from([127, 0, 0, 1])));
        params.distinguished_name.push(DnType::CommonName, common_name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        let certificate = params.signed_by(&key, &self.certificate, &self.key).expect("a signed leaf");
        std::fs::write(&files.key_file, key.serialize_pem()).expect("key file");
        std::fs::write(&files.cert_file, certificate.pem()).expect("certificate file");
    }
}
