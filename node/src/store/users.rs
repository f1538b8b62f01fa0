//! The accounts' SQL: users, login failures, sessions, API tokens, feed
//! tokens and each user's last dashboard visit, over
//! the accounts' own connection (so `yui user …` runs beside `yui serve`).
//! Methods take and return plain values; roles are their names, and every
//! rule (lock-out, expiry, who may do what) is `accounts`' to apply.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use super::audit::{AUDIT_TABLE, AuditEntry, insert_audit, read_audit_log};
use crate::error::Result;

const USERS_TABLES: &str = "
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    last_login_at INTEGER
) STRICT;
CREATE TABLE IF NOT EXISTS login_failures (
    name TEXT PRIMARY KEY,
    failures INTEGER NOT NULL,
    last_failure_at INTEGER NOT NULL,
    locked_until INTEGER
) STRICT;
CREATE TABLE IF NOT EXISTS sessions (
    id_hash BLOB PRIMARY KEY,
    user TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS sessions_by_user ON sessions (user);
CREATE TABLE IF NOT EXISTS api_tokens (
    token_hash BLOB PRIMARY KEY,
    user TEXT NOT NULL,
    role TEXT NOT NULL,
    label TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    UNIQUE (user, label)
) STRICT;
CREATE TABLE IF NOT EXISTS feed_tokens (
    token_hash BLOB PRIMARY KEY,
    user TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS console_visits (
    user TEXT PRIMARY KEY,
    feed_epoch INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    at INTEGER NOT NULL
) STRICT;
";

/// A user as listed: (name, role, created_at, last_login_at, locked_until).
pub type UserRow = (String, String, i64, Option<i64>, Option<i64>);

/// The accounts' own connection to the node's database.
pub struct UsersDb {
    conn: Mutex<Connection>,
}

impl UsersDb {
    /// Opens the accounts tables in the Yui database at `db`, creating them
    /// if needed.
    pub fn open(db: &Path) -> Result<UsersDb> {
        // Fails unless `db` is an existing Yui database: never create one here.
        super::stored_actor(db)?;
        let conn = Connection::open_with_flags(
            db,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        // `yui user …` writes while `yui serve` runs: wait for its locks.
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(USERS_TABLES)?;
        conn.execute_batch(AUDIT_TABLE)?;
        Ok(UsersDb {
            conn: Mutex::new(conn),
        })
    }

    /// Runs `f` with the connection held: what it does, no other caller
    /// of this handle sees half done. Blocking; call it off the async workers.
    pub fn with<T>(&self, f: impl FnOnce(&UsersConn<'_>) -> Result<T>) -> Result<T> {
        f(&UsersConn(&lock(&self.conn)))
    }
}

/// The connection, held: one method per statement.
pub struct UsersConn<'c>(&'c Connection);

impl UsersConn<'_> {
    /// Runs `f` in one transaction, committed if it returns `Ok`.
    pub fn transaction<T>(&self, f: impl FnOnce(&UsersConn<'_>) -> Result<T>) -> Result<T> {
        let tx = self.0.unchecked_transaction()?;
        let out = f(&UsersConn(&tx))?;
        tx.commit()?;
        Ok(out)
    }

    pub fn insert_audit(
        &self,
        now: i64,
        user: &str,
        action: &str,
        target: &str,
        detail: &str,
    ) -> Result<()> {
        insert_audit(self.0, now, user, action, target, detail)
    }

    /// The newest `limit` audit entries, newest first.
    pub fn audit_log(&self, limit: i64) -> Result<Vec<AuditEntry>> {
        read_audit_log(self.0, limit)
    }

    /// A user's role, by name.
    pub fn role_of(&self, name: &str) -> Result<Option<String>> {
        Ok(self
            .0
            .query_row("SELECT role FROM users WHERE name = ?1", [name], |r| {
                r.get::<_, String>(0)
            })
            .optional()?)
    }

    pub fn admin_count(&self) -> Result<i64> {
        Ok(self
            .0
            .query_row("SELECT count(*) FROM users WHERE role = 'admin'", [], |r| {
                r.get(0)
            })?)
    }

    pub fn users(&self) -> Result<Vec<UserRow>> {
        let mut stmt = self.0.prepare(
            "SELECT u.name, u.role, u.created_at, u.last_login_at, f.locked_until
             FROM users u LEFT JOIN login_failures f ON f.name = u.name ORDER BY u.name",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, Option<i64>>(3)?,
                r.get::<_, Option<i64>>(4)?,
            ))
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// Adds a user; `false` if the name is taken.
    pub fn add_user(&self, name: &str, role: &str, password_hash: &str, now: i64) -> Result<bool> {
        let added = self.0.execute(
            "INSERT INTO users (name, role, password_hash, created_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (name) DO NOTHING",
            params![name, role, password_hash, now],
        )?;
        Ok(added > 0)
    }

    /// Deletes a user row (their sessions, tokens and failures are separate).
    pub fn delete_user(&self, name: &str) -> Result<()> {
        self.0
            .execute("DELETE FROM users WHERE name = ?1", [name])?;
        Ok(())
    }

    pub fn password_hash(&self, name: &str) -> Result<Option<String>> {
        Ok(self
            .0
            .query_row(
                "SELECT password_hash FROM users WHERE name = ?1",
                [name],
                |r| r.get::<_, String>(0),
            )
            .optional()?)
    }

    /// Sets a password hash; `false` if there is no such user.
    pub fn set_password_hash(&self, name: &str, password_hash: &str) -> Result<bool> {
        let changed = self.0.execute(
            "UPDATE users SET password_hash = ?1 WHERE name = ?2",
            params![password_hash, name],
        )?;
        Ok(changed > 0)
    }

    pub fn set_role(&self, name: &str, role: &str) -> Result<()> {
        self.0.execute(
            "UPDATE users SET role = ?1 WHERE name = ?2",
            params![role, name],
        )?;
        Ok(())
    }

    pub fn set_last_login(&self, name: &str, now: i64) -> Result<()> {
        self.0.execute(
            "UPDATE users SET last_login_at = ?1 WHERE name = ?2",
            params![now, name],
        )?;
        Ok(())
    }

    /// When `name` is locked out until, if it has a lock-out row.
    pub fn locked_until(&self, name: &str) -> Result<Option<i64>> {
        Ok(self
            .0
            .query_row(
                "SELECT locked_until FROM login_failures WHERE name = ?1",
                [name],
                |r| r.get(0),
            )
            .optional()?
            .flatten())
    }

    /// Forgets failure counts last bumped before `before` and not locked
    /// out at `now`.
    pub fn forget_failures(&self, before: i64, now: i64) -> Result<()> {
        self.0.execute(
            "DELETE FROM login_failures WHERE last_failure_at < ?1 AND coalesce(locked_until, 0) < ?2",
            params![before, now],
        )?;
        Ok(())
    }

    /// Counts one failed login; returns the failures in a row. A lock-out
    /// that has run out starts the count again.
    pub fn count_failure(&self, name: &str, now: i64) -> Result<i64> {
        Ok(self.0.query_row(
            "INSERT INTO login_failures (name, failures, last_failure_at) VALUES (?1, 1, ?2)
             ON CONFLICT (name) DO UPDATE SET
                 failures = CASE WHEN locked_until IS NOT NULL THEN 1 ELSE failures + 1 END,
                 locked_until = NULL,
                 last_failure_at = excluded.last_failure_at
             RETURNING failures",
            params![name, now],
            |r| r.get(0),
        )?)
    }

    pub fn lock_out(&self, name: &str, until: i64) -> Result<()> {
        self.0.execute(
            "UPDATE login_failures SET locked_until = ?1 WHERE name = ?2",
            params![until, name],
        )?;
        Ok(())
    }

    pub fn clear_failures(&self, name: &str) -> Result<()> {
        self.0
            .execute("DELETE FROM login_failures WHERE name = ?1", [name])?;
        Ok(())
    }

    /// A session by the hash of its id: (user, created_at, last_seen_at,
    /// the user's role).
    pub fn session(&self, id_hash: &[u8]) -> Result<Option<(String, i64, i64, String)>> {
        Ok(self
            .0
            .query_row(
                "SELECT s.user, s.created_at, s.last_seen_at, u.role
                 FROM sessions s JOIN users u ON u.name = s.user
                 WHERE s.id_hash = ?1",
                [id_hash],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()?)
    }

    pub fn insert_session(&self, id_hash: &[u8], user: &str, now: i64) -> Result<()> {
        self.0.execute(
            "INSERT INTO sessions (id_hash, user, created_at, last_seen_at) VALUES (?1, ?2, ?3, ?3)",
            params![id_hash, user, now],
        )?;
        Ok(())
    }

    pub fn touch_session(&self, id_hash: &[u8], now: i64) -> Result<()> {
        self.0.execute(
            "UPDATE sessions SET last_seen_at = ?1 WHERE id_hash = ?2",
            params![now, id_hash],
        )?;
        Ok(())
    }

    pub fn delete_session(&self, id_hash: &[u8]) -> Result<()> {
        self.0
            .execute("DELETE FROM sessions WHERE id_hash = ?1", [id_hash])?;
        Ok(())
    }

    /// Deletes a session and returns whose it was.
    pub fn end_session(&self, id_hash: &[u8]) -> Result<Option<String>> {
        Ok(self
            .0
            .query_row(
                "DELETE FROM sessions WHERE id_hash = ?1 RETURNING user",
                [id_hash],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Deletes the sessions last used before `seen_before` or made before
    /// `created_before`.
    pub fn sweep_sessions(&self, seen_before: i64, created_before: i64) -> Result<()> {
        self.0.execute(
            "DELETE FROM sessions WHERE last_seen_at < ?1 OR created_at < ?2",
            params![seen_before, created_before],
        )?;
        Ok(())
    }

    pub fn delete_sessions_of(&self, user: &str) -> Result<()> {
        self.0
            .execute("DELETE FROM sessions WHERE user = ?1", [user])?;
        Ok(())
    }

    /// A token by the hash of its secret: (user, token role, user role).
    pub fn token(&self, token_hash: &[u8]) -> Result<Option<(String, String, String)>> {
        Ok(self
            .0
            .query_row(
                "SELECT t.user, t.role, u.role FROM api_tokens t
                 JOIN users u ON u.name = t.user WHERE t.token_hash = ?1",
                [token_hash],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?)
    }

    /// Adds a token; `false` if the user already has one with this label.
    pub fn add_token(
        &self,
        token_hash: &[u8],
        user: &str,
        role: &str,
        label: &str,
        now: i64,
    ) -> Result<bool> {
        let added = self.0.execute(
            "INSERT INTO api_tokens (token_hash, user, role, label, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (user, label) DO NOTHING",
            params![token_hash, user, role, label, now],
        )?;
        Ok(added > 0)
    }

    /// Removes a token by user and label; `false` if there was none.
    pub fn remove_token(&self, user: &str, label: &str) -> Result<bool> {
        let removed = self.0.execute(
            "DELETE FROM api_tokens WHERE user = ?1 AND label = ?2",
            params![user, label],
        )?;
        Ok(removed > 0)
    }

    pub fn delete_tokens_of(&self, user: &str) -> Result<()> {
        self.0
            .execute("DELETE FROM api_tokens WHERE user = ?1", [user])?;
        Ok(())
    }

    /// A user's tokens, oldest first: (label, role, created_at).
    pub fn tokens_of(&self, user: &str) -> Result<Vec<(String, String, i64)>> {
        let mut stmt = self.0.prepare(
            "SELECT label, role, created_at FROM api_tokens WHERE user = ?1 ORDER BY created_at",
        )?;
        let rows = stmt.query_map([user], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }
}

// Following other towns (issue 16): feed tokens and dashboard visits.
impl UsersConn<'_> {
    /// The user a feed token (by its hash) belongs to; none once the user
    /// is gone.
    pub fn feed_token_user(&self, token_hash: &[u8]) -> Result<Option<String>> {
        Ok(self
            .0
            .query_row(
                "SELECT t.user FROM feed_tokens t JOIN users u ON u.name = t.user
                 WHERE t.token_hash = ?1",
                [token_hash],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Gives `user` this feed token, replacing the one they had; returns
    /// whether they had one.
    pub fn set_feed_token(&self, user: &str, token_hash: &[u8], now: i64) -> Result<bool> {
        let had = self.delete_feed_token(user)?;
        self.0.execute(
            "INSERT INTO feed_tokens (token_hash, user, created_at) VALUES (?1, ?2, ?3)",
            params![token_hash, user, now],
        )?;
        Ok(had)
    }

    /// Removes `user`'s feed token; `false` if there was none.
    pub fn delete_feed_token(&self, user: &str) -> Result<bool> {
        let removed = self
            .0
            .execute("DELETE FROM feed_tokens WHERE user = ?1", [user])?;
        Ok(removed > 0)
    }

    /// When `user`'s feed token was made, if they have one.
    pub fn feed_token_created(&self, user: &str) -> Result<Option<i64>> {
        Ok(self
            .0
            .query_row(
                "SELECT created_at FROM feed_tokens WHERE user = ?1",
                [user],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Stores `user`'s dashboard visit at feed position (`epoch`, `seq`)
    /// and returns the previous one's (epoch, seq, at), if any.
    pub fn swap_visit(
        &self,
        user: &str,
        epoch: i64,
        seq: i64,
        now: i64,
    ) -> Result<Option<(i64, i64, i64)>> {
        let previous = self
            .0
            .query_row(
                "SELECT feed_epoch, seq, at FROM console_visits WHERE user = ?1",
                [user],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        self.0.execute(
            "INSERT INTO console_visits (user, feed_epoch, seq, at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (user) DO UPDATE SET
                 feed_epoch = excluded.feed_epoch, seq = excluded.seq, at = excluded.at",
            params![user, epoch, seq, now],
        )?;
        Ok(previous)
    }

    pub fn delete_visits_of(&self, user: &str) -> Result<()> {
        self.0
            .execute("DELETE FROM console_visits WHERE user = ?1", [user])?;
        Ok(())
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere leaves the connection usable: SQLite rolled back.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users_db() -> (tempfile::TempDir, UsersDb) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("yui.sqlite");
        super::super::Store::create_database(&path, "tateshina").expect("database");
        let db = UsersDb::open(&path).expect("opened");
        (dir, db)
    }

    #[test]
    fn a_transaction_that_fails_leaves_nothing_behind() {
        let (_dir, db) = users_db();
        let failed = db.with(|conn| {
            conn.transaction(|tx| {
                tx.add_user("sato", "admin", "hash", 1)?;
                tx.insert_audit(1, "cli", "user.add", "sato", "")?;
                Err::<(), _>(crate::Error::Conflict("stop".into()))
            })
        });
        assert!(failed.is_err());
        db.with(|conn| {
            assert_eq!(conn.role_of("sato")?, None);
            assert!(conn.audit_log(10)?.is_empty());
            Ok(())
        })
        .expect("read");
    }

    #[test]
    fn failures_count_up_and_a_lock_out_restarts_the_count() {
        let (_dir, db) = users_db();
        db.with(|conn| {
            assert_eq!(conn.count_failure("sato", 1)?, 1);
            assert_eq!(conn.count_failure("sato", 2)?, 2);
            conn.lock_out("sato", 100)?;
            assert_eq!(conn.locked_until("sato")?, Some(100));
            assert_eq!(conn.count_failure("sato", 200)?, 1);
            assert_eq!(conn.locked_until("sato")?, None);
            Ok(())
        })
        .expect("counted");
    }

    #[test]
    fn a_feed_token_is_one_per_user_and_dies_with_its_user() {
        let (_dir, db) = users_db();
        db.with(|conn| {
            conn.add_user("sato", "viewer", "hash", 1)?;
            assert!(!conn.set_feed_token("sato", b"first", 2)?);
            assert_eq!(conn.feed_token_user(b"first")?.as_deref(), Some("sato"));
            // A new token replaces the old one.
            assert!(conn.set_feed_token("sato", b"second", 3)?);
            assert_eq!(conn.feed_token_user(b"first")?, None);
            assert_eq!(conn.feed_token_created("sato")?, Some(3));
            // A token whose user is gone opens nothing, even left behind.
            conn.delete_user("sato")?;
            assert_eq!(conn.feed_token_user(b"second")?, None);
            Ok(())
        })
        .expect("feed tokens");
    }

    #[test]
    fn a_visit_returns_the_previous_one() {
        let (_dir, db) = users_db();
        db.with(|conn| {
            assert_eq!(conn.swap_visit("sato", 7, 10, 100)?, None);
            assert_eq!(conn.swap_visit("sato", 7, 15, 200)?, Some((7, 10, 100)));
            assert_eq!(conn.swap_visit("sato", 7, 15, 300)?, Some((7, 15, 200)));
            conn.delete_visits_of("sato")?;
            assert_eq!(conn.swap_visit("sato", 7, 20, 400)?, None);
            Ok(())
        })
        .expect("visits");
    }

    #[test]
    fn a_missing_database_is_refused_not_created() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(UsersDb::open(&dir.path().join("missing.sqlite")).is_err());
        assert!(!dir.path().join("missing.sqlite").exists());
    }
}
