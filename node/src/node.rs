//! A node's state: its data directory, store, accounts, metrics and (once
//! joined) federation, opened together by [`Node::open`], and what the
//! adapters ask of it as a whole: [`Node::status`] and a record's history
//! with its provenance ([`Node::history`]). Serving it is `crate::daemon`'s
//! job; federation sees only [`Node::federation`].

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::datadir::{Config, DataDir, ServeLock};
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::store::Store;

pub struct Node {
    pub data_dir: DataDir,
    pub config: Config,
    pub store: Store,
    /// Local users, sessions, API tokens and the audit log.
    pub accounts: crate::accounts::Accounts,
    pub metrics: Metrics,
    /// The node id and this node's key as a change signer (the node id's
    /// bytes): replaced when the key is rotated (`crate::membership`).
    own_key: std::sync::RwLock<(String, yui_protocol::provenance::SignerId)>,
    pub token_path: PathBuf,
    /// Federation, once the node has joined a consortium (at open, or when
    /// a certificate is installed on the running node).
    peering: OnceLock<Arc<crate::peer::Peering>>,
    /// How the peer port opens if the node joins while running.
    pub(crate) peer_port_on_join: std::sync::Mutex<PeerPortOnJoin>,
    /// The federation tasks started after the node was serving, for
    /// `serve` to wait for at shutdown.
    pub(crate) late_tasks: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Cancelled when the node shuts down (set by `serve`).
    pub shutdown: OnceLock<CancellationToken>,
    token: String,
    started: std::time::Instant,
    /// Held while serving, so `restore` cannot swap the database underneath.
    lock: Option<ServeLock>,
    /// The URL the API is served at, once bound.
    api_url: OnceLock<String>,
    /// The URL of the peer port, once open.
    peer_url: OnceLock<String>,
    /// Town names from the signer certificates, with how many there were
    /// when it was made ([`Node::town_names`]).
    town_names: std::sync::Mutex<Option<(i64, Arc<crate::pki::TownNames>)>>,
    /// Attached files (`crate::blobs`).
    blobs: crate::blobs::Blobs,
}

/// The peer port of a node that is not a member yet, for when it joins.
#[derive(Debug, Default)]
pub enum PeerPortOnJoin {
    /// No peer port (`--no-peer-port`, or not serving).
    #[default]
    None,
    /// Bind this address.
    Bind(std::net::SocketAddr),
    /// Serve this listener, bound in advance.
    Listener(tokio::net::TcpListener),
}

#[derive(Serialize)]
pub struct CollectionStatus {
    pub scope: &'static str,
    pub count: u64,
}

/// `GET /api/v1/status` and `yui status`.
#[derive(Serialize)]
pub struct Status {
    pub town: String,
    pub name: String,
    pub node_id: String,
    pub version: &'static str,
    /// Whether a `yui serve` is running on this data directory.
    pub serving: bool,
    /// The URL of the running API, when serving.
    pub api: Option<String>,
    /// The URL of the peer port, when open.
    pub peer_port: Option<String>,
    pub membership: Membership,
    pub peers: Vec<PeerStatus>,
    /// Nodes that dialled this one since it started.
    pub inbound: Vec<InboundStatus>,
    /// Connection attempts the peer port refused recently.
    pub refused_connections: Vec<crate::peer::RefusedAttempt>,
    pub collections: std::collections::BTreeMap<&'static str, CollectionStatus>,
    pub storage: StorageStatus,
    /// Quotas on what peers bring in, and the origin towns near them.
    pub quotas: QuotaStatus,
    /// Attached files: the limits, and the transfers since start.
    pub attachments: AttachmentStatus,
    pub uptime_seconds: u64,
}

/// Attached files in `status`.
#[derive(Serialize)]
pub struct AttachmentStatus {
    pub limits: crate::datadir::AttachmentLimits,
    /// File transfers with peers since start (absent before joining).
    pub transfers: Option<crate::peer::files::FileStatus>,
}

/// Origin towns listed in `status` at most.
pub const QUOTA_TOWNS_SHOWN: usize = 20;

/// The quotas and the origin towns near or over them, today (JST).
#[derive(Serialize)]
pub struct QuotaStatus {
    /// The JST day the counters are of.
    pub day: String,
    /// The limits per shared collection (`[quotas]` of config.toml).
    pub limits: std::collections::BTreeMap<&'static str, yui_protocol::quota::Quota>,
    /// Origin towns (per collection) at 50 % of a limit or more, or with a
    /// document refused for a quota today: busiest first, at most
    /// [`QUOTA_TOWNS_SHOWN`].
    pub towns: Vec<TownQuota>,
    /// (Town, collection) pairs with usage recorded, listed or not.
    pub tracked: usize,
}

#[derive(Serialize)]
pub struct TownQuota {
    #[serde(flatten)]
    pub usage: crate::store::QuotaUsage,
    /// The largest share of a limit used, in percent: at 100, the next
    /// document that counts against that limit is refused.
    pub percent: u64,
}

#[derive(Serialize)]
pub struct Membership {
    pub joined: bool,
    /// Days until the node certificate expires.
    pub certificate_expires_in_days: Option<i64>,
    pub revocation_list_number: Option<u64>,
    /// How many consortium CA certificates the node trusts: 2 during a CA
    /// rollover's overlap.
    pub trusted_cas: Option<usize>,
    /// Problems an administrator should act on.
    pub warnings: Vec<String>,
    pub hint: String,
}

/// A peer this node dials (SPEC §8 names: url, town, node_id, state, last_sync_at).
#[derive(Serialize)]
pub struct PeerStatus {
    pub url: String,
    pub town: Option<String>,
    pub node_id: Option<String>,
    /// `ok`, `failing` or `new` (never tried).
    pub state: &'static str,
    pub last_sync_at: Option<String>,
    pub last_error: Option<String>,
    pub failures: i64,
    pub pending: u64,
    pub rounds: i64,
    pub bytes_in: i64,
    pub bytes_out: i64,
    /// Documents in this peer's answers that this node refused (schema,
    /// personal data, quota, ...), since start; each is also logged.
    pub refused_docs: u64,
}

#[derive(Serialize)]
pub struct InboundStatus {
    pub node_id: String,
    #[serde(flatten)]
    pub stats: crate::peer::InboundStats,
}

#[derive(Serialize)]
pub struct StorageStatus {
    pub database: String,
    pub bytes: u64,
    pub actor_id: String,
    /// The latest integrity check (at start, then every
    /// `daemon::INTEGRITY_CHECK_INTERVAL`).
    pub integrity: crate::store::Integrity,
    /// The newest backup `yui backup` verified, if any.
    pub last_verified_backup: Option<crate::datadir::VerifiedBackup>,
    /// Free and total bytes of the file system that holds the data
    /// directory.
    pub disk: Option<crate::store::DiskSpace>,
    /// Writes fail for lack of space.
    pub full: bool,
    /// Space problems an administrator should act on.
    pub warnings: Vec<String>,
}

impl Node {
    /// Opens the node in `data_dir`. With `serving`, takes the data
    /// directory's lock: one `yui serve` per data directory.
    pub fn open(data_dir: DataDir, serving: bool) -> Result<Node> {
        crate::peer::tls::install_crypto_provider();
        let config = data_dir.open()?;
        let lock = if serving {
            Some(data_dir.lock()?)
        } else {
            None
        };
        let token = data_dir.read_token()?;
        let node_id = data_dir.node_id()?;
        let store = Store::open(&data_dir.db_path(), &config.town)?;
        store.set_quotas(config.quotas.resolve().map_err(Error::Config)?);
        config.disk.low_below(0).map_err(Error::Config)?;
        // Every change this node makes to a shared record is signed with
        // its key (protocol.md 7).
        let key_pem = std::fs::read_to_string(data_dir.key_path())
            .map_err(|e| crate::fsio::io_error("reading", &data_dir.key_path(), e))?;
        let (signer, signing) = crate::pki::change_signing(&key_pem)?;
        store.sign_changes_with(signing);
        let accounts = crate::accounts::Accounts::open_with_audit_via(
            &data_dir.db_path(),
            token.clone(),
            crate::clock::system_clock(),
            Some(store.clone()),
        )?;
        let peering = OnceLock::new();
        if let Some(trust) = crate::peer::Trust::load(&data_dir)? {
            if trust.own.node_id != node_id {
                return Err(Error::Config(format!(
                    "{} is not this node's certificate (it is for node {}); install the one issued for {node_id}",
                    data_dir.cert_path().display(),
                    trust.own.node_id
                )));
            }
            let _ = peering.set(Arc::new(crate::peer::Peering::new(trust)?));
        }
        Ok(Node {
            blobs: crate::blobs::Blobs::new(&data_dir.path),
            token_path: data_dir.token_path(),
            data_dir,
            config,
            store,
            accounts,
            metrics: Metrics::default(),
            own_key: std::sync::RwLock::new((node_id, signer)),
            peering,
            peer_port_on_join: Default::default(),
            late_tasks: Default::default(),
            shutdown: OnceLock::new(),
            token,
            started: std::time::Instant::now(),
            lock,
            api_url: OnceLock::new(),
            peer_url: OnceLock::new(),
            town_names: Default::default(),
        })
    }

    /// Towns by the names the consortium vouches for, for pages to show.
    /// Made again only when a signer certificate was learned since.
    pub async fn town_names(&self) -> Arc<crate::pki::TownNames> {
        let count = self.store.signer_certificate_count().await.unwrap_or(-1);
        if let Some((made_at, names)) = self
            .town_names
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            && *made_at == count
        {
            return names.clone();
        }
        let certificates = self
            .store
            .signer_certificates_with_towns()
            .await
            .unwrap_or_default();
        let mut own_certificate = Vec::new();
        if let Ok(der) =
            crate::pki::read_pem_file(&self.data_dir.cert_path(), "the node certificate")
        {
            own_certificate.push((der, self.config.town.clone()));
        }
        let names = Arc::new(crate::pki::TownNames::from_certificates(
            certificates.into_iter().chain(own_certificate),
            (&self.config.town, &self.config.name),
        ));
        *self.town_names.lock().unwrap_or_else(|e| e.into_inner()) = Some((count, names.clone()));
        names
    }

    /// Federation, once the node has joined a consortium.
    pub fn peering(&self) -> Option<&Arc<crate::peer::Peering>> {
        self.peering.get()
    }

    /// Sets the federation of a node that has just joined; false if it had
    /// one already.
    pub(crate) fn set_peering(&self, peering: Arc<crate::peer::Peering>) -> bool {
        self.peering.set(peering).is_ok()
    }

    /// The node id: the fingerprint of its current key.
    pub fn node_id(&self) -> String {
        self.own_key
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .0
            .clone()
    }

    /// This node's current key as a change signer.
    pub fn signer(&self) -> yui_protocol::provenance::SignerId {
        self.own_key
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .1
    }

    /// After a key rotation: the new node id and signer.
    pub(crate) fn set_own_key(&self, node_id: String, signer: yui_protocol::provenance::SignerId) {
        *self
            .own_key
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = (node_id, signer);
    }

    pub fn membership(&self) -> Membership {
        let Some(peering) = self.peering() else {
            return Membership {
                joined: false,
                certificate_expires_in_days: None,
                revocation_list_number: None,
                trusted_cas: None,
                warnings: Vec::new(),
                hint: format!(
                    "not a consortium member yet: send {} to the consortium secretariat, then install the certificate it returns with `yui cert install --cert FILE --ca-cert FILE`",
                    self.data_dir.csr_path().display()
                ),
            };
        };
        let trust = peering.trust();
        let days = (trust.own.not_after - crate::clock::now_ms() / 1000).div_euclid(86_400);
        let mut warnings = Vec::new();
        if days < 0 {
            warnings.push("the node certificate has expired: peers refuse this node; ask the secretariat for a new one".to_owned());
        } else if days < crate::pki::EXPIRY_WARNING_DAYS {
            warnings.push(format!(
                "the node certificate expires in {days} days: ask the secretariat for a new one (yui ca issue --renew) and install it (yui cert install); the running node takes it at once"
            ));
        }
        if trust.is_revoked(&trust.own.serial) {
            warnings.push("this node's own certificate is revoked: peers refuse it".to_owned());
        }
        if let Ok(Some(next)) = self.data_dir.next_node_id() {
            warnings.push(format!(
                "a new key (node {next}) is waiting for its certificate: send {} to the secretariat (yui ca issue --rotate) and install what it returns (yui cert install)",
                self.data_dir.next_csr_path().display()
            ));
        }
        let anchors = trust.anchors.certs().len();
        Membership {
            joined: true,
            certificate_expires_in_days: Some(days),
            revocation_list_number: Some(trust.revocation_number()),
            trusted_cas: Some(anchors),
            warnings,
            hint: if anchors > 1 {
                format!(
                    "member of the consortium as town {}, trusting {anchors} CA certificates (a CA rollover is in its overlap)",
                    trust.own.town
                )
            } else {
                format!("member of the consortium as town {}", trust.own.town)
            },
        }
    }

    /// The attachment limits of config.toml (checked when it was read).
    pub fn attachment_limits(&self) -> crate::datadir::AttachmentLimits {
        self.config
            .attachments
            .resolve()
            .unwrap_or(crate::datadir::AttachmentLimits {
                max_file_bytes: crate::datadir::DEFAULT_MAX_FILE,
                town_quota_bytes: crate::datadir::DEFAULT_TOWN_QUOTA,
                fetch_rate_bytes: None,
            })
    }

    /// The attachment files of this node (clones share their state).
    pub fn blobs(&self) -> crate::blobs::Blobs {
        self.blobs.clone()
    }

    /// Federation's view of this node: the store, the peering and the data
    /// directory, for the peer tasks and the peer port.
    pub fn federation(&self) -> crate::peer::Federation {
        crate::peer::Federation {
            store: self.store.clone(),
            peering: self.peering().cloned(),
            data_dir: self.data_dir.clone(),
            blobs: self.blobs.clone(),
            attachment_limits: self.attachment_limits(),
        }
    }

    /// Records that the API is served at `url`: `status` shows it, and the
    /// serve lock announces it to `yui` commands run beside the node.
    pub fn serving_at(&self, url: String) {
        if let Some(lock) = &self.lock {
            lock.announce(&url);
        }
        let _ = self.api_url.set(url);
    }

    /// When the node started (opened), in seconds since the Unix epoch.
    pub fn start_time_seconds(&self) -> f64 {
        crate::clock::now_ms() as f64 / 1000.0 - self.started.elapsed().as_secs_f64()
    }

    /// Records that the peer port is open at `url` (`status` shows it).
    pub fn peer_port_at(&self, url: String) {
        let _ = self.peer_url.set(url);
    }

    /// The peer port's URL, once open.
    pub fn peer_port(&self) -> Option<&str> {
        self.peer_url.get().map(String::as_str)
    }

    /// Compares in constant time, so response timing reveals nothing of the token.
    pub fn token_matches(&self, presented: &str) -> bool {
        crate::accounts::constant_time_eq(self.token.as_bytes(), presented.as_bytes())
    }

    /// A read that failed is an error, unless the database is damaged
    /// (once the first integrity check has said so): then status goes on
    /// without what could not be read.
    async fn unless_damaged(&self, e: Error, what: &str) -> Result<()> {
        if self.store.first_integrity_check().await.is_ok() {
            return Err(e);
        }
        tracing::warn!(error = %e, "status: {what} unreadable (the database is damaged)");
        Ok(())
    }

    pub async fn status(&self) -> Result<Status> {
        let api = match self.api_url.get() {
            Some(url) => Some(url.clone()),
            None => self.data_dir.serving_api(),
        };
        // A damaged database may not answer every query: the status still
        // answers, with what could be read, so it can say what is damaged.
        let counts = match self.store.counts().await {
            Ok(counts) => counts,
            Err(e) => {
                self.unless_damaged(e, "record counts").await?;
                Default::default()
            }
        };
        let peers = match self.store.peers().await {
            Ok(peers) => peers,
            Err(e) => {
                self.unless_damaged(e, "peers").await?;
                Vec::new()
            }
        };
        let quotas = match self.store.quota_usage(crate::clock::today_jst()).await {
            Ok(rows) => rows,
            Err(e) => {
                self.unless_damaged(e, "quota usage").await?;
                Vec::new()
            }
        };
        let (disk, disk_warnings) = self.disk();
        let collections = counts
            .iter()
            .map(|(c, n)| {
                (
                    c.name(),
                    CollectionStatus {
                        scope: c.scope().as_str(),
                        count: *n,
                    },
                )
            })
            .collect();
        Ok(Status {
            town: self.config.town.clone(),
            name: self.config.name.clone(),
            node_id: self.node_id(),
            version: env!("CARGO_PKG_VERSION"),
            serving: self.lock.is_some() || api.is_some(),
            api,
            peer_port: self.peer_port().map(str::to_owned),
            membership: self.membership(),
            peers: peers
                .into_iter()
                .map(|p| PeerStatus {
                    state: match (&p.last_error, p.last_success_at) {
                        (Some(_), _) => "failing",
                        (None, Some(_)) => "ok",
                        (None, None) => "new",
                    },
                    last_sync_at: p.last_success_at.map(yui_protocol::record::format_time),
                    town: p.town,
                    node_id: p.node_id,
                    last_error: p.last_error,
                    failures: p.failures,
                    pending: p.pending,
                    rounds: p.rounds,
                    bytes_in: p.bytes_in,
                    bytes_out: p.bytes_out,
                    refused_docs: self.peering().map_or(0, |f| f.refused_from(&p.url)),
                    url: p.url,
                })
                .collect(),
            inbound: self
                .peering()
                .into_iter()
                .flat_map(|p| p.inbound())
                .map(|(node_id, stats)| InboundStatus { node_id, stats })
                .collect(),
            refused_connections: self
                .peering()
                .into_iter()
                .flat_map(|p| p.refused_attempts())
                .collect(),
            collections,
            storage: StorageStatus {
                database: self.store.path().display().to_string(),
                bytes: self.store.disk_bytes(),
                actor_id: self.store.actor_hex(),
                integrity: self.store.integrity(),
                last_verified_backup: self.data_dir.last_verified_backup(),
                disk,
                full: self.store.storage_full(),
                warnings: disk_warnings,
            },
            quotas: self.quota_status(quotas),
            attachments: AttachmentStatus {
                limits: self.attachment_limits(),
                transfers: self.peering().map(|p| p.files.status()),
            },
            uptime_seconds: self.started.elapsed().as_secs(),
        })
    }

    /// The space on the data directory's file system, and the warnings it
    /// calls for: writes failing for lack of space, or free space under
    /// the `[disk]` threshold (10 % of the disk and 1 GiB by default).
    pub fn disk(&self) -> (Option<crate::store::DiskSpace>, Vec<String>) {
        let space = self.store.disk_space();
        let mut warnings = Vec::new();
        if self.store.storage_full() {
            warnings.push("writes fail: the disk that holds the data directory is full; free space on it (nothing the node acknowledged was lost, and it takes writes again as soon as there is room)".to_owned());
        }
        if let Some(space) = space
            && let Ok(low) = self.config.disk.low_below(space.total_bytes)
            && space.free_bytes < low
        {
            warnings.push(format!(
                "free space on the disk that holds the data directory is low: {} left of {} (warning below {}); free some, or move the data directory to a larger disk",
                human_bytes(space.free_bytes),
                human_bytes(space.total_bytes),
                human_bytes(low)
            ));
        }
        (space, warnings)
    }

    fn quota_status(&self, mut rows: Vec<crate::store::QuotaUsage>) -> QuotaStatus {
        let quotas = self.store.quotas();
        let tracked = rows.len();
        crate::store::QuotaUsage::busiest_first(&mut rows, &quotas);
        let towns = rows
            .into_iter()
            .map(|usage| TownQuota {
                percent: usage.percent(&quotas),
                usage,
            })
            .filter(|t| t.percent >= 50 || t.usage.refused_today > 0)
            .take(QUOTA_TOWNS_SHOWN)
            .collect();
        QuotaStatus {
            day: crate::clock::today_jst(),
            limits: yui_protocol::Collection::ALL
                .into_iter()
                .filter(|c| c.is_shared())
                .map(|c| (c.name(), quotas.of(c)))
                .collect(),
            towns,
            tracked,
        }
    }
}

/// Bytes for people: `812 MiB`, `1.5 GiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 || value >= 10.0 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// One change of a record's history, with who signed it (protocol.md 7).
#[derive(Debug, Clone, Serialize)]
pub struct HistoryChange {
    #[serde(flatten)]
    pub entry: yui_protocol::doc::HistoryEntry,
    /// The signature's signer, when the change is signed.
    pub signed_by: Option<ChangeSigner>,
    /// Signed by a key whose consortium certificate names the change's
    /// town: checked when the change arrived (or made by this node).
    pub verified: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct ChangeSigner {
    pub node_id: String,
    /// The town of the signer's certificate, when this node holds it.
    pub town: Option<String>,
}

impl Node {
    /// A record's history, oldest first, with each change's provenance.
    pub async fn history(
        &self,
        collection: yui_protocol::Collection,
        id: String,
    ) -> Result<Vec<HistoryChange>> {
        let entries = self.store.history(collection, id.clone()).await?;
        let signed = match id.parse() {
            Ok(record) => self.store.signed_by(record).await?,
            Err(_) => Default::default(),
        };
        Ok(entries
            .into_iter()
            .map(|entry| {
                let by = signed.get(&entry.hash);
                // Its own key this node knows without a certificate (before
                // it has joined, it holds none).
                let town_of = |b: &crate::store::SignedBy| {
                    b.town
                        .clone()
                        .or_else(|| (b.signer == self.signer()).then(|| self.config.town.clone()))
                };
                let verified =
                    by.is_some_and(|b| town_of(b).as_deref() == Some(entry.town.as_str()));
                HistoryChange {
                    signed_by: by.map(|b| ChangeSigner {
                        node_id: crate::datadir::node_id_of_digest(&b.signer.0),
                        town: town_of(b),
                    }),
                    verified,
                    entry,
                }
            })
            .collect())
    }
}
