//! \[P\] What a run will do, decided before anything starts: the timeline (scaled, flaps
//! expanded), the network state each step leaves behind, the resolvers and the clients
//! behind them, and every query's time and client. All of it follows from the scenario, the
//! generated world and the seed, so a run is replayed by its seed.

use std::collections::BTreeSet;
use std::time::Duration;

use ipnet::IpNet;

use crate::folder::Sim;
use crate::rng::Rng;
use crate::scenario::{Action, Choose, Links, Scenario};

/// A run's plan.
#[derive(Clone, Debug)]
pub struct Plan {
    /// How long the workload runs (scaled, and long enough to check `settle`).
    pub duration: Duration,
    /// The factor every time of the scenario's timeline was multiplied by.
    pub time_scale: f64,
    /// The timeline, flaps expanded, sorted by time.
    pub steps: Vec<Step>,
    /// The network and node state after each step (`states[k]` follows `steps[k]`).
    pub states: Vec<NetState>,
    /// The state before the first step: every node up, no fault.
    pub initial: NetState,
    /// The recursive resolvers.
    pub resolvers: Vec<Resolver>,
    /// The clients, each a truth entry asking through one resolver.
    pub clients: Vec<Client>,
    /// The queries, by time: (time from the start, client index). Query `k` asks for
    /// service `k % services` ([`Plan::service_of`]).
    pub queries: Vec<(Duration, usize)>,
    /// The geo names the workload asks for, by service index (`www` first).
    pub services: Vec<String>,
}

/// One step of the timeline.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    /// When, from the start of the workload.
    pub at: Duration,
    /// Index of the scenario event it comes from.
    pub event: usize,
    /// The event's label, if any.
    pub label: Option<String>,
    /// What happens (never a `Flap`: flaps are expanded into link-down and link-up).
    pub action: Action,
}

impl Step {
    /// A short description: `kind` or `kind (label)`.
    pub fn name(&self) -> String {
        match &self.label {
            Some(l) => format!("{} ({l})", self.action.kind()),
            None => self.action.kind().to_owned(),
        }
    }
}

/// A recursive resolver: clients ask it, it asks a Sparrow node.
#[derive(Clone, Debug, PartialEq)]
pub struct Resolver {
    /// The AS it sits in (index into the topology).
    pub as_index: u32,
    /// The node it asks first: the POP of lowest latency from its AS.
    pub primary: usize,
    /// The node it fails over to on a timeout: the next lowest.
    pub secondary: usize,
    /// Whether it forwards the client's subnet (ECS).
    pub ecs: bool,
    /// The POP nearest its position: what a GeoIP-only server answers its queries without
    /// ECS.
    pub geo_pop: usize,
}

/// A client network.
#[derive(Clone, Debug, PartialEq)]
pub struct Client {
    /// Index of its entry in the truth.
    pub entry: usize,
    /// The client subnet it asks with.
    pub subnet: IpNet,
    /// The resolver it asks through.
    pub resolver: usize,
    /// AS hops from each POP to it, as the POP's route view counts them.
    pub hops: Vec<usize>,
}

/// The state of the simulated network and nodes at one moment. `n` nodes, indexed like the
/// POPs; pair matrices are row-major, `[from * n + to]`.
#[derive(Clone, Debug, PartialEq)]
pub struct NetState {
    /// Number of nodes.
    pub n: usize,
    /// Whether packets from `from` to `to` are lost.
    pub cut: Vec<bool>,
    /// Loss from `from` to `to`, 0.0 to 1.0.
    pub loss: Vec<f64>,
    /// Added delay and jitter from `from` to `to`.
    pub delay: Vec<(Duration, Duration)>,
    /// Whether each node is crashed.
    pub crashed: Vec<bool>,
    /// Whether each POP's health probe fails.
    pub probe_failing: Vec<bool>,
    /// Each POP's load as its load probe reads it.
    pub load: Vec<f64>,
    /// Whether each POP is drained by an operator.
    pub drained: Vec<bool>,
    /// The (service, POP) pairs whose service probe fails.
    pub service_down: BTreeSet<(usize, usize)>,
}

impl NetState {
    /// Every node up, no fault, load 0.
    pub fn healthy(n: usize) -> Self {
        Self {
            n,
            cut: vec![false; n * n],
            loss: vec![0.0; n * n],
            delay: vec![(Duration::ZERO, Duration::ZERO); n * n],
            crashed: vec![false; n],
            probe_failing: vec![false; n],
            load: vec![0.0; n],
            drained: vec![false; n],
            service_down: BTreeSet::new(),
        }
    }

    /// Whether packets from `a` to `b` are lost.
    pub fn is_cut(&self, a: usize, b: usize) -> bool {
        self.cut[a * self.n + b]
    }

    /// The state after `action`.
    pub fn apply(&self, action: &Action) -> Self {
        let mut s = self.clone();
        let n = self.n;
        let pairs = |links: &Links| -> Vec<(usize, usize)> {
            (0..n)
                .flat_map(|a| (0..n).map(move |b| (a, b)))
                .filter(|&(a, b)| links.contains(a, b))
                .collect()
        };
        match action {
            Action::Partition { sets } => {
                let set_of = |p: usize| sets.iter().position(|s| s.contains(&p));
                for a in 0..n {
                    for b in 0..n {
                        if a != b && set_of(a) != set_of(b) {
                            s.cut[a * n + b] = true;
                        }
                    }
                }
            }
            Action::Cut { from, to } => {
                for &a in from {
                    for &b in to {
                        s.cut[a * n + b] = true;
                    }
                }
            }
            Action::LinkDown { links } => {
                for (a, b) in pairs(links) {
                    s.cut[a * n + b] = true;
                }
            }
            Action::LinkUp { links } => {
                for (a, b) in pairs(links) {
                    s.cut[a * n + b] = false;
                }
            }
            Action::Loss { links, percent } => {
                for (a, b) in pairs(links) {
                    s.loss[a * n + b] = percent / 100.0;
                }
            }
            Action::Latency {
                links,
                delay,
                jitter,
            } => {
                for (a, b) in pairs(links) {
                    s.delay[a * n + b] = (*delay, *jitter);
                }
            }
            // Expanded before a plan is made; a flap on its own changes nothing at once.
            Action::Flap { .. } => {}
            Action::Crash { pops } => pops.iter().for_each(|&p| s.crashed[p] = true),
            Action::Restart { pops } => pops.iter().for_each(|&p| s.crashed[p] = false),
            Action::ProbeFail { pops } => pops.iter().for_each(|&p| s.probe_failing[p] = true),
            Action::ProbeRecover { pops } => {
                pops.iter().for_each(|&p| s.probe_failing[p] = false);
            }
            Action::Load { pops, load } => pops.iter().for_each(|&p| s.load[p] = *load),
            Action::Drain { pops } => pops.iter().for_each(|&p| s.drained[p] = true),
            Action::Undrain { pops } => pops.iter().for_each(|&p| s.drained[p] = false),
            Action::ServiceDown { pops, service } => {
                s.service_down.extend(pops.iter().map(|&p| (*service, p)));
            }
            Action::ServiceUp { pops, service } => {
                for &p in pops {
                    s.service_down.remove(&(*service, p));
                }
            }
            Action::Heal => {
                s.cut.iter_mut().for_each(|c| *c = false);
                s.loss.iter_mut().for_each(|l| *l = 0.0);
                s.delay
                    .iter_mut()
                    .for_each(|d| *d = (Duration::ZERO, Duration::ZERO));
            }
        }
        s
    }

    /// Whether node `x` can hear node `p` at all: both are up and `p`'s gossip reaches `x`
    /// directly. Liveness is direct: each pair of nodes has its own gossip link, and nothing
    /// a third node says about `p` counts (a node speaks only for itself), so when the link
    /// from `p` to `x` is cut, `x` is bound to declare `p` dead whatever the others hear.
    /// (One way is enough: every gossip message carries the sender's heartbeat, so `p`'s
    /// news reaches `x` when `p -> x` works, whether or not `x -> p` does.)
    pub fn hears(&self, x: usize, p: usize) -> bool {
        !self.crashed[p] && !self.crashed[x] && (x == p || !self.is_cut(p, x))
    }

    /// The number of nodes `x` hears (itself included), as its failure detector will count
    /// them once it has settled.
    pub fn heard_by(&self, x: usize) -> usize {
        (0..self.n).filter(|&p| p == x || self.hears(x, p)).count()
    }

    /// Whether POP `p` must not be handed out by node `x`: it is down (crashed, probe
    /// failing), drained, or `x` cannot hear of it.
    pub fn unusable_for(&self, x: usize, p: usize) -> bool {
        self.crashed[p] || self.probe_failing[p] || self.drained[p] || (x != p && !self.hears(x, p))
    }

    /// Whether node `x` must not hand out POP `p` for `service`: the POP is unusable for
    /// `x`, or that service's probe fails there.
    pub fn unusable_for_service(&self, x: usize, p: usize, service: usize) -> bool {
        self.unusable_for(x, p) || self.service_down.contains(&(service, p))
    }

    /// For each POP, whether node `x` may hand it out for `service`.
    pub fn usable_for_service(&self, x: usize, service: usize) -> Vec<bool> {
        (0..self.n)
            .map(|p| !self.unusable_for_service(x, p, service))
            .collect()
    }
}

/// Why a plan cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// The time scale is not a positive number.
    #[error("the time scale must be a positive number, not {0}")]
    Scale(f64),
    /// No client prefix matches the workload.
    #[error("no client prefix of the topology matches the workload (regions {0:?})")]
    NoClients(Vec<String>),
}

/// The check window after the last event's `settle`: the run goes on at least this long so
/// that "answers equal the no-fault answers" is checked on real queries.
pub const SETTLE_CHECK: Duration = Duration::from_secs(10);

/// Makes the plan of `scenario` on `sim` with `seed`, every time of the timeline multiplied
/// by `time_scale` (expectations are properties of the cluster and are not scaled).
pub fn plan(scenario: &Scenario, sim: &Sim, seed: u64, time_scale: f64) -> Result<Plan, PlanError> {
    if !(time_scale > 0.0 && time_scale.is_finite()) {
        return Err(PlanError::Scale(time_scale));
    }
    let n = sim.pops.len();
    let scale = |d: Duration| Duration::from_secs_f64(d.as_secs_f64() * time_scale);
    let steps: Vec<Step> = scenario
        .expanded_events()
        .into_iter()
        .map(|e| {
            let event = scenario
                .events
                .iter()
                .position(|o| o.line == e.line)
                .unwrap_or(0);
            Step {
                at: scale(e.at),
                event,
                label: e.label,
                action: e.action,
            }
        })
        .collect();
    let initial = NetState::healthy(n);
    let mut states = Vec::with_capacity(steps.len());
    let mut state = initial.clone();
    for s in &steps {
        state = state.apply(&s.action);
        states.push(state.clone());
    }
    let mut duration = scale(scenario.duration);
    if let (Some(settle), Some(last)) = (scenario.expect.settle, steps.last()) {
        duration = duration.max(last.at + settle + SETTLE_CHECK);
    }
    let mut rng = Rng::new(crate::rng::hash(&[seed, 0x776f_726b]));
    let resolvers = resolvers(scenario, sim, &mut rng);
    let clients = clients(scenario, sim, &resolvers, &mut rng)?;
    let total = (scenario.workload.qps * duration.as_secs_f64()).floor() as usize;
    let queries = (0..total)
        .map(|k| {
            let at = Duration::from_secs_f64(k as f64 / scenario.workload.qps);
            (at, rng.below(clients.len() as u64) as usize)
        })
        .collect();
    Ok(Plan {
        duration,
        time_scale,
        steps,
        states,
        initial,
        resolvers,
        clients,
        queries,
        services: scenario
            .cluster
            .services
            .iter()
            .map(|s| s.name.clone())
            .collect(),
    })
}

impl Plan {
    /// The state in force at time `t`.
    pub fn state_at(&self, t: Duration) -> &NetState {
        match self.steps.iter().rposition(|s| s.at <= t) {
            Some(k) => &self.states[k],
            None => &self.initial,
        }
    }

    /// The plan for a network where a one-way cut stops traffic both ways, as it does for
    /// QUIC across a real packet filter (a handshake needs both directions): every state's
    /// cuts made symmetric.
    pub fn with_two_way_cuts(mut self) -> Self {
        for s in self
            .states
            .iter_mut()
            .chain(std::iter::once(&mut self.initial))
        {
            let n = s.n;
            for a in 0..n {
                for b in 0..n {
                    if s.cut[a * n + b] {
                        s.cut[b * n + a] = true;
                    }
                }
            }
        }
        self
    }

    /// The service query `q` asks for (index into [`Plan::services`]).
    pub fn service_of(&self, q: usize) -> usize {
        q % self.services.len().max(1)
    }

    /// Since when, at time `t`, node `x` has had POP `p` unusable for `service` without a
    /// break, if it is unusable at `t`.
    pub fn unusable_since(
        &self,
        x: usize,
        p: usize,
        service: usize,
        t: Duration,
    ) -> Option<Duration> {
        let k = self.steps.iter().rposition(|s| s.at <= t)?;
        if !self.states[k].unusable_for_service(x, p, service) {
            return None;
        }
        let mut since = self.steps[k].at;
        for j in (0..k).rev() {
            if self.states[j].unusable_for_service(x, p, service) {
                since = self.steps[j].at;
            } else {
                break;
            }
        }
        Some(since)
    }
}

/// Resolvers in ASes drawn from the workload's regions, each with its nearest nodes.
fn resolvers(scenario: &Scenario, sim: &Sim, rng: &mut Rng) -> Vec<Resolver> {
    let topo = &sim.topology;
    let w = &scenario.workload;
    let candidates: Vec<u32> = (0..topo.ases.len() as u32)
        .filter(|&i| w.regions.is_empty() || w.regions.contains(&topo.ases[i as usize].region))
        .collect();
    let count = w.resolvers;
    let with_ecs = (w.ecs * count as f64).round() as usize;
    (0..count)
        .map(|r| {
            let as_index = candidates[rng.below(candidates.len() as u64) as usize];
            let mut by_latency: Vec<usize> = (0..sim.pops.len()).collect();
            by_latency.sort_by_key(|&p| (sim.views.latency_us(p, as_index), p));
            let pos = topo.ases[as_index as usize].pos;
            let geo_pop = (0..sim.pops.len())
                .min_by(|&a, &b| {
                    let d =
                        |p: usize| pos.distance_km(topo.ases[sim.pops[p].as_index as usize].pos);
                    d(a).total_cmp(&d(b)).then(a.cmp(&b))
                })
                .unwrap_or(0);
            Resolver {
                as_index,
                primary: by_latency[0],
                secondary: *by_latency.get(1).unwrap_or(&by_latency[0]),
                // Spread the ECS resolvers over the list rather than taking the first ones.
                ecs: (r * with_ecs) / count.max(1) != ((r + 1) * with_ecs) / count.max(1),
                geo_pop,
            }
        })
        .collect()
}

/// Client prefixes drawn from the truth, each behind the resolver nearest it.
fn clients(
    scenario: &Scenario,
    sim: &Sim,
    resolvers: &[Resolver],
    rng: &mut Rng,
) -> Result<Vec<Client>, PlanError> {
    let topo = &sim.topology;
    let w = &scenario.workload;
    let eligible: Vec<usize> = sim
        .truth
        .entries
        .iter()
        .enumerate()
        .filter(|(_, e)| {
            w.regions.is_empty()
                || topo
                    .index_of(e.origin)
                    .is_some_and(|i| w.regions.contains(&topo.ases[i as usize].region))
        })
        .map(|(k, _)| k)
        .collect();
    if eligible.is_empty() {
        return Err(PlanError::NoClients(
            w.regions.iter().map(|r| r.slug().to_owned()).collect(),
        ));
    }
    // Weights for drawing: 1 each, or the address space (in /24 or /48 units).
    let weight = |k: usize| -> u64 {
        match w.choose {
            Choose::Uniform => 1,
            Choose::BySize => match sim.truth.entries[k].prefix {
                IpNet::V4(p) => 1u64 << 24u8.saturating_sub(p.prefix_len()).min(24),
                IpNet::V6(p) => 1u64 << 48u8.saturating_sub(p.prefix_len()).min(24),
            },
        }
    };
    let cumulative: Vec<u64> = eligible
        .iter()
        .scan(0u64, |acc, &k| {
            *acc += weight(k);
            Some(*acc)
        })
        .collect();
    let total = *cumulative.last().unwrap_or(&1);
    let mut out = Vec::with_capacity(w.clients);
    let mut taken = std::collections::HashSet::new();
    let mut tries = 0;
    while out.len() < w.clients.min(eligible.len()) && tries < w.clients * 50 {
        tries += 1;
        let x = rng.below(total);
        let k = eligible[cumulative.partition_point(|&c| c <= x)];
        if !taken.insert(k) {
            continue;
        }
        let e = &sim.truth.entries[k];
        let pos = topo
            .index_of(e.origin)
            .map(|i| topo.ases[i as usize].pos)
            .unwrap_or(topo.ases[0].pos);
        let resolver = (0..resolvers.len())
            .min_by(|&a, &b| {
                let d = |r: usize| pos.distance_km(topo.ases[resolvers[r].as_index as usize].pos);
                d(a).total_cmp(&d(b)).then(a.cmp(&b))
            })
            .unwrap_or(0);
        let hops = match topo.index_of(e.origin) {
            Some(i) => (0..sim.pops.len()).map(|p| sim.views.hops(p, i)).collect(),
            None => Vec::new(),
        };
        out.push(Client {
            entry: k,
            subnet: e.client,
            resolver,
            hops,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pops::PopRequest;

    fn world() -> (Scenario, Sim) {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/split-brain.toml");
        let s = Scenario::load(&path).unwrap();
        let requests: Vec<PopRequest> = s.cluster.pops.iter().map(|p| p.request.clone()).collect();
        let sim = Sim::generate(s.topology.ases, 1, &requests).unwrap();
        (s, sim)
    }

    #[test]
    fn a_partition_cuts_across_sets_only_and_heal_ends_it() {
        let s = NetState::healthy(5);
        let p = s.apply(&Action::Partition {
            sets: vec![vec![0, 1], vec![2, 3, 4]],
        });
        assert!(p.is_cut(0, 2) && p.is_cut(2, 0) && !p.is_cut(0, 1) && !p.is_cut(2, 4));
        assert!(p.hears(0, 1) && !p.hears(0, 2) && !p.hears(4, 1));
        assert_eq!((p.heard_by(0), p.heard_by(3)), (2, 3));
        assert!(p.unusable_for(0, 3) && !p.unusable_for(3, 4));
        assert_eq!(p.apply(&Action::Heal), s);
    }

    #[test]
    fn liveness_is_direct_a_down_link_is_not_bridged_and_a_one_way_cut_counts_one_way() {
        let s = NetState::healthy(3).apply(&Action::LinkDown {
            links: Links::Pairs(vec![(0, 1)]),
        });
        assert!(
            !s.hears(0, 1) && !s.hears(1, 0) && s.hears(0, 2) && s.hears(2, 1),
            "node 2 hears both, but speaks only for itself"
        );
        let c = NetState::healthy(3).apply(&Action::Cut {
            from: vec![0],
            to: vec![1, 2],
        });
        assert!(!c.hears(1, 0) && !c.hears(2, 0) && c.hears(0, 1) && c.hears(1, 2));
        let crashed = NetState::healthy(3).apply(&Action::Crash { pops: vec![2] });
        assert!(!crashed.hears(0, 2) && crashed.unusable_for(0, 2) && crashed.heard_by(0) == 2);
    }

    #[test]
    fn a_service_down_withdraws_that_service_at_that_pop_only_until_it_is_up() {
        let s = NetState::healthy(3);
        let down = s.apply(&Action::ServiceDown {
            pops: vec![1],
            service: 2,
        });
        assert!(down.unusable_for_service(0, 1, 2) && down.unusable_for_service(1, 1, 2));
        assert!(!down.unusable_for_service(0, 1, 0) && !down.unusable_for(0, 1));
        assert_eq!(down.usable_for_service(2, 2), [true, false, true]);
        assert_eq!(down.usable_for_service(2, 1), [true; 3]);
        // Network faults leave it; its service-up ends it.
        assert!(down.apply(&Action::Heal).unusable_for_service(0, 1, 2));
        let up = down.apply(&Action::ServiceUp {
            pops: vec![1],
            service: 2,
        });
        assert_eq!(up, s);
    }

    #[test]
    fn queries_take_the_services_in_turn_and_clients_know_their_hops() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/service-down.toml");
        let s = Scenario::load(&path).unwrap();
        let requests: Vec<PopRequest> = s.cluster.pops.iter().map(|p| p.request.clone()).collect();
        let sim = Sim::generate(s.topology.ases, 1, &requests).unwrap();
        let p = plan(&s, &sim, 7, 1.0).unwrap();
        assert_eq!(p.services, ["www", "api", "cdn"]);
        assert_eq!(
            (0..4).map(|q| p.service_of(q)).collect::<Vec<_>>(),
            [0, 1, 2, 0]
        );
        for c in &p.clients {
            let e = &sim.truth.entries[c.entry];
            let min = *c.hops.iter().min().unwrap();
            assert_eq!(min, e.hops);
            let nearest: Vec<usize> = (0..5).filter(|&x| c.hops[x] == min).collect();
            assert_eq!(nearest, e.by_hops);
        }
        let t = |secs| Duration::from_secs(secs);
        assert_eq!(p.unusable_since(2, 0, 1, t(20)), Some(t(15)));
        assert_eq!(p.unusable_since(2, 0, 0, t(20)), None);
        assert_eq!(p.unusable_since(2, 0, 1, t(40)), None);
    }

    #[test]
    fn the_plan_is_a_function_of_the_seed_and_scales_the_timeline() {
        let (s, sim) = world();
        let a = plan(&s, &sim, 7, 1.0).unwrap();
        let b = plan(&s, &sim, 7, 1.0).unwrap();
        assert_eq!(a.queries, b.queries);
        assert_eq!(a.clients, b.clients);
        assert_ne!(plan(&s, &sim, 8, 1.0).unwrap().queries, a.queries);
        assert_eq!(a.queries.len(), 100 * 100);
        assert_eq!(a.clients.len(), 500);
        assert_eq!(a.resolvers.len(), 20);
        assert_eq!(a.resolvers.iter().filter(|r| r.ecs).count(), 16);
        assert!(a.resolvers.iter().all(|r| r.primary != r.secondary));
        let half = plan(&s, &sim, 7, 0.5).unwrap();
        assert_eq!(half.steps[0].at, Duration::from_secs(10));
        assert_eq!(half.steps[1].at, Duration::from_secs(30));
        // Heal at 30 s + settle 10 s + the check window: the scaled 50 s just fits.
        assert_eq!(half.duration, Duration::from_secs(50));
        let quarter = plan(&s, &sim, 7, 0.25).unwrap();
        assert_eq!(quarter.duration, Duration::from_secs(15 + 10 + 10));
        assert!(plan(&s, &sim, 7, 0.0).is_err());
    }

    #[test]
    fn unusable_since_goes_back_to_the_start_of_an_unbroken_stretch() {
        let (s, sim) = world();
        let p = plan(&s, &sim, 7, 1.0).unwrap();
        let t = Duration::from_secs(40);
        assert_eq!(p.unusable_since(0, 3, 0, t), Some(Duration::from_secs(20)));
        assert_eq!(p.unusable_since(0, 1, 0, t), None);
        assert_eq!(p.unusable_since(0, 3, 0, Duration::from_secs(70)), None);
        assert_eq!(p.unusable_since(0, 3, 0, Duration::from_secs(5)), None);
    }
}
