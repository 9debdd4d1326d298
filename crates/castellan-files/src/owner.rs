//! File owners given by name or number: `mosquitto`, `1883`, `mosquitto:mosquitto`, `:ssl-cert`.
//!
//! Names are looked up the way `chown` does, through the system's name service (`getent passwd` /
//! `getent group`, so LDAP or sssd users resolve too); where `getent` is missing (a minimal image),
//! `/etc/passwd` and `/etc/group` are read. A number is taken as it is.

use std::path::Path;

/// A file's owner: a user, a group, or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Owner {
    /// The user id.
    pub uid: Option<u32>,
    /// The group id.
    pub gid: Option<u32>,
}

/// `USER`, `USER:GROUP` or `:GROUP`, each a name or a number, as `chown` takes them.
pub fn parse_owner(spec: &str) -> Result<Owner, String> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    if user.is_empty() && group.is_none_or(str::is_empty) {
        return Err(format!(
            "`{spec}` names no owner: give USER, USER:GROUP or :GROUP"
        ));
    }
    let uid = (!user.is_empty()).then(|| user_id(user)).transpose()?;
    let gid = match group {
        Some(g) if !g.is_empty() => Some(group_id(g)?),
        Some(_) => return Err(format!("`{spec}`: the group after `:` is empty")),
        None => None,
    };
    Ok(Owner { uid, gid })
}

/// The uid of a user name (or a number).
pub fn user_id(name: &str) -> Result<u32, String> {
    lookup(name, "passwd", Path::new("/etc/passwd"))
        .ok_or_else(|| format!("no user `{name}` on this system (getent passwd {name} finds none)"))
}

/// The gid of a group name (or a number).
pub fn group_id(name: &str) -> Result<u32, String> {
    lookup(name, "group", Path::new("/etc/group"))
        .ok_or_else(|| format!("no group `{name}` on this system (getent group {name} finds none)"))
}

/// The name of a uid, for messages (the number when it has none).
pub fn user_name(uid: u32) -> String {
    reverse(uid, "passwd", Path::new("/etc/passwd")).unwrap_or_else(|| uid.to_string())
}

/// The name of a gid, for messages (the number when it has none).
pub fn group_name(gid: u32) -> String {
    reverse(gid, "group", Path::new("/etc/group")).unwrap_or_else(|| gid.to_string())
}

/// `OWNER` as people read it: `mosquitto:mosquitto (uid 1883, gid 1883)`.
pub fn describe(owner: Owner) -> String {
    let names = match (owner.uid, owner.gid) {
        (Some(u), Some(g)) => format!("{}:{}", user_name(u), group_name(g)),
        (Some(u), None) => user_name(u),
        (None, Some(g)) => format!(":{}", group_name(g)),
        (None, None) => return "(unchanged)".into(),
    };
    let ids: Vec<String> = [("uid", owner.uid), ("gid", owner.gid)]
        .iter()
        .filter_map(|(k, v)| v.map(|v| format!("{k} {v}")))
        .collect();
    format!("{names} ({})", ids.join(", "))
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '$'))
}

/// The id (third field) of `name` in the `database` (passwd or group).
fn lookup(name: &str, database: &str, file: &Path) -> Option<u32> {
    lookup_with("getent", name, database, file)
}

fn lookup_with(getent: &str, name: &str, database: &str, file: &Path) -> Option<u32> {
    if let Ok(id) = name.parse::<u32>() {
        return Some(id);
    }
    if !valid_name(name) {
        return None;
    }
    entries(getent, name, database, file)
        .into_iter()
        .find(|f| f.first().is_some_and(|n| n == name))
        .and_then(|f| f.get(2)?.parse().ok())
}

/// The name of `id` in the `database`.
fn reverse(id: u32, database: &str, file: &Path) -> Option<String> {
    entries("getent", &id.to_string(), database, file)
        .into_iter()
        .find(|f| f.get(2).is_some_and(|i| i == &id.to_string()))
        .and_then(|f| f.first().cloned())
}

/// The entries `getent DATABASE KEY` prints, or those of `file` when there is no getent.
fn entries(getent: &str, key: &str, database: &str, file: &Path) -> Vec<Vec<String>> {
    let text = match std::process::Command::new(getent)
        .args([database, key])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
    {
        // 2: no such entry.
        Ok(out) if out.status.success() || out.status.code() == Some(2) => {
            String::from_utf8_lossy(&out.stdout).into_owned()
        }
        _ => std::fs::read_to_string(file).unwrap_or_default(),
    };
    text.lines()
        .map(|l| l.split(':').map(str::to_owned).collect())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers_resolve_as_chown_takes_them() {
        // root is uid 0 and group 0 everywhere.
        assert_eq!(
            parse_owner("root:root"),
            Ok(Owner {
                uid: Some(0),
                gid: Some(0)
            })
        );
        assert_eq!(
            parse_owner("1883"),
            Ok(Owner {
                uid: Some(1883),
                gid: None
            })
        );
        assert_eq!(
            parse_owner(":0"),
            Ok(Owner {
                uid: None,
                gid: Some(0)
            })
        );
        assert_eq!(
            describe(parse_owner("root:root").expect("root")),
            "root:root (uid 0, gid 0)"
        );
        for bad in [
            "",
            ":",
            "root:",
            "no-such-user-xyz",
            "root:no-such-group-xyz",
            "-rf",
        ] {
            let e = parse_owner(bad).expect_err(bad);
            assert!(!e.is_empty(), "{bad}");
        }
        assert!(
            parse_owner("no-such-user-xyz")
                .expect_err("x")
                .contains("no user `no-such-user-xyz`")
        );
    }

    #[test]
    fn without_getent_the_files_are_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let passwd = dir.path().join("passwd");
        std::fs::write(
            &passwd,
            "root:x:0:0::/root:/bin/sh\nmosquitto:x:1883:1883::/:/bin/false\n",
        )
        .expect("write");
        let no_getent = "/nonexistent/getent";
        assert_eq!(
            lookup_with(no_getent, "mosquitto", "passwd", &passwd),
            Some(1883)
        );
        assert_eq!(lookup_with(no_getent, "mosquit", "passwd", &passwd), None);
        assert_eq!(lookup_with(no_getent, "nobody", "passwd", &passwd), None);
    }
}
