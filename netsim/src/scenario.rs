//! \[P\] Scenario files: a cluster, a client workload, a timeline of faults and the
//! expectations the run must meet, in TOML.
//!
//! Parsing is strict, as for the node's config: unknown keys are refused, and every error
//! names the file, line and column (`file:line:col: reason`). [`Scenario::from_str`] is pure;
//! [`Scenario::load`] only reads the file. The commented example is
//! `netsim/scenarios/split-brain.toml`; README.md ("Writing a scenario") lists every key.
//!
//! POPs are referred to by name in the file and by index (into [`Cluster::pops`]) once
//! validated, so a typed [`Scenario`] cannot name a POP that does not exist.

#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::pops::{Placement, PopRequest, SITES, check_name};
use crate::topology::{MAX_ASES, MIN_ASES, Region};

/// A validated scenario.
#[derive(Clone, Debug, PartialEq)]
pub struct Scenario {
    /// Short name (letters, digits, `-`).
    pub name: String,
    /// What it shows, for people.
    pub description: String,
    /// How long the run lasts.
    pub duration: Duration,
    /// The run's seed, unless the command line or `SPARROW_SEED` gives one.
    pub seed: Option<u64>,
    /// The simulated Internet.
    pub topology: TopologyChoice,
    /// The Sparrow cluster.
    pub cluster: Cluster,
    /// The clients.
    pub workload: Workload,
    /// The timeline, sorted by time (events at the same time keep their file order).
    pub events: Vec<Event>,
    /// What the run must show.
    pub expect: Expect,
}

/// The topology to generate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TopologyChoice {
    /// Number of ASes.
    pub ases: usize,
    /// A seed of the topology's own, so that runs with different seeds share one Internet.
    pub seed: Option<u64>,
}

/// The cluster: one node per POP.
#[derive(Clone, Debug, PartialEq)]
pub struct Cluster {
    /// The POPs, in file order.
    pub pops: Vec<ScenarioPop>,
    /// Overrides of every node's generated config (merged key by key).
    pub config: toml::Table,
    /// The geo names every node serves: `www` (each POP's own addresses) first, then the
    /// services the file declares, in file order. Events and expectations refer to them by
    /// index.
    pub services: Vec<Service>,
}

/// A geo name of the cluster's zone and what it answers at each POP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    /// The name relative to the zone (`www`, `api`).
    pub name: String,
    /// Its targets.
    pub targets: Targets,
}

/// What a service answers at each POP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Targets {
    /// The POP's own addresses (no `[[geo.target]]`: `www`).
    PopAddresses,
    /// An address of its own at each POP (`[[geo.target]] addresses`), generated.
    Addresses,
    /// A CNAME per POP (`[[geo.target]] cname`): `POP.NAME.example.com.`.
    Cname,
}

/// The name of the geo name every scenario serves.
pub const WWW: &str = "www";

/// One POP of the cluster.
#[derive(Clone, Debug, PartialEq)]
pub struct ScenarioPop {
    /// Its name and where it is placed.
    pub request: PopRequest,
    /// Overrides of this node's generated config, applied after the cluster-wide ones.
    pub config: toml::Table,
}

/// The client workload.
#[derive(Clone, Debug, PartialEq)]
pub struct Workload {
    /// Queries per second, all clients together.
    pub qps: f64,
    /// Client prefixes drawn from the topology.
    pub clients: usize,
    /// How they are drawn.
    pub choose: Choose,
    /// Only from ASes of these regions (empty: all).
    pub regions: Vec<Region>,
    /// Recursive resolvers the clients query through, each in an AS of its own.
    pub resolvers: usize,
    /// Share of the resolvers that forward the client's subnet (ECS), 0.0 to 1.0; the others
    /// make the node decide by the resolver's own address.
    pub ecs: f64,
}

/// How client prefixes are drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Choose {
    /// Every prefix equally likely.
    Uniform,
    /// In proportion to address space (a /16 is 256 times as likely as a /24).
    BySize,
}

/// One event of the timeline.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// When, from the start of the run.
    pub at: Duration,
    /// A name that expectations refer to.
    pub label: Option<String>,
    /// What happens.
    pub action: Action,
    /// Line of the event in the file, for reports.
    pub line: usize,
}

/// Which links between nodes an event touches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Links {
    /// Every link.
    All,
    /// These pairs of POPs (both directions).
    Pairs(Vec<(usize, usize)>),
}

impl Links {
    /// Whether the link between `a` and `b` is one of them.
    pub fn contains(&self, a: usize, b: usize) -> bool {
        match self {
            Self::All => a != b,
            Self::Pairs(p) => p.iter().any(|&(x, y)| (x, y) == (a, b) || (x, y) == (b, a)),
        }
    }
}

/// What an event does. POPs are indices into [`Cluster::pops`].
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Nodes in different sets cannot reach each other; every POP is in exactly one set.
    Partition {
        /// The sets.
        sets: Vec<Vec<usize>>,
    },
    /// One-way cut: packets from `from` to `to` are lost, the other direction still works.
    Cut {
        /// Senders whose packets are lost.
        from: Vec<usize>,
        /// Receivers that no longer hear them.
        to: Vec<usize>,
    },
    /// Links go down (both directions) until a `link-up` or `heal`.
    LinkDown {
        /// Which.
        links: Links,
    },
    /// Links that went down come back.
    LinkUp {
        /// Which.
        links: Links,
    },
    /// A link goes down for `down`, up for `up`, `cycles` times, starting at the event.
    Flap {
        /// Which.
        links: Links,
        /// Time down in each cycle.
        down: Duration,
        /// Time up in each cycle.
        up: Duration,
        /// Number of cycles.
        cycles: u32,
    },
    /// Packet loss on links, in percent.
    Loss {
        /// Which.
        links: Links,
        /// 0 (none) to 100 (all).
        percent: f64,
    },
    /// Extra one-way delay on links.
    Latency {
        /// Which.
        links: Links,
        /// Added delay.
        delay: Duration,
        /// Random variation of the delay (uniform, plus or minus).
        jitter: Duration,
    },
    /// The nodes stop at once (no goodbye to their peers).
    Crash {
        /// Which.
        pops: Vec<usize>,
    },
    /// Crashed nodes start again with the same config.
    Restart {
        /// Which.
        pops: Vec<usize>,
    },
    /// The POPs' health probes start failing.
    ProbeFail {
        /// Which.
        pops: Vec<usize>,
    },
    /// The POPs' health probes pass again.
    ProbeRecover {
        /// Which.
        pops: Vec<usize>,
    },
    /// The POPs' load probes read `load` from now on.
    Load {
        /// Which.
        pops: Vec<usize>,
        /// 0.0 (idle) to 1.0 (full).
        load: f64,
    },
    /// An operator drains the POPs (through the node of the first POP that is up).
    Drain {
        /// Which.
        pops: Vec<usize>,
    },
    /// An operator undrains them.
    Undrain {
        /// Which.
        pops: Vec<usize>,
    },
    /// One service's probe starts failing at the POPs (the node's probe attached to that
    /// service, as `[[node.probe]] service = "api"`): the POPs are withdrawn from that
    /// service only.
    ServiceDown {
        /// Which POPs.
        pops: Vec<usize>,
        /// Which service (index into [`Cluster::services`]).
        service: usize,
    },
    /// The service's probe passes again at the POPs.
    ServiceUp {
        /// Which POPs.
        pops: Vec<usize>,
        /// Which service (index into [`Cluster::services`]).
        service: usize,
    },
    /// Every network fault ends: partitions, cuts, links down, loss and latency.
    Heal,
}

impl Action {
    /// The kind as written in the file.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Partition { .. } => "partition",
            Self::Cut { .. } => "cut",
            Self::LinkDown { .. } => "link-down",
            Self::LinkUp { .. } => "link-up",
            Self::Flap { .. } => "flap",
            Self::Loss { .. } => "loss",
            Self::Latency { .. } => "latency",
            Self::Crash { .. } => "crash",
            Self::Restart { .. } => "restart",
            Self::ProbeFail { .. } => "probe-fail",
            Self::ProbeRecover { .. } => "probe-recover",
            Self::Load { .. } => "load",
            Self::Drain { .. } => "drain",
            Self::Undrain { .. } => "undrain",
            Self::ServiceDown { .. } => "service-down",
            Self::ServiceUp { .. } => "service-up",
            Self::Heal => "heal",
        }
    }
}

/// What the run must show. Each holds for the whole run unless it says otherwise.
#[derive(Clone, Debug, PartialEq)]
pub struct Expect {
    /// No SERVFAIL for a geo name.
    pub no_servfail: bool,
    /// No query to a node that is up and reachable from the client goes unanswered.
    pub no_timeout: bool,
    /// No node hands out a POP it has known to be dead (crashed, or unreachable from it)
    /// for longer than this.
    pub detection_bound: Option<Duration>,
    /// Within this time after the last event, every answer equals the answer of a run
    /// without faults.
    pub settle: Option<Duration>,
    /// When nodes are in local-only mode.
    pub local_only: Vec<LocalOnly>,
    /// How soon restarted nodes are back in cluster answers.
    pub rejoin: Vec<Rejoin>,
    /// Services (indices into [`Cluster::services`]) whose every answer, for the whole run,
    /// equals its no-fault answer: not one differs.
    pub unchanged: Vec<usize>,
    /// How a service fails over when it goes down at a POP, and back.
    pub failover: Vec<Failover>,
}

/// An expectation on a service failing at a POP: from `within` after event `after` (a
/// `service-down`) until event `until` (its `service-up`, or the end), each answer for the
/// service is the oracle's ([`crate::truth::expected`]): the no-fault answer where that POP
/// is still among the nearest usable ones, else one of the nearest usable POPs (the clients
/// of the failed POP move to their next POP, nobody else moves); from `within` after
/// `until`, every answer is the no-fault answer again. Within `within` of either event an
/// answer may be the one before or the one after, nothing else.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failover {
    /// Which service (index into [`Cluster::services`]).
    pub service: usize,
    /// Index into [`Scenario::events`]: the `service-down`.
    pub after: usize,
    /// Index into [`Scenario::events`]: the `service-up`, if any.
    pub until: Option<usize>,
    /// Allowed delay.
    pub within: Duration,
}

/// An expectation on a restart: within `within` of event `after` (a `restart`), each of
/// `pops` answers from the whole cluster (not local-only) and sees every POP usable, and
/// every other node sees its POP usable again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejoin {
    /// Which.
    pub pops: Vec<usize>,
    /// Index into [`Scenario::events`].
    pub after: usize,
    /// Allowed delay.
    pub within: Duration,
}

/// An expectation on local-only mode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LocalOnly {
    /// These POPs' nodes never enter it.
    Never {
        /// Which.
        pops: Vec<usize>,
    },
    /// These POPs' nodes enter it within `within` after event `after` and leave it within
    /// `within` after event `until` (if given; else they stay until the end).
    During {
        /// Which.
        pops: Vec<usize>,
        /// Index into [`Scenario::events`].
        after: usize,
        /// Index into [`Scenario::events`].
        until: Option<usize>,
        /// Allowed delay.
        within: Duration,
    },
}

/// A refused scenario: `file:line:col: reason`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ScenarioError {
    /// The file.
    pub file: PathBuf,
    /// Line and column (1-based), when the error has a place.
    pub position: Option<(usize, usize)>,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some((line, col)) => write!(f, "{}:{line}:{col}: {}", self.file.display(), self.reason),
            None => write!(f, "{}: {}", self.file.display(), self.reason),
        }
    }
}

impl Scenario {
    /// Reads and validates the scenario file at `path`.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| ScenarioError {
            file: path.to_owned(),
            position: None,
            reason: format!("cannot read: {e}"),
        })?;
        Self::from_str(&text, path)
    }

    /// Parses and validates scenario `text`; `origin` names it in errors.
    pub fn from_str(text: &str, origin: &Path) -> Result<Self> {
        let cx = Cx { text, origin };
        let raw: RawScenario = toml::from_str(text).map_err(|e| ScenarioError {
            file: origin.to_owned(),
            position: e.span().map(|s| cx.position(s.start)),
            reason: e.message().trim_end().to_owned(),
        })?;
        cx.scenario(raw)
    }

    /// The index of the POP named `name`.
    pub fn pop_index(&self, name: &str) -> Option<usize> {
        self.cluster
            .pops
            .iter()
            .position(|p| p.request.name == name)
    }

    /// The timeline with every `flap` replaced by its `link-down` and `link-up` events,
    /// sorted by time (stable).
    pub fn expanded_events(&self) -> Vec<Event> {
        let mut out = Vec::with_capacity(self.events.len());
        for e in &self.events {
            match &e.action {
                Action::Flap {
                    links,
                    down,
                    up,
                    cycles,
                } => {
                    let mut t = e.at;
                    for _ in 0..*cycles {
                        out.push(Event {
                            action: Action::LinkDown {
                                links: links.clone(),
                            },
                            at: t,
                            ..e.clone()
                        });
                        t += *down;
                        out.push(Event {
                            action: Action::LinkUp {
                                links: links.clone(),
                            },
                            at: t,
                            ..e.clone()
                        });
                        t += *up;
                    }
                }
                _ => out.push(e.clone()),
            }
        }
        out.sort_by_key(|e| e.at);
        out
    }
}

// ---------------------------------------------------------------------------------------
// The serde mirror of the file.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    name: Spanned<String>,
    #[serde(default)]
    description: Option<String>,
    duration: Spanned<String>,
    #[serde(default)]
    seed: Option<u64>,
    topology: RawTopology,
    cluster: Spanned<RawCluster>,
    workload: RawWorkload,
    #[serde(default, rename = "event")]
    events: Vec<Spanned<RawEvent>>,
    #[serde(default)]
    expect: Option<RawExpect>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTopology {
    ases: Spanned<usize>,
    #[serde(default)]
    seed: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCluster {
    #[serde(default, rename = "pop")]
    pops: Vec<Spanned<RawPop>>,
    #[serde(default)]
    config: Option<toml::Table>,
    #[serde(default, rename = "service")]
    services: Vec<Spanned<RawService>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawService {
    name: Spanned<String>,
    targets: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPop {
    name: Spanned<String>,
    #[serde(default)]
    region: Option<Spanned<String>>,
    #[serde(default)]
    asn: Option<Spanned<u32>>,
    #[serde(default)]
    config: Option<toml::Table>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWorkload {
    qps: Spanned<f64>,
    clients: Spanned<usize>,
    #[serde(default)]
    choose: Option<Spanned<String>>,
    #[serde(default)]
    regions: Vec<Spanned<String>>,
    #[serde(default)]
    resolvers: Option<Spanned<usize>>,
    #[serde(default)]
    ecs: Option<Spanned<f64>>,
}

type Names = Spanned<Vec<Spanned<String>>>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEvent {
    at: Spanned<String>,
    kind: Spanned<String>,
    #[serde(default)]
    label: Option<Spanned<String>>,
    #[serde(default)]
    sets: Option<Spanned<Vec<Names>>>,
    #[serde(default)]
    from: Option<Names>,
    #[serde(default)]
    to: Option<Names>,
    #[serde(default)]
    pops: Option<Names>,
    #[serde(default)]
    links: Option<Spanned<Vec<Names>>>,
    #[serde(default)]
    percent: Option<Spanned<f64>>,
    #[serde(default)]
    delay: Option<Spanned<String>>,
    #[serde(default)]
    jitter: Option<Spanned<String>>,
    #[serde(default)]
    load: Option<Spanned<f64>>,
    #[serde(default)]
    down: Option<Spanned<String>>,
    #[serde(default)]
    up: Option<Spanned<String>>,
    #[serde(default)]
    cycles: Option<Spanned<u32>>,
    #[serde(default)]
    service: Option<Spanned<String>>,
}

impl RawEvent {
    /// The optional fields that are present, with their spans.
    fn present(&self) -> Vec<(&'static str, Range<usize>)> {
        let mut out = Vec::new();
        let mut add = |name, span: Option<Range<usize>>| {
            if let Some(s) = span {
                out.push((name, s));
            }
        };
        add("sets", self.sets.as_ref().map(Spanned::span));
        add("from", self.from.as_ref().map(Spanned::span));
        add("to", self.to.as_ref().map(Spanned::span));
        add("pops", self.pops.as_ref().map(Spanned::span));
        add("links", self.links.as_ref().map(Spanned::span));
        add("percent", self.percent.as_ref().map(Spanned::span));
        add("delay", self.delay.as_ref().map(Spanned::span));
        add("jitter", self.jitter.as_ref().map(Spanned::span));
        add("load", self.load.as_ref().map(Spanned::span));
        add("down", self.down.as_ref().map(Spanned::span));
        add("up", self.up.as_ref().map(Spanned::span));
        add("cycles", self.cycles.as_ref().map(Spanned::span));
        add("service", self.service.as_ref().map(Spanned::span));
        out
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExpect {
    #[serde(default)]
    no_servfail: Option<bool>,
    #[serde(default)]
    no_timeout: Option<bool>,
    #[serde(default)]
    detection_bound: Option<Spanned<String>>,
    #[serde(default)]
    settle: Option<Spanned<String>>,
    #[serde(default)]
    local_only: Vec<Spanned<RawLocalOnly>>,
    #[serde(default)]
    rejoin: Vec<Spanned<RawRejoin>>,
    #[serde(default)]
    unchanged: Option<Names>,
    #[serde(default)]
    failover: Vec<Spanned<RawFailover>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFailover {
    service: Spanned<String>,
    after: Spanned<String>,
    #[serde(default)]
    until: Option<Spanned<String>>,
    within: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRejoin {
    pops: Names,
    after: Spanned<String>,
    within: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLocalOnly {
    pops: Names,
    #[serde(default)]
    never: Option<Spanned<bool>>,
    #[serde(default)]
    after: Option<Spanned<String>>,
    #[serde(default)]
    until: Option<Spanned<String>>,
    #[serde(default)]
    within: Option<Spanned<String>>,
}

// ---------------------------------------------------------------------------------------
// Validation.

/// Event kinds and the optional fields each takes (`at`, `kind` and `label` go with all).
const KINDS: &[(&str, &[&str])] = &[
    ("partition", &["sets"]),
    ("cut", &["from", "to"]),
    ("link-down", &["links"]),
    ("link-up", &["links"]),
    ("flap", &["links", "down", "up", "cycles"]),
    ("loss", &["links", "percent"]),
    ("latency", &["links", "delay", "jitter"]),
    ("crash", &["pops"]),
    ("restart", &["pops"]),
    ("probe-fail", &["pops"]),
    ("probe-recover", &["pops"]),
    ("load", &["pops", "load"]),
    ("drain", &["pops"]),
    ("undrain", &["pops"]),
    ("service-down", &["pops", "service"]),
    ("service-up", &["pops", "service"]),
    ("heal", &[]),
];

/// Default share of resolvers that forward ECS: most large public resolvers do.
pub const DEFAULT_ECS: f64 = 0.8;
/// Default number of resolvers.
pub const DEFAULT_RESOLVERS: usize = 10;

struct Cx<'a> {
    text: &'a str,
    origin: &'a Path,
}

type Result<T> = std::result::Result<T, ScenarioError>;

impl Cx<'_> {
    fn position(&self, offset: usize) -> (usize, usize) {
        sparrow_node::config::line_col(self.text, offset)
    }

    fn error(&self, span: Option<Range<usize>>, reason: impl Into<String>) -> ScenarioError {
        ScenarioError {
            file: self.origin.to_owned(),
            position: span.map(|s| self.position(s.start)),
            reason: reason.into(),
        }
    }

    fn at<T>(&self, s: &Spanned<T>, reason: impl Into<String>) -> ScenarioError {
        self.error(Some(s.span()), reason)
    }

    fn duration(&self, s: &Spanned<String>) -> Result<Duration> {
        humantime::parse_duration(s.get_ref()).map_err(|e| {
            self.at(
                s,
                format!(
                    "`{}` is not a duration ({e}); write e.g. \"30s\", \"500ms\" or \"2m\"",
                    s.get_ref()
                ),
            )
        })
    }

    fn scenario(&self, raw: RawScenario) -> Result<Scenario> {
        let name = raw.name.get_ref();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(self.at(
                &raw.name,
                format!("scenario name `{name}` must be letters, digits, `-` or `_`"),
            ));
        }
        let duration = self.duration(&raw.duration)?;
        if duration.is_zero() {
            return Err(self.at(&raw.duration, "duration must be positive"));
        }
        let ases = *raw.topology.ases.get_ref();
        if !(MIN_ASES..=MAX_ASES).contains(&ases) {
            return Err(self.at(
                &raw.topology.ases,
                format!("a topology has from {MIN_ASES} to {MAX_ASES} ASes"),
            ));
        }
        let cluster = self.cluster(&raw.cluster)?;
        let names: Vec<&str> = cluster
            .pops
            .iter()
            .map(|p| p.request.name.as_str())
            .collect();
        let workload = self.workload(&raw.workload)?;
        let services: Vec<&str> = cluster.services.iter().map(|s| s.name.as_str()).collect();
        let mut events = raw
            .events
            .iter()
            .map(|e| self.event(e, &names, &services, duration))
            .collect::<Result<Vec<_>>>()?;
        // Labels are unique, so that expectations name one event.
        for (i, e) in raw.events.iter().enumerate() {
            if let Some(l) = &e.get_ref().label {
                let earlier = raw.events[..i]
                    .iter()
                    .filter_map(|o| o.get_ref().label.as_ref())
                    .find(|o| o.get_ref() == l.get_ref());
                if let Some(first) = earlier {
                    let (line, _) = self.position(first.span().start);
                    return Err(self.at(
                        l,
                        format!("label `{}` is already used on line {line}", l.get_ref()),
                    ));
                }
            }
        }
        events.sort_by_key(|e| e.at);
        let expect = self.expect(raw.expect.unwrap_or_default(), &names, &services, &events)?;
        Ok(Scenario {
            name: name.clone(),
            description: raw.description.unwrap_or_default(),
            duration,
            seed: raw.seed,
            topology: TopologyChoice {
                ases,
                seed: raw.topology.seed,
            },
            cluster,
            workload,
            events,
            expect,
        })
    }

    fn cluster(&self, raw: &Spanned<RawCluster>) -> Result<Cluster> {
        let c = raw.get_ref();
        if c.pops.is_empty() {
            return Err(self.at(raw, "the cluster has no POP (add [[cluster.pop]] tables)"));
        }
        let mut pops = Vec::with_capacity(c.pops.len());
        for (i, p) in c.pops.iter().enumerate() {
            let p = p.get_ref();
            let name = p.name.get_ref();
            check_name(name).map_err(|r| self.at(&p.name, r))?;
            if let Some(first) = c.pops[..i]
                .iter()
                .find(|o| o.get_ref().name.get_ref() == name)
            {
                let (line, _) = self.position(first.get_ref().name.span().start);
                return Err(self.at(
                    &p.name,
                    format!("POP name `{name}` is already used on line {line}"),
                ));
            }
            let place = match (&p.region, &p.asn) {
                (Some(_), Some(asn)) => {
                    return Err(self.at(asn, "give `region` or `asn`, not both"));
                }
                (Some(r), None) => {
                    Placement::Region(Region::from_slug(r.get_ref()).ok_or_else(|| {
                        let all: Vec<&str> = Region::ALL.iter().map(|r| r.slug()).collect();
                        self.at(
                            r,
                            format!(
                                "unknown region `{}`; regions: {}",
                                r.get_ref(),
                                all.join(", ")
                            ),
                        )
                    })?)
                }
                (None, Some(asn)) => Placement::Asn(*asn.get_ref()),
                (None, None) => match SITES.iter().find(|&&(s, _)| s == name) {
                    Some(&(_, r)) => Placement::Region(r),
                    None => {
                        return Err(self.at(
                            &p.name,
                            format!(
                                "POP `{name}` needs `region` or `asn` (it is not a known site)"
                            ),
                        ));
                    }
                },
            };
            pops.push(ScenarioPop {
                request: PopRequest {
                    name: name.clone(),
                    place,
                },
                config: p.config.clone().unwrap_or_default(),
            });
        }
        Ok(Cluster {
            pops,
            config: c.config.clone().unwrap_or_default(),
            services: self.services(&c.services)?,
        })
    }

    /// `www`, then the declared services; names are single labels, each used once.
    fn services(&self, raw: &[Spanned<RawService>]) -> Result<Vec<Service>> {
        let mut out = vec![Service {
            name: WWW.to_owned(),
            targets: Targets::PopAddresses,
        }];
        for r in raw {
            let r = r.get_ref();
            let name = r.name.get_ref();
            let label = !name.is_empty()
                && name.len() <= 63
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !name.starts_with('-')
                && !name.ends_with('-');
            if !label {
                return Err(self.at(
                    &r.name,
                    format!("service name `{name}` must be one DNS label (letters, digits, `-`)"),
                ));
            }
            if out.iter().any(|s| s.name.eq_ignore_ascii_case(name)) {
                return Err(self.at(&r.name, format!("service `{name}` is declared twice")));
            }
            let targets = match r.targets.get_ref().as_str() {
                "addresses" => Targets::Addresses,
                "cname" => Targets::Cname,
                other => {
                    return Err(self.at(
                        &r.targets,
                        format!("targets must be \"addresses\" or \"cname\", not \"{other}\""),
                    ));
                }
            };
            out.push(Service {
                name: name.to_ascii_lowercase(),
                targets,
            });
        }
        Ok(out)
    }

    /// A service name -> its index.
    fn service(&self, raw: &Spanned<String>, services: &[&str]) -> Result<usize> {
        services
            .iter()
            .position(|s| s.eq_ignore_ascii_case(raw.get_ref()))
            .ok_or_else(|| {
                self.at(
                    raw,
                    format!(
                        "no service is named `{}`; services: {}",
                        raw.get_ref(),
                        services.join(", ")
                    ),
                )
            })
    }

    fn workload(&self, raw: &RawWorkload) -> Result<Workload> {
        let qps = *raw.qps.get_ref();
        if !(qps > 0.0 && qps.is_finite()) {
            return Err(self.at(&raw.qps, "qps must be a positive number"));
        }
        if *raw.clients.get_ref() == 0 {
            return Err(self.at(&raw.clients, "clients must be at least 1"));
        }
        let choose = match raw.choose.as_ref().map(|c| (c, c.get_ref().as_str())) {
            None | Some((_, "uniform")) => Choose::Uniform,
            Some((_, "by-size")) => Choose::BySize,
            Some((c, other)) => {
                return Err(self.at(
                    c,
                    format!("choose must be \"uniform\" or \"by-size\", not \"{other}\""),
                ));
            }
        };
        let regions = raw
            .regions
            .iter()
            .map(|r| {
                Region::from_slug(r.get_ref())
                    .ok_or_else(|| self.at(r, format!("unknown region `{}`", r.get_ref())))
            })
            .collect::<Result<Vec<_>>>()?;
        let resolvers = match &raw.resolvers {
            None => DEFAULT_RESOLVERS,
            Some(r) if *r.get_ref() == 0 => {
                return Err(self.at(r, "resolvers must be at least 1"));
            }
            Some(r) => *r.get_ref(),
        };
        let ecs = match &raw.ecs {
            None => DEFAULT_ECS,
            Some(e) if !(0.0..=1.0).contains(e.get_ref()) => {
                return Err(self.at(e, "ecs is a share of resolvers, from 0.0 to 1.0"));
            }
            Some(e) => *e.get_ref(),
        };
        Ok(Workload {
            qps,
            clients: *raw.clients.get_ref(),
            choose,
            regions,
            resolvers,
            ecs,
        })
    }

    /// POP names -> indices, refusing unknown and repeated names and an empty list.
    fn pops(&self, list: &Names, names: &[&str]) -> Result<Vec<usize>> {
        if list.get_ref().is_empty() {
            return Err(self.at(list, "the list of POPs is empty"));
        }
        let mut out = Vec::new();
        for n in list.get_ref() {
            let i = names
                .iter()
                .position(|x| x == n.get_ref())
                .ok_or_else(|| self.at(n, format!("no POP is named `{}`", n.get_ref())))?;
            if out.contains(&i) {
                return Err(self.at(n, format!("POP `{}` is listed twice", n.get_ref())));
            }
            out.push(i);
        }
        Ok(out)
    }

    fn links(&self, raw: Option<&Spanned<Vec<Names>>>, names: &[&str]) -> Result<Links> {
        let Some(raw) = raw else {
            return Ok(Links::All);
        };
        if raw.get_ref().is_empty() {
            return Err(self.at(raw, "links is empty (leave it out for every link)"));
        }
        let mut pairs = Vec::new();
        for pair in raw.get_ref() {
            let p = self.pops(pair, names)?;
            let [a, b] = p[..] else {
                return Err(self.at(pair, "a link is a pair of POPs, e.g. [\"fra\", \"nyc\"]"));
            };
            pairs.push((a, b));
        }
        Ok(Links::Pairs(pairs))
    }

    fn event(
        &self,
        raw: &Spanned<RawEvent>,
        names: &[&str],
        services: &[&str],
        duration: Duration,
    ) -> Result<Event> {
        let e = raw.get_ref();
        let kind = e.kind.get_ref().as_str();
        let Some(&(_, allowed)) = KINDS.iter().find(|&&(k, _)| k == kind) else {
            let all: Vec<&str> = KINDS.iter().map(|&(k, _)| k).collect();
            return Err(self.at(
                &e.kind,
                format!("unknown event kind `{kind}`; kinds: {}", all.join(", ")),
            ));
        };
        for (field, span) in e.present() {
            if !allowed.contains(&field) {
                return Err(self.error(
                    Some(span),
                    format!("`{field}` does not apply to a `{kind}` event"),
                ));
            }
        }
        let at = self.duration(&e.at)?;
        if at > duration {
            return Err(self.at(&e.at, "the event is after the end of the scenario"));
        }
        let need = |what: &str| self.at(raw, format!("a `{kind}` event needs `{what}`"));
        let pops = || match &e.pops {
            Some(p) => self.pops(p, names),
            None => Err(need("pops")),
        };
        let action = match kind {
            "partition" => Action::Partition {
                sets: self.partition(e.sets.as_ref().ok_or_else(|| need("sets"))?, names)?,
            },
            "cut" => {
                let from = self.pops(e.from.as_ref().ok_or_else(|| need("from"))?, names)?;
                let to_raw = e.to.as_ref().ok_or_else(|| need("to"))?;
                let to = self.pops(to_raw, names)?;
                if from.iter().any(|p| to.contains(p)) {
                    return Err(self.at(to_raw, "a POP cannot be cut from itself"));
                }
                Action::Cut { from, to }
            }
            "link-down" => Action::LinkDown {
                links: self.links(e.links.as_ref(), names)?,
            },
            "link-up" => Action::LinkUp {
                links: self.links(e.links.as_ref(), names)?,
            },
            "flap" => {
                let down_raw = e.down.as_ref().ok_or_else(|| need("down"))?;
                let down = self.duration(down_raw)?;
                let up = self.duration(e.up.as_ref().ok_or_else(|| need("up"))?)?;
                let cycles_raw = e.cycles.as_ref().ok_or_else(|| need("cycles"))?;
                let cycles = *cycles_raw.get_ref();
                if cycles == 0 || down.is_zero() || up.is_zero() {
                    return Err(self.at(
                        cycles_raw,
                        "a flap needs at least one cycle and positive `down` and `up`",
                    ));
                }
                if at + (down + up) * cycles > duration {
                    return Err(self.at(raw, "the flap lasts past the end of the scenario"));
                }
                Action::Flap {
                    links: self.links(e.links.as_ref(), names)?,
                    down,
                    up,
                    cycles,
                }
            }
            "loss" => {
                let p = e.percent.as_ref().ok_or_else(|| need("percent"))?;
                if !(0.0..=100.0).contains(p.get_ref()) {
                    return Err(self.at(p, "percent is from 0 to 100"));
                }
                Action::Loss {
                    links: self.links(e.links.as_ref(), names)?,
                    percent: *p.get_ref(),
                }
            }
            "latency" => {
                let delay = self.duration(e.delay.as_ref().ok_or_else(|| need("delay"))?)?;
                let jitter = match &e.jitter {
                    Some(j) => {
                        let jitter = self.duration(j)?;
                        if jitter > delay {
                            return Err(self.at(j, "jitter cannot exceed the delay"));
                        }
                        jitter
                    }
                    None => Duration::ZERO,
                };
                Action::Latency {
                    links: self.links(e.links.as_ref(), names)?,
                    delay,
                    jitter,
                }
            }
            "crash" => Action::Crash { pops: pops()? },
            "restart" => Action::Restart { pops: pops()? },
            "probe-fail" => Action::ProbeFail { pops: pops()? },
            "probe-recover" => Action::ProbeRecover { pops: pops()? },
            "load" => {
                let l = e.load.as_ref().ok_or_else(|| need("load"))?;
                if !(0.0..=1.0).contains(l.get_ref()) {
                    return Err(self.at(l, "load is from 0.0 to 1.0"));
                }
                Action::Load {
                    pops: pops()?,
                    load: *l.get_ref(),
                }
            }
            "drain" => Action::Drain { pops: pops()? },
            "undrain" => Action::Undrain { pops: pops()? },
            "service-down" | "service-up" => {
                let service =
                    self.service(e.service.as_ref().ok_or_else(|| need("service"))?, services)?;
                let pops = pops()?;
                if kind == "service-down" {
                    Action::ServiceDown { pops, service }
                } else {
                    Action::ServiceUp { pops, service }
                }
            }
            _ => Action::Heal,
        };
        if let Some(l) = &e.label {
            check_name(l.get_ref()).map_err(|_| {
                self.at(
                    l,
                    format!(
                        "label `{}` must be letters, digits, `-` or `_`",
                        l.get_ref()
                    ),
                )
            })?;
        }
        Ok(Event {
            at,
            label: e.label.as_ref().map(|l| l.get_ref().clone()),
            action,
            line: self.position(raw.span().start).0,
        })
    }

    fn partition(&self, raw: &Spanned<Vec<Names>>, names: &[&str]) -> Result<Vec<Vec<usize>>> {
        let mut seen = HashSet::new();
        let mut sets = Vec::new();
        for set in raw.get_ref() {
            let s = self.pops(set, names)?;
            for (&i, n) in s.iter().zip(set.get_ref()) {
                if !seen.insert(i) {
                    return Err(self.at(n, format!("POP `{}` is in two sets", n.get_ref())));
                }
            }
            sets.push(s);
        }
        if sets.len() < 2 {
            return Err(self.at(raw, "a partition needs at least two sets"));
        }
        if let Some(missing) = names.iter().enumerate().find(|(i, _)| !seen.contains(i)) {
            return Err(self.at(
                raw,
                format!("POP `{}` is in no set (list every POP once)", missing.1),
            ));
        }
        Ok(sets)
    }

    fn expect(
        &self,
        raw: RawExpect,
        names: &[&str],
        services: &[&str],
        events: &[Event],
    ) -> Result<Expect> {
        let label = |l: &Spanned<String>| {
            events
                .iter()
                .position(|e| e.label.as_deref() == Some(l.get_ref()))
                .ok_or_else(|| self.at(l, format!("no event is labelled `{}`", l.get_ref())))
        };
        let mut local_only = Vec::new();
        for lo in &raw.local_only {
            let r = lo.get_ref();
            let pops = self.pops(&r.pops, names)?;
            let never = r.never.as_ref().is_some_and(|n| *n.get_ref());
            if never {
                if let Some(x) = r.after.as_ref().or(r.until.as_ref()).or(r.within.as_ref()) {
                    return Err(self.at(x, "`never = true` takes no `after`, `until` or `within`"));
                }
                local_only.push(LocalOnly::Never { pops });
                continue;
            }
            let after = label(r.after.as_ref().ok_or_else(|| {
                self.at(
                    lo,
                    "give `after` (an event label) and `within`, or `never = true`",
                )
            })?)?;
            let until = match &r.until {
                Some(u) => {
                    let i = label(u)?;
                    if events[i].at < events[after].at {
                        return Err(self.at(u, "`until` names an event before `after`"));
                    }
                    Some(i)
                }
                None => None,
            };
            let within = self.duration(
                r.within
                    .as_ref()
                    .ok_or_else(|| self.at(lo, "give `within`, the allowed delay"))?,
            )?;
            local_only.push(LocalOnly::During {
                pops,
                after,
                until,
                within,
            });
        }
        let mut rejoin = Vec::new();
        for rj in &raw.rejoin {
            let r = rj.get_ref();
            let after = label(&r.after)?;
            if !matches!(events[after].action, Action::Restart { .. }) {
                return Err(self.at(&r.after, "`rejoin` follows a `restart` event"));
            }
            rejoin.push(Rejoin {
                pops: self.pops(&r.pops, names)?,
                after,
                within: self.duration(&r.within)?,
            });
        }
        let mut unchanged = Vec::new();
        if let Some(list) = &raw.unchanged {
            for n in list.get_ref() {
                let s = self.service(n, services)?;
                if unchanged.contains(&s) {
                    return Err(self.at(n, format!("service `{}` is listed twice", n.get_ref())));
                }
                if let Some(e) = events.iter().find(
                    |e| matches!(&e.action, Action::ServiceDown { service, .. } if *service == s),
                ) {
                    return Err(self.at(
                        n,
                        format!(
                            "service `{}` goes down on line {}: its answers change",
                            n.get_ref(),
                            e.line
                        ),
                    ));
                }
                unchanged.push(s);
            }
        }
        let mut failover = Vec::new();
        for f in &raw.failover {
            let r = f.get_ref();
            let service = self.service(&r.service, services)?;
            let after = label(&r.after)?;
            let Action::ServiceDown { pops, service: s } = &events[after].action else {
                return Err(self.at(&r.after, "`failover` follows a `service-down` event"));
            };
            if *s != service {
                return Err(self.at(
                    &r.after,
                    format!("event `{}` fails another service", r.after.get_ref()),
                ));
            }
            let until = match &r.until {
                Some(u) => {
                    let i = label(u)?;
                    let back = matches!(
                        &events[i].action,
                        Action::ServiceUp { pops: p, service: s } if p == pops && *s == service
                    );
                    if !back || events[i].at < events[after].at {
                        return Err(self.at(
                            u,
                            "`until` names the `service-up` of the same service and POPs, after `after`",
                        ));
                    }
                    Some(i)
                }
                None => None,
            };
            failover.push(Failover {
                service,
                after,
                until,
                within: self.duration(&r.within)?,
            });
        }
        Ok(Expect {
            unchanged,
            failover,
            rejoin,
            no_servfail: raw.no_servfail.unwrap_or(true),
            no_timeout: raw.no_timeout.unwrap_or(true),
            detection_bound: raw
                .detection_bound
                .as_ref()
                .map(|d| self.duration(d))
                .transpose()?,
            settle: raw.settle.as_ref().map(|d| self.duration(d)).transpose()?,
            local_only,
        })
    }
}
