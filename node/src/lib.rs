//! The Yui town node: storage, the local API and web console, federation and
//! the command line. The protocol itself (records, schemas, validation, the
//! Automerge mapping, the sync session) lives in the `yui-protocol` crate,
//! without I/O.
//!
//! The modules form floors, and each imports only from the floors below it
//! (`node/tests/layers.rs` checks this; `docs/architecture.md` draws it):
//!
//! - base: [`error`], [`clock`], [`fsio`], [`logging`];
//! - resources, one kind of I/O each: [`store`] (SQLite), [`datadir`],
//!   [`blobs`] (attachment files), [`accounts`] (users, roles, sessions, tokens, audit), [`pki`],
//!   [`peer`] (the peer port and peer tasks), [`metrics`];
//! - domain, plain types in and out: [`node`] (a node's state and status),
//!   [`actions`] (the one table of actions: role, audit entry; and the
//!   administration actions), [`records`] (record writes with the guard),
//!   [`attachments`] (files attached to records: limits, types, quota),
//!   [`daily`], [`kpi`], [`export`] (JSON, Markdown and CSV), [`import`]
//!   (CSV files into a collection, all rows or none);
//! - adapters: [`http`] (the JSON API) and [`console`] (the web console);
//! - composition: [`daemon`] (serving a node), [`demo`], [`cli`].

pub mod accounts;
pub mod actions;
pub mod attachments;
pub mod blobs;
pub mod cli;
pub mod clock;
pub mod console;
pub mod daemon;
pub mod daily;
pub mod datadir;
pub mod demo;
pub mod error;
pub mod export;
pub mod fsio;
pub mod http;
pub mod import;
pub mod kpi;
pub mod logging;
pub mod membership;
pub mod metrics;
pub mod node;
pub mod peer;
pub mod pki;
pub mod records;
pub mod store;

pub use daemon::run;
pub use error::{Error, Result};
pub use node::Node;
