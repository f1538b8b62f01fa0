//! The personal-data guard on the example data (issue 6): how often it
//! fires on texts that hold no personal data, and what a scan costs.
//!
//! ```text
//! cargo bench -p yui-protocol --bench guard
//! ```
//!
//! Texts: every string field of the shared records in
//! `examples/demo-records.json`; every non-empty line of the seed documents
//! (`../shared/seeds/*.txt`, the programme's own press releases and plans);
//! and the 10,000 knowledge records of the consortium workload
//! (`node ../shared/peers/lib/gen.js --jsonl 10000`, when Node.js is there).
//! None of them holds personal data, so every finding is a false positive
//! unless it is an organisation's published number, which is listed.
#![allow(clippy::print_stdout, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use yui_protocol::guard::{self, Registry};

fn strings(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::String(s) => out.push(s.clone()),
        serde_json::Value::Array(a) => a.iter().for_each(|v| strings(v, out)),
        serde_json::Value::Object(o) => o.values().for_each(|v| strings(v, out)),
        _ => {}
    }
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut sets: Vec<(&str, Vec<String>)> = Vec::new();

    let demo: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("examples/demo-records.json")).unwrap(),
    )
    .unwrap();
    let mut demo_texts = Vec::new();
    // Registered names: the demo's own workers and customer contacts.
    let mut registry = Registry::new();
    for town in demo["towns"].as_array().unwrap() {
        for rec in town["records"].as_array().unwrap() {
            let collection = rec["collection"].as_str().unwrap();
            let fields = &rec["fields"];
            if collection
                .parse::<yui_protocol::Collection>()
                .is_ok_and(|c| c.is_shared())
            {
                strings(fields, &mut demo_texts);
            } else {
                for key in ["name", "name_kana", "contact_name"] {
                    if let Some(n) = fields[key].as_str() {
                        registry.add(n);
                    }
                }
            }
        }
    }
    sets.push(("demo records (shared fields)", demo_texts));

    let seeds = root.join("../shared/seeds");
    let mut seed_lines = Vec::new();
    if let Ok(dir) = std::fs::read_dir(&seeds) {
        let mut files: Vec<_> = dir.flatten().map(|e| e.path()).collect();
        files.sort();
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap_or_default();
            seed_lines.extend(
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(str::to_owned),
            );
        }
    }
    sets.push(("seed documents (lines)", seed_lines));

    let generated = std::process::Command::new("node")
        .arg(root.join("../shared/peers/lib/gen.js"))
        .args(["--jsonl", "10000"])
        .output();
    let mut workload = Vec::new();
    if let Ok(out) = generated {
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            if v["kind"] == "knowledge" {
                workload.push(format!(
                    "{}\n{}",
                    v["title"].as_str().unwrap_or(""),
                    v["body"].as_str().unwrap_or("")
                ));
            }
        }
    }
    sets.push(("consortium workload (knowledge title + body)", workload));

    println!(
        "registered names from the demo's workers and customers: {}",
        registry.len()
    );
    for (name, texts) in &sets {
        let chars: usize = texts.iter().map(|t| t.chars().count()).sum();
        let t = Instant::now();
        let mut by_kind: BTreeMap<&str, usize> = BTreeMap::new();
        let mut flagged = 0;
        let mut examples = Vec::new();
        for text in texts {
            let found = guard::scan_text("text", text, &registry);
            if !found.is_empty() {
                flagged += 1;
            }
            for f in found {
                *by_kind.entry(f.kind.as_str()).or_default() += 1;
                let context: String = text
                    .chars()
                    .skip(f.start.saturating_sub(12))
                    .take(f.end - f.start + 24)
                    .collect();
                examples.push(format!("{}: {}", f.kind, context.replace('\n', " ")));
            }
        }
        let took = t.elapsed();
        println!(
            "{name}: {} texts, {chars} characters; flagged {flagged} ({:.2} %); findings by kind {by_kind:?}; scan {:.1} µs per text, {:.0} MB/s",
            texts.len(),
            100.0 * flagged as f64 / texts.len().max(1) as f64,
            took.as_secs_f64() * 1e6 / texts.len().max(1) as f64,
            texts.iter().map(String::len).sum::<usize>() as f64 / took.as_secs_f64() / 1e6
        );
        for e in examples.iter().take(10) {
            println!("    {e}");
        }
    }
}
