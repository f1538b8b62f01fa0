//! The database's shape and identity: the tables, how a connection is set
//! up, the `meta` table (town, actor id, feed epoch), and the check that a
//! file is a Yui database of the schema this build reads.

use std::path::Path;

use automerge::ActorId;
use rand::RngCore;
use rusqlite::{Connection, OptionalExtension};

use crate::error::{Error, Result};

/// `PRAGMA application_id` of a Yui database ("YUI1").
pub(super) const APPLICATION_ID: i32 = 0x5955_4931;
/// `PRAGMA user_version`: the schema below.
pub(super) const SCHEMA_VERSION: i32 = 1;

pub(super) const SCHEMA: &str = "

CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT;
CREATE TABLE records (
    rowid INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    collection TEXT NOT NULL,
    shared INTEGER NOT NULL,
    town TEXT NOT NULL,
    deleted INTEGER NOT NULL,
    seq INTEGER NOT NULL UNIQUE,
    heads BLOB NOT NULL,
    doc BLOB NOT NULL,
    chunks INTEGER NOT NULL DEFAULT 0,
    view TEXT NOT NULL
) STRICT;
CREATE INDEX records_by_collection ON records (collection, deleted, id);
CREATE INDEX records_shared_feed ON records (shared, seq);
CREATE TABLE doc_chunks (
    record INTEGER NOT NULL REFERENCES records (rowid),
    n INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (record, n)
) STRICT, WITHOUT ROWID;
CREATE TABLE peers (
    url TEXT PRIMARY KEY,
    node_id TEXT,
    town TEXT,
    push_cursor INTEGER NOT NULL DEFAULT 0,
    pull_cursor INTEGER NOT NULL DEFAULT 0,
    added_at INTEGER NOT NULL,
    last_attempt_at INTEGER,
    last_success_at INTEGER,
    last_error TEXT,
    failures INTEGER NOT NULL DEFAULT 0,
    rounds INTEGER NOT NULL DEFAULT 0,
    bytes_in INTEGER NOT NULL DEFAULT 0,
    bytes_out INTEGER NOT NULL DEFAULT 0,
    docs_in INTEGER NOT NULL DEFAULT 0,
    docs_out INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE TABLE peer_epochs (peer TEXT PRIMARY KEY, epoch INTEGER NOT NULL) STRICT;
CREATE TABLE peer_staged (
    peer TEXT NOT NULL,
    cursor INTEGER NOT NULL,
    record_id TEXT NOT NULL,
    heads BLOB NOT NULL
) STRICT;
CREATE INDEX peer_staged_by_peer ON peer_staged (peer, cursor);
CREATE TABLE peer_heads (
    peer TEXT NOT NULL,
    record_id TEXT NOT NULL,
    heads BLOB NOT NULL,
    PRIMARY KEY (peer, record_id)
) STRICT, WITHOUT ROWID;
";

/// Tables added after the first release, created on open where missing.
pub(super) const ADDED_TABLES: &str = "
CREATE TABLE IF NOT EXISTS peer_epochs (peer TEXT PRIMARY KEY, epoch INTEGER NOT NULL) STRICT;
CREATE TABLE IF NOT EXISTS peer_staged (
    peer TEXT NOT NULL, cursor INTEGER NOT NULL, record_id TEXT NOT NULL, heads BLOB NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS peer_staged_by_peer ON peer_staged (peer, cursor);
CREATE TABLE IF NOT EXISTS egress (
    at TEXT NOT NULL, peer TEXT NOT NULL, peer_town TEXT NOT NULL, way TEXT NOT NULL,
    record_id TEXT NOT NULL, collection TEXT NOT NULL, heads TEXT NOT NULL, bytes INTEGER NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS egress_by_time ON egress (at);
CREATE TABLE IF NOT EXISTS quota_usage (
    town TEXT NOT NULL,
    collection TEXT NOT NULL,
    day TEXT NOT NULL,
    records_today INTEGER NOT NULL DEFAULT 0,
    bytes_today INTEGER NOT NULL DEFAULT 0,
    refused_today INTEGER NOT NULL DEFAULT 0,
    stored_bytes INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (town, collection)
) STRICT, WITHOUT ROWID;
";

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase) => {
                Error::CorruptDatabase {
                    path: "yui.sqlite".into(),
                    detail: e.to_string(),
                }
            }
            Some(rusqlite::ErrorCode::DiskFull) => Error::StorageFull {
                detail: e.to_string(),
            },
            _ => Error::Storage(e.to_string()),
        }
    }
}

pub(super) fn corrupt(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::CorruptDatabase {
        path: path.display().to_string(),
        detail: e.to_string(),
    }
}

pub(super) fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "foreign_keys", true)?;
    Ok(())
}

pub(super) fn get_meta(conn: &Connection, key: &str) -> rusqlite::Result<Option<String>> {
    conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
        .optional()
}

pub(super) fn set_meta(conn: &Connection, key: &str, value: &str) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        [key, value],
    )?;
    Ok(())
}

pub(super) fn new_epoch() -> u64 {
    // Never 0: 0 is what a peer that does not send an epoch sends.
    rand::rng().next_u64().max(1)
}

pub(super) fn new_actor_hex() -> String {
    let mut actor = [0u8; 16];
    rand::rng().fill_bytes(&mut actor);
    actor.iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Checks that `conn` is a Yui database and returns its (town, actor).
pub(super) fn identify(conn: &Connection, path: &Path) -> Result<(String, ActorId)> {
    let app_id: i32 = conn
        .pragma_query_value(None, "application_id", |r| r.get(0))
        .map_err(|e| corrupt(path, e))?;
    if app_id != APPLICATION_ID {
        return Err(corrupt(path, "it is an SQLite database, but not Yui's"));
    }
    let version: i32 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(|e| corrupt(path, e))?;
    if version != SCHEMA_VERSION {
        return Err(Error::Config(format!(
            "{} has schema version {version}; this yui reads version {SCHEMA_VERSION}",
            path.display()
        )));
    }
    let town = get_meta(conn, "town")
        .map_err(|e| corrupt(path, e))?
        .ok_or_else(|| corrupt(path, "no town in meta"))?;
    let actor = get_meta(conn, "actor")
        .map_err(|e| corrupt(path, e))?
        .and_then(|h| parse_hex(&h))
        .filter(|b| b.len() == 16)
        .ok_or_else(|| corrupt(path, "no actor id in meta"))?;
    Ok((town, ActorId::from(actor.as_slice())))
}
