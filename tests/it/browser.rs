//! The web console in a real browser (issue "The web console …"): two
//! towns' real `yui serve` processes that sync over mutual TLS, users made
//! with `yui user add`, and `tests/browser/console.mjs` driving Debian's
//! Chromium through playwright-core: log in, create a Japanese article,
//! edit it, find it by a two-character search, see a field error, switch
//! language and back, see a missing CSRF token and a viewer's forged post
//! refused, watch the article arrive on the other town's console, log out.
//! `scripts/test` installs Chromium and playwright-core when missing.

use std::path::{Path, PathBuf};
use std::process::Command;

use yui_tests::{Ca, Server, member, yui_ok, yui_with_stdin};

fn chromium() -> PathBuf {
    let found = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists());
    found.unwrap_or_else(|| {
        panic!("the browser tests need Debian's chromium: run `scripts/test`, which installs it, or `apt-get install chromium`")
    })
}

fn browser_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("browser");
    assert!(
        dir.join("node_modules/playwright-core").exists(),
        "the browser tests need playwright-core: run `scripts/test`, or `npm ci` in {}",
        dir.display()
    );
    dir
}

fn add_user(data: &Path, name: &str, role: &str, password: &str) {
    let out = yui_with_stdin(
        data,
        &["user", "add", name, "--role", role],
        &format!("{password}\n"),
    );
    assert!(
        out.status.success(),
        "yui user add {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Two joined towns, Tateshina dialling Omachi, with an administrator on
/// both and a viewer on Tateshina.
struct TwoTowns {
    _dir: tempfile::TempDir,
    a: Server,
    b: Server,
}

const ADMIN: (&str, &str) = ("kanri", "tateshina-admin-2026");
const VIEWER: (&str, &str) = ("etsuran", "tateshina-viewer-2026");

fn two_towns() -> TwoTowns {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::init(&dir.path().join("ca"), "信州テレワーク・コンソーシアム");
    let a_dir = member(dir.path(), "tateshina", &ca);
    let b_dir = member(dir.path(), "omachi", &ca);
    add_user(&a_dir, ADMIN.0, "admin", ADMIN.1);
    add_user(&b_dir, ADMIN.0, "admin", ADMIN.1);
    add_user(&a_dir, VIEWER.0, "viewer", VIEWER.1);
    let a = Server::start_peer(&a_dir, "127.0.0.1:0");
    let b = Server::start_peer(&b_dir, "127.0.0.1:0");
    a.add_peer(b.peer_url());
    TwoTowns { _dir: dir, a, b }
}

/// [`two_towns`] with their names given at init (立科町, 大町市), as
/// pages that show towns by name need.
fn two_named_towns() -> TwoTowns {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::init(&dir.path().join("ca"), "信州テレワーク・コンソーシアム");
    let mut data = Vec::new();
    for (town, name) in [("tateshina", "立科町"), ("omachi", "大町市")] {
        let d = dir.path().join(town);
        yui_ok(&d, &["init", "--town", town, "--name", name]);
        ca.admit(&d);
        add_user(&d, ADMIN.0, "admin", ADMIN.1);
        data.push(d);
    }
    let a = Server::start_peer(&data[0], "127.0.0.1:0");
    let b = Server::start_peer(&data[1], "127.0.0.1:0");
    a.add_peer(b.peer_url());
    TwoTowns { _dir: dir, a, b }
}

/// Runs `tests/browser/SCRIPT` against the two towns; returns its output.
fn run_script(script: &str, towns: &TwoTowns) -> String {
    run_script_with(script, towns, &[])
}

/// [`run_script`] with more environment variables for the script.
fn run_script_with(script: &str, towns: &TwoTowns, env: &[(&str, &str)]) -> String {
    let (chromium, dir_of_script) = (chromium(), browser_dir());
    let out = Command::new("node")
        .envs(env.iter().copied())
        .arg(dir_of_script.join(script))
        .current_dir(&dir_of_script)
        .env("YUI_A", &towns.a.base)
        .env("YUI_B", &towns.b.base)
        .env("YUI_ADMIN", format!("{}:{}", ADMIN.0, ADMIN.1))
        .env("YUI_VIEWER", format!("{}:{}", VIEWER.0, VIEWER.1))
        .env("YUI_CHROMIUM", &chromium)
        .output()
        .expect("run node (Node.js is needed for the browser tests)");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{script} failed:\n{stdout}");
    assert!(stdout.contains("all checks passed"), "{stdout}");
    stdout
}

#[test]
fn the_console_in_chromium_from_login_to_a_record_crossing_towns() {
    let towns = two_towns();
    let stdout = run_script("console.mjs", &towns);
    let TwoTowns { a, b, .. } = towns;
    // What the browser did is what the nodes hold.
    let path = stdout
        .lines()
        .find_map(|l| l.split("(record ").nth(1))
        .map(|s| s.trim_end_matches(')').to_owned())
        .expect("the record's path");
    let id = path.rsplit('/').next().expect("id");
    let on_b = b.record("knowledge", id).expect("the record on town B");
    assert!(
        on_b["fields"]["body"]
            .as_str()
            .expect("body")
            .contains("改訂")
    );
    assert_eq!(on_b["town"], "tateshina");
    assert_eq!(a.stop().code(), Some(0));
    assert_eq!(b.stop().code(), Some(0));
}

/// Issue 6's pages in the browser: a registered worker's name refused in a
/// shared article (next to the field), the daily views, and the KPI draft,
/// publishing and the roll-up with its chart and CSV seen from both towns.
#[test]
fn the_programme_pages_in_chromium_guard_daily_views_and_kpi() {
    let towns = two_towns();
    run_script("programme.mjs", &towns);
    // The published report is a shared record that reached Omachi; the
    // worker it counted did not.
    let (status, body) = towns.b.get("/api/v1/records/kpi_reports");
    assert_eq!(status, 200, "{body}");
    let reports = body["items"].as_array().expect("items");
    assert!(
        reports
            .iter()
            .any(|r| r["town"] == "tateshina" && r["fields"]["new_hires"] == 1),
        "{body}"
    );
    assert_eq!(towns.b.count("workers"), 0);
}

/// Issue 16's articles that read well: a knowledge article written in
/// Markdown through the API on Tateshina renders with its heading, list,
/// link and table on both towns' consoles, while its script, onerror image,
/// javascript: link and external image neither run, load nor link — on the
/// receiving town too, whose copy came by sync.
#[test]
fn markdown_articles_render_sanitised_on_both_towns() {
    let towns = two_towns();
    let body = "# 研修の手順\n\n- 模擬業務\n- 振り返り\n\n\
        詳しくは[手引き](https://example.jp/guide)を。\n\n\
        | 週 | 内容 |\n| --- | --- |\n| 1 | 模擬業務 |\n\n\
        <script>window.__pwned = 1</script>\n\n\
        <img src=\"x\" onerror=\"window.__pwned = 2\">\n\n\
        [押して](javascript:window.__pwned=3) ![外の画像](https://evil.example/x.png)";
    let record = towns.a.create(
        "knowledge",
        serde_json::json!({"title": "Markdown の記事", "body": body, "category": "training"}),
    );
    let id = record["id"].as_str().expect("id").to_owned();
    let path = format!("/records/knowledge/{id}");
    run_script_with("markdown.mjs", &towns, &[("YUI_RECORD", &path)]);
    // The stored text is the Markdown as written: rendering is the
    // console's, on every town.
    let on_b = towns
        .b
        .record("knowledge", &id)
        .expect("the record on town B");
    assert_eq!(on_b["fields"]["body"], body);
}

/// Issue 16's CSV in and out in Chromium: the import page with a file the
/// browser uploads (a bad row refused with every problem by row and
/// column, a dry run, the import), and the list's download as Excel
/// reads it.
#[test]
fn csv_import_and_download_in_chromium() {
    let towns = two_towns();
    run_script("spreadsheets.mjs", &towns);
    let (status, body) = towns.a.get("/api/v1/records/workers?limit=50");
    assert_eq!(status, 200, "{body}");
    let names: Vec<&str> = body["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|w| w["fields"]["name"].as_str())
        .collect();
    assert!(
        names.contains(&"石井 花子") && names.contains(&"青木 一郎"),
        "{names:?}"
    );
    assert_eq!(towns.b.count("workers"), 0, "workers never leave the town");
}

/// Attached files on a record's page in Chromium (issue 16): the upload
/// form, the image preview under the strict CSP, the download, and a
/// disguised file refused.
#[test]
fn attachments_upload_preview_and_download_in_chromium() {
    let towns = two_towns();
    let rec = towns
        .a
        .create("knowledge", yui_tests::knowledge("写真付きの事例"));
    let id = yui_tests::id_of(&rec);
    let path = format!("/records/knowledge/{id}");
    run_script_with("attachments.mjs", &towns, &[("YUI_RECORD", &path)]);
    let (status, body) = towns
        .a
        .get(&format!("/api/v1/records/knowledge/{id}/attachments"));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["items"][0]["name"], "現場写真.png", "{body}");
    assert_eq!(body["items"][0]["content_type"], "image/png");
    assert_eq!(body["items"].as_array().map(Vec::len), Some(1));
}

/// Issue 16's following other towns in Chromium: a feed token made on
/// Omachi's フィード page gives URLs that a cookie-less reader opens; an
/// article written on Tateshina's console reaches the feed and Omachi's
/// dashboard list "new from other towns" by 立科町, and is gone from the
/// list on the next visit.
#[test]
fn feeds_and_news_from_other_towns_in_chromium() {
    let towns = two_named_towns();
    run_script("feeds.mjs", &towns);
    let TwoTowns { a, b, .. } = towns;
    assert_eq!(a.stop().code(), Some(0));
    assert_eq!(b.stop().code(), Some(0));
}
