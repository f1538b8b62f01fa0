//! `/api/v1/records/{collection}/{id}/attachments…`: files attached to a
//! record. Upload takes the raw bytes (`Content-Type` the file's type,
//! `?name=` its name), refused before reading when `Content-Length` is over
//! the limit; download answers the bytes as an attachment with `nosniff`,
//! so nothing a file holds ever runs as a page of the node's origin. The
//! rules are `crate::attachments`'.

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use yui_protocol::attachment::{self, Attachment};

use super::extract::{Caller, QueryParams, ViewerAccess};
use super::records::record_path;
use super::{AppState, json_response};
use crate::attachments::{self, Upload};
use crate::error::{Error, Result};

/// The attachment routes, nested under `/api/v1` behind the token layer.
pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/records/{collection}/{id}/attachments",
            post(upload)
                .layer(DefaultBodyLimit::max(attachment::MAX_FILE_BYTES as usize))
                .get(list),
        )
        .route(
            "/records/{collection}/{id}/attachments/{sha256}",
            get(download).delete(remove),
        )
}

/// An attachment as the API lists it: the record's entry and whether its
/// bytes are here.
#[derive(Serialize)]
pub struct Listed {
    #[serde(flatten)]
    pub attachment: Attachment,
    /// `stored` (the bytes are here), or `fetching` (a file of a shared
    /// record whose bytes have not arrived from a peer yet).
    pub state: &'static str,
    /// Where to download it.
    pub url: String,
}

/// A record's files with their state.
pub async fn listed(
    node: &AppState,
    collection: yui_protocol::Collection,
    id: String,
) -> Result<Vec<Listed>> {
    let (_, held) = node.store.attachments_of(collection, id.clone()).await?;
    let blobs = node.blobs();
    Ok(held
        .into_iter()
        .map(|a| Listed {
            state: if blobs.has(&a.sha256) {
                "stored"
            } else {
                "fetching"
            },
            url: format!(
                "/api/v1/records/{}/{id}/attachments/{}",
                collection.name(),
                a.sha256
            ),
            attachment: a,
        })
        .collect())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UploadQuery {
    name: String,
}

async fn upload(
    Caller(principal): Caller,
    State(node): State<AppState>,
    Path((name, id)): Path<(String, String)>,
    QueryParams(query): QueryParams<UploadQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let (collection, id) = record_path(&name, &id)?;
    let declared = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let bytes = read_upload(&node, &headers, body).await?;
    let a = attachments::upload(
        &node,
        &principal,
        Upload {
            collection,
            id: id.clone(),
            name: &query.name,
            declared_type: &declared,
            bytes: &bytes,
        },
    )
    .await?;
    let url = format!(
        "/api/v1/records/{}/{id}/attachments/{}",
        collection.name(),
        a.sha256
    );
    let mut response = json_response(
        StatusCode::CREATED,
        &Listed {
            attachment: a,
            state: "stored",
            url: url.clone(),
        },
    );
    super::set_location(&mut response, &url);
    Ok(response)
}

/// The body of an upload, up to the node's file limit: refused by its
/// `Content-Length` before a byte is read when the client waits for `100
/// Continue` (curl does), and otherwise once the body has been read and
/// dropped (at most [`attachment::MAX_FILE_BYTES`]), so that a client that
/// sends its whole body before reading the answer gets the answer rather
/// than a broken connection.
pub async fn read_upload(node: &AppState, headers: &HeaderMap, body: Body) -> Result<Vec<u8>> {
    use http_body_util::BodyExt;
    let limit = node.attachment_limits().max_file_bytes;
    let too_large = |size: String| Error::AttachmentRefused {
        code: "attachment_too_large",
        message: format!(
            "the file is {size} bytes; files attached to records may be at most {limit} bytes ([attachments] max_file in config.toml)"
        ),
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let expects_continue = headers
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if let Some(declared) = declared
        && declared > limit
        && (expects_continue || declared > attachment::MAX_FILE_BYTES)
    {
        return Err(too_large(declared.to_string()));
    }
    let mut body = body;
    let mut received: Vec<u8> = Vec::with_capacity(declared.unwrap_or(0).min(limit) as usize);
    let mut dropped: u64 = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| Error::bad_request("unreadable_body", e.to_string()))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if dropped > 0 || (received.len() + data.len()) as u64 > limit {
            // Over the limit: read on and drop, up to the largest file any
            // node takes, then answer.
            dropped += (received.len() + data.len()) as u64;
            received = Vec::new();
            if dropped > attachment::MAX_FILE_BYTES {
                break;
            }
        } else {
            received.extend_from_slice(&data);
        }
    }
    if dropped > 0 {
        return Err(too_large(match declared {
            Some(n) => n.to_string(),
            None => format!("more than {limit}"),
        }));
    }
    Ok(received)
}

async fn list(
    _: ViewerAccess,
    State(node): State<AppState>,
    Path((name, id)): Path<(String, String)>,
) -> Result<Response> {
    let (collection, id) = record_path(&name, &id)?;
    let items = listed(&node, collection, id).await?;
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({ "items": items }),
    ))
}

async fn download(
    _: ViewerAccess,
    State(node): State<AppState>,
    Path((name, id, sha)): Path<(String, String, String)>,
) -> Result<Response> {
    let (collection, id) = record_path(&name, &id)?;
    file_response(&node, collection, id, &sha).await
}

/// A record's file as a download: `Content-Disposition: attachment` with
/// its name, its stored (allow-listed, checked) type and `nosniff`; a
/// file of a shared record not fetched yet answers 404 `not_fetched_yet`.
pub async fn file_response(
    node: &AppState,
    collection: yui_protocol::Collection,
    id: String,
    sha: &str,
) -> Result<Response> {
    let a = attachments::find(node, collection, id, sha).await?;
    let Some((file, len)) = node.blobs().open(&a.sha256)? else {
        return Err(Error::NotFound(format!(
            "the file {} has not arrived from the other towns yet; try again later",
            a.name
        )));
    };
    let stream = tokio_util::io::ReaderStream::new(tokio::fs::File::from_std(file));
    let mut response = Body::from_stream(stream).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&a.content_type)
            .unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_str(&content_disposition(&a.name))
            .unwrap_or(HeaderValue::from_static("attachment")),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; sandbox"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=3600"),
    );
    Ok(response)
}

/// `attachment; filename="ascii"; filename*=UTF-8''percent-encoded` (RFC
/// 6266): an ASCII stand-in for old clients, the real name for the rest.
fn content_disposition(name: &str) -> String {
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let encoded: String = name
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

async fn remove(
    Caller(principal): Caller,
    State(node): State<AppState>,
    Path((name, id, sha)): Path<(String, String, String)>,
) -> Result<StatusCode> {
    let (collection, id) = record_path(&name, &id)?;
    attachments::remove(&node, &principal, collection, id, &sha).await?;
    Ok(StatusCode::NO_CONTENT)
}
