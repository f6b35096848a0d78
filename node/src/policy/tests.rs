//! Table tests of the answer policy: one case per rule and tie-break.
//!
//! A case is a line of text: candidates `NAME:HOPS[:FLAG...]` (HOPS `-` = no route; flags
//! `drained`, `down`, `unhealthy`, `pref=N`, `w=N`, `load=X`, `g=N` the failover group) and
//! settings `own=NAME`, `static=NAME`, `client=N` (the client hash), `max=N` (the hop
//! limit). The result renders as the ranked names, the winner's reason,
//! and `failed-open` when it applies.

use super::*;

const NAMES: [&str; 6] = ["ams", "nyc", "syd", "fra", "sin", "gru"];

fn pop_index(name: &str) -> usize {
    NAMES
        .iter()
        .position(|n| *n == name)
        .unwrap_or_else(|| panic!("unknown POP {name} in test"))
}

/// The hop limit a case sets (`max=N`), if any.
fn max_hops(case: &str) -> Option<u8> {
    case.split_whitespace()
        .find_map(|t| t.strip_prefix("max="))
        .map(|v| v.parse().unwrap())
}

fn parse(case: &str) -> (Vec<Candidate>, usize, Option<usize>, u64) {
    let mut candidates = Vec::new();
    let (mut own, mut stat, mut client) = (0, None, 0);
    for token in case.split_whitespace() {
        if token.starts_with("max=") {
            continue;
        } else if let Some(v) = token.strip_prefix("own=") {
            own = pop_index(v);
        } else if let Some(v) = token.strip_prefix("static=") {
            stat = Some(pop_index(v));
        } else if let Some(v) = token.strip_prefix("client=") {
            client = v.parse().unwrap();
        } else {
            let mut parts = token.split(':');
            let name = parts.next().unwrap();
            let hops = parts.next().unwrap();
            let mut c = Candidate {
                pop: pop_index(name),
                name_hash: stable_hash(name.as_bytes()),
                hops: (hops != "-").then(|| hops.parse().unwrap()),
                admin: AdminState::Active,
                live: true,
                healthy: true,
                preference: 100,
                weight: 100,
                load: None,
                group: 0,
                canary: 0,
            };
            for flag in parts {
                match flag {
                    "drained" => c.admin = AdminState::Drained,
                    "down" => c.live = false,
                    "unhealthy" => c.healthy = false,
                    f if f.starts_with("pref=") => c.preference = f[5..].parse().unwrap(),
                    f if f.starts_with("w=") => c.weight = f[2..].parse().unwrap(),
                    f if f.starts_with("load=") => c.load = Some(f[5..].parse().unwrap()),
                    f if f.starts_with("g=") => c.group = f[2..].parse().unwrap(),
                    f if f.starts_with("canary=") => {
                        let share: f64 = f[7..].parse().unwrap();
                        c.canary = (share * f64::from(u32::MAX)) as u32;
                    }
                    f => panic!("unknown flag {f}"),
                }
            }
            candidates.push(c);
        }
    }
    (candidates, own, stat, client)
}

/// The candidates' hops as a decision-table row.
fn row(candidates: &[Candidate]) -> Vec<u8> {
    candidates
        .iter()
        .map(|c| c.hops.unwrap_or(NO_ROUTE))
        .collect()
}

fn run(case: &str) -> String {
    let (candidates, own_pop, static_pop, client_hash) = parse(case);
    let input = PolicyInput {
        candidates: &candidates,
        own_pop,
        static_pop,
        client_hash,
        high_water: 0.9,
        max_hops: max_hops(case),
    };
    let e = explain(&input);
    // `rank` and `explain` must never disagree.
    assert_eq!(
        rank(&input),
        e.ranking,
        "rank and explain disagree on {case}"
    );
    let prepared = Prepared::new(&candidates, own_pop, 0.9, max_hops(case), |_| true);
    for k in 1..=candidates.len() {
        let want = &e.ranking.order[..k.min(e.ranking.order.len())];
        assert_eq!(
            rank_first(&input, k, |_| true).order,
            want,
            "rank_first disagrees on {case}"
        );
        let fast = prepared.rank_first(&row(&candidates), static_pop, client_hash, k);
        assert_eq!(fast.order, want, "Prepared::rank_first disagrees on {case}");
    }
    let order: Vec<&str> = e.ranking.order.iter().map(|&i| NAMES[i]).collect();
    let mut out = format!("{} | {:?}", order.join(" "), e.reason);
    if e.ranking.failed_open {
        out.push_str(" | failed-open");
    }
    out
}

#[track_caller]
fn check(case: &str, want: &str) {
    assert_eq!(run(case), want, "case: {case}");
}

#[test]
fn fewest_hops_wins() {
    check(
        "ams:3 nyc:1 syd:5",
        "nyc ams syd | Some(FewerHops { winner: 1, runner_up: 3 })",
    );
    check(
        "ams:0 nyc:1",
        "ams nyc | Some(FewerHops { winner: 0, runner_up: 1 })",
    );
}

#[test]
fn static_map_beats_hops_while_its_pop_is_eligible() {
    check(
        "ams:1 nyc:3 syd:4 static=syd",
        "syd ams nyc | Some(StaticMap)",
    );
    check(
        "ams:1 nyc:- syd:- static=nyc",
        "nyc ams syd | Some(StaticMap)",
    );
    for flag in ["drained", "down", "unhealthy"] {
        check(
            &format!("ams:1 nyc:3 syd:4:{flag} static=syd"),
            "ams nyc | Some(FewerHops { winner: 1, runner_up: 3 })",
        );
    }
}

#[test]
fn a_pop_with_a_route_beats_pops_without() {
    check("ams:- nyc:9 syd:- own=ams", "nyc ams syd | Some(OnlyRoute)");
}

#[test]
fn no_route_anywhere_means_own_pop() {
    check("ams:- nyc:- syd:- own=nyc", "nyc ams syd | Some(OwnPop)");
    check("ams:- nyc:- syd:- own=syd", "syd ams nyc | Some(OwnPop)");
}

#[test]
fn no_route_and_own_pop_ineligible_falls_to_preference() {
    check(
        "ams:-:drained nyc:-:pref=50 syd:- own=ams",
        "nyc syd | Some(Preference { winner: 50, runner_up: 100 })",
    );
}

#[test]
fn own_pop_does_not_break_ties_between_routed_pops() {
    // Equally near with a route: preference decides, not being the own POP.
    check(
        "ams:2:pref=200 nyc:2 own=ams",
        "nyc ams | Some(Preference { winner: 100, runner_up: 200 })",
    );
}

#[test]
fn equal_hops_then_lower_preference() {
    check(
        "ams:2:pref=20 nyc:2:pref=10 syd:4",
        "nyc ams syd | Some(Preference { winner: 10, runner_up: 20 })",
    );
}

#[test]
fn equal_hops_and_preference_then_client_hash() {
    let winners: std::collections::BTreeSet<String> = (0..64)
        .map(|client| run(&format!("ams:2 nyc:2 syd:4 client={client}")))
        .collect();
    // Both equal POPs win for some clients; the farther POP stays last; the reason is the hash.
    assert_eq!(
        winners.into_iter().collect::<Vec<_>>(),
        [
            "ams nyc syd | Some(ClientHash)",
            "nyc ams syd | Some(ClientHash)"
        ]
    );
}

#[test]
fn the_same_client_always_gets_the_same_pop() {
    for client in 0..100 {
        let case = format!("ams:2 nyc:2 syd:2 fra:2 client={client}");
        assert_eq!(run(&case), run(&case));
    }
}

/// Share of 20,000 clients that each POP wins among equals.
fn shares(case: &str) -> Vec<(String, f64)> {
    let mut wins = std::collections::BTreeMap::<String, usize>::new();
    let n = 20_000u64;
    for i in 0..n {
        let client = stable_hash(&i.to_le_bytes());
        let out = run(&format!("{case} client={client}"));
        *wins
            .entry(out.split(' ').next().unwrap().to_owned())
            .or_default() += 1;
    }
    wins.into_iter()
        .map(|(k, v)| (k, v as f64 / n as f64))
        .collect()
}

#[test]
fn equal_pops_share_clients_in_proportion_to_weight() {
    for (name, share) in shares("ams:2 nyc:2 syd:2") {
        assert!((share - 1.0 / 3.0).abs() < 0.02, "{name} got {share}");
    }
    let s = shares("ams:2:w=300 nyc:2:w=100");
    assert!((s[0].1 - 0.75).abs() < 0.02, "{s:?}");
}

#[test]
fn removing_a_pop_moves_only_its_own_clients() {
    for i in 0..2_000u64 {
        let client = stable_hash(&i.to_le_bytes());
        let before = run(&format!("ams:2 nyc:2 syd:2 client={client}"));
        let after = run(&format!("ams:2 nyc:2 syd:2:down client={client}"));
        let (b, a) = (before.split(' ').next(), after.split(' ').next());
        if b != Some("syd") {
            assert_eq!(b, a, "client {client} moved though its POP stayed");
        }
    }
}

#[test]
fn ineligible_pops_are_never_ranked() {
    check(
        "ams:1:drained nyc:2:down syd:3:unhealthy fra:4",
        "fra | Some(OnlyCandidate)",
    );
    check(
        "ams:1:drained nyc:2 syd:3",
        "nyc syd | Some(FewerHops { winner: 2, runner_up: 3 })",
    );
}

#[test]
fn all_ineligible_fails_open_by_the_usual_rules() {
    check(
        "ams:3:drained nyc:1:down syd:2:unhealthy static=ams",
        "nyc syd ams | Some(FewerHops { winner: 1, runner_up: 2 }) | failed-open",
    );
}

#[test]
fn no_candidates_gives_an_empty_ranking() {
    check("", " | None");
}

#[test]
fn single_candidate() {
    check("syd:-", "syd | Some(OnlyCandidate)");
}

#[test]
fn explain_reports_every_candidate_with_its_exclusions() {
    let (candidates, own_pop, static_pop, client_hash) = parse("ams:1:drained:down nyc:2");
    let e = explain(&PolicyInput {
        candidates: &candidates,
        own_pop,
        static_pop,
        client_hash,
        high_water: 0.9,
        max_hops: None,
    });
    assert_eq!(e.verdicts.len(), 2);
    assert_eq!(
        e.verdicts[0].excluded,
        [Exclusion::Drained, Exclusion::Down]
    );
    assert_eq!(e.verdicts[0].rank, None);
    assert_eq!(e.verdicts[1].excluded, []);
    assert_eq!(e.verdicts[1].rank, Some(0));
}

/// Every combination of states, hops and settings over three POPs: the ranking is a
/// permutation of the eligible POPs, sorted by the documented key.
#[test]
fn exhaustive_small_space_respects_the_key() {
    let hops = ["-", "1", "2"];
    let flags = ["", ":drained", ":down", ":pref=50"];
    let mut cases = 0;
    for h in 0..27 {
        for f in 0..64 {
            for own in ["ams", "nyc"] {
                for stat in ["", "static=syd", "static=ams"] {
                    let pops: Vec<String> = ["ams", "nyc", "syd"]
                        .iter()
                        .enumerate()
                        .map(|(i, n)| {
                            let hop = hops[(h / 3usize.pow(i as u32)) % 3];
                            let flag = flags[(f / 4usize.pow(i as u32)) % 4];
                            format!("{n}:{hop}{flag}")
                        })
                        .collect();
                    let case = format!("{} own={own} {stat} client=42", pops.join(" "));
                    check_invariants(&case);
                    cases += 1;
                }
            }
        }
    }
    assert_eq!(cases, 27 * 64 * 2 * 3);
}

fn check_invariants(case: &str) {
    let (candidates, own_pop, static_pop, client_hash) = parse(case);
    let input = PolicyInput {
        candidates: &candidates,
        own_pop,
        static_pop,
        client_hash,
        high_water: 0.9,
        max_hops: max_hops(case),
    };
    let r = rank(&input);
    // The answer path's shortcuts agree with the full ranking, whatever they are asked for.
    shortcuts_agree(
        &input,
        &[1, 2, 3, 6],
        &[&|_| true, &|p| p % 2 == 0, &|p| p == 5],
        case,
    );
    let eligible: Vec<usize> = candidates
        .iter()
        .filter(|c| is_eligible(c))
        .map(|c| c.pop)
        .collect();
    let mut ranked = r.order.clone();
    ranked.sort_unstable();
    if eligible.is_empty() {
        assert!(r.failed_open, "{case}");
        assert_eq!(ranked.len(), candidates.len(), "{case}");
    } else {
        assert!(!r.failed_open, "{case}");
        assert_eq!(ranked, eligible, "{case}");
    }
    let by_pop = |p: usize| candidates.iter().find(|c| c.pop == p).unwrap();
    // Consecutive POPs never violate the documented order.
    for w in r.order.windows(2) {
        let (a, b) = (by_pop(w[0]), by_pop(w[1]));
        let static_ok = |c: &Candidate| static_pop == Some(c.pop) && is_eligible(c);
        if static_ok(b) {
            panic!("static POP ranked after another: {case}");
        }
        if static_ok(a) {
            continue;
        }
        match (a.hops, b.hops) {
            (None, Some(_)) => panic!("unrouted before routed: {case}"),
            (Some(x), Some(y)) => assert!(x <= y, "more hops first: {case}"),
            (None, None) => assert!(b.pop != own_pop, "own POP not first among unrouted: {case}"),
            (Some(_), None) => {}
        }
    }
}

#[test]
fn overloaded_pops_are_skipped_unless_all_are() {
    check(
        "ams:1:load=0.95 nyc:3:load=0.5 syd:4",
        "nyc syd | Some(FewerHops { winner: 3, runner_up: 4 })",
    );
    check(
        "ams:1:load=0.95 nyc:3:load=0.99",
        "ams nyc | Some(FewerHops { winner: 1, runner_up: 3 })",
    );
    // Exactly at the mark is not above it.
    check(
        "ams:1:load=0.9 nyc:3",
        "ams nyc | Some(FewerHops { winner: 1, runner_up: 3 })",
    );
}

#[test]
fn among_equally_near_pops_the_less_loaded_wins_in_steps_of_ten_percent() {
    check(
        "ams:2:load=0.7:pref=10 nyc:2:load=0.2",
        "nyc ams | Some(LessLoaded { winner: 2, runner_up: 7 })",
    );
    // Within the same tenth, load does not decide: preference does.
    check(
        "ams:2:load=0.21:pref=10 nyc:2:load=0.29:pref=20",
        "ams nyc | Some(Preference { winner: 10, runner_up: 20 })",
    );
    // Load never beats hops.
    check(
        "ams:1:load=0.8 nyc:2:load=0.0",
        "ams nyc | Some(FewerHops { winner: 1, runner_up: 2 })",
    );
}

#[test]
fn explain_names_the_overloaded() {
    let (candidates, own_pop, static_pop, client_hash) = parse("ams:1:load=0.95 nyc:2");
    let e = explain(&PolicyInput {
        candidates: &candidates,
        own_pop,
        static_pop,
        client_hash,
        high_water: 0.9,
        max_hops: None,
    });
    assert_eq!(e.verdicts[0].excluded, [Exclusion::Overloaded]);
    assert_eq!(e.verdicts[0].rank, None);
}

/// Large random clusters: up to 120 POPs, few distinct hop counts (so many ties), equal or
/// mixed weights, some POPs down, drained or loaded, a static map or none. The answer path
/// ([`Prepared::rank_first`], which skips the logarithm when weights are equal) must give
/// exactly [`rank`]'s order for every `k` and filter.
#[test]
fn prepared_ranking_equals_rank_on_random_clusters() {
    let mut next = crate::testrng::xorshift(2026);
    let mut below = move |n: u64| next() % n;
    for case in 0..3000 {
        let n = 1 + below(120) as usize;
        let uniform = below(2) == 0;
        // One case in ten: every POP one hop away, same preference, no load, so ties run
        // past the answer path's buffer of 64.
        let flat = case % 10 == 0;
        let candidates: Vec<Candidate> = (0..n)
            .map(|pop| Candidate {
                pop,
                name_hash: stable_hash(format!("pop{pop}").as_bytes()),
                hops: match below(if flat { 1 } else { 5 }) {
                    0 if !flat => None,
                    h => Some(h as u8 + 1),
                },
                admin: if below(20) == 0 {
                    AdminState::Drained
                } else {
                    AdminState::Active
                },
                live: below(15) != 0,
                healthy: below(15) != 0,
                preference: if flat {
                    100
                } else {
                    [100, 100, 100, 50][below(4) as usize]
                },
                weight: if uniform {
                    100
                } else {
                    [0, 1, 50, 100, 300][below(5) as usize]
                },
                load: if flat {
                    None
                } else {
                    [None, None, Some(0.1), Some(0.45), Some(0.95)][below(5) as usize]
                },
                // One case in three: up to three failover groups.
                group: if case % 3 == 1 { below(3) as u8 } else { 0 },
                // One case in five: a few canaries of various shares.
                canary: if case % 5 == 3 && below(8) == 0 {
                    [1 << 30, 1 << 31, u32::MAX][below(3) as usize]
                } else {
                    0
                },
            })
            .collect();
        // One case in four: a hop limit.
        let max_hops = (case % 4 == 2).then(|| below(5) as u8 + 1);
        let own_pop = below(n as u64) as usize;
        let static_pop = (below(3) == 0).then(|| below(n as u64) as usize);
        let client_hash = below(u64::MAX);
        let input = PolicyInput {
            candidates: &candidates,
            own_pop,
            static_pop,
            client_hash,
            high_water: 0.9,
            max_hops,
        };
        shortcuts_agree(
            &input,
            &[1, 2, 5],
            &[&|_| true, &|p| p % 3 != 0],
            &format!("case {case} (n={n}, uniform={uniform})"),
        );
    }
}

/// `rank_first` and `Prepared::rank_first` give the first `k` POPs of `rank`'s order that
/// `accept` takes, and the same `failed_open`, for every `k` and filter given.
fn shortcuts_agree(
    input: &PolicyInput<'_>,
    ks: &[usize],
    accepts: &[&dyn Fn(usize) -> bool],
    case: &str,
) {
    let r = rank(input);
    let hops = row(input.candidates);
    for &k in ks {
        for &accept in accepts {
            let want: Vec<usize> = r
                .order
                .iter()
                .copied()
                .filter(|&p| accept(p))
                .take(k)
                .collect();
            let first = rank_first(input, k, accept);
            assert_eq!(first.order, want, "{case} k={k}");
            assert_eq!(first.failed_open, r.failed_open, "{case}");
            let prepared = Prepared::new(
                input.candidates,
                input.own_pop,
                input.high_water,
                input.max_hops,
                accept,
            );
            let fast = prepared.rank_first(&hops, input.static_pop, input.client_hash, k);
            assert_eq!(fast.order, want, "Prepared: {case} k={k}");
            assert_eq!(fast.failed_open, r.failed_open, "Prepared: {case}");
        }
    }
}

#[test]
fn failover_groups_come_before_hops_and_the_hop_limit_before_groups() {
    // Without groups (all in group 0): the nearest.
    check(
        "ams:3 nyc:1 syd:5",
        "nyc ams syd | Some(FewerHops { winner: 1, runner_up: 3 })",
    );
    // "EU first, then the rest": ams (group 0) beats a nearer nyc (group 1).
    check(
        "ams:3 nyc:1:g=1 syd:5:g=1",
        "ams nyc syd | Some(FailoverGroup { winner: 0, runner_up: 1 })",
    );
    // Within a group, the usual rules.
    check(
        "ams:3 fra:2 nyc:1:g=1",
        "fra ams nyc | Some(FewerHops { winner: 2, runner_up: 3 })",
    );
    // An unrouted POP of an earlier group still comes first (no hop limit).
    check(
        "ams:- nyc:1:g=1",
        "ams nyc | Some(FailoverGroup { winner: 0, runner_up: 1 })",
    );
    // A hop limit: ams is beyond 2 hops, so the next group (nyc) is preferred; POPs beyond
    // the limit keep their group order among themselves.
    check(
        "ams:3 fra:4 nyc:1:g=1 max=2",
        "nyc ams fra | Some(FailoverGroup { winner: 1, runner_up: 128 })",
    );
    check(
        "ams:2 nyc:1:g=1 max=2",
        "ams nyc | Some(FailoverGroup { winner: 0, runner_up: 1 })",
    );
    // A hop limit alone (one group): POPs without a route count as beyond it.
    check("ams:- nyc:3 max=2", "nyc ams | Some(OnlyRoute)");
    check(
        "ams:5 nyc:- syd:4 max=2 own=nyc",
        "syd ams nyc | Some(FewerHops { winner: 4, runner_up: 5 })",
    );
    // The static map still overrides, and an ineligible group fails over.
    check("ams:3 nyc:1:g=1 static=nyc", "nyc ams | Some(StaticMap)");
    check(
        "ams:3:down nyc:1:g=1 syd:5:g=2",
        "nyc syd | Some(FailoverGroup { winner: 1, runner_up: 2 })",
    );
}

#[test]
fn a_canary_takes_a_stable_share_of_clients_first_while_it_is_eligible() {
    // Which clients (hashes 0..2000) a 25% canary syd takes over ams (1 hop) and nyc.
    let taken = |extra: &str| -> Vec<u64> {
        (0..2000u64)
            .filter(|client| {
                run(&format!("ams:1 nyc:2 syd:5:canary={extra} client={client}")).starts_with("syd")
            })
            .collect()
    };
    let quarter = taken("0.25");
    assert!(
        (400..600).contains(&quarter.len()),
        "{} of 2000",
        quarter.len()
    );
    // Sticky: a larger share keeps every client of the smaller one.
    let half = taken("0.5");
    assert!(quarter.iter().all(|c| half.contains(c)));
    assert!((900..1100).contains(&half.len()), "{} of 2000", half.len());
    assert!(taken("0").is_empty());
    // A client in the share: the canary first, then the usual order.
    let client = quarter[0];
    check(
        &format!("ams:1 nyc:2 syd:5:canary=0.25 client={client}"),
        "syd ams nyc | Some(Canary)",
    );
    // Not while it is ineligible; the static map still overrides.
    check(
        &format!("ams:1 nyc:2 syd:5:canary=0.25:down client={client}"),
        "ams nyc | Some(FewerHops { winner: 1, runner_up: 2 })",
    );
    check(
        &format!("ams:1 nyc:2 syd:5:canary=0.25 static=nyc client={client}"),
        "nyc syd ams | Some(StaticMap)",
    );
}
