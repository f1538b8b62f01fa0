//! What a local process (or a failing disk) can do to a running node, and
//! must not: a log that cannot be written, made-up HTTP methods, half-sent
//! requests, a login flood (issue 18). Each test runs the real `yui serve`.

use std::process::Stdio;
use std::time::Duration;

use serde_json::json;
use yui_tests::{Server, init};

/// A record with a field the schema does not know: refused with 422 and
/// logged ("request refused"), so each call writes a log line.
fn a_logged_refusal(server: &Server) {
    let (status, body) = server
        .post(
            "/api/v1/records/knowledge",
            &json!({"fields": {"nope": "x", "title": "t", "body": "b", "category": "training"}}),
        )
        .expect("post");
    assert_eq!(status, 422, "{body}");
}

/// Logs a few lines into a stderr that cannot take them, then checks the
/// node still answers and is still running.
fn keeps_serving_with_a_failing_log(server: &mut Server) {
    for _ in 0..5 {
        a_logged_refusal(server);
    }
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        server.child.try_wait().expect("try_wait").is_none(),
        "the node died on a log line it could not write"
    );
    let (status, _) = server.get("/api/v1/status");
    assert_eq!(status, 200);
    let metrics = server
        .client
        .get(server.url("/metrics"))
        .send()
        .expect("metrics")
        .text()
        .expect("text");
    let dropped: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("yui_log_lines_dropped_total "))
        .expect("yui_log_lines_dropped_total in /metrics")
        .parse()
        .expect("a number");
    assert!(dropped >= 5, "dropped lines are counted: {dropped}");
}

#[test]
fn the_node_keeps_serving_with_stderr_on_a_full_device() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("tateshina");
    init(&data, "tateshina");
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("/dev/full");
    let mut server = Server::start_with_stderr(&data, &[], Stdio::from(full));
    keeps_serving_with_a_failing_log(&mut server);
    assert!(server.stop().success(), "stops cleanly on SIGTERM");
}

#[test]
fn the_node_keeps_serving_with_stderr_on_a_closed_pipe() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("tateshina");
    init(&data, "tateshina");
    let mut server = Server::start_with_stderr(&data, &[], Stdio::piped());
    // The reader goes away: every later write gets EPIPE.
    drop(server.child.stderr.take());
    keeps_serving_with_a_failing_log(&mut server);
    assert!(server.stop().success(), "stops cleanly on SIGTERM");
}

#[test]
fn made_up_methods_do_not_grow_metrics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("tateshina");
    init(&data, "tateshina");
    let server = Server::start(&data);
    let size = || {
        server
            .client
            .get(server.url("/metrics"))
            .send()
            .expect("metrics")
            .text()
            .expect("text")
    };
    let before = size().len();
    for i in 0..5_000 {
        let method = reqwest::Method::from_bytes(format!("MADEUP{i}").as_bytes()).expect("method");
        let r = server
            .client
            .request(method, server.url("/api/v1/status"))
            .send()
            .expect("send");
        assert_eq!(r.status().as_u16(), 405);
    }
    let after = size();
    assert!(!after.contains("MADEUP"), "a made-up method became a label");
    assert!(
        after.contains("method=\"other\""),
        "made-up methods are counted as other"
    );
    assert!(
        after.len() < before + 10_000,
        "/metrics grew from {before} to {} bytes",
        after.len()
    );
}
