//! Federation between real `yui` processes on 127.0.0.1: what syncs, what
//! stays home, partitions and crashes, and who is refused at the peer port.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use yui_tests::tls;
use yui_tests::{
    Ca, Server, backup_file, id_of, init, install_unchecked, knowledge, member, start_members,
    wait_for, yui, yui_fails, yui_ok,
};

/// Propagation between online peers is ~10 ms; this is the most a test waits.
const CONVERGE: Duration = Duration::from_secs(10);
/// Longest wait for a node to find a peer again after a restart (the
/// back-off between attempts doubles from one second).
const RECONNECT: Duration = Duration::from_secs(30);
/// How long refused nodes get to try (and fail) to deliver.
const REFUSAL_WINDOW: Duration = Duration::from_secs(3);
/// How long a test waits before it asserts that a record did NOT arrive:
/// ~100 times the propagation between online peers, so an absence after it
/// means no sync, not a slow one.
const ABSENCE_WINDOW: Duration = Duration::from_secs(1);

/// A string no other test (or run) writes.
fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos();
    format!(
        "{prefix}-{}-{nanos:x}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or_default()
}

/// Every file under `dir` (recursively).
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read_dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

/// The files among `paths` (directories are walked) whose bytes contain `needle`.
fn files_containing(paths: &[PathBuf], needle: &str) -> Vec<PathBuf> {
    let needle = needle.as_bytes();
    let mut hits = Vec::new();
    for p in paths {
        let files = if p.is_dir() {
            files_under(p)
        } else if p.exists() {
            vec![p.clone()]
        } else {
            Vec::new()
        };
        for f in files {
            let Ok(bytes) = std::fs::read(&f) else {
                continue;
            };
            if bytes.windows(needle.len()).any(|w| w == needle) {
                hits.push(f);
            }
        }
    }
    hits
}

/// The last lines of a node's log (for failure messages).
fn log_tail(server: &Server) -> String {
    let text = std::fs::read_to_string(server.data_dir.with_extension("log")).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

fn refusal_reasons(server: &Server) -> Vec<String> {
    server.status()["refused_connections"]
        .as_array()
        .expect("refused_connections")
        .iter()
        .map(|r| format!("{} from {}", str_of(r, "reason"), str_of(r, "from")))
        .collect()
}

/// How many refused attempts came from `host`, repeats included.
fn refused_from_host(server: &Server, host: &str) -> u64 {
    server.status()["refused_connections"]
        .as_array()
        .expect("refused_connections")
        .iter()
        .filter(|r| str_of(r, "from").starts_with(&format!("{host}:")))
        .map(|r| r["count"].as_u64().expect("count"))
        .sum()
}

/// The status entry of the peer this node dials at `url`.
fn peer_entry(server: &Server, url: &str) -> Value {
    let status = server.status();
    status["peers"]
        .as_array()
        .expect("peers")
        .iter()
        .find(|p| str_of(p, "url").trim_end_matches('/') == url.trim_end_matches('/'))
        .cloned()
        .unwrap_or_else(|| panic!("{url} is not among the peers: {status}"))
}

fn revocation_number(server: &Server) -> u64 {
    server.status()["membership"]["revocation_list_number"]
        .as_u64()
        .expect("revocation_list_number")
}

fn wait_for_record(server: &Server, collection: &str, id: &str, within: Duration) -> Value {
    let mut found = None;
    wait_for(within, || {
        found = server.record(collection, id);
        found.is_some()
    });
    found.unwrap_or_else(|| {
        panic!(
            "{collection}/{id} did not reach {} within {within:?}; its peers: {}\n{}",
            server.data_dir.display(),
            server.status()["peers"],
            log_tail(server)
        )
    })
}

/// Writes a uniquely titled knowledge record; returns (id, title).
fn write_knowledge(server: &Server, prefix: &str) -> (String, String) {
    let title = unique(prefix);
    let rec = server.create("knowledge", knowledge(&title));
    (id_of(&rec), title)
}

// ---------------------------------------------------------------------------
// What syncs and what stays home
// ---------------------------------------------------------------------------

#[test]
fn chain_relays_shared_records_with_their_town_and_local_records_stay_home() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::init(&dir.path().join("ca"), "信州コンソーシアム");
    let ([a_dir, b_dir, c_dir], [a, b, c]) =
        start_members(dir.path(), &ca, ["tateshina", "omachi", "itoigawa"]);
    // Tateshina and Itoigawa never connect: both dial Omachi.
    a.add_peer(b.peer_url());
    c.add_peer(b.peer_url());

    // Personal data first, so that anything sent in order after it would
    // have been sent by the time the shared record arrives.
    let marker = unique("LOCALMARKER");
    let worker = a.create(
        "workers",
        json!({"name": marker, "status": "active", "notes": format!("{marker} の面談記録")}),
    );
    let customer = a.create(
        "customers",
        json!({"organisation": marker, "stage": "prospect", "notes": marker}),
    );
    let (kid, title) = write_knowledge(&a, "立科から");

    let at_c = wait_for_record(&c, "knowledge", &kid, CONVERGE);
    assert_eq!(at_c["fields"]["title"], title.as_str());
    assert_eq!(
        at_c["town"], "tateshina",
        "the origin town survives relaying"
    );
    let at_b = b.record("knowledge", &kid).expect("the relay holds it");
    assert_eq!(at_b["town"], "tateshina");
    // And back the other way, through the same relay.
    let (kid2, _) = write_knowledge(&c, "糸魚川から");
    let at_a = wait_for_record(&a, "knowledge", &kid2, CONVERGE);
    assert_eq!(at_a["town"], "itoigawa");
    let history: Value = a
        .get(&format!("/api/v1/records/knowledge/{kid2}/history"))
        .1;
    let towns: Vec<&str> = history["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .map(|c| str_of(c, "town"))
        .collect();
    assert_eq!(towns, ["itoigawa"], "provenance after relaying: {history}");

    // A later edit of the shared record converges too, so every link has
    // done at least two rounds since the local records were written.
    let (status, _) = a
        .patch(
            &format!("/api/v1/records/knowledge/{kid}"),
            &json!({"fields": {"tags": ["研修", "更新"]}}),
        )
        .expect("patch");
    assert_eq!(status, 200);
    assert!(
        wait_for(CONVERGE, || c
            .record("knowledge", &kid)
            .is_some_and(|r| r["fields"]["tags"] == json!(["研修", "更新"]))),
        "the edit reached Itoigawa"
    );

    // Each peer is known by what its certificate says.
    let listed: Value =
        serde_json::from_str(&yui_ok(&a_dir, &["peer", "list", "--json"])).expect("json");
    let b_status = b.status();
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    assert_eq!(listed[0]["url"], b.peer_url());
    assert_eq!(listed[0]["town"], "omachi");
    assert_eq!(listed[0]["node_id"], b_status["node_id"]);
    assert_eq!(listed[0]["state"], "ok");
    let inbound = b_status["inbound"].to_string();
    assert!(
        inbound.contains("tateshina") && inbound.contains("itoigawa"),
        "Omachi lists who dialled it: {inbound}"
    );

    for (server, town) in [(&b, "omachi"), (&c, "itoigawa")] {
        assert_eq!(
            server.record("workers", &id_of(&worker)),
            None,
            "a worker reached {town}"
        );
        assert_eq!(server.record("customers", &id_of(&customer)), None);
        assert_eq!(server.count("workers"), 0, "{town}");
        assert_eq!(server.count("customers"), 0, "{town}");
        let (_, found) = server.get(&format!("/api/v1/search?q={marker}"));
        assert_eq!(found["items"], json!([]), "{town} finds the marker");
    }

    b.stop();
    c.stop();
    a.stop();
    // Not a byte of it on the other nodes' disks (database, WAL, anything),
    // nor in their logs; the check sees it where it is.
    let here = files_containing(std::slice::from_ref(&a_dir), &marker);
    assert!(
        !here.is_empty(),
        "the scan finds the marker at home (else it proves nothing)"
    );
    let leaked = files_containing(
        &[
            b_dir.clone(),
            c_dir.clone(),
            b_dir.with_extension("log"),
            c_dir.with_extension("log"),
        ],
        &marker,
    );
    assert!(
        leaked.is_empty(),
        "personal data left Tateshina: {leaked:?}"
    );
}

#[test]
fn full_mesh_converges_on_concurrent_writes_at_every_node() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::init(&dir.path().join("ca"), "mesh");
    let towns = ["tateshina", "omachi", "itoigawa"];
    let servers: Vec<Server> = towns
        .iter()
        .map(|t| Server::start_peer(&member(dir.path(), t, &ca), "127.0.0.1:0"))
        .collect();
    for (i, s) in servers.iter().enumerate() {
        for (j, other) in servers.iter().enumerate() {
            if i != j {
                s.add_peer(other.peer_url());
            }
        }
    }
    const PER_NODE: usize = 25;
    let written: Vec<Vec<(String, String)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = servers
            .iter()
            .enumerate()
            .map(|(i, s)| {
                scope.spawn(move || {
                    (0..PER_NODE)
                        .map(|n| write_knowledge(s, &format!("mesh-{i}-{n}")))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("writer"))
            .collect()
    });
    for (s, town) in servers.iter().zip(towns) {
        assert!(
            wait_for(CONVERGE, || s.count("knowledge") == (PER_NODE * 3) as u64),
            "{town} has {} of {} records; peers: {}",
            s.count("knowledge"),
            PER_NODE * 3,
            s.status()["peers"]
        );
        for (origin, records) in towns.iter().zip(&written) {
            for (id, title) in records {
                let r = s
                    .record("knowledge", id)
                    .unwrap_or_else(|| panic!("{town} lacks {id}"));
                assert_eq!(r["fields"]["title"], title.as_str());
                assert_eq!(r["town"], *origin, "{town}: the origin of {id}");
            }
        }
    }
    for s in &servers {
        for p in s.status()["peers"].as_array().expect("peers") {
            assert_eq!(p["state"], "ok", "{p}");
            assert!(p["town"].is_string(), "the peer's town is known: {p}");
        }
    }
}

// ---------------------------------------------------------------------------
// Partitions, crashes and relays that go away
// ---------------------------------------------------------------------------

fn body_of(server: &Server, id: &str) -> String {
    server
        .record("knowledge", id)
        .map(|r| str_of(&r["fields"], "body").to_owned())
        .unwrap_or_default()
}

fn set_body(server: &Server, id: &str, body: &str) {
    let (status, resp) = server
        .patch(
            &format!("/api/v1/records/knowledge/{id}"),
            &json!({"fields": {"body": body}}),
        )
        .expect("patch");
    assert_eq!(status, 200, "{resp}");
}

#[test]
fn edits_to_the_same_text_on_both_sides_of_a_partition_both_survive() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::init(&dir.path().join("ca"), "partition");
    let ([_, b_dir, _], [a, b, c]) =
        start_members(dir.path(), &ca, ["tateshina", "omachi", "itoigawa"]);
    // Tateshina dials Omachi; Itoigawa dials Tateshina. Omachi dials nobody.
    a.add_peer(b.peer_url());
    c.add_peer(a.peer_url());

    let original = "一行目: 研修の計画\n二行目: 顧客への連絡\n三行目: 広報の予定\n";
    let rec = a.create(
        "knowledge",
        json!({"title": "分断テスト", "body": original, "category": "training"}),
    );
    let id = id_of(&rec);
    for s in [&b, &c] {
        assert!(
            wait_for(CONVERGE, || body_of(s, &id) == original),
            "{} got the record",
            s.data_dir.display()
        );
    }

    // Omachi goes away.
    let b_url = b.peer_url().to_owned();
    assert_eq!(b.stop().code(), Some(0));
    let at_a = "一行目: 研修の計画（立科で追記）\n二行目: 顧客への連絡\n三行目: 広報の予定\n";
    set_body(&a, &id, at_a);
    assert!(wait_for(CONVERGE, || body_of(&c, &id) == at_a));

    // Omachi comes back where nobody can reach it, and edits the same body.
    let b = Server::start_peer(&b_dir, "127.0.0.1:0");
    assert_ne!(b.peer_url(), b_url);
    assert_eq!(body_of(&b, &id), original, "still partitioned");
    let at_b = "一行目: 研修の計画\n二行目: 顧客への連絡\n三行目: 広報の予定（大町で追記）\n";
    set_body(&b, &id, at_b);
    assert_eq!(b.stop().code(), Some(0));

    // Heal: Omachi is back at the address Tateshina knows.
    let b = Server::restart_peer(&b_dir, &b_url);
    let merged = "一行目: 研修の計画（立科で追記）\n二行目: 顧客への連絡\n三行目: 広報の予定（大町で追記）\n";
    for (s, town) in [(&a, "tateshina"), (&b, "omachi"), (&c, "itoigawa")] {
        assert!(
            wait_for(RECONNECT, || body_of(s, &id) == merged),
            "{town} holds {:?}, not both edits",
            body_of(s, &id)
        );
    }
    let history: Value = c.get(&format!("/api/v1/records/knowledge/{id}/history")).1;
    let towns: Vec<&str> = history["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .map(|c| str_of(c, "town"))
        .collect();
    assert!(
        towns.contains(&"tateshina") && towns.contains(&"omachi"),
        "Itoigawa sees who made which change: {history}"
    );
}

/// Text of about `len` bytes that compresses poorly (so a record is big on
/// the wire too).
fn filler(seed: u64, len: usize) -> String {
    const WORDS: [&str; 8] = [
        "研修", "顧客", "広報", "受注", "面談", "計画", "記録", "報告",
    ];
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407)
        | 1;
    let mut s = String::with_capacity(len + 16);
    while s.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.push_str(WORDS[(x % 8) as usize]);
        s.push_str(&format!("{:x} ", x >> 40));
    }
    s
}

/// Writes `n` knowledge records of about 4 KB at `server`; returns their
/// (id, title) and how long the writes took.
fn write_bulk(server: &Server, from: usize, n: usize) -> (Vec<(String, String)>, Duration) {
    let t = Instant::now();
    let written = (from..from + n)
        .map(|i| {
            let title = format!("bulk-{i:03}");
            let rec = server.create(
                "knowledge",
                json!({"title": title, "body": filler(i as u64, 4_000), "category": "other"}),
            );
            (id_of(&rec), title)
        })
        .collect();
    (written, t.elapsed())
}

fn assert_all_there(server: &Server, written: &[(String, String)]) {
    assert_eq!(server.count("knowledge"), written.len() as u64);
    for (id, title) in written {
        let r = server
            .record("knowledge", id)
            .unwrap_or_else(|| panic!("{id} ({title}) lost"));
        assert_eq!(r["fields"]["title"], title.as_str());
    }
}

#[test]
fn kill_9_in_the_middle_of_a_sync_loses_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::init(&dir.path().join("ca"), "crash");
    let ([a_dir, b_dir], [a, b]) = start_members(dir.path(), &ca, ["tateshina", "omachi"]);
    let b_url = b.peer_url().to_owned();

    // 1. The receiver dies. The transfer takes about as long as the writes
    //    did; Omachi is killed halfway through it.
    let (mut written, took) = write_bulk(&a, 0, 300);
    a.add_peer(&b_url);
    std::thread::sleep(took / 2);
    let at_kill = b.count("knowledge");
    b.kill_9();
    let b = Server::restart_peer(&b_dir, &b_url);
    let after_restart = b.count("knowledge");
    assert!(
        wait_for(RECONNECT, || b.count("knowledge") == 300),
        "Omachi has {} of 300 records; Tateshina's view: {}",
        b.count("knowledge"),
        a.status()["peers"]
    );
    eprintln!("receiver killed: {at_kill} records at the kill, {after_restart} after the restart");
    assert_all_there(&b, &written);

    // 2. The sender dies: 300 more pile up while Omachi is away; Tateshina
    //    is killed halfway through the sync that follows its return.
    assert_eq!(b.stop().code(), Some(0));
    let (more, took) = write_bulk(&a, 300, 300);
    written.extend(more);
    let b = Server::restart_peer(&b_dir, &b_url);
    let syncing = {
        let (base, token) = (a.base.clone(), a.token.clone());
        std::thread::spawn(move || {
            let client = yui_tests::client_builder().build().expect("client");
            let _ = client
                .post(format!("{base}/api/v1/sync"))
                .bearer_auth(token)
                .send();
        })
    };
    std::thread::sleep(took / 2);
    let at_kill = b.count("knowledge");
    a.kill_9();
    syncing.join().expect("sync thread");
    let a = Server::start_peer(&a_dir, "127.0.0.1:0");
    assert!(
        wait_for(RECONNECT, || b.count("knowledge") == 600),
        "Omachi has {} of 600 records; Tateshina's view: {}",
        b.count("knowledge"),
        a.status()["peers"]
    );
    eprintln!("sender killed: {at_kill} records at the kill");
    assert_all_there(&b, &written);
    assert_all_there(&a, &written);
}

/// A catch-up of several batches is pipelined: Omachi asks for the next
/// batch while it stores the last (Tateshina counts those requests). Killing
/// Omachi in the middle of it loses nothing: each request confirmed only
/// what was stored, so Tateshina sends again what the kill dropped.
#[test]
fn a_pipelined_catch_up_killed_halfway_loses_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::init(&dir.path().join("ca"), "pipeline");
    let ([_, b_dir], [a, b]) = start_members(dir.path(), &ca, ["tateshina", "omachi"]);
    let b_url = b.peer_url().to_owned();
    // Five batches of the reference sender's 400, small records. The first
    // exchange is an ordinary one; the pipeline runs from the second.
    let written: Vec<(String, String)> = (0..2_000)
        .map(|i| {
            let title = format!("pipe-{i:04}");
            let rec = a.create(
                "knowledge",
                json!({"title": title, "body": filler(i as u64, 300), "category": "other"}),
            );
            (id_of(&rec), title)
        })
        .collect();
    b.add_peer(a.peer_url());
    assert!(
        wait_for(RECONNECT, || b.count("knowledge") > 400),
        "the pipeline did not start: {}",
        b.status()["peers"]
    );
    let at_kill = b.count("knowledge");
    b.kill_9();
    let b = Server::restart_peer(&b_dir, &b_url);
    assert!(
        wait_for(RECONNECT, || b.count("knowledge") == 2_000),
        "Omachi has {} of 2000 records: {}",
        b.count("knowledge"),
        b.status()["peers"]
    );
    eprintln!("killed with {at_kill} of 2000 records stored");
    assert_all_there(&b, &written);
    let pulled_ahead: u64 = a.status()["inbound"]
        .as_array()
        .expect("inbound")
        .iter()
        .map(|s| s["pulled_ahead"].as_u64().expect("pulled_ahead"))
        .sum();
    assert!(
        pulled_ahead > 0,
        "no request pulled ahead: {}",
        a.status()["inbound"]
    );
}

#[test]
fn records_written_while_the_relay_is_down_reach_the_far_side_when_it_returns() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::init(&dir.path().join("ca"), "relay");
    let a = Server::start_peer(&member(dir.path(), "tateshina", &ca), "127.0.0.1:0");
    let b_dir = member(dir.path(), "omachi", &ca);
    let b = Server::start_peer(&b_dir, "127.0.0.1:0");
    let c = Server::start_peer(&member(dir.path(), "itoigawa", &ca), "127.0.0.1:0");
    let b_url = b.peer_url().to_owned();
    a.add_peer(&b_url);
    c.add_peer(&b_url);
    // The chain works before the relay goes away.
    written_and_received(&a, &c, "before");

    assert_eq!(b.stop().code(), Some(0));
    let (written, _) = write_bulk(&a, 0, 200);
    // Tateshina noticed: its peer is failing, with a reason.
    assert!(
        wait_for(CONVERGE, || peer_entry(&a, &b_url)["state"] == "failing"),
        "{}",
        peer_entry(&a, &b_url)
    );
    let error = peer_entry(&a, &b_url)["last_error"].to_string();
    assert!(
        error.contains(b_url.trim_start_matches("https://")),
        "{error}"
    );
    assert_eq!(c.count("knowledge"), 1, "nothing arrives without the relay");
    // `yui sync` says so, naming the peer, and fails.
    let out = yui(&a.data_dir, &["sync"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("FAILED") && text.contains(&b_url), "{text}");

    let b = Server::restart_peer(&b_dir, &b_url);
    assert!(
        wait_for(RECONNECT, || c.count("knowledge") == 201),
        "Itoigawa has {} of 201; Omachi has {}",
        c.count("knowledge"),
        b.count("knowledge")
    );
    for (id, title) in &written {
        let r = c.record("knowledge", id).expect("relayed");
        assert_eq!(r["fields"]["title"], title.as_str());
        assert_eq!(r["town"], "tateshina");
    }
    assert!(wait_for(CONVERGE, || peer_entry(&a, &b_url)["state"] == "ok"));
    assert!(wait_for(CONVERGE, || peer_entry(&c, &b_url)["state"] == "ok"));
    let text = yui_ok(&a.data_dir, &["sync"]);
    assert!(text.contains("(omachi): ok"), "{text}");

    // Removing the relay on a running node takes effect at once.
    yui_ok(&c.data_dir, &["peer", "remove", &b_url]);
    assert_eq!(c.status()["peers"], json!([]));
    let gone = written_and_received(&a, &b, "after-removal");
    std::thread::sleep(ABSENCE_WINDOW);
    assert_eq!(
        c.record("knowledge", &gone),
        None,
        "a removed peer still syncs"
    );
}

// ---------------------------------------------------------------------------
// Who the peer port refuses
// ---------------------------------------------------------------------------

/// `host:port` of a peer URL.
fn addr_of(peer_url: &str) -> String {
    peer_url
        .trim_start_matches("https://")
        .trim_end_matches('/')
        .to_owned()
}

/// A TLS client that trusts the consortium CA (and so would accept the
/// node) but presents no certificate of its own.
fn tls_without_client_cert(ca: &Ca) -> Arc<rustls::ClientConfig> {
    tls::without_client_certificate(&ca.cert_path())
}

/// Dials the peer port with no client certificate and asks who is there.
/// Returns the local address used, and what came back (never an answer).
fn hello_without_certificate(peer_url: &str, ca: &Ca) -> (String, Result<String, String>) {
    let tcp = TcpStream::connect(addr_of(peer_url)).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let local = tcp.local_addr().expect("local").to_string();
    let conn = rustls::ClientConnection::new(tls_without_client_cert(ca), tls::node_name())
        .expect("client");
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let result = tls
        .write_all(
            b"GET /yui/v1/hello HTTP/1.1\r\nHost: node.yui.invalid\r\nConnection: close\r\n\r\n",
        )
        .and_then(|()| {
            let mut buf = Vec::new();
            tls.read_to_end(&mut buf)?;
            Ok(String::from_utf8_lossy(&buf).into_owned())
        })
        .map_err(|e| e.to_string());
    (local, result)
}

#[test]
fn nodes_without_a_valid_consortium_certificate_are_refused_and_deliver_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::init(&dir.path().join("ca"), "信州コンソーシアム");
    let other_ca = Ca::init(&dir.path().join("other-ca"), "よそのコンソーシアム");
    let victim = Server::start_peer(&member(dir.path(), "omachi", &ca), "127.0.0.1:0");
    let victim_url = victim.peer_url().to_owned();

    // A certificate of our CA that has expired (installed by hand: `yui cert
    // install` refuses it).
    let expired_dir = dir.path().join("shiojiri");
    init(&expired_dir, "shiojiri");
    let expired_cert = ca.issue_expired(&expired_dir, "shiojiri");
    let err = yui_fails(
        &expired_dir,
        &[
            "cert",
            "install",
            "--cert",
            expired_cert.to_str().expect("utf8"),
            "--ca-cert",
            ca.cert_path().to_str().expect("utf8"),
        ],
    );
    assert!(err.contains("not valid now"), "{err}");
    install_unchecked(&expired_dir, &expired_cert, &ca.cert_path());

    // A certificate from another CA, by a node that trusts ours (so it is
    // the victim that must say no)…
    let foreign_dir = dir.path().join("suzaka");
    init(&foreign_dir, "suzaka");
    let foreign_cert = other_ca.issue(&foreign_dir, 30);
    install_unchecked(&foreign_dir, &foreign_cert, &ca.cert_path());
    // …and a node of the other consortium, installed the regular way.
    let stranger_dir = member(dir.path(), "nagano", &other_ca);

    let bad: Vec<(&str, Server)> = [
        ("expired", &expired_dir),
        ("foreign", &foreign_dir),
        ("stranger", &stranger_dir),
    ]
    .into_iter()
    .map(|(what, d)| (what, Server::start_peer(d, "127.0.0.1:0")))
    .collect();
    let mut planted = Vec::new();
    for (what, server) in &bad {
        server.add_peer(&victim_url);
        let (id, _) = write_knowledge(server, what);
        planted.push((*what, id));
    }

    // And a client with no certificate at all: refused at the handshake.
    let (no_cert_from, answer) = hello_without_certificate(&victim_url, &ca);
    match &answer {
        Ok(text) => assert!(
            text.is_empty(),
            "a client without a certificate got an answer: {text}"
        ),
        Err(e) => assert!(
            e.contains("CertificateRequired") || e.contains("alert"),
            "{e}"
        ),
    }

    // The victim says why it refused each of them.
    let expected = [
        ("expired", "certificate expired"),
        ("foreign", "UnknownIssuer"),
        // The stranger does not trust us either, and hangs up first.
        ("stranger", "UnknownCA"),
    ];
    let mut reasons = Vec::new();
    let all_seen = wait_for(CONVERGE, || {
        reasons = refusal_reasons(&victim);
        expected
            .iter()
            .all(|(_, why)| reasons.iter().any(|r| r.contains(why)))
            && reasons.iter().any(|r| {
                r.ends_with(&format!("from {no_cert_from}")) && r.contains("no certificate")
            })
    });
    assert!(all_seen, "refusals recorded: {reasons:#?}");

    std::thread::sleep(REFUSAL_WINDOW);
    for (what, id) in &planted {
        assert_eq!(
            victim.record("knowledge", id),
            None,
            "the {what} node's record arrived"
        );
    }
    assert_eq!(victim.count("knowledge"), 0);
    let status = victim.status();
    assert_eq!(status["inbound"], json!([]), "nobody got in: {status}");
    // The expired node knows what is wrong with it.
    let expired = &bad[0].1;
    let warnings = expired.status()["membership"]["warnings"].to_string();
    assert!(warnings.contains("expired"), "{warnings}");
    // And the victim is still fine.
    let (id, _) = write_knowledge(&victim, "still-fine");
    assert!(victim.record("knowledge", &id).is_some());
}

fn import_revocations(server: &Server, list: &Path) -> String {
    yui_ok(
        &server.data_dir,
        &["revocations", "import", list.to_str().expect("utf8")],
    )
}

#[test]
fn a_revoked_node_is_refused_even_on_a_connection_opened_before_and_the_list_spreads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::init(&dir.path().join("ca"), "信州コンソーシアム");
    let victim = Server::start_peer(&member(dir.path(), "omachi", &ca), "127.0.0.1:0");
    let good = Server::start_peer(&member(dir.path(), "itoigawa", &ca), "127.0.0.1:0");
    let revoked = Server::start_peer(&member(dir.path(), "tateshina", &ca), "127.0.0.1:0");
    // A member revoked before it ever connects.
    let never_dir = member(dir.path(), "shiojiri", &ca);
    let victim_url = victim.peer_url().to_owned();
    good.add_peer(&victim_url);
    revoked.add_peer(&victim_url);

    // Before the revocation, the soon-revoked node syncs like anyone.
    let before = written_and_received(&revoked, &victim, "before-revocation");
    wait_for_record(&good, "knowledge", &before, CONVERGE);
    assert_eq!(revocation_number(&victim), 0);
    assert_eq!(revocation_number(&good), 0);

    ca.revoke_town("tateshina");
    let list = ca.revoke_town("shiojiri");
    // Imported on the running victim: no restart.
    let out = import_revocations(&victim, &list);
    assert!(out.contains("number 2"), "{out}");
    assert_eq!(revocation_number(&victim), 2);
    let again = import_revocations(&victim, &list);
    assert!(again.contains("not newer"), "{again}");

    // The revoked node writes on; its pooled connection does not help it.
    let (after, _) = write_knowledge(&revoked, "after-revocation");
    let never = Server::start_peer(&never_dir, "127.0.0.1:0");
    never.add_peer(&victim_url);
    let (never_id, _) = write_knowledge(&never, "never-admitted");

    let mut reasons = Vec::new();
    assert!(
        wait_for(CONVERGE, || {
            reasons = refusal_reasons(&victim);
            reasons
                .iter()
                .any(|r| r.contains("revoked") && r.contains("tateshina"))
                && reasons
                    .iter()
                    .any(|r| r.contains("revoked") && r.contains("shiojiri"))
        }),
        "refusals recorded: {reasons:#?}"
    );
    // The revoked node is told why.
    assert!(
        wait_for(CONVERGE, || peer_entry(&revoked, &victim_url)["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("revoked"))),
        "{}",
        peer_entry(&revoked, &victim_url)
    );
    std::thread::sleep(REFUSAL_WINDOW);
    for (what, id) in [("revoked", &after), ("never admitted", &never_id)] {
        assert_eq!(
            victim.record("knowledge", id),
            None,
            "the {what} node's record arrived"
        );
        assert_eq!(
            good.record("knowledge", id),
            None,
            "the {what} node's record was relayed"
        );
    }

    // The list spreads by sync: the next round with the victim carries it.
    written_and_received(&good, &victim, "good-news");
    assert!(
        wait_for(CONVERGE, || revocation_number(&good) == 2),
        "Itoigawa still has revocation list {}",
        revocation_number(&good)
    );
    // Installed for good: it survives a restart.
    assert_eq!(good.stop().code(), Some(0));
    let good = Server::start_peer(&dir.path().join("itoigawa"), "127.0.0.1:0");
    assert_eq!(revocation_number(&good), 2);
}

// ---------------------------------------------------------------------------
// Garbage on the peer port
// ---------------------------------------------------------------------------

/// The first bytes a real TLS client sends (its ClientHello).
fn client_hello(ca: &Ca) -> Vec<u8> {
    let mut conn = rustls::ClientConnection::new(tls_without_client_cert(ca), tls::node_name())
        .expect("client");
    let mut hello = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut hello).expect("write_tls");
    }
    assert!(hello.len() > 100, "a ClientHello");
    hello
}

/// Connects, sends `bytes`, and reads what comes back until the node hangs
/// up (or 10 s pass). Returns the local address and the answer.
fn send_raw(peer_url: &str, bytes: &[u8], close_write: bool) -> (String, Vec<u8>) {
    let mut tcp = TcpStream::connect(addr_of(peer_url)).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let local = tcp.local_addr().expect("local").to_string();
    // The node may hang up before reading everything: a failed write is fine.
    let _ = tcp.write_all(bytes);
    if close_write {
        let _ = tcp.shutdown(std::net::Shutdown::Write);
    }
    let mut answer = Vec::new();
    let _ = tcp.read_to_end(&mut answer);
    (local, answer)
}

#[test]
fn garbage_on_the_peer_port_is_refused_and_the_node_keeps_syncing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::init(&dir.path().join("ca"), "信州コンソーシアム");
    let victim = Server::start_peer(&member(dir.path(), "omachi", &ca), "127.0.0.1:0");
    let good = Server::start_peer(&member(dir.path(), "itoigawa", &ca), "127.0.0.1:0");
    let url = victim.peer_url().to_owned();
    good.add_peer(&url);
    written_and_received(&good, &victim, "before-garbage");

    // Connections that stall halfway through a ClientHello and stay open
    // must not hold up anyone else.
    let hello = client_hello(&ca);
    let stalled: Vec<TcpStream> = (0..4)
        .map(|_| {
            let mut tcp = TcpStream::connect(addr_of(&url)).expect("connect");
            tcp.write_all(&hello[..hello.len() / 2]).expect("write");
            tcp
        })
        .collect();

    let random: Vec<u8> = filler(7, 4096)
        .into_bytes()
        .iter()
        .map(|b| b.wrapping_mul(31) ^ 0x5a)
        .collect();
    let mut sent = Vec::new();
    let (from, answer) = send_raw(&url, &random, true);
    sent.push(("random bytes", from, answer));
    let (from, answer) = send_raw(
        &url,
        b"GET /yui/v1/hello HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
        false,
    );
    sent.push(("plain HTTP", from, answer));
    let (from, answer) = send_raw(
        &url,
        b"POST /yui/v1/sync HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\n\r\nhello",
        false,
    );
    sent.push(("plain HTTP sync", from, answer));
    let (from, answer) = send_raw(&url, &hello[..hello.len() / 2], true);
    sent.push(("half a ClientHello", from, answer));
    let (from, answer) = send_raw(&url, &hello[..5], true);
    sent.push(("a TLS record header", from, answer));
    // A whole ClientHello followed by garbage instead of the rest.
    let mut hello_then_junk = hello.clone();
    hello_then_junk.extend_from_slice(&random[..512]);
    let (from, answer) = send_raw(&url, &hello_then_junk, true);
    sent.push(("ClientHello then garbage", from, answer));

    for (what, _, answer) in &sent {
        let text = String::from_utf8_lossy(answer);
        assert!(
            !text.contains("protocol_version") && !text.contains("HTTP/1.1 200"),
            "{what} got an answer: {text}"
        );
    }
    // Healthy, and still syncing both ways while the stalled ones hang on.
    let (health, _) = victim.get("/healthz");
    assert_eq!(health, 200);
    written_and_received(&good, &victim, "after-garbage");
    written_and_received(&victim, &good, "reply-after-garbage");
    let attempts = sent.len() + stalled.len();
    drop(stalled);

    // Each refusal is on record, the stalled ones' too: repeats of one
    // reason from one host are counted in one entry.
    let mut counted = 0;
    let recorded = wait_for(CONVERGE, || {
        counted = refused_from_host(&victim, "127.0.0.1");
        counted >= attempts as u64
    });
    assert!(
        recorded,
        "{counted} refusals counted for {attempts} attempts: {:#?}",
        refusal_reasons(&victim)
    );
    // The entry shows the latest address. One more attempt, once all the
    // others are on record (the stalled ones end when dropped, after the
    // rest, so the last of `sent` need not be the latest).
    let (last_from, _) = send_raw(&url, &random, true);
    let mut reasons = Vec::new();
    let shown = wait_for(CONVERGE, || {
        reasons = refusal_reasons(&victim);
        reasons
            .iter()
            .any(|r| r.ends_with(&format!("from {last_from}")))
    });
    assert!(
        shown,
        "the latest attempt's address is not on record: {reasons:#?}"
    );
    assert_eq!(peer_entry(&good, &url)["state"], "ok");
    assert_eq!(victim.stop().code(), Some(0), "and it stops cleanly");
}

/// Writes a knowledge record at `writer` and waits until `reader` has it;
/// returns its id.
fn written_and_received(writer: &Server, reader: &Server, title: &str) -> String {
    let (id, _) = write_knowledge(writer, title);
    wait_for_record(reader, "knowledge", &id, CONVERGE);
    id
}

/// The CA revokes Tateshina, and the victim imports the list.
fn revoke_tateshina(ca: &Ca, victim: &Server) {
    let list = ca.revoke_town("tateshina");
    import_revocations(victim, &list);
}

/// A fresh consortium with a victim (Omachi) and the member it will revoke
/// (Tateshina), both running.
fn victim_and_member_to_revoke() -> (tempfile::TempDir, Ca, Server, Server) {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::init(&dir.path().join("ca"), "信州コンソーシアム");
    let victim = Server::start_peer(&member(dir.path(), "omachi", &ca), "127.0.0.1:0");
    let revoked = Server::start_peer(&member(dir.path(), "tateshina", &ca), "127.0.0.1:0");
    (dir, ca, victim, revoked)
}

#[test]
fn a_long_poll_open_at_the_revocation_delivers_nothing_after_it() {
    let (_dir, ca, victim, revoked) = victim_and_member_to_revoke();
    revoked.add_peer(victim.peer_url());
    written_and_received(&victim, &revoked, "before-revocation");

    revoke_tateshina(&ca, &victim);
    // The revoked node's long poll, opened before the revocation, is still
    // waiting at the victim for news. The victim writes.
    let (secret, _) = write_knowledge(&victim, "after-revocation");
    std::thread::sleep(REFUSAL_WINDOW);
    assert_eq!(
        revoked.record("knowledge", &secret),
        None,
        "a record written after the revocation reached the revoked node"
    );
}

#[test]
fn a_revoked_peer_that_we_dial_is_cut_off() {
    let (_dir, ca, victim, revoked) = victim_and_member_to_revoke();
    // This time the victim dials the node that will be revoked.
    victim.add_peer(revoked.peer_url());
    written_and_received(&revoked, &victim, "before-revocation");
    written_and_received(&victim, &revoked, "before-revocation-2");

    revoke_tateshina(&ca, &victim);
    // Answering the long poll that was open at the revocation…
    let (theirs_first, _) = write_knowledge(&revoked, "theirs-after-1");
    // Long enough for that answer to go out on the poll that was open, so
    // the next write travels on a request made after the revocation.
    std::thread::sleep(ABSENCE_WINDOW);
    // …and on requests the victim makes after the revocation.
    let (theirs_later, _) = write_knowledge(&revoked, "theirs-after-2");
    let (ours, _) = write_knowledge(&victim, "ours-after");
    std::thread::sleep(REFUSAL_WINDOW);
    let leaks = [
        (
            "their record answering the open long poll",
            victim.record("knowledge", &theirs_first).is_some(),
        ),
        (
            "their record on a later pull",
            victim.record("knowledge", &theirs_later).is_some(),
        ),
        (
            "our record pushed to the revoked node",
            revoked.record("knowledge", &ours).is_some(),
        ),
    ];
    let leaked: Vec<&str> = leaks.iter().filter(|(_, l)| *l).map(|(w, _)| *w).collect();
    assert!(
        leaked.is_empty(),
        "after the revocation, still exchanged with the revoked node: {leaked:?}; its status: {}",
        peer_entry(&victim, revoked.peer_url())
    );
    let entry = peer_entry(&victim, revoked.peer_url());
    assert_eq!(entry["state"], "failing", "{entry}");
}

#[test]
fn a_peer_that_refuses_us_at_first_contact_shows_as_failing_with_the_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::init(&dir.path().join("ca"), "信州コンソーシアム");
    let victim = Server::start_peer(&member(dir.path(), "omachi", &ca), "127.0.0.1:0");
    let expired_dir = dir.path().join("shiojiri");
    init(&expired_dir, "shiojiri");
    let cert = ca.issue_expired(&expired_dir, "shiojiri");
    install_unchecked(&expired_dir, &cert, &ca.cert_path());
    let expired = Server::start_peer(&expired_dir, "127.0.0.1:0");
    expired.add_peer(victim.peer_url());
    assert!(
        wait_for(CONVERGE, || {
            let p = peer_entry(&expired, victim.peer_url());
            p["state"] == "failing"
                && p["last_error"]
                    .as_str()
                    .is_some_and(|e| e.contains("CertificateExpired"))
        }),
        "{}",
        peer_entry(&expired, victim.peer_url())
    );
}

#[test]
fn a_node_restored_from_a_backup_catches_up_both_ways() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::init(&dir.path().join("ca"), "信州コンソーシアム");
    let b_dir = member(dir.path(), "omachi", &ca);
    let a = Server::start_peer(&member(dir.path(), "tateshina", &ca), "127.0.0.1:0");
    let b = Server::start_peer(&b_dir, "127.0.0.1:0");
    let b_url = b.peer_url().to_owned();
    a.add_peer(&b_url);
    written_and_received(&b, &a, "before-backup");

    let backup = backup_file(dir.path(), "omachi.backup");
    yui_ok(&b_dir, &["backup", backup.to_str().expect("utf8")]);
    // After the backup: Omachi writes (Tateshina receives it) and receives.
    let (lost_own, _) = write_knowledge(&b, "written-after-backup");
    let (lost_received, _) = write_knowledge(&a, "received-after-backup");
    wait_for_record(&a, "knowledge", &lost_own, CONVERGE);
    wait_for_record(&b, "knowledge", &lost_received, CONVERGE);
    b.stop();

    yui_ok(&b_dir, &["restore", backup.to_str().expect("utf8")]);
    let b = Server::restart_peer(&b_dir, &b_url);
    assert_eq!(
        b.record("knowledge", &lost_own),
        None,
        "the restore went back in time"
    );
    // A write at a feed position Tateshina has already read past.
    let (fresh, _) = write_knowledge(&b, "after-restore");
    wait_for_record(&a, "knowledge", &fresh, RECONNECT);
    // What Omachi lost comes back from Tateshina.
    wait_for_record(&b, "knowledge", &lost_own, RECONNECT);
    wait_for_record(&b, "knowledge", &lost_received, RECONNECT);
    assert_eq!(a.count("knowledge"), b.count("knowledge"));
}
