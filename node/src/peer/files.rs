//! Attached files between towns (protocol.md 3.3). A record's document
//! names its files by SHA-256 and travels by sync as signed changes; the
//! bytes follow in the background: the *fetcher* (one task per node) looks
//! for files that live shared records name and that are not here, and asks
//! the peers this node dials for each (`GET /yui/v1/attachments/{sha256}`),
//! resuming a transfer from the bytes already on disk (`Range`), checking
//! the hash before the file becomes visible, and keeping each origin
//! town's files within `[attachments] town_quota`. A relay fetches a file
//! first and then serves it onwards.
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
use super::client::{PeerClient, parse_peer_url};
use crate::error::{Error, Result};
use crate::pki::PeerIdentity;

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
            _ = tokio::time::sleep(wait) => {}
        }
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
    // Bytes held per origin town (every file once, the quota's measure).
    let mut held: HashMap<String, u64> = HashMap::new();
    for w in fed.store.named_attachments(false).await? {
        if fed.blobs.has(&w.sha256) {
            *held.entry(w.town).or_default() += w.size;
        }
    }
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
    let mut resp = match client.get_file(&target, node_id, sha, offset).await? {
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
            c = tokio::time::timeout(Duration::from_secs(30), resp.chunk()) => c,
        };
        let chunk = match chunk {
            Err(_) => return Err(Error::Config(format!("{url}: the file transfer stalled"))),
            Ok(Err(e)) => return Err(Error::Config(format!("{url}: {e}"))),
            Ok(Ok(None)) => break,
            Ok(Ok(Some(c))) => c,
        };
        have += chunk.len() as u64;
        if have > size {
            drop(file);
            fed.blobs.discard_partial(sha);
            return Err(Error::Config(format!(
                "{url} sent more bytes than the record names for {sha}"
            )));
        }
        file.write_all(&chunk)
            .await
            .map_err(|e| Error::Storage(format!("writing a partial file: {e}")))?;
        peering
            .files
            .fetched_bytes
            .fetch_add(chunk.len() as u64, Ordering::Relaxed);
    }
    file.flush()
        .await
        .map_err(|e| Error::Storage(format!("writing a partial file: {e}")))?;
    drop(file);
    if have < size {
        return Err(Error::Config(format!(
            "{url}: the transfer ended at {have} of {size} bytes"
        )));
    }
    let blobs = fed.blobs.clone();
    let sha_owned = sha.to_owned();
    tokio::task::spawn_blocking(move || blobs.finish_partial(&sha_owned))
        .await
        .map_err(|e| Error::Storage(format!("checking a file: {e}")))??;
    peering.files.fetched.fetch_add(1, Ordering::Relaxed);
    tracing::info!(peer = %url, sha256 = %sha, size, "file received and verified");
    Ok(true)
}
