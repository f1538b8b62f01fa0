//! The local API over real HTTP on 127.0.0.1, against a real SQLite file:
//! records CRUD, paging, search, history, and every kind of bad input.

use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::{Value, json};
use yui_node::node::Node;
use yui_tests::test_node::TestNode;

/// The requests these tests send, with the node's own token; every
/// answer with a body must be JSON.
trait Requests {
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value);
    async fn get(&self, path: &str) -> (StatusCode, Value);
    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value);
    async fn patch(&self, path: &str, body: Value) -> (StatusCode, Value);
    async fn raw_post(&self, path: &str, body: impl Into<reqwest::Body>) -> (StatusCode, Value);
}

impl Requests for TestNode {
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let (status, text) = self.send_text(&self.token, method, path, body).await;
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {text}"))
        };
        (status, value)
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.send(reqwest::Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }

    async fn patch(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(reqwest::Method::PATCH, path, Some(body)).await
    }

    async fn raw_post(&self, path: &str, body: impl Into<reqwest::Body>) -> (StatusCode, Value) {
        let resp = self
            .client
            .post(self.url(path))
            .bearer_auth(&self.token)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("send");
        let status = resp.status();
        (status, resp.json().await.expect("json error body"))
    }
}

fn knowledge(title: &str, body: &str) -> Value {
    json!({"title": title, "body": body, "category": "training", "tags": ["研修"]})
}

fn error_code(body: &Value) -> &str {
    body["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no error code in {body}"))
}

fn field_codes(body: &Value) -> Vec<(String, String)> {
    body["error"]["fields"]
        .as_array()
        .unwrap_or_else(|| panic!("no field errors in {body}"))
        .iter()
        .map(|f| {
            (
                f["field"].as_str().unwrap_or_default().to_owned(),
                f["code"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn create_read_update_delete() {
    let n = TestNode::start().await;
    let rec = n
        .create_record(
            "knowledge",
            knowledge("ワーカー研修の進め方", "月に一度、研修を行う。"),
        )
        .await;
    let id = rec["id"].as_str().expect("id").to_owned();
    assert_eq!(rec["town"], "tateshina");
    assert_eq!(rec["collection"], "knowledge");
    assert_eq!(rec["deleted"], false);
    assert_eq!(rec["fields"]["title"], "ワーカー研修の進め方");
    assert!(rec["created_at"].as_str().expect("time").ends_with('Z'));

    let path = format!("/api/v1/records/knowledge/{id}");
    let (status, got) = n.get(&path).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got, rec);

    let (status, updated) = n
        .patch(
            &path,
            json!({"fields": {"body": "月に二度、研修を行う。", "tags": null}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["fields"]["body"], "月に二度、研修を行う。");
    assert_eq!(
        updated["fields"]["title"], "ワーカー研修の進め方",
        "untouched fields stay"
    );
    assert!(
        updated["fields"].get("tags").is_none(),
        "null removes an optional field"
    );
    assert_ne!(updated["updated_at"], rec["updated_at"]);

    let (status, history) = n.get(&format!("{path}/history")).await;
    assert_eq!(status, StatusCode::OK);
    let changes = history["changes"].as_array().expect("changes");
    assert_eq!(changes.len(), 2);
    assert_eq!(changes[0]["town"], "tateshina");
    assert_eq!(changes[1]["summary"], "updated: body, tags");
    assert_eq!(changes[1]["hash"].as_str().expect("hash").len(), 64);

    let (status, _) = n.send(reqwest::Method::DELETE, &path, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = n.get(&path).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error_code(&body), "record_not_found");
    // Gone from its path, history and conflicts too; its tombstone is
    // listed with include_deleted.
    for sub in ["/history", "/conflicts", "?include_deleted=true"] {
        let (status, body) = n.get(&format!("{path}{sub}")).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{sub}");
        assert_eq!(error_code(&body), "record_not_found", "{sub}");
    }
    let tombstones = "/api/v1/records/knowledge?include_deleted=true";
    let (status, list) = n.get(tombstones).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["items"][0]["deleted"], true);

    // PATCH of a deleted record is refused (gone, with its own code), and
    // changes nothing.
    let (status, body) = n.patch(&path, json!({"fields": {"title": "復活"}})).await;
    assert_eq!(status, StatusCode::GONE);
    assert_eq!(error_code(&body), "record_deleted");
    let (_, list) = n.get(tombstones).await;
    assert_eq!(list["items"][0]["fields"]["title"], "ワーカー研修の進め方");
    let (status, _) = n.send(reqwest::Method::DELETE, &path, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    n.stop().await;
}

#[tokio::test]
async fn token_is_required_and_checked() {
    let n = TestNode::start().await;
    let resp = n.get_authorized("/api/v1/status", None).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(error_code(&body), "missing_token");

    for wrong in [format!("{}x", n.token), "nope".to_owned(), String::new()] {
        let resp = n
            .client
            .post(n.url("/api/v1/records/knowledge"))
            .header("authorization", format!("Bearer {wrong}"))
            .json(&json!({"fields": knowledge("t", "b")}))
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        let body: Value = resp.json().await.expect("json");
        assert_eq!(error_code(&body), "invalid_token");
    }
    let resp = n
        .client
        .get(n.url("/api/v1/records/knowledge"))
        .basic_auth("admin", Some(&n.token))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);

    // Nothing was written by the refused requests.
    let (_, list) = n.get("/api/v1/records/knowledge").await;
    assert_eq!(list["items"], json!([]));
    // Unknown /api paths reveal nothing without a token.
    let resp = n
        .client
        .get(n.url("/api/v1/nothing-here"))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    // Health needs no token.
    let resp = n.client.get(n.url("/healthz")).send().await.expect("send");
    assert_eq!(resp.status(), StatusCode::OK);
    n.stop().await;
}

#[tokio::test]
async fn one_line_fields_refuse_control_and_direction_characters() {
    let n = TestNode::start().await;
    for (title, shown) in [
        ("ヌル\u{0}", "U+0000"),
        ("\u{1b}[31m赤い題", "U+001B"),
        ("txt.\u{202e}exe", "U+202E"),
    ] {
        let (status, body) = n
            .post(
                "/api/v1/records/knowledge",
                json!({"fields": knowledge(title, "本文")}),
            )
            .await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{title:?}: {body}"
        );
        assert_eq!(
            field_codes(&body),
            [("title".to_owned(), "invalid_character".to_owned())]
        );
        assert!(
            body["error"]["fields"][0]["message"]
                .as_str()
                .expect("message")
                .contains(shown),
            "{body}"
        );
    }
    // An update is held to the same rule.
    let (status, created) = n
        .post(
            "/api/v1/records/knowledge",
            json!({"fields": knowledge("題", "本文")}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let path = format!(
        "/api/v1/records/knowledge/{}",
        created["id"].as_str().expect("id")
    );
    let (status, body) = n
        .patch(&path, json!({"fields": {"title": "a\u{202e}b"}}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(
        field_codes(&body),
        [("title".to_owned(), "invalid_character".to_owned())]
    );
    // Nothing of them was stored.
    let (_, list) = n.get("/api/v1/records/knowledge").await;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1), "{list}");

    // A lone surrogate is no character; the error says what it is.
    for escape in ["\\ud83d", "\\udc00", "\\ud83d\\u0041"] {
        let raw = format!(
            r#"{{"fields": {{"title": "a{escape}b", "body": "x", "category": "training"}}}}"#
        );
        let (status, body) = n.raw_post("/api/v1/records/knowledge", raw).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{escape}");
        assert_eq!(error_code(&body), "malformed_json");
        let message = body["error"]["message"].as_str().expect("message");
        assert!(
            message.contains("lone surrogate") && message.contains("column 24"),
            "{escape}: {message}"
        );
    }
}

#[tokio::test]
async fn http_manners_bearer_scheme_challenge_location_times_and_peer_checks() {
    let n = TestNode::start().await;
    // The scheme is case-insensitive (RFC 9110 §11.1).
    for scheme in ["bearer", "BEARER", "Bearer ", "bEaReR"] {
        let resp = n
            .get_authorized("/api/v1/status", Some(&format!("{scheme} {}", n.token)))
            .await;
        assert_eq!(resp.status(), StatusCode::OK, "{scheme:?}");
    }
    // A 401 says which scheme it wants.
    let resp = n.get_authorized("/api/v1/status", None).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let challenge = resp
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().expect("ascii").to_owned());
    assert_eq!(challenge.as_deref(), Some("Bearer realm=\"yui\""));
    let resp = n
        .get_authorized("/api/v1/status", Some("Bearer nope"))
        .await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let challenge = resp
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().expect("ascii").to_owned());
    assert_eq!(
        challenge.as_deref(),
        Some("Bearer realm=\"yui\", error=\"invalid_token\"")
    );

    // A 201 says where the new record is, and it is there.
    let resp = n
        .client
        .post(n.url("/api/v1/records/knowledge"))
        .bearer_auth(&n.token)
        .json(&json!({"fields": knowledge("場所", "本文")}))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), StatusCode::CREATED);
    let location = resp
        .headers()
        .get("location")
        .map(|v| v.to_str().expect("ascii").to_owned());
    let created: Value = resp.json().await.expect("json");
    let id = created["id"].as_str().expect("id");
    assert_eq!(location, Some(format!("/api/v1/records/knowledge/{id}")));
    let (status, read) = n.get(&location.expect("location")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(read["id"], id);
    // Every time has three fractional digits, so times sort as text.
    let three_digits = |t: &Value| {
        let t = t.as_str().expect("time");
        t.len() == 24 && t.as_bytes()[19] == b'.' && t.ends_with('Z')
    };
    assert!(
        three_digits(&read["created_at"]) && three_digits(&read["updated_at"]),
        "{read}"
    );

    // Peers: port 0 and malformed node ids are refused; a node id may be
    // typed in lower case without dashes, and is stored canonical.
    let (status, body) = n
        .post("/api/v1/peers", json!({"url": "https://127.0.0.1:0"}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(error_code(&body), "invalid_peer_url");
    assert!(
        body["error"]["message"]
            .as_str()
            .expect("message")
            .contains("port 0"),
        "{body}"
    );
    let (_, own) = n.get("/api/v1/status").await;
    let own_id = own["node_id"].as_str().expect("node id").to_owned();
    let truncated = &own_id[..own_id.len() - 5];
    let wrong_tail = format!("{}B", &own_id[..own_id.len() - 1]);
    // `1` is no base32 digit, whatever the id holds.
    let not_base32 = format!("1{}", &own_id[1..]);
    for bad in ["nope", truncated, &wrong_tail, &not_base32] {
        let (status, body) = n
            .post(
                "/api/v1/peers",
                json!({"url": "https://127.0.0.1:9", "node_id": bad}),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert_eq!(error_code(&body), "invalid_node_id", "{bad}");
    }
    let (_, peers) = n.get("/api/v1/peers").await;
    assert_eq!(peers["peers"], json!([]), "a refused peer was stored");
    let typed = own_id.replace('-', "").to_lowercase();
    let resp = n
        .client
        .post(n.url("/api/v1/peers"))
        .bearer_auth(&n.token)
        .json(&json!({"url": "https://127.0.0.1:9/", "node_id": typed}))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), StatusCode::CREATED);
    let location = resp
        .headers()
        .get("location")
        .map(|v| v.to_str().expect("ascii").to_owned());
    assert_eq!(
        location.as_deref(),
        Some("/api/v1/peers/https%3A%2F%2F127.0.0.1%3A9")
    );
    let added: Value = resp.json().await.expect("json");
    assert_eq!(added["peer"]["url"], "https://127.0.0.1:9", "{added}");
    assert_eq!(added["peer"]["node_id"], own_id.as_str(), "{added}");

    // The OpenAPI document says so.
    let (_, doc) = n.get("/api/v1/openapi.json").await;
    let create = &doc["paths"]["/api/v1/records/knowledge"]["post"]["responses"];
    assert!(create["201"]["headers"]["Location"].is_object(), "{create}");
    assert_eq!(create["401"]["$ref"], "#/components/responses/Unauthorized");
    assert!(
        doc["components"]["responses"]["Unauthorized"]["headers"]["WWW-Authenticate"].is_object()
    );
    assert!(
        doc["paths"]["/api/v1/peers"]["post"]["responses"]["201"]["headers"]["Location"]
            .is_object()
    );
    assert!(
        doc["paths"]["/healthz"]["get"]["responses"]
            .get("401")
            .is_none()
    );

    // The peer's key from Location removes it.
    let resp = n
        .client
        .delete(n.url(location.as_deref().expect("location")))
        .bearer_auth(&n.token)
        .send()
        .await
        .expect("send");
    assert!(resp.status().is_success(), "{}", resp.status());
    let (_, peers) = n.get("/api/v1/peers").await;
    assert_eq!(peers["peers"], json!([]));
    n.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_byte_counters_put_the_unit_last_and_keep_their_old_names_one_release() {
    let consortium = yui_tests::town::Consortium::new("テスト");
    let town = consortium.town("omachi");
    yui_node::peer::add_peer(&town.node.federation(), "https://127.0.0.1:9", None, None)
        .await
        .expect("add peer");
    let node = yui_tests::town::Running::start(town.node.clone(), 1);
    let text = reqwest::get(format!("http://{}/metrics", node.api))
        .await
        .expect("send")
        .text()
        .await
        .expect("text");
    for name in [
        "yui_peer_received_bytes_total",
        "yui_peer_sent_bytes_total",
        "yui_peer_bytes_in_total",
        "yui_peer_bytes_out_total",
    ] {
        assert!(
            text.contains(&format!("# TYPE {name} counter")),
            "{name}: {text}"
        );
        assert!(
            text.contains(&format!(
                "{name}{{peer=\"https://127.0.0.1:9\",town=\"\"}} 0"
            )),
            "{name}: {text}"
        );
    }
    assert!(
        text.contains("# HELP yui_peer_bytes_in_total Deprecated"),
        "{text}"
    );
    node.stop();
}

#[tokio::test]
async fn bad_bodies_get_clear_errors() {
    let n = TestNode::start().await;
    let (status, body) = n
        .raw_post("/api/v1/records/knowledge", "{\"fields\": {\"title\": ")
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&body), "malformed_json");

    let (status, body) = n.raw_post("/api/v1/records/knowledge", "").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&body), "malformed_json");

    let (status, body) = n.raw_post("/api/v1/records/knowledge", "[1,2]").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&body), "invalid_body");

    let (status, body) = n
        .post(
            "/api/v1/records/knowledge",
            json!({"feilds": knowledge("t", "b")}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&body), "invalid_body");
    assert!(
        body["error"]["message"]
            .as_str()
            .expect("msg")
            .contains("feilds")
    );

    let (status, body) = n
        .post("/api/v1/records/recipes", json!({"fields": {}}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error_code(&body), "unknown_collection");
    assert!(
        body["error"]["message"]
            .as_str()
            .expect("msg")
            .contains("knowledge")
    );

    // Unknown field, mistyped field, wrong enum: all reported at once.
    let (status, body) = n
        .post(
            "/api/v1/records/knowledge",
            json!({"fields": {"title": 42, "body": "本文", "category": "gossip", "colour": "red"}}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error_code(&body), "validation_failed");
    let mut codes = field_codes(&body);
    codes.sort();
    assert_eq!(
        codes,
        [
            ("category".into(), "invalid_enum".into()),
            ("colour".into(), "unknown_field".into()),
            ("title".into(), "invalid_type".into()),
        ]
    );

    // Oversize field.
    let (status, body) = n
        .post(
            "/api/v1/records/knowledge",
            json!({"fields": knowledge(&"長".repeat(201), "b")}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        field_codes(&body),
        [("title".to_owned(), "too_long".to_owned())]
    );

    // Oversize record (under the body limit, over the record limit).
    let (status, body) = n
        .post(
            "/api/v1/records/knowledge",
            json!({"fields": knowledge("t", &"x".repeat(200_000))}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(field_codes(&body).contains(&("*".to_owned(), "record_too_large".to_owned())));

    // A 12 MB body is refused with 413 before it is buffered.
    let big = format!(
        "{{\"fields\": {{\"title\": \"{}\"}}}}",
        "a".repeat(12 * 1024 * 1024)
    );
    let (status, body) = n.raw_post("/api/v1/records/knowledge", big).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(error_code(&body), "body_too_large");

    // The same without a Content-Length (chunked).
    let (status, body) = chunked_post(&n, "/api/v1/records/knowledge", 12).await;
    assert_eq!(status, 413);
    assert_eq!(error_code(&body), "body_too_large");

    // Unknown record ids and malformed ids.
    for id in [
        "01m7zyx6g1bzpzn2dc2jxvxpdn",
        "..%2Fetc%2Fpasswd",
        "x",
        "01M7ZYX6G1BZPZN2DC2JXVXPDN",
    ] {
        let (status, body) = n.get(&format!("/api/v1/records/knowledge/{id}")).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{id}");
        assert_eq!(error_code(&body), "record_not_found");
        let (status, body) = n
            .patch(
                &format!("/api/v1/records/knowledge/{id}"),
                json!({"fields": {"title": "x"}}),
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{id}");
        assert_eq!(error_code(&body), "record_not_found");
    }

    let (status, body) = n.get("/api/v1/nothing-here").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error_code(&body), "not_found");

    // A malformed query string gets the same JSON error shape.
    for path in [
        "/api/v1/records/knowledge?include_deleted=yes",
        "/api/v1/search?q=a&limit=many",
        "/api/v1/search?q=a&limit=0",
        "/api/v1/search?q=a&collection=recipes",
        "/api/v1/records/workers?status=actve",
        "/api/v1/records/workers?joined_on=2026-02-30",
        "/api/v1/records/workers?mentor=nobody",
    ] {
        let (status, body) = n.get(path).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}");
        assert_eq!(error_code(&body), "invalid_query", "{path}");
    }

    // After all of that, nothing was stored and the node still serves.
    let (_, list) = n.get("/api/v1/records/knowledge").await;
    assert_eq!(list["items"], json!([]));

    // A form or text is refused for what it is, before it is read; JSON
    // with a charset, and a body without a Content-Type, are read as JSON.
    let valid = json!({"fields": knowledge("種類", "本文")}).to_string();
    for (content_type, expected) in [
        (
            Some("application/x-www-form-urlencoded"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (Some("text/plain"), StatusCode::UNSUPPORTED_MEDIA_TYPE),
        (Some("application/json; charset=utf-8"), StatusCode::CREATED),
        (None, StatusCode::CREATED),
    ] {
        let mut request = n
            .client
            .post(n.url("/api/v1/records/knowledge"))
            .bearer_auth(&n.token)
            .body(valid.clone());
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let resp = request.send().await.expect("send");
        assert_eq!(resp.status(), expected, "{content_type:?}");
        if expected == StatusCode::UNSUPPORTED_MEDIA_TYPE {
            let body: Value = resp.json().await.expect("json error body");
            assert_eq!(error_code(&body), "unsupported_media_type");
            assert!(
                body["error"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("application/json")),
                "{body}"
            );
        }
    }
    n.create_record("knowledge", knowledge("まだ動く", "本文"))
        .await;
    n.stop().await;
}

/// Sends `mb` megabytes as a chunked body (no Content-Length) over a raw
/// socket and returns the status line and body of the answer.
async fn chunked_post(n: &TestNode, path: &str, mb: usize) -> (u16, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = n.base.trim_start_matches("http://");
    let mut sock = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        n.token
    );
    sock.write_all(head.as_bytes()).await.expect("head");
    let chunk = vec![b'a'; 1024 * 1024];
    for _ in 0..mb {
        let frame = format!("{:x}\r\n", chunk.len());
        // The server may stop reading once the limit is passed.
        if sock.write_all(frame.as_bytes()).await.is_err()
            || sock.write_all(&chunk).await.is_err()
            || sock.write_all(b"\r\n").await.is_err()
        {
            break;
        }
    }
    let _ = sock.write_all(b"0\r\n\r\n").await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        sock.read_to_end(&mut answer),
    )
    .await;
    let text = String::from_utf8_lossy(&answer);
    let status: u16 = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
    // The body may itself be chunked: take the JSON object inside.
    let json = body
        .find('{')
        .and_then(|i| body.rfind('}').map(|j| &body[i..=j]))
        .unwrap_or("null");
    (status, serde_json::from_str(json).unwrap_or(Value::Null))
}

#[tokio::test]
async fn references_must_point_at_live_records_of_the_right_collection() {
    let n = TestNode::start().await;
    let worker = n
        .create_record("workers", json!({"name": "山田 花子", "status": "active"}))
        .await;
    let wid = worker["id"].as_str().expect("id");
    let customer = n
        .create_record(
            "customers",
            json!({"organisation": "株式会社テスト", "stage": "active"}),
        )
        .await;
    let cid = customer["id"].as_str().expect("id");

    let order = n
        .create_record(
            "orders",
            json!({"title": "データ入力", "status": "ordered", "customer": cid, "assignees": [wid], "estimated_hours": 12.5}),
        )
        .await;
    assert_eq!(order["fields"]["assignees"], json!([wid]));

    // A worker id where a customer id belongs.
    let (status, body) = n
        .post(
            "/api/v1/records/orders",
            json!({"fields": {"title": "x", "status": "inquiry", "customer": wid}}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        field_codes(&body),
        [("customer".to_owned(), "invalid_reference".to_owned())]
    );

    // A well-formed id of no record.
    let (status, body) = n
        .post(
            "/api/v1/records/mentoring",
            json!({"fields": {"mentor": wid, "mentee": "01m7zyx6g1bzpzn2dc2jxvxpdn"}}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        field_codes(&body),
        [("mentee".to_owned(), "invalid_reference".to_owned())]
    );
    n.stop().await;
}

#[tokio::test]
async fn one_kpi_report_per_town_and_year() {
    let n = TestNode::start().await;
    n.create_record("kpi_reports", json!({"fiscal_year": 2024, "new_hires": 4}))
        .await;
    let (status, body) = n
        .post(
            "/api/v1/records/kpi_reports",
            json!({"fields": {"fiscal_year": 2024, "new_hires": 5}}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(error_code(&body), "conflict");
    n.create_record("kpi_reports", json!({"fiscal_year": 2025}))
        .await;
    n.stop().await;
}

#[tokio::test]
async fn paging_and_filters() {
    let n = TestNode::start().await;
    let mut ids = Vec::new();
    for i in 0..7 {
        let status = if i % 2 == 0 { "active" } else { "paused" };
        let w = n
            .create_record(
                "workers",
                json!({"name": format!("ワーカー{i}"), "status": status}),
            )
            .await;
        ids.push(w["id"].as_str().expect("id").to_owned());
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/records/workers?limit=3&cursor={c}"),
            None => "/api/v1/records/workers?limit=3".to_owned(),
        };
        let (status, page) = n.get(&path).await;
        assert_eq!(status, StatusCode::OK);
        let items = page["items"].as_array().expect("items");
        assert!(items.len() <= 3);
        seen.extend(
            items
                .iter()
                .map(|r| r["id"].as_str().expect("id").to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    ids.reverse();
    assert_eq!(seen, ids, "newest first, every record once");

    let (_, active) = n.get("/api/v1/records/workers?status=active").await;
    assert_eq!(active["items"].as_array().expect("items").len(), 4);
    let (status, body) = n.get("/api/v1/records/workers?colour=red").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&body), "invalid_query");
    let (status, _) = n.get("/api/v1/records/workers?limit=0").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    n.stop().await;
}

#[tokio::test]
async fn a_search_index_made_with_unicode61_is_rebuilt_once_and_folds_diacritics() {
    let n = TestNode::start().await;
    let cafe = n
        .create_record(
            "knowledge",
            knowledge("Café Müller の研修", "naïve な質問にも答える。"),
        )
        .await;
    let gone = n
        .create_record("knowledge", knowledge("削除する研修", "消える記録。"))
        .await;
    let (status, _) = n
        .send(
            reqwest::Method::DELETE,
            &format!(
                "/api/v1/records/knowledge/{}",
                gone["id"].as_str().expect("id")
            ),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (dir, data) = n.stop().await;
    // As a database made before 2026-11-22 has it: the unicode61 table
    // (left empty here, so only a rebuild can find anything).
    let db = rusqlite::Connection::open(data.db_path()).expect("open");
    db.execute_batch(
        "DROP TABLE search;
         CREATE VIRTUAL TABLE search USING fts5 (terms, content = '', contentless_delete = 1);",
    )
    .expect("old table");
    drop(db);

    let n = TestNode::open(dir, data).await;
    let declared: String = rusqlite::Connection::open(n.data_dir().db_path())
        .expect("open")
        .query_row(
            "SELECT sql FROM sqlite_master WHERE name = 'search'",
            [],
            |r| r.get(0),
        )
        .expect("sql");
    assert!(declared.contains("tokenize = 'ascii'"), "{declared}");
    for q in ["cafe", "CAFÉ", "muller", "naive", "研修"] {
        let (status, body) = n.get(&format!("/api/v1/search?q={}", urlencode(q))).await;
        assert_eq!(status, StatusCode::OK);
        let ids: Vec<&str> = body["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|r| r["id"].as_str().expect("id"))
            .collect();
        assert_eq!(ids, [cafe["id"].as_str().expect("id")], "{q}");
    }
    n.stop().await;
}

/// Long texts are Markdown: search reads their words, not their markup
/// (issue 16), so a phrase split by emphasis is still found, and a link's
/// target is not a word of the text.
#[tokio::test]
async fn search_reads_markdown_as_its_plain_text() {
    let n = TestNode::start().await;
    n.create_record(
        "knowledge",
        knowledge(
            "手順",
            "研修は**模擬業務**から。[手引き](https://example.jp/zzzguide)",
        ),
    )
    .await;
    let (status, found) = n.get("/api/v1/search?q=研修は模擬業務").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(found["items"].as_array().map(Vec::len), Some(1), "{found}");
    let (_, found) = n.get("/api/v1/search?q=zzzguide").await;
    assert_eq!(found["items"], json!([]), "{found}");
    n.stop().await;
}

#[tokio::test]
async fn japanese_search_finds_two_character_words_and_mixed_text() {
    let n = TestNode::start().await;
    let a = n
        .create_record(
            "knowledge",
            knowledge("ワーカー研修の記録", "住民ワーカー向けの研修を実施した。"),
        )
        .await;
    let b = n
        .create_record(
            "knowledge",
            json!({"title": "広報計画", "body": "ＤＸ推進の広報を住民に届ける。Telework day を告知。", "category": "pr"}),
        )
        .await;
    let c = n
        .create_record(
            "pr_items",
            json!({"title": "下水道だより", "audience": "residents", "status": "idea"}),
        )
        .await;
    let search = |q: &'static str| {
        let n = &n;
        async move {
            let url = format!("/api/v1/search?q={}", urlencode(q));
            let (status, body) = n.get(&url).await;
            assert_eq!(status, StatusCode::OK, "{q}: {body}");
            let mut ids: Vec<String> = body["items"]
                .as_array()
                .expect("items")
                .iter()
                .map(|r| r["id"].as_str().expect("id").to_owned())
                .collect();
            ids.sort();
            ids
        }
    };
    let id = |r: &Value| r["id"].as_str().expect("id").to_owned();
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    assert_eq!(search("研修").await, [id(&a)]);
    assert_eq!(search("広報").await, [id(&b)]);
    assert_eq!(search("住民").await, sorted(vec![id(&a), id(&b)]));
    assert_eq!(search("ワーカー").await, [id(&a)]);
    assert_eq!(search("水道").await, [id(&c)], "a word inside a compound");
    assert_eq!(search("dx").await, [id(&b)], "full-width ＤＸ normalised");
    assert_eq!(search("ＤＸ推進").await, [id(&b)]);
    assert_eq!(search("telework").await, [id(&b)]);
    assert_eq!(
        search("tele").await,
        [id(&b)],
        "Latin words match by prefix"
    );
    assert_eq!(search("ｶﾞｲﾄﾞ").await, Vec::<String>::new());
    assert_eq!(search("研修 記録").await, [id(&a)]);
    assert_eq!(search("研").await, [id(&a)], "a single character");
    assert!(search("会議").await.is_empty());

    // Collection filter, and deleted records leave the index.
    let (_, body) = n
        .get(&format!(
            "/api/v1/search?q={}&collection=pr_items",
            urlencode("住民")
        ))
        .await;
    assert_eq!(body["items"], json!([]));
    let (status, _) = n
        .send(
            reqwest::Method::DELETE,
            &format!("/api/v1/records/knowledge/{}", id(&a)),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(search("研修").await.is_empty());
    // An edit re-indexes.
    n.patch(
        &format!("/api/v1/records/knowledge/{}", id(&b)),
        json!({"fields": {"body": "研修の案内"}}),
    )
    .await;
    assert_eq!(search("研修").await, [id(&b)]);
    assert!(search("推進").await.is_empty());

    let (status, body) = n.get("/api/v1/search").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&body), "invalid_query");
    n.stop().await;
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[tokio::test]
async fn concurrent_writes_to_one_record_all_land() {
    let n = Arc::new(TestNode::start().await);
    let rec = n
        .create_record("knowledge", knowledge("共同編集", "一行目\n"))
        .await;
    let id = rec["id"].as_str().expect("id").to_owned();
    // 16 writers each set their own tag list and title; 16 more create records.
    let mut tasks = Vec::new();
    for i in 0..16 {
        let node = n.clone();
        let id = id.clone();
        tasks.push(tokio::spawn(async move {
            let n = node;
            let (s, body) = n
                .patch(
                    &format!("/api/v1/records/knowledge/{id}"),
                    json!({"fields": {"title": format!("版{i}")}}),
                )
                .await;
            assert_eq!(s, StatusCode::OK, "{body}");
        }));
        let n = n.clone();
        tasks.push(tokio::spawn(async move {
            n.create_record("knowledge", knowledge(&format!("並行{i}"), "本文"))
                .await;
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    let (_, history) = n
        .get(&format!("/api/v1/records/knowledge/{id}/history"))
        .await;
    assert_eq!(history["changes"].as_array().expect("changes").len(), 17);
    let (_, list) = n.get("/api/v1/records/knowledge?limit=100").await;
    assert_eq!(list["items"].as_array().expect("items").len(), 17);
    let n = Arc::into_inner(n).expect("sole owner");
    n.stop().await;
}

#[tokio::test]
async fn many_edits_compact_and_survive_a_restart() {
    let n = TestNode::start().await;
    let rec = n.create_record("knowledge", knowledge("改訂", "0")).await;
    let path = format!(
        "/api/v1/records/knowledge/{}",
        rec["id"].as_str().expect("id")
    );
    // More edits than the compaction threshold, so the document is saved
    // whole at least once and left with some chunks after.
    for i in 1..=40 {
        let (s, _) = n
            .patch(&path, json!({"fields": {"body": format!("{i}")}}))
            .await;
        assert_eq!(s, StatusCode::OK);
    }
    let (dir, data) = n.stop().await;
    let n = TestNode::open(dir, data).await;
    let (status, got) = n.get(&path).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got["fields"]["body"], "40");
    let (_, history) = n.get(&format!("{path}/history")).await;
    assert_eq!(history["changes"].as_array().expect("changes").len(), 41);
    n.stop().await;
}

#[tokio::test]
async fn status_metrics_and_openapi() {
    let n = TestNode::start().await;
    n.create_record("knowledge", knowledge("a", "b")).await;
    n.create_record("workers", json!({"name": "佐藤", "status": "registered"}))
        .await;
    let (status, s) = n.get("/api/v1/status").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(s["town"], "tateshina");
    assert_eq!(s["node_id"].as_str().expect("node id").len(), 64);
    assert_eq!(
        s["collections"]["knowledge"],
        json!({"scope": "shared", "count": 1})
    );
    assert_eq!(
        s["collections"]["workers"],
        json!({"scope": "local", "count": 1})
    );
    assert_eq!(s["collections"].as_object().expect("collections").len(), 10);
    assert_eq!(s["peers"], json!([]));

    let text = n
        .client
        .get(n.url("/metrics"))
        .send()
        .await
        .expect("send")
        .text()
        .await
        .expect("text");
    assert!(
        text.contains("yui_records{collection=\"knowledge\",scope=\"shared\"} 1"),
        "{text}"
    );
    assert!(text.contains("yui_http_requests_total{method=\"POST\",route=\"/api/v1/records/{collection}\",status=\"201\"} 2"), "{text}");

    let (status, doc) = n.get("/api/v1/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["paths"]["/api/v1/records/knowledge/{id}"]["patch"].is_object());
    assert_eq!(
        doc["components"]["schemas"]["knowledge_fields"]["required"],
        json!(["title", "body", "category"])
    );
    n.stop().await;
}

#[tokio::test]
async fn the_change_feed_yields_shared_records_only() {
    let n = TestNode::start().await;
    let shared = n
        .create_record("knowledge", knowledge("共有", "本文"))
        .await;
    let local = n
        .create_record("workers", json!({"name": "山田 花子", "status": "active"}))
        .await;
    n.create_record(
        "customers",
        json!({"organisation": "A社", "stage": "prospect"}),
    )
    .await;
    // An edit of a local record moves it to the head of the feed; it must
    // still not appear.
    n.patch(
        &format!(
            "/api/v1/records/workers/{}",
            local["id"].as_str().expect("id")
        ),
        json!({"fields": {"status": "paused"}}),
    )
    .await;
    let (dir, data) = n.stop().await;
    let node = Node::open(data, false).expect("open");
    let feed = node.store.shared_feed(0, 1000).await.expect("feed");
    let ids: Vec<_> = feed.iter().map(|e| e.id.to_string()).collect();
    assert_eq!(ids, [shared["id"].as_str().expect("id")]);
    assert!(feed.iter().all(|e| e.collection.get().is_shared()));
    // A cursor past the last entry yields nothing: an idle round is empty.
    assert!(
        node.store
            .shared_feed(feed[0].seq, 1000)
            .await
            .expect("feed")
            .is_empty()
    );
    node.store.close();
    drop(dir);
}
