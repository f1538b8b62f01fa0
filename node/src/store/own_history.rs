//! Signing this node's own changes made before it signed (protocol.md 7.6).
//!
//! A node upgraded from a version without signatures holds shared records
//! whose older changes carry none, and a node that does not hold them
//! refuses such a record whole (`unsigned_change`). So once, after the
//! upgrade, the node signs every change of a shared record that it made
//! itself (one of its actor ids: the current one and those it had before a
//! restore) and that has no stored signature, and stores the signatures as
//! late ones (`provenance::store_late`): each such record takes a new feed
//! position, and the peers are offered the signatures. Another node's
//! changes are never signed; local records never; nor its changes to
//! another town's KPI report or pilot result, which no receiver would take
//! (write authority, protocol.md 7.4).
//!
//! It runs in the background of a serving node, after the first integrity
//! check, in batches of [`BATCH`] records: each batch is loaded and signed
//! on a reader, then stored by one job on the writer, so start-up, reads
//! and other writes go on meanwhile. The records are taken in rowid order and the last one done
//! is kept in `meta`, so a restart resumes where it stopped; when all are
//! done, `meta` says so and later starts cost one read.

use std::collections::HashSet;
use std::panic::AssertUnwindSafe;

use automerge::{ActorId, AutoCommit};
use rusqlite::{Connection, params};
use tokio_util::sync::CancellationToken;
use yui_protocol::provenance::{Authority, ChangeSignature, own_unsigned};
use yui_protocol::{Collection, RecordId};

use super::Store;
use super::provenance::{ChangeSigning, read_signatures, store_late};
use super::schema::{get_meta, set_meta};
use crate::error::Result;

/// Records loaded and signed per batch: a few milliseconds of a reader's
/// time, and one short write.
const BATCH: usize = 64;
/// `meta`: set once every record has been looked at.
const DONE: &str = "own_history_signed";
/// `meta`: the rowid of the last record looked at.
const THROUGH: &str = "own_history_signed_through";
/// `meta`: the actor ids this database had before a restore (hex, comma
/// separated), whose changes are this node's own too.
pub(super) const FORMER_ACTORS: &str = "former_actors";

/// One batch: the signatures per record, the last rowid looked at, and
/// whether the table ended there.
type Batch = (Vec<(RecordId, Vec<ChangeSignature>)>, i64, bool);

impl Store {
    /// Signs this node's own changes that carry no signature, once
    /// (see the module doc). Returns how many it signed now; stops early,
    /// to resume at the next start, when `stop` is cancelled.
    pub async fn sign_own_history(&self, stop: CancellationToken) -> Result<usize> {
        let Some(signing) = self.signing() else {
            return Ok(0);
        };
        // After the first integrity check: it has the disk to itself at
        // start, and a damaged database is left alone (it takes no write).
        if !self.first_integrity_check().await.is_ok() {
            return Ok(0);
        }
        let (done, mut through, former) = self
            .read(|conn| {
                Ok((
                    get_meta(conn, DONE)?.is_some(),
                    get_meta(conn, THROUGH)?
                        .and_then(|t| t.parse::<i64>().ok())
                        .unwrap_or(0),
                    get_meta(conn, FORMER_ACTORS)?.unwrap_or_default(),
                ))
            })
            .await?;
        if done {
            return Ok(0);
        }
        let mut actors = vec![self.inner.actor.clone()];
        actors.extend(parse_actors(&former));
        let started = std::time::Instant::now();
        let (mut signed, mut records) = (0, 0);
        loop {
            if stop.is_cancelled() {
                return Ok(signed);
            }
            let (actors, town, signing) = (actors.clone(), self.town().to_owned(), signing.clone());
            let (batch, last, ended) = self
                .read(move |conn| scan(conn, through, &actors, &town, &signing))
                .await?;
            (signed, records) = self
                .write(move |conn, state| {
                    let (mut signed, mut records) = (signed, records);
                    for (id, sigs) in &batch {
                        let new = store_late(conn, state, id, sigs)?;
                        signed += new;
                        records += usize::from(new > 0);
                    }
                    set_meta(conn, THROUGH, &last.to_string())?;
                    if ended {
                        set_meta(conn, DONE, "1")?;
                    }
                    Ok((signed, records))
                })
                .await?;
            through = last;
            if ended {
                if signed > 0 {
                    tracing::info!(
                        changes = signed,
                        records,
                        took_ms = started.elapsed().as_millis() as u64,
                        "signed this node's own changes made before it signed them (once, protocol.md 7.6)"
                    );
                }
                return Ok(signed);
            }
        }
    }
}

/// Loads the next [`BATCH`] shared records after rowid `after` and signs
/// their unsigned changes by `actors` (reads only).
fn scan(
    conn: &Connection,
    after: i64,
    actors: &[ActorId],
    town: &str,
    signing: &ChangeSigning,
) -> Result<Batch> {
    let mut stmt = conn.prepare_cached(
        "SELECT rowid, id, doc, chunks, collection, town FROM records
         WHERE shared = 1 AND rowid > ?1 ORDER BY rowid LIMIT ?2",
    )?;
    let rows = stmt
        .query_map(params![after, BATCH as i64], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Vec<u8>>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, String>(5)?,
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let ended = rows.len() < BATCH;
    let mut last = after;
    let mut out = Vec::new();
    let mut chunks =
        conn.prepare_cached("SELECT data FROM doc_chunks WHERE record = ?1 ORDER BY n")?;
    for (rowid, id, mut bytes, n, collection, origin) in rows {
        last = rowid;
        let Ok(id) = id.parse::<RecordId>() else {
            continue;
        };
        // A change to another town's KPI report or pilot result, made
        // before anyone checked, breaks the write authority (7.4): every
        // receiver would refuse its signature.
        let authority = collection.parse::<Collection>().map(Authority::of);
        if authority.is_ok_and(|a| a == Authority::Origin) && origin != town {
            continue;
        }
        if n > 0 {
            for chunk in chunks.query_map([rowid], |r| r.get::<_, Vec<u8>>(0))? {
                bytes.extend(chunk?);
            }
        }
        let signed: HashSet<_> = read_signatures(conn, &id, None)?
            .into_iter()
            .map(|s| s.change)
            .collect();
        // Stored documents load (they were checked when stored); should
        // one not, or make Automerge panic, it is skipped, not the pass.
        let own = std::panic::catch_unwind(AssertUnwindSafe(|| {
            AutoCommit::load(&bytes)
                .ok()
                .map(|mut doc| own_unsigned(&mut doc, actors, town, &signed))
        }));
        let Ok(Some(own)) = own else {
            tracing::warn!(id = %id, "could not load a record to sign this node's older changes in it");
            continue;
        };
        let sigs: Vec<ChangeSignature> = own.into_iter().filter_map(|h| signing(h)).collect();
        if !sigs.is_empty() {
            out.push((id, sigs));
        }
    }
    Ok((out, last, ended))
}

/// Actor ids from `meta` (hex, comma separated); unreadable ones skipped.
pub(super) fn parse_actors(text: &str) -> Vec<ActorId> {
    text.split(',')
        .filter_map(|hex| {
            let hex = hex.trim();
            if hex.is_empty() || !hex.len().is_multiple_of(2) {
                return None;
            }
            let bytes: Option<Vec<u8>> = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
                .collect();
            bytes.map(|b| ActorId::from(b.as_slice()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use yui_protocol::provenance::SignerId;
    use yui_protocol::validate::validate_create;

    fn fields(c: Collection, v: serde_json::Value) -> yui_protocol::validate::Fields {
        validate_create(c, v.as_object().expect("object")).expect("valid")
    }

    /// A signing key that counts what it signs and cancels `stop` at its
    /// first signature (the signature bytes do not matter: nothing here
    /// verifies them).
    fn counting(count: Arc<AtomicUsize>, stop: CancellationToken) -> ChangeSigning {
        Arc::new(move |change| {
            count.fetch_add(1, Ordering::Relaxed);
            stop.cancel();
            Some(ChangeSignature {
                change,
                signer: SignerId([7; 32]),
                signature: vec![1; 64],
            })
        })
    }

    async fn signed_changes(store: &Store) -> usize {
        store
            .read(|conn| {
                Ok(
                    conn.query_row("SELECT count(*) FROM change_signatures", [], |r| {
                        r.get::<_, i64>(0)
                    })? as usize,
                )
            })
            .await
            .expect("count")
    }

    #[tokio::test]
    async fn own_older_changes_of_shared_records_are_signed_once_in_batches_that_resume() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("yui.sqlite");
        Store::create_database(&path, "omachi").expect("create");
        // Before the upgrade: a store without a key signs nothing.
        let store = Store::open(&path, "omachi").expect("open");
        let now = crate::clock::now_ms();
        let shared = BATCH + 6;
        let mut ids = Vec::new();
        for i in 0..shared {
            let rec = store
                .create(
                    Collection::Knowledge,
                    fields(
                        Collection::Knowledge,
                        serde_json::json!({"title": format!("記録 {i}"), "body": "本文", "category": "pr"}),
                    ),
                    now,
                )
                .await
                .expect("create");
            let rec: serde_json::Value = serde_json::from_str(rec.get()).expect("json");
            ids.push(rec["id"].as_str().expect("id").to_owned());
        }
        store
            .update(
                Collection::Knowledge,
                ids[0].clone(),
                yui_protocol::validate::validate_patch(
                    Collection::Knowledge,
                    serde_json::json!({"title": "改訂"})
                        .as_object()
                        .expect("object"),
                )
                .expect("valid"),
                now,
            )
            .await
            .expect("update");
        store
            .create(
                Collection::Workers,
                fields(
                    Collection::Workers,
                    serde_json::json!({"name": "山田 花子", "status": "active"}),
                ),
                now,
            )
            .await
            .expect("a local record");
        assert_eq!(signed_changes(&store).await, 0);
        let before = *store.watch_seq().borrow() as u64;

        // The upgrade: the key is set and the pass runs; stopped after its
        // first batch (a shutdown), it resumes at the next start.
        let count = Arc::new(AtomicUsize::new(0));
        let stop = CancellationToken::new();
        store.sign_changes_with(counting(count.clone(), stop.clone()));
        let first = store.sign_own_history(stop).await.expect("sign");
        assert_eq!(first, BATCH + 1, "the first batch, the edit too");
        let rest = store
            .sign_own_history(CancellationToken::new())
            .await
            .expect("sign");
        assert_eq!(rest, shared - BATCH);
        assert_eq!(count.load(Ordering::Relaxed), shared + 1, "nothing twice");
        assert_eq!(
            signed_changes(&store).await,
            shared + 1,
            "never the worker's"
        );
        // Each record took a new feed position, with its late signatures.
        let feed = store.shared_feed(before, 1000).await.expect("feed");
        assert_eq!(feed.len(), shared);
        assert!(feed.iter().all(|f| f.signed_at == f.seq));

        // Once: a later start reads a marker and signs nothing.
        let again = store
            .sign_own_history(CancellationToken::new())
            .await
            .expect("sign");
        assert_eq!((again, count.load(Ordering::Relaxed)), (0, shared + 1));
        store.close();
    }

    #[tokio::test]
    async fn a_restored_node_still_signs_what_it_made_under_its_former_actor() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("yui.sqlite");
        Store::create_database(&path, "omachi").expect("create");
        let store = Store::open(&path, "omachi").expect("open");
        store
            .create(
                Collection::Knowledge,
                fields(
                    Collection::Knowledge,
                    serde_json::json!({"title": "復元前", "body": "本文", "category": "pr"}),
                ),
                crate::clock::now_ms(),
            )
            .await
            .expect("create");
        store.close();
        drop(store);
        let before = super::super::stored_actor(&path).expect("actor");
        let copy = dir.path().join("backups").join("before.sqlite");
        super::super::backup(&path, &copy).expect("backup");
        super::super::restore(&path, &copy, "omachi", crate::clock::now_ms()).expect("restore");
        assert_ne!(super::super::stored_actor(&path).expect("actor"), before);

        let store = Store::open(&path, "omachi").expect("open");
        let count = Arc::new(AtomicUsize::new(0));
        store.sign_changes_with(counting(count.clone(), CancellationToken::new()));
        let signed = store
            .sign_own_history(CancellationToken::new())
            .await
            .expect("sign");
        assert_eq!(
            signed, 1,
            "the change made under the actor before the restore"
        );
        store.close();
    }

    #[test]
    fn former_actor_ids_read_back() {
        let actors = parse_actors("0102,zz,,0a0b0c");
        assert_eq!(actors.len(), 2);
        assert_eq!(actors[0].to_hex_string(), "0102");
    }
}
