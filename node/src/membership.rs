//! The membership lifecycle of a node, running or not: joining (installing
//! the first certificate), renewing it, rotating the node's key, and
//! following a CA rollover — each takes effect at once, without a restart
//! (operations.md 15). A certificate is checked and written into the data
//! directory by `pki::install`; this module swaps it into the running
//! node: the TLS both ways, the signing key, the node id, and on a first
//! join the peer port and the peer tasks ([`start_federation`], which
//! `daemon::serve` also calls for a node that was a member at start).

use std::sync::Arc;

use crate::datadir::DataDir;
use crate::error::{Error, Result};
use crate::node::{Node, PeerPortOnJoin};

/// What installing a certificate did, as the API answers it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CertificateInstalled {
    pub town: String,
    pub node_id: String,
    /// When the certificate expires (RFC 3339).
    pub not_after: String,
    /// The node id before, when the certificate was for a rotated key.
    pub rotated_from: Option<String>,
    /// Whether the node joined the consortium with it (it was not a member).
    pub joined: bool,
    /// The peer port's URL, when it is open.
    pub peer_port: Option<String>,
    /// How many CA certificates the node trusts now (2 during a rollover).
    pub trusted_cas: usize,
}

/// Installs a certificate (PEM, possibly followed by a cross certificate),
/// the CA certificate(s) (PEM) and, at the end of a CA rollover, the
/// revocation list the new CA signed, on `node`, and takes them into use.
pub async fn install_certificate(
    node: &Arc<Node>,
    cert_pem: &[u8],
    ca_pem: &[u8],
    revocations_pem: Option<&[u8]>,
) -> Result<CertificateInstalled> {
    let now = crate::clock::now_ms() / 1000;
    let installed = crate::pki::install(
        &node.data_dir,
        &node.config.town,
        cert_pem,
        ca_pem,
        revocations_pem,
        now,
    )
    .map_err(|e| Error::bad_request("invalid_certificate", e.to_string()))?;
    let trust = crate::peer::Trust::load(&node.data_dir)?
        .ok_or_else(|| Error::Config("the installed certificate cannot be read back".into()))?;
    let trusted_cas = trust.anchors.certs().len();
    if installed.rotated_from.is_some() {
        // Every change from now on is signed with the new key.
        let key_pem = std::fs::read_to_string(node.data_dir.key_path())
            .map_err(|e| crate::fsio::io_error("reading", &node.data_dir.key_path(), e))?;
        let (signer, signing) = crate::pki::change_signing(&key_pem)?;
        node.store.sign_changes_with(signing);
        node.set_own_key(installed.id.node_id.clone(), signer);
    }
    let joined = match node.peering() {
        Some(peering) => {
            peering.replace_trust(trust)?;
            // The replaced certificate keeps vouching for what its key
            // signed: keep it with the other signers' (and pass it on).
            let mut kept: Vec<Vec<u8>> = installed.replaced.iter().cloned().collect();
            kept.push(peering.trust().cert_der.clone());
            peering
                .learn_certificates(&node.store, None, &[certificates(kept)], "this node")
                .await;
            false
        }
        None => {
            let peering = Arc::new(crate::peer::Peering::new(trust)?);
            node.set_peering(peering);
            start_federation_if_serving(node).await?;
            true
        }
    };
    tracing::warn!(
        town = %installed.id.town,
        node_id = %installed.id.node_id,
        rotated_from = installed.rotated_from.as_deref().unwrap_or(""),
        joined,
        trusted_cas,
        "installed a node certificate; in use from now on"
    );
    Ok(CertificateInstalled {
        town: installed.id.town.clone(),
        node_id: installed.id.node_id.clone(),
        not_after: yui_protocol::record::format_time(installed.id.not_after * 1000),
        rotated_from: installed.rotated_from,
        joined,
        peer_port: node.peer_port().map(str::to_owned),
        trusted_cas,
    })
}

/// The certificates extension carrying `ders`, for the peer layer to learn
/// them as it learns a peer's.
fn certificates(ders: Vec<Vec<u8>>) -> yui_protocol::wire::Extension {
    yui_protocol::wire::Extension {
        tag: yui_protocol::provenance::CERTIFICATES_EXTENSION,
        data: yui_protocol::provenance::encode_certificates(&ders),
    }
}

/// On a node that is serving and has just joined: the peer port (as
/// `yui serve` was told to open it) and the peer tasks.
async fn start_federation_if_serving(node: &Arc<Node>) -> Result<()> {
    let Some(shutdown) = node.shutdown.get() else {
        return Ok(());
    };
    let plan = std::mem::take(
        &mut *node
            .peer_port_on_join
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    let listener = match plan {
        PeerPortOnJoin::None => None,
        PeerPortOnJoin::Listener(l) => Some(l),
        PeerPortOnJoin::Bind(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| Error::Config(format!("opening the peer port on {addr}: {e}")))?,
        ),
    };
    let tasks = start_federation(node, listener, shutdown).await?;
    node.late_tasks
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .extend(tasks);
    Ok(())
}

/// Starts federation on a joined node: the signer book, the peer port (on
/// `listener`, if any), the tasks that sync with every peer, and the daily
/// membership warnings. At start, and when the node joins while running.
pub async fn start_federation(
    node: &Arc<Node>,
    listener: Option<tokio::net::TcpListener>,
    shutdown: &tokio_util::sync::CancellationToken,
) -> Result<Vec<tokio::task::JoinHandle<()>>> {
    let Some(peering) = node.peering() else {
        return Ok(Vec::new());
    };
    let mut tasks = Vec::new();
    // The keys incoming change signatures are checked with.
    peering.load_signers(&node.store).await?;
    if let Some(listener) = listener {
        if let Ok(addr) = listener.local_addr() {
            node.peer_port_at(format!("https://{addr}/"));
        }
        tasks.push(tokio::spawn(crate::peer::server::serve(
            node.federation(),
            listener,
            shutdown.clone(),
        )));
    }
    crate::peer::Peering::start_all(&node.federation(), shutdown).await?;
    // Certificate expiry and revocation warnings: at start, then daily.
    let (watched, stop) = (node.clone(), shutdown.clone());
    tasks.push(tokio::spawn(async move {
        loop {
            for w in watched.membership().warnings {
                tracing::warn!("{w}");
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(std::time::Duration::from_secs(24 * 3600)) => {}
            }
        }
    }));
    Ok(tasks)
}

/// What `yui cert rotate-key` made.
#[derive(Debug, Clone, serde::Serialize)]
pub struct KeyRequested {
    /// The node id the new key will have.
    pub node_id: String,
    /// The certificate request to send to the secretariat (PEM).
    pub request: String,
    /// Where it was written.
    pub request_path: String,
}

/// Makes a new key and its certificate request beside the current key,
/// which stays in use until the certificate for the new one is installed.
pub fn request_new_key(data_dir: &DataDir, town: &str, name: &str) -> Result<KeyRequested> {
    let node_id = data_dir.make_next_key(town, name)?;
    let path = data_dir.next_csr_path();
    let request =
        std::fs::read_to_string(&path).map_err(|e| crate::fsio::io_error("reading", &path, e))?;
    Ok(KeyRequested {
        node_id,
        request,
        request_path: path.display().to_string(),
    })
}
