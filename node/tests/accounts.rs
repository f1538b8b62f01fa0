//! Local accounts against a real SQLite file and over real HTTP on
//! 127.0.0.1: password hashing, login and lock-out, session expiry, roles
//! per API token, the audit log, and that user names stay out of the
//! documents that sync.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use yui_node::accounts::{
    Accounts, Clock, LOCKOUT_SECS, LoginError, MAX_FAILED_LOGINS, Principal, Role,
    SESSION_IDLE_SECS, SESSION_MAX_SECS,
};
use yui_node::datadir::DataDir;
use yui_tests::test_node::{TestNode, init_data_dir};

const PASSWORD: &str = "correct horse battery";

/// What these tests add to a node.
trait WithUsers {
    async fn user_with_token(&self, name: &str, role: Role) -> String;
}

impl WithUsers for TestNode {
    /// Adds a user with `role` and returns a token of theirs with that role.
    async fn user_with_token(&self, name: &str, role: Role) -> String {
        let accounts = &self.node.accounts;
        accounts.add_user(name, role, PASSWORD).await.expect("add");
        accounts
            .create_token(name, role, "tests")
            .await
            .expect("token")
    }
}

fn knowledge(title: &str) -> Value {
    json!({"fields": {"title": title, "body": "研修の進め方", "category": "training"}})
}

/// A clock the test moves by hand, in milliseconds.
fn manual_clock(start: i64) -> (Arc<AtomicI64>, Clock) {
    let now = Arc::new(AtomicI64::new(start));
    let read = now.clone();
    (now, Arc::new(move || read.load(Ordering::SeqCst)))
}

/// Accounts on a fresh data directory's database, with a hand-moved clock.
fn accounts_with_clock() -> (tempfile::TempDir, DataDir, Arc<AtomicI64>, Accounts) {
    let (dir, data) = init_data_dir();
    let (now, clock) = manual_clock(1_800_000_000_000);
    let accounts =
        Accounts::open_with_clock(&data.db_path(), data.read_token().expect("token"), clock)
            .expect("open accounts");
    (dir, data, now, accounts)
}

#[tokio::test]
async fn passwords_are_stored_as_argon2id_phc_strings() {
    let (_dir, data, _, accounts) = accounts_with_clock();
    let started = std::time::Instant::now();
    accounts
        .add_user("sato.hanako", Role::Editor, PASSWORD)
        .await
        .expect("add");
    println!("add_user (one Argon2id hash) took {:?}", started.elapsed());
    let conn = rusqlite::Connection::open(data.db_path()).expect("open db");
    let stored: String = conn
        .query_row(
            "SELECT password_hash FROM users WHERE name = 'sato.hanako'",
            [],
            |r| r.get(0),
        )
        .expect("row");
    assert!(
        stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{stored}"
    );
    assert!(!stored.contains(PASSWORD));
    assert!(yui_node::accounts::verify_password(PASSWORD, &stored));
    assert!(!yui_node::accounts::verify_password(
        "wrong password",
        &stored
    ));
    // The database file holds no trace of the password itself.
    drop(conn);
    let bytes = std::fs::read(data.db_path()).expect("read db");
    let wal = std::fs::read(format!("{}-wal", data.db_path().display())).unwrap_or_default();
    for haystack in [&bytes, &wal] {
        assert!(
            !haystack
                .windows(PASSWORD.len())
                .any(|w| w == PASSWORD.as_bytes())
        );
    }

    let err = accounts
        .add_user("suzuki", Role::Viewer, "short")
        .await
        .expect_err("short password");
    assert!(err.to_string().contains("at least 10"), "{err}");
    let err = accounts
        .add_user("Suzuki San", Role::Viewer, PASSWORD)
        .await
        .expect_err("bad name");
    assert_eq!(err.code(), "invalid_user_name");
    let err = accounts
        .add_user("sato.hanako", Role::Viewer, PASSWORD)
        .await
        .expect_err("duplicate");
    assert_eq!(err.code(), "conflict");
}

#[tokio::test]
async fn login_accepts_the_password_and_refuses_wrong_or_unknown_users_alike() {
    let (_dir, _data, _, accounts) = accounts_with_clock();
    accounts
        .add_user("sato", Role::Editor, PASSWORD)
        .await
        .expect("add");

    let session = accounts.login("sato", PASSWORD).await.expect("login");
    assert_eq!(session.id.len(), 64);
    assert_eq!(session.csrf_token.len(), 64);
    assert_ne!(session.id, session.csrf_token);
    assert_eq!(session.principal.user, "sato");
    assert_eq!(session.principal.role, Role::Editor);
    let found = accounts.session(&session.id).await.expect("live session");
    assert_eq!(found.csrf_token, session.csrf_token);
    assert_eq!(found.principal.role, Role::Editor);

    assert!(matches!(
        accounts.login("sato", "not the password").await,
        Err(LoginError::BadCredentials)
    ));
    assert!(matches!(
        accounts.login("nobody", PASSWORD).await,
        Err(LoginError::BadCredentials)
    ));
    assert!(accounts.session("f00d").await.is_none());

    accounts.logout(&session.id).await;
    assert!(accounts.session(&session.id).await.is_none());

    let log = accounts.audit_log(10).await.expect("audit");
    let actions: Vec<_> = log
        .iter()
        .map(|e| (e.user.as_str(), e.action.as_str(), e.detail.as_str()))
        .collect();
    assert_eq!(
        actions,
        [
            ("sato", "logout", ""),
            ("nobody", "login.failed", "unknown user"),
            ("sato", "login.failed", "wrong password"),
            ("sato", "login", ""),
        ]
    );
}

#[tokio::test]
async fn repeated_failures_lock_the_name_out_until_the_lockout_ends() {
    let (_dir, _data, now, accounts) = accounts_with_clock();
    accounts
        .add_user("sato", Role::Viewer, PASSWORD)
        .await
        .expect("add");
    for _ in 0..MAX_FAILED_LOGINS {
        assert!(matches!(
            accounts.login("sato", "guess guess guess").await,
            Err(LoginError::BadCredentials)
        ));
    }
    // Locked: even the right password is refused, and says for how long.
    match accounts.login("sato", PASSWORD).await {
        Err(LoginError::LockedOut { retry_after_secs }) => {
            assert_eq!(retry_after_secs, LOCKOUT_SECS as u64)
        }
        other => panic!("expected a lock-out, got {other:?}"),
    }
    let users = accounts.users().await.expect("users");
    assert!(users[0].locked_until.is_some(), "{users:?}");

    now.fetch_add(LOCKOUT_SECS * 1000 - 1000, Ordering::SeqCst);
    assert!(matches!(
        accounts.login("sato", PASSWORD).await,
        Err(LoginError::LockedOut {
            retry_after_secs: 1
        })
    ));
    now.fetch_add(1000, Ordering::SeqCst);
    accounts
        .login("sato", PASSWORD)
        .await
        .expect("the lock-out is over");
    assert!(
        accounts.users().await.expect("users")[0]
            .locked_until
            .is_none()
    );

    // An unknown name locks out the same way: lock-outs reveal no user names.
    for _ in 0..MAX_FAILED_LOGINS {
        let _ = accounts.login("ghost", "guess guess guess").await;
    }
    assert!(matches!(
        accounts.login("ghost", "guess guess guess").await,
        Err(LoginError::LockedOut { .. })
    ));
    // Failures that are not in a row do not add up.
    for _ in 0..MAX_FAILED_LOGINS - 1 {
        let _ = accounts.login("sato", "guess guess guess").await;
    }
    accounts.login("sato", PASSWORD).await.expect("login");
    let _ = accounts.login("sato", "guess guess guess").await;
    accounts
        .login("sato", PASSWORD)
        .await
        .expect("not locked out");
}

#[tokio::test]
async fn sessions_expire_when_idle_and_at_the_absolute_cap() {
    let (_dir, _data, now, accounts) = accounts_with_clock();
    accounts
        .add_user("sato", Role::Editor, PASSWORD)
        .await
        .expect("add");
    let hour = 3600 * 1000;

    let idle = accounts.login("sato", PASSWORD).await.expect("login");
    let start = now.load(Ordering::SeqCst);
    assert_eq!(idle.expires_at * 1000, start + SESSION_IDLE_SECS * 1000);
    now.fetch_add(SESSION_IDLE_SECS * 1000 - hour, Ordering::SeqCst);
    let used = accounts.session(&idle.id).await.expect("still live");
    assert!(used.expires_at > idle.expires_at, "use extends it");
    now.fetch_add(SESSION_IDLE_SECS * 1000 - hour, Ordering::SeqCst);
    assert!(accounts.session(&idle.id).await.is_some(), "sliding expiry");
    now.fetch_add(SESSION_IDLE_SECS * 1000, Ordering::SeqCst);
    assert!(accounts.session(&idle.id).await.is_none(), "idle too long");

    // Used every 6 hours, a session still ends at the absolute cap.
    let busy = accounts.login("sato", PASSWORD).await.expect("login");
    let start = now.load(Ordering::SeqCst);
    while now.load(Ordering::SeqCst) + 6 * hour < start + SESSION_MAX_SECS * 1000 {
        now.fetch_add(6 * hour, Ordering::SeqCst);
        assert!(accounts.session(&busy.id).await.is_some());
    }
    now.store(start + SESSION_MAX_SECS * 1000, Ordering::SeqCst);
    assert!(accounts.session(&busy.id).await.is_none(), "absolute cap");

    // A new password and a removed user end sessions at once.
    let a = accounts.login("sato", PASSWORD).await.expect("login");
    accounts
        .set_password("sato", "another long password")
        .await
        .expect("passwd");
    assert!(accounts.session(&a.id).await.is_none());
    assert!(matches!(
        accounts.login("sato", PASSWORD).await,
        Err(LoginError::BadCredentials)
    ));
    let b = accounts
        .login("sato", "another long password")
        .await
        .expect("login");
    accounts
        .add_user("admin", Role::Admin, PASSWORD)
        .await
        .expect("add");
    accounts.remove_user("sato").await.expect("remove");
    assert!(accounts.session(&b.id).await.is_none());
}

#[tokio::test]
async fn the_last_admin_stays_and_tokens_never_exceed_their_user() {
    let (_dir, _data, _, accounts) = accounts_with_clock();
    accounts
        .add_user("boss", Role::Admin, PASSWORD)
        .await
        .expect("add");
    let err = accounts.remove_user("boss").await.expect_err("last admin");
    assert!(err.to_string().contains("last admin"), "{err}");
    let err = accounts
        .set_role("boss", Role::Editor)
        .await
        .expect_err("last admin");
    assert!(err.to_string().contains("last admin"), "{err}");

    accounts
        .add_user("sato", Role::Editor, PASSWORD)
        .await
        .expect("add");
    let err = accounts
        .create_token("sato", Role::Admin, "too much")
        .await
        .expect_err("above the user's role");
    assert_eq!(err.code(), "role_too_high");
    let token = accounts
        .create_token("sato", Role::Editor, "script")
        .await
        .expect("token");
    assert_eq!(token.len(), 64);
    assert!(
        accounts
            .create_token("sato", Role::Viewer, "script")
            .await
            .is_err(),
        "labels are unique per user"
    );
    let p = accounts.principal_for_token(&token).await.expect("valid");
    assert_eq!((p.user.as_str(), p.role), ("sato", Role::Editor));
    // Demoting the user demotes their tokens with them.
    accounts.set_role("sato", Role::Viewer).await.expect("role");
    let p = accounts.principal_for_token(&token).await.expect("valid");
    assert_eq!(p.role, Role::Viewer);
    assert!(
        accounts
            .principal_for_token(&"0".repeat(64))
            .await
            .is_none()
    );
}

#[tokio::test]
async fn viewer_reads_editor_writes_records_admin_manages_peers() {
    let node = TestNode::start().await;
    let viewer = node.user_with_token("yamada", Role::Viewer).await;
    let editor = node.user_with_token("sato", Role::Editor).await;
    let admin = node.user_with_token("boss", Role::Admin).await;

    // The editor writes.
    let (status, record) = node
        .send_as(
            &editor,
            Method::POST,
            "/api/v1/records/knowledge",
            Some(knowledge("研修の記録")),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{record}");
    let path = format!(
        "/api/v1/records/knowledge/{}",
        record["id"].as_str().expect("id")
    );

    the_viewer_reads_everything_and_writes_nothing(&node, &viewer, &path).await;

    // The editor may not manage peers, users or the audit log (sync now is
    // an editor's: tests/it/actions.rs).
    let peer = json!({"url": "https://192.0.2.10:7443"});
    for (method, target, body) in [
        (Method::POST, "/api/v1/peers", Some(peer.clone())),
        (
            Method::DELETE,
            "/api/v1/peers/https%3A%2F%2F192.0.2.10%3A7443",
            None,
        ),
        (Method::GET, "/api/v1/users", None),
        (Method::GET, "/api/v1/audit", None),
    ] {
        let (status, body) = node.send_as(&editor, method.clone(), target, body).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "editor {method} {target}");
        assert!(
            body["error"]["message"]
                .as_str()
                .expect("message")
                .contains("admin role")
        );
    }
    let (status, _) = node
        .send_as(
            &editor,
            Method::PATCH,
            &path,
            Some(json!({"fields": {"title": "改訂"}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    // The admin may.
    let (status, body) = node
        .send_as(&admin, Method::POST, "/api/v1/peers", Some(peer.clone()))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = node
        .send_as(&admin, Method::GET, "/api/v1/users", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<_> = body["users"]
        .as_array()
        .expect("users")
        .iter()
        .map(|u| (u["name"].as_str(), u["role"].as_str()))
        .collect();
    assert_eq!(
        names,
        [
            (Some("boss"), Some("admin")),
            (Some("sato"), Some("editor")),
            (Some("yamada"), Some("viewer"))
        ]
    );
    let (status, _) = node
        .send_as(
            &admin,
            Method::DELETE,
            "/api/v1/peers/https%3A%2F%2F192.0.2.10%3A7443",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    // The node's own token still does everything.
    let token = node.token.clone();
    let (status, _) = node
        .send_as(
            &token,
            Method::POST,
            "/api/v1/records/knowledge",
            Some(knowledge("script")),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = node
        .send_as(&token, Method::GET, "/api/v1/audit?limit=5", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = node.send_as(&token, Method::DELETE, &path, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    // Unknown and missing tokens keep their codes.
    let (status, body) = node
        .send_as(&"ab".repeat(32), Method::GET, "/api/v1/status", None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["code"], "invalid_token");
    let resp = node
        .client
        .get(format!("{}/api/v1/status", node.base))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["error"]["code"], "missing_token");
    node.stop().await;
}

/// The viewer reads everything, and writes nothing.
async fn the_viewer_reads_everything_and_writes_nothing(node: &TestNode, viewer: &str, path: &str) {
    for read in [
        "/api/v1/records/knowledge",
        path,
        "/api/v1/search?q=研修",
        "/api/v1/status",
        "/api/v1/peers",
    ] {
        let (status, body) = node.send_as(viewer, Method::GET, read, None).await;
        assert_eq!(status, StatusCode::OK, "viewer GET {read}: {body}");
    }
    for (method, target, body) in [
        (
            Method::POST,
            "/api/v1/records/knowledge",
            Some(knowledge("x")),
        ),
        (Method::PATCH, path, Some(json!({"fields": {"title": "y"}}))),
        (Method::DELETE, path, None),
    ] {
        let (status, body) = node.send_as(viewer, method.clone(), target, body).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "viewer {method} {target}");
        assert_eq!(body["error"]["code"], "forbidden");
        let message = body["error"]["message"].as_str().expect("message");
        assert!(message.contains("editor role"), "{message}");
    }
}

#[tokio::test]
async fn revoked_and_removed_users_tokens_stop_working() {
    let node = TestNode::start().await;
    let _admin = node.user_with_token("boss", Role::Admin).await;
    let editor = node.user_with_token("sato", Role::Editor).await;
    let second = node
        .node
        .accounts
        .create_token("sato", Role::Viewer, "read-only script")
        .await
        .expect("token");
    let status_of = |token: String| {
        let node = &node;
        async move {
            node.send_as(&token, Method::GET, "/api/v1/status", None)
                .await
                .0
        }
    };
    assert_eq!(status_of(editor.clone()).await, StatusCode::OK);
    assert_eq!(status_of(second.clone()).await, StatusCode::OK);

    node.node
        .accounts
        .revoke_token("sato", "tests")
        .await
        .expect("revoke");
    assert_eq!(status_of(editor.clone()).await, StatusCode::UNAUTHORIZED);
    assert_eq!(status_of(second.clone()).await, StatusCode::OK);

    node.node
        .accounts
        .remove_user("sato")
        .await
        .expect("remove");
    assert_eq!(status_of(second).await, StatusCode::UNAUTHORIZED);
    node.stop().await;
}

#[tokio::test]
async fn every_write_is_audited_with_its_user_who_never_reaches_the_documents() {
    // A name that appears nowhere else, so any trace of it is found.
    const NAME: &str = "zuzumiya.kaoru";
    let node = TestNode::start().await;
    let editor = node.user_with_token(NAME, Role::Editor).await;
    let admin = node.user_with_token("boss", Role::Admin).await;

    let mut ids = Vec::new();
    for collection in ["knowledge", "customers"] {
        let body = if collection == "knowledge" {
            knowledge("住民ワーカーの研修")
        } else {
            json!({"fields": {"organisation": "株式会社テスト", "stage": "prospect"}})
        };
        let (status, record) = node
            .send_as(
                &editor,
                Method::POST,
                &format!("/api/v1/records/{collection}"),
                Some(body),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{record}");
        assert!(!record.to_string().contains(NAME));
        let id = record["id"].as_str().expect("id").to_owned();
        let path = format!("/api/v1/records/{collection}/{id}");
        let patch = if collection == "knowledge" {
            json!({"fields": {"body": "研修の進め方を改訂"}})
        } else {
            json!({"fields": {"stage": "active"}})
        };
        let (status, _) = node
            .send_as(&editor, Method::PATCH, &path, Some(patch))
            .await;
        assert_eq!(status, StatusCode::OK);
        let (status, history) = node
            .send_as(&editor, Method::GET, &format!("{path}/history"), None)
            .await;
        assert_eq!(status, StatusCode::OK);
        assert!(!history.to_string().contains(NAME), "{history}");
        ids.push((collection, id));
    }
    let (status, _) = node
        .send_as(
            &editor,
            Method::DELETE,
            &format!("/api/v1/records/customers/{}", ids[1].1),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    let (status, body) = node
        .send_as(&admin, Method::GET, "/api/v1/audit?limit=5", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let entries: Vec<_> = body["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| {
            (
                e["user"].as_str().unwrap_or_default().to_owned(),
                e["action"].as_str().unwrap_or_default().to_owned(),
                e["target"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let (k, c) = (
        format!("knowledge/{}", ids[0].1),
        format!("customers/{}", ids[1].1),
    );
    let expected: Vec<(String, String, String)> = [
        ("record.delete", &c),
        ("record.update", &c),
        ("record.create", &c),
        ("record.update", &k),
        ("record.create", &k),
    ]
    .into_iter()
    .map(|(action, target)| (NAME.to_owned(), action.to_owned(), target.clone()))
    .collect();
    assert_eq!(entries, expected);
    let (status, body) = node
        .send_as(&admin, Method::GET, "/api/v1/audit?limit=0", None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    // The stored documents, what peers are sent, never hold the user's name:
    // not in a field, a change message or anywhere in the bytes.
    let (_dir, data) = node.stop().await;
    let conn = rusqlite::Connection::open(data.db_path()).expect("open db");
    let mut blobs: Vec<Vec<u8>> = Vec::new();
    for sql in [
        "SELECT doc FROM records",
        "SELECT CAST(view AS BLOB) FROM records",
        "SELECT data FROM doc_chunks",
    ] {
        let mut stmt = conn.prepare(sql).expect("prepare");
        let rows = stmt
            .query_map([], |r| r.get::<_, Vec<u8>>(0))
            .expect("query");
        blobs.extend(rows.map(|r| r.expect("row")));
    }
    assert!(blobs.len() >= 2, "documents were stored");
    for blob in &blobs {
        assert!(!blob.windows(NAME.len()).any(|w| w == NAME.as_bytes()));
    }
    let docs: Vec<Vec<u8>> = conn
        .prepare("SELECT doc FROM records")
        .expect("prepare")
        .query_map([], |r| r.get(0))
        .expect("query")
        .map(|r| r.expect("row"))
        .collect();
    for doc in docs {
        let mut doc = automerge::AutoCommit::load(&doc).expect("load");
        for change in doc.get_changes(&[]) {
            let message = change.message().unwrap_or_default();
            assert!(!message.contains(NAME), "{message}");
        }
    }
    // …while the local audit log, in the same file, does hold it.
    let audited: i64 = conn
        .query_row(
            "SELECT count(*) FROM audit_log WHERE user = ?1",
            [NAME],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(audited, 5);
}

#[tokio::test]
async fn audit_never_fails_the_caller() {
    let (_dir, data, _, accounts) = accounts_with_clock();
    let principal = Principal {
        user: "sato".into(),
        role: Role::Editor,
    };
    accounts
        .audit(&principal, "record.create", "knowledge/x", "fields: title")
        .await;
    // With the table gone, writing fails: the caller still goes on.
    let conn = rusqlite::Connection::open(data.db_path()).expect("open db");
    conn.execute_batch("DROP TABLE audit_log").expect("drop");
    accounts
        .audit(&principal, "record.update", "knowledge/x", "")
        .await;
    assert!(accounts.audit_log(10).await.is_err());
}
