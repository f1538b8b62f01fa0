//! PLACEHOLDER: replaced by the accounts branch at merge.
//!
//! Console users, their roles and their sessions, with exactly the interface
//! the accounts branch provides, so the web console can be built against it
//! now. This stand-in keeps everything in memory with three fixed users
//! (`admin`/`password-admin`, `editor`/`password-editor`,
//! `viewer`/`password-viewer`); it must not ship.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rand::RngCore;

/// What a console user may do. Ordered: each role can do what the one before it can.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Viewer,
    Editor,
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

#[derive(Clone, Debug)]
pub struct Principal {
    pub user: String,
    pub role: Role,
}

#[derive(Clone, Debug)]
pub struct Session {
    pub id: String,
    pub csrf_token: String,
    pub principal: Principal,
    /// Unix seconds.
    pub expires_at: i64,
}

#[derive(Debug)]
pub enum LoginError {
    BadCredentials,
    LockedOut { retry_after_secs: u64 },
    Internal(String),
}

pub const SESSION_COOKIE: &str = "yui_session";

const USERS: [(&str, &str, Role); 3] = [
    ("admin", "password-admin", Role::Admin),
    ("editor", "password-editor", Role::Editor),
    ("viewer", "password-viewer", Role::Viewer),
];
const SESSION_SECS: i64 = 8 * 3600;

#[derive(Clone, Default)]
pub struct Accounts {
    sessions: Arc<Mutex<HashMap<String, Session>>>,
}

fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn now_secs() -> i64 {
    crate::store::now_ms() / 1000
}

impl Accounts {
    pub fn new() -> Accounts {
        Accounts::default()
    }

    pub async fn login(&self, user: &str, password: &str) -> Result<Session, LoginError> {
        let Some((name, _, role)) = USERS.iter().find(|(name, known, _)| {
            constant_time_eq(name.as_bytes(), user.as_bytes())
                & constant_time_eq(known.as_bytes(), password.as_bytes())
        }) else {
            return Err(LoginError::BadCredentials);
        };
        let session = Session {
            id: random_hex(),
            csrf_token: random_hex(),
            principal: Principal {
                user: (*name).to_owned(),
                role: *role,
            },
            expires_at: now_secs() + SESSION_SECS,
        };
        self.sessions
            .lock()
            .map_err(|_| LoginError::Internal("session table poisoned".into()))?
            .insert(session.id.clone(), session.clone());
        Ok(session)
    }

    pub async fn session(&self, id: &str) -> Option<Session> {
        let sessions = self.sessions.lock().ok()?;
        sessions
            .get(id)
            .filter(|s| s.expires_at > now_secs())
            .cloned()
    }

    pub async fn logout(&self, id: &str) {
        if let Ok(mut sessions) = self.sessions.lock() {
            sessions.remove(id);
        }
    }

    pub async fn audit(&self, principal: &Principal, action: &str, target: &str, detail: &str) {
        tracing::info!(user = %principal.user, role = principal.role.as_str(), action, target, detail, "audit");
    }
}

pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
