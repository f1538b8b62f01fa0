//! Importing a CSV file into a collection (issue 16): the one use case
//! behind `yui import`, `POST /api/v1/import/{collection}` and the
//! console's upload page. It owns the rules of an import; the file format
//! (encodings, headings, cells) is `yui_protocol::spreadsheet`.
//!
//! An import checks everything before it writes anything, and reports
//! every problem with its row and column: the file (its encoding, its
//! header), each row against the schema (`protocol::validate`, as the API
//! checks a body), the record ids it names, its references (to a record on
//! this node, or to a row of the same file by its id), the write authority
//! of another town's record, and, for a shared collection, the
//! personal-data guard on the values it would write (the same rules as an
//! API write, without an override). Then all rows are written in one
//! transaction through the store's writer (`Store::write_batch`), which
//! checks the references again, or none.
//!
//! A row with the id of a record of the collection updates it, changing
//! only the fields whose cells differ, so importing an export, or the same
//! file twice, changes nothing and creates no duplicate. A row without an
//! id creates a record. A row with an id this node has no record of
//! creates the record with that id in a local collection (records moved
//! from another node keep their ids, and the references between them);
//! in a shared collection it is refused, as another town may hold a
//! different record under that id. One audit entry per import
//! (`record.import`, with its counts); the records' histories hold the
//! changes.

use std::collections::HashSet;

use serde::Serialize;
use serde_json::{Map, Value};
use yui_protocol::Collection;
use yui_protocol::provenance::Authority;
use yui_protocol::spreadsheet::{self, Parsed, Problem};
use yui_protocol::validate::{self, Fields, Patch, validate_create, validate_patch};

use crate::accounts::Principal;
use crate::actions::{self, Action, Entry};
use crate::clock::now_ms;
use crate::error::{Error, Result};
use crate::node::Node;

/// A row's number and the references it makes: (field, target
/// collection, target id).
type RowReferences = (usize, Vec<(&'static str, Collection, String)>);
use crate::store::{BatchDone, BatchWrite, GuardMode, StoredRecord, judge_personal_data};

/// The largest file an import takes (the API's body limit for it).
pub const MAX_IMPORT_BYTES: usize = 16 * 1024 * 1024;
/// Most record rows in one file.
pub const MAX_IMPORT_ROWS: usize = 20_000;
/// Most problems an answer lists; `problem_count` counts them all.
pub const MAX_REPORTED_PROBLEMS: usize = 1_000;

/// What an import did, or, on a dry run, would do.
#[derive(Debug, Clone, Serialize)]
pub struct ImportReport {
    pub collection: &'static str,
    pub dry_run: bool,
    /// How the file was read: `UTF-8`, `Shift_JIS`, `UTF-16LE`, `UTF-16BE`.
    pub encoding: &'static str,
    /// Record rows in the file (empty rows are skipped).
    pub rows: usize,
    pub created: usize,
    pub updated: usize,
    /// Rows whose record already holds every value of the row.
    pub unchanged: usize,
}

/// Imports `bytes` (a CSV file) into `collection` on `principal`'s behalf;
/// on a dry run checks everything and writes nothing. A file with any
/// problem is refused with `Error::ImportRejected`, listing them.
pub async fn import(
    node: &Node,
    principal: &Principal,
    collection: Collection,
    bytes: &[u8],
    dry_run: bool,
) -> Result<ImportReport> {
    Action::Import(collection).check(principal)?;
    if bytes.len() > MAX_IMPORT_BYTES {
        return Err(Error::BodyTooLarge {
            limit: MAX_IMPORT_BYTES,
        });
    }
    let parsed = spreadsheet::parse(collection, bytes, MAX_IMPORT_ROWS);
    let plan = plan(node, collection, &parsed).await?;
    let mut report = ImportReport {
        collection: collection.name(),
        dry_run,
        encoding: parsed.encoding,
        rows: parsed.rows.len(),
        created: plan.created,
        updated: plan.updated,
        unchanged: plan.unchanged,
    };
    if !plan.problems.is_empty() {
        return Err(rejected(&parsed, plan.problems));
    }
    if dry_run {
        return Ok(report);
    }
    let done = match node
        .store
        .write_batch(collection, plan.writes, now_ms())
        .await
    {
        Ok(done) => done,
        Err(Error::ImportRejected { problems, .. }) => return Err(rejected(&parsed, problems)),
        Err(e) => return Err(e),
    };
    let done = BatchDone {
        unchanged: done.unchanged + plan.unchanged,
        ..done
    };
    report.created = done.created;
    report.updated = done.updated;
    report.unchanged = done.unchanged;
    node.metrics.record_writes(done.created + done.updated);
    let entry = Entry::imported(collection, report.rows, report.encoding, done);
    actions::audit(&node.accounts, principal, &entry).await;
    tracing::info!(collection = collection.name(), user = %principal.user, rows = report.rows,
        created = done.created, updated = done.updated, unchanged = done.unchanged, "imported a CSV file");
    Ok(report)
}

/// The refusal of a file: its problems with their columns, in row order,
/// at most [`MAX_REPORTED_PROBLEMS`] of them listed.
fn rejected(parsed: &Parsed, mut problems: Vec<Problem>) -> Error {
    for p in &mut problems {
        if p.column.is_none()
            && let Some(field) = &p.field
        {
            p.column = if field == "id" {
                parsed
                    .columns
                    .iter()
                    .find(|(_, c)| matches!(c, spreadsheet::Column::Id))
                    .map(|(h, _)| h.clone())
            } else {
                parsed.column_of(field)
            };
        }
    }
    problems.sort_by_key(|p| p.row);
    let total = problems.len();
    problems.truncate(MAX_REPORTED_PROBLEMS);
    Error::ImportRejected { problems, total }
}

/// What the rows of a file will write, and every problem found.
#[derive(Default)]
struct Plan {
    writes: Vec<BatchWrite>,
    problems: Vec<Problem>,
    created: usize,
    updated: usize,
    unchanged: usize,
}

async fn plan(node: &Node, collection: Collection, parsed: &Parsed) -> Result<Plan> {
    let mut plan = Plan {
        problems: parsed.problems.clone(),
        ..Plan::default()
    };
    plan.problems.extend(spreadsheet::duplicate_ids(parsed));
    let ids: Vec<String> = parsed
        .rows
        .iter()
        .filter_map(|r| r.id.as_ref().map(|id| id.as_str().to_owned()))
        .collect();
    let stored = node.store.stored_records(ids).await?;
    let registry = if collection.is_shared() {
        Some(node.store.registry().await?)
    } else {
        None
    };
    // The ids of this file's rows, which its references may name.
    let file_ids: HashSet<&str> = parsed
        .rows
        .iter()
        .filter_map(|r| r.id.as_ref().map(|id| id.as_str()))
        .collect();
    let mut references: Vec<RowReferences> = Vec::new();
    for row in &parsed.rows {
        let at = row.row;
        let before = plan.problems.len();
        let held = row
            .id
            .as_ref()
            .and_then(|id| stored.get(id.as_str()).map(|s| (id.as_str(), s)));
        // The row's write and the values it would write, when the row
        // passes the schema.
        let outcome: Option<(BatchWrite, Fields)> = match (&row.id, held) {
            (Some(_), Some((id, record))) => {
                match update_row(node, collection, at, id, record, &row.fields) {
                    Ok(Some((patch, new_values))) => Some((
                        BatchWrite::Update {
                            row: at,
                            id: id.to_owned(),
                            patch,
                        },
                        new_values,
                    )),
                    Ok(None) => {
                        if row.unreadable.is_empty() {
                            plan.unchanged += 1;
                        }
                        None
                    }
                    Err(problems) => {
                        plan.problems.extend(problems);
                        None
                    }
                }
            }
            (Some(id), None) if collection.is_shared() => {
                plan.problems.push(Problem {
                    row: at,
                    column: None,
                    field: Some("id".into()),
                    code: "record_not_found",
                    message: format!(
                        "this node has no {collection} record with id {id}; leave the id empty to add a new record (a shared record keeps the id its town gave it)"
                    ),
                });
                None
            }
            (id, _) => match validate_create(collection, &row.given()) {
                Ok(fields) => Some((
                    BatchWrite::Create {
                        row: at,
                        id: id.clone(),
                        fields: fields.clone(),
                    },
                    fields,
                )),
                Err(e) => {
                    plan.problems.extend(Error::from(e).into_problems(at));
                    None
                }
            },
        };
        // A required field whose cell could not be read is not missing:
        // its problem is said already.
        let mut kept = plan.problems.split_off(before);
        kept.retain(|p| {
            !(p.code == "missing_field"
                && p.field.as_ref().is_some_and(|f| row.unreadable.contains(f)))
        });
        plan.problems.extend(kept);
        // The references and the guard see every value the row would
        // write, also when another of its cells has a problem, so that
        // one round of corrections is enough.
        let values = match &outcome {
            Some((_, values)) => values.clone(),
            None => fields_alone(collection, &row.fields, held.map(|(_, r)| r)),
        };
        references.push((at, validate::references(collection, values.iter())));
        if let Some(registry) = &registry
            && let Err(e) = judge_personal_data(collection, &values, registry, GuardMode::Refuse)
        {
            plan.problems.extend(e.into_problems(at));
        }
        match outcome {
            Some((write, _)) if plan.problems.len() == before && row.unreadable.is_empty() => {
                match write {
                    BatchWrite::Create { .. } => plan.created += 1,
                    BatchWrite::Update { .. } => plan.updated += 1,
                }
                plan.writes.push(write);
            }
            _ => {}
        }
    }
    check_references(node, collection, &file_ids, references, &mut plan).await?;
    Ok(plan)
}

/// The values of a row's cells that pass the schema each on its own (and,
/// for a stored record, differ from it): what the references and the guard
/// check in a row that has a problem elsewhere.
fn fields_alone(
    collection: Collection,
    cells: &Map<String, Value>,
    held: Option<&StoredRecord>,
) -> Fields {
    let mut values = Fields::new();
    for (name, value) in cells.iter().filter(|(_, v)| !v.is_null()) {
        let one = Map::from_iter([(name.clone(), value.clone())]);
        if let Ok(patch) = validate_patch(collection, &one) {
            for (k, v) in patch {
                let Some(v) = v else { continue };
                let same = held.is_some_and(|r| r.view.fields.get(k) == Some(&v.to_json()));
                if !same {
                    values.insert(k, v);
                }
            }
        }
    }
    values
}

/// A row for a stored record: the fields it changes (`None` when it
/// changes none), and their new values; or its problems.
fn update_row(
    node: &Node,
    collection: Collection,
    row: usize,
    id: &str,
    record: &StoredRecord,
    cells: &Map<String, Value>,
) -> std::result::Result<Option<(Patch, Fields)>, Vec<Problem>> {
    let problem = |code: &'static str, message: String| {
        vec![Problem {
            row,
            column: None,
            field: Some("id".into()),
            code,
            message,
        }]
    };
    if record.collection != collection.name() {
        return Err(problem(
            "invalid_id",
            format!(
                "{id} is a {} record, not a {collection} record",
                record.collection
            ),
        ));
    }
    if record.deleted {
        return Err(problem(
            "record_deleted",
            format!(
                "{collection} record {id} was deleted; leave the id empty to add it as a new record"
            ),
        ));
    }
    let patch = validate_patch(collection, cells).map_err(|e| Error::from(e).into_problems(row))?;
    // Only what differs from the stored record: an unchanged row writes
    // nothing, and the guard sees only new values.
    let held = &record.view.fields;
    let patch: Patch = patch
        .into_iter()
        .filter(|(name, value)| match value {
            Some(v) => held.get(*name) != Some(&v.to_json()),
            None => held.get(*name).is_some_and(|v| !v.is_null()),
        })
        .collect();
    if patch.is_empty() {
        return Ok(None);
    }
    if Authority::of(collection) == Authority::Origin && record.view.town != node.config.town {
        return Err(problem(
            "not_the_owner",
            format!(
                "this {collection} record belongs to {}: only that town may change it",
                record.view.town
            ),
        ));
    }
    let mut merged = held.clone();
    for (name, value) in &patch {
        match value {
            Some(v) => merged.insert((*name).to_owned(), v.to_json()),
            None => merged.remove(*name),
        };
    }
    validate::check_merged(collection, &merged).map_err(|e| Error::from(e).into_problems(row))?;
    let new_values: Fields = patch
        .iter()
        .filter_map(|(k, v)| Some((*k, v.clone()?)))
        .collect();
    Ok(Some((patch, new_values)))
}

/// Each reference must name a live record of its collection on this node,
/// or a row of this file (which the same write stores).
async fn check_references(
    node: &Node,
    collection: Collection,
    file_ids: &HashSet<&str>,
    references: Vec<RowReferences>,
    plan: &mut Plan,
) -> Result<()> {
    let outside: Vec<String> = references
        .iter()
        .flat_map(|(_, refs)| refs.iter())
        .filter(|(_, to, id)| !(*to == collection && file_ids.contains(id.as_str())))
        .map(|(_, _, id)| id.clone())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let found = node.store.stored_records(outside).await?;
    for (row, refs) in references {
        for (field, to, id) in refs {
            if to == collection && file_ids.contains(id.as_str()) {
                continue;
            }
            let message = match found.get(&id) {
                None => format!("no {to} record has id {id}"),
                Some(r) if r.collection != to.name() => {
                    format!("{id} is a {} record, not a {to} record", r.collection)
                }
                Some(r) if r.deleted => format!("{to} record {id} is deleted"),
                Some(_) => continue,
            };
            plan.problems.push(Problem {
                row,
                column: None,
                field: Some(field.to_owned()),
                code: "invalid_reference",
                message,
            });
        }
    }
    Ok(())
}
