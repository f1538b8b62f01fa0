//! The gate every document from a peer passes before it is stored or
//! relayed, the same rules as a local write: the collection's schema (no
//! unknown fields, no keys outside the record's shape, tombstones too), the
//! town id, times within a sane window, the size limits (part of the
//! schema check), the personal-data guard, and (on a node) every new
//! change's signature and the collection's write authority (`provenance`).
//!
//! The receiver's clock is an argument ([`Admission::now`]): this crate
//! reads no clock.

use std::collections::HashMap;
use std::sync::Arc;

use automerge::{AutoCommit, ChangeHash, ObjType, ROOT, ReadDoc, Value};

use crate::collection::Collection;
use crate::guard::{self, Registry};
use crate::provenance::{self, ChangeSignature, SignerBook};
use crate::record::{Millis, RecordView, check_town_id, format_time};
use crate::validate::validate_create;

/// 2020-01-01T00:00:00Z: no record of the consortium is older.
pub const CONSORTIUM_START: Millis = 1_577_836_800_000;

/// How far into the future (by the receiver's clock) a record's times and
/// its changes' commit times may be: one day of clock skew.
pub const CLOCK_SKEW: Millis = 24 * 60 * 60 * 1000;

/// The keys of a record document's root map (protocol.md 5.2).
pub const ROOT_KEYS: [&str; 9] = [
    "format",
    "id",
    "collection",
    "town",
    "created_at",
    "updated_at",
    "deleted",
    "fields",
    "attachments",
];

/// What the gate checks a document against besides its collection: the
/// receiver's clock and its guard's registry of names.
#[derive(Debug, Clone)]
pub struct Admission {
    pub now: Millis,
    /// The earliest time a record may hold: [`CONSORTIUM_START`] on a node.
    pub earliest: Millis,
    pub registry: Arc<Registry>,
    /// The member keys every new change's signature is checked with
    /// (`provenance`); None only where nothing is signed (the simulation
    /// and unit tests without keys).
    pub signers: Option<Arc<SignerBook>>,
}

impl Admission {
    /// A node's admission: times from [`CONSORTIUM_START`] to `now` plus
    /// [`CLOCK_SKEW`].
    pub fn new(now: Millis, registry: Arc<Registry>) -> Admission {
        Admission {
            now,
            earliest: CONSORTIUM_START,
            registry,
            signers: None,
        }
    }

    /// Checks every new change's signature against `signers`.
    pub fn with_signers(mut self, signers: Arc<SignerBook>) -> Admission {
        self.signers = Some(signers);
        self
    }

    /// A replica without a clock (the unit tests and the simulation, whose
    /// times start at 0): no time window, no names; every other check runs.
    pub fn without_clock() -> Admission {
        Admission {
            now: Millis::MAX,
            earliest: Millis::MIN,
            registry: Arc::new(Registry::new()),
            signers: None,
        }
    }

    fn latest(&self) -> Millis {
        self.now.saturating_add(CLOCK_SKEW)
    }
}

/// Why the gate refused a document: a refusal code (protocol.md 4.3) and a
/// message for the sender. Messages never repeat a personal value.
pub type Refused = (&'static str, String);

/// Checks a merged document before it is stored: `view` is what
/// `doc::read` made of it, `base` the heads it had here before (empty: new
/// here), so that only the new changes' commit times and signatures are
/// judged. Answers the new changes' verified signatures, to store (none
/// without [`Admission::signers`]).
pub fn admit(
    collection: Collection,
    doc: &mut AutoCommit,
    base: &[ChangeHash],
    view: &RecordView,
    signatures: &HashMap<ChangeHash, ChangeSignature>,
    admission: &Admission,
) -> Result<Vec<ChangeSignature>, Refused> {
    for key in doc.keys(ROOT) {
        if !ROOT_KEYS.contains(&key.as_str()) {
            return Err((
                "schema_violation",
                format!("key {:?} is outside the record's shape", shown(&key)),
            ));
        }
    }
    if let Some((Value::Object(ObjType::Map), fields)) = doc.get(ROOT, "fields").ok().flatten() {
        for key in doc.keys(&fields) {
            if collection.field(&key).is_none() {
                return Err((
                    "schema_violation",
                    format!("{}: not a field of {}", shown(&key), collection.name()),
                ));
            }
            if !view.fields.contains_key(&key) {
                return Err((
                    "schema_violation",
                    format!("{key}: the stored value has the wrong type"),
                ));
            }
        }
    }
    check_attachments(doc, view, &admission.registry)?;
    // Tombstones too: a deleted record still travels with its fields.
    let typed = validate_create(collection, &view.fields)
        .map_err(|e| ("schema_violation", e.to_string()))?;
    check_town_id(&view.town).map_err(|_| {
        (
            "invalid_town",
            format!(
                "town {:?} is not a town id (1-32 of a-z 0-9 -, starting with a letter)",
                shown(&view.town)
            ),
        )
    })?;
    let window = |what: &str, at: &str, ms: Millis| -> Result<(), Refused> {
        if ms < admission.earliest || ms > admission.latest() {
            return Err((
                "invalid_time",
                format!(
                    "{what} {at} is outside {} .. {} (the consortium's start .. the receiver's clock + 1 day)",
                    format_time(admission.earliest),
                    format_time(admission.latest()),
                ),
            ));
        }
        Ok(())
    };
    for (what, ms) in [
        ("created_at", root_ms(doc, "created_at")),
        ("updated_at", root_ms(doc, "updated_at")),
    ] {
        let ms = ms.unwrap_or(Millis::MIN);
        window(what, &format_time(ms), ms)?;
    }
    let new = provenance::changes_after(doc, base);
    for change in &new {
        let ms = change.timestamp;
        window(
            "the commit time of change",
            &format!("{} ({})", change.hash, format_time(ms)),
            ms,
        )?;
    }
    let findings = guard::scan_fields(&typed, &admission.registry);
    if !findings.is_empty() {
        let mut found: Vec<String> = findings
            .iter()
            .map(|f| format!("{} in {}", f.kind.as_str(), f.field))
            .collect();
        found.dedup();
        return Err((
            "personal_data",
            format!("personal data: {}", found.join(", ")),
        ));
    }
    // Last: the schema and the window above are cheaper than a signature.
    match &admission.signers {
        Some(book) => Ok(provenance::check_new_changes(
            collection, doc, base, &new, view, signatures, book,
        )?
        .into_iter()
        .map(|a| a.signature)
        .collect()),
        None => Ok(Vec::new()),
    }
}

/// The `attachments` map (protocol.md 5.4): every entry has the shape
/// `doc::attachments` reads, and passes `attachment::check_entry`.
fn check_attachments(
    doc: &AutoCommit,
    view: &RecordView,
    registry: &guard::Registry,
) -> Result<(), Refused> {
    let Some((kind, map)) = doc.get(ROOT, "attachments").ok().flatten() else {
        return Ok(());
    };
    let bad = |m: String| Err(("schema_violation", m));
    if !matches!(kind, Value::Object(ObjType::Map)) {
        return bad("attachments is not a map".into());
    }
    let keys: Vec<String> = doc.keys(&map).collect();
    if keys.len() > crate::attachment::MAX_PER_RECORD {
        return bad(format!(
            "{} attachments; a record names at most {}",
            keys.len(),
            crate::attachment::MAX_PER_RECORD
        ));
    }
    if keys.len() != view.attachments.len() {
        return bad("an attachment entry has the wrong shape".into());
    }
    for a in &view.attachments {
        crate::attachment::check_entry(&a.sha256, a).map_err(|m| ("schema_violation", m))?;
        if check_town_id(&a.town).is_err() {
            return bad("an attachment names no town".into());
        }
        // The name travels with the record, like a field.
        let findings = guard::scan_text("attachment", &a.name, registry);
        if let Some(f) = findings.first() {
            return Err((
                "personal_data",
                format!("personal data: {} in an attachment's name", f.kind.as_str()),
            ));
        }
    }
    Ok(())
}

fn root_ms(doc: &AutoCommit, key: &str) -> Option<Millis> {
    match doc.get(ROOT, key).ok().flatten()? {
        (Value::Scalar(s), _) => match s.as_ref() {
            automerge::ScalarValue::Timestamp(t) | automerge::ScalarValue::Int(t) => Some(*t),
            _ => None,
        },
        _ => None,
    }
}

/// A key or town as a message may quote it: at most 40 characters.
fn shown(text: &str) -> String {
    text.chars().take(40).collect()
}
