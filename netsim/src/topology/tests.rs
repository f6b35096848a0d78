use std::collections::HashSet;

use super::*;

fn topo(ases: usize, seed: u64) -> Topology {
    Topology::generate(TopologySpec::new(ases, seed)).unwrap()
}

#[test]
fn same_seed_same_topology_other_seed_other_topology() {
    assert_eq!(topo(200, 5), topo(200, 5));
    assert_ne!(topo(200, 5), topo(200, 6));
    assert_eq!(topo(200, 5).to_text(), topo(200, 5).to_text());
}

#[test]
fn sizes_out_of_range_are_refused() {
    assert_eq!(
        Topology::generate(TopologySpec::new(MIN_ASES - 1, 1)),
        Err(SpecError::Size(MIN_ASES - 1))
    );
    assert_eq!(
        Topology::generate(TopologySpec::new(MAX_ASES + 1, 1)),
        Err(SpecError::Size(MAX_ASES + 1))
    );
    let few = TopologySpec {
        v4_prefixes: 10,
        ..TopologySpec::new(50, 1)
    };
    assert_eq!(
        Topology::generate(few),
        Err(SpecError::V4 { v4: 10, ases: 50 })
    );
}

/// The relations are consistent: each link appears once, seen from both ends.
fn check_links(t: &Topology) {
    let mut pairs = HashSet::new();
    for (i, a) in t.ases.iter().enumerate() {
        let i = i as u32;
        for &p in &a.providers {
            assert!(t.ases[p as usize].customers.contains(&i));
            assert!(pairs.insert((i.min(p), i.max(p))), "link {i}-{p} twice");
        }
        for &q in a.peers.iter().filter(|&&q| q > i) {
            assert!(t.ases[q as usize].peers.contains(&i));
            assert!(pairs.insert((i, q)), "link {i}-{q} twice");
        }
        for &c in &a.customers {
            assert!(t.ases[c as usize].providers.contains(&i));
        }
        assert!(!a.peers.contains(&i) && !a.providers.contains(&i));
    }
    assert_eq!(pairs.len(), t.link_count());
}

#[test]
fn hierarchy_is_a_tier1_clique_with_providers_always_higher() {
    for (n, seed) in [(MIN_ASES, 1), (60, 2), (1500, 3)] {
        let t = topo(n, seed);
        check_links(&t);
        let t1: Vec<u32> = (0..n as u32)
            .filter(|&i| t.ases[i as usize].tier == Tier::One)
            .collect();
        assert!(t1.len() >= 4);
        for &a in &t1 {
            assert!(t.ases[a as usize].providers.is_empty());
            for &b in &t1 {
                assert!(
                    a == b || t.rel(a, b) == Some(Rel::Peer),
                    "tier-1 {a} and {b}"
                );
            }
        }
        for a in &t.ases {
            if a.tier != Tier::One {
                assert!(!a.providers.is_empty(), "AS{} has no provider", a.asn);
            }
            for &p in &a.providers {
                assert!(t.ases[p as usize].tier < a.tier, "provider not higher");
            }
            if a.tier == Tier::Stub {
                assert!(a.customers.is_empty());
            }
        }
        let asns: HashSet<u32> = t.ases.iter().map(|a| a.asn).collect();
        assert_eq!(asns.len(), n);
        assert!(!asns.contains(&23_456));
    }
}

#[test]
fn shape_is_realistic_at_a_few_thousand_ases() {
    let t = topo(3000, 11);
    let stubs: Vec<&As> = t.ases.iter().filter(|a| a.tier == Tier::Stub).collect();
    let share = stubs.len() as f64 / t.ases.len() as f64;
    assert!((0.8..0.9).contains(&share), "stub share {share}");
    let multihomed = stubs.iter().filter(|a| a.providers.len() >= 2).count() as f64;
    let mh = multihomed / stubs.len() as f64;
    assert!((0.5..0.7).contains(&mh), "multihomed stubs {mh}");
    // Preferential attachment: the best-connected transit has far more customers than the
    // median one.
    let mut customers: Vec<usize> = t
        .ases
        .iter()
        .filter(|a| a.tier != Tier::Stub)
        .map(|a| a.customers.len())
        .collect();
    customers.sort_unstable();
    let median = customers[customers.len() / 2].max(1);
    assert!(
        customers[customers.len() - 1] > 10 * median,
        "{customers:?}"
    );
    // Links per AS: the real graph has about 2.5 to 6 depending on how peering is counted.
    let per_as = t.link_count() as f64 / t.ases.len() as f64;
    assert!((1.5..6.0).contains(&per_as), "links per AS {per_as}");
    // Every region has ASes.
    for r in Region::ALL {
        assert!(t.ases.iter().any(|a| a.region == r), "{r}");
    }
}

#[test]
fn prefixes_are_sorted_distinct_and_every_as_has_ipv4() {
    let t = topo(400, 9);
    assert_eq!(t.prefixes.len(), t.spec.v4_prefixes + t.spec.v6_prefixes);
    let nets: Vec<IpNet> = t.prefixes.iter().map(|&(n, _)| n).collect();
    let distinct: HashSet<&IpNet> = nets.iter().collect();
    assert_eq!(distinct.len(), nets.len());
    let v4_end = nets.iter().position(|n| matches!(n, IpNet::V6(_))).unwrap();
    assert!(nets[..v4_end].is_sorted_by_key(|n| (n.network(), n.prefix_len())));
    assert!(nets[v4_end..].is_sorted_by_key(|n| (n.network(), n.prefix_len())));
    let by_as = t.prefixes_by_as();
    for (i, p) in by_as.iter().enumerate() {
        assert!(
            p.iter().any(|n| matches!(n, IpNet::V4(_))),
            "AS index {i} has no IPv4 prefix"
        );
    }
    // Transit networks all originate IPv6; some stubs do not.
    for (a, p) in t.ases.iter().zip(&by_as) {
        if a.tier != Tier::Stub {
            assert!(p.iter().any(|n| matches!(n, IpNet::V6(_))), "AS{}", a.asn);
        }
    }
    let stubs_v6 = t
        .ases
        .iter()
        .zip(&by_as)
        .filter(|(a, p)| a.tier == Tier::Stub && p.iter().any(|n| matches!(n, IpNet::V6(_))))
        .count();
    assert!(stubs_v6 > 0 && stubs_v6 < t.ases.len());
    // The length mix is fulltable's: about 60% of IPv4 prefixes are /24.
    let slash24 = nets[..v4_end]
        .iter()
        .filter(|n| n.prefix_len() == 24)
        .count();
    let share = slash24 as f64 / v4_end as f64;
    assert!((0.55..0.65).contains(&share), "/24 share {share}");
}

#[test]
fn counts_per_as_are_heavy_tailed() {
    let t = topo(2000, 4);
    let mut counts: Vec<usize> = t.prefixes_by_as().iter().map(Vec::len).collect();
    counts.sort_unstable();
    let median = counts[counts.len() / 2];
    let top = counts[counts.len() - 1];
    assert!(median <= 8, "median {median}");
    assert!(top >= 20 * median, "top {top}, median {median}");
}

#[test]
fn latency_follows_distance() {
    let fra = Region::Eu.hub();
    let nyc = Region::NaEast.hub();
    let syd = Region::Oc.hub();
    // Frankfurt-New York is about 6,200 km: some 46 ms one way through real cables.
    let d = fra.distance_km(nyc);
    assert!((6000.0..6400.0).contains(&d), "{d}");
    let l = link_latency_us(fra, nyc);
    assert!((44_000..50_000).contains(&l), "{l}");
    assert!(link_latency_us(fra, syd) > l);
    assert_eq!(link_latency_us(fra, fra), PER_HOP_US);
}

#[test]
fn host_addresses_lie_inside_the_as_prefixes() {
    let t = topo(100, 3);
    let by_as = t.prefixes_by_as();
    for i in 0..t.ases.len() as u32 {
        let addrs = t.host_addresses(i);
        assert!(!addrs.is_empty());
        for a in addrs {
            assert!(by_as[i as usize].iter().any(|n| n.contains(&a)), "{a}");
        }
    }
}
