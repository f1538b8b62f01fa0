//! Hostile peers (issue 4): the local API's latency with and without an
//! attack on the peer port, measured in the same run.
//!
//! ```text
//! cargo bench -p yui-node --bench attack                       # 10 s baseline, 10 s phases
//! cargo bench -p yui-node --bench attack -- --baseline 5 --phase 5
//! ```
//!
//! The scenario is the one `tests/attack.rs` asserts on
//! (`tests/support/attack.rs`): a victim node in-process on a two-worker
//! runtime with its real local API and peer port, an honest member that
//! dials it, and an attacker with a valid member certificate that sends, in
//! turn, (1) a push of 5,000 valid documents, 500 worker documents (as
//! themselves and disguised as knowledge), 500 schema-violating documents,
//! then raw pushes just under the 32 MiB limit beside gzip pushes that
//! inflate to it; (2) 300 connections of endless long polls (the cap is
//! 256) while it pushes every 100 ms and the honest member writes every
//! 500 ms; (3) 40 slow-loris bodies, 20 stalled headers and 40 handshakes
//! that never finish, until the node has closed the stalled ones. One
//! honest client reads the local API throughout: a GET by id and a
//! 5-result search in turn, one request at a time, 3 ms apart.
//!
//! Options (also `YUI_BENCH_ATTACK_<NAME>`): `--baseline` and `--phase`
//! seconds, `--records` held before the attack, `--interval-ms`.
#![allow(clippy::print_stdout, clippy::print_stderr)]

#[path = "../tests/support/attack.rs"]
mod kit;
#[path = "support/common.rs"]
mod support;

use std::time::Duration;

fn option(args: &[String], name: &str) -> Option<u64> {
    let flag = format!("--{name}");
    let env = format!("YUI_BENCH_ATTACK_{}", name.to_uppercase().replace('-', "_"));
    args.iter()
        .position(|a| *a == flag)
        .and_then(|i| args.get(i + 1).cloned())
        .or_else(|| std::env::var(env).ok())
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("--{name} takes a whole number, not {v:?}"))
        })
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mut opts = kit::Options {
        baseline: Duration::from_secs(option(&args, "baseline").unwrap_or(10)),
        phase: Duration::from_secs(option(&args, "phase").unwrap_or(10)),
        ..kit::Options::default()
    };
    if let Some(n) = option(&args, "records") {
        opts.records = n as usize;
    }
    if let Some(ms) = option(&args, "interval-ms") {
        opts.interval = Duration::from_millis(ms);
    }
    println!("# Yui hostile peers benchmark (issue 4)");
    println!(
        "code: {}; {} cores; load average at start {}",
        support::CodeState::of_this_checkout(),
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        support::loadavg()
    );
    println!(
        "baseline {:?}, phases of at least {:?}, {} records held, one request every {:?} plus its own time",
        opts.baseline, opts.phase, opts.records, opts.interval
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let report = rt.block_on(Box::pin(kit::run(&opts)));
    for line in report.lines() {
        println!("{line}");
    }
    if !report.probe_errors.is_empty() {
        println!("FAILED local requests: {:#?}", report.probe_errors);
    }
}
