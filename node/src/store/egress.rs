//! The egress ledger: a row for every document handed to a peer (`yui audit
//! egress`), written in the same transaction as the sync state that sent
//! it, and the last-line refusal of anything not of a shared collection.

use rusqlite::{Connection, params};
use yui_protocol::Collection;
use yui_protocol::wire::DocUpdate;

use super::Store;
use crate::error::{Error, Result};

/// One document sent to a peer (`yui audit egress`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct EgressEntry {
    /// When it was handed to the connection (RFC 3339, UTC).
    pub at: String,
    /// The peer's node id.
    pub peer: String,
    /// The peer's town, from its certificate (empty if not known yet).
    pub peer_town: String,
    /// `pulled` (the peer asked) or `pushed` (this node sent it).
    pub way: String,
    pub record_id: String,
    pub collection: String,
    /// The document's heads after the changes sent (hex change hashes):
    /// what was sent is every change up to them that the peer lacked.
    pub heads: Vec<String>,
    /// The size of the changes sent.
    pub bytes: u64,
}

#[derive(Clone, Copy)]
pub(super) enum EgressWay {
    Pulled,
    Pushed,
}

/// Writes the ledger rows for documents about to leave. Refuses, as a last
/// line, anything that is not of a shared collection: the sync layer cannot
/// express one, and this keeps it so for every future code path.
pub(super) fn record_egress(
    conn: &Connection,
    peer: &str,
    peer_town: &str,
    way: EgressWay,
    docs: &[DocUpdate],
) -> Result<()> {
    // The API's one time format (three fractional digits), so the ledger's
    // times sort as text like every other.
    let at = yui_protocol::record::format_time(crate::clock::now_ms());
    let way = match way {
        EgressWay::Pulled => "pulled",
        EgressWay::Pushed => "pushed",
    };
    let mut insert = conn.prepare_cached(
        "INSERT INTO egress (at, peer, peer_town, way, record_id, collection, heads, bytes)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?;
    for d in docs {
        let shared = d
            .collection
            .parse::<Collection>()
            .is_ok_and(|c| c.is_shared());
        if !shared {
            return Err(Error::Storage(format!(
                "refused to send {} of collection {:?} to a peer: not a shared collection",
                d.id, d.collection
            )));
        }
        let heads: Vec<String> = d.heads.iter().map(|h| hex(h)).collect();
        insert.execute(params![
            at,
            peer,
            peer_town,
            way,
            d.id,
            d.collection,
            heads.join(","),
            d.changes.len() as i64
        ])?;
    }
    Ok(())
}

/// The ledger row of a file sent to a peer: `way` is `file`, `heads` the
/// file's SHA-256, `bytes` what was sent (the remainder, on a resumed
/// transfer), the record one live shared record that names it.
pub(super) fn record_file(
    conn: &Connection,
    peer: &str,
    peer_town: &str,
    shared: &super::attachments::SharedRef,
    sha256: &str,
    bytes: u64,
) -> Result<()> {
    if !shared
        .collection
        .parse::<Collection>()
        .is_ok_and(|c| c.is_shared())
    {
        return Err(Error::Storage(format!(
            "refused to send a file of {} ({:?}) to a peer: not a shared collection",
            shared.record_id, shared.collection
        )));
    }
    let at = yui_protocol::record::format_time(crate::clock::now_ms());
    conn.prepare_cached(
        "INSERT INTO egress (at, peer, peer_town, way, record_id, collection, heads, bytes)
         VALUES (?1, ?2, ?3, 'file', ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        at,
        peer,
        peer_town,
        shared.record_id,
        shared.collection,
        sha256,
        bytes as i64
    ])?;
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Store {
    /// Client side, a write before a push goes out: the egress ledger.
    pub async fn record_push(
        &self,
        peer: String,
        peer_town: String,
        docs: Vec<DocUpdate>,
    ) -> Result<()> {
        if docs.is_empty() {
            return Ok(());
        }
        self.write(move |conn, _| record_egress(conn, &peer, &peer_town, EgressWay::Pushed, &docs))
            .await
    }

    /// Whether `since` reads as the UTC date or time [`Store::egress`]
    /// compares with, as text, the stored times: `2026-11-21`,
    /// `2026-11-21T09:00`, `2026-11-21T09:00:00`, with seconds' fractions
    /// and a `Z` optional. Callers reject or drop anything else.
    pub fn is_egress_since(since: &str) -> bool {
        fn digits(s: &[u8], shape: &str) -> bool {
            s.len() == shape.len()
                && s.iter().zip(shape.bytes()).all(|(c, want)| match want {
                    b'9' => c.is_ascii_digit(),
                    _ => *c == want,
                })
        }
        let s = since.strip_suffix('Z').unwrap_or(since).as_bytes();
        let (date, rest) = s.split_at(s.len().min(10));
        if !digits(date, "9999-99-99") || (rest.is_empty() && since.ends_with('Z')) {
            return false;
        }
        let (minutes, rest) = rest.split_at(rest.len().min(6));
        if minutes.is_empty() {
            return true;
        }
        if !digits(minutes, "T99:99") {
            return false;
        }
        let (seconds, fraction) = rest.split_at(rest.len().min(3));
        (seconds.is_empty() || digits(seconds, ":99"))
            && (fraction.is_empty()
                || (!seconds.is_empty()
                    && fraction.len() >= 2
                    && fraction.len() <= 10
                    && fraction[0] == b'.'
                    && fraction[1..].iter().all(u8::is_ascii_digit)))
    }

    /// The egress ledger, newest first: every document this node sent to a
    /// peer, optionally only to one peer (node id or town) and since a time
    /// (RFC 3339, compared as text, so `2026-11-21` works too).
    pub async fn egress(
        &self,
        peer: Option<String>,
        since: Option<String>,
        limit: usize,
    ) -> Result<Vec<EgressEntry>> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                // A push's town comes from the peer list (the dialled
                // node's certificate), a pull's from the connection's.
                "SELECT at, peer, town, way, record_id, collection, heads, bytes FROM (
                     SELECT e.rowid AS n, e.*, coalesce(nullif(e.peer_town, ''),
                         (SELECT p.town FROM peers p WHERE p.node_id = e.peer LIMIT 1), '') AS town
                     FROM egress e)
                 WHERE (?1 IS NULL OR peer = ?1 OR town = ?1) AND (?2 IS NULL OR at >= ?2)
                 ORDER BY n DESC LIMIT ?3",
            )?;
            let rows = stmt
                .query_map(params![peer, since, limit as i64], |r| {
                    Ok(EgressEntry {
                        at: r.get(0)?,
                        peer: r.get(1)?,
                        peer_town: r.get(2)?,
                        way: r.get(3)?,
                        record_id: r.get(4)?,
                        collection: r.get(5)?,
                        heads: r
                            .get::<_, String>(6)?
                            .split(',')
                            .filter(|h| !h.is_empty())
                            .map(str::to_owned)
                            .collect(),
                        bytes: r.get::<_, i64>(7)? as u64,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }
}
