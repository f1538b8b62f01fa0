//! The web console (SPEC §5): server-rendered HTML pages on the API port at
//! `/`, Japanese first, for administrators and staff.
//!
//! This module owns the console's HTTP side: its routes, the session cookie
//! and login form, CSRF checks on every form that changes something, role
//! checks, the language cookie, error pages and the embedded assets. The
//! pages live in submodules; the words in [`i18n`]; the markup in
//! `node/templates/` (askama, which HTML-escapes every interpolated value).
//! Users, roles and sessions themselves belong to [`crate::accounts`].
//!
//! Pages use no JavaScript: plain links and forms. Record writes go through
//! the same validation and store calls as the JSON API.

mod apidocs;

mod assets;
// Attached files (issue 16)
mod attachments;
mod audit;
mod auth;
// Daily work (issue 6)
mod daily;
mod dashboard;
// Following other towns (issue 16)
mod feeds;
pub mod i18n;
mod kpi; // KPI (issue 6)
mod peers;
mod records;
// CSV in and out (issue 16)
mod spreadsheets;

use askama::Template;
use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRequestParts, OriginalUri};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

use crate::accounts::{Principal, SESSION_COOKIE, Session, constant_time_eq};
use crate::http::AppState;
use i18n::{LANG_COOKIE, Lang, Messages};

/// The console's routes; the daemon merges them beside the API's.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(dashboard::show))
        .route("/sync", post(dashboard::sync_now))
        .route("/login", get(auth::login_page).post(auth::login))
        .route("/logout", post(auth::logout))
        .route("/lang/{code}", get(auth::switch_language))
        .route("/assets/{name}", get(assets::serve))
        .route("/search", get(records::search))
        .route("/records", get(records::index))
        .route(
            "/records/{collection}",
            get(records::list).post(records::create),
        )
        .route("/records/{collection}/new", get(records::new_form))
        .route(
            "/records/{collection}/export.csv",
            get(spreadsheets::export),
        )
        .route(
            "/records/{collection}/import",
            get(spreadsheets::form)
                .post(spreadsheets::upload)
                .layer(DefaultBodyLimit::max(crate::import::MAX_IMPORT_BYTES)),
        )
        .route("/records/{collection}/{id}", get(records::show))
        .route(
            "/records/{collection}/{id}/attachments",
            post(attachments::upload).layer(DefaultBodyLimit::max(
                yui_protocol::attachment::MAX_FILE_BYTES as usize + (1 << 20),
            )),
        )
        .route(
            "/records/{collection}/{id}/attachments/{sha256}",
            get(attachments::download),
        )
        .route(
            "/records/{collection}/{id}/attachments/{sha256}/delete",
            get(attachments::confirm_remove).post(attachments::remove),
        )
        .route(
            "/records/{collection}/{id}/edit",
            get(records::edit_form).post(records::update),
        )
        .route(
            "/records/{collection}/{id}/delete",
            get(records::confirm_delete).post(records::delete),
        )
        .route("/audit", get(audit::show))
        .route("/peers", get(peers::show).post(peers::add))
        .route("/peers/remove", post(peers::remove))
        .route("/peers/revocations", post(peers::import_revocations))
        .route("/api/docs", get(apidocs::show))
        // Daily work (issue 6)
        .route("/work/skills", get(daily::skills))
        .route("/work/orders", get(daily::orders))
        .route("/work/training", get(daily::training))
        .route("/work/pr", get(daily::pr))
        .route("/work/skills.csv", get(daily::skills_csv))
        .route("/work/orders.csv", get(daily::orders_csv))
        .route("/work/training.csv", get(daily::training_csv))
        .route("/work/pr.csv", get(daily::pr_csv))
        // KPI (issue 6)
        .route("/kpi", get(kpi::show))
        .route("/kpi.csv", get(kpi::csv))
        .route("/kpi/draft", get(kpi::draft_form).post(kpi::publish))
        // Following other towns (issue 16)
        .route("/feeds", get(feeds::show).post(feeds::change))
        .route("/feeds/{file}", get(feeds::atom_feed))
}

/// Answers requests no route matched: JSON for API paths, a page otherwise.
pub async fn fallback(visitor: Visitor, req: axum::extract::Request) -> Response {
    let path = req.uri().path();
    if path.starts_with("/api/") || path == "/metrics" || path == "/healthz" {
        return crate::http::extract::unknown_route(req)
            .await
            .into_response();
    }
    PageError::new(&visitor, StatusCode::NOT_FOUND, visitor.m().not_found).into_response()
}

/// Whoever is asking: their language, their session if any, and where they are.
pub struct Visitor {
    pub lang: Lang,
    pub session: Option<Session>,
    /// Path and query of this request, for return links.
    pub here: String,
    /// Whether the browser reached us over HTTPS (directly or through a proxy
    /// that says so); then cookies are marked `Secure`.
    pub secure: bool,
}

impl Visitor {
    pub fn m(&self) -> &'static Messages {
        self.lang.messages()
    }

    /// The frame every page shares.
    pub fn chrome(&self, title: impl Into<String>, section: &'static str) -> Chrome {
        let m = self.m();
        Chrome {
            m,
            lang: self.lang.code(),
            title: title.into(),
            section,
            css: assets::css_href(),
            icon: assets::icon_href(),
            switch_href: format!(
                "/lang/{}?next={}",
                self.lang.other().code(),
                url_encode(&self.here)
            ),
            user: self
                .session
                .as_ref()
                .map(|s| (s.principal.user.clone(), self.lang.role(s.principal.role))),
            is_admin: self
                .session
                .as_ref()
                .is_some_and(|s| s.principal.role.can_administer()),
            csrf: self
                .session
                .as_ref()
                .map_or_else(String::new, |s| s.csrf_token.clone()),
        }
    }
}

/// Reads one cookie from the request headers.
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

impl FromRequestParts<AppState> for Visitor {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        node: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let lang = Lang::from_code(cookie(&parts.headers, LANG_COOKIE));
        let session = match cookie(&parts.headers, SESSION_COOKIE) {
            Some(id) if !id.is_empty() => node.accounts.session(id).await,
            _ => None,
        };
        let uri = parts
            .extensions
            .get::<OriginalUri>()
            .map_or(&parts.uri, |o| &o.0);
        let here = uri
            .path_and_query()
            .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned());
        // The API listens on plain HTTP; HTTPS comes from a reverse proxy,
        // which says so in X-Forwarded-Proto. Trusting the header is safe
        // here: it can only make the cookie stricter.
        let secure = uri.scheme_str() == Some("https")
            || parts
                .headers
                .get("x-forwarded-proto")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.eq_ignore_ascii_case("https"));
        Ok(Visitor {
            lang,
            session,
            here,
            secure,
        })
    }
}

/// A visitor with a valid session; anyone else is sent to the login page,
/// with a return path.
pub struct SignedIn {
    pub visitor: Visitor,
    pub session: Session,
}

impl SignedIn {
    pub fn principal(&self) -> &Principal {
        &self.session.principal
    }

    pub fn m(&self) -> &'static Messages {
        self.visitor.m()
    }

    pub fn lang(&self) -> Lang {
        self.visitor.lang
    }

    pub fn chrome(&self, title: impl Into<String>, section: &'static str) -> Chrome {
        self.visitor.chrome(title, section)
    }

    /// Refuses with 403 unless `allowed`: role checks run on the server for
    /// every action, whatever buttons the page showed.
    pub fn require(&self, allowed: bool) -> Result<(), PageError> {
        if allowed {
            Ok(())
        } else {
            tracing::info!(user = %self.session.principal.user, path = %self.visitor.here, "console: refused, role too low");
            Err(self.error(StatusCode::FORBIDDEN, self.m().forbidden))
        }
    }

    /// Checks a submitted form's `csrf` field against the session's token.
    pub fn check_csrf(&self, submitted: Option<&str>) -> Result<(), PageError> {
        let expected = self.session.csrf_token.as_bytes();
        match submitted {
            Some(token) if constant_time_eq(token.as_bytes(), expected) => Ok(()),
            _ => {
                tracing::warn!(user = %self.session.principal.user, path = %self.visitor.here, "console: refused a form without a valid CSRF token");
                Err(self.error(StatusCode::FORBIDDEN, self.m().csrf_failed))
            }
        }
    }

    /// A posted form, once its CSRF token and then the role (`allowed`)
    /// are checked: a forged post is refused as forged, whatever the role.
    pub fn posted_form(&self, body: &[u8], allowed: bool) -> Result<FormPairs, PageError> {
        let form = FormPairs::parse(body);
        self.check_csrf(form.get("csrf"))?;
        self.require(allowed)?;
        Ok(form)
    }

    pub fn error(&self, status: StatusCode, message: &'static str) -> PageError {
        PageError::new(&self.visitor, status, message)
    }

    /// A node error as a page; details are logged, not shown.
    pub fn failed(&self, e: crate::Error) -> PageError {
        let m = self.m();
        match e {
            crate::Error::UnknownCollection { .. } => {
                self.error(StatusCode::NOT_FOUND, m.unknown_collection)
            }
            crate::Error::RecordNotFound { .. } => {
                self.error(StatusCode::NOT_FOUND, m.record_not_found)
            }
            crate::Error::RecordDeleted { .. } => self.error(StatusCode::GONE, m.err_deleted),
            crate::Error::StorageFull { detail } => {
                tracing::error!(error = %detail, path = %self.visitor.here, "console: not saved: the disk is full");
                self.error(StatusCode::INSUFFICIENT_STORAGE, m.err_storage_full)
            }
            crate::Error::Forbidden { message } => {
                tracing::info!(user = %self.session.principal.user, path = %self.visitor.here, "console: refused: {message}");
                self.error(StatusCode::FORBIDDEN, m.forbidden)
            }
            other => {
                tracing::error!(error = %other, path = %self.visitor.here, "console: request failed");
                self.error(StatusCode::INTERNAL_SERVER_ERROR, m.internal_error)
            }
        }
    }
}

impl FromRequestParts<AppState> for SignedIn {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, node: &AppState) -> Result<Self, Response> {
        let Ok(visitor) = Visitor::from_request_parts(parts, node).await;
        match visitor.session.clone() {
            Some(session) => Ok(SignedIn { visitor, session }),
            None => {
                // After a POST the form is gone: come back to the page instead.
                let back = if parts.method == axum::http::Method::GET {
                    visitor.here.as_str()
                } else {
                    "/"
                };
                Err(Redirect::to(&format!("/login?next={}", url_encode(back))).into_response())
            }
        }
    }
}

/// What every page's frame needs (`templates/base.html`).
pub struct Chrome {
    pub m: &'static Messages,
    pub lang: &'static str,
    pub title: String,
    /// The nav entry to mark as current.
    pub section: &'static str,
    pub css: &'static str,
    pub icon: &'static str,
    pub switch_href: String,
    /// User name and role label, when signed in.
    pub user: Option<(String, &'static str)>,
    pub is_admin: bool,
    pub csrf: String,
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    chrome: Chrome,
    message: &'a str,
}

/// A failed console request, shown as a page in the visitor's language.
pub struct PageError {
    status: StatusCode,
    /// Boxed: handlers return `Result<_, PageError>` on every path.
    chrome: Box<Chrome>,
    message: &'static str,
}

impl PageError {
    pub fn new(visitor: &Visitor, status: StatusCode, message: &'static str) -> PageError {
        PageError {
            status,
            chrome: Box::new(visitor.chrome(visitor.m().error_title, "")),
            message,
        }
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        render(
            self.status,
            &ErrorPage {
                chrome: *self.chrome,
                message: self.message,
            },
        )
    }
}

/// Renders a page. Pages carry CSRF tokens and personal data: never cached;
/// the policy allows no script and no resource from elsewhere.
pub fn render(status: StatusCode, page: &impl Template) -> Response {
    match page.render() {
        Ok(html) => (
            status,
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/html; charset=utf-8"),
                ),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
                (
                    header::CONTENT_SECURITY_POLICY,
                    HeaderValue::from_static(
                        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
                    ),
                ),
                (
                    header::X_CONTENT_TYPE_OPTIONS,
                    HeaderValue::from_static("nosniff"),
                ),
                (
                    header::REFERRER_POLICY,
                    HeaderValue::from_static("same-origin"),
                ),
            ],
            html,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "console: rendering a page failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "rendering failed").into_response()
        }
    }
}

/// A return path from a query string, kept only if it stays on this site:
/// one leading `/`, not `//` or `/\` (which browsers read as another host).
pub fn local_path(next: Option<&str>) -> String {
    match next {
        Some(p)
            if p.starts_with('/')
                && !p.starts_with("//")
                && !p.starts_with("/\\")
                && !p.chars().any(char::is_control) =>
        {
            p.to_owned()
        }
        _ => "/".to_owned(),
    }
}

pub fn url_encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// A form body (`application/x-www-form-urlencoded`), keeping repeated keys.
pub struct FormPairs(pub Vec<(String, String)>);

impl FormPairs {
    pub fn parse(body: &[u8]) -> FormPairs {
        FormPairs(form_urlencoded::parse(body).into_owned().collect())
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// A `Set-Cookie` value; `Secure` when the browser came over HTTPS.
pub fn set_cookie(name: &str, value: &str, path: &str, max_age: i64, visitor: &Visitor) -> String {
    let secure = if visitor.secure { "; Secure" } else { "" };
    format!("{name}={value}; HttpOnly; SameSite=Strict; Path={path}; Max-Age={max_age}{secure}")
}

/// A local time for people: `2025-04-01 09:30` in JST from RFC 3339 text.
pub fn show_time(rfc3339: &str) -> String {
    use time::format_description::well_known::Rfc3339;
    let Ok(t) = time::OffsetDateTime::parse(rfc3339, &Rfc3339) else {
        return rfc3339.to_owned();
    };
    // The consortium's towns are all in Japan. A stored time may be as late
    // as 9999-12-31T23:59:59Z (a peer's broken clock, an old record): nine
    // hours later is past what `time` can represent, and `to_offset` would
    // panic. Such a time is shown as stored, in UTC.
    let Some(jst) = t.checked_to_offset(time::macros::offset!(+9)) else {
        return rfc3339.to_owned();
    };
    jst.format(time::macros::format_description!(
        "[year]-[month]-[day] [hour]:[minute]"
    ))
    .unwrap_or_else(|_| rfc3339.to_owned())
}

/// Bytes for people: `12.3 MB`.
pub fn show_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
