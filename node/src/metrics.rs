//! Prometheus metrics of the node, kept in memory and rendered as text.
//!
//! Hand-written rather than a metrics crate: a handful of counters and one
//! latency histogram per route do not justify a dependency.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use yui_protocol::Collection;

/// Upper bounds of the request latency histogram, in seconds.
const BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Default)]
pub struct Metrics {
    /// (method, route, status) → requests.
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    /// (method, route) → latency.
    latency: Mutex<BTreeMap<(String, String), Histogram>>,
    writes: AtomicU64,
}

/// The label a request's method is counted under: one of the methods of
/// RFC 9110, or `other`. A client may send any token as a method; labelled
/// raw, made-up methods grew `/metrics` (which needs no token) without
/// bound. Routes are already bounded: a route template of the router, or
/// `unmatched`.
pub fn method_label(method: &str) -> &'static str {
    const KNOWN: [&str; 9] = [
        "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT",
    ];
    KNOWN.into_iter().find(|m| *m == method).unwrap_or("other")
}

impl Metrics {
    /// Counts one request; `method` is labelled by [`method_label`].
    pub fn observe_request(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        let method = method_label(method);
        let secs = elapsed.as_secs_f64();
        *lock(&self.requests)
            .entry((method.to_owned(), route.to_owned(), status))
            .or_default() += 1;
        let mut latency = lock(&self.latency);
        let h = latency
            .entry((method.to_owned(), route.to_owned()))
            .or_default();
        for (i, bound) in BUCKETS.iter().enumerate() {
            if secs <= *bound {
                h.counts[i] += 1;
            }
        }
        h.count += 1;
        h.sum += secs;
    }

    pub fn record_write(&self) {
        self.writes.fetch_add(1, Ordering::Relaxed);
    }

    /// Many record writes at once (an import).
    pub fn record_writes(&self, n: usize) {
        self.writes.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub fn render(&self, counts: &BTreeMap<Collection, u64>, disk_bytes: u64) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP yui_records Live (not deleted) records per collection."
        );
        let _ = writeln!(out, "# TYPE yui_records gauge");
        for (c, n) in counts {
            let _ = writeln!(
                out,
                "yui_records{{collection=\"{}\",scope=\"{}\"}} {n}",
                c.name(),
                c.scope().as_str()
            );
        }
        let _ = writeln!(
            out,
            "# HELP yui_storage_bytes Size of the database files (main and WAL)."
        );
        let _ = writeln!(out, "# TYPE yui_storage_bytes gauge");
        let _ = writeln!(out, "yui_storage_bytes {disk_bytes}");
        let _ = writeln!(
            out,
            "# HELP yui_record_writes_total Records created, updated or deleted through the API."
        );
        let _ = writeln!(out, "# TYPE yui_record_writes_total counter");
        let _ = writeln!(
            out,
            "yui_record_writes_total {}",
            self.writes.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP yui_log_lines_dropped_total Log lines that could not be written to stderr."
        );
        let _ = writeln!(out, "# TYPE yui_log_lines_dropped_total counter");
        let _ = writeln!(
            out,
            "yui_log_lines_dropped_total {}",
            crate::logging::dropped_lines()
        );
        let _ = writeln!(
            out,
            "# HELP yui_http_requests_total HTTP requests by method, route and status (methods outside RFC 9110 as `other`)."
        );
        let _ = writeln!(out, "# TYPE yui_http_requests_total counter");
        for ((method, route, status), n) in lock(&self.requests).iter() {
            let _ = writeln!(
                out,
                "yui_http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP yui_http_request_duration_seconds HTTP request latency."
        );
        let _ = writeln!(out, "# TYPE yui_http_request_duration_seconds histogram");
        for ((method, route), h) in lock(&self.latency).iter() {
            let labels = format!("method=\"{method}\",route=\"{route}\"");
            for (bound, n) in BUCKETS.iter().zip(h.counts) {
                let _ = writeln!(
                    out,
                    "yui_http_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {n}"
                );
            }
            let _ = writeln!(
                out,
                "yui_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "yui_http_request_duration_seconds_sum{{{labels}}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "yui_http_request_duration_seconds_count{{{labels}}} {}",
                h.count
            );
        }
        out
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Sync metrics: per dialled peer (persisted state) and per node that dials us.
/// Appends one counter without labels.
pub fn render_counter(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} counter");
    let _ = writeln!(out, "{name} {value}");
}

/// Appends the standard process metrics of Prometheus client libraries
/// (`process_cpu_seconds_total`, `process_resident_memory_bytes`,
/// `process_virtual_memory_bytes`, `process_open_fds`, `process_max_fds`,
/// `process_start_time_seconds`), read from `/proc/self` on Linux; those
/// that cannot be read are left out.
pub fn render_process(out: &mut String, start_time_seconds: f64) {
    let ticks = rustix::param::clock_ticks_per_second() as f64;
    let page = rustix::param::page_size() as u64;
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat")
        // Fields after the command name, which may hold spaces: state is
        // field 3, utime 14, stime 15, vsize 23, rss 24.
        && let Some((_, rest)) = stat.rsplit_once(") ")
    {
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
        if let (Some(utime), Some(stime)) = (field(14), field(15))
            && ticks > 0.0
        {
            let _ = writeln!(
                out,
                "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds."
            );
            let _ = writeln!(out, "# TYPE process_cpu_seconds_total counter");
            let _ = writeln!(
                out,
                "process_cpu_seconds_total {}",
                (utime + stime) as f64 / ticks
            );
        }
        if let Some(vsize) = field(23) {
            render_gauge(
                out,
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
                vsize,
            );
        }
        if let Some(rss) = field(24) {
            render_gauge(
                out,
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                rss * page,
            );
        }
    }
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        render_gauge(
            out,
            "process_open_fds",
            "Number of open file descriptors.",
            dir.count() as u64,
        );
    }
    if let Ok(limits) = std::fs::read_to_string("/proc/self/limits")
        && let Some(line) = limits.lines().find(|l| l.starts_with("Max open files"))
        && let Some(soft) = line
            .split_whitespace()
            .nth(3)
            .and_then(|v| v.parse::<u64>().ok())
    {
        render_gauge(
            out,
            "process_max_fds",
            "Maximum number of open file descriptors.",
            soft,
        );
    }
    let _ = writeln!(
        out,
        "# HELP process_start_time_seconds Start time of the process since unix epoch in seconds."
    );
    let _ = writeln!(out, "# TYPE process_start_time_seconds gauge");
    let _ = writeln!(out, "process_start_time_seconds {start_time_seconds:.3}");
}

/// Appends one gauge.
pub fn render_gauge(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} gauge");
    let _ = writeln!(out, "{name} {value}");
}

/// Appends one counter with one label of fixed values.
pub fn render_labelled(
    out: &mut String,
    name: &str,
    help: &str,
    label: &str,
    values: &[(&str, u64)],
) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} counter");
    for (value, n) in values {
        let _ = writeln!(out, "{name}{{{label}=\"{value}\"}} {n}");
    }
}

/// Origin towns labelled by name in the quota metrics; the others are
/// summed under `town="other"` (a member can make up town ids at will).
pub const QUOTA_TOWNS_LABELLED: usize = 10;

/// The quota metrics: the limits per collection, and per origin town and
/// collection today's usage, the bytes stored and today's refusals. The
/// [`QUOTA_TOWNS_LABELLED`] busiest towns are labelled, the rest summed
/// under `town="other"`.
pub fn render_quotas(
    out: &mut String,
    quotas: &yui_protocol::quota::Quotas,
    mut rows: Vec<crate::store::QuotaUsage>,
) {
    let _ = writeln!(
        out,
        "# HELP yui_quota_limit Quotas on what peers bring in, per origin town and collection (config.toml [quotas])."
    );
    let _ = writeln!(out, "# TYPE yui_quota_limit gauge");
    for c in Collection::ALL.into_iter().filter(|c| c.is_shared()) {
        let q = quotas.of(c);
        for (limit, value) in [
            ("records_per_day", q.records_per_day),
            ("bytes_per_day", q.bytes_per_day),
            ("stored_bytes", q.stored_bytes),
        ] {
            let _ = writeln!(
                out,
                "yui_quota_limit{{collection=\"{}\",limit=\"{limit}\"}} {value}",
                c.name()
            );
        }
    }
    crate::store::QuotaUsage::busiest_first(&mut rows, quotas);
    let mut labelled: Vec<&str> = Vec::new();
    // (town label, collection) → (records, bytes, stored, refused)
    let mut series: BTreeMap<(String, String), [u64; 4]> = BTreeMap::new();
    for row in &rows {
        let town = if labelled.contains(&row.town.as_str()) {
            row.town.as_str()
        } else if labelled.len() < QUOTA_TOWNS_LABELLED {
            labelled.push(&row.town);
            row.town.as_str()
        } else {
            "other"
        };
        // Town ids are [a-z0-9-] (the gate refuses others): safe in a label.
        let s = series
            .entry((town.to_owned(), row.collection.clone()))
            .or_default();
        s[0] += row.usage.records_today;
        s[1] += row.usage.bytes_today;
        s[2] += row.usage.stored_bytes;
        s[3] += row.refused_today;
    }
    let help: [(&str, &str); 4] = [
        (
            "yui_quota_records_today",
            "New records from peers today (JST), per origin town and collection.",
        ),
        (
            "yui_quota_received_bytes_today",
            "Bytes of updates from peers stored today (JST), per origin town and collection.",
        ),
        (
            "yui_quota_stored_bytes",
            "Bytes stored of the records peers brought in, per origin town and collection.",
        ),
        (
            "yui_quota_refused_documents_today",
            "Documents from peers refused today (JST) for a quota, per origin town and collection.",
        ),
    ];
    for (i, (name, text)) in help.iter().enumerate() {
        let _ = writeln!(out, "# HELP {name} {text}");
        let _ = writeln!(out, "# TYPE {name} gauge");
        for ((town, collection), values) in &series {
            let _ = writeln!(
                out,
                "{name}{{town=\"{town}\",collection=\"{collection}\"}} {}",
                values[i]
            );
        }
    }
}

pub fn render_peers(
    out: &mut String,
    peers: &[crate::store::PeerInfo],
    inbound: &[(String, crate::peer::InboundStats)],
    refused: usize,
    refused_in_answers: impl Fn(&str) -> u64,
) {
    let label = |p: &crate::store::PeerInfo| {
        format!(
            "peer=\"{}\",town=\"{}\"",
            p.url.replace('"', ""),
            p.town.as_deref().unwrap_or("").replace('"', "")
        )
    };
    // (name, type, help, value)
    type Series = (
        &'static str,
        &'static str,
        &'static str,
        fn(&crate::store::PeerInfo) -> f64,
    );
    let series: [Series; 11] = [
        (
            "yui_peer_rounds_total",
            "counter",
            "Successful sync exchanges with a peer this node dials.",
            |p| p.rounds as f64,
        ),
        (
            "yui_peer_failures",
            "gauge",
            "Consecutive failed exchanges (0 when the last one succeeded).",
            |p| p.failures as f64,
        ),
        (
            "yui_peer_received_bytes_total",
            "counter",
            "Bytes received from a peer (message bodies).",
            |p| p.bytes_in as f64,
        ),
        (
            "yui_peer_sent_bytes_total",
            "counter",
            "Bytes sent to a peer (message bodies).",
            |p| p.bytes_out as f64,
        ),
        // The names before the unit went last (Prometheus naming); kept for
        // one release, see CHANGELOG.md.
        (
            "yui_peer_bytes_in_total",
            "counter",
            "Deprecated: the same as yui_peer_received_bytes_total; removed in the next release.",
            |p| p.bytes_in as f64,
        ),
        (
            "yui_peer_bytes_out_total",
            "counter",
            "Deprecated: the same as yui_peer_sent_bytes_total; removed in the next release.",
            |p| p.bytes_out as f64,
        ),
        (
            "yui_peer_docs_in_total",
            "counter",
            "Document updates received from a peer.",
            |p| p.docs_in as f64,
        ),
        (
            "yui_peer_docs_out_total",
            "counter",
            "Document updates sent to a peer.",
            |p| p.docs_out as f64,
        ),
        (
            "yui_peer_pending_documents",
            "gauge",
            "Shared records the peer is not yet known to have.",
            |p| p.pending as f64,
        ),
        (
            "yui_peer_last_success_timestamp_seconds",
            "gauge",
            "Time of the last successful exchange (0 = never).",
            |p| p.last_success_at.unwrap_or(0) as f64 / 1000.0,
        ),
        (
            "yui_peer_up",
            "gauge",
            "1 if the last exchange succeeded.",
            |p| {
                f64::from(u8::from(
                    p.last_error.is_none() && p.last_success_at.is_some(),
                ))
            },
        ),
    ];
    for (name, kind, help, value) in series {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for p in peers {
            let _ = writeln!(out, "{name}{{{}}} {}", label(p), value(p));
        }
    }
    let _ = writeln!(
        out,
        "# HELP yui_peer_refused_documents_total Documents in the answers of a peer this node dials (to its pulls) that this node refused (schema, town, time, personal data, quota, ...), since start."
    );
    let _ = writeln!(out, "# TYPE yui_peer_refused_documents_total counter");
    for p in peers {
        let _ = writeln!(
            out,
            "yui_peer_refused_documents_total{{{}}} {}",
            label(p),
            refused_in_answers(&p.url)
        );
    }
    let _ = writeln!(
        out,
        "# HELP yui_inbound_rounds_total Sync requests served to a node that dials this one."
    );
    let _ = writeln!(out, "# TYPE yui_inbound_rounds_total counter");
    for (node_id, s) in inbound {
        let _ = writeln!(
            out,
            "yui_inbound_rounds_total{{node_id=\"{node_id}\",town=\"{}\"}} {}",
            s.town, s.rounds
        );
    }
    let _ = writeln!(
        out,
        "# HELP yui_inbound_pulled_ahead_total Sync requests that asked for the next batch before the last was stored."
    );
    let _ = writeln!(out, "# TYPE yui_inbound_pulled_ahead_total counter");
    for (node_id, s) in inbound {
        let _ = writeln!(
            out,
            "yui_inbound_pulled_ahead_total{{node_id=\"{node_id}\",town=\"{}\"}} {}",
            s.town, s.pulled_ahead
        );
    }
    let _ = writeln!(
        out,
        "# HELP yui_inbound_bad_messages_total Malformed messages refused from a node."
    );
    let _ = writeln!(out, "# TYPE yui_inbound_bad_messages_total counter");
    for (node_id, s) in inbound {
        let _ = writeln!(
            out,
            "yui_inbound_bad_messages_total{{node_id=\"{node_id}\",town=\"{}\"}} {}",
            s.town, s.bad_messages
        );
    }
    let _ = writeln!(
        out,
        "# HELP yui_inbound_refused_documents_total Documents a node pushed that this node refused (schema, town, time, personal data, ...)."
    );
    let _ = writeln!(out, "# TYPE yui_inbound_refused_documents_total counter");
    for (node_id, s) in inbound {
        let _ = writeln!(
            out,
            "yui_inbound_refused_documents_total{{node_id=\"{node_id}\",town=\"{}\"}} {}",
            s.town, s.refused_docs
        );
    }
    let _ = writeln!(
        out,
        "# HELP yui_peer_port_refused_recent Connection attempts the peer port refused (last 100 kept)."
    );
    let _ = writeln!(out, "# TYPE yui_peer_port_refused_recent gauge");
    let _ = writeln!(out, "yui_peer_port_refused_recent {refused}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_up_methods_share_one_label() {
        let m = Metrics::default();
        for method in ["GET", "BREW", "get", "MADEUP1", "MADEUP2"] {
            m.observe_request(method, "unmatched", 405, Duration::ZERO);
        }
        let out = m.render(&BTreeMap::new(), 0);
        assert!(out.contains("method=\"GET\""), "{out}");
        assert!(
            out.contains(
                "yui_http_requests_total{method=\"other\",route=\"unmatched\",status=\"405\"} 4"
            ),
            "{out}"
        );
        assert!(!out.contains("BREW") && !out.contains("MADEUP"), "{out}");
    }
}
