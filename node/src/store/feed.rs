//! The change feed that sync reads (shared records in `seq` order, each with
//! the position of its latest late signatures), and how heads are stored:
//! sorted 32-byte hashes, so equal sets are equal blobs.

use automerge::AutoCommit;
use rusqlite::{Connection, params};
use yui_protocol::Collection;
use yui_protocol::sync::{FeedItem, Hash, SharedCollection};

use super::Store;
use crate::error::Result;

impl Store {
    /// Shared records written after `after`, oldest first: the change feed
    /// as sync reads it. Only shared collections can come out of it.
    pub async fn shared_feed(&self, after: u64, limit: usize) -> Result<Vec<FeedItem>> {
        self.read(move |conn| read_shared_feed(conn, after, limit))
            .await
    }
}

/// Heads as stored: sorted 32-byte hashes, so equal sets are equal blobs.
pub(super) fn pack_heads(heads: &[automerge::ChangeHash]) -> Vec<u8> {
    let mut hashes: Vec<Hash> = heads.iter().map(|h| h.0).collect();
    pack_hashes(&mut hashes)
}

pub(super) fn pack_hashes(hashes: &mut [Hash]) -> Vec<u8> {
    hashes.sort_unstable();
    hashes.concat()
}

pub(super) fn unpack_heads(blob: &[u8]) -> Vec<Hash> {
    blob.chunks_exact(32)
        .filter_map(|c| <[u8; 32]>::try_from(c).ok())
        .collect()
}

/// The raw (uncompressed) change chunks of `doc` after `before`.
pub(super) fn raw_changes_after(doc: &mut AutoCommit, before: &[automerge::ChangeHash]) -> Vec<u8> {
    doc.get_changes(before)
        .iter()
        .flat_map(|c| c.raw_bytes().to_vec())
        .collect()
}

pub(super) fn read_shared_feed(
    conn: &Connection,
    after: u64,
    limit: usize,
) -> Result<Vec<FeedItem>> {
    let mut stmt = conn.prepare_cached(
        "SELECT seq, id, collection, heads,
                (SELECT max(l.seq) FROM late_signatures l WHERE l.record = records.id)
         FROM records WHERE shared = 1 AND seq > ?1
         ORDER BY seq LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![after as i64, limit as i64], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, Vec<u8>>(3)?,
            r.get::<_, Option<i64>>(4)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (seq, id, collection, heads, signed_at) = row?;
        let (Ok(id), Some(collection)) = (
            id.parse(),
            collection
                .parse::<Collection>()
                .ok()
                .and_then(SharedCollection::new),
        ) else {
            continue;
        };
        out.push(FeedItem {
            seq: seq as u64,
            id,
            collection,
            heads: unpack_heads(&heads),
            signed_at: signed_at.unwrap_or(0) as u64,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_head_sets_pack_to_equal_blobs() {
        let (a, b) = ([1u8; 32], [2u8; 32]);
        let one = pack_hashes(&mut [b, a]);
        assert_eq!(one, pack_hashes(&mut [a, b]));
        assert_eq!(unpack_heads(&one), vec![a, b]);
        // A torn blob yields only its whole hashes.
        assert_eq!(unpack_heads(&one[..40]), vec![a]);
    }
}
