//! KPI reports: a town's draft from its own records, and the consortium's
//! roll-up of every town's published `kpi_reports` for one fiscal year.
//!
//! The rules (SPEC §1, issue "What the programme needs"):
//! - A fiscal year runs April to March: 2024-04-01 … 2025-03-31 is FY2024.
//! - **New hires** of a year: the town's workers whose `joined_on` falls in
//!   it and who have been active since (`status` active, paused or left;
//!   registered or still in training do not count yet).
//! - **Pilot projects**: the town's own `pilot_results` whose `period_start`
//!   falls in the year and that ran (`status` running or completed).
//! - **DX-certified businesses** have no record of their own: the draft
//!   leaves 0 for the administrator to fill in.
//! - **Member municipalities**: the towns of the consortium this node
//!   knows of (itself, its peers, the towns of shared records).
//! - The roll-up sums new hires, pilots and DX businesses over towns; the
//!   number of member municipalities is the consortium's, the largest any
//!   town reported. A town that has not published a report for the year is
//!   "missing"; one whose report was last changed more than
//!   [`STALE_AFTER_DAYS`] before the end of the year (or before today, for
//!   the year under way) is "stale".
//!
//! Pure functions over record views: the node gathers the records.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::record::{RecordId, RecordView};

/// FY2024 targets of the consortium plan (per year).
pub const TARGETS: Targets = Targets {
    new_hires: 15,
    pilot_projects: 3,
    dx_certified_businesses: 1,
    member_municipalities: 4,
};

/// A report changed longer ago than this is flagged as stale.
pub const STALE_AFTER_DAYS: i64 = 90;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Targets {
    pub new_hires: u64,
    pub pilot_projects: u64,
    pub dx_certified_businesses: u64,
    pub member_municipalities: u64,
}

/// The four figures of one report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Figures {
    pub new_hires: u64,
    pub pilot_projects: u64,
    pub dx_certified_businesses: u64,
    pub member_municipalities: u64,
}

/// The fiscal year (April–March) of a `YYYY-MM-DD` date.
pub fn fiscal_year(date: &str) -> Option<i64> {
    let year: i64 = date.get(0..4)?.parse().ok()?;
    let month: u32 = date.get(5..7)?.parse().ok()?;
    if !(1..=12).contains(&month) || date.as_bytes().get(4) != Some(&b'-') {
        return None;
    }
    Some(if month >= 4 { year } else { year - 1 })
}

/// The first and last day of a fiscal year.
pub fn fiscal_year_span(fy: i64) -> (String, String) {
    (format!("{fy:04}-04-01"), format!("{:04}-03-31", fy + 1))
}

fn text<'a>(r: &'a RecordView, field: &str) -> Option<&'a str> {
    r.fields.get(field).and_then(|v| v.as_str())
}

/// A town's draft report for `fy` from its own records. `workers` and
/// `pilots` may hold other towns' records and deleted ones: they are skipped.
pub fn draft(
    town: &str,
    fy: i64,
    workers: &[RecordView],
    pilots: &[RecordView],
    member_towns: &BTreeSet<String>,
) -> Figures {
    draft_basis(town, fy, workers, pilots, member_towns).figures
}

/// A draft with what it was computed from, so an administrator can check
/// each figure before publishing it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Draft {
    pub figures: Figures,
    /// The workers counted as new hires.
    pub hires: Vec<RecordId>,
    /// The pilot results counted as pilot projects.
    pub pilots: Vec<RecordId>,
    /// The member towns counted, this town included.
    pub members: Vec<String>,
}

/// [`draft`] with its basis.
pub fn draft_basis(
    town: &str,
    fy: i64,
    workers: &[RecordView],
    pilots: &[RecordView],
    member_towns: &BTreeSet<String>,
) -> Draft {
    let in_year = |r: &RecordView, field: &str| text(r, field).and_then(fiscal_year) == Some(fy);
    let own = |r: &&RecordView| r.town == town && !r.deleted;
    let hires: Vec<RecordId> = workers
        .iter()
        .filter(own)
        .filter(|r| in_year(r, "joined_on"))
        .filter(|r| matches!(text(r, "status"), Some("active" | "paused" | "left")))
        .map(|r| r.id.clone())
        .collect();
    let pilots: Vec<RecordId> = pilots
        .iter()
        .filter(own)
        .filter(|r| in_year(r, "period_start"))
        .filter(|r| matches!(text(r, "status"), Some("running" | "completed")))
        .map(|r| r.id.clone())
        .collect();
    let mut members = member_towns.clone();
    members.insert(town.to_owned());
    Draft {
        figures: Figures {
            new_hires: hires.len() as u64,
            pilot_projects: pilots.len() as u64,
            dx_certified_businesses: 0,
            member_municipalities: members.len() as u64,
        },
        hires,
        pilots,
        members: members.into_iter().collect(),
    }
}

/// One town's line of the roll-up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TownLine {
    pub town: String,
    /// `None` if the town has not published a report for the year.
    pub figures: Option<Figures>,
    /// When its report was last changed (RFC 3339).
    pub as_of: Option<String>,
    pub record_id: Option<String>,
    pub stale: bool,
}

/// The consortium's KPIs for one fiscal year.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rollup {
    pub fiscal_year: i64,
    pub towns: Vec<TownLine>,
    pub total: Figures,
    pub targets: Targets,
    pub missing: Vec<String>,
    pub stale: Vec<String>,
}

fn count(r: &RecordView, field: &str) -> u64 {
    r.fields.get(field).and_then(|v| v.as_u64()).unwrap_or(0)
}

/// Rolls up the published reports of `fy`. `towns` are the member towns
/// expected to report (the reports' own towns are added); `today` is
/// `YYYY-MM-DD`.
pub fn rollup(fy: i64, reports: &[RecordView], towns: &BTreeSet<String>, today: &str) -> Rollup {
    // The latest report of each town for the year (one per town is the
    // rule; after a partition two may exist until someone deletes one).
    let mut latest: BTreeMap<&str, &RecordView> = BTreeMap::new();
    for r in reports.iter().filter(|r| !r.deleted) {
        if r.fields.get("fiscal_year").and_then(|v| v.as_i64()) != Some(fy) {
            continue;
        }
        let keep = latest.get(r.town.as_str()).is_none_or(|k| {
            (k.updated_at.as_str(), k.id.as_str()) < (r.updated_at.as_str(), r.id.as_str())
        });
        if keep {
            latest.insert(&r.town, r);
        }
    }
    let mut all: BTreeSet<String> = towns.clone();
    all.extend(latest.keys().map(|t| (*t).to_owned()));
    let (_, year_end) = fiscal_year_span(fy);
    let reference = if today < year_end.as_str() {
        today
    } else {
        year_end.as_str()
    };
    let mut lines = Vec::new();
    let mut total = Figures::default();
    let (mut missing, mut stale) = (Vec::new(), Vec::new());
    for town in &all {
        match latest.get(town.as_str()) {
            None => {
                missing.push(town.clone());
                lines.push(TownLine {
                    town: town.clone(),
                    figures: None,
                    as_of: None,
                    record_id: None,
                    stale: false,
                });
            }
            Some(r) => {
                let figures = Figures {
                    new_hires: count(r, "new_hires"),
                    pilot_projects: count(r, "pilot_projects"),
                    dx_certified_businesses: count(r, "dx_certified_businesses"),
                    member_municipalities: count(r, "member_municipalities"),
                };
                total.new_hires += figures.new_hires;
                total.pilot_projects += figures.pilot_projects;
                total.dx_certified_businesses += figures.dx_certified_businesses;
                total.member_municipalities = total
                    .member_municipalities
                    .max(figures.member_municipalities);
                let is_stale = days_between(r.updated_at.get(0..10).unwrap_or(""), reference)
                    .is_some_and(|d| d > STALE_AFTER_DAYS);
                if is_stale {
                    stale.push(town.clone());
                }
                lines.push(TownLine {
                    town: town.clone(),
                    figures: Some(figures),
                    as_of: Some(r.updated_at.clone()),
                    record_id: Some(r.id.to_string()),
                    stale: is_stale,
                });
            }
        }
    }
    Rollup {
        fiscal_year: fy,
        towns: lines,
        total,
        targets: TARGETS,
        missing,
        stale,
    }
}

/// Days from `a` to `b` (`YYYY-MM-DD`).
fn days_between(a: &str, b: &str) -> Option<i64> {
    let day = |s: &str| -> Option<i64> {
        let format = time::macros::format_description!("[year]-[month]-[day]");
        let d = time::Date::parse(s, &format).ok()?;
        Some(i64::from(d.to_julian_day()))
    };
    Some(day(b)? - day(a)?)
}

/// The roll-up as CSV for grant reports (UTF-8 with a BOM, so that Excel
/// opens the Japanese town names correctly).
pub fn rollup_csv(r: &Rollup) -> String {
    let mut out = String::from(
        "\u{feff}fiscal_year,town,new_hires,pilot_projects,dx_certified_businesses,member_municipalities,reported,as_of,stale\r\n",
    );
    for line in &r.towns {
        let f = line.figures.unwrap_or_default();
        let reported = line.figures.is_some();
        let cell = |n: u64| {
            if reported {
                n.to_string()
            } else {
                String::new()
            }
        };
        out.push_str(&format!(
            "{},{},{},{},{},{},{},{},{}\r\n",
            r.fiscal_year,
            csv_field(&line.town),
            cell(f.new_hires),
            cell(f.pilot_projects),
            cell(f.dx_certified_businesses),
            cell(f.member_municipalities),
            if reported { "yes" } else { "no" },
            csv_field(line.as_of.as_deref().unwrap_or("")),
            if line.stale { "yes" } else { "no" },
        ));
    }
    let t = r.total;
    out.push_str(&format!(
        "{},total,{},{},{},{},,,\r\n{},target,{},{},{},{},,,\r\n",
        r.fiscal_year,
        t.new_hires,
        t.pilot_projects,
        t.dx_certified_businesses,
        t.member_municipalities,
        r.fiscal_year,
        r.targets.new_hires,
        r.targets.pilot_projects,
        r.targets.dx_certified_businesses,
        r.targets.member_municipalities
    ));
    out
}

fn csv_field(s: &str) -> String {
    // A leading = + - @ would be a formula in a spreadsheet; so would one
    // after a leading tab or carriage return, which Excel skips (OWASP).
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_owned()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(
        n: u64,
        collection: &str,
        town: &str,
        updated: &str,
        fields: serde_json::Value,
    ) -> RecordView {
        RecordView {
            id: RecordId::generate(n as i64, [n as u8; 10]),
            collection: collection.into(),
            town: town.into(),
            created_at: updated.into(),
            updated_at: updated.into(),
            deleted: false,
            fields: fields.as_object().cloned().unwrap_or_default(),
            attachments: Vec::new(),
        }
    }

    #[test]
    fn fiscal_years_run_april_to_march() {
        assert_eq!(fiscal_year("2024-04-01"), Some(2024));
        assert_eq!(fiscal_year("2025-03-31"), Some(2024));
        assert_eq!(fiscal_year("2025-04-01"), Some(2025));
        assert_eq!(fiscal_year("2024-13-01"), None);
        assert_eq!(fiscal_year("令和6年"), None);
    }

    #[test]
    fn a_draft_counts_the_towns_own_hires_and_pilots_in_the_year() {
        let t = "2025-01-01T00:00:00Z";
        let workers = [
            view(
                1,
                "workers",
                "tateshina",
                t,
                serde_json::json!({"joined_on": "2024-05-10", "status": "active"}),
            ),
            view(
                2,
                "workers",
                "tateshina",
                t,
                serde_json::json!({"joined_on": "2025-02-01", "status": "left"}),
            ),
            // Not active yet; another year; another town.
            view(
                3,
                "workers",
                "tateshina",
                t,
                serde_json::json!({"joined_on": "2024-06-01", "status": "in_training"}),
            ),
            view(
                4,
                "workers",
                "tateshina",
                t,
                serde_json::json!({"joined_on": "2024-03-31", "status": "active"}),
            ),
            view(
                5,
                "workers",
                "omachi",
                t,
                serde_json::json!({"joined_on": "2024-06-01", "status": "active"}),
            ),
        ];
        let pilots = [
            view(
                6,
                "pilot_results",
                "tateshina",
                t,
                serde_json::json!({"period_start": "2024-07-01", "status": "completed"}),
            ),
            view(
                7,
                "pilot_results",
                "tateshina",
                t,
                serde_json::json!({"period_start": "2024-09-01", "status": "cancelled"}),
            ),
            view(
                8,
                "pilot_results",
                "omachi",
                t,
                serde_json::json!({"period_start": "2024-09-01", "status": "running"}),
            ),
        ];
        let members: BTreeSet<String> = ["omachi", "itoigawa"].map(String::from).into();
        let basis = draft_basis("tateshina", 2024, &workers, &pilots, &members);
        assert_eq!(basis.hires, [workers[0].id.clone(), workers[1].id.clone()]);
        assert_eq!(basis.pilots, [pilots[0].id.clone()]);
        assert_eq!(basis.members, ["itoigawa", "omachi", "tateshina"]);
        let f = draft("tateshina", 2024, &workers, &pilots, &members);
        assert_eq!(f, basis.figures);
        assert_eq!(
            f,
            Figures {
                new_hires: 2,
                pilot_projects: 1,
                dx_certified_businesses: 0,
                member_municipalities: 3
            }
        );
    }

    #[test]
    fn the_rollup_sums_flags_missing_and_stale_towns_and_exports_csv() {
        let report = |n, town: &str, updated: &str, hires: u64| {
            view(
                n,
                "kpi_reports",
                town,
                updated,
                serde_json::json!({
                    "fiscal_year": 2024, "new_hires": hires, "pilot_projects": 1,
                    "dx_certified_businesses": 0, "member_municipalities": 3
                }),
            )
        };
        let reports = [
            report(1, "tateshina", "2025-03-01T00:00:00Z", 5),
            // An older report of the same town and year is superseded.
            report(2, "tateshina", "2024-12-01T00:00:00Z", 99),
            report(3, "omachi", "2024-10-01T00:00:00Z", 4),
            view(
                4,
                "kpi_reports",
                "itoigawa",
                "2025-03-01T00:00:00Z",
                serde_json::json!({"fiscal_year": 2023, "new_hires": 7}),
            ),
        ];
        let towns: BTreeSet<String> = ["tateshina", "omachi", "itoigawa"].map(String::from).into();
        let r = rollup(2024, &reports, &towns, "2025-03-15");
        assert_eq!(r.total.new_hires, 9);
        assert_eq!(r.total.pilot_projects, 2);
        assert_eq!(r.total.member_municipalities, 3);
        assert_eq!(r.missing, ["itoigawa"]);
        // Omachi's report is 165 days old on 2025-03-15.
        assert_eq!(r.stale, ["omachi"]);
        let csv = rollup_csv(&r);
        assert!(csv.starts_with('\u{feff}'));
        assert!(csv.contains("2024,itoigawa,,,,,no,,no\r\n"), "{csv}");
        assert!(csv.contains("2024,total,9,2,0,3,,,\r\n"), "{csv}");
        assert!(csv.contains("2024,target,15,3,1,4,,,\r\n"), "{csv}");
    }

    #[test]
    fn csv_cells_cannot_become_formulas() {
        assert_eq!(csv_field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_field("立科町"), "立科町");
        assert_eq!(csv_field("\t=1+1"), "'\t=1+1");
        assert_eq!(csv_field("\r=1+1"), "\"'\r=1+1\"");
    }
}
