//! `yui backup` and `yui restore`: a consistent copy of the database, and
//! putting one back on a stopped node.

use std::path::Path;

use anyhow::Result;

use crate::datadir::DataDir;

pub(super) fn backup(data_dir: &DataDir, file: &Path) -> Result<()> {
    data_dir.open()?;
    let bytes = crate::store::backup(&data_dir.db_path(), file)?;
    let file = std::path::absolute(file).unwrap_or_else(|_| file.to_owned());
    let verified = crate::datadir::VerifiedBackup {
        file: file.display().to_string(),
        bytes,
        verified_at: yui_protocol::record::format_time(crate::clock::now_ms()),
    };
    println!(
        "Wrote {} ({bytes} bytes) and verified it (SQLite integrity_check: ok).",
        file.display()
    );
    // The backup is made; a log that cannot be written is said, not fatal.
    if let Err(e) = data_dir.record_verified_backup(&verified) {
        eprintln!("yui: warning: the backup is fine, but it could not be recorded: {e}");
    }
    Ok(())
}

pub(super) fn restore(data_dir: DataDir, file: &Path) -> Result<()> {
    let config = data_dir.open()?;
    // Held until the restore is done, so no `yui serve` can start halfway.
    let _lock = data_dir.lock().map_err(|_| {
        anyhow::anyhow!(
            "the node is running on {}; stop `yui serve` first, then restore",
            data_dir.path.display()
        )
    })?;
    let db = data_dir.db_path();
    let kept = crate::store::restore(&db, file, &config.town, crate::clock::now_ms())?;
    println!("Restored {} from {}.", db.display(), file.display());
    if let Some(kept) = kept {
        println!("The previous database is kept as {}.", kept.display());
    }
    println!(
        "New Automerge actor id: {}",
        crate::store::stored_actor(&db)?
    );
    Ok(())
}
