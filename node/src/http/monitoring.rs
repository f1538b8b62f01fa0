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
    if node.store.storage_full() {
        return json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"status": "degraded", "town": node.config.town, "error": {"code": "storage_full", "message": "writes fail: the disk that holds the data directory is full; reads are served. Free space on it; see `yui status`"}, "disk": node.store.disk_space()}),
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
    crate::metrics::render_process(&mut text, node.start_time_seconds());
    if let Some(space) = node.store.disk_space() {
        crate::metrics::render_gauge(
            &mut text,
            "yui_disk_free_bytes",
            "Free bytes on the file system that holds the data directory (what the node may use).",
            space.free_bytes,
        );
        crate::metrics::render_gauge(
            &mut text,
            "yui_disk_size_bytes",
            "Size of the file system that holds the data directory.",
            space.total_bytes,
        );
    }
    crate::metrics::render_gauge(
        &mut text,
        "yui_storage_full",
        "1 while writes fail for lack of space on the disk (the last write that ended did), else 0.",
        u64::from(node.store.storage_full()),
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
        let files = peering.files.status();
        for (name, help, value) in [
            (
                "yui_attachment_files_fetched_total",
                "Attached files received from peers (fetched or pushed to this node) and verified since start.",
                files.fetched,
            ),
            (
                "yui_attachment_bytes_fetched_total",
                "Bytes of attached files received from peers since start (a resumed transfer counts only its remainder).",
                files.fetched_bytes,
            ),
            (
                "yui_attachment_transfers_resumed_total",
                "File transfers that went on from bytes already on disk since start.",
                files.resumed,
            ),
            (
                "yui_attachment_files_served_total",
                "Attached files sent to peers (served or pushed) since start (each in the egress ledger).",
                files.served,
            ),
            (
                "yui_attachment_bytes_served_total",
                "Bytes of attached files sent to peers since start.",
                files.served_bytes,
            ),
        ] {
            crate::metrics::render_counter(&mut text, name, help, value);
        }
        crate::metrics::render_gauge(
            &mut text,
            "yui_attachment_files_missing",
            "Files of shared records not yet received (after the fetcher's last round).",
            files.missing,
        );
        crate::metrics::render_gauge(
            &mut text,
            "yui_attachment_files_over_quota",
            "Files of shared records not fetched because their town's [attachments] town_quota is full.",
            files.over_quota,
        );
        crate::metrics::render_counter(
            &mut text,
            "yui_peer_port_refused_total",
            "Connections the peer port refused since the node started (wrong or revoked certificate, garbage, too many).",
            peering.refused_total(),
        );
        let trust = peering.trust();
        crate::metrics::render_gauge(
            &mut text,
            "yui_certificate_expiry_timestamp_seconds",
            "When this node's consortium certificate expires (Unix time).",
            u64::try_from(trust.own.not_after).unwrap_or(0),
        );
        crate::metrics::render_gauge(
            &mut text,
            "yui_revocation_list_number",
            "The number of the revocation list this node holds (0: none).",
            trust.revocation_number(),
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
