//! [E] The one place that knows every edge: it starts a node's parts around its state owner
//! (probes, own-view source, cluster, operator API, metrics), serves DNS, and owns shutdown.
//! Callers bind the sockets and pass the shutdown token in (the daemon, the demo, tests and
//! netsim all start nodes through [`Node::start`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument as _, error, info, warn};

use crate::api;
use crate::cluster::node::{self as cluster_node, ClusterHandle, ClusterParts};
use crate::cluster::view_sync::ViewServer;
use crate::config::{Config, Loaded};
use crate::dns::handler::DnsHandler;
use crate::health;
use crate::metrics::{self, Metrics};
pub use crate::sources::ViewTap;
use crate::sources::{Reloader, Sources};
use crate::state::builder::Builder;
use crate::state::owner::{self, OwnerParts, StateHandle};
use crate::state::{Change, NodeState};

/// Attempts at finding a port free for both UDP and TCP when asked for port 0.
const SAME_PORT_ATTEMPTS: usize = 16;

/// A UDP socket and a TCP listener on the same address.
#[derive(Debug)]
pub struct DnsSockets {
    /// UDP side.
    pub udp: UdpSocket,
    /// TCP side.
    pub tcp: TcpListener,
    /// More UDP sockets of `udp`'s `SO_REUSEPORT` group, one per further worker (bound by
    /// the server when empty; passed in by a take-over).
    pub siblings: Vec<std::net::UdpSocket>,
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
        // SO_REUSEPORT: each UDP worker binds its own socket beside this one.
        let udp = crate::dns::udp::bind_reuseport(addr)
            .and_then(UdpSocket::from_std)
            .with_context(|| format!("cannot bind UDP {addr}"))?;
        let bound = udp
            .local_addr()
            .context("UDP socket has no local address")?;
        match TcpListener::bind(bound).await {
            Ok(tcp) => {
                return Ok(DnsSockets {
                    udp,
                    tcp,
                    siblings: Vec::new(),
                });
            }
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

/// Serves DNS on `sockets` with `handler` until `shutdown` is cancelled: UDP on the
/// server's worker threads (`[node] dns_workers` per address, default one per core), TCP
/// on tasks, at most `[node] tcp_max_connections` per address.
pub async fn serve_handler(
    handler: DnsHandler,
    sockets: Vec<DnsSockets>,
    tcp_idle_timeout: Duration,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let (workers, tcp_limit, rrl) = {
        let snap = handler.snapshot().load();
        let node = &snap.config.node;
        (
            node.dns_workers
                .unwrap_or_else(crate::dns::udp::default_workers),
            node.tcp_max_connections,
            node.rrl.map(|r| Arc::new(crate::dns::udp::Rrl::new(r))),
        )
    };
    let mut udp = Vec::new();
    let mut tcp = tokio::task::JoinSet::new();
    for s in sockets {
        let mut group = vec![s.udp.into_std().context("UDP socket")?];
        group.extend(s.siblings);
        udp.push(
            crate::dns::udp::spawn(&handler, group, workers, rrl.clone())
                .context("cannot start the UDP workers")?,
        );
        tcp.spawn(crate::dns::tcp::serve(
            handler.clone(),
            s.tcp,
            tcp_idle_timeout,
            tcp_limit,
            shutdown.clone(),
        ));
    }
    shutdown.cancelled().await;
    info!("shutting down");
    let _ = tokio::task::spawn_blocking(move || udp.into_iter().for_each(|w| w.stop())).await;
    while tcp.join_next().await.is_some() {}
    Ok(())
}

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
    /// The config file, for `sparrow reload` and SIGHUP; `None`: no reload.
    pub config_path: Option<PathBuf>,
    /// The API listener, already bound (taken over from an older process); `None`: bind
    /// `api_socket`.
    pub api_listener: Option<tokio::net::UnixListener>,
    /// Where the API sends take-over requests; `None`: refused.
    pub takeover: Option<tokio::sync::mpsc::Sender<tokio::net::UnixStream>>,
}

/// A running node (everything but its DNS sockets, which the caller serves with
/// [`Node::handler`]).
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
    /// Reloads its config, when it was started from a file.
    pub reloader: Option<Arc<Reloader>>,
    /// Duplicates of its listening sockets, for a take-over (when allowed).
    handover: Option<crate::handover::Sockets>,
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
        let mut state = NodeState::new(config.clone(), admin, loading_kept)
            .with_service_admin(owner::load_service_admin(state_dir.as_deref(), &config));
        let (announce_tx, announce_rx) = watch::channel(state.initial_announcement());
        let (held_tx, held_rx) = tokio::sync::mpsc::channel(4);
        let views = clustered.then(|| Arc::new(ViewServer::new(&config.own_pop().name)));
        let (handle, owner_task) = owner::start(
            state,
            OwnerParts {
                builder: builder.clone(),
                announce: clustered.then_some(announce_tx),
                views: views.clone(),
                state_dir,
                held: clustered.then_some(held_tx),
                ready_wait: config.node.ready_timeout,
            },
            shutdown.clone(),
        );
        let metrics = parts
            .metrics
            .as_ref()
            .map(|_| Arc::new(Metrics::new(&handle.snapshot)));
        let observer: Option<health::Observer> =
            metrics.as_ref().map(|m| m.probes() as health::Observer);
        let mut sources = Sources::new(
            builder.clone(),
            observer,
            parts.on_own_view,
            parts.probes,
            shutdown.clone(),
        );
        sources.start_probes(&config, &handle);
        let mut handover = parts
            .takeover
            .is_some()
            .then(crate::handover::Sockets::default);
        if let (Some(h), Some(s)) = (&mut handover, &parts.gossip) {
            h.gossip = Some(crate::handover::dup(s)?);
        }
        if let (Some(h), Some(l)) = (&mut handover, &parts.metrics) {
            h.metrics = Some(crate::handover::dup(l)?);
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
        sources.start_view(&config, &handle).await?;
        let reloader = parts.config_path.map(|path| {
            Arc::new(Reloader::new(
                path,
                handle.clone(),
                cluster.clone(),
                sources,
            ))
        });
        if let Some(path) = &parts.api_socket {
            let listener = match parts.api_listener {
                Some(l) => l,
                None => api::bind(path).await?,
            };
            if let Some(h) = &mut handover {
                h.api = Some(crate::handover::dup(&listener)?);
            }
            info!(socket = %path.display(), "operator API");
            let cx = api::ApiContext {
                state: handle.clone(),
                cluster: cluster.clone(),
                reloader: reloader.clone(),
                takeover: parts.takeover.clone(),
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
            info!(addr = %listener.local_addr()?, "metrics endpoint: /metrics, readiness: /ready");
            tokio::spawn(
                metrics::serve(
                    listener,
                    m.clone(),
                    Some(handle.ready.clone()),
                    shutdown.clone(),
                )
                .instrument(tracing::Span::current()),
            );
        }
        Ok(Self {
            state: handle,
            cluster,
            metrics,
            metrics_addr,
            api_socket: parts.api_socket,
            reloader,
            handover,
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

    /// Tells the cluster this node is shutting down, so peers stop handing its POP out at
    /// once rather than after their failure detectors notice; waits for that to travel
    /// (two gossip rounds, at most a second).
    pub async fn leave(&self) {
        let Some(interval) = self
            .state
            .snapshot
            .load()
            .config
            .cluster
            .as_ref()
            .map(|c| c.gossip_interval)
        else {
            return;
        };
        if self.state.send(Change::Leaving).await {
            tokio::time::sleep((interval * 2).min(Duration::from_secs(1))).await;
        }
    }

    /// Stops the node's parts (its DNS server stops with the shutdown token).
    pub async fn stop(self) {
        let api_socket = self.api_socket.clone();
        self.stop_parts().await;
        if let Some(path) = &api_socket {
            let _ = std::fs::remove_file(path);
        }
    }

    async fn stop_parts(self) -> Option<crate::handover::Sockets> {
        self.shutdown.cancel();
        if let Some(c) = &self.cluster {
            c.shutdown().await;
        }
        let _ = self.owner.await;
        self.handover
    }

    /// Stops every part but leaves its listening sockets open (and the API socket's file in
    /// place) for the process taking over; returns them.
    async fn stop_for_handover(self) -> Option<crate::handover::Sockets> {
        self.stop_parts().await
    }
}

/// Runs a node from the config loaded from `path` until `shutdown` is cancelled.
///
/// SIGHUP reloads the config (as `sparrow reload` does). On shutdown the node first tells
/// its peers it is leaving, then stops taking queries and answers those in flight, then
/// leaves the cluster. Under systemd (`Type=notify`) it says READY=1 once ready, keeps
/// STATUS= current, and pings the watchdog while its state owner answers.
///
/// With `take_over`, the sockets are those of the node running with this config (see
/// [`crate::handover`]) instead of freshly bound ones; either way the node hands its own
/// sockets to a process that asks, and exits once that one serves.
pub async fn run(
    loaded: Loaded,
    path: &std::path::Path,
    listen_override: &[SocketAddr],
    take_over: bool,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    for w in &loaded.warnings {
        warn!("{w}");
    }
    raise_nofile_limit();
    let config = loaded.config;
    let api_socket = config
        .node
        .api_socket
        .clone()
        .unwrap_or_else(api::default_socket);
    let (sockets, gossip, metrics, api_listener, inherited) = if take_over {
        let mut from = crate::handover::take_over(&api_socket).await?;
        let mut dns = Vec::new();
        for (group, tcp) in std::mem::take(&mut from.dns) {
            let mut group = group.into_iter();
            let first = group.next().context("a hand-off without a UDP socket")?;
            dns.push(DnsSockets {
                udp: UdpSocket::from_std(first)?,
                tcp,
                siblings: group.collect(),
            });
        }
        for s in &dns {
            info!(udp = %s.local_addr()?, tcp = %s.tcp.local_addr()?, "serving DNS (taken over)");
        }
        if config.cluster.is_some() != from.gossip.is_some() {
            anyhow::bail!(
                "the running node and this config disagree on `[cluster]`: restart instead"
            );
        }
        (
            dns,
            from.gossip.take(),
            from.metrics.take(),
            from.api.take(),
            Some(from),
        )
    } else {
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
        (sockets, gossip, metrics, None, None)
    };
    let routes: usize = config
        .pops
        .iter()
        .filter_map(|p| p.route_view.as_ref().map(|v| v.len()))
        .sum();
    info!(
        zones = %config.zones.describe(),
        pop = %config.own_pop().name,
        pops = config.pops.len(),
        geo_names = config.geo.len(),
        routes,
        static_records = config.zones.record_count(),
        version = env!("CARGO_PKG_VERSION"),
        "node started"
    );
    let timeout = config.node.tcp_idle_timeout;
    // Every UDP worker's socket is bound here (not by the server), so that a take-over can
    // pass the whole group: a socket of it that closed would lose the queries it holds.
    let workers = config
        .node
        .dns_workers
        .unwrap_or_else(crate::dns::udp::default_workers);
    let mut sockets = sockets;
    let mut dns_fds = Vec::new();
    for s in &mut sockets {
        let addr = s.local_addr()?;
        while s.siblings.len() + 1 < workers {
            s.siblings.push(
                crate::dns::udp::bind_reuseport(addr)
                    .with_context(|| format!("cannot bind UDP {addr} for another worker"))?,
            );
        }
        let mut udp = vec![crate::handover::dup(&s.udp)?];
        for sibling in &s.siblings {
            udp.push(crate::handover::dup(sibling)?);
        }
        dns_fds.push((addr, udp, crate::handover::dup(&s.tcp)?));
    }
    // The node's parts and its DNS server stop separately: DNS last, after the goodbye.
    let parts_token = CancellationToken::new();
    let dns_token = CancellationToken::new();
    let (takeover_tx, mut takeover_rx) = tokio::sync::mpsc::channel(1);
    let node = Node::start(
        config,
        NodeParts {
            gossip,
            metrics,
            api_socket: Some(api_socket),
            probes: true,
            on_own_view: None,
            config_path: Some(path.to_owned()),
            api_listener,
            takeover: Some(takeover_tx),
        },
        parts_token.clone(),
    )
    .await?;
    let mut server = tokio::spawn(serve_handler(
        node.handler(),
        sockets,
        timeout,
        dns_token.clone(),
    ));
    if let Some(from) = inherited {
        from.serving().await;
    }
    let notify = crate::sdnotify::Notifier::from_env();
    if let Some(n) = &notify {
        tokio::spawn(n.clone().follow(node.state.clone(), parts_token.clone()));
    }
    #[cfg(unix)]
    if let Some(reloader) = node.reloader.clone() {
        tokio::spawn(reload_on_sighup(
            reloader,
            notify.clone(),
            parts_token.clone(),
        ));
    }
    let asked = tokio::select! {
        r = &mut server => {
            node.leave().await;
            node.stop().await;
            parts_token.cancel();
            return r.context("DNS server task failed")?;
        }
        () = shutdown.cancelled() => None,
        Some(stream) = takeover_rx.recv() => Some(stream),
    };
    if let Some(n) = &notify {
        n.send("STOPPING=1\nSTATUS=leaving the cluster, then answering what is in flight");
    }
    node.leave().await;
    let Some(stream) = asked else {
        dns_token.cancel();
        let result = server.await;
        node.stop().await;
        parts_token.cancel();
        return result.context("DNS server task failed")?;
    };
    // A take-over: everything but DNS stops (the cluster socket must be free of this
    // process's endpoint before the new one reads it), then the sockets go over, and DNS
    // stops once the new process serves on them.
    let mut sockets = node.stop_for_handover().await.unwrap_or_default();
    parts_token.cancel();
    sockets.dns = dns_fds;
    let served = match crate::handover::hand_over(stream, sockets).await {
        Ok(back) => {
            info!("sockets handed over; answering until the new process serves");
            crate::handover::wait_serving(back).await
        }
        Err(e) => {
            error!(error = %format!("{e:#}"), "hand-off failed");
            false
        }
    };
    if served {
        info!("the new process serves DNS; stopping");
    } else {
        // Nothing is lost by staying: this process answers from its last state until it is
        // stopped (it left the cluster, so an operator restarts it).
        error!("the new process did not take over; answering from the last state until stopped");
        tokio::select! {
            r = &mut server => return r.context("DNS server task failed")?,
            () = shutdown.cancelled() => {}
        }
    }
    dns_token.cancel();
    server.await.context("DNS server task failed")?
}

/// Reloads on every SIGHUP until `shutdown`; the outcome goes to the log (and systemd).
#[cfg(unix)]
async fn reload_on_sighup(
    reloader: Arc<Reloader>,
    notify: Option<crate::sdnotify::Notifier>,
    shutdown: CancellationToken,
) {
    let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            warn!(error = %e, "cannot listen for SIGHUP; reload with `sparrow reload`");
            return;
        }
    };
    loop {
        tokio::select! {
            got = hup.recv() => if got.is_none() { return },
            () = shutdown.cancelled() => return,
        }
        info!("SIGHUP: reloading the config");
        if let Some(n) = &notify {
            n.send(&format!(
                "RELOADING=1\nMONOTONIC_USEC={}",
                crate::sdnotify::monotonic_usec()
            ));
        }
        match reloader.reload().await {
            Ok(_) => {}
            Err(e) => error!(error = %e, "reload refused; the running config stays"),
        }
        if let Some(n) = &notify {
            n.send("READY=1");
        }
    }
}

/// Raises the limit of open files to the hard limit: a node holds a socket per DNS-over-TCP
/// client and per peer, and the common default of 1024 is easily reached.
fn raise_nofile_limit() {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit and setrlimit take a resource number and a pointer to a plain
        // struct owned by this frame.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
                return;
            }
            if limit.rlim_cur < limit.rlim_max {
                let before = limit.rlim_cur;
                limit.rlim_cur = limit.rlim_max;
                if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                    info!(
                        from = before,
                        to = limit.rlim_max,
                        "open files limit raised"
                    );
                }
            }
        }
    }
}
