//! `/api/v1/views/...`: the daily work views as JSON, and their entries in
//! the OpenAPI document. The views themselves are built by [`crate::daily`].

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use serde_json::Value;
use yui_protocol::schema::{FISCAL_YEAR_MAX, FISCAL_YEAR_MIN};

use super::AppState;
use super::extract::{QueryParams, ViewerAccess};
use crate::daily::{
    MAX_RECORDS, PrFilter, SkillFilter, TrainingFilter, WORKER_ORDER, orders_view,
    parse_fiscal_year, pr_view, skills_view, training_view,
};
use crate::error::Result;

/// `/views/...`, nested under `/api/v1` behind the token layer.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/views/skills", get(api_skills))
        .route("/views/orders", get(api_orders))
        .route("/views/training", get(api_training))
        .route("/views/pr", get(api_pr))
}

fn json(body: &impl Serialize) -> Response {
    (StatusCode::OK, axum::Json(body)).into_response()
}

fn empty_as_none(v: Option<String>) -> Option<String> {
    v.filter(|s| !s.trim().is_empty())
}

/// The skill matrix's filter from its query values: empty means no filter.
pub(super) fn skill_filter(status: Option<String>, skill: Option<String>) -> Result<SkillFilter> {
    let filter = SkillFilter {
        status: empty_as_none(status),
        skill: empty_as_none(skill),
    };
    if let Some(status) = &filter.status
        && !WORKER_ORDER.contains(&status.as_str())
    {
        return Err(crate::error::Error::bad_request(
            "invalid_query",
            format!(
                "status must be one of {}, or empty for all",
                WORKER_ORDER.join(", ")
            ),
        ));
    }
    Ok(filter)
}

/// The training log's fiscal year and worker from their query values.
pub(super) fn training_query(
    fiscal_year: Option<String>,
    worker: Option<String>,
) -> Result<(Option<i64>, Option<String>)> {
    Ok((
        parse_fiscal_year(fiscal_year.as_deref())?,
        empty_as_none(worker),
    ))
}

/// The PR plan's fiscal year from its query value.
pub(super) fn pr_query(fiscal_year: Option<String>) -> Result<Option<i64>> {
    parse_fiscal_year(fiscal_year.as_deref())
}

async fn api_skills(
    _: ViewerAccess,
    State(node): State<AppState>,
    QueryParams(filter): QueryParams<SkillFilter>,
) -> Result<Response> {
    let filter = skill_filter(filter.status, filter.skill)?;
    Ok(json(&skills_view(&node.store, &filter).await?))
}

async fn api_orders(_: ViewerAccess, State(node): State<AppState>) -> Result<Response> {
    Ok(json(&orders_view(&node.store).await?))
}

async fn api_training(
    _: ViewerAccess,
    State(node): State<AppState>,
    QueryParams(filter): QueryParams<TrainingFilter>,
) -> Result<Response> {
    let (fy, worker) = training_query(filter.fiscal_year, filter.worker)?;
    let (log, _) = training_view(&node.store, fy, worker.as_deref()).await?;
    Ok(json(&log))
}

async fn api_pr(
    _: ViewerAccess,
    State(node): State<AppState>,
    QueryParams(filter): QueryParams<PrFilter>,
) -> Result<Response> {
    let fy = pr_query(filter.fiscal_year)?;
    Ok(json(&pr_view(&node.store, fy).await?))
}

/// The views' entries in the OpenAPI document's `paths`.
pub fn openapi_paths() -> Vec<(&'static str, Value)> {
    use super::openapi::error;
    use serde_json::json;
    let r#ref = json!({"type": "object", "properties": {"id": {"type": "string"}, "name": {"type": ["string", "null"], "description": "null when the record is deleted or unknown"}}});
    // An empty value (or only white space) means no filter, as the
    // console's forms send it.
    let empty =
        json!({"type": "string", "pattern": format!("^[{}]*$", super::openapi::WHITE_SPACE)});
    let year = json!({"anyOf": [{"type": "integer", "minimum": FISCAL_YEAR_MIN, "maximum": FISCAL_YEAR_MAX}, empty]});
    let fy = json!({"name": "fiscal_year", "in": "query", "schema": year,
        "description": "fiscal year (April to March): 2024 is 2024-04-01 to 2025-03-31; empty: every year"});
    let note = format!(
        "Reads this town's local collections only, at most {MAX_RECORDS} records of each (newest first); truncated is true when a collection had more."
    );
    vec![
        (
            "/api/v1/views/skills",
            json!({"get": {"operationId": "views_skills", "tags": ["views"],
            "summary": "スキルの可視化 / Skill matrix: workers × skills with levels",
            "description": format!("Rows: workers, active and in training first, then registered, paused, left. Columns: every distinct skills[].skill, sorted. counts gives, per column, the workers assessed and those at level 3 or higher. {note}"),
            "parameters": [
                {"name": "status", "in": "query", "schema": {"anyOf": [{"type": "string", "enum": WORKER_ORDER}, empty]}, "description": "only workers with this status (empty: all)"},
                {"name": "skill", "in": "query", "schema": {"type": "string"}, "description": "only workers assessed in this skill, and only its column"}],
            "responses": {"200": {"description": "skills, all_skills, workers [{id, name, status, skills: {SKILL: {level, assessed_on}}}], counts [{skill, assessed, level3_plus}], truncated",
                "content": {"application/json": {"schema": {"type": "object"}}}},
                "400": error("an unknown query parameter or status (invalid_query)")}}}),
        ),
        (
            "/api/v1/views/orders",
            json!({"get": {"operationId": "views_orders", "tags": ["views"],
            "summary": "受発注 / Order pipeline: orders by status with hours and amounts",
            "description": format!("stages in pipeline order (inquiry, quoted, ordered, in_progress, delivered, invoiced, closed), each with its orders (soonest due first) and totals {{count, estimated_hours, actual_hours, amount_jpy}}; lost orders apart; totals over the pipeline without lost. An order is overdue when due_on is before today (Japan time) and it is not yet delivered. Customer and assignee names are resolved. {note}"),
            "responses": {"200": {"description": "today, stages, lost, totals, overdue, truncated",
                "content": {"application/json": {"schema": {"type": "object", "properties": {
                    "stages": {"type": "array", "items": {"type": "object", "properties": {
                        "status": {"type": "string"}, "totals": {"type": "object"},
                        "orders": {"type": "array", "items": {"type": "object", "properties": {
                            "id": {"type": "string"}, "title": {"type": "string"}, "customer": {"oneOf": [r#ref, {"type": "null"}]}, "assignees": {"type": "array", "items": r#ref},
                            "due_on": {"type": ["string", "null"]}, "overdue": {"type": "boolean"},
                            "estimated_hours": {"type": ["number", "null"]}, "actual_hours": {"type": ["number", "null"]}, "amount_jpy": {"type": ["integer", "null"]}}}}}}}}}}}}}}}),
        ),
        (
            "/api/v1/views/training",
            json!({"get": {"operationId": "views_training", "tags": ["views"],
            "summary": "研修・メンタリング / Training and mentoring log, newest first",
            "description": format!("trainings [{{id, held_on, title, audience, attendee_count, attendees}}] and mentoring [{{id, held_on, mentor, mentee}}]; with worker, only that worker's own log (trainings attended, mentoring as mentor or mentee). {note}"),
            "parameters": [fy, {"name": "worker", "in": "query", "schema": {"type": "string"}, "description": "a worker's record id"}],
            "responses": {"200": {"description": "fiscal_year, worker, fiscal_years, trainings, mentoring, truncated",
                "content": {"application/json": {"schema": {"type": "object"}}}},
                "400": error("an unknown query parameter or a bad fiscal_year (invalid_query)"), "404": error("no such worker (record_not_found)")}}}),
        ),
        (
            "/api/v1/views/pr",
            json!({"get": {"operationId": "views_pr", "tags": ["views"],
            "summary": "広報計画 / PR plan by month and audience",
            "description": format!("months: the twelve months of the fiscal year (default: the year under way), each with residents and customers items [{{id, title, status, channel, planned_on}}]; unscheduled: items without planned_on; by_status: the year's items per status. {note}"),
            "parameters": [{"name": "fiscal_year", "in": "query", "schema": year, "description": "default: the year under way"}],
            "responses": {"200": {"description": "fiscal_year, fiscal_years, months, unscheduled, by_status, truncated",
                "content": {"application/json": {"schema": {"type": "object"}}}},
                "400": error("an unknown query parameter or a bad fiscal_year (invalid_query)")}}}),
        ),
    ]
}
