//! The guardrails around what an operator runs, with the real `yui`: damaged
//! trust files named with their fix, and the commands that must refuse
//! before they do harm.

use std::path::Path;

use yui_tests::ca::{Ca, member};
use yui_tests::cli::{yui_fails, yui_ok};

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
