//! Checks a record's JSON fields against its collection's schema and turns
//! them into typed values.
//!
//! Every problem is reported, not just the first, each with the field, a
//! stable snake_case code and an English message; the console translates by
//! code. Nothing here trusts the input: sizes are checked before anything is
//! copied.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::collection::Collection;
use crate::record::RecordId;
use crate::schema::{FieldDef, FieldKind, MAX_RECORD_BYTES};

/// A validated field value, shaped for the Automerge mapping.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    /// Str, Email, Phone, Enum, Date and Ref values.
    Str(String),
    /// Long text (Automerge Text).
    Text(String),
    Int(i64),
    Number(f64),
    /// Tags and Refs.
    StrList(Vec<String>),
    /// Skills, metrics.
    Objects(Vec<BTreeMap<&'static str, FieldValue>>),
}

impl FieldValue {
    /// The JSON form of the value, as the API shows it.
    pub fn to_json(&self) -> Value {
        match self {
            FieldValue::Str(s) | FieldValue::Text(s) => Value::String(s.clone()),
            FieldValue::Int(i) => Value::from(*i),
            FieldValue::Number(n) => number_json(*n),
            FieldValue::StrList(items) => {
                Value::Array(items.iter().cloned().map(Value::String).collect())
            }
            FieldValue::Objects(objs) => Value::Array(
                objs.iter()
                    .map(|o| {
                        Value::Object(
                            o.iter()
                                .map(|(k, v)| ((*k).to_owned(), v.to_json()))
                                .collect(),
                        )
                    })
                    .collect(),
            ),
        }
    }
}

/// Whole numbers print without a fraction (`3`, not `3.0`).
pub(crate) fn number_json(n: f64) -> Value {
    if n.fract() == 0.0 && n.abs() < 9e15 {
        Value::from(n as i64)
    } else {
        serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number)
    }
}

/// Fields of a new record: every required field is present.
pub type Fields = BTreeMap<&'static str, FieldValue>;
/// Fields of an update: `None` removes an optional field.
pub type Patch = BTreeMap<&'static str, Option<FieldValue>>;

/// One problem with one field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: String,
    /// Stable: `unknown_field`, `missing_field`, `invalid_type`,
    /// `invalid_enum`, `too_long`, `too_many_items`, `out_of_range`,
    /// `invalid_date`, `invalid_format`, `invalid_character`,
    /// `invalid_reference`, `record_too_large`, `invalid_order`.
    pub code: &'static str,
    pub message: String,
}

/// All the problems found in one request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", summary(.0))]
pub struct ValidationErrors(pub Vec<FieldError>);

fn summary(errors: &[FieldError]) -> String {
    let mut s = errors
        .iter()
        .take(3)
        .map(|e| format!("{}: {}", e.field, e.message))
        .collect::<Vec<_>>()
        .join("; ");
    if errors.len() > 3 {
        s.push_str(&format!(" (and {} more)", errors.len() - 3));
    }
    s
}

fn err(field: &str, code: &'static str, message: impl Into<String>) -> FieldError {
    FieldError {
        field: field.to_owned(),
        code,
        message: message.into(),
    }
}

/// Validates the fields of a new record.
pub fn validate_create(
    collection: Collection,
    input: &Map<String, Value>,
) -> Result<Fields, ValidationErrors> {
    let mut errors = Vec::new();
    check_record_size(input, &mut errors);
    let mut fields = Fields::new();
    for (name, value) in input {
        match collection.field(name) {
            None => errors.push(unknown_field(collection, name)),
            Some(def) if value.is_null() => {
                if def.required {
                    errors.push(err(name, "missing_field", "is required and cannot be null"));
                }
            }
            Some(def) => match check_value(name, def, value) {
                Ok(v) => {
                    fields.insert(def.name, v);
                }
                Err(e) => errors.extend(e),
            },
        }
    }
    for def in collection.fields() {
        if def.required && !input.contains_key(def.name) {
            errors.push(err(def.name, "missing_field", "is required"));
        }
    }
    check_cross_fields(collection, |name| fields.get(name), &mut errors);
    if errors.is_empty() {
        Ok(fields)
    } else {
        Err(ValidationErrors(errors))
    }
}

/// Validates the fields of an update. Only the fields given change; `null`
/// removes an optional field. Record-level rules (size, order of dates) are
/// checked again by the caller on the merged record with [`check_merged`].
pub fn validate_patch(
    collection: Collection,
    input: &Map<String, Value>,
) -> Result<Patch, ValidationErrors> {
    let mut errors = Vec::new();
    check_record_size(input, &mut errors);
    let mut patch = Patch::new();
    for (name, value) in input {
        match collection.field(name) {
            None => errors.push(unknown_field(collection, name)),
            Some(def) if value.is_null() => {
                if def.required {
                    errors.push(err(
                        name,
                        "missing_field",
                        "is required and cannot be removed",
                    ));
                } else {
                    patch.insert(def.name, None);
                }
            }
            Some(def) => match check_value(name, def, value) {
                Ok(v) => {
                    patch.insert(def.name, Some(v));
                }
                Err(e) => errors.extend(e),
            },
        }
    }
    if errors.is_empty() {
        Ok(patch)
    } else {
        Err(ValidationErrors(errors))
    }
}

/// Record-level rules on a whole record's fields (after a merge or update).
pub fn check_merged(
    collection: Collection,
    fields: &Map<String, Value>,
) -> Result<(), ValidationErrors> {
    let mut errors = Vec::new();
    check_record_size(fields, &mut errors);
    let typed: Fields = fields
        .iter()
        .filter_map(|(k, v)| {
            let def = collection.field(k)?;
            Some((def.name, check_value(k, def, v).ok()?))
        })
        .collect();
    check_cross_fields(collection, |name| typed.get(name), &mut errors);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ValidationErrors(errors))
    }
}

/// The record ids a set of fields points at, with the collection each must be in.
pub fn references<'a>(
    collection: Collection,
    values: impl IntoIterator<Item = (&'a &'static str, &'a FieldValue)>,
) -> Vec<(&'static str, Collection, String)> {
    let mut out = Vec::new();
    for (name, value) in values {
        let Some(def) = collection.field(name) else {
            continue;
        };
        match (def.kind, value) {
            (FieldKind::Ref(to), FieldValue::Str(id)) => out.push((def.name, to, id.clone())),
            (FieldKind::Refs { to, .. }, FieldValue::StrList(ids)) => {
                out.extend(ids.iter().map(|id| (def.name, to, id.clone())));
            }
            _ => {}
        }
    }
    out
}

fn unknown_field(collection: Collection, name: &str) -> FieldError {
    let known: Vec<_> = collection.fields().iter().map(|f| f.name).collect();
    err(
        name,
        "unknown_field",
        format!(
            "is not a field of {collection} (fields: {})",
            known.join(", ")
        ),
    )
}

fn check_record_size(input: &Map<String, Value>, errors: &mut Vec<FieldError>) {
    // Measured as compact JSON, the way the record travels.
    let size = serde_json::to_vec(input).map_or(usize::MAX, |v| v.len());
    if size > MAX_RECORD_BYTES {
        errors.push(err(
            "*",
            "record_too_large",
            format!("the record's fields take {size} bytes; the limit is {MAX_RECORD_BYTES}"),
        ));
    }
}

fn check_cross_fields<'a>(
    collection: Collection,
    get: impl Fn(&str) -> Option<&'a FieldValue>,
    errors: &mut Vec<FieldError>,
) {
    if collection == Collection::PilotResults
        && let (Some(FieldValue::Str(start)), Some(FieldValue::Str(end))) =
            (get("period_start"), get("period_end"))
        && end < start
    {
        // Dates are validated as YYYY-MM-DD, so text order is date order.
        errors.push(err(
            "period_end",
            "invalid_order",
            format!("{end} is before period_start {start}"),
        ));
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn expect_str<'v>(name: &str, v: &'v Value, what: &str) -> Result<&'v str, FieldError> {
    v.as_str().ok_or_else(|| {
        err(
            name,
            "invalid_type",
            format!("must be {what}, not {}", type_name(v)),
        )
    })
}

fn check_len(name: &str, s: &str, max_chars: usize) -> Result<(), FieldError> {
    // Bytes bound characters from above: skip the count for short strings.
    if s.len() > max_chars {
        let n = s.chars().count();
        if n > max_chars {
            return Err(err(
                name,
                "too_long",
                format!("is {n} characters long; the limit is {max_chars}"),
            ));
        }
    }
    Ok(())
}

/// Whether a one-line field refuses `c`: a control character (C0, DEL, C1),
/// a line or paragraph separator, or a bidirectional formatting character
/// (marks, embeddings, overrides, isolates). A terminal obeys the first
/// kind, and the last reorders what a title shows (U+202E makes
/// `txt.exe` read as `exe.txt`), so neither belongs in a name or a title.
pub fn refused_in_line(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}'
                | '\u{2029}'
                | '\u{061C}'
                | '\u{200E}'
                | '\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2066}'..='\u{2069}'
        )
}

/// Whether a long text refuses `c`: a control character other than a line
/// break or a tab.
pub fn refused_in_text(c: char) -> bool {
    c.is_control() && c != '\n' && c != '\t'
}

fn check_chars(
    name: &str,
    s: &str,
    refused: fn(char) -> bool,
    what: &str,
) -> Result<(), FieldError> {
    match s.chars().enumerate().find(|(_, c)| refused(*c)) {
        None => Ok(()),
        Some((at, c)) => {
            let kind = if c.is_control() {
                "a control character"
            } else if matches!(c, '\u{2028}' | '\u{2029}') {
                "a line separator"
            } else {
                "a text direction character"
            };
            Err(err(
                name,
                "invalid_character",
                format!(
                    "contains U+{:04X} ({kind}) at character {}; {what}",
                    u32::from(c),
                    at + 1
                ),
            ))
        }
    }
}

fn check_line(name: &str, s: &str) -> Result<(), FieldError> {
    check_chars(
        name,
        s,
        refused_in_line,
        "a one-line field takes no control or text direction characters",
    )
}

fn check_value(name: &str, def: &FieldDef, v: &Value) -> Result<FieldValue, Vec<FieldError>> {
    check_kind(name, &def.kind, v)
}

fn check_kind(name: &str, kind: &FieldKind, v: &Value) -> Result<FieldValue, Vec<FieldError>> {
    let one = |e: FieldError| vec![e];
    match *kind {
        FieldKind::Str { max_chars } => {
            let s = expect_str(name, v, "a string").map_err(one)?;
            check_len(name, s, max_chars).map_err(one)?;
            if s.contains(['\n', '\r']) {
                return Err(one(err(name, "invalid_format", "must be a single line")));
            }
            check_line(name, s).map_err(one)?;
            Ok(FieldValue::Str(s.trim().to_owned()))
        }
        FieldKind::Email => {
            // The limit counts what was sent, as for every string.
            let s = expect_str(name, v, "a string").map_err(one)?;
            check_len(name, s, 254).map_err(one)?;
            let s = s.trim();
            check_line(name, s).map_err(one)?;
            let valid = s.split_once('@').is_some_and(|(local, domain)| {
                !local.is_empty()
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
                    && !s.contains(char::is_whitespace)
                    && !domain.contains('@')
            });
            if !valid {
                return Err(one(err(
                    name,
                    "invalid_format",
                    "must be an e-mail address like name@example.jp",
                )));
            }
            Ok(FieldValue::Str(s.to_owned()))
        }
        FieldKind::Phone => {
            let s = expect_str(name, v, "a string").map_err(one)?;
            check_len(name, s, 32).map_err(one)?;
            let s = s.trim();
            let digits = s.chars().filter(char::is_ascii_digit).count();
            let allowed = s
                .chars()
                .all(|c| c.is_ascii_digit() || matches!(c, '-' | '+' | ' ' | '(' | ')'));
            if !allowed || digits < 6 {
                return Err(one(err(
                    name,
                    "invalid_format",
                    "must be a phone number of digits, '-', '+', spaces or parentheses, e.g. 0267-00-0000",
                )));
            }
            Ok(FieldValue::Str(s.to_owned()))
        }
        FieldKind::Text { max_chars } => {
            let s = expect_str(name, v, "a string").map_err(one)?;
            check_len(name, s, max_chars).map_err(one)?;
            // One line-ending convention, so a text edited on Windows and on
            // Linux diffs by what changed, not by every line.
            let s = s.replace("\r\n", "\n").replace('\r', "\n");
            check_chars(
                name,
                &s,
                refused_in_text,
                "a text takes line breaks and tabs but no other control characters",
            )
            .map_err(one)?;
            Ok(FieldValue::Text(s))
        }
        FieldKind::Enum(options) => {
            let s = expect_str(name, v, "a string").map_err(one)?;
            if options.iter().any(|o| o.value == s) {
                Ok(FieldValue::Str(s.to_owned()))
            } else {
                let allowed: Vec<_> = options.iter().map(|o| o.value).collect();
                let shown: String = s.chars().take(40).collect();
                Err(one(err(
                    name,
                    "invalid_enum",
                    format!("{shown:?} is not one of: {}", allowed.join(", ")),
                )))
            }
        }
        FieldKind::Int { min, max } => {
            // JSON has one kind of number: 3.0 is the whole number 3 (as
            // JSON Schema's "integer" says), however a client wrote it.
            let whole = v
                .as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9e15)
                .map(|f| f as i64);
            let n = v.as_i64().or(whole).ok_or_else(|| {
                let what = if v.is_number() {
                    "a whole number".to_owned()
                } else {
                    format!("a whole number, not {}", type_name(v))
                };
                one(err(name, "invalid_type", format!("must be {what}")))
            })?;
            if n < min || n > max {
                return Err(one(err(
                    name,
                    "out_of_range",
                    format!("{n} is outside {min}..={max}"),
                )));
            }
            Ok(FieldValue::Int(n))
        }
        FieldKind::Number { min, max } => {
            let n = v.as_f64().ok_or_else(|| {
                one(err(
                    name,
                    "invalid_type",
                    format!("must be a number, not {}", type_name(v)),
                ))
            })?;
            if !n.is_finite() || n < min || n > max {
                return Err(one(err(
                    name,
                    "out_of_range",
                    format!("{n} is outside {min}..={max}"),
                )));
            }
            Ok(FieldValue::Number(n))
        }
        FieldKind::Date => {
            let s = expect_str(name, v, "a date string (YYYY-MM-DD)").map_err(one)?;
            let format = time::macros::format_description!("[year]-[month]-[day]");
            if s.len() != 10 || time::Date::parse(s, &format).is_err() {
                let shown: String = s.chars().take(40).collect();
                return Err(one(err(
                    name,
                    "invalid_date",
                    format!("{shown:?} is not a date in the form YYYY-MM-DD"),
                )));
            }
            Ok(FieldValue::Str(s.to_owned()))
        }
        FieldKind::Ref(to) => {
            let s = expect_str(name, v, "a record id").map_err(one)?;
            check_ref(name, to, s).map_err(one)?;
            Ok(FieldValue::Str(s.to_owned()))
        }
        FieldKind::Refs { to, max_items } => {
            let items = v.as_array().ok_or_else(|| {
                one(err(
                    name,
                    "invalid_type",
                    format!("must be an array of record ids, not {}", type_name(v)),
                ))
            })?;
            check_items(name, items.len(), max_items).map_err(one)?;
            let mut out = Vec::with_capacity(items.len());
            let mut errors = Vec::new();
            for (i, item) in items.iter().enumerate() {
                let at = format!("{name}[{i}]");
                match expect_str(&at, item, "a record id").and_then(|s| {
                    check_ref(&at, to, s)?;
                    Ok(s)
                }) {
                    Ok(s) => out.push(s.to_owned()),
                    Err(e) => errors.push(e),
                }
            }
            if errors.is_empty() {
                Ok(FieldValue::StrList(out))
            } else {
                Err(errors)
            }
        }
        FieldKind::Tags {
            max_items,
            max_chars,
        } => {
            let items = v.as_array().ok_or_else(|| {
                one(err(
                    name,
                    "invalid_type",
                    format!("must be an array of strings, not {}", type_name(v)),
                ))
            })?;
            check_items(name, items.len(), max_items).map_err(one)?;
            let mut out = Vec::with_capacity(items.len());
            let mut errors = Vec::new();
            for (i, item) in items.iter().enumerate() {
                let at = format!("{name}[{i}]");
                match expect_str(&at, item, "a string")
                    .and_then(|s| check_len(&at, s, max_chars).map(|()| s))
                    .and_then(|s| check_line(&at, s).map(|()| s))
                {
                    Ok(s) => out.push(s.trim().to_owned()),
                    Err(e) => errors.push(e),
                }
            }
            if errors.is_empty() {
                Ok(FieldValue::StrList(out))
            } else {
                Err(errors)
            }
        }
        FieldKind::Objects { fields, max_items } => {
            let items = v.as_array().ok_or_else(|| {
                one(err(
                    name,
                    "invalid_type",
                    format!("must be an array of objects, not {}", type_name(v)),
                ))
            })?;
            check_items(name, items.len(), max_items).map_err(one)?;
            let mut out = Vec::with_capacity(items.len());
            let mut errors = Vec::new();
            for (i, item) in items.iter().enumerate() {
                let at = format!("{name}[{i}]");
                let Some(obj) = item.as_object() else {
                    errors.push(err(
                        &at,
                        "invalid_type",
                        format!("must be an object, not {}", type_name(item)),
                    ));
                    continue;
                };
                let mut typed = BTreeMap::new();
                for (k, sub) in obj {
                    let sub_at = format!("{at}.{k}");
                    match fields.iter().find(|f| f.name == k) {
                        None => {
                            let known: Vec<_> = fields.iter().map(|f| f.name).collect();
                            errors.push(err(
                                &sub_at,
                                "unknown_field",
                                format!("is not a field here (fields: {})", known.join(", ")),
                            ));
                        }
                        Some(def) if sub.is_null() => {
                            if def.required {
                                errors.push(err(&sub_at, "missing_field", "is required"));
                            }
                        }
                        Some(def) => match check_kind(&sub_at, &def.kind, sub) {
                            Ok(v) => {
                                typed.insert(def.name, v);
                            }
                            Err(e) => errors.extend(e),
                        },
                    }
                }
                for def in fields {
                    if def.required && !obj.contains_key(def.name) {
                        errors.push(err(
                            &format!("{at}.{}", def.name),
                            "missing_field",
                            "is required",
                        ));
                    }
                }
                out.push(typed);
            }
            if errors.is_empty() {
                Ok(FieldValue::Objects(out))
            } else {
                Err(errors)
            }
        }
    }
}

fn check_items(name: &str, n: usize, max: usize) -> Result<(), FieldError> {
    if n > max {
        Err(err(
            name,
            "too_many_items",
            format!("has {n} items; the limit is {max}"),
        ))
    } else {
        Ok(())
    }
}

fn check_ref(name: &str, to: Collection, s: &str) -> Result<(), FieldError> {
    s.parse::<RecordId>().map(|_| ()).map_err(|_| {
        let shown: String = s.chars().take(40).collect();
        err(
            name,
            "invalid_reference",
            format!("{shown:?} is not the id of a {to} record"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    fn codes(e: &ValidationErrors) -> Vec<(&str, &str)> {
        e.0.iter().map(|e| (e.field.as_str(), e.code)).collect()
    }

    #[test]
    fn a_valid_knowledge_record_passes() {
        let f = validate_create(
            Collection::Knowledge,
            &obj(json!({"title": " 研修の進め方 ", "body": "本文\r\n二行目", "category": "training", "tags": ["研修"]})),
        )
        .expect("valid");
        assert_eq!(f["title"], FieldValue::Str("研修の進め方".into()));
        assert_eq!(f["body"], FieldValue::Text("本文\n二行目".into()));
    }

    #[test]
    fn every_problem_is_reported_with_a_stable_code() {
        let e = validate_create(
            Collection::Knowledge,
            &obj(json!({"titel": "x", "body": 5, "category": "gossip", "tags": "a"})),
        )
        .unwrap_err();
        let mut got = codes(&e);
        got.sort_unstable();
        assert_eq!(
            got,
            [
                ("body", "invalid_type"),
                ("category", "invalid_enum"),
                ("tags", "invalid_type"),
                ("titel", "unknown_field"),
                ("title", "missing_field"),
            ]
        );
    }

    #[test]
    fn limits_are_enforced() {
        let long = "あ".repeat(201);
        let e = validate_create(
            Collection::Knowledge,
            &obj(json!({"title": long, "body": "x", "category": "pr"})),
        )
        .unwrap_err();
        assert_eq!(codes(&e), [("title", "too_long")]);

        let huge = "x".repeat(MAX_RECORD_BYTES);
        let e = validate_patch(Collection::Knowledge, &obj(json!({"body": huge}))).unwrap_err();
        assert!(codes(&e).contains(&("*", "record_too_large")));

        let e = validate_create(
            Collection::Workers,
            &obj(json!({"name": "山田", "status": "active", "skills": [{"skill": "Excel", "level": 9}]})),
        )
        .unwrap_err();
        assert_eq!(codes(&e), [("skills[0].level", "out_of_range")]);
    }

    #[test]
    fn one_line_fields_refuse_control_and_direction_characters() {
        let knowledge = |title: &str, body: &str| {
            validate_create(
                Collection::Knowledge,
                &obj(json!({"title": title, "body": body, "category": "pr", "tags": ["ok"]})),
            )
        };
        for (title, what) in [
            (
                "ヌル\u{0}文字",
                "U+0000 (a control character) at character 3",
            ),
            (
                "\u{1b}[31m赤い題",
                "U+001B (a control character) at character 1",
            ),
            (
                "txt.\u{202e}exe",
                "U+202E (a text direction character) at character 5",
            ),
            ("C1\u{85}", "U+0085 (a control character)"),
            ("tab\tin title", "U+0009 (a control character)"),
            ("isolate\u{2067}", "U+2067 (a text direction character)"),
            ("sep\u{2028}", "U+2028 (a line separator)"),
        ] {
            let e = knowledge(title, "本文").unwrap_err();
            assert_eq!(codes(&e), [("title", "invalid_character")], "{title:?}");
            assert!(
                e.0[0].message.contains(what),
                "{title:?}: {}",
                e.0[0].message
            );
        }
        // Line breaks keep their own error.
        let e = knowledge("two\nlines", "本文").unwrap_err();
        assert_eq!(codes(&e), [("title", "invalid_format")]);
        // Tags, sub-fields and e-mail addresses are one-line too.
        let e = validate_create(
            Collection::Knowledge,
            &obj(json!({"title": "t", "body": "b", "category": "pr", "tags": ["a\u{202e}b"]})),
        )
        .unwrap_err();
        assert_eq!(codes(&e), [("tags[0]", "invalid_character")]);
        let e = validate_create(
            Collection::Workers,
            &obj(
                json!({"name": "山田", "status": "active", "email": "a\u{0}b@example.jp",
                        "skills": [{"skill": "Ex\u{1b}cel", "level": 3}]}),
            ),
        )
        .unwrap_err();
        assert_eq!(
            codes(&e),
            [
                ("email", "invalid_character"),
                ("skills[0].skill", "invalid_character")
            ]
        );
        // Joiners and ordinary scripts are text, not controls.
        assert!(knowledge("👩\u{200d}💻 テレワーク عربي", "本文").is_ok());

        // A long text keeps line breaks and tabs, and nothing else of the kind.
        let ok = knowledge("題", "一行目\r\n\t二行目\r三行目").expect("valid");
        assert_eq!(
            ok.get("body"),
            Some(&FieldValue::Text("一行目\n\t二行目\n三行目".into()))
        );
        let e = knowledge("題", "本文\u{1b}[2J").unwrap_err();
        assert_eq!(codes(&e), [("body", "invalid_character")]);
        assert!(
            e.0[0].message.contains("line breaks and tabs"),
            "{}",
            e.0[0].message
        );
    }

    #[test]
    fn dates_references_and_formats() {
        let e = validate_create(
            Collection::PilotResults,
            &obj(json!({"title": "WORK TRIP", "status": "completed",
                "period_start": "2024-10-01", "period_end": "2024-09-30"})),
        )
        .unwrap_err();
        assert_eq!(codes(&e), [("period_end", "invalid_order")]);

        let e = validate_create(
            Collection::Mentoring,
            &obj(json!({"mentor": "nope", "mentee": "01arz3ndektsv4rrffq69g5fav", "held_on": "2024-02-30"})),
        )
        .unwrap_err();
        assert_eq!(
            codes(&e),
            [("held_on", "invalid_date"), ("mentor", "invalid_reference")]
        );

        let e = validate_create(
            Collection::Customers,
            &obj(json!({"organisation": "A社", "stage": "active", "email": "a@b", "phone": "call me"})),
        )
        .unwrap_err();
        assert_eq!(
            codes(&e),
            [("email", "invalid_format"), ("phone", "invalid_format")]
        );
    }

    #[test]
    fn patch_removes_optional_fields_but_not_required_ones() {
        let p = validate_patch(Collection::Knowledge, &obj(json!({"tags": null}))).expect("ok");
        assert_eq!(p["tags"], None);
        let e = validate_patch(Collection::Knowledge, &obj(json!({"title": null}))).unwrap_err();
        assert_eq!(codes(&e), [("title", "missing_field")]);
    }
}
