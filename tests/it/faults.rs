//! Faults at start-up: a damaged database and a data directory others can read.

use std::os::unix::fs::PermissionsExt;

use yui_tests::{Server, backup_file, init, knowledge, yui_fails};

fn sha(path: &std::path::Path) -> Vec<u8> {
    // Not a cryptographic need: equality of contents.
    std::fs::read(path).expect("read")
}

#[test]
fn a_damaged_database_stops_start_up_with_a_clear_error_and_is_not_reset() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("d");
    init(&data, "tateshina");
    let server = Server::start(&data);
    server.create("knowledge", knowledge("消えてはならない"));
    server.stop();

    let db = data.join("yui.sqlite");
    let mut bytes = std::fs::read(&db).expect("read db");
    bytes[..100].copy_from_slice(&[0x42; 100]);
    std::fs::write(&db, &bytes).expect("write");
    let before = sha(&db);

    let never = backup_file(dir.path(), "never.backup");
    let never_arg = never.to_str().expect("utf8");
    for command in [
        &["serve", "--api-listen", "127.0.0.1:0"][..],
        &["status"][..],
        &["backup", never_arg][..],
    ] {
        let err = yui_fails(&data, command);
        assert!(err.contains("damaged"), "{command:?}: {err}");
        assert!(
            err.contains("yui restore"),
            "{command:?}: says what to do: {err}"
        );
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    }
    assert_eq!(sha(&db), before, "the damaged file was left as it was");
    assert!(!never.exists());
}

#[test]
fn a_database_of_another_program_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("d");
    init(&data, "tateshina");
    let db = data.join("yui.sqlite");
    std::fs::remove_file(&db).expect("rm");
    let _ = std::fs::remove_file(data.join("yui.sqlite-wal"));
    let _ = std::fs::remove_file(data.join("yui.sqlite-shm"));
    // An empty file and a missing file.
    std::fs::write(&db, b"").expect("write");
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let err = yui_fails(&data, &["serve", "--api-listen", "127.0.0.1:0"]);
    assert!(
        err.contains("not a Yui database") || err.contains("damaged"),
        "{err}"
    );
    std::fs::remove_file(&db).expect("rm");
    let err = yui_fails(&data, &["serve", "--api-listen", "127.0.0.1:0"]);
    assert!(err.contains("missing"), "{err}");
    assert!(!db.exists(), "a missing database is not silently recreated");
}

#[test]
fn loose_permissions_are_refused_with_the_fix() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("d");
    init(&data, "tateshina");

    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let err = yui_fails(&data, &["serve", "--api-listen", "127.0.0.1:0"]);
    assert!(err.contains("chmod 700"), "{err}");
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).expect("chmod");

    let token = data.join("api-token");
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let err = yui_fails(&data, &["serve", "--api-listen", "127.0.0.1:0"]);
    assert!(err.contains("chmod 600"), "{err}");
    assert!(err.contains("api-token"), "{err}");
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).expect("chmod");

    let key = data.join("node.key.pem");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    let err = yui_fails(&data, &["status"]);
    assert!(err.contains("node.key.pem"), "{err}");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");

    // Fixed: it runs.
    Server::start(&data).stop();
}

#[test]
fn a_broken_config_file_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("d");
    init(&data, "tateshina");
    let config = data.join("config.toml");
    let text = std::fs::read_to_string(&config).expect("read");
    std::fs::write(&config, format!("{text}\nspeed = \"fast\"\n")).expect("write");
    let err = yui_fails(&data, &["status"]);
    assert!(err.contains("config.toml"), "{err}");
    assert!(err.contains("speed"), "{err}");
}

#[test]
fn flipped_data_pages_are_found_at_start_and_stop_writes_and_backups() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("d");
    init(&data, "tateshina");
    let server = Server::start(&data);
    for i in 0..400 {
        server.create("knowledge", knowledge(&format!("記録 {i} ナレッジの本文")));
    }
    server.stop();
    let flipped = yui_tests::disk::flip_data_pages(&data.join("yui.sqlite"));
    assert!(flipped >= 5, "{flipped} pages");

    // The node starts, to say what is wrong, and says it everywhere. The
    // check runs in the background from start, while reads are served: a
    // write sent at once waits for it, and is refused.
    let server = Server::start_unhealthy(&data);
    let (code, body) = server
        .post(
            "/api/v1/records/knowledge",
            &serde_json::json!({"fields": knowledge("起動直後の書き込み")}),
        )
        .expect("post");
    assert_eq!(code, 503, "{body}");
    assert_eq!(body["error"]["code"], "database_damaged", "{body}");
    let health = server
        .client
        .get(server.url("/healthz"))
        .send()
        .expect("healthz");
    assert_eq!(health.status().as_u16(), 503);
    let health: serde_json::Value = health.json().expect("json");
    assert_eq!(health["status"], "degraded", "{health}");
    assert!(
        health["damaged_tables"]
            .as_array()
            .is_some_and(|t| !t.is_empty()),
        "{health}"
    );
    let status = server.status();
    let damaged = &status["storage"]["integrity"]["damaged"];
    assert!(
        damaged.as_array().is_some_and(|t| !t.is_empty()),
        "{status}"
    );
    // Writes are refused with a clear error, and nothing is written.
    let (code, body) = server
        .post(
            "/api/v1/records/knowledge",
            &serde_json::json!({"fields": knowledge("壊れたデータベースへの書き込み")}),
        )
        .expect("post");
    assert_eq!(code, 503, "{body}");
    assert_eq!(body["error"]["code"], "database_damaged", "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("damaged") && message.contains("restore"),
        "{body}"
    );
    // The backup refuses loudly and leaves no file that looks like one.
    let backup = backup_file(dir.path(), "damaged.backup");
    let err = yui_fails(&data, &["backup", backup.to_str().expect("utf8")]);
    assert!(
        err.contains("damaged") && err.contains("no backup was written"),
        "{err}"
    );
    assert!(!backup.exists(), "no half-good backup left behind");
    server.stop();
    // Stopped, the status says the same.
    let out = yui_tests::yui(&data, &["status"]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("DAMAGED"),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_verified_backup_is_recorded_and_status_shows_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("d");
    init(&data, "tateshina");
    let out = yui_tests::yui_ok(&data, &["status"]);
    assert!(out.contains("integrity:   ok"), "{out}");
    assert!(out.contains("none verified yet"), "{out}");
    let backup = backup_file(dir.path(), "good.backup");
    let out = yui_tests::yui_ok(&data, &["backup", backup.to_str().expect("utf8")]);
    assert!(out.contains("verified"), "{out}");
    let out = yui_tests::yui_ok(&data, &["status"]);
    assert!(
        out.contains(&format!("last backup: {}", backup.display())),
        "{out}"
    );
    assert_eq!(yui_tests::mode(&data.join("backups.log")), 0o600);
}
