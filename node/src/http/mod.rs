//! The local HTTP API (SPEC §8): records, search, history, status, the daily
//! views, KPI, CSV export and import, health, metrics and the OpenAPI
//! document.
//!
//! [`routes`] builds the API's routes; the daemon merges the web console's
//! beside them and adds [`observe`] and the body limit around both (see
//! `crate::daemon::app`), so neither adapter imports the other's handlers.
//! Every `/api/` route sits behind [`extract::authenticate`], which turns the
//! bearer token (the node's own, or a user's) into a
//! [`Principal`](crate::accounts::Principal); each handler then states the
//! role it needs by taking a [`ViewerAccess`], [`EditorAccess`] or
//! [`AdminAccess`], or, for an action that changes the node, takes any
//! [`Caller`] and leaves the role and the audit entry to the one table of
//! actions (`crate::actions`). Every change made through the API is written
//! to the local audit log with the principal's name. Every failure, including malformed
//! JSON, oversize bodies and unknown routes, answers in the §8 error shape
//! ([`error`]).

mod admin;
pub mod attachments;
pub mod error;
pub mod extract;
pub mod kpi;
pub mod listener;
mod monitoring;
pub mod openapi;
mod records;
mod spreadsheets;
mod views;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

pub use extract::{AdminAccess, Caller, EditorAccess, JsonBody, QueryParams, ViewerAccess};
pub use spreadsheets::csv_response;

use crate::error::Error;
use crate::node::Node;

/// The state every handler of the API and the console shares.
pub type AppState = Arc<Node>;

/// The largest request body either adapter reads.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
pub const DEFAULT_PAGE: usize = 50;
pub const MAX_PAGE: usize = 500;
/// Audit entries `GET /api/v1/audit` returns by default, and at most.
pub const DEFAULT_AUDIT_PAGE: usize = 100;
pub const MAX_AUDIT_PAGE: usize = 10_000;

/// `/api/v1/...` behind the token layer, `/healthz` and `/metrics`.
pub fn routes(node: &AppState) -> Router<AppState> {
    let api = Router::new()
        .route("/openapi.json", get(openapi::serve))
        .merge(records::routes())
        .merge(attachments::routes())
        .merge(admin::routes())
        .merge(views::routes())
        .merge(kpi::routes())
        .merge(spreadsheets::routes())
        .fallback(extract::unknown_route)
        .layer(middleware::from_fn_with_state(
            node.clone(),
            extract::authenticate,
        ));
    Router::new()
        .nest("/api/v1", api)
        .route("/healthz", get(monitoring::healthz))
        .route("/metrics", get(monitoring::metrics))
}

/// Counts and times every request, and logs it.
pub async fn observe(State(node): State<AppState>, req: Request, next: Next) -> Response {
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

/// Refuses, with 421, a request whose `Host` is not one this node answers
/// to (`Config::host_allowed`): a web page that rebinds its own name to
/// this machine must not read `/metrics` or drive the console. The host is
/// the `Host` header, or the authority of an HTTP/2 request; a request
/// with neither is refused too.
pub async fn check_host(State(node): State<AppState>, req: Request, next: Next) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .map(|h| String::from_utf8_lossy(h.as_bytes()).into_owned())
        .or_else(|| req.uri().authority().map(|a| a.as_str().to_owned()))
        .unwrap_or_default();
    if node.config.host_allowed(&host) {
        next.run(req).await
    } else {
        Error::WrongHost { host }.into_response()
    }
}

/// A known path with a method it does not take, in the §8 shape.
pub async fn method_not_allowed(req: Request) -> Response {
    let err = Error::bad_request(
        "method_not_allowed",
        format!("{} is not allowed on {}", req.method(), req.uri().path()),
    );
    let mut response = err.into_response();
    *response.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    response
}

/// Serialises a value that is known to be JSON-safe.
/// Sets `Location` on a 201 answer: the path of what was created (RFC 9110
/// §15.3.2). `path` is already percent-encoded where it needs to be.
pub(crate) fn set_location(response: &mut Response, path: &str) {
    if let Ok(value) = HeaderValue::from_str(path) {
        response.headers_mut().insert(header::LOCATION, value);
    }
}

pub(crate) fn json_response(status: StatusCode, body: &impl serde::Serialize) -> Response {
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
