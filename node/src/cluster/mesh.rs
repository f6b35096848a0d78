//! [E] The gossip mesh: one chitchat link per peer, so that a node's state is only ever
//! written by that node.
//!
//! Each pair of nodes runs its own two-member chitchat instance (a *link*): its members are
//! this node and the one peer at the other end of an authenticated QUIC connection, whose
//! certificate names it. Everything the link learns about the peer came from the peer's own
//! connection; nothing is relayed through a third node, so no certificate can speak for
//! another POP (chitchat 0.11 keeps its wire types crate-private, so relayed deltas could
//! not be filtered; see ARCHITECTURE.md). A peer that puts anything else into its link
//! (another node's state, endless incarnations) only spoils that link: it is logged, and
//! the link is started afresh.
//!
//! The same arrangement makes liveness direct: each link's failure detector hears its peer
//! every gossip round, whatever the cluster's size, and a node that cannot reach a peer
//! declares it dead even if others still hear it. A restarted peer is seen at once: its
//! endpoint answers the connection to its old incarnation with a stateless reset (the reset
//! key is derived from the node's key), and the link dials again as soon as the new
//! incarnation speaks.
//!
//! Peers are found through the configured seeds and through the `peers` hints nodes publish
//! (where they met whom): an address is dialled, the certificate tells whose it is, and a
//! link is made for that POP. Names that are no POP of this cluster, and this node's own
//! name at another address, are refused and logged.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chitchat::{
    ChitchatConfig, ChitchatHandle, ChitchatId, ChitchatMessage, FailureDetectorConfig,
};
use tokio::sync::{Mutex, mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument as _, debug, error, warn};

use super::core::Member;
use super::state::{HotState, KEY_PEERS, KEY_PROTO};
use super::transport::{
    self, Faults, LinkTransport, PEER_QUEUE, RECV_QUEUE, SenderControl, TransportStats,
};
use crate::pki::Identity;

/// Incarnations of one peer a link may hold before it is started afresh: a restart adds
/// one, and the dead ones are forgotten after [`DEAD_GRACE`].
const MAX_INCARNATIONS: usize = 4;
/// How long a dead incarnation stays in its link.
const DEAD_GRACE: Duration = Duration::from_secs(600);
/// How often seeds and hints are dialled while their POP has no live link.
const DISCOVER_EVERY: Duration = Duration::from_secs(1);
/// Longest wait between two dials of an address that does not answer.
const DISCOVER_BACKOFF_MAX: Duration = Duration::from_secs(30);
/// How often seed host names are resolved again.
const RESOLVE_EVERY: Duration = Duration::from_secs(30);
/// Rounds during which a new incarnation that speaks counts as alive before its link's
/// failure detector agrees (see [`Mesh::members`]).
const NEW_INCARNATION_ROUNDS: u64 = 5;
/// Hints kept per POP (most recent first).
const HINTS_PER_POP: usize = 4;

/// Who this node is in the mesh.
#[derive(Clone, Debug)]
pub struct MeshConfig {
    /// The cluster id.
    pub cluster: String,
    /// Every POP's name; a POP's index is its identity.
    pub names: Vec<String>,
    /// This node's POP.
    pub own: usize,
    /// This incarnation (unix ms at start).
    pub generation: u64,
    /// This node's cluster address.
    pub listen: SocketAddr,
    /// Addresses (or `host:port`) to join through.
    pub seeds: Vec<String>,
    /// Time between gossip rounds.
    pub gossip_interval: Duration,
}

struct Link {
    chitchat: ChitchatHandle,
    inbox: mpsc::Sender<ChitchatMessage>,
    addr: watch::Sender<SocketAddr>,
    control: mpsc::Sender<SenderControl>,
    sender: JoinHandle<()>,
    /// The newest incarnation of the peer seen on this link, and since when.
    generation: Option<u64>,
    generation_seen: Instant,
}

/// See the module doc.
pub struct Mesh {
    cfg: MeshConfig,
    /// Taken at shutdown, so that the socket is released once the tasks using it end.
    endpoint: std::sync::Mutex<Option<quinn::Endpoint>>,
    client: quinn::ClientConfig,
    links: Mutex<Vec<Option<Link>>>,
    /// What this node publishes about itself (for links made later).
    own_keys: std::sync::Mutex<Vec<(String, String)>>,
    /// Discovery hints: POP -> addresses, most recent first.
    hints: std::sync::Mutex<BTreeMap<usize, Vec<SocketAddr>>>,
    stats: Arc<TransportStats>,
    faults: Faults,
    /// When each POP's node last spoke on its own connection (ms since `epoch`; 0: never).
    heard: Vec<std::sync::atomic::AtomicU64>,
    epoch: Instant,
}

impl Mesh {
    /// A mesh for this node, dialling from `endpoint` with `client` (the gossip ALPN).
    pub fn new(
        cfg: MeshConfig,
        endpoint: quinn::Endpoint,
        client: quinn::ClientConfig,
        own: &HotState,
        stats: Arc<TransportStats>,
        faults: Faults,
    ) -> Arc<Self> {
        let pops = cfg.names.len();
        let own_keys = keys_of(own);
        Arc::new(Self {
            cfg,
            endpoint: std::sync::Mutex::new(Some(endpoint)),
            client,
            links: Mutex::new((0..pops).map(|_| None).collect()),
            own_keys: std::sync::Mutex::new(own_keys),
            hints: std::sync::Mutex::new(BTreeMap::new()),
            stats,
            faults,
            heard: (0..pops)
                .map(|_| std::sync::atomic::AtomicU64::new(0))
                .collect(),
            epoch: Instant::now(),
        })
    }

    /// The endpoint, until shutdown.
    fn endpoint(&self) -> anyhow::Result<quinn::Endpoint> {
        // INVARIANT: the lock is held for a clone only.
        self.endpoint
            .lock()
            .expect("endpoint lock")
            .clone()
            .ok_or_else(|| anyhow::anyhow!("the mesh is shut down"))
    }

    /// This node's cluster address.
    pub fn local_addr(&self) -> SocketAddr {
        self.cfg.listen
    }

    /// The POP index of node name `name`, if it is another POP of this cluster.
    fn peer_index(&self, name: &str) -> Option<usize> {
        self.cfg
            .names
            .iter()
            .position(|n| n == name)
            .filter(|&i| i != self.cfg.own)
    }

    /// Makes (or finds) the link to POP `pop` at `addr`; returns its inbox and its sender's
    /// control.
    async fn ensure_link(
        self: &Arc<Self>,
        pop: usize,
        addr: SocketAddr,
    ) -> anyhow::Result<(mpsc::Sender<ChitchatMessage>, mpsc::Sender<SenderControl>)> {
        let mut links = self.links.lock().await;
        if let Some(link) = &links[pop] {
            if *link.addr.borrow() != addr {
                debug!(pop = %self.cfg.names[pop], addr = %addr, "peer's cluster address changed");
                link.addr.send_replace(addr);
            }
            return Ok((link.inbox.clone(), link.control.clone()));
        }
        let link = self.make_link(pop, addr).await?;
        let found = (link.inbox.clone(), link.control.clone());
        links[pop] = Some(link);
        Ok(found)
    }

    async fn make_link(self: &Arc<Self>, pop: usize, addr: SocketAddr) -> anyhow::Result<Link> {
        let name = self.cfg.names[pop].clone();
        let (addr_tx, addr_rx) = watch::channel(addr);
        let (queue_tx, queue_rx) = mpsc::channel(PEER_QUEUE);
        let (control_tx, control_rx) = mpsc::channel(4);
        let (inbox_tx, inbox_rx) = mpsc::channel(RECV_QUEUE);
        let endpoint = self.endpoint()?;
        let sender = tokio::spawn(
            transport::peer_sender(
                endpoint,
                self.client.clone(),
                addr_rx.clone(),
                name.clone(),
                queue_rx,
                control_rx,
                self.stats.clone(),
            )
            .instrument(tracing::info_span!("link", peer = %name)),
        );
        let transport = LinkTransport::new(addr_rx, queue_tx, inbox_rx, self.faults.clone());
        let own_name = self.cfg.names[self.cfg.own].clone();
        let config = ChitchatConfig {
            chitchat_id: ChitchatId::new(own_name, self.cfg.generation, self.cfg.listen),
            cluster_id: self.cfg.cluster.clone(),
            gossip_interval: self.cfg.gossip_interval,
            listen_addr: self.cfg.listen,
            seed_nodes: vec![addr.to_string()],
            failure_detector_config: FailureDetectorConfig {
                initial_interval: self.cfg.gossip_interval,
                dead_node_grace_period: DEAD_GRACE,
                ..FailureDetectorConfig::default()
            },
            marked_for_deletion_grace_period: Duration::from_secs(3600),
            catchup_callback: None,
            extra_liveness_predicate: None,
        };
        // INVARIANT: the lock is held for a clone only.
        let keys = self.own_keys.lock().expect("own keys lock").clone();
        let chitchat = match chitchat::spawn_chitchat(config, keys, &transport).await {
            Ok(c) => c,
            Err(e) => {
                sender.abort();
                return Err(e);
            }
        };
        debug!(pop = %name, addr = %addr, "gossip link made");
        Ok(Link {
            chitchat,
            inbox: inbox_tx,
            addr: addr_tx,
            control: control_tx,
            sender,
            generation: None,
            generation_seen: Instant::now(),
        })
    }

    /// Serves the gossip connection of peer `id` (authenticated as a node of this cluster)
    /// until it closes.
    pub async fn incoming(self: Arc<Self>, conn: quinn::Connection, id: Identity) {
        let from = conn.remote_address();
        let Some(pop) = self.peer_index(&id.name) else {
            if id.name == self.cfg.names[self.cfg.own] {
                error!(peer = %from, identity = %id, "another node holds this node's certificate; refused");
            } else {
                warn!(peer = %from, identity = %id, "node certified for a name that is no POP of this cluster; refused");
            }
            self.stats
                .peers_refused
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            conn.close(transport::REFUSED.into(), b"not a POP of this cluster");
            return;
        };
        let mut inbox = match self.ensure_link(pop, from).await {
            Ok((inbox, control)) => {
                // The peer is reachable now: a sender backing off from it dials at once.
                let _ = control.try_send(SenderControl::Wake);
                inbox
            }
            Err(e) => {
                warn!(peer = %from, error = %e, "cannot make a gossip link");
                return;
            }
        };
        let mesh = self.clone();
        let mut refreshed = false;
        transport::receive_gossip(&conn, &id, &self.stats, |msg| {
            mesh.heard[pop].store(
                mesh.epoch.elapsed().as_millis() as u64 + 1,
                std::sync::atomic::Ordering::Relaxed,
            );
            match inbox.try_send(msg) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    debug!(peer = %from, "gossip receive queue full, message dropped");
                }
                Err(mpsc::error::TrySendError::Closed(msg)) => {
                    // The link was started afresh: find its new inbox (once per message).
                    if !refreshed && let Ok(links) = mesh.links.try_lock() {
                        if let Some(link) = &links[pop] {
                            inbox = link.inbox.clone();
                            let _ = inbox.try_send(msg);
                        }
                        refreshed = true;
                    }
                }
            }
        })
        .await;
    }

    /// Publishes this node's state on every link (and on links made later); the `peers`
    /// hints are the mesh's own (see [`Self::discover`]).
    pub async fn publish(&self, own: &HotState) {
        let mut keys = keys_of(own);
        let hints = self.hints_value();
        if let Some(k) = keys.iter_mut().find(|(k, _)| k == KEY_PEERS) {
            k.1 = hints;
        }
        self.publish_keys(keys).await;
    }

    /// The `peers` value published now.
    fn hints_value(&self) -> String {
        // INVARIANT: the lock is held to read one value only.
        self.own_keys
            .lock()
            .expect("own keys lock")
            .iter()
            .find(|(k, _)| k == KEY_PEERS)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    }

    /// Publishes where this node met whom (the `peers` key), if that changed.
    async fn publish_hints(&self) {
        let value = self
            .met()
            .await
            .iter()
            .map(|(n, a)| format!("{n}@{a}"))
            .collect::<Vec<_>>()
            .join(" ");
        if value == self.hints_value() {
            return;
        }
        let mut keys = self.own_keys.lock().expect("own keys lock").clone();
        match keys.iter_mut().find(|(k, _)| k == KEY_PEERS) {
            Some(k) => k.1 = value,
            None => keys.push((KEY_PEERS.to_owned(), value)),
        }
        self.publish_keys(keys).await;
    }

    /// Learns discovery hints from what every linked peer publishes under `peers`.
    async fn learn_hints(&self) {
        let links = self.links.lock().await;
        let mut found: Vec<(String, SocketAddr)> = Vec::new();
        for (pop, link) in links.iter().enumerate() {
            let Some(link) = link else { continue };
            let name = self.cfg.names[pop].clone();
            let value = link
                .chitchat
                .with_chitchat(|c| {
                    c.node_states()
                        .iter()
                        .filter(|(id, _)| *id.node_id == *name)
                        .max_by_key(|(id, _)| id.generation_id)
                        .and_then(|(_, s)| s.get(KEY_PEERS).map(str::to_owned))
                })
                .await
                .unwrap_or_default();
            if value.len() > super::state::MAX_VALUE {
                continue;
            }
            for hint in value.split_whitespace().take(self.cfg.names.len()) {
                if let Some((n, a)) = hint.split_once('@')
                    && let Ok(addr) = a.parse()
                {
                    found.push((n.to_owned(), addr));
                }
            }
        }
        drop(links);
        // INVARIANT: the lock is held for map updates only.
        let mut hints = self.hints.lock().expect("hints lock");
        for (name, addr) in found {
            let Some(pop) = self.peer_index(&name) else {
                continue;
            };
            let list = hints.entry(pop).or_default();
            if !list.contains(&addr) {
                list.insert(0, addr);
                list.truncate(HINTS_PER_POP);
            }
        }
    }

    /// Publishes these key-value pairs as this node's state on every link (and on links made
    /// later).
    pub async fn publish_keys(&self, keys: Vec<(String, String)>) {
        // INVARIANT: the lock is held for an assignment only.
        *self.own_keys.lock().expect("own keys lock") = keys.clone();
        let links = self.links.lock().await;
        for link in links.iter().flatten() {
            let keys = keys.clone();
            link.chitchat
                .with_chitchat(move |c| {
                    let me = c.self_node_state();
                    for (k, v) in &keys {
                        me.set(k.clone(), v.clone());
                    }
                })
                .await;
        }
    }

    /// The names of the nodes this node hears alive, itself included, sorted.
    pub async fn alive_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.met().await.into_iter().map(|(n, _)| n).collect();
        names.push(self.cfg.names[self.cfg.own].clone());
        names.sort();
        names
    }

    /// The value of `key` that peer `name` (its newest incarnation) published on its link.
    pub async fn peer_value(&self, name: &str, key: &str) -> Option<String> {
        let pop = self.peer_index(name)?;
        let links = self.links.lock().await;
        let link = links[pop].as_ref()?;
        link.chitchat
            .with_chitchat(|c| {
                c.node_states()
                    .iter()
                    .filter(|(id, _)| &*id.node_id == name)
                    .max_by_key(|(id, _)| id.generation_id)
                    .and_then(|(_, state)| state.get(key).map(str::to_owned))
            })
            .await
    }

    /// Where this node met other nodes: `(name, address)` of each link whose peer is alive.
    async fn met(&self) -> Vec<(String, SocketAddr)> {
        let links = self.links.lock().await;
        let mut out = Vec::new();
        for (pop, link) in links.iter().enumerate() {
            let Some(link) = link else { continue };
            let name = &self.cfg.names[pop];
            let alive = link
                .chitchat
                .with_chitchat(|c| c.live_nodes().any(|id| *id.node_id == **name))
                .await;
            if alive {
                out.push((name.clone(), *link.addr.borrow()));
            }
        }
        out
    }

    /// Every incarnation of every peer, as the links show them now. A link holding anything
    /// its peer may not write is started afresh (and logged).
    pub async fn members(self: &Arc<Self>) -> Vec<Member> {
        let mut members = Vec::new();
        let mut spoiled = Vec::new();
        {
            let mut links = self.links.lock().await;
            for (pop, link) in links.iter_mut().enumerate() {
                let Some(link) = link else { continue };
                let name = self.cfg.names[pop].clone();
                let own_name = self.cfg.names[self.cfg.own].clone();
                let addr = *link.addr.borrow();
                // A new incarnation that speaks on its own authenticated connection is alive
                // before the failure detector says so (it needs two heartbeats a round apart):
                // a restarted peer is back a round sooner. Only for a new incarnation's first
                // rounds, so that a peer this node hears but cannot reach (a one-way cut) is
                // still judged by the detector, and it lapses two rounds after the peer falls
                // silent, well before the detector's bound.
                let heard = self.heard[pop].load(std::sync::atomic::Ordering::Relaxed);
                let round = self.cfg.gossip_interval.as_millis() as u64;
                let spoke = heard != 0
                    && (self.epoch.elapsed().as_millis() as u64 + 1).saturating_sub(heard)
                        <= 2 * round;
                let (known, seen) = (link.generation, link.generation_seen);
                let fresh = move |generation: u64| {
                    Some(generation) != known
                        || seen.elapsed() < Duration::from_millis(NEW_INCARNATION_ROUNDS * round)
                };
                let read = link
                    .chitchat
                    .with_chitchat(|c| {
                        let live: BTreeSet<ChitchatId> = c.live_nodes().cloned().collect();
                        let newest = c
                            .node_states()
                            .keys()
                            .filter(|id| *id.node_id == *name)
                            .map(|id| id.generation_id)
                            .max();
                        let mut found = Vec::new();
                        let mut foreign = None;
                        for (id, state) in c.node_states() {
                            // This node under its own name: itself, or an earlier incarnation
                            // of it that the peer still remembers (it is the peer's to say).
                            if *id.node_id == *own_name {
                                continue;
                            }
                            if *id.node_id != *name {
                                foreign = Some(id.node_id.clone());
                                continue;
                            }
                            let keys = state
                                .get(KEY_PROTO)
                                .map(|_| HotState::from_keys(|k| state.get(k)));
                            found.push(Member {
                                pop,
                                generation: id.generation_id,
                                addr,
                                alive: live.contains(id)
                                    || (spoke
                                        && keys.is_some()
                                        && Some(id.generation_id) == newest
                                        && fresh(id.generation_id)),
                                state: keys,
                            });
                        }
                        (found, foreign)
                    })
                    .await;
                let (found, foreign) = read;
                // A new incarnation of the peer (it restarted): the connection this node holds
                // to it may lead to the old one, so dial again at once. (A restarted peer also
                // answers the old connection with a stateless reset; this does not wait.)
                let newest = found.iter().map(|m| m.generation).max();
                if let (Some(before), Some(now)) = (link.generation, newest)
                    && now > before
                {
                    let _ = link.control.try_send(SenderControl::Redial);
                }
                if newest > link.generation {
                    link.generation = newest;
                    link.generation_seen = Instant::now();
                }
                if let Some(other) = foreign {
                    warn!(peer = %name, other = %other, "peer sent state of another node on its link; link started afresh");
                    spoiled.push((pop, addr));
                } else if found.len() > MAX_INCARNATIONS {
                    warn!(peer = %name, incarnations = found.len(), "peer's link holds too many incarnations; link started afresh");
                    spoiled.push((pop, addr));
                } else {
                    members.extend(found);
                }
            }
        }
        for (pop, addr) in spoiled {
            self.restart_link(pop, addr).await;
        }
        members
    }

    async fn restart_link(self: &Arc<Self>, pop: usize, addr: SocketAddr) {
        let old = self.links.lock().await[pop].take();
        if let Some(link) = old {
            close_link(link).await;
        }
        if let Err(e) = self.ensure_link(pop, addr).await {
            warn!(pop = %self.cfg.names[pop], error = %e, "cannot make a gossip link");
        }
    }

    /// Dials seeds and hints for POPs that have no live link, until `shutdown`.
    pub async fn discover(self: Arc<Self>, shutdown: CancellationToken) {
        let mut seeds: Vec<SocketAddr> = Vec::new();
        let mut resolved_at: Option<Instant> = None;
        let mut backoff: BTreeMap<SocketAddr, (Instant, Duration)> = BTreeMap::new();
        let mut warned: BTreeSet<(SocketAddr, String)> = BTreeSet::new();
        let mut tick = tokio::time::interval(DISCOVER_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = shutdown.cancelled() => return,
            }
            self.publish_hints().await;
            self.learn_hints().await;
            if resolved_at.is_none_or(|t| t.elapsed() >= RESOLVE_EVERY) {
                seeds = resolve(&self.cfg.seeds).await;
                resolved_at = Some(Instant::now());
            }
            let (linked, alive) = self.linked().await;
            let mut candidates: BTreeSet<SocketAddr> = BTreeSet::new();
            if alive.len() + 1 < self.cfg.names.len() {
                candidates.extend(seeds.iter().copied());
            }
            {
                // INVARIANT: the lock is held to copy the hints only.
                let hints = self.hints.lock().expect("hints lock");
                for (pop, addrs) in hints.iter() {
                    if !alive.contains(pop) {
                        candidates.extend(addrs.iter().copied());
                    }
                }
            }
            candidates.remove(&self.cfg.listen);
            // Addresses where a link already dials are left to it.
            for addr in linked {
                candidates.remove(&addr);
            }
            let now = Instant::now();
            candidates.retain(|addr| {
                backoff.get(addr).is_none_or(|(at, _)| *at <= now) && !self.faults.is_cut(*addr)
            });
            let Ok(endpoint) = self.endpoint() else {
                return;
            };
            // Every candidate at once: a restarted node is back in the cluster after one
            // handshake time, not one per peer.
            let mut dials = tokio::task::JoinSet::new();
            for addr in candidates {
                let (endpoint, client) = (endpoint.clone(), self.client.clone());
                dials.spawn(
                    async move { (addr, transport::connect(&endpoint, &client, addr).await) },
                );
            }
            drop(endpoint);
            while let Some(dialled) = tokio::select! {
                d = dials.join_next() => d,
                () = shutdown.cancelled() => return,
            } {
                let Ok((addr, result)) = dialled else {
                    continue;
                };
                let now = Instant::now();
                match result {
                    Ok(conn) => {
                        let name = transport::peer_name(&conn).unwrap_or_default();
                        match self.peer_index(&name) {
                            Some(pop) => {
                                backoff.remove(&addr);
                                match self.ensure_link(pop, addr).await {
                                    // The link's sender takes this connection as its first.
                                    Ok((_, control)) => {
                                        if let Err(
                                            mpsc::error::TrySendError::Full(SenderControl::Adopt(
                                                c,
                                            ))
                                            | mpsc::error::TrySendError::Closed(
                                                SenderControl::Adopt(c),
                                            ),
                                        ) = control.try_send(SenderControl::Adopt(conn))
                                        {
                                            c.close(0u32.into(), b"discovered");
                                        }
                                    }
                                    Err(e) => {
                                        conn.close(0u32.into(), b"discovered");
                                        warn!(pop = %name, error = %e, "cannot make a gossip link");
                                    }
                                }
                            }
                            None => {
                                conn.close(0u32.into(), b"discovered");
                                if warned.insert((addr, name.clone())) {
                                    if name == self.cfg.names[self.cfg.own] {
                                        error!(addr = %addr, "another node holds this node's certificate");
                                    } else {
                                        warn!(addr = %addr, node = %name, "seed or hint is a node of no POP of this cluster");
                                    }
                                }
                                backoff.insert(
                                    addr,
                                    (now + DISCOVER_BACKOFF_MAX, DISCOVER_BACKOFF_MAX),
                                );
                            }
                        }
                    }
                    Err(e) => {
                        let wait = backoff
                            .get(&addr)
                            .map_or(DISCOVER_EVERY, |(_, w)| (*w * 2).min(DISCOVER_BACKOFF_MAX));
                        debug!(addr = %addr, error = %e, retry_in = ?wait, "cannot reach seed or hint");
                        backoff.insert(addr, (now + wait, wait));
                    }
                }
            }
        }
    }

    /// The addresses links dial, and the POPs whose link hears its peer alive.
    async fn linked(&self) -> (Vec<SocketAddr>, BTreeSet<usize>) {
        let links = self.links.lock().await;
        let mut addrs = Vec::new();
        let mut alive = BTreeSet::new();
        for (pop, link) in links.iter().enumerate() {
            let Some(link) = link else { continue };
            addrs.push(*link.addr.borrow());
            let name = &self.cfg.names[pop];
            if link
                .chitchat
                .with_chitchat(|c| c.live_nodes().any(|id| *id.node_id == **name))
                .await
            {
                alive.insert(pop);
            }
        }
        (addrs, alive)
    }

    /// Makes every link dial again, so that its server's certificate is checked anew (after
    /// the revoked serials changed).
    pub fn redial_all(&self) {
        if let Ok(links) = self.links.try_lock() {
            for link in links.iter().flatten() {
                let _ = link.control.try_send(SenderControl::Redial);
            }
        }
    }

    /// Leaves every link and lets go of the endpoint.
    pub async fn shutdown(&self) {
        // INVARIANT: the lock is held for a take only.
        drop(self.endpoint.lock().expect("endpoint lock").take());
        let links: Vec<Link> = self
            .links
            .lock()
            .await
            .iter_mut()
            .filter_map(Option::take)
            .collect();
        for link in links {
            close_link(link).await;
        }
    }
}

async fn close_link(link: Link) {
    link.sender.abort();
    if let Err(e) = link.chitchat.shutdown().await {
        debug!(error = %e, "gossip link did not stop cleanly");
    }
}

fn keys_of(own: &HotState) -> Vec<(String, String)> {
    own.to_keys()
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
}

/// Seed addresses, with host names resolved (as a cluster on Kubernetes names its seeds).
async fn resolve(seeds: &[String]) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for seed in seeds {
        if let Ok(addr) = seed.parse() {
            out.push(addr);
            continue;
        }
        match tokio::net::lookup_host(seed.as_str()).await {
            Ok(addrs) => out.extend(addrs),
            Err(e) => debug!(seed = %seed, error = %e, "cannot resolve seed"),
        }
    }
    out
}
