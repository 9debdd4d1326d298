//! User and group names to numbers, the way `id` and `ls -l` resolve them: the local `/etc/passwd` and
//! `/etc/group` first, then `getent` (which asks NSS: LDAP, SSSD, systemd-userdb) for a name the files
//! do not list. A number is taken as it is.

use anyhow::{Result, bail};

/// The third field (the id) of the `name:x:ID:…` line for `name` in `text`.
fn id_in(text: &str, name: &str) -> Option<u32> {
    text.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        (f.len() > 3 && f[0] == name)
            .then(|| f[2].parse::<u32>().ok())
            .flatten()
    })
}

/// The id of `name` in the NSS `database` (`passwd`, `group`), from the file and then from `getent`.
fn lookup(database: &str, name: &str) -> Option<u32> {
    if name.is_empty() || name.contains(':') || name.contains('\n') {
        return None;
    }
    if let Ok(text) = std::fs::read_to_string(format!("/etc/{database}"))
        && let Some(id) = id_in(&text, name)
    {
        return Some(id);
    }
    let out = std::process::Command::new("getent")
        .args([database, name])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    id_in(&String::from_utf8_lossy(&out.stdout), name)
}

/// The uid of a user name (or number).
pub fn uid_of(user: &str) -> Result<u32> {
    if let Ok(n) = user.parse::<u32>() {
        return Ok(n);
    }
    match lookup("passwd", user) {
        Some(id) => Ok(id),
        None => bail!(
            "there is no user `{user}` here (not in /etc/passwd, nor known to `getent passwd`); \
             pass --uid NUMBER for a user of another machine or container"
        ),
    }
}

/// The gid of a group name (or number).
pub fn gid_of(group: &str) -> Result<u32> {
    if let Ok(n) = group.parse::<u32>() {
        return Ok(n);
    }
    match lookup("group", group) {
        Some(id) => Ok(id),
        None => bail!(
            "there is no group `{group}` here (not in /etc/group, nor known to `getent group`); \
             pass --gid NUMBER for a group of another machine or container"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::id_in;

    #[test]
    fn finds_the_id_by_exact_name() {
        let text =
            "root:x:0:0:root:/root:/bin/sh\nmosquitto:x:1883:1883::/var/empty:/sbin/nologin\n";
        assert_eq!(id_in(text, "mosquitto"), Some(1883));
        assert_eq!(id_in(text, "root"), Some(0));
        assert_eq!(id_in(text, "mosq"), None);
        assert_eq!(id_in("bad:x:notanumber:0::\n", "bad"), None);
    }
}
