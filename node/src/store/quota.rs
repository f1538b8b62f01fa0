//! Quota accounting: what each origin town has used, per shared collection,
//! of the quotas on what peers bring in (`protocol::quota`). One row per
//! (town, collection) in `quota_usage`: the day's counters (the JST day of
//! `day`; a row of an earlier day counts as zero today) and the bytes
//! stored in all. The row is read and written in the write that stores the
//! documents it charges (once per write, [`Ledger`]), so the count and the
//! documents commit together and a restart does not reset a day.

use std::sync::Arc;

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use yui_protocol::Collection;
use yui_protocol::gate::Refused;
use yui_protocol::quota::{self, Charge, Quotas, Usage};

use super::{Store, lock};
use crate::error::Result;

/// One origin town's usage of one collection's quota, as of today.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QuotaUsage {
    pub town: String,
    pub collection: String,
    #[serde(flatten)]
    pub usage: Usage,
    /// Documents refused today for this quota.
    pub refused_today: u64,
}

/// The quota usage one write job charges: each (town, collection) row is
/// read once, charged in memory for every document the job stores, and
/// written back once at the end ([`Ledger::save`]), in the same
/// transaction as the documents — one read and one write per origin town
/// and collection in a message instead of per document.
#[derive(Default)]
pub(super) struct Ledger {
    rows: std::collections::HashMap<(String, Collection), Row>,
}

struct Row {
    usage: Usage,
    refused: u64,
    changed: bool,
}

impl Ledger {
    /// Charges `charge` to `town`'s quota in `collection` on `day` (JST,
    /// `YYYY-MM-DD`), or counts a refusal and returns it when the charge
    /// would exceed the quota.
    pub(super) fn charge(
        &mut self,
        conn: &Connection,
        quotas: &Quotas,
        town: &str,
        collection: Collection,
        day: &str,
        charge: Charge,
    ) -> Result<std::result::Result<(), Refused>> {
        let key = (town.to_owned(), collection);
        let row = match self.rows.entry(key) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                let (usage, refused) = today(load(conn, town, collection)?, day);
                e.insert(Row {
                    usage,
                    refused,
                    changed: false,
                })
            }
        };
        row.changed = true;
        match quota::check(town, collection, &quotas.of(collection), &row.usage, charge) {
            Ok(()) => {
                row.usage = row.usage.after(charge);
                Ok(Ok(()))
            }
            Err(r) => {
                row.refused += 1;
                Ok(Err(r))
            }
        }
    }

    /// Writes back every row this job charged.
    pub(super) fn save(&mut self, conn: &Connection, day: &str) -> Result<()> {
        let mut upsert = conn.prepare_cached(
            "INSERT INTO quota_usage (town, collection, day, records_today, bytes_today, refused_today, stored_bytes)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (town, collection) DO UPDATE SET day = excluded.day,
                 records_today = excluded.records_today, bytes_today = excluded.bytes_today,
                 refused_today = excluded.refused_today, stored_bytes = excluded.stored_bytes",
        )?;
        for ((town, collection), row) in self.rows.iter_mut().filter(|(_, r)| r.changed) {
            upsert.execute(params![
                town,
                collection.name(),
                day,
                row.usage.records_today as i64,
                row.usage.bytes_today as i64,
                row.refused as i64,
                row.usage.stored_bytes as i64
            ])?;
            row.changed = false;
        }
        Ok(())
    }
}

/// A `quota_usage` row: day, records, bytes and refusals that day, and
/// bytes stored.
type StoredRow = (String, i64, i64, i64, i64);

fn load(conn: &Connection, town: &str, collection: Collection) -> Result<Option<StoredRow>> {
    Ok(conn
        .prepare_cached(
            "SELECT day, records_today, bytes_today, refused_today, stored_bytes
             FROM quota_usage WHERE town = ?1 AND collection = ?2",
        )?
        .query_row(params![town, collection.name()], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .optional()?)
}

/// A stored row's usage on `day`: its day's counters are today's only if
/// it is of that day.
fn today(row: Option<StoredRow>, day: &str) -> (Usage, u64) {
    let Some((row_day, records, bytes, refused, stored)) = row else {
        return (Usage::default(), 0);
    };
    let stored = stored.max(0) as u64;
    if row_day == day {
        (
            Usage {
                records_today: records.max(0) as u64,
                bytes_today: bytes.max(0) as u64,
                stored_bytes: stored,
            },
            refused.max(0) as u64,
        )
    } else {
        (
            Usage {
                stored_bytes: stored,
                ..Usage::default()
            },
            0,
        )
    }
}

/// Fills a `quota_usage` table just added to an older database with the
/// bytes already stored per origin town (every town's but this node's own:
/// its own records were written here, not brought in).
pub(super) fn seed(conn: &Connection, own_town: &str) -> Result<()> {
    conn.execute(
        "INSERT INTO quota_usage (town, collection, day, stored_bytes)
         SELECT town, collection, '', sum(length(doc) + coalesce(
                    (SELECT sum(length(data)) FROM doc_chunks WHERE record = records.rowid), 0))
         FROM records WHERE shared = 1 AND town != ?1 GROUP BY town, collection",
        [own_town],
    )?;
    Ok(())
}

impl QuotaUsage {
    /// The largest share of a limit used, in percent (`protocol::quota`).
    pub fn percent(&self, quotas: &Quotas) -> u64 {
        match self.collection.parse::<Collection>() {
            Ok(c) => self.usage.percent_of(&quotas.of(c)),
            Err(_) => 0,
        }
    }

    /// Orders `rows` busiest first: by share of a limit used, then by
    /// refusals today, then by town.
    pub fn busiest_first(rows: &mut [QuotaUsage], quotas: &Quotas) {
        rows.sort_by(|a, b| {
            (b.percent(quotas), b.refused_today)
                .cmp(&(a.percent(quotas), a.refused_today))
                .then_with(|| (&a.town, &a.collection).cmp(&(&b.town, &b.collection)))
        });
    }
}

impl Store {
    /// The quotas this node enforces on what its peers bring in.
    pub fn quotas(&self) -> Arc<Quotas> {
        lock(&self.inner.quotas).clone()
    }

    /// Sets the quotas (from `config.toml`, at start).
    pub fn set_quotas(&self, quotas: Quotas) {
        *lock(&self.inner.quotas) = Arc::new(quotas);
    }

    /// Every origin town's usage as of `day` (JST, `YYYY-MM-DD`).
    pub async fn quota_usage(&self, day: String) -> Result<Vec<QuotaUsage>> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT town, collection, day, records_today, bytes_today, refused_today, stored_bytes
                 FROM quota_usage ORDER BY town, collection",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    (r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?),
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (town, collection, counters) = row?;
                let (usage, refused_today) = today(Some(counters), &day);
                out.push(QuotaUsage {
                    town,
                    collection,
                    usage,
                    refused_today,
                });
            }
            Ok(out)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use yui_protocol::quota::Quota;
    use yui_protocol::wire::{DocUpdate, PROTOCOL_VERSION, SyncRequest};

    /// A new knowledge record of `town`, as a peer sends it.
    fn update(town: &str, n: u8) -> DocUpdate {
        update_at(town, n, crate::clock::now_ms())
    }

    /// [`update`], written at `at` (ms).
    fn update_at(town: &str, n: u8, at: i64) -> DocUpdate {
        let id = yui_protocol::RecordId::generate(at, [n; 10]);
        let fields = yui_protocol::validate::validate_create(
            Collection::Knowledge,
            serde_json::json!({"title": format!("記録 {n}"), "body": "本文", "category": "pr"})
                .as_object()
                .expect("object"),
        )
        .expect("valid");
        let mut doc = yui_protocol::doc::create(
            automerge::ActorId::from([n; 16].as_slice()),
            Collection::Knowledge,
            &id,
            town,
            at,
            &fields,
        )
        .expect("doc");
        let signatures: Vec<_> = doc
            .get_changes(&[])
            .iter()
            .map(|c| member(town).sign(c.hash()))
            .collect();
        DocUpdate {
            id: id.to_string(),
            collection: "knowledge".into(),
            heads: doc.get_heads().iter().map(|h| h.0.to_vec()).collect(),
            changes: doc.save_nocompress(),
            extensions: vec![yui_protocol::wire::Extension {
                tag: yui_protocol::provenance::SIGNATURES_EXTENSION,
                data: yui_protocol::provenance::encode_signatures(&signatures),
            }],
            ..Default::default()
        }
    }

    /// A member town's key, as a peer's node signs with it (protocol.md 7).
    struct Member {
        key: ring::signature::EcdsaKeyPair,
        signer: yui_protocol::provenance::Signer,
    }

    impl Member {
        fn sign(&self, change: automerge::ChangeHash) -> yui_protocol::provenance::ChangeSignature {
            yui_protocol::provenance::sign(
                &self.key,
                self.signer.id,
                change,
                &ring::rand::SystemRandom::new(),
            )
            .expect("sign")
        }
    }

    /// One key per town for the whole test process.
    fn member(town: &str) -> &'static Member {
        use std::sync::{Mutex, OnceLock};
        static MEMBERS: OnceLock<Mutex<std::collections::HashMap<String, &'static Member>>> =
            OnceLock::new();
        let mut members = MEMBERS.get_or_init(Default::default).lock().expect("lock");
        members.entry(town.to_owned()).or_insert_with(|| {
            use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
            let rng = ring::rand::SystemRandom::new();
            let pkcs8 =
                EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("key");
            let key =
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
                    .expect("key");
            let mut id = [0u8; 32];
            id[..town.len().min(32)].copy_from_slice(&town.as_bytes()[..town.len().min(32)]);
            let signer = yui_protocol::provenance::Signer {
                id: yui_protocol::provenance::SignerId(id),
                town: town.to_owned(),
                public_key: key.public_key().as_ref().to_vec(),
                revoked: false,
            };
            Box::leak(Box::new(Member { key, signer }))
        })
    }

    /// Opens the store trusting the members' keys, as the peer layer
    /// would once their certificates arrived.
    fn open(path: &std::path::Path) -> Store {
        let store = Store::open(path, "omachi").expect("open");
        store.add_signers(
            ["evil", "tateshina"]
                .iter()
                .map(|t| member(t).signer.clone())
                .collect(),
        );
        store
    }

    fn push(docs: Vec<DocUpdate>) -> SyncRequest {
        SyncRequest {
            version: PROTOCOL_VERSION,
            push: docs,
            ..Default::default()
        }
    }

    const QUOTAS: Quotas = Quotas {
        default: Quota {
            records_per_day: 2,
            bytes_per_day: 1_000_000,
            stored_bytes: 1_000_000,
        },
        overrides: Vec::new(),
    };

    #[tokio::test]
    async fn usage_is_charged_with_the_documents_and_survives_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("yui.sqlite");
        Store::create_database(&path, "omachi").expect("create");
        let store = open(&path);
        store.set_quotas(QUOTAS);
        let docs: Vec<DocUpdate> = (1..=3).map(|n| update("evil", n)).collect();
        let sizes: u64 = docs[..2].iter().map(|d| d.changes.len() as u64).sum();
        let honest = update("tateshina", 9);
        let mut batch = docs.clone();
        batch.push(honest.clone());
        let out = store
            .sync_accept("peer".into(), push(batch))
            .await
            .expect("accept");
        // The third of evil's is refused; the rest of the batch goes on.
        assert_eq!(out.stored.len(), 3, "{:?}", out.refused);
        assert_eq!(out.refused.len(), 1);
        assert_eq!(out.refused[0].id, docs[2].id);
        assert_eq!(out.refused[0].code, "quota_exceeded");
        assert!(
            out.refused[0].message.contains("town evil in knowledge")
                && out.refused[0]
                    .message
                    .contains("at most 2 new records a day"),
            "{}",
            out.refused[0].message
        );
        let today = crate::clock::today_jst();
        let evil = |rows: Vec<QuotaUsage>| {
            rows.into_iter()
                .find(|r| r.town == "evil")
                .expect("evil's usage")
        };
        let usage = evil(store.quota_usage(today.clone()).await.expect("usage"));
        assert_eq!(usage.usage.records_today, 2);
        assert_eq!(usage.usage.bytes_today, sizes);
        assert_eq!(
            usage.usage.stored_bytes, sizes,
            "new records are stored as received"
        );
        assert_eq!(usage.refused_today, 1);
        assert_eq!(usage.percent(&QUOTAS), 100);
        store.close();
        drop(store);

        // A restart does not reset the day: the next record is refused too.
        let store = open(&path);
        store.set_quotas(QUOTAS);
        let out = store
            .sync_accept("peer".into(), push(vec![update("evil", 4)]))
            .await
            .expect("accept");
        assert!(out.stored.is_empty());
        assert_eq!(out.refused[0].code, "quota_exceeded");
        let usage = evil(store.quota_usage(today.clone()).await.expect("usage"));
        assert_eq!((usage.usage.records_today, usage.refused_today), (2, 2));
        // History (updated three days ago: a catch-up) passes the daily
        // limits and counts against the bytes stored only.
        let old = update_at("evil", 5, crate::clock::now_ms() - 3 * 86_400_000);
        let out = store
            .sync_accept("peer".into(), push(vec![old.clone()]))
            .await
            .expect("accept");
        assert_eq!(out.stored.len(), 1, "{:?}", out.refused);
        let usage = evil(store.quota_usage(today).await.expect("usage"));
        assert_eq!(usage.usage.records_today, 2);
        assert_eq!(usage.usage.stored_bytes, sizes + old.changes.len() as u64);
        let sizes = sizes + old.changes.len() as u64;
        // Tomorrow's counters start at zero; the bytes stored stay.
        let tomorrow = evil(store.quota_usage("2999-01-01".into()).await.expect("usage"));
        assert_eq!(
            (tomorrow.usage.records_today, tomorrow.usage.bytes_today),
            (0, 0)
        );
        assert_eq!(tomorrow.usage.stored_bytes, sizes);
        let counts = store.counts().await.expect("counts");
        assert_eq!(
            counts[&Collection::Knowledge],
            4,
            "nothing refused was stored"
        );
        store
            .create(
                Collection::Knowledge,
                honest_fields(),
                crate::clock::now_ms(),
            )
            .await
            .expect("a local write");
        store.close();
        drop(store);

        // A database from before quotas gets the table on open, filled
        // with what other towns' records already take (not this town's).
        Connection::open(&path)
            .and_then(|c| c.execute_batch("DROP TABLE quota_usage"))
            .expect("drop");
        let store = Store::open(&path, "omachi").expect("upgrade");
        let rows = store.quota_usage("2999-01-01".into()).await.expect("usage");
        let stored: Vec<(&str, u64)> = rows
            .iter()
            .map(|r| (r.town.as_str(), r.usage.stored_bytes))
            .collect();
        assert_eq!(
            stored,
            [("evil", sizes), ("tateshina", honest.changes.len() as u64)]
        );
        store.close();
    }

    fn honest_fields() -> yui_protocol::validate::Fields {
        yui_protocol::validate::validate_create(
            Collection::Knowledge,
            serde_json::json!({"title": "大町の記録", "body": "本文", "category": "pr"})
                .as_object()
                .expect("object"),
        )
        .expect("valid")
    }
}
