//! The Yui town node: storage, local API and command line.
//!
//! Module map: [`datadir`] (the data directory and `yui init`), [`store`]
//! (SQLite: documents, change feed, search index), [`accounts`] (local users,
//! roles, sessions, API tokens, audit log), [`api`] (the local HTTP API),
//! [`console`] (the web console on the same port), [`daily`] (the towns'
//! daily work views), [`kpi`] (KPI drafts, roll-up and publishing), [`node`]
//! (a running node and its server loop), [`cli`] (the `yui` commands). The protocol itself — records, schemas, validation, the
//! Automerge mapping — lives in the `yui-protocol` crate, without I/O.

pub mod accounts;
pub mod api;
pub mod cli;
pub mod clock;
pub mod console;
// Daily work (issue 6)
pub mod daily;
pub mod datadir;
pub mod demo;
pub mod error;
pub mod export;
pub mod fsio;
pub mod kpi;
pub mod metrics;
pub mod node;
pub mod openapi;
pub mod peer;
pub mod pki;
pub mod store;

pub use error::{Error, Result};
pub use node::{Node, run};
