//! The member keys that change signatures are checked with (protocol.md
//! section 7): every signer certificate this node holds, each verified
//! against the consortium CA, marked revoked when the current revocation
//! list names it. Certificates arrive in two ways: in a message's
//! certificates extension (signers other than the sender) and in the TLS
//! handshake (the sender itself). Each new one is verified, kept in the
//! store (so it can be passed on to nodes that never met its holder) and
//! added to the book the store's gate uses. During a CA rollover's overlap
//! the extension also carries cross certificates (protocol.md 2.5), which
//! let a node still on the old CA check certificates of the new one.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use yui_protocol::provenance::{
    CERTIFICATES_EXTENSION, SIGNATURES_EXTENSION, Signer, SignerBook, SignerId,
    decode_certificates, decode_signatures, encode_certificates,
};
use yui_protocol::wire::{DocUpdate, Extension};

use super::{Peering, lock};
use crate::error::Result;
use crate::pki;
use crate::store::Store;

/// A verified certificate: the key it binds, and its serial (which
/// revocation lists name).
type Verified = (Signer, Vec<u8>);

/// The verified certificates, by their DER bytes.
#[derive(Default)]
pub struct Signers {
    known: std::sync::Mutex<HashMap<Vec<u8>, Verified>>,
    /// DER bytes that failed verification, so a peer repeating them costs
    /// one lookup (bounded: cleared when it grows past a limit, and when a
    /// new cross certificate may make them pass).
    refused: std::sync::Mutex<HashSet<Vec<u8>>>,
    /// Cross certificates of a CA rollover that an anchor signed: issuers
    /// of member certificates besides the anchors, passed on with the
    /// certificates they vouch for.
    cross: std::sync::Mutex<Vec<Vec<u8>>>,
}

const MAX_REFUSED: usize = 1_000;
/// Cross certificates kept at most (one per rollover in its overlap).
const MAX_CROSS: usize = 4;

impl Peering {
    /// Builds the book from this node's certificate and every certificate
    /// the store holds, and hands it to the store. Called at start.
    pub async fn load_signers(&self, store: &Store) -> Result<()> {
        let trust = self.trust();
        let mut ders = store.ca_certificates().await?;
        ders.extend(trust.intermediates.iter().cloned());
        ders.extend(store.signer_certificates().await?);
        ders.push(trust.cert_der.clone());
        self.learn(store, ders, "this node").await;
        // The book is handed over even when nothing was new.
        self.publish_signers(store);
        Ok(())
    }

    /// Verifies and keeps the certificates of a message's extensions and
    /// the one its sender presented in the TLS handshake.
    pub async fn learn_certificates(
        &self,
        store: &Store,
        tls_certificate: Option<&[u8]>,
        extensions: &[Extension],
        from: &str,
    ) {
        let mut ders: Vec<Vec<u8>> = tls_certificate.map(<[u8]>::to_vec).into_iter().collect();
        for ext in extensions
            .iter()
            .filter(|e| e.tag == CERTIFICATES_EXTENSION)
        {
            match decode_certificates(&ext.data) {
                Ok(found) => ders.extend(found),
                Err(e) => {
                    tracing::warn!(peer = %from, error = %e, "a peer sent a certificates extension that does not decode");
                }
            }
        }
        self.learn(store, ders, from).await;
    }

    async fn learn(&self, store: &Store, ders: Vec<Vec<u8>>, from: &str) {
        let trust = self.trust();
        let (cas, ders): (Vec<Vec<u8>>, Vec<Vec<u8>>) =
            ders.into_iter().partition(|d| pki::is_ca_certificate(d));
        let mut ders = ders;
        if self.learn_cross(store, &trust, cas, from).await {
            // Certificates refused before may chain through the new one.
            lock(&self.signers.refused).clear();
            match store.signer_certificates().await {
                Ok(stored) => ders.extend(stored),
                Err(e) => tracing::error!(error = %e, "could not read signer certificates"),
            }
        }
        let new: Vec<Vec<u8>> = {
            let known = lock(&self.signers.known);
            let refused = lock(&self.signers.refused);
            let mut seen = HashSet::new();
            ders.into_iter()
                .filter(|d| {
                    !known.contains_key(d) && !refused.contains(d) && seen.insert(d.clone())
                })
                .collect()
        };
        if new.is_empty() {
            return;
        }
        let cross = lock(&self.signers.cross).clone();
        let revocations = trust.revocations_snapshot();
        let mut verified = Vec::new();
        for der in new {
            match pki::signer(&der, &trust.anchors, &cross, &revocations) {
                Ok(signer) => {
                    let serial = pki::identity(&der).map(|i| i.serial).unwrap_or_default();
                    verified.push((der, signer, serial));
                }
                Err(e) => {
                    tracing::warn!(peer = %from, error = %e, "refused a signer certificate");
                    let mut refused = lock(&self.signers.refused);
                    if refused.len() >= MAX_REFUSED {
                        refused.clear();
                    }
                    refused.insert(der);
                }
            }
        }
        if verified.is_empty() {
            return;
        }
        let rows = verified
            .iter()
            .map(|(der, s, _)| (der.clone(), s.id, s.town.clone()))
            .collect();
        // Kept even if storing fails: the book is what checks signatures.
        if let Err(e) = store.remember_signer_certificates(rows).await {
            tracing::error!(error = %e, "could not keep signer certificates");
        }
        {
            let mut known = lock(&self.signers.known);
            for (der, signer, serial) in verified {
                tracing::info!(peer = %from, town = %signer.town, "learned a signer certificate");
                known.insert(der, (signer, serial));
            }
        }
        self.publish_signers(store);
    }

    /// Keeps the cross certificates among `cas` that an anchor signed.
    /// Returns whether one was new.
    async fn learn_cross(
        &self,
        store: &Store,
        trust: &super::Trust,
        cas: Vec<Vec<u8>>,
        from: &str,
    ) -> bool {
        let fresh: Vec<Vec<u8>> = {
            let cross = lock(&self.signers.cross);
            let mut fresh: Vec<Vec<u8>> = Vec::new();
            for der in cas {
                if cross.contains(&der) || fresh.contains(&der) {
                    continue;
                }
                if trust.anchors.is_cross_certificate(&der) {
                    fresh.push(der);
                } else if !trust.anchors.certs().contains(&der) {
                    tracing::debug!(peer = %from, "ignored a CA certificate that no trusted CA signed");
                }
            }
            fresh
        };
        if fresh.is_empty() {
            return false;
        }
        if let Err(e) = store.remember_ca_certificates(fresh.clone()).await {
            tracing::error!(error = %e, "could not keep a cross certificate");
        }
        let mut cross = lock(&self.signers.cross);
        for der in fresh {
            if cross.len() < MAX_CROSS {
                tracing::info!(peer = %from, "learned a cross certificate of the consortium CA rollover");
                cross.push(der);
            }
        }
        true
    }

    /// Hands the store a book with every known key, revoked as the current
    /// revocation list says (called again when a newer list is installed).
    pub fn publish_signers(&self, store: &Store) {
        let revocations = self.trust().revocations_snapshot();
        let mut book = SignerBook::new();
        let mut known = lock(&self.signers.known);
        // One key may hold several certificates (renewals): it is revoked
        // if any of them is.
        let mut revoked: HashSet<SignerId> = HashSet::new();
        for (signer, serial) in known.values_mut() {
            signer.revoked = revocations.is_revoked(serial);
            if signer.revoked {
                revoked.insert(signer.id);
            }
        }
        for (signer, _) in known.values() {
            let mut s = signer.clone();
            s.revoked = revoked.contains(&s.id);
            book.insert(s);
        }
        store.set_signer_book(Arc::new(book));
    }

    /// The certificates extension for a message carrying `docs`: the
    /// certificates of every signer their signatures name, except this
    /// node's own (the receiver has it from the TLS handshake) unless
    /// `own_too` (the handshake presented an older one).
    pub async fn certificates_for(
        &self,
        store: &Store,
        docs: &[DocUpdate],
        own_too: bool,
    ) -> Option<Extension> {
        if docs.is_empty() {
            return None;
        }
        let trust = self.trust();
        let own = trust.signer;
        let mut signers = HashSet::new();
        for ext in docs
            .iter()
            .flat_map(|d| &d.extensions)
            .filter(|e| e.tag == SIGNATURES_EXTENSION)
        {
            for sig in decode_signatures(&ext.data).unwrap_or_default() {
                if sig.signer != own || own_too {
                    signers.insert(sig.signer);
                }
            }
        }
        // During a rollover's overlap, the cross certificates that still
        // chain to a CA this node trusts: a receiver still on the old CA
        // needs them for any certificate of the new one, this node's too.
        let mut ders: Vec<Vec<u8>> = lock(&self.signers.cross)
            .iter()
            .chain(&trust.intermediates)
            .filter(|d| trust.anchors.is_cross_certificate(d))
            .cloned()
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        if !signers.is_empty() {
            match store.certificates_of(signers.into_iter().collect()).await {
                Ok(found) => ders.extend(found),
                Err(e) => {
                    tracing::error!(error = %e, "could not read signer certificates to send");
                }
            }
        }
        (!ders.is_empty()).then(|| Extension {
            tag: CERTIFICATES_EXTENSION,
            data: encode_certificates(&ders),
        })
    }
}
