//! Server integration tests: the HTTP API, rotation, the change feed.
//!
//! One test binary for the crate (one link instead of one per file); each module is one area.

mod audit;
mod cert_names;
mod emergency;
mod feed;
mod http;
mod outage;
mod rotation;
mod signin;
mod signin_hardening;
mod signin_replicas;
mod signing;
mod upstream;
