//! What a hostile web page or a curious caller meets on the API port, over
//! real HTTP on 127.0.0.1: a `Host` naming another site is refused with 421
//! (DNS rebinding), roles hold on every route that writes, and an
//! unauthenticated answer gives away no local path.

use reqwest::StatusCode;
use serde_json::Value;
use yui_tests::test_node::TestNode;

/// A GET naming `host` in `Host`, over a connection to the node's own port.
async fn get_with_host(n: &TestNode, path: &str, host: &str) -> (StatusCode, String) {
    let resp = n
        .client
        .get(n.url(path))
        .header(reqwest::header::HOST, host)
        .send()
        .await
        .expect("send");
    let status = resp.status();
    (status, resp.text().await.expect("body"))
}

#[tokio::test]
async fn a_foreign_host_is_refused_with_421_on_the_api_and_the_console() {
    let n = TestNode::start().await;
    let port = n.base.rsplit(':').next().expect("port").to_owned();
    for path in ["/healthz", "/metrics", "/login", "/", "/api/v1/status"] {
        for host in ["attacker.example", &format!("attacker.example:{port}")] {
            let (status, body) = get_with_host(&n, path, host).await;
            assert_eq!(
                status,
                StatusCode::MISDIRECTED_REQUEST,
                "{path} {host}: {body}"
            );
            let body: Value = serde_json::from_str(&body).expect("json");
            assert_eq!(body["error"]["code"], "wrong_host", "{body}");
            assert!(
                !body.to_string().contains("yui_"),
                "no metrics leak: {body}"
            );
        }
    }
    // The login form cannot be driven either.
    let resp = n
        .client
        .post(n.url("/login"))
        .header(reqwest::header::HOST, "attacker.example")
        .form(&[("user", "admin"), ("password", "x")])
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), StatusCode::MISDIRECTED_REQUEST);
    // The names a local user types are served.
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("[::1]:{port}"),
        "localhost".to_owned(),
    ] {
        let (status, body) = get_with_host(&n, "/healthz", &host).await;
        assert_eq!(status, StatusCode::OK, "{host}: {body}");
    }
    n.stop().await;
}

#[tokio::test]
async fn a_401_answer_names_no_local_path() {
    let n = TestNode::start().await;
    let data = n.data_dir().path.display().to_string();
    let resp = n.get_authorized("/api/v1/status", None).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let body = resp.text().await.expect("body");
    assert!(!body.contains(&data) && !body.contains('/'), "{body}");
    let body: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(body["error"]["code"], "missing_token");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("Authorization: Bearer")),
        "{body}"
    );
    n.stop().await;
}
