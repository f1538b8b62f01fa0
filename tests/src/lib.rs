//! Helpers for tests that run the real `yui` binary as a user would: as a
//! process, on 127.0.0.1, with its own data directory.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The `yui` binary built by `cargo test` (target/<profile>/yui).
pub fn yui_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/it-HASH → target/<profile>/yui
    let profile_dir = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = profile_dir.join("yui");
    assert!(
        bin.exists(),
        "{} is missing: run the tests with `cargo test --workspace`, which builds it",
        bin.display()
    );
    bin
}

/// Runs `yui --data-dir DIR ARGS…` to completion.
pub fn yui(data_dir: &Path, args: &[&str]) -> Output {
    Command::new(yui_bin())
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .env_remove("YUI_DATA_DIR")
        .stdin(Stdio::null())
        .output()
        .expect("run yui")
}

/// Runs `yui --data-dir DIR ARGS…` with `input` on standard input (not a
/// terminal, so the password is read from its first line).
pub fn yui_with_stdin(data_dir: &Path, args: &[&str], input: &str) -> std::process::Output {
    let mut child = Command::new(yui_bin())
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .env_remove("YUI_DATA_DIR")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn yui");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("wait")
}

/// Runs a command and insists it succeeds; returns its stdout.
pub fn yui_ok(data_dir: &Path, args: &[&str]) -> String {
    let out = yui(data_dir, args);
    assert!(
        out.status.success(),
        "yui {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a command that must fail; returns its stderr.
pub fn yui_fails(data_dir: &Path, args: &[&str]) -> String {
    let out = yui(data_dir, args);
    assert!(
        !out.status.success(),
        "yui {args:?} should have failed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn init(data_dir: &Path, town: &str) {
    yui_ok(data_dir, &["init", "--town", town]);
}

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
        Server::spawn(data_dir, &[], None)
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
            match Server::try_spawn(data_dir, &["--peer-listen", peer_listen], Some(&log)) {
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

    fn spawn(data_dir: &Path, extra: &[&str], log: Option<&Path>) -> Server {
        Server::try_spawn(data_dir, extra, log).unwrap_or_else(|e| panic!("{e}"))
    }

    fn try_spawn(data_dir: &Path, extra: &[&str], log: Option<&Path>) -> Result<Server, String> {
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
        let want_peers = log.is_some();
        let mut child = Command::new(yui_bin())
            .arg("--data-dir")
            .arg(data_dir)
            .args(["serve", "--api-listen", "127.0.0.1:0"])
            .args(extra)
            .env_remove("YUI_DATA_DIR")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn yui serve");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut api = None;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let first = |rest: &str| {
                    rest.split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_owned()
                };
                if let Some(rest) = line.strip_prefix("API:") {
                    if want_peers {
                        api = Some(first(rest));
                    } else {
                        let _ = tx.send((first(rest), None));
                    }
                } else if let Some(rest) = line.strip_prefix("Peers:")
                    && want_peers
                {
                    let peers = first(rest);
                    let peers = peers.starts_with("https://").then_some(peers);
                    let _ = tx.send((api.take().unwrap_or_default(), peers));
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        let (url, peer_url) = loop {
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(found) => break found,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) if Instant::now() < deadline => {
                    if let Ok(Some(status)) = child.try_wait() {
                        return Err(format!("yui serve exited early ({status})"));
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err("yui serve did not print its addresses".to_owned());
                }
            }
        };
        if want_peers && peer_url.is_none() {
            let _ = child.kill();
            let _ = child.wait();
            return Err("yui serve opened no peer port (has the node joined?)".to_owned());
        }
        let base = url.trim_end_matches("/api/v1/").to_owned();
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
            peer_url: peer_url.map(|u| u.trim_end_matches('/').to_owned()),
            data_dir: data_dir.to_owned(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(r) = server.client.get(format!("{}/healthz", server.base)).send()
                && r.status().is_success()
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
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        panic!("yui serve did not stop within 20 s of SIGTERM");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A blocking HTTP client (reqwest needs a TLS provider even for http://).
pub fn client_builder() -> reqwest::blocking::ClientBuilder {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::blocking::Client::builder()
}

pub fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

pub fn knowledge(title: &str) -> Value {
    serde_json::json!({
        "title": title,
        "body": "住民ワーカーの研修は月に一度。顧客とのやりとりは記録に残す。",
        "category": "worker_management",
        "tags": ["研修"]
    })
}

/// Polls `cond` every 20 ms until it holds or `timeout` passes; returns
/// whether it held.
pub fn wait_for(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The `id` of a record as the API returns it.
pub fn id_of(record: &Value) -> String {
    record["id"].as_str().expect("record id").to_owned()
}

/// A consortium CA directory made with `yui ca init`.
pub struct Ca {
    pub dir: PathBuf,
    issued: std::sync::atomic::AtomicUsize,
}

impl Ca {
    pub fn init(dir: &Path, name: &str) -> Ca {
        let ca = Ca {
            dir: dir.to_owned(),
            issued: std::sync::atomic::AtomicUsize::new(0),
        };
        ca.run(&["ca", "init", "--ca-dir", ca.arg(), "--name", name]);
        ca
    }

    fn arg(&self) -> &str {
        self.dir.to_str().expect("utf8 path")
    }

    /// Runs a `yui ca …` command (they take no data directory).
    fn run(&self, args: &[&str]) -> String {
        yui_ok(self.dir.parent().expect("parent"), args)
    }

    pub fn cert_path(&self) -> PathBuf {
        self.dir.join("ca.cert.pem")
    }

    pub fn key_path(&self) -> PathBuf {
        self.dir.join("ca.key.pem")
    }

    pub fn revocations_path(&self) -> PathBuf {
        self.dir.join("revocations.pem")
    }

    /// `yui ca issue` for the node in `data_dir`; returns the certificate file.
    pub fn issue(&self, data_dir: &Path, days: u32) -> PathBuf {
        let n = self
            .issued
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let out = self.dir.join(format!("issued-{n}.cert.pem"));
        let csr = data_dir.join("node.csr.pem");
        self.run(&[
            "ca",
            "issue",
            "--ca-dir",
            self.arg(),
            "--csr",
            csr.to_str().expect("utf8"),
            "--out",
            out.to_str().expect("utf8"),
            "--days",
            &days.to_string(),
        ]);
        out
    }

    /// Issues and installs a certificate: the node in `data_dir` joins.
    pub fn admit(&self, data_dir: &Path) {
        let cert = self.issue(data_dir, 30);
        yui_ok(
            data_dir,
            &[
                "cert",
                "install",
                "--cert",
                cert.to_str().expect("utf8"),
                "--ca-cert",
                self.cert_path().to_str().expect("utf8"),
            ],
        );
    }

    /// `yui ca revoke --town TOWN`; returns the new revocation list file.
    pub fn revoke_town(&self, town: &str) -> PathBuf {
        self.run(&["ca", "revoke", "--ca-dir", self.arg(), "--town", town]);
        self.revocations_path()
    }
}

/// `yui init --town TOWN` in `root/TOWN`, then joins the consortium of `ca`.
pub fn member(root: &Path, town: &str, ca: &Ca) -> PathBuf {
    let data = root.join(town);
    init(&data, town);
    ca.admit(&data);
    data
}

impl Ca {
    /// A certificate for the node in `data_dir` (town `town`) signed by this
    /// CA as `yui ca issue` would, except that it expired yesterday. `yui ca
    /// issue` refuses to make one, and `yui cert install` to install one:
    /// use [`install_unchecked`].
    pub fn issue_expired(&self, data_dir: &Path, town: &str) -> PathBuf {
        use rcgen::{
            CertificateParams, CertificateSigningRequestParams, DnType, ExtendedKeyUsagePurpose,
            IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
        };
        let read = |p: PathBuf| std::fs::read_to_string(&p).expect("read pem");
        let csr = CertificateSigningRequestParams::from_pem(&read(data_dir.join("node.csr.pem")))
            .expect("csr");
        let key = KeyPair::from_pem(&read(self.key_path())).expect("CA key");
        let issuer = Issuer::from_ca_cert_pem(&read(self.cert_path()), key).expect("CA cert");
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, town);
        params.subject_alt_names = vec![
            SanType::DnsName("node.yui.invalid".try_into().expect("dns")),
            SanType::URI(format!("urn:yui:town:{town}").try_into().expect("uri")),
        ];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(30);
        params.not_after = now - time::Duration::days(1);
        let nanos = now.unix_timestamp_nanos().to_be_bytes();
        let mut serial = nanos[8..].to_vec();
        serial[0] = (serial[0] & 0x7f) | 0x01;
        params.serial_number = Some(SerialNumber::from_slice(&serial));
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&csr.public_key, &issuer).expect("sign");
        let n = self
            .issued
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let out = self.dir.join(format!("expired-{n}.cert.pem"));
        std::fs::write(&out, cert.pem()).expect("write cert");
        out
    }
}

/// Puts a node certificate and a CA certificate into a data directory
/// without the checks of `yui cert install` (to build nodes that hold a
/// certificate a real installation would refuse).
pub fn install_unchecked(data_dir: &Path, cert: &Path, ca_cert: &Path) {
    std::fs::copy(cert, data_dir.join("node.cert.pem")).expect("copy cert");
    std::fs::copy(ca_cert, data_dir.join("ca.cert.pem")).expect("copy CA cert");
}
