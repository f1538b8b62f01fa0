//! Hostile peers (issue 4): the local API's latency with and without an
//! attack on the peer port, measured in the same run.
//!
//! ```text
//! cargo bench -p yui-node --bench attack                       # 10 s baseline, 10 s phases
//! cargo bench -p yui-node --bench attack -- --baseline 5 --phase 5
//! ```
//!
//! The scenario is the one `tests/attack.rs` asserts on (the support
//! library's `yui_tests::attack`): a victim node in-process on a two-worker
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

use std::time::Duration;

use anyhow::{Result, bail};
use yui_tests::attack;
use yui_tests::bench::{CodeState, Given, loadavg, whole_number};

fn main() -> Result<()> {
    let given = Given::read(
        "YUI_BENCH_ATTACK_",
        &["BASELINE", "PHASE", "RECORDS", "INTERVAL_MS"],
        &[],
        "options: --baseline 10 --phase 10 --records 300 --interval-ms 3",
    )?;
    let mut opts = attack::Options {
        baseline: Duration::from_secs(10),
        phase: Duration::from_secs(10),
        ..attack::Options::default()
    };
    for (name, v) in &given.values {
        let n = whole_number(v)?;
        match name.as_str() {
            "baseline" => opts.baseline = Duration::from_secs(n as u64),
            "phase" => opts.phase = Duration::from_secs(n as u64),
            "records" => opts.records = n,
            "interval-ms" => opts.interval = Duration::from_millis(n as u64),
            other => bail!("unknown option --{other}; try --help"),
        }
    }
    println!("# Yui hostile peers benchmark (issue 4)");
    println!(
        "code: {}; {} cores; load average at start {}",
        CodeState::of_this_checkout(),
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        loadavg()
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
    let report = rt.block_on(Box::pin(attack::run(&opts)));
    for line in report.lines() {
        println!("{line}");
    }
    if !report.probe_errors.is_empty() {
        println!("FAILED local requests: {:#?}", report.probe_errors);
    }
    Ok(())
}
