//! What monitoring reads without a token: `/healthz` (alive, the database
//! answers and its latest integrity check found no damage, or the first is
//! still running) and `/metrics` (Prometheus text format).

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::{AppState, json_response};
use crate::error::Result;

/// Alive, and the database answers a query.
pub async fn healthz(State(node): State<AppState>) -> Response {
    let integrity = node.store.integrity();
    if !integrity.is_ok() {
        return json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"status": "degraded", "town": node.config.town, "error": {"code": "database_damaged", "message": "the database is damaged and takes no writes; see the node's log and `yui status`"}, "damaged_tables": integrity.damaged}),
        );
    }
    match node.store.check_readable().await {
        // While the first integrity check runs (seconds, at start on a
        // large database) the node serves reads and says so.
        Ok(()) => json_response(
            StatusCode::OK,
            &json!({"status": "ok", "town": node.config.town,
                    "integrity": if integrity.checked_at.is_some() { "ok" } else { "checking" }}),
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

pub async fn metrics(State(node): State<AppState>) -> Result<Response> {
    let counts = node.store.counts().await?;
    let mut text = node.metrics.render(&counts, node.store.disk_bytes());
    crate::metrics::render_counter(
        &mut text,
        "yui_api_connections_refused_total",
        "API port connections closed because the port was full (the oldest idle one, or a new one when all were busy).",
        super::listener::REFUSED.load(std::sync::atomic::Ordering::Relaxed),
    );
    let (logins, refused) = node.accounts.login_counts();
    crate::metrics::render_labelled(
        &mut text,
        "yui_logins_total",
        "Console logins whose password was checked, by result.",
        "result",
        &logins,
    );
    crate::metrics::render_labelled(
        &mut text,
        "yui_logins_refused_total",
        "Console logins refused with 429, by reason: locked_out (the name), address (too many from one address), busy (the hashing queue was full).",
        "reason",
        &refused,
    );
    if let Some(peering) = node.peering() {
        let peers = node.store.peers().await?;
        crate::metrics::render_peers(
            &mut text,
            &peers,
            &peering.inbound(),
            peering.refused_attempts().len(),
            |url| peering.refused_from(url),
        );
        let usage = node.store.quota_usage(crate::clock::today_jst()).await?;
        crate::metrics::render_quotas(&mut text, &node.store.quotas(), usage);
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
