//! The web console in a real browser (issue "The web console …"): two
//! towns' real `yui serve` processes that sync over mutual TLS, users made
//! with `yui user add`, and `tests/browser/console.mjs` driving Debian's
//! Chromium through playwright-core: log in, create a Japanese article,
//! edit it, find it by a two-character search, see a field error, switch
//! language and back, see a missing CSRF token and a viewer's forged post
//! refused, watch the article arrive on the other town's console, log out.
//! `scripts/test` installs Chromium and playwright-core when missing.

use std::path::{Path, PathBuf};
use std::process::Command;

use yui_tests::{Ca, Server, member, yui_with_stdin};

fn chromium() -> PathBuf {
    let found = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists());
    found.unwrap_or_else(|| {
        panic!("the browser tests need Debian's chromium: run `scripts/test`, which installs it, or `apt-get install chromium`")
    })
}

fn browser_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("browser");
    assert!(
        dir.join("node_modules/playwright-core").exists(),
        "the browser tests need playwright-core: run `scripts/test`, or `npm ci` in {}",
        dir.display()
    );
    dir
}

fn add_user(data: &Path, name: &str, role: &str, password: &str) {
    let out = yui_with_stdin(
        data,
        &["user", "add", name, "--role", role],
        &format!("{password}\n"),
    );
    assert!(
        out.status.success(),
        "yui user add {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_console_in_chromium_from_login_to_a_record_crossing_towns() {
    let (chromium, dir_of_script) = (chromium(), browser_dir());
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::init(&dir.path().join("ca"), "信州テレワーク・コンソーシアム");
    let a_dir = member(dir.path(), "tateshina", &ca);
    let b_dir = member(dir.path(), "omachi", &ca);
    let admin = ("kanri", "tateshina-admin-2026");
    let viewer = ("etsuran", "tateshina-viewer-2026");
    add_user(&a_dir, admin.0, "admin", admin.1);
    add_user(&b_dir, admin.0, "admin", admin.1);
    add_user(&a_dir, viewer.0, "viewer", viewer.1);
    let a = Server::start_peer(&a_dir, "127.0.0.1:0");
    let b = Server::start_peer(&b_dir, "127.0.0.1:0");
    a.add_peer(b.peer_url());

    let out = Command::new("node")
        .arg(dir_of_script.join("console.mjs"))
        .current_dir(&dir_of_script)
        .env("YUI_A", &a.base)
        .env("YUI_B", &b.base)
        .env("YUI_ADMIN", format!("{}:{}", admin.0, admin.1))
        .env("YUI_VIEWER", format!("{}:{}", viewer.0, viewer.1))
        .env("YUI_CHROMIUM", &chromium)
        .output()
        .expect("run node (Node.js is needed for the browser tests)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the browser test failed:\n{stdout}");
    assert!(stdout.contains("all checks passed"), "{stdout}");

    // What the browser did is what the nodes hold.
    let path = stdout
        .lines()
        .find_map(|l| l.split("(record ").nth(1))
        .map(|s| s.trim_end_matches(')').to_owned())
        .expect("the record's path");
    let id = path.rsplit('/').next().expect("id");
    let on_b = b.record("knowledge", id).expect("the record on town B");
    assert!(
        on_b["fields"]["body"]
            .as_str()
            .expect("body")
            .contains("改訂")
    );
    assert_eq!(on_b["town"], "tateshina");
    assert_eq!(a.stop().code(), Some(0));
    assert_eq!(b.stop().code(), Some(0));
}
