//! The OpenAPI 3.1 document of the local API, generated from the schemas in
//! `yui_protocol::schema`, so it cannot drift from what the node validates.

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Map, Value, json};
use yui_protocol::Collection;
use yui_protocol::schema::{FISCAL_YEAR_MAX, FISCAL_YEAR_MIN};
use yui_protocol::schema::{FieldDef, FieldKind, MAX_RECORD_BYTES};

use super::extract::ViewerAccess;

/// `GET /api/v1/openapi.json`.
pub(super) async fn serve(_: ViewerAccess) -> Response {
    super::json_response(StatusCode::OK, &document())
}

/// What `protocol::validate::refused_in_line` refuses, as an ECMA-262
/// pattern: one-line strings hold no control, line-separator or text
/// direction characters.
const ONE_LINE: &str =
    "^[^\\u0000-\\u001f\\u007f-\\u009f\\u061c\\u200e\\u200f\\u2028-\\u202e\\u2066-\\u2069]*$";
/// What `protocol::validate::refused_in_text` refuses: controls other than
/// a line break, a tab and a carriage return (which becomes a line break).
const TEXT: &str = "^[^\\u0000-\\u0008\\u000b\\u000c\\u000e-\\u001f\\u007f-\\u009f]*$";

fn kind_schema(kind: &FieldKind) -> Value {
    match *kind {
        FieldKind::Str { max_chars } => json!({"type": "string", "maxLength": max_chars,
            "pattern": ONE_LINE,
            "description": "One line: no line breaks, control characters (C0, DEL, C1) or text direction characters (U+061C, U+200E, U+200F, U+202A–U+202E, U+2066–U+2069, U+2028, U+2029); refused as invalid_format (a line break) or invalid_character."}),
        FieldKind::Email => json!({"type": "string", "format": "email", "maxLength": 254}),
        FieldKind::Phone => json!({"type": "string", "maxLength": 32, "pattern": "^[0-9+() -]+$"}),
        FieldKind::Text { max_chars } => json!({"type": "string", "maxLength": max_chars,
            "pattern": TEXT,
            "description": "Long text (Automerge Text): an update is merged as a character diff. Line breaks (CR LF and CR are stored as LF) and tabs are its only control characters; others are refused as invalid_character."}),
        FieldKind::Enum(options) => json!({"type": "string",
            "enum": options.iter().map(|o| o.value).collect::<Vec<_>>()}),
        FieldKind::Int { min, max } => json!({"type": "integer", "minimum": min, "maximum": max}),
        FieldKind::Number { min, max } => json!({"type": "number", "minimum": min, "maximum": max}),
        FieldKind::Date => json!({"type": "string", "format": "date"}),
        FieldKind::Ref(to) => {
            json!({"type": "string", "description": format!("id of a {to} record")})
        }
        FieldKind::Refs { to, max_items } => json!({"type": "array", "maxItems": max_items,
            "items": {"type": "string", "description": format!("id of a {to} record")}}),
        FieldKind::Tags {
            max_items,
            max_chars,
        } => json!({"type": "array", "maxItems": max_items,
            "items": {"type": "string", "maxLength": max_chars, "pattern": ONE_LINE}}),
        FieldKind::Objects { fields, max_items } => json!({"type": "array", "maxItems": max_items,
            "items": object_schema(fields, true)}),
    }
}

fn object_schema(fields: &[FieldDef], with_required: bool) -> Value {
    let properties: Map<String, Value> = fields
        .iter()
        .map(|f| {
            let mut s = kind_schema(&f.kind);
            s["title"] = json!(format!("{} / {}", f.ja, f.en));
            (f.name.to_owned(), s)
        })
        .collect();
    let mut schema =
        json!({"type": "object", "additionalProperties": false, "properties": properties});
    if with_required {
        let required: Vec<_> = fields
            .iter()
            .filter(|f| f.required)
            .map(|f| f.name)
            .collect();
        schema["required"] = json!(required);
    }
    schema
}

pub fn document() -> Value {
    let mut schemas = Map::new();
    for c in Collection::ALL {
        let name = c.name();
        let mut fields = object_schema(c.fields(), true);
        fields["description"] = json!(format!(
            "{} / {} — scope: {}. At most {MAX_RECORD_BYTES} bytes of fields as JSON.",
            c.label_ja(),
            c.label_en(),
            c.scope().as_str()
        ));
        schemas.insert(format!("{name}_fields"), fields);
        schemas.insert(format!("{name}_patch"), object_schema(c.fields(), false));
    }
    schemas.insert("Record".into(), json!({
        "type": "object",
        "required": ["id", "collection", "town", "created_at", "updated_at", "deleted", "fields"],
        "properties": {
            "id": {"type": "string", "pattern": "^[0-9a-hjkmnp-tv-z]{26}$"},
            "collection": {"type": "string", "enum": Collection::ALL.iter().map(|c| c.name()).collect::<Vec<_>>()},
            "town": {"type": "string", "description": "town that created the record"},
            "created_at": {"type": "string", "format": "date-time"},
            "updated_at": {"type": "string", "format": "date-time"},
            "deleted": {"type": "boolean"},
            "fields": {"type": "object"}
        }
    }));
    schemas.insert("Error".into(), json!({
        "type": "object",
        "required": ["error"],
        "properties": {"error": {"type": "object", "required": ["code", "message"], "properties": {
            "code": {"type": "string", "description": "stable snake_case reason, e.g. validation_failed, record_not_found, unknown_collection, missing_token, invalid_token, forbidden, malformed_json, invalid_body, body_too_large, wrong_host, record_deleted, conflict"},
            "message": {"type": "string"},
            "fields": {"type": "array", "items": {"type": "object", "properties": {
                "field": {"type": "string"}, "code": {"type": "string", "description": "unknown_field, missing_field, invalid_type, invalid_enum, too_long, too_many_items, out_of_range, invalid_date, invalid_format, invalid_character, invalid_reference, record_too_large, invalid_order"}, "message": {"type": "string"}}}}
        }}}
    }));
    let collection_param = json!({"name": "collection", "in": "path", "required": true,
        "schema": {"type": "string", "enum": Collection::ALL.iter().map(|c| c.name()).collect::<Vec<_>>()}});
    let id_param =
        json!({"name": "id", "in": "path", "required": true, "schema": {"type": "string"}});
    let error = |description: &str| {
        json!({"description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
    };
    let record = |description: &str| {
        json!({"description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Record"}}}})
    };
    let body = json!({"required": true, "content": {"application/json": {"schema": {
        "type": "object", "required": ["fields"], "additionalProperties": false,
        "properties": {"fields": {"type": "object", "description": "see the <collection>_fields schemas"}}}}}});
    // Built apart: one json! this large exceeds the macro recursion limit.
    let users = json!({"get": {"summary": "The local users and their roles (admin)",
                "responses": {"200": {"description": "users", "content": {"application/json": {"schema": {
                    "type": "object", "properties": {"users": {"type": "array", "items": {"type": "object", "properties": {
                        "name": {"type": "string"}, "role": {"type": "string", "enum": ["viewer", "editor", "admin"]},
                        "created_at": {"type": "string", "format": "date-time"},
                        "last_login_at": {"type": ["string", "null"], "format": "date-time"},
                        "locked_until": {"type": ["string", "null"], "format": "date-time", "description": "set while locked out after failed logins"}}}}}}}}},
                    "403": error("needs the admin role")}}});
    let audit = json!({"get": {"summary": "The local audit log, newest first (admin)",
                "parameters": [{"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1,
                    "maximum": super::MAX_AUDIT_PAGE, "default": super::DEFAULT_AUDIT_PAGE}}],
                "responses": {"200": {"description": "entries", "content": {"application/json": {"schema": {
                    "type": "object", "properties": {"entries": {"type": "array", "items": {"type": "object", "properties": {
                        "at": {"type": "string", "format": "date-time"}, "user": {"type": "string"},
                        "action": {"type": "string", "description": "record.create, record.update, record.delete, peer.add, peer.remove, revocations.import, certificate.install, key.rotate, user.add, user.remove, user.passwd, user.role, token.create, token.revoke, login, login.failed, logout, kpi.publish"},
                        "target": {"type": "string"}, "detail": {"type": "string"}}}}}}}}},
                    "400": error("bad limit"), "403": error("needs the admin role")}}});
    let mut doc = json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Yui local API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The JSON API of one town's Yui node. Every /api/ request needs 'Authorization: Bearer TOKEN', where TOKEN is the node's token (the contents of DATA_DIR/api-token, which acts as an admin) or a user's token from `yui user token NAME`. A user token acts with its role: viewer reads; editor also creates, updates and deletes records and syncs now; admin also publishes KPI reports and manages peers, users and revocations. Each action needs the same role and leaves the same audit entry whichever way it comes (API, web console, yui commands). The scheme name is matched without regard to case (RFC 9110 §11.1). A request without a token, or with one the node does not know, answers 401 with WWW-Authenticate: Bearer realm=\"yui\" (and error=\"invalid_token\" for an unknown token). A role too low for a request answers 403 with code forbidden. Every time in the API is RFC 3339 in UTC with exactly three fractional digits (2026-04-01T09:30:00.120Z), so times sort as text. A 201 carries Location, the path of what was created. Every change is recorded in the node's local audit log with the user's name; peers never see it."
        },
        "components": {
            "securitySchemes": {"token": {"type": "http", "scheme": "bearer"}},
            "schemas": schemas
        },
        "security": [{"token": []}],
        "paths": {
            "/api/v1/records/{collection}": {
                "parameters": [collection_param],
                "get": {"summary": "List records, newest first",
                    "parameters": [
                        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": super::MAX_PAGE}},
                        {"name": "cursor", "in": "query", "schema": {"type": "string"}},
                        {"name": "include_deleted", "in": "query", "schema": {"type": "boolean"}}
                    ],
                    "description": "Any other query parameter filters by equality on a field (e.g. ?status=active).",
                    "responses": {"200": {"description": "a page", "content": {"application/json": {"schema": {
                        "type": "object", "properties": {
                            "items": {"type": "array", "items": {"$ref": "#/components/schemas/Record"}},
                            "next_cursor": {"type": ["string", "null"]}}}}}},
                        "400": error("bad query"), "404": error("unknown collection")}},
                "post": {"summary": "Create a record (editor)", "requestBody": body,
                    "responses": {"201": {"description": "created",
                            "headers": {"Location": {"description": "/api/v1/records/{collection}/{id} of the new record", "schema": {"type": "string"}}},
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Record"}}}},
                        "400": error("malformed JSON"), "403": error("needs the editor role"),
                        "404": error("unknown collection"), "409": error("conflict"),
                        "413": error("body too large"), "422": error("validation failed")}}
            },
            "/api/v1/records/{collection}/{id}": {
                "parameters": [collection_param, id_param],
                "get": {"summary": "Read a record",
                    "parameters": [{"name": "include_deleted", "in": "query", "schema": {"type": "boolean"}}],
                    "responses": {"200": record("the record"), "404": error("not found")}},
                "patch": {"summary": "Update some fields (null removes an optional field) (editor)", "requestBody": body,
                    "responses": {"200": record("updated"), "403": error("needs the editor role"), "404": error("not found"),
                        "410": error("record deleted"), "422": error("validation failed")}},
                "delete": {"summary": "Delete (tombstone) a record (editor)",
                    "responses": {"204": {"description": "deleted"}, "403": error("needs the editor role"), "404": error("not found")}}
            },
            "/api/v1/records/{collection}/{id}/history": {
                "parameters": [collection_param, id_param],
                "get": {"summary": "Change history, oldest first",
                    "responses": {"200": {"description": "changes", "content": {"application/json": {"schema": {
                        "type": "object", "properties": {"changes": {"type": "array", "items": {"type": "object",
                            "properties": {"town": {"type": "string"}, "at": {"type": "string", "format": "date-time"},
                                "hash": {"type": "string"}, "summary": {"type": "string"}}}}}}}}},
                        "404": error("not found")}}
            },
            "/api/v1/records/{collection}/{id}/conflicts": {
                "parameters": [collection_param, id_param],
                "get": {"summary": "Fields with concurrent competing values",
                    "responses": {"200": {"description": "conflicts by field"}, "404": error("not found")}}
            },
            "/api/v1/search": {
                "get": {"summary": "Japanese-aware full-text search",
                    "parameters": [
                        {"name": "q", "in": "query", "required": true, "schema": {"type": "string", "maxLength": 200}},
                        {"name": "collection", "in": "query", "schema": {"type": "string"}},
                        {"name": "limit", "in": "query", "schema": {"type": "integer"}}
                    ],
                    "responses": {"200": {"description": "matches, best first", "content": {"application/json": {"schema": {
                        "type": "object", "properties": {"items": {"type": "array", "items": {"$ref": "#/components/schemas/Record"}}}}}}},
                        "400": error("no query")}}
            },
            "/api/v1/sync": {"post": {"summary": "Sync with every peer now, both ways; answers when done (editor; audited as sync.now)",
                "responses": {"200": {"description": "per peer: url, town, ok, error, docs_in, docs_out"}, "403": error("needs the editor role"),
                    "409": error("the node has not joined a consortium")}}},
            "/api/v1/peers": {
                "get": {"summary": "The peers this node dials, with their sync state",
                    "responses": {"200": {"description": "peers: url, town, node_id, state (ok|failing|new), last_sync_at, last_error, pending, …"}}},
                "post": {"summary": "Add a peer (a running node starts syncing with it at once) (admin)",
                    "requestBody": {"required": true, "content": {"application/json": {"schema": {
                        "type": "object", "required": ["url"], "additionalProperties": false,
                        "properties": {"url": {"type": "string", "description": "https://HOST:PORT"},
                            "node_id": {"type": "string", "description": "expected node id, if known: 52 characters of A-Z and 2-7 (case, dashes and spaces are forgiven; stored in groups of four)"}}}}}},
                    "responses": {"201": {"description": "added: {\"peer\": …}",
                            "headers": {"Location": {"description": "/api/v1/peers/{key}, the stored URL percent-encoded (what DELETE takes)", "schema": {"type": "string"}}}},
                        "400": error("not a peer URL (invalid_peer_url: not https://HOST:PORT, or port 0) or not a node id (invalid_node_id)"), "403": error("needs the admin role"), "409": error("already a peer")}}
            },
            "/api/v1/peers/{key}": {"delete": {"summary": "Remove a peer by node id or URL (URL-encoded) (admin)",
                "parameters": [{"name": "key", "in": "path", "required": true, "schema": {"type": "string"}}],
                "responses": {"204": {"description": "removed"}, "403": error("needs the admin role"), "404": error("no such peer")}}},
            "/api/v1/revocations": {"post": {"summary": "Install a revocation list (PEM body), signed by the consortium CA and newer than the one installed (admin)",
                "requestBody": {"required": true, "content": {"application/x-pem-file": {"schema": {"type": "string"}}}},
                "responses": {"200": {"description": "installed (bool) and number"}, "400": error("not a valid revocation list"), "403": error("needs the admin role")}}},
            "/api/v1/certificate": {"post": {"summary": "Install a node certificate on the running node, in use at once: joining (opens the peer port), renewal, the certificate for a rotated key, or a CA rollover (admin)",
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "additionalProperties": false, "required": ["certificate", "ca_certificate"],
                    "properties": {"certificate": {"type": "string", "description": "the node certificate (PEM) from yui ca issue, possibly followed by a cross certificate"},
                        "ca_certificate": {"type": "string", "description": "the consortium CA certificate(s) (PEM): ca.cert.pem, or ca-bundle.pem during a CA rollover"},
                        "revocations": {"type": ["string", "null"], "description": "at the end of a CA rollover: the revocation list the new CA signed (PEM)"}}}}}},
                "responses": {"200": {"description": "installed: town, node_id, not_after, rotated_from, joined, peer_port, trusted_cas"},
                    "400": error("the certificate does not fit this node (invalid_certificate)"), "403": error("needs the admin role")}}},
            "/api/v1/certificate/new-key": {"post": {"summary": "Make a new node key and its certificate request; the current key stays in use until the certificate for the new one is installed (admin)",
                "responses": {"201": {"description": "node_id (of the new key), request (PEM), request_path"}, "403": error("needs the admin role")}}},
            "/api/v1/status": {"get": {"summary": "Node, membership, peers and record counts",
                "responses": {"200": {"description": "status"}}}},
            "/api/v1/openapi.json": {"get": {"summary": "This document", "responses": {"200": {"description": "OpenAPI"}}}},
            "/healthz": {"get": {"summary": "Liveness (no token needed)", "security": [],
                "responses": {"200": {"description": "ok"}}}},
            "/metrics": {"get": {"summary": "Prometheus metrics (no token needed)", "security": [],
                "responses": {"200": {"description": "text exposition format"}}}}
        }
    });
    doc["paths"]["/api/v1/users"] = users;
    doc["paths"]["/api/v1/audit"] = audit;
    // Daily work (issue 6)
    for (path, item) in super::views::openapi_paths() {
        doc["paths"][path] = item;
    }
    // KPI (issue 6)
    let year = json!([{"name": "fiscal_year", "in": "query", "schema": {"type": "integer", "minimum": FISCAL_YEAR_MIN, "maximum": FISCAL_YEAR_MAX},
        "description": "fiscal year (April to March: 2024 is 2024-04-01 to 2025-03-31); default: the current one in Japan"}]);
    let figures = json!({"type": "object", "properties": {
        "new_hires": {"type": "integer"}, "pilot_projects": {"type": "integer"},
        "dx_certified_businesses": {"type": "integer"}, "member_municipalities": {"type": "integer"}}});
    doc["paths"]["/api/v1/kpi"] = json!({"get": {"summary": "The consortium's KPI roll-up for one fiscal year: each town's published kpi_reports figures, totals against the targets, missing and stale towns",
        "description": "Totals sum new hires, pilot projects and DX-certified businesses over towns; member municipalities is the largest any town reported. A member town (this node, its peers, the towns of shared records) without a report for the year is missing; a report last changed more than 90 days before today (or before the year's end, for a past year) is stale.",
        "parameters": year,
        "responses": {"200": {"description": "roll-up", "content": {"application/json": {"schema": {"type": "object", "properties": {
            "fiscal_year": {"type": "integer"},
            "towns": {"type": "array", "items": {"type": "object", "properties": {
                "town": {"type": "string"}, "figures": {"oneOf": [figures, {"type": "null"}]},
                "as_of": {"type": ["string", "null"], "format": "date-time"}, "record_id": {"type": ["string", "null"]},
                "stale": {"type": "boolean"}}}},
            "total": figures, "targets": figures,
            "missing": {"type": "array", "items": {"type": "string"}},
            "stale": {"type": "array", "items": {"type": "string"}}}}}}},
            "400": error("bad fiscal year")}}});
    doc["paths"]["/api/v1/kpi.csv"] = json!({"get": {"summary": "The KPI roll-up as CSV for grant reports (UTF-8 with a BOM; one line per town, then total and target)",
        "parameters": year,
        "responses": {"200": {"description": "attachment yui-kpi-FY<year>.csv: fiscal_year,town,new_hires,pilot_projects,dx_certified_businesses,member_municipalities,reported,as_of,stale",
            "content": {"text/csv": {"schema": {"type": "string"}}}}, "400": error("bad fiscal year")}}});
    doc["paths"]["/api/v1/kpi/draft"] = json!({"get": {"summary": "This town's KPI draft for a fiscal year, computed from its records, and its published report if any (editor)",
        "description": "new_hires: this town's workers who joined in the year and are active, paused or left; pilot_projects: its pilot_results that started in the year and are running or completed; dx_certified_businesses: 0 (no record kind; fill it in); member_municipalities: the member towns this node knows. Publish by creating (POST /api/v1/records/kpi_reports) or updating (PATCH with report_id) the report.",
        "parameters": year,
        "responses": {"200": {"description": "draft", "content": {"application/json": {"schema": {"type": "object", "properties": {
            "town": {"type": "string"}, "fiscal_year": {"type": "integer"},
            "period": {"type": "object", "properties": {"start": {"type": "string", "format": "date"}, "end": {"type": "string", "format": "date"}}},
            "figures": figures,
            "basis": {"type": "object", "properties": {
                "hires": {"type": "array", "items": {"type": "string"}, "description": "ids of the workers counted"},
                "pilots": {"type": "array", "items": {"type": "string"}, "description": "ids of the pilot results counted"},
                "members": {"type": "array", "items": {"type": "string"}}}},
            "report_id": {"type": ["string", "null"]},
            "report": {"type": ["object", "null"], "description": "id, updated_at and fields of the published report"}}}}}},
            "400": error("bad fiscal year"), "403": error("needs the editor role")}}});
    doc["components"]["responses"] = json!({"Unauthorized": {
        "description": "no token, or one the node does not know (missing_token, invalid_token)",
        "headers": {"WWW-Authenticate": {"description": "Bearer realm=\"yui\", with error=\"invalid_token\" for an unknown token", "schema": {"type": "string"}}},
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}});
    if let Some(paths) = doc["paths"].as_object_mut() {
        for operation in paths
            .values_mut()
            .filter_map(Value::as_object_mut)
            .flat_map(|p| p.values_mut())
        {
            let open = operation.get("security").is_some_and(|s| s == &json!([]));
            if let Some(responses) = operation
                .get_mut("responses")
                .and_then(Value::as_object_mut)
                && !open
            {
                responses.insert(
                    "401".into(),
                    json!({"$ref": "#/components/responses/Unauthorized"}),
                );
            }
        }
    }
    doc
}
