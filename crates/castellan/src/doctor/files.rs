//! `castellan doctor files`: stats the files and the directories above them, and judges whether the
//! user can reach and read them.

use anyhow::{Result, bail};
use castellan::probes::files::{file_facts, identity};
use castellan_core::doctor::Finding;
use castellan_core::doctor::files::check_files;
use castellan_files::owner::{group_id, user_id};

use super::args::FilesArgs;

/// Collects the facts of every path, then judges them together.
pub(super) fn run(a: &FilesArgs) -> Result<Vec<Finding>> {
    let uid = match &a.user {
        Some(name) => Some(user_id(name).or_else(|_| {
            bail!(
                "there is no user `{name}` here (not in /etc/passwd, nor known to `getent passwd`); \
                 pass --uid NUMBER for a user of another machine or container"
            )
        })?),
        None => a.uid,
    };
    let gid = match &a.group {
        Some(name) => Some(group_id(name).or_else(|_| {
            bail!(
                "there is no group `{name}` here (not in /etc/group, nor known to `getent group`); \
                 pass --gid NUMBER for a group of another machine or container"
            )
        })?),
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
