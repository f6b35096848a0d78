//! Sparrow's longest-prefix-match table beside `ip_network_table` (a tree bitmap) on the same
//! full table: build time, memory and lookup time.
//!
//! ```sh
//! cargo bench -p sparrow-cluster-tests --bench lpm
//! ```
//!
//! Both hold one POP's full view (`netsim::fulltable`: 1,000,000 IPv4 + 250,000 IPv6
//! prefixes, seed 2026 or `SPARROW_SEED`) with the AS hops of each prefix as the value, which
//! is what a node keeps of a view. Lookups cycle through 4,096 addresses drawn from the
//! routed prefixes. Sparrow's lookup also returns the range of addresses sharing the answer
//! (the ECS scope needs it), which a tree bitmap does not give.

use std::hint::black_box;
use std::net::IpAddr;
use std::time::Instant;

use criterion::Criterion;
use ip_network::IpNetwork;
use ip_network_table::IpNetworkTable;
use ipnet::IpNet;
use sparrow_netsim::fulltable::{self, TableSpec};
use sparrow_node::routes::HopRanges;

fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
        .unwrap_or(0)
}

fn main() {
    let seed: u64 = sparrow_cluster_tests::env_or("SPARROW_SEED", 2026);
    let smoke = !std::env::args().any(|a| a == "--bench");
    let (v4, v6) = if smoke {
        (20_000, 5_000)
    } else {
        (1_000_000, fulltable::FULL_V6)
    };
    let prefixes = fulltable::prefixes(TableSpec {
        v4_prefixes: v4,
        v6_prefixes: v6,
        seed,
    });
    let routes: Vec<(IpNet, u8)> = fulltable::pop_view_entries(&prefixes, 0, seed)
        .into_iter()
        .map(|(net, path)| (net, u8::try_from(path.len()).unwrap_or(u8::MAX)))
        .collect();
    let (v4p, v6p): (Vec<IpNet>, Vec<IpNet>) =
        prefixes.iter().partition(|n| matches!(n, IpNet::V4(_)));
    let mut clients = fulltable::sample_addresses(&v4p, 2048, seed ^ 4);
    clients.extend(fulltable::sample_addresses(&v6p, 2048, seed ^ 6));
    drop((prefixes, v4p, v6p));
    // Hand the generator's freed memory back, so the RSS deltas below count each table.
    sparrow_node::memory::release_free();
    println!("{v4} IPv4 + {v6} IPv6 prefixes, seed {seed}");

    let before = rss_kb();
    let started = Instant::now();
    let ours = HopRanges::new(routes.iter().copied());
    let took = started.elapsed();
    sparrow_node::memory::release_free();
    println!(
        "sparrow HopRanges: built in {took:.2?}, {} ranges, RSS +{} MB",
        ours.ranges(),
        rss_kb().saturating_sub(before) / 1024
    );
    let before = rss_kb();
    let started = Instant::now();
    let mut theirs = IpNetworkTable::new();
    for (net, hops) in &routes {
        let network = IpNetwork::new(net.network(), net.prefix_len()).expect("valid prefix");
        theirs.insert(network, *hops);
    }
    let took = started.elapsed();
    sparrow_node::memory::release_free();
    println!(
        "ip_network_table: built in {took:.2?}, RSS +{} MB",
        rss_kb().saturating_sub(before) / 1024
    );
    // Both answer alike.
    for &a in &clients {
        assert_eq!(
            ours.hops(a),
            theirs.longest_match(a).map(|(_, h)| *h),
            "{a}"
        );
    }
    drop(routes);

    let mut c = Criterion::default().configure_from_args();
    let mut i = 0usize;
    let mut next = || {
        i = (i + 1) & 4095;
        clients[i]
    };
    c.bench_function("lpm/sparrow_hop_ranges", |b| {
        b.iter(|| black_box(ours.hops(black_box(next()))));
    });
    let mut j = 0usize;
    let mut next2 = || -> IpAddr {
        j = (j + 1) & 4095;
        clients[j]
    };
    c.bench_function("lpm/ip_network_table", |b| {
        b.iter(|| black_box(theirs.longest_match(black_box(next2())).map(|(_, h)| *h)));
    });
    c.final_summary();
}
