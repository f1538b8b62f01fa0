//! A hostile consortium member, over a real mutual-TLS connection to a real
//! peer port: garbage bodies, Automerge sync messages of the kinds measured to
//! crash or stall automerge 0.12, mutated documents that get past Automerge's
//! checksum, local-collection pushes, oversize and inflating bodies. The node
//! must answer each quickly, keep serving, and keep its stored records intact.

use std::time::{Duration, Instant};

use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use yui_protocol::wire::{DocUpdate, PROTOCOL_VERSION, SyncRequest, SyncResponse};
use yui_protocol::{Collection, RecordId};
use yui_tests::records::validated;
use yui_tests::tls::{self, Member};
use yui_tests::town::{Consortium, Running, Town};
use yui_tests::wire::push_body as push;

/// One HTTP/1.1 request over a fresh mutual-TLS connection, as the attacker.
async fn post(attacker: &Member, headers: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let mut tls = tls::connect(attacker.addr, attacker.config.clone())
        .await
        .expect("mutual TLS handshake as a member");
    let head = format!(
        "POST /yui/v1/sync HTTP/1.1\r\nHost: victim\r\nContent-Type: application/x-protobuf\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    tls.write_all(head.as_bytes()).await.expect("head");
    // The server may answer and close before reading a large body. Flush:
    // under back-pressure the TLS layer may keep the tail of the body
    // buffered, and the server would wait for it until our timeout.
    if tls.write_all(body).await.is_ok() {
        let _ = tls.flush().await;
    }
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), tls.read_to_end(&mut answer)).await;
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP answer: {:?}", String::from_utf8_lossy(&answer)));
    let status = String::from_utf8_lossy(&answer[..split])
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    (status, answer[split + 4..].to_vec())
}

fn refusals(body: &[u8]) -> Vec<String> {
    SyncResponse::decode(body)
        .expect("a sync response")
        .refused
        .into_iter()
        .map(|r| r.code)
        .collect()
}

/// Rewrites a chunk's checksum after its body was changed, the way Automerge
/// computes it, so the mutation reaches Automerge's parser.
fn fix_checksum(chunk: &mut [u8]) {
    let mut pos = 9;
    let mut len = 0usize;
    let mut shift = 0;
    loop {
        let b = chunk[pos];
        len |= usize::from(b & 0x7f) << shift;
        pos += 1;
        shift += 7;
        if b & 0x80 == 0 {
            break;
        }
    }
    let mut hashed = vec![chunk[8]];
    hashed.extend_from_slice(&chunk[9..pos]);
    hashed.extend_from_slice(&chunk[pos..(pos + len).min(chunk.len())]);
    let digest = ring::digest::digest(&ring::digest::SHA256, &hashed);
    chunk[4..8].copy_from_slice(&digest.as_ref()[..4]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_member_cannot_crash_stall_or_corrupt_the_node() {
    let consortium = Consortium::new("テスト");
    let victim = consortium.town("omachi");
    let attacker_town = consortium.town("evil");
    let (kept, kept_id) = keep_one_record(&victim).await;
    let node = Running::start(victim.node.clone(), 2);
    let attacker = Member::of(&attacker_town, node.peer);

    garbage_bodies(&attacker).await;
    automerge_sync_messages(&attacker).await;
    let valid = valid_document();
    mutated_documents(&attacker, &valid).await;
    local_oversize_and_inflating_bodies(&attacker, &valid).await;

    still_serving_with_the_record_intact(&victim, &node, &kept, &kept_id).await;
    // And an honest exchange still works.
    let (status, body) = post(
        &attacker,
        "",
        &SyncRequest {
            version: PROTOCOL_VERSION,
            pull: true,
            ..Default::default()
        }
        .encode_to_vec(),
    )
    .await;
    assert_eq!(status, 200);
    let answer = SyncResponse::decode(&body[..]).expect("response");
    assert_eq!(
        answer.docs.len(),
        1,
        "the kept record is offered to a member"
    );
    node.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_cannot_deliver_a_title_with_control_or_direction_characters() {
    let consortium = Consortium::new("テスト");
    let victim = consortium.town("omachi");
    let attacker_town = consortium.town("evil");
    let node = Running::start(victim.node.clone(), 2);
    let attacker = Member::of(&attacker_town, node.peer);
    let titles = ["ヌル\u{0}", "\u{1b}[31m赤い題", "txt.\u{202e}exe"];
    let docs: Vec<DocUpdate> = titles
        .iter()
        .enumerate()
        .map(|(n, t)| yui_tests::wire::knowledge_with(n as u64, 0x7c, "title", t))
        .collect();
    let (status, body) = post(&attacker, "", &push(docs)).await;
    assert_eq!(status, 200);
    let refused = SyncResponse::decode(&body[..]).expect("response").refused;
    assert_eq!(refused.len(), titles.len(), "{refused:?}");
    for r in &refused {
        assert_eq!(r.code, "schema_violation", "{r:?}");
        assert!(r.message.starts_with("title: contains U+"), "{r:?}");
    }
    let counts = victim.node.store.counts().await.expect("counts");
    assert_eq!(
        counts[&Collection::Knowledge],
        0,
        "a refused title was stored"
    );
    node.stop();
}

/// The victim holds a record that must come through intact: it, and its id.
async fn keep_one_record(victim: &Town) -> (serde_json::Value, String) {
    let fields = validated(
        Collection::Knowledge,
        serde_json::json!({"title": "守るべき記録", "body": "本文", "category": "security"}),
    );
    let kept = victim
        .node
        .store
        .create(Collection::Knowledge, fields, yui_node::clock::now_ms())
        .await
        .expect("create");
    let kept: serde_json::Value = serde_json::from_str(kept.get()).expect("json");
    let kept_id = kept["id"].as_str().expect("id").to_owned();
    (kept, kept_id)
}

/// 1. Bodies that are not messages.
async fn garbage_bodies(attacker: &Member) {
    for garbage in [&b"\x00\x01\x02garbage"[..], &[0xff; 64], b""] {
        let (status, _) = post(attacker, "", garbage).await;
        // An empty body decodes as version 0: refused as another version.
        assert!(status == 400 || status == 426, "garbage answered {status}");
    }
}

/// 2. Automerge sync messages: a 10-byte one of the shape that divides by
///    zero in automerge's bloom filter, and a 14-byte one whose probe count
///    burns minutes of CPU — sent raw, and as a document's changes.
async fn automerge_sync_messages(attacker: &Member) {
    let sync_zero = vec![0x42, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    let sync_probes = vec![
        0x42, 0, 0, 1, 0x01, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x01, 0x01, 0x00, 0x00,
    ];
    let id = RecordId::generate(1, [1; 10]).to_string();
    for msg in [&sync_zero, &sync_probes] {
        let start = Instant::now();
        let (status, _) = post(attacker, "", msg).await;
        assert!(status == 400 || status == 426, "{status}");
        let doc = DocUpdate {
            id: id.clone(),
            collection: "knowledge".into(),
            changes: msg.clone(),
            ..Default::default()
        };
        let (status, body) = post(attacker, "", &push(vec![doc])).await;
        assert_eq!(status, 200);
        assert_eq!(refusals(&body), ["invalid_changes"]);
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "answered in {:?}",
            start.elapsed()
        );
    }
}

/// A valid knowledge document, as the attacker's town saves it.
fn valid_document() -> Vec<u8> {
    let mut doc = yui_protocol::doc::create(
        automerge::ActorId::from([9u8; 16].as_slice()),
        Collection::Knowledge,
        &RecordId::generate(2, [2; 10]),
        "evil",
        2,
        &validated(Collection::Knowledge, serde_json::json!({"title": "t", "body": "悪意のある本文", "category": "pr", "tags": ["a", "b"]})),
    )
    .expect("doc");
    doc.save_nocompress()
}

/// 3. Mutated documents that pass Automerge's checksum: many make
///    automerge's `load` panic. Count them here, then send them all.
async fn mutated_documents(attacker: &Member, valid: &[u8]) {
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut mutated = Vec::new();
    let mut panics_locally = 0;
    std::panic::set_hook(Box::new(|_| {})); // the panics below are expected
    for _ in 0..600 {
        let mut m = valid.to_vec();
        for _ in 0..3 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let at = 12 + (rng as usize) % (m.len() - 12);
            m[at] = (rng >> 32) as u8;
        }
        fix_checksum(&mut m);
        if std::panic::catch_unwind(|| automerge::AutoCommit::load(&m)).is_err() {
            panics_locally += 1;
        }
        mutated.push(m);
    }
    let _ = std::panic::take_hook();
    let start = Instant::now();
    let mut codes = std::collections::BTreeMap::<String, usize>::new();
    for chunk in mutated.chunks(100) {
        let docs = chunk
            .iter()
            .enumerate()
            .map(|(i, m)| DocUpdate {
                id: RecordId::generate(3, [i as u8; 10]).to_string(),
                collection: "knowledge".into(),
                changes: m.clone(),
                ..Default::default()
            })
            .collect();
        let (status, body) = post(attacker, "", &push(docs)).await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        for code in refusals(&body) {
            *codes.entry(code).or_default() += 1;
        }
    }
    eprintln!(
        "600 mutated documents ({panics_locally} panic automerge's load here) answered in {:?}: {codes:?}",
        start.elapsed()
    );
}

/// 4. A local collection, an oversize update, an oversize body, a gzip
///    bomb, another protocol version.
async fn local_oversize_and_inflating_bodies(attacker: &Member, valid: &[u8]) {
    let local = DocUpdate {
        id: RecordId::generate(4, [4; 10]).to_string(),
        collection: "workers".into(),
        changes: valid.to_vec(),
        ..Default::default()
    };
    let huge = DocUpdate {
        id: RecordId::generate(5, [5; 10]).to_string(),
        collection: "knowledge".into(),
        changes: vec![0; 5 * 1024 * 1024],
        ..Default::default()
    };
    let (status, body) = post(attacker, "", &push(vec![local, huge])).await;
    assert_eq!(status, 200);
    assert_eq!(refusals(&body), ["local_collection", "invalid_changes"]);
    let (status, _) = post(attacker, "", &vec![0u8; 33 * 1024 * 1024]).await;
    assert_eq!(status, 413);
    let mut bomb = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    std::io::Write::write_all(&mut bomb, &vec![0u8; 40 * 1024 * 1024]).expect("write");
    let bomb = bomb.finish().expect("gzip");
    let (status, _) = post(attacker, "Content-Encoding: gzip\r\n", &bomb).await;
    assert_eq!(status, 400);
    let (status, _) = post(
        attacker,
        "",
        &SyncRequest {
            version: 2,
            ..Default::default()
        }
        .encode_to_vec(),
    )
    .await;
    assert_eq!(status, 426, "another protocol version is refused");
}

/// Afterwards: the node answers, its record is intact, nothing was stored.
async fn still_serving_with_the_record_intact(
    victim: &Town,
    node: &Running,
    kept: &serde_json::Value,
    kept_id: &str,
) {
    let api_addr = node.api;
    let http = reqwest::Client::new();
    let token = victim.node.data_dir.read_token().expect("token");
    let health = http
        .get(format!("http://{api_addr}/healthz"))
        .send()
        .await
        .expect("health");
    assert_eq!(health.status(), 200);
    let got: serde_json::Value = http
        .get(format!(
            "http://{api_addr}/api/v1/records/knowledge/{kept_id}"
        ))
        .bearer_auth(&token)
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(&got, kept);
    let counts = victim.node.store.counts().await.expect("counts");
    assert_eq!(
        counts[&Collection::Knowledge],
        1,
        "no hostile document was stored"
    );
    assert_eq!(counts[&Collection::Workers], 0);
}

/// A member's knowledge record, changed in its document by `edit` past the
/// sender's own API, then committed at `commit_at` (ms).
fn crafted(n: u64, edit: impl FnOnce(&mut automerge::AutoCommit), commit_at: i64) -> DocUpdate {
    let id = yui_tests::wire::random_id(n, 0x6d);
    let mut doc = yui_protocol::doc::create(
        automerge::ActorId::from([0x6d; 16].as_slice()),
        Collection::Knowledge,
        &id,
        "evil",
        yui_node::clock::now_ms(),
        &yui_tests::records::knowledge_fields("細工された記録"),
    )
    .expect("doc");
    edit(&mut doc);
    doc.commit_with(automerge::transaction::CommitOptions::default().with_time(commit_at));
    DocUpdate {
        id: id.to_string(),
        collection: "knowledge".into(),
        heads: doc.get_heads().iter().map(|h| h.0.to_vec()).collect(),
        changes: doc.save_nocompress(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_push_is_checked_like_a_local_write_and_refused_documents_are_not_relayed() {
    use automerge::transaction::Transactable;
    use automerge::{ROOT, ReadDoc, ScalarValue};
    let consortium = Consortium::new("テスト");
    let victim = consortium.town("omachi");
    let attacker_town = consortium.town("evil");
    let node = Running::start(victim.node.clone(), 2);
    let attacker = Member::of(&attacker_town, node.peer);
    let now = yui_node::clock::now_ms();
    let fields_of = |doc: &automerge::AutoCommit| match doc.get(ROOT, "fields").expect("get") {
        Some((_, obj)) => obj,
        None => panic!("no fields"),
    };
    let set_field = |key: &'static str, value: &'static str| {
        move |doc: &mut automerge::AutoCommit| {
            let f = fields_of(doc);
            doc.put(&f, key, value).expect("put");
        }
    };
    // `body` is a long text (an Automerge Text): edited as one.
    let set_body = |text: &'static str| {
        move |doc: &mut automerge::AutoCommit| {
            let f = fields_of(doc);
            let Some((_, body)) = doc.get(&f, "body").expect("get") else {
                panic!("no body")
            };
            doc.update_text(&body, text).expect("update_text");
        }
    };
    let set_root = |key: &'static str, value: ScalarValue| {
        move |doc: &mut automerge::AutoCommit| doc.put(ROOT, key, value).expect("put")
    };
    let long_town = "a".repeat(10_000);
    let year_3000 = 32_503_680_000_000;
    let cases: Vec<(&str, DocUpdate, &str)> = vec![
        (
            "a phone number",
            crafted(1, set_body("連絡は 090-1234-5678 まで"), now),
            "personal_data",
        ),
        (
            "a My Number",
            crafted(2, set_body("マイナンバー 123456789018"), now),
            "personal_data",
        ),
        (
            "an e-mail address",
            crafted(3, set_body("taro@example.jp へ"), now),
            "personal_data",
        ),
        (
            "an unknown field",
            crafted(4, set_field("secret", "隠し"), now),
            "schema_violation",
        ),
        (
            "a key outside fields",
            crafted(5, set_root("hidden", "隠し".into()), now),
            "schema_violation",
        ),
        (
            "a schema-breaking tombstone",
            crafted(
                6,
                |doc| {
                    doc.put(ROOT, "deleted", true).expect("put");
                    let f = fields_of(doc);
                    doc.put(&f, "category", "gossip").expect("put");
                },
                now,
            ),
            "schema_violation",
        ),
        (
            "an empty town",
            crafted(7, set_root("town", "".into()), now),
            "invalid_town",
        ),
        (
            "a town with markup",
            crafted(8, set_root("town", "<b>x</b>".into()), now),
            "invalid_town",
        ),
        (
            "a 10,000-character town",
            crafted(9, set_root("town", long_town.as_str().into()), now),
            "invalid_town",
        ),
        (
            "a record dated year 1",
            crafted(
                10,
                set_root("created_at", ScalarValue::Timestamp(-62_135_596_800_000)),
                now,
            ),
            "invalid_time",
        ),
        (
            "a record dated year 3000",
            crafted(
                11,
                set_root("updated_at", ScalarValue::Timestamp(year_3000)),
                now,
            ),
            "invalid_time",
        ),
        (
            "a commit time of 9999-12-31T23:59:59Z",
            crafted(12, set_field("title", "未来"), 253_402_300_799_000),
            "invalid_time",
        ),
    ];
    let honest = attacker.sign(yui_tests::wire::doc_update(
        Collection::Knowledge,
        &yui_tests::records::knowledge_fields("正直な記録"),
        0x6e,
        13,
    ));
    let mut docs: Vec<DocUpdate> = cases.iter().map(|(_, d, _)| d.clone()).collect();
    docs.push(honest.clone());
    let (status, body) = post(&attacker, "", &push(docs)).await;
    assert_eq!(status, 200);
    let refused = SyncResponse::decode(&body[..]).expect("response").refused;
    for (what, doc, code) in &cases {
        let r = refused
            .iter()
            .find(|r| r.id == doc.id)
            .unwrap_or_else(|| panic!("{what} was not refused: {refused:?}"));
        assert_eq!(r.code, *code, "{what}: {r:?}");
    }
    assert_eq!(
        refused.len(),
        cases.len(),
        "the honest record was refused: {refused:?}"
    );
    assert!(
        refused
            .iter()
            .all(|r| !r.message.contains("5678") && !r.message.contains("123456789018")),
        "a refusal repeats the personal value: {refused:?}"
    );
    // The rest of the batch went on; nothing refused is stored, so nothing
    // refused is offered onward to another member.
    let counts = victim.node.store.counts().await.expect("counts");
    assert_eq!(
        counts[&Collection::Knowledge],
        1,
        "only the honest record is stored"
    );
    let third = consortium.town("itoigawa");
    let relay = Member::of(&third, node.peer);
    let (status, body) = post(&relay, "", &yui_tests::wire::long_poll_body(0, 0, 0)).await;
    assert_eq!(status, 200);
    let offered = SyncResponse::decode(&body[..]).expect("response").docs;
    assert_eq!(offered.len(), 1, "{offered:?}");
    assert_eq!(offered[0].id, honest.id);
    // Counted per member, on /metrics.
    let metrics = reqwest::get(format!("http://{}/metrics", node.api))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let counted = metrics
        .lines()
        .find(|l| {
            l.starts_with("yui_inbound_refused_documents_total{") && l.contains("town=\"evil\"")
        })
        .unwrap_or_else(|| panic!("no refusal count for evil: {metrics}"));
    assert!(counted.ends_with(&format!(" {}", cases.len())), "{counted}");
    // The KPI roll-up's member towns are real members only: those whose
    // certificates this node has seen (the two that connected, and itself).
    let towns = yui_node::kpi::member_towns(&victim.node)
        .await
        .expect("towns");
    assert_eq!(
        towns.into_iter().collect::<Vec<_>>(),
        ["evil", "itoigawa", "omachi"]
    );
    node.stop();
}
