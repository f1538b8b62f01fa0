//! The in-process node that the API and console tests run against, and the
//! cookie-keeping `Browser` that the console tests drive it with.
//!
//! `TestNode` is a real node on a real SQLite file in a temporary data
//! directory (town `tateshina`, as `yui init` makes it), serving HTTP on a
//! `127.0.0.1:0` listener; `TestNode::builder` adds console users and API
//! tokens before it starts listening. Each test file adds the requests it
//! needs in its own `impl TestNode` block; what more than one file needs is
//! here.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::Arc;

use reqwest::StatusCode;
use reqwest::header::{COOKIE, HeaderMap, LOCATION, SET_COOKIE};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use yui_node::accounts::Role;
use yui_node::daemon::run;
use yui_node::datadir::{DataDir, InitOptions};
use yui_node::node::Node;

/// A fresh data directory for town `tateshina`, as `yui init` leaves it.
pub fn init_data_dir() -> (tempfile::TempDir, DataDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = DataDir::new(dir.path().join("data"));
    data.init(&InitOptions {
        town: "tateshina".into(),
        name: "立科町".into(),
        api_listen: "127.0.0.1:0".parse().expect("addr"),
        peer_listen: "127.0.0.1:0".parse().expect("addr"),
    })
    .expect("init");
    (dir, data)
}

/// The password `TestNodeBuilder::user` gives a user.
pub fn password_of(user: &str) -> String {
    format!("password-{user}")
}

/// The users and API tokens a `TestNode` starts with.
#[derive(Default)]
pub struct TestNodeBuilder {
    users: Vec<(String, Role)>,
    api_tokens: Vec<String>,
}

impl TestNodeBuilder {
    /// A user with `role` and the password `password_of(name)`, as `yui user
    /// add` makes them.
    pub fn user(mut self, name: &str, role: Role) -> Self {
        self.users.push((name.to_owned(), role));
        self
    }

    /// Users `admin`, `editor` and `viewer`, one per role.
    pub fn one_user_per_role(self) -> Self {
        self.user("admin", Role::Admin)
            .user("editor", Role::Editor)
            .user("viewer", Role::Viewer)
    }

    /// An API token of `user` (added with `user`) with the user's role; read
    /// it with `TestNode::api_token`.
    pub fn api_token(mut self, user: &str) -> Self {
        self.api_tokens.push(user.to_owned());
        self
    }

    pub async fn start(self) -> TestNode {
        let (dir, data) = init_data_dir();
        let node = Arc::new(Node::open(data.clone(), true).expect("open"));
        for (user, role) in &self.users {
            node.accounts
                .add_user(user, *role, &password_of(user))
                .await
                .expect("add user");
        }
        let mut api_tokens = HashMap::new();
        for user in self.api_tokens {
            let (_, role) = self
                .users
                .iter()
                .find(|(name, _)| *name == user)
                .unwrap_or_else(|| panic!("an API token for {user}, who is not added"));
            let token = node
                .accounts
                .create_token(&user, *role, "tests")
                .await
                .expect("token");
            api_tokens.insert(user, token);
        }
        TestNode::serve(dir, data, node, api_tokens).await
    }
}

/// A node serving its API and console on 127.0.0.1 until `stop`.
pub struct TestNode {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The node's own API token, the one `yui init` writes.
    pub token: String,
    pub node: Arc<Node>,
    pub client: reqwest::Client,
    pub shutdown: CancellationToken,
    api_tokens: HashMap<String, String>,
    server: tokio::task::JoinHandle<yui_node::Result<()>>,
    data: DataDir,
    dir: tempfile::TempDir,
}

impl TestNode {
    pub fn builder() -> TestNodeBuilder {
        TestNodeBuilder::default()
    }

    /// A node without users.
    pub async fn start() -> TestNode {
        TestNode::builder().start().await
    }

    /// A node on a data directory that a stopped one left.
    pub async fn open(dir: tempfile::TempDir, data: DataDir) -> TestNode {
        let node = Arc::new(Node::open(data.clone(), true).expect("open"));
        TestNode::serve(dir, data, node, HashMap::new()).await
    }

    async fn serve(
        dir: tempfile::TempDir,
        data: DataDir,
        node: Arc<Node>,
        api_tokens: HashMap<String, String>,
    ) -> TestNode {
        let token = data.read_token().expect("token");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(run(node.clone(), listener, shutdown.clone()));
        TestNode {
            base,
            token,
            node,
            client: reqwest::Client::new(),
            shutdown,
            api_tokens,
            server,
            data,
            dir,
        }
    }

    /// Stops the server and waits for it; returns the data directory, so
    /// that a test can open it again.
    pub async fn stop(self) -> (tempfile::TempDir, DataDir) {
        self.shutdown.cancel();
        // Ours goes first, so that the node is closed once the server lets
        // go of its own: a test may open the data directory again.
        drop(self.node);
        self.server.await.expect("join").expect("server");
        (self.dir, self.data)
    }

    pub fn data_dir(&self) -> &DataDir {
        &self.data
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The API token the builder made for `user`.
    pub fn api_token(&self, user: &str) -> &str {
        self.api_tokens
            .get(user)
            .unwrap_or_else(|| panic!("no API token for {user}"))
    }

    /// GET with the node's token; the body as JSON, or null.
    pub async fn api_get(&self, path: &str) -> (StatusCode, Value) {
        let resp = self
            .client
            .get(self.url(path))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("send");
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// Creates a record through the API; returns the record as answered.
    pub async fn create_record(&self, collection: &str, fields: Value) -> Value {
        let resp = self
            .client
            .post(self.url(&format!("/api/v1/records/{collection}")))
            .bearer_auth(&self.token)
            .json(&json!({ "fields": fields }))
            .send()
            .await
            .expect("send");
        let status = resp.status();
        let body: Value = resp.json().await.expect("json");
        assert_eq!(status, StatusCode::CREATED, "{collection}: {body}");
        body
    }

    /// Creates a record through the API; returns its id.
    pub async fn create(&self, collection: &str, fields: Value) -> String {
        let body = self.create_record(collection, fields).await;
        body["id"].as_str().expect("id").to_owned()
    }

    /// A browser without a session, Japanese by default.
    pub fn browser(&self) -> Browser {
        Browser {
            base: self.base.clone(),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
            cookies: Vec::new(),
            csrf: String::new(),
        }
    }

    /// A browser logged in as `user` (made by the builder), on the dashboard.
    pub async fn signed_in(&self, user: &str) -> Browser {
        let mut b = self.browser();
        let page = b.login(user, &password_of(user), "/").await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
        b
    }
}

/// One answer to a `Browser`.
pub struct Page {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Page {
    pub fn location(&self) -> &str {
        self.headers
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

/// Keeps cookies by hand, so each test states exactly what it sends.
pub struct Browser {
    pub base: String,
    pub http: reqwest::Client,
    pub cookies: Vec<(String, String)>,
    /// The session's CSRF token, read from a page's form.
    pub csrf: String,
}

impl Browser {
    pub fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn keep_cookies(&mut self, headers: &HeaderMap) {
        for value in headers.get_all(SET_COOKIE) {
            let text = value.to_str().expect("cookie text");
            let pair = text.split(';').next().unwrap_or("");
            let (name, value) = pair.split_once('=').expect("name=value");
            self.cookies.retain(|(k, _)| k != name);
            if !value.is_empty() {
                self.cookies.push((name.to_owned(), value.to_owned()));
            }
        }
    }

    async fn finish(&mut self, resp: reqwest::Response) -> Page {
        let status = resp.status();
        let headers = resp.headers().clone();
        self.keep_cookies(&headers);
        let body = resp.text().await.expect("body");
        Page {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&mut self, path: &str) -> Page {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .header(COOKIE, self.cookie_header())
            .send()
            .await
            .expect("send");
        self.finish(resp).await
    }

    pub async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        let body: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .header(COOKIE, self.cookie_header())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .expect("send");
        self.finish(resp).await
    }

    /// A form post carrying this session's CSRF token.
    pub async fn submit(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        let csrf = self.csrf.clone();
        let mut form = vec![("csrf", csrf.as_str())];
        form.extend_from_slice(fields);
        self.post(path, &form).await
    }

    /// Fills in the login form; on success keeps the session's CSRF token
    /// from the dashboard. Returns the answer to the login post.
    pub async fn login(&mut self, user: &str, password: &str, next: &str) -> Page {
        let page = self.get("/login").await;
        assert_eq!(page.status, StatusCode::OK);
        let token = hidden_csrf(&page.body);
        let page = self
            .post(
                "/login",
                &[
                    ("csrf", &token),
                    ("next", next),
                    ("user", user),
                    ("password", password),
                ],
            )
            .await;
        if page.status == StatusCode::SEE_OTHER {
            let home = self.get("/").await;
            assert_eq!(home.status, StatusCode::OK, "{}", home.body);
            self.csrf = hidden_csrf(&home.body);
        }
        page
    }
}

/// The value of a form's hidden `csrf` field.
pub fn hidden_csrf(body: &str) -> String {
    let marker = r#"name="csrf" value=""#;
    let start = body
        .find(marker)
        .map(|i| i + marker.len())
        .expect("a csrf field");
    body[start..].split('"').next().unwrap_or("").to_owned()
}

/// The HTML of the field block `id="field-NAME"`, up to the next field.
pub fn field_block<'a>(body: &'a str, name: &str) -> &'a str {
    let start = body
        .find(&format!(r#"id="field-{name}""#))
        .unwrap_or_else(|| panic!("no field {name}"));
    let rest = &body[start + 1..];
    let end = rest.find(r#"id="field-"#).unwrap_or(rest.len());
    &rest[..end]
}

/// The attributes through which a page loads or sends anything.
pub const LINK_ATTRIBUTES: &[&str] = &["src", "href", "action"];

/// Every `src=`, `href=` and `action=` stays on this host; no script.
pub fn assert_no_external_urls(path: &str, body: &str) {
    assert_attributes_stay_local(path, body, LINK_ATTRIBUTES);
}

/// Every value of the attributes `names` stays on this host; no script.
pub fn assert_attributes_stay_local(path: &str, body: &str, names: &[&str]) {
    for name in names {
        let attr = format!("{name}=\"");
        for (i, _) in body.match_indices(&attr) {
            let value = body[i + attr.len()..].split('"').next().unwrap_or("");
            assert!(
                !value.starts_with("http:")
                    && !value.starts_with("https:")
                    && !value.starts_with("//"),
                "{path} refers to another host: {attr}{value}"
            );
        }
    }
    assert!(!body.contains("<script"), "{path} has a script");
}
