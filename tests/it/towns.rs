//! Towns by their names (issue 16): the name a town gives at `yui init
//! --name`, or the one the consortium CA states with `yui ca issue --name`,
//! travels in its certificate, so every member's console shows 立科町
//! rather than `tateshina` — also a town it has never connected to, whose
//! certificate came relayed with its signed changes.

use std::time::Duration;

use reqwest::StatusCode;
use yui_tests::browser::Browser;
use yui_tests::{Ca, Server, wait_for, yui_ok, yui_with_stdin};

const ADMIN: (&str, &str) = ("kanri", "itoigawa-admin-2026");

#[test]
fn a_town_never_connected_to_is_shown_by_the_name_its_certificate_states() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::init(&dir.path().join("ca"), "信州テレワーク・コンソーシアム");
    // Tateshina and Omachi name themselves at init; Itoigawa does not, and
    // the CA states its name when it issues the certificate.
    let a_dir = dir.path().join("tateshina");
    yui_ok(&a_dir, &["init", "--town", "tateshina", "--name", "立科町"]);
    ca.admit(&a_dir);
    let b_dir = dir.path().join("omachi");
    yui_ok(&b_dir, &["init", "--town", "omachi", "--name", "大町市"]);
    ca.admit(&b_dir);
    let c_dir = dir.path().join("itoigawa");
    yui_ok(&c_dir, &["init", "--town", "itoigawa"]);
    ca.admit_named(&c_dir, "糸魚川市");
    let out = yui_with_stdin(
        &c_dir,
        &["user", "add", ADMIN.0, "--role", "admin"],
        &format!("{}\n", ADMIN.1),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let a = Server::start_peer(&a_dir, "127.0.0.1:0");
    let b = Server::start_peer(&b_dir, "127.0.0.1:0");
    let c = Server::start_peer(&c_dir, "127.0.0.1:0");
    // A chain: Tateshina and Itoigawa both dial Omachi, never each other.
    a.add_peer(b.peer_url());
    c.add_peer(b.peer_url());
    let article = a.create(
        "knowledge",
        serde_json::json!({"title": "名前で見える記事", "body": "本文", "category": "training"}),
    );
    let id = article["id"].as_str().expect("id").to_owned();
    let report = a.create(
        "kpi_reports",
        serde_json::json!({"fiscal_year": 2025, "new_hires": 3, "pilot_projects": 1,
            "dx_certified_businesses": 0, "member_municipalities": 3}),
    );
    let report = report["id"].as_str().expect("id").to_owned();
    assert!(
        wait_for(Duration::from_secs(30), || c
            .record("knowledge", &id)
            .is_some()
            && c.record("kpi_reports", &report).is_some()),
        "the article and the KPI report did not reach Itoigawa through Omachi"
    );
    assert!(
        c.status()["peers"]
            .as_array()
            .expect("peers")
            .iter()
            .all(|p| p["town"] != "tateshina"),
        "Itoigawa must not be a peer of Tateshina for this test"
    );

    let mine = c.create(
        "knowledge",
        serde_json::json!({"title": "糸魚川の記事", "body": "本文", "category": "training"}),
    );
    let mine = mine["id"].as_str().expect("id").to_owned();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut console = Browser::of_console(c.base.clone());
        let page = console.login(ADMIN.0, ADMIN.1, "/").await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
        // The list, the record page (origin and history) and search show the
        // far town by its name.
        let list = console.get("/records/knowledge").await;
        assert_eq!(list.status, StatusCode::OK);
        assert!(list.body.contains("<td>立科町</td>"), "{}", list.body);
        assert!(!list.body.contains("<td>tateshina</td>"), "{}", list.body);
        let record = console.get(&format!("/records/knowledge/{id}")).await;
        assert_eq!(record.status, StatusCode::OK);
        assert!(
            record
                .body
                .contains(r#"<span title="tateshina">立科町</span>"#),
            "{}",
            record.body
        );
        assert!(
            record
                .body
                .contains(r#"<strong title="tateshina">立科町</strong>"#),
            "{}",
            record.body
        );
        // A KPI report is titled by its year and its town's name.
        let reports = console.get("/records/kpi_reports").await;
        assert!(reports.body.contains("2025 / 立科町"), "{}", reports.body);
        let found = console.get("/search?q=名前で見える").await;
        assert!(found.body.contains("<td>立科町</td>"), "{}", found.body);
        // The peers page names the relay by name and id; the CA's --name
        // named this node itself.
        let peers = console.get("/peers").await;
        assert!(peers.body.contains("大町市 (omachi)"), "{}", peers.body);
        let own = console.get(&format!("/records/knowledge/{mine}")).await;
        assert!(
            own.body
                .contains(r#"<span title="itoigawa">糸魚川市</span>"#),
            "{}",
            own.body
        );
    });
    for server in [a, b, c] {
        assert_eq!(server.stop().code(), Some(0));
    }
}
