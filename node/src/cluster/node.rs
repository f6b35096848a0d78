//! [E] A node's place in the cluster: runs chitchat over the QUIC transport, publishes the
//! node's own POP state, and turns what it hears into the snapshot answers come from
//! (through the pure rules of [`super::state`]).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use chitchat::{ChitchatConfig, ChitchatHandle, ChitchatId, FailureDetectorConfig};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument as _, info, warn};

use super::state::{self, ADMIN_DIRECTIVE_PREFIX, AdminDirective, ClusterInput, HotState, Mode};
use super::tls::ClusterTls;
use super::transport::{Faults, QuicTransport, TransportStats};
use crate::config::AdminState;
use crate::snapshot::Snapshot;

/// How often the node re-reads cluster state even without a membership change.
const REFRESH: Duration = Duration::from_millis(250);

/// A running cluster membership.
pub struct ClusterHandle {
    chitchat: tokio::sync::Mutex<Option<ChitchatHandle>>,
    own: watch::Sender<HotState>,
    task: JoinHandle<()>,
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
        self.task.abort();
        if let Some(chitchat) = self.chitchat.lock().await.take()
            && let Err(e) = chitchat.shutdown().await
        {
            warn!(error = %e, "gossip did not stop cleanly");
        }
    }
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
    let transport = QuicTransport::new(tls, socket);
    let stats = transport.stats();
    let faults = transport.faults();
    let own_pop = config.own_pop();
    let own_state = HotState {
        // Up until the probes say otherwise (they start up too).
        healthy: true,
        admin: own_pop.admin,
        load: None,
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
    let task = tokio::spawn(
        follow(chitchat.chitchat(), snapshot, own_rx, shutdown)
            .instrument(tracing::Span::current()),
    );
    Ok(ClusterHandle {
        chitchat: tokio::sync::Mutex::new(Some(chitchat)),
        own,
        task,
        stats,
        faults,
    })
}

/// Publishes the own state and derives the snapshot from the cluster's, on every change.
async fn follow(
    chitchat: Arc<tokio::sync::Mutex<chitchat::Chitchat>>,
    snapshot: Arc<ArcSwap<Snapshot>>,
    mut own_rx: watch::Receiver<HotState>,
    shutdown: CancellationToken,
) {
    let mut live_rx = chitchat.lock().await.live_nodes_watcher();
    let mut tick = tokio::time::interval(REFRESH);
    let mut warned: HashSet<String> = HashSet::new();
    loop {
        tokio::select! {
            _ = live_rx.changed() => {}
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
        let pops = config.pops.len();
        let mut last_known: Vec<Option<(u64, HotState)>> = vec![None; pops];
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
        snapshot.store(Arc::new(current.with_cluster(status, mode)));
    }
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
