//! `yui user` and `yui audit` as an administrator runs them: passwords on
//! standard input, while `yui serve` runs, and nothing secret left readable.

use yui_tests::{Server, init, mode, yui_fails, yui_ok, yui_with_stdin};

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[test]
fn user_add_reads_the_password_from_stdin_and_keeps_only_its_hash() {
    const PASSWORD: &str = "tateshina-telework-2026";
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("tateshina");
    init(&data, "tateshina");
    let help = yui_ok(&data, &["user", "--help"]);
    for sub in ["add", "list", "remove", "passwd", "role", "token"] {
        assert!(help.contains(sub), "{help}");
    }
    assert!(yui_ok(&data, &["user", "add", "--help"]).contains("standard input"));

    // Added while the node serves: a separate connection, WAL.
    let server = Server::start(&data);
    let started = std::time::Instant::now();
    let out = yui_with_stdin(
        &data,
        &["user", "add", "sato.hanako", "--role", "admin"],
        &format!("{PASSWORD}\n"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("yui user add took {:?}", started.elapsed());
    let out = yui_with_stdin(
        &data,
        &["user", "add", "yamada", "--role", "viewer"],
        "short\n",
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 10"));
    let err = yui_fails(&data, &["user", "add", "suzuki", "--role", "owner"]);
    assert!(err.contains("viewer") && err.contains("admin"), "{err}");

    let list = yui_ok(&data, &["user", "list"]);
    assert!(
        list.contains("sato.hanako") && list.contains("admin"),
        "{list}"
    );
    assert!(!list.contains("yamada"), "{list}");

    // A token made on the command line works against the running node at once.
    let token = yui_ok(
        &data,
        &["user", "token", "sato.hanako", "--label", "kpi-script"],
    );
    let token = token.trim();
    assert_eq!(token.len(), 64);
    let status = reqwest::blocking::Client::new()
        .get(server.url("/api/v1/users"))
        .bearer_auth(token)
        .send()
        .expect("send")
        .status();
    assert_eq!(status, 200);

    let log = yui_ok(&data, &["audit", "log"]);
    assert!(
        log.contains("user.add") && log.contains("token.create"),
        "{log}"
    );
    drop(server);

    // The database stays owner-only and holds no password or token in clear.
    for file in ["yui.sqlite", "yui.sqlite-wal"] {
        let path = data.join(file);
        if path.exists() {
            assert_eq!(mode(&path), 0o600, "{file}");
            let bytes = std::fs::read(&path).expect("read");
            assert!(!contains(&bytes, PASSWORD), "{file} holds the password");
            assert!(!contains(&bytes, token), "{file} holds the token");
        }
    }
    yui_ok(
        &data,
        &[
            "user",
            "revoke-token",
            "sato.hanako",
            "--label",
            "kpi-script",
        ],
    );
    let err = yui_fails(&data, &["user", "remove", "sato.hanako"]);
    assert!(err.contains("last admin"), "{err}");
}
