//! `yui cert install`: the node's side of joining a consortium, installing
//! the certificate the secretariat signed.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Subcommand;

use crate::datadir::DataDir;

#[derive(Subcommand, Debug)]
pub enum CertCommand {
    /// Install the signed node certificate and the consortium CA certificate.
    /// Restart the node afterwards to open the peer port.
    Install {
        /// The signed node certificate from the secretariat.
        #[arg(long)]
        cert: PathBuf,
        /// The consortium CA certificate (ca.cert.pem) from the secretariat.
        #[arg(long)]
        ca_cert: PathBuf,
    },
}

pub(super) fn install(data_dir: &DataDir, cert: &Path, ca_cert: &Path) -> Result<()> {
    let config = data_dir.open()?;
    let cert_pem = std::fs::read(cert).with_context(|| format!("reading {}", cert.display()))?;
    let ca_pem =
        std::fs::read(ca_cert).with_context(|| format!("reading {}", ca_cert.display()))?;
    let now = crate::clock::now_ms() / 1000;
    let id = crate::pki::install(data_dir, &config.town, &cert_pem, &ca_pem, now)?;
    let days = (id.not_after - now) / 86_400;
    println!(
        "Installed the certificate of town {} (node {}), valid for {days} more days.",
        id.town, id.node_id
    );
    if data_dir.serving_api().is_some() {
        println!(
            "Restart `yui serve` to use the new certificate (and open the peer port if it was not open)."
        );
    } else {
        println!("Next: add peers with `yui peer add https://HOST:7443`, then `yui serve`.");
    }
    Ok(())
}
