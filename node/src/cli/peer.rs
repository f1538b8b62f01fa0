//! `yui peer` (add, list, remove) and `yui sync`: the peers this node syncs
//! with, through the running node if there is one, otherwise straight on the
//! data directory.

use std::sync::Arc;

use anyhow::Result;
use clap::Subcommand;

use super::call_api::{call_api, running_api};
use super::cli_principal;
use crate::actions;
use crate::datadir::DataDir;
use crate::node::Node;

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

pub(super) async fn run(data_dir: DataDir, cmd: PeerCommand) -> Result<()> {
    if let Some(api) = running_api(&data_dir)? {
        return via_api(&api, cmd).await;
    }
    let node = Arc::new(Node::open(data_dir, false)?);
    let result = on_database(&node, cmd).await;
    node.store.close();
    result
}

/// A running node changes its peers and starts or stops syncing at once.
async fn via_api(api: &(String, String), cmd: PeerCommand) -> Result<()> {
    match cmd {
        PeerCommand::Add { url, node_id } => {
            let body = serde_json::json!({"url": url, "node_id": node_id}).to_string();
            call_api(
                api,
                reqwest::Method::POST,
                "/api/v1/peers",
                Some(body.into()),
                true,
            )
            .await?;
            println!("Added peer {url}; the running node is syncing with it.");
        }
        PeerCommand::Remove { peer } => {
            let path = format!("/api/v1/peers/{}", super::percent_encode(&peer));
            call_api(api, reqwest::Method::DELETE, &path, None, false).await?;
            println!("Removed peer {peer}.");
        }
        PeerCommand::List { json } => {
            let v = call_api(api, reqwest::Method::GET, "/api/v1/peers", None, false).await?;
            print_peers(&v["peers"], json)?;
        }
    }
    Ok(())
}

/// A stopped node: the change waits in the database for `yui serve`. The
/// same actions as the API's, audited as `cli`.
async fn on_database(node: &Arc<Node>, cmd: PeerCommand) -> Result<()> {
    match cmd {
        PeerCommand::Add { url, node_id } => {
            let url = actions::add_peer(node, &cli_principal(), &url, node_id).await?;
            println!("Added peer {url}. The node syncs with it when it runs (`yui serve`).");
        }
        PeerCommand::Remove { peer } => {
            let removed = actions::remove_peer(node, &cli_principal(), &peer).await?;
            if removed.is_empty() {
                anyhow::bail!("no peer has the URL or node id {peer:?}");
            }
            println!("Removed peer {}.", removed.join(", "));
        }
        PeerCommand::List { json } => {
            let peers = serde_json::to_value(node.status().await?.peers)?;
            print_peers(&peers, json)?;
        }
    }
    Ok(())
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

pub(super) async fn sync(data_dir: DataDir) -> Result<()> {
    let results = if let Some(api) = running_api(&data_dir)? {
        let v = call_api(&api, reqwest::Method::POST, "/api/v1/sync", None, false).await?;
        serde_json::from_value::<Vec<serde_json::Value>>(v["peers"].clone())?
    } else {
        let node = Arc::new(Node::open(data_dir, false)?);
        // Audited through the store's writer: before it is closed.
        let r = actions::sync_now(&node, &cli_principal(), None)
            .await
            .map_err(anyhow::Error::from)
            .and_then(|r| Ok(serde_json::from_value(serde_json::to_value(r)?)?));
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
