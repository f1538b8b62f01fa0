//! CSV over HTTP (issue 16): `GET /api/v1/records/{collection}.csv` (a
//! collection as Excel opens it), `GET /api/v1/views/{view}.csv` (each
//! daily view) and `POST /api/v1/import/{collection}` (a CSV file in, all
//! rows or none, or a dry run). The files are made by [`crate::export`]
//! and read by [`crate::import`]; this module only translates.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use yui_protocol::Collection;
use yui_protocol::spreadsheet::Lang;

use super::extract::{Caller, QueryParams, ViewerAccess};
use super::records::collection;
use super::views::{pr_query, skill_filter, training_query};
use super::{AppState, json_response};
use crate::daily::{orders_view, pr_view, skills_view, training_view};
use crate::error::{Error, Result};
use crate::export;
use crate::import::{self, MAX_IMPORT_BYTES};

/// The CSV routes, nested under `/api/v1` behind the token layer. Each
/// collection's export is its own path, so that the path of a collection's
/// records (`/records/{collection}`) keeps meaning a collection.
pub(super) fn routes() -> Router<AppState> {
    let mut router = Router::new()
        .route(
            "/import/{collection}",
            post(import_csv).layer(DefaultBodyLimit::max(MAX_IMPORT_BYTES)),
        )
        .route("/views/skills.csv", get(skills_csv))
        .route("/views/orders.csv", get(orders_csv))
        .route("/views/training.csv", get(training_csv))
        .route("/views/pr.csv", get(pr_csv));
    for c in Collection::ALL {
        router = router.route(
            &format!("/records/{}.csv", c.name()),
            get(
                move |access: ViewerAccess,
                      state: State<AppState>,
                      query: QueryParams<LangQuery>| {
                    export_collection(c, access, state, query)
                },
            ),
        );
    }
    router
}

/// `lang`: the language of the header and the choice labels.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct LangQuery {
    lang: Option<String>,
}

pub(super) fn lang(value: Option<&str>) -> Result<Lang> {
    match value {
        None => Ok(Lang::Ja),
        Some(code) => Lang::from_code(code).ok_or_else(|| {
            Error::bad_request(
                "invalid_query",
                "lang must be ja (Japanese headings, the default) or en",
            )
        }),
    }
}

/// A CSV download: `text/csv` in UTF-8, offered as `name`.
pub fn csv_response(name: &str, body: String) -> Response {
    let disposition = format!("attachment; filename=\"{name}\"");
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/csv; charset=utf-8"),
            ),
            (
                header::CONTENT_DISPOSITION,
                HeaderValue::from_str(&disposition)
                    .unwrap_or(HeaderValue::from_static("attachment")),
            ),
        ],
        body,
    )
        .into_response()
}

async fn export_collection(
    c: Collection,
    _: ViewerAccess,
    State(node): State<AppState>,
    QueryParams(q): QueryParams<LangQuery>,
) -> Result<Response> {
    let lang = lang(q.lang.as_deref())?;
    let csv = export::collection_csv(&node.store, c, lang).await?;
    Ok(csv_response(
        &export::csv_file_name(&node.config.town, c.name()),
        csv,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SkillsCsvQuery {
    status: Option<String>,
    skill: Option<String>,
    lang: Option<String>,
}

async fn skills_csv(
    _: ViewerAccess,
    State(node): State<AppState>,
    QueryParams(q): QueryParams<SkillsCsvQuery>,
) -> Result<Response> {
    let lang = lang(q.lang.as_deref())?;
    let filter = skill_filter(q.status, q.skill)?;
    let m = skills_view(&node.store, &filter).await?;
    Ok(csv_response(
        &export::csv_file_name(&node.config.town, "skills"),
        export::skills_csv(&m, lang),
    ))
}

async fn orders_csv(
    _: ViewerAccess,
    State(node): State<AppState>,
    QueryParams(q): QueryParams<LangQuery>,
) -> Result<Response> {
    let lang = lang(q.lang.as_deref())?;
    let p = orders_view(&node.store).await?;
    Ok(csv_response(
        &export::csv_file_name(&node.config.town, "orders"),
        export::orders_csv(&p, lang),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TrainingCsvQuery {
    fiscal_year: Option<String>,
    worker: Option<String>,
    lang: Option<String>,
}

async fn training_csv(
    _: ViewerAccess,
    State(node): State<AppState>,
    QueryParams(q): QueryParams<TrainingCsvQuery>,
) -> Result<Response> {
    let lang = lang(q.lang.as_deref())?;
    let (fy, worker) = training_query(q.fiscal_year, q.worker)?;
    let (log, _) = training_view(&node.store, fy, worker.as_deref()).await?;
    Ok(csv_response(
        &export::csv_file_name(&node.config.town, "training"),
        export::training_csv(&log, lang),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PrCsvQuery {
    fiscal_year: Option<String>,
    lang: Option<String>,
}

async fn pr_csv(
    _: ViewerAccess,
    State(node): State<AppState>,
    QueryParams(q): QueryParams<PrCsvQuery>,
) -> Result<Response> {
    let lang = lang(q.lang.as_deref())?;
    let fy = pr_query(q.fiscal_year)?;
    let plan = pr_view(&node.store, fy).await?;
    Ok(csv_response(
        &export::csv_file_name(&node.config.town, "pr"),
        export::pr_csv(&plan, lang),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportQuery {
    dry_run: Option<String>,
}

/// The `Content-Type`s an import takes: CSV, text, and what browsers and
/// scripts send for a `.csv` file; a body without one is taken too.
const CSV_TYPES: [&str; 4] = [
    "text/csv",
    "text/plain",
    "application/vnd.ms-excel",
    "application/octet-stream",
];

/// The file of an import: the body as bytes, up to [`MAX_IMPORT_BYTES`],
/// sent as one of [`CSV_TYPES`] or without a `Content-Type` (anything else,
/// a form or JSON, is 415).
pub(super) struct CsvBody(Bytes);

impl<S: Send + Sync> FromRequest<S> for CsvBody {
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self> {
        if let Some(found) = req.headers().get(header::CONTENT_TYPE) {
            let found = String::from_utf8_lossy(found.as_bytes()).into_owned();
            let essence = found
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            if !CSV_TYPES.contains(&essence.as_str()) {
                return Err(Error::UnsupportedMediaType {
                    found,
                    expected: "text/csv",
                });
            }
        }
        Bytes::from_request(req, state)
            .await
            .map(CsvBody)
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    Error::BodyTooLarge {
                        limit: MAX_IMPORT_BYTES,
                    }
                } else {
                    Error::bad_request("unreadable_body", rejection.body_text())
                }
            })
    }
}

async fn import_csv(
    Caller(principal): Caller,
    State(node): State<AppState>,
    Path(name): Path<String>,
    QueryParams(q): QueryParams<ImportQuery>,
    CsvBody(body): CsvBody,
) -> Result<Response> {
    let c = collection(&name)?;
    let dry_run = match q.dry_run.as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => {
            return Err(Error::bad_request(
                "invalid_query",
                "dry_run must be true or false",
            ));
        }
    };
    let report = import::import(&node, &principal, c, &body, dry_run).await?;
    Ok(json_response(StatusCode::OK, &report))
}

/// The import body's media type: a string, with a file of one record as
/// the example when the collection's example names no other record (whose
/// id would differ on every node).
fn csv_media(c: Collection) -> serde_json::Value {
    let mut media = serde_json::json!({"schema": {"type": "string"}});
    if let Some(fields) = super::openapi::executable_example(c)
        && let Some(fields) = fields.as_object()
    {
        media["example"] = yui_protocol::spreadsheet::example_csv(c, fields, Lang::Ja).into();
    }
    media
}

/// The CSV routes' entries in the OpenAPI document's `paths`, one export
/// and one import path per collection.
pub fn openapi_paths() -> Vec<(String, serde_json::Value)> {
    use super::openapi::{answers, error};
    use serde_json::json;
    let lang = json!({"name": "lang", "in": "query", "schema": {"type": "string", "enum": ["ja", "en"], "default": "ja"},
        "description": "the language of the header and of the choice labels: ja (日本語, the default) or en"});
    let csv = |description: &str| {
        json!({"description": description,
            "headers": {"Content-Disposition": {"description": "attachment; filename=\"yui-TOWN-NAME.csv\"", "schema": {"type": "string"}}},
            "content": {"text/csv": {"schema": {"type": "string"}}}})
    };
    let format = "UTF-8 with a byte order mark, CRLF line ends, a header row, the id column first, dates YYYY-MM-DD, numbers plain, lists one item per line within their cell, a text cell that would start a formula (= + - @ tab CR) prefixed with ' (docs/operations.md 22).";
    let bad_query = error("an unknown query parameter, or a bad lang or filter (invalid_query)");
    let mut paths = Vec::new();
    for c in Collection::ALL {
        let name = c.name();
        let label = format!("{}（{}）", c.label_ja(), name);
        paths.push((
            format!("/api/v1/records/{name}.csv"),
            json!({"get": {"operationId": format!("export_{name}_csv"), "tags": [name],
                "summary": format!("{label}をCSVで / Every live {name} record as CSV for Excel, oldest first"),
                "description": format!("{format} A reference cell holds the record id, then the record's name for people. The file reads back with POST /api/v1/import/{name}."),
                "parameters": [lang.clone()],
                "responses": answers(&[("200", csv("the records")), ("400", bad_query.clone())])}}),
        ));
        let forbidden = if c == Collection::KpiReports {
            "needs the admin role (forbidden: publishing the town's KPI report is for administrators)"
        } else {
            "needs the editor role (forbidden)"
        };
        let guard = if c.is_shared() {
            " and, as this collection is shared, the personal-data guard on the values it would write (personal_data; no override)"
        } else {
            ""
        };
        paths.push((
            format!("/api/v1/import/{name}"),
            json!({"post": {"operationId": format!("import_{name}"), "tags": [name],
                "summary": format!("{label}にCSVを取り込む / Import a CSV file into {name}: every row or none"),
                "description": format!("The body is the file: UTF-8 (with or without a byte order mark), Shift_JIS/CP932 as Japanese Excel saves it, or UTF-16 with a byte order mark (tab-separated); at most {MAX_IMPORT_BYTES} bytes and {} record rows. Columns are named by the field's Japanese label, English label or API name; the id column and the town and time columns of an export are known too, and any other column is refused. A row with the id of a {name} record updates it (only the cells that differ; an unchanged row writes nothing), a row without an id creates a record{}. Everything is checked first: the header, each row against the schema, the ids, the references (to a record on this node or to a row of the same file by its id){guard}. Any problem refuses the whole file with 422 import_rejected, listing every problem with its row (the header is row 1) and column; nothing is written. With dry_run=true nothing is written either way. Audited as record.import.",
                    import::MAX_IMPORT_ROWS,
                    if c.is_shared() { "" } else { "; a row with an id this node has no record of creates the record with that id" }),
                "parameters": [{"name": "dry_run", "in": "query", "schema": {"type": "boolean", "default": false},
                    "description": "check the file and say what it would do, writing nothing"}],
                "requestBody": {"required": true, "description": "the file; sent as text/csv, text/plain, application/vnd.ms-excel or application/octet-stream, or without a Content-Type",
                    "content": {"text/csv": csv_media(c), "text/plain": {"schema": {"type": "string"}}}},
                "responses": answers(&[
                    ("200", json!({"description": "imported (or, on a dry run, what would be)", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ImportReport"}}}})),
                    ("400", error("a bad query parameter (invalid_query) or an unreadable body (unreadable_body)")),
                    ("403", error(forbidden)),
                    ("413", error(&format!("the file is larger than {MAX_IMPORT_BYTES} bytes (body_too_large)"))),
                    ("415", error("the body is sent as something other than a CSV file, such as a form or JSON (unsupported_media_type); send 'Content-Type: text/csv'")),
                    ("422", error("the file has problems; nothing was written (import_rejected, with problems: each with row, column, field, code and message, and problem_count)"))])}}),
        ));
    }
    let view = |op: &str,
                summary: &str,
                params: serde_json::Value,
                extra: &[(&str, serde_json::Value)]| {
        let mut list = vec![("200", csv("the view")), ("400", bad_query.clone())];
        list.extend(extra.iter().cloned());
        json!({"get": {"operationId": op, "tags": ["views"], "summary": summary,
            "description": format!("{format} A view's CSV is for reading: it does not import."),
            "parameters": params, "responses": answers(&list)}})
    };
    let views = super::views::openapi_paths();
    let params_of = |path: &str| {
        views
            .iter()
            .find(|(p, _)| *p == path)
            .and_then(|(_, v)| v["get"]["parameters"].as_array().cloned())
            .unwrap_or_default()
    };
    let with_lang = |path: &str| {
        let mut p = params_of(path);
        p.push(lang.clone());
        serde_json::Value::Array(p)
    };
    paths.push(("/api/v1/views/skills.csv".into(), view("views_skills_csv",
        "スキルの可視化（CSV） / Skill matrix as CSV: a row per worker, a column per skill with the level",
        with_lang("/api/v1/views/skills"), &[])));
    paths.push(("/api/v1/views/orders.csv".into(), view("views_orders_csv",
        "受発注（CSV） / Order pipeline as CSV: a row per order, in pipeline order, lost orders last",
        with_lang("/api/v1/views/orders"), &[])));
    paths.push((
        "/api/v1/views/training.csv".into(),
        view(
            "views_training_csv",
            "研修・メンタリング（CSV） / Training and mentoring log as CSV",
            with_lang("/api/v1/views/training"),
            &[("404", error("no such worker (record_not_found)"))],
        ),
    ));
    paths.push(("/api/v1/views/pr.csv".into(), view("views_pr_csv",
        "広報計画（CSV） / PR plan as CSV: the year's items by month, then those without a date",
        with_lang("/api/v1/views/pr"), &[])));
    paths
}
