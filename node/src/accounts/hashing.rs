//! The password hashing threads: [`CONCURRENT_HASHES`] dedicated threads
//! fed by two queues, so a flood of logins can neither take every core nor
//! much memory, nor make a known user wait behind it.
//!
//! Why dedicated threads rather than `spawn_blocking`: each Argon2id hash
//! needs 19 MiB. On tokio's blocking pool every hash may run on another
//! thread, and the C allocator keeps freed blocks of that size in the arena
//! of the thread that freed them (glibc gives threads up to 8 arenas per
//! core), fragmented: 300 logins took a node to 645–855 MB. Two threads
//! alone still reached 420 MB after 20 hashes, so each thread also reuses
//! its own 19 MiB (`accounts::verify_password`): the node stays near 70 MB
//! (docs/operations.md 4.3).
//!
//! Two lanes: [`Lane::Known`] (a login from a browser that logged in as
//! that user before, and an administrator's `yui user add|passwd`) is
//! always taken first; [`Lane::Other`] holds at most [`MAX_WAITING`] jobs,
//! and a job beyond that is refused at once (`Busy`), so no queue grows
//! with a flood and a waiting login never waits long.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use super::CONCURRENT_HASHES;

/// Jobs of the other lane allowed to wait at once; more are refused.
pub const MAX_WAITING: usize = 16;
/// Jobs of the known lane allowed to wait at once (a bound, not a
/// throttle: known browsers log in a few times a day).
const MAX_WAITING_KNOWN: usize = 64;

/// Which queue a job waits in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lane {
    /// Taken first: a known browser's login, an administrator's command.
    Known,
    /// Everything else, within [`MAX_WAITING`].
    Other,
}

/// The queue of that lane is full (or the pool is closing).
#[derive(Debug)]
pub struct Busy;

type Job = Box<dyn FnOnce() + Send>;

#[derive(Default)]
struct Queues {
    known: VecDeque<Job>,
    other: VecDeque<Job>,
    threads: usize,
    closed: bool,
}

#[derive(Default)]
struct Shared {
    queues: Mutex<Queues>,
    ready: Condvar,
}

fn lock(m: &Mutex<Queues>) -> MutexGuard<'_, Queues> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The hashing threads; started on first use, stopped when dropped.
#[derive(Default)]
pub struct HashPool {
    shared: Arc<Shared>,
}

impl HashPool {
    /// Queues `f` for a hashing thread at once (not when first polled);
    /// the future answers its result.
    pub fn run<T: Send + 'static>(
        &self,
        lane: Lane,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> impl std::future::Future<Output = Result<T, Busy>> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let queued = self.submit(
            lane,
            Box::new(move || {
                let _ = tx.send(f());
            }),
        );
        async move {
            queued?;
            rx.await.map_err(|_| Busy)
        }
    }

    fn submit(&self, lane: Lane, job: Job) -> Result<(), Busy> {
        let mut q = lock(&self.shared.queues);
        if q.closed {
            return Err(Busy);
        }
        match lane {
            Lane::Known if q.known.len() < MAX_WAITING_KNOWN => q.known.push_back(job),
            Lane::Other if q.other.len() < MAX_WAITING => q.other.push_back(job),
            _ => return Err(Busy),
        }
        if q.threads < CONCURRENT_HASHES {
            let shared = self.shared.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("yui-hash-{}", q.threads))
                .spawn(move || work(&shared));
            match spawned {
                Ok(_) => q.threads += 1,
                Err(e) => tracing::error!(error = %e, "could not start a hashing thread"),
            }
        }
        drop(q);
        self.shared.ready.notify_one();
        Ok(())
    }

    /// Jobs waiting in each lane (known, other).
    #[cfg(test)]
    fn waiting(&self) -> (usize, usize) {
        let q = lock(&self.shared.queues);
        (q.known.len(), q.other.len())
    }
}

impl Drop for HashPool {
    fn drop(&mut self) {
        lock(&self.shared.queues).closed = true;
        self.shared.ready.notify_all();
    }
}

fn work(shared: &Shared) {
    loop {
        let job = {
            let mut q = lock(&shared.queues);
            loop {
                if let Some(job) = q.known.pop_front().or_else(|| q.other.pop_front()) {
                    break job;
                }
                if q.closed {
                    q.threads -= 1;
                    return;
                }
                q = shared.ready.wait(q).unwrap_or_else(PoisonError::into_inner);
            }
        };
        // A panicking job must not take the thread (and its lane) with it;
        // its caller sees its channel closed.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test]
    async fn known_jobs_go_first_and_the_other_lane_is_bounded() {
        let pool = HashPool::default();
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        let started = Arc::new(AtomicUsize::new(0));
        // Hold every thread.
        for _ in 0..CONCURRENT_HASHES {
            let (gate, started) = (gate.clone(), started.clone());
            let held = pool.submit(
                Lane::Other,
                Box::new(move || {
                    started.fetch_add(1, Ordering::SeqCst);
                    let (open, cv) = &*gate;
                    let mut open = open.lock().expect("lock");
                    while !*open {
                        open = cv.wait(open).expect("wait");
                    }
                }),
            );
            assert!(held.is_ok());
        }
        while started.load(Ordering::SeqCst) < CONCURRENT_HASHES {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let order = Arc::new(Mutex::new(Vec::new()));
        let done = Arc::new(AtomicUsize::new(0));
        for i in 0..MAX_WAITING {
            let (order, done) = (order.clone(), done.clone());
            let job = pool.submit(
                Lane::Other,
                Box::new(move || {
                    order.lock().expect("lock").push(format!("other{i}"));
                    done.fetch_add(1, Ordering::SeqCst);
                }),
            );
            assert!(job.is_ok());
        }
        assert!(
            pool.submit(Lane::Other, Box::new(|| {})).is_err(),
            "a full lane refuses at once"
        );
        assert_eq!(pool.waiting(), (0, MAX_WAITING));
        let known = {
            let order = order.clone();
            pool.run(Lane::Known, move || {
                order.lock().expect("lock").push("known".to_owned());
            })
        };
        *gate.0.lock().expect("lock") = true;
        gate.1.notify_all();
        known.await.expect("ran");
        while done.load(Ordering::SeqCst) < MAX_WAITING {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Freed threads take the known job before any waiting other one.
        let order = order.lock().expect("lock");
        assert!(
            order[..CONCURRENT_HASHES].contains(&"known".to_owned()),
            "{order:?}"
        );
    }
}
