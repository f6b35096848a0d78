//! [E] The one place that knows every edge: binds sockets, starts the DNS server, owns
//! shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use arc_swap::ArcSwap;
use hickory_server::Server;
use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument as _, info, warn};

use crate::api;
use crate::bgp;
use crate::cluster::{self, node::ClusterHandle};
use crate::config::{BgpMode, Loaded, OwnViewSource};
use crate::dns::handler::DnsHandler;
use crate::health;
use crate::routes::OwnView;
use crate::snapshot::Snapshot;
use crate::viewsource;

/// Buffer of outgoing responses per TCP connection.
const TCP_RESPONSE_BUFFER: usize = 32;
/// Attempts at finding a port free for both UDP and TCP when asked for port 0.
const SAME_PORT_ATTEMPTS: usize = 16;

/// A UDP socket and a TCP listener on the same address.
#[derive(Debug)]
pub struct DnsSockets {
    /// UDP side.
    pub udp: UdpSocket,
    /// TCP side.
    pub tcp: TcpListener,
}

impl DnsSockets {
    /// The address both sockets are bound to.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.udp.local_addr()
    }
}

/// Binds UDP and TCP on `addr`. With port 0, both get the same (free) port.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<DnsSockets> {
    let attempts = if addr.port() == 0 {
        SAME_PORT_ATTEMPTS
    } else {
        1
    };
    let mut last_err = None;
    for _ in 0..attempts {
        let udp = UdpSocket::bind(addr)
            .await
            .with_context(|| format!("cannot bind UDP {addr}"))?;
        let bound = udp
            .local_addr()
            .context("UDP socket has no local address")?;
        match TcpListener::bind(bound).await {
            Ok(tcp) => return Ok(DnsSockets { udp, tcp }),
            Err(e) => last_err = Some(e),
        }
    }
    let e = last_err.map_or_else(|| anyhow::anyhow!("no attempt made"), anyhow::Error::from);
    Err(e.context(format!("cannot bind TCP beside UDP on {addr}")))
}

/// Serves DNS on `sockets` from `snapshot` until `shutdown` is cancelled.
pub async fn serve(
    snapshot: Arc<ArcSwap<Snapshot>>,
    sockets: Vec<DnsSockets>,
    tcp_idle_timeout: Duration,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut server = Server::new(DnsHandler::new(snapshot));
    for s in sockets {
        server.register_socket(s.udp);
        server.register_listener(s.tcp, tcp_idle_timeout, TCP_RESPONSE_BUFFER);
    }
    tokio::select! {
        result = server.block_until_done() => {
            result.context("DNS server stopped")?;
            anyhow::bail!("DNS server stopped on its own");
        }
        () = shutdown.cancelled() => {
            info!("shutting down");
            server.shutdown_gracefully().await.context("graceful shutdown")?;
        }
    }
    Ok(())
}

/// Starts the probes of the node's own POP, if any; `on_change(healthy)` receives their
/// verdict.
pub fn spawn_health(
    snapshot: &Arc<ArcSwap<Snapshot>>,
    on_change: impl Fn(bool) + Send + Sync + 'static,
    shutdown: &CancellationToken,
) {
    let config = snapshot.load().config.clone();
    if config.node.probes.is_empty() {
        return;
    }
    let pop = config.own_pop().name.clone();
    tokio::spawn(
        health::monitor(
            config.node.probes.clone(),
            move |healthy| {
                if healthy {
                    info!(pop = %pop, "own POP healthy again: handed out");
                } else {
                    warn!(pop = %pop, "own POP unhealthy: withdrawn from answers");
                }
                on_change(healthy);
            },
            shutdown.clone(),
        )
        .instrument(tracing::Span::current()),
    );
}

/// Starts the own POP's load probe, if any; `on_change(load)` receives each new reading.
pub fn spawn_load(
    snapshot: &Arc<ArcSwap<Snapshot>>,
    on_change: impl Fn(Option<f32>) + Send + Sync + 'static,
    shutdown: &CancellationToken,
) {
    let config = snapshot.load().config.clone();
    if let Some(probe) = config.node.load.clone() {
        tokio::spawn(
            health::monitor_load(probe, on_change, shutdown.clone())
                .instrument(tracing::Span::current()),
        );
    }
}

/// Starts the source of the own POP's route view when it runs on its own (`[node.mrt]`:
/// the dump watcher; `[node.bgp]`: the BGP session, whose listener is bound here in passive
/// mode); `on_change` receives each new view or staleness. A route file needs nothing.
pub async fn spawn_own_view(
    snapshot: &Arc<ArcSwap<Snapshot>>,
    on_change: impl Fn(OwnView) + Send + Sync + 'static,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let config = snapshot.load().config.clone();
    let own = config.own_pop();
    let describe = config.node.own_view.describe();
    let on_change: viewsource::Publish = Arc::new(on_change);
    match &config.node.own_view {
        OwnViewSource::File(_) => {}
        OwnViewSource::Mrt(source) => {
            let current = snapshot.load().view(config.node.pop).cloned();
            tokio::spawn(
                viewsource::watch_mrt(
                    source.clone(),
                    own.asn,
                    describe,
                    current,
                    on_change,
                    shutdown.clone(),
                )
                .instrument(tracing::Span::current()),
            );
        }
        OwnViewSource::Bgp(bgp_config) => {
            let listener = match bgp_config.mode {
                BgpMode::Active => None,
                BgpMode::Passive(addr) => Some(
                    TcpListener::bind(addr)
                        .await
                        .with_context(|| format!("cannot bind BGP listener {addr}"))?,
                ),
            };
            tokio::spawn(
                bgp::session::run(
                    bgp_config.clone(),
                    own.asn,
                    describe,
                    listener,
                    on_change,
                    shutdown.clone(),
                )
                .instrument(tracing::Span::current()),
            );
        }
    }
    Ok(())
}

/// Puts a new own view into the snapshot, and logs it.
pub fn apply_own_view(snapshot: &Arc<ArcSwap<Snapshot>>, own: usize, v: &OwnView) {
    let routes = v.view.as_ref().map_or(0, |view| view.len());
    match v.stale_since_ms {
        None => info!(source = %v.source, routes, "own route view updated"),
        Some(since) => {
            warn!(source = %v.source, routes, stale_since_ms = since, "own route view stale")
        }
    }
    let same = match (snapshot.load().view(own), &v.view) {
        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
        (None, None) => true,
        _ => false,
    };
    // Marking a view stale does not change answers: no need to rebuild the decision tables.
    if !same {
        snapshot.rcu(|s| s.with_view(own, v.view.clone()));
    }
}

/// Starts what keeps the snapshot current: the own POP's probes and view source and, with a `[cluster]`,
/// the gossip membership (on `gossip_socket`, bound by the caller). The probes' verdict goes
/// to the cluster when there is one, else straight into the snapshot.
pub async fn start_state(
    snapshot: &Arc<ArcSwap<Snapshot>>,
    gossip_socket: Option<std::net::UdpSocket>,
    shutdown: &CancellationToken,
) -> anyhow::Result<Option<Arc<ClusterHandle>>> {
    let config = snapshot.load().config.clone();
    let own = config.node.pop;
    match (&config.cluster, gossip_socket) {
        (Some(_), Some(socket)) => {
            let handle =
                Arc::new(cluster::node::start(snapshot.clone(), socket, shutdown.clone()).await?);
            let h = handle.clone();
            spawn_health(snapshot, move |healthy| h.set_health(healthy), shutdown);
            let h = handle.clone();
            spawn_load(snapshot, move |load| h.set_load(load), shutdown);
            let snap = snapshot.clone();
            spawn_own_view(snapshot, move |v| apply_own_view(&snap, own, &v), shutdown).await?;
            Ok(Some(handle))
        }
        (Some(c), None) => anyhow::bail!("no gossip socket bound for {}", c.listen),
        (None, _) => {
            let snap = snapshot.clone();
            spawn_health(
                snapshot,
                move |healthy| {
                    snap.rcu(|s| s.with_health(own, healthy));
                },
                shutdown,
            );
            let snap = snapshot.clone();
            spawn_load(
                snapshot,
                move |load| {
                    snap.rcu(|s| s.with_load(own, load));
                },
                shutdown,
            );
            let snap = snapshot.clone();
            spawn_own_view(snapshot, move |v| apply_own_view(&snap, own, &v), shutdown).await?;
            Ok(None)
        }
    }
}

/// Serves the operator API on the Unix socket `path` until `shutdown`.
pub async fn start_api(
    path: &std::path::Path,
    snapshot: &Arc<ArcSwap<Snapshot>>,
    cluster: Option<Arc<ClusterHandle>>,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let listener = api::bind(path).await?;
    info!(socket = %path.display(), "operator API");
    let cx = api::ApiContext {
        snapshot: snapshot.clone(),
        cluster,
    };
    tokio::spawn(api::serve(listener, cx, shutdown.clone()).instrument(tracing::Span::current()));
    Ok(())
}

/// Runs a node from a loaded config until `shutdown` is cancelled.
pub async fn run(
    loaded: Loaded,
    listen_override: &[SocketAddr],
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    for w in &loaded.warnings {
        warn!("{w}");
    }
    let config = loaded.config;
    let listen = if listen_override.is_empty() {
        config.node.listen.clone()
    } else {
        listen_override.to_vec()
    };
    let mut sockets = Vec::new();
    for addr in listen {
        let s = bind(addr).await?;
        info!(udp = %s.local_addr()?, tcp = %s.tcp.local_addr()?, "serving DNS");
        sockets.push(s);
    }
    let routes: usize = config
        .pops
        .iter()
        .filter_map(|p| p.route_view.as_ref().map(|v| v.len()))
        .sum();
    info!(
        zone = %config.zone.origin_name(),
        pop = %config.own_pop().name,
        pops = config.pops.len(),
        geo_names = config.geo.len(),
        routes,
        static_records = config.zone.record_count(),
        "node started"
    );
    let timeout = config.node.tcp_idle_timeout;
    let gossip_socket = match &config.cluster {
        Some(c) => Some(
            std::net::UdpSocket::bind(c.listen)
                .with_context(|| format!("cannot bind gossip {}", c.listen))?,
        ),
        None => None,
    };
    let snapshot = Arc::new(ArcSwap::from_pointee(Snapshot::from_config(config)));
    let cluster = start_state(&snapshot, gossip_socket, &shutdown).await?;
    let api_path = snapshot
        .load()
        .config
        .node
        .api_socket
        .clone()
        .unwrap_or_else(api::default_socket);
    start_api(&api_path, &snapshot, cluster.clone(), &shutdown).await?;
    let result = serve(snapshot, sockets, timeout, shutdown).await;
    let _ = std::fs::remove_file(&api_path);
    if let Some(c) = cluster {
        c.shutdown().await;
    }
    result
}
