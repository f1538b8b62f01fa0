//! `yui audit`: reads the local audit log and the egress ledger (what this
//! node sent to which peer). Both stay on this node.

use anyhow::Result;
use clap::Subcommand;

use crate::accounts::Accounts;
use crate::datadir::DataDir;
use crate::node::Node;

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

pub(super) async fn run(data_dir: DataDir, cmd: AuditCommand) -> Result<()> {
    match cmd {
        AuditCommand::Log { limit, json } => log(&data_dir, limit, json).await,
        AuditCommand::Egress {
            peer,
            since,
            limit,
            json,
        } => egress(data_dir, peer, since, limit, json).await,
    }
}

/// The audit log lives with the accounts: read it on their own connection,
/// as `yui user` does, so a running node need not be asked.
async fn log(data_dir: &DataDir, limit: usize, json: bool) -> Result<()> {
    data_dir.open()?;
    let accounts = Accounts::open(data_dir)?;
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

async fn egress(
    data_dir: DataDir,
    peer: Option<String>,
    since: Option<String>,
    limit: usize,
    json: bool,
) -> Result<()> {
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
