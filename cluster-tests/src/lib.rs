//! Harness for tests of real Sparrow nodes: each node runs the real node code on sockets bound
//! to 127.0.0.1 port 0, and tests query it with real DNS clients (hickory's client over UDP
//! and TCP, `dig`, or raw datagrams for malformed input).
//!
//! The tests live in `tests/it/` (one integration binary). [`bird`] runs a real BIRD 2 for
//! the BGP and MRT tests.

pub mod bird;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use arc_swap::ArcSwap;
use futures_util::StreamExt as _;
use hickory_net::client::Client;
use hickory_net::runtime::TokioRuntimeProvider;
use hickory_net::tcp::TcpClientStream;
use hickory_net::udp::UdpClientStream;
use hickory_net::xfer::DnsHandle as _;
use hickory_proto::op::{DnsRequest, DnsRequestOptions, DnsResponse, Edns, Message, Query};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsOption};
use hickory_proto::rr::{Name, RecordType};
use ipnet::IpNet;
use sparrow_node::app;
use sparrow_node::routes::OwnView;
use sparrow_node::snapshot::Snapshot;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The example every operator starts from (`deploy/examples/single-node/sparrow.toml`).
pub fn example_config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples/single-node/sparrow.toml")
}

/// A copy of the example's folder in a fresh temporary folder, with `edit` applied to the
/// config text. Returns the path of the edited config. The folder is left for inspection.
pub fn example_variant(edit: impl FnOnce(String) -> String) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let src = example_config();
    let src_dir = src.parent().expect("example config has a folder");
    let dir = std::env::temp_dir().join(format!(
        "sparrow-test-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    copy_dir(src_dir, &dir).expect("copy example folder");
    let config = dir.join("sparrow.toml");
    let text = std::fs::read_to_string(&config).expect("read example config");
    std::fs::write(&config, edit(text)).expect("write edited config");
    config
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

/// A running node.
pub struct TestNode {
    /// Where it serves DNS (UDP and TCP).
    pub addr: SocketAddr,
    /// The state it answers from.
    pub snapshot: Arc<ArcSwap<Snapshot>>,
    /// Its cluster membership, when it has one.
    pub cluster: Option<Arc<sparrow_node::cluster::node::ClusterHandle>>,
    shutdown: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

impl TestNode {
    /// Loads `config` and serves it on 127.0.0.1, port 0.
    pub async fn start(config: &Path) -> anyhow::Result<Self> {
        Self::start_on(config, "127.0.0.1:0".parse()?).await
    }

    /// Loads `config` and serves it on `listen` (port 0: any free port).
    pub async fn start_on(config: &Path, listen: SocketAddr) -> anyhow::Result<Self> {
        Self::start_full(config, listen, None).await
    }

    /// Loads a clustered `config` and joins the cluster on `gossip` (bound by the caller).
    pub async fn start_clustered(
        config: &Path,
        gossip: std::net::UdpSocket,
    ) -> anyhow::Result<Self> {
        Self::start_full(config, "127.0.0.1:0".parse()?, Some(gossip)).await
    }

    /// Loads a standalone `config` and serves it on 127.0.0.1, port 0, recording every own
    /// route view its view source hands over (`[node.mrt]`, `[node.bgp]`) after applying it
    /// as `app::start_state` does. (Probes and load are not started.)
    pub async fn start_watching_views(config: &Path) -> anyhow::Result<(Self, ViewLog)> {
        let log = ViewLog::default();
        let l = log.clone();
        let node = Self::start_with(config, "127.0.0.1:0".parse()?, move |snapshot, shutdown| {
            Box::pin(async move {
                let own = snapshot.load().config.node.pop;
                let snap = snapshot.clone();
                app::spawn_own_view(
                    &snapshot,
                    move |v| {
                        app::apply_own_view(&snap, own, &v);
                        // INVARIANT: the lock is held for a push only.
                        l.lock().expect("view log lock").push(v);
                    },
                    &shutdown,
                )
                .await?;
                Ok(None)
            })
        })
        .await?;
        Ok((node, log))
    }

    async fn start_full(
        config: &Path,
        listen: SocketAddr,
        gossip: Option<std::net::UdpSocket>,
    ) -> anyhow::Result<Self> {
        Self::start_with(config, listen, move |snapshot, shutdown| {
            Box::pin(async move { app::start_state(&snapshot, gossip, &shutdown).await })
        })
        .await
    }

    async fn start_with(
        config: &Path,
        listen: SocketAddr,
        state: impl FnOnce(Arc<ArcSwap<Snapshot>>, CancellationToken) -> StartState,
    ) -> anyhow::Result<Self> {
        let loaded = sparrow_node::config::load(config)?;
        let timeout = loaded.config.node.tcp_idle_timeout;
        let sockets = app::bind(listen).await?;
        let addr = sockets.local_addr()?;
        let snapshot = Arc::new(ArcSwap::from_pointee(Snapshot::from_config(loaded.config)));
        let shutdown = CancellationToken::new();
        let cluster = state(snapshot.clone(), shutdown.clone()).await?;
        let task = tokio::spawn(app::serve(
            snapshot.clone(),
            vec![sockets],
            timeout,
            shutdown.clone(),
        ));
        Ok(Self {
            addr,
            snapshot,
            cluster,
            shutdown,
            task,
        })
    }

    /// Stops the node (DNS and gossip) and reports how its server ended.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        if let Some(c) = &self.cluster {
            c.shutdown().await;
        }
        self.task.await.context("node task panicked")?
    }
}

/// Every own route view a node's view source handed over, in order.
pub type ViewLog = Arc<Mutex<Vec<OwnView>>>;

type StartState = std::pin::Pin<
    Box<
        dyn Future<
            Output = anyhow::Result<Option<Arc<sparrow_node::cluster::node::ClusterHandle>>>,
        >,
    >,
>;

/// Transport of a query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// DNS over UDP.
    Udp,
    /// DNS over TCP.
    Tcp,
}

/// One query as a test states it.
#[derive(Clone, Debug)]
pub struct Ask {
    /// Name queried.
    pub name: String,
    /// Type queried.
    pub rtype: RecordType,
    /// EDNS Client Subnet to send, if any.
    pub subnet: Option<IpNet>,
    /// Whether to send an OPT record at all.
    pub edns: bool,
    /// UDP or TCP.
    pub transport: Transport,
}

impl Ask {
    /// `name`/`rtype` over UDP with EDNS and no client subnet.
    pub fn new(name: &str, rtype: RecordType) -> Self {
        Self {
            name: name.to_owned(),
            rtype,
            subnet: None,
            edns: true,
            transport: Transport::Udp,
        }
    }

    /// With an EDNS Client Subnet option.
    pub fn subnet(mut self, net: &str) -> Self {
        self.subnet = Some(net.parse().expect("test subnet"));
        self
    }

    /// Over TCP.
    pub fn tcp(mut self) -> Self {
        self.transport = Transport::Tcp;
        self
    }

    /// Without an OPT record.
    pub fn no_edns(mut self) -> Self {
        self.edns = false;
        self
    }

    /// Sends the query to `server` with hickory's DNS client.
    pub async fn send(&self, server: SocketAddr) -> anyhow::Result<DnsResponse> {
        let mut message = Message::query();
        message.metadata.recursion_desired = false;
        message
            .queries
            .push(Query::query(Name::from_str(&self.name)?, self.rtype));
        let mut options = DnsRequestOptions::default();
        options.use_edns = self.edns;
        if self.edns {
            let mut edns = Edns::new();
            edns.set_max_payload(1232);
            if let Some(net) = self.subnet {
                edns.options_mut()
                    .insert(EdnsOption::Subnet(ClientSubnet::from(net)));
            }
            message.edns = Some(edns);
        }
        let request = DnsRequest::new(message, options);
        let provider = TokioRuntimeProvider::default();
        let mut responses = match self.transport {
            Transport::Udp => {
                let stream = UdpClientStream::builder(server, provider).build();
                let (client, bg) = Client::<TokioRuntimeProvider>::from_sender(stream);
                tokio::spawn(bg);
                client.send(request)
            }
            Transport::Tcp => {
                let (stream, sender) = TcpClientStream::new(server, None, None, provider);
                let (client, bg) = Client::<TokioRuntimeProvider>::new(stream.await?, sender);
                tokio::spawn(bg);
                client.send(request)
            }
        };
        let response = tokio::time::timeout(Duration::from_secs(5), responses.next())
            .await
            .context("no response within 5 s")?
            .context("no response")??;
        Ok(response)
    }
}

/// A cluster PKI made with `sparrow cert`'s code, in memory.
pub struct TestPki {
    /// The cluster id.
    pub cluster: String,
    /// The CA.
    pub ca: sparrow_node::pki::Pem,
}

impl TestPki {
    /// A new CA for `cluster`.
    pub fn new(cluster: &str) -> Self {
        let now = time::OffsetDateTime::now_utc() - time::Duration::minutes(5);
        Self {
            cluster: cluster.to_owned(),
            ca: sparrow_node::pki::new_ca(cluster, now, 30).expect("test CA"),
        }
    }

    /// A certificate for `name` in `role`, claiming cluster `cluster`, signed by this CA.
    pub fn issue_as(
        &self,
        cluster: &str,
        role: sparrow_node::pki::Role,
        name: &str,
    ) -> sparrow_node::pki::Pem {
        let id = sparrow_node::pki::Identity {
            cluster: cluster.to_owned(),
            role,
            name: name.to_owned(),
        };
        let now = time::OffsetDateTime::now_utc() - time::Duration::minutes(5);
        sparrow_node::pki::issue(&self.ca, &id, &[], now, 30).expect("test certificate")
    }

    /// A node certificate of this cluster.
    pub fn node(&self, name: &str) -> sparrow_node::pki::Pem {
        self.issue_as(&self.cluster, sparrow_node::pki::Role::Node, name)
    }

    /// TLS settings of a node holding `cert`, trusting this CA, in cluster `self.cluster`.
    pub fn tls(&self, cert: &sparrow_node::pki::Pem) -> sparrow_node::cluster::tls::ClusterTls {
        sparrow_node::cluster::tls::ClusterTls::from_pem(
            &self.cluster,
            &self.ca.cert,
            &cert.cert,
            &cert.key,
        )
        .expect("test TLS settings")
    }
}

/// A chitchat instance gossiping over the QUIC transport on 127.0.0.1.
pub struct GossipNode {
    /// Its gossip address.
    pub addr: SocketAddr,
    /// The running chitchat.
    pub handle: chitchat::ChitchatHandle,
    /// Transport counters.
    pub stats: Arc<sparrow_node::cluster::transport::TransportStats>,
}

impl GossipNode {
    /// Starts node `name` with `tls`, seeded with `seeds`, publishing `pop = name`.
    pub async fn start(
        name: &str,
        tls: sparrow_node::cluster::tls::ClusterTls,
        seeds: &[SocketAddr],
    ) -> anyhow::Result<Self> {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0")?;
        let addr = socket.local_addr()?;
        let cluster = tls.cluster.clone();
        let transport = sparrow_node::cluster::transport::QuicTransport::new(tls, socket);
        let stats = transport.stats();
        let config = chitchat::ChitchatConfig {
            chitchat_id: chitchat::ChitchatId::new(name, 0, addr),
            cluster_id: cluster,
            gossip_interval: Duration::from_millis(100),
            listen_addr: addr,
            seed_nodes: seeds.iter().map(ToString::to_string).collect(),
            failure_detector_config: chitchat::FailureDetectorConfig {
                initial_interval: Duration::from_millis(100),
                ..Default::default()
            },
            marked_for_deletion_grace_period: Duration::from_secs(3600),
            catchup_callback: None,
            extra_liveness_predicate: None,
        };
        let handle =
            chitchat::spawn_chitchat(config, vec![("pop".into(), name.into())], &transport).await?;
        Ok(Self {
            addr,
            handle,
            stats,
        })
    }

    /// Names of the nodes this node believes alive (itself included), sorted.
    pub async fn live(&self) -> Vec<String> {
        let chitchat = self.handle.chitchat();
        let guard = chitchat.lock().await;
        let mut names: Vec<String> = guard
            .live_nodes()
            .map(|id| id.node_id.to_string())
            .collect();
        names.sort();
        names
    }

    /// The value of `key` that this node has from node `name`, if any.
    pub async fn value_from(&self, name: &str, key: &str) -> Option<String> {
        let chitchat = self.handle.chitchat();
        let guard = chitchat.lock().await;
        guard
            .node_states()
            .iter()
            .find(|(id, _)| &*id.node_id == name)
            .and_then(|(_, state)| state.get(key).map(str::to_owned))
    }
}

/// Polls `check` every 50 ms until it holds or `within` passes; returns whether it held.
pub async fn eventually<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Configs for a cluster of the example's three POPs (ams, nyc, syd), one node each, with a
/// fresh PKI and gossip sockets bound on 127.0.0.1. `edit(pop, text)` may change each node's
/// config. Returns (config path, gossip socket) per node, ams first; ams is everyone's seed.
pub fn example_cluster(
    edit: impl Fn(&str, String) -> String,
) -> Vec<(PathBuf, std::net::UdpSocket)> {
    let pki = TestPki::new("test");
    let sockets: Vec<std::net::UdpSocket> = (0..3)
        .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").expect("bind gossip socket"))
        .collect();
    let addrs: Vec<SocketAddr> = sockets
        .iter()
        .map(|s| s.local_addr().expect("gossip address"))
        .collect();
    ["ams", "nyc", "syd"]
        .iter()
        .zip(sockets)
        .enumerate()
        .map(|(i, (pop, socket))| {
            let cert = pki.node(pop);
            let config = example_variant(|text| {
                let text = text.replace("pop = \"ams\"", &format!("pop = \"{pop}\""));
                let section = format!(
                    "\n[cluster]\nid = \"test\"\nlisten = \"{}\"\nseeds = [\"{}\"]\nca = \"ca.pem\"\ncert = \"node.pem\"\nkey = \"node.key\"\ngossip_interval_ms = 100\n",
                    addrs[i], addrs[0]
                );
                edit(pop, text + &section)
            });
            let dir = config.parent().expect("config folder");
            std::fs::write(dir.join("ca.pem"), &pki.ca.cert).expect("write CA");
            std::fs::write(dir.join("node.pem"), &cert.cert).expect("write cert");
            std::fs::write(dir.join("node.key"), &cert.key).expect("write key");
            (config, socket)
        })
        .collect()
}
