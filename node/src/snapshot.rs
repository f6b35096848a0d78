//! [P] `Snapshot`: everything a DNS answer is computed from (config, route views, POP states),
//! immutable. A change builds a new snapshot; readers never see a half-applied change.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{LowerName, RData, Record, RecordType};
use ipnet::IpNet;
use sparrow_proto::views::ViewHeader;

use crate::cluster::state::Mode;
use crate::config::{AdminState, Config, GeoName};
use crate::policy::{self, Candidate, PolicyInput, Ranking};
use crate::routes::transfer::TransferError;
use crate::routes::{self, DecisionTable, HopRanges, RouteView};

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

/// Where a POP's route view came from, for status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ViewInfo {
    /// Version (unix ms the view was built at its source), when announced.
    pub version: Option<u64>,
    /// Digest of its transfer encoding, when known.
    pub digest: Option<u64>,
    /// Prefixes.
    pub prefixes: u64,
    /// Its source (`file views/ams.routes`, `pulled from nyc`, `bgp 192.0.2.1 AS64500`).
    pub source: String,
    /// Unix time (ms) since which the source has not been current, if it is not.
    pub stale_since_ms: Option<u64>,
}

/// Decision tables built by [`Snapshot::build_streamed`], to go into a snapshot with
/// [`Snapshot::with_streamed`].
#[derive(Debug)]
pub struct StreamedViews {
    /// The snapshot they were built from.
    base: Snapshot,
    /// Per geo name.
    decisions: Vec<Arc<DecisionTable>>,
    /// The views that went in: POP, header, description.
    pub loaded: Vec<(usize, ViewHeader, ViewInfo)>,
    /// The views left out, and why.
    pub failed: Vec<(usize, TransferError)>,
}

/// The answer records of one geo name, per POP and family, built once.
#[derive(Debug)]
struct GeoRecords {
    a: Vec<Vec<Record>>,
    aaaa: Vec<Vec<Record>>,
}

impl GeoRecords {
    /// Per POP, its records of type `rtype` (A, or AAAA for any other type).
    fn of(&self, rtype: RecordType) -> &[Vec<Record>] {
        if rtype == RecordType::A {
            &self.a
        } else {
            &self.aaaa
        }
    }
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
pub(crate) struct Gathered {
    pub(crate) candidates: Vec<Candidate>,
    pub(crate) static_pop: Option<usize>,
    pub(crate) block: IpNet,
    pub(crate) client_hash: u64,
}

/// An immutable view of everything answers depend on. Cloning shares the heavy parts.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// The configuration.
    pub config: Arc<Config>,
    /// Per POP (same index as `config.pops`).
    pub pop_status: Vec<PopStatus>,
    /// Standalone, cluster or local-only.
    pub mode: Mode,
    /// Times the mode went from cluster to local-only since the node started (for metrics:
    /// a partition shorter than a scrape interval still counts).
    pub partitions: u64,
    /// Each POP's route view as this node has it now (same index as `config.pops`): from the
    /// config at start, then replaced as views are reloaded, learned or pulled.
    views: Vec<Option<Arc<RouteView>>>,
    /// Where each view came from (same index).
    view_info: Vec<Option<ViewInfo>>,
    geo_records: Arc<[GeoRecords]>,
    /// The same with the local-only TTL.
    local_records: Arc<[GeoRecords]>,
    /// Per geo name (shared between names with the same POP list).
    decisions: Vec<Arc<DecisionTable>>,
    /// Per geo name and address family (A, AAAA): the client-independent part of its
    /// ranking over the POPs that have an address of that family, from `pop_status`.
    prepared: Arc<[[policy::Prepared; 2]]>,
    geo_index: Arc<HashMap<LowerName, usize>>,
    name_hashes: Arc<[u64]>,
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
                load: None,
            })
            .collect();
        let geo_records = build_geo_records(&config, |g| g.ttl);
        let local_records = match &config.cluster {
            Some(c) => build_geo_records(&config, |g| g.ttl.min(c.local_only_ttl)),
            None => geo_records.clone(),
        };
        let views: Vec<Option<Arc<RouteView>>> =
            config.pops.iter().map(|p| p.route_view.clone()).collect();
        let hops: Vec<Option<HopRanges>> = views
            .iter()
            .map(|v| v.as_deref().map(RouteView::hop_ranges))
            .collect();
        let decisions = decision_tables(&config, &hops);
        let view_info = config
            .pops
            .iter()
            .map(|p| {
                let view = p.route_view.as_ref()?;
                Some(ViewInfo {
                    version: None,
                    digest: None,
                    prefixes: view.len() as u64,
                    source: p
                        .route_view_path
                        .as_ref()
                        .map_or_else(|| "file".to_owned(), |f| format!("file {}", f.display())),
                    stale_since_ms: None,
                })
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
            config: Arc::new(config),
            pop_status,
            mode: Mode::Standalone,
            partitions: 0,
            views,
            view_info,
            geo_records,
            local_records,
            decisions,
            geo_index: Arc::new(geo_index),
            name_hashes,
            prepared: Arc::from([]),
        }
        .prepared()
    }

    /// The same snapshot with its per-geo-name rankings prepared from the current POP
    /// states; every change of `pop_status` goes through here.
    fn prepared(mut self) -> Self {
        let prepared: Vec<[policy::Prepared; 2]> = self
            .config
            .geo
            .iter()
            .enumerate()
            .map(|(geo, g)| {
                let candidates: Vec<Candidate> =
                    g.pops.iter().map(|&i| self.candidate(i, None)).collect();
                [RecordType::A, RecordType::AAAA].map(|t| {
                    policy::Prepared::new(
                        &candidates,
                        self.config.node.pop,
                        self.config.node.load_high_water,
                        |pop| !self.geo_records[geo].of(t)[pop].is_empty(),
                    )
                })
            })
            .collect();
        self.prepared = prepared.into();
        self
    }

    /// POP `i` as a ranking candidate with `hops` to the client.
    fn candidate(&self, i: usize, hops: Option<u8>) -> Candidate {
        let (pop, status) = (&self.config.pops[i], self.pop_status[i]);
        Candidate {
            pop: i,
            name_hash: self.name_hashes[i],
            hops,
            admin: status.admin,
            live: status.live,
            healthy: status.healthy,
            preference: pop.preference,
            weight: pop.weight,
            load: status.load,
        }
    }

    /// The same snapshot with the cluster's view of every POP and the node's mode.
    pub fn with_cluster(&self, pop_status: Vec<PopStatus>, mode: Mode) -> Self {
        let mut next = self.clone();
        if matches!(self.mode, Mode::Cluster { .. }) && mode.is_local_only() {
            next.partitions += 1;
        }
        next.pop_status = pop_status;
        next.mode = mode;
        next.prepared()
    }

    /// The same snapshot with POP `pop`'s admin state set (standalone drain).
    pub fn with_admin(&self, pop: usize, admin: AdminState) -> Self {
        let mut next = self.clone();
        next.pop_status[pop].admin = admin;
        next.prepared()
    }

    /// The same snapshot with POP `pop`'s route view replaced (`None`: no view). Rebuilds
    /// the decision tables of the geo names `pop` may serve; the others are shared.
    pub fn with_view(&self, pop: usize, view: Option<Arc<RouteView>>) -> Self {
        if let (Some(new), Some(held)) = (&view, &self.views[pop])
            && Arc::ptr_eq(new, held)
        {
            // The very view the tables were built with (the node announcing the view it
            // started with): the tables stay as they are.
            return self.clone();
        }
        let hops = view.as_deref().map(RouteView::hop_ranges);
        let mut next = self.with_columns(&[(pop, hops.as_ref())]);
        next.views[pop] = view;
        next
    }

    /// The same snapshot with the views of several POPs replaced by views pulled from their
    /// nodes (hops only: the AS paths stay with each POP's node), in one pass over each
    /// decision table.
    pub fn with_pulled(&self, pulled: &[(usize, Arc<HopRanges>, ViewInfo)]) -> Self {
        let columns: Vec<(usize, Option<&HopRanges>)> = pulled
            .iter()
            .map(|(pop, h, _)| (*pop, Some(&**h)))
            .collect();
        let mut next = self.with_columns(&columns);
        for (pop, _, info) in pulled {
            next.views[*pop] = None;
            next.view_info[*pop] = Some(info.clone());
        }
        next
    }

    /// Whether `self` answers from the same decision tables as `other` (the same views).
    pub fn same_tables(&self, other: &Self) -> bool {
        self.decisions.len() == other.decisions.len()
            && self
                .decisions
                .iter()
                .zip(&other.decisions)
                .all(|(a, b)| Arc::ptr_eq(a, b))
    }

    /// This snapshot's POP states and mode with `other`'s views and decision tables: how a
    /// rebuild computed from an older snapshot lands without undoing the state changes that
    /// came in while it ran.
    pub fn with_tables_of(&self, other: &Self) -> Self {
        let mut next = self.clone();
        next.decisions = other.decisions.clone();
        next.views = other.views.clone();
        next.view_info = other.view_info.clone();
        next
    }

    /// Replaces the hops of the given POPs in every decision table that has them as
    /// candidates.
    fn with_columns(&self, replace: &[(usize, Option<&HopRanges>)]) -> Self {
        let mut next = self.clone();
        let mut done: HashMap<*const DecisionTable, Arc<DecisionTable>> = HashMap::new();
        for (geo, g) in self.config.geo.iter().enumerate() {
            let columns: Vec<(usize, Option<&HopRanges>)> = replace
                .iter()
                .filter_map(|&(pop, h)| Some((g.pops.iter().position(|&p| p == pop)?, h)))
                .collect();
            if columns.is_empty() {
                continue;
            }
            // Names with the same POP list share one table: rebuild it once.
            let old = &self.decisions[geo];
            let new = done
                .entry(Arc::as_ptr(old))
                .or_insert_with(|| Arc::new(old.with_columns(&columns)));
            next.decisions[geo] = new.clone();
        }
        next
    }

    /// Builds the decision tables with the views of `pops` read as streams (the views a
    /// node kept on disk, at start): each table in one pass over all of them at once, so
    /// memory holds the tables being built and a few buffers per view, never a whole view.
    ///
    /// `build(table, columns)` builds one table: `table` with the columns of `columns`
    /// (`(column, pop)` pairs) replaced by POP `pop`'s view, read as a stream
    /// ([`DecisionTable::with_sources`], or [`DecisionTable::with_parts`] on several
    /// cores); it returns the table and the header of every view that went in, or the POP
    /// whose view failed and why. It is called once per distinct table, and again after a
    /// failure, so it must read the same bytes each time. A view that fails (it does not
    /// open, a frame is bad, it is short, its digest does not match) is left out and the
    /// tables are built again without it: its ranges never reach a table. `info(pop,
    /// header)` describes a view that loaded. The result goes into a snapshot with
    /// [`Self::with_streamed`].
    pub fn build_streamed(
        &self,
        pops: &[usize],
        mut build: impl FnMut(
            &DecisionTable,
            &[(usize, usize)],
        ) -> Result<
            (DecisionTable, Vec<(usize, ViewHeader)>),
            (usize, TransferError),
        >,
        info: impl Fn(usize, ViewHeader) -> ViewInfo,
    ) -> StreamedViews {
        let mut failed: Vec<(usize, TransferError)> = Vec::new();
        'pass: loop {
            let mut decisions = self.decisions.clone();
            let mut headers: Vec<(usize, ViewHeader)> = Vec::new();
            let mut done: HashMap<*const DecisionTable, Arc<DecisionTable>> = HashMap::new();
            for (geo, g) in self.config.geo.iter().enumerate() {
                let old = &self.decisions[geo];
                if let Some(table) = done.get(&Arc::as_ptr(old)) {
                    decisions[geo] = table.clone();
                    continue;
                }
                let columns: Vec<(usize, usize)> = pops
                    .iter()
                    .filter(|&&pop| failed.iter().all(|&(p, _)| p != pop))
                    .filter_map(|&pop| Some((g.pops.iter().position(|&p| p == pop)?, pop)))
                    .collect();
                if columns.is_empty() {
                    continue;
                }
                match build(old, &columns) {
                    Ok((table, read)) => {
                        for (pop, header) in read {
                            if headers.iter().all(|&(p, _)| p != pop) {
                                headers.push((pop, header));
                            }
                        }
                        let table = Arc::new(table);
                        done.insert(Arc::as_ptr(old), table.clone());
                        decisions[geo] = table;
                    }
                    Err(failure) => {
                        failed.push(failure);
                        continue 'pass;
                    }
                }
            }
            let loaded = headers
                .into_iter()
                .map(|(pop, header)| (pop, header, info(pop, header)))
                .collect();
            return StreamedViews {
                base: self.clone(),
                decisions,
                loaded,
                failed,
            };
        }
    }

    /// This snapshot with the tables and views of `streamed` in. `streamed` was built from
    /// an earlier snapshot; POPs whose views changed since (the own POP's view source may
    /// publish during a long load) are merged again from this snapshot's views, in one
    /// more pass. `None` if one of them is a view this snapshot holds as hops only (a pull
    /// landed meanwhile): the caller builds again from this snapshot.
    pub fn with_streamed(&self, streamed: &StreamedViews) -> Option<Self> {
        let base = &streamed.base;
        let same = |a: &Option<Arc<RouteView>>, b: &Option<Arc<RouteView>>| match (a, b) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        };
        let mut changed = Vec::new();
        for pop in 0..self.views.len() {
            if same(&self.views[pop], &base.views[pop])
                && self.view_info[pop] == base.view_info[pop]
            {
                continue;
            }
            match (&self.views[pop], &self.view_info[pop]) {
                (Some(view), _) => changed.push((pop, Some(view.hop_ranges()))),
                (None, None) => changed.push((pop, None)),
                (None, Some(_)) => return None,
            }
        }
        let mut next = self.clone();
        next.decisions = streamed.decisions.clone();
        for (pop, _, info) in &streamed.loaded {
            if changed.iter().all(|(p, _)| p != pop) {
                next.views[*pop] = None;
                next.view_info[*pop] = Some(info.clone());
            }
        }
        if changed.is_empty() {
            return Some(next);
        }
        let columns: Vec<(usize, Option<&HopRanges>)> =
            changed.iter().map(|(pop, h)| (*pop, h.as_ref())).collect();
        Some(next.with_columns(&columns))
    }

    /// POP `pop`'s route view, if this node has one.
    pub fn view(&self, pop: usize) -> Option<&Arc<RouteView>> {
        self.views[pop].as_ref()
    }

    /// Where POP `pop`'s route view came from.
    pub fn view_info(&self, pop: usize) -> Option<&ViewInfo> {
        self.view_info[pop].as_ref()
    }

    /// The same snapshot with POP `pop`'s view and where it came from replaced.
    pub fn with_view_from(
        &self,
        pop: usize,
        view: Option<Arc<RouteView>>,
        info: Option<ViewInfo>,
    ) -> Self {
        let mut next = self.with_view(pop, view);
        next.view_info[pop] = info;
        next
    }

    /// The same snapshot with only the description of POP `pop`'s view changed (e.g. its
    /// source went stale).
    pub fn with_view_info(&self, pop: usize, info: Option<ViewInfo>) -> Self {
        let mut next = self.clone();
        next.view_info[pop] = info;
        next
    }

    /// The same snapshot with POP `pop`'s load set (standalone load probe).
    pub fn with_load(&self, pop: usize, load: Option<f32>) -> Self {
        let mut next = self.clone();
        next.pop_status[pop].load = load;
        next.prepared()
    }

    /// The same snapshot with POP `pop`'s health set to `healthy`.
    pub fn with_health(&self, pop: usize, healthy: bool) -> Self {
        let mut next = self.clone();
        next.pop_status[pop].healthy = healthy;
        next.prepared()
    }

    /// The geo name at `name`, if it is one (index into `config.geo`).
    pub fn geo_index(&self, name: &LowerName) -> Option<usize> {
        self.geo_index.get(name).copied()
    }

    /// The answer records of `pop` for geo name `geo` and type A or AAAA.
    pub fn geo_records(&self, geo: usize, pop: usize, rtype: RecordType) -> &[Record] {
        let g = if self.mode.is_local_only() {
            &self.local_records[geo]
        } else {
            &self.geo_records[geo]
        };
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

    /// The first `k` POPs of [`Self::route`]'s ranking that have an address of type `rtype`
    /// (A, or AAAA for any other type): what an answer needs, computed without ranking the
    /// POPs it will not hand out.
    pub fn route_first(&self, geo: usize, client: IpAddr, k: usize, rtype: RecordType) -> Routed {
        let client = client.to_canonical();
        let (row, span) = self.decisions[geo].lookup(client);
        let (block, client_hash) = block_of(client, span);
        let static_pop = row
            .static_column()
            .map(|column| self.config.geo[geo].pops[column]);
        let family = usize::from(rtype != RecordType::A);
        let ranking =
            self.prepared[geo][family].rank_first(row.hop_bytes(), static_pop, client_hash, k);
        Routed { ranking, block }
    }

    pub(crate) fn policy_input<'a>(&self, g: &'a Gathered) -> PolicyInput<'a> {
        PolicyInput {
            candidates: &g.candidates,
            own_pop: self.config.node.pop,
            static_pop: g.static_pop,
            client_hash: g.client_hash,
            high_water: self.config.node.load_high_water,
        }
    }

    /// The decision table of geo name `geo`.
    pub fn decision_table(&self, geo: usize) -> &DecisionTable {
        &self.decisions[geo]
    }

    /// Gathers what the policy needs for this client from the geo name's decision table,
    /// and the block of clients for which all of it is the same.
    pub(crate) fn gather(&self, geo: usize, client: IpAddr) -> Gathered {
        let client = client.to_canonical();
        let (row, span) = self.decisions[geo].lookup(client);
        let pops = &self.config.geo[geo].pops;
        let candidates = pops
            .iter()
            .enumerate()
            .map(|(column, &i)| self.candidate(i, row.hops(column)))
            .collect();
        let (block, client_hash) = block_of(client, span);
        Gathered {
            candidates,
            static_pop: row.static_column().map(|column| pops[column]),
            block,
            client_hash,
        }
    }
}

/// The block of clients around `client` that the decision-table range `span` holds, and its
/// stable hash (the key of rendezvous hashing).
fn block_of(client: IpAddr, span: routes::Hit) -> (IpNet, u64) {
    let (addr, bits) = match client {
        IpAddr::V4(a) => (u128::from(u32::from(a)), 32),
        IpAddr::V6(a) => (u128::from(a), 128),
    };
    let len = routes::enclosing_block(addr, span.lo, span.hi, bits);
    // INVARIANT: enclosing_block returns a length within the family's width.
    let block = IpNet::new(client, len)
        .expect("block length within address width")
        .trunc();
    let mut key = [0u8; 17];
    match block.network() {
        IpAddr::V4(a) => key[..4].copy_from_slice(&a.octets()),
        IpAddr::V6(a) => key[..16].copy_from_slice(&a.octets()),
    }
    key[16] = len;
    (block, policy::stable_hash(&key))
}

/// The A and AAAA records of every POP for every geo name, with TTLs from `ttl`.
fn build_geo_records(config: &Config, ttl: impl Fn(&GeoName) -> u32) -> Arc<[GeoRecords]> {
    let records =
        |g: &GeoName, rdata: &dyn Fn(&crate::config::Pop) -> Vec<RData>| -> Vec<Vec<Record>> {
            config
                .pops
                .iter()
                .map(|p| {
                    rdata(p)
                        .into_iter()
                        .map(|d| Record::from_rdata(g.name.clone(), ttl(g), d))
                        .collect()
                })
                .collect()
        };
    config
        .geo
        .iter()
        .map(|g| GeoRecords {
            a: records(g, &|p| p.v4.iter().map(|ip| RData::A(A(*ip))).collect()),
            aaaa: records(g, &|p| {
                p.v6.iter().map(|ip| RData::AAAA(AAAA(*ip))).collect()
            }),
        })
        .collect()
}

/// The decision table of every geo name (names with the same POP list share one).
fn decision_tables(config: &Config, hops: &[Option<HopRanges>]) -> Vec<Arc<DecisionTable>> {
    let mut by_pops: HashMap<&[usize], Arc<DecisionTable>> = HashMap::new();
    config
        .geo
        .iter()
        .map(|g| {
            by_pops
                .entry(&g.pops)
                .or_insert_with(|| Arc::new(decision_table(config, hops, &g.pops)))
                .clone()
        })
        .collect()
}

/// The decision table over the views of `pops` and the static map.
fn decision_table(config: &Config, hops: &[Option<HopRanges>], pops: &[usize]) -> DecisionTable {
    let views: Vec<Option<&HopRanges>> = pops.iter().map(|&i| hops[i].as_ref()).collect();
    DecisionTable::build(&views, config.static_map.as_deref(), |pop| {
        pops.iter().position(|&p| p == pop)
    })
}
