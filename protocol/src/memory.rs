//! An in-memory [`Replica`]: one node's records without SQLite, for tests of
//! the sync logic and for the deterministic simulation.

use std::collections::{BTreeMap, HashMap};

use automerge::{ActorId, AutoCommit, ChangeHash};

use crate::collection::Collection;
use crate::doc;
use crate::provenance::ChangeSignature;
use crate::record::{Millis, RecordId, RecordView};
use crate::sync::{FeedItem, Hash, Replica, SharedCollection, Stored, to_hashes};
use crate::validate::{Fields, Patch};

#[derive(Clone)]
struct MemRecord {
    collection: Collection,
    bytes: Vec<u8>,
    heads: Vec<Hash>,
    seq: u64,
    /// The feed position of its latest late signatures (0: none).
    signed_at: u64,
}

/// One node's records, in memory.
#[derive(Clone)]
pub struct MemoryReplica {
    pub town: String,
    actor: ActorId,
    next_seq: u64,
    records: BTreeMap<RecordId, MemRecord>,
    peer_heads: HashMap<(String, RecordId), Vec<Hash>>,
    peer_epochs: HashMap<String, u64>,
    /// Heads delivered but not yet acknowledged: (peer, cursor, record, heads).
    staged: Vec<(String, u64, RecordId, Vec<Hash>)>,
    /// Loaded documents, kept beside their bytes so checks need not reload.
    docs: HashMap<RecordId, AutoCommit>,
    /// The feed epoch; [`MemoryReplica::restored`] changes it.
    pub epoch: u64,
    /// What incoming documents are checked against (no clock by default).
    pub admission: crate::gate::Admission,
    /// Change signatures, by change: (record, signature).
    pub signatures: HashMap<ChangeHash, (RecordId, ChangeSignature)>,
    /// The feed position at which each late signature was stored.
    late: HashMap<ChangeHash, u64>,
}

impl MemoryReplica {
    pub fn new(town: &str, actor: ActorId) -> MemoryReplica {
        MemoryReplica {
            town: town.to_owned(),
            actor,
            next_seq: 1,
            records: BTreeMap::new(),
            peer_heads: HashMap::new(),
            peer_epochs: HashMap::new(),
            staged: Vec::new(),
            docs: HashMap::new(),
            epoch: 1,
            admission: crate::gate::Admission::without_clock(),
            signatures: HashMap::new(),
            late: HashMap::new(),
        }
    }

    /// This replica as restored from a backup: the same records, a new
    /// feed epoch (as `yui restore` does).
    pub fn restored(mut self, epoch: u64) -> MemoryReplica {
        self.epoch = epoch;
        self
    }

    fn put(&mut self, id: &RecordId, collection: Collection, doc: &mut AutoCommit) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let heads = to_hashes(&doc.get_heads());
        self.docs.insert(id.clone(), doc.clone());
        let signed_at = self.records.get(id).map_or(0, |r| r.signed_at);
        self.records.insert(
            id.clone(),
            MemRecord {
                collection,
                bytes: doc.save_nocompress(),
                heads,
                seq,
                signed_at,
            },
        );
    }

    /// What a node does at upgrade (protocol.md 7.6): signs, with `sign`,
    /// every change of its shared records that its own actor made and no
    /// stored signature covers, and stores them as late signatures.
    /// Answers how many it signed.
    pub fn sign_own_history(
        &mut self,
        sign: &dyn Fn(ChangeHash) -> Option<ChangeSignature>,
    ) -> usize {
        let ids: Vec<RecordId> = self
            .records
            .iter()
            .filter(|(_, r)| r.collection.is_shared())
            .map(|(id, _)| id.clone())
            .collect();
        let signed: std::collections::HashSet<ChangeHash> =
            self.signatures.keys().copied().collect();
        let mut count = 0;
        for id in ids {
            let Some(doc) = self.docs.get_mut(&id) else {
                continue;
            };
            let own = crate::provenance::own_unsigned(
                doc,
                std::slice::from_ref(&self.actor),
                &self.town,
                &signed,
            );
            let sigs: Vec<ChangeSignature> = own.into_iter().filter_map(sign).collect();
            count += crate::sync::Replica::store_late_signatures(self, &id, &sigs)
                .unwrap_or_else(|never| match never {});
        }
        count
    }

    /// Signs, with `sign`, the changes of a record after `before` (what a
    /// signing node does with its own writes), and keeps the signatures.
    pub fn sign_new(
        &mut self,
        id: &RecordId,
        before: &[ChangeHash],
        sign: &dyn Fn(ChangeHash) -> Option<ChangeSignature>,
    ) {
        let Some(doc) = self.docs.get_mut(id) else {
            return;
        };
        for change in doc.get_changes(before) {
            if let Some(s) = sign(change.hash()) {
                self.signatures.insert(s.change, (id.clone(), s));
            }
        }
    }

    /// A local write: creates a record of any collection.
    pub fn create(
        &mut self,
        collection: Collection,
        fields: &Fields,
        now: Millis,
        random: [u8; 10],
    ) -> RecordId {
        let id = RecordId::generate(now, random);
        let mut d = doc::create(self.actor.clone(), collection, &id, &self.town, now, fields)
            .expect("a validated record always maps to a document");
        self.put(&id, collection, &mut d);
        id
    }

    /// A local edit. Returns false if there is no such record.
    pub fn update(&mut self, id: &RecordId, patch: &Patch, now: Millis) -> bool {
        let Some(mut d) = self.load(id) else {
            return false;
        };
        let collection = self.records[id].collection;
        d.set_actor(self.actor.clone());
        let town = self.town.clone();
        if doc::update(&mut d, collection, &town, now, patch).is_ok_and(|c| !c.is_empty()) {
            self.put(id, collection, &mut d);
        }
        true
    }

    pub fn load(&self, id: &RecordId) -> Option<AutoCommit> {
        self.docs.get(id).cloned()
    }

    /// Whether this replica's copy of a record contains the change `hash`.
    pub fn has_change(&mut self, id: &RecordId, hash: &Hash) -> bool {
        self.docs.get_mut(id).is_some_and(|d| {
            d.get_change_by_hash(&automerge::ChangeHash(*hash))
                .is_some()
        })
    }

    /// The current heads of a record.
    pub fn heads(&self, id: &RecordId) -> Option<&[Hash]> {
        self.records.get(id).map(|r| r.heads.as_slice())
    }

    pub fn view(&self, id: &RecordId) -> Option<RecordView> {
        doc::read(&self.load(id)?).ok()
    }

    /// Every record id held, local ones included.
    pub fn ids(&self) -> impl Iterator<Item = &RecordId> {
        self.records.keys()
    }

    /// Every record's id and heads, for comparing replicas.
    pub fn shared_state(&self) -> BTreeMap<RecordId, Vec<Hash>> {
        self.records
            .iter()
            .filter(|(_, r)| r.collection.is_shared())
            .map(|(id, r)| {
                let mut heads = r.heads.clone();
                heads.sort_unstable();
                (id.clone(), heads)
            })
            .collect()
    }

    pub fn collection_of(&self, id: &RecordId) -> Option<Collection> {
        self.records.get(id).map(|r| r.collection)
    }
}

impl Replica for MemoryReplica {
    type Error = std::convert::Infallible;

    fn shared_feed(&mut self, after: u64, limit: usize) -> Result<Vec<FeedItem>, Self::Error> {
        let mut items: Vec<FeedItem> = self
            .records
            .iter()
            .filter(|(_, r)| r.seq > after)
            .filter_map(|(id, r)| {
                Some(FeedItem {
                    seq: r.seq,
                    id: id.clone(),
                    collection: SharedCollection::new(r.collection)?,
                    heads: r.heads.clone(),
                    signed_at: r.signed_at,
                })
            })
            .collect();
        items.sort_by_key(|i| i.seq);
        items.truncate(limit);
        Ok(items)
    }

    fn stored(&mut self, id: &RecordId) -> Result<Stored, Self::Error> {
        Ok(match self.records.get(id) {
            None => Stored::Missing,
            Some(r) => match SharedCollection::new(r.collection) {
                None => Stored::Local,
                Some(collection) => Stored::Shared {
                    collection,
                    bytes: r.bytes.clone(),
                    heads: r.heads.clone(),
                },
            },
        })
    }

    fn store_shared(
        &mut self,
        id: &RecordId,
        collection: SharedCollection,
        doc: &mut AutoCommit,
        _view: &RecordView,
        _received: u64,
        signatures: &[ChangeSignature],
    ) -> Result<Result<(), crate::gate::Refused>, Self::Error> {
        // The simulation's replicas keep no quotas.
        self.put(id, collection.get(), doc);
        for s in signatures {
            self.signatures.insert(s.change, (id.clone(), s.clone()));
        }
        Ok(Ok(()))
    }

    fn signatures(
        &mut self,
        id: &RecordId,
        changes: Option<&[ChangeHash]>,
    ) -> Result<Vec<ChangeSignature>, Self::Error> {
        Ok(match changes {
            Some(changes) => changes
                .iter()
                .filter_map(|h| self.signatures.get(h).map(|(_, s)| s.clone()))
                .collect(),
            None => self
                .signatures
                .values()
                .filter(|(record, _)| record == id)
                .map(|(_, s)| s.clone())
                .collect(),
        })
    }

    fn late_signatures(
        &mut self,
        id: &RecordId,
        after: u64,
    ) -> Result<Vec<ChangeSignature>, Self::Error> {
        Ok(self
            .late
            .iter()
            .filter(|(_, seq)| **seq > after)
            .filter_map(|(h, _)| self.signatures.get(h))
            .filter(|(record, _)| record == id)
            .map(|(_, s)| s.clone())
            .collect())
    }

    fn store_late_signatures(
        &mut self,
        id: &RecordId,
        signatures: &[ChangeSignature],
    ) -> Result<usize, Self::Error> {
        let new: Vec<&ChangeSignature> = signatures
            .iter()
            .filter(|s| !self.signatures.contains_key(&s.change))
            .collect();
        let Some(record) = self.records.get_mut(id).filter(|_| !new.is_empty()) else {
            return Ok(0);
        };
        let seq = self.next_seq;
        self.next_seq += 1;
        record.seq = seq;
        record.signed_at = seq;
        for s in &new {
            self.signatures.insert(s.change, (id.clone(), (*s).clone()));
            self.late.insert(s.change, seq);
        }
        Ok(new.len())
    }

    fn peer_heads(&mut self, peer: &str, id: &RecordId) -> Result<Vec<Hash>, Self::Error> {
        Ok(self
            .peer_heads
            .get(&(peer.to_owned(), id.clone()))
            .cloned()
            .unwrap_or_default())
    }

    fn set_peer_heads(
        &mut self,
        peer: &str,
        id: &RecordId,
        heads: &[Hash],
    ) -> Result<(), Self::Error> {
        self.peer_heads
            .insert((peer.to_owned(), id.clone()), heads.to_vec());
        Ok(())
    }

    fn feed_epoch(&mut self) -> Result<u64, Self::Error> {
        Ok(self.epoch)
    }

    fn peer_epoch(&mut self, peer: &str) -> Result<Option<u64>, Self::Error> {
        Ok(self.peer_epochs.get(peer).copied())
    }

    fn set_peer_epoch(&mut self, peer: &str, epoch: u64) -> Result<(), Self::Error> {
        self.peer_epochs.insert(peer.to_owned(), epoch);
        Ok(())
    }

    fn forget_peer(&mut self, peer: &str) -> Result<(), Self::Error> {
        self.peer_heads.retain(|(p, _), _| p != peer);
        self.staged.retain(|(p, ..)| p != peer);
        Ok(())
    }

    fn admission(&mut self) -> Result<crate::gate::Admission, Self::Error> {
        Ok(self.admission.clone())
    }

    fn stage_peer_heads(
        &mut self,
        peer: &str,
        cursor: u64,
        id: &RecordId,
        heads: &[Hash],
    ) -> Result<(), Self::Error> {
        self.staged
            .push((peer.to_owned(), cursor, id.clone(), heads.to_vec()));
        Ok(())
    }

    fn confirm_peer_heads(&mut self, peer: &str, up_to: u64) -> Result<(), Self::Error> {
        let mut confirmed: Vec<(u64, RecordId, Vec<Hash>)> = Vec::new();
        self.staged.retain(|(p, cursor, id, heads)| {
            if p == peer && *cursor <= up_to {
                confirmed.push((*cursor, id.clone(), heads.clone()));
                false
            } else {
                true
            }
        });
        confirmed.sort_by_key(|(cursor, ..)| *cursor);
        for (_, id, heads) in confirmed {
            self.peer_heads.insert((peer.to_owned(), id), heads);
        }
        Ok(())
    }
}
