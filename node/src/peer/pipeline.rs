//! The puller's pulls, pipelined: a catch-up with one peer as three stages
//! at once.
//!
//! An ordinary exchange asks, waits, plans and stores, one batch after the
//! other, so the peer idles while we store and we idle while it prepares.
//! Here, as soon as an answer says the peer has more and honours
//! `confirmed` (see `session::client_next_pull`), each step runs together:
//! the peer prepares and sends batch k+1, our readers load and check batch
//! k on two threads, and the writer stores batch k−1. Each request confirms
//! only what is stored, so a crash anywhere loses nothing the peer then
//! skips. An answer without more (a long poll's news) is planned and stored
//! as an ordinary exchange would.
//!
//! A batch that does not end where it began (a document to ask for again,
//! a restored peer) voids the batches pulled after it: they are dropped,
//! unstored, and the next exchange is an ordinary one from the stored
//! cursor.

use std::sync::atomic::Ordering;

use yui_protocol::session::{self, ClientStep, Cursors};

use super::Federation;
use super::client::{self, Fetched};
use super::{PeerTask, lock, node_id_of, not_joined, peer_info, record_failure};
use crate::error::{Error, Result};
use crate::store::{PeerRound, PlannedAnswer};

/// An answer whose documents are planned, waiting for the writer.
struct Planned {
    sent: session::Outgoing,
    answer: PlannedAnswer,
    bytes_out: u64,
    bytes_in: u64,
}

/// Pulls from the peer at `url` (the first request held up to `wait_ms` for
/// news) until it has no more, pipelined. Returns whether more is waiting
/// (an answer voided the ones after it). Each stored batch is recorded as
/// one round; a failure is recorded as the peer's last error, after what
/// was already planned has been stored.
pub(super) async fn pull(
    fed: &Federation,
    url: &str,
    task: &PeerTask,
    wait_ms: u32,
) -> Result<bool> {
    let result = pull_inner(fed, url, task, wait_ms).await;
    if let Err(e) = &result {
        record_failure(fed, url, e).await?;
        if super::tls::is_node_mismatch(e)
            && let Err(e) = super::reidentify(fed, url, task).await
        {
            record_failure(fed, url, &e).await?;
            return Err(e);
        }
    }
    result
}

async fn pull_inner(fed: &Federation, url: &str, task: &PeerTask, wait_ms: u32) -> Result<bool> {
    let peering = fed.peering.clone().ok_or_else(not_joined)?;
    let _pull = task.pull_lock.lock().await;
    let info = peer_info(fed, url).await?;
    let target = client::parse_peer_url(url)?;
    let http = peering.client();
    let node_id = node_id_of(fed, url, &info, task, &http, &target).await?;
    let needs = std::mem::take(&mut *lock(&task.needs));
    let step = fed
        .store
        .sync_request(
            node_id.clone(),
            Cursors {
                push: info.push_cursor,
                pull: info.pull_cursor,
            },
            false,
            true,
            wait_ms,
            needs,
        )
        .await?;
    let ClientStep::Send(first) = step else {
        return Ok(false);
    };
    let mut stored_cursor = info.pull_cursor;
    let revocations = || task.server_revocations.load(Ordering::Relaxed);
    let fetched = client::send(fed, &http, &target, &node_id, *first, revocations()).await?;
    task.server_revocations
        .store(fetched.response.revocation_number, Ordering::Relaxed);
    let mut fetched = Some(fetched);
    let mut planned: Option<Planned> = None;
    let mut failure: Option<Error> = None;
    let mut more = true;
    // Bounded: every turn stores the batch planned last turn or plans the
    // one fetched; a fetch happens only while the peer says it has more,
    // and its cursor only moves forward through its finite feed.
    while fetched.is_some() || planned.is_some() {
        let next = match (&fetched, &failure) {
            (Some(f), None) => session::client_next_pull(&f.sent, &f.response, stored_cursor),
            _ => None,
        };
        let store = async {
            match planned.take() {
                Some(p) => {
                    let end = p.answer.cursor();
                    let outcome = fed
                        .store
                        .sync_commit(url.to_owned(), node_id.clone(), p.sent, p.answer)
                        .await;
                    Some(outcome.map(|o| (o, end, p.bytes_out, p.bytes_in)))
                }
                None => None,
            }
        };
        let plan = async {
            match fetched.take() {
                Some(Fetched {
                    sent,
                    response,
                    bytes_out,
                    bytes_in,
                }) => Some(fed.store.sync_plan(response).await.map(|answer| Planned {
                    sent,
                    answer,
                    bytes_out,
                    bytes_in,
                })),
                None => None,
            }
        };
        let fetch = async {
            match next {
                Some(n) => {
                    Some(client::send(fed, &http, &target, &node_id, n, revocations()).await)
                }
                None => None,
            }
        };
        let (stored, plan_done, fetch_done) = tokio::join!(store, plan, fetch);
        if let Some(stored) = stored {
            let (outcome, end, bytes_out, bytes_in) = stored?;
            client::log_refusals(fed, url, &node_id, &outcome);
            fed.store
                .peer_round(
                    url.to_owned(),
                    PeerRound {
                        at: crate::clock::now_ms(),
                        error: None,
                        bytes_in,
                        bytes_out,
                        docs_in: outcome.docs_in as u64,
                        docs_out: 0,
                        push_cursor: None,
                        pull_cursor: outcome.pull_cursor,
                    },
                )
                .await?;
            stored_cursor = outcome.pull_cursor.unwrap_or(stored_cursor);
            more = outcome.more;
            if !outcome.reached(end) {
                task.carry_over(url, &outcome.needs, outcome.server_restored);
                // What was planned and fetched after it is dropped unstored.
                return Ok(true);
            }
        }
        match plan_done {
            Some(Ok(p)) => planned = Some(p),
            Some(Err(e)) => return Err(e),
            None => {}
        }
        match fetch_done {
            Some(Ok(f)) => {
                task.server_revocations
                    .store(f.response.revocation_number, Ordering::Relaxed);
                fetched = Some(f);
            }
            // Store what is planned, then report.
            Some(Err(e)) => failure = Some(e),
            None => {}
        }
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(more),
    }
}
