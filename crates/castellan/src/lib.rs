//! The `castellan` crate as a library: what the binary's commands share with other callers.
//!
//! * [`probes`]: the I/O of `castellan doctor`: a TLS client that records what a server presents, the
//!   `stat`s, ACLs and user database a file check needs, JWKS and health fetches, and reads of a store.
//!   They collect facts; the judgments are the pure checks of `castellan_core::doctor`.
#![forbid(unsafe_code)]

pub mod probes;
