//! The dashboard: this node, its peers and their sync health, record counts,
//! records with conflicts, KPI totals, the warnings an administrator
//! should act on, each in plain words, and what other towns wrote since
//! the user's previous visit.
//!
//! "New from other towns since your last visit": each user's visit is
//! marked (`accounts`) at the position of the node's change feed when the
//! dashboard is shown, and the next showing lists the live shared records
//! of other towns that arrived or changed between the two marks. So the
//! list shows what came since the *previous* visit and is empty on a
//! reload; arrival here counts, not a record's own times, so a record a
//! town wrote offline last week and synced today is new today.

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use yui_protocol::Collection;

use super::i18n::{Lang, Messages};
use super::peers;
use super::records::{record_href, record_title, record_title_named};
use super::{AppState, Chrome, PageError, SignedIn, render, show_bytes};
use crate::actions::{self, Action};

/// How many recently changed shared records the conflict list looks at.
const CONFLICT_SCAN: usize = 200;
/// How many records from other towns the dashboard lists.
const NEWS_SHOWN: usize = 20;

struct NodeFacts {
    town: String,
    name: String,
    node_id: String,
    version: &'static str,
    disk: String,
    certificate: String,
    joined: bool,
    revocation_number: Option<u64>,
    uptime: String,
}

struct PeerRow {
    url: String,
    town: String,
    state: &'static str,
    state_label: &'static str,
    last_sync: String,
    pending: u64,
    explanation: Option<&'static str>,
    detail: String,
}

struct CountRow {
    label: &'static str,
    href: String,
    shared: bool,
    count: u64,
}

struct ConflictRow {
    collection: &'static str,
    title: String,
    href: String,
    fields: String,
}

struct NewsRow {
    town: String,
    collection: &'static str,
    title: String,
    href: String,
    updated: String,
}

/// What other towns wrote since the user's previous visit.
struct NewsList {
    rows: Vec<NewsRow>,
    /// The sentence above the list (since when).
    intro: String,
    /// More arrived than are shown.
    more: bool,
}

#[derive(Template)]
#[template(path = "dashboard.html")]
struct DashboardPage {
    chrome: Chrome,
    notice: Option<String>,
    node: NodeFacts,
    warnings: Vec<String>,
    peers: Vec<PeerRow>,
    can_sync: bool,
    counts: Vec<CountRow>,
    conflicts: Vec<ConflictRow>,
    // KPI (issue 6)
    kpi: super::kpi::Summary,
    // Following other towns (issue 16)
    news: NewsList,
}

#[derive(Deserialize)]
pub struct DashboardQuery {
    /// `OK-FAILED` after a sync.
    synced: Option<String>,
}

/// Why a peer's last round failed, as a sentence an administrator can act
/// on. The peer layer reports errors as text; these are its known kinds.
pub fn explain_peer_error(m: &'static Messages, error: &str) -> &'static str {
    let e = error.to_ascii_lowercase();
    if e.contains("revoked") {
        m.peer_err_revoked
    } else if e.contains("is this node itself") {
        m.peer_err_self
    } else if e.contains("not joined") || e.contains("has not joined") {
        m.peer_err_not_joined
    } else if e.contains("dns") || e.contains("lookup") || e.contains("resolve") {
        m.peer_err_dns
    } else if e.contains("certificate") || e.contains("alert") || e.contains("handshake") {
        m.peer_err_certificate
    } else if e.contains("timed out") || e.contains("timeout") {
        m.peer_err_timeout
    } else if e.contains("reachable") || e.contains("connection refused") || e.contains("connect") {
        m.peer_err_unreachable
    } else if e.contains("refused the exchange") || e.contains("answered") {
        m.peer_err_refused
    } else if e.contains("answer") || e.contains("version") || e.contains("decode") {
        m.peer_err_protocol
    } else {
        m.peer_err_other
    }
}

/// The node's own warnings (English in `Status`), in the visitor's language.
fn translate_warning(m: &'static Messages, warning: &str, days: Option<i64>) -> String {
    if warning.contains("has expired") {
        m.warn_cert_expired.to_owned()
    } else if warning.contains("expires in") {
        (m.warn_cert_expiring)(days.unwrap_or(0))
    } else if warning.contains("revoked") {
        m.warn_cert_revoked.to_owned()
    } else {
        warning.to_owned()
    }
}

fn directory_bytes(path: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => directory_bytes(&entry.path()),
            Ok(meta) => meta.len(),
            Err(_) => 0,
        })
        .sum()
}

pub async fn show(
    State(node): State<AppState>,
    who: SignedIn,
    Query(q): Query<DashboardQuery>,
) -> Result<Response, PageError> {
    let (m, lang) = (who.m(), who.lang());
    let status = node.status().await.map_err(|e| who.failed(e))?;
    let dir = node.data_dir.path.clone();
    let disk = tokio::task::spawn_blocking(move || directory_bytes(&dir))
        .await
        .unwrap_or(0);
    let days = status.membership.certificate_expires_in_days;
    let certificate = match days {
        None => m.not_joined.to_owned(),
        Some(d) if d < 0 => (m.cert_expired_days_ago)(-d),
        Some(d) => (m.cert_expires_in)(d),
    };
    let mut warnings: Vec<String> = status
        .membership
        .warnings
        .iter()
        .map(|w| translate_warning(m, w, days))
        .collect();
    let names = node.town_names().await;
    let peers: Vec<PeerRow> = status
        .peers
        .iter()
        .map(|p| PeerRow {
            url: p.url.clone(),
            town: p
                .town
                .as_deref()
                .map(|t| names.show(t).to_owned())
                .unwrap_or_default(),
            state: p.state,
            state_label: peers::state_label(m, p.state),
            last_sync: peers::last_sync_shown(m, p.last_sync_at.as_deref()),
            pending: p.pending,
            explanation: p.last_error.as_deref().map(|e| explain_peer_error(m, e)),
            detail: p.last_error.clone().unwrap_or_default(),
        })
        .collect();
    for p in peers.iter().filter(|p| p.state == "failing") {
        warnings.push((m.warn_peer_failing)(&p.url));
    }
    if !status.refused_connections.is_empty() {
        warnings.push((m.warn_refused)(status.refused_connections.len()));
    }
    if let Some(disk) = status.storage.disk
        && let Ok(below) = node.config.disk.low_below(disk.total_bytes)
        && disk.free_bytes < below
    {
        warnings.insert(
            0,
            (m.warn_disk_low)(
                &crate::node::human_bytes(disk.free_bytes),
                &crate::node::human_bytes(disk.total_bytes),
                &crate::node::human_bytes(below),
            ),
        );
    }
    if status.storage.full {
        warnings.insert(0, m.warn_storage_full.to_owned());
    }
    if !status.storage.integrity.is_ok() {
        let tables = status.storage.integrity.damaged.join(", ");
        warnings.insert(0, (m.warn_database_damaged)(&tables));
    }
    // In the order of SPEC §4 (shared first), not alphabetical.
    let counts = Collection::ALL
        .into_iter()
        .filter_map(|collection| {
            let name = collection.name();
            let c = status.collections.get(name)?;
            Some(CountRow {
                label: lang.collection(collection),
                href: format!("/records/{name}"),
                shared: c.scope == "shared",
                count: c.count,
            })
        })
        .collect();
    // A damaged database may not answer these: the page still shows, with
    // its warning first, and leaves out what could not be read.
    let damaged = !status.storage.integrity.is_ok();
    let conflicts = match node.store.recent_conflicts(CONFLICT_SCAN).await {
        Ok(found) => found,
        Err(e) if damaged => {
            tracing::warn!(error = %e, "dashboard: conflicts unreadable (the database is damaged)");
            Vec::new()
        }
        Err(e) => return Err(who.failed(e)),
    }
    .into_iter()
    .filter_map(|(view, fields)| {
        let collection = view.collection()?;
        let labels: Vec<&str> = fields
            .iter()
            .map(|f| collection.field(f).map_or(f.as_str(), |d| lang.field(d)))
            .collect();
        Some(ConflictRow {
            collection: lang.collection(collection),
            title: record_title(collection, &view),
            href: record_href(collection, view.id.as_str()),
            fields: labels.join(if lang == Lang::Ja { "、" } else { ", " }),
        })
    })
    .collect();
    let kpi = match super::kpi::summary(&node, &who).await {
        Ok(kpi) => kpi,
        Err(_) if damaged => super::kpi::Summary {
            fiscal_year: crate::kpi::current_fiscal_year(),
            totals: Vec::new(),
            reported: String::new(),
            missing: None,
            stale: None,
        },
        Err(e) => return Err(e),
    };
    let news = match news_since_last_visit(&node, &who, &names).await {
        Ok(news) => news,
        Err(e) if damaged => {
            tracing::warn!(error = %e, "dashboard: news unreadable (the database is damaged)");
            NewsList {
                rows: Vec::new(),
                intro: String::new(),
                more: false,
            }
        }
        Err(e) => return Err(who.failed(e)),
    };
    let notice = q.synced.as_deref().and_then(|s| {
        let (ok, failed) = s.split_once('-')?;
        Some((m.sync_done)(ok.parse().ok()?, failed.parse().ok()?))
    });
    let uptime = status.uptime_seconds;
    let page = DashboardPage {
        chrome: who.chrome(m.dashboard_title, "dashboard"),
        notice,
        node: NodeFacts {
            town: status.town.clone(),
            name: status.name.clone(),
            node_id: status.node_id.clone(),
            version: status.version,
            disk: show_bytes(disk),
            certificate,
            joined: status.membership.joined,
            revocation_number: status.membership.revocation_list_number,
            uptime: format!("{}h {:02}m", uptime / 3600, uptime % 3600 / 60),
        },
        warnings,
        can_sync: status.membership.joined && Action::SyncNow.allows(who.principal().role),
        peers,
        counts,
        conflicts,
        kpi,
        news,
    };
    Ok(render(StatusCode::OK, &page))
}

/// Marks this visit and lists the shared records of other towns that
/// arrived or changed since the user's previous one (all of them, newest
/// first, on a first visit).
async fn news_since_last_visit(
    node: &AppState,
    who: &SignedIn,
    names: &crate::pki::TownNames,
) -> crate::Result<NewsList> {
    let (m, lang) = (who.m(), who.lang());
    let up_to = node.store.feed_position();
    let previous = node
        .accounts
        .swap_visit(&who.principal().user, node.store.feed_epoch(), up_to)
        .await?;
    let after = previous.as_ref().map_or(0, |(seq, _)| *seq);
    let mut found = node
        .store
        .news_from_other_towns(None, after, up_to, NEWS_SHOWN + 1)
        .await?;
    let more = found.len() > NEWS_SHOWN;
    found.truncate(NEWS_SHOWN);
    let rows = found
        .into_iter()
        .filter_map(|n| {
            let collection = n.view.collection()?;
            Some(NewsRow {
                town: names.show(&n.view.town).to_owned(),
                collection: lang.collection(collection),
                title: record_title_named(collection, &n.view, names),
                href: record_href(collection, n.view.id.as_str()),
                updated: super::show_time(&n.view.updated_at),
            })
        })
        .collect();
    let intro = match &previous {
        Some((_, at)) => (m.news_since)(&super::show_time(at)),
        None => m.news_first_visit.to_owned(),
    };
    Ok(NewsList { rows, intro, more })
}

/// "Sync now": one round with every peer, then back to the dashboard.
pub async fn sync_now(
    State(node): State<AppState>,
    who: SignedIn,
    body: Bytes,
) -> Result<Response, PageError> {
    let form = who.posted_form(&body, Action::SyncNow.allows(who.principal().role))?;
    if node.peering().is_none() {
        return Err(who.error(StatusCode::CONFLICT, who.m().sync_needs_membership));
    }
    // A row's button names its peer; the button above the table, none.
    let only = form.get("peer").filter(|u| !u.is_empty());
    let results = actions::sync_now(&node, who.principal(), only)
        .await
        .map_err(|e| match e {
            crate::Error::NotFound(_) => who.error(StatusCode::NOT_FOUND, who.m().not_found),
            other => who.failed(other),
        })?;
    let ok = results.iter().filter(|r| r.ok).count();
    let failed = results.len() - ok;
    Ok(Redirect::to(&format!("/?synced={ok}-{failed}")).into_response())
}
