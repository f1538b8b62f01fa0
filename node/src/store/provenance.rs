//! Who made each change of a shared record: the change signatures
//! (`protocol::provenance`), kept beside the record so they travel with its
//! changes, the certificates of the signers (so this node can pass them on
//! to nodes that never met the signer), and the book of member keys that
//! incoming changes are checked with. The peer layer, which holds the CA
//! and the revocation list, verifies certificates and hands the book over
//! ([`Store::set_signer_book`]); local writes are signed with the node's
//! key ([`Store::sign_changes_with`]).
//!
//! Late signatures (protocol.md 7.6), those stored for a change the node
//! already held (its own older changes signed at upgrade, `own_history`,
//! or a peer's offered afterwards), are noted in `late_signatures` with the
//! feed position they gave the record, so that peers past the record's
//! earlier position are offered them, and only them ([`store_late`]).

use std::collections::HashMap;
use std::sync::Arc;

use automerge::ChangeHash;
use rusqlite::{Connection, params};
use yui_protocol::RecordId;
use yui_protocol::provenance::{ChangeSignature, SignerBook, SignerId};

use super::writer::WriterState;
use super::{Store, lock};
use crate::error::Result;

/// The tables, created by `yui init` and added to older databases at open.
pub(super) const TABLES: &str = "
CREATE TABLE IF NOT EXISTS change_signatures (
    change BLOB PRIMARY KEY, record TEXT NOT NULL, signer BLOB NOT NULL, signature BLOB NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS change_signatures_by_record ON change_signatures (record);
CREATE TABLE IF NOT EXISTS late_signatures (
    change BLOB PRIMARY KEY, record TEXT NOT NULL, seq INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS late_signatures_by_record ON late_signatures (record, seq);
CREATE TABLE IF NOT EXISTS signer_certificates (
    certificate BLOB PRIMARY KEY, signer BLOB NOT NULL, town TEXT NOT NULL, learned_at INTEGER NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS ca_certificates (
    certificate BLOB PRIMARY KEY, learned_at INTEGER NOT NULL
) STRICT;
";

/// Signs one change with this node's key.
pub type ChangeSigning = Arc<dyn Fn(ChangeHash) -> Option<ChangeSignature> + Send + Sync>;

/// Who signed a change, as history shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedBy {
    pub signer: SignerId,
    /// The town of the signer's certificate, when this node holds one.
    pub town: Option<String>,
}

/// Signs the changes of `doc` after `before` (a write to a shared record)
/// with `signing`, if set.
pub(super) fn sign_new_changes(
    signing: Option<&ChangeSigning>,
    doc: &mut automerge::AutoCommit,
    before: &[ChangeHash],
) -> Vec<ChangeSignature> {
    let Some(sign) = signing else {
        return Vec::new();
    };
    yui_protocol::provenance::changes_after(doc, before)
        .iter()
        .filter_map(|c| sign(c.hash))
        .collect()
}

pub(super) fn insert_signatures(
    conn: &Connection,
    record: &RecordId,
    signatures: &[ChangeSignature],
) -> Result<()> {
    let mut insert = conn.prepare_cached(
        "INSERT OR IGNORE INTO change_signatures (change, record, signer, signature) VALUES (?1, ?2, ?3, ?4)",
    )?;
    for s in signatures {
        insert.execute(params![
            &s.change.0[..],
            record.as_str(),
            &s.signer.0[..],
            s.signature
        ])?;
    }
    Ok(())
}

/// Stores signatures of changes `record` already holds, as late ones: if
/// any is new, the record takes the next feed position, noted with them,
/// so the peers' cursors reach it again. Answers how many were new.
pub(super) fn store_late(
    conn: &Connection,
    state: &mut WriterState,
    record: &RecordId,
    signatures: &[ChangeSignature],
) -> Result<usize> {
    let seq = state.next_seq;
    let mut insert = conn.prepare_cached(
        "INSERT OR IGNORE INTO change_signatures (change, record, signer, signature) VALUES (?1, ?2, ?3, ?4)",
    )?;
    let mut note = conn.prepare_cached(
        "INSERT OR REPLACE INTO late_signatures (change, record, seq) VALUES (?1, ?2, ?3)",
    )?;
    let mut new = 0;
    for s in signatures {
        if insert.execute(params![
            &s.change.0[..],
            record.as_str(),
            &s.signer.0[..],
            s.signature
        ])? == 1
        {
            note.execute(params![&s.change.0[..], record.as_str(), seq])?;
            new += 1;
        }
    }
    if new > 0 {
        conn.prepare_cached("UPDATE records SET seq = ?1 WHERE id = ?2 AND shared = 1")?
            .execute(params![seq, record.as_str()])?;
        state.next_seq += 1;
    }
    Ok(new)
}

/// The late signatures of `record` stored after feed position `after`.
pub(super) fn read_late_signatures(
    conn: &Connection,
    record: &RecordId,
    after: u64,
) -> Result<Vec<ChangeSignature>> {
    let mut stmt = conn.prepare_cached(
        "SELECT s.change, s.signer, s.signature FROM late_signatures l
         JOIN change_signatures s ON s.change = l.change
         WHERE l.record = ?1 AND l.seq > ?2",
    )?;
    let rows = stmt.query_map(params![record.as_str(), after as i64], |r| {
        Ok((
            r.get::<_, Vec<u8>>(0)?,
            r.get::<_, Vec<u8>>(1)?,
            r.get::<_, Vec<u8>>(2)?,
        ))
    })?;
    let mut found = Vec::new();
    for row in rows {
        let (change, signer, signature) = row?;
        if let (Ok(change), Some(signer)) =
            (<[u8; 32]>::try_from(change), SignerId::from_slice(&signer))
        {
            found.push(ChangeSignature {
                change: ChangeHash(change),
                signer,
                signature,
            });
        }
    }
    Ok(found)
}

/// The stored signatures of `changes` of `record` (all: None).
pub(super) fn read_signatures(
    conn: &Connection,
    record: &RecordId,
    changes: Option<&[ChangeHash]>,
) -> Result<Vec<ChangeSignature>> {
    let row = |r: &rusqlite::Row<'_>| -> rusqlite::Result<(Vec<u8>, Vec<u8>, Vec<u8>)> {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
    };
    let rows: Vec<(Vec<u8>, Vec<u8>, Vec<u8>)> = match changes {
        None => conn
            .prepare_cached(
                "SELECT change, signer, signature FROM change_signatures WHERE record = ?1",
            )?
            .query_map([record.as_str()], row)?
            .collect::<rusqlite::Result<_>>()?,
        Some(changes) => {
            let mut stmt = conn.prepare_cached(
                "SELECT change, signer, signature FROM change_signatures WHERE change = ?1",
            )?;
            let mut found = Vec::with_capacity(changes.len());
            for h in changes {
                if let Some(r) = stmt.query_map([&h.0[..]], row)?.next() {
                    found.push(r?);
                }
            }
            found
        }
    };
    Ok(rows
        .into_iter()
        .filter_map(|(change, signer, signature)| {
            Some(ChangeSignature {
                change: ChangeHash(change.try_into().ok()?),
                signer: SignerId::from_slice(&signer)?,
                signature,
            })
        })
        .collect())
}

impl Store {
    /// Signs every change this node makes to a shared record from now on.
    /// Set once, when the node opens.
    pub fn sign_changes_with(&self, signing: ChangeSigning) {
        *self
            .inner
            .signing
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(signing);
    }

    /// This node's signing key, once set (for a write job to take along).
    pub(super) fn signing(&self) -> Option<ChangeSigning> {
        self.inner
            .signing
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The member keys incoming changes are checked with from now on.
    pub fn set_signer_book(&self, book: Arc<SignerBook>) {
        *lock(&self.inner.signers) = book;
    }

    /// Adds keys to the book (a node that is not joined has no peer layer
    /// to build one: tests and tools vouch for signers this way).
    pub fn add_signers(&self, signers: Vec<yui_protocol::provenance::Signer>) {
        let mut book = lock(&self.inner.signers);
        let mut more = (**book).clone();
        for s in signers {
            more.insert(s);
        }
        *book = Arc::new(more);
    }

    pub(super) fn signer_book(&self) -> Arc<SignerBook> {
        lock(&self.inner.signers).clone()
    }

    /// Every signer certificate this node holds (DER), to build the book.
    pub async fn signer_certificates(&self) -> Result<Vec<Vec<u8>>> {
        self.read(|conn| {
            let mut stmt = conn.prepare("SELECT certificate FROM signer_certificates")?;
            let ders = stmt
                .query_map([], |r| r.get::<_, Vec<u8>>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(ders)
        })
        .await
    }

    /// Every signer certificate with its town, oldest learned first, and
    /// (for a cache to know it is current) how many there are.
    pub async fn signer_certificates_with_towns(&self) -> Result<Vec<(Vec<u8>, String)>> {
        self.read(|conn| {
            let mut stmt = conn.prepare(
                "SELECT certificate, town FROM signer_certificates ORDER BY learned_at, rowid",
            )?;
            let rows = stmt
                .query_map([], |r| {
                    Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, String>(1)?))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }

    /// How many signer certificates this node holds (they are only added).
    pub async fn signer_certificate_count(&self) -> Result<i64> {
        self.read(|conn| {
            Ok(conn.query_row("SELECT count(*) FROM signer_certificates", [], |r| r.get(0))?)
        })
        .await
    }

    /// Keeps certificates the peer layer verified: (DER, signer, town).
    /// Returns how many were new.
    pub async fn remember_signer_certificates(
        &self,
        certs: Vec<(Vec<u8>, SignerId, String)>,
    ) -> Result<usize> {
        self.write(move |conn, _| {
            let now = crate::clock::now_ms();
            let mut insert = conn.prepare_cached(
                "INSERT OR IGNORE INTO signer_certificates (certificate, signer, town, learned_at) VALUES (?1, ?2, ?3, ?4)",
            )?;
            let mut added = 0;
            for (der, signer, town) in &certs {
                added += insert.execute(params![der, &signer.0[..], town, now])?;
            }
            Ok(added)
        })
        .await
    }

    /// The cross certificates of CA rollovers this node has verified (DER).
    pub async fn ca_certificates(&self) -> Result<Vec<Vec<u8>>> {
        self.read(|conn| {
            let mut stmt = conn.prepare("SELECT certificate FROM ca_certificates")?;
            let ders = stmt
                .query_map([], |r| r.get::<_, Vec<u8>>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(ders)
        })
        .await
    }

    /// Keeps cross certificates the peer layer verified.
    pub async fn remember_ca_certificates(&self, certs: Vec<Vec<u8>>) -> Result<()> {
        self.write(move |conn, _| {
            let now = crate::clock::now_ms();
            let mut insert = conn.prepare_cached(
                "INSERT OR IGNORE INTO ca_certificates (certificate, learned_at) VALUES (?1, ?2)",
            )?;
            for der in &certs {
                insert.execute(params![der, now])?;
            }
            Ok(())
        })
        .await
    }

    /// The certificates (DER) that bind `signers` to their towns.
    pub async fn certificates_of(&self, signers: Vec<SignerId>) -> Result<Vec<Vec<u8>>> {
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached("SELECT certificate FROM signer_certificates WHERE signer = ?1")?;
            let mut ders = Vec::new();
            for s in &signers {
                for der in stmt.query_map([&s.0[..]], |r| r.get::<_, Vec<u8>>(0))? {
                    ders.push(der?);
                }
            }
            Ok(ders)
        })
        .await
    }

    /// The towns that hold (or held) a consortium certificate this node has
    /// verified: the only towns the KPI roll-up counts.
    pub async fn certified_towns(&self) -> Result<Vec<String>> {
        self.read(|conn| {
            let mut stmt =
                conn.prepare("SELECT DISTINCT town FROM signer_certificates ORDER BY town")?;
            let towns = stmt
                .query_map([], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(towns)
        })
        .await
    }

    /// Who signed each change of a record (hex change hash → signer).
    pub async fn signed_by(&self, id: RecordId) -> Result<HashMap<String, SignedBy>> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT s.change, s.signer,
                        (SELECT town FROM signer_certificates c WHERE c.signer = s.signer LIMIT 1)
                 FROM change_signatures s WHERE s.record = ?1",
            )?;
            let rows = stmt.query_map([id.as_str()], |r| {
                Ok((
                    r.get::<_, Vec<u8>>(0)?,
                    r.get::<_, Vec<u8>>(1)?,
                    r.get::<_, Option<String>>(2)?,
                ))
            })?;
            let mut found = HashMap::new();
            for row in rows {
                let (change, signer, town) = row?;
                if let (Ok(change), Some(signer)) =
                    (<[u8; 32]>::try_from(change), SignerId::from_slice(&signer))
                {
                    found.insert(ChangeHash(change).to_string(), SignedBy { signer, town });
                }
            }
            Ok(found)
        })
        .await
    }
}
