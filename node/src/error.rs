//! The node's one error type, and how each error reads over HTTP.
//!
//! Every failure the API can report has a stable snake_case `code` (SPEC §8);
//! scripts match on codes, people read messages. Internal details (SQLite
//! messages, paths) are logged, not sent: a storage failure answers
//! `storage_error` with a generic message.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use yui_protocol::{FieldError, ValidationErrors};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Validation(#[from] ValidationErrors),
    #[error("unknown collection {name:?}; the collections are: {known}")]
    UnknownCollection { name: String, known: String },
    #[error("no {collection} record with id {id:?}")]
    RecordNotFound { collection: String, id: String },
    #[error("{collection} record {id} is deleted; deleted records cannot be changed")]
    RecordDeleted { collection: String, id: String },
    #[error("{0}")]
    Conflict(String),
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    #[error("{message}")]
    Unauthorized { code: &'static str, message: String },
    /// Authenticated, but the role does not allow this.
    #[error("{message}")]
    Forbidden { message: String },
    #[error("the request body is larger than the limit of {limit} bytes")]
    BodyTooLarge { limit: usize },
    #[error("{0}")]
    NotFound(String),
    #[error(
        "the database {path} is damaged or is not a Yui database ({detail}); nothing was changed. Restore it with `yui restore BACKUP_FILE`"
    )]
    CorruptDatabase { path: String, detail: String },
    #[error("storage: {0}")]
    Storage(String),
    #[error("{0}")]
    Config(String),
    #[error("the node is shutting down")]
    ShuttingDown,
    #[error("{}", personal_data_message(.0))]
    PersonalData(Vec<yui_protocol::guard::Finding>),
}

fn personal_data_message(findings: &[yui_protocol::guard::Finding]) -> String {
    let list: Vec<String> = findings
        .iter()
        .map(|f| {
            format!(
                "{}: {} at {}..{} ({})",
                f.field, f.kind, f.start, f.end, f.excerpt
            )
        })
        .collect();
    format!(
        "this shared record contains personal data, which must not leave the town: {}",
        list.join("; ")
    )
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<yui_protocol::doc::DocError> for Error {
    fn from(e: yui_protocol::doc::DocError) -> Self {
        Error::Storage(format!("record document: {e}"))
    }
}

impl Error {
    pub fn status(&self) -> StatusCode {
        match self {
            Error::Validation(_) | Error::PersonalData(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Error::UnknownCollection { .. } | Error::RecordNotFound { .. } | Error::NotFound(_) => {
                StatusCode::NOT_FOUND
            }
            Error::RecordDeleted { .. } => StatusCode::GONE,
            Error::Conflict(_) => StatusCode::CONFLICT,
            Error::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Error::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            Error::Forbidden { .. } => StatusCode::FORBIDDEN,
            Error::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Error::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            Error::CorruptDatabase { .. } | Error::Storage(_) | Error::Config(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    /// The stable code of SPEC §8's error shape.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Validation(_) => "validation_failed",
            Error::UnknownCollection { .. } => "unknown_collection",
            Error::RecordNotFound { .. } => "record_not_found",
            Error::RecordDeleted { .. } => "record_deleted",
            Error::Conflict(_) => "conflict",
            Error::BadRequest { code, .. } | Error::Unauthorized { code, .. } => code,
            Error::Forbidden { .. } => "forbidden",
            Error::BodyTooLarge { .. } => "body_too_large",
            Error::NotFound(_) => "not_found",
            Error::CorruptDatabase { .. } => "corrupt_database",
            Error::Storage(_) | Error::Config(_) => "storage_error",
            Error::ShuttingDown => "shutting_down",
            Error::PersonalData(_) => "personal_data",
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Error::BadRequest {
            code,
            message: message.into(),
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = if status.is_server_error() {
            tracing::error!(code = self.code(), error = %self, "request failed");
            match self {
                Error::ShuttingDown => self.to_string(),
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
        (status, axum::Json(serde_json::json!({ "error": error }))).into_response()
    }
}
