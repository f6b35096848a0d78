//! Harness for tests of real Sparrow nodes: each node runs the real node code on sockets bound
//! to 127.0.0.1 port 0, and tests query it with real DNS clients (hickory's client over UDP
//! and TCP, `dig`, or raw datagrams for malformed input).
//!
//! The tests live in `tests/it/` (one integration binary).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
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
        let loaded = sparrow_node::config::load(config)?;
        let timeout = loaded.config.node.tcp_idle_timeout;
        let sockets = app::bind(listen).await?;
        let addr = sockets.local_addr()?;
        let snapshot = Arc::new(ArcSwap::from_pointee(Snapshot::from_config(loaded.config)));
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(app::serve(
            snapshot.clone(),
            vec![sockets],
            timeout,
            shutdown.clone(),
        ));
        Ok(Self {
            addr,
            snapshot,
            shutdown,
            task,
        })
    }

    /// Stops the node and reports how its server ended.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.task.await.context("node task panicked")?
    }
}

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
