//! What a local process (or a failing disk) can do to a running node, and
//! must not: a log that cannot be written, made-up HTTP methods, half-sent
//! requests, a login flood (issue 18). Each test runs the real `yui serve`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::json;
use yui_tests::{Ca, Server, client_builder, id_of, init, knowledge, member, wait_for};

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

/// Half-sent requests held open on the API port of a node whose descriptor
/// limit is the 1,024 of a default systemd unit: the node closes them within
/// its header timeout, and meanwhile its API answers and its peer port syncs.
#[test]
fn half_open_api_connections_do_not_starve_the_node() {
    const HELD: usize = 1_100;
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::init(&dir.path().join("ca"), "信州コンソーシアム");
    let a_dir = member(dir.path(), "tateshina", &ca);
    let b_dir = member(dir.path(), "omachi", &ca);
    let mut a = Server::start_peer_under(&a_dir, &["prlimit", "--nofile=1024:1024"]);
    let b = Server::start_peer(&b_dir, "127.0.0.1:0");
    // Omachi dials Tateshina's peer port.
    b.add_peer(a.peer_url());

    let addr = a.base.trim_start_matches("http://").to_owned();
    let opened_at = Instant::now();
    let mut held = Vec::with_capacity(HELD);
    for _ in 0..HELD {
        let Ok(mut tcp) =
            TcpStream::connect_timeout(&addr.parse().expect("address"), Duration::from_millis(500))
        else {
            continue;
        };
        // Headers without their end: the node waits for the rest.
        let _ = tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n");
        held.push(tcp);
    }
    let opened = opened_at.elapsed();

    // A real user, on a fresh connection, while the flood is held.
    a.client = client_builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    let started = Instant::now();
    let record = a.create("knowledge", knowledge("満杯の中で"));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the API answered in {:?}",
        started.elapsed()
    );
    let kid = id_of(&record);
    // And the peer port keeps syncing with the member.
    assert!(
        wait_for(Duration::from_secs(20), || b
            .record("knowledge", &kid)
            .is_some()),
        "the record did not reach the member while the API was flooded"
    );

    // Every held connection is closed by the node within its header timeout
    // (10 s) after it was opened, with some slack for a loaded machine.
    let deadline = opened_at + opened + Duration::from_secs(15);
    let mut still_open = 0;
    for tcp in &mut held {
        let left = deadline.saturating_duration_since(Instant::now());
        tcp.set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .expect("timeout");
        let mut buf = [0u8; 512];
        loop {
            match tcp.read(&mut buf) {
                Ok(0) => break,
                // A 408 or the like before the close: keep reading.
                Ok(_) => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    still_open += 1;
                    break;
                }
                Err(_) => break,
            }
        }
    }
    assert_eq!(
        still_open, 0,
        "connections the node kept open past its timeout"
    );
    assert!(
        a.child.try_wait().expect("try_wait").is_none(),
        "the node is running"
    );
    let (status, _) = a.get("/api/v1/status");
    assert_eq!(status, 200);
}
