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
use crate::metrics::{self, Metrics, ProbeMetrics};
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
    serve_handler(
        DnsHandler::new(snapshot),
        sockets,
        tcp_idle_timeout,
        shutdown,
    )
    .await
}

/// Serves DNS on `sockets` with `handler` (e.g. one counting queries) until `shutdown`.
pub async fn serve_handler(
    handler: DnsHandler,
    sockets: Vec<DnsSockets>,
    tcp_idle_timeout: Duration,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut server = Server::new(handler);
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
/// verdict, `metrics` (if any) every check.
pub fn spawn_health(
    snapshot: &Arc<ArcSwap<Snapshot>>,
    metrics: Option<Arc<ProbeMetrics>>,
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
            metrics,
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
    metrics: Option<Arc<ProbeMetrics>>,
    on_change: impl Fn(Option<f32>) + Send + Sync + 'static,
    shutdown: &CancellationToken,
) {
    let config = snapshot.load().config.clone();
    if let Some(probe) = config.node.load.clone() {
        tokio::spawn(
            health::monitor_load(probe, metrics, on_change, shutdown.clone())
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

/// Puts a new own view into the snapshot (a standalone node's, or one whose view source runs
/// outside a cluster handle), and logs it.
pub fn apply_own_view(snapshot: &Arc<ArcSwap<Snapshot>>, own: usize, v: &OwnView) {
    let routes = v.view.as_ref().map_or(0, |view| view.len());
    match v.stale_since_ms {
        None => info!(source = %v.source, routes, "own route view updated"),
        Some(since) => {
            warn!(source = %v.source, routes, stale_since_ms = since, "own route view stale")
        }
    }
    let info = v.view.as_ref().map(|view| crate::snapshot::ViewInfo {
        version: None,
        digest: None,
        prefixes: view.len() as u64,
        source: v.source.clone(),
        stale_since_ms: v.stale_since_ms,
    });
    let same = match (snapshot.load().view(own), &v.view) {
        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
        (None, None) => true,
        _ => false,
    };
    // Marking a view stale does not change answers: no need to rebuild the decision tables.
    if same {
        snapshot.rcu(|s| s.with_view_info(own, info.clone()));
    } else {
        viewsource::swap_views(snapshot, |s| {
            s.with_view_from(own, v.view.clone(), info.clone())
        });
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
    start_state_with(snapshot, gossip_socket, None, shutdown).await
}

/// [`start_state`], with the probes recording their checks in `metrics` and the gossip
/// transport's counters handed to it.
pub async fn start_state_with(
    snapshot: &Arc<ArcSwap<Snapshot>>,
    gossip_socket: Option<std::net::UdpSocket>,
    metrics: Option<&Metrics>,
    shutdown: &CancellationToken,
) -> anyhow::Result<Option<Arc<ClusterHandle>>> {
    let probes = metrics.map(Metrics::probes);
    let config = snapshot.load().config.clone();
    let own = config.node.pop;
    match (&config.cluster, gossip_socket) {
        (Some(_), Some(socket)) => {
            let handle =
                Arc::new(cluster::node::start(snapshot.clone(), socket, shutdown.clone()).await?);
            if let Some(m) = metrics {
                m.set_cluster(&handle);
            }
            let h = handle.clone();
            spawn_health(
                snapshot,
                probes.clone(),
                move |healthy| h.set_health(healthy),
                shutdown,
            );
            let h = handle.clone();
            spawn_load(snapshot, probes, move |load| h.set_load(load), shutdown);
            // The own view goes to the cluster: answers, serving it to peers, announcing it.
            let (tx, mut rx) = tokio::sync::watch::channel(None::<OwnView>);
            let h = handle.clone();
            tokio::spawn(
                async move {
                    while rx.changed().await.is_ok() {
                        let latest = rx.borrow_and_update().clone();
                        if let Some(v) = latest {
                            h.set_own_view(v).await;
                        }
                    }
                }
                .instrument(tracing::Span::current()),
            );
            spawn_own_view(
                snapshot,
                move |v| {
                    let _ = tx.send_replace(Some(v));
                },
                shutdown,
            )
            .await?;
            Ok(Some(handle))
        }
        (Some(c), None) => anyhow::bail!("no gossip socket bound for {}", c.listen),
        (None, _) => {
            let snap = snapshot.clone();
            spawn_health(
                snapshot,
                probes.clone(),
                move |healthy| {
                    snap.rcu(|s| s.with_health(own, healthy));
                },
                shutdown,
            );
            let snap = snapshot.clone();
            spawn_load(
                snapshot,
                probes,
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

/// Binds the metrics endpoint on `addr` (the config's `metrics_listen`).
pub async fn bind_metrics(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot bind metrics endpoint {addr}"))
}

/// Serves `metrics` at `/metrics` on `listener` (bound by the caller) until `shutdown`.
pub fn start_metrics(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    info!(addr = %listener.local_addr()?, "metrics endpoint: /metrics");
    tokio::spawn(
        metrics::serve(listener, metrics, shutdown.clone()).instrument(tracing::Span::current()),
    );
    Ok(())
}

/// Serves the operator API on the Unix socket `path` until `shutdown`, and over the cluster
/// endpoint (QUIC, operator certificates) when the node is clustered.
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
        cluster: cluster.clone(),
    };
    if let Some(c) = &cluster {
        // Operators with a certificate of the cluster's CA reach it over QUIC too.
        c.serve_api(cx.clone());
    }
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
    let metrics_listener = match config.node.metrics_listen {
        Some(addr) => Some(bind_metrics(addr).await?),
        None => None,
    };
    let snapshot = Arc::new(ArcSwap::from_pointee(Snapshot::from_config(config)));
    let metrics = metrics_listener
        .as_ref()
        .map(|_| Arc::new(Metrics::new(&snapshot)));
    let cluster = start_state_with(&snapshot, gossip_socket, metrics.as_deref(), &shutdown).await?;
    let api_path = snapshot
        .load()
        .config
        .node
        .api_socket
        .clone()
        .unwrap_or_else(api::default_socket);
    start_api(&api_path, &snapshot, cluster.clone(), &shutdown).await?;
    let mut handler = DnsHandler::new(snapshot);
    if let (Some(listener), Some(m)) = (metrics_listener, metrics) {
        handler = handler.with_metrics(m.dns());
        start_metrics(listener, m, &shutdown)?;
    }
    let result = serve_handler(handler, sockets, timeout, shutdown).await;
    let _ = std::fs::remove_file(&api_path);
    if let Some(c) = cluster {
        c.shutdown().await;
    }
    result
}
