//! Monitoring that plugs in (issue 15): Prometheus's own `promtool` checks
//! the alert rules in `examples/prometheus` (and runs their unit tests) and
//! lints the `/metrics` of real joined nodes; every metric the rules and the
//! Grafana dashboard in `examples/grafana` use is one a node exposes.
//!
//! `scripts/test` installs Debian's prometheus package for `promtool`; the
//! test fails, never skips, without it.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use yui_tests::{Ca, Server, id_of, knowledge, member, wait_for};

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

fn promtool(args: &[&str], stdin: Option<&str>) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(args)
        .current_dir(examples().join("prometheus"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is missing: scripts/test installs Debian's prometheus package (apt-get install prometheus)");
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(text.as_bytes())
            .expect("write stdin");
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().expect("promtool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn metrics_of(node: &Server) -> String {
    yui_tests::client_builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
        .get(node.url("/metrics"))
        .send()
        .expect("GET /metrics")
        .text()
        .expect("text")
}

/// The Yui and process metric names an expression names.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let rest = &text[i..];
        let starts = (rest.starts_with("yui_") || rest.starts_with("process_"))
            && (i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_'));
        if starts {
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            names.insert(rest[..end].to_owned());
            i += end;
        } else {
            i += 1;
        }
    }
    names
}

#[test]
fn alert_rules_dashboard_and_metrics_pass_promtool() {
    let (ok, out) = promtool(&["check", "rules", "yui-alerts.yml"], None);
    assert!(ok, "{out}");
    let (ok, out) = promtool(&["test", "rules", "yui-alerts.test.yml"], None);
    assert!(ok, "{out}");
    let (ok, out) = promtool(&["check", "config", "prometheus.yml"], None);
    assert!(ok, "{out}");

    // Two members that have synced: the peer, quota and certificate
    // metrics are there too.
    let root = tempfile::tempdir().expect("tmp");
    let ca = Ca::init(&root.path().join("ca"), "監視テスト");
    let a = Server::start_peer(&member(root.path(), "tateshina", &ca), "127.0.0.1:0");
    let b = Server::start_peer(&member(root.path(), "omachi", &ca), "127.0.0.1:0");
    a.add_peer(b.peer_url());
    let id = id_of(&a.create("knowledge", knowledge("監視の記事")));
    assert!(wait_for(Duration::from_secs(10), || b
        .record("knowledge", &id)
        .is_some()));
    let mut exposed = BTreeSet::new();
    for node in [&a, &b] {
        let text = metrics_of(node);
        let (ok, out) = promtool(&["check", "metrics"], Some(&text));
        assert!(
            ok && out.trim().is_empty(),
            "promtool check metrics: {out}\n{text}"
        );
        exposed.extend(
            text.lines()
                .filter(|l| !l.starts_with('#'))
                .filter_map(|l| l.split(['{', ' ']).next())
                .map(str::to_owned),
        );
    }
    for name in [
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_start_time_seconds",
        "yui_disk_free_bytes",
        "yui_peer_port_refused_total",
        "yui_certificate_expiry_timestamp_seconds",
    ] {
        assert!(exposed.contains(name), "{name} is not exposed");
    }

    // Nothing in the examples names a metric the node does not expose.
    let rules =
        std::fs::read_to_string(examples().join("prometheus/yui-alerts.yml")).expect("rules");
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(examples().join("grafana/yui-dashboard.json")).expect("dashboard"),
    )
    .expect("the dashboard is JSON");
    let exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t["expr"].as_str().map(str::to_owned))
        .collect();
    assert!(exprs.len() >= 10, "{exprs:?}");
    let mut used = metric_names(&rules);
    for e in &exprs {
        used.extend(metric_names(e));
    }
    let missing: Vec<&String> = used.iter().filter(|n| !exposed.contains(*n)).collect();
    assert!(missing.is_empty(), "used but not exposed: {missing:?}");
}
