//! The local HTTP API (SPEC §8): records, search, history, status, health,
//! metrics and the OpenAPI document; the web console's routes are merged in
//! beside it.
//!
//! [`router`] builds the whole service, so tests can drive it over a real
//! socket or with `oneshot`. Every `/api/` route sits behind [`authenticate`],
//! which turns the bearer token (the node's own, or a user's) into a
//! [`Principal`]; each handler then states the role it needs by taking a
//! [`ViewerAccess`], [`EditorAccess`] or [`AdminAccess`]. Every change made
//! through the API is written to the local audit log with the principal's
//! name. Every failure, including malformed JSON, oversize bodies and unknown
//! routes, answers in the §8 error shape.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, FromRequest, MatchedPath, Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};
use yui_protocol::schema::FieldKind;
use yui_protocol::validate::{validate_create, validate_patch};
use yui_protocol::{Collection, RecordId};

use crate::accounts::{Principal, Role};
use crate::error::{Error, Result};
use crate::node::Node;

/// Largest request body accepted, in bytes. Records are limited to
/// `MAX_RECORD_BYTES` (128 KiB) of fields; the rest is headroom for JSON
/// escapes. Larger bodies are refused with 413 before they are buffered.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
pub const DEFAULT_PAGE: usize = 50;
pub const MAX_PAGE: usize = 500;
/// Audit entries `GET /api/v1/audit` returns by default, and at most.
pub const DEFAULT_AUDIT_PAGE: usize = 100;
pub const MAX_AUDIT_PAGE: usize = 10_000;

type AppState = Arc<Node>;

/// The whole HTTP service of the local API.
pub fn router(node: Arc<Node>) -> Router {
    let api = Router::new()
        .route("/status", get(status))
        .route("/openapi.json", get(openapi))
        .route("/search", get(search))
        .route(
            "/records/{collection}",
            get(list_records).post(create_record),
        )
        .route(
            "/records/{collection}/{id}",
            get(get_record).patch(update_record).delete(delete_record),
        )
        .route("/records/{collection}/{id}/history", get(history))
        .route("/records/{collection}/{id}/conflicts", get(conflicts))
        .route("/sync", axum::routing::post(sync_now))
        .route("/peers", get(list_peers).post(add_peer))
        .route("/peers/{key}", axum::routing::delete(remove_peer))
        .route("/revocations", axum::routing::post(import_revocations))
        .route("/users", get(list_users))
        .route("/audit", get(audit_log))
        .route("/audit/egress", get(egress_log))
        // Daily work (issue 6)
        .merge(crate::daily::api_routes())
        // KPI (issue 6)
        .merge(crate::kpi::api_routes())
        .fallback(unknown_route)
        .layer(middleware::from_fn_with_state(node.clone(), authenticate));
    Router::new()
        .nest("/api/v1", api)
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        // The web console: its own session-cookie auth, outside the token layer.
        .merge(crate::console::routes())
        .fallback(crate::console::fallback)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn_with_state(node.clone(), observe))
        .with_state(node)
}

/// Counts and times every request, and logs it.
async fn observe(State(node): State<AppState>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let path = req.uri().path().to_owned();
    let response = next.run(req).await;
    let elapsed = start.elapsed();
    node.metrics
        .observe_request(method.as_str(), &route, response.status().as_u16(), elapsed);
    tracing::debug!(%method, %path, status = response.status().as_u16(), micros = elapsed.as_micros() as u64, "request");
    response
}

/// Resolves the bearer token to a [`Principal`] and puts it in the request's
/// extensions, or answers 401.
async fn authenticate(State(node): State<AppState>, mut req: Request, next: Next) -> Response {
    let header = req.headers().get(header::AUTHORIZATION);
    let Some(value) = header else {
        return Error::Unauthorized {
            code: "missing_token",
            message: format!(
                "this request needs the header 'Authorization: Bearer TOKEN'; the token is in {}",
                node.token_path.display()
            ),
        }
        .into_response();
    };
    let presented = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("")
        .trim()
        .to_owned();
    let Some(principal) = node.accounts.principal_for_token(&presented).await else {
        return Error::Unauthorized {
            code: "invalid_token",
            message: "the bearer token is neither this node's API token nor a user's token (`yui user token NAME` makes one)".into(),
        }
        .into_response();
    };
    req.extensions_mut().insert(principal);
    next.run(req).await
}

/// The authenticated principal, if it has at least `needed`.
fn authorise(parts: &axum::http::request::Parts, needed: Role) -> Result<Principal> {
    let principal = parts
        .extensions
        .get::<Principal>()
        .cloned()
        .ok_or_else(|| Error::Unauthorized {
            code: "missing_token",
            message: "this request needs the header 'Authorization: Bearer TOKEN'".into(),
        })?;
    if principal.role < needed {
        return Err(Error::Forbidden {
            message: format!(
                "this needs the {needed} role (or higher); {} has the {} role",
                principal.user, principal.role
            ),
        });
    }
    Ok(principal)
}

macro_rules! access {
    ($(#[$doc:meta])* $name:ident, $role:expr) => {
        $(#[$doc])*
        pub struct $name(pub Principal);

        impl<S: Send + Sync> axum::extract::FromRequestParts<S> for $name {
            type Rejection = Error;

            async fn from_request_parts(
                parts: &mut axum::http::request::Parts,
                _: &S,
            ) -> Result<Self> {
                authorise(parts, $role).map($name)
            }
        }
    };
}

access!(
    /// A caller allowed to read (any role).
    ViewerAccess,
    Role::Viewer
);
access!(
    /// A caller allowed to create, update and delete records.
    EditorAccess,
    Role::Editor
);
access!(
    /// A caller allowed to manage peers, users, revocations and sync.
    AdminAccess,
    Role::Admin
);

pub(crate) async fn unknown_route(req: Request) -> Error {
    Error::NotFound(format!(
        "no such endpoint: {} {}",
        req.method(),
        req.uri().path()
    ))
}

async fn method_not_allowed(req: Request) -> Response {
    let err = Error::bad_request(
        "method_not_allowed",
        format!("{} is not allowed on {}", req.method(), req.uri().path()),
    );
    let mut response = err.into_response();
    *response.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    response
}

/// Query parameters, with a malformed query string answered in the §8 shape.
pub struct QueryParams<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> axum::extract::FromRequestParts<S> for QueryParams<T> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(t)| QueryParams(t))
            .map_err(|rejection| Error::bad_request("invalid_query", rejection.body_text()))
    }
}

/// A JSON body, with every failure in the §8 shape.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self> {
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                Error::BodyTooLarge {
                    limit: MAX_BODY_BYTES,
                }
            } else {
                Error::bad_request("unreadable_body", rejection.body_text())
            }
        })?;
        if bytes.is_empty() {
            return Err(Error::bad_request(
                "malformed_json",
                "the request body is empty; send a JSON object",
            ));
        }
        serde_json::from_slice(&bytes).map(JsonBody).map_err(|e| {
            if e.classify() == serde_json::error::Category::Data {
                Error::bad_request(
                    "invalid_body",
                    format!("the JSON does not have the expected shape: {e}"),
                )
            } else {
                Error::bad_request("malformed_json", format!("the body is not valid JSON: {e}"))
            }
        })
    }
}

/// A list of stored records, passed through without re-parsing them.
#[derive(serde::Serialize)]
struct Items<'a> {
    items: &'a [Box<serde_json::value::RawValue>],
    /// Present (possibly null) on paged lists, absent on search results.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<Option<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordBody {
    fields: Map<String, Value>,
    /// An administrator's decision to publish personal-data findings
    /// anyway (never My Number), with the reason for the audit log.
    #[serde(default)]
    personal_data_override: Option<GuardOverride>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GuardOverride {
    reason: String,
}

/// The guard mode a request asks for: an override needs the admin role
/// and a written reason.
fn guard_mode(principal: &Principal, body: &RecordBody) -> Result<crate::store::GuardMode> {
    let Some(o) = &body.personal_data_override else {
        return Ok(crate::store::GuardMode::Refuse);
    };
    if !principal.role.can_administer() {
        return Err(Error::Forbidden {
            message: format!(
                "overriding the personal-data guard needs the admin role; {} has the {} role",
                principal.user, principal.role
            ),
        });
    }
    if o.reason.trim().chars().count() < 5 {
        return Err(Error::bad_request(
            "override_reason_required",
            "personal_data_override.reason must say why (at least 5 characters); it goes to the audit log",
        ));
    }
    Ok(crate::store::GuardMode::AcceptOverridable)
}

fn collection(name: &str) -> Result<Collection> {
    name.parse().map_err(|_| Error::UnknownCollection {
        name: name.chars().take(40).collect(),
        known: Collection::ALL.map(|c| c.name()).join(", "),
    })
}

/// A record id from the path; a malformed one cannot name any record.
fn record_id(collection: Collection, id: &str) -> Result<String> {
    id.parse::<RecordId>()
        .map(String::from)
        .map_err(|_| Error::RecordNotFound {
            collection: collection.name().to_owned(),
            id: id.chars().take(60).collect(),
        })
}

/// Serialises a value that is known to be JSON-safe.
fn json_response(status: StatusCode, body: &impl serde::Serialize) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => (
            status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            Body::from(bytes),
        )
            .into_response(),
        Err(e) => Error::Storage(format!("encoding the response: {e}")).into_response(),
    }
}

/// Alive, and the database answers a query.
async fn healthz(State(node): State<AppState>) -> Response {
    match node.store.check_readable().await {
        Ok(()) => json_response(
            StatusCode::OK,
            &json!({"status": "ok", "town": node.config.town}),
        ),
        Err(e) => {
            tracing::error!(error = %e, "health check: the database does not answer");
            json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                &json!({"status": "unavailable", "town": node.config.town, "error": {"code": e.code(), "message": "the database does not answer; see the node's log"}}),
            )
        }
    }
}

async fn metrics(State(node): State<AppState>) -> Result<Response> {
    let counts = node.store.counts().await?;
    let mut text = node.metrics.render(&counts, node.store.disk_bytes());
    if let Some(peering) = &node.peering {
        let peers = node.store.peers().await?;
        crate::metrics::render_peers(
            &mut text,
            &peers,
            &peering.inbound(),
            peering.refused_attempts().len(),
        );
    }
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        text,
    )
        .into_response())
}

async fn status(_: ViewerAccess, State(node): State<AppState>) -> Result<Response> {
    Ok(json_response(StatusCode::OK, &node.status().await?))
}

async fn openapi(_: ViewerAccess) -> Response {
    json_response(StatusCode::OK, &crate::openapi::document())
}

async fn create_record(
    EditorAccess(principal): EditorAccess,
    State(node): State<AppState>,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<RecordBody>,
) -> Result<Response> {
    let collection = collection(&name)?;
    let mode = guard_mode(&principal, &body)?;
    let fields = validate_create(collection, &body.fields)?;
    let (record, findings) = node
        .store
        .create_guarded(collection, fields, crate::store::now_ms(), mode)
        .await?;
    let id = serde_json::from_str::<RecordRef>(record.get())
        .map(|r| r.id)
        .unwrap_or_default();
    node.record_written(
        &principal,
        "record.create",
        &format!("{collection}/{id}"),
        &field_names(&body.fields),
        override_reason(&body),
        &findings,
    )
    .await;
    Ok(json_response(StatusCode::CREATED, &record))
}

#[derive(Deserialize)]
struct GetParams {
    #[serde(default)]
    include_deleted: bool,
}

async fn get_record(
    _: ViewerAccess,
    State(node): State<AppState>,
    Path((name, id)): Path<(String, String)>,
    QueryParams(params): QueryParams<GetParams>,
) -> Result<Response> {
    let collection = collection(&name)?;
    let id = record_id(collection, &id)?;
    let record = node
        .store
        .get(collection, id, params.include_deleted)
        .await?;
    Ok(json_response(StatusCode::OK, &record))
}

async fn update_record(
    EditorAccess(principal): EditorAccess,
    State(node): State<AppState>,
    Path((name, id)): Path<(String, String)>,
    JsonBody(body): JsonBody<RecordBody>,
) -> Result<Response> {
    let collection = collection(&name)?;
    let id = record_id(collection, &id)?;
    let mode = guard_mode(&principal, &body)?;
    let patch = validate_patch(collection, &body.fields)?;
    let target = format!("{collection}/{id}");
    let (record, findings) = node
        .store
        .update_guarded(collection, id, patch, crate::store::now_ms(), mode)
        .await?;
    node.record_written(
        &principal,
        "record.update",
        &target,
        &field_names(&body.fields),
        override_reason(&body),
        &findings,
    )
    .await;
    Ok(json_response(StatusCode::OK, &record))
}

async fn delete_record(
    EditorAccess(principal): EditorAccess,
    State(node): State<AppState>,
    Path((name, id)): Path<(String, String)>,
) -> Result<StatusCode> {
    let collection = collection(&name)?;
    let id = record_id(collection, &id)?;
    let target = format!("{collection}/{id}");
    node.store
        .delete(collection, id, crate::store::now_ms())
        .await?;
    node.record_written(&principal, "record.delete", &target, "", "", &[])
        .await;
    Ok(StatusCode::NO_CONTENT)
}

async fn list_records(
    _: ViewerAccess,
    State(node): State<AppState>,
    Path(name): Path<String>,
    QueryParams(params): QueryParams<HashMap<String, String>>,
) -> Result<Response> {
    let collection = collection(&name)?;
    let mut q = crate::store::ListQuery {
        limit: DEFAULT_PAGE,
        ..Default::default()
    };
    for (key, value) in params {
        match key.as_str() {
            "limit" => {
                q.limit = value
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_PAGE).contains(n))
                    .ok_or_else(|| {
                        Error::bad_request(
                            "invalid_query",
                            format!("limit must be a whole number from 1 to {MAX_PAGE}"),
                        )
                    })?;
            }
            "cursor" => q.cursor = Some(value),
            "include_deleted" => q.include_deleted = value == "true",
            field => {
                let def = collection
                    .field(field)
                    .filter(|d| d.kind.is_filterable())
                    .ok_or_else(|| {
                        let filterable: Vec<_> = collection
                            .fields()
                            .iter()
                            .filter(|d| d.kind.is_filterable())
                            .map(|d| d.name)
                            .collect();
                        Error::bad_request(
                            "invalid_query",
                            format!(
                                "{field:?} is not a query parameter of {collection}; use limit, cursor, include_deleted or a filter on one of: {}",
                                filterable.join(", ")
                            ),
                        )
                    })?;
                let value = match def.kind {
                    FieldKind::Int { .. } => Value::from(value.parse::<i64>().map_err(|_| {
                        Error::bad_request(
                            "invalid_query",
                            format!("{field} must be a whole number"),
                        )
                    })?),
                    _ => Value::String(value),
                };
                q.filters.push((def.name, value));
            }
        }
    }
    let page = node.store.list(collection, q).await?;
    Ok(json_response(
        StatusCode::OK,
        &Items {
            items: &page.items,
            next_cursor: Some(page.next_cursor),
        },
    ))
}

#[derive(Deserialize)]
struct SearchParams {
    q: Option<String>,
    collection: Option<String>,
    limit: Option<usize>,
}

async fn search(
    _: ViewerAccess,
    State(node): State<AppState>,
    QueryParams(params): QueryParams<SearchParams>,
) -> Result<Response> {
    let q = params.q.filter(|q| !q.trim().is_empty()).ok_or_else(|| {
        Error::bad_request("invalid_query", "give the words to search for as ?q=…")
    })?;
    if q.chars().count() > 200 {
        return Err(Error::bad_request(
            "invalid_query",
            "the search text is longer than 200 characters",
        ));
    }
    let collection = params.collection.as_deref().map(collection).transpose()?;
    let limit = params.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
    let items = node.store.search(q, collection, limit).await?;
    Ok(json_response(
        StatusCode::OK,
        &Items {
            items: &items,
            next_cursor: None,
        },
    ))
}

async fn history(
    _: ViewerAccess,
    State(node): State<AppState>,
    Path((name, id)): Path<(String, String)>,
) -> Result<Response> {
    let collection = collection(&name)?;
    let id = record_id(collection, &id)?;
    let changes = node.store.history(collection, id).await?;
    Ok(json_response(StatusCode::OK, &json!({"changes": changes})))
}

async fn conflicts(
    _: ViewerAccess,
    State(node): State<AppState>,
    Path((name, id)): Path<(String, String)>,
) -> Result<Response> {
    let collection = collection(&name)?;
    let id = record_id(collection, &id)?;
    let conflicts = node.store.conflicts(collection, id).await?;
    Ok(json_response(
        StatusCode::OK,
        &json!({"conflicts": conflicts}),
    ))
}

async fn sync_now(_: AdminAccess, State(node): State<AppState>) -> Result<Response> {
    if node.peering.is_none() {
        return Err(not_joined());
    }
    let peers = crate::peer::Peering::sync_all(&node).await?;
    Ok(json_response(StatusCode::OK, &json!({ "peers": peers })))
}

fn not_joined() -> Error {
    Error::Conflict(
        "this node has not joined a consortium yet: install its certificate with `yui cert install`".into(),
    )
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
    AdminAccess(principal): AdminAccess,
    State(node): State<AppState>,
    JsonBody(body): JsonBody<NewPeer>,
) -> Result<Response> {
    let detail = body
        .node_id
        .as_deref()
        .map_or_else(String::new, |id| format!("node id {id}"));
    crate::peer::add_peer(&node, &body.url, body.node_id, node.shutdown.get()).await?;
    tracing::info!(url = %body.url, "peer added");
    node.accounts
        .audit(&principal, "peer.add", &body.url, &detail)
        .await;
    let peers = node.status().await?.peers;
    let peer = peers.into_iter().find(|p| p.url == body.url);
    Ok(json_response(StatusCode::CREATED, &json!({ "peer": peer })))
}

async fn remove_peer(
    AdminAccess(principal): AdminAccess,
    State(node): State<AppState>,
    Path(key): Path<String>,
) -> Result<StatusCode> {
    let removed = crate::peer::remove_peer(&node, &key).await?;
    if removed.is_empty() {
        return Err(Error::NotFound(format!(
            "no peer has the node id or URL {key:?}"
        )));
    }
    tracing::info!(peers = ?removed, "peer removed");
    node.accounts
        .audit(&principal, "peer.remove", &key, &removed.join(", "))
        .await;
    Ok(StatusCode::NO_CONTENT)
}

/// Body: a revocation list in PEM, as `yui ca revoke` writes it.
async fn import_revocations(
    AdminAccess(principal): AdminAccess,
    State(node): State<AppState>,
    body: Bytes,
) -> Result<Response> {
    let peering = node.peering.as_ref().ok_or_else(not_joined)?;
    let text = std::str::from_utf8(&body).map_err(|_| {
        Error::bad_request(
            "invalid_revocations",
            "send the revocation list as PEM text",
        )
    })?;
    let der = crate::pki::parse_crl_pem(text)
        .map_err(|e| Error::bad_request("invalid_revocations", e.to_string()))?;
    let newer = peering
        .install_revocations(&node.data_dir, &der)
        .map_err(|e| Error::bad_request("invalid_revocations", e.to_string()))?;
    let number = peering.trust.revocation_number();
    node.accounts
        .audit(
            &principal,
            "revocations.import",
            "revocations",
            &format!("list number {number}, newer than the installed one: {newer}"),
        )
        .await;
    Ok(json_response(
        StatusCode::OK,
        &json!({ "installed": newer, "number": peering.trust.revocation_number() }),
    ))
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

/// The id of a record just written, read back from its API JSON.
#[derive(Deserialize)]
struct RecordRef {
    id: String,
}

/// The names (never the values) of the fields a write touched, for the audit log.
/// The reason given with `personal_data_override`, if any (without it the
/// guard refuses, so no findings are let through to audit).
fn override_reason(body: &RecordBody) -> &str {
    body.personal_data_override
        .as_ref()
        .map_or("", |o| o.reason.trim())
}

fn field_names(fields: &Map<String, Value>) -> String {
    let names: Vec<&str> = fields.keys().map(String::as_str).collect();
    format!("fields: {}", names.join(", "))
}
