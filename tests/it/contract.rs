//! The API contract (issue 15): the OpenAPI document a node serves is what
//! the node accepts and answers.
//!
//! - Schemathesis (PyPI, pinned in `tests/contract/requirements.txt`) runs
//!   against a real `yui serve` with the node's token: every check, and its
//!   examples, coverage, fuzzing and stateful phases, for
//!   `YUI_CONTRACT_SECONDS` (default 180) with a fixed seed
//!   (`YUI_CONTRACT_SEED` picks another). Any failure fails the test.
//!   `tests/contract/hooks.py` teaches it the rules a JSON Schema cannot
//!   state (references, date order, registered names) for the cases it
//!   expects the node to accept; `tests/contract/schemathesis.toml` has the
//!   configuration.
//! - A client generated from the document with openapi-python-client
//!   creates, reads, updates, lists and searches records of two
//!   collections (`tests/contract/client_check.py`).
//!
//! Both tools live in the virtual environment `tests/contract/.venv`, which
//! `scripts/test` makes when it is missing or its pins changed. Without it
//! these tests fail: they do not skip.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use yui_tests::{Server, init};

fn contract_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("contract")
}

/// A program of the contract tools' virtual environment, which must hold
/// exactly the pinned versions.
fn tool(name: &str) -> PathBuf {
    let dir = contract_dir();
    let venv = dir.join(".venv");
    let pinned = std::fs::read_to_string(dir.join("requirements.txt")).expect("requirements.txt");
    let installed = std::fs::read_to_string(venv.join("requirements.txt")).unwrap_or_default();
    assert!(
        pinned == installed && venv.join("bin").join(name).exists(),
        "the contract tests need Schemathesis and openapi-python-client as pinned in {}: run `scripts/test`, which installs them into {}",
        dir.join("requirements.txt").display(),
        venv.display()
    );
    venv.join("bin").join(name)
}

/// A fresh node serving its API on 127.0.0.1 (no peer port: it has not
/// joined, so nothing the run adds as a peer is ever dialled).
fn node(dir: &Path) -> Server {
    let data = dir.join("tateshina");
    init(&data, "tateshina");
    Server::start_logged(&data, &[])
}

fn show(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn schemathesis_finds_the_node_true_to_its_openapi_document() {
    let st = tool("st");
    let dir = tempfile::tempdir().expect("tempdir");
    let server = node(dir.path());
    let seconds = std::env::var("YUI_CONTRACT_SECONDS").unwrap_or_else(|_| "180".into());
    let seed = std::env::var("YUI_CONTRACT_SEED").unwrap_or_else(|_| "15".into());
    let started = Instant::now();
    let out = Command::new(&st)
        .current_dir(dir.path())
        .env("SCHEMATHESIS_HOOKS", contract_dir().join("hooks.py"))
        .env("YUI_CONTRACT_BASE", &server.base)
        .env("YUI_CONTRACT_TOKEN", &server.token)
        .arg("--no-color")
        .arg("--config-file")
        .arg(contract_dir().join("schemathesis.toml"))
        .arg("run")
        .arg(server.url("/api/v1/openapi.json"))
        .args([
            "--header",
            &format!("Authorization: Bearer {}", server.token),
        ])
        .args(["--checks", "all"])
        .args(["--phases", "examples,coverage,fuzzing,stateful"])
        // One worker: with two threads, Hypothesis's lambda descriptions
        // call ast.parse concurrently, which CPython 3.11 does not survive
        // ("AST constructor recursion depth mismatch", an error of the
        // tool, not a finding about the node).
        .args(["--max-time", &seconds, "--seed", &seed, "--workers", "1"])
        .args(["--output-truncate", "false"])
        .output()
        .expect("run schemathesis");
    let output = show(&out);
    eprintln!(
        "{output}\nschemathesis ran for {:.0} s (seed {seed})",
        started.elapsed().as_secs_f64()
    );
    assert!(
        out.status.success(),
        "Schemathesis found the node and its OpenAPI document at odds (seed {seed}); the output is above"
    );
    for phase in ["Examples", "Coverage", "Fuzzing", "Stateful"] {
        assert!(
            output.contains(&format!("✅ {phase}")) || output.contains(&format!("✅  {phase}")),
            "the {phase} phase did not run and pass"
        );
    }
    assert_eq!(
        server.stop().code(),
        Some(0),
        "the node stops cleanly after the run"
    );
}

#[test]
fn a_client_generated_from_the_document_works_with_two_collections() {
    let generator = tool("openapi-python-client");
    let python = tool("python");
    let dir = tempfile::tempdir().expect("tempdir");
    let server = node(dir.path());
    let document = server
        .client
        .get(server.url("/api/v1/openapi.json"))
        .bearer_auth(&server.token)
        .send()
        .expect("openapi.json")
        .text()
        .expect("text");
    let doc_path = dir.path().join("openapi.json");
    std::fs::write(&doc_path, document).expect("write openapi.json");
    let generated = dir.path().join("client");
    std::fs::create_dir(&generated).expect("mkdir");
    let out = Command::new(&generator)
        .current_dir(&generated)
        .arg("generate")
        .arg("--path")
        .arg(&doc_path)
        .args(["--meta", "none", "--output-path", "yui_client"])
        .output()
        .expect("run openapi-python-client");
    let output = show(&out);
    assert!(out.status.success(), "generating the client: {output}");
    // The endpoints it leaves out take a text or binary body, which
    // openapi-python-client does not generate: a revocation list (PEM), the
    // CSV imports and the file uploads, one each per collection. Nothing
    // else may be missing.
    let mut skipped: Vec<&str> = output
        .lines()
        .filter(|l| l.starts_with("WARNING") || l.contains("Unable to"))
        .collect();
    skipped.sort_unstable();
    let mut expected: Vec<String> = yui_protocol::Collection::ALL
        .iter()
        .flat_map(|c| {
            [
                format!(
                    "WARNING parsing POST /api/v1/import/{0} within {0}. Endpoint will not be generated.",
                    c.name()
                ),
                format!(
                    "WARNING parsing POST /api/v1/records/{0}/{{id}}/attachments within {0}. Endpoint will not be generated.",
                    c.name()
                ),
            ]
        })
        .collect();
    expected.push(
        "WARNING parsing POST /api/v1/revocations within node. Endpoint will not be generated."
            .to_owned(),
    );
    expected.sort_unstable();
    assert_eq!(skipped, expected, "{output}");
    let out = Command::new(&python)
        .arg(contract_dir().join("client_check.py"))
        .env("PYTHONPATH", &generated)
        .env("YUI_CONTRACT_BASE", &server.base)
        .env("YUI_CONTRACT_TOKEN", &server.token)
        .output()
        .expect("run client_check.py");
    let output = show(&out);
    eprintln!("{output}");
    assert!(
        out.status.success(),
        "the generated client failed: {output}"
    );
    assert!(output.contains("client: all checks passed"), "{output}");
    assert_eq!(server.stop().code(), Some(0));
}
