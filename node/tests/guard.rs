//! The personal-data guard over the real API (issue 6): a shared record
//! holding a registered worker's name, a phone number or a My Number is
//! refused with 422 `personal_data` naming the field, the kind and the
//! position; nothing is stored; local records may hold personal data.

use serde_json::{Value, json};
use yui_node::accounts::Role;
use yui_tests::test_node::TestNode;

/// A request with the node's token and a JSON body; the status as a number.
trait Send {
    async fn send(&self, method: reqwest::Method, path: &str, body: Value) -> (u16, Value);
}

impl Send for TestNode {
    async fn send(&self, method: reqwest::Method, path: &str, body: Value) -> (u16, Value) {
        let (status, body) = self.send_as(&self.token, method, path, Some(body)).await;
        (status.as_u16(), body)
    }
}

fn knowledge(title: &str, body: &str) -> Value {
    json!({"fields": {"title": title, "body": body, "category": "worker_management", "tags": ["研修"]}})
}

#[tokio::test]
async fn shared_records_with_personal_data_are_refused_with_field_kind_and_position() {
    let node = TestNode::builder()
        .user("henshu", Role::Editor)
        .api_token("henshu")
        .start()
        .await;
    // Local records may hold personal data: that is what they are for.
    let (status, body) = node
        .send(
            reqwest::Method::POST,
            "/api/v1/records/workers",
            json!({"fields": {"name": "山田 花子", "name_kana": "やまだ はなこ", "phone": "090-1234-5678", "status": "active"}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");

    the_name_in_a_body_is_refused_where_it_stands(&node).await;

    // Its kana reading in katakana, with a full-width space, in the title.
    let (status, body) = node
        .send(
            reqwest::Method::POST,
            "/api/v1/records/knowledge",
            knowledge("ヤマダ　ハナコさんの事例", "本文"),
        )
        .await;
    assert_eq!(
        (status, body["error"]["findings"][0]["field"].clone()),
        (422, json!("title")),
        "{body}"
    );

    // A full-width mobile number and a My Number, in one record: both named.
    let (status, body) = node
        .send(
            reqwest::Method::POST,
            "/api/v1/records/failure_cases",
            json!({"fields": {"title": "連絡の失敗", "situation": "携帯 ０９０ー１２３４ー５６７８ に連絡", "lessons": "個人番号 1234 5678 9018 を書かない"}}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    let kinds: Vec<(&str, &str)> = body["error"]["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(|f| {
            (
                f["field"].as_str().expect("field"),
                f["kind"].as_str().expect("kind"),
            )
        })
        .collect();
    assert_eq!(kinds, [("lessons", "my_number"), ("situation", "phone")]);
    assert_eq!(body["error"]["findings"][0]["may_override"], false);

    assert_eq!(
        node.count("knowledge").await,
        0,
        "nothing refused was stored"
    );
    assert_eq!(node.count("failure_cases").await, 0);

    // Clean text passes; an edit that adds an e-mail address is refused and
    // the record keeps its last good version.
    let (status, created) = node
        .send(
            reqwest::Method::POST,
            "/api/v1/records/knowledge",
            knowledge("研修の進め方", "2時間の研修を3回に分けた。"),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().expect("id");
    let (status, body) = node
        .send(
            reqwest::Method::PATCH,
            &format!("/api/v1/records/knowledge/{id}"),
            json!({"fields": {"body": "問い合わせは hanako@example.jp まで"}}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["findings"][0]["kind"].clone()),
        (422, json!("email")),
        "{body}"
    );
    let resp = node
        .client
        .get(format!("{}/api/v1/records/knowledge/{id}", node.base))
        .bearer_auth(&node.token)
        .send()
        .await
        .expect("get");
    let kept: Value = resp.json().await.expect("json");
    assert_eq!(kept["fields"]["body"], "2時間の研修を3回に分けた。");

    // A worker registered later is known at once.
    let (status, _) = node
        .send(
            reqwest::Method::POST,
            "/api/v1/records/customers",
            json!({"fields": {"organisation": "株式会社サンプル", "contact_name": "佐藤 次郎", "stage": "active"}}),
        )
        .await;
    assert_eq!(status, 201);
    let (status, body) = node
        .send(
            reqwest::Method::POST,
            "/api/v1/records/knowledge",
            knowledge("顧客対応", "佐藤次郎様から受注"),
        )
        .await;
    assert_eq!(
        (status, body["error"]["findings"][0]["kind"].clone()),
        (422, json!("registered_name")),
        "{body}"
    );
    node.shutdown.cancel();
}

/// The worker's name without its space, in a shared article's body: refused,
/// naming the field, the kind and the position, without repeating it.
async fn the_name_in_a_body_is_refused_where_it_stands(node: &TestNode) {
    let text = "面談の記録：山田花子さんは入力作業が得意。";
    let (status, body) = node
        .send(
            reqwest::Method::POST,
            "/api/v1/records/knowledge",
            knowledge("メンター面談のコツ", text),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    let error = &body["error"];
    assert_eq!(error["code"], "personal_data");
    let finding = &error["findings"][0];
    assert_eq!(finding["field"], "body");
    assert_eq!(finding["kind"], "registered_name");
    let (start, end) = (
        finding["start"].as_u64().expect("start") as usize,
        finding["end"].as_u64().expect("end") as usize,
    );
    assert_eq!(
        text.chars()
            .skip(start)
            .take(end - start)
            .collect::<String>(),
        "山田花子"
    );
    assert_eq!(finding["may_override"], true);
    // The answer names the finding without repeating it.
    assert!(
        !error["message"]
            .as_str()
            .expect("message")
            .contains("山田花子"),
        "{error}"
    );
}

#[tokio::test]
async fn an_administrator_may_publish_a_finding_with_a_reason_which_is_audited() {
    let node = TestNode::builder()
        .user("henshu", Role::Editor)
        .api_token("henshu")
        .start()
        .await;
    let office = "問い合わせ：立科町役場 企画課 0267-88-7315（代表）";
    let with_override = |reason: &str| {
        json!({
            "fields": {"title": "移住相談の窓口", "body": office, "category": "other", "tags": []},
            "personal_data_override": {"reason": reason}
        })
    };
    // An editor may not override; a reason is required.
    let resp = node
        .client
        .post(format!("{}/api/v1/records/knowledge", node.base))
        .bearer_auth(node.api_token("henshu"))
        .json(&with_override("役場の代表番号で個人のものではない"))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status().as_u16(), 403);
    let (status, body) = node
        .send(
            reqwest::Method::POST,
            "/api/v1/records/knowledge",
            with_override(" "),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (400, json!("override_reason_required"))
    );
    assert_eq!(node.count("knowledge").await, 0);

    // An administrator with a reason: stored, and the audit log says who,
    // why and what — without the number itself.
    let reason = "役場の代表番号で個人のものではない";
    let (status, created) = node
        .send(
            reqwest::Method::POST,
            "/api/v1/records/knowledge",
            with_override(reason),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let resp = node
        .client
        .get(format!("{}/api/v1/audit?limit=10", node.base))
        .bearer_auth(&node.token)
        .send()
        .await
        .expect("audit");
    let audit: Value = resp.json().await.expect("json");
    let entry = audit["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .find(|e| e["action"] == "personal_data.override")
        .unwrap_or_else(|| panic!("no override in the audit log: {audit}"))
        .clone();
    let detail = entry["detail"].as_str().expect("detail");
    assert!(
        detail.contains(reason) && detail.contains("body phone"),
        "{detail}"
    );
    assert!(
        !detail.contains("7315"),
        "the audit log repeats the number: {detail}"
    );
    assert_eq!(
        entry["target"],
        format!("knowledge/{}", created["id"].as_str().expect("id"))
    );

    // My Number: no override.
    let (status, body) = node
        .send(
            reqwest::Method::POST,
            "/api/v1/records/knowledge",
            json!({
                "fields": {"title": "番号", "body": "マイナンバー 123456789018", "category": "other", "tags": []},
                "personal_data_override": {"reason": "どうしても必要"}
            }),
        )
        .await;
    assert_eq!(
        (status, body["error"]["findings"][0]["kind"].clone()),
        (422, json!("my_number"))
    );
    assert_eq!(node.count("knowledge").await, 1);
    node.shutdown.cancel();
}
