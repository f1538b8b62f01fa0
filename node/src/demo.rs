//! `yui demo`: three towns on this machine, joined through a fresh consortium
//! CA and peered in a chain (立科町 → 大町市 ← 糸魚川市), filled with the
//! example records of `examples/demo-records.json`. It shows a shared record
//! crossing both hops and a worker's record staying home, then serves until
//! Ctrl-C. Everything runs through the same code as real nodes: `init`,
//! `ca issue`, `cert install`, `serve`, the peer port and mutual TLS.
#![allow(clippy::print_stdout)]

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use yui_protocol::Collection;
use yui_protocol::validate::validate_create;

use crate::datadir::{DataDir, InitOptions};
use crate::node::Node;
use crate::pki::CaDir;

const RECORDS: &str = include_str!("../../examples/demo-records.json");

/// The console user each demo town gets.
const DEMO_USER: &str = "demo";

struct Town {
    id: String,
    name: String,
    node: Arc<Node>,
    api: String,
    peer_url: String,
    token: String,
    /// The console user `demo` (an administrator) has this password.
    console_password: String,
    /// Record ids by the names given in the example file, with when each was written.
    named: HashMap<String, String>,
    written: HashMap<String, Instant>,
}

pub async fn run(dir: Option<PathBuf>, stop: impl Future<Output = ()>) -> Result<()> {
    let keep = dir.is_some();
    let base = match dir {
        Some(d) => d,
        None => std::env::temp_dir().join(format!("yui-demo-{}", std::process::id())),
    };
    if base.exists()
        && std::fs::read_dir(&base)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        bail!(
            "{} exists and is not empty; give an empty or new directory",
            base.display()
        );
    }
    let result = run_in(&base, stop).await;
    if !keep {
        let _ = std::fs::remove_dir_all(&base);
    }
    result
}

/// The demo's steps, in order; each prints its own lines.
async fn run_in(base: &std::path::Path, stop: impl Future<Output = ()>) -> Result<()> {
    let spec: Value = serde_json::from_str(RECORDS).context("examples/demo-records.json")?;
    let towns_spec = spec["towns"].as_array().context("demo records: no towns")?;
    let now = time::OffsetDateTime::now_utc();
    let (ca, ca_pem) = make_ca(base, now)?;

    let shutdown = CancellationToken::new();
    let mut towns = Vec::new();
    let mut servers = Vec::new();
    for t in towns_spec {
        let (town, server) = start_town(base, t, &ca, &ca_pem, now).await?;
        towns.push(town);
        servers.push(server);
    }
    peer_in_a_chain(&towns).await?;
    let tasks = serve_all(servers, &shutdown);
    println!(
        "3つの町を起動し、{} → {} ← {} の順につなぎました / three towns, peered in a chain",
        towns[0].name, towns[1].name, towns[2].name
    );

    write_examples(&mut towns, towns_spec).await?;
    println!("例のレコードを入れました / example records written");

    // Show a shared record crossing both hops, and a worker staying home.
    let pilot = towns[0]
        .named
        .get("worktrip")
        .cloned()
        .context("worktrip record")?;
    let worker = towns[0]
        .named
        .get("hanako")
        .cloned()
        .context("worker record")?;
    show_pilot_crossing(&towns, &pilot).await;
    wait_until_all_shared(&towns, towns_spec).await?;
    show_worker_stays_home(&towns, &worker).await;
    print_towns(&towns);

    tokio::select! {
        _ = stop => {}
        _ = shutdown.cancelled() => {}
    }
    println!("停止しています / stopping…");
    shutdown.cancel();
    for task in tasks {
        task.await.context("a demo town")??;
    }
    Ok(())
}

/// A fresh consortium CA in `base/ca`; returns it and its certificate.
fn make_ca(base: &std::path::Path, now: time::OffsetDateTime) -> Result<(CaDir, Vec<u8>)> {
    let ca = CaDir::new(base.join("ca"));
    ca.init("結デモ・コンソーシアム", now)?;
    let ca_pem = std::fs::read(ca.cert_path())?;
    println!("結 Yui デモ / demo — {}", base.display());
    println!("コンソーシアム認証局を作りました / created a consortium CA");
    Ok((ca, ca_pem))
}

/// A node and its two listeners, bound but not yet served.
type Server = (Arc<Node>, tokio::net::TcpListener, tokio::net::TcpListener);

/// One town as `yui init`, `yui ca issue` and `yui cert install` would make
/// it, opened, with its console user and its listeners bound.
async fn start_town(
    base: &std::path::Path,
    t: &Value,
    ca: &CaDir,
    ca_pem: &[u8],
    now: time::OffsetDateTime,
) -> Result<(Town, Server)> {
    let id = t["town"].as_str().context("town id")?.to_owned();
    let name = t["name"].as_str().unwrap_or_default().to_owned();
    let data = DataDir::new(base.join(&id));
    data.init(&InitOptions {
        town: id.clone(),
        name: name.clone(),
        api_listen: "127.0.0.1:0".parse()?,
        peer_listen: "127.0.0.1:0".parse()?,
    })?;
    let csr = std::fs::read_to_string(data.csr_path())?;
    let (cert_pem, _) = ca.issue(&csr, crate::pki::DEFAULT_CERT_DAYS, now)?;
    crate::pki::install(
        &data,
        &id,
        cert_pem.as_bytes(),
        ca_pem,
        None,
        now.unix_timestamp(),
    )?;
    let token = data.read_token()?;
    let node = Arc::new(Node::open(data, true)?);
    // A console login per town; a fresh password each run, shown at the end.
    let console_password = new_password();
    node.accounts
        .add_user(DEMO_USER, crate::accounts::Role::Admin, &console_password)
        .await?;
    let api = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let peers = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let api_url = format!("http://{}/", api.local_addr()?);
    let peer_url = format!("https://{}", peers.local_addr()?);
    let town = Town {
        id,
        name,
        node: node.clone(),
        api: api_url,
        peer_url,
        token,
        console_password,
        named: HashMap::new(),
        written: HashMap::new(),
    };
    Ok((town, (node, api, peers)))
}

/// Twelve letters and digits, without the ones people confuse (i, l, o, 0, 1).
fn new_password() -> String {
    use rand::Rng;
    const LETTERS: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
    let mut rng = rand::rng();
    (0..12)
        .map(|_| LETTERS[rng.random_range(0..LETTERS.len())] as char)
        .collect()
}

/// A chain: the two outer towns dial the middle one, which dials nobody.
async fn peer_in_a_chain(towns: &[Town]) -> Result<()> {
    let middle = towns
        .get(1)
        .context("the demo needs three towns")?
        .peer_url
        .clone();
    for (i, town) in towns.iter().enumerate() {
        if i != 1 {
            crate::peer::add_peer(&town.node.federation(), &middle, None, None).await?;
        }
    }
    Ok(())
}

fn serve_all(
    servers: Vec<Server>,
    shutdown: &CancellationToken,
) -> Vec<tokio::task::JoinHandle<crate::error::Result<()>>> {
    servers
        .into_iter()
        .map(|(node, api, peers)| {
            tokio::spawn(crate::daemon::serve(
                node,
                api,
                Some(peers),
                shutdown.clone(),
            ))
        })
        .collect()
}

/// Each town's example records, written straight to its store; records
/// refer to earlier ones as "@name".
async fn write_examples(towns: &mut [Town], towns_spec: &[Value]) -> Result<()> {
    for (town, spec) in towns.iter_mut().zip(towns_spec) {
        for r in spec["records"].as_array().into_iter().flatten() {
            let collection: Collection = r["collection"].as_str().unwrap_or_default().parse()?;
            let mut fields = r["fields"].clone();
            resolve_names(&mut fields, &town.named);
            let fields = validate_create(collection, fields.as_object().context("fields")?)
                .with_context(|| format!("example {collection} record of {}", town.id))?;
            let created = town
                .node
                .store
                .create(collection, fields, crate::clock::now_ms())
                .await?;
            let created: Value = serde_json::from_str(created.get())?;
            if let Some(name) = r["name"].as_str() {
                town.named.insert(
                    name.to_owned(),
                    created["id"].as_str().unwrap_or_default().to_owned(),
                );
                town.written.insert(name.to_owned(), Instant::now());
            }
        }
    }
    Ok(())
}

/// Waits (up to 30 s from its writing) for the first town's pilot result to
/// reach the last town, two hops away, and says how long it took.
async fn show_pilot_crossing(towns: &[Town], pilot: &str) {
    let start = towns[0]
        .written
        .get("worktrip")
        .copied()
        .unwrap_or_else(Instant::now);
    let arrived = loop {
        if towns[2]
            .node
            .store
            .get(Collection::PilotResults, pilot.to_owned(), false)
            .await
            .is_ok()
        {
            break true;
        }
        if start.elapsed() > Duration::from_secs(30) {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    if arrived {
        println!(
            "✔ {} のパイロット成果「立科 WORK TRIP」が {} を経て {} に届きました（{} ms）",
            towns[0].name,
            towns[1].name,
            towns[2].name,
            start.elapsed().as_millis()
        );
        println!(
            "  the WORK TRIP pilot result crossed {} → {} → {}",
            towns[0].id, towns[1].id, towns[2].id
        );
    } else {
        println!(
            "✘ 共有レコードが 30 秒以内に届きませんでした / a shared record did not arrive within 30 s"
        );
    }
}

/// Waits (up to 30 s) until every town holds every shared example record.
async fn wait_until_all_shared(towns: &[Town], towns_spec: &[Value]) -> Result<()> {
    let shared_total = towns_spec
        .iter()
        .flat_map(|t| t["records"].as_array().into_iter().flatten())
        .filter(|r| {
            r["collection"]
                .as_str()
                .and_then(|c| c.parse::<Collection>().ok())
                .is_some_and(Collection::is_shared)
        })
        .count() as u64;
    let settle = Instant::now();
    loop {
        let mut settled = true;
        for town in towns {
            let counts = town.node.store.counts().await?;
            let shared: u64 = counts
                .iter()
                .filter(|(c, _)| c.is_shared())
                .map(|(_, n)| n)
                .sum();
            settled &= shared == shared_total;
        }
        if settled {
            println!(
                "✔ 3つの町が共有レコード {shared_total} 件をそろって持っています / all three towns hold all {shared_total} shared records"
            );
            return Ok(());
        }
        if settle.elapsed() > Duration::from_secs(30) {
            println!("✘ 共有レコードがそろいませんでした / the towns did not converge within 30 s");
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The first town's worker record must be in no other town.
async fn show_worker_stays_home(towns: &[Town], worker: &str) {
    for town in &towns[1..] {
        let there = town
            .node
            .store
            .get(Collection::Workers, worker.to_owned(), true)
            .await
            .is_ok();
        println!(
            "{} 住民ワーカー「山田 花子」の記録は {} に{} / the worker's record is {} in {}",
            if there { "✘" } else { "✔" },
            town.name,
            if there {
                "届いてしまいました"
            } else {
                "ありません（立科町の外に出ません）"
            },
            if there { "PRESENT" } else { "absent" },
            town.id
        );
    }
}

/// Where to look: each town's console, API, token, peer port and data.
fn print_towns(towns: &[Town]) {
    println!();
    for town in towns {
        println!("{} ({})", town.name, town.id);
        println!(
            "  コンソール / console: {}  (ユーザー / user: {DEMO_USER}, パスワード / password: {})",
            town.api, town.console_password
        );
        println!("  API:   {}api/v1/status", town.api);
        println!("  token: {}", town.token);
        println!("  peers: {}/", town.peer_url);
        println!("  data:  {}", town.node.data_dir.path.display());
    }
    println!();
    println!(
        "例 / try:  curl -s -H 'Authorization: Bearer {}' '{}api/v1/search?q=研修'",
        towns[2].token, towns[2].api
    );
    println!("Ctrl-C で終了します / Ctrl-C stops the demo");
}

/// Replaces "@name" strings with the ids of named records.
fn resolve_names(value: &mut Value, named: &HashMap<String, String>) {
    match value {
        Value::String(s) => {
            if let Some(id) = s.strip_prefix('@').and_then(|n| named.get(n)) {
                *s = id.clone();
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| resolve_names(v, named)),
        Value::Object(map) => map.values_mut().for_each(|v| resolve_names(v, named)),
        _ => {}
    }
}
