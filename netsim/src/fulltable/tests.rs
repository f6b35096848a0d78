use std::collections::{HashMap, HashSet};

use super::*;

/// Small enough for debug-build tests, large enough for shares to be within a percent.
const SPEC: TableSpec = TableSpec {
    v4_prefixes: 60_000,
    v6_prefixes: 20_000,
    seed: 42,
};

fn table() -> Vec<IpNet> {
    prefixes(SPEC)
}

#[test]
fn same_seed_same_table_and_views() {
    let a = table();
    assert_eq!(a, table());
    assert_eq!(pop_view(&a, 1, 7), pop_view(&a, 1, 7));
    let other = prefixes(TableSpec { seed: 43, ..SPEC });
    assert_ne!(a, other);
    assert_ne!(pop_view(&a, 1, 7), pop_view(&a, 1, 8));
}

#[test]
fn families_come_from_independent_streams() {
    let v4_only = prefixes(TableSpec {
        v6_prefixes: 0,
        ..SPEC
    });
    assert_eq!(v4_only[..], table()[..SPEC.v4_prefixes]);
}

#[test]
fn prefixes_are_distinct_and_counted_as_asked() {
    let t = table();
    assert_eq!(
        t.iter().filter(|n| matches!(n, IpNet::V4(_))).count(),
        SPEC.v4_prefixes
    );
    assert_eq!(
        t.iter().filter(|n| matches!(n, IpNet::V6(_))).count(),
        SPEC.v6_prefixes
    );
    assert_eq!(t.iter().collect::<HashSet<_>>().len(), t.len());
}

#[test]
fn prefixes_carry_no_host_bits_and_are_sorted() {
    let t = table();
    for net in &t {
        assert_eq!(net.addr(), net.network(), "{net} has host bits");
    }
    assert!(t.windows(2).all(|w| w[0] < w[1]));
}

#[test]
fn length_mix_is_within_a_percent_of_the_targets() {
    let t = table();
    for (family, mix, count) in [
        (4, V4_LENGTH_MIX, SPEC.v4_prefixes),
        (6, V6_LENGTH_MIX, SPEC.v6_prefixes),
    ] {
        assert_eq!(mix.iter().map(|&(_, ppm)| ppm).sum::<u32>(), 1_000_000);
        let mut by_len: HashMap<u8, usize> = HashMap::new();
        for net in &t {
            let fam = if matches!(net, IpNet::V4(_)) { 4 } else { 6 };
            if fam == family {
                *by_len.entry(net.prefix_len()).or_default() += 1;
            }
        }
        for &(len, ppm) in mix {
            let share = by_len.get(&len).copied().unwrap_or(0) as f64 / count as f64;
            let target = f64::from(ppm) / 1e6;
            assert!(
                (share - target).abs() < 0.01,
                "IPv{family} /{len}: {share:.4} vs target {target:.4}"
            );
        }
        let known: HashSet<u8> = mix.iter().map(|&(len, _)| len).collect();
        assert!(by_len.keys().all(|len| known.contains(len)), "{by_len:?}");
    }
}

#[test]
fn the_main_lengths_match_the_real_table() {
    let share = |len: u8| {
        V4_LENGTH_MIX
            .iter()
            .find(|&&(l, _)| l == len)
            .map_or(0.0, |&(_, ppm)| f64::from(ppm) / 1e4)
    };
    assert_eq!(
        [share(24), share(23), share(22), share(21), share(20)],
        [60.0, 8.0, 9.0, 6.0, 5.0]
    );
    assert!(
        V4_LENGTH_MIX
            .iter()
            .all(|&(len, _)| (8..=24).contains(&len))
    );
    assert!(V6_LENGTH_MIX.iter().all(|&(len, _)| len <= 48));
}

#[test]
fn only_routable_space_is_used() {
    for net in table() {
        match net {
            IpNet::V4(n) => {
                let first = n.network().octets()[0];
                assert!(
                    (1..224).contains(&first) && first != 10 && first != 127,
                    "{n}"
                );
                for reserved in [
                    "100.64.0.0/10",
                    "172.16.0.0/12",
                    "192.168.0.0/16",
                    "198.18.0.0/15",
                ] {
                    let r: Ipv4Net = reserved.parse().unwrap();
                    assert!(!r.contains(&n) && !n.contains(&r), "{n} overlaps {r}");
                }
            }
            IpNet::V6(n) => {
                let global: Ipv6Net = "2000::/3".parse().unwrap();
                let doc: Ipv6Net = "2001:db8::/32".parse().unwrap();
                assert!(global.contains(&n), "{n}");
                assert!(!doc.contains(&n) && !n.contains(&doc), "{n}");
            }
        }
    }
}

#[test]
fn about_half_the_table_is_more_specifics() {
    let t = table();
    let set: HashSet<IpNet> = t.iter().copied().collect();
    for v4 in [true, false] {
        let family: Vec<&IpNet> = t
            .iter()
            .filter(|n| matches!(n, IpNet::V4(_)) == v4)
            .collect();
        let nested = family
            .iter()
            .filter(|net| {
                (0..net.prefix_len())
                    .any(|len| set.contains(&IpNet::new(net.addr(), len).unwrap().trunc()))
            })
            .count();
        let share = nested as f64 / family.len() as f64;
        assert!((0.3..0.7).contains(&share), "v4={v4}: {share:.3} nested");
    }
}

#[test]
fn view_text_lines_are_a_prefix_and_an_as_path() {
    let t = table();
    let text = pop_view(&t, 2, 9);
    let mut lines = 0;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let mut fields = line.split(' ');
        let net: IpNet = fields.next().unwrap().parse().unwrap();
        assert_eq!(net, t[lines]);
        let path: Vec<u32> = fields.map(|f| f.parse().unwrap()).collect();
        assert!((1..=9).contains(&path.len()), "{line}");
        lines += 1;
    }
    assert_eq!(lines, t.len());
    assert_eq!(
        pop_view_entries(&t[..3], 2, 9)
            .iter()
            .map(|(net, path)| {
                let path: Vec<String> = path.iter().map(u32::to_string).collect();
                format!("{net} {}", path.join(" "))
            })
            .collect::<Vec<_>>(),
        text.lines().skip(2).take(3).collect::<Vec<_>>()
    );
}

#[test]
fn path_lengths_look_real_and_are_correlated_between_pops() {
    let t = table();
    let views: Vec<Vec<(IpNet, Vec<u32>)>> =
        (0..3).map(|pop| pop_view_entries(&t, pop, 5)).collect();
    for view in &views {
        let mean = view.iter().map(|(_, p)| p.len()).sum::<usize>() as f64 / view.len() as f64;
        assert!((3.8..4.6).contains(&mean), "mean path length {mean}");
        for (_, path) in view {
            let distinct: HashSet<&u32> = path.iter().collect();
            assert_eq!(distinct.len(), path.len(), "loop in {path:?}");
        }
    }
    let (mut same_origin, mut close, mut differ) = (0, 0, 0);
    for ((_, a), (_, b)) in views[0].iter().zip(&views[1]) {
        same_origin += usize::from(a.last() == b.last());
        close += usize::from(a.len().abs_diff(b.len()) <= 2);
        differ += usize::from(a.len() != b.len());
    }
    assert_eq!(same_origin, t.len(), "the origin AS belongs to the prefix");
    assert!(
        close as f64 > 0.9 * t.len() as f64,
        "{close} of {} within 2 hops",
        t.len()
    );
    assert!(differ as f64 > 0.3 * t.len() as f64, "only {differ} differ");
}

#[test]
fn sampled_addresses_are_routed_and_unrouted_ones_are_not() {
    let t = prefixes(TableSpec {
        v4_prefixes: 3_000,
        v6_prefixes: 1_000,
        seed: 1,
    });
    let covered = |addr: &IpAddr| t.iter().any(|net| net.contains(addr));
    let routed = sample_addresses(&t, 500, 3);
    assert_eq!(routed.len(), 500);
    assert!(routed.iter().all(covered));
    assert!(routed.iter().any(IpAddr::is_ipv6));
    let unrouted = unrouted_addresses(500, 3);
    assert!(!unrouted.iter().any(covered));
    assert_eq!(unrouted.iter().filter(|a| a.is_ipv4()).count(), 250);
    assert!(sample_addresses(&[], 5, 3).is_empty());
}

#[test]
fn full_spec_is_todays_table() {
    let spec = TableSpec::full(11);
    assert_eq!(
        (spec.v4_prefixes, spec.v6_prefixes, spec.seed),
        (1_040_000, 250_000, 11)
    );
}
