//! `yui status`: the town, node id, membership, peers and record counts,
//! from the running node if there is one (it knows more), otherwise from the
//! data directory.

use anyhow::Result;
use serde_json::Value;

use super::call_api::{call_api, running_api};
use crate::datadir::DataDir;
use crate::node::Node;

pub(super) async fn run(data_dir: DataDir, json: bool) -> Result<()> {
    // A running node knows more (connections to it, refused attempts): ask it.
    let status = match running_api(&data_dir)? {
        Some(api) => call_api(&api, reqwest::Method::GET, "/api/v1/status", None, false).await?,
        None => {
            let node = Node::open(data_dir, false)?;
            // Stopped, the status is the place to learn of damage: wait for
            // the check (seconds on a large database).
            node.store.first_integrity_check().await;
            let status = node.status().await;
            node.store.close();
            serde_json::to_value(status?)?
        }
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&status)?);
        return Ok(());
    }
    let s = |v: &serde_json::Value| v.as_str().unwrap_or("").to_owned();
    println!("town:        {} {}", s(&status["town"]), s(&status["name"]));
    println!("node id:     {}", s(&status["node_id"]));
    println!("version:     {}", s(&status["version"]));
    match status["api"].as_str() {
        Some(api) => println!("running:     yes, API at {api}api/v1/"),
        None => println!("running:     no (start with `yui serve`)"),
    }
    let m = &status["membership"];
    println!("consortium:  {}", s(&m["hint"]));
    if let Some(days) = m["certificate_expires_in_days"].as_i64() {
        println!("certificate: expires in {days} days");
    }
    for w in m["warnings"].as_array().into_iter().flatten() {
        println!("WARNING:     {}", s(w));
    }
    if m["joined"].as_bool() == Some(true) {
        let peers = status["peers"].as_array().cloned().unwrap_or_default();
        if peers.is_empty() {
            println!("peers:       none (add one with `yui peer add https://HOST:7443`)");
        }
        for p in &peers {
            println!(
                "peer:        {} town={} state={} last_sync={} pending={}",
                s(&p["url"]),
                p["town"].as_str().unwrap_or("?"),
                s(&p["state"]),
                p["last_sync_at"].as_str().unwrap_or("never"),
                p["pending"]
            );
            if let Some(e) = p["last_error"].as_str() {
                println!("             last error: {e}");
            }
            if p["refused_docs"].as_u64().is_some_and(|n| n > 0) {
                println!(
                    "             refused {} documents of its answers since start (see the log: `refused a document from a peer`)",
                    p["refused_docs"]
                );
            }
        }
        for i in status["inbound"].as_array().into_iter().flatten() {
            println!(
                "dialled by:  {} ({}) rounds={} last_seen={}",
                s(&i["town"]),
                s(&i["node_id"]),
                i["rounds"],
                s(&i["last_seen_at"])
            );
        }
        let refused = status["refused_connections"].as_array().map_or(0, Vec::len);
        if refused > 0 {
            println!("refused:     {refused} connection attempts (see `yui status --json`)");
        }
        print_quotas(&status["quotas"]);
    }
    println!(
        "database:    {} ({} bytes)",
        s(&status["storage"]["database"]),
        status["storage"]["bytes"]
    );
    let integrity = &status["storage"]["integrity"];
    match integrity["damaged"].as_array() {
        Some(tables) if !tables.is_empty() => {
            let tables: Vec<&str> = tables.iter().filter_map(Value::as_str).collect();
            println!(
                "DAMAGED:     the database is damaged (tables: {}); writes are refused. Restore the newest verified backup, then let the peers refill the shared records (docs/operations.md 17)",
                tables.join(", ")
            );
        }
        _ if integrity["checked_at"].is_null() => {
            println!("integrity:   being checked (SQLite quick_check at start; writes wait for it)")
        }
        _ => println!("integrity:   ok (SQLite quick_check)"),
    }
    match status["storage"]["last_verified_backup"].as_object() {
        Some(b) => println!(
            "last backup: {} ({} bytes, verified {})",
            b.get("file").and_then(Value::as_str).unwrap_or(""),
            b.get("bytes").and_then(Value::as_u64).unwrap_or(0),
            b.get("verified_at").and_then(Value::as_str).unwrap_or("")
        ),
        None => println!("last backup: none verified yet (`yui backup FILE`)"),
    }
    println!("records:");
    for (name, c) in status["collections"].as_object().into_iter().flatten() {
        println!("  {name:<15} {:>8}  ({})", c["count"], s(&c["scope"]));
    }
    Ok(())
}

/// The origin towns near or over a quota today, one line each.
fn print_quotas(q: &Value) {
    let towns = q["towns"].as_array().cloned().unwrap_or_default();
    if towns.is_empty() {
        println!(
            "quotas:      no town above 50% of a quota today ({} JST; limits in `yui status --json`)",
            q["day"].as_str().unwrap_or("")
        );
        return;
    }
    println!(
        "quotas:      origin towns near a quota today ({} JST), what peers brought in:",
        q["day"].as_str().unwrap_or("")
    );
    for t in &towns {
        let collection = t["collection"].as_str().unwrap_or("");
        let limits = &q["limits"][collection];
        let n = |v: &Value| v.as_u64().unwrap_or(0);
        let percent = n(&t["percent"]);
        let mark = if percent >= 100 { "  AT LIMIT" } else { "" };
        println!(
            "  {:<16} {:<14} records {}/{}  bytes {}/{}  stored {}/{}  refused today {}{mark}",
            t["town"].as_str().unwrap_or(""),
            collection,
            n(&t["records_today"]),
            n(&limits["records_per_day"]),
            n(&t["bytes_today"]),
            n(&limits["bytes_per_day"]),
            n(&t["stored_bytes"]),
            n(&limits["stored_bytes"]),
            n(&t["refused_today"]),
        );
    }
}
