//! Backup while serving, and restore with a fresh actor id.

use std::time::Duration;

use serde_json::Value;
use yui_tests::{Server, backup_file, init, knowledge, mode, yui_fails, yui_ok};

fn actor(data: &std::path::Path) -> String {
    let status: Value = serde_json::from_str(&yui_ok(data, &["status", "--json"])).expect("json");
    status["storage"]["actor_id"]
        .as_str()
        .expect("actor")
        .to_owned()
}

#[test]
fn backup_is_consistent_while_serving_and_restore_gets_a_new_actor() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("d");
    init(&data, "tateshina");
    let server = Server::start(&data);
    let kept = server.create("knowledge", knowledge("バックアップ前"));

    // Writes continue during the backup.
    let writer = {
        let base = server.base.clone();
        let token = server.token.clone();
        std::thread::spawn(move || {
            let client = yui_tests::client_builder().build().expect("client");
            for i in 0..100 {
                let r = client
                    .post(format!("{base}/api/v1/records/knowledge"))
                    .bearer_auth(&token)
                    .json(&serde_json::json!({"fields": knowledge(&format!("during {i}"))}))
                    .send()
                    .expect("send");
                assert_eq!(r.status().as_u16(), 201);
            }
        })
    };
    std::thread::sleep(Duration::from_millis(50));
    let backup = backup_file(dir.path(), "tateshina.backup");
    let out = yui_ok(&data, &["backup", backup.to_str().expect("utf8")]);
    assert!(out.contains("Wrote"), "{out}");
    writer.join().expect("writer");
    assert_eq!(mode(&backup), 0o600, "a backup holds personal data");
    let err = yui_fails(&data, &["backup", backup.to_str().expect("utf8")]);
    assert!(err.contains("already exists"), "{err}");

    let after = server.create("knowledge", knowledge("バックアップ後"));
    // Restore refuses while serving.
    let err = yui_fails(&data, &["restore", backup.to_str().expect("utf8")]);
    assert!(err.contains("stop"), "{err}");
    server.stop();

    let old_actor = actor(&data);
    let out = yui_ok(&data, &["restore", backup.to_str().expect("utf8")]);
    assert!(out.contains("kept as"), "{out}");
    let new_actor = actor(&data);
    assert_ne!(
        old_actor, new_actor,
        "a restored node must not reuse its actor id"
    );

    let server = Server::start(&data);
    let (status, _) = server.get(&format!(
        "/api/v1/records/knowledge/{}",
        kept["id"].as_str().expect("id")
    ));
    assert_eq!(status, 200, "the record from before the backup is back");
    let (status, _) = server.get(&format!(
        "/api/v1/records/knowledge/{}",
        after["id"].as_str().expect("id")
    ));
    assert_eq!(status, 404, "the record written after the backup is not");
    // The backup is a consistent snapshot: its records all read back whole.
    let (_, list) = server.get("/api/v1/records/knowledge?limit=500");
    for r in list["items"].as_array().expect("items") {
        assert!(r["fields"]["title"].is_string(), "{r}");
    }
    // The restored node edits under its new actor.
    let id = kept["id"].as_str().expect("id");
    let (status, _) = server
        .patch(
            &format!("/api/v1/records/knowledge/{id}"),
            &serde_json::json!({"fields": {"title": "復元後に編集"}}),
        )
        .expect("patch");
    assert_eq!(status, 200);
    server.stop();
}

#[test]
fn restore_refuses_garbage_and_other_towns() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tateshina = dir.path().join("t");
    let omachi = dir.path().join("o");
    init(&tateshina, "tateshina");
    init(&omachi, "omachi");
    let garbage = dir.path().join("garbage");
    std::fs::write(&garbage, vec![7u8; 8192]).expect("write");
    let err = yui_fails(&tateshina, &["restore", garbage.to_str().expect("utf8")]);
    assert!(err.contains("not a usable Yui backup"), "{err}");
    assert!(err.contains("nothing was changed"), "{err}");
    let err = yui_fails(&tateshina, &["restore", "/nonexistent/backup"]);
    assert!(err.contains("does not exist"), "{err}");

    let omachi_backup = backup_file(dir.path(), "omachi.backup");
    yui_ok(&omachi, &["backup", omachi_backup.to_str().expect("utf8")]);
    let err = yui_fails(
        &tateshina,
        &["restore", omachi_backup.to_str().expect("utf8")],
    );
    assert!(err.contains("omachi"), "{err}");
    // Tateshina's own database is untouched and still opens.
    yui_ok(&tateshina, &["status"]);
}
