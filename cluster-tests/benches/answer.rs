//! Answer selection at full-table scale: three POPs, each with a route view of a million IPv4
//! prefixes and today's IPv6 table, loaded through the real config path.
//!
//! The state is built the way the daemon builds it (config text -> `Config::from_str` with
//! the route views read through a `FileSource` -> `Snapshot::from_config`), so the numbers
//! include everything a query pays for and nothing a test double would skip. The views come
//! from `sparrow-netsim`'s seeded full-table generator; the seed is printed and can be set
//! with `SPARROW_SEED`, so a surprising number can be reproduced.
//!
//! Client addresses are precomputed, 4096 per case, and cycled through so that the lookups
//! touch different parts of the tables instead of one hot cache line.
//!
//! A second group, `services_100_pops`, answers from a hundred POPs with services (issue
//! #10): `www` on the POPs' own addresses, `api` with its own address targets per POP, a
//! steered HTTPS record and its probe down at a quarter of the POPs (drained at a tenth),
//! and `cdn` with a CNAME per POP. Its views go in as a node takes in its peers' pulled
//! views (`Tables::with_pulled`, hops only), from the same generated full table;
//! `SPARROW_ANSWER_POPS` sets how many POPs (0 skips the group).
//!
//! Run with `cargo bench -p sparrow-cluster-tests --bench answer`. Without `--bench` (under
//! `cargo test --benches`) it runs each case once on a small table, as a smoke test.

use std::cell::RefCell;
use std::collections::HashMap;
use std::hint::black_box;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::Criterion;
use hickory_proto::rr::{LowerName, Name, RecordType};
use ipnet::IpNet;
use sparrow_cluster_tests::scale::{Pulled, pops_config_text, pulled};
use sparrow_netsim::fulltable::{self, TableSpec};
use sparrow_node::cluster::state::ServiceStatus;
use sparrow_node::config::{Config, FileSource};
use sparrow_node::dns::answer::{self, Client};
use sparrow_node::snapshot::Snapshot;

const CONFIG: &str = include_str!("../../deploy/examples/single-node/sparrow.toml");
const ZONE: &str = include_str!("../../deploy/examples/single-node/example.net.zone");
const STATIC_MAP: &str = include_str!("../../deploy/examples/single-node/ssrs.routes");
/// Where the config pretends to live; the files it names are served from memory.
const ORIGIN: &str = "/bench/sparrow.toml";
/// The route views the example config names, in the order of its POPs.
const VIEWS: [&str; 3] = ["ams", "nyc", "syd"];
/// The geo name of the example config.
const QNAME: &str = "www.example.net.";
/// Default seed of the generated table; a fixed one keeps runs comparable.
const DEFAULT_SEED: u64 = 2026;
/// Client addresses per case (a power of two, cycled through with a mask).
const ADDRESSES: usize = 4096;
/// Client addresses of the `cached` case: few enough that their lookups stay in cache.
const CACHED: usize = 16;
/// The table of a benchmark run: a million IPv4 prefixes per view (about today's full
/// table) and the IPv6 table of today.
const BENCH_TABLE: (usize, usize) = (1_000_000, fulltable::FULL_V6);
/// The table of a smoke run under `cargo test`, small enough for a debug build.
const SMOKE_TABLE: (usize, usize) = (20_000, 5_000);
/// POPs of the `services_100_pops` group, unless `SPARROW_ANSWER_POPS` says otherwise.
const SERVICE_POPS: usize = 100;
/// The table of that group's smoke run: a hundred views in a debug build.
const SERVICE_SMOKE_TABLE: (usize, usize) = (2_000, 500);

/// The files of the config, served once each from memory (taken out, not copied, so that
/// the generated texts are freed as soon as they are parsed, as on a real load).
struct Files(RefCell<HashMap<PathBuf, String>>);

impl FileSource for Files {
    fn read(&self, path: &Path, _max: u64) -> io::Result<String> {
        self.0.borrow_mut().remove(path).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("{} not served", path.display()),
            )
        })
    }
}

/// The loaded state and the client addresses to query it with.
struct Fixture {
    snapshot: Snapshot,
    geo: usize,
    qname: LowerName,
    v4_hits: Vec<IpAddr>,
    v6_hits: Vec<IpAddr>,
    misses: Vec<IpAddr>,
}

impl Fixture {
    /// Generates the table and the three views, loads them, and prints what it cost.
    fn build(seed: u64, (v4, v6): (usize, usize)) -> Self {
        let spec = TableSpec {
            v4_prefixes: v4,
            v6_prefixes: v6,
            seed,
        };
        println!("table: {v4} IPv4 + {v6} IPv6 prefixes per view, seed {seed}");
        let started = Instant::now();
        let prefixes = fulltable::prefixes(spec);
        println!("generate prefixes: {:.2?}", started.elapsed());

        let started = Instant::now();
        let mut files = HashMap::new();
        let mut text_bytes = 0;
        for (pop, name) in (0u32..).zip(VIEWS) {
            let text = fulltable::pop_view(&prefixes, pop, seed);
            text_bytes += text.len();
            files.insert(PathBuf::from(format!("/bench/views/{name}.routes")), text);
        }
        files.insert(PathBuf::from("/bench/example.net.zone"), ZONE.to_owned());
        files.insert(PathBuf::from("/bench/ssrs.routes"), STATIC_MAP.to_owned());
        println!(
            "render 3 views: {:.2?} ({:.1} MB of text)",
            started.elapsed(),
            text_bytes as f64 / 1e6
        );

        let (v4_prefixes, v6_prefixes): (Vec<IpNet>, Vec<IpNet>) =
            prefixes.iter().partition(|net| matches!(net, IpNet::V4(_)));
        let v4_hits = fulltable::sample_addresses(&v4_prefixes, ADDRESSES, seed ^ 4);
        let v6_hits = fulltable::sample_addresses(&v6_prefixes, ADDRESSES, seed ^ 6);
        let misses: Vec<IpAddr> = fulltable::unrouted_addresses(2 * ADDRESSES, seed)
            .into_iter()
            .filter(IpAddr::is_ipv4)
            .collect();
        drop((prefixes, v4_prefixes, v6_prefixes));
        println!(
            "memory before load: {}",
            sparrow_cluster_tests::process_memory()
        );

        let files = Files(RefCell::new(files));
        let started = Instant::now();
        let loaded = Config::from_str(CONFIG, Path::new(ORIGIN), &files).expect("config loads");
        println!(
            "load config with 3 views (Config::from_str): {:.2?}",
            started.elapsed()
        );
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        for pop in &loaded.config.pops {
            let view = pop.route_view.as_deref().expect("every POP has a view");
            println!(
                "view {}: {} prefixes, {} ranges",
                pop.name,
                view.len(),
                view.ranges()
            );
        }
        // The cases mean what their names say: hits have a route in every view, misses none.
        for pop in &loaded.config.pops {
            let view = pop.route_view.as_deref().expect("every POP has a view");
            assert!(
                v4_hits
                    .iter()
                    .chain(&v6_hits)
                    .all(|&a| view.lookup(a).entry.is_some())
            );
            assert!(misses.iter().all(|&a| view.lookup(a).entry.is_none()));
        }
        let started = Instant::now();
        let snapshot = Snapshot::from_config(loaded.config);
        println!("Snapshot::from_config: {:.2?}", started.elapsed());
        println!(
            "memory after load: {}",
            sparrow_cluster_tests::process_memory()
        );

        let qname = LowerName::from(Name::from_ascii(QNAME).expect("valid name"));
        let geo = snapshot.geo_index(&qname).expect("www is a geo name");
        Self {
            snapshot,
            geo,
            qname,
            v4_hits,
            v6_hits,
            misses,
        }
    }
}

/// The ECS subnet a resolver would send for `addr`: /24 for IPv4, /56 for IPv6 (RFC 7871's
/// recommended source prefix lengths).
fn ecs_subnet(addr: IpAddr) -> IpNet {
    let len = if addr.is_ipv4() { 24 } else { 56 };
    IpNet::new(addr, len).expect("valid length").trunc()
}

fn bench_route(c: &mut Criterion, f: &Fixture) {
    let mut group = c.benchmark_group("route");
    for (name, addrs) in [
        ("v4_hit", &f.v4_hits),
        ("v6_hit", &f.v6_hits),
        ("v4_no_route", &f.misses),
    ] {
        assert_eq!(addrs.len(), ADDRESSES);
        group.bench_function(name, |b| {
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) & (ADDRESSES - 1);
                black_box(f.snapshot.route(f.geo, black_box(addrs[i])))
            });
        });
    }
    // The same lookups with the tables' touched lines in cache: the gap to `v4_hit` is what
    // memory latency costs at full-table size.
    group.bench_function("v4_hit_cached", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) & (CACHED - 1);
            black_box(f.snapshot.route(f.geo, black_box(f.v4_hits[i])))
        });
    });
    group.finish();
}

fn bench_plan(c: &mut Criterion, f: &Fixture) {
    let resolver: IpAddr = "192.0.2.1".parse().expect("valid address");
    let with_ecs = |addrs: &[IpAddr]| -> Vec<Client> {
        addrs
            .iter()
            .map(|&a| Client {
                resolver,
                subnet: Some(ecs_subnet(a)),
            })
            .collect()
    };
    let cases = [
        ("a_ecs_v4", with_ecs(&f.v4_hits)),
        ("a_ecs_v6", with_ecs(&f.v6_hits)),
        ("a_ecs_no_route", with_ecs(&f.misses)),
        (
            "a_resolver_v4",
            f.v4_hits
                .iter()
                .map(|&a| Client {
                    resolver: a,
                    subnet: None,
                })
                .collect(),
        ),
    ];
    let mut group = c.benchmark_group("plan");
    for (name, clients) in &cases {
        group.bench_function(*name, |b| {
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) & (ADDRESSES - 1);
                black_box(answer::plan(
                    &f.snapshot,
                    &f.qname,
                    RecordType::A,
                    black_box(clients[i]),
                ))
            });
        });
    }
    group.finish();
}

/// The 100-POP config with services: POP `pNN` answers `www` with 198.18.x.y, `api` with
/// its own target 198.19.x.y (and a steered HTTPS record), `cdn` with `pNN.cdn.example.com.`.
fn services_config(pops: usize) -> Config {
    let mut text = pops_config_text(pops);
    text.push_str("[[geo]]\nname = \"www\"\nttl = 30\n\n");
    text.push_str(
        "[[geo]]\nname = \"api\"\nttl = 30\nanswers = 1\nhttps = { alpn = [\"h2\", \"h3\"] }\n\n",
    );
    for i in 0..pops {
        text.push_str(&format!(
            "[[geo.target]]\npop = \"p{i:02}\"\naddresses = [\"198.19.{}.{}\"]\n\n",
            i / 256,
            i % 256
        ));
    }
    text.push_str("[[geo]]\nname = \"cdn\"\nttl = 30\n\n");
    for i in 0..pops {
        text.push_str(&format!(
            "[[geo.target]]\npop = \"p{i:02}\"\ncname = \"p{i:02}.cdn.example.com.\"\n\n"
        ));
    }
    Config::from_str(
        &text,
        Path::new(ORIGIN),
        &Files(RefCell::new(HashMap::new())),
    )
    .expect("services config loads")
    .config
}

/// A node of a `pops`-POP cluster with every view in, and `api` down at every fourth POP
/// and drained at every tenth (the own POP, p00, stays up).
fn services_snapshot(pops: usize, seed: u64, (v4, v6): (usize, usize)) -> (Snapshot, Vec<IpAddr>) {
    let prefixes = fulltable::prefixes(TableSpec {
        v4_prefixes: v4,
        v6_prefixes: v6,
        seed,
    });
    let (v4_prefixes, _): (Vec<IpNet>, Vec<IpNet>) =
        prefixes.iter().partition(|n| matches!(n, IpNet::V4(_)));
    let clients = fulltable::sample_addresses(&v4_prefixes, ADDRESSES, seed ^ 4);
    drop(v4_prefixes);
    let started = Instant::now();
    let mut snap = Snapshot::from_config(services_config(pops));
    let api = 1;
    let services = (0..pops)
        .map(|pop| ServiceStatus {
            down: if pop > 0 && pop % 4 == 0 {
                vec![api]
            } else {
                Vec::new()
            },
            drained: if pop > 0 && pop % 10 == 0 {
                vec![api]
            } else {
                Vec::new()
            },
        })
        .collect();
    snap = snap.with_services(services);
    let mut batch = Vec::new();
    for pop in 0..pops {
        let Pulled { hops, info, .. } = pulled(&prefixes, pop, seed);
        batch.push((pop, Arc::new(hops), info));
        // Four at a time, as the node's pulls arrive.
        if batch.len() == 4 || pop + 1 == pops {
            snap = snap.with_tables(snap.tables().with_pulled(&snap.config, &batch));
            batch.clear();
        }
    }
    sparrow_node::memory::release_free();
    println!(
        "{pops} POPs with services, {v4} IPv4 + {v6} IPv6 prefixes per view, taken in: {:.2?}; {}",
        started.elapsed(),
        sparrow_cluster_tests::process_memory()
    );
    (snap, clients)
}

fn bench_services(c: &mut Criterion, pops: usize, snap: &Snapshot, clients: &[IpAddr]) {
    let name = |n: &str| LowerName::from(Name::from_ascii(n).expect("valid name"));
    let (www, api, cdn) = (
        name("www.example.net."),
        name("api.example.net."),
        name("cdn.example.net."),
    );
    let geo = |n: &LowerName| snap.geo_index(n).expect("a geo name");
    let resolver: IpAddr = "192.0.2.1".parse().expect("valid address");
    let ecs: Vec<Client> = clients
        .iter()
        .map(|&a| Client {
            resolver,
            subnet: Some(ecs_subnet(a)),
        })
        .collect();
    assert_eq!(ecs.len(), ADDRESSES);
    // Each plan case answers what its name says: one record of the right type.
    for (qname, rtype, want) in [
        (&www, RecordType::A, RecordType::A),
        (&api, RecordType::A, RecordType::A),
        (&api, RecordType::HTTPS, RecordType::HTTPS),
        (&cdn, RecordType::A, RecordType::CNAME),
    ] {
        let plan = answer::plan(snap, qname, rtype, ecs[0]);
        let types: Vec<RecordType> = plan.answers.iter().map(|r| r.record_type()).collect();
        assert_eq!(types, [want], "{qname} {rtype}");
    }
    let mut group = c.benchmark_group(format!("services_{pops}_pops"));
    for (case, g) in [
        ("route_first/www_v4", geo(&www)),
        ("route_first/api_v4", geo(&api)),
    ] {
        group.bench_function(case, |b| {
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) & (ADDRESSES - 1);
                black_box(snap.route_first(g, black_box(clients[i]), 1, RecordType::A))
            });
        });
    }
    for (case, qname, rtype) in [
        ("plan/www_a_ecs_v4", &www, RecordType::A),
        ("plan/api_a_ecs_v4", &api, RecordType::A),
        ("plan/api_https_ecs_v4", &api, RecordType::HTTPS),
        ("plan/cdn_a_ecs_v4", &cdn, RecordType::A),
    ] {
        group.bench_function(case, |b| {
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) & (ADDRESSES - 1);
                black_box(answer::plan(snap, qname, rtype, black_box(ecs[i])))
            });
        });
    }
    group.finish();
}

fn main() {
    // Cargo passes `--bench` under `cargo bench` only; under `cargo test` (or `cargo bench
    // -- --test`) criterion runs each case once, and a small table keeps that quick.
    let args: Vec<String> = std::env::args().collect();
    let bench = args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--test");
    let seed = sparrow_cluster_tests::env_or("SPARROW_SEED", DEFAULT_SEED);
    let fixture = Fixture::build(seed, if bench { BENCH_TABLE } else { SMOKE_TABLE });
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    bench_route(&mut c, &fixture);
    bench_plan(&mut c, &fixture);
    drop(fixture);
    let pops = sparrow_cluster_tests::env_or("SPARROW_ANSWER_POPS", SERVICE_POPS);
    if pops > 0 {
        let table = if bench {
            BENCH_TABLE
        } else {
            SERVICE_SMOKE_TABLE
        };
        let (snap, clients) = services_snapshot(pops, seed, table);
        // The cases mean what they say: api's answers avoid the POPs where it is down or
        // drained, and cdn answers a CNAME.
        let api = snap
            .geo_index(&LowerName::from(
                Name::from_ascii("api.example.net.").expect("name"),
            ))
            .expect("api");
        for &a in &clients[..64] {
            let first = snap.route_first(api, a, 1, RecordType::A).ranking.order[0];
            assert!(
                first == 0 || (first % 4 != 0 && first % 10 != 0),
                "api at p{first:02}"
            );
        }
        bench_services(&mut c, pops, &snap, &clients);
    }
    c.final_summary();
}
