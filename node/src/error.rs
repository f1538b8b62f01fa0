//! The node's one error type.
//!
//! Every failure has a stable snake_case `code` (SPEC §8); scripts match on
//! codes, people read messages. How an error reads over HTTP (its status,
//! and what of it is sent) is the HTTP layer's business: `crate::http::error`.

use yui_protocol::ValidationErrors;
use yui_protocol::spreadsheet::Problem;

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
    /// A change to another town's record that the collection's write
    /// authority does not allow (protocol.md 7.4).
    #[error("{message}")]
    NotTheOwner { message: String },
    /// The request's `Host` names neither a loopback name nor a configured
    /// proxy host (a DNS-rebinding page, or a proxy not yet configured).
    #[error(
        "this node does not answer to the host {host:?}; open it as 127.0.0.1, localhost or [::1], or add the name to proxy_hosts in config.toml"
    )]
    WrongHost { host: String },
    #[error("the request body is larger than the limit of {limit} bytes")]
    BodyTooLarge { limit: usize },
    /// A body sent with a `Content-Type` that is not the one the operation
    /// reads (JSON for every JSON operation).
    #[error(
        "the request body is sent as {found:?}, but this operation reads {expected}; send it with 'Content-Type: {expected}'"
    )]
    UnsupportedMediaType {
        found: String,
        expected: &'static str,
    },
    #[error("{0}")]
    NotFound(String),
    /// An attached file refused: too large, over the town's quota, or of a
    /// type that is not allowed (`code` says which).
    #[error("{message}")]
    AttachmentRefused { code: &'static str, message: String },
    #[error(
        "the database {path} is damaged or is not a Yui database ({detail}); nothing was changed. Restore it with `yui restore BACKUP_FILE`"
    )]
    CorruptDatabase { path: String, detail: String },
    /// The node's integrity check found damage: it takes no writes.
    #[error(
        "the node's database is damaged (tables: {tables}); it accepts no writes until an administrator restores the newest verified backup (docs/operations.md 17)"
    )]
    DamagedDatabase { tables: String },
    #[error("storage: {0}")]
    Storage(String),
    /// A write failed for lack of space on the file system that holds the
    /// data directory: nothing of it was stored.
    #[error(
        "the disk that holds the node's data is full, so nothing was written; free space on it (see `yui status`: storage) and try again: the node takes writes again as soon as there is room"
    )]
    StorageFull { detail: String },
    #[error("{0}")]
    Config(String),
    #[error("the node is shutting down")]
    ShuttingDown,
    #[error("{}", personal_data_message(.0))]
    PersonalData(Vec<yui_protocol::guard::Finding>),
    /// An import refused: nothing of it was written. Every problem found,
    /// each with its row (and column); `total` counts them when the list
    /// is cut short.
    #[error("{}", import_message(.problems, *.total))]
    ImportRejected {
        problems: Vec<Problem>,
        total: usize,
    },
}

fn import_message(problems: &[Problem], total: usize) -> String {
    let rows: std::collections::BTreeSet<usize> = problems.iter().map(|p| p.row).collect();
    let first = problems.first().map_or_else(String::new, |p| {
        let at = match (&p.column, p.row) {
            (Some(c), row) if row > 0 => format!("row {row}, {c}"),
            (None, row) if row > 0 => format!("row {row}"),
            (Some(c), _) => c.clone(),
            (None, _) => "the file".to_owned(),
        };
        format!("; first: {at}: {}", p.message)
    });
    format!(
        "nothing was imported: {total} problem(s) in {} row(s){first}",
        rows.len()
    )
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
            Error::NotTheOwner { .. } => "not_the_owner",
            Error::WrongHost { .. } => "wrong_host",
            Error::BodyTooLarge { .. } => "body_too_large",
            Error::UnsupportedMediaType { .. } => "unsupported_media_type",
            Error::NotFound(_) => "not_found",
            Error::AttachmentRefused { code, .. } => code,
            Error::CorruptDatabase { .. } => "corrupt_database",
            Error::DamagedDatabase { .. } => "database_damaged",
            Error::Storage(_) | Error::Config(_) => "storage_error",
            Error::StorageFull { .. } => "storage_full",
            Error::ShuttingDown => "shutting_down",
            Error::PersonalData(_) => "personal_data",
            Error::ImportRejected { .. } => "import_rejected",
        }
    }

    /// This error as the problems of one row of an import: each field a
    /// validation or the guard named, or the error itself.
    pub fn into_problems(self, row: usize) -> Vec<Problem> {
        let one = |field: Option<String>, code: &'static str, message: String| Problem {
            row,
            column: None,
            field,
            code,
            message,
        };
        match self {
            Error::Validation(ValidationErrors(fields)) => fields
                .into_iter()
                .map(|f| one(Some(f.field), f.code, f.message))
                .collect(),
            Error::PersonalData(findings) => findings
                .into_iter()
                .map(|f| {
                    let message = format!(
                        "personal data ({}) at characters {}..{}: {}; a shared record must not hold it",
                        f.kind, f.start, f.end, f.excerpt
                    );
                    one(Some(f.field), "personal_data", message)
                })
                .collect(),
            Error::ImportRejected { problems, .. } => problems,
            Error::RecordNotFound { .. } | Error::RecordDeleted { .. } => {
                let code = self.code();
                vec![one(Some("id".into()), code, self.to_string())]
            }
            other => {
                let code = other.code();
                vec![one(None, code, other.to_string())]
            }
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Error::BadRequest {
            code,
            message: message.into(),
        }
    }
}
