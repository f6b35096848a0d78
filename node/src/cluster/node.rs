//! [E] A node's place in the cluster: the QUIC endpoint, the gossip mesh, the view server
//! and the follower loop that feeds [`super::core::Follower`] with what the links show,
//! runs the view pulls it asks for, and hands the results to the node's state owner as
//! [`Change`]s. It decides nothing itself: the rules are in [`super::core`] and
//! [`crate::state`].

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument as _, debug, info, warn};

use super::core::{Action, Event, Follower};
use super::endpoint::{self, Handlers, Service};
use super::mesh::{Mesh, MeshConfig};
use super::state::{HotState, ViewAnnouncement};
use super::tls::{ALPN_GOSSIP, ALPN_VIEWS, ClusterTls};
use super::transport::{Faults, TransportStats};
use super::view_cache;
use super::view_sync::{self, ViewServer};
use super::views::Fetch;
use crate::config::Config;
use crate::routes::HopRanges;
use crate::snapshot::ViewInfo;
use crate::state::Change;
use crate::state::builder::Builder;

/// What a pull gives back: the POP, and the announcement and view received.
type Pulled = (usize, anyhow::Result<(ViewAnnouncement, Arc<HopRanges>)>);

/// A running cluster membership.
pub struct ClusterHandle {
    mesh: Arc<Mesh>,
    tls: Arc<ClusterTls>,
    /// Taken at shutdown, so that the socket is released once the tasks using it end.
    endpoint: std::sync::Mutex<Option<quinn::Endpoint>>,
    handlers: Arc<Handlers>,
    views: Arc<ViewServer>,
    tasks: std::sync::Mutex<Vec<JoinHandle<()>>>,
    /// What the gossip transport moved.
    pub stats: Arc<TransportStats>,
    /// Fault injection at the transport (tests and simulations).
    pub faults: Faults,
}

/// What the cluster needs from the rest of the node.
pub struct ClusterParts {
    /// The node's builder thread (view decoding).
    pub builder: Builder,
    /// Where changes go (the state owner).
    pub changes: mpsc::Sender<Change>,
    /// What this node publishes about itself, as the owner updates it.
    pub own: watch::Receiver<HotState>,
    /// The digests of the views held: at start once the kept views are loaded, and after a
    /// reload that rebuilt the tables (what is not held is pulled).
    pub held: mpsc::Receiver<Vec<Option<u64>>>,
    /// Serves this node's own view (the owner sets what it serves).
    pub views: Arc<ViewServer>,
}

impl ClusterHandle {
    /// The server of this node's own view (and its transfer counters).
    pub fn view_server(&self) -> Arc<ViewServer> {
        self.views.clone()
    }

    /// Counters of route-view transfers.
    pub fn view_stats(&self) -> &view_sync::ViewStats {
        &self.views.stats
    }

    /// Serves the operator API to operators over QUIC from now on.
    pub fn serve_api(&self, api: Service) {
        // INVARIANT: the lock is held for an assignment only.
        *self.handlers.api.lock().expect("api lock") = Some(api);
    }

    /// The node's cluster endpoint address.
    pub fn local_addr(&self) -> std::net::SocketAddr {
        self.mesh.local_addr()
    }

    /// Replaces who may be a peer (on reload): the POP names and the revoked serials;
    /// connections of peers now refused are closed.
    pub fn admit(&self, names: Vec<String>, revoked: std::collections::BTreeSet<String>) {
        self.tls.admit(super::tls::Admission {
            nodes: names,
            revoked: revoked.clone(),
        });
        self.handlers.close_revoked(&revoked);
        self.mesh.redial_all();
    }

    /// Leaves the cluster (once; later calls do nothing).
    pub async fn shutdown(&self) {
        // INVARIANT: this lock is never held across an await or a panic.
        let tasks: Vec<JoinHandle<()>> =
            std::mem::take(&mut *self.tasks.lock().expect("tasks lock"));
        for t in tasks {
            t.abort();
            let _ = t.await;
        }
        self.mesh.shutdown().await;
        // The API service holds the node's API context, which holds this handle: let go.
        // INVARIANT: the lock is held for a take only.
        drop(self.handlers.api.lock().expect("api lock").take());
        let endpoint = self.endpoint.lock().expect("endpoint lock").take();
        if let Some(endpoint) = endpoint {
            endpoint.close(0u32.into(), b"shutdown");
            let _ = tokio::time::timeout(Duration::from_secs(1), endpoint.wait_idle()).await;
        }
    }
}

/// Joins the cluster of `config` on `socket` (bound by the caller to `cluster.listen`),
/// as incarnation `generation`, until `shutdown`.
pub async fn start(
    config: &Config,
    socket: std::net::UdpSocket,
    generation: u64,
    parts: ClusterParts,
    shutdown: CancellationToken,
) -> anyhow::Result<ClusterHandle> {
    let cluster = config
        .cluster
        .clone()
        .ok_or_else(|| anyhow::anyhow!("no [cluster] in the config"))?;
    let names: Vec<String> = config.pops.iter().map(|p| p.name.clone()).collect();
    let tls = Arc::new(ClusterTls::from_config(&cluster, &names)?);
    let listen = socket.local_addr()?;
    let endpoint = endpoint::bind(&tls, socket)?;
    let stats = Arc::new(TransportStats::default());
    let faults = Faults::default();
    let own = parts.own.borrow().clone();
    let mesh = Mesh::new(
        MeshConfig {
            cluster: cluster.id.clone(),
            names: names.clone(),
            own: config.node.pop,
            generation,
            listen,
            seeds: cluster.seeds.clone(),
            gossip_interval: cluster.gossip_interval,
        },
        endpoint.clone(),
        tls.client_config(ALPN_GOSSIP)?,
        &own,
        stats.clone(),
        faults.clone(),
    );
    let gossip: Service = {
        let mesh = mesh.clone();
        Arc::new(move |conn, id| Box::pin(mesh.clone().incoming(conn, id)))
    };
    let handlers = Arc::new(Handlers::new(
        gossip,
        endpoint::serve_views(parts.views.clone()),
        stats.clone(),
        faults.clone(),
    ));
    let mut tasks = Vec::new();
    let span = tracing::Span::current();
    tasks.push(tokio::spawn(
        endpoint::accept_loop(endpoint.clone(), tls.clone(), handlers.clone())
            .instrument(span.clone()),
    ));
    tasks.push(tokio::spawn(
        mesh.clone()
            .discover(shutdown.clone())
            .instrument(span.clone()),
    ));
    tasks.push(tokio::spawn(
        publish(mesh.clone(), parts.own, shutdown.clone()).instrument(span.clone()),
    ));
    let puller = Puller {
        endpoint: endpoint.clone(),
        client: tls.client_config(ALPN_VIEWS)?,
        builder: parts.builder,
        faults: faults.clone(),
        views: parts.views.clone(),
        cache: config.node.state_dir.as_ref().map(|d| d.join("views")),
        names: names.clone(),
    };
    let refresh =
        (cluster.gossip_interval / 2).clamp(Duration::from_millis(50), Duration::from_millis(250));
    tasks.push(tokio::spawn(
        follow(
            mesh.clone(),
            Follower::new(names.len(), config.node.pop),
            puller,
            parts.changes,
            parts.held,
            refresh,
            shutdown,
        )
        .instrument(span),
    ));
    info!(cluster = %cluster.id, gossip = %listen, seeds = ?cluster.seeds, generation, "joined the cluster");
    Ok(ClusterHandle {
        mesh,
        tls,
        endpoint: std::sync::Mutex::new(Some(endpoint)),
        handlers,
        views: parts.views.clone(),
        tasks: std::sync::Mutex::new(tasks),
        stats,
        faults,
    })
}

/// Puts what the owner publishes about this node on every link.
async fn publish(mesh: Arc<Mesh>, mut own: watch::Receiver<HotState>, shutdown: CancellationToken) {
    loop {
        let state = own.borrow_and_update().clone();
        mesh.publish(&state).await;
        tokio::select! {
            changed = own.changed() => if changed.is_err() { return },
            () = shutdown.cancelled() => return,
        }
    }
}

/// Runs route-view pulls for the follow loop.
struct Puller {
    endpoint: quinn::Endpoint,
    client: quinn::ClientConfig,
    builder: Builder,
    faults: Faults,
    views: Arc<ViewServer>,
    /// Where pulled views are kept across restarts, if anywhere.
    cache: Option<std::path::PathBuf>,
    names: Vec<String>,
}

impl Puller {
    fn start(&self, fetch: Fetch, stale: Option<u64>, done: mpsc::Sender<Pulled>) {
        let (endpoint, client, builder, faults, cache, views) = (
            self.endpoint.clone(),
            self.client.clone(),
            self.builder.clone(),
            self.faults.clone(),
            self.cache.clone(),
            self.views.clone(),
        );
        let pop_name = self.names[fetch.pop].clone();
        debug!(pop = %pop_name, peer = %fetch.addr, digest = format!("{:016x}", fetch.digest), "pulling route view");
        tokio::spawn(
            async move {
                let result = if faults.is_cut(fetch.addr) {
                    Err(anyhow::anyhow!("peer cut off by fault injection"))
                } else {
                    view_sync::fetch(
                        &endpoint,
                        &client,
                        &builder,
                        &views.stats,
                        fetch.addr,
                        &pop_name,
                        fetch.digest,
                    )
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

/// Reads the links, feeds the follower and carries out what it asks, until `shutdown`.
async fn follow(
    mesh: Arc<Mesh>,
    mut follower: Follower,
    puller: Puller,
    changes: mpsc::Sender<Change>,
    mut held: mpsc::Receiver<Vec<Option<u64>>>,
    refresh: Duration,
    shutdown: CancellationToken,
) {
    let pops = puller.names.len();
    let (done_tx, mut done_rx) = mpsc::channel::<Pulled>(pops.max(1));
    let mut tick = tokio::time::interval(refresh);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let deadline = follower.poll_timeout();
        tokio::select! {
            _ = tick.tick() => {
                let members = mesh.members().await;
                follower.handle_members(tokio::time::Instant::now().into_std(), &members);
            }
            Some(digests) = held.recv() => {
                follower.handle_held(tokio::time::Instant::now().into_std(), &digests);
            }
            Some(first) = done_rx.recv() => {
                // Pulls that finished meanwhile go in with it: one rebuild of the decision
                // tables for all of them (a node starting up pulls every view at once).
                let mut batch = vec![first];
                while let Ok(more) = done_rx.try_recv() {
                    batch.push(more);
                }
                let now = tokio::time::Instant::now().into_std();
                let mut good = Vec::new();
                for (pop, result) in batch {
                    let name = &puller.names[pop];
                    match result {
                        Ok((a, view)) => {
                            follower.handle_fetched(now, pop, Ok(a.digest));
                            puller.views.stats.pulled.fetch_add(1, Ordering::Relaxed);
                            info!(pop = %name, prefixes = a.prefixes, version = a.version, "pulled route view");
                            good.push((pop, view, pulled_info(name, a)));
                        }
                        Err(e) => {
                            follower.handle_fetched(now, pop, Err(()));
                            puller.views.stats.pull_failures.fetch_add(1, Ordering::Relaxed);
                            warn!(pop = %name, error = %format_args!("{e:#}"), failures = follower.failures(pop), "route view pull failed; keeping the view in use");
                        }
                    }
                }
                if !good.is_empty() && changes.send(Change::Pulled(good)).await.is_err() {
                    return;
                }
            }
            () = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            } => {
                follower.handle_timeout(tokio::time::Instant::now().into_std());
            }
            () = shutdown.cancelled() => return,
        }
        while let Some(action) = follower.poll_action() {
            match action {
                Action::Peers(peers) => {
                    if changes.send(Change::Peers(peers)).await.is_err() {
                        return;
                    }
                }
                Action::Fetch(fetch) => {
                    let stale = follower.peers()[fetch.pop]
                        .known
                        .as_ref()
                        .and_then(|k| k.view)
                        .and_then(|a| a.stale_since_ms);
                    puller.start(fetch, stale, done_tx.clone());
                }
                Action::ViewStale {
                    pop,
                    stale_since_ms,
                } => {
                    let Some(a) = follower.peers()[pop].known.as_ref().and_then(|k| k.view) else {
                        continue;
                    };
                    let info = pulled_info(
                        &puller.names[pop],
                        ViewAnnouncement {
                            stale_since_ms,
                            ..a
                        },
                    );
                    if changes.send(Change::ViewInfo(pop, info)).await.is_err() {
                        return;
                    }
                }
                Action::Log(event) => log_event(&puller.names, &event),
            }
        }
    }
}

fn pulled_info(name: &str, a: ViewAnnouncement) -> ViewInfo {
    ViewInfo {
        version: Some(a.version),
        digest: Some(a.digest),
        prefixes: a.prefixes,
        source: format!("pulled from {name}"),
        stale_since_ms: a.stale_since_ms,
    }
}

fn log_event(names: &[String], event: &Event) {
    let name = |pop: usize| names.get(pop).map_or("?", String::as_str);
    match event {
        Event::PeerUp { pop, generation } => {
            info!(peer = %name(*pop), generation, "peer up");
        }
        Event::PeerDown { pop } => info!(peer = %name(*pop), "peer down: no longer heard"),
        Event::NewIncarnation { pop, before, after } => {
            info!(peer = %name(*pop), before, after, "peer restarted: new incarnation");
        }
        Event::Unreadable { pop, error } => {
            warn!(peer = %name(*pop), error = %error, "unreadable node state; POP treated as down");
        }
    }
}
