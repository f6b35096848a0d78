//! [P] The node's state and the one place that changes it.
//!
//! Everything that can change what a node answers arrives here as a typed [`Change`]: its
//! probes' verdict and load, its own POP's route view, what its peers say (from
//! [`crate::cluster::core`]), views pulled from peers or kept from the last run, an
//! operator's drain. [`NodeState::apply`] folds the change in and says what follows from it
//! as [`Effects`]: a new snapshot to publish, decision tables to rebuild, the own state to
//! announce, the own view to encode for peers, the admin state to keep on disk, lines to log.
//! The owner task ([`owner`]) is the only caller: it performs the effects, so it is the only
//! writer of the snapshot answers are read from.
//!
//! Rebuilding decision tables over full views takes seconds of CPU, so it is not done here:
//! [`Effects::build`] hands out a [`BuildJob`] (a pure function of the tables it starts
//! from) that the owner runs on the node's builder thread, and its result comes back as
//! [`Change::Built`]. One build runs at a time; view changes that arrive meanwhile wait in
//! `pending` and go into the next build, on top of the result of the running one, so a view
//! is never lost and a cheap change (a probe verdict, a peer's death) never waits for a
//! build. A standalone node goes through the same code as a clustered one: a cluster of one
//! whose peers are assumed up ([`crate::cluster::state::derive`]).

pub mod builder;
pub mod owner;
pub mod reload;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::cluster::state::{
    self, AdminBy, ClusterInput, HotState, Membership, Mode, OwnStatus, PeerView, ServiceStatus,
    ViewAnnouncement,
};
use crate::config::Config;
use crate::policy::AdminState;
use crate::routes::transfer::EncodedView;
use crate::routes::{HopRanges, OwnView, RouteView};
use crate::snapshot::{Snapshot, StreamedViews, Tables, ViewInfo};

/// A change of what the node knows.
#[derive(Debug)]
pub enum Change {
    /// The own POP's probes: all up, or not.
    Health(bool),
    /// The own POP's services whose probes are down (indexes into `Config::geo`).
    ServicesDown(Vec<usize>),
    /// The own POP's load probe read this (`None`: no reading).
    Load(Option<f32>),
    /// The own POP's route view source published (a new view, or the same one gone stale
    /// or fresh again).
    OwnView(OwnView),
    /// The own view, encoded for transfer as version `version`.
    OwnViewEncoded {
        /// The version it was encoded as.
        version: u64,
        /// The encoding (`None`: encoding failed; the view is not announced).
        encoded: Option<Arc<EncodedView>>,
    },
    /// What every other POP's node says and whether it is alive (from the cluster core).
    Peers(Vec<PeerView>),
    /// Views pulled from their POPs' nodes.
    Pulled(Vec<(usize, Arc<HopRanges>, ViewInfo)>),
    /// The description of a pulled view changed (its source went stale, or fresh again).
    ViewInfo(usize, ViewInfo),
    /// The views kept from the last run, loaded.
    Kept(StreamedViews),
    /// An operator set a POP's admin state (standalone: any POP; clustered: the own POP).
    Admin {
        /// The POP.
        pop: usize,
        /// Drained or active.
        state: AdminState,
        /// Who, and when.
        by: AdminBy,
    },
    /// An operator set a service's admin state at a POP (standalone: any POP; clustered:
    /// the own POP).
    ServiceAdmin {
        /// The POP.
        pop: usize,
        /// The service (index into `Config::geo`).
        service: usize,
        /// Drained or active.
        state: AdminState,
        /// Who, and when.
        by: AdminBy,
    },
    /// The node is shutting down: say so to peers, so they treat it as gone at once.
    Leaving,
    /// A build handed out by [`Effects::build`] finished.
    Built(Tables),
    /// The tables of a reloaded config are built (from its files and the kept views):
    /// answers switch to the new config now.
    Reloaded {
        /// The config.
        config: Arc<Config>,
        /// Its tables.
        tables: Tables,
        /// The digest of every view they restored (the rest is pulled again).
        held: Vec<Option<u64>>,
    },
}

/// A reload whose tables must be built again, off the owner task.
#[derive(Debug)]
pub struct ReloadJob {
    /// The config to build them for.
    pub config: Arc<Config>,
}

/// A table rebuild to run off the owner task: a pure function of `base`.
#[derive(Debug)]
pub struct BuildJob {
    /// The tables to start from (those answers use now, or the result of the running
    /// build).
    pub base: Tables,
    /// Own-view changes: POP, view (`None`: none).
    pub views: Vec<(usize, Option<Arc<RouteView>>)>,
    /// Views pulled from peers.
    pub pulled: Vec<(usize, Arc<HopRanges>, ViewInfo)>,
}

impl BuildJob {
    /// Runs the build (seconds of CPU at full scale).
    pub fn run(self, config: &Config) -> Tables {
        let mut tables = self.base;
        for (pop, view) in self.views {
            let info = tables.view_info(pop).cloned();
            tables = tables.with_view(config, pop, view, info);
        }
        if !self.pulled.is_empty() {
            tables = tables.with_pulled(config, &self.pulled);
        }
        tables
    }
}

/// What a change asks of the owner.
#[derive(Debug, Default)]
pub struct Effects {
    /// A new snapshot to publish.
    pub publish: Option<Arc<Snapshot>>,
    /// A rebuild to start (only when none is running).
    pub build: Option<BuildJob>,
    /// The own state to announce to peers.
    pub announce: Option<HotState>,
    /// The own view to encode for peers, as this version.
    pub encode: Option<(Arc<RouteView>, u64)>,
    /// The encoded own view to serve to peers (`None` inside: serve nothing).
    pub serve: Option<Option<Arc<EncodedView>>>,
    /// The admin state of these POPs changed by an operator: keep it on disk.
    pub persist_admin: bool,
    /// A reload's tables to build (then [`Change::Reloaded`]).
    pub reload: Option<ReloadJob>,
    /// The views held after a reload: the cluster pulls what is not.
    pub held: Option<Vec<Option<u64>>>,
    /// What happened, for the log.
    pub events: Vec<Event>,
}

/// Something worth a log line.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// The node's mode changed.
    Mode {
        /// Before.
        before: Mode,
        /// After.
        after: Mode,
    },
    /// The own POP's probes changed their verdict.
    OwnHealth(bool),
    /// The probes of a service at the own POP changed their verdict.
    ServiceHealth {
        /// The service's name.
        service: String,
        /// Up now.
        healthy: bool,
    },
    /// An operator changed a service's admin state at a POP.
    ServiceAdmin {
        /// The POP's name.
        pop: String,
        /// The service's name.
        service: String,
        /// The new state.
        state: AdminState,
        /// Who.
        by: String,
    },
    /// An operator changed a POP's admin state.
    Admin {
        /// The POP's name.
        pop: String,
        /// The new state.
        state: AdminState,
        /// Who.
        by: String,
    },
    /// Another POP's admin state, as its node says, changed.
    PeerAdmin {
        /// The POP's name.
        pop: String,
        /// The new state.
        state: AdminState,
        /// Who set it, if an operator did.
        by: Option<String>,
    },
    /// The own view source published.
    OwnView {
        /// Where from.
        source: String,
        /// Prefixes.
        routes: u64,
        /// Stale since (unix ms), if the source is not current.
        stale_since_ms: Option<u64>,
    },
    /// A change was refused.
    Refused(String),
    /// A reloaded config is in answers.
    Reloaded,
}

/// An operator's admin state of a POP, as this node keeps it (and on disk).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminRecord {
    /// Drained or active.
    pub state: AdminState,
    /// Who set it, and when.
    pub by: AdminBy,
    /// The config's admin state when it was set: a config edited since wins over it.
    pub config_admin: AdminState,
}

/// A view change waiting for the next build, and how the view will be described once it is
/// in answers.
#[derive(Debug)]
enum Column {
    Own(Option<Arc<RouteView>>, Option<ViewInfo>),
    Pulled(Arc<HopRanges>, ViewInfo),
}

/// The own POP's view as the node has it.
#[derive(Debug, Default)]
struct OwnViewState {
    view: Option<Arc<RouteView>>,
    source: String,
    stale_since_ms: Option<u64>,
    /// Version of the current view (unix ms at the change, strictly increasing).
    version: u64,
    /// Its announcement, once encoded.
    announced: Option<ViewAnnouncement>,
}

/// The node's state. See the module doc.
#[derive(Debug)]
pub struct NodeState {
    config: Arc<Config>,
    membership: Membership,
    healthy: bool,
    load: Option<f32>,
    /// Per POP: the admin state an operator set through this node.
    admin: Vec<Option<AdminRecord>>,
    /// The own POP's services whose probes are down (sorted).
    services_down: Vec<usize>,
    /// Per (POP, service): the admin state an operator set through this node.
    service_admin: BTreeMap<(usize, usize), AdminRecord>,
    peers: Vec<PeerView>,
    own_view: OwnViewState,
    /// Per POP: where its view came from (authoritative; put into every table installed).
    infos: Vec<Option<ViewInfo>>,
    /// The tables answers use now.
    tables: Tables,
    /// View changes not in `tables` nor in the running build.
    pending: BTreeMap<usize, Column>,
    /// How the views of the running build are described once it is in.
    in_build: Vec<(usize, Option<ViewInfo>)>,
    /// A build (or the kept-view load, or a reload's tables) is running.
    building: bool,
    /// The running build is a reload's.
    reloading: bool,
    snapshot: Arc<Snapshot>,
    /// The last state announced.
    announced: Option<HotState>,
    /// Shutting down.
    leaving: bool,
}

impl NodeState {
    /// The state of a node that has just loaded `config`: probes not yet heard (healthy),
    /// no peer heard, admin states from `admin` (kept from the last run) or the config.
    /// With `loading_kept`, a load of kept views is running and counts as the first build.
    pub fn new(config: Arc<Config>, admin: Vec<Option<AdminRecord>>, loading_kept: bool) -> Self {
        let tables = Tables::from_config(&config);
        let membership = match &config.cluster {
            Some(c) => Membership::Clustered { quorum: c.quorum },
            None => Membership::Standalone,
        };
        let pops = config.pops.len();
        let own = config.node.pop;
        let infos = (0..pops).map(|i| tables.view_info(i).cloned()).collect();
        let own_view = OwnViewState {
            view: tables.view(own).cloned(),
            source: config.node.own_view.describe(),
            ..OwnViewState::default()
        };
        // An operator's state survives a restart unless the config changed since.
        let admin = (0..pops)
            .map(|i| {
                admin
                    .get(i)
                    .cloned()
                    .flatten()
                    .filter(|r| r.config_admin == config.pops[i].admin)
                    .filter(|_| membership == Membership::Standalone || i == own)
            })
            .collect();
        let snapshot = Arc::new(Snapshot::new(config.clone(), tables.clone()));
        let mut state = Self {
            config,
            membership,
            healthy: true,
            load: None,
            admin,
            services_down: Vec::new(),
            service_admin: BTreeMap::new(),
            peers: vec![PeerView::default(); pops],
            own_view,
            infos,
            tables,
            pending: BTreeMap::new(),
            in_build: Vec::new(),
            building: loading_kept,
            reloading: false,
            snapshot,
            announced: None,
            leaving: false,
        };
        state.snapshot = Arc::new(state.next_snapshot(&state.snapshot));
        state
    }

    /// The same state with the services' admin states operators set (kept from the last
    /// run): entries for POPs this node does not hold (clustered: every POP but its own)
    /// are dropped.
    pub fn with_service_admin(mut self, kept: BTreeMap<(usize, usize), AdminRecord>) -> Self {
        let own = self.config.node.pop;
        let (pops, geo) = (self.config.pops.len(), self.config.geo.len());
        self.service_admin = kept
            .into_iter()
            .filter(|&((pop, service), _)| pop < pops && service < geo)
            .filter(|&((pop, _), _)| self.membership == Membership::Standalone || pop == own)
            .collect();
        self.snapshot = Arc::new(self.next_snapshot(&self.snapshot));
        self
    }

    /// The services' admin states operators set through this node (what to keep on disk).
    pub fn service_admin_records(&self) -> &BTreeMap<(usize, usize), AdminRecord> {
        &self.service_admin
    }

    /// The snapshot answers use now.
    pub fn snapshot(&self) -> &Arc<Snapshot> {
        &self.snapshot
    }

    /// The config.
    pub fn config(&self) -> &Arc<Config> {
        &self.config
    }

    /// The admin states operators set through this node (what to keep on disk).
    pub fn admin_records(&self) -> &[Option<AdminRecord>] {
        &self.admin
    }

    /// Whether a build is running.
    pub fn is_building(&self) -> bool {
        self.building
    }

    /// The state to announce at start (clustered nodes), before any change.
    pub fn initial_announcement(&mut self) -> HotState {
        let hot = self.hot_state();
        self.announced = Some(hot.clone());
        hot
    }

    /// Folds `change` in, at unix time `now_ms`.
    pub fn apply(&mut self, change: Change, now_ms: u64) -> Effects {
        let mut fx = Effects::default();
        let own = self.config.node.pop;
        match change {
            Change::Health(healthy) => {
                if healthy != self.healthy {
                    self.healthy = healthy;
                    fx.events.push(Event::OwnHealth(healthy));
                }
            }
            Change::ServicesDown(mut down) => {
                down.retain(|&g| g < self.config.geo.len());
                down.sort_unstable();
                down.dedup();
                for (g, service) in self.config.geo.iter().enumerate() {
                    let (was, is) = (
                        self.services_down.contains(&g),
                        down.binary_search(&g).is_ok(),
                    );
                    if was != is {
                        fx.events.push(Event::ServiceHealth {
                            service: service.service.clone(),
                            healthy: !is,
                        });
                    }
                }
                self.services_down = down;
            }
            Change::ServiceAdmin {
                pop,
                service,
                state,
                by,
            } => self.service_admin_changed(pop, service, state, by, &mut fx),
            Change::Load(load) => self.load = load,
            Change::Leaving => self.leaving = true,
            Change::OwnView(v) => self.own_view_changed(v, now_ms, &mut fx),
            Change::OwnViewEncoded { version, encoded } => {
                if version == self.own_view.version && self.own_view.view.is_some() {
                    self.own_view.announced = encoded.as_ref().map(|e| ViewAnnouncement {
                        version,
                        digest: e.header.digest,
                        prefixes: e.header.prefixes,
                        stale_since_ms: self.own_view.stale_since_ms,
                    });
                    let info = Some(self.own_info());
                    // Wherever the view is now (waiting, building, in answers), its
                    // description gains the version and digest peers pull it by.
                    if let Some(Column::Own(_, i)) = self.pending.get_mut(&own) {
                        *i = info;
                    } else if let Some((_, i)) = self.in_build.iter_mut().find(|(p, _)| *p == own) {
                        *i = info;
                    } else {
                        self.infos[own] = info;
                    }
                    fx.serve = Some(encoded);
                }
            }
            Change::Peers(peers) => {
                for (i, (old, new)) in self.peers.iter().zip(&peers).enumerate() {
                    let before = old.known.as_ref().map(|k| (k.admin, &k.admin_by));
                    let after = new.known.as_ref().map(|k| (k.admin, &k.admin_by));
                    if i != own
                        && let Some((state, by)) = after
                        && before.is_some_and(|(s, _)| s != state)
                    {
                        fx.events.push(Event::PeerAdmin {
                            pop: self.config.pops[i].name.clone(),
                            state,
                            by: by.as_ref().map(|b| b.who.clone()),
                        });
                    }
                }
                if peers.len() == self.peers.len() {
                    self.peers = peers;
                }
            }
            Change::Pulled(views) => {
                for (pop, hops, info) in views {
                    if pop != own && pop < self.infos.len() {
                        self.pending.insert(pop, Column::Pulled(hops, info));
                    }
                }
            }
            Change::ViewInfo(pop, info) => {
                if pop != own && pop < self.infos.len() {
                    self.infos[pop] = Some(info);
                }
            }
            Change::Kept(streamed) => {
                for (pop, _, info) in &streamed.loaded {
                    // A pull that landed while the kept views loaded is newer.
                    if !self.pending.contains_key(pop) {
                        self.infos[*pop] = Some(info.clone());
                    }
                }
                let tables = self.tables.with_streamed(&streamed);
                self.install(tables);
            }
            Change::Admin { pop, state, by } => self.admin_changed(pop, state, by, &mut fx),
            Change::Built(tables) => {
                for (pop, info) in std::mem::take(&mut self.in_build) {
                    self.infos[pop] = info;
                }
                self.install(tables);
            }
            Change::Reloaded {
                config,
                tables,
                held,
            } => self.reloaded(config, tables, held, now_ms, &mut fx),
        }
        self.finish(&mut fx);
        fx
    }

    /// Whether the node is ready to serve as a member of its cluster, or what it waits for:
    /// the views kept from the last run loaded, its own route view in, a quorum of nodes
    /// heard, and the view of every live peer held.
    pub fn readiness(&self) -> Result<(), String> {
        let own = self.config.node.pop;
        // The kept-view load is the only build with nothing in `in_build`.
        if self.building && self.in_build.is_empty() && !self.reloading {
            return Err("loading the route views kept from the last run".to_owned());
        }
        let own_expected = !matches!(
            self.config.node.own_view,
            crate::config::OwnViewSource::File(None)
        );
        let own_in = self.own_view.view.is_some()
            && !self.pending.contains_key(&own)
            && !self.in_build.iter().any(|(p, _)| *p == own);
        if own_expected && !own_in {
            return Err(format!(
                "waiting for the own route view ({})",
                self.own_view.source
            ));
        }
        match self.snapshot.mode {
            Mode::Standalone | Mode::Cluster { .. } => {}
            Mode::LocalOnly { alive, quorum } => {
                return Err(format!(
                    "waiting for peers: {alive} of the {quorum} nodes needed heard"
                ));
            }
        }
        let missing: Vec<&str> = self
            .peers
            .iter()
            .enumerate()
            .filter(|&(i, p)| {
                i != own
                    && p.present()
                    && p.known.as_ref().and_then(|k| k.view).is_some_and(|a| {
                        self.infos[i].as_ref().and_then(|v| v.digest) != Some(a.digest)
                    })
            })
            .map(|(i, _)| self.config.pops[i].name.as_str())
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(format!("pulling the route views of {}", missing.join(", ")))
        }
    }

    /// Whether a reload is running (one at a time).
    pub fn is_reloading(&self) -> bool {
        self.reloading
    }

    /// Applies a reload planned by [`reload::plan`]. Without new tables it applies at once;
    /// otherwise [`Effects::reload`] asks for them, and answers switch to the new config when
    /// [`Change::Reloaded`] brings them (changes meanwhile go in on top). Returns whether it
    /// applied now.
    pub fn reload(&mut self, plan: reload::ReloadPlan) -> (Effects, bool) {
        let mut fx = Effects::default();
        let config = Arc::new(plan.config);
        if plan.rebuild_tables {
            self.reloading = true;
            self.building = true;
            fx.reload = Some(ReloadJob { config });
            return (fx, false);
        }
        let tables = self.tables.clone();
        self.switch_config(config, tables);
        fx.events.push(Event::Reloaded);
        self.finish(&mut fx);
        (fx, true)
    }

    /// Runs from `config` and `tables` from now on.
    fn switch_config(&mut self, config: Arc<Config>, tables: Tables) {
        self.membership = match &config.cluster {
            Some(c) => Membership::Clustered { quorum: c.quorum },
            None => Membership::Standalone,
        };
        // An operator's state stands unless the config's changed since it was set.
        for (i, record) in self.admin.iter_mut().enumerate() {
            if record
                .as_ref()
                .is_some_and(|r| r.config_admin != config.pops[i].admin)
            {
                *record = None;
            }
        }
        // Services are known by name: they keep their state across a reload that moves or
        // removes geo names.
        let remap = |g: usize| {
            let name = &self.config.geo[g].service;
            config.geo.iter().position(|n| n.service == *name)
        };
        let mut down: Vec<usize> = self
            .services_down
            .iter()
            .filter_map(|&g| remap(g))
            .collect();
        down.sort_unstable();
        self.services_down = down;
        self.service_admin = std::mem::take(&mut self.service_admin)
            .into_iter()
            .filter_map(|((pop, g), r)| Some(((pop, remap(g)?), r)))
            .filter(|&((pop, _), _)| pop < config.pops.len())
            .collect();
        self.own_view.source = config.node.own_view.describe();
        // The next snapshot is built over the new config (see `next_snapshot`).
        self.tables = tables;
        self.config = config;
    }

    fn reloaded(
        &mut self,
        config: Arc<Config>,
        tables: Tables,
        held: Vec<Option<u64>>,
        now_ms: u64,
        fx: &mut Effects,
    ) {
        let own = config.node.pop;
        self.reloading = false;
        self.building = false;
        self.in_build.clear();
        for (pop, info) in self.infos.iter_mut().enumerate() {
            *info = tables.view_info(pop).cloned();
        }
        let from_config = tables.view(own).cloned();
        self.switch_config(config, tables);
        match (&self.config.node.own_view, from_config) {
            // A view the config itself holds (a route file, or the MRT dump read with it) is
            // the own view from now on.
            (
                crate::config::OwnViewSource::File(_) | crate::config::OwnViewSource::Mrt(_),
                view,
            ) => {
                let same = match (&view, &self.own_view.view) {
                    (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                    (None, None) => true,
                    _ => false,
                };
                if !same || self.own_view.version == 0 {
                    self.own_view.view = view.clone();
                    self.own_view.version = now_ms.max(self.own_view.version + 1);
                    self.own_view.announced = None;
                    self.own_view.stale_since_ms = None;
                    self.infos[own] = view.as_ref().map(|_| self.own_info());
                    match (&self.config.cluster, view) {
                        (Some(_), Some(v)) => fx.encode = Some((v, self.own_view.version)),
                        (Some(_), None) => fx.serve = Some(None),
                        (None, _) => {}
                    }
                }
            }
            // A live source (BGP): its current view goes in again.
            (crate::config::OwnViewSource::Bgp(_), _) => {
                if let Some(view) = self.own_view.view.clone()
                    && !self.pending.contains_key(&own)
                {
                    let info = Some(self.own_info());
                    self.pending.insert(own, Column::Own(Some(view), info));
                }
            }
        }
        if self.config.cluster.is_some() {
            fx.held = Some(held);
        }
        fx.events.push(Event::Reloaded);
    }

    fn own_view_changed(&mut self, v: OwnView, now_ms: u64, fx: &mut Effects) {
        let own = self.config.node.pop;
        let same = match (&self.own_view.view, &v.view) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        };
        fx.events.push(Event::OwnView {
            source: v.source.clone(),
            routes: v.view.as_ref().map_or(0, |view| view.len() as u64),
            stale_since_ms: v.stale_since_ms,
        });
        self.own_view.source = v.source;
        self.own_view.stale_since_ms = v.stale_since_ms;
        if let Some(a) = &mut self.own_view.announced {
            a.stale_since_ms = v.stale_since_ms;
        }
        if same && self.own_view.version != 0 {
            // Only the staleness changed: answers stay, the announcement says it.
            let info = self.own_view.view.as_ref().map(|_| self.own_info());
            if let Some(Column::Own(_, i)) = self.pending.get_mut(&own) {
                *i = info;
            } else if let Some((_, i)) = self.in_build.iter_mut().find(|(p, _)| *p == own) {
                *i = info;
            } else {
                self.infos[own] = info;
            }
            return;
        }
        self.own_view.view = v.view.clone();
        self.own_view.version = now_ms.max(self.own_view.version + 1);
        self.own_view.announced = None;
        let info = v.view.as_ref().map(|_| self.own_info());
        if same {
            self.infos[own] = info;
        } else {
            // Described as the new view once it is in answers.
            self.pending.insert(own, Column::Own(v.view.clone(), info));
        }
        match (&self.config.cluster, v.view) {
            (Some(_), Some(view)) => fx.encode = Some((view, self.own_view.version)),
            (Some(_), None) => fx.serve = Some(None),
            (None, _) => {}
        }
    }

    fn own_info(&self) -> ViewInfo {
        let v = &self.own_view;
        ViewInfo {
            version: v.announced.map(|a| a.version),
            digest: v.announced.map(|a| a.digest),
            prefixes: v.view.as_ref().map_or(0, |view| view.len() as u64),
            source: v.source.clone(),
            stale_since_ms: v.stale_since_ms,
        }
    }

    fn admin_changed(&mut self, pop: usize, state: AdminState, by: AdminBy, fx: &mut Effects) {
        let own = self.config.node.pop;
        let Some(p) = self.config.pops.get(pop) else {
            fx.events.push(Event::Refused(format!("no POP {pop}")));
            return;
        };
        if self.membership != Membership::Standalone && pop != own {
            fx.events.push(Event::Refused(format!(
                "{}'s admin state is held by its own node",
                p.name
            )));
            return;
        }
        fx.events.push(Event::Admin {
            pop: p.name.clone(),
            state,
            by: by.who.clone(),
        });
        self.admin[pop] = Some(AdminRecord {
            state,
            by,
            config_admin: p.admin,
        });
        fx.persist_admin = true;
    }

    fn service_admin_changed(
        &mut self,
        pop: usize,
        service: usize,
        state: AdminState,
        by: AdminBy,
        fx: &mut Effects,
    ) {
        let own = self.config.node.pop;
        let (Some(p), Some(g)) = (self.config.pops.get(pop), self.config.geo.get(service)) else {
            fx.events.push(Event::Refused(format!(
                "no POP {pop} or no service {service}"
            )));
            return;
        };
        if self.membership != Membership::Standalone && pop != own {
            fx.events.push(Event::Refused(format!(
                "{}'s services are held by its own node",
                p.name
            )));
            return;
        }
        fx.events.push(Event::ServiceAdmin {
            pop: p.name.clone(),
            service: g.service.clone(),
            state,
            by: by.who.clone(),
        });
        if state == AdminState::Active {
            self.service_admin.remove(&(pop, service));
        } else {
            self.service_admin.insert(
                (pop, service),
                AdminRecord {
                    state,
                    by,
                    config_admin: AdminState::Active,
                },
            );
        }
        fx.persist_admin = true;
    }

    /// The state of every POP's services, as this node derives it.
    fn service_status(&self) -> Vec<ServiceStatus> {
        let own = self.config.node.pop;
        let pops = self.config.pops.len();
        let mut drained = vec![Vec::new(); pops];
        for (&(pop, service), record) in &self.service_admin {
            if record.state == AdminState::Drained {
                drained[pop].push(service);
            }
        }
        let own_state = ServiceStatus {
            down: self.services_down.clone(),
            drained: drained[own].clone(),
        };
        let names: Vec<&str> = self.config.geo.iter().map(|g| g.service.as_str()).collect();
        state::derive_services(
            own,
            &own_state,
            &self.peers,
            &drained,
            self.membership,
            &names,
        )
    }

    /// Puts `tables` (a build result) in, with the authoritative view descriptions, and
    /// ends the running build.
    fn install(&mut self, mut tables: Tables) {
        for (pop, info) in self.infos.iter().enumerate() {
            if tables.view_info(pop) != info.as_ref() {
                tables = tables.with_view_info(pop, info.clone());
            }
        }
        self.tables = tables;
        self.building = false;
    }

    /// Starts the next build if one is due, and publishes what changed.
    fn finish(&mut self, fx: &mut Effects) {
        if !self.building && !self.pending.is_empty() {
            let mut job = BuildJob {
                base: self.tables.clone(),
                views: Vec::new(),
                pulled: Vec::new(),
            };
            for (pop, column) in std::mem::take(&mut self.pending) {
                match column {
                    Column::Own(view, info) => {
                        job.views.push((pop, view));
                        self.in_build.push((pop, info));
                    }
                    Column::Pulled(hops, info) => {
                        self.in_build.push((pop, Some(info.clone())));
                        job.pulled.push((pop, hops, info));
                    }
                }
            }
            self.building = true;
            fx.build = Some(job);
        }
        // View descriptions may have changed without a build (staleness).
        for (pop, info) in self.infos.iter().enumerate() {
            if self.tables.view_info(pop) != info.as_ref() {
                self.tables = self.tables.with_view_info(pop, info.clone());
            }
        }
        let next = self.next_snapshot(&self.snapshot);
        if next.mode != self.snapshot.mode {
            fx.events.push(Event::Mode {
                before: self.snapshot.mode,
                after: next.mode,
            });
        }
        let changed = next.mode != self.snapshot.mode
            || !Arc::ptr_eq(&next.config, &self.snapshot.config)
            || next.pop_status != self.snapshot.pop_status
            || next.admin_by != self.snapshot.admin_by
            || next.services != self.snapshot.services
            || !same_tables(next.tables(), self.snapshot.tables())
            || next.peers != self.snapshot.peers;
        if changed {
            self.snapshot = Arc::new(next);
            fx.publish = Some(self.snapshot.clone());
        }
        if self.config.cluster.is_some() {
            let hot = self.hot_state();
            if self.announced.as_ref() != Some(&hot) {
                self.announced = Some(hot.clone());
                fx.announce = Some(hot);
            }
        }
    }

    /// The snapshot for the current state, from `current` (sharing what did not change).
    fn next_snapshot(&self, current: &Snapshot) -> Snapshot {
        let own = self.config.node.pop;
        let admin: Vec<AdminState> = self
            .config
            .pops
            .iter()
            .zip(&self.admin)
            .map(|(p, a)| a.as_ref().map_or(p.admin, |a| a.state))
            .collect();
        let (status, mode) = state::derive(&ClusterInput {
            own,
            own_state: OwnStatus {
                healthy: self.healthy,
                admin: admin[own],
                load: self.load,
            },
            peers: &self.peers,
            admin: &admin,
            membership: self.membership,
        });
        let admin_by = (0..self.config.pops.len())
            .map(|i| {
                let local = self.admin[i].as_ref().map(|a| a.by.clone());
                if i == own || self.membership == Membership::Standalone {
                    local
                } else {
                    self.peers[i]
                        .known
                        .as_ref()
                        .and_then(|k| k.admin_by.clone())
                }
            })
            .collect();
        let mut next = if Arc::ptr_eq(&current.config, &self.config) {
            current.with_status(status, admin_by, mode)
        } else {
            // A reload: a snapshot of the new config, keeping the running counters.
            let mut base = Snapshot::new(self.config.clone(), self.tables.clone());
            base.partitions = current.partitions;
            base.mode = current.mode;
            base.with_status(status, admin_by, mode)
        };
        if !same_tables(next.tables(), &self.tables) {
            next = next.with_tables(self.tables.clone());
        }
        next.with_services(self.service_status())
            .with_peers(self.peers.clone())
    }

    /// What the node publishes about its own POP.
    fn hot_state(&self) -> HotState {
        let own = self.config.node.pop;
        let published = &self.snapshot;
        let status = &self.snapshot.pop_status;
        HotState {
            healthy: self.healthy,
            admin: status[own].admin,
            admin_by: self.admin[own].as_ref().map(|a| a.by.clone()),
            load: self.load,
            view: self.own_view.announced,
            config: Some(self.config.answer_digest()),
            drained: self
                .config
                .pops
                .iter()
                .zip(status)
                .filter(|(_, s)| s.admin == AdminState::Drained)
                .map(|(p, _)| p.name.clone())
                .collect(),
            peers: Vec::new(),
            leaving: self.leaving,
            services_down: self
                .services_down
                .iter()
                .map(|&g| self.config.geo[g].service.clone())
                .collect(),
            services_drained: self
                .service_admin
                .iter()
                .filter(|&(&(pop, _), r)| pop == own && r.state == AdminState::Drained)
                .map(|(&(_, g), _)| self.config.geo[g].service.clone())
                .collect(),
            // What answers hold: the snapshot's, named by the snapshot's own config (a
            // reload waiting for its tables is not in answers yet).
            drained_services: published
                .config
                .pops
                .iter()
                .zip(published.services.iter())
                .flat_map(|(p, s)| {
                    s.drained
                        .iter()
                        .map(move |&g| format!("{}/{}", p.name, published.config.geo[g].service))
                })
                .collect(),
        }
    }
}

/// Whether two tables are the same value (cheap: shared parts compared by pointer).
fn same_tables(a: &Tables, b: &Tables) -> bool {
    a.same_as(b)
}
