//! A Compose file as the doctor needs it: per service its image, user, command, healthcheck, mounts
//! and start-up dependencies. YAML is parsed by serde_yaml_ng (anchors and `<<` merge keys applied);
//! both the short (`src:dst:ro`) and the long (`type: volume`) volume syntax are read. Paths are
//! handled as text (no file is opened): bind sources are made absolute against the Compose file's
//! directory and normalised lexically.

use serde_yaml_ng::Value;

/// Where a mount's files live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A named volume (its name in the `volumes:` section).
    Volume(String),
    /// A host path (absolute, normalised).
    Bind(String),
    /// An anonymous volume, a tmpfs: private to the container.
    Private,
}

/// One mount of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// What is mounted.
    pub source: Source,
    /// Where, inside the container.
    pub target: String,
    /// `:ro` or `read_only: true`.
    pub read_only: bool,
}

/// A `depends_on` condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    /// `service_started` (also the short list form).
    Started,
    /// `service_healthy`.
    Healthy,
    /// `service_completed_successfully`.
    Completed,
}

impl Condition {
    /// The condition as Compose spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Condition::Started => "service_started",
            Condition::Healthy => "service_healthy",
            Condition::Completed => "service_completed_successfully",
        }
    }
}

/// One service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// Its name.
    pub name: String,
    /// `image:`, if given.
    pub image: Option<String>,
    /// `user:`, if given.
    pub user: Option<String>,
    /// `entrypoint:` words (a string form is split on whitespace).
    pub entrypoint: Vec<String>,
    /// `command:` words.
    pub command: Vec<String>,
    /// Whether it has a `healthcheck:` that is not disabled.
    pub healthcheck: bool,
    /// The healthcheck's `test:` words.
    pub health_test: Vec<String>,
    /// `environment:` values.
    pub environment: Vec<String>,
    /// Its mounts.
    pub mounts: Vec<Mount>,
    /// `depends_on:` with conditions.
    pub depends_on: Vec<(String, Condition)>,
}

/// The parsed file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compose {
    /// The services, in the file's order.
    pub services: Vec<Service>,
}

/// `a/./b/../c` → `a/c`, on text.
pub fn normalise(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for p in path.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    format!("/{}", parts.join("/"))
}

/// `base` joined with `rel` (when relative), normalised.
fn absolute(base: &str, rel: &str) -> String {
    if rel.starts_with('/') {
        normalise(rel)
    } else {
        normalise(&format!("{base}/{rel}"))
    }
}

/// Words of a string or a list of strings (numbers kept as text).
fn words(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::String(s)) => s.split_whitespace().map(str::to_owned).collect(),
        Some(Value::Sequence(items)) => items.iter().filter_map(scalar).collect(),
        _ => Vec::new(),
    }
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn bind_or_volume(source: &str, base: &str) -> Source {
    if source.starts_with('.') || source.starts_with('/') || source.starts_with('~') {
        Source::Bind(absolute(base, source))
    } else {
        Source::Volume(source.to_owned())
    }
}

/// One entry of `volumes:` (short or long syntax).
fn mount(v: &Value, base: &str) -> Option<Mount> {
    if let Value::String(s) = v {
        let parts: Vec<&str> = s.split(':').collect();
        return match parts.as_slice() {
            [target] => Some(Mount {
                source: Source::Private,
                target: normalise(target),
                read_only: false,
            }),
            [src, target, rest @ ..] => Some(Mount {
                source: bind_or_volume(src, base),
                target: normalise(target),
                read_only: rest
                    .first()
                    .is_some_and(|o| o.split(',').any(|x| x == "ro")),
            }),
            [] => None,
        };
    }
    let map = v.as_mapping()?;
    let get = |k: &str| map.get(Value::String(k.to_owned()));
    let target = normalise(get("target").and_then(Value::as_str)?);
    let kind = get("type").and_then(Value::as_str).unwrap_or("volume");
    let src = get("source").and_then(Value::as_str);
    let source = match (kind, src) {
        ("bind", Some(s)) => Source::Bind(absolute(base, s)),
        ("volume", Some(s)) => Source::Volume(s.to_owned()),
        _ => Source::Private,
    };
    let read_only = get("read_only").and_then(Value::as_bool).unwrap_or(false);
    Some(Mount {
        source,
        target,
        read_only,
    })
}

fn depends_on(v: Option<&Value>) -> Vec<(String, Condition)> {
    match v {
        Some(Value::Sequence(items)) => items
            .iter()
            .filter_map(scalar)
            .map(|n| (n, Condition::Started))
            .collect(),
        Some(Value::Mapping(m)) => m
            .iter()
            .filter_map(|(k, v)| {
                let name = scalar(k)?;
                let cond = match v.get("condition").and_then(Value::as_str) {
                    Some("service_healthy") => Condition::Healthy,
                    Some("service_completed_successfully") => Condition::Completed,
                    _ => Condition::Started,
                };
                Some((name, cond))
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn environment(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::Sequence(items)) => items.iter().filter_map(scalar).collect(),
        Some(Value::Mapping(m)) => m.values().filter_map(scalar).collect(),
        _ => Vec::new(),
    }
}

fn service(name: String, v: &Value, base: &str) -> Service {
    let get = |k: &str| v.get(k);
    let health = get("healthcheck");
    let health_disabled = health
        .and_then(|h| h.get("disable"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let health_test = words(health.and_then(|h| h.get("test")));
    Service {
        name,
        image: get("image").and_then(scalar),
        user: get("user").and_then(scalar),
        entrypoint: words(get("entrypoint")),
        command: words(get("command")),
        healthcheck: health.is_some()
            && !health_disabled
            && health_test.first().map(String::as_str) != Some("NONE"),
        health_test,
        environment: environment(get("environment")),
        mounts: get("volumes")
            .and_then(Value::as_sequence)
            .map(|items| items.iter().filter_map(|m| mount(m, base)).collect())
            .unwrap_or_default(),
        depends_on: depends_on(get("depends_on")),
    }
}

impl Compose {
    /// Parses a Compose file whose directory is `base` (absolute), which bind sources are relative to.
    pub fn parse(yaml: &str, base: &str) -> Result<Compose, String> {
        let mut doc: Value = serde_yaml_ng::from_str(yaml).map_err(|e| e.to_string())?;
        doc.apply_merge().map_err(|e| e.to_string())?;
        let services = doc
            .get("services")
            .and_then(Value::as_mapping)
            .ok_or("it has no `services:` section")?;
        let services = services
            .iter()
            .filter_map(|(k, v)| Some(service(scalar(k)?, v, base)))
            .collect();
        Ok(Compose { services })
    }

    /// The service called `name`.
    pub fn service(&self, name: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.name == name)
    }

    /// The host paths bind-mounted into some service (the caller reads those that are files: the
    /// configuration the services read).
    pub fn bind_sources(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .services
            .iter()
            .flat_map(|s| &s.mounts)
            .filter_map(|m| match &m.source {
                Source::Bind(p) => Some(p.clone()),
                _ => None,
            })
            .collect();
        v.sort();
        v.dedup();
        v
    }
}

impl Service {
    /// Entrypoint then command words.
    pub fn argv(&self) -> impl Iterator<Item = &str> {
        self.entrypoint
            .iter()
            .chain(&self.command)
            .flat_map(|w| w.split_whitespace())
    }

    /// The mount that holds container path `path` (the longest target that is a prefix of it), and
    /// the rest of the path below the target.
    pub fn mount_of(&self, path: &str) -> Option<(&Mount, String)> {
        self.mounts
            .iter()
            .filter_map(|m| {
                let rest = if path == m.target {
                    Some("")
                } else if m.target == "/" {
                    Some(path)
                } else {
                    path.strip_prefix(m.target.as_str())
                        .filter(|r| r.starts_with('/'))
                };
                rest.map(|r| (m, r.to_owned()))
            })
            .max_by_key(|(m, _)| m.target.len())
    }

    /// The host path behind container path `path`, when a bind mount provides it.
    pub fn host_path(&self, path: &str) -> Option<String> {
        match self.mount_of(path)? {
            (
                Mount {
                    source: Source::Bind(host),
                    ..
                },
                rest,
            ) => Some(normalise(&format!("{host}{rest}"))),
            _ => None,
        }
    }

    /// Whether this runs Castellan's agent (`castellan agent …`), and then its `--config` path and
    /// whether it runs `--once`.
    pub fn castellan_agent(&self) -> Option<(Option<String>, bool)> {
        let argv: Vec<&str> = self.argv().map(|w| w.trim_matches(['"', '\''])).collect();
        let castellan = self
            .image
            .as_deref()
            .is_some_and(|i| i.contains("castellan"))
            || argv.iter().any(|w| w.ends_with("castellan"));
        let at = argv.iter().position(|w| *w == "agent")?;
        if !castellan || argv[..at].iter().any(|w| w.starts_with('-')) {
            return None;
        }
        let rest = &argv[at..];
        let config = rest.iter().enumerate().find_map(|(i, w)| {
            if *w == "--config" {
                rest.get(i + 1).map(|s| (*s).to_owned())
            } else {
                w.strip_prefix("--config=").map(str::to_owned)
            }
        });
        Some((config, rest.contains(&"--once")))
    }
}
