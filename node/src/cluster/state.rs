//! [P] From what nodes say about themselves to answers: each node's hot state as it publishes
//! it (the gossip key schema), and the one derivation that turns "who is alive and what do
//! they say" into per-POP status and the node's mode, for a clustered node and a standalone
//! one alike (a standalone node is a cluster of one that assumes its peers are up).
//!
//! # Keys (one place for the schema)
//!
//! A node publishes these about itself, and only about itself: every gossip link carries the
//! state of its two ends only (see [`super::mesh`]), so no node can write another's keys.
//!
//! | key        | value                    | meaning                                          |
//! |------------|--------------------------|--------------------------------------------------|
//! | `proto`    | `2`                      | version of this schema                           |
//! | `health`   | `up` / `down`            | the POP's probes (all up = `up`)                 |
//! | `admin`    | `active` / `drained`     | the POP's admin state (config, or an operator)   |
//! | `admin_by` | `alice@MS` (absent: config) | who set `admin`, and when (unix ms; shown only) |
//! | `load`     | `0.42` (absent: unknown) | the POP's load probe, 0.0 to 1.0                 |
//! | `view`     | `v=MS d=HEX n=COUNT [stale=MS]` (absent: none) | the POP's route view: version, digest, prefixes, stale since |
//! | `config`   | 16 hex digits            | digest of what decides answers (zone, POPs, geo names, static map) |
//! | `drained`  | POP names, space-separated | the POPs this node treats as drained now (confirms drains) |
//! | `peers`    | `NAME@ADDR ...`          | cluster addresses where this node met other nodes (hints for discovery) |
//! | `leaving`  | `yes` (absent: no)       | the node is shutting down: treat it as gone now   |
//! | `svc_down` | service names, space-separated (absent: none) | the services whose own probes are down at the POP |
//! | `svc_drained` | service names, space-separated (absent: none) | the services an operator drained at the POP |
//! | `drained_svc` | `POP/service` pairs, space-separated (absent: none) | the services at POPs this node treats as drained now (confirms service drains) |
//!
//! A drain is an operator's decision about one POP, so it is carried by that POP's own node:
//! the node of POP X is the only writer of X's `admin`, and every other node reads it from
//! X. Its order is the order of X's own writes; no wall clock is involved. The same holds
//! per service: only X's node writes which of X's services are down or drained
//! (`svc_down`, `svc_drained`); a service is named by its geo name relative to the zone
//! (`api`), and a name this node's config does not know is ignored (the `config` digest
//! shows the mismatch).
//!
//! A peer whose keys do not parse is treated as down (and logged by the edge): bad input
//! never changes answers silently.
//!
//! # Partition rule
//!
//! A node counts itself plus the peers it hears directly (their own link's failure detector
//! says alive). While that count is below the quorum (default: a majority of the configured
//! POPs, `N / 2 + 1`), the node is *partitioned* and answers local-only:
//!
//! - its own POP healthy: only its own POP is handed out (Super Sparrow's rule: a client that
//!   reaches this DNS server can probably reach this POP), with the shorter local-only TTL;
//! - its own POP unhealthy: the other POPs are ranked as usual from their last known state
//!   (health and admin as last heard; never heard of = unhealthy), and if none of them is
//!   eligible the policy fails open. A geo name is never left without an answer.
//!
//! With a quorum, every POP is answered from what its own node says: live (its link's
//! failure detector), healthy, admin and load; the own POP from local knowledge.

use crate::policy::AdminState;

/// Version of the key schema.
pub const PROTO: &str = "2";
/// Key: schema version.
pub const KEY_PROTO: &str = "proto";
/// Key: the POP's health.
pub const KEY_HEALTH: &str = "health";
/// Key: the POP's admin state.
pub const KEY_ADMIN: &str = "admin";
/// Key: who set the admin state, and when.
pub const KEY_ADMIN_BY: &str = "admin_by";
/// Key: the POP's load.
pub const KEY_LOAD: &str = "load";
/// Key: the POP's route view announcement.
pub const KEY_VIEW: &str = "view";
/// Key: digest of the answer-deciding config.
pub const KEY_CONFIG: &str = "config";
/// Key: the POPs the node treats as drained.
pub const KEY_DRAINED: &str = "drained";
/// Key: discovery hints.
pub const KEY_PEERS: &str = "peers";
/// Key: the node is shutting down.
pub const KEY_LEAVING: &str = "leaving";
/// Key: the POP's services whose probes are down.
pub const KEY_SVC_DOWN: &str = "svc_down";
/// Key: the POP's services drained by an operator.
pub const KEY_SVC_DRAINED: &str = "svc_drained";
/// Key: the services at POPs the node treats as drained.
pub const KEY_DRAINED_SVC: &str = "drained_svc";

/// Longest value accepted for a key whose size depends on the cluster (`drained`, `peers`,
/// `admin_by`, the service keys): generous for a thousand POPs, small enough that a peer cannot make a node
/// hold much.
pub const MAX_VALUE: usize = 32 * 1024;

/// What a node announces about its own POP's route view; peers pull the view itself when
/// the digest differs from the one they hold (see [`super::views`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ViewAnnouncement {
    /// Unix time (ms) the view was built: newer views have larger versions.
    pub version: u64,
    /// Stable hash of the view's transfer encoding.
    pub digest: u64,
    /// Prefixes in the view.
    pub prefixes: u64,
    /// Unix time (ms) since which the view's source has not been current, if it is not.
    pub stale_since_ms: Option<u64>,
}

impl ViewAnnouncement {
    /// The value published under [`KEY_VIEW`].
    pub fn to_value(self) -> String {
        let mut v = format!(
            "v={} d={:016x} n={}",
            self.version, self.digest, self.prefixes
        );
        if let Some(ms) = self.stale_since_ms {
            v.push_str(&format!(" stale={ms}"));
        }
        v
    }

    /// Parses a published value.
    pub fn parse(value: &str) -> Result<Self, String> {
        let bad = || format!("bad `view` value {value:?}");
        let mut fields = value.split(' ');
        let mut field = |name: &str| {
            fields
                .next()
                .and_then(|f| f.strip_prefix(name))
                .and_then(|f| f.strip_prefix('='))
        };
        let version = field("v").and_then(|v| v.parse().ok()).ok_or_else(bad)?;
        let digest = field("d")
            .and_then(|d| u64::from_str_radix(d, 16).ok())
            .ok_or_else(bad)?;
        let prefixes = field("n").and_then(|n| n.parse().ok()).ok_or_else(bad)?;
        let stale_since_ms = match fields.next() {
            None => None,
            Some(f) => Some(
                f.strip_prefix("stale=")
                    .and_then(|ms| ms.parse().ok())
                    .ok_or_else(bad)?,
            ),
        };
        if fields.next().is_some() {
            return Err(bad());
        }
        Ok(Self {
            version,
            digest,
            prefixes,
            stale_since_ms,
        })
    }
}

/// Who set a POP's admin state, and when (for status and logs; never for ordering).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminBy {
    /// The operator (`alice`, `the local API`).
    pub who: String,
    /// Unix time (ms) at the POP's node.
    pub at_ms: u64,
}

impl AdminBy {
    /// The value published under [`KEY_ADMIN_BY`].
    pub fn to_value(&self) -> String {
        format!("{}@{}", self.who, self.at_ms)
    }

    /// Parses a published value.
    pub fn parse(value: &str) -> Result<Self, String> {
        let (who, at) = value
            .rsplit_once('@')
            .ok_or_else(|| format!("bad `admin_by` value {value:?}"))?;
        let at_ms = at
            .parse()
            .map_err(|_| format!("bad `admin_by` time {at:?}"))?;
        if who.is_empty() || who.len() > 256 {
            return Err(format!("bad `admin_by` operator {who:?}"));
        }
        Ok(Self {
            who: who.to_owned(),
            at_ms,
        })
    }
}

/// What a node publishes about its own POP.
#[derive(Clone, Debug, PartialEq)]
pub struct HotState {
    /// All probes up.
    pub healthy: bool,
    /// Operator state.
    pub admin: AdminState,
    /// Who set it (absent: the config).
    pub admin_by: Option<AdminBy>,
    /// Load from 0.0 to 1.0, if measured.
    pub load: Option<f32>,
    /// The POP's route view, if it has one.
    pub view: Option<ViewAnnouncement>,
    /// Digest of the node's answer-deciding config.
    pub config: Option<u64>,
    /// The POPs the node treats as drained (names, sorted).
    pub drained: Vec<String>,
    /// Where the node met other nodes: `(name, cluster address)`.
    pub peers: Vec<(String, std::net::SocketAddr)>,
    /// The node is shutting down: peers treat it as gone at once rather than after the
    /// failure detector notices.
    pub leaving: bool,
    /// The POP's services whose probes are down (service names, sorted).
    pub services_down: Vec<String>,
    /// The POP's services an operator drained (service names, sorted).
    pub services_drained: Vec<String>,
    /// The services the node treats as drained now, at any POP (`POP/service`, by POP then
    /// service in config order): what confirms a service's drain, as `drained` a POP's.
    pub drained_services: Vec<String>,
}

impl HotState {
    /// A POP that is up, active, with nothing else known.
    pub fn up() -> Self {
        Self {
            healthy: true,
            admin: AdminState::Active,
            admin_by: None,
            load: None,
            view: None,
            config: None,
            drained: Vec::new(),
            peers: Vec::new(),
            leaving: false,
            services_down: Vec::new(),
            services_drained: Vec::new(),
            drained_services: Vec::new(),
        }
    }

    /// The key-value pairs to publish (empty values for what is unknown).
    pub fn to_keys(&self) -> Vec<(&'static str, String)> {
        vec![
            (KEY_PROTO, PROTO.to_owned()),
            (
                KEY_HEALTH,
                if self.healthy { "up" } else { "down" }.to_owned(),
            ),
            (KEY_ADMIN, self.admin.as_str().to_owned()),
            (
                KEY_ADMIN_BY,
                self.admin_by
                    .as_ref()
                    .map_or_else(String::new, AdminBy::to_value),
            ),
            (
                KEY_LOAD,
                self.load.map_or_else(String::new, |l| format!("{l:.3}")),
            ),
            (
                KEY_VIEW,
                self.view
                    .map_or_else(String::new, ViewAnnouncement::to_value),
            ),
            (
                KEY_CONFIG,
                self.config
                    .map_or_else(String::new, |d| format!("{d:016x}")),
            ),
            (KEY_DRAINED, self.drained.join(" ")),
            (
                KEY_PEERS,
                self.peers
                    .iter()
                    .map(|(n, a)| format!("{n}@{a}"))
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
            (
                KEY_LEAVING,
                if self.leaving { "yes" } else { "" }.to_owned(),
            ),
            (KEY_SVC_DOWN, self.services_down.join(" ")),
            (KEY_SVC_DRAINED, self.services_drained.join(" ")),
            (KEY_DRAINED_SVC, self.drained_services.join(" ")),
        ]
    }

    /// Reads a peer's published state through `get` (a key lookup).
    pub fn from_keys<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Result<Self, String> {
        match get(KEY_PROTO) {
            Some(PROTO) => {}
            Some(other) => return Err(format!("unknown key schema `{other}`")),
            None => return Err("no `proto` key yet".to_owned()),
        }
        for key in [
            KEY_ADMIN_BY,
            KEY_DRAINED,
            KEY_PEERS,
            KEY_SVC_DOWN,
            KEY_SVC_DRAINED,
            KEY_DRAINED_SVC,
        ] {
            if get(key).is_some_and(|v| v.len() > MAX_VALUE) {
                return Err(format!("`{key}` value longer than {MAX_VALUE} bytes"));
            }
        }
        let healthy = match get(KEY_HEALTH) {
            Some("up") => true,
            Some("down") => false,
            other => return Err(format!("bad `health` value {other:?}")),
        };
        let admin = match get(KEY_ADMIN) {
            Some("active") => AdminState::Active,
            Some("drained") => AdminState::Drained,
            other => return Err(format!("bad `admin` value {other:?}")),
        };
        let admin_by = match get(KEY_ADMIN_BY) {
            None | Some("") => None,
            Some(v) => Some(AdminBy::parse(v)?),
        };
        let load = match get(KEY_LOAD) {
            None | Some("") => None,
            Some(v) => match v.parse::<f32>() {
                Ok(l) if (0.0..=1.0).contains(&l) => Some(l),
                _ => return Err(format!("bad `load` value {v:?}")),
            },
        };
        let view = match get(KEY_VIEW) {
            None | Some("") => None,
            Some(v) => Some(ViewAnnouncement::parse(v)?),
        };
        let config = match get(KEY_CONFIG) {
            None | Some("") => None,
            Some(v) => {
                Some(u64::from_str_radix(v, 16).map_err(|_| format!("bad `config` value {v:?}"))?)
            }
        };
        let drained = get(KEY_DRAINED)
            .unwrap_or("")
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        let peers = get(KEY_PEERS)
            .unwrap_or("")
            .split_whitespace()
            .map(|hint| {
                let (name, addr) = hint
                    .split_once('@')
                    .ok_or_else(|| format!("bad `peers` hint {hint:?}"))?;
                let addr = addr
                    .parse()
                    .map_err(|_| format!("bad `peers` address {addr:?}"))?;
                Ok((name.to_owned(), addr))
            })
            .collect::<Result<_, String>>()?;
        let leaving = match get(KEY_LEAVING) {
            None | Some("") => false,
            Some("yes") => true,
            Some(other) => return Err(format!("bad `leaving` value {other:?}")),
        };
        let names = |key: &str| -> Vec<String> {
            get(key)
                .unwrap_or("")
                .split_whitespace()
                .map(str::to_owned)
                .collect()
        };
        Ok(Self {
            healthy,
            admin,
            admin_by,
            load,
            view,
            config,
            drained,
            peers,
            leaving,
            services_down: names(KEY_SVC_DOWN),
            services_drained: names(KEY_SVC_DRAINED),
            drained_services: names(KEY_DRAINED_SVC),
        })
    }
}

/// What the node currently believes about a POP.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PopStatus {
    /// Up, as far as this node can tell.
    pub live: bool,
    /// Passing its health checks.
    pub healthy: bool,
    /// Operator state.
    pub admin: AdminState,
    /// Load from 0.0 to 1.0, if known.
    pub load: Option<f32>,
}

/// How a node answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Single node: no cluster configured.
    Standalone,
    /// With a quorum: answers from the whole cluster.
    Cluster {
        /// Nodes seen alive, itself included.
        alive: usize,
    },
    /// Partitioned: local-only answers.
    LocalOnly {
        /// Nodes seen alive, itself included.
        alive: usize,
        /// Nodes needed for a quorum.
        quorum: usize,
    },
}

impl Mode {
    /// Whether answers are local-only (and take the local-only TTL).
    pub fn is_local_only(self) -> bool {
        matches!(self, Self::LocalOnly { .. })
    }

    /// The word for it in status, metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Standalone => "standalone",
            Self::Cluster { .. } => "cluster",
            Self::LocalOnly { .. } => "local-only",
        }
    }
}

/// What this node knows of one other POP's node.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PeerView {
    /// The last state it published (any liveness), `None` if never heard or unreadable.
    pub known: Option<HotState>,
    /// Whether its link's failure detector believes it alive.
    pub alive: bool,
    /// Where this node reaches it (its cluster address), once met.
    pub addr: Option<std::net::SocketAddr>,
}

impl PeerView {
    /// Whether it counts as a member: alive, and not saying it is shutting down.
    pub fn present(&self) -> bool {
        self.alive && !self.known.as_ref().is_some_and(|k| k.leaving)
    }
}

/// What the own POP's node knows of itself.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OwnStatus {
    /// Its probes say healthy.
    pub healthy: bool,
    /// Its admin state.
    pub admin: AdminState,
    /// Its load.
    pub load: Option<f32>,
}

/// How the node is set up to decide.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Membership {
    /// No cluster: the other POPs are assumed up; their admin state is the config's unless
    /// the local operator overrides it.
    Standalone,
    /// In a cluster needing `quorum` nodes (self included) to answer from all of it.
    Clustered {
        /// Nodes (self included) needed.
        quorum: usize,
    },
}

/// Everything the derivation needs, for one moment.
#[derive(Clone, Debug)]
pub struct ClusterInput<'a> {
    /// This node's POP.
    pub own: usize,
    /// This node's own state.
    pub own_state: OwnStatus,
    /// Per POP (own ignored): what its node says. Its length is the number of POPs.
    pub peers: &'a [PeerView],
    /// Per POP: the admin state from the config, or a standalone operator's override.
    pub admin: &'a [AdminState],
    /// Standalone or clustered.
    pub membership: Membership,
}

/// Per-POP status and mode from what the node knows. Total: never fails, never leaves a POP
/// out of the result. The same code path serves standalone and clustered nodes.
pub fn derive(input: &ClusterInput<'_>) -> (Vec<PopStatus>, Mode) {
    let pops = input.peers.len();
    let admin = |i: usize| input.admin.get(i).copied().unwrap_or(AdminState::Active);
    let own = PopStatus {
        live: true,
        healthy: input.own_state.healthy,
        admin: input.own_state.admin,
        load: input.own_state.load,
    };
    let quorum = match input.membership {
        Membership::Standalone => {
            let status = (0..pops)
                .map(|i| {
                    if i == input.own {
                        own
                    } else {
                        PopStatus {
                            live: true,
                            healthy: true,
                            admin: admin(i),
                            load: None,
                        }
                    }
                })
                .collect();
            return (status, Mode::Standalone);
        }
        Membership::Clustered { quorum } => quorum,
    };
    let alive = 1
        + (0..pops)
            .filter(|&i| i != input.own && input.peers[i].present())
            .count();
    let mode = if alive >= quorum {
        Mode::Cluster { alive }
    } else {
        Mode::LocalOnly { alive, quorum }
    };
    let status = (0..pops)
        .map(|i| {
            if i == input.own {
                return own;
            }
            let peer = &input.peers[i];
            let known = peer.known.as_ref();
            let from_node = |live| PopStatus {
                live,
                healthy: known.is_some_and(|s| s.healthy),
                admin: known.map_or_else(|| admin(i), |s| s.admin),
                load: known.and_then(|s| s.load),
            };
            match mode {
                Mode::Cluster { .. } | Mode::Standalone => {
                    from_node(peer.present() && known.is_some())
                }
                // Local-only with a healthy own POP: nobody else is handed out.
                Mode::LocalOnly { .. } if input.own_state.healthy => PopStatus {
                    live: false,
                    ..from_node(false)
                },
                // Local-only with an unhealthy own POP: the others by their last known state.
                Mode::LocalOnly { .. } => from_node(true),
            }
        })
        .collect();
    (status, mode)
}

/// What the node believes about the services of one POP: which are withdrawn there on top
/// of the POP's own status (indexes into `Config::geo`, sorted).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceStatus {
    /// Services whose probes at the POP are down.
    pub down: Vec<usize>,
    /// Services drained at the POP.
    pub drained: Vec<usize>,
}

impl ServiceStatus {
    /// Whether service `geo` is down at the POP.
    pub fn is_down(&self, geo: usize) -> bool {
        self.down.binary_search(&geo).is_ok()
    }

    /// Whether service `geo` is drained at the POP.
    pub fn is_drained(&self, geo: usize) -> bool {
        self.drained.binary_search(&geo).is_ok()
    }
}

/// Per POP, its services' state: the own POP's from local knowledge (`own`), a standalone
/// node's other POPs from its local operator (`standalone_drained`, per POP), and a
/// clustered node's other POPs from what their own nodes last said (names mapped through
/// `services`, the config's service names; unknown names are ignored).
pub fn derive_services(
    own: usize,
    own_state: &ServiceStatus,
    peers: &[PeerView],
    standalone_drained: &[Vec<usize>],
    membership: Membership,
    services: &[&str],
) -> Vec<ServiceStatus> {
    let index = |names: &[String]| -> Vec<usize> {
        let mut out: Vec<usize> = names
            .iter()
            .filter_map(|n| services.iter().position(|s| s == n))
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    };
    (0..peers.len())
        .map(|i| {
            if i == own {
                return own_state.clone();
            }
            match membership {
                Membership::Standalone => ServiceStatus {
                    down: Vec::new(),
                    drained: standalone_drained.get(i).cloned().unwrap_or_default(),
                },
                Membership::Clustered { .. } => match &peers[i].known {
                    Some(k) => ServiceStatus {
                        down: index(&k.services_down),
                        drained: index(&k.services_drained),
                    },
                    None => ServiceStatus::default(),
                },
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up() -> HotState {
        HotState::up()
    }
    fn down() -> HotState {
        HotState {
            healthy: false,
            ..HotState::up()
        }
    }
    fn drained() -> HotState {
        HotState {
            admin: AdminState::Drained,
            admin_by: Some(AdminBy {
                who: "alice".into(),
                at_ms: 1_764_500_000_000,
            }),
            load: Some(0.5),
            view: Some(ViewAnnouncement {
                version: 1_764_500_000_000,
                digest: 0x00ab_cdef_0123_4567,
                prefixes: 1_250_000,
                stale_since_ms: Some(1_764_500_060_000),
            }),
            config: Some(0xfeed),
            drained: vec!["ams".into(), "nyc".into()],
            peers: vec![("nyc".into(), "192.0.2.2:7300".parse().unwrap())],
            services_down: vec!["api".into()],
            services_drained: vec!["api".into(), "cdn".into()],
            drained_services: vec!["ams/api".into(), "nyc/cdn".into()],
            ..HotState::up()
        }
    }
    const OWN_UP: OwnStatus = OwnStatus {
        healthy: true,
        admin: AdminState::Active,
        load: None,
    };
    const OWN_DOWN: OwnStatus = OwnStatus {
        healthy: false,
        ..OWN_UP
    };

    /// Renders each POP as `L`ive/`-` + `H`ealthy/`-` + `D`rained/`-`, then the mode.
    fn run(own: OwnStatus, peers: &[(Option<HotState>, bool)], membership: Membership) -> String {
        let peers: Vec<PeerView> = peers
            .iter()
            .map(|(known, alive)| PeerView {
                known: known.clone(),
                alive: *alive,
                addr: None,
            })
            .collect();
        let admin = vec![AdminState::Active; peers.len()];
        let (status, mode) = derive(&ClusterInput {
            own: 0,
            own_state: own,
            peers: &peers,
            admin: &admin,
            membership,
        });
        let pops: Vec<String> = status
            .iter()
            .map(|s| {
                format!(
                    "{}{}{}",
                    if s.live { "L" } else { "-" },
                    if s.healthy { "H" } else { "-" },
                    if s.admin == AdminState::Drained {
                        "D"
                    } else {
                        "-"
                    }
                )
            })
            .collect();
        format!("{} {mode:?}", pops.join(" "))
    }

    fn q(quorum: usize) -> Membership {
        Membership::Clustered { quorum }
    }

    #[test]
    fn keys_round_trip_and_bad_values_are_refused() {
        for state in [up(), down(), drained()] {
            let keys = state.to_keys();
            let get = |k: &str| {
                keys.iter()
                    .find(|(key, _)| *key == k)
                    .map(|(_, v)| v.as_str())
            };
            assert_eq!(HotState::from_keys(get), Ok(state));
        }
        let get = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| pairs.iter().find(|(key, _)| *key == k).map(|(_, v)| *v)
        };
        assert!(
            HotState::from_keys(get(&[("proto", "1")]))
                .unwrap_err()
                .contains("schema")
        );
        assert!(HotState::from_keys(get(&[])).is_err());
        let with = |key: &'static str, v: &'static str| {
            HotState::from_keys(move |k: &str| match k {
                k if k == key => Some(v),
                "proto" => Some("2"),
                "health" => Some("up"),
                "admin" => Some("active"),
                _ => None,
            })
        };
        assert_eq!(with("load", "0.250").unwrap().load, Some(0.25));
        assert!(with("load", "1.5").unwrap_err().contains("load"));
        assert!(with("load", "high").is_err());
        assert!(with("health", "maybe").unwrap_err().contains("health"));
        assert!(with("config", "xyz").unwrap_err().contains("config"));
        assert!(with("peers", "nyc").unwrap_err().contains("peers"));
        assert!(
            with("peers", "nyc@nowhere")
                .unwrap_err()
                .contains("address")
        );
        assert!(with("admin_by", "alice").unwrap_err().contains("admin_by"));
        let long: &'static str = Box::leak("x ".repeat(MAX_VALUE).into_boxed_str());
        assert!(with("drained", long).unwrap_err().contains("longer"));
    }

    #[test]
    fn view_announcements_round_trip_and_nonsense_is_refused() {
        let a = drained().view.unwrap();
        assert_eq!(
            a.to_value(),
            "v=1764500000000 d=00abcdef01234567 n=1250000 stale=1764500060000"
        );
        assert_eq!(ViewAnnouncement::parse(&a.to_value()), Ok(a));
        let fresh = ViewAnnouncement {
            stale_since_ms: None,
            ..a
        };
        assert_eq!(ViewAnnouncement::parse(&fresh.to_value()), Ok(fresh));
        for bad in [
            "",
            "v=1",
            "v=1 d=zz n=3",
            "v=1 d=ff n=-3",
            "d=ff v=1 n=3",
            "v=1 d=ff n=3 stale=x",
            "v=1 d=ff n=3 stale=1 more",
        ] {
            assert!(ViewAnnouncement::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn with_a_quorum_every_pop_is_answered_from_its_own_node() {
        assert_eq!(
            run(
                OWN_UP,
                &[
                    (None, true),
                    (Some(down()), true),
                    (Some(drained()), true),
                    (None, true)
                ],
                q(3)
            ),
            "LH- L-- LHD --- Cluster { alive: 4 }"
        );
        // A dead node's POP is not live, whatever it last said.
        assert_eq!(
            run(
                OWN_UP,
                &[(None, true), (Some(up()), false), (Some(up()), true)],
                q(2)
            ),
            "LH- -H- LH- Cluster { alive: 2 }"
        );
    }

    #[test]
    fn below_quorum_with_a_healthy_own_pop_is_local_only() {
        assert_eq!(
            run(
                OWN_UP,
                &[(None, true), (Some(up()), false), (Some(up()), false)],
                q(2)
            ),
            "LH- -H- -H- LocalOnly { alive: 1, quorum: 2 }"
        );
    }

    #[test]
    fn below_quorum_with_an_unhealthy_own_pop_uses_the_last_known_state() {
        assert_eq!(
            run(
                OWN_DOWN,
                &[
                    (None, true),
                    (Some(up()), false),
                    (Some(drained()), false),
                    (None, false)
                ],
                q(3)
            ),
            "L-- LH- LHD L-- LocalOnly { alive: 1, quorum: 3 }"
        );
    }

    #[test]
    fn a_single_pop_is_never_partitioned() {
        assert_eq!(
            run(OWN_UP, &[(None, true)], q(crate::config::default_quorum(1))),
            "LH- Cluster { alive: 1 }"
        );
    }

    #[test]
    fn own_state_comes_from_local_knowledge_not_from_peers() {
        let own = OwnStatus {
            admin: AdminState::Drained,
            ..OWN_UP
        };
        assert_eq!(
            run(own, &[(Some(up()), true), (Some(up()), true)], q(2)),
            "LHD LH- Cluster { alive: 2 }"
        );
    }

    #[test]
    fn a_standalone_node_assumes_its_peers_up_with_the_admin_state_it_was_given() {
        let peers = vec![PeerView::default(); 3];
        let admin = [AdminState::Active, AdminState::Drained, AdminState::Active];
        let (status, mode) = derive(&ClusterInput {
            own: 0,
            own_state: OWN_DOWN,
            peers: &peers,
            admin: &admin,
            membership: Membership::Standalone,
        });
        assert_eq!(mode, Mode::Standalone);
        assert!(!status[0].healthy);
        assert_eq!(status[1].admin, AdminState::Drained);
        assert!(status[1..].iter().all(|s| s.live && s.healthy));
    }

    #[test]
    fn services_of_each_pop_come_from_its_own_node_or_the_local_operator() {
        let services = ["www", "api", "cdn"];
        let own = ServiceStatus {
            down: vec![1],
            drained: vec![],
        };
        // A peer saying something of the own POP's services is not listened to; names the
        // config does not know are dropped; order and repeats do not matter.
        let peer = HotState {
            services_down: vec!["cdn".into(), "api".into(), "api".into()],
            services_drained: vec!["old".into(), "www".into()],
            ..HotState::up()
        };
        let peers = vec![
            PeerView {
                known: Some(peer.clone()),
                alive: true,
                addr: None,
            },
            PeerView {
                known: Some(peer),
                alive: true,
                addr: None,
            },
            PeerView::default(),
        ];
        let clustered = derive_services(
            0,
            &own,
            &peers,
            &[],
            Membership::Clustered { quorum: 2 },
            &services,
        );
        assert_eq!(clustered[0], own);
        assert_eq!(
            clustered[1],
            ServiceStatus {
                down: vec![1, 2],
                drained: vec![0],
            }
        );
        assert_eq!(clustered[2], ServiceStatus::default());
        assert!(clustered[1].is_down(2) && !clustered[1].is_down(0));
        assert!(clustered[1].is_drained(0) && !clustered[1].is_drained(1));
        // Standalone: peers' gossip (there is none) is not read; the local operator's
        // drains are.
        let standalone = derive_services(
            0,
            &own,
            &peers,
            &[vec![], vec![], vec![2]],
            Membership::Standalone,
            &services,
        );
        assert_eq!(standalone[1], ServiceStatus::default());
        assert_eq!(standalone[2].drained, vec![2]);
    }

    #[test]
    fn a_leaving_node_counts_as_gone_while_its_link_is_still_up() {
        let leaving = HotState {
            leaving: true,
            ..HotState::up()
        };
        assert_eq!(
            run(
                OWN_UP,
                &[
                    (None, true),
                    (Some(leaving.clone()), true),
                    (Some(up()), true)
                ],
                q(2)
            ),
            "LH- -H- LH- Cluster { alive: 2 }"
        );
        assert_eq!(
            run(
                OWN_UP,
                &[(None, true), (Some(leaving), true), (Some(up()), false)],
                q(2)
            ),
            "LH- -H- -H- LocalOnly { alive: 1, quorum: 2 }"
        );
    }
}
