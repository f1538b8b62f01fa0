//! CSV in and out of a collection in the console (issue 16): the download
//! of a collection's records (`/records/{collection}/export.csv`, headed in
//! the visitor's language) and the import page (`/records/{collection}/import`):
//! a file upload (multipart, with the CSRF token and a dry-run box) that
//! runs the same import as `yui import` and the API (`crate::import`), and
//! shows what it did or every problem with its row and column.

use askama::Template;
use axum::extract::{Multipart, Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use yui_protocol::Collection;
use yui_protocol::spreadsheet::Problem;

use super::i18n::Lang;
use super::{AppState, Chrome, PageError, SignedIn, render};
use crate::actions::Action;
use crate::import::{ImportReport, MAX_IMPORT_ROWS};

fn collection_of(who: &SignedIn, name: &str) -> Result<Collection, PageError> {
    name.parse()
        .map_err(|_| who.error(StatusCode::NOT_FOUND, who.m().unknown_collection))
}

pub(super) fn csv_lang(lang: Lang) -> yui_protocol::spreadsheet::Lang {
    match lang {
        Lang::Ja => yui_protocol::spreadsheet::Lang::Ja,
        Lang::En => yui_protocol::spreadsheet::Lang::En,
    }
}

/// `/records/{collection}/export.csv`: every live record, for Excel.
pub async fn export(
    State(node): State<AppState>,
    who: SignedIn,
    Path(name): Path<String>,
) -> Result<Response, PageError> {
    let collection = collection_of(&who, &name)?;
    let csv = crate::export::collection_csv(&node.store, collection, csv_lang(who.lang()))
        .await
        .map_err(|e| who.failed(e))?;
    Ok(crate::http::csv_response(
        &crate::export::csv_file_name(&node.config.town, collection.name()),
        csv,
    ))
}

struct ProblemLine {
    row: String,
    column: String,
    message: String,
    code: &'static str,
}

#[derive(Template)]
#[template(path = "records_import.html")]
struct ImportPage {
    chrome: Chrome,
    collection: &'static str,
    label: &'static str,
    columns: String,
    max_rows: usize,
    /// What the import did (or, on a dry run, would do).
    done: Option<String>,
    /// Why nothing was written, and every problem.
    refused: Option<String>,
    problems: Vec<ProblemLine>,
    more: Option<String>,
}

fn page(
    who: &SignedIn,
    collection: Collection,
    status: StatusCode,
    done: Option<String>,
    refused: Option<String>,
    problems: Vec<ProblemLine>,
    more: Option<String>,
) -> Response {
    let (m, lang) = (who.m(), who.lang());
    let label = lang.collection(collection);
    let columns = std::iter::once("ID")
        .chain(collection.fields().iter().map(|f| lang.field(f)))
        .collect::<Vec<_>>()
        .join(", ");
    render(
        status,
        &ImportPage {
            chrome: who.chrome((m.import_title)(label), "records"),
            collection: collection.name(),
            label,
            columns,
            max_rows: MAX_IMPORT_ROWS,
            done,
            refused,
            problems,
            more,
        },
    )
}

/// The import page: a form to upload a file.
pub async fn form(who: SignedIn, Path(name): Path<String>) -> Result<Response, PageError> {
    let collection = collection_of(&who, &name)?;
    who.require(Action::Import(collection).allows(who.principal().role))?;
    Ok(page(
        &who,
        collection,
        StatusCode::OK,
        None,
        None,
        Vec::new(),
        None,
    ))
}

/// An uploaded file: imported (or checked, on a dry run), and the page
/// again with the outcome.
pub async fn upload(
    State(node): State<AppState>,
    who: SignedIn,
    Path(name): Path<String>,
    mut multipart: Multipart,
) -> Result<Response, PageError> {
    let m = who.m();
    let collection = collection_of(&who, &name)?;
    let (mut csrf, mut file, mut dry_run) = (None, Vec::new(), false);
    loop {
        match multipart.next_field().await {
            Ok(Some(field)) => {
                let name = field.name().unwrap_or("").to_owned();
                let Ok(bytes) = field.bytes().await else {
                    return Err(who.error(StatusCode::BAD_REQUEST, m.import_unreadable));
                };
                match name.as_str() {
                    "csrf" => csrf = Some(String::from_utf8_lossy(&bytes).into_owned()),
                    "file" => file = bytes.to_vec(),
                    "dry_run" => dry_run = &bytes[..] == b"true",
                    _ => {}
                }
            }
            Ok(None) => break,
            Err(_) => return Err(who.error(StatusCode::BAD_REQUEST, m.import_unreadable)),
        }
    }
    who.check_csrf(csrf.as_deref())?;
    who.require(Action::Import(collection).allows(who.principal().role))?;
    if file.is_empty() {
        let refused = Some(m.import_no_file.to_owned());
        return Ok(page(
            &who,
            collection,
            StatusCode::BAD_REQUEST,
            None,
            refused,
            Vec::new(),
            None,
        ));
    }
    match crate::import::import(&node, who.principal(), collection, &file, dry_run).await {
        Ok(report) => Ok(page(
            &who,
            collection,
            StatusCode::OK,
            Some(done_text(&who, &report)),
            None,
            Vec::new(),
            None,
        )),
        Err(crate::Error::ImportRejected { problems, total }) => {
            let lines: Vec<ProblemLine> = problems.iter().map(|p| line(&who, p)).collect();
            let more = (total > lines.len()).then(|| (m.import_more)(total - lines.len()));
            let refused = Some((m.import_refused)(total));
            Ok(page(
                &who,
                collection,
                StatusCode::UNPROCESSABLE_ENTITY,
                None,
                refused,
                lines,
                more,
            ))
        }
        Err(crate::Error::BodyTooLarge { .. }) => {
            Err(who.error(StatusCode::PAYLOAD_TOO_LARGE, m.import_too_large))
        }
        Err(e) => Err(who.failed(e)),
    }
}

fn done_text(who: &SignedIn, r: &ImportReport) -> String {
    let m = who.m();
    if r.dry_run {
        (m.import_checked)(r.rows, r.created, r.updated, r.unchanged)
    } else {
        (m.import_done)(r.rows, r.created, r.updated, r.unchanged)
    }
}

fn line(who: &SignedIn, p: &Problem) -> ProblemLine {
    let m = who.m();
    ProblemLine {
        row: if p.row == 0 {
            m.import_whole_file.to_owned()
        } else {
            p.row.to_string()
        },
        column: p
            .column
            .clone()
            .or_else(|| p.field.clone())
            .unwrap_or_default(),
        message: p.message.clone(),
        code: p.code,
    }
}
