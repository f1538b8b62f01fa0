//! Peers and membership (administrators only): add and remove peers, import
//! a revocation list, and see which connection attempts the peer port
//! refused and why. The same calls as `yui peer add|remove` and
//! `yui revocations import`, so a running node acts on them at once.

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Multipart, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::i18n::Messages;
use super::{AppState, Chrome, PageError, SignedIn, render, show_time, url_encode};
use crate::actions::{self, Action};

struct PeerRow {
    url: String,
    town: String,
    node_id: String,
    state: &'static str,
    state_label: &'static str,
    last_sync: String,
}

struct Refused {
    at: String,
    from: String,
    reason: String,
}

#[derive(Template)]
#[template(path = "peers.html")]
struct PeersPage {
    chrome: Chrome,
    notice: Option<String>,
    error: Option<(&'static str, String)>,
    joined: bool,
    membership: String,
    certificate: String,
    revocation_number: Option<u64>,
    peers: Vec<PeerRow>,
    refused: Vec<Refused>,
    url: String,
}

#[derive(Deserialize)]
pub struct PeersQuery {
    done: Option<String>,
    number: Option<u64>,
}

/// A peer's sync state (`ok`, `failing`, else new) in the visitor's words.
pub(super) fn state_label(m: &'static Messages, state: &str) -> &'static str {
    match state {
        "ok" => m.state_ok,
        "failing" => m.state_failing,
        _ => m.state_new,
    }
}

/// When a peer last synced, or "never".
pub(super) fn last_sync_shown(m: &Messages, at: Option<&str>) -> String {
    at.map_or_else(|| m.never.to_owned(), show_time)
}

/// The peers page with an error above it, and the URL field empty.
async fn error_page(
    node: &AppState,
    who: &SignedIn,
    status: StatusCode,
    message: &'static str,
    detail: String,
) -> Result<Response, PageError> {
    page(
        node,
        who,
        status,
        None,
        Some((message, detail)),
        String::new(),
    )
    .await
}

async fn page(
    node: &AppState,
    who: &SignedIn,
    status: StatusCode,
    notice: Option<String>,
    error: Option<(&'static str, String)>,
    url: String,
) -> Result<Response, PageError> {
    let m = who.m();
    let s = node.status().await.map_err(|e| who.failed(e))?;
    let certificate = match s.membership.certificate_expires_in_days {
        None => m.not_joined.to_owned(),
        Some(d) if d < 0 => (m.cert_expired_days_ago)(-d),
        Some(d) => (m.cert_expires_in)(d),
    };
    let names = node.town_names().await;
    let peers = s
        .peers
        .iter()
        .map(|p| PeerRow {
            url: p.url.clone(),
            town: p
                .town
                .as_deref()
                .map(|t| match names.name_of(t) {
                    Some(name) => format!("{name} ({t})"),
                    None => t.to_owned(),
                })
                .unwrap_or_default(),
            node_id: p.node_id.clone().unwrap_or_default(),
            state: p.state,
            state_label: state_label(m, p.state),
            last_sync: last_sync_shown(m, p.last_sync_at.as_deref()),
        })
        .collect();
    let refused = s
        .refused_connections
        .iter()
        .rev()
        .map(|r| Refused {
            at: show_time(&r.at),
            from: r.from.clone(),
            reason: r.reason.clone(),
        })
        .collect();
    Ok(render(
        status,
        &PeersPage {
            chrome: who.chrome(m.peers_admin_title, "peers"),
            notice,
            error,
            joined: s.membership.joined,
            membership: if s.membership.joined {
                s.membership.hint.clone()
            } else {
                m.not_joined_hint.to_owned()
            },
            certificate,
            revocation_number: s.membership.revocation_list_number,
            peers,
            refused,
            url,
        },
    ))
}

pub async fn show(
    State(node): State<AppState>,
    who: SignedIn,
    Query(q): Query<PeersQuery>,
) -> Result<Response, PageError> {
    who.require(Action::PeerAdd.allows(who.principal().role))?;
    let m = who.m();
    let number = q.number.unwrap_or(0);
    let notice = match q.done.as_deref() {
        Some("added") => Some(m.notice_peer_added.to_owned()),
        Some("removed") => Some(m.notice_peer_removed.to_owned()),
        Some("revocations") => Some((m.revocations_installed)(number)),
        Some("not-newer") => Some((m.revocations_not_newer)(number)),
        _ => None,
    };
    page(&node, &who, StatusCode::OK, notice, None, String::new()).await
}

pub async fn add(
    State(node): State<AppState>,
    who: SignedIn,
    body: Bytes,
) -> Result<Response, PageError> {
    let form = who.posted_form(&body, Action::PeerAdd.allows(who.principal().role))?;
    let url = form.get("url").unwrap_or("").trim().to_owned();
    let node_id = form
        .get("node_id")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned);
    match actions::add_peer(&node, who.principal(), &url, node_id).await {
        Ok(_) => Ok(Redirect::to("/peers?done=added").into_response()),
        Err(e @ crate::Error::Forbidden { .. }) => Err(who.failed(e)),
        Err(e) => {
            let error = Some((who.m().peer_action_failed, e.to_string()));
            page(&node, &who, StatusCode::BAD_REQUEST, None, error, url).await
        }
    }
}

pub async fn remove(
    State(node): State<AppState>,
    who: SignedIn,
    body: Bytes,
) -> Result<Response, PageError> {
    let form = who.posted_form(&body, Action::PeerRemove.allows(who.principal().role))?;
    let key = form.get("key").unwrap_or("").to_owned();
    if form.get("confirm") != Some("yes") {
        return error_page(
            &node,
            &who,
            StatusCode::BAD_REQUEST,
            who.m().confirm_remove_peer,
            key,
        )
        .await;
    }
    let removed = actions::remove_peer(&node, who.principal(), &key)
        .await
        .map_err(|e| who.failed(e))?;
    if removed.is_empty() {
        return Err(who.error(StatusCode::NOT_FOUND, who.m().not_found));
    }
    Ok(Redirect::to("/peers?done=removed").into_response())
}

/// A revocation list as an uploaded file (PEM or DER) or pasted PEM.
pub async fn import_revocations(
    State(node): State<AppState>,
    who: SignedIn,
    mut multipart: Multipart,
) -> Result<Response, PageError> {
    let m = who.m();
    let (mut csrf, mut file, mut pasted) = (None, Vec::new(), String::new());
    loop {
        match multipart.next_field().await {
            Ok(Some(field)) => {
                let name = field.name().unwrap_or("").to_owned();
                let Ok(bytes) = field.bytes().await else {
                    return Err(who.error(StatusCode::BAD_REQUEST, m.revocations_invalid));
                };
                match name.as_str() {
                    "csrf" => csrf = Some(String::from_utf8_lossy(&bytes).into_owned()),
                    "file" => file = bytes.to_vec(),
                    "pem" => pasted = String::from_utf8_lossy(&bytes).into_owned(),
                    _ => {}
                }
            }
            Ok(None) => break,
            Err(_) => return Err(who.error(StatusCode::BAD_REQUEST, m.revocations_invalid)),
        }
    }
    who.check_csrf(csrf.as_deref())?;
    who.require(Action::RevocationsImport.allows(who.principal().role))?;
    if node.peering().is_none() {
        return error_page(
            &node,
            &who,
            StatusCode::CONFLICT,
            m.not_joined,
            m.not_joined_hint.to_owned(),
        )
        .await;
    }
    let der = if !pasted.trim().is_empty() {
        crate::pki::parse_crl_pem(&pasted)
    } else if file.starts_with(b"-----BEGIN") {
        crate::pki::parse_crl_pem(&String::from_utf8_lossy(&file))
    } else if !file.is_empty() {
        Ok(file)
    } else {
        return error_page(
            &node,
            &who,
            StatusCode::BAD_REQUEST,
            m.revocations_empty,
            String::new(),
        )
        .await;
    };
    let der = match der {
        Ok(der) => der,
        Err(e) => {
            return error_page(
                &node,
                &who,
                StatusCode::BAD_REQUEST,
                m.revocations_invalid,
                e.to_string(),
            )
            .await;
        }
    };
    match actions::import_revocations(&node, who.principal(), &der).await {
        Ok(imported) => {
            let done = if imported.newer {
                "revocations"
            } else {
                "not-newer"
            };
            Ok(Redirect::to(&format!(
                "/peers?done={done}&number={}",
                url_encode(&imported.number.to_string())
            ))
            .into_response())
        }
        Err(e @ crate::Error::Forbidden { .. }) => Err(who.failed(e)),
        Err(e) => {
            error_page(
                &node,
                &who,
                StatusCode::BAD_REQUEST,
                m.revocations_invalid,
                e.to_string(),
            )
            .await
        }
    }
}
