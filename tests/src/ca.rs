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
        self.issue_with(&data_dir.join("node.csr.pem"), days, &[])
    }

    /// `yui ca issue --renew` (or `--rotate`) for the request `csr` (a
    /// data directory's `node.csr.pem`, or `node.next.csr.pem` after `yui
    /// cert rotate-key`); returns the certificate file.
    pub fn reissue(&self, csr: &Path, days: u32, how: &str) -> PathBuf {
        self.issue_with(csr, days, &[how])
    }

    fn issue_with(&self, csr: &Path, days: u32, extra: &[&str]) -> PathBuf {
        let n = self
            .issued
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let out = self.dir.join(format!("issued-{n}.cert.pem"));
        let days = days.to_string();
        let mut args = vec![
            "ca",
            "issue",
            "--ca-dir",
            self.arg(),
            "--csr",
            csr.to_str().expect("utf8"),
            "--out",
            out.to_str().expect("utf8"),
            "--days",
            &days,
        ];
        args.extend_from_slice(extra);
        self.run(&args);
        out
    }

    /// `yui ca rollover` (`--finish` with `finish`).
    pub fn rollover(&self, finish: bool) -> String {
        let mut args = vec!["ca", "rollover", "--ca-dir", self.arg()];
        if finish {
            args.push("--finish");
        }
        self.run(&args)
    }

    /// During a rollover's overlap: both CA certificates.
    pub fn bundle_path(&self) -> PathBuf {
        self.dir.join("ca-bundle.pem")
    }

    /// Issues and installs a certificate: the node in `data_dir` joins.
    pub fn admit(&self, data_dir: &Path) {
        let cert = self.issue(data_dir, 30);
        self.install(data_dir, &cert);
    }

    /// `yui cert install` of `cert` with this CA's certificate.
    fn install(&self, data_dir: &Path, cert: &Path) {
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

    /// [`Ca::admit`] with `yui ca issue --name NAME`: the CA states the
    /// town's name, whatever the request asked for.
    pub fn admit_named(&self, data_dir: &Path, name: &str) {
        let cert = self.issue_with(&data_dir.join("node.csr.pem"), 30, &["--name", name]);
        self.install(data_dir, &cert);
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
        let csr = rcgen::CertificateSigningRequestParams::from_pem(
            &std::fs::read_to_string(data_dir.join("node.csr.pem")).expect("read csr"),
        )
        .expect("csr");
        let now = time::OffsetDateTime::now_utc();
        let pem = NodeCert {
            not_before: now - time::Duration::days(30),
            not_after: now - time::Duration::days(1),
            ..NodeCert::like_issued(town)
        }
        .sign(&self.key_path(), &self.cert_path(), &csr.public_key);
        let n = self
            .issued
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let out = self.dir.join(format!("expired-{n}.cert.pem"));
        std::fs::write(&out, pem).expect("write cert");
        out
    }
}

/// A node certificate made by hand with a CA's key, as `yui ca issue` makes
/// one unless a field says otherwise: for certificates `yui ca issue` never
/// makes (expired, without the usages a node needs).
pub struct NodeCert<'a> {
    pub town: &'a str,
    pub not_before: time::OffsetDateTime,
    pub not_after: time::OffsetDateTime,
    pub key_usages: Vec<rcgen::KeyUsagePurpose>,
    pub extended_key_usages: Vec<rcgen::ExtendedKeyUsagePurpose>,
}

impl<'a> NodeCert<'a> {
    /// What `yui ca issue` makes for `town`, valid for 30 days.
    pub fn like_issued(town: &'a str) -> NodeCert<'a> {
        let now = time::OffsetDateTime::now_utc();
        NodeCert {
            town,
            not_before: now - time::Duration::minutes(5),
            not_after: now + time::Duration::days(30),
            key_usages: vec![rcgen::KeyUsagePurpose::DigitalSignature],
            extended_key_usages: vec![
                rcgen::ExtendedKeyUsagePurpose::ServerAuth,
                rcgen::ExtendedKeyUsagePurpose::ClientAuth,
            ],
        }
    }

    /// Signs a certificate for `public_key` with the CA key and certificate
    /// in the PEM files `ca_key` and `ca_cert`; returns it as PEM.
    pub fn sign(
        self,
        ca_key: &Path,
        ca_cert: &Path,
        public_key: &impl rcgen::PublicKeyData,
    ) -> String {
        use rcgen::{CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType, SerialNumber};
        let read = |p: &Path| std::fs::read_to_string(p).expect("read pem");
        let key = KeyPair::from_pem(&read(ca_key)).expect("CA key");
        let issuer = Issuer::from_ca_cert_pem(&read(ca_cert), key).expect("CA cert");
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, self.town);
        params.subject_alt_names = vec![
            SanType::DnsName("node.yui.invalid".try_into().expect("dns")),
            SanType::URI(
                format!("urn:yui:town:{}", self.town)
                    .try_into()
                    .expect("uri"),
            ),
        ];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = self.key_usages;
        params.extended_key_usages = self.extended_key_usages;
        params.not_before = self.not_before;
        params.not_after = self.not_after;
        let nanos = time::OffsetDateTime::now_utc()
            .unix_timestamp_nanos()
            .to_be_bytes();
        let mut serial = nanos[8..].to_vec();
        serial[0] = (serial[0] & 0x7f) | 0x01;
        params.serial_number = Some(SerialNumber::from_slice(&serial));
        params.use_authority_key_identifier_extension = true;
        params.signed_by(public_key, &issuer).expect("sign").pem()
    }
}

/// Puts a node certificate and a CA certificate into a data directory
/// without the checks of `yui cert install` (to build nodes that hold a
/// certificate a real installation would refuse).
pub fn install_unchecked(data_dir: &Path, cert: &Path, ca_cert: &Path) {
    std::fs::copy(cert, data_dir.join("node.cert.pem")).expect("copy cert");
    std::fs::copy(ca_cert, data_dir.join("ca.cert.pem")).expect("copy CA cert");
}
