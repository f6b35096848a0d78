use proptest::prelude::*;

use super::*;
use crate::topology::{As, Position, Region, Rel, Tier, TopologySpec};

/// A hand-built topology: `(asn, tier)` per AS, then links as (a, b, relation of a to b) by
/// AS number: `Rel::Provider` means b is a's provider.
fn hand(ases: &[(u32, Tier)], links: &[(u32, u32, Rel)]) -> Topology {
    let index = |asn: u32| ases.iter().position(|&(a, _)| a == asn).unwrap() as u32;
    let mut out: Vec<As> = ases
        .iter()
        .map(|&(asn, tier)| As {
            asn,
            tier,
            region: Region::Eu,
            pos: Position {
                lat: 50.0,
                lon: f64::from(asn) / 10.0,
            },
            providers: Vec::new(),
            customers: Vec::new(),
            peers: Vec::new(),
        })
        .collect();
    for &(a, b, rel) in links {
        let (ia, ib) = (index(a), index(b));
        match rel {
            Rel::Provider => {
                out[ia as usize].providers.push(ib);
                out[ib as usize].customers.push(ia);
            }
            Rel::Customer => {
                out[ia as usize].customers.push(ib);
                out[ib as usize].providers.push(ia);
            }
            Rel::Peer => {
                out[ia as usize].peers.push(ib);
                out[ib as usize].peers.push(ia);
            }
        }
    }
    for a in &mut out {
        a.providers.sort_unstable();
        a.customers.sort_unstable();
        a.peers.sort_unstable();
    }
    Topology {
        spec: TopologySpec::new(ases.len(), 0),
        ases: out,
        prefixes: Vec::new(),
    }
}

/// Six ASes. 10 and 90 are tier-1 peers; 30 buys from 10; 40 from 30 and 90; 50 from 40 and
/// 90; 60 buys from 40 and peers with 90. AS numbers are chosen so that the lowest-ASN
/// tie-break would pick the wrong route wherever class or length must decide.
fn six() -> Topology {
    use Rel::{Peer, Provider};
    hand(
        &[
            (10, Tier::One),
            (90, Tier::One),
            (30, Tier::Two),
            (40, Tier::Three),
            (50, Tier::Stub),
            (60, Tier::Stub),
        ],
        &[
            (10, 90, Peer),
            (30, 10, Provider),
            (40, 30, Provider),
            (40, 90, Provider),
            (50, 40, Provider),
            (50, 90, Provider),
            (60, 40, Provider),
            (60, 90, Peer),
        ],
    )
}

#[test]
fn gao_rexford_preferences_on_six_ases() {
    let t = six();
    let idx = |asn| t.index_of(asn).unwrap();
    // (at, destination, class, path by AS number, why)
    let cases: &[(u32, u32, Class, &[u32], &str)] = &[
        (50, 50, Class::Own, &[], "own prefix: empty path"),
        (40, 50, Class::Customer, &[50], "direct customer"),
        (
            10,
            50,
            Class::Customer,
            &[30, 40, 50],
            "customer route over a shorter peer route (90 50)",
        ),
        (
            90,
            50,
            Class::Customer,
            &[50],
            "shortest of two customer routes (40 50 is longer)",
        ),
        (
            60,
            50,
            Class::Peer,
            &[90, 50],
            "peer over provider at equal length, though 40 < 90",
        ),
        (
            90,
            60,
            Class::Customer,
            &[40, 60],
            "customer route over a shorter peer route (60)",
        ),
        (
            50,
            60,
            Class::Provider,
            &[40, 60],
            "shortest provider route (90 40 60 is longer)",
        ),
        (
            40,
            10,
            Class::Provider,
            &[30, 10],
            "equal provider routes (30 10, 90 10): lower next-hop ASN",
        ),
        (
            50,
            10,
            Class::Provider,
            &[90, 10],
            "shortest provider route beats the tie-break winner's longer one",
        ),
        (
            10,
            60,
            Class::Customer,
            &[30, 40, 60],
            "90 learnt 60 over peering too, but exports only its customer route",
        ),
        (30, 60, Class::Customer, &[40, 60], "customer chain"),
        (
            60,
            30,
            Class::Provider,
            &[40, 30],
            "a peer's provider route (90 10 30) is not exported to peers",
        ),
    ];
    for &(at, dest, class, path, why) in cases {
        let r = Routes::compute(&t, idx(dest));
        let (c, hops) = r.route(idx(at)).unwrap();
        let got: Vec<u32> = r
            .path(idx(at))
            .unwrap()
            .iter()
            .map(|&i| t.ases[i as usize].asn)
            .collect();
        assert_eq!(
            (c, got.as_slice()),
            (class, path),
            "at AS{at} to AS{dest}: {why}"
        );
        assert_eq!(usize::from(hops), path.len());
    }
}

#[test]
fn a_peer_route_is_not_exported_to_providers_or_peers() {
    // 1 and 2 peer; 3 is a customer of 1; 4 peers with 3. 4 reaches 1 and 2 only if 3 gives
    // it a peer-learnt route, which valley-free export forbids.
    use Rel::{Peer, Provider};
    let t = hand(
        &[
            (1, Tier::One),
            (2, Tier::One),
            (3, Tier::Two),
            (4, Tier::Two),
        ],
        &[(1, 2, Peer), (3, 1, Provider), (4, 3, Peer)],
    );
    let idx = |asn| t.index_of(asn).unwrap();
    let r = Routes::compute(&t, idx(4));
    assert_eq!(r.route(idx(3)), Some((Class::Peer, 1)));
    assert_eq!(
        r.route(idx(1)),
        None,
        "3 must not export its peer route to 1"
    );
    let r = Routes::compute(&t, idx(2));
    assert_eq!(r.route(idx(3)), Some((Class::Provider, 2)));
    assert_eq!(
        r.route(idx(4)),
        None,
        "3 must not export its provider route to a peer"
    );
}

/// The class a route has when learnt from `next` (the relation of `next` to `at`).
fn learnt_class(t: &Topology, at: u32, next: u32) -> Class {
    match t.rel(at, next) {
        Some(Rel::Customer) => Class::Customer,
        Some(Rel::Peer) => Class::Peer,
        Some(Rel::Provider) => Class::Provider,
        None => panic!("{at} and {next} are not neighbours"),
    }
}

/// Whether `from` exports its route of class `c` to neighbour `to`.
fn exports(t: &Topology, from: u32, c: Class, to: u32) -> bool {
    matches!(c, Class::Own | Class::Customer) || t.rel(from, to) == Some(Rel::Customer)
}

/// Every property the routing must have, for every (AS, destination) pair.
fn check_routing(t: &Topology) {
    let n = t.ases.len() as u32;
    for d in 0..n {
        let r = Routes::compute(t, d);
        for x in 0..n {
            let (class, hops) = r.route(x).unwrap_or_else(|| panic!("{x} cannot reach {d}"));
            let path = r.path(x).unwrap();
            assert_eq!(path.len(), usize::from(hops));
            // Loop-free: no AS twice, never the source.
            let mut seen = std::collections::HashSet::new();
            assert!(
                path.iter().all(|&a| a != x && seen.insert(a)),
                "loop {path:?}"
            );
            if x == d {
                assert_eq!(class, Class::Own);
                continue;
            }
            assert_eq!(*path.last().unwrap(), d);
            // Valley-free: up (to providers)*, at most one peer step, down (to customers)*.
            let mut phase = 0;
            let mut prev = x;
            for &hop in &path {
                let step = match t.rel(prev, hop).unwrap() {
                    Rel::Provider => 0,
                    Rel::Peer => 1,
                    Rel::Customer => 2,
                };
                assert!(
                    step >= phase && !(step == 1 && phase == 1),
                    "valley in {path:?}"
                );
                phase = if step == 1 { 2 } else { step };
                prev = hop;
            }
            // The route is what the next hop exports, and nothing better is on offer.
            let next = path[0];
            assert_eq!(class, learnt_class(t, x, next));
            let (next_class, next_hops) = r.route(next).unwrap();
            assert!(exports(t, next, next_class, x));
            assert_eq!(next_hops + 1, hops);
            let a = &t.ases[x as usize];
            for &y in a.providers.iter().chain(&a.peers).chain(&a.customers) {
                let (yc, yh) = r.route(y).unwrap();
                if !exports(t, y, yc, x) || r.path(y).unwrap().contains(&x) {
                    continue;
                }
                let offer = (learnt_class(t, x, y), yh + 1, t.ases[y as usize].asn);
                let chosen = (class, hops, t.ases[next as usize].asn);
                assert!(
                    chosen <= offer,
                    "at {x} to {d}: chose {chosen:?} over {offer:?}"
                );
            }
        }
    }
}

#[test]
fn six_as_routing_has_every_property() {
    check_routing(&six());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn generated_routing_is_valley_free_loop_free_complete_and_stable(
        seed in any::<u64>(),
        ases in MIN_ASES_FOR_TESTS..150usize,
    ) {
        let t = Topology::generate(TopologySpec::new(ases, seed)).unwrap();
        check_routing(&t);
    }

    #[test]
    fn pop_views_do_not_depend_on_threads(seed in any::<u64>(), threads in 2..5usize) {
        let t = Topology::generate(TopologySpec::new(80, seed)).unwrap();
        let pops = [0, 17, 40, 79];
        let one = PopViews::compute_with_threads(&t, &pops, 1);
        let many = PopViews::compute_with_threads(&t, &pops, threads);
        prop_assert_eq!(&one, &many);
        // And they agree with the per-destination routes.
        for d in 0..80u32 {
            let r = Routes::compute(&t, d);
            for (p, &at) in pops.iter().enumerate() {
                let want: Vec<u32> = r.path(at).unwrap().iter().map(|&i| t.ases[i as usize].asn).collect();
                prop_assert_eq!(one.path(p, d), want.as_slice());
            }
        }
    }
}

const MIN_ASES_FOR_TESTS: usize = crate::topology::MIN_ASES;

#[test]
fn views_in_text_follow_the_node_format() {
    let t = Topology::generate(TopologySpec::new(50, 3)).unwrap();
    let v = PopViews::compute(&t, &[5, 30]);
    let text = v.text(&t, 0, "header line");
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("# header line"));
    assert!(lines.next().unwrap().starts_with("# PREFIX AS_PATH"));
    let body: Vec<&str> = lines.collect();
    assert_eq!(body.len(), t.prefixes.len());
    let own = t.ases[5].asn;
    for (line, &(net, owner)) in body.iter().zip(&t.prefixes) {
        let mut f = line.split(' ');
        assert_eq!(f.next().unwrap(), net.to_string());
        let path: Vec<u32> = f.map(|a| a.parse().unwrap()).collect();
        if owner == 5 {
            assert!(path.is_empty(), "own prefix {line}");
        } else {
            assert_eq!(*path.last().unwrap(), t.ases[owner as usize].asn);
            assert!(!path.contains(&own));
        }
    }
    // Latency is the sum of the link latencies along the path, zero to itself.
    let r = Routes::compute(&t, 33);
    let mut prev = 30;
    let mut sum = 0;
    for hop in r.path(30).unwrap() {
        sum += t.latency_us(prev, hop);
        prev = hop;
    }
    assert_eq!(v.latency_us(1, 33), sum);
    assert_eq!(v.latency_us(1, 30), 0);
}
