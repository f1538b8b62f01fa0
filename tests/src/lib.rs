//! Helpers for tests that run the real `yui` binary as a user would: as a
//! process, on 127.0.0.1, with its own data directory.

use std::io::{BufRead, BufReader};
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
}

impl Server {
    /// Starts `yui serve` on a free port and waits until it answers.
    pub fn start(data_dir: &Path) -> Server {
        let mut child = Command::new(yui_bin())
            .arg("--data-dir")
            .arg(data_dir)
            .args(["serve", "--api-listen", "127.0.0.1:0"])
            .env_remove("YUI_DATA_DIR")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn yui serve");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.strip_prefix("API:") {
                    let url = rest
                        .split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_owned();
                    let _ = tx.send(url);
                }
            }
        });
        let url = rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| {
                let _ = child.kill();
                panic!("yui serve did not print its API address")
            });
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
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(r) = server.client.get(format!("{}/healthz", server.base)).send()
                && r.status().is_success()
            {
                return server;
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
