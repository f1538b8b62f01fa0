//! The peer port: a mutual-TLS accept loop serving the sync protocol.
//!
//! The accept loop owns TLS: it completes the handshake (bounded in time,
//! capped in number), reads the client's identity out of its certificate and
//! hands every request a typed [`PeerIdentity`]; handlers never touch rustls.
//! Revocation is checked after the handshake and again on every request, so
//! a revoked node loses even connections opened before the revocation.
//!
//! Connection budgets keep one party from holding the port: unfinished
//! handshakes are bounded per source host and in all (a new arrival evicts
//! the oldest of its own host, or of the busiest one, so half-sent
//! ClientHellos from one host cannot keep other hosts' members out), at most [`MAX_PER_MEMBER`] open
//! connections per member node and [`MAX_CONNECTIONS`] in all, and request
//! bodies that must keep up a minimum rate ([`MIN_BODY_RATE`]).

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::LazyConfigAcceptor;
use tokio_util::sync::CancellationToken;
use yui_protocol::sync::{Batch, Limits};
use yui_protocol::wire::{self, MAX_MESSAGE_BYTES, PROTOCOL_VERSION, SyncRequest};

use super::Federation;
use super::codec;
use crate::pki::PeerIdentity;

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Established connections, all members together.
pub const MAX_CONNECTIONS: usize = 256;
/// Established connections of one member node. An honest node uses two or
/// three (its long poll, its pushes, a manual round).
pub const MAX_PER_MEMBER: usize = 16;
/// Connections waiting for a complete ClientHello, and TLS handshakes in
/// progress after it: each stage holds this many from all hosts together,
/// and [`MAX_HANDSHAKES_PER_HOST`] from one source address. A new arrival
/// over either budget evicts the oldest of its own host, or of the busiest.
pub const MAX_HANDSHAKES: usize = 128;
pub const MAX_HANDSHAKES_PER_HOST: usize = 16;
/// A request body may take [`BODY_GRACE`] plus one second per
/// `MIN_BODY_RATE` bytes received; slower senders are cut off.
pub const MIN_BODY_RATE: usize = 16 * 1024;
pub const BODY_GRACE: Duration = Duration::from_secs(10);

/// Serves the peer port until `shutdown`.
pub async fn serve(fed: Federation, listener: TcpListener, shutdown: CancellationToken) {
    let Some(peering) = fed.peering.clone() else {
        return;
    };
    let app = router(fed.clone(), shutdown.clone());
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let hellos = Arc::new(Handshakes::default());
    let handshakes = Arc::new(Handshakes::default());
    let members = Arc::new(MemberConnections::default());
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
        let hello = hellos.begin(addr.ip());
        let config = peering.server_config();
        // Which of this node's keys the handshake presents (a rotation may
        // replace it while the connection lives).
        let presented = Presented(peering.trust().signer);
        let mut trust_changed = peering.watch_trust();
        let (handshakes, app, fed, shutdown, slots, members) = (
            handshakes.clone(),
            app.clone(),
            fed.clone(),
            shutdown.clone(),
            slots.clone(),
            members.clone(),
        );
        tokio::spawn(async move {
            let from = addr.to_string();
            let peering = peering_of(&fed);
            let deadline = tokio::time::Instant::now() + HANDSHAKE_TIMEOUT;
            let timed_out = || peering.refused(from.clone(), "TLS handshake timed out".into());
            let failed = |e: std::io::Error| {
                peering.refused(
                    from.clone(),
                    format!(
                        "TLS handshake failed: {}",
                        super::tls::describe_handshake_error(&e)
                    ),
                );
            };
            // Two stages, each with its own budget: waiting for a complete
            // ClientHello (all an anonymous sender can hold cheaply), then
            // the rest of the handshake, which costs the sender a key
            // exchange per attempt.
            let waiting = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), tcp);
            let start = tokio::select! {
                done = tokio::time::timeout_at(deadline, waiting) => match done {
                    Ok(Ok(start)) => start,
                    Ok(Err(e)) => return failed(e),
                    Err(_) => return timed_out(),
                },
                _ = hello.evicted.cancelled() => {
                    return peering.refused(from.clone(), "ClientHello not finished, dropped to make room for newer connections".into());
                }
            };
            drop(hello);
            let handshake = handshakes.begin(addr.ip());
            let tls = tokio::select! {
                done = tokio::time::timeout_at(deadline, start.into_stream(config)) => match done {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => return failed(e),
                    Err(_) => return timed_out(),
                },
                _ = handshake.evicted.cancelled() => {
                    return peering.refused(from.clone(), "TLS handshake not finished, dropped to make room for newer connections".into());
                }
            };
            drop(handshake);
            let identity = match tls.get_ref().1.peer_certificates().and_then(|c| c.first()) {
                Some(cert) => match crate::pki::identity(cert) {
                    Ok(id) => id,
                    Err(e) => {
                        peering_of(&fed)
                            .refused(addr.to_string(), format!("unusable certificate: {e}"));
                        return;
                    }
                },
                None => {
                    peering_of(&fed).refused(addr.to_string(), "no client certificate".into());
                    return;
                }
            };
            if peering_of(&fed).trust().is_revoked(&identity.serial) {
                // Serve it anyway: every request is answered 403 "revoked",
                // which tells its administrator why, instead of a dropped
                // connection. The per-request check records the refusal.
                tracing::info!(peer = %identity.town, node_id = %identity.node_id, "a revoked node connected");
            }
            tracing::debug!(peer = %identity.town, node_id = %identity.node_id, %addr, "peer connected");
            let member = format!("{} ({})", identity.town, identity.node_id);
            // Over a budget, the connection is still served — with a 429 or
            // 503 that says why — so the other side's administrator learns
            // the reason instead of seeing a dropped connection.
            let admitted = match members.enter(&identity.node_id) {
                None => Err((
                    StatusCode::TOO_MANY_REQUESTS,
                    format!(
                        "too many connections from this member: at most {MAX_PER_MEMBER} at once"
                    ),
                )),
                Some(entry) => match slots.try_acquire_owned() {
                    Ok(slot) => Ok((entry, slot)),
                    Err(_) => Err((
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!("too many connections: at most {MAX_CONNECTIONS} at once"),
                    )),
                },
            };
            let service = match &admitted {
                Ok(_) => TowerToHyperService::new(
                    app.layer(Extension(Arc::new(identity)))
                        .layer(Extension(presented)),
                ),
                Err((status, reason)) => {
                    peering_of(&fed).refused(member, reason.clone());
                    TowerToHyperService::new(over_budget(*status, reason.clone()))
                }
            };
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(tls), service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = shutdown.cancelled() => conn.as_mut().graceful_shutdown(),
                // A new certificate or key: the request in flight is
                // answered, then the peer connects again and sees it.
                _ = trust_changed.changed() => {
                    conn.as_mut().graceful_shutdown();
                    tokio::select! {
                        _ = conn.as_mut() => {}
                        _ = shutdown.cancelled() => {}
                    }
                }
            }
            drop(admitted);
        });
    }
}

/// Handshakes in progress per host, oldest first.
#[derive(Default)]
struct Handshakes {
    pending: std::sync::Mutex<PendingHandshakes>,
}

#[derive(Default)]
struct PendingHandshakes {
    next: u64,
    total: usize,
    by_host: HashMap<IpAddr, BTreeMap<u64, CancellationToken>>,
}

/// One handshake in progress; leaves the list when dropped.
struct Handshake {
    id: u64,
    host: IpAddr,
    evicted: CancellationToken,
    list: Arc<Handshakes>,
}

impl Handshakes {
    /// Registers a new handshake from `host`. If that host already has
    /// [`MAX_HANDSHAKES_PER_HOST`] in progress, its oldest is evicted; if all
    /// hosts together have [`MAX_HANDSHAKES`], the busiest host's oldest is.
    /// (The evicted connection's task records the refusal.)
    fn begin(self: &Arc<Self>, host: IpAddr) -> Handshake {
        let mut guard = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let pending = &mut *guard;
        let own = pending.by_host.get(&host).map_or(0, BTreeMap::len);
        let make_room = if own >= MAX_HANDSHAKES_PER_HOST {
            Some(host)
        } else if pending.total >= MAX_HANDSHAKES {
            pending
                .by_host
                .iter()
                .max_by_key(|(_, list)| list.len())
                .map(|(h, _)| *h)
        } else {
            None
        };
        if let Some(busiest) = make_room
            && let Some(list) = pending.by_host.get_mut(&busiest)
            && let Some((_, oldest)) = list.pop_first()
        {
            oldest.cancel();
            pending.total -= 1;
            if list.is_empty() {
                pending.by_host.remove(&busiest);
            }
        }
        let id = pending.next;
        pending.next += 1;
        let token = CancellationToken::new();
        pending
            .by_host
            .entry(host)
            .or_default()
            .insert(id, token.clone());
        pending.total += 1;
        Handshake {
            id,
            host,
            evicted: token,
            list: self.clone(),
        }
    }
}

impl Drop for Handshake {
    fn drop(&mut self) {
        let mut guard = self.list.pending.lock().unwrap_or_else(|e| e.into_inner());
        let pending = &mut *guard;
        if let Some(list) = pending.by_host.get_mut(&self.host)
            && list.remove(&self.id).is_some()
        {
            pending.total -= 1;
            if list.is_empty() {
                pending.by_host.remove(&self.host);
            }
        }
    }
}

/// Open connections per member node id.
#[derive(Default)]
struct MemberConnections {
    open: std::sync::Mutex<HashMap<String, usize>>,
}

/// One member connection counted; uncounted when dropped.
struct MemberEntry {
    node_id: String,
    list: Arc<MemberConnections>,
}

impl MemberConnections {
    fn enter(self: &Arc<Self>, node_id: &str) -> Option<MemberEntry> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(node_id.to_owned()).or_default();
        if *n >= MAX_PER_MEMBER {
            return None;
        }
        *n += 1;
        Some(MemberEntry {
            node_id: node_id.to_owned(),
            list: self.clone(),
        })
    }
}

impl Drop for MemberEntry {
    fn drop(&mut self) {
        let mut open = self.list.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.node_id) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.node_id);
            }
        }
    }
}

/// The service for a connection over budget: every request is answered
/// with `status` and the reason, and the connection is closed.
fn over_budget(status: StatusCode, reason: String) -> Router {
    Router::new().fallback(move || async move {
        let mut resp = (status, reason).into_response();
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        resp
    })
}

fn peering_of(fed: &Federation) -> &super::Peering {
    fed.peering
        .as_deref()
        .expect("the peer port runs only on joined nodes")
}

#[derive(Clone)]
struct PeerState {
    fed: Federation,
    shutdown: CancellationToken,
}

fn router(fed: Federation, shutdown: CancellationToken) -> Router {
    let state = PeerState { fed, shutdown };
    Router::new()
        .route("/yui/v1/hello", get(hello))
        .route("/yui/v1/sync", post(sync))
        .route("/yui/v1/attachments", get(wanted_files))
        .route(
            "/yui/v1/attachments/{sha256}",
            get(attachment).put(pushed_file),
        )
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
    let peering = peering_of(&state.fed);
    if peering.trust().is_revoked(&peer.serial) {
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

/// `GET /yui/v1/attachments/{sha256}` (protocol.md 3.3).
async fn attachment(
    State(state): State<PeerState>,
    Extension(peer): Extension<Arc<PeerIdentity>>,
    axum::extract::Path(sha): axum::extract::Path<String>,
    headers: HeaderMap,
) -> Response {
    super::files::serve_file(&state.fed, &peer, sha, &headers).await
}

/// `GET /yui/v1/attachments` (protocol.md 3.3): the files this node lacks.
async fn wanted_files(
    State(state): State<PeerState>,
    Extension(peer): Extension<Arc<PeerIdentity>>,
) -> Response {
    super::files::list_wanted(&state.fed, &peer).await
}

/// `PUT /yui/v1/attachments/{sha256}` (protocol.md 3.3): a file pushed by
/// a peer that dials this node. The body is read as a stream and bounded
/// by the size the record names, not by the sync message limit.
async fn pushed_file(
    State(state): State<PeerState>,
    Extension(peer): Extension<Arc<PeerIdentity>>,
    axum::extract::Path(sha): axum::extract::Path<String>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    super::files::receive_file(&state.fed, &peer, sha, &headers, body, &state.shutdown).await
}

async fn hello(
    State(state): State<PeerState>,
    Extension(peer): Extension<Arc<PeerIdentity>>,
) -> Response {
    let trust = peering_of(&state.fed).trust();
    let own = &trust.own;
    tracing::debug!(peer = %peer.town, "hello");
    axum::Json(serde_json::json!({
        "protocol_version": PROTOCOL_VERSION,
        "town": own.town,
        "node_id": own.node_id,
        "you": {"town": peer.town, "node_id": peer.node_id},
    }))
    .into_response()
}

/// Reads a request body of at most [`MAX_MESSAGE_BYTES`] that keeps up
/// [`MIN_BODY_RATE`] after [`BODY_GRACE`] (a slow-loris sender would
/// otherwise hold its connection for as long as it likes).
async fn read_body(body: Body, declared: Option<u64>) -> Result<Bytes, (StatusCode, String)> {
    use http_body_util::BodyExt;
    let too_large = || {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("message larger than {MAX_MESSAGE_BYTES} bytes"),
        )
    };
    if declared.is_some_and(|n| n > MAX_MESSAGE_BYTES as u64) {
        return Err(too_large());
    }
    let start = tokio::time::Instant::now();
    let mut body = body;
    // Not the declared length: a sender may declare 32 MiB and send a byte.
    let mut received = Vec::with_capacity(declared.unwrap_or(0).min(1 << 20) as usize);
    loop {
        let allowed =
            BODY_GRACE + Duration::from_secs_f64(received.len() as f64 / MIN_BODY_RATE as f64);
        let frame = match tokio::time::timeout_at(start + allowed, body.frame()).await {
            Err(_) => {
                return Err((
                    StatusCode::REQUEST_TIMEOUT,
                    format!(
                        "request body too slow: {} bytes in {:.0} s (a body may take {} s plus 1 s per {} KiB)",
                        received.len(),
                        start.elapsed().as_secs_f64(),
                        BODY_GRACE.as_secs(),
                        MIN_BODY_RATE / 1024
                    ),
                ));
            }
            Ok(None) => return Ok(Bytes::from(received)),
            Ok(Some(Err(e))) => {
                return Err((
                    StatusCode::BAD_REQUEST,
                    format!("reading the request body failed: {e}"),
                ));
            }
            Ok(Some(Ok(frame))) => frame,
        };
        if let Ok(data) = frame.into_data() {
            if received.len() + data.len() > MAX_MESSAGE_BYTES {
                return Err(too_large());
            }
            received.extend_from_slice(&data);
        }
    }
}

fn refuse(status: StatusCode, message: String) -> Response {
    (status, message).into_response()
}

/// The signer id of the certificate this node presented in a connection's
/// handshake.
#[derive(Clone, Copy)]
struct Presented(yui_protocol::provenance::SignerId);

/// `POST /yui/v1/sync` from a member whose certificate the handshake checked.
async fn sync(
    State(state): State<PeerState>,
    Extension(peer): Extension<Arc<PeerIdentity>>,
    Extension(presented): Extension<Presented>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match exchange(&state, &peer, presented, &headers, body).await {
        Ok(response) | Err(response) => response,
    }
}

/// One exchange as the server, in the order of `docs/protocol.md` §4:
/// read the request, accept the push, wait for news when pulling, deliver,
/// answer. Each step's refusal is the answer.
async fn exchange(
    state: &PeerState,
    peer: &PeerIdentity,
    presented: Presented,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, Response> {
    let fed = &state.fed;
    let peering = peering_of(fed);
    let (req, bytes_in) = read_request(peering, peer, headers, body).await?;
    // Before the push is checked: the certificates its signatures need.
    peering
        .learn_certificates(
            &fed.store,
            Some(&peer.certificate),
            &req.extensions,
            &peer.town,
        )
        .await;
    if let Some(der) = &req.revocations
        && let Err(e) = peering.install_revocations(&fed.store, &fed.data_dir, der)
    {
        tracing::warn!(peer = %peer.town, error = %e, "a peer sent a revocation list that does not verify");
    }
    let pushed = req.push.len();
    let pulled_ahead = req.confirmed.is_some_and(|c| c < req.since);
    let wait_ms = if yui_protocol::session::may_wait(&req, fed.store.feed_epoch()) {
        req.wait_ms
    } else {
        0
    };
    let (pull, since, client_revocations) = (req.pull, req.since, req.revocation_number);
    let accepted = fed
        .store
        .sync_accept(peer.node_id.clone(), req)
        .await
        .map_err(|e| {
            tracing::error!(peer = %peer.town, error = %e, "storing a peer's updates failed");
            refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "this node could not store the updates".into(),
            )
        })?;
    for r in &accepted.refused {
        tracing::warn!(peer = %peer.town, node_id = %peer.node_id, id = %r.id, code = %r.code, reason = %r.message, "refused a document from a peer");
    }
    peering.refused_documents(peer, accepted.refused.len() as u64);
    if !accepted.signed.is_empty() {
        tracing::info!(peer = %peer.town, node_id = %peer.node_id, records = accepted.signed.len(), "took signatures of changes held here without one");
    }
    let batch = if pull {
        let batch = wait_for_news(state, peer, since, wait_ms).await?;
        Some(deliver(fed, peering, peer, batch).await?)
    } else {
        None
    };
    let mut resp = yui_protocol::session::server_response(fed.store.feed_epoch(), accepted, batch);
    resp.revocation_number = peering.trust().revocation_number();
    if client_revocations < resp.revocation_number {
        resp.revocations = Some(peering.trust().revocations_der());
    }
    // The peer took this node's certificate from the handshake; one that
    // predates a new key does not vouch for what the new key signed.
    let own_too = presented.0 != peering.trust().signer;
    if let Some(ext) = peering
        .certificates_for(&fed.store, &resp.docs, own_too)
        .await
    {
        resp.extensions.push(ext);
    }
    let docs_out = resp.docs.len() as u64;
    let encoded = resp.to_wire();
    let (body, gzipped) = codec::encode_body(headers, encoded);
    peering.served(
        peer,
        bytes_in,
        body.len() as u64,
        pushed as u64,
        docs_out,
        pulled_ahead,
    );
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
    Ok(response)
}

/// The request and its size on the wire: the body read within its time
/// limit, inflated and decoded. A malformed one counts against the peer.
async fn read_request(
    peering: &super::Peering,
    peer: &PeerIdentity,
    headers: &HeaderMap,
    body: Body,
) -> Result<(SyncRequest, u64), Response> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let body = match read_body(body, declared).await {
        Ok(b) => b,
        Err((status, e)) => {
            peering.bad_message(peer, &e);
            let mut resp = refuse(status, e);
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            return Err(resp);
        }
    };
    let raw = codec::decode_body(headers, &body).map_err(|e| {
        peering.bad_message(peer, &e);
        refuse(StatusCode::BAD_REQUEST, e)
    })?;
    let req = SyncRequest::decode_checked(&raw).map_err(|e| {
        peering.bad_message(peer, &e.to_string());
        let status = match e {
            wire::WireError::Version(_) => StatusCode::UPGRADE_REQUIRED,
            _ => StatusCode::BAD_REQUEST,
        };
        refuse(status, e.to_string())
    })?;
    Ok((req, body.len() as u64))
}

/// What the peer lacks after `since`; when that is nothing, waits up to
/// `wait_ms` for a commit (the long poll), or until shutdown.
async fn wait_for_news(
    state: &PeerState,
    peer: &PeerIdentity,
    since: u64,
    wait_ms: u32,
) -> Result<Batch, Response> {
    let store = &state.fed.store;
    let deadline = tokio::time::Instant::now() + Duration::from_millis(u64::from(wait_ms));
    let mut seq = store.watch_seq();
    let mut cursor = since;
    loop {
        seq.borrow_and_update();
        let batch = store
            .sync_prepare(peer.node_id.clone(), cursor, Limits::default())
            .await
            .map_err(|e| {
                tracing::error!(peer = %peer.town, error = %e, "preparing updates failed");
                refuse(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "this node could not read its records".into(),
                )
            })?;
        cursor = batch.cursor;
        if !batch.docs.is_empty() || batch.more {
            return Ok(batch);
        }
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => return Ok(batch),
            _ = state.shutdown.cancelled() => return Ok(batch),
            changed = seq.changed() => if changed.is_err() { return Ok(batch) },
        }
    }
}

/// Hands `batch` over: stages the heads it gives the peer and writes the
/// egress ledger, unless the peer's certificate was revoked while it waited.
async fn deliver(
    fed: &Federation,
    peering: &super::Peering,
    peer: &PeerIdentity,
    batch: Batch,
) -> Result<Batch, Response> {
    if peering.trust().is_revoked(&peer.serial) {
        peering.refused(
            format!("{} ({})", peer.town, peer.node_id),
            "certificate revoked while its long poll waited".into(),
        );
        return Err(refuse(
            StatusCode::FORBIDDEN,
            "this node's certificate is revoked".into(),
        ));
    }
    fed.store
        .sync_delivered(peer.node_id.clone(), peer.town.clone(), batch)
        .await
        .map_err(|e| {
            tracing::error!(peer = %peer.town, error = %e, "recording delivered heads failed");
            refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "this node could not record the exchange".into(),
            )
        })
}
