//! File helpers shared by the data directory, the CA and the store: files
//! created owner-only, files replaced atomically, durable renames, and the
//! [`PrivateDir`] that exports and backups write into. Every write is
//! fsynced before it is reported done.

use std::fs;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Mode, OFlags};

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

/// A directory that `yui export` and `yui backup` write personal data into:
/// one this command created (mode 0700), or one that is no link, belongs to
/// the user running the command and is open to no one else (mode 0700). So
/// no other local user can plant a link or a file in it, or read what is
/// written. Held open, so the checked directory is the one written to even
/// if a name on its path changes meanwhile. Files are created new, never
/// through a link nor over an existing file, mode 0600.
pub struct PrivateDir {
    pub path: PathBuf,
    fd: OwnedFd,
}

impl PrivateDir {
    /// Creates `path` (and missing parents) mode 0700, or checks the
    /// directory that is there. `what` names the command in messages.
    pub fn open(path: &Path, what: &str) -> Result<PrivateDir> {
        if fs::symlink_metadata(path).is_err() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(path)
                .map_err(|e| io_error("creating", path, e))?;
        }
        let fd = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| {
            if e == rustix::io::Errno::LOOP || e == rustix::io::Errno::NOTDIR {
                Error::Config(format!(
                    "{} is a symbolic link or not a directory; {what} writes only into a directory of its own: give a new directory (it is created mode 0700) or one you own with mode 0700",
                    path.display()
                ))
            } else {
                io_error("opening", path, e.into())
            }
        })?;
        let dir = PrivateDir {
            path: path.to_owned(),
            fd,
        };
        dir.check(what)?;
        Ok(dir)
    }

    fn check(&self, what: &str) -> Result<()> {
        let st =
            rustix::fs::fstat(&self.fd).map_err(|e| io_error("reading", &self.path, e.into()))?;
        let me = rustix::process::getuid().as_raw();
        if st.st_uid != me {
            return Err(Error::Config(format!(
                "{} belongs to another user (uid {}); {what} writes only into a directory you own: give a new directory (it is created mode 0700) or one you own with mode 0700",
                self.path.display(),
                st.st_uid
            )));
        }
        let mode = st.st_mode & 0o777;
        if mode & 0o077 != 0 {
            return Err(Error::Config(format!(
                "{} is open to other users (mode {mode:o}); they could read what {what} writes there or plant links in it. Fix it with: chmod 700 {}, or give a new directory",
                self.path.display(),
                self.path.display()
            )));
        }
        Ok(())
    }

    /// The path of `name` in this directory.
    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Whether anything (a file, a directory, a link) is called `name` here.
    pub fn holds(&self, name: &str) -> bool {
        rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW).is_ok()
    }

    /// Creates the file `name`, mode 0600: never through a link, never over
    /// an existing file.
    pub fn create_file(&self, name: &str) -> Result<fs::File> {
        let path = self.join(name);
        let fd = rustix::fs::openat(
            &self.fd,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|e| {
            if e == rustix::io::Errno::EXIST {
                Error::Config(format!(
                    "{} already exists; nothing is written over an existing file: remove it or choose a new name",
                    path.display()
                ))
            } else {
                io_error("creating", &path, e.into())
            }
        })?;
        // The umask may have narrowed the mode; nothing widens it.
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(0o600))
            .map_err(|e| io_error("setting permissions of", &path, e.into()))?;
        Ok(fs::File::from(fd))
    }

    /// Creates the file `name` (as [`create_file`](Self::create_file)) holding `data`, fsynced.
    pub fn write_file(&self, name: &str, data: &[u8]) -> Result<()> {
        let mut f = self.create_file(name)?;
        f.write_all(data)
            .and_then(|()| f.sync_all())
            .map_err(|e| io_error("writing", &self.join(name), e))
    }

    /// Creates the subdirectory `name`, mode 0700, and opens it.
    pub fn create_dir(&self, name: &str, what: &str) -> Result<PrivateDir> {
        let path = self.join(name);
        rustix::fs::mkdirat(&self.fd, name, Mode::from_raw_mode(0o700)).map_err(|e| {
            if e == rustix::io::Errno::EXIST {
                Error::Config(format!(
                    "{} already exists; nothing is written over an existing file: remove it or choose a new directory",
                    path.display()
                ))
            } else {
                io_error("creating", &path, e.into())
            }
        })?;
        let fd = rustix::fs::openat(
            &self.fd,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| io_error("opening", &path, e.into()))?;
        let dir = PrivateDir { path, fd };
        dir.check(what)?;
        Ok(dir)
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
