//! Writing records on a person's behalf, the one way the JSON API and the
//! web console both take: the rule for overriding the personal-data guard,
//! the store write, and the trail a write leaves (the write counter, the
//! audit entry of an override, the write's own audit entry). The adapters
//! only translate: JSON or a form in, this module's results out.
//!
//! [`role_to_write`] is the one rule of who may write which collection: every
//! write on someone's behalf ([`OnBehalf`], [`delete`], `kpi::publish`)
//! checks it, so the API's generic record routes, the console's record forms
//! and its KPI page cannot disagree.

use serde::Deserialize;
use serde_json::value::RawValue;
use yui_protocol::Collection;
use yui_protocol::guard::Finding;
use yui_protocol::validate::{Fields, Patch};

use crate::accounts::{Principal, Role};
use crate::clock::now_ms;
use crate::error::{Error, Result};
use crate::node::Node;
use crate::store::GuardMode;

/// The shortest reason an override may give: it goes to the audit log.
pub const MIN_OVERRIDE_REASON_CHARS: usize = 5;

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

/// Whether `role` may write records of `collection` (see [`role_to_write`]).
pub fn may_write(role: Role, collection: Collection) -> bool {
    role >= role_to_write(collection)
}

/// Refuses, with `Forbidden`, a principal whose role may not write
/// `collection`.
pub fn check_may_write(principal: &Principal, collection: Collection) -> Result<()> {
    if may_write(principal.role, collection) {
        return Ok(());
    }
    let needed = role_to_write(collection);
    let why = match collection {
        Collection::KpiReports => " (publishing the town's KPI report is for administrators)",
        _ => "",
    };
    Err(Error::Forbidden {
        message: format!(
            "writing {collection} records needs the {needed} role{why}; {} has the {} role",
            principal.user, principal.role
        ),
    })
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

/// A write on someone's behalf: who, what they asked of the guard, and the
/// detail their audit entry carries (each adapter words its own).
pub struct OnBehalf<'a> {
    pub node: &'a Node,
    pub principal: &'a Principal,
    pub guarding: &'a Guarding,
    pub detail: &'a str,
}

impl OnBehalf<'_> {
    /// Creates a record.
    pub async fn create(&self, collection: Collection, fields: Fields) -> Result<Written> {
        check_may_write(self.principal, collection)?;
        let (record, findings) = self
            .node
            .store
            .create_guarded(collection, fields, now_ms(), self.guarding.mode)
            .await?;
        let id = id_of(&record)?;
        self.trail("record.create", &format!("{collection}/{id}"), &findings)
            .await;
        Ok(Written { record, id })
    }

    /// Changes the fields of `patch`.
    pub async fn update(
        &self,
        collection: Collection,
        id: String,
        patch: Patch,
    ) -> Result<Written> {
        check_may_write(self.principal, collection)?;
        let target = format!("{collection}/{id}");
        let (record, findings) = self
            .node
            .store
            .update_guarded(collection, id.clone(), patch, now_ms(), self.guarding.mode)
            .await?;
        self.trail("record.update", &target, &findings).await;
        Ok(Written { record, id })
    }

    async fn trail(&self, action: &str, target: &str, findings: &[Finding]) {
        let reason = &self.guarding.reason;
        self.node
            .record_written(
                self.principal,
                action,
                target,
                self.detail,
                reason,
                findings,
            )
            .await;
    }
}

/// Marks a record deleted.
pub async fn delete(
    node: &Node,
    principal: &Principal,
    collection: Collection,
    id: String,
) -> Result<()> {
    check_may_write(principal, collection)?;
    let target = format!("{collection}/{id}");
    node.store.delete(collection, id, now_ms()).await?;
    node.record_written(principal, "record.delete", &target, "", "", &[])
        .await;
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
