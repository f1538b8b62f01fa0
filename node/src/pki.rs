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
//!   previous/         during a CA rollover's overlap: the old CA's key
//!                     and certificate (it signs the revocation lists)
//!   cross.cert.pem    during the overlap: the new CA's key certified by
//!                     the old CA (sent after every node certificate)
//!   ca-bundle.pem     during the overlap: the new and the old CA
//!                     certificates, what every member trusts
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

/// The town's name a node certificate states: its subject's organisation
/// (O), which `yui init --name` asks for and the consortium CA vouches for
/// by signing (`yui ca issue --name` sets or corrects it). None when the
/// certificate has none, or one no page should show (empty, longer than 64
/// characters, with control characters).
pub fn town_name_of(der: &[u8]) -> Option<String> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let name = cert
        .subject()
        .iter_organization()
        .next()?
        .as_str()
        .ok()?
        .trim();
    let fits =
        !name.is_empty() && name.chars().count() <= 64 && !name.chars().any(char::is_control);
    fits.then(|| name.to_owned())
}

/// The text of a name in a distinguished name, as `town_name_of` would
/// read it back from the certificate.
fn town_name_of_dn(value: Option<&rcgen::DnValue>) -> Option<String> {
    let text = match value? {
        rcgen::DnValue::Utf8String(s) => s.clone(),
        rcgen::DnValue::PrintableString(s) => s.as_str().to_owned(),
        rcgen::DnValue::Ia5String(s) => s.as_str().to_owned(),
        _ => return None,
    };
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

/// Towns by the names the consortium vouches for (see [`town_name_of`]):
/// what pages show instead of a town id, for towns this node has never
/// talked to as well, since signer certificates travel with changes.
#[derive(Debug, Default, Clone)]
pub struct TownNames {
    names: std::collections::HashMap<String, String>,
}

impl TownNames {
    /// From certificates (DER, town) oldest first, so a renewal's name wins,
    /// and this node's own town and configured name.
    pub fn from_certificates(
        certificates: impl IntoIterator<Item = (Vec<u8>, String)>,
        own: (&str, &str),
    ) -> TownNames {
        let mut names = std::collections::HashMap::new();
        for (der, town) in certificates {
            if let Some(name) = town_name_of(&der) {
                names.insert(town, name);
            }
        }
        let (town, name) = own;
        let name = name.trim();
        if !name.is_empty() && !name.chars().any(char::is_control) {
            names.insert(town.to_owned(), name.to_owned());
        }
        TownNames { names }
    }

    /// The town's name, or its id when no certificate names it.
    pub fn show<'a>(&'a self, town: &'a str) -> &'a str {
        self.names.get(town).map_or(town, String::as_str)
    }

    /// The town's name, if known.
    pub fn name_of(&self, town: &str) -> Option<&str> {
        self.names.get(town).map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
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

pub fn parse_pem(pem_text: &str, what: &str) -> Result<Vec<u8>> {
    let (_, pem) =
        x509_parser::pem::parse_x509_pem(pem_text.as_bytes()).map_err(|e| pki_err(what, e))?;
    Ok(pem.contents)
}

/// Every PEM block of `pem_text`, in order: a certificate and the chain
/// after it, or a bundle of CA certificates.
pub fn parse_pem_all(pem_text: &str, what: &str) -> Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    for pem in x509_parser::pem::Pem::iter_from_buffer(pem_text.as_bytes()) {
        out.push(pem.map_err(|e| pki_err(what, e))?.contents);
    }
    if out.is_empty() {
        return Err(Error::Config(format!("{what}: no PEM block found")));
    }
    Ok(out)
}

/// At most this many CA certificates are trusted at once: the current CA
/// and, during a rollover's overlap, the one before it (and a spare).
pub const MAX_ANCHORS: usize = 3;

/// The consortium CA certificates a node trusts (DER), from its
/// `ca.cert.pem`: one, or during a CA rollover's overlap both the new and
/// the old (protocol.md 2.5). A certificate is trusted when one of them
/// signed it, directly or through a cross certificate: the new CA's key
/// certified by the old CA, which carries members still on the old CA
/// across the overlap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchors {
    certs: Vec<Vec<u8>>,
}

impl Anchors {
    /// Anchors from CA certificates (DER); each must be a CA certificate.
    pub fn new(certs: Vec<Vec<u8>>) -> Result<Anchors> {
        if certs.is_empty() || certs.len() > MAX_ANCHORS {
            return Err(Error::Config(format!(
                "a CA file holds 1 to {MAX_ANCHORS} CA certificates, not {}",
                certs.len()
            )));
        }
        for der in &certs {
            check_ca_cert(der)?;
        }
        Ok(Anchors { certs })
    }

    /// Anchors from a PEM file's text (`ca.cert.pem`, or a rollover's
    /// `ca-bundle.pem`).
    pub fn from_pem(text: &str, what: &str) -> Result<Anchors> {
        Anchors::new(parse_pem_all(text, what)?)
    }

    pub fn certs(&self) -> &[Vec<u8>] {
        &self.certs
    }

    /// The keys that may sign certificates and revocation lists: every
    /// anchor's, and those of the CA certificates among `intermediates`
    /// that an anchor signed, each with the name it signs as.
    fn issuers<'a>(&'a self, intermediates: &'a [Vec<u8>]) -> Vec<X509Certificate<'a>> {
        let anchors: Vec<X509Certificate<'a>> = self
            .certs
            .iter()
            .filter_map(|d| X509Certificate::from_der(d).ok().map(|(_, c)| c))
            .collect();
        let crossed: Vec<X509Certificate<'a>> = intermediates
            .iter()
            .filter_map(|d| X509Certificate::from_der(d).ok().map(|(_, c)| c))
            .filter(|c| c.is_ca() && signed_by_one_of(c, &anchors))
            .collect();
        anchors.into_iter().chain(crossed).collect()
    }

    /// Checks that `cert` was signed by a trusted CA (see the type's doc).
    pub fn check_issued(
        &self,
        cert: &X509Certificate<'_>,
        intermediates: &[Vec<u8>],
    ) -> Result<()> {
        if signed_by_one_of(cert, &self.issuers(intermediates)) {
            Ok(())
        } else {
            Err(Error::Config(
                "the certificate is not signed by this consortium's CA".into(),
            ))
        }
    }

    /// Whether `der` is a CA certificate that one of the anchors signed
    /// and that is not itself an anchor: a rollover's cross certificate.
    pub fn is_cross_certificate(&self, der: &[u8]) -> bool {
        if self.certs.iter().any(|c| c == der) {
            return false;
        }
        let Ok((_, cert)) = X509Certificate::from_der(der) else {
            return false;
        };
        cert.is_ca() && signed_by_one_of(&cert, &self.issuers(&[]))
    }

    /// The anchors as PEM, as `ca.cert.pem` holds them.
    pub fn pem(&self) -> String {
        self.certs
            .iter()
            .map(|d| pem_block("CERTIFICATE", d))
            .collect()
    }
}

fn signed_by_one_of(cert: &X509Certificate<'_>, issuers: &[X509Certificate<'_>]) -> bool {
    issuers.iter().any(|ca| {
        cert.issuer() == ca.subject() && cert.verify_signature(Some(ca.public_key())).is_ok()
    })
}

fn pem_block(label: &str, der: &[u8]) -> String {
    let b64 = base64_encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
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
    /// How many CAs this directory has had (1, then one more per rollover).
    #[serde(default = "first_generation")]
    generation: u32,
    issued: Vec<Issued>,
}

fn first_generation() -> u32 {
    1
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Issued {
    serial_hex: String,
    town: String,
    node_id: String,
    not_after: String,
    revoked_at: Option<String>,
    /// The town's name the certificate states (registers written before
    /// names were recorded have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    town_name: Option<String>,
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
    fn previous_dir(&self) -> PathBuf {
        self.path.join("previous")
    }
    pub fn cross_cert_path(&self) -> PathBuf {
        self.path.join("cross.cert.pem")
    }
    /// During a rollover's overlap: what every member trusts.
    pub fn bundle_path(&self) -> PathBuf {
        self.path.join("ca-bundle.pem")
    }
    /// Whether a rollover is in its overlap (started, not finished).
    pub fn in_rollover(&self) -> bool {
        self.previous_dir().join("ca.key.pem").exists()
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
            generation: 1,
            ..Register::default()
        })
    }

    fn issuer(&self) -> Result<Issuer<'static, KeyPair>> {
        issuer_in(&self.key_path(), &self.cert_path())
    }

    /// The key revocation lists are signed with: during a rollover's
    /// overlap the old CA's, which every member still trusts.
    fn crl_issuer(&self) -> Result<Issuer<'static, KeyPair>> {
        if self.in_rollover() {
            let previous = self.previous_dir();
            issuer_in(&previous.join("ca.key.pem"), &previous.join("ca.cert.pem"))
        } else {
            self.issuer()
        }
    }

    /// `yui ca rollover`: a new CA key and certificate, with an overlap in
    /// which members trust both CAs. Writes the new CA certificate, a cross
    /// certificate (the new key certified by the old CA, so members still
    /// on the old CA accept certificates of the new one) and the bundle of
    /// both CA certificates to send to every town; the old CA's key and
    /// certificate move to `previous/` and keep signing revocation lists
    /// until [`CaDir::finish_rollover`].
    pub fn rollover(&self, now: OffsetDateTime) -> Result<u32> {
        if self.in_rollover() {
            return Err(Error::Config(format!(
                "a CA rollover is already in its overlap in {}; finish it first with `yui ca rollover --finish` once every town has installed a certificate of the new CA",
                self.path.display()
            )));
        }
        let mut register = self.register()?;
        let old_issuer = self.issuer()?;
        let old_cert = fs::read(self.cert_path())
            .map_err(|e| pki_err(&format!("reading {}", self.cert_path().display()), e))?;
        let old_key = fs::read(self.key_path())
            .map_err(|e| pki_err(&format!("reading {}", self.key_path().display()), e))?;
        let generation = register.generation + 1;
        // A new name too: certificate paths are built by names, and the two
        // CAs must not be mistaken for each other.
        let params = ca_params(&format!("{} {generation}", register.name), now)?;
        let key = KeyPair::generate().map_err(|e| pki_err("generating the CA key", e))?;
        let cert = params
            .self_signed(&key)
            .map_err(|e| pki_err("signing the CA certificate", e))?;
        let cross = params
            .signed_by(&key, &old_issuer)
            .map_err(|e| pki_err("signing the cross certificate", e))?;
        let previous = self.previous_dir();
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&previous)
            .map_err(|e| pki_err(&format!("creating {}", previous.display()), e))?;
        // The old CA first, so a failure half way loses no key.
        replace_file(&previous.join("ca.cert.pem"), &old_cert, 0o644)?;
        replace_file(&previous.join("ca.key.pem"), &old_key, 0o600)?;
        replace_file(&self.cross_cert_path(), cross.pem().as_bytes(), 0o644)?;
        let bundle = format!("{}{}", cert.pem(), String::from_utf8_lossy(&old_cert));
        replace_file(&self.bundle_path(), bundle.as_bytes(), 0o644)?;
        replace_file(&self.cert_path(), cert.pem().as_bytes(), 0o644)?;
        replace_file(&self.key_path(), key.serialize_pem().as_bytes(), 0o600)?;
        register.generation = generation;
        self.save_register(&register)?;
        Ok(generation)
    }

    /// `yui ca rollover --finish`: ends the overlap. The old CA's key is
    /// deleted (its certificate stays in `previous/` for the records), and
    /// a new revocation list signed by the new CA is written: towns install
    /// it and the new `ca.cert.pem`, after which certificates of the old CA
    /// are no longer accepted.
    pub fn finish_rollover(&self, now: OffsetDateTime) -> Result<()> {
        if !self.in_rollover() {
            return Err(Error::Config(format!(
                "no CA rollover is in its overlap in {}; start one with `yui ca rollover`",
                self.path.display()
            )));
        }
        let previous = self.previous_dir();
        let mut register = self.register()?;
        let retired = previous.join("ca.key.pem");
        fs::remove_file(&retired)
            .map_err(|e| pki_err(&format!("deleting {}", retired.display()), e))?;
        let _ = fs::remove_file(self.cross_cert_path());
        let _ = fs::remove_file(self.bundle_path());
        register.crl_number += 1;
        self.write_crl(&register, now)?;
        self.save_register(&register)
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
        self.issue_named(csr_pem, days, None, now)
    }

    /// [`CaDir::issue`], stating `name` as the town's name (its subject's
    /// O) instead of the one the request asks for.
    pub fn issue_named(
        &self,
        csr_pem: &str,
        days: i64,
        name: Option<&str>,
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
        let org = match name.map(str::trim) {
            Some(name) => {
                if name.is_empty()
                    || name.chars().count() > 64
                    || name.chars().any(char::is_control)
                {
                    return Err(Error::Config(
                        "--name must be 1 to 64 characters without control characters".into(),
                    ));
                }
                Some(rcgen::DnValue::Utf8String(name.to_owned()))
            }
            None => csr
                .params
                .distinguished_name
                .get(&DnType::OrganizationName)
                .cloned(),
        };

        let town_name = town_name_of_dn(org.as_ref());
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
        // Pages show towns by these names: two towns may not share one, or
        // a member could pass for another.
        let mut register = self.register()?;
        if let Some(name) = &town_name
            && let Some(other) = register.issued.iter().find(|i| {
                i.revoked_at.is_none() && i.town != town && i.town_name.as_ref() == Some(name)
            })
        {
            return Err(Error::Config(format!(
                "{name} is already the name of town {} (node {}); nothing was issued. Give this town its own name with --name",
                other.town, other.node_id
            )));
        }
        let cert = params
            .signed_by(&csr.public_key, &issuer)
            .map_err(|e| pki_err("signing the node certificate", e))?;
        let id = identity(cert.der())?;
        register.issued.push(Issued {
            serial_hex: hex(&id.serial),
            town: id.town.clone(),
            node_id: id.node_id.clone(),
            not_after: yui_protocol::record::format_time(id.not_after * 1000),
            revoked_at: None,
            town_name,
        });
        self.save_register(&register)?;
        // During a rollover's overlap the cross certificate follows, so
        // members still on the old CA accept this one.
        let mut pem = cert.pem();
        if self.in_rollover() {
            let cross = fs::read_to_string(self.cross_cert_path()).map_err(|e| {
                pki_err(&format!("reading {}", self.cross_cert_path().display()), e)
            })?;
            pem.push_str(&cross);
        }
        Ok((pem, id))
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
        let issuer = self.crl_issuer()?;
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

fn issuer_in(key_path: &Path, cert_path: &Path) -> Result<Issuer<'static, KeyPair>> {
    let key_pem = fs::read_to_string(key_path).map_err(|e| {
        pki_err(
            &format!("reading {} (is this a CA directory?)", key_path.display()),
            e,
        )
    })?;
    let key = KeyPair::from_pem(&key_pem).map_err(|e| pki_err("reading the CA key", e))?;
    let cert_pem =
        fs::read_to_string(cert_path).map_err(|e| pki_err("reading the CA certificate", e))?;
    Issuer::from_ca_cert_pem(&cert_pem, key).map_err(|e| pki_err("reading the CA certificate", e))
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
    /// Checks a revocation list (DER): signed by one of the trusted CAs
    /// (`anchors`, or a cross certificate among `intermediates`).
    pub fn verify(
        crl_der: &[u8],
        anchors: &Anchors,
        intermediates: &[Vec<u8>],
    ) -> Result<Revocations> {
        let (_, crl) = x509_parser::revocation_list::CertificateRevocationList::from_der(crl_der)
            .map_err(|e| pki_err("reading the revocation list", e))?;
        let issuers = anchors.issuers(intermediates);
        let named: Vec<_> = issuers
            .iter()
            .filter(|ca| crl.issuer() == ca.subject())
            .collect();
        if named.is_empty() {
            return Err(Error::Config(
                "the revocation list was issued by another CA".into(),
            ));
        }
        if !named
            .iter()
            .any(|ca| crl.verify_signature(ca.public_key()).is_ok())
        {
            return Err(Error::Config(
                "the revocation list is not signed by this consortium's CA".into(),
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
        pem_block("X509 CRL", &self.der)
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

/// Whether `der` reads as a CA certificate (basic constraints `cA`).
pub fn is_ca_certificate(der: &[u8]) -> bool {
    X509Certificate::from_der(der).is_ok_and(|(_, c)| c.is_ca())
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
    chain: &[Vec<u8>],
    anchors: &Anchors,
    node_id_expected: &str,
    town: &str,
    now: i64,
) -> Result<PeerIdentity> {
    let (_, cert) = X509Certificate::from_der(cert_der)
        .map_err(|e| pki_err("reading the node certificate", e))?;
    anchors
        .check_issued(&cert, chain)
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
/// (DER) that must chain to the consortium CA (`anchors`, through a cross
/// certificate among `intermediates` during a rollover), name a town and
/// allow `digitalSignature`. Revoked when `revocations` lists it. Validity
/// dates are not checked: a change made while the certificate was valid
/// stays valid after it expires (protocol.md 7.5).
pub fn signer(
    der: &[u8],
    anchors: &Anchors,
    intermediates: &[Vec<u8>],
    revocations: &Revocations,
) -> Result<Signer> {
    let (rest, cert) =
        X509Certificate::from_der(der).map_err(|e| pki_err("reading a signer certificate", e))?;
    if !rest.is_empty() {
        return Err(Error::Config(
            "a signer certificate has bytes after its end".into(),
        ));
    }
    if cert.is_ca() {
        return Err(Error::Config(
            "a signer certificate is a CA certificate".into(),
        ));
    }
    anchors.check_issued(&cert, intermediates).map_err(|_| {
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

/// What installing a certificate did.
#[derive(Debug, Clone)]
pub struct Installed {
    pub id: PeerIdentity,
    /// The node id before, when the certificate was for the new key of a
    /// rotation (which is now the node's key).
    pub rotated_from: Option<String>,
    /// The certificate it replaced (DER), if any: it still vouches for the
    /// changes signed before.
    pub replaced: Option<Vec<u8>>,
}

/// At most this many CA certificates may follow a node certificate in its
/// file (a rollover's cross certificate).
const MAX_CHAIN: usize = 2;

/// `yui cert install`: checks a signed certificate against this node and
/// installs it with the CA certificate(s) — and the revocation list they
/// sign, when given (the end of a CA rollover) — into the data directory. The
/// certificate is for the node's key (joining, renewal, a CA rollover) or
/// for the new key `yui cert rotate-key` made, which then becomes the
/// node's key (the old one is deleted: the old certificate, kept by every
/// member, still verifies what it signed).
pub fn install(
    data_dir: &crate::datadir::DataDir,
    town: &str,
    cert_pem: &[u8],
    ca_pem: &[u8],
    revocations_pem: Option<&[u8]>,
    now: i64,
) -> Result<Installed> {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let mut chain = parse_pem_all(&text(cert_pem), "node certificate")?;
    if chain.len() > 1 + MAX_CHAIN {
        return Err(Error::Config(format!(
            "the node certificate file holds {} certificates; it should hold the node certificate and at most {MAX_CHAIN} CA certificates after it",
            chain.len()
        )));
    }
    let leaf = chain.remove(0);
    let anchors = Anchors::from_pem(&text(ca_pem), "CA certificate")?;
    let current = data_dir.node_id()?;
    let next = data_dir.next_node_id()?;
    let leaf_node = identity(&leaf)
        .map(|i| i.node_id)
        .map_err(|e| pki_err("reading the node certificate", e))?;
    let rotating = next.as_deref() == Some(leaf_node.as_str()) && leaf_node != current;
    let expected = if rotating {
        leaf_node.clone()
    } else {
        current.clone()
    };
    let id =
        check_node_cert(&leaf, &chain, &anchors, &expected, town, now).map_err(|e| {
            match (&next, leaf_node == expected) {
                (Some(n), false) => Error::Config(format!(
                    "{e}; this node's key is {current} and its new key (yui cert rotate-key) is {n}"
                )),
                _ => e,
            }
        })?;
    // A revocation list the new CAs cannot verify would stop the node at
    // its next start: the one given with them (after a CA rollover), or the
    // installed one.
    let given = match revocations_pem {
        Some(pem) => {
            let der = parse_crl_pem(&text(pem))?;
            let list = Revocations::verify(&der, &anchors, &chain)?;
            Some(list)
        }
        None => None,
    };
    if given.is_none()
        && let Ok(crl_text) = fs::read_to_string(data_dir.revocations_path())
    {
        let crl = parse_crl_pem(&crl_text)?;
        Revocations::verify(&crl, &anchors, &chain).map_err(|e| {
            Error::Config(format!(
                "the installed revocation list cannot be checked with the new CA certificate ({e}); install the secretariat's newest revocations.pem with it (yui cert install … --revocations revocations.pem)"
            ))
        })?;
    }
    if let Some(list) = &given {
        // Never back to an older list the new CAs can check.
        let installed = fs::read_to_string(data_dir.revocations_path())
            .ok()
            .and_then(|t| parse_crl_pem(&t).ok())
            .and_then(|der| Revocations::verify(&der, &anchors, &chain).ok());
        if installed.is_none_or(|i| i.number < list.number) {
            replace_file(&data_dir.revocations_path(), list.pem().as_bytes(), 0o644)?;
        }
    }
    let replaced = read_pem_file(&data_dir.cert_path(), "node certificate").ok();
    replace_file(&data_dir.ca_cert_path(), ca_pem, 0o644)?;
    if rotating {
        // The key before the certificate: a crash between the two leaves a
        // node that says which certificate to install again.
        fs::rename(data_dir.next_key_path(), data_dir.key_path())
            .map_err(|e| crate::fsio::io_error("replacing", &data_dir.key_path(), e))?;
        let _ = fs::rename(data_dir.next_csr_path(), data_dir.csr_path());
        crate::fsio::sync_parent_dir(&data_dir.key_path());
    }
    replace_file(&data_dir.cert_path(), cert_pem, 0o644)?;
    Ok(Installed {
        id,
        rotated_from: rotating.then_some(current),
        replaced,
    })
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

    /// The name a town's certificate states is the one `yui init --name`
    /// asked for, or the CA's `--name`; no two towns may hold one name,
    /// while a town's own renewal keeps it.
    #[test]
    fn a_certificate_states_the_town_name_and_no_two_towns_share_one() {
        let tmp = tempfile::tempdir().expect("tmp");
        let now = OffsetDateTime::now_utc();
        let ca = CaDir::new(tmp.path().join("ca"));
        ca.init("信州コンソーシアム", now).expect("ca init");
        let named = |dir: &str, town: &str, name: &str| {
            let data = DataDir::new(tmp.path().join(dir));
            data.init(&InitOptions {
                town: town.into(),
                name: name.into(),
                api_listen: "127.0.0.1:0".parse().expect("addr"),
                peer_listen: "127.0.0.1:0".parse().expect("addr"),
            })
            .expect("init");
            fs::read_to_string(data.csr_path()).expect("csr")
        };
        let tateshina = named("a", "tateshina", "立科町");
        let (pem, _) = ca.issue(&tateshina, 30, now).expect("issue");
        let der = parse_pem(&pem, "cert").expect("pem");
        assert_eq!(town_name_of(&der).as_deref(), Some("立科町"));
        // The CA states another name, or corrects a missing one.
        let omachi = named("b", "omachi", "");
        let (pem, _) = ca
            .issue_named(&omachi, 30, Some("大町市"), now)
            .expect("issue");
        assert_eq!(
            town_name_of(&parse_pem(&pem, "cert").expect("pem")).as_deref(),
            Some("大町市")
        );
        // A third town asking for 立科町 is refused, by name and town.
        let impostor = named("c", "itoigawa", "立科町");
        let err = ca.issue(&impostor, 30, now).expect_err("a taken name");
        assert!(
            err.to_string()
                .contains("立科町 is already the name of town tateshina"),
            "{err}"
        );
        let err = ca
            .issue_named(&impostor, 30, Some(" 大町市 "), now)
            .expect_err("a taken name");
        assert!(err.to_string().contains("town omachi"), "{err}");
        assert!(ca.issue_named(&impostor, 30, Some("糸魚川市"), now).is_ok());
        // Tateshina's renewal keeps its own name.
        assert!(ca.issue(&tateshina, 30, now).is_ok());
        let names = TownNames::from_certificates([(der, "tateshina".to_owned())], ("omachi", ""));
        assert_eq!(names.show("tateshina"), "立科町");
        assert_eq!(names.show("omachi"), "omachi");
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
        let ca_der =
            Anchors::new(vec![read_pem_file(&ca.cert_path(), "CA").expect("ca pem")]).expect("ca");

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
            &[],
            &ca_der,
            &id.node_id,
            "tateshina",
            now.unix_timestamp(),
        )
        .expect("fits");
        assert!(
            check_node_cert(
                &cert_der,
                &[],
                &ca_der,
                &id.node_id,
                "omachi",
                now.unix_timestamp()
            )
            .is_err()
        );
        let later = now.unix_timestamp() + 31 * 86_400;
        assert!(
            check_node_cert(&cert_der, &[], &ca_der, &id.node_id, "tateshina", later).is_err(),
            "expired"
        );

        // Another CA's certificate does not fit.
        let other = CaDir::new(tmp.path().join("other-ca"));
        other.init("other", now).expect("init");
        let other_der =
            Anchors::new(vec![read_pem_file(&other.cert_path(), "CA").expect("pem")]).expect("ca");
        assert!(
            check_node_cert(
                &cert_der,
                &[],
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
        let list = Revocations::verify(&crl_der, &ca_der, &[]).expect("verify");
        assert_eq!(list.number, 1);
        assert!(list.is_revoked(&id.serial));
        assert!(!list.is_revoked(&omachi_id.serial));
        assert!(
            Revocations::verify(&crl_der, &other_der, &[]).is_err(),
            "signed by another CA"
        );
        let round_trip = parse_crl_pem(&list.pem()).expect("pem");
        assert_eq!(round_trip, crl_der);
        ca.revoke(None, Some(&omachi_id.node_id), now)
            .expect("revoke node");
        let crl2 = parse_crl_pem(&fs::read_to_string(ca.crl_path()).expect("crl")).expect("pem");
        assert_eq!(
            Revocations::verify(&crl2, &ca_der, &[])
                .expect("verify")
                .number,
            2
        );
    }

    /// A rollover: the new CA's certificates are trusted by members that
    /// trust both CAs, and by members still on the old CA through the cross
    /// certificate; revocation lists are signed by the old key until the
    /// overlap ends, then by the new one.
    #[test]
    fn a_rollover_keeps_both_cas_trusted_until_it_finishes() {
        let tmp = tempfile::tempdir().expect("tmp");
        let now = OffsetDateTime::now_utc();
        let ca = CaDir::new(tmp.path().join("ca"));
        ca.init("信州コンソーシアム", now).expect("ca init");
        let old =
            Anchors::from_pem(&fs::read_to_string(ca.cert_path()).expect("ca"), "ca").expect("old");
        assert!(ca.finish_rollover(now).is_err(), "no rollover to finish");
        assert_eq!(ca.rollover(now).expect("rollover"), 2);
        assert!(ca.rollover(now).is_err(), "one overlap at a time");
        let new =
            Anchors::from_pem(&fs::read_to_string(ca.cert_path()).expect("ca"), "ca").expect("new");
        let both = Anchors::from_pem(&fs::read_to_string(ca.bundle_path()).expect("bundle"), "ca")
            .expect("bundle");
        assert_eq!(both.certs().len(), 2);
        assert_ne!(old, new);

        let node = init_node(tmp.path(), "tateshina");
        let csr = fs::read_to_string(node.csr_path()).expect("csr");
        let (pem, id) = ca.issue(&csr, 30, now).expect("issue");
        let mut chain = parse_pem_all(&pem, "cert").expect("chain");
        assert_eq!(
            chain.len(),
            2,
            "the cross certificate follows during the overlap"
        );
        let leaf = chain.remove(0);
        let at = now.unix_timestamp();
        for anchors in [&new, &both] {
            check_node_cert(&leaf, &[], anchors, &id.node_id, "tateshina", at).expect("direct");
        }
        check_node_cert(&leaf, &chain, &old, &id.node_id, "tateshina", at)
            .expect("through the cross certificate");
        assert!(
            check_node_cert(&leaf, &[], &old, &id.node_id, "tateshina", at).is_err(),
            "not without it"
        );
        assert!(old.is_cross_certificate(&chain[0]));
        assert!(!new.is_cross_certificate(&chain[0]), "issued by the old CA");
        let revocations = Revocations::default();
        signer(&leaf, &old, &chain, &revocations).expect("a signer through the cross");
        assert!(signer(&leaf, &old, &[], &revocations).is_err());
        assert!(
            signer(&chain[0], &old, &chain, &revocations).is_err(),
            "a CA is no signer"
        );

        // During the overlap the old key signs revocation lists: every
        // member can check them.
        ca.revoke(None, Some(&id.node_id), now).expect("revoke");
        let crl = parse_crl_pem(&fs::read_to_string(ca.crl_path()).expect("crl")).expect("pem");
        for anchors in [&old, &both] {
            Revocations::verify(&crl, anchors, &[]).expect("old key");
        }
        Revocations::verify(&crl, &new, &[]).expect_err("not the new CA's");

        ca.finish_rollover(now).expect("finish");
        assert!(!ca.in_rollover());
        let crl = parse_crl_pem(&fs::read_to_string(ca.crl_path()).expect("crl")).expect("pem");
        let list = Revocations::verify(&crl, &new, &[]).expect("new key");
        assert_eq!(list.number, 2);
        assert!(list.is_revoked(&id.serial));
        Revocations::verify(&crl, &both, &[]).expect("members on the bundle install it first");
        let (pem, _) = ca
            .issue(
                &fs::read_to_string(init_node(tmp.path(), "omachi").csr_path()).expect("csr"),
                30,
                now,
            )
            .expect("issue");
        assert_eq!(
            parse_pem_all(&pem, "cert").expect("pem").len(),
            1,
            "no cross after the overlap"
        );
    }
}
