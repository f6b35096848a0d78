//! [P] `Snapshot`: everything a DNS answer is computed from (config, route views, POP states),
//! immutable. A change builds a new snapshot; readers never see a half-applied change.
//!
//! Its heavy part, [`Tables`] (the decision table of every geo name and the views they were
//! built from), changes only with route views and is shared between snapshots; the light
//! part (POP states, mode, the rankings prepared from them) changes with every probe verdict
//! or gossip update. Only the node's state owner (`crate::state`) builds snapshots.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

use hickory_proto::rr::rdata::svcb::{Alpn, IpHint, SVCB, SvcParamKey, SvcParamValue};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, HTTPS};
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};
use ipnet::IpNet;
use sparrow_proto::views::ViewHeader;

use crate::cluster::state::{AdminBy, Mode, PeerView, PopStatus, ServiceStatus};
use crate::config::{Config, GeoName, HttpsRecord, Target, WhenDown};
use crate::dns::table::AnswerTable;
use crate::policy::{self, AdminState, Candidate, PolicyInput, Ranking};
use crate::routes::transfer::TransferError;
use crate::routes::{self, DecisionTable, HopRanges, RouteView};

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

/// Decision tables built by [`Tables::build_streamed`], to go into [`Tables`] with
/// [`Tables::with_streamed`].
#[derive(Debug)]
pub struct StreamedViews {
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
    /// The fallback's records (`when_down = "fallback"`), per family as above.
    fallback_a: Vec<Record>,
    fallback_aaaa: Vec<Record>,
    /// Per POP, its steered HTTPS record (empty without `[geo.https]`).
    https: Vec<Vec<Record>>,
}

impl GeoRecords {
    /// Per POP, its records of type `rtype` (A, HTTPS, or AAAA for any other type).
    fn of(&self, rtype: RecordType) -> &[Vec<Record>] {
        match rtype {
            RecordType::A => &self.a,
            RecordType::HTTPS => &self.https,
            _ => &self.aaaa,
        }
    }
}

/// The families answers are ranked for, each over the POPs that have records of it: A,
/// AAAA, HTTPS ([`family`] maps a type to its index).
const FAMILIES: [RecordType; 3] = [RecordType::A, RecordType::AAAA, RecordType::HTTPS];

/// The index in [`FAMILIES`] of the records of type `rtype` (AAAA for any other type).
fn family(rtype: RecordType) -> usize {
    match rtype {
        RecordType::A => 0,
        RecordType::HTTPS => 2,
        _ => 1,
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
    pub(crate) max_hops: Option<u8>,
    pub(crate) static_pop: Option<usize>,
    pub(crate) block: IpNet,
    pub(crate) client_hash: u64,
}

/// The heavy part of a snapshot: each POP's route view as this node has it and the decision
/// table of every geo name built over them. Pure functions of (config, views); a changed
/// view makes new tables, sharing the tables of the geo names it does not touch.
#[derive(Clone, Debug)]
pub struct Tables {
    /// Each POP's route view as this node reads it (same index as `config.pops`): from the
    /// config at start, then the own POP's source; pulled views are held as hops only and
    /// leave `None` here.
    views: Vec<Option<Arc<RouteView>>>,
    /// Where each view came from (same index).
    view_info: Vec<Option<ViewInfo>>,
    /// Per geo name (shared between names with the same POP list).
    decisions: Vec<Arc<DecisionTable>>,
}

impl Tables {
    /// The tables over the route views the config names.
    pub fn from_config(config: &Config) -> Self {
        let views: Vec<Option<Arc<RouteView>>> =
            config.pops.iter().map(|p| p.route_view.clone()).collect();
        let hops: Vec<Option<HopRanges>> = views
            .iter()
            .map(|v| v.as_deref().map(RouteView::hop_ranges))
            .collect();
        let decisions = decision_tables(config, &hops);
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
        Self {
            views,
            view_info,
            decisions,
        }
    }

    /// POP `pop`'s route view, if this node reads one.
    pub fn view(&self, pop: usize) -> Option<&Arc<RouteView>> {
        self.views[pop].as_ref()
    }

    /// Where POP `pop`'s route view came from.
    pub fn view_info(&self, pop: usize) -> Option<&ViewInfo> {
        self.view_info[pop].as_ref()
    }

    /// The same tables with POP `pop`'s route view replaced (`None`: no view) and described
    /// by `info`. Rebuilds the decision tables of the geo names `pop` may serve; the others
    /// are shared.
    pub fn with_view(
        &self,
        config: &Config,
        pop: usize,
        view: Option<Arc<RouteView>>,
        info: Option<ViewInfo>,
    ) -> Self {
        let same = match (&view, &self.views[pop]) {
            (Some(new), Some(held)) => Arc::ptr_eq(new, held),
            (None, None) => self.view_info[pop].is_none(),
            _ => false,
        };
        let mut next = if same {
            // The very view the tables were built with: the tables stay as they are.
            self.clone()
        } else {
            let hops = view.as_deref().map(RouteView::hop_ranges);
            self.with_columns(config, &[(pop, hops.as_ref())])
        };
        next.views[pop] = view;
        next.view_info[pop] = info;
        next
    }

    /// The same tables with the views of several POPs replaced by views pulled from their
    /// nodes (hops only: the AS paths stay with each POP's node), in one pass over each
    /// decision table.
    pub fn with_pulled(
        &self,
        config: &Config,
        pulled: &[(usize, Arc<HopRanges>, ViewInfo)],
    ) -> Self {
        let columns: Vec<(usize, Option<&HopRanges>)> = pulled
            .iter()
            .map(|(pop, h, _)| (*pop, Some(&**h)))
            .collect();
        let mut next = self.with_columns(config, &columns);
        for (pop, _, info) in pulled {
            next.views[*pop] = None;
            next.view_info[*pop] = Some(info.clone());
        }
        next
    }

    /// The same tables with only the description of POP `pop`'s view changed (e.g. its
    /// source went stale): nothing is rebuilt.
    pub fn with_view_info(&self, pop: usize, info: Option<ViewInfo>) -> Self {
        let mut next = self.clone();
        next.view_info[pop] = info;
        next
    }

    /// Replaces the hops of the given POPs in every decision table that has them as
    /// candidates.
    fn with_columns(&self, config: &Config, replace: &[(usize, Option<&HopRanges>)]) -> Self {
        let mut next = self.clone();
        let mut done: HashMap<*const DecisionTable, Arc<DecisionTable>> = HashMap::new();
        for (geo, g) in config.geo.iter().enumerate() {
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
    /// header)` describes a view that loaded. The result goes in with
    /// [`Self::with_streamed`].
    pub fn build_streamed(
        &self,
        config: &Config,
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
            for (geo, g) in config.geo.iter().enumerate() {
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
                decisions,
                loaded,
                failed,
            };
        }
    }

    /// These tables with the decision tables of `streamed` (built from these tables) and
    /// the views that went into them, held as hops only.
    pub fn with_streamed(&self, streamed: &StreamedViews) -> Self {
        let mut next = self.clone();
        next.decisions = streamed.decisions.clone();
        for (pop, _, info) in &streamed.loaded {
            next.views[*pop] = None;
            next.view_info[*pop] = Some(info.clone());
        }
        next
    }

    /// The decision table of geo name `geo`.
    pub fn decision_table(&self, geo: usize) -> &DecisionTable {
        &self.decisions[geo]
    }

    /// Whether `self` and `other` are the same tables: the same decision tables (by
    /// pointer), views (by pointer) and descriptions.
    pub fn same_as(&self, other: &Self) -> bool {
        let same_view = |a: &Option<Arc<RouteView>>, b: &Option<Arc<RouteView>>| match (a, b) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        };
        self.decisions.len() == other.decisions.len()
            && self
                .decisions
                .iter()
                .zip(&other.decisions)
                .all(|(a, b)| Arc::ptr_eq(a, b))
            && self.views.len() == other.views.len()
            && self
                .views
                .iter()
                .zip(&other.views)
                .all(|(a, b)| same_view(a, b))
            && self.view_info == other.view_info
    }
}

/// An immutable view of everything answers depend on. Cloning shares the heavy parts.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// The configuration.
    pub config: Arc<Config>,
    /// Per POP (same index as `config.pops`).
    pub pop_status: Vec<PopStatus>,
    /// Who set each POP's admin state, when an operator did (same index).
    pub admin_by: Vec<Option<AdminBy>>,
    /// Per POP (same index): its services that are down or drained there. A service is
    /// handed out at a POP only if the POP and the service both are.
    pub services: Arc<[ServiceStatus]>,
    /// Standalone, cluster or local-only.
    pub mode: Mode,
    /// What every other POP's node says of itself and whether it is alive (same index; the
    /// own POP's entry is unused).
    pub peers: Arc<[PeerView]>,
    /// Times the mode went from cluster to local-only since the node started (for metrics:
    /// a partition shorter than a scrape interval still counts).
    pub partitions: u64,
    tables: Tables,
    geo_records: Arc<[GeoRecords]>,
    /// The same with the local-only TTL.
    local_records: Arc<[GeoRecords]>,
    /// Per geo name and address family (A, AAAA): the client-independent part of its
    /// ranking over the POPs that have an address of that family, from `pop_status`.
    prepared: Arc<[[policy::Prepared; 3]]>,
    /// hashbrown's (foldhash): the keys are the config's names, so no flooding, and a
    /// lookup per geo query costs a fraction of std's SipHash.
    geo_index: Arc<hashbrown::HashMap<LowerName, usize>>,
    name_hashes: Arc<[u64]>,
    /// The UDP fast path's precomputed responses for this config, filled once
    /// (`dns::fast::prepare`, which the state owner calls before publishing) and shared
    /// by every snapshot derived from this one: they depend on the config alone.
    answer_table: Arc<OnceLock<AnswerTable>>,
}

impl Snapshot {
    /// A snapshot of a node that knows only its config: every POP live and healthy, admin
    /// state as configured, views as the config names them.
    pub fn from_config(config: Config) -> Self {
        let tables = Tables::from_config(&config);
        Self::new(Arc::new(config), tables)
    }

    /// A snapshot of `config` with `tables` (built for it) and every POP live and healthy,
    /// admin state as configured.
    pub fn new(config: Arc<Config>, tables: Tables) -> Self {
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
            admin_by: vec![None; config.pops.len()],
            services: vec![ServiceStatus::default(); config.pops.len()].into(),
            peers: vec![PeerView::default(); config.pops.len()].into(),
            config,
            pop_status,
            mode: Mode::Standalone,
            partitions: 0,
            tables,
            geo_records,
            local_records,
            geo_index: Arc::new(geo_index),
            name_hashes,
            prepared: Arc::from([]),
            answer_table: Arc::default(),
        }
        .prepared()
    }

    /// The same snapshot with its per-geo-name rankings prepared from the current POP
    /// states; every change of `pop_status` goes through here.
    fn prepared(mut self) -> Self {
        let prepared: Vec<[policy::Prepared; 3]> = self
            .config
            .geo
            .iter()
            .enumerate()
            .map(|(geo, g)| {
                let candidates: Vec<Candidate> = g
                    .pops
                    .iter()
                    .map(|&i| self.candidate(geo, i, None))
                    .collect();
                FAMILIES.map(|t| {
                    policy::Prepared::new(
                        &candidates,
                        self.config.node.pop,
                        self.config.node.load_high_water,
                        g.max_hops,
                        |pop| !self.geo_records[geo].of(t)[pop].is_empty(),
                    )
                })
            })
            .collect();
        self.prepared = prepared.into();
        self
    }

    /// POP `i` as a ranking candidate for geo name `geo` with `hops` to the client: healthy
    /// if the POP and its service `geo` are, drained if either is.
    fn candidate(&self, geo: usize, i: usize, hops: Option<u8>) -> Candidate {
        let (pop, status) = (&self.config.pops[i], self.pop_status[i]);
        let service = &self.services[i];
        Candidate {
            pop: i,
            name_hash: self.name_hashes[i],
            hops,
            admin: if service.is_drained(geo) {
                AdminState::Drained
            } else {
                status.admin
            },
            live: status.live,
            healthy: status.healthy && !service.is_down(geo),
            group: self.config.geo[geo].groups[i],
            canary: self.config.geo[geo].canary[i],
            preference: pop.preference,
            weight: self.config.geo[geo].weights[i],
            load: status.load,
        }
    }

    /// The same snapshot with every POP's status and the node's mode replaced.
    pub fn with_status(
        &self,
        pop_status: Vec<PopStatus>,
        admin_by: Vec<Option<AdminBy>>,
        mode: Mode,
    ) -> Self {
        let mut next = self.clone();
        if matches!(self.mode, Mode::Cluster { .. }) && mode.is_local_only() {
            next.partitions += 1;
        }
        next.pop_status = pop_status;
        next.admin_by = admin_by;
        next.mode = mode;
        next.prepared()
    }

    /// The same snapshot with every POP's service states replaced.
    pub fn with_services(&self, services: Vec<ServiceStatus>) -> Self {
        if *self.services == *services {
            return self.clone();
        }
        let mut next = self.clone();
        next.services = services.into();
        next.prepared()
    }

    /// The same snapshot with what the node knows of its peers replaced (nothing it answers
    /// from: status and confirmations read it).
    pub fn with_peers(&self, peers: Vec<PeerView>) -> Self {
        let mut next = self.clone();
        if *next.peers != *peers {
            next.peers = peers.into();
        }
        next
    }

    /// The same snapshot answering from `tables` (built from this snapshot's config).
    pub fn with_tables(&self, tables: Tables) -> Self {
        let mut next = self.clone();
        next.tables = tables;
        next
    }

    /// The route views and decision tables answers come from.
    pub fn tables(&self) -> &Tables {
        &self.tables
    }

    /// The same snapshot with POP `pop`'s admin state set (tests).
    #[cfg(test)]
    pub(crate) fn with_admin(&self, pop: usize, admin: AdminState) -> Self {
        let mut status = self.pop_status.clone();
        status[pop].admin = admin;
        self.with_status(status, self.admin_by.clone(), self.mode)
    }

    /// The same snapshot with POP `pop`'s load set (tests).
    #[cfg(test)]
    pub(crate) fn with_load(&self, pop: usize, load: Option<f32>) -> Self {
        let mut status = self.pop_status.clone();
        status[pop].load = load;
        self.with_status(status, self.admin_by.clone(), self.mode)
    }

    /// The same snapshot with POP `pop`'s health set (tests).
    #[cfg(test)]
    pub(crate) fn with_health(&self, pop: usize, healthy: bool) -> Self {
        let mut status = self.pop_status.clone();
        status[pop].healthy = healthy;
        self.with_status(status, self.admin_by.clone(), self.mode)
    }

    /// The same snapshot with service `geo` down (`true`) or up at POP `pop` (tests).
    #[cfg(test)]
    pub(crate) fn with_service_down(&self, pop: usize, geo: usize, down: bool) -> Self {
        let mut services = self.services.to_vec();
        services[pop].down.retain(|&g| g != geo);
        if down {
            services[pop].down.push(geo);
            services[pop].down.sort_unstable();
        }
        self.with_services(services)
    }

    /// The same snapshot with POP `pop`'s route view replaced (tests).
    #[cfg(test)]
    pub(crate) fn with_view(&self, pop: usize, view: Option<Arc<RouteView>>) -> Self {
        self.with_tables(self.tables.with_view(&self.config, pop, view, None))
    }

    /// POP `pop`'s route view, if this node reads one.
    pub fn view(&self, pop: usize) -> Option<&Arc<RouteView>> {
        self.tables.view(pop)
    }

    /// Where POP `pop`'s route view came from.
    pub fn view_info(&self, pop: usize) -> Option<&ViewInfo> {
        self.tables.view_info(pop)
    }

    /// The geo name at `name`, if it is one (index into `config.geo`).
    pub fn geo_index(&self, name: &LowerName) -> Option<usize> {
        self.geo_index.get(name).copied()
    }

    /// The slot of this config's precomputed responses (`dns::table`).
    pub fn answer_table(&self) -> &OnceLock<AnswerTable> {
        &self.answer_table
    }

    /// The answer records of `pop` for geo name `geo` and type A or AAAA (for a CNAME
    /// service: its CNAME, whatever the type), with the TTL of local-only answers if
    /// `local_only`, whatever the mode.
    pub fn geo_records_of(
        &self,
        geo: usize,
        pop: usize,
        rtype: RecordType,
        local_only: bool,
    ) -> &[Record] {
        let g = if local_only {
            &self.local_records[geo]
        } else {
            &self.geo_records[geo]
        };
        match rtype {
            RecordType::A => &g.a[pop],
            RecordType::AAAA => &g.aaaa[pop],
            RecordType::HTTPS => &g.https[pop],
            _ => &[],
        }
    }

    /// The records of geo name `geo`'s fallback (its `[geo.fallback]`, answered when every
    /// POP is down for it) of type A or AAAA (a CNAME fallback: its CNAME, whatever the
    /// type); empty without a fallback.
    pub fn geo_fallback(&self, geo: usize, rtype: RecordType) -> &[Record] {
        let g = if self.mode.is_local_only() {
            &self.local_records[geo]
        } else {
            &self.geo_records[geo]
        };
        match rtype {
            RecordType::A => &g.fallback_a,
            RecordType::AAAA => &g.fallback_aaaa,
            _ => &[],
        }
    }

    /// The answer records of `pop` for geo name `geo` and type A or AAAA.
    pub fn geo_records(&self, geo: usize, pop: usize, rtype: RecordType) -> &[Record] {
        self.geo_records_of(geo, pop, rtype, self.mode.is_local_only())
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
        let mut order = Vec::new();
        let (block, failed_open) = self.route_first_into(geo, client, k, rtype, &mut order);
        Routed {
            ranking: Ranking { order, failed_open },
            block,
        }
    }

    /// [`Self::route_first`] writing the POPs into `order` (cleared first); returns the
    /// block and whether the ranking failed open. Allocates nothing for one POP.
    pub fn route_first_into(
        &self,
        geo: usize,
        client: IpAddr,
        k: usize,
        rtype: RecordType,
        order: &mut Vec<usize>,
    ) -> (IpNet, bool) {
        let client = client.to_canonical();
        let (row, span) = self.tables.decisions[geo].lookup(client);
        let (block, client_hash) = block_of(client, span);
        let static_pop = row
            .static_column()
            .map(|column| self.config.geo[geo].pops[column]);
        let family = family(rtype);
        let failed_open = self.prepared[geo][family].rank_first_into(
            row.hop_bytes(),
            static_pop,
            client_hash,
            k,
            order,
        );
        (block, failed_open)
    }

    pub(crate) fn policy_input<'a>(&self, g: &'a Gathered) -> PolicyInput<'a> {
        PolicyInput {
            candidates: &g.candidates,
            own_pop: self.config.node.pop,
            static_pop: g.static_pop,
            client_hash: g.client_hash,
            high_water: self.config.node.load_high_water,
            max_hops: g.max_hops,
        }
    }

    /// The decision table of geo name `geo`.
    pub fn decision_table(&self, geo: usize) -> &DecisionTable {
        self.tables.decision_table(geo)
    }

    /// Gathers what the policy needs for this client from the geo name's decision table,
    /// and the block of clients for which all of it is the same.
    pub(crate) fn gather(&self, geo: usize, client: IpAddr) -> Gathered {
        let client = client.to_canonical();
        let (row, span) = self.tables.decisions[geo].lookup(client);
        let pops = &self.config.geo[geo].pops;
        let candidates = pops
            .iter()
            .enumerate()
            .map(|(column, &i)| self.candidate(geo, i, row.hops(column)))
            .collect();
        let (block, client_hash) = block_of(client, span);
        Gathered {
            candidates,
            max_hops: self.config.geo[geo].max_hops,
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

/// The answer records of every POP for every geo name, with TTLs from `ttl`: its target's
/// A and AAAA records, or its CNAME (then in both columns, so that both families rank the
/// same POPs).
fn build_geo_records(config: &Config, ttl: impl Fn(&GeoName) -> u32) -> Arc<[GeoRecords]> {
    let v4 = |t: &Target| match t {
        Target::Addresses { v4, .. } => v4.iter().map(|ip| RData::A(A(*ip))).collect(),
        Target::Cname(n) => vec![RData::CNAME(CNAME(n.clone()))],
    };
    let v6 = |t: &Target| match t {
        Target::Addresses { v6, .. } => v6.iter().map(|ip| RData::AAAA(AAAA(*ip))).collect(),
        Target::Cname(n) => vec![RData::CNAME(CNAME(n.clone()))],
    };
    let records = |g: &GeoName, t: Option<&Target>, rdata: &dyn Fn(&Target) -> Vec<RData>| {
        t.map(rdata)
            .unwrap_or_default()
            .into_iter()
            .map(|d| Record::from_rdata(g.name.clone(), ttl(g), d))
            .collect::<Vec<Record>>()
    };
    config
        .geo
        .iter()
        .map(|g| {
            let fallback = match &g.when_down {
                WhenDown::Fallback(t) => Some(t),
                WhenDown::FailOpen | WhenDown::NoData => None,
            };
            GeoRecords {
                a: g.targets.iter().map(|t| records(g, Some(t), &v4)).collect(),
                aaaa: g.targets.iter().map(|t| records(g, Some(t), &v6)).collect(),
                fallback_a: records(g, fallback, &v4),
                fallback_aaaa: records(g, fallback, &v6),
                https: g
                    .targets
                    .iter()
                    .enumerate()
                    .map(|(pop, t)| {
                        g.https
                            .as_ref()
                            .and_then(|h| https_rdata(h, pop, t))
                            .map(|d| Record::from_rdata(g.name.clone(), ttl(g), d))
                            .into_iter()
                            .collect()
                    })
                    .collect(),
            }
        })
        .collect()
}

/// POP `pop`'s HTTPS record data for a name steered with `h` whose target there is `t`
/// (RFC 9460 ServiceMode; SvcParams in key order: alpn, port, ipv4hint, ipv6hint). `None`
/// for a POP without addresses.
fn https_rdata(h: &HttpsRecord, pop: usize, t: &Target) -> Option<RData> {
    let Target::Addresses { v4, v6 } = t else {
        return None;
    };
    if v4.is_empty() && v6.is_empty() {
        return None;
    }
    let mut params = Vec::new();
    if !h.alpn.is_empty() {
        params.push((SvcParamKey::Alpn, SvcParamValue::Alpn(Alpn(h.alpn.clone()))));
    }
    if let Some(port) = h.port {
        params.push((SvcParamKey::Port, SvcParamValue::Port(port)));
    }
    if !v4.is_empty() {
        let hint = IpHint(v4.iter().map(|ip| A(*ip)).collect());
        params.push((SvcParamKey::Ipv4Hint, SvcParamValue::Ipv4Hint(hint)));
    }
    if !v6.is_empty() {
        let hint = IpHint(v6.iter().map(|ip| AAAA(*ip)).collect());
        params.push((SvcParamKey::Ipv6Hint, SvcParamValue::Ipv6Hint(hint)));
    }
    let target = h.targets[pop].clone().unwrap_or_else(Name::root);
    Some(RData::HTTPS(HTTPS(SVCB::new(h.priority, target, params))))
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
