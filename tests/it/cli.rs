//! The command line: help texts, init, serve's defaults, status, export,
//! and what a command run on a stopped node leaves in the audit log.

use std::process::Command;

use serde_json::Value;
use yui_tests::{Ca, Server, init, knowledge, member, mode, yui_bin, yui_fails, yui_ok};

#[test]
fn every_command_explains_itself() {
    let dir = tempfile::tempdir().expect("tempdir");
    let top = yui_ok(dir.path(), &["--help"]);
    for command in ["init", "serve", "status", "backup", "restore", "export"] {
        assert!(top.contains(command), "top-level help lists {command}");
        let help = yui_ok(dir.path(), &[command, "--help"]);
        assert!(help.contains("Usage: yui"), "{command}: {help}");
        assert!(
            help.lines().count() > 4,
            "{command} help says something: {help}"
        );
    }
    assert!(yui_ok(dir.path(), &["init", "--help"]).contains("lowercase"));
    let err = yui_fails(dir.path(), &["no-such-command"]);
    assert!(err.contains("no-such-command"), "{err}");
}

#[test]
fn init_creates_a_private_data_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("tateshina");
    let out = yui_ok(&data, &["init", "--town", "tateshina", "--name", "立科町"]);
    assert!(out.contains("node id:"), "{out}");
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("api-token")), 0o600);
    assert_eq!(mode(&data.join("node.key.pem")), 0o600);
    assert!(
        std::fs::read_to_string(data.join("node.csr.pem"))
            .expect("csr")
            .contains("CERTIFICATE REQUEST")
    );
    let token = std::fs::read_to_string(data.join("api-token")).expect("token");
    assert_eq!(token.trim().len(), 64);

    // A second init refuses and changes nothing.
    let err = yui_fails(&data, &["init", "--town", "omachi"]);
    assert!(err.contains("already holds a node"), "{err}");
    assert_eq!(
        std::fs::read_to_string(data.join("api-token")).expect("token"),
        token
    );

    let err = yui_fails(&dir.path().join("bad"), &["init", "--town", "Tateshina"]);
    assert!(err.contains("lowercase"), "{err}");
    assert!(!dir.path().join("bad").join("config.toml").exists());
}

#[test]
fn serve_without_a_data_directory_creates_yui_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(yui_bin())
        .current_dir(dir.path())
        .args(["serve", "--api-listen", "127.0.0.1:0"])
        .env_remove("YUI_DATA_DIR")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = Vec::new();
    use std::io::BufRead;
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line.expect("line");
        let done = line.starts_with("Stop with");
        lines.push(line);
        if done {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let text = lines.join("\n");
    assert!(text.contains("./yui-data"), "{text}");
    assert!(text.contains("http://127.0.0.1:"), "{text}");
    assert!(text.contains("api-token"), "{text}");
    assert!(dir.path().join("yui-data/config.toml").exists());
    assert_eq!(mode(&dir.path().join("yui-data")), 0o700);
}

#[test]
fn status_works_with_the_node_stopped_and_running() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("d");
    init(&data, "omachi");
    let text = yui_ok(&data, &["status"]);
    assert!(text.contains("omachi"), "{text}");
    assert!(text.contains("running:     no"), "{text}");

    let server = Server::start(&data);
    server.create("knowledge", knowledge("大町の事例"));
    let json: Value = serde_json::from_str(&yui_ok(&data, &["status", "--json"])).expect("json");
    assert_eq!(json["serving"], true);
    assert_eq!(
        json["api"],
        format!("{}/", server.base),
        "the address actually bound"
    );
    let text = yui_ok(&data, &["status"]);
    assert!(
        text.contains(&format!("running:     yes, API at {}/api/v1/", server.base)),
        "{text}"
    );
    assert_eq!(json["collections"]["knowledge"]["count"], 1);
    assert_eq!(json["town"], "omachi");
    // A second server on the same data directory is refused.
    let err = yui_fails(&data, &["serve", "--api-listen", "127.0.0.1:0"]);
    assert!(err.contains("already serving"), "{err}");
    assert_eq!(server.stop().code(), Some(0));
}

#[test]
fn export_writes_json_and_markdown() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("d");
    init(&data, "itoigawa");
    let server = Server::start(&data);
    let rec = server.create("knowledge", knowledge("糸魚川のナレッジ"));
    let worker = server.create(
        "workers",
        serde_json::json!({"name": "山田 花子", "status": "active"}),
    );
    server.stop();

    let out = dir.path().join("export-json");
    let text = yui_ok(
        &data,
        &["export", "--format", "json", out.to_str().expect("utf8")],
    );
    assert!(text.contains("Exported 2 records"), "{text}");
    let knowledge: Value =
        serde_json::from_slice(&std::fs::read(out.join("knowledge.json")).expect("file"))
            .expect("json");
    assert_eq!(knowledge[0]["id"], rec["id"]);
    assert_eq!(knowledge[0]["fields"]["title"], "糸魚川のナレッジ");
    let workers: Value =
        serde_json::from_slice(&std::fs::read(out.join("workers.json")).expect("file"))
            .expect("json");
    assert_eq!(workers[0]["id"], worker["id"]);
    assert_eq!(
        mode(&out.join("workers.json")),
        0o600,
        "exports hold personal data"
    );
    assert!(
        out.join("orders.json").exists(),
        "every collection, even empty"
    );

    let md = dir.path().join("export-md");
    yui_ok(
        &data,
        &["export", "--format", "markdown", md.to_str().expect("utf8")],
    );
    let page = std::fs::read_to_string(
        md.join("knowledge")
            .join(format!("{}.md", rec["id"].as_str().expect("id"))),
    )
    .expect("markdown file");
    assert!(page.starts_with("# 糸魚川のナレッジ"), "{page}");
    assert!(page.contains("住民ワーカーの研修"), "{page}");
    let index = std::fs::read_to_string(md.join("index.md")).expect("index");
    assert!(index.contains("糸魚川のナレッジ"), "{index}");
}

#[test]
fn revocations_import_on_a_stopped_node_is_audited() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::init(&dir.path().join("ca"), "信州コンソーシアム");
    let data = member(dir.path(), "omachi", &ca);
    member(dir.path(), "tateshina", &ca);
    let list = ca.revoke_town("tateshina");

    // No `yui serve` on `data`: the command works on the database itself.
    let out = yui_ok(
        &data,
        &["revocations", "import", list.to_str().expect("utf8")],
    );
    assert!(out.contains("number 1"), "{out}");

    let log: Value =
        serde_json::from_str(&yui_ok(&data, &["audit", "log", "--json"])).expect("json");
    let entries = log.as_array().expect("entries");
    let import = entries
        .iter()
        .find(|e| e["action"] == "revocations.import")
        .unwrap_or_else(|| panic!("no revocations.import entry: {log:#}"));
    assert_eq!(import["user"], "cli");
    assert_eq!(import["target"], "revocations");
    assert_eq!(import["detail"], "list number 1 installed");
}
