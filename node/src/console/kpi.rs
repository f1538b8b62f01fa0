//! The KPI pages (issue 6): the consortium's roll-up per fiscal year with a
//! server-rendered SVG chart and a CSV download, and the administrator's
//! draft-and-publish form for this town's report. The dashboard's KPI box
//! uses [`totals`] too. The figures themselves come from [`crate::kpi`].

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::{Map, Value};
use yui_protocol::kpi::{Figures, Rollup, Targets};
use yui_protocol::{Collection, ValidationErrors};

use super::i18n::{Lang, Messages};
use super::{AppState, Chrome, PageError, SignedIn, render, show_time};
use crate::actions::Action;
use crate::kpi::{DraftReport, FIGURES};

/// Publishing the town's report: a write of `kpi_reports` (admin).
const PUBLISH: Action = Action::Create(Collection::KpiReports);

fn label(lang: Lang, field: &str) -> &'static str {
    Collection::KpiReports
        .field(field)
        .map_or("", |d| lang.field(d))
}

fn figure(f: &Figures, field: &str) -> u64 {
    match field {
        "new_hires" => f.new_hires,
        "pilot_projects" => f.pilot_projects,
        "dx_certified_businesses" => f.dx_certified_businesses,
        _ => f.member_municipalities,
    }
}

fn target(t: &Targets, field: &str) -> u64 {
    figure(
        &Figures {
            new_hires: t.new_hires,
            pilot_projects: t.pilot_projects,
            dx_certified_businesses: t.dx_certified_businesses,
            member_municipalities: t.member_municipalities,
        },
        field,
    )
}

/// One indicator's total against its target.
pub struct TotalRow {
    pub label: &'static str,
    pub total: u64,
    pub target: u64,
    pub achieved: bool,
}

pub fn totals(lang: Lang, r: &Rollup) -> Vec<TotalRow> {
    FIGURES
        .iter()
        .map(|f| {
            let (total, target) = (figure(&r.total, f), target(&r.targets, f));
            TotalRow {
                label: label(lang, f),
                total,
                target,
                achieved: total >= target,
            }
        })
        .collect()
}

struct TownRow {
    town: String,
    /// The four figures as text; empty when the town has not reported.
    figures: Vec<String>,
    reported: bool,
    as_of: String,
    stale: bool,
}

struct Bar {
    x: u32,
    y: u32,
    w: u32,
    h: u32,
    fill: &'static str,
    value: String,
    label: String,
    /// Centre of the bar, for its labels.
    cx: u32,
    title: String,
}

struct Group {
    label: &'static str,
    cx: u32,
    x1: u32,
    x2: u32,
    target_y: u32,
    target_label: String,
    bars: Vec<Bar>,
}

/// An inline SVG bar chart: per indicator, a bar per town and one for the
/// total, on the indicator's own scale, with its target as a dashed line.
struct Chart {
    width: u32,
    height: u32,
    axis_y: u32,
    groups: Vec<Group>,
}

/// Colours for the towns' bars; every bar also carries its town's name and
/// value as text, so the chart reads without colour.
const PALETTE: [&str; 6] = [
    "#2f5d50", "#e0a526", "#5b7db1", "#b05a4a", "#7a6aa8", "#4a9a8a",
];
const TOTAL_FILL: &str = "#3a3a3a";

fn chart(lang: Lang, m: &Messages, r: &Rollup) -> Chart {
    const GROUP_W: u32 = 190;
    const TOP: u32 = 36;
    const PLOT_H: u32 = 170;
    let axis_y = TOP + PLOT_H;
    let groups = FIGURES
        .iter()
        .enumerate()
        .map(|(g, field)| {
            let x0 = g as u32 * GROUP_W;
            let goal = target(&r.targets, field);
            let total = figure(&r.total, field);
            let mut values: Vec<(String, Option<u64>, &'static str)> = r
                .towns
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    (
                        t.town.clone(),
                        t.figures.map(|f| figure(&f, field)),
                        PALETTE[i % PALETTE.len()],
                    )
                })
                .collect();
            values.push((m.kpi_total.to_owned(), Some(total), TOTAL_FILL));
            let scale = values
                .iter()
                .filter_map(|v| v.1)
                .chain([goal, 1])
                .max()
                .unwrap_or(1);
            let height = |v: u64| (v * u64::from(PLOT_H) / scale) as u32;
            let slot = (GROUP_W - 30) / values.len() as u32;
            let w = (slot * 7 / 10).clamp(4, 28);
            let name = label(lang, field);
            let bars = values
                .into_iter()
                .enumerate()
                .map(|(i, (town, value, fill))| {
                    let cx = x0 + 15 + slot * i as u32 + slot / 2;
                    let h = value.map_or(0, height);
                    let shown =
                        value.map_or_else(|| m.kpi_missing_label.to_owned(), |v| v.to_string());
                    Bar {
                        x: cx - w / 2,
                        y: axis_y - h,
                        w,
                        h,
                        fill,
                        title: format!("{town}: {name} {shown}"),
                        value: value.map_or_else(|| "—".to_owned(), |v| v.to_string()),
                        label: town,
                        cx,
                    }
                })
                .collect();
            Group {
                label: name,
                cx: x0 + GROUP_W / 2,
                x1: x0 + 8,
                x2: x0 + GROUP_W - 8,
                target_y: axis_y - height(goal),
                target_label: format!("{} {goal}", m.kpi_target),
                bars,
            }
        })
        .collect();
    Chart {
        width: GROUP_W * FIGURES.len() as u32,
        height: axis_y + 95,
        axis_y,
        groups,
    }
}

#[derive(Template)]
#[template(path = "kpi.html")]
struct KpiPage {
    chrome: Chrome,
    notice: Option<&'static str>,
    fiscal_year: i64,
    period: String,
    years: Vec<i64>,
    totals: Vec<TotalRow>,
    labels: Vec<&'static str>,
    towns: Vec<TownRow>,
    missing: Option<String>,
    stale: Option<String>,
    chart: Chart,
    can_publish: bool,
}

#[derive(Deserialize)]
pub struct YearQuery {
    fiscal_year: Option<String>,
    done: Option<String>,
}

/// The year asked for, or the current one; a year no report can have is a
/// 400 page.
fn year_of(who: &SignedIn, requested: Option<&str>) -> Result<i64, PageError> {
    let requested = match requested.map(str::trim).filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(
            s.parse::<i64>()
                .map_err(|_| who.error(StatusCode::BAD_REQUEST, who.m().kpi_bad_year))?,
        ),
    };
    crate::kpi::fiscal_year_or_current(requested)
        .map_err(|_| who.error(StatusCode::BAD_REQUEST, who.m().kpi_bad_year))
}

pub async fn show(
    State(node): State<AppState>,
    who: SignedIn,
    Query(q): Query<YearQuery>,
) -> Result<Response, PageError> {
    let (m, lang) = (who.m(), who.lang());
    let fy = year_of(&who, q.fiscal_year.as_deref())?;
    let r = crate::kpi::rollup(&node, fy)
        .await
        .map_err(|e| who.failed(e))?;
    let r = by_name(r, &*node.town_names().await);
    let current = crate::kpi::current_fiscal_year();
    let years = (fy.min(2024)..=fy.max(current + 1)).rev().collect();
    let towns = r
        .towns
        .iter()
        .map(|t| TownRow {
            town: t.town.clone(),
            figures: FIGURES
                .iter()
                .map(|f| {
                    t.figures
                        .map_or_else(String::new, |v| figure(&v, f).to_string())
                })
                .collect(),
            reported: t.figures.is_some(),
            as_of: t.as_of.as_deref().map_or_else(String::new, show_time),
            stale: t.stale,
        })
        .collect();
    let comma = if lang == Lang::Ja { "、" } else { ", " };
    let missing = (!r.missing.is_empty()).then(|| (m.kpi_missing)(fy, &r.missing.join(comma)));
    let stale = (!r.stale.is_empty()).then(|| {
        let list: Vec<String> = r
            .towns
            .iter()
            .filter(|t| t.stale)
            .map(|t| {
                let date = t.as_of.as_deref().map(show_time).unwrap_or_default();
                (m.kpi_stale_town)(&t.town, date.get(0..10).unwrap_or(&date))
            })
            .collect();
        (m.kpi_stale)(&list.join(comma))
    });
    let page = KpiPage {
        chrome: who.chrome((m.kpi_page_title)(fy), "kpi"),
        notice: match q.done.as_deref() {
            Some("created") => Some(m.kpi_done_created),
            Some("updated") => Some(m.kpi_done_updated),
            _ => None,
        },
        fiscal_year: fy,
        period: (m.kpi_period)(fy),
        years,
        totals: totals(lang, &r),
        labels: FIGURES.iter().map(|f| label(lang, f)).collect(),
        towns,
        missing,
        stale,
        chart: chart(lang, m, &r),
        can_publish: PUBLISH.allows(who.principal().role),
    };
    Ok(render(StatusCode::OK, &page))
}

/// The roll-up as CSV, for the console's download link (session auth; the
/// API's `/api/v1/kpi.csv` answers the same to a token).
/// The roll-up with its towns by their names, for a page (the CSV keeps
/// the ids, which the evaluation's tables join on).
fn by_name(
    mut r: yui_protocol::kpi::Rollup,
    names: &crate::pki::TownNames,
) -> yui_protocol::kpi::Rollup {
    for line in &mut r.towns {
        line.town = names.show(&line.town).to_owned();
    }
    for town in r.missing.iter_mut().chain(r.stale.iter_mut()) {
        *town = names.show(town).to_owned();
    }
    r
}

pub async fn csv(
    State(node): State<AppState>,
    who: SignedIn,
    Query(q): Query<YearQuery>,
) -> Result<Response, PageError> {
    let fy = year_of(&who, q.fiscal_year.as_deref())?;
    let r = crate::kpi::rollup(&node, fy)
        .await
        .map_err(|e| who.failed(e))?;
    Ok(crate::http::kpi::csv_response(&r))
}

struct DraftField {
    name: &'static str,
    label: &'static str,
    value: String,
    drafted: u64,
    published: Option<u64>,
    basis: String,
    /// Names of the records counted (workers, pilot results).
    counted: Vec<String>,
    errors: Vec<String>,
}

#[derive(Template)]
#[template(path = "kpi_draft.html")]
struct DraftPage {
    chrome: Chrome,
    fiscal_year: i64,
    status: String,
    form_errors: Vec<&'static str>,
    fields: Vec<DraftField>,
    note_label: &'static str,
    note: String,
    note_errors: Vec<String>,
    published: bool,
}

/// What the form last held, and what went wrong with it, if anything.
#[derive(Default)]
struct Submitted {
    values: std::collections::HashMap<&'static str, String>,
    errors: std::collections::HashMap<String, Vec<String>>,
    form_errors: Vec<&'static str>,
}

fn draft_page(who: &SignedIn, d: &DraftReport, submitted: Option<&Submitted>) -> DraftPage {
    let (m, lang) = (who.m(), who.lang());
    let fy = d.fiscal_year;
    let period = (m.kpi_period)(fy);
    let published = |f: &str| {
        d.report
            .as_ref()
            .map(|r| r.fields.get(f).and_then(Value::as_u64).unwrap_or(0))
    };
    let errors = |f: &str| {
        submitted
            .and_then(|s| s.errors.get(f).cloned())
            .unwrap_or_default()
    };
    let figures = d.draft.figures;
    let fields = FIGURES
        .iter()
        .map(|&name| {
            let drafted = figure(&figures, name);
            let (basis, counted) = match name {
                "new_hires" => (
                    (m.kpi_basis_hires)(&period, drafted),
                    d.draft
                        .hires
                        .iter()
                        .map(|id| DraftReport::name_of(&d.workers, id, "name"))
                        .collect(),
                ),
                "pilot_projects" => (
                    (m.kpi_basis_pilots)(&period, drafted),
                    d.draft
                        .pilots
                        .iter()
                        .map(|id| DraftReport::name_of(&d.pilots, id, "title"))
                        .collect(),
                ),
                "dx_certified_businesses" => (m.kpi_basis_dx.to_owned(), Vec::new()),
                _ => (
                    (m.kpi_basis_members)(drafted, &d.draft.members.join(", ")),
                    Vec::new(),
                ),
            };
            // Shown: what was submitted, else what is published, else the draft.
            let value = submitted
                .and_then(|s| s.values.get(name).cloned())
                .or_else(|| published(name).map(|v| v.to_string()))
                .unwrap_or_else(|| drafted.to_string());
            DraftField {
                name,
                label: label(lang, name),
                value,
                drafted,
                published: published(name),
                basis,
                counted,
                errors: errors(name),
            }
        })
        .collect();
    let note = submitted
        .and_then(|s| s.values.get("note").cloned())
        .or_else(|| {
            d.report
                .as_ref()
                .and_then(|r| r.fields.get("note"))
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .unwrap_or_default();
    DraftPage {
        chrome: who.chrome((m.kpi_draft_title)(fy), "kpi"),
        fiscal_year: fy,
        status: d.report.as_ref().map_or_else(
            || m.kpi_not_published.to_owned(),
            |r| (m.kpi_published_at)(&show_time(&r.updated_at)),
        ),
        form_errors: submitted.map(|s| s.form_errors.clone()).unwrap_or_default(),
        fields,
        note_label: label(lang, "note"),
        note,
        note_errors: errors("note"),
        published: d.report.is_some(),
    }
}

pub async fn draft_form(
    State(node): State<AppState>,
    who: SignedIn,
    Query(q): Query<YearQuery>,
) -> Result<Response, PageError> {
    who.require(PUBLISH.allows(who.principal().role))?;
    let fy = year_of(&who, q.fiscal_year.as_deref())?;
    let d = crate::kpi::draft(&node, fy)
        .await
        .map_err(|e| who.failed(e))?;
    Ok(render(StatusCode::OK, &draft_page(&who, &d, None)))
}

/// A count typed by a person: digits only, full-width ones too.
fn parse_count(text: &str) -> Option<u64> {
    let digits: String = text
        .trim()
        .chars()
        .map(|c| match c {
            '０'..='９' => char::from_u32(c as u32 - '０' as u32 + '0' as u32).unwrap_or(c),
            c => c,
        })
        .collect();
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Publishes this town's report for the year: creates it, or updates the
/// one already published (admin).
pub async fn publish(
    State(node): State<AppState>,
    who: SignedIn,
    body: Bytes,
) -> Result<Response, PageError> {
    let form = who.posted_form(&body, PUBLISH.allows(who.principal().role))?;
    let (m, lang) = (who.m(), who.lang());
    let fy = year_of(&who, form.get("fiscal_year"))?;
    let mut submitted = Submitted::default();
    let mut fields = Map::new();
    for name in FIGURES {
        let text = form.get(name).unwrap_or("").to_owned();
        match parse_count(&text) {
            Some(n) => {
                fields.insert(name.to_owned(), Value::from(n));
            }
            None => submitted
                .errors
                .entry(name.to_owned())
                .or_default()
                .push(m.kpi_err_number.to_owned()),
        }
        submitted.values.insert(name, text);
    }
    let note = form.get("note").unwrap_or("").trim().to_owned();
    fields.insert("note".into(), Value::from(note.clone()));
    submitted.values.insert("note", note);
    if submitted.errors.is_empty() {
        match crate::kpi::publish(&node, who.principal(), fy, fields).await {
            Ok(p) => {
                let done = if p.created { "created" } else { "updated" };
                return Ok(
                    Redirect::to(&format!("/kpi?fiscal_year={fy}&done={done}")).into_response()
                );
            }
            Err(crate::Error::Validation(ValidationErrors(errors))) => {
                for e in errors {
                    let top = e.field.split(['[', '.']).next().unwrap_or("").to_owned();
                    let message = lang.field_error(e.code).to_owned();
                    if top == "note" || FIGURES.contains(&top.as_str()) {
                        submitted.errors.entry(top).or_default().push(message);
                    } else {
                        submitted.form_errors.push(lang.field_error(e.code));
                    }
                }
            }
            Err(crate::Error::PersonalData(findings)) => {
                for f in findings {
                    let top = f.field.split(['[', '.']).next().unwrap_or("").to_owned();
                    submitted
                        .errors
                        .entry(top)
                        .or_default()
                        .push(m.kpi_err_personal.to_owned());
                }
            }
            Err(crate::Error::Conflict(_)) => submitted.form_errors.push(m.err_conflict),
            Err(other) => return Err(who.failed(other)),
        }
    }
    let d = crate::kpi::draft(&node, fy)
        .await
        .map_err(|e| who.failed(e))?;
    Ok(render(
        StatusCode::UNPROCESSABLE_ENTITY,
        &draft_page(&who, &d, Some(&submitted)),
    ))
}

/// The dashboard's compact KPI box: the current year's totals.
pub struct Summary {
    pub fiscal_year: i64,
    pub totals: Vec<TotalRow>,
    pub reported: String,
    pub missing: Option<String>,
    pub stale: Option<String>,
}

pub async fn summary(node: &AppState, who: &SignedIn) -> Result<Summary, PageError> {
    let (m, lang) = (who.m(), who.lang());
    let fy = crate::kpi::current_fiscal_year();
    let r = crate::kpi::rollup(node, fy)
        .await
        .map_err(|e| who.failed(e))?;
    let r = by_name(r, &*node.town_names().await);
    let comma = if lang == Lang::Ja { "、" } else { ", " };
    Ok(Summary {
        fiscal_year: fy,
        totals: totals(lang, &r),
        reported: (m.kpi_reported_count)(r.towns.len() - r.missing.len(), r.towns.len()),
        missing: (!r.missing.is_empty()).then(|| (m.kpi_missing)(fy, &r.missing.join(comma))),
        stale: (!r.stale.is_empty()).then(|| (m.kpi_stale)(&r.stale.join(comma))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_accept_full_width_digits_and_nothing_else() {
        assert_eq!(parse_count(" 12 "), Some(12));
        assert_eq!(parse_count("１５"), Some(15));
        assert_eq!(parse_count("-1"), None);
        assert_eq!(parse_count("3.5"), None);
        assert_eq!(parse_count(""), None);
    }

    #[test]
    fn the_fiscal_year_span_is_what_the_period_words_say() {
        assert_eq!(
            yui_protocol::kpi::fiscal_year_span(2024),
            ("2024-04-01".to_owned(), "2025-03-31".to_owned())
        );
        assert_eq!(
            (crate::console::i18n::JA.kpi_period)(2024),
            "2024年4月〜2025年3月"
        );
    }
}
