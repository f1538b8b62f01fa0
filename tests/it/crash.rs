//! `kill -9` during a burst of concurrent writes: every write the API
//! acknowledged is there after the restart.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use yui_tests::{Server, init, knowledge};

#[test]
fn every_acknowledged_write_survives_kill_9() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("d");
    init(&data, "tateshina");
    let server = Arc::new(Server::start(&data));

    // Each writer owns one record it keeps editing, and creates new ones.
    let acked_creates = Arc::new(Mutex::new(Vec::<(String, String)>::new()));
    let acked_edits = Arc::new(Mutex::new(Vec::<(String, u64)>::new()));
    let stop_at = Instant::now() + Duration::from_millis(1500);
    let mut writers = Vec::new();
    for w in 0..8 {
        let server = server.clone();
        let creates = acked_creates.clone();
        let edits = acked_edits.clone();
        writers.push(std::thread::spawn(move || {
            let own = server.create("knowledge", knowledge(&format!("writer {w}")));
            let own_id = own["id"].as_str().expect("id").to_owned();
            let mut last_acked = 0u64;
            let mut i = 0u64;
            // Keep writing until the server dies under us.
            loop {
                i += 1;
                let title = format!("w{w}-{i}");
                match server.post(
                    "/api/v1/records/knowledge",
                    &json!({"fields": knowledge(&title)}),
                ) {
                    Ok((201, body)) => {
                        creates
                            .lock()
                            .expect("lock")
                            .push((body["id"].as_str().expect("id").to_owned(), title));
                    }
                    _ => break,
                }
                match server.patch(
                    &format!("/api/v1/records/knowledge/{own_id}"),
                    &json!({"fields": {"tags": [format!("{i}")]}}),
                ) {
                    Ok((200, _)) => last_acked = i,
                    _ => break,
                }
                if Instant::now() > stop_at + Duration::from_secs(30) {
                    break;
                }
            }
            edits.lock().expect("lock").push((own_id, last_acked));
        }));
    }
    std::thread::sleep(stop_at.saturating_duration_since(Instant::now()));
    let server = match Arc::try_unwrap(server) {
        Ok(s) => s,
        Err(shared) => {
            // Writers still hold clones: kill through the pid instead.
            let pid = shared.child.id().to_string();
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid])
                .status();
            for w in writers.drain(..) {
                w.join().expect("writer");
            }
            Arc::try_unwrap(shared).ok().expect("sole owner")
        }
    };
    for w in writers {
        w.join().expect("writer");
    }
    server.kill_9();

    let creates = acked_creates.lock().expect("lock").clone();
    let edits = acked_edits.lock().expect("lock").clone();
    eprintln!(
        "kill -9 after {} acknowledged creates and {} acknowledged edits",
        creates.len(),
        edits.iter().map(|(_, n)| n).sum::<u64>()
    );
    assert!(
        creates.len() >= 20,
        "the burst wrote something ({} creates)",
        creates.len()
    );

    let server = Server::start(&data);
    for (id, title) in &creates {
        let (status, body) = server.get(&format!("/api/v1/records/knowledge/{id}"));
        assert_eq!(status, 200, "acknowledged create {id} lost after kill -9");
        assert_eq!(body["fields"]["title"], title.as_str());
    }
    for (id, last_acked) in &edits {
        let (status, body) = server.get(&format!("/api/v1/records/knowledge/{id}"));
        assert_eq!(status, 200);
        let stored: u64 = body["fields"]["tags"][0]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        // The write in flight at the kill may or may not have landed.
        assert!(
            stored >= *last_acked,
            "record {id}: edit {last_acked} was acknowledged but {stored} is stored"
        );
    }
    // And the node keeps working after the crash.
    server.create("knowledge", knowledge("after the crash"));
    server.stop();
}
