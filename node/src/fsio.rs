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

fn io_error(what: &str, path: &Path, e: std::io::Error) -> Error {
    Error::Config(format!("{what} {}: {e}", path.display()))
}
