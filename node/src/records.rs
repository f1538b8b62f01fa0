//! Writing records on a person's behalf, the one way the JSON API and the
//! web console both take: the rule for overriding the personal-data guard,
//! the store write, and the trail a write leaves (the write counter, the
//! audit entry of an override, the write's own audit entry). The adapters
//! only translate: JSON or a form in, this module's results out.
//!
//! Who may write which collection, and the audit entry a write leaves, are
//! the rules of `crate::actions` ([`role_to_write`], `Action::Create` …):
//! every write on someone's behalf ([`OnBehalf`], [`delete`], `kpi::publish`)
//! checks and audits through them, so the API's generic record routes, the
//! console's record forms and its KPI page cannot disagree.

use serde::Deserialize;
use serde_json::value::RawValue;
use yui_protocol::Collection;
use yui_protocol::guard::Finding;
use yui_protocol::validate::{Fields, Patch};

use crate::accounts::{Principal, Role};
use crate::actions::{self, Action, Entry};
use crate::clock::now_ms;
use crate::error::{Error, Result};
use crate::node::Node;
use crate::store::GuardMode;

/// The shortest reason an override may give: it goes to the audit log.
pub const MIN_OVERRIDE_REASON_CHARS: usize = 5;

pub use crate::actions::role_to_write;

/// Whether `role` may write records of `collection` (see [`role_to_write`]).
pub fn may_write(role: Role, collection: Collection) -> bool {
    Action::Create(collection).allows(role)
}

/// Refuses, with `Forbidden`, a principal whose role may not write
/// `collection`.
pub fn check_may_write(principal: &Principal, collection: Collection) -> Result<()> {
    Action::Create(collection).check(principal)
}

/// What a write asks of the personal-data guard.
#[derive(Debug, Clone, Default)]
pub struct Guarding {
    pub mode: GuardMode,
    /// The reason given with an override; empty without one.
    pub reason: String,
}

/// Why an override of the guard was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverrideRefused {
    /// Only administrators may override.
    NotAdministrator,
    /// The reason is shorter than [`MIN_OVERRIDE_REASON_CHARS`].
    NoReason,
}

impl Guarding {
    /// The guard refuses every finding.
    pub fn refuse() -> Guarding {
        Guarding::default()
    }

    /// An override asked for by `principal` with `reason`: every finding but
    /// My Number is let through, if the principal is an administrator and
    /// says why.
    pub fn overriding(principal: &Principal, reason: &str) -> Result<Guarding, OverrideRefused> {
        if !principal.role.can_administer() {
            return Err(OverrideRefused::NotAdministrator);
        }
        let reason = reason.trim();
        if reason.chars().count() < MIN_OVERRIDE_REASON_CHARS {
            return Err(OverrideRefused::NoReason);
        }
        Ok(Guarding {
            mode: GuardMode::AcceptOverridable,
            reason: reason.to_owned(),
        })
    }
}

/// A record just written, as the API shows it, and its id.
pub struct Written {
    pub record: Box<RawValue>,
    pub id: String,
}

/// A write on someone's behalf: who, and what they asked of the guard. The
/// audit entry is made here from what was written (`actions::Entry`), so
/// every entry point leaves the same one.
pub struct OnBehalf<'a> {
    pub node: &'a Node,
    pub principal: &'a Principal,
    pub guarding: &'a Guarding,
}

impl OnBehalf<'_> {
    /// Creates a record.
    pub async fn create(&self, collection: Collection, fields: Fields) -> Result<Written> {
        Action::Create(collection).check(self.principal)?;
        let names: Vec<&'static str> = fields.keys().copied().collect();
        let (record, findings) = self
            .node
            .store
            .create_guarded(collection, fields, now_ms(), self.guarding.mode)
            .await?;
        let id = id_of(&record)?;
        let entry = Entry::record_written(collection, &id, true, names, &record);
        self.trail(&entry, &findings).await;
        Ok(Written { record, id })
    }

    /// Changes the fields of `patch`.
    pub async fn update(
        &self,
        collection: Collection,
        id: String,
        patch: Patch,
    ) -> Result<Written> {
        Action::Update(collection).check(self.principal)?;
        let names: Vec<&'static str> = patch.keys().copied().collect();
        let (record, findings) = self
            .node
            .store
            .update_guarded(collection, id.clone(), patch, now_ms(), self.guarding.mode)
            .await?;
        let entry = Entry::record_written(collection, &id, false, names, &record);
        self.trail(&entry, &findings).await;
        Ok(Written { record, id })
    }

    async fn trail(&self, entry: &Entry, findings: &[Finding]) {
        let reason = &self.guarding.reason;
        actions::record_written(self.node, self.principal, entry, reason, findings).await;
    }
}

/// Marks a record deleted.
pub async fn delete(
    node: &Node,
    principal: &Principal,
    collection: Collection,
    id: String,
) -> Result<()> {
    Action::Delete(collection).check(principal)?;
    let entry = Entry::record_deleted(collection, &id);
    node.store.delete(collection, id, now_ms()).await?;
    actions::record_written(node, principal, &entry, "", &[]).await;
    // Its files go with it, unless another record names them (the peer
    // fetcher does the same for deletions that arrive from other towns).
    if let Err(e) = crate::blobs::collect_unnamed(&node.store, &node.blobs()).await {
        tracing::warn!(error = %e, "deleting the files of a deleted record failed");
    }
    Ok(())
}

/// The id of a record just written, read back from its API JSON.
fn id_of(record: &RawValue) -> Result<String> {
    #[derive(Deserialize)]
    struct RecordRef {
        id: String,
    }
    serde_json::from_str::<RecordRef>(record.get())
        .map(|r| r.id)
        .map_err(|e| Error::Storage(format!("reading back a written record: {e}")))
}
