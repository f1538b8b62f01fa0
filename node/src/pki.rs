//! The consortium's certificates: the CA (`yui ca …`), node certificates,
//! revocation lists, and reading a peer's identity out of its certificate.
//!
//! A node certificate binds a town id (subject CN and a `urn:yui:town:ID`
//! URI name) to the node's public key, and carries both `serverAuth` and
//! `clientAuth` usages, since every node both dials and is dialled. The node
//! id is the fingerprint of that public key ([`crate::datadir::node_id`]), so
//! it is the same whether computed from the key at `init` or from the
//! certificate a peer presents. Every node certificate also names
//! [`NODE_DNS_NAME`]: TLS clients need *a* name to check, and identity is
//! then checked against the node id, never against the address dialled.
//!
//! CA directory layout (kept by the consortium secretariat, off any node):
//!
//! ```text
//! ca-dir/             mode 0700
//!   ca.key.pem        the CA's private key, mode 0600
//!   ca.cert.pem       the CA certificate every node trusts
//!   ca.json           issued and revoked certificates, CRL number
//!   revocations.pem   the latest signed revocation list
//! ```

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rand::RngCore;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams,
    CertificateSigningRequestParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod,
    KeyPair, KeyUsagePurpose, RevokedCertParams, SanType, SerialNumber,
};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use yui_protocol::provenance::{Signer, SignerId};

use crate::datadir::node_id;
use crate::error::{Error, Result};
pub use crate::fsio::replace_file;
use crate::fsio::write_private;
use crate::store::ChangeSigning;

/// The DNS name in every node certificate (see the module doc).
pub const NODE_DNS_NAME: &str = "node.yui.invalid";
const TOWN_URI_PREFIX: &str = "urn:yui:town:";
/// Default lifetime of a node certificate.
pub const DEFAULT_CERT_DAYS: i64 = 397;
const CA_YEARS: i64 = 10;
/// Expiry closer than this shows as a warning.
pub const EXPIRY_WARNING_DAYS: i64 = 30;

fn pki_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Config(format!("{what}: {e}"))
}

/// A peer as its certificate identifies it. Built only from a certificate
/// that chained to the consortium CA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    pub town: String,
    pub node_id: String,
    /// The certificate's serial number, as revocation lists name it.
    pub serial: Vec<u8>,
    pub not_after: i64,
    /// The certificate itself (DER): it also binds the node's change
    /// signatures to its town (`peer::signers`).
    pub certificate: Vec<u8>,
}

/// Reads the identity out of a node certificate (DER). Does not verify the
/// chain: the TLS layer has done that before this is called.
pub fn identity(der: &[u8]) -> Result<PeerIdentity> {
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|e| pki_err("reading a certificate", e))?;
    let mut town = None;
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let GeneralName::URI(uri) = name
                && let Some(t) = uri.strip_prefix(TOWN_URI_PREFIX)
            {
                town = Some(t.to_owned());
            }
        }
    }
    let town = town.ok_or_else(|| Error::Config("the certificate names no Yui town".into()))?;
    yui_protocol::record::check_town_id(&town).map_err(Error::Config)?;
    Ok(PeerIdentity {
        town,
        node_id: node_id(cert.public_key().raw),
        serial: cert.raw_serial().to_vec(),
        not_after: cert.validity().not_after.timestamp(),
        certificate: der.to_vec(),
    })
}

/// The side of a handshake a node certificate is presented on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    /// Presented by the node that dials: needs `clientAuth`.
    Client,
    /// Presented by the node that is dialled: needs `serverAuth`.
    Server,
}

impl Usage {
    fn eku_name(self) -> &'static str {
        match self {
            Usage::Client => "clientAuth",
            Usage::Server => "serverAuth",
        }
    }
}

/// Checks that a node certificate (DER) may be used on `usage`'s side of a
/// handshake: a key usage extension with `digitalSignature` and an extended
/// key usage extension naming `clientAuth` or `serverAuth`. An absent
/// extension is refused although RFC 5280 reads it as "any use" (and
/// webpki accepts it): every certificate `yui ca issue` makes carries both
/// (protocol.md 2.1), so a certificate without them was made some other way.
pub fn check_usage(der: &[u8], usage: Usage) -> std::result::Result<(), String> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| format!("unreadable: {e}"))?;
    let needed = usage.eku_name();
    match cert.key_usage() {
        Ok(Some(ku)) if ku.value.digital_signature() => {}
        Ok(Some(_)) => return Err("its key usage does not include digitalSignature".into()),
        Ok(None) => {
            return Err("it has no key usage extension (digitalSignature is required)".into());
        }
        Err(e) => return Err(format!("its key usage extension is unreadable: {e}")),
    }
    let eku = match cert.extended_key_usage() {
        Ok(Some(eku)) => eku.value,
        Ok(None) => {
            return Err(format!(
                "it has no extended key usage extension ({needed} is required)"
            ));
        }
        Err(e) => {
            return Err(format!(
                "its extended key usage extension is unreadable: {e}"
            ));
        }
    };
    let allowed = match usage {
        Usage::Client => eku.client_auth,
        Usage::Server => eku.server_auth,
    };
    if allowed {
        Ok(())
    } else {
        Err(format!("its extended key usage does not include {needed}"))
    }
}

fn parse_pem(pem_text: &str, what: &str) -> Result<Vec<u8>> {
    let (_, pem) =
        x509_parser::pem::parse_x509_pem(pem_text.as_bytes()).map_err(|e| pki_err(what, e))?;
    Ok(pem.contents)
}

pub fn read_pem_file(path: &Path, what: &str) -> Result<Vec<u8>> {
    let text =
        fs::read_to_string(path).map_err(|e| pki_err(&format!("reading {}", path.display()), e))?;
    parse_pem(&text, &format!("{what} {}", path.display()))
}

/// The issued/revoked register of a CA directory.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Register {
    name: String,
    crl_number: u64,
    issued: Vec<Issued>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Issued {
    serial_hex: String,
    town: String,
    node_id: String,
    not_after: String,
    revoked_at: Option<String>,
}

/// A consortium CA directory.
pub struct CaDir {
    pub path: PathBuf,
}

impl CaDir {
    pub fn new(path: impl Into<PathBuf>) -> CaDir {
        CaDir { path: path.into() }
    }
    pub fn key_path(&self) -> PathBuf {
        self.path.join("ca.key.pem")
    }
    pub fn cert_path(&self) -> PathBuf {
        self.path.join("ca.cert.pem")
    }
    fn register_path(&self) -> PathBuf {
        self.path.join("ca.json")
    }
    pub fn crl_path(&self) -> PathBuf {
        self.path.join("revocations.pem")
    }

    /// `yui ca init`: a new CA key and self-signed certificate.
    pub fn init(&self, name: &str, now: OffsetDateTime) -> Result<()> {
        if self.key_path().exists() {
            return Err(Error::Config(format!(
                "{} already holds a CA; nothing was changed",
                self.path.display()
            )));
        }
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.path)
            .map_err(|e| pki_err(&format!("creating {}", self.path.display()), e))?;
        fs::set_permissions(&self.path, fs::Permissions::from_mode(0o700))
            .map_err(|e| pki_err("setting permissions", e))?;
        let key = KeyPair::generate().map_err(|e| pki_err("generating the CA key", e))?;
        let cert = ca_params(name, now)?
            .self_signed(&key)
            .map_err(|e| pki_err("signing the CA certificate", e))?;
        write_private(&self.key_path(), key.serialize_pem().as_bytes())?;
        write_public(&self.cert_path(), cert.pem().as_bytes())?;
        self.save_register(&Register {
            name: name.to_owned(),
            ..Register::default()
        })
    }

    fn issuer(&self) -> Result<Issuer<'static, KeyPair>> {
        let key_pem = fs::read_to_string(self.key_path()).map_err(|e| {
            pki_err(
                &format!(
                    "reading {} (is this a CA directory?)",
                    self.key_path().display()
                ),
                e,
            )
        })?;
        let key = KeyPair::from_pem(&key_pem).map_err(|e| pki_err("reading the CA key", e))?;
        let cert_pem = fs::read_to_string(self.cert_path())
            .map_err(|e| pki_err("reading the CA certificate", e))?;
        Issuer::from_ca_cert_pem(&cert_pem, key)
            .map_err(|e| pki_err("reading the CA certificate", e))
    }

    fn register(&self) -> Result<Register> {
        let text = fs::read_to_string(self.register_path())
            .map_err(|e| pki_err(&format!("reading {}", self.register_path().display()), e))?;
        serde_json::from_str(&text)
            .map_err(|e| pki_err(&format!("reading {}", self.register_path().display()), e))
    }

    fn save_register(&self, r: &Register) -> Result<()> {
        let text =
            serde_json::to_string_pretty(r).map_err(|e| pki_err("writing the register", e))?;
        replace_file(&self.register_path(), text.as_bytes(), 0o600)
    }

    /// `yui ca issue`: signs a node's certificate request.
    pub fn issue(
        &self,
        csr_pem: &str,
        days: i64,
        now: OffsetDateTime,
    ) -> Result<(String, PeerIdentity)> {
        if !(1..=3650).contains(&days) {
            return Err(Error::Config("--days must be between 1 and 3650".into()));
        }
        let issuer = self.issuer()?;
        let csr = CertificateSigningRequestParams::from_pem(csr_pem).map_err(|e| {
            pki_err(
                "reading the certificate request (is it node.csr.pem from `yui init`?)",
                e,
            )
        })?;
        let town = csr
            .params
            .distinguished_name
            .get(&DnType::CommonName)
            .and_then(|v| match v {
                rcgen::DnValue::Utf8String(s) => Some(s.clone()),
                rcgen::DnValue::PrintableString(s) => Some(s.as_str().to_owned()),
                rcgen::DnValue::Ia5String(s) => Some(s.as_str().to_owned()),
                _ => None,
            })
            .ok_or_else(|| Error::Config("the certificate request names no town (CN)".into()))?;
        yui_protocol::record::check_town_id(&town).map_err(Error::Config)?;
        let org = csr
            .params
            .distinguished_name
            .get(&DnType::OrganizationName)
            .cloned();

        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, town.clone());
        if let Some(org) = org {
            params
                .distinguished_name
                .push(DnType::OrganizationName, org);
        }
        params.subject_alt_names = vec![
            SanType::DnsName(NODE_DNS_NAME.try_into().map_err(|e| pki_err("name", e))?),
            SanType::URI(
                format!("{TOWN_URI_PREFIX}{town}")
                    .try_into()
                    .map_err(|e| pki_err("name", e))?,
            ),
        ];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.not_before = now - Duration::minutes(5);
        params.not_after = now + Duration::days(days);
        let mut serial = [0u8; 16];
        rand::rng().fill_bytes(&mut serial);
        serial[0] &= 0x7f; // positive
        serial[0] |= 0x01; // no leading zero byte to strip
        params.serial_number = Some(SerialNumber::from_slice(&serial));
        params.use_authority_key_identifier_extension = true;
        params.key_identifier_method = KeyIdMethod::Sha256;
        let cert = params
            .signed_by(&csr.public_key, &issuer)
            .map_err(|e| pki_err("signing the node certificate", e))?;
        let id = identity(cert.der())?;
        let mut register = self.register()?;
        register.issued.push(Issued {
            serial_hex: hex(&id.serial),
            town: id.town.clone(),
            node_id: id.node_id.clone(),
            not_after: yui_protocol::record::format_time(id.not_after * 1000),
            revoked_at: None,
        });
        self.save_register(&register)?;
        Ok((cert.pem(), id))
    }

    /// `yui ca revoke`: revokes every certificate of a town, or one node's,
    /// and writes a new signed revocation list. Returns what was revoked.
    pub fn revoke(
        &self,
        town: Option<&str>,
        node: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<Vec<String>> {
        let mut register = self.register()?;
        let mut revoked = Vec::new();
        for cert in &mut register.issued {
            let hit =
                town.is_some_and(|t| cert.town == t) || node.is_some_and(|n| cert.node_id == n);
            if hit && cert.revoked_at.is_none() {
                cert.revoked_at = Some(yui_protocol::record::format_time(
                    now.unix_timestamp() * 1000,
                ));
                revoked.push(format!("{} ({})", cert.town, cert.node_id));
            }
        }
        if revoked.is_empty() {
            return Err(Error::Config(match (town, node) {
                (Some(t), _) => {
                    format!("no unrevoked certificate of town {t} was issued by this CA")
                }
                (_, Some(n)) => {
                    format!("no unrevoked certificate of node {n} was issued by this CA")
                }
                _ => "name a --town or a --node to revoke".into(),
            }));
        }
        register.crl_number += 1;
        self.write_crl(&register, now)?;
        self.save_register(&register)?;
        Ok(revoked)
    }

    fn write_crl(&self, register: &Register, now: OffsetDateTime) -> Result<()> {
        let issuer = self.issuer()?;
        let revoked_certs = register
            .issued
            .iter()
            .filter(|c| c.revoked_at.is_some())
            .filter_map(|c| {
                Some(RevokedCertParams {
                    serial_number: SerialNumber::from_slice(&unhex(&c.serial_hex)?),
                    revocation_time: now,
                    reason_code: None,
                    invalidity_date: None,
                })
            })
            .collect();
        let crl = CertificateRevocationListParams {
            this_update: now,
            next_update: now + Duration::days(365),
            crl_number: SerialNumber::from(register.crl_number),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: KeyIdMethod::Sha256,
        }
        .signed_by(&issuer)
        .map_err(|e| pki_err("signing the revocation list", e))?;
        let pem = crl
            .pem()
            .map_err(|e| pki_err("encoding the revocation list", e))?;
        replace_file(&self.crl_path(), pem.as_bytes(), 0o644)
    }
}

fn ca_params(name: &str, now: OffsetDateTime) -> Result<CertificateParams> {
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, name);
    params
        .distinguished_name
        .push(DnType::OrganizationName, "Yui consortium");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = now - Duration::minutes(5);
    params.not_after = now + Duration::days(365 * CA_YEARS);
    params.key_identifier_method = KeyIdMethod::Sha256;
    Ok(params)
}

/// A verified revocation list.
#[derive(Debug, Clone, Default)]
pub struct Revocations {
    pub number: u64,
    pub serials: HashSet<Vec<u8>>,
    /// The list as signed by the CA (DER), to pass on to peers.
    pub der: Vec<u8>,
}

impl Revocations {
    /// Checks a revocation list (DER) against the CA certificate (DER).
    pub fn verify(crl_der: &[u8], ca_der: &[u8]) -> Result<Revocations> {
        let (_, ca) = X509Certificate::from_der(ca_der)
            .map_err(|e| pki_err("reading the CA certificate", e))?;
        let (_, crl) = x509_parser::revocation_list::CertificateRevocationList::from_der(crl_der)
            .map_err(|e| pki_err("reading the revocation list", e))?;
        crl.verify_signature(ca.public_key()).map_err(|_| {
            Error::Config("the revocation list is not signed by this consortium's CA".into())
        })?;
        if crl.issuer() != ca.subject() {
            return Err(Error::Config(
                "the revocation list was issued by another CA".into(),
            ));
        }
        let number = crl
            .crl_number()
            .and_then(|n| u64::try_from(n).ok())
            .ok_or_else(|| Error::Config("the revocation list has no usable number".into()))?;
        let serials = crl
            .iter_revoked_certificates()
            .map(|r| r.raw_serial().to_vec())
            .collect();
        Ok(Revocations {
            number,
            serials,
            der: crl_der.to_vec(),
        })
    }

    pub fn is_revoked(&self, serial: &[u8]) -> bool {
        self.serials.contains(serial)
    }

    pub fn pem(&self) -> String {
        let b64 = base64_encode(&self.der);
        let mut out = String::from("-----BEGIN X509 CRL-----\n");
        for line in b64.as_bytes().chunks(64) {
            out.push_str(std::str::from_utf8(line).unwrap_or_default());
            out.push('\n');
        }
        out.push_str("-----END X509 CRL-----\n");
        out
    }
}

/// A certificate of a town that is neither revoked nor expired, as the CA's
/// register holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outstanding {
    pub node_id: String,
    pub serial_hex: String,
    pub not_after: String,
}

impl CaDir {
    /// The certificates issued to `town` that are neither revoked nor
    /// expired at `now`: what `yui ca issue` lists before it issues another.
    pub fn outstanding(&self, town: &str, now: OffsetDateTime) -> Result<Vec<Outstanding>> {
        // The register writes every time in one format: its strings sort as
        // the times do.
        let now = yui_protocol::record::format_time(now.unix_timestamp() * 1000);
        Ok(self
            .register()?
            .issued
            .into_iter()
            .filter(|c| c.town == town && c.revoked_at.is_none() && c.not_after > now)
            .map(|c| Outstanding {
                node_id: c.node_id,
                serial_hex: c.serial_hex,
                not_after: c.not_after,
            })
            .collect())
    }
}

/// The town and node id a certificate request (PEM, `node.csr.pem`) asks a
/// certificate for.
pub fn request_identity(csr_pem: &str) -> Result<(String, String)> {
    use x509_parser::certification_request::X509CertificationRequest;
    let what = "reading the certificate request (is it node.csr.pem from `yui init`?)";
    let (_, pem) =
        x509_parser::pem::parse_x509_pem(csr_pem.as_bytes()).map_err(|e| pki_err(what, e))?;
    let (_, req) =
        X509CertificationRequest::from_der(&pem.contents).map_err(|e| pki_err(what, e))?;
    let info = &req.certification_request_info;
    let town = info
        .subject
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .ok_or_else(|| Error::Config("the certificate request names no town (CN)".into()))?
        .to_owned();
    yui_protocol::record::check_town_id(&town).map_err(Error::Config)?;
    Ok((town, node_id(info.subject_pki.raw)))
}

/// Checks that `der` is a CA certificate.
pub fn check_ca_cert(der: &[u8]) -> Result<()> {
    let (_, ca) =
        X509Certificate::from_der(der).map_err(|e| pki_err("reading the CA certificate", e))?;
    if !ca.is_ca() {
        return Err(Error::Config(
            "the CA certificate is not a CA certificate".into(),
        ));
    }
    Ok(())
}

/// Reads a PEM revocation list.
pub fn parse_crl_pem(text: &str) -> Result<Vec<u8>> {
    let der = parse_pem(text, "revocation list")?;
    if !text.contains("BEGIN X509 CRL") {
        return Err(Error::Config(
            "this is not a revocation list (expected -----BEGIN X509 CRL-----, as `yui ca revoke` writes to revocations.pem)".into(),
        ));
    }
    Ok(der)
}

/// Checks that a signed node certificate fits this node: chains to the CA,
/// carries this node's key and town, may be used on both sides of a
/// handshake ([`check_usage`]), and is currently valid.
pub fn check_node_cert(
    cert_der: &[u8],
    ca_der: &[u8],
    node_id_expected: &str,
    town: &str,
    now: i64,
) -> Result<PeerIdentity> {
    let (_, ca) =
        X509Certificate::from_der(ca_der).map_err(|e| pki_err("reading the CA certificate", e))?;
    if !ca.is_ca() {
        return Err(Error::Config(
            "the CA certificate is not a CA certificate".into(),
        ));
    }
    let (_, cert) = X509Certificate::from_der(cert_der)
        .map_err(|e| pki_err("reading the node certificate", e))?;
    cert.verify_signature(Some(ca.public_key()))
        .map_err(|_| Error::Config("the node certificate is not signed by this CA".into()))?;
    let id = identity(cert_der)?;
    for usage in [Usage::Server, Usage::Client] {
        check_usage(cert_der, usage).map_err(|e| {
            Error::Config(format!(
                "the node certificate cannot serve both sides of a peer connection: {e} (is it from `yui ca issue`?)"
            ))
        })?;
    }
    if id.node_id != node_id_expected {
        return Err(Error::Config(format!(
            "the certificate is for node {}, but this node is {node_id_expected} (was it issued for another town's request?)",
            id.node_id
        )));
    }
    if id.town != town {
        return Err(Error::Config(format!(
            "the certificate is for town {}, but this node is {town}",
            id.town
        )));
    }
    let validity = cert.validity();
    if now < validity.not_before.timestamp() || now > validity.not_after.timestamp() {
        return Err(Error::Config(
            "the certificate is not valid now (check its dates and the clock)".into(),
        ));
    }
    Ok(id)
}

/// A certificate's SubjectPublicKeyInfo (DER).
pub fn spki(der: &[u8]) -> Result<Vec<u8>> {
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|e| pki_err("reading a certificate", e))?;
    Ok(cert.public_key().raw.to_vec())
}

/// The SHA-256 of a SubjectPublicKeyInfo (DER): the node id's bytes, and
/// the signer id of the change signatures made with that key.
pub fn signer_id(spki_der: &[u8]) -> SignerId {
    let digest = ring::digest::digest(&ring::digest::SHA256, spki_der);
    let mut id = [0u8; 32];
    id.copy_from_slice(digest.as_ref());
    SignerId(id)
}

/// A member key for checking change signatures, from a node certificate
/// (DER) that must chain to the consortium CA (`ca_der`), name a town and
/// allow `digitalSignature`. Revoked when `revocations` lists it. Validity
/// dates are not checked: a change made while the certificate was valid
/// stays valid after it expires (protocol.md 7.5).
pub fn signer(der: &[u8], ca_der: &[u8], revocations: &Revocations) -> Result<Signer> {
    let (_, ca) =
        X509Certificate::from_der(ca_der).map_err(|e| pki_err("reading the CA certificate", e))?;
    let (rest, cert) =
        X509Certificate::from_der(der).map_err(|e| pki_err("reading a signer certificate", e))?;
    if !rest.is_empty() {
        return Err(Error::Config(
            "a signer certificate has bytes after its end".into(),
        ));
    }
    if cert.issuer() != ca.subject() {
        return Err(Error::Config(
            "a signer certificate was issued by another CA".into(),
        ));
    }
    cert.verify_signature(Some(ca.public_key())).map_err(|_| {
        Error::Config("a signer certificate is not signed by this consortium's CA".into())
    })?;
    if !cert
        .key_usage()
        .ok()
        .flatten()
        .is_some_and(|k| k.value.digital_signature())
    {
        return Err(Error::Config(
            "a signer certificate does not allow digitalSignature".into(),
        ));
    }
    let spki = cert.public_key();
    // id-ecPublicKey with the P-256 curve: the only keys that sign changes.
    const EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
    const P256: &str = "1.2.840.10045.3.1.7";
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.as_oid().ok())
        .map(|o| o.to_id_string());
    if spki.algorithm.algorithm.to_id_string() != EC_PUBLIC_KEY || curve.as_deref() != Some(P256) {
        return Err(Error::Config(
            "a signer certificate's key is not ECDSA P-256".into(),
        ));
    }
    let id = identity(der)?;
    Ok(Signer {
        id: signer_id(spki.raw),
        town: id.town,
        public_key: spki.subject_public_key.data.to_vec(),
        revoked: revocations.is_revoked(&id.serial),
    })
}

/// Signs changes with the node's key (`node.key.pem`, PEM PKCS#8 as
/// `yui init` writes it).
pub fn change_signing(key_pem: &str) -> Result<(SignerId, ChangeSigning)> {
    let key = KeyPair::from_pem(key_pem).map_err(|e| pki_err("reading the node key", e))?;
    let id = signer_id(&rcgen::PublicKeyData::subject_public_key_info(&key));
    let rng = ring::rand::SystemRandom::new();
    let pair = ring::signature::EcdsaKeyPair::from_pkcs8(
        &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        &key.serialize_der(),
        &rng,
    )
    .map_err(|e| pki_err("reading the node key for signing", e))?;
    let signing: ChangeSigning = std::sync::Arc::new(move |change| {
        match yui_protocol::provenance::sign(&pair, id, change, &rng) {
            Ok(sig) => Some(sig),
            Err(e) => {
                tracing::error!(error = %e, "could not sign a change");
                None
            }
        }
    });
    Ok((id, signing))
}

/// `yui cert install`: checks a signed certificate against this node and
/// installs it with the CA certificate into the data directory.
pub fn install(
    data_dir: &crate::datadir::DataDir,
    town: &str,
    cert_pem: &[u8],
    ca_pem: &[u8],
    now: i64,
) -> Result<PeerIdentity> {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let cert_der = parse_pem(&text(cert_pem), "node certificate")?;
    let ca_der = parse_pem(&text(ca_pem), "CA certificate")?;
    let id = check_node_cert(&cert_der, &ca_der, &data_dir.node_id()?, town, now)?;
    replace_file(&data_dir.ca_cert_path(), ca_pem, 0o644)?;
    replace_file(&data_dir.cert_path(), cert_pem, 0o644)?;
    Ok(id)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

fn base64_encode(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(T[(n >> 18) as usize & 63] as char);
        out.push(T[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 {
            T[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if chunk.len() > 2 {
            T[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

fn write_public(path: &Path, data: &[u8]) -> Result<()> {
    replace_file(path, data, 0o644)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datadir::{DataDir, InitOptions};

    fn init_node(dir: &Path, town: &str) -> DataDir {
        let data = DataDir::new(dir.join(town));
        data.init(&InitOptions {
            town: town.into(),
            name: String::new(),
            api_listen: "127.0.0.1:0".parse().expect("addr"),
            peer_listen: "127.0.0.1:0".parse().expect("addr"),
        })
        .expect("init");
        data
    }

    #[test]
    fn issue_install_revoke() {
        let tmp = tempfile::tempdir().expect("tmp");
        let now = OffsetDateTime::now_utc();
        let ca = CaDir::new(tmp.path().join("ca"));
        ca.init("信州コンソーシアム", now).expect("ca init");
        assert!(ca.init("again", now).is_err());
        assert_eq!(
            fs::metadata(ca.key_path())
                .expect("key")
                .permissions()
                .mode()
                & 0o777,
            0o600
        );
        let ca_der = read_pem_file(&ca.cert_path(), "CA").expect("ca pem");

        let node = init_node(tmp.path(), "tateshina");
        let csr = fs::read_to_string(node.csr_path()).expect("csr");
        let (pem, id) = ca.issue(&csr, 30, now).expect("issue");
        assert_eq!(id.town, "tateshina");
        assert_eq!(
            id.node_id,
            node.node_id().expect("node id"),
            "the same id from key and certificate"
        );
        let cert_der = parse_pem(&pem, "cert").expect("pem");
        check_node_cert(
            &cert_der,
            &ca_der,
            &id.node_id,
            "tateshina",
            now.unix_timestamp(),
        )
        .expect("fits");
        assert!(
            check_node_cert(
                &cert_der,
                &ca_der,
                &id.node_id,
                "omachi",
                now.unix_timestamp()
            )
            .is_err()
        );
        let later = now.unix_timestamp() + 31 * 86_400;
        assert!(
            check_node_cert(&cert_der, &ca_der, &id.node_id, "tateshina", later).is_err(),
            "expired"
        );

        // Another CA's certificate does not fit.
        let other = CaDir::new(tmp.path().join("other-ca"));
        other.init("other", now).expect("init");
        let other_der = read_pem_file(&other.cert_path(), "CA").expect("pem");
        assert!(
            check_node_cert(
                &cert_der,
                &other_der,
                &id.node_id,
                "tateshina",
                now.unix_timestamp()
            )
            .is_err()
        );

        let omachi = init_node(tmp.path(), "omachi");
        let (_, omachi_id) = ca
            .issue(
                &fs::read_to_string(omachi.csr_path()).expect("csr"),
                30,
                now,
            )
            .expect("issue");
        let revoked = ca.revoke(Some("tateshina"), None, now).expect("revoke");
        assert_eq!(revoked.len(), 1);
        assert!(
            ca.revoke(Some("tateshina"), None, now).is_err(),
            "already revoked"
        );
        let crl_der =
            parse_crl_pem(&fs::read_to_string(ca.crl_path()).expect("crl")).expect("crl pem");
        let list = Revocations::verify(&crl_der, &ca_der).expect("verify");
        assert_eq!(list.number, 1);
        assert!(list.is_revoked(&id.serial));
        assert!(!list.is_revoked(&omachi_id.serial));
        assert!(
            Revocations::verify(&crl_der, &other_der).is_err(),
            "signed by another CA"
        );
        let round_trip = parse_crl_pem(&list.pem()).expect("pem");
        assert_eq!(round_trip, crl_der);
        ca.revoke(None, Some(&omachi_id.node_id), now)
            .expect("revoke node");
        let crl2 = parse_crl_pem(&fs::read_to_string(ca.crl_path()).expect("crl")).expect("pem");
        assert_eq!(
            Revocations::verify(&crl2, &ca_der).expect("verify").number,
            2
        );
    }
}
