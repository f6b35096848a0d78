//! The UDP fast path allocates nothing for geo and static names that exist once a worker's
//! buffers have grown: every query below is answered first to warm the worker, then
//! answered again while an allocator counts the calling thread's allocations.

use std::cell::Cell;
use std::net::IpAddr;
use std::path::Path;

use sparrow_node::dns::fast::Worker;
use sparrow_node::snapshot::Snapshot;

mod common;

use common::ALLOCATIONS;

/// A query for `name`/`qtype` with EDNS (payload 1232) and `ecs` (option data) if given.
fn query(name: &str, qtype: u16, ecs: Option<&[u8]>) -> Vec<u8> {
    let mut m = vec![0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1];
    for label in name.split('.').filter(|l| !l.is_empty()) {
        m.push(label.len() as u8);
        m.extend(label.as_bytes());
    }
    m.push(0);
    m.extend(qtype.to_be_bytes());
    m.extend([0, 1, 0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0]);
    let ecs = ecs.map(|data| {
        let mut o = vec![0, 8];
        o.extend((data.len() as u16).to_be_bytes());
        o.extend(data);
        o
    });
    let options = ecs.unwrap_or_default();
    m.extend((options.len() as u16).to_be_bytes());
    m.extend(options);
    m
}

#[test]
fn answering_geo_and_static_names_allocates_nothing_over_udp_or_tcp() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples/single-node/sparrow.toml");
    let config = sparrow_node::config::load(&path).unwrap().config;
    let snap = Snapshot::from_config(config);
    let (a, aaaa, mx) = (1, 28, 15);
    let queries = [
        // Geo, with ECS (each POP's clients, a v6 client) and without.
        query("www.example.net.", a, Some(&[0, 1, 24, 0, 100, 64, 1])),
        query("www.example.net.", a, Some(&[0, 1, 24, 0, 100, 64, 2])),
        query("www.example.net.", aaaa, Some(&[0, 1, 24, 0, 100, 64, 3])),
        query(
            "www.example.net.",
            aaaa,
            Some(&[0, 2, 48, 0, 0x20, 0x01, 0x0d, 0xb8, 0xff, 0x02]),
        ),
        query("www.example.net.", a, None),
        // A CNAME into the geo name.
        query("api.example.net.", a, Some(&[0, 1, 24, 0, 100, 64, 2])),
        // Static names, NODATA, NXDOMAIN, out of the zone.
        query("mail.example.net.", a, None),
        query("example.net.", mx, None),
        query("mail.example.net.", mx, None),
        query("nothing.example.net.", a, None),
        query("www.example.org.", a, None),
        // In mixed case: the answer path, not the precomputed table.
        query("WWW.example.net.", a, Some(&[0, 1, 24, 0, 100, 64, 2])),
        query("Mail.Example.Net.", a, None),
    ];
    let resolver: IpAddr = "192.0.2.200".parse().unwrap();
    let mut worker = Worker::default();
    for q in &queries {
        assert!(
            worker.respond(&snap, q, resolver, None).is_some(),
            "fast path"
        );
    }
    let before = ALLOCATIONS.with(Cell::get);
    let (mut bytes, mut precomputed) = (0, 0);
    for _ in 0..100 {
        for q in &queries {
            // INVARIANT: taken above, and over TCP too.
            let answered = worker.respond(&snap, q, resolver, None).unwrap();
            bytes += worker.response().len();
            precomputed += usize::from(answered.precomputed);
            let answered = worker.respond_tcp(&snap, q, resolver, None).unwrap();
            bytes += worker.response().len();
            precomputed += usize::from(answered.precomputed);
        }
    }
    let allocations = ALLOCATIONS.with(Cell::get) - before;
    assert!(bytes > 0);
    // Both the precomputed table and the answer path were measured.
    assert!(
        precomputed > 0 && precomputed < 200 * queries.len(),
        "{precomputed}"
    );
    assert_eq!(
        allocations, 0,
        "allocations over 2,600 answers, UDP and TCP"
    );
}

#[test]
fn answering_in_zones_with_delegations_and_wildcards_allocates_only_to_refer_and_synthesize() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples/multi-zone/sparrow.toml");
    let config = sparrow_node::config::load(&path).unwrap().config;
    let snap = Snapshot::from_config(config);
    let (a, ns, mx) = (1, 2, 15);
    let queries = [
        // A geo name in the second zone, which has a delegation.
        query("cdn.example.org.", a, Some(&[0, 1, 24, 0, 100, 64, 3])),
        // Additional addresses, a referral with glue, a wildcard, a name below it.
        query("example.org.", mx, None),
        query("example.org.", ns, None),
        query("x.sub.example.org.", a, None),
        query("foo.apps.example.org.", a, None),
        query("a.b.apps.example.org.", a, None),
        query("nothing.example.org.", a, None),
        // The first zone.
        query("www.example.net.", a, Some(&[0, 1, 24, 0, 100, 64, 2])),
        query("example.net.", mx, None),
    ];
    let resolver: IpAddr = "192.0.2.200".parse().unwrap();
    let mut worker = Worker::default();
    for q in &queries {
        assert!(
            worker.respond(&snap, q, resolver, None).is_some(),
            "fast path"
        );
    }
    // Per query, so that a failure names the query.
    let allocations: Vec<u64> = queries
        .iter()
        .map(|q| {
            let before = ALLOCATIONS.with(Cell::get);
            for _ in 0..100 {
                // INVARIANT: taken above.
                worker.respond(&snap, q, resolver, None).unwrap();
            }
            ALLOCATIONS.with(Cell::get) - before
        })
        .collect();
    // Names that exist allocate nothing, with cuts and wildcards in the zone too. A
    // referral builds the cut's name (one allocation), a name that does not exist in a zone
    // with wildcards builds its closest encloser and the wildcard below it (one or two).
    assert_eq!(
        allocations,
        [0, 0, 0, 100, 100, 200, 100, 0, 0],
        "allocations over 100 answers to each query"
    );
}
