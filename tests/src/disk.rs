//! A failing disk: damage done to a stopped node's database file.

use std::path::Path;

/// Flips the first bytes of every fifth page in the second half of the
/// database file at `db` (pages of records, their documents and the search
/// index, not the schema or the node's identity near its start). Returns
/// how many pages were damaged. The node must be stopped (its WAL folded
/// into the file).
pub fn flip_data_pages(db: &Path) -> usize {
    let mut bytes = std::fs::read(db).expect("read db");
    let page = u16::from_be_bytes([bytes[16], bytes[17]]) as usize;
    let pages = bytes.len() / page;
    let mut flipped = 0;
    for n in (pages / 2..pages).step_by(5) {
        for b in &mut bytes[n * page..n * page + 12] {
            *b ^= 0xA5;
        }
        flipped += 1;
    }
    std::fs::write(db, &bytes).expect("write db");
    flipped
}
