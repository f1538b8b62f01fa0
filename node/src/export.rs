//! `yui export`: every record as JSON (one file per collection) or Markdown
//! (one file per record, plus an index), for archives, audits and reports.
//!
//! Exports may hold personal data: they go only into a directory the command
//! creates or one the user owns with mode 0700 (`fsio::PrivateDir`), every
//! file is created new (never through a link, never over an existing file)
//! and owner-only, and an export that would meet an existing file refuses
//! before it writes anything.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;
use yui_protocol::schema::FieldKind;
use yui_protocol::{Collection, RecordView};

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
    }
    Ok(written)
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
