//! Backup and restore of the whole database file, and reading the actor id
//! of a stopped node's database. These work on files, not on a running
//! `Store`.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};
use yui_protocol::Millis;

use super::own_history::FORMER_ACTORS;
use super::schema::{corrupt, get_meta, identify, new_actor_hex, new_epoch, set_meta};
use super::writer::open_reader;
use crate::error::{Error, Result};
use crate::fsio::{PrivateDir, sync_parent_dir, write_private};

/// Writes a consistent copy of the database to `dest` (which must not exist)
/// and verifies it: the source passes `quick_check` first, the copy
/// `integrity_check` after; a failed copy is removed. The copy is
/// readable by its owner only, in a directory no other user can write
/// ([`PrivateDir`]: created now, or the user's own with mode 0700). Safe
/// while the node is serving: the copy is one read transaction's snapshot.
pub fn backup(db: &Path, dest: &Path) -> Result<u64> {
    let name = dest
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| {
            Error::Config(format!(
                "{} is not a file name (or not UTF-8); give the backup file, e.g. /var/backups/yui/tateshina.backup",
                dest.display()
            ))
        })?;
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let dir = PrivateDir::open(parent, "yui backup")?;
    if dir.holds(name) {
        return Err(Error::Config(format!(
            "{} already exists; choose a new file name",
            dest.display()
        )));
    }
    let conn = open_reader(db)?;
    identify(&conn, db)?;
    // A damaged database can copy "successfully" into a whole-looking file
    // that silently lacks what the damage hid: check the source first.
    let source = super::integrity::check(&conn, crate::clock::now_ms());
    if !source.is_ok() {
        return Err(Error::Config(format!(
            "the database {} is damaged (tables: {}; {}); no backup was written, as it would not be a faithful copy. Keep your earlier backups: restore the newest verified one (`yui status` names it) and let the peers refill the shared records (docs/operations.md 17)",
            db.display(),
            source.damaged.join(", "),
            source.problems.first().map_or("", String::as_str)
        )));
    }
    // Created first, new and with mode 0600: a backup holds personal data,
    // and SQLite then writes into this file, not through a planted link.
    drop(dir.create_file(name)?);
    let target = dest
        .to_str()
        .ok_or_else(|| Error::Config("backup path is not UTF-8".into()))?;
    if let Err(e) = conn.execute("VACUUM INTO ?1", [target]) {
        let _ = std::fs::remove_file(dest);
        return Err(e.into());
    }
    // The copy is only a backup once SQLite's full integrity check passes
    // on it as written to disk.
    let verdict = Connection::open_with_flags(dest, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .and_then(|copy| {
            let mut stmt = copy.prepare("PRAGMA integrity_check(20)")?;
            stmt.query_map([], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<String>>>()
        })
        .map_err(|e| e.to_string());
    match verdict {
        Ok(lines) if lines.len() == 1 && lines[0] == "ok" => {}
        other => {
            let _ = std::fs::remove_file(dest);
            let detail = match other {
                Ok(lines) => lines.join("; "),
                Err(e) => e,
            };
            return Err(Error::Config(format!(
                "the copy written to {} failed SQLite's integrity check ({detail}) and was removed; no backup was made. Check the disk of {} and of the backup, then run `yui backup` again",
                dest.display(),
                db.display()
            )));
        }
    }
    Ok(std::fs::metadata(dest).map(|m| m.len()).unwrap_or(0))
}

/// Replaces the database at `db` with the backup at `src`. The node must be
/// stopped. The restored database gets a **new actor id**: the old one may
/// have written changes after the backup was taken, and reusing it would fork
/// documents for good. The database it replaces is kept beside it (returned).
pub fn restore(db: &Path, src: &Path, town: &str, now: Millis) -> Result<Option<PathBuf>> {
    let unusable = |e: Error| {
        let detail = match e {
            Error::CorruptDatabase { detail, .. } => detail,
            other => other.to_string(),
        };
        Error::Config(format!(
            "{} is not a usable Yui backup ({detail}); nothing was changed",
            src.display()
        ))
    };
    if !src.is_file() {
        return Err(Error::Config(format!(
            "backup file {} does not exist",
            src.display()
        )));
    }
    let check = Connection::open_with_flags(src, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| unusable(corrupt(src, e)))?;
    let (backup_town, _) = identify(&check, src).map_err(unusable)?;
    if backup_town != town {
        return Err(Error::Config(format!(
            "{} is a backup of town {backup_town:?}, but this node is {town:?}; nothing was changed",
            src.display()
        )));
    }
    let verdict: String = check
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .map_err(|e| unusable(corrupt(src, e)))?;
    if verdict != "ok" {
        return Err(unusable(corrupt(
            src,
            format!("integrity check: {verdict}"),
        )));
    }
    drop(check);

    let staged = db.with_extension("sqlite.restoring");
    let _ = std::fs::remove_file(&staged);
    write_private(&staged, b"")?;
    std::fs::copy(src, &staged)
        .map_err(|e| Error::Config(format!("copying {}: {e}", src.display())))?;
    // fs::copy takes the backup's mode; the database is owner-only.
    std::fs::set_permissions(&staged, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .map_err(|e| Error::Config(format!("setting permissions: {e}")))?;
    {
        let conn = Connection::open(&staged)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // Changes under the actor ids this node had are its own still: it
        // signs those made before signatures (`own_history`).
        let mut former = actors_of(&conn);
        if let Ok(replaced) = open_reader(db) {
            former.extend(actors_of(&replaced));
        }
        former.sort();
        former.dedup();
        set_meta(&conn, FORMER_ACTORS, &former.join(","))?;
        set_meta(&conn, "actor", &new_actor_hex())?;
        set_meta(&conn, "restored_at", &now.to_string())?;
        // Its feed positions will be reused: peers must read it from the start.
        set_meta(&conn, "feed_epoch", &new_epoch().to_string())?;
        conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")?;
    }
    let mut kept = None;
    if db.exists() {
        // Fold the old WAL into the old file, so the file kept is complete and
        // no stale WAL is left to be replayed into the restored one.
        if let Ok(old) = Connection::open(db) {
            let _ = old.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)");
        }
        let keep = db.with_extension(format!("sqlite.before-restore-{now}"));
        std::fs::rename(db, &keep)
            .map_err(|e| Error::Config(format!("keeping the old database: {e}")))?;
        kept = Some(keep);
    }
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
        let _ = std::fs::remove_file(format!("{}{suffix}", staged.display()));
    }
    std::fs::rename(&staged, db)
        .map_err(|e| Error::Config(format!("installing the restored database: {e}")))?;
    // Make the renames themselves durable.
    sync_parent_dir(db);
    Ok(kept)
}

/// A database's actor id and the ones it had before (hex); none if
/// unreadable.
fn actors_of(conn: &Connection) -> Vec<String> {
    let mut actors = Vec::new();
    for key in ["actor", FORMER_ACTORS] {
        if let Ok(Some(value)) = get_meta(conn, key) {
            actors.extend(
                value
                    .split(',')
                    .filter(|a| !a.is_empty())
                    .map(str::to_owned),
            );
        }
    }
    actors
}

/// The actor id stored in a database, hex (for `status` and tests).
pub fn stored_actor(db: &Path) -> Result<String> {
    let conn = open_reader(db)?;
    let (_, actor) = identify(&conn, db)?;
    Ok(actor.to_hex_string())
}
