//! How the node's [`Error`] reads over HTTP: its status, and the §8 body
//! `{"error": {"code", "message", ...}}`. Internal details (SQLite messages,
//! paths) are logged, not sent: a storage failure answers `storage_error`
//! with a generic message.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use yui_protocol::{FieldError, ValidationErrors};

use crate::error::Error;

/// The HTTP status an error answers with.
pub fn status(e: &Error) -> StatusCode {
    match e {
        Error::Validation(_) | Error::PersonalData(_) | Error::ImportRejected { .. } => {
            StatusCode::UNPROCESSABLE_ENTITY
        }
        Error::UnknownCollection { .. } | Error::RecordNotFound { .. } | Error::NotFound(_) => {
            StatusCode::NOT_FOUND
        }
        // A change to a deleted record: it was there and is gone for good.
        // (A read of it is not found: its tombstone shows only in a list
        // with include_deleted.)
        Error::RecordDeleted { .. } => StatusCode::GONE,
        Error::Conflict(_) => StatusCode::CONFLICT,
        Error::BadRequest { .. } => StatusCode::BAD_REQUEST,
        Error::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
        Error::Forbidden { .. } | Error::NotTheOwner { .. } => StatusCode::FORBIDDEN,
        Error::WrongHost { .. } => StatusCode::MISDIRECTED_REQUEST,
        Error::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        Error::AttachmentRefused { code, .. } => {
            if *code == "file_type_not_allowed" {
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            } else {
                StatusCode::PAYLOAD_TOO_LARGE
            }
        }
        Error::UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        Error::ShuttingDown | Error::DamagedDatabase { .. } => StatusCode::SERVICE_UNAVAILABLE,
        Error::StorageFull { .. } => StatusCode::INSUFFICIENT_STORAGE,
        Error::CorruptDatabase { .. } | Error::Storage(_) | Error::Config(_) => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = status(&self);
        let message = if status.is_server_error() {
            tracing::error!(code = self.code(), error = %self, "request failed");
            match self {
                Error::ShuttingDown | Error::DamagedDatabase { .. } | Error::StorageFull { .. } => {
                    self.to_string()
                }
                _ => "the node could not complete the request; see its log for details".to_owned(),
            }
        } else {
            if status == StatusCode::NOT_FOUND {
                // Clients poll for records; a miss is routine.
                tracing::debug!(code = self.code(), error = %self, "request refused");
            } else {
                tracing::info!(code = self.code(), error = %self, "request refused");
            }
            self.to_string()
        };
        let mut error = serde_json::json!({ "code": self.code(), "message": message });
        if let Error::Validation(ValidationErrors(fields)) = &self {
            error["fields"] = serde_json::to_value(fields as &Vec<FieldError>).unwrap_or_default();
        }
        if let Error::PersonalData(findings) = &self {
            error["findings"] = findings
                .iter()
                .map(|f| {
                    let mut v = serde_json::to_value(f).unwrap_or_default();
                    v["may_override"] = f.kind.may_override().into();
                    v
                })
                .collect();
        }
        if let Error::ImportRejected { problems, total } = &self {
            error["problems"] = serde_json::to_value(problems).unwrap_or_default();
            error["problem_count"] = (*total).into();
        }
        let mut response =
            (status, axum::Json(serde_json::json!({ "error": error }))).into_response();
        if status == StatusCode::UNAUTHORIZED {
            // RFC 9110 §11.6.1: a 401 names the scheme it wants (RFC 6750 §3
            // adds the error of a token that was presented).
            let challenge = match &self {
                Error::Unauthorized {
                    code: "invalid_token",
                    ..
                } => "Bearer realm=\"yui\", error=\"invalid_token\"",
                _ => "Bearer realm=\"yui\"",
            };
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static(challenge),
            );
        }
        response
    }
}
