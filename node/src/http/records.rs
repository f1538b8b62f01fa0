//! `/api/v1/records/...` and `/api/v1/search`: the record handlers. Each
//! turns the request into the collection, the id and validated fields, and
//! makes one call: a read of the store, or a write through
//! [`records::OnBehalf`], which leaves the write's trail.

use std::collections::HashMap;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use yui_protocol::schema::{FieldDef, FieldKind};
use yui_protocol::validate::{validate_create, validate_patch};
use yui_protocol::{Collection, RecordId};

use super::extract::{Caller, JsonBody, QueryParams, ViewerAccess};
use super::{AppState, DEFAULT_PAGE, MAX_PAGE, json_response};
use crate::accounts::Principal;
use crate::actions::Action;
use crate::error::{Error, Result};
use crate::records::{self, Guarding, MIN_OVERRIDE_REASON_CHARS, OnBehalf, OverrideRefused};

/// A list of stored records, passed through without re-parsing them.
#[derive(serde::Serialize)]
struct Items<'a> {
    items: &'a [Box<serde_json::value::RawValue>],
    /// Present (possibly null) on paged lists, absent on search results.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<Option<String>>,
}

/// The record routes, nested under `/api/v1` behind the token layer.
pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/search", get(search))
        .route("/records/{collection}", get(list).post(create))
        .route(
            "/records/{collection}/{id}",
            get(get_one).patch(update).delete(delete),
        )
        .route("/records/{collection}/{id}/history", get(history))
        .route("/records/{collection}/{id}/conflicts", get(conflicts))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordBody {
    fields: Map<String, Value>,
    /// An administrator's decision to publish personal-data findings
    /// anyway (never My Number), with the reason for the audit log.
    #[serde(default)]
    personal_data_override: Option<GuardOverride>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GuardOverride {
    reason: String,
}

/// What a request asks of the personal-data guard: an override needs the
/// admin role and a written reason.
fn guarding(principal: &Principal, body: &RecordBody) -> Result<Guarding> {
    let Some(o) = &body.personal_data_override else {
        return Ok(Guarding::refuse());
    };
    Guarding::overriding(principal, &o.reason).map_err(|refused| match refused {
        OverrideRefused::NotAdministrator => Error::Forbidden {
            message: format!(
                "overriding the personal-data guard needs the admin role; {} has the {} role",
                principal.user, principal.role
            ),
        },
        OverrideRefused::NoReason => Error::bad_request(
            "override_reason_required",
            format!(
                "personal_data_override.reason must say why (at least {MIN_OVERRIDE_REASON_CHARS} characters); it goes to the audit log"
            ),
        ),
    })
}

pub(super) fn collection(name: &str) -> Result<Collection> {
    name.parse().map_err(|_| Error::UnknownCollection {
        name: name.chars().take(40).collect(),
        known: Collection::ALL.map(|c| c.name()).join(", "),
    })
}

/// The collection and record id of a record's path; a malformed id cannot
/// name any record.
pub(super) fn record_path(name: &str, id: &str) -> Result<(Collection, String)> {
    let collection = collection(name)?;
    let id = id
        .parse::<RecordId>()
        .map(String::from)
        .map_err(|_| Error::RecordNotFound {
            collection: collection.name().to_owned(),
            id: id.chars().take(60).collect(),
        })?;
    Ok((collection, id))
}

async fn create(
    Caller(principal): Caller,
    State(node): State<AppState>,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<RecordBody>,
) -> Result<Response> {
    let collection = collection(&name)?;
    Action::Create(collection).check(&principal)?;
    let guarding = guarding(&principal, &body)?;
    let fields = validate_create(collection, &body.fields)?;
    let written = on_behalf(&node, &principal, &guarding)
        .create(collection, fields)
        .await?;
    let mut response = json_response(StatusCode::CREATED, &written.record);
    super::set_location(
        &mut response,
        &format!("/api/v1/records/{}/{}", collection.name(), written.id),
    );
    Ok(response)
}

/// A record by its path. A deleted record is gone from its path, for
/// reads as for writes (404); its tombstone shows in the collection's list
/// with `include_deleted=true`.
async fn get_one(
    _: ViewerAccess,
    State(node): State<AppState>,
    Path((name, id)): Path<(String, String)>,
) -> Result<Response> {
    let (collection, id) = record_path(&name, &id)?;
    let record = node.store.get(collection, id, false).await?;
    Ok(json_response(StatusCode::OK, &record))
}

async fn update(
    Caller(principal): Caller,
    State(node): State<AppState>,
    Path((name, id)): Path<(String, String)>,
    JsonBody(body): JsonBody<RecordBody>,
) -> Result<Response> {
    let (collection, id) = record_path(&name, &id)?;
    Action::Update(collection).check(&principal)?;
    let guarding = guarding(&principal, &body)?;
    let patch = validate_patch(collection, &body.fields)?;
    let written = on_behalf(&node, &principal, &guarding)
        .update(collection, id, patch)
        .await?;
    Ok(json_response(StatusCode::OK, &written.record))
}

async fn delete(
    Caller(principal): Caller,
    State(node): State<AppState>,
    Path((name, id)): Path<(String, String)>,
) -> Result<StatusCode> {
    let (collection, id) = record_path(&name, &id)?;
    records::delete(&node, &principal, collection, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn list(
    _: ViewerAccess,
    State(node): State<AppState>,
    Path(name): Path<String>,
    QueryParams(params): QueryParams<HashMap<String, String>>,
) -> Result<Response> {
    let collection = collection(&name)?;
    let mut q = crate::store::ListQuery {
        limit: DEFAULT_PAGE,
        ..Default::default()
    };
    for (key, value) in params {
        match key.as_str() {
            "limit" => {
                q.limit = value
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_PAGE).contains(n))
                    .ok_or_else(|| {
                        Error::bad_request(
                            "invalid_query",
                            format!("limit must be a whole number from 1 to {MAX_PAGE}"),
                        )
                    })?;
            }
            "cursor" => q.cursor = Some(value),
            "include_deleted" => q.include_deleted = query_bool("include_deleted", &value)?,
            field => {
                let def = collection
                    .field(field)
                    .filter(|d| d.kind.is_filterable())
                    .ok_or_else(|| {
                        let filterable: Vec<_> = collection
                            .fields()
                            .iter()
                            .filter(|d| d.kind.is_filterable())
                            .map(|d| d.name)
                            .collect();
                        Error::bad_request(
                            "invalid_query",
                            format!(
                                "{field:?} is not a query parameter of {collection}; use limit, cursor, include_deleted or a filter on one of: {}",
                                filterable.join(", ")
                            ),
                        )
                    })?;
                q.filters
                    .push((def.name, filter_value(collection, def, value)?));
            }
        }
    }
    let page = node.store.list(collection, q).await?;
    Ok(json_response(
        StatusCode::OK,
        &Items {
            items: &page.items,
            next_cursor: Some(page.next_cursor),
        },
    ))
}

/// A boolean query parameter: `true` or `false`, nothing else.
fn query_bool(name: &str, value: &str) -> Result<bool> {
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(Error::bad_request(
            "invalid_query",
            format!("{name} must be true or false"),
        )),
    }
}

/// A list filter's value, checked as the field's own values are (a filter
/// that no stored value could match is a mistake worth saying), in the form
/// the stored value has (trimmed, a number for a number).
fn filter_value(collection: Collection, def: &FieldDef, value: String) -> Result<Value> {
    let field = def.name;
    let value = match def.kind {
        FieldKind::Int { .. } => Value::from(value.parse::<i64>().map_err(|_| {
            Error::bad_request("invalid_query", format!("{field} must be a whole number"))
        })?),
        _ => Value::String(value),
    };
    let one = Map::from_iter([(field.to_owned(), value)]);
    let checked = validate_patch(collection, &one).map_err(|e| {
        Error::bad_request(
            "invalid_query",
            format!("the filter {field} is not a possible value: {e}"),
        )
    })?;
    match checked.get(field) {
        Some(Some(v)) => Ok(v.to_json()),
        // `null` is no query value; a required field cannot be null.
        _ => Err(Error::bad_request(
            "invalid_query",
            format!("the filter {field} needs a value"),
        )),
    }
}

#[derive(Deserialize)]
struct SearchParams {
    q: Option<String>,
    collection: Option<String>,
    limit: Option<usize>,
}

async fn search(
    _: ViewerAccess,
    State(node): State<AppState>,
    QueryParams(params): QueryParams<SearchParams>,
) -> Result<Response> {
    let q = params.q.filter(|q| !q.trim().is_empty()).ok_or_else(|| {
        Error::bad_request("invalid_query", "give the words to search for as ?q=…")
    })?;
    if q.chars().count() > 200 {
        return Err(Error::bad_request(
            "invalid_query",
            "the search text is longer than 200 characters",
        ));
    }
    // A bad parameter of the search is a bad query, not a missing resource.
    let collection = params
        .collection
        .as_deref()
        .map(collection)
        .transpose()
        .map_err(|e| Error::bad_request("invalid_query", e.to_string()))?;
    let limit = params.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(Error::bad_request(
            "invalid_query",
            format!("limit must be a whole number from 1 to {MAX_PAGE}"),
        ));
    }
    let items = node.store.search(q, collection, limit).await?;
    Ok(json_response(
        StatusCode::OK,
        &Items {
            items: &items,
            next_cursor: None,
        },
    ))
}

/// A deleted record's history and conflicts are gone with it (404), as
/// the record is.
async fn check_readable(node: &AppState, collection: Collection, id: &str) -> Result<()> {
    node.store.get(collection, id.to_owned(), false).await?;
    Ok(())
}

async fn history(
    _: ViewerAccess,
    State(node): State<AppState>,
    Path((name, id)): Path<(String, String)>,
) -> Result<Response> {
    let (collection, id) = record_path(&name, &id)?;
    check_readable(&node, collection, &id).await?;
    let changes = node.history(collection, id).await?;
    Ok(json_response(StatusCode::OK, &json!({"changes": changes})))
}

async fn conflicts(
    _: ViewerAccess,
    State(node): State<AppState>,
    Path((name, id)): Path<(String, String)>,
) -> Result<Response> {
    let (collection, id) = record_path(&name, &id)?;
    check_readable(&node, collection, &id).await?;
    let conflicts = node.store.conflicts(collection, id).await?;
    Ok(json_response(
        StatusCode::OK,
        &json!({ "conflicts": conflicts }),
    ))
}
fn on_behalf<'a>(
    node: &'a AppState,
    principal: &'a Principal,
    guarding: &'a Guarding,
) -> OnBehalf<'a> {
    OnBehalf {
        node,
        principal,
        guarding,
    }
}
