//! A node of a 100-POP cluster starting cold with every POP's full view: time to the first
//! correct answer, and the whole process's memory once it holds them all.
//!
//! ```sh
//! cargo bench -p sparrow-cluster-tests --bench coldstart -- gen DIR   # writes the files
//! cargo bench -p sparrow-cluster-tests --bench coldstart -- run DIR   # a fresh process
//! ```
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
use sparrow_cluster_tests::{Ask, TestNode, TestPki};
use sparrow_netsim::fulltable::{self, TableSpec};
use sparrow_node::routes::{RouteView, transfer};

const POPS: usize = 100;
const SEED: u64 = 2026;

fn rss() -> String {
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

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    match (args.first().map(String::as_str), args.get(1)) {
        (Some("gen"), Some(dir)) => generate(Path::new(dir)),
        (Some("run"), Some(dir)) => run(Path::new(dir)).await,
        // Under `cargo test --benches`: nothing to do without a folder.
        _ => eprintln!("usage: coldstart (gen DIR | run DIR)"),
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
    let cert = pki.node("p00");
    std::fs::write(dir.join("ca.pem"), &pki.ca.cert).expect("write CA");
    std::fs::write(dir.join("p00.pem"), &cert.cert).expect("write cert");
    std::fs::write(dir.join("p00.key"), &cert.key).expect("write key");
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
         [cluster]\nid = \"bench\"\nlisten = \"127.0.0.1:0\"\nseeds = []\nquorum = 1\n\
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

async fn run(dir: &Path) {
    let config: PathBuf = dir.join("sparrow.toml");
    let clients: Vec<String> = std::fs::read_to_string(dir.join("clients.txt"))
        .expect("clients.txt (run `gen` first)")
        .lines()
        .map(str::to_owned)
        .collect();
    println!("before start: {}", rss());
    let t0 = Instant::now();
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let node = TestNode::start_clustered(&config, socket)
        .await
        .expect("node starts");
    let started = t0.elapsed();
    // The first client (in file order) whose settled answer is another POP than p00: the node
    // answers p00 for everyone until it has the other views.
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
    let mut first_correct = None;
    let snap = node.snapshot.load_full();
    let expect: Vec<(String, String)> = clients
        .iter()
        .filter_map(|c| {
            let routed = snap.route(0, c.parse().ok()?);
            let pop = *routed.ranking.order.first()?;
            (pop != 0).then(|| (c.clone(), format!("198.18.{}.{}", pop / 256, pop % 256)))
        })
        .collect();
    drop(snap);
    let (client, want) = expect
        .first()
        .cloned()
        .expect("a client served by another POP");
    while t0.elapsed() < Duration::from_secs(120) {
        if ask(client.clone()).await.as_deref() == Some(want.as_str()) {
            first_correct = Some(t0.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let first_correct = first_correct.expect("no correct answer within 120 s");
    let s = node.snapshot.load();
    let views = (0..POPS).filter(|&i| s.view_info(i).is_some()).count();
    let table = s.decision_table(0);
    println!(
        "{POPS} full views: node started in {started:.2?}, first correct answer ({client} -> {want}) after {first_correct:.2?}"
    );
    println!(
        "holding {views} views: decision table of {} ranges and {} rows; {}",
        table.ranges(),
        table.row_count(),
        rss()
    );
    drop(s);
    let _ = node.stop().await;
}
