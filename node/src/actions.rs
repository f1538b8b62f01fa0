//! One rule per action: the table of what people do to a node — each
//! action's name in the audit log, the role it needs, and the audit entry
//! it leaves — and the administration actions themselves (sync now, adding
//! and removing peers, importing a revocation list).
//!
//! The JSON API, the console and the `yui` commands only translate: they
//! ask [`Action::check`] (or [`Action::allows`], to show or hide a button)
//! and call the use case, which checks again, acts, and writes the audit
//! entry made by the one constructor of [`Entry`] for that action. So an
//! entry point cannot pick its own role or word its own entry
//! (`docs/operations.md` 4.2 lists the table; a tidy test in
//! `node/tests/layers.rs` keeps audit entries from being written elsewhere).

use serde_json::value::RawValue;
use yui_protocol::Collection;
use yui_protocol::record::RecordView;

use crate::accounts::{Accounts, Principal, Role};
use crate::error::{Error, Result};
use crate::node::Node;

/// Something a person does to the node that changes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Creating a record (of `kpi_reports`: publishing the town's KPI report).
    Create(Collection),
    /// Changing a record's fields (of `kpi_reports`: publishing again).
    Update(Collection),
    /// Marking a record deleted.
    Delete(Collection),
    /// Importing a CSV file into a collection: its rows created or
    /// updated, all or none (`crate::import`).
    Import(Collection),
    /// Syncing with the peers now instead of waiting for the next round.
    SyncNow,
    PeerAdd,
    PeerRemove,
    RevocationsImport,
    /// Installing a node certificate (joining, renewal, a new key, a CA
    /// rollover).
    CertificateInstall,
    /// Making a new node key and its certificate request.
    KeyRotate,
    UserAdd,
    UserRemove,
    UserPasswd,
    UserRole,
    TokenCreate,
    TokenRevoke,
}

/// The role that creating, changing or deleting a record of `collection`
/// needs, whichever way the write comes.
pub fn role_to_write(collection: Collection) -> Role {
    match collection {
        // Publishing the town's KPI figures is for administrators
        // (operations.md, 21.2): a report speaks for the town.
        Collection::KpiReports => Role::Admin,
        Collection::Knowledge
        | Collection::FailureCases
        | Collection::PilotResults
        | Collection::Workers
        | Collection::Trainings
        | Collection::Mentoring
        | Collection::Customers
        | Collection::Orders
        | Collection::PrItems => Role::Editor,
    }
}

impl Action {
    /// Its name in the audit log.
    pub fn name(self) -> &'static str {
        match self {
            Action::Create(Collection::KpiReports) | Action::Update(Collection::KpiReports) => {
                "kpi.publish"
            }
            Action::Create(_) => "record.create",
            Action::Update(_) => "record.update",
            Action::Delete(_) => "record.delete",
            Action::Import(_) => "record.import",
            Action::SyncNow => "sync.now",
            Action::PeerAdd => "peer.add",
            Action::PeerRemove => "peer.remove",
            Action::RevocationsImport => "revocations.import",
            Action::CertificateInstall => "certificate.install",
            Action::KeyRotate => "key.rotate",
            Action::UserAdd => "user.add",
            Action::UserRemove => "user.remove",
            Action::UserPasswd => "user.passwd",
            Action::UserRole => "user.role",
            Action::TokenCreate => "token.create",
            Action::TokenRevoke => "token.revoke",
        }
    }

    /// The least role that may take it.
    pub fn role(self) -> Role {
        match self {
            Action::Create(c) | Action::Update(c) | Action::Delete(c) | Action::Import(c) => {
                role_to_write(c)
            }
            // Sync now changes nothing the node would not do by itself
            // within seconds: it cuts waiting retries short. Staff who just
            // wrote a record are the ones who want it sent before a
            // meeting, and they are editors (operations.md 4.2).
            Action::SyncNow => Role::Editor,
            Action::PeerAdd
            | Action::PeerRemove
            | Action::RevocationsImport
            | Action::CertificateInstall
            | Action::KeyRotate
            | Action::UserAdd
            | Action::UserRemove
            | Action::UserPasswd
            | Action::UserRole
            | Action::TokenCreate
            | Action::TokenRevoke => Role::Admin,
        }
    }

    /// Whether `role` may take this action (to show or hide a button; the
    /// action itself checks with [`Action::check`]).
    pub fn allows(self, role: Role) -> bool {
        role >= self.role()
    }

    /// Refuses, with `Forbidden`, a principal whose role is too low.
    pub fn check(self, principal: &Principal) -> Result<()> {
        if self.allows(principal.role) {
            return Ok(());
        }
        let what = match self {
            Action::Create(c) | Action::Update(c) | Action::Delete(c) | Action::Import(c) => {
                let why = match c {
                    Collection::KpiReports => {
                        " (publishing the town's KPI report is for administrators)"
                    }
                    _ => "",
                };
                format!("writing {c} records{why}")
            }
            other => other.name().to_owned(),
        };
        Err(Error::Forbidden {
            message: format!(
                "{what} needs the {} role (or higher); {} has the {} role",
                self.role(),
                principal.user,
                principal.role
            ),
        })
    }
}

/// One audit entry: an action, what it was done to, and a detail. Made
/// only by the constructors below, one per action, so every entry point
/// writes the same entry for the same act.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    action: Action,
    target: String,
    detail: String,
}

/// The four figures of a KPI report, in the order of SPEC §4 (and of its
/// audit entry).
pub const KPI_FIGURES: [&str; 4] = [
    "new_hires",
    "pilot_projects",
    "dx_certified_businesses",
    "member_municipalities",
];

impl Entry {
    pub fn action(&self) -> Action {
        self.action
    }

    pub fn target(&self) -> &str {
        &self.target
    }

    pub fn detail(&self) -> &str {
        &self.detail
    }

    /// A record created or changed: the names of the fields the write set
    /// (never their values), `fields: body, category, title` (sorted). A
    /// KPI report names its year and figures instead, which are not
    /// personal: `FY2024 created: new_hires=2 pilot_projects=1 …`.
    pub fn record_written<'a>(
        collection: Collection,
        id: &str,
        created: bool,
        fields: impl IntoIterator<Item = &'a str>,
        stored: &RawValue,
    ) -> Entry {
        let action = if created {
            Action::Create(collection)
        } else {
            Action::Update(collection)
        };
        let detail = match collection {
            Collection::KpiReports => kpi_detail(stored, created),
            _ => {
                let mut names: Vec<&str> = fields.into_iter().collect();
                names.sort_unstable();
                names.dedup();
                if names.is_empty() {
                    "no field changed".to_owned()
                } else {
                    format!("fields: {}", names.join(", "))
                }
            }
        };
        Entry {
            action,
            target: format!("{collection}/{id}"),
            detail,
        }
    }

    /// A file attached to or removed from a record: an update of it,
    /// naming the file's hash and size (never its name, which may say more
    /// than a field name does).
    pub fn attachment_changed(
        collection: Collection,
        id: &str,
        added: bool,
        sha256: &str,
        size: u64,
    ) -> Entry {
        let what = if added { "attached" } else { "removed" };
        Entry {
            action: Action::Update(collection),
            target: format!("{collection}/{id}"),
            detail: format!(
                "{what} file sha256:{} ({size} bytes)",
                &sha256[..16.min(sha256.len())]
            ),
        }
    }

    pub fn record_deleted(collection: Collection, id: &str) -> Entry {
        Entry {
            action: Action::Delete(collection),
            target: format!("{collection}/{id}"),
            detail: String::new(),
        }
    }

    /// A CSV file imported into `collection`: how many rows it had and
    /// what they did (the records' own histories hold the changes; the
    /// entry names no value).
    pub fn imported(
        collection: Collection,
        rows: usize,
        encoding: &str,
        done: crate::store::BatchDone,
    ) -> Entry {
        Entry {
            action: Action::Import(collection),
            target: collection.name().to_owned(),
            detail: format!(
                "{rows} rows ({encoding}): {} created, {} updated, {} unchanged",
                done.created, done.updated, done.unchanged
            ),
        }
    }

    /// `only`: the one peer synced (the console's per-peer button), else all.
    pub fn synced(only: Option<&str>, ok: usize, failed: usize) -> Entry {
        Entry {
            action: Action::SyncNow,
            target: only.unwrap_or("peers").to_owned(),
            detail: format!("{ok} ok, {failed} failed"),
        }
    }

    /// `url` as stored (normalised), with the node id it must be, if given.
    pub fn peer_added(url: &str, node_id: Option<&str>) -> Entry {
        Entry {
            action: Action::PeerAdd,
            target: url.to_owned(),
            detail: node_id.map_or_else(String::new, |id| format!("node id {id}")),
        }
    }

    /// `key` as given (a URL or a node id); `removed`: the peers' URLs.
    pub fn peer_removed(key: &str, removed: &[String]) -> Entry {
        Entry {
            action: Action::PeerRemove,
            target: key.to_owned(),
            detail: removed.join(", "),
        }
    }

    /// A verified list: `number` is the list installed now.
    pub fn revocations_imported(newer: bool, number: u64) -> Entry {
        Entry {
            action: Action::RevocationsImport,
            target: "revocations".to_owned(),
            detail: if newer {
                format!("list number {number} installed")
            } else {
                format!("not newer than the installed list number {number}; nothing changed")
            },
        }
    }

    pub fn certificate_installed(done: &crate::membership::CertificateInstalled) -> Entry {
        let what = match (&done.rotated_from, done.joined) {
            (Some(old), _) => format!("new key (was node {old})"),
            (None, true) => "joined the consortium".to_owned(),
            (None, false) => "renewed".to_owned(),
        };
        Entry {
            action: Action::CertificateInstall,
            target: format!("node {}", done.node_id),
            detail: format!(
                "{what}; valid until {}; {} CA certificate(s) trusted",
                done.not_after, done.trusted_cas
            ),
        }
    }

    pub fn key_requested(node_id: &str) -> Entry {
        Entry {
            action: Action::KeyRotate,
            target: format!("node {node_id}"),
            detail: "new key made; waiting for its certificate".to_owned(),
        }
    }

    pub fn user_added(name: &str, role: Role) -> Entry {
        Entry::user(Action::UserAdd, name, format!("role {role}"))
    }

    pub fn user_removed(name: &str) -> Entry {
        Entry::user(Action::UserRemove, name, String::new())
    }

    pub fn password_set(name: &str) -> Entry {
        Entry::user(Action::UserPasswd, name, String::new())
    }

    pub fn role_set(name: &str, role: Role) -> Entry {
        Entry::user(Action::UserRole, name, format!("role {role}"))
    }

    pub fn token_created(name: &str, label: &str, role: Role) -> Entry {
        Entry::user(
            Action::TokenCreate,
            name,
            format!("label {label:?}, role {role}"),
        )
    }

    pub fn token_revoked(name: &str, label: &str) -> Entry {
        Entry::user(Action::TokenRevoke, name, format!("label {label:?}"))
    }

    fn user(action: Action, name: &str, detail: String) -> Entry {
        Entry {
            action,
            target: name.to_owned(),
            detail,
        }
    }
}

fn kpi_detail(stored: &RawValue, created: bool) -> String {
    let way = if created { "created" } else { "updated" };
    let Ok(record) = serde_json::from_str::<RecordView>(stored.get()) else {
        return way.to_owned();
    };
    let fy = record
        .fields
        .get("fiscal_year")
        .and_then(serde_json::Value::as_i64)
        .unwrap_or(0);
    let figures = KPI_FIGURES
        .iter()
        .map(|f| {
            let n = record
                .fields
                .get(*f)
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(0);
            format!("{f}={n}")
        })
        .collect::<Vec<_>>()
        .join(" ");
    format!("FY{fy} {way}: {figures}")
}

/// Writes `entry` to the audit log as done by `principal`. Never fails the
/// caller: the change has happened (see `Accounts::audit`).
pub async fn audit(accounts: &Accounts, principal: &Principal, entry: &Entry) {
    accounts
        .audit(principal, entry.action.name(), &entry.target, &entry.detail)
        .await;
}

/// What a record write through any entry point leaves behind: the write
/// counter, the audit entry of an override of the personal-data guard
/// (only when it let findings through), and the write's own entry.
pub async fn record_written(
    node: &Node,
    principal: &Principal,
    entry: &Entry,
    override_reason: &str,
    findings: &[yui_protocol::guard::Finding],
) {
    node.metrics.record_write();
    node.accounts
        .audit_override(principal, &entry.target, override_reason, findings)
        .await;
    audit(&node.accounts, principal, entry).await;
}

/// The error of a federation action on a node that has not joined.
pub fn not_joined() -> Error {
    Error::Conflict(
        "this node has not joined a consortium yet: install its certificate with `yui cert install`".into(),
    )
}

/// Syncs with every peer now (or only with `only`, a peer's URL), both
/// ways; audited as `sync.now`.
pub async fn sync_now(
    node: &Node,
    principal: &Principal,
    only: Option<&str>,
) -> Result<Vec<crate::peer::SyncResult>> {
    Action::SyncNow.check(principal)?;
    if node.peering().is_none() {
        return Err(not_joined());
    }
    let results = crate::peer::Peering::sync_peers(&node.federation(), only).await?;
    let ok = results.iter().filter(|r| r.ok).count();
    let entry = Entry::synced(only, ok, results.len() - ok);
    audit(&node.accounts, principal, &entry).await;
    Ok(results)
}

/// Adds a peer by its peer-port URL (and the node id it must be, if
/// known); returns the URL as stored. A running node starts syncing with
/// it at once (`shutdown` given). Audited as `peer.add`.
pub async fn add_peer(
    node: &Node,
    principal: &Principal,
    url: &str,
    node_id: Option<String>,
) -> Result<String> {
    Action::PeerAdd.check(principal)?;
    let stored = crate::peer::add_peer(
        &node.federation(),
        url,
        node_id.clone(),
        node.shutdown.get(),
    )
    .await?;
    tracing::info!(url = %stored, user = %principal.user, "peer added");
    let node_id = match &node_id {
        // The node id as stored (canonical), for the entry.
        Some(_) => node
            .store
            .peers()
            .await?
            .into_iter()
            .find(|p| p.url == stored)
            .and_then(|p| p.node_id)
            .or(node_id),
        None => None,
    };
    audit(
        &node.accounts,
        principal,
        &Entry::peer_added(&stored, node_id.as_deref()),
    )
    .await;
    Ok(stored)
}

/// Removes the peers with this URL or node id; returns their URLs (empty:
/// none had it, and nothing is audited). Audited as `peer.remove`.
pub async fn remove_peer(node: &Node, principal: &Principal, key: &str) -> Result<Vec<String>> {
    Action::PeerRemove.check(principal)?;
    let removed = crate::peer::remove_peer(&node.federation(), key).await?;
    if !removed.is_empty() {
        tracing::info!(peers = ?removed, user = %principal.user, "peer removed");
        audit(
            &node.accounts,
            principal,
            &Entry::peer_removed(key, &removed),
        )
        .await;
    }
    Ok(removed)
}

/// Installs a node certificate and the CA certificate(s) (PEM) and takes
/// them into use at once (`crate::membership`). A certificate that does
/// not fit is refused as `invalid_certificate`. Audited as
/// `certificate.install`.
pub async fn install_certificate(
    node: &std::sync::Arc<Node>,
    principal: &Principal,
    cert_pem: &[u8],
    ca_pem: &[u8],
    revocations_pem: Option<&[u8]>,
) -> Result<crate::membership::CertificateInstalled> {
    Action::CertificateInstall.check(principal)?;
    let done =
        crate::membership::install_certificate(node, cert_pem, ca_pem, revocations_pem).await?;
    audit(
        &node.accounts,
        principal,
        &Entry::certificate_installed(&done),
    )
    .await;
    Ok(done)
}

/// Makes a new node key and its certificate request (the current key stays
/// in use until the certificate is installed). Audited as `key.rotate`.
pub async fn rotate_key(
    node: &Node,
    principal: &Principal,
) -> Result<crate::membership::KeyRequested> {
    Action::KeyRotate.check(principal)?;
    let made =
        crate::membership::request_new_key(&node.data_dir, &node.config.town, &node.config.name)?;
    audit(
        &node.accounts,
        principal,
        &Entry::key_requested(&made.node_id),
    )
    .await;
    Ok(made)
}

/// What importing a revocation list did.
pub struct Imported {
    /// Whether it was newer than the installed one (and is installed now).
    pub newer: bool,
    /// The number of the list installed now.
    pub number: u64,
}

/// Installs a revocation list (DER) signed by the consortium CA, if newer
/// than the installed one. A list that does not verify is refused as
/// `invalid_revocations`. Audited as `revocations.import` whether or not it
/// was newer.
pub async fn import_revocations(
    node: &Node,
    principal: &Principal,
    der: &[u8],
) -> Result<Imported> {
    Action::RevocationsImport.check(principal)?;
    let peering = node.peering().ok_or_else(not_joined)?;
    let newer = peering
        .install_revocations(&node.store, &node.data_dir, der)
        .map_err(|e| Error::bad_request("invalid_revocations", e.to_string()))?;
    let number = peering.trust().revocation_number();
    audit(
        &node.accounts,
        principal,
        &Entry::revocations_imported(newer, number),
    )
    .await;
    Ok(Imported { newer, number })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_has_a_distinct_name_but_kpi_writes() {
        let kpi = [
            Action::Create(Collection::KpiReports),
            Action::Update(Collection::KpiReports),
        ];
        assert!(kpi.iter().all(|a| a.name() == "kpi.publish"));
        assert!(kpi.iter().all(|a| a.role() == Role::Admin));
        assert_eq!(Action::Delete(Collection::KpiReports).role(), Role::Admin);
        assert_eq!(Action::Create(Collection::Knowledge).role(), Role::Editor);
        assert_eq!(Action::SyncNow.role(), Role::Editor);
        assert_eq!(Action::PeerAdd.role(), Role::Admin);
    }

    #[test]
    fn record_entries_name_fields_sorted_never_values() {
        let stored = RawValue::from_string("{}".into()).expect("raw");
        let e = Entry::record_written(
            Collection::Knowledge,
            "x",
            true,
            ["title", "body", "category"],
            &stored,
        );
        assert_eq!(e.detail(), "fields: body, category, title");
        assert_eq!(e.target(), "knowledge/x");
        assert_eq!(e.action().name(), "record.create");
    }
}
