//! A login flood against the real `yui serve` (issue 18, finding 8): 300
//! concurrent logins with made-up names from the same address as a real
//! user, who must still get in quickly, while the node's memory stays
//! bounded.

use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use reqwest::blocking::{Client, Response};
use reqwest::header::{COOKIE, RETRY_AFTER, SET_COOKIE};
use yui_tests::{Server, client_builder, init, yui_with_stdin};

const PASSWORD: &str = "tateshina-telework-2026";
const FLOOD: usize = 300;

/// Cookies kept by hand, as a browser would.
#[derive(Clone, Default)]
struct Jar(Vec<(String, String)>);

impl Jar {
    fn header(&self) -> String {
        self.0
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn keep(&mut self, resp: &Response) {
        for value in resp.headers().get_all(SET_COOKIE) {
            let text = value.to_str().expect("cookie text");
            let pair = text.split(';').next().unwrap_or("");
            let (name, value) = pair.split_once('=').expect("name=value");
            self.0.retain(|(k, _)| k != name);
            if !value.is_empty() {
                self.0.push((name.to_owned(), value.to_owned()));
            }
        }
    }

    fn forget(&mut self, name: &str) {
        self.0.retain(|(k, _)| k != name);
    }
}

fn client() -> Client {
    client_builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client")
}

/// Opens the login page: its CSRF cookie lands in `jar`; returns the token.
fn login_page(client: &Client, server: &Server, jar: &mut Jar) -> String {
    let resp = client
        .get(server.url("/login"))
        .header(COOKIE, jar.header())
        .send()
        .expect("login page");
    assert_eq!(resp.status(), 200);
    jar.keep(&resp);
    let body = resp.text().expect("body");
    yui_tests::browser::hidden_csrf(&body)
}

fn post_login(
    client: &Client,
    server: &Server,
    jar: &Jar,
    csrf: &str,
    user: &str,
    password: &str,
) -> reqwest::Result<Response> {
    let body: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("csrf", csrf),
            ("next", "/"),
            ("user", user),
            ("password", password),
        ])
        .finish();
    client
        .post(server.url("/login"))
        .header(COOKIE, jar.header())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
}

/// VmRSS or VmHWM of a process, in KiB.
fn vm_kib(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_login_flood_with_made_up_names_does_not_queue_a_real_user() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("tateshina");
    init(&data, "tateshina");
    let out = yui_with_stdin(
        &data,
        &["user", "add", "sato.hanako", "--role", "editor"],
        &format!("{PASSWORD}\n"),
    );
    assert!(out.status.success(), "{out:?}");
    let server = Server::start(&data);
    let pid = server.pid();
    let http = client();

    // The real user has logged in from this browser before, and logged out.
    let mut user = Jar::default();
    let csrf = login_page(&http, &server, &mut user);
    let first = post_login(&http, &server, &user, &csrf, "sato.hanako", PASSWORD).expect("login");
    assert_eq!(first.status(), 303, "the first login succeeds");
    user.keep(&first);
    user.forget("yui_session");
    let csrf = login_page(&http, &server, &mut user);

    // The flood: made-up names, one login form's CSRF pair, all at once.
    let mut attacker = Jar::default();
    let attacker_csrf = login_page(&http, &server, &mut attacker);
    let rss_before = vm_kib(pid, "VmRSS:");
    let start = Arc::new(Barrier::new(FLOOD + 1));
    let statuses = Arc::new(Mutex::new(Vec::new()));
    let flood: Vec<_> = (0..FLOOD)
        .map(|i| {
            let (start, statuses) = (start.clone(), statuses.clone());
            let (jar, csrf, base) = (attacker.clone(), attacker_csrf.clone(), server.base.clone());
            std::thread::spawn(move || {
                let http = client();
                let body: String = form_urlencoded::Serializer::new(String::new())
                    .extend_pairs([
                        ("csrf", csrf.as_str()),
                        ("user", &format!("made-up-{i}")),
                        ("password", "not the password"),
                    ])
                    .finish();
                start.wait();
                let answer = http
                    .post(format!("{base}/login"))
                    .header(COOKIE, jar.header())
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(body)
                    .send()
                    .map(|r| {
                        let retry = r.headers().get(RETRY_AFTER).is_some();
                        (r.status().as_u16(), retry)
                    })
                    .unwrap_or((0, false));
                statuses.lock().expect("lock").push(answer);
            })
        })
        .collect();
    let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let peak_rss = {
        let sampling = sampling.clone();
        std::thread::spawn(move || {
            let mut peak = 0;
            while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(vm_kib(pid, "VmRSS:"));
                std::thread::sleep(Duration::from_millis(20));
            }
            peak
        })
    };
    start.wait();
    std::thread::sleep(Duration::from_millis(200));

    // The real user, from the same address, in the middle of the flood.
    let started = Instant::now();
    let answer = post_login(&http, &server, &user, &csrf, "sato.hanako", PASSWORD);
    let took = started.elapsed();
    for t in flood {
        t.join().expect("flood thread");
    }
    sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    let peak_rss = peak_rss.join().expect("sampler");
    let hwm = vm_kib(pid, "VmHWM:");
    let statuses = statuses.lock().expect("lock").clone();
    let refused = statuses.iter().filter(|(s, _)| *s == 429).count();
    let failed = statuses.iter().filter(|(s, _)| *s == 401).count();
    let dropped = statuses.iter().filter(|(s, _)| *s == 0).count();
    eprintln!(
        "login flood: real user answered in {took:?} ({:?}); flood: {failed} 401, {refused} 429, {dropped} without an answer; RSS {rss_before} KiB before, peak {peak_rss} KiB, VmHWM {hwm} KiB",
        answer.as_ref().map(|r| r.status())
    );
    let answer = answer.expect("the real user's login was answered");
    assert_eq!(answer.status(), 303, "the real user got in");
    assert!(
        took < Duration::from_secs(2),
        "the real user waited {took:?} behind the flood"
    );
    assert!(
        hwm < 300 * 1024,
        "the node's memory peaked at {hwm} KiB during the flood"
    );
    assert!(
        statuses.iter().all(|(s, retry)| *s != 429 || *retry),
        "every 429 says when to come back (Retry-After)"
    );

    // Refused logins are counted in /metrics, with bounded labels.
    let metrics = http
        .get(server.url("/metrics"))
        .send()
        .expect("metrics")
        .text()
        .expect("text");
    let counted: u64 = metrics
        .lines()
        .filter(|l| l.starts_with("yui_logins_refused_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert_eq!(counted as usize, refused, "{metrics}");
    assert!(
        !metrics.contains("made-up-"),
        "no login name reaches /metrics"
    );
}
