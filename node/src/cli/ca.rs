//! `yui ca`: the secretariat's consortium certificate authority (init,
//! issue, revoke). It works on a CA directory, never on a node's data.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Subcommand;

#[derive(Subcommand, Debug)]
pub enum CaCommand {
    /// Create a consortium certificate authority in a new directory. Keep
    /// that directory off the nodes: its key can admit anyone.
    Init {
        /// A new directory for the CA's key, certificate and register.
        #[arg(long)]
        ca_dir: PathBuf,
        /// The consortium's name (e.g. 信州テレワークコンソーシアム).
        #[arg(long)]
        name: String,
    },
    /// Sign a node's certificate request (node.csr.pem from `yui init`),
    /// binding its town id. Send the certificate and ca.cert.pem back.
    Issue {
        /// The CA directory made by `yui ca init`.
        #[arg(long)]
        ca_dir: PathBuf,
        /// The node's node.csr.pem.
        #[arg(long)]
        csr: PathBuf,
        /// Where to write the signed certificate.
        #[arg(long)]
        out: PathBuf,
        /// How long the certificate is valid, in days.
        #[arg(long, default_value_t = crate::pki::DEFAULT_CERT_DAYS)]
        days: i64,
    },
    /// Revoke a member town (all its certificates) or one node, and write a
    /// new signed revocation list (revocations.pem in the CA directory).
    Revoke {
        /// The CA directory made by `yui ca init`.
        #[arg(long)]
        ca_dir: PathBuf,
        /// Revoke every certificate issued to this town id.
        #[arg(long, conflicts_with = "node", required_unless_present = "node")]
        town: Option<String>,
        /// Revoke the certificate of this node id (as `yui status` shows it).
        #[arg(long)]
        node: Option<String>,
    },
}

pub(super) fn run(cmd: CaCommand) -> Result<()> {
    let now = time::OffsetDateTime::now_utc();
    match cmd {
        CaCommand::Init { ca_dir, name } => {
            let ca = crate::pki::CaDir::new(&ca_dir);
            ca.init(&name, now)?;
            println!("Created the consortium CA {name} in {}.", ca_dir.display());
            println!(
                "Give every node {} (it is public).",
                ca.cert_path().display()
            );
            println!("Keep {} secret and off the nodes.", ca.key_path().display());
        }
        CaCommand::Issue {
            ca_dir,
            csr,
            out,
            days,
        } => {
            let ca = crate::pki::CaDir::new(&ca_dir);
            if out.exists() {
                anyhow::bail!("{} already exists; choose a new file name", out.display());
            }
            let request = std::fs::read_to_string(&csr)
                .with_context(|| format!("reading {}", csr.display()))?;
            let (pem, id) = ca.issue(&request, days, now)?;
            std::fs::write(&out, pem).with_context(|| format!("writing {}", out.display()))?;
            println!(
                "Issued a certificate for town {} (node {}), valid {days} days.",
                id.town, id.node_id
            );
            println!(
                "Send {} and {} to the town.",
                out.display(),
                ca.cert_path().display()
            );
        }
        CaCommand::Revoke { ca_dir, town, node } => {
            let ca = crate::pki::CaDir::new(&ca_dir);
            let revoked = ca.revoke(town.as_deref(), node.as_deref(), now)?;
            for r in &revoked {
                println!("Revoked {r}.");
            }
            println!(
                "Wrote {}. Import it on any member node with `yui revocations import`; it spreads to the others by sync.",
                ca.crl_path().display()
            );
        }
    }
    Ok(())
}
