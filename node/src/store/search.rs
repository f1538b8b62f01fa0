//! The search index: an FTS5 table over each live record's folded terms
//! (`protocol::search`), written in the same transaction as the record,
//! and the query over it.

use rusqlite::{Connection, params};
use serde_json::Value;
use serde_json::value::RawValue;
use yui_protocol::schema::FieldKind;
use yui_protocol::{Collection, RecordView, markdown, search};

use super::{Store, raw};
use crate::error::{Error, Result};

impl Store {
    /// Full-text search, best match first.
    pub async fn search(
        &self,
        query: String,
        collection: Option<Collection>,
        limit: usize,
    ) -> Result<Vec<Box<RawValue>>> {
        let Some(expr) = search::match_expression(&query) else {
            return Ok(Vec::new());
        };
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT r.view FROM search s JOIN records r ON r.rowid = s.rowid
                 WHERE search MATCH ?1 AND r.deleted = 0 AND (?2 IS NULL OR r.collection = ?2)
                 ORDER BY s.rank LIMIT ?3",
            )?;
            let rows = stmt
                .query_map(
                    params![expr, collection.map(Collection::name), limit as i64],
                    |r| r.get::<_, String>(0),
                )?
                .map(|v| raw(v?))
                .collect::<Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }
}

/// The search index. Its terms arrive folded (`protocol::search`), so FTS5's
/// `ascii` tokenizer only splits them at the spaces.
pub(super) const SEARCH_TABLE: &str = "CREATE VIRTUAL TABLE search USING fts5 (terms, content = '', contentless_delete = 1, tokenize = 'ascii')";

/// Re-indexes a database whose search table was declared otherwise than
/// [`SEARCH_TABLE`] (before 2026-11-22: the `unicode61` tokenizer), in one
/// transaction: 0.8 s for 10,000 records on the benchmark machine, once.
/// An older `yui` still searches the re-indexed table (its own terms,
/// split at spaces).
pub(super) fn rebuild_search_if_redeclared(conn: &Connection) -> Result<()> {
    let declared: String = conn.query_row(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'search'",
        [],
        |r| r.get(0),
    )?;
    if declared == SEARCH_TABLE {
        return Ok(());
    }
    let started = std::time::Instant::now();
    let tx = conn.unchecked_transaction()?;
    tx.execute_batch("DROP TABLE search")?;
    tx.execute(SEARCH_TABLE, [])?;
    let mut indexed = 0usize;
    {
        let mut rows = tx.prepare("SELECT rowid, view FROM records WHERE deleted = 0")?;
        let mut insert = tx.prepare("INSERT INTO search (rowid, terms) VALUES (?1, ?2)")?;
        let mut rows = rows.query([])?;
        while let Some(row) = rows.next()? {
            let rowid: i64 = row.get(0)?;
            let json: String = row.get(1)?;
            let view: RecordView = serde_json::from_str(&json)
                .map_err(|e| Error::Storage(format!("record {rowid}: unreadable view: {e}")))?;
            insert.execute(params![rowid, index_terms(&view)])?;
            indexed += 1;
        }
    }
    tx.commit()?;
    tracing::info!(
        records = indexed,
        took_ms = started.elapsed().as_millis() as u64,
        "re-indexed search for the ascii tokenizer (once)"
    );
    Ok(())
}

/// The search terms of a record: its words, titles, texts and tags.
pub(super) fn index_terms(view: &RecordView) -> String {
    let mut terms = String::new();
    let Some(collection) = view.collection() else {
        return terms;
    };
    for def in collection.fields() {
        let Some(value) = view.fields.get(def.name) else {
            continue;
        };
        match def.kind {
            FieldKind::Str { .. } | FieldKind::Email | FieldKind::Phone => {
                if let Some(s) = value.as_str() {
                    search::index_terms(s, &mut terms);
                }
            }
            // Markdown: its words, not its markup (`山田*花子*` is found as
            // 山田花子) and not its links' targets.
            FieldKind::Text { .. } => {
                if let Some(s) = value.as_str() {
                    if markdown::has_markup(s) {
                        search::index_terms(&markdown::plain_text(s).text, &mut terms);
                    } else {
                        search::index_terms(s, &mut terms);
                    }
                }
            }
            FieldKind::Tags { .. } => {
                for tag in items(value).filter_map(Value::as_str) {
                    search::index_terms(tag, &mut terms);
                }
            }
            FieldKind::Objects { .. } => {
                for obj in items(value).filter_map(Value::as_object) {
                    for s in obj.values().filter_map(|v| v.as_str()) {
                        search::index_terms(s, &mut terms);
                    }
                }
            }
            _ => {}
        }
    }
    terms
}

/// The items of an array field (none when it holds something else).
fn items(value: &Value) -> impl Iterator<Item = &Value> {
    value.as_array().into_iter().flatten()
}
