//! Commands that work whether or not the node is running ask a running
//! `yui serve` through its API (so it acts at once and audits as
//! `node-token`); this file finds that API and calls it.

use anyhow::{Context, Result};

use crate::datadir::DataDir;

/// The API of the `yui serve` running on this data directory, if any.
pub(super) fn running_api(data_dir: &DataDir) -> Result<Option<(String, String)>> {
    match data_dir.serving_api() {
        Some(url) if !url.is_empty() => Ok(Some((url, data_dir.read_token()?))),
        _ => Ok(None),
    }
}

pub(super) async fn call_api(
    api: &(String, String),
    method: reqwest::Method,
    path: &str,
    body: Option<reqwest::Body>,
    json: bool,
) -> Result<serde_json::Value> {
    let content_type = json.then_some("application/json");
    let (status, value) = call_api_answer(api, method, path, body, content_type).await?;
    if !(200..300).contains(&status) {
        let message = value["error"]["message"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| value.to_string());
        anyhow::bail!("{message}");
    }
    Ok(value)
}

/// One call to the running node's API, answering its status and its body
/// (JSON, or the text as a JSON string), whatever the status.
pub(super) async fn call_api_answer(
    (base, token): &(String, String),
    method: reqwest::Method,
    path: &str,
    body: Option<reqwest::Body>,
    content_type: Option<&str>,
) -> Result<(u16, serde_json::Value)> {
    crate::peer::tls::install_crypto_provider();
    let client = reqwest::Client::builder().no_proxy().build()?;
    let mut req = client
        .request(method, format!("{}{path}", base.trim_end_matches('/')))
        .bearer_auth(token)
        .timeout(std::time::Duration::from_secs(600));
    if let Some(body) = body {
        req = req.body(body);
        if let Some(content_type) = content_type {
            req = req.header(reqwest::header::CONTENT_TYPE, content_type);
        }
    }
    let resp = req
        .send()
        .await
        .with_context(|| format!("calling the running node at {base}"))?;
    let status = resp.status();
    let text = resp.text().await?;
    let value: serde_json::Value = if text.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text))
    };
    Ok((status.as_u16(), value))
}
