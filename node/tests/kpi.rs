//! KPI reports (issue 6) over real HTTP on 127.0.0.1 against a real node and
//! SQLite file: the draft from known workers and pilots, the roll-up with a
//! missing and a stale town, the CSV, the console pages in Japanese and
//! English with their SVG chart, and publishing (admin only; a second
//! publish updates the one report).
//!
//! Other towns' records arrive the way a peer's do: as Automerge documents
//! made by that town, pushed through the store's peer path (`sync_accept`,
//! what the peer port calls after mutual TLS). That is also the only way to
//! give a report an old `updated_at`, which the stale flag needs.

use reqwest::StatusCode;
use reqwest::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use serde_json::{Value, json};
use yui_node::accounts::Role;
use yui_protocol::validate::validate_create;
use yui_protocol::wire::{DocUpdate, PROTOCOL_VERSION, SyncRequest};
use yui_protocol::{Collection, RecordId};
use yui_tests::browser::{
    Browser, LINK_ATTRIBUTES, Page, assert_attributes_stay_local, field_block,
};
use yui_tests::test_node::TestNode;

/// Requests with another token, records arriving from other towns, and
/// the reports held.
trait KpiNode {
    async fn api(&self, token: &str, path: &str) -> reqwest::Response;
    async fn arrive_from(&self, town: &str, at: &str, collection: Collection, fields: Value);
    async fn kpi_reports(&self) -> Vec<Value>;
}

impl KpiNode for TestNode {
    async fn api(&self, token: &str, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("send")
    }

    /// A shared record made by `town` at `at` (RFC 3339), arriving as a
    /// peer's push does.
    async fn arrive_from(&self, town: &str, at: &str, collection: Collection, fields: Value) {
        let at = time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339)
            .expect("time");
        let ms = (at.unix_timestamp_nanos() / 1_000_000) as i64;
        let bytes = rand_bytes(town, ms);
        let id = RecordId::generate(ms, bytes[..10].try_into().expect("10 bytes"));
        let typed =
            validate_create(collection, fields.as_object().expect("object")).expect("valid fields");
        let actor = automerge::ActorId::from(rand_bytes(town, ms).as_slice());
        let mut doc =
            yui_protocol::doc::create(actor, collection, &id, town, ms, &typed).expect("doc");
        // Signed by the town's key, which this node trusts as it would
        // once the certificate arrived (protocol.md 7).
        let author = consortium().author(town);
        author.vouch_at(&self.node).await;
        let push = author.sign(DocUpdate {
            id: id.to_string(),
            collection: collection.name().into(),
            changes: doc.save_nocompress(),
            ..Default::default()
        });
        let outcome = self
            .node
            .store
            .sync_accept(
                format!("node-{town}"),
                SyncRequest {
                    version: PROTOCOL_VERSION,
                    push: vec![push],
                    ..Default::default()
                },
            )
            .await
            .expect("accept");
        assert!(outcome.refused.is_empty(), "{:?}", outcome.refused);
        assert_eq!(outcome.stored.len(), 1);
    }

    async fn kpi_reports(&self) -> Vec<Value> {
        let (status, body) = self.api_get("/api/v1/records/kpi_reports").await;
        assert_eq!(status, StatusCode::OK);
        body["items"].as_array().cloned().unwrap_or_default()
    }
}

/// The consortium whose members' records arrive (one per test process).
fn consortium() -> &'static yui_tests::town::Consortium {
    static CONSORTIUM: std::sync::OnceLock<yui_tests::town::Consortium> =
        std::sync::OnceLock::new();
    CONSORTIUM.get_or_init(|| yui_tests::town::Consortium::new("テスト"))
}

/// Distinct bytes per town and time, for ids and actors.
fn rand_bytes(town: &str, ms: i64) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (i, b) in town.bytes().chain(ms.to_be_bytes()).enumerate() {
        out[i % 16] ^= b.wrapping_add(i as u8);
    }
    out[15] |= 1;
    out
}

/// Publishing a report, and the language switch.
trait KpiPages {
    async fn publish(&mut self, fields: &[(&str, &str)]) -> Page;
    async fn english(&mut self);
}

impl KpiPages for Browser {
    async fn publish(&mut self, fields: &[(&str, &str)]) -> Page {
        let mut form = vec![("fiscal_year", "2024")];
        form.extend_from_slice(fields);
        self.submit("/kpi/draft", &form).await
    }

    async fn english(&mut self) {
        let page = self.get("/lang/en?next=/kpi").await;
        assert_eq!(page.status, StatusCode::SEE_OTHER);
    }
}

/// Every `src=`, `href=`, `action=` and `xmlns=` stays on this host (the
/// chart is inline SVG); no script.
fn assert_no_external_urls(path: &str, body: &str) {
    assert_attributes_stay_local(path, body, &[LINK_ATTRIBUTES, &["xmlns"]].concat());
}

/// Workers and pilots of FY2024 (2024-04-01 … 2025-03-31) with one of each
/// kind the draft must skip.
async fn known_records(n: &TestNode) -> (Vec<String>, String) {
    let worker = |name: &str, joined: &str, status: &str| json!({"name": name, "joined_on": joined, "status": status});
    let hires = vec![
        // Joined in the year and active since: counted.
        n.create("workers", worker("ワーカー甲", "2024-04-01", "active"))
            .await,
        n.create("workers", worker("ワーカー乙", "2025-03-31", "left"))
            .await,
    ];
    // Not active yet; joined the year before; the year after.
    n.create("workers", worker("ワーカー丙", "2024-06-01", "in_training"))
        .await;
    n.create("workers", worker("ワーカー丁", "2024-03-31", "active"))
        .await;
    n.create("workers", worker("ワーカー戊", "2025-04-01", "active"))
        .await;
    let pilot = |title: &str, start: &str, status: &str| json!({"title": title, "period_start": start, "status": status});
    let counted = n
        .create(
            "pilot_results",
            pilot("WORK TRIP 受注", "2024-07-01", "completed"),
        )
        .await;
    n.create(
        "pilot_results",
        pilot("中止した試行", "2024-08-01", "cancelled"),
    )
    .await;
    n.create("pilot_results", pilot("計画中", "2024-09-01", "planned"))
        .await;
    // Another town's pilot in the year: theirs to count, not ours; it also
    // makes omachi a member town this node knows of.
    n.arrive_from(
        "omachi",
        "2024-10-01T00:00:00Z",
        Collection::PilotResults,
        pilot("大町の試行", "2024-09-01", "running"),
    )
    .await;
    (hires, counted)
}

#[tokio::test]
async fn the_draft_is_computed_from_the_towns_own_records_of_the_year() {
    let n = TestNode::builder().one_user_per_role().start().await;
    let (hires, pilot) = known_records(&n).await;
    let (status, draft) = n.api_get("/api/v1/kpi/draft?fiscal_year=2024").await;
    assert_eq!(status, StatusCode::OK, "{draft}");
    assert_eq!(draft["town"], "tateshina");
    assert_eq!(
        draft["period"],
        json!({"start": "2024-04-01", "end": "2025-03-31"})
    );
    assert_eq!(
        draft["figures"],
        json!({"new_hires": 2, "pilot_projects": 1, "dx_certified_businesses": 0, "member_municipalities": 2})
    );
    let mut counted: Vec<String> = draft["basis"]["hires"]
        .as_array()
        .expect("hires")
        .iter()
        .map(|v| v.as_str().unwrap_or("").to_owned())
        .collect();
    counted.sort();
    let mut expected = hires.clone();
    expected.sort();
    assert_eq!(counted, expected);
    assert_eq!(draft["basis"]["pilots"], json!([pilot]));
    assert_eq!(draft["basis"]["members"], json!(["omachi", "tateshina"]));
    assert_eq!(draft["report_id"], Value::Null);

    // The year after counts the worker who joined on 2025-04-01 only.
    let (_, next) = n.api_get("/api/v1/kpi/draft?fiscal_year=2025").await;
    assert_eq!(next["figures"]["new_hires"], 1);
    assert_eq!(next["figures"]["pilot_projects"], 0);

    // The draft is for editors; a viewer's token reads the roll-up only.
    let viewer = n
        .node
        .accounts
        .create_token("viewer", Role::Viewer, "test")
        .await
        .expect("token");
    let resp = n.api(&viewer, "/api/v1/kpi/draft?fiscal_year=2024").await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let resp = n.api(&viewer, "/api/v1/kpi?fiscal_year=2024").await;
    assert_eq!(resp.status(), StatusCode::OK);

    // A year no report can have is refused in the §8 error shape.
    for bad in ["1999", "abc"] {
        let (status, body) = n.api_get(&format!("/api/v1/kpi?fiscal_year={bad}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert!(body["error"]["code"].is_string(), "{body}");
    }
    n.stop().await;
}

#[tokio::test]
async fn the_rollup_flags_missing_and_stale_towns_and_exports_csv() {
    let n = TestNode::builder().one_user_per_role().start().await;
    n.create(
        "kpi_reports",
        json!({"fiscal_year": 2024, "new_hires": 5, "pilot_projects": 1,
               "dx_certified_businesses": 1, "member_municipalities": 3}),
    )
    .await;
    // Omachi reported in June and never since: stale by the year's end.
    n.arrive_from(
        "omachi",
        "2024-06-01T00:00:00Z",
        Collection::KpiReports,
        json!({"fiscal_year": 2024, "new_hires": 4, "pilot_projects": 2,
               "dx_certified_businesses": 0, "member_municipalities": 3}),
    )
    .await;
    // Itoigawa shares knowledge but has not reported for 2024 (only 2023).
    n.arrive_from(
        "itoigawa",
        "2024-05-01T00:00:00Z",
        Collection::Knowledge,
        json!({"title": "メンター研修の進め方", "body": "研修の記録", "category": "training"}),
    )
    .await;
    n.arrive_from(
        "itoigawa",
        "2024-05-02T00:00:00Z",
        Collection::KpiReports,
        json!({"fiscal_year": 2023, "new_hires": 7}),
    )
    .await;

    let (status, r) = n.api_get("/api/v1/kpi?fiscal_year=2024").await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!(r["fiscal_year"], 2024);
    assert_eq!(r["missing"], json!(["itoigawa"]));
    assert_eq!(r["stale"], json!(["omachi"]));
    assert_eq!(
        r["total"],
        json!({"new_hires": 9, "pilot_projects": 3, "dx_certified_businesses": 1, "member_municipalities": 3})
    );
    assert_eq!(
        r["targets"],
        json!({"new_hires": 15, "pilot_projects": 3, "dx_certified_businesses": 1, "member_municipalities": 4})
    );
    let towns: Vec<&str> = r["towns"]
        .as_array()
        .expect("towns")
        .iter()
        .map(|t| t["town"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(towns, ["itoigawa", "omachi", "tateshina"]);
    assert_eq!(r["towns"][0]["figures"], Value::Null);
    assert_eq!(r["towns"][1]["as_of"], "2024-06-01T00:00:00.000Z");
    assert_eq!(r["towns"][1]["stale"], true);
    assert_eq!(r["towns"][2]["stale"], false);

    // 2023: only itoigawa reported (in May 2024, after that year's end).
    let (_, r23) = n.api_get("/api/v1/kpi?fiscal_year=2023").await;
    assert_eq!(r23["missing"], json!(["omachi", "tateshina"]));
    assert_eq!(r23["stale"], json!([]));

    let resp = n.api(&n.token, "/api/v1/kpi.csv?fiscal_year=2024").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers()[CONTENT_TYPE].to_str().expect("type"),
        "text/csv; charset=utf-8"
    );
    assert_eq!(
        resp.headers()[CONTENT_DISPOSITION]
            .to_str()
            .expect("disposition"),
        "attachment; filename=\"yui-kpi-FY2024.csv\""
    );
    let csv = resp.text().await.expect("csv");
    let lines: Vec<&str> = csv.trim_start_matches('\u{feff}').split("\r\n").collect();
    assert_eq!(
        lines[0],
        "fiscal_year,town,new_hires,pilot_projects,dx_certified_businesses,member_municipalities,reported,as_of,stale"
    );
    assert_eq!(lines[1], "2024,itoigawa,,,,,no,,no");
    assert_eq!(
        lines[2],
        "2024,omachi,4,2,0,3,yes,2024-06-01T00:00:00.000Z,yes"
    );
    assert!(lines[3].starts_with("2024,tateshina,5,1,1,3,yes,"), "{csv}");
    assert!(lines[3].ends_with(",no"), "{csv}");
    assert_eq!(lines[4], "2024,total,9,3,1,3,,,");
    assert_eq!(lines[5], "2024,target,15,3,1,4,,,");
    assert!(csv.starts_with('\u{feff}'));
    n.stop().await;
}

#[tokio::test]
async fn the_console_shows_the_rollup_with_an_svg_chart_in_japanese_and_english() {
    let n = TestNode::builder().one_user_per_role().start().await;
    n.create(
        "kpi_reports",
        json!({"fiscal_year": 2024, "new_hires": 16, "pilot_projects": 1,
               "dx_certified_businesses": 0, "member_municipalities": 4}),
    )
    .await;
    n.arrive_from(
        "omachi",
        "2024-06-01T00:00:00Z",
        Collection::KpiReports,
        json!({"fiscal_year": 2024, "new_hires": 2, "pilot_projects": 1}),
    )
    .await;
    n.arrive_from(
        "itoigawa",
        "2024-05-01T00:00:00Z",
        Collection::Knowledge,
        json!({"title": "広報計画", "body": "住民向けの広報", "category": "pr"}),
    )
    .await;

    let mut b = n.signed_in("viewer").await;
    let page = b.get("/kpi?fiscal_year=2024").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let body = &page.body;
    assert!(body.contains("2024年度 KPI実績"), "{body}");
    assert!(body.contains(r#"<a href="/kpi" aria-current="page">KPI実績</a>"#));
    assert!(body.contains("2024年4月〜2025年3月"));
    // Totals against targets, in words: 18 ≥ 15 hires, 2 < 3 pilots.
    assert!(body.contains(r#"<span class="badge ok">達成</span>"#));
    assert!(body.contains(r#"<span class="badge failing">未達成</span>"#));
    assert!(body.contains("2024年度のKPI実績をまだ報告していない自治体：itoigawa"));
    assert!(body.contains("omachi（2024-06-01時点）"), "{body}");
    assert!(body.contains("未報告") && body.contains("更新が古い"));
    // The chart: inline, titled, labelled in text, with the target lines.
    let svg = &body[body.find("<svg viewBox").expect("an inline svg")..];
    let svg = &svg[..svg.find("</svg>").expect("svg end")];
    assert!(svg.contains("<title id=\"kpi-chart-title\">指標ごとの自治体別実績と目標</title>"));
    assert!(svg.contains("<title>omachi: 新規雇用数 2</title>"), "{svg}");
    assert!(
        svg.contains("<title>itoigawa: 新規雇用数 未報告</title>"),
        "{svg}"
    );
    assert!(svg.contains("<title>合計: 新規雇用数 18</title>"), "{svg}");
    assert!(svg.contains(">目標 15</text>"), "{svg}");
    assert_eq!(svg.matches("stroke-dasharray").count(), 4);
    // This town by its name (towns without a certificate that names them
    // keep their id).
    assert!(svg.contains(">立科町</text>"), "{svg}");
    assert!(
        body.contains(r#"<a href="/kpi.csv?fiscal_year=2024" download>CSV をダウンロード</a>"#)
    );
    // A viewer is not offered publishing.
    assert!(!body.contains("/kpi/draft"));
    assert_no_external_urls("/kpi", body);

    b.english().await;
    let page = b.get("/kpi?fiscal_year=2024").await;
    assert_eq!(page.status, StatusCode::OK);
    let body = &page.body;
    assert!(body.contains("KPIs for FY2024"));
    assert!(body.contains("April 2024 to March 2025"));
    assert!(body.contains(">Achieved</span>") && body.contains(">Not yet</span>"));
    assert!(body.contains("Towns that have not reported for FY2024: itoigawa"));
    assert!(body.contains("omachi (as of 2024-06-01)"));
    assert!(body.contains("<title>omachi: New hires 2</title>"));
    assert!(body.contains(">Target 15</text>"));
    assert!(body.contains(">Download CSV</a>"));
    assert_no_external_urls("/kpi (en)", body);

    // The download link works with the session (no API token in a browser).
    let csv = b.get("/kpi.csv?fiscal_year=2024").await;
    assert_eq!(csv.status, StatusCode::OK);
    assert_eq!(
        csv.headers[CONTENT_DISPOSITION]
            .to_str()
            .expect("disposition"),
        "attachment; filename=\"yui-kpi-FY2024.csv\""
    );
    assert!(csv.body.contains("2024,omachi,2,1,0,0,yes,"));

    // The dashboard's KPI box is the current year's, linking to the page.
    let home = b.get("/").await;
    assert!(home.body.contains("KPIs for FY"), "{}", home.body);
    assert!(home.body.contains(">KPI details</a>"));
    let bad = b.get("/kpi?fiscal_year=abc").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body.contains("That is not a fiscal year."));
    n.stop().await;
}

#[tokio::test]
async fn viewers_and_editors_cannot_publish() {
    let n = TestNode::builder().one_user_per_role().start().await;
    for user in ["viewer", "editor"] {
        let mut b = n.signed_in(user).await;
        let page = b.get("/kpi?fiscal_year=2024").await;
        assert!(!page.body.contains("/kpi/draft"), "{user}");
        assert!(
            !page.body.contains("この町の実績を作成・公開する"),
            "{user}"
        );
        let page = b.get("/kpi/draft?fiscal_year=2024").await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{user}");
        // A forged form with the session's own CSRF token: refused on the server.
        let page = b
            .publish(&[
                ("new_hires", "1"),
                ("pilot_projects", "1"),
                ("dx_certified_businesses", "1"),
                ("member_municipalities", "1"),
            ])
            .await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{user}");
    }
    // And an admin's form without the CSRF token is refused too.
    let mut admin = n.signed_in("admin").await;
    let page = admin
        .post("/kpi/draft", &[("fiscal_year", "2024"), ("new_hires", "1")])
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert!(n.kpi_reports().await.is_empty());
    n.stop().await;
}

/// KPI publishing is for administrators whichever way it comes: the
/// generic records API and the console's generic record form keep the same
/// rule as the KPI page.
#[tokio::test]
async fn editors_cannot_write_kpi_reports_through_the_records_api_or_form() {
    let n = TestNode::builder()
        .one_user_per_role()
        .api_token("editor")
        .api_token("admin")
        .start()
        .await;
    let fields = json!({
        "fiscal_year": 2024, "new_hires": 9, "pilot_projects": 9,
        "dx_certified_businesses": 9, "member_municipalities": 9,
    });
    let (status, body) = n
        .send_as(
            n.api_token("editor"),
            reqwest::Method::POST,
            "/api/v1/records/kpi_reports",
            Some(json!({ "fields": fields })),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "forbidden");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("kpi_reports") && m.contains("admin")),
        "{body}"
    );
    // The console's generic form: neither the form nor its post.
    let mut b = n.signed_in("editor").await;
    let page = b.get("/records/kpi_reports/new").await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    let page = b
        .submit(
            "/records/kpi_reports",
            &[
                ("fiscal_year", "2024"),
                ("new_hires", "9"),
                ("pilot_projects", "9"),
                ("dx_certified_businesses", "9"),
                ("member_municipalities", "9"),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN, "{}", page.body);
    assert!(n.kpi_reports().await.is_empty());

    // An administrator's report: editors may neither change nor delete it.
    let (status, body) = n
        .send_as(
            n.api_token("admin"),
            reqwest::Method::POST,
            "/api/v1/records/kpi_reports",
            Some(json!({ "fields": fields })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let path = format!(
        "/api/v1/records/kpi_reports/{}",
        body["id"].as_str().expect("id")
    );
    for (method, body) in [
        (
            reqwest::Method::PATCH,
            Some(json!({"fields": {"new_hires": 99}})),
        ),
        (reqwest::Method::DELETE, None),
    ] {
        let (status, answer) = n
            .send_as(n.api_token("editor"), method.clone(), &path, body)
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method}: {answer}");
    }
    let id = body["id"].as_str().expect("id");
    let page = b.get(&format!("/records/kpi_reports/{id}/edit")).await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    let page = b
        .submit(
            &format!("/records/kpi_reports/{id}/edit"),
            &[("new_hires", "99")],
        )
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    let page = b
        .submit(&format!("/records/kpi_reports/{id}/delete"), &[])
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    let reports = n.kpi_reports().await;
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0]["fields"]["new_hires"], 9);
    // Editors still write other collections.
    let (status, body) = n
        .send_as(
            n.api_token("editor"),
            reqwest::Method::POST,
            "/api/v1/records/knowledge",
            Some(json!({"fields": {"title": "t", "body": "b", "category": "training"}})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    n.stop().await;
}

#[tokio::test]
async fn publishing_creates_the_report_then_updates_the_same_one() {
    let n = TestNode::builder().one_user_per_role().start().await;
    known_records(&n).await;
    let mut b = n.signed_in("admin").await;
    the_draft_shows_the_towns_own_figures(&mut b).await;
    figures_that_are_not_counts_or_leak_a_name_are_refused(&n, &mut b).await;
    let id = publishing_creates_the_report(&n, &mut b).await;
    publishing_again_updates_it(&n, &mut b, &id).await;
    both_publishes_are_audited(&n, &id).await;
    n.stop().await;
}

/// The draft page: the year's figures with the records behind them.
async fn the_draft_shows_the_towns_own_figures(b: &mut Browser) {
    let page = b.get("/kpi?fiscal_year=2024").await;
    assert!(
        page.body
            .contains(r#"<a href="/kpi/draft?fiscal_year=2024">"#)
    );
    let page = b.get("/kpi/draft?fiscal_year=2024").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let hires = field_block(&page.body, "new_hires");
    assert!(
        hires.contains("2024年4月〜2025年3月に参加し活動中になったワーカー 2人"),
        "{hires}"
    );
    assert!(hires.contains(r#"value="2""#), "{hires}");
    assert!(hires.contains("<li>ワーカー甲</li>") && hires.contains("<li>ワーカー乙</li>"));
    assert!(!hires.contains("ワーカー丙"));
    let pilots = field_block(&page.body, "pilot_projects");
    assert!(pilots.contains("この町のパイロット 1件"), "{pilots}");
    assert!(pilots.contains("<li>WORK TRIP 受注</li>"));
    assert!(field_block(&page.body, "member_municipalities").contains("omachi, tateshina"));
    assert!(page.body.contains("この年度の実績はまだ公開していません。"));
    assert!(page.body.contains(">公開する</button>"));
    assert_no_external_urls("/kpi/draft", &page.body);
}

/// Refused at their fields, and nothing is published.
async fn figures_that_are_not_counts_or_leak_a_name_are_refused(n: &TestNode, b: &mut Browser) {
    // A figure that is not a count, next to its field, in Japanese.
    let page = b
        .publish(&[
            ("new_hires", "たくさん"),
            ("pilot_projects", "1"),
            ("dx_certified_businesses", "-1"),
            ("member_municipalities", "２"),
            ("note", ""),
        ])
        .await;
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        field_block(&page.body, "new_hires").contains("0以上の整数を入力してください。"),
        "{}",
        page.body
    );
    assert!(field_block(&page.body, "dx_certified_businesses").contains("field-error"));
    assert!(!field_block(&page.body, "pilot_projects").contains("field-error"));
    assert!(field_block(&page.body, "new_hires").contains(r#"value="たくさん""#));
    // A worker's name in the note would leak personal data: refused at the note.
    let page = b
        .publish(&[
            ("new_hires", "2"),
            ("pilot_projects", "1"),
            ("dx_certified_businesses", "0"),
            ("member_municipalities", "2"),
            ("note", "ワーカー甲さんが活躍"),
        ])
        .await;
    assert_eq!(
        page.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        page.body
    );
    assert!(
        field_block(&page.body, "note").contains("個人情報"),
        "{}",
        page.body
    );
    assert!(n.kpi_reports().await.is_empty());
}

/// The first publish creates the report; returns its id.
async fn publishing_creates_the_report(n: &TestNode, b: &mut Browser) -> String {
    let page = b
        .publish(&[
            ("new_hires", "2"),
            ("pilot_projects", "1"),
            ("dx_certified_businesses", "１"),
            ("member_municipalities", "3"),
            ("note", "WORK TRIP 経由の受注を含む"),
        ])
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    assert_eq!(page.location(), "/kpi?fiscal_year=2024&done=created");
    let done = b.get(page.location()).await;
    assert!(done.body.contains("KPI実績を公開しました。"));
    let reports = n.kpi_reports().await;
    assert_eq!(reports.len(), 1);
    let id = reports[0]["id"].as_str().expect("id").to_owned();
    assert_eq!(reports[0]["town"], "tateshina");
    assert_eq!(
        reports[0]["fields"],
        json!({"fiscal_year": 2024, "new_hires": 2, "pilot_projects": 1,
               "dx_certified_businesses": 1, "member_municipalities": 3,
               "note": "WORK TRIP 経由の受注を含む"})
    );
    let (_, draft) = n.api_get("/api/v1/kpi/draft?fiscal_year=2024").await;
    assert_eq!(draft["report_id"], id.as_str());
    id
}

/// The form starts from the published figures; publishing again updates
/// the same report.
async fn publishing_again_updates_it(n: &TestNode, b: &mut Browser, id: &str) {
    // The form now starts from the published figures and says so, in English.
    b.english().await;
    let page = b.get("/kpi/draft?fiscal_year=2024").await;
    assert!(
        page.body.contains("report is published (last changed"),
        "{}",
        page.body
    );
    assert!(field_block(&page.body, "member_municipalities").contains(r#"value="3""#));
    assert!(field_block(&page.body, "member_municipalities").contains("Draft: 2 / Published: 3"));
    assert!(page.body.contains(">Update the published report</button>"));
    let page = b
        .publish(&[
            ("new_hires", "x"),
            ("pilot_projects", "1"),
            ("dx_certified_businesses", "1"),
            ("member_municipalities", "3"),
        ])
        .await;
    assert!(field_block(&page.body, "new_hires").contains("Enter a whole number, 0 or more."));

    let page = b
        .publish(&[
            ("new_hires", "3"),
            ("pilot_projects", "1"),
            ("dx_certified_businesses", "1"),
            ("member_municipalities", "3"),
            ("note", ""),
        ])
        .await;
    assert_eq!(page.location(), "/kpi?fiscal_year=2024&done=updated");
    let reports = n.kpi_reports().await;
    assert_eq!(reports.len(), 1, "a second publish updates, never adds");
    assert_eq!(reports[0]["id"], id);
    assert_eq!(reports[0]["fields"]["new_hires"], 3);
    assert_eq!(
        reports[0]["fields"].get("note"),
        None,
        "an empty note removes it"
    );
}

/// Both publishes are in the audit log, the update with its figures.
async fn both_publishes_are_audited(n: &TestNode, id: &str) {
    let (_, audit) = n.api_get("/api/v1/audit").await;
    let publishes: Vec<&Value> = audit["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["action"] == "kpi.publish")
        .collect();
    assert_eq!(publishes.len(), 2, "{audit}");
    assert!(publishes.iter().all(|e| e["user"] == "admin"));
    assert_eq!(publishes[0]["target"], format!("kpi_reports/{id}"));
    assert!(
        publishes[0]["detail"]
            .as_str()
            .unwrap_or("")
            .starts_with("FY2024 updated: new_hires=3"),
        "{audit}"
    );
}
