//! A node of a 100-POP cluster starting cold with every POP's full view: time to the first
//! correct answer, and the whole process's memory once it holds them all.
//!
//! ```sh
//! cargo bench -p sparrow-cluster-tests --bench coldstart -- gen DIR     # writes the files
//! cargo bench -p sparrow-cluster-tests --bench coldstart -- peers DIR & # the other 99 POPs
//! cargo bench -p sparrow-cluster-tests --bench coldstart -- run DIR     # a fresh process
//! ```
//!
//! `peers` stands in for the other 99 nodes: chitchat over Sparrow's QUIC transport with their
//! certificates, publishing what a live, healthy node publishes, with the announcements of
//! the views the restarting node kept (so it has nothing to pull, as after a quick
//! restart). It writes its seed address to `DIR/seed.txt` once they have formed a cluster.
//!
//! `gen` writes a 100-POP config for POP p00, p00's own full view as a route file, and the
//! other 99 full views as a node keeps pulled views on disk (`state_dir/views/POP.view`, the
//! transfer as received). Every view is `netsim::fulltable`'s seeded table (1,000,000 IPv4
//! and 250,000 IPv6 prefixes) with that POP's paths. `run` then starts the node from the
//! files in a fresh process (nothing generated in memory), asks a client whose answer is
//! another POP than p00 until the answer is right, and prints the time from the start and
//! the process's RSS. With no peer reachable, the node is alone in its cluster (quorum 1).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hickory_proto::rr::RecordType;
use ipnet::IpNet;
use sparrow_cluster_tests::{Ask, GossipNode, TestNode, TestPki};
use sparrow_netsim::fulltable::{self, TableSpec};
use sparrow_node::cluster::state::Mode;
use sparrow_node::routes::{RouteView, transfer};

const POPS: usize = 100;
const SEED: u64 = 2026;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    match (args.first().map(String::as_str), args.get(1)) {
        (Some("gen"), Some(dir)) => generate(Path::new(dir)),
        (Some("peers"), Some(dir)) => peers(Path::new(dir)).await,
        (Some("run"), Some(dir)) => run(Path::new(dir)).await,
        // Under `cargo test --benches`: nothing to do without a folder.
        _ => eprintln!("usage: coldstart (gen DIR | peers DIR | run DIR)"),
    }
}

fn generate(dir: &Path) {
    let started = Instant::now();
    std::fs::create_dir_all(dir.join("state/views")).expect("create folder");
    let prefixes = fulltable::prefixes(TableSpec {
        v4_prefixes: 1_000_000,
        v6_prefixes: fulltable::FULL_V6,
        seed: SEED,
    });
    std::fs::write(
        dir.join("p00.routes"),
        fulltable::pop_view(&prefixes, 0, SEED),
    )
    .expect("write own view");
    for pop in 1..POPS {
        let view = RouteView::new(
            fulltable::pop_view_entries(&prefixes, pop as u32, SEED)
                .into_iter()
                .map(|(net, path)| (net, path.into_boxed_slice()))
                .collect(),
        );
        let bytes = transfer::stream_bytes(&transfer::encode(&view, 1));
        sparrow_node::cluster::view_cache::save(
            &dir.join("state/views"),
            &format!("p{pop:02}"),
            &bytes,
        )
        .expect("write kept view");
    }
    let pki = TestPki::new("bench");
    std::fs::write(dir.join("ca.pem"), &pki.ca.cert).expect("write CA");
    for pop in 0..POPS {
        let cert = pki.node(&format!("p{pop:02}"));
        std::fs::write(dir.join(format!("p{pop:02}.pem")), &cert.cert).expect("write cert");
        std::fs::write(dir.join(format!("p{pop:02}.key")), &cert.key).expect("write key");
    }
    let mut text = String::from(
        "[node]\npop = \"p00\"\nlisten = [\"127.0.0.1:0\"]\nstate_dir = \"state\"\n\n\
         [zone]\norigin = \"example.net.\"\nns = [\"ns1\"]\n\n\
         [zone.soa]\nmname = \"ns1\"\nrname = \"hostmaster\"\nserial = 1\n\n\
         [[zone.record]]\nname = \"ns1\"\ntype = \"A\"\ndata = \"192.0.2.53\"\n\n",
    );
    for i in 0..POPS {
        text.push_str(&format!(
            "[[pop]]\nname = \"p{i:02}\"\nasn = {}\naddresses = [\"198.18.{}.{}\"]\n{}\n",
            65_000 + i,
            i / 256,
            i % 256,
            if i == 0 {
                "route_view = \"p00.routes\"\n"
            } else {
                ""
            }
        ));
    }
    text.push_str(
        "[[geo]]\nname = \"www\"\nttl = 30\n\n\
         [cluster]\nid = \"bench\"\nlisten = \"127.0.0.1:0\"\nseeds = [SEEDS]\n\
         ca = \"ca.pem\"\ncert = \"p00.pem\"\nkey = \"p00.key\"\n",
    );
    std::fs::write(dir.join("sparrow.toml"), text).expect("write config");
    // A client that the full cluster sends elsewhere than p00 (checked by `run`).
    let (v4, _): (Vec<IpNet>, Vec<IpNet>) =
        prefixes.iter().partition(|n| matches!(n, IpNet::V4(_)));
    let clients: Vec<String> = fulltable::sample_addresses(&v4, 64, SEED ^ 9)
        .iter()
        .map(IpAddr::to_string)
        .collect();
    std::fs::write(dir.join("clients.txt"), clients.join("\n")).expect("write clients");
    println!("wrote {} in {:.1?}", dir.display(), started.elapsed());
}

async fn peers(dir: &Path) {
    let ca = std::fs::read_to_string(dir.join("ca.pem")).expect("ca.pem (run `gen` first)");
    let mut nodes = Vec::new();
    let mut seed: Option<std::net::SocketAddr> = None;
    for pop in 1..POPS {
        let name = format!("p{pop:02}");
        let header = kept_header(&dir.join(format!("state/views/{name}.view")));
        let state = sparrow_node::cluster::state::HotState {
            view: Some(sparrow_node::cluster::state::ViewAnnouncement {
                version: header.version,
                digest: header.digest,
                prefixes: header.prefixes,
                stale_since_ms: None,
            }),
            ..sparrow_node::cluster::state::HotState::up()
        };
        let keys = state
            .to_keys()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        let tls = sparrow_node::cluster::tls::ClusterTls::from_pem(
            "bench",
            &ca,
            &std::fs::read_to_string(dir.join(format!("{name}.pem"))).expect("cert"),
            &std::fs::read_to_string(dir.join(format!("{name}.key"))).expect("key"),
        )
        .expect("peer TLS");
        let names: Vec<String> = (0..POPS).map(|p| format!("p{p:02}")).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let node = GossipNode::start_with_keys(
            &name,
            &names,
            tls,
            &seed.into_iter().collect::<Vec<_>>(),
            keys,
            // Slower than a node's 200 ms: 99 stand-ins in one process must leave the
            // machine to the node being measured.
            Duration::from_secs(1),
        )
        .await
        .expect("peer starts");
        seed.get_or_insert(node.addr);
        nodes.push(node);
    }
    loop {
        let live = nodes[0].live().await.len();
        if live == POPS - 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let seed = seed.expect("a peer");
    std::fs::write(dir.join("seed.txt"), seed.to_string()).expect("write seed");
    println!("{} peers alive, seed {seed}; Ctrl-C to stop", POPS - 1);
    let _ = tokio::signal::ctrl_c().await;
    let _ = std::fs::remove_file(dir.join("seed.txt"));
}

/// The header of a kept view (the frame after the preamble), without decoding the routes.
fn kept_header(path: &Path) -> sparrow_proto::views::ViewHeader {
    use std::io::Read as _;
    let mut file = std::fs::File::open(path).expect("kept view");
    let mut head = [0u8; sparrow_proto::frame::PREAMBLE_BYTES + sparrow_proto::frame::LEN_BYTES];
    file.read_exact(&mut head).expect("kept view preamble");
    let len = sparrow_proto::frame::body_len(
        head[sparrow_proto::frame::PREAMBLE_BYTES..]
            .try_into()
            .expect("length prefix"),
        1024,
    )
    .expect("header length");
    let mut body = vec![0; len];
    file.read_exact(&mut body).expect("kept view header");
    match sparrow_proto::frame::decode(&body).expect("header frame") {
        sparrow_proto::views::ViewFrame::Header(h) => h,
        _ => panic!("{} does not start with a header", path.display()),
    }
}

async fn run(dir: &Path) {
    // The node's own log lines (RUST_LOG=info) show where the start-up time goes.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .try_init();
    let seed =
        std::fs::read_to_string(dir.join("seed.txt")).expect("seed.txt: start `peers DIR` first");
    let text = std::fs::read_to_string(dir.join("sparrow.toml"))
        .expect("sparrow.toml")
        .replace("[SEEDS]", &format!("[\"{}\"]", seed.trim()));
    let config: PathBuf = dir.join("sparrow-run.toml");
    std::fs::write(&config, text).expect("write config");
    let clients: Vec<String> = std::fs::read_to_string(dir.join("clients.txt"))
        .expect("clients.txt (run `gen` first)")
        .lines()
        .map(str::to_owned)
        .collect();
    println!("before start: {}", sparrow_cluster_tests::process_memory());
    let t0 = Instant::now();
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let node = TestNode::start_clustered(&config, socket)
        .await
        .expect("node starts");
    let started = t0.elapsed();
    // Ask every client every 20 ms from the start, keeping what came back, until the node
    // sees all its peers alive; the answers it gives then are the correct ones (every POP
    // live, every view held). The cold start ends at the first round in which a client that
    // the full cluster sends elsewhere than p00 got its correct answer: until its peers'
    // heartbeats and views are in, the node answers p00 (its own POP).
    let ask = |client: String| {
        let addr = node.addr;
        async move {
            Ask::new("www.example.net.", RecordType::A)
                .subnet(&format!("{client}/32"))
                .send(addr)
                .await
                .ok()
                .and_then(|r| r.answers.first().map(|a| a.data.to_string()))
        }
    };
    let mut rounds: Vec<(Duration, Vec<Option<String>>)> = Vec::new();
    let mut settled_at = None;
    while t0.elapsed() < Duration::from_secs(120) {
        let at = t0.elapsed();
        let mut answers = Vec::new();
        for c in &clients {
            answers.push(ask(c.clone()).await);
        }
        rounds.push((at, answers));
        let all_alive = node.snapshot.load().mode == Mode::Cluster { alive: POPS };
        match settled_at {
            None if all_alive => settled_at = Some(t0.elapsed()),
            Some(t) if t0.elapsed() > t + Duration::from_secs(2) => break,
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let settled_at = settled_at.expect("the node never saw all its peers alive");
    let (_, last) = rounds.last().expect("rounds").clone();
    let own = "198.18.0.0".to_owned();
    let (index, want) = last
        .iter()
        .enumerate()
        .find_map(|(i, a)| a.clone().filter(|a| *a != own).map(|a| (i, a)))
        .expect("a client that the full cluster sends elsewhere than p00");
    let first_correct = rounds
        .iter()
        .find(|(_, answers)| answers[index].as_deref() == Some(want.as_str()))
        .map(|(at, _)| *at)
        .expect("the correct answer was seen");
    let client = &clients[index];
    let s = node.snapshot.load();
    let views = (0..POPS).filter(|&i| s.view_info(i).is_some()).count();
    let table = s.decision_table(0);
    println!(
        "{POPS} full views: node started in {started:.2?}, all peers alive after {settled_at:.2?}, first correct answer ({client} -> {want}) after {first_correct:.2?}"
    );
    println!(
        "holding {views} views: decision table of {} ranges and {} rows; {}",
        table.ranges(),
        table.row_count(),
        sparrow_cluster_tests::process_memory()
    );
    drop(s);
    let _ = node.stop().await;
}
