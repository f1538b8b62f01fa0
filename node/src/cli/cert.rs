//! `yui cert install` and `yui cert rotate-key`: the node's side of joining
//! a consortium, renewing its certificate, rotating its key and following a
//! CA rollover. On a running node both go through its API, so the node
//! takes the certificate into use at once (`crate::membership`).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Subcommand;

use super::call_api::{call_api, running_api};
use crate::datadir::DataDir;

#[derive(Subcommand, Debug)]
pub enum CertCommand {
    /// Install the signed node certificate and the consortium CA
    /// certificate. A running node uses them at once (and opens its peer
    /// port if it was not a member yet).
    Install {
        /// The signed node certificate from the secretariat.
        #[arg(long)]
        cert: PathBuf,
        /// The consortium CA certificate (ca.cert.pem, or ca-bundle.pem
        /// during a CA rollover) from the secretariat.
        #[arg(long)]
        ca_cert: PathBuf,
        /// At the end of a CA rollover: the revocation list the new CA
        /// signed (revocations.pem), installed with the new CA certificate.
        #[arg(long)]
        revocations: Option<PathBuf>,
    },
    /// Make a new node key and its certificate request. The current key
    /// stays in use until the certificate for the new one is installed.
    RotateKey,
}

pub(super) async fn install(
    data_dir: DataDir,
    cert: &Path,
    ca_cert: &Path,
    revocations: Option<&Path>,
) -> Result<()> {
    let read =
        |p: &Path| std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()));
    let cert_pem = read(cert)?;
    let ca_pem = read(ca_cert)?;
    let crl_pem = revocations.map(read).transpose()?;
    let done = if let Some(api) = running_api(&data_dir)? {
        let body = serde_json::json!({"certificate": cert_pem, "ca_certificate": ca_pem, "revocations": crl_pem});
        let v = call_api(
            &api,
            reqwest::Method::POST,
            "/api/v1/certificate",
            Some(body.to_string().into()),
            true,
        )
        .await?;
        serde_json::from_value::<Installed>(v).context("reading the node's answer")?
    } else {
        // A stopped node: its files only (what a crash half way through a
        // rotation leaves is mended this way too); `yui serve` reads them.
        let town = data_dir.open()?.town;
        let now = crate::clock::now_ms() / 1000;
        let d = crate::pki::install(
            &data_dir,
            &town,
            cert_pem.as_bytes(),
            ca_pem.as_bytes(),
            crl_pem.as_deref().map(str::as_bytes),
            now,
        )?;
        Installed {
            town: d.id.town,
            node_id: d.id.node_id,
            not_after: yui_protocol::record::format_time(d.id.not_after * 1000),
            joined: d.replaced.is_none(),
            rotated_from: d.rotated_from,
            peer_port: None,
        }
    };
    println!(
        "Installed the certificate of town {} (node {}), valid until {}.",
        done.town, done.node_id, done.not_after
    );
    if let Some(old) = &done.rotated_from {
        println!(
            "The node's key is the new one now (node {}, was {old}); peers accept it without a change on their side.",
            done.node_id
        );
    }
    match (data_dir.serving_api().is_some(), &done.peer_port) {
        (true, Some(url)) if done.joined => {
            println!("The running node has joined: its peer port is open at {url}.")
        }
        (true, _) => println!("The running node uses it from now on."),
        (false, _) if done.joined => {
            println!("Next: add peers with `yui peer add https://HOST:7443`, then `yui serve`.")
        }
        (false, _) => println!("`yui serve` will use it."),
    }
    Ok(())
}

/// The fields of the API's answer the command prints.
#[derive(serde::Deserialize)]
struct Installed {
    town: String,
    node_id: String,
    not_after: String,
    rotated_from: Option<String>,
    joined: bool,
    peer_port: Option<String>,
}

pub(super) async fn rotate_key(data_dir: DataDir) -> Result<()> {
    let (node_id, path) = if let Some(api) = running_api(&data_dir)? {
        let v = call_api(
            &api,
            reqwest::Method::POST,
            "/api/v1/certificate/new-key",
            None,
            false,
        )
        .await?;
        (
            v["node_id"].as_str().unwrap_or_default().to_owned(),
            v["request_path"].as_str().unwrap_or_default().to_owned(),
        )
    } else {
        let config = data_dir.open()?;
        let made = crate::membership::request_new_key(&data_dir, &config.town, &config.name)?;
        (made.node_id, made.request_path)
    };
    println!(
        "Made a new key (node {node_id}); the current key stays in use until its certificate is installed."
    );
    println!(
        "Send {path} to the secretariat (yui ca issue --rotate), then install the certificate it returns with `yui cert install --cert FILE --ca-cert ca.cert.pem`."
    );
    Ok(())
}
