//! A browser of the console that keeps its cookies by hand, so that each
//! test states exactly what it sends, and what the console tests look for
//! in a page (form fields, CSRF tokens, links to other hosts).

use reqwest::StatusCode;
use reqwest::header::{COOKIE, HeaderMap, LOCATION, SET_COOKIE};

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
    /// A browser of the console at `base` (`http://HOST:PORT`) without a
    /// session; `http` must not follow redirects.
    pub fn new(base: String, http: reqwest::Client) -> Browser {
        Browser {
            base,
            http,
            cookies: Vec::new(),
            csrf: String::new(),
        }
    }

    /// A browser of the console at `base` without a session, with a client
    /// that does not follow redirects (so each test sees them).
    pub fn of_console(base: String) -> Browser {
        Browser::new(
            base,
            reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
        )
    }

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
