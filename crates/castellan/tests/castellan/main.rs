//! End-to-end tests of the `castellan` binary: serve, init, PKI, agent, doctor, secrets, TLS.
//!
//! One test binary for the crate (one link instead of one per file); each module is one area.

mod pki_support;
mod support;

mod agent;
mod audit_cli;
mod cutover;
mod doctor;
mod faults;
mod first_hour;
mod foundation;
mod helm;
mod helm_init;
mod http_limits;
mod k8s_signin;
mod master_key;
mod pki;
mod pki_crl_dp;
mod rotation_e2e;
mod secrets;
mod signin_e2e;
mod signin_proxy;
mod tls;
mod upstream_e2e;
mod vault;
mod vault_replay;
