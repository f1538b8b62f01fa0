//! The personal-data guard as the store applies it: the registry of this
//! town's people (names read from workers and customers, kept up to date
//! incrementally) and the check on a write to a shared collection.

use std::sync::Arc;

use yui_protocol::validate::Fields;
use yui_protocol::{Collection, guard};

use super::{Store, lock};
use crate::error::{Error, Result};

/// The guard's registry and the feed position it has read up to.
pub(super) type CachedRegistry = (i64, Arc<guard::Registry>);

/// What the personal-data guard lets through when a shared record is
/// written here: nothing, or (an administrator's override, with a reason
/// the caller records) every finding but My Number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GuardMode {
    #[default]
    Refuse,
    AcceptOverridable,
}

impl Store {
    /// The names and kana readings of this town's registered workers and
    /// customer contacts, for the personal-data guard. Kept up to date by
    /// reading only the workers and customers changed since the last call;
    /// names of deleted or renamed people stay until the node restarts
    /// (they were a person's names all the same).
    pub async fn registry(&self) -> Result<Arc<guard::Registry>> {
        let inner = self.inner.clone();
        self.read(move |conn| {
            let mut cached = lock(&inner.registry);
            let (seen, registry) = cached.get_or_insert_with(|| (0, Arc::new(guard::Registry::new())));
            let mut stmt = conn.prepare_cached(
                "SELECT seq, json_extract(view, '$.fields.name'), json_extract(view, '$.fields.name_kana'),
                        json_extract(view, '$.fields.contact_name')
                 FROM records WHERE shared = 0 AND seq > ?1 AND collection IN ('workers', 'customers')",
            )?;
            let rows = stmt.query_map([*seen], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    [
                        r.get::<_, Option<String>>(1)?,
                        r.get::<_, Option<String>>(2)?,
                        r.get::<_, Option<String>>(3)?,
                    ],
                ))
            })?;
            for row in rows {
                let (seq, names) = row?;
                *seen = (*seen).max(seq);
                // Copies only if a scan still holds the previous version.
                let names_of = Arc::make_mut(registry);
                for name in names.into_iter().flatten() {
                    names_of.add(&name);
                }
            }
            Ok(registry.clone())
        })
        .await
    }

    /// The personal-data guard on a write to a shared collection: refuses
    /// (422 `personal_data`) what `mode` does not let through; returns the
    /// findings it let through, for the caller's audit log.
    pub async fn check_personal_data(
        &self,
        collection: Collection,
        fields: &Fields,
        mode: GuardMode,
    ) -> Result<Vec<guard::Finding>> {
        if !collection.is_shared() {
            return Ok(Vec::new());
        }
        let registry = self.registry().await?;
        judge_personal_data(collection, fields, &registry, mode)
    }
}

impl Store {
    /// The guard on the name of a file attached to a shared record (the
    /// name travels with the record): personal data in it is refused (422
    /// `personal_data`; no override, a name is easily changed).
    pub async fn check_file_name(&self, collection: Collection, name: &str) -> Result<()> {
        if !collection.is_shared() {
            return Ok(());
        }
        let registry = self.registry().await?;
        let findings = guard::scan_text("attachment", name, &registry);
        if findings.is_empty() {
            Ok(())
        } else {
            Err(Error::PersonalData(findings))
        }
    }
}

/// The guard's verdict on a write's new values, with the town's registry
/// in hand (an import reads it once for all its rows): refuses (422
/// `personal_data`) what `mode` does not let through, and returns the
/// findings it let through. A local collection is not scanned.
pub fn judge_personal_data(
    collection: Collection,
    fields: &Fields,
    registry: &guard::Registry,
    mode: GuardMode,
) -> Result<Vec<guard::Finding>> {
    if !collection.is_shared() {
        return Ok(Vec::new());
    }
    let findings = guard::scan_fields(fields, registry);
    let refused = match mode {
        GuardMode::Refuse => !findings.is_empty(),
        GuardMode::AcceptOverridable => findings.iter().any(|f| !f.kind.may_override()),
    };
    if refused {
        return Err(Error::PersonalData(findings));
    }
    Ok(findings)
}
