//! The `yui` command line (SPEC §8): the arguments (`Cli`) and the dispatch
//! to each command group's file, which parses nothing and owns its output.
//!
//! Output for people goes to stdout; logs go to stderr through `tracing`.
//! Every failure ends with exit code 1 and one line saying what went wrong.
#![allow(clippy::print_stdout)]

mod attach;
mod audit;
mod backup;
mod ca;
mod call_api;
mod cert;
mod export;
mod import;
mod peer;
mod revocations;
mod serve;
mod status;
mod user;

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand, ValueEnum};

pub use self::audit::AuditCommand;
pub use self::ca::CaCommand;
pub use self::cert::CertCommand;
pub use self::peer::PeerCommand;
pub use self::revocations::RevocationsCommand;
pub use self::serve::wait_for_signal;
pub use self::user::UserCommand;
use crate::accounts::{CLI_USER, Principal, Role};
use crate::datadir::{DEFAULT_API_LISTEN, DEFAULT_PEER_LISTEN, DataDir, InitOptions};
pub use crate::export::ExportFormat;

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
    /// records and syncs now; an admin also publishes the KPI report and
    /// manages peers, users and revocations (docs/operations.md 4.2).
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
    /// Import a CSV file into a collection, as Excel saves it (UTF-8 or
    /// Shift_JIS). Columns are named by the fields' Japanese or English
    /// labels; a row with an id updates that record, a row without one adds
    /// a record. Every row is checked first: if any has a problem, each
    /// problem is listed with its row and column and nothing is written.
    /// Importing the same file again changes nothing. Works whether or not
    /// the node is running.
    Import {
        /// The collection: knowledge, failure_cases, pilot_results,
        /// kpi_reports, workers, trainings, mentoring, customers, orders,
        /// pr_items.
        collection: String,
        /// The CSV file.
        file: PathBuf,
        /// Check the file and say what it would do, writing nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Attach a file (PDF, image, Office document, text, CSV) to a record.
    /// A file of a shared record reaches the other towns with it. Works
    /// whether or not the node is running.
    Attach {
        /// The record's collection.
        collection: String,
        /// The record's id.
        id: String,
        /// The file.
        file: PathBuf,
        /// Its type, when the extension does not say (e.g. application/pdf).
        #[arg(long = "type")]
        content_type: Option<String>,
    },
    /// Export every live record to DIR, one JSON or CSV file per collection
    /// or one Markdown file per record.
    Export {
        /// json: one file per collection; markdown: one file per record and
        /// an index; csv: one file per collection, as Excel opens it (and
        /// `yui import` reads back).
        #[arg(long, value_enum, default_value = "json")]
        format: ExportFormat,
        /// Also export deleted records.
        #[arg(long)]
        include_deleted: bool,
        /// Target directory (created if missing; files in it are overwritten).
        dir: PathBuf,
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
        } => serve::init(
            &data_dir,
            InitOptions {
                town,
                name,
                api_listen,
                peer_listen,
            },
        ),
        Command::Serve {
            api_listen,
            peer_listen,
            no_peer_port,
            town,
        } => serve::serve(data_dir, api_listen, peer_listen, no_peer_port, town).await,
        Command::Ca(cmd) => ca::run(cmd),
        Command::Cert(CertCommand::Install {
            cert,
            ca_cert,
            revocations,
        }) => cert::install(data_dir, &cert, &ca_cert, revocations.as_deref()).await,
        Command::Cert(CertCommand::RotateKey) => cert::rotate_key(data_dir).await,
        Command::Revocations(RevocationsCommand::Import { file }) => {
            revocations::import(data_dir, &file).await
        }
        Command::Peer(cmd) => peer::run(data_dir, cmd).await,
        Command::User(cmd) => user::run(&data_dir, cmd).await,
        Command::Audit(cmd) => audit::run(data_dir, cmd).await,
        Command::Sync => peer::sync(data_dir).await,
        Command::Demo { dir } => crate::demo::run(dir, wait_for_signal()).await,
        Command::Status { json } => status::run(data_dir, json).await,
        Command::Backup { file } => backup::backup(&data_dir, &file),
        Command::Restore { file } => backup::restore(data_dir, &file),
        Command::Import {
            collection,
            file,
            dry_run,
        } => import::run(data_dir, &collection, &file, dry_run).await,
        Command::Export {
            format,
            include_deleted,
            dir,
        } => export::run(data_dir, format, include_deleted, &dir).await,
        Command::Attach {
            collection,
            id,
            file,
            content_type,
        } => attach::run(data_dir, &collection, &id, &file, content_type.as_deref()).await,
    }
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

/// Percent-encodes a path segment or query value of an API URL (RFC 3986
/// unreserved characters stay).
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
