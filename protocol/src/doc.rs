//! The mapping between a record and its Automerge document.
//!
//! Document layout (format 1), at the root map:
//!
//! | key | value |
//! | --- | --- |
//! | `format` | uint, 1 |
//! | `id`, `collection`, `town` | str; set once at creation |
//! | `created_at`, `updated_at` | timestamp, milliseconds since the epoch |
//! | `deleted` | bool; the tombstone |
//! | `fields` | map of the schema's fields |
//! | `attachments` | map from SHA-256 (hex) to `{name, size, content_type, town, added_at}`; absent until a file is attached |
//!
//! Long texts are Automerge Text objects and an update is applied as a
//! minimal splice ([`automerge::transaction::Transactable::update_text`]), so
//! two towns' concurrent edits to different parts of a text both survive a
//! merge; a rewrite of more than [`DIFF_LIMIT`] characters is spliced as
//! one piece instead (see [`update_text`]). Lists (tags, references, skills, metrics) are replaced as a whole
//! when they change. Every change carries a commit message naming the town
//! that made it and a short summary, and the time passed in by the caller.

use std::collections::BTreeMap;

use automerge::transaction::{CommitOptions, Transactable};
use automerge::{ActorId, AutoCommit, ObjId, ObjType, ROOT, ReadDoc, ScalarValue, Value};
use serde::{Deserialize, Serialize};
use serde_json::Map;

use crate::attachment::Attachment;
use crate::collection::Collection;
use crate::record::{Millis, RecordId, RecordView, format_time};
use crate::schema::FieldKind;
use crate::validate::{FieldValue, Fields, Patch, number_json};

/// The document format this code writes and reads.
pub const DOC_FORMAT: u64 = 1;

/// A document that does not have the shape of a Yui record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocError {
    #[error("document has no {0:?}")]
    Missing(&'static str),
    #[error("document is of format {0}; this node reads format {DOC_FORMAT}")]
    UnknownFormat(u64),
    #[error("document belongs to unknown collection {0:?}")]
    UnknownCollection(String),
    #[error("automerge: {0}")]
    Automerge(String),
}

impl From<automerge::AutomergeError> for DocError {
    fn from(e: automerge::AutomergeError) -> Self {
        DocError::Automerge(e.to_string())
    }
}

/// What a change's commit message says: who made it and what it did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeNote {
    pub town: String,
    pub summary: String,
}

impl ChangeNote {
    fn message(town: &str, summary: String) -> String {
        serde_json::to_string(&ChangeNote {
            town: town.to_owned(),
            summary,
        })
        .unwrap_or_default()
    }

    /// Reads a commit message; `None` for messages not written by Yui.
    pub fn parse(message: &str) -> Option<ChangeNote> {
        serde_json::from_str(message).ok()
    }
}

/// One entry of a record's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HistoryEntry {
    pub town: String,
    pub at: String,
    pub hash: String,
    pub summary: String,
}

/// Creates the document of a new record, committed as one change.
pub fn create(
    actor: ActorId,
    collection: Collection,
    id: &RecordId,
    town: &str,
    now: Millis,
    fields: &Fields,
) -> Result<AutoCommit, DocError> {
    let mut doc = AutoCommit::new().with_actor(actor);
    doc.put(ROOT, "format", ScalarValue::Uint(DOC_FORMAT))?;
    doc.put(ROOT, "id", id.as_str())?;
    doc.put(ROOT, "collection", collection.name())?;
    doc.put(ROOT, "town", town)?;
    doc.put(ROOT, "created_at", ScalarValue::Timestamp(now))?;
    doc.put(ROOT, "updated_at", ScalarValue::Timestamp(now))?;
    doc.put(ROOT, "deleted", false)?;
    let obj = doc.put_object(ROOT, "fields", ObjType::Map)?;
    for (name, value) in fields {
        put_value(&mut doc, &obj, name, value)?;
    }
    let names: Vec<&str> = fields.keys().copied().collect();
    doc.commit_with(
        CommitOptions::default()
            .with_message(ChangeNote::message(
                town,
                format!("created: {}", names.join(", ")),
            ))
            .with_time(now),
    );
    Ok(doc)
}

/// Applies an update. Returns the names of the fields that changed; when none
/// did, no change is committed.
/// The longest changed stretch of a text (old and new characters between
/// the common start and end, together) that an update diffs character by
/// character. Automerge's diff costs time in the product of the texts'
/// length and the number of differences: a 20,000-character text replaced
/// by another took seconds (a fuzzer's PATCH timed out behind it). A longer
/// stretch is replaced as one splice: the same text results, and concurrent
/// edits elsewhere in the text still merge; only edits inside the replaced
/// stretch are superseded, as they would mostly be by a rewrite anyway.
pub const DIFF_LIMIT: usize = 4_000;

/// Sets a Text object to `new` (see [`DIFF_LIMIT`]).
fn update_text(doc: &mut AutoCommit, text: &ObjId, new: &str) -> Result<(), DocError> {
    let old: Vec<char> = doc.text(text)?.chars().collect();
    let new_chars: Vec<char> = new.chars().collect();
    let prefix = old
        .iter()
        .zip(&new_chars)
        .take_while(|(a, b)| a == b)
        .count();
    let suffix = old[prefix..]
        .iter()
        .rev()
        .zip(new_chars[prefix..].iter().rev())
        .take_while(|(a, b)| a == b)
        .count();
    let (old_middle, new_middle) = (
        old.len() - prefix - suffix,
        new_chars.len() - prefix - suffix,
    );
    if old_middle + new_middle <= DIFF_LIMIT {
        doc.update_text(text, new)?;
    } else {
        let inserted: String = new_chars[prefix..prefix + new_middle].iter().collect();
        doc.splice_text(text, prefix, old_middle as isize, &inserted)?;
    }
    Ok(())
}

pub fn update(
    doc: &mut AutoCommit,
    collection: Collection,
    town: &str,
    now: Millis,
    patch: &Patch,
) -> Result<Vec<&'static str>, DocError> {
    let obj = fields_obj(doc)?;
    let mut changed = Vec::new();
    for (&name, value) in patch {
        let current = read_field(doc, &obj, collection, name);
        match value {
            None => {
                if current.is_some() {
                    doc.delete(&obj, name)?;
                    changed.push(name);
                }
            }
            Some(new) if current.as_ref() == Some(new) => {}
            Some(FieldValue::Text(new)) => {
                match doc.get(&obj, name)? {
                    Some((Value::Object(ObjType::Text), text)) => update_text(doc, &text, new)?,
                    _ => put_value(doc, &obj, name, &FieldValue::Text(new.clone()))?,
                }
                changed.push(name);
            }
            Some(new) => {
                put_value(doc, &obj, name, new)?;
                changed.push(name);
            }
        }
    }
    if !changed.is_empty() {
        doc.put(ROOT, "updated_at", ScalarValue::Timestamp(now))?;
        doc.commit_with(
            CommitOptions::default()
                .with_message(ChangeNote::message(
                    town,
                    format!("updated: {}", changed.join(", ")),
                ))
                .with_time(now),
        );
    }
    Ok(changed)
}

/// Marks the record deleted (a tombstone that syncs). The fields stay in the
/// document's history.
pub fn delete(doc: &mut AutoCommit, town: &str, now: Millis) -> Result<(), DocError> {
    doc.put(ROOT, "deleted", true)?;
    doc.put(ROOT, "updated_at", ScalarValue::Timestamp(now))?;
    doc.commit_with(
        CommitOptions::default()
            .with_message(ChangeNote::message(town, "deleted".to_owned()))
            .with_time(now),
    );
    Ok(())
}

/// The record as the API shows it. Fields the schema does not know, or whose
/// stored type does not match it, are left out rather than guessed at.
pub fn read(doc: &AutoCommit) -> Result<RecordView, DocError> {
    let format = match doc.get(ROOT, "format")? {
        Some((Value::Scalar(s), _)) => match s.as_ref() {
            ScalarValue::Uint(n) => *n,
            ScalarValue::Int(n) => u64::try_from(*n).unwrap_or(0),
            _ => 0,
        },
        _ => return Err(DocError::Missing("format")),
    };
    if format != DOC_FORMAT {
        return Err(DocError::UnknownFormat(format));
    }
    let id = root_str(doc, "id")?;
    let id: RecordId = id.parse().map_err(|_| DocError::Missing("id"))?;
    let collection_name = root_str(doc, "collection")?;
    let collection: Collection = collection_name
        .parse()
        .map_err(|_| DocError::UnknownCollection(collection_name.clone()))?;
    let town = root_str(doc, "town")?;
    let created_at = root_time(doc, "created_at")?;
    let updated_at = root_time(doc, "updated_at")?;
    let deleted = matches!(
        doc.get(ROOT, "deleted")?,
        Some((Value::Scalar(s), _)) if matches!(s.as_ref(), ScalarValue::Boolean(true))
    );
    let obj = fields_obj(doc)?;
    let mut fields = Map::new();
    for def in collection.fields() {
        if let Some(v) = read_field(doc, &obj, collection, def.name) {
            fields.insert(def.name.to_owned(), v.to_json());
        }
    }
    Ok(RecordView {
        id,
        collection: collection.name().to_owned(),
        town,
        created_at: format_time(created_at),
        updated_at: format_time(updated_at),
        deleted,
        fields,
        attachments: attachments(doc),
    })
}

/// The files a document names (protocol.md 5.4), sorted by name; entries
/// without the expected shape are left out (the gate refuses them).
pub fn attachments(doc: &AutoCommit) -> Vec<Attachment> {
    let Ok(Some((Value::Object(ObjType::Map), map))) = doc.get(ROOT, "attachments") else {
        return Vec::new();
    };
    let mut out: Vec<Attachment> = doc
        .keys(&map)
        .filter_map(|key| {
            let (value, entry) = doc.get(&map, key.as_str()).ok()??;
            if !matches!(value, Value::Object(ObjType::Map)) {
                return None;
            }
            let text = |k: &str| match doc.get(&entry, k).ok()?? {
                (Value::Scalar(s), _) => match s.as_ref() {
                    ScalarValue::Str(s) => Some(s.to_string()),
                    _ => None,
                },
                _ => None,
            };
            let size = match doc.get(&entry, "size").ok()?? {
                (Value::Scalar(s), _) => match s.as_ref() {
                    ScalarValue::Uint(n) => *n,
                    ScalarValue::Int(n) => u64::try_from(*n).ok()?,
                    _ => return None,
                },
                _ => return None,
            };
            let added_at = match doc.get(&entry, "added_at").ok()?? {
                (Value::Scalar(s), _) => match s.as_ref() {
                    ScalarValue::Timestamp(t) => format_time(*t),
                    _ => return None,
                },
                _ => return None,
            };
            Some(Attachment {
                sha256: key,
                name: text("name")?,
                size,
                content_type: text("content_type")?,
                town: text("town")?,
                added_at,
            })
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name).then(a.sha256.cmp(&b.sha256)));
    out
}

/// Names a file in the record (one change). Naming a file the record
/// already names (by hash) changes nothing and answers false.
pub fn add_attachment(
    doc: &mut AutoCommit,
    town: &str,
    now: Millis,
    a: &Attachment,
) -> Result<bool, DocError> {
    let map = match doc.get(ROOT, "attachments")? {
        Some((Value::Object(ObjType::Map), id)) => id,
        _ => doc.put_object(ROOT, "attachments", ObjType::Map)?,
    };
    if doc.get(&map, a.sha256.as_str())?.is_some() {
        return Ok(false);
    }
    let entry = doc.put_object(&map, a.sha256.as_str(), ObjType::Map)?;
    doc.put(&entry, "name", a.name.as_str())?;
    doc.put(&entry, "size", ScalarValue::Uint(a.size))?;
    doc.put(&entry, "content_type", a.content_type.as_str())?;
    doc.put(&entry, "town", town)?;
    doc.put(&entry, "added_at", ScalarValue::Timestamp(now))?;
    doc.put(ROOT, "updated_at", ScalarValue::Timestamp(now))?;
    doc.commit_with(
        CommitOptions::default()
            .with_message(ChangeNote::message(town, format!("attached: {}", a.name)))
            .with_time(now),
    );
    Ok(true)
}

/// Removes a file from the record (one change); false when the record does
/// not name it.
pub fn remove_attachment(
    doc: &mut AutoCommit,
    town: &str,
    now: Millis,
    sha256: &str,
) -> Result<bool, DocError> {
    let Some((Value::Object(ObjType::Map), map)) = doc.get(ROOT, "attachments")? else {
        return Ok(false);
    };
    let name = attachments(doc)
        .into_iter()
        .find(|a| a.sha256 == sha256)
        .map(|a| a.name);
    if doc.get(&map, sha256)?.is_none() {
        return Ok(false);
    }
    doc.delete(&map, sha256)?;
    doc.put(ROOT, "updated_at", ScalarValue::Timestamp(now))?;
    doc.commit_with(
        CommitOptions::default()
            .with_message(ChangeNote::message(
                town,
                format!(
                    "removed attachment: {}",
                    name.unwrap_or_else(|| sha256.to_owned())
                ),
            ))
            .with_time(now),
    );
    Ok(true)
}

/// The change history, oldest first, with the town and summary of each change.
pub fn history(doc: &mut AutoCommit) -> Vec<HistoryEntry> {
    crate::provenance::changes_after(doc, &[])
        .iter()
        .map(|c| {
            let note = c.message.as_deref().and_then(ChangeNote::parse);
            HistoryEntry {
                town: note.as_ref().map_or_else(String::new, |n| n.town.clone()),
                at: format_time(c.timestamp),
                hash: c.hash.to_string(),
                summary: note.map_or_else(
                    || c.message.as_deref().unwrap_or_default().to_owned(),
                    |n| n.summary,
                ),
            }
        })
        .collect()
}

/// Fields whose value is in conflict (concurrent writes in two towns), with
/// every competing value; the API's `fields` shows the one Automerge picked.
pub fn conflicts(doc: &AutoCommit) -> Result<BTreeMap<String, Vec<serde_json::Value>>, DocError> {
    let obj = fields_obj(doc)?;
    let mut out = BTreeMap::new();
    for key in doc.keys(&obj) {
        let values = doc.get_all(&obj, key.as_str())?;
        if values.len() > 1 {
            let shown = values
                .iter()
                .map(|(v, id)| match v {
                    Value::Scalar(s) => scalar_json(s),
                    Value::Object(ObjType::Text) => {
                        serde_json::Value::String(doc.text(id).unwrap_or_default())
                    }
                    Value::Object(_) => serde_json::Value::String("(list)".into()),
                })
                .collect();
            out.insert(key, shown);
        }
    }
    Ok(out)
}

fn scalar_json(s: &ScalarValue) -> serde_json::Value {
    match s {
        ScalarValue::Str(s) => serde_json::Value::String(s.to_string()),
        ScalarValue::Int(i) => (*i).into(),
        ScalarValue::Uint(u) => (*u).into(),
        ScalarValue::F64(f) => number_json(*f),
        ScalarValue::Boolean(b) => (*b).into(),
        ScalarValue::Timestamp(t) => format_time(*t).into(),
        _ => serde_json::Value::Null,
    }
}

fn fields_obj(doc: &AutoCommit) -> Result<ObjId, DocError> {
    match doc.get(ROOT, "fields")? {
        Some((Value::Object(ObjType::Map), id)) => Ok(id),
        _ => Err(DocError::Missing("fields")),
    }
}

fn root_str(doc: &AutoCommit, key: &'static str) -> Result<String, DocError> {
    match doc.get(ROOT, key)? {
        Some((Value::Scalar(s), _)) => match s.as_ref() {
            ScalarValue::Str(s) => Ok(s.to_string()),
            _ => Err(DocError::Missing(key)),
        },
        _ => Err(DocError::Missing(key)),
    }
}

fn root_time(doc: &AutoCommit, key: &'static str) -> Result<Millis, DocError> {
    match doc.get(ROOT, key)? {
        Some((Value::Scalar(s), _)) => match s.as_ref() {
            ScalarValue::Timestamp(t) | ScalarValue::Int(t) => Ok(*t),
            _ => Err(DocError::Missing(key)),
        },
        _ => Err(DocError::Missing(key)),
    }
}

fn put_value(
    doc: &mut AutoCommit,
    obj: &ObjId,
    name: &str,
    value: &FieldValue,
) -> Result<(), DocError> {
    match value {
        FieldValue::Str(s) => doc.put(obj, name, s.as_str())?,
        FieldValue::Text(s) => {
            let text = doc.put_object(obj, name, ObjType::Text)?;
            doc.splice_text(&text, 0, 0, s)?;
        }
        FieldValue::Int(i) => doc.put(obj, name, ScalarValue::Int(*i))?,
        FieldValue::Number(n) => doc.put(obj, name, ScalarValue::F64(*n))?,
        FieldValue::StrList(items) => {
            let list = doc.put_object(obj, name, ObjType::List)?;
            for (i, item) in items.iter().enumerate() {
                doc.insert(&list, i, item.as_str())?;
            }
        }
        FieldValue::Objects(objs) => {
            let list = doc.put_object(obj, name, ObjType::List)?;
            for (i, o) in objs.iter().enumerate() {
                let map = doc.insert_object(&list, i, ObjType::Map)?;
                for (k, v) in o {
                    put_value(doc, &map, k, v)?;
                }
            }
        }
    }
    Ok(())
}

fn read_scalar(doc: &AutoCommit, obj: &ObjId, name: &str, kind: &FieldKind) -> Option<FieldValue> {
    let (value, id) = doc.get(obj, name).ok()??;
    read_value(doc, &value, &id, kind)
}

fn read_value(
    doc: &AutoCommit,
    value: &Value<'_>,
    id: &ObjId,
    kind: &FieldKind,
) -> Option<FieldValue> {
    match (kind, value) {
        (
            FieldKind::Str { .. }
            | FieldKind::Email
            | FieldKind::Phone
            | FieldKind::Enum(_)
            | FieldKind::Date
            | FieldKind::Ref(_),
            Value::Scalar(s),
        ) => match s.as_ref() {
            ScalarValue::Str(s) => Some(FieldValue::Str(s.to_string())),
            _ => None,
        },
        (FieldKind::Text { .. }, Value::Object(ObjType::Text)) => {
            doc.text(id).ok().map(FieldValue::Text)
        }
        (FieldKind::Int { .. }, Value::Scalar(s)) => match s.as_ref() {
            ScalarValue::Int(i) => Some(FieldValue::Int(*i)),
            ScalarValue::Uint(u) => i64::try_from(*u).ok().map(FieldValue::Int),
            _ => None,
        },
        (FieldKind::Number { .. }, Value::Scalar(s)) => match s.as_ref() {
            ScalarValue::F64(f) => Some(FieldValue::Number(*f)),
            ScalarValue::Int(i) => Some(FieldValue::Number(*i as f64)),
            ScalarValue::Uint(u) => Some(FieldValue::Number(*u as f64)),
            _ => None,
        },
        (FieldKind::Refs { .. } | FieldKind::Tags { .. }, Value::Object(ObjType::List)) => {
            let items = list_items(doc, id)
                .filter_map(|(value, _)| match value {
                    Value::Scalar(s) => match s.as_ref() {
                        ScalarValue::Str(s) => Some(s.to_string()),
                        _ => None,
                    },
                    _ => None,
                })
                .collect();
            Some(FieldValue::StrList(items))
        }
        (FieldKind::Objects { fields, .. }, Value::Object(ObjType::List)) => {
            let mut out = Vec::new();
            for (value, map_id) in list_items(doc, id) {
                if let Value::Object(ObjType::Map) = value {
                    let mut o = BTreeMap::new();
                    for def in *fields {
                        if let Some(v) = read_scalar(doc, &map_id, def.name, &def.kind) {
                            o.insert(def.name, v);
                        }
                    }
                    out.push(o);
                }
            }
            Some(FieldValue::Objects(out))
        }
        _ => None,
    }
}

fn list_items<'a>(
    doc: &'a AutoCommit,
    list: &'a ObjId,
) -> impl Iterator<Item = (Value<'a>, ObjId)> + 'a {
    (0..doc.length(list)).filter_map(move |i| doc.get(list, i).ok().flatten())
}

fn read_field(
    doc: &AutoCommit,
    obj: &ObjId,
    collection: Collection,
    name: &str,
) -> Option<FieldValue> {
    let def = collection.field(name)?;
    read_scalar(doc, obj, name, &def.kind)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::{validate_create, validate_patch};
    use serde_json::json;

    fn actor(n: u8) -> ActorId {
        ActorId::from([n; 16].as_slice())
    }

    fn fields(c: Collection, v: serde_json::Value) -> Fields {
        validate_create(c, v.as_object().expect("object")).expect("valid")
    }

    fn patch(c: Collection, v: serde_json::Value) -> Patch {
        validate_patch(c, v.as_object().expect("object")).expect("valid")
    }

    const BODY: &str = "ワーカーの稼働状況を週次で確認する。\n顧客とのやりとりは記録に残す。\n研修は月に一度行う。";

    fn knowledge() -> (AutoCommit, RecordId) {
        let id = RecordId::generate(1_700_000_000_000, [7; 10]);
        let f = fields(
            Collection::Knowledge,
            json!({"title": "進め方", "body": BODY, "category": "worker_management", "tags": ["研修", "DX"]}),
        );
        let doc = create(
            actor(1),
            Collection::Knowledge,
            &id,
            "tateshina",
            1_700_000_000_000,
            &f,
        )
        .expect("create");
        (doc, id)
    }

    #[test]
    fn a_record_reads_back_as_it_was_written() {
        let (mut doc, id) = knowledge();
        let view = read(&doc).expect("read");
        assert_eq!(view.id, id);
        assert_eq!(view.town, "tateshina");
        assert!(!view.deleted);
        assert_eq!(view.fields["body"], json!(BODY));
        assert_eq!(view.fields["tags"], json!(["研修", "DX"]));
        let saved = doc.save();
        let loaded = AutoCommit::load(&saved).expect("load");
        assert_eq!(read(&loaded).expect("read"), view);
    }

    #[test]
    fn concurrent_edits_to_different_parts_of_a_text_both_survive_a_merge() {
        let (mut tateshina, _) = knowledge();
        let mut omachi = AutoCommit::load(&tateshina.save()).expect("load");
        omachi.set_actor(actor(2));

        // Each town replaces the whole body, as a PATCH does; each changes a
        // different line.
        let t_body = BODY.replace("週次で", "毎週月曜に");
        let o_body = BODY.replace("月に一度", "隔週で");
        update(
            &mut tateshina,
            Collection::Knowledge,
            "tateshina",
            1,
            &patch(Collection::Knowledge, json!({"body": t_body})),
        )
        .expect("update");
        update(
            &mut omachi,
            Collection::Knowledge,
            "omachi",
            2,
            &patch(Collection::Knowledge, json!({"body": o_body})),
        )
        .expect("update");

        tateshina.merge(&mut omachi).expect("merge");
        omachi.merge(&mut tateshina).expect("merge");
        let merged = read(&tateshina).expect("read").fields["body"].clone();
        assert_eq!(merged, read(&omachi).expect("read").fields["body"]);
        let merged = merged.as_str().expect("text").to_owned();
        assert!(merged.contains("毎週月曜に確認する"), "{merged}");
        assert!(merged.contains("研修は隔週で行う"), "{merged}");
        assert!(conflicts(&tateshina).expect("conflicts").is_empty());
    }

    /// A rewrite longer than DIFF_LIMIT is one splice of the changed
    /// stretch: the text reads as sent, and a concurrent edit at the other
    /// town outside that stretch still merges in.
    #[test]
    fn a_long_rewrite_is_one_splice_and_edits_outside_it_still_merge() {
        let (mut tateshina, _) = knowledge();
        let long_old = format!("冒頭。\n{}\n結び。", "0".repeat(19_000));
        update(
            &mut tateshina,
            Collection::Knowledge,
            "tateshina",
            1,
            &patch(Collection::Knowledge, json!({"body": long_old})),
        )
        .expect("update");
        let mut omachi = AutoCommit::load(&tateshina.save()).expect("load");
        omachi.set_actor(actor(2));
        let long_new = format!("冒頭。\n{}\n結び。", "内容を改訂した。".repeat(2_300));
        update(
            &mut tateshina,
            Collection::Knowledge,
            "tateshina",
            2,
            &patch(Collection::Knowledge, json!({"body": long_new})),
        )
        .expect("update");
        assert_eq!(
            read(&tateshina).expect("read").fields["body"],
            json!(long_new)
        );
        update(
            &mut omachi,
            Collection::Knowledge,
            "omachi",
            3,
            &patch(
                Collection::Knowledge,
                json!({"body": long_old.replace("結び。", "結びの言葉。")}),
            ),
        )
        .expect("update");
        tateshina.merge(&mut omachi).expect("merge");
        let merged = read(&tateshina).expect("read").fields["body"].clone();
        let merged = merged.as_str().expect("text");
        assert!(
            merged.ends_with("結びの言葉。"),
            "{}",
            &merged[merged.len() - 40..]
        );
        assert!(merged.contains("内容を改訂した。") && !merged.contains("00"));
    }

    #[test]
    fn concurrent_scalar_writes_show_as_a_conflict() {
        let (mut a, _) = knowledge();
        let mut b = AutoCommit::load(&a.save()).expect("load");
        b.set_actor(actor(2));
        update(
            &mut a,
            Collection::Knowledge,
            "tateshina",
            1,
            &patch(Collection::Knowledge, json!({"title": "A案"})),
        )
        .expect("update");
        update(
            &mut b,
            Collection::Knowledge,
            "omachi",
            2,
            &patch(Collection::Knowledge, json!({"title": "B案"})),
        )
        .expect("update");
        a.merge(&mut b).expect("merge");
        let c = conflicts(&a).expect("conflicts");
        let mut titles = c["title"].clone();
        titles.sort_by_key(|v| v.to_string());
        assert_eq!(titles, [json!("A案"), json!("B案")]);
    }

    #[test]
    fn an_update_that_changes_nothing_commits_nothing() {
        let (mut doc, _) = knowledge();
        let heads = doc.get_heads();
        let changed = update(
            &mut doc,
            Collection::Knowledge,
            "tateshina",
            5,
            &patch(
                Collection::Knowledge,
                json!({"title": "進め方", "body": BODY}),
            ),
        )
        .expect("update");
        assert!(changed.is_empty());
        assert_eq!(doc.get_heads(), heads);
    }

    #[test]
    fn history_names_the_town_of_each_change() {
        let (mut doc, _) = knowledge();
        let mut other = AutoCommit::load(&doc.save()).expect("load");
        other.set_actor(actor(3));
        update(
            &mut other,
            Collection::Knowledge,
            "itoigawa",
            1_700_000_100_000,
            &patch(Collection::Knowledge, json!({"tags": null})),
        )
        .expect("update");
        delete(&mut other, "itoigawa", 1_700_000_200_000).expect("delete");
        doc.merge(&mut other).expect("merge");
        let h = history(&mut doc);
        let got: Vec<_> = h
            .iter()
            .map(|e| (e.town.as_str(), e.summary.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("tateshina", "created: body, category, tags, title"),
                ("itoigawa", "updated: tags"),
                ("itoigawa", "deleted")
            ]
        );
        assert_eq!(h[1].at, "2023-11-14T22:15:00.000Z");
        assert_eq!(h[0].hash.len(), 64);
        let view = read(&doc).expect("read");
        assert!(view.deleted);
        assert!(!view.fields.contains_key("tags"));
    }

    #[test]
    fn attachments_are_added_removed_and_pass_the_gate() {
        let (mut doc, _) = knowledge();
        let a = Attachment {
            sha256: "ab".repeat(32),
            name: "報告書.pdf".into(),
            size: 1234,
            content_type: "application/pdf".into(),
            town: "tateshina".into(),
            added_at: "2023-11-14T22:13:20.000Z".into(),
        };
        assert!(add_attachment(&mut doc, "tateshina", 1_700_000_000_000, &a).expect("add"));
        assert!(!add_attachment(&mut doc, "tateshina", 1_700_000_000_001, &a).expect("again"));
        let view = read(&doc).expect("read");
        assert_eq!(view.attachments, std::slice::from_ref(&a));
        let mut loaded = AutoCommit::load(&doc.save()).expect("load");
        let admission = crate::gate::Admission::without_clock();
        crate::gate::admit(
            Collection::Knowledge,
            &mut loaded,
            &[],
            &view,
            &Default::default(),
            &admission,
        )
        .expect("a well-formed attachment passes the gate");
        // A hash that does not match its key is refused.
        let map = match doc.get(ROOT, "attachments").expect("get") {
            Some((_, id)) => id,
            None => panic!("attachments"),
        };
        let entry = match doc.get(&map, a.sha256.as_str()).expect("get") {
            Some((_, id)) => id,
            None => panic!("entry"),
        };
        doc.put(&entry, "content_type", "text/html").expect("put");
        let bad = read(&doc).expect("read");
        assert!(
            crate::gate::admit(
                Collection::Knowledge,
                &mut doc,
                &[],
                &bad,
                &Default::default(),
                &admission
            )
            .is_err()
        );
        doc.put(&entry, "content_type", "application/pdf")
            .expect("put");
        assert!(remove_attachment(&mut doc, "omachi", 1_700_000_000_002, &a.sha256).expect("rm"));
        assert!(read(&doc).expect("read").attachments.is_empty());
        let h = history(&mut doc);
        assert_eq!(
            h.last().map(|e| e.summary.as_str()),
            Some("removed attachment: 報告書.pdf")
        );
    }

    #[test]
    fn objects_round_trip() {
        let id = RecordId::generate(1, [1; 10]);
        let f = fields(
            Collection::Workers,
            json!({"name": "山田 花子", "status": "active", "hours_per_week": 12.5,
                   "skills": [{"skill": "Excel", "level": 3, "assessed_on": "2024-05-01"}]}),
        );
        let doc = create(actor(1), Collection::Workers, &id, "tateshina", 1, &f).expect("create");
        let view = read(&doc).expect("read");
        assert_eq!(view.fields["hours_per_week"], json!(12.5));
        assert_eq!(
            view.fields["skills"],
            json!([{"skill": "Excel", "level": 3, "assessed_on": "2024-05-01"}])
        );
    }
}
