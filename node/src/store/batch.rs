//! A batch of record writes in one transaction, all or none: what an
//! import stores (`crate::import`). Its new records' documents are made on
//! the blocking pool first, on every core; then one writer job inserts
//! them and applies the updates, checks every reference once all rows are
//! in (so a row may point at another row of the same batch), and, if any
//! row fails, fails as a whole: its savepoint is rolled back and nothing
//! of the batch is stored. Each failing row is reported, not only the
//! first.

use std::collections::HashMap;

use rusqlite::OptionalExtension;
use yui_protocol::spreadsheet::Problem;
use yui_protocol::validate::{Fields, Patch};
use yui_protocol::{Collection, Millis, RecordId, RecordView};

use super::Store;
use super::constraints::check_references;
use super::records::{PreparedCreate, apply_update, insert_prepared, prepare_create};
use crate::error::{Error, Result};

/// One row of a batch.
#[derive(Debug, Clone)]
pub enum BatchWrite {
    /// A new record: with the id the batch gives it (a record moved from
    /// an export), or a new one.
    Create {
        row: usize,
        id: Option<RecordId>,
        fields: Fields,
    },
    /// A change to a stored record (only the fields of `patch`).
    Update {
        row: usize,
        id: String,
        patch: Patch,
    },
}

/// What a stored batch did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchDone {
    pub created: usize,
    pub updated: usize,
    /// Updates that changed no field, so wrote nothing.
    pub unchanged: usize,
}

/// A stored record, as a batch's checks need it.
#[derive(Debug, Clone)]
pub struct StoredRecord {
    pub collection: String,
    pub deleted: bool,
    pub view: RecordView,
}

impl Store {
    /// The records with these ids, whatever their collection, deleted ones
    /// too; an id no record has is absent from the answer.
    pub async fn stored_records(&self, ids: Vec<String>) -> Result<HashMap<String, StoredRecord>> {
        self.read(move |conn| {
            let mut stmt =
                conn.prepare_cached("SELECT collection, deleted, view FROM records WHERE id = ?1")?;
            let mut out = HashMap::with_capacity(ids.len());
            for id in ids {
                let row: Option<(String, bool, String)> = stmt
                    .query_row([&id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                    .optional()?;
                if let Some((collection, deleted, view)) = row {
                    let view: RecordView = serde_json::from_str(&view)
                        .map_err(|e| Error::Storage(format!("reading record {id}: {e}")))?;
                    out.insert(
                        id,
                        StoredRecord {
                            collection,
                            deleted,
                            view,
                        },
                    );
                }
            }
            Ok(out)
        })
        .await
    }

    /// Stores every row of `writes` in one transaction, or none: a row
    /// that fails (a reference to no record, an id in use, a record of
    /// another town, the schema, a second KPI report for a year) fails the
    /// batch with `Error::ImportRejected`, naming each failing row. The
    /// personal-data guard is the caller's (it runs before, on the rows'
    /// new values).
    pub async fn write_batch(
        &self,
        collection: Collection,
        writes: Vec<BatchWrite>,
        now: Millis,
    ) -> Result<BatchDone> {
        self.refuse_if_damaged().await?;
        let (actor, town) = (self.inner.actor.clone(), self.inner.town.clone());
        let signing = collection.is_shared().then(|| self.signing()).flatten();
        let mut creates = Vec::new();
        let mut updates = Vec::new();
        for w in writes {
            match w {
                BatchWrite::Create { row, id, fields } => {
                    let id = id.unwrap_or_else(|| self.next_id(now));
                    creates.push((row, id, fields));
                }
                BatchWrite::Update { row, id, patch } => updates.push((row, id, patch)),
            }
        }
        let sign = signing.clone();
        let prepared: Vec<(usize, Result<PreparedCreate>)> =
            tokio::task::spawn_blocking(move || {
                let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
                let chunk = creates.len().div_ceil(threads).max(1);
                std::thread::scope(|scope| {
                    let handles: Vec<_> = creates
                        .chunks(chunk)
                        .map(|part| {
                            let (actor, town, sign) = (&actor, &town, sign.as_ref());
                            scope.spawn(move || {
                                part.iter()
                                    .map(|(row, id, fields)| {
                                        let p = prepare_create(
                                            actor.clone(),
                                            town,
                                            sign,
                                            collection,
                                            id.clone(),
                                            fields,
                                            now,
                                        );
                                        (*row, p)
                                    })
                                    .collect::<Vec<_>>()
                            })
                        })
                        .collect();
                    handles
                        .into_iter()
                        .flat_map(|h| h.join().unwrap_or_default())
                        .collect()
                })
            })
            .await
            .map_err(|e| Error::Storage(format!("import task failed: {e}")))?;
        self.write(move |conn, state| {
            let mut problems = Vec::new();
            let mut refs = Vec::new();
            let mut done = BatchDone::default();
            let mut exists = conn.prepare_cached("SELECT collection FROM records WHERE id = ?1")?;
            for (row, p) in prepared {
                let p = match p {
                    Ok(p) => p,
                    Err(e) => {
                        row_failed(&mut problems, row, e)?;
                        continue;
                    }
                };
                let held: Option<String> =
                    exists.query_row([p.id.as_str()], |r| r.get(0)).optional()?;
                if let Some(c) = held {
                    problems.push(Problem {
                        row,
                        column: None,
                        field: Some("id".into()),
                        code: "conflict",
                        message: format!("a {c} record with id {} exists already", p.id),
                    });
                    continue;
                }
                match insert_prepared(conn, state, collection, &p) {
                    Ok(()) => {
                        done.created += 1;
                        refs.push((row, p.refs));
                    }
                    Err(e) => row_failed(&mut problems, row, e)?,
                }
            }
            for (row, id, patch) in &updates {
                match apply_update(conn, state, collection, id, patch, now, signing.as_ref()) {
                    Ok(u) => {
                        if u.changed {
                            done.updated += 1;
                        } else {
                            done.unchanged += 1;
                        }
                        refs.push((*row, u.refs));
                    }
                    Err(e) => row_failed(&mut problems, *row, e)?,
                }
            }
            // Every row is in: a reference to another row of the batch
            // finds it.
            for (row, refs) in refs {
                if let Err(e) = check_references(conn, &refs) {
                    row_failed(&mut problems, row, e)?;
                }
            }
            if problems.is_empty() {
                Ok(done)
            } else {
                problems.sort_by_key(|p| p.row);
                Err(Error::ImportRejected {
                    total: problems.len(),
                    problems,
                })
            }
        })
        .await
    }
}

/// Notes a row's failure among the problems, unless the store itself
/// failed (a storage error fails the batch as what it is).
fn row_failed(problems: &mut Vec<Problem>, row: usize, e: Error) -> Result<()> {
    match e {
        Error::Storage(_)
        | Error::CorruptDatabase { .. }
        | Error::StorageFull { .. }
        | Error::ShuttingDown
        | Error::DamagedDatabase { .. } => Err(e),
        e => {
            problems.extend(e.into_problems(row));
            Ok(())
        }
    }
}
