//! The towns' daily work views (issue 6): the skill matrix (スキルの可視化),
//! the order pipeline (受発注), the training and mentoring log and the PR plan,
//! each computed from this town's LOCAL collections only.
//!
//! The views' shapes and the rules that build them are pure functions over
//! record views in `yui_protocol::daily` (re-exported here), so the JSON API
//! and the console show the same thing; this module gathers the records and
//! reads the date. The JSON API serves the views from `http::views`, the
//! console renders them in `console::daily`.
//!
//! A view reads every live record of the collections it needs, newest first,
//! up to [`MAX_RECORDS`] per collection: a town keeps tens or hundreds of
//! workers and orders, so this is cheap, and the cap keeps a runaway
//! collection from costing more; a view that hit it says so (`truncated`).

use serde::Deserialize;
pub use yui_protocol::daily::*;
use yui_protocol::kpi::fiscal_year;
use yui_protocol::schema::{FISCAL_YEAR_MAX, FISCAL_YEAR_MIN};
use yui_protocol::{Collection, RecordView};

use crate::clock::today_jst;
use crate::error::{Error, Result};
use crate::store::{ListQuery, Store};

/// Most records of one collection a view reads (newest first).
pub const MAX_RECORDS: usize = 5_000;
/// Records per store read while gathering a collection.
const READ_PAGE: usize = 500;

/// The live records of one local collection, newest first, at most
/// [`MAX_RECORDS`]; `true` when there were more.
pub async fn load(store: &Store, collection: Collection) -> Result<(Vec<RecordView>, bool)> {
    // Architecture invariant: the daily views read local collections only.
    assert!(
        !collection.is_shared(),
        "daily views read local collections only"
    );
    let mut views = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .list(
                collection,
                ListQuery {
                    limit: READ_PAGE,
                    cursor,
                    include_deleted: false,
                    filters: Vec::new(),
                },
            )
            .await?;
        for raw in &page.items {
            let view: RecordView = serde_json::from_str(raw.get())
                .map_err(|e| Error::Storage(format!("reading a stored {collection} view: {e}")))?;
            views.push(view);
        }
        match page.next_cursor {
            Some(_) if views.len() >= MAX_RECORDS => {
                views.truncate(MAX_RECORDS);
                return Ok((views, true));
            }
            Some(next) => cursor = Some(next),
            None => return Ok((views, false)),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingFilter {
    pub fiscal_year: Option<String>,
    /// A worker's id: their own log.
    pub worker: Option<String>,
}

/// A `fiscal_year` query value: empty means every year.
pub fn parse_fiscal_year(value: Option<&str>) -> Result<Option<i64>> {
    match value.map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => v
            .parse::<i64>()
            .ok()
            .filter(|y| (FISCAL_YEAR_MIN..=FISCAL_YEAR_MAX).contains(y))
            .map(Some)
            .ok_or_else(|| {
                Error::bad_request(
                    "invalid_query",
                    format!(
                        "fiscal_year must be a year from {FISCAL_YEAR_MIN} to {FISCAL_YEAR_MAX} (FY2024 is April 2024 to March 2025), not {:?}",
                        v.chars().take(20).collect::<String>()
                    ),
                )
            }),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrFilter {
    pub fiscal_year: Option<String>,
}

// -------------------------------------------------------- gathering views

/// The skill matrix of this node's workers.
pub async fn skills_view(store: &Store, filter: &SkillFilter) -> Result<SkillMatrix> {
    let (workers, truncated) = load(store, Collection::Workers).await?;
    Ok(skill_matrix(&workers, filter, truncated))
}

pub async fn orders_view(store: &Store) -> Result<OrderPipeline> {
    let (orders, t1) = load(store, Collection::Orders).await?;
    let (customers, t2) = load(store, Collection::Customers).await?;
    let (workers, t3) = load(store, Collection::Workers).await?;
    Ok(order_pipeline(
        &orders,
        &customers,
        &workers,
        &today_jst(),
        t1 || t2 || t3,
    ))
}

/// Also the workers, for the console's worker filter.
pub async fn training_view(
    store: &Store,
    fy: Option<i64>,
    worker: Option<&str>,
) -> Result<(TrainingLog, Vec<RecordView>)> {
    let (trainings, t1) = load(store, Collection::Trainings).await?;
    let (mentoring, t2) = load(store, Collection::Mentoring).await?;
    let (workers, t3) = load(store, Collection::Workers).await?;
    if let Some(w) = worker
        && !workers.iter().any(|r| r.id.as_str() == w)
    {
        return Err(Error::RecordNotFound {
            collection: Collection::Workers.name().to_owned(),
            id: w.chars().take(60).collect(),
        });
    }
    let log = training_log(&trainings, &mentoring, &workers, fy, worker, t1 || t2 || t3);
    Ok((log, workers))
}

/// The PR plan of `fy`, or of the fiscal year under way.
pub async fn pr_view(store: &Store, fy: Option<i64>) -> Result<PrPlan> {
    let (items, truncated) = load(store, Collection::PrItems).await?;
    let fy = fy.unwrap_or_else(|| fiscal_year(&today_jst()).unwrap_or(2024));
    Ok(pr_plan(&items, fy, truncated))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fiscal_year_queries() {
        assert_eq!(parse_fiscal_year(None).ok(), Some(None));
        assert_eq!(parse_fiscal_year(Some("")).ok(), Some(None));
        assert_eq!(parse_fiscal_year(Some("2024")).ok(), Some(Some(2024)));
        assert!(parse_fiscal_year(Some("令和6")).is_err());
        assert!(parse_fiscal_year(Some("1999")).is_err());
    }
}
