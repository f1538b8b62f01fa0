//! What a member sends to a node's peer port, made by hand: whole documents
//! of new records (valid, schema-violating, local ones in disguise), push
//! and long-poll requests; and the refusal codes of an answer.

use std::collections::BTreeMap;

use prost::Message;
use yui_protocol::wire::{DocUpdate, PROTOCOL_VERSION, SyncRequest, SyncResponse};
use yui_protocol::{Collection, RecordId};

use crate::records::{knowledge_fields, validated};

/// A record id made from `n` and `salt`, the same on every run.
pub fn random_id(n: u64, salt: u8) -> RecordId {
    let mut r = [salt; 10];
    r[..8].copy_from_slice(&n.to_be_bytes());
    RecordId::generate(yui_node::clock::now_ms(), r)
}

/// A whole Automerge document of a new record, as a peer would send it.
pub fn doc_update(
    collection: Collection,
    fields: &yui_protocol::validate::Fields,
    salt: u8,
    n: u64,
) -> DocUpdate {
    let id = random_id(n, salt);
    let mut doc = yui_protocol::doc::create(
        automerge::ActorId::from([salt; 16].as_slice()),
        collection,
        &id,
        "evil",
        yui_node::clock::now_ms(),
        fields,
    )
    .expect("doc");
    heads_and_changes(id.to_string(), collection.name(), &mut doc)
}

fn heads_and_changes(id: String, collection: &str, doc: &mut automerge::AutoCommit) -> DocUpdate {
    DocUpdate {
        id,
        collection: collection.into(),
        heads: doc.get_heads().iter().map(|h| h.0.to_vec()).collect(),
        changes: doc.save_nocompress(),
        ..Default::default()
    }
}

/// A valid knowledge record whose category the schema does not know.
pub fn schema_violation(n: u64) -> DocUpdate {
    knowledge_with(n, 0x5c, "category", "gossip")
}

/// A knowledge record whose string field `field` was then set to `value`
/// in the document, past the validation of the sender's API.
pub fn knowledge_with(n: u64, salt: u8, field: &str, value: &str) -> DocUpdate {
    use automerge::ReadDoc;
    use automerge::transaction::Transactable;
    let id = random_id(n, salt);
    let mut doc = yui_protocol::doc::create(
        automerge::ActorId::from([salt; 16].as_slice()),
        Collection::Knowledge,
        &id,
        "evil",
        yui_node::clock::now_ms(),
        &knowledge_fields("スキーマ違反"),
    )
    .expect("doc");
    let Some((_, fields)) = doc.get(automerge::ROOT, "fields").expect("get") else {
        panic!("no fields")
    };
    doc.put(&fields, field, value).expect("put");
    doc.commit();
    heads_and_changes(id.to_string(), "knowledge", &mut doc)
}

/// A worker record (personal data), as a document: sent as itself, and
/// disguised as a knowledge record.
pub fn local_documents(n: u64) -> [DocUpdate; 2] {
    let fields = validated(
        Collection::Workers,
        serde_json::json!({"name": format!("攻撃 {n}"), "status": "active", "notes": "個人情報"}),
    );
    let as_itself = doc_update(Collection::Workers, &fields, 0x10, n);
    let mut disguised = doc_update(Collection::Workers, &fields, 0x11, n);
    disguised.collection = "knowledge".into();
    [as_itself, disguised]
}

pub fn push_body(docs: Vec<DocUpdate>) -> Vec<u8> {
    SyncRequest {
        version: PROTOCOL_VERSION,
        push: docs,
        ..Default::default()
    }
    .encode_to_vec()
}

pub fn long_poll_body(since: u64, epoch: u64, wait_ms: u32) -> Vec<u8> {
    SyncRequest {
        version: PROTOCOL_VERSION,
        pull: true,
        since,
        wait_ms,
        server_epoch: epoch,
        ..Default::default()
    }
    .encode_to_vec()
}

pub fn refusal_codes(body: &[u8]) -> BTreeMap<String, usize> {
    let mut codes = BTreeMap::new();
    for r in SyncResponse::decode(body).expect("a sync response").refused {
        *codes.entry(r.code).or_default() += 1;
    }
    codes
}

/// `update` with every change of its document signed with `signing`, as
/// the signing node would send it (protocol.md 7.2). Bytes that do not
/// load are left unsigned: they are for tests of what a node refuses first.
pub fn signed_with(signing: &yui_node::store::ChangeSigning, mut update: DocUpdate) -> DocUpdate {
    use yui_protocol::provenance::{SIGNATURES_EXTENSION, encode_signatures};
    let Ok(mut doc) = automerge::AutoCommit::load(&update.changes) else {
        return update;
    };
    let signatures: Vec<_> = doc
        .get_changes(&[])
        .iter()
        .filter_map(|c| signing(c.hash()))
        .collect();
    update.extensions.push(yui_protocol::wire::Extension {
        tag: SIGNATURES_EXTENSION,
        data: encode_signatures(&signatures),
    });
    update
}
