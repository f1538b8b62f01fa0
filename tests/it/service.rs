//! The systemd unit in `examples/yui.service`, run as systemd would run it:
//! its `ExecStart` command line (binary and data directory swapped for the
//! test's), stopped with its `KillSignal` while clients are writing. The
//! node must exit 0 within `TimeoutStopSec`, keep every write it
//! acknowledged, and log one JSON object per line, as the unit asks.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use yui_tests::{Server, client_builder, init, yui_bin};

const UNIT: &str = include_str!("../../examples/yui.service");

/// `Key=value` of the unit's `[Service]` section.
fn service_setting(key: &str) -> String {
    UNIT.lines()
        .skip_while(|l| l.trim() != "[Service]")
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("the unit has no {key}="))
        .trim()
        .to_owned()
}

#[test]
fn the_systemd_unit_runs_the_node_and_sigterm_keeps_every_acknowledged_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    init(&data, "tateshina");
    // The unit itself, checked by systemd where it is installed.
    if Path::new("/usr/bin/systemd-analyze").exists() {
        systemd_verifies_the_unit(dir.path());
    }

    assert_eq!(service_setting("KillSignal"), "SIGTERM");
    let stop_within =
        Duration::from_secs(service_setting("TimeoutStopSec").parse().expect("seconds"));
    let log_path = dir.path().join("journal.log");
    let (mut child, api) = start_as_the_unit_does(&data, &log_path);
    let token = std::fs::read_to_string(data.join("api-token"))
        .expect("token")
        .trim()
        .to_owned();

    // Four clients write as fast as they can; each keeps what was acknowledged.
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (api, token, acknowledged, stop) = (
                api.clone(),
                token.clone(),
                acknowledged.clone(),
                stop.clone(),
            );
            std::thread::spawn(move || write_until_stopped(w, &api, &token, &acknowledged, &stop))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    let before_signal = acknowledged.lock().expect("lock").len();
    assert!(
        before_signal > 20,
        "only {before_signal} writes before the signal"
    );
    let signalled = Instant::now();
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let exit = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        assert!(
            signalled.elapsed() < stop_within,
            "no exit within TimeoutStopSec"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().expect("writer");
    }
    assert_eq!(exit.code(), Some(0), "exit after SIGTERM: {exit}");
    let took = signalled.elapsed();

    the_journal_is_json_and_says_it_stopped(&log_path);

    // Every acknowledged write is there after a restart.
    let acknowledged = acknowledged.lock().expect("lock").clone();
    let server = Server::start(&data);
    for id in &acknowledged {
        assert!(
            server.record("knowledge", id).is_some(),
            "acknowledged {id} is missing"
        );
    }
    // A write may have been committed while its answer was cut off by the
    // stop: at most one per client, never fewer than acknowledged.
    let stored = server.count("knowledge");
    let acked = acknowledged.len() as u64;
    assert!(
        stored >= acked && stored <= acked + 4,
        "{stored} stored, {acked} acknowledged"
    );
    eprintln!(
        "{} writes acknowledged ({before_signal} before SIGTERM); stopped in {:.0} ms, exit 0",
        acknowledged.len(),
        took.as_secs_f64() * 1000.0
    );
    assert_eq!(server.stop().code(), Some(0));
}

/// `systemd-analyze verify` of the unit, its binary swapped for the test's.
fn systemd_verifies_the_unit(dir: &Path) {
    let unit = dir.join("yui.service");
    let exec = service_setting("ExecStart");
    let local = UNIT.replace(
        &exec,
        &exec.replace("/usr/local/bin/yui", &yui_bin().display().to_string()),
    );
    std::fs::write(&unit, local).expect("unit");
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
        .expect("systemd-analyze");
    let said = String::from_utf8_lossy(&out.stderr);
    // Outside a booted systemd (CI containers) verify also complains
    // about the machine; only complaints about the unit count.
    let about_unit: Vec<&str> = said
        .lines()
        .filter(|l| l.starts_with("yui.service:"))
        .collect();
    assert!(about_unit.is_empty(), "systemd-analyze verify: {said}");
}

/// Starts the unit's `ExecStart` on `data`, its log to `log_path`; returns
/// the process and the API's base URL once it printed it and its console.
fn start_as_the_unit_does(data: &Path, log_path: &Path) -> (Child, String) {
    let exec = service_setting("ExecStart");
    let mut words = exec.split_whitespace();
    assert_eq!(words.next(), Some("/usr/local/bin/yui"));
    let args: Vec<String> = words
        .map(|w| w.replace("/var/lib/yui/data", &data.display().to_string()))
        .collect();
    assert_eq!(args.last().map(String::as_str), Some("serve"));
    let mut child = Command::new(yui_bin())
        .args(&args)
        .args(["--api-listen", "127.0.0.1:0", "--no-peer-port"])
        .env_remove("YUI_DATA_DIR")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log_path).expect("log"))
        .spawn()
        .expect("spawn the unit's ExecStart");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let api = loop {
        let line = lines
            .next()
            .expect("serve printed its addresses")
            .expect("line");
        if let Some(rest) = line.strip_prefix("API:") {
            break rest
                .split_whitespace()
                .next()
                .expect("url")
                .trim_end_matches("/api/v1/")
                .to_owned();
        }
    };
    // With no console user yet, the node says how to make the first one.
    let console = loop {
        let line = lines
            .next()
            .expect("serve printed its console")
            .expect("line");
        if let Some(rest) = line.strip_prefix("Console:") {
            break rest.trim().to_owned();
        }
    };
    assert!(
        console.starts_with(&format!("{api}/")) && console.contains("user add NAME --role admin"),
        "{console}"
    );
    std::thread::spawn(move || for _ in lines {});
    (child, api)
}

/// Writer `w`: creates records as fast as it can until `stop`, keeping the
/// ids the node acknowledged.
fn write_until_stopped(
    w: usize,
    api: &str,
    token: &str,
    acknowledged: &Mutex<Vec<String>>,
    stop: &AtomicBool,
) {
    let client = client_builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client");
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let body = json!({"fields": {"title": format!("停止テスト {w}-{n}"), "body": "SIGTERM の最中に書いた記録", "category": "other", "tags": []}});
        let sent = client
            .post(format!("{api}/api/v1/records/knowledge"))
            .bearer_auth(token)
            .json(&body)
            .send();
        match sent {
            Ok(r) if r.status().as_u16() == 201 => {
                let rec: Value = r.json().expect("json");
                acknowledged
                    .lock()
                    .expect("lock")
                    .push(rec["id"].as_str().expect("id").to_owned());
            }
            // Refused or cut off while stopping: not acknowledged.
            Ok(_) | Err(_) => {}
        }
    }
}

/// The journal: one JSON object per line, the stop announced and done.
fn the_journal_is_json_and_says_it_stopped(log_path: &Path) {
    let journal = std::fs::read_to_string(log_path).expect("log");
    let events: Vec<Value> = journal
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {l}"))
        })
        .collect();
    let messages: Vec<&str> = events
        .iter()
        .filter_map(|e| e["fields"]["message"].as_str())
        .collect();
    assert!(
        messages.iter().any(|m| m.starts_with("shutting down")),
        "{messages:?}"
    );
    assert_eq!(messages.last(), Some(&"stopped"), "{messages:?}");
    assert!(
        events
            .iter()
            .all(|e| e["level"].is_string() && e["timestamp"].is_string())
    );
}
