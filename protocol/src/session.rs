//! One exchange between two nodes, as pure steps over a [`Replica`].
//!
//! The node runs these steps around its HTTP request and its SQLite
//! transactions; the simulation in `tests/` runs the very same steps with
//! in-memory replicas and a network it controls. Between the steps only the
//! values returned here travel, so what the node does and what the simulation
//! checks cannot drift apart.
//!
//! Client: [`client_request`] (read) → send → [`client_apply`] (one write).
//! While a long pull is under way the client may pipeline: with an answer in
//! hand and not yet stored, [`client_next_pull`] builds the next request, so
//! the server prepares batch k+1 while the client stores batch k. The
//! request's `confirmed` tells the server how much is stored; an answer
//! stands only if every earlier one ended where it began
//! ([`ClientOutcome::reached`]).
//! Server: [`server_accept`] (write) → [`server_prepare`] (read, repeated
//! while a long poll waits) → [`server_delivered`] (write) → answer with
//! [`server_response`].

use crate::record::RecordId;
use crate::sync::{self, Batch, Hash, Limits, Outcome, Replica};
use crate::wire::{Need, PROTOCOL_VERSION, Refusal, SyncRequest, SyncResponse};

/// What a client persists per server it dials.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cursors {
    /// How far through our own feed the server is known to be served.
    pub push: u64,
    /// How far through the server's feed we have read.
    pub pull: u64,
}

/// A document the client pushed, to be matched with the answer.
#[derive(Debug, Clone)]
pub struct Pushed {
    pub id: String,
    pub heads: Vec<Hash>,
    pub seq: u64,
}

/// A request ready to send, and what is needed to apply its answer.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub request: SyncRequest,
    pub pushed: Vec<Pushed>,
    /// Whether this request pushed (then the push cursor moves).
    pub push: bool,
    /// Where the push cursor goes if the server takes everything.
    pub push_end: u64,
    pub push_more: bool,
}

/// The first step of an exchange.
#[derive(Debug, Clone)]
pub enum ClientStep {
    /// Send this request.
    Send(Box<Outgoing>),
    /// Nothing to send (a push with no news): at most move the push cursor
    /// past records the server is already known to have.
    Skip {
        push_cursor: Option<u64>,
        more: bool,
    },
}

/// Builds the client's request. Revocation fields are left to the caller.
#[allow(clippy::too_many_arguments)]
pub fn client_request<R: Replica>(
    replica: &mut R,
    server: &str,
    cursors: Cursors,
    push: bool,
    pull: bool,
    wait_ms: u32,
    needs: Vec<Need>,
    limits: Limits,
) -> Result<ClientStep, R::Error> {
    let batch = if push {
        sync::prepare_updates(replica, server, cursors.push, limits)?
    } else {
        Batch {
            cursor: cursors.push,
            ..Batch::default()
        }
    };
    if !pull && batch.docs.is_empty() && needs.is_empty() {
        return Ok(ClientStep::Skip {
            push_cursor: (batch.cursor != cursors.push).then_some(batch.cursor),
            more: batch.more,
        });
    }
    let pushed = batch
        .docs
        .iter()
        .zip(&batch.seqs)
        .map(|(d, seq)| Pushed {
            id: d.id.clone(),
            heads: hashes(&d.heads),
            seq: *seq,
        })
        .collect();
    let epoch = replica.feed_epoch()?;
    let server_epoch = replica.peer_epoch(server)?.unwrap_or(0);
    Ok(ClientStep::Send(Box::new(Outgoing {
        request: SyncRequest {
            version: PROTOCOL_VERSION,
            epoch,
            server_epoch,
            since: cursors.pull,
            pull,
            wait_ms,
            push: batch.docs,
            needs,
            ..SyncRequest::default()
        },
        pushed,
        push,
        push_end: batch.cursor,
        push_more: batch.more,
    })))
}

/// What applying an answer did, and the client's new state.
#[derive(Debug, Default)]
pub struct ClientOutcome {
    /// The new push cursor, when the request pushed.
    pub push_cursor: Option<u64>,
    /// The new pull cursor, when the request pulled.
    pub pull_cursor: Option<u64>,
    /// Pulled documents we could not apply: send these with the next request.
    pub needs: Vec<Need>,
    pub more: bool,
    pub docs_in: usize,
    pub docs_out: usize,
    /// Our documents the server refused.
    pub refused_by_peer: Vec<Refusal>,
    /// The server's documents we refused.
    pub refused_here: Vec<Refusal>,
    pub stored: Vec<RecordId>,
    /// The server's database was restored (its epoch changed): both cursors
    /// restart at 0 and what it was believed to have is forgotten.
    pub server_restored: bool,
    /// Records of the answer that took late signatures (protocol.md 7.6).
    pub signed: usize,
}

/// The next pull of a pipelined run: asks for what follows `answer` (not
/// yet stored) and confirms only `confirmed`, the pull cursor as stored.
/// `None` when the answer says there is no more, or its server does not
/// honour `confirmed` (it would take `since` as delivered, and a crash
/// before `answer` is stored would lose what the server then skips), or the
/// server was restored (everything restarts at 0).
pub fn client_next_pull(
    sent: &Outgoing,
    answer: &SyncResponse,
    confirmed: u64,
) -> Option<Outgoing> {
    let restored = sent.request.server_epoch != 0 && sent.request.server_epoch != answer.epoch;
    if !sent.request.pull || !answer.more || !answer.confirms_separately || restored {
        return None;
    }
    Some(Outgoing {
        request: SyncRequest {
            version: PROTOCOL_VERSION,
            epoch: sent.request.epoch,
            server_epoch: answer.epoch,
            since: answer.cursor,
            confirmed: Some(confirmed.min(answer.cursor)),
            pull: true,
            wait_ms: 0,
            ..SyncRequest::default()
        },
        pushed: Vec::new(),
        push: false,
        push_end: 0,
        push_more: false,
    })
}

impl ClientOutcome {
    /// Whether applying an answer left the pull cursor at `cursor`, the
    /// answer's own: then a request already sent from there stands. A
    /// document that needs resending, or a restored server, moves the cursor
    /// elsewhere and voids the answers pulled ahead.
    pub fn reached(&self, cursor: u64) -> bool {
        self.pull_cursor == Some(cursor) && self.needs.is_empty() && !self.server_restored
    }
}

/// Applies the server's answer, in one write: forgets what the server says it
/// lacks, records what it now has, stores its news, and moves the cursors.
pub fn client_apply<R: Replica>(
    replica: &mut R,
    server: &str,
    sent: &Outgoing,
    mut response: SyncResponse,
) -> Result<ClientOutcome, R::Error> {
    let plans = sync::plan_updates(replica, std::mem::take(&mut response.docs))?;
    client_apply_planned(replica, server, sent, response, plans)
}

/// [`client_apply`] with the answer's documents already planned
/// ([`sync::plan_updates`], which only reads and can run elsewhere). The
/// answer's `docs` are ignored; each `DocUpdate`'s `seq` travels in its plan.
pub fn client_apply_planned<R: Replica>(
    replica: &mut R,
    server: &str,
    sent: &Outgoing,
    response: SyncResponse,
    plans: Vec<sync::Plan>,
) -> Result<ClientOutcome, R::Error> {
    if sync::observe_epoch(replica, server, response.epoch)? {
        // Positions in its feed mean other things now, and it may have lost
        // what we pushed: start over with it. Its news is still news.
        let docs_in = plans.len();
        let outcome = sync::commit_plans(replica, server, plans)?;
        return Ok(ClientOutcome {
            // Whether or not this request pushed: the server lost what it
            // had from us, so our pushes start over too.
            push_cursor: Some(0),
            pull_cursor: Some(0),
            more: true,
            docs_in,
            docs_out: sent.pushed.len(),
            refused_here: outcome.refused,
            stored: outcome.stored,
            signed: outcome.signed.len(),
            server_restored: true,
            ..ClientOutcome::default()
        });
    }
    let redo_ids: Vec<String> = response.needs.iter().map(|n| n.id.clone()).collect();
    let refused_ids: Vec<String> = response.refused.iter().map(|r| r.id.clone()).collect();
    let redo = |id: &str| redo_ids.iter().any(|r| r == id);
    let refused = |id: &str| refused_ids.iter().any(|r| r == id);
    sync::apply_needs(replica, server, &response.needs)?;
    for p in &sent.pushed {
        if !redo(&p.id)
            && !refused(&p.id)
            && let Ok(id) = p.id.parse::<RecordId>()
        {
            replica.set_peer_heads(server, &id, &p.heads)?;
        }
    }
    let first_needed = plans
        .iter()
        .filter_map(sync::Plan::needed_at)
        .map(|(_, seq)| seq.saturating_sub(1))
        .min();
    let docs_in = plans.len();
    let outcome = sync::commit_plans(replica, server, plans)?;
    let mut result = ClientOutcome {
        docs_in,
        docs_out: sent.pushed.len(),
        more: sent.push_more || response.more,
        refused_by_peer: response.refused,
        refused_here: outcome.refused,
        stored: outcome.stored,
        signed: outcome.signed.len(),
        ..ClientOutcome::default()
    };
    if sent.push {
        // Resend from the first document the server could not apply.
        let first_redo = sent
            .pushed
            .iter()
            .filter(|p| redo(&p.id))
            .map(|p| p.seq.saturating_sub(1))
            .min();
        result.push_cursor = Some(first_redo.unwrap_or(sent.push_end));
    }
    if sent.request.pull {
        result.pull_cursor = Some(first_needed.map_or(response.cursor, |c| c.min(response.cursor)));
        result.needs = outcome.needs;
    }
    Ok(result)
}

/// Server, first step (a write): take the client's needs and pushed documents.
pub fn server_accept<R: Replica>(
    replica: &mut R,
    client: &str,
    request: &mut SyncRequest,
) -> Result<Outcome, R::Error> {
    let plans = sync::plan_updates(replica, std::mem::take(&mut request.push))?;
    server_accept_planned(replica, client, request, plans)
}

/// [`server_accept`] with the pushed documents already planned.
pub fn server_accept_planned<R: Replica>(
    replica: &mut R,
    client: &str,
    request: &SyncRequest,
    plans: Vec<sync::Plan>,
) -> Result<Outcome, R::Error> {
    // A restored client lost what we believed it had; its cursors came back
    // with its backup, so it reads our feed again from there by itself.
    sync::observe_epoch(replica, client, request.epoch)?;
    // The client's pull cursor acknowledges what our earlier answers
    // delivered, if it refers to this incarnation of our feed.
    let own = replica.feed_epoch()?;
    if request.server_epoch == own {
        let stored = request
            .confirmed
            .map_or(request.since, |c| c.min(request.since));
        replica.confirm_peer_heads(client, stored)?;
    }
    sync::apply_needs(replica, client, &request.needs)?;
    sync::commit_plans(replica, client, plans)
}

/// Server, second step (a read): the client's news after `since`.
pub fn server_prepare<R: Replica>(
    replica: &mut R,
    client: &str,
    since: u64,
    limits: Limits,
) -> Result<Batch, R::Error> {
    sync::prepare_updates(replica, client, since, limits)
}

/// Whether the server may hold this request as a long poll: not when the
/// client's cursor refers to another incarnation of the server's database
/// (it was restored), which the client must learn at once.
pub fn may_wait(request: &SyncRequest, own_epoch: u64) -> bool {
    request.wait_ms > 0 && (request.server_epoch == 0 || request.server_epoch == own_epoch)
}

/// Server, third step (a write): stage what the answer delivers. The
/// client's next request confirms it (its pull cursor reaches
/// `batch.cursor`); a lost answer confirms nothing and is sent again.
pub fn server_delivered<R: Replica>(
    replica: &mut R,
    client: &str,
    batch: &Batch,
) -> Result<(), R::Error> {
    for d in &batch.docs {
        if let Ok(id) = d.id.parse::<RecordId>() {
            replica.stage_peer_heads(client, batch.cursor, &id, &hashes(&d.heads))?;
        }
    }
    Ok(())
}

/// Server, last step: the answer. Revocation fields are left to the caller.
pub fn server_response(epoch: u64, accepted: Outcome, batch: Option<Batch>) -> SyncResponse {
    let mut response = SyncResponse {
        version: PROTOCOL_VERSION,
        epoch,
        confirms_separately: true,
        needs: accepted.needs,
        refused: accepted.refused,
        ..SyncResponse::default()
    };
    if let Some(batch) = batch {
        response.cursor = batch.cursor;
        response.more = batch.more;
        response.docs = batch.docs;
    }
    response
}

/// 32-byte hashes out of wire heads (others are ignored).
pub fn hashes(heads: &[Vec<u8>]) -> Vec<Hash> {
    heads
        .iter()
        .filter_map(|h| <[u8; 32]>::try_from(h.as_slice()).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collection::Collection;
    use crate::memory::MemoryReplica;
    use crate::validate::validate_create;
    use automerge::ActorId;
    use serde_json::json;

    /// One exchange, as the node runs it, with nothing lost on the way.
    fn exchange(
        client: &mut MemoryReplica,
        server: &mut MemoryReplica,
        cursors: &mut Cursors,
    ) -> ClientOutcome {
        let (cid, sid) = (client.town.clone(), server.town.clone());
        let step = client_request(
            client,
            &sid,
            *cursors,
            true,
            true,
            0,
            Vec::new(),
            Limits::default(),
        )
        .expect("request");
        let ClientStep::Send(sent) = step else {
            panic!("a pull always sends")
        };
        let mut request = sent.request.clone();
        let accepted = server_accept(server, &cid, &mut request).expect("accept");
        let batch =
            server_prepare(server, &cid, request.since, Limits::default()).expect("prepare");
        server_delivered(server, &cid, &batch).expect("delivered");
        let epoch = server.epoch;
        let outcome = client_apply(
            client,
            &sid,
            &sent,
            server_response(epoch, accepted, Some(batch)),
        )
        .expect("apply");
        if let Some(c) = outcome.push_cursor {
            cursors.push = c;
        }
        if let Some(c) = outcome.pull_cursor {
            cursors.pull = c;
        }
        outcome
    }

    fn converge(client: &mut MemoryReplica, server: &mut MemoryReplica, cursors: &mut Cursors) {
        for _ in 0..10 {
            if !exchange(client, server, cursors).more {
                return;
            }
        }
        panic!("did not settle in 10 exchanges");
    }

    fn knowledge(r: &mut MemoryReplica, title: &str, n: u8) -> RecordId {
        let f = validate_create(
            Collection::Knowledge,
            json!({"title": title, "body": "本文", "category": "pr"})
                .as_object()
                .expect("obj"),
        )
        .expect("valid");
        r.create(Collection::Knowledge, &f, i64::from(n), [n; 10])
    }

    #[test]
    fn a_restored_server_is_read_again_from_the_start_and_gets_back_what_it_lost() {
        let mut a = MemoryReplica::new("tateshina", ActorId::from([1u8; 16].as_slice()));
        let mut b = MemoryReplica::new("omachi", ActorId::from([2u8; 16].as_slice()));
        let mut cursors = Cursors::default();
        for i in 0..5 {
            knowledge(&mut b, &format!("b{i}"), i);
        }
        converge(&mut a, &mut b, &mut cursors);
        let backup = b.clone();
        // After the backup: Omachi writes more (seen by Tateshina) and
        // receives a record from Tateshina.
        for i in 5..10 {
            knowledge(&mut b, &format!("b{i}"), i);
        }
        let from_a = knowledge(&mut a, "a0", 50);
        converge(&mut a, &mut b, &mut cursors);
        assert!(b.view(&from_a).is_some());
        let seen = cursors.pull;

        // Omachi is restored: its feed positions are reused by new writes.
        b = backup.restored(2);
        let fresh = knowledge(&mut b, "after restore", 99);
        assert!(b.shared_state().len() < a.shared_state().len());
        let first = exchange(&mut a, &mut b, &mut cursors);
        assert!(first.server_restored);
        assert_eq!(
            cursors,
            Cursors { push: 0, pull: 0 },
            "cursors start over (were pull {seen})"
        );
        converge(&mut a, &mut b, &mut cursors);
        assert!(
            a.view(&fresh).is_some(),
            "a write at a reused feed position still arrives"
        );
        assert!(
            b.view(&from_a).is_some(),
            "what the restored node lost comes back"
        );
        assert_eq!(a.shared_state(), b.shared_state());
    }

    #[test]
    fn a_restored_client_gets_back_what_it_lost() {
        let mut a = MemoryReplica::new("tateshina", ActorId::from([1u8; 16].as_slice()));
        let mut b = MemoryReplica::new("omachi", ActorId::from([2u8; 16].as_slice()));
        let mut cursors = Cursors::default();
        knowledge(&mut a, "a0", 1);
        converge(&mut b, &mut a, &mut cursors);
        let (backup, backup_cursors) = (b.clone(), cursors);
        let later = knowledge(&mut a, "a1", 2);
        let own = knowledge(&mut b, "b-own", 3);
        converge(&mut b, &mut a, &mut cursors);
        // Omachi (the client) is restored with its cursors from the backup.
        b = backup.restored(7);
        cursors = backup_cursors;
        converge(&mut b, &mut a, &mut cursors);
        assert!(b.view(&later).is_some());
        assert!(
            b.view(&own).is_some(),
            "its own write, lost locally, comes back from the peer"
        );
        assert_eq!(a.shared_state(), b.shared_state());
    }

    /// One server step of the node's handler: accept, prepare, deliver, answer.
    fn serve(
        server: &mut MemoryReplica,
        client: &str,
        mut request: SyncRequest,
        limits: Limits,
    ) -> SyncResponse {
        let accepted = server_accept(server, client, &mut request).expect("accept");
        let batch = server_prepare(server, client, request.since, limits).expect("prepare");
        server_delivered(server, client, &batch).expect("delivered");
        server_response(server.epoch, accepted, Some(batch))
    }

    #[test]
    fn a_pipelined_pull_confirms_only_what_is_stored_so_a_crash_loses_nothing() {
        let mut a = MemoryReplica::new("tateshina", ActorId::from([1u8; 16].as_slice()));
        let mut b = MemoryReplica::new("omachi", ActorId::from([2u8; 16].as_slice()));
        let ids: Vec<RecordId> = (0..6)
            .map(|i| knowledge(&mut a, &format!("a{i}"), i))
            .collect();
        let small = Limits {
            max_docs: 2,
            max_bytes: 1 << 20,
        };
        let (cid, sid) = (b.town.clone(), a.town.clone());
        // An ordinary pull from the client's stored cursor.
        let pull_from = |b: &mut MemoryReplica, pull: u64| {
            let step = client_request(
                b,
                &sid,
                Cursors { push: 0, pull },
                false,
                true,
                0,
                Vec::new(),
                small,
            )
            .expect("request");
            let ClientStep::Send(sent) = step else {
                panic!("a pull always sends")
            };
            *sent
        };
        let first = pull_from(&mut b, 0);
        let answer1 = serve(&mut a, &cid, first.request.clone(), small);
        assert!(answer1.more && answer1.confirms_separately);
        // A server that does not say it honours `confirmed` (an older node)
        // would take `since` as delivered: never pipeline with it.
        let older = SyncResponse {
            confirms_separately: false,
            ..answer1.clone()
        };
        assert!(client_next_pull(&first, &older, 0).is_none());
        // Batch 1 is in hand, not stored: the next pull confirms nothing yet.
        let second = client_next_pull(&first, &answer1, 0).expect("pipelines");
        assert_eq!(
            (second.request.since, second.request.confirmed),
            (answer1.cursor, Some(0))
        );
        let answer2 = serve(&mut a, &cid, second.request.clone(), small);
        assert_eq!(answer2.docs.len(), 2);
        for d in &answer1.docs {
            let id: RecordId = d.id.parse().expect("id");
            assert!(
                crate::sync::Replica::peer_heads(&mut a, &cid, &id)
                    .expect("read")
                    .is_empty(),
                "the server must not count {id} as delivered"
            );
        }
        // The client crashes with both answers unstored. It asks again from
        // its stored cursor and still gets batch 1.
        let again = pull_from(&mut b, 0);
        let answer = serve(&mut a, &cid, again.request.clone(), small);
        let resent: Vec<&str> = answer.docs.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(resent, [ids[0].as_str(), ids[1].as_str()]);

        // Without a crash: store each answer while the next is on its way.
        let mut cursor = 0;
        let mut sent = again;
        let mut answer = answer;
        let mut rounds = 0;
        loop {
            rounds += 1;
            assert!(rounds < 10, "the pipelined pull did not end");
            let next = client_next_pull(&sent, &answer, cursor);
            let next_answer = next
                .as_ref()
                .map(|n| serve(&mut a, &cid, n.request.clone(), small));
            let end = answer.cursor;
            let outcome = client_apply(&mut b, &sid, &sent, answer).expect("apply");
            assert!(outcome.reached(end));
            cursor = outcome.pull_cursor.expect("pulled");
            match (next, next_answer) {
                (Some(n), Some(r)) => (sent, answer) = (n, r),
                _ => break,
            }
        }
        for id in &ids {
            assert!(b.view(id).is_some(), "{id} arrived");
        }
        // An old-style request (no `confirmed`) still confirms `since`.
        let plain = pull_from(&mut b, cursor);
        assert_eq!(plain.request.confirmed, None);
        serve(&mut a, &cid, plain.request.clone(), small);
        assert!(
            !crate::sync::Replica::peer_heads(&mut a, &cid, &ids[5])
                .expect("read")
                .is_empty()
        );
    }

    /// What a client keeps per server between exchanges.
    #[derive(Default)]
    struct Link {
        cursors: Cursors,
        needs: Vec<Need>,
    }

    /// What crossed in one exchange.
    struct Crossed {
        outcome: ClientOutcome,
        request: SyncRequest,
        response: SyncResponse,
        /// Bytes of the request and the answer as encoded for the wire.
        bytes: usize,
    }

    /// One exchange as the node runs it, through the wire encoding both
    /// ways, carrying the client's needs to the next.
    fn wired(client: &mut MemoryReplica, server: &mut MemoryReplica, link: &mut Link) -> Crossed {
        let (cid, sid) = (client.town.clone(), server.town.clone());
        let step = client_request(
            client,
            &sid,
            link.cursors,
            true,
            true,
            0,
            std::mem::take(&mut link.needs),
            Limits::default(),
        )
        .expect("request");
        let ClientStep::Send(sent) = step else {
            panic!("a pull always sends")
        };
        let wire = sent.request.to_wire();
        let mut request = SyncRequest::decode_checked(&wire).expect("decode");
        let received = request.clone();
        let accepted = server_accept(server, &cid, &mut request).expect("accept");
        let batch =
            server_prepare(server, &cid, request.since, Limits::default()).expect("prepare");
        server_delivered(server, &cid, &batch).expect("delivered");
        let answer = server_response(server.epoch, accepted, Some(batch)).to_wire();
        let response = SyncResponse::decode_checked(&answer).expect("decode");
        let outcome = client_apply(client, &sid, &sent, response.clone()).expect("apply");
        if let Some(c) = outcome.push_cursor {
            link.cursors.push = c;
        }
        if let Some(c) = outcome.pull_cursor {
            link.cursors.pull = c;
        }
        link.needs = outcome.needs.clone();
        Crossed {
            outcome,
            request: received,
            response,
            bytes: wire.len() + answer.len(),
        }
    }

    /// Exchanges until neither side has more to send (at most 10).
    fn settle(
        client: &mut MemoryReplica,
        server: &mut MemoryReplica,
        link: &mut Link,
    ) -> Vec<Crossed> {
        let mut rounds = Vec::new();
        for _ in 0..10 {
            let crossed = wired(client, server, link);
            let quiet = crossed.request.push.is_empty()
                && crossed.response.docs.is_empty()
                && link.needs.is_empty()
                && !crossed.outcome.more;
            rounds.push(crossed);
            if quiet {
                return rounds;
            }
        }
        panic!("did not settle in 10 exchanges");
    }

    mod late {
        use super::*;
        use crate::provenance::{self, ChangeSignature, Signer, SignerBook, SignerId};
        use automerge::ChangeHash;
        use ring::rand::SystemRandom;
        use ring::signature::{self as ring_signature, EcdsaKeyPair, KeyPair};
        use std::sync::Arc;

        /// A member's node key.
        struct Key {
            key: EcdsaKeyPair,
            id: SignerId,
            town: &'static str,
        }

        fn key(n: u8, town: &'static str) -> Key {
            let rng = SystemRandom::new();
            let alg = &ring_signature::ECDSA_P256_SHA256_FIXED_SIGNING;
            let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).expect("key");
            Key {
                key: EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).expect("key"),
                id: SignerId([n; 32]),
                town,
            }
        }

        impl Key {
            fn sign(&self, change: ChangeHash) -> Option<ChangeSignature> {
                provenance::sign(&self.key, self.id, change, &SystemRandom::new()).ok()
            }
        }

        fn book(keys: &[&Key]) -> Arc<SignerBook> {
            let mut book = SignerBook::new();
            for k in keys {
                book.insert(Signer {
                    id: k.id,
                    town: k.town.to_owned(),
                    public_key: k.key.public_key().as_ref().to_vec(),
                    revoked: false,
                });
            }
            Arc::new(book)
        }

        fn node(town: &str, n: u8) -> MemoryReplica {
            MemoryReplica::new(town, ActorId::from([n; 16].as_slice()))
        }

        fn signed(r: &MemoryReplica, id: &RecordId) -> Vec<(ChangeHash, SignerId)> {
            let mut found: Vec<_> = r
                .signatures
                .values()
                .filter(|(record, _)| record == id)
                .map(|(_, s)| (s.change, s.signer))
                .collect();
            found.sort();
            found
        }

        /// Every change of `id` held by `r`, sorted.
        fn changes(r: &MemoryReplica, id: &RecordId) -> Vec<ChangeHash> {
            let mut all: Vec<ChangeHash> = r
                .load(id)
                .expect("held")
                .get_changes(&[])
                .iter()
                .map(automerge::Change::hash)
                .collect();
            all.sort();
            all
        }

        fn only_signatures(docs: &[crate::wire::DocUpdate]) -> bool {
            !docs.is_empty() && docs.iter().all(crate::wire::DocUpdate::is_signature_only)
        }

        #[test]
        fn a_history_from_before_signatures_reaches_a_new_member_once_its_authors_sign_it() {
            let (ka, kb, kc) = (key(1, "tateshina"), key(2, "omachi"), key(3, "itoigawa"));
            let kd = key(4, "hakuba");
            let members = book(&[&ka, &kb, &kc, &kd]);
            // Before signatures: nothing is signed or checked. Tateshina
            // writes an article, Omachi adds to it, Hakuba writes one; all
            // meet at Omachi.
            let (mut a, mut b, mut d) =
                (node("tateshina", 1), node("omachi", 2), node("hakuba", 4));
            let (mut ab, mut db, mut cb) = (Link::default(), Link::default(), Link::default());
            let article = knowledge(&mut a, "立科の研修", 1);
            settle(&mut a, &mut b, &mut ab);
            let patch = crate::validate::validate_patch(
                Collection::Knowledge,
                json!({"title": "立科の研修（大町の追記）"})
                    .as_object()
                    .expect("obj"),
            )
            .expect("valid");
            assert!(b.update(&article, &patch, 2));
            let hakuba = knowledge(&mut d, "白馬の記録", 3);
            settle(&mut d, &mut b, &mut db);
            settle(&mut a, &mut b, &mut ab);
            assert_eq!(a.shared_state(), b.shared_state());

            // Omachi upgrades: it checks signatures from now on and signs
            // its own older change, never Tateshina's or Hakuba's.
            b.admission.signers = Some(members.clone());
            assert_eq!(b.sign_own_history(&|h| kb.sign(h)), 1);
            assert_eq!(b.sign_own_history(&|h| kb.sign(h)), 0, "once");
            assert!(signed(&b, &hakuba).is_empty());
            // Itoigawa joins now: the article is refused (Tateshina's change
            // is unsigned), and so is Hakuba's.
            let mut c = node("itoigawa", 3);
            c.admission.signers = Some(members.clone());
            let rounds = settle(&mut c, &mut b, &mut cb);
            let codes: Vec<&str> = rounds
                .iter()
                .flat_map(|r| &r.outcome.refused_here)
                .map(|r| r.code.as_str())
                .collect();
            assert_eq!(codes, ["unsigned_change", "unsigned_change"]);
            assert!(c.view(&article).is_none() && c.view(&hakuba).is_none());

            // Tateshina upgrades and signs its own older change. Only
            // signatures cross, both ways, and the record's changes do not.
            a.admission.signers = Some(members.clone());
            assert_eq!(a.sign_own_history(&|h| ka.sign(h)), 1);
            let first = wired(&mut a, &mut b, &mut ab);
            assert!(
                only_signatures(&first.request.push),
                "{:?}",
                first.request.push
            );
            assert!(
                only_signatures(&first.response.docs),
                "{:?}",
                first.response.docs
            );
            assert_eq!(first.outcome.signed, 1, "Omachi's signature, at Tateshina");
            settle(&mut a, &mut b, &mut ab);
            let all = changes(&b, &article);
            let by: Vec<SignerId> = signed(&b, &article).iter().map(|(_, s)| *s).collect();
            assert_eq!(
                signed(&b, &article)
                    .iter()
                    .map(|(h, _)| *h)
                    .collect::<Vec<_>>(),
                all
            );
            assert!(by.contains(&ka.id) && by.contains(&kb.id));
            assert_eq!(signed(&a, &article), signed(&b, &article));

            // Itoigawa, which refused the article, now gets it from Omachi
            // whole, every change verified; Hakuba's stays out.
            settle(&mut c, &mut b, &mut cb);
            assert!(c.view(&article).is_some(), "the article reached Itoigawa");
            assert_eq!(signed(&c, &article), signed(&b, &article));
            assert!(
                c.view(&hakuba).is_none(),
                "a never-upgraded author's record"
            );

            // Nothing loops: idle rounds carry no document either way.
            for (client, link) in [(&mut a, &mut ab), (&mut c, &mut cb)] {
                let idle = wired(client, &mut b, link);
                assert!(idle.request.push.is_empty() && idle.response.docs.is_empty());
            }
            let idle = wired(&mut a, &mut b, &mut ab).bytes;

            // One signed edit costs what it did: one update, one signature,
            // no signature-only update beside it, and nothing echoes back.
            let before = a.load(&article).expect("held").get_heads();
            let patch = crate::validate::validate_patch(
                Collection::Knowledge,
                json!({"title": "改訂"}).as_object().expect("obj"),
            )
            .expect("valid");
            assert!(a.update(&article, &patch, 5));
            a.sign_new(&article, &before, &|h| ka.sign(h));
            let edit = wired(&mut a, &mut b, &mut ab);
            assert_eq!(edit.request.push.len(), 1);
            let carried =
                crate::provenance::decode_signatures(&edit.request.push[0].extensions[0].data)
                    .expect("signatures");
            assert_eq!(carried.len(), 1);
            assert!(edit.response.docs.is_empty());
            assert_eq!(edit.outcome.refused_by_peer, []);
            let after = wired(&mut a, &mut b, &mut ab);
            assert!(after.request.push.is_empty() && after.response.docs.is_empty());
            assert_eq!(after.bytes, idle);
        }

        #[test]
        fn a_forged_signature_only_update_is_refused_and_stores_nothing() {
            let (ka, kb) = (key(1, "tateshina"), key(2, "omachi"));
            let (mut a, mut b) = (node("tateshina", 1), node("omachi", 2));
            let article = knowledge(&mut a, "立科の研修", 1);
            settle(&mut a, &mut b, &mut Link::default());
            b.admission.signers = Some(book(&[&ka, &kb]));
            let created = changes(&b, &article);
            let heads: Vec<Vec<u8>> = b
                .heads(&article)
                .expect("held")
                .iter()
                .map(|h| h.to_vec())
                .collect();
            let forge = |sigs: Vec<ChangeSignature>| crate::wire::DocUpdate {
                id: article.to_string(),
                collection: "knowledge".into(),
                heads: heads.clone(),
                changes: Vec::new(),
                seq: 9,
                extensions: vec![crate::wire::Extension {
                    tag: provenance::SIGNATURES_EXTENSION,
                    data: provenance::encode_signatures(&sigs),
                }],
            };
            // Omachi's key over Tateshina's change; a made-up signature in
            // Tateshina's name; the same with no heads.
            let by_b: Vec<_> = created.iter().filter_map(|h| kb.sign(*h)).collect();
            let mut garbage = created
                .iter()
                .filter_map(|h| ka.sign(*h))
                .collect::<Vec<_>>();
            garbage[0].signature = vec![0x5a; 64];
            let mut headless = forge(by_b.clone());
            headless.heads.clear();
            let request = SyncRequest {
                version: crate::wire::PROTOCOL_VERSION,
                push: vec![forge(by_b), forge(garbage), headless],
                ..SyncRequest::default()
            };
            let mut request = SyncRequest::decode_checked(&request.to_wire()).expect("decode");
            let out = server_accept(&mut b, "itoigawa", &mut request).expect("accept");
            let codes: Vec<&str> = out.refused.iter().map(|r| r.code.as_str()).collect();
            assert_eq!(codes, ["wrong_town", "bad_signature", "invalid_changes"]);
            assert!(out.signed.is_empty());
            assert!(signed(&b, &article).is_empty(), "nothing stored");
            // The genuine one is taken.
            let genuine = forge(created.iter().filter_map(|h| ka.sign(*h)).collect());
            let out =
                crate::sync::accept_updates(&mut b, "tateshina", vec![genuine]).expect("accept");
            assert_eq!(out.signed, std::slice::from_ref(&article));
            assert_eq!(signed(&b, &article).len(), 1);
        }
    }
}
