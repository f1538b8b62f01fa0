//! `yui export`: every record as JSON (one file per collection) or Markdown
//! (one file per record, plus an index), for archives, audits and reports.
//!
//! Exports may hold personal data: the directory is created owner-only and
//! every file is written owner-only.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

use anyhow::{Context, Result};
use yui_protocol::schema::FieldKind;
use yui_protocol::{Collection, RecordView};

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
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))?;
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
                write_private(&dir.join(format!("{}.json", c.name())), &json)?;
                written += records.len();
            }
        }
        ExportFormat::Markdown => {
            let mut index = String::from("# Yui export\n\n");
            for (c, records) in &by_collection {
                let sub = dir.join(c.name());
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(&sub)?;
                let _ = writeln!(
                    index,
                    "## {} / {} ({})\n",
                    c.label_ja(),
                    c.label_en(),
                    records.len()
                );
                for r in records {
                    let title = record_title(*c, r);
                    write_private(
                        &sub.join(format!("{}.md", r.id)),
                        markdown(*c, r).as_bytes(),
                    )?;
                    let _ = writeln!(index, "- [{title}]({}/{}.md)", c.name(), r.id);
                    written += 1;
                }
                index.push('\n');
            }
            write_private(&dir.join("index.md"), index.as_bytes())?;
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

fn write_private(path: &Path, data: &[u8]) -> Result<()> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(data)
        .with_context(|| format!("writing {}", path.display()))
}
