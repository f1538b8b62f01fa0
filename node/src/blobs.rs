//! Attachment bytes in the data directory, content-addressed: the file
//! whose SHA-256 is `ab12…` is `attachments/sha256/ab/ab12…`, owner-only
//! (0600, like the database), written to a temporary file, fsynced, checked
//! against its hash and only then renamed into place, so a file under its
//! hash always holds exactly those bytes. A transfer from a peer grows
//! `attachments/partial/<hex>` (kept across restarts, so a fetch resumes
//! where it stopped) until it is complete and verified.
//!
//! What records name which file is the store's (`attachment_refs`); this
//! module only keeps bytes and answers what it holds.

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use ring::digest::{Context, SHA256};

use crate::error::{Error, Result};
use crate::fsio::{io_error, sync_parent_dir};

/// The attachment files of one data directory.
/// Cheap to clone: clones share the set of uploads in progress.
#[derive(Debug, Clone)]
pub struct Blobs {
    root: PathBuf,
    /// Files stored by an upload whose record does not name them yet:
    /// never collected. [`Blobs::settled`] takes one out.
    pending: std::sync::Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
    /// Files whose partial transfer is being written right now (by the
    /// fetcher or by a peer's push): one writer per partial file.
    receiving: std::sync::Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
}

/// The right to write one file's partial transfer; dropping it gives the
/// right back ([`Blobs::begin_receiving`]).
#[derive(Debug)]
pub struct Receiving {
    sha256: String,
    set: std::sync::Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
}

impl Drop for Receiving {
    fn drop(&mut self) {
        self.set
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.sha256);
    }
}

/// The hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    hex(ring::digest::digest(&SHA256, data).as_ref())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn private_dir(path: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(|e| io_error("creating", path, e))
}

impl Blobs {
    /// The files under `data_dir/attachments`.
    pub fn new(data_dir: &Path) -> Blobs {
        Blobs {
            root: data_dir.join("attachments"),
            pending: Default::default(),
            receiving: Default::default(),
        }
    }

    /// Claims the partial transfer of `sha256`, or None while another
    /// transfer of the same file is being written (a fetch from one peer
    /// and a push from another must not interleave their bytes).
    pub fn begin_receiving(&self, sha256: &str) -> Option<Receiving> {
        let mut set = self.receiving.lock().unwrap_or_else(|e| e.into_inner());
        set.insert(sha256.to_owned()).then(|| Receiving {
            sha256: sha256.to_owned(),
            set: self.receiving.clone(),
        })
    }

    /// The directory that holds everything (for backups and `du`).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the complete file of `sha256` is (whether or not it exists).
    /// `sha256` must be 64 lower-case hex digits (callers check).
    pub fn path(&self, sha256: &str) -> PathBuf {
        self.root.join("sha256").join(&sha256[..2]).join(sha256)
    }

    fn partial_path(&self, sha256: &str) -> PathBuf {
        self.root.join("partial").join(sha256)
    }

    /// Whether the complete file is here.
    pub fn has(&self, sha256: &str) -> bool {
        self.path(sha256).is_file()
    }

    /// Opens the complete file, with its size.
    pub fn open(&self, sha256: &str) -> Result<Option<(fs::File, u64)>> {
        match fs::File::open(self.path(sha256)) {
            Ok(f) => {
                let len = f
                    .metadata()
                    .map_err(|e| io_error("reading", &self.path(sha256), e))?
                    .len();
                Ok(Some((f, len)))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error("opening", &self.path(sha256), e)),
        }
    }

    /// Stores `data` under its hash (nothing to do when it is there
    /// already: the same bytes); answers the hash.
    /// Until [`Blobs::settled`], the file is never collected.
    pub fn put(&self, data: &[u8]) -> Result<String> {
        let sha = sha256_hex(data);
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(sha.clone());
        if self.has(&sha) {
            return Ok(sha);
        }
        let tmp_dir = self.root.join("tmp");
        private_dir(&tmp_dir)?;
        let tmp = tmp_dir.join(format!("{sha}.{}", std::process::id()));
        let _ = fs::remove_file(&tmp);
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| io_error("creating", &tmp, e))?;
        if let Err(e) = f.write_all(data).and_then(|()| f.sync_all()) {
            let _ = fs::remove_file(&tmp);
            return Err(if e.kind() == std::io::ErrorKind::StorageFull {
                Error::StorageFull {
                    detail: format!("writing {}: {e}", tmp.display()),
                }
            } else {
                io_error("writing", &tmp, e)
            });
        }
        self.install(&tmp, &sha)?;
        Ok(sha)
    }

    /// The record naming an uploaded file was written (or not): the file
    /// may be collected when no record names it.
    pub fn settled(&self, sha256: &str) {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(sha256);
    }

    fn install(&self, tmp: &Path, sha: &str) -> Result<()> {
        let dest = self.path(sha);
        if let Some(dir) = dest.parent() {
            private_dir(dir)?;
        }
        fs::rename(tmp, &dest).map_err(|e| io_error("storing", &dest, e))?;
        sync_parent_dir(&dest);
        Ok(())
    }

    /// How many bytes of `sha256` a resumed transfer already holds.
    pub fn partial_len(&self, sha256: &str) -> u64 {
        fs::metadata(self.partial_path(sha256)).map_or(0, |m| m.len())
    }

    /// Opens the partial file of `sha256` for appending at `offset` (it is
    /// cut there: bytes beyond what the peer confirmed are dropped).
    pub fn append_partial(&self, sha256: &str, offset: u64) -> Result<fs::File> {
        let path = self.partial_path(sha256);
        if let Some(dir) = path.parent() {
            private_dir(dir)?;
        }
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|e| io_error("opening", &path, e))?;
        f.set_len(offset)
            .and_then(|()| f.seek(SeekFrom::Start(offset)).map(|_| ()))
            .map_err(|e| io_error("writing", &path, e))?;
        Ok(f)
    }

    /// Drops a partial transfer (its bytes were wrong).
    pub fn discard_partial(&self, sha256: &str) {
        let _ = fs::remove_file(self.partial_path(sha256));
    }

    /// Checks the partial file against its hash and, when it matches, moves
    /// it into place. A mismatch discards it and says so.
    pub fn finish_partial(&self, sha256: &str) -> Result<()> {
        let path = self.partial_path(sha256);
        let mut f = fs::File::open(&path).map_err(|e| io_error("opening", &path, e))?;
        f.sync_all().map_err(|e| io_error("syncing", &path, e))?;
        let mut ctx = Context::new(&SHA256);
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = f
                .read(&mut buf)
                .map_err(|e| io_error("reading", &path, e))?;
            if n == 0 {
                break;
            }
            ctx.update(&buf[..n]);
        }
        let got = hex(ctx.finish().as_ref());
        if got != sha256 {
            self.discard_partial(sha256);
            return Err(Error::Storage(format!(
                "the file received for {sha256} has hash {got}; discarded"
            )));
        }
        self.install(&path, sha256)
    }

    /// Deletes the file of `sha256` (and any partial transfer of it).
    pub fn remove(&self, sha256: &str) -> Result<bool> {
        self.discard_partial(sha256);
        match fs::remove_file(self.path(sha256)) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_error("deleting", &self.path(sha256), e)),
        }
    }

    /// The hashes of every complete file held.
    pub fn list(&self) -> Vec<String> {
        let mut out = Vec::new();
        let Ok(dirs) = fs::read_dir(self.root.join("sha256")) else {
            return out;
        };
        for dir in dirs.flatten() {
            if let Ok(files) = fs::read_dir(dir.path()) {
                for f in files.flatten() {
                    if let Some(name) = f.file_name().to_str()
                        && yui_protocol::attachment::is_sha256(name)
                    {
                        out.push(name.to_owned());
                    }
                }
            }
        }
        out
    }
}

/// How long a partial transfer no record names is kept.
pub const PARTIAL_KEPT: std::time::Duration = std::time::Duration::from_secs(3600);

/// Deletes the files (and, after [`PARTIAL_KEPT`], partial transfers) no
/// live record names any more: a file removed from its last record, or whose records were all
/// deleted, here or at their origin. Answers how many were deleted.
pub async fn collect_unnamed(store: &crate::store::Store, blobs: &Blobs) -> Result<usize> {
    let named: std::collections::HashSet<String> = store
        .named_attachments(false)
        .await?
        .into_iter()
        .map(|w| w.sha256)
        .collect();
    let blobs = blobs.clone();
    tokio::task::spawn_blocking(move || {
        let mut removed = 0;
        let pending = blobs
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for sha in blobs.list() {
            if !named.contains(&sha) && !pending.contains(&sha) && blobs.remove(&sha)? {
                tracing::info!(sha256 = %sha, "attachment deleted: no record names it any more");
                removed += 1;
            }
        }
        // A partial transfer waits a while for the record that names it
        // (a node restored from a backup, or seeded by hand, may hold
        // the bytes before the record arrives again).
        if let Ok(partials) = fs::read_dir(blobs.root.join("partial")) {
            for p in partials.flatten() {
                let stale = p
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age >= PARTIAL_KEPT);
                if let Some(name) = p.file_name().to_str()
                    && !named.contains(name)
                    && stale
                {
                    let _ = fs::remove_file(p.path());
                }
            }
        }
        Ok(removed)
    })
    .await
    .map_err(|e| Error::Storage(format!("attachment collection failed: {e}")))?
}

/// Deletes one file now if no live record names it (after a removal on
/// this node, so the file goes at once).
pub async fn remove_if_unnamed(
    store: &crate::store::Store,
    blobs: &Blobs,
    sha256: &str,
) -> Result<bool> {
    if store.is_attachment_named(sha256.to_owned()).await? {
        return Ok(false);
    }
    blobs.remove(sha256)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_stored_under_its_hash_and_a_partial_one_resumes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let blobs = Blobs::new(dir.path());
        let sha = blobs.put(b"%PDF-1.7 hello").expect("put");
        assert_eq!(sha, sha256_hex(b"%PDF-1.7 hello"));
        assert!(blobs.has(&sha));
        assert_eq!(blobs.put(b"%PDF-1.7 hello").expect("again"), sha);
        assert_eq!(blobs.list(), std::slice::from_ref(&sha));

        let data = b"0123456789abcdef".repeat(100);
        let want = sha256_hex(&data);
        let mut f = blobs.append_partial(&want, 0).expect("partial");
        f.write_all(&data[..700]).expect("write");
        drop(f);
        assert_eq!(blobs.partial_len(&want), 700);
        let mut f = blobs.append_partial(&want, 700).expect("resume");
        f.write_all(&data[700..]).expect("write");
        drop(f);
        blobs.finish_partial(&want).expect("verified");
        assert!(blobs.has(&want));
        assert_eq!(blobs.partial_len(&want), 0);

        let mut f = blobs.append_partial(&sha, 0).expect("partial");
        f.write_all(b"not it").expect("write");
        drop(f);
        assert!(blobs.finish_partial(&sha).is_err());
        assert!(blobs.remove(&sha).expect("remove"));
        assert!(!blobs.has(&sha));
    }
}
