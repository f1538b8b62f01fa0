//! The record store: every record's Automerge document in SQLite.
//!
//! **Architecture invariant:** only this module names rusqlite. The
//! accounts' SQL is here too (`users`, `audit`), over the accounts' own
//! connection; `accounts` applies the rules.
//!
//! One writer thread owns the write connection and commits in groups: it
//! takes every write waiting in its queue, runs each in its own savepoint
//! inside one transaction, commits once (`synchronous=FULL`, so the commit is
//! on disk, WAL and all), and only then answers the callers. A write the API
//! acknowledged has therefore survived `kill -9` and power loss, and eight
//! concurrent clients share one fsync. Reads run on a small pool of read-only
//! connections in `spawn_blocking`, so SQLite never blocks an async worker.
//!
//! Per record: `records.doc` holds an uncompressed save of the document and
//! `doc_chunks` the raw change chunks since, compacted every
//! [`COMPACT_AFTER`] chunks. Uncompressed, because these bytes are exactly
//! what a peer is sent (the transport compresses whole messages), so an
//! initial sync reads blobs and loads no document. `records.heads` holds the
//! document's heads (sorted 32-byte hashes), so sync can tell whether a peer
//! already has a record without loading it. `records.view` is the record's API JSON,
//! materialised at write time, so reads and lists never load a document and
//! start-up loads none. Every write gives the record the next value of a
//! node-wide sequence (`records.seq`): the change feed that sync reads. The
//! search index (`search`, FTS5 over bigram terms) is updated in the same
//! transaction as the record. Its terms are folded before they reach FTS5
//! (`protocol::search`), so it uses the `ascii` tokenizer; a database made
//! with `unicode61` (before 2026-11-22) is re-indexed once when opened.
//!
//! The parts, one concern each: `schema` (tables, identity), `writer` (the
//! writer thread and the read pool), `records` and `reads` (record writes
//! and reads), `constraints` (checks across records), `guard` (the
//! personal-data guard), `search` (the index), `feed` (the change feed and
//! stored heads), `replica` and `sync` (what sync reads and writes), `peers`,
//! `batch` (many writes in one transaction, all or none: an import),
//! `egress` (the ledger), `audit` (the audit log), `news` (what other
//! towns wrote, for the feeds and the dashboard), `users` (the accounts'
//! tables), `backup` (backup, restore and a stopped database's actor id),
//! `provenance` (change signatures and signer certificates),
//! `attachments` (files named by records, and which records name them) and
//! `own_history` (signing this node's changes made before it signed).

mod attachments;
mod audit;
mod backup;
mod batch;
mod constraints;
mod egress;
mod feed;
mod guard;
mod integrity;
mod news;
mod own_history;
mod peers;
mod provenance;
mod quota;
mod reads;
mod records;
mod replica;
mod schema;
mod search;
mod sync;
mod users;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;

use automerge::ActorId;
use rusqlite::{Connection, OpenFlags};
use serde_json::value::RawValue;
use tokio::sync::{Semaphore, watch};
use yui_protocol::{Collection, RecordId};

pub use self::attachments::{SharedRef, WantedFile};
pub use self::audit::AuditEntry;
pub use self::backup::{backup, restore, stored_actor};
pub use self::batch::{BatchDone, BatchWrite, StoredRecord};
pub use self::egress::EgressEntry;
pub use self::guard::{GuardMode, judge_personal_data};
pub use self::integrity::Integrity;
pub use self::news::News;
pub use self::peers::{PeerInfo, PeerRound};
pub use self::provenance::{ChangeSigning, SignedBy};
pub use self::quota::QuotaUsage;
pub use self::replica::SqlReplica;
pub use self::sync::PlannedAnswer;
pub(crate) use self::users::{UsersConn, UsersDb};

use self::guard::CachedRegistry;
use self::reads::ConflictScan;
use self::schema::{
    ADDED_TABLES, APPLICATION_ID, SCHEMA, SCHEMA_VERSION, configure, corrupt, get_meta, identify,
    new_actor_hex, new_epoch, set_meta,
};
use self::search::{SEARCH_TABLE, rebuild_search_if_redeclared};
use self::writer::{Job, READERS, WriterState, open_reader, run_writer};
use crate::error::{Error, Result};
use crate::fsio::write_private;

/// Incremental chunks a document may gather before it is saved whole again.
pub const COMPACT_AFTER: i64 = 16;

/// How to list a collection.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub limit: usize,
    /// The id of the last record of the previous page.
    pub cursor: Option<String>,
    pub include_deleted: bool,
    /// Equality filters on fields (`status = active`).
    pub filters: Vec<(&'static str, serde_json::Value)>,
}

/// A page of records, newest first.
pub struct Page {
    pub items: Vec<Box<RawValue>>,
    pub next_cursor: Option<String>,
}

/// Handle to the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    town: String,
    actor: ActorId,
    writer: Mutex<Option<mpsc::Sender<Job>>>,
    writer_thread: Mutex<Option<thread::JoinHandle<()>>>,
    readers: Mutex<Vec<Connection>>,
    reader_slots: Semaphore,
    last_seq: watch::Sender<i64>,
    /// The last id this process made, so ids sort in creation order.
    last_id: Mutex<Option<RecordId>>,
    /// The feed epoch of this database (changes with a restore).
    epoch: u64,
    /// The personal-data guard's names, with the (count, max seq) of the
    /// workers and customers they were read from.
    registry: Mutex<Option<CachedRegistry>>,
    /// What `recent_conflicts` found, and up to which feed position.
    conflicts: Mutex<ConflictScan>,
    /// The latest integrity check (`integrity`), shared with the writer
    /// thread, which runs the first; writes wait for it to be ok.
    integrity: Arc<Mutex<Integrity>>,
    /// Whether the first integrity check has run.
    first_check: watch::Receiver<bool>,
    /// The quotas on what peers bring in (`quota`).
    quotas: Mutex<Arc<yui_protocol::quota::Quotas>>,
    /// Signs this node's changes to shared records (`provenance`).
    /// Replaced when the node's key is rotated (`crate::membership`).
    signing: std::sync::RwLock<Option<ChangeSigning>>,
    /// Writes fail for lack of space (the last one that ended did).
    storage_full: std::sync::atomic::AtomicBool,
    /// The member keys incoming changes are checked with; empty (every
    /// change refused) until the peer layer sets it.
    signers: Mutex<Arc<yui_protocol::provenance::SignerBook>>,
}

impl Store {
    /// Creates a new, empty database. Fails if the file exists.
    pub fn create_database(path: &Path, town: &str) -> Result<()> {
        if path.exists() {
            return Err(Error::Config(format!("{} already exists", path.display())));
        }
        // Owner-only from the start: the database holds personal data, and
        // SQLite gives its -wal and -shm files the same mode.
        write_private(path, b"")?;
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.execute_batch(SCHEMA)?;
        conn.execute(SEARCH_TABLE, [])?;
        conn.execute_batch(ADDED_TABLES)?;
        conn.execute_batch(provenance::TABLES)?;
        conn.execute_batch(attachments::TABLES)?;
        set_meta(&conn, "town", town)?;
        set_meta(&conn, "actor", &new_actor_hex())?;
        set_meta(&conn, "feed_epoch", &new_epoch().to_string())?;
        // Written last, so a half-made file is not taken for a Yui database.
        conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        conn.pragma_update(None, "application_id", APPLICATION_ID)?;
        Ok(())
    }

    /// Opens an existing database and starts the writer thread, which checks
    /// the database's integrity before its first write. Reads no document
    /// and does not wait for the check: start-up costs the same at 10 or
    /// 100,000 records.
    pub fn open(path: &Path, expected_town: &str) -> Result<Store> {
        if !path.exists() {
            return Err(Error::Config(format!(
                "database {} is missing; restore it with `yui restore BACKUP_FILE`",
                path.display()
            )));
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(|e| corrupt(path, e))?;
        configure(&conn)?;
        let (town, actor) = identify(&conn, path)?;
        if town != expected_town {
            return Err(Error::Config(format!(
                "{} belongs to town {town:?} but config.toml says {expected_town:?}",
                path.display()
            )));
        }
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(|e| corrupt(path, e))?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        // The integrity check reads the whole file (3 s at 100,000 records),
        // so it runs on the writer thread, before its first write, while
        // reads and `/healthz` are already served. Only an upgrade, which
        // writes at open, checks here first: a damaged database takes no
        // write, not even a new table.
        let mut checked_at_open = None;
        if needs_upgrade(&conn)? {
            let integrity = integrity::check(&conn, crate::clock::now_ms());
            if integrity.is_ok() {
                rebuild_search_if_redeclared(&conn)?;
                let had_quotas = conn
                    .query_row(
                        "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = 'quota_usage'",
                        [],
                        |r| r.get::<_, i64>(0),
                    )?
                    > 0;
                conn.execute_batch(ADDED_TABLES)?;
                if !had_quotas {
                    quota::seed(&conn, &town)?;
                }
                conn.execute_batch(provenance::TABLES)?;
                conn.execute_batch(attachments::TABLES)?;
                if get_meta(&conn, "feed_epoch")?.is_none() {
                    set_meta(&conn, "feed_epoch", &new_epoch().to_string())?;
                }
            } else {
                integrity::log_damage(path, &integrity);
            }
            checked_at_open = Some(integrity);
        }
        let readable = conn.query_row("SELECT coalesce(max(seq), 0) + 1 FROM records", [], |r| {
            r.get::<_, i64>(0)
        });
        let next_seq = match readable {
            Ok(seq) => seq,
            Err(e) => {
                // Unreadable: find out now whether it is damage.
                let integrity = checked_at_open
                    .take()
                    .unwrap_or_else(|| integrity::check(&conn, crate::clock::now_ms()));
                if integrity.is_ok() {
                    return Err(corrupt(path, e));
                }
                if checked_at_open.is_none() {
                    integrity::log_damage(path, &integrity);
                }
                checked_at_open = Some(integrity);
                1
            }
        };
        let epoch = match get_meta(&conn, "feed_epoch") {
            Ok(Some(e)) => e
                .parse()
                .map_err(|_| corrupt(path, "unreadable feed epoch"))?,
            // Only a damaged database (checked above) gets here.
            Ok(None) | Err(_) if checked_at_open.as_ref().is_some_and(|i| !i.is_ok()) => 0,
            Ok(None) => return Err(corrupt(path, "no feed epoch")),
            Err(e) => return Err(corrupt(path, e)),
        };

        let mut readers = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            readers.push(open_reader(path)?);
        }
        let (tx, rx) = mpsc::channel::<Job>();
        let state = WriterState {
            next_seq,
            town: town.clone(),
            actor: actor.clone(),
        };
        let (last_seq, _) = watch::channel(next_seq - 1);
        let notify = last_seq.clone();
        let integrity = Arc::new(Mutex::new(checked_at_open.clone().unwrap_or_default()));
        let (first_check_done, first_check) = watch::channel(checked_at_open.is_some());
        let startup = checked_at_open.is_none().then(|| integrity::FirstCheck {
            path: path.to_owned(),
            integrity: integrity.clone(),
            done: first_check_done,
        });
        let writer_thread = thread::Builder::new()
            .name("yui-store-writer".into())
            .spawn(move || {
                if let Some(first) = startup {
                    first.run(&conn);
                }
                run_writer(conn, state, rx, notify)
            })
            .map_err(|e| Error::Storage(format!("starting the writer thread: {e}")))?;
        Ok(Store {
            inner: Arc::new(Inner {
                path: path.to_owned(),
                town,
                actor,
                writer: Mutex::new(Some(tx)),
                writer_thread: Mutex::new(Some(writer_thread)),
                readers: Mutex::new(readers),
                reader_slots: Semaphore::new(READERS),
                last_seq,
                last_id: Mutex::new(None),
                epoch,
                registry: Mutex::new(None),
                conflicts: Mutex::new(ConflictScan::default()),
                integrity,
                first_check,
                quotas: Mutex::new(Arc::default()),
                signing: std::sync::RwLock::new(None),
                storage_full: std::sync::atomic::AtomicBool::new(false),
                signers: Mutex::new(Arc::default()),
            }),
        })
    }

    /// The feed epoch of this database (see `protocol::sync`).
    pub fn feed_epoch(&self) -> u64 {
        self.inner.epoch
    }

    pub fn town(&self) -> &str {
        &self.inner.town
    }

    /// This node's Automerge actor id, hex.
    pub fn actor_hex(&self) -> String {
        self.inner.actor.to_hex_string()
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The sequence number of the latest committed write; changes whenever a
    /// write commits (sync waits on it).
    pub fn watch_seq(&self) -> watch::Receiver<i64> {
        self.inner.last_seq.subscribe()
    }

    /// Finishes the writes already queued, then stops the writer thread.
    pub fn close(&self) {
        drop(lock(&self.inner.writer).take());
        if let Some(handle) = lock(&self.inner.writer_thread).take() {
            let _ = handle.join();
        }
    }

    /// Fails if the database does not answer a trivial query.
    pub async fn check_readable(&self) -> Result<()> {
        self.read(|conn| {
            conn.query_row("SELECT count(*) FROM meta", [], |r| r.get::<_, i64>(0))?;
            Ok(())
        })
        .await
    }

    /// Size of the database files in bytes (main file plus WAL).
    /// Whether writes fail for lack of space on the file system: the last
    /// write that ended did (`/healthz` says degraded, peers are not
    /// pulled from). Cleared by the next write that is stored.
    pub fn storage_full(&self) -> bool {
        self.inner
            .storage_full
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Sets [`Store::storage_full`]; returns what it was.
    pub(super) fn set_storage_full(&self, full: bool) -> bool {
        let was = self
            .inner
            .storage_full
            .swap(full, std::sync::atomic::Ordering::Relaxed);
        if was && !full {
            tracing::warn!("writes succeed again: the disk holding the database has room");
        }
        was
    }

    /// The free and total bytes of the file system that holds the database
    /// (free: what an unprivileged process may use), if it can be read.
    pub fn disk_space(&self) -> Option<DiskSpace> {
        let dir = self.inner.path.parent()?;
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        let st = rustix::fs::statvfs(dir).ok()?;
        Some(DiskSpace {
            free_bytes: st.f_bavail.saturating_mul(st.f_frsize),
            total_bytes: st.f_blocks.saturating_mul(st.f_frsize),
        })
    }

    pub fn disk_bytes(&self) -> u64 {
        let wal = PathBuf::from(format!("{}-wal", self.inner.path.display()));
        [self.inner.path.as_path(), wal.as_path()]
            .iter()
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum()
    }
}

/// Space on the file system that holds the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct DiskSpace {
    pub free_bytes: u64,
    pub total_bytes: u64,
}

impl Drop for Inner {
    fn drop(&mut self) {
        drop(lock(&self.writer).take());
        if let Some(handle) = lock(&self.writer_thread).take() {
            let _ = handle.join();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding these locks leaves no half-made state behind.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn raw(json: String) -> Result<Box<RawValue>> {
    RawValue::from_string(json).map_err(|e| Error::Storage(format!("stored record view: {e}")))
}

fn not_found(collection: Collection, id: &str) -> Error {
    Error::RecordNotFound {
        collection: collection.name().to_owned(),
        id: id.chars().take(60).collect(),
    }
}

/// Whether opening this database must write first: tables or a feed epoch
/// added since it was made, or a search index declared otherwise. Reads the
/// schema only; an unreadable schema counts as an upgrade, so it is checked
/// before anything else.
fn needs_upgrade(conn: &Connection) -> Result<bool> {
    let found = conn
        .query_row(
            "SELECT (SELECT count(*) FROM sqlite_schema WHERE type = 'table'
                     AND name IN ('peer_epochs', 'peer_staged', 'egress', 'quota_usage', 'change_signatures', 'signer_certificates', 'ca_certificates', 'late_signatures', 'attachment_refs')),
                    (SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = 'search'),
                    (SELECT count(*) FROM meta WHERE key = 'feed_epoch')",
            [],
            |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Option<String>>(1)?, r.get::<_, i64>(2)?)),
        );
    Ok(match found {
        Ok((tables, search, epochs)) => {
            tables < 9 || search.as_deref() != Some(SEARCH_TABLE) || epochs == 0
        }
        Err(_) => true,
    })
}
