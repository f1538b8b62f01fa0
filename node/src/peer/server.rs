//! The peer port: a mutual-TLS accept loop serving the sync protocol.
//!
//! The accept loop owns TLS: it completes the handshake (bounded in time,
//! capped in number), reads the client's identity out of its certificate and
//! hands every request a typed [`PeerIdentity`]; handlers never touch rustls.
//! Revocation is checked after the handshake and again on every request, so
//! a revoked node loses even connections opened before the revocation.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use prost::Message;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use yui_protocol::sync::Limits;
use yui_protocol::wire::{self, MAX_MESSAGE_BYTES, PROTOCOL_VERSION, SyncRequest};

use super::codec;
use crate::node::Node;
use crate::pki::PeerIdentity;

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_CONNECTIONS: usize = 256;

/// Serves the peer port until `shutdown`.
pub async fn serve(node: Arc<Node>, listener: TcpListener, shutdown: CancellationToken) {
    let Some(peering) = node.peering.clone() else {
        return;
    };
    let config = match peering.trust.server_config() {
        Ok(c) => Arc::new(c),
        Err(e) => {
            tracing::error!(error = %e, "the peer port cannot start");
            return;
        }
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let app = router(node.clone(), shutdown.clone());
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (tcp, addr) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!(error = %e, "peer port: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            peering.refused(addr.to_string(), "too many connections".into());
            continue;
        };
        let (acceptor, app, node, shutdown) = (
            acceptor.clone(),
            app.clone(),
            node.clone(),
            shutdown.clone(),
        );
        tokio::spawn(async move {
            let _slot = slot;
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    peering_of(&node)
                        .refused(addr.to_string(), format!("TLS handshake failed: {e}"));
                    return;
                }
                Err(_) => {
                    peering_of(&node).refused(addr.to_string(), "TLS handshake timed out".into());
                    return;
                }
            };
            let identity = match tls.get_ref().1.peer_certificates().and_then(|c| c.first()) {
                Some(cert) => match crate::pki::identity(cert) {
                    Ok(id) => id,
                    Err(e) => {
                        peering_of(&node)
                            .refused(addr.to_string(), format!("unusable certificate: {e}"));
                        return;
                    }
                },
                None => {
                    peering_of(&node).refused(addr.to_string(), "no client certificate".into());
                    return;
                }
            };
            if peering_of(&node).trust.is_revoked(&identity.serial) {
                // Serve it anyway: every request is answered 403 "revoked",
                // which tells its administrator why, instead of a dropped
                // connection. The per-request check records the refusal.
                tracing::info!(peer = %identity.town, node_id = %identity.node_id, "a revoked node connected");
            }
            tracing::debug!(peer = %identity.town, node_id = %identity.node_id, %addr, "peer connected");
            let service = TowerToHyperService::new(app.layer(Extension(Arc::new(identity))));
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(tls), service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = shutdown.cancelled() => conn.as_mut().graceful_shutdown(),
            }
            let _ = TokioExecutor::new();
        });
    }
}

fn peering_of(node: &Node) -> &super::Peering {
    node.peering
        .as_deref()
        .expect("the peer port runs only on joined nodes")
}

#[derive(Clone)]
struct PeerState {
    node: Arc<Node>,
    shutdown: CancellationToken,
}

fn router(node: Arc<Node>, shutdown: CancellationToken) -> Router {
    let state = PeerState { node, shutdown };
    Router::new()
        .route("/yui/v1/hello", get(hello))
        .route("/yui/v1/sync", post(sync))
        .fallback(|| async { (StatusCode::NOT_FOUND, "no such peer endpoint") })
        .layer(DefaultBodyLimit::max(MAX_MESSAGE_BYTES))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            check_revocation,
        ))
        .with_state(state)
}

/// Every request, not just every connection: a node revoked while its
/// connection stays open is refused from its next request on.
async fn check_revocation(
    State(state): State<PeerState>,
    Extension(peer): Extension<Arc<PeerIdentity>>,
    req: Request,
    next: Next,
) -> Response {
    let peering = peering_of(&state.node);
    if peering.trust.is_revoked(&peer.serial) {
        peering.refused(
            format!("{} ({})", peer.town, peer.node_id),
            "certificate revoked (request on an open connection)".into(),
        );
        let mut resp =
            (StatusCode::FORBIDDEN, "this node's certificate is revoked").into_response();
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return resp;
    }
    next.run(req).await
}

async fn hello(
    State(state): State<PeerState>,
    Extension(peer): Extension<Arc<PeerIdentity>>,
) -> Response {
    let own = &peering_of(&state.node).trust.own;
    tracing::debug!(peer = %peer.town, "hello");
    axum::Json(serde_json::json!({
        "protocol_version": PROTOCOL_VERSION,
        "town": own.town,
        "node_id": own.node_id,
        "you": {"town": peer.town, "node_id": peer.node_id},
    }))
    .into_response()
}

fn refuse(status: StatusCode, message: String) -> Response {
    (status, message).into_response()
}

async fn sync(
    State(state): State<PeerState>,
    Extension(peer): Extension<Arc<PeerIdentity>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let node = &state.node;
    let peering = peering_of(node);
    let bytes_in = body.len() as u64;
    let raw = match codec::decode_body(&headers, &body) {
        Ok(raw) => raw,
        Err(e) => {
            peering.bad_message(&peer, &e);
            return refuse(StatusCode::BAD_REQUEST, e);
        }
    };
    let req = match SyncRequest::decode_checked(&raw) {
        Ok(r) => r,
        Err(e) => {
            peering.bad_message(&peer, &e.to_string());
            let status = match e {
                wire::WireError::Version(_) => StatusCode::UPGRADE_REQUIRED,
                _ => StatusCode::BAD_REQUEST,
            };
            return refuse(status, e.to_string());
        }
    };
    if let Some(der) = &req.revocations
        && let Err(e) = peering.install_revocations(&node.data_dir, der)
    {
        tracing::warn!(peer = %peer.town, error = %e, "a peer sent a revocation list that does not verify");
    }
    let pushed = req.push.len();
    let wait_ms = if yui_protocol::session::may_wait(&req, node.store.feed_epoch()) {
        req.wait_ms
    } else {
        0
    };
    let (pull, since, client_revocations) = (req.pull, req.since, req.revocation_number);
    let accepted = match node.store.sync_accept(peer.node_id.clone(), req).await {
        Ok(o) => o,
        Err(e) => {
            tracing::error!(peer = %peer.town, error = %e, "storing a peer's updates failed");
            return refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "this node could not store the updates".into(),
            );
        }
    };
    for r in &accepted.refused {
        tracing::warn!(peer = %peer.town, node_id = %peer.node_id, id = %r.id, code = %r.code, reason = %r.message, "refused a document from a peer");
    }
    let batch = if pull {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(u64::from(wait_ms));
        let mut seq = node.store.watch_seq();
        let mut cursor = since;
        let batch = loop {
            seq.borrow_and_update();
            let batch = match node
                .store
                .sync_prepare(peer.node_id.clone(), cursor, Limits::default())
                .await
            {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(peer = %peer.town, error = %e, "preparing updates failed");
                    return refuse(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "this node could not read its records".into(),
                    );
                }
            };
            cursor = batch.cursor;
            if !batch.docs.is_empty() || batch.more {
                break batch;
            }
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => break batch,
                _ = state.shutdown.cancelled() => break batch,
                changed = seq.changed() => if changed.is_err() { break batch },
            }
        };
        // The wait may have outlasted the client's certificate.
        if peering.trust.is_revoked(&peer.serial) {
            peering.refused(
                format!("{} ({})", peer.town, peer.node_id),
                "certificate revoked while its long poll waited".into(),
            );
            return refuse(
                StatusCode::FORBIDDEN,
                "this node's certificate is revoked".into(),
            );
        }
        match node.store.sync_delivered(peer.node_id.clone(), batch).await {
            Ok(b) => Some(b),
            Err(e) => {
                tracing::error!(peer = %peer.town, error = %e, "recording delivered heads failed");
                return refuse(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "this node could not record the exchange".into(),
                );
            }
        }
    } else {
        None
    };
    let mut resp = yui_protocol::session::server_response(node.store.feed_epoch(), accepted, batch);
    resp.revocation_number = peering.trust.revocation_number();
    if client_revocations < resp.revocation_number {
        resp.revocations = Some(peering.trust.revocations_der());
    }
    let docs_out = resp.docs.len() as u64;
    let encoded = resp.encode_to_vec();
    let (body, gzipped) = codec::encode_body(&headers, encoded);
    peering.served(&peer, bytes_in, body.len() as u64, pushed as u64, docs_out);
    let mut response = Response::new(Body::from(body));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(codec::CONTENT_TYPE),
    );
    if gzipped {
        response
            .headers_mut()
            .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    response
}
