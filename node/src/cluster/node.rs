//! [E] A node's place in the cluster: runs chitchat over the QUIC transport, publishes the
//! node's own POP state and route view, pulls peers' views, and turns what it hears into
//! the snapshot answers come from (through the pure rules of [`super::state`] and
//! [`super::views`]).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use chitchat::{ChitchatConfig, ChitchatHandle, ChitchatId, FailureDetectorConfig};
use std::sync::atomic::Ordering;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument as _, debug, info, warn};

use super::endpoint::{self, Handlers};
use super::state::{
    self, ADMIN_DIRECTIVE_PREFIX, AdminDirective, ClusterInput, HotState, Mode, ViewAnnouncement,
};
use super::tls::{ALPN_VIEWS, ClusterTls};
use super::transport::{Faults, QuicTransport, TransportStats};
use super::view_cache;
use super::view_sync::{self, ViewServer};
use super::views::{Fetch, ViewCatalog};
use crate::api::ApiContext;
use crate::config::AdminState;
use crate::routes::{HopRanges, OwnView, RouteView, transfer};
use crate::snapshot::{Snapshot, ViewInfo};
use crate::viewsource::{background, swap_views};

/// How often the node re-reads cluster state even without a membership change.
const REFRESH: Duration = Duration::from_millis(250);

/// A running cluster membership.
pub struct ClusterHandle {
    chitchat: tokio::sync::Mutex<Option<ChitchatHandle>>,
    own: watch::Sender<HotState>,
    task: std::sync::Mutex<Option<JoinHandle<()>>>,
    /// Taken at shutdown, so that the socket is released once the tasks using it end.
    endpoint: std::sync::Mutex<Option<quinn::Endpoint>>,
    local: std::net::SocketAddr,
    handlers: Arc<Handlers>,
    snapshot: Arc<ArcSwap<Snapshot>>,
    /// Serialises own-view changes; holds the last version announced and its view.
    own_view: tokio::sync::Mutex<(u64, Option<Arc<RouteView>>)>,
    /// What the gossip transport moved.
    pub stats: Arc<TransportStats>,
    /// Fault injection at the transport (tests and simulations).
    pub faults: Faults,
}

impl ClusterHandle {
    /// Publishes the own POP's health (from its probes).
    pub fn set_health(&self, healthy: bool) {
        self.own.send_modify(|s| s.healthy = healthy);
    }

    /// Publishes the own POP's load (from its load probe).
    pub fn set_load(&self, load: Option<f32>) {
        self.own.send_modify(|s| s.load = load);
    }

    /// The server of this node's own view (and its transfer counters).
    pub fn view_server(&self) -> Arc<ViewServer> {
        self.handlers.views.clone()
    }

    /// Counters of route-view transfers.
    pub fn view_stats(&self) -> &view_sync::ViewStats {
        &self.handlers.views.stats
    }

    /// Takes the own POP's view from its source: answers use it at once, the node serves it
    /// to peers, and gossip announces its version and digest so peers pull it.
    pub async fn set_own_view(&self, own: OwnView) {
        let mut last = self.own_view.lock().await;
        let pop = self.snapshot.load().config.node.pop;
        let unchanged = match (&last.1, &own.view) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        };
        if unchanged {
            // Only the staleness changed: announce it, keep the view, its version and digest.
            let current = self.snapshot.load().view_info(pop).cloned();
            if let Some(info) = current {
                let info = ViewInfo {
                    stale_since_ms: own.stale_since_ms,
                    source: own.source.clone(),
                    ..info
                };
                self.snapshot
                    .rcu(|s| s.with_view_info(pop, Some(info.clone())));
            }
            self.own.send_modify(|s| {
                if let Some(a) = &mut s.view {
                    a.stale_since_ms = own.stale_since_ms;
                }
            });
            return;
        }
        let version = unix_ms().max(last.0 + 1);
        *last = (version, own.view.clone());
        let encoded = match &own.view {
            Some(view) => {
                let view = view.clone();
                match background(move || transfer::encode(&view, version)).await {
                    Ok(e) => Some(Arc::new(e)),
                    Err(e) => {
                        warn!(error = %e, "encoding the own route view failed; not announced");
                        None
                    }
                }
            }
            None => None,
        };
        let announcement = encoded.as_ref().map(|e| ViewAnnouncement {
            version,
            digest: e.header.digest,
            prefixes: e.header.prefixes,
            stale_since_ms: own.stale_since_ms,
        });
        let info = announcement.map(|a| ViewInfo {
            version: Some(a.version),
            digest: Some(a.digest),
            prefixes: a.prefixes,
            source: own.source.clone(),
            stale_since_ms: a.stale_since_ms,
        });
        let snapshot = self.snapshot.clone();
        let view = own.view.clone();
        // Rebuilding decision tables over full views takes CPU time: on the view builder
        // thread, below the DNS threads.
        let _ = background(move || {
            swap_views(&snapshot, |s| {
                s.with_view_from(pop, view.clone(), info.clone())
            });
        })
        .await;
        self.handlers.views.set(encoded);
        self.own.send_modify(|s| s.view = announcement);
    }

    /// Serves the operator API to operators over QUIC from now on.
    pub fn serve_api(&self, cx: ApiContext) {
        let _ = self.handlers.api.set(cx);
    }

    /// The node's cluster endpoint address.
    pub fn local_addr(&self) -> std::net::SocketAddr {
        self.local
    }

    /// Drains or undrains POP `pop` cluster-wide: publishes an operator directive stamped
    /// with the current time (the newest directive from any node wins).
    pub async fn set_admin(&self, pop: &str, admin: AdminState) {
        let at_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let value = AdminDirective { admin, at_ms }.to_value();
        if let Some(chitchat) = self.chitchat.lock().await.as_ref() {
            chitchat
                .with_chitchat(|c| {
                    c.self_node_state()
                        .set(format!("{ADMIN_DIRECTIVE_PREFIX}{pop}"), &value);
                })
                .await;
        }
        // Re-derive now rather than at the next tick.
        self.own.send_modify(|_| {});
    }

    /// Leaves the cluster (once; later calls do nothing).
    pub async fn shutdown(&self) {
        // INVARIANT: these locks are never held across an await or a panic.
        let task = self.task.lock().expect("task lock poisoned").take();
        if let Some(task) = task {
            task.abort();
            let _ = task.await;
        }
        if let Some(chitchat) = self.chitchat.lock().await.take()
            && let Err(e) = chitchat.shutdown().await
        {
            warn!(error = %e, "gossip did not stop cleanly");
        }
        let endpoint = self.endpoint.lock().expect("endpoint lock poisoned").take();
        if let Some(endpoint) = endpoint {
            endpoint.close(0u32.into(), b"shutdown");
            let _ = tokio::time::timeout(Duration::from_secs(1), endpoint.wait_idle()).await;
        }
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Joins the cluster of the snapshot's config on `socket` (bound by the caller to
/// `cluster.listen`) and keeps `snapshot` up to date with it until `shutdown`.
pub async fn start(
    snapshot: Arc<ArcSwap<Snapshot>>,
    socket: std::net::UdpSocket,
    shutdown: CancellationToken,
) -> anyhow::Result<ClusterHandle> {
    let config = snapshot.load().config.clone();
    let cluster = config
        .cluster
        .clone()
        .ok_or_else(|| anyhow::anyhow!("no [cluster] in the config"))?;
    let tls = ClusterTls::from_pem(
        &cluster.id,
        &cluster.ca_pem,
        &cluster.cert_pem,
        &cluster.key_pem,
    )?;
    let listen = socket.local_addr()?;
    let tls = Arc::new(tls);
    let endpoint = endpoint::bind(&tls, socket)?;
    let stats = Arc::new(TransportStats::default());
    let faults = Faults::default();
    let (transport, gossip) =
        QuicTransport::new(endpoint.clone(), &tls, stats.clone(), faults.clone())?;
    let own_pop = config.own_pop();
    let handlers = Arc::new(Handlers {
        gossip,
        views: Arc::new(ViewServer::new(&own_pop.name)),
        api: std::sync::OnceLock::new(),
        stats: stats.clone(),
        faults: faults.clone(),
    });
    tokio::spawn(
        endpoint::accept_loop(endpoint.clone(), tls.clone(), handlers.clone())
            .instrument(tracing::Span::current()),
    );
    let own_state = HotState {
        // Up until the probes say otherwise (they start up too).
        healthy: true,
        admin: own_pop.admin,
        load: None,
        view: None,
    };
    // A restarted node is a new generation: peers drop what the old one said.
    let generation = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let chitchat_config = ChitchatConfig {
        chitchat_id: ChitchatId::new(own_pop.name.clone(), generation, listen),
        cluster_id: cluster.id.clone(),
        gossip_interval: cluster.gossip_interval,
        listen_addr: listen,
        seed_nodes: cluster.seeds.clone(),
        failure_detector_config: FailureDetectorConfig {
            initial_interval: cluster.gossip_interval,
            ..FailureDetectorConfig::default()
        },
        marked_for_deletion_grace_period: Duration::from_secs(3600),
        catchup_callback: None,
        extra_liveness_predicate: None,
    };
    let keys = own_state
        .to_keys()
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    let chitchat = chitchat::spawn_chitchat(chitchat_config, keys, &transport).await?;
    info!(cluster = %cluster.id, gossip = %listen, seeds = ?cluster.seeds, "joined gossip");
    let (own, own_rx) = watch::channel(own_state);
    let cache = config.node.state_dir.as_ref().map(|d| d.join("views"));
    // Views kept from the last run answer at once, before any peer is reachable; a peer that
    // announces another digest is pulled from as usual.
    let held = match &cache {
        Some(dir) => view_cache::load_into(dir, &snapshot).await,
        None => vec![None; config.pops.len()],
    };
    let puller = Puller {
        endpoint: endpoint.clone(),
        client: tls.client_config(ALPN_VIEWS)?,
        faults: faults.clone(),
        stats: handlers.clone(),
        cache,
    };
    let task = tokio::spawn(
        follow(
            chitchat.chitchat(),
            snapshot.clone(),
            own_rx,
            puller,
            held,
            shutdown,
        )
        .instrument(tracing::Span::current()),
    );
    let handle = ClusterHandle {
        chitchat: tokio::sync::Mutex::new(Some(chitchat)),
        own,
        task: std::sync::Mutex::new(Some(task)),
        endpoint: std::sync::Mutex::new(Some(endpoint)),
        local: listen,
        handlers,
        snapshot: snapshot.clone(),
        own_view: tokio::sync::Mutex::new((0, None)),
        stats,
        faults,
    };
    // The view from the config file, until a live source (if any) replaces it.
    if let Some(view) = &own_pop.route_view {
        handle
            .set_own_view(OwnView {
                view: Some(view.clone()),
                source: config.node.own_view.describe(),
                stale_since_ms: None,
            })
            .await;
    }
    Ok(handle)
}

/// Runs route-view pulls for the follow loop.
struct Puller {
    endpoint: quinn::Endpoint,
    client: quinn::ClientConfig,
    faults: Faults,
    stats: Arc<Handlers>,
    /// Where pulled views are kept across restarts, if anywhere.
    cache: Option<std::path::PathBuf>,
}

/// The outcome of a pull: the POP, and the announcement and view received.
type Pulled = (usize, anyhow::Result<(ViewAnnouncement, Arc<HopRanges>)>);

impl Puller {
    fn start(
        &self,
        fetch: Fetch,
        pop_name: String,
        stale: Option<u64>,
        done: mpsc::Sender<Pulled>,
    ) {
        let (endpoint, client, faults, cache) = (
            self.endpoint.clone(),
            self.client.clone(),
            self.faults.clone(),
            self.cache.clone(),
        );
        tokio::spawn(
            async move {
                let result = if faults.is_cut(fetch.addr) {
                    Err(anyhow::anyhow!("peer cut off by fault injection"))
                } else {
                    view_sync::fetch(&endpoint, &client, fetch.addr, &pop_name, fetch.digest)
                        .await
                };
                let result = match result {
                    Ok(p) => {
                        if let Some(dir) = cache {
                            let name = pop_name.clone();
                            let bytes = p.bytes;
                            let saved = tokio::task::spawn_blocking(move || {
                                view_cache::save(&dir, &name, &bytes)
                            })
                            .await;
                            if let Ok(Err(e)) = saved {
                                warn!(pop = %pop_name, error = %e, "cannot keep the pulled view on disk");
                            }
                        }
                        let a = ViewAnnouncement {
                            version: p.header.version,
                            digest: p.header.digest,
                            prefixes: p.header.prefixes,
                            stale_since_ms: stale,
                        };
                        Ok((a, Arc::new(p.view)))
                    }
                    Err(e) => Err(e),
                };
                let _ = done.send((fetch.pop, result)).await;
            }
            .instrument(tracing::Span::current()),
        );
    }
}

/// Publishes the own state and derives the snapshot from the cluster's, on every change.
async fn follow(
    chitchat: Arc<tokio::sync::Mutex<chitchat::Chitchat>>,
    snapshot: Arc<ArcSwap<Snapshot>>,
    mut own_rx: watch::Receiver<HotState>,
    puller: Puller,
    held: Vec<Option<u64>>,
    shutdown: CancellationToken,
) {
    let mut live_rx = chitchat.lock().await.live_nodes_watcher();
    let mut tick = tokio::time::interval(REFRESH);
    let mut warned: HashSet<String> = HashSet::new();
    let (pops, own_pop) = {
        let s = snapshot.load();
        (s.config.pops.len(), s.config.node.pop)
    };
    let mut catalog = ViewCatalog::new(pops, own_pop);
    for (pop, digest) in held.into_iter().enumerate() {
        if let Some(d) = digest {
            catalog.held(pop, d);
        }
    }
    let (done_tx, mut done_rx) = mpsc::channel::<Pulled>(pops.max(1));
    loop {
        tokio::select! {
            _ = live_rx.changed() => {}
            Some(first) = done_rx.recv() => {
                // Pulls that finished meanwhile go in with it: one rebuild of the decision
                // tables for all of them (a node starting up pulls every view at once).
                let mut batch = vec![first];
                while let Ok(more) = done_rx.try_recv() {
                    batch.push(more);
                }
                apply_pulled(&snapshot, &mut catalog, &puller, batch);
            }
            changed = own_rx.changed() => {
                if changed.is_err() {
                    return;
                }
                let own = *own_rx.borrow_and_update();
                let mut guard = chitchat.lock().await;
                for (k, v) in own.to_keys() {
                    guard.self_node_state().set(k, v);
                }
            }
            _ = tick.tick() => {}
            () = shutdown.cancelled() => return,
        }
        let own_state = *own_rx.borrow();
        let current = snapshot.load_full();
        let config = &current.config;
        let Some(cluster) = &config.cluster else {
            return;
        };
        let mut last_known: Vec<Option<(u64, HotState)>> = vec![None; pops];
        let mut addrs: Vec<Option<std::net::SocketAddr>> = vec![None; pops];
        let mut alive = vec![false; pops];
        let mut directives: Vec<Vec<(String, AdminDirective)>> = vec![Vec::new(); pops];
        {
            let guard = chitchat.lock().await;
            for (id, node_state) in guard.node_states() {
                let Some(i) = config.pops.iter().position(|p| *p.name == *id.node_id) else {
                    if warned.insert(id.node_id.to_string()) {
                        warn!(node = %id.node_id, "gossip from a node that names no configured POP; ignored");
                    }
                    continue;
                };
                for (key, value) in node_state.key_values() {
                    let target = key
                        .strip_prefix(ADMIN_DIRECTIVE_PREFIX)
                        .and_then(|pop| config.pops.iter().position(|p| p.name == pop));
                    if let (Some(t), Some(d)) = (target, AdminDirective::parse(value)) {
                        directives[t].push((id.node_id.to_string(), d));
                    }
                }
                match HotState::from_keys(|k| node_state.get(k)) {
                    Ok(s) if last_known[i].is_none_or(|(g, _)| g <= id.generation_id) => {
                        last_known[i] = Some((id.generation_id, s));
                        addrs[i] = Some(id.gossip_advertise_addr);
                    }
                    Ok(_) => {}
                    Err(e) => {
                        if warned.insert(format!("{}:{e}", id.node_id)) {
                            warn!(node = %id.node_id, error = %e, "unreadable node state; POP treated as down");
                        }
                    }
                }
            }
            for id in guard.live_nodes() {
                if let Some(i) = config.pops.iter().position(|p| *p.name == *id.node_id) {
                    alive[i] = true;
                }
            }
        }
        let last_known: Vec<Option<HotState>> =
            last_known.into_iter().map(|k| k.map(|(_, s)| s)).collect();
        follow_views(
            &snapshot,
            &mut catalog,
            &puller,
            &last_known,
            &addrs,
            &alive,
            &done_tx,
        );
        let directives: Vec<Option<AdminDirective>> = directives
            .iter()
            .map(|ds| state::newest(ds.iter().map(|(n, d)| (n.as_str(), *d))))
            .collect();
        let (status, mode) = state::derive(&ClusterInput {
            pops,
            own: config.node.pop,
            own_state,
            last_known: &last_known,
            alive: &alive,
            quorum: cluster.quorum,
            directives: &directives,
        });
        if status == current.pop_status && mode == current.mode {
            continue;
        }
        log_mode_change(current.mode, mode);
        // rcu, not store: a view pulled meanwhile must not be undone.
        snapshot.rcu(|s| s.with_cluster(status.clone(), mode));
    }
}

/// Feeds the view catalog with what live nodes announce, starts the pulls it asks for, and
/// keeps the staleness shown for pulled views current.
fn follow_views(
    snapshot: &Arc<ArcSwap<Snapshot>>,
    catalog: &mut ViewCatalog,
    puller: &Puller,
    last_known: &[Option<HotState>],
    addrs: &[Option<std::net::SocketAddr>],
    alive: &[bool],
    done: &mpsc::Sender<Pulled>,
) {
    let current = snapshot.load();
    for (i, known) in last_known.iter().enumerate() {
        let announced = known
            .and_then(|s| s.view)
            .filter(|_| alive[i])
            .zip(addrs[i])
            .map(|(a, addr)| (addr, a));
        catalog.announce(i, announced);
        // The owner says its source went stale (or recovered) without a new view.
        if let (Some((_, a)), Some(info)) = (announced, current.view_info(i))
            && info.digest == Some(a.digest)
            && info.stale_since_ms != a.stale_since_ms
        {
            let info = ViewInfo {
                stale_since_ms: a.stale_since_ms,
                ..info.clone()
            };
            snapshot.rcu(|s| s.with_view_info(i, Some(info.clone())));
        }
    }
    while let Some(fetch) = catalog.poll_fetch(tokio::time::Instant::now().into_std()) {
        let name = current.config.pops[fetch.pop].name.clone();
        let stale = last_known[fetch.pop]
            .and_then(|s| s.view)
            .and_then(|a| a.stale_since_ms);
        debug!(pop = %name, peer = %fetch.addr, digest = format!("{:016x}", fetch.digest), "pulling route view");
        puller.start(fetch, name, stale, done.clone());
    }
}

/// Puts pulled views into answers in one rebuild (and logs the pulls that failed).
fn apply_pulled(
    snapshot: &Arc<ArcSwap<Snapshot>>,
    catalog: &mut ViewCatalog,
    puller: &Puller,
    batch: Vec<Pulled>,
) {
    let now = tokio::time::Instant::now().into_std();
    let config = snapshot.load().config.clone();
    let stats = &puller.stats.views.stats;
    let mut good = Vec::new();
    for (pop, result) in batch {
        let name = &config.pops[pop].name;
        match result {
            Ok((a, view)) => {
                catalog.fetched(now, pop, Ok(a.digest));
                stats.pulled.fetch_add(1, Ordering::Relaxed);
                info!(pop = %name, prefixes = a.prefixes, version = a.version, "pulled route view");
                let info = ViewInfo {
                    version: Some(a.version),
                    digest: Some(a.digest),
                    prefixes: a.prefixes,
                    source: format!("pulled from {name}"),
                    stale_since_ms: a.stale_since_ms,
                };
                good.push((pop, view, info));
            }
            Err(e) => {
                catalog.fetched(now, pop, Err(()));
                stats.pull_failures.fetch_add(1, Ordering::Relaxed);
                warn!(pop = %name, error = %e, failures = catalog.failures(pop), "route view pull failed; keeping the view in use");
            }
        }
    }
    if good.is_empty() {
        return;
    }
    let snapshot = snapshot.clone();
    // Rebuilding decision tables over full views takes CPU time: on the view builder thread,
    // below the DNS threads, and without holding up the follow loop (liveness, health and
    // load keep reaching answers while it runs).
    drop(background(move || {
        swap_views(&snapshot, |s| s.with_pulled(&good));
    }));
}
fn log_mode_change(before: Mode, after: Mode) {
    match (before, after) {
        (Mode::Standalone, Mode::LocalOnly { alive, quorum }) => {
            info!(
                alive,
                quorum, "waiting for peers: answering local-only until a quorum is seen"
            );
            return;
        }
        (Mode::Standalone, Mode::Cluster { alive }) => {
            info!(alive, "answering from the whole cluster");
            return;
        }
        _ => {}
    }
    match (before.is_local_only(), after) {
        (false, Mode::LocalOnly { alive, quorum }) => warn!(
            alive,
            quorum, "partitioned: fewer nodes alive than the quorum; answering local-only"
        ),
        (true, Mode::Cluster { alive }) => {
            info!(alive, "quorum regained: answering from the whole cluster");
        }
        _ => {}
    }
}
