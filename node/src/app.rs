//! [E] The one place that knows every edge: it starts a node's parts around its state owner
//! (probes, own-view source, cluster, operator API, metrics), serves DNS, and owns shutdown.
//! Callers bind the sockets and pass the shutdown token in (the daemon, the demo, tests and
//! netsim all start nodes through [`Node::start`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use hickory_server::Server;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument as _, info, warn};

use crate::api;
use crate::bgp;
use crate::cluster::node::{self as cluster_node, ClusterHandle, ClusterParts};
use crate::cluster::view_sync::ViewServer;
use crate::config::{BgpMode, Config, Loaded, OwnViewSource};
use crate::dns::handler::DnsHandler;
use crate::health;
use crate::metrics::{self, Metrics};
use crate::routes::OwnView;
use crate::state::builder::Builder;
use crate::state::owner::{self, OwnerParts, StateHandle};
use crate::state::{Change, NodeState};
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

/// Binds the metrics endpoint on `addr` (the config's `metrics_listen`).
pub async fn bind_metrics(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot bind metrics endpoint {addr}"))
}

/// Serves DNS on `sockets` with `handler` until `shutdown` is cancelled.
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

/// A callback that sees every own view the view source publishes.
pub type ViewTap = Arc<dyn Fn(&OwnView) + Send + Sync>;

/// What a node is started with besides its config: sockets bound by the caller, and which
/// parts to run.
#[derive(Default)]
pub struct NodeParts {
    /// The cluster socket (`[cluster] listen`); required with a `[cluster]`.
    pub gossip: Option<std::net::UdpSocket>,
    /// The metrics listener (`[node] metrics_listen`), if metrics are served.
    pub metrics: Option<TcpListener>,
    /// Where the operator API listens; `None`: no API.
    pub api_socket: Option<PathBuf>,
    /// Whether the own POP's health and load probes run.
    pub probes: bool,
    /// Called with every own view the view source publishes, before the node takes it
    /// (tests record them).
    pub on_own_view: Option<ViewTap>,
}

/// A running node (everything but its DNS sockets, which [`Node::serve`] takes).
pub struct Node {
    /// Its state: where changes go, and the snapshot answers read.
    pub state: StateHandle,
    /// Its cluster membership, when it has one.
    pub cluster: Option<Arc<ClusterHandle>>,
    /// Its metrics, when served.
    pub metrics: Option<Arc<Metrics>>,
    /// Where its metrics endpoint listens.
    pub metrics_addr: Option<SocketAddr>,
    /// Where its operator API listens.
    pub api_socket: Option<PathBuf>,
    shutdown: CancellationToken,
    owner: tokio::task::JoinHandle<()>,
}

impl Node {
    /// Starts a node of `config` with `parts` until `shutdown`: its state owner first, then
    /// the probes, the own view's source, the cluster, the operator API and the metrics.
    pub async fn start(
        config: Config,
        parts: NodeParts,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Self> {
        let config = Arc::new(config);
        let names: Vec<String> = config.pops.iter().map(|p| p.name.clone()).collect();
        let builder = Builder::start(&format!("sparrow-build-{}", config.own_pop().name))
            .context("cannot start the builder thread")?;
        let state_dir = config.node.state_dir.clone();
        let admin = owner::load_admin(state_dir.as_deref(), &names);
        let clustered = config.cluster.is_some();
        let loading_kept = clustered && state_dir.is_some();
        let mut state = NodeState::new(config.clone(), admin, loading_kept);
        let (announce_tx, announce_rx) = watch::channel(state.initial_announcement());
        let (held_tx, held_rx) = oneshot::channel();
        let views = clustered.then(|| Arc::new(ViewServer::new(&config.own_pop().name)));
        let (handle, owner_task) = owner::start(
            state,
            OwnerParts {
                builder: builder.clone(),
                announce: clustered.then_some(announce_tx),
                views: views.clone(),
                state_dir,
                held: clustered.then_some(held_tx),
            },
            shutdown.clone(),
        );
        let metrics = parts
            .metrics
            .as_ref()
            .map(|_| Arc::new(Metrics::new(&handle.snapshot)));
        let observer: Option<health::Observer> =
            metrics.as_ref().map(|m| m.probes() as health::Observer);
        if parts.probes {
            spawn_probes(&config, &handle, observer, &shutdown);
        }
        let cluster = match (&config.cluster, parts.gossip) {
            (Some(_), Some(socket)) => {
                let generation = crate::clock::unix_ms();
                let c = cluster_node::start(
                    &config,
                    socket,
                    generation,
                    ClusterParts {
                        builder: builder.clone(),
                        changes: handle.changes.clone(),
                        own: announce_rx,
                        held: held_rx,
                        // INVARIANT: `views` is set whenever the config is clustered.
                        views: views.clone().expect("clustered nodes serve views"),
                    },
                    shutdown.clone(),
                )
                .await?;
                Some(Arc::new(c))
            }
            (Some(c), None) => anyhow::bail!("no cluster socket bound for {}", c.listen),
            (None, _) => None,
        };
        if let (Some(m), Some(c)) = (&metrics, &cluster) {
            m.set_cluster(c);
        }
        spawn_own_view(&config, &handle, builder, parts.on_own_view, &shutdown).await?;
        if let Some(path) = &parts.api_socket {
            let listener = api::bind(path).await?;
            info!(socket = %path.display(), "operator API");
            let cx = api::ApiContext {
                state: handle.clone(),
                cluster: cluster.clone(),
            };
            if let Some(c) = &cluster {
                // Operators with a certificate of the cluster's CA reach it over QUIC too.
                c.serve_api(api::quic_service(cx.clone()));
            }
            tokio::spawn(
                api::serve(listener, cx, shutdown.clone()).instrument(tracing::Span::current()),
            );
        }
        let mut metrics_addr = None;
        if let (Some(listener), Some(m)) = (parts.metrics, &metrics) {
            metrics_addr = Some(listener.local_addr()?);
            info!(addr = %listener.local_addr()?, "metrics endpoint: /metrics");
            tokio::spawn(
                metrics::serve(listener, m.clone(), shutdown.clone())
                    .instrument(tracing::Span::current()),
            );
        }
        Ok(Self {
            state: handle,
            cluster,
            metrics,
            metrics_addr,
            api_socket: parts.api_socket,
            shutdown,
            owner: owner_task,
        })
    }

    /// The DNS handler answering from this node's state (counting queries in its metrics).
    pub fn handler(&self) -> DnsHandler {
        let mut handler = DnsHandler::new(self.state.snapshot.clone());
        if let Some(m) = &self.metrics {
            handler = handler.with_metrics(m.dns());
        }
        handler
    }

    /// Stops the node's parts (its DNS server stops with the shutdown token).
    pub async fn stop(self) {
        self.shutdown.cancel();
        if let Some(c) = &self.cluster {
            c.shutdown().await;
        }
        let _ = self.owner.await;
        if let Some(path) = &self.api_socket {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Starts the own POP's health and load probes, each bridged to the state owner through a
/// watch (only the latest verdict matters; none is lost to a full queue).
fn spawn_probes(
    config: &Config,
    state: &StateHandle,
    observer: Option<health::Observer>,
    shutdown: &CancellationToken,
) {
    if !config.node.probes.is_empty() {
        let (tx, rx) = watch::channel(true);
        tokio::spawn(
            health::monitor(
                config.node.probes.clone(),
                observer.clone(),
                move |healthy| {
                    tx.send_replace(healthy);
                },
                shutdown.clone(),
            )
            .instrument(tracing::Span::current()),
        );
        bridge(rx, state.clone(), Change::Health);
    }
    if let Some(probe) = config.node.load.clone() {
        let (tx, rx) = watch::channel(None);
        tokio::spawn(
            health::monitor_load(
                probe,
                observer,
                move |load| {
                    tx.send_replace(load);
                },
                shutdown.clone(),
            )
            .instrument(tracing::Span::current()),
        );
        bridge(rx, state.clone(), Change::Load);
    }
}

/// Hands every new value of `rx` to the state owner as `change(value)`.
fn bridge<T: Clone + Send + Sync + 'static>(
    mut rx: watch::Receiver<T>,
    state: StateHandle,
    change: fn(T) -> Change,
) {
    tokio::spawn(
        async move {
            while rx.changed().await.is_ok() {
                let value = rx.borrow_and_update().clone();
                if !state.send(change(value)).await {
                    return;
                }
            }
        }
        .instrument(tracing::Span::current()),
    );
}

/// Starts the source of the own POP's route view when it runs on its own (`[node.mrt]`:
/// the dump watcher; `[node.bgp]`: the BGP session, whose listener is bound here in passive
/// mode). A route file needs nothing.
async fn spawn_own_view(
    config: &Config,
    state: &StateHandle,
    builder: Builder,
    tap: Option<ViewTap>,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let own = config.own_pop();
    let describe = config.node.own_view.describe();
    let (tx, rx) = watch::channel(None::<OwnView>);
    let publish: viewsource::Publish = Arc::new(move |v: OwnView| {
        if let Some(tap) = &tap {
            tap(&v);
        }
        tx.send_replace(Some(v));
    });
    match &config.node.own_view {
        OwnViewSource::File(_) => return Ok(()),
        OwnViewSource::Mrt(source) => {
            tokio::spawn(
                viewsource::watch_mrt(
                    source.clone(),
                    own.asn,
                    describe,
                    own.route_view.clone(),
                    config.node.max_file_bytes,
                    builder,
                    publish,
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
                    builder,
                    publish,
                    shutdown.clone(),
                )
                .instrument(tracing::Span::current()),
            );
        }
    }
    // Only the latest view matters: a view replaced before the owner took it is skipped.
    let mut rx = rx;
    let state = state.clone();
    tokio::spawn(
        async move {
            while rx.changed().await.is_ok() {
                let latest = rx.borrow_and_update().clone();
                if let Some(v) = latest
                    && !state.send(Change::OwnView(v)).await
                {
                    return;
                }
            }
        }
        .instrument(tracing::Span::current()),
    );
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
    let gossip = match &config.cluster {
        Some(c) => Some(
            std::net::UdpSocket::bind(c.listen)
                .with_context(|| format!("cannot bind gossip {}", c.listen))?,
        ),
        None => None,
    };
    let metrics = match config.node.metrics_listen {
        Some(addr) => Some(bind_metrics(addr).await?),
        None => None,
    };
    let api_socket = Some(
        config
            .node
            .api_socket
            .clone()
            .unwrap_or_else(api::default_socket),
    );
    let node = Node::start(
        config,
        NodeParts {
            gossip,
            metrics,
            api_socket,
            probes: true,
            on_own_view: None,
        },
        shutdown.clone(),
    )
    .await?;
    let result = serve_handler(node.handler(), sockets, timeout, shutdown).await;
    node.stop().await;
    result
}
