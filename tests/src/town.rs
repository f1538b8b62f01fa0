//! Towns run in this process: a data directory initialised as `yui init`
//! leaves it, joined to a consortium with a certificate of an in-process
//! CA, opened as a `Node`; and a node serving its API and peer port on a
//! runtime and threads of its own (as `yui serve` does), so that the client
//! driving it does not share its workers.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use yui_node::datadir::{DataDir, InitOptions};
use yui_node::node::Node;
use yui_node::pki::CaDir;
use yui_protocol::Collection;

use crate::records::{knowledge_fields, validated};

/// `yui init --town TOWN` in `dir`, with the display name `name` and both
/// listeners on free ports of 127.0.0.1.
pub fn init_data_dir(dir: &Path, town: &str, name: &str) -> yui_node::Result<DataDir> {
    let data = DataDir::new(dir);
    data.init(&InitOptions {
        town: town.into(),
        name: name.into(),
        api_listen: "127.0.0.1:0".parse().expect("addr"),
        peer_listen: "127.0.0.1:0".parse().expect("addr"),
    })?;
    Ok(data)
}

pub struct Town {
    pub node: Arc<Node>,
    pub name: String,
    _dir: tempfile::TempDir,
}

impl Town {
    /// Writes a knowledge record titled `title` straight into the store;
    /// returns it as the API shows it.
    pub async fn write_knowledge(&self, title: &str) -> serde_json::Value {
        let rec = self
            .node
            .store
            .create(
                Collection::Knowledge,
                knowledge_fields(title),
                yui_node::clock::now_ms(),
            )
            .await
            .expect("create");
        serde_json::from_str(rec.get()).expect("json")
    }
}

/// An initialised data directory with a certificate of `ca`, opened.
pub fn make_town(ca: &CaDir, town: &str) -> Town {
    make_town_configured(ca, town, "")
}

/// [`make_town`] with `config` (TOML, such as a `[quotas]` table) added
/// to its `config.toml` before it is opened.
pub fn make_town_configured(ca: &CaDir, town: &str, config: &str) -> Town {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = init_data_dir(&dir.path().join(town), town, "").expect("init");
    if !config.is_empty() {
        let mut text = std::fs::read_to_string(data.config_path()).expect("config");
        text.push_str(config);
        std::fs::write(data.config_path(), text).expect("write config");
    }
    let now = time::OffsetDateTime::now_utc();
    let csr = std::fs::read_to_string(data.csr_path()).expect("csr");
    let (cert, _) = ca.issue(&csr, 30, now).expect("issue");
    let ca_pem = std::fs::read(ca.cert_path()).expect("ca");
    yui_node::pki::install(
        &data,
        town,
        cert.as_bytes(),
        &ca_pem,
        None,
        now.unix_timestamp(),
    )
    .expect("install");
    Town {
        node: Arc::new(Node::open(data, true).expect("open")),
        name: town.to_owned(),
        _dir: dir,
    }
}

/// A node serving its API and peer port on its own runtime and threads.
pub struct Running {
    pub api: SocketAddr,
    pub peer: SocketAddr,
    shutdown: CancellationToken,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    pub fn start(node: Arc<Node>, workers: usize) -> Running {
        Running::start_on(node, workers, "127.0.0.1:0".parse().expect("addr"))
    }

    /// [`Running::start`] with the peer port on `peer` (a node restarted
    /// where its peers dial it).
    pub fn start_on(node: Arc<Node>, workers: usize, peer: SocketAddr) -> Running {
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(format!("node-{}", node.config.town))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(workers)
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(async move {
                    let api = tokio::net::TcpListener::bind("127.0.0.1:0")
                        .await
                        .expect("bind");
                    let peers = tokio::net::TcpListener::bind(peer).await.expect("bind");
                    tx.send((
                        api.local_addr().expect("addr"),
                        peers.local_addr().expect("addr"),
                    ))
                    .expect("send");
                    yui_node::daemon::serve(node, api, Some(peers), stop)
                        .await
                        .expect("serve");
                });
            })
            .expect("thread");
        let (api, peer) = rx.recv().expect("addresses");
        Running {
            api,
            peer,
            shutdown,
            thread: Some(thread),
        }
    }

    pub fn peer_url(&self) -> String {
        format!("https://{}", self.peer)
    }

    /// Graceful shutdown; waits for the node's threads.
    pub fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(t) = self.thread.take() {
            t.join().expect("node thread");
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Writes `n` knowledge records and `n / 4` local worker records straight
/// into the store; returns the knowledge records as the API shows them.
pub async fn seed_records(town: &Town, n: usize) -> Vec<serde_json::Value> {
    let now = yui_node::clock::now_ms();
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let rec = town
            .node
            .store
            .create(
                Collection::Knowledge,
                knowledge_fields(&format!("{} の記録 {i}", town.name)),
                now,
            )
            .await
            .expect("create");
        out.push(serde_json::from_str(rec.get()).expect("json"));
    }
    for i in 0..n / 4 {
        let fields = validated(
            Collection::Workers,
            serde_json::json!({"name": format!("住民 {i}"), "status": "active"}),
        );
        town.node
            .store
            .create(Collection::Workers, fields, now)
            .await
            .expect("create");
    }
    out
}

/// A consortium CA made in-process (`CaDir`), in a temporary directory.
pub struct Consortium {
    pub ca: CaDir,
    _dir: tempfile::TempDir,
}

impl Consortium {
    /// `yui ca init --name NAME`, in-process.
    pub fn new(name: &str) -> Consortium {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = CaDir::new(dir.path().join("ca"));
        ca.init(name, time::OffsetDateTime::now_utc()).expect("ca");
        Consortium { ca, _dir: dir }
    }

    /// A member town of this consortium, opened: see [`make_town`].
    pub fn town(&self, town: &str) -> Town {
        make_town(&self.ca, town)
    }

    /// A member town with `config` added to its `config.toml`: see
    /// [`make_town_configured`].
    pub fn town_configured(&self, town: &str, config: &str) -> Town {
        make_town_configured(&self.ca, town, config)
    }

    /// A member town's key and certificate, to sign changes as its node
    /// would (a whole node is made for it, and kept).
    pub fn author(&self, town: &str) -> Author {
        let member = make_town(&self.ca, town);
        let key = std::fs::read_to_string(member.node.data_dir.key_path()).expect("key");
        let (_, signing) = yui_node::pki::change_signing(&key).expect("signing");
        let cert = yui_node::pki::read_pem_file(&member.node.data_dir.cert_path(), "certificate")
            .expect("cert");
        let ca = yui_node::pki::read_pem_file(&self.ca.cert_path(), "CA").expect("ca");
        Author {
            signing,
            cert,
            ca,
            _town: member,
        }
    }
}

/// A member's signing key and certificate ([`Consortium::author`]).
pub struct Author {
    pub signing: yui_node::store::ChangeSigning,
    pub cert: Vec<u8>,
    ca: Vec<u8>,
    _town: Town,
}

impl Author {
    /// `update` with every change signed by this member.
    pub fn sign(&self, update: yui_protocol::wire::DocUpdate) -> yui_protocol::wire::DocUpdate {
        crate::wire::signed_with(&self.signing, update)
    }

    /// Makes `node` trust this member's key, as its peer layer would once
    /// the certificate arrived (a node that is not joined has none).
    pub async fn vouch_at(&self, node: &Node) {
        let signer = yui_node::pki::signer(
            &self.cert,
            &yui_node::pki::Anchors::new(vec![self.ca.clone()]).expect("anchors"),
            &[],
            &Default::default(),
        )
        .expect("signer");
        node.store
            .remember_signer_certificates(vec![(self.cert.clone(), signer.id, signer.town.clone())])
            .await
            .expect("remember");
        node.store.add_signers(vec![signer]);
    }
}
