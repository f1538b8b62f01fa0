//! `/api/docs`: the OpenAPI document of the local API (`crate::http::openapi`) as
//! a readable page, rendered here from the same JSON, so it works offline
//! and cannot drift from `/api/v1/openapi.json`.

use askama::Template;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::Value;

use super::{Chrome, SignedIn, render};

struct Param {
    name: String,
    location: String,
    required: bool,
    schema: String,
}

struct Operation {
    method: String,
    path: String,
    anchor: String,
    summary: String,
    description: String,
    params: Vec<Param>,
    body: Option<String>,
    responses: Vec<(String, String)>,
}

#[derive(Template)]
#[template(path = "api_docs.html")]
struct ApiDocsPage {
    chrome: Chrome,
    title: String,
    version: String,
    description: String,
    operations: Vec<Operation>,
    schemas: Vec<(String, String)>,
}

fn text(v: &Value, key: &str) -> String {
    v.get(key).and_then(Value::as_str).unwrap_or("").to_owned()
}

fn params_of(v: &Value) -> Vec<Param> {
    v.get("parameters")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|p| Param {
            name: text(p, "name"),
            location: text(p, "in"),
            required: p.get("required").and_then(Value::as_bool).unwrap_or(false),
            schema: p.get("schema").map_or_else(String::new, Value::to_string),
        })
        .collect()
}

fn operations(doc: &Value) -> Vec<Operation> {
    let mut out = Vec::new();
    let Some(paths) = doc.get("paths").and_then(Value::as_object) else {
        return out;
    };
    for (path, item) in paths {
        let shared = params_of(item);
        for method in ["get", "post", "patch", "delete"] {
            let Some(op) = item.get(method) else { continue };
            let mut params: Vec<Param> = shared
                .iter()
                .map(|p| Param {
                    name: p.name.clone(),
                    location: p.location.clone(),
                    required: p.required,
                    schema: p.schema.clone(),
                })
                .collect();
            params.extend(params_of(op));
            let body = op
                .pointer("/requestBody/content")
                .and_then(|c| serde_json::to_string_pretty(c).ok());
            let responses = op
                .get("responses")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
                .map(|(code, r)| (code.clone(), text(r, "description")))
                .collect();
            out.push(Operation {
                method: method.to_owned(),
                anchor: format!("{method}-{}", path.replace(['/', '{', '}', '.'], "-")),
                path: path.clone(),
                summary: text(op, "summary"),
                description: text(op, "description"),
                params,
                body,
                responses,
            });
        }
    }
    out
}

pub async fn show(who: SignedIn) -> Response {
    let doc = crate::http::openapi::document();
    let schemas = doc
        .pointer("/components/schemas")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(name, s)| {
            (
                name.clone(),
                serde_json::to_string_pretty(s).unwrap_or_default(),
            )
        })
        .collect();
    let page = ApiDocsPage {
        chrome: who.chrome(who.m().api_docs_title, "api"),
        title: doc
            .pointer("/info/title")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned(),
        version: doc
            .pointer("/info/version")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned(),
        description: doc
            .pointer("/info/description")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned(),
        operations: operations(&doc),
        schemas,
    };
    render(StatusCode::OK, &page)
}
