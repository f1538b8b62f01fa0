//! The peers this node dials: their URLs, identities, cursors and the
//! counters of their exchanges.

use rusqlite::params;
use yui_protocol::Millis;

use super::Store;
use crate::error::{Error, Result};

/// A peer this node dials, as `status` and the API show it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PeerInfo {
    pub url: String,
    pub node_id: Option<String>,
    pub town: Option<String>,
    pub push_cursor: u64,
    pub pull_cursor: u64,
    pub added_at: Millis,
    pub last_attempt_at: Option<Millis>,
    pub last_success_at: Option<Millis>,
    pub last_error: Option<String>,
    pub failures: i64,
    pub rounds: i64,
    pub bytes_in: i64,
    pub bytes_out: i64,
    pub docs_in: i64,
    pub docs_out: i64,
    /// Shared records this peer is not yet known to have.
    pub pending: u64,
}

/// The outcome of one exchange, for [`Store::peer_round`].
#[derive(Debug, Clone, Default)]
pub struct PeerRound {
    pub at: Millis,
    pub error: Option<String>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub docs_in: u64,
    pub docs_out: u64,
    pub push_cursor: Option<u64>,
    pub pull_cursor: Option<u64>,
}

impl Store {
    /// The peers this node dials, with their sync state.
    pub async fn peers(&self) -> Result<Vec<PeerInfo>> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT url, node_id, town, push_cursor, pull_cursor, added_at, last_attempt_at,
                        last_success_at, last_error, failures, rounds, bytes_in, bytes_out, docs_in, docs_out
                 FROM peers ORDER BY added_at, url",
            )?;
            let mut peers = stmt
                .query_map([], |r| {
                    Ok(PeerInfo {
                        url: r.get(0)?,
                        node_id: r.get(1)?,
                        town: r.get(2)?,
                        push_cursor: r.get::<_, i64>(3)? as u64,
                        pull_cursor: r.get::<_, i64>(4)? as u64,
                        added_at: r.get(5)?,
                        last_attempt_at: r.get(6)?,
                        last_success_at: r.get(7)?,
                        last_error: r.get(8)?,
                        failures: r.get(9)?,
                        rounds: r.get(10)?,
                        bytes_in: r.get(11)?,
                        bytes_out: r.get(12)?,
                        docs_in: r.get(13)?,
                        docs_out: r.get(14)?,
                        pending: 0,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            for p in &mut peers {
                // Shared records written since the last push that this peer
                // is not known to have.
                p.pending = conn.query_row(
                    "SELECT count(*) FROM records r
                     LEFT JOIN peer_heads h ON h.peer = ?1 AND h.record_id = r.id
                     WHERE r.shared = 1 AND r.seq > ?2 AND (h.heads IS NULL OR h.heads != r.heads)",
                    params![p.node_id.clone().unwrap_or_default(), p.push_cursor as i64],
                    |r| r.get::<_, i64>(0),
                )? as u64;
            }
            Ok(peers)
        })
        .await
    }

    /// Adds a peer to dial. Refuses a URL that is already a peer.
    pub async fn add_peer(&self, url: String, node_id: Option<String>, now: Millis) -> Result<()> {
        self.write(move |conn, _| {
            let inserted = conn.execute(
                "INSERT INTO peers (url, node_id, added_at) VALUES (?1, ?2, ?3) ON CONFLICT (url) DO NOTHING",
                params![url, node_id, now],
            )?;
            if inserted == 0 {
                return Err(Error::Conflict(format!("{url} is already a peer")));
            }
            Ok(())
        })
        .await
    }

    /// Removes a peer by URL or node id, with what this node remembered of
    /// it. Returns the URLs removed.
    pub async fn remove_peer(&self, key: String) -> Result<Vec<String>> {
        self.write(move |conn, _| {
            let mut stmt = conn
                .prepare_cached("SELECT url, node_id FROM peers WHERE url = ?1 OR node_id = ?1")?;
            let hits: Vec<(String, Option<String>)> = stmt
                .query_map([&key], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<_>>()?;
            for (url, node_id) in &hits {
                conn.execute("DELETE FROM peers WHERE url = ?1", [url])?;
                if let Some(node_id) = node_id {
                    conn.execute("DELETE FROM peer_heads WHERE peer = ?1", [node_id])?;
                }
            }
            Ok(hits.into_iter().map(|(url, _)| url).collect())
        })
        .await
    }

    /// Records who a peer turned out to be (from its certificate).
    pub async fn peer_identified(&self, url: String, node_id: String, town: String) -> Result<()> {
        self.write(move |conn, _| {
            conn.execute(
                "UPDATE peers SET node_id = ?2, town = ?3 WHERE url = ?1",
                params![url, node_id, town],
            )?;
            Ok(())
        })
        .await
    }

    /// Records the outcome of one exchange with a peer.
    pub async fn peer_round(&self, url: String, round: PeerRound) -> Result<()> {
        self.write(move |conn, _| {
            match &round.error {
                None => conn.execute(
                    "UPDATE peers SET last_attempt_at = ?2, last_success_at = ?2, last_error = NULL, failures = 0,
                        rounds = rounds + 1, bytes_in = bytes_in + ?3, bytes_out = bytes_out + ?4,
                        docs_in = docs_in + ?5, docs_out = docs_out + ?6,
                        push_cursor = coalesce(?7, push_cursor), pull_cursor = coalesce(?8, pull_cursor)
                     WHERE url = ?1",
                    params![
                        url,
                        round.at,
                        round.bytes_in as i64,
                        round.bytes_out as i64,
                        round.docs_in as i64,
                        round.docs_out as i64,
                        round.push_cursor.map(|c| c as i64),
                        round.pull_cursor.map(|c| c as i64)
                    ],
                )?,
                Some(error) => conn.execute(
                    "UPDATE peers SET last_attempt_at = ?2, last_error = ?3, failures = failures + 1,
                        bytes_out = bytes_out + ?4 WHERE url = ?1",
                    params![url, round.at, error, round.bytes_out as i64],
                )?,
            };
            Ok(())
        })
        .await
    }
}
