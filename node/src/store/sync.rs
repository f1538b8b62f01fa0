//! The sync entry points: each step of an exchange that touches the
//! database, as one read or one write job over an [`SqlReplica`]. The order
//! of the steps is `protocol::session`'s; planning (loading, merging,
//! rendering) runs on the read pool so the writer only writes.

use std::collections::HashMap;

use rusqlite::params;
use yui_protocol::RecordId;
use yui_protocol::session;
use yui_protocol::sync::{self, Batch, Limits};
use yui_protocol::wire::{DocUpdate, Need, SyncRequest, SyncResponse};

use super::Store;
use super::egress::{EgressWay, record_egress};
use super::feed::pack_heads;
use super::replica::{Rendered, SqlReplica};
use super::search::index_terms;
use crate::error::{Error, Result};

/// A peer's answer whose documents are planned ([`Store::sync_plan`]) and
/// not yet stored ([`Store::sync_commit`]).
pub struct PlannedAnswer {
    /// The answer, without its documents (they are in the plans).
    response: SyncResponse,
    plans: Vec<sync::Plan>,
    rendered: HashMap<RecordId, Rendered>,
}

impl PlannedAnswer {
    /// The point of the peer's feed the answer brings us to.
    pub fn cursor(&self) -> u64 {
        self.response.cursor
    }
}

impl Store {
    /// Server side, a read: what `peer` lacks among the shared records
    /// after `after`.
    pub async fn sync_prepare(&self, peer: String, after: u64, limits: Limits) -> Result<Batch> {
        self.read(move |conn| {
            let mut replica = SqlReplica::reading(conn);
            session::server_prepare(&mut replica, &peer, after, limits)
        })
        .await
    }

    /// Server side, a write: apply a client's needs and pushed documents.
    pub async fn sync_accept(
        &self,
        peer: String,
        mut request: SyncRequest,
    ) -> Result<sync::Outcome> {
        let (plans, rendered) = self.plan(std::mem::take(&mut request.push)).await?;
        let (registry, signers) = (self.registry().await?, self.signer_book());
        let quotas = self.quotas();
        self.write(move |conn, state| {
            let mut replica = SqlReplica::writing(conn, state, rendered)
                .admitting(registry, signers)
                .charging(quotas);
            let outcome = session::server_accept_planned(&mut replica, &peer, &request, plans)?;
            replica.save_charges()?;
            Ok(outcome)
        })
        .await
    }

    /// Plans incoming updates on the read pool — loading, merging on copies,
    /// validating and rendering, which is most of the work — in two halves at
    /// once, so the writer only writes.
    async fn plan(
        &self,
        mut docs: Vec<DocUpdate>,
    ) -> Result<(Vec<sync::Plan>, HashMap<RecordId, Rendered>)> {
        let (registry, signers) = (self.registry().await?, self.signer_book());
        let plan_half = |docs: Vec<DocUpdate>| {
            let (registry, signers) = (registry.clone(), signers.clone());
            self.read(move |conn| {
                let mut replica = SqlReplica::reading(conn).admitting(registry, signers);
                let mut plans = sync::plan_updates(&mut replica, docs)?;
                let mut rendered = HashMap::new();
                for plan in &mut plans {
                    if let sync::Plan::Store(m) = plan {
                        rendered.insert(
                            m.id.clone(),
                            Rendered {
                                heads: pack_heads(&m.doc.get_heads()),
                                // A new record's bytes as received (they
                                // loaded); a merge is saved (and was
                                // reloaded by the plan).
                                bytes: m
                                    .verbatim
                                    .clone()
                                    .unwrap_or_else(|| m.doc.save_nocompress()),
                                json: serde_json::to_string(&m.view)
                                    .map_err(|e| Error::Storage(e.to_string()))?,
                                terms: index_terms(&m.view),
                            },
                        );
                    }
                }
                Ok((plans, rendered))
            })
        };
        if docs.len() < 16 {
            return plan_half(docs).await;
        }
        let second = docs.split_off(docs.len() / 2);
        let (a, b) = tokio::join!(plan_half(docs), plan_half(second));
        let (mut plans, mut rendered) = a?;
        let (more_plans, more_rendered) = b?;
        plans.extend(more_plans);
        rendered.extend(more_rendered);
        Ok((plans, rendered))
    }

    /// Server side, a write: record what the answer delivers, in the peer's
    /// staged heads and in the egress ledger. Returns the batch.
    pub async fn sync_delivered(
        &self,
        peer: String,
        peer_town: String,
        batch: Batch,
    ) -> Result<Batch> {
        self.write(move |conn, state| {
            let mut replica = SqlReplica::writing(conn, state, HashMap::new());
            session::server_delivered(&mut replica, &peer, &batch)?;
            record_egress(conn, &peer, &peer_town, EgressWay::Pulled, &batch.docs)?;
            Ok(batch)
        })
        .await
    }

    /// Client side, a read: the request of one exchange with `peer`.
    pub async fn sync_request(
        &self,
        peer: String,
        cursors: session::Cursors,
        push: bool,
        pull: bool,
        wait_ms: u32,
        needs: Vec<Need>,
    ) -> Result<session::ClientStep> {
        self.read(move |conn| {
            let mut replica = SqlReplica::reading(conn);
            session::client_request(
                &mut replica,
                &peer,
                cursors,
                push,
                pull,
                wait_ms,
                needs,
                Limits::default(),
            )
        })
        .await
    }

    /// Client side, one write: apply `peer`'s answer to `sent`.
    /// The peer's new cursors are saved in the same transaction as what its
    /// answer changed, so an interruption cannot leave one without the other.
    pub async fn sync_apply(
        &self,
        url: String,
        peer: String,
        sent: session::Outgoing,
        response: SyncResponse,
    ) -> Result<session::ClientOutcome> {
        let planned = self.sync_plan(response).await?;
        self.sync_commit(url, peer, sent, planned).await
    }

    /// The first half of [`Store::sync_apply`], reads only (on two threads):
    /// load, check and render the answer's documents. A pipelined pull plans
    /// one answer while the writer stores the one before.
    pub async fn sync_plan(&self, mut response: SyncResponse) -> Result<PlannedAnswer> {
        let (plans, rendered) = self.plan(std::mem::take(&mut response.docs)).await?;
        Ok(PlannedAnswer {
            response,
            plans,
            rendered,
        })
    }

    /// The second half of [`Store::sync_apply`]: one write. Documents that
    /// changed here since they were planned are planned again inside it.
    pub async fn sync_commit(
        &self,
        url: String,
        peer: String,
        sent: session::Outgoing,
        planned: PlannedAnswer,
    ) -> Result<session::ClientOutcome> {
        let PlannedAnswer {
            response,
            plans,
            rendered,
        } = planned;
        let (registry, signers) = (self.registry().await?, self.signer_book());
        let quotas = self.quotas();
        self.write(move |conn, state| {
            let mut replica = SqlReplica::writing(conn, state, rendered)
                .admitting(registry, signers)
                .charging(quotas);
            let outcome = session::client_apply_planned(&mut replica, &peer, &sent, response, plans)?;
            replica.save_charges()?;
            conn.execute(
                "UPDATE peers SET push_cursor = coalesce(?2, push_cursor), pull_cursor = coalesce(?3, pull_cursor)
                 WHERE url = ?1",
                params![
                    url,
                    outcome.push_cursor.map(|c| c as i64),
                    outcome.pull_cursor.map(|c| c as i64)
                ],
            )?;
            Ok(outcome)
        })
        .await
    }
}
