//! The node's own state and administration over the API: `/status`,
//! `/sync`, `/peers`, `/revocations`, `/certificate`, `/users`, `/audit`
//! and `/audit/egress`. The actions (sync, peers, revocations, the
//! certificate and the key) are
//! `crate::actions`' use cases: they check their role and audit themselves.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{delete, get, post};
use serde::Deserialize;
use serde_json::json;

use super::extract::{AdminAccess, Caller, JsonBody, QueryParams, RawBody, ViewerAccess};
use super::{AppState, DEFAULT_AUDIT_PAGE, MAX_AUDIT_PAGE, json_response};
use crate::actions::{self, Action};
use crate::error::{Error, Result};

/// The node's own routes, nested under `/api/v1` behind the token layer.
pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/status", get(status))
        .route("/sync", post(sync_now))
        .route("/peers", get(list_peers).post(add_peer))
        .route("/peers/{key}", delete(remove_peer))
        .route("/revocations", post(import_revocations))
        .route("/certificate", post(install_certificate))
        .route("/certificate/new-key", post(new_key))
        .route("/users", get(list_users))
        .route("/audit", get(audit_log))
        .route("/audit/egress", get(egress_log))
}

async fn status(_: ViewerAccess, State(node): State<AppState>) -> Result<Response> {
    Ok(json_response(StatusCode::OK, &node.status().await?))
}

async fn sync_now(Caller(principal): Caller, State(node): State<AppState>) -> Result<Response> {
    let peers = actions::sync_now(&node, &principal, None).await?;
    Ok(json_response(StatusCode::OK, &json!({ "peers": peers })))
}

async fn list_peers(_: ViewerAccess, State(node): State<AppState>) -> Result<Response> {
    let peers = node.status().await?.peers;
    Ok(json_response(StatusCode::OK, &json!({ "peers": peers })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewPeer {
    url: String,
    #[serde(default)]
    node_id: Option<String>,
}

async fn add_peer(
    Caller(principal): Caller,
    State(node): State<AppState>,
    JsonBody(body): JsonBody<NewPeer>,
) -> Result<Response> {
    let url = actions::add_peer(&node, &principal, &body.url, body.node_id).await?;
    let peers = node.status().await?.peers;
    let peer = peers.into_iter().find(|p| p.url == url);
    let mut response = json_response(StatusCode::CREATED, &json!({ "peer": peer }));
    // The peer's key in `DELETE /api/v1/peers/{key}`.
    let key: String = form_urlencoded::byte_serialize(url.as_bytes()).collect();
    super::set_location(&mut response, &format!("/api/v1/peers/{key}"));
    Ok(response)
}

async fn remove_peer(
    Caller(principal): Caller,
    State(node): State<AppState>,
    Path(key): Path<String>,
) -> Result<StatusCode> {
    let removed = actions::remove_peer(&node, &principal, &key).await?;
    if removed.is_empty() {
        return Err(Error::NotFound(format!(
            "no peer has the node id or URL {key:?}"
        )));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Body: a revocation list in PEM, as `yui ca revoke` writes it.
async fn import_revocations(
    Caller(principal): Caller,
    State(node): State<AppState>,
    RawBody(body): RawBody,
) -> Result<Response> {
    Action::RevocationsImport.check(&principal)?;
    if node.peering().is_none() {
        return Err(actions::not_joined());
    }
    let text = std::str::from_utf8(&body).map_err(|_| {
        Error::bad_request(
            "invalid_revocations",
            "send the revocation list as PEM text",
        )
    })?;
    let der = crate::pki::parse_crl_pem(text)
        .map_err(|e| Error::bad_request("invalid_revocations", e.to_string()))?;
    let imported = actions::import_revocations(&node, &principal, &der).await?;
    Ok(json_response(
        StatusCode::OK,
        &json!({ "installed": imported.newer, "number": imported.number }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewCertificate {
    /// The node certificate (PEM), as `yui ca issue` wrote it.
    certificate: String,
    /// The consortium CA certificate(s) (PEM): `ca.cert.pem`, or during a
    /// CA rollover `ca-bundle.pem`.
    ca_certificate: String,
    /// At the end of a CA rollover: the revocation list the new CA signed
    /// (PEM).
    #[serde(default)]
    revocations: Option<String>,
}

/// Installs a node certificate on the running node: it is in use at once.
async fn install_certificate(
    Caller(principal): Caller,
    State(node): State<AppState>,
    JsonBody(body): JsonBody<NewCertificate>,
) -> Result<Response> {
    let done = actions::install_certificate(
        &node,
        &principal,
        body.certificate.as_bytes(),
        body.ca_certificate.as_bytes(),
        body.revocations.as_deref().map(str::as_bytes),
    )
    .await?;
    Ok(json_response(StatusCode::OK, &done))
}

/// A new key and its certificate request (`yui cert rotate-key`).
async fn new_key(Caller(principal): Caller, State(node): State<AppState>) -> Result<Response> {
    let made = actions::rotate_key(&node, &principal).await?;
    Ok(json_response(StatusCode::CREATED, &made))
}

async fn list_users(_: AdminAccess, State(node): State<AppState>) -> Result<Response> {
    let users = node.accounts.users().await?;
    Ok(json_response(StatusCode::OK, &json!({ "users": users })))
}

/// The number of audit or ledger entries asked for (default 100).
fn audit_page(limit: Option<usize>) -> Result<usize> {
    let limit = limit.unwrap_or(DEFAULT_AUDIT_PAGE);
    if !(1..=MAX_AUDIT_PAGE).contains(&limit) {
        return Err(Error::bad_request(
            "invalid_query",
            format!("limit must be a whole number from 1 to {MAX_AUDIT_PAGE}"),
        ));
    }
    Ok(limit)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditParams {
    limit: Option<usize>,
}

async fn audit_log(
    _: AdminAccess,
    State(node): State<AppState>,
    QueryParams(params): QueryParams<AuditParams>,
) -> Result<Response> {
    let limit = audit_page(params.limit)?;
    let entries = node.accounts.audit_log(limit).await?;
    Ok(json_response(
        StatusCode::OK,
        &json!({ "entries": entries }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EgressParams {
    peer: Option<String>,
    since: Option<String>,
    limit: Option<usize>,
}

/// `GET /api/v1/audit/egress`: every document this node sent to a peer,
/// newest first (admin: it shows what left the town).
async fn egress_log(
    _: AdminAccess,
    State(node): State<AppState>,
    QueryParams(params): QueryParams<EgressParams>,
) -> Result<Response> {
    let limit = audit_page(params.limit)?;
    if let Some(since) = &params.since
        && !crate::store::Store::is_egress_since(since)
    {
        return Err(Error::bad_request(
            "invalid_query",
            "since must be a date or time like 2026-11-21 or 2026-11-21T09:00:00Z",
        ));
    }
    let entries = node.store.egress(params.peer, params.since, limit).await?;
    Ok(json_response(
        StatusCode::OK,
        &json!({ "entries": entries }),
    ))
}
