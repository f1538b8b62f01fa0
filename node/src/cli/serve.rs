//! `yui init` and `yui serve`: creating a town's data directory and running
//! the node until a signal stops it.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use tokio_util::sync::CancellationToken;

use crate::datadir::{DEFAULT_API_LISTEN, DEFAULT_PEER_LISTEN, DataDir, InitOptions};
use crate::node::Node;

/// `yui init`: a new data directory; prints where things are and what next.
pub(super) fn init(data_dir: &DataDir, options: InitOptions) -> Result<()> {
    let node_id = data_dir.init(&options)?;
    println!(
        "Initialised {} for town {}.",
        data_dir.path.display(),
        options.town
    );
    println!("node id:   {node_id}");
    if !options.api_listen.ip().is_loopback() {
        println!(
            "Note: `yui serve` refuses api_listen {} until {} says why with allow_plain_http_api = \"REASON\" (docs/operations.md 5.1).",
            options.api_listen,
            data_dir.config_path().display()
        );
    }
    println!("API token: {}", data_dir.token_path().display());
    println!(
        "To join the consortium, send {} to the secretariat.",
        data_dir.csr_path().display()
    );
    Ok(())
}

pub(super) async fn serve(
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
    // Before binding: a refused address is never listened on.
    if let Some(reason) = node
        .config
        .check_api_listen(addr, &node.data_dir.config_path())?
    {
        tracing::warn!(%addr, %reason, "serving the plain-HTTP API and console beyond loopback (allow_plain_http_api)");
    }
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("listening on {addr}"))?;
    let peer_addr = peer_listen.unwrap_or(node.config.peer_listen);
    let peer_listener = if node.peering().is_some() && !no_peer_port {
        Some(
            tokio::net::TcpListener::bind(peer_addr)
                .await
                .with_context(|| format!("listening for peers on {peer_addr}"))?,
        )
    } else {
        if !no_peer_port {
            // Opened when a certificate is installed on the running node.
            *node
                .peer_port_on_join
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) =
                crate::node::PeerPortOnJoin::Bind(peer_addr);
        }
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
    match (&peer_listener, node.peering().is_some()) {
        (Some(l), _) => println!("Peers:     https://{}/ (mutual TLS)", l.local_addr()?),
        (None, true) => println!("Peers:     dialling out only (no peer port)"),
        (None, false) => {
            println!(
                "Peers:     none (not a consortium member yet; see `yui status`; `yui cert install` opens the peer port)"
            )
        }
    }
    println!("Stop with Ctrl-C.");
    tracing::info!(town = %node.config.town, node_id = %node.node_id(), api = %local, "serving");

    let shutdown = CancellationToken::new();
    let signal = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down: finishing requests and writes in flight");
        signal.cancel();
    });
    crate::daemon::serve(Arc::new(node), listener, peer_listener, shutdown).await?;
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
