//! One rule per action (issue 18, finding 6): every action needs the same
//! role and leaves the same audit entry — action, target, detail — whether
//! it comes through the JSON API, the web console or a `yui` command on a
//! stopped node. The real `yui` binary, a joined node, and the audit log as
//! `GET /api/v1/audit` returns it.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use yui_tests::browser::Browser;
use yui_tests::{Ca, Server, member, yui, yui_ok, yui_with_stdin};

const PASSWORD: &str = "tateshina-telework-2026";

/// (action, target, detail) of one audit entry.
type Entry = (String, String, String);

fn entry(action: &str, target: &str, detail: &str) -> Entry {
    (action.to_owned(), target.to_owned(), detail.to_owned())
}

/// The entries of `user`, oldest first.
fn entries_of(log: &Value, user: &str) -> Vec<Entry> {
    let mut found: Vec<Entry> = log
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["user"] == user)
        // Logins, and the users and tokens this test made.
        .filter(|e| {
            let action = e["action"].as_str().unwrap_or("");
            !action.starts_with("login")
                && !action.starts_with("user.")
                && !action.starts_with("token.")
                && action != "logout"
        })
        .map(|e| {
            let s = |k: &str| e[k].as_str().unwrap_or_default().to_owned();
            (s("action"), s("target"), s("detail"))
        })
        .collect();
    found.reverse();
    found
}

fn add_user(data: &std::path::Path, name: &str, role: &str) -> String {
    let out = yui_with_stdin(
        data,
        &["user", "add", name, "--role", role],
        &format!("{PASSWORD}\n"),
    );
    assert!(out.status.success(), "{out:?}");
    yui_ok(data, &["user", "token", name]).trim().to_owned()
}

/// The same knowledge record's fields both ways.
const TITLE: &str = "研修の記録";
const BODY: &str = "月に一度、住民ワーカーの研修をする。";
const CATEGORY: &str = "worker_management";
const FIGURES: [(&str, u64); 4] = [
    ("new_hires", 2),
    ("pilot_projects", 1),
    ("dx_certified_businesses", 3),
    ("member_municipalities", 4),
];

fn kpi_detail(fy: i64) -> String {
    let figures: Vec<String> = FIGURES.iter().map(|(f, n)| format!("{f}={n}")).collect();
    format!("FY{fy} created: {}", figures.join(" "))
}

/// The entries every entry point must write for the same acts: a peer
/// added with a node id, a sync, a revocation list that is not newer, the
/// peer removed.
fn admin_entries(url: &str, node_id: &str) -> Vec<Entry> {
    vec![
        entry("peer.add", url, &format!("node id {node_id}")),
        entry("sync.now", "peers", "0 ok, 1 failed"),
        entry(
            "revocations.import",
            "revocations",
            "not newer than the installed list number 1; nothing changed",
        ),
        entry("peer.remove", url, url),
    ]
}

#[test]
fn every_action_needs_one_role_and_leaves_one_entry_whatever_the_entry_point() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::init(&dir.path().join("ca"), "信州コンソーシアム");
    let data = member(dir.path(), "tateshina", &ca);
    let omachi = member(dir.path(), "omachi", &ca);
    member(dir.path(), "itoigawa", &ca);
    let list = ca.revoke_town("itoigawa");
    let list = list.to_str().expect("utf8");
    let status: Value =
        serde_json::from_str(&yui_ok(&omachi, &["status", "--json"])).expect("status");
    let node_id = status["node_id"].as_str().expect("node id").to_owned();
    // Peers that refuse at once: a sync with them fails quickly.
    let (cli_url, api_url, web_url) = (
        "https://127.0.0.1:1",
        "https://127.0.0.1:2",
        "https://127.0.0.1:3",
    );

    let api_admin = add_user(&data, "api.admin", "admin");
    let api_editor = add_user(&data, "api.editor", "editor");
    let api_viewer = add_user(&data, "api.viewer", "viewer");
    for (name, role) in [
        ("web.admin", "admin"),
        ("web.editor", "editor"),
        ("web.viewer", "viewer"),
    ] {
        add_user(&data, name, role);
    }

    // The command line on the stopped node (audited as `cli`).
    yui_ok(&data, &["revocations", "import", list]);
    yui_ok(&data, &["peer", "add", cli_url, "--node-id", &node_id]);
    let sync = yui(&data, &["sync"]);
    assert!(!sync.status.success(), "the peer refuses: {sync:?}");
    yui_ok(&data, &["revocations", "import", list]);
    yui_ok(&data, &["peer", "remove", cli_url]);

    let server = Server::start_peer(&data, "127.0.0.1:0");
    let http = reqwest::blocking::Client::new();
    let call = |token: &str, method: reqwest::Method, path: &str, body: Option<String>| {
        let mut req = http.request(method, server.url(path)).bearer_auth(token);
        if let Some(body) = body {
            req = req.body(body).header("content-type", "application/json");
        }
        let resp = req.send().expect("send");
        let status = resp.status();
        (status, resp.json::<Value>().unwrap_or(Value::Null))
    };
    let pem = std::fs::read_to_string(list).expect("list");

    // The API: roles first. A viewer syncs nothing; an editor may sync but
    // not manage peers, revocations or KPI reports.
    let peer_body = json!({"url": api_url, "node_id": node_id}).to_string();
    let kpi_fields = |fy: i64| {
        let mut f = serde_json::Map::new();
        f.insert("fiscal_year".into(), json!(fy));
        for (name, n) in FIGURES {
            f.insert(name.into(), json!(n));
        }
        json!({ "fields": f }).to_string()
    };
    let record =
        json!({"fields": {"title": TITLE, "body": BODY, "category": CATEGORY}}).to_string();
    for (token, method, path, body) in [
        (&api_viewer, Method::POST, "/api/v1/sync", None),
        (
            &api_viewer,
            Method::POST,
            "/api/v1/records/knowledge",
            Some(record.clone()),
        ),
        (
            &api_editor,
            Method::POST,
            "/api/v1/peers",
            Some(peer_body.clone()),
        ),
        (
            &api_editor,
            Method::POST,
            "/api/v1/revocations",
            Some(pem.clone()),
        ),
        (
            &api_editor,
            Method::POST,
            "/api/v1/records/kpi_reports",
            Some(kpi_fields(2023)),
        ),
    ] {
        let (status, body) = call(token, method, path, body);
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {body}");
    }
    let (status, body) = call(&api_admin, Method::POST, "/api/v1/peers", Some(peer_body));
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = call(&api_editor, Method::POST, "/api/v1/sync", None);
    assert_eq!(status, StatusCode::OK, "an editor may sync now: {body}");
    let (status, body) = call(
        &api_admin,
        Method::POST,
        "/api/v1/revocations",
        Some(pem.clone()),
    );
    assert_eq!(status, StatusCode::OK, "{body}");
    let key: String = form_urlencoded::byte_serialize(api_url.as_bytes()).collect();
    let (status, _) = call(
        &api_admin,
        Method::DELETE,
        &format!("/api/v1/peers/{key}"),
        None,
    );
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, created) = call(
        &api_editor,
        Method::POST,
        "/api/v1/records/knowledge",
        Some(record),
    );
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let api_id = created["id"].as_str().expect("id").to_owned();
    let path = format!("/api/v1/records/knowledge/{api_id}");
    let change = json!({"fields": {"title": "研修の記録（改）"}}).to_string();
    let (status, body) = call(&api_editor, Method::PATCH, &path, Some(change));
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = call(&api_editor, Method::DELETE, &path, None);
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, report) = call(
        &api_admin,
        Method::POST,
        "/api/v1/records/kpi_reports",
        Some(kpi_fields(2023)),
    );
    assert_eq!(status, StatusCode::CREATED, "{report}");
    let api_kpi = report["id"].as_str().expect("id").to_owned();

    // The console, with the same roles.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let web_id = rt.block_on(async {
        let browser = || {
            Browser::of_console(server.base.clone())
        };
        let signed_in = |name: &'static str| async move {
            let mut b = browser();
            let page = b.login(name, PASSWORD, "/").await;
            assert_eq!(page.status, StatusCode::SEE_OTHER, "{name}: {}", page.body);
            b
        };
        let mut viewer = signed_in("web.viewer").await;
        let mut editor = signed_in("web.editor").await;
        let mut admin = signed_in("web.admin").await;
        let record_form = [("title", TITLE), ("body", BODY), ("category", CATEGORY)];
        let figures: Vec<(&str, String)> =
            FIGURES.iter().map(|(f, n)| (*f, n.to_string())).collect();
        let mut kpi_form: Vec<(&str, &str)> = vec![("fiscal_year", "2024"), ("note", "")];
        kpi_form.extend(figures.iter().map(|(f, n)| (*f, n.as_str())));
        assert_eq!(viewer.submit("/sync", &[]).await.status, StatusCode::FORBIDDEN);
        assert_eq!(
            viewer.submit("/records/knowledge", &record_form).await.status,
            StatusCode::FORBIDDEN
        );
        let peer_form = [("url", web_url), ("node_id", node_id.as_str())];
        assert_eq!(editor.submit("/peers", &peer_form).await.status, StatusCode::FORBIDDEN);
        assert_eq!(editor.submit("/kpi/draft", &kpi_form).await.status, StatusCode::FORBIDDEN);

        let page = admin.submit("/peers", &peer_form).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
        let page = editor.submit("/sync", &[]).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "an editor may sync now: {}", page.body);
        // A revocation list: multipart, as the page's form sends it.
        let boundary = "yui-test-boundary";
        let multipart = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\n{}\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"pem\"\r\n\r\n{pem}\r\n--{boundary}--\r\n",
            admin.csrf
        );
        let resp = admin
            .http
            .post(format!("{}/peers/revocations", admin.base))
            .header("cookie", admin.cookie_header())
            .header("content-type", format!("multipart/form-data; boundary={boundary}"))
            .body(multipart)
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status(), StatusCode::SEE_OTHER);
        let page = admin
            .submit("/peers/remove", &[("key", web_url), ("confirm", "yes")])
            .await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);

        let page = editor.submit("/records/knowledge", &record_form).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
        let id = page
            .location()
            .split('/')
            .nth(3)
            .and_then(|s| s.split('?').next())
            .expect("record id")
            .to_owned();
        let edit = [("title", "研修の記録（改）"), ("body", BODY), ("category", CATEGORY)];
        let page = editor
            .submit(&format!("/records/knowledge/{id}/edit"), &edit)
            .await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
        let page = editor
            .submit(&format!("/records/knowledge/{id}/delete"), &[])
            .await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
        let page = admin.submit("/kpi/draft", &kpi_form).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
        id
    });

    let (status, log) = call(&server.token, Method::GET, "/api/v1/audit?limit=1000", None);
    assert_eq!(status, StatusCode::OK);
    let log = log["entries"].clone();
    let reports: Vec<String> = {
        let (_, all) = call(
            &server.token,
            Method::GET,
            "/api/v1/records/kpi_reports",
            None,
        );
        all["items"]
            .as_array()
            .expect("items")
            .iter()
            .filter(|r| r["fields"]["fiscal_year"] == 2024)
            .map(|r| r["id"].as_str().expect("id").to_owned())
            .collect()
    };
    let web_kpi = reports.first().expect("the console's report").clone();

    // The command line: the stopped node's entries (the first import was
    // newer and installed the list).
    let mut cli = vec![entry(
        "revocations.import",
        "revocations",
        "list number 1 installed",
    )];
    cli.extend(admin_entries(cli_url, &node_id));
    assert_eq!(
        entries_of(&log, "cli"),
        cli,
        "yui commands on a stopped node"
    );

    let record_entries = |id: &str| {
        let target = format!("knowledge/{id}");
        vec![
            entry("record.create", &target, "fields: body, category, title"),
            entry("record.update", &target, "fields: title"),
            entry("record.delete", &target, ""),
        ]
    };
    let mut api = admin_entries(api_url, &node_id);
    // The sync was the editor's; the admin's entries without it.
    let api_sync = api.remove(1);
    assert_eq!(entries_of(&log, "api.admin")[..3], api[..]);
    assert_eq!(
        entries_of(&log, "api.admin")[3..],
        [entry(
            "kpi.publish",
            &format!("kpi_reports/{api_kpi}"),
            &kpi_detail(2023)
        )]
    );
    let mut api_editor_entries = vec![api_sync];
    api_editor_entries.extend(record_entries(&api_id));
    assert_eq!(
        entries_of(&log, "api.editor"),
        api_editor_entries,
        "the API"
    );

    let mut web = admin_entries(web_url, &node_id);
    let web_sync = web.remove(1);
    web.push(entry(
        "kpi.publish",
        &format!("kpi_reports/{web_kpi}"),
        &kpi_detail(2024),
    ));
    assert_eq!(entries_of(&log, "web.admin"), web, "the console");
    let mut web_editor_entries = vec![web_sync];
    web_editor_entries.extend(record_entries(&web_id));
    assert_eq!(
        entries_of(&log, "web.editor"),
        web_editor_entries,
        "the console"
    );
    // Refused actions leave no entry.
    assert!(entries_of(&log, "api.viewer").is_empty() && entries_of(&log, "web.viewer").is_empty());
}
