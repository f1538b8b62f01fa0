//! Federation benchmark (issue 3, "Federation under stress"): sync between
//! real `yui serve` processes over mutual TLS on 127.0.0.1, on the
//! consortium workload of `../shared/peers` (beside the checkout), next to PouchDB and bare
//! Automerge measured in the same run.
//!
//! ```text
//! cargo bench -p yui-node --bench sync                 # N = 10,000 (several minutes)
//! cargo bench -p yui-node --bench sync -- --quick      # N = 1,000, fewer samples
//! cargo bench -p yui-node --bench sync -- --n 10000 --runs 3 --writes 200 --no-pouchdb
//! ```
//!
//! Workload: `node ../shared/peers/lib/gen.js --jsonl N` (the exact
//! records of the PouchDB/Automerge benchmarks; the sha256 of its output is
//! printed and checked against the published fingerprints), mapped to the
//! `knowledge` collection as {title, body, category "other", tags}. The
//! filtered figure's local records are the generator's `kind: "local"`
//! stream, mapped to `workers` as {name: title, status "active", notes: body}.
//!
//! Nodes are set up as a user would: `yui ca init`, `yui init`, `yui ca
//! issue`, `yui cert install`, `yui serve --api-listen 127.0.0.1:0
//! --peer-listen 127.0.0.1:0`, `POST /api/v1/peers`, `POST /api/v1/sync`.
//! Records are loaded through the API by concurrent clients (not timed).
//! Every dialling node reaches its peer through a counting TCP proxy run by
//! this process (tokio, TCP_NODELAY): its counters are the bytes on the wire
//! both ways (TLS records, HTTP headers and gzip bodies), like
//! `peers/lib/proxy.js`.
//!
//! Figures:
//!
//! 1. Initial sync of N records from A to an empty node (add the peer, poll
//!    `/metrics` until N arrived): wall time, bytes, requests, CPU of both
//!    processes; next to `pouchdb/bench.js --adapter leveldb --gzip on` and
//!    bare Automerge (create the same docs, `save()` on one thread →
//!    `load()` on another, wall time).
//! 2. Idle round at N: `POST /api/v1/sync` on the dialler with nothing new
//!    (bytes at the proxy from the call to quiet, requests served by the
//!    source, latency); and the background long poll's cost over a quiet
//!    window.
//! 3. A round after one record was edited at the source (gen.js
//!    `editRecord`: 20 body characters replaced; rounds 1–10 on records
//!    N/2 … N/2+9, one at a time): it reaches the connected dialler through
//!    its long poll; bytes until quiet, latency from the PATCH's answer.
//! 4. Propagation of one write, p50/p99: write at A (201) → first
//!    successful GET at the receiver, polled every ~1 ms. Paths: B long-polls
//!    A; A pushes to B (A dials B; B's own link to A blocked); relayed
//!    A → B ← C (C long-polls B).
//! 5. Filtered: the same initial sync from a source that also holds N local
//!    `workers` records (created interleaved with the knowledge records).
//!
//! Then the nodes are stopped, bare Automerge is measured again, and the
//! same batches are replayed in this process through `Store::sync_prepare`
//! / `sync_apply` and the wire codec, to split the initial sync's time into
//! its steps (and `sync_apply`'s per-document work outside SQLite into
//! Automerge, view, validation and search-term steps).
//!
//! Options (also environment variables `YUI_BENCH_SYNC_<NAME>`): `--n`,
//! `--quick`, `--runs` (initial-sync repetitions), `--writes` (propagation
//! samples per path), `--load-clients`, `--idle-window` seconds (0 = skip),
//! `--no-pouchdb`, `--no-direct`, `--peers-dir`, `--peers-node` (where
//! `peers/run.sh` installed PouchDB: its `PEERS_NODE`, default
//! `/tmp/peers-node`), `--keep`.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use prost::Message;
use serde_json::{Map, Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use yui_node::store::Store;
use yui_protocol::automerge::{ActorId, AutoCommit};
use yui_protocol::sync::Limits;
use yui_protocol::validate::{Fields, validate_create};
use yui_protocol::wire::SyncResponse;
use yui_protocol::{Collection, RecordId, doc};
use yui_tests::bench::{
    self as support, Given, api_client, cpu_time, search_terms, whole_number, yui_binary,
};
use yui_tests::serve;
use yui_tests::stats::Spread;

/// Published fingerprints of the workload (peers/README.md).
const KNOWN_SHA: &[(usize, &str)] = &[
    (
        1_000,
        "ef4f4a4569fe5a6669c2704a513e5faf7806f163ba0f7237b45451de2b456495",
    ),
    (
        10_000,
        "b01027ef4f71f6f62c67a07cac0d53a956e319ba80aa102a1d745ec7dbb1f7bb",
    ),
];

/// One-record edits in figure 3.
const EDITS: usize = 10;

// ---------------------------------------------------------------- options

struct Opts {
    n: usize,
    quick: bool,
    runs: usize,
    writes: usize,
    load_clients: usize,
    idle_window: u64,
    pouchdb: bool,
    direct: bool,
    peers_dir: PathBuf,
    /// Where `peers/run.sh` installed its npm packages (`PEERS_NODE`).
    peers_node: PathBuf,
    keep: bool,
}

fn parse_opts() -> Result<Opts> {
    let given = Given::read(
        "YUI_BENCH_SYNC_",
        &[
            "N",
            "RUNS",
            "WRITES",
            "LOAD_CLIENTS",
            "IDLE_WINDOW",
            "PEERS_DIR",
            "PEERS_NODE",
        ],
        &["QUICK", "NO_POUCHDB", "NO_DIRECT", "KEEP"],
        "options: --n 10000 --quick --runs 3 --writes 200 --load-clients 8 \
         --idle-window 26 --no-pouchdb --no-direct --peers-dir ../shared/peers --peers-node /tmp/peers-node --keep",
    )?;
    let quick = given.flag("quick");
    let mut o = Opts {
        n: if quick { 1_000 } else { 10_000 },
        quick,
        runs: if quick { 1 } else { 3 },
        writes: if quick { 30 } else { 200 },
        load_clients: 8,
        idle_window: if quick { 0 } else { 26 },
        pouchdb: !given.flag("no-pouchdb"),
        direct: !quick && !given.flag("no-direct"),
        // `../shared/peers` beside the checkout (`--peers-dir` to move it).
        peers_dir: Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/peers"),
        // Where `peers/run.sh` installs PouchDB: its `PEERS_NODE`, by
        // default `peers-node` in the temporary directory, as run.sh's
        // own default (`--peers-node` to point elsewhere).
        peers_node: std::env::var_os("PEERS_NODE")
            .map_or_else(|| std::env::temp_dir().join("peers-node"), PathBuf::from),
        keep: given.flag("keep"),
    };
    for (name, v) in given.values {
        match name.as_str() {
            "n" => o.n = whole_number(&v)?,
            "runs" => o.runs = whole_number(&v)?,
            "writes" => o.writes = whole_number(&v)?,
            "load-clients" => o.load_clients = whole_number(&v)?,
            "idle-window" => o.idle_window = whole_number(&v)? as u64,
            "peers-dir" => o.peers_dir = PathBuf::from(v),
            "peers-node" => o.peers_node = PathBuf::from(v),
            other => bail!("unknown option --{other}; try --help"),
        }
    }
    if o.n < 10 || o.runs == 0 || o.writes == 0 || o.load_clients == 0 {
        bail!("--n must be at least 10; --runs, --writes and --load-clients above 0");
    }
    Ok(o)
}

// ---------------------------------------------------------------- workload

/// The generator's records as JSON lines, and the sha256 of those lines.
fn node_lines(args: &[&str], cwd: &Path) -> Result<(Vec<Value>, String)> {
    let out = Command::new("node")
        .args(args)
        .current_dir(cwd)
        .stderr(Stdio::inherit())
        .output()
        .context("running node (Node.js is needed for the workload generator)")?;
    if !out.status.success() {
        bail!("node {args:?} failed: {}", out.status);
    }
    let sha = hex(ring::digest::digest(&ring::digest::SHA256, &out.stdout).as_ref());
    let mut recs = Vec::new();
    for line in out.stdout.split(|b| *b == b'\n') {
        if !line.is_empty() {
            recs.push(serde_json::from_slice(line)?);
        }
    }
    Ok((recs, sha))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn knowledge_fields(r: &Value) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("title".into(), r["title"].clone());
    m.insert("body".into(), r["body"].clone());
    m.insert("category".into(), "other".into());
    m.insert("tags".into(), r["tags"].clone());
    m
}

fn worker_fields(r: &Value) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("name".into(), r["title"].clone());
    m.insert("status".into(), "active".into());
    m.insert("notes".into(), r["body"].clone());
    m
}

// ---------------------------------------------------------------- numbers

fn msf(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e5).round() / 100.0
}

fn fmt_ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1e3;
    if ms >= 1000.0 {
        format!("{:.2} s", ms / 1e3)
    } else if ms >= 10.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.2} ms")
    }
}

fn fmt_bytes(b: u64) -> String {
    if b >= 1_000_000 {
        format!("{:.2} MB", b as f64 / 1e6)
    } else if b >= 10_000 {
        format!("{:.1} kB", b as f64 / 1e3)
    } else {
        format!("{b} B")
    }
}

fn median_u64(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

/// CPU time (user + system) of a process in milliseconds.
fn cpu_ms(pid: u32) -> u64 {
    cpu_time(&pid.to_string()).as_millis() as u64
}

// ---------------------------------------------------------------- proxy

#[derive(Default)]
struct ProxyState {
    c2s: AtomicU64,
    s2c: AtomicU64,
    conns: AtomicU64,
    blocked: AtomicBool,
    cut: Mutex<CancellationToken>,
}

/// A counting TCP proxy: dialler → proxy → a node's peer port.
#[derive(Clone)]
struct Proxy {
    addr: SocketAddr,
    s: Arc<ProxyState>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Traffic {
    c2s: u64,
    s2c: u64,
    conns: u64,
}

impl Traffic {
    fn total(&self) -> u64 {
        self.c2s + self.s2c
    }
    fn since(&self, before: Traffic) -> Traffic {
        Traffic {
            c2s: self.c2s - before.c2s,
            s2c: self.s2c - before.s2c,
            conns: self.conns - before.conns,
        }
    }
    fn json(&self) -> Value {
        json!({"bytes_c2s": self.c2s, "bytes_s2c": self.s2c, "bytes_total": self.total(), "tcp_connections_opened": self.conns})
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    counter: &AtomicU64,
) {
    let mut buf = vec![0u8; 64 * 1024];
    // Bounded by the connection: ends at EOF or on an error.
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => {
                let _ = to.shutdown().await;
                return;
            }
            Ok(n) => {
                counter.fetch_add(n as u64, Ordering::Relaxed);
                if to.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Proxy {
    async fn start(target: SocketAddr) -> Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let s = Arc::new(ProxyState::default());
        let state = s.clone();
        tokio::spawn(async move {
            // Runs until the process ends.
            loop {
                let Ok((inbound, _)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                if state.blocked.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                state.conns.fetch_add(1, Ordering::Relaxed);
                let token = lock(&state.cut).clone();
                let state = state.clone();
                tokio::spawn(async move {
                    let Ok(outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    let _ = inbound.set_nodelay(true);
                    let _ = outbound.set_nodelay(true);
                    let (ri, wi) = inbound.into_split();
                    let (ro, wo) = outbound.into_split();
                    let both = async {
                        tokio::join!(pump(ri, wo, &state.c2s), pump(ro, wi, &state.s2c));
                    };
                    tokio::select! {
                        _ = both => {}
                        _ = token.cancelled() => {}
                    }
                });
            }
        });
        Ok(Proxy { addr, s })
    }

    fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    fn now(&self) -> Traffic {
        Traffic {
            c2s: self.s.c2s.load(Ordering::Relaxed),
            s2c: self.s.s2c.load(Ordering::Relaxed),
            conns: self.s.conns.load(Ordering::Relaxed),
        }
    }

    /// Closes every connection and refuses new ones.
    fn block(&self) {
        self.s.blocked.store(true, Ordering::SeqCst);
        let old = std::mem::take(&mut *lock(&self.s.cut));
        old.cancel();
    }

    /// Runs `exchange`; returns how long it took, and what crossed this
    /// proxy from its start until quiet for `quiet` (`max` at most).
    async fn measure(
        &self,
        quiet: Duration,
        max: Duration,
        exchange: impl std::future::Future<Output = Result<()>>,
    ) -> Result<(Duration, Traffic)> {
        let before = self.now();
        let t = Instant::now();
        exchange.await?;
        let took = t.elapsed();
        Ok((took, self.settle(quiet, max).await.since(before)))
    }

    /// Waits until no byte has crossed for `quiet`; at most `max`.
    async fn settle(&self, quiet: Duration, max: Duration) -> Traffic {
        let start = Instant::now();
        let mut last = self.now();
        let mut since = Instant::now();
        while start.elapsed() < max {
            tokio::time::sleep(Duration::from_millis(10)).await;
            let t = self.now();
            if t.total() != last.total() {
                last = t;
                since = Instant::now();
            } else if since.elapsed() >= quiet {
                break;
            }
        }
        last
    }
}

// ---------------------------------------------------------------- API client

#[derive(Clone)]
struct Api {
    client: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    fn new(base: String, token: String) -> Result<Api> {
        Ok(Api {
            client: api_client(Duration::from_secs(600))?,
            base: base.trim_end_matches('/').to_owned(),
            token,
        })
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value)> {
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(serde_json::to_vec(&b)?);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await?;
        let v = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Ok((status, v))
    }

    async fn expect(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        want: u16,
    ) -> Result<Value> {
        let (status, v) = self.call(method.clone(), path, body).await?;
        if status != want {
            bail!("{method} {path}: HTTP {status}: {v}");
        }
        Ok(v)
    }

    async fn create(&self, collection: &str, fields: &Map<String, Value>) -> Result<String> {
        let v = self
            .expect(
                reqwest::Method::POST,
                &format!("/api/v1/records/{collection}"),
                Some(json!({ "fields": fields })),
                201,
            )
            .await?;
        v["id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("no id in {v}"))
    }

    /// The record's fields, or None while it is not there.
    async fn get_fields(&self, collection: &str, id: &str) -> Result<Option<Value>> {
        let resp = self
            .client
            .get(format!("{}/api/v1/records/{collection}/{id}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await?;
        match status {
            200 => Ok(Some(
                serde_json::from_slice::<Value>(&bytes)?["fields"].clone(),
            )),
            404 => Ok(None),
            s => bail!("GET {id}: HTTP {s}"),
        }
    }

    async fn count(&self, collection: &str) -> Result<u64> {
        let text = self
            .client
            .get(format!("{}/metrics", self.base))
            .send()
            .await?
            .text()
            .await?;
        let prefix = format!("yui_records{{collection=\"{collection}\",");
        Ok(text
            .lines()
            .find(|l| l.starts_with(&prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0))
    }

    async fn status(&self) -> Result<Value> {
        self.expect(reqwest::Method::GET, "/api/v1/status", None, 200)
            .await
    }

    async fn add_peer(&self, url: &str) -> Result<()> {
        self.expect(
            reqwest::Method::POST,
            "/api/v1/peers",
            Some(json!({ "url": url })),
            201,
        )
        .await?;
        Ok(())
    }

    async fn sync(&self) -> Result<Value> {
        let v = self
            .expect(reqwest::Method::POST, "/api/v1/sync", None, 200)
            .await?;
        for p in v["peers"].as_array().into_iter().flatten() {
            if p["ok"].as_bool() != Some(true) {
                bail!("sync with {} failed: {}", p["url"], p["error"]);
            }
        }
        Ok(v)
    }

    /// Every record of a collection, by id.
    async fn list_all(&self, collection: &str) -> Result<HashMap<String, Value>> {
        let mut out = HashMap::new();
        let mut cursor: Option<String> = None;
        // Bounded: each page moves the cursor forward, and the list is finite.
        loop {
            let mut path = format!("/api/v1/records/{collection}?limit=500");
            if let Some(c) = &cursor {
                path.push_str(&format!("&cursor={c}"));
            }
            let v = self.expect(reqwest::Method::GET, &path, None, 200).await?;
            for item in v["items"].as_array().into_iter().flatten() {
                if let Some(id) = item["id"].as_str() {
                    out.insert(id.to_owned(), item.clone());
                }
            }
            match v["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => break,
            }
        }
        Ok(out)
    }
}

/// What the source's status says about one dialling node.
#[derive(Debug, Clone, Copy, Default)]
struct Inbound {
    rounds: u64,
    bytes_in: u64,
    bytes_out: u64,
}

async fn inbound_from(src: &Api, node_id: &str) -> Result<Inbound> {
    let s = src.status().await?;
    let mut r = Inbound::default();
    for i in s["inbound"].as_array().into_iter().flatten() {
        if i["node_id"].as_str() == Some(node_id) {
            r.rounds = i["rounds"].as_u64().unwrap_or(0);
            r.bytes_in = i["bytes_in"].as_u64().unwrap_or(0);
            r.bytes_out = i["bytes_out"].as_u64().unwrap_or(0);
        }
    }
    Ok(r)
}

// ---------------------------------------------------------------- nodes

fn run_yui(bin: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running yui {args:?}"))?;
    if !out.status.success() {
        bail!(
            "yui {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

struct YuiNode {
    name: String,
    town: String,
    dir: PathBuf,
    node_id: String,
    child: Option<Child>,
    pid: u32,
    api: Api,
    peer_addr: SocketAddr,
}

/// Quotas no run of this benchmark reaches (`[quotas]` of config.toml).
const BENCH_QUOTAS: &str =
    "\n[quotas]\nrecords_per_day = 100000000\nbytes_per_day = \"1 TB\"\nstored_bytes = \"1 TB\"\n";

impl YuiNode {
    /// `yui init` + `yui ca issue` + `yui cert install` + `yui serve`.
    async fn create(bin: &Path, root: &Path, ca: &Path, name: &str) -> Result<YuiNode> {
        let dir = root.join(name);
        let town = name.to_owned();
        let d = dir.to_string_lossy().into_owned();
        let out = run_yui(bin, &["--data-dir", &d, "init", "--town", &town])?;
        let node_id = out
            .lines()
            .find_map(|l| l.strip_prefix("node id:"))
            .map(|s| s.trim().to_owned())
            .ok_or_else(|| anyhow!("no node id in {out}"))?;
        // The workload writes all its records today, far past the daily
        // quotas (500 new records a day per town and collection): this
        // benchmark measures sync, not quotas.
        let config = dir.join("config.toml");
        let mut text = std::fs::read_to_string(&config)?;
        text.push_str(BENCH_QUOTAS);
        std::fs::write(&config, text)?;
        let cert = ca.join(format!("{name}.cert.pem"));
        let (ca_s, cert_s) = (
            ca.to_string_lossy().into_owned(),
            cert.to_string_lossy().into_owned(),
        );
        let csr = dir.join("node.csr.pem").to_string_lossy().into_owned();
        run_yui(
            bin,
            &[
                "ca", "issue", "--ca-dir", &ca_s, "--csr", &csr, "--out", &cert_s,
            ],
        )?;
        let ca_cert = ca.join("ca.cert.pem").to_string_lossy().into_owned();
        run_yui(
            bin,
            &[
                "--data-dir",
                &d,
                "cert",
                "install",
                "--cert",
                &cert_s,
                "--ca-cert",
                &ca_cert,
            ],
        )?;
        let mut node = YuiNode {
            name: name.to_owned(),
            town,
            dir,
            node_id,
            child: None,
            pid: 0,
            api: Api::new(String::new(), String::new())?,
            peer_addr: "127.0.0.1:1".parse()?,
        };
        node.start(bin).await?;
        Ok(node)
    }

    async fn start(&mut self, bin: &Path) -> Result<()> {
        let log = std::fs::File::create(self.dir.with_extension("log"))?;
        let mut spawned = serve::spawn(
            bin,
            &self.dir,
            &["--peer-listen", "127.0.0.1:0"],
            Stdio::from(log),
        )?;
        let printed = spawned
            .printed(true, Instant::now() + Duration::from_secs(30))
            .map_err(|e| anyhow!("{}: {e}", self.name))?;
        let token = std::fs::read_to_string(self.dir.join("api-token"))?;
        self.api = Api::new(printed.api, token.trim().to_owned())?;
        let peers = printed.peers.ok_or_else(|| anyhow!("no Peers line"))?;
        self.peer_addr = peers.trim_start_matches("https://").parse()?;
        self.pid = spawned.child.id();
        self.child = Some(spawned.child);
        Ok(())
    }

    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if serve::terminate(&mut child, Duration::from_secs(20)).is_none() {
            eprintln!("{}: no exit 20 s after SIGTERM; killing it", self.name);
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn db(&self) -> PathBuf {
        self.dir.join("yui.sqlite")
    }
}

impl Drop for YuiNode {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Creates records with `clients` concurrent API clients. `items` are
/// (collection, fields); returns the ids in the same order.
async fn load(
    api: &Api,
    items: Arc<Vec<(&'static str, Map<String, Value>)>>,
    clients: usize,
) -> Result<(Vec<String>, Duration)> {
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (api, next, items) = (api.clone(), next.clone(), items.clone());
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            // Bounded: each turn takes a fresh index below items.len().
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((c, f)) = items.get(i) else { break };
                ids.push((i, api.create(c, f).await?));
            }
            Ok::<_, anyhow::Error>(ids)
        }));
    }
    let mut ids = vec![String::new(); items.len()];
    for t in tasks {
        for (i, id) in t.await?? {
            ids[i] = id;
        }
    }
    Ok((ids, start.elapsed()))
}

// ---------------------------------------------------------------- figure 1 / 5

#[derive(Debug, Clone, Default)]
struct InitialFig {
    label: String,
    wall: Duration,
    wire: Traffic,
    sync_requests: u64,
    body_bytes_in: u64,
    body_bytes_out: u64,
    cpu_src_ms: u64,
    cpu_dst_ms: u64,
    received: u64,
    local_received: u64,
}

impl InitialFig {
    fn json(&self) -> Value {
        json!({
            "label": self.label,
            "ms": msf(self.wall),
            "wire": self.wire.json(),
            "sync_requests": self.sync_requests,
            "bodies_bytes_dialler_in": self.body_bytes_in,
            "bodies_bytes_dialler_out": self.body_bytes_out,
            "cpu_ms_source": self.cpu_src_ms,
            "cpu_ms_receiver": self.cpu_dst_ms,
            "received": self.received,
            "local_received": self.local_received,
        })
    }
}

/// `dst` adds `src` as a peer (through `proxy` if given) and we poll its
/// `/metrics` until `n` knowledge records are there.
async fn initial_sync(
    label: &str,
    src: &YuiNode,
    dst: &YuiNode,
    proxy: Option<&Proxy>,
    n: u64,
) -> Result<InitialFig> {
    let url = proxy.map_or_else(|| format!("https://{}", src.peer_addr), Proxy::url);
    let before = proxy.map(Proxy::now).unwrap_or_default();
    let inbound0 = inbound_from(&src.api, &dst.node_id).await?;
    let (cs0, cd0) = (cpu_ms(src.pid), cpu_ms(dst.pid));
    let t0 = Instant::now();
    dst.api.add_peer(&url).await?;
    let deadline = Duration::from_secs(900);
    // Bounded by the deadline.
    let received = loop {
        let c = dst.api.count("knowledge").await?;
        if c >= n {
            break c;
        }
        if t0.elapsed() > deadline {
            bail!("{label}: only {c} of {n} records arrived in {deadline:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let wall = t0.elapsed();
    let wire = match proxy {
        Some(p) => p
            .settle(Duration::from_millis(500), Duration::from_secs(20))
            .await
            .since(before),
        None => {
            tokio::time::sleep(Duration::from_millis(500)).await;
            Traffic::default()
        }
    };
    let (cs1, cd1) = (cpu_ms(src.pid), cpu_ms(dst.pid));
    let inbound1 = inbound_from(&src.api, &dst.node_id).await?;
    let local_received = dst.api.count("workers").await?;
    Ok(InitialFig {
        label: label.to_owned(),
        wall,
        wire,
        sync_requests: inbound1.rounds - inbound0.rounds,
        body_bytes_in: inbound1.bytes_out - inbound0.bytes_out,
        body_bytes_out: inbound1.bytes_in - inbound0.bytes_in,
        cpu_src_ms: cs1 - cs0,
        cpu_dst_ms: cd1 - cd0,
        received,
        local_received,
    })
}

fn print_initial(f: &InitialFig) {
    println!(
        "  {:<34} {:>9}  wire {:>9} (c→s {}, s→c {}, {} TCP conn)  {} sync requests, bodies {} in / {} out  CPU source {} ms, receiver {} ms  [{} knowledge, {} workers arrived]",
        f.label,
        fmt_ms(f.wall),
        fmt_bytes(f.wire.total()),
        fmt_bytes(f.wire.c2s),
        fmt_bytes(f.wire.s2c),
        f.wire.conns,
        f.sync_requests,
        fmt_bytes(f.body_bytes_in),
        fmt_bytes(f.body_bytes_out),
        f.cpu_src_ms,
        f.cpu_dst_ms,
        f.received,
        f.local_received
    );
}

// ---------------------------------------------------------------- bare Automerge

struct BareFig {
    create_ms: f64,
    save_ms: f64,
    load_ms: f64,
    pipeline_ms: f64,
    load_2cores_ms: f64,
    save_bytes: u64,
    nocompress_bytes: u64,
    nocompress_pipeline_ms: f64,
}

/// The same documents through bare Automerge: create, `save()` on one thread
/// while another `load()`s them (wall time), and each step alone.
fn bare_automerge(fields: &[Fields]) -> Result<BareFig> {
    let actor = ActorId::from(&[7u8; 16][..]);
    let now = 1_763_700_000_000;
    let t = Instant::now();
    let mut docs = Vec::with_capacity(fields.len());
    for (i, f) in fields.iter().enumerate() {
        let mut r = [0u8; 10];
        r[..8].copy_from_slice(&(i as u64).to_le_bytes());
        let id = RecordId::generate(now, r);
        docs.push(
            doc::create(actor.clone(), Collection::Knowledge, &id, "kita", now, f)
                .map_err(|e| anyhow!("doc::create: {e}"))?,
        );
    }
    let create_ms = t.elapsed().as_secs_f64() * 1e3;

    let t = Instant::now();
    let saved: Vec<Vec<u8>> = docs.iter_mut().map(|d| d.save()).collect();
    let save_ms = t.elapsed().as_secs_f64() * 1e3;
    let save_bytes = saved.iter().map(|b| b.len() as u64).sum();
    let nocompress: Vec<Vec<u8>> = docs.iter_mut().map(|d| d.save_nocompress()).collect();
    let nocompress_bytes = nocompress.iter().map(|b| b.len() as u64).sum();

    let t = Instant::now();
    for b in &saved {
        std::hint::black_box(AutoCommit::load(b).map_err(|e| anyhow!("load: {e}"))?);
    }
    let load_ms = t.elapsed().as_secs_f64() * 1e3;

    let t = Instant::now();
    let half = saved.len() / 2;
    std::thread::scope(|s| -> Result<()> {
        let parts: Vec<_> = [&saved[..half], &saved[half..]]
            .into_iter()
            .map(|part| {
                s.spawn(move || -> Result<()> {
                    for b in part {
                        std::hint::black_box(
                            AutoCommit::load(b).map_err(|e| anyhow!("load: {e}"))?,
                        );
                    }
                    Ok(())
                })
            })
            .collect();
        for p in parts {
            p.join().map_err(|_| anyhow!("load thread panicked"))??;
        }
        Ok(())
    })?;
    let load_2cores_ms = t.elapsed().as_secs_f64() * 1e3;

    // save() on this thread → channel → load() on another: one document at a time.
    let pipeline = |docs: &mut Vec<AutoCommit>, compress: bool| -> Result<f64> {
        let t = Instant::now();
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(256);
        let loader = std::thread::spawn(move || -> Result<()> {
            for b in rx {
                let mut d = AutoCommit::new();
                d.load_incremental(&b).map_err(|e| anyhow!("load: {e}"))?;
                std::hint::black_box(d);
            }
            Ok(())
        });
        for d in docs.iter_mut() {
            let b = if compress {
                d.save()
            } else {
                d.save_nocompress()
            };
            tx.send(b).map_err(|_| anyhow!("loader gone"))?;
        }
        drop(tx);
        loader.join().map_err(|_| anyhow!("loader panicked"))??;
        Ok(t.elapsed().as_secs_f64() * 1e3)
    };
    let pipeline_ms = pipeline(&mut docs, true)?;
    let nocompress_pipeline_ms = pipeline(&mut docs, false)?;
    Ok(BareFig {
        create_ms,
        save_ms,
        load_ms,
        pipeline_ms,
        load_2cores_ms,
        save_bytes,
        nocompress_bytes,
        nocompress_pipeline_ms,
    })
}

// ---------------------------------------------------------------- PouchDB

fn run_pouchdb(o: &Opts) -> Result<Value> {
    let modules = o.peers_node.join("node_modules");
    if !modules.join("pouchdb").exists() {
        bail!(
            "PouchDB is not installed in {}: install it once with `cd {} && PEERS_NODE={} SKIP_INSTALL=0 NS=1000 RUNS=1 ./run.sh` \
             or copy deps/package*.json to {} and run `npm install` there (or give --peers-node)",
            modules.display(),
            o.peers_dir.display(),
            o.peers_node.display(),
            o.peers_node.display()
        );
    }
    let out = Command::new("timeout")
        .args(["300", "node", "pouchdb/bench.js", "--n"])
        .arg(o.n.to_string())
        .args(["--adapter", "leveldb", "--gzip", "on"])
        .env("NODE_PATH", &modules)
        .env("PEERS_NODE_MODULES", &modules)
        .current_dir(&o.peers_dir)
        .stderr(Stdio::inherit())
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .ok_or_else(|| anyhow!("pouchdb/bench.js printed no JSON line ({})", out.status))?;
    let v: Value = serde_json::from_str(line)?;
    if v["status"] != "ok" {
        bail!("pouchdb/bench.js: {line}");
    }
    Ok(v)
}

// ---------------------------------------------------------------- figure 4

struct Lat {
    p50: Duration,
    p99: Duration,
    max: Duration,
    n: usize,
    timeouts: usize,
    over_50ms: usize,
}

impl Lat {
    fn of(v: Vec<Duration>, timeouts: usize) -> Lat {
        let over_50ms = v.iter().filter(|d| **d > Duration::from_millis(50)).count();
        let spread = Spread::of(v);
        Lat {
            p50: spread.p50,
            p99: spread.p99,
            max: spread.max,
            n: spread.samples,
            timeouts,
            over_50ms,
        }
    }
    fn json(&self) -> Value {
        json!({"p50_ms": msf(self.p50), "p99_ms": msf(self.p99), "max_ms": msf(self.max), "samples": self.n, "timeouts": self.timeouts, "over_50ms": self.over_50ms})
    }
    fn text(&self) -> String {
        format!(
            "p50 {}, p99 {}, max {} ({} samples, {} over 50 ms{})",
            fmt_ms(self.p50),
            fmt_ms(self.p99),
            fmt_ms(self.max),
            self.n,
            self.over_50ms,
            if self.timeouts > 0 {
                format!(", {} timed out", self.timeouts)
            } else {
                String::new()
            }
        )
    }
}

/// Polls `api` every ~1 ms until the record is there; returns when it was seen.
async fn wait_for(api: &Api, id: &str, limit: Duration) -> Result<Option<Instant>> {
    let start = Instant::now();
    // Bounded by `limit`.
    while start.elapsed() < limit {
        if api.get_fields("knowledge", id).await?.is_some() {
            return Ok(Some(Instant::now()));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(None)
}

/// `writes` creates at `writer`; for each, the time from its 201 to the
/// first successful GET at every receiver.
async fn propagation(
    writer: &Api,
    receivers: &[&Api],
    writes: usize,
    records: &[Value],
) -> Result<Vec<Lat>> {
    let mut samples = vec![Vec::new(); receivers.len()];
    let mut timeouts = vec![0; receivers.len()];
    for k in 0..writes {
        let fields = knowledge_fields(&records[(k * 7919) % records.len()]);
        let id = writer.create("knowledge", &fields).await?;
        let written = Instant::now();
        let waits = receivers
            .iter()
            .map(|api| wait_for(api, &id, Duration::from_secs(10)));
        let seen = futures_join_all(waits).await;
        for (i, s) in seen.into_iter().enumerate() {
            match s? {
                Some(at) => samples[i].push(at - written),
                None => timeouts[i] += 1,
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    Ok(samples
        .into_iter()
        .zip(timeouts)
        .map(|(s, t)| Lat::of(s, t))
        .collect())
}

/// join_all without the futures crate: spawn-free, polls in order.
async fn futures_join_all<F: std::future::Future>(futs: impl Iterator<Item = F>) -> Vec<F::Output> {
    let futs: Vec<_> = futs.map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = futs.iter().map(|_| None).collect();
    let mut futs: Vec<Option<_>> = futs.into_iter().map(Some).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, slot) in futs.iter_mut().enumerate() {
            if let Some(f) = slot {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => {
                        out[i] = Some(v);
                        *slot = None;
                    }
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().flatten().collect()
}

// ---------------------------------------------------------------- breakdown

struct Breakdown {
    batches: usize,
    docs: usize,
    request: Duration,
    accept: Duration,
    prepare: Duration,
    encode_gzip: Duration,
    inflate_decode: Duration,
    apply: Duration,
    delivered: Duration,
    echo_scan: Duration,
    raw_bytes: u64,
    gzip_bytes: u64,
    changes_bytes: u64,
    /// Per-document steps of `accept_updates` + `store_shared`, outside SQLite.
    steps: Vec<(&'static str, Duration)>,
    /// gzip level → (bytes, time) over all messages.
    levels: Vec<(u32, u64, Duration)>,
}

/// The receiver's per-document work outside SQLite, step by step, as
/// `protocol::sync::accept_updates` and `SqlReplica::store_shared` do it.
fn apply_steps(
    docs: &[yui_protocol::wire::DocUpdate],
    steps: &mut [Duration; STEPS],
) -> Result<()> {
    for d in docs {
        let t = Instant::now();
        let checked = d.clone().check().map_err(|e| anyhow!("check: {e}"))?;
        steps[0] += t.elapsed();
        let t = Instant::now();
        let mut doc = AutoCommit::new();
        doc.load_incremental(&checked.changes)
            .map_err(|e| anyhow!("load_incremental: {e}"))?;
        steps[1] += t.elapsed();
        let heads: Vec<yui_protocol::automerge::ChangeHash> = checked
            .heads
            .iter()
            .map(|h| yui_protocol::automerge::ChangeHash(*h))
            .collect();
        // A cheaper test of the same fact for a complete document: its heads
        // are the sender's heads.
        let t = Instant::now();
        let mut own: Vec<_> = doc.get_heads();
        own.sort_unstable();
        let mut want = heads.clone();
        want.sort_unstable();
        let same = own == want;
        steps[4] += t.elapsed();
        let t = Instant::now();
        let no_missing = doc.get_missing_deps(&[]).is_empty();
        steps[2] += t.elapsed();
        let t = Instant::now();
        let has_heads = heads.iter().all(|h| doc.get_change_by_hash(h).is_some());
        steps[3] += t.elapsed();
        if !(no_missing && has_heads && same) {
            bail!("incomplete document");
        }
        let t = Instant::now();
        let view = doc::read(&doc).map_err(|e| anyhow!("doc::read: {e}"))?;
        steps[5] += t.elapsed();
        let t = Instant::now();
        validate_create(checked.collection, &view.fields).map_err(|e| anyhow!("{e:?}"))?;
        steps[6] += t.elapsed();
        let t = Instant::now();
        let json = serde_json::to_string(&view)?;
        let bytes = doc.save_nocompress();
        let heads = doc.get_heads();
        steps[7] += t.elapsed();
        let t = Instant::now();
        let terms = search_terms(&view.fields);
        steps[8] += t.elapsed();
        std::hint::black_box((json, bytes, heads, terms));
    }
    Ok(())
}

const STEPS: usize = 9;
/// Not part of the node's work: an alternative, timed for comparison.
const ALTERNATIVE_STEP: usize = 4;
const STEP_NAMES: [&str; STEPS] = [
    "DocUpdate::check (framing)",
    "AutoCommit::new + load_incremental",
    "get_missing_deps(&[])",
    "get_change_by_hash(sender heads)",
    "(alternative: get_heads() == sender heads)",
    "doc::read (view)",
    "validate_create",
    "view JSON + save_nocompress + heads",
    "search terms (bigrams)",
];

/// Replays the initial sync's steps in this process on a copy of the
/// source's database and a fresh one, with the node's own code.
async fn breakdown(src_db: &Path, town: &str, root: &Path) -> Result<Breakdown> {
    let copy = root.join("breakdown-src.sqlite");
    std::fs::copy(src_db, &copy)?;
    let src = Store::open(&copy, town)?;
    let dst_path = root.join("breakdown-dst.sqlite");
    Store::create_database(&dst_path, "breakdown")?;
    let dst = Store::open(&dst_path, "breakdown")?;
    // The receiver checks every change's signature (protocol.md 7), with
    // the keys of the certificates the source holds, verified against the
    // CA as a node's peer layer would.
    let ca = yui_node::pki::Anchors::new(vec![yui_node::pki::read_pem_file(
        &root.join("ca").join("ca.cert.pem"),
        "CA",
    )?])?;
    let revocations = yui_node::pki::Revocations::default();
    let signers = src
        .signer_certificates()
        .await?
        .iter()
        .map(|der| yui_node::pki::signer(der, &ca, &[], &revocations))
        .collect::<yui_node::Result<Vec<_>>>()?;
    dst.add_signers(signers);
    // And takes them all, as the nodes configured with `BENCH_QUOTAS` do.
    dst.set_quotas(yui_protocol::quota::Quotas {
        default: yui_protocol::quota::Quota {
            records_per_day: u64::MAX / 4,
            bytes_per_day: u64::MAX / 4,
            stored_bytes: u64::MAX / 4,
        },
        overrides: Vec::new(),
    });
    let mut b = Breakdown {
        batches: 0,
        docs: 0,
        request: Duration::ZERO,
        accept: Duration::ZERO,
        prepare: Duration::ZERO,
        encode_gzip: Duration::ZERO,
        inflate_decode: Duration::ZERO,
        apply: Duration::ZERO,
        delivered: Duration::ZERO,
        echo_scan: Duration::ZERO,
        raw_bytes: 0,
        gzip_bytes: 0,
        changes_bytes: 0,
        steps: Vec::new(),
        levels: Vec::new(),
    };
    let mut steps = [Duration::ZERO; STEPS];
    let mut levels: Vec<(u32, u64, Duration)> = vec![
        (1, 0, Duration::ZERO),
        (3, 0, Duration::ZERO),
        (6, 0, Duration::ZERO),
        (9, 0, Duration::ZERO),
    ];
    let (server, client) = (
        "breakdown-dst-node".to_owned(),
        "breakdown-src-node".to_owned(),
    );
    let mut cursors = yui_protocol::session::Cursors::default();
    // Bounded: each exchange moves the pull cursor forward through a finite feed.
    loop {
        // Client: build the request (a read).
        let t = Instant::now();
        let step = dst
            .sync_request(client.clone(), cursors, false, true, 0, Vec::new())
            .await?;
        b.request += t.elapsed();
        let yui_protocol::session::ClientStep::Send(sent) = step else {
            bail!("breakdown: the client had nothing to send");
        };
        let sent = *sent;
        // Server: accept (a write), prepare (a read), delivered (a write).
        let t = Instant::now();
        let accepted = src
            .sync_accept(server.clone(), sent.request.clone())
            .await?;
        b.accept += t.elapsed();
        let t = Instant::now();
        let batch = src
            .sync_prepare(server.clone(), sent.request.since, Limits::default())
            .await?;
        b.prepare += t.elapsed();
        b.batches += 1;
        b.docs += batch.docs.len();
        b.changes_bytes += batch.bytes() as u64;
        let t = Instant::now();
        let batch = src
            .sync_delivered(server.clone(), "bench".into(), batch)
            .await?;
        b.delivered += t.elapsed();
        let t = Instant::now();
        let resp = yui_protocol::session::server_response(src.feed_epoch(), accepted, Some(batch));
        let raw = resp.encode_to_vec();
        b.raw_bytes += raw.len() as u64;
        let (z, _) = yui_node::peer::codec::compress(raw.clone());
        b.encode_gzip += t.elapsed();
        b.gzip_bytes += z.len() as u64;
        for (level, bytes, took) in &mut levels {
            use std::io::Write;
            let t = Instant::now();
            let mut enc =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(*level));
            enc.write_all(&raw)?;
            *bytes += enc.finish()?.len() as u64;
            *took += t.elapsed();
        }
        // Client: inflate, decode, apply (one write).
        let t = Instant::now();
        let raw = yui_node::peer::codec::inflate(&z).map_err(|e| anyhow!(e))?;
        let resp = SyncResponse::decode_checked(&raw)?;
        b.inflate_decode += t.elapsed();
        apply_steps(&resp.docs, &mut steps)?;
        let t = Instant::now();
        // No peers row in this replay: the URL only names the exchange.
        let outcome = dst
            .sync_apply(
                "https://replay.invalid:7443".into(),
                client.clone(),
                sent,
                resp,
            )
            .await?;
        b.apply += t.elapsed();
        if !outcome.refused_here.is_empty() || !outcome.needs.is_empty() {
            bail!(
                "breakdown: {} refused (first: {:?}), {} needs",
                outcome.refused_here.len(),
                outcome.refused_here.first(),
                outcome.needs.len()
            );
        }
        cursors.pull = outcome.pull_cursor.unwrap_or(cursors.pull);
        if !outcome.more {
            break;
        }
    }
    // What the receiver's pusher does after the records arrived: scan its
    // feed for news for the source (all echoes, skipped by known heads).
    let t = Instant::now();
    let mut cursor = 0;
    // Bounded: the cursor moves through a finite feed.
    loop {
        let batch = dst
            .sync_prepare(client.clone(), cursor, Limits::default())
            .await?;
        if !batch.docs.is_empty() {
            bail!("breakdown: echo scan found {} docs", batch.docs.len());
        }
        cursor = batch.cursor;
        if !batch.more {
            break;
        }
    }
    b.echo_scan = t.elapsed();
    b.steps = STEP_NAMES.iter().copied().zip(steps).collect();
    b.levels = levels;
    src.close();
    dst.close();
    Ok(b)
}

// ---------------------------------------------------------------- main

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let o = parse_opts()?;
    support::in_scratch_dir("yui-sync-bench", o.keep, |root| async move {
        bench(&o, &root).await
    })
    .await
}

async fn bench(o: &Opts, root: &Path) -> Result<()> {
    let bin = yui_binary()?;
    let n = o.n;
    let mut out = header(o, root);
    let work = Workload::generate(o)?;
    out.insert("dataset_sha256".into(), work.sha.clone().into());
    let validated = Arc::new(work.validated()?);

    println!("\n## Bare Automerge (same documents, this process)");
    let v2 = validated.clone();
    let bare = tokio::task::spawn_blocking(move || bare_automerge(&v2)).await??;
    print_bare(&bare, &mut out);
    let pouch = if o.pouchdb {
        pouchdb(o, &work.sha)
    } else {
        None
    };
    if let Some(p) = &pouch {
        out.insert(
            "pouchdb".into(),
            json!({"phases": p["phases"], "versions": p["versions"], "loadavg_start": p["loadavg_start"]}),
        );
    }

    println!("\n## Yui nodes");
    let mut nodes = Nodes::start(o, &bin, root, &work).await?;
    let (fig1, fig5) = figures_1_and_5(o, &bin, root, &mut nodes, &mut out).await?;
    let Nodes {
        ca,
        mut a,
        mut s2,
        ids_a,
    } = nodes;
    let (mut bnode, p_ba) = fig1.receiver.ok_or_else(|| anyhow!("no receiver B"))?;
    verify(&a, &bnode, &ids_a, &work.knowledge, &mut out).await?;
    figure_2(o, &a, &bnode, &p_ba, &mut out).await?;
    figure_3(&a, &bnode, &p_ba, &work.edited, &ids_a[n / 2..], &mut out).await?;

    println!("\n## Relay node C dials B (initial sync from a node whose records arrived by sync)");
    let mut c = YuiNode::create(&bin, root, &ca, "minami").await?;
    let p_cb = Proxy::start(bnode.peer_addr).await?;
    let fc = initial_sync("C←B (relay source)", &bnode, &c, Some(&p_cb), n as u64).await?;
    print_initial(&fc);
    out.insert("initial_from_relay".into(), fc.json());
    tokio::time::sleep(Duration::from_millis(500)).await;
    figure_4(o, &a, &bnode, &c, &p_ba, &work.records, &mut out).await?;
    let _ = p_cb;

    // ---- stop, then the in-process breakdown
    for node in [&mut a, &mut s2, &mut bnode, &mut c] {
        node.stop();
    }
    println!("\n## Bare Automerge again, with the nodes stopped");
    let bare2 = tokio::task::spawn_blocking(move || bare_automerge(&validated)).await??;
    print_bare_after(&bare2, &mut out);
    println!(
        "\n## Breakdown: the initial sync's steps replayed in this process (A's database → fresh database)"
    );
    let bd = breakdown(&a.db(), &a.town, root).await?;
    print_breakdown(&bd, &mut out);
    summary(n, &fig1.runs, &fig5, &bare, &bare2, pouch.as_ref());
    out.insert("loadavg_end".into(), support::loadavg().into());
    out.insert("status".into(), "ok".into());
    println!("\n{}", Value::Object(out));
    Ok(())
}

/// The heading, and the start of the JSON line printed at the end.
fn header(o: &Opts, root: &Path) -> Map<String, Value> {
    let n = o.n;
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    println!("# Yui federation benchmark (issue 3)");
    println!(
        "N = {n}{}, {cores} cores, load average at start {}, data in {}",
        if o.quick { " (quick)" } else { "" },
        support::loadavg(),
        root.display()
    );
    let code = support::CodeState::of_this_checkout();
    println!("code: {code}");
    let mut out = Map::new();
    out.insert("bench".into(), "yui-sync".into());
    out.insert("commit".into(), code.commit.clone().into());
    out.insert("dirty".into(), code.dirty.into());
    out.insert("n".into(), n.into());
    out.insert("loadavg_start".into(), support::loadavg().into());
    out
}

/// The generator's records, their fingerprint, the edits of figure 3 and
/// the local records of figure 5.
struct Workload {
    records: Vec<Value>,
    sha: String,
    edited: Vec<Value>,
    locals: Vec<Value>,
    knowledge: Vec<Map<String, Value>>,
}

impl Workload {
    fn generate(o: &Opts) -> Result<Workload> {
        let n = o.n;
        let gen_js = o
            .peers_dir
            .join("lib/gen.js")
            .to_string_lossy()
            .into_owned();
        let (records, sha) = node_lines(&[&gen_js, "--jsonl", &n.to_string()], &o.peers_dir)?;
        let known = KNOWN_SHA.iter().find(|(k, _)| *k == n).map(|(_, s)| *s);
        println!(
            "workload: {} records from gen.js, dataset sha256 {sha} ({})",
            records.len(),
            match known {
                Some(k) if k == sha => "matches the published fingerprint",
                Some(_) => "DOES NOT MATCH the published fingerprint",
                None => "no published fingerprint for this N",
            }
        );
        if known.is_some_and(|k| k != sha) {
            bail!("dataset fingerprint mismatch");
        }
        // The edits of figure 3: gen.js `editRecord` rounds 1..=EDITS of records
        // editIndex(N) + k (the first is exactly the edit of `--edited`).
        let script = format!(
            "const g=require({gen_js:?});const i=g.editIndex({n});\
             for(let k=0;k<{EDITS};k++)process.stdout.write(JSON.stringify(g.editRecord(g.makeRecord(i+k),k+1))+'\\n');\
             for(let k=0;k<{n};k++)process.stdout.write(JSON.stringify(g.makeRecord(k,{{kind:'local'}}))+'\\n');"
        );
        let (mut extra, _) = node_lines(&["-e", &script], &o.peers_dir)?;
        let edited: Vec<Value> = extra.drain(..EDITS).collect();
        let locals = extra;
        let knowledge: Vec<Map<String, Value>> = records.iter().map(knowledge_fields).collect();
        Ok(Workload {
            records,
            sha,
            edited,
            locals,
            knowledge,
        })
    }

    fn validated(&self) -> Result<Vec<Fields>> {
        self.knowledge
            .iter()
            .map(|m| validate_create(Collection::Knowledge, m).map_err(|e| anyhow!("{e:?}")))
            .collect()
    }
}

fn print_bare(bare: &BareFig, out: &mut Map<String, Value>) {
    println!(
        "  create {:.0} ms; save() {:.0} ms ({} total, {} uncompressed); load() {:.0} ms one thread, {:.0} ms on 2 threads",
        bare.create_ms,
        bare.save_ms,
        fmt_bytes(bare.save_bytes),
        fmt_bytes(bare.nocompress_bytes),
        bare.load_ms,
        bare.load_2cores_ms
    );
    println!(
        "  save() on one thread → load() on another: {:.0} ms wall (save_nocompress → load_incremental: {:.0} ms)",
        bare.pipeline_ms, bare.nocompress_pipeline_ms
    );
    out.insert(
        "bare_automerge".into(),
        json!({
            "create_ms": bare.create_ms, "save_ms": bare.save_ms, "load_ms": bare.load_ms,
            "load_2threads_ms": bare.load_2cores_ms, "save_to_load_pipeline_ms": bare.pipeline_ms,
            "nocompress_pipeline_ms": bare.nocompress_pipeline_ms,
            "save_bytes": bare.save_bytes, "save_nocompress_bytes": bare.nocompress_bytes,
        }),
    );
}

fn print_bare_after(bare2: &BareFig, out: &mut Map<String, Value>) {
    println!(
        "  create {:.0} ms; save() {:.0} ms; load() {:.0} ms one thread, {:.0} ms on 2 threads; save() → load() on two threads {:.0} ms wall",
        bare2.create_ms, bare2.save_ms, bare2.load_ms, bare2.load_2cores_ms, bare2.pipeline_ms
    );
    out.insert(
        "bare_automerge_after".into(),
        json!({
            "create_ms": bare2.create_ms, "save_ms": bare2.save_ms, "load_ms": bare2.load_ms,
            "load_2threads_ms": bare2.load_2cores_ms, "save_to_load_pipeline_ms": bare2.pipeline_ms,
            "nocompress_pipeline_ms": bare2.nocompress_pipeline_ms,
        }),
    );
}

/// PouchDB's run of the same workload, or None (said why) if it failed.
fn pouchdb(o: &Opts, sha: &str) -> Option<Value> {
    println!(
        "\n## PouchDB (peers/pouchdb/bench.js --n {} --adapter leveldb --gzip on)",
        o.n
    );
    match run_pouchdb(o) {
        Ok(v) => {
            if v["dataset_sha256"].as_str() != Some(sha) {
                println!("  WARNING: PouchDB's dataset_sha256 differs from ours");
            }
            for phase in [
                "initial",
                "incremental",
                "idle",
                "filtered_selector",
                "filtered_fn",
            ] {
                let p = &v["phases"][phase];
                println!(
                    "  {phase:<18} {:>9}  {:>9}  {} HTTP requests  CPU client {} ms, server {} ms",
                    fmt_ms(Duration::from_secs_f64(
                        p["ms"].as_f64().unwrap_or(0.0) / 1e3
                    )),
                    fmt_bytes(p["bytes_total"].as_u64().unwrap_or(0)),
                    p["http_requests"],
                    p["cpu_ms_client"],
                    p["cpu_ms_server"]
                );
            }
            Some(v)
        }
        Err(e) => {
            println!("  skipped: {e:#}");
            None
        }
    }
}

/// The consortium's CA and its two sources: A with the N knowledge
/// records, S with them and N local workers records, interleaved.
struct Nodes {
    ca: PathBuf,
    a: YuiNode,
    s2: YuiNode,
    /// A's records' ids, in the generator's order.
    ids_a: Vec<String>,
}

impl Nodes {
    async fn start(o: &Opts, bin: &Path, root: &Path, work: &Workload) -> Result<Nodes> {
        let n = o.n;
        let ca = root.join("ca");
        let ca_s = ca.to_string_lossy().into_owned();
        run_yui(bin, &["ca", "init", "--ca-dir", &ca_s, "--name", "bench"])?;
        let a = YuiNode::create(bin, root, &ca, "kita").await?;
        let s2 = YuiNode::create(bin, root, &ca, "mixed").await?;
        let knowledge = &work.knowledge;
        let items: Arc<Vec<(&'static str, Map<String, Value>)>> =
            Arc::new(knowledge.iter().map(|f| ("knowledge", f.clone())).collect());
        let (ids_a, took) = load(&a.api, items, o.load_clients).await?;
        println!(
            "  loaded A ({}) with {n} knowledge records through the API: {:.1} s ({:.0}/s, {} clients)",
            a.town,
            took.as_secs_f64(),
            n as f64 / took.as_secs_f64(),
            o.load_clients
        );
        let mixed: Arc<Vec<(&'static str, Map<String, Value>)>> = Arc::new(
            (0..2 * n)
                .map(|i| {
                    if i % 2 == 0 {
                        ("knowledge", knowledge[i / 2].clone())
                    } else {
                        ("workers", worker_fields(&work.locals[i / 2]))
                    }
                })
                .collect(),
        );
        let (_, took) = load(&s2.api, mixed, o.load_clients).await?;
        println!(
            "  loaded S ({}) with {n} knowledge + {n} workers, interleaved: {:.1} s",
            s2.town,
            took.as_secs_f64()
        );
        // Let the WAL checkpoint and the machine calm down.
        tokio::time::sleep(Duration::from_secs(3)).await;
        Ok(Nodes { ca, a, s2, ids_a })
    }
}

/// Figure 1's runs, and the first receiver with its proxy: B, which the
/// later figures use.
struct Fig1 {
    runs: Vec<InitialFig>,
    receiver: Option<(YuiNode, Proxy)>,
}

/// Figures 1 and 5, alternating, and figure 1 without the proxy.
async fn figures_1_and_5(
    o: &Opts,
    bin: &Path,
    root: &Path,
    nodes: &mut Nodes,
    out: &mut Map<String, Value>,
) -> Result<(Fig1, Vec<InitialFig>)> {
    let n = o.n;
    println!("\n## Figure 1 / 5: initial sync to an empty node (through the counting proxy)");
    let nn = n as u64;
    let mut fig1: Vec<InitialFig> = Vec::new();
    let mut fig5: Vec<InitialFig> = Vec::new();
    let mut b: Option<(YuiNode, Proxy)> = None;
    let mut extra_nodes = 0;
    for r in 0..o.runs {
        let order: [bool; 2] = if r % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        };
        for plain in order {
            extra_nodes += 1;
            let mut dst =
                YuiNode::create(bin, root, &nodes.ca, &format!("recv{extra_nodes}")).await?;
            let src = if plain { &nodes.a } else { &nodes.s2 };
            let proxy = Proxy::start(src.peer_addr).await?;
            let label = if plain {
                format!("fig1 A→empty run {}", r + 1)
            } else {
                format!("fig5 S(+{n} local)→empty run {}", r + 1)
            };
            let f = initial_sync(&label, src, &dst, Some(&proxy), nn).await?;
            print_initial(&f);
            if f.local_received != 0 {
                println!("  ERROR: local records arrived at the receiver");
            }
            if plain {
                fig1.push(f);
                if b.is_none() {
                    b = Some((dst, proxy));
                    continue;
                }
            } else {
                fig5.push(f);
            }
            dst.stop();
            let _ = std::fs::remove_dir_all(&dst.dir);
        }
    }
    let mut direct = None;
    if o.direct {
        let mut dst = YuiNode::create(bin, root, &nodes.ca, "direct").await?;
        let f = initial_sync("fig1 A→empty, no proxy", &nodes.a, &dst, None, nn).await?;
        print_initial(&f);
        dst.stop();
        let _ = std::fs::remove_dir_all(&dst.dir);
        direct = Some(f);
    }
    out.insert(
        "initial".into(),
        Value::Array(fig1.iter().map(InitialFig::json).collect()),
    );
    out.insert(
        "filtered".into(),
        Value::Array(fig5.iter().map(InitialFig::json).collect()),
    );
    if let Some(d) = &direct {
        out.insert("initial_no_proxy".into(), d.json());
    }
    Ok((
        Fig1 {
            runs: fig1,
            receiver: b,
        },
        fig5,
    ))
}

/// B against A, and A against the generator.
async fn verify(
    a: &YuiNode,
    bnode: &YuiNode,
    ids_a: &[String],
    knowledge: &[Map<String, Value>],
    out: &mut Map<String, Value>,
) -> Result<()> {
    let on_a = a.api.list_all("knowledge").await?;
    let on_b = bnode.api.list_all("knowledge").await?;
    let mut mismatches = 0;
    for (i, id) in ids_a.iter().enumerate() {
        let (Some(ra), Some(rb)) = (on_a.get(id), on_b.get(id)) else {
            mismatches += 1;
            continue;
        };
        let want = &knowledge[i];
        let got = &ra["fields"];
        let same_gen = got["title"].as_str().map(str::trim)
            == want["title"].as_str().map(str::trim)
            && got["body"] == want["body"]
            && got["tags"] == want["tags"]
            && got["category"] == "other";
        if !same_gen || ra != rb {
            mismatches += 1;
        }
    }
    println!(
        "  verify: {} records on A, {} on B; {mismatches} differ from the generator or between A and B",
        on_a.len(),
        on_b.len()
    );
    out.insert(
        "verify".into(),
        json!({"on_a": on_a.len(), "on_b": on_b.len(), "mismatches": mismatches}),
    );
    Ok(())
}

/// What one exchange cost: the bytes at the proxy until quiet, and the
/// sync requests A served with their bodies' bytes.
struct Exchange {
    wire: Traffic,
    requests: u64,
    bodies_in: u64,
    bodies_out: u64,
}

impl Exchange {
    /// "wire … (c→s …, s→c …), … new TCP conn, … sync requests `verb` by A
    /// (bodies … in / … out)".
    fn text(&self, verb: &str) -> String {
        format!(
            "wire {} (c→s {}, s→c {}), {} new TCP conn, {} sync requests {verb} by A (bodies {} in / {} out)",
            fmt_bytes(self.wire.total()),
            self.wire.c2s,
            self.wire.s2c,
            self.wire.conns,
            self.requests,
            self.bodies_in,
            self.bodies_out
        )
    }

    /// The exchange's figures, with `more` of the caller's.
    fn json(&self, more: Value) -> Value {
        let mut v = json!({"wire": self.wire.json(), "sync_requests": self.requests,
            "bodies_in": self.bodies_in, "bodies_out": self.bodies_out});
        if let (Some(v), Value::Object(more)) = (v.as_object_mut(), more) {
            v.extend(more);
        }
        v
    }
}

/// Counts at the proxy and at A, taken before an exchange.
struct Before {
    wire: Traffic,
    inbound: Inbound,
}

impl Before {
    async fn take(a: &YuiNode, b: &YuiNode, proxy: &Proxy) -> Result<Before> {
        Ok(Before {
            wire: proxy.now(),
            inbound: inbound_from(&a.api, &b.node_id).await?,
        })
    }

    /// What crossed since, once the proxy has been quiet for 300 ms.
    async fn settled(&self, a: &YuiNode, b: &YuiNode, proxy: &Proxy) -> Result<Exchange> {
        let wire = proxy
            .settle(Duration::from_millis(300), Duration::from_secs(5))
            .await
            .since(self.wire);
        let in1 = inbound_from(&a.api, &b.node_id).await?;
        Ok(Exchange {
            wire,
            requests: in1.rounds - self.inbound.rounds,
            bodies_in: in1.bytes_in - self.inbound.bytes_in,
            bodies_out: in1.bytes_out - self.inbound.bytes_out,
        })
    }
}

/// Figure 2: idle rounds at N, forced and in the background.
async fn figure_2(
    o: &Opts,
    a: &YuiNode,
    bnode: &YuiNode,
    p_ba: &Proxy,
    out: &mut Map<String, Value>,
) -> Result<()> {
    println!(
        "\n## Figure 2: idle round at N = {} (B dials A; POST /api/v1/sync on B)",
        o.n
    );
    // Let the pushers' and long polls' last exchanges after figure 1 finish,
    // so they are not counted as the idle round's bytes.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut idle = Vec::new();
    for k in 0..5 {
        let before = Before::take(a, bnode, p_ba).await?;
        let t = Instant::now();
        bnode.api.sync().await?;
        let lat = t.elapsed();
        let x = before.settled(a, bnode, p_ba).await?;
        println!("  round {}: {}  {}", k + 1, fmt_ms(lat), x.text("served"));
        idle.push(x.json(json!({"ms": msf(lat)})));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    out.insert("idle_forced".into(), Value::Array(idle));
    if o.idle_window > 0 {
        let before = p_ba.now();
        let in0 = inbound_from(&a.api, &bnode.node_id).await?;
        let (ca0, cb0) = (cpu_ms(a.pid), cpu_ms(bnode.pid));
        tokio::time::sleep(Duration::from_secs(o.idle_window)).await;
        let wire = p_ba.now().since(before);
        let in1 = inbound_from(&a.api, &bnode.node_id).await?;
        let (ca1, cb1) = (cpu_ms(a.pid), cpu_ms(bnode.pid));
        println!(
            "  background, {} s with nothing to do: wire {} (c→s {}, s→c {}), {} long polls answered, {} new TCP conn, CPU A {} ms, B {} ms",
            o.idle_window,
            fmt_bytes(wire.total()),
            wire.c2s,
            wire.s2c,
            in1.rounds - in0.rounds,
            wire.conns,
            ca1 - ca0,
            cb1 - cb0
        );
        out.insert(
            "idle_background".into(),
            json!({"seconds": o.idle_window, "wire": wire.json(), "long_polls_answered": in1.rounds - in0.rounds,
                "cpu_ms_a": ca1 - ca0, "cpu_ms_b": cb1 - cb0}),
        );
    }
    Ok(())
}

/// Figure 3: one record edited at A at a time (`edit_ids`, from N/2), then
/// a forced round.
async fn figure_3(
    a: &YuiNode,
    bnode: &YuiNode,
    p_ba: &Proxy,
    edited: &[Value],
    edit_ids: &[String],
    out: &mut Map<String, Value>,
) -> Result<()> {
    println!("\n## Figure 3: one record edited at A (B long-polls A)");
    let mut edits = Vec::new();
    let (mut edit_lat, mut edit_bytes) = (Vec::new(), Vec::new());
    for (k, (rec, edit_id)) in edited.iter().zip(edit_ids).enumerate() {
        let body = rec["body"].clone();
        let before = Before::take(a, bnode, p_ba).await?;
        let t = Instant::now();
        a.api
            .expect(
                reqwest::Method::PATCH,
                &format!("/api/v1/records/knowledge/{edit_id}"),
                Some(json!({"fields": {"body": body}})),
                200,
            )
            .await?;
        let answered = Instant::now();
        let patch_ms = answered - t;
        let seen = edit_seen(bnode, edit_id, &body, answered).await?;
        let x = before.settled(a, bnode, p_ba).await?;
        println!(
            "  edit {}: PATCH answered in {}, visible at B {} after the answer; {}",
            k + 1,
            fmt_ms(patch_ms),
            fmt_ms(seen - answered),
            x.text("answered")
        );
        edits.push(x.json(json!({"patch_ms": msf(patch_ms), "visible_ms": msf(seen - answered)})));
        edit_lat.push(seen - answered);
        edit_bytes.push(x.wire.total());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let el = Lat::of(edit_lat, 0);
    println!(
        "  {EDITS} edits: visible at B {}; wire median {}, max {}",
        el.text(),
        fmt_bytes(median_u64(edit_bytes.clone())),
        fmt_bytes(edit_bytes.iter().copied().max().unwrap_or(0))
    );
    // A forced round right after: does anything remain?
    let (lat, wire) = p_ba
        .measure(Duration::from_millis(300), Duration::from_secs(5), async {
            bnode.api.sync().await.map(drop)
        })
        .await?;
    println!(
        "  then POST /api/v1/sync on B: {}  wire {}",
        fmt_ms(lat),
        fmt_bytes(wire.total())
    );
    out.insert("edit".into(), Value::Array(edits));
    Ok(())
}

/// Polls B every ~1 ms until the edited body is there; when it was seen.
async fn edit_seen(bnode: &YuiNode, id: &str, body: &Value, answered: Instant) -> Result<Instant> {
    // Bounded by the deadline.
    loop {
        if bnode
            .api
            .get_fields("knowledge", id)
            .await?
            .is_some_and(|f| f["body"] == *body)
        {
            return Ok(Instant::now());
        }
        if answered.elapsed() > Duration::from_secs(10) {
            bail!("the edit did not reach B in 10 s");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Figure 4: propagation with B long-polling A, then with A pushing to B
/// (B's own link to A cut).
async fn figure_4(
    o: &Opts,
    a: &YuiNode,
    bnode: &YuiNode,
    c: &YuiNode,
    p_ba: &Proxy,
    records: &[Value],
    out: &mut Map<String, Value>,
) -> Result<()> {
    println!(
        "\n## Figure 4: propagation of one write, {} writes per path (201 at A → first GET 200)",
        o.writes
    );
    let paths = Paths {
        writer: a,
        direct: bnode,
        relayed: c,
        records,
        writes: o.writes,
    };
    let mut fig4 = Map::new();
    paths
        .measure(
            [
                "B long-polls A (write at A, read at B):  ",
                "A ← B ← C, two long polls (read at C):  ",
            ],
            ["pull_direct", "pull_relayed"],
            &mut fig4,
        )
        .await?;

    // A dials B; B's own link to A is cut.
    p_ba.block();
    let p_ab = Proxy::start(bnode.peer_addr).await?;
    let (first, wire) = p_ab
        .measure(Duration::from_millis(500), Duration::from_secs(20), async {
            a.api.add_peer(&p_ab.url()).await?;
            first_exchange_done(a).await
        })
        .await?;
    println!(
        "  A adds B as a peer (B already holds everything): done in {}, wire {} (c→s {}, s→c {}), {} TCP conn",
        fmt_ms(first),
        fmt_bytes(wire.total()),
        fmt_bytes(wire.c2s),
        fmt_bytes(wire.s2c),
        wire.conns
    );
    out.insert(
        "second_direction_peering".into(),
        json!({"ms": msf(first), "wire": wire.json()}),
    );
    paths
        .measure(
            [
                "A pushes to B (write at A, read at B):  ",
                "A → B ← C, relayed (read at C):         ",
            ],
            ["push_direct", "push_relayed"],
            &mut fig4,
        )
        .await?;
    out.insert("propagation".into(), Value::Object(fig4));
    Ok(())
}

/// The two paths of figure 4: from the writer to a node that syncs with it
/// directly, and on to one that syncs only with that node.
struct Paths<'a> {
    writer: &'a YuiNode,
    direct: &'a YuiNode,
    relayed: &'a YuiNode,
    records: &'a [Value],
    writes: usize,
}

impl Paths<'_> {
    /// Propagation along both paths, printed with `labels` and kept in
    /// `fig4` under `keys`.
    async fn measure(
        &self,
        labels: [&str; 2],
        keys: [&str; 2],
        fig4: &mut Map<String, Value>,
    ) -> Result<()> {
        let receivers = [&self.direct.api, &self.relayed.api];
        let lats = propagation(&self.writer.api, &receivers, self.writes, self.records).await?;
        for ((label, key), lat) in labels.iter().zip(keys).zip(&lats) {
            println!("  {label} {}", lat.text());
            fig4.insert(key.into(), lat.json());
        }
        Ok(())
    }
}

/// Waits until A's peer list shows a first exchange done with nothing
/// pending (two minutes at most).
async fn first_exchange_done(a: &YuiNode) -> Result<()> {
    let t = Instant::now();
    // Bounded by the deadline.
    loop {
        let v = a
            .api
            .expect(reqwest::Method::GET, "/api/v1/peers", None, 200)
            .await?;
        let done = v["peers"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|p| p["state"] == "ok" && p["pending"] == 0);
        if done {
            return Ok(());
        }
        if t.elapsed() > Duration::from_secs(120) {
            bail!("A's first exchange with B did not finish: {v}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn print_breakdown(bd: &Breakdown, out: &mut Map<String, Value>) {
    let sum = bd.request
        + bd.accept
        + bd.prepare
        + bd.delivered
        + bd.encode_gzip
        + bd.inflate_decode
        + bd.apply;
    println!(
        "  {} batches, {} docs, Automerge bytes {} → message {} → gzip {}",
        bd.batches,
        bd.docs,
        fmt_bytes(bd.changes_bytes),
        fmt_bytes(bd.raw_bytes),
        fmt_bytes(bd.gzip_bytes)
    );
    for (what, d) in [
        ("receiver: sync_request (a read)", bd.request),
        ("source: sync_accept (a write, nothing pushed)", bd.accept),
        ("source: sync_prepare (read feed + blobs)", bd.prepare),
        (
            "source: sync_delivered (a write of peer heads)",
            bd.delivered,
        ),
        ("source: protobuf encode + gzip", bd.encode_gzip),
        ("receiver: inflate + decode", bd.inflate_decode),
        (
            "receiver: sync_apply (merge, validate, store; a write)",
            bd.apply,
        ),
        ("sum (the protocol runs these one after another)", sum),
        ("receiver's pusher: echo scan of its feed", bd.echo_scan),
    ] {
        println!("  {what:<50} {:>9}", fmt_ms(d));
    }
    let step_sum: Duration = bd
        .steps
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != ALTERNATIVE_STEP)
        .map(|(_, (_, d))| *d)
        .sum();
    println!("  sync_apply's per-document work outside SQLite (same docs, one thread):");
    for (what, d) in &bd.steps {
        println!(
            "    {what:<40} {:>9}  ({:.0} µs/doc)",
            fmt_ms(*d),
            d.as_secs_f64() * 1e6 / bd.docs.max(1) as f64
        );
    }
    println!(
        "    {:<40} {:>9}  → SQLite (records, search index, peer heads, commit) ≈ {}",
        "sum (without the alternative)",
        fmt_ms(step_sum),
        fmt_ms(bd.apply.saturating_sub(step_sum))
    );
    for (level, bytes, took) in &bd.levels {
        println!(
            "  gzip level {level} of the same messages: {} in {}",
            fmt_bytes(*bytes),
            fmt_ms(*took)
        );
    }
    out.insert(
        "breakdown_ms".into(),
        json!({
            "batches": bd.batches, "docs": bd.docs,
            "sync_request": msf(bd.request), "sync_accept": msf(bd.accept),
            "sync_prepare": msf(bd.prepare), "sync_delivered": msf(bd.delivered),
            "encode_gzip": msf(bd.encode_gzip), "inflate_decode": msf(bd.inflate_decode),
            "sync_apply": msf(bd.apply), "sum": msf(sum), "echo_scan": msf(bd.echo_scan),
            "automerge_bytes": bd.changes_bytes, "message_bytes": bd.raw_bytes, "gzip_bytes": bd.gzip_bytes,
            "apply_steps_ms": bd.steps.iter().map(|(k, d)| ((*k).to_owned(), json!(msf(*d)))).collect::<Map<String, Value>>(),
            "gzip_levels": bd.levels.iter().map(|(l, b, d)| json!({"level": l, "bytes": b, "ms": msf(*d)})).collect::<Vec<_>>(),
        }),
    );
}

/// Figures 1 and 5 against PouchDB and bare Automerge, and their goals.
fn summary(
    n: usize,
    fig1: &[InitialFig],
    fig5: &[InitialFig],
    bare: &BareFig,
    bare2: &BareFig,
    pouch: Option<&Value>,
) {
    println!("\n## Summary (N = {n})");
    let med = |v: &[InitialFig]| -> (Duration, u64) {
        let mut t: Vec<Duration> = v.iter().map(|f| f.wall).collect();
        t.sort_unstable();
        (
            t.get(t.len() / 2).copied().unwrap_or_default(),
            median_u64(v.iter().map(|f| f.wire.total()).collect()),
        )
    };
    let (t1, b1) = med(fig1);
    let (t5, b5) = med(fig5);
    let pouch_initial = pouch.map(|p| {
        (
            p["phases"]["initial"]["ms"].as_f64().unwrap_or(0.0),
            p["phases"]["initial"]["bytes_total"].as_u64().unwrap_or(0),
        )
    });
    println!(
        "  initial: Yui {} / {}; bare Automerge save→load {:.0} ms; PouchDB {}",
        fmt_ms(t1),
        fmt_bytes(b1),
        bare.pipeline_ms,
        pouch_initial.map_or("-".into(), |(ms, b)| format!(
            "{:.0} ms / {}",
            ms,
            fmt_bytes(b)
        ))
    );
    if let Some((pms, pb)) = pouch_initial {
        println!(
            "    vs PouchDB: {:.2}× faster (goal ≥ 1.5×), bytes {:.2}× PouchDB's (goal ≤ 1×)",
            pms / (t1.as_secs_f64() * 1e3),
            b1 as f64 / pb as f64
        );
    }
    println!(
        "    vs bare Automerge: {:.2}× its time before, {:.2}× after (goal ≤ 1.5×)",
        t1.as_secs_f64() * 1e3 / bare.pipeline_ms,
        t1.as_secs_f64() * 1e3 / bare2.pipeline_ms
    );
    println!(
        "  filtered: {} / {} = {:+.1} % time, {:+.1} % bytes vs initial (goal within 5 %)",
        fmt_ms(t5),
        fmt_bytes(b5),
        (t5.as_secs_f64() / t1.as_secs_f64() - 1.0) * 100.0,
        (b5 as f64 / b1 as f64 - 1.0) * 100.0
    );
}
