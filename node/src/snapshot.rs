//! [P] `Snapshot`: everything a DNS answer is computed from (config, route views, POP states),
//! immutable. A change builds a new snapshot; readers never see a half-applied change.

use std::collections::HashMap;
use std::net::IpAddr;

use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{LowerName, RData, Record, RecordType};
use ipnet::IpNet;

use crate::config::{AdminState, Config};
use crate::policy::{self, Candidate, PolicyInput, Ranking};
use crate::routes::{self, RouteView};

/// A route view entry: prefix and AS path.
pub(crate) type RouteEntry = (IpNet, Box<[u32]>);

/// What the node currently believes about a POP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PopStatus {
    /// Up, as far as this node can tell.
    pub live: bool,
    /// Passing its health checks.
    pub healthy: bool,
    /// Operator state.
    pub admin: AdminState,
}

/// The answer records of one geo name, per POP and family, built once.
#[derive(Debug)]
struct GeoRecords {
    a: Vec<Vec<Record>>,
    aaaa: Vec<Vec<Record>>,
}

/// A routing decision for one client and one geo name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Routed {
    /// POPs best first.
    pub ranking: Ranking,
    /// The block of clients sure to get the same decision (its length is the ECS scope).
    pub block: IpNet,
}

/// The routing inputs gathered for one client (shared by `route` and `explain`).
pub(crate) struct Gathered<'s> {
    pub(crate) candidates: Vec<Candidate>,
    pub(crate) static_hit: Option<&'s (IpNet, usize)>,
    pub(crate) routes: Vec<Option<&'s RouteEntry>>,
    pub(crate) block: IpNet,
    pub(crate) client_hash: u64,
}

/// An immutable view of everything answers depend on.
#[derive(Debug)]
pub struct Snapshot {
    /// The configuration.
    pub config: Config,
    /// Per POP (same index as `config.pops`).
    pub pop_status: Vec<PopStatus>,
    geo_records: Vec<GeoRecords>,
    geo_index: HashMap<LowerName, usize>,
    name_hashes: Vec<u64>,
}

impl Snapshot {
    /// A snapshot of a single node that knows only its config: every POP live and healthy,
    /// admin state as configured.
    pub fn from_config(config: Config) -> Self {
        let pop_status = config
            .pops
            .iter()
            .map(|p| PopStatus {
                live: true,
                healthy: true,
                admin: p.admin,
            })
            .collect();
        let geo_records = config
            .geo
            .iter()
            .map(|g| GeoRecords {
                a: config
                    .pops
                    .iter()
                    .map(|p| {
                        p.v4.iter()
                            .map(|ip| Record::from_rdata(g.name.clone(), g.ttl, RData::A(A(*ip))))
                            .collect()
                    })
                    .collect(),
                aaaa: config
                    .pops
                    .iter()
                    .map(|p| {
                        p.v6.iter()
                            .map(|ip| {
                                Record::from_rdata(g.name.clone(), g.ttl, RData::AAAA(AAAA(*ip)))
                            })
                            .collect()
                    })
                    .collect(),
            })
            .collect();
        let geo_index = config
            .geo
            .iter()
            .enumerate()
            .map(|(i, g)| (LowerName::from(&g.name), i))
            .collect();
        let name_hashes = config
            .pops
            .iter()
            .map(|p| policy::stable_hash(p.name.as_bytes()))
            .collect();
        Self {
            config,
            pop_status,
            geo_records,
            geo_index,
            name_hashes,
        }
    }

    /// The geo name at `name`, if it is one (index into `config.geo`).
    pub fn geo_index(&self, name: &LowerName) -> Option<usize> {
        self.geo_index.get(name).copied()
    }

    /// The answer records of `pop` for geo name `geo` and type A or AAAA.
    pub fn geo_records(&self, geo: usize, pop: usize, rtype: RecordType) -> &[Record] {
        let g = &self.geo_records[geo];
        match rtype {
            RecordType::A => &g.a[pop],
            RecordType::AAAA => &g.aaaa[pop],
            _ => &[],
        }
    }

    /// Decides which POPs serve `client` for geo name `geo`.
    pub fn route(&self, geo: usize, client: IpAddr) -> Routed {
        let g = self.gather(geo, client);
        let ranking = policy::rank(&self.policy_input(&g));
        Routed {
            ranking,
            block: g.block,
        }
    }

    pub(crate) fn policy_input<'a>(&self, g: &'a Gathered<'_>) -> PolicyInput<'a> {
        PolicyInput {
            candidates: &g.candidates,
            own_pop: self.config.node.pop,
            static_pop: g.static_hit.map(|(_, pop)| *pop),
            client_hash: g.client_hash,
        }
    }

    /// Looks the client up in every candidate POP's view and the static map, and computes
    /// the block of addresses for which all those lookups give the same results.
    pub(crate) fn gather(&self, geo: usize, client: IpAddr) -> Gathered<'_> {
        let client = client.to_canonical();
        let (addr, bits) = match client {
            IpAddr::V4(a) => (u128::from(u32::from(a)), 32),
            IpAddr::V6(a) => (u128::from(a), 128),
        };
        let (mut lo, mut hi) = (
            0u128,
            if bits == 32 {
                u128::from(u32::MAX)
            } else {
                u128::MAX
            },
        );
        let mut narrow = |span: routes::Hit| {
            lo = lo.max(span.lo);
            hi = hi.min(span.hi);
        };
        let pops = &self.config.geo[geo].pops;
        let mut candidates = Vec::with_capacity(pops.len());
        let mut found = Vec::with_capacity(pops.len());
        for &i in pops {
            let pop = &self.config.pops[i];
            let route = pop.route_view.as_deref().and_then(|view: &RouteView| {
                let hit = view.lookup(client);
                narrow(hit.span);
                hit.entry
            });
            found.push(route);
            let status = self.pop_status[i];
            candidates.push(Candidate {
                pop: i,
                name_hash: self.name_hashes[i],
                hops: route.map(|(_, path)| RouteView::hops_of(path)),
                admin: status.admin,
                live: status.live,
                healthy: status.healthy,
                preference: pop.preference,
                weight: pop.weight,
            });
        }
        let static_hit = self.config.static_map.as_deref().and_then(|map| {
            let hit = map.lookup(client);
            narrow(hit.span);
            hit.entry
        });
        let len = routes::enclosing_block(addr, lo, hi, bits);
        // INVARIANT: enclosing_block returns a length within the family's width.
        let block = IpNet::new(client, len)
            .expect("block length within address width")
            .trunc();
        let mut key = Vec::with_capacity(17);
        match block.network() {
            IpAddr::V4(a) => key.extend(a.octets()),
            IpAddr::V6(a) => key.extend(a.octets()),
        }
        key.push(len);
        Gathered {
            candidates,
            static_hit,
            routes: found,
            block,
            client_hash: policy::stable_hash(&key),
        }
    }
}
