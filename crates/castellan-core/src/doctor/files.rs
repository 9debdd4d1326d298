//! Whether a user can reach and read a file, judged from the modes and owners the caller collected
//! (`stat` of the file and of every directory above it), as the kernel would: owner bits for the owner,
//! group bits for a member of the group, other bits for everyone else; root reads everything. Where a
//! path carries a POSIX access ACL, the ACL decides instead, by the algorithm of acl(5).
//!
//! SELinux and AppArmor are not considered.

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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    /// Permission bits (`0o7777` part of `st_mode`). With an ACL, the group bits are its mask.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// A directory.
    pub is_dir: bool,
    /// Its POSIX access ACL, when it has one beyond the mode bits.
    pub acl: Option<Acl>,
}

/// Whose permissions one ACL entry holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AclTag {
    /// The file's owner (the owner bits).
    UserObj,
    /// A named user.
    User(u32),
    /// The file's group (without the mask).
    GroupObj,
    /// A named group.
    Group(u32),
    /// The most any entry but the owner's and other's grants (the group bits).
    Mask,
    /// Everyone else (the other bits).
    Other,
}

/// One ACL entry: a tag and its `rwx` bits (0..=7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AclEntry {
    /// Whose.
    pub tag: AclTag,
    /// `rwx` as 4, 2, 1.
    pub perm: u32,
}

/// A POSIX access ACL, as Linux stores it in the `system.posix_acl_access` extended attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acl {
    entries: Vec<AclEntry>,
}

impl Acl {
    /// The attribute's name.
    pub const XATTR: &'static str = "system.posix_acl_access";

    /// Parses the attribute: a little-endian version (2), then 8-byte entries (tag, permissions, id).
    /// Anything else — another version, a torn entry, an unknown tag, bits beyond `rwx`, a required
    /// entry missing or repeated, a named user or group twice — is refused.
    pub fn from_xattr(bytes: &[u8]) -> Result<Self, String> {
        const UNDEFINED_ID: u32 = u32::MAX;
        let (version, body) = bytes
            .split_first_chunk::<4>()
            .ok_or("shorter than its 4-byte header")?;
        if u32::from_le_bytes(*version) != 2 {
            return Err(format!(
                "version {} (only 2 is known)",
                u32::from_le_bytes(*version)
            ));
        }
        if body.is_empty() || body.len() % 8 != 0 {
            return Err(format!(
                "{} bytes of entries, not a whole number of 8-byte entries",
                body.len()
            ));
        }
        let mut entries = Vec::with_capacity(body.len() / 8);
        for e in body.chunks_exact(8) {
            let tag = u16::from_le_bytes([e[0], e[1]]);
            let perm = u32::from(u16::from_le_bytes([e[2], e[3]]));
            let id = u32::from_le_bytes([e[4], e[5], e[6], e[7]]);
            if perm > 7 {
                return Err(format!("permission bits {perm:#o} beyond rwx"));
            }
            let tag = match tag {
                0x01 => AclTag::UserObj,
                0x02 if id != UNDEFINED_ID => AclTag::User(id),
                0x04 => AclTag::GroupObj,
                0x08 if id != UNDEFINED_ID => AclTag::Group(id),
                0x10 => AclTag::Mask,
                0x20 => AclTag::Other,
                t => return Err(format!("unknown entry tag {t:#x} (id {id})")),
            };
            if entries.iter().any(|x: &AclEntry| x.tag == tag) {
                return Err(format!("entry {} repeated", entry_text(tag, 0)));
            }
            entries.push(AclEntry { tag, perm });
        }
        let has = |t: AclTag| entries.iter().any(|e| e.tag == t);
        let named = entries
            .iter()
            .any(|e| matches!(e.tag, AclTag::User(_) | AclTag::Group(_)));
        if !has(AclTag::UserObj) || !has(AclTag::GroupObj) || !has(AclTag::Other) {
            return Err("an owner, group or other entry is missing".to_owned());
        }
        if named && !has(AclTag::Mask) {
            return Err("named entries without a mask entry".to_owned());
        }
        Ok(Self { entries })
    }

    /// The entries, in the attribute's order.
    pub fn entries(&self) -> &[AclEntry] {
        &self.entries
    }

    fn perm(&self, tag: AclTag) -> Option<u32> {
        self.entries.iter().find(|e| e.tag == tag).map(|e| e.perm)
    }

    /// Whether `who` (not root) gets all of `want` on a path owned by `st`, by acl(5)'s algorithm:
    /// the owner entry for the owner; else a named-user entry, masked; else, for a member of the
    /// owning group or of named groups, granted if one of those entries (masked) holds `want`;
    /// else the other entry.
    fn grants(&self, who: &Identity, st: &Stat, want: u32) -> bool {
        let mask = self.perm(AclTag::Mask).unwrap_or(7);
        let has = |bits: u32| bits & want == want;
        if who.uid == st.uid {
            return self.perm(AclTag::UserObj).is_some_and(has);
        }
        if let Some(p) = self.perm(AclTag::User(who.uid)) {
            return has(p & mask);
        }
        let groups: Vec<u32> = self
            .entries
            .iter()
            .filter(|e| match e.tag {
                AclTag::GroupObj => who.gids.contains(&st.gid),
                AclTag::Group(g) => who.gids.contains(&g),
                _ => false,
            })
            .map(|e| e.perm & mask)
            .collect();
        if !groups.is_empty() {
            return groups.into_iter().any(has);
        }
        self.perm(AclTag::Other).is_some_and(has)
    }

    /// Entries other than the owner's that let someone read or write: `user:1883:r--` style.
    fn others_with_access(&self) -> Vec<String> {
        let mask = self.perm(AclTag::Mask).unwrap_or(7);
        self.entries
            .iter()
            .filter_map(|e| {
                let effective = match e.tag {
                    AclTag::UserObj | AclTag::Mask => return None,
                    AclTag::Other => e.perm,
                    _ => e.perm & mask,
                };
                (effective & 6 != 0).then(|| entry_text(e.tag, effective))
            })
            .collect()
    }
}

/// `user:1883:r--`, getfacl's short form.
fn entry_text(tag: AclTag, perm: u32) -> String {
    let who = match tag {
        AclTag::UserObj => "user::".to_owned(),
        AclTag::User(u) => format!("user:{u}:"),
        AclTag::GroupObj => "group::".to_owned(),
        AclTag::Group(g) => format!("group:{g}:"),
        AclTag::Mask => "mask::".to_owned(),
        AclTag::Other => "other::".to_owned(),
    };
    format!("{who}{}", rwx(perm))
}

fn rwx(bits: u32) -> String {
    [(4, 'r'), (2, 'w'), (1, 'x')]
        .iter()
        .map(|&(b, c)| if bits & b != 0 { c } else { '-' })
        .collect()
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
    let want = match access {
        Access::Read => 4,
        Access::Search => 1,
    };
    if let Some(acl) = &st.acl
        && who.uid != 0
    {
        return acl.grants(who, st, want);
    }
    match (class_bits(who, st), access) {
        (None, Access::Read) => true,
        // Root may search any directory, and execute a file with any x bit.
        (None, Access::Search) => st.is_dir || st.mode & 0o111 != 0,
        (Some(bits), Access::Read) => bits & 4 != 0,
        (Some(bits), Access::Search) => bits & 1 != 0,
    }
}

/// `drwxr-x---` style, with `ls`'s `+` when an ACL applies.
pub fn mode_string(st: &Stat) -> String {
    let mut s = String::with_capacity(11);
    s.push(if st.is_dir { 'd' } else { '-' });
    for shift in [6u32, 3, 0] {
        s.push_str(&rwx((st.mode >> shift) & 7));
    }
    if st.acl.is_some() {
        s.push('+');
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
    let acl = match &st.acl {
        Some(acl) => {
            let entries: Vec<String> = acl
                .entries()
                .iter()
                .map(|e| entry_text(e.tag, e.perm))
                .collect();
            format!(", ACL {}", entries.join(","))
        }
        None => String::new(),
    };
    format!(
        "mode {} ({:04o}), owner uid {} gid {}{acl}",
        mode_string(st),
        st.mode & 0o7777,
        st.uid,
        st.gid
    )
}

/// The command that grants `who` the bits `perm` (`r`, `x`, `rx`) on `path`: `chmod` of their class,
/// or, where an ACL decides, an ACL entry of their own (setfacl also widens the mask to match).
fn grant(who: &Identity, st: &Stat, perm: &str, path: &str) -> String {
    match &st.acl {
        Some(_) => format!("setfacl -m u:{}:{perm} {path}", who.uid),
        None => format!("chmod {}+{perm} {path}", class_letter(who, st)),
    }
}

/// Judges one file for `who`; `expected_owner` is the uid the file should belong to (root is always
/// accepted too).
pub fn check_file(facts: &FileFacts, who: &Identity, expected_owner: Option<u32>) -> Vec<Finding> {
    let mut out = Vec::new();
    let path = facts.path.as_str();
    let user = who.label.as_str();

    let blocked = check_parents(facts, who, &mut out);
    let Some(st) = found_stat(facts, blocked, &mut out) else {
        return out;
    };
    check_readable(facts, who, st, &mut out);
    if facts.is_key && !st.is_dir {
        out.extend(key_exposure(path, st));
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

/// One finding per parent directory `who` cannot search; whether there was any.
fn check_parents(facts: &FileFacts, who: &Identity, out: &mut Vec<Finding>) -> bool {
    let path = facts.path.as_str();
    let user = who.label.as_str();
    let mut blocked = false;
    for (dir, st) in &facts.parents {
        if !can(who, st, Access::Search) {
            blocked = true;
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
                    "{}   (directories need x to be entered; 755 or 750 are usual)",
                    grant(who, st, "x", dir)
                ),
            ));
        }
    }
    blocked
}

/// The file's `stat`, or `None` (with a finding, unless a blocked parent already explains it) when
/// it is missing or could not be examined.
fn found_stat<'a>(facts: &'a FileFacts, blocked: bool, out: &mut Vec<Finding>) -> Option<&'a Stat> {
    let path = facts.path.as_str();
    match &facts.found {
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
            None
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
            None
        }
        Found::Exists(st) => Some(st),
    }
}

/// Whether `who` can read the file (list and enter it, for a directory).
fn check_readable(facts: &FileFacts, who: &Identity, st: &Stat, out: &mut Vec<Finding>) {
    let path = facts.path.as_str();
    let user = who.label.as_str();
    if st.is_dir {
        if !can(who, st, Access::Read) || !can(who, st, Access::Search) {
            out.push(Finding::error(
                codes::NOT_READABLE,
                path,
                format!(
                    "{user} cannot list or enter the directory {path} ({}): `permission denied`",
                    describe(st)
                ),
                grant(who, st, "rx", path),
            ));
        }
    } else if !can(who, st, Access::Read) {
        let fix = if facts.is_key && st.acl.is_some() {
            format!(
                "{} (the ACL already decides who reads it), or chown {} {path}",
                grant(who, st, "r", path),
                who.uid
            )
        } else if facts.is_key {
            format!(
                "chown {} {path} (keep mode 0600), or put {user} in the file's group and chmod \
                 0640 {path}",
                who.uid
            )
        } else {
            format!("{}, or chown {} {path}", grant(who, st, "r", path), who.uid)
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
}

/// A private key (not a directory) that others than its owner can read or write: by its ACL where it
/// has one, else by its mode bits.
fn key_exposure(path: &str, st: &Stat) -> Option<Finding> {
    if let Some(acl) = &st.acl {
        let others = acl.others_with_access();
        if others.is_empty() {
            return None;
        }
        let everyone = acl.perm(AclTag::Other).is_some_and(|p| p & 6 != 0);
        let message = format!(
            "{path} holds a private key that its ACL lets others read or write ({}; {})",
            others.join(", "),
            describe(st)
        );
        let fix = format!(
            "setfacl -b {path} && chmod 600 {path}, unless those entries exist to share this key"
        );
        return Some(if everyone {
            Finding::error(codes::KEY_TOO_OPEN, path, message, fix)
        } else {
            Finding::warning(codes::KEY_TOO_OPEN, path, message, fix)
        });
    }
    if st.mode & 0o004 != 0 || st.mode & 0o002 != 0 {
        Some(Finding::error(
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
        ))
    } else if st.mode & 0o070 != 0 {
        Some(Finding::warning(
            codes::KEY_TOO_OPEN,
            path,
            format!(
                "{path} holds a private key that members of group {} can read or write ({})",
                st.gid,
                describe(st)
            ),
            format!("chmod 600 {path}, unless that group exists to share this key"),
        ))
    } else {
        None
    }
}

/// Why a file the doctor was asked to judge could not be read, as a finding; `kind` and `error` are
/// what reading it failed with.
pub fn read_failure(name: &str, kind: std::io::ErrorKind, error: &str) -> Finding {
    let (code, message, fix) = match kind {
        std::io::ErrorKind::NotFound => (
            codes::FILE_MISSING,
            format!("{name} does not exist: `No such file or directory`"),
            "check the path".to_owned(),
        ),
        std::io::ErrorKind::PermissionDenied => (
            codes::NOT_READABLE,
            format!("{name} cannot be read: `permission denied`"),
            format!("run `castellan doctor files {name}` to see which permission is missing"),
        ),
        std::io::ErrorKind::IsADirectory => (
            codes::NOT_READABLE,
            format!("{name} is a directory, not a file"),
            "name the file inside it".to_owned(),
        ),
        _ => (
            codes::NOT_READABLE,
            format!("{name} cannot be read: {error}"),
            "check the path and the file".to_owned(),
        ),
    };
    Finding::error(code, name, message, fix)
}

/// Whether a file holds a private key: from the head of its contents when they could be read, else
/// from its name (`…key….pem`, `…key….key`).
pub fn is_key_file(path: &str, head: Option<&[u8]>) -> bool {
    match head {
        Some(bytes) => super::holds_private_key(bytes),
        None => {
            let lower = path.to_ascii_lowercase();
            lower.contains("key") && (lower.ends_with(".pem") || lower.ends_with(".key"))
        }
    }
}

/// Judges several files for `who` (see [`check_file`]), naming each blocked directory once however many
/// of the files sit below it.
pub fn check_files(
    facts: &[FileFacts],
    who: &Identity,
    expected_owner: Option<u32>,
) -> Vec<Finding> {
    let mut out: Vec<Finding> = Vec::new();
    for f in facts
        .iter()
        .flat_map(|f| check_file(f, who, expected_owner))
    {
        if f.code == codes::DIR_NOT_SEARCHABLE
            && out
                .iter()
                .any(|o| o.code == f.code && o.subject == f.subject)
        {
            continue;
        }
        out.push(f);
    }
    out
}

#[cfg(test)]
#[path = "files_tests.rs"]
mod tests;
