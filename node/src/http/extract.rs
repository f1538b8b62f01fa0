//! Who is calling, and what they may do: the bearer-token layer of `/api/`,
//! the role extractors every handler states its need with, and the body and
//! query extractors whose rejections answer in the §8 error shape. The
//! console takes the same role rules through its own session extractor.

use axum::body::Bytes;
use axum::extract::{FromRequest, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

use super::{AppState, MAX_BODY_BYTES};
use crate::accounts::{Principal, Role};
use crate::error::{Error, Result};

/// Resolves the bearer token to a [`Principal`] and puts it in the request's
/// extensions, or answers 401.
pub async fn authenticate(State(node): State<AppState>, mut req: Request, next: Next) -> Response {
    let header = req.headers().get(header::AUTHORIZATION);
    let Some(value) = header else {
        return Error::Unauthorized {
            code: "missing_token",
            // No local path: anyone who can reach the port reads this.
            message: "this request needs the header 'Authorization: Bearer TOKEN'; the node's own token is the file api-token in its data directory, and `yui user token NAME` makes a user's".into(),
        }
        .into_response();
    };
    let presented = value
        .to_str()
        .ok()
        .and_then(bearer_token)
        .unwrap_or("")
        .to_owned();
    let Some(principal) = node.accounts.principal_for_token(&presented).await else {
        return Error::Unauthorized {
            code: "invalid_token",
            message: "the bearer token is neither this node's API token nor a user's token (`yui user token NAME` makes one)".into(),
        }
        .into_response();
    };
    req.extensions_mut().insert(principal);
    next.run(req).await
}

/// The token of an `Authorization: Bearer TOKEN` value. The scheme is
/// matched without regard to case (RFC 9110 §11.1: `bearer`, `BEARER`), and
/// any run of spaces may separate it from the token.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim_start_matches(' '))
}

/// The authenticated principal, if it has at least `needed`.
fn authorise(parts: &axum::http::request::Parts, needed: Role) -> Result<Principal> {
    let principal = parts
        .extensions
        .get::<Principal>()
        .cloned()
        .ok_or_else(|| Error::Unauthorized {
            code: "missing_token",
            message: "this request needs the header 'Authorization: Bearer TOKEN'".into(),
        })?;
    if principal.role < needed {
        return Err(Error::Forbidden {
            message: format!(
                "this needs the {needed} role (or higher); {} has the {} role",
                principal.user, principal.role
            ),
        });
    }
    Ok(principal)
}

macro_rules! access {
    ($(#[$doc:meta])* $name:ident, $role:expr) => {
        $(#[$doc])*
        pub struct $name(pub Principal);

        impl<S: Send + Sync> axum::extract::FromRequestParts<S> for $name {
            type Rejection = Error;

            async fn from_request_parts(
                parts: &mut axum::http::request::Parts,
                _: &S,
            ) -> Result<Self> {
                authorise(parts, $role).map($name)
            }
        }
    };
}

access!(
    /// A caller allowed to read (any role).
    ViewerAccess,
    Role::Viewer
);
access!(
    /// Any authenticated caller, for a handler whose action checks its own
    /// role against the one table of actions (`crate::actions::Action`).
    Caller,
    Role::Viewer
);
access!(
    /// A caller allowed to create, update and delete records.
    EditorAccess,
    Role::Editor
);
access!(
    /// A caller allowed to administer: read the users and the audit log.
    AdminAccess,
    Role::Admin
);

pub async fn unknown_route(req: Request) -> Error {
    Error::NotFound(format!(
        "no such endpoint: {} {}",
        req.method(),
        req.uri().path()
    ))
}

/// Query parameters, with a malformed query string answered in the §8 shape.
pub struct QueryParams<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> axum::extract::FromRequestParts<S> for QueryParams<T> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(t)| QueryParams(t))
            .map_err(|rejection| Error::bad_request("invalid_query", rejection.body_text()))
    }
}

/// The byte offset and value of the first `\\uXXXX` escape inside a JSON
/// string that is a surrogate without its other half. serde_json refuses
/// one as an "unexpected end of hex escape" (or, for a lone trailing half,
/// a "lone leading surrogate"), which does not tell a client what it sent.
fn lone_surrogate(body: &[u8]) -> Option<(usize, u16)> {
    let hex = |at: usize| -> Option<u16> {
        let digits = std::str::from_utf8(body.get(at..at + 4)?).ok()?;
        u16::from_str_radix(digits, 16).ok()
    };
    let escape_at =
        |at: usize| -> Option<u16> { (body.get(at..at + 2)? == b"\\u").then(|| hex(at + 2))? };
    let (mut i, mut in_string) = (0, false);
    while i < body.len() {
        match (in_string, body[i]) {
            (false, b'"') => in_string = true,
            (true, b'"') => in_string = false,
            (true, b'\\') => {
                if let Some(unit) = escape_at(i) {
                    match unit {
                        0xD800..=0xDBFF => match escape_at(i + 6) {
                            Some(0xDC00..=0xDFFF) => i += 6,
                            _ => return Some((i, unit)),
                        },
                        0xDC00..=0xDFFF => return Some((i, unit)),
                        _ => {}
                    }
                    i += 5;
                } else {
                    i += 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// A body as bytes, with an oversize or unreadable one refused in the §8
/// shape (413 `body_too_large`, 400 `unreadable_body`).
pub struct RawBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self> {
        Bytes::from_request(req, state)
            .await
            .map(RawBody)
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    Error::BodyTooLarge {
                        limit: MAX_BODY_BYTES,
                    }
                } else {
                    Error::bad_request("unreadable_body", rejection.body_text())
                }
            })
    }
}

/// Whether a `Content-Type` names JSON: `application/json` or a
/// `+json` type, with any parameters (`; charset=utf-8`).
fn is_json(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// A JSON body, with every failure in the §8 shape. A body sent with a
/// `Content-Type` that is not JSON (a form, text) is refused 415 before it
/// is read; one sent without a `Content-Type` is read as JSON.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self> {
        if let Some(value) = req.headers().get(header::CONTENT_TYPE) {
            let found = String::from_utf8_lossy(value.as_bytes()).into_owned();
            if !is_json(&found) {
                return Err(Error::UnsupportedMediaType {
                    found,
                    expected: "application/json",
                });
            }
        }
        let RawBody(bytes) = RawBody::from_request(req, state).await?;
        if bytes.is_empty() {
            return Err(Error::bad_request(
                "malformed_json",
                "the request body is empty; send a JSON object",
            ));
        }
        serde_json::from_slice(&bytes).map(JsonBody).map_err(|e| {
            if e.classify() == serde_json::error::Category::Data {
                Error::bad_request(
                    "invalid_body",
                    format!("the JSON does not have the expected shape: {e}"),
                )
            } else if let Some((at, unit)) = lone_surrogate(&bytes) {
                let before = &bytes[..at];
                let line = before.iter().filter(|b| **b == b'\n').count() + 1;
                let column = before.len() - before.iter().rposition(|b| *b == b'\n').map_or(0, |p| p + 1) + 1;
                Error::bad_request(
                    "malformed_json",
                    format!(
                        "the body is not valid JSON: \\u{unit:04x} at line {line} column {column} is a lone surrogate, half of a UTF-16 pair and no character; send the character itself, or both halves of its pair"
                    ),
                )
            } else {
                Error::bad_request("malformed_json", format!("the body is not valid JSON: {e}"))
            }
        })
    }
}
