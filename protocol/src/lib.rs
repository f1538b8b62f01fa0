//! Yui's records, schemas and their Automerge mapping, without I/O.
//!
//! This crate decides what a record is and what is valid; the `node` crate
//! moves bytes and writes to disk. **Architecture invariant:** nothing here
//! performs I/O, reads a clock or draws randomness: time and random bytes are
//! arguments, so the same code runs in the node and in a deterministic
//! simulation.

pub mod atom;
pub mod attachment;
pub mod collection;
pub mod daily;
pub mod doc;
pub mod gate;
pub mod guard;
pub mod kpi;
pub mod markdown;
pub mod memory;
pub mod provenance;
pub mod quota;
pub mod record;
pub mod schema;
pub mod search;
pub mod session;
pub mod spreadsheet;
pub mod sync;
pub mod validate;
pub mod wire;

pub use automerge;
pub use collection::{Collection, Scope, UnknownCollection};
pub use record::{Millis, RecordId, RecordView};
pub use validate::{FieldError, FieldValue, Fields, Patch, ValidationErrors};
