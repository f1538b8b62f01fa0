//! The sync logic, without I/O: what to send a peer, and what to accept
//! from one.
//!
//! Each node numbers its writes (its change feed). A peer's news is "the
//! shared records in its feed after the point I have seen", so a round with
//! nothing new costs a cursor, whatever the number of records. For each
//! record, each side remembers the heads the other is known to have
//! ([`Replica::peer_heads`]) and sends only the Automerge changes after them:
//! a round after one edit costs about that edit. A record whose known heads
//! equal its current heads is skipped without loading it, which is what keeps
//! echoes (a record just received being "news" in the receiver's own feed)
//! free.
//!
//! Nothing here trusts the peer. Every update passes [`DocUpdate::check`]
//! (framing, shared scope, limits) and is applied to a *copy* of the stored
//! document under `catch_unwind`; it is stored only if the result is a
//! complete, well-formed Yui record of the collection it claims. If the
//! sender's idea of our heads was wrong (we restored a backup, a response was
//! lost), the changes will lack dependencies: we answer with a [`Need`]
//! carrying our real heads and the sender starts again from those. No state
//! is kept in flight between rounds, so a failed exchange leaves nothing to
//! rebuild: the next round starts from what both sides have persisted.
//!
//! What a node *sends* a peer is only staged; the peer's next request says
//! how far through our feed it has applied (its pull cursor, saved together
//! with what it applied), and that confirms the staged heads. An answer that
//! is lost therefore confirms nothing, and the records it carried are sent
//! again.
//!
//! Feed positions belong to one database. A node restored from a backup
//! reuses positions for other writes and has lost what it received after the
//! backup, so each database carries a random *feed epoch*, changed by a
//! restore. A node that sees a peer's epoch change forgets the heads it
//! believed that peer had and reads the peer's feed from the start: records
//! the peer already has cost a heads comparison, records it lost are sent
//! again.
//!
//! **Architecture invariant:** a local-scope record cannot be expressed here.
//! Feeds yield [`SharedCollection`]s, which can only be made from shared
//! collections, and [`Replica::stored`] never returns a local record's bytes.

use std::collections::HashSet;
use std::panic::AssertUnwindSafe;

use automerge::{AutoCommit, ChangeHash};

use crate::collection::Collection;
use crate::doc;
use crate::gate::{self, Admission};
use crate::provenance::{self, ChangeSignature, SIGNATURES_EXTENSION, encode_signatures};
use crate::record::{RecordId, RecordView};
use crate::wire::{DocUpdate, Extension, Need, Refusal};

/// A change hash, as bytes.
pub type Hash = [u8; 32];

/// A collection known to be shared. The only kind of collection the sync
/// layer can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SharedCollection(Collection);

impl SharedCollection {
    /// `None` for a local collection.
    pub fn new(c: Collection) -> Option<SharedCollection> {
        c.is_shared().then_some(SharedCollection(c))
    }

    pub fn get(self) -> Collection {
        self.0
    }
}

/// One entry of a replica's change feed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeedItem {
    pub seq: u64,
    pub id: RecordId,
    pub collection: SharedCollection,
    pub heads: Vec<Hash>,
    /// The feed position at which the record last took late signatures
    /// (signatures of changes it already held, protocol.md 7.6); 0: never.
    /// At most `seq`.
    pub signed_at: u64,
}

/// What a replica holds under an id.
pub enum Stored {
    Missing,
    /// A local record has this id: a peer may not touch it (and learns
    /// nothing of it beyond the refusal).
    Local,
    /// A shared record: its uncompressed Automerge bytes and heads.
    Shared {
        collection: SharedCollection,
        bytes: Vec<u8>,
        heads: Vec<Hash>,
    },
}

/// The storage the sync logic reads and writes. The node implements it over
/// SQLite; the simulation over memory.
pub trait Replica {
    type Error: std::fmt::Display;

    /// Shared records written after `after`, oldest first, at most `limit`.
    fn shared_feed(&mut self, after: u64, limit: usize) -> Result<Vec<FeedItem>, Self::Error>;

    fn stored(&mut self, id: &RecordId) -> Result<Stored, Self::Error>;

    /// Stores a merged shared document (new or updated) that a peer sent,
    /// with the verified signatures of its new changes, `received` being
    /// the size of the update's changes, and charges it to its origin
    /// town's quota ([`crate::quota`]) in the same write; or, when that
    /// would exceed the quota, stores nothing and returns the refusal.
    fn store_shared(
        &mut self,
        id: &RecordId,
        collection: SharedCollection,
        doc: &mut AutoCommit,
        view: &RecordView,
        received: u64,
        signatures: &[ChangeSignature],
    ) -> Result<Result<(), gate::Refused>, Self::Error>;

    /// The stored signatures of a record's `changes` (all of them: None),
    /// which travel with the changes.
    fn signatures(
        &mut self,
        id: &RecordId,
        changes: Option<&[ChangeHash]>,
    ) -> Result<Vec<ChangeSignature>, Self::Error>;

    /// Late signatures of a record (taken for changes it already held,
    /// protocol.md 7.6) stored at feed positions after `after`.
    fn late_signatures(
        &mut self,
        id: &RecordId,
        after: u64,
    ) -> Result<Vec<ChangeSignature>, Self::Error>;

    /// Stores verified signatures of changes the record already holds, as
    /// late signatures. When any was not stored yet, the record takes a
    /// new feed position (its [`FeedItem::signed_at`] too), so peers are
    /// offered them; otherwise nothing changes. Answers how many were new.
    fn store_late_signatures(
        &mut self,
        id: &RecordId,
        signatures: &[ChangeSignature],
    ) -> Result<usize, Self::Error>;

    /// The heads `peer` is known to have of a record (empty if unknown).
    fn peer_heads(&mut self, peer: &str, id: &RecordId) -> Result<Vec<Hash>, Self::Error>;

    fn set_peer_heads(
        &mut self,
        peer: &str,
        id: &RecordId,
        heads: &[Hash],
    ) -> Result<(), Self::Error>;

    /// Notes heads an answer to `peer` delivers, not yet acknowledged:
    /// they become known when the peer's next request shows a pull cursor
    /// of at least `cursor` ([`Replica::confirm_peer_heads`]).
    fn stage_peer_heads(
        &mut self,
        peer: &str,
        cursor: u64,
        id: &RecordId,
        heads: &[Hash],
    ) -> Result<(), Self::Error>;

    /// Makes staged heads with a cursor up to `up_to` known (oldest first).
    fn confirm_peer_heads(&mut self, peer: &str, up_to: u64) -> Result<(), Self::Error>;

    /// This replica's feed epoch.
    fn feed_epoch(&mut self) -> Result<u64, Self::Error>;

    /// The feed epoch last seen from `peer`.
    fn peer_epoch(&mut self, peer: &str) -> Result<Option<u64>, Self::Error>;

    fn set_peer_epoch(&mut self, peer: &str, epoch: u64) -> Result<(), Self::Error>;

    /// Forgets every heads `peer` was believed to have.
    fn forget_peer(&mut self, peer: &str) -> Result<(), Self::Error>;

    /// The receiver's clock and guard registry, which every incoming
    /// document is checked against ([`gate::admit`]).
    fn admission(&mut self) -> Result<Admission, Self::Error>;
}

/// Notes a peer's feed epoch. Returns true when it changed (the peer was
/// restored): what we believed it had is forgotten.
pub fn observe_epoch<R: Replica>(
    replica: &mut R,
    peer: &str,
    epoch: u64,
) -> Result<bool, R::Error> {
    let changed = match replica.peer_epoch(peer)? {
        Some(known) if known == epoch => return Ok(false),
        Some(_) => true,
        None => false,
    };
    if changed {
        replica.forget_peer(peer)?;
    }
    replica.set_peer_epoch(peer, epoch)?;
    Ok(changed)
}

/// Updates to send, and how far through the feed they reach.
#[derive(Debug, Default)]
pub struct Batch {
    pub docs: Vec<DocUpdate>,
    /// The feed position of each doc in `docs`.
    pub seqs: Vec<u64>,
    /// Everything in the feed up to here is in `docs` or already known to
    /// the peer.
    pub cursor: u64,
    /// The feed has more after `cursor`.
    pub more: bool,
}

impl Batch {
    /// The Automerge bytes the batch carries.
    pub fn bytes(&self) -> usize {
        self.docs.iter().map(|d| d.changes.len()).sum()
    }

    /// What counts against [`Limits::max_bytes`]: the Automerge bytes, and
    /// the signatures of signature-only updates (which carry no changes).
    fn weight(&self) -> usize {
        self.bytes()
            + self
                .docs
                .iter()
                .filter(|d| d.changes.is_empty())
                .flat_map(|d| &d.extensions)
                .map(|e| e.data.len())
                .sum::<usize>()
    }
}

/// How much one batch may hold.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_docs: usize,
    pub max_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_docs: 400,
            max_bytes: 8 * 1024 * 1024,
        }
    }
}

fn same_set(a: &[Hash], b: &[Hash]) -> bool {
    a.len() == b.len() && a.iter().all(|h| b.contains(h))
}

pub fn to_hashes(heads: &[ChangeHash]) -> Vec<Hash> {
    heads.iter().map(|h| h.0).collect()
}

fn from_hashes(heads: &[Hash]) -> Vec<ChangeHash> {
    heads.iter().map(|h| ChangeHash(*h)).collect()
}

/// The raw (uncompressed) change chunks of `doc` after `known`.
fn changes_after(doc: &mut AutoCommit, known: &[ChangeHash]) -> Vec<u8> {
    doc.get_changes(known)
        .iter()
        .flat_map(|c| c.raw_bytes().to_vec())
        .collect()
}

/// Chooses what `peer` lacks among the shared records written after `after`.
pub fn prepare_updates<R: Replica>(
    replica: &mut R,
    peer: &str,
    after: u64,
    limits: Limits,
) -> Result<Batch, R::Error> {
    let mut batch = Batch {
        cursor: after,
        ..Batch::default()
    };
    const PAGE: usize = 512;
    loop {
        let items = replica.shared_feed(batch.cursor, PAGE)?;
        let exhausted = items.len() < PAGE;
        for item in items {
            if batch.docs.len() >= limits.max_docs || batch.weight() >= limits.max_bytes {
                batch.more = true;
                return Ok(batch);
            }
            let known = replica.peer_heads(peer, &item.id)?;
            // Signatures taken late after the peer's cursor: it may hold
            // the changes without them (protocol.md 7.6).
            let late = item.signed_at > after;
            let update = if !same_set(&known, &item.heads) {
                update_for(replica, &item, &known, late.then_some(after))?
            } else if late {
                signatures_only(replica, &item, after)?
            } else {
                None
            };
            if let Some(update) = update {
                batch.docs.push(update);
                batch.seqs.push(item.seq);
            }
            batch.cursor = item.seq;
        }
        if exhausted {
            return Ok(batch);
        }
    }
}

/// The changes of a record after `known`, with their signatures, and the
/// late signatures taken after `late_after` when it is set.
fn update_for<R: Replica>(
    replica: &mut R,
    item: &FeedItem,
    known: &[Hash],
    late_after: Option<u64>,
) -> Result<Option<DocUpdate>, R::Error> {
    let Stored::Shared {
        collection,
        bytes,
        heads,
    } = replica.stored(&item.id)?
    else {
        return Ok(None);
    };
    // The changes, and which of them (None: all the record's).
    let (changes, which) = if known.is_empty() {
        // The stored bytes are already uncompressed chunks: send them as is.
        (bytes, None)
    } else {
        let Ok(mut doc) = AutoCommit::load(&bytes) else {
            return Ok(None);
        };
        let mut known: Vec<ChangeHash> = from_hashes(known);
        known.retain(|h| doc.get_change_by_hash(h).is_some());
        if known.is_empty() {
            (bytes, None)
        } else {
            let which: Vec<ChangeHash> = provenance::changes_after(&mut doc, &known)
                .iter()
                .map(|c| c.hash)
                .collect();
            (changes_after(&mut doc, &known), Some(which))
        }
    };
    if changes.is_empty() {
        return Ok(None);
    }
    let mut signatures = replica.signatures(&item.id, which.as_deref())?;
    if let (Some(after), Some(_)) = (late_after, &which) {
        // The peer holds older changes, perhaps without these.
        let carried: HashSet<ChangeHash> = signatures.iter().map(|s| s.change).collect();
        for s in replica.late_signatures(&item.id, after)? {
            if !carried.contains(&s.change) {
                signatures.push(s);
            }
        }
    }
    let extensions = if signatures.is_empty() {
        Vec::new()
    } else {
        vec![Extension {
            tag: SIGNATURES_EXTENSION,
            data: encode_signatures(&signatures),
        }]
    };
    Ok(Some(DocUpdate {
        id: item.id.to_string(),
        collection: collection.get().name().to_owned(),
        heads: heads.iter().map(|h| h.to_vec()).collect(),
        changes,
        seq: item.seq,
        extensions,
    }))
}

/// A signature-only update: the late signatures a record took after
/// `after`, for a peer known to hold its heads (protocol.md 7.6).
fn signatures_only<R: Replica>(
    replica: &mut R,
    item: &FeedItem,
    after: u64,
) -> Result<Option<DocUpdate>, R::Error> {
    let signatures = replica.late_signatures(&item.id, after)?;
    if signatures.is_empty() {
        return Ok(None);
    }
    Ok(Some(DocUpdate {
        id: item.id.to_string(),
        collection: item.collection.get().name().to_owned(),
        heads: item.heads.iter().map(|h| h.to_vec()).collect(),
        changes: Vec::new(),
        seq: item.seq,
        extensions: vec![Extension {
            tag: SIGNATURES_EXTENSION,
            data: encode_signatures(&signatures),
        }],
    }))
}

/// What became of a batch of updates from a peer.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Documents created or changed.
    pub stored: Vec<RecordId>,
    /// Documents we already had in full.
    pub unchanged: usize,
    /// Documents that need resending from our heads.
    pub needs: Vec<Need>,
    /// Documents refused for good.
    pub refused: Vec<Refusal>,
    /// Records that took late signatures (protocol.md 7.6).
    pub signed: Vec<RecordId>,
}

fn refusal(id: &str, code: &str, message: impl Into<String>) -> Refusal {
    Refusal {
        id: id.chars().take(40).collect(),
        code: code.to_owned(),
        message: message.into(),
    }
}

/// What to do with one update, decided from the stored state alone.
///
/// Planning only reads, so it can run outside the store's write lock and on
/// several cores; [`commit_plans`] then writes, after checking that the
/// record did not change meanwhile.
pub enum Plan {
    /// No new change: only note what the peer has (and take the late
    /// signatures the update brought, if any).
    Unchanged {
        id: RecordId,
        heads: Vec<Hash>,
        late: LateSignatures,
    },
    /// The changes lack dependencies: ask the sender again from our heads.
    /// `seq` is the update's position in the sender's feed. Late signatures
    /// for changes held here are taken all the same: the changes sent
    /// again need not carry them.
    Need {
        need: Need,
        seq: u64,
        late: LateSignatures,
    },
    /// Refused for good.
    Refuse(Refusal),
    /// Store this merged document.
    Store(Box<Merged>),
}

/// A document merged on a copy, ready to store.
pub struct Merged {
    pub id: RecordId,
    pub collection: SharedCollection,
    /// Our heads the merge started from (empty: a new record).
    pub base: Vec<Hash>,
    pub doc: AutoCommit,
    pub view: RecordView,
    /// The sender's heads, which the peer now has.
    pub sender_heads: Vec<Hash>,
    /// The update itself, to plan again if the record moved meanwhile.
    pub update: DocUpdate,
    /// For a record new here, the sender's bytes, which `AutoCommit::load`
    /// has just loaded into `doc`: stored as they are, they load again by
    /// construction, so neither a save nor the reload check is needed.
    pub verbatim: Option<Vec<u8>>,
    /// The verified signatures of the changes new here.
    pub signatures: Vec<ChangeSignature>,
    /// Late signatures for changes held here before.
    pub late: LateSignatures,
}

/// Signatures an update offered for changes held here without one
/// (protocol.md 7.6), judged one by one.
#[derive(Debug, Default)]
pub struct LateSignatures {
    /// Verified: to store.
    pub signatures: Vec<ChangeSignature>,
    /// For a signature-only update, the first signature that failed: the
    /// update is refused with it (the good ones are stored all the same).
    /// An update with changes is judged by its changes.
    pub refused: Option<Refusal>,
}

/// Decides what to do with one update: checks it, applies it to a copy of
/// the stored document (Automerge may panic on crafted input: a copy is all
/// it can spoil), and validates the result. Reads only.
///
/// An update may also offer signatures for changes held here without one
/// (late signatures, protocol.md 7.6): a signature-only update (no changes)
/// offers nothing else. They are judged whatever becomes of its changes,
/// unless the update is refused.
pub fn plan_update<R: Replica>(replica: &mut R, update: DocUpdate) -> Result<Plan, R::Error> {
    let raw_id = update.id.clone();
    let checked = match update.clone().check() {
        Ok(c) => c,
        Err(e) => return Ok(Plan::Refuse(refusal(&raw_id, e.code(), e.to_string()))),
    };
    let Some(collection) = SharedCollection::new(checked.collection) else {
        return Ok(Plan::Refuse(refusal(
            &raw_id,
            "local_collection",
            "a local collection never syncs",
        )));
    };
    let (bytes, base) = match replica.stored(&checked.id)? {
        Stored::Local => {
            return Ok(Plan::Refuse(refusal(
                &raw_id,
                "id_conflict",
                "this id belongs to another record",
            )));
        }
        Stored::Shared {
            collection: have, ..
        } if have != collection => {
            return Ok(Plan::Refuse(refusal(
                &raw_id,
                "collection_mismatch",
                format!("record is in {}, not {}", have.get(), collection.get()),
            )));
        }
        Stored::Shared { bytes, heads, .. } => (Some(bytes), heads),
        Stored::Missing => (None, Vec::new()),
    };
    let admission = replica.admission()?;
    // Offered signatures of changes that may be held here unsigned: those
    // without a stored signature. Usually none (an update signs the changes
    // it carries), and then this costs a lookup per signature.
    let unsigned_offered: Vec<ChangeHash> =
        if bytes.is_none() || checked.signatures.is_empty() || admission.signers.is_none() {
            Vec::new()
        } else {
            let offered: Vec<ChangeHash> = checked.signatures.keys().copied().collect();
            let stored: HashSet<ChangeHash> = replica
                .signatures(&checked.id, Some(&offered))?
                .into_iter()
                .map(|s| s.change)
                .collect();
            offered
                .into_iter()
                .filter(|h| !stored.contains(h))
                .collect()
        };
    if unsigned_offered.is_empty()
        && !checked.heads.is_empty()
        && checked.heads.iter().all(|h| base.contains(h))
    {
        // The sender's heads are ours: nothing new, and no need to load
        // the document to know it.
        return Ok(Plan::Unchanged {
            id: checked.id,
            heads: checked.heads,
            late: LateSignatures::default(),
        });
    }
    let mut doc = match &bytes {
        Some(bytes) => match AutoCommit::load(bytes) {
            Ok(doc) => doc,
            // Our own copy is unreadable: leave it alone, ask for nothing.
            Err(e) => {
                return Ok(Plan::Refuse(refusal(
                    &raw_id,
                    "unreadable_here",
                    e.to_string(),
                )));
            }
        },
        None => AutoCommit::new(),
    };
    let new_here = base.is_empty();
    let signature_only = checked.changes.is_empty();
    // Everything Automerge does with the peer's bytes runs on our copy and
    // under catch_unwind: crafted changes can make it panic after they were
    // applied (in `get_heads`, `read`, `save`), not only while applying.
    let refused_id = raw_id.clone();
    let merged = std::panic::catch_unwind(AssertUnwindSafe(
        move || -> Result<Plan, std::convert::Infallible> {
            // Which offered signatures are late: their changes were here
            // before this update. They are judged on our document as it
            // was, before the peer's changes could touch it (a crafted
            // change could, say, give the record a second town).
            let held_unsigned: Vec<ChangeHash> = unsigned_offered
                .into_iter()
                .filter(|h| doc.get_change_by_hash(h).is_some())
                .collect();
            let view = match &admission.signers {
                Some(book) if !held_unsigned.is_empty() => doc::read(&doc).ok().map(|v| (book, v)),
                _ => None,
            };
            let late = match view {
                Some((book, view)) => {
                    let judged = provenance::check_late_signatures(
                        collection.get(),
                        &mut doc,
                        &view,
                        &held_unsigned,
                        &checked.signatures,
                        book,
                    );
                    LateSignatures {
                        signatures: judged.signatures,
                        refused: judged
                            .refused
                            .filter(|_| signature_only)
                            .map(|(code, message)| refusal(&raw_id, code, message)),
                    }
                }
                None => LateSignatures::default(),
            };
            let sender_heads = from_hashes(&checked.heads);
            if !sender_heads.is_empty()
                && sender_heads
                    .iter()
                    .all(|h| doc.get_change_by_hash(h).is_some())
            {
                return Ok(Plan::Unchanged {
                    id: checked.id,
                    heads: checked.heads,
                    late,
                });
            }
            // A record new here is loaded the way stored records are read
            // back (`AutoCommit::load`), so its bytes can be kept verbatim;
            // if that fails (e.g. missing dependencies), the general path
            // decides.
            let mut verbatim = None;
            if new_here
                && !signature_only
                && let Ok(Ok(loaded)) = std::panic::catch_unwind(AssertUnwindSafe(|| {
                    AutoCommit::load(&checked.changes)
                }))
            {
                doc = loaded;
                verbatim = Some(checked.changes.clone());
            }
            let applied = if verbatim.is_some() || signature_only {
                Ok(Ok(0))
            } else {
                std::panic::catch_unwind(AssertUnwindSafe(|| {
                    doc.load_incremental(&checked.changes)
                }))
            };
            match applied {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    return Ok(Plan::Refuse(refusal(
                        &raw_id,
                        "invalid_changes",
                        e.to_string(),
                    )));
                }
                Err(_) => {
                    return Ok(Plan::Refuse(refusal(
                        &raw_id,
                        "invalid_changes",
                        "the changes could not be applied",
                    )));
                }
            }
            // Fast path: the sender's heads are now among ours, so everything they
            // depend on was applied. Otherwise ask Automerge (slow).
            let now_heads = doc.get_heads();
            let complete = sender_heads.iter().all(|h| now_heads.contains(h))
                || (doc.get_missing_deps(&[]).is_empty()
                    && sender_heads
                        .iter()
                        .all(|h| doc.get_change_by_hash(h).is_some()));
            if !complete {
                // A signature-only update for changes we lack (or a record
                // we do not hold) is answered the same way: the sender then
                // sends the changes, with their signatures.
                return Ok(Plan::Need {
                    need: Need {
                        id: checked.id.to_string(),
                        have: base.iter().map(|h| h.to_vec()).collect(),
                    },
                    seq: update.seq,
                    late,
                });
            }
            let view = match doc::read(&doc) {
                Ok(v) => v,
                Err(e) => {
                    return Ok(Plan::Refuse(refusal(
                        &raw_id,
                        "invalid_document",
                        e.to_string(),
                    )));
                }
            };
            if view.id != checked.id || view.collection != collection.get().name() {
                return Ok(Plan::Refuse(refusal(
                    &raw_id,
                    "document_mismatch",
                    format!(
                        "the document says it is {} record {}",
                        view.collection, view.id
                    ),
                )));
            }
            // The gate of a local write: schema (tombstones too), town,
            // times, sizes, personal data.
            let signatures = match gate::admit(
                collection.get(),
                &mut doc,
                &from_hashes(&base),
                &view,
                &checked.signatures,
                &admission,
            ) {
                Ok(signatures) => signatures,
                Err((code, message)) => return Ok(Plan::Refuse(refusal(&raw_id, code, message))),
            };
            Ok(Plan::Store(Box::new(Merged {
                id: checked.id,
                collection,
                base,
                doc,
                view,
                sender_heads: checked.heads,
                update,
                verbatim,
                signatures,
                late,
            })))
        },
    ));
    let plan = match merged {
        Ok(Ok(plan)) => plan,
        Ok(Err(never)) => match never {},
        Err(_) => {
            return Ok(Plan::Refuse(refusal(
                &refused_id,
                "invalid_changes",
                "the changes break the document",
            )));
        }
    };
    // Store only what loads again: a merge that saves to bytes Automerge
    // cannot load would freeze the record here and poison every peer.
    let Plan::Store(mut m) = plan else {
        return Ok(plan);
    };
    if m.verbatim.is_some() {
        return Ok(Plan::Store(m));
    }
    let reloaded = std::panic::catch_unwind(AssertUnwindSafe(|| {
        let bytes = m.doc.save_nocompress();
        AutoCommit::load(&bytes).ok()
    }));
    match reloaded {
        Ok(Some(doc)) => {
            m.doc = doc;
            Ok(Plan::Store(m))
        }
        _ => Ok(Plan::Refuse(refusal(
            &refused_id,
            "invalid_changes",
            "the merged document would not load again",
        ))),
    }
}

impl Plan {
    /// For a document we must ask for again: its id and its position in
    /// the sender's feed, where the client's pull cursor must go back to.
    pub fn needed_at(&self) -> Option<(&str, u64)> {
        match self {
            Plan::Need { need, seq, .. } => Some((need.id.as_str(), *seq)),
            _ => None,
        }
    }
}

/// Plans every update (reads only).
pub fn plan_updates<R: Replica>(
    replica: &mut R,
    updates: Vec<DocUpdate>,
) -> Result<Vec<Plan>, R::Error> {
    updates
        .into_iter()
        .map(|u| plan_update(replica, u))
        .collect()
}

/// Writes what the plans decided. A record that changed since it was planned
/// (a concurrent local write or another peer's) is planned again, here.
pub fn commit_plans<R: Replica>(
    replica: &mut R,
    peer: &str,
    plans: Vec<Plan>,
) -> Result<Outcome, R::Error> {
    let mut outcome = Outcome::default();
    for plan in plans {
        let plan = match plan {
            Plan::Store(merged) => {
                let current = match replica.stored(&merged.id)? {
                    Stored::Shared { heads, .. } => heads,
                    _ => Vec::new(),
                };
                if same_set(&current, &merged.base) {
                    Plan::Store(merged)
                } else {
                    plan_update(replica, merged.update)?
                }
            }
            other => other,
        };
        match plan {
            Plan::Unchanged { id, heads, late } => {
                outcome.unchanged += 1;
                replica.set_peer_heads(peer, &id, &heads)?;
                take_late(replica, &id, late, &mut outcome)?;
            }
            Plan::Need { need, late, .. } => {
                if let Ok(id) = need.id.parse::<RecordId>() {
                    take_late(replica, &id, late, &mut outcome)?;
                }
                outcome.needs.push(need);
            }
            Plan::Refuse(r) => outcome.refused.push(r),
            Plan::Store(mut merged) => {
                let stored = replica.store_shared(
                    &merged.id,
                    merged.collection,
                    &mut merged.doc,
                    &merged.view,
                    merged.update.changes.len() as u64,
                    &merged.signatures,
                )?;
                match stored {
                    Ok(()) => {
                        replica.set_peer_heads(peer, &merged.id, &merged.sender_heads)?;
                        let late = std::mem::take(&mut merged.late);
                        take_late(replica, &merged.id, late, &mut outcome)?;
                        outcome.stored.push(merged.id);
                    }
                    // Over its origin town's quota: not stored, so never
                    // relayed; the rest of the batch goes on.
                    Err((code, message)) => {
                        outcome
                            .refused
                            .push(refusal(merged.id.as_str(), code, message));
                    }
                }
            }
        }
    }
    Ok(outcome)
}

/// Stores the late signatures an update brought, and notes its refusal.
fn take_late<R: Replica>(
    replica: &mut R,
    id: &RecordId,
    late: LateSignatures,
    outcome: &mut Outcome,
) -> Result<(), R::Error> {
    if !late.signatures.is_empty() && replica.store_late_signatures(id, &late.signatures)? > 0 {
        outcome.signed.push(id.clone());
    }
    if let Some(r) = late.refused {
        outcome.refused.push(r);
    }
    Ok(())
}

/// Applies updates from `peer`: each on a copy, stored only if whole and
/// valid ([`plan_updates`] then [`commit_plans`], in one go).
pub fn accept_updates<R: Replica>(
    replica: &mut R,
    peer: &str,
    updates: Vec<DocUpdate>,
) -> Result<Outcome, R::Error> {
    let plans = plan_updates(replica, updates)?;
    commit_plans(replica, peer, plans)
}

/// A peer told us it lacks changes we assumed it had: forget what we assumed.
pub fn apply_needs<R: Replica>(
    replica: &mut R,
    peer: &str,
    needs: &[Need],
) -> Result<(), R::Error> {
    for need in needs {
        let Ok(id) = need.id.parse::<RecordId>() else {
            continue;
        };
        let have: Vec<Hash> = need
            .have
            .iter()
            .filter_map(|h| <[u8; 32]>::try_from(h.as_slice()).ok())
            .take(crate::wire::MAX_HEADS)
            .collect();
        replica.set_peer_heads(peer, &id, &have)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryReplica;
    use crate::validate::{validate_create, validate_patch};
    use automerge::ActorId;
    use serde_json::json;

    fn town(name: &str, n: u8) -> MemoryReplica {
        MemoryReplica::new(name, ActorId::from([n; 16].as_slice()))
    }

    fn fields(c: Collection, v: serde_json::Value) -> crate::validate::Fields {
        validate_create(c, v.as_object().expect("object")).expect("valid")
    }

    /// Cursors a client keeps for one server.
    #[derive(Default)]
    struct Cursors {
        push: u64,
        pull: u64,
    }

    /// One full round, client ⇄ server, as the node does it over HTTP.
    /// Returns the bytes of Automerge data that crossed.
    fn round(client: &mut MemoryReplica, server: &mut MemoryReplica, c: &mut Cursors) -> usize {
        let (cid, sid) = (client.town.clone(), server.town.clone());
        let push = prepare_updates(client, &sid, c.push, Limits::default()).expect("prepare");
        let mut bytes = push.bytes();
        let got = accept_updates(server, &cid, push.docs.clone()).expect("accept");
        assert!(got.refused.is_empty(), "{:?}", got.refused);
        apply_needs(client, &sid, &got.needs).expect("needs");
        c.push = match push
            .seqs
            .iter()
            .zip(&push.docs)
            .find(|(_, d)| got.needs.iter().any(|n| n.id == d.id))
        {
            Some((seq, _)) => seq - 1,
            None => push.cursor,
        };
        for d in &push.docs {
            if !got.needs.iter().any(|n| n.id == d.id) {
                let id: RecordId = d.id.parse().expect("id");
                let heads: Vec<Hash> = d
                    .heads
                    .iter()
                    .map(|h| h.as_slice().try_into().expect("32"))
                    .collect();
                client.set_peer_heads(&sid, &id, &heads).expect("heads");
            }
        }
        let pull = prepare_updates(server, &cid, c.pull, Limits::default()).expect("prepare");
        bytes += pull.bytes();
        // The server assumes the client will have what it sent.
        for d in &pull.docs {
            let id: RecordId = d.id.parse().expect("id");
            let heads: Vec<Hash> = d
                .heads
                .iter()
                .map(|h| h.as_slice().try_into().expect("32"))
                .collect();
            server.set_peer_heads(&cid, &id, &heads).expect("heads");
        }
        let got = accept_updates(client, &sid, pull.docs.clone()).expect("accept");
        assert!(got.refused.is_empty(), "{:?}", got.refused);
        apply_needs(server, &cid, &got.needs).expect("needs");
        c.pull = match pull
            .seqs
            .iter()
            .zip(&pull.docs)
            .find(|(_, d)| got.needs.iter().any(|n| n.id == d.id))
        {
            Some((seq, _)) => seq - 1,
            None => pull.cursor,
        };
        bytes
    }

    const BODY: &str = "住民ワーカーの研修は月に一度行う。\n顧客とのやりとりは必ず記録に残す。\n広報は住民向けと顧客向けに分ける。";

    #[test]
    fn records_travel_a_chain_and_local_records_stay_home() {
        let (mut a, mut b, mut c) = (town("tateshina", 1), town("omachi", 2), town("itoigawa", 3));
        let shared = a.create(
            Collection::Knowledge,
            &fields(
                Collection::Knowledge,
                json!({"title": "研修", "body": BODY, "category": "training"}),
            ),
            1,
            [1; 10],
        );
        let local = a.create(
            Collection::Workers,
            &fields(
                Collection::Workers,
                json!({"name": "山田 花子", "status": "active"}),
            ),
            2,
            [2; 10],
        );
        let (mut ab, mut bc) = (Cursors::default(), Cursors::default());
        round(&mut a, &mut b, &mut ab);
        round(&mut b, &mut c, &mut bc);
        assert_eq!(c.view(&shared).expect("arrived")["title"], json!("研修"));
        assert_eq!(
            c.view(&shared).expect("arrived").town,
            "tateshina",
            "provenance survives the relay"
        );
        for node in [&b, &c] {
            assert!(
                node.collection_of(&local).is_none(),
                "a local record crossed a town boundary"
            );
            assert!(
                node.ids()
                    .all(|id| node.collection_of(id).is_some_and(Collection::is_shared))
            );
        }
        // Converged: an idle round moves no Automerge data at all.
        assert_eq!(round(&mut a, &mut b, &mut ab), 0);
        assert_eq!(round(&mut b, &mut c, &mut bc), 0);
        assert_eq!(a.shared_state(), c.shared_state());
    }

    impl std::ops::Index<&'static str> for RecordView {
        type Output = serde_json::Value;
        fn index(&self, key: &'static str) -> &serde_json::Value {
            &self.fields[key]
        }
    }

    #[test]
    fn a_round_after_one_edit_carries_about_that_edit() {
        let (mut a, mut b) = (town("tateshina", 1), town("omachi", 2));
        let mut ids = Vec::new();
        for i in 0..50u8 {
            ids.push(a.create(
                Collection::Knowledge,
                &fields(
                    Collection::Knowledge,
                    json!({"title": format!("記事{i}"), "body": BODY, "category": "pr"}),
                ),
                i64::from(i),
                [i; 10],
            ));
        }
        let mut cur = Cursors::default();
        let initial = round(&mut a, &mut b, &mut cur);
        let patch = validate_patch(
            Collection::Knowledge,
            json!({"title": "記事0（改訂）"}).as_object().expect("obj"),
        )
        .expect("valid");
        assert!(a.update(&ids[0], &patch, 100));
        let after_edit = round(&mut a, &mut b, &mut cur);
        assert!(
            after_edit > 0 && after_edit < 400,
            "one small edit cost {after_edit} bytes (initial {initial})"
        );
        assert_eq!(
            b.view(&ids[0]).expect("view")["title"],
            json!("記事0（改訂）")
        );
        assert_eq!(round(&mut a, &mut b, &mut cur), 0, "and then nothing");
    }

    #[test]
    fn concurrent_text_edits_in_two_towns_both_survive() {
        let (mut a, mut b) = (town("tateshina", 1), town("omachi", 2));
        let id = a.create(
            Collection::Knowledge,
            &fields(
                Collection::Knowledge,
                json!({"title": "t", "body": BODY, "category": "pr"}),
            ),
            1,
            [1; 10],
        );
        let mut cur = Cursors::default();
        round(&mut a, &mut b, &mut cur);
        let edit = |body: String| {
            validate_patch(
                Collection::Knowledge,
                json!({ "body": body }).as_object().expect("obj"),
            )
            .expect("valid")
        };
        a.update(&id, &edit(BODY.replace("月に一度", "隔週で")), 2);
        b.update(&id, &edit(BODY.replace("必ず", "その日のうちに")), 3);
        round(&mut a, &mut b, &mut cur);
        round(&mut a, &mut b, &mut cur);
        let merged = a.view(&id).expect("view")["body"]
            .as_str()
            .expect("text")
            .to_owned();
        assert_eq!(merged, b.view(&id).expect("view")["body"]);
        assert!(
            merged.contains("隔週で") && merged.contains("その日のうちに"),
            "{merged}"
        );
    }

    #[test]
    fn a_peer_that_lost_changes_is_repaired_through_needs() {
        let (mut a, mut b) = (town("tateshina", 1), town("omachi", 2));
        let id = a.create(
            Collection::Knowledge,
            &fields(
                Collection::Knowledge,
                json!({"title": "t", "body": BODY, "category": "pr"}),
            ),
            1,
            [1; 10],
        );
        let mut cur = Cursors::default();
        round(&mut a, &mut b, &mut cur);
        let backup = b.clone();
        let patch = validate_patch(
            Collection::Knowledge,
            json!({"title": "v2"}).as_object().expect("obj"),
        )
        .expect("ok");
        a.update(&id, &patch, 2);
        round(&mut a, &mut b, &mut cur);
        // Omachi restores yesterday's backup: Tateshina still believes it has v2.
        b = backup;
        let patch = validate_patch(
            Collection::Knowledge,
            json!({"title": "v3"}).as_object().expect("obj"),
        )
        .expect("ok");
        a.update(&id, &patch, 3);
        round(&mut a, &mut b, &mut cur); // the delta lacks v2: Omachi asks again
        round(&mut a, &mut b, &mut cur);
        assert_eq!(b.view(&id).expect("view")["title"], json!("v3"));
        assert_eq!(a.shared_state(), b.shared_state());
    }

    #[test]
    fn hostile_updates_are_refused_and_change_nothing() {
        let (mut a, mut b) = (town("tateshina", 1), town("omachi", 2));
        let good = a.create(
            Collection::Knowledge,
            &fields(
                Collection::Knowledge,
                json!({"title": "t", "body": BODY, "category": "pr"}),
            ),
            1,
            [1; 10],
        );
        let local = b.create(
            Collection::Workers,
            &fields(
                Collection::Workers,
                json!({"name": "佐藤", "status": "active"}),
            ),
            1,
            [9; 10],
        );
        let batch = prepare_updates(&mut a, "omachi", 0, Limits::default()).expect("prepare");
        let base = batch.docs[0].clone();
        let before = b.shared_state();
        let mut garbage = base.clone();
        garbage.changes = b"\x85\x6f\x4a\x83garbagegarbage".to_vec();
        let mut as_local = base.clone();
        as_local.collection = "workers".into();
        let mut onto_local = base.clone();
        onto_local.id = local.to_string();
        let mut mislabelled = base.clone();
        mislabelled.collection = "failure_cases".into();
        let mut bad_heads = base.clone();
        bad_heads.heads = vec![vec![1, 2, 3]];
        // A document that is a valid Automerge doc but not a valid record.
        let mut bogus_doc = AutoCommit::new();
        automerge::transaction::Transactable::put(&mut bogus_doc, automerge::ROOT, "format", 1u64)
            .expect("put");
        let mut not_a_record = base.clone();
        not_a_record.changes = bogus_doc.save_nocompress();
        not_a_record.heads = to_hashes(&bogus_doc.get_heads())
            .iter()
            .map(|h| h.to_vec())
            .collect();
        // A valid record that breaks the schema (an unknown category).
        let bad_id = RecordId::generate(5, [5; 10]);
        let mut bad = doc::create(
            ActorId::from([7; 16].as_slice()),
            Collection::Knowledge,
            &bad_id,
            "evil",
            5,
            &fields(
                Collection::Knowledge,
                json!({"title": "t", "body": "b", "category": "pr"}),
            ),
        )
        .expect("doc");
        let f = match automerge::ReadDoc::get(&bad, automerge::ROOT, "fields").expect("get") {
            Some((_, f)) => f,
            None => panic!("fields"),
        };
        automerge::transaction::Transactable::put(&mut bad, &f, "category", "gossip").expect("put");
        bad.commit();
        let schema_violation = DocUpdate {
            id: bad_id.to_string(),
            collection: "knowledge".into(),
            heads: to_hashes(&bad.get_heads())
                .iter()
                .map(|h| h.to_vec())
                .collect(),
            changes: bad.save_nocompress(),
            ..Default::default()
        };

        let out = accept_updates(
            &mut b,
            "tateshina",
            vec![
                garbage,
                as_local,
                onto_local,
                mislabelled,
                bad_heads,
                not_a_record,
                schema_violation,
            ],
        )
        .expect("accept");
        let codes: Vec<&str> = out.refused.iter().map(|r| r.code.as_str()).collect();
        assert_eq!(
            codes,
            [
                "invalid_changes",
                "local_collection",
                "id_conflict",
                "document_mismatch",
                "invalid_changes",
                "invalid_document",
                "schema_violation"
            ]
        );
        assert!(out.stored.is_empty());
        assert_eq!(b.shared_state(), before);
        assert_eq!(
            b.view(&local).expect("local record intact")["name"],
            json!("佐藤")
        );
        // The honest update still goes through afterwards.
        let out = accept_updates(&mut b, "tateshina", vec![base]).expect("accept");
        assert_eq!(out.stored, [good]);
    }
}
