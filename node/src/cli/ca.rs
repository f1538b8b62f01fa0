//! `yui ca`: the secretariat's consortium certificate authority (init,
//! issue, revoke, rollover). It works on a CA directory, never on a node's
//! data.

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
        /// Renewal: issue although the node of this request already holds
        /// an unrevoked certificate (same key, same node id).
        #[arg(long, conflicts_with = "rotate")]
        renew: bool,
        /// Key rotation: issue for the new key of a town that already holds
        /// an unrevoked certificate (`yui cert rotate-key` made the request).
        #[arg(long)]
        rotate: bool,
        /// The town's name as people write it (e.g. 立科町), which every
        /// member's pages show for this town. Default: the name in the
        /// request (`yui init --name`).
        #[arg(long)]
        name: Option<String>,
    },
    /// Roll the CA over to a new key: starts an overlap in which members
    /// trust both CAs (send ca-bundle.pem to every town, then renew each
    /// town's certificate); `--finish` ends it once every town holds a
    /// certificate of the new CA.
    Rollover {
        /// The CA directory made by `yui ca init`.
        #[arg(long)]
        ca_dir: PathBuf,
        /// End the overlap: delete the old CA's key and write a revocation
        /// list signed by the new CA.
        #[arg(long)]
        finish: bool,
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
            renew,
            rotate,
            name,
        } => {
            let ca = crate::pki::CaDir::new(&ca_dir);
            if out.exists() {
                anyhow::bail!("{} already exists; choose a new file name", out.display());
            }
            let request = std::fs::read_to_string(&csr)
                .with_context(|| format!("reading {}", csr.display()))?;
            let (town, node) = crate::pki::request_identity(&request)
                .with_context(|| format!("reading {}", csr.display()))?;
            let held = ca.outstanding(&town, now)?;
            check_another(&town, &node, &held, renew, rotate)?;
            let (pem, id) = ca.issue_named(&request, days, name.as_deref(), now)?;
            std::fs::write(&out, &pem).with_context(|| format!("writing {}", out.display()))?;
            let named = crate::pki::parse_pem(&pem, "the issued certificate")
                .ok()
                .and_then(|der| crate::pki::town_name_of(&der));
            println!(
                "Issued a certificate for town {}{} (node {}), valid {days} days.",
                id.town,
                named.map(|n| format!(" ({n})")).unwrap_or_default(),
                id.node_id
            );
            let trust = if ca.in_rollover() {
                ca.bundle_path()
            } else {
                ca.cert_path()
            };
            println!(
                "Send {} and {} to the town.",
                out.display(),
                trust.display()
            );
        }
        CaCommand::Rollover { ca_dir, finish } => {
            let ca = crate::pki::CaDir::new(&ca_dir);
            if finish {
                ca.finish_rollover(now)?;
                println!("The overlap is over: the old CA's key is deleted.");
                println!(
                    "Send {} and {} to every town, each with its certificate of the new CA: yui cert install --cert NODE_CERT --ca-cert ca.cert.pem --revocations revocations.pem",
                    ca.crl_path().display(),
                    ca.cert_path().display()
                );
            } else {
                let generation = ca.rollover(now)?;
                println!(
                    "Made CA number {generation}; the overlap has begun: members trust both CAs."
                );
                println!(
                    "1. Send {} to every town: each installs it with its current certificate (yui cert install --cert node.cert.pem --ca-cert ca-bundle.pem).",
                    ca.bundle_path().display()
                );
                println!(
                    "2. Renew every town's certificate with the new CA (yui ca issue --renew); send it with {}.",
                    ca.bundle_path().display()
                );
                println!(
                    "3. When every town runs on a certificate of the new CA: yui ca rollover --finish."
                );
            }
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

/// Refuses a certificate for a town that already holds an unrevoked,
/// unexpired one, unless the secretariat says which case this is: `--renew`
/// (the same node again) or `--rotate` (a new key for the town). Lists what
/// the town holds either way.
fn check_another(
    town: &str,
    node: &str,
    held: &[crate::pki::Outstanding],
    renew: bool,
    rotate: bool,
) -> Result<()> {
    if held.is_empty() {
        if renew || rotate {
            println!("Town {town} holds no unrevoked certificate: this is its first.");
        }
        return Ok(());
    }
    let list: Vec<String> = held
        .iter()
        .map(|c| {
            format!(
                "  node {} (serial {}, valid until {})",
                c.node_id, c.serial_hex, c.not_after
            )
        })
        .collect();
    let same_node = held.iter().any(|c| c.node_id == node);
    let header = format!(
        "Town {town} already holds unrevoked certificates:\n{}",
        list.join("\n")
    );
    match (same_node, renew, rotate) {
        (true, true, _) | (false, _, true) => {
            println!("{header}");
            if !same_node {
                println!(
                    "The town's node takes the new key (node {node}) when it installs this certificate, and deletes the old key. Revoke the old node (yui ca revoke --node OLD_NODE_ID) only if its key may have been stolen: see operations.md 15.2."
                );
            }
            Ok(())
        }
        (true, false, _) => anyhow::bail!(
            "{header}\nThis request is for node {node} again. Nothing was issued. To renew its certificate, run the command again with --renew."
        ),
        (false, _, false) => anyhow::bail!(
            "{header}\nThis request is for a new node {node} of {town}. Nothing was issued. If the town is rotating its key (yui cert rotate-key), run the command again with --rotate; if you did not expect a second node of {town}, ask the town first."
        ),
    }
}
