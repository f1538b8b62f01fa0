//! Test and bench support for Yui: what the node's tests and benches
//! (`node/tests`, `node/benches`) and the multi-process tests here
//! (`tests/it`, `tests/sim`) share, so that starting a node, making a town
//! or a certificate, or measuring a latency is written once.
//!
//! Nodes come in three kinds. A `yui` process, as an administrator runs it:
//! [`cli`] runs commands, [`serve`] starts `yui serve` and reads what it
//! prints, [`server`] wraps a running one with a blocking client, and [`ca`]
//! makes a consortium with `yui ca`. A node in this process on a temporary
//! data directory: [`test_node`] (HTTP on the test's runtime, with a
//! [`browser`] for the console) and [`town`] (joined to an in-process CA,
//! served on a runtime of its own). And the peer port's clients: [`tls`]
//! connects as a member, [`wire`] makes what a member sends, [`attack`] runs
//! the hostile-peers scenario of a test and a bench.
//!
//! Around them: [`records`] (fields the tests write), [`disk`] (a failing
//! disk's damage), [`wait`] (polling),
//! [`rng`] (a seeded generator), [`stats`] (percentiles) and [`bench`]
//! (options, scratch directories, /proc figures).
//!
//! The node's integration tests and benches take this crate as a
//! dev-dependency while it depends on `yui-node`: cargo allows that cycle,
//! and both link the same `yui_node`, so its types pass between them.

pub mod attack;
pub mod bench;
pub mod browser;
pub mod ca;
pub mod cli;
pub mod disk;
pub mod records;
pub mod rng;
pub mod serve;
pub mod server;
pub mod stats;
pub mod test_node;
pub mod tls;
pub mod town;
pub mod wait;
pub mod wire;

// What the multi-process tests use most, at the crate's root.
pub use ca::{Ca, install_unchecked, member};
pub use cli::{backup_file, init, mode, yui, yui_bin, yui_fails, yui_ok, yui_with_stdin};
pub use records::{id_of, knowledge};
pub use server::{Server, client_builder, start_members};
pub use wait::wait_for;
