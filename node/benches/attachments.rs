//! Attachment transfer benchmark (issue 16): how fast a file attached at
//! one town reaches another over the peer port, next to a plain TLS copy of
//! the same bytes on this machine (the limit), and what a resumed transfer
//! costs (only the remainder).
//!
//! ```text
//! cargo bench -p yui-node --bench attachments                # 40 MiB
//! cargo bench -p yui-node --bench attachments -- --mib 16    # quick
//! ```
//!
//! Three in-process nodes with real certificates, real TLS on loopback and
//! real data directories (`yui_tests::town`): Tateshina attaches a PDF-like
//! file of `--mib` MiB to a knowledge record; Omachi, which dials Tateshina,
//! receives the record and fetches the file (its peer route, the
//! fetcher, a partial file, fsync, the hash check, the rename); Itoigawa
//! dials Tateshina too, but starts with the first half of the file already
//! in its partial file, as a node killed halfway leaves it, so it fetches
//! only the remainder. Figures printed:
//!
//! 1. The plain TLS copy: the same bytes from a file, through a rustls
//!    connection (the same provider, ring), into a file that is fsynced and
//!    hashed: what this machine allows.
//! 2. The full transfer: from the upload's answer to the verified file at
//!    Omachi (the record's sync included), MiB/s, and bytes fetched.
//! 3. The resumed transfer: the same at Itoigawa, with the bytes it
//!    fetched (the remainder) and the time next to the full transfer.
//!
//! Options (also as environment variables, e.g. `YUI_BENCH_MIB`): `--mib 40`.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use yui_node::accounts::{Principal, Role};
use yui_node::attachments::{Upload, upload};
use yui_protocol::Collection;
use yui_tests::bench::{Given, whole_number};
use yui_tests::town::{Consortium, Running, Town};

const MIB: usize = 1 << 20;

fn parse_mib() -> Result<usize> {
    let given = Given::read(
        "YUI_BENCH_",
        &["MIB"],
        &[],
        "options: --mib 40 (size of the file, up to 1000)",
    )?;
    let mut mib = 40;
    for (name, value) in &given.values {
        match name.as_str() {
            "mib" => mib = whole_number(value)?.clamp(1, 1000),
            other => bail!("unknown option --{other}; try --help"),
        }
    }
    Ok(mib)
}

/// A PDF-looking file: a header, then bytes that do not compress.
fn pdf(size: usize) -> Vec<u8> {
    let mut data = Vec::with_capacity(size);
    data.extend_from_slice(b"%PDF-1.7\n");
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    while data.len() < size {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.extend_from_slice(&x.to_le_bytes());
    }
    data.truncate(size);
    data
}

fn sha256_hex(data: &[u8]) -> String {
    yui_node::blobs::sha256_hex(data)
}

fn mib_s(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / MIB as f64 / d.as_secs_f64()
}

/// Waits until `town` holds the record `id`, then until it holds the
/// verified file; answers the time from the record to the file.
fn wait_for_file(
    rt: &tokio::runtime::Runtime,
    town: &Town,
    id: &str,
    sha: &str,
) -> Result<Duration> {
    let deadline = Instant::now() + Duration::from_secs(300);
    while rt
        .block_on(
            town.node
                .store
                .get(Collection::Knowledge, id.to_owned(), false),
        )
        .is_err()
    {
        if Instant::now() > deadline {
            bail!("{} never received the record", town.name);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let since = Instant::now();
    while !town.node.blobs().has(sha) {
        if Instant::now() > deadline {
            bail!("{} never received the file", town.name);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(since.elapsed())
}

/// The plain TLS copy: `data` from a file, through rustls on loopback,
/// into a file that is fsynced and hashed, as the fetcher does.
fn tls_copy(town: &Town, data: &[u8], dir: &std::path::Path) -> Result<Duration> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    let dd = &town.node.data_dir;
    let cert = CertificateDer::from_pem_file(dd.cert_path())?;
    let key = PrivateKeyDer::from_pem_file(dd.key_path())?;
    let ca = CertificateDer::from_pem_file(dd.ca_cert_path())?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)?;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca)?;
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let source = dir.join("source.bin");
    std::fs::write(&source, data)?;
    let target = dir.join("target.bin");
    let len = data.len();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
        let sender = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await?;
            let mut tls = acceptor.accept(tcp).await?;
            let mut file = tokio::fs::File::open(&source).await?;
            let mut buf = vec![0u8; 256 << 10];
            loop {
                let n = file.read(&mut buf).await?;
                if n == 0 {
                    break;
                }
                tls.write_all(&buf[..n]).await?;
            }
            tls.shutdown().await?;
            anyhow::Ok(())
        });
        let start = Instant::now();
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        let name = ServerName::try_from("node.yui.invalid")?;
        let mut tls = tokio_rustls::TlsConnector::from(Arc::new(client))
            .connect(name, tcp)
            .await?;
        let mut out = tokio::fs::File::create(&target).await?;
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        let mut buf = vec![0u8; 256 << 10];
        let mut got = 0;
        loop {
            let n = match tls.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => n,
                // A peer that closes without close_notify: the bytes are in.
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                Err(e) => return Err(e.into()),
            };
            ctx.update(&buf[..n]);
            out.write_all(&buf[..n]).await?;
            got += n;
        }
        out.sync_all().await?;
        let _ = ctx.finish();
        let took = start.elapsed();
        sender.await??;
        if got != len {
            bail!("the TLS copy moved {got} of {len} bytes");
        }
        Ok(took)
    })
}

fn main() -> Result<()> {
    let mib = parse_mib()?;
    let size = mib * MIB;
    println!(
        "attachment transfer, {mib} MiB, on {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let consortium = Consortium::new("ベンチ");
    let a = consortium.town_configured(
        "tateshina",
        "\n[attachments]\nmax_file = \"1 GiB\"\ntown_quota = \"4 GiB\"\n",
    );
    let b = consortium.town("omachi");
    let c = consortium.town("itoigawa");
    let data = pdf(size);
    let sha = sha256_hex(&data);
    let scratch = tempfile::tempdir()?;

    let baseline = tls_copy(&a, &data, scratch.path())?;
    println!(
        "1. plain TLS copy (file → rustls → file, fsync, SHA-256): {:>8.1} ms  {:>7.1} MiB/s",
        baseline.as_secs_f64() * 1e3,
        mib_s(size, baseline)
    );

    let running_a = Running::start(a.node.clone(), 2);
    let a_url = running_a.peer_url();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let record = rt.block_on(a.write_knowledge("ベンチの添付"));
    let id = record["id"]
        .as_str()
        .ok_or_else(|| anyhow!("no id"))?
        .to_owned();
    // Itoigawa was "killed" halfway: it holds the first half already.
    let half = size / 2;
    {
        let mut part = c.node.blobs().append_partial(&sha, 0)?;
        std::io::Write::write_all(&mut part, &data[..half])?;
    }
    for town in [&b, &c] {
        rt.block_on(
            town.node
                .store
                .add_peer(a_url.clone(), None, yui_node::clock::now_ms()),
        )?;
    }

    let staff = Principal {
        user: "bench".into(),
        role: Role::Editor,
    };
    let start = Instant::now();
    rt.block_on(upload(
        &a.node,
        &staff,
        Upload {
            collection: Collection::Knowledge,
            id: id.clone(),
            name: "ベンチ.pdf",
            declared_type: "application/pdf",
            bytes: &data,
        },
    ))?;
    let uploaded = start.elapsed();
    // One at a time, so the two transfers do not share the two cores.
    let running_b = Running::start(b.node.clone(), 2);
    let at_b = wait_for_file(&rt, &b, &id, &sha)?;
    let running_c = Running::start(c.node.clone(), 2);
    let at_c = wait_for_file(&rt, &c, &id, &sha)?;
    let stats = |t: &Town| {
        t.node
            .peering()
            .map(|p| p.files.status())
            .ok_or_else(|| anyhow!("{} has no peering", t.name))
    };
    let (sb, sc) = (stats(&b)?, stats(&c)?);
    println!(
        "   upload at Tateshina (hash, fsync, signed change): {:>8.1} ms",
        uploaded.as_secs_f64() * 1e3
    );
    println!(
        "2. full transfer to Omachi (record stored → file verified): {:>8.1} ms  {:>7.1} MiB/s  ({:.0}% of the TLS copy), fetched {} bytes",
        at_b.as_secs_f64() * 1e3,
        mib_s(size, at_b),
        100.0 * baseline.as_secs_f64() / at_b.as_secs_f64(),
        sb.fetched_bytes
    );
    println!(
        "3. resumed transfer to Itoigawa (half on disk):     {:>8.1} ms  ({:.0}% of the full transfer's time), fetched {} bytes ({:.0}% of the file), {} resumed",
        at_c.as_secs_f64() * 1e3,
        100.0 * at_c.as_secs_f64() / at_b.as_secs_f64(),
        sc.fetched_bytes,
        100.0 * sc.fetched_bytes as f64 / size as f64,
        sc.resumed
    );
    let full = std::fs::read(b.node.blobs().path(&sha))?;
    let resumed = std::fs::read(c.node.blobs().path(&sha))?;
    if sha256_hex(&full) != sha || sha256_hex(&resumed) != sha {
        bail!("a received file does not match its hash");
    }
    if sc.fetched_bytes != (size - half) as u64 || sc.resumed != 1 {
        bail!(
            "the resumed transfer fetched {} bytes, not the remainder {}",
            sc.fetched_bytes,
            size - half
        );
    }
    println!("   both files match their SHA-256 ({sha})");
    running_b.stop();
    running_c.stop();
    running_a.stop();
    Ok(())
}
