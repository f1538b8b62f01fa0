//! Record reads: one record, a page of a collection, a record's history and
//! conflicts, the dashboard's conflict scan, counts, export pages, and the
//! KPI roll-up's views and towns. All run on the read pool; none writes.

use std::collections::BTreeMap;

use rusqlite::{OptionalExtension, params};
use serde_json::value::RawValue;
use yui_protocol::doc::{self, HistoryEntry};
use yui_protocol::{Collection, RecordView};

use super::records::load_doc;
use super::{ListQuery, Page, Store, lock, not_found, raw};
use crate::error::{Error, Result};

/// Shared records with conflicts, as of a feed position: the dashboard
/// then only loads what changed since, and what had conflicts before.
#[derive(Default)]
pub(super) struct ConflictScan {
    seen_seq: i64,
    ids: std::collections::BTreeSet<(String, String)>,
}

impl Store {
    /// A record by id; a deleted one only when `include_deleted`.
    pub async fn get(
        &self,
        collection: Collection,
        id: String,
        include_deleted: bool,
    ) -> Result<Box<RawValue>> {
        self.read(move |conn| {
            let row: Option<(bool, String)> = conn
                .query_row(
                    "SELECT deleted, view FROM records WHERE id = ?1 AND collection = ?2",
                    params![id, collection.name()],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            match row {
                Some((deleted, view)) if !deleted || include_deleted => raw(view),
                _ => Err(not_found(collection, &id)),
            }
        })
        .await
    }

    /// A page of a collection, newest first.
    pub async fn list(&self, collection: Collection, q: ListQuery) -> Result<Page> {
        self.read(move |conn| {
            let mut sql = String::from("SELECT id, view FROM records WHERE collection = ?");
            let mut args: Vec<rusqlite::types::Value> = vec![collection.name().to_owned().into()];
            if !q.include_deleted {
                sql.push_str(" AND deleted = 0");
            }
            if let Some(cursor) = &q.cursor {
                sql.push_str(" AND id < ?");
                args.push(cursor.clone().into());
            }
            for (field, value) in &q.filters {
                // Field names come from the schema, never from the request.
                sql.push_str(&format!(" AND json_extract(view, '$.fields.{field}') = ?"));
                args.push(match value {
                    serde_json::Value::Number(n) if n.is_i64() => n.as_i64().unwrap_or(0).into(),
                    serde_json::Value::Number(n) => n.as_f64().unwrap_or(0.0).into(),
                    serde_json::Value::String(s) => s.clone().into(),
                    other => other.to_string().into(),
                });
            }
            sql.push_str(" ORDER BY id DESC LIMIT ?");
            args.push((q.limit as i64 + 1).into());
            let mut stmt = conn.prepare_cached(&sql)?;
            let mut rows: Vec<(String, String)> = stmt
                .query_map(rusqlite::params_from_iter(args), |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?
                .collect::<rusqlite::Result<_>>()?;
            let next_cursor = if rows.len() > q.limit {
                rows.truncate(q.limit);
                rows.last().map(|(id, _)| id.clone())
            } else {
                None
            };
            let items = rows
                .into_iter()
                .map(|(_, v)| raw(v))
                .collect::<Result<_>>()?;
            Ok(Page { items, next_cursor })
        })
        .await
    }

    /// The change history of a record, oldest first.
    pub async fn history(&self, collection: Collection, id: String) -> Result<Vec<HistoryEntry>> {
        self.read(move |conn| {
            let mut loaded = load_doc(conn, collection, &id)?;
            Ok(doc::history(&mut loaded.doc))
        })
        .await
    }

    /// Fields of a record with concurrent competing values.
    pub async fn conflicts(
        &self,
        collection: Collection,
        id: String,
    ) -> Result<BTreeMap<String, Vec<serde_json::Value>>> {
        self.read(move |conn| {
            let loaded = load_doc(conn, collection, &id)?;
            Ok(doc::conflicts(&loaded.doc)?)
        })
        .await
    }

    /// Shared records with conflicting values: the `scan` most recently
    /// changed ones the first time, then those changed since the last call
    /// (at most `scan`) and those that had conflicts, so a dashboard that
    /// is reloaded loads next to nothing.
    pub async fn recent_conflicts(&self, scan: usize) -> Result<Vec<(RecordView, Vec<String>)>> {
        let inner = self.inner.clone();
        self.read(move |conn| {
            let (seen, known) = {
                let c = lock(&inner.conflicts);
                (c.seen_seq, c.ids.clone())
            };
            let max_seq: i64 =
                conn.query_row("SELECT coalesce(max(seq), 0) FROM records", [], |r| {
                    r.get(0)
                })?;
            let mut stmt = conn.prepare_cached(
                "SELECT id, collection FROM records WHERE shared = 1 AND deleted = 0 AND seq > ?2
                 ORDER BY seq DESC LIMIT ?1",
            )?;
            let mut candidates: std::collections::BTreeSet<(String, String)> = stmt
                .query_map(params![scan as i64, seen], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<_>>()?;
            candidates.extend(known);
            let mut out = Vec::new();
            let mut found = std::collections::BTreeSet::new();
            for (id, name) in candidates {
                let Ok(collection) = name.parse::<Collection>() else {
                    continue;
                };
                let loaded = match load_doc(conn, collection, &id) {
                    Ok(l) if !l.deleted => l,
                    Ok(_) | Err(Error::RecordNotFound { .. }) => continue,
                    Err(e) => return Err(e),
                };
                let fields: Vec<String> = doc::conflicts(&loaded.doc)?.into_keys().collect();
                if !fields.is_empty() {
                    let view: RecordView = serde_json::from_str(&loaded.view_json)
                        .map_err(|e| Error::Storage(format!("record view of {id}: {e}")))?;
                    out.push((view, fields));
                    found.insert((id, name));
                }
            }
            *lock(&inner.conflicts) = ConflictScan {
                seen_seq: max_seq,
                ids: found,
            };
            out.sort_by(|a, b| b.0.updated_at.cmp(&a.0.updated_at));
            Ok(out)
        })
        .await
    }

    /// Live records per collection (every collection listed, zeros included).
    pub async fn counts(&self) -> Result<BTreeMap<Collection, u64>> {
        self.read(|conn| {
            let mut out: BTreeMap<Collection, u64> =
                Collection::ALL.into_iter().map(|c| (c, 0)).collect();
            let mut stmt = conn.prepare_cached(
                "SELECT collection, count(*) FROM records WHERE deleted = 0 GROUP BY collection",
            )?;
            let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
            for row in rows {
                let (name, n) = row?;
                if let Ok(c) = name.parse::<Collection>() {
                    out.insert(c, n as u64);
                }
            }
            Ok(out)
        })
        .await
    }

    /// Every record's id, for export, in id order, `batch` at a time.
    pub async fn export_page(
        &self,
        after: Option<String>,
        batch: usize,
    ) -> Result<Vec<(Collection, RecordView)>> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT collection, view FROM records WHERE id > ?1 ORDER BY id LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![after.unwrap_or_default(), batch as i64], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (c, view) = row?;
                let c: Collection = c
                    .parse()
                    .map_err(|e: yui_protocol::UnknownCollection| Error::Storage(e.to_string()))?;
                let view: RecordView = serde_json::from_str(&view)
                    .map_err(|e| Error::Storage(format!("record view: {e}")))?;
                out.push((c, view));
            }
            Ok(out)
        })
        .await
    }

    // KPI (issue 6)
    /// Every live record of a collection, oldest first. For the KPI
    /// roll-up and draft, over collections that stay small (a town's
    /// workers and pilots, a report per town and year).
    pub async fn all_views(&self, collection: Collection) -> Result<Vec<RecordView>> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT view FROM records WHERE collection = ?1 AND deleted = 0 ORDER BY id",
            )?;
            let views = stmt
                .query_map([collection.name()], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            views
                .iter()
                .map(|v| serde_json::from_str(v).map_err(|e| Error::Storage(e.to_string())))
                .collect()
        })
        .await
    }

    // End KPI (issue 6)
}
