//! Fuzz target: a peer's message, decoded and applied as the node does it,
//! to a town holding real records (see `protocol/tests/common/mod.rs`).
//!
//! Input: one flags byte, then the message.
//! - bit 0: 0 = a `SyncRequest` to the victim as server
//!   (`decode_checked` + `session::server_accept`); 1 = a `SyncResponse` to
//!   the victim as client (`decode_checked` + `session::client_apply`).
//! - bit 1: repair the Automerge checksums of every update after decoding,
//!   so mutations reach Automerge's parser.
//! - bit 2: the rest is not a message but raw Automerge bytes: they become
//!   the changes of one update (next byte: which record and collection;
//!   the one after: which heads), wrapped in a message and encoded.
//!
//! Crashes: any panic that escapes the apply path, or a broken invariant of
//! `common::check_victim`. Panics in third-party code (Automerge's parser)
//! are contained by the apply path's `catch_unwind` and are silenced, unless
//! `YUI_FUZZ_STRICT` is set: then they crash too, to collect and minimize
//! inputs that make Automerge panic.

#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;

#[path = "../../protocol/tests/common/mod.rs"]
mod common;

static TARGET: LazyLock<common::FuzzTarget> = LazyLock::new(|| {
    if std::env::var_os("YUI_FUZZ_STRICT").is_none() {
        common::quiet_automerge_panics();
    }
    common::FuzzTarget::new()
});

fuzz_target!(|data: &[u8]| {
    TARGET.run(data);
});
