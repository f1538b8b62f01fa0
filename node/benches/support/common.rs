//! What the benchmark binaries share: their scratch directory, the `yui`
//! binary they start, percentiles of latencies, and what they print about
//! the code and the machine.
#![allow(dead_code)]

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Result, bail};

/// Runs `bench` with a fresh directory under the system's temp dir
/// (`PREFIX-PID-MILLIS`), removed afterwards unless `keep`.
pub async fn in_scratch_dir<F, Fut>(prefix: &str, keep: bool, bench: F) -> Result<()>
where
    F: FnOnce(PathBuf) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let root = std::env::temp_dir().join(format!(
        "{prefix}-{}-{}",
        std::process::id(),
        yui_node::store::now_ms()
    ));
    std::fs::create_dir_all(&root)?;
    let result = bench(root.clone()).await;
    if keep {
        eprintln!("kept {}", root.display());
    } else {
        let _ = std::fs::remove_dir_all(&root);
    }
    result
}

/// The release `yui` binary cargo built along with the benchmark.
pub fn yui_binary() -> Result<PathBuf> {
    let built = PathBuf::from(env!("CARGO_BIN_EXE_yui"));
    if built.exists() {
        return Ok(built);
    }
    let fallback = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/yui");
    if fallback.exists() {
        return Ok(fallback);
    }
    bail!(
        "the release binary is missing ({}); build it with `cargo build --release --bin yui`",
        built.display()
    )
}

/// The `p`-th percentile (nearest rank) of sorted durations.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The commit measured, and whether `node/src` or `protocol/src` had
/// uncommitted changes (then the figures are not that commit's).
pub struct CodeState {
    pub commit: String,
    pub dirty: bool,
}

impl CodeState {
    pub fn of_this_checkout() -> CodeState {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let git = |args: &[&str]| {
            std::process::Command::new("git")
                .arg("-C")
                .arg(&repo)
                .args(args)
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
                .unwrap_or_default()
        };
        CodeState {
            commit: git(&["rev-parse", "--short", "HEAD"]),
            dirty: !git(&["status", "--porcelain", "node/src", "protocol/src"]).is_empty(),
        }
    }
}

impl std::fmt::Display for CodeState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "commit {}", self.commit)?;
        if self.dirty {
            write!(f, " with uncommitted changes in node/src or protocol/src")?;
        }
        Ok(())
    }
}

/// The load averages over 1, 5 and 15 minutes, as `/proc/loadavg` has them.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}
