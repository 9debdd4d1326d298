//! `doctor compose`: certificate and key files across the services of a Compose file. Certificates
//! written at run time in one container are invisible to the others unless a volume they share
//! carries them; the doctor follows every certificate or key path a service reads (in its command,
//! entrypoint, healthcheck, environment, and the configuration files bind-mounted into it) to the
//! service that writes it, and says when
//!
//! * no volume shared with the writer provides the path (`compose-not-shared`), or nothing writes the
//!   file the reader expects there (`compose-not-written`);
//! * a reader mounts the writer's volume read-write (`compose-mount-writable`);
//! * the reader's user cannot read the file as Castellan's agent (or `castellan dev up`, on the host)
//!   writes it, with the modes and owners of its configuration (`compose-not-readable`);
//! * the reader may start before the writer has finished (`compose-start-order`: `depends_on`
//!   conditions, followed transitively).
//!
//! The caller reads the Compose file, the bind-mounted files and the agents' configurations; nothing
//! here opens a file.

mod model;

use std::collections::{BTreeMap, BTreeSet};

pub use model::{Compose, Condition, Mount, Service, Source, normalise};

use super::{Finding, Severity, codes};

/// A file Castellan's agent writes, as its configuration says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenFile {
    /// The path inside the agent's container.
    pub path: String,
    /// The `[[certificate]]` (or `[[secret]]`) it belongs to.
    pub set: String,
    /// Its mode.
    pub mode: u32,
    /// Its owner; the agent's own user when `None`.
    pub uid: Option<u32>,
    /// Its group; the agent's own group when `None`.
    pub gid: Option<u32>,
}

/// What the caller read.
#[derive(Debug, Clone, Copy)]
pub struct ComposeFacts<'a> {
    /// The Compose file, as named to the doctor.
    pub file: &'a str,
    /// Its services.
    pub compose: &'a Compose,
    /// The text of bind-mounted files, by host path.
    pub texts: &'a BTreeMap<String, String>,
    /// Per service running `castellan agent`: what its configuration writes, or why it could not be
    /// read.
    pub agents: &'a BTreeMap<String, Result<Vec<WrittenFile>, String>>,
    /// Files `castellan dev up` writes on the host (paths on the host) before the stack starts.
    pub host_writes: &'a [WrittenFile],
}

/// Where a file lives, across containers.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Loc {
    /// In a named volume, at this path below its root.
    Volume(String, String),
    /// On the host.
    Host(String),
    /// Only in one container.
    Private,
}

fn loc_of(m: &Mount, rest: &str) -> Loc {
    match &m.source {
        Source::Volume(v) => Loc::Volume(v.clone(), normalise(rest)),
        Source::Bind(h) => Loc::Host(normalise(&format!("{h}{rest}"))),
        Source::Private => Loc::Private,
    }
}

fn locate(s: &Service, path: &str) -> Loc {
    s.mount_of(path)
        .map_or(Loc::Private, |(m, rest)| loc_of(m, &rest))
}

fn parent(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(d, _)| d)
}

fn file_name(path: &str) -> &str {
    path.rsplit_once('/').map_or(path, |(_, f)| f)
}

fn dir_of(l: &Loc) -> Loc {
    match l {
        Loc::Volume(v, p) => Loc::Volume(v.clone(), parent(p).to_owned()),
        Loc::Host(p) => Loc::Host(parent(p).to_owned()),
        Loc::Private => Loc::Private,
    }
}

/// Certificate and key paths in `text`: absolute paths ending in a certificate or key extension.
fn cert_paths(text: &str) -> Vec<String> {
    const EXT: [&str; 7] = [".pem", ".crt", ".cer", ".key", ".p12", ".pfx", ".der"];
    text.split(|c: char| !(c.is_ascii_alphanumeric() || "/._-".contains(c)))
        .filter(|w| w.starts_with('/') && EXT.iter().any(|e| w.ends_with(e)))
        .map(normalise)
        .collect()
}

/// The certificate and key paths `s` reads, each with where it is named.
fn read_paths(s: &Service, texts: &BTreeMap<String, String>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut add = |paths: Vec<String>, what: &str| {
        for p in paths {
            if !out.iter().any(|(q, _)| *q == p) {
                out.push((p, what.to_owned()));
            }
        }
    };
    add(
        cert_paths(&s.argv().collect::<Vec<_>>().join(" ")),
        "its command",
    );
    add(cert_paths(&s.health_test.join(" ")), "its healthcheck");
    add(cert_paths(&s.environment.join(" ")), "its environment");
    for m in &s.mounts {
        if let Source::Bind(host) = &m.source
            && let Some(text) = texts.get(host)
        {
            let live: String = text
                .lines()
                .filter(|l| !l.trim_start().starts_with('#'))
                .collect::<Vec<_>>()
                .join("\n");
            add(cert_paths(&live), &m.target);
        }
    }
    out
}

/// Who a service runs as, where the file shows it or the image is known: uid, gid, and words.
fn user_of(s: &Service) -> Option<(u32, Option<u32>, String)> {
    let image = s.image.as_deref().unwrap_or_default();
    if let Some(u) = &s.user {
        let (user, group) = u
            .split_once(':')
            .map_or((u.as_str(), None), |(a, b)| (a, Some(b)));
        let uid = match user {
            "root" => 0,
            "mosquitto" if image.contains("mosquitto") => 1883,
            n => n.parse().ok()?,
        };
        let gid = match group {
            Some("root") => Some(0),
            Some(g) => g.parse().ok(),
            None => None,
        };
        return Some((uid, gid, format!("uid {uid} (its `user: {u}`)")));
    }
    if image.contains("eclipse-mosquitto") {
        let broker = s.entrypoint.is_empty()
            && s.command
                .first()
                .is_none_or(|c| c == "mosquitto" || c.ends_with("/mosquitto"));
        return Some(if broker {
            (
                1883,
                Some(1883),
                "uid 1883 (the Mosquitto broker starts as root and drops to user mosquitto)"
                    .to_owned(),
            )
        } else {
            (0, Some(0), "root (the image's default user)".to_owned())
        });
    }
    if image.contains("castellan") {
        return Some((
            10001,
            Some(10001),
            "uid 10001 (user castellan of the image)".to_owned(),
        ));
    }
    None
}

/// Whether `s` starts only after `w` has finished: a `depends_on` path from `s` whose last edge into
/// `w` waits for completion, or for health where `w` has a healthcheck.
fn starts_after(c: &Compose, s: &str, w: &str) -> bool {
    let healthy = c.service(w).is_some_and(|x| x.healthcheck);
    let mut seen = BTreeSet::new();
    let mut todo = vec![s.to_owned()];
    while let Some(x) = todo.pop() {
        if !seen.insert(x.clone()) {
            continue;
        }
        let Some(svc) = c.service(&x) else { continue };
        for (dep, cond) in &svc.depends_on {
            if dep == w {
                if *cond == Condition::Completed || (*cond == Condition::Healthy && healthy) {
                    return true;
                }
            } else {
                todo.push(dep.clone());
            }
        }
    }
    false
}

/// A writer of a file: the service, and what the reader must wait for.
struct Writer<'a> {
    service: &'a Service,
    /// `castellan agent` without `--once`: it never completes.
    daemon: bool,
}

fn order_finding(s: &Service, w: &Writer<'_>, path: &str) -> Finding {
    let how = match s.depends_on.iter().find(|(d, _)| *d == w.service.name) {
        Some((_, cond)) => format!(
            "its `depends_on: {}` has `condition: {}`, which {}",
            w.service.name,
            cond.as_str(),
            match cond {
                Condition::Started => "only waits for the container to start, not for its files",
                _ => "never holds: the writer has no healthcheck",
            }
        ),
        None => format!("nothing in its depends_on waits for {}", w.service.name),
    };
    let fix = if w.service.healthcheck {
        format!(
            "under services.{}.depends_on: `{}: {{condition: service_healthy}}`",
            s.name, w.service.name
        )
    } else if w.daemon {
        format!(
            "give {} a healthcheck that tests the file (`test: [\"CMD\", \"test\", \"-s\", \
             \"{path}\"]`, in its own container's path) and under services.{}.depends_on: `{}: \
             {{condition: service_healthy}}`",
            w.service.name, s.name, w.service.name
        )
    } else {
        format!(
            "under services.{}.depends_on: `{}: {{condition: service_completed_successfully}}`",
            s.name, w.service.name
        )
    };
    Finding::error(
        codes::COMPOSE_START_ORDER,
        &s.name,
        format!(
            "{} may start before {} has written {path}: {how}; on a fresh volume it then finds no \
             file (`No such file or directory`) and exits or serves without it",
            s.name, w.service.name
        ),
        fix,
    )
}

mod judge;

/// Judges the services of a Compose file.
pub fn check_compose(f: &ComposeFacts<'_>) -> Vec<Finding> {
    judge::run(f)
}

/// A finding about the file itself: it cannot be read or parsed.
pub fn compose_invalid(file: &str, why: &str) -> Finding {
    Finding::error(
        codes::COMPOSE_INVALID,
        file,
        format!("{file} is not a Compose file the doctor can read: {why}"),
        "check it with `docker compose -f FILE config`",
    )
}

/// Whether no finding is worse than information.
fn clean(out: &[Finding]) -> bool {
    out.iter().all(|f| f.severity == Severity::Info)
}
