//! The audit page (administrators only): the egress ledger — every
//! document this node sent to another town, filterable by peer and date,
//! so an auditor can see that only shared records left — and the newest
//! entries of the local audit log (who changed what here).

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use super::{AppState, Chrome, PageError, SignedIn, render, show_time};

/// Rows shown of each list.
const EGRESS_ROWS: usize = 200;
const AUDIT_ROWS: usize = 100;

struct EgressRow {
    at: String,
    way: &'static str,
    peer: String,
    collection: &'static str,
    href: String,
    record_id: String,
    bytes: u64,
    heads: String,
}

struct AuditRow {
    at: String,
    user: String,
    action: String,
    target: String,
    detail: String,
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    chrome: Chrome,
    peer: String,
    since: String,
    egress: Vec<EgressRow>,
    audit: Vec<AuditRow>,
    limit: usize,
}

#[derive(Deserialize)]
pub struct AuditQuery {
    peer: Option<String>,
    since: Option<String>,
}

pub async fn show(
    State(node): State<AppState>,
    who: SignedIn,
    Query(q): Query<AuditQuery>,
) -> Result<Response, PageError> {
    who.require(who.principal().role.can_administer())?;
    let (m, lang) = (who.m(), who.lang());
    let peer = q
        .peer
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty());
    // A date (or a time) as typed; anything else is ignored, and the
    // ledger is shown without a date filter.
    let since = q
        .since
        .map(|s| s.trim().to_owned())
        .filter(|s| crate::store::Store::is_egress_since(s));
    let entries = node
        .store
        .egress(peer.clone(), since.clone(), EGRESS_ROWS)
        .await
        .map_err(|e| who.failed(e))?;
    let egress = entries
        .into_iter()
        .map(|e| {
            let collection = e.collection.parse::<yui_protocol::Collection>().ok();
            EgressRow {
                at: show_time(&e.at),
                way: if e.way == "pushed" {
                    m.egress_pushed
                } else {
                    m.egress_pulled
                },
                peer: if e.peer_town.is_empty() {
                    e.peer.clone()
                } else {
                    e.peer_town.clone()
                },
                collection: collection.map_or("?", |c| lang.collection(c)),
                href: format!("/records/{}/{}", e.collection, e.record_id),
                record_id: e.record_id,
                bytes: e.bytes,
                heads: e
                    .heads
                    .iter()
                    .map(|h| h.chars().take(12).collect::<String>())
                    .collect::<Vec<_>>()
                    .join(", "),
            }
        })
        .collect();
    let audit = node
        .accounts
        .audit_log(AUDIT_ROWS)
        .await
        .map_err(|e| who.failed(e))?
        .into_iter()
        .map(|a| AuditRow {
            at: show_time(&a.at),
            user: a.user,
            action: a.action,
            target: a.target,
            detail: a.detail,
        })
        .collect();
    Ok(render(
        StatusCode::OK,
        &AuditPage {
            chrome: who.chrome(m.audit_title, "audit"),
            peer: peer.unwrap_or_default(),
            since: since.unwrap_or_default(),
            egress,
            audit,
            limit: EGRESS_ROWS,
        },
    ))
}
