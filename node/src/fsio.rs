//! File helpers shared by the data directory, the CA and the store: files
//! created owner-only, files replaced atomically, and durable renames.
//! Every write is fsynced before it is reported done.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::error::{Error, Result};

/// Creates a file readable by its owner only, failing if it exists.
pub fn write_private(path: &Path, data: &[u8]) -> Result<()> {
    write_file(path, data, 0o600)
}

/// Creates a file with `mode`, failing if it exists.
pub fn write_file(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| io_error("creating", path, e))?;
    f.write_all(data)
        .and_then(|()| f.sync_all())
        .map_err(|e| io_error("writing", path, e))
}

/// Writes a file atomically (temporary file, fsync, rename).
pub fn replace_file(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| io_error("creating", &tmp, e))?;
    f.write_all(data)
        .and_then(|()| f.sync_all())
        .map_err(|e| io_error("writing", &tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| io_error("replacing", path, e))
}

/// Makes the renames in `path`'s directory durable, as far as the system
/// lets us (best effort: a failure here is not reported).
pub fn sync_parent_dir(path: &Path) {
    if let Some(dir) = path.parent()
        && let Ok(d) = fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
}

/// A failed file operation, named with the file.
pub fn io_error(what: &str, path: &Path, e: std::io::Error) -> Error {
    Error::Config(format!("{what} {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn private_files_are_owner_only_and_never_overwritten() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("secret");
        write_private(&path, b"one").expect("created");
        let mode = fs::metadata(&path).expect("metadata").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let err = write_private(&path, b"two").expect_err("exists");
        assert!(err.to_string().contains("creating"), "{err}");
        assert_eq!(fs::read(&path).expect("read"), b"one");
    }

    #[test]
    fn replace_file_replaces_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ca.cert.pem");
        replace_file(&path, b"old", 0o644).expect("written");
        replace_file(&path, b"new", 0o644).expect("replaced");
        assert_eq!(fs::read(&path).expect("read"), b"new");
        assert!(!path.with_extension("tmp").exists());
        let mode = fs::metadata(&path).expect("metadata").permissions().mode();
        assert_eq!(mode & 0o777, 0o644);
    }
}
