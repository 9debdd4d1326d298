//! Property tests of the I/O-free core, and the regressions they found.
//!
//! One test binary for the crate (one link instead of one per file); each module is one area.

mod robustness;
