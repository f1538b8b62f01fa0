//! `yui import COLLECTION FILE [--dry-run]`: a CSV file into a collection,
//! through the running node if there is one (so it is one write among the
//! others and audited as `node-token`), otherwise straight on the data
//! directory. The import itself is `crate::import`; this file reads the
//! file and words the outcome.

use std::path::Path;

use anyhow::{Context, Result};
use serde_json::Value;
use yui_protocol::Collection;

use super::call_api::{call_api_answer, running_api};
use super::cli_principal;
use crate::datadir::DataDir;
use crate::error::Error;
use crate::node::Node;

pub(super) async fn run(data_dir: DataDir, name: &str, file: &Path, dry_run: bool) -> Result<()> {
    let collection: Collection = name.parse().map_err(|_| {
        anyhow::anyhow!(
            "{name:?} is not a collection; the collections are: {}",
            Collection::ALL.map(|c| c.name()).join(", ")
        )
    })?;
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let answer = if let Some(api) = running_api(&data_dir)? {
        let path = format!("/api/v1/import/{}?dry_run={dry_run}", collection.name());
        let (status, value) = call_api_answer(
            &api,
            reqwest::Method::POST,
            &path,
            Some(bytes.into()),
            Some("text/csv"),
        )
        .await?;
        if (200..300).contains(&status) {
            Ok(value)
        } else {
            Err(value)
        }
    } else {
        let node = Node::open(data_dir, false)?;
        let result =
            crate::import::import(&node, &cli_principal(), collection, &bytes, dry_run).await;
        node.store.close();
        match result {
            Ok(report) => Ok(serde_json::to_value(report)?),
            Err(e) => {
                let Error::ImportRejected { problems, total } = &e else {
                    return Err(e.into());
                };
                Err(serde_json::json!({"error": {
                    "message": e.to_string(),
                    "problems": problems,
                    "problem_count": total,
                }}))
            }
        }
    };
    match answer {
        Ok(report) => {
            report_done(file, &report);
            Ok(())
        }
        Err(refusal) => {
            let error = &refusal["error"];
            for p in error["problems"].as_array().into_iter().flatten() {
                println!("{}", problem_line(p));
            }
            let listed = error["problems"].as_array().map_or(0, Vec::len);
            let total = error["problem_count"].as_u64().unwrap_or(0) as usize;
            if total > listed {
                println!("… and {} more problem(s)", total - listed);
            }
            let message = error["message"]
                .as_str()
                .map_or_else(|| refusal.to_string(), str::to_owned);
            anyhow::bail!("{message}")
        }
    }
}

/// `row 3, 氏名 (name): is required [missing_field]`.
fn problem_line(p: &Value) -> String {
    let row = p["row"].as_u64().unwrap_or(0);
    let mut at = if row == 0 {
        "the file".to_owned()
    } else {
        format!("row {row}")
    };
    match (p["column"].as_str(), p["field"].as_str()) {
        (Some(c), Some(f)) if c != f => at.push_str(&format!(", {c} ({f})")),
        (Some(c), _) => at.push_str(&format!(", {c}")),
        (None, Some(f)) => at.push_str(&format!(", {f}")),
        (None, None) => {}
    }
    format!(
        "{at}: {} [{}]",
        p["message"].as_str().unwrap_or(""),
        p["code"].as_str().unwrap_or("")
    )
}

fn report_done(file: &Path, r: &Value) {
    let n = |k: &str| r[k].as_u64().unwrap_or(0);
    let (collection, encoding) = (
        r["collection"].as_str().unwrap_or(""),
        r["encoding"].as_str().unwrap_or(""),
    );
    if r["dry_run"].as_bool().unwrap_or(false) {
        println!(
            "Dry run: {} ({encoding}, {} rows) would import into {collection} without a problem: {} to create, {} to update, {} unchanged. Nothing was written.",
            file.display(),
            n("rows"),
            n("created"),
            n("updated"),
            n("unchanged")
        );
    } else {
        println!(
            "Imported {} ({encoding}, {} rows) into {collection}: {} created, {} updated, {} unchanged.",
            file.display(),
            n("rows"),
            n("created"),
            n("updated"),
            n("unchanged")
        );
    }
}
