//! Whether the database is whole: SQLite's `quick_check` at start and then
//! periodically (`Store::check_integrity`), table by table once the whole
//! check fails, so status can name what is damaged. While anything is
//! damaged, the writer takes no writes (`Store::write` refuses with
//! `Error::DamagedDatabase`): a damaged b-tree can lose or mangle what is
//! written into it, and what the node would sync out of it.
//!
//! The first check runs on the writer thread before its first write
//! ([`FirstCheck`]), not in `Store::open`: it reads every page (3 s at
//! 100,000 records), and reads and `/healthz` need not wait for it. Writes
//! do: `Store::write` waits until it has run, so a damaged database still
//! takes none.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rusqlite::Connection;
use serde::Serialize;
use tokio::sync::watch;
use yui_protocol::Millis;

use super::Store;
use crate::error::{Error, Result};

/// Most problems SQLite lists per check, and that status keeps.
const MAX_PROBLEMS: usize = 20;

/// The result of the latest check.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Integrity {
    /// When the latest check ran (ms since the epoch); None before the first.
    pub checked_at: Option<Millis>,
    /// The damaged tables (`database` when SQLite names none, e.g. a damaged
    /// free list); empty when whole.
    pub damaged: Vec<String>,
    /// What SQLite said, at most [`MAX_PROBLEMS`] lines.
    pub problems: Vec<String>,
}

impl Integrity {
    pub fn is_ok(&self) -> bool {
        self.damaged.is_empty()
    }
}

/// `PRAGMA quick_check` over the whole database, or one table (and its
/// indexes): the problems SQLite lists, empty when it says `ok`. An error
/// running the check (not a problem it found) is `Err`.
fn quick_check(conn: &Connection, table: Option<&str>) -> rusqlite::Result<Vec<String>> {
    let sql = match table {
        None => format!("PRAGMA quick_check({MAX_PROBLEMS})"),
        Some(t) => format!("PRAGMA quick_check(\"{}\")", t.replace('"', "\"\"")),
    };
    let rows = conn.prepare(&sql).and_then(|mut stmt| {
        stmt.query_map([], |r| r.get::<_, String>(0))?
            .collect::<rusqlite::Result<Vec<String>>>()
    });
    match rows {
        Ok(rows) if rows.len() == 1 && rows[0] == "ok" => Ok(Vec::new()),
        Ok(rows) if rows.is_empty() => Ok(vec!["quick_check returned nothing".into()]),
        Ok(rows) => Ok(rows),
        Err(e) => Err(e),
    }
}

/// How long the check retries when it cannot run at all (another
/// connection changing the schema at start, a lock): such an error says
/// nothing about the pages. Persistent, it counts as damage.
const RETRY_FOR: std::time::Duration = std::time::Duration::from_secs(5);

/// [`quick_check`], retried while it cannot run; a lasting error is a
/// problem found.
fn quick_check_retrying(conn: &Connection, table: Option<&str>) -> Vec<String> {
    let started = std::time::Instant::now();
    loop {
        match quick_check(conn, table) {
            Ok(problems) => return problems,
            Err(e)
                if started.elapsed() < RETRY_FOR
                    && matches!(
                        e.sqlite_error_code(),
                        Some(
                            rusqlite::ErrorCode::DatabaseBusy
                                | rusqlite::ErrorCode::DatabaseLocked
                                | rusqlite::ErrorCode::SchemaChanged
                        )
                    ) =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => return vec![e.to_string()],
        }
    }
}

/// Checks the database on `conn`: the whole, then, if that fails, each
/// ordinary table, to name the damaged ones.
pub(super) fn check(conn: &Connection, now: Millis) -> Integrity {
    let mut problems = quick_check_retrying(conn, None);
    problems.truncate(MAX_PROBLEMS);
    if problems.is_empty() {
        return Integrity {
            checked_at: Some(now),
            ..Integrity::default()
        };
    }
    let tables = conn
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' AND sql NOT LIKE 'CREATE VIRTUAL%' ORDER BY name")
        .and_then(|mut stmt| {
            stmt.query_map([], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<String>>>()
        });
    let mut damaged = match tables {
        Ok(tables) => tables
            .into_iter()
            .filter(|t| !quick_check_retrying(conn, Some(t)).is_empty())
            .collect(),
        Err(_) => vec!["sqlite_schema".to_owned()],
    };
    if damaged.is_empty() {
        damaged.push("database".to_owned());
    }
    Integrity {
        checked_at: Some(now),
        damaged,
        problems,
    }
}

/// The first check, handed to the writer thread.
pub(super) struct FirstCheck {
    pub path: PathBuf,
    pub integrity: Arc<Mutex<Integrity>>,
    pub done: watch::Sender<bool>,
}

impl FirstCheck {
    pub fn run(self, conn: &Connection) {
        let started = std::time::Instant::now();
        let found = check(conn, crate::clock::now_ms());
        if found.is_ok() {
            tracing::info!(
                took_ms = started.elapsed().as_millis() as u64,
                "database integrity check at start: ok"
            );
        } else {
            log_damage(&self.path, &found);
        }
        *super::lock(&self.integrity) = found;
        let _ = self.done.send(true);
    }
}

impl Store {
    /// Waits until the first integrity check (on the writer thread) has run,
    /// and answers its result. `yui status` and the writes wait; nothing
    /// else needs to.
    pub async fn first_integrity_check(&self) -> Integrity {
        let mut done = self.inner.first_check.clone();
        // An error means the writer thread is gone (shutting down); the
        // write that waits then fails on the closed queue.
        let _ = done.wait_for(|done| *done).await;
        self.integrity()
    }

    /// The result of the latest integrity check.
    pub fn integrity(&self) -> Integrity {
        super::lock(&self.inner.integrity).clone()
    }

    /// Runs `quick_check` again (on a reader, so serving goes on) and keeps
    /// the result. Damage found is logged at `error`; so is its end (after
    /// a restore the node starts afresh, so that is rare).
    pub async fn check_integrity(&self) -> Result<Integrity> {
        let now = crate::clock::now_ms();
        let found = self.read(move |conn| Ok(check(conn, now))).await?;
        let before = std::mem::replace(&mut *super::lock(&self.inner.integrity), found.clone());
        if !found.is_ok() {
            log_damage(&self.inner.path, &found);
        } else if !before.is_ok() {
            tracing::info!("database integrity check: ok again");
        }
        Ok(found)
    }

    /// Refuses a write while the database is damaged, once the first check
    /// has run.
    pub(super) async fn refuse_if_damaged(&self) -> Result<()> {
        if !*self.inner.first_check.borrow() {
            self.first_integrity_check().await;
        }
        let integrity = super::lock(&self.inner.integrity);
        if integrity.is_ok() {
            Ok(())
        } else {
            Err(Error::DamagedDatabase {
                tables: integrity.damaged.join(", "),
            })
        }
    }
}

pub(super) fn log_damage(path: &std::path::Path, found: &Integrity) {
    tracing::error!(
        database = %path.display(),
        tables = %found.damaged.join(", "),
        problems = %found.problems.join("; "),
        "the database is damaged: writes are refused. Restore the newest verified backup with `yui restore`, then let the peers refill the shared records (docs/operations.md 17)"
    );
}
