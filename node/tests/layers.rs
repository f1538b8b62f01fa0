//! The node's layering rules, checked on its source (in the manner of
//! rust-analyzer's tidy tests): the top-level modules of `node/src` form
//! floors, and a module imports only from the floors below it, or from the
//! modules before it on its own floor. So there are no import circles, and
//! a new one fails CI with the edge that closed it. Below the adapters no
//! module names axum; only the store names rusqlite, and only the peer
//! layer rustls. `docs/architecture.md` states the same rules for people.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The floors, lowest first; within a floor, a module may import those
/// listed before it.
const FLOORS: &[(&str, &[&str])] = &[
    ("base", &["error", "clock", "fsio", "logging"]),
    (
        "resources",
        &[
            "store", "datadir", "blobs", "accounts", "pki", "peer", "metrics",
        ],
    ),
    (
        "domain",
        &[
            "node",
            "membership",
            "actions",
            "records",
            "attachments",
            "daily",
            "kpi",
            "export",
            "import",
        ],
    ),
    ("adapters", &["http", "console"]),
    ("composition", &["daemon", "demo", "cli"]),
];

/// Modules below the adapters speak no HTTP framework: they take and return
/// plain types. `peer` serves its own port and is exempt.
const NO_AXUM: &[&str] = &[
    "error",
    "clock",
    "fsio",
    "logging",
    "store",
    "datadir",
    "blobs",
    "accounts",
    "pki",
    "metrics",
    "node",
    "membership",
    "actions",
    "records",
    "attachments",
    "daily",
    "kpi",
    "export",
    "import",
];

/// Crates that only some modules may name: SQL stays in the store, TLS in
/// the peer layer (reqwest also in the CLI, which calls the node's own API
/// over plain HTTP on 127.0.0.1).
const CONFINED: &[(&str, &[&str])] = &[
    ("rusqlite", &["store"]),
    ("rustls", &["peer"]),
    ("reqwest", &["peer", "cli"]),
];

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("read node/src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to (`store/records.rs` -> `store`).
fn module_of(file: &Path) -> String {
    let rel = file.strip_prefix(src_dir()).expect("under src");
    let first = rel.components().next().expect("a component");
    first
        .as_os_str()
        .to_string_lossy()
        .trim_end_matches(".rs")
        .to_owned()
}

/// The code of a file without its comments (line comments and doc
/// comments), so prose that names a module is not an import.
fn code_of(text: &str) -> String {
    text.lines()
        .map(|line| {
            let trimmed = line.trim_start();
            if trimmed.starts_with("//") { "" } else { line }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The top-level modules a piece of code names through `crate::`, including
/// grouped imports such as `use crate::{store::Store, pki}`.
fn crate_refs(code: &str) -> BTreeSet<String> {
    let mut refs = BTreeSet::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + "crate::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue; // e.g. `yui_crate::`
        }
        if let Some(group) = rest.strip_prefix('{') {
            let end = matching_brace(group);
            for item in split_top_level(&group[..end]) {
                if let Some(name) = leading_ident(item.trim()) {
                    refs.insert(name);
                }
            }
        } else if let Some(name) = leading_ident(rest) {
            refs.insert(name);
        }
    }
    refs
}

fn matching_brace(s: &str) -> usize {
    let mut depth = 0usize;
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => return i,
            '}' => depth -= 1,
            _ => {}
        }
    }
    s.len()
}

fn split_top_level(s: &str) -> Vec<&str> {
    let (mut parts, mut depth, mut start) = (Vec::new(), 0usize, 0);
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

fn leading_ident(s: &str) -> Option<String> {
    let ident: String = s
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    (!ident.is_empty()).then_some(ident)
}

struct Source {
    /// module -> the modules it imports, with one file that does.
    edges: BTreeMap<String, BTreeMap<String, PathBuf>>,
    /// crate name -> module -> files that name it (`axum` and [`CONFINED`]).
    names: BTreeMap<&'static str, BTreeMap<String, Vec<PathBuf>>>,
}

fn read_source() -> Source {
    let mut files = Vec::new();
    rust_files(&src_dir(), &mut files);
    files.sort();
    let mut source = Source {
        edges: BTreeMap::new(),
        names: BTreeMap::new(),
    };
    for file in files {
        let module = module_of(&file);
        if module == "lib" || module == "main" {
            continue;
        }
        let code = code_of(&fs::read_to_string(&file).expect("read a source file"));
        let out = source.edges.entry(module.clone()).or_default();
        for target in crate_refs(&code) {
            // `crate::Error`, `crate::Result`: the crate root's re-exports.
            if target != module && target.chars().next().is_some_and(char::is_lowercase) {
                out.entry(target).or_insert_with(|| file.clone());
            }
        }
        for name in std::iter::once("axum").chain(CONFINED.iter().map(|(name, _)| *name)) {
            if code.contains(name) {
                let files = source.names.entry(name).or_default();
                files.entry(module.clone()).or_default().push(file.clone());
            }
        }
    }
    source
}

/// Each module's floor and place: (floor index, position within the floor).
fn places() -> BTreeMap<&'static str, (usize, usize)> {
    let mut places = BTreeMap::new();
    for (floor, (_, modules)) in FLOORS.iter().enumerate() {
        for (position, module) in modules.iter().enumerate() {
            places.insert(*module, (floor, position));
        }
    }
    places
}

/// Fails with every finding, one a line, when there are any.
fn refuse(found: &[impl std::fmt::Display], what: &str) {
    let lines: Vec<String> = found.iter().map(ToString::to_string).collect();
    assert!(lines.is_empty(), "{what}:\n{}", lines.join("\n"));
}

#[test]
fn every_module_has_a_floor() {
    let source = read_source();
    let places = places();
    let missing: Vec<_> = source
        .edges
        .keys()
        .filter(|m| !places.contains_key(m.as_str()))
        .collect();
    refuse(
        &missing,
        "node/src modules without a floor in node/tests/layers.rs (and docs/architecture.md)",
    );
}

#[test]
fn imports_only_go_down() {
    let source = read_source();
    let places = places();
    let mut upward = Vec::new();
    for (from, targets) in &source.edges {
        let Some(&(floor, position)) = places.get(from.as_str()) else {
            continue;
        };
        for (to, file) in targets {
            let Some(&(to_floor, to_position)) = places.get(to.as_str()) else {
                continue;
            };
            if to_floor > floor || (to_floor == floor && to_position > position) {
                upward.push(format!(
                    "{from} ({}) imports {to} ({}) in {}",
                    FLOORS[floor].0,
                    FLOORS[to_floor].0,
                    file.display()
                ));
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports against the layering:\n{}",
        upward.join("\n")
    );
}

#[test]
fn no_import_circles() {
    let source = read_source();
    // Depth-first search for a back edge; reports the circle it closes.
    fn visit(
        module: &str,
        edges: &BTreeMap<String, BTreeMap<String, PathBuf>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|m| m == module) {
            let mut circle = path[start..].to_vec();
            circle.push(module.to_owned());
            return Some(circle);
        }
        if !done.insert(module.to_owned()) {
            return None;
        }
        path.push(module.to_owned());
        for next in edges.get(module).into_iter().flat_map(BTreeMap::keys) {
            if let Some(circle) = visit(next, edges, path, done) {
                return Some(circle);
            }
        }
        path.pop();
        None
    }
    let mut done = BTreeSet::new();
    for module in source.edges.keys() {
        let mut path = Vec::new();
        if let Some(circle) = visit(module, &source.edges, &mut path, &mut done) {
            panic!(
                "an import circle between node/src modules: {}",
                circle.join(" -> ")
            );
        }
    }
}

#[test]
fn lower_floors_speak_no_http_framework() {
    let source = read_source();
    let axum = source.names.get("axum").cloned().unwrap_or_default();
    let offenders: Vec<_> = NO_AXUM
        .iter()
        .filter_map(|m| axum.get(*m))
        .flatten()
        .map(|f| f.display().to_string())
        .collect();
    refuse(&offenders, "modules below the adapters name axum");
}

#[test]
fn sql_and_tls_stay_where_they_belong() {
    let source = read_source();
    let mut offenders = Vec::new();
    for (name, allowed) in CONFINED {
        for (module, files) in source.names.get(name).into_iter().flatten() {
            if !allowed.contains(&module.as_str()) {
                offenders.extend(files.iter().map(|f| format!("{name} in {}", f.display())));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "confined crates named elsewhere: {offenders:?}"
    );
}

/// One rule per action (issue 18, finding 6): an audit entry is written
/// only by `actions` (every action's entry) and `accounts` (its own login,
/// logout and override entries), so no entry point words its own. Every
/// other module calls `actions::…`.
#[test]
fn audit_entries_are_written_in_one_place() {
    const WRITERS: &[&str] = &["actions", "accounts", "store"];
    let mut files = Vec::new();
    rust_files(&src_dir(), &mut files);
    files.sort();
    let mut offenders = Vec::new();
    for file in files {
        let module = module_of(&file);
        if WRITERS.contains(&module.as_str()) {
            continue;
        }
        let code = code_of(&fs::read_to_string(&file).expect("read a source file"));
        for needle in [".audit(", "insert_audit(", "append_audit("] {
            if code.contains(needle) {
                offenders.push(format!("{needle} in {}", file.display()));
            }
        }
    }
    refuse(
        &offenders,
        "audit entries written outside actions and accounts (use crate::actions)",
    );
}

#[test]
fn the_reader_finds_grouped_and_nested_imports() {
    let refs = crate_refs(
        "use crate::{store::{Store, ListQuery}, pki};\nlet x = crate::daily::load();\n// crate::cli in a comment counts here, code_of strips it",
    );
    assert_eq!(
        refs.into_iter().collect::<Vec<_>>(),
        ["cli", "daily", "pki", "store"]
    );
    assert!(crate_refs(&code_of("// crate::cli only in prose")).is_empty());
}
