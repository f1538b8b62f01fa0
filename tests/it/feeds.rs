//! Following other towns (issue 16): two real `yui serve` processes that
//! sync over mutual TLS. An article written in Tateshina reaches Omachi's
//! Atom feed of knowledge and Omachi's dashboard list "new from other
//! towns since your last visit", by Tateshina's name; Omachi's own article
//! is in neither, and a change made in Tateshina arrives as a new entry
//! (an id per version) in place of the old. The feed validates against RFC 4287's RELAX NG schema
//! (`tests/atom/rfc4287.rng`, checked by libxml2's `xmllint`, which
//! `scripts/test` installs), needs the user's feed token, which opens
//! nothing else (not the API, not the console), and stops working when the
//! token is rotated or revoked and when its user is removed.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use reqwest::StatusCode;
use yui_tests::browser::{Browser, Page};
use yui_tests::{Ca, Server, wait_for, yui_ok, yui_with_stdin};

const STAFF: (&str, &str) = ("shokuin", "omachi-staff-2026");
const OTHER: (&str, &str) = ("hoka", "omachi-other-2026");

fn add_user(data: &Path, (name, password): (&str, &str), role: &str) {
    let out = yui_with_stdin(
        data,
        &["user", "add", name, "--role", role],
        &format!("{password}\n"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The feed URLs on a feeds page that just made a token.
fn feed_urls(page: &Page) -> Vec<String> {
    let marker = r#"class="feed-url mono" readonly value=""#;
    page.body
        .match_indices(marker)
        .map(|(i, _)| {
            page.body[i + marker.len()..]
                .split('"')
                .next()
                .unwrap_or("")
                .to_owned()
        })
        .collect()
}

fn knowledge_url(urls: &[String]) -> String {
    urls.iter()
        .find(|u| u.contains("/feeds/knowledge.atom?token="))
        .unwrap_or_else(|| panic!("no knowledge feed among {urls:?}"))
        .clone()
}

/// Checks `xml` against RFC 4287's RELAX NG schema with xmllint.
pub fn assert_valid_atom(xml: &str) {
    let schema = Path::new(env!("CARGO_MANIFEST_DIR")).join("atom/rfc4287.rng");
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), xml).expect("write the feed");
    let out = Command::new("xmllint")
        .args(["--noout", "--relaxng"])
        .arg(&schema)
        .arg(file.path())
        .output()
        .unwrap_or_else(|e| {
            panic!("the feed tests need xmllint (Debian's libxml2-utils; scripts/test installs it): {e}")
        });
    assert!(
        out.status.success(),
        "the feed is not valid Atom:\n{}\n{xml}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The schema's Schematron rules, which RELAX NG does not check: every
    // entry has an author, and an alternate link (the feed has one too).
    let entries = xml.matches("<entry>").count();
    assert_eq!(xml.matches("<author><name>").count(), entries, "{xml}");
    assert_eq!(
        xml.matches("rel=\"alternate\"").count(),
        entries + 1,
        "{xml}"
    );
}

#[test]
fn another_towns_article_reaches_the_feed_and_the_dashboard_and_the_token_opens_only_the_feed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::init(&dir.path().join("ca"), "信州テレワーク・コンソーシアム");
    let a_dir = dir.path().join("tateshina");
    yui_ok(&a_dir, &["init", "--town", "tateshina", "--name", "立科町"]);
    ca.admit(&a_dir);
    let b_dir = dir.path().join("omachi");
    yui_ok(&b_dir, &["init", "--town", "omachi", "--name", "大町市"]);
    ca.admit(&b_dir);
    add_user(&b_dir, STAFF, "viewer");
    add_user(&b_dir, OTHER, "viewer");
    let a = Server::start_peer(&a_dir, "127.0.0.1:0");
    let b = Server::start_peer(&b_dir, "127.0.0.1:0");
    a.add_peer(b.peer_url());

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let fetch = |url: String| {
        let plain = plain.clone();
        async move {
            let resp = plain.get(url).send().await.expect("send");
            let status = resp.status();
            let kind = resp
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            (status, kind, resp.text().await.expect("body"))
        }
    };

    let mut staff = Browser::of_console(b.base.clone());
    // Logging in shows the dashboard once: this is the "last visit".
    let login = rt.block_on(staff.login(STAFF.0, STAFF.1, "/"));
    assert_eq!(login.status, StatusCode::SEE_OTHER, "{}", login.body);
    let feeds = rt.block_on(staff.get("/feeds"));
    assert_eq!(feeds.status, StatusCode::OK, "{}", feeds.body);
    assert!(feed_urls(&feeds).is_empty(), "{}", feeds.body);
    let made = rt.block_on(staff.submit("/feeds", &[("action", "create")]));
    assert_eq!(made.status, StatusCode::OK, "{}", made.body);
    let urls = feed_urls(&made);
    assert_eq!(urls.len(), 4, "one feed per shared collection: {urls:?}");
    let url = knowledge_url(&urls);
    let token = url.rsplit("token=").next().expect("token").to_owned();
    // Reloading the page does not show the token again: only its hash is kept.
    let again = rt.block_on(staff.get("/feeds"));
    assert!(!again.body.contains(&token), "{}", again.body);

    // Before anything arrives the feed is valid and empty.
    let (status, kind, xml) = rt.block_on(fetch(url.clone()));
    assert_eq!(status, StatusCode::OK, "{xml}");
    assert_eq!(kind, "application/atom+xml; charset=utf-8");
    assert_valid_atom(&xml);
    assert!(!xml.contains("<entry>"), "{xml}");

    // Tateshina writes an article whose title is hostile markup; Omachi
    // writes one of its own.
    let title = "<script>alert(\"x\")</script> 研修 & 振り返り ]]>";
    let article = a.create(
        "knowledge",
        serde_json::json!({"title": title,
            "body": "# 手順\n\n**模擬業務**のあと、[手引き](https://example.jp/guide)で振り返る。",
            "category": "training"}),
    );
    let id = article["id"].as_str().expect("id").to_owned();
    let own = b.create(
        "knowledge",
        serde_json::json!({"title": "大町の自前の記事", "body": "本文", "category": "training"}),
    );
    let own_id = own["id"].as_str().expect("id").to_owned();
    assert!(
        wait_for(Duration::from_secs(30), || b
            .record("knowledge", &id)
            .is_some()),
        "the article did not reach Omachi"
    );

    let (status, _, xml) = rt.block_on(fetch(url.clone()));
    assert_eq!(status, StatusCode::OK, "{xml}");
    assert_valid_atom(&xml);
    assert_eq!(xml.matches("<entry>").count(), 1, "{xml}");
    assert!(
        xml.contains("<title type=\"text\">&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; 研修 &amp; 振り返り ]]&gt;</title>"),
        "{xml}"
    );
    assert!(!xml.contains("<script"), "{xml}");
    assert!(
        xml.contains("<author><name>立科町</name></author>"),
        "{xml}"
    );
    assert!(
        xml.contains("<summary type=\"text\">手順 模擬業務のあと、手引きで振り返る。</summary>"),
        "{xml}"
    );
    assert!(
        xml.contains(&format!(
            "<link rel=\"alternate\" type=\"text/html\" href=\"{}/records/knowledge/{id}\"/>",
            b.base
        )),
        "{xml}"
    );
    assert!(
        !xml.contains(&own_id) && !xml.contains("大町の自前の記事"),
        "{xml}"
    );
    // The other shared feeds are valid too; local collections have none.
    for other in urls.iter().filter(|u| **u != url) {
        let (status, _, xml) = rt.block_on(fetch(other.clone()));
        assert_eq!(status, StatusCode::OK, "{other}: {xml}");
        assert_valid_atom(&xml);
    }
    let workers = url.replace("/knowledge.atom", "/workers.atom");
    assert_eq!(rt.block_on(fetch(workers)).0, StatusCode::NOT_FOUND);

    // A change made in Tateshina arrives as a new entry (a new id per
    // version) in place of the old one.
    let first_id = entry_id(&xml);
    let (status, body) = a
        .patch(
            &format!("/api/v1/records/knowledge/{id}"),
            &serde_json::json!({"fields": {"body": "# 手順\n\n改訂しました。"}}),
        )
        .expect("patch");
    assert_eq!(status, 200, "{body}");
    let mut changed = String::new();
    assert!(
        wait_for(Duration::from_secs(30), || {
            changed = rt.block_on(fetch(url.clone())).2;
            changed.contains("改訂しました")
        }),
        "the change did not reach Omachi's feed"
    );
    assert_valid_atom(&changed);
    assert_eq!(changed.matches("<entry>").count(), 1, "{changed}");
    assert_ne!(entry_id(&changed), first_id, "{changed}");

    // The dashboard lists the article by its town's name, once.
    let home = rt.block_on(staff.get("/"));
    assert_eq!(home.status, StatusCode::OK);
    let list = section(&home.body, "news-list");
    assert!(list.contains("<td>立科町</td>"), "{}", home.body);
    assert!(list.contains(&format!("/records/knowledge/{id}")), "{list}");
    assert!(
        list.contains("&#60;script&#62;") && !list.contains("<script"),
        "{list}"
    );
    assert!(!list.contains(&own_id), "{list}");
    let home = rt.block_on(staff.get("/"));
    assert!(!home.body.contains("news-list"), "{}", home.body);
    assert!(home.body.contains(r#"id="no-news""#), "{}", home.body);

    // The token opens the feeds and nothing else.
    let bad = url.replace(&token, &"0".repeat(64));
    for refused in [
        bad,
        url.replace(&format!("?token={token}"), ""),
        url.replace(&token, "short"),
    ] {
        let (status, _, body) = rt.block_on(fetch(refused.clone()));
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{refused}");
        assert!(
            !body.contains("entry") && !body.contains("立科町"),
            "{body}"
        );
    }
    let api = rt
        .block_on(
            plain
                .get(format!("{}/api/v1/records/knowledge", b.base))
                .bearer_auth(&token)
                .send(),
        )
        .expect("send");
    assert_eq!(api.status(), StatusCode::UNAUTHORIZED);
    for page in ["/", "/records/knowledge", "/feeds"] {
        let resp = rt
            .block_on(
                plain
                    .get(format!("{}{page}?token={token}", b.base))
                    .bearer_auth(&token)
                    .send(),
            )
            .expect("send");
        assert_eq!(resp.status(), StatusCode::SEE_OTHER, "{page}");
        assert!(
            resp.headers()["location"]
                .to_str()
                .expect("location")
                .starts_with("/login"),
            "{page}"
        );
    }

    // A new token stops the old URL; revoking stops the new one.
    let rotated = rt.block_on(staff.submit("/feeds", &[("action", "create")]));
    let new_url = knowledge_url(&feed_urls(&rotated));
    assert_ne!(new_url, url);
    assert_eq!(rt.block_on(fetch(url.clone())).0, StatusCode::UNAUTHORIZED);
    assert_eq!(rt.block_on(fetch(new_url.clone())).0, StatusCode::OK);
    let revoked = rt.block_on(staff.submit("/feeds", &[("action", "revoke")]));
    assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.body);
    assert_eq!(rt.block_on(fetch(new_url)).0, StatusCode::UNAUTHORIZED);

    // A removed user's token stops working.
    let mut other = Browser::of_console(b.base.clone());
    rt.block_on(other.login(OTHER.0, OTHER.1, "/"));
    let made = rt.block_on(other.submit("/feeds", &[("action", "create")]));
    let other_url = knowledge_url(&feed_urls(&made));
    assert_eq!(rt.block_on(fetch(other_url.clone())).0, StatusCode::OK);
    yui_ok(&b_dir, &["user", "remove", OTHER.0]);
    assert_eq!(rt.block_on(fetch(other_url)).0, StatusCode::UNAUTHORIZED);
    for server in [a, b] {
        assert_eq!(server.stop().code(), Some(0));
    }
}

/// The HTML of the element with `id`, up to the end of its table.
fn section<'a>(body: &'a str, id: &str) -> &'a str {
    let start = body
        .find(&format!(r#"id="{id}""#))
        .unwrap_or_else(|| panic!("no {id} in {body}"));
    let rest = &body[start..];
    &rest[..rest.find("</table>").unwrap_or(rest.len())]
}

/// The id of a feed's first entry.
fn entry_id(xml: &str) -> String {
    let entry = &xml[xml.find("<entry>").expect("an entry")..];
    let start = entry.find("<id>").expect("an id") + "<id>".len();
    entry[start..entry.find("</id>").expect("an id's end")].to_owned()
}
