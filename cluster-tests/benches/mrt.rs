//! One POP's full view (1,000,000 IPv4 + 250,000 IPv6 prefixes) built from an MRT RIB dump:
//! `routes::mrt::load` from the dump's bytes to a `RouteView`, plain and gzip.
//!
//! The dump is what `sparrow-netsim` writes with `bgpkit-parser`'s encoder: a
//! PEER_INDEX_TABLE and one RIB record per prefix. Two layouts: one peer (a router's own
//! table dump), and the same POP among four peers (a collector; the other peers' entries are
//! skipped unparsed). The seed is printed and can be set with `SPARROW_SEED`.
//!
//! Run with `cargo bench -p sparrow-node --bench mrt`. Without `--bench` (under
//! `cargo test --benches`) it runs each case once on a small table, as a smoke test.

use std::hint::black_box;
use std::io::Write as _;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use criterion::Criterion;
use sparrow_netsim::fulltable::{self, TableSpec};
use sparrow_netsim::mrt::{MrtPeer, rib_dump};
use sparrow_node::routes::mrt::{self, PeerSelector};

const DEFAULT_SEED: u64 = 2026;
const BENCH_TABLE: (usize, usize) = (1_000_000, fulltable::FULL_V6);
const SMOKE_TABLE: (usize, usize) = (20_000, 5_000);
const OWN_ASN: u32 = 64501;

fn peer(n: u8) -> MrtPeer {
    MrtPeer {
        ip: Ipv4Addr::new(192, 0, 2, n).into(),
        asn: 64500 + u32::from(n),
        bgp_id: Ipv4Addr::new(192, 0, 2, n),
    }
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let seed = sparrow_cluster_tests::env_or("SPARROW_SEED", DEFAULT_SEED);
    let (v4, v6) = if bench { BENCH_TABLE } else { SMOKE_TABLE };
    let started = Instant::now();
    let prefixes = fulltable::prefixes(TableSpec {
        v4_prefixes: v4,
        v6_prefixes: v6,
        seed,
    });
    let views: Vec<Vec<_>> = (0..4)
        .map(|pop| fulltable::pop_view_entries(&prefixes, pop, seed))
        .collect();
    let one = rib_dump(&[(peer(1), &views[0])], 1_795_000_000);
    let four = rib_dump(
        &[
            (peer(1), &views[0]),
            (peer(2), &views[1]),
            (peer(3), &views[2]),
            (peer(4), &views[3]),
        ],
        1_795_000_000,
    );
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&one).expect("gzip");
    let gz = gz.finish().expect("gzip");
    eprintln!(
        "seed {seed}: {} prefixes; dumps: one peer {:.1} MB ({:.1} MB gzip), four peers {:.1} MB; generated in {:.1?}",
        prefixes.len(),
        one.len() as f64 / 1e6,
        gz.len() as f64 / 1e6,
        four.len() as f64 / 1e6,
        started.elapsed()
    );
    let selector = PeerSelector {
        ip: Some(peer(1).ip),
        asn: None,
    };
    let check = mrt::load(&one, &selector, OWN_ASN).expect("load");
    assert_eq!(check.view.len(), prefixes.len());
    assert!(check.skipped.is_empty());
    drop(check);

    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(15))
        .configure_from_args();
    let mut group = c.benchmark_group("mrt_full_view");
    for (name, bytes) in [
        ("one_peer", &one),
        ("one_peer_gzip", &gz),
        ("four_peers", &four),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| black_box(mrt::load(bytes, &selector, OWN_ASN).expect("load")));
        });
    }
    group.finish();
    c.final_summary();
}
