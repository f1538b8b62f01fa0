//! `yui revocations import`: installs a revocation list from the
//! secretariat, through the running node if there is one, otherwise straight
//! on the data directory.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Subcommand;

use super::call_api::{call_api, running_api};
use super::cli_principal;
use crate::actions;
use crate::datadir::DataDir;
use crate::node::Node;

#[derive(Subcommand, Debug)]
pub enum RevocationsCommand {
    /// Install a revocation list (revocations.pem from `yui ca revoke`). It
    /// must be signed by the consortium CA and newer than the one installed;
    /// it also spreads to the peers by sync.
    Import {
        /// The revocation list file (revocations.pem).
        file: PathBuf,
    },
}

pub(super) async fn import(data_dir: DataDir, file: &Path) -> Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    if let Some(api) = running_api(&data_dir)? {
        let v = call_api(
            &api,
            reqwest::Method::POST,
            "/api/v1/revocations",
            Some(text.into()),
            false,
        )
        .await?;
        report_revocations(
            v["installed"].as_bool().unwrap_or(false),
            v["number"].as_u64().unwrap_or(0),
        );
        return Ok(());
    }
    let node = Node::open(data_dir, false)?;
    // The same action as the API's, audited as `cli`; before the store is
    // closed, as the audit entry goes through its writer.
    let result = match crate::pki::parse_crl_pem(&text) {
        Ok(der) => actions::import_revocations(&node, &cli_principal(), &der)
            .await
            .map_err(anyhow::Error::from),
        Err(e) => Err(e.into()),
    };
    node.store.close();
    let imported = result?;
    report_revocations(imported.newer, imported.number);
    Ok(())
}

fn report_revocations(newer: bool, number: u64) {
    if newer {
        println!(
            "Installed revocation list number {number}. Revoked nodes are refused from now on."
        );
    } else {
        println!(
            "Revocation list number {number} is already installed (this one is not newer); nothing changed."
        );
    }
}
