//! `yui export`: every record as JSON (one file per collection), Markdown
//! (one file per record, plus an index) or CSV (one file per collection, as
//! Excel opens it), for archives, audits, reports and spreadsheets; and the
//! CSV downloads of a collection and of each daily view that the API and
//! the console serve ([`collection_csv`], [`skills_csv`], [`orders_csv`],
//! [`training_csv`], [`pr_csv`]). The CSV format itself (columns, cells,
//! formula safety) is `yui_protocol::spreadsheet`'s; a collection's CSV
//! reads back with `yui import` (`crate::import`).
//!
//! Exports may hold personal data: they go only into a directory the command
//! creates or one the user owns with mode 0700 (`fsio::PrivateDir`), every
//! file is created new (never through a link, never over an existing file)
//! and owner-only, and an export that would meet an existing file refuses
//! before it writes anything.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;
use yui_protocol::schema::FieldKind;
use yui_protocol::spreadsheet::{self, Cell, CsvOut, Lang};
use yui_protocol::{Collection, RecordView};

use crate::daily::{OrderPipeline, PrPlan, Ref, SkillMatrix, TrainingLog};
use crate::fsio::PrivateDir;
use crate::store::Store;

const BATCH: usize = 1000;

/// What `yui export` writes: one JSON file per collection, or one Markdown
/// file per record plus an index. It lives here, not in `cli`, so the export
/// imports nothing from the command line. The variants have no doc comments
/// because clap would print them in `yui export --help`.
#[derive(Copy, Clone, Debug, clap::ValueEnum)]
pub enum ExportFormat {
    Json,
    Markdown,
    Csv,
}

pub async fn export(
    store: &Store,
    format: ExportFormat,
    include_deleted: bool,
    dir: &Path,
) -> Result<usize> {
    let dir = PrivateDir::open(dir, "yui export")?;
    let names: Vec<String> = match format {
        ExportFormat::Json => Collection::ALL
            .iter()
            .map(|c| format!("{}.json", c.name()))
            .collect(),
        ExportFormat::Markdown => std::iter::once("index.md".to_owned())
            .chain(Collection::ALL.iter().map(|c| c.name().to_owned()))
            .collect(),
        ExportFormat::Csv => Collection::ALL
            .iter()
            .map(|c| format!("{}.csv", c.name()))
            .collect(),
    };
    if let Some(name) = names.iter().find(|n| dir.holds(n)) {
        anyhow::bail!(
            "{} already exists; yui export writes only new files and changed nothing: export into a new or empty directory, or remove the earlier export first",
            dir.join(name).display()
        );
    }
    let mut by_collection: BTreeMap<Collection, Vec<RecordView>> = BTreeMap::new();
    let mut after = None;
    loop {
        let page = store.export_page(after.clone(), BATCH).await?;
        let Some((_, last)) = page.last() else { break };
        after = Some(last.id.to_string());
        for (c, view) in page {
            if include_deleted || !view.deleted {
                by_collection.entry(c).or_default().push(view);
            }
        }
    }
    let mut written = 0;
    match format {
        ExportFormat::Json => {
            for c in Collection::ALL {
                let records = by_collection.get(&c).map_or(&[][..], Vec::as_slice);
                let json = serde_json::to_vec_pretty(records)?;
                dir.write_file(&format!("{}.json", c.name()), &json)?;
                written += records.len();
            }
        }
        ExportFormat::Markdown => {
            let mut index = String::from("# Yui export\n\n");
            for (c, records) in &by_collection {
                let sub = dir.create_dir(c.name(), "yui export")?;
                let _ = writeln!(
                    index,
                    "## {} / {} ({})\n",
                    c.label_ja(),
                    c.label_en(),
                    records.len()
                );
                for r in records {
                    let title = record_title(*c, r);
                    sub.write_file(&format!("{}.md", r.id), markdown(*c, r).as_bytes())?;
                    let _ = writeln!(index, "- [{title}]({}/{}.md)", c.name(), r.id);
                    written += 1;
                }
                index.push('\n');
            }
            dir.write_file("index.md", index.as_bytes())?;
        }
        ExportFormat::Csv => {
            let names = names_of(store, &Collection::ALL).await?;
            for c in Collection::ALL {
                let records = by_collection.get(&c).map_or(&[][..], Vec::as_slice);
                let csv = spreadsheet::records_csv(c, records, &names, Lang::Ja);
                dir.write_file(&format!("{}.csv", c.name()), csv.as_bytes())?;
                written += records.len();
            }
        }
    }
    Ok(written)
}

// ---------------------------------------------------------------- CSV

/// A collection's live records as CSV that Excel opens (UTF-8 with a BOM,
/// CRLF), oldest first, headed in `lang`; `yui import` reads it back.
pub async fn collection_csv(
    store: &Store,
    collection: Collection,
    lang: Lang,
) -> crate::Result<String> {
    let records = store.all_views(collection).await?;
    let targets: Vec<Collection> = collection
        .fields()
        .iter()
        .filter_map(|f| match f.kind {
            FieldKind::Ref(to) | FieldKind::Refs { to, .. } => Some(to),
            _ => None,
        })
        .collect();
    let names = names_of(store, &targets).await?;
    Ok(spreadsheet::records_csv(collection, &records, &names, lang))
}

/// The display names (a record's title, a person's or an organisation's
/// name) of the live records of `collections`, by id: written after the
/// id in a reference cell, for people.
async fn names_of(
    store: &Store,
    collections: &[Collection],
) -> crate::Result<HashMap<String, String>> {
    let mut names = HashMap::new();
    for c in collections.iter().copied().collect::<BTreeSet<_>>() {
        for r in store.all_views(c).await? {
            names.insert(r.id.to_string(), record_title(c, &r));
        }
    }
    Ok(names)
}

/// The file name a download of `what` is offered under, e.g.
/// `yui-tateshina-workers.csv`.
pub fn csv_file_name(town: &str, what: &str) -> String {
    format!("yui-{town}-{what}.csv")
}

/// A choice's label in `lang`, by the collection's field.
fn choice(collection: Collection, field: &str, value: &str, lang: Lang) -> String {
    match collection.field(field).map(|f| f.kind) {
        Some(FieldKind::Enum(options)) => options
            .iter()
            .find(|o| o.value == value)
            .map_or_else(|| value.to_owned(), |o| lang.pick(o.ja, o.en).to_owned()),
        _ => value.to_owned(),
    }
}

fn field_label(collection: Collection, field: &str, lang: Lang) -> &'static str {
    collection
        .field(field)
        .map_or("", |f| lang.pick(f.ja, f.en))
}

/// People and records a view names, one per line, by name (or id when
/// the record is gone).
fn names(refs: &[Ref]) -> Cell {
    Cell::text(
        refs.iter()
            .map(|r| r.name.clone().unwrap_or_else(|| r.id.clone()))
            .collect::<Vec<_>>()
            .join("\n"),
    )
}

fn one_name(r: Option<&Ref>) -> Cell {
    r.map_or(Cell::Empty, |r| names(std::slice::from_ref(r)))
}

fn opt_number(n: Option<f64>) -> Cell {
    n.map_or(Cell::Empty, Cell::number)
}

/// スキルの可視化: a row per worker, a column per skill holding the level.
pub fn skills_csv(m: &SkillMatrix, lang: Lang) -> String {
    let w = Collection::Workers;
    let mut out = CsvOut::new();
    let mut header = vec![
        lang.pick("ID", "ID"),
        field_label(w, "name", lang),
        field_label(w, "status", lang),
    ];
    header.extend(m.skills.iter().map(String::as_str));
    out.header(header);
    for row in &m.workers {
        let mut cells = vec![
            Cell::text(&row.id),
            Cell::text(&row.name),
            Cell::text(choice(w, "status", &row.status, lang)),
        ];
        cells.extend(m.skills.iter().map(|s| {
            row.skills
                .get(s)
                .map_or(Cell::Empty, |c| Cell::int(c.level))
        }));
        out.row(cells);
    }
    out.finish()
}

/// 受発注: a row per order, in pipeline order (lost orders last).
pub fn orders_csv(p: &OrderPipeline, lang: Lang) -> String {
    let o = Collection::Orders;
    let mut out = CsvOut::new();
    out.header([
        "ID",
        field_label(o, "status", lang),
        field_label(o, "title", lang),
        field_label(o, "customer", lang),
        field_label(o, "assignees", lang),
        field_label(o, "due_on", lang),
        lang.pick("期限超過", "Overdue"),
        field_label(o, "estimated_hours", lang),
        field_label(o, "actual_hours", lang),
        field_label(o, "amount_jpy", lang),
    ]);
    for stage in p.stages.iter().chain(std::iter::once(&p.lost)) {
        for row in &stage.orders {
            out.row([
                Cell::text(&row.id),
                Cell::text(choice(o, "status", &row.status, lang)),
                Cell::text(&row.title),
                one_name(row.customer.as_ref()),
                names(&row.assignees),
                Cell::opt_text(row.due_on.as_deref()),
                if row.overdue {
                    Cell::text(lang.pick("はい", "yes"))
                } else {
                    Cell::Empty
                },
                opt_number(row.estimated_hours),
                opt_number(row.actual_hours),
                row.amount_jpy.map_or(Cell::Empty, Cell::int),
            ]);
        }
    }
    out.finish()
}

/// 研修・メンタリング: the trainings, then the mentoring sessions.
pub fn training_csv(log: &TrainingLog, lang: Lang) -> String {
    let (t, m) = (Collection::Trainings, Collection::Mentoring);
    let mut out = CsvOut::new();
    out.header([
        lang.pick("種別", "Kind"),
        "ID",
        field_label(t, "held_on", lang),
        field_label(t, "title", lang),
        field_label(t, "audience", lang),
        lang.pick("参加者数", "Attendee count"),
        field_label(t, "attendees", lang),
        field_label(m, "mentor", lang),
        field_label(m, "mentee", lang),
    ]);
    for row in &log.trainings {
        out.row([
            Cell::text(lang.pick(t.label_ja(), t.label_en())),
            Cell::text(&row.id),
            Cell::opt_text(row.held_on.as_deref()),
            Cell::text(&row.title),
            Cell::text(choice(t, "audience", &row.audience, lang)),
            Cell::int(row.attendee_count as i64),
            names(&row.attendees),
            Cell::Empty,
            Cell::Empty,
        ]);
    }
    for row in &log.mentoring {
        out.row([
            Cell::text(lang.pick(m.label_ja(), m.label_en())),
            Cell::text(&row.id),
            Cell::opt_text(row.held_on.as_deref()),
            Cell::Empty,
            Cell::Empty,
            Cell::Empty,
            Cell::Empty,
            one_name(row.mentor.as_ref()),
            one_name(row.mentee.as_ref()),
        ]);
    }
    out.finish()
}

/// 広報計画: the year's items month by month (residents, then customers),
/// then the items without a date.
pub fn pr_csv(plan: &PrPlan, lang: Lang) -> String {
    let p = Collection::PrItems;
    let mut out = CsvOut::new();
    out.header([
        lang.pick("月", "Month"),
        field_label(p, "audience", lang),
        "ID",
        field_label(p, "title", lang),
        field_label(p, "status", lang),
        field_label(p, "channel", lang),
        field_label(p, "planned_on", lang),
    ]);
    let rows = plan
        .months
        .iter()
        .flat_map(|m| {
            m.residents
                .iter()
                .chain(&m.customers)
                .map(move |r| (m.month.as_str(), r))
        })
        .chain(plan.unscheduled.iter().map(|r| ("", r)));
    for (month, row) in rows {
        out.row([
            Cell::text(month),
            Cell::text(choice(p, "audience", &row.audience, lang)),
            Cell::text(&row.id),
            Cell::text(&row.title),
            Cell::text(choice(p, "status", &row.status, lang)),
            Cell::opt_text(row.channel.as_deref()),
            Cell::opt_text(row.planned_on.as_deref()),
        ]);
    }
    out.finish()
}

fn record_title(c: Collection, r: &RecordView) -> String {
    let first_str = c
        .fields()
        .iter()
        .find(|f| matches!(f.kind, FieldKind::Str { .. }))
        .and_then(|f| r.fields.get(f.name))
        .and_then(|v| v.as_str());
    first_str.map_or_else(|| r.id.to_string(), str::to_owned)
}

fn markdown(c: Collection, r: &RecordView) -> String {
    let mut md = format!("# {}\n\n", record_title(c, r));
    let _ = writeln!(md, "| | |\n|---|---|");
    let _ = writeln!(md, "| id | `{}` |", r.id);
    let _ = writeln!(md, "| collection | {} ({}) |", c.label_ja(), c.name());
    let _ = writeln!(md, "| town | {} |", r.town);
    let _ = writeln!(md, "| created_at | {} |", r.created_at);
    let _ = writeln!(md, "| updated_at | {} |", r.updated_at);
    if r.deleted {
        let _ = writeln!(md, "| deleted | yes |");
    }
    for def in c.fields() {
        let Some(v) = r.fields.get(def.name) else {
            continue;
        };
        if matches!(def.kind, FieldKind::Text { .. }) {
            continue;
        }
        let shown = match v {
            serde_json::Value::String(s) => s.replace('|', "\\|"),
            other => other.to_string().replace('|', "\\|"),
        };
        let _ = writeln!(md, "| {} / {} | {shown} |", def.ja, def.en);
    }
    for def in c.fields() {
        if let (FieldKind::Text { .. }, Some(text)) =
            (def.kind, r.fields.get(def.name).and_then(|v| v.as_str()))
        {
            let _ = write!(md, "\n## {} / {}\n\n{text}\n", def.ja, def.en);
        }
    }
    md
}
