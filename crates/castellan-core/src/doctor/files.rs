//! Whether a user can reach and read a file, judged from the modes and owners the caller collected
//! (`stat` of the file and of every directory above it), as the kernel would: owner bits for the owner,
//! group bits for a member of the group, other bits for everyone else; root reads everything.
//!
//! ACLs, SELinux and AppArmor are not considered.

use super::{Finding, codes};

/// The user (and groups) that must read the files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The user id.
    pub uid: u32,
    /// Its primary and supplementary group ids.
    pub gids: Vec<u32>,
    /// A name for messages (`uid 1000 (mosquitto)`).
    pub label: String,
}

/// What `stat` says about one path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// Permission bits (`0o7777` part of `st_mode`).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// A directory.
    pub is_dir: bool,
}

/// What the caller found at the file's path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// It exists.
    Exists(Stat),
    /// It does not exist; the first missing path component.
    Missing(String),
    /// The caller could not even stat it (e.g. its own permission problem): why.
    Unknown(String),
}

/// One file to judge.
#[derive(Debug, Clone)]
pub struct FileFacts {
    /// The path as given.
    pub path: String,
    /// Every existing directory above it, outermost (`/`) first, with its path.
    pub parents: Vec<(String, Stat)>,
    /// The file itself.
    pub found: Found,
    /// It holds a private key (from its contents, or its name when they could not be read).
    pub is_key: bool,
}

#[derive(Debug, Clone, Copy)]
enum Access {
    Read,
    Search,
}

/// The permission bits that apply to `who` for a path (`rwx` as 0..=7), or `None` for root.
fn class_bits(who: &Identity, st: &Stat) -> Option<u32> {
    if who.uid == 0 {
        return None;
    }
    Some(if who.uid == st.uid {
        (st.mode >> 6) & 7
    } else if who.gids.contains(&st.gid) {
        (st.mode >> 3) & 7
    } else {
        st.mode & 7
    })
}

fn can(who: &Identity, st: &Stat, access: Access) -> bool {
    match (class_bits(who, st), access) {
        (None, Access::Read) => true,
        // Root may search any directory, and execute a file with any x bit.
        (None, Access::Search) => st.is_dir || st.mode & 0o111 != 0,
        (Some(bits), Access::Read) => bits & 4 != 0,
        (Some(bits), Access::Search) => bits & 1 != 0,
    }
}

/// `drwxr-x---` style.
pub fn mode_string(st: &Stat) -> String {
    let mut s = String::with_capacity(10);
    s.push(if st.is_dir { 'd' } else { '-' });
    for shift in [6u32, 3, 0] {
        let b = (st.mode >> shift) & 7;
        s.push(if b & 4 != 0 { 'r' } else { '-' });
        s.push(if b & 2 != 0 { 'w' } else { '-' });
        s.push(if b & 1 != 0 { 'x' } else { '-' });
    }
    s
}

/// Which `chmod` class letter applies to `who`.
fn class_letter(who: &Identity, st: &Stat) -> &'static str {
    if who.uid == st.uid {
        "u"
    } else if who.gids.contains(&st.gid) {
        "g"
    } else {
        "o"
    }
}

fn describe(st: &Stat) -> String {
    format!(
        "mode {} ({:04o}), owner uid {} gid {}",
        mode_string(st),
        st.mode & 0o7777,
        st.uid,
        st.gid
    )
}

/// Judges one file for `who`; `expected_owner` is the uid the file should belong to (root is always
/// accepted too).
pub fn check_file(facts: &FileFacts, who: &Identity, expected_owner: Option<u32>) -> Vec<Finding> {
    let mut out = Vec::new();
    let path = facts.path.as_str();
    let user = who.label.as_str();

    let mut blocked = false;
    for (dir, st) in &facts.parents {
        if !can(who, st, Access::Search) {
            blocked = true;
            let letter = class_letter(who, st);
            out.push(Finding::error(
                codes::DIR_NOT_SEARCHABLE,
                dir,
                format!(
                    "{user} cannot enter the directory {dir} ({}): it lacks the execute (search) \
                     bit for them, so {path} and everything else below it fail with `permission \
                     denied` even where the files' own modes allow reading; a `chmod 644 dir/*` \
                     (or `chmod -R 644`) that stripped a directory's x bit is the classic cause",
                    describe(st)
                ),
                format!(
                    "chmod {letter}+x {dir}   (directories need x to be entered; 755 or 750 are \
                     usual)"
                ),
            ));
        }
    }

    let st = match &facts.found {
        Found::Missing(first) => {
            let detail = if first != path {
                format!(" (the directory {first} does not exist)")
            } else {
                String::new()
            };
            out.push(Finding::error(
                codes::FILE_MISSING,
                path,
                format!("{path} does not exist{detail}: `No such file or directory`"),
                "write the file there (castellan pki issue --out DIR, or castellan agent), or fix \
                 the path in the configuration that names it",
            ));
            return out;
        }
        Found::Unknown(why) => {
            if !blocked {
                out.push(Finding::error(
                    codes::NOT_READABLE,
                    path,
                    format!("{path} cannot be examined: {why}"),
                    "run the doctor as root (or as the file's owner) to see the cause",
                ));
            }
            return out;
        }
        Found::Exists(st) => st,
    };

    if st.is_dir {
        if !can(who, st, Access::Read) || !can(who, st, Access::Search) {
            out.push(Finding::error(
                codes::NOT_READABLE,
                path,
                format!(
                    "{user} cannot list or enter the directory {path} ({}): `permission denied`",
                    describe(st)
                ),
                format!("chmod {}+rx {path}", class_letter(who, st)),
            ));
        }
    } else if !can(who, st, Access::Read) {
        let letter = class_letter(who, st);
        let fix = if facts.is_key {
            format!(
                "chown {} {path} (keep mode 0600), or put {user} in the file's group and chmod \
                 0640 {path}",
                who.uid
            )
        } else {
            format!("chmod {letter}+r {path}, or chown {} {path}", who.uid)
        };
        out.push(Finding::error(
            codes::NOT_READABLE,
            path,
            format!(
                "{user} cannot read {path} ({}): opening it fails with `permission denied`",
                describe(st)
            ),
            fix,
        ));
    }

    if facts.is_key && !st.is_dir {
        if st.mode & 0o004 != 0 || st.mode & 0o002 != 0 {
            out.push(Finding::error(
                codes::KEY_TOO_OPEN,
                path,
                format!(
                    "{path} holds a private key and every user on the machine can read it ({}); \
                     Mosquitto, PostgreSQL and ssh refuse such keys",
                    describe(st)
                ),
                format!(
                    "chmod 600 {path} (and treat the key as exposed if others had access); use \
                     0640 with a dedicated group only if a second user must read it"
                ),
            ));
        } else if st.mode & 0o070 != 0 {
            out.push(Finding::warning(
                codes::KEY_TOO_OPEN,
                path,
                format!(
                    "{path} holds a private key that members of group {} can read or write ({})",
                    st.gid,
                    describe(st)
                ),
                format!("chmod 600 {path}, unless that group exists to share this key"),
            ));
        }
    }

    if let Some(owner) = expected_owner
        && st.uid != owner
        && st.uid != 0
    {
        out.push(Finding::warning(
            codes::WRONG_OWNER,
            path,
            format!(
                "{path} belongs to uid {} but {user} (uid {owner}) is expected to own it ({})",
                st.uid,
                describe(st)
            ),
            format!("chown {owner} {path}"),
        ));
    }

    if !out.iter().any(|f| f.severity == super::Severity::Error) && !blocked {
        out.push(Finding::info(
            codes::FILE_OK,
            path,
            format!("{user} can read {path} ({})", describe(st)),
            "nothing to do",
        ));
    }
    out
}
