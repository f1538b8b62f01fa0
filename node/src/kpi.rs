//! KPI reports on the node (issue 6): gathers what `yui_protocol::kpi`
//! computes over — the `kpi_reports` of every town, this town's workers and
//! pilot results, the member towns, today's date in Japan — and publishes
//! this town's report for a year. The local API's KPI endpoints are in
//! `crate::http::kpi`, the console's pages in `crate::console`.
//!
//! Publishing is an ordinary create or update of the town's one
//! `kpi_reports` record for the year, through the store's validation and
//! personal-data guard, and is audited as `kpi.publish`.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};
use yui_protocol::kpi::{self, Draft, Rollup};
use yui_protocol::validate::{validate_create, validate_patch};
use yui_protocol::{Collection, RecordView};

use crate::accounts::Principal;
use crate::actions::{Action, Entry};
use yui_protocol::schema::{FISCAL_YEAR_MAX, FISCAL_YEAR_MIN};

use crate::clock::today_jst;
use crate::error::{Error, Result};
use crate::node::Node;

/// The figures a report carries, in the order of SPEC §4.
pub use crate::actions::KPI_FIGURES as FIGURES;

/// The fiscal years the schema accepts (`kpi_reports.fiscal_year`).
const YEARS: std::ops::RangeInclusive<i64> = FISCAL_YEAR_MIN..=FISCAL_YEAR_MAX;

/// The fiscal year under way.
pub fn current_fiscal_year() -> i64 {
    kpi::fiscal_year(&today_jst()).unwrap_or(2024)
}

/// A requested fiscal year, or the current one; refuses years no report
/// can have.
pub fn fiscal_year_or_current(requested: Option<i64>) -> Result<i64> {
    match requested {
        None => Ok(current_fiscal_year()),
        Some(fy) if YEARS.contains(&fy) => Ok(fy),
        Some(fy) => Err(Error::bad_request(
            "invalid_fiscal_year",
            format!(
                "fiscal year {fy} is out of range; use a year from {} to {}",
                YEARS.start(),
                YEARS.end()
            ),
        )),
    }
}

/// The consortium's towns as this node knows them: itself and every town
/// whose consortium certificate it has verified (its peers' from their
/// handshakes, the others' from the certificates that came with their
/// signed changes: protocol.md 7).
pub async fn member_towns(node: &Node) -> Result<BTreeSet<String>> {
    // Only towns whose consortium certificate this node has verified (from
    // a signature or a handshake), never a town string a record carries.
    let mut towns: BTreeSet<String> = node.store.certified_towns().await?.into_iter().collect();
    towns.insert(node.config.town.clone());
    Ok(towns)
}

/// The consortium's roll-up for `fy`.
pub async fn rollup(node: &Node, fy: i64) -> Result<Rollup> {
    let reports = node.store.all_views(Collection::KpiReports).await?;
    let towns = member_towns(node).await?;
    Ok(kpi::rollup(fy, &reports, &towns, &today_jst()))
}

/// This town's draft for a year, with what it was computed from.
pub struct DraftReport {
    pub town: String,
    pub fiscal_year: i64,
    pub draft: Draft,
    /// The workers and pilot results the draft looked at (for their names).
    pub workers: Vec<RecordView>,
    pub pilots: Vec<RecordView>,
    /// This town's published report for the year, if any.
    pub report: Option<RecordView>,
}

impl DraftReport {
    /// A text field of one of the records the draft counted.
    pub fn name_of(views: &[RecordView], id: &yui_protocol::RecordId, field: &str) -> String {
        views
            .iter()
            .find(|v| &v.id == id)
            .and_then(|v| v.fields.get(field))
            .and_then(Value::as_str)
            .unwrap_or(id.as_str())
            .to_owned()
    }
}

/// This town's report for `fy`, if published: the latest, should a
/// partition have let two exist.
fn own_report(reports: Vec<RecordView>, town: &str, fy: i64) -> Option<RecordView> {
    reports
        .into_iter()
        .filter(|r| r.town == town && !r.deleted)
        .filter(|r| r.fields.get("fiscal_year").and_then(Value::as_i64) == Some(fy))
        .max_by(|a, b| (&a.updated_at, &a.id).cmp(&(&b.updated_at, &b.id)))
}

pub async fn draft(node: &Node, fy: i64) -> Result<DraftReport> {
    let town = node.config.town.clone();
    let workers = node.store.all_views(Collection::Workers).await?;
    let pilots = node.store.all_views(Collection::PilotResults).await?;
    let members = member_towns(node).await?;
    let draft = kpi::draft_basis(&town, fy, &workers, &pilots, &members);
    let reports = node.store.all_views(Collection::KpiReports).await?;
    Ok(DraftReport {
        report: own_report(reports, &town, fy),
        town,
        fiscal_year: fy,
        draft,
        workers,
        pilots,
    })
}

/// What [`publish`] did.
pub struct Published {
    pub record: RecordView,
    pub created: bool,
}

/// Creates or updates this town's report for `fy` with `fields` (the four
/// figures and `note`; an empty or null note removes it), and audits it as
/// `kpi.publish`. Validation errors name the fields of `kpi_reports`.
pub async fn publish(
    node: &Node,
    principal: &Principal,
    fy: i64,
    mut fields: Map<String, Value>,
) -> Result<Published> {
    Action::Create(Collection::KpiReports).check(principal)?;
    let town = node.config.town.clone();
    fields.insert("fiscal_year".into(), json!(fy));
    let reports = node.store.all_views(Collection::KpiReports).await?;
    let now = crate::clock::now_ms();
    let (stored, created) = match own_report(reports, &town, fy) {
        None => {
            fields.retain(|_, v| !v.is_null() && v.as_str() != Some(""));
            let typed = validate_create(Collection::KpiReports, &fields)?;
            let stored = node
                .store
                .create(Collection::KpiReports, typed, now)
                .await?;
            (stored, true)
        }
        Some(existing) => {
            // Only what changed, so a publish does not overwrite a field
            // another node changed meanwhile with the same value.
            let mut patch = Map::new();
            for (name, value) in fields {
                let value = if value.as_str() == Some("") {
                    Value::Null
                } else {
                    value
                };
                let current = existing.fields.get(&name).cloned().unwrap_or(Value::Null);
                if value != current {
                    patch.insert(name, value);
                }
            }
            let typed = validate_patch(Collection::KpiReports, &patch)?;
            let stored = node
                .store
                .update(Collection::KpiReports, existing.id.to_string(), typed, now)
                .await?;
            (stored, false)
        }
    };
    let record: RecordView =
        serde_json::from_str(stored.get()).map_err(|e| Error::Storage(e.to_string()))?;
    let entry = Entry::record_written(
        Collection::KpiReports,
        record.id.as_str(),
        created,
        [],
        &stored,
    );
    crate::actions::record_written(node, principal, &entry, "", &[]).await;
    Ok(Published { record, created })
}
