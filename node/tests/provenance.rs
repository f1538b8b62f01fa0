//! Signed changes (issue 12, protocol.md 7) between three real nodes over
//! mutual TLS on 127.0.0.1, in a chain A–B–C: Tateshina and Itoigawa never
//! connect, both dial Omachi. Omachi is also played by hand (its own
//! certificate and key, the real protocol) to forge what its node would not.

use std::time::Duration;

use automerge::AutoCommit;
use prost::Message;
use yui_node::node::Node;
use yui_protocol::provenance::{SIGNATURES_EXTENSION, encode_signatures};
use yui_protocol::validate::{validate_create, validate_patch};
use yui_protocol::wire::{DocUpdate, Extension, SyncRequest, SyncResponse};
use yui_protocol::{Collection, RecordId};
use yui_tests::tls::Member;
use yui_tests::town::{Consortium, Running, Town};
use yui_tests::wire::{long_poll_body, refusal_codes};

const CONVERGE: Duration = Duration::from_secs(10);

fn fields(c: Collection, v: serde_json::Value) -> yui_protocol::validate::Fields {
    validate_create(c, v.as_object().expect("object")).expect("valid")
}

async fn create(node: &Node, c: Collection, v: serde_json::Value) -> String {
    let rec = node
        .store
        .create(c, fields(c, v), yui_node::clock::now_ms())
        .await
        .expect("create");
    let rec: serde_json::Value = serde_json::from_str(rec.get()).expect("json");
    rec["id"].as_str().expect("id").to_owned()
}

async fn holds(node: &Node, c: Collection, id: &str) -> Option<serde_json::Value> {
    let rec = node.store.get(c, id.to_owned(), false).await.ok()?;
    serde_json::from_str(rec.get()).ok()
}

async fn wait_until_held(
    node: &Node,
    c: Collection,
    id: &str,
    test: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + CONVERGE;
    loop {
        if let Some(rec) = holds(node, c, id).await
            && test(&rec)
        {
            return rec;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{c} {id} did not arrive at {} within {CONVERGE:?}: {:?}",
            node.config.town,
            node.status()
                .await
                .map(|s| serde_json::to_string(&s).unwrap_or_default())
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn push(docs: Vec<DocUpdate>) -> Vec<u8> {
    SyncRequest {
        version: yui_protocol::wire::PROTOCOL_VERSION,
        push: docs,
        ..Default::default()
    }
    .encode_to_vec()
}

/// A record document as `town`'s node would write it (actor `actor`).
fn record_doc(
    c: Collection,
    town: &str,
    actor: u8,
    v: serde_json::Value,
) -> (AutoCommit, RecordId) {
    let id = RecordId::generate(yui_node::clock::now_ms(), [actor; 10]);
    let doc = yui_protocol::doc::create(
        automerge::ActorId::from([actor; 16].as_slice()),
        c,
        &id,
        town,
        yui_node::clock::now_ms(),
        &fields(c, v),
    )
    .expect("doc");
    (doc, id)
}

fn update_of(doc: &mut AutoCommit, id: &RecordId, c: Collection) -> DocUpdate {
    DocUpdate {
        id: id.to_string(),
        collection: c.name().into(),
        heads: doc.get_heads().iter().map(|h| h.0.to_vec()).collect(),
        changes: doc.save_nocompress(),
        ..Default::default()
    }
}

/// Every document `from` offers a member that has nothing yet.
async fn pull_all(member: &Member) -> Vec<DocUpdate> {
    let (status, body) = member
        .post("", &long_poll_body(0, 0, 0))
        .await
        .expect("pull");
    assert_eq!(status, 200);
    SyncResponse::decode(&body[..]).expect("response").docs
}

/// `doc` (as pulled, with its signatures) plus one change by `by`, signed
/// by `by` only.
fn edited_by(
    by: &Member,
    pulled: &DocUpdate,
    town: &str,
    c: Collection,
    patch: serde_json::Value,
) -> DocUpdate {
    let mut doc = AutoCommit::load(&pulled.changes).expect("load");
    let before = doc.get_heads();
    doc.set_actor(automerge::ActorId::from([0x0b; 16].as_slice()));
    let patch = validate_patch(c, patch.as_object().expect("object")).expect("valid");
    yui_protocol::doc::update(&mut doc, c, town, yui_node::clock::now_ms(), &patch)
        .expect("update");
    let sigs: Vec<_> = doc
        .get_changes(&before)
        .iter()
        .filter_map(|ch| (by.signing)(ch.hash()))
        .collect();
    let mut update = update_of(&mut doc, &pulled.id.parse().expect("id"), c);
    update.extensions = pulled.extensions.clone();
    update.extensions.push(Extension {
        tag: SIGNATURES_EXTENSION,
        data: encode_signatures(&sigs),
    });
    update
}

struct Chain {
    consortium: Consortium,
    a: Town,
    b: Town,
    c: Town,
    ra: Running,
    rb: Running,
    rc: Running,
}

async fn chain() -> Chain {
    let consortium = Consortium::new("信州コンソーシアム");
    let (a, b, c) = (
        consortium.town("tateshina"),
        consortium.town("omachi"),
        consortium.town("itoigawa"),
    );
    // Tateshina and Itoigawa never connect: both dial Omachi. A peer is
    // added before its node starts, which starts its tasks.
    let rb = Running::start(b.node.clone(), 2);
    for from in [&a, &c] {
        yui_node::peer::add_peer(&from.node.federation(), &rb.peer_url(), None, None)
            .await
            .expect("add peer");
    }
    let (ra, rc) = (
        Running::start(a.node.clone(), 2),
        Running::start(c.node.clone(), 2),
    );
    Chain {
        consortium,
        a,
        b,
        c,
        ra,
        rb,
        rc,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_changes_are_verified_after_relaying_and_forgeries_are_refused_everywhere() {
    let Chain {
        consortium,
        a,
        b,
        c,
        ra,
        rb,
        rc,
    } = chain().await;
    let knowledge = create(
        &a.node,
        Collection::Knowledge,
        serde_json::json!({"title": "立科の研修の進め方", "body": "本文", "category": "training"}),
    )
    .await;
    let kpi = create(
        &a.node,
        Collection::KpiReports,
        serde_json::json!({"fiscal_year": 2026, "new_hires": 4}),
    )
    .await;

    // (4) A's records reach C through B, and C, which never met A, checked
    // A's signatures with the certificate that came with them.
    wait_until_held(&b.node, Collection::KpiReports, &kpi, |_| true).await;
    wait_until_held(&c.node, Collection::KpiReports, &kpi, |_| true).await;
    wait_until_held(&c.node, Collection::Knowledge, &knowledge, |_| true).await;
    let history = c
        .node
        .history(Collection::Knowledge, knowledge.clone())
        .await
        .expect("history");
    assert_eq!(history.len(), 1);
    assert!(history[0].verified, "{history:?}");
    let signer = history[0].signed_by.as_ref().expect("signed");
    assert_eq!(signer.town.as_deref(), Some("tateshina"));
    assert_eq!(signer.node_id, a.node.node_id());

    // (1) B crafts records that claim to be A's, or a made-up town's, and
    // pushes them to C itself: refused, and nowhere to be seen at C.
    let b_member = Member::of(&b, rc.peer);
    let before = c.node.store.counts().await.expect("counts");
    let (mut as_a, as_a_id) = record_doc(
        Collection::PilotResults,
        "tateshina",
        0x41,
        serde_json::json!({"title": "立科の偽の成果", "summary": "偽物", "status": "completed"}),
    );
    let (mut made_up, made_up_id) = record_doc(
        Collection::KpiReports,
        "fakemura",
        0x42,
        serde_json::json!({"fiscal_year": 2026, "new_hires": 900}),
    );
    let forged = b_member.signed(vec![
        update_of(&mut as_a, &as_a_id, Collection::PilotResults),
        update_of(&mut made_up, &made_up_id, Collection::KpiReports),
    ]);
    let (status, body) = b_member.post("", &push(forged)).await.expect("push");
    assert_eq!(status, 200);
    assert_eq!(refusal_codes(&body), [("wrong_town".to_owned(), 2)].into());
    assert_eq!(c.node.store.counts().await.expect("counts"), before);
    assert!(
        holds(&c.node, Collection::PilotResults, &as_a_id.to_string())
            .await
            .is_none()
    );
    let towns = yui_node::kpi::member_towns(&c.node).await.expect("towns");
    assert_eq!(
        towns.into_iter().collect::<Vec<_>>(),
        ["itoigawa", "omachi", "tateshina"],
        "only towns with a verified certificate count"
    );

    // (2) B changes A's KPI report: refused by C and by A, and B's own
    // node refuses to make the change at all (403 over its API).
    let a_as_b = Member::of(&b, ra.peer);
    let offered = pull_all(&a_as_b).await;
    let report = offered
        .iter()
        .find(|d| d.id == kpi)
        .expect("A offers its report");
    let raised = edited_by(
        &b_member,
        report,
        "omachi",
        Collection::KpiReports,
        serde_json::json!({"new_hires": 40}),
    );
    for (member, at) in [(&b_member, "C"), (&a_as_b, "A")] {
        let (status, body) = member
            .post("", &push(vec![raised.clone()]))
            .await
            .expect("push");
        assert_eq!(status, 200);
        assert_eq!(
            refusal_codes(&body),
            [("not_the_owner".to_owned(), 1)].into(),
            "at {at}"
        );
    }
    wait_until_held(&b.node, Collection::KpiReports, &kpi, |_| true).await;
    let patched = reqwest::Client::new()
        .patch(format!(
            "http://{}/api/v1/records/kpi_reports/{kpi}",
            rb.api
        ))
        .bearer_auth(
            std::fs::read_to_string(&b.node.token_path)
                .expect("token")
                .trim(),
        )
        .json(&serde_json::json!({"fields": {"new_hires": 40}}))
        .send()
        .await
        .expect("patch");
    assert_eq!(patched.status(), 403);
    let answer: serde_json::Value = patched.json().await.expect("json");
    assert_eq!(answer["error"]["code"], "not_the_owner", "{answer}");
    for node in [&a.node, &c.node] {
        let rec = holds(node, Collection::KpiReports, &kpi)
            .await
            .expect("held");
        assert_eq!(rec["fields"]["new_hires"], 4);
    }

    // (3) B edits A's knowledge article: any member may, attributed to B.
    b.node
        .store
        .update(
            Collection::Knowledge,
            knowledge.clone(),
            validate_patch(
                Collection::Knowledge,
                serde_json::json!({"title": "研修の進め方（大町の追記）"})
                    .as_object()
                    .expect("object"),
            )
            .expect("valid"),
            yui_node::clock::now_ms(),
        )
        .await
        .expect("B edits A's article");
    for node in [&a.node, &c.node] {
        wait_until_held(node, Collection::Knowledge, &knowledge, |r| {
            r["fields"]["title"] == "研修の進め方（大町の追記）"
        })
        .await;
        let history = node
            .history(Collection::Knowledge, knowledge.clone())
            .await
            .expect("history");
        let towns: Vec<(&str, bool)> = history
            .iter()
            .map(|h| (h.entry.town.as_str(), h.verified))
            .collect();
        assert_eq!(
            towns,
            [("tateshina", true), ("omachi", true)],
            "at {}",
            node.config.town
        );
    }

    // (7) An unsigned change, as an older version sends it, and one signed
    // by a key no consortium certificate holds: refused.
    let (mut unsigned, unsigned_id) = record_doc(
        Collection::Knowledge,
        "omachi",
        0x43,
        serde_json::json!({"title": "古い版から", "body": "本文", "category": "training"}),
    );
    let stranger_key = rcgen::KeyPair::generate().expect("key");
    let (_, stranger) =
        yui_node::pki::change_signing(&stranger_key.serialize_pem()).expect("signing");
    let stranger = Member {
        signing: stranger,
        ..b_member.clone()
    };
    let (mut strange, strange_id) = record_doc(
        Collection::Knowledge,
        "omachi",
        0x44,
        serde_json::json!({"title": "知らない鍵", "body": "本文", "category": "training"}),
    );
    let docs = vec![
        update_of(&mut unsigned, &unsigned_id, Collection::Knowledge),
        stranger.sign(update_of(&mut strange, &strange_id, Collection::Knowledge)),
    ];
    let (status, body) = b_member.post("", &push(docs)).await.expect("push");
    assert_eq!(status, 200);
    assert_eq!(
        refusal_codes(&body),
        [
            ("unknown_signer".to_owned(), 1),
            ("unsigned_change".to_owned(), 1)
        ]
        .into()
    );

    // (5) A is revoked. Its records stay everywhere; a change it makes
    // afterwards (dated now, or back-dated) is refused at C even when B
    // relays it.
    let now = time::OffsetDateTime::now_utc();
    consortium
        .ca
        .revoke(Some("tateshina"), None, now)
        .expect("revoke");
    let crl = yui_node::pki::parse_crl_pem(
        &std::fs::read_to_string(consortium.ca.crl_path()).expect("crl"),
    )
    .expect("crl");
    for node in [&b.node, &c.node] {
        let peering = node.peering().expect("joined");
        assert!(
            peering
                .install_revocations(&node.store, &node.data_dir, &crl)
                .expect("install")
        );
    }
    let a_signing = Member::of(&a, rc.peer);
    let mut late = AutoCommit::load(&report.changes).expect("load");
    let before = late.get_heads();
    late.set_actor(automerge::ActorId::from([0x0a; 16].as_slice()));
    let patch = validate_patch(
        Collection::KpiReports,
        serde_json::json!({"new_hires": 5})
            .as_object()
            .expect("object"),
    )
    .expect("valid");
    // Back-dated to a year before the revocation.
    yui_protocol::doc::update(
        &mut late,
        Collection::KpiReports,
        "tateshina",
        yui_node::clock::now_ms() - 365 * 86_400_000,
        &patch,
    )
    .expect("update");
    let sigs: Vec<_> = late
        .get_changes(&before)
        .iter()
        .filter_map(|ch| (a_signing.signing)(ch.hash()))
        .collect();
    let mut late_update = update_of(&mut late, &kpi.parse().expect("id"), Collection::KpiReports);
    late_update.extensions = report.extensions.clone();
    late_update.extensions.push(Extension {
        tag: SIGNATURES_EXTENSION,
        data: encode_signatures(&sigs),
    });
    let (status, body) = b_member
        .post("", &push(vec![late_update]))
        .await
        .expect("push");
    assert_eq!(status, 200);
    assert_eq!(
        refusal_codes(&body),
        [("revoked_signer".to_owned(), 1)].into()
    );
    for node in [&b.node, &c.node] {
        let rec = holds(node, Collection::KpiReports, &kpi)
            .await
            .expect("A's report stays");
        assert_eq!(rec["fields"]["new_hires"], 4);
    }
    for r in [ra, rb, rc] {
        r.stop();
    }
}

/// Certificates arrive from any member, in any shape: parsing them never
/// panics, and nothing but a certificate the CA issued becomes a signer,
/// with the key and town the CA signed.
#[test]
fn hostile_certificate_bytes_never_become_a_signer() {
    let consortium = Consortium::new("テスト");
    let ca = yui_node::pki::Anchors::new(vec![
        yui_node::pki::read_pem_file(&consortium.ca.cert_path(), "CA").expect("ca"),
    ])
    .expect("anchors");
    let member = consortium.town("omachi");
    let real =
        yui_node::pki::read_pem_file(&member.node.data_dir.cert_path(), "cert").expect("cert");
    let revocations = yui_node::pki::Revocations::default();
    let honest = yui_node::pki::signer(&real, &ca, &[], &revocations).expect("the real one");
    // Another consortium's CA issued the same town's certificate.
    let other = Consortium::new("別のコンソーシアム");
    let stranger = other.town("omachi");
    let foreign =
        yui_node::pki::read_pem_file(&stranger.node.data_dir.cert_path(), "cert").expect("cert");
    assert!(yui_node::pki::signer(&foreign, &ca, &[], &revocations).is_err());
    let mut runner = proptest::test_runner::TestRunner::default();
    runner
        .run(
            &(
                proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2048),
                0..real.len(),
                proptest::prelude::any::<u8>(),
            ),
            |(noise, at, byte)| {
                // Random bytes never pass; the real certificate with one byte
                // changed passes only as itself (a byte outside what the CA
                // signed, such as the encoding around the signature).
                proptest::prop_assert!(
                    yui_node::pki::signer(&noise, &ca, &[], &revocations).is_err()
                );
                let mut bent = real.clone();
                bent[at] = byte;
                if let Ok(signer) = yui_node::pki::signer(&bent, &ca, &[], &revocations) {
                    proptest::prop_assert_eq!(signer.id, honest.id);
                    proptest::prop_assert_eq!(&signer.town, &honest.town);
                }
                Ok(())
            },
        )
        .expect("no hostile certificate passes");
}

/// The history of `id` at `node`: per change, its town and whether its
/// signature was verified.
async fn provenance_of(node: &Node, c: Collection, id: &str) -> Vec<(String, bool)> {
    node.history(c, id.to_owned())
        .await
        .expect("history")
        .into_iter()
        .map(|h| (h.entry.town, h.verified))
        .collect()
}

/// Waits until `id`'s history at `node` is `expected`.
async fn wait_for_provenance(node: &Node, c: Collection, id: &str, expected: &[(&str, bool)]) {
    let expected: Vec<(String, bool)> = expected
        .iter()
        .map(|(t, v)| ((*t).to_owned(), *v))
        .collect();
    let deadline = tokio::time::Instant::now() + CONVERGE;
    loop {
        let found = provenance_of(node, c, id).await;
        if found == expected {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{c} {id} at {}: {found:?}, not {expected:?} within {CONVERGE:?}",
            node.config.town
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The database of a stopped node as a version without signatures left it
/// (protocol.md 7.6): no signatures, no signer certificates, no late
/// signatures and no trace of signing its history. Its records and sync
/// state are what that version wrote: the changes are the same bytes.
fn as_before_signatures(town: &Town) {
    let conn = rusqlite::Connection::open(town.node.data_dir.db_path()).expect("open");
    conn.execute_batch(
        "DROP TABLE change_signatures; DROP TABLE signer_certificates; DROP TABLE late_signatures;
         DELETE FROM meta WHERE key LIKE 'own_history%';",
    )
    .expect("downgrade");
}

/// Opens a stopped town's data directory again, as starting the new
/// binary does (the old node keeps nothing open that matters: its store
/// was closed when it stopped).
fn upgrade(town: &mut Town) {
    let data_dir = town.node.data_dir.clone();
    town.node = std::sync::Arc::new(Node::open(data_dir, false).expect("reopen"));
}

/// A signature-only update (protocol.md 7.6) of `id` at `heads`.
fn signatures_only(
    id: &str,
    c: Collection,
    heads: &[Vec<u8>],
    sigs: &[yui_protocol::provenance::ChangeSignature],
) -> DocUpdate {
    DocUpdate {
        id: id.to_owned(),
        collection: c.name().into(),
        heads: heads.to_vec(),
        changes: Vec::new(),
        seq: 1,
        extensions: vec![Extension {
            tag: SIGNATURES_EXTENSION,
            data: encode_signatures(sigs),
        }],
    }
}

/// Records whose history began before nodes signed their changes
/// (protocol.md 7.6). Tateshina and Omachi sync while neither signs;
/// Omachi adds to Tateshina's article, and Hakuba gives Omachi a record
/// and never upgrades. Omachi upgrades and signs its own older change; a
/// new member, Itoigawa, dials Omachi only and refuses all three records.
/// Forged signature-only updates are refused. Tateshina upgrades and signs
/// its own: the signatures reach Omachi without the changes, and Itoigawa
/// then gets the article and the report with every change verified;
/// Hakuba's record never reaches it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_history_from_before_signatures_reaches_a_new_member_once_its_authors_upgrade() {
    let consortium = Consortium::new("信州コンソーシアム");
    let (mut a, mut b, c) = (
        consortium.town("tateshina"),
        consortium.town("omachi"),
        consortium.town("itoigawa"),
    );
    let hakuba = consortium.town("hakuba");

    // Before signatures.
    let rb = Running::start(b.node.clone(), 2);
    let b_peer = rb.peer;
    yui_node::peer::add_peer(&a.node.federation(), &rb.peer_url(), None, None)
        .await
        .expect("add peer");
    let ra = Running::start(a.node.clone(), 2);
    let article = create(
        &a.node,
        Collection::Knowledge,
        serde_json::json!({"title": "立科の研修の進め方", "body": "本文", "category": "training"}),
    )
    .await;
    let report = create(
        &a.node,
        Collection::KpiReports,
        serde_json::json!({"fiscal_year": 2025, "new_hires": 3}),
    )
    .await;
    wait_until_held(&b.node, Collection::KpiReports, &report, |_| true).await;
    wait_until_held(&b.node, Collection::Knowledge, &article, |_| true).await;
    const ADDED: &str = "立科の研修の進め方（大町の追記）";
    b.node
        .store
        .update(
            Collection::Knowledge,
            article.clone(),
            validate_patch(
                Collection::Knowledge,
                serde_json::json!({"title": ADDED})
                    .as_object()
                    .expect("object"),
            )
            .expect("valid"),
            yui_node::clock::now_ms(),
        )
        .await
        .expect("B adds to A's article");
    let (mut old, old_id) = record_doc(
        Collection::Knowledge,
        "hakuba",
        0x48,
        serde_json::json!({"title": "白馬の古い記録", "body": "本文", "category": "training"}),
    );
    let old_id = old_id.to_string();
    let from_hakuba = Member::of(&hakuba, rb.peer);
    let sent = from_hakuba.signed(vec![update_of(
        &mut old,
        &old_id.parse().expect("id"),
        Collection::Knowledge,
    )]);
    let (status, body) = from_hakuba.post("", &push(sent)).await.expect("push");
    assert_eq!((status, refusal_codes(&body)), (200, Default::default()));
    wait_until_held(&a.node, Collection::Knowledge, &article, |r| {
        r["fields"]["title"] == ADDED
    })
    .await;
    wait_until_held(&a.node, Collection::Knowledge, &old_id, |_| true).await;
    ra.stop();
    rb.stop();
    as_before_signatures(&a);
    as_before_signatures(&b);

    // Omachi upgrades first, where its peers dial it, and signs its own
    // older change: never Tateshina's, never Hakuba's.
    upgrade(&mut b);
    let rb = Running::start_on(b.node.clone(), 2, b_peer);
    wait_for_provenance(
        &b.node,
        Collection::Knowledge,
        &article,
        &[("tateshina", false), ("omachi", true)],
    )
    .await;
    assert_eq!(
        provenance_of(&b.node, Collection::KpiReports, &report).await,
        [("tateshina".to_owned(), false)]
    );
    assert_eq!(
        provenance_of(&b.node, Collection::Knowledge, &old_id).await,
        [("hakuba".to_owned(), false)]
    );

    // Itoigawa joins and refuses all three: each has an unsigned change.
    yui_node::peer::add_peer(&c.node.federation(), &rb.peer_url(), None, None)
        .await
        .expect("add peer");
    let rc = Running::start(c.node.clone(), 2);
    let deadline = tokio::time::Instant::now() + CONVERGE;
    while c.node.status().await.expect("status").peers[0].refused_docs < 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "Itoigawa refused nothing"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for (col, id) in [
        (Collection::Knowledge, &article),
        (Collection::KpiReports, &report),
        (Collection::Knowledge, &old_id),
    ] {
        assert!(
            holds(&c.node, col, id).await.is_none(),
            "{id} reached Itoigawa"
        );
    }

    // A member forges signature-only updates for Tateshina's change:
    // signed with Omachi's key, and a made-up signature in Tateshina's name
    // (with Tateshina's real certificate). Refused, and nothing stored.
    let forger = Member::of(&c, rb.peer);
    let offered = pull_all(&forger).await;
    let whole = offered.iter().find(|d| d.id == article).expect("offered");
    let mut doc = AutoCommit::load(&whole.changes).expect("load");
    let a_actor = a.node.store.actor_hex();
    let by_a: Vec<automerge::ChangeHash> = doc
        .get_changes(&[])
        .iter()
        .filter(|ch| ch.actor_id().to_hex_string() == a_actor)
        .map(|ch| ch.hash())
        .collect();
    assert_eq!(by_a.len(), 1);
    let b_key = Member::of(&b, rb.peer).signing;
    let as_b: Vec<_> = by_a.iter().filter_map(|h| b_key(*h)).collect();
    let garbage = vec![yui_protocol::provenance::ChangeSignature {
        change: by_a[0],
        signer: a.node.signer(),
        signature: vec![0x5a; 64],
    }];
    let a_cert =
        yui_node::pki::read_pem_file(&a.node.data_dir.cert_path(), "certificate").expect("cert");
    let forged = SyncRequest {
        version: yui_protocol::wire::PROTOCOL_VERSION,
        push: vec![
            signatures_only(&article, Collection::Knowledge, &whole.heads, &as_b),
            signatures_only(&article, Collection::Knowledge, &whole.heads, &garbage),
        ],
        extensions: vec![Extension {
            tag: yui_protocol::provenance::CERTIFICATES_EXTENSION,
            data: yui_protocol::provenance::encode_certificates(&[a_cert]),
        }],
        ..Default::default()
    };
    let (status, body) = forger.post("", &forged.to_wire()).await.expect("push");
    assert_eq!(status, 200);
    assert_eq!(
        refusal_codes(&body),
        [
            ("bad_signature".to_owned(), 1),
            ("wrong_town".to_owned(), 1)
        ]
        .into()
    );
    assert_eq!(
        provenance_of(&b.node, Collection::Knowledge, &article).await,
        [("tateshina".to_owned(), false), ("omachi".to_owned(), true)]
    );
    assert_eq!(
        b.node
            .store
            .signed_by(article.parse().expect("id"))
            .await
            .expect("signed")
            .len(),
        1
    );

    // Tateshina upgrades and signs its own older changes. They reach
    // Omachi as signatures only: what Tateshina pushed since carried no
    // change, nor what Omachi answered it.
    let upgraded_at = yui_protocol::record::format_time(yui_node::clock::now_ms());
    upgrade(&mut a);
    let ra = Running::start(a.node.clone(), 2);
    wait_for_provenance(
        &b.node,
        Collection::Knowledge,
        &article,
        &[("tateshina", true), ("omachi", true)],
    )
    .await;
    wait_for_provenance(
        &b.node,
        Collection::KpiReports,
        &report,
        &[("tateshina", true)],
    )
    .await;
    wait_for_provenance(
        &a.node,
        Collection::Knowledge,
        &article,
        &[("tateshina", true), ("omachi", true)],
    )
    .await;
    let pushed = a
        .node
        .store
        .egress(None, Some(upgraded_at.clone()), 100)
        .await
        .expect("ledger");
    for id in [&article, &report] {
        assert!(
            pushed.iter().any(|e| &e.record_id == id),
            "{id} was not pushed: {pushed:?}"
        );
    }
    let to_a = b
        .node
        .store
        .egress(Some(a.node.node_id()), Some(upgraded_at), 100)
        .await
        .expect("ledger");
    assert!(
        pushed.iter().chain(&to_a).all(|e| e.bytes == 0),
        "changes crossed: {pushed:?} {to_a:?}"
    );

    // Itoigawa, which refused them, now gets both from Omachi, every change
    // verified, Tateshina's with the certificate Omachi passed on. Hakuba's
    // record stays out.
    wait_until_held(&c.node, Collection::Knowledge, &article, |r| {
        r["fields"]["title"] == ADDED
    })
    .await;
    wait_until_held(&c.node, Collection::KpiReports, &report, |_| true).await;
    let history = c
        .node
        .history(Collection::Knowledge, article.clone())
        .await
        .expect("history");
    let signers: Vec<(&str, Option<&str>, bool)> = history
        .iter()
        .map(|h| {
            let by = h.signed_by.as_ref().expect("signed");
            (h.entry.town.as_str(), by.town.as_deref(), h.verified)
        })
        .collect();
    assert_eq!(
        signers,
        [
            ("tateshina", Some("tateshina"), true),
            ("omachi", Some("omachi"), true)
        ]
    );
    assert_eq!(
        history[0].signed_by.as_ref().expect("signed").node_id,
        a.node.node_id()
    );
    assert_eq!(
        history[1].signed_by.as_ref().expect("signed").node_id,
        b.node.node_id()
    );
    assert_eq!(
        provenance_of(&c.node, Collection::KpiReports, &report).await,
        [("tateshina".to_owned(), true)]
    );
    assert!(
        holds(&c.node, Collection::Knowledge, &old_id)
            .await
            .is_none()
    );

    // And it settles: no node's feed moves any more (signatures re-offered
    // for ever would).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let feeds = |nodes: [&Node; 3]| nodes.map(|n| *n.store.watch_seq().borrow());
    let settled = feeds([&a.node, &b.node, &c.node]);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(feeds([&a.node, &b.node, &c.node]), settled);
    for r in [ra, rb, rc] {
        r.stop();
    }
}
