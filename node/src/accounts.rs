//! Local user accounts: users and their roles, password login with lock-out,
//! console sessions, per-user API tokens, and the local audit log.
//!
//! Everything here stays in the town. The tables live in the node's SQLite
//! file (so `yui backup` and `yui restore` carry them) but are written
//! through this module's own connection, never through the record store, and
//! nothing here reaches an Automerge document: peers see the town that made
//! a change, never the person.
//!
//! Secrets are stored only as hashes: passwords as Argon2id PHC strings,
//! session ids and API tokens as SHA-256 (they are 32 random bytes, so a
//! fast hash is enough). A session's CSRF token is derived from its id, so
//! a copy of the database (a backup) holds nothing that opens a session.
//!
//! SQLite and Argon2 work runs in `spawn_blocking`; at most
//! [`CONCURRENT_HASHES`] password hashes run at once, so a burst of logins
//! cannot take every core or much memory.

use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use argon2::{Algorithm, Argon2, Params, PasswordHash, PasswordHasher, PasswordVerifier, Version};
use rand::RngCore;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use crate::datadir::DataDir;
use crate::error::{Error, Result};

/// The cookie that carries a console session id.
pub const SESSION_COOKIE: &str = "yui_session";
/// Failed logins in a row (per login name) that lock the name out.
pub const MAX_FAILED_LOGINS: i64 = 5;
/// How long a lock-out lasts, in seconds.
pub const LOCKOUT_SECS: i64 = 15 * 60;
/// A session unused this long ends (sliding expiry), in seconds.
pub const SESSION_IDLE_SECS: i64 = 12 * 3600;
/// No session lasts longer than this after login, used or not, in seconds.
pub const SESSION_MAX_SECS: i64 = 7 * 24 * 3600;
pub const MIN_PASSWORD_CHARS: usize = 10;
/// Longer passwords are refused: they would only make hashing slower.
pub const MAX_PASSWORD_BYTES: usize = 1024;
/// The principal the node's own API token (`DATA_DIR/api-token`) stands for.
pub const NODE_TOKEN_USER: &str = "node-token";
/// The principal the audit log names for changes made with `yui` commands
/// (whoever can run them can read the data directory anyway).
pub const CLI_USER: &str = "cli";
/// Argon2id memory (KiB), passes and lanes: OWASP's first recommended set
/// (19 MiB, 2 passes, 1 lane), ~20 ms per hash on this kind of machine.
pub const ARGON2_MEMORY_KIB: u32 = 19 * 1024;
pub const ARGON2_PASSES: u32 = 2;
pub const ARGON2_LANES: u32 = 1;
/// Password hashes allowed to run at the same time (19 MiB each).
pub const CONCURRENT_HASHES: usize = 2;

/// How often a session's last use is written back: sliding expiry does not
/// need a write on every console request.
const TOUCH_EVERY_MS: i64 = 60_000;
/// Failure counts of names nobody tried for this long are forgotten.
const FORGET_FAILURES_MS: i64 = 24 * 3600 * 1000;
const MAX_NAME_CHARS: usize = 32;
const MAX_LABEL_CHARS: usize = 64;

const SCHEMA: &str = "
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
CREATE TABLE IF NOT EXISTS audit_log (
    id INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    user TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    detail TEXT NOT NULL
) STRICT;
";

/// What a user may do. Ordered: a higher role may do everything a lower one may.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads records, search, history and status.
    Viewer,
    /// Also creates, updates and deletes records.
    Editor,
    /// Also manages peers, users, tokens, revocations and sync.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Editor => "editor",
            Role::Admin => "admin",
        }
    }
    pub fn can_write_records(self) -> bool {
        self >= Role::Editor
    }
    pub fn can_administer(self) -> bool {
        self == Role::Admin
    }
}

impl FromStr for Role {
    type Err = Error;
    fn from_str(s: &str) -> Result<Role> {
        match s {
            "viewer" => Ok(Role::Viewer),
            "editor" => Ok(Role::Editor),
            "admin" => Ok(Role::Admin),
            other => Err(Error::bad_request(
                "invalid_role",
                format!(
                    "unknown role {:?}; the roles are viewer, editor and admin",
                    other.chars().take(40).collect::<String>()
                ),
            )),
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who is acting: a local user (through a session or one of their tokens),
/// the node token, or the command line.
#[derive(Clone, Debug, Serialize)]
pub struct Principal {
    pub user: String,
    pub role: Role,
}

#[derive(Clone, Debug)]
pub struct Session {
    /// The cookie value. Only its hash is stored.
    pub id: String,
    /// The token every console form must echo back.
    pub csrf_token: String,
    pub principal: Principal,
    /// Unix seconds; moves forward with use, up to the absolute cap.
    pub expires_at: i64,
}

#[derive(Debug)]
pub enum LoginError {
    /// Unknown user or wrong password: the caller cannot tell which.
    BadCredentials,
    LockedOut {
        retry_after_secs: u64,
    },
    Internal(String),
}

impl std::fmt::Display for LoginError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoginError::BadCredentials => f.write_str("wrong user name or password"),
            LoginError::LockedOut { retry_after_secs } => write!(
                f,
                "too many failed logins; try again in {} minutes",
                retry_after_secs.div_ceil(60)
            ),
            LoginError::Internal(e) => write!(f, "login failed: {e}"),
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct UserInfo {
    pub name: String,
    pub role: Role,
    pub created_at: String,
    pub last_login_at: Option<String>,
    /// Set while the name is locked out after failed logins.
    pub locked_until: Option<String>,
}

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

/// Milliseconds since the epoch. Injectable so tests can move time.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

pub fn system_clock() -> Clock {
    Arc::new(crate::store::now_ms)
}

/// Handle to the accounts tables; cheap to clone.
#[derive(Clone)]
pub struct Accounts {
    inner: Arc<Inner>,
}

struct Inner {
    conn: Mutex<Connection>,
    /// In a serving node, audit entries go through the store's writer: one
    /// writer on the database (no lock waits between two connections) and
    /// group commit with the records they describe.
    audit_via: OnceLock<crate::store::Store>,
    node_token: String,
    clock: Clock,
    hashing: Semaphore,
    /// Verified against when the user does not exist, so an unknown name
    /// costs the same time as a wrong password.
    dummy_hash: OnceLock<String>,
}

/// Compares in constant time, so response timing reveals nothing of a secret.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Accounts {
    /// Opens the accounts tables in the data directory's database.
    pub fn open(data_dir: &DataDir) -> Result<Accounts> {
        let token = data_dir.read_token()?;
        Accounts::open_with_clock(&data_dir.db_path(), token, system_clock())
    }

    /// Opens the accounts tables in the Yui database at `db`, creating them
    /// if needed. `node_token` is the node's own API token.
    pub fn open_with_clock(db: &Path, node_token: String, clock: Clock) -> Result<Accounts> {
        // Fails unless `db` is an existing Yui database: never create one here.
        crate::store::stored_actor(db)?;
        let conn = Connection::open_with_flags(
            db,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        // `yui user …` writes while `yui serve` runs: wait for its locks.
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(SCHEMA)?;
        Ok(Accounts {
            inner: Arc::new(Inner {
                conn: Mutex::new(conn),
                audit_via: OnceLock::new(),
                node_token,
                clock,
                hashing: Semaphore::new(CONCURRENT_HASHES),
                dummy_hash: OnceLock::new(),
            }),
        })
    }

    fn now(&self) -> i64 {
        (self.inner.clock)()
    }

    /// Writes audit entries through `store`'s writer from now on.
    pub fn audit_through(&self, store: crate::store::Store) {
        let _ = self.inner.audit_via.set(store);
    }

    /// Runs `f` with the connection and the current time, off the async workers.
    async fn with_conn<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection, i64) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let now = (inner.clock)();
            f(&lock(&inner.conn), now)
        })
        .await
        .map_err(|e| Error::Storage(format!("accounts task failed: {e}")))?
    }

    /// Hashes a password on a blocking thread, within the hashing limit.
    async fn hash_password(&self, password: &str) -> Result<String> {
        let _permit = self
            .inner
            .hashing
            .acquire()
            .await
            .map_err(|_| Error::ShuttingDown)?;
        let password = password.to_owned();
        tokio::task::spawn_blocking(move || hash_password(&password))
            .await
            .map_err(|e| Error::Storage(format!("hashing task failed: {e}")))?
    }

    /// Checks a password and opens a session. Audits `login` and
    /// `login.failed`. After [`MAX_FAILED_LOGINS`] failures in a row the
    /// name is locked out for [`LOCKOUT_SECS`], whether or not a user has
    /// that name, so lock-outs reveal no more than failures do.
    pub async fn login(&self, user: &str, password: &str) -> Result<Session, LoginError> {
        let _permit = self
            .inner
            .hashing
            .acquire()
            .await
            .map_err(|_| LoginError::Internal("shutting down".into()))?;
        let inner = self.inner.clone();
        let name: String = user.chars().take(MAX_NAME_CHARS * 2).collect();
        let password = password.to_owned();
        tokio::task::spawn_blocking(move || login_blocking(&inner, &name, &password))
            .await
            .map_err(|e| LoginError::Internal(format!("login task failed: {e}")))?
    }

    /// The live session with this id, or `None` if it is unknown or expired.
    /// Using a session extends it by [`SESSION_IDLE_SECS`], up to
    /// [`SESSION_MAX_SECS`] after login.
    pub async fn session(&self, id: &str) -> Option<Session> {
        let id = id.to_owned();
        let found = self
            .with_conn(move |conn, now| {
                let id_hash = sha256(id.as_bytes());
                let row = conn
                    .query_row(
                        "SELECT s.user, s.created_at, s.last_seen_at, u.role
                         FROM sessions s JOIN users u ON u.name = s.user
                         WHERE s.id_hash = ?1",
                        [&id_hash],
                        |r| {
                            Ok((
                                r.get::<_, String>(0)?,
                                r.get::<_, i64>(1)?,
                                r.get::<_, i64>(2)?,
                                r.get::<_, String>(3)?,
                            ))
                        },
                    )
                    .optional()?;
                let Some((user, created_at, last_seen_at, role)) = row else {
                    return Ok(None);
                };
                if now >= session_expiry(created_at, last_seen_at) {
                    conn.execute("DELETE FROM sessions WHERE id_hash = ?1", [&id_hash])?;
                    return Ok(None);
                }
                let mut seen = last_seen_at;
                if now - last_seen_at >= TOUCH_EVERY_MS {
                    conn.execute(
                        "UPDATE sessions SET last_seen_at = ?1 WHERE id_hash = ?2",
                        params![now, id_hash],
                    )?;
                    seen = now;
                }
                Ok(Some(Session {
                    csrf_token: csrf_token_for(&id),
                    id,
                    principal: Principal {
                        user,
                        role: role.parse()?,
                    },
                    expires_at: session_expiry(created_at, seen).div_euclid(1000),
                }))
            })
            .await;
        found.unwrap_or_else(|e| {
            tracing::error!(error = %e, "reading a session");
            None
        })
    }

    /// Ends a session (audited as `logout`). Unknown ids are ignored.
    pub async fn logout(&self, id: &str) {
        let id_hash = sha256(id.as_bytes());
        let ended = self
            .with_conn(move |conn, now| {
                let user: Option<String> = conn
                    .query_row(
                        "DELETE FROM sessions WHERE id_hash = ?1 RETURNING user",
                        [&id_hash],
                        |r| r.get(0),
                    )
                    .optional()?;
                if let Some(user) = &user {
                    insert_audit(conn, now, user, "logout", user, "")?;
                }
                Ok(())
            })
            .await;
        if let Err(e) = ended {
            tracing::error!(error = %e, "ending a session");
        }
    }

    /// The principal a bearer token stands for: the node token, or a user's
    /// token (whose role is capped by the user's current role).
    pub async fn principal_for_token(&self, bearer: &str) -> Option<Principal> {
        if constant_time_eq(self.inner.node_token.as_bytes(), bearer.as_bytes()) {
            return Some(Principal {
                user: NODE_TOKEN_USER.to_owned(),
                role: Role::Admin,
            });
        }
        // Not one of ours: no need to ask the database.
        if bearer.len() != 64 || !bearer.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let token_hash = sha256(bearer.as_bytes());
        let found = self
            .with_conn(move |conn, _| {
                let row = conn
                    .query_row(
                        "SELECT t.user, t.role, u.role FROM api_tokens t
                         JOIN users u ON u.name = t.user WHERE t.token_hash = ?1",
                        [&token_hash],
                        |r| {
                            Ok((
                                r.get::<_, String>(0)?,
                                r.get::<_, String>(1)?,
                                r.get::<_, String>(2)?,
                            ))
                        },
                    )
                    .optional()?;
                let Some((user, token_role, user_role)) = row else {
                    return Ok(None);
                };
                let role = token_role.parse::<Role>()?.min(user_role.parse()?);
                Ok(Some(Principal { user, role }))
            })
            .await;
        found.unwrap_or_else(|e| {
            tracing::error!(error = %e, "looking up an API token");
            None
        })
    }

    /// Records who did what. Never fails the caller: the change has already
    /// happened, so a failure to record it is logged as an error instead.
    pub async fn audit(&self, principal: &Principal, action: &str, target: &str, detail: &str) {
        let entry = (
            principal.user.clone(),
            action.to_owned(),
            target.to_owned(),
            detail.to_owned(),
        );
        let written = match self.inner.audit_via.get() {
            Some(store) => store.append_audit(self.now(), entry).await,
            None => {
                self.with_conn(move |conn, now| {
                    let (user, action, target, detail) = entry;
                    insert_audit(conn, now, &user, &action, &target, &detail)
                })
                .await
            }
        };
        if let Err(e) = written {
            tracing::error!(error = %e, user = %principal.user, action, target, "could not write the audit log");
        }
    }

    /// Audits an administrator's override of the personal-data guard: the
    /// reason, and the fields, kinds and positions it let through — never
    /// the text itself. Nothing to audit if nothing was found.
    pub async fn audit_override(
        &self,
        principal: &Principal,
        target: &str,
        reason: &str,
        findings: &[yui_protocol::guard::Finding],
    ) {
        if findings.is_empty() {
            return;
        }
        let what: Vec<String> = findings
            .iter()
            .map(|f| format!("{} {} at {}..{}", f.field, f.kind, f.start, f.end))
            .collect();
        let detail = format!("reason: {reason}; findings: {}", what.join(", "));
        self.audit(principal, "personal_data.override", target, &detail)
            .await;
    }

    /// The newest `limit` audit entries, newest first.
    pub async fn audit_log(&self, limit: usize) -> Result<Vec<AuditEntry>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.with_conn(move |conn, _| {
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
        })
        .await
    }

    pub async fn users(&self) -> Result<Vec<UserInfo>> {
        self.with_conn(|conn, now| {
            let mut stmt = conn.prepare(
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
            let mut users = Vec::new();
            for row in rows {
                let (name, role, created_at, last_login_at, locked_until) = row?;
                users.push(UserInfo {
                    name,
                    role: role.parse()?,
                    created_at: yui_protocol::record::format_time(created_at),
                    last_login_at: last_login_at.map(yui_protocol::record::format_time),
                    locked_until: locked_until
                        .filter(|&t| t > now)
                        .map(yui_protocol::record::format_time),
                });
            }
            Ok(users)
        })
        .await
    }

    /// Adds a user. Names are 1–32 of `a-z 0-9 . _ -`, starting with a
    /// letter; passwords have at least [`MIN_PASSWORD_CHARS`] characters.
    pub async fn add_user(&self, name: &str, role: Role, password: &str) -> Result<()> {
        check_user_name(name)?;
        check_password(password)?;
        let hash = self.hash_password(password).await?;
        let name = name.to_owned();
        self.with_conn(move |conn, now| {
            let added = conn.execute(
                "INSERT INTO users (name, role, password_hash, created_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (name) DO NOTHING",
                params![name, role.as_str(), hash, now],
            )?;
            if added == 0 {
                return Err(Error::Conflict(format!(
                    "a user named {name:?} already exists"
                )));
            }
            Ok(())
        })
        .await
    }

    /// Removes a user with their sessions and tokens. Refuses to remove the
    /// last admin, so someone can always manage the node from the console.
    pub async fn remove_user(&self, name: &str) -> Result<()> {
        let name = name.to_owned();
        self.with_conn(move |conn, _| {
            let tx = conn.unchecked_transaction()?;
            let role = user_role(&tx, &name)?;
            if role == Role::Admin && admin_count(&tx)? <= 1 {
                return Err(Error::Conflict(format!(
                    "{name:?} is the last admin; make another user admin first"
                )));
            }
            tx.execute("DELETE FROM sessions WHERE user = ?1", [&name])?;
            tx.execute("DELETE FROM api_tokens WHERE user = ?1", [&name])?;
            tx.execute("DELETE FROM login_failures WHERE name = ?1", [&name])?;
            tx.execute("DELETE FROM users WHERE name = ?1", [&name])?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// Sets a new password, ends the user's sessions and lifts a lock-out.
    pub async fn set_password(&self, name: &str, password: &str) -> Result<()> {
        check_password(password)?;
        let known = name.to_owned();
        self.with_conn(move |conn, _| user_role(conn, &known).map(drop))
            .await?;
        let hash = self.hash_password(password).await?;
        let name = name.to_owned();
        self.with_conn(move |conn, _| {
            let tx = conn.unchecked_transaction()?;
            let changed = tx.execute(
                "UPDATE users SET password_hash = ?1 WHERE name = ?2",
                params![hash, name],
            )?;
            if changed == 0 {
                return Err(no_such_user(&name));
            }
            tx.execute("DELETE FROM sessions WHERE user = ?1", [&name])?;
            tx.execute("DELETE FROM login_failures WHERE name = ?1", [&name])?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// Changes a user's role; their tokens are capped by it at once.
    /// Refuses to demote the last admin.
    pub async fn set_role(&self, name: &str, role: Role) -> Result<()> {
        let name = name.to_owned();
        self.with_conn(move |conn, _| {
            let tx = conn.unchecked_transaction()?;
            let current = user_role(&tx, &name)?;
            if current == Role::Admin && role != Role::Admin && admin_count(&tx)? <= 1 {
                return Err(Error::Conflict(format!(
                    "{name:?} is the last admin; make another user admin first"
                )));
            }
            tx.execute(
                "UPDATE users SET role = ?1 WHERE name = ?2",
                params![role.as_str(), name],
            )?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// Creates an API token for `user` with `role` (at most the user's own)
    /// and returns it; only its SHA-256 is kept, so it cannot be shown again.
    pub async fn create_token(&self, user: &str, role: Role, label: &str) -> Result<String> {
        check_label(label)?;
        let (user, label) = (user.to_owned(), label.to_owned());
        self.with_conn(move |conn, now| {
            let user_role = user_role(conn, &user)?;
            if role > user_role {
                return Err(Error::bad_request(
                    "role_too_high",
                    format!(
                        "{user:?} has the {user_role} role; a token cannot have more ({role} asked)"
                    ),
                ));
            }
            let secret = random_hex();
            let added = conn.execute(
                "INSERT INTO api_tokens (token_hash, user, role, label, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (user, label) DO NOTHING",
                params![sha256(secret.as_bytes()), user, role.as_str(), label, now],
            )?;
            if added == 0 {
                return Err(Error::Conflict(format!(
                    "{user:?} already has a token labelled {label:?}; choose another label or revoke that one"
                )));
            }
            Ok(secret)
        })
        .await
    }

    pub async fn revoke_token(&self, user: &str, label: &str) -> Result<()> {
        let (user, label) = (user.to_owned(), label.to_owned());
        self.with_conn(move |conn, _| {
            let removed = conn.execute(
                "DELETE FROM api_tokens WHERE user = ?1 AND label = ?2",
                params![user, label],
            )?;
            if removed == 0 {
                return Err(Error::NotFound(format!(
                    "{user:?} has no token labelled {label:?}"
                )));
            }
            Ok(())
        })
        .await
    }

    /// The labels, roles and creation times of a user's tokens (never the tokens).
    pub async fn tokens(&self, user: &str) -> Result<Vec<(String, Role, String)>> {
        let user = user.to_owned();
        self.with_conn(move |conn, _| {
            user_role(conn, &user)?;
            let mut stmt = conn.prepare(
                "SELECT label, role, created_at FROM api_tokens WHERE user = ?1 ORDER BY created_at",
            )?;
            let rows = stmt.query_map([&user], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })?;
            let mut tokens = Vec::new();
            for row in rows {
                let (label, role, at) = row?;
                tokens.push((label, role.parse()?, yui_protocol::record::format_time(at)));
            }
            Ok(tokens)
        })
        .await
    }

    /// Milliseconds since the epoch by this handle's clock.
    pub fn clock_ms(&self) -> i64 {
        self.now()
    }
}

fn login_blocking(inner: &Inner, name: &str, password: &str) -> Result<Session, LoginError> {
    let internal = |e: Error| LoginError::Internal(e.to_string());
    let now = (inner.clock)();
    let stored_hash = {
        let conn = lock(&inner.conn);
        let locked_until: Option<i64> = conn
            .query_row(
                "SELECT locked_until FROM login_failures WHERE name = ?1",
                [name],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| internal(e.into()))?
            .flatten();
        if let Some(until) = locked_until.filter(|&t| t > now) {
            return Err(LoginError::LockedOut {
                retry_after_secs: u64::try_from((until - now + 999) / 1000).unwrap_or(1),
            });
        }
        conn.query_row(
            "SELECT password_hash FROM users WHERE name = ?1",
            [name],
            |r| r.get::<_, String>(0),
        )
        .optional()
        .map_err(|e| internal(e.into()))?
    };
    // The hash work happens without the connection lock held.
    let dummy = inner
        .dummy_hash
        .get_or_init(|| hash_password(&random_hex()).unwrap_or_default());
    let matches = password.len() <= MAX_PASSWORD_BYTES
        && verify_password(password, stored_hash.as_deref().unwrap_or(dummy))
        && stored_hash.is_some();

    let conn = lock(&inner.conn);
    if !matches {
        let detail = if stored_hash.is_some() {
            "wrong password"
        } else {
            "unknown user"
        };
        let locked = record_failure(&conn, name, now).map_err(internal)?;
        let detail = if locked {
            format!(
                "{detail}; locked out for {} minutes after {MAX_FAILED_LOGINS} failures in a row",
                LOCKOUT_SECS / 60
            )
        } else {
            detail.to_owned()
        };
        insert_audit(&conn, now, name, "login.failed", name, &detail).map_err(internal)?;
        return Err(LoginError::BadCredentials);
    }
    let session = (|| -> Result<Session> {
        let tx = conn.unchecked_transaction()?;
        tx.execute("DELETE FROM login_failures WHERE name = ?1", [name])?;
        tx.execute(
            "UPDATE users SET last_login_at = ?1 WHERE name = ?2",
            params![now, name],
        )?;
        // Expired sessions are swept here rather than by a timer.
        tx.execute(
            "DELETE FROM sessions WHERE last_seen_at < ?1 OR created_at < ?2",
            params![
                now - SESSION_IDLE_SECS * 1000,
                now - SESSION_MAX_SECS * 1000
            ],
        )?;
        let role: Role = user_role(&tx, name)?;
        let id = random_hex();
        tx.execute(
            "INSERT INTO sessions (id_hash, user, created_at, last_seen_at) VALUES (?1, ?2, ?3, ?3)",
            params![sha256(id.as_bytes()), name, now],
        )?;
        insert_audit(&tx, now, name, "login", name, "")?;
        tx.commit()?;
        Ok(Session {
            csrf_token: csrf_token_for(&id),
            id,
            principal: Principal {
                user: name.to_owned(),
                role,
            },
            expires_at: session_expiry(now, now).div_euclid(1000),
        })
    })();
    session.map_err(internal)
}

/// Counts one failed login for `name`; returns whether it is now locked out.
fn record_failure(conn: &Connection, name: &str, now: i64) -> Result<bool> {
    conn.execute(
        "DELETE FROM login_failures WHERE last_failure_at < ?1 AND coalesce(locked_until, 0) < ?2",
        params![now - FORGET_FAILURES_MS, now],
    )?;
    // A lock-out that has run out starts the count again.
    let failures: i64 = conn.query_row(
        "INSERT INTO login_failures (name, failures, last_failure_at) VALUES (?1, 1, ?2)
         ON CONFLICT (name) DO UPDATE SET
             failures = CASE WHEN locked_until IS NOT NULL THEN 1 ELSE failures + 1 END,
             locked_until = NULL,
             last_failure_at = excluded.last_failure_at
         RETURNING failures",
        params![name, now],
        |r| r.get(0),
    )?;
    if failures >= MAX_FAILED_LOGINS {
        conn.execute(
            "UPDATE login_failures SET locked_until = ?1 WHERE name = ?2",
            params![now + LOCKOUT_SECS * 1000, name],
        )?;
        return Ok(true);
    }
    Ok(false)
}

pub(crate) fn insert_audit(
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

/// When a session with these times ends, in milliseconds.
fn session_expiry(created_at: i64, last_seen_at: i64) -> i64 {
    (last_seen_at + SESSION_IDLE_SECS * 1000).min(created_at + SESSION_MAX_SECS * 1000)
}

fn user_role(conn: &Connection, name: &str) -> Result<Role> {
    conn.query_row("SELECT role FROM users WHERE name = ?1", [name], |r| {
        r.get::<_, String>(0)
    })
    .optional()?
    .ok_or_else(|| no_such_user(name))?
    .parse()
}

fn admin_count(conn: &Connection) -> Result<i64> {
    Ok(
        conn.query_row("SELECT count(*) FROM users WHERE role = 'admin'", [], |r| {
            r.get(0)
        })?,
    )
}

fn no_such_user(name: &str) -> Error {
    Error::NotFound(format!(
        "no user named {:?}; `yui user list` shows them",
        name.chars().take(40).collect::<String>()
    ))
}

fn argon2() -> Argon2<'static> {
    let params = Params::new(ARGON2_MEMORY_KIB, ARGON2_PASSES, ARGON2_LANES, None)
        .unwrap_or(Params::DEFAULT);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// An Argon2id PHC string (`$argon2id$v=19$m=19456,t=2,p=1$salt$hash`) with
/// a fresh random salt.
pub fn hash_password(password: &str) -> Result<String> {
    argon2()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| Error::Storage(format!("hashing a password: {e}")))
}

/// Checks a password against a PHC string, with the parameters stored in it.
pub fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc)
        .is_ok_and(|hash| argon2().verify_password(password.as_bytes(), &hash).is_ok())
}

fn check_user_name(name: &str) -> Result<()> {
    let mut chars = name.chars();
    let ok = name.chars().count() <= MAX_NAME_CHARS
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c));
    if !ok {
        return Err(Error::bad_request(
            "invalid_user_name",
            format!(
                "{:?} is not a usable user name: use 1 to {MAX_NAME_CHARS} lowercase letters, digits, '.', '_' or '-', starting with a letter (e.g. sato.hanako)",
                name.chars().take(40).collect::<String>()
            ),
        ));
    }
    if name == NODE_TOKEN_USER || name == CLI_USER {
        return Err(Error::bad_request(
            "invalid_user_name",
            format!("{name:?} is reserved for the audit log; choose another name"),
        ));
    }
    Ok(())
}

fn check_password(password: &str) -> Result<()> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(Error::bad_request(
            "weak_password",
            format!("the password is too short: use at least {MIN_PASSWORD_CHARS} characters"),
        ));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(Error::bad_request(
            "weak_password",
            format!("the password is longer than {MAX_PASSWORD_BYTES} bytes"),
        ));
    }
    Ok(())
}

fn check_label(label: &str) -> Result<()> {
    let n = label.chars().count();
    if n == 0 || n > MAX_LABEL_CHARS || label.chars().any(char::is_control) {
        return Err(Error::bad_request(
            "invalid_token_label",
            format!(
                "a token label has 1 to {MAX_LABEL_CHARS} characters and no control characters"
            ),
        ));
    }
    Ok(())
}

/// 32 random bytes, hex.
fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex(&bytes)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn sha256(data: &[u8]) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, data)
        .as_ref()
        .to_vec()
}

/// A session's CSRF token: derived from its secret id (with a label, so it
/// is never the hash stored as the session's key).
fn csrf_token_for(session_id: &str) -> String {
    hex(&sha256(format!("yui-csrf:{session_id}").as_bytes()))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere leaves the connection usable: SQLite rolled back.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered_and_parse() {
        assert!(Role::Viewer < Role::Editor && Role::Editor < Role::Admin);
        assert!(!Role::Viewer.can_write_records() && Role::Editor.can_write_records());
        assert!(!Role::Editor.can_administer() && Role::Admin.can_administer());
        for role in [Role::Viewer, Role::Editor, Role::Admin] {
            assert_eq!(role.as_str().parse::<Role>().expect("parses"), role);
        }
        let err = "owner".parse::<Role>().expect_err("not a role");
        assert!(
            err.to_string().contains("viewer, editor and admin"),
            "{err}"
        );
    }

    #[test]
    fn names_and_passwords_are_checked() {
        for good in ["sato", "sato.hanako", "a1_-"] {
            assert!(check_user_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "Sato",
            "1sato",
            "佐藤",
            "sato hanako",
            &"a".repeat(33),
            "cli",
        ] {
            assert!(check_user_name(bad).is_err(), "{bad}");
        }
        assert!(check_password("short").is_err());
        assert!(check_password("ten chars!").is_ok());
        assert!(check_password(&"x".repeat(MAX_PASSWORD_BYTES + 1)).is_err());
    }

    #[test]
    fn constant_time_eq_compares_whole_slices() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
