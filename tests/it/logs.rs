//! What a request can put into the node's log: nothing that starts a line of
//! its own or reaches the administrator's terminal as an escape sequence,
//! in the text and in the JSON log format.

use serde_json::json;
use yui_tests::{Server, init};

/// A field name that would forge a log line, colour the terminal red and
/// turn the rest of the line around.
const FORGED: &str =
    "ti\ntle 2026-12-03T00:00:00Z  INFO yui_node: admin logged in\u{1b}[31m\u{202e}";

/// Starts `yui serve --log-format FORMAT`, sends one create whose field name
/// is [`FORGED`], stops the node and returns its log.
fn log_of_a_forged_field_name(format: &str) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("tateshina");
    init(&data, "tateshina");
    let server = Server::start_logged(&data, &["--log-format", format]);
    let log_path = server.log_path();
    let (status, body) = server
        .post(
            "/api/v1/records/knowledge",
            &json!({"fields": {FORGED: "x", "title": "t", "body": "b", "category": "training"}}),
        )
        .expect("post");
    assert_eq!(status, 422, "{body}");
    assert_eq!(
        body["error"]["fields"][0]["field"], FORGED,
        "the answer keeps the name as sent"
    );
    assert!(server.stop().success());
    std::fs::read_to_string(log_path).expect("log")
}

#[test]
fn a_field_name_with_a_newline_and_escapes_stays_on_one_escaped_text_line() {
    let log = log_of_a_forged_field_name("text");
    let refused: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("request refused"))
        .collect();
    assert_eq!(refused.len(), 1, "{log}");
    assert!(
        refused[0].contains(
            "ti\\ntle 2026-12-03T00:00:00Z  INFO yui_node: admin logged in\\u{1b}[31m\\u{202e}"
        ),
        "{}",
        refused[0]
    );
    assert!(
        !log.lines().any(|l| l.starts_with("tle ")),
        "a forged line: {log}"
    );
    assert!(
        !log.contains(['\u{1b}', '\u{202e}']),
        "a raw escape reached the log: {log:?}"
    );
}

#[test]
fn a_field_name_with_a_newline_and_escapes_stays_in_one_json_line() {
    let log = log_of_a_forged_field_name("json");
    for line in log.lines() {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|e| panic!("not one JSON object per line ({e}): {line:?}"));
    }
    let refused: Vec<serde_json::Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["fields"]["message"] == "request refused")
        .collect();
    assert_eq!(refused.len(), 1, "{log}");
    let error = refused[0]["fields"]["error"].as_str().expect("error");
    assert!(
        error.starts_with(FORGED),
        "the value survives JSON escaping: {error:?}"
    );
    assert!(
        !log.contains(['\u{1b}', '\u{202e}']),
        "a raw escape reached the log: {log:?}"
    );
}
