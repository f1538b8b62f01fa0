//! A running `yui serve` child process with a blocking HTTP client: what the
//! multi-process tests start, restart, kill and query.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::ca::{Ca, member};
use crate::cli::{yui_bin, yui_ok};
use crate::serve;

/// A running `yui serve`.
pub struct Server {
    pub child: Child,
    pub base: String,
    pub token: String,
    pub client: reqwest::blocking::Client,
    /// The peer port's URL (`https://127.0.0.1:PORT`), when started with
    /// [`Server::start_peer`].
    pub peer_url: Option<String>,
    pub data_dir: PathBuf,
}

impl Server {
    /// Starts `yui serve` on a free port and waits until it answers.
    pub fn start(data_dir: &Path) -> Server {
        Server::spawn(data_dir, &[], None, true)
    }

    /// Starts `yui serve` on a free port and waits until `/healthz` answers
    /// at all: a node whose database is damaged answers 503.
    pub fn start_unhealthy(data_dir: &Path) -> Server {
        Server::spawn(data_dir, &[], None, false)
    }

    /// Starts `yui serve EXTRA…` (no peer port) with its log in
    /// `<data_dir>.log`.
    pub fn start_logged(data_dir: &Path, extra: &[&str]) -> Server {
        let log = data_dir.with_extension("log");
        let mut args = vec!["--no-peer-port"];
        args.extend_from_slice(extra);
        Server::try_spawn(data_dir, &args, Some(&log), false, true)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Starts `yui serve --no-peer-port EXTRA…` with its standard error on
    /// `stderr` (a full device, a pipe the test closes…).
    pub fn start_with_stderr(data_dir: &Path, extra: &[&str], stderr: Stdio) -> Server {
        let mut args = vec!["--no-peer-port"];
        args.extend_from_slice(extra);
        Server::try_spawn_to(&[], data_dir, &args, stderr, false, true)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Starts `yui serve` on a joined node with its peer port on a free
    /// port, run by `wrapper` (such as `prlimit --nofile=1024:1024`), with
    /// its log in `<data_dir>.log`.
    pub fn start_peer_under(data_dir: &Path, wrapper: &[&str]) -> Server {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(data_dir.with_extension("log"))
            .expect("log file");
        Server::try_spawn_to(
            wrapper,
            data_dir,
            &["--peer-listen", "127.0.0.1:0"],
            Stdio::from(log),
            true,
            true,
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Starts `yui serve --peer-listen 127.0.0.1:0` on a node that has not
    /// joined yet (no peer port until a certificate is installed), with its
    /// log in `<data_dir>.log`.
    pub fn start_unjoined(data_dir: &Path) -> Server {
        let log = data_dir.with_extension("log");
        Server::try_spawn(
            data_dir,
            &["--peer-listen", "127.0.0.1:0"],
            Some(&log),
            false,
            true,
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Where [`Server::start_peer`] and [`Server::start_logged`] write the
    /// node's log.
    pub fn log_path(&self) -> PathBuf {
        self.data_dir.with_extension("log")
    }

    /// Starts `yui serve` on a joined node with its peer port on
    /// `peer_listen` (`127.0.0.1:0` for a free port; the same address again
    /// to restart a node its peers know). Its log goes to `<data_dir>.log`.
    pub fn start_peer(data_dir: &Path, peer_listen: &str) -> Server {
        let log = data_dir.with_extension("log");
        // A restart right after a kill may find the port still held for a
        // moment: try again briefly.
        let mut last = String::new();
        for _ in 0..50 {
            match Server::try_spawn(
                data_dir,
                &["--peer-listen", peer_listen],
                Some(&log),
                true,
                true,
            ) {
                Ok(server) => return server,
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("yui serve with the peer port on {peer_listen} did not start: {last}");
    }

    /// Restarts a stopped node on the same peer port, so peers that know its
    /// URL find it again.
    pub fn restart_peer(data_dir: &Path, peer_url: &str) -> Server {
        let addr = peer_url
            .trim_start_matches("https://")
            .trim_end_matches('/')
            .to_owned();
        Server::start_peer(data_dir, &addr)
    }

    fn spawn(data_dir: &Path, extra: &[&str], log: Option<&Path>, healthy: bool) -> Server {
        Server::try_spawn(data_dir, extra, log, log.is_some(), healthy)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn try_spawn(
        data_dir: &Path,
        extra: &[&str],
        log: Option<&Path>,
        want_peers: bool,
        healthy: bool,
    ) -> Result<Server, String> {
        let stderr = match log {
            Some(path) => Stdio::from(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .expect("log file"),
            ),
            None => Stdio::null(),
        };
        Server::try_spawn_to(&[], data_dir, extra, stderr, want_peers, healthy)
    }

    fn try_spawn_to(
        wrapper: &[&str],
        data_dir: &Path,
        extra: &[&str],
        stderr: Stdio,
        want_peers: bool,
        healthy: bool,
    ) -> Result<Server, String> {
        let mut spawned = serve::spawn_under(wrapper, &yui_bin(), data_dir, extra, stderr)
            .expect("spawn yui serve");
        let printed = spawned.printed(want_peers, Instant::now() + Duration::from_secs(20))?;
        let mut child = spawned.child;
        if want_peers && printed.peers.is_none() {
            let _ = child.kill();
            let _ = child.wait();
            return Err("yui serve opened no peer port (has the node joined?)".to_owned());
        }
        let base = printed.api;
        let token = std::fs::read_to_string(data_dir.join("api-token"))
            .expect("token")
            .trim()
            .to_owned();
        let client = client_builder()
            .timeout(Duration::from_secs(20))
            .build()
            .expect("client");
        let server = Server {
            child,
            base,
            token,
            client,
            peer_url: printed.peers,
            data_dir: data_dir.to_owned(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(r) = server.client.get(format!("{}/healthz", server.base)).send()
                && (r.status().is_success() || !healthy)
            {
                return Ok(server);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("yui serve did not become healthy");
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .client
            .get(self.url(path))
            .bearer_auth(&self.token)
            .send()
            .expect("send");
        let status = r.status().as_u16();
        (status, r.json().unwrap_or(Value::Null))
    }

    pub fn post(&self, path: &str, body: &Value) -> Result<(u16, Value), reqwest::Error> {
        let r = self
            .client
            .post(self.url(path))
            .bearer_auth(&self.token)
            .json(body)
            .send()?;
        let status = r.status().as_u16();
        Ok((status, r.json()?))
    }

    pub fn patch(&self, path: &str, body: &Value) -> Result<(u16, Value), reqwest::Error> {
        let r = self
            .client
            .patch(self.url(path))
            .bearer_auth(&self.token)
            .json(body)
            .send()?;
        let status = r.status().as_u16();
        Ok((status, r.json()?))
    }

    /// Creates a record and returns it.
    pub fn create(&self, collection: &str, fields: Value) -> Value {
        let (status, body) = self
            .post(
                &format!("/api/v1/records/{collection}"),
                &serde_json::json!({ "fields": fields }),
            )
            .expect("create");
        assert_eq!(status, 201, "{body}");
        body
    }

    /// The peer port's URL; panics unless started with [`Server::start_peer`].
    pub fn peer_url(&self) -> &str {
        self.peer_url
            .as_deref()
            .expect("started without a peer port")
    }

    /// `GET /api/v1/status`.
    pub fn status(&self) -> Value {
        let (status, body) = self.get("/api/v1/status");
        assert_eq!(status, 200, "{body}");
        body
    }

    /// `yui peer add URL` on this running node (it starts syncing at once).
    pub fn add_peer(&self, url: &str) {
        yui_ok(&self.data_dir, &["peer", "add", url]);
    }

    /// The record, if this node has it (and it is not deleted).
    pub fn record(&self, collection: &str, id: &str) -> Option<Value> {
        let (status, body) = self.get(&format!("/api/v1/records/{collection}/{id}"));
        match status {
            200 => Some(body),
            404 => None,
            other => panic!("GET {collection}/{id}: {other} {body}"),
        }
    }

    /// How many live records a collection holds.
    pub fn count(&self, collection: &str) -> u64 {
        self.status()["collections"][collection]["count"]
            .as_u64()
            .expect("count")
    }

    /// The pid, to signal the process.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: no shutdown, no flush.
    pub fn kill_9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn stop(mut self) -> std::process::ExitStatus {
        serve::terminate(&mut self.child, Duration::from_secs(20)).unwrap_or_else(|| {
            let _ = self.child.kill();
            panic!("yui serve did not stop within 20 s of SIGTERM")
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Each of `towns` joins `ca` in `root` (see [`member`]), then each starts
/// with a peer port on a free port: their data directories and servers.
pub fn start_members<const N: usize>(
    root: &Path,
    ca: &Ca,
    towns: [&str; N],
) -> ([PathBuf; N], [Server; N]) {
    let dirs = towns.map(|town| member(root, town, ca));
    let servers = dirs
        .each_ref()
        .map(|dir| Server::start_peer(dir, "127.0.0.1:0"));
    (dirs, servers)
}

/// A blocking HTTP client (reqwest needs a TLS provider even for http://).
pub fn client_builder() -> reqwest::blocking::ClientBuilder {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::blocking::Client::builder()
}
