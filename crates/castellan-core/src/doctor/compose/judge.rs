//! The walk of `doctor compose`: every path every service reads, to the service that writes it.

use std::collections::BTreeSet;

use super::{
    ComposeFacts, Loc, Service, Source, Writer, WrittenFile, clean, dir_of, file_name, loc_of,
    locate, order_finding, read_paths, starts_after, user_of,
};
use crate::doctor::{Finding, codes};

/// One file an agent (or `castellan dev up`, on the host) writes, located.
struct Written<'a> {
    /// The agent's service; `None` for `dev up`.
    agent: Option<&'a Service>,
    /// Who writes it, in words.
    label: String,
    /// Where its modes and owners are set.
    config: &'static str,
    daemon: bool,
    file: &'a WrittenFile,
    loc: Loc,
}

struct Walk<'a> {
    f: &'a ComposeFacts<'a>,
    written: Vec<Written<'a>>,
    out: Vec<Finding>,
    /// (reader, writer) pairs whose start order was judged.
    ordered: BTreeSet<(String, String)>,
    /// (reader, mount target) pairs whose read-only flag was judged.
    writable: BTreeSet<(String, String)>,
    paths: usize,
}

pub(super) fn run(f: &ComposeFacts<'_>) -> Vec<Finding> {
    let mut w = Walk {
        f,
        written: Vec::new(),
        out: Vec::new(),
        ordered: BTreeSet::new(),
        writable: BTreeSet::new(),
        paths: 0,
    };
    for (name, files) in f.agents {
        let Some(agent) = f.compose.service(name) else {
            continue;
        };
        let daemon = !agent.castellan_agent().is_some_and(|(_, once)| once);
        match files {
            Ok(files) => w.written.extend(files.iter().map(|file| Written {
                agent: Some(agent),
                label: format!("the agent in {name}"),
                config: "the agent's configuration",
                daemon,
                file,
                loc: locate(agent, &file.path),
            })),
            Err(why) => w.out.push(Finding::warning(
                codes::COMPOSE_AGENT_CONFIG,
                name,
                format!(
                    "the configuration of the agent in service {name} cannot be read ({why}): the \
                     files it writes are not judged"
                ),
                "bind-mount the agent's --config file from beside the Compose file, e.g. \
                 `./agent.toml:/etc/castellan/agent.toml:ro`",
            )),
        }
    }
    w.written.extend(f.host_writes.iter().map(|file| Written {
        agent: None,
        label: "`castellan dev up` (on the host)".to_owned(),
        config: "castellan-dev.toml",
        daemon: false,
        file,
        loc: Loc::Host(file.path.clone()),
    }));
    for s in &f.compose.services {
        for (path, named) in read_paths(s, f.texts) {
            w.path(s, &path, &named);
        }
    }
    if clean(&w.out) {
        w.out.push(Finding::info(
            codes::COMPOSE_OK,
            f.file,
            format!(
                "{} services; {} certificate or key path(s) read, each from a volume shared with \
                 its writer, readable by its reader and written before the reader starts",
                f.compose.services.len(),
                w.paths
            ),
            "nothing to do",
        ));
    }
    w.out
}

impl<'a> Walk<'a> {
    /// Judges one path `s` reads (named in `named`).
    fn path(&mut self, s: &'a Service, path: &str, named: &str) {
        if self
            .written
            .iter()
            .any(|w| w.agent.is_some_and(|a| a.name == s.name) && w.file.path == path)
        {
            return;
        }
        let loc = locate(s, path);
        if loc == Loc::Private {
            self.not_shared(s, path, named);
            return;
        }
        self.paths += 1;
        let hits: Vec<usize> = (0..self.written.len())
            .filter(|i| self.written[*i].loc == loc)
            .collect();
        if let Some(&i) = hits.first() {
            let (agent, daemon) = (self.written[i].agent, self.written[i].daemon);
            self.readable(s, path, i);
            let Some(agent) = agent else {
                // `dev up` writes before `docker compose up`: no start order to judge.
                let label = self.written[i].label.clone();
                self.read_only(s, path, &label);
                return;
            };
            self.order(
                s,
                &Writer {
                    service: agent,
                    daemon,
                },
                path,
            );
            self.read_only(s, path, &format!("the agent in {}", agent.name));
            return;
        }
        let beside: BTreeSet<&str> = self
            .written
            .iter()
            .filter(|w| dir_of(&w.loc) == dir_of(&loc))
            .map(|w| file_name(&w.file.path))
            .collect();
        if let Some(agent) = self.written.iter().find(|w| dir_of(&w.loc) == dir_of(&loc)) {
            let agent = agent.label.clone();
            self.out.push(Finding::error(
                codes::COMPOSE_NOT_WRITTEN,
                &s.name,
                format!(
                    "{} reads {path} ({named}), but {agent} writes {} in that \
                     directory, not {}: `No such file or directory`",
                    s.name,
                    beside.into_iter().collect::<Vec<_>>().join(", "),
                    file_name(path)
                ),
                "read one of the files the agent writes (chain.pem for a server's certfile, \
                 key.pem, root.pem or ca-bundle.pem for a cafile), or name the file in the \
                 agent's [[certificate]] with files.ROLE.name",
            ));
            return;
        }
        self.generic(s, path, named, &loc);
    }

    /// A path on a volume no agent writes into: some other service must write that volume.
    fn generic(&mut self, s: &'a Service, path: &str, named: &str, loc: &Loc) {
        let Loc::Volume(volume, _) = loc else {
            return; // a host file, put there before `up`
        };
        let writers: Vec<&'a Service> = self
            .f
            .compose
            .services
            .iter()
            .filter(|w| w.name != s.name)
            .filter(|w| {
                w.mounts
                    .iter()
                    .any(|m| !m.read_only && matches!(&m.source, Source::Volume(v) if v == volume))
            })
            .collect();
        let own = s.mount_of(path).is_some_and(|(m, _)| !m.read_only);
        if writers.is_empty() {
            if !own {
                self.out.push(Finding::error(
                    codes::COMPOSE_NOT_WRITTEN,
                    &s.name,
                    format!(
                        "{} reads {path} ({named}) from volume `{volume}`, but no service writes \
                         into that volume (every other mount of it is read-only, or there is none): \
                         on a fresh volume the file does not exist",
                        s.name
                    ),
                    format!(
                        "mount `{volume}` read-write in the service that writes {}, e.g. the agent \
                         or `castellan pki ca --out`",
                        file_name(path)
                    ),
                ));
            }
            return;
        }
        if !writers
            .iter()
            .any(|w| starts_after(self.f.compose, &s.name, &w.name))
        {
            let w = writers[0];
            let daemon = w.castellan_agent().is_some_and(|(_, once)| !once);
            self.order(s, &Writer { service: w, daemon }, path);
        }
        // A Castellan process (init, serve, pki) writes its own volumes; anyone else only reads.
        let castellan = s.image.as_deref().is_some_and(|i| i.contains("castellan"));
        if !(own && castellan && s.castellan_agent().is_none()) {
            self.read_only(s, path, &writers[0].name);
        }
    }

    /// `s` reads `path`, which no mount of it provides: a finding when another service writes it.
    fn not_shared(&mut self, s: &Service, path: &str, named: &str) {
        let by_agent = self
            .written
            .iter()
            .filter_map(|w| w.agent.filter(|a| a.name != s.name && w.file.path == path))
            .map(|a| (a, locate(a, path)))
            .next();
        let by_mount = self
            .f
            .compose
            .services
            .iter()
            .filter(|w| w.name != s.name)
            .find_map(|w| match w.mount_of(path) {
                Some((m, rest)) if !m.read_only => Some((w, loc_of(m, &rest))),
                _ => None,
            });
        let Some((w, wloc)) = by_agent.or(by_mount) else {
            return; // a file of the image
        };
        self.paths += 1;
        let (mount, target) = match (&wloc, w.mount_of(path)) {
            (Loc::Volume(v, _), Some((m, _))) => (v.clone(), m.target.clone()),
            (Loc::Host(_), Some((m, _))) => match &m.source {
                Source::Bind(h) => (h.clone(), m.target.clone()),
                _ => (String::new(), String::new()),
            },
            _ => (String::new(), String::new()),
        };
        let (message, fix) = if mount.is_empty() {
            (
                format!(
                    "{} reads {path} ({named}), but {} writes it inside its own container (no \
                     volume there), so no other container can see it",
                    s.name, w.name
                ),
                format!(
                    "write it into a named volume (`volumes: [certs:{}]` in {}) and mount that \
                     volume read-only in {}",
                    super::parent(path),
                    w.name,
                    s.name
                ),
            )
        } else {
            (
                format!(
                    "{} reads {path} ({named}), but no volume of {} provides it: {} writes it into \
                     `{mount}` (mounted at {target} there), which {} does not mount, so the file \
                     exists only in {}'s container (`No such file or directory`)",
                    s.name, s.name, w.name, s.name, w.name
                ),
                format!("add `- {mount}:{target}:ro` to services.{}.volumes", s.name),
            )
        };
        self.out.push(Finding::error(
            codes::COMPOSE_NOT_SHARED,
            &s.name,
            message,
            fix,
        ));
    }

    /// The reader's user against the agent's mode and owners for the file.
    fn readable(&mut self, s: &Service, path: &str, i: usize) {
        let w = &self.written[i];
        let Some((uid, gid, who)) = user_of(s) else {
            return;
        };
        let agent_user = w.agent.and_then(user_of);
        let owner = w.file.uid.or(agent_user.as_ref().map(|u| u.0));
        let group = w.file.gid.or(agent_user.as_ref().and_then(|u| u.1));
        let mode = w.file.mode;
        let can = uid == 0
            || match (owner, group) {
                (Some(o), _) if o == uid => mode & 0o400 != 0,
                (_, Some(g)) if Some(g) == gid => mode & 0o040 != 0,
                (Some(_), Some(_)) => mode & 0o004 != 0,
                _ => true, // the owner is unknown: not judged
            };
        if can {
            return;
        }
        let show = |id: Option<u32>| id.map_or("?".to_owned(), |n| n.to_string());
        let gid_text = gid.map_or(uid.to_string(), |g| g.to_string());
        self.out.push(Finding::error(
            codes::COMPOSE_NOT_READABLE,
            &s.name,
            format!(
                "{} runs as {who}, but {} writes {path} with mode {mode:04o}, owned \
                 by {}:{}: {} cannot read it (`Permission denied`; Mosquitto: `Unable to load \
                 server key file`)",
                s.name,
                w.label,
                show(owner),
                show(group),
                s.name
            ),
            format!(
                "in {}, [[certificate]] `{}`: `uid = {uid}` and `gid = \
                 {gid_text}` (or `files.key.gid = {gid_text}` with `files.key.mode = \"0640\"`)",
                w.config, w.file.set
            ),
        ));
    }

    fn order(&mut self, s: &Service, w: &Writer<'_>, path: &str) {
        if !self
            .ordered
            .insert((s.name.clone(), w.service.name.clone()))
        {
            return;
        }
        if !starts_after(self.f.compose, &s.name, &w.service.name) {
            self.out.push(order_finding(s, w, path));
        }
    }

    fn read_only(&mut self, s: &Service, path: &str, writer: &str) {
        let Some((m, _)) = s.mount_of(path) else {
            return;
        };
        if m.read_only || !self.writable.insert((s.name.clone(), m.target.clone())) {
            return;
        }
        let what = match &m.source {
            Source::Volume(v) => format!("volume `{v}`"),
            Source::Bind(h) => h.clone(),
            Source::Private => return,
        };
        self.out.push(Finding::warning(
            codes::COMPOSE_MOUNT_WRITABLE,
            &s.name,
            format!(
                "{} only reads {path} but mounts {what} read-write at {}: it could replace the \
                 certificates and keys that {} writes for every service that trusts them",
                s.name, m.target, writer
            ),
            format!(
                "mount it read-only: `{}:{}:ro` under services.{}.volumes",
                match &m.source {
                    Source::Volume(v) => v.clone(),
                    Source::Bind(h) => h.clone(),
                    Source::Private => String::new(),
                },
                m.target,
                s.name
            ),
        ));
    }
}
