//! The guardrails around what an operator runs, with the real `yui`: damaged
//! trust files named with their fix, and the commands that must refuse
//! before they do harm.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use yui_tests::ca::{Ca, member};
use yui_tests::cli::{init, mode, yui_fails, yui_ok};

/// `path` cut in the middle of its base64 body: still PEM-shaped, no longer
/// the certificate or list it was (a short write, a bad copy).
fn truncate_pem(path: &Path) {
    let text = std::fs::read_to_string(path).expect("read pem");
    let lines: Vec<&str> = text.lines().collect();
    let keep = lines.len() / 2;
    let mut damaged: Vec<&str> = lines[..keep].to_vec();
    damaged.push(lines.last().expect("END line"));
    std::fs::write(path, damaged.join("\n") + "\n").expect("write");
}

#[test]
fn a_damaged_ca_certificate_or_revocation_list_is_named_with_its_fix() {
    let root = tempfile::tempdir().expect("tempdir");
    let ca = Ca::init(&root.path().join("ca"), "信州DX");
    let data = member(root.path(), "tateshina", &ca);
    member(root.path(), "omachi", &ca);
    let list = ca.revoke_town("omachi");
    yui_ok(
        &data,
        &["revocations", "import", list.to_str().expect("utf8")],
    );
    yui_ok(&data, &["status"]);

    let ca_cert = data.join("ca.cert.pem");
    let good = std::fs::read(&ca_cert).expect("read");
    for damage in [truncate_pem as fn(&Path), |p: &Path| {
        std::fs::write(p, "not a certificate\n").expect("write")
    }] {
        damage(&ca_cert);
        let err = yui_fails(&data, &["status"]);
        assert!(err.contains(&ca_cert.display().to_string()), "{err}");
        assert!(err.contains("yui cert install"), "{err}");
        std::fs::write(&ca_cert, &good).expect("restore");
    }
    yui_ok(&data, &["status"]);

    let crl = data.join("revocations.pem");
    for damage in [truncate_pem as fn(&Path), |p: &Path| {
        std::fs::write(p, "garbage\n").expect("write")
    }] {
        damage(&crl);
        let err = yui_fails(&data, &["status"]);
        assert!(err.contains(&crl.display().to_string()), "{err}");
        assert!(err.contains("cp revocations.pem"), "{err}");
    }
    // The fix the message gives works.
    std::fs::copy(&list, &crl).expect("copy");
    yui_ok(&data, &["status"]);
}

/// A victim file outside the target, and `dir/name` a link to it, planted
/// as another local user would in a directory they can write.
fn plant_link(dir: &Path, name: &str, victim: &Path) {
    std::fs::write(victim, "the victim's own content\n").expect("victim");
    std::os::unix::fs::symlink(victim, dir.join(name)).expect("symlink");
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

#[test]
fn export_and_backup_write_only_into_a_private_directory_and_follow_no_link() {
    let root = tempfile::tempdir().expect("tempdir");
    let data = root.path().join("data");
    init(&data, "tateshina");
    let victim = root.path().join("victim.txt");
    let victim_arg = |p: &Path| p.to_str().expect("utf8").to_owned();

    // A world-writable directory with a planted link: refused, untouched.
    let shared = root.path().join("shared");
    std::fs::create_dir(&shared).expect("mkdir");
    chmod(&shared, 0o777);
    plant_link(&shared, "workers.json", &victim);
    let err = yui_fails(&data, &["export", &victim_arg(&shared)]);
    assert!(err.contains(&shared.display().to_string()), "{err}");
    assert!(err.contains("chmod 700"), "{err}");
    let backup = shared.join("tateshina.backup");
    let err = yui_fails(&data, &["backup", &victim_arg(&backup)]);
    assert!(err.contains("chmod 700"), "{err}");
    assert!(
        !backup.exists(),
        "no backup in a directory others can write"
    );
    let left: Vec<_> = std::fs::read_dir(&shared).expect("ls").collect();
    assert_eq!(left.len(), 1, "only the planted link: {left:?}");

    // A link planted before the directory was made private: not followed,
    // not replaced, and nothing else is written.
    chmod(&shared, 0o700);
    let err = yui_fails(&data, &["export", "--format", "json", &victim_arg(&shared)]);
    assert!(
        err.contains(&shared.join("workers.json").display().to_string()),
        "{err}"
    );
    assert!(err.contains("already exists"), "{err}");
    plant_link(&shared, "index.md", &victim);
    let err = yui_fails(
        &data,
        &["export", "--format", "markdown", &victim_arg(&shared)],
    );
    assert!(
        err.contains(&shared.join("index.md").display().to_string()),
        "{err}"
    );
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(
        std::fs::read_dir(&shared).expect("ls").count(),
        2,
        "only the links"
    );
    plant_link(&shared, "linked.backup", &victim);
    let err = yui_fails(
        &data,
        &["backup", &victim_arg(&shared.join("linked.backup"))],
    );
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(
        std::fs::read_to_string(&victim).expect("victim"),
        "the victim's own content\n"
    );
    assert_eq!(mode(&victim), 0o644, "the victim's mode is untouched");

    // The target directory itself a link to another user's directory.
    let elsewhere = root.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).expect("mkdir");
    chmod(&elsewhere, 0o700);
    let link = root.path().join("export-link");
    std::os::unix::fs::symlink(&elsewhere, &link).expect("symlink");
    let err = yui_fails(&data, &["export", &victim_arg(&link)]);
    assert!(err.contains("symbolic link"), "{err}");
    assert_eq!(std::fs::read_dir(&elsewhere).expect("ls").count(), 0);

    // Another user's directory, however private (the tests run as root
    // in CI; elsewhere this part needs a chown they cannot do).
    if std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(root.path()).expect("stat")) == 0 {
        let theirs = root.path().join("theirs");
        std::fs::create_dir(&theirs).expect("mkdir");
        chmod(&theirs, 0o700);
        std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).expect("chown");
        let err = yui_fails(&data, &["export", &victim_arg(&theirs)]);
        assert!(err.contains("another user"), "{err}");
        let err = yui_fails(&data, &["backup", &victim_arg(&theirs.join("b.backup"))]);
        assert!(err.contains("another user"), "{err}");
    }

    // What works: a new directory (parents too), or the user's own 0700
    // one; every file 0600 and every directory 0700, whatever the umask.
    let fresh = root.path().join("exports").join("2026");
    let out = yui_ok(
        &data,
        &["export", "--format", "markdown", &victim_arg(&fresh)],
    );
    assert!(out.contains("Exported"), "{out}");
    assert_eq!(mode(&fresh), 0o700);
    assert_eq!(mode(&fresh.join("index.md")), 0o600);
    let json = root.path().join("json");
    yui_ok(&data, &["export", &victim_arg(&json)]);
    for entry in std::fs::read_dir(&json).expect("ls") {
        assert_eq!(mode(&entry.expect("entry").path()), 0o600);
    }
    let err = yui_fails(&data, &["export", &victim_arg(&json)]);
    assert!(
        err.contains("already exists") && err.contains("changed nothing"),
        "{err}"
    );
    let backups = root.path().join("backups").join("yui");
    let backup = backups.join("tateshina.backup");
    yui_ok(&data, &["backup", &victim_arg(&backup)]);
    assert_eq!(mode(&backups), 0o700);
    assert_eq!(mode(&backup), 0o600);
}

/// `yui ca issue` for the request in `data`, writing `out`, with `extra` flags.
fn ca_issue(ca: &Ca, data: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    let csr = data.join("node.csr.pem");
    let mut args = vec![
        "ca",
        "issue",
        "--ca-dir",
        ca.dir.to_str().expect("utf8"),
        "--csr",
        csr.to_str().expect("utf8"),
        "--out",
        out.to_str().expect("utf8"),
    ];
    args.extend_from_slice(extra);
    yui_tests::cli::yui(data, &args)
}

fn node_id_of(data: &Path) -> String {
    let status = yui_ok(data, &["status", "--json"]);
    let status: serde_json::Value = serde_json::from_str(&status).expect("json");
    status["node_id"].as_str().expect("node id").to_owned()
}

#[test]
fn a_second_certificate_for_a_town_needs_renew_or_rotate() {
    let root = tempfile::tempdir().expect("tempdir");
    let ca = Ca::init(&root.path().join("ca"), "信州DX");
    let first = root.path().join("first");
    init(&first, "tateshina");
    let first_id = node_id_of(&first);
    let out = |name: &str| root.path().join(format!("{name}.cert.pem"));
    let text = |o: &std::process::Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };
    let o = ca_issue(&ca, &first, &out("one"), &[]);
    assert!(o.status.success(), "{}", text(&o));

    // The same node again: refused, the town's certificates listed.
    let o = ca_issue(&ca, &first, &out("two"), &[]);
    assert!(!o.status.success(), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(&first_id) && err.contains("--renew"), "{err}");
    assert!(!out("two").exists(), "nothing issued");
    // A new node of the same town: refused, and --renew is not the way.
    let second = root.path().join("second");
    init(&second, "tateshina");
    for flags in [&[][..], &["--renew"][..]] {
        let o = ca_issue(&ca, &second, &out("three"), flags);
        assert!(!o.status.success(), "{flags:?}: {}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(&first_id) && err.contains("--rotate"), "{err}");
        assert!(!out("three").exists(), "nothing issued");
    }
    // Said explicitly: issued, with what the town holds listed.
    let o = ca_issue(&ca, &first, &out("renewed"), &["--renew"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains(&first_id), "{}", text(&o));
    let o = ca_issue(&ca, &second, &out("rotated"), &["--rotate"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("yui ca revoke --node"), "{}", text(&o));
    // Once the town's certificates are revoked, a new one needs no flag.
    ca.revoke_town("tateshina");
    let o = ca_issue(&ca, &second, &out("after-revoke"), &[]);
    assert!(o.status.success(), "{}", text(&o));
}

/// `yui serve ARGS` in a network namespace of its own with only a loopback
/// interface (and at most 20 s), so that even a build that wrongly binds a
/// non-loopback address listens on no real interface. None if this system
/// gives no such namespace to this user.
fn serve_isolated(data: &Path, args: &[&str]) -> Option<std::process::Output> {
    let usable = std::process::Command::new("unshare")
        .args(["-rn", "true"])
        .status()
        .is_ok_and(|s| s.success());
    if !usable {
        eprintln!("skipped: `unshare -rn` (a user and network namespace) is not available here");
        return None;
    }
    let out = std::process::Command::new("timeout")
        .args(["20", "unshare", "-rn"])
        .arg(yui_tests::cli::yui_bin())
        .arg("--data-dir")
        .arg(data)
        .arg("serve")
        .args(args)
        .env_remove("YUI_DATA_DIR")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run yui");
    Some(out)
}

#[test]
fn a_non_loopback_api_listen_is_refused_before_binding() {
    let root = tempfile::tempdir().expect("tempdir");
    let data = root.path().join("data");
    init(&data, "tateshina");
    let refused = |args: &[&str]| {
        let Some(out) = serve_isolated(&data, args) else {
            return;
        };
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}: {err}");
        assert!(err.contains("refusing to serve"), "{args:?}: {err}");
        assert!(err.contains("allow_plain_http_api"), "{args:?}: {err}");
        assert!(
            err.contains(&data.join("config.toml").display().to_string()),
            "{err}"
        );
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(
            !said.contains("is running"),
            "refused before serving: {said}"
        );
    };
    for addr in ["0.0.0.0:0", "[::]:0", "192.0.2.1:0"] {
        refused(&["--api-listen", addr]);
    }
    // The same from config.toml.
    let config = data.join("config.toml");
    let text = std::fs::read_to_string(&config).expect("config");
    std::fs::write(
        &config,
        text.replace(
            "api_listen = \"127.0.0.1:7480\"",
            "api_listen = \"0.0.0.0:0\"",
        ),
    )
    .expect("write");
    refused(&[]);
    // An empty reason is no reason.
    let text = std::fs::read_to_string(&config).expect("config");
    std::fs::write(&config, format!("{text}allow_plain_http_api = \"\"\n")).expect("write");
    refused(&[]);
}
