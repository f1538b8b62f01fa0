//! The web console over real HTTP on 127.0.0.1, against a real node and
//! SQLite file: login and sessions, the language switch, every page in
//! Japanese and English, record forms with validation next to the field,
//! search, CSRF and role checks, 404 pages, assets, and that no page loads
//! anything from another host.

use reqwest::StatusCode;
use reqwest::header::{COOKIE, SET_COOKIE};
use yui_tests::browser::{Browser, assert_no_external_urls, field_block, hidden_csrf};
use yui_tests::test_node::TestNode;

/// The language switch, and a record made through the form.
trait ConsoleSteps {
    async fn english(&mut self);
    async fn create_knowledge(&mut self, title: &str, body: &str) -> String;
}

impl ConsoleSteps for Browser {
    async fn english(&mut self) {
        let page = self.get("/lang/en?next=/search").await;
        assert_eq!(page.status, StatusCode::SEE_OTHER);
        assert_eq!(page.location(), "/search");
        assert!(
            self.cookies
                .iter()
                .any(|(k, v)| k == "yui_lang" && v == "en")
        );
    }

    /// Creates a knowledge record through the form; returns its id.
    async fn create_knowledge(&mut self, title: &str, body: &str) -> String {
        let page = self
            .submit(
                "/records/knowledge",
                &[
                    ("title", title),
                    ("body", body),
                    ("category", "training"),
                    ("tags", "研修, メンター"),
                ],
            )
            .await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
        let location = page.location();
        assert!(location.ends_with("?done=created"), "{location}");
        location
            .trim_start_matches("/records/knowledge/")
            .trim_end_matches("?done=created")
            .to_owned()
    }
}

#[tokio::test]
async fn anonymous_visitors_are_sent_to_login_with_a_local_return_path() {
    let node = TestNode::builder().one_user_per_role().start().await;
    let mut b = node.browser();
    for path in [
        "/",
        "/records/knowledge",
        "/search?q=研修",
        "/peers",
        "/api/docs",
    ] {
        let page = b.get(path).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{path}");
        assert!(
            page.location().starts_with("/login?next=%2F"),
            "{path}: {}",
            page.location()
        );
    }
    // A return path to another host is replaced by the dashboard.
    let page = b.get("/login?next=//evil.example/x").await;
    assert!(
        page.body.contains(r#"name="next" value="/""#),
        "{}",
        page.body
    );
    let page = b
        .login("admin", "password-admin", "https://evil.example/")
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.location(), "/");
    // A local return path is kept.
    let mut b = node.browser();
    let page = b
        .login("admin", "password-admin", "/records/knowledge")
        .await;
    assert_eq!(page.location(), "/records/knowledge");
    let session = page
        .headers
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("yui_session="))
        .expect("session cookie")
        .to_owned();
    for part in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(session.contains(part), "{session}");
    }
    assert!(!session.contains("Secure"), "plain HTTP: {session}");
    // Behind an HTTPS proxy the cookie is Secure.
    let mut b = node.browser();
    let login = b.get("/login").await;
    let token = hidden_csrf(&login.body);
    let resp = b
        .http
        .post(format!("{}/login", b.base))
        .header(COOKIE, b.cookie_header())
        .header("x-forwarded-proto", "https")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "csrf={token}&user=admin&password=password-admin&next=%2F"
        ))
        .send()
        .await
        .expect("send");
    let secure = resp
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.starts_with("yui_session=") && v.contains("; Secure"));
    assert!(secure);
    node.stop().await;
}

#[tokio::test]
async fn a_bad_login_is_refused_in_the_users_language_and_a_forged_one_is_forbidden() {
    let node = TestNode::builder().one_user_per_role().start().await;
    let mut b = node.browser();
    let page = b.login("admin", "wrong", "/").await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED);
    assert!(
        page.body
            .contains("ユーザー名またはパスワードが正しくありません")
    );
    assert!(!b.cookies.iter().any(|(k, _)| k == "yui_session"));
    b.english().await;
    let page = b.login("nobody", "password-admin", "/").await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED);
    assert!(
        page.body
            .contains("The user name or password is not correct.")
    );
    // A login form posted from another site carries no token cookie.
    let mut stranger = node.browser();
    let page = stranger
        .post(
            "/login",
            &[
                ("csrf", "x"),
                ("user", "admin"),
                ("password", "password-admin"),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert!(!stranger.cookies.iter().any(|(k, _)| k == "yui_session"));
    node.stop().await;
}

#[tokio::test]
async fn every_page_renders_in_japanese_and_in_english_after_the_switch() {
    let node = TestNode::builder().one_user_per_role().start().await;
    let mut b = node.signed_in("admin").await;
    let id = b
        .create_knowledge("新任メンター研修の進め方", "最初の1か月の研修内容。")
        .await;
    let record = format!("/records/knowledge/{id}");
    let mut pages: Vec<String> = [
        "/",
        "/records",
        "/records/knowledge",
        "/records/knowledge?category=training",
        "/records/knowledge/new",
        "/records/workers",
        "/records/workers/new",
        "/records/pilot_results/new",
        "/records/orders/new",
        "/records/kpi_reports",
        "/search",
        "/search?q=研修",
        "/peers",
        "/api/docs",
    ]
    .map(str::to_owned)
    .to_vec();
    pages.extend([
        record.clone(),
        format!("{record}/edit"),
        format!("{record}/delete"),
    ]);
    for path in &pages {
        let page = b.get(path).await;
        assert_eq!(page.status, StatusCode::OK, "{path}: {}", page.body);
        assert!(page.body.contains(r#"<html lang="ja">"#), "{path}");
        assert!(page.body.contains("ログアウト"), "{path}");
        assert!(page.body.contains(">English</a>"), "{path}");
        assert!(page.body.contains("admin"), "{path}: the user is shown");
        assert_no_external_urls(path, &page.body);
    }
    assert!(b.get("/").await.body.contains("ダッシュボード"));
    assert!(b.get(&record).await.body.contains("変更履歴"));
    b.english().await;
    for path in &pages {
        let page = b.get(path).await;
        assert_eq!(page.status, StatusCode::OK, "{path}");
        assert!(page.body.contains(r#"<html lang="en">"#), "{path}");
        assert!(page.body.contains("Log out"), "{path}");
        assert!(page.body.contains(">日本語</a>"), "{path}");
        assert_no_external_urls(path, &page.body);
    }
    assert!(b.get("/").await.body.contains("Records per collection"));
    assert!(b.get(&record).await.body.contains("History"));
    // The login page too, for a visitor without a session.
    let mut anonymous = node.browser();
    let page = anonymous.get("/login").await;
    assert!(page.body.contains("ログイン") && page.body.contains(r#"lang="ja""#));
    assert_no_external_urls("/login", &page.body);
    node.stop().await;
}

#[tokio::test]
async fn a_record_made_in_the_form_is_found_by_a_two_character_search_and_can_be_edited() {
    let node = TestNode::builder().one_user_per_role().start().await;
    let mut b = node.signed_in("editor").await;
    let id = b
        .create_knowledge("新任メンター研修の進め方", "最初の1か月は模擬業務で。")
        .await;
    let page = b
        .get(&format!("/records/knowledge/{id}?done=created"))
        .await;
    assert!(page.body.contains("記録を作成しました"));
    assert!(page.body.contains("新任メンター研修の進め方"));
    assert!(page.body.contains("研修")); // the category label, not `training`
    assert!(
        page.body.contains("tateshina"),
        "the history names the town"
    );
    // Signed with this node's key, which it knows before it has joined.
    assert!(
        page.body.contains("署名確認済み") && !page.body.contains("署名未確認"),
        "{}",
        page.body
    );

    let page = b.get("/search?q=研修").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body.contains(&format!("/records/knowledge/{id}")),
        "{}",
        page.body
    );
    assert!(page.body.contains("1件見つかりました"));
    let page = b.get("/search?q=研修&collection=workers").await;
    assert!(!page.body.contains(&format!("/records/knowledge/{id}")));

    let edit = format!("/records/knowledge/{id}/edit");
    let page = b.get(&edit).await;
    assert!(page.body.contains("最初の1か月は模擬業務で。"));
    assert!(page.body.contains("研修, メンター"), "tags as text");
    let page = b
        .submit(
            &edit,
            &[
                ("title", "新任メンター研修の進め方（改訂）"),
                ("body", "最初の1か月は模擬業務で。\r\n2か月目から実案件。"),
                ("category", "training"),
                ("tags", "研修"),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    let (status, record) = node
        .api_get(&format!("/api/v1/records/knowledge/{id}"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        record["fields"]["title"],
        "新任メンター研修の進め方（改訂）"
    );
    assert_eq!(
        record["fields"]["body"],
        "最初の1か月は模擬業務で。\n2か月目から実案件。"
    );
    assert_eq!(record["fields"]["tags"], serde_json::json!(["研修"]));
    let page = b.get(&format!("/records/knowledge/{id}")).await;
    assert!(
        page.body.contains("変更：タイトル、本文、タグ"),
        "{}",
        page.body
    );
    // Filters and the list.
    let page = b.get("/records/knowledge?category=training").await;
    assert!(page.body.contains(&id));
    let page = b.get("/records/knowledge?category=pr").await;
    assert!(!page.body.contains(&id));
    node.stop().await;
}

#[tokio::test]
async fn an_invalid_form_shows_each_error_next_to_its_field_in_the_users_language() {
    let node = TestNode::builder().one_user_per_role().start().await;
    let mut b = node.signed_in("admin").await;
    let bad = [("title", ""), ("body", "本文だけ"), ("category", "gossip")];
    let page = b.submit("/records/knowledge", &bad).await;
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.body.contains("何も保存されていません"));
    assert!(field_block(&page.body, "title").contains("入力してください（必須項目です）。"));
    assert!(field_block(&page.body, "category").contains("選択肢の中から選んでください。"));
    assert!(!field_block(&page.body, "body").contains("field-error"));
    assert!(page.body.contains("本文だけ"), "what was typed is kept");
    let page = b
        .submit(
            "/records/workers",
            &[
                ("name", "山田 花子"),
                ("status", "active"),
                ("email", "not-an-address"),
                ("hours_per_week", "many"),
                ("skills", "[{\"skill\": \"Excel\", \"level\": 9}]"),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(field_block(&page.body, "email").contains("形式が正しくありません"));
    assert!(field_block(&page.body, "hours_per_week").contains("入力の形式が正しくありません"));
    assert!(field_block(&page.body, "skills").contains("値が許される範囲の外です"));
    let page = b
        .submit(
            "/records/workers",
            &[
                ("name", "山田 花子"),
                ("status", "active"),
                ("skills", "[{"),
            ],
        )
        .await;
    assert!(field_block(&page.body, "skills").contains("JSONとして読み取れません"));

    b.english().await;
    let page = b.submit("/records/knowledge", &bad).await;
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(field_block(&page.body, "title").contains("This field is required."));
    assert!(field_block(&page.body, "category").contains("Choose one of the options."));
    let (_, list) = node.api_get("/api/v1/records/knowledge").await;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(0));
    let (_, list) = node.api_get("/api/v1/records/workers").await;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(0));
    node.stop().await;
}

#[tokio::test]
async fn a_title_with_control_or_direction_characters_is_refused_next_to_the_field() {
    let node = TestNode::builder().one_user_per_role().start().await;
    let mut b = node.signed_in("admin").await;
    for title in ["ヌル\u{0}", "\u{1b}[31m赤い題", "txt.\u{202e}exe"] {
        let form = [("title", title), ("body", "本文"), ("category", "training")];
        let page = b.submit("/records/knowledge", &form).await;
        assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY, "{title:?}");
        assert!(
            field_block(&page.body, "title").contains("制御文字や文字の向きを変える記号"),
            "{title:?}: {}",
            field_block(&page.body, "title")
        );
    }
    let (_, list) = node.api_get("/api/v1/records/knowledge").await;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(0));
    node.stop().await;
}

#[tokio::test]
async fn forms_without_the_sessions_csrf_token_are_refused_and_change_nothing() {
    let node = TestNode::builder().one_user_per_role().start().await;
    let mut b = node.signed_in("admin").await;
    let fields = [("title", "CSRF"), ("body", "x"), ("category", "other")];
    let page = b.post("/records/knowledge", &fields).await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert!(page.body.contains("確認トークンが一致しない"));
    let mut forged = vec![("csrf", "0000")];
    forged.extend_from_slice(&fields);
    let page = b.post("/records/knowledge", &forged).await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    let (_, list) = node.api_get("/api/v1/records/knowledge").await;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(0));

    let id = b.create_knowledge("残る記録", "消されない").await;
    let path = format!("/records/knowledge/{id}");
    for (action, form) in [
        (format!("{path}/delete"), vec![("csrf", "nope")]),
        (
            format!("{path}/edit"),
            vec![("title", "changed"), ("body", "x"), ("category", "other")],
        ),
        (
            "/peers".to_owned(),
            vec![("csrf", ""), ("url", "https://127.0.0.1:9")],
        ),
        ("/sync".to_owned(), vec![]),
        ("/logout".to_owned(), vec![]),
    ] {
        let page = b.post(&action, &form).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{action}");
    }
    let (status, record) = node
        .api_get(&format!("/api/v1/records/knowledge/{id}"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(record["fields"]["title"], "残る記録");
    let (_, peers) = node.api_get("/api/v1/peers").await;
    assert_eq!(peers["peers"].as_array().map(Vec::len), Some(0));
    assert_eq!(b.get("/").await.status, StatusCode::OK, "still signed in");
    node.stop().await;
}

#[tokio::test]
async fn viewers_see_no_write_buttons_and_their_forged_posts_are_refused() {
    let node = TestNode::builder().one_user_per_role().start().await;
    let mut admin = node.signed_in("admin").await;
    let id = admin.create_knowledge("閲覧者テスト", "本文").await;
    let path = format!("/records/knowledge/{id}");
    let mut viewer = node.signed_in("viewer").await;
    let page = viewer.get(&path).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("閲覧者"), "the role is shown");
    assert!(!page.body.contains(&format!("{path}/edit")));
    assert!(!page.body.contains(&format!("{path}/delete")));
    let page = viewer.get("/records/knowledge").await;
    assert!(!page.body.contains("/records/knowledge/new"));
    assert!(page.body.contains("閲覧者の権限では記録を変更できません"));
    assert!(!viewer.get("/").await.body.contains(r#"href="/peers""#));

    let forged = [("title", "書き換え"), ("body", "x"), ("category", "other")];
    for action in [
        format!("{path}/edit"),
        format!("{path}/delete"),
        "/records/knowledge".to_owned(),
    ] {
        let page = viewer.submit(&action, &forged).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{action}");
        assert!(page.body.contains("この操作を行う権限がありません"));
    }
    for path in [
        format!("{path}/edit"),
        "/records/knowledge/new".into(),
        "/peers".into(),
    ] {
        assert_eq!(
            viewer.get(&path).await.status,
            StatusCode::FORBIDDEN,
            "{path}"
        );
    }
    let page = viewer
        .submit("/peers", &[("url", "https://127.0.0.1:9")])
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    let (_, record) = node
        .api_get(&format!("/api/v1/records/knowledge/{id}"))
        .await;
    assert_eq!(record["fields"]["title"], "閲覧者テスト");
    let (_, list) = node.api_get("/api/v1/records/knowledge").await;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1));
    node.stop().await;
}

#[tokio::test]
async fn unknown_collections_records_and_pages_answer_a_404_page() {
    let node = TestNode::builder().one_user_per_role().start().await;
    let mut b = node.signed_in("admin").await;
    for (path, words) in [
        ("/records/users", "そのコレクションはありません"),
        ("/records/users/new", "そのコレクションはありません"),
        (
            "/records/knowledge/01hzzzzzzzzzzzzzzzzzzzzzzz",
            "その記録は見つかりません",
        ),
        (
            "/records/knowledge/not-an-id/edit",
            "その記録は見つかりません",
        ),
        ("/records/knowledge/<script>", "その記録は見つかりません"),
        ("/no/such/page", "ページが見つかりません"),
    ] {
        let page = b.get(path).await;
        assert_eq!(page.status, StatusCode::NOT_FOUND, "{path}");
        assert!(page.body.contains(words), "{path}: {}", page.body);
        assert!(!page.body.contains("<script>"), "{path}: escaped");
    }
    // API paths keep their JSON errors.
    let resp = reqwest::get(format!("{}/api/nothing", node.base))
        .await
        .expect("send");
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let body: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(body["error"]["code"], "not_found");
    node.stop().await;
}

#[tokio::test]
async fn deleting_asks_for_confirmation_first() {
    let node = TestNode::builder().one_user_per_role().start().await;
    let mut b = node.signed_in("editor").await;
    let id = b.create_knowledge("消す記録", "本文").await;
    let path = format!("/records/knowledge/{id}");
    let page = b.get(&format!("{path}/delete")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("この記録を削除しますか"));
    assert!(page.body.contains("消す記録"));
    assert_eq!(
        node.api_get(&format!("/api/v1/records/knowledge/{id}"))
            .await
            .0,
        StatusCode::OK
    );
    let page = b.submit(&format!("{path}/delete"), &[]).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.location(), "/records/knowledge?done=deleted");
    assert!(
        b.get(page.location())
            .await
            .body
            .contains("記録を削除しました")
    );
    assert_eq!(
        node.api_get(&format!("/api/v1/records/knowledge/{id}"))
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    // A deleted record still shows, with its history, but cannot be edited.
    let page = b.get(&path).await;
    assert!(page.body.contains("削除済み") && page.body.contains("削除"));
    assert!(!page.body.contains(&format!("{path}/edit")));
    node.stop().await;
}

#[tokio::test]
async fn assets_are_embedded_hashed_and_cached_and_the_api_keeps_its_token() {
    let node = TestNode::builder().one_user_per_role().start().await;
    let mut b = node.signed_in("admin").await;
    let page = b.get("/").await;
    let href = |ext: &str| {
        let end = page.body.find(&format!(".{ext}\"")).expect("asset link");
        let start = page.body[..end].rfind("/assets/").expect("asset path");
        format!("{}.{ext}", &page.body[start..end])
    };
    for (path, content_type) in [
        (href("css"), "text/css; charset=utf-8"),
        (href("svg"), "image/svg+xml"),
    ] {
        let asset = b.get(&path).await;
        assert_eq!(asset.status, StatusCode::OK, "{path}");
        assert_eq!(asset.headers["content-type"], content_type, "{path}");
        let cache = asset.headers["cache-control"].to_str().expect("text");
        assert!(cache.contains("immutable") && cache.contains("max-age=31536000"));
    }
    assert_eq!(
        b.get("/assets/console.0000.css").await.status,
        StatusCode::NOT_FOUND
    );
    // Pages are never cached and allow no script.
    assert_eq!(page.headers["cache-control"], "no-store");
    let csp = page.headers["content-security-policy"]
        .to_str()
        .expect("csp");
    assert!(csp.contains("default-src 'none'"));

    // The session cookie does not open the API, and the token does not open the console.
    let resp = reqwest::Client::new()
        .get(format!("{}/api/v1/status", node.base))
        .header(COOKIE, b.cookie_header())
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(node.api_get("/api/v1/status").await.0, StatusCode::OK);
    let resp = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
        .get(format!("{}/", node.base))
        .bearer_auth(&node.token)
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);

    // Logging out ends the session.
    let page = b.submit("/logout", &[]).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.location(), "/login?out=1");
    assert!(
        b.get("/login?out=1")
            .await
            .body
            .contains("ログアウトしました")
    );
    assert_eq!(b.get("/").await.status, StatusCode::SEE_OTHER);
    node.stop().await;
}

#[tokio::test]
async fn administrators_add_and_remove_peers_from_the_console() {
    let node = TestNode::builder().one_user_per_role().start().await;
    let mut b = node.signed_in("admin").await;
    let page = b.submit("/peers", &[("url", "not a url")]).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(page.body.contains("ピアを変更できませんでした"));
    let page = b
        .submit("/peers", &[("url", "https://127.0.0.1:9"), ("node_id", "")])
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    let page = b.get(page.location()).await;
    assert!(page.body.contains("ピアを追加しました"));
    let (_, peers) = node.api_get("/api/v1/peers").await;
    let url = peers["peers"][0]["url"]
        .as_str()
        .expect("a peer")
        .to_owned();
    assert!(page.body.contains(&url));
    // Not confirmed: nothing removed.
    let page = b.submit("/peers/remove", &[("key", &url)]).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        node.api_get("/api/v1/peers").await.1["peers"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    let page = b
        .submit("/peers/remove", &[("key", &url), ("confirm", "yes")])
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(
        node.api_get("/api/v1/peers").await.1["peers"]
            .as_array()
            .map(Vec::len),
        Some(0)
    );
    node.stop().await;
}

/// Issue 6: the personal-data guard in the console. A registered worker's
/// name in a shared article is shown next to the field, in the user's
/// language, with its position; an administrator may save it anyway with a
/// reason (audited), an editor may not (no offer, and a forged one is 403).
#[tokio::test]
async fn personal_data_is_shown_next_to_the_field_and_only_an_administrator_may_override() {
    let node = TestNode::builder().one_user_per_role().start().await;
    let mut admin = node.signed_in("admin").await;
    let page = admin
        .submit(
            "/records/workers",
            &[
                ("name", "山田 花子"),
                ("name_kana", "やまだ はなこ"),
                ("status", "active"),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);

    let article = [
        ("title", "面談の記録"),
        ("body", "山田花子さんは入力作業が得意。"),
        ("category", "worker_management"),
        ("tags", ""),
    ];
    let mut editor = node.signed_in("editor").await;
    let page = editor.submit("/records/knowledge", &article).await;
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    let body_field = page
        .body
        .split("id=\"field-body\"")
        .nth(1)
        .and_then(|s| s.split("id=\"field-").next())
        .expect("the body field");
    assert!(
        body_field.contains(
            "個人情報（登録されている住民ワーカー・顧客担当者の氏名）が含まれています（1〜4文字目）"
        ),
        "{body_field}"
    );
    assert!(
        !page.body.contains("personal_data_override"),
        "an editor is offered the override"
    );
    let mut forged = article.to_vec();
    forged.extend([
        ("personal_data_override", "1"),
        ("override_reason", "編集者による上書き"),
    ]);
    let page = editor.submit("/records/knowledge", &forged).await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);

    // The administrator sees the offer (in English too) and uses it.
    admin.get("/lang/en?next=/").await;
    let page = admin.submit("/records/knowledge", &article).await;
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.body.contains("Contains personal data (the name of a registered worker or customer contact) at characters 1–4"), "{}", page.body);
    assert!(page.body.contains("name=\"personal_data_override\""));
    let mut overriding = article.to_vec();
    overriding.push(("personal_data_override", "1"));
    let page = admin.submit("/records/knowledge", &overriding).await;
    assert_eq!(
        page.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "no reason, no save"
    );
    overriding.push(("override_reason", "本人が公開に同意した事例紹介"));
    let page = admin.submit("/records/knowledge", &overriding).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    let (status, audit) = node.api_get("/api/v1/audit?limit=20").await;
    assert_eq!(status, StatusCode::OK);
    let entry = audit["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .find(|e| e["action"] == "personal_data.override")
        .expect("the override is audited")
        .clone();
    assert_eq!(entry["user"], "admin");
    let detail = entry["detail"].as_str().expect("detail");
    assert!(
        detail.contains("本人が公開に同意した事例紹介") && detail.contains("body registered_name"),
        "{detail}"
    );
    assert!(!detail.contains("山田"), "{detail}");
}

/// Issue 6: the audit page lists the egress ledger and the audit log, for
/// administrators only.
#[tokio::test]
async fn the_audit_page_is_for_administrators_and_lists_the_audit_log() {
    let node = TestNode::builder().one_user_per_role().start().await;
    let mut admin = node.signed_in("admin").await;
    let id = admin.create_knowledge("監査ページの確認", "本文").await;
    let page = admin.get("/audit").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("他の町に送った記録の台帳"));
    assert!(
        page.body.contains("該当する送信はありません"),
        "nothing was sent: not joined"
    );
    let log = page
        .body
        .split("id=\"audit-log\"")
        .nth(1)
        .expect("the audit log table");
    assert!(
        log.contains("record.create") && log.contains(&format!("knowledge/{id}")),
        "{log}"
    );
    let page = admin.get("/audit?peer=omachi&since=2026-01-01").await;
    assert_eq!(page.status, StatusCode::OK);
    let page = admin.get("/audit?since=1%27%20OR%201=1").await;
    assert_eq!(
        page.status,
        StatusCode::OK,
        "odd input is ignored, not an error"
    );

    for user in ["editor", "viewer"] {
        let mut b = node.signed_in(user).await;
        assert_eq!(
            b.get("/audit").await.status,
            StatusCode::FORBIDDEN,
            "{user}"
        );
        assert!(
            !b.get("/").await.body.contains("href=\"/audit\""),
            "{user} sees the link"
        );
    }
}

/// A database damaged on disk while the node was stopped: the node starts,
/// and the dashboard tells the administrator what is wrong and what to do,
/// in Japanese first; a record form's save is refused, not lost silently.
#[tokio::test]
async fn the_dashboard_reports_a_damaged_database() {
    let n = TestNode::builder().one_user_per_role().start().await;
    for i in 0..400 {
        n.create(
            "knowledge",
            yui_tests::records::knowledge(&format!("記録 {i} の本文")),
        )
        .await;
    }
    // Signed in before the damage: a login writes its audit entry, and the
    // audit log may be among the damaged tables.
    let mut b = n.signed_in("admin").await;
    let (dir, data) = n.stop().await;
    assert!(yui_tests::disk::flip_data_pages(&data.db_path()) >= 5);
    let n = TestNode::open(dir, data).await;
    // The check runs in the background from start (seconds on a large
    // database); the page reports what it found.
    assert!(!n.node.store.first_integrity_check().await.is_ok());
    b.base = n.base.clone();
    let page = b.get("/").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(
        page.body.contains("データベースが壊れています"),
        "{}",
        page.body
    );
    assert!(page.body.contains("yui restore"), "{}", page.body);
    let page = b
        .submit(
            "/records/knowledge",
            &[
                ("title", "書けないはず"),
                ("body", "本文"),
                ("category", "training"),
            ],
        )
        .await;
    assert_ne!(
        page.status,
        StatusCode::SEE_OTHER,
        "not saved: {}",
        page.body
    );
    n.stop().await;
}

/// 9999-12-31T23:59:59Z, the latest time a record can hold: shown in JST it
/// is past what the date library represents.
const LAST_SECOND: i64 = 253_402_300_799_000;
/// 0001-01-01T00:00:00Z.
const YEAR_ONE: i64 = -62_135_596_800_000;

#[tokio::test]
async fn every_page_answers_with_records_dated_at_the_ends_of_time() {
    let node = TestNode::builder().one_user_per_role().start().await;
    let store = &node.node.store;
    let valid = |c: yui_protocol::Collection, v: serde_json::Value| {
        yui_protocol::validate::validate_create(c, v.as_object().expect("object")).expect("valid")
    };
    use yui_protocol::Collection;
    let mut ids = Vec::new();
    // Record dates and commit times at both ends, as a peer's broken clock
    // (or a record stored before receivers checked dates) leaves them.
    for (n, at) in [LAST_SECOND, YEAR_ONE].into_iter().enumerate() {
        let k = store
            .create(
                Collection::Knowledge,
                valid(
                    Collection::Knowledge,
                    serde_json::json!({"title": format!("時の果て{n}"), "body": "研修の記録", "category": "training"}),
                ),
                at,
            )
            .await
            .expect("create");
        let k: serde_json::Value = serde_json::from_str(k.get()).expect("json");
        ids.push(format!(
            "/records/knowledge/{}",
            k["id"].as_str().expect("id")
        ));
        let kpi = store
            .create(
                Collection::KpiReports,
                valid(
                    Collection::KpiReports,
                    serde_json::json!({"fiscal_year": 2024 + n as i64, "new_hires": 1, "pilot_projects": 1,
                                       "dx_certified_businesses": 0, "member_municipalities": 1}),
                ),
                at,
            )
            .await
            .expect("create");
        let kpi: serde_json::Value = serde_json::from_str(kpi.get()).expect("json");
        ids.push(format!(
            "/records/kpi_reports/{}",
            kpi["id"].as_str().expect("id")
        ));
        store
            .create(
                Collection::PilotResults,
                valid(
                    Collection::PilotResults,
                    serde_json::json!({"title": format!("実証{n}"), "period_start": "2024-07-01", "status": "completed"}),
                ),
                at,
            )
            .await
            .expect("create");
    }
    let mut b = node.signed_in("admin").await;
    let mut pages: Vec<String> = [
        "/",
        "/records",
        "/records/knowledge",
        "/records/kpi_reports",
        "/records/pilot_results",
        "/search?q=研修",
        "/search?q=時の果て",
        "/kpi",
        "/kpi?fy=2024",
        "/kpi.csv",
        "/kpi/draft",
        "/work/orders",
        "/work/pr",
        "/work/skills",
        "/work/training",
        "/peers",
        "/audit",
        "/feeds",
    ]
    .map(str::to_owned)
    .to_vec();
    for record in &ids {
        pages.extend([
            record.clone(),
            format!("{record}/edit"),
            format!("{record}/delete"),
        ]);
    }
    for lang in ["ja", "en"] {
        for path in &pages {
            let page = b.get(path).await;
            assert_eq!(page.status, StatusCode::OK, "{lang} {path}: {}", page.body);
        }
        b.english().await;
    }
    // The record page shows the far-future time as stored (UTC), the other in JST.
    let page = b.get(&ids[0]).await;
    assert!(
        page.body.contains("9999-12-31T23:59:59.000Z"),
        "{}",
        page.body
    );
    let page = b.get(&ids[2]).await;
    assert!(page.body.contains("0001-01-01 09:00"), "{}", page.body);
    node.stop().await;
}
