//! `castellan doctor …`: parses the command line, calls the probes of [`castellan::probes`] for what to
//! look at and the pure checks of `castellan_core::doctor` to judge it, and renders the findings.
//!
//! Exit status: 0 when no finding is an error, 1 when one is, 2 when the doctor itself could not run
//! (bad usage, or an input it was not asked to judge could not be read).

mod args;
mod chain;
mod compose;
mod files;
mod render;
mod service;
mod tls;
mod tokens;

use std::process::ExitCode;

use castellan_core::doctor;
use clap::{Args, Subcommand};

use self::args::{ChainArgs, ComposeArgs, FilesArgs, JwksArgs, TlsArgs, TokenArgs};
use crate::common::StoreArgs;

/// Names the root cause of broken chains, TLS endpoints, file layouts, JWKS and tokens.
///
/// Without a subcommand, checks a Castellan server (--server URL) or store (--data-dir,
/// --database-url): store reachable, key ring loaded, CA chain sound, certificates near expiry.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct DoctorArgs {
    #[command(subcommand)]
    command: Option<DoctorCommand>,
    /// Print `{"findings": [...]}` as JSON.
    #[arg(long, global = true)]
    json: bool,
    /// A running Castellan server to check, e.g. http://127.0.0.1:8270.
    #[arg(long)]
    server: Option<String>,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Debug, Subcommand)]
enum DoctorCommand {
    /// A certificate file (leaf, optionally followed by its chain), with its key and a CA file.
    Chain(ChainArgs),
    /// A TLS endpoint: the chain it presents, judged as a strict client; with --cert/--key, whether
    /// it accepts that client certificate.
    Tls(TlsArgs),
    /// Files a service must read: existence, readability by a user, searchable parent directories,
    /// key modes, owners; POSIX ACLs where a path has one (SELinux and AppArmor are not judged).
    Files(FilesArgs),
    /// The JWKS several replicas publish: the same keys everywhere? With --token, which of them can
    /// verify it. One URL (a load balancer) is fetched --samples times over fresh connections.
    Jwks(JwksArgs),
    /// An access token: shape, algorithm, signature (with --jwks), expiry, issuer, audience.
    Token(TokenArgs),
    /// The certificates and keys of a Compose file's services: shared volumes, read-only mounts,
    /// whether each reader's user can read what Castellan's agent writes, start order.
    Compose(ComposeArgs),
}

/// Runs the doctor; never fails: a doctor that cannot run exits with status 2.
pub async fn run(args: DoctorArgs) -> ExitCode {
    let json = args.json;
    let result = match args.command {
        Some(DoctorCommand::Chain(a)) => Ok(chain::run(&a)),
        Some(DoctorCommand::Tls(a)) => tls::run(&a).await,
        Some(DoctorCommand::Files(a)) => files::run(&a),
        Some(DoctorCommand::Jwks(a)) => Ok(tokens::jwks(&a).await),
        Some(DoctorCommand::Token(a)) => tokens::token(&a).await,
        Some(DoctorCommand::Compose(a)) => compose::run(&a),
        None => service::run(args.server.as_deref(), &args.store).await,
    };
    match result {
        Ok(findings) => {
            if let Err(e) = render::render(&findings, json) {
                eprintln!("doctor: cannot print the findings: {e}");
                return ExitCode::from(2);
            }
            if doctor::has_errors(&findings) {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("doctor: cannot run: {e:#}");
            ExitCode::from(2)
        }
    }
}
