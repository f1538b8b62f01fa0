//! The API port's accept loop: the local API and the console behind a
//! connection limit and timeouts, so that a local process holding
//! connections open cannot take the node's file descriptors.
//!
//! `axum::serve` has neither a header-read timeout nor a connection limit: a
//! thousand half-sent requests exhausted the descriptors of a node under a
//! 1,024 limit, and with them the peer port and sync. Here:
//!
//! - a connection must send its first request's headers within
//!   [`HEADER_TIMEOUT`], and a kept-alive connection with no request in
//!   flight is closed after [`IDLE_TIMEOUT`];
//! - at most [`MAX_CONNECTIONS`] are open at once. A new connection over the
//!   limit closes the oldest one with no request in flight (a half-sent
//!   request, an idle keep-alive), so a real user's fresh request is served
//!   while a flood evicts itself; when every connection has a request in
//!   flight, the new one is closed at once.
//!
//! Budget of descriptors: the peer port holds at most 512 (its own
//! budgets), this port [`MAX_CONNECTIONS`] plus one, SQLite and the rest a
//! few dozen: under the 1,024 of a default soft limit.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::middleware::Next;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Connections open at once on the API port.
pub const MAX_CONNECTIONS: usize = 256;
/// A new connection's first request headers must arrive within this.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// A kept-alive connection with no request in flight is closed after this.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The address of the client on the other end of a request's connection,
/// put in every request's extensions (the console's login limits logins per
/// address). Behind a reverse proxy it is the proxy's.
#[derive(Clone, Copy, Debug)]
pub struct ClientAddr(pub std::net::IpAddr);

/// Connections turned away or evicted since the node started (for
/// `/metrics`).
pub static REFUSED: AtomicU64 = AtomicU64::new(0);

/// One open connection.
struct Conn {
    /// Requests in flight.
    busy: AtomicUsize,
    /// When the last request ended (or the connection opened).
    idle_since: Mutex<Instant>,
    /// Whether a request has been seen.
    served: std::sync::atomic::AtomicBool,
    evict: CancellationToken,
}

impl Conn {
    /// When this connection is closed if nothing happens.
    fn deadline(&self) -> Option<Instant> {
        if self.busy.load(Ordering::Acquire) > 0 {
            return None;
        }
        let since = *lock(&self.idle_since);
        Some(if self.served.load(Ordering::Acquire) {
            since + IDLE_TIMEOUT
        } else {
            since + HEADER_TIMEOUT
        })
    }
}

/// A request in flight on a connection; ends when dropped.
struct InFlight(Arc<Conn>);

impl InFlight {
    fn begin(conn: &Arc<Conn>) -> InFlight {
        conn.busy.fetch_add(1, Ordering::AcqRel);
        conn.served.store(true, Ordering::Release);
        InFlight(conn.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        *lock(&self.0.idle_since) = Instant::now();
        self.0.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The open connections, oldest first.
#[derive(Default)]
struct Open {
    next: u64,
    conns: BTreeMap<u64, Arc<Conn>>,
}

impl Open {
    /// Admits a new connection, evicting the oldest one with no request in
    /// flight when full; `None` when every open connection is busy.
    fn admit(&mut self) -> Option<(u64, Arc<Conn>)> {
        if self.conns.len() >= MAX_CONNECTIONS {
            let idle = self
                .conns
                .iter()
                .find(|(_, c)| c.busy.load(Ordering::Acquire) == 0)
                .map(|(id, _)| *id)?;
            if let Some(evicted) = self.conns.remove(&idle) {
                evicted.evict.cancel();
            }
            REFUSED.fetch_add(1, Ordering::Relaxed);
        }
        let id = self.next;
        self.next += 1;
        let conn = Arc::new(Conn {
            busy: AtomicUsize::new(0),
            idle_since: Mutex::new(Instant::now()),
            served: std::sync::atomic::AtomicBool::new(false),
            evict: CancellationToken::new(),
        });
        self.conns.insert(id, conn.clone());
        Some((id, conn))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Serves `app` on `listener` until `shutdown`, then lets the requests in
/// flight finish (idle connections close at once) before returning.
pub async fn serve(listener: TcpListener, app: Router, shutdown: CancellationToken) {
    let open = Arc::new(Mutex::new(Open::default()));
    let tracker = TaskTracker::new();
    loop {
        let (tcp, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!(error = %e, "API port: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Some((id, conn)) = lock(&open).admit() else {
            REFUSED.fetch_add(1, Ordering::Relaxed);
            tracing::debug!("API port: every connection is busy; closed a new one");
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let (app, open, shutdown) = (app.clone(), open.clone(), shutdown.clone());
        tracker.spawn(async move {
            // Marks the connection busy while a request is in flight.
            let counted = conn.clone();
            let client = ClientAddr(peer.ip());
            let track = axum::middleware::from_fn(move |mut req: Request, next: Next| {
                let in_flight = InFlight::begin(&counted);
                req.extensions_mut().insert(client);
                async move {
                    let response = next.run(req).await;
                    drop(in_flight);
                    response
                }
            });
            let service = TowerToHyperService::new(app.layer(track));
            let served = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(tcp), service);
            tokio::pin!(served);
            let mut stopping = false;
            loop {
                let deadline = conn.deadline();
                let wake = deadline.unwrap_or_else(|| Instant::now() + IDLE_TIMEOUT);
                tokio::select! {
                    _ = served.as_mut() => break,
                    _ = conn.evict.cancelled() => break,
                    _ = shutdown.cancelled(), if !stopping => {
                        stopping = true;
                        served.as_mut().graceful_shutdown();
                    }
                    _ = tokio::time::sleep_until(wake) => {
                        if conn.deadline().is_some_and(|d| d <= Instant::now()) {
                            break;
                        }
                    }
                }
            }
            lock(&open).conns.remove(&id);
        });
    }
    tracker.close();
    tracker.wait().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_port_evicts_the_oldest_idle_connection_and_refuses_when_all_are_busy() {
        let mut open = Open::default();
        let admitted: Vec<_> = (0..MAX_CONNECTIONS)
            .map(|_| open.admit().expect("room"))
            .collect();
        let _busy = InFlight::begin(&admitted[0].1);
        let (_, newest) = open.admit().expect("an idle one is evicted");
        assert!(!admitted[0].1.evict.is_cancelled(), "a busy one stays");
        assert!(
            admitted[1].1.evict.is_cancelled(),
            "the oldest idle one goes"
        );
        assert_eq!(open.conns.len(), MAX_CONNECTIONS);
        let _all: Vec<_> = open.conns.values().map(InFlight::begin).collect::<Vec<_>>();
        assert!(open.admit().is_none(), "every connection busy: refused");
        assert!(!newest.evict.is_cancelled());
    }
}
