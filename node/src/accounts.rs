//! Local user accounts: users and their roles, password login with lock-out,
//! console sessions, per-user API tokens, per-user feed tokens (which open
//! that user's Atom feeds and nothing else), each user's last dashboard
//! visit, and the local audit log.
//!
//! Everything here stays in the town. The tables live in the node's SQLite
//! file (so `yui backup` and `yui restore` carry them) but are written
//! through the accounts' own connection (`store::UsersDb`, which holds their
//! SQL), never through the record store, and nothing here reaches an
//! Automerge document: peers see the town that made a change, never the
//! person. The one exception is the audit log of a serving node, whose
//! entries go through the store's writer (given at open).
//!
//! Secrets are stored only as hashes: passwords as Argon2id PHC strings,
//! session ids, API tokens and feed tokens as SHA-256 (they are 32 random
//! bytes, so a fast hash is enough). A session's CSRF token is derived from its id, so
//! a copy of the database (a backup) holds nothing that opens a session.
//!
//! SQLite work runs in `spawn_blocking`; password hashes run on
//! [`CONCURRENT_HASHES`] dedicated threads (`hashing`), so a burst of logins
//! cannot take every core or much memory. A login from a browser the node
//! does not know for that name spends one of its address's allowance
//! (`throttle`); one that is refused answers at once, with no hash.

mod hashing;
mod throttle;

use std::net::IpAddr;
use std::path::Path;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use argon2::{Algorithm, Argon2, Params, PasswordHash, PasswordHasher, Version};
use rand::RngCore;
use serde::{Deserialize, Serialize};

pub use crate::clock::Clock;
use crate::clock::system_clock;
use crate::datadir::DataDir;
use crate::error::{Error, Result};
pub use crate::store::AuditEntry;
use crate::store::{Store, UsersConn, UsersDb};
pub use hashing::MAX_WAITING as MAX_WAITING_LOGINS;
use hashing::{HashPool, Lane};
pub use throttle::{DEVICE_COOKIE, KNOWN_DEVICE_SECS, LOGIN_BURST, LOGIN_REFILL_MS};

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
    /// Also creates, updates and deletes records, and syncs now.
    Editor,
    /// Also publishes KPI reports, manages peers, users, tokens and
    /// revocations, and reads the audit log (`crate::actions` has the table).
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
    /// Refused before any password was checked: too many logins from this
    /// address by browsers the node does not know, or the hashing queue is
    /// full.
    Throttled {
        retry_after_secs: u64,
        reason: Throttle,
    },
    Internal(String),
}

/// Why a login was refused before its password was checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Throttle {
    /// The address used up its allowance ([`LOGIN_BURST`], one more every
    /// [`LOGIN_REFILL_MS`]).
    Address,
    /// [`MAX_WAITING_LOGINS`] logins already wait for a hash.
    Busy,
}

impl Throttle {
    /// The `reason` label of `yui_logins_refused_total`.
    pub fn label(self) -> &'static str {
        match self {
            Throttle::Address => "address",
            Throttle::Busy => "busy",
        }
    }
}

/// Where a login comes from: the client's address and the browser's
/// known-device cookie, if any.
#[derive(Clone, Debug, Default)]
pub struct LoginClient {
    pub addr: Option<IpAddr>,
    pub device: Option<String>,
}

/// A counter's label value and count.
pub type Count = (&'static str, u64);

/// Logins counted for `/metrics` since the node started.
#[derive(Default)]
struct LoginCounters {
    ok: AtomicU64,
    failed: AtomicU64,
    locked_out: AtomicU64,
    address: AtomicU64,
    busy: AtomicU64,
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
            LoginError::Throttled {
                retry_after_secs,
                reason,
            } => write!(
                f,
                "too many logins at once ({}); try again in {retry_after_secs} seconds",
                reason.label()
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

/// Handle to the accounts tables; cheap to clone.
#[derive(Clone)]
pub struct Accounts {
    inner: Arc<Inner>,
}

struct Inner {
    db: UsersDb,
    /// In a serving node, audit entries go through the store's writer: one
    /// writer on the database (no lock waits between two connections) and
    /// group commit with the records they describe.
    audit_via: Option<Store>,
    node_token: String,
    clock: Clock,
    hashing: HashPool,
    addresses: throttle::AddressLimits,
    devices: throttle::Devices,
    counters: LoginCounters,
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
        Accounts::open_with_audit_via(db, node_token, clock, None)
    }

    /// [`Accounts::open_with_clock`] for a serving node: audit entries go
    /// through `audit_via`'s writer (when given) rather than this handle's
    /// own connection.
    pub fn open_with_audit_via(
        db: &Path,
        node_token: String,
        clock: Clock,
        audit_via: Option<Store>,
    ) -> Result<Accounts> {
        Ok(Accounts {
            inner: Arc::new(Inner {
                db: UsersDb::open(db)?,
                audit_via,
                devices: throttle::Devices::new(&node_token),
                node_token,
                clock,
                hashing: HashPool::default(),
                addresses: throttle::AddressLimits::default(),
                counters: LoginCounters::default(),
                dummy_hash: OnceLock::new(),
            }),
        })
    }

    fn now(&self) -> i64 {
        (self.inner.clock)()
    }

    /// Runs `f` with the connection held and the current time, off the
    /// async workers.
    async fn with_conn<T: Send + 'static>(
        &self,
        f: impl FnOnce(&UsersConn<'_>, i64) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let now = (inner.clock)();
            inner.db.with(|conn| f(conn, now))
        })
        .await
        .map_err(|e| Error::Storage(format!("accounts task failed: {e}")))?
    }

    /// Hashes a password on a hashing thread, in the first lane (an
    /// administrator's command).
    async fn hash_password(&self, password: &str) -> Result<String> {
        let password = password.to_owned();
        self.inner
            .hashing
            .run(Lane::Known, move || hash_password(&password))
            .await
            .map_err(|_| Error::ShuttingDown)?
    }

    /// Checks a password and opens a session. Audits `login` and
    /// `login.failed`. After [`MAX_FAILED_LOGINS`] failures in a row the
    /// name is locked out for [`LOCKOUT_SECS`], whether or not a user has
    /// that name, so lock-outs reveal no more than failures do.
    pub async fn login(&self, user: &str, password: &str) -> Result<Session, LoginError> {
        self.login_from(user, password, &LoginClient::default())
            .await
    }

    /// [`Accounts::login`] from `client`. Unless its known-device cookie
    /// vouches for `user`, the login spends one of the address's allowance
    /// (given back if it succeeds) and waits in the hashing threads' other
    /// lane; a refused one answers at once with
    /// [`LoginError::Throttled`]. See `throttle` for why.
    pub async fn login_from(
        &self,
        user: &str,
        password: &str,
        client: &LoginClient,
    ) -> Result<Session, LoginError> {
        let inner = self.inner.clone();
        let name: String = user.chars().take(MAX_NAME_CHARS * 2).collect();
        let now = self.now();
        let known = client
            .device
            .as_deref()
            .is_some_and(|cookie| inner.devices.vouches_for(cookie, &name, now));
        let charged = match client.addr {
            Some(addr) if !known => {
                if let Err(retry_after_secs) = inner.addresses.take(addr, now) {
                    return Err(self.throttled(retry_after_secs, Throttle::Address));
                }
                Some(addr)
            }
            _ => None,
        };
        let lane = if known { Lane::Known } else { Lane::Other };
        let password = password.to_owned();
        let hashed = inner.clone();
        let outcome = inner
            .hashing
            .run(lane, move || login_blocking(&hashed, &name, &password))
            .await;
        let counters = &inner.counters;
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(hashing::Busy) => {
                if let Some(addr) = charged {
                    inner.addresses.give_back(addr);
                }
                return Err(self.throttled(1, Throttle::Busy));
            }
        };
        match &outcome {
            Ok(_) => {
                counters.ok.fetch_add(1, Ordering::Relaxed);
                if let Some(addr) = charged {
                    inner.addresses.give_back(addr);
                }
            }
            Err(LoginError::BadCredentials) => {
                counters.failed.fetch_add(1, Ordering::Relaxed);
            }
            Err(LoginError::LockedOut { .. }) => {
                counters.locked_out.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {}
        }
        outcome
    }

    fn throttled(&self, retry_after_secs: u64, reason: Throttle) -> LoginError {
        let counter = match reason {
            Throttle::Address => &self.inner.counters.address,
            Throttle::Busy => &self.inner.counters.busy,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        LoginError::Throttled {
            retry_after_secs,
            reason,
        }
    }

    /// A known-device cookie value for a browser that just logged in as
    /// `user` ([`DEVICE_COOKIE`], valid [`KNOWN_DEVICE_SECS`]).
    pub fn known_device(&self, user: &str) -> String {
        self.inner.devices.issue(user, self.now())
    }

    /// Logins since start, by result (`ok`, `failed`), and logins refused
    /// by reason (`locked_out`, `address`, `busy`): bounded labels.
    pub fn login_counts(&self) -> ([Count; 2], [Count; 3]) {
        let c = &self.inner.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        (
            [("ok", get(&c.ok)), ("failed", get(&c.failed))],
            [
                ("locked_out", get(&c.locked_out)),
                (Throttle::Address.label(), get(&c.address)),
                (Throttle::Busy.label(), get(&c.busy)),
            ],
        )
    }

    /// The live session with this id, or `None` if it is unknown or expired.
    /// Using a session extends it by [`SESSION_IDLE_SECS`], up to
    /// [`SESSION_MAX_SECS`] after login.
    pub async fn session(&self, id: &str) -> Option<Session> {
        let id = id.to_owned();
        let found = self
            .with_conn(move |conn, now| {
                let id_hash = sha256(id.as_bytes());
                let Some((user, created_at, last_seen_at, role)) = conn.session(&id_hash)? else {
                    return Ok(None);
                };
                if now >= session_expiry(created_at, last_seen_at) {
                    conn.delete_session(&id_hash)?;
                    return Ok(None);
                }
                let mut seen = last_seen_at;
                if now - last_seen_at >= TOUCH_EVERY_MS {
                    conn.touch_session(&id_hash, now)?;
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
                let user = conn.end_session(&id_hash)?;
                if let Some(user) = &user {
                    conn.insert_audit(now, user, "logout", user, "")?;
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
                let Some((user, token_role, user_role)) = conn.token(&token_hash)? else {
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
        let written = match &self.inner.audit_via {
            Some(store) => store.append_audit(self.now(), entry).await,
            None => {
                self.with_conn(move |conn, now| {
                    let (user, action, target, detail) = entry;
                    conn.insert_audit(now, &user, &action, &target, &detail)
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
        self.with_conn(move |conn, _| conn.audit_log(limit)).await
    }

    pub async fn users(&self) -> Result<Vec<UserInfo>> {
        self.with_conn(|conn, now| {
            let mut users = Vec::new();
            for (name, role, created_at, last_login_at, locked_until) in conn.users()? {
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
            if !conn.add_user(&name, role.as_str(), &hash, now)? {
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
            conn.transaction(|tx| {
                let role = user_role(tx, &name)?;
                if role == Role::Admin && tx.admin_count()? <= 1 {
                    return Err(Error::Conflict(format!(
                        "{name:?} is the last admin; make another user admin first"
                    )));
                }
                tx.delete_sessions_of(&name)?;
                tx.delete_tokens_of(&name)?;
                tx.delete_feed_token(&name)?;
                tx.delete_visits_of(&name)?;
                tx.clear_failures(&name)?;
                tx.delete_user(&name)
            })
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
            conn.transaction(|tx| {
                if !tx.set_password_hash(&name, &hash)? {
                    return Err(no_such_user(&name));
                }
                tx.delete_sessions_of(&name)?;
                tx.clear_failures(&name)
            })
        })
        .await
    }

    /// Changes a user's role; their tokens are capped by it at once.
    /// Refuses to demote the last admin.
    pub async fn set_role(&self, name: &str, role: Role) -> Result<()> {
        let name = name.to_owned();
        self.with_conn(move |conn, _| {
            conn.transaction(|tx| {
                let current = user_role(tx, &name)?;
                if current == Role::Admin && role != Role::Admin && tx.admin_count()? <= 1 {
                    return Err(Error::Conflict(format!(
                        "{name:?} is the last admin; make another user admin first"
                    )));
                }
                tx.set_role(&name, role.as_str())
            })
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
            if !conn.add_token(&sha256(secret.as_bytes()), &user, role.as_str(), &label, now)? {
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
            if !conn.remove_token(&user, &label)? {
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
            let mut tokens = Vec::new();
            for (label, role, at) in conn.tokens_of(&user)? {
                tokens.push((label, role.parse()?, yui_protocol::record::format_time(at)));
            }
            Ok(tokens)
        })
        .await
    }

    // Following other towns (issue 16)
    /// Makes `user` a new feed token, replacing (and so invalidating) the
    /// one they had, and returns it; only its hash is kept, so it cannot be
    /// shown again. Audited as `feed_token.create` or `feed_token.rotate`.
    pub async fn create_feed_token(&self, user: &str) -> Result<String> {
        let user = user.to_owned();
        self.with_conn(move |conn, now| {
            user_role(conn, &user)?;
            let secret = random_hex();
            conn.transaction(|tx| {
                let action = if tx.set_feed_token(&user, &feed_token_hash(&secret), now)? {
                    "feed_token.rotate"
                } else {
                    "feed_token.create"
                };
                tx.insert_audit(now, &user, action, &user, "")
            })?;
            Ok(secret)
        })
        .await
    }

    /// Removes `user`'s feed token (audited as `feed_token.revoke`); its
    /// URLs stop working at once. `false` if there was none.
    pub async fn revoke_feed_token(&self, user: &str) -> Result<bool> {
        let user = user.to_owned();
        self.with_conn(move |conn, now| {
            conn.transaction(|tx| {
                let removed = tx.delete_feed_token(&user)?;
                if removed {
                    tx.insert_audit(now, &user, "feed_token.revoke", &user, "")?;
                }
                Ok(removed)
            })
        })
        .await
    }

    /// When `user`'s feed token was made (RFC 3339), if they have one.
    pub async fn feed_token_created(&self, user: &str) -> Result<Option<String>> {
        let user = user.to_owned();
        self.with_conn(move |conn, _| {
            Ok(conn
                .feed_token_created(&user)?
                .map(yui_protocol::record::format_time))
        })
        .await
    }

    /// The user a feed token belongs to, if it is one and the user still
    /// exists. A feed token opens that user's feeds and nothing else: it is
    /// no session and no API token, and [`Accounts::principal_for_token`]
    /// does not know it.
    pub async fn feed_token_user(&self, token: &str) -> Option<String> {
        if token.len() != 64 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let token_hash = feed_token_hash(token);
        let found = self
            .with_conn(move |conn, _| conn.feed_token_user(&token_hash))
            .await;
        found.unwrap_or_else(|e| {
            tracing::error!(error = %e, "looking up a feed token");
            None
        })
    }

    /// Marks `user`'s dashboard visit at feed position (`epoch`, `seq`) and
    /// returns the previous visit's position and time (RFC 3339), if it was
    /// made in the same feed epoch (a restored database starts another).
    pub async fn swap_visit(
        &self,
        user: &str,
        epoch: u64,
        seq: i64,
    ) -> Result<Option<(i64, String)>> {
        let user = user.to_owned();
        self.with_conn(move |conn, now| {
            let previous = conn.swap_visit(&user, epoch as i64, seq, now)?;
            Ok(previous
                .filter(|&(e, _, _)| e == epoch as i64)
                .map(|(_, seq, at)| (seq, yui_protocol::record::format_time(at))))
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
    // In the closures below, the outer `Result` is the database's and the
    // inner one the login's.
    let stored_hash = inner
        .db
        .with(|conn| {
            let locked_until = conn.locked_until(name)?;
            if let Some(until) = locked_until.filter(|&t| t > now) {
                return Ok(Err(LoginError::LockedOut {
                    retry_after_secs: u64::try_from((until - now + 999) / 1000).unwrap_or(1),
                }));
            }
            Ok(Ok(conn.password_hash(name)?))
        })
        .map_err(internal)??;
    // The hash work happens without the connection lock held.
    let dummy = inner
        .dummy_hash
        .get_or_init(|| hash_password(&random_hex()).unwrap_or_default());
    let matches = password.len() <= MAX_PASSWORD_BYTES
        && verify_password(password, stored_hash.as_deref().unwrap_or(dummy))
        && stored_hash.is_some();

    inner.db.with(|conn| {
        if !matches {
            let detail = if stored_hash.is_some() {
                "wrong password"
            } else {
                "unknown user"
            };
            let locked = record_failure(conn, name, now)?;
            let detail = if locked {
                format!(
                    "{detail}; locked out for {} minutes after {MAX_FAILED_LOGINS} failures in a row",
                    LOCKOUT_SECS / 60
                )
            } else {
                detail.to_owned()
            };
            conn.insert_audit(now, name, "login.failed", name, &detail)?;
            return Ok(Err(LoginError::BadCredentials));
        }
        conn.transaction(|tx| {
            tx.clear_failures(name)?;
            tx.set_last_login(name, now)?;
            // Expired sessions are swept here rather than by a timer.
            tx.sweep_sessions(
                now - SESSION_IDLE_SECS * 1000,
                now - SESSION_MAX_SECS * 1000,
            )?;
            let role: Role = user_role(tx, name)?;
            let id = random_hex();
            tx.insert_session(&sha256(id.as_bytes()), name, now)?;
            tx.insert_audit(now, name, "login", name, "")?;
            Ok(Ok(Session {
                csrf_token: csrf_token_for(&id),
                id,
                principal: Principal {
                    user: name.to_owned(),
                    role,
                },
                expires_at: session_expiry(now, now).div_euclid(1000),
            }))
        })
    })
    .map_err(internal)?
}

/// Counts one failed login for `name`; returns whether it is now locked out.
fn record_failure(conn: &UsersConn<'_>, name: &str, now: i64) -> Result<bool> {
    conn.forget_failures(now - FORGET_FAILURES_MS, now)?;
    if conn.count_failure(name, now)? >= MAX_FAILED_LOGINS {
        conn.lock_out(name, now + LOCKOUT_SECS * 1000)?;
        return Ok(true);
    }
    Ok(false)
}

/// When a session with these times ends, in milliseconds.
fn session_expiry(created_at: i64, last_seen_at: i64) -> i64 {
    (last_seen_at + SESSION_IDLE_SECS * 1000).min(created_at + SESSION_MAX_SECS * 1000)
}

fn user_role(conn: &UsersConn<'_>, name: &str) -> Result<Role> {
    conn.role_of(name)?
        .ok_or_else(|| no_such_user(name))?
        .parse()
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
///
/// The Argon2 memory (19 MiB) is the calling thread's own, allocated once
/// and reused: a fresh 19 MiB per check let the C allocator keep several
/// per thread, fragmented, and 300 logins took the node to 420 MB even on
/// two threads (operations.md 4.3).
pub fn verify_password(password: &str, phc: &str) -> bool {
    thread_local! {
        static MEMORY: std::cell::RefCell<Vec<argon2::Block>> =
            const { std::cell::RefCell::new(Vec::new()) };
    }
    let Ok(hash) = PasswordHash::new(phc) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (&hash.salt, &hash.hash) else {
        return false;
    };
    let (Ok(params), Ok(algorithm)) = (
        Params::try_from(&hash),
        Algorithm::try_from(hash.algorithm.as_str()),
    ) else {
        return false;
    };
    let version = match hash.version.map(Version::try_from) {
        None => Version::default(),
        Some(Ok(v)) => v,
        Some(Err(_)) => return false,
    };
    let blocks = params.block_count();
    if blocks > (ARGON2_MEMORY_KIB as usize) * 4 {
        // Not a hash this node made: never let a stored string ask for
        // more memory than four times ours.
        return false;
    }
    let mut out = vec![0u8; expected.len()];
    let hashed = MEMORY.with(|memory| {
        let mut memory = memory.borrow_mut();
        if memory.len() < blocks {
            memory.resize(blocks, argon2::Block::default());
        }
        Argon2::new(algorithm, version, params).hash_password_into_with_memory(
            password.as_bytes(),
            salt,
            &mut out,
            &mut memory[..blocks],
        )
    });
    hashed.is_ok() && constant_time_eq(&out, expected.as_bytes())
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

/// How a feed token is stored: SHA-256 with a label of its own, so no
/// stored hash of one kind of secret is ever that of another kind.
fn feed_token_hash(token: &str) -> Vec<u8> {
    sha256(format!("yui-feed:{token}").as_bytes())
}

/// A session's CSRF token: derived from its secret id (with a label, so it
/// is never the hash stored as the session's key).
fn csrf_token_for(session_id: &str) -> String {
    hex(&sha256(format!("yui-csrf:{session_id}").as_bytes()))
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
