//! `yui export`: opens the node's store and reports; the export itself
//! (formats, files) is `crate::export`.

use std::path::Path;

use anyhow::Result;

use crate::datadir::DataDir;
use crate::export::ExportFormat;
use crate::node::Node;

pub(super) async fn run(
    data_dir: DataDir,
    format: ExportFormat,
    include_deleted: bool,
    dir: &Path,
) -> Result<()> {
    let node = Node::open(data_dir, false)?;
    let written = crate::export::export(&node.store, format, include_deleted, dir).await;
    node.store.close();
    let written = written?;
    println!("Exported {written} records to {}.", dir.display());
    Ok(())
}
