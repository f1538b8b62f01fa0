//! Attached files on a record's page (issue 16): the list (name, size,
//! type, town, state), image previews (same-origin `<img>`: the strict CSP
//! stays, and a preview is only ever an allow-listed image type checked by
//! its bytes), downloads (always as an attachment, `nosniff`), an upload
//! form (multipart, with the CSRF token) for users who may edit the record,
//! and removal after a confirmation page. The rules are
//! `crate::attachments`'; the download answer is the API's.

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Multipart, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use yui_protocol::{Collection, RecordId};

use super::i18n::Lang;
use super::records::record_href;
use super::{AppState, Chrome, PageError, SignedIn, render, show_time};
use crate::attachments::{self, Upload};

/// A file as the record page shows it.
pub struct FileShown {
    pub name: String,
    pub size: String,
    pub content_type: String,
    pub town: String,
    pub added: String,
    pub stored: bool,
    pub image: bool,
    pub href: String,
}

fn size_text(lang: Lang, size: u64) -> String {
    let _ = lang;
    match size {
        s if s >= 1 << 20 => format!("{:.1} MiB", s as f64 / (1u64 << 20) as f64),
        s if s >= 1 << 10 => format!("{:.1} KiB", s as f64 / 1024.0),
        s => format!("{s} B"),
    }
}

/// The files of a live record, for its page.
pub async fn shown(
    node: &AppState,
    lang: Lang,
    collection: Collection,
    id: &str,
) -> Vec<FileShown> {
    let Ok(listed) = crate::http::attachments::listed(node, collection, id.to_owned()).await else {
        return Vec::new();
    };
    let names = node.town_names().await;
    listed
        .into_iter()
        .map(|l| {
            let a = l.attachment;
            FileShown {
                size: size_text(lang, a.size),
                image: yui_protocol::attachment::is_image(&a.content_type),
                href: format!("{}/attachments/{}", record_href(collection, id), a.sha256),
                town: names.show(&a.town).to_owned(),
                added: show_time(&a.added_at),
                stored: l.state == "stored",
                name: a.name,
                content_type: a.content_type,
            }
        })
        .collect()
}

fn path_of(who: &SignedIn, name: &str, id: &str) -> Result<(Collection, String), PageError> {
    let collection: Collection = name
        .parse()
        .map_err(|_| who.error(StatusCode::NOT_FOUND, who.m().unknown_collection))?;
    let id = id
        .parse::<RecordId>()
        .map(String::from)
        .map_err(|_| who.error(StatusCode::NOT_FOUND, who.m().record_not_found))?;
    Ok((collection, id))
}

/// The node's refusal of a file, as the visitor reads it.
fn refused(who: &SignedIn, e: crate::Error) -> PageError {
    let m = who.m();
    match e {
        crate::Error::AttachmentRefused { code, .. } => match code {
            "attachment_quota_exceeded" => {
                who.error(StatusCode::PAYLOAD_TOO_LARGE, m.attachment_over_quota)
            }
            "file_type_not_allowed" => who.error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                m.attachment_type_refused,
            ),
            _ => who.error(StatusCode::PAYLOAD_TOO_LARGE, m.attachment_too_large),
        },
        crate::Error::BadRequest { .. } => who.error(StatusCode::BAD_REQUEST, m.attachment_no_file),
        crate::Error::NotTheOwner { .. } => who.error(StatusCode::FORBIDDEN, m.forbidden),
        crate::Error::PersonalData(_) => who.error(
            StatusCode::UNPROCESSABLE_ENTITY,
            m.attachment_name_personal_data,
        ),
        crate::Error::NotFound(_) => who.error(StatusCode::NOT_FOUND, m.record_not_found),
        other => who.failed(other),
    }
}

/// `POST /records/{collection}/{id}/attachments`: a file from the form.
pub async fn upload(
    State(node): State<AppState>,
    who: SignedIn,
    Path((name, id)): Path<(String, String)>,
    mut multipart: Multipart,
) -> Result<Response, PageError> {
    let (collection, id) = path_of(&who, &name, &id)?;
    let limit = node.attachment_limits().max_file_bytes as usize;
    let (mut csrf, mut file, mut file_name, mut file_type) =
        (None, Vec::new(), String::new(), String::new());
    loop {
        match multipart.next_field().await {
            Ok(Some(mut field)) => {
                let field_name = field.name().unwrap_or("").to_owned();
                if field_name == "file" {
                    file_name = field.file_name().unwrap_or("").to_owned();
                    file_type = field.content_type().unwrap_or("").to_owned();
                    // Read no further than the limit.
                    loop {
                        match field.chunk().await {
                            Ok(Some(chunk)) => {
                                if file.len() + chunk.len() > limit {
                                    return Err(who.error(
                                        StatusCode::PAYLOAD_TOO_LARGE,
                                        who.m().attachment_too_large,
                                    ));
                                }
                                file.extend_from_slice(&chunk);
                            }
                            Ok(None) => break,
                            Err(_) => {
                                return Err(
                                    who.error(StatusCode::BAD_REQUEST, who.m().attachment_no_file)
                                );
                            }
                        }
                    }
                } else {
                    let Ok(bytes) = field.bytes().await else {
                        return Err(who.error(StatusCode::BAD_REQUEST, who.m().attachment_no_file));
                    };
                    if field_name == "csrf" {
                        csrf = Some(String::from_utf8_lossy(&bytes).into_owned());
                    }
                }
            }
            Ok(None) => break,
            Err(_) => return Err(who.error(StatusCode::BAD_REQUEST, who.m().attachment_no_file)),
        }
    }
    who.check_csrf(csrf.as_deref())?;
    who.require(crate::records::may_write(who.principal().role, collection))?;
    if file.is_empty() {
        return Err(who.error(StatusCode::BAD_REQUEST, who.m().attachment_no_file));
    }
    attachments::upload(
        &node,
        who.principal(),
        Upload {
            collection,
            id: id.clone(),
            name: &file_name,
            declared_type: &file_type,
            bytes: &file,
        },
    )
    .await
    .map_err(|e| refused(&who, e))?;
    Ok(Redirect::to(&format!("{}?done=attached", record_href(collection, &id))).into_response())
}

/// `GET /records/{collection}/{id}/attachments/{sha256}`: the download
/// (or an `<img>`'s bytes), as the API answers it.
pub async fn download(
    State(node): State<AppState>,
    who: SignedIn,
    Path((name, id, sha)): Path<(String, String, String)>,
) -> Result<Response, PageError> {
    let (collection, id) = path_of(&who, &name, &id)?;
    crate::http::attachments::file_response(&node, collection, id, &sha)
        .await
        .map_err(|e| refused(&who, e))
}

#[derive(Template)]
#[template(path = "attachment_remove.html")]
struct RemovePage {
    chrome: Chrome,
    name: String,
    action: String,
    cancel: String,
}

pub async fn confirm_remove(
    State(node): State<AppState>,
    who: SignedIn,
    Path((name, id, sha)): Path<(String, String, String)>,
) -> Result<Response, PageError> {
    let (collection, id) = path_of(&who, &name, &id)?;
    who.require(crate::records::may_write(who.principal().role, collection))?;
    let a = attachments::find(&node, collection, id.clone(), &sha)
        .await
        .map_err(|e| refused(&who, e))?;
    let href = record_href(collection, &id);
    Ok(render(
        StatusCode::OK,
        &RemovePage {
            chrome: who.chrome(who.m().attachment_remove_title, "records"),
            name: a.name,
            action: format!("{href}/attachments/{}/delete", a.sha256),
            cancel: href,
        },
    ))
}

pub async fn remove(
    State(node): State<AppState>,
    who: SignedIn,
    Path((name, id, sha)): Path<(String, String, String)>,
    body: Bytes,
) -> Result<Response, PageError> {
    let (collection, id) = path_of(&who, &name, &id)?;
    who.posted_form(
        &body,
        crate::records::may_write(who.principal().role, collection),
    )?;
    attachments::remove(&node, who.principal(), collection, id.clone(), &sha)
        .await
        .map_err(|e| refused(&who, e))?;
    Ok(Redirect::to(&format!("{}?done=detached", record_href(collection, &id))).into_response())
}
