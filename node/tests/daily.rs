//! The towns' daily work views (issue 6) over real HTTP on 127.0.0.1,
//! against a real node and SQLite file: the four `/api/v1/views/*` queries
//! on known records (matrix cells and counts, pipeline order and totals,
//! resolved names, overdue, fiscal-year and worker filters, PR months), and
//! the four console pages in Japanese and English, with role-dependent
//! "New" links and nothing loaded from another host.

use reqwest::StatusCode;
use reqwest::header::LOCATION;
use serde_json::{Value, json};
use yui_node::accounts::Role;
use yui_tests::browser::{Browser, assert_no_external_urls};
use yui_tests::test_node::TestNode;

/// The node these tests use: an editor, who may add records, and a viewer.
async fn node_with_editor_and_viewer() -> TestNode {
    TestNode::builder()
        .user("editor", Role::Editor)
        .user("viewer", Role::Viewer)
        .start()
        .await
}

/// Deleting through the API, which must answer 204.
trait Delete {
    async fn delete(&self, collection: &str, id: &str);
}

impl Delete for TestNode {
    async fn delete(&self, collection: &str, id: &str) {
        let path = format!("/api/v1/records/{collection}/{id}");
        let (status, _) = self
            .send_text(&self.token, reqwest::Method::DELETE, &path, None)
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
    }
}

/// The language switch of these pages, and a page that must render.
trait DailyPages {
    async fn english(&mut self);
    async fn page(&mut self, path: &str) -> String;
}

impl DailyPages for Browser {
    async fn english(&mut self) {
        let page = self.get("/lang/en?next=/work/skills").await;
        assert_eq!(page.status, StatusCode::SEE_OTHER);
        assert_eq!(
            page.headers.get(LOCATION).and_then(|v| v.to_str().ok()),
            Some("/work/skills")
        );
    }

    /// A page that must render: 200 and nothing from another host.
    async fn page(&mut self, path: &str) -> String {
        let page = self.get(path).await;
        assert_eq!(page.status, StatusCode::OK, "{path}: {}", page.body);
        assert_no_external_urls(path, &page.body);
        page.body
    }
}

/// Asserts the texts appear in `body` in this order.
fn assert_in_order(body: &str, texts: &[&str]) {
    let mut from = 0;
    for t in texts {
        let at = body[from..]
            .find(t)
            .unwrap_or_else(|| panic!("{t:?} missing or out of order in {texts:?}"));
        from += at + t.len();
    }
}

/// The ids of the known records.
struct Data {
    aoki: String,
    kobayashi: String,
    nakamura: String,
    watanabe: String,
    ito: String,
    shared_title: &'static str,
}

/// A small town: five workers, three customers (one deleted), six orders,
/// three trainings, three mentoring sessions, five PR items, and one shared
/// knowledge record that no view may show.
async fn seed(node: &TestNode) -> Data {
    let skill =
        |s: &str, level: i64, on: &str| json!({"skill": s, "level": level, "assessed_on": on});
    let aoki = node
        .create(
            "workers",
            json!({"name": "青木 陽菜", "name_kana": "あおき ひな", "status": "active",
                "skills": [skill("Excel", 1, "2024-05-01")]}),
        )
        .await;
    let kobayashi = node
        .create(
            "workers",
            json!({"name": "小林 美咲", "name_kana": "こばやし みさき", "status": "active",
                "skills": [skill("データ入力", 4, "2024-05-01"), skill("Excel", 3, "2024-05-01")]}),
        )
        .await;
    // Two assessments of one skill: the later one stands.
    let nakamura = node
        .create(
            "workers",
            json!({"name": "中村 健", "name_kana": "なかむら けん", "status": "in_training",
                "skills": [skill("データ入力", 2, "2024-06-01"), skill("データ入力", 1, "2024-01-01"),
                           skill("画像編集", 3, "2024-06-10")]}),
        )
        .await;
    let watanabe = node
        .create(
            "workers",
            json!({"name": "渡辺 翼", "name_kana": "わたなべ つばさ", "status": "registered"}),
        )
        .await;
    let ito = node
        .create(
            "workers",
            json!({"name": "伊藤 さくら", "name_kana": "いとう さくら", "status": "left",
                "skills": [skill("Excel", 5, "2023-11-20")]}),
        )
        .await;

    let shoji = node
        .create(
            "customers",
            json!({"organisation": "株式会社テスト商事", "contact_name": "佐々木 次郎", "stage": "active"}),
        )
        .await;
    let yamabiko = node
        .create(
            "customers",
            json!({"organisation": "合同会社やまびこ", "stage": "prospect"}),
        )
        .await;
    let gone = node
        .create(
            "customers",
            json!({"organisation": "消えた商店", "stage": "dormant"}),
        )
        .await;
    for fields in [
        json!({"customer": yamabiko, "title": "ホームページ更新の相談", "status": "inquiry",
            "estimated_hours": 10, "amount_jpy": 30000, "due_on": "2020-01-10"}),
        json!({"customer": shoji, "title": "名刺データ入力", "status": "in_progress",
            "assignees": [kobayashi, nakamura], "estimated_hours": 20, "actual_hours": 12.5,
            "amount_jpy": 60000, "due_on": "2020-02-01"}),
        json!({"customer": shoji, "title": "アンケート集計", "status": "in_progress",
            "assignees": [aoki], "estimated_hours": 8, "actual_hours": 2,
            "amount_jpy": 1234567, "due_on": "2099-12-31"}),
        json!({"customer": shoji, "title": "議事録作成", "status": "delivered",
            "estimated_hours": 5, "actual_hours": 6, "amount_jpy": 25000, "due_on": "2020-03-01"}),
        json!({"customer": yamabiko, "title": "チラシ制作", "status": "lost", "amount_jpy": 50000}),
        json!({"customer": gone, "title": "帳票のデータ化", "status": "closed",
            "estimated_hours": 3, "actual_hours": 3, "amount_jpy": 10000}),
    ] {
        node.create("orders", fields).await;
    }
    node.delete("customers", &gone).await;

    for fields in [
        json!({"title": "情報セキュリティ研修", "audience": "workers", "held_on": "2024-05-20",
            "attendees": [kobayashi, nakamura]}),
        json!({"title": "メンター養成研修", "audience": "mentors", "held_on": "2025-03-15",
            "attendees": [aoki]}),
        json!({"title": "Excel基礎研修", "audience": "workers", "held_on": "2025-04-10",
            "attendees": [nakamura]}),
    ] {
        node.create("trainings", fields).await;
    }
    for (mentor, mentee, on) in [
        (&aoki, &nakamura, "2024-07-01"),
        (&kobayashi, &nakamura, "2025-05-01"),
        (&aoki, &kobayashi, "2024-09-01"),
    ] {
        node.create(
            "mentoring",
            json!({"mentor": mentor, "mentee": mentee, "held_on": on}),
        )
        .await;
    }
    for fields in [
        json!({"title": "住民ワーカー募集", "audience": "residents", "channel": "町報",
            "planned_on": "2024-04-15", "status": "planned"}),
        json!({"title": "WORK TRIPのご案内", "audience": "customers", "channel": "Webサイト",
            "planned_on": "2024-04-20", "status": "published"}),
        json!({"title": "研修の報告", "audience": "residents", "planned_on": "2025-03-05",
            "status": "idea"}),
        json!({"title": "新年度の受注案内", "audience": "customers", "planned_on": "2025-04-01",
            "status": "planned"}),
        json!({"title": "SNS運用方針", "audience": "residents", "status": "idea"}),
    ] {
        node.create("pr_items", fields).await;
    }
    let shared_title = "共有ナレッジ：定例会の進め方";
    node.create(
        "knowledge",
        json!({"title": shared_title, "body": "隔週の定例会で各業務の代表が進捗を共有する。", "category": "other"}),
    )
    .await;
    Data {
        aoki,
        kobayashi,
        nakamura,
        watanabe,
        ito,
        shared_title,
    }
}

fn names(rows: &Value) -> Vec<&str> {
    rows.as_array()
        .expect("array")
        .iter()
        .map(|r| r["name"].as_str().expect("name"))
        .collect()
}

fn titles(rows: &Value) -> Vec<&str> {
    rows.as_array()
        .expect("array")
        .iter()
        .map(|r| r["title"].as_str().expect("title"))
        .collect()
}

#[tokio::test]
async fn the_skill_matrix_shows_levels_counts_and_filters() {
    let node = node_with_editor_and_viewer().await;
    let d = seed(&node).await;
    let (status, m) = node.api_get("/api/v1/views/skills").await;
    assert_eq!(status, StatusCode::OK, "{m}");
    assert_eq!(m["skills"], json!(["Excel", "データ入力", "画像編集"]));
    // Active, then in training, then registered, then left; by kana within.
    assert_eq!(
        names(&m["workers"]),
        [
            "青木 陽菜",
            "小林 美咲",
            "中村 健",
            "渡辺 翼",
            "伊藤 さくら"
        ]
    );
    let ids: Vec<&str> = m["workers"]
        .as_array()
        .expect("workers")
        .iter()
        .map(|w| w["id"].as_str().expect("id"))
        .collect();
    assert_eq!(
        ids,
        [&d.aoki, &d.kobayashi, &d.nakamura, &d.watanabe, &d.ito]
    );
    let kobayashi = &m["workers"][1];
    assert_eq!(kobayashi["status"], "active");
    assert_eq!(
        kobayashi["skills"]["データ入力"],
        json!({"level": 4, "assessed_on": "2024-05-01"})
    );
    assert_eq!(m["workers"][2]["skills"]["データ入力"]["level"], 2);
    assert_eq!(m["workers"][3]["skills"], json!({}));
    assert_eq!(
        m["counts"],
        json!([
            {"skill": "Excel", "assessed": 3, "level3_plus": 2},
            {"skill": "データ入力", "assessed": 2, "level3_plus": 1},
            {"skill": "画像編集", "assessed": 1, "level3_plus": 1}
        ])
    );
    assert_eq!(m["truncated"], false);

    let (_, active) = node.api_get("/api/v1/views/skills?status=active").await;
    assert_eq!(names(&active["workers"]), ["青木 陽菜", "小林 美咲"]);
    assert_eq!(active["skills"], json!(["Excel", "データ入力"]));
    let (_, one) = node
        .api_get("/api/v1/views/skills?skill=%E7%94%BB%E5%83%8F%E7%B7%A8%E9%9B%86")
        .await;
    assert_eq!(names(&one["workers"]), ["中村 健"]);
    assert_eq!(one["skills"], json!(["画像編集"]));
    assert_eq!(
        one["all_skills"],
        json!(["Excel", "データ入力", "画像編集"])
    );

    let (status, err) = node.api_get("/api/v1/views/skills?colour=red").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
    assert_eq!(err["error"]["code"], "invalid_query");
    node.stop().await;
}

#[tokio::test]
async fn the_order_pipeline_groups_by_status_with_totals_names_and_overdue() {
    let node = node_with_editor_and_viewer().await;
    let d = seed(&node).await;
    let (status, p) = node.api_get("/api/v1/views/orders").await;
    assert_eq!(status, StatusCode::OK, "{p}");
    let statuses: Vec<&str> = p["stages"]
        .as_array()
        .expect("stages")
        .iter()
        .map(|s| s["status"].as_str().expect("status"))
        .collect();
    assert_eq!(
        statuses,
        [
            "inquiry",
            "quoted",
            "ordered",
            "in_progress",
            "delivered",
            "invoiced",
            "closed"
        ]
    );
    let stage = |s: &str| {
        p["stages"]
            .as_array()
            .expect("stages")
            .iter()
            .find(|x| x["status"] == s)
            .expect("stage")
            .clone()
    };
    let working = stage("in_progress");
    // Soonest due first.
    assert_eq!(
        titles(&working["orders"]),
        ["名刺データ入力", "アンケート集計"]
    );
    assert_eq!(
        working["totals"],
        json!({"count": 2, "estimated_hours": 28.0, "actual_hours": 14.5, "amount_jpy": 1294567})
    );
    let cards = &working["orders"][0];
    assert_eq!(cards["customer"]["name"], "株式会社テスト商事");
    assert_eq!(
        cards["assignees"],
        json!([{"id": d.kobayashi, "name": "小林 美咲"}, {"id": d.nakamura, "name": "中村 健"}])
    );
    assert_eq!(cards["overdue"], true);
    assert_eq!(working["orders"][1]["overdue"], false, "due in 2099");
    assert_eq!(stage("inquiry")["orders"][0]["overdue"], true);
    assert_eq!(
        stage("delivered")["orders"][0]["overdue"],
        false,
        "delivered orders are not overdue"
    );
    assert_eq!(stage("quoted")["totals"]["count"], 0);
    // A deleted customer keeps its id but has no name.
    let closed = &stage("closed")["orders"][0];
    assert!(closed["customer"]["id"].is_string());
    assert_eq!(closed["customer"]["name"], Value::Null);
    assert_eq!(titles(&p["lost"]["orders"]), ["チラシ制作"]);
    assert_eq!(p["lost"]["totals"]["amount_jpy"], 50000);
    // The pipeline total leaves lost orders out.
    assert_eq!(
        p["totals"],
        json!({"count": 5, "estimated_hours": 46.0, "actual_hours": 23.5, "amount_jpy": 1359567})
    );
    assert_eq!(p["overdue"], 2);
    node.stop().await;
}

#[tokio::test]
async fn the_training_log_filters_by_fiscal_year_and_worker() {
    let node = node_with_editor_and_viewer().await;
    let d = seed(&node).await;
    let (status, all) = node.api_get("/api/v1/views/training").await;
    assert_eq!(status, StatusCode::OK, "{all}");
    assert_eq!(
        titles(&all["trainings"]),
        ["Excel基礎研修", "メンター養成研修", "情報セキュリティ研修"]
    );
    assert_eq!(all["fiscal_years"], json!([2025, 2024]));
    let security = &all["trainings"][2];
    assert_eq!(security["attendee_count"], 2);
    assert_eq!(security["audience"], "workers");
    assert_eq!(security["attendees"][0]["name"], "小林 美咲");
    let dates: Vec<&str> = all["mentoring"]
        .as_array()
        .expect("mentoring")
        .iter()
        .map(|m| m["held_on"].as_str().expect("date"))
        .collect();
    assert_eq!(dates, ["2025-05-01", "2024-09-01", "2024-07-01"]);
    assert_eq!(all["mentoring"][0]["mentor"]["name"], "小林 美咲");
    assert_eq!(all["mentoring"][0]["mentee"]["name"], "中村 健");

    // FY2024 runs from April 2024 to March 2025.
    let (_, fy) = node
        .api_get("/api/v1/views/training?fiscal_year=2024")
        .await;
    assert_eq!(
        titles(&fy["trainings"]),
        ["メンター養成研修", "情報セキュリティ研修"]
    );
    assert_eq!(fy["mentoring"].as_array().expect("mentoring").len(), 2);

    // A worker's own log: trainings attended, mentoring on either side.
    let (_, own) = node
        .api_get(&format!("/api/v1/views/training?worker={}", d.nakamura))
        .await;
    assert_eq!(own["worker"]["name"], "中村 健");
    assert_eq!(
        titles(&own["trainings"]),
        ["Excel基礎研修", "情報セキュリティ研修"]
    );
    assert_eq!(own["mentoring"].as_array().expect("mentoring").len(), 2);
    let (_, mentor) = node
        .api_get(&format!(
            "/api/v1/views/training?worker={}&fiscal_year=2024",
            d.aoki
        ))
        .await;
    assert_eq!(titles(&mentor["trainings"]), ["メンター養成研修"]);
    assert_eq!(mentor["mentoring"].as_array().expect("mentoring").len(), 2);
    let (_, nothing) = node
        .api_get(&format!("/api/v1/views/training?worker={}", d.watanabe))
        .await;
    assert_eq!(nothing["trainings"], json!([]));
    assert_eq!(nothing["mentoring"], json!([]));

    let (status, err) = node.api_get("/api/v1/views/training?fiscal_year=R6").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
    assert_eq!(err["error"]["code"], "invalid_query");
    let (status, err) = node
        .api_get("/api/v1/views/training?worker=0000000000000000000000000a")
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{err}");
    node.stop().await;
}

#[tokio::test]
async fn the_pr_plan_has_twelve_months_by_audience() {
    let node = node_with_editor_and_viewer().await;
    seed(&node).await;
    let (status, plan) = node.api_get("/api/v1/views/pr?fiscal_year=2024").await;
    assert_eq!(status, StatusCode::OK, "{plan}");
    assert_eq!(plan["fiscal_year"], 2024);
    let months = plan["months"].as_array().expect("months");
    assert_eq!(months.len(), 12);
    assert_eq!(months[0]["month"], "2024-04");
    assert_eq!(months[11]["month"], "2025-03");
    assert_eq!(titles(&months[0]["residents"]), ["住民ワーカー募集"]);
    assert_eq!(titles(&months[0]["customers"]), ["WORK TRIPのご案内"]);
    assert_eq!(months[0]["residents"][0]["channel"], "町報");
    assert_eq!(months[0]["customers"][0]["status"], "published");
    assert_eq!(titles(&months[11]["residents"]), ["研修の報告"]);
    assert_eq!(months[1]["residents"], json!([]));
    assert_eq!(titles(&plan["unscheduled"]), ["SNS運用方針"]);
    assert_eq!(
        plan["by_status"],
        json!({"idea": 1, "planned": 1, "published": 1})
    );
    assert_eq!(plan["fiscal_years"], json!([2025, 2024]));
    let (_, next) = node.api_get("/api/v1/views/pr?fiscal_year=2025").await;
    assert_eq!(
        titles(&next["months"][0]["customers"]),
        ["新年度の受注案内"]
    );
    let (status, _) = node.api_get("/api/v1/views/pr?fiscal_year=20244").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    node.stop().await;
}

#[tokio::test]
async fn the_views_answer_from_local_collections_only_and_need_a_token() {
    let node = node_with_editor_and_viewer().await;
    let d = seed(&node).await;
    for path in [
        "/api/v1/views/skills",
        "/api/v1/views/orders",
        "/api/v1/views/training",
        "/api/v1/views/pr?fiscal_year=2024",
    ] {
        let (status, body) = node.api_get(path).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        let text = body.to_string();
        assert!(
            !text.contains(d.shared_title),
            "{path} shows a shared record"
        );
        assert!(!text.contains("\"town\""), "{path}");
        let anonymous = reqwest::get(format!("{}{path}", node.base))
            .await
            .expect("send");
        assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED, "{path}");
    }
    let (_, doc) = node.api_get("/api/v1/openapi.json").await;
    for path in ["skills", "orders", "training", "pr"] {
        assert!(
            doc["paths"][format!("/api/v1/views/{path}")]["get"]["summary"].is_string(),
            "{path} is not in the OpenAPI document"
        );
    }
    node.stop().await;
}

#[tokio::test]
async fn the_town_work_pages_render_in_japanese_and_english() {
    let node = node_with_editor_and_viewer().await;
    let d = seed(&node).await;
    let mut b = node.signed_in("editor").await;

    let home = b.page("/").await;
    assert_in_order(
        &home,
        &[
            "町の業務",
            "href=\"/work/skills\"",
            "href=\"/work/orders\"",
            "href=\"/work/training\"",
            "href=\"/work/pr\"",
        ],
    );

    let skills = b.page("/work/skills").await;
    assert!(skills.contains("<h1>スキルの可視化</h1>"), "{skills}");
    assert_in_order(
        &skills,
        &[
            "青木 陽菜",
            "小林 美咲",
            "中村 健",
            "渡辺 翼",
            "伊藤 さくら",
        ],
    );
    assert!(skills.contains(&format!("href=\"/records/workers/{}\"", d.kobayashi)));
    assert!(skills.contains("title=\"レベル4（5段階） — 評価日 2024-05-01\""));
    assert!(skills.contains("●●●●○"), "a level reads as a shape too");
    assert!(skills.contains("レベル3以上の人数"));
    assert!(skills.contains("稼働中") && skills.contains("退会"));
    assert!(skills.contains("href=\"/records/workers/new\""));
    let filtered = b.page("/work/skills?status=in_training").await;
    assert!(filtered.contains("中村 健") && !filtered.contains("小林 美咲"));

    let orders = b.page("/work/orders").await;
    assert!(orders.contains("<h1>受発注の状況</h1>"));
    assert_in_order(
        &orders,
        &[
            "引き合い",
            "見積済み",
            "受注",
            "作業中",
            "納品済み",
            "請求済み",
            "完了",
        ],
    );
    assert!(orders.contains("¥1,294,567") && orders.contains("¥1,359,567"));
    assert!(orders.contains("納期超過の案件が2件あります。"));
    assert!(orders.contains("<strong class=\"badge failing\">納期超過</strong>"));
    assert!(orders.contains("株式会社テスト商事") && orders.contains("小林 美咲"));
    assert!(orders.contains("（削除済みまたは不明）"));
    assert!(orders.contains("チラシ制作"));
    assert!(orders.contains("新規作成（受発注）"));

    let training = b.page("/work/training?fiscal_year=2024").await;
    assert!(training.contains("<h1>研修・メンタリングの記録</h1>"));
    assert_in_order(&training, &["メンター養成研修", "情報セキュリティ研修"]);
    assert!(!training.contains("Excel基礎研修"));
    assert!(training.contains("2024年度"));
    assert!(training.contains("href=\"/records/mentoring/new\""));
    let own = b
        .page(&format!("/work/training?worker={}", d.watanabe))
        .await;
    assert!(own.contains("渡辺 翼 さんの記録"));
    assert!(own.contains("研修の記録はありません。"));

    let pr = b.page("/work/pr?fiscal_year=2024").await;
    assert!(pr.contains("広報計画 — 2024年度"));
    assert_in_order(
        &pr,
        &[
            "2024年4月",
            "住民ワーカー募集",
            "WORK TRIPのご案内",
            "2025年3月",
            "研修の報告",
        ],
    );
    assert!(pr.contains("計画済み") && pr.contains("公開済み"));
    assert!(pr.contains("予定日が未定の広報") && pr.contains("SNS運用方針"));
    assert!(!pr.contains("新年度の受注案内"));

    b.english().await;
    let skills = b.page("/work/skills").await;
    assert!(skills.contains("<h1>Skill matrix</h1>"));
    assert!(skills.contains("Town work"));
    assert!(skills.contains("title=\"level 4 of 5 — assessed on 2024-05-01\""));
    assert!(skills.contains("Workers at level 3 or higher"));
    assert!(skills.contains("In training"));
    let orders = b.page("/work/orders").await;
    assert_in_order(
        &orders,
        &[
            "Inquiry",
            "Quoted",
            "Ordered",
            "In progress",
            "Delivered",
            "Invoiced",
            "Closed",
        ],
    );
    assert!(orders.contains(">Overdue</strong>") && orders.contains("¥1,294,567"));
    assert!(orders.contains("(deleted or unknown)"));
    assert!(orders.contains("New (Orders)"));
    let training = b.page("/work/training").await;
    assert!(training.contains("Training and mentoring log") && training.contains("FY2025"));
    let pr = b.page("/work/pr?fiscal_year=2024").await;
    assert!(pr.contains("PR plan — FY2024"));
    assert_in_order(&pr, &["Apr 2024", "住民ワーカー募集", "Mar 2025"]);
    assert!(pr.contains("Published") && pr.contains("Residents") && pr.contains("Customers"));
    for page in [&skills, &orders, &training, &pr] {
        assert!(
            !page.contains("スキルの可視化"),
            "Japanese left on an English page"
        );
    }
    node.stop().await;
}

#[tokio::test]
async fn a_viewer_sees_the_pages_without_new_links() {
    let node = node_with_editor_and_viewer().await;
    seed(&node).await;
    let mut b = node.signed_in("viewer").await;
    for (path, collections) in [
        ("/work/skills", &["workers"][..]),
        ("/work/orders", &["orders"][..]),
        ("/work/training", &["trainings", "mentoring"][..]),
        ("/work/pr", &["pr_items"][..]),
    ] {
        let body = b.page(path).await;
        for c in collections {
            assert!(
                !body.contains(&format!("/records/{c}/new")),
                "{path} offers a viewer a New link"
            );
        }
        assert!(!body.contains("新規作成"), "{path}");
        assert!(
            body.contains("閲覧者の権限では記録を変更できません。"),
            "{path}"
        );
    }
    // Anonymous visitors go to the login page.
    let mut anon = node.browser();
    let page = anon.get("/work/orders").await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    node.stop().await;
}
