//! The record store: every record's Automerge document in SQLite.
//!
//! **Architecture invariant:** only this module and `accounts` (which keeps
//! to its own tables) name rusqlite.
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

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;

use automerge::{ActorId, AutoCommit};
use rand::RngCore;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use serde_json::value::RawValue;
use tokio::sync::{Semaphore, oneshot, watch};
use yui_protocol::doc::{self, HistoryEntry};
use yui_protocol::schema::FieldKind;
use yui_protocol::session;
use yui_protocol::sync::{self, Batch, FeedItem, Hash, Limits, SharedCollection, Stored};
use yui_protocol::validate::{self, Fields, Patch};
use yui_protocol::wire::{DocUpdate, Need, SyncRequest, SyncResponse};
use yui_protocol::{Collection, Millis, RecordId, RecordView, guard, search};

use crate::error::{Error, Result};

/// `PRAGMA application_id` of a Yui database ("YUI1").
const APPLICATION_ID: i32 = 0x5955_4931;
/// `PRAGMA user_version`: the schema below.
const SCHEMA_VERSION: i32 = 1;
/// Incremental chunks a document may gather before it is saved whole again.
pub const COMPACT_AFTER: i64 = 16;
const READERS: usize = 4;
/// Most writes committed in one transaction.
const MAX_GROUP: usize = 256;

const SCHEMA: &str = "
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT;
CREATE TABLE records (
    rowid INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    collection TEXT NOT NULL,
    shared INTEGER NOT NULL,
    town TEXT NOT NULL,
    deleted INTEGER NOT NULL,
    seq INTEGER NOT NULL UNIQUE,
    heads BLOB NOT NULL,
    doc BLOB NOT NULL,
    chunks INTEGER NOT NULL DEFAULT 0,
    view TEXT NOT NULL
) STRICT;
CREATE INDEX records_by_collection ON records (collection, deleted, id);
CREATE INDEX records_shared_feed ON records (shared, seq);
CREATE TABLE doc_chunks (
    record INTEGER NOT NULL REFERENCES records (rowid),
    n INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (record, n)
) STRICT, WITHOUT ROWID;
CREATE TABLE peers (
    url TEXT PRIMARY KEY,
    node_id TEXT,
    town TEXT,
    push_cursor INTEGER NOT NULL DEFAULT 0,
    pull_cursor INTEGER NOT NULL DEFAULT 0,
    added_at INTEGER NOT NULL,
    last_attempt_at INTEGER,
    last_success_at INTEGER,
    last_error TEXT,
    failures INTEGER NOT NULL DEFAULT 0,
    rounds INTEGER NOT NULL DEFAULT 0,
    bytes_in INTEGER NOT NULL DEFAULT 0,
    bytes_out INTEGER NOT NULL DEFAULT 0,
    docs_in INTEGER NOT NULL DEFAULT 0,
    docs_out INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE TABLE peer_epochs (peer TEXT PRIMARY KEY, epoch INTEGER NOT NULL) STRICT;
CREATE TABLE peer_staged (
    peer TEXT NOT NULL,
    cursor INTEGER NOT NULL,
    record_id TEXT NOT NULL,
    heads BLOB NOT NULL
) STRICT;
CREATE INDEX peer_staged_by_peer ON peer_staged (peer, cursor);
CREATE TABLE peer_heads (
    peer TEXT NOT NULL,
    record_id TEXT NOT NULL,
    heads BLOB NOT NULL,
    PRIMARY KEY (peer, record_id)
) STRICT, WITHOUT ROWID;
";

/// Milliseconds since the epoch, now. The node's one clock.
pub fn now_ms() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as Millis)
}

type Done = Box<dyn FnOnce(Result<(), String>) + Send>;
type Job = Box<dyn FnOnce(&Connection, &mut WriterState) -> (bool, Done) + Send>;

/// What the writer thread keeps between transactions.
struct WriterState {
    next_seq: i64,
    town: String,
    actor: ActorId,
}

/// A peer this node dials, as `status` and the API show it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PeerInfo {
    pub url: String,
    pub node_id: Option<String>,
    pub town: Option<String>,
    pub push_cursor: u64,
    pub pull_cursor: u64,
    pub added_at: Millis,
    pub last_attempt_at: Option<Millis>,
    pub last_success_at: Option<Millis>,
    pub last_error: Option<String>,
    pub failures: i64,
    pub rounds: i64,
    pub bytes_in: i64,
    pub bytes_out: i64,
    pub docs_in: i64,
    pub docs_out: i64,
    /// Shared records this peer is not yet known to have.
    pub pending: u64,
}

/// A peer's answer whose documents are planned ([`Store::sync_plan`]) and
/// not yet stored ([`Store::sync_commit`]).
pub struct PlannedAnswer {
    /// The answer, without its documents (they are in the plans).
    response: SyncResponse,
    plans: Vec<sync::Plan>,
    rendered: HashMap<RecordId, Rendered>,
}

impl PlannedAnswer {
    /// The point of the peer's feed the answer brings us to.
    pub fn cursor(&self) -> u64 {
        self.response.cursor
    }
}

/// The outcome of one exchange, for [`Store::peer_round`].
#[derive(Debug, Clone, Default)]
pub struct PeerRound {
    pub at: Millis,
    pub error: Option<String>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub docs_in: u64,
    pub docs_out: u64,
    pub push_cursor: Option<u64>,
    pub pull_cursor: Option<u64>,
}

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
    /// The towns of the shared records, and up to which feed position.
    towns: Mutex<(i64, BTreeSet<String>)>,
}

/// Shared records with conflicts, as of a feed position: the dashboard
/// then only loads what changed since, and what had conflicts before.
#[derive(Default)]
struct ConflictScan {
    seen_seq: i64,
    ids: std::collections::BTreeSet<(String, String)>,
}

/// One document sent to a peer (`yui audit egress`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct EgressEntry {
    /// When it was handed to the connection (RFC 3339, UTC).
    pub at: String,
    /// The peer's node id.
    pub peer: String,
    /// The peer's town, from its certificate (empty if not known yet).
    pub peer_town: String,
    /// `pulled` (the peer asked) or `pushed` (this node sent it).
    pub way: String,
    pub record_id: String,
    pub collection: String,
    /// The document's heads after the changes sent (hex change hashes):
    /// what was sent is every change up to them that the peer lacked.
    pub heads: Vec<String>,
    /// The size of the changes sent.
    pub bytes: u64,
}

#[derive(Clone, Copy)]
enum EgressWay {
    Pulled,
    Pushed,
}

/// Writes the ledger rows for documents about to leave. Refuses, as a last
/// line, anything that is not of a shared collection: the sync layer cannot
/// express one, and this keeps it so for every future code path.
fn record_egress(
    conn: &Connection,
    peer: &str,
    peer_town: &str,
    way: EgressWay,
    docs: &[DocUpdate],
) -> Result<()> {
    let at = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .map_err(|e| Error::Storage(e.to_string()))?;
    let way = match way {
        EgressWay::Pulled => "pulled",
        EgressWay::Pushed => "pushed",
    };
    let mut insert = conn.prepare_cached(
        "INSERT INTO egress (at, peer, peer_town, way, record_id, collection, heads, bytes)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?;
    for d in docs {
        let shared = d
            .collection
            .parse::<Collection>()
            .is_ok_and(|c| c.is_shared());
        if !shared {
            return Err(Error::Storage(format!(
                "refused to send {} of collection {:?} to a peer: not a shared collection",
                d.id, d.collection
            )));
        }
        let heads: Vec<String> = d.heads.iter().map(|h| hex(h)).collect();
        insert.execute(params![
            at,
            peer,
            peer_town,
            way,
            d.id,
            d.collection,
            heads.join(","),
            d.changes.len() as i64
        ])?;
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The guard's registry and the feed position it has read up to.
type CachedRegistry = (i64, Arc<guard::Registry>);

/// What the personal-data guard lets through when a shared record is
/// written here: nothing, or (an administrator's override, with a reason
/// the caller records) every finding but My Number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GuardMode {
    #[default]
    Refuse,
    AcceptOverridable,
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase) => {
                Error::CorruptDatabase {
                    path: "yui.sqlite".into(),
                    detail: e.to_string(),
                }
            }
            _ => Error::Storage(e.to_string()),
        }
    }
}

fn corrupt(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::CorruptDatabase {
        path: path.display().to_string(),
        detail: e.to_string(),
    }
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "foreign_keys", true)?;
    Ok(())
}

fn get_meta(conn: &Connection, key: &str) -> rusqlite::Result<Option<String>> {
    conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
        .optional()
}

fn set_meta(conn: &Connection, key: &str, value: &str) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        [key, value],
    )?;
    Ok(())
}

fn new_epoch() -> u64 {
    // Never 0: 0 is what a peer that does not send an epoch sends.
    rand::rng().next_u64().max(1)
}

fn new_actor_hex() -> String {
    let mut actor = [0u8; 16];
    rand::rng().fill_bytes(&mut actor);
    actor.iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Checks that `conn` is a Yui database and returns its (town, actor).
fn identify(conn: &Connection, path: &Path) -> Result<(String, ActorId)> {
    let app_id: i32 = conn
        .pragma_query_value(None, "application_id", |r| r.get(0))
        .map_err(|e| corrupt(path, e))?;
    if app_id != APPLICATION_ID {
        return Err(corrupt(path, "it is an SQLite database, but not Yui's"));
    }
    let version: i32 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(|e| corrupt(path, e))?;
    if version != SCHEMA_VERSION {
        return Err(Error::Config(format!(
            "{} has schema version {version}; this yui reads version {SCHEMA_VERSION}",
            path.display()
        )));
    }
    let town = get_meta(conn, "town")
        .map_err(|e| corrupt(path, e))?
        .ok_or_else(|| corrupt(path, "no town in meta"))?;
    let actor = get_meta(conn, "actor")
        .map_err(|e| corrupt(path, e))?
        .and_then(|h| parse_hex(&h))
        .filter(|b| b.len() == 16)
        .ok_or_else(|| corrupt(path, "no actor id in meta"))?;
    Ok((town, ActorId::from(actor.as_slice())))
}

impl Store {
    /// Creates a new, empty database. Fails if the file exists.
    pub fn create_database(path: &Path, town: &str) -> Result<()> {
        if path.exists() {
            return Err(Error::Config(format!("{} already exists", path.display())));
        }
        // Owner-only from the start: the database holds personal data, and
        // SQLite gives its -wal and -shm files the same mode.
        crate::datadir::write_private(path, b"")?;
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.execute_batch(SCHEMA)?;
        conn.execute(SEARCH_TABLE, [])?;
        set_meta(&conn, "town", town)?;
        set_meta(&conn, "actor", &new_actor_hex())?;
        set_meta(&conn, "feed_epoch", &new_epoch().to_string())?;
        // Written last, so a half-made file is not taken for a Yui database.
        conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        conn.pragma_update(None, "application_id", APPLICATION_ID)?;
        Ok(())
    }

    /// Opens an existing database and starts the writer thread. Reads no
    /// document: start-up costs the same at 10 or 100,000 records.
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
        rebuild_search_if_redeclared(&conn)?;
        let next_seq: i64 = conn
            .query_row("SELECT coalesce(max(seq), 0) + 1 FROM records", [], |r| {
                r.get(0)
            })
            .map_err(|e| corrupt(path, e))?;
        let epoch = match get_meta(&conn, "feed_epoch").map_err(|e| corrupt(path, e))? {
            Some(e) => e
                .parse()
                .map_err(|_| corrupt(path, "unreadable feed epoch"))?,
            None => {
                let e = new_epoch();
                set_meta(&conn, "feed_epoch", &e.to_string())?;
                e
            }
        };
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS peer_epochs (peer TEXT PRIMARY KEY, epoch INTEGER NOT NULL) STRICT;
             CREATE TABLE IF NOT EXISTS peer_staged (
                 peer TEXT NOT NULL, cursor INTEGER NOT NULL, record_id TEXT NOT NULL, heads BLOB NOT NULL
             ) STRICT;
             CREATE INDEX IF NOT EXISTS peer_staged_by_peer ON peer_staged (peer, cursor);
             CREATE TABLE IF NOT EXISTS egress (
                 at TEXT NOT NULL, peer TEXT NOT NULL, peer_town TEXT NOT NULL, way TEXT NOT NULL,
                 record_id TEXT NOT NULL, collection TEXT NOT NULL, heads TEXT NOT NULL, bytes INTEGER NOT NULL
             ) STRICT;
             CREATE INDEX IF NOT EXISTS egress_by_time ON egress (at);",
        )?;

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
        let writer_thread = thread::Builder::new()
            .name("yui-store-writer".into())
            .spawn(move || run_writer(conn, state, rx, notify))
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
                towns: Mutex::new((0, BTreeSet::new())),
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

    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection, &mut WriterState) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move |conn, state| {
            let result = f(conn, state);
            let ok = result.is_ok();
            let done: Done = Box::new(move |commit| {
                let _ = reply.send(match commit {
                    Ok(()) => result,
                    Err(e) => Err(Error::Storage(e)),
                });
            });
            (ok, done)
        });
        lock(&self.inner.writer)
            .as_ref()
            .ok_or(Error::ShuttingDown)?
            .send(job)
            .map_err(|_| Error::ShuttingDown)?;
        answer
            .await
            .map_err(|_| Error::Storage("the write was not run; see the log".into()))?
    }

    async fn read<T: Send + 'static>(
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

    /// The names and kana readings of this town's registered workers and
    /// customer contacts, for the personal-data guard. Kept up to date by
    /// reading only the workers and customers changed since the last call;
    /// names of deleted or renamed people stay until the node restarts
    /// (they were a person's names all the same).
    pub async fn registry(&self) -> Result<Arc<guard::Registry>> {
        let inner = self.inner.clone();
        self.read(move |conn| {
            let mut cached = lock(&inner.registry);
            let (seen, registry) = cached.get_or_insert_with(|| (0, Arc::new(guard::Registry::new())));
            let mut stmt = conn.prepare_cached(
                "SELECT seq, json_extract(view, '$.fields.name'), json_extract(view, '$.fields.name_kana'),
                        json_extract(view, '$.fields.contact_name')
                 FROM records WHERE shared = 0 AND seq > ?1 AND collection IN ('workers', 'customers')",
            )?;
            let rows = stmt.query_map([*seen], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    [
                        r.get::<_, Option<String>>(1)?,
                        r.get::<_, Option<String>>(2)?,
                        r.get::<_, Option<String>>(3)?,
                    ],
                ))
            })?;
            for row in rows {
                let (seq, names) = row?;
                *seen = (*seen).max(seq);
                // Copies only if a scan still holds the previous version.
                let names_of = Arc::make_mut(registry);
                for name in names.into_iter().flatten() {
                    names_of.add(&name);
                }
            }
            Ok(registry.clone())
        })
        .await
    }

    /// Appends an entry to the accounts' audit log (`accounts::audit`)
    /// through the writer: (user, action, target, detail) at `at_ms`.
    pub async fn append_audit(
        &self,
        at_ms: i64,
        entry: (String, String, String, String),
    ) -> Result<()> {
        self.write(move |conn, _| {
            let (user, action, target, detail) = entry;
            crate::accounts::insert_audit(conn, at_ms, &user, &action, &target, &detail)
        })
        .await
    }

    /// The personal-data guard on a write to a shared collection: refuses
    /// (422 `personal_data`) what `mode` does not let through; returns the
    /// findings it let through, for the caller's audit log.
    pub async fn check_personal_data(
        &self,
        collection: Collection,
        fields: &Fields,
        mode: GuardMode,
    ) -> Result<Vec<guard::Finding>> {
        if !collection.is_shared() {
            return Ok(Vec::new());
        }
        let registry = self.registry().await?;
        let findings = guard::scan_fields(fields, &registry);
        let refused = match mode {
            GuardMode::Refuse => !findings.is_empty(),
            GuardMode::AcceptOverridable => findings.iter().any(|f| !f.kind.may_override()),
        };
        if refused {
            return Err(Error::PersonalData(findings));
        }
        Ok(findings)
    }

    /// Creates a record and returns it as the API shows it. A shared record
    /// with personal data in it is refused.
    pub async fn create(
        &self,
        collection: Collection,
        fields: Fields,
        now: Millis,
    ) -> Result<Box<RawValue>> {
        self.create_guarded(collection, fields, now, GuardMode::Refuse)
            .await
            .map(|(record, _)| record)
    }

    /// [`Store::create`] with a choice of guard mode; also returns the
    /// personal-data findings that were let through.
    pub async fn create_guarded(
        &self,
        collection: Collection,
        fields: Fields,
        now: Millis,
        mode: GuardMode,
    ) -> Result<(Box<RawValue>, Vec<guard::Finding>)> {
        let findings = self.check_personal_data(collection, &fields, mode).await?;
        let record = self.create_unguarded(collection, fields, now).await?;
        Ok((record, findings))
    }

    async fn create_unguarded(
        &self,
        collection: Collection,
        fields: Fields,
        now: Millis,
    ) -> Result<Box<RawValue>> {
        let mut random = [0u8; 10];
        rand::rng().fill_bytes(&mut random);
        let id = {
            let mut last = lock(&self.inner.last_id);
            let id = RecordId::generate_after(now, random, last.as_ref());
            *last = Some(id.clone());
            id
        };
        let (actor, town) = (self.inner.actor.clone(), self.inner.town.clone());
        // The Automerge work runs in parallel on the blocking pool; only the
        // inserts queue for the writer.
        let prepared = tokio::task::spawn_blocking(move || -> Result<_> {
            let mut d = doc::create(actor, collection, &id, &town, now, &fields)?;
            let view = doc::read(&d)?;
            let terms = index_terms(&view);
            let bytes = d.save_nocompress();
            let heads = pack_heads(&d.get_heads());
            let refs = validate::references(collection, fields.iter());
            Ok((id, bytes, heads, view, terms, refs))
        })
        .await
        .map_err(|e| Error::Storage(format!("create task failed: {e}")))??;
        let (id, bytes, heads, view, terms, refs) = prepared;
        let json = serde_json::to_string(&view).map_err(|e| Error::Storage(e.to_string()))?;
        self.write(move |conn, state| {
            check_references(conn, &refs)?;
            if collection == Collection::KpiReports {
                check_one_kpi_report_per_year(conn, &state.town, &view, None)?;
            }
            let seq = state.next_seq;
            conn.execute(
                "INSERT INTO records (id, collection, shared, town, deleted, seq, heads, doc, chunks, view)
                 VALUES (?1, ?2, ?3, ?4, 0, ?5, ?6, ?7, 0, ?8)",
                params![
                    id.as_str(),
                    collection.name(),
                    collection.is_shared(),
                    view.town,
                    seq,
                    heads,
                    bytes,
                    json
                ],
            )?;
            conn.execute(
                "INSERT INTO search (rowid, terms) VALUES (last_insert_rowid(), ?1)",
                [&terms],
            )?;
            state.next_seq += 1;
            raw(json)
        })
        .await
    }

    /// A record by id; a deleted one only when `include_deleted`.
    pub async fn get(
        &self,
        collection: Collection,
        id: String,
        include_deleted: bool,
    ) -> Result<Box<RawValue>> {
        self.read(move |conn| {
            let row: Option<(bool, String)> = conn
                .query_row(
                    "SELECT deleted, view FROM records WHERE id = ?1 AND collection = ?2",
                    params![id, collection.name()],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            match row {
                Some((deleted, view)) if !deleted || include_deleted => raw(view),
                _ => Err(not_found(collection, &id)),
            }
        })
        .await
    }

    /// A page of a collection, newest first.
    pub async fn list(&self, collection: Collection, q: ListQuery) -> Result<Page> {
        self.read(move |conn| {
            let mut sql = String::from("SELECT id, view FROM records WHERE collection = ?");
            let mut args: Vec<rusqlite::types::Value> = vec![collection.name().to_owned().into()];
            if !q.include_deleted {
                sql.push_str(" AND deleted = 0");
            }
            if let Some(cursor) = &q.cursor {
                sql.push_str(" AND id < ?");
                args.push(cursor.clone().into());
            }
            for (field, value) in &q.filters {
                // Field names come from the schema, never from the request.
                sql.push_str(&format!(" AND json_extract(view, '$.fields.{field}') = ?"));
                args.push(match value {
                    serde_json::Value::Number(n) if n.is_i64() => n.as_i64().unwrap_or(0).into(),
                    serde_json::Value::Number(n) => n.as_f64().unwrap_or(0.0).into(),
                    serde_json::Value::String(s) => s.clone().into(),
                    other => other.to_string().into(),
                });
            }
            sql.push_str(" ORDER BY id DESC LIMIT ?");
            args.push((q.limit as i64 + 1).into());
            let mut stmt = conn.prepare_cached(&sql)?;
            let mut rows: Vec<(String, String)> = stmt
                .query_map(rusqlite::params_from_iter(args), |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?
                .collect::<rusqlite::Result<_>>()?;
            let next_cursor = if rows.len() > q.limit {
                rows.truncate(q.limit);
                rows.last().map(|(id, _)| id.clone())
            } else {
                None
            };
            let items = rows
                .into_iter()
                .map(|(_, v)| raw(v))
                .collect::<Result<_>>()?;
            Ok(Page { items, next_cursor })
        })
        .await
    }

    /// Applies a partial update and returns the record after it. New values
    /// with personal data in a shared record are refused.
    pub async fn update(
        &self,
        collection: Collection,
        id: String,
        patch: Patch,
        now: Millis,
    ) -> Result<Box<RawValue>> {
        self.update_guarded(collection, id, patch, now, GuardMode::Refuse)
            .await
            .map(|(record, _)| record)
    }

    /// [`Store::update`] with a choice of guard mode; also returns the
    /// personal-data findings that were let through.
    pub async fn update_guarded(
        &self,
        collection: Collection,
        id: String,
        patch: Patch,
        now: Millis,
        mode: GuardMode,
    ) -> Result<(Box<RawValue>, Vec<guard::Finding>)> {
        let new_values: Fields = patch
            .iter()
            .filter_map(|(k, v)| Some((*k, v.clone()?)))
            .collect();
        let findings = self
            .check_personal_data(collection, &new_values, mode)
            .await?;
        let record = self.update_unguarded(collection, id, patch, now).await?;
        Ok((record, findings))
    }

    async fn update_unguarded(
        &self,
        collection: Collection,
        id: String,
        patch: Patch,
        now: Millis,
    ) -> Result<Box<RawValue>> {
        let refs = validate::references(
            collection,
            patch.iter().filter_map(|(k, v)| Some((k, v.as_ref()?))),
        );
        self.write(move |conn, state| {
            check_references(conn, &refs)?;
            let mut loaded = load_doc(conn, collection, &id)?;
            loaded.doc.set_actor(state.actor.clone());
            if loaded.deleted {
                return Err(Error::RecordDeleted {
                    collection: collection.name().to_owned(),
                    id,
                });
            }
            let before = loaded.doc.get_heads();
            let changed = doc::update(&mut loaded.doc, collection, &state.town, now, &patch)?;
            if changed.is_empty() {
                return raw(loaded.view_json);
            }
            let view = doc::read(&loaded.doc)?;
            validate::check_merged(collection, &view.fields)?;
            if collection == Collection::KpiReports && patch.contains_key("fiscal_year") {
                check_one_kpi_report_per_year(conn, &view.town, &view, Some(&id))?;
            }
            store_change(conn, state, &mut loaded, &before, &view)
        })
        .await
    }

    /// Marks a record deleted. Deleting a deleted record changes nothing.
    pub async fn delete(&self, collection: Collection, id: String, now: Millis) -> Result<()> {
        self.write(move |conn, state| {
            let mut loaded = load_doc(conn, collection, &id)?;
            loaded.doc.set_actor(state.actor.clone());
            if loaded.deleted {
                return Err(not_found(collection, &id));
            }
            let before = loaded.doc.get_heads();
            doc::delete(&mut loaded.doc, &state.town, now)?;
            let view = doc::read(&loaded.doc)?;
            store_change(conn, state, &mut loaded, &before, &view)?;
            Ok(())
        })
        .await
    }

    /// Full-text search, best match first.
    pub async fn search(
        &self,
        query: String,
        collection: Option<Collection>,
        limit: usize,
    ) -> Result<Vec<Box<RawValue>>> {
        let Some(expr) = search::match_expression(&query) else {
            return Ok(Vec::new());
        };
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT r.view FROM search s JOIN records r ON r.rowid = s.rowid
                 WHERE search MATCH ?1 AND r.deleted = 0 AND (?2 IS NULL OR r.collection = ?2)
                 ORDER BY s.rank LIMIT ?3",
            )?;
            let rows = stmt
                .query_map(
                    params![expr, collection.map(Collection::name), limit as i64],
                    |r| r.get::<_, String>(0),
                )?
                .map(|v| raw(v?))
                .collect::<Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }

    /// The change history of a record, oldest first.
    pub async fn history(&self, collection: Collection, id: String) -> Result<Vec<HistoryEntry>> {
        self.read(move |conn| {
            let mut loaded = load_doc(conn, collection, &id)?;
            Ok(doc::history(&mut loaded.doc))
        })
        .await
    }

    /// Fields of a record with concurrent competing values.
    pub async fn conflicts(
        &self,
        collection: Collection,
        id: String,
    ) -> Result<BTreeMap<String, Vec<serde_json::Value>>> {
        self.read(move |conn| {
            let loaded = load_doc(conn, collection, &id)?;
            Ok(doc::conflicts(&loaded.doc)?)
        })
        .await
    }

    /// Shared records with conflicting values: the `scan` most recently
    /// changed ones the first time, then those changed since the last call
    /// (at most `scan`) and those that had conflicts, so a dashboard that
    /// is reloaded loads next to nothing.
    pub async fn recent_conflicts(&self, scan: usize) -> Result<Vec<(RecordView, Vec<String>)>> {
        let inner = self.inner.clone();
        self.read(move |conn| {
            let (seen, known) = {
                let c = lock(&inner.conflicts);
                (c.seen_seq, c.ids.clone())
            };
            let max_seq: i64 =
                conn.query_row("SELECT coalesce(max(seq), 0) FROM records", [], |r| {
                    r.get(0)
                })?;
            let mut stmt = conn.prepare_cached(
                "SELECT id, collection FROM records WHERE shared = 1 AND deleted = 0 AND seq > ?2
                 ORDER BY seq DESC LIMIT ?1",
            )?;
            let mut candidates: std::collections::BTreeSet<(String, String)> = stmt
                .query_map(params![scan as i64, seen], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<_>>()?;
            candidates.extend(known);
            let mut out = Vec::new();
            let mut found = std::collections::BTreeSet::new();
            for (id, name) in candidates {
                let Ok(collection) = name.parse::<Collection>() else {
                    continue;
                };
                let loaded = match load_doc(conn, collection, &id) {
                    Ok(l) if !l.deleted => l,
                    Ok(_) | Err(Error::RecordNotFound { .. }) => continue,
                    Err(e) => return Err(e),
                };
                let fields: Vec<String> = doc::conflicts(&loaded.doc)?.into_keys().collect();
                if !fields.is_empty() {
                    let view: RecordView = serde_json::from_str(&loaded.view_json)
                        .map_err(|e| Error::Storage(format!("record view of {id}: {e}")))?;
                    out.push((view, fields));
                    found.insert((id, name));
                }
            }
            *lock(&inner.conflicts) = ConflictScan {
                seen_seq: max_seq,
                ids: found,
            };
            out.sort_by(|a, b| b.0.updated_at.cmp(&a.0.updated_at));
            Ok(out)
        })
        .await
    }

    /// Fails if the database does not answer a trivial query.
    pub async fn check_readable(&self) -> Result<()> {
        self.read(|conn| {
            conn.query_row("SELECT count(*) FROM meta", [], |r| r.get::<_, i64>(0))?;
            Ok(())
        })
        .await
    }

    /// Live records per collection (every collection listed, zeros included).
    pub async fn counts(&self) -> Result<BTreeMap<Collection, u64>> {
        self.read(|conn| {
            let mut out: BTreeMap<Collection, u64> =
                Collection::ALL.into_iter().map(|c| (c, 0)).collect();
            let mut stmt = conn.prepare_cached(
                "SELECT collection, count(*) FROM records WHERE deleted = 0 GROUP BY collection",
            )?;
            let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
            for row in rows {
                let (name, n) = row?;
                if let Ok(c) = name.parse::<Collection>() {
                    out.insert(c, n as u64);
                }
            }
            Ok(out)
        })
        .await
    }

    /// Shared records written after `after`, oldest first: the change feed
    /// as sync reads it. Only shared collections can come out of it.
    pub async fn shared_feed(&self, after: u64, limit: usize) -> Result<Vec<FeedItem>> {
        self.read(move |conn| read_shared_feed(conn, after, limit))
            .await
    }

    /// Server side, a read: what `peer` lacks among the shared records
    /// after `after`.
    pub async fn sync_prepare(&self, peer: String, after: u64, limits: Limits) -> Result<Batch> {
        self.read(move |conn| {
            let mut replica = SqlReplica {
                conn,
                state: None,
                rendered: HashMap::new(),
            };
            session::server_prepare(&mut replica, &peer, after, limits)
        })
        .await
    }

    /// Server side, a write: apply a client's needs and pushed documents.
    pub async fn sync_accept(
        &self,
        peer: String,
        mut request: SyncRequest,
    ) -> Result<sync::Outcome> {
        let (plans, rendered) = self.plan(std::mem::take(&mut request.push)).await?;
        self.write(move |conn, state| {
            let mut replica = SqlReplica {
                conn,
                state: Some(state),
                rendered,
            };
            session::server_accept_planned(&mut replica, &peer, &request, plans)
        })
        .await
    }

    /// Plans incoming updates on the read pool — loading, merging on copies,
    /// validating and rendering, which is most of the work — in two halves at
    /// once, so the writer only writes.
    async fn plan(
        &self,
        mut docs: Vec<DocUpdate>,
    ) -> Result<(Vec<sync::Plan>, HashMap<RecordId, Rendered>)> {
        let plan_half = |docs: Vec<DocUpdate>| {
            self.read(move |conn| {
                let mut replica = SqlReplica {
                    conn,
                    state: None,
                    rendered: HashMap::new(),
                };
                let mut plans = sync::plan_updates(&mut replica, docs)?;
                let mut rendered = HashMap::new();
                for plan in &mut plans {
                    if let sync::Plan::Store(m) = plan {
                        rendered.insert(
                            m.id.clone(),
                            Rendered {
                                heads: pack_heads(&m.doc.get_heads()),
                                // A new record's bytes as received (they
                                // loaded); a merge is saved (and was
                                // reloaded by the plan).
                                bytes: m
                                    .verbatim
                                    .clone()
                                    .unwrap_or_else(|| m.doc.save_nocompress()),
                                json: serde_json::to_string(&m.view)
                                    .map_err(|e| Error::Storage(e.to_string()))?,
                                terms: index_terms(&m.view),
                            },
                        );
                    }
                }
                Ok((plans, rendered))
            })
        };
        if docs.len() < 16 {
            return plan_half(docs).await;
        }
        let second = docs.split_off(docs.len() / 2);
        let (a, b) = tokio::join!(plan_half(docs), plan_half(second));
        let (mut plans, mut rendered) = a?;
        let (more_plans, more_rendered) = b?;
        plans.extend(more_plans);
        rendered.extend(more_rendered);
        Ok((plans, rendered))
    }

    /// Server side, a write: record what the answer delivers, in the peer's
    /// staged heads and in the egress ledger. Returns the batch.
    pub async fn sync_delivered(
        &self,
        peer: String,
        peer_town: String,
        batch: Batch,
    ) -> Result<Batch> {
        self.write(move |conn, state| {
            let mut replica = SqlReplica {
                conn,
                state: Some(state),
                rendered: HashMap::new(),
            };
            session::server_delivered(&mut replica, &peer, &batch)?;
            record_egress(conn, &peer, &peer_town, EgressWay::Pulled, &batch.docs)?;
            Ok(batch)
        })
        .await
    }

    /// Client side, a write before a push goes out: the egress ledger.
    pub async fn record_push(
        &self,
        peer: String,
        peer_town: String,
        docs: Vec<DocUpdate>,
    ) -> Result<()> {
        if docs.is_empty() {
            return Ok(());
        }
        self.write(move |conn, _| record_egress(conn, &peer, &peer_town, EgressWay::Pushed, &docs))
            .await
    }

    /// Whether `since` reads like the date or time [`Store::egress`] compares
    /// with (`2026-11-21`, `2026-11-21T09:00:00Z`): digits, letters and
    /// `-:.+` only. Callers reject or drop anything else.
    pub fn is_egress_since(since: &str) -> bool {
        !since.is_empty()
            && since
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-:.+".contains(c))
    }

    /// The egress ledger, newest first: every document this node sent to a
    /// peer, optionally only to one peer (node id or town) and since a time
    /// (RFC 3339, compared as text, so `2026-11-21` works too).
    pub async fn egress(
        &self,
        peer: Option<String>,
        since: Option<String>,
        limit: usize,
    ) -> Result<Vec<EgressEntry>> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                // A push's town comes from the peer list (the dialled
                // node's certificate), a pull's from the connection's.
                "SELECT at, peer, town, way, record_id, collection, heads, bytes FROM (
                     SELECT e.rowid AS n, e.*, coalesce(nullif(e.peer_town, ''),
                         (SELECT p.town FROM peers p WHERE p.node_id = e.peer LIMIT 1), '') AS town
                     FROM egress e)
                 WHERE (?1 IS NULL OR peer = ?1 OR town = ?1) AND (?2 IS NULL OR at >= ?2)
                 ORDER BY n DESC LIMIT ?3",
            )?;
            let rows = stmt
                .query_map(params![peer, since, limit as i64], |r| {
                    Ok(EgressEntry {
                        at: r.get(0)?,
                        peer: r.get(1)?,
                        peer_town: r.get(2)?,
                        way: r.get(3)?,
                        record_id: r.get(4)?,
                        collection: r.get(5)?,
                        heads: r
                            .get::<_, String>(6)?
                            .split(',')
                            .filter(|h| !h.is_empty())
                            .map(str::to_owned)
                            .collect(),
                        bytes: r.get::<_, i64>(7)? as u64,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }

    /// Client side, a read: the request of one exchange with `peer`.
    pub async fn sync_request(
        &self,
        peer: String,
        cursors: session::Cursors,
        push: bool,
        pull: bool,
        wait_ms: u32,
        needs: Vec<Need>,
    ) -> Result<session::ClientStep> {
        self.read(move |conn| {
            let mut replica = SqlReplica {
                conn,
                state: None,
                rendered: HashMap::new(),
            };
            session::client_request(
                &mut replica,
                &peer,
                cursors,
                push,
                pull,
                wait_ms,
                needs,
                Limits::default(),
            )
        })
        .await
    }

    /// Client side, one write: apply `peer`'s answer to `sent`.
    /// The peer's new cursors are saved in the same transaction as what its
    /// answer changed, so an interruption cannot leave one without the other.
    pub async fn sync_apply(
        &self,
        url: String,
        peer: String,
        sent: session::Outgoing,
        response: SyncResponse,
    ) -> Result<session::ClientOutcome> {
        let planned = self.sync_plan(response).await?;
        self.sync_commit(url, peer, sent, planned).await
    }

    /// The first half of [`Store::sync_apply`], reads only (on two threads):
    /// load, check and render the answer's documents. A pipelined pull plans
    /// one answer while the writer stores the one before.
    pub async fn sync_plan(&self, mut response: SyncResponse) -> Result<PlannedAnswer> {
        let (plans, rendered) = self.plan(std::mem::take(&mut response.docs)).await?;
        Ok(PlannedAnswer {
            response,
            plans,
            rendered,
        })
    }

    /// The second half of [`Store::sync_apply`]: one write. Documents that
    /// changed here since they were planned are planned again inside it.
    pub async fn sync_commit(
        &self,
        url: String,
        peer: String,
        sent: session::Outgoing,
        planned: PlannedAnswer,
    ) -> Result<session::ClientOutcome> {
        let PlannedAnswer {
            response,
            plans,
            rendered,
        } = planned;
        self.write(move |conn, state| {
            let mut replica = SqlReplica {
                conn,
                state: Some(state),
                rendered,
            };
            let outcome = session::client_apply_planned(&mut replica, &peer, &sent, response, plans)?;
            conn.execute(
                "UPDATE peers SET push_cursor = coalesce(?2, push_cursor), pull_cursor = coalesce(?3, pull_cursor)
                 WHERE url = ?1",
                params![
                    url,
                    outcome.push_cursor.map(|c| c as i64),
                    outcome.pull_cursor.map(|c| c as i64)
                ],
            )?;
            Ok(outcome)
        })
        .await
    }

    /// The peers this node dials, with their sync state.
    pub async fn peers(&self) -> Result<Vec<PeerInfo>> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT url, node_id, town, push_cursor, pull_cursor, added_at, last_attempt_at,
                        last_success_at, last_error, failures, rounds, bytes_in, bytes_out, docs_in, docs_out
                 FROM peers ORDER BY added_at, url",
            )?;
            let mut peers = stmt
                .query_map([], |r| {
                    Ok(PeerInfo {
                        url: r.get(0)?,
                        node_id: r.get(1)?,
                        town: r.get(2)?,
                        push_cursor: r.get::<_, i64>(3)? as u64,
                        pull_cursor: r.get::<_, i64>(4)? as u64,
                        added_at: r.get(5)?,
                        last_attempt_at: r.get(6)?,
                        last_success_at: r.get(7)?,
                        last_error: r.get(8)?,
                        failures: r.get(9)?,
                        rounds: r.get(10)?,
                        bytes_in: r.get(11)?,
                        bytes_out: r.get(12)?,
                        docs_in: r.get(13)?,
                        docs_out: r.get(14)?,
                        pending: 0,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            for p in &mut peers {
                // Shared records written since the last push that this peer
                // is not known to have.
                p.pending = conn.query_row(
                    "SELECT count(*) FROM records r
                     LEFT JOIN peer_heads h ON h.peer = ?1 AND h.record_id = r.id
                     WHERE r.shared = 1 AND r.seq > ?2 AND (h.heads IS NULL OR h.heads != r.heads)",
                    params![p.node_id.clone().unwrap_or_default(), p.push_cursor as i64],
                    |r| r.get::<_, i64>(0),
                )? as u64;
            }
            Ok(peers)
        })
        .await
    }

    /// Adds a peer to dial. Refuses a URL that is already a peer.
    pub async fn add_peer(&self, url: String, node_id: Option<String>, now: Millis) -> Result<()> {
        self.write(move |conn, _| {
            let inserted = conn.execute(
                "INSERT INTO peers (url, node_id, added_at) VALUES (?1, ?2, ?3) ON CONFLICT (url) DO NOTHING",
                params![url, node_id, now],
            )?;
            if inserted == 0 {
                return Err(Error::Conflict(format!("{url} is already a peer")));
            }
            Ok(())
        })
        .await
    }

    /// Removes a peer by URL or node id, with what this node remembered of
    /// it. Returns the URLs removed.
    pub async fn remove_peer(&self, key: String) -> Result<Vec<String>> {
        self.write(move |conn, _| {
            let mut stmt = conn
                .prepare_cached("SELECT url, node_id FROM peers WHERE url = ?1 OR node_id = ?1")?;
            let hits: Vec<(String, Option<String>)> = stmt
                .query_map([&key], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<_>>()?;
            for (url, node_id) in &hits {
                conn.execute("DELETE FROM peers WHERE url = ?1", [url])?;
                if let Some(node_id) = node_id {
                    conn.execute("DELETE FROM peer_heads WHERE peer = ?1", [node_id])?;
                }
            }
            Ok(hits.into_iter().map(|(url, _)| url).collect())
        })
        .await
    }

    /// Records who a peer turned out to be (from its certificate).
    pub async fn peer_identified(&self, url: String, node_id: String, town: String) -> Result<()> {
        self.write(move |conn, _| {
            conn.execute(
                "UPDATE peers SET node_id = ?2, town = ?3 WHERE url = ?1",
                params![url, node_id, town],
            )?;
            Ok(())
        })
        .await
    }

    /// Records the outcome of one exchange with a peer.
    pub async fn peer_round(&self, url: String, round: PeerRound) -> Result<()> {
        self.write(move |conn, _| {
            match &round.error {
                None => conn.execute(
                    "UPDATE peers SET last_attempt_at = ?2, last_success_at = ?2, last_error = NULL, failures = 0,
                        rounds = rounds + 1, bytes_in = bytes_in + ?3, bytes_out = bytes_out + ?4,
                        docs_in = docs_in + ?5, docs_out = docs_out + ?6,
                        push_cursor = coalesce(?7, push_cursor), pull_cursor = coalesce(?8, pull_cursor)
                     WHERE url = ?1",
                    params![
                        url,
                        round.at,
                        round.bytes_in as i64,
                        round.bytes_out as i64,
                        round.docs_in as i64,
                        round.docs_out as i64,
                        round.push_cursor.map(|c| c as i64),
                        round.pull_cursor.map(|c| c as i64)
                    ],
                )?,
                Some(error) => conn.execute(
                    "UPDATE peers SET last_attempt_at = ?2, last_error = ?3, failures = failures + 1,
                        bytes_out = bytes_out + ?4 WHERE url = ?1",
                    params![url, round.at, error, round.bytes_out as i64],
                )?,
            };
            Ok(())
        })
        .await
    }

    /// Every record's id, for export, in id order, `batch` at a time.
    pub async fn export_page(
        &self,
        after: Option<String>,
        batch: usize,
    ) -> Result<Vec<(Collection, RecordView)>> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT collection, view FROM records WHERE id > ?1 ORDER BY id LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![after.unwrap_or_default(), batch as i64], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (c, view) = row?;
                let c: Collection = c
                    .parse()
                    .map_err(|e: yui_protocol::UnknownCollection| Error::Storage(e.to_string()))?;
                let view: RecordView = serde_json::from_str(&view)
                    .map_err(|e| Error::Storage(format!("record view: {e}")))?;
                out.push((c, view));
            }
            Ok(out)
        })
        .await
    }

    // KPI (issue 6)
    /// Every live record of a collection, oldest first. For the KPI
    /// roll-up and draft, over collections that stay small (a town's
    /// workers and pilots, a report per town and year).
    pub async fn all_views(&self, collection: Collection) -> Result<Vec<RecordView>> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT view FROM records WHERE collection = ?1 AND deleted = 0 ORDER BY id",
            )?;
            let views = stmt
                .query_map([collection.name()], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            views
                .iter()
                .map(|v| serde_json::from_str(v).map_err(|e| Error::Storage(e.to_string())))
                .collect()
        })
        .await
    }

    /// The towns that made the shared records this node holds: the
    /// consortium members it knows of through sync.
    /// Kept up to date from the records changed since the last call (the
    /// dashboard asks on every view; a full scan took ~100 ms at 100,000).
    pub async fn shared_record_towns(&self) -> Result<BTreeSet<String>> {
        let inner = self.inner.clone();
        self.read(move |conn| {
            let mut known = lock(&inner.towns);
            let (seen, towns) = &mut *known;
            let mut stmt = conn.prepare_cached(
                "SELECT max(seq), town FROM records WHERE shared = 1 AND seq > ?1 GROUP BY town",
            )?;
            let rows = stmt.query_map([*seen], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
            })?;
            let mut newest = *seen;
            for row in rows {
                let (seq, town) = row?;
                newest = newest.max(seq);
                towns.insert(town);
            }
            *seen = newest;
            Ok(towns.clone())
        })
        .await
    }
    // End KPI (issue 6)

    /// Size of the database files in bytes (main file plus WAL).
    pub fn disk_bytes(&self) -> u64 {
        let wal = PathBuf::from(format!("{}-wal", self.inner.path.display()));
        [self.inner.path.as_path(), wal.as_path()]
            .iter()
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum()
    }
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

fn open_reader(path: &Path) -> Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(|e| corrupt(path, e))?;
    configure(&conn)?;
    Ok(conn)
}

fn run_writer(
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
                for d in done {
                    d(Err(format!("commit failed: {e}")));
                }
            }
        }
    }
    // The queue is closed and drained: leave the WAL folded into the database.
    let _ = conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)");
}

struct LoadedDoc {
    rowid: i64,
    deleted: bool,
    chunks: i64,
    doc: AutoCommit,
    view_json: String,
}

fn load_doc(conn: &Connection, collection: Collection, id: &str) -> Result<LoadedDoc> {
    let row: Option<(i64, bool, i64, Vec<u8>, String)> = conn
        .query_row(
            "SELECT rowid, deleted, chunks, doc, view FROM records WHERE id = ?1 AND collection = ?2",
            params![id, collection.name()],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .optional()?;
    let (rowid, deleted, chunks, bytes, view_json) =
        row.ok_or_else(|| not_found(collection, id))?;
    let mut doc =
        AutoCommit::load(&bytes).map_err(|e| Error::Storage(format!("loading {id}: {e}")))?;
    if chunks > 0 {
        let mut stmt =
            conn.prepare_cached("SELECT data FROM doc_chunks WHERE record = ?1 ORDER BY n")?;
        let rows = stmt.query_map([rowid], |r| r.get::<_, Vec<u8>>(0))?;
        for chunk in rows {
            doc.load_incremental(&chunk?)
                .map_err(|e| Error::Storage(format!("loading {id}: {e}")))?;
        }
    }
    Ok(LoadedDoc {
        rowid,
        deleted,
        chunks,
        doc,
        view_json,
    })
}

/// Persists a change to a loaded document: an appended chunk, or a fresh
/// compacted save once enough chunks have gathered. Returns the new view.
fn store_change(
    conn: &Connection,
    state: &mut WriterState,
    loaded: &mut LoadedDoc,
    before: &[automerge::ChangeHash],
    view: &RecordView,
) -> Result<Box<RawValue>> {
    let json = serde_json::to_string(view).map_err(|e| Error::Storage(e.to_string()))?;
    let seq = state.next_seq;
    let heads = pack_heads(&loaded.doc.get_heads());
    // Compact only into bytes that load again (a peer's crafted history may
    // save to bytes Automerge cannot read); otherwise keep appending chunks.
    let compacted = (loaded.chunks + 1 >= COMPACT_AFTER)
        .then(|| {
            std::panic::catch_unwind(AssertUnwindSafe(|| {
                let bytes = loaded.doc.save_nocompress();
                AutoCommit::load(&bytes).is_ok().then_some(bytes)
            }))
            .ok()
            .flatten()
        })
        .flatten();
    if loaded.chunks + 1 >= COMPACT_AFTER && compacted.is_none() {
        tracing::warn!(
            rowid = loaded.rowid,
            "a record's compacted save would not load again; kept as chunks"
        );
    }
    if let Some(bytes) = compacted {
        conn.execute("DELETE FROM doc_chunks WHERE record = ?1", [loaded.rowid])?;
        conn.execute(
            "UPDATE records SET doc = ?1, chunks = 0, seq = ?2, view = ?3, deleted = ?4, heads = ?5
             WHERE rowid = ?6",
            params![bytes, seq, json, view.deleted, heads, loaded.rowid],
        )?;
    } else {
        let chunk = raw_changes_after(&mut loaded.doc, before);
        conn.execute(
            "INSERT INTO doc_chunks (record, n, data) VALUES (?1, ?2, ?3)",
            params![loaded.rowid, loaded.chunks, chunk],
        )?;
        conn.execute(
            "UPDATE records SET chunks = chunks + 1, seq = ?1, view = ?2, deleted = ?3, heads = ?4
             WHERE rowid = ?5",
            params![seq, json, view.deleted, heads, loaded.rowid],
        )?;
    }
    conn.execute("DELETE FROM search WHERE rowid = ?1", [loaded.rowid])?;
    if !view.deleted {
        conn.execute(
            "INSERT INTO search (rowid, terms) VALUES (?1, ?2)",
            params![loaded.rowid, index_terms(view)],
        )?;
    }
    state.next_seq += 1;
    raw(json)
}

/// The search index. Its terms arrive folded (`protocol::search`), so FTS5's
/// `ascii` tokenizer only splits them at the spaces.
const SEARCH_TABLE: &str = "CREATE VIRTUAL TABLE search USING fts5 (terms, content = '', contentless_delete = 1, tokenize = 'ascii')";

/// Re-indexes a database whose search table was declared otherwise than
/// [`SEARCH_TABLE`] (before 2026-11-22: the `unicode61` tokenizer), in one
/// transaction: 0.8 s for 10,000 records on the benchmark machine, once.
/// An older `yui` still searches the re-indexed table (its own terms,
/// split at spaces).
fn rebuild_search_if_redeclared(conn: &Connection) -> Result<()> {
    let declared: String = conn.query_row(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'search'",
        [],
        |r| r.get(0),
    )?;
    if declared == SEARCH_TABLE {
        return Ok(());
    }
    let started = std::time::Instant::now();
    let tx = conn.unchecked_transaction()?;
    tx.execute_batch("DROP TABLE search")?;
    tx.execute(SEARCH_TABLE, [])?;
    let mut indexed = 0usize;
    {
        let mut rows = tx.prepare("SELECT rowid, view FROM records WHERE deleted = 0")?;
        let mut insert = tx.prepare("INSERT INTO search (rowid, terms) VALUES (?1, ?2)")?;
        let mut rows = rows.query([])?;
        while let Some(row) = rows.next()? {
            let rowid: i64 = row.get(0)?;
            let json: String = row.get(1)?;
            let view: RecordView = serde_json::from_str(&json)
                .map_err(|e| Error::Storage(format!("record {rowid}: unreadable view: {e}")))?;
            insert.execute(params![rowid, index_terms(&view)])?;
            indexed += 1;
        }
    }
    tx.commit()?;
    tracing::info!(
        records = indexed,
        took_ms = started.elapsed().as_millis() as u64,
        "re-indexed search for the ascii tokenizer (once)"
    );
    Ok(())
}

/// The search terms of a record: its words, titles, texts and tags.
fn index_terms(view: &RecordView) -> String {
    let mut terms = String::new();
    let Some(collection) = view.collection() else {
        return terms;
    };
    for def in collection.fields() {
        let Some(value) = view.fields.get(def.name) else {
            continue;
        };
        match def.kind {
            FieldKind::Str { .. }
            | FieldKind::Text { .. }
            | FieldKind::Email
            | FieldKind::Phone => {
                if let Some(s) = value.as_str() {
                    search::index_terms(s, &mut terms);
                }
            }
            FieldKind::Tags { .. } => {
                for tag in value
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|t| t.as_str())
                {
                    search::index_terms(tag, &mut terms);
                }
            }
            FieldKind::Objects { .. } => {
                for obj in value
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|o| o.as_object())
                {
                    for s in obj.values().filter_map(|v| v.as_str()) {
                        search::index_terms(s, &mut terms);
                    }
                }
            }
            _ => {}
        }
    }
    terms
}

fn check_references(conn: &Connection, refs: &[(&'static str, Collection, String)]) -> Result<()> {
    let mut errors = Vec::new();
    for (field, to, id) in refs {
        let found: Option<(String, bool)> = conn
            .query_row(
                "SELECT collection, deleted FROM records WHERE id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let problem = match found {
            None => Some(format!("no {to} record has id {id}")),
            Some((c, _)) if c != to.name() => {
                Some(format!("{id} is a {c} record, not a {to} record"))
            }
            Some((_, true)) => Some(format!("{to} record {id} is deleted")),
            Some(_) => None,
        };
        if let Some(message) = problem {
            errors.push(yui_protocol::FieldError {
                field: (*field).to_owned(),
                code: "invalid_reference",
                message,
            });
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Error::Validation(yui_protocol::ValidationErrors(errors)))
    }
}

fn check_one_kpi_report_per_year(
    conn: &Connection,
    town: &str,
    view: &RecordView,
    except: Option<&str>,
) -> Result<()> {
    let Some(year) = view.fields.get("fiscal_year").and_then(|v| v.as_i64()) else {
        return Ok(());
    };
    let existing: Option<String> = conn
        .query_row(
            "SELECT id FROM records WHERE collection = 'kpi_reports' AND town = ?1 AND deleted = 0
             AND json_extract(view, '$.fields.fiscal_year') = ?2 AND id != ?3",
            params![town, year, except.unwrap_or("")],
            |r| r.get(0),
        )
        .optional()?;
    match existing {
        Some(id) => Err(Error::Conflict(format!(
            "town {town} already has a KPI report for fiscal year {year} (record {id}); update that one instead"
        ))),
        None => Ok(()),
    }
}

/// Writes a consistent copy of the database to `dest` (which must not exist),
/// readable by its owner only. Safe while the node is serving: the copy is one
/// read transaction's snapshot.
pub fn backup(db: &Path, dest: &Path) -> Result<u64> {
    if dest.exists() {
        return Err(Error::Config(format!(
            "{} already exists; choose a new file name",
            dest.display()
        )));
    }
    let conn = open_reader(db)?;
    identify(&conn, db)?;
    // Created first with mode 0600: a backup holds personal data.
    crate::datadir::write_private(dest, b"")?;
    let target = dest
        .to_str()
        .ok_or_else(|| Error::Config("backup path is not UTF-8".into()))?;
    if let Err(e) = conn.execute("VACUUM INTO ?1", [target]) {
        let _ = std::fs::remove_file(dest);
        return Err(e.into());
    }
    Ok(std::fs::metadata(dest).map(|m| m.len()).unwrap_or(0))
}

/// Replaces the database at `db` with the backup at `src`. The node must be
/// stopped. The restored database gets a **new actor id**: the old one may
/// have written changes after the backup was taken, and reusing it would fork
/// documents for good. The database it replaces is kept beside it (returned).
pub fn restore(db: &Path, src: &Path, town: &str, now: Millis) -> Result<Option<PathBuf>> {
    let unusable = |e: Error| {
        let detail = match e {
            Error::CorruptDatabase { detail, .. } => detail,
            other => other.to_string(),
        };
        Error::Config(format!(
            "{} is not a usable Yui backup ({detail}); nothing was changed",
            src.display()
        ))
    };
    if !src.is_file() {
        return Err(Error::Config(format!(
            "backup file {} does not exist",
            src.display()
        )));
    }
    let check = Connection::open_with_flags(src, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| unusable(corrupt(src, e)))?;
    let (backup_town, _) = identify(&check, src).map_err(unusable)?;
    if backup_town != town {
        return Err(Error::Config(format!(
            "{} is a backup of town {backup_town:?}, but this node is {town:?}; nothing was changed",
            src.display()
        )));
    }
    let verdict: String = check
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .map_err(|e| unusable(corrupt(src, e)))?;
    if verdict != "ok" {
        return Err(unusable(corrupt(
            src,
            format!("integrity check: {verdict}"),
        )));
    }
    drop(check);

    let staged = db.with_extension("sqlite.restoring");
    let _ = std::fs::remove_file(&staged);
    crate::datadir::write_private(&staged, b"")?;
    std::fs::copy(src, &staged)
        .map_err(|e| Error::Config(format!("copying {}: {e}", src.display())))?;
    // fs::copy takes the backup's mode; the database is owner-only.
    std::fs::set_permissions(&staged, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .map_err(|e| Error::Config(format!("setting permissions: {e}")))?;
    {
        let conn = Connection::open(&staged)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        set_meta(&conn, "actor", &new_actor_hex())?;
        set_meta(&conn, "restored_at", &now.to_string())?;
        // Its feed positions will be reused: peers must read it from the start.
        set_meta(&conn, "feed_epoch", &new_epoch().to_string())?;
        conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")?;
    }
    let mut kept = None;
    if db.exists() {
        // Fold the old WAL into the old file, so the file kept is complete and
        // no stale WAL is left to be replayed into the restored one.
        if let Ok(old) = Connection::open(db) {
            let _ = old.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)");
        }
        let keep = db.with_extension(format!("sqlite.before-restore-{now}"));
        std::fs::rename(db, &keep)
            .map_err(|e| Error::Config(format!("keeping the old database: {e}")))?;
        kept = Some(keep);
    }
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
        let _ = std::fs::remove_file(format!("{}{suffix}", staged.display()));
    }
    std::fs::rename(&staged, db)
        .map_err(|e| Error::Config(format!("installing the restored database: {e}")))?;
    // Make the renames themselves durable.
    if let Some(dir) = db.parent()
        && let Ok(d) = std::fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
    Ok(kept)
}

/// The actor id stored in a database, hex (for `status` and tests).
pub fn stored_actor(db: &Path) -> Result<String> {
    let conn = open_reader(db)?;
    let (_, actor) = identify(&conn, db)?;
    Ok(actor.to_hex_string())
}

/// Heads as stored: sorted 32-byte hashes, so equal sets are equal blobs.
fn pack_heads(heads: &[automerge::ChangeHash]) -> Vec<u8> {
    let mut hashes: Vec<Hash> = heads.iter().map(|h| h.0).collect();
    pack_hashes(&mut hashes)
}

fn pack_hashes(hashes: &mut [Hash]) -> Vec<u8> {
    hashes.sort_unstable();
    hashes.concat()
}

fn unpack_heads(blob: &[u8]) -> Vec<Hash> {
    blob.chunks_exact(32)
        .filter_map(|c| <[u8; 32]>::try_from(c).ok())
        .collect()
}

/// The raw (uncompressed) change chunks of `doc` after `before`.
fn raw_changes_after(doc: &mut AutoCommit, before: &[automerge::ChangeHash]) -> Vec<u8> {
    doc.get_changes(before)
        .iter()
        .flat_map(|c| c.raw_bytes().to_vec())
        .collect()
}

fn read_shared_feed(conn: &Connection, after: u64, limit: usize) -> Result<Vec<FeedItem>> {
    let mut stmt = conn.prepare_cached(
        "SELECT seq, id, collection, heads FROM records WHERE shared = 1 AND seq > ?1
         ORDER BY seq LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![after as i64, limit as i64], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, Vec<u8>>(3)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (seq, id, collection, heads) = row?;
        let (Ok(id), Some(collection)) = (
            id.parse(),
            collection
                .parse::<Collection>()
                .ok()
                .and_then(SharedCollection::new),
        ) else {
            continue;
        };
        out.push(FeedItem {
            seq: seq as u64,
            id,
            collection,
            heads: unpack_heads(&heads),
        });
    }
    Ok(out)
}

/// The store seen by the sync logic: `protocol::sync::Replica` over one
/// connection. Writes need the writer's state (the feed sequence), so only a
/// replica built inside a write job can store.
pub struct SqlReplica<'c> {
    conn: &'c Connection,
    state: Option<&'c mut WriterState>,
    /// What planning already rendered for documents about to be stored.
    rendered: HashMap<RecordId, Rendered>,
}

/// A merged document's stored forms, computed while planning (outside the
/// writer), keyed by the heads they were computed for.
struct Rendered {
    heads: Vec<u8>,
    bytes: Vec<u8>,
    json: String,
    terms: String,
}

impl yui_protocol::sync::Replica for SqlReplica<'_> {
    type Error = Error;

    fn shared_feed(&mut self, after: u64, limit: usize) -> Result<Vec<FeedItem>> {
        read_shared_feed(self.conn, after, limit)
    }

    fn stored(&mut self, id: &RecordId) -> Result<Stored> {
        // rowid, collection, shared, doc, chunks, heads
        type Row = (i64, String, bool, Vec<u8>, i64, Vec<u8>);
        let row: Option<Row> = self
            .conn
            .query_row(
                "SELECT rowid, collection, shared, doc, chunks, heads FROM records WHERE id = ?1",
                [id.as_str()],
                |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                    ))
                },
            )
            .optional()?;
        let Some((rowid, collection, shared, mut bytes, chunks, heads)) = row else {
            return Ok(Stored::Missing);
        };
        let Some(collection) = collection
            .parse::<Collection>()
            .ok()
            .and_then(SharedCollection::new)
            .filter(|_| shared)
        else {
            // A local record's bytes never leave this function.
            return Ok(Stored::Local);
        };
        if chunks > 0 {
            let mut stmt = self
                .conn
                .prepare_cached("SELECT data FROM doc_chunks WHERE record = ?1 ORDER BY n")?;
            for chunk in stmt.query_map([rowid], |r| r.get::<_, Vec<u8>>(0))? {
                bytes.extend(chunk?);
            }
        }
        Ok(Stored::Shared {
            collection,
            bytes,
            heads: unpack_heads(&heads),
        })
    }

    fn store_shared(
        &mut self,
        id: &RecordId,
        collection: SharedCollection,
        doc: &mut AutoCommit,
        view: &RecordView,
    ) -> Result<()> {
        let state = self
            .state
            .as_deref_mut()
            .ok_or_else(|| Error::Storage("store_shared outside a write".into()))?;
        let heads = pack_heads(&doc.get_heads());
        let (json, bytes, terms) = match self.rendered.remove(id) {
            Some(r) if r.heads == heads => (r.json, r.bytes, r.terms),
            _ => (
                serde_json::to_string(view).map_err(|e| Error::Storage(e.to_string()))?,
                doc.save_nocompress(),
                index_terms(view),
            ),
        };
        let seq = state.next_seq;
        // Cached statements: this runs for every record a peer sends.
        let existing: Option<i64> = self
            .conn
            .prepare_cached("SELECT rowid FROM records WHERE id = ?1")?
            .query_row([id.as_str()], |r| r.get(0))
            .optional()?;
        let rowid = match existing {
            Some(rowid) => {
                self.conn
                    .execute("DELETE FROM doc_chunks WHERE record = ?1", [rowid])?;
                self.conn.execute(
                    "UPDATE records SET doc = ?1, chunks = 0, seq = ?2, view = ?3, deleted = ?4, heads = ?5
                     WHERE rowid = ?6 AND shared = 1",
                    params![bytes, seq, json, view.deleted, heads, rowid],
                )?;
                self.conn
                    .execute("DELETE FROM search WHERE rowid = ?1", [rowid])?;
                rowid
            }
            None => {
                self.conn.prepare_cached(
                    "INSERT INTO records (id, collection, shared, town, deleted, seq, heads, doc, chunks, view)
                     VALUES (?1, ?2, 1, ?3, ?4, ?5, ?6, ?7, 0, ?8)",
                )?.execute(
                    params![
                        id.as_str(),
                        collection.get().name(),
                        view.town,
                        view.deleted,
                        seq,
                        heads,
                        bytes,
                        json
                    ],
                )?;
                self.conn.last_insert_rowid()
            }
        };
        if !view.deleted {
            self.conn
                .prepare_cached("INSERT INTO search (rowid, terms) VALUES (?1, ?2)")?
                .execute(params![rowid, terms])?;
        }
        state.next_seq += 1;
        Ok(())
    }

    fn feed_epoch(&mut self) -> Result<u64> {
        let e: Option<String> = get_meta(self.conn, "feed_epoch")?;
        e.and_then(|e| e.parse().ok())
            .ok_or_else(|| Error::Storage("no feed epoch".into()))
    }

    fn peer_epoch(&mut self, peer: &str) -> Result<Option<u64>> {
        Ok(self
            .conn
            .query_row(
                "SELECT epoch FROM peer_epochs WHERE peer = ?1",
                [peer],
                |r| r.get::<_, i64>(0),
            )
            .optional()?
            .map(|e| e as u64))
    }

    fn set_peer_epoch(&mut self, peer: &str, epoch: u64) -> Result<()> {
        self.conn.execute(
            "INSERT INTO peer_epochs (peer, epoch) VALUES (?1, ?2)
             ON CONFLICT (peer) DO UPDATE SET epoch = excluded.epoch",
            params![peer, epoch as i64],
        )?;
        Ok(())
    }

    fn forget_peer(&mut self, peer: &str) -> Result<()> {
        self.conn
            .execute("DELETE FROM peer_heads WHERE peer = ?1", [peer])?;
        self.conn
            .execute("DELETE FROM peer_staged WHERE peer = ?1", [peer])?;
        Ok(())
    }

    fn stage_peer_heads(
        &mut self,
        peer: &str,
        cursor: u64,
        id: &RecordId,
        heads: &[Hash],
    ) -> Result<()> {
        let mut heads = heads.to_vec();
        self.conn
            .prepare_cached(
                "INSERT INTO peer_staged (peer, cursor, record_id, heads) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![
                peer,
                cursor as i64,
                id.as_str(),
                pack_hashes(&mut heads)
            ])?;
        Ok(())
    }

    fn confirm_peer_heads(&mut self, peer: &str, up_to: u64) -> Result<()> {
        // Oldest first, so the latest answer's heads win.
        self.conn.execute(
            "INSERT INTO peer_heads (peer, record_id, heads)
             SELECT peer, record_id, heads FROM peer_staged WHERE peer = ?1 AND cursor <= ?2
             ORDER BY cursor, rowid
             ON CONFLICT (peer, record_id) DO UPDATE SET heads = excluded.heads",
            params![peer, up_to as i64],
        )?;
        self.conn.execute(
            "DELETE FROM peer_staged WHERE peer = ?1 AND cursor <= ?2",
            params![peer, up_to as i64],
        )?;
        Ok(())
    }

    fn peer_heads(&mut self, peer: &str, id: &RecordId) -> Result<Vec<Hash>> {
        let blob: Option<Vec<u8>> = self
            .conn
            .query_row(
                "SELECT heads FROM peer_heads WHERE peer = ?1 AND record_id = ?2",
                params![peer, id.as_str()],
                |r| r.get(0),
            )
            .optional()?;
        Ok(blob.map(|b| unpack_heads(&b)).unwrap_or_default())
    }

    fn set_peer_heads(&mut self, peer: &str, id: &RecordId, heads: &[Hash]) -> Result<()> {
        let mut heads = heads.to_vec();
        self.conn.execute(
            "INSERT INTO peer_heads (peer, record_id, heads) VALUES (?1, ?2, ?3)
             ON CONFLICT (peer, record_id) DO UPDATE SET heads = excluded.heads",
            params![peer, id.as_str(), pack_hashes(&mut heads)],
        )?;
        Ok(())
    }
}
