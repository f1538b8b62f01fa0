//! Logging in and out, and the language switch.
//!
//! The login form has no session yet, so it is protected from cross-site
//! posts by a double-submit token: a random value in a cookie scoped to
//! `/login` that the form must repeat. After login, the session cookie is
//! `HttpOnly; SameSite=Strict; Path=/` (and `Secure` over HTTPS).

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use rand::RngCore;
use serde::Deserialize;

use super::i18n::{LANG_COOKIE, Lang};
use super::{
    AppState, Chrome, FormPairs, PageError, SignedIn, Visitor, cookie, local_path, render,
    set_cookie,
};
use crate::accounts::{
    DEVICE_COOKIE, KNOWN_DEVICE_SECS, LoginClient, LoginError, SESSION_COOKIE, constant_time_eq,
};
use crate::http::listener::ClientAddr;

const LOGIN_CSRF_COOKIE: &str = "yui_login_csrf";

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage<'a> {
    chrome: Chrome,
    csrf: &'a str,
    next: &'a str,
    user: &'a str,
    notice: Option<&'static str>,
    error: Option<String>,
}

#[derive(Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
    /// Set after logging out, to say so.
    out: Option<String>,
}

fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The login form again, answered 429 with `Retry-After` and why.
fn try_later(
    visitor: &Visitor,
    next: &str,
    user: &str,
    why: String,
    retry_after_secs: u64,
) -> Response {
    let mut response = login_form(
        visitor,
        StatusCode::TOO_MANY_REQUESTS,
        next,
        user,
        None,
        Some(why),
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
    response
}

fn login_form(
    visitor: &Visitor,
    status: StatusCode,
    next: &str,
    user: &str,
    notice: Option<&'static str>,
    error: Option<String>,
) -> Response {
    let token = new_token();
    let mut response = render(
        status,
        &LoginPage {
            chrome: visitor.chrome(visitor.m().login_title, "login"),
            csrf: &token,
            next,
            user,
            notice,
            error,
        },
    );
    let cookie = set_cookie(LOGIN_CSRF_COOKIE, &token, "/login", 3600, visitor);
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

pub async fn login_page(visitor: Visitor, Query(q): Query<LoginQuery>) -> Response {
    let next = local_path(q.next.as_deref());
    if visitor.session.is_some() {
        return Redirect::to(&next).into_response();
    }
    let notice = q.out.is_some().then_some(visitor.m().logged_out);
    login_form(&visitor, StatusCode::OK, &next, "", notice, None)
}

pub async fn login(
    State(node): State<AppState>,
    visitor: Visitor,
    headers: HeaderMap,
    extensions: axum::http::Extensions,
    body: Bytes,
) -> Response {
    let form = FormPairs::parse(&body);
    let next = local_path(form.get("next"));
    let expected = cookie(&headers, LOGIN_CSRF_COOKIE).unwrap_or("");
    let submitted = form.get("csrf").unwrap_or("");
    if expected.is_empty() || !constant_time_eq(submitted.as_bytes(), expected.as_bytes()) {
        tracing::warn!("console: refused a login form without a valid CSRF token");
        return PageError::new(&visitor, StatusCode::FORBIDDEN, visitor.m().csrf_failed)
            .into_response();
    }
    let user = form.get("user").unwrap_or("").trim();
    let password = form.get("password").unwrap_or("");
    let m = visitor.m();
    let client = LoginClient {
        addr: extensions.get::<ClientAddr>().map(|c| c.0),
        device: cookie(&headers, DEVICE_COOKIE).map(str::to_owned),
    };
    match node.accounts.login_from(user, password, &client).await {
        Ok(session) => {
            tracing::info!(user = %session.principal.user, "console: logged in");
            let max_age = (session.expires_at - crate::clock::now_ms() / 1000).max(0);
            let mut response = Redirect::to(&next).into_response();
            let device = node.accounts.known_device(&session.principal.user);
            for cookie in [
                set_cookie(SESSION_COOKIE, &session.id, "/", max_age, &visitor),
                set_cookie(LOGIN_CSRF_COOKIE, "", "/login", 0, &visitor),
                set_cookie(
                    DEVICE_COOKIE,
                    &device,
                    "/login",
                    KNOWN_DEVICE_SECS,
                    &visitor,
                ),
            ] {
                if let Ok(value) = HeaderValue::from_str(&cookie) {
                    response.headers_mut().append(header::SET_COOKIE, value);
                }
            }
            response
        }
        Err(LoginError::BadCredentials) => login_form(
            &visitor,
            StatusCode::UNAUTHORIZED,
            &next,
            user,
            None,
            Some(m.bad_credentials.to_owned()),
        ),
        Err(LoginError::LockedOut { retry_after_secs }) => try_later(
            &visitor,
            &next,
            user,
            (m.locked_out)(retry_after_secs),
            retry_after_secs,
        ),
        Err(LoginError::Throttled {
            retry_after_secs,
            reason,
        }) => {
            tracing::info!(
                client = ?client.addr,
                reason = reason.label(),
                retry_after_secs,
                "console: login refused before checking the password: too many logins"
            );
            try_later(
                &visitor,
                &next,
                user,
                (m.login_throttled)(retry_after_secs),
                retry_after_secs,
            )
        }
        Err(LoginError::Internal(e)) => {
            tracing::error!(error = %e, "console: login failed");
            login_form(
                &visitor,
                StatusCode::INTERNAL_SERVER_ERROR,
                &next,
                user,
                None,
                Some(m.login_failed.to_owned()),
            )
        }
    }
}

pub async fn logout(State(node): State<AppState>, who: SignedIn, body: Bytes) -> Response {
    let form = FormPairs::parse(&body);
    if let Err(e) = who.check_csrf(form.get("csrf")) {
        return e.into_response();
    }
    node.accounts.logout(&who.session.id).await;
    tracing::info!(user = %who.principal().user, "console: logged out");
    let mut response = Redirect::to("/login?out=1").into_response();
    let cookie = set_cookie(SESSION_COOKIE, "", "/", 0, &who.visitor);
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

#[derive(Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

/// Remembers the chosen language for a year. A plain link, not a form: it
/// changes only how pages read, so a forged request can do no harm.
pub async fn switch_language(
    visitor: Visitor,
    Path(code): Path<String>,
    Query(q): Query<NextQuery>,
) -> Response {
    let lang = Lang::from_code(Some(code.as_str()));
    let next = local_path(q.next.as_deref());
    let mut response = Redirect::to(&next).into_response();
    let secure = if visitor.secure { "; Secure" } else { "" };
    let cookie = format!(
        "{LANG_COOKIE}={}; Path=/; Max-Age=31536000; SameSite=Lax{secure}",
        lang.code()
    );
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}
