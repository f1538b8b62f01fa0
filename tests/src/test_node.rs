//! The in-process node that the API and console tests run against.
//!
//! `TestNode` is a real node on a real SQLite file in a temporary data
//! directory (town `tateshina`, as `yui init` makes it), serving HTTP on a
//! `127.0.0.1:0` listener; `TestNode::builder` adds console users and API
//! tokens before it starts listening. What more than one test file sends
//! is here; a file's own requests are a small trait of that file,
//! implemented for `TestNode` (a type of another crate takes no inherent
//! methods there).

use std::collections::HashMap;
use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use yui_node::accounts::Role;
use yui_node::daemon::run;
use yui_node::datadir::DataDir;
use yui_node::node::Node;

use crate::browser::Browser;

/// A fresh data directory for town `tateshina`, as `yui init` leaves it.
pub fn init_data_dir() -> (tempfile::TempDir, DataDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let data =
        crate::town::init_data_dir(&dir.path().join("data"), "tateshina", "立科町").expect("init");
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

    /// GET with this `Authorization` header, or none; the whole response,
    /// for tests of authentication itself.
    pub async fn get_authorized(
        &self,
        path: &str,
        authorization: Option<&str>,
    ) -> reqwest::Response {
        let mut request = self.client.get(self.url(path));
        if let Some(value) = authorization {
            request = request.header(reqwest::header::AUTHORIZATION, value);
        }
        request.send().await.expect("send")
    }

    /// GET with the node's token; the body as JSON, or null.
    pub async fn api_get(&self, path: &str) -> (StatusCode, Value) {
        self.send_as(&self.token, reqwest::Method::GET, path, None)
            .await
    }

    /// A request with `token` and, if given, a JSON body; the status and
    /// the body's text.
    pub async fn send_text(
        &self,
        token: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, String) {
        let mut req = self
            .client
            .request(method, self.url(path))
            .bearer_auth(token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.expect("send");
        let status = resp.status();
        (status, resp.text().await.expect("body"))
    }

    /// A request with `token` and, if given, a JSON body; the body as JSON,
    /// or null.
    pub async fn send_as(
        &self,
        token: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let (status, text) = self.send_text(token, method, path, body).await;
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// How many live records a collection holds, as the status says.
    pub async fn count(&self, collection: &str) -> u64 {
        let (_, status) = self.api_get("/api/v1/status").await;
        status["collections"][collection]["count"]
            .as_u64()
            .expect("count")
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
        Browser::of_console(self.base.clone())
    }

    /// A browser logged in as `user` (made by the builder), on the dashboard.
    pub async fn signed_in(&self, user: &str) -> Browser {
        let mut b = self.browser();
        let page = b.login(user, &password_of(user), "/").await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
        b
    }
}
