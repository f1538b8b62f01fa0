//! `SqlReplica`: the store as `protocol::sync::Replica` sees it, over one
//! connection. [`SqlReplica::reading`] and [`SqlReplica::writing`] are its
//! only constructors: only a replica built inside a write job holds the
//! writer's state, and so only it can store.

use std::collections::HashMap;
use std::sync::Arc;

use automerge::{AutoCommit, ChangeHash};
use rusqlite::{Connection, OptionalExtension, params};
use yui_protocol::gate::{Admission, Refused};
use yui_protocol::guard::Registry;
use yui_protocol::provenance::{ChangeSignature, SignerBook};
use yui_protocol::quota::{Charge, Quotas};
use yui_protocol::sync::{FeedItem, Hash, SharedCollection, Stored};
use yui_protocol::{Collection, RecordId, RecordView};

use super::feed::{pack_hashes, pack_heads, read_shared_feed, unpack_heads};
use super::provenance::{insert_signatures, read_late_signatures, read_signatures, store_late};
use super::quota;
use super::schema::get_meta;
use super::search::index_terms;
use super::writer::WriterState;
use crate::error::{Error, Result};

/// The store seen by the sync logic: `protocol::sync::Replica` over one
/// connection. Writes need the writer's state (the feed sequence), so only a
/// replica built inside a write job can store.
pub struct SqlReplica<'c> {
    conn: &'c Connection,
    state: Option<&'c mut WriterState>,
    /// What planning already rendered for documents about to be stored.
    rendered: HashMap<RecordId, Rendered>,
    /// The guard's registry incoming documents are checked against, with
    /// the node's clock read when they are planned (`admitting`).
    registry: Arc<Registry>,
    /// The quotas a document from a peer is charged to (`charging`), and
    /// the JST day of the write.
    quotas: Arc<Quotas>,
    /// What this write has charged, written back by `save_charges`.
    charged: quota::Ledger,
    day: String,
    /// Records updated (by their claim) at or after this time are fresh
    /// writes, which the daily quotas count (`protocol::quota::FRESH`).
    fresh_since: String,
    /// The member keys their changes' signatures are checked with.
    signers: Arc<SignerBook>,
}

/// A merged document's stored forms, computed while planning (outside the
/// writer), keyed by the heads they were computed for.
pub(super) struct Rendered {
    pub(super) heads: Vec<u8>,
    pub(super) bytes: Vec<u8>,
    pub(super) json: String,
    pub(super) terms: String,
}

impl<'c> SqlReplica<'c> {
    /// A replica that reads only (a read connection, or a write job that
    /// does not store).
    pub(super) fn reading(conn: &'c Connection) -> SqlReplica<'c> {
        SqlReplica {
            conn,
            state: None,
            rendered: HashMap::new(),
            registry: Arc::new(Registry::new()),
            quotas: Arc::default(),
            charged: quota::Ledger::default(),
            day: String::new(),
            fresh_since: String::new(),
            signers: Arc::default(),
        }
    }

    /// A replica inside a write job, which may store, using what planning
    /// already `rendered`.
    pub(super) fn writing(
        conn: &'c Connection,
        state: &'c mut WriterState,
        rendered: HashMap<RecordId, Rendered>,
    ) -> SqlReplica<'c> {
        SqlReplica {
            conn,
            state: Some(state),
            rendered,
            registry: Arc::new(Registry::new()),
            quotas: Arc::default(),
            charged: quota::Ledger::default(),
            day: crate::clock::day_jst(crate::clock::now_ms()),
            // Times as the API writes them sort as text.
            fresh_since: yui_protocol::record::format_time(
                crate::clock::now_ms() - yui_protocol::quota::FRESH,
            ),
            signers: Arc::default(),
        }
    }

    /// Checks incoming documents' personal data against `registry` (the
    /// names of this town's people; without it, only the detectors run) and
    /// their changes' signatures against `signers` (without it, every
    /// change is refused).
    pub(super) fn admitting(
        mut self,
        registry: Arc<Registry>,
        signers: Arc<SignerBook>,
    ) -> SqlReplica<'c> {
        self.registry = registry;
        self.signers = signers;
        self
    }

    /// Charges what it stores from a peer to `quotas` (the defaults
    /// otherwise). The write job calls [`SqlReplica::save_charges`] once
    /// it has stored everything.
    pub(super) fn charging(mut self, quotas: Arc<Quotas>) -> SqlReplica<'c> {
        self.quotas = quotas;
        self
    }

    /// Writes back the quota usage this write charged (in its transaction).
    pub(super) fn save_charges(&mut self) -> Result<()> {
        self.charged.save(self.conn, &self.day)
    }
}

impl yui_protocol::sync::Replica for SqlReplica<'_> {
    type Error = Error;

    fn shared_feed(&mut self, after: u64, limit: usize) -> Result<Vec<FeedItem>> {
        read_shared_feed(self.conn, after, limit)
    }

    fn admission(&mut self) -> Result<Admission> {
        Ok(
            Admission::new(crate::clock::now_ms(), self.registry.clone())
                .with_signers(self.signers.clone()),
        )
    }

    fn stored(&mut self, id: &RecordId) -> Result<Stored> {
        // rowid, collection, shared, doc, chunks, heads
        type Row = (i64, String, bool, Vec<u8>, i64, Vec<u8>);
        let row: Option<Row> = self
            .conn
            .query_row(
                "SELECT rowid, collection, shared, doc, chunks, heads FROM records WHERE id = ?1",
                [id.as_str()],
                |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                    ))
                },
            )
            .optional()?;
        let Some((rowid, collection, shared, mut bytes, chunks, heads)) = row else {
            return Ok(Stored::Missing);
        };
        let Some(collection) = collection
            .parse::<Collection>()
            .ok()
            .and_then(SharedCollection::new)
            .filter(|_| shared)
        else {
            // A local record's bytes never leave this function.
            return Ok(Stored::Local);
        };
        if chunks > 0 {
            let mut stmt = self
                .conn
                .prepare_cached("SELECT data FROM doc_chunks WHERE record = ?1 ORDER BY n")?;
            for chunk in stmt.query_map([rowid], |r| r.get::<_, Vec<u8>>(0))? {
                bytes.extend(chunk?);
            }
        }
        Ok(Stored::Shared {
            collection,
            bytes,
            heads: unpack_heads(&heads),
        })
    }

    fn store_shared(
        &mut self,
        id: &RecordId,
        collection: SharedCollection,
        doc: &mut AutoCommit,
        view: &RecordView,
        received: u64,
        signatures: &[ChangeSignature],
    ) -> Result<std::result::Result<(), Refused>> {
        let state = self
            .state
            .as_deref_mut()
            .ok_or_else(|| Error::Storage("store_shared outside a write".into()))?;
        let heads = pack_heads(&doc.get_heads());
        let (json, bytes, terms) = match self.rendered.remove(id) {
            Some(r) if r.heads == heads => (r.json, r.bytes, r.terms),
            _ => (
                serde_json::to_string(view).map_err(|e| Error::Storage(e.to_string()))?,
                doc.save_nocompress(),
                index_terms(view),
            ),
        };
        let seq = state.next_seq;
        // Cached statements: this runs for every record a peer sends.
        // The stored size and origin town of a record already here.
        let existing: Option<(i64, i64, String)> = self
            .conn
            .prepare_cached(
                "SELECT rowid, length(doc) + coalesce(
                     (SELECT sum(length(data)) FROM doc_chunks WHERE record = records.rowid), 0), town
                 FROM records WHERE id = ?1",
            )?
            .query_row([id.as_str()], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .optional()?;
        // Charged to the town the record was first stored under: a later
        // change to its `town` moves no charge.
        let (origin, stored_before) = match &existing {
            Some((_, size, town)) => (town.as_str(), *size),
            None => (view.town.as_str(), 0),
        };
        let charge = Charge {
            new_record: existing.is_none(),
            fresh: view.updated_at >= self.fresh_since,
            received,
            stored_delta: bytes.len() as i64 - stored_before,
        };
        if let Err(refused) = self.charged.charge(
            self.conn,
            &self.quotas,
            origin,
            collection.get(),
            &self.day,
            charge,
        )? {
            return Ok(Err(refused));
        }
        insert_signatures(self.conn, id, signatures)?;
        let rowid = match existing.map(|(rowid, ..)| rowid) {
            Some(rowid) => {
                self.conn
                    .execute("DELETE FROM doc_chunks WHERE record = ?1", [rowid])?;
                self.conn.execute(
                    "UPDATE records SET doc = ?1, chunks = 0, seq = ?2, view = ?3, deleted = ?4, heads = ?5
                     WHERE rowid = ?6 AND shared = 1",
                    params![bytes, seq, json, view.deleted, heads, rowid],
                )?;
                self.conn
                    .execute("DELETE FROM search WHERE rowid = ?1", [rowid])?;
                rowid
            }
            None => {
                self.conn.prepare_cached(
                    "INSERT INTO records (id, collection, shared, town, deleted, seq, heads, doc, chunks, view)
                     VALUES (?1, ?2, 1, ?3, ?4, ?5, ?6, ?7, 0, ?8)",
                )?.execute(
                    params![
                        id.as_str(),
                        collection.get().name(),
                        view.town,
                        view.deleted,
                        seq,
                        heads,
                        bytes,
                        json
                    ],
                )?;
                self.conn.last_insert_rowid()
            }
        };
        super::attachments::index_refs(self.conn, rowid, true, view)?;
        if !view.deleted {
            self.conn
                .prepare_cached("INSERT INTO search (rowid, terms) VALUES (?1, ?2)")?
                .execute(params![rowid, terms])?;
        }
        state.next_seq += 1;
        Ok(Ok(()))
    }

    fn signatures(
        &mut self,
        id: &RecordId,
        changes: Option<&[ChangeHash]>,
    ) -> Result<Vec<ChangeSignature>> {
        read_signatures(self.conn, id, changes)
    }

    fn late_signatures(&mut self, id: &RecordId, after: u64) -> Result<Vec<ChangeSignature>> {
        read_late_signatures(self.conn, id, after)
    }

    fn store_late_signatures(
        &mut self,
        id: &RecordId,
        signatures: &[ChangeSignature],
    ) -> Result<usize> {
        let state = self
            .state
            .as_deref_mut()
            .ok_or_else(|| Error::Storage("store_late_signatures outside a write".into()))?;
        store_late(self.conn, state, id, signatures)
    }

    fn feed_epoch(&mut self) -> Result<u64> {
        let e: Option<String> = get_meta(self.conn, "feed_epoch")?;
        e.and_then(|e| e.parse().ok())
            .ok_or_else(|| Error::Storage("no feed epoch".into()))
    }

    fn peer_epoch(&mut self, peer: &str) -> Result<Option<u64>> {
        Ok(self
            .conn
            .query_row(
                "SELECT epoch FROM peer_epochs WHERE peer = ?1",
                [peer],
                |r| r.get::<_, i64>(0),
            )
            .optional()?
            .map(|e| e as u64))
    }

    fn set_peer_epoch(&mut self, peer: &str, epoch: u64) -> Result<()> {
        self.conn.execute(
            "INSERT INTO peer_epochs (peer, epoch) VALUES (?1, ?2)
             ON CONFLICT (peer) DO UPDATE SET epoch = excluded.epoch",
            params![peer, epoch as i64],
        )?;
        Ok(())
    }

    fn forget_peer(&mut self, peer: &str) -> Result<()> {
        self.conn
            .execute("DELETE FROM peer_heads WHERE peer = ?1", [peer])?;
        self.conn
            .execute("DELETE FROM peer_staged WHERE peer = ?1", [peer])?;
        Ok(())
    }

    fn stage_peer_heads(
        &mut self,
        peer: &str,
        cursor: u64,
        id: &RecordId,
        heads: &[Hash],
    ) -> Result<()> {
        let mut heads = heads.to_vec();
        self.conn
            .prepare_cached(
                "INSERT INTO peer_staged (peer, cursor, record_id, heads) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![
                peer,
                cursor as i64,
                id.as_str(),
                pack_hashes(&mut heads)
            ])?;
        Ok(())
    }

    fn confirm_peer_heads(&mut self, peer: &str, up_to: u64) -> Result<()> {
        // Oldest first, so the latest answer's heads win.
        self.conn.execute(
            "INSERT INTO peer_heads (peer, record_id, heads)
             SELECT peer, record_id, heads FROM peer_staged WHERE peer = ?1 AND cursor <= ?2
             ORDER BY cursor, rowid
             ON CONFLICT (peer, record_id) DO UPDATE SET heads = excluded.heads",
            params![peer, up_to as i64],
        )?;
        self.conn.execute(
            "DELETE FROM peer_staged WHERE peer = ?1 AND cursor <= ?2",
            params![peer, up_to as i64],
        )?;
        Ok(())
    }

    fn peer_heads(&mut self, peer: &str, id: &RecordId) -> Result<Vec<Hash>> {
        let blob: Option<Vec<u8>> = self
            .conn
            .query_row(
                "SELECT heads FROM peer_heads WHERE peer = ?1 AND record_id = ?2",
                params![peer, id.as_str()],
                |r| r.get(0),
            )
            .optional()?;
        Ok(blob.map(|b| unpack_heads(&b)).unwrap_or_default())
    }

    fn set_peer_heads(&mut self, peer: &str, id: &RecordId, heads: &[Hash]) -> Result<()> {
        let mut heads = heads.to_vec();
        self.conn.execute(
            "INSERT INTO peer_heads (peer, record_id, heads) VALUES (?1, ?2, ?3)
             ON CONFLICT (peer, record_id) DO UPDATE SET heads = excluded.heads",
            params![peer, id.as_str(), pack_hashes(&mut heads)],
        )?;
        Ok(())
    }
}
