//! Attachments in the store: naming and removing a file in a record's
//! document (a signed change, like any edit), and `attachment_refs`, the
//! index of which live records name which file, kept in the same
//! transaction as the record's view. The bytes are not here: they are
//! files in the data directory (`crate::blobs`); this index answers
//! whether a file may be served to a peer (a live record of a shared
//! collection names it), which files a node still lacks, and which files
//! no record names any more (to delete).

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::value::RawValue;
use yui_protocol::attachment::Attachment;
use yui_protocol::{Collection, Millis, RecordView, doc};

use super::Store;
use super::provenance::{insert_signatures, sign_new_changes};
use super::records::{check_authority, load_doc, record_id, store_change};
use crate::error::{Error, Result};

pub(super) const TABLES: &str = "
CREATE TABLE IF NOT EXISTS attachment_refs (
    sha256 TEXT NOT NULL,
    record INTEGER NOT NULL,
    shared INTEGER NOT NULL,
    town TEXT NOT NULL,
    size INTEGER NOT NULL,
    PRIMARY KEY (sha256, record)
) STRICT, WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS attachment_refs_by_record ON attachment_refs (record);
";

/// Replaces the index rows of one record (by rowid) with the files its
/// view names; a deleted record names none.
pub(super) fn index_refs(
    conn: &Connection,
    rowid: i64,
    shared: bool,
    view: &RecordView,
) -> Result<()> {
    conn.prepare_cached("DELETE FROM attachment_refs WHERE record = ?1")?
        .execute([rowid])?;
    if view.deleted {
        return Ok(());
    }
    let mut insert = conn.prepare_cached(
        "INSERT OR IGNORE INTO attachment_refs (sha256, record, shared, town, size)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    for a in &view.attachments {
        insert.execute(params![a.sha256, rowid, shared, view.town, a.size as i64])?;
    }
    Ok(())
}

/// A file a live shared record names, with the record (for the ledger).
#[derive(Debug, Clone)]
pub struct SharedRef {
    pub record_id: String,
    pub collection: String,
    pub size: u64,
}

/// A file live records name, as the fetcher and GC see it.
#[derive(Debug, Clone)]
pub struct WantedFile {
    pub sha256: String,
    /// The town of the record that names it (the quota is per origin town).
    pub town: String,
    pub size: u64,
}

impl Store {
    /// Names `a` in a record (a signed change for a shared record); answers
    /// the record after it. The write authority of the collection applies.
    pub async fn add_attachment(
        &self,
        collection: Collection,
        id: String,
        a: Attachment,
        now: Millis,
    ) -> Result<Box<RawValue>> {
        let signing = collection.is_shared().then(|| self.signing()).flatten();
        self.write(move |conn, state| {
            let mut loaded = load_doc(conn, collection, &id)?;
            check_authority(collection, &loaded, &state.town)?;
            if loaded.deleted {
                return Err(Error::RecordDeleted {
                    collection: collection.name().to_owned(),
                    id,
                });
            }
            if doc::attachments(&loaded.doc).len() >= yui_protocol::attachment::MAX_PER_RECORD {
                return Err(Error::bad_request(
                    "too_many_attachments",
                    format!(
                        "a record holds at most {} files",
                        yui_protocol::attachment::MAX_PER_RECORD
                    ),
                ));
            }
            loaded.doc.set_actor(state.actor.clone());
            let before = loaded.doc.get_heads();
            if !doc::add_attachment(&mut loaded.doc, &state.town, now, &a)? {
                return super::raw(loaded.view_json);
            }
            let view = doc::read(&loaded.doc)?;
            let signatures = sign_new_changes(signing.as_ref(), &mut loaded.doc, &before);
            insert_signatures(conn, &record_id(&id)?, &signatures)?;
            store_change(conn, state, &mut loaded, &before, &view)
        })
        .await
    }

    /// Removes a file from a record; `Ok(false)` when the record does not
    /// name it.
    pub async fn remove_attachment(
        &self,
        collection: Collection,
        id: String,
        sha256: String,
        now: Millis,
    ) -> Result<bool> {
        let signing = collection.is_shared().then(|| self.signing()).flatten();
        self.write(move |conn, state| {
            let mut loaded = load_doc(conn, collection, &id)?;
            if loaded.deleted {
                return Err(super::not_found(collection, &id));
            }
            check_authority(collection, &loaded, &state.town)?;
            loaded.doc.set_actor(state.actor.clone());
            let before = loaded.doc.get_heads();
            if !doc::remove_attachment(&mut loaded.doc, &state.town, now, &sha256)? {
                return Ok(false);
            }
            let view = doc::read(&loaded.doc)?;
            let signatures = sign_new_changes(signing.as_ref(), &mut loaded.doc, &before);
            insert_signatures(conn, &record_id(&id)?, &signatures)?;
            store_change(conn, state, &mut loaded, &before, &view)?;
            Ok(true)
        })
        .await
    }

    /// A live record of a shared collection that names the file, if any:
    /// only such a file is ever served to a peer.
    pub async fn shared_ref(&self, sha256: String) -> Result<Option<SharedRef>> {
        self.read(move |conn| {
            Ok(conn
                .query_row(
                    "SELECT r.id, r.collection, a.size FROM attachment_refs a
                     JOIN records r ON r.rowid = a.record
                     WHERE a.sha256 = ?1 AND a.shared = 1 AND r.shared = 1 AND r.deleted = 0
                     LIMIT 1",
                    [&sha256],
                    |r| {
                        Ok(SharedRef {
                            record_id: r.get(0)?,
                            collection: r.get(1)?,
                            size: r.get::<_, i64>(2)? as u64,
                        })
                    },
                )
                .optional()?)
        })
        .await
    }

    /// Whether any live record names the file.
    pub async fn is_attachment_named(&self, sha256: String) -> Result<bool> {
        self.read(move |conn| {
            Ok(conn
                .query_row(
                    "SELECT 1 FROM attachment_refs WHERE sha256 = ?1 LIMIT 1",
                    [&sha256],
                    |_| Ok(()),
                )
                .optional()?
                .is_some())
        })
        .await
    }

    /// Every file live records name, once each: those of shared records
    /// (which a node fetches from its peers) when `shared_only`.
    pub async fn named_attachments(&self, shared_only: bool) -> Result<Vec<WantedFile>> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT sha256, min(town), max(size) FROM attachment_refs
                 WHERE shared >= ?1 GROUP BY sha256 ORDER BY min(record)",
            )?;
            let rows = stmt.query_map([shared_only], |r| {
                Ok(WantedFile {
                    sha256: r.get(0)?,
                    town: r.get(1)?,
                    size: r.get::<_, i64>(2)? as u64,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    /// A record's files, as its view names them (the record must be live).
    pub async fn attachments_of(
        &self,
        collection: Collection,
        id: String,
    ) -> Result<(String, Vec<Attachment>)> {
        let record = self.get(collection, id, false).await?;
        let view: RecordView = serde_json::from_str(record.get())
            .map_err(|e| Error::Storage(format!("stored record view: {e}")))?;
        Ok((view.town, view.attachments))
    }

    /// Client and server side: one ledger row for a file sent to a peer.
    pub async fn record_file_egress(
        &self,
        peer: String,
        peer_town: String,
        shared: SharedRef,
        sha256: String,
        bytes: u64,
    ) -> Result<()> {
        self.write(move |conn, _| {
            super::egress::record_file(conn, &peer, &peer_town, &shared, &sha256, bytes)
        })
        .await
    }
}
