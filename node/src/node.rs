//! A running node: its data directory, store and metrics, and the server loop.
//!
//! `main` only parses arguments and sets up logging; everything a test needs
//! to run a node in-process is here: [`Node::open`] and [`run`], which takes
//! an already-bound listener (tests bind `127.0.0.1:0`) and a cancellation
//! token for graceful shutdown.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use serde::Serialize;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::datadir::{Config, DataDir, ServeLock};
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::store::Store;

pub struct Node {
    pub data_dir: DataDir,
    pub config: Config,
    pub store: Store,
    pub metrics: Metrics,
    pub node_id: String,
    pub token_path: PathBuf,
    token: String,
    started: std::time::Instant,
    /// Held while serving, so `restore` cannot swap the database underneath.
    lock: Option<ServeLock>,
    /// The URL the API is served at, once bound.
    api_url: OnceLock<String>,
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
    pub membership: Membership,
    pub peers: Vec<serde_json::Value>,
    pub collections: std::collections::BTreeMap<&'static str, CollectionStatus>,
    pub storage: StorageStatus,
    pub uptime_seconds: u64,
}

#[derive(Serialize)]
pub struct Membership {
    pub joined: bool,
    pub hint: String,
}

#[derive(Serialize)]
pub struct StorageStatus {
    pub database: String,
    pub bytes: u64,
    pub actor_id: String,
}

impl Node {
    /// Opens the node in `data_dir`. With `serving`, takes the data
    /// directory's lock: one `yui serve` per data directory.
    pub fn open(data_dir: DataDir, serving: bool) -> Result<Node> {
        crate::pki::install_crypto_provider();
        let config = data_dir.open()?;
        let lock = if serving {
            Some(data_dir.lock()?)
        } else {
            None
        };
        let token = data_dir.read_token()?;
        let node_id = data_dir.node_id()?;
        let store = Store::open(&data_dir.db_path(), &config.town)?;
        Ok(Node {
            token_path: data_dir.token_path(),
            data_dir,
            config,
            store,
            metrics: Metrics::default(),
            node_id,
            token,
            started: std::time::Instant::now(),
            lock,
            api_url: OnceLock::new(),
        })
    }

    /// Compares in constant time, so response timing reveals nothing of the token.
    pub fn token_matches(&self, presented: &str) -> bool {
        let (a, b) = (self.token.as_bytes(), presented.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }

    pub async fn status(&self) -> Result<Status> {
        let api = match self.api_url.get() {
            Some(url) => Some(url.clone()),
            None => self.data_dir.serving_api(),
        };
        let counts = self.store.counts().await?;
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
            node_id: self.node_id.clone(),
            version: env!("CARGO_PKG_VERSION"),
            serving: self.lock.is_some() || api.is_some(),
            api,
            membership: Membership {
                joined: false,
                hint: format!(
                    "not a consortium member yet: send {} to the consortium secretariat, then install the certificate it returns with `yui cert install`",
                    self.data_dir.csr_path().display()
                ),
            },
            peers: Vec::new(),
            collections,
            storage: StorageStatus {
                database: self.store.path().display().to_string(),
                bytes: self.store.disk_bytes(),
                actor_id: self.store.actor_hex(),
            },
            uptime_seconds: self.started.elapsed().as_secs(),
        })
    }
}

/// Serves the local API on `listener` until `shutdown` is cancelled, then
/// finishes in-flight requests and queued writes before returning.
pub async fn run(
    node: Arc<Node>,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<()> {
    if let Ok(addr) = listener.local_addr() {
        let url = format!("http://{addr}/");
        if let Some(lock) = &node.lock {
            lock.announce(&url);
        }
        let _ = node.api_url.set(url);
    }
    let app = crate::api::router(node.clone());
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await;
    // Joining the writer thread blocks: keep it off the async workers.
    let store = node.store.clone();
    let _ = tokio::task::spawn_blocking(move || store.close()).await;
    result.map_err(|e| Error::Config(format!("serving the API: {e}")))
}
