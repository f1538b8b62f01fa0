//! Hostile peers under load (issue "Federation under stress"): a member with
//! a valid certificate sends oversize batches, local-collection and
//! schema-violating documents, endless long polls up to and beyond the
//! connection cap, slow-loris bodies, stalled headers and handshakes that
//! never finish, while an honest client measures the local API. The node
//! must stay responsive, refuse what it must, keep syncing with an honest
//! member and keep its records intact. The scenario is in
//! `support/attack.rs`, shared with `benches/attack.rs`.

#[path = "support/attack.rs"]
mod kit;

use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_peers_under_load_leave_the_local_api_responsive_and_the_records_intact() {
    let opts = kit::Options::default();
    // Boxed: the scenario's future is large for a test thread's stack.
    let report = Box::pin(kit::run(&opts)).await;
    for line in report.lines() {
        eprintln!("{line}");
    }
    assert!(
        report.probe_errors.is_empty(),
        "local API requests failed: {:#?}",
        report.probe_errors
    );
    let (baseline, attack) = (&report.latency[0], &report.attack);
    assert!(
        baseline.requests >= 100 && attack.requests >= 500,
        "the client measured too little"
    );
    assert!(
        attack.p99 < Duration::from_millis(500),
        "local API p99 under attack: {:?} (without: {:?})",
        attack.p99,
        baseline.p99
    );
    // The cap holds: the excess is refused at once, the rest held.
    assert!(report.long_polls_held <= kit::CONNECTION_CAP);
    assert!(
        report.long_polls_refused >= opts.long_polls - kit::CONNECTION_CAP,
        "{} of {} refused",
        report.long_polls_refused,
        opts.long_polls
    );
    assert!(report.long_polls_held >= kit::CONNECTION_CAP - 8);
    assert!(
        report.slowest_refusal < Duration::from_secs(5),
        "a refusal took {:?}",
        report.slowest_refusal
    );
    // The honest member kept syncing both ways through every phase.
    for (i, (out, back)) in report.honest_sync.iter().enumerate() {
        assert!(
            *out < Duration::from_secs(5) && *back < Duration::from_secs(5),
            "honest sync during {}: {out:?} / {back:?}",
            kit::PHASES[i + 1]
        );
    }
    // Connections that stall in the handshake or the headers are closed.
    assert_eq!(report.stalled_still_open, 0);
    assert!(report.stalled_closed_within < kit::HANDSHAKE_TIMEOUT + Duration::from_secs(3));
}
