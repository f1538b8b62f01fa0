//! `yui demo`: three towns start, a shared record crosses two hops, the
//! worker's record stays home, and Ctrl-C stops everything cleanly.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use yui_tests::yui_bin;

#[test]
fn the_demo_shows_records_crossing_and_stops_on_ctrl_c() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keep = dir.path().join("demo");
    let mut child = Command::new(yui_bin())
        .args(["demo", "--dir", keep.to_str().expect("utf8")])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn yui demo");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) => {
                let ready = line.contains("Ctrl-C");
                lines.push(line);
                if ready {
                    break;
                }
            }
            Err(_) => {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("the demo exited early ({status}): {}", lines.join("\n"));
                }
            }
        }
    }
    let text = lines.join("\n");
    assert!(
        text.contains("Ctrl-C"),
        "the demo did not get ready: {text}"
    );
    assert!(!text.contains('✘'), "{text}");
    assert!(text.contains("糸魚川市 に届きました"), "{text}");
    assert!(text.contains("そろって持っています"), "{text}");
    assert_eq!(
        text.matches("ありません（立科町の外に出ません）").count(),
        2,
        "{text}"
    );
    for town in ["tateshina", "omachi", "itoigawa"] {
        assert!(keep.join(town).join("config.toml").exists(), "{town}");
    }
    // A demo town answers like a real node: search Itoigawa for 研修, which
    // only Tateshina wrote about.
    let api = text
        .lines()
        .skip_while(|l| !l.starts_with("糸魚川市"))
        .find_map(|l| l.trim().strip_prefix("API:"))
        .map(|u| u.trim().trim_end_matches("api/v1/status").to_owned())
        .expect("Itoigawa's API");
    let token = std::fs::read_to_string(keep.join("itoigawa/api-token")).expect("token");
    let found: serde_json::Value = yui_tests::client_builder()
        .build()
        .expect("client")
        .get(format!("{api}api/v1/search?q=%E7%A0%94%E4%BF%AE"))
        .bearer_auth(token.trim())
        .send()
        .expect("search")
        .json()
        .expect("json");
    let towns: Vec<&str> = found["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|r| r["town"].as_str())
        .collect();
    assert!(towns.contains(&"tateshina"), "{found}");

    // The console login the demo printed for Itoigawa works.
    let password = text
        .lines()
        .skip_while(|l| !l.starts_with("糸魚川市"))
        .find_map(|l| l.split("password: ").nth(1))
        .map(|p| p.trim_end_matches(')').to_owned())
        .expect("Itoigawa's console password");
    let http = yui_tests::client_builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let page = http.get(format!("{api}login")).send().expect("login page");
    let cookie = page
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok()?.split(';').next().map(str::to_owned))
        .collect::<Vec<_>>()
        .join("; ");
    let body = page.text().expect("body");
    let csrf = body
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("csrf");
    let signed_in = http
        .post(format!("{api}login"))
        .header(reqwest::header::COOKIE, cookie)
        .form(&[
            ("csrf", csrf),
            ("next", "/"),
            ("user", "demo"),
            ("password", &password),
        ])
        .send()
        .expect("login");
    assert_eq!(signed_in.status().as_u16(), 303, "the demo's console login");

    let pid = child.id().to_string();
    let _ = Command::new("kill").args(["-INT", &pid]).status();
    let stop_deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break status;
        }
        assert!(
            Instant::now() < stop_deadline,
            "the demo did not stop on Ctrl-C"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
}
