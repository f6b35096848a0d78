use std::net::IpAddr;

use ipnet::IpNet;

use super::lpm::RangeTable;
use super::view::*;
use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn hops(view: &RouteView, addr: &str) -> Option<u8> {
    view.lookup(ip(addr))
        .entry
        .map(|(_, path)| RouteView::hops_of(path))
}

#[test]
fn route_view_parses_both_families_comments_and_empty_paths() {
    let text = "\
# a comment
100.64.0.0/16    64510 64520        # trailing comment
100.64.1.0/24    64496

2001:db8::/32    64510 64511 64512
10.0.0.0/8
";
    let (view, skipped) = parse_route_view(text);
    assert_eq!(skipped, []);
    assert_eq!(view.len(), 4);
    assert_eq!(hops(&view, "100.64.1.77"), Some(1));
    assert_eq!(hops(&view, "100.64.9.1"), Some(2));
    assert_eq!(hops(&view, "2001:db8:1::1"), Some(3));
    assert_eq!(
        hops(&view, "10.1.1.1"),
        Some(0),
        "an empty path is the POP's own network"
    );
    assert_eq!(hops(&view, "192.0.2.1"), None);
    let hit = view.lookup(ip("100.64.1.77"));
    assert_eq!(
        hit.entry.unwrap().0,
        "100.64.1.0/24".parse::<IpNet>().unwrap()
    );
    assert_eq!(hit.entry.unwrap().1, &[64496]);
}

#[test]
fn route_view_skips_bad_lines_with_reasons_and_keeps_the_rest() {
    let text = "\
100.64.1.0/24 64496
100.64.2.1/24 64497
not-a-prefix 64498
100.64.3.0/24 64498 sixty
100.64.1.0/24 64499
100.64.4.0/33 1
100.64.5.0/24 AS64500
";
    let (view, skipped) = parse_route_view(text);
    assert_eq!(view.len(), 2);
    let lines: Vec<usize> = skipped.iter().map(|s| s.line).collect();
    assert_eq!(lines, [2, 3, 4, 5, 6]);
    assert!(skipped[0].reason.contains("host bits"), "{:?}", skipped[0]);
    assert!(
        skipped[0].reason.contains("100.64.2.0/24"),
        "{:?}",
        skipped[0]
    );
    assert!(skipped[2].reason.contains("`sixty` is not an AS number"));
    assert!(skipped[3].reason.contains("listed already on line 1"));
    // The first of two duplicates stays.
    assert_eq!(hops(&view, "100.64.1.1"), Some(1));
    assert_eq!(hops(&view, "100.64.5.1"), Some(1), "AS prefix accepted");
    let summary = describe_skipped(&skipped);
    assert!(summary.starts_with("5 skipped (line 2: "), "{summary}");
}

#[test]
fn describe_skipped_caps_the_list() {
    let skipped: Vec<Skipped> = (1..=8)
        .map(|line| Skipped {
            line,
            reason: "bad".into(),
        })
        .collect();
    assert_eq!(
        describe_skipped(&skipped),
        "8 skipped (line 1: bad; line 2: bad; line 3: bad; line 4: bad; line 5: bad; and 3 more)"
    );
}

#[test]
fn static_map_names_pops_by_asn() {
    let text = "\
212.124.87.0/24 1234
212.124.0.0/16  5678
10.0.0.0/8      9999
10.1.0.0/16
";
    let pop_of = |asn| match asn {
        1234 => Some(0),
        5678 => Some(1),
        _ => None,
    };
    let (map, skipped) = parse_static_map(text, pop_of);
    assert_eq!(map.len(), 2);
    assert_eq!(skipped.len(), 2);
    assert!(
        skipped[0]
            .reason
            .contains("AS9999 is not the ASN of any POP")
    );
    assert!(skipped[1].reason.contains("expected `PREFIX ASN`"));
    // Most specific prefix wins.
    assert_eq!(map.lookup(ip("212.124.87.9")).entry.unwrap().1, 0);
    assert_eq!(map.lookup(ip("212.124.1.9")).entry.unwrap().1, 1);
    assert!(map.lookup(ip("10.0.0.1")).entry.is_none());
}

#[test]
fn enclosing_block_is_the_largest_aligned_prefix_inside_the_span() {
    let v4 = |s: &str| u128::from(u32::from(s.parse::<std::net::Ipv4Addr>().unwrap()));
    let block = |addr, lo, hi| enclosing_block(v4(addr), v4(lo), v4(hi), 32);
    assert_eq!(block("100.64.2.9", "100.64.2.0", "100.64.2.255"), 24);
    assert_eq!(block("100.64.2.9", "0.0.0.0", "255.255.255.255"), 0);
    // A span that is not a prefix: the block stays inside it.
    assert_eq!(block("100.64.6.1", "100.64.6.0", "100.64.255.255"), 23);
    assert_eq!(block("100.64.7.1", "100.64.6.0", "100.64.255.255"), 23);
    assert_eq!(block("100.64.200.1", "100.64.6.0", "100.64.255.255"), 17);
    assert_eq!(block("100.64.6.0", "100.64.6.0", "100.64.6.0"), 32);
    let v6 = |s: &str| u128::from(s.parse::<std::net::Ipv6Addr>().unwrap());
    assert_eq!(
        enclosing_block(
            v6("2001:db8:ff02::1"),
            v6("2001:db8:ff02::"),
            v6("2001:db8:ff02:ffff:ffff:ffff:ffff:ffff"),
            128
        ),
        48
    );
    assert_eq!(enclosing_block(5, 0, u128::MAX, 128), 0);
}

/// `enclosing_block` by its definition: try every length from the shortest.
fn enclosing_block_by_search(addr: u128, lo: u128, hi: u128, bits: u8) -> u8 {
    let width_max = if bits == 128 {
        u128::MAX
    } else {
        (1u128 << bits) - 1
    };
    (0..bits)
        .find(|&len| {
            let host = width_max >> len;
            let start = addr & !host & width_max;
            start >= lo && start | host <= hi
        })
        .unwrap_or(bits)
}

#[test]
fn enclosing_block_in_closed_form_equals_the_search() {
    let mut next = crate::testrng::xorshift(0x5eed);
    for bits in [32u8, 128] {
        let width_max = if bits == 128 {
            u128::MAX
        } else {
            (1u128 << bits) - 1
        };
        for _ in 0..200_000 {
            let wide = |n: u64, m: u64| ((u128::from(n) << 64) | u128::from(m)) & width_max;
            // Mostly spans that start and end on aligned boundaries, as route ranges do.
            let mut v = [
                wide(next(), next()),
                wide(next(), next()),
                wide(next(), next()),
            ];
            for x in &mut v {
                match next() % 4 {
                    0 => *x &= !(width_max >> (next() % u64::from(bits))),
                    1 => *x |= width_max >> (next() % u64::from(bits)),
                    _ => {}
                }
            }
            v.sort_unstable();
            let [lo, addr, hi] = v;
            assert_eq!(
                enclosing_block(addr, lo, hi, bits),
                enclosing_block_by_search(addr, lo, hi, bits),
                "addr {addr:#x} lo {lo:#x} hi {hi:#x} bits {bits}"
            );
            for (a, l, h) in [
                (lo, lo, hi),
                (hi, lo, hi),
                (addr, addr, addr),
                (addr, 0, width_max),
            ] {
                assert_eq!(
                    enclosing_block(a, l, h, bits),
                    enclosing_block_by_search(a, l, h, bits),
                    "addr {a:#x} lo {l:#x} hi {h:#x} bits {bits}"
                );
            }
        }
    }
}

#[test]
fn lookup_span_never_crosses_a_more_specific_prefix() {
    let (view, _) = parse_route_view("10.0.0.0/8 1\n10.5.0.0/16 1 2\n");
    let hit = view.lookup(ip("10.1.2.3"));
    let len = enclosing_block(
        u128::from(u32::from("10.1.2.3".parse::<std::net::Ipv4Addr>().unwrap())),
        hit.span.lo,
        hit.span.hi,
        32,
    );
    // 10.0.0.0/8 matched, but the whole /8 is not one decision: 10.5/16 differs.
    assert_eq!(
        len, 14,
        "10.0.0.0/14 is the largest block around 10.1.2.3 without 10.5/16"
    );
}

/// Random views over a small address space, so that prefixes of different views overlap.
fn random_view(seed: u64, n: usize) -> String {
    let mut next = crate::testrng::xorshift(seed | 1);
    let mut text = String::new();
    for _ in 0..n {
        let len = 8 + (next() % 17) as u8;
        let addr = 0x0A00_0000 | (next() as u32 & 0x00FF_FFFF);
        let net = IpNet::new(IpAddr::from(addr.to_be_bytes()), len)
            .unwrap()
            .trunc();
        let hops = next() % 6;
        let path: Vec<String> = (0..hops).map(|h| (64500 + h).to_string()).collect();
        text.push_str(&format!("{net} {}\n", path.join(" ")));
    }
    text
}

#[test]
fn decision_table_agrees_with_each_view_and_its_spans_are_uniform() {
    for seed in 1..20u64 {
        let views: Vec<RouteView> = (0..3)
            .map(|i| parse_route_view(&random_view(seed * 7 + i, 300)).0)
            .collect();
        let (map, _) = parse_static_map(
            &random_view(seed * 13, 20)
                .lines()
                .map(|l| {
                    let net = l.split_whitespace().next().unwrap();
                    format!("{net} {}\n", 1 + seed % 3)
                })
                .collect::<String>(),
            |asn| Some(asn as usize - 1),
        );
        let refs: Vec<Option<&RouteView>> =
            vec![Some(&views[0]), None, Some(&views[1]), Some(&views[2])];
        let hops: Vec<Option<HopRanges>> =
            refs.iter().map(|v| v.map(RouteView::hop_ranges)).collect();
        let hop_refs: Vec<Option<&HopRanges>> = hops.iter().map(Option::as_ref).collect();
        // Candidate columns: POP 0 -> 0, (no view) -> 1, POP 1 -> 2, POP 2 -> 3.
        let table = DecisionTable::build(&hop_refs, Some(&map), |pop| [0, 2, 3].get(pop).copied());
        let expect = |addr: IpAddr| {
            let hops: Vec<Option<u8>> = refs
                .iter()
                .map(|v| v.and_then(|v| v.lookup(addr).entry.map(|(_, p)| RouteView::hops_of(p))))
                .collect();
            let stat = map.lookup(addr).entry.map(|(_, pop)| [0, 2, 3][*pop]);
            (hops, stat)
        };
        let got = |addr: IpAddr| {
            let (row, span) = table.lookup(addr);
            (
                (0..4).map(|c| row.hops(c)).collect::<Vec<_>>(),
                row.static_column(),
                span,
            )
        };
        let mut state = seed;
        for _ in 0..500 {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let addr =
                IpAddr::from((0x0A00_0000 | ((state >> 33) as u32 & 0x00FF_FFFF)).to_be_bytes());
            let (hops, stat, span) = got(addr);
            assert_eq!(
                (hops.clone(), stat),
                expect(addr),
                "seed {seed} addr {addr}"
            );
            // The whole span shares the row: check both ends.
            for edge in [span.lo, span.hi] {
                let a = IpAddr::from((edge as u32).to_be_bytes());
                assert_eq!(expect(a), (hops.clone(), stat), "seed {seed} span edge {a}");
            }
        }
    }
}

#[test]
fn replacing_columns_gives_the_table_built_from_scratch_and_keeps_the_static_map() {
    for seed in 1..20u64 {
        let view = |i: u64| {
            parse_route_view(&random_view(seed * 11 + i, 200))
                .0
                .hop_ranges()
        };
        let (a, b, c, d) = (view(0), view(1), view(2), view(3));
        let (map, _) = parse_static_map(
            &random_view(seed * 17, 15)
                .lines()
                .map(|l| {
                    format!(
                        "{} {}\n",
                        l.split_whitespace().next().unwrap(),
                        1 + seed % 3
                    )
                })
                .collect::<String>(),
            |asn| Some(asn as usize - 1),
        );
        let column = |pop: usize| Some(pop);
        let old = DecisionTable::build(&[Some(&a), Some(&b), Some(&c)], Some(&map), column);
        let replaced = old.with_columns(&[(0, None), (1, Some(&d))]);
        let fresh = DecisionTable::build(&[None, Some(&d), Some(&c)], Some(&map), column);
        let mut state = seed;
        for _ in 0..500 {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let addr =
                IpAddr::from((0x0A00_0000 | ((state >> 33) as u32 & 0x00FF_FFFF)).to_be_bytes());
            let (r1, s1) = replaced.lookup(addr);
            let (r2, s2) = fresh.lookup(addr);
            let row = |r: Row<'_>| {
                (
                    (0..3).map(|c| r.hops(c)).collect::<Vec<_>>(),
                    r.static_column(),
                )
            };
            assert_eq!(row(r1), row(r2), "seed {seed} addr {addr}");
            assert_eq!(
                (s1.lo, s1.hi),
                (s2.lo, s2.hi),
                "seed {seed}: spans merge alike"
            );
        }
        // No garbage: the replaced table holds only rows it uses.
        assert_eq!(replaced.row_count(), fresh.row_count());
        assert_eq!(replaced.ranges(), fresh.ranges());
    }
}

#[test]
fn decision_table_with_no_views_has_one_empty_row() {
    let table = DecisionTable::build(&[None, None], None, |_| None);
    let (row, span) = table.lookup(ip("192.0.2.1"));
    assert_eq!(
        (row.hops(0), row.hops(1), row.static_column()),
        (None, None, None)
    );
    assert_eq!((span.lo, span.hi), (0, u128::from(u32::MAX)));
    assert_eq!(table.row_count(), 1);
}

/// Random IPv4 and IPv6 routes in small address spaces, so that prefixes nest often and the
/// views of different POPs overlap: the text of a route file.
fn random_dual_view(seed: u64, n: usize) -> String {
    let mut next = crate::testrng::xorshift(seed | 1);
    let mut text = String::new();
    for _ in 0..n {
        let path: Vec<String> = (0..next() % 7).map(|h| (64500 + h).to_string()).collect();
        let net = if next().is_multiple_of(4) {
            let len = 16 + (next() % 49) as u8;
            let addr = (0x2001_0db8u128 << 96) | (u128::from(next() as u32 & 0x00FF_FFFF) << 64);
            IpNet::new(IpAddr::from(addr.to_be_bytes()), len).unwrap()
        } else {
            let len = (next() % 33) as u8;
            let addr = 0x0A00_0000 | (next() as u32 & 0x00FF_0F0F);
            IpNet::new(IpAddr::from(addr.to_be_bytes()), len).unwrap()
        };
        text.push_str(&format!("{} {}\n", net.trunc(), path.join(" ")));
    }
    // Both ends of both families, and a default route now and then.
    match seed % 4 {
        0 => text.push_str("0.0.0.0/0 1 2\n255.255.255.255/32 1\n0.0.0.0/32\n"),
        1 => text.push_str("::/0 1 2 3\nffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128 1\n"),
        _ => {}
    }
    text
}

/// A view as the bytes of a kept transfer.
fn kept_bytes(text: &str) -> Vec<u8> {
    let (view, _) = parse_route_view(text);
    transfer::stream_bytes(&transfer::encode(&view, 1))
}

#[test]
fn flattening_as_prefixes_come_gives_the_ranges_of_a_whole_build() {
    for seed in 0..40u64 {
        let (view, _) = parse_route_view(&random_dual_view(seed, 1 + seed as usize * 7));
        let mut v4: Vec<(u32, u8, u32)> = Vec::new();
        for (i, (net, _)) in view.entries().enumerate() {
            if let IpNet::V4(n) = net {
                v4.push((u32::from(n.network()), n.prefix_len(), i as u32 % 3));
            }
        }
        v4.sort_unstable_by_key(|&(s, l, _)| (s, l));
        let whole: Vec<(u32, u32)> = RangeTable::build(v4.clone()).iter().collect();
        let mut flat = lpm::Flattener::default();
        let mut streamed = Vec::new();
        for &(start, len, value) in &v4 {
            flat.prefix(start, len, value);
            while let Some(r) = flat.next_final() {
                streamed.push(r);
            }
        }
        flat.close();
        while let Some(r) = flat.next_final() {
            streamed.push(r);
        }
        assert_eq!(streamed, whole, "seed {seed}");
    }
}

#[test]
fn tables_built_from_streamed_views_equal_tables_built_from_views_in_memory() {
    for seed in 0..30u64 {
        // Five POPs: random views of all sizes (the first often empty), no view for one.
        let texts: Vec<Option<String>> = (0..5u64)
            .map(|i| match i {
                3 => None,
                0 => Some(random_dual_view(seed * 5, (seed % 3) as usize * 40)),
                _ => Some(random_dual_view(seed * 5 + i, 150)),
            })
            .collect();
        let (map, _) = parse_static_map(
            &random_dual_view(seed * 19 + 7, 12)
                .lines()
                .map(|l| format!("{} {}\n", l.split_whitespace().next().unwrap(), seed % 5))
                .collect::<String>(),
            |asn| Some(asn as usize),
        );
        let bytes: Vec<Option<Vec<u8>>> =
            texts.iter().map(|t| t.as_deref().map(kept_bytes)).collect();
        let hops: Vec<Option<HopRanges>> = bytes
            .iter()
            .map(|b| b.as_ref().map(|b| transfer::decode_stream(b).unwrap().1))
            .collect();
        let refs: Vec<Option<&HopRanges>> = hops.iter().map(Option::as_ref).collect();
        let column = |pop: usize| (pop < 5).then_some(pop);
        let whole = DecisionTable::build(&refs, Some(&map), column);
        // The streams replace columns of a table that has none of these views, in one pass.
        let empty = DecisionTable::build(&[None; 5], Some(&map), column);
        let sources: Vec<(usize, transfer::ViewStream<&[u8]>)> = bytes
            .iter()
            .enumerate()
            .filter_map(|(c, b)| Some((c, transfer::ViewStream::open(b.as_deref()?).unwrap())))
            .collect();
        let streamed = empty.with_sources(sources).unwrap();
        assert_eq!(streamed.dump(), whole.dump(), "seed {seed}");
        // The same views merged in two parts, then put together.
        let split = 1 + (seed as usize % 3);
        let columns: Vec<usize> = (0..5).filter(|&c| bytes[c].is_some()).collect();
        let parts: Vec<(Vec<usize>, _)> = [&columns[..split], &columns[split..]]
            .into_iter()
            .map(|cols| {
                let chunks = part_chunks(cols.iter().map(|&c| bytes[c].as_deref().unwrap()));
                (cols.to_vec(), chunks.into_iter())
            })
            .collect();
        let put_together = empty.with_parts(parts).unwrap();
        assert_eq!(put_together.dump(), whole.dump(), "seed {seed}, parts");
        assert_eq!(streamed.row_count(), whole.row_count(), "seed {seed}");
        // Replacing some columns of a full table: the same as building it anew.
        let other = kept_bytes(&random_dual_view(seed + 1000, 100));
        let replaced = whole
            .with_sources(vec![(1, transfer::ViewStream::open(&other[..]).unwrap())])
            .unwrap();
        let other_hops = transfer::decode_stream(&other).unwrap().1;
        let mut refs2 = refs.clone();
        refs2[1] = Some(&other_hops);
        let fresh = DecisionTable::build(&refs2, Some(&map), column);
        assert_eq!(replaced.dump(), fresh.dump(), "seed {seed}");
        assert_eq!(replaced.row_count(), fresh.row_count(), "seed {seed}");
    }
}

/// Every chunk of a part merged from these streams (an error ends the list).
fn part_chunks<'a>(
    streams: impl Iterator<Item = &'a [u8]>,
) -> Vec<Result<decision::PartChunk, (usize, transfer::TransferError)>> {
    let sources = streams
        .map(|b| transfer::ViewStream::open(b).unwrap())
        .collect();
    let mut part = decision::PartMerge::new(sources);
    let mut chunks = Vec::new();
    loop {
        let chunk = part.next_chunk();
        let last = !matches!(&chunk, Ok(c) if !c.is_last());
        chunks.push(chunk);
        if last {
            return chunks;
        }
    }
}

#[test]
fn a_damaged_stream_in_a_part_fails_the_whole_and_names_its_part() {
    let good = kept_bytes(&random_dual_view(3, 400));
    let mut bad = kept_bytes(&random_dual_view(4, 400));
    let flip = bad.len() - 40;
    bad[flip] ^= 0x08;
    let base = DecisionTable::build(&[None; 3], None, |_| None);
    let parts = vec![
        (vec![0], part_chunks([&good[..]].into_iter()).into_iter()),
        (
            vec![1, 2],
            part_chunks([&good[..], &bad[..]].into_iter()).into_iter(),
        ),
    ];
    let (part, (source, _)) = base.with_parts(parts).unwrap_err();
    assert_eq!((part, source), (1, 1));
}

#[test]
fn a_damaged_stream_among_good_ones_fails_the_pass_and_names_itself() {
    let good: Vec<Vec<u8>> = (0..3)
        .map(|i| kept_bytes(&random_dual_view(i + 77, 200)))
        .collect();
    let base = DecisionTable::build(&[None; 4], None, |_| None);
    let run = |bad: &[u8]| {
        let mut sources = vec![];
        for (c, b) in good.iter().enumerate() {
            sources.push((c, transfer::ViewStream::open(&b[..])?));
        }
        sources.push((3, transfer::ViewStream::open(bad)?));
        Ok::<_, transfer::TransferError>(base.with_sources(sources))
    };
    let bytes = kept_bytes(&random_dual_view(5, 300));
    let whole = run(&bytes).unwrap().unwrap();
    // Cut anywhere: refused, whether at opening or in the pass, where it names column 3.
    for cut in (0..bytes.len()).step_by(7).chain([bytes.len() - 1]) {
        match run(&bytes[..cut]) {
            Err(_) => {}
            Ok(Err((index, e))) => assert_eq!(index, 3, "cut at {cut}: {e}"),
            Ok(Ok(_)) => panic!("cut at {cut} accepted"),
        }
    }
    // Any flipped byte: refused, or (if it only touched what the digest does not cover) the
    // very same table.
    let mut refused = 0;
    for i in 0..bytes.len() {
        let mut bad = bytes.clone();
        bad[i] ^= 0x10;
        match run(&bad) {
            Err(_) => refused += 1,
            Ok(Err((index, _))) => {
                assert_eq!(index, 3, "byte {i}");
                refused += 1;
            }
            Ok(Ok(table)) => assert_eq!(table.dump(), whole.dump(), "byte {i}"),
        }
    }
    assert!(refused > bytes.len() / 2, "{refused} of {}", bytes.len());
    // A digest that does not match is only found at the end, after every range.
    let header_digest = transfer::decode_stream(&bytes).unwrap().0.digest;
    let mut view: Vec<(IpNet, Box<[u32]>)> = parse_route_view(&random_dual_view(5, 300))
        .0
        .entries()
        .map(|(net, path)| (net, path.into()))
        .collect();
    view[0].1 = vec![1; 9].into();
    let mut other = transfer::encode(&RouteView::new(view), 1);
    other.header.digest = header_digest;
    let e = run(&transfer::stream_bytes(&other)).unwrap().unwrap_err();
    assert_eq!(e.0, 3);
    assert!(
        matches!(e.1, transfer::TransferError::Digest { .. }),
        "{}",
        e.1
    );
}

#[test]
fn route_view_keeps_every_entry_in_order_and_stores_each_path_once() {
    for seed in 0..20u64 {
        let text = random_dual_view(seed + 500, 200);
        let (view, _) = parse_route_view(&text);
        // The entries as given (first of duplicates), in file order.
        let mut seen = std::collections::HashSet::new();
        let given: Vec<(IpNet, Vec<u32>)> = text
            .lines()
            .map(|l| {
                let mut fields = l.split_whitespace();
                let net: IpNet = fields.next().unwrap().parse().unwrap();
                (net, fields.map(|f| f.parse().unwrap()).collect())
            })
            .filter(|(net, _)| seen.insert(*net))
            .collect();
        let stored: Vec<(IpNet, Vec<u32>)> = view.entries().map(|(n, p)| (n, p.to_vec())).collect();
        assert_eq!(stored, given, "seed {seed}");
        assert_eq!(view.entries().len(), view.len());
        let distinct: std::collections::HashSet<&Vec<u32>> = given.iter().map(|(_, p)| p).collect();
        assert_eq!(view.distinct_paths(), distinct.len(), "seed {seed}");
        // Longest prefix match against a scan of every entry, at both ends of each.
        for (net, _) in &given {
            for addr in [net.network(), net.broadcast()] {
                let want = given
                    .iter()
                    .filter(|(n, _)| n.contains(&addr))
                    .max_by_key(|(n, _)| n.prefix_len())
                    .map(|(n, p)| (*n, p.as_slice()));
                assert_eq!(view.lookup(addr).entry, want, "seed {seed} {addr}");
            }
        }
    }
    assert_eq!(RouteView::new(Vec::new()).distinct_paths(), 0);
    assert_eq!(RouteView::default().distinct_paths(), 0);
    assert!(RouteView::default().lookup(ip("10.0.0.1")).entry.is_none());
}
