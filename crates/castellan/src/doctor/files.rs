//! `castellan doctor files`: stats the files and the directories above them, and judges whether the
//! user can reach and read them.

use anyhow::Result;
use castellan::probes::accounts::{gid_of, uid_of};
use castellan::probes::files::{file_facts, identity};
use castellan_core::doctor::Finding;
use castellan_core::doctor::files::check_files;

use super::args::FilesArgs;

/// Collects the facts of every path, then judges them together.
pub(super) fn run(a: &FilesArgs) -> Result<Vec<Finding>> {
    let uid = match &a.user {
        Some(name) => Some(uid_of(name)?),
        None => a.uid,
    };
    let gid = match &a.group {
        Some(name) => Some(gid_of(name)?),
        None => a.gid,
    };
    let who = identity(uid, gid)?;
    let facts = a
        .paths
        .iter()
        .map(|p| file_facts(p))
        .collect::<Result<Vec<_>>>()?;
    Ok(check_files(&facts, &who, uid))
}
