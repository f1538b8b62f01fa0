//! What other towns wrote (issue 16, following other towns): live shared
//! records whose origin is another town, newest arrival here first, for
//! the Atom feeds and the dashboard's "new since your last visit". Arrival
//! is the record's place in this node's change feed (`records.seq`), not
//! its own times: a record written offline a week ago that arrives today
//! is new today.

use rusqlite::params;
use yui_protocol::RecordView;
use yui_protocol::sync::SharedCollection;

use super::Store;
use super::feed::unpack_heads;
use crate::error::{Error, Result};

/// One record from another town, as the feed and the dashboard show it.
#[derive(Debug, Clone)]
pub struct News {
    /// Its position in this node's change feed.
    pub seq: i64,
    pub view: RecordView,
    /// The record's heads (sorted hashes): which version this is.
    pub heads: Vec<[u8; 32]>,
}

impl Store {
    /// Live records of `collection` (every shared collection when `None`)
    /// whose origin town is not this node's, that arrived or changed here
    /// after feed position `after` and at or before `up_to`, newest first,
    /// at most `limit`. Local collections never come out of it.
    pub async fn news_from_other_towns(
        &self,
        collection: Option<SharedCollection>,
        after: i64,
        up_to: i64,
        limit: usize,
    ) -> Result<Vec<News>> {
        let town = self.town().to_owned();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT seq, heads, view FROM records
                 WHERE shared = 1 AND seq > ?1 AND seq <= ?2 AND deleted = 0 AND town <> ?3
                   AND (?4 IS NULL OR collection = ?4)
                 ORDER BY seq DESC LIMIT ?5",
            )?;
            let name = collection.map(|c| c.get().name());
            let rows = stmt.query_map(params![after, up_to, town, name, limit as i64], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, Vec<u8>>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (seq, heads, view) = row?;
                let view: RecordView = serde_json::from_str(&view)
                    .map_err(|e| Error::Storage(format!("record view: {e}")))?;
                // The scope is the protocol's, whatever the row says.
                if view.collection().is_none_or(|c| !c.is_shared()) {
                    continue;
                }
                out.push(News {
                    seq,
                    view,
                    heads: unpack_heads(&heads),
                });
            }
            Ok(out)
        })
        .await
    }

    /// The latest position of this node's change feed.
    pub fn feed_position(&self) -> i64 {
        *self.inner.last_seq.borrow()
    }
}
