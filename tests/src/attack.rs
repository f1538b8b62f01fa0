//! Hostile peers under load: the scenario shared by `node/tests/attack.rs`
//! (which asserts on it) and `node/benches/attack.rs` (which prints it for
//! `docs/benchmarks.md`).
//!
//! A victim node runs in-process on its own two-worker runtime (as `yui
//! serve` does on a two-core machine) with a real local API and peer port.
//! An honest member dials it and syncs both ways. An attacker holding a
//! valid member certificate (built with the library) then sends, phase by
//! phase: oversize batches, local-collection and schema-violating
//! documents; endless long polls up to and beyond the connection cap; and
//! slow-loris bodies, stalled headers and handshakes that never finish.
//! Meanwhile an honest client of the LOCAL API reads one record by id and
//! runs one small search every few milliseconds, and every request's
//! latency is kept with the phase it started in.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use yui_protocol::Collection;
use yui_protocol::wire::{DocUpdate, SyncResponse};

use crate::records::{id_of, validated};
use crate::stats::{Spread, ms};
use crate::tls::{Conn, Member, client_hello};
use crate::town::{Consortium, Running, Town, seed_records};
use crate::wire::{
    doc_update, local_documents, long_poll_body, push_body, random_id, refusal_codes,
    schema_violation,
};

/// The peer port's connection budgets (`node::peer::server`).
pub const CONNECTION_CAP: usize = yui_node::peer::server::MAX_CONNECTIONS;
pub const MEMBER_CAP: usize = yui_node::peer::server::MAX_PER_MEMBER;
pub const BODY_GRACE: Duration = yui_node::peer::server::BODY_GRACE;
/// Its TLS handshake and header timeouts.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------
// The honest local-API client
// ---------------------------------------------------------------------------

pub const PHASES: [&str; 5] = [
    "no attack",
    "oversize batches, local and invalid documents",
    "long polls at and beyond the cap",
    "slow-loris bodies, stalled headers and handshakes",
    "after the attack",
];

#[derive(Debug, Clone)]
pub struct Latency {
    pub requests: usize,
    pub failures: usize,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl Latency {
    fn of(samples: Vec<Duration>, failures: usize) -> Latency {
        let spread = Spread::of(samples);
        Latency {
            requests: spread.samples + failures,
            failures,
            p50: spread.p50,
            p99: spread.p99,
            max: spread.max,
        }
    }

    pub fn line(&self) -> String {
        format!(
            "p50 {:>6.2} ms  p99 {:>7.2} ms  max {:>7.2} ms  ({} requests, {} failed)",
            ms(self.p50),
            ms(self.p99),
            ms(self.max),
            self.requests,
            self.failures
        )
    }
}

/// One request of the honest client: its phase, its latency, its failure.
type Sample = (usize, Duration, Option<String>);

/// Reads and searches the local API every few milliseconds on its own
/// thread and runtime, labelling each request with the current phase.
pub struct Probe {
    phase: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<Sample>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Probe {
    pub fn start(api: SocketAddr, token: String, ids: Vec<String>, interval: Duration) -> Probe {
        let phase = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let (p, s, out) = (phase.clone(), stop.clone(), samples.clone());
        let thread = std::thread::Builder::new()
            .name("honest-api-client".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(async move {
                    let http = reqwest::Client::builder()
                        .timeout(Duration::from_secs(10))
                        .build()
                        .expect("client");
                    let mut n = 0usize;
                    while !s.load(Ordering::Relaxed) {
                        n += 1;
                        // One read by id, then one small search, in turn.
                        let url = if n.is_multiple_of(2) {
                            format!(
                                "http://{api}/api/v1/records/knowledge/{}",
                                ids[(n / 2).wrapping_mul(7919) % ids.len()]
                            )
                        } else {
                            format!(
                                "http://{api}/api/v1/search?q=研修&collection=knowledge&limit=5"
                            )
                        };
                        let phase = p.load(Ordering::Relaxed);
                        let t = Instant::now();
                        let outcome = match http.get(&url).bearer_auth(&token).send().await {
                            Ok(r) if r.status() == 200 => match r.bytes().await {
                                Ok(_) => None,
                                Err(e) => Some(format!("{url}: body: {e}")),
                            },
                            Ok(r) => Some(format!("{url}: {}", r.status())),
                            Err(e) => Some(format!("{url}: {e}")),
                        };
                        let took = t.elapsed();
                        out.lock().expect("lock").push((phase, took, outcome));
                        tokio::time::sleep(interval).await;
                    }
                });
            })
            .expect("thread");
        Probe {
            phase,
            stop,
            samples,
            thread: Some(thread),
        }
    }

    pub fn phase(&self, phase: usize) {
        self.phase.store(phase, Ordering::Relaxed);
    }

    /// Stops; returns per-phase latency, the attack phases together, and
    /// the failures seen.
    pub fn finish(mut self) -> (Vec<Latency>, Latency, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().expect("probe");
        }
        let samples = std::mem::take(&mut *self.samples.lock().expect("lock"));
        let mut errors = Vec::new();
        let stats = |keep: &dyn Fn(usize) -> bool| {
            let mut ok = Vec::new();
            let mut failed = 0;
            for (p, d, e) in &samples {
                if keep(*p) {
                    match e {
                        None => ok.push(*d),
                        Some(_) => failed += 1,
                    }
                }
            }
            Latency::of(ok, failed)
        };
        let per_phase = (0..PHASES.len()).map(|i| stats(&|p| p == i)).collect();
        let attack = stats(&|p| (1..=3).contains(&p));
        for (p, _, e) in &samples {
            if let Some(e) = e {
                errors.push(format!("[{}] {e}", PHASES[*p]));
            }
        }
        (per_phase, attack, errors)
    }
}

// ---------------------------------------------------------------------------
// The scenario
// ---------------------------------------------------------------------------

pub struct Options {
    /// Length of the measurement without attack.
    pub baseline: Duration,
    /// Least length of phases 1 and 2 (phase 3 lasts until the node has
    /// closed every stalled handshake, ~HANDSHAKE_TIMEOUT).
    pub phase: Duration,
    /// Records the victim holds before the attack.
    pub records: usize,
    /// Valid documents in the big push of phase 1.
    pub big_batch: usize,
    /// Connections attempted in phase 2.
    pub long_polls: usize,
    /// Phase 3: slow-loris bodies, stalled headers, stalled handshakes.
    pub slow_bodies: usize,
    pub slow_headers: usize,
    pub stalled_handshakes: usize,
    /// Pause of the honest client between its requests.
    pub interval: Duration,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            baseline: Duration::from_secs(3),
            phase: Duration::from_secs(5),
            records: 300,
            big_batch: 5_000,
            long_polls: 300,
            slow_bodies: 40,
            slow_headers: 20,
            stalled_handshakes: 40,
            interval: Duration::from_millis(3),
        }
    }
}

/// What happened; the scenario itself panics on anything the protocol
/// promises (refusal codes, status codes, nothing stored, honest sync).
pub struct Report {
    pub latency: Vec<Latency>,
    pub attack: Latency,
    pub probe_errors: Vec<String>,
    /// Lines for the log: what each phase did.
    pub notes: Vec<String>,
    pub long_polls_held: usize,
    pub long_polls_refused: usize,
    /// Slowest refusal of a connection beyond the cap.
    pub slowest_refusal: Duration,
    pub slow_bodies_open_at_end: usize,
    pub stalled_closed_within: Duration,
    pub stalled_still_open: usize,
    /// Honest sync during each attack phase: victim → member, member → victim.
    pub honest_sync: Vec<(Duration, Duration)>,
    pub took: Duration,
}

/// Writes one record at each side and waits until it reached the other.
async fn honest_round(victim: &Town, honest: &Town, label: &str) -> (Duration, Duration) {
    let start = Instant::now();
    let mine = id_of(
        &victim
            .write_knowledge(&format!("victim during {label}"))
            .await,
    );
    let theirs = id_of(
        &honest
            .write_knowledge(&format!("member during {label}"))
            .await,
    );
    let arrive = |at: &Town, id: String| {
        let store = at.node.store.clone();
        let name = at.name.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                if store
                    .get(Collection::Knowledge, id.clone(), false)
                    .await
                    .is_ok()
                {
                    return start.elapsed();
                }
                assert!(
                    Instant::now() < deadline,
                    "{label}: record {id} did not reach {name} within 20 s"
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    };
    tokio::join!(arrive(honest, mine), arrive(victim, theirs))
}

/// The parties of one run, and what they wrote.
struct Scene {
    victim: Town,
    honest: Town,
    /// The attacker's client: a member of the consortium.
    member: Member,
    began: Instant,
    notes: Vec<String>,
    /// Rounds of [`honest_round`] (one record written at each side).
    honest_rounds: u64,
    /// Records of others (the attacker's valid ones, the member's news)
    /// that the victim stored.
    stored: u64,
}

impl Scene {
    fn step(&self, what: &str) {
        eprintln!("[{:6.2} s] {what}", self.began.elapsed().as_secs_f64());
    }

    async fn honest_round(&mut self, label: &str) -> (Duration, Duration) {
        self.honest_rounds += 1;
        honest_round(&self.victim, &self.honest, label).await
    }

    async fn member_writes(&mut self, title: &str) {
        self.honest.write_knowledge(title).await;
        self.stored += 1;
    }
}

/// The attacker's documents, made before anything is measured.
struct AttackerDocs {
    big: Vec<DocUpdate>,
    trickle: Vec<DocUpdate>,
    invalid: Vec<DocUpdate>,
    locals: Vec<DocUpdate>,
}

impl AttackerDocs {
    /// The valid documents are signed by `attacker`, as its node would.
    fn make(big: usize, attacker: &Member) -> AttackerDocs {
        // Not about 研修, so the honest client's search finds as much after
        // the attack as before it.
        let fields = validated(
            Collection::Knowledge,
            serde_json::json!({"title": "攻撃者の大量投稿", "body": "広報の予定を共有する。", "category": "pr"}),
        );
        AttackerDocs {
            big: (0..big as u64)
                .map(|n| attacker.sign(doc_update(Collection::Knowledge, &fields, 0xb1, n)))
                .collect(),
            trickle: (0..200u64)
                .map(|n| attacker.sign(doc_update(Collection::Knowledge, &fields, 0xb2, n)))
                .collect(),
            invalid: (0..500u64).map(schema_violation).collect(),
            locals: (0..250u64).flat_map(local_documents).collect(),
        }
    }
}

/// Phase 1: an oversize batch of valid documents; worker documents (as
/// themselves and disguised) and schema-violating ones; then bodies just
/// under the 32 MiB limit, raw and gzip that inflates to it, until the
/// phase is over.
async fn oversize(scene: &mut Scene, opts: &Options, docs: &mut AttackerDocs) {
    let member = scene.member.clone();
    let phase_end = Instant::now() + opts.phase;
    let t = Instant::now();
    let big = std::mem::take(&mut docs.big);
    let count = big.len() as u64;
    let (status, body) = member
        .post("", &push_body(big))
        .await
        .expect("the big batch is answered");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(refusal_codes(&body), BTreeMap::new());
    scene.stored += count;
    scene.notes.push(format!(
        "{count} valid documents in one push: stored in {:.1} s",
        t.elapsed().as_secs_f64()
    ));

    scene.step("worker documents, as themselves and disguised");
    let (status, body) = member
        .post("", &push_body(std::mem::take(&mut docs.locals)))
        .await
        .expect("answer");
    assert_eq!(status, 200);
    assert_eq!(
        refusal_codes(&body),
        BTreeMap::from([
            ("document_mismatch".to_owned(), 250),
            ("local_collection".to_owned(), 250)
        ])
    );
    scene.step("schema violations");
    let (status, body) = member
        .post("", &push_body(std::mem::take(&mut docs.invalid)))
        .await
        .expect("answer");
    assert_eq!(status, 200);
    assert_eq!(
        refusal_codes(&body),
        BTreeMap::from([("schema_violation".to_owned(), 500)])
    );

    scene.step("bodies just under the limit");
    const MIB: usize = 1024 * 1024;
    let raw = push_body(
        (0..8u64)
            .map(|n| DocUpdate {
                id: random_id(n, 0x32).to_string(),
                collection: "knowledge".into(),
                changes: vec![0x85; 4 * MIB - 1024],
                ..Default::default()
            })
            .collect(),
    );
    let inflated = push_body(
        (0..5_000u64)
            .map(|n| DocUpdate {
                id: random_id(n, 0x33).to_string(),
                collection: "workers".into(),
                changes: vec![0; 6_600],
                ..Default::default()
            })
            .collect(),
    );
    for body in [&raw, &inflated] {
        assert!((31 * MIB..32 * MIB).contains(&body.len()), "{}", body.len());
    }
    let gzip = {
        let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        std::io::Write::write_all(&mut z, &inflated).expect("gzip");
        z.finish().expect("gzip")
    };
    let mut rounds = 0;
    loop {
        // Two at once: one raw, one inflating.
        let (a, b) = tokio::join!(
            member.post("", &raw),
            member.post("Content-Encoding: gzip\r\n", &gzip)
        );
        let (status, body) = a.expect("answer to the raw body");
        assert_eq!(status, 200);
        assert_eq!(
            refusal_codes(&body),
            BTreeMap::from([("invalid_changes".to_owned(), 8)])
        );
        let (status, body) = b.expect("answer to the gzip body");
        assert_eq!(status, 200);
        assert_eq!(
            refusal_codes(&body),
            BTreeMap::from([("local_collection".to_owned(), 5_000)])
        );
        rounds += 1;
        if Instant::now() >= phase_end {
            break;
        }
    }
    scene.notes.push(format!(
        "{rounds} rounds of a {:.1} MiB raw push beside a {} KiB gzip push inflating to {:.1} MiB",
        raw.len() as f64 / MIB as f64,
        gzip.len() / 1024,
        inflated.len() as f64 / MIB as f64
    ));
}

/// What phase 2 saw.
struct LongPolls {
    held: usize,
    refused: usize,
    slowest_refusal: Duration,
    /// The honest round during the phase.
    honest: (Duration, Duration),
}

/// Phase 2: endless long polls on as many connections as the node lets the
/// attacker open (and more), while it pushes on another connection and the
/// honest member writes; then the slots must come back.
async fn long_polls(scene: &mut Scene, opts: &Options, docs: &mut AttackerDocs) -> LongPolls {
    let member = scene.member.clone();
    let phase_end = Instant::now() + opts.phase;
    let mut pusher = member.conn().await.expect("a connection for pushes");
    let (since, epoch) = feed_position(&mut pusher).await;
    let (held, refused, slowest_refusal) =
        open_long_polls(&member, opts.long_polls, since, epoch).await;
    let held_count = held.len();
    scene.step(&format!("{held_count} long polls held, {refused} refused"));
    let stop = CancellationToken::new();
    let answered = Arc::new(AtomicU64::new(0));
    let polls = keep_polling(held, since, epoch, &stop, &answered);
    let (pushes, news) = push_while_polling(scene, &mut pusher, docs, phase_end).await;
    scene.step("honest round");
    let honest = scene.honest_round(PHASES[2]).await;
    let refusals = scene
        .victim
        .node
        .peering()
        .expect("joined")
        .refused_attempts();
    let too_many = refusals
        .iter()
        .filter(|r| r.reason.contains("too many connections"))
        .count();
    assert!(
        refused == 0 || too_many > 0,
        "{refused} connections refused, none recorded as too many: {refusals:?}"
    );

    scene.step("dropping the long polls");
    stop.cancel();
    let mut failed = Vec::new();
    for p in polls {
        if let Some(e) = p.await.expect("join") {
            failed.push(e);
        }
    }
    assert!(failed.is_empty(), "held long polls failed: {failed:?}");
    // The attacker's open connection still gets ordinary answers. (Its
    // polls already received the news, so this pull brings none.)
    let (status, body) = pusher
        .request("", &long_poll_body(since, epoch, 0))
        .await
        .expect("pull");
    assert_eq!(status, 200);
    let answer = SyncResponse::decode(&body[..]).expect("response");
    assert!(answer.cursor >= since, "{} < {since}", answer.cursor);
    drop(pusher);
    scene.notes.push(format!(
        "{} connections tried: {held_count} held long polls, {refused} refused (slowest refusal {:.0} ms; {too_many} recorded as too many connections); {} answers to held polls over {pushes} pushes and {news} records from the member",
        opts.long_polls,
        ms(slowest_refusal),
        answered.load(Ordering::Relaxed)
    ));

    scene.step("checking that the slots come back");
    slots_come_back(&member, since, epoch).await;
    LongPolls {
        held: held_count,
        refused,
        slowest_refusal,
        honest,
    }
}

/// Where the victim's feed is now, as a member learns it: the cursor and
/// the feed's epoch.
async fn feed_position(pusher: &mut Conn) -> (u64, u64) {
    let mut since = 0;
    loop {
        let (status, body) = pusher
            .request("", &long_poll_body(since, 0, 0))
            .await
            .expect("pull");
        assert_eq!(status, 200);
        let answer = SyncResponse::decode(&body[..]).expect("response");
        since = answer.cursor;
        if !answer.more {
            return (since, answer.epoch);
        }
    }
}

/// Tries `n` connections at once. A connection is held if it gets an
/// answer; over the member's budget the node answers 429 and closes it.
/// Returns the held ones, how many were refused, and the slowest refusal.
async fn open_long_polls(
    member: &Member,
    n: usize,
    since: u64,
    epoch: u64,
) -> (Vec<Conn>, usize, Duration) {
    let attempts: Vec<_> = (0..n)
        .map(|_| {
            let member = member.clone();
            tokio::spawn(async move {
                let t = Instant::now();
                let held = async {
                    let mut conn = member.conn().await?;
                    match conn.request("", &long_poll_body(since, epoch, 0)).await? {
                        (200, _) => Ok(conn),
                        (status, body) => Err(std::io::Error::other(format!(
                            "{status} {}",
                            String::from_utf8_lossy(&body)
                        ))),
                    }
                };
                (held.await, t.elapsed())
            })
        })
        .collect();
    let mut held = Vec::new();
    let (mut refused, mut slowest_refusal) = (0, Duration::ZERO);
    for a in attempts {
        match a.await.expect("join") {
            (Ok(conn), _) => held.push(conn),
            (Err(_), took) => {
                refused += 1;
                slowest_refusal = slowest_refusal.max(took);
            }
        }
    }
    (held, refused, slowest_refusal)
}

/// Each held connection long-polls again as soon as it is answered, until
/// `stop`; a task's result is its failure, if any.
fn keep_polling(
    held: Vec<Conn>,
    since: u64,
    epoch: u64,
    stop: &CancellationToken,
    answered: &Arc<AtomicU64>,
) -> Vec<tokio::task::JoinHandle<Option<String>>> {
    held.into_iter()
        .map(|mut conn| {
            let (stop, answered) = (stop.clone(), answered.clone());
            let mut since = since;
            tokio::spawn(async move {
                loop {
                    let body = long_poll_body(since, epoch, 30_000);
                    tokio::select! {
                        _ = stop.cancelled() => return None,
                        r = conn.request("", &body) => match r {
                            Ok((200, body)) => {
                                since = SyncResponse::decode(&body[..]).expect("response").cursor;
                                answered.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok((status, body)) => {
                                return Some(format!("{status} {}", String::from_utf8_lossy(&body)));
                            }
                            Err(e) => return Some(e.to_string()),
                        }
                    }
                }
            })
        })
        .collect()
}

/// Pushes until `phase_end` while the polls wait; returns the pushes and
/// the member's records written.
async fn push_while_polling(
    scene: &mut Scene,
    pusher: &mut Conn,
    docs: &mut AttackerDocs,
    phase_end: Instant,
) -> (u64, u64) {
    // While they wait: a push every 100 ms (every commit wakes every poll),
    // and every fifth time a record from the honest member, which every
    // poll is then sent (the attacker's own records are not sent back).
    let mut trickle = std::mem::take(&mut docs.trickle).into_iter();
    let (mut pushes, mut news) = (0u64, 0);
    while Instant::now() < phase_end {
        let (docs, invalid): (Vec<DocUpdate>, usize) = if pushes.is_multiple_of(2) {
            let valid: Vec<DocUpdate> = trickle.by_ref().take(5).collect();
            scene.stored += valid.len() as u64;
            (valid, 0)
        } else {
            (vec![schema_violation(10_000 + pushes)], 1)
        };
        let (status, body) = pusher
            .request("", &push_body(docs))
            .await
            .expect("pushes on an open connection go on");
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        assert_eq!(refusal_codes(&body).values().sum::<usize>(), invalid);
        pushes += 1;
        if pushes.is_multiple_of(5) {
            scene
                .member_writes("news from the member during the long polls")
                .await;
            news += 1;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (pushes, news)
}

/// The member's connection slots come back once the polls are gone: it can
/// open its whole budget again (within 10 s).
async fn slots_come_back(member: &Member, since: u64, epoch: u64) {
    let want = MEMBER_CAP;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut conns = Vec::new();
        while conns.len() < want {
            let Ok(mut c) = member.conn().await else {
                break;
            };
            match c.request("", &long_poll_body(since, epoch, 0)).await {
                Ok((200, _)) => conns.push(c),
                _ => break,
            }
        }
        if conns.len() == want {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the connection slots were not given back: {} of {want} opened",
            conns.len()
        );
        drop(conns);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// What phase 3 saw.
struct Slow {
    bodies_open_at_end: usize,
    closed_within: Duration,
    still_open: usize,
    /// The honest round during the phase.
    honest: (Duration, Duration),
}

/// Waits until the node closes `io` (or the connection fails); returns when.
pub async fn until_closed(mut io: impl tokio::io::AsyncRead + Unpin, start: Instant) -> Duration {
    let mut scratch = [0u8; 1024];
    loop {
        match io.read(&mut scratch).await {
            Ok(0) | Err(_) => return start.elapsed(),
            Ok(_) => {}
        }
    }
}

/// Sends the headers of a 1 MB request, then its body a byte every 2 s.
async fn trickle_body(mut wr: impl tokio::io::AsyncWrite + Unpin) -> std::io::Result<()> {
    wr.write_all(b"POST /yui/v1/sync HTTP/1.1\r\nHost: victim\r\nContent-Type: application/x-protobuf\r\nContent-Length: 1000000\r\n\r\n")
        .await?;
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        // The first tick is at once: the headers and a first byte together.
        tick.tick().await;
        wr.write_all(b"\x01").await?;
        wr.flush().await?;
    }
}

/// Phase 3: slow-loris bodies (a byte every 2 s), headers that stop
/// halfway, and handshakes that never finish (no certificate is shown).
async fn slow(scene: &mut Scene, opts: &Options, peer_port: SocketAddr) -> Slow {
    let member = scene.member.clone();
    let phase_start = Instant::now();
    let stop = CancellationToken::new();
    let open = Arc::new(AtomicUsize::new(0));
    let mut bodies = Vec::new();
    for _ in 0..opts.slow_bodies {
        let tls = member.tls().await.expect("slow-loris connection");
        let (stop, open) = (stop.clone(), open.clone());
        open.fetch_add(1, Ordering::Relaxed);
        bodies.push(tokio::spawn(async move {
            let (rd, wr) = tokio::io::split(tls);
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = until_closed(rd, phase_start) => {}
                _ = trickle_body(wr) => {}
            }
            open.fetch_sub(1, Ordering::Relaxed);
        }));
    }
    let hello = client_hello(&member);
    let mut stalled = Vec::new();
    for _ in 0..opts.stalled_handshakes {
        let mut tcp = TcpStream::connect(peer_port).await.expect("connect");
        tcp.write_all(&hello[..hello.len() / 2])
            .await
            .expect("half a ClientHello");
        stalled.push(tokio::spawn(until_closed(tcp, Instant::now())));
    }
    for _ in 0..opts.slow_headers {
        let mut tls = member.tls().await.expect("connection");
        tls.write_all(b"POST /yui/v1/sync HTTP/1.1\r\nHost: victim\r\n")
            .await
            .expect("half the headers");
        tls.flush().await.expect("flush");
        stalled.push(tokio::spawn(until_closed(tls, Instant::now())));
    }
    scene.step("honest round");
    let honest = scene.honest_round(PHASES[3]).await;
    // The node must close every stalled connection by itself, in about its
    // handshake and header timeouts.
    scene.step("waiting for the node to close the stalled connections");
    let (mut closed_within, mut still_open) = (Duration::ZERO, 0);
    let limit = HANDSHAKE_TIMEOUT + Duration::from_secs(5);
    for task in stalled {
        match tokio::time::timeout(limit.saturating_sub(phase_start.elapsed()), task).await {
            Ok(took) => closed_within = closed_within.max(took.expect("join")),
            Err(_) => still_open += 1,
        }
    }
    // Slow-loris bodies are cut off once they fall behind the minimum rate
    // (over the member's budget they were refused at once).
    let body_limit = BODY_GRACE + Duration::from_secs(5);
    while open.load(Ordering::Relaxed) > 0 && phase_start.elapsed() < body_limit {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let bodies_open_at_end = open.load(Ordering::Relaxed);
    scene.notes.push(format!(
        "{} slow-loris bodies (a byte every 2 s): {bodies_open_at_end} still open after {:.1} s; {} stalled handshakes and {} stalled headers: closed by the node within {:.1} s, {still_open} still open",
        opts.slow_bodies,
        phase_start.elapsed().as_secs_f64(),
        opts.stalled_handshakes,
        opts.slow_headers,
        closed_within.as_secs_f64()
    ));
    stop.cancel();
    for b in bodies {
        b.await.expect("join");
    }
    Slow {
        bodies_open_at_end,
        closed_within,
        still_open,
        honest,
    }
}

/// Runs the whole scenario. Call from a multi-thread runtime: the attacker
/// runs on it, the victim and the honest member on runtimes of their own.
pub async fn run(opts: &Options) -> Report {
    let began = Instant::now();
    let consortium = Consortium::new("攻撃テスト");
    // The big batch is thousands of records of one town, written today:
    // far past the daily quotas, which node/tests/quotas.rs tests. Here the
    // victim must store them under load.
    let victim = consortium.town_configured(
        "omachi",
        "\n[quotas]\nrecords_per_day = 100000000\nbytes_per_day = \"1 TB\"\nstored_bytes = \"1 TB\"\n",
    );
    let honest = consortium.town("itoigawa");
    let attacker = consortium.town("evil");
    let kept = seed_records(&victim, opts.records).await;
    let kept_ids: Vec<String> = kept
        .iter()
        .map(|r| r["id"].as_str().expect("id").to_owned())
        .collect();
    let counts_before = victim.node.store.counts().await.expect("counts");
    let node = Running::start(victim.node.clone(), 2);
    let attacker_member = Member::of(&attacker, node.peer);
    let t = Instant::now();
    let mut docs = AttackerDocs::make(opts.big_batch, &attacker_member);
    let made_in = t.elapsed();

    yui_node::peer::add_peer(&honest.node.federation(), &node.peer_url(), None, None)
        .await
        .expect("add peer");
    let member_node = Running::start(honest.node.clone(), 1);
    let mut scene = Scene {
        member: attacker_member,
        victim,
        honest,
        began,
        notes: vec![format!(
            "attacker's documents made in {:.1} s",
            made_in.as_secs_f64()
        )],
        honest_rounds: 0,
        stored: 0,
    };
    scene.step("the victim and the honest member are up");
    // The honest member is in sync (and has pushed once) before the attack.
    let warm = scene.honest_round("warm-up").await;
    scene.notes.push(format!(
        "honest sync before the attack: {:.0} / {:.0} ms (victim → member / member → victim)",
        ms(warm.0),
        ms(warm.1)
    ));
    let token = scene.victim.node.data_dir.read_token().expect("token");
    scene.step(PHASES[0]);
    let probe = Probe::start(node.api, token, kept_ids, opts.interval);
    tokio::time::sleep(opts.baseline).await;
    let mut honest_sync = Vec::new();

    probe.phase(1);
    scene.step(PHASES[1]);
    oversize(&mut scene, opts, &mut docs).await;
    scene.step("honest round");
    honest_sync.push(scene.honest_round(PHASES[1]).await);

    probe.phase(2);
    scene.step(PHASES[2]);
    let polls = long_polls(&mut scene, opts, &mut docs).await;
    honest_sync.push(polls.honest);

    probe.phase(3);
    scene.step(PHASES[3]);
    let slow = slow(&mut scene, opts, node.peer).await;
    honest_sync.push(slow.honest);

    probe.phase(4);
    scene.step(PHASES[4]);
    tokio::time::sleep(opts.baseline.min(Duration::from_secs(2))).await;
    let (latency, attack, probe_errors) = probe.finish();

    // The victim's records came through intact, and nothing hostile was stored.
    scene.step("checking the records");
    for rec in &kept {
        let id = rec["id"].as_str().expect("id").to_owned();
        let got = scene
            .victim
            .node
            .store
            .get(Collection::Knowledge, id, false)
            .await
            .expect("kept record");
        let got: serde_json::Value = serde_json::from_str(got.get()).expect("json");
        assert_eq!(&got, rec, "a stored record changed");
    }
    let counts = scene.victim.node.store.counts().await.expect("counts");
    assert_eq!(
        counts[&Collection::Knowledge],
        counts_before[&Collection::Knowledge] + scene.stored + 2 * scene.honest_rounds,
        "knowledge: the seeded records, the attacker's valid ones, and the honest ones"
    );
    for c in Collection::ALL.iter().filter(|c| !c.is_shared()) {
        assert_eq!(
            counts.get(c),
            counts_before.get(c),
            "{c}: a local record came in"
        );
    }
    scene.step("stopping");
    member_node.stop();
    node.stop();
    Report {
        latency,
        attack,
        probe_errors,
        notes: scene.notes,
        long_polls_held: polls.held,
        long_polls_refused: polls.refused,
        slowest_refusal: polls.slowest_refusal,
        slow_bodies_open_at_end: slow.bodies_open_at_end,
        stalled_closed_within: slow.closed_within,
        stalled_still_open: slow.still_open,
        honest_sync,
        took: began.elapsed(),
    }
}

impl Report {
    /// The figures, one line each.
    pub fn lines(&self) -> Vec<String> {
        let mut out = vec![
            "local API latency (GET by id and a 5-result search, one client, one request at a time):".to_owned(),
        ];
        for (name, l) in PHASES.iter().zip(&self.latency) {
            out.push(format!("  {name:<52} {}", l.line()));
        }
        out.push(format!(
            "  {:<52} {}",
            "during the attack (phases 1-3)",
            self.attack.line()
        ));
        for (name, (out_, in_)) in PHASES[1..].iter().zip(&self.honest_sync) {
            out.push(format!(
                "honest member during {name}: victim → member {:.0} ms, member → victim {:.0} ms",
                ms(*out_),
                ms(*in_)
            ));
        }
        out.extend(self.notes.iter().cloned());
        out.push(format!("scenario took {:.1} s", self.took.as_secs_f64()));
        out
    }
}
