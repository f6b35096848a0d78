//! A node holding a hundred POPs' full route views: memory, the cost of taking in views
//! pulled from peers, and answer selection across all hundred.
//!
//! ```sh
//! cargo bench -p sparrow-cluster-tests --bench scale            # 100 POPs, full tables
//! SPARROW_SCALE_POPS=20 cargo bench -p sparrow-cluster-tests --bench scale
//! ```
//!
//! Each POP's view is `netsim::fulltable`'s seeded full table (1,000,000 IPv4 and 250,000
//! IPv6 prefixes, paths correlated between POPs but jittered per prefix and POP, so nearly
//! every prefix has its own row of hops: the worst case for the decision table's row
//! interning). Views go through the real path of a pulled view: the owner's encoding
//! (`routes::transfer::encode`), the receiver's checks (`ViewDecoder`), then
//! `Snapshot::with_pulled` in batches of [`BATCH`] as the node's pull loop applies them. The
//! seed is printed and `SPARROW_SEED` sets it.

use std::hint::black_box;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use criterion::Criterion;
use hickory_proto::rr::RecordType;
use ipnet::IpNet;
use sparrow_cluster_tests::scale::{Pulled, pops_config_text, pulled};
use sparrow_netsim::fulltable::{self, TableSpec};
use sparrow_node::config::{Config, FileSource};
use sparrow_node::snapshot::Snapshot;

/// Views applied per pass, as the pull loop sees them arrive (at most 4 pulls run at once).
const BATCH: usize = 4;

struct NoFiles;

impl FileSource for NoFiles {
    fn read(&self, path: &Path, _max: u64) -> std::io::Result<String> {
        Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{} not part of the bench", path.display()),
        ))
    }
}

fn config(pops: usize) -> Config {
    let text = pops_config_text(pops) + "[[geo]]\nname = \"www\"\nttl = 30\n";
    Config::from_str(&text, Path::new("/bench/sparrow.toml"), &NoFiles)
        .expect("bench config loads")
        .config
}

fn main() {
    let pops: usize = sparrow_cluster_tests::env_or("SPARROW_SCALE_POPS", 100);
    let seed: u64 = sparrow_cluster_tests::env_or("SPARROW_SEED", 2026);
    let smoke = !std::env::args().any(|a| a == "--bench");
    let (v4, v6) = if smoke {
        (20_000, 5_000)
    } else {
        (1_000_000, fulltable::FULL_V6)
    };
    println!("{pops} POPs, {v4} IPv4 + {v6} IPv6 prefixes per view, seed {seed}");
    let prefixes = fulltable::prefixes(TableSpec {
        v4_prefixes: v4,
        v6_prefixes: v6,
        seed,
    });
    let (v4_prefixes, _): (Vec<IpNet>, Vec<IpNet>) =
        prefixes.iter().partition(|n| matches!(n, IpNet::V4(_)));
    let clients: Vec<IpAddr> = fulltable::sample_addresses(&v4_prefixes, 4096, seed ^ 4);
    drop(v4_prefixes);
    let mut snap = Snapshot::from_config(config(pops));
    println!("empty node: {}", sparrow_cluster_tests::process_memory());

    let mut decode_secs = 0.0;
    let mut merge_secs = 0.0;
    let mut wire = 0;
    let mut batch = Vec::new();
    for pop in 0..pops {
        let Pulled {
            hops,
            info,
            decode_secs: took,
            bytes,
        } = pulled(&prefixes, pop, seed);
        decode_secs += took;
        wire += bytes;
        batch.push((pop, Arc::new(hops), info));
        if batch.len() == BATCH || pop + 1 == pops {
            let started = Instant::now();
            snap = snap.with_tables(snap.tables().with_pulled(&snap.config, &batch));
            merge_secs += started.elapsed().as_secs_f64();
            batch.clear();
        }
    }
    // The node hands freed memory back after every rebuild on its view builder thread
    // (`state::builder`); so does the bench.
    sparrow_node::memory::release_free();
    let table = snap.decision_table(0);
    println!(
        "{pops} views taken in: decode+check {decode_secs:.2} s, merge into the decision table {merge_secs:.2} s ({} passes of {BATCH}); {:.1} MB on the wire per view",
        pops.div_ceil(BATCH),
        wire as f64 / pops as f64 / 1e6
    );
    println!(
        "decision table: {} ranges, {} distinct rows of {} bytes",
        table.ranges(),
        table.row_count(),
        pops + 2
    );
    println!(
        "node with {pops} views: {}",
        sparrow_cluster_tests::process_memory()
    );
    // One more view replaced, as when a peer's view changes.
    let Pulled { hops, info, .. } = pulled(&prefixes, 1000, seed);
    let started = Instant::now();
    snap = snap.with_tables(
        snap.tables()
            .with_pulled(&snap.config, &[(1, Arc::new(hops), info)]),
    );
    let took = started.elapsed().as_secs_f64();
    sparrow_node::memory::release_free();
    println!(
        "one changed view merged in {took:.2} s; {}",
        sparrow_cluster_tests::process_memory()
    );

    // How many POPs tie at the fewest hops for these clients: the answer path computes a
    // rendezvous score only for those.
    let tied: usize = clients
        .iter()
        .map(|&a| {
            let (row, _) = snap.decision_table(0).lookup(a);
            let hops = &row.hop_bytes()[..pops];
            let best = hops.iter().min().copied().unwrap_or(u8::MAX);
            hops.iter().filter(|&&h| h == best).count()
        })
        .sum();
    println!(
        "POPs tied at the fewest hops, mean over {} clients: {:.1}",
        clients.len(),
        tied as f64 / clients.len() as f64
    );
    let mut c = Criterion::default().configure_from_args();
    let mut i = 0usize;
    c.bench_function(&format!("route_first/{pops}_pops_v4"), |b| {
        b.iter(|| {
            i = (i + 1) & 4095;
            black_box(snap.route_first(0, clients[i], 1, RecordType::A))
        });
    });
    // The lookup alone (decision table: range index, then the row), to split the cost.
    c.bench_function(&format!("lookup/{pops}_pops_v4"), |b| {
        b.iter(|| {
            i = (i + 1) & 4095;
            let (row, hit) = snap.decision_table(0).lookup(clients[i]);
            black_box((row.hop_bytes()[pops - 1], hit))
        });
    });
    c.bench_function(&format!("route_full_ranking/{pops}_pops_v4"), |b| {
        b.iter(|| {
            i = (i + 1) & 4095;
            black_box(snap.route(0, clients[i]))
        });
    });
    c.final_summary();
}
