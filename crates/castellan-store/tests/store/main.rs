//! The store conformance suite, on SQLite and PostgreSQL.
//!
//! One test binary for the crate (one link instead of one per file); each module is one area.

mod conformance;
mod refresh;
mod upstream;
mod vault;
