//! Records in the console: browse a collection with the API's filters and
//! paging, view a record with its history and conflicts, create and edit
//! through forms generated from the schema, delete after a confirmation,
//! and search across collections.
//!
//! Writes go through `yui_protocol::validate` and the same `Store` calls as
//! the JSON API, so validation and search indexing are identical; validation
//! errors come back by field and stable code and are shown next to the field
//! in the visitor's language.

use std::collections::HashMap;

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::{Map, Value};
use yui_protocol::guard;
use yui_protocol::schema::{FieldDef, FieldKind};
use yui_protocol::validate::{validate_create, validate_patch};
use yui_protocol::{Collection, FieldError, RecordId, RecordView, ValidationErrors};

use super::i18n::Lang;
use super::{AppState, Chrome, FormPairs, PageError, SignedIn, render, show_time, url_encode};
use crate::records::{self, Guarding, OnBehalf, OverrideRefused};
use crate::store::ListQuery;

const PAGE_SIZE: usize = 25;
/// Records offered in a reference picker.
const REF_CHOICES: usize = 200;

pub fn record_href(collection: Collection, id: &str) -> String {
    format!("/records/{}/{}", collection.name(), url_encode(id))
}

/// A short name for a record: its first single-line or long text field,
/// else its fiscal year and town id (KPI reports), else its id.
pub fn record_title(collection: Collection, view: &RecordView) -> String {
    title_naming(collection, view, &view.town)
}

/// [`record_title`] with a KPI report's town by its name, for pages that
/// have the names at hand.
pub fn record_title_named(
    collection: Collection,
    view: &RecordView,
    names: &crate::pki::TownNames,
) -> String {
    title_naming(collection, view, names.show(&view.town))
}

fn title_naming(collection: Collection, view: &RecordView, town: &str) -> String {
    for def in collection.fields() {
        if let Some(Value::String(s)) = view.fields.get(def.name)
            && matches!(def.kind, FieldKind::Str { .. } | FieldKind::Text { .. })
            && !s.trim().is_empty()
        {
            return s.chars().take(80).collect();
        }
    }
    if let Some(year) = view.fields.get("fiscal_year") {
        return format!("{year} / {town}");
    }
    view.id.to_string()
}

fn collection_of(who: &SignedIn, name: &str) -> Result<Collection, PageError> {
    name.parse()
        .map_err(|_| who.error(StatusCode::NOT_FOUND, who.m().unknown_collection))
}

fn id_of(who: &SignedIn, id: &str) -> Result<String, PageError> {
    id.parse::<RecordId>()
        .map(String::from)
        .map_err(|_| who.error(StatusCode::NOT_FOUND, who.m().record_not_found))
}

async fn load(
    node: &AppState,
    who: &SignedIn,
    collection: Collection,
    id: String,
    include_deleted: bool,
) -> Result<RecordView, PageError> {
    let raw = node
        .store
        .get(collection, id, include_deleted)
        .await
        .map_err(|e| who.failed(e))?;
    serde_json::from_str(raw.get()).map_err(|e| who.failed(crate::Error::Storage(e.to_string())))
}

fn parse_views(items: &[Box<serde_json::value::RawValue>]) -> Vec<RecordView> {
    items
        .iter()
        .filter_map(|raw| serde_json::from_str(raw.get()).ok())
        .collect()
}

/// A value as one line of text, with enum values as their labels.
fn value_text(lang: Lang, def: &FieldDef, value: &Value) -> String {
    match (def.kind, value) {
        (FieldKind::Enum(options), Value::String(s)) => options
            .iter()
            .find(|o| o.value == s)
            .map_or_else(|| s.clone(), |o| lang.option(o).to_owned()),
        (_, Value::String(s)) => s.clone(),
        (_, Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
            .collect::<Vec<_>>()
            .join(", "),
        (_, Value::Null) => String::new(),
        (_, other) => other.to_string(),
    }
}

// ---------------------------------------------------------------- index and list

struct CollectionLink {
    label: &'static str,
    name: &'static str,
    shared: bool,
}

#[derive(Template)]
#[template(path = "records_index.html")]
struct IndexPage {
    chrome: Chrome,
    collections: Vec<CollectionLink>,
}

pub async fn index(who: SignedIn) -> Response {
    let lang = who.lang();
    let collections = Collection::ALL
        .into_iter()
        .map(|c| CollectionLink {
            label: lang.collection(c),
            name: c.name(),
            shared: c.is_shared(),
        })
        .collect();
    render(
        StatusCode::OK,
        &IndexPage {
            chrome: who.chrome(who.m().records_title, "records"),
            collections,
        },
    )
}

struct Choice {
    value: String,
    label: String,
    selected: bool,
}

struct Filter {
    name: &'static str,
    label: &'static str,
    value: String,
    /// Empty for a text box.
    choices: Vec<Choice>,
}

struct Row {
    href: String,
    title: String,
    cells: Vec<String>,
    town: String,
    updated: String,
    deleted: bool,
}

#[derive(Template)]
#[template(path = "records_list.html")]
struct ListPage {
    chrome: Chrome,
    collection: &'static str,
    label: &'static str,
    notice: Option<&'static str>,
    can_write: bool,
    filters: Vec<Filter>,
    include_deleted: bool,
    columns: Vec<&'static str>,
    rows: Vec<Row>,
    next_href: Option<String>,
    first_href: Option<String>,
}

/// Fields shown as list columns: short values, not long texts or lists.
fn columns(collection: Collection) -> Vec<&'static FieldDef> {
    collection
        .fields()
        .iter()
        .filter(|d| d.kind.is_filterable() && !matches!(d.kind, FieldKind::Ref(_)))
        .skip(1)
        .take(3)
        .collect()
}

fn notice(who: &SignedIn, done: Option<&str>) -> Option<&'static str> {
    let m = who.m();
    match done? {
        "created" => Some(m.notice_created),
        "updated" => Some(m.notice_updated),
        "deleted" => Some(m.notice_deleted),
        "attached" => Some(m.notice_attached),
        "detached" => Some(m.notice_detached),
        _ => None,
    }
}

pub async fn list(
    State(node): State<AppState>,
    who: SignedIn,
    Path(name): Path<String>,
    Query(params): Query<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let collection = collection_of(&who, &name)?;
    let lang = who.lang();
    let get = |key: &str| {
        params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    let mut query = ListQuery {
        limit: PAGE_SIZE,
        cursor: get("cursor").filter(|c| !c.is_empty()).map(str::to_owned),
        include_deleted: get("include_deleted") == Some("true"),
        filters: Vec::new(),
    };
    // The same filters as the API's list endpoint: equality on filterable fields.
    let mut filters = Vec::new();
    let mut kept: Vec<(String, String)> = Vec::new();
    for def in collection
        .fields()
        .iter()
        .filter(|d| d.kind.is_filterable())
    {
        let value = get(def.name).unwrap_or("").trim().to_owned();
        if !value.is_empty() {
            let typed = match def.kind {
                FieldKind::Int { .. } => value.parse::<i64>().ok().map(Value::from),
                _ => Some(Value::String(value.clone())),
            };
            if let Some(typed) = typed {
                query.filters.push((def.name, typed));
                kept.push((def.name.to_owned(), value.clone()));
            }
        }
        let choices = match def.kind {
            FieldKind::Enum(options) => options
                .iter()
                .map(|o| Choice {
                    value: o.value.to_owned(),
                    label: lang.option(o).to_owned(),
                    selected: o.value == value,
                })
                .collect(),
            _ => Vec::new(),
        };
        filters.push(Filter {
            name: def.name,
            label: lang.field(def),
            value,
            choices,
        });
    }
    if query.include_deleted {
        kept.push(("include_deleted".into(), "true".into()));
    }
    let had_cursor = query.cursor.is_some();
    let page = node
        .store
        .list(collection, query)
        .await
        .map_err(|e| who.failed(e))?;
    let cols = columns(collection);
    let names = node.town_names().await;
    let rows = parse_views(&page.items)
        .into_iter()
        .map(|view| Row {
            href: record_href(collection, view.id.as_str()),
            title: record_title_named(collection, &view, &names),
            cells: cols
                .iter()
                .map(|d| {
                    view.fields
                        .get(d.name)
                        .map(|v| value_text(lang, d, v))
                        .unwrap_or_default()
                })
                .collect(),
            town: names.show(&view.town).to_owned(),
            updated: show_time(&view.updated_at),
            deleted: view.deleted,
        })
        .collect();
    let base = format!("/records/{}", collection.name());
    let query_of = |extra: Option<&str>| {
        let mut pairs = form_urlencoded::Serializer::new(String::new());
        for (k, v) in &kept {
            pairs.append_pair(k, v);
        }
        if let Some(cursor) = extra {
            pairs.append_pair("cursor", cursor);
        }
        let q = pairs.finish();
        if q.is_empty() {
            base.clone()
        } else {
            format!("{base}?{q}")
        }
    };
    let page = ListPage {
        chrome: who.chrome(lang.collection(collection), "records"),
        collection: collection.name(),
        label: lang.collection(collection),
        notice: notice(&who, get("done")),
        can_write: records::may_write(who.principal().role, collection),
        filters,
        include_deleted: get("include_deleted") == Some("true"),
        columns: cols.iter().map(|d| lang.field(d)).collect(),
        rows,
        next_href: page.next_cursor.as_deref().map(|c| query_of(Some(c))),
        first_href: had_cursor.then(|| query_of(None)),
    };
    Ok(render(StatusCode::OK, &page))
}

// ---------------------------------------------------------------- one record

struct Link {
    href: String,
    text: String,
}

struct Shown {
    label: &'static str,
    /// `line`, `markdown` (a long text: `text` holds its sanitised HTML),
    /// `links` or `table`.
    kind: &'static str,
    text: String,
    links: Vec<Link>,
    head: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

struct Change {
    at: String,
    town: String,
    /// The town by its name (its id when no certificate names it).
    town_name: String,
    summary: String,
    verified: bool,
    /// The signer's node id, when signed.
    signer: String,
}

struct ConflictShown {
    label: String,
    values: Vec<String>,
}

#[derive(Template)]
#[template(path = "record.html")]
struct RecordPage {
    chrome: Chrome,
    notice: Option<&'static str>,
    collection: &'static str,
    collection_label: &'static str,
    title: String,
    id: String,
    town: String,
    town_name: String,
    created: String,
    updated: String,
    deleted: bool,
    can_write: bool,
    fields: Vec<Shown>,
    history: Vec<Change>,
    /// The origin town's signature on the record's first change verified.
    origin_verified: bool,
    conflicts: Vec<ConflictShown>,
    attachments: Vec<super::attachments::FileShown>,
}

async fn ref_title(node: &AppState, to: Collection, id: &str) -> String {
    match node.store.get(to, id.to_owned(), true).await {
        Ok(raw) => serde_json::from_str::<RecordView>(raw.get())
            .map_or_else(|_| id.to_owned(), |v| record_title(to, &v)),
        Err(_) => id.to_owned(),
    }
}

async fn shown(node: &AppState, lang: Lang, def: &FieldDef, value: &Value) -> Shown {
    let mut out = Shown {
        label: lang.field(def),
        kind: "line",
        text: String::new(),
        links: Vec::new(),
        head: Vec::new(),
        rows: Vec::new(),
    };
    match (def.kind, value) {
        // Markdown, rendered and sanitised whoever wrote it
        // (protocol::markdown): the only HTML the page does not escape.
        (FieldKind::Text { .. }, Value::String(s)) => {
            out.kind = "markdown";
            out.text = yui_protocol::markdown::to_html(s);
        }
        (FieldKind::Ref(to), Value::String(id)) => {
            out.kind = "links";
            out.links.push(Link {
                href: record_href(to, id),
                text: ref_title(node, to, id).await,
            });
        }
        (FieldKind::Refs { to, .. }, Value::Array(ids)) => {
            out.kind = "links";
            for id in ids.iter().filter_map(Value::as_str) {
                out.links.push(Link {
                    href: record_href(to, id),
                    text: ref_title(node, to, id).await,
                });
            }
        }
        (FieldKind::Objects { fields, .. }, Value::Array(items)) => {
            out.kind = "table";
            out.head = fields.iter().map(|f| lang.field(f)).collect();
            out.rows = items
                .iter()
                .map(|item| {
                    fields
                        .iter()
                        .map(|f| {
                            item.get(f.name)
                                .map(|v| value_text(lang, f, v))
                                .unwrap_or_default()
                        })
                        .collect()
                })
                .collect();
        }
        _ => out.text = value_text(lang, def, value),
    }
    out
}

/// A history summary (`created: a, b`, `updated: c`, `deleted`) with field labels.
fn change_summary(lang: Lang, collection: Collection, summary: &str) -> String {
    let m = lang.messages();
    // In the order of the form, not the order the document lists them.
    let labels = |names: &str| {
        let listed: Vec<&str> = names.split(", ").collect();
        let mut shown: Vec<&str> = collection
            .fields()
            .iter()
            .filter(|d| listed.contains(&d.name))
            .map(|d| lang.field(d))
            .collect();
        shown.extend(listed.iter().filter(|n| collection.field(n).is_none()));
        shown.join(if lang == Lang::Ja { "、" } else { ", " })
    };
    if let Some(names) = summary.strip_prefix("created: ") {
        (m.history_created)(&labels(names))
    } else if let Some(names) = summary.strip_prefix("updated: ") {
        (m.history_updated)(&labels(names))
    } else if summary == "deleted" {
        m.history_deleted.to_owned()
    } else {
        summary.to_owned()
    }
}

#[derive(Deserialize)]
pub struct DoneQuery {
    done: Option<String>,
}

pub async fn show(
    State(node): State<AppState>,
    who: SignedIn,
    Path((name, id)): Path<(String, String)>,
    Query(q): Query<DoneQuery>,
) -> Result<Response, PageError> {
    let collection = collection_of(&who, &name)?;
    let id = id_of(&who, &id)?;
    let lang = who.lang();
    let view = load(&node, &who, collection, id.clone(), true).await?;
    let mut fields = Vec::new();
    for def in collection.fields() {
        if let Some(value) = view.fields.get(def.name) {
            fields.push(shown(&node, lang, def, value).await);
        }
    }
    let names = node.town_names().await;
    let history: Vec<Change> = node
        .history(collection, id.clone())
        .await
        .map_err(|e| who.failed(e))?
        .into_iter()
        .map(|h| Change {
            at: show_time(&h.entry.at),
            summary: change_summary(lang, collection, &h.entry.summary),
            town_name: names.show(&h.entry.town).to_owned(),
            town: h.entry.town,
            verified: h.verified,
            signer: h.signed_by.map(|s| s.node_id).unwrap_or_default(),
        })
        .collect();
    // The record's first change made it: its town is the origin town.
    let origin_verified = history
        .first()
        .is_some_and(|c| c.verified && c.town == view.town);
    let conflicts = node
        .store
        .conflicts(collection, id.clone())
        .await
        .map_err(|e| who.failed(e))?
        .into_iter()
        .map(|(field, values)| {
            let def = collection.field(&field);
            ConflictShown {
                label: def.map_or_else(|| field.clone(), |d| lang.field(d).to_owned()),
                values: values
                    .iter()
                    .map(|v| match def {
                        Some(d) => value_text(lang, d, v),
                        None => v.to_string(),
                    })
                    .collect(),
            }
        })
        .collect();
    let page = RecordPage {
        chrome: who.chrome(record_title_named(collection, &view, &names), "records"),
        notice: notice(&who, q.done.as_deref()),
        collection: collection.name(),
        collection_label: lang.collection(collection),
        title: record_title_named(collection, &view, &names),
        id: view.id.to_string(),
        town: view.town.clone(),
        town_name: names.show(&view.town).to_owned(),
        created: show_time(&view.created_at),
        updated: show_time(&view.updated_at),
        deleted: view.deleted,
        can_write: records::may_write(who.principal().role, collection) && !view.deleted,
        fields,
        history,
        origin_verified,
        conflicts,
        attachments: if view.deleted {
            Vec::new()
        } else {
            super::attachments::shown(&node, lang, collection, &id).await
        },
    };
    Ok(render(StatusCode::OK, &page))
}

// ---------------------------------------------------------------- forms

/// What the form holds for each field, as the browser sends it.
type RawValues = HashMap<&'static str, Vec<String>>;

struct FormField {
    name: &'static str,
    label: &'static str,
    required: bool,
    /// `text`, `email`, `tel`, `date`, `number`, `textarea`, `json`,
    /// `select` or `multiselect`.
    widget: &'static str,
    step: &'static str,
    value: String,
    choices: Vec<Choice>,
    hint: &'static str,
    errors: Vec<String>,
}

#[derive(Template)]
#[template(path = "record_form.html")]
struct FormPage {
    chrome: Chrome,
    heading: String,
    action: String,
    cancel: String,
    form_errors: Vec<String>,
    fields: Vec<FormField>,
    /// Personal-data findings an administrator may save anyway (none of
    /// them a My Number).
    offer_override: bool,
}

/// A stored value as form text.
fn raw_of(def: &FieldDef, value: &Value) -> Vec<String> {
    match (def.kind, value) {
        (FieldKind::Objects { .. }, v) => {
            vec![serde_json::to_string_pretty(v).unwrap_or_default()]
        }
        (FieldKind::Refs { .. }, Value::Array(items)) => items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        (FieldKind::Tags { .. }, Value::Array(items)) => vec![
            items
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", "),
        ],
        (_, Value::String(s)) => vec![s.clone()],
        (_, Value::Null) => Vec::new(),
        (_, other) => vec![other.to_string()],
    }
}

fn raw_of_view(collection: Collection, view: &RecordView) -> RawValues {
    collection
        .fields()
        .iter()
        .filter_map(|d| Some((d.name, raw_of(d, view.fields.get(d.name)?))))
        .collect()
}

fn raw_of_form(collection: Collection, form: &FormPairs) -> RawValues {
    collection
        .fields()
        .iter()
        .map(|d| (d.name, form.all(d.name).map(str::to_owned).collect()))
        .collect()
}

/// Form text as the JSON the validator takes; `None` for an empty field.
/// Numbers that do not parse are passed on as text, so the validator names
/// the problem with its usual code.
fn json_of(def: &FieldDef, raw: &[String]) -> Result<Option<Value>, FieldError> {
    let first = raw.first().map_or("", String::as_str);
    let trimmed = first.trim();
    let value = match def.kind {
        FieldKind::Text { .. } => {
            // Browsers send textareas with CRLF line ends.
            let text = first.replace("\r\n", "\n");
            (!text.trim().is_empty()).then_some(Value::String(text))
        }
        FieldKind::Int { .. } if !trimmed.is_empty() => Some(
            trimmed
                .parse::<i64>()
                .map_or_else(|_| Value::String(trimmed.to_owned()), Value::from),
        ),
        FieldKind::Number { .. } if !trimmed.is_empty() => Some(match trimmed.parse::<f64>() {
            Ok(n) if n.fract() == 0.0 && n.abs() < 9e15 => Value::from(n as i64),
            Ok(n) => serde_json::Number::from_f64(n)
                .map_or_else(|| Value::String(trimmed.to_owned()), Value::Number),
            Err(_) => Value::String(trimmed.to_owned()),
        }),
        FieldKind::Tags { .. } => {
            let tags: Vec<Value> = first
                .split([',', '、', '，', '\n'])
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(|t| Value::String(t.to_owned()))
                .collect();
            (!tags.is_empty()).then_some(Value::Array(tags))
        }
        FieldKind::Refs { .. } => {
            let ids: Vec<Value> = raw
                .iter()
                .map(|s| s.trim())
                .filter(|s| !s.is_empty())
                .map(|s| Value::String(s.to_owned()))
                .collect();
            (!ids.is_empty()).then_some(Value::Array(ids))
        }
        FieldKind::Objects { .. } if !trimmed.is_empty() => {
            Some(serde_json::from_str(trimmed).map_err(|e| FieldError {
                field: def.name.to_owned(),
                code: "invalid_json",
                message: e.to_string(),
            })?)
        }
        _ => (!trimmed.is_empty()).then(|| Value::String(trimmed.to_owned())),
    };
    Ok(value)
}

/// Field errors by top-level field name (`skills[0].level` belongs to
/// `skills`); errors about the whole record go under `*`.
fn errors_by_field(
    lang: Lang,
    collection: Collection,
    errors: &[FieldError],
) -> HashMap<String, Vec<String>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for e in errors {
        let top = e.field.split(['[', '.']).next().unwrap_or("*");
        let key = if collection.field(top).is_some() {
            top
        } else {
            "*"
        };
        let text = match e.code.strip_prefix("personal_data:") {
            // The message holds "start end" (0-based, end exclusive).
            Some(kind) => {
                let mut at = e.message.split(' ').filter_map(|n| n.parse::<usize>().ok());
                let (start, end) = (at.next().unwrap_or(0), at.next().unwrap_or(0));
                (lang.messages().personal_data)(lang.personal_data_kind(kind), start + 1, end)
            }
            None => lang.field_error(e.code).to_owned(),
        };
        out.entry(key.to_owned()).or_default().push(text);
    }
    out
}

/// Personal-data findings as field errors, to show next to their fields.
fn personal_data_errors(findings: &[yui_protocol::guard::Finding]) -> Vec<FieldError> {
    findings
        .iter()
        .map(|f| FieldError {
            field: f.field.clone(),
            code: match f.kind {
                guard::Kind::Phone => "personal_data:phone",
                guard::Kind::Email => "personal_data:email",
                guard::Kind::PostalCode => "personal_data:postal_code",
                guard::Kind::BirthDate => "personal_data:birth_date",
                guard::Kind::MyNumber => "personal_data:my_number",
                guard::Kind::RegisteredName => "personal_data:registered_name",
            },
            message: format!("{} {}", f.start, f.end),
        })
        .collect()
}

/// What the form asks of the personal-data guard; `None` when it asks for
/// an override without a reason (the form then says so). An override
/// needs the admin role: anyone else gets the forbidden page.
fn guarding_of(who: &SignedIn, form: &FormPairs) -> Result<Option<Guarding>, PageError> {
    if form.get("personal_data_override") != Some("1") {
        return Ok(Some(Guarding::refuse()));
    }
    match Guarding::overriding(who.principal(), form.get("override_reason").unwrap_or("")) {
        Ok(guarding) => Ok(Some(guarding)),
        Err(OverrideRefused::NotAdministrator) => who.require(false).map(|()| None),
        Err(OverrideRefused::NoReason) => Ok(None),
    }
}

async fn ref_choices(node: &AppState, to: Collection, selected: &[String]) -> Vec<Choice> {
    let page = node
        .store
        .list(
            to,
            ListQuery {
                limit: REF_CHOICES,
                ..Default::default()
            },
        )
        .await;
    let views = page.map(|p| parse_views(&p.items)).unwrap_or_default();
    let mut choices: Vec<Choice> = views
        .iter()
        .map(|v| Choice {
            value: v.id.to_string(),
            label: record_title(to, v),
            selected: selected.iter().any(|s| s == v.id.as_str()),
        })
        .collect();
    // A chosen record beyond the first page still shows as chosen.
    for id in selected {
        if !id.is_empty() && !choices.iter().any(|c| &c.value == id) {
            choices.push(Choice {
                value: id.clone(),
                label: id.clone(),
                selected: true,
            });
        }
    }
    choices
}

async fn form_fields(
    node: &AppState,
    lang: Lang,
    collection: Collection,
    raw: &RawValues,
    errors: &HashMap<String, Vec<String>>,
) -> Vec<FormField> {
    let m = lang.messages();
    let mut out = Vec::new();
    for def in collection.fields() {
        let values = raw.get(def.name).cloned().unwrap_or_default();
        let first = values.first().cloned().unwrap_or_default();
        let (widget, step, hint) = match def.kind {
            FieldKind::Str { .. } => ("text", "", ""),
            FieldKind::Email => ("email", "", ""),
            FieldKind::Phone => ("tel", "", ""),
            FieldKind::Text { .. } => ("textarea", "", m.hint_markdown),
            FieldKind::Enum(_) | FieldKind::Ref(_) => ("select", "", ""),
            FieldKind::Refs { .. } => ("multiselect", "", m.hint_refs),
            FieldKind::Int { .. } => ("number", "1", m.hint_number),
            FieldKind::Number { .. } => ("number", "any", m.hint_number),
            FieldKind::Date => ("date", "", m.hint_date),
            FieldKind::Tags { .. } => ("text", "", m.hint_tags),
            FieldKind::Objects { .. } => ("json", "", m.hint_json_list),
        };
        let choices = match def.kind {
            FieldKind::Enum(options) => options
                .iter()
                .map(|o| Choice {
                    value: o.value.to_owned(),
                    label: lang.option(o).to_owned(),
                    selected: o.value == first,
                })
                .collect(),
            FieldKind::Ref(to) | FieldKind::Refs { to, .. } => ref_choices(node, to, &values).await,
            _ => Vec::new(),
        };
        out.push(FormField {
            name: def.name,
            label: lang.field(def),
            required: def.required,
            widget,
            step,
            value: first,
            choices,
            hint,
            errors: errors.get(def.name).cloned().unwrap_or_default(),
        });
    }
    out
}

#[allow(clippy::too_many_arguments)]
async fn form_page(
    node: &AppState,
    who: &SignedIn,
    status: StatusCode,
    collection: Collection,
    id: Option<&str>,
    raw: &RawValues,
    errors: &[FieldError],
    extra: Option<&'static str>,
) -> Response {
    let lang = who.lang();
    let m = who.m();
    let by_field = errors_by_field(lang, collection, errors);
    let mut form_errors: Vec<String> = by_field.get("*").cloned().unwrap_or_default();
    if let Some(extra) = extra {
        form_errors.push(extra.to_owned());
    }
    if !errors.is_empty() || extra.is_some() {
        form_errors.insert(0, m.form_has_errors.to_owned());
    }
    let label = lang.collection(collection);
    let (heading, action, cancel) = match id {
        None => (
            (m.create_title)(label),
            format!("/records/{}", collection.name()),
            format!("/records/{}", collection.name()),
        ),
        Some(id) => (
            (m.edit_title)(label),
            format!("{}/edit", record_href(collection, id)),
            record_href(collection, id),
        ),
    };
    let findings: Vec<&str> = errors
        .iter()
        .filter_map(|e| e.code.strip_prefix("personal_data:"))
        .collect();
    let offer_override = who.principal().role.can_administer()
        && !findings.is_empty()
        && !findings.contains(&"my_number");
    render(
        status,
        &FormPage {
            chrome: who.chrome(heading.clone(), "records"),
            heading,
            action,
            cancel,
            form_errors,
            fields: form_fields(node, lang, collection, raw, &by_field).await,
            offer_override,
        },
    )
}

pub async fn new_form(
    State(node): State<AppState>,
    who: SignedIn,
    Path(name): Path<String>,
) -> Result<Response, PageError> {
    let collection = collection_of(&who, &name)?;
    who.require(records::may_write(who.principal().role, collection))?;
    Ok(form_page(
        &node,
        &who,
        StatusCode::OK,
        collection,
        None,
        &RawValues::new(),
        &[],
        None,
    )
    .await)
}

/// Splits a store error into what the form can show and what it cannot.
fn form_problem(
    who: &SignedIn,
    e: crate::Error,
) -> Result<(Vec<FieldError>, Option<&'static str>), PageError> {
    match e {
        crate::Error::Validation(ValidationErrors(errors)) => Ok((errors, None)),
        crate::Error::Conflict(_) => Ok((Vec::new(), Some(who.m().err_conflict))),
        // The form stays as typed: nothing is lost while the disk is full.
        crate::Error::StorageFull { detail } => {
            tracing::error!(error = %detail, "console: a record was not saved: the disk is full");
            Ok((Vec::new(), Some(who.m().err_storage_full)))
        }
        crate::Error::PersonalData(findings) => Ok((personal_data_errors(&findings), None)),
        other => Err(who.failed(other)),
    }
}

/// A posted record form to save: a new record's fields, or the changes to
/// an existing one.
enum Save {
    Create(Map<String, Value>),
    Update {
        id: String,
        patch: Map<String, Value>,
    },
}

/// Saves a posted record form whose fields all parsed (`errors` empty) and
/// whose override, if it asks for one, gives a reason (`guarding` is
/// `Some`); then shows the record, or the form again with what was wrong.
async fn save(
    node: &AppState,
    who: &SignedIn,
    collection: Collection,
    raw: &RawValues,
    guarding: Option<Guarding>,
    mut errors: Vec<FieldError>,
    save: Save,
) -> Result<Response, PageError> {
    let id = match &save {
        Save::Create(_) => None,
        Save::Update { id, .. } => Some(id.clone()),
    };
    let mut extra = None;
    match guarding {
        None => extra = Some(who.m().override_reason_required),
        Some(guarding) if errors.is_empty() => {
            match write(node, who, collection, &guarding, save).await {
                Ok((id, done)) => {
                    let href = record_href(collection, &id);
                    return Ok(Redirect::to(&format!("{href}?done={done}")).into_response());
                }
                Err(e) => (errors, extra) = form_problem(who, e)?,
            }
        }
        Some(_) => {}
    }
    Ok(form_page(
        node,
        who,
        StatusCode::UNPROCESSABLE_ENTITY,
        collection,
        id.as_deref(),
        raw,
        &errors,
        extra,
    )
    .await)
}

/// Validates and writes a form's record; returns its id and what was done.
/// The audit entry is the one `crate::actions` makes for every entry point.
async fn write(
    node: &AppState,
    who: &SignedIn,
    collection: Collection,
    guarding: &Guarding,
    save: Save,
) -> crate::Result<(String, &'static str)> {
    match save {
        Save::Create(input) => {
            let fields = validate_create(collection, &input)?;
            let written = OnBehalf {
                node,
                principal: who.principal(),
                guarding,
            }
            .create(collection, fields)
            .await?;
            Ok((written.id, "created"))
        }
        Save::Update { id, patch } => {
            let typed = validate_patch(collection, &patch)?;
            OnBehalf {
                node,
                principal: who.principal(),
                guarding,
            }
            .update(collection, id.clone(), typed)
            .await?;
            Ok((id, "updated"))
        }
    }
}

pub async fn create(
    State(node): State<AppState>,
    who: SignedIn,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, PageError> {
    let collection = collection_of(&who, &name)?;
    let form = who.posted_form(&body, records::may_write(who.principal().role, collection))?;
    let raw = raw_of_form(collection, &form);
    let guarding = guarding_of(&who, &form)?;
    let mut input = Map::new();
    let mut errors = Vec::new();
    for def in collection.fields() {
        match json_of(def, raw.get(def.name).map_or(&[][..], Vec::as_slice)) {
            Ok(Some(v)) => {
                input.insert(def.name.to_owned(), v);
            }
            Ok(None) => {}
            Err(e) => errors.push(e),
        }
    }
    save(
        &node,
        &who,
        collection,
        &raw,
        guarding,
        errors,
        Save::Create(input),
    )
    .await
}

/// The record a person who may write records is about to change (its
/// edit form, or the confirmation of its deletion).
async fn record_to_change(
    node: &AppState,
    who: &SignedIn,
    name: &str,
    id: &str,
) -> Result<(Collection, String, RecordView), PageError> {
    let collection = collection_of(who, name)?;
    let id = id_of(who, id)?;
    who.require(records::may_write(who.principal().role, collection))?;
    let view = load(node, who, collection, id.clone(), false).await?;
    Ok((collection, id, view))
}

pub async fn edit_form(
    State(node): State<AppState>,
    who: SignedIn,
    Path((name, id)): Path<(String, String)>,
) -> Result<Response, PageError> {
    let (collection, id, view) = record_to_change(&node, &who, &name, &id).await?;
    let raw = raw_of_view(collection, &view);
    Ok(form_page(
        &node,
        &who,
        StatusCode::OK,
        collection,
        Some(&id),
        &raw,
        &[],
        None,
    )
    .await)
}

pub async fn update(
    State(node): State<AppState>,
    who: SignedIn,
    Path((name, id)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, PageError> {
    let collection = collection_of(&who, &name)?;
    let id = id_of(&who, &id)?;
    let form = who.posted_form(&body, records::may_write(who.principal().role, collection))?;
    let current = load(&node, &who, collection, id.clone(), false).await?;
    let raw = raw_of_form(collection, &form);
    // Only what changed is sent, so an edit does not overwrite fields that
    // another town changed meanwhile with the values this form started from.
    let mut patch = Map::new();
    let mut errors = Vec::new();
    for def in collection.fields() {
        match json_of(def, raw.get(def.name).map_or(&[][..], Vec::as_slice)) {
            Ok(new) => {
                if new.as_ref() != current.fields.get(def.name) {
                    patch.insert(def.name.to_owned(), new.unwrap_or(Value::Null));
                }
            }
            Err(e) => errors.push(e),
        }
    }
    let guarding = guarding_of(&who, &form)?;
    save(
        &node,
        &who,
        collection,
        &raw,
        guarding,
        errors,
        Save::Update { id, patch },
    )
    .await
}

#[derive(Template)]
#[template(path = "record_delete.html")]
struct DeletePage {
    chrome: Chrome,
    title: String,
    action: String,
    cancel: String,
}

pub async fn confirm_delete(
    State(node): State<AppState>,
    who: SignedIn,
    Path((name, id)): Path<(String, String)>,
) -> Result<Response, PageError> {
    let (collection, id, view) = record_to_change(&node, &who, &name, &id).await?;
    let href = record_href(collection, &id);
    Ok(render(
        StatusCode::OK,
        &DeletePage {
            chrome: who.chrome(who.m().delete_confirm_title, "records"),
            title: record_title(collection, &view),
            action: format!("{href}/delete"),
            cancel: href,
        },
    ))
}

pub async fn delete(
    State(node): State<AppState>,
    who: SignedIn,
    Path((name, id)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, PageError> {
    let collection = collection_of(&who, &name)?;
    let id = id_of(&who, &id)?;
    who.posted_form(&body, records::may_write(who.principal().role, collection))?;
    records::delete(&node, who.principal(), collection, id)
        .await
        .map_err(|e| who.failed(e))?;
    Ok(Redirect::to(&format!("/records/{}?done=deleted", collection.name())).into_response())
}

// ---------------------------------------------------------------- search

struct Hit {
    collection: &'static str,
    title: String,
    href: String,
    town: String,
    updated: String,
}

#[derive(Template)]
#[template(path = "search.html")]
struct SearchPage {
    chrome: Chrome,
    q: String,
    collections: Vec<Choice>,
    searched: bool,
    problem: Option<&'static str>,
    summary: String,
    hits: Vec<Hit>,
}

#[derive(Deserialize)]
pub struct SearchQuery {
    q: Option<String>,
    collection: Option<String>,
}

pub async fn search(
    State(node): State<AppState>,
    who: SignedIn,
    Query(params): Query<SearchQuery>,
) -> Result<Response, PageError> {
    let lang = who.lang();
    let m = who.m();
    let q = params.q.unwrap_or_default();
    let within: Option<Collection> = params
        .collection
        .as_deref()
        .filter(|c| !c.is_empty())
        .and_then(|c| c.parse().ok());
    let collections = Collection::ALL
        .into_iter()
        .map(|c| Choice {
            value: c.name().to_owned(),
            label: lang.collection(c).to_owned(),
            selected: within == Some(c),
        })
        .collect();
    let searched = !q.trim().is_empty();
    let mut problem = None;
    let mut hits = Vec::new();
    if searched {
        if q.chars().count() > 200 {
            problem = Some(m.search_too_long);
        } else {
            // The same search as GET /api/v1/search.
            let found = node
                .store
                .search(q.clone(), within, crate::http::DEFAULT_PAGE)
                .await
                .map_err(|e| who.failed(e))?;
            let names = node.town_names().await;
            for view in parse_views(&found) {
                let Some(c) = view.collection() else { continue };
                hits.push(Hit {
                    collection: lang.collection(c),
                    title: record_title_named(c, &view, &names),
                    href: record_href(c, view.id.as_str()),
                    town: names.show(&view.town).to_owned(),
                    updated: show_time(&view.updated_at),
                });
            }
        }
    }
    let page = SearchPage {
        chrome: who.chrome(m.search_title, "search"),
        summary: (m.search_found)(hits.len()),
        q,
        collections,
        searched,
        problem,
        hits,
    };
    Ok(render(StatusCode::OK, &page))
}
