//! The rules of the towns' daily work views (issue 6): the skill matrix
//! (スキルの可視化), the order pipeline (受発注), the training and mentoring log
//! and the PR plan, as pure functions over record views of a town's LOCAL
//! collections. The node gathers the records and serves the views (its
//! `daily` module); like [`crate::kpi`], nothing here reads a clock: today's
//! date is an argument.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::RecordView;
use crate::kpi::fiscal_year;

/// Order statuses in pipeline order; `lost` is shown apart.
pub const PIPELINE: [&str; 7] = [
    "inquiry",
    "quoted",
    "ordered",
    "in_progress",
    "delivered",
    "invoiced",
    "closed",
];
/// Statuses in which an order past its due date is overdue: once delivered,
/// the date has been met or no longer matters.
const OPEN: [&str; 4] = ["inquiry", "quoted", "ordered", "in_progress"];
/// Worker statuses in the matrix's row order: who can take work first.
pub const WORKER_ORDER: [&str; 5] = ["active", "in_training", "registered", "paused", "left"];
/// A skill counts as usable for work from this level.
pub const USABLE_LEVEL: i64 = 3;

fn str_field<'a>(r: &'a RecordView, name: &str) -> Option<&'a str> {
    r.fields
        .get(name)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

fn num_field(r: &RecordView, name: &str) -> Option<f64> {
    r.fields.get(name).and_then(Value::as_f64)
}

fn ids_field<'a>(r: &'a RecordView, name: &str) -> Vec<&'a str> {
    r.fields
        .get(name)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// A reference to another local record, with its display name when the
/// record exists (a deleted or unknown one has none).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Ref {
    pub id: String,
    pub name: Option<String>,
}

/// Display names of records by id.
struct Names(HashMap<String, String>);

impl Names {
    fn of(records: &[RecordView], field: &str) -> Names {
        Names(
            records
                .iter()
                .map(|r| {
                    let name = str_field(r, field).unwrap_or(r.id.as_str()).to_owned();
                    (r.id.to_string(), name)
                })
                .collect(),
        )
    }

    fn resolve(&self, id: &str) -> Ref {
        Ref {
            id: id.to_owned(),
            name: self.0.get(id).cloned(),
        }
    }
}

// ------------------------------------------------------------ skill matrix

/// One worker's assessment of one skill.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SkillCell {
    pub level: i64,
    pub assessed_on: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SkillRow {
    pub id: String,
    pub name: String,
    pub status: String,
    /// By skill name; a skill the worker has no assessment of is absent.
    pub skills: BTreeMap<String, SkillCell>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SkillCount {
    pub skill: String,
    /// Workers shown with this skill at any level.
    pub assessed: usize,
    /// Workers shown with this skill at level [`USABLE_LEVEL`] or higher.
    pub level3_plus: usize,
}

/// スキルの可視化: workers × skills.
#[derive(Debug, Clone, Serialize)]
pub struct SkillMatrix {
    /// Every distinct skill name of the workers shown, sorted: the columns.
    pub skills: Vec<String>,
    /// Every skill name of any worker, sorted, for the skill filter.
    pub all_skills: Vec<String>,
    pub workers: Vec<SkillRow>,
    /// One per column, in column order.
    pub counts: Vec<SkillCount>,
    pub truncated: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SkillFilter {
    /// Only workers with this status.
    pub status: Option<String>,
    /// Only workers assessed in this skill, and only its column.
    pub skill: Option<String>,
}

fn worker_rank(status: &str) -> usize {
    WORKER_ORDER
        .iter()
        .position(|s| *s == status)
        .unwrap_or(WORKER_ORDER.len())
}

/// A worker's skills by name; of two assessments of one skill the later one
/// (by `assessed_on`, then by list order) stands.
fn worker_skills(w: &RecordView) -> BTreeMap<String, SkillCell> {
    let mut out: BTreeMap<String, SkillCell> = BTreeMap::new();
    for s in w
        .fields
        .get("skills")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let (Some(name), Some(level)) = (
            s.get("skill").and_then(Value::as_str).map(str::trim),
            s.get("level").and_then(Value::as_i64),
        ) else {
            continue;
        };
        if name.is_empty() {
            continue;
        }
        let cell = SkillCell {
            level,
            assessed_on: s
                .get("assessed_on")
                .and_then(Value::as_str)
                .map(str::to_owned),
        };
        match out.get(name) {
            Some(old) if old.assessed_on > cell.assessed_on => {}
            _ => {
                out.insert(name.to_owned(), cell);
            }
        }
    }
    out
}

pub fn skill_matrix(workers: &[RecordView], filter: &SkillFilter, truncated: bool) -> SkillMatrix {
    let mut all_skills = BTreeSet::new();
    let mut rows: Vec<SkillRow> = Vec::new();
    for w in workers {
        let skills = worker_skills(w);
        all_skills.extend(skills.keys().cloned());
        let status = str_field(w, "status").unwrap_or_default().to_owned();
        if filter.status.as_deref().is_some_and(|s| s != status) {
            continue;
        }
        if let Some(skill) = &filter.skill
            && !skills.contains_key(skill)
        {
            continue;
        }
        rows.push(SkillRow {
            id: w.id.to_string(),
            name: str_field(w, "name").unwrap_or(w.id.as_str()).to_owned(),
            status,
            skills,
        });
    }
    // Within a status, by kana reading when there is one: the order of a
    // Japanese roster.
    let kana: HashMap<String, String> = workers
        .iter()
        .map(|w| {
            let key = str_field(w, "name_kana")
                .or_else(|| str_field(w, "name"))
                .unwrap_or_default();
            (w.id.to_string(), key.to_owned())
        })
        .collect();
    rows.sort_by(|a, b| {
        (worker_rank(&a.status), &kana[&a.id], &a.id).cmp(&(
            worker_rank(&b.status),
            &kana[&b.id],
            &b.id,
        ))
    });
    let skills: Vec<String> = match &filter.skill {
        Some(skill) => vec![skill.clone()],
        None => rows
            .iter()
            .flat_map(|r| r.skills.keys().cloned())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect(),
    };
    let counts = skills
        .iter()
        .map(|skill| {
            let levels = rows.iter().filter_map(|r| r.skills.get(skill));
            SkillCount {
                skill: skill.clone(),
                assessed: levels.clone().count(),
                level3_plus: levels.filter(|c| c.level >= USABLE_LEVEL).count(),
            }
        })
        .collect();
    SkillMatrix {
        skills,
        all_skills: all_skills.into_iter().collect(),
        workers: rows,
        counts,
        truncated,
    }
}

// ---------------------------------------------------------- order pipeline

#[derive(Debug, Clone, Serialize)]
pub struct OrderRow {
    pub id: String,
    pub title: String,
    pub status: String,
    pub customer: Option<Ref>,
    pub assignees: Vec<Ref>,
    pub due_on: Option<String>,
    /// Past its due date and not yet delivered.
    pub overdue: bool,
    pub estimated_hours: Option<f64>,
    pub actual_hours: Option<f64>,
    pub amount_jpy: Option<i64>,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Totals {
    pub count: usize,
    pub estimated_hours: f64,
    pub actual_hours: f64,
    pub amount_jpy: i64,
}

impl Totals {
    fn add(&mut self, o: &OrderRow) {
        self.count += 1;
        self.estimated_hours += o.estimated_hours.unwrap_or(0.0);
        self.actual_hours += o.actual_hours.unwrap_or(0.0);
        self.amount_jpy += o.amount_jpy.unwrap_or(0);
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Stage {
    pub status: String,
    pub orders: Vec<OrderRow>,
    pub totals: Totals,
}

/// 受発注: orders by status in pipeline order.
#[derive(Debug, Clone, Serialize)]
pub struct OrderPipeline {
    /// The date overdue is judged against (today in Japan).
    pub today: String,
    /// inquiry … closed, each present even when empty.
    pub stages: Vec<Stage>,
    /// Lost orders, apart from the pipeline and its total.
    pub lost: Stage,
    /// Every order in the pipeline (lost ones excluded).
    pub totals: Totals,
    pub overdue: usize,
    pub truncated: bool,
}

pub fn order_pipeline(
    orders: &[RecordView],
    customers: &[RecordView],
    workers: &[RecordView],
    today: &str,
    truncated: bool,
) -> OrderPipeline {
    let customer_names = Names::of(customers, "organisation");
    let worker_names = Names::of(workers, "name");
    let mut rows: Vec<OrderRow> = orders
        .iter()
        .map(|o| {
            let status = str_field(o, "status").unwrap_or_default().to_owned();
            let due_on = str_field(o, "due_on").map(str::to_owned);
            OrderRow {
                id: o.id.to_string(),
                title: str_field(o, "title").unwrap_or(o.id.as_str()).to_owned(),
                customer: str_field(o, "customer").map(|id| customer_names.resolve(id)),
                assignees: ids_field(o, "assignees")
                    .into_iter()
                    .map(|id| worker_names.resolve(id))
                    .collect(),
                overdue: OPEN.contains(&status.as_str())
                    && due_on.as_deref().is_some_and(|d| d < today),
                due_on,
                status,
                estimated_hours: num_field(o, "estimated_hours"),
                actual_hours: num_field(o, "actual_hours"),
                amount_jpy: o.fields.get("amount_jpy").and_then(Value::as_i64),
            }
        })
        .collect();
    // Soonest due first; orders without a date last.
    rows.sort_by(|a, b| {
        (a.due_on.is_none(), &a.due_on, &a.title).cmp(&(b.due_on.is_none(), &b.due_on, &b.title))
    });
    let stage = |status: &str| {
        let orders: Vec<OrderRow> = rows
            .iter()
            .filter(|o| o.status == status)
            .cloned()
            .collect();
        let mut totals = Totals::default();
        orders.iter().for_each(|o| totals.add(o));
        Stage {
            status: status.to_owned(),
            orders,
            totals,
        }
    };
    let stages: Vec<Stage> = PIPELINE.iter().map(|s| stage(s)).collect();
    let mut totals = Totals::default();
    stages
        .iter()
        .flat_map(|s| &s.orders)
        .for_each(|o| totals.add(o));
    OrderPipeline {
        today: today.to_owned(),
        overdue: stages
            .iter()
            .flat_map(|s| &s.orders)
            .filter(|o| o.overdue)
            .count(),
        stages,
        lost: stage("lost"),
        totals,
        truncated,
    }
}

// ------------------------------------------------- training and mentoring

#[derive(Debug, Clone, Serialize)]
pub struct TrainingRow {
    pub id: String,
    pub held_on: Option<String>,
    pub title: String,
    pub audience: String,
    pub attendee_count: usize,
    pub attendees: Vec<Ref>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MentoringRow {
    pub id: String,
    pub held_on: Option<String>,
    pub mentor: Option<Ref>,
    pub mentee: Option<Ref>,
}

/// 研修・メンタリング: both logs, newest first.
#[derive(Debug, Clone, Serialize)]
pub struct TrainingLog {
    pub fiscal_year: Option<i64>,
    pub worker: Option<Ref>,
    /// Fiscal years that have an entry, newest first, for the filter.
    pub fiscal_years: Vec<i64>,
    pub trainings: Vec<TrainingRow>,
    pub mentoring: Vec<MentoringRow>,
    pub truncated: bool,
}

/// Newest first; undated entries last.
fn newest_first(
    a: &Option<String>,
    a_id: &str,
    b: &Option<String>,
    b_id: &str,
) -> std::cmp::Ordering {
    (b.is_some(), b, b_id).cmp(&(a.is_some(), a, a_id))
}

/// `worker` must be the id of a live worker when given (the caller checks).
pub fn training_log(
    trainings: &[RecordView],
    mentoring: &[RecordView],
    workers: &[RecordView],
    fy: Option<i64>,
    worker: Option<&str>,
    truncated: bool,
) -> TrainingLog {
    let names = Names::of(workers, "name");
    let held = |r: &RecordView| str_field(r, "held_on").map(str::to_owned);
    let in_year = |held_on: &Option<String>| {
        fy.is_none_or(|fy| held_on.as_deref().and_then(fiscal_year) == Some(fy))
    };
    let fiscal_years: BTreeSet<i64> = trainings
        .iter()
        .chain(mentoring)
        .filter_map(|r| str_field(r, "held_on").and_then(fiscal_year))
        .collect();
    let mut training_rows: Vec<TrainingRow> = trainings
        .iter()
        .filter(|t| worker.is_none_or(|w| ids_field(t, "attendees").contains(&w)))
        .map(|t| {
            let attendees: Vec<Ref> = ids_field(t, "attendees")
                .into_iter()
                .map(|id| names.resolve(id))
                .collect();
            TrainingRow {
                id: t.id.to_string(),
                held_on: held(t),
                title: str_field(t, "title").unwrap_or(t.id.as_str()).to_owned(),
                audience: str_field(t, "audience").unwrap_or_default().to_owned(),
                attendee_count: attendees.len(),
                attendees,
            }
        })
        .filter(|t| in_year(&t.held_on))
        .collect();
    training_rows.sort_by(|a, b| newest_first(&a.held_on, &a.id, &b.held_on, &b.id));
    let mut mentoring_rows: Vec<MentoringRow> = mentoring
        .iter()
        .filter(|m| {
            worker.is_none_or(|w| {
                str_field(m, "mentor") == Some(w) || str_field(m, "mentee") == Some(w)
            })
        })
        .map(|m| MentoringRow {
            id: m.id.to_string(),
            held_on: held(m),
            mentor: str_field(m, "mentor").map(|id| names.resolve(id)),
            mentee: str_field(m, "mentee").map(|id| names.resolve(id)),
        })
        .filter(|m| in_year(&m.held_on))
        .collect();
    mentoring_rows.sort_by(|a, b| newest_first(&a.held_on, &a.id, &b.held_on, &b.id));
    TrainingLog {
        fiscal_year: fy,
        worker: worker.map(|w| names.resolve(w)),
        fiscal_years: fiscal_years.into_iter().rev().collect(),
        trainings: training_rows,
        mentoring: mentoring_rows,
        truncated,
    }
}

// ----------------------------------------------------------------- PR plan

#[derive(Debug, Clone, Serialize)]
pub struct PrRow {
    pub id: String,
    pub title: String,
    pub audience: String,
    pub status: String,
    pub channel: Option<String>,
    pub planned_on: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PrMonth {
    /// `YYYY-MM`.
    pub month: String,
    pub residents: Vec<PrRow>,
    pub customers: Vec<PrRow>,
}

/// 広報計画: a fiscal year's PR items, month by month and by audience.
#[derive(Debug, Clone, Serialize)]
pub struct PrPlan {
    pub fiscal_year: i64,
    /// Fiscal years that have an item, newest first, for the filter.
    pub fiscal_years: Vec<i64>,
    /// April to March, twelve rows even when empty.
    pub months: Vec<PrMonth>,
    /// Items without a planned date, whatever the year.
    pub unscheduled: Vec<PrRow>,
    /// The year's items by status (idea, planned, published).
    pub by_status: BTreeMap<String, usize>,
    pub truncated: bool,
}

/// The twelve months of a fiscal year, `YYYY-MM`.
pub fn fiscal_months(fy: i64) -> Vec<String> {
    (4..=15)
        .map(|m| {
            let (year, month) = if m > 12 { (fy + 1, m - 12) } else { (fy, m) };
            format!("{year:04}-{month:02}")
        })
        .collect()
}

pub fn pr_plan(items: &[RecordView], fy: i64, truncated: bool) -> PrPlan {
    let mut rows: Vec<PrRow> = items
        .iter()
        .map(|p| PrRow {
            id: p.id.to_string(),
            title: str_field(p, "title").unwrap_or(p.id.as_str()).to_owned(),
            audience: str_field(p, "audience").unwrap_or_default().to_owned(),
            status: str_field(p, "status").unwrap_or_default().to_owned(),
            channel: str_field(p, "channel").map(str::to_owned),
            planned_on: str_field(p, "planned_on").map(str::to_owned),
        })
        .collect();
    rows.sort_by(|a, b| (&a.planned_on, &a.title).cmp(&(&b.planned_on, &b.title)));
    let fiscal_years: BTreeSet<i64> = rows
        .iter()
        .filter_map(|r| r.planned_on.as_deref().and_then(fiscal_year))
        .collect();
    let mut by_status = BTreeMap::new();
    let months = fiscal_months(fy)
        .into_iter()
        .map(|month| {
            let of = |audience: &str| -> Vec<PrRow> {
                rows.iter()
                    .filter(|r| {
                        r.audience == audience
                            && r.planned_on.as_deref().and_then(|d| d.get(0..7)) == Some(&month)
                    })
                    .cloned()
                    .collect()
            };
            PrMonth {
                residents: of("residents"),
                customers: of("customers"),
                month,
            }
        })
        .collect::<Vec<_>>();
    for r in months
        .iter()
        .flat_map(|m| m.residents.iter().chain(&m.customers))
    {
        *by_status.entry(r.status.clone()).or_insert(0) += 1;
    }
    PrPlan {
        fiscal_year: fy,
        fiscal_years: fiscal_years.into_iter().rev().collect(),
        months,
        unscheduled: rows
            .iter()
            .filter(|r| r.planned_on.is_none())
            .cloned()
            .collect(),
        by_status,
        truncated,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fiscal_year_runs_april_to_march() {
        let months = fiscal_months(2024);
        assert_eq!(months.len(), 12);
        assert_eq!(months[0], "2024-04");
        assert_eq!(months[11], "2025-03");
    }
}
