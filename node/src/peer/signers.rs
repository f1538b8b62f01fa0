//! The member keys that change signatures are checked with (protocol.md
//! section 7): every signer certificate this node holds, each verified
//! against the consortium CA, marked revoked when the current revocation
//! list names it. Certificates arrive in two ways: in a message's
//! certificates extension (signers other than the sender) and in the TLS
//! handshake (the sender itself). Each new one is verified, kept in the
//! store (so it can be passed on to nodes that never met its holder) and
//! added to the book the store's gate uses.

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
pub struct Signers {
    /// This node's own key: its certificate travels in the handshake,
    /// never in the extension.
    own: Option<SignerId>,
    known: std::sync::Mutex<HashMap<Vec<u8>, Verified>>,
    /// DER bytes that failed verification, so a peer repeating them costs
    /// one lookup (bounded: cleared when it grows past a limit).
    refused: std::sync::Mutex<HashSet<Vec<u8>>>,
}

const MAX_REFUSED: usize = 1_000;

impl Signers {
    pub fn new(trust: &super::Trust) -> Signers {
        Signers {
            own: pki::spki(&trust.cert_der).ok().map(|s| pki::signer_id(&s)),
            known: Default::default(),
            refused: Default::default(),
        }
    }
}

impl Peering {
    /// Builds the book from this node's certificate and every certificate
    /// the store holds, and hands it to the store. Called at start.
    pub async fn load_signers(&self, store: &Store) -> Result<()> {
        let mut ders = store.signer_certificates().await?;
        ders.push(self.trust.cert_der.clone());
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
        let revocations = self.trust.revocations_snapshot();
        let mut verified = Vec::new();
        for der in new {
            match pki::signer(&der, &self.trust.ca_der, &revocations) {
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

    /// Hands the store a book with every known key, revoked as the current
    /// revocation list says (called again when a newer list is installed).
    pub fn publish_signers(&self, store: &Store) {
        let revocations = self.trust.revocations_snapshot();
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
    /// node's own (the receiver has it from the TLS handshake).
    pub async fn certificates_for(&self, store: &Store, docs: &[DocUpdate]) -> Option<Extension> {
        if docs.is_empty() {
            return None;
        }
        let own = self.signers.own?;
        let mut signers = HashSet::new();
        for ext in docs
            .iter()
            .flat_map(|d| &d.extensions)
            .filter(|e| e.tag == SIGNATURES_EXTENSION)
        {
            for sig in decode_signatures(&ext.data).unwrap_or_default() {
                if sig.signer != own {
                    signers.insert(sig.signer);
                }
            }
        }
        if signers.is_empty() {
            return None;
        }
        match store.certificates_of(signers.into_iter().collect()).await {
            Ok(ders) if !ders.is_empty() => Some(Extension {
                tag: CERTIFICATES_EXTENSION,
                data: encode_certificates(&ders),
            }),
            Ok(_) => None,
            Err(e) => {
                tracing::error!(error = %e, "could not read signer certificates to send");
                None
            }
        }
    }
}
