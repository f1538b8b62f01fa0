//! A real `yui serve` whose data directory is on a small file system that
//! fills up (a tmpfs this test mounts; issue 15): a write that finds no
//! space answers 507 `storage_full`, `/healthz` says degraded, `status` and
//! `/metrics` say why; nothing the node acknowledged is lost, and it takes
//! writes again when space comes back, also across restarts.
//!
//! Mounting needs root (or CAP_SYS_ADMIN), as CI has: the test fails, it
//! never skips, where it cannot mount.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use yui_tests::{Server, id_of, init, knowledge, wait_for};

/// A tmpfs of `size` mounted at a new directory; unmounted when dropped.
struct SmallDisk {
    at: PathBuf,
    _dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> SmallDisk {
        let dir = tempfile::tempdir().expect("tempdir");
        let at = dir.path().join("disk");
        std::fs::create_dir(&at).expect("mount point");
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(&at)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "this test mounts a small tmpfs and needs root (CAP_SYS_ADMIN): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        SmallDisk { at, _dir: dir }
    }

    /// Fills the file system with `name` until a write fails for lack of
    /// space.
    fn fill(&self, name: &str) -> PathBuf {
        let path = self.at.join(name);
        let mut f = std::fs::File::create(&path).expect("filler");
        let chunk = vec![0x5a_u8; 256 * 1024];
        let mut small = vec![0x5a_u8; 4096];
        loop {
            if f.write_all(&chunk).is_err() {
                // Then the last pages.
                while f.write_all(&small).is_ok() {}
                small.truncate(1);
                while f.write_all(&small).is_ok() {}
                break;
            }
        }
        let _ = f.sync_all();
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.at).status();
    }
}

fn start(data: &Path, log: &Path) -> Server {
    let stderr = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("log");
    Server::start_with_stderr(data, &[], Stdio::from(stderr))
}

/// Creates knowledge records until one is refused; returns the ids of
/// those acknowledged (201) and the refusal.
fn write_until_refused(node: &Server, prefix: &str) -> (Vec<String>, (u16, Value)) {
    let mut acknowledged = Vec::new();
    for i in 0..2_000 {
        let mut fields = knowledge(&format!("{prefix} {i}"));
        fields["body"] = Value::String("研修の記録。".repeat(400));
        let (status, body) = node
            .post(
                "/api/v1/records/knowledge",
                &serde_json::json!({"fields": fields}),
            )
            .expect("post");
        if status == 201 {
            acknowledged.push(id_of(&body));
        } else {
            return (acknowledged, (status, body));
        }
    }
    panic!("2,000 writes fitted on a full disk");
}

fn healthz(node: &Server) -> (u16, Value) {
    node.get("/healthz")
}

fn all_there(node: &Server, ids: &[String]) {
    for id in ids {
        assert!(
            node.record("knowledge", id).is_some(),
            "acknowledged record {id} is missing"
        );
    }
}

#[test]
fn a_full_disk_answers_507_loses_nothing_and_recovers() {
    let disk = SmallDisk::mount("24m");
    let logs = tempfile::tempdir().expect("logs");
    let log = logs.path().join("node.log");
    let data = disk.at.join("tateshina");
    init(&data, "tateshina");
    let node = start(&data, &log);
    let mut kept: Vec<String> = (0..20)
        .map(|i| id_of(&node.create("knowledge", knowledge(&format!("空きのあるうちの記事 {i}")))))
        .collect();
    let filler = disk.fill("filler");
    let (more, (status, body)) = write_until_refused(&node, "いっぱいの記事");
    kept.extend(more);
    assert_eq!(status, 507, "{body}");
    assert_eq!(body["error"]["code"], "storage_full", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("disk") && m.contains("full")),
        "{body}"
    );

    // Degraded, and says why; reads go on.
    let (status, health) = healthz(&node);
    assert_eq!(status, 503, "{health}");
    assert_eq!(health["status"], "degraded");
    assert_eq!(health["error"]["code"], "storage_full");
    let status = node.status();
    assert_eq!(status["storage"]["full"], true, "{status}");
    let warnings = status["storage"]["warnings"].to_string();
    assert!(
        warnings.contains("full") && warnings.contains("low"),
        "{warnings}"
    );
    assert!(
        status["storage"]["disk"]["free_bytes"]
            .as_u64()
            .expect("free")
            < 1 << 20
    );
    let (_, metrics) = {
        let r = yui_tests::client_builder()
            .build()
            .expect("client")
            .get(node.url("/metrics"))
            .send()
            .expect("metrics");
        (r.status(), r.text().expect("text"))
    };
    assert!(metrics.contains("\nyui_storage_full 1\n"), "{metrics}");
    assert!(metrics.contains("\nyui_disk_free_bytes "), "{metrics}");
    all_there(&node, &kept);

    // A restart while the disk is still full: the node starts, serves what
    // it holds, and refuses writes the same way.
    assert!(node.stop().success(), "yui serve did not stop cleanly");
    let node = start(&data, &log);
    all_there(&node, &kept);
    let (more, (status, body)) = write_until_refused(&node, "再起動後の記事");
    kept.extend(more);
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (507, "storage_full".into()),
        "{body}"
    );

    // Space comes back: writes succeed again, health recovers, by itself.
    std::fs::remove_file(&filler).expect("free the space");
    let created = node.create("knowledge", knowledge("空きが戻ってからの記事"));
    kept.push(id_of(&created));
    assert!(
        wait_for(Duration::from_secs(5), || healthz(&node).0 == 200),
        "{:?}",
        healthz(&node)
    );
    assert_eq!(node.status()["storage"]["full"], false);
    all_there(&node, &kept);
    assert!(node.stop().success());
    let node = start(&data, &log);
    all_there(&node, &kept);
    assert_eq!(healthz(&node).0, 200);
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(
        text.contains("the disk holding the database is full"),
        "{text}"
    );
    drop(node);
}

/// The exchanges Tateshina served to Omachi (its inbound rounds).
fn rounds_served_to(node: &Server, town: &str) -> u64 {
    node.status()["inbound"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|i| i["town"] == town)
        .filter_map(|i| i["rounds"].as_u64())
        .sum()
}

#[test]
fn pulling_waits_while_the_disk_is_full_and_resumes_by_itself() {
    let disk = SmallDisk::mount("32m");
    let root = tempfile::tempdir().expect("tmp");
    let ca = yui_tests::Ca::init(&root.path().join("ca"), "ディスクのテスト");
    let a = Server::start_peer(
        &yui_tests::member(root.path(), "tateshina", &ca),
        "127.0.0.1:0",
    );
    let b_dir = yui_tests::member(&disk.at, "omachi", &ca);
    let b = Server::start_peer(&b_dir, "127.0.0.1:0");
    b.add_peer(a.peer_url());
    let first = id_of(&a.create("knowledge", knowledge("満杯の前の記事")));
    assert!(wait_for(Duration::from_secs(10), || b
        .record("knowledge", &first)
        .is_some()));

    // Omachi's disk fills; what it pulls can no longer be stored.
    let filler = disk.fill("filler");
    let mut sent = vec![first];
    let big = |title: String| {
        let mut fields = knowledge(&title);
        fields["body"] = Value::String("研修の記録。".repeat(400));
        fields
    };
    for i in 0..200 {
        sent.push(id_of(
            &a.create("knowledge", big(format!("満杯のあいだの記事 {i}"))),
        ));
        if b.status()["storage"]["full"] == true {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(b.status()["storage"]["full"], true, "{}", b.status());
    // It stops pulling: news at Tateshina wakes no exchange (a puller
    // that kept trying would, with its back-off of 1, 2, 4 s, come back
    // at least twice in 8 s).
    std::thread::sleep(Duration::from_secs(1));
    let before = rounds_served_to(&a, "omachi");
    sent.push(id_of(
        &a.create("knowledge", big("満杯のあいだの最後の記事".into())),
    ));
    std::thread::sleep(Duration::from_secs(8));
    assert_eq!(
        rounds_served_to(&a, "omachi"),
        before,
        "Omachi kept pulling with a full disk"
    );

    // Space comes back: it resumes by itself within seconds (it waits for
    // room, checked every 2 s, not for a back-off that has grown while the
    // disk was full) and catches up.
    std::fs::remove_file(&filler).expect("free the space");
    assert!(
        wait_for(Duration::from_secs(6), || sent
            .iter()
            .all(|id| b.record("knowledge", id).is_some())),
        "Omachi did not catch up: {}",
        b.status()
    );
    assert_eq!(b.status()["storage"]["full"], false);
}
