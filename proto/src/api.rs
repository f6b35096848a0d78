//! Operator API types. `sparrow explain --json` prints an [`Explanation`].

use serde::{Deserialize, Serialize};

/// Why a client gets the answer it gets, for one geo name.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Explanation {
    /// The geo name, fully qualified.
    pub name: String,
    /// The address the decision was made for.
    pub client: String,
    /// The block of clients sure to get the same decision; its length is the ECS scope.
    pub block: String,
    /// The static map entry covering the client, if any.
    pub static_map: Option<StaticMatch>,
    /// Every candidate POP, in config order.
    pub pops: Vec<PopVerdict>,
    /// POP names in answer order, best first (as many as the answer holds first).
    pub ranking: Vec<String>,
    /// How many POPs an answer lists.
    pub answers: u8,
    /// The machine-readable rule that made the winner win (`fewer_hops`, `static_map`, ...).
    pub rule: Option<String>,
    /// The same, as a sentence.
    pub reason: String,
    /// True when no POP was eligible and all were ranked anyway.
    pub failed_open: bool,
    /// The A and AAAA records an answer would hold (a CNAME service: its CNAME).
    pub addresses: Vec<String>,
    /// The service (the geo name relative to the zone, `api`).
    #[serde(default)]
    pub service: String,
}

/// The static map entry that covers a client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaticMatch {
    /// The prefix in the static map.
    pub prefix: String,
    /// The POP it names.
    pub pop: String,
}

/// One candidate POP's part in a decision.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PopVerdict {
    /// POP name.
    pub pop: String,
    /// POP ASN.
    pub asn: u32,
    /// The route in the POP's view that covers the client, when this node holds that POP's
    /// view with its AS paths (its own, or one from a file).
    pub route: Option<RouteMatch>,
    /// AS hops from the POP to the client, if it has a route (known for every POP whose view
    /// this node has, also when only the hops were pulled from the POP's node).
    #[serde(default)]
    pub hops: Option<u8>,
    /// Whether the POP could be chosen.
    pub eligible: bool,
    /// Why not (`drained`, `down`, `unhealthy`, `service drained`, `service unhealthy`).
    pub excluded: Vec<String>,
    /// Position in the ranking (1 = winner).
    pub rank: Option<usize>,
    /// Configured preference (lower wins among equally near POPs).
    pub preference: u16,
    /// Configured weight (share among equals).
    pub weight: u32,
}

/// A route that matched a client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteMatch {
    /// The matched prefix (longest match).
    pub prefix: String,
    /// Its AS path, nearest first.
    pub as_path: Vec<u32>,
    /// AS hops (path length).
    pub hops: u8,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explanation_round_trips_through_json() {
        let e = Explanation {
            name: "www.example.net.".into(),
            client: "100.64.2.0".into(),
            block: "100.64.2.0/24".into(),
            static_map: Some(StaticMatch {
                prefix: "100.64.0.0/16".into(),
                pop: "syd".into(),
            }),
            pops: vec![PopVerdict {
                pop: "nyc".into(),
                asn: 64502,
                route: Some(RouteMatch {
                    prefix: "100.64.2.0/24".into(),
                    as_path: vec![64497],
                    hops: 1,
                }),
                hops: Some(1),
                eligible: true,
                excluded: vec![],
                rank: Some(1),
                preference: 100,
                weight: 100,
            }],
            ranking: vec!["nyc".into()],
            answers: 1,
            rule: Some("fewer_hops".into()),
            reason: "nyc wins".into(),
            failed_open: false,
            addresses: vec!["A 198.51.100.10".into()],
            service: "www".into(),
        };
        let text = serde_json::to_string(&e).unwrap();
        assert!(text.contains(r#""as_path":[64497]"#), "{text}");
        assert_eq!(serde_json::from_str::<Explanation>(&text).unwrap(), e);
    }
}

/// A request to a node's operator API (one JSON object per line).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "snake_case")]
pub enum Request {
    /// The node's view of the cluster.
    Status,
    /// Why a client gets its answer, from the node's live state.
    Explain {
        /// Client address or subnet.
        client: String,
        /// Geo name (default: the first).
        name: Option<String>,
    },
    /// Drain or undrain a POP, cluster-wide (or one of its services).
    SetAdmin {
        /// The POP.
        pop: String,
        /// `true` to drain, `false` to undrain.
        drained: bool,
        /// Only this service at the POP (a geo name relative to the zone, `api`); absent:
        /// the whole POP.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        service: Option<String>,
    },
    /// Re-read the config and every file it names, and apply it.
    Reload,
    /// Hand every listening socket to the asking process (`sparrow node --take-over`) and
    /// exit once it serves: a binary upgrade without a lost query. Local socket only; the
    /// answer is the hand-off itself, not a [`Response`].
    TakeOver,
}

/// A response of the operator API.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "response", rename_all = "snake_case")]
pub enum Response {
    /// Answer to [`Request::Status`].
    Status(StatusReport),
    /// Answer to [`Request::Explain`].
    Explanation(Explanation),
    /// The request was carried out.
    Done {
        /// What happened.
        message: String,
    },
    /// The request was refused.
    Error {
        /// Why.
        message: String,
    },
    /// A drain or undrain was applied by the POP's own node: what the cluster holds after
    /// it.
    AdminSet(AdminReport),
    /// The config was reloaded.
    Reloaded(ReloadReport),
    /// The request is for another node: POP `pop`'s admin state is held by its own node,
    /// reachable at `node` (its cluster address). An operator certificate may send it there.
    Redirect {
        /// The POP.
        pop: String,
        /// Its node's cluster address, if this node knows it.
        node: Option<String>,
        /// What to do, as a sentence.
        message: String,
    },
}

/// What a reload changed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadReport {
    /// What changed and applies now.
    pub changes: Vec<String>,
    /// What changed but applies only after a restart (kept as it runs until then).
    pub needs_restart: Vec<String>,
    /// A sentence for people.
    pub message: String,
}

/// What a drain or undrain left behind, as the POP's node sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminReport {
    /// The POP (`POP/service` for a service's drain).
    pub pop: String,
    /// `active` or `drained`: its state now.
    pub admin: String,
    /// Who set it.
    pub by: String,
    /// Live nodes that hold the new state (the POP's own included).
    pub confirmed: Vec<String>,
    /// Live nodes that did not confirm it within the wait.
    pub unconfirmed: Vec<String>,
    /// A sentence for people.
    pub message: String,
}

/// A node's view of the cluster.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    /// This node's POP.
    pub pop: String,
    /// Cluster id, if clustered.
    pub cluster: Option<String>,
    /// `standalone`, `cluster` or `local-only`.
    pub mode: String,
    /// Nodes seen alive, this one included.
    pub alive: usize,
    /// Nodes needed for a quorum.
    pub quorum: usize,
    /// Every POP.
    pub pops: Vec<PopReport>,
    /// Gossip bytes sent since start.
    pub gossip_bytes_sent: u64,
    /// Gossip bytes received since start.
    pub gossip_bytes_received: u64,
    /// Route views pulled from peers since start.
    #[serde(default)]
    pub views_pulled: u64,
    /// Route-view pulls that failed since start.
    #[serde(default)]
    pub view_pull_failures: u64,
    /// Digest of this node's answer-deciding config (zone, POPs, geo names, static map).
    #[serde(default)]
    pub config_digest: Option<String>,
    /// Whether the node is ready (own view in, cluster joined, every live peer's view held).
    #[serde(default)]
    pub ready: bool,
    /// What it waits for, or how it became ready.
    #[serde(default)]
    pub ready_reason: String,
}

/// One POP in a [`StatusReport`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PopReport {
    /// POP name.
    pub name: String,
    /// Whether this node is that POP's node.
    pub this_node: bool,
    /// Up, as far as this node can tell.
    pub live: bool,
    /// Passing its probes.
    pub healthy: bool,
    /// `active` or `drained`.
    pub admin: String,
    /// Load from 0.0 to 1.0, if known.
    pub load: Option<f32>,
    /// Answer addresses.
    pub addresses: Vec<String>,
    /// The POP's route view as this node holds it, if it holds one.
    #[serde(default)]
    pub view: Option<ViewReport>,
    /// Who set the admin state and when (`alice@1764...`), if an operator did.
    #[serde(default)]
    pub admin_by: Option<String>,
    /// The POP's node's cluster address, as this node reaches it.
    #[serde(default)]
    pub node: Option<String>,
    /// Digest of the POP's node's answer-deciding config, as it publishes it.
    #[serde(default)]
    pub config_digest: Option<String>,
    /// Whether that digest differs from this node's (a half-rolled-out change).
    #[serde(default)]
    pub config_differs: bool,
    /// Every service the POP serves, and its state there.
    #[serde(default)]
    pub services: Vec<ServiceReport>,
}

/// One service at one POP in a [`PopReport`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceReport {
    /// The service (`api`).
    pub name: String,
    /// Its own probes at the POP pass (the POP's probes are the POP's `healthy`).
    pub healthy: bool,
    /// `active` or `drained`, for this service at the POP.
    pub admin: String,
    /// Whether answers for this service hand the POP out now (live, healthy, active, and
    /// the same for the POP).
    pub serving: bool,
    /// Its targets at the POP: addresses, or `CNAME name.`.
    pub targets: Vec<String>,
}

/// A route view as a node holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewReport {
    /// Prefixes in the view.
    pub prefixes: u64,
    /// Version (unix ms when the view was built at its source), if announced.
    pub version: Option<u64>,
    /// Digest (hex), if known.
    pub digest: Option<String>,
    /// Seconds since the view was built at its source, if known.
    pub age_secs: Option<u64>,
    /// Where it came from (`file views/ams.routes`, `pulled from nyc`, `bgp ...`).
    pub source: String,
    /// Seconds since its source stopped being current, if it has.
    pub stale_secs: Option<u64>,
}
