//! The one writer and the readers. The writer thread owns the write
//! connection and commits in groups (see the module doc of `store`); reads
//! take a read-only connection from a small pool inside `spawn_blocking`.

use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::mpsc;

use automerge::ActorId;
use rusqlite::{Connection, OpenFlags};
use tokio::sync::{oneshot, watch};

use super::schema::{configure, corrupt};
use super::{Store, lock};
use crate::error::{Error, Result};

/// Read-only connections kept open.
pub(super) const READERS: usize = 4;
/// Most writes committed in one transaction.
const MAX_GROUP: usize = 256;

pub(super) type Done = Box<dyn FnOnce(Result<(), CommitFailed>) + Send>;

/// Why a group's commit failed, told to each of its writes.
#[derive(Clone, Debug)]
pub(super) struct CommitFailed {
    /// For lack of space on the file system.
    pub(super) disk_full: bool,
    pub(super) message: String,
}
pub(super) type Job = Box<dyn FnOnce(&Connection, &mut WriterState) -> (bool, Done) + Send>;

/// What the writer thread keeps between transactions.
pub(super) struct WriterState {
    pub(super) next_seq: i64,
    pub(super) town: String,
    pub(super) actor: ActorId,
}

impl Store {
    pub(super) async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection, &mut WriterState) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        self.refuse_if_damaged().await?;
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move |conn, state| {
            let result = f(conn, state);
            let ok = result.is_ok();
            let done: Done = Box::new(move |commit| {
                let _ = reply.send(match commit {
                    Ok(()) => result,
                    Err(CommitFailed {
                        disk_full: true,
                        message,
                    }) => Err(Error::StorageFull { detail: message }),
                    Err(CommitFailed { message, .. }) => Err(Error::Storage(message)),
                });
            });
            (ok, done)
        });
        lock(&self.inner.writer)
            .as_ref()
            .ok_or(Error::ShuttingDown)?
            .send(job)
            .map_err(|_| Error::ShuttingDown)?;
        let result = answer
            .await
            .map_err(|_| Error::Storage("the write was not run; see the log".into()))?;
        // Whether writes fail for lack of space: set by a write that did,
        // cleared by the next that is stored.
        match &result {
            Ok(_) => {
                self.set_storage_full(false);
            }
            Err(Error::StorageFull { detail }) => {
                if !self.set_storage_full(true) {
                    tracing::error!(error = %detail, "writes fail: the disk holding the database is full");
                }
            }
            Err(_) => {}
        }
        result
    }

    pub(super) async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let _slot = self
            .inner
            .reader_slots
            .acquire()
            .await
            .map_err(|_| Error::ShuttingDown)?;
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let conn = match lock(&inner.readers).pop() {
                Some(c) => c,
                None => open_reader(&inner.path)?,
            };
            let result = f(&conn);
            lock(&inner.readers).push(conn);
            result
        })
        .await
        .map_err(|e| Error::Storage(format!("read task failed: {e}")))?
    }
}

fn commit_failed(e: &rusqlite::Error) -> CommitFailed {
    CommitFailed {
        disk_full: e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull),
        message: format!("commit failed: {e}"),
    }
}

pub(super) fn open_reader(path: &Path) -> Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(|e| corrupt(path, e))?;
    configure(&conn)?;
    Ok(conn)
}

pub(super) fn run_writer(
    conn: Connection,
    mut state: WriterState,
    jobs: mpsc::Receiver<Job>,
    notify: watch::Sender<i64>,
) {
    while let Ok(first) = jobs.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match jobs.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let mut done = Vec::with_capacity(group.len());
        if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
            // Dropping the jobs unanswered tells each caller its write was not run.
            tracing::error!(error = %e, "could not begin a write transaction");
            continue;
        }
        for job in group {
            if conn.execute_batch("SAVEPOINT job").is_err() {
                break;
            }
            let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| job(&conn, &mut state)));
            match outcome {
                Ok((true, d)) => {
                    let _ = conn.execute_batch("RELEASE job");
                    done.push(d);
                }
                Ok((false, d)) => {
                    let _ = conn.execute_batch("ROLLBACK TO job; RELEASE job");
                    done.push(d);
                }
                Err(_) => {
                    tracing::error!("a write panicked; it was rolled back");
                    let _ = conn.execute_batch("ROLLBACK TO job; RELEASE job");
                }
            }
        }
        match conn.execute_batch("COMMIT") {
            Ok(()) => {
                notify.send_replace(state.next_seq - 1);
                for d in done {
                    d(Ok(()));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "commit failed; the writes in this group were not stored");
                let _ = conn.execute_batch("ROLLBACK");
                let failed = commit_failed(&e);
                for d in done {
                    d(Err(failed.clone()));
                }
            }
        }
    }
    // The queue is closed and drained: leave the WAL folded into the database.
    let _ = conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)");
}
