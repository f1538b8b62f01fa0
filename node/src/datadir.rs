//! The data directory: its layout, `yui init`, the config file, and the
//! permission checks that keep keys and tokens private.
//!
//! ```text
//! yui-data/            mode 0700
//!   config.toml        town, listen addresses
//!   yui.sqlite         records (plus -wal, -shm while open)
//!   api-token          bearer token of the local API, mode 0600
//!   node.key.pem       the node's private key, mode 0600; never leaves here
//!   node.csr.pem       certificate signing request for the consortium CA
//!   node.cert.pem      the node certificate, once joined (`yui cert install`)
//!   ca.cert.pem        the consortium CA certificate, once joined
//!   revocations.pem    the newest revocation list, signed by the CA
//!   serve.lock         held by the running `yui serve`
//! ```

use std::fs;
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::fsio::{io_error, write_file, write_private};

pub const DEFAULT_API_LISTEN: &str = "127.0.0.1:7480";
pub const DEFAULT_PEER_LISTEN: &str = "0.0.0.0:7443";
pub const DEFAULT_PEER_PORT: u16 = 7443;

/// The node's configuration file, `config.toml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Town id, lowercase ASCII (`tateshina`). Fixed at init: records carry it.
    pub town: String,
    /// Display name (`立科町`).
    #[serde(default)]
    pub name: String,
    /// Address of the local API and console.
    pub api_listen: SocketAddr,
    /// Address of the peer port (mutual TLS; used once the node has joined).
    pub peer_listen: SocketAddr,
    /// Host names (or addresses) a reverse proxy in front of the API uses,
    /// besides the loopback names the API always accepts in `Host`
    /// (`127.0.0.1`, `localhost`, `[::1]`). A request naming any other host
    /// is refused: a web page that rebinds its own name to this machine
    /// cannot reach the console.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub proxy_hosts: Vec<String>,
    /// Why the API may listen beyond loopback although it speaks plain
    /// HTTP (e.g. "only the TLS proxy on 10.0.0.2 can reach this port").
    /// Without it, a non-loopback `api_listen` is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_plain_http_api: Option<String>,
    /// Quotas on what peers bring in, per origin town and shared
    /// collection (`[quotas]`; docs/operations.md, quotas). Unset: the
    /// defaults of `protocol::quota`.
    #[serde(default, skip_serializing_if = "QuotasConfig::is_empty")]
    pub quotas: QuotasConfig,
    /// When free space on the data directory's file system counts as low
    /// (`[disk]`; docs/operations.md 10.1).
    #[serde(default, skip_serializing_if = "DiskConfig::is_empty")]
    pub disk: DiskConfig,
    /// Limits on attached files (`[attachments]`; docs/operations.md 24).
    #[serde(default, skip_serializing_if = "AttachmentsConfig::is_empty")]
    pub attachments: AttachmentsConfig,
}

/// `[attachments]` of `config.toml`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttachmentsConfig {
    /// The largest file one upload may be (default 50 MiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_file: Option<Size>,
    /// Bytes of attached files kept per origin town (this town's uploads
    /// count against its own); default 2 GiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub town_quota: Option<Size>,
    /// Bytes per second this node fetches files from its peers at, at most
    /// (a town on a slow line keeps room for its sync); unset: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fetch_rate: Option<Size>,
}

/// The default of `[attachments] max_file`.
pub const DEFAULT_MAX_FILE: u64 = 50 << 20;
/// The default of `[attachments] town_quota`.
pub const DEFAULT_TOWN_QUOTA: u64 = 2 << 30;

/// The attachment limits in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct AttachmentLimits {
    pub max_file_bytes: u64,
    pub town_quota_bytes: u64,
    /// Bytes per second, at most, when fetching from peers.
    pub fetch_rate_bytes: Option<u64>,
}

impl AttachmentsConfig {
    fn is_empty(&self) -> bool {
        *self == AttachmentsConfig::default()
    }

    /// The limits this configuration sets, or what is wrong with it.
    pub fn resolve(&self) -> std::result::Result<AttachmentLimits, String> {
        let max_file_bytes = match &self.max_file {
            Some(s) => s
                .bytes()
                .map_err(|e| format!("[attachments] max_file: {e}"))?,
            None => DEFAULT_MAX_FILE,
        };
        if max_file_bytes == 0 || max_file_bytes > yui_protocol::attachment::MAX_FILE_BYTES {
            return Err(format!(
                "[attachments] max_file must be from 1 byte to {} bytes (1 GiB)",
                yui_protocol::attachment::MAX_FILE_BYTES
            ));
        }
        let town_quota_bytes = match &self.town_quota {
            Some(s) => s
                .bytes()
                .map_err(|e| format!("[attachments] town_quota: {e}"))?,
            None => DEFAULT_TOWN_QUOTA,
        };
        let fetch_rate_bytes = match &self.fetch_rate {
            Some(s) => {
                let n = s
                    .bytes()
                    .map_err(|e| format!("[attachments] fetch_rate: {e}"))?;
                if n < 1024 {
                    return Err(
                        "[attachments] fetch_rate must be at least 1 KiB (per second)".into(),
                    );
                }
                Some(n)
            }
            None => None,
        };
        Ok(AttachmentLimits {
            max_file_bytes,
            town_quota_bytes,
            fetch_rate_bytes,
        })
    }
}

/// `[disk]` of `config.toml`: free space counts as low when it is under
/// both `warn_below_percent` of the file system and `warn_below` (so on a
/// large disk the size decides, on a small one the share).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warn_below_percent: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warn_below: Option<Size>,
}

/// Free space under both of these counts as low, by default.
pub const LOW_DISK_PERCENT: u8 = 10;
pub const LOW_DISK_BYTES: u64 = 1 << 30;

impl DiskConfig {
    fn is_empty(&self) -> bool {
        *self == DiskConfig::default()
    }

    /// The low-space threshold in bytes for a file system of `total` bytes.
    pub fn low_below(&self, total: u64) -> std::result::Result<u64, String> {
        let percent = self.warn_below_percent.unwrap_or(LOW_DISK_PERCENT);
        if percent > 100 {
            return Err(format!(
                "[disk] warn_below_percent is {percent}; it is a share of the disk, 0 to 100"
            ));
        }
        let bytes = match &self.warn_below {
            Some(size) => size
                .bytes()
                .map_err(|e| format!("[disk] warn_below: {e}"))?,
            None => LOW_DISK_BYTES,
        };
        Ok((total / 100 * u64::from(percent)).min(bytes))
    }
}

/// `[quotas]` of `config.toml`: the limits of every shared collection, and
/// a table per collection (`[quotas.knowledge]`) for the limits that differ.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotasConfig {
    /// The limits of every shared collection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records_per_day: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_per_day: Option<Size>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored_bytes: Option<Size>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub knowledge: Option<QuotaConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_cases: Option<QuotaConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pilot_results: Option<QuotaConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kpi_reports: Option<QuotaConfig>,
}

/// The limits one table of `[quotas]` sets; sizes in bytes, or text with a
/// unit (`"50 MB"`, `"2 GiB"`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records_per_day: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_per_day: Option<Size>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored_bytes: Option<Size>,
}

/// A size in `config.toml`: a number of bytes, or text such as `"50 MB"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Size {
    Bytes(u64),
    Text(String),
}

impl Size {
    /// Bytes: `kB`, `MB`, `GB`, `TB` count in thousands, `KiB`, `MiB`,
    /// `GiB`, `TiB` in 1024s; `B` or no unit, bytes.
    pub fn bytes(&self) -> std::result::Result<u64, String> {
        let text = match self {
            Size::Bytes(n) => return Ok(*n),
            Size::Text(t) => t.trim(),
        };
        let split = text
            .find(|c: char| !c.is_ascii_digit() && c != '_')
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let number: u64 = number.replace('_', "").parse().map_err(|_| {
            format!("{text:?} is not a size (write e.g. 50000000, \"50 MB\" or \"2 GiB\")")
        })?;
        let unit = match unit.trim() {
            "" | "B" => 1,
            "kB" | "KB" => 1_000,
            "MB" => 1_000_000,
            "GB" => 1_000_000_000,
            "TB" => 1_000_000_000_000,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            "TiB" => 1 << 40,
            other => {
                return Err(format!(
                    "{text:?}: unknown unit {other:?} (use B, kB, MB, GB, TB, KiB, MiB, GiB or TiB)"
                ));
            }
        };
        number
            .checked_mul(unit)
            .ok_or_else(|| format!("{text:?} is too large"))
    }
}

impl QuotasConfig {
    fn is_empty(&self) -> bool {
        *self == QuotasConfig::default()
    }

    /// The quotas this configuration sets over the defaults, or what is
    /// wrong with it (naming the key).
    pub fn resolve(&self) -> std::result::Result<yui_protocol::quota::Quotas, String> {
        use yui_protocol::Collection;
        let all = QuotaConfig {
            records_per_day: self.records_per_day,
            bytes_per_day: self.bytes_per_day.clone(),
            stored_bytes: self.stored_bytes.clone(),
        };
        let base = all.over(yui_protocol::quota::Quota::default(), "quotas")?;
        let mut overrides = Vec::new();
        for (collection, table) in [
            (Collection::Knowledge, &self.knowledge),
            (Collection::FailureCases, &self.failure_cases),
            (Collection::PilotResults, &self.pilot_results),
            (Collection::KpiReports, &self.kpi_reports),
        ] {
            if let Some(table) = table {
                let at = format!("quotas.{}", collection.name());
                overrides.push((collection, table.over(base, &at)?));
            }
        }
        Ok(yui_protocol::quota::Quotas {
            default: base,
            overrides,
        })
    }
}

impl QuotaConfig {
    /// `base` with the limits this table sets; `at` names the table in
    /// messages.
    fn over(
        &self,
        base: yui_protocol::quota::Quota,
        at: &str,
    ) -> std::result::Result<yui_protocol::quota::Quota, String> {
        let positive = |key: &str, n: u64| {
            if n == 0 {
                Err(format!(
                    "[{at}] {key} = 0 would refuse every record from other towns; give at least 1"
                ))
            } else {
                Ok(n)
            }
        };
        let size = |key: &str, s: &Option<Size>, default: u64| match s {
            None => Ok(default),
            Some(s) => s
                .bytes()
                .map_err(|e| format!("[{at}] {key}: {e}"))
                .and_then(|n| positive(key, n)),
        };
        Ok(yui_protocol::quota::Quota {
            records_per_day: match self.records_per_day {
                None => base.records_per_day,
                Some(n) => positive("records_per_day", n)?,
            },
            bytes_per_day: size("bytes_per_day", &self.bytes_per_day, base.bytes_per_day)?,
            stored_bytes: size("stored_bytes", &self.stored_bytes, base.stored_bytes)?,
        })
    }
}

impl Config {
    /// Whether a request's `Host` (with or without a port) names this node:
    /// a loopback name, or one of `proxy_hosts`. Case and a trailing dot do
    /// not matter; anything malformed is refused.
    pub fn host_allowed(&self, host: &str) -> bool {
        let name = host_name(host).map(|n| n.trim_end_matches('.').to_ascii_lowercase());
        let Some(name) = name.filter(|n| !n.is_empty()) else {
            return false;
        };
        matches!(name.as_str(), "127.0.0.1" | "localhost" | "[::1]")
            || self.proxy_hosts.iter().any(|allowed| {
                host_name(allowed.trim())
                    .map(|a| a.trim_end_matches('.').eq_ignore_ascii_case(&name))
                    .unwrap_or(false)
            })
    }
}

impl Config {
    /// Refuses a non-loopback API address unless `allow_plain_http_api`
    /// gives the reason: the console's passwords and session cookies and
    /// the API's tokens travel in plain HTTP. Checked before binding.
    /// Returns the reason when one was needed, for the log.
    pub fn check_api_listen(&self, addr: SocketAddr, config_path: &Path) -> Result<Option<&str>> {
        if addr.ip().is_loopback() {
            return Ok(None);
        }
        match self.allow_plain_http_api.as_deref().map(str::trim) {
            Some(reason) if !reason.is_empty() => Ok(Some(reason)),
            _ => Err(Error::Config(format!(
                "refusing to serve the API and console on {addr}: that is not a loopback address, and they speak plain HTTP (console passwords, session cookies and API tokens would cross the network readable). Keep api_listen on 127.0.0.1 and put a TLS reverse proxy in front (docs/operations.md 5.1); or, if the network between is protected otherwise, write why in {}: allow_plain_http_api = \"REASON\"",
                config_path.display()
            ))),
        }
    }
}

/// The name part of a `Host` value, without its port: `[::1]` of
/// `[::1]:7480`, `localhost` of `localhost:7480`. None if malformed.
fn host_name(host: &str) -> Option<&str> {
    if host.starts_with('[') {
        let end = host.find(']')?;
        let rest = &host[end + 1..];
        if !(rest.is_empty() || port_ok(rest.strip_prefix(':')?)) {
            return None;
        }
        return Some(&host[..=end]);
    }
    let (name, port) = match host.rsplit_once(':') {
        Some((name, port)) => (name, Some(port)),
        None => (host, None),
    };
    if port.is_some_and(|p| !port_ok(p)) || name.contains(':') {
        return None;
    }
    Some(name)
}

fn port_ok(port: &str) -> bool {
    !port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit())
}

/// A backup `yui backup` wrote and checked with SQLite's integrity_check.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VerifiedBackup {
    pub file: String,
    pub bytes: u64,
    /// When it was verified (RFC 3339).
    pub verified_at: String,
}

/// What `yui init` is told.
#[derive(Debug, Clone)]
pub struct InitOptions {
    pub town: String,
    pub name: String,
    pub api_listen: SocketAddr,
    pub peer_listen: SocketAddr,
}

/// A data directory, which may or may not exist yet.
#[derive(Debug, Clone)]
pub struct DataDir {
    pub path: PathBuf,
}

impl DataDir {
    pub fn new(path: impl Into<PathBuf>) -> DataDir {
        DataDir { path: path.into() }
    }
    pub fn config_path(&self) -> PathBuf {
        self.path.join("config.toml")
    }
    pub fn db_path(&self) -> PathBuf {
        self.path.join("yui.sqlite")
    }
    pub fn token_path(&self) -> PathBuf {
        self.path.join("api-token")
    }
    pub fn key_path(&self) -> PathBuf {
        self.path.join("node.key.pem")
    }
    pub fn csr_path(&self) -> PathBuf {
        self.path.join("node.csr.pem")
    }
    /// A new key waiting for its certificate (`yui cert rotate-key`); it
    /// replaces `node.key.pem` when that certificate is installed.
    pub fn next_key_path(&self) -> PathBuf {
        self.path.join("node.next.key.pem")
    }
    pub fn next_csr_path(&self) -> PathBuf {
        self.path.join("node.next.csr.pem")
    }
    pub fn lock_path(&self) -> PathBuf {
        self.path.join("serve.lock")
    }
    /// The node certificate signed by the consortium CA (`yui cert install`).
    pub fn cert_path(&self) -> PathBuf {
        self.path.join("node.cert.pem")
    }
    pub fn ca_cert_path(&self) -> PathBuf {
        self.path.join("ca.cert.pem")
    }
    pub fn revocations_path(&self) -> PathBuf {
        self.path.join("revocations.pem")
    }
    /// The record of verified backups, one JSON object a line.
    pub fn backups_log_path(&self) -> PathBuf {
        self.path.join("backups.log")
    }

    /// Adds a backup `yui backup` wrote and verified to `backups.log`
    /// (mode 0600: it names where the town keeps personal data).
    pub fn record_verified_backup(&self, backup: &VerifiedBackup) -> Result<()> {
        let path = self.backups_log_path();
        let mut line = serde_json::to_string(backup).map_err(|e| Error::Config(e.to_string()))?;
        line.push('\n');
        let mut f = fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(&path)
            .map_err(|e| io_error("opening", &path, e))?;
        f.write_all(line.as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(|e| io_error("writing", &path, e))
    }

    /// The newest verified backup of `backups.log`; None without one (or
    /// when the log cannot be read: status must not fail over it).
    pub fn last_verified_backup(&self) -> Option<VerifiedBackup> {
        let text = fs::read_to_string(self.backups_log_path()).ok()?;
        text.lines()
            .rev()
            .find_map(|l| serde_json::from_str::<VerifiedBackup>(l).ok())
    }

    /// Whether `yui init` has run here.
    pub fn is_initialised(&self) -> bool {
        self.config_path().exists()
    }

    /// Creates the directory and everything in it. Refuses to touch a
    /// directory that already holds a node.
    pub fn init(&self, opts: &InitOptions) -> Result<String> {
        yui_protocol::record::check_town_id(&opts.town).map_err(Error::Config)?;
        if self.is_initialised() {
            return Err(Error::Config(format!(
                "{} already holds a node (config.toml exists); nothing was changed",
                self.path.display()
            )));
        }
        if self.path.exists()
            && fs::read_dir(&self.path)
                .map(|mut d| d.next().is_some())
                .unwrap_or(true)
        {
            return Err(Error::Config(format!(
                "{} exists and is not empty; choose an empty or new directory",
                self.path.display()
            )));
        }
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.path)
            .map_err(|e| io_error("creating", &self.path, e))?;
        // A directory that already existed keeps its mode: make it private.
        fs::set_permissions(&self.path, fs::Permissions::from_mode(0o700))
            .map_err(|e| io_error("setting permissions of", &self.path, e))?;

        let node_id =
            write_key_and_request(&self.key_path(), &self.csr_path(), &opts.town, &opts.name)?;

        let mut token = [0u8; 32];
        rand::rng().fill_bytes(&mut token);
        let token: String = token.iter().map(|b| format!("{b:02x}")).collect();
        write_private(&self.token_path(), format!("{token}\n").as_bytes())?;

        crate::store::Store::create_database(&self.db_path(), &opts.town)?;

        let config = Config {
            town: opts.town.clone(),
            name: opts.name.clone(),
            api_listen: opts.api_listen,
            peer_listen: opts.peer_listen,
            proxy_hosts: Vec::new(),
            allow_plain_http_api: None,
            quotas: QuotasConfig::default(),
            disk: DiskConfig::default(),
            attachments: AttachmentsConfig::default(),
        };
        let text = format!(
            "# Yui node configuration. See docs/operations.md.\n{}",
            toml::to_string(&config).map_err(|e| Error::Config(e.to_string()))?
        );
        // Written last: its presence marks a complete init.
        write_file(&self.config_path(), text.as_bytes(), 0o600)?;
        Ok(node_id)
    }

    /// Checks permissions and reads the config. Every later command starts here.
    pub fn open(&self) -> Result<Config> {
        if !self.path.exists() {
            return Err(Error::Config(format!(
                "no data directory at {}; create one with `yui init --town ID` (or run `yui serve`, which creates it)",
                self.path.display()
            )));
        }
        if !self.is_initialised() {
            return Err(Error::Config(format!(
                "{} has no config.toml; it is not a Yui data directory (run `yui init --town ID`)",
                self.path.display()
            )));
        }
        self.check_permissions()?;
        let text = fs::read_to_string(self.config_path())
            .map_err(|e| io_error("reading", &self.config_path(), e))?;
        let config: Config = toml::from_str(&text).map_err(|e| {
            Error::Config(format!("{}: {}", self.config_path().display(), e.message()))
        })?;
        yui_protocol::record::check_town_id(&config.town)
            .map_err(|e| Error::Config(format!("{}: {e}", self.config_path().display())))?;
        config
            .quotas
            .resolve()
            .map_err(|e| Error::Config(format!("{}: {e}", self.config_path().display())))?;
        config
            .attachments
            .resolve()
            .map_err(|e| Error::Config(format!("{}: {e}", self.config_path().display())))?;
        Ok(config)
    }

    /// Takes the serve lock: one `yui serve` (or `yui restore`) at a time.
    pub fn lock(&self) -> Result<ServeLock> {
        let path = self.lock_path();
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| io_error("opening", &path, e))?;
        file.try_lock().map_err(|_| {
            Error::Config(format!(
                "another yui is already serving {}; stop it first",
                self.path.display()
            ))
        })?;
        Ok(ServeLock(file))
    }

    /// The API URL of the `yui serve` running on this directory, if one is.
    pub fn serving_api(&self) -> Option<String> {
        let file = fs::File::open(self.lock_path()).ok()?;
        if file.try_lock_shared().is_ok() {
            return None; // nobody holds it
        }
        Some(
            fs::read_to_string(self.lock_path())
                .unwrap_or_default()
                .trim()
                .to_owned(),
        )
    }

    /// Secrets live here: refuse to run when other users can read them.
    pub fn check_permissions(&self) -> Result<()> {
        let loose = |path: &Path| -> Result<Option<u32>> {
            let mode = fs::metadata(path)
                .map_err(|e| io_error("reading", path, e))?
                .permissions()
                .mode()
                & 0o777;
            Ok((mode & 0o077 != 0).then_some(mode))
        };
        if let Some(mode) = loose(&self.path)? {
            return Err(Error::Config(format!(
                "data directory {} is open to other users (mode {mode:o}); it holds the node's key and API token. Fix it with: chmod 700 {}",
                self.path.display(),
                self.path.display()
            )));
        }
        for secret in [self.token_path(), self.key_path(), self.db_path()] {
            if secret.exists()
                && let Some(mode) = loose(&secret)?
            {
                return Err(Error::Config(format!(
                    "{} is readable by other users (mode {mode:o}). Fix it with: chmod 600 {}",
                    secret.display(),
                    secret.display()
                )));
            }
        }
        // Root passes every permission check, so ask the file system directly.
        let probe = self.path.join(".write-test");
        fs::write(&probe, b"").map_err(|e| io_error("writing in", &self.path, e))?;
        let _ = fs::remove_file(&probe);
        Ok(())
    }

    pub fn read_token(&self) -> Result<String> {
        let token = fs::read_to_string(self.token_path())
            .map_err(|e| io_error("reading", &self.token_path(), e))?;
        let token = token.trim().to_owned();
        if token.len() < 32 {
            return Err(Error::Config(format!(
                "{} holds no usable token (fewer than 32 characters)",
                self.token_path().display()
            )));
        }
        Ok(token)
    }

    /// The node id: a fingerprint of the node's public key.
    pub fn node_id(&self) -> Result<String> {
        key_node_id(&self.key_path())
    }

    /// The node id of the new key waiting for its certificate, if any.
    pub fn next_node_id(&self) -> Result<Option<String>> {
        if !self.next_key_path().exists() {
            return Ok(None);
        }
        key_node_id(&self.next_key_path()).map(Some)
    }

    /// `yui cert rotate-key`: a new key and its certificate request, beside
    /// the current key, which stays in use until the new certificate is
    /// installed. Asking again replaces a new key that has no certificate
    /// yet. Returns the new node id.
    pub fn make_next_key(&self, town: &str, name: &str) -> Result<String> {
        write_key_and_request(&self.next_key_path(), &self.next_csr_path(), town, name)
    }
}

fn key_node_id(path: &Path) -> Result<String> {
    let pem = fs::read_to_string(path).map_err(|e| io_error("reading", path, e))?;
    let key = rcgen::KeyPair::from_pem(&pem)
        .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
    Ok(node_id(&rcgen::PublicKeyData::subject_public_key_info(
        &key,
    )))
}

/// A new node key (mode 0600) at `key_path` and its certificate request for
/// `town` at `csr_path`; returns the node id.
fn write_key_and_request(
    key_path: &Path,
    csr_path: &Path,
    town: &str,
    name: &str,
) -> Result<String> {
    let key = rcgen::KeyPair::generate()
        .map_err(|e| Error::Config(format!("generating the node key: {e}")))?;
    let node_id = node_id(&rcgen::PublicKeyData::subject_public_key_info(&key));
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())
        .map_err(|e| Error::Config(format!("building the certificate request: {e}")))?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, town.to_owned());
    if !name.is_empty() {
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, name.to_owned());
    }
    let csr = params
        .serialize_request(&key)
        .and_then(|r| r.pem())
        .map_err(|e| Error::Config(format!("writing the certificate request: {e}")))?;
    // The request first: a key without one is useless, a request without
    // its key is caught at install.
    crate::fsio::replace_file(csr_path, csr.as_bytes(), 0o644)?;
    crate::fsio::replace_file(key_path, key.serialize_pem().as_bytes(), 0o600)?;
    Ok(node_id)
}

/// Held while a node serves (or a restore runs); its content is the URL of
/// the running API, for `yui status`.
pub struct ServeLock(fs::File);

impl ServeLock {
    pub fn announce(&self, api_url: &str) {
        let mut f = &self.0;
        let _ = f.set_len(0).and_then(|()| {
            use std::io::Seek;
            f.seek(std::io::SeekFrom::Start(0))?;
            f.write_all(api_url.as_bytes())
        });
    }
}

/// Base32 of the SHA-256 of the public key (SubjectPublicKeyInfo DER), in
/// groups of four like `ABCD-EFGH-…`, in the spirit of Syncthing's device ids.
pub fn node_id(public_key_der: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, public_key_der);
    node_id_of_digest(digest.as_ref())
}

/// The node id whose SHA-256 is `digest` (a change signature's signer id).
pub fn node_id_of_digest(digest: &[u8]) -> String {
    let b32 = base32(digest);
    b32.as_bytes()
        .chunks(4)
        .map(|c| std::str::from_utf8(c).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("-")
}

fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for &b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            out.push(ALPHABET[((acc >> (bits - 5)) & 31) as usize] as char);
            bits -= 5;
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((acc << (5 - bits)) & 31) as usize] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base32_matches_rfc4648() {
        assert_eq!(base32(b"foobar"), "MZXW6YTBOI");
        assert_eq!(base32(b""), "");
        let id = node_id(b"key");
        assert_eq!(id.len(), 52 + 12);
    }

    /// Tateshina's config as `yui init` writes it.
    fn default_config() -> Config {
        Config {
            town: "tateshina".into(),
            name: String::new(),
            api_listen: DEFAULT_API_LISTEN.parse().unwrap(),
            peer_listen: DEFAULT_PEER_LISTEN.parse().unwrap(),
            proxy_hosts: Vec::new(),
            allow_plain_http_api: None,
            quotas: QuotasConfig::default(),
            disk: DiskConfig::default(),
            attachments: AttachmentsConfig::default(),
        }
    }

    #[test]
    fn low_disk_is_under_both_the_share_and_the_size() {
        let default = DiskConfig::default();
        // A 2 TB disk: 1 GiB decides; a 4 GB one: 10 %.
        assert_eq!(default.low_below(2_000_000_000_000), Ok(LOW_DISK_BYTES));
        assert_eq!(default.low_below(4_000_000_000), Ok(400_000_000));
        let set = DiskConfig {
            warn_below_percent: Some(5),
            warn_below: Some(Size::Text("20 GiB".into())),
        };
        assert_eq!(set.low_below(100_000_000_000), Ok(5_000_000_000));
        let wrong = DiskConfig {
            warn_below_percent: Some(120),
            warn_below: None,
        };
        assert!(wrong.low_below(1).is_err());
    }

    #[test]
    fn host_allowed_takes_loopback_names_and_proxy_hosts_only() {
        let mut config = default_config();
        for ok in [
            "127.0.0.1",
            "127.0.0.1:7480",
            "localhost",
            "LOCALHOST.:80",
            "[::1]",
            "[::1]:7480",
        ] {
            assert!(config.host_allowed(ok), "{ok}");
        }
        for bad in [
            "",
            ":80",
            "attacker.example",
            "attacker.example:7480",
            "127.0.0.1.attacker.example",
            "localhost:x",
            "[::1]x",
            "::1",
            "10.0.0.5",
            "yui.tateshina.lg.jp",
        ] {
            assert!(!config.host_allowed(bad), "{bad}");
        }
        config.proxy_hosts = vec!["Yui.Tateshina.LG.JP".into()];
        assert!(config.host_allowed("yui.tateshina.lg.jp"));
        assert!(config.host_allowed("yui.tateshina.lg.jp:443"));
        assert!(!config.host_allowed("attacker.example"));
    }

    #[test]
    fn quotas_are_read_with_units_and_overrides_and_checked() {
        use yui_protocol::Collection;
        use yui_protocol::quota::Quota;
        let read = |toml_text: &str| {
            let text = format!(
                "town = \"tateshina\"\napi_listen = \"127.0.0.1:7480\"\npeer_listen = \"0.0.0.0:7443\"\n{toml_text}"
            );
            toml::from_str::<Config>(&text)
                .map_err(|e| e.message().to_owned())
                .and_then(|c| c.quotas.resolve())
        };
        assert_eq!(read("").unwrap(), yui_protocol::quota::Quotas::default());
        let quotas = read(
            "[quotas]\nrecords_per_day = 1000\nbytes_per_day = \"100 MB\"\n\n[quotas.failure_cases]\nstored_bytes = \"1 GiB\"\n",
        )
        .unwrap();
        let base = Quota {
            records_per_day: 1000,
            bytes_per_day: 100_000_000,
            stored_bytes: 2_000_000_000,
        };
        assert_eq!(quotas.of(Collection::Knowledge), base);
        assert_eq!(
            quotas.of(Collection::FailureCases),
            Quota {
                stored_bytes: 1 << 30,
                ..base
            }
        );
        assert_eq!(
            read("[quotas]\nstored_bytes = 5000\n")
                .unwrap()
                .default
                .stored_bytes,
            5000
        );
        for (bad, says) in [
            (
                "[quotas]\nrecords_per_day = 0\n",
                "[quotas] records_per_day = 0",
            ),
            (
                "[quotas]\nbytes_per_day = \"50 MiBs\"\n",
                "unknown unit \"MiBs\"",
            ),
            ("[quotas]\nbytes_per_day = \"lots\"\n", "is not a size"),
            (
                "[quotas.workers]\nrecords_per_day = 5\n",
                "unknown field `workers`",
            ),
            (
                "[quotas]\nrecords_a_day = 5\n",
                "unknown field `records_a_day`",
            ),
            (
                "[quotas.knowledge]\nstored_bytes = 0\n",
                "[quotas.knowledge] stored_bytes = 0",
            ),
        ] {
            let err = read(bad).unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn a_non_loopback_api_listen_needs_a_reason() {
        let mut config = default_config();
        let path = Path::new("yui-data/config.toml");
        for ok in ["127.0.0.1:7480", "127.0.0.2:0", "[::1]:7480"] {
            assert_eq!(
                config.check_api_listen(ok.parse().unwrap(), path).unwrap(),
                None
            );
        }
        for bad in [
            "0.0.0.0:7480",
            "[::]:7480",
            "10.0.0.5:7480",
            "[::ffff:127.0.0.1]:7480",
        ] {
            let err = config
                .check_api_listen(bad.parse().unwrap(), path)
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("allow_plain_http_api") && err.contains("yui-data/config.toml"),
                "{err}"
            );
        }
        config.allow_plain_http_api = Some("  ".into());
        assert!(
            config
                .check_api_listen("0.0.0.0:7480".parse().unwrap(), path)
                .is_err()
        );
        config.allow_plain_http_api = Some("only the TLS proxy reaches it".into());
        assert_eq!(
            config
                .check_api_listen("0.0.0.0:7480".parse().unwrap(), path)
                .unwrap(),
            Some("only the TLS proxy reaches it")
        );
    }
}
