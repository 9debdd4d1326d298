//! Property tests of the agent's configuration and files, and the regressions they found.
//!
//! One test binary for the crate (one link instead of one per file); each module is one area.

mod robustness;
