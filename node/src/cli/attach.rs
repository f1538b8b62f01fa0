//! `yui attach COLLECTION ID FILE [--type TYPE]`: a file attached to a
//! record, through the running node if there is one (audited as
//! `node-token`), otherwise straight on the data directory. The type is
//! taken from the file's extension unless given; the node checks it
//! against the file's first bytes. The rules are `crate::attachments`'.

use std::path::Path;

use anyhow::{Context, Result};
use yui_protocol::Collection;

use super::call_api::{call_api_answer, running_api};
use super::cli_principal;
use crate::attachments::{Upload, upload};
use crate::datadir::DataDir;
use crate::node::Node;

/// The content type of a file name's extension (the allowed ones).
fn type_of(file: &Path) -> Option<&'static str> {
    let ext = file.extension()?.to_str()?.to_ascii_lowercase();
    Some(match ext.as_str() {
        "pdf" => "application/pdf",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "docx" => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "xlsx" => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "pptx" => "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        "doc" => "application/msword",
        "xls" => "application/vnd.ms-excel",
        "txt" => "text/plain",
        "csv" => "text/csv",
        _ => return None,
    })
}

pub(super) async fn run(
    data_dir: DataDir,
    name: &str,
    id: &str,
    file: &Path,
    content_type: Option<&str>,
) -> Result<()> {
    let collection: Collection = name.parse().map_err(|_| {
        anyhow::anyhow!(
            "{name:?} is not a collection; the collections are: {}",
            Collection::ALL.map(|c| c.name()).join(", ")
        )
    })?;
    let content_type = match content_type.or_else(|| type_of(file)) {
        Some(t) => t.to_owned(),
        None => anyhow::bail!(
            "cannot tell the type of {} from its extension; give it with --type (e.g. --type application/pdf)",
            file.display()
        ),
    };
    let file_name = file
        .file_name()
        .and_then(|n| n.to_str())
        .context("the file has no name")?
        .to_owned();
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let size = bytes.len();
    let sha = if let Some(api) = running_api(&data_dir)? {
        let path = format!(
            "/api/v1/records/{}/{}/attachments?name={}",
            collection.name(),
            super::percent_encode(id),
            super::percent_encode(&file_name)
        );
        let (status, value) = call_api_answer(
            &api,
            reqwest::Method::POST,
            &path,
            Some(bytes.into()),
            Some(&content_type),
        )
        .await?;
        if !(200..300).contains(&status) {
            let message = value["error"]["message"]
                .as_str()
                .map_or_else(|| value.to_string(), str::to_owned);
            anyhow::bail!("{message}");
        }
        value["sha256"].as_str().unwrap_or_default().to_owned()
    } else {
        let node = Node::open(data_dir, false)?;
        let result = upload(
            &node,
            &cli_principal(),
            Upload {
                collection,
                id: id.to_owned(),
                name: &file_name,
                declared_type: &content_type,
                bytes: &bytes,
            },
        )
        .await;
        node.store.close();
        result?.sha256
    };
    println!(
        "Attached {} ({size} bytes, {content_type}) to {}/{id}: sha256 {sha}",
        file.display(),
        collection.name()
    );
    Ok(())
}
