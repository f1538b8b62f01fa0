//! Attached files between towns (protocol.md 3.3). A record's document
//! names its files by SHA-256 and travels by sync as signed changes; the
//! bytes follow in the background: the *fetcher* (one task per node) looks
//! for files that live shared records name and that are not here, and asks
//! the peers this node dials for each (`GET /yui/v1/attachments/{sha256}`),
//! resuming a transfer from the bytes already on disk (`Range`), checking
//! the hash before the file becomes visible, and keeping each origin
//! town's files within `[attachments] town_quota`. A relay fetches a file
//! first and then serves it onwards. A node that only accepts connections
//! would never fetch, so the same task also *pushes*: it asks each peer it
//! dials which files it lacks (`GET /yui/v1/attachments`) and sends those
//! it holds (`PUT`, from the bytes the peer kept), under the same rules.
//!
//! The peer port's handler ([`serve_file`]) sends a file only when a live
//! record of a shared collection that this node holds names it: a file
//! named only by a local record (workers, customers, …) is never sent, by
//! this or any other path, and every file sent is written to the egress
//! ledger.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::io::{AsyncSeekExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use yui_protocol::attachment::is_sha256;

use super::Federation;
use super::client::{PeerClient, WantedByPeer, WantedList, parse_peer_url};
use crate::error::{Error, Result};
use crate::pki::PeerIdentity;
use crate::store::WantedFile;
use http_body_util::BodyExt;

/// Counters of the file transfers since start (`/metrics`, `status`).
#[derive(Debug, Default)]
pub struct FileStats {
    pub fetched: AtomicU64,
    pub fetched_bytes: AtomicU64,
    /// Transfers that went on from bytes already on disk.
    pub resumed: AtomicU64,
    pub served: AtomicU64,
    pub served_bytes: AtomicU64,
    /// Files not fetched because their town's quota is full (last round).
    pub over_quota: AtomicU64,
    /// Files still missing after the last round.
    pub missing: AtomicU64,
}

/// The status of file transfers, for `status`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FileStatus {
    pub fetched: u64,
    pub fetched_bytes: u64,
    pub resumed: u64,
    pub served: u64,
    pub served_bytes: u64,
    pub missing: u64,
    pub over_quota: u64,
}

impl FileStats {
    pub fn status(&self) -> FileStatus {
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        FileStatus {
            fetched: r(&self.fetched),
            fetched_bytes: r(&self.fetched_bytes),
            resumed: r(&self.resumed),
            served: r(&self.served),
            served_bytes: r(&self.served_bytes),
            missing: r(&self.missing),
            over_quota: r(&self.over_quota),
        }
    }
}

/// `GET /yui/v1/attachments/{sha256}` from a member.
pub(super) async fn serve_file(
    fed: &Federation,
    peer: &PeerIdentity,
    sha: String,
    headers: &HeaderMap,
) -> Response {
    if !is_sha256(&sha) {
        return (StatusCode::NOT_FOUND, "not a SHA-256").into_response();
    }
    // Only a file a live shared record names; a local record's file is
    // refused like a file this node never heard of.
    let shared = match fed.store.shared_ref(sha.clone()).await {
        Ok(Some(s)) => s,
        Ok(None) => {
            tracing::info!(peer = %peer.town, sha256 = %sha, "refused a file: no shared record here names it");
            return (
                StatusCode::NOT_FOUND,
                "no shared record of this node names this file",
            )
                .into_response();
        }
        Err(e) => {
            tracing::error!(error = %e, "reading attachment references");
            return (StatusCode::SERVICE_UNAVAILABLE, "try again later").into_response();
        }
    };
    let file = match fed.blobs.open(&sha) {
        Ok(Some(f)) => f,
        Ok(None) => {
            return (
                StatusCode::NOT_FOUND,
                "this node has not received the file yet",
            )
                .into_response();
        }
        Err(e) => {
            tracing::error!(error = %e, "opening an attachment");
            return (StatusCode::SERVICE_UNAVAILABLE, "try again later").into_response();
        }
    };
    let (file, len) = file;
    let start = match range_start(headers) {
        Ok(s) => s,
        Err(()) => {
            return (StatusCode::RANGE_NOT_SATISFIABLE, "only bytes=N- ranges").into_response();
        }
    };
    if start > 0 && start >= len {
        let mut r = (StatusCode::RANGE_NOT_SATISFIABLE, "range beyond the file").into_response();
        if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
            r.headers_mut().insert(header::CONTENT_RANGE, v);
        }
        return r;
    }
    let sending = len - start;
    // The ledger first: a file is recorded before a byte of it leaves.
    if let Err(e) = fed
        .store
        .record_file_egress(
            peer.node_id.clone(),
            peer.town.clone(),
            shared,
            sha.clone(),
            sending,
        )
        .await
    {
        tracing::error!(error = %e, "egress ledger: a file was not sent");
        return (StatusCode::SERVICE_UNAVAILABLE, "try again later").into_response();
    }
    if let Some(p) = &fed.peering {
        p.files.served.fetch_add(1, Ordering::Relaxed);
        p.files.served_bytes.fetch_add(sending, Ordering::Relaxed);
    }
    tracing::info!(peer = %peer.town, sha256 = %sha, from = start, bytes = sending, "sending a file");
    let mut file = tokio::fs::File::from_std(file);
    if start > 0 && file.seek(std::io::SeekFrom::Start(start)).await.is_err() {
        return (StatusCode::SERVICE_UNAVAILABLE, "try again later").into_response();
    }
    let body = Body::from_stream(tokio_util::io::ReaderStream::with_capacity(file, 256 << 10));
    let mut response = body.into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(sending));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if start > 0 {
        *response.status_mut() = StatusCode::PARTIAL_CONTENT;
        if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{}/{len}", len - 1)) {
            response.headers_mut().insert(header::CONTENT_RANGE, v);
        }
    }
    response
}

/// The start of a `Range: bytes=N-` header (0 without one).
fn range_start(headers: &HeaderMap) -> std::result::Result<u64, ()> {
    let Some(v) = headers.get(header::RANGE) else {
        return Ok(0);
    };
    let v = v.to_str().map_err(|_| ())?;
    let rest = v.strip_prefix("bytes=").ok_or(())?;
    let n = rest.strip_suffix('-').ok_or(())?;
    n.parse().map_err(|_| ())
}

/// How long the fetcher rests when nothing is missing (a new record wakes
/// it sooner).
const IDLE: Duration = Duration::from_secs(60);
const RETRY_MIN: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(30);

/// The fetcher: wakes on every stored change and otherwise every minute;
/// fetches what is missing, then deletes files no record names any more.
pub async fn fetch_loop(fed: Federation, cancel: CancellationToken) {
    let mut seq = fed.store.watch_seq();
    let mut retry = RETRY_MIN;
    let mut quota_warned: HashMap<String, u64> = HashMap::new();
    loop {
        let missing = match fetch_round(&fed, &cancel, &mut quota_warned).await {
            Ok(m) => m,
            Err(e) => {
                tracing::info!(error = %e, "fetching files failed");
                1
            }
        };
        // The peers this node dials get what they lack from it: a node
        // that only accepts connections never fetches.
        let unpushed = match push_round(&fed, &cancel).await {
            Ok(n) => n,
            Err(e) => {
                tracing::info!(error = %e, "pushing files failed");
                1
            }
        };
        let missing = missing + unpushed;
        if let Err(e) = crate::blobs::collect_unnamed(&fed.store, &fed.blobs).await {
            tracing::warn!(error = %e, "deleting files no record names failed");
        }
        let wait = if missing > 0 {
            let w = retry;
            retry = (retry * 2).min(RETRY_MAX);
            w
        } else {
            retry = RETRY_MIN;
            IDLE
        };
        tokio::select! {
            _ = cancel.cancelled() => return,
            r = seq.changed() => {
                if r.is_err() { return; }
                // A burst of writes is one wake-up.
                tokio::time::sleep(super::PUSH_DEBOUNCE).await;
                seq.borrow_and_update();
            }
            // A sync round sent records: the peer may now want their files.
            _ = wake_files(&fed) => {
                tokio::time::sleep(super::PUSH_DEBOUNCE).await;
            }
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

async fn wake_files(fed: &Federation) {
    match &fed.peering {
        Some(p) => p.wake_files.notified().await,
        None => std::future::pending().await,
    }
}

/// One pass over the missing files; answers how many are still missing
/// (over-quota files not counted).
async fn fetch_round(
    fed: &Federation,
    cancel: &CancellationToken,
    quota_warned: &mut HashMap<String, u64>,
) -> Result<u64> {
    let Some(peering) = fed.peering.clone() else {
        return Ok(0);
    };
    let wanted = fed.store.named_attachments(true).await?;
    let missing: Vec<_> = wanted
        .into_iter()
        .filter(|w| !fed.blobs.has(&w.sha256))
        .collect();
    if missing.is_empty() {
        peering.files.missing.store(0, Ordering::Relaxed);
        peering.files.over_quota.store(0, Ordering::Relaxed);
        return Ok(0);
    }
    let mut held = held_by_town(fed).await?;
    let peers: Vec<_> = fed
        .store
        .peers()
        .await?
        .into_iter()
        .filter_map(|p| Some((p.url.clone(), p.node_id.clone()?)))
        .collect();
    let quota = fed.attachment_limits.town_quota_bytes;
    let (mut left, mut over) = (0u64, 0u64);
    for w in missing {
        if cancel.is_cancelled() {
            break;
        }
        let used = held.get(&w.town).copied().unwrap_or(0);
        if used + w.size > quota {
            over += 1;
            if quota_warned.get(&w.sha256) != Some(&used) {
                tracing::warn!(town = %w.town, sha256 = %w.sha256, size = w.size, used, quota, "not fetching a file: the town's attachment quota ([attachments] town_quota) is full");
                quota_warned.insert(w.sha256.clone(), used);
            }
            continue;
        }
        let mut done = false;
        for (url, node_id) in &peers {
            let client = peering.client();
            match fetch_one(fed, &client, url, node_id, &w.sha256, w.size, cancel).await {
                Ok(true) => {
                    done = true;
                    break;
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::info!(peer = %url, sha256 = %w.sha256, error = %e, "fetching a file failed; will retry");
                }
            }
        }
        if done {
            *held.entry(w.town.clone()).or_default() += w.size;
        } else {
            left += 1;
        }
    }
    peering.files.missing.store(left, Ordering::Relaxed);
    peering.files.over_quota.store(over, Ordering::Relaxed);
    Ok(left)
}

/// Fetches one file from one peer, from the bytes already here on;
/// `Ok(false)` when the peer does not have it.
async fn fetch_one(
    fed: &Federation,
    client: &PeerClient,
    url: &str,
    node_id: &str,
    sha: &str,
    size: u64,
    cancel: &CancellationToken,
) -> Result<bool> {
    let Some(peering) = fed.peering.as_ref() else {
        return Ok(false);
    };
    let target = parse_peer_url(url)?;
    // A push from another peer is writing it right now.
    let Some(_receiving) = fed.blobs.begin_receiving(sha) else {
        return Ok(false);
    };
    let mut offset = fed.blobs.partial_len(sha);
    if offset > size {
        fed.blobs.discard_partial(sha);
        offset = 0;
    }
    if offset == size && size > 0 {
        // Complete but not checked (stopped between the last byte and the
        // rename): check it now.
        if fed.blobs.finish_partial(sha).is_ok() {
            return Ok(true);
        }
        offset = 0;
    }
    let resp = match client.get_file(&target, node_id, sha, offset).await? {
        Some(r) => r,
        None => return Ok(false),
    };
    // A peer that ignores the range sends the whole file.
    if resp.status() == reqwest::StatusCode::OK {
        offset = 0;
    }
    if offset > 0 {
        peering.files.resumed.fetch_add(1, Ordering::Relaxed);
        tracing::info!(peer = %url, sha256 = %sha, from = offset, size, "resuming a file transfer");
    } else {
        tracing::info!(peer = %url, sha256 = %sha, size, "fetching a file");
    }
    receive_partial(fed, sha, offset, size, Incoming::Fetched(resp), cancel, url).await?;
    Ok(true)
}

/// Where a transfer's bytes come from: the answer to a fetch, or the body
/// of a peer's push.
enum Incoming {
    Fetched(reqwest::Response),
    Pushed(Body),
}

impl Incoming {
    async fn chunk(&mut self) -> std::result::Result<Option<axum::body::Bytes>, String> {
        match self {
            Incoming::Fetched(r) => r.chunk().await.map_err(|e| e.to_string()),
            Incoming::Pushed(body) => loop {
                match body.frame().await {
                    None => return Ok(None),
                    Some(Err(e)) => return Err(e.to_string()),
                    Some(Ok(frame)) => {
                        if let Ok(data) = frame.into_data() {
                            return Ok(Some(data));
                        }
                    }
                }
            },
        }
    }
}

/// Writes a transfer into the partial file of `sha` from `offset` on,
/// then checks the whole file against its hash and moves it into place.
/// The caller holds the file's [`crate::blobs::Receiving`]. On an
/// interruption the bytes written so far stay for the next attempt.
async fn receive_partial(
    fed: &Federation,
    sha: &str,
    offset: u64,
    size: u64,
    mut incoming: Incoming,
    cancel: &CancellationToken,
    from: &str,
) -> Result<()> {
    let blobs = fed.blobs.clone();
    let sha_owned = sha.to_owned();
    let file = tokio::task::spawn_blocking(move || blobs.append_partial(&sha_owned, offset))
        .await
        .map_err(|e| Error::Storage(format!("opening a partial file: {e}")))??;
    let mut file = tokio::fs::File::from_std(file);
    let mut have = offset;
    let started = tokio::time::Instant::now();
    let rate = fed.attachment_limits.fetch_rate_bytes;
    loop {
        if let Some(rate) = rate {
            // `[attachments] fetch_rate`: no faster than this on average.
            let due = started + Duration::from_secs_f64((have - offset) as f64 / rate as f64);
            tokio::select! {
                _ = cancel.cancelled() => return Err(Error::ShuttingDown),
                _ = tokio::time::sleep_until(due) => {}
            }
        }
        let chunk = tokio::select! {
            _ = cancel.cancelled() => return Err(Error::ShuttingDown),
            c = tokio::time::timeout(Duration::from_secs(30), incoming.chunk()) => c,
        };
        let chunk = match chunk {
            Err(_) => return Err(Error::Config(format!("{from}: the file transfer stalled"))),
            Ok(Err(e)) => return Err(Error::Config(format!("{from}: {e}"))),
            Ok(Ok(None)) => break,
            Ok(Ok(Some(c))) => c,
        };
        have += chunk.len() as u64;
        if have > size {
            drop(file);
            fed.blobs.discard_partial(sha);
            return Err(Error::Config(format!(
                "{from} sent more bytes than the record names for {sha}"
            )));
        }
        file.write_all(&chunk)
            .await
            .map_err(|e| Error::Storage(format!("writing a partial file: {e}")))?;
        if let Some(p) = &fed.peering {
            p.files
                .fetched_bytes
                .fetch_add(chunk.len() as u64, Ordering::Relaxed);
        }
    }
    file.flush()
        .await
        .map_err(|e| Error::Storage(format!("writing a partial file: {e}")))?;
    drop(file);
    if have < size {
        return Err(Error::Config(format!(
            "{from}: the transfer ended at {have} of {size} bytes"
        )));
    }
    let blobs = fed.blobs.clone();
    let sha_owned = sha.to_owned();
    tokio::task::spawn_blocking(move || blobs.finish_partial(&sha_owned))
        .await
        .map_err(|e| Error::Storage(format!("checking a file: {e}")))??;
    if let Some(p) = &fed.peering {
        p.files.fetched.fetch_add(1, Ordering::Relaxed);
    }
    tracing::info!(peer = %from, sha256 = %sha, size, "file received and verified");
    Ok(())
}

/// Bytes held per origin town: every complete file once (the quota's
/// measure).
async fn held_by_town(fed: &Federation) -> Result<HashMap<String, u64>> {
    let mut held: HashMap<String, u64> = HashMap::new();
    for w in fed.store.named_attachments(false).await? {
        if fed.blobs.has(&w.sha256) {
            *held.entry(w.town).or_default() += w.size;
        }
    }
    Ok(held)
}

/// The most files one answer of `GET /yui/v1/attachments` lists; the
/// pusher asks again after sending them.
const WANTED_PER_ANSWER: usize = 256;

/// The files of live shared records that are not here and fit their
/// town's quota: what this node fetches, and what a peer that dials it
/// may push.
async fn wanted_here(fed: &Federation) -> Result<Vec<WantedFile>> {
    let missing: Vec<_> = fed
        .store
        .named_attachments(true)
        .await?
        .into_iter()
        .filter(|w| !fed.blobs.has(&w.sha256))
        .collect();
    if missing.is_empty() {
        return Ok(missing);
    }
    let mut held = held_by_town(fed).await?;
    let quota = fed.attachment_limits.town_quota_bytes;
    Ok(missing
        .into_iter()
        .filter(|w| {
            let used = held.entry(w.town.clone()).or_default();
            if *used + w.size > quota {
                return false;
            }
            *used += w.size;
            true
        })
        .collect())
}

/// `GET /yui/v1/attachments` from a member that dials this node: the
/// files this node lacks, so that a node nobody dials still gets them.
pub(super) async fn list_wanted(fed: &Federation, peer: &PeerIdentity) -> Response {
    match wanted_here(fed).await {
        Ok(wanted) => {
            let files: Vec<WantedByPeer> = wanted
                .into_iter()
                .take(WANTED_PER_ANSWER)
                .map(|w| WantedByPeer {
                    have: fed.blobs.partial_len(&w.sha256).min(w.size),
                    sha256: w.sha256,
                    size: w.size,
                })
                .collect();
            tracing::debug!(peer = %peer.town, wanted = files.len(), "listed the files this node lacks");
            axum::Json(WantedList { files }).into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "listing the files this node lacks");
            (StatusCode::SERVICE_UNAVAILABLE, "try again later").into_response()
        }
    }
}

/// `Content-Range: bytes START-END/SIZE` of a push.
fn content_range(headers: &HeaderMap) -> Option<(u64, u64)> {
    let v = headers.get(header::CONTENT_RANGE)?.to_str().ok()?;
    let rest = v.strip_prefix("bytes ")?;
    let (range, size) = rest.split_once('/')?;
    let (start, _end) = range.split_once('-')?;
    Some((start.parse().ok()?, size.parse().ok()?))
}

/// `PUT /yui/v1/attachments/{sha256}` from a member that dials this node:
/// the bytes of a file this node lacks, from the offset it said it holds.
/// Taken only for a file a live shared record here names, within its
/// town's quota, and kept only when the whole file matches its hash.
pub(super) async fn receive_file(
    fed: &Federation,
    peer: &PeerIdentity,
    sha: String,
    headers: &HeaderMap,
    body: Body,
    cancel: &CancellationToken,
) -> Response {
    if !is_sha256(&sha) {
        return (StatusCode::NOT_FOUND, "not a SHA-256").into_response();
    }
    let Some((start, size)) = content_range(headers) else {
        return (
            StatusCode::BAD_REQUEST,
            "a push needs Content-Range: bytes START-END/SIZE",
        )
            .into_response();
    };
    if fed.blobs.has(&sha) {
        return (StatusCode::OK, "this node has the file already").into_response();
    }
    let wanted = match wanted_here(fed).await {
        Ok(w) => w,
        Err(e) => {
            tracing::error!(error = %e, "listing the files this node lacks");
            return (StatusCode::SERVICE_UNAVAILABLE, "try again later").into_response();
        }
    };
    let Some(w) = wanted.into_iter().find(|w| w.sha256 == sha) else {
        // Named by no live shared record here (a local record's file, a
        // deleted record, a record not yet received), or over the quota.
        tracing::info!(peer = %peer.town, sha256 = %sha, "refused a pushed file: no shared record here wants it");
        return (
            StatusCode::NOT_FOUND,
            "no shared record of this node wants this file (unknown, deleted, or over the town's quota)",
        )
            .into_response();
    };
    if size != w.size {
        return (
            StatusCode::BAD_REQUEST,
            format!(
                "the record names {} bytes for this file, not {size}",
                w.size
            ),
        )
            .into_response();
    }
    let Some(_receiving) = fed.blobs.begin_receiving(&sha) else {
        return (
            StatusCode::CONFLICT,
            "this node is receiving the file from another peer",
        )
            .into_response();
    };
    let have = fed.blobs.partial_len(&sha);
    if start > have || start > size {
        return (
            StatusCode::CONFLICT,
            format!("this node holds {have} bytes of the file; send from there"),
        )
            .into_response();
    }
    if start > 0
        && let Some(p) = &fed.peering
    {
        p.files.resumed.fetch_add(1, Ordering::Relaxed);
    }
    tracing::info!(peer = %peer.town, sha256 = %sha, from = start, size, "receiving a pushed file");
    match receive_partial(
        fed,
        &sha,
        start,
        size,
        Incoming::Pushed(body),
        cancel,
        &peer.town,
    )
    .await
    {
        Ok(()) => (StatusCode::CREATED, "received and verified").into_response(),
        Err(e) => {
            tracing::info!(peer = %peer.town, sha256 = %sha, error = %e, "a pushed file was not completed");
            let status = match e {
                Error::Storage(_) | Error::StorageFull { .. } | Error::ShuttingDown => {
                    StatusCode::SERVICE_UNAVAILABLE
                }
                _ => StatusCode::BAD_REQUEST,
            };
            (status, e.to_string()).into_response()
        }
    }
}

/// Pushes to the peers this node dials the files they lack and this node
/// holds; answers how many of those are still not delivered.
async fn push_round(fed: &Federation, cancel: &CancellationToken) -> Result<u64> {
    let Some(peering) = fed.peering.clone() else {
        return Ok(0);
    };
    let peers: Vec<_> = fed
        .store
        .peers()
        .await?
        .into_iter()
        .filter_map(|p| Some((p.url.clone(), p.node_id.clone()?, p.town.clone())))
        .collect();
    let mut left = 0;
    for (url, node_id, town) in peers {
        if cancel.is_cancelled() {
            break;
        }
        let client = peering.client();
        let Ok(target) = parse_peer_url(&url) else {
            continue;
        };
        let wanted = match client.wanted_files(&target, &node_id).await {
            Ok(w) => w,
            Err(e) => {
                tracing::debug!(peer = %url, error = %e, "asking which files the peer lacks failed");
                continue;
            }
        };
        for w in wanted {
            if cancel.is_cancelled() {
                break;
            }
            if !is_sha256(&w.sha256) || !fed.blobs.has(&w.sha256) {
                continue;
            }
            // The same rule as serving a fetch: only a file a live shared
            // record here names, never a local record's.
            let shared = match fed.store.shared_ref(w.sha256.clone()).await? {
                Some(s) => s,
                None => continue,
            };
            let peer_town = town.as_deref().unwrap_or("");
            match push_one(
                fed, &client, &url, &target, &node_id, peer_town, shared, &w, cancel,
            )
            .await
            {
                Ok(()) => {}
                Err(e) => {
                    left += 1;
                    tracing::info!(peer = %url, sha256 = %w.sha256, error = %e, "pushing a file failed; will retry");
                }
            }
        }
    }
    Ok(left)
}

/// Sends one file to one peer from the bytes it holds on.
#[allow(clippy::too_many_arguments)]
async fn push_one(
    fed: &Federation,
    client: &PeerClient,
    url: &str,
    target: &super::client::PeerUrl,
    node_id: &str,
    town: &str,
    shared: crate::store::SharedRef,
    wanted: &WantedByPeer,
    cancel: &CancellationToken,
) -> Result<()> {
    let Some((file, len)) = fed.blobs.open(&wanted.sha256)? else {
        return Ok(());
    };
    if len != wanted.size {
        return Err(Error::Config(format!(
            "the peer's record names {} bytes, the file here has {len}",
            wanted.size
        )));
    }
    let start = if wanted.have < len { wanted.have } else { 0 };
    let sending = len - start;
    // The ledger first: a file is recorded before a byte of it leaves.
    fed.store
        .record_file_egress(
            node_id.to_owned(),
            town.to_owned(),
            shared,
            wanted.sha256.clone(),
            sending,
        )
        .await?;
    let mut file = tokio::fs::File::from_std(file);
    if start > 0 {
        file.seek(std::io::SeekFrom::Start(start))
            .await
            .map_err(|e| Error::Storage(format!("reading an attachment: {e}")))?;
    }
    tracing::info!(peer = %url, sha256 = %wanted.sha256, from = start, bytes = sending, "pushing a file");
    let body =
        reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(file, 256 << 10));
    let (status, text) = tokio::select! {
        _ = cancel.cancelled() => return Err(Error::ShuttingDown),
        r = client.put_file(target, node_id, &wanted.sha256, start, len, body) => r?,
    };
    if !status.is_success() {
        return Err(Error::Config(format!(
            "the peer refused the file ({status}): {text}"
        )));
    }
    if let Some(p) = &fed.peering {
        p.files.served.fetch_add(1, Ordering::Relaxed);
        p.files.served_bytes.fetch_add(sending, Ordering::Relaxed);
    }
    Ok(())
}
