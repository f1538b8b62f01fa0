//! The audit log's SQL: the `audit_log` table, appending an entry and
//! reading the newest. The log has two writers, both through here: the
//! store's writer (a serving node, [`Store::append_audit`]) and the
//! accounts' own connection (`yui user …`, logins, and nodes not serving).

use rusqlite::{Connection, params};
use serde::Serialize;

use super::Store;
use crate::error::Result;

pub(super) const AUDIT_TABLE: &str = "
CREATE TABLE IF NOT EXISTS audit_log (
    id INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    user TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    detail TEXT NOT NULL
) STRICT;
";

#[derive(Clone, Debug, Serialize)]
pub struct AuditEntry {
    /// RFC 3339, UTC.
    pub at: String,
    pub user: String,
    /// e.g. `record.create`, `peer.add`, `user.add`, `login`, `login.failed`.
    pub action: String,
    /// e.g. `knowledge/01J…` or a peer URL.
    pub target: String,
    pub detail: String,
}

pub(super) fn insert_audit(
    conn: &Connection,
    now: i64,
    user: &str,
    action: &str,
    target: &str,
    detail: &str,
) -> Result<()> {
    conn.execute(
        "INSERT INTO audit_log (at, user, action, target, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![now, user, action, target, detail],
    )?;
    Ok(())
}

/// The newest `limit` entries, newest first.
pub(super) fn read_audit_log(conn: &Connection, limit: i64) -> Result<Vec<AuditEntry>> {
    let mut stmt = conn.prepare(
        "SELECT at, user, action, target, detail FROM audit_log ORDER BY id DESC LIMIT ?1",
    )?;
    let rows = stmt.query_map([limit], |r| {
        Ok(AuditEntry {
            at: yui_protocol::record::format_time(r.get(0)?),
            user: r.get(1)?,
            action: r.get(2)?,
            target: r.get(3)?,
            detail: r.get(4)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

impl Store {
    /// Appends an entry to the accounts' audit log (`accounts::audit`)
    /// through the writer: (user, action, target, detail) at `at_ms`.
    pub async fn append_audit(
        &self,
        at_ms: i64,
        entry: (String, String, String, String),
    ) -> Result<()> {
        self.write(move |conn, _| {
            let (user, action, target, detail) = entry;
            insert_audit(conn, at_ms, &user, &action, &target, &detail)
        })
        .await
    }
}
