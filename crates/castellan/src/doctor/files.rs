//! `castellan doctor files`: stats the files and the directories above them, and judges whether the
//! user can reach and read them.

use anyhow::Result;
use castellan::probes::files::{file_facts, identity};
use castellan_core::doctor::Finding;
use castellan_core::doctor::files::check_files;

use super::args::FilesArgs;

/// Collects the facts of every path, then judges them together.
pub(super) fn run(a: &FilesArgs) -> Result<Vec<Finding>> {
    let who = identity(a.uid, a.gid)?;
    let facts = a
        .paths
        .iter()
        .map(|p| file_facts(p))
        .collect::<Result<Vec<_>>>()?;
    Ok(check_files(&facts, &who, a.uid))
}
