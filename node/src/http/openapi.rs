//! The OpenAPI 3.1 document of the local API, generated from the code: the
//! record schemas from the schema tables in `yui_protocol::schema`
//! ([`records`]), the limits from the constants the handlers use, so it
//! cannot drift from what the node validates. It is the API's contract:
//! Schemathesis checks the node against it in CI (`tests/it/contract.rs`),
//! and a client generated from it drives a node in a test.
//!
//! Every operation lists every status it can answer. The ones every
//! operation shares are added at the end by [`shared_answers`]: 401 behind
//! the token, 421 for a foreign `Host`, 500 and 503 where the store is
//! involved, 507 on the operations that write.

mod records;

pub(crate) use records::{WHITE_SPACE, executable_example};

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Map, Value, json};
use yui_protocol::Collection;
use yui_protocol::schema::{FISCAL_YEAR_MAX, FISCAL_YEAR_MIN};

use super::extract::ViewerAccess;

/// `GET /api/v1/openapi.json`.
pub(super) async fn serve(_: ViewerAccess) -> Response {
    super::json_response(StatusCode::OK, &document())
}

/// An error answer in the §8 shape; `description` names its codes.
pub(crate) fn error(description: &str) -> Value {
    json!({"description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
}

/// An operation's `responses` from (status, response) pairs.
pub(crate) fn answers(list: &[(&str, Value)]) -> Value {
    Value::Object(
        list.iter()
            .map(|(status, v)| ((*status).to_owned(), v.clone()))
            .collect(),
    )
}

/// A JSON answer with `schema`.
fn json_answer(description: &str, schema: Value) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": schema}}})
}

/// The operations that write to the data directory, and so can answer 507
/// `storage_full` when its disk is full.
fn writes(operation_id: &str) -> bool {
    let records = ["create_", "update_", "delete_", "import_", "upload_"];
    records.iter().any(|p| operation_id.starts_with(p))
        || matches!(
            operation_id,
            "sync_now"
                | "add_peer"
                | "remove_peer"
                | "install_revocations"
                | "install_certificate"
                | "new_key"
        )
}

fn error_schemas(schemas: &mut Map<String, Value>) {
    schemas.insert("ImportProblem".into(), json!({"type": "object", "required": ["row", "column", "field", "code", "message"],
        "description": "one problem of an imported CSV file",
        "properties": {
            "row": {"type": "integer", "minimum": 0, "description": "Excel's row number: the header is row 1, the first record row 2; 0 for the file as a whole"},
            "column": {"type": ["string", "null"], "description": "the column's heading as the file has it"},
            "field": {"type": ["string", "null"], "description": "the field's API name (skills[0].level inside a list), or id"},
            "code": {"type": "string", "description": "unreadable_file, empty_file, too_many_rows, unknown_column, duplicate_column, unnamed_column, extra_cells, invalid_id, duplicate_id, record_not_found, record_deleted, not_the_owner, personal_data, conflict, or a field code (missing_field, invalid_type, invalid_enum, invalid_date, invalid_reference, …)"},
            "message": {"type": "string"}}}));
    schemas.insert("ImportReport".into(), json!({"type": "object", "additionalProperties": false,
        "required": ["collection", "dry_run", "encoding", "rows", "created", "updated", "unchanged"],
        "properties": {
            "collection": {"type": "string"}, "dry_run": {"type": "boolean"},
            "encoding": {"type": "string", "enum": ["UTF-8", "Shift_JIS", "UTF-16LE", "UTF-16BE"], "description": "how the file was read"},
            "rows": {"type": "integer", "minimum": 0, "description": "record rows in the file (empty rows are skipped)"},
            "created": {"type": "integer", "minimum": 0}, "updated": {"type": "integer", "minimum": 0},
            "unchanged": {"type": "integer", "minimum": 0, "description": "rows whose record already holds every value of the row"}}}));
    schemas.insert("FieldError".into(), json!({"type": "object", "required": ["field", "code", "message"], "properties": {
        "field": {"type": "string", "description": "the field's path: title, tags[2], metrics[0].name, or * for the whole record"},
        "code": {"type": "string", "enum": ["unknown_field", "missing_field", "invalid_type", "invalid_enum", "too_long", "too_many_items", "out_of_range", "invalid_date", "invalid_format", "invalid_character", "invalid_reference", "record_too_large", "invalid_order"]},
        "message": {"type": "string"}}}));
    schemas.insert("Finding".into(), json!({"type": "object", "required": ["field", "kind", "start", "end", "excerpt", "may_override"],
        "description": "personal data the guard found in a shared record",
        "properties": {
            "field": {"type": "string"},
            "kind": {"type": "string", "enum": ["phone", "email", "postal_code", "birth_date", "my_number", "registered_name"]},
            "start": {"type": "integer", "minimum": 0}, "end": {"type": "integer", "minimum": 0},
            "excerpt": {"type": "string", "description": "the found text, masked"},
            "may_override": {"type": "boolean", "description": "whether an administrator may store it anyway (never My Number)"}}}));
    schemas.insert("Error".into(), json!({
        "type": "object",
        "required": ["error"],
        "properties": {"error": {"type": "object", "required": ["code", "message"], "properties": {
            "code": {"type": "string", "description": "stable snake_case reason; each answer's description lists the codes it carries"},
            "message": {"type": "string", "description": "for people, in English"},
            "fields": {"type": "array", "items": {"$ref": "#/components/schemas/FieldError"}, "description": "with validation_failed: every problem"},
            "findings": {"type": "array", "items": {"$ref": "#/components/schemas/Finding"}, "description": "with personal_data"},
            "problems": {"type": "array", "items": {"$ref": "#/components/schemas/ImportProblem"}, "description": format!("with import_rejected: every problem of the file, in row order (at most {})", crate::import::MAX_REPORTED_PROBLEMS)},
            "problem_count": {"type": "integer", "minimum": 1, "description": "with import_rejected: how many problems there are in all"}
        }}},
        "example": {"error": {"code": "validation_failed", "message": "title: is required",
            "fields": [{"field": "title", "code": "missing_field", "message": "is required"}]}}
    }));
}

/// `/api/v1/status`, `/sync`, `/peers`, `/revocations`, `/certificate`,
/// `/users`, `/audit`: the node's own state and its administration.
fn admin_paths(doc: &mut Value) {
    let any_object = json!({"type": "object"});
    let peer = json!({"type": "object", "required": ["url"], "properties": {
        "url": {"type": "string"}, "town": {"type": ["string", "null"]}, "node_id": {"type": ["string", "null"]},
        "state": {"type": "string", "description": "ok, failing or new"}}});
    let paths = &mut doc["paths"];
    paths["/api/v1/status"] = json!({"get": {"operationId": "status", "tags": ["node"], "summary": "ノードの状態 / Node, membership, peers and record counts",
        "responses": answers(&[("200", json_answer("status", json!({"type": "object",
            "required": ["town", "name", "node_id", "version", "membership", "peers", "collections", "storage"],
            "properties": {"town": {"type": "string"}, "name": {"type": "string"}, "node_id": {"type": "string"}, "version": {"type": "string"},
                "membership": any_object, "peers": {"type": "array", "items": peer.clone()}, "inbound": {"type": "array", "items": any_object.clone()},
                "collections": {"type": "object", "additionalProperties": {"type": "object", "required": ["scope", "count"], "properties": {
                    "scope": {"type": "string", "enum": ["local", "shared"]}, "count": {"type": "integer", "minimum": 0}}}},
                "storage": any_object}})))])}});
    paths["/api/v1/sync"] = json!({"post": {"operationId": "sync_now", "tags": ["node"], "summary": "今すぐ同期 / Sync with every peer now, both ways; answers when done (editor; audited as sync.now)",
        "responses": answers(&[("200", json_answer("per peer: url, town, ok, error, docs_in, docs_out", json!({"type": "object", "required": ["peers"],
                "properties": {"peers": {"type": "array", "items": any_object}}}))),
            ("403", error("needs the editor role (forbidden)")),
            ("409", error("the node has not joined a consortium (conflict)"))])}});
    paths["/api/v1/peers"] = json!({
        "get": {"operationId": "list_peers", "tags": ["node"], "summary": "ピアの一覧 / The peers this node dials, with their sync state",
            "responses": answers(&[("200", json_answer("peers: url, town, node_id, state (ok|failing|new), last_sync_at, last_error, pending, …",
                json!({"type": "object", "required": ["peers"], "properties": {"peers": {"type": "array", "items": peer}}})))])},
        "post": {"operationId": "add_peer", "tags": ["node"], "summary": "ピアを追加 / Add a peer (a running member node starts syncing with it at once) (admin)",
            "requestBody": {"required": true, "content": {"application/json": {"schema": {
                "type": "object", "required": ["url"], "additionalProperties": false,
                "properties": {"url": {"type": "string", "description": "https://HOST:PORT (the port defaults to 7443)",
                        "pattern": "^https://(?:(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\\.)*[A-Za-z](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?|(?:(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])|\\[(?:(?:[0-9A-Fa-f]{1,4}:){7}[0-9A-Fa-f]{1,4}|(?:[0-9A-Fa-f]{1,4}:){1,7}:|(?:[0-9A-Fa-f]{1,4}:){1,6}:[0-9A-Fa-f]{1,4}|(?:[0-9A-Fa-f]{1,4}:){1,5}(?::[0-9A-Fa-f]{1,4}){1,2}|(?:[0-9A-Fa-f]{1,4}:){1,4}(?::[0-9A-Fa-f]{1,4}){1,3}|(?:[0-9A-Fa-f]{1,4}:){1,3}(?::[0-9A-Fa-f]{1,4}){1,4}|(?:[0-9A-Fa-f]{1,4}:){1,2}(?::[0-9A-Fa-f]{1,4}){1,5}|[0-9A-Fa-f]{1,4}:(?::[0-9A-Fa-f]{1,4}){1,6}|:(?:(?::[0-9A-Fa-f]{1,4}){1,7}|:))\\])(?::(?:[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?/?$",
                        "example": "https://yui.omachi.example.jp:7443"},
                    "node_id": {"type": ["string", "null"], "description": "the peer's node id, if known: 52 characters of A-Z and 2-7 (case, dashes and spaces are forgiven; stored in groups of four); empty means unknown",
                        "pattern": format!("^(?:[{}]*|[ -]*(?:[A-Za-z2-7][ -]*){{51}}[AQaq][ -]*)$", records::WHITE_SPACE)}}},
                "examples": {"ja": {"summary": "大町市のノード", "value": {"url": "https://yui.omachi.example.jp:7443"}}}}}},
            "responses": answers(&[("201", {
                    let mut created = json_answer("added", json!({"type": "object", "required": ["peer"], "properties": {"peer": any_object}}));
                    created["headers"] = json!({"Location": {"required": true, "description": "/api/v1/peers/{key}, the stored URL percent-encoded (what DELETE takes)", "schema": {"type": "string"}}});
                    created["links"] = json!({"RemovePeer": {"operationId": "remove_peer", "parameters": {"key": "$response.body#/peer/url"}}});
                    created
                }),
                ("400", error("not JSON or not of this shape (malformed_json, invalid_body), not a peer URL (invalid_peer_url: not https://HOST:PORT, or port 0) or not a node id (invalid_node_id)")),
                ("403", error("needs the admin role (forbidden)")), ("409", error("already a peer (conflict)")),
                ("413", error("the body is larger than 1 MiB (body_too_large)"))])}
    });
    paths["/api/v1/peers/{key}"] = json!({"delete": {"operationId": "remove_peer", "tags": ["node"], "summary": "ピアを外す / Remove a peer by node id or URL (URL-encoded) (admin)",
        "parameters": [{"name": "key", "in": "path", "required": true, "schema": {"type": "string"}}],
        "responses": answers(&[("204", json!({"description": "removed"})), ("403", error("needs the admin role (forbidden)")), ("404", error("no such peer (not_found)"))])}});
    paths["/api/v1/revocations"] = json!({"post": {"operationId": "install_revocations", "tags": ["node"],
        "summary": "失効リストを入れる / Install a revocation list, signed by the consortium CA and newer than the one installed (admin)",
        "description": "The body is the PEM text `yui ca revoke` writes, whatever its Content-Type (text/plain or application/x-pem-file).",
        "requestBody": {"required": true, "content": {"text/plain": {"schema": {"type": "string",
            "pattern": "-----BEGIN X509 CRL-----[\\s\\S]*-----END X509 CRL-----"}}}},
        "responses": answers(&[("200", json_answer("installed (false when not newer) and the number installed now", json!({"type": "object", "required": ["installed", "number"],
                "properties": {"installed": {"type": "boolean"}, "number": {"type": "integer", "minimum": 0}}}))),
            ("400", error("not a revocation list signed by the consortium CA (invalid_revocations)")), ("403", error("needs the admin role (forbidden)")),
            ("409", error("the node has not joined a consortium (conflict)")), ("413", error("the body is larger than 1 MiB (body_too_large)"))])}});
    let pem = |what: &str| {
        json!({"type": "string", "description": what,
        "pattern": "-----BEGIN CERTIFICATE-----[\\s\\S]*-----END CERTIFICATE-----"})
    };
    paths["/api/v1/certificate"] = json!({"post": {"operationId": "install_certificate", "tags": ["node"],
        "summary": "証明書を入れる / Install a node certificate on the running node, in use at once: joining (opens the peer port), renewal, the certificate for a rotated key, or a CA rollover (admin)",
        "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "additionalProperties": false, "required": ["certificate", "ca_certificate"],
            "properties": {"certificate": pem("the node certificate (PEM) from yui ca issue, possibly followed by a cross certificate"),
                "ca_certificate": pem("the consortium CA certificate(s) (PEM): ca.cert.pem, or ca-bundle.pem during a CA rollover"),
                "revocations": {"type": ["string", "null"], "description": "at the end of a CA rollover: the revocation list the new CA signed (PEM)",
                    "pattern": "-----BEGIN X509 CRL-----[\\s\\S]*-----END X509 CRL-----"}}}}}},
        "responses": answers(&[("200", json_answer("installed: town, node_id, not_after, rotated_from, joined, peer_port, trusted_cas", json!({"type": "object"}))),
            ("400", error("not JSON or not of this shape (malformed_json, invalid_body), or the certificate does not fit this node (invalid_certificate)")),
            ("403", error("needs the admin role (forbidden)")), ("413", error("the body is larger than 1 MiB (body_too_large)"))])}});
    paths["/api/v1/certificate/new-key"] = json!({"post": {"operationId": "new_key", "tags": ["node"],
        "summary": "新しい鍵 / Make a new node key and its certificate request; the current key stays in use until the certificate for the new one is installed (admin)",
        "responses": answers(&[("201", json_answer("node_id (of the new key), request (PEM), request_path", json!({"type": "object", "required": ["node_id", "request"],
                "properties": {"node_id": {"type": "string"}, "request": {"type": "string"}, "request_path": {"type": "string"}}}))),
            ("403", error("needs the admin role (forbidden)"))])}});
    let limit = json!({"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1,
        "maximum": super::MAX_AUDIT_PAGE, "default": super::DEFAULT_AUDIT_PAGE}});
    paths["/api/v1/users"] = json!({"get": {"operationId": "list_users", "tags": ["node"], "summary": "利用者の一覧 / The local users and their roles (admin)",
        "responses": answers(&[("200", json_answer("users", json!({
            "type": "object", "required": ["users"], "properties": {"users": {"type": "array", "items": {"type": "object", "required": ["name", "role"], "properties": {
                "name": {"type": "string"}, "role": {"type": "string", "enum": ["viewer", "editor", "admin"]},
                "created_at": {"type": "string", "format": "date-time"},
                "last_login_at": {"type": ["string", "null"], "format": "date-time"},
                "locked_until": {"type": ["string", "null"], "format": "date-time", "description": "set while locked out after failed logins"}}}}}}))),
            ("403", error("needs the admin role (forbidden)"))])}});
    paths["/api/v1/audit"] = json!({"get": {"operationId": "audit_log", "tags": ["node"], "summary": "監査ログ / The local audit log, newest first (admin)",
        "parameters": [limit.clone()],
        "responses": answers(&[("200", json_answer("entries", json!({
            "type": "object", "required": ["entries"], "properties": {"entries": {"type": "array", "items": {"type": "object", "properties": {
                "at": {"type": "string", "format": "date-time"}, "user": {"type": "string"},
                "action": {"type": "string", "description": "record.create, record.update, record.delete, peer.add, peer.remove, revocations.import, certificate.install, key.rotate, user.add, user.remove, user.passwd, user.role, token.create, token.revoke, login, login.failed, logout, kpi.publish, sync.now"},
                "target": {"type": "string"}, "detail": {"type": "string"}}}}}}))),
            ("400", error("a bad or unknown query parameter (invalid_query)")), ("403", error("needs the admin role (forbidden)"))])}});
    paths["/api/v1/audit/egress"] = json!({"get": {"operationId": "egress_log", "tags": ["node"],
        "summary": "送信記録 / Every document this node sent to a peer, newest first (admin: it shows what left the town)",
        "parameters": [
            {"name": "peer", "in": "query", "schema": {"type": "string"}, "description": "only what went to this peer (URL or node id)"},
            {"name": "since", "in": "query", "schema": {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}(T[0-9]{2}:[0-9]{2}(:[0-9]{2}(\\.[0-9]{1,9})?)?Z?)?$"},
                "description": "a date or time like 2026-11-21 or 2026-11-21T09:00:00Z"},
            limit],
        "responses": answers(&[("200", json_answer("entries", json!({"type": "object", "required": ["entries"],
                "properties": {"entries": {"type": "array", "items": {"type": "object"}}}}))),
            ("400", error("a bad or unknown query parameter (invalid_query)")), ("403", error("needs the admin role (forbidden)"))])}});
}

fn kpi_paths(doc: &mut Value) {
    let year = json!([{"name": "fiscal_year", "in": "query", "schema": {"type": "integer", "minimum": FISCAL_YEAR_MIN, "maximum": FISCAL_YEAR_MAX},
        "description": "fiscal year (April to March: 2024 is 2024-04-01 to 2025-03-31); default: the current one in Japan"}]);
    let bad_year = error("a bad fiscal year (invalid_fiscal_year) or query (invalid_query)");
    let figures = json!({"type": "object", "properties": {
        "new_hires": {"type": "integer"}, "pilot_projects": {"type": "integer"},
        "dx_certified_businesses": {"type": "integer"}, "member_municipalities": {"type": "integer"}}});
    let paths = &mut doc["paths"];
    paths["/api/v1/kpi"] = json!({"get": {"operationId": "kpi_rollup", "tags": ["kpi"], "summary": "KPIの集計 / The consortium's KPI roll-up for one fiscal year: each town's published kpi_reports figures, totals against the targets, missing and stale towns",
        "description": "Totals sum new hires, pilot projects and DX-certified businesses over towns; member municipalities is the largest any town reported. A member town (this node, its peers, the towns of shared records) without a report for the year is missing; a report last changed more than 90 days before today (or before the year's end, for a past year) is stale.",
        "parameters": year,
        "responses": answers(&[("200", json_answer("roll-up", json!({"type": "object", "properties": {
            "fiscal_year": {"type": "integer"},
            "towns": {"type": "array", "items": {"type": "object", "properties": {
                "town": {"type": "string"}, "figures": {"oneOf": [figures, {"type": "null"}]},
                "as_of": {"type": ["string", "null"], "format": "date-time"}, "record_id": {"type": ["string", "null"]},
                "stale": {"type": "boolean"}}}},
            "total": figures, "targets": figures,
            "missing": {"type": "array", "items": {"type": "string"}},
            "stale": {"type": "array", "items": {"type": "string"}}}}))),
            ("400", bad_year.clone())])}});
    paths["/api/v1/kpi.csv"] = json!({"get": {"operationId": "kpi_csv", "tags": ["kpi"], "summary": "KPIの集計（CSV） / The KPI roll-up as CSV for grant reports (UTF-8 with a BOM; one line per town, then total and target)",
        "parameters": year,
        "responses": answers(&[("200", json!({"description": "attachment yui-kpi-FY<year>.csv: fiscal_year,town,new_hires,pilot_projects,dx_certified_businesses,member_municipalities,reported,as_of,stale",
            "content": {"text/csv": {"schema": {"type": "string"}}}})), ("400", bad_year.clone())])}});
    paths["/api/v1/kpi/draft"] = json!({"get": {"operationId": "kpi_draft", "tags": ["kpi"], "summary": "KPIの下書き / This town's KPI draft for a fiscal year, computed from its records, and its published report if any (editor)",
        "description": "new_hires: this town's workers who joined in the year and are active, paused or left; pilot_projects: its pilot_results that started in the year and are running or completed; dx_certified_businesses: 0 (no record kind; fill it in); member_municipalities: the member towns this node knows. Publish by creating (POST /api/v1/records/kpi_reports) or updating (PATCH with report_id) the report.",
        "parameters": year,
        "responses": answers(&[("200", json_answer("draft", json!({"type": "object", "properties": {
            "town": {"type": "string"}, "fiscal_year": {"type": "integer"},
            "period": {"type": "object", "properties": {"start": {"type": "string", "format": "date"}, "end": {"type": "string", "format": "date"}}},
            "figures": figures,
            "basis": {"type": "object", "properties": {
                "hires": {"type": "array", "items": {"type": "string"}, "description": "ids of the workers counted"},
                "pilots": {"type": "array", "items": {"type": "string"}, "description": "ids of the pilot results counted"},
                "members": {"type": "array", "items": {"type": "string"}}}},
            "report_id": {"type": ["string", "null"]},
            "report": {"type": ["object", "null"], "description": "id, updated_at and fields of the published report"}}}))),
            ("400", bad_year), ("403", error("needs the editor role (forbidden)"))])}});
}

fn monitoring_paths(doc: &mut Value) {
    let paths = &mut doc["paths"];
    paths["/api/v1/openapi.json"] = json!({"get": {"operationId": "openapi", "tags": ["node"], "summary": "この文書 / This document",
        "responses": {"200": json_answer("OpenAPI 3.1", json!({"type": "object", "required": ["openapi", "paths"]}))}}});
    paths["/healthz"] = json!({"get": {"operationId": "healthz", "tags": ["monitoring"], "summary": "死活監視 / Liveness (no token needed)", "security": [],
        "responses": {
            "200": json_answer("alive, and the database answers", json!({"type": "object", "required": ["status", "town"], "properties": {
                "status": {"const": "ok"}, "town": {"type": "string"}, "integrity": {"type": "string", "enum": ["ok", "checking"]}}})),
            "503": json_answer("degraded (the database is damaged and takes no writes) or unavailable (the database does not answer)", json!({"type": "object", "required": ["status", "town", "error"], "properties": {
                "status": {"type": "string"}, "town": {"type": "string"}, "error": {"type": "object", "required": ["code", "message"]},
                "damaged_tables": {"type": "array", "items": {"type": "string"}}}}))}}});
    paths["/metrics"] = json!({"get": {"operationId": "metrics", "tags": ["monitoring"], "summary": "メトリクス / Prometheus metrics (no token needed)", "security": [],
        "responses": {"200": {"description": "text exposition format 0.0.4", "content": {"text/plain": {"schema": {"type": "string"}}}}}}});
}

/// Adds the answers many operations share: 401 to those behind the token,
/// 421 to all (`check_host` runs before routing), 500 and 503 to those that
/// reach the store, 415 to those that read a JSON body, 507 to those
/// that write.
fn shared_answers(doc: &mut Value) {
    let Some(paths) = doc["paths"].as_object_mut() else {
        return;
    };
    for operation in paths
        .values_mut()
        .filter_map(Value::as_object_mut)
        .flat_map(|p| p.values_mut())
        .filter_map(Value::as_object_mut)
    {
        let Some(id) = operation
            .get("operationId")
            .and_then(Value::as_str)
            .map(str::to_owned)
        else {
            continue;
        };
        let open = operation.get("security").is_some_and(|s| s == &json!([]));
        let json_body = operation
            .get("requestBody")
            .and_then(|b| b.pointer("/content/application~1json"))
            .is_some();
        let Some(responses) = operation
            .get_mut("responses")
            .and_then(Value::as_object_mut)
        else {
            continue;
        };
        if !open {
            responses.insert(
                "401".into(),
                json!({"$ref": "#/components/responses/Unauthorized"}),
            );
        }
        responses.insert("421".into(), error("the request's Host is not one this node answers to: open it as 127.0.0.1, localhost or [::1], or list the name in proxy_hosts (wrong_host)"));
        if id != "openapi" {
            responses.insert(
                "500".into(),
                error("the node failed; the log has the detail (storage_error)"),
            );
            if id != "healthz" {
                responses.insert("503".into(), error("the node is shutting down (shutting_down), or, for a write, its database is damaged and takes no writes until it is restored (database_damaged)"));
            }
        }
        if json_body {
            responses.insert("415".into(), error("the body is sent with a Content-Type that is not JSON, such as a form or text (unsupported_media_type); send 'Content-Type: application/json'"));
        }
        if writes(&id) {
            responses.insert("507".into(), error("the disk of the data directory is full: nothing was written; the node takes writes again when space is freed (storage_full)"));
        }
    }
}

pub fn document() -> Value {
    let mut schemas = Map::new();
    error_schemas(&mut schemas);
    records::common_schemas(&mut schemas);
    for c in Collection::ALL {
        records::schemas(c, &mut schemas);
    }
    let mut doc = json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Yui local API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The JSON API of one town's Yui node. Every /api/ request needs 'Authorization: Bearer TOKEN', where TOKEN is the node's token (the contents of DATA_DIR/api-token, which acts as an admin) or a user's token from `yui user token NAME`. A user token acts with its role: viewer reads; editor also creates, updates and deletes records and syncs now; admin also publishes KPI reports and manages peers, users and revocations. Each action needs the same role and leaves the same audit entry whichever way it comes (API, web console, yui commands). The scheme name is matched without regard to case (RFC 9110 §11.1). A request without a token, or with one the node does not know, answers 401 with WWW-Authenticate: Bearer realm=\"yui\" (and error=\"invalid_token\" for an unknown token). A role too low for a request answers 403 with code forbidden. Every failure answers {\"error\": {\"code\", \"message\", …}} with a stable code; a method a path does not take answers 405 with Allow, a path that does not exist 404 not_found. Records live in collections, each with its own paths and schemas here (/api/v1/records/knowledge, …); another name in that place answers 404 unknown_collection. A JSON request body is sent with Content-Type: application/json (or none); another Content-Type (a form, text) answers 415 unsupported_media_type. Every time in the API is RFC 3339 in UTC with exactly three fractional digits (2026-04-01T09:30:00.120Z), so times sort as text. A 201 carries Location, the path of what was created. Every change is recorded in the node's local audit log with the user's name; peers never see it."
        },
        "tags": Collection::ALL.iter().map(|c| json!({"name": c.name(), "description": format!("{} / {} ({})", c.label_ja(), c.label_en(), c.scope().as_str())})).collect::<Vec<_>>(),
        "components": {
            "securitySchemes": {"token": {"type": "http", "scheme": "bearer"}},
            "schemas": schemas,
            "responses": {"Unauthorized": {
                "description": "no token, or one the node does not know (missing_token, invalid_token)",
                "headers": {"WWW-Authenticate": {"required": true, "description": "Bearer realm=\"yui\", with error=\"invalid_token\" for an unknown token", "schema": {"type": "string"}}},
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}}
        },
        "security": [{"token": []}],
        "paths": {}
    });
    for c in Collection::ALL {
        for (path, item) in records::paths(c) {
            doc["paths"][path] = item;
        }
    }
    doc["paths"]["/api/v1/search"] = records::search();
    admin_paths(&mut doc);
    for (path, item) in super::views::openapi_paths() {
        doc["paths"][path] = item;
    }
    for (path, item) in super::spreadsheets::openapi_paths() {
        doc["paths"][path] = item;
    }
    kpi_paths(&mut doc);
    monitoring_paths(&mut doc);
    shared_answers(&mut doc);
    doc
}
