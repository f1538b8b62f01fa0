//! The membership lifecycle on real `yui serve` processes over mutual TLS
//! on 127.0.0.1 (issue 12, test 6; operations.md 15): joining, renewing
//! and rotating the key on a running node without a restart or a change on
//! the peers' side, and a CA rollover with a member still on the old CA
//! during the overlap.

use std::path::Path;
use std::time::Duration;

use yui_tests::{Ca, Server, id_of, init, knowledge, member, wait_for, yui_ok};

/// Propagation between online peers is ~10 ms; a peer that must find a
/// rotated node again waits for its next attempt (back-off from 1 s).
const CONVERGE: Duration = Duration::from_secs(20);

fn path(p: &Path) -> &str {
    p.to_str().expect("utf8 path")
}

/// `yui cert install` on the node in `data_dir` (running or not).
fn install(data_dir: &Path, cert: &Path, ca_cert: &Path) -> String {
    yui_ok(
        data_dir,
        &[
            "cert",
            "install",
            "--cert",
            path(cert),
            "--ca-cert",
            path(ca_cert),
        ],
    )
}

/// Writes a knowledge record on `from` and waits until every node in `to`
/// holds it; returns its id.
fn reaches(from: &Server, to: &[&Server], title: &str) -> String {
    let id = id_of(&from.create("knowledge", knowledge(title)));
    for node in to {
        assert!(
            wait_for(CONVERGE, || node.record("knowledge", &id).is_some()),
            "{title} did not reach {}: {}",
            node.data_dir.display(),
            node.status()
        );
    }
    id
}

/// The record's history on `node`: every change verified, signed by a
/// node of `town`; returns the signers' node ids.
fn verified_signers(node: &Server, id: &str, town: &str) -> Vec<String> {
    let (status, body) = node.get(&format!("/api/v1/records/knowledge/{id}/history"));
    assert_eq!(status, 200, "{body}");
    let changes = body["changes"].as_array().expect("changes");
    assert!(!changes.is_empty());
    changes
        .iter()
        .map(|c| {
            assert_eq!(c["verified"], true, "{c}");
            assert_eq!(c["signed_by"]["town"], town, "{c}");
            c["signed_by"]["node_id"]
                .as_str()
                .expect("signer")
                .to_owned()
        })
        .collect()
}

fn node_id(node: &Server) -> String {
    node.status()["node_id"]
        .as_str()
        .expect("node id")
        .to_owned()
}

/// The node id `node` has for its peer at `url`.
fn peer_node_id(node: &Server, url: &str) -> Option<String> {
    let status = node.status();
    let peers = status["peers"].as_array().cloned().unwrap_or_default();
    peers
        .iter()
        .find(|p| p["url"].as_str() == Some(url.trim_end_matches('/')) || p["url"] == url)
        .and_then(|p| p["node_id"].as_str().map(str::to_owned))
}

#[test]
fn joining_renewing_and_rotating_the_key_take_effect_on_running_nodes() {
    let root = tempfile::tempdir().expect("tmp");
    let ca = Ca::init(&root.path().join("ca"), "信州テレワーク協議会");
    let a_dir = member(root.path(), "tateshina", &ca);
    let a = Server::start_peer(&a_dir, "127.0.0.1:0");
    let a_url = a.peer_url().to_owned();

    // Omachi starts before it is a member: no peer port. Installing its
    // certificate on the running node opens it.
    let b_dir = root.path().join("omachi");
    init(&b_dir, "omachi");
    let b = Server::start_unjoined(&b_dir);
    assert!(b.peer_url.is_none());
    assert_eq!(b.status()["membership"]["joined"], false);
    let cert = ca.issue(&b_dir, 30);
    let said = install(&b_dir, &cert, &ca.cert_path());
    assert!(
        said.contains("peer port is open at https://127.0.0.1:"),
        "{said}"
    );
    let status = b.status();
    assert_eq!(status["membership"]["joined"], true, "{status}");
    let b_url = status["peer_port"].as_str().expect("peer port").to_owned();
    b.add_peer(&a_url);
    a.add_peer(&b_url);
    let before = reaches(&a, &[&b], "参加の前に書いた記事");
    reaches(&b, &[&a], "参加してすぐ書いた記事");

    // Renewal on the running node: the new certificate is in use at once.
    let renewed = ca.reissue(&b_dir.join("node.csr.pem"), 90, "--renew");
    let said = install(&b_dir, &renewed, &ca.cert_path());
    assert!(said.contains("uses it from now on"), "{said}");
    let days = b.status()["membership"]["certificate_expires_in_days"]
        .as_i64()
        .expect("days");
    assert!(
        days >= 88,
        "the renewed certificate is not in use: {days} days"
    );
    reaches(&a, &[&b], "更新のあとに書いた記事");
    reaches(&b, &[&a], "更新のあとに大町が書いた記事");

    // Key rotation on the running Tateshina node: a new key and request,
    // the certificate for it, installed while it runs.
    let old_id = node_id(&a);
    assert_eq!(peer_node_id(&b, &a_url).as_deref(), Some(old_id.as_str()));
    let said = yui_ok(&a_dir, &["cert", "rotate-key"]);
    assert!(said.contains("node.next.csr.pem"), "{said}");
    assert_eq!(node_id(&a), old_id, "the old key stays in use until then");
    let warnings = a.status()["membership"]["warnings"].to_string();
    assert!(
        warnings.contains("waiting for its certificate"),
        "{warnings}"
    );
    let rotated = ca.reissue(&a_dir.join("node.next.csr.pem"), 30, "--rotate");
    let said = install(&a_dir, &rotated, &ca.cert_path());
    assert!(said.contains("new one now"), "{said}");
    let new_id = node_id(&a);
    assert_ne!(new_id, old_id);
    assert!(!a_dir.join("node.next.key.pem").exists());
    // Omachi follows the new node id by itself, and sync goes on both ways.
    let after = reaches(&a, &[&b], "鍵を替えたあとに書いた記事");
    assert!(
        wait_for(CONVERGE, || peer_node_id(&b, &a_url).as_deref()
            == Some(new_id.as_str())),
        "omachi still has {:?} for tateshina: {}",
        peer_node_id(&b, &a_url),
        b.status()
    );
    reaches(&b, &[&a], "鍵を替えたあとに大町が書いた記事");
    // Both keys' signatures verify, before and after.
    assert_eq!(
        verified_signers(&b, &before, "tateshina"),
        std::slice::from_ref(&old_id)
    );
    assert_eq!(
        verified_signers(&b, &after, "tateshina"),
        std::slice::from_ref(&new_id)
    );

    // A town that joins now, and talks only to Omachi, verifies both:
    // the old certificate travels with the changes it signed.
    let c_dir = member(root.path(), "itoigawa", &ca);
    let c = Server::start_peer(&c_dir, "127.0.0.1:0");
    c.add_peer(&b_url);
    for id in [&before, &after] {
        assert!(
            wait_for(CONVERGE, || c.record("knowledge", id).is_some()),
            "{id} did not reach itoigawa: {}",
            c.status()
        );
    }
    assert_eq!(verified_signers(&c, &before, "tateshina"), [old_id]);
    assert_eq!(verified_signers(&c, &after, "tateshina"), [new_id]);

    // Each lifecycle action left its audit entry.
    let (_, audit) = a.get("/api/v1/audit");
    let text = audit.to_string();
    assert!(
        text.contains("key.rotate") && text.contains("certificate.install"),
        "{text}"
    );
}

#[test]
fn a_ca_rollover_keeps_the_consortium_syncing_with_a_member_still_on_the_old_ca() {
    let root = tempfile::tempdir().expect("tmp");
    let ca = Ca::init(&root.path().join("ca"), "信州テレワーク協議会");
    let old_ca = root.path().join("old-ca.cert.pem");
    std::fs::copy(ca.cert_path(), &old_ca).expect("keep the old CA certificate");
    // A chain: Tateshina and Itoigawa both dial Omachi, never each other.
    let dirs: Vec<_> = ["tateshina", "omachi", "itoigawa"]
        .iter()
        .map(|t| member(root.path(), t, &ca))
        .collect();
    let [a, b, c] = [0, 1, 2].map(|i| Server::start_peer(&dirs[i], "127.0.0.1:0"));
    a.add_peer(b.peer_url());
    c.add_peer(b.peer_url());
    reaches(&a, &[&b, &c], "切り替えの前の記事");

    let said = ca.rollover(false);
    assert!(said.contains("overlap has begun"), "{said}");
    let bundle = ca.bundle_path();
    // Tateshina trusts both and runs on a certificate of the new CA.
    let renewed = ca.reissue(&dirs[0].join("node.csr.pem"), 30, "--renew");
    let said = install(&dirs[0], &renewed, &bundle);
    assert!(said.contains("uses it from now on"), "{said}");
    assert_eq!(a.status()["membership"]["trusted_cas"], 2);
    // Omachi trusts both but keeps its certificate of the old CA.
    install(&dirs[1], &dirs[1].join("node.cert.pem"), &bundle);
    // Itoigawa does nothing yet: it trusts the old CA only.
    assert_eq!(c.status()["membership"]["trusted_cas"], 1);

    // New changes of Tateshina (signed under the new CA) reach Itoigawa
    // through Omachi, verified with the cross certificate.
    let during = reaches(&a, &[&b, &c], "重なりの期間に立科が書いた記事");
    verified_signers(&c, &during, "tateshina");
    reaches(&c, &[&b, &a], "重なりの期間に糸魚川が書いた記事");
    // Itoigawa also accepts Tateshina's new certificate in a handshake.
    c.add_peer(a.peer_url());
    assert!(
        wait_for(CONVERGE, || {
            c.status()["peers"]
                .as_array()
                .is_some_and(|p| p.len() == 2 && p.iter().all(|p| p["state"] == "ok"))
        }),
        "{}",
        c.status()
    );

    // The overlap ends: every town installs its certificate of the new CA
    // with the new CA alone and the revocation list the new CA signed.
    let said = ca.rollover(true);
    assert!(said.contains("overlap is over"), "{said}");
    for (i, dir) in dirs.iter().enumerate() {
        let cert = if i == 0 {
            dir.join("node.cert.pem")
        } else {
            ca.reissue(&dir.join("node.csr.pem"), 30, "--renew")
        };
        yui_ok(
            dir,
            &[
                "cert",
                "install",
                "--cert",
                path(&cert),
                "--ca-cert",
                path(&ca.cert_path()),
                "--revocations",
                path(&ca.revocations_path()),
            ],
        );
    }
    for node in [&a, &b, &c] {
        assert_eq!(node.status()["membership"]["trusted_cas"], 1);
    }
    let last = reaches(&c, &[&b, &a], "切り替えのあとの記事");
    verified_signers(&a, &last, "itoigawa");

    // The old CA is no longer enough: its certificate does not sign
    // Itoigawa's new one.
    let refused = yui_tests::yui_fails(
        &dirs[2],
        &[
            "cert",
            "install",
            "--cert",
            path(&dirs[2].join("node.cert.pem")),
            "--ca-cert",
            path(&old_ca),
        ],
    );
    assert!(refused.contains("not signed by this CA"), "{refused}");
}
