//! TLS for the peer port: what a joined node trusts and presents, the server
//! configuration (mutual TLS, no session resumption), and the client-side
//! check that the server is a consortium node — the expected one when its
//! node id is known — whatever address it was dialled at.
//!
//! **Architecture invariant:** only `node::peer` names rustls and reqwest.

use std::fs;
use std::sync::{Arc, RwLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{NoServerSessionStorage, WebPkiClientVerifier};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName, OtherError,
    RootCertStore, ServerConfig, SignatureScheme,
};

use crate::datadir::DataDir;
use crate::error::{Error, Result};
use crate::pki::{self, NODE_DNS_NAME, PeerIdentity, Revocations, Usage};

/// Hostnames the client dials carry the expected node id:
/// `n-<node id, lowercase, no dashes>.yui.invalid`. Others (`u-….yui.invalid`)
/// accept any consortium node.
const SYNTHETIC_SUFFIX: &str = ".yui.invalid";

/// How a handshake with a node other than the one expected fails: the
/// peer task then asks who it is (a rotated key: `peer::reidentify`).
const NOT_THE_EXPECTED_NODE: &str = "not the expected node";

/// Whether `e` is a handshake with another node than the expected one.
pub fn is_node_mismatch(e: &Error) -> bool {
    e.to_string().contains(NOT_THE_EXPECTED_NODE)
}

/// Installs ring as the process's rustls crypto provider. Called before any
/// TLS or HTTP client is built; calling it again is harmless.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The synthetic hostname under which a peer with `node_id` is dialled.
pub fn host_for_node(node_id: &str) -> String {
    format!(
        "n-{}{SYNTHETIC_SUFFIX}",
        node_id.replace('-', "").to_lowercase()
    )
}

/// The synthetic hostname for a peer whose node id is not known yet.
pub fn host_for_unknown(index: usize) -> String {
    format!("u-{index}{SYNTHETIC_SUFFIX}")
}

fn expected_node(server_name: &ServerName<'_>) -> Option<String> {
    let ServerName::DnsName(name) = server_name else {
        return None;
    };
    let label = name
        .as_ref()
        .strip_suffix(SYNTHETIC_SUFFIX)?
        .strip_prefix("n-")?;
    Some(label.to_uppercase())
}

/// What a node that has joined the consortium holds. Immutable but for
/// the revocation list: installing a certificate (renewal, a new key, a CA
/// rollover) builds a new one, which `Peering` swaps in.
pub struct Trust {
    /// The consortium CA certificate(s) this node trusts.
    pub anchors: pki::Anchors,
    pub own: PeerIdentity,
    pub cert_der: Vec<u8>,
    /// The CA certificates after the node certificate in its file (a
    /// rollover's cross certificate), presented in every handshake.
    pub intermediates: Vec<Vec<u8>>,
    /// The id of this node's change signatures (its key's).
    pub signer: yui_protocol::provenance::SignerId,
    key_der: Vec<u8>,
    pub revocations: RwLock<Revocations>,
}

impl Trust {
    /// Loads the node's certificate, key, CA and revocation list. `None`
    /// when the node has not joined (no certificate installed).
    pub fn load(data_dir: &DataDir) -> Result<Option<Trust>> {
        if !data_dir.cert_path().exists() {
            return Ok(None);
        }
        // Each file's failure names the file and the way to mend it.
        let reinstall = "install the certificate and ca.cert.pem the secretariat sent again with `yui cert install --cert NODE_CERT --ca-cert CA_CERT`";
        let (cert_path, ca_path) = (data_dir.cert_path(), data_dir.ca_cert_path());
        let mut chain = fs::read_to_string(&cert_path)
            .map_err(|e| Error::Config(format!("reading it: {e}")))
            .and_then(|text| pki::parse_pem_all(&text, "node certificate"))
            .map_err(|e| damaged(&cert_path, "the node certificate", e, reinstall))?;
        let cert_der = chain.remove(0);
        let own = pki::identity(&cert_der)
            .map_err(|e| damaged(&cert_path, "the node certificate", e, reinstall))?;
        let signer = pki::spki(&cert_der)
            .map(|s| pki::signer_id(&s))
            .map_err(|e| damaged(&cert_path, "the node certificate", e, reinstall))?;
        let anchors = fs::read_to_string(&ca_path)
            .map_err(|e| Error::Config(format!("reading it: {e}")))
            .and_then(|text| pki::Anchors::from_pem(&text, "CA certificate"))
            .map_err(|e| damaged(&ca_path, "the consortium CA certificate", e, reinstall))?;
        let key_path = data_dir.key_path();
        let key_der = fs::read_to_string(&key_path)
            .map_err(|e| Error::Config(e.to_string()))
            .and_then(|pem| {
                rcgen::KeyPair::from_pem(&pem).map_err(|e| Error::Config(e.to_string()))
            })
            .map_err(|e| {
                damaged(
                    &key_path,
                    "the node's private key",
                    e,
                    "restore the data directory from a backup of it (the key cannot be made again; a new key needs a new certificate from the secretariat)",
                )
            })?
            .serialize_der();
        let crl_path = data_dir.revocations_path();
        let revocations = match fs::read_to_string(&crl_path) {
            Ok(text) => pki::parse_crl_pem(&text)
                .and_then(|der| Revocations::verify(&der, &anchors, &chain))
                .map_err(|e| {
                    damaged(
                        &crl_path,
                        "a revocation list signed by the consortium CA",
                        e,
                        &format!(
                            "copy the newest revocations.pem from the secretariat over it (cp revocations.pem {}) and start again",
                            crl_path.display()
                        ),
                    )
                })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Revocations::default(),
            Err(e) => return Err(crate::fsio::io_error("reading", &crl_path, e)),
        };
        Ok(Some(Trust {
            anchors,
            own,
            cert_der,
            intermediates: chain,
            signer,
            key_der,
            revocations: RwLock::new(revocations),
        }))
    }

    fn roots(&self) -> Result<Arc<RootCertStore>> {
        let mut roots = RootCertStore::empty();
        for der in self.anchors.certs() {
            roots
                .add(CertificateDer::from(der.clone()))
                .map_err(|e| Error::Config(format!("the CA certificate is unusable: {e}")))?;
        }
        Ok(Arc::new(roots))
    }

    fn chain(&self) -> Vec<CertificateDer<'static>> {
        std::iter::once(&self.cert_der)
            .chain(&self.intermediates)
            .map(|d| CertificateDer::from(d.clone()))
            .collect()
    }

    fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.key_der.clone().into())
    }

    pub fn is_revoked(&self, serial: &[u8]) -> bool {
        self.revocations
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_revoked(serial)
    }

    /// The current revocation list.
    pub fn revocations_snapshot(&self) -> Revocations {
        self.revocations
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub fn revocation_number(&self) -> u64 {
        self.revocations
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .number
    }

    /// Installs a newer revocation list after checking its signature.
    /// Returns whether it was newer.
    pub fn install_revocations(&self, data_dir: &DataDir, der: &[u8]) -> Result<bool> {
        let list = Revocations::verify(der, &self.anchors, &self.intermediates)?;
        let mut current = self
            .revocations
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if list.number <= current.number {
            return Ok(false);
        }
        pki::replace_file(&data_dir.revocations_path(), list.pem().as_bytes(), 0o644)?;
        tracing::warn!(
            number = list.number,
            revoked = list.serials.len(),
            "installed a new revocation list"
        );
        *current = list;
        Ok(true)
    }

    /// The peer port's TLS configuration: a client certificate from the
    /// consortium CA is mandatory, and sessions are never resumed (a resumed
    /// session would skip the certificate check, and with it revocation).
    pub fn server_config(&self) -> Result<ServerConfig> {
        let inner = WebPkiClientVerifier::builder_with_provider(self.roots()?, provider())
            .build()
            .map_err(|e| Error::Config(format!("client verifier: {e}")))?;
        let verifier = Arc::new(MemberVerifier { inner });
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Config(format!("TLS: {e}")))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.chain(), self.key())
            .map_err(|e| Error::Config(format!("the node certificate and key do not fit: {e}")))?;
        config.session_storage = Arc::new(NoServerSessionStorage {});
        config.send_tls13_tickets = 0;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }

    /// The TLS configuration of outbound peering.
    pub fn client_config(self: &Arc<Self>) -> Result<ClientConfig> {
        let inner =
            rustls::client::WebPkiServerVerifier::builder_with_provider(self.roots()?, provider())
                .build()
                .map_err(|e| Error::Config(format!("server verifier: {e}")))?;
        let verifier = NodeVerifier {
            inner,
            trust: self.clone(),
        };
        let mut config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Config(format!("TLS: {e}")))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_client_auth_cert(self.chain(), self.key())
            .map_err(|e| Error::Config(format!("the node certificate and key do not fit: {e}")))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }
}

/// The error of a certificate whose usages do not fit its side of the
/// handshake; the peer port logs it as the reason of the refusal.
#[derive(Debug)]
struct UsageError(String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

fn check_usage(
    end_entity: &CertificateDer<'_>,
    usage: Usage,
) -> std::result::Result<(), rustls::Error> {
    pki::check_usage(end_entity, usage).map_err(|e| {
        let side = match usage {
            Usage::Client => "client",
            Usage::Server => "server",
        };
        rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(
            UsageError(format!("the {side} certificate is not for this use: {e}")),
        ))))
    })
}

/// A failed handshake's error in words: rustls shows a certificate error of
/// our own (a usage refused) as its debug form, which no administrator
/// should have to read.
pub fn describe_handshake_error(e: &std::io::Error) -> String {
    if let Some(rustls::Error::InvalidCertificate(CertificateError::Other(other))) = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        return format!("invalid peer certificate: {other}");
    }
    e.to_string()
}

/// Accepts a client only if its certificate chains to the consortium CA
/// (webpki) and carries `digitalSignature` and `clientAuth`: webpki alone
/// accepts a certificate with no extended key usage for any purpose.
#[derive(Debug)]
struct MemberVerifier {
    inner: Arc<dyn ClientCertVerifier>,
}

/// The handshake-signature checks of a verifier that only adds checks to
/// the certificate: its `inner` webpki verifier makes them.
macro_rules! signatures_by_inner {
    () => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
            self.inner.verify_tls12_signature(message, cert, dss)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
            self.inner.verify_tls13_signature(message, cert, dss)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.inner.supported_verify_schemes()
        }
    };
}

impl ClientCertVerifier for MemberVerifier {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> std::result::Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        check_usage(end_entity, Usage::Client)?;
        Ok(verified)
    }

    signatures_by_inner!();
}

/// Accepts a server only if its certificate chains to the consortium CA,
/// carries `digitalSignature` and `serverAuth` (checked here: webpki accepts
/// a certificate without extended key usages for any purpose), is not
/// revoked, and — when the dialled name says which node is expected —
/// belongs to that node. The dialled address plays no part: a
/// member can pose as another only by holding its key.
#[derive(Debug)]
struct NodeVerifier {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    trust: Arc<Trust>,
}

impl std::fmt::Debug for Trust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trust")
            .field("own", &self.own)
            .finish_non_exhaustive()
    }
}

impl ServerCertVerifier for NodeVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        let node_name = ServerName::try_from(NODE_DNS_NAME)
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        self.inner
            .verify_server_cert(end_entity, intermediates, &node_name, ocsp_response, now)?;
        check_usage(end_entity, Usage::Server)?;
        let id = pki::identity(end_entity).map_err(|e| rustls::Error::General(e.to_string()))?;
        if self.trust.is_revoked(&id.serial) {
            return Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::Revoked,
            ));
        }
        if let Some(expected) = expected_node(server_name)
            && expected != id.node_id.replace('-', "")
        {
            return Err(rustls::Error::General(format!(
                "the server is node {} of {}, {NOT_THE_EXPECTED_NODE}",
                id.node_id, id.town
            )));
        }
        Ok(ServerCertVerified::assertion())
    }

    signatures_by_inner!();
}

/// A file of the data directory that could not be used: which file, what it
/// should be, what was wrong, and how to mend it.
fn damaged(path: &std::path::Path, should_be: &str, e: Error, fix: &str) -> Error {
    Error::Config(format!(
        "{} is damaged or is not {should_be} ({e}); {fix}",
        path.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_names_carry_the_node_id() {
        let id = "ABCD-EFGH-2345";
        let host = host_for_node(id);
        assert_eq!(host, "n-abcdefgh2345.yui.invalid");
        let name = ServerName::try_from(host).expect("dns name");
        assert_eq!(expected_node(&name).as_deref(), Some("ABCDEFGH2345"));
        let any = ServerName::try_from(host_for_unknown(3)).expect("dns name");
        assert_eq!(expected_node(&any), None);
        let ip = ServerName::try_from("127.0.0.1").expect("ip");
        assert_eq!(expected_node(&ip), None);
    }
}
