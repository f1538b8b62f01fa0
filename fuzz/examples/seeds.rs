//! Writes the fuzz target's seed inputs: every valid message of the
//! fixture, as requests and responses, with and without checksum repair,
//! and each valid update's Automerge bytes in raw mode.
//!
//! `cargo run --release --example seeds -- seeds/decode_apply` (from `fuzz/`).

use prost::Message;

#[path = "../../protocol/tests/common/mod.rs"]
mod common;

fn main() -> std::io::Result<()> {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "seeds/decode_apply".into());
    std::fs::create_dir_all(&dir)?;
    let f = common::fixture();
    let mut n = 0;
    let mut write = |flags: u8, body: &[u8]| -> std::io::Result<()> {
        let mut input = vec![flags];
        input.extend_from_slice(body);
        n += 1;
        std::fs::write(format!("{dir}/seed-{n:03}"), input)
    };
    for req in &f.requests {
        let bytes = req.encode_to_vec();
        write(0, &bytes)?;
        write(2, &bytes)?;
    }
    for resp in &f.responses {
        let bytes = resp.encode_to_vec();
        write(1, &bytes)?;
        write(3, &bytes)?;
    }
    for (i, u) in f.updates.iter().enumerate() {
        let mut raw = vec![i as u8, i as u8];
        raw.extend_from_slice(&u.changes);
        write(4 | 2, &raw)?;
        write(4 | 2 | 1, &raw)?;
    }
    eprintln!("{n} seeds written to {dir}");
    Ok(())
}
