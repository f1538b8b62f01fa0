//! Fifty `kill -9`s in a row in a three-town mesh under heavy sync: writers
//! at all three nodes create and edit shared records concurrently while one
//! node, picked at random, is killed at a random moment and restarted on the
//! same peer port. Afterwards every node holds the same shared records, every
//! acknowledged write is there, and no local record left its town.
//!
//! The schedule comes from a seed, printed at the start; set
//! `YUI_CRASH_SEED` to replay one (the writers' timing still varies).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
// A seeded generator, so a failing schedule can be replayed.
use yui_tests::rng::SplitMix64 as Rng;
use yui_tests::{Ca, Server, member};

const TOWNS: [&str; 3] = ["tateshina", "omachi", "itoigawa"];
const KILLS: usize = 50;
/// How long a node runs between a (re)start and its next kill, at most.
const MAX_UPTIME_MS: u64 = 1_200;
/// How long the nodes get to agree once the writers stop.
const CONVERGE: Duration = Duration::from_secs(90);

/// Where a town's API answers now (`None` while it is down).
#[derive(Clone)]
struct Endpoint {
    base: String,
    token: String,
}

/// What the writers had acknowledged (201 or 200).
#[derive(Default)]
struct Acked {
    /// (town index, id, title) of shared records created.
    creates: Vec<(usize, String, String)>,
    /// Per town: the ids of the shared records it created (edit targets).
    created_at: [Vec<String>; 3],
    /// (town index, id) of local records created.
    locals: Vec<(usize, String)>,
    /// id → (town index that edits `tags`, highest acknowledged revision).
    tags: HashMap<String, (usize, u64)>,
    /// id → (town index that edits `body`, highest acknowledged revision).
    bodies: HashMap<String, (usize, u64)>,
    failed_requests: u64,
}

struct Shared {
    endpoints: RwLock<[Option<Endpoint>; 3]>,
    acked: Mutex<Acked>,
    stop: AtomicBool,
}

impl Shared {
    fn endpoint(&self, town: usize) -> Option<Endpoint> {
        self.endpoints.read().expect("lock")[town].clone()
    }

    fn acked(&self) -> std::sync::MutexGuard<'_, Acked> {
        self.acked.lock().expect("lock")
    }
}

fn client() -> reqwest::blocking::Client {
    yui_tests::client_builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

/// Sends a write; `Some((status, body))` when the node answered at all.
fn send(
    client: &reqwest::blocking::Client,
    ep: &Endpoint,
    method: reqwest::Method,
    path: &str,
    body: &Value,
) -> Option<(u16, Value)> {
    let r = client
        .request(method, format!("{}{path}", ep.base))
        .bearer_auth(&ep.token)
        .json(body)
        .send()
        .ok()?;
    let status = r.status().as_u16();
    // A node killed while sending its answer gives a status and no body:
    // not an acknowledgement.
    let body: Value = r.json().ok()?;
    Some((status, body))
}

/// A revision number at the start of a value ("r17 …" or "17").
fn revision(v: &Value) -> u64 {
    v.as_str()
        .map(|s| s.trim_start_matches('r'))
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// Creates shared and local records at `town` and keeps editing the `tags`
/// of the shared ones it created.
fn creator(shared: &Shared, town: usize, seed: u64) {
    let client = client();
    let mut rng = Rng(seed);
    let name = TOWNS[town];
    let mut n = 0u64;
    while !shared.stop.load(Ordering::Relaxed) {
        let Some(ep) = shared.endpoint(town) else {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        };
        n += 1;
        match rng.below_u64(10) {
            // Mostly new shared records…
            0..=3 => {
                let title = format!("crash-{name}-{n}");
                let fields = json!({
                    "title": title,
                    "body": format!("r0 {name} の共有ナレッジ。研修と顧客対応の記録。"),
                    "category": "training",
                    "tags": ["0"],
                });
                match send(
                    &client,
                    &ep,
                    reqwest::Method::POST,
                    "/api/v1/records/knowledge",
                    &json!({ "fields": fields }),
                ) {
                    Some((201, body)) => {
                        let id = body["id"].as_str().expect("id").to_owned();
                        let mut acked = shared.acked();
                        acked.creates.push((town, id.clone(), title));
                        acked.created_at[town].push(id);
                    }
                    Some((status, body)) if status < 500 => {
                        panic!("{name}: create answered {status}: {body}")
                    }
                    _ => shared.acked().failed_requests += 1,
                }
            }
            // …a local record now and then (personal data: stays home)…
            4 => {
                let marker = format!("LOCAL-{name}-{n}");
                match send(
                    &client,
                    &ep,
                    reqwest::Method::POST,
                    "/api/v1/records/workers",
                    &json!({"fields": {"name": marker, "status": "active", "notes": format!("{marker} の面談記録")}}),
                ) {
                    Some((201, body)) => {
                        let id = body["id"].as_str().expect("id").to_owned();
                        shared.acked().locals.push((town, id));
                    }
                    Some((status, body)) if status < 500 => {
                        panic!("{name}: local create answered {status}: {body}")
                    }
                    _ => shared.acked().failed_requests += 1,
                }
            }
            // …and edits of the tags of its own shared records.
            _ => {
                let target = {
                    let acked = shared.acked();
                    let own = &acked.created_at[town];
                    if own.is_empty() {
                        continue;
                    }
                    own[rng.below_u64(own.len() as u64) as usize].clone()
                };
                match send(
                    &client,
                    &ep,
                    reqwest::Method::PATCH,
                    &format!("/api/v1/records/knowledge/{target}"),
                    &json!({"fields": {"tags": [n.to_string()]}}),
                ) {
                    Some((200, _)) => {
                        let mut acked = shared.acked();
                        let entry = acked.tags.entry(target).or_insert((town, 0));
                        assert_eq!(entry.0, town, "one town edits a record's tags");
                        entry.1 = entry.1.max(n);
                    }
                    Some((status, body)) if status < 500 => {
                        panic!("{name}: tag edit answered {status}: {body}")
                    }
                    _ => shared.acked().failed_requests += 1,
                }
            }
        }
        std::thread::sleep(Duration::from_millis(rng.below_u64(8)));
    }
}

/// Edits the `body` of records created at the next town, at `town`: each
/// document is written at two nodes at once, one field each.
fn cross_editor(shared: &Shared, town: usize, seed: u64) {
    let client = client();
    let mut rng = Rng(seed);
    let name = TOWNS[town];
    let source = (town + 1) % 3;
    let mut n = 0u64;
    while !shared.stop.load(Ordering::Relaxed) {
        let Some(ep) = shared.endpoint(town) else {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        };
        let target = {
            let acked = shared.acked();
            let theirs = &acked.created_at[source];
            if theirs.is_empty() {
                drop(acked);
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            // Recent records more often: they are the ones still in flight.
            let len = theirs.len() as u64;
            let pick = if rng.below_u64(2) == 0 {
                len - 1 - rng.below_u64(len.min(20))
            } else {
                rng.below_u64(len)
            };
            theirs[pick as usize].clone()
        };
        n += 1;
        let body = format!("r{n} {name} が追記した本文。研修の振り返りと次回の予定。");
        match send(
            &client,
            &ep,
            reqwest::Method::PATCH,
            &format!("/api/v1/records/knowledge/{target}"),
            &json!({"fields": {"body": body}}),
        ) {
            Some((200, _)) => {
                let mut acked = shared.acked();
                let entry = acked.bodies.entry(target).or_insert((town, 0));
                assert_eq!(entry.0, town, "one town edits a record's body");
                entry.1 = entry.1.max(n);
            }
            // Not arrived here yet.
            Some((404, _)) => {}
            Some((status, body)) if status < 500 => {
                panic!("{name}: body edit answered {status}: {body}")
            }
            _ => shared.acked().failed_requests += 1,
        }
        std::thread::sleep(Duration::from_millis(rng.below_u64(8)));
    }
}

/// Every live record of a collection at a node, by id.
fn all_records(server: &Server, collection: &str) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/records/{collection}?limit=500&cursor={c}"),
            None => format!("/api/v1/records/{collection}?limit=500"),
        };
        let (status, page) = server.get(&path);
        assert_eq!(status, 200, "{page}");
        for item in page["items"].as_array().expect("items") {
            out.insert(item["id"].as_str().expect("id").to_owned(), item.clone());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return out,
        }
    }
}

fn log_tail(dir: &std::path::Path) -> String {
    let text = std::fs::read_to_string(dir.with_extension("log")).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(10)..].join("\n")
}

#[test]
fn fifty_kill_9s_under_concurrent_writes_at_three_towns_lose_nothing_and_converge() {
    let seed = std::env::var("YUI_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock")
                .as_nanos() as u64
        });
    eprintln!("crash loop seed: {seed} (replay with YUI_CRASH_SEED={seed})");
    let started = Instant::now();
    let mut rng = Rng(seed);

    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::init(&dir.path().join("ca"), "crash-loop");
    let mut mesh = Mesh::start(dir.path(), &ca);
    let shared = Arc::new(Shared {
        endpoints: RwLock::new([0, 1, 2].map(|i| mesh.servers[i].as_ref().map(endpoint))),
        acked: Mutex::new(Acked::default()),
        stop: AtomicBool::new(false),
    });
    let mut writers = Vec::new();
    for town in 0..3 {
        let (s, seed_c, seed_e) = (shared.clone(), rng.next(), rng.next());
        writers.push(std::thread::spawn(move || creator(&s, town, seed_c)));
        let s = shared.clone();
        writers.push(std::thread::spawn(move || cross_editor(&s, town, seed_e)));
    }
    let (kills, mut restart_times) = kill_and_restart(&mut mesh, &shared, &mut rng);
    let loop_took = started.elapsed();
    shared.stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().expect("writer");
    }
    let servers: Vec<Server> = mesh.servers.into_iter().map(|s| s.expect("up")).collect();
    let acked = std::mem::take(&mut *shared.acked());
    restart_times.sort();
    eprintln!(
        "{KILLS} kills ({} / {} / {} of {TOWNS:?}) in {loop_took:?}; restart p50 {:?}, max {:?}",
        kills[0],
        kills[1],
        kills[2],
        restart_times[KILLS / 2],
        restart_times[KILLS - 1]
    );
    eprintln!(
        "acknowledged: {} shared creates, {} local creates, {} records' tags edited, {} records' bodies edited (at another town); {} requests failed at kills",
        acked.creates.len(),
        acked.locals.len(),
        acked.tags.len(),
        acked.bodies.len(),
        acked.failed_requests
    );
    assert!(
        acked.creates.len() >= 300 && acked.tags.len() >= 100 && acked.bodies.len() >= 100,
        "the writers wrote too little to mean anything"
    );

    let all = converge(&servers, &acked, seed);
    every_acknowledged_write_is_there(&all, &acked);
    local_records_stay_at_home(&servers, &acked);
    for s in servers {
        s.stop();
    }
    eprintln!("crash loop took {:?} in all", started.elapsed());
}

/// The three towns, each a running node (`None` while it is down), in a
/// full mesh: every node dials both others and is dialled by both.
struct Mesh {
    dirs: Vec<PathBuf>,
    servers: Vec<Option<Server>>,
    peer_urls: Vec<String>,
}

impl Mesh {
    fn start(root: &std::path::Path, ca: &Ca) -> Mesh {
        let dirs: Vec<PathBuf> = TOWNS.iter().map(|t| member(root, t, ca)).collect();
        let servers: Vec<Option<Server>> = dirs
            .iter()
            .map(|d| Some(Server::start_peer(d, "127.0.0.1:0")))
            .collect();
        let peer_urls: Vec<String> = servers
            .iter()
            .map(|s| s.as_ref().expect("up").peer_url().to_owned())
            .collect();
        for (i, s) in servers.iter().enumerate() {
            for (j, url) in peer_urls.iter().enumerate() {
                if i != j {
                    s.as_ref().expect("up").add_peer(url);
                }
            }
        }
        Mesh {
            dirs,
            servers,
            peer_urls,
        }
    }
}

fn endpoint(s: &Server) -> Endpoint {
    Endpoint {
        base: s.base.clone(),
        token: s.token.clone(),
    }
}

/// The loop of [`KILLS`] `kill -9`s of a random node at a random moment,
/// each restarted on the same peer port; returns the kills per town and
/// the restart times.
fn kill_and_restart(
    mesh: &mut Mesh,
    shared: &Shared,
    rng: &mut Rng,
) -> ([usize; 3], Vec<Duration>) {
    let mut kills = [0usize; 3];
    let mut restart_times = Vec::with_capacity(KILLS);
    for round in 0..KILLS {
        std::thread::sleep(Duration::from_millis(100 + rng.below_u64(MAX_UPTIME_MS)));
        let victim = rng.below_u64(3) as usize;
        // Writers stop sending to it; what is in flight at the kill is
        // either acknowledged (and durable) or failed.
        shared.endpoints.write().expect("lock")[victim] = None;
        mesh.servers[victim].take().expect("running").kill_9();
        kills[victim] += 1;
        // Sometimes it stays down a moment (peers fail and back off).
        if rng.below_u64(4) == 0 {
            std::thread::sleep(Duration::from_millis(rng.below_u64(1_000)));
        }
        let t = Instant::now();
        let restarted = Server::restart_peer(&mesh.dirs[victim], &mesh.peer_urls[victim]);
        restart_times.push(t.elapsed());
        assert_eq!(
            restarted.peer_url(),
            mesh.peer_urls[victim],
            "round {round}: the same peer port"
        );
        shared.endpoints.write().expect("lock")[victim] = Some(endpoint(&restarted));
        mesh.servers[victim] = Some(restarted);
    }
    (kills, restart_times)
}

/// Converge: every node holds the same shared records, with the same
/// content, and at least every acknowledged create. Returns them.
fn converge(servers: &[Server], acked: &Acked, seed: u64) -> BTreeMap<String, Value> {
    let converge_start = Instant::now();
    let mut snapshots: Vec<BTreeMap<String, Value>> = Vec::new();
    let converged = loop {
        let counts: Vec<u64> = servers.iter().map(|s| s.count("knowledge")).collect();
        if counts.iter().all(|&c| c == counts[0]) && counts[0] >= acked.creates.len() as u64 {
            snapshots = servers
                .iter()
                .map(|s| all_records(s, "knowledge"))
                .collect();
            if snapshots[1] == snapshots[0] && snapshots[2] == snapshots[0] {
                break true;
            }
        }
        if converge_start.elapsed() > CONVERGE {
            break false;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    if !converged {
        panic!("{}", divergence(servers, acked, seed, &snapshots));
    }
    eprintln!(
        "converged {:?} after the writers stopped: {} shared records at each node",
        converge_start.elapsed(),
        snapshots[0].len()
    );
    snapshots.swap_remove(0)
}

/// Where the nodes differ, and each one's peers and log tail.
fn divergence(
    servers: &[Server],
    acked: &Acked,
    seed: u64,
    snapshots: &[BTreeMap<String, Value>],
) -> String {
    let counts: Vec<u64> = servers.iter().map(|s| s.count("knowledge")).collect();
    let mut report = format!(
        "no convergence within {CONVERGE:?} (seed {seed}): counts {counts:?}, {} acknowledged creates\n",
        acked.creates.len()
    );
    if snapshots.len() == 3 {
        for (id, rec) in &snapshots[0] {
            for j in 1..3 {
                if snapshots[j].get(id) != Some(rec) {
                    report.push_str(&format!(
                        "  {id}: {} has {}, {} has {:?}\n",
                        TOWNS[0],
                        rec["fields"],
                        TOWNS[j],
                        snapshots[j].get(id).map(|r| &r["fields"])
                    ));
                }
            }
        }
    }
    for (s, town) in servers.iter().zip(TOWNS) {
        report.push_str(&format!(
            "{town} peers: {}\n{}\n",
            s.status()["peers"],
            log_tail(&s.data_dir)
        ));
    }
    report
}

/// Every acknowledged create is there, from its town, and no edit went
/// back behind an acknowledged revision.
fn every_acknowledged_write_is_there(all: &BTreeMap<String, Value>, acked: &Acked) {
    for (town, id, title) in &acked.creates {
        let rec = all
            .get(id)
            .unwrap_or_else(|| panic!("acknowledged create {id} at {} lost", TOWNS[*town]));
        assert_eq!(rec["fields"]["title"], title.as_str(), "{id}");
        assert_eq!(rec["town"], TOWNS[*town], "{id}: its origin");
    }
    for (what, edits, field) in [
        ("tags", &acked.tags, "tags"),
        ("body", &acked.bodies, "body"),
    ] {
        for (id, (town, rev)) in edits {
            let rec = all
                .get(id)
                .unwrap_or_else(|| panic!("{id} edited, then lost"));
            let value = if field == "tags" {
                &rec["fields"]["tags"][0]
            } else {
                &rec["fields"]["body"]
            };
            let stored = revision(value);
            assert!(
                stored >= *rev,
                "{what} of {id}: revision {rev} was acknowledged at {} but every node holds {value}",
                TOWNS[*town]
            );
        }
    }
}

/// Local records: at home, and nowhere else.
fn local_records_stay_at_home(servers: &[Server], acked: &Acked) {
    let locals: Vec<BTreeMap<String, Value>> =
        servers.iter().map(|s| all_records(s, "workers")).collect();
    for (town, id) in &acked.locals {
        assert!(
            locals[*town].contains_key(id),
            "acknowledged local record {id} lost at {}",
            TOWNS[*town]
        );
    }
    for (j, records) in locals.iter().enumerate() {
        for (id, rec) in records {
            assert_eq!(
                rec["town"], TOWNS[j],
                "{id} is a local record of {} found at {}",
                rec["town"], TOWNS[j]
            );
        }
        let (_, found) = servers[j].get("/api/v1/search?q=LOCAL&collection=workers");
        for item in found["items"].as_array().expect("items") {
            assert_eq!(item["town"], TOWNS[j], "search at {}: {item}", TOWNS[j]);
        }
    }
}
