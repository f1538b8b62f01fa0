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

use crate::datadir::{DEFAULT_API_LISTEN, DEFAULT_PEER_LISTEN, DataDir, InitOptions};
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
        /// Town id to use if serve has to create the data directory.
        #[arg(long, default_value = "town")]
        town: String,
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

#[derive(Copy, Clone, Debug, ValueEnum)]
pub enum ExportFormat {
    Json,
    Markdown,
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
        Command::Serve { api_listen, town } => serve(data_dir, api_listen, town).await,
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

async fn serve(data_dir: DataDir, api_listen: Option<SocketAddr>, town: String) -> Result<()> {
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
    let local = listener.local_addr()?;
    println!("Yui node for town {} is running.", node.config.town);
    println!("API:       http://{local}/api/v1/  (status: http://{local}/api/v1/status)");
    println!("API token: {}", node.token_path.display());
    println!("Stop with Ctrl-C.");
    tracing::info!(town = %node.config.town, node_id = %node.node_id, api = %local, "serving");

    let shutdown = CancellationToken::new();
    let signal = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down: finishing requests and writes in flight");
        signal.cancel();
    });
    crate::node::run(Arc::new(node), listener, shutdown).await?;
    tracing::info!("stopped");
    Ok(())
}

async fn wait_for_signal() {
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
    let node = Node::open(data_dir, false)?;
    let status = node.status().await?;
    node.store.close();
    if json {
        println!("{}", serde_json::to_string_pretty(&status)?);
        return Ok(());
    }
    println!("town:        {} {}", status.town, status.name);
    println!("node id:     {}", status.node_id);
    println!("version:     {}", status.version);
    println!(
        "running:     {}",
        if let Some(api) = &status.api {
            format!("yes, API at {api}api/v1/")
        } else {
            "no (start with `yui serve`)".to_owned()
        }
    );
    println!("consortium:  {}", status.membership.hint);
    println!(
        "database:    {} ({} bytes)",
        status.storage.database, status.storage.bytes
    );
    println!("records:");
    for (name, c) in &status.collections {
        println!("  {name:<15} {:>8}  ({})", c.count, c.scope);
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
