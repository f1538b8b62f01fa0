//! Mutual-TLS clients of a node's peer port, as a member: the TLS stream,
//! a keep-alive HTTP/1.1 connection that sends sync requests over it, and
//! the first bytes of a handshake (to stall one halfway); and a client
//! without a certificate, as anyone who can reach the port is.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::town::Town;

/// The name every node's certificate carries; members check it.
pub fn node_name() -> rustls::pki_types::ServerName<'static> {
    rustls::pki_types::ServerName::try_from("node.yui.invalid").expect("name")
}

/// A client configuration that trusts the consortium CA in `ca_cert` (and
/// so would accept a node) but presents no certificate of its own.
pub fn without_client_certificate(ca_cert: &std::path::Path) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(ca_cert).expect("CA pem"))
        .expect("root");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// A client configuration that trusts the consortium CA in `ca_cert` and
/// presents `cert_pem` with `key`: a member with a certificate made by hand.
pub fn presenting(
    ca_cert: &std::path::Path,
    cert_pem: &str,
    key: &rcgen::KeyPair,
) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(ca_cert).expect("CA pem"))
        .expect("root");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cert = CertificateDer::from_pem_slice(cert_pem.as_bytes()).expect("cert pem");
    let key = PrivateKeyDer::Pkcs8(key.serialize_der().into());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_client_auth_cert(vec![cert], key)
            .expect("client certificate"),
    )
}

/// A TLS server on a free port of 127.0.0.1 that presents `cert_pem` with
/// `key` (and asks for no client certificate) to every client, completes the
/// handshake and hangs up. Stands in for a peer port a node dials.
pub async fn serve_presenting(cert_pem: &str, key: &rcgen::KeyPair) -> SocketAddr {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cert = CertificateDer::from_pem_slice(cert_pem.as_bytes()).expect("cert pem");
    let key = PrivateKeyDer::Pkcs8(key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .expect("server certificate");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(mut tls) = acceptor.accept(tcp).await {
                    let _ = tls.shutdown().await;
                }
            });
        }
    });
    addr
}

/// A TLS connection to `addr` with `config` (TCP_NODELAY).
pub async fn connect(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    tokio_rustls::TlsConnector::from(config)
        .connect(node_name(), tcp)
        .await
}

/// A member's mutual-TLS client, which signs what it sends with the
/// member's node key ([`Member::signed`]).
#[derive(Clone)]
pub struct Member {
    pub addr: SocketAddr,
    pub config: Arc<rustls::ClientConfig>,
    pub signing: yui_node::store::ChangeSigning,
}

impl Member {
    pub fn of(town: &Town, addr: SocketAddr) -> Member {
        let key = std::fs::read_to_string(town.node.data_dir.key_path()).expect("node key");
        let (_, signing) = yui_node::pki::change_signing(&key).expect("signing key");
        Member {
            addr,
            signing,
            config: Arc::new(
                town.node
                    .peering()
                    .expect("joined")
                    .trust()
                    .client_config()
                    .expect("config"),
            ),
        }
    }

    /// `docs` with every change signed by this member's key, as its node
    /// would send them (protocol.md 7.2).
    pub fn signed(
        &self,
        docs: Vec<yui_protocol::wire::DocUpdate>,
    ) -> Vec<yui_protocol::wire::DocUpdate> {
        docs.into_iter().map(|d| self.sign(d)).collect()
    }

    pub fn sign(&self, doc: yui_protocol::wire::DocUpdate) -> yui_protocol::wire::DocUpdate {
        crate::wire::signed_with(&self.signing, doc)
    }

    pub async fn tls(&self) -> std::io::Result<TlsStream<TcpStream>> {
        connect(self.addr, self.config.clone()).await
    }

    pub async fn conn(&self) -> std::io::Result<Conn> {
        Ok(Conn {
            tls: self.tls().await?,
            buf: Vec::new(),
        })
    }

    /// One request on a fresh connection (given a minute at most).
    pub async fn post(&self, headers: &str, body: &[u8]) -> std::io::Result<(u16, Vec<u8>)> {
        let exchange = async { self.conn().await?.request(headers, body).await };
        tokio::time::timeout(Duration::from_secs(60), exchange)
            .await
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer within 60 s")
            })?
    }
}

/// A keep-alive HTTP/1.1 connection to the peer port.
pub struct Conn {
    tls: TlsStream<TcpStream>,
    buf: Vec<u8>,
}

impl Conn {
    pub async fn request(&mut self, headers: &str, body: &[u8]) -> std::io::Result<(u16, Vec<u8>)> {
        let head = format!(
            "POST /yui/v1/sync HTTP/1.1\r\nHost: victim\r\nContent-Type: application/x-protobuf\r\n{headers}Content-Length: {}\r\n\r\n",
            body.len()
        );
        self.tls.write_all(head.as_bytes()).await?;
        // The server may answer (413) before reading a large body. Flush:
        // under back-pressure the TLS layer keeps the tail of a write
        // buffered, and the server would wait for it forever.
        let mut wrote = self.tls.write_all(body).await;
        if wrote.is_ok() {
            wrote = self.tls.flush().await;
        }
        let answer = self.read_response().await;
        match (answer, wrote) {
            (Ok(a), _) => Ok(a),
            (Err(e), Err(w)) => Err(std::io::Error::new(e.kind(), format!("{e} (writing: {w})"))),
            (Err(e), Ok(())) => Err(e),
        }
    }

    async fn fill(&mut self) -> std::io::Result<()> {
        let mut chunk = vec![0u8; 64 * 1024];
        let n = self.tls.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    async fn read_response(&mut self) -> std::io::Result<(u16, Vec<u8>)> {
        let end = loop {
            if let Some(p) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p;
            }
            self.fill().await?;
        };
        let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("not an HTTP answer: {head}")))?;
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or(0);
        self.buf.drain(..end + 4);
        while self.buf.len() < length {
            self.fill().await?;
        }
        let body = self.buf.drain(..length).collect();
        Ok((status, body))
    }
}

/// The first bytes of a real TLS client (its ClientHello).
pub fn client_hello(member: &Member) -> Vec<u8> {
    let mut conn =
        rustls::ClientConnection::new(member.config.clone(), node_name()).expect("client");
    let mut hello = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut hello).expect("write_tls");
    }
    hello
}
