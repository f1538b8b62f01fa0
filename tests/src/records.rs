//! Records the tests write: a knowledge record's fields as JSON for the API
//! and, validated, for a store written in-process; a record's id as the API
//! returns it.

use serde_json::Value;
use yui_protocol::Collection;
use yui_protocol::validate::Fields;

/// The fields of a knowledge record, for the API.
pub fn knowledge(title: &str) -> Value {
    serde_json::json!({
        "title": title,
        "body": "住民ワーカーの研修は月に一度。顧客とのやりとりは記録に残す。",
        "category": "worker_management",
        "tags": ["研修"]
    })
}

/// The fields of a knowledge record in category `training`, validated, for
/// `Store::create`.
pub fn knowledge_fields(title: &str) -> Fields {
    validated(
        Collection::Knowledge,
        serde_json::json!({
            "title": title,
            "body": "住民ワーカーの研修は月に一度。顧客とのやりとりは記録に残す。",
            "category": "training",
            "tags": ["研修"]
        }),
    )
}

/// `fields` validated as a new record of `collection` (they must be
/// valid), for `Store::create` or a document.
pub fn validated(collection: Collection, fields: Value) -> Fields {
    yui_protocol::validate::validate_create(collection, fields.as_object().expect("object"))
        .expect("valid")
}

/// The `id` of a record as the API returns it.
pub fn id_of(record: &Value) -> String {
    record["id"].as_str().expect("record id").to_owned()
}
