//! What the benchmark binaries share: their options, their scratch
//! directory, the release `yui` binary they start, what /proc says about the
//! CPU and memory they use, and what they print about the code and the
//! machine.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};

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
        yui_node::clock::now_ms()
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
    if let Some(built) = crate::cli::built_yui() {
        return Ok(built);
    }
    let fallback = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/yui");
    if fallback.exists() {
        return Ok(fallback);
    }
    bail!("the release binary is missing; build it with `cargo build --release --bin yui`")
}

/// The HTTP client of a benchmark's API clients: no proxy, `timeout` per
/// request, and a pool as large as the most clients a benchmark runs.
pub fn api_client(timeout: Duration) -> Result<reqwest::Client> {
    yui_node::peer::tls::install_crypto_provider();
    Ok(reqwest::Client::builder()
        .no_proxy()
        .timeout(timeout)
        .pool_max_idle_per_host(64)
        .build()?)
}

/// What the store indexes of a record's fields (title, body and tags), as
/// search terms: the work a create and a sync both pay.
pub fn search_terms(fields: &serde_json::Map<String, serde_json::Value>) -> String {
    let mut terms = String::new();
    for k in ["title", "body"] {
        if let Some(v) = fields.get(k).and_then(serde_json::Value::as_str) {
            yui_protocol::search::index_terms(v, &mut terms);
        }
    }
    for tag in fields
        .get("tags")
        .and_then(serde_json::Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(tag) = tag.as_str() {
            yui_protocol::search::index_terms(tag, &mut terms);
        }
    }
    terms
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

/// The options a benchmark was given: `--NAME VALUE` or `--NAME=VALUE`
/// arguments and `PREFIX<NAME>` environment variables (the arguments come
/// later, so they win), and flags (`--NAME` alone, or the variable set).
#[derive(Debug, Default)]
pub struct Given {
    /// (name, value), names as the arguments spell them: `fill-clients`.
    pub values: Vec<(String, String)>,
    pub flags: Vec<String>,
}

impl Given {
    /// Reads the environment and the arguments. `values` and `flags` are the
    /// names of the variables (`FILL_CLIENTS`); `help` is printed for
    /// `--help`. A name not in `values` is kept, for the caller to refuse.
    #[allow(clippy::print_stdout)] // --help answers on stdout, as a command does.
    pub fn read(prefix: &str, values: &[&str], flags: &[&str], help: &str) -> Result<Given> {
        let arg_name = |name: &str| name.to_lowercase().replace('_', "-");
        let mut given = Given::default();
        for name in values {
            if let Ok(v) = std::env::var(format!("{prefix}{name}")) {
                given.values.push((arg_name(name), v));
            }
        }
        for name in flags {
            if std::env::var(format!("{prefix}{name}")).is_ok() {
                given.flags.push(arg_name(name));
            }
        }
        let flag_args: Vec<String> = flags.iter().map(|f| format!("--{}", arg_name(f))).collect();
        let mut args = std::env::args().skip(1);
        // Bounded: each turn consumes at least one argument.
        while let Some(arg) = args.next() {
            match arg.as_str() {
                // `cargo bench` passes --bench to harness = false targets.
                "--bench" => {}
                flag if flag_args.iter().any(|f| f == flag) => {
                    given.flags.push(flag.trim_start_matches("--").to_owned());
                }
                "--help" | "-h" => {
                    println!("{help}");
                    std::process::exit(0);
                }
                flag if flag.starts_with("--") => {
                    let (name, value) = match flag.split_once('=') {
                        Some((n, v)) => (n.to_owned(), v.to_owned()),
                        None => (
                            flag.to_owned(),
                            args.next().ok_or_else(|| anyhow!("{flag} needs a value"))?,
                        ),
                    };
                    given
                        .values
                        .push((name.trim_start_matches("--").to_owned(), value));
                }
                other => bail!("unexpected argument {other:?}; try --help"),
            }
        }
        Ok(given)
    }

    pub fn flag(&self, name: &str) -> bool {
        self.flags.iter().any(|f| f == name)
    }
}

/// A whole number as an option gives it: `10000`, `10_000` or `10,000`.
pub fn whole_number(v: &str) -> Result<usize> {
    v.replace(['_', ','], "")
        .parse::<usize>()
        .with_context(|| format!("{v:?} is not a whole number"))
}

/// CPU time (user + system) a process has used, from `/proc/PID/stat`
/// (`pid` may be `self`); zero where /proc does not say.
pub fn cpu_time(pid: &str) -> Duration {
    let ticks = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .map_or(0, |stat| stat_ticks(&stat));
    // USER_HZ is 100 on Linux.
    Duration::from_millis(ticks * 10)
}

/// CPU time used so far by this process's threads whose name starts with
/// `prefix` (the store's writer thread is `yui-store-writer`).
pub fn thread_cpu_time(prefix: &str) -> Duration {
    let mut ticks = 0;
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Duration::ZERO;
    };
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        let name = stat
            .split_once('(')
            .and_then(|(_, rest)| rest.rsplit_once(')'))
            .map_or("", |(name, _)| name);
        if name.starts_with(prefix) {
            ticks += stat_ticks(&stat);
        }
    }
    Duration::from_millis(ticks * 10)
}

/// utime + stime of a `stat` line: fields 14 and 15, counted after the
/// command name, which is in parentheses and may hold spaces.
fn stat_ticks(stat: &str) -> u64 {
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    field(11) + field(12)
}

/// A `kB` line of `/proc/PID/status`, such as `VmRSS:` or `VmHWM:`.
pub fn proc_status_kb(pid: u32, key: &str) -> Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| anyhow!("no {key} in /proc/{pid}/status"))
}
