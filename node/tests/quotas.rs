//! Quotas on what peers bring in (issue 18, finding 4), over real mutual
//! TLS between nodes serving on runtimes and threads of their own: a member
//! over its quota is refused `quota_exceeded`, the hub does not relay the
//! excess to a town behind it, honest members' records keep flowing, and
//! both the refusals of pushes and those of pulled answers are counted in
//! `status` and `/metrics`.

use std::time::{Duration, Instant};

use prost::Message;
use serde_json::Value;
use yui_protocol::Collection;
use yui_protocol::wire::{DocUpdate, SyncResponse};
use yui_tests::records::knowledge_fields;
use yui_tests::tls::Member;
use yui_tests::town::{Consortium, Running, Town};
use yui_tests::wire::{doc_update, push_body};

const CONVERGE: Duration = Duration::from_secs(30);

/// `POST /api/v1/peers` on the running `town`: it starts syncing at once,
/// on its own runtime.
async fn add_peer(town: &Town, node: &Running, peer_url: &str) {
    let token = town.node.data_dir.read_token().expect("token");
    let resp = reqwest::Client::new()
        .post(format!("http://{}/api/v1/peers", node.api))
        .bearer_auth(token)
        .json(&serde_json::json!({ "url": peer_url }))
        .send()
        .await
        .expect("add peer");
    assert!(resp.status().is_success(), "{}", resp.status());
}

async fn get_json(town: &Town, node: &Running, path: &str) -> Value {
    let token = town.node.data_dir.read_token().expect("token");
    reqwest::Client::new()
        .get(format!("http://{}{path}", node.api))
        .bearer_auth(token)
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json")
}

async fn metrics(node: &Running) -> String {
    reqwest::get(format!("http://{}/metrics", node.api))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text")
}

/// The value of the metric line starting with `series` (name and labels).
fn metric(text: &str, series: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

/// The knowledge records `town` holds of origin town `origin`.
async fn knowledge_of(town: &Town, origin: &str) -> Vec<String> {
    town.node
        .store
        .all_views(Collection::Knowledge)
        .await
        .expect("views")
        .into_iter()
        .filter(|v| v.town == origin)
        .map(|v| v.id.to_string())
        .collect()
}

async fn wait_until<F: std::future::Future<Output = bool>>(
    within: Duration,
    mut cond: impl FnMut() -> F,
) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if cond().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cond().await
}

fn evil_documents(from: u64, n: u64) -> Vec<DocUpdate> {
    (from..from + n)
        .map(|i| {
            doc_update(
                Collection::Knowledge,
                &knowledge_fields(&format!("大量の記録 {i}")),
                0x71,
                i,
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_over_its_quota_is_refused_and_the_hub_does_not_relay_the_excess() {
    let consortium = Consortium::new("テスト");
    // The hub takes at most 4 new records a day per origin town and
    // collection; the towns behind it keep the defaults.
    let hub = consortium.town_configured("omachi", "\n[quotas]\nrecords_per_day = 4\n");
    let tateshina = consortium.town("tateshina");
    let itoigawa = consortium.town("itoigawa");
    let evil_town = consortium.town("evil");
    let hub_node = Running::start(hub.node.clone(), 2);
    let tateshina_node = Running::start(tateshina.node.clone(), 2);
    let itoigawa_node = Running::start(itoigawa.node.clone(), 2);
    add_peer(&tateshina, &tateshina_node, &hub_node.peer_url()).await;
    add_peer(&itoigawa, &itoigawa_node, &hub_node.peer_url()).await;
    let evil = Member::of(&evil_town, hub_node.peer);

    // A member pushes 7 valid records of its own town in one batch.
    let pushed = evil.signed(evil_documents(0, 7));
    let (status, body) = evil
        .post("", &push_body(pushed.clone()))
        .await
        .expect("push");
    assert_eq!(status, 200);
    let refused = SyncResponse::decode(&body[..]).expect("response").refused;
    assert_eq!(refused.len(), 3, "{refused:?}");
    for r in &refused {
        assert_eq!(r.code, "quota_exceeded", "{r:?}");
        assert!(
            r.message.contains("town evil in knowledge")
                && r.message.contains("at most 4 new records a day"),
            "{r:?}"
        );
    }
    let refused_ids: Vec<&str> = refused.iter().map(|r| r.id.as_str()).collect();
    let accepted: Vec<String> = pushed
        .iter()
        .filter(|d| !refused_ids.contains(&d.id.as_str()))
        .map(|d| d.id.clone())
        .collect();
    assert_eq!(accepted.len(), 4);
    // And the next one, in a new request.
    let (status, body) = evil
        .post("", &push_body(evil.signed(evil_documents(7, 1))))
        .await
        .expect("push");
    assert_eq!(status, 200);
    let codes: Vec<String> = SyncResponse::decode(&body[..])
        .expect("response")
        .refused
        .into_iter()
        .map(|r| r.code)
        .collect();
    assert_eq!(codes, ["quota_exceeded"]);

    // An honest member's records flow on, as many as the member's quota
    // (4), past the hub to the town behind it.
    let start = Instant::now();
    for i in 0..4 {
        tateshina.write_knowledge(&format!("立科の知見 {i}")).await;
    }
    assert!(
        wait_until(CONVERGE, || async {
            knowledge_of(&itoigawa, "tateshina").await.len() == 4
        })
        .await,
        "the honest member's records did not reach the town behind the hub"
    );
    let honest_took = start.elapsed();
    assert!(
        wait_until(CONVERGE, || async {
            knowledge_of(&itoigawa, "evil").await.len() == 4
        })
        .await,
        "the stored part of the member's push did not reach the town behind the hub"
    );
    // A whole round with the hub ("sync now": push and pull until neither
    // side has more), so anything the hub would relay has arrived.
    let rounds = yui_node::peer::Peering::sync_all(&itoigawa.node.federation())
        .await
        .expect("sync now");
    assert!(rounds.iter().all(|r| r.ok), "{rounds:?}");
    let mut relayed = knowledge_of(&itoigawa, "evil").await;
    relayed.sort();
    let mut expected = accepted.clone();
    expected.sort();
    assert_eq!(relayed, expected, "the hub relayed the excess");
    let mut stored = knowledge_of(&hub, "evil").await;
    stored.sort();
    assert_eq!(stored, expected, "the hub stored the excess");
    assert_eq!(knowledge_of(&hub, "tateshina").await.len(), 4);

    // The hub's status shows the member at its limit, with its refusals.
    let status = get_json(&hub, &hub_node, "/api/v1/status").await;
    let quotas = &status["quotas"];
    assert_eq!(quotas["limits"]["knowledge"]["records_per_day"], 4);
    assert_eq!(quotas["limits"]["failure_cases"]["records_per_day"], 4);
    let row = quotas["towns"]
        .as_array()
        .expect("towns")
        .iter()
        .find(|t| t["town"] == "evil" && t["collection"] == "knowledge")
        .unwrap_or_else(|| panic!("evil is not listed: {quotas}"))
        .clone();
    assert_eq!(row["records_today"], 4, "{row}");
    assert_eq!(row["refused_today"], 4, "{row}");
    assert_eq!(row["percent"], 100, "{row}");
    // And /metrics, per origin town and per member.
    let text = metrics(&hub_node).await;
    assert_eq!(
        metric(
            &text,
            "yui_quota_refused_documents_today{town=\"evil\",collection=\"knowledge\"}"
        ),
        Some(4),
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            "yui_quota_records_today{town=\"tateshina\",collection=\"knowledge\"}"
        ),
        Some(4),
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            "yui_quota_limit{collection=\"knowledge\",limit=\"records_per_day\"}"
        ),
        Some(4),
        "{text}"
    );
    let inbound = text
        .lines()
        .find(|l| {
            l.starts_with("yui_inbound_refused_documents_total{") && l.contains("town=\"evil\"")
        })
        .unwrap_or_else(|| panic!("no refusal count for evil: {text}"));
    assert!(inbound.ends_with(" 4"), "{inbound}");
    eprintln!("the honest member's 4 records reached the town behind the hub in {honest_took:?}");
    for node in [hub_node, tateshina_node, itoigawa_node] {
        node.stop();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_refused_in_answers_to_pulls_are_counted_per_peer() {
    let consortium = Consortium::new("テスト");
    let tateshina = consortium.town("tateshina");
    for i in 0..3 {
        tateshina.write_knowledge(&format!("立科の知見 {i}")).await;
    }
    let itoigawa = consortium.town_configured("itoigawa", "\n[quotas]\nrecords_per_day = 2\n");
    let tateshina_node = Running::start(tateshina.node.clone(), 2);
    let itoigawa_node = Running::start(itoigawa.node.clone(), 2);
    let url = tateshina_node.peer_url();
    add_peer(&itoigawa, &itoigawa_node, &url).await;
    // Itoigawa dials Tateshina and pulls: 2 of the 3 fit its quota.
    assert!(
        wait_until(CONVERGE, || async {
            let status = get_json(&itoigawa, &itoigawa_node, "/api/v1/status").await;
            status["peers"][0]["refused_docs"] == 1
        })
        .await,
        "the refusal in a pulled answer was not counted: {}",
        get_json(&itoigawa, &itoigawa_node, "/api/v1/status").await
    );
    assert_eq!(knowledge_of(&itoigawa, "tateshina").await.len(), 2);
    let text = metrics(&itoigawa_node).await;
    assert_eq!(
        metric(
            &text,
            &format!("yui_peer_refused_documents_total{{peer=\"{url}\",town=\"tateshina\"}}")
        ),
        Some(1),
        "{text}"
    );
    let status = get_json(&itoigawa, &itoigawa_node, "/api/v1/status").await;
    let row = status["quotas"]["towns"]
        .as_array()
        .expect("towns")
        .iter()
        .find(|t| t["town"] == "tateshina")
        .unwrap_or_else(|| panic!("tateshina is not listed: {status}"))
        .clone();
    assert_eq!(
        (row["records_today"].as_u64(), row["refused_today"].as_u64()),
        (Some(2), Some(1)),
        "{row}"
    );
    for node in [itoigawa_node, tateshina_node] {
        node.stop();
    }
}
