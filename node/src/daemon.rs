//! The running node: the composition of every layer. [`serve`] binds the
//! local API and the web console to one listener, and on a joined node the
//! peer port and the outbound peer tasks, until shutdown; then it finishes
//! in-flight requests and queued writes before returning. [`app`] is the one
//! HTTP service both adapters share.
//!
//! `main` only parses arguments and sets up logging; tests run a node
//! in-process with [`Node::open`](crate::node::Node::open) and [`run`], which
//! takes an already-bound listener (tests bind `127.0.0.1:0`) and a
//! cancellation token for graceful shutdown.

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::error::Result;
use crate::http::{self, MAX_BODY_BYTES};
use crate::node::Node;

/// How often a serving node runs SQLite's quick_check again (it also runs
/// at start). A check reads the whole database on a reader connection:
/// about a second per few hundred megabytes, while serving goes on.
pub const INTEGRITY_CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_secs(6 * 3600);

/// The whole HTTP service of the API port: the JSON API and the web console
/// side by side, each request observed (counted, timed, logged), its `Host`
/// checked (421 unless loopback or a configured proxy host) and its body
/// limited.
pub fn app(node: Arc<Node>) -> Router {
    http::routes(&node)
        // The web console: its own session-cookie auth, outside the token layer.
        .merge(crate::console::routes())
        .fallback(crate::console::fallback)
        .method_not_allowed_fallback(http::method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn_with_state(
            node.clone(),
            http::check_host,
        ))
        .layer(middleware::from_fn_with_state(node.clone(), http::observe))
        .with_state(node)
}

/// How often the space on the data directory's disk is looked at.
const DISK_CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_secs(30);

/// Serves the local API on `listener` until `shutdown` is cancelled, then
/// finishes in-flight requests and queued writes before returning.
pub async fn run(
    node: Arc<Node>,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<()> {
    serve(node, listener, None, shutdown).await
}

/// Serves the local API, and on a joined node the peer port (when given a
/// listener) and outbound sync with every peer, until `shutdown`. A node
/// that joins while serving opens its peer port then.
pub async fn serve(
    node: Arc<Node>,
    api: TcpListener,
    peers: Option<TcpListener>,
    shutdown: CancellationToken,
) -> Result<()> {
    let _ = node.shutdown.set(shutdown.clone());
    if let Ok(addr) = api.local_addr() {
        node.serving_at(format!("http://{addr}/"));
    }
    let mut background = Vec::new();
    // The integrity check again, every INTEGRITY_CHECK_INTERVAL (it ran at start).
    let (checked, stop) = (node.clone(), shutdown.clone());
    background.push(tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(INTEGRITY_CHECK_INTERVAL) => {}
            }
            if let Err(e) = checked.store.check_integrity().await {
                tracing::error!(error = %e, "database integrity check could not run");
            }
        }
    }));
    // Space on the disk: a warning in the log when it runs low or writes
    // fail for lack of it, and when that passes (`status` shows it always).
    let (watched, stop) = (node.clone(), shutdown.clone());
    background.push(tokio::spawn(async move {
        let mut said: Vec<String> = Vec::new();
        loop {
            let (_, warnings) = watched.disk();
            let kinds: Vec<String> = warnings
                .iter()
                .map(|w| w.split(':').next().unwrap_or_default().to_owned())
                .collect();
            if kinds != said {
                for w in &warnings {
                    tracing::warn!("{w}");
                }
                if warnings.is_empty() {
                    tracing::info!("the disk that holds the data directory has room again");
                }
                said = kinds;
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(DISK_CHECK_INTERVAL) => {}
            }
        }
    }));
    // This node's changes made before it signed them, signed once in the
    // background (protocol.md 7.6); a restart resumes.
    let (signer, stop) = (node.clone(), shutdown.clone());
    background.push(tokio::spawn(async move {
        match signer.store.sign_own_history(stop).await {
            Ok(_) | Err(crate::error::Error::ShuttingDown) => {}
            Err(e) => {
                tracing::error!(error = %e, "could not sign this node's older changes; the next start tries again");
            }
        }
    }));
    if node.peering().is_some() {
        background.extend(crate::membership::start_federation(&node, peers, &shutdown).await?);
    } else if let Some(listener) = peers {
        // Served once the node joins (`crate::membership`).
        *node
            .peer_port_on_join
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) =
            crate::node::PeerPortOnJoin::Listener(listener);
    }
    let app = app(node.clone());
    // Bounded connections and timeouts (`http::listener`), not `axum::serve`.
    http::listener::serve(api, app, shutdown.clone()).await;
    shutdown.cancel();
    let late = std::mem::take(
        &mut *node
            .late_tasks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    for task in background.into_iter().chain(late) {
        let _ = task.await;
    }
    // Joining the writer thread blocks: keep it off the async workers.
    let store = node.store.clone();
    let _ = tokio::task::spawn_blocking(move || store.close()).await;
    Ok(())
}
