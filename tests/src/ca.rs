//! A consortium CA made with `yui ca init`, the certificates it issues with
//! `yui ca issue`, and the ones only a test may make (expired, installed
//! without checks).

use std::path::{Path, PathBuf};

use crate::cli::{init, yui_ok};

/// A consortium CA directory made with `yui ca init`.
pub struct Ca {
    pub dir: PathBuf,
    issued: std::sync::atomic::AtomicUsize,
}

impl Ca {
    pub fn init(dir: &Path, name: &str) -> Ca {
        let ca = Ca {
            dir: dir.to_owned(),
            issued: std::sync::atomic::AtomicUsize::new(0),
        };
        ca.run(&["ca", "init", "--ca-dir", ca.arg(), "--name", name]);
        ca
    }

    fn arg(&self) -> &str {
        self.dir.to_str().expect("utf8 path")
    }

    /// Runs a `yui ca …` command (they take no data directory).
    fn run(&self, args: &[&str]) -> String {
        yui_ok(self.dir.parent().expect("parent"), args)
    }

    pub fn cert_path(&self) -> PathBuf {
        self.dir.join("ca.cert.pem")
    }

    pub fn key_path(&self) -> PathBuf {
        self.dir.join("ca.key.pem")
    }

    pub fn revocations_path(&self) -> PathBuf {
        self.dir.join("revocations.pem")
    }

    /// `yui ca issue` for the node in `data_dir`; returns the certificate file.
    pub fn issue(&self, data_dir: &Path, days: u32) -> PathBuf {
        let n = self
            .issued
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let out = self.dir.join(format!("issued-{n}.cert.pem"));
        let csr = data_dir.join("node.csr.pem");
        self.run(&[
            "ca",
            "issue",
            "--ca-dir",
            self.arg(),
            "--csr",
            csr.to_str().expect("utf8"),
            "--out",
            out.to_str().expect("utf8"),
            "--days",
            &days.to_string(),
        ]);
        out
    }

    /// Issues and installs a certificate: the node in `data_dir` joins.
    pub fn admit(&self, data_dir: &Path) {
        let cert = self.issue(data_dir, 30);
        yui_ok(
            data_dir,
            &[
                "cert",
                "install",
                "--cert",
                cert.to_str().expect("utf8"),
                "--ca-cert",
                self.cert_path().to_str().expect("utf8"),
            ],
        );
    }

    /// `yui ca revoke --town TOWN`; returns the new revocation list file.
    pub fn revoke_town(&self, town: &str) -> PathBuf {
        self.run(&["ca", "revoke", "--ca-dir", self.arg(), "--town", town]);
        self.revocations_path()
    }
}

/// `yui init --town TOWN` in `root/TOWN`, then joins the consortium of `ca`.
pub fn member(root: &Path, town: &str, ca: &Ca) -> PathBuf {
    let data = root.join(town);
    init(&data, town);
    ca.admit(&data);
    data
}

impl Ca {
    /// A certificate for the node in `data_dir` (town `town`) signed by this
    /// CA as `yui ca issue` would, except that it expired yesterday. `yui ca
    /// issue` refuses to make one, and `yui cert install` to install one:
    /// use [`install_unchecked`].
    pub fn issue_expired(&self, data_dir: &Path, town: &str) -> PathBuf {
        use rcgen::{
            CertificateParams, CertificateSigningRequestParams, DnType, ExtendedKeyUsagePurpose,
            IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
        };
        let read = |p: PathBuf| std::fs::read_to_string(&p).expect("read pem");
        let csr = CertificateSigningRequestParams::from_pem(&read(data_dir.join("node.csr.pem")))
            .expect("csr");
        let key = KeyPair::from_pem(&read(self.key_path())).expect("CA key");
        let issuer = Issuer::from_ca_cert_pem(&read(self.cert_path()), key).expect("CA cert");
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, town);
        params.subject_alt_names = vec![
            SanType::DnsName("node.yui.invalid".try_into().expect("dns")),
            SanType::URI(format!("urn:yui:town:{town}").try_into().expect("uri")),
        ];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(30);
        params.not_after = now - time::Duration::days(1);
        let nanos = now.unix_timestamp_nanos().to_be_bytes();
        let mut serial = nanos[8..].to_vec();
        serial[0] = (serial[0] & 0x7f) | 0x01;
        params.serial_number = Some(SerialNumber::from_slice(&serial));
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&csr.public_key, &issuer).expect("sign");
        let n = self
            .issued
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let out = self.dir.join(format!("expired-{n}.cert.pem"));
        std::fs::write(&out, cert.pem()).expect("write cert");
        out
    }
}

/// Puts a node certificate and a CA certificate into a data directory
/// without the checks of `yui cert install` (to build nodes that hold a
/// certificate a real installation would refuse).
pub fn install_unchecked(data_dir: &Path, cert: &Path, ca_cert: &Path) {
    std::fs::copy(cert, data_dir.join("node.cert.pem")).expect("copy cert");
    std::fs::copy(ca_cert, data_dir.join("ca.cert.pem")).expect("copy CA cert");
}
