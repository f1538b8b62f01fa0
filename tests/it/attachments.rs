//! Attached files between real `yui serve` processes over mutual TLS: a
//! 40 MiB PDF attached at Tateshina reaches Itoigawa through Omachi, the
//! relay, which is killed (`kill -9`) halfway through its transfer and
//! resumes from the bytes it had; the bytes match their hash everywhere; a
//! file attached to a local record never leaves Tateshina, and Tateshina's
//! peer port refuses it to a member that asks for it by hash; uploads too
//! large, over the town's quota or of a type not allowed are refused with
//! their errors; removing the file at its origin deletes it on every node.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use yui_tests::{Ca, Server, id_of, knowledge, member, wait_for};

const MIB: usize = 1 << 20;

fn sha256_hex(data: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, data)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A PDF-looking file of `size` bytes, different for each `seed`.
fn pdf(size: usize, seed: u8) -> Vec<u8> {
    let mut data = Vec::with_capacity(size);
    data.extend_from_slice(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n");
    let mut x: u32 = 0x9e37_79b9 ^ u32::from(seed);
    while data.len() < size {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        data.extend_from_slice(&x.to_le_bytes());
    }
    data.truncate(size);
    data
}

fn blob_path(data_dir: &Path, sha: &str) -> PathBuf {
    data_dir
        .join("attachments/sha256")
        .join(&sha[..2])
        .join(sha)
}

fn partial_path(data_dir: &Path, sha: &str) -> PathBuf {
    data_dir.join("attachments/partial").join(sha)
}

fn upload(
    server: &Server,
    collection: &str,
    id: &str,
    name: &str,
    content_type: &str,
    body: Vec<u8>,
) -> (u16, Value) {
    let r = server
        .client
        .post(server.url(&format!(
            "/api/v1/records/{collection}/{id}/attachments?name={}",
            encode(name)
        )))
        .bearer_auth(&server.token)
        .header("content-type", content_type)
        .timeout(Duration::from_secs(60))
        .body(body)
        .send()
        .expect("upload");
    let status = r.status().as_u16();
    (status, r.json().unwrap_or(Value::Null))
}

/// Percent-encodes a query value.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn metric(server: &Server, name: &str) -> u64 {
    let text = server
        .client
        .get(server.url("/metrics"))
        .send()
        .expect("metrics")
        .text()
        .expect("text");
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0)
}

/// Asks `peer_url`'s peer port for a file by hash, as the member whose
/// data directory is `as_member`: the status.
fn ask_peer_for_file(ca: &Ca, as_member: &Path, peer_url: &str, sha: &str) -> u16 {
    peer_file_request(ca, as_member, peer_url, "GET", sha, b"")
}

/// Sends `method /yui/v1/attachments/{sha}` with `body` to `peer_url`'s
/// peer port as the member whose data directory is `as_member`: the status.
fn peer_file_request(
    ca: &Ca,
    as_member: &Path,
    peer_url: &str,
    method: &str,
    sha: &str,
    body: &[u8],
) -> u16 {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(ca.cert_path()).expect("CA pem"))
        .expect("root");
    let cert = CertificateDer::from_pem_file(as_member.join("node.cert.pem")).expect("cert");
    let key = PrivateKeyDer::from_pem_file(as_member.join("node.key.pem")).expect("key");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_client_auth_cert(vec![cert], key)
        .expect("client certificate");
    let addr = peer_url.trim_start_matches("https://").to_owned();
    let body = body.to_vec();
    let method = method.to_owned();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let tcp = tokio::net::TcpStream::connect(&addr).await.expect("connect");
        let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(yui_tests::tls::node_name(), tcp)
            .await
            .expect("handshake");
        let mut request = format!(
            "{method} /yui/v1/attachments/{sha} HTTP/1.1\r\nHost: node.yui.invalid\r\nConnection: close\r\n"
        );
        if method != "GET" {
            request.push_str(&format!(
                "Content-Length: {}\r\nContent-Range: bytes 0-{}/{}\r\n",
                body.len(),
                body.len().saturating_sub(1),
                body.len()
            ));
        }
        request.push_str("\r\n");
        let mut bytes = request.into_bytes();
        bytes.extend_from_slice(&body);
        tls.write_all(&bytes).await.expect("write");
        let mut answer = Vec::new();
        let _ = tls.read_to_end(&mut answer).await;
        let text = String::from_utf8_lossy(&answer[..answer.len().min(100)]).into_owned();
        text.split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status in {text:?}"))
    })
}

fn append_config(data_dir: &Path, text: &str) {
    let path = data_dir.join("config.toml");
    let mut config = std::fs::read_to_string(&path).expect("config");
    config.push_str(text);
    std::fs::write(&path, config).expect("write config");
}

#[test]
fn a_large_pdf_crosses_a_chain_through_a_relay_killed_halfway_and_local_files_stay_home() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::init(&dir.path().join("ca"), "添付");
    let a_dir = member(dir.path(), "tateshina", &ca);
    let b_dir = member(dir.path(), "omachi", &ca);
    let c_dir = member(dir.path(), "itoigawa", &ca);
    // Tateshina keeps 64 MiB of its own files at most; Omachi fetches at
    // 8 MiB/s, so the test can kill it partway through 40 MiB even on a busy machine.
    append_config(&a_dir, "\n[attachments]\ntown_quota = \"64 MiB\"\n");
    append_config(&b_dir, "\n[attachments]\nfetch_rate = \"8 MiB\"\n");
    let a = Server::start_peer(&a_dir, "127.0.0.1:0");
    let b = Server::start_peer(&b_dir, "127.0.0.1:0");
    let c = Server::start_peer(&c_dir, "127.0.0.1:0");
    // Each dials the one towards the origin: Omachi fetches from
    // Tateshina, Itoigawa from Omachi.
    b.add_peer(a.peer_url());
    c.add_peer(b.peer_url());

    // A local record's file, first: nothing sent after it may carry it.
    let worker = a.create("workers", json!({"name": "添付 花子", "status": "active"}));
    let wid = id_of(&worker);
    let secret = {
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        png.extend_from_slice(&pdf(4096, 9));
        png
    };
    let secret_sha = sha256_hex(&secret);
    let (status, body) = upload(&a, "workers", &wid, "履歴書.png", "image/png", secret);
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["sha256"], secret_sha.as_str());

    // The shared record and its 40 MiB PDF.
    let rec = a.create("knowledge", knowledge("添付ファイル付きの報告"));
    let kid = id_of(&rec);
    let big = pdf(40 * MIB, 1);
    let sha = sha256_hex(&big);
    let (status, body) = upload(
        &a,
        "knowledge",
        &kid,
        "報告書.pdf",
        "application/pdf",
        big.clone(),
    );
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["size"], 40 * MIB);
    assert_eq!(body["state"], "stored");
    // Stored once, under its hash, owner-only.
    let at_a = blob_path(&a_dir, &sha);
    assert_eq!(std::fs::read(&at_a).expect("stored at A"), big);
    assert_eq!(yui_tests::mode(&at_a), 0o600);

    // Refusals, each with its code.
    let (status, body) = upload(
        &a,
        "knowledge",
        &kid,
        "big.pdf",
        "application/pdf",
        pdf(51 * MIB, 2),
    );
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"]["code"], "attachment_too_large");
    let (status, body) = upload(
        &a,
        "knowledge",
        &kid,
        "more.pdf",
        "application/pdf",
        pdf(30 * MIB, 3),
    );
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"]["code"], "attachment_quota_exceeded");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("town_quota"),
        "{body}"
    );
    let (status, body) = upload(
        &a,
        "knowledge",
        &kid,
        "x.html",
        "text/html",
        b"<script>alert(1)</script>".to_vec(),
    );
    assert_eq!(status, 415, "{body}");
    assert_eq!(body["error"]["code"], "file_type_not_allowed");
    let (status, body) = upload(
        &a,
        "knowledge",
        &kid,
        "連絡先 090-1234-5678.pdf",
        "application/pdf",
        pdf(1000, 4),
    );
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "personal_data");
    let (status, body) = upload(
        &a,
        "knowledge",
        &kid,
        "fake.png",
        "image/png",
        b"<svg onload=alert(1)>".to_vec(),
    );
    assert_eq!(status, 415, "{body}");

    // Omachi is killed halfway through its transfer.
    let partial = partial_path(&b_dir, &sha);
    assert!(
        wait_for(Duration::from_secs(30), || std::fs::metadata(&partial)
            .is_ok_and(|m| m.len() >= 8 * MIB as u64)),
        "Omachi never started fetching the file"
    );
    let b_url = b.peer_url().to_owned();
    b.kill_9();
    let had = std::fs::metadata(&partial).map_or(0, |m| m.len());
    assert!(had > 0 && had < 40 * MIB as u64, "killed with {had} bytes");
    eprintln!("Omachi killed with {had} of {} bytes", 40 * MIB);
    let b = Server::restart_peer(&b_dir, &b_url);
    let at_b = blob_path(&b_dir, &sha);
    assert!(
        wait_for(Duration::from_secs(30), || at_b.exists()),
        "Omachi never finished the file"
    );
    // It went on from where it stopped: only the remainder crossed.
    assert!(metric(&b, "yui_attachment_transfers_resumed_total") >= 1);
    let fetched = metric(&b, "yui_attachment_bytes_fetched_total");
    assert!(
        fetched <= 40 * MIB as u64 - had + MIB as u64 && fetched > 0,
        "fetched {fetched} bytes after the restart, having {had}"
    );

    // Itoigawa, which never talks to Tateshina, gets the same bytes.
    let at_c = blob_path(&c_dir, &sha);
    assert!(
        wait_for(Duration::from_secs(60), || at_c.exists()),
        "the file never reached Itoigawa"
    );
    let got = std::fs::read(&at_c).expect("read");
    assert_eq!(sha256_hex(&got), sha);
    assert_eq!(got.len(), 40 * MIB);
    let (_, list) = c.get(&format!("/api/v1/records/knowledge/{kid}/attachments"));
    assert_eq!(list["items"][0]["state"], "stored", "{list}");
    assert_eq!(list["items"][0]["name"], "報告書.pdf");
    assert_eq!(list["items"][0]["town"], "tateshina");
    let download = c
        .client
        .get(c.url(&format!(
            "/api/v1/records/knowledge/{kid}/attachments/{sha}"
        )))
        .bearer_auth(&c.token)
        .send()
        .expect("download");
    assert_eq!(download.status().as_u16(), 200);
    assert_eq!(download.headers()["x-content-type-options"], "nosniff");
    assert!(
        download.headers()["content-disposition"]
            .to_str()
            .unwrap_or("")
            .starts_with("attachment;")
    );
    assert_eq!(download.bytes().expect("bytes").len(), 40 * MIB);

    // The egress ledger of Omachi names the file it sent Itoigawa.
    let ledger = yui_tests::yui_ok(&b_dir, &["audit", "egress", "--json"]);
    assert!(
        ledger.contains(&sha) && ledger.contains("\"file\""),
        "{ledger}"
    );

    // The local record's file never left, and Tateshina's peer port refuses
    // it to a member that asks by hash.
    for d in [&b_dir, &c_dir] {
        assert!(!blob_path(d, &secret_sha).exists());
        assert!(!partial_path(d, &secret_sha).exists());
    }
    assert_eq!(
        ask_peer_for_file(&ca, &b_dir, a.peer_url(), &secret_sha),
        404
    );
    assert_eq!(
        ask_peer_for_file(&ca, &c_dir, b.peer_url(), &secret_sha),
        404
    );
    assert_eq!(ask_peer_for_file(&ca, &b_dir, a.peer_url(), &sha), 200);
    assert_eq!(ask_peer_for_file(&ca, &c_dir, b.peer_url(), &sha), 200);

    // `yui attach` through the running node: a small text file.
    let note = dir.path().join("メモ.txt");
    std::fs::write(&note, "現地の連絡先は事務局まで。\n").expect("write");
    let out = yui_tests::yui_ok(
        &a_dir,
        &["attach", "knowledge", &kid, note.to_str().expect("utf8")],
    );
    assert!(
        out.contains("Attached") && out.contains("text/plain"),
        "{out}"
    );
    let (_, list) = a.get(&format!("/api/v1/records/knowledge/{kid}/attachments"));
    assert_eq!(list["items"].as_array().map(Vec::len), Some(2), "{list}");

    // Removed at its origin: gone everywhere.
    let r = a
        .client
        .delete(a.url(&format!(
            "/api/v1/records/knowledge/{kid}/attachments/{sha}"
        )))
        .bearer_auth(&a.token)
        .send()
        .expect("delete");
    assert_eq!(r.status().as_u16(), 204);
    assert!(!at_a.exists(), "deleted at the origin at once");
    assert!(
        wait_for(Duration::from_secs(30), || !at_b.exists() && !at_c.exists()),
        "the file stayed at the other towns"
    );
    let (_, list) = c.get(&format!("/api/v1/records/knowledge/{kid}/attachments"));
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1), "{list}");
    assert_eq!(list["items"][0]["name"], "メモ.txt", "{list}");
    // The local record's file is still at home.
    assert!(blob_path(&a_dir, &secret_sha).exists());
}

/// A town whose node only accepts connections (nobody it dials) still gets
/// the files of the records pushed to it: the dialling node pushes them,
/// resuming after the receiver is killed halfway, and never a local
/// record's file; the receiver refuses a pushed file no shared record of
/// its own names.
#[test]
fn files_are_pushed_to_a_node_that_only_accepts_and_the_push_resumes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::init(&dir.path().join("ca"), "添付");
    let a_dir = member(dir.path(), "tateshina", &ca);
    let b_dir = member(dir.path(), "omachi", &ca);
    // Omachi takes files at 4 MiB/s, so the test can kill it partway.
    append_config(&b_dir, "\n[attachments]\nfetch_rate = \"4 MiB\"\n");
    let a = Server::start_peer(&a_dir, "127.0.0.1:0");
    let b = Server::start_peer(&b_dir, "127.0.0.1:0");
    // Only Tateshina dials: Omachi has no peer of its own to fetch from.
    a.add_peer(b.peer_url());

    let worker = a.create("workers", json!({"name": "添付 太郎", "status": "active"}));
    let secret = {
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        png.extend_from_slice(&pdf(2048, 7));
        png
    };
    let secret_sha = sha256_hex(&secret);
    let (status, body) = upload(
        &a,
        "workers",
        &id_of(&worker),
        "写真.png",
        "image/png",
        secret.clone(),
    );
    assert_eq!(status, 201, "{body}");

    let rec = a.create("knowledge", knowledge("受け身のノードへ届く添付"));
    let kid = id_of(&rec);
    let big = pdf(16 * MIB, 5);
    let sha = sha256_hex(&big);
    let (status, body) = upload(&a, "knowledge", &kid, "報告.pdf", "application/pdf", big);
    assert_eq!(status, 201, "{body}");

    let partial = partial_path(&b_dir, &sha);
    assert!(
        wait_for(Duration::from_secs(30), || std::fs::metadata(&partial)
            .is_ok_and(|m| m.len() >= 4 * MIB as u64)),
        "Tateshina never pushed the file to Omachi"
    );
    let b_url = b.peer_url().to_owned();
    b.kill_9();
    let had = std::fs::metadata(&partial).map_or(0, |m| m.len());
    assert!(had > 0 && had < 16 * MIB as u64, "killed with {had} bytes");
    let b = Server::restart_peer(&b_dir, &b_url);
    let at_b = blob_path(&b_dir, &sha);
    assert!(
        wait_for(Duration::from_secs(60), || at_b.exists()),
        "Omachi never got the whole file"
    );
    assert_eq!(sha256_hex(&std::fs::read(&at_b).expect("read")), sha);
    // The push went on from the bytes Omachi had kept.
    assert!(metric(&b, "yui_attachment_transfers_resumed_total") >= 1);
    let received = metric(&b, "yui_attachment_bytes_fetched_total");
    assert!(
        received > 0 && received <= 16 * MIB as u64 - had + MIB as u64,
        "received {received} bytes after the restart, having {had}"
    );
    let (_, list) = b.get(&format!("/api/v1/records/knowledge/{kid}/attachments"));
    assert_eq!(list["items"][0]["state"], "stored", "{list}");
    // Tateshina's egress ledger names the file it pushed.
    let ledger = yui_tests::yui_ok(&a_dir, &["audit", "egress", "--json"]);
    assert!(
        ledger.contains(&sha) && ledger.contains("omachi"),
        "{ledger}"
    );

    // The local record's file never went, and Omachi refuses it pushed by
    // hand: no shared record of its own names it.
    assert!(!blob_path(&b_dir, &secret_sha).exists());
    assert!(!partial_path(&b_dir, &secret_sha).exists());
    assert_eq!(
        peer_file_request(&ca, &a_dir, b.peer_url(), "PUT", &secret_sha, &secret),
        404
    );
    assert!(!blob_path(&b_dir, &secret_sha).exists());
    // A file it has already is not taken again.
    assert_eq!(
        peer_file_request(&ca, &a_dir, b.peer_url(), "PUT", &sha, b"not the file"),
        200
    );
    assert_eq!(sha256_hex(&std::fs::read(&at_b).expect("read")), sha);
}
