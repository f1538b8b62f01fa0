//! CSV in and out, the way Excel does it (issue 16), with the real `yui`:
//! a Shift_JIS file as Japanese Excel saves it, with bad rows, refused
//! whole with every problem placed; the corrected file imported once and
//! then again without a duplicate; an export read as Excel reads it and
//! imported back unchanged; the console's import page over HTTP with a
//! signed-in session; and `yui import` / `yui export --format csv` on a
//! data directory, stopped and serving.

use reqwest::StatusCode;
use serde_json::{Value, json};
use yui_tests::browser::Browser;
use yui_tests::{Server, init, yui, yui_ok, yui_with_stdin};

const PASSWORD: &str = "tateshina-telework-2026";

/// A record id for row `n` of a file, as an export would carry it.
fn id(n: u32) -> String {
    format!("01jq2w3e4r5t6y7v8k9m0p{n:04}")
}

/// The workers of a town hall's roster as Excel shows it: Japanese
/// headings, choices by their labels, a date as Excel writes it back, a
/// skill list in one cell, a mentor named by the id of another row.
/// `bad` spoils four rows.
fn roster(bad: bool) -> String {
    let mut rows = vec![
        "ID,氏名,ふりがな,電話番号,状態,週あたり稼働時間,登録日,スキル,メンター,メモ".to_owned(),
        format!(
            "{},結 花子,ゆい はなこ,0267-00-0001,稼働中,20,2025/4/1,\"スキル=データ入力; レベル=4; 評価日=2025/10/1\nスキル=翻訳; レベル=2\",,午前中の作業を希望",
            id(1)
        ),
        format!(
            "{},{},さとう いちろう,0267-00-0002,{},10.5,2025/5/12,,{} 結 花子,\"メンターは結さん。\n週2回の面談\"",
            id(2),
            if bad { "" } else { "佐藤 一郎" },
            if bad { "引退" } else { "研修中" },
            id(1)
        ),
        format!(
            "{},山田 太郎,やまだ たろう,,登録済み,{},2025-06-01,,,",
            id(3),
            if bad { "週10時間" } else { "１５" }
        ),
        format!(
            "{},鈴木 次郎,すずき じろう,,休止中,5,{},,{},",
            id(4),
            if bad { "2025/13/40" } else { "2025年7月1日" },
            if bad { id(99) } else { id(3) }
        ),
    ];
    rows.push(String::new());
    rows.join("\r\n")
}

fn shift_jis(text: &str) -> Vec<u8> {
    let (bytes, _, unmappable) = encoding_rs::SHIFT_JIS.encode(text);
    assert!(!unmappable, "the test's text is all in CP932");
    bytes.into_owned()
}

fn post_csv(server: &Server, path: &str, body: Vec<u8>) -> (u16, Value) {
    let r = server
        .client
        .post(server.url(path))
        .bearer_auth(&server.token)
        .header("content-type", "text/csv")
        .body(body)
        .send()
        .expect("send");
    let status = r.status().as_u16();
    (status, r.json().unwrap_or(Value::Null))
}

fn get_bytes(server: &Server, path: &str) -> (u16, String, Vec<u8>) {
    let r = server
        .client
        .get(server.url(path))
        .bearer_auth(&server.token)
        .send()
        .expect("send");
    let status = r.status().as_u16();
    let content_type = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    (status, content_type, r.bytes().expect("body").to_vec())
}

/// The rows of a CSV file as Excel reads it: a UTF-8 BOM first, then
/// RFC 4180 with CRLF.
fn as_excel_reads(bytes: &[u8]) -> Vec<Vec<String>> {
    let body = bytes
        .strip_prefix(b"\xef\xbb\xbf")
        .expect("a UTF-8 byte order mark, or Excel reads the file as Shift_JIS");
    let text = std::str::from_utf8(body).expect("UTF-8");
    assert!(
        text.ends_with("\r\n") && !text.replace("\r\n", "").contains('\r'),
        "CRLF line ends"
    );
    csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(body)
        .records()
        .map(|r| r.expect("a CSV row").iter().map(str::to_owned).collect())
        .collect()
}

/// (row, column, code) of each problem of a refusal.
fn problems(refusal: &Value) -> Vec<(u64, String, String)> {
    refusal["error"]["problems"]
        .as_array()
        .expect("problems")
        .iter()
        .map(|p| {
            (
                p["row"].as_u64().expect("row"),
                p["column"].as_str().unwrap_or("").to_owned(),
                p["code"].as_str().expect("code").to_owned(),
            )
        })
        .collect()
}

fn audit(server: &Server) -> Vec<Value> {
    let (status, body) = server.get("/api/v1/audit");
    assert_eq!(status, 200, "{body}");
    body["entries"].as_array().cloned().unwrap_or_default()
}

#[test]
fn a_shift_jis_file_with_bad_rows_writes_nothing_then_imports_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("tateshina");
    init(&data, "tateshina");
    let server = Server::start(&data);

    let (status, refusal) = post_csv(&server, "/api/v1/import/workers", shift_jis(&roster(true)));
    assert_eq!(status, 422, "{refusal}");
    assert_eq!(refusal["error"]["code"], "import_rejected");
    let got = problems(&refusal);
    let want: Vec<(u64, String, String)> = [
        (3, "氏名", "missing_field"),
        (3, "状態", "invalid_enum"),
        (4, "週あたり稼働時間", "invalid_type"),
        (5, "登録日", "invalid_date"),
        (5, "メンター", "invalid_reference"),
    ]
    .iter()
    .map(|(r, c, k)| (*r, (*c).to_owned(), (*k).to_owned()))
    .collect();
    for w in &want {
        assert!(got.contains(w), "{w:?} missing from {got:?}");
    }
    assert_eq!(got.len(), want.len(), "{got:?}");
    assert_eq!(refusal["error"]["problem_count"], 5);
    assert_eq!(server.count("workers"), 0, "nothing was written");

    let good = shift_jis(&roster(false));
    let (status, checked) = post_csv(&server, "/api/v1/import/workers?dry_run=true", good.clone());
    assert_eq!(status, 200, "{checked}");
    assert_eq!(
        checked,
        json!({"collection": "workers", "dry_run": true, "encoding": "Shift_JIS", "rows": 4, "created": 4, "updated": 0, "unchanged": 0})
    );
    assert_eq!(server.count("workers"), 0, "a dry run writes nothing");

    let (status, done) = post_csv(&server, "/api/v1/import/workers", good.clone());
    assert_eq!(status, 200, "{done}");
    assert_eq!(
        (done["created"].as_u64(), done["dry_run"].as_bool()),
        (Some(4), Some(false))
    );
    assert_eq!(server.count("workers"), 4);
    let hanako = server.record("workers", &id(1)).expect("kept its id");
    assert_eq!(hanako["fields"]["joined_on"], "2025-04-01");
    assert_eq!(
        hanako["fields"]["skills"],
        json!([{"skill": "データ入力", "level": 4, "assessed_on": "2025-10-01"}, {"skill": "翻訳", "level": 2}])
    );
    let ichiro = server.record("workers", &id(2)).expect("imported");
    assert_eq!(ichiro["fields"]["status"], "in_training");
    assert_eq!(ichiro["fields"]["mentor"], id(1));
    assert_eq!(ichiro["fields"]["hours_per_week"], 10.5);
    assert_eq!(ichiro["fields"]["notes"], "メンターは結さん。\n週2回の面談");
    let jiro = server.record("workers", &id(4)).expect("imported");
    assert_eq!(jiro["fields"]["joined_on"], "2025-07-01");
    assert_eq!(jiro["fields"]["mentor"], id(3), "a row of the same file");
    assert_eq!(
        server.record("workers", &id(3)).expect("imported")["fields"]["hours_per_week"],
        15
    );

    let (status, again) = post_csv(&server, "/api/v1/import/workers", good);
    assert_eq!(status, 200, "{again}");
    assert_eq!(
        (
            again["created"].as_u64(),
            again["updated"].as_u64(),
            again["unchanged"].as_u64()
        ),
        (Some(0), Some(0), Some(4)),
        "{again}"
    );
    assert_eq!(server.count("workers"), 4, "no duplicates");
    let (_, history) = server.get(&format!("/api/v1/records/workers/{}/history", id(1)));
    assert_eq!(
        history["changes"].as_array().map(Vec::len),
        Some(1),
        "{history}"
    );

    let imports: Vec<Value> = audit(&server)
        .into_iter()
        .filter(|e| e["action"] == "record.import")
        .collect();
    assert_eq!(
        imports.len(),
        2,
        "one entry per import that wrote (dry runs and refusals write none)"
    );
    assert!(
        imports
            .iter()
            .any(|e| e["detail"] == "4 rows (Shift_JIS): 4 created, 0 updated, 0 unchanged"),
        "{imports:?}"
    );

    // A shared collection: the personal-data guard, and no unknown ids.
    let knowledge = "タイトル,本文,分類\r\n研修の進め方,\"連絡は 090-1234-5678 まで\",研修\r\n面談のコツ,結 花子さんに聞いた,その他\r\n";
    let (status, refusal) = post_csv(
        &server,
        "/api/v1/import/knowledge",
        knowledge.as_bytes().to_vec(),
    );
    assert_eq!(status, 422, "{refusal}");
    let got = problems(&refusal);
    assert!(
        got.contains(&(2, "本文".into(), "personal_data".into())),
        "{got:?}"
    );
    assert!(
        got.contains(&(3, "本文".into(), "personal_data".into())),
        "a registered name: {got:?}"
    );
    let stray = format!("ID,タイトル,本文,分類\r\n{},題,本文,研修\r\n", id(50));
    let (status, refusal) = post_csv(&server, "/api/v1/import/knowledge", stray.into_bytes());
    assert_eq!(status, 422);
    assert_eq!(
        problems(&refusal),
        [(2, "ID".to_owned(), "record_not_found".to_owned())]
    );
    assert_eq!(server.count("knowledge"), 0);

    // What a viewer may not do, and what is not a file of this collection.
    let (status, body) = post_csv(
        &server,
        "/api/v1/import/workers",
        b"name,colour\r\na,b\r\n".to_vec(),
    );
    assert_eq!(status, 422);
    assert_eq!(
        problems(&body),
        [
            (1, "colour".to_owned(), "unknown_column".to_owned()),
            (2, String::new(), "missing_field".to_owned()),
        ],
        "a required field without a column is missing in each row that adds a record"
    );
    let (status, body) = post_csv(&server, "/api/v1/import/workers?dry_run=maybe", Vec::new());
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_query"))
    );
    let (status, body) = post_csv(&server, "/api/v1/import/users", Vec::new());
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("unknown_collection"))
    );
    assert_eq!(server.stop().code(), Some(0));
}

#[test]
fn an_export_opens_as_excel_reads_it_and_imports_back_unchanged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("tateshina");
    init(&data, "tateshina");
    let server = Server::start(&data);
    let mentor = server.create(
        "workers",
        json!({"name": "結 花子", "status": "active", "hours_per_week": 20, "joined_on": "2025-04-01",
            "skills": [{"skill": "データ入力", "level": 4}], "notes": "一行目\n\"二行目\", です"}),
    );
    let mentor_id = mentor["id"].as_str().expect("id").to_owned();
    server.create(
        "workers",
        json!({"name": "=HYPERLINK(\"http://example.com\",\"click\")", "status": "in_training",
            "mentor": mentor_id, "skills": [{"skill": "翻訳", "level": 2, "assessed_on": "2025-10-01"}]}),
    );
    server.create(
        "knowledge",
        json!({"title": "@SUM(1+1) の話", "body": "-2+3 は式ではない", "category": "training", "tags": ["研修", "-初心者"]}),
    );

    let (status, content_type, bytes) = get_bytes(&server, "/api/v1/records/workers.csv");
    assert_eq!(status, 200);
    assert_eq!(content_type, "text/csv; charset=utf-8");
    let rows = as_excel_reads(&bytes);
    assert_eq!(rows.len(), 3, "{rows:?}");
    let header = &rows[0];
    assert_eq!(header[0], "ID");
    assert_eq!(header[1], "氏名");
    let col = |name: &str| header.iter().position(|h| h == name).expect(name);
    let (hanako, formula) = (&rows[1], &rows[2]);
    assert_eq!(hanako[col("氏名")], "結 花子", "Japanese intact");
    assert_eq!(hanako[col("状態")], "稼働中");
    assert_eq!(hanako[col("週あたり稼働時間")], "20", "a plain number");
    assert_eq!(hanako[col("登録日")], "2025-04-01");
    assert_eq!(hanako[col("メモ")], "一行目\n\"二行目\", です", "quoting");
    assert_eq!(hanako[col("スキル")], "スキル=データ入力; レベル=4");
    assert_eq!(
        formula[col("氏名")],
        "'=HYPERLINK(\"http://example.com\",\"click\")",
        "a formula is neutralised"
    );
    assert_eq!(formula[col("メンター")], format!("{mentor_id} 結 花子"));
    assert!(formula[col("更新日時（日本時間）")].len() == 19);

    let (status, back) = post_csv(&server, "/api/v1/import/workers", bytes.clone());
    assert_eq!(status, 200, "{back}");
    assert_eq!(
        (
            back["encoding"].as_str(),
            back["created"].as_u64(),
            back["updated"].as_u64(),
            back["unchanged"].as_u64()
        ),
        (Some("UTF-8"), Some(0), Some(0), Some(2)),
        "{back}"
    );

    // Edited in Excel: one cell changed, saved as Shift_JIS.
    let text = String::from_utf8(bytes[3..].to_vec())
        .expect("utf8")
        .replace("稼働中", "休止中");
    let (status, edited) = post_csv(&server, "/api/v1/import/workers", shift_jis(&text));
    assert_eq!(status, 200, "{edited}");
    assert_eq!(
        (edited["updated"].as_u64(), edited["unchanged"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(
        server.record("workers", &mentor_id).expect("kept")["fields"]["status"],
        "paused"
    );

    // A shared collection round-trips too, formula cells and tags.
    let (status, _, shared) = get_bytes(&server, "/api/v1/records/knowledge.csv?lang=en");
    assert_eq!(status, 200);
    let rows = as_excel_reads(&shared);
    assert_eq!(&rows[0][..5], ["ID", "Title", "Body", "Category", "Tags"]);
    assert_eq!(rows[1][1], "'@SUM(1+1) の話");
    assert_eq!(rows[1][2], "'-2+3 は式ではない");
    assert_eq!(rows[1][3], "Training");
    assert_eq!(rows[1][4], "研修\n-初心者");
    let (status, back) = post_csv(&server, "/api/v1/import/knowledge", shared);
    assert_eq!(status, 200, "{back}");
    assert_eq!(back["unchanged"], 1, "{back}");

    // The daily views.
    for view in ["skills", "orders", "training", "pr"] {
        let (status, content_type, bytes) =
            get_bytes(&server, &format!("/api/v1/views/{view}.csv"));
        assert_eq!(
            (status, content_type.as_str()),
            (200, "text/csv; charset=utf-8"),
            "{view}"
        );
        as_excel_reads(&bytes);
    }
    let (_, _, skills) = get_bytes(&server, "/api/v1/views/skills.csv");
    let rows = as_excel_reads(&skills);
    assert_eq!(rows[0], ["ID", "氏名", "状態", "データ入力", "翻訳"]);
    assert!(
        rows.iter().any(|r| r[1] == "結 花子" && r[3] == "4"),
        "{rows:?}"
    );
    let (status, body) = server.get("/api/v1/records/workers.csv?lang=fr");
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_query"))
    );
    let r = server
        .client
        .post(server.url("/api/v1/records/workers.csv"))
        .bearer_auth(&server.token)
        .send()
        .expect("send");
    assert_eq!(r.status().as_u16(), 405, "an export path takes GET only");
    assert_eq!(server.stop().code(), Some(0));
}

/// How many live records a collection holds, asked from async code.
async fn count_of(server: &Server, collection: &str) -> u64 {
    let status: Value = reqwest::Client::new()
        .get(server.url("/api/v1/status"))
        .bearer_auth(&server.token)
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    status["collections"][collection]["count"]
        .as_u64()
        .expect("count")
}

fn multipart(csrf: &str, file: &[u8], dry_run: bool) -> (String, Vec<u8>) {
    let boundary = "yui-csv-boundary";
    let mut body =
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\n{csrf}\r\n")
            .into_bytes();
    if dry_run {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"dry_run\"\r\n\r\ntrue\r\n"
            )
            .as_bytes(),
        );
    }
    body.extend_from_slice(
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"名簿.csv\"\r\nContent-Type: text/csv\r\n\r\n").as_bytes(),
    );
    body.extend_from_slice(file);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

#[test]
fn the_console_imports_an_uploaded_file_and_offers_downloads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("tateshina");
    init(&data, "tateshina");
    for (user, role) in [("sato", "editor"), ("yamada", "viewer")] {
        let out = yui_with_stdin(
            &data,
            &["user", "add", user, "--role", role],
            &format!("{PASSWORD}\n"),
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let server = Server::start(&data);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let browser = || Browser::of_console(server.base.clone());
        let mut editor = browser();
        assert_eq!(
            editor.login("sato", PASSWORD, "/").await.status,
            StatusCode::SEE_OTHER
        );
        let list = editor.get("/records/workers").await;
        assert!(
            list.body.contains("href=\"/records/workers/import\""),
            "{}",
            list.body
        );
        assert!(list.body.contains("href=\"/records/workers/export.csv\""));
        let form = editor.get("/records/workers/import").await;
        assert_eq!(form.status, StatusCode::OK);
        assert!(
            form.body.contains("enctype=\"multipart/form-data\""),
            "{}",
            form.body
        );
        assert!(!form.body.contains("<script"), "the page needs no script");

        let upload = |b: &Browser, file: Vec<u8>, dry_run: bool, csrf: String| {
            let (content_type, body) = multipart(&csrf, &file, dry_run);
            b.http
                .post(format!("{}/records/workers/import", b.base))
                .header("cookie", b.cookie_header())
                .header("content-type", content_type)
                .body(body)
        };
        let resp = upload(
            &editor,
            shift_jis(&roster(true)),
            false,
            editor.csrf.clone(),
        )
        .send()
        .await
        .expect("send");
        assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let page = resp.text().await.expect("page");
        assert!(page.contains("何も取り込んでいません"), "{page}");
        for cell in [
            "<td>3</td><td>氏名</td>",
            "<td>4</td><td>週あたり稼働時間</td>",
            "<td>5</td><td>メンター</td>",
        ] {
            assert!(page.contains(cell), "{cell} in {page}");
        }
        assert_eq!(count_of(&server, "workers").await, 0);

        let good = shift_jis(&roster(false));
        let resp = upload(&editor, good.clone(), true, editor.csrf.clone())
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status(), StatusCode::OK);
        assert!(resp.text().await.expect("page").contains("確認しました"));
        assert_eq!(
            count_of(&server, "workers").await,
            0,
            "a dry run writes nothing"
        );
        let resp = upload(&editor, good.clone(), false, editor.csrf.clone())
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status(), StatusCode::OK);
        let page = resp.text().await.expect("page");
        assert!(page.contains("4 行を取り込みました: 新規 4 件"), "{page}");
        assert_eq!(count_of(&server, "workers").await, 4);

        let resp = upload(&editor, good.clone(), false, "forged".into())
            .send()
            .await
            .expect("send");
        assert_eq!(
            resp.status(),
            StatusCode::FORBIDDEN,
            "a CSRF token is needed"
        );

        let download = editor.get("/records/workers/export.csv").await;
        assert_eq!(download.status, StatusCode::OK);
        assert!(download.body.starts_with('\u{feff}'));
        assert!(download.body.contains("結 花子"));
        let skills = editor.get("/work/skills.csv?status=active").await;
        assert_eq!(skills.status, StatusCode::OK);
        assert!(skills.body.contains("データ入力"), "{}", skills.body);
        let work = editor.get("/work/skills?status=active").await;
        assert!(
            work.body
                .contains("href=\"/work/skills.csv?status=active\""),
            "{}",
            work.body
        );

        let mut viewer = browser();
        assert_eq!(
            viewer.login("yamada", PASSWORD, "/").await.status,
            StatusCode::SEE_OTHER
        );
        assert_eq!(
            viewer.get("/records/workers/import").await.status,
            StatusCode::FORBIDDEN
        );
        let resp = upload(&viewer, good, false, viewer.csrf.clone())
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status(), StatusCode::FORBIDDEN);
        let list = viewer.get("/records/workers").await;
        assert!(
            !list.body.contains("/records/workers/import"),
            "no import link for a viewer"
        );
        assert_eq!(
            viewer.get("/records/workers/export.csv").await.status,
            StatusCode::OK
        );
    });
    assert_eq!(server.stop().code(), Some(0));
}

#[test]
fn yui_import_and_export_work_on_a_data_directory_stopped_or_serving() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("tateshina");
    init(&data, "tateshina");
    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, shift_jis(&roster(true))).expect("write");
    let good = dir.path().join("名簿.csv");
    std::fs::write(&good, shift_jis(&roster(false))).expect("write");
    let arg = |p: &std::path::Path| p.to_str().expect("utf8").to_owned();

    let out = yui(&data, &["import", "workers", &arg(&bad)]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("row 3, 氏名 (name): is required [missing_field]"),
        "{stdout}"
    );
    assert!(stdout.contains("row 5, メンター (mentor)"), "{stdout}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("nothing was imported: 5 problem(s) in 3 row(s)"),
        "{stderr}"
    );

    let out = yui_ok(&data, &["import", "workers", &arg(&good), "--dry-run"]);
    assert!(
        out.contains("Dry run")
            && out.contains("4 to create")
            && out.contains("Nothing was written"),
        "{out}"
    );
    let out = yui_ok(&data, &["import", "workers", &arg(&good)]);
    assert!(
        out.contains("(Shift_JIS, 4 rows) into workers: 4 created, 0 updated, 0 unchanged"),
        "{out}"
    );
    let err = String::from_utf8_lossy(&yui(&data, &["import", "people", &arg(&good)]).stderr)
        .into_owned();
    assert!(
        err.contains("not a collection") && err.contains("workers"),
        "{err}"
    );

    let export = dir.path().join("export");
    let out = yui_ok(&data, &["export", "--format", "csv", &arg(&export)]);
    assert!(out.contains("Exported 4 records"), "{out}");
    let file = export.join("workers.csv");
    let bytes = std::fs::read(&file).expect("workers.csv");
    let rows = as_excel_reads(&bytes);
    assert_eq!(rows.len(), 5);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&file).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "an export holds personal data");
    assert!(export.join("knowledge.csv").exists());

    // Through the running node: the same import, audited as the node token.
    let server = Server::start(&data);
    let out = yui_ok(&data, &["import", "workers", &arg(&file)]);
    assert!(out.contains("0 created, 0 updated, 4 unchanged"), "{out}");
    let entries = audit(&server);
    let actors: Vec<(&str, &str)> = entries
        .iter()
        .filter(|e| e["action"] == "record.import")
        .map(|e| {
            (
                e["user"].as_str().unwrap_or(""),
                e["target"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(actors.len(), 2, "{entries:?}");
    assert!(
        actors.contains(&("cli", "workers")) && actors.contains(&("node-token", "workers")),
        "{actors:?}"
    );
    assert_eq!(server.count("workers"), 4);
    assert_eq!(server.stop().code(), Some(0));
}
