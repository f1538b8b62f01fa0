//! The egress ledger (issue 6) across three real nodes: Tateshina and
//! Itoigawa dial Omachi and never each other. After they converge, each
//! node's ledger must list exactly the documents its peers received from
//! it — by record, per peer, with heads the receiver holds — and never a
//! local record; `yui audit egress` prints the same, with its filters.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};
use yui_tests::{Ca, Server, knowledge, member, wait_for, yui_ok};

const CONVERGE: Duration = Duration::from_secs(30);

fn ledger(server: &Server, query: &str) -> Vec<Value> {
    let (status, body) = server.get(&format!("/api/v1/audit/egress?limit=10000{query}"));
    assert_eq!(status, 200, "{body}");
    body["entries"].as_array().expect("entries").clone()
}

fn ids_to(entries: &[Value], town: &str) -> BTreeSet<String> {
    entries
        .iter()
        .filter(|e| e["peer_town"] == town)
        .map(|e| e["record_id"].as_str().expect("id").to_owned())
        .collect()
}

fn history_hashes(server: &Server, collection: &str, id: &str) -> BTreeSet<String> {
    let (status, body) = server.get(&format!("/api/v1/records/{collection}/{id}/history"));
    assert_eq!(status, 200, "{body}");
    body["changes"]
        .as_array()
        .expect("history changes")
        .iter()
        .map(|h| h["hash"].as_str().expect("hash").to_owned())
        .collect()
}

#[test]
fn the_egress_ledger_lists_exactly_what_each_peer_received_and_no_local_record() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::init(&dir.path().join("ca"), "信州コンソーシアム");
    let a = Server::start_peer(&member(dir.path(), "tateshina", &ca), "127.0.0.1:0");
    let b = Server::start_peer(&member(dir.path(), "omachi", &ca), "127.0.0.1:0");
    let c = Server::start_peer(&member(dir.path(), "itoigawa", &ca), "127.0.0.1:0");
    a.add_peer(b.peer_url());
    c.add_peer(b.peer_url());

    // Local records first, then shared ones on both ends of the chain.
    let mut local = BTreeSet::new();
    for (server, n) in [(&a, 3), (&c, 2)] {
        for i in 0..n {
            let rec = server.create(
                "workers",
                json!({"name": format!("ワーカー{i}"), "status": "active"}),
            );
            local.insert(rec["id"].as_str().expect("id").to_owned());
        }
    }
    let make = |server: &Server, prefix: &str, n: usize| -> BTreeSet<String> {
        (0..n)
            .map(|i| {
                let rec = server.create("knowledge", knowledge(&format!("{prefix} の知見 {i}")));
                rec["id"].as_str().expect("id").to_owned()
            })
            .collect()
    };
    let from_a = make(&a, "立科", 5);
    let from_c = make(&c, "糸魚川", 4);
    let everywhere = |server: &Server| server.count("knowledge") == 9;
    assert!(
        wait_for(CONVERGE, || everywhere(&a)
            && everywhere(&b)
            && everywhere(&c)),
        "the three towns did not converge"
    );
    // One edit after the first round: a second entry with new heads.
    let edited = from_a.iter().next().expect("a record").clone();
    let (status, _) = a
        .patch(
            &format!("/api/v1/records/knowledge/{edited}"),
            &json!({"fields": {"title": "立科 の知見（改訂）"}}),
        )
        .expect("patch");
    assert_eq!(status, 200);
    assert!(wait_for(CONVERGE, || {
        c.record("knowledge", &edited)
            .is_some_and(|r| r["fields"]["title"] == "立科 の知見（改訂）")
    }));

    let (la, lb, lc) = (ledger(&a, ""), ledger(&b, ""), ledger(&c, ""));
    // No local record in any ledger, by any path.
    for (name, l) in [("tateshina", &la), ("omachi", &lb), ("itoigawa", &lc)] {
        for e in l.iter() {
            assert_eq!(e["collection"], "knowledge", "{name} sent {e}");
            assert!(
                !local.contains(e["record_id"].as_str().expect("id")),
                "{name} sent a local record: {e}"
            );
        }
    }
    // Per peer, exactly the records that peer got from this node (no
    // echoes: Omachi never sends Tateshina's records back to it).
    assert_eq!(ids_to(&la, "omachi"), from_a);
    assert_eq!(ids_to(&lc, "omachi"), from_c);
    assert_eq!(ids_to(&lb, "itoigawa"), from_a);
    assert_eq!(ids_to(&lb, "tateshina"), from_c);
    // Every entry's heads are changes the receiver holds; the edited record
    // left Tateshina twice, the second time with its new head.
    let receivers = [
        (&la, "omachi", &b),
        (&lb, "itoigawa", &c),
        (&lb, "tateshina", &a),
        (&lc, "omachi", &b),
    ];
    for (l, town, receiver) in receivers {
        for e in l.iter().filter(|e| e["peer_town"] == town) {
            let id = e["record_id"].as_str().expect("id");
            let held = history_hashes(receiver, "knowledge", id);
            for h in e["heads"].as_array().expect("heads") {
                assert!(
                    held.contains(h.as_str().expect("hash")),
                    "{town} lacks a head it was sent: {e}"
                );
            }
        }
    }
    let sends_of_edited = la
        .iter()
        .filter(|e| e["record_id"] == edited.as_str())
        .count();
    assert_eq!(sends_of_edited, 2, "{la:#?}");

    // The filters, and the command line on the running node's data.
    assert_eq!(
        ledger(&b, "&peer=itoigawa").len(),
        lb.iter().filter(|e| e["peer_town"] == "itoigawa").count()
    );
    assert!(ledger(&b, "&since=2999-01-01").is_empty());
    let printed = yui_ok(
        &a.data_dir,
        &["audit", "egress", "--peer", "omachi", "--json"],
    );
    let printed: Vec<Value> = serde_json::from_str(&printed).expect("json");
    assert_eq!(printed.len(), la.len());
    let text = yui_ok(&b.data_dir, &["audit", "egress", "--limit", "3"]);
    assert_eq!(text.lines().count(), 3, "{text}");
    for s in [a, b, c] {
        assert_eq!(s.stop().code(), Some(0));
    }
}
