//! The console pages of the towns' daily work (issue 6), under the nav group
//! 町の業務 / Town work: スキルの可視化 (`/work/skills`), 受発注
//! (`/work/orders`), 研修・メンタリング (`/work/training`) and 広報計画
//! (`/work/pr`).
//!
//! The views themselves are built by [`crate::daily`], the same functions the
//! JSON API answers with; this module only turns them into words of the
//! visitor's language. Every row links to its record page, and editors get a
//! "新規作成 / New" link to the record form.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use yui_protocol::Collection;
use yui_protocol::schema::FieldKind;

use super::i18n::{Lang, Messages};
use super::records::record_href;
use super::{AppState, Chrome, PageError, SignedIn, render};
use crate::daily::{self, Ref, SkillFilter};

/// One choice of a filter's `<select>`.
struct Choice {
    value: String,
    label: String,
    selected: bool,
}

/// A link to a record, or words saying it is gone.
struct Link {
    href: String,
    text: String,
    known: bool,
}

/// The "新規作成 / New" link an editor sees.
struct NewLink {
    href: String,
    label: String,
}

fn new_link(who: &SignedIn, collection: Collection) -> Option<NewLink> {
    who.principal().role.can_write_records().then(|| NewLink {
        href: format!("/records/{}/new", collection.name()),
        label: (who.m().work_new)(who.lang().collection(collection)),
    })
}

fn link(m: &Messages, collection: Collection, r: &Ref) -> Link {
    Link {
        href: record_href(collection, &r.id),
        text: r
            .name
            .clone()
            .unwrap_or_else(|| m.work_unknown_ref.to_owned()),
        known: r.name.is_some(),
    }
}

/// The label of an enum value in the visitor's language; an unknown value
/// as it is.
fn option_label(lang: Lang, collection: Collection, field: &str, value: &str) -> String {
    if let Some(def) = collection.field(field)
        && let FieldKind::Enum(options) = def.kind
        && let Some(o) = options.iter().find(|o| o.value == value)
    {
        return lang.option(o).to_owned();
    }
    value.to_owned()
}

fn enum_choices(lang: Lang, collection: Collection, field: &str, selected: &str) -> Vec<Choice> {
    match collection.field(field).map(|d| d.kind) {
        Some(FieldKind::Enum(options)) => options
            .iter()
            .map(|o| Choice {
                value: o.value.to_owned(),
                label: lang.option(o).to_owned(),
                selected: o.value == selected,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// Yen with thousands separators: `¥1,234,567`.
pub fn yen(amount: i64) -> String {
    let digits = amount.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    format!("{}¥{out}", if amount < 0 { "-" } else { "" })
}

/// Hours without a needless `.0`: `20`, `12.5`.
pub fn hours(h: f64) -> String {
    let rounded = (h * 10.0).round() / 10.0;
    if rounded.fract() == 0.0 {
        format!("{rounded:.0}")
    } else {
        format!("{rounded:.1}")
    }
}

/// The fiscal year a page's `?fiscal_year=` asks for. A bad year in a
/// hand-typed link shows every year rather than an error.
fn fiscal_year_asked(q: &HashMap<String, String>) -> Option<i64> {
    daily::parse_fiscal_year(q.get("fiscal_year").map(String::as_str))
        .ok()
        .flatten()
}

/// The fiscal-year picker: `years` as "FY…", `selected` marked.
fn year_choices(m: &Messages, years: &[i64], selected: Option<i64>) -> Vec<Choice> {
    years
        .iter()
        .map(|y| Choice {
            value: y.to_string(),
            label: (m.work_fy)(*y),
            selected: selected == Some(*y),
        })
        .collect()
}

fn truncated_note(m: &Messages, truncated: bool) -> Option<String> {
    truncated.then(|| (m.work_truncated)(daily::MAX_RECORDS))
}

// ------------------------------------------------------------ skill matrix

struct Cell {
    level: Option<i64>,
    /// ●●●○○: the level as a shape, for those who skim.
    dots: String,
    /// The assessment date, shown on hover.
    title: String,
}

struct MatrixRow {
    href: String,
    name: String,
    status: String,
    cells: Vec<Cell>,
}

struct CountCell {
    assessed: usize,
    usable: usize,
}

#[derive(Template)]
#[template(path = "work_skills.html")]
struct SkillsPage {
    /// The page's CSV download, with the same filters.
    csv_href: String,
    chrome: Chrome,
    new: Option<NewLink>,
    statuses: Vec<Choice>,
    skill_choices: Vec<Choice>,
    columns: Vec<String>,
    rows: Vec<MatrixRow>,
    counts: Vec<CountCell>,
    truncated: Option<String>,
}

pub async fn skills(
    who: SignedIn,
    State(node): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, PageError> {
    let (m, lang) = (who.m(), who.lang());
    let get = |k: &str| q.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    let filter = SkillFilter {
        status: get("status").map(str::to_owned),
        skill: get("skill").map(str::to_owned),
    };
    let matrix = daily::skills_view(&node.store, &filter)
        .await
        .map_err(|e| who.failed(e))?;
    let rows = matrix
        .workers
        .iter()
        .map(|w| MatrixRow {
            href: record_href(Collection::Workers, &w.id),
            name: w.name.clone(),
            status: option_label(lang, Collection::Workers, "status", &w.status),
            cells: matrix
                .skills
                .iter()
                .map(|skill| match w.skills.get(skill) {
                    Some(c) => {
                        let filled = c.level.clamp(0, 5) as usize;
                        Cell {
                            level: Some(c.level),
                            dots: "●".repeat(filled) + &"○".repeat(5 - filled),
                            title: format!(
                                "{} — {}",
                                (m.work_level)(c.level),
                                c.assessed_on.as_deref().map_or_else(
                                    || m.work_not_assessed.to_owned(),
                                    |d| { (m.work_assessed_on)(d) }
                                )
                            ),
                        }
                    }
                    None => Cell {
                        level: None,
                        dots: String::new(),
                        title: String::new(),
                    },
                })
                .collect(),
        })
        .collect();
    let page = SkillsPage {
        csv_href: csv_href(&who, "/work/skills"),
        chrome: who.chrome(m.work_skills_title, "work-skills"),
        new: new_link(&who, Collection::Workers),
        statuses: enum_choices(
            lang,
            Collection::Workers,
            "status",
            filter.status.as_deref().unwrap_or(""),
        ),
        skill_choices: matrix
            .all_skills
            .iter()
            .map(|s| Choice {
                value: s.clone(),
                label: s.clone(),
                selected: filter.skill.as_deref() == Some(s),
            })
            .collect(),
        columns: matrix.skills.clone(),
        rows,
        counts: matrix
            .counts
            .iter()
            .map(|c| CountCell {
                assessed: c.assessed,
                usable: c.level3_plus,
            })
            .collect(),
        truncated: truncated_note(m, matrix.truncated),
    };
    Ok(render(StatusCode::OK, &page))
}

// ---------------------------------------------------------- order pipeline

struct OrderLine {
    href: String,
    title: String,
    customer: Option<Link>,
    assignees: Vec<Link>,
    due: String,
    overdue: bool,
    estimated: String,
    actual: String,
    amount: String,
}

struct TotalsLine {
    count: String,
    estimated: String,
    actual: String,
    amount: String,
}

struct StageBlock {
    id: String,
    label: String,
    orders: Vec<OrderLine>,
    totals: TotalsLine,
}

#[derive(Template)]
#[template(path = "work_orders.html")]
struct OrdersPage {
    /// The page's CSV download, with the same filters.
    csv_href: String,
    chrome: Chrome,
    new: Option<NewLink>,
    overdue: Option<String>,
    stages: Vec<StageBlock>,
    lost: StageBlock,
    totals: TotalsLine,
    truncated: Option<String>,
}

fn totals_line(m: &Messages, t: &daily::Totals) -> TotalsLine {
    TotalsLine {
        count: (m.work_orders_count)(t.count),
        estimated: hours(t.estimated_hours),
        actual: hours(t.actual_hours),
        amount: yen(t.amount_jpy),
    }
}

fn stage_block(m: &Messages, lang: Lang, stage: &daily::Stage) -> StageBlock {
    StageBlock {
        id: stage.status.clone(),
        label: option_label(lang, Collection::Orders, "status", &stage.status),
        orders: stage
            .orders
            .iter()
            .map(|o| OrderLine {
                href: record_href(Collection::Orders, &o.id),
                title: o.title.clone(),
                customer: o
                    .customer
                    .as_ref()
                    .map(|c| link(m, Collection::Customers, c)),
                assignees: o
                    .assignees
                    .iter()
                    .map(|a| link(m, Collection::Workers, a))
                    .collect(),
                due: o.due_on.clone().unwrap_or_default(),
                overdue: o.overdue,
                estimated: o.estimated_hours.map(hours).unwrap_or_default(),
                actual: o.actual_hours.map(hours).unwrap_or_default(),
                amount: o.amount_jpy.map(yen).unwrap_or_default(),
            })
            .collect(),
        totals: totals_line(m, &stage.totals),
    }
}

pub async fn orders(who: SignedIn, State(node): State<AppState>) -> Result<Response, PageError> {
    let (m, lang) = (who.m(), who.lang());
    let pipeline = daily::orders_view(&node.store)
        .await
        .map_err(|e| who.failed(e))?;
    let page = OrdersPage {
        csv_href: csv_href(&who, "/work/orders"),
        chrome: who.chrome(m.work_orders_title, "work-orders"),
        new: new_link(&who, Collection::Orders),
        overdue: (pipeline.overdue > 0).then(|| (m.work_overdue_count)(pipeline.overdue)),
        stages: pipeline
            .stages
            .iter()
            .map(|s| stage_block(m, lang, s))
            .collect(),
        lost: stage_block(m, lang, &pipeline.lost),
        totals: totals_line(m, &pipeline.totals),
        truncated: truncated_note(m, pipeline.truncated),
    };
    Ok(render(StatusCode::OK, &page))
}

// ------------------------------------------------- training and mentoring

struct TrainingLine {
    href: String,
    date: String,
    title: String,
    audience: String,
    count: usize,
    attendees: Vec<Link>,
}

struct MentoringLine {
    href: String,
    date: String,
    mentor: Option<Link>,
    mentee: Option<Link>,
}

#[derive(Template)]
#[template(path = "work_training.html")]
struct TrainingPage {
    /// The page's CSV download, with the same filters.
    csv_href: String,
    chrome: Chrome,
    new_training: Option<NewLink>,
    new_mentoring: Option<NewLink>,
    years: Vec<Choice>,
    workers: Vec<Choice>,
    heading: Option<String>,
    trainings: Vec<TrainingLine>,
    mentoring: Vec<MentoringLine>,
    truncated: Option<String>,
}

pub async fn training(
    who: SignedIn,
    State(node): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, PageError> {
    let (m, lang) = (who.m(), who.lang());
    let fy = fiscal_year_asked(&q);
    let worker = q.get("worker").map(|w| w.trim()).filter(|w| !w.is_empty());
    let (log, workers) = daily::training_view(&node.store, fy, worker)
        .await
        .map_err(|e| who.failed(e))?;
    let mut worker_choices: Vec<Choice> = workers
        .iter()
        .map(|w| Choice {
            value: w.id.to_string(),
            label: w
                .fields
                .get("name")
                .and_then(|v| v.as_str())
                .unwrap_or(w.id.as_str())
                .to_owned(),
            selected: worker == Some(w.id.as_str()),
        })
        .collect();
    worker_choices.sort_by(|a, b| a.label.cmp(&b.label));
    let page = TrainingPage {
        csv_href: csv_href(&who, "/work/training"),
        chrome: who.chrome(m.work_training_title, "work-training"),
        new_training: new_link(&who, Collection::Trainings),
        new_mentoring: new_link(&who, Collection::Mentoring),
        years: year_choices(m, &log.fiscal_years, fy),
        workers: worker_choices,
        heading: log
            .worker
            .as_ref()
            .map(|w| (m.work_log_of)(w.name.as_deref().unwrap_or(&w.id))),
        trainings: log
            .trainings
            .iter()
            .map(|t| TrainingLine {
                href: record_href(Collection::Trainings, &t.id),
                date: t.held_on.clone().unwrap_or_default(),
                title: t.title.clone(),
                audience: option_label(lang, Collection::Trainings, "audience", &t.audience),
                count: t.attendee_count,
                attendees: t
                    .attendees
                    .iter()
                    .map(|a| link(m, Collection::Workers, a))
                    .collect(),
            })
            .collect(),
        mentoring: log
            .mentoring
            .iter()
            .map(|s| MentoringLine {
                href: record_href(Collection::Mentoring, &s.id),
                date: s.held_on.clone().unwrap_or_default(),
                mentor: s.mentor.as_ref().map(|r| link(m, Collection::Workers, r)),
                mentee: s.mentee.as_ref().map(|r| link(m, Collection::Workers, r)),
            })
            .collect(),
        truncated: truncated_note(m, log.truncated),
    };
    Ok(render(StatusCode::OK, &page))
}

// ----------------------------------------------------------------- PR plan

struct PrEntry {
    href: String,
    title: String,
    status: String,
    channel: String,
    date: String,
}

struct MonthRow {
    label: String,
    residents: Vec<PrEntry>,
    customers: Vec<PrEntry>,
}

#[derive(Template)]
#[template(path = "work_pr.html")]
struct PrPage {
    /// The page's CSV download, with the same filters.
    csv_href: String,
    chrome: Chrome,
    new: Option<NewLink>,
    heading: String,
    years: Vec<Choice>,
    residents_label: String,
    customers_label: String,
    months: Vec<MonthRow>,
    empty: bool,
    by_status: Vec<(String, usize)>,
    unscheduled: Vec<PrEntry>,
    truncated: Option<String>,
}

pub async fn pr(
    who: SignedIn,
    State(node): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, PageError> {
    let (m, lang) = (who.m(), who.lang());
    let fy = fiscal_year_asked(&q);
    let plan = daily::pr_view(&node.store, fy)
        .await
        .map_err(|e| who.failed(e))?;
    let entry = |r: &daily::PrRow| PrEntry {
        href: record_href(Collection::PrItems, &r.id),
        title: r.title.clone(),
        status: option_label(lang, Collection::PrItems, "status", &r.status),
        channel: r.channel.clone().unwrap_or_default(),
        date: r.planned_on.clone().unwrap_or_default(),
    };
    // The year shown is always offered, even before it has an item.
    let mut years = plan.fiscal_years.clone();
    if !years.contains(&plan.fiscal_year) {
        years.push(plan.fiscal_year);
        years.sort_unstable_by(|a, b| b.cmp(a));
    }
    let page = PrPage {
        csv_href: csv_href(&who, "/work/pr"),
        chrome: who.chrome(m.work_pr_title, "work-pr"),
        new: new_link(&who, Collection::PrItems),
        heading: format!("{} — {}", m.work_pr_title, (m.work_fy)(plan.fiscal_year)),
        years: year_choices(m, &years, Some(plan.fiscal_year)),
        residents_label: option_label(lang, Collection::PrItems, "audience", "residents"),
        customers_label: option_label(lang, Collection::PrItems, "audience", "customers"),
        empty: plan
            .months
            .iter()
            .all(|mo| mo.residents.is_empty() && mo.customers.is_empty()),
        months: plan
            .months
            .iter()
            .map(|mo| MonthRow {
                label: (m.work_month_label)(&mo.month),
                residents: mo.residents.iter().map(entry).collect(),
                customers: mo.customers.iter().map(entry).collect(),
            })
            .collect(),
        by_status: ["idea", "planned", "published"]
            .iter()
            .map(|s| {
                (
                    option_label(lang, Collection::PrItems, "status", s),
                    plan.by_status.get(*s).copied().unwrap_or(0),
                )
            })
            .collect(),
        unscheduled: plan.unscheduled.iter().map(entry).collect(),
        truncated: truncated_note(m, plan.truncated),
    };
    Ok(render(StatusCode::OK, &page))
}

// ------------------------------------------------------- CSV downloads

/// The CSV download of the page at `path`, with the page's own query.
fn csv_href(who: &SignedIn, path: &str) -> String {
    let here = &who.visitor.here;
    match here.strip_prefix(path) {
        Some(query) if query.is_empty() || query.starts_with('?') => format!("{path}.csv{query}"),
        _ => format!("{path}.csv"),
    }
}

fn csv_lang(who: &SignedIn) -> yui_protocol::spreadsheet::Lang {
    super::spreadsheets::csv_lang(who.lang())
}

fn download(node: &AppState, what: &str, csv: String) -> Response {
    crate::http::csv_response(&crate::export::csv_file_name(&node.config.town, what), csv)
}

/// `/work/skills.csv`: the skill matrix as shown, for Excel.
pub async fn skills_csv(
    who: SignedIn,
    State(node): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, PageError> {
    let get = |k: &str| q.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    let filter = SkillFilter {
        status: get("status").map(str::to_owned),
        skill: get("skill").map(str::to_owned),
    };
    let matrix = daily::skills_view(&node.store, &filter)
        .await
        .map_err(|e| who.failed(e))?;
    Ok(download(
        &node,
        "skills",
        crate::export::skills_csv(&matrix, csv_lang(&who)),
    ))
}

/// `/work/orders.csv`.
pub async fn orders_csv(
    who: SignedIn,
    State(node): State<AppState>,
) -> Result<Response, PageError> {
    let pipeline = daily::orders_view(&node.store)
        .await
        .map_err(|e| who.failed(e))?;
    Ok(download(
        &node,
        "orders",
        crate::export::orders_csv(&pipeline, csv_lang(&who)),
    ))
}

/// `/work/training.csv`.
pub async fn training_csv(
    who: SignedIn,
    State(node): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, PageError> {
    let fy = fiscal_year_asked(&q);
    let worker = q.get("worker").map(|w| w.trim()).filter(|w| !w.is_empty());
    let (log, _) = daily::training_view(&node.store, fy, worker)
        .await
        .map_err(|e| who.failed(e))?;
    Ok(download(
        &node,
        "training",
        crate::export::training_csv(&log, csv_lang(&who)),
    ))
}

/// `/work/pr.csv`.
pub async fn pr_csv(
    who: SignedIn,
    State(node): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, PageError> {
    let fy = fiscal_year_asked(&q);
    let plan = daily::pr_view(&node.store, fy)
        .await
        .map_err(|e| who.failed(e))?;
    Ok(download(
        &node,
        "pr",
        crate::export::pr_csv(&plan, csv_lang(&who)),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yen_has_thousands_separators() {
        assert_eq!(yen(0), "¥0");
        assert_eq!(yen(999), "¥999");
        assert_eq!(yen(1_000), "¥1,000");
        assert_eq!(yen(1_234_567), "¥1,234,567");
        assert_eq!(yen(-60_000), "-¥60,000");
    }

    #[test]
    fn hours_drop_a_needless_decimal() {
        assert_eq!(hours(20.0), "20");
        assert_eq!(hours(12.5), "12.5");
        assert_eq!(hours(0.0), "0");
    }
}
