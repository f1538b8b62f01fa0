//! Outbound peering: one long-lived HTTPS client for every peer, and one
//! exchange (push and/or pull) with one peer.
//!
//! Peers are dialled by whatever the administrator gave — an IP address or a
//! name that may not be in DNS. The request goes to a synthetic host name
//! carrying the expected node id (see `tls`), which our resolver maps back to
//! the real address, so the TLS verifier knows which node must answer. Per-peer
//! state (cursors, known heads) is written only after an exchange succeeded:
//! a failed exchange leaves nothing to rebuild.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use yui_protocol::session;
use yui_protocol::wire::{SyncRequest, SyncResponse};

use super::Federation;
use super::codec;
use super::tls::{self, Trust};
use crate::error::{Error, Result};
use crate::pki::PeerIdentity;

/// Maps synthetic peer host names to the host to really dial.
#[derive(Default, Clone)]
struct Hosts(Arc<RwLock<HashMap<String, String>>>);

impl reqwest::dns::Resolve for Hosts {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let real = self
            .0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(name.as_str())
            .cloned()
            .unwrap_or_else(|| name.as_str().to_owned());
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = match real.parse::<std::net::IpAddr>() {
                Ok(ip) => vec![SocketAddr::new(ip, 0)],
                Err(_) => tokio::net::lookup_host((real.as_str(), 0)).await?.collect(),
            };
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

pub struct PeerClient {
    http: reqwest::Client,
    hosts: Hosts,
    trust: Arc<Trust>,
}

/// A peer's address as the administrator gave it.
#[derive(Debug, Clone)]
pub struct PeerUrl {
    pub host: String,
    pub port: u16,
}

impl PeerUrl {
    /// The one spelling a peer is stored under: `https://host:port`.
    pub fn canonical(&self) -> String {
        if self.host.contains(':') {
            format!("https://[{}]:{}", self.host, self.port)
        } else {
            format!("https://{}:{}", self.host, self.port)
        }
    }
}

/// Checks a peer URL: `https://HOST:PORT` with nothing after the port.
pub fn parse_peer_url(url: &str) -> Result<PeerUrl> {
    let bad = |why: &str| {
        Error::bad_request(
            "invalid_peer_url",
            format!("{url:?} is not a peer URL ({why}); use https://HOST:PORT"),
        )
    };
    let parsed = reqwest::Url::parse(url).map_err(|_| bad("unreadable"))?;
    if parsed.scheme() != "https" {
        return Err(bad("the scheme must be https"));
    }
    if !(parsed.path().is_empty() || parsed.path() == "/")
        || parsed.query().is_some()
        || !parsed.username().is_empty()
    {
        return Err(bad("give only the host and port"));
    }
    if parsed.port() == Some(0) {
        return Err(bad("port 0 is no port a node listens on"));
    }
    let host = parsed.host_str().ok_or_else(|| bad("no host"))?;
    // The host as written: a URL parser reads `1.2.3`, `%41`, `*` or a
    // Unicode name as something else, or as a name no DNS can hold.
    // (An IPv6 address may be written in several ways.)
    let ipv6 = host.starts_with('[');
    let written = ipv6
        || url
            .get("https://".len()..)
            .is_some_and(|rest| rest.to_ascii_lowercase().starts_with(host));
    let is_name = !ipv6 && host.parse::<std::net::Ipv4Addr>().is_err();
    if !written || (is_name && !is_host_name(host)) {
        return Err(bad(
            "the host must be a DNS name or an IP address, written out",
        ));
    }
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    Ok(PeerUrl {
        host,
        port: parsed.port().unwrap_or(crate::datadir::DEFAULT_PEER_PORT),
    })
}

/// A DNS name: dot-separated labels of 1 to 63 letters, digits and inner
/// hyphens, the last starting with a letter.
fn is_host_name(host: &str) -> bool {
    let label = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    host.split('.').all(label)
        && host
            .rsplit('.')
            .next()
            .is_some_and(|last| last.starts_with(|c: char| c.is_ascii_alphabetic()))
}

/// What one exchange did.
#[derive(Debug, Default, Clone)]
pub struct Exchange {
    pub bytes_out: u64,
    pub bytes_in: u64,
    pub docs_out: u64,
    pub docs_in: u64,
    pub more: bool,
    pub push_cursor: Option<u64>,
    pub pull_cursor: Option<u64>,
    /// Needs we could not satisfy from the peer's answer, to send next time.
    pub needs: Vec<yui_protocol::wire::Need>,
    /// The server's revocation-list number.
    pub server_revocations: u64,
    /// Whether a request was sent at all (a push with nothing new sends none).
    pub sent: bool,
    /// The server turned out to be restored from a backup.
    pub server_restored: bool,
}

/// A peer's answer, received and not yet stored.
pub struct Fetched {
    pub sent: session::Outgoing,
    pub response: SyncResponse,
    pub bytes_out: u64,
    pub bytes_in: u64,
}

/// Sends a request built by `session` and returns the answer. Fills in the
/// revocation fields (our list goes along when the server's number is
/// lower) and installs a newer list the answer carries.
pub async fn send(
    fed: &Federation,
    client: &PeerClient,
    url: &PeerUrl,
    node_id: &str,
    mut sent: session::Outgoing,
    server_revocations: u64,
) -> Result<Fetched> {
    let peering = fed
        .peering
        .as_ref()
        .ok_or_else(|| Error::Config("not joined".into()))?;
    let own = peering.trust().revocation_number();
    sent.request.revocation_number = own;
    if own > server_revocations {
        sent.request.revocations = Some(peering.trust().revocations_der());
    }
    // The certificates of the signers of what we push (not our own: the
    // server has it from the handshake).
    if let Some(ext) = peering
        .certificates_for(&fed.store, &sent.request.push, false)
        .await
    {
        sent.request.extensions.push(ext);
    }
    let (response, bytes_out, bytes_in, server_cert) =
        client.sync(url, node_id, &sent.request).await?;
    peering
        .learn_certificates(
            &fed.store,
            server_cert.as_deref(),
            &response.extensions,
            &url.canonical(),
        )
        .await;
    if let Some(der) = &response.revocations
        && let Err(e) = peering.install_revocations(&fed.store, &fed.data_dir, der)
    {
        tracing::warn!(error = %e, "a peer sent a revocation list that does not verify");
    }
    Ok(Fetched {
        sent,
        response,
        bytes_out,
        bytes_in,
    })
}

impl PeerClient {
    pub fn new(trust: &Arc<Trust>) -> Result<PeerClient> {
        let hosts = Hosts::default();
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(trust.client_config()?)
            .dns_resolver(hosts.clone())
            // A town's HTTPS proxy must not reroute federation traffic.
            .no_proxy()
            .tls_info(true)
            .connect_timeout(Duration::from_secs(5))
            .pool_idle_timeout(Duration::from_secs(90))
            .build()
            .map_err(|e| Error::Config(format!("building the peer client: {e}")))?;
        Ok(PeerClient {
            http,
            hosts,
            trust: trust.clone(),
        })
    }

    fn base(&self, url: &PeerUrl, node_id: Option<&str>, index: usize) -> String {
        let synthetic = match node_id {
            Some(id) => tls::host_for_node(id),
            None => tls::host_for_unknown(index),
        };
        self.hosts
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(synthetic.clone(), url.host.clone());
        format!("https://{synthetic}:{}", url.port)
    }

    /// Asks a peer who it is. Any consortium node passes the TLS check; the
    /// answer's certificate says which one it is.
    pub async fn hello(&self, url: &PeerUrl, index: usize) -> Result<PeerIdentity> {
        let resp = self
            .http
            .get(format!("{}/yui/v1/hello", self.base(url, None, index)))
            .timeout(Duration::from_secs(15))
            .send()
            .await
            .map_err(|e| describe(e, url))?;
        let cert = resp
            .extensions()
            .get::<reqwest::tls::TlsInfo>()
            .and_then(|t| t.peer_certificate())
            .map(<[u8]>::to_vec)
            .ok_or_else(|| Error::Config("the peer presented no certificate".into()))?;
        if !resp.status().is_success() {
            return Err(Error::Config(format!(
                "the peer answered {}",
                resp.status()
            )));
        }
        crate::pki::identity(&cert)
    }

    /// Asks a peer for a file from byte `offset` on (protocol.md 3.3):
    /// the answer, whose body the caller reads, or None when the peer does
    /// not have it (404).
    pub async fn get_file(
        &self,
        url: &PeerUrl,
        node_id: &str,
        sha256: &str,
        offset: u64,
    ) -> Result<Option<reqwest::Response>> {
        let mut request = self.http.get(format!(
            "{}/yui/v1/attachments/{sha256}",
            self.base(url, Some(node_id), 0)
        ));
        if offset > 0 {
            request = request.header(reqwest::header::RANGE, format!("bytes={offset}-"));
        }
        let resp = request.send().await.map_err(|e| describe(e, url))?;
        self.check_not_revoked(&resp, url)?;
        match resp.status() {
            reqwest::StatusCode::OK | reqwest::StatusCode::PARTIAL_CONTENT => Ok(Some(resp)),
            reqwest::StatusCode::NOT_FOUND => Ok(None),
            status => {
                let text = resp.text().await.unwrap_or_default();
                Err(Error::Config(format!(
                    "the peer refused the file ({status}): {}",
                    text.chars().take(200).collect::<String>()
                )))
            }
        }
    }

    /// Refuses an answer from a peer whose certificate is revoked (a pooled
    /// connection may predate the revocation).
    fn check_not_revoked(&self, resp: &reqwest::Response, url: &PeerUrl) -> Result<()> {
        if let Some(cert) = resp
            .extensions()
            .get::<reqwest::tls::TlsInfo>()
            .and_then(|t| t.peer_certificate())
        {
            let id = crate::pki::identity(cert)?;
            if self.trust.is_revoked(&id.serial) {
                return Err(Error::Config(format!(
                    "https://{}:{}: the peer's certificate is revoked",
                    url.host, url.port
                )));
            }
        }
        Ok(())
    }

    /// Asks a peer which files of its shared records it lacks and would
    /// take (protocol.md 3.3, `GET /yui/v1/attachments`). A peer from
    /// before file pushes answers 404: it wants nothing pushed.
    pub async fn wanted_files(&self, url: &PeerUrl, node_id: &str) -> Result<Vec<WantedByPeer>> {
        let resp = self
            .http
            .get(format!(
                "{}/yui/v1/attachments",
                self.base(url, Some(node_id), 0)
            ))
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .map_err(|e| describe(e, url))?;
        self.check_not_revoked(&resp, url)?;
        match resp.status() {
            reqwest::StatusCode::OK => {}
            reqwest::StatusCode::NOT_FOUND => return Ok(Vec::new()),
            status => {
                return Err(Error::Config(format!(
                    "the peer refused to list the files it wants ({status})"
                )));
            }
        }
        let bytes = resp.bytes().await.map_err(|e| describe(e, url))?;
        let list: WantedList = serde_json::from_slice(&bytes)
            .map_err(|e| Error::Config(format!("the peer's list of wanted files: {e}")))?;
        Ok(list.files)
    }

    /// Sends a peer the bytes of a file from `offset` on
    /// (`PUT /yui/v1/attachments/{sha256}`); the peer checks them against
    /// the hash its record names. Answers the peer's status and text.
    pub async fn put_file(
        &self,
        url: &PeerUrl,
        node_id: &str,
        sha256: &str,
        offset: u64,
        size: u64,
        body: reqwest::Body,
    ) -> Result<(reqwest::StatusCode, String)> {
        let resp = self
            .http
            .put(format!(
                "{}/yui/v1/attachments/{sha256}",
                self.base(url, Some(node_id), 0)
            ))
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .header(
                reqwest::header::CONTENT_RANGE,
                format!("bytes {offset}-{}/{size}", size.saturating_sub(1)),
            )
            .body(body)
            .send()
            .await
            .map_err(|e| describe(e, url))?;
        self.check_not_revoked(&resp, url)?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        Ok((status, text.chars().take(300).collect()))
    }

    /// Sends one sync request and returns the decoded answer and the bytes
    /// that crossed (request body, response body).
    pub async fn sync(
        &self,
        url: &PeerUrl,
        node_id: &str,
        req: &SyncRequest,
    ) -> Result<(SyncResponse, u64, u64, Option<Vec<u8>>)> {
        let (body, gzipped) = codec::compress(req.to_wire());
        let sent = body.len() as u64;
        let mut request = self
            .http
            .post(format!("{}/yui/v1/sync", self.base(url, Some(node_id), 0)))
            .header(reqwest::header::CONTENT_TYPE, codec::CONTENT_TYPE)
            .header(reqwest::header::ACCEPT_ENCODING, "gzip")
            .timeout(Duration::from_millis(u64::from(req.wait_ms)) + Duration::from_secs(60))
            .body(body);
        if gzipped {
            request = request.header(reqwest::header::CONTENT_ENCODING, "gzip");
        }
        let resp = request.send().await.map_err(|e| describe(e, url))?;
        // A pooled connection may predate a revocation: check the server's
        // certificate against the current list on every answer.
        let server_cert = resp
            .extensions()
            .get::<reqwest::tls::TlsInfo>()
            .and_then(|t| t.peer_certificate())
            .map(<[u8]>::to_vec);
        if let Some(cert) = &server_cert {
            let id = crate::pki::identity(cert)?;
            if self.trust.is_revoked(&id.serial) {
                return Err(Error::Config(format!(
                    "https://{}:{}: the peer's certificate ({}, node {}) is revoked; its answer was discarded",
                    url.host, url.port, id.town, id.node_id
                )));
            }
        }
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.map_err(|e| describe(e, url))?;
        if !status.is_success() {
            let text = String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).into_owned();
            return Err(Error::Config(format!(
                "the peer refused the exchange ({status}): {text}"
            )));
        }
        let mut map = axum::http::HeaderMap::new();
        if let Some(enc) = headers.get(reqwest::header::CONTENT_ENCODING)
            && let Ok(v) = axum::http::HeaderValue::from_bytes(enc.as_bytes())
        {
            map.insert(axum::http::header::CONTENT_ENCODING, v);
        }
        let raw = codec::decode_body(&map, &bytes).map_err(Error::Config)?;
        let answer = SyncResponse::decode_checked(&raw)
            .map_err(|e| Error::Config(format!("the peer's answer: {e}")))?;
        Ok((answer, sent, bytes.len() as u64, server_cert))
    }
}

/// One file a peer lacks (`GET /yui/v1/attachments`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct WantedByPeer {
    pub sha256: String,
    /// The size its record names.
    pub size: u64,
    /// Bytes of it the peer already holds from an interrupted transfer:
    /// a push goes on from there.
    pub have: u64,
}

/// The answer of `GET /yui/v1/attachments`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct WantedList {
    pub files: Vec<WantedByPeer>,
}

/// An error of the HTTPS layer, in words an administrator can act on, naming
/// the address they gave rather than the synthetic host name.
fn describe(e: reqwest::Error, url: &PeerUrl) -> Error {
    let mut msg = format!("https://{}:{}: ", url.host, url.port);
    let mut source = std::error::Error::source(&e);
    let mut parts = Vec::new();
    while let Some(s) = source {
        parts.push(s.to_string());
        source = s.source();
    }
    // The innermost causes say what happened; reqwest's outer text repeats the URL.
    parts.retain(|p| !p.contains(".yui.invalid"));
    if parts.is_empty() {
        parts.push(if e.is_timeout() {
            "request timed out".to_owned()
        } else {
            "request failed".to_owned()
        });
    }
    msg.push_str(&parts.join(": "));
    let about_certificates =
        msg.contains("certificate") || msg.contains("alert") || msg.contains("Certificate");
    let hint = if e.is_connect() && !about_certificates {
        " (is the peer running and reachable?)"
    } else if e.is_timeout() {
        " (timed out)"
    } else {
        ""
    };
    Error::Config(format!("{msg}{hint}"))
}

/// Logs the documents each side refused in one exchange with the peer at
/// `url`, and counts those refused here (status, `/metrics`): refusals are
/// final, so an administrator must hear of them. Also logs the records that
/// took late signatures (protocol.md 7.6), rare and worth a line.
pub fn log_refusals(fed: &Federation, url: &str, node_id: &str, outcome: &session::ClientOutcome) {
    if outcome.signed > 0 {
        tracing::info!(peer = %node_id, records = outcome.signed, "took signatures of changes held here without one");
    }
    for r in &outcome.refused_by_peer {
        tracing::warn!(peer = %node_id, id = %r.id, code = %r.code, reason = %r.message, "the peer refused a document");
    }
    for r in &outcome.refused_here {
        tracing::warn!(peer = %node_id, %url, id = %r.id, code = %r.code, reason = %r.message, "refused a document from a peer");
    }
    if let Some(peering) = &fed.peering {
        peering.refused_in_answer(url, outcome.refused_here.len() as u64);
    }
}

/// Runs one exchange with a peer: push what it lacks, pull what we lack.
#[allow(clippy::too_many_arguments)]
pub async fn exchange(
    fed: &Federation,
    client: &PeerClient,
    stored_url: &str,
    url: &PeerUrl,
    node_id: &str,
    cursors: session::Cursors,
    push: bool,
    pull: bool,
    wait_ms: u32,
    needs: Vec<yui_protocol::wire::Need>,
    server_revocations: u64,
) -> Result<Exchange> {
    let step = fed
        .store
        .sync_request(node_id.to_owned(), cursors, push, pull, wait_ms, needs)
        .await?;
    let sent = match step {
        session::ClientStep::Skip { push_cursor, more } => {
            return Ok(Exchange {
                push_cursor,
                more,
                ..Exchange::default()
            });
        }
        session::ClientStep::Send(sent) => *sent,
    };
    // The ledger first: once the request is on its way, it has left.
    fed.store
        .record_push(node_id.to_owned(), String::new(), sent.request.push.clone())
        .await?;
    let Fetched {
        sent,
        response: resp,
        bytes_out,
        bytes_in,
    } = send(fed, client, url, node_id, sent, server_revocations).await?;
    let server_revocations = resp.revocation_number;
    let outcome = fed
        .store
        .sync_apply(stored_url.to_owned(), node_id.to_owned(), sent, resp)
        .await?;
    log_refusals(fed, stored_url, node_id, &outcome);
    Ok(Exchange {
        bytes_out,
        bytes_in,
        docs_out: outcome.docs_out as u64,
        docs_in: outcome.docs_in as u64,
        more: outcome.more,
        push_cursor: outcome.push_cursor,
        pull_cursor: outcome.pull_cursor,
        needs: outcome.needs,
        server_revocations,
        sent: true,
        server_restored: outcome.server_restored,
    })
}
