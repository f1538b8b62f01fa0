//! `yui serve` as a child process: starting it, reading the addresses it
//! prints on start-up, and stopping it with SIGTERM. The multi-process
//! tests' [`crate::Server`] and the benches' nodes all start theirs here, so
//! that what a start-up line looks like is read in one place.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// A `yui serve` just spawned, and the lines of its standard output as they
/// come, each with the time it was read.
pub struct Spawned {
    pub child: Child,
    pub lines: Receiver<(Instant, String)>,
    pub spawned: Instant,
}

/// What `yui serve` printed when it started.
#[derive(Debug, Default)]
pub struct Printed {
    /// How long after the spawn the "… is running." line came.
    pub running: Option<Duration>,
    /// The API's base URL, `http://127.0.0.1:PORT` (without `/api/v1/`).
    pub api: String,
    /// The peer port's URL, `https://127.0.0.1:PORT` (no trailing slash),
    /// when the node opened one.
    pub peers: Option<String>,
}

/// Spawns `yui --data-dir DATA_DIR serve --api-listen 127.0.0.1:0 EXTRA…`.
pub fn spawn(
    bin: &Path,
    data_dir: &Path,
    extra: &[&str],
    stderr: Stdio,
) -> std::io::Result<Spawned> {
    spawn_under(&[], bin, data_dir, extra, stderr)
}

/// [`spawn`], run by `wrapper` (such as `prlimit --nofile=1024:1024`), which
/// executes the `yui` command line that follows it.
pub fn spawn_under(
    wrapper: &[&str],
    bin: &Path,
    data_dir: &Path,
    extra: &[&str],
    stderr: Stdio,
) -> std::io::Result<Spawned> {
    let spawned = Instant::now();
    let mut command = match wrapper.split_first() {
        Some((program, args)) => {
            let mut c = Command::new(program);
            c.args(args).arg(bin);
            c
        }
        None => Command::new(bin),
    };
    let mut child = command
        .arg("--data-dir")
        .arg(data_dir)
        .args(["serve", "--api-listen", "127.0.0.1:0"])
        .args(extra)
        .env_remove("YUI_DATA_DIR")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()?;
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            // Keep draining after the reader is gone, so the child never
            // blocks on a full pipe.
            let _ = tx.send((Instant::now(), line));
        }
    });
    Ok(Spawned {
        child,
        lines,
        spawned,
    })
}

impl Spawned {
    /// Reads the start-up lines until the API line came and, with
    /// `want_peers`, the "Peers:" line too. On failure (the child exited,
    /// closed its output, or `deadline` passed) the child is killed.
    pub fn printed(&mut self, want_peers: bool, deadline: Instant) -> Result<Printed, String> {
        let mut printed = Printed::default();
        let (mut api, mut peers_line) = (None, false);
        // Bounded by the deadline.
        while api.is_none() || (want_peers && !peers_line) {
            let left = deadline.saturating_duration_since(Instant::now());
            let failure = match self.lines.recv_timeout(left.min(Duration::from_millis(50))) {
                Ok((at, line)) => {
                    if line.contains("is running") {
                        printed.running = Some(at - self.spawned);
                    }
                    if let Some(rest) = line.strip_prefix("API:") {
                        api = Some(
                            first_word(rest)
                                .trim_end_matches('/')
                                .trim_end_matches("/api/v1")
                                .to_owned(),
                        );
                    } else if let Some(rest) = line.strip_prefix("Peers:") {
                        peers_line = true;
                        let url = first_word(rest);
                        printed.peers = url
                            .starts_with("https://")
                            .then(|| url.trim_end_matches('/').to_owned());
                    }
                    continue;
                }
                Err(RecvTimeoutError::Timeout) => match self.child.try_wait() {
                    Ok(Some(status)) => format!("yui serve exited early ({status})"),
                    _ if left.is_zero() => "yui serve did not print its addresses".to_owned(),
                    _ => continue,
                },
                Err(RecvTimeoutError::Disconnected) => {
                    "yui serve closed its output before printing its addresses".to_owned()
                }
            };
            self.kill();
            return Err(failure);
        }
        printed.api = api.unwrap_or_default();
        Ok(printed)
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn first_word(text: &str) -> &str {
    text.split_whitespace().next().unwrap_or_default()
}

/// SIGTERM, then waits up to `within` for the exit; `None` if it has not
/// exited by then (the child is left running: the caller decides).
pub fn terminate(child: &mut Child, within: Duration) -> Option<ExitStatus> {
    let pid = child.id().to_string();
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    let deadline = Instant::now() + within;
    // Bounded by the deadline.
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}
