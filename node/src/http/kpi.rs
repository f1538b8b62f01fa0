//! `/api/v1/kpi`, `/kpi.csv` and `/kpi/draft`: the KPI roll-up and this
//! town's draft as JSON and CSV. The figures come from [`crate::kpi`].

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::json;
use yui_protocol::kpi::{self, Rollup};

use super::AppState;
use super::extract::{EditorAccess, QueryParams, ViewerAccess};
use crate::error::Result;
use crate::kpi::{draft, fiscal_year_or_current, rollup};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct YearQuery {
    fiscal_year: Option<i64>,
}

/// `/kpi`, `/kpi.csv` and `/kpi/draft`, nested under `/api/v1` behind the
/// token layer.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/kpi", get(api_rollup))
        .route("/kpi.csv", get(api_csv))
        .route("/kpi/draft", get(api_draft))
}

async fn api_rollup(
    _: ViewerAccess,
    State(node): State<AppState>,
    QueryParams(q): QueryParams<YearQuery>,
) -> Result<Response> {
    let fy = fiscal_year_or_current(q.fiscal_year)?;
    Ok(axum::Json(rollup(&node, fy).await?).into_response())
}

/// The roll-up as a CSV download, named for its year.
pub fn csv_response(r: &Rollup) -> Response {
    let disposition = format!("attachment; filename=\"yui-kpi-FY{}.csv\"", r.fiscal_year);
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
        kpi::rollup_csv(r),
    )
        .into_response()
}

async fn api_csv(
    _: ViewerAccess,
    State(node): State<AppState>,
    QueryParams(q): QueryParams<YearQuery>,
) -> Result<Response> {
    let fy = fiscal_year_or_current(q.fiscal_year)?;
    Ok(csv_response(&rollup(&node, fy).await?))
}

async fn api_draft(
    _: EditorAccess,
    State(node): State<AppState>,
    QueryParams(q): QueryParams<YearQuery>,
) -> Result<Response> {
    let fy = fiscal_year_or_current(q.fiscal_year)?;
    let d = draft(&node, fy).await?;
    let (start, end) = kpi::fiscal_year_span(fy);
    let report = d.report.as_ref().map(|r| {
        json!({
            "id": r.id,
            "updated_at": r.updated_at,
            "fields": r.fields,
        })
    });
    Ok(axum::Json(json!({
        "town": d.town,
        "fiscal_year": fy,
        "period": {"start": start, "end": end},
        "figures": d.draft.figures,
        "basis": {
            "hires": d.draft.hires,
            "pilots": d.draft.pilots,
            "members": d.draft.members,
        },
        "report_id": d.report.as_ref().map(|r| r.id.to_string()),
        "report": report,
    }))
    .into_response())
}
