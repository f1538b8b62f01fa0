//! Federation: the peer port, outbound peering, and the tasks that keep each
//! peer in sync.
//!
//! Each peer this node dials gets two tasks. The *puller* holds a long poll
//! open (the peer answers as soon as it has news, or after
//! [`LONG_POLL_MS`]), so a node that can only dial out still hears of changes
//! at once. The *pusher* wakes on every committed write (debounced by
//! [`PUSH_DEBOUNCE`]) and sends what the peer lacks. Failures back off from
//! one second to a minute; "sync now" cuts any wait short. Every exchange's
//! outcome is persisted per peer (cursors, last success, last error) and
//! shown by `status` and `/metrics`.

pub mod client;
pub mod codec;
pub mod files;
mod pipeline;
pub mod server;
mod signers;
pub mod tls;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::datadir::DataDir;
use crate::error::{Error, Result};
use crate::pki::PeerIdentity;
use crate::store::{PeerInfo, PeerRound, Store};
use client::PeerClient;
pub use tls::Trust;

/// What federation works with, and all it knows of the node: the store, the
/// node's trust and peer tasks once it has joined a consortium, and the data
/// directory that revocation lists are installed in. Cheap to clone; the
/// peer tasks hold one each.
#[derive(Clone)]
pub struct Federation {
    pub store: Store,
    pub peering: Option<Arc<Peering>>,
    pub data_dir: DataDir,
    /// Attached files: served to peers, fetched from them.
    pub blobs: crate::blobs::Blobs,
    pub attachment_limits: crate::datadir::AttachmentLimits,
}

/// Longest a pull waits at the peer for news.
pub const LONG_POLL_MS: u32 = 25_000;
/// Writes closer together than this go out in one push.
pub const PUSH_DEBOUNCE: Duration = Duration::from_millis(5);
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// A pusher also wakes this often, to retry what failed.
const PUSH_RETRY: Duration = Duration::from_secs(30);

/// A connection attempt the peer port refused. Repeats (same host, same
/// reason) are counted in one entry, so a flood cannot push the one
/// interesting refusal out of the list.
#[derive(Debug, Clone, Serialize)]
pub struct RefusedAttempt {
    /// The latest time.
    pub at: String,
    /// The latest address (or member) it came from.
    pub from: String,
    pub reason: String,
    /// How many times (at least 1); `first_at` is the earliest.
    pub count: u64,
    pub first_at: String,
}

/// Two refusals' sources are the same host: equal IPs for socket
/// addresses (ports differ from one attempt to the next), else equal text.
fn same_source(a: &str, b: &str) -> bool {
    match (
        a.parse::<std::net::SocketAddr>(),
        b.parse::<std::net::SocketAddr>(),
    ) {
        (Ok(a), Ok(b)) => a.ip() == b.ip(),
        _ => a == b,
    }
}

/// Traffic from nodes that dial us.
#[derive(Debug, Clone, Default, Serialize)]
pub struct InboundStats {
    pub town: String,
    pub rounds: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub docs_in: u64,
    pub docs_out: u64,
    pub bad_messages: u64,
    /// Pushed documents refused (protocol.md 4.3: schema, town, time,
    /// personal data, …); each is also logged.
    pub refused_docs: u64,
    /// Requests that asked for the next batch before the last was stored
    /// (pipelined pulls, `confirmed` below `since`).
    pub pulled_ahead: u64,
    pub last_seen_at: String,
}

struct PeerTask {
    cancel: CancellationToken,
    /// Wakes a puller that is backing off after failures ("sync now").
    interrupt: Notify,
    /// Held while asking an unknown peer who it is, so puller and pusher
    /// do not both ask.
    identify: tokio::sync::Mutex<()>,
    /// Wakes the pusher.
    wake_push: Notify,
    push_lock: tokio::sync::Mutex<()>,
    pull_lock: tokio::sync::Mutex<()>,
    /// Documents of the last answer we could not apply (sent next time).
    needs: Mutex<Vec<yui_protocol::wire::Need>>,
    server_revocations: AtomicU64,
    index: usize,
}

impl PeerTask {
    /// What an answer leaves for the next exchange: the documents to ask
    /// for again, and, when the peer turned out to be restored from a
    /// backup, a pusher woken to resend (its cursor went back to the start).
    fn carry_over(&self, url: &str, needs: &[yui_protocol::wire::Need], server_restored: bool) {
        *lock(&self.needs) = needs.to_vec();
        if server_restored {
            tracing::warn!(peer = %url, "the peer was restored from a backup: resending everything it may lack");
            self.wake_push.notify_one();
        }
    }

    fn new(cancel: CancellationToken, index: usize) -> PeerTask {
        PeerTask {
            cancel,
            interrupt: Notify::new(),
            identify: tokio::sync::Mutex::new(()),
            wake_push: Notify::new(),
            push_lock: tokio::sync::Mutex::new(()),
            pull_lock: tokio::sync::Mutex::new(()),
            needs: Mutex::new(Vec::new()),
            server_revocations: AtomicU64::new(0),
            index,
        }
    }
}

/// Federation state of a node that has joined the consortium.
pub struct Peering {
    /// Replaced when a certificate is installed on the running node
    /// (renewal, a new key, a CA rollover: `crate::membership`).
    trust: std::sync::RwLock<Arc<Trust>>,
    /// The peer port's TLS configuration, built from `trust`: each new
    /// connection takes the current one.
    server_config: std::sync::RwLock<Arc<rustls::ServerConfig>>,
    /// Replaced whenever a newer revocation list arrives or the trust
    /// changes, which drops every pooled connection: the next handshake
    /// checks the new list with the new certificate.
    client: std::sync::RwLock<Arc<PeerClient>>,
    /// Bumped when the trust is replaced: the peer port closes connections
    /// made with the old one once their request is answered.
    trust_generation: tokio::sync::watch::Sender<u64>,
    tasks: Mutex<HashMap<String, Arc<PeerTask>>>,
    refused: Mutex<VecDeque<RefusedAttempt>>,
    /// Connections the peer port refused since start (every one, repeats
    /// included).
    refused_total: AtomicU64,
    inbound: Mutex<HashMap<String, InboundStats>>,
    /// Per dialled peer (its URL): documents in its answers this node
    /// refused, since start.
    refused_in_answers: Mutex<HashMap<String, u64>>,
    next_index: AtomicU64,
    /// The member keys change signatures are checked with.
    signers: signers::Signers,
    /// File transfers since start (`files`).
    pub files: files::FileStats,
    /// Woken when a sync round sent records: the files task asks the peer
    /// which of their files it lacks.
    wake_files: Notify,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn now_text() -> String {
    yui_protocol::record::format_time(crate::clock::now_ms())
}

/// The result of syncing with one peer now (`POST /api/v1/sync`).
#[derive(Debug, Clone, Serialize)]
pub struct SyncResult {
    pub url: String,
    pub town: Option<String>,
    pub ok: bool,
    pub error: Option<String>,
    pub docs_in: u64,
    pub docs_out: u64,
}

impl Peering {
    pub fn new(trust: Trust) -> Result<Peering> {
        let trust = Arc::new(trust);
        let signers = signers::Signers::default();
        Ok(Peering {
            client: std::sync::RwLock::new(Arc::new(PeerClient::new(&trust)?)),
            server_config: std::sync::RwLock::new(Arc::new(trust.server_config()?)),
            trust: std::sync::RwLock::new(trust),
            trust_generation: tokio::sync::watch::Sender::new(0),
            tasks: Mutex::new(HashMap::new()),
            refused: Mutex::new(VecDeque::new()),
            refused_total: AtomicU64::new(0),
            inbound: Mutex::new(HashMap::new()),
            refused_in_answers: Mutex::new(HashMap::new()),
            next_index: AtomicU64::new(1),
            signers,
            files: Default::default(),
            wake_files: Notify::new(),
        })
    }

    /// Logs and remembers a refused connection attempt.
    pub fn refused(&self, from: String, reason: String) {
        self.refused_total.fetch_add(1, Ordering::Relaxed);
        let mut list = lock(&self.refused);
        let at = now_text();
        if let Some(i) = list
            .iter()
            .position(|r| same_source(&r.from, &from) && r.reason == reason)
            && let Some(mut repeat) = list.remove(i)
        {
            repeat.from.clone_from(&from);
            // The log hears of repeats 2, 4, 8, 16 … only.
            repeat.count += 1;
            if repeat.count.is_power_of_two() {
                tracing::warn!(%from, %reason, times = repeat.count, "peer port refused a connection");
            }
            repeat.at = at;
            list.push_back(repeat);
            return;
        }
        tracing::warn!(%from, %reason, "peer port refused a connection");
        if list.len() >= 100 {
            list.pop_front();
        }
        list.push_back(RefusedAttempt {
            first_at: at.clone(),
            at,
            from,
            reason,
            count: 1,
        });
    }

    /// Refusals, oldest first.
    /// Connections the peer port refused since start.
    pub fn refused_total(&self) -> u64 {
        self.refused_total.load(Ordering::Relaxed)
    }

    pub fn refused_attempts(&self) -> Vec<RefusedAttempt> {
        lock(&self.refused).iter().cloned().collect()
    }

    pub fn bad_message(&self, peer: &PeerIdentity, error: &str) {
        tracing::warn!(peer = %peer.town, node_id = %peer.node_id, %error, "refused a malformed message from a peer");
        let mut inbound = lock(&self.inbound);
        let s = inbound.entry(peer.node_id.clone()).or_default();
        s.town.clone_from(&peer.town);
        s.bad_messages += 1;
    }

    /// Counts documents a node pushed that this node refused.
    pub fn refused_documents(&self, peer: &PeerIdentity, count: u64) {
        if count == 0 {
            return;
        }
        let mut inbound = lock(&self.inbound);
        let s = inbound.entry(peer.node_id.clone()).or_default();
        s.town.clone_from(&peer.town);
        s.refused_docs += count;
    }

    /// Counts documents in the answers of the peer at `url` (to this
    /// node's pulls, and to its pushes) that this node refused.
    pub fn refused_in_answer(&self, url: &str, count: u64) {
        if count == 0 {
            return;
        }
        *lock(&self.refused_in_answers)
            .entry(url.to_owned())
            .or_default() += count;
    }

    /// Documents from the peer at `url` refused in its answers, since start.
    pub fn refused_from(&self, url: &str) -> u64 {
        lock(&self.refused_in_answers)
            .get(url)
            .copied()
            .unwrap_or(0)
    }

    pub fn served(
        &self,
        peer: &PeerIdentity,
        bytes_in: u64,
        bytes_out: u64,
        docs_in: u64,
        docs_out: u64,
        pulled_ahead: bool,
    ) {
        let mut inbound = lock(&self.inbound);
        let s = inbound.entry(peer.node_id.clone()).or_default();
        s.town.clone_from(&peer.town);
        s.rounds += 1;
        s.bytes_in += bytes_in;
        s.bytes_out += bytes_out;
        s.docs_in += docs_in;
        s.docs_out += docs_out;
        s.pulled_ahead += u64::from(pulled_ahead);
        s.last_seen_at = now_text();
    }

    pub fn inbound(&self) -> Vec<(String, InboundStats)> {
        let mut v: Vec<_> = lock(&self.inbound)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// What this node holds and trusts now.
    pub fn trust(&self) -> Arc<Trust> {
        self.trust
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The peer port's TLS configuration for a new connection.
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        self.server_config
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Takes a new certificate, key or CA into use at once: new
    /// connections (both ways) present and check it; connections already
    /// open finish on the old one.
    pub fn replace_trust(&self, trust: Trust) -> Result<()> {
        let trust = Arc::new(trust);
        let server = Arc::new(trust.server_config()?);
        let client = Arc::new(PeerClient::new(&trust)?);
        *self
            .server_config
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = server;
        *self
            .client
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = client;
        *self
            .trust
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = trust;
        self.trust_generation.send_modify(|g| *g += 1);
        Ok(())
    }

    /// Changes when the trust is replaced.
    pub fn watch_trust(&self) -> tokio::sync::watch::Receiver<u64> {
        self.trust_generation.subscribe()
    }

    /// Installs a newer revocation list (verified against the CA), and
    /// with it the revoked keys in the store's signer book.
    pub fn install_revocations(
        &self,
        store: &Store,
        data_dir: &DataDir,
        der: &[u8],
    ) -> Result<bool> {
        let trust = self.trust();
        let newer = trust.install_revocations(data_dir, der)?;
        if newer {
            self.publish_signers(store);
            match PeerClient::new(&trust) {
                Ok(fresh) => {
                    *self
                        .client
                        .write()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(fresh);
                }
                Err(e) => tracing::error!(error = %e, "could not rebuild the peer client"),
            }
        }
        Ok(newer)
    }

    fn client(&self) -> Arc<PeerClient> {
        self.client
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Starts the tasks of every stored peer.
    pub async fn start_all(fed: &Federation, shutdown: &CancellationToken) -> Result<()> {
        for peer in fed.store.peers().await? {
            Peering::start(fed, &peer.url, shutdown);
        }
        tokio::spawn(files::fetch_loop(fed.clone(), shutdown.child_token()));
        Ok(())
    }

    /// Starts (or keeps) the tasks of one peer.
    pub fn start(fed: &Federation, url: &str, shutdown: &CancellationToken) {
        let Some(peering) = fed.peering.clone() else {
            return;
        };
        let task = {
            let mut tasks = lock(&peering.tasks);
            if tasks.contains_key(url) {
                return;
            }
            let task = Arc::new(PeerTask::new(
                shutdown.child_token(),
                peering.next_index.fetch_add(1, Ordering::Relaxed) as usize,
            ));
            tasks.insert(url.to_owned(), task.clone());
            task
        };
        tokio::spawn(pull_loop(fed.clone(), url.to_owned(), task.clone()));
        tokio::spawn(push_loop(fed.clone(), url.to_owned(), task));
    }

    /// Stops the tasks of a removed peer.
    pub fn stop(&self, url: &str) {
        if let Some(task) = lock(&self.tasks).remove(url) {
            task.cancel.cancel();
        }
    }

    fn task(&self, url: &str) -> Option<Arc<PeerTask>> {
        lock(&self.tasks).get(url).cloned()
    }

    /// Syncs with every peer now, both ways, until each has nothing more.
    pub async fn sync_all(fed: &Federation) -> Result<Vec<SyncResult>> {
        Peering::sync_peers(fed, None).await
    }

    /// [`Peering::sync_all`], or only with the peer at `only` (its URL as
    /// listed); an unknown URL is a not-found error.
    pub async fn sync_peers(fed: &Federation, only: Option<&str>) -> Result<Vec<SyncResult>> {
        let mut peers = fed.store.peers().await?;
        if let Some(url) = only {
            peers.retain(|p| p.url == url);
            if peers.is_empty() {
                return Err(Error::NotFound(format!("no peer with the URL {url}")));
            }
        }
        let mut jobs = Vec::new();
        for peer in peers {
            let fed = fed.clone();
            jobs.push(tokio::spawn(async move {
                let mut result = SyncResult {
                    url: peer.url.clone(),
                    town: peer.town.clone(),
                    ok: true,
                    error: None,
                    docs_in: 0,
                    docs_out: 0,
                };
                for _ in 0..1000 {
                    match run_exchange(&fed, &peer.url, true, true, 0, true).await {
                        Ok(x) => {
                            result.docs_in += x.docs_in;
                            result.docs_out += x.docs_out;
                            if !x.more {
                                break;
                            }
                        }
                        Err(e) => {
                            result.ok = false;
                            result.error = Some(e.to_string());
                            break;
                        }
                    }
                }
                if let Some(task) = fed.peering.as_ref().and_then(|p| p.task(&peer.url)) {
                    task.interrupt.notify_waiters();
                }
                if result.town.is_none() {
                    result.town = fed
                        .store
                        .peers()
                        .await
                        .ok()
                        .and_then(|p| p.into_iter().find(|p| p.url == peer.url)?.town);
                }
                result
            }));
        }
        let mut out = Vec::new();
        for job in jobs {
            out.push(
                job.await
                    .map_err(|e| Error::Storage(format!("sync task: {e}")))?,
            );
        }
        Ok(out)
    }
}

/// One exchange with the peer at `url`, with its state read before and
/// written after. A `manual` round runs beside the background puller.
async fn run_exchange(
    fed: &Federation,
    url: &str,
    push: bool,
    pull: bool,
    wait_ms: u32,
    manual: bool,
) -> Result<client::Exchange> {
    let peering = fed.peering.clone().ok_or_else(not_joined)?;
    let ephemeral;
    let task = match peering.task(url) {
        Some(t) => t,
        None => {
            // `yui sync` without a running node: no background tasks exist.
            ephemeral = Arc::new(PeerTask::new(CancellationToken::new(), 0));
            ephemeral.clone()
        }
    };
    // A manual round ("sync now") runs beside the background puller rather
    // than cutting its long poll: cutting it would drop its connection and
    // cost a new TLS handshake. Two pulls at once are safe (each saves its
    // cursor with what it applied; a stale one only means reading again).
    let _push = if push {
        Some(task.push_lock.lock().await)
    } else {
        None
    };
    let _pull = if pull && !manual {
        Some(task.pull_lock.lock().await)
    } else {
        None
    };
    let info = peer_info(fed, url).await?;
    let target = client::parse_peer_url(url)?;
    let peer_client = peering.client();
    // Everything from here on is recorded as this peer's last outcome,
    // including a first contact that fails.
    let result = async {
        let node_id = node_id_of(fed, url, &info, &task, &peer_client, &target).await?;
        let needs = std::mem::take(&mut *lock(&task.needs));
        client::exchange(
            fed,
            &peer_client,
            url,
            &target,
            &node_id,
            yui_protocol::session::Cursors {
                push: info.push_cursor,
                pull: info.pull_cursor,
            },
            push,
            pull,
            wait_ms,
            needs,
            task.server_revocations.load(Ordering::Relaxed),
        )
        .await
    }
    .await;
    if let Err(e) = &result
        && tls::is_node_mismatch(e)
        && let Err(e) = reidentify(fed, url, &task).await
    {
        record_failure(fed, url, &e).await?;
        return Err(e);
    }
    match &result {
        Ok(x) => {
            task.server_revocations
                .store(x.server_revocations, Ordering::Relaxed);
            task.carry_over(url, &x.needs, x.server_restored);
            if x.docs_out > 0 {
                peering.wake_files.notify_one();
            }
            if x.sent || x.push_cursor.is_some() {
                fed.store
                    .peer_round(
                        url.to_owned(),
                        PeerRound {
                            at: crate::clock::now_ms(),
                            error: None,
                            bytes_in: x.bytes_in,
                            bytes_out: x.bytes_out,
                            docs_in: x.docs_in,
                            docs_out: x.docs_out,
                            push_cursor: x.push_cursor,
                            pull_cursor: x.pull_cursor,
                        },
                    )
                    .await?;
            }
        }
        Err(e) => record_failure(fed, url, e).await?,
    }
    result
}

/// Records a failed exchange as the peer's last error.
async fn record_failure(fed: &Federation, url: &str, e: &Error) -> Result<()> {
    fed.store
        .peer_round(
            url.to_owned(),
            PeerRound {
                at: crate::clock::now_ms(),
                error: Some(e.to_string()),
                ..Default::default()
            },
        )
        .await
}

/// The node id of the peer at `url`, asking it (`hello`) if it was never
/// identified. Only one task asks; the other finds the answer when it gets
/// the lock, which is released before the exchange.
async fn node_id_of(
    fed: &Federation,
    url: &str,
    info: &PeerInfo,
    task: &PeerTask,
    peer_client: &PeerClient,
    target: &client::PeerUrl,
) -> Result<String> {
    if let Some(id) = &info.node_id {
        return Ok(id.clone());
    }
    let peering = fed.peering.as_ref().ok_or_else(not_joined)?;
    let _asking = task.identify.lock().await;
    if let Some(id) = peer_info(fed, url).await?.node_id {
        return Ok(id);
    }
    let id = peer_client.hello(target, task.index).await?;
    if id.node_id == peering.trust().own.node_id {
        return Err(Error::Config(format!("{url} is this node itself")));
    }
    fed.store
        .peer_identified(url.to_owned(), id.node_id.clone(), id.town.clone())
        .await?;
    tracing::info!(%url, town = %id.town, node_id = %id.node_id, "identified peer");
    Ok(id.node_id)
}

/// The peer at `url` answered with another node than the one identified:
/// a node of the same town has rotated its key (operations.md 15.2), and
/// its new node id is taken without the administrator's help; another
/// town's node is refused, with what to do. The next round uses the new id.
async fn reidentify(fed: &Federation, url: &str, task: &PeerTask) -> Result<()> {
    let peering = fed.peering.as_ref().ok_or_else(not_joined)?;
    let _asking = task.identify.lock().await;
    let info = peer_info(fed, url).await?;
    let target = client::parse_peer_url(url)?;
    let id = peering.client().hello(&target, task.index).await?;
    if info.node_id.as_deref() == Some(id.node_id.as_str()) {
        // The other task has followed it already.
        return Ok(());
    }
    let (Some(old), Some(town)) = (&info.node_id, &info.town) else {
        return Err(Error::Config(format!(
            "{url} is now node {} of {}, not the node it was added with ({}); if that is right, remove the peer and add it again",
            id.node_id,
            id.town,
            info.node_id.as_deref().unwrap_or("?")
        )));
    };
    if *town != id.town {
        return Err(Error::Config(format!(
            "{url} is now node {} of town {}, not node {old} of town {town}; if the address moved to another town, remove the peer and add it again",
            id.node_id, id.town
        )));
    }
    fed.store
        .peer_identified(url.to_owned(), id.node_id.clone(), id.town.clone())
        .await?;
    tracing::warn!(%url, %town, old = %old, new = %id.node_id, "the peer has a new key (node id); following it");
    Ok(())
}

fn not_joined() -> Error {
    Error::Config("this node has not joined a consortium (no certificate installed)".into())
}

async fn peer_info(fed: &Federation, url: &str) -> Result<PeerInfo> {
    fed.store
        .peers()
        .await?
        .into_iter()
        .find(|p| p.url == url)
        .ok_or_else(|| Error::NotFound(format!("{url} is not a peer")))
}

/// While writes fail for lack of space, pulling waits until the disk has
/// this much free (checked every `DISK_FULL_RECHECK`): what a peer sends
/// could not be stored anyway.
const DISK_ROOM_TO_PULL: u64 = 16 << 20;
const DISK_FULL_RECHECK: Duration = Duration::from_secs(2);

async fn pull_loop(fed: Federation, url: String, task: Arc<PeerTask>) {
    let mut backoff = BACKOFF_MIN;
    let mut more = false;
    loop {
        if fed.store.storage_full()
            && fed
                .store
                .disk_space()
                .is_some_and(|d| d.free_bytes < DISK_ROOM_TO_PULL)
        {
            tracing::debug!(peer = %url, "not pulling: the disk is full");
            tokio::select! {
                _ = task.cancel.cancelled() => return,
                _ = tokio::time::sleep(DISK_FULL_RECHECK) => {}
            }
            continue;
        }
        let wait = if more { 0 } else { LONG_POLL_MS };
        let result = tokio::select! {
            _ = task.cancel.cancelled() => return,
            r = pipeline::pull(&fed, &url, &task, wait) => r,
        };
        match result {
            Ok(x) => {
                backoff = BACKOFF_MIN;
                more = x;
            }
            // Nothing could be stored: wait for room (above), not for a
            // back-off, so pulling resumes as soon as there is space.
            Err(Error::StorageFull { .. }) => more = false,
            Err(e) => {
                tracing::info!(peer = %url, error = %e, retry_in = ?backoff, "pull failed");
                tokio::select! {
                    _ = task.cancel.cancelled() => return,
                    _ = task.interrupt.notified() => {}
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
                more = false;
            }
        }
    }
}

async fn push_loop(fed: Federation, url: String, task: Arc<PeerTask>) {
    let mut seq = fed.store.watch_seq();
    let mut backoff = BACKOFF_MIN;
    loop {
        let mut more = true;
        while more {
            match run_exchange(&fed, &url, true, false, 0, false).await {
                Ok(x) => {
                    backoff = BACKOFF_MIN;
                    more = x.more;
                }
                Err(e) => {
                    tracing::info!(peer = %url, error = %e, retry_in = ?backoff, "push failed");
                    tokio::select! {
                        _ = task.cancel.cancelled() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
        tokio::select! {
            _ = task.cancel.cancelled() => return,
            _ = task.wake_push.notified() => {}
            changed = seq.changed() => if changed.is_err() { return },
            _ = tokio::time::sleep(PUSH_RETRY) => {}
        }
        // Let a burst of writes finish, then send them together.
        tokio::time::sleep(PUSH_DEBOUNCE).await;
        seq.borrow_and_update();
    }
}

/// Adds a peer and, on a running node, starts syncing with it at once.
/// Adds a peer; returns the URL it is stored under (`https://host:port`).
/// The node id, when given, is checked and stored in its canonical spelling.
pub async fn add_peer(
    fed: &Federation,
    url: &str,
    node_id: Option<String>,
    shutdown: Option<&CancellationToken>,
) -> Result<String> {
    let url = client::parse_peer_url(url)?.canonical();
    let node_id = node_id
        .filter(|id| !id.trim().is_empty())
        .map(|id| {
            yui_protocol::record::parse_node_id(&id)
                .map_err(|why| Error::bad_request("invalid_node_id", why))
        })
        .transpose()?;
    fed.store
        .add_peer(url.clone(), node_id, crate::clock::now_ms())
        .await?;
    if let Some(shutdown) = shutdown {
        Peering::start(fed, &url, shutdown);
    }
    Ok(url)
}

/// Removes a peer by URL or node id and stops its tasks.
pub async fn remove_peer(fed: &Federation, key: &str) -> Result<Vec<String>> {
    let key = client::parse_peer_url(key).map_or_else(|_| key.to_owned(), |u| u.canonical());
    let removed = fed.store.remove_peer(key).await?;
    if let Some(peering) = &fed.peering {
        for url in &removed {
            peering.stop(url);
        }
    }
    Ok(removed)
}

impl Trust {
    pub fn revocations_der(&self) -> Vec<u8> {
        self.revocations
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .der
            .clone()
    }
}
