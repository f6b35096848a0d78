use super::*;
use crate::folder::Sim;
use crate::pops::PopRequest;

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

#[test]
fn free_block_skips_more_specifics() {
    // (prefix, more-specifics, expected client subnet)
    let cases: &[(&str, &[&str], Option<&str>)] = &[
        ("10.0.0.0/16", &[], Some("10.0.0.0/24")),
        ("10.0.0.0/24", &[], Some("10.0.0.0/24")),
        ("10.0.0.0/16", &["10.0.0.0/24"], Some("10.0.1.0/24")),
        (
            "10.0.0.0/16",
            &["10.0.0.0/23", "10.0.1.0/24", "10.0.2.0/24"],
            Some("10.0.3.0/24"),
        ),
        ("10.0.0.0/16", &["10.0.0.0/17", "10.0.128.0/17"], None),
        ("10.0.0.0/23", &["10.0.0.0/24", "10.0.1.0/24"], None),
        ("10.0.0.0/22", &["10.0.1.0/24"], Some("10.0.0.0/24")),
        ("2001:db8::/32", &["2001:db8::/48"], Some("2001:db8:1::/48")),
        ("2001:db8::/48", &[], Some("2001:db8::/48")),
        ("255.255.255.0/24", &[], Some("255.255.255.0/24")),
        (
            "255.255.0.0/16",
            &["255.255.0.0/17", "255.255.128.0/17"],
            None,
        ),
    ];
    for &(p, ms, want) in cases {
        let got = free_block(net(p), ms.iter().map(|m| net(m)));
        assert_eq!(got, want.map(net), "{p} minus {ms:?}");
    }
}

fn sim() -> Sim {
    Sim::generate(120, 8, &PopRequest::auto(4)).unwrap()
}

#[test]
fn truth_matches_the_views() {
    let s = sim();
    let t = &s.truth;
    assert_eq!(t.pops, ["fra", "nyc", "sjc", "sin"]);
    assert_eq!(t.entries.len() + t.covered, s.topology.prefixes.len());
    for e in &t.entries {
        assert!(e.prefix.contains(&e.client));
        // Other prefixes that overlap the client subnet are shorter (it is decided by this
        // prefix or, if none, by a covering one).
        for &(n, _) in &s.topology.prefixes {
            if n != e.prefix && n.contains(&e.client.network()) {
                assert!(
                    n.prefix_len() < e.prefix.prefix_len(),
                    "{n} overlaps {}",
                    e.client
                );
            }
        }
        let origin = s.topology.index_of(e.origin).unwrap();
        let hops: Vec<usize> = (0..4).map(|p| s.views.hops(p, origin)).collect();
        let min = *hops.iter().min().unwrap();
        assert_eq!(e.hops, min);
        let want: Vec<usize> = (0..4).filter(|&p| hops[p] == min).collect();
        assert_eq!(e.by_hops, want);
        let lat: Vec<u32> = (0..4).map(|p| s.views.latency_us(p, origin)).collect();
        assert_eq!(e.latency_us, *lat.iter().min().unwrap());
        assert!(e.by_latency.iter().all(|&p| lat[p] == e.latency_us));
        let pos = s.topology.ases[origin as usize].pos;
        let dist = |p: usize| {
            s.topology.ases[s.pops[p].as_index as usize]
                .pos
                .distance_km(pos)
        };
        assert!((0..4).all(|p| dist(e.by_geo) <= dist(p)));
    }
    // A POP's own prefixes are 0 hops from it and from no one else.
    let own = s.pops[2].asn;
    let e = t.entries.iter().find(|e| e.origin == own).unwrap();
    assert_eq!(
        (e.hops, e.by_hops.as_slice(), e.latency_us),
        (0, &[2][..], 0)
    );
}

#[test]
fn text_round_trips_and_bad_lines_are_skipped_with_their_numbers() {
    let t = sim().truth;
    let text = t.to_text("a header");
    let (back, skipped) = Truth::parse(&text).unwrap();
    assert!(skipped.is_empty());
    assert_eq!(back, t);
    let broken = text.replacen(&t.entries[0].prefix.to_string(), "not-a-prefix", 1)
        + "1.2.3.0/24 1.2.3.0/24 65000 2 mars 10 fra fra\n";
    let (back, skipped) = Truth::parse(&broken).unwrap();
    assert_eq!(back.entries.len(), t.entries.len() - 1);
    let lines: Vec<usize> = skipped.iter().map(|s| s.line).collect();
    let first = text
        .lines()
        .position(|l| l.starts_with(&t.entries[0].prefix.to_string()))
        .unwrap()
        + 1;
    assert_eq!(lines, [first, text.lines().count() + 1]);
    assert!(
        skipped[1].reason.contains("`mars`"),
        "{}",
        skipped[1].reason
    );
    assert!(Truth::parse("1.2.3.0/24 1.2.3.0/24 1 1 a 1 a a").is_err());
}

#[test]
fn scores_count_right_answers_and_baselines_differ() {
    let t = sim().truth;
    let clients: Vec<IpNet> = t.entries.iter().map(|e| e.client).collect();
    let perfect: Vec<(IpNet, usize)> = t.entries.iter().map(|e| (e.prefix, e.by_hops[0])).collect();
    let s = t.score(perfect);
    assert_eq!(
        (s.answers, s.right_by_hops, s.unknown),
        (clients.len(), clients.len(), 0)
    );
    assert_eq!(s.share_by_hops(), 1.0);
    let lat: Vec<(IpNet, usize)> = t
        .entries
        .iter()
        .map(|e| (e.client, e.by_latency[0]))
        .collect();
    assert_eq!(t.score(lat).share_by_latency(), 1.0);
    // Round robin spreads queries evenly, so it is right about as often as the tied sets
    // are large: well below 1 with 4 POPs.
    let rr = t.score(t.round_robin(&clients));
    assert!(rr.share_by_hops() < 0.8, "{rr}");
    let rr_answers = t.round_robin(&clients);
    assert_eq!(rr_answers[5].1, 1);
    let geo = t.score(t.geoip(&clients));
    assert_eq!(geo.answers, clients.len());
    let unknown = t.score([(net("192.0.2.0/24"), 0)]);
    assert_eq!(
        (unknown.answers, unknown.unknown, unknown.right_by_hops),
        (1, 1, 0)
    );
    assert_eq!(Score::default().share_by_hops(), 0.0);
}

#[test]
fn the_oracle_sends_a_client_to_the_nearest_usable_pops() {
    let all = [true; 4];
    let hops = [Some(3), Some(2), Some(2), Some(4)];
    // Fewest hops among usable POPs; a tie is a set.
    assert_eq!(expected(&hops, &all, 0), [1, 2]);
    // A service down at 1 and 2: the next POP by hops, whatever the node.
    let down = [true, false, false, true];
    assert_eq!(expected(&hops, &down, 1), [0]);
    // Nothing usable: fail open, every POP is treated as usable.
    assert_eq!(expected(&hops, &[false; 4], 0), [1, 2]);
    // Routed POPs before unrouted ones, even when farther.
    assert_eq!(
        expected(&[None, Some(9), None, None], &all, 0),
        [1],
        "a route beats the node's own POP"
    );
    // No route at all (a query without ECS): the node's own POP, else any usable POP.
    let none = [None; 4];
    assert_eq!(expected(&none, &all, 2), [2]);
    assert_eq!(expected(&none, &[true, true, false, true], 2), [0, 1, 3]);
}

#[test]
fn a_client_keeps_its_pop_while_the_oracle_allows_it() {
    // Its no-fault POP is still allowed: only it.
    assert!(owed(2, Some(2), &[1, 2]));
    assert!(!owed(1, Some(2), &[1, 2]), "a tie is no licence to move");
    // Its POP is gone: any allowed POP, nothing else.
    assert!(owed(1, Some(3), &[1, 2]) && owed(2, Some(3), &[1, 2]));
    assert!(!owed(3, Some(3), &[1, 2]) && !owed(0, Some(3), &[1, 2]));
    // Without a no-fault answer: any allowed POP.
    assert!(owed(1, None, &[1]) && !owed(0, None, &[1]));
}
