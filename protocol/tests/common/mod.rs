//! Hostile-input helpers shared by the property tests (`hostile_input.rs`)
//! and the fuzz target (`fuzz/fuzz_targets/decode_apply.rs` includes this
//! file by path): valid peer messages built from real records, Automerge
//! checksum repair, the decode-and-apply path as the node runs it, and the
//! invariants the receiving town must keep whatever a peer sends.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::json;
use yui_protocol::automerge::{ActorId, AutoCommit, ChangeHash};
use yui_protocol::memory::MemoryReplica;
use yui_protocol::session::{self, Outgoing};
use yui_protocol::sync::{self, Hash, Limits, Replica, Stored};
use yui_protocol::validate::{Fields, Patch, validate_create, validate_patch};
use yui_protocol::wire::{
    DocUpdate, Extension, Need, PROTOCOL_VERSION, Refusal, SyncRequest, SyncResponse,
};
use yui_protocol::{Collection, RecordId, doc};

/// The sending town (possibly hostile).
pub const PEER: &str = "tateshina";
/// The receiving town, whose records must stay sound.
pub const VICTIM: &str = "omachi";

pub const BODY: &str = "住民ワーカーの研修は月に一度行う。\n顧客とのやりとりは必ず記録に残す。\n広報は住民向けと顧客向けに分ける。";

/// What a peer may send, and the town it is sent to.
pub struct Fixture {
    /// The receiving town before any input: holds shared records it got
    /// from the peer (some edited since on both sides), a shared record of
    /// its own and a local one.
    pub victim: MemoryReplica,
    /// Valid updates from the peer, each accepted by `victim` (stored or
    /// already held): deltas of raw change chunks, whole documents and a
    /// tombstone.
    pub updates: Vec<DocUpdate>,
    /// Valid requests and responses carrying `updates`.
    pub requests: Vec<SyncRequest>,
    pub responses: Vec<SyncResponse>,
    /// Ids worth aiming at: the victim's records (the local one included)
    /// and the peer's new ones.
    pub ids: Vec<RecordId>,
    /// The victim's local record.
    pub local: RecordId,
}

fn fields(c: Collection, v: serde_json::Value) -> Fields {
    validate_create(c, v.as_object().expect("an object")).expect("valid fields")
}

fn patch(c: Collection, v: serde_json::Value) -> Patch {
    validate_patch(c, v.as_object().expect("an object")).expect("valid patch")
}

fn wire_heads(heads: &[ChangeHash]) -> Vec<Vec<u8>> {
    heads.iter().map(|h| h.0.to_vec()).collect()
}

fn hashes(heads: &[Vec<u8>]) -> Vec<Hash> {
    session::hashes(heads)
}

const T0: i64 = 1_767_225_600_000; // 2026-01-01

/// Builds the towns and the valid messages. Deterministic.
pub fn fixture() -> Fixture {
    let peer_actor = ActorId::from([1u8; 16].as_slice());
    let mut peer = MemoryReplica::new(PEER, peer_actor.clone());
    let mut victim = MemoryReplica::new(VICTIM, ActorId::from([2u8; 16].as_slice()));
    let k = Collection::Knowledge;
    let training = peer.create(
        k,
        &fields(
            k,
            json!({"title": "ワーカー研修の進め方", "body": BODY, "category": "training",
                   "tags": ["研修", "ワーカー"]}),
        ),
        T0,
        [1; 10],
    );
    let pr = peer.create(
        k,
        &fields(
            k,
            json!({"title": "広報の分け方", "body": "住民向けと顧客向けに分ける。", "category": "pr"}),
        ),
        T0 + 1,
        [2; 10],
    );
    let failure = peer.create(
        Collection::FailureCases,
        &fields(
            Collection::FailureCases,
            json!({"title": "連絡の行き違い", "what_happened": "集荷の時刻が二通り伝わった。",
                   "lessons": "連絡は一つの窓口から出す。"}),
        ),
        T0 + 2,
        [3; 10],
    );

    // The victim receives these, and the peer notes what it has.
    let first = sync::prepare_updates(&mut peer, VICTIM, 0, Limits::default()).expect("prepare");
    let got = sync::accept_updates(&mut victim, PEER, first.docs.clone()).expect("accept");
    assert!(got.refused.is_empty() && got.needs.is_empty(), "{got:?}");
    for d in &first.docs {
        let id: RecordId = d.id.parse().expect("id");
        peer.set_peer_heads(VICTIM, &id, &hashes(&d.heads))
            .expect("heads");
    }

    // The victim's own records, and its edit of a shared one.
    let own = victim.create(
        k,
        &fields(
            k,
            json!({"title": "守るべき記録", "body": "大町の手順。", "category": "security"}),
        ),
        T0 + 10,
        [10; 10],
    );
    let local = victim.create(
        Collection::Workers,
        &fields(
            Collection::Workers,
            json!({"name": "山田 花子", "status": "active"}),
        ),
        T0 + 11,
        [11; 10],
    );
    assert!(victim.update(
        &training,
        &patch(k, json!({"body": BODY.replace("月に一度", "隔週で")})),
        T0 + 12,
    ));

    // The peer's news: concurrent edits (sent as raw change chunks) ...
    assert!(peer.update(
        &training,
        &patch(k, json!({"body": BODY.replace("必ず", "その日のうちに")})),
        T0 + 20,
    ));
    assert!(peer.update(
        &pr,
        &patch(
            k,
            json!({"title": "広報の分け方（改訂）", "tags": ["広報"]})
        ),
        T0 + 21,
    ));
    let second =
        sync::prepare_updates(&mut peer, VICTIM, first.cursor, Limits::default()).expect("prepare");
    assert_eq!(second.docs.len(), 2);
    let mut updates = second.docs;
    // ... a new record, whole (doc::create + save_nocompress) ...
    let fresh = RecordId::generate(T0 + 22, [22; 10]);
    let mut d = doc::create(
        peer_actor.clone(),
        k,
        &fresh,
        PEER,
        T0 + 22,
        &fields(
            k,
            json!({"title": "顧客対応の記録", "body": "やりとりは当日中に記録する。\n電話も対面も同じ。",
                   "category": "customer_communication", "tags": ["顧客"]}),
        ),
    )
    .expect("doc");
    updates.push(DocUpdate {
        id: fresh.to_string(),
        collection: k.name().into(),
        heads: wire_heads(&d.get_heads()),
        changes: d.save_nocompress(),
        seq: 9,
        extensions: Vec::new(),
    });
    // ... a tombstone, as the changes after the victim's heads ...
    let mut d = peer.load(&failure).expect("held");
    let known = d.get_heads();
    d.set_actor(peer_actor);
    doc::delete(&mut d, PEER, T0 + 23).expect("delete");
    let changes: Vec<u8> = d
        .get_changes(&known)
        .iter()
        .flat_map(|c| c.raw_bytes().to_vec())
        .collect();
    updates.push(DocUpdate {
        id: failure.to_string(),
        collection: Collection::FailureCases.name().into(),
        heads: wire_heads(&d.get_heads()),
        changes,
        seq: 10,
        extensions: Vec::new(),
    });
    // ... and a record the victim already holds (an echo).
    updates.push(first.docs[1].clone());

    let requests = messages_requests(&updates, &own, &victim);
    let responses = messages_responses(&updates, &own, &victim);
    let ids = vec![training, pr, failure, own, local.clone(), fresh];
    let f = Fixture {
        victim,
        updates,
        requests,
        responses,
        ids,
        local,
    };
    // The seeds are valid: everything is taken, nothing refused.
    let mut v = f.victim.clone();
    let out = sync::accept_updates(&mut v, PEER, f.updates.clone()).expect("accept");
    assert!(
        out.refused.is_empty() && out.needs.is_empty(),
        "seed updates must be valid: {out:?}"
    );
    assert_eq!(out.stored.len(), f.updates.len() - 1);
    assert_eq!(out.unchanged, 1);
    f
}

fn need_for(own: &RecordId, victim: &MemoryReplica) -> Need {
    Need {
        id: own.to_string(),
        have: victim
            .heads(own)
            .unwrap_or_default()
            .iter()
            .map(|h| h.to_vec())
            .collect(),
    }
}

fn messages_requests(
    updates: &[DocUpdate],
    own: &RecordId,
    victim: &MemoryReplica,
) -> Vec<SyncRequest> {
    let base = SyncRequest {
        version: PROTOCOL_VERSION,
        epoch: 0x5eed_0001,
        server_epoch: 1,
        ..SyncRequest::default()
    };
    let mut out = vec![
        SyncRequest {
            since: 3,
            pull: true,
            push: updates.to_vec(),
            revocation_number: 2,
            needs: vec![need_for(own, victim)],
            extensions: vec![Extension {
                tag: 7,
                data: "拡張".as_bytes().to_vec(),
            }],
            ..base.clone()
        },
        SyncRequest {
            pull: true,
            wait_ms: 25_000,
            since: 5,
            ..base.clone()
        },
    ];
    out.extend(updates.iter().map(|u| SyncRequest {
        push: vec![u.clone()],
        ..base.clone()
    }));
    out
}

fn messages_responses(
    updates: &[DocUpdate],
    own: &RecordId,
    victim: &MemoryReplica,
) -> Vec<SyncResponse> {
    let base = SyncResponse {
        version: PROTOCOL_VERSION,
        epoch: 0x5eed_0002,
        cursor: 11,
        ..SyncResponse::default()
    };
    let mut out = vec![SyncResponse {
        docs: updates.to_vec(),
        more: true,
        needs: vec![need_for(own, victim)],
        refused: vec![Refusal {
            id: own.to_string(),
            code: "schema_violation".into(),
            message: "分類が不明".into(),
        }],
        revocation_number: 4,
        revocations: Some(vec![0x30, 0x03, 0x02, 0x01, 0x04]),
        ..base.clone()
    }];
    out.extend(updates.iter().map(|u| SyncResponse {
        docs: vec![u.clone()],
        ..base.clone()
    }));
    out
}

/// The magic bytes that open every Automerge chunk.
pub const MAGIC: [u8; 4] = [0x85, 0x6f, 0x4a, 0x83];

/// Rewrites the checksum of every complete Automerge chunk header found in
/// `bytes` (last first), the way Automerge computes it, so that a mutated
/// chunk reaches Automerge's parser instead of failing its checksum.
pub fn repair_checksums(bytes: &mut [u8]) {
    let starts: Vec<usize> = bytes
        .windows(4)
        .enumerate()
        .filter(|(_, w)| *w == MAGIC)
        .map(|(i, _)| i)
        .collect();
    for &start in starts.iter().rev() {
        repair_chunk(&mut bytes[start..]);
    }
}

fn repair_chunk(chunk: &mut [u8]) {
    let Some(&kind) = chunk.get(8) else { return };
    let mut pos = 9;
    let mut len = 0u64;
    for shift in (0..64).step_by(7) {
        let Some(&b) = chunk.get(pos) else { return };
        pos += 1;
        len |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            break;
        }
    }
    let Some(end) = usize::try_from(len).ok().and_then(|l| pos.checked_add(l)) else {
        return;
    };
    let Some(body) = chunk.get(pos..end) else {
        return;
    };
    let mut hashed = vec![kind];
    let mut n = len;
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            hashed.push(b);
            break;
        }
        hashed.push(b | 0x80);
    }
    hashed.extend_from_slice(body);
    let digest = ring::digest::digest(&ring::digest::SHA256, &hashed);
    chunk[4..8].copy_from_slice(&digest.as_ref()[..4]);
}

/// A stored record, as compared before and after hostile input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Held {
    pub collection: Collection,
    /// Sorted.
    pub heads: Vec<Hash>,
    /// The stored bytes (for a local record: the document saved again).
    pub bytes: Vec<u8>,
}

/// Everything a replica holds, local records included.
pub fn snapshot(r: &mut MemoryReplica) -> BTreeMap<RecordId, Held> {
    let ids: Vec<RecordId> = r.ids().cloned().collect();
    let mut out = BTreeMap::new();
    for id in ids {
        let collection = r.collection_of(&id).expect("listed");
        let mut heads = r.heads(&id).expect("listed").to_vec();
        heads.sort_unstable();
        let bytes = match r.stored(&id).expect("infallible") {
            Stored::Shared { bytes, .. } => bytes,
            Stored::Local => r.load(&id).expect("listed").save_nocompress(),
            Stored::Missing => panic!("listed record {id} is missing"),
        };
        out.insert(
            id,
            Held {
                collection,
                heads,
                bytes,
            },
        );
    }
    out
}

/// The refusal codes `accept_updates` may send.
pub const REFUSAL_CODES: [&str; 12] = [
    "invalid_id",
    "unknown_collection",
    "local_collection",
    "invalid_changes",
    "id_conflict",
    "collection_mismatch",
    "invalid_document",
    "document_mismatch",
    "schema_violation",
    "invalid_town",
    "invalid_time",
    "personal_data",
];

/// What applying one message did.
#[derive(Debug, Default)]
pub struct Applied {
    pub stored: Vec<RecordId>,
    pub refused: Vec<Refusal>,
}

/// Which side receives the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The victim is the server: `SyncRequest::decode_checked`, then
    /// `session::server_accept`.
    Server,
    /// The victim is the client that pulled: `SyncResponse::decode_checked`,
    /// then `session::client_apply`.
    Client,
}

/// Optionally repairs the Automerge checksums of every update's changes
/// after decoding (so the fuzzer reaches Automerge's parser).
pub fn repair_updates(docs: &mut [DocUpdate]) {
    for d in docs {
        repair_checksums(&mut d.changes);
    }
}

/// Decodes `bytes` as the node does and applies them to `victim`. `None`
/// when the message is refused as a whole.
pub fn decode_and_apply(
    victim: &mut MemoryReplica,
    side: Side,
    bytes: &[u8],
    repair: bool,
) -> Option<Applied> {
    match side {
        Side::Server => {
            let mut req = SyncRequest::decode_checked(bytes).ok()?;
            if repair {
                repair_updates(&mut req.push);
            }
            let out = session::server_accept(victim, PEER, &mut req).expect("infallible");
            Some(Applied {
                stored: out.stored,
                refused: out.refused,
            })
        }
        Side::Client => {
            let mut resp = SyncResponse::decode_checked(bytes).ok()?;
            if repair {
                repair_updates(&mut resp.docs);
            }
            let sent = Outgoing {
                request: SyncRequest {
                    version: PROTOCOL_VERSION,
                    pull: true,
                    ..SyncRequest::default()
                },
                pushed: Vec::new(),
                push: false,
                push_end: 0,
                push_more: false,
            };
            let out = session::client_apply(victim, PEER, &sent, resp).expect("infallible");
            Some(Applied {
                stored: out.stored,
                refused: out.refused_here,
            })
        }
    }
}

/// Formerly a known bug (see `regression_a_stored_record_must_reload` and
/// `regression_a_stored_record_must_not_make_load_panic` in
/// `hostile_input.rs`): a crafted change could be accepted, merged and
/// stored although the document saved from it no longer loaded ("mismatching
/// heads") or made `AutoCommit::load` panic. `sync::plan_update` now stores a
/// merged document only if its saved bytes load again, so this is false and
/// such a record fails the checks. Set to true, a record stored by the
/// message under test that does not load is counted in
/// [`UNLOADABLE_STORED`] and left out of the remaining checks instead (to
/// keep fuzzing past the bug on a tree without the fix).
pub const TOLERATE_UNLOADABLE_STORED: bool = false;

/// Unloadable records tolerated under [`TOLERATE_UNLOADABLE_STORED`], counted.
pub static UNLOADABLE_STORED: AtomicUsize = AtomicUsize::new(0);

fn known_unloadable(id: &RecordId, out: &Applied) -> bool {
    let known = TOLERATE_UNLOADABLE_STORED && out.stored.contains(id);
    if known {
        UNLOADABLE_STORED.fetch_add(1, Ordering::Relaxed);
    }
    known
}

/// Checks what a peer's message may and may not have done to the victim:
/// every shared record still loads, reads as a record of its collection and
/// passes the schema; no local-collection record appeared; the local record
/// and every record no update was accepted for are byte-identical; a record
/// an update was accepted for still contains every change it had. Panics
/// with the broken rule.
pub fn check_victim(before: &BTreeMap<RecordId, Held>, after: &mut MemoryReplica, out: &Applied) {
    for r in &out.refused {
        assert!(
            REFUSAL_CODES.contains(&r.code.as_str()),
            "unknown refusal code {:?}",
            r.code
        );
    }
    let now = snapshot(after);
    for (id, old) in before {
        let new = now
            .get(id)
            .unwrap_or_else(|| panic!("record {id} disappeared"));
        assert_eq!(
            new.collection, old.collection,
            "record {id} changed collection"
        );
        if !old.collection.is_shared() || !out.stored.contains(id) {
            assert!(
                new == old,
                "record {id} ({}) changed though no update to it was accepted",
                old.collection.name()
            );
        } else {
            for h in &old.heads {
                assert!(after.has_change(id, h), "record {id} lost a change it had");
            }
        }
    }
    for id in &out.stored {
        let held = now
            .get(id)
            .unwrap_or_else(|| panic!("stored record {id} is not held"));
        assert!(
            held.collection.is_shared(),
            "a {} record was stored from a peer",
            held.collection.name()
        );
    }
    for (id, held) in &now {
        if !before.contains_key(id) {
            assert!(
                held.collection.is_shared(),
                "new local record {id} ({}) from a peer",
                held.collection.name()
            );
            assert!(out.stored.contains(id), "record {id} appeared unreported");
        }
        if !held.collection.is_shared() {
            continue;
        }
        let loaded = if TOLERATE_UNLOADABLE_STORED && out.stored.contains(id) {
            // The known bug can make this load panic: contain it here only.
            std::panic::catch_unwind(|| AutoCommit::load(&held.bytes).map_err(|e| e.to_string()))
                .unwrap_or_else(|_| Err("loading it panics".into()))
        } else {
            AutoCommit::load(&held.bytes).map_err(|e| e.to_string())
        };
        let mut loaded = match loaded {
            Ok(d) => d,
            Err(_) if known_unloadable(id, out) => continue,
            Err(e) => panic!("stored record {id} does not load: {e}"),
        };
        let mut heads = sync::to_hashes(&loaded.get_heads());
        heads.sort_unstable();
        assert_eq!(heads, held.heads, "stored heads of {id} are not its heads");
        let view = doc::read(&loaded)
            .unwrap_or_else(|e| panic!("stored record {id} is not a record: {e}"));
        assert_eq!(&view.id, id, "stored record {id} says it is {}", view.id);
        assert_eq!(
            view.collection,
            held.collection.name(),
            "stored record {id} says it is in another collection"
        );
        if !view.deleted {
            validate_create(held.collection, &view.fields)
                .unwrap_or_else(|e| panic!("stored record {id} breaks the schema: {e}"));
        }
    }
}

/// What the victim now serves is taken whole by a third town: a record a
/// peer got stored does not poison the towns it travels on to (and serving
/// it, outside any `catch_unwind`, does not panic).
pub fn check_forwarding(victim: &mut MemoryReplica) {
    // Unloadable records tolerated under TOLERATE_UNLOADABLE_STORED cannot
    // travel: leave them out.
    let unloadable: Vec<RecordId> = snapshot(victim)
        .into_iter()
        .filter(|(_, h)| {
            h.collection.is_shared()
                && std::panic::catch_unwind(|| AutoCommit::load(&h.bytes).is_err()).unwrap_or(true)
        })
        .map(|(id, _)| id)
        .collect();
    assert!(
        TOLERATE_UNLOADABLE_STORED || unloadable.is_empty(),
        "unloadable records {unloadable:?}"
    );
    let third_name = "itoigawa";
    let mut third = MemoryReplica::new(third_name, ActorId::from([3u8; 16].as_slice()));
    let batch =
        sync::prepare_updates(victim, third_name, 0, Limits::default()).expect("infallible");
    let out = sync::accept_updates(&mut third, VICTIM, batch.docs).expect("infallible");
    let refused: Vec<&Refusal> = out
        .refused
        .iter()
        .filter(|r| !unloadable.iter().any(|id| id.as_str() == r.id))
        .collect();
    assert!(
        refused.is_empty() && out.needs.is_empty(),
        "a third town does not take what the victim serves: {refused:?} {:?}",
        out.needs
    );
    let mut served = victim.shared_state();
    served.retain(|id, _| !unloadable.contains(id));
    assert_eq!(
        third.shared_state(),
        served,
        "a third town ends with other records than the victim serves"
    );
}

/// Panics raised in third-party code (Automerge and the crates it parses
/// with, such as `hexane`), counted.
pub static AUTOMERGE_PANICS: AtomicUsize = AtomicUsize::new(0);

/// Silences (and counts) panics raised in third-party code: the apply path
/// runs Automerge's parser under `catch_unwind`, which contains them by
/// design. Every other panic is reported by the hook that was in place (a
/// fuzzer's hook aborts). A third-party panic that is *not* contained still
/// fails: it unwinds out of the test case (proptest reports it) or out of the
/// fuzz target (which then aborts).
pub fn quiet_automerge_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let third_party = info.location().is_some_and(|l| {
                let f = l.file();
                f.contains("/registry/src/") && !f.contains("/prost-")
            });
            if third_party {
                AUTOMERGE_PANICS.fetch_add(1, Ordering::Relaxed);
            } else {
                default(info);
            }
        }));
    });
}

/// The fuzz target's view of one input, shared so that the property tests
/// can replay fuzzer inputs (`replay_fuzz_inputs` in `hostile_input.rs`).
pub struct FuzzTarget {
    pub fixture: Fixture,
    pub before: BTreeMap<RecordId, Held>,
    /// (id, collection) pairs the raw mode aims at.
    targets: Vec<(String, String)>,
}

impl FuzzTarget {
    pub fn new() -> FuzzTarget {
        let fixture = fixture();
        let before = snapshot(&mut fixture.victim.clone());
        let mut targets: Vec<(String, String)> = fixture
            .updates
            .iter()
            .map(|u| (u.id.clone(), u.collection.clone()))
            .collect();
        let local = fixture.local.to_string();
        targets.push((local.clone(), "workers".into()));
        targets.push((local, "knowledge".into()));
        FuzzTarget {
            fixture,
            before,
            targets,
        }
    }

    /// Runs one input (see `fuzz/fuzz_targets/decode_apply.rs` for its
    /// layout) on a copy of the victim and checks the victim afterwards.
    pub fn run(&self, data: &[u8]) -> Option<Applied> {
        use prost::Message;
        let (&flags, rest) = data.split_first()?;
        let side = if flags & 1 == 0 {
            Side::Server
        } else {
            Side::Client
        };
        let repair = flags & 2 != 0;
        let wrapped;
        let message = if flags & 4 != 0 {
            let [which, heads, changes @ ..] = rest else {
                return None;
            };
            let (id, collection) = &self.targets[usize::from(*which) % self.targets.len()];
            let updates = &self.fixture.updates;
            let heads = updates
                .get(usize::from(*heads) % (updates.len() + 1))
                .map(|u| u.heads.clone())
                .unwrap_or_default();
            let doc = DocUpdate {
                id: id.clone(),
                collection: collection.clone(),
                heads,
                changes: changes.to_vec(),
                ..DocUpdate::default()
            };
            wrapped = match side {
                Side::Server => SyncRequest {
                    version: PROTOCOL_VERSION,
                    push: vec![doc],
                    ..SyncRequest::default()
                }
                .encode_to_vec(),
                Side::Client => SyncResponse {
                    version: PROTOCOL_VERSION,
                    docs: vec![doc],
                    ..SyncResponse::default()
                }
                .encode_to_vec(),
            };
            &wrapped[..]
        } else {
            rest
        };
        let mut victim = self.fixture.victim.clone();
        let out = decode_and_apply(&mut victim, side, message, repair)?;
        check_victim(&self.before, &mut victim, &out);
        if !out.stored.is_empty() {
            check_forwarding(&mut victim);
        }
        Some(out)
    }
}
