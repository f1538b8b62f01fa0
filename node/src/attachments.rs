//! Files attached to records, on a person's behalf: the checks an upload
//! passes (the write authority and role of an update, the size limit, the
//! per-town quota, an allowed type whose bytes match it), storing the bytes
//! (`crate::blobs`) and naming them in the record (a signed change,
//! `Store::add_attachment`), and removing a file from a record, which
//! deletes its bytes once no record names them. The rules of what a type
//! may be are the protocol's (`yui_protocol::attachment`); the transfer
//! between towns is the peer layer's.

use yui_protocol::Collection;
use yui_protocol::attachment::{self, Attachment};

use crate::accounts::Principal;
use crate::actions::{self, Action, Entry};
use crate::clock::now_ms;
use crate::error::{Error, Result};
use crate::node::Node;

/// An upload as the adapters pass it on.
pub struct Upload<'a> {
    pub collection: Collection,
    pub id: String,
    /// The file name the client gave (a path is cut to its last part).
    pub name: &'a str,
    /// The `Content-Type` the client declared.
    pub declared_type: &'a str,
    pub bytes: &'a [u8],
}

/// Attaches a file to a record; answers the attachment as stored.
pub async fn upload(node: &Node, principal: &Principal, up: Upload<'_>) -> Result<Attachment> {
    Action::Update(up.collection).check(principal)?;
    let limits = node.attachment_limits();
    let size = up.bytes.len() as u64;
    if size > limits.max_file_bytes {
        return Err(Error::AttachmentRefused {
            code: "attachment_too_large",
            message: format!(
                "the file is {} bytes; files attached to records may be at most {} bytes ([attachments] max_file in config.toml)",
                size, limits.max_file_bytes
            ),
        });
    }
    if size == 0 {
        return Err(Error::bad_request("empty_file", "the file is empty"));
    }
    let name = attachment::clean_name(up.name)
        .map_err(|e| Error::bad_request("invalid_file_name", e.to_string()))?;
    node.store.check_file_name(up.collection, &name).await?;
    let content_type = attachment::sniff(up.declared_type, &up.bytes[..up.bytes.len().min(512)])
        .map_err(|e| Error::AttachmentRefused {
            code: "file_type_not_allowed",
            message: e.to_string(),
        })?;
    // The record must be there, and this town's files within its quota.
    let (record_town, held) = node
        .store
        .attachments_of(up.collection, up.id.clone())
        .await?;
    let sha = crate::blobs::sha256_hex(up.bytes);
    if held.iter().any(|a| a.sha256 == sha) {
        return Ok(held.into_iter().find(|a| a.sha256 == sha).expect("held"));
    }
    let used = town_bytes(node, &record_town).await?;
    if used + size > limits.town_quota_bytes {
        return Err(Error::AttachmentRefused {
            code: "attachment_quota_exceeded",
            message: format!(
                "the files of {record_town}'s records take {used} bytes here; this file ({size} bytes) would pass the quota of {} bytes ([attachments] town_quota in config.toml). Remove files no longer needed, or raise the quota",
                limits.town_quota_bytes
            ),
        });
    }
    let blobs = node.blobs();
    let bytes = up.bytes.to_vec();
    let stored = {
        let blobs = blobs.clone();
        tokio::task::spawn_blocking(move || blobs.put(&bytes))
            .await
            .map_err(|e| Error::Storage(format!("storing a file failed: {e}")))?
    }?;
    let a = Attachment {
        sha256: stored.clone(),
        name,
        size,
        content_type: content_type.to_owned(),
        town: node.config.town.clone(),
        added_at: yui_protocol::record::format_time(now_ms()),
    };
    let written = node
        .store
        .add_attachment(up.collection, up.id.clone(), a.clone(), now_ms())
        .await;
    blobs.settled(&stored);
    if let Err(e) = written {
        let _ = crate::blobs::remove_if_unnamed(&node.store, &blobs, &stored).await;
        return Err(e);
    }
    let entry = Entry::attachment_changed(up.collection, &up.id, true, &a.sha256, size);
    actions::audit(&node.accounts, principal, &entry).await;
    Ok(a)
}

/// Bytes of the files live records of `town` name here (each file once).
pub async fn town_bytes(node: &Node, town: &str) -> Result<u64> {
    Ok(node
        .store
        .named_attachments(false)
        .await?
        .iter()
        .filter(|w| w.town == town)
        .map(|w| w.size)
        .sum())
}

/// Removes a file from a record; its bytes are deleted once no record
/// names it (at once here; at the other towns when the change arrives).
pub async fn remove(
    node: &Node,
    principal: &Principal,
    collection: Collection,
    id: String,
    sha256: &str,
) -> Result<()> {
    Action::Update(collection).check(principal)?;
    let (_, held) = node.store.attachments_of(collection, id.clone()).await?;
    let Some(a) = held.into_iter().find(|a| a.sha256 == sha256) else {
        return Err(not_attached(sha256));
    };
    if !node
        .store
        .remove_attachment(collection, id.clone(), sha256.to_owned(), now_ms())
        .await?
    {
        return Err(not_attached(sha256));
    }
    crate::blobs::remove_if_unnamed(&node.store, &node.blobs(), sha256).await?;
    let entry = Entry::attachment_changed(collection, &id, false, sha256, a.size);
    actions::audit(&node.accounts, principal, &entry).await;
    Ok(())
}

/// A file of a record, with whether its bytes are here.
pub async fn find(
    node: &Node,
    collection: Collection,
    id: String,
    sha256: &str,
) -> Result<Attachment> {
    let (_, held) = node.store.attachments_of(collection, id).await?;
    held.into_iter()
        .find(|a| a.sha256 == sha256)
        .ok_or_else(|| not_attached(sha256))
}

fn not_attached(sha256: &str) -> Error {
    Error::NotFound(format!(
        "the record has no attached file {}",
        sha256.chars().take(64).collect::<String>()
    ))
}
