//! The record routes in the OpenAPI document: for every collection of
//! `Collection::ALL`, its own paths (`/api/v1/records/knowledge`, …) with
//! request and response schemas generated from the collection's field table
//! in `yui_protocol::schema`, so that a request the document calls valid is
//! one the node accepts, and an answer the node gives is one the document
//! describes. The router serves them all with one generic route
//! (`/records/{collection}`); the document spells each collection out, as
//! a client needs to know which fields go where.

use serde_json::{Map, Value, json};
use yui_protocol::Collection;
use yui_protocol::schema::{FieldDef, FieldKind, MAX_RECORD_BYTES};

use super::{answers, error};
use crate::http::MAX_PAGE;
use crate::records::MIN_OVERRIDE_REASON_CHARS;

/// What `protocol::validate::refused_in_line` refuses, as a character
/// class body: controls (C0, DEL, C1), line and paragraph separators and
/// text direction characters.
const NOT_IN_LINE: &str =
    "\\u0000-\\u001f\\u007f-\\u009f\\u061c\\u200e\\u200f\\u2028-\\u202e\\u2066-\\u2069";
/// White space as Rust's `str::trim` removes it (Unicode White_Space).
pub(crate) const WHITE_SPACE: &str =
    "\\t-\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000";
/// A record id (`yui_protocol::RecordId`): 26 lowercase Crockford base32
/// characters, the first at most 7.
pub(super) const RECORD_ID: &str = "^[0-7][0-9a-hjkmnp-tv-z]{25}$";

fn one_line() -> String {
    format!("^[^{NOT_IN_LINE}]*$")
}

/// What `protocol::validate` accepts as an e-mail address: surrounding
/// white space (trimmed), then one `@` between a non-empty local part and a
/// domain with a dot inside it, and no white space, control or text
/// direction character.
fn email() -> String {
    let c = format!("[^@{WHITE_SPACE}{NOT_IN_LINE}]");
    let d = format!("[^@.{WHITE_SPACE}{NOT_IN_LINE}]");
    format!(
        "^[{WHITE_SPACE}]*{c}+@{d}[^@{WHITE_SPACE}{NOT_IN_LINE}]*\\.[^@{WHITE_SPACE}{NOT_IN_LINE}]*{d}[{WHITE_SPACE}]*$"
    )
}

/// A phone number: digits, `+`, `-`, spaces and parentheses, at least six
/// digits, with surrounding white space trimmed.
fn phone() -> String {
    format!("^[{WHITE_SPACE}]*[-+() ]*(?:[0-9][-+() ]*){{6,}}[{WHITE_SPACE}]*$")
}

/// Where a schema is used: what a client sends (optional fields may be
/// null, meaning absent), or what the node stores and answers.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Request,
    Answer,
}

fn kind_schema(kind: &FieldKind, side: Side) -> Value {
    match *kind {
        FieldKind::Str { max_chars } => json!({"type": "string", "maxLength": max_chars,
            "pattern": one_line(),
            "description": "One line: no line breaks (refused as invalid_format), control characters (C0, DEL, C1) or text direction characters (U+061C, U+200E, U+200F, U+202A–U+202E, U+2066–U+2069, U+2028, U+2029; refused as invalid_character). Stored without surrounding white space."}),
        FieldKind::Email => json!({"type": "string", "maxLength": 254, "pattern": email(),
            "description": "An e-mail address like name@example.jp (stored without surrounding white space)."}),
        FieldKind::Phone => json!({"type": "string", "maxLength": 32, "pattern": phone(),
            "description": "A phone number: at least six digits, with +, -, spaces and parentheses (stored without surrounding white space)."}),
        FieldKind::Text { max_chars } => json!({"type": "string", "maxLength": max_chars,
            "pattern": "^[^\\u0000-\\u0008\\u000b\\u000c\\u000e-\\u001f\\u007f-\\u009f]*$",
            "description": "Long text (Automerge Text): an update is merged as a character diff. Line breaks (CR LF and CR are stored as LF) and tabs are its only control characters; others are refused as invalid_character."}),
        FieldKind::Enum(options) => json!({"type": "string",
            "enum": options.iter().map(|o| o.value).collect::<Vec<_>>(),
            "description": options.iter().map(|o| format!("{}: {} / {}", o.value, o.ja, o.en)).collect::<Vec<_>>().join("; ")}),
        FieldKind::Int { min, max } => json!({"type": "integer", "minimum": min, "maximum": max}),
        FieldKind::Number { min, max } => json!({"type": "number", "minimum": min, "maximum": max}),
        FieldKind::Date => json!({"type": "string", "format": "date",
            "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$", "description": "YYYY-MM-DD"}),
        FieldKind::Ref(to) => reference(to, side),
        FieldKind::Refs { to, max_items } => json!({"type": "array", "maxItems": max_items,
            "items": reference(to, side)}),
        FieldKind::Tags {
            max_items,
            max_chars,
        } => json!({"type": "array", "maxItems": max_items,
            "items": {"type": "string", "maxLength": max_chars, "pattern": one_line()}}),
        FieldKind::Objects { fields, max_items } => json!({"type": "array", "maxItems": max_items,
            "items": fields_schema(fields, side, true)}),
    }
}

fn reference(to: Collection, side: Side) -> Value {
    let mut s = json!({"type": "string", "pattern": RECORD_ID,
        "x-yui-references": to.name(),
        "description": format!("the id of a {to} record")});
    if side == Side::Request {
        s["description"] = json!(format!(
            "the id of a {to} record that exists on this node (else 422 with invalid_reference)"
        ));
    }
    s
}

/// The schema of a set of fields. On the request side an optional field
/// may be null (it is then absent, or on an update removed); `required`
/// says whether the required fields must be there (not on an update).
fn fields_schema(fields: &[FieldDef], side: Side, required: bool) -> Value {
    let properties: Map<String, Value> = fields
        .iter()
        .map(|f| {
            // The labels go in the description: a title would name the
            // types a client generator makes of them.
            let mut s = kind_schema(&f.kind, side);
            let label = format!("{} / {}", f.ja, f.en);
            s["description"] = json!(match s["description"].as_str() {
                Some(more) => format!("{label}. {more}"),
                None => label,
            });
            if side == Side::Request && !f.required {
                s = json!({"anyOf": [s, {"type": "null"}], "description": s["description"].clone()});
            }
            (f.name.to_owned(), s)
        })
        .collect();
    let mut schema =
        json!({"type": "object", "additionalProperties": false, "properties": properties});
    if required {
        let required: Vec<_> = fields
            .iter()
            .filter(|f| f.required)
            .map(|f| f.name)
            .collect();
        schema["required"] = json!(required);
    }
    schema
}

/// A record of each collection, in Japanese, as the examples of the
/// document. A unit test checks that each passes `validate_create`.
pub(super) fn example(c: Collection) -> Value {
    match c {
        Collection::Knowledge => json!({"title": "模擬業務で始める新人研修",
            "body": "最初の2週間は模擬業務で練習する。\n週に一度、メンターと振り返りをする。",
            "category": "training", "tags": ["研修", "メンター"]}),
        Collection::FailureCases => json!({"title": "納期直前の仕様変更で徹夜作業に",
            "situation": "データ入力の案件で、納期の前日に入力項目が増えた。",
            "causes": "変更の受付期限を契約で決めていなかった。",
            "countermeasures": "見積書に変更受付の締切日を書く。",
            "lessons": "締切と変更の扱いを最初に合意する。", "tags": ["受発注"]}),
        Collection::PilotResults => {
            json!({"title": "観光案内の多言語化", "partner": "白樺高原観光協会",
            "field": "観光", "period_start": "2025-06-01", "period_end": "2025-09-30",
            "status": "completed", "summary": "案内文120件を英語と中国語に翻訳した。",
            "metrics": [{"name": "翻訳件数", "target": 100, "actual": 120, "unit": "件"}],
            "workers_involved": 6})
        }
        Collection::KpiReports => json!({"fiscal_year": 2025, "new_hires": 12, "pilot_projects": 3,
            "dx_certified_businesses": 1, "member_municipalities": 3, "note": "年度末の集計。"}),
        Collection::Workers => json!({"name": "結 花子", "name_kana": "ゆい はなこ",
            "email": "hanako@example.jp", "phone": "0267-00-0000", "status": "active",
            "hours_per_week": 20, "joined_on": "2025-04-01",
            "skills": [{"skill": "データ入力", "level": 4, "assessed_on": "2025-10-01"}],
            "notes": "午前中の作業を希望。"}),
        Collection::Trainings => json!({"title": "ビジネスメール入門", "audience": "workers",
            "held_on": "2025-05-15", "outline": "敬語と件名の付け方を学ぶ。"}),
        Collection::Mentoring => json!({"mentor": "01jq2w3e4r5t6y7v8k9m0pasdf",
            "mentee": "01jq2w3e4r5t6y7v8k9m0pasdg", "held_on": "2025-06-10",
            "notes": "在宅での時間管理について話した。"}),
        Collection::Customers => {
            json!({"organisation": "株式会社立科物産", "contact_name": "佐藤 一郎",
            "email": "sato@example.jp", "phone": "0267-00-0001", "stage": "active",
            "notes": "毎月の請求書作成を依頼されている。"})
        }
        Collection::Orders => json!({"title": "請求書の作成代行（4月分）", "status": "ordered",
            "estimated_hours": 10, "amount_jpy": 30000, "due_on": "2025-04-30"}),
        Collection::PrItems => {
            json!({"title": "広報誌にワーカー募集の記事", "audience": "residents",
            "channel": "広報たてしな", "planned_on": "2025-07-01", "status": "planned",
            "body": "在宅で働ける仕事を紹介する。"})
        }
    }
}

/// The example of a collection, if a client can send it as it is: an
/// example that names other records (a mentoring session's workers) is
/// only shown, as their ids differ on every node.
pub(crate) fn executable_example(c: Collection) -> Option<Value> {
    let example = example(c);
    let refers = c.fields().iter().any(|f| {
        matches!(f.kind, FieldKind::Ref(_) | FieldKind::Refs { .. })
            && example.get(f.name).is_some()
    });
    (!refers).then_some(example)
}

/// The schemas of one collection: what a create and an update take, what
/// is stored, and the record and page the node answers with.
pub(super) fn schemas(c: Collection, schemas: &mut Map<String, Value>) {
    let name = c.name();
    let fields = c.fields();
    let mut create = fields_schema(fields, Side::Request, true);
    create["description"] = json!(format!(
        "{} / {} — scope: {}. At most {MAX_RECORD_BYTES} bytes of fields as compact JSON (else 422 record_too_large).",
        c.label_ja(),
        c.label_en(),
        c.scope().as_str()
    ));
    match executable_example(c) {
        Some(example) => create["example"] = example,
        None => {
            create["description"] = json!(format!(
                "{} Example (the ids must be of records that exist): {}",
                create["description"].as_str().unwrap_or_default(),
                example(c)
            ))
        }
    }
    schemas.insert(format!("{name}_fields"), create);
    let mut patch = fields_schema(fields, Side::Request, false);
    patch["description"] = json!(
        "The fields to change; the others keep their values. null removes an optional field."
    );
    schemas.insert(format!("{name}_patch"), patch);
    let mut stored = fields_schema(fields, Side::Answer, true);
    stored["description"] = json!(format!("The fields of a stored {name} record."));
    schemas.insert(format!("{name}_stored"), stored);
    let body = |fields: &str| {
        json!({"type": "object", "required": ["fields"], "additionalProperties": false,
        "properties": {
            "fields": {"$ref": format!("#/components/schemas/{fields}")},
            "personal_data_override": {"anyOf": [{"$ref": "#/components/schemas/PersonalDataOverride"}, {"type": "null"}]}}})
    };
    let mut create_body = body(&format!("{name}_fields"));
    if let Some(example) = executable_example(c) {
        create_body["example"] = json!({"fields": example});
    }
    schemas.insert(format!("{name}_create"), create_body);
    schemas.insert(format!("{name}_update"), body(&format!("{name}_patch")));
    schemas.insert(
        format!("{name}_record"),
        json!({"type": "object", "additionalProperties": false,
            "required": ["id", "collection", "town", "created_at", "updated_at", "deleted", "fields"],
            "properties": {
                "id": {"$ref": "#/components/schemas/RecordId"},
                "collection": {"type": "string", "const": name},
                "town": {"type": "string", "description": "the town that created the record"},
                "created_at": {"type": "string", "format": "date-time"},
                "updated_at": {"type": "string", "format": "date-time"},
                "deleted": {"type": "boolean"},
                "fields": {"$ref": format!("#/components/schemas/{name}_stored")},
                "attachments": {"type": "array", "description": "the files attached to the record, by name (absent when none)",
                    "items": {"$ref": "#/components/schemas/Attachment"}}}}),
    );
    schemas.insert(
        format!("{name}_page"),
        json!({"type": "object", "additionalProperties": false, "required": ["items", "next_cursor"],
            "properties": {
                "items": {"type": "array", "items": {"$ref": format!("#/components/schemas/{name}_record")}},
                "next_cursor": {"type": ["string", "null"], "description": "pass it as cursor for the next page; null on the last"}}}),
    );
}

/// The schemas every collection shares: a record id, any record (for
/// search), the override of the personal-data guard, history and
/// conflicts.
pub(super) fn common_schemas(schemas: &mut Map<String, Value>) {
    schemas.insert(
        "RecordId".into(),
        json!({"type": "string", "pattern": RECORD_ID, "example": "01jq2w3e4r5t6y7v8k9m0pasdf"}),
    );
    let records: Vec<Value> = Collection::ALL
        .iter()
        .map(|c| json!({"$ref": format!("#/components/schemas/{}_record", c.name())}))
        .collect();
    let mapping: Map<String, Value> = Collection::ALL
        .iter()
        .map(|c| {
            (
                c.name().to_owned(),
                json!(format!("#/components/schemas/{}_record", c.name())),
            )
        })
        .collect();
    schemas.insert(
        "Record".into(),
        json!({"oneOf": records, "discriminator": {"propertyName": "collection", "mapping": mapping}}),
    );
    let attachment = json!({"type": "object", "required": ["sha256", "name", "size", "content_type", "town", "added_at"],
        "properties": {
            "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$", "description": "SHA-256 of the bytes: the file's identity"},
            "name": {"type": "string", "description": "file name offered on download"},
            "size": {"type": "integer", "minimum": 1},
            "content_type": {"type": "string", "enum": yui_protocol::attachment::ALLOWED_TYPES.iter().map(|(t, _)| *t).collect::<Vec<_>>()},
            "town": {"type": "string", "description": "the town that attached it"},
            "added_at": {"type": "string", "format": "date-time"}}});
    schemas.insert("Attachment".into(), attachment.clone());
    let mut listed = attachment;
    listed["properties"]["state"] = json!({"type": "string", "enum": ["stored", "fetching"],
        "description": "stored: the bytes are on this node; fetching: a shared record's file not yet arrived from the other towns"});
    listed["properties"]["url"] = json!({"type": "string", "description": "where to download it"});
    listed["required"] = json!([
        "sha256",
        "name",
        "size",
        "content_type",
        "town",
        "added_at",
        "state",
        "url"
    ]);
    schemas.insert("AttachmentListed".into(), listed);
    schemas.insert(
        "PersonalDataOverride".into(),
        json!({"type": "object", "additionalProperties": false, "required": ["reason"],
            "description": "An administrator's decision to store a shared record although the personal-data guard found personal data in it (never My Number); the reason goes to the audit log. Needs the admin role (else 403).",
            "properties": {"reason": {"type": "string",
                "description": format!("why (at least {MIN_OVERRIDE_REASON_CHARS} characters without the surrounding white space; else 400 override_reason_required), e.g. 本人の同意を得て事例に氏名を載せる"),
                "pattern": format!("[^{WHITE_SPACE}][\\s\\S]{{{}}}[^{WHITE_SPACE}]", MIN_OVERRIDE_REASON_CHARS - 2)}}}),
    );
    schemas.insert(
        "History".into(),
        json!({"type": "object", "additionalProperties": false, "required": ["changes"], "properties": {
            "changes": {"type": "array", "items": {"type": "object", "required": ["town", "at", "hash", "summary", "verified", "signed_by"],
                "properties": {
                    "town": {"type": "string", "description": "the town whose node made the change"},
                    "at": {"type": "string", "format": "date-time"},
                    "hash": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                    "summary": {"type": "string"},
                    "verified": {"type": "boolean", "description": "signed by a node of the town the change names"},
                    "signed_by": {"oneOf": [{"type": "null"}, {"type": "object", "required": ["node_id", "town"], "properties": {
                        "node_id": {"type": "string"}, "town": {"type": ["string", "null"]}}}]}}}}}}),
    );
    schemas.insert(
        "Conflicts".into(),
        json!({"type": "object", "additionalProperties": false, "required": ["conflicts"], "properties": {
            "conflicts": {"type": "object", "description": "per field, the competing values (concurrent edits from different towns)",
                "additionalProperties": {"type": "array", "items": {}}}}}),
    );
}

/// What a record answer and its link to the record's other operations
/// look like.
fn record_answer(c: Collection, description: &str) -> Value {
    json!({"description": description, "content": {"application/json": {"schema":
        {"$ref": format!("#/components/schemas/{}_record", c.name())}}}})
}

fn links(c: Collection) -> Value {
    let name = c.name();
    let to = |op: &str| json!({"operationId": format!("{op}_{name}"), "parameters": {"id": "$response.body#/id"}});
    json!({"GetRecord": to("get"), "UpdateRecord": to("update"), "DeleteRecord": to("delete"),
        "History": to("history"), "Conflicts": to("conflicts")})
}

/// The list filters of a collection: one query parameter per field whose
/// kind can be compared (`FieldKind::is_filterable`), checked as the field
/// is (else 400 invalid_query).
fn filters(c: Collection) -> Vec<Value> {
    c.fields()
        .iter()
        .filter(|f| f.kind.is_filterable())
        .map(|f| {
            json!({"name": f.name, "in": "query", "required": false,
                "description": format!("only records whose {} ({}) is this", f.name, f.ja),
                "schema": kind_schema(&f.kind, Side::Answer)})
        })
        .collect()
}

/// The paths of one collection.
pub(super) fn paths(c: Collection) -> Vec<(String, Value)> {
    let name = c.name();
    let tags = json!([name]);
    let label = format!("{}（{}）", c.label_ja(), name);
    let mut list_params = vec![
        json!({"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": crate::http::DEFAULT_PAGE}}),
        json!({"name": "cursor", "in": "query", "schema": {"type": "string"}, "description": "next_cursor of the page before"}),
        json!({"name": "include_deleted", "in": "query", "schema": {"type": "boolean", "default": false}}),
    ];
    list_params.extend(filters(c));
    let id = json!({"name": "id", "in": "path", "required": true, "schema": {"$ref": "#/components/schemas/RecordId"},
        "description": "the record's id (a malformed one names no record: 404)"});
    let shared = c.is_shared();
    let write = |ok: (&str, Value), extra: &[(&str, Value)]| {
        let mut r = Map::new();
        r.insert(ok.0.to_owned(), ok.1);
        for (status, v) in extra {
            r.insert((*status).to_owned(), v.clone());
        }
        Value::Object(r)
    };
    let unprocessable = if shared {
        error(
            "the fields are not valid (validation_failed, with fields: each problem, e.g. invalid_reference for an id of no record, invalid_order, record_too_large), or the personal-data guard found personal data (personal_data, with findings)",
        )
    } else {
        error(
            "the fields are not valid (validation_failed, with fields: each problem, e.g. invalid_reference for an id of no record, record_too_large)",
        )
    };
    let conflict = (c == Collection::KpiReports)
        .then(|| error("this town already has a KPI report for that fiscal year (conflict)"));
    let forbidden_write = if shared {
        error(
            "the role is too low (forbidden: needs editor; an override needs admin), or the record is another town's and only its town may change it (not_the_owner)",
        )
    } else {
        error("the role is too low (forbidden: needs editor; an override needs admin)")
    };
    let bad_body = error(
        "the body is not JSON (malformed_json, unreadable_body), not of the expected shape (invalid_body), or an override without a reason (override_reason_required)",
    );
    let mut create_extra = vec![
        ("400", bad_body.clone()),
        ("403", forbidden_write.clone()),
        (
            "413",
            error("the body is larger than 1 MiB (body_too_large)"),
        ),
        ("422", unprocessable.clone()),
    ];
    let mut update_extra = vec![
        ("400", bad_body),
        ("403", forbidden_write),
        ("404", error("no such record (record_not_found)")),
        (
            "410",
            error("the record is deleted; a deleted record cannot be changed (record_deleted)"),
        ),
        (
            "413",
            error("the body is larger than 1 MiB (body_too_large)"),
        ),
        ("422", unprocessable),
    ];
    if let Some(conflict) = conflict {
        create_extra.push(("409", conflict.clone()));
        update_extra.push(("409", conflict));
    }
    let mut created = record_answer(c, "created");
    created["headers"] = json!({"Location": {"required": true, "description": format!("/api/v1/records/{name}/ID, the new record's path"), "schema": {"type": "string"}}});
    created["links"] = links(c);
    let not_found = || {
        error(
            "no such record, or it is deleted (record_not_found; a deleted record's tombstone is listed by GET /api/v1/records/NAME?include_deleted=true)",
        )
    };
    let body = |schema: &str, example: Option<Value>| {
        let mut media =
            json!({"schema": {"$ref": format!("#/components/schemas/{name}_{schema}")}});
        if let Some(value) = example {
            media["examples"] =
                json!({"ja": {"summary": format!("{}の例", c.label_ja()), "value": value}});
        }
        json!({"required": true, "content": {"application/json": media}})
    };
    let update_example = match c
        .fields()
        .iter()
        .find(|f| !f.required && matches!(f.kind, FieldKind::Text { .. }))
    {
        Some(f) => json!({"fields": {f.name: "内容を改訂した。"}}),
        None => json!({"fields": {}}),
    };
    vec![
        (
            format!("/api/v1/records/{name}"),
            json!({
                "get": {"operationId": format!("list_{name}"), "tags": tags, "summary": format!("{label}の一覧 / List {name} records, newest first"),
                    "parameters": list_params,
                    "responses": answers(&[("200", json!({"description": "a page", "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{name}_page")}}}})),
                        ("400", error("a query parameter that is unknown or not valid for its field (invalid_query)"))])},
                "post": {"operationId": format!("create_{name}"), "tags": tags, "summary": format!("{label}を作成 / Create a {name} record (editor)"),
                    "requestBody": body("create", executable_example(c).map(|e| json!({"fields": e}))),
                    "responses": write(("201", created), &create_extra)}
            }),
        ),
        (
            format!("/api/v1/records/{name}/{{id}}"),
            json!({
                "parameters": [id],
                "get": {"operationId": format!("get_{name}"), "tags": tags, "summary": format!("{label}を読む / Read a {name} record"),
                        "responses": answers(&[("200", record_answer(c, "the record")), ("404", not_found())])},
                "patch": {"operationId": format!("update_{name}"), "tags": tags, "summary": format!("{label}を更新 / Update some fields of a {name} record (editor)"),
                    "requestBody": body("update", Some(update_example)),
                    "responses": write(("200", record_answer(c, "updated")), &update_extra)},
                "delete": {"operationId": format!("delete_{name}"), "tags": tags, "summary": format!("{label}を削除 / Delete a {name} record (editor): it stays as a tombstone, listed with include_deleted"),
                    "responses": answers(&[("204", json!({"description": "deleted"})),
                        ("403", error(if shared { "the role is too low (forbidden: needs editor), or the record is another town's (not_the_owner)" } else { "the role is too low (forbidden: needs editor)" })),
                        ("404", not_found())])}
            }),
        ),
        (
            format!("/api/v1/records/{name}/{{id}}/history"),
            json!({"parameters": [id], "get": {"operationId": format!("history_{name}"), "tags": tags,
                "summary": format!("{label}の変更履歴 / Change history of a {name} record, oldest first"),
                "responses": answers(&[("200", json!({"description": "changes", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/History"}}}})),
                    ("404", not_found())])}}),
        ),
        (
            format!("/api/v1/records/{name}/{{id}}/attachments"),
            json!({"parameters": [id],
                "get": {"operationId": format!("list_attachments_{name}"), "tags": tags,
                    "summary": format!("{label}の添付ファイル / The files attached to a {name} record"),
                    "responses": answers(&[("200", json!({"description": "the files", "content": {"application/json": {"schema": {
                        "type": "object", "additionalProperties": false, "required": ["items"],
                        "properties": {"items": {"type": "array", "items": {"$ref": "#/components/schemas/AttachmentListed"}}}}}}})),
                        ("404", not_found())])},
                "post": {"operationId": format!("upload_attachment_{name}"), "tags": tags,
                    "summary": format!("{label}にファイルを添付 / Attach a file to a {name} record (editor): the raw bytes as the body, the file's type as Content-Type, its name as ?name="),
                    "parameters": [{"name": "name", "in": "query", "required": true, "description": "the file name (a path is cut to its last part)",
                        "schema": {"type": "string", "minLength": 1, "maxLength": 200}, "example": "報告書.pdf"}],
                    "requestBody": upload_body(),
                    "responses": answers(&[
                        ("201", json!({"description": "attached (or already attached: the same file)",
                            "headers": {"Location": {"required": true, "description": "where to download it", "schema": {"type": "string"}}},
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/AttachmentListed"}}}})),
                        ("400", error("no file name, an empty file, or a query parameter that is not name (invalid_file_name, empty_file, invalid_query)")),
                        ("403", error(if shared { "the role is too low (forbidden: needs editor), or the record is another town's (not_the_owner)" } else { "the role is too low (forbidden: needs editor)" })),
                        ("404", not_found()),
                        ("410", error("the record is deleted (record_deleted)")),
                        ("413", error("the file is larger than [attachments] max_file (attachment_too_large, default 50 MiB), or the town's files would pass [attachments] town_quota (attachment_quota_exceeded)")),
                        ("415", error("the type is not allowed, or the bytes do not match it (file_type_not_allowed)")),
                        ("422", error("the name of a shared record's file contains personal data (personal_data; the name travels with the record)"))])}}),
        ),
        (
            format!("/api/v1/records/{name}/{{id}}/attachments/{{sha256}}"),
            json!({"parameters": [id, {"name": "sha256", "in": "path", "required": true, "description": "the file's SHA-256",
                    "schema": {"type": "string", "pattern": "^[0-9a-f]{64}$"}}],
                "get": {"operationId": format!("download_attachment_{name}"), "tags": tags,
                    "summary": format!("{label}の添付ファイルを取得 / Download a file of a {name} record (as an attachment, never shown inline by the node)"),
                    "responses": answers(&[("200", download_answer()),
                        ("404", error("no such record, the record names no such file, or the file has not arrived from the other towns yet (record_not_found, not_found)"))])},
                "delete": {"operationId": format!("delete_attachment_{name}"), "tags": tags,
                    "summary": format!("{label}の添付ファイルを削除 / Remove a file from a {name} record (editor); its bytes are deleted on every node once no record names it"),
                    "responses": answers(&[("204", json!({"description": "removed"})),
                        ("403", error(if shared { "the role is too low (forbidden: needs editor), or the record is another town's (not_the_owner)" } else { "the role is too low (forbidden: needs editor)" })),
                        ("404", error("no such record, or it names no such file (record_not_found, not_found)"))])}}),
        ),
        (
            format!("/api/v1/records/{name}/{{id}}/conflicts"),
            json!({"parameters": [id], "get": {"operationId": format!("conflicts_{name}"), "tags": tags,
                "summary": format!("{label}の競合 / Fields of a {name} record with concurrent competing values"),
                "responses": answers(&[("200", json!({"description": "conflicts by field", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Conflicts"}}}})),
                    ("404", not_found())])}}),
        ),
    ]
}

/// Raw bytes in each of the allowed file types.
fn binary_content() -> Map<String, Value> {
    yui_protocol::attachment::ALLOWED_TYPES
        .iter()
        .map(|(t, _)| {
            (
                (*t).to_owned(),
                json!({"schema": {"type": "string", "format": "binary"}}),
            )
        })
        .collect()
}

/// The body of an upload: the raw bytes in one of the allowed types.
fn upload_body() -> Value {
    let content = binary_content();
    json!({"required": true, "description": "the file's bytes; its type is checked against its first bytes", "content": content})
}

/// A download: the bytes in their stored type.
fn download_answer() -> Value {
    let content = binary_content();
    json!({"description": "the file, with Content-Disposition: attachment and X-Content-Type-Options: nosniff",
        "headers": {"Content-Disposition": {"required": true, "schema": {"type": "string"}}},
        "content": content})
}

/// `GET /api/v1/search`.
pub(super) fn search() -> Value {
    json!({"get": {"operationId": "search", "tags": ["search"], "summary": "全文検索 / Japanese-aware full-text search over every collection, best match first",
        "parameters": [
            {"name": "q", "in": "query", "required": true, "description": "the words to search for (two-character words like 研修 are found)",
                "schema": {"type": "string", "maxLength": 200, "pattern": format!("[^{WHITE_SPACE}]")}, "example": "研修"},
            {"name": "collection", "in": "query", "description": "only this collection",
                "schema": {"type": "string", "enum": Collection::ALL.iter().map(|c| c.name()).collect::<Vec<_>>()}},
            {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": crate::http::DEFAULT_PAGE}}
        ],
        "responses": answers(&[("200", json!({"description": "matches, best first", "content": {"application/json": {"schema": {
            "type": "object", "additionalProperties": false, "required": ["items"],
            "properties": {"items": {"type": "array", "items": {"$ref": "#/components/schemas/Record"}}}}}}})),
            ("400", error("no words, more than 200 characters, an unknown collection or a bad limit (invalid_query)"))])}})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_examples_are_valid_records() {
        for c in Collection::ALL {
            let example = example(c);
            let fields = example.as_object().expect("an object");
            yui_protocol::validate::validate_create(c, fields)
                .unwrap_or_else(|e| panic!("the example of {c} is not valid: {e}"));
        }
    }
}
