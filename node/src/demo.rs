//! [E] `sparrow demo`: three real nodes (ams, nyc, syd) in one process, clustered over QUIC
//! gossip with a PKI made on the spot, serving the single-node example's zone, POPs, views
//! and static map on 127.0.0.1 ports 5301, 5302 and 5303. Needs no files.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::app;
use crate::config::{Config, FileSource};
use crate::pki;

const CONFIG: &str = include_str!("../../deploy/examples/single-node/sparrow.toml");
const FILES: [(&str, &str); 5] = [
    (
        "example.net.zone",
        include_str!("../../deploy/examples/single-node/example.net.zone"),
    ),
    (
        "ssrs.routes",
        include_str!("../../deploy/examples/single-node/ssrs.routes"),
    ),
    (
        "views/ams.routes",
        include_str!("../../deploy/examples/single-node/views/ams.routes"),
    ),
    (
        "views/nyc.routes",
        include_str!("../../deploy/examples/single-node/views/nyc.routes"),
    ),
    (
        "views/syd.routes",
        include_str!("../../deploy/examples/single-node/views/syd.routes"),
    ),
];
/// The demo's POPs, in the example's order.
pub const POPS: [&str; 3] = ["ams", "nyc", "syd"];

/// Files served from memory.
struct Memory(HashMap<PathBuf, String>);

impl FileSource for Memory {
    fn read(&self, path: &Path, _max: u64) -> io::Result<String> {
        self.0
            .get(path)
            .cloned()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "not part of the demo"))
    }
}

/// The demo's node configs: DNS on `dns_base + i` (any free port for 0), gossip on the given
/// bound sockets' ports.
pub fn configs(dns_base: u16, gossip: &[SocketAddr]) -> anyhow::Result<Vec<Config>> {
    let now = time::OffsetDateTime::now_utc() - time::Duration::minutes(1);
    let ca = pki::new_ca("demo", now, 1)?;
    let mut out = Vec::new();
    for (i, pop) in POPS.iter().enumerate() {
        let id = pki::Identity {
            cluster: "demo".into(),
            role: pki::Role::Node,
            name: (*pop).to_owned(),
        };
        let cert = pki::issue(&ca, &id, &["127.0.0.1".into()], now, 1)?;
        let dir = PathBuf::from(format!("/demo/{pop}"));
        let mut files: HashMap<PathBuf, String> = FILES
            .iter()
            .map(|(name, text)| (dir.join(name), (*text).to_owned()))
            .collect();
        files.insert(dir.join("ca.pem"), ca.cert.clone());
        files.insert(dir.join("node.pem"), cert.cert);
        files.insert(dir.join("node.key"), cert.key);
        let port = match dns_base {
            0 => 0,
            base => base
                .checked_add(u16::try_from(i)?)
                .context("DNS port out of range")?,
        };
        // Each node reads only its own POP's route view, as in production where only the own
        // router is reachable; the others' views arrive from their nodes over QUIC.
        let own_view = format!("views/{pop}.routes");
        let text: String = CONFIG
            .lines()
            .filter(|l| !l.starts_with("route_view") || l.contains(&own_view))
            .map(|l| format!("{l}\n"))
            .collect();
        let text = text
            .replace("pop = \"ams\"", &format!("pop = \"{pop}\""))
            .replace("127.0.0.1:5301", &format!("127.0.0.1:{port}"))
            + &format!(
                "\n[cluster]\nid = \"demo\"\nlisten = \"{}\"\nseeds = [\"{}\"]\nca = \"ca.pem\"\ncert = \"node.pem\"\nkey = \"node.key\"\n",
                gossip[i], gossip[0]
            );
        let loaded = Config::from_str(&text, &dir.join("sparrow.toml"), &Memory(files))?;
        out.push(loaded.config);
    }
    Ok(out)
}

/// Runs the demo until `shutdown`.
pub async fn run(
    dns_base: u16,
    api_socket: PathBuf,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let sockets = POPS
        .iter()
        .map(|_| std::net::UdpSocket::bind("127.0.0.1:0"))
        .collect::<io::Result<Vec<_>>>()
        .context("cannot bind gossip sockets on 127.0.0.1")?;
    let gossip = sockets
        .iter()
        .map(std::net::UdpSocket::local_addr)
        .collect::<io::Result<Vec<_>>>()?;
    let mut servers = tokio::task::JoinSet::new();
    let mut nodes = Vec::new();
    let mut ports = Vec::new();
    let mut api_paths = Vec::new();
    for (config, socket) in configs(dns_base, &gossip)?.into_iter().zip(sockets) {
        let span = tracing::info_span!("node", pop = %config.own_pop().name);
        let dns = app::bind(config.node.listen[0]).await?;
        ports.push(dns.local_addr()?.port());
        let timeout = config.node.tcp_idle_timeout;
        // ams answers `sparrow status` with no flags; the others sit beside it.
        let pop = config.own_pop().name.clone();
        let api_path = if pop == POPS[0] {
            api_socket.clone()
        } else {
            api_socket.with_file_name(format!("api-{pop}.sock"))
        };
        let node = app::Node::start(
            config,
            app::NodeParts {
                gossip: Some(socket),
                api_socket: Some(api_path.clone()),
                probes: true,
                ..app::NodeParts::default()
            },
            shutdown.clone(),
        )
        .instrument(span.clone())
        .await?;
        api_paths.push(api_path);
        servers.spawn(
            app::serve_handler(node.handler(), vec![dns], timeout, shutdown.clone())
                .instrument(span),
        );
        nodes.push(node);
    }
    println!("Sparrow demo: nodes ams, nyc and syd clustered over QUIC on 127.0.0.1.");
    println!("Each node loads only its own POP's route view and pulls the others' from their");
    println!("nodes over QUIC (`sparrow status` shows where each view came from); once they");
    println!("have them, every node answers the same for the same client. Try:");
    for (subnet, note) in [
        ("100.64.1.0/24", "ams: 1 AS hop away"),
        ("100.64.2.0/24", "nyc: 1 AS hop away"),
        ("100.64.3.0/24", "syd: 1 AS hop away"),
        (
            "100.64.5.0/24",
            "syd: the static map overrides the nearer ams",
        ),
    ] {
        for port in &ports {
            println!("  dig @127.0.0.1 -p {port} www.example.net A +subnet={subnet}   # {note}");
        }
    }
    println!(
        "Operate it (the ams node; --socket {} for nyc):",
        api_paths[1].display()
    );
    println!("  sparrow status");
    println!("  sparrow explain 100.64.2.0/24");
    println!(
        "  sparrow drain nyc --socket {}   # nyc's node holds nyc's drain; dig again: nyc's clients go elsewhere",
        api_paths[1].display()
    );
    println!("  sparrow undrain nyc --socket {}", api_paths[1].display());
    println!("Stop with Ctrl-C.");
    // Let a caller reading stdout through a pipe see the commands now.
    let _ = io::Write::flush(&mut io::stdout());
    while let Some(result) = servers.join_next().await {
        result.context("a demo node panicked")??;
    }
    for node in nodes {
        node.stop().await;
    }
    Ok(())
}
