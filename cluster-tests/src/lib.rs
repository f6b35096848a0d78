//! Harness for tests of real Sparrow nodes: each node runs the real node code on sockets bound
//! to 127.0.0.1 port 0, and tests query it with real DNS clients (hickory's client over UDP
//! and TCP, `dig`, or raw datagrams for malformed input).
//!
//! The tests live in `tests/it/` (one integration binary). [`bird`] runs a real BIRD 2 for
//! the BGP and MRT tests.

pub mod bird;
pub mod knot;
pub mod scale;

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
use sparrow_node::state::owner::StateHandle;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The value of environment variable `name` (e.g. `SPARROW_SEED`), or `default` when it is
/// unset or does not parse: how benches and seeded tests take their knobs.
pub fn env_or<T: FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// Resident and peak memory of this process, `VmRSS …, VmHWM …` from `/proc/self/status`
/// (Linux; `n/a` elsewhere), for the benches' memory figures.
pub fn process_memory() -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map_or("n/a", str::trim)
            .to_owned()
    };
    format!("VmRSS {}, VmHWM {}", field("VmRSS:"), field("VmHWM:"))
}

/// The example every operator starts from (`deploy/examples/single-node/sparrow.toml`).
pub fn example_config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples/single-node/sparrow.toml")
}

/// The services example (`deploy/examples/services/sparrow.toml`): the single-node example
/// with `api` (own targets, a probe failing at ams) and `cdn` (a CNAME per POP).
pub fn services_config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples/services/sparrow.toml")
}

/// A copy of the example's folder in a fresh temporary folder, with `edit` applied to the
/// config text. Returns the path of the edited config. The folder is left for inspection.
pub fn example_variant(edit: impl FnOnce(String) -> String) -> PathBuf {
    variant_of(&example_config(), edit)
}

/// The multi-zone example (`deploy/examples/multi-zone/sparrow.toml`).
pub fn multi_zone_config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples/multi-zone/sparrow.toml")
}

/// [`example_variant`] of the config at `src` (its folder copied whole).
pub fn variant_of(src: &Path, edit: impl FnOnce(String) -> String) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
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

/// Installs the tests' log subscriber, once per process: every warning and error any node of
/// the process logs is kept for [`logged`], and when `RUST_LOG` is set
/// (`RUST_LOG=sparrow_node=debug cargo test ... -- --nocapture`) the log is also printed.
pub fn subscribe() {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::{Layer as _, filter::LevelFilter};
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let print = std::env::var_os("RUST_LOG").is_some().then(|| {
            tracing_subscriber::fmt::layer()
                .with_test_writer()
                .with_filter(tracing_subscriber::EnvFilter::from_default_env())
        });
        let subscriber = tracing_subscriber::registry()
            .with(Capture.with_filter(LevelFilter::WARN))
            .with(print);
        let _ = tracing::subscriber::set_global_default(subscriber);
    });
}

/// Warnings and errors logged in this process so far, one line each: level, target, message
/// and fields (`name=value`).
static LOGGED: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Whether some warning or error logged in this process so far contains every one of
/// `parts` (e.g. the peer's name and the reason): how a test checks that an attack was
/// logged, not only refused. Tests run concurrently in one process, so `parts` should name
/// something only that test uses.
pub fn logged(parts: &[&str]) -> bool {
    // INVARIANT: the lock is held for a scan only.
    LOGGED
        .lock()
        .expect("log lock")
        .iter()
        .any(|line| parts.iter().all(|p| line.contains(p)))
}

/// The layer behind [`logged`].
struct Capture;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Capture {
    fn on_event(&self, event: &tracing::Event<'_>, _cx: tracing_subscriber::layer::Context<'_, S>) {
        let meta = event.metadata();
        let mut line = format!("{} {}:", meta.level(), meta.target());
        event.record(&mut LineWriter(&mut line));
        // INVARIANT: the lock is held for a push only.
        LOGGED.lock().expect("log lock").push(line);
    }
}

struct LineWriter<'a>(&'a mut String);

impl tracing::field::Visit for LineWriter<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        use std::fmt::Write as _;
        let _ = if field.name() == "message" {
            write!(self.0, " {value:?}")
        } else {
            write!(self.0, " {}={value:?}", field.name())
        };
    }

    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        use std::fmt::Write as _;
        let _ = write!(self.0, " {}={value}", field.name());
    }
}

/// A running node.
pub struct TestNode {
    /// Where it serves DNS (UDP and TCP).
    pub addr: SocketAddr,
    /// The state it answers from (written by the node's state owner only).
    pub snapshot: Arc<ArcSwap<Snapshot>>,
    /// Where changes to its state go (as its probes, view source, cluster and API send
    /// them).
    pub state: StateHandle,
    /// Its cluster membership, when it has one.
    pub cluster: Option<Arc<sparrow_node::cluster::node::ClusterHandle>>,
    /// Where its metrics endpoint listens, when the config sets `metrics_listen`.
    pub metrics: Option<SocketAddr>,
    node: Option<app::Node>,
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
        Self::start_with(config, listen, None, None).await
    }

    /// Loads a clustered `config` and joins the cluster on `gossip` (bound by the caller).
    pub async fn start_clustered(
        config: &Path,
        gossip: std::net::UdpSocket,
    ) -> anyhow::Result<Self> {
        Self::start_with(config, "127.0.0.1:0".parse()?, Some(gossip), None).await
    }

    /// Loads a standalone `config` and serves it on 127.0.0.1, port 0, recording every own
    /// route view its view source hands over (`[node.mrt]`, `[node.bgp]`) before the node
    /// takes it.
    pub async fn start_watching_views(config: &Path) -> anyhow::Result<(Self, ViewLog)> {
        let log = ViewLog::default();
        let l = log.clone();
        let tap: app::ViewTap = Arc::new(move |v: &OwnView| {
            // INVARIANT: the lock is held for a push only.
            l.lock().expect("view log lock").push(v.clone());
        });
        let node = Self::start_with(config, "127.0.0.1:0".parse()?, None, Some(tap)).await?;
        Ok((node, log))
    }

    async fn start_with(
        config: &Path,
        listen: SocketAddr,
        gossip: Option<std::net::UdpSocket>,
        tap: Option<app::ViewTap>,
    ) -> anyhow::Result<Self> {
        subscribe();
        let loaded = sparrow_node::config::load(config)?;
        let timeout = loaded.config.node.tcp_idle_timeout;
        let sockets = app::bind(listen).await?;
        let addr = sockets.local_addr()?;
        // As `app::run` does: every socket is bound before anything starts.
        let metrics = match loaded.config.node.metrics_listen {
            Some(a) => Some(app::bind_metrics(a).await?),
            None => None,
        };
        let api_socket = loaded.config.node.api_socket.clone();
        let shutdown = CancellationToken::new();
        let node = app::Node::start(
            loaded.config,
            app::NodeParts {
                gossip,
                metrics,
                api_socket,
                probes: tap.is_none(),
                on_own_view: tap,
                config_path: Some(config.to_owned()),
                ..app::NodeParts::default()
            },
            shutdown.clone(),
        )
        .await?;
        let task = tokio::spawn(app::serve_handler(
            node.handler(),
            vec![sockets],
            timeout,
            shutdown.clone(),
        ));
        Ok(Self {
            addr,
            snapshot: node.state.snapshot.clone(),
            state: node.state.clone(),
            cluster: node.cluster.clone(),
            metrics: node.metrics_addr,
            node: Some(node),
            shutdown,
            task,
        })
    }

    /// Tells the cluster the node is shutting down (as `sparrow node` does on SIGTERM),
    /// without stopping it.
    pub async fn leave(&self) {
        if let Some(node) = &self.node {
            node.leave().await;
        }
    }

    /// Re-reads the node's config file and every file it names, and applies it, as
    /// `sparrow reload` and SIGHUP do; the error says why it was refused.
    pub async fn reload(&self) -> anyhow::Result<()> {
        let reloader = self
            .node
            .as_ref()
            .and_then(|n| n.reloader.clone())
            .context("the node has no reloader")?;
        reloader.reload().await?;
        Ok(())
    }

    /// Stops the node (DNS and gossip) at once, with no goodbye, and reports how its server
    /// ended.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        if let Some(node) = self.node.take() {
            node.stop().await;
        }
        self.task.await.context("node task panicked")?
    }
}

/// Every own route view a node's view source handed over, in order.
pub type ViewLog = Arc<Mutex<Vec<OwnView>>>;

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

/// A node's gossip alone (its mesh of chitchat links over the QUIC transport) on 127.0.0.1.
pub struct GossipNode {
    /// Its gossip address.
    pub addr: SocketAddr,
    /// Its mesh.
    pub mesh: Arc<sparrow_node::cluster::mesh::Mesh>,
    /// Transport counters.
    pub stats: Arc<sparrow_node::cluster::transport::TransportStats>,
    _shutdown: tokio_util::sync::DropGuard,
}

impl GossipNode {
    /// Starts node `name` of a cluster whose POPs are `names`, with `tls`, seeded with
    /// `seeds`, publishing `pop = name`.
    pub async fn start(
        name: &str,
        names: &[&str],
        tls: sparrow_node::cluster::tls::ClusterTls,
        seeds: &[SocketAddr],
    ) -> anyhow::Result<Self> {
        let keys = vec![("pop".to_owned(), name.to_owned())];
        Self::start_with_keys(name, names, tls, seeds, keys, Duration::from_millis(100)).await
    }

    /// Starts node `name` publishing `keys` (e.g. a Sparrow node's hot state, to stand in
    /// for a peer whose POP is alive), gossiping every `interval`: the real mesh, endpoint
    /// and transport of a node, without the rest of it.
    pub async fn start_with_keys(
        name: &str,
        names: &[&str],
        tls: sparrow_node::cluster::tls::ClusterTls,
        seeds: &[SocketAddr],
        keys: Vec<(String, String)>,
        interval: Duration,
    ) -> anyhow::Result<Self> {
        let views = sparrow_node::cluster::endpoint::serve_views(Arc::new(
            sparrow_node::cluster::view_sync::ViewServer::new(name),
        ));
        Self::start_serving(name, names, tls, seeds, keys, interval, views).await
    }

    /// [`Self::start_with_keys`], answering route-view pulls with `views` (e.g. a view
    /// server that lies) instead of a node's view server.
    pub async fn start_serving(
        name: &str,
        names: &[&str],
        tls: sparrow_node::cluster::tls::ClusterTls,
        seeds: &[SocketAddr],
        keys: Vec<(String, String)>,
        interval: Duration,
        views: sparrow_node::cluster::endpoint::Service,
    ) -> anyhow::Result<Self> {
        use sparrow_node::cluster::{endpoint, mesh, transport};
        let socket = std::net::UdpSocket::bind("127.0.0.1:0")?;
        let addr = socket.local_addr()?;
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let Some(own) = names.iter().position(|n| n == name) else {
            anyhow::bail!("{name} is not one of {names:?}");
        };
        tls.admit(sparrow_node::cluster::tls::Admission {
            nodes: names.clone(),
            revoked: Default::default(),
        });
        let cluster = tls.cluster.clone();
        let tls = Arc::new(tls);
        let endpoint = endpoint::bind(&tls, socket)?;
        let stats = Arc::new(transport::TransportStats::default());
        let faults = transport::Faults::default();
        let mesh = mesh::Mesh::new(
            mesh::MeshConfig {
                cluster,
                names,
                own,
                generation: 1,
                listen: addr,
                seeds: seeds.iter().map(ToString::to_string).collect(),
                gossip_interval: interval,
            },
            endpoint.clone(),
            tls.client_config(sparrow_node::cluster::tls::ALPN_GOSSIP)?,
            &sparrow_node::cluster::state::HotState::up(),
            stats.clone(),
            faults.clone(),
        );
        mesh.publish_keys(keys).await;
        let gossip: endpoint::Service = {
            let mesh = mesh.clone();
            Arc::new(move |conn, id| Box::pin(mesh.clone().incoming(conn, id)))
        };
        let handlers = Arc::new(endpoint::Handlers::new(
            gossip,
            views,
            stats.clone(),
            faults,
        ));
        let shutdown = CancellationToken::new();
        tokio::spawn(endpoint::accept_loop(endpoint, tls, handlers));
        tokio::spawn(mesh.clone().discover(shutdown.clone()));
        Ok(Self {
            addr,
            mesh,
            stats,
            _shutdown: shutdown.drop_guard(),
        })
    }

    /// Names of the nodes this node hears alive (itself included), sorted.
    pub async fn live(&self) -> Vec<String> {
        self.mesh.alive_names().await
    }

    /// The value of `key` that this node has from node `name`, if any.
    pub async fn value_from(&self, name: &str, key: &str) -> Option<String> {
        self.mesh.peer_value(name, key).await
    }

    /// Publishes `key = value` among this node's keys.
    pub async fn set(&self, keys: Vec<(String, String)>) {
        self.mesh.publish_keys(keys).await;
    }
}

/// Whether every node of a cluster (`nodes[i]` being POP `i`'s node) answers from the whole
/// cluster and holds every POP's current view: the digest each POP's own node announces.
/// What a test that compares answers across nodes must wait for (the cluster forming is not
/// enough: views arrive after it).
pub fn views_settled(nodes: &[&TestNode]) -> bool {
    let own: Vec<Option<u64>> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| n.snapshot.load().view_info(i).and_then(|v| v.digest))
        .collect();
    if own.iter().any(Option::is_none) {
        return false;
    }
    nodes.iter().all(|n| {
        let s = n.snapshot.load();
        s.mode == sparrow_node::cluster::state::Mode::Cluster { alive: nodes.len() }
            && (0..nodes.len()).all(|p| s.view_info(p).and_then(|v| v.digest) == own[p])
    })
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
    example_cluster_with(&TestPki::new("test"), edit)
}

/// [`example_cluster`] with the PKI `pki` (cluster id `test`), so a test can issue more
/// certificates (operators, intruders) from the same CA.
pub fn example_cluster_with(
    pki: &TestPki,
    edit: impl Fn(&str, String) -> String,
) -> Vec<(PathBuf, std::net::UdpSocket)> {
    cluster_of(&example_config(), pki, edit)
}

/// [`example_cluster_with`] from the config at `src` (the single-node example, or another
/// with the same three POPs, such as [`services_config`]).
pub fn cluster_of(
    src: &Path,
    pki: &TestPki,
    edit: impl Fn(&str, String) -> String,
) -> Vec<(PathBuf, std::net::UdpSocket)> {
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
            let config = variant_of(src, |text| {
                let text = text.replacen("pop = \"ams\"", &format!("pop = \"{pop}\""), 1);
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

/// Configs for a cluster of `n` POPs `p00`, `p01`, ..., one node each, with certificates from
/// `pki` (cluster id `test`) and gossip sockets bound on 127.0.0.1; `p00` is everyone's seed.
/// POP `i` answers 198.18.0.`i`, and its route view puts its own 10.`i`.0.0/16 at 0 hops and
/// each /16 of 100.64.0.0/10 at 2 or 3 hops (alternating, the same for every POP), so every
/// POP is equally near a client there and the 64 blocks are shared among them by rendezvous
/// hashing.
/// `gossip_interval_ms` sets the cluster's gossip interval (`None`: the default).
pub fn synthetic_cluster(
    pki: &TestPki,
    n: usize,
    gossip_interval_ms: Option<u64>,
) -> Vec<(PathBuf, std::net::UdpSocket)> {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    assert!((1..=250).contains(&n), "1 to 250 POPs");
    let dir = std::env::temp_dir().join(format!(
        "sparrow-synthetic-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("create synthetic cluster folder");
    std::fs::write(dir.join("ca.pem"), &pki.ca.cert).expect("write CA");
    let sockets: Vec<std::net::UdpSocket> = (0..n)
        .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").expect("bind gossip socket"))
        .collect();
    let addrs: Vec<SocketAddr> = sockets
        .iter()
        .map(|s| s.local_addr().expect("gossip address"))
        .collect();
    let name = |i: usize| format!("p{i:02}");
    let mut pops = String::new();
    for i in 0..n {
        let asn = 65_000 + i;
        let shared: String = (64..128)
            .map(|b| {
                let transit = if b % 2 == 0 { "64496" } else { "64496 64497" };
                format!("100.{b}.0.0/16 {transit} {asn}\n")
            })
            .collect();
        std::fs::write(
            dir.join(format!("{}.routes", name(i))),
            format!("10.{i}.0.0/16\n{shared}"),
        )
        .expect("write route view");
        pops.push_str(&format!(
            "[[pop]]\nname = \"{}\"\nasn = {asn}\naddresses = [\"198.18.0.{i}\"]\nroute_view = \"{}.routes\"\n\n",
            name(i),
            name(i)
        ));
    }
    let interval =
        gossip_interval_ms.map_or_else(String::new, |ms| format!("gossip_interval_ms = {ms}\n"));
    sockets
        .into_iter()
        .enumerate()
        .map(|(i, socket)| {
            let cert = pki.node(&name(i));
            std::fs::write(dir.join(format!("{}.pem", name(i))), &cert.cert).expect("write cert");
            std::fs::write(dir.join(format!("{}.key", name(i))), &cert.key).expect("write key");
            let text = format!(
                "[node]\npop = \"{pop}\"\nlisten = [\"127.0.0.1:0\"]\n\n\
                 [zone]\norigin = \"example.net.\"\nns = [\"ns1\"]\n\n\
                 [zone.soa]\nmname = \"ns1\"\nrname = \"hostmaster\"\nserial = 1\n\n\
                 [[zone.record]]\nname = \"ns1\"\ntype = \"A\"\ndata = \"192.0.2.53\"\n\n\
                 {pops}[[geo]]\nname = \"www\"\nttl = 30\n\n\
                 [cluster]\nid = \"{cluster}\"\nlisten = \"{listen}\"\nseeds = [\"{seed}\"]\n\
                 ca = \"ca.pem\"\ncert = \"{pop}.pem\"\nkey = \"{pop}.key\"\n{interval}",
                pop = name(i),
                cluster = pki.cluster,
                listen = addrs[i],
                seed = addrs[0],
            );
            let config = dir.join(format!("{}.toml", name(i)));
            std::fs::write(&config, text).expect("write config");
            (config, socket)
        })
        .collect()
}

/// A real HTTP/1.1 `GET` of `path` on `addr` with hyper's client: (status, content type,
/// body).
pub async fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<(u16, String, String)> {
    use http_body_util::BodyExt as _;
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    let driver = tokio::spawn(conn);
    let request = hyper::Request::get(path)
        .header(hyper::header::HOST, addr.to_string())
        .body(http_body_util::Empty::<hyper::body::Bytes>::new())?;
    let response = tokio::time::timeout(Duration::from_secs(5), sender.send_request(request))
        .await
        .context("no response within 5 s")??;
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = response.into_body().collect().await?.to_bytes();
    driver.abort();
    Ok((status, content_type, String::from_utf8(body.to_vec())?))
}

/// The metrics of the node at `addr`, scraped from `/metrics` (checked to be OpenMetrics).
pub async fn scrape(addr: SocketAddr) -> anyhow::Result<Scraped> {
    let (status, content_type, body) = http_get(addr, "/metrics").await?;
    anyhow::ensure!(status == 200, "status {status}");
    anyhow::ensure!(
        content_type.starts_with("application/openmetrics-text"),
        "content type {content_type}"
    );
    anyhow::ensure!(body.ends_with("# EOF\n"), "no EOF marker");
    Ok(Scraped(body))
}

/// A scraped exposition.
#[derive(Clone, Debug)]
pub struct Scraped(pub String);

impl Scraped {
    /// The value of sample `series` (name and labels exactly as exposed, e.g.
    /// `sparrow_mode{mode="cluster"}`), if present.
    pub fn get(&self, series: &str) -> Option<f64> {
        self.0.lines().find_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            (name == series).then(|| value.parse().ok())?
        })
    }

    /// [`Self::get`], panicking with the whole exposition when the series is missing.
    #[track_caller]
    pub fn value(&self, series: &str) -> f64 {
        self.get(series)
            .unwrap_or_else(|| panic!("no series {series} in:\n{}", self.0))
    }
}

/// A private CA for web servers (not a cluster CA), made with rcgen.
pub struct WebPki {
    /// The CA certificate (PEM).
    pub ca_pem: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl WebPki {
    /// A new CA (each with its own name, as distinct real CAs have).
    pub fn new() -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            format!(
                "Sparrow test web CA {}",
                COUNTER.fetch_add(1, Ordering::Relaxed)
            ),
        );
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let key = rcgen::KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("CA certificate");
        Self {
            ca_pem: cert.pem(),
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    /// A server certificate and key for `names` (DNS names or IP addresses).
    pub fn server(&self, names: &[&str]) -> (String, String) {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = rcgen::CertificateParams::new(names).expect("server params");
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let key = rcgen::KeyPair::generate().expect("server key");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("server certificate");
        (cert.pem(), key.serialize_pem())
    }
}

impl Default for WebPki {
    fn default() -> Self {
        Self::new()
    }
}

/// An HTTPS server on 127.0.0.1 (rustls) that answers every request with the raw HTTP
/// response bytes it currently holds, so tests control the wire exactly (status, headers,
/// chunked framing). The response can be changed while it runs.
pub struct HttpsServer {
    /// Where it listens.
    pub addr: SocketAddr,
    response: Arc<Mutex<String>>,
    /// Requests served so far.
    pub served: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl HttpsServer {
    /// Serves `response` with the certificate chain `cert` and `key` (PEM).
    pub async fn start(cert: &str, key: &str, response: &str) -> anyhow::Result<Self> {
        use rustls::pki_types::pem::PemObject as _;
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let chain = rustls::pki_types::CertificateDer::pem_slice_iter(cert.as_bytes())
            .collect::<Result<Vec<_>, _>>()?;
        let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key.as_bytes())?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(chain, key)?;
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let response = Arc::new(Mutex::new(response.to_owned()));
        let served = Arc::new(AtomicUsize::new(0));
        let (r, n) = (response.clone(), served.clone());
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, r, n) = (acceptor.clone(), r.clone(), n.clone());
                tokio::spawn(async move {
                    // A failed handshake (the client distrusts us) just ends the connection.
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut request = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match tls.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(k) => request.extend_from_slice(&buf[..k]),
                        }
                    }
                    let text = r.lock().expect("response lock").clone();
                    n.fetch_add(1, Ordering::Relaxed);
                    let _ = tls.write_all(text.as_bytes()).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        Ok(Self {
            addr,
            response,
            served,
            task,
        })
    }

    /// Answers `response` from now on.
    pub fn set_response(&self, response: &str) {
        *self.response.lock().expect("response lock") = response.to_owned();
    }
}

impl Drop for HttpsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
