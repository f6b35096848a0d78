//! [P] From gossip to answers: each node's hot state as published in chitchat, and the rules
//! that turn "who is alive and what do they say" into per-POP status and the node's mode.
//!
//! # Keys (one place for the schema)
//!
//! | key      | value                    | meaning                                    |
//! |----------|--------------------------|--------------------------------------------|
//! | `proto`  | `1`                      | protocol version of these keys             |
//! | `health` | `up` / `down`            | the POP's probes (all up = `up`)           |
//! | `admin`  | `active` / `drained`     | the POP's admin state from its own config  |
//! | `load`   | `0.42` (absent: unknown) | the POP's load probe, 0.0 to 1.0           |
//! | `view`   | `v=MS d=HEX n=COUNT [stale=MS]` (absent: none) | the POP's route view: version, digest, prefixes, stale since |
//! | `admin.POP` | `drained@MS` / `active@MS` | an operator's drain/undrain of POP, at unix time MS |
//!
//! `sparrow drain POP` may be sent to any node: that node publishes `admin.POP` with the
//! time. The effective admin state of a POP is the newest such directive from any node
//! (ties: the larger node name), else what the POP's node publishes from its config. The
//! last operator action wins, wherever it was made, and survives the restart of the POP's
//! own node.
//!
//! A chitchat node id is the POP name. A peer whose keys do not parse is treated as down
//! (and logged by the edge): bad input never changes answers silently.
//!
//! # Partition rule
//!
//! A node counts itself plus the peers the failure detector says are alive. While that count
//! is below the quorum (default: a majority of the configured POPs, `N / 2 + 1`), the node is
//! *partitioned* and answers local-only:
//!
//! - its own POP healthy: only its own POP is handed out (Super Sparrow's rule: a client that
//!   reaches this DNS server can probably reach this POP), with the shorter local-only TTL;
//! - its own POP unhealthy: the other POPs are ranked as usual from their last known state
//!   (health and admin as last gossiped; never heard of = unhealthy), and if none of them is
//!   eligible the policy fails open. A geo name is never left without an answer.
//!
//! With a quorum, every POP is answered from gossip: live (failure detector), healthy and
//! admin state as its node publishes them; the own POP from local knowledge.

use crate::config::AdminState;
use crate::snapshot::PopStatus;

/// Version of the key schema.
pub const PROTO: &str = "1";
/// Key: schema version.
pub const KEY_PROTO: &str = "proto";
/// Key: the POP's health.
pub const KEY_HEALTH: &str = "health";
/// Key: the POP's admin state.
pub const KEY_ADMIN: &str = "admin";

/// Key prefix of operator admin directives (`admin.ams`).
pub const ADMIN_DIRECTIVE_PREFIX: &str = "admin.";

/// An operator's drain or undrain of a POP, as published by the node that received it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdminDirective {
    /// The state asked for.
    pub admin: AdminState,
    /// When, in unix milliseconds.
    pub at_ms: u64,
}

impl AdminDirective {
    /// The value to publish under `admin.POP`.
    pub fn to_value(self) -> String {
        let state = match self.admin {
            AdminState::Active => "active",
            AdminState::Drained => "drained",
        };
        format!("{state}@{}", self.at_ms)
    }

    /// Parses a published value.
    pub fn parse(value: &str) -> Option<Self> {
        let (state, at) = value.split_once('@')?;
        let admin = match state {
            "active" => AdminState::Active,
            "drained" => AdminState::Drained,
            _ => return None,
        };
        Some(Self {
            admin,
            at_ms: at.parse().ok()?,
        })
    }
}

/// The newest directive among `(node name, directive)` pairs: last operator action wins,
/// ties broken by node name so every node picks the same one.
pub fn newest<'a>(
    directives: impl IntoIterator<Item = (&'a str, AdminDirective)>,
) -> Option<AdminDirective> {
    directives
        .into_iter()
        .max_by(|(an, a), (bn, b)| a.at_ms.cmp(&b.at_ms).then_with(|| an.cmp(bn)))
        .map(|(_, d)| d)
}

/// Key: the POP's load.
pub const KEY_LOAD: &str = "load";
/// Key: the POP's route view announcement.
pub const KEY_VIEW: &str = "view";

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

/// What a node publishes about its own POP.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HotState {
    /// All probes up.
    pub healthy: bool,
    /// Operator state.
    pub admin: AdminState,
    /// Load from 0.0 to 1.0, if measured.
    pub load: Option<f32>,
    /// The POP's route view, if it has one.
    pub view: Option<ViewAnnouncement>,
}

impl HotState {
    /// The key-value pairs to publish (`load` and `view` empty when unknown).
    pub fn to_keys(self) -> [(&'static str, String); 5] {
        let [a, b, c] = self.fixed_keys();
        [
            (a.0, a.1.to_owned()),
            (b.0, b.1.to_owned()),
            (c.0, c.1.to_owned()),
            (
                KEY_LOAD,
                self.load.map_or_else(String::new, |l| format!("{l:.3}")),
            ),
            (
                KEY_VIEW,
                self.view
                    .map_or_else(String::new, ViewAnnouncement::to_value),
            ),
        ]
    }

    fn fixed_keys(self) -> [(&'static str, &'static str); 3] {
        [
            (KEY_PROTO, PROTO),
            (KEY_HEALTH, if self.healthy { "up" } else { "down" }),
            (
                KEY_ADMIN,
                match self.admin {
                    AdminState::Active => "active",
                    AdminState::Drained => "drained",
                },
            ),
        ]
    }

    /// Reads a peer's published state through `get` (a key lookup).
    pub fn from_keys<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Result<Self, String> {
        match get(KEY_PROTO) {
            Some(PROTO) => {}
            Some(other) => return Err(format!("unknown key schema `{other}`")),
            None => return Err("no `proto` key".to_owned()),
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
        Ok(Self {
            healthy,
            admin,
            load,
            view,
        })
    }
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
}

/// Everything the derivation needs, for one moment.
#[derive(Clone, Debug)]
pub struct ClusterInput<'a> {
    /// Number of POPs (all run a node).
    pub pops: usize,
    /// This node's POP.
    pub own: usize,
    /// This node's own state.
    pub own_state: HotState,
    /// The last state heard from each POP (any liveness), `None` if never heard.
    pub last_known: &'a [Option<HotState>],
    /// Whether the failure detector believes each POP's node is alive (own ignored).
    pub alive: &'a [bool],
    /// Nodes (self included) needed to answer from the cluster.
    pub quorum: usize,
    /// The newest operator directive per POP, if any (overrides published admin states).
    pub directives: &'a [Option<AdminDirective>],
}

/// The default quorum: a majority of the configured POPs.
pub fn default_quorum(pops: usize) -> usize {
    pops / 2 + 1
}

/// Per-POP status and mode from the cluster's state. Total: never fails, never leaves a
/// POP out of the result.
pub fn derive(input: &ClusterInput<'_>) -> (Vec<PopStatus>, Mode) {
    let alive_peers = (0..input.pops)
        .filter(|&i| i != input.own && input.alive.get(i).copied().unwrap_or(false))
        .count();
    let alive = alive_peers + 1;
    let mode = if alive >= input.quorum {
        Mode::Cluster { alive }
    } else {
        Mode::LocalOnly {
            alive,
            quorum: input.quorum,
        }
    };
    let directed = |i: usize, admin: AdminState| {
        input
            .directives
            .get(i)
            .copied()
            .flatten()
            .map_or(admin, |d| d.admin)
    };
    let status = (0..input.pops)
        .map(|i| {
            if i == input.own {
                return PopStatus {
                    live: true,
                    healthy: input.own_state.healthy,
                    admin: directed(i, input.own_state.admin),
                    load: input.own_state.load,
                };
            }
            let known = input.last_known.get(i).copied().flatten();
            let from_gossip = |live| PopStatus {
                live,
                healthy: known.is_some_and(|s| s.healthy),
                admin: directed(i, known.map_or(AdminState::Active, |s| s.admin)),
                load: known.and_then(|s| s.load),
            };
            match mode {
                Mode::Cluster { .. } | Mode::Standalone => {
                    from_gossip(input.alive.get(i).copied().unwrap_or(false) && known.is_some())
                }
                // Local-only with a healthy own POP: nobody else is handed out.
                Mode::LocalOnly { .. } if input.own_state.healthy => PopStatus {
                    live: false,
                    ..from_gossip(false)
                },
                // Local-only with an unhealthy own POP: the others by their last known state.
                Mode::LocalOnly { .. } => from_gossip(true),
            }
        })
        .collect();
    (status, mode)
}

#[cfg(test)]
mod tests {
    use super::*;

    const UP: HotState = HotState {
        healthy: true,
        admin: AdminState::Active,
        load: None,
        view: None,
    };
    const DOWN: HotState = HotState {
        healthy: false,
        admin: AdminState::Active,
        load: None,
        view: None,
    };
    const DRAINED: HotState = HotState {
        healthy: true,
        admin: AdminState::Drained,
        load: Some(0.5),
        view: Some(ViewAnnouncement {
            version: 1_764_500_000_000,
            digest: 0x00ab_cdef_0123_4567,
            prefixes: 1_250_000,
            stale_since_ms: Some(1_764_500_060_000),
        }),
    };

    /// Renders each POP as `L`ive/`-` + `H`ealthy/`-` + `D`rained/`-`, then the mode.
    fn run(
        own_state: HotState,
        last_known: &[Option<HotState>],
        alive: &[bool],
        quorum: usize,
    ) -> String {
        run_directed(own_state, last_known, alive, quorum, &[])
    }

    fn run_directed(
        own_state: HotState,
        last_known: &[Option<HotState>],
        alive: &[bool],
        quorum: usize,
        directives: &[Option<AdminDirective>],
    ) -> String {
        let (status, mode) = derive(&ClusterInput {
            pops: last_known.len(),
            own: 0,
            own_state,
            last_known,
            alive,
            quorum,
            directives,
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

    #[test]
    fn keys_round_trip_and_bad_values_are_refused() {
        for state in [UP, DOWN, DRAINED] {
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
            HotState::from_keys(get(&[("proto", "2")]))
                .unwrap_err()
                .contains("schema")
        );
        assert!(HotState::from_keys(get(&[])).is_err());
        let with_load = |l: &'static str| {
            HotState::from_keys(move |k: &str| match k {
                "proto" => Some("1"),
                "health" => Some("up"),
                "admin" => Some("active"),
                "load" => Some(l),
                _ => None,
            })
        };
        assert_eq!(with_load("0.250").unwrap().load, Some(0.25));
        assert!(with_load("1.5").unwrap_err().contains("load"));
        assert!(with_load("high").is_err());
        assert!(
            HotState::from_keys(get(&[
                ("proto", "1"),
                ("health", "maybe"),
                ("admin", "active")
            ]))
            .unwrap_err()
            .contains("health")
        );
    }

    #[test]
    fn view_announcements_round_trip_and_nonsense_is_refused() {
        let a = DRAINED.view.unwrap();
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
    fn default_quorum_is_a_majority_of_the_pops() {
        assert_eq!([1, 2, 3, 4, 5].map(default_quorum), [1, 2, 2, 3, 3]);
    }

    #[test]
    fn with_a_quorum_every_pop_is_answered_from_gossip() {
        assert_eq!(
            run(
                UP,
                &[Some(UP), Some(DOWN), Some(DRAINED), None],
                &[true, true, true, true],
                3
            ),
            "LH- L-- LHD --- Cluster { alive: 4 }"
        );
        // A dead node's POP is not live, whatever it last said.
        assert_eq!(
            run(UP, &[Some(UP), Some(UP), Some(UP)], &[true, false, true], 2),
            "LH- -H- LH- Cluster { alive: 2 }"
        );
    }

    #[test]
    fn below_quorum_with_a_healthy_own_pop_is_local_only() {
        assert_eq!(
            run(
                UP,
                &[Some(UP), Some(UP), Some(UP)],
                &[true, false, false],
                2
            ),
            "LH- -H- -H- LocalOnly { alive: 1, quorum: 2 }"
        );
    }

    #[test]
    fn below_quorum_with_an_unhealthy_own_pop_uses_the_last_known_state() {
        assert_eq!(
            run(
                DOWN,
                &[Some(DOWN), Some(UP), Some(DRAINED), None],
                &[true, false, false, false],
                3
            ),
            "L-- LH- LHD L-- LocalOnly { alive: 1, quorum: 3 }"
        );
    }

    #[test]
    fn a_single_pop_is_never_partitioned() {
        assert_eq!(
            run(UP, &[Some(UP)], &[true], default_quorum(1)),
            "LH- Cluster { alive: 1 }"
        );
    }

    #[test]
    fn the_newest_operator_directive_wins_over_published_admin_states() {
        let drain = |at_ms| {
            Some(AdminDirective {
                admin: AdminState::Drained,
                at_ms,
            })
        };
        let undrain = Some(AdminDirective {
            admin: AdminState::Active,
            at_ms: 9,
        });
        assert_eq!(
            run_directed(
                UP,
                &[Some(UP), Some(DRAINED), Some(UP)],
                &[true; 3],
                2,
                &[drain(5), undrain, None]
            ),
            "LHD LH- LH- Cluster { alive: 3 }"
        );
        let d = |s: &str| AdminDirective::parse(s).unwrap();
        assert_eq!(d("drained@17").to_value(), "drained@17");
        assert_eq!(AdminDirective::parse("drained"), None);
        assert_eq!(AdminDirective::parse("off@1"), None);
        let got = newest([
            ("nyc", d("drained@10")),
            ("ams", d("active@12")),
            ("syd", d("drained@12")),
        ]);
        assert_eq!(
            got,
            Some(d("drained@12")),
            "same time: the larger node name wins"
        );
        assert_eq!(newest([]), None);
    }

    #[test]
    fn own_state_comes_from_local_knowledge_not_gossip() {
        assert_eq!(
            run(DRAINED, &[Some(UP), Some(UP)], &[true, true], 2),
            "LHD LH- Cluster { alive: 2 }"
        );
    }
}
