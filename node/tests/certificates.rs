//! Which certificates a handshake on the peer port accepts, on each side:
//! a node dialling in needs a CA-signed certificate with `clientAuth`, a
//! node dialled needs one with `serverAuth`, and `yui cert install` wants
//! both. webpki alone accepts a certificate with no extended key usage for
//! any purpose; these are real handshakes with certificates signed by the
//! consortium's CA, as `yui ca issue` never makes them.

use std::sync::Arc;
use std::time::Duration;

use rcgen::ExtendedKeyUsagePurpose::{ClientAuth, ServerAuth};
use rcgen::{ExtendedKeyUsagePurpose, KeyPair};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use yui_tests::ca::NodeCert;
use yui_tests::tls;
use yui_tests::town::{Consortium, Running, init_data_dir};

fn signed(
    consortium: &Consortium,
    town: &str,
    usages: &[ExtendedKeyUsagePurpose],
) -> (String, KeyPair) {
    let key = KeyPair::generate().expect("key");
    let pem = NodeCert {
        extended_key_usages: usages.to_vec(),
        ..NodeCert::like_issued(town)
    }
    .sign(&consortium.ca.key_path(), &consortium.ca.cert_path(), &key);
    (pem, key)
}

/// `GET /yui/v1/hello` as a client presenting `config`'s certificate: the
/// answer's status line, or why there was none.
async fn hello(
    addr: std::net::SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> Result<String, String> {
    let exchange = async {
        let mut tls = tls::connect(addr, config).await?;
        tls.write_all(
            b"GET /yui/v1/hello HTTP/1.1\r\nHost: node.yui.invalid\r\nConnection: close\r\n\r\n",
        )
        .await?;
        let mut answer = Vec::new();
        tls.read_to_end(&mut answer).await?;
        Ok::<_, std::io::Error>(
            String::from_utf8_lossy(&answer)
                .lines()
                .next()
                .unwrap_or("")
                .to_owned(),
        )
    };
    match tokio::time::timeout(Duration::from_secs(20), exchange).await {
        Ok(Ok(status)) if status.is_empty() => Err("closed without an answer".into()),
        Ok(Ok(status)) => Ok(status),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no answer within 20 s".into()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_peer_port_refuses_a_client_certificate_without_client_auth() {
    let consortium = Consortium::new("テスト");
    let victim = consortium.town("omachi");
    let node = Running::start(victim.node.clone(), 2);
    let ca_cert = consortium.ca.cert_path();

    // The same certificate with both usages is answered: the handshake
    // below can succeed, so its failures are the usages'.
    let (pem, key) = signed(&consortium, "shiojiri", &[ServerAuth, ClientAuth]);
    let answer = hello(node.peer, tls::presenting(&ca_cert, &pem, &key)).await;
    assert_eq!(answer.as_deref(), Ok("HTTP/1.1 200 OK"));

    for (what, usages, town) in [
        ("no extended key usage", &[][..], "suzaka"),
        ("serverAuth only", &[ServerAuth][..], "nagano"),
    ] {
        let (pem, key) = signed(&consortium, town, usages);
        let answer = hello(node.peer, tls::presenting(&ca_cert, &pem, &key)).await;
        assert!(
            answer.is_err(),
            "a client certificate with {what} was answered: {answer:?}"
        );
    }
    // The node says why. The client can see its handshake fail before the
    // node has recorded the refusal: give it a moment.
    let peering = victim.node.peering().expect("joined");
    let reasons_now = || -> Vec<String> {
        peering
            .refused_attempts()
            .into_iter()
            .map(|r| r.reason)
            .collect()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while reasons_now().len() < 2 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let reasons = reasons_now();
    for why in [
        "no extended key usage extension (clientAuth is required)",
        "does not allow extended key usage for client authentication",
    ] {
        assert!(
            reasons.iter().any(|r| r.contains(why)),
            "no refusal saying {why:?}: {reasons:?}"
        );
    }
    node.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_refuses_a_server_certificate_without_server_auth() {
    let consortium = Consortium::new("テスト");
    let dialler = consortium.town("omachi");
    let trust = dialler.node.peering().expect("joined").trust();
    let config = Arc::new(trust.client_config().expect("client config"));
    let handshake = |addr, config: Arc<rustls::ClientConfig>| async move {
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let name =
            rustls::pki_types::ServerName::try_from(yui_node::peer::tls::host_for_unknown(1))
                .expect("name");
        let mut tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await?;
        // TLS 1.3: the server's verdict on our certificate comes later; we
        // judge the server's during the handshake.
        let mut rest = Vec::new();
        tls.read_to_end(&mut rest).await.map(|_| ())
    };

    let (pem, key) = signed(&consortium, "shiojiri", &[ServerAuth, ClientAuth]);
    let server = tls::serve_presenting(&pem, &key).await;
    let result = handshake(server, config.clone()).await;
    assert!(
        result.is_ok(),
        "a server with both usages was refused: {result:?}"
    );

    for (what, usages, town) in [
        ("no extended key usage", &[][..], "suzaka"),
        ("clientAuth only", &[ClientAuth][..], "nagano"),
    ] {
        let (pem, key) = signed(&consortium, town, usages);
        let server = tls::serve_presenting(&pem, &key).await;
        let err = handshake(server, config.clone())
            .await
            .expect_err(&format!("a server certificate with {what} was accepted"));
        if usages.is_empty() {
            assert!(
                err.to_string().contains("serverAuth is required"),
                "{what}: {err}"
            );
        }
    }
}

#[test]
fn cert_install_refuses_a_certificate_without_both_usages() {
    let consortium = Consortium::new("テスト");
    for (usages, missing) in [
        (&[][..], "serverAuth is required"),
        (&[ServerAuth][..], "does not include clientAuth"),
        (&[ClientAuth][..], "does not include serverAuth"),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = init_data_dir(&dir.path().join("omachi"), "omachi", "").expect("init");
        let csr = rcgen::CertificateSigningRequestParams::from_pem(
            &std::fs::read_to_string(data.csr_path()).expect("csr"),
        )
        .expect("csr");
        let pem = NodeCert {
            extended_key_usages: usages.to_vec(),
            ..NodeCert::like_issued("omachi")
        }
        .sign(
            &consortium.ca.key_path(),
            &consortium.ca.cert_path(),
            &csr.public_key,
        );
        let ca_pem = std::fs::read(consortium.ca.cert_path()).expect("ca");
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let err = yui_node::pki::install(&data, "omachi", pem.as_bytes(), &ca_pem, None, now)
            .expect_err("installed a certificate without both usages");
        assert!(err.to_string().contains(missing), "{usages:?}: {err}");
        assert!(
            !data.cert_path().exists(),
            "the refused certificate was installed"
        );
    }
}
