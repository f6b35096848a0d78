//! \[E\] The in-process backend: real Sparrow nodes (the `sparrow-node` crate as a library,
//! started as `sparrow node` starts them) in this process, gossiping over real QUIC on
//! 127.0.0.1, with the network's faults injected at each node's transport
//! ([`sparrow_node::cluster::transport::Faults`]: cuts, loss and delay per peer).
//!
//! A crash cancels the node's tasks and closes its sockets at once (there is no goodbye in
//! gossip to skip); a restart loads the same config and binds the same addresses again.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use sparrow_node::app::{self, DnsSockets};
use sparrow_node::cluster::node::ClusterHandle;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use super::plan::NetState;

/// How long a restart keeps trying to bind a node's addresses again.
const REBIND: Duration = Duration::from_secs(10);

/// A running node.
struct Node {
    shutdown: CancellationToken,
    cluster: Arc<ClusterHandle>,
    node: app::Node,
    task: JoinHandle<anyhow::Result<()>>,
}

/// The nodes of an in-process run.
pub struct InProc {
    configs: Vec<PathBuf>,
    names: Vec<String>,
    dns: Vec<SocketAddr>,
    gossip: Vec<SocketAddr>,
    nodes: Vec<Option<Node>>,
    /// Nodes crashed and still winding down.
    stopping: Vec<JoinHandle<()>>,
    seed: u64,
}

/// Sockets bound for the nodes before their configs are written.
pub struct Bound {
    /// DNS sockets (UDP and TCP on one port).
    pub dns: Vec<DnsSockets>,
    /// Gossip sockets.
    pub gossip: Vec<std::net::UdpSocket>,
}

impl Bound {
    /// Binds DNS and gossip sockets for `n` nodes on 127.0.0.1, port 0.
    pub async fn loopback(n: usize) -> anyhow::Result<Self> {
        let mut dns = Vec::with_capacity(n);
        let mut gossip = Vec::with_capacity(n);
        for _ in 0..n {
            dns.push(app::bind("127.0.0.1:0".parse()?).await?);
            gossip.push(std::net::UdpSocket::bind("127.0.0.1:0")?);
        }
        Ok(Self { dns, gossip })
    }

    /// The DNS addresses, in node order.
    pub fn dns_addrs(&self) -> anyhow::Result<Vec<SocketAddr>> {
        Ok(self
            .dns
            .iter()
            .map(DnsSockets::local_addr)
            .collect::<Result<_, _>>()?)
    }

    /// The gossip addresses, in node order.
    pub fn gossip_addrs(&self) -> anyhow::Result<Vec<SocketAddr>> {
        Ok(self
            .gossip
            .iter()
            .map(std::net::UdpSocket::local_addr)
            .collect::<Result<_, _>>()?)
    }
}

impl InProc {
    /// Starts one node per config on the sockets of `bound` (node `i` on the `i`th ones).
    pub async fn start(
        configs: Vec<PathBuf>,
        names: Vec<String>,
        bound: Bound,
        seed: u64,
    ) -> anyhow::Result<Self> {
        let dns = bound.dns_addrs()?;
        let gossip = bound.gossip_addrs()?;
        let mut me = Self {
            nodes: Vec::with_capacity(configs.len()),
            configs,
            names,
            dns,
            gossip,
            stopping: Vec::new(),
            seed,
        };
        for (i, (d, g)) in bound.dns.into_iter().zip(bound.gossip).enumerate() {
            match me.start_node(i, d, g).await {
                Ok(node) => me.nodes.push(Some(node)),
                Err(e) => {
                    // Stop the ones already running: nothing of a failed run stays behind.
                    me.shutdown().await;
                    return Err(e);
                }
            }
        }
        Ok(me)
    }

    /// Where node `i` serves DNS.
    pub fn dns_addr(&self, i: usize) -> SocketAddr {
        self.dns[i]
    }

    async fn start_node(
        &self,
        i: usize,
        dns: DnsSockets,
        gossip: std::net::UdpSocket,
    ) -> anyhow::Result<Node> {
        let span = tracing::info_span!("node", pop = %self.names[i]);
        // Loading parses every route view and builds the decision tables: seconds of CPU
        // for a large world, which must not stall the other nodes' gossip on the async
        // workers (they would miss heartbeats and declare each other dead).
        let path = self.configs[i].clone();
        let loaded = tokio::task::spawn_blocking(move || sparrow_node::config::load(&path))
            .await
            .context("loading the config panicked")?
            .with_context(|| format!("node {}", self.names[i]))?;
        let timeout = loaded.config.node.tcp_idle_timeout;
        let api_path = loaded
            .config
            .node
            .api_socket
            .clone()
            .context("the generated config names an API socket")?;
        let shutdown = CancellationToken::new();
        let node = app::Node::start(
            loaded.config,
            app::NodeParts {
                gossip: Some(gossip),
                api_socket: Some(api_path),
                probes: true,
                ..app::NodeParts::default()
            },
            shutdown.clone(),
        )
        .instrument(span.clone())
        .await?;
        let cluster = node
            .cluster
            .clone()
            .context("the generated config has a [cluster]")?;
        // Loss and jitter draw from a generator of the node's own, seeded from the run's.
        cluster
            .faults
            .set_loss(0.0, crate::rng::hash(&[self.seed, i as u64, 0x6c6f_7373]));
        let task = tokio::spawn(
            app::serve_handler(node.handler(), vec![dns], timeout, shutdown.clone())
                .instrument(span),
        );
        Ok(Node {
            shutdown,
            cluster,
            node,
            task,
        })
    }

    /// Crashes node `i` (nothing if it is down).
    pub async fn crash(&mut self, i: usize) {
        if let Some(node) = self.nodes[i].take() {
            node.shutdown.cancel();
            // A crash is abrupt: the node's parts wind down in the background (a restart
            // waits for its ports, see `REBIND`), so crashing several nodes at once does not
            // spread their deaths over seconds.
            drop(node.cluster);
            self.stopping.push(tokio::spawn(async move {
                node.node.stop().await;
                let _ = node.task.await;
            }));
        }
    }

    /// Starts node `i` again on its addresses (nothing if it is up).
    pub async fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        if self.nodes[i].is_some() {
            return Ok(());
        }
        let deadline = tokio::time::Instant::now() + REBIND;
        let (dns, gossip) = loop {
            let bound = async {
                let d = app::bind(self.dns[i]).await?;
                let g = std::net::UdpSocket::bind(self.gossip[i])?;
                anyhow::Ok((d, g))
            };
            match bound.await {
                Ok(b) => break b,
                Err(e) if tokio::time::Instant::now() >= deadline => {
                    return Err(e.context(format!("restarting node {}", self.names[i])));
                }
                // The crashed incarnation lets go of its ports within moments.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        };
        let node = self.start_node(i, dns, gossip).await?;
        self.nodes[i] = Some(node);
        Ok(())
    }

    /// Puts the network faults of `state` into every running node's transport.
    pub fn set_network(&self, state: &NetState) {
        let n = state.n;
        for (a, node) in self.nodes.iter().enumerate() {
            let Some(node) = node else { continue };
            let f = &node.cluster.faults;
            for b in (0..n).filter(|&b| b != a) {
                let peer = self.gossip[b];
                f.cut_to(peer, state.cut[a * n + b]);
                f.cut_from(peer, state.cut[b * n + a]);
                f.set_peer_loss(peer, state.loss[a * n + b]);
                let (delay, jitter) = state.delay[a * n + b];
                f.set_delay(peer, delay, jitter);
            }
        }
    }

    /// Stops every node.
    pub async fn shutdown(&mut self) {
        for i in 0..self.nodes.len() {
            self.crash(i).await;
        }
        for t in std::mem::take(&mut self.stopping) {
            let _ = t.await;
        }
    }
}

/// The API socket of the node whose config is `config` (the generated configs name
/// `run/POP.sock` beside themselves).
pub fn api_socket(dir: &Path, pop: &str) -> PathBuf {
    dir.join("run").join(format!("{pop}.sock"))
}
