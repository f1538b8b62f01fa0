//! The `yui` command line (SPEC §8): argument parsing and each command's work.
//!
//! Output for people goes to stdout; logs go to stderr through `tracing`.
//! Every failure ends with exit code 1 and one line saying what went wrong.
#![allow(clippy::print_stdout)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;

use crate::accounts::{Accounts, CLI_USER, Principal, Role};
use crate::datadir::{DEFAULT_API_LISTEN, DEFAULT_PEER_LISTEN, DataDir, InitOptions};
pub use crate::export::ExportFormat;
use crate::node::Node;

/// Yui (結): one town's node of the regional telework consortium.
///
/// Keeps the town's records, serves the staff a JSON API, and (once the town
/// has joined a consortium) shares knowledge, failure cases, pilot results and
/// KPI reports with the other towns. Personal data never leaves the town.
#[derive(Parser, Debug)]
#[command(name = "yui", version, max_term_width = 100)]
pub struct Cli {
    /// The node's data directory (database, keys, config).
    #[arg(
        long,
        global = true,
        env = "YUI_DATA_DIR",
        default_value = "./yui-data"
    )]
    pub data_dir: PathBuf,

    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value = "text")]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Copy, Clone, Debug, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a new data directory for a town: config, database, node key,
    /// certificate request and API token. Prints the node id.
    Init {
        /// The town's id: lowercase letters, digits and '-' (e.g. tateshina).
        #[arg(long)]
        town: String,
        /// The town's name as people write it (e.g. 立科町).
        #[arg(long, default_value = "")]
        name: String,
        /// Where the local API and console listen. Keep it on 127.0.0.1
        /// unless the town network needs otherwise.
        #[arg(long, default_value = DEFAULT_API_LISTEN)]
        api_listen: SocketAddr,
        /// Where the peer port listens once the town has joined a consortium.
        #[arg(long, default_value = DEFAULT_PEER_LISTEN)]
        peer_listen: SocketAddr,
    },
    /// Run the node. Creates ./yui-data first if there is no data directory.
    Serve {
        /// Listen here instead of the address in config.toml (port 0 picks a free port).
        #[arg(long)]
        api_listen: Option<SocketAddr>,
        /// Serve the peer port here instead of the address in config.toml
        /// (only once the node has joined a consortium).
        #[arg(long)]
        peer_listen: Option<SocketAddr>,
        /// Do not open the peer port at all: only dial out (e.g. behind NAT).
        #[arg(long)]
        no_peer_port: bool,
        /// Town id to use if serve has to create the data directory.
        #[arg(long, default_value = "town")]
        town: String,
    },
    /// Manage the consortium's certificate authority (for the secretariat).
    #[command(subcommand)]
    Ca(CaCommand),
    /// Install this node's certificate once the secretariat has signed it.
    #[command(subcommand)]
    Cert(CertCommand),
    /// Install a revocation list from the secretariat.
    #[command(subcommand)]
    Revocations(RevocationsCommand),
    /// Add, list or remove the peers this node syncs with. Works whether or
    /// not the node is running; a running node acts at once.
    #[command(subcommand)]
    Peer(PeerCommand),
    /// Manage the people who sign in to the console or use the API: their
    /// roles, passwords and API tokens. Works whether or not the node is
    /// running; a running node sees changes at once.
    ///
    /// Roles: a viewer reads; an editor also creates, updates and deletes
    /// records; an admin also manages peers, users, revocations and sync.
    #[command(subcommand)]
    User(UserCommand),
    /// Read the local audit log: who changed what, and logins. It never
    /// leaves this node; peers see only the town.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Sync with every peer now, both ways, and report.
    Sync,
    /// Start three example towns (立科町, 大町市, 糸魚川市) on this machine with
    /// a fresh consortium, fill them with example records, and show shared
    /// records crossing towns while personal data stays home. Ctrl-C stops it.
    Demo {
        /// Keep the towns' data here instead of a temporary directory
        /// (which is removed on exit).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Show this node's town, node id, membership and record counts. Works
    /// whether or not the node is running.
    Status {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Write a consistent copy of the database to FILE. Safe while the node
    /// is serving. The copy holds personal data: it is created readable by
    /// its owner only.
    Backup {
        /// The new backup file (must not exist).
        file: PathBuf,
    },
    /// Replace the database with a backup. Stop the node first. The database
    /// being replaced is kept beside it, and the node gets a new Automerge
    /// actor id so its future edits cannot clash with edits made before.
    Restore {
        /// A file written by `yui backup`.
        file: PathBuf,
    },
    /// Export every live record to DIR, one JSON file per collection or one
    /// Markdown file per record.
    Export {
        /// json: one file per collection; markdown: one file per record and an index.
        #[arg(long, value_enum, default_value = "json")]
        format: ExportFormat,
        /// Also export deleted records.
        #[arg(long)]
        include_deleted: bool,
        /// Target directory (created if missing; files in it are overwritten).
        dir: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
pub enum CaCommand {
    /// Create a consortium certificate authority in a new directory. Keep
    /// that directory off the nodes: its key can admit anyone.
    Init {
        /// A new directory for the CA's key, certificate and register.
        #[arg(long)]
        ca_dir: PathBuf,
        /// The consortium's name (e.g. 信州テレワークコンソーシアム).
        #[arg(long)]
        name: String,
    },
    /// Sign a node's certificate request (node.csr.pem from `yui init`),
    /// binding its town id. Send the certificate and ca.cert.pem back.
    Issue {
        /// The CA directory made by `yui ca init`.
        #[arg(long)]
        ca_dir: PathBuf,
        /// The node's node.csr.pem.
        #[arg(long)]
        csr: PathBuf,
        /// Where to write the signed certificate.
        #[arg(long)]
        out: PathBuf,
        /// How long the certificate is valid, in days.
        #[arg(long, default_value_t = crate::pki::DEFAULT_CERT_DAYS)]
        days: i64,
    },
    /// Revoke a member town (all its certificates) or one node, and write a
    /// new signed revocation list (revocations.pem in the CA directory).
    Revoke {
        /// The CA directory made by `yui ca init`.
        #[arg(long)]
        ca_dir: PathBuf,
        /// Revoke every certificate issued to this town id.
        #[arg(long, conflicts_with = "node", required_unless_present = "node")]
        town: Option<String>,
        /// Revoke the certificate of this node id (as `yui status` shows it).
        #[arg(long)]
        node: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum CertCommand {
    /// Install the signed node certificate and the consortium CA certificate.
    /// Restart the node afterwards to open the peer port.
    Install {
        /// The signed node certificate from the secretariat.
        #[arg(long)]
        cert: PathBuf,
        /// The consortium CA certificate (ca.cert.pem) from the secretariat.
        #[arg(long)]
        ca_cert: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
pub enum RevocationsCommand {
    /// Install a revocation list (revocations.pem from `yui ca revoke`). It
    /// must be signed by the consortium CA and newer than the one installed;
    /// it also spreads to the peers by sync.
    Import {
        /// The revocation list file (revocations.pem).
        file: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
pub enum PeerCommand {
    /// Add a peer by its peer-port URL, e.g. https://192.0.2.10:7443.
    Add {
        /// The peer's address: https://HOST:PORT (HOST may be an IP address).
        url: String,
        /// The peer's node id, if known: then only that node is accepted there.
        #[arg(long)]
        node_id: Option<String>,
    },
    /// List the peers and their sync state.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Remove a peer by URL or node id.
    Remove {
        /// The peer's URL as added, or its node id.
        peer: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Add a user. Asks for the password twice on a terminal; otherwise
    /// reads it from the first line of standard input (for scripts).
    /// Passwords need at least 10 characters.
    Add {
        /// Login name: lowercase letters, digits, '.', '_' or '-', starting
        /// with a letter (e.g. sato.hanako).
        name: String,
        /// What the user may do.
        #[arg(long, value_enum)]
        role: Role,
    },
    /// List the users, their roles, last login and any lock-out.
    List {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Remove a user, ending their sessions and revoking their tokens. The
    /// last admin cannot be removed.
    Remove { name: String },
    /// Set a user's password (asked as for `add`). Ends their sessions and
    /// lifts a lock-out.
    Passwd { name: String },
    /// Change a user's role. Their tokens never act above it.
    Role {
        name: String,
        #[arg(value_enum)]
        role: Role,
    },
    /// Create an API token for a user and print it once (only a hash is
    /// kept). Scripts send it as 'Authorization: Bearer TOKEN'.
    Token {
        name: String,
        /// The token's role: at most the user's own (default: the user's role).
        #[arg(long, value_enum)]
        role: Option<Role>,
        /// A name for the token, unique per user, to revoke it by later
        /// (default: the time it was made).
        #[arg(long)]
        label: Option<String>,
    },
    /// Revoke one of a user's API tokens by its label.
    RevokeToken {
        name: String,
        #[arg(long)]
        label: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Print the newest entries of the audit log, newest first.
    Log {
        /// How many entries.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// The egress ledger: every document this node sent to a peer (which
    /// peer, which record of which collection, its heads, when), newest
    /// first. An auditor can confirm that only shared records left.
    Egress {
        /// Only this peer (node id or town id).
        #[arg(long)]
        peer: Option<String>,
        /// Only since this date or time (e.g. 2026-11-21 or 2026-11-21T09:00:00Z, UTC).
        #[arg(long)]
        since: Option<String>,
        /// How many entries.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(cli: Cli) -> Result<()> {
    let data_dir = DataDir::new(&cli.data_dir);
    match cli.command {
        Command::Init {
            town,
            name,
            api_listen,
            peer_listen,
        } => {
            let node_id = data_dir.init(&InitOptions {
                town: town.clone(),
                name,
                api_listen,
                peer_listen,
            })?;
            println!("Initialised {} for town {town}.", data_dir.path.display());
            println!("node id:   {node_id}");
            println!("API token: {}", data_dir.token_path().display());
            println!(
                "To join the consortium, send {} to the secretariat.",
                data_dir.csr_path().display()
            );
            Ok(())
        }
        Command::Serve {
            api_listen,
            peer_listen,
            no_peer_port,
            town,
        } => serve(data_dir, api_listen, peer_listen, no_peer_port, town).await,
        Command::Ca(cmd) => ca(cmd),
        Command::Cert(CertCommand::Install { cert, ca_cert }) => {
            cert_install(&data_dir, &cert, &ca_cert)
        }
        Command::Revocations(RevocationsCommand::Import { file }) => {
            revocations_import(data_dir, &file).await
        }
        Command::Peer(cmd) => peer(data_dir, cmd).await,
        Command::User(cmd) => user(&data_dir, cmd).await,
        Command::Audit(AuditCommand::Log { limit, json }) => {
            data_dir.open()?;
            let accounts = Accounts::open(&data_dir)?;
            let entries = accounts.audit_log(limit).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&entries)?);
            } else if entries.is_empty() {
                println!("The audit log is empty.");
            }
            if !json {
                for e in &entries {
                    println!(
                        "{}  {:<12} {:<18} {}  {}",
                        e.at, e.user, e.action, e.target, e.detail
                    );
                }
            }
            Ok(())
        }
        Command::Audit(AuditCommand::Egress {
            peer,
            since,
            limit,
            json,
        }) => {
            let node = Node::open(data_dir, false)?;
            let entries = node.store.egress(peer, since, limit).await;
            node.store.close();
            let entries = entries?;
            if json {
                println!("{}", serde_json::to_string_pretty(&entries)?);
                return Ok(());
            }
            if entries.is_empty() {
                println!("Nothing was sent to a peer (for this selection).");
            }
            for e in &entries {
                let heads: Vec<&str> = e.heads.iter().map(|h| &h[..h.len().min(12)]).collect();
                println!(
                    "{}  {:<6} {:<12} {:<14} {}  {} B  heads {}",
                    e.at,
                    e.way,
                    if e.peer_town.is_empty() {
                        &e.peer
                    } else {
                        &e.peer_town
                    },
                    e.collection,
                    e.record_id,
                    e.bytes,
                    heads.join(",")
                );
            }
            Ok(())
        }
        Command::Sync => sync(data_dir).await,
        Command::Demo { dir } => crate::demo::run(dir, wait_for_signal()).await,
        Command::Status { json } => status(data_dir, json).await,
        Command::Backup { file } => {
            data_dir.open()?;
            let bytes = crate::store::backup(&data_dir.db_path(), &file)?;
            println!("Wrote {} ({bytes} bytes).", file.display());
            Ok(())
        }
        Command::Restore { file } => restore(data_dir, &file),
        Command::Export {
            format,
            include_deleted,
            dir,
        } => export(data_dir, format, include_deleted, &dir).await,
    }
}

/// `yui user …`: straight on the database (its own connection, so a running
/// node need not be asked), audited as the command line.
async fn user(data_dir: &DataDir, cmd: UserCommand) -> Result<()> {
    data_dir.open()?;
    let accounts = Accounts::open(data_dir)?;
    let cli = cli_principal();
    match cmd {
        UserCommand::Add { name, role } => {
            let password = read_new_password(&name)?;
            accounts.add_user(&name, role, &password).await?;
            accounts
                .audit(&cli, "user.add", &name, &format!("role {role}"))
                .await;
            println!("Added user {name} with the {role} role.");
        }
        UserCommand::List { json } => {
            let users = accounts.users().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&users)?);
            } else if users.is_empty() {
                println!("No users yet. Add one with `yui user add NAME --role admin`.");
            } else {
                for u in &users {
                    let mut line = format!(
                        "{:<20} {:<7} last login {}",
                        u.name,
                        u.role,
                        u.last_login_at.as_deref().unwrap_or("never")
                    );
                    if let Some(until) = &u.locked_until {
                        line.push_str(&format!("  LOCKED OUT until {until}"));
                    }
                    println!("{line}");
                }
            }
        }
        UserCommand::Remove { name } => {
            accounts.remove_user(&name).await?;
            accounts.audit(&cli, "user.remove", &name, "").await;
            println!("Removed user {name}; their sessions and tokens no longer work.");
        }
        UserCommand::Passwd { name } => {
            // Fail on an unknown name before asking for a password.
            if !accounts.users().await?.iter().any(|u| u.name == name) {
                anyhow::bail!("no user named {name:?}; `yui user list` shows them");
            }
            let password = read_new_password(&name)?;
            accounts.set_password(&name, &password).await?;
            accounts.audit(&cli, "user.passwd", &name, "").await;
            println!("Changed the password of {name}; their sessions have ended.");
        }
        UserCommand::Role { name, role } => {
            accounts.set_role(&name, role).await?;
            accounts
                .audit(&cli, "user.role", &name, &format!("role {role}"))
                .await;
            println!("{name} now has the {role} role.");
        }
        UserCommand::Token { name, role, label } => {
            let role = match role {
                Some(role) => role,
                None => accounts
                    .users()
                    .await?
                    .into_iter()
                    .find(|u| u.name == name)
                    .map(|u| u.role)
                    .ok_or_else(|| {
                        anyhow::anyhow!("no user named {name:?}; `yui user list` shows them")
                    })?,
            };
            let label =
                label.unwrap_or_else(|| yui_protocol::record::format_time(accounts.clock_ms()));
            let token = accounts.create_token(&name, role, &label).await?;
            accounts
                .audit(
                    &cli,
                    "token.create",
                    &name,
                    &format!("label {label:?}, role {role}"),
                )
                .await;
            println!("{token}");
            eprintln!(
                "This is the only time the token is shown. It acts for {name} with the {role} role; revoke it with `yui user revoke-token {name} --label {label:?}`."
            );
        }
        UserCommand::RevokeToken { name, label } => {
            accounts.revoke_token(&name, &label).await?;
            accounts
                .audit(&cli, "token.revoke", &name, &format!("label {label:?}"))
                .await;
            println!("Revoked the token {label:?} of {name}.");
        }
    }
    Ok(())
}

/// Who the audit log names for changes made straight on the database by a
/// `yui` command (when a node is running, commands go through its API with
/// the node token and are recorded as `node-token`).
fn cli_principal() -> Principal {
    Principal {
        user: CLI_USER.to_owned(),
        role: Role::Admin,
    }
}

/// A new password: asked twice without echo on a terminal, otherwise the
/// first line of standard input.
fn read_new_password(name: &str) -> Result<String> {
    use std::io::IsTerminal;
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password(format!("New password for {name}: "))?;
        let again = rpassword::prompt_password("The same password again: ")?;
        if first != again {
            anyhow::bail!("the two passwords differ; nothing was changed");
        }
        return Ok(first);
    }
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .context("reading the password from standard input")?;
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}

async fn serve(
    data_dir: DataDir,
    api_listen: Option<SocketAddr>,
    peer_listen: Option<SocketAddr>,
    no_peer_port: bool,
    town: String,
) -> Result<()> {
    if !data_dir.path.exists() {
        let node_id = data_dir.init(&InitOptions {
            town: town.clone(),
            name: String::new(),
            api_listen: DEFAULT_API_LISTEN.parse()?,
            peer_listen: DEFAULT_PEER_LISTEN.parse()?,
        })?;
        println!(
            "Created a new data directory {} for town {town} (node id {node_id}).",
            data_dir.path.display()
        );
    }
    let node = Node::open(data_dir, true)?;
    let addr = api_listen.unwrap_or(node.config.api_listen);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("listening on {addr}"))?;
    let peer_listener = if node.peering.is_some() && !no_peer_port {
        let addr = peer_listen.unwrap_or(node.config.peer_listen);
        Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("listening for peers on {addr}"))?,
        )
    } else {
        None
    };
    let local = listener.local_addr()?;
    println!("Yui node for town {} is running.", node.config.town);
    println!("API:       http://{local}/api/v1/  (status: http://{local}/api/v1/status)");
    println!("API token: {}", node.token_path.display());
    // The console needs a user; say how to make the first one.
    let has_users = node.accounts.users().await.is_ok_and(|u| !u.is_empty());
    if has_users {
        println!("Console:   http://{local}/");
    } else {
        println!(
            "Console:   http://{local}/  (no users yet: yui --data-dir {} user add NAME --role admin)",
            node.data_dir.path.display()
        );
    }
    match (&peer_listener, node.peering.is_some()) {
        (Some(l), _) => println!("Peers:     https://{}/ (mutual TLS)", l.local_addr()?),
        (None, true) => println!("Peers:     dialling out only (no peer port)"),
        (None, false) => {
            println!("Peers:     none (not a consortium member yet; see `yui status`)")
        }
    }
    println!("Stop with Ctrl-C.");
    tracing::info!(town = %node.config.town, node_id = %node.node_id, api = %local, "serving");

    let shutdown = CancellationToken::new();
    let signal = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down: finishing requests and writes in flight");
        signal.cancel();
    });
    crate::node::serve(Arc::new(node), listener, peer_listener, shutdown).await?;
    tracing::info!("stopped");
    Ok(())
}

pub async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

async fn status(data_dir: DataDir, json: bool) -> Result<()> {
    // A running node knows more (connections to it, refused attempts): ask it.
    let status = match running_api(&data_dir)? {
        Some(api) => call_api(&api, reqwest::Method::GET, "/api/v1/status", None, false).await?,
        None => {
            let node = Node::open(data_dir, false)?;
            let status = node.status().await;
            node.store.close();
            serde_json::to_value(status?)?
        }
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&status)?);
        return Ok(());
    }
    let s = |v: &serde_json::Value| v.as_str().unwrap_or("").to_owned();
    println!("town:        {} {}", s(&status["town"]), s(&status["name"]));
    println!("node id:     {}", s(&status["node_id"]));
    println!("version:     {}", s(&status["version"]));
    match status["api"].as_str() {
        Some(api) => println!("running:     yes, API at {api}api/v1/"),
        None => println!("running:     no (start with `yui serve`)"),
    }
    let m = &status["membership"];
    println!("consortium:  {}", s(&m["hint"]));
    if let Some(days) = m["certificate_expires_in_days"].as_i64() {
        println!("certificate: expires in {days} days");
    }
    for w in m["warnings"].as_array().into_iter().flatten() {
        println!("WARNING:     {}", s(w));
    }
    if m["joined"].as_bool() == Some(true) {
        let peers = status["peers"].as_array().cloned().unwrap_or_default();
        if peers.is_empty() {
            println!("peers:       none (add one with `yui peer add https://HOST:7443`)");
        }
        for p in &peers {
            println!(
                "peer:        {} town={} state={} last_sync={} pending={}",
                s(&p["url"]),
                p["town"].as_str().unwrap_or("?"),
                s(&p["state"]),
                p["last_sync_at"].as_str().unwrap_or("never"),
                p["pending"]
            );
            if let Some(e) = p["last_error"].as_str() {
                println!("             last error: {e}");
            }
        }
        for i in status["inbound"].as_array().into_iter().flatten() {
            println!(
                "dialled by:  {} ({}) rounds={} last_seen={}",
                s(&i["town"]),
                s(&i["node_id"]),
                i["rounds"],
                s(&i["last_seen_at"])
            );
        }
        let refused = status["refused_connections"].as_array().map_or(0, Vec::len);
        if refused > 0 {
            println!("refused:     {refused} connection attempts (see `yui status --json`)");
        }
    }
    println!(
        "database:    {} ({} bytes)",
        s(&status["storage"]["database"]),
        status["storage"]["bytes"]
    );
    println!("records:");
    for (name, c) in status["collections"].as_object().into_iter().flatten() {
        println!("  {name:<15} {:>8}  ({})", c["count"], s(&c["scope"]));
    }
    Ok(())
}

fn restore(data_dir: DataDir, file: &Path) -> Result<()> {
    let config = data_dir.open()?;
    // Held until the restore is done, so no `yui serve` can start halfway.
    let _lock = data_dir.lock().map_err(|_| {
        anyhow::anyhow!(
            "the node is running on {}; stop `yui serve` first, then restore",
            data_dir.path.display()
        )
    })?;
    let db = data_dir.db_path();
    let kept = crate::store::restore(&db, file, &config.town, crate::store::now_ms())?;
    println!("Restored {} from {}.", db.display(), file.display());
    if let Some(kept) = kept {
        println!("The previous database is kept as {}.", kept.display());
    }
    println!(
        "New Automerge actor id: {}",
        crate::store::stored_actor(&db)?
    );
    Ok(())
}

async fn export(
    data_dir: DataDir,
    format: ExportFormat,
    include_deleted: bool,
    dir: &Path,
) -> Result<()> {
    let node = Node::open(data_dir, false)?;
    let written = crate::export::export(&node.store, format, include_deleted, dir).await;
    node.store.close();
    let written = written?;
    println!("Exported {written} records to {}.", dir.display());
    Ok(())
}

fn ca(cmd: CaCommand) -> Result<()> {
    let now = time::OffsetDateTime::now_utc();
    match cmd {
        CaCommand::Init { ca_dir, name } => {
            let ca = crate::pki::CaDir::new(&ca_dir);
            ca.init(&name, now)?;
            println!("Created the consortium CA {name} in {}.", ca_dir.display());
            println!(
                "Give every node {} (it is public).",
                ca.cert_path().display()
            );
            println!("Keep {} secret and off the nodes.", ca.key_path().display());
        }
        CaCommand::Issue {
            ca_dir,
            csr,
            out,
            days,
        } => {
            let ca = crate::pki::CaDir::new(&ca_dir);
            if out.exists() {
                anyhow::bail!("{} already exists; choose a new file name", out.display());
            }
            let request = std::fs::read_to_string(&csr)
                .with_context(|| format!("reading {}", csr.display()))?;
            let (pem, id) = ca.issue(&request, days, now)?;
            std::fs::write(&out, pem).with_context(|| format!("writing {}", out.display()))?;
            println!(
                "Issued a certificate for town {} (node {}), valid {days} days.",
                id.town, id.node_id
            );
            println!(
                "Send {} and {} to the town.",
                out.display(),
                ca.cert_path().display()
            );
        }
        CaCommand::Revoke { ca_dir, town, node } => {
            let ca = crate::pki::CaDir::new(&ca_dir);
            let revoked = ca.revoke(town.as_deref(), node.as_deref(), now)?;
            for r in &revoked {
                println!("Revoked {r}.");
            }
            println!(
                "Wrote {}. Import it on any member node with `yui revocations import`; it spreads to the others by sync.",
                ca.crl_path().display()
            );
        }
    }
    Ok(())
}

fn cert_install(data_dir: &DataDir, cert: &Path, ca_cert: &Path) -> Result<()> {
    let config = data_dir.open()?;
    let cert_pem = std::fs::read(cert).with_context(|| format!("reading {}", cert.display()))?;
    let ca_pem =
        std::fs::read(ca_cert).with_context(|| format!("reading {}", ca_cert.display()))?;
    let now = crate::store::now_ms() / 1000;
    let id = crate::pki::install(data_dir, &config.town, &cert_pem, &ca_pem, now)?;
    let days = (id.not_after - now) / 86_400;
    println!(
        "Installed the certificate of town {} (node {}), valid for {days} more days.",
        id.town, id.node_id
    );
    if data_dir.serving_api().is_some() {
        println!(
            "Restart `yui serve` to use the new certificate (and open the peer port if it was not open)."
        );
    } else {
        println!("Next: add peers with `yui peer add https://HOST:7443`, then `yui serve`.");
    }
    Ok(())
}

/// The API of the `yui serve` running on this data directory, if any.
fn running_api(data_dir: &DataDir) -> Result<Option<(String, String)>> {
    match data_dir.serving_api() {
        Some(url) if !url.is_empty() => Ok(Some((url, data_dir.read_token()?))),
        _ => Ok(None),
    }
}

async fn call_api(
    (base, token): &(String, String),
    method: reqwest::Method,
    path: &str,
    body: Option<reqwest::Body>,
    json: bool,
) -> Result<serde_json::Value> {
    crate::pki::install_crypto_provider();
    let client = reqwest::Client::builder().no_proxy().build()?;
    let mut req = client
        .request(method, format!("{}{path}", base.trim_end_matches('/')))
        .bearer_auth(token)
        .timeout(std::time::Duration::from_secs(600));
    if let Some(body) = body {
        req = req.body(body);
        if json {
            req = req.header(reqwest::header::CONTENT_TYPE, "application/json");
        }
    }
    let resp = req
        .send()
        .await
        .with_context(|| format!("calling the running node at {base}"))?;
    let status = resp.status();
    let text = resp.text().await?;
    let value: serde_json::Value = if text.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text))
    };
    if !status.is_success() {
        let message = value["error"]["message"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| value.to_string());
        anyhow::bail!("{message}");
    }
    Ok(value)
}

async fn revocations_import(data_dir: DataDir, file: &Path) -> Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    if let Some(api) = running_api(&data_dir)? {
        let v = call_api(
            &api,
            reqwest::Method::POST,
            "/api/v1/revocations",
            Some(text.into()),
            false,
        )
        .await?;
        report_revocations(
            v["installed"].as_bool().unwrap_or(false),
            v["number"].as_u64().unwrap_or(0),
        );
        return Ok(());
    }
    let node = Node::open(data_dir, false)?;
    let result = (|| -> Result<(bool, u64)> {
        let peering = node.peering.as_ref().ok_or_else(|| {
            anyhow::anyhow!("this node has not joined a consortium yet (`yui cert install` first)")
        })?;
        let der = crate::pki::parse_crl_pem(&text)?;
        let newer = peering.install_revocations(&node.data_dir, &der)?;
        Ok((newer, peering.trust.revocation_number()))
    })();
    // Audit before closing the store: the audit entry goes through its writer,
    // which refuses work once closed.
    if let Ok((newer, number)) = result {
        node.accounts
            .audit(
                &cli_principal(),
                "revocations.import",
                "revocations",
                &format!("list number {number}, newer than the installed one: {newer}"),
            )
            .await;
    }
    node.store.close();
    let (newer, number) = result?;
    report_revocations(newer, number);
    Ok(())
}

fn report_revocations(newer: bool, number: u64) {
    if newer {
        println!(
            "Installed revocation list number {number}. Revoked nodes are refused from now on."
        );
    } else {
        println!(
            "Revocation list number {number} is already installed (this one is not newer); nothing changed."
        );
    }
}

async fn peer(data_dir: DataDir, cmd: PeerCommand) -> Result<()> {
    if let Some(api) = running_api(&data_dir)? {
        match cmd {
            PeerCommand::Add { url, node_id } => {
                let body = serde_json::json!({"url": url, "node_id": node_id}).to_string();
                call_api(
                    &api,
                    reqwest::Method::POST,
                    "/api/v1/peers",
                    Some(body.into()),
                    true,
                )
                .await?;
                println!("Added peer {url}; the running node is syncing with it.");
            }
            PeerCommand::Remove { peer } => {
                let path = format!("/api/v1/peers/{}", percent_encode(&peer));
                call_api(&api, reqwest::Method::DELETE, &path, None, false).await?;
                println!("Removed peer {peer}.");
            }
            PeerCommand::List { json } => {
                let v = call_api(&api, reqwest::Method::GET, "/api/v1/peers", None, false).await?;
                print_peers(&v["peers"], json)?;
            }
        }
        return Ok(());
    }
    let node = Arc::new(Node::open(data_dir, false)?);
    let result = async {
        match cmd {
            PeerCommand::Add { url, node_id } => {
                let detail = node_id
                    .as_deref()
                    .map_or_else(String::new, |id| format!("node id {id}"));
                crate::peer::add_peer(&node, &url, node_id, None).await?;
                node.accounts
                    .audit(&cli_principal(), "peer.add", &url, &detail)
                    .await;
                println!("Added peer {url}. The node syncs with it when it runs (`yui serve`).");
            }
            PeerCommand::Remove { peer } => {
                let removed = crate::peer::remove_peer(&node, &peer).await?;
                if removed.is_empty() {
                    anyhow::bail!("no peer has the URL or node id {peer:?}");
                }
                node.accounts
                    .audit(&cli_principal(), "peer.remove", &peer, &removed.join(", "))
                    .await;
                println!("Removed peer {}.", removed.join(", "));
            }
            PeerCommand::List { json } => {
                let peers = serde_json::to_value(node.status().await?.peers)?;
                print_peers(&peers, json)?;
            }
        }
        Ok(())
    }
    .await;
    node.store.close();
    result
}

fn print_peers(peers: &serde_json::Value, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(peers)?);
        return Ok(());
    }
    let list = peers.as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        println!("No peers. Add one with `yui peer add https://HOST:7443`.");
    }
    for p in list {
        let s = |k: &str| p[k].as_str().unwrap_or("-").to_owned();
        println!(
            "{}  town={} state={} last_sync={} pending={}",
            s("url"),
            s("town"),
            s("state"),
            s("last_sync_at"),
            p["pending"]
        );
        if let Some(e) = p["last_error"].as_str() {
            println!("    last error: {e}");
        }
    }
    Ok(())
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

async fn sync(data_dir: DataDir) -> Result<()> {
    let results = if let Some(api) = running_api(&data_dir)? {
        let v = call_api(&api, reqwest::Method::POST, "/api/v1/sync", None, false).await?;
        serde_json::from_value::<Vec<serde_json::Value>>(v["peers"].clone())?
    } else {
        let node = Arc::new(Node::open(data_dir, false)?);
        let r = if node.peering.is_none() {
            Err(anyhow::anyhow!(
                "this node has not joined a consortium yet (`yui cert install` first)"
            ))
        } else {
            crate::peer::Peering::sync_all(&node)
                .await
                .map_err(anyhow::Error::from)
                .and_then(|r| Ok(serde_json::from_value(serde_json::to_value(r)?)?))
        };
        node.store.close();
        r?
    };
    if results.is_empty() {
        println!("No peers to sync with.");
    }
    let mut failed = 0;
    for r in &results {
        let town = r["town"].as_str().unwrap_or("?");
        if r["ok"].as_bool() == Some(true) {
            println!(
                "{} ({town}): ok, {} received, {} sent",
                r["url"].as_str().unwrap_or(""),
                r["docs_in"],
                r["docs_out"]
            );
        } else {
            failed += 1;
            println!(
                "{} ({town}): FAILED: {}",
                r["url"].as_str().unwrap_or(""),
                r["error"].as_str().unwrap_or("")
            );
        }
    }
    if failed > 0 {
        anyhow::bail!("{failed} of {} peers failed", results.len());
    }
    Ok(())
}
