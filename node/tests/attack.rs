//! Hostile peers under load (issue "Federation under stress"): a member with
//! a valid certificate sends oversize batches, local-collection and
//! schema-violating documents, endless long polls up to and beyond the
//! connection cap, slow-loris bodies, stalled headers and handshakes that
//! never finish, while an honest client measures the local API. The node
//! must stay responsive, refuse what it must, keep syncing with an honest
//! member and keep its records intact. The scenario is in the support
//! library (`yui_tests::attack`), shared with `benches/attack.rs`.

use std::time::Duration;

use yui_tests::attack::{self, HANDSHAKE_TIMEOUT, MEMBER_CAP, PHASES};
use yui_tests::tls::{Member, client_hello};
use yui_tests::town::{Consortium, Running};
use yui_tests::wire::long_poll_body;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_peers_under_load_leave_the_local_api_responsive_and_the_records_intact() {
    let opts = attack::Options::default();
    // Boxed: the scenario's future is large for a test thread's stack.
    let report = Box::pin(attack::run(&opts)).await;
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
    // The member's budget holds (its pusher has one connection open): the
    // excess is refused at once, the rest held.
    assert!(report.long_polls_held < MEMBER_CAP);
    assert!(report.long_polls_held >= MEMBER_CAP / 2);
    assert_eq!(
        report.long_polls_held + report.long_polls_refused,
        opts.long_polls
    );
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
            PHASES[i + 1]
        );
    }
    // Connections that stall in the handshake, the headers or the body
    // are closed.
    assert_eq!(
        report.slow_bodies_open_at_end, 0,
        "slow-loris bodies still open"
    );
    assert_eq!(report.stalled_still_open, 0);
    assert!(report.stalled_closed_within < HANDSHAKE_TIMEOUT + Duration::from_secs(3));
}

/// Anyone who can reach the peer port, certificate or not, may open
/// connections and send half a ClientHello. Before the handshake budgets,
/// 256 of them, renewed as the node timed them out, kept every member out.
/// Now a flood of them from one host, each replaced the moment the node
/// drops it, only evicts that host's own: a member on another host still
/// connects and gets answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_client_hellos_from_anyone_cannot_keep_members_out() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Instant;
    use tokio::io::AsyncWriteExt;

    let consortium = Consortium::new("攻撃テスト");
    let victim = consortium.town("omachi");
    let member_town = consortium.town("tateshina");
    let node = Running::start(victim.node.clone(), 2);
    let member = Member::of(&member_town, node.peer);
    let hello = client_hello(&member);
    let half = hello[..hello.len() / 2].to_vec();

    // The flood: 300 half ClientHellos kept open, each replaced as soon as
    // the node closes it.
    const FLOOD: usize = 300;
    let stop = tokio_util::sync::CancellationToken::new();
    let (opened, dropped) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let flood = {
        let (stop, opened, dropped, peer) =
            (stop.clone(), opened.clone(), dropped.clone(), node.peer);
        tokio::spawn(async move {
            let mut open = tokio::task::JoinSet::new();
            loop {
                while open.len() < FLOOD {
                    let (half, opened) = (half.clone(), opened.clone());
                    open.spawn(async move {
                        // Another host: 127.0.0.2 (all of 127/8 is loopback).
                        let connect = async {
                            let socket = tokio::net::TcpSocket::new_v4()?;
                            socket.bind("127.0.0.2:0".parse().expect("addr"))?;
                            socket.connect(peer).await
                        };
                        let Ok(mut tcp) = connect.await else {
                            return;
                        };
                        if tcp.write_all(&half).await.is_ok() {
                            opened.fetch_add(1, Ordering::Relaxed);
                            attack::until_closed(tcp, Instant::now()).await;
                        }
                    });
                }
                tokio::select! {
                    _ = stop.cancelled() => return,
                    done = open.join_next() => if done.is_some() {
                        dropped.fetch_add(1, Ordering::Relaxed);
                    },
                }
            }
        })
    };
    let started = Instant::now();
    while opened.load(Ordering::Relaxed) < FLOOD && started.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        opened.load(Ordering::Relaxed) >= FLOOD,
        "the flood did not get going"
    );

    // A member under the flood: fresh connections, each answered.
    let mut slowest = Duration::ZERO;
    for i in 0..20 {
        let t = Instant::now();
        let exchange = async {
            let mut conn = member.conn().await?;
            conn.request("", &long_poll_body(0, 0, 0)).await
        };
        let answer = tokio::time::timeout(Duration::from_secs(5), exchange).await;
        match answer {
            Ok(Ok((200, _))) => {}
            other => panic!("member connection {i} under the flood: {other:?}"),
        }
        slowest = slowest.max(t.elapsed());
    }
    let (opened_n, dropped_n) = (
        opened.load(Ordering::Relaxed),
        dropped.load(Ordering::Relaxed),
    );
    eprintln!(
        "20 member connections under a flood of {FLOOD} half ClientHellos: slowest {slowest:?}; \
         {opened_n} half ClientHellos sent, {dropped_n} dropped by the node"
    );
    assert!(
        slowest < Duration::from_secs(3),
        "a member connection took {slowest:?}"
    );
    stop.cancel();
    flood.await.expect("flood");

    // The refusals are counted, not listed one by one: the list still has
    // room for the one refusal an administrator needs to see.
    let refused = victim.node.peering().expect("joined").refused_attempts();
    assert!(refused.len() <= 5, "{refused:#?}");
    let flooded: u64 = refused
        .iter()
        .filter(|r| r.from.starts_with("127.0.0.2:"))
        .map(|r| r.count)
        .sum();
    assert!(flooded >= 1, "{refused:#?}");
    node.stop();
}
