//! Record writes: create, update and delete, each a job on the writer, and
//! how a changed document is stored (an appended change chunk, or a fresh
//! save every [`COMPACT_AFTER`] chunks) together with its view and search
//! terms.

use std::panic::AssertUnwindSafe;

use automerge::AutoCommit;
use rand::RngCore;
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::value::RawValue;
use yui_protocol::doc;
use yui_protocol::provenance::Authority;
use yui_protocol::validate::{self, Fields, Patch};
use yui_protocol::{Collection, Millis, RecordId, RecordView, guard};

use super::constraints::{check_one_kpi_report_per_year, check_references};
use super::feed::{pack_heads, raw_changes_after};
use super::provenance::{insert_signatures, sign_new_changes};
use super::search::index_terms;
use super::writer::WriterState;
use super::{COMPACT_AFTER, GuardMode, Store, lock, not_found, raw};
use crate::error::{Error, Result};

impl Store {
    /// Creates a record and returns it as the API shows it. A shared record
    /// with personal data in it is refused.
    pub async fn create(
        &self,
        collection: Collection,
        fields: Fields,
        now: Millis,
    ) -> Result<Box<RawValue>> {
        self.create_guarded(collection, fields, now, GuardMode::Refuse)
            .await
            .map(|(record, _)| record)
    }

    /// [`Store::create`] with a choice of guard mode; also returns the
    /// personal-data findings that were let through.
    pub async fn create_guarded(
        &self,
        collection: Collection,
        fields: Fields,
        now: Millis,
        mode: GuardMode,
    ) -> Result<(Box<RawValue>, Vec<guard::Finding>)> {
        // Before anything is read: a damaged database answers 503 here,
        // not whatever a read of a damaged page says.
        self.refuse_if_damaged().await?;
        let findings = self.check_personal_data(collection, &fields, mode).await?;
        let record = self.create_unguarded(collection, fields, now).await?;
        Ok((record, findings))
    }

    async fn create_unguarded(
        &self,
        collection: Collection,
        fields: Fields,
        now: Millis,
    ) -> Result<Box<RawValue>> {
        let id = self.next_id(now);
        let (actor, town) = (self.inner.actor.clone(), self.inner.town.clone());
        let signing = collection.is_shared().then(|| self.signing()).flatten();
        // The Automerge work runs in parallel on the blocking pool; only the
        // inserts queue for the writer.
        let prepared = tokio::task::spawn_blocking(move || {
            prepare_create(actor, &town, signing.as_ref(), collection, id, &fields, now)
        })
        .await
        .map_err(|e| Error::Storage(format!("create task failed: {e}")))??;
        self.write(move |conn, state| {
            check_references(conn, &prepared.refs)?;
            insert_prepared(conn, state, collection, &prepared)?;
            raw(prepared.json)
        })
        .await
    }

    /// A new record id, after the last this process made, so ids sort in
    /// creation order.
    pub(super) fn next_id(&self, now: Millis) -> RecordId {
        let mut random = [0u8; 10];
        rand::rng().fill_bytes(&mut random);
        let mut last = lock(&self.inner.last_id);
        let id = RecordId::generate_after(now, random, last.as_ref());
        *last = Some(id.clone());
        id
    }

    /// Applies a partial update and returns the record after it. New values
    /// with personal data in a shared record are refused.
    pub async fn update(
        &self,
        collection: Collection,
        id: String,
        patch: Patch,
        now: Millis,
    ) -> Result<Box<RawValue>> {
        self.update_guarded(collection, id, patch, now, GuardMode::Refuse)
            .await
            .map(|(record, _)| record)
    }

    /// [`Store::update`] with a choice of guard mode; also returns the
    /// personal-data findings that were let through.
    pub async fn update_guarded(
        &self,
        collection: Collection,
        id: String,
        patch: Patch,
        now: Millis,
        mode: GuardMode,
    ) -> Result<(Box<RawValue>, Vec<guard::Finding>)> {
        let new_values: Fields = patch
            .iter()
            .filter_map(|(k, v)| Some((*k, v.clone()?)))
            .collect();
        self.refuse_if_damaged().await?;
        let findings = self
            .check_personal_data(collection, &new_values, mode)
            .await?;
        let record = self.update_unguarded(collection, id, patch, now).await?;
        Ok((record, findings))
    }

    async fn update_unguarded(
        &self,
        collection: Collection,
        id: String,
        patch: Patch,
        now: Millis,
    ) -> Result<Box<RawValue>> {
        let signing = collection.is_shared().then(|| self.signing()).flatten();
        self.write(move |conn, state| {
            let updated =
                apply_update(conn, state, collection, &id, &patch, now, signing.as_ref())?;
            check_references(conn, &updated.refs)?;
            Ok(updated.record)
        })
        .await
    }

    /// Marks a record deleted. Deleting a deleted record changes nothing.
    pub async fn delete(&self, collection: Collection, id: String, now: Millis) -> Result<()> {
        let signing = collection.is_shared().then(|| self.signing()).flatten();
        self.write(move |conn, state| {
            let mut loaded = load_doc(conn, collection, &id)?;
            check_authority(collection, &loaded, &state.town)?;
            loaded.doc.set_actor(state.actor.clone());
            if loaded.deleted {
                return Err(not_found(collection, &id));
            }
            let before = loaded.doc.get_heads();
            doc::delete(&mut loaded.doc, &state.town, now)?;
            let view = doc::read(&loaded.doc)?;
            let signatures = sign_new_changes(signing.as_ref(), &mut loaded.doc, &before);
            insert_signatures(conn, &record_id(&id)?, &signatures)?;
            store_change(conn, state, &mut loaded, &before, &view)?;
            Ok(())
        })
        .await
    }
}

/// A new record's document and everything stored with it, made before the
/// insert is queued (the Automerge work is the expensive part).
pub(super) struct PreparedCreate {
    pub(super) id: RecordId,
    bytes: Vec<u8>,
    heads: Vec<u8>,
    pub(super) view: RecordView,
    terms: String,
    /// The ids the record points at, to check in the write.
    pub(super) refs: Vec<(&'static str, Collection, String)>,
    signatures: Vec<yui_protocol::provenance::ChangeSignature>,
    /// The record as the API shows it.
    pub(super) json: String,
}

pub(super) fn prepare_create(
    actor: automerge::ActorId,
    town: &str,
    signing: Option<&super::provenance::ChangeSigning>,
    collection: Collection,
    id: RecordId,
    fields: &Fields,
    now: Millis,
) -> Result<PreparedCreate> {
    let mut d = doc::create(actor, collection, &id, town, now, fields)?;
    let signatures = sign_new_changes(signing, &mut d, &[]);
    let view = doc::read(&d)?;
    let terms = index_terms(&view);
    let bytes = d.save_nocompress();
    let heads = pack_heads(&d.get_heads());
    let refs = validate::references(collection, fields.iter());
    let json = serde_json::to_string(&view).map_err(|e| Error::Storage(e.to_string()))?;
    Ok(PreparedCreate {
        id,
        bytes,
        heads,
        view,
        terms,
        refs,
        signatures,
        json,
    })
}

/// Inserts a prepared record in the writer's transaction, with its search
/// terms and signatures, after the checks a new record passes here (one
/// KPI report per town and year). References are the caller's to check.
pub(super) fn insert_prepared(
    conn: &Connection,
    state: &mut WriterState,
    collection: Collection,
    p: &PreparedCreate,
) -> Result<()> {
    if collection == Collection::KpiReports {
        check_one_kpi_report_per_year(conn, &state.town, &p.view, None)?;
    }
    let seq = state.next_seq;
    conn.execute(
        "INSERT INTO records (id, collection, shared, town, deleted, seq, heads, doc, chunks, view)
         VALUES (?1, ?2, ?3, ?4, 0, ?5, ?6, ?7, 0, ?8)",
        params![
            p.id.as_str(),
            collection.name(),
            collection.is_shared(),
            p.view.town,
            seq,
            p.heads,
            p.bytes,
            p.json
        ],
    )?;
    conn.execute(
        "INSERT INTO search (rowid, terms) VALUES (last_insert_rowid(), ?1)",
        [&p.terms],
    )?;
    insert_signatures(conn, &p.id, &p.signatures)?;
    state.next_seq += 1;
    Ok(())
}

/// An update applied in the writer's transaction.
pub(super) struct Updated {
    pub(super) record: Box<RawValue>,
    /// Whether any field changed (else nothing was written).
    pub(super) changed: bool,
    /// The references the update makes, to check in the same write.
    pub(super) refs: Vec<(&'static str, Collection, String)>,
}

/// Loads a record, applies `patch` and stores the change (nothing when no
/// field changes), checking the write authority, the merged record and
/// one KPI report per year. The references it makes are returned for the
/// caller to check: only those the record did not already hold, so one it
/// holds stays valid even if its target was deleted since, and a client
/// (or the console's form) can send the record back with another field
/// changed.
pub(super) fn apply_update(
    conn: &Connection,
    state: &mut WriterState,
    collection: Collection,
    id: &str,
    patch: &Patch,
    now: Millis,
    signing: Option<&super::provenance::ChangeSigning>,
) -> Result<Updated> {
    let mut loaded = load_doc(conn, collection, id)?;
    check_authority(collection, &loaded, &state.town)?;
    loaded.doc.set_actor(state.actor.clone());
    if loaded.deleted {
        return Err(Error::RecordDeleted {
            collection: collection.name().to_owned(),
            id: id.to_owned(),
        });
    }
    let held: serde_json::Value = serde_json::from_str(&loaded.view_json).unwrap_or_default();
    let refs: Vec<_> = validate::references(
        collection,
        patch.iter().filter_map(|(k, v)| Some((k, v.as_ref()?))),
    )
    .into_iter()
    .filter(|(field, _, target)| {
        let value = &held["fields"][*field];
        value.as_str() != Some(target.as_str())
            && !value
                .as_array()
                .is_some_and(|ids| ids.iter().any(|v| v.as_str() == Some(target)))
    })
    .collect();
    let before = loaded.doc.get_heads();
    let changed = doc::update(&mut loaded.doc, collection, &state.town, now, patch)?;
    if changed.is_empty() {
        return Ok(Updated {
            record: raw(loaded.view_json)?,
            changed: false,
            refs,
        });
    }
    let view = doc::read(&loaded.doc)?;
    validate::check_merged(collection, &view.fields)?;
    if collection == Collection::KpiReports && patch.contains_key("fiscal_year") {
        check_one_kpi_report_per_year(conn, &view.town, &view, Some(id))?;
    }
    let signatures = sign_new_changes(signing, &mut loaded.doc, &before);
    insert_signatures(conn, &record_id(id)?, &signatures)?;
    let record = store_change(conn, state, &mut loaded, &before, &view)?;
    Ok(Updated {
        record,
        changed: true,
        refs,
    })
}

pub(super) struct LoadedDoc {
    pub(super) rowid: i64,
    /// The town that created the record.
    pub(super) town: String,
    pub(super) deleted: bool,
    pub(super) chunks: i64,
    pub(super) doc: AutoCommit,
    pub(super) view_json: String,
}

pub(super) fn load_doc(conn: &Connection, collection: Collection, id: &str) -> Result<LoadedDoc> {
    type Row = (i64, bool, i64, Vec<u8>, String, String);
    let row: Option<Row> = conn
        .query_row(
            "SELECT rowid, deleted, chunks, doc, view, town FROM records WHERE id = ?1 AND collection = ?2",
            params![id, collection.name()],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)),
        )
        .optional()?;
    let (rowid, deleted, chunks, bytes, view_json, town) =
        row.ok_or_else(|| not_found(collection, id))?;
    let mut doc =
        AutoCommit::load(&bytes).map_err(|e| Error::Storage(format!("loading {id}: {e}")))?;
    if chunks > 0 {
        let mut stmt =
            conn.prepare_cached("SELECT data FROM doc_chunks WHERE record = ?1 ORDER BY n")?;
        let rows = stmt.query_map([rowid], |r| r.get::<_, Vec<u8>>(0))?;
        for chunk in rows {
            doc.load_incremental(&chunk?)
                .map_err(|e| Error::Storage(format!("loading {id}: {e}")))?;
        }
    }
    Ok(LoadedDoc {
        rowid,
        town,
        deleted,
        chunks,
        doc,
        view_json,
    })
}

/// Persists a change to a loaded document: an appended chunk, or a fresh
/// compacted save once enough chunks have gathered. Returns the new view.
pub(super) fn store_change(
    conn: &Connection,
    state: &mut WriterState,
    loaded: &mut LoadedDoc,
    before: &[automerge::ChangeHash],
    view: &RecordView,
) -> Result<Box<RawValue>> {
    let json = serde_json::to_string(view).map_err(|e| Error::Storage(e.to_string()))?;
    let seq = state.next_seq;
    let heads = pack_heads(&loaded.doc.get_heads());
    // Compact only into bytes that load again (a peer's crafted history may
    // save to bytes Automerge cannot read); otherwise keep appending chunks.
    let compacted = (loaded.chunks + 1 >= COMPACT_AFTER)
        .then(|| {
            std::panic::catch_unwind(AssertUnwindSafe(|| {
                let bytes = loaded.doc.save_nocompress();
                AutoCommit::load(&bytes).is_ok().then_some(bytes)
            }))
            .ok()
            .flatten()
        })
        .flatten();
    if loaded.chunks + 1 >= COMPACT_AFTER && compacted.is_none() {
        tracing::warn!(
            rowid = loaded.rowid,
            "a record's compacted save would not load again; kept as chunks"
        );
    }
    if let Some(bytes) = compacted {
        conn.execute("DELETE FROM doc_chunks WHERE record = ?1", [loaded.rowid])?;
        conn.execute(
            "UPDATE records SET doc = ?1, chunks = 0, seq = ?2, view = ?3, deleted = ?4, heads = ?5
             WHERE rowid = ?6",
            params![bytes, seq, json, view.deleted, heads, loaded.rowid],
        )?;
    } else {
        let chunk = raw_changes_after(&mut loaded.doc, before);
        conn.execute(
            "INSERT INTO doc_chunks (record, n, data) VALUES (?1, ?2, ?3)",
            params![loaded.rowid, loaded.chunks, chunk],
        )?;
        conn.execute(
            "UPDATE records SET chunks = chunks + 1, seq = ?1, view = ?2, deleted = ?3, heads = ?4
             WHERE rowid = ?5",
            params![seq, json, view.deleted, heads, loaded.rowid],
        )?;
    }
    let shared = view.collection().is_some_and(Collection::is_shared);
    super::attachments::index_refs(conn, loaded.rowid, shared, view)?;
    conn.execute("DELETE FROM search WHERE rowid = ?1", [loaded.rowid])?;
    if !view.deleted {
        conn.execute(
            "INSERT INTO search (rowid, terms) VALUES (?1, ?2)",
            params![loaded.rowid, index_terms(view)],
        )?;
    }
    state.next_seq += 1;
    raw(json)
}

/// A stored record's id (it was checked when it was made).
pub(super) fn record_id(id: &str) -> Result<RecordId> {
    id.parse()
        .map_err(|_| Error::Storage(format!("{id:?} is not a record id")))
}

/// The collection's write authority (protocol.md 7.4), as every receiver
/// will check it: a KPI report or a pilot result is changed only by the
/// town that created it.
pub(super) fn check_authority(
    collection: Collection,
    loaded: &LoadedDoc,
    town: &str,
) -> Result<()> {
    if Authority::of(collection) == Authority::Origin && loaded.town != town {
        return Err(Error::NotTheOwner {
            message: format!(
                "this {} record belongs to {}: only that town may change it (other members would refuse the change)",
                collection.name(),
                loaded.town
            ),
        });
    }
    Ok(())
}
