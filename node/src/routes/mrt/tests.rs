use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr};

use super::write::{MrtPeer, rib_dump};
use bgpkit_parser::models::{
    AsPath, AsPathSegment, Asn, AttributeValue, Attributes, CommonHeader, EntryType, MrtMessage,
    NetworkPrefix, Origin, Peer, PeerIndexTable, RibAfiEntries, RibEntry, TableDumpV2Message,
    TableDumpV2Type,
};

use super::*;
use crate::routes::parse_route_view;

/// A dump BIRD 2.0.12 wrote (`mrt dump table "master*"`) of routes it learned over eBGP from
/// 127.0.0.1 AS64510: two PEER_INDEX_TABLEs (`master4`, `master6`), each with a blank
/// placeholder peer at index 0, and 100.64.1.0/24 (64510), 100.64.2.0/24 (64510 64520),
/// 2001:db8:ff01::/48 (64510).
const BIRD_DUMP: &[u8] = include_bytes!("bird-2.0.12-master.mrt");

const OWN_ASN: u32 = 64501;

fn by_asn(asn: u32) -> PeerSelector {
    PeerSelector {
        ip: None,
        asn: Some(asn),
    }
}

fn by_ip(ip: &str) -> PeerSelector {
    PeerSelector {
        ip: Some(ip.parse().unwrap()),
        asn: None,
    }
}

/// The view's entries as `PREFIX PATH...` lines, sorted: comparable across loaders.
fn lines(view: &RouteView) -> Vec<String> {
    let mut out: Vec<String> = view
        .entries()
        .map(|(net, path)| {
            let mut line = net.to_string();
            for asn in path.iter() {
                line.push_str(&format!(" {asn}"));
            }
            line
        })
        .collect();
    out.sort();
    out
}

fn peer(ip: &str, asn: u32) -> MrtPeer {
    MrtPeer {
        ip: ip.parse().unwrap(),
        asn,
        bgp_id: Ipv4Addr::new(192, 0, 2, 1),
    }
}

fn routes(text: &str) -> Vec<(IpNet, Vec<u32>)> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut f = l.split_whitespace();
            let net = f.next().unwrap().parse().unwrap();
            (net, f.map(|a| a.parse().unwrap()).collect())
        })
        .collect()
}

#[test]
fn bird_dump_with_two_peer_tables_and_placeholders() {
    let load = load(BIRD_DUMP, &by_ip("127.0.0.1"), OWN_ASN).unwrap();
    assert_eq!(load.skipped, []);
    assert_eq!(
        lines(&load.view),
        [
            "100.64.1.0/24 64510",
            "100.64.2.0/24 64510 64520",
            "2001:db8:ff01::/48 64510"
        ]
    );
    assert_eq!(load.stats.peers, ["127.0.0.1 AS64510"]);
    assert_eq!(load.stats.records, 5);
    // The same peer by its AS number alone.
    let by_asn = load_ok(BIRD_DUMP, &by_asn(64510));
    assert_eq!(lines(&by_asn), lines(&load.view));
}

fn load_ok(bytes: &[u8], peer: &PeerSelector) -> RouteView {
    let load = load(bytes, peer, OWN_ASN).unwrap();
    assert_eq!(load.skipped, [], "{}", describe_skipped(&load.skipped));
    load.view
}

#[test]
fn unknown_peer_is_refused_naming_the_peers_present() {
    let err = load(BIRD_DUMP, &by_asn(64999), OWN_ASN).unwrap_err();
    assert_eq!(
        err.to_string(),
        "peer AS64999 is not in the dump; its peers are: :: AS0, 127.0.0.1 AS64510"
    );
    let err = load(
        BIRD_DUMP,
        &PeerSelector {
            ip: Some("127.0.0.1".parse().unwrap()),
            asn: Some(64999),
        },
        OWN_ASN,
    )
    .unwrap_err();
    assert!(matches!(err, MrtError::UnknownPeer { .. }), "{err}");
}

#[test]
fn generated_dump_gives_the_text_view_of_the_selected_peer_only() {
    let ams =
        routes("100.64.0.0/16 64510 64520\n100.64.1.0/24 64496\n2001:db8::/32 64510 64511 64512\n");
    let nyc = routes("100.64.0.0/16 64497\n100.64.9.0/24 64497 64498\n");
    let bytes = rib_dump(
        &[
            (peer("192.0.2.1", 64501), &ams),
            (peer("198.51.100.1", 64502), &nyc),
        ],
        1_700_000_000,
    );
    let text = "100.64.0.0/16 64510 64520\n100.64.1.0/24 64496\n2001:db8::/32 64510 64511 64512\n";
    let (want, _) = parse_route_view(text);
    assert_eq!(lines(&load_ok(&bytes, &by_ip("192.0.2.1"))), lines(&want));
    assert_eq!(
        lines(&load_ok(&bytes, &by_asn(64502))),
        ["100.64.0.0/16 64497", "100.64.9.0/24 64497 64498"]
    );
}

#[test]
fn gzip_and_bzip2_are_found_by_their_magic_bytes() {
    let view = routes("100.64.0.0/16 64510\n2001:db8::/32 64510 64511\n");
    let plain = rib_dump(&[(peer("192.0.2.1", 64501), &view)], 1);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&plain).unwrap();
    let gz = gz.finish().unwrap();
    let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
    bz.write_all(&plain).unwrap();
    let bz = bz.finish().unwrap();
    let want = lines(&load_ok(&plain, &by_asn(64501)));
    assert_eq!(want.len(), 2);
    assert_eq!(lines(&load_ok(&gz, &by_asn(64501))), want);
    assert_eq!(lines(&load_ok(&bz, &by_asn(64501))), want);
    // A gzip file cut short is loaded as far as it goes and says so.
    let cut = &gz[..gz.len() - 12];
    let partial = load(cut, &by_asn(64501), OWN_ASN).unwrap();
    assert_eq!(partial.view.len(), 1, "{:?}", partial.skipped);
    assert!(
        partial
            .skipped
            .iter()
            .any(|s| s.reason.starts_with("gzip stream broken")),
        "{:?}",
        partial.skipped
    );
    // Garbage behind gzip's magic bytes is refused outright.
    let err = load(&[0x1f, 0x8b, 0, 0, 0, 0], &by_asn(64501), OWN_ASN).unwrap_err();
    assert!(
        matches!(err, MrtError::Decompress { format: "gzip", .. }),
        "{err}"
    );
}

#[test]
fn truncated_file_loads_partially_and_counts_what_was_lost() {
    let view: Vec<(IpNet, Vec<u32>)> = (0..100u32)
        .map(|i| {
            let net = IpNet::new(IpAddr::V4(Ipv4Addr::from(0x6440_0000 + (i << 8))), 24).unwrap();
            (net, vec![64510, 64520 + i])
        })
        .collect();
    let bytes = rib_dump(&[(peer("192.0.2.1", 64501), &view)], 1);
    // Cut inside the last record: 99 prefixes load, the last record is reported.
    let cut = &bytes[..bytes.len() - 5];
    let load = load(cut, &by_asn(64501), OWN_ASN).unwrap();
    assert_eq!(load.view.len(), 99);
    assert_eq!(load.skipped.len(), 1);
    assert_eq!(load.skipped[0].record, 101);
    assert!(
        load.skipped[0]
            .reason
            .starts_with("truncated or corrupt record"),
        "{}",
        load.skipped[0].reason
    );
    assert!(describe_skipped(&load.skipped).starts_with("1 skipped (record 101: "));
}

#[test]
fn non_mrt_input_is_refused() {
    for bytes in [&b""[..], b"100.64.0.0/16 64510\n", &[0u8; 64]] {
        let err = load(bytes, &by_asn(64501), OWN_ASN).unwrap_err();
        assert!(matches!(err, MrtError::NotRibDump(_)), "{err}");
    }
}

/// Encodes one TABLE_DUMP_V2 record.
fn record(subtype: u16, message: TableDumpV2Message) -> Vec<u8> {
    let body = MrtMessage::TableDumpV2Message(message)
        .encode(subtype)
        .unwrap();
    let header = CommonHeader {
        timestamp: 1,
        microsecond_timestamp: None,
        entry_type: EntryType::TABLE_DUMP_V2,
        entry_subtype: subtype,
        length: body.len() as u32,
    };
    [header.encode().to_vec(), body.to_vec()].concat()
}

fn peer_table(peers: &[(&str, u32)]) -> Vec<u8> {
    let mut table = PeerIndexTable::default();
    for (ip, asn) in peers {
        table
            .add_peer(Peer::new(
                Ipv4Addr::new(192, 0, 2, 1),
                ip.parse().unwrap(),
                Asn::new_32bit(*asn),
            ))
            .unwrap();
    }
    record(1, TableDumpV2Message::PeerIndexTable(table))
}

fn rib_v4(prefix: &str, entries: Vec<(u16, Attributes)>) -> Vec<u8> {
    let rib = RibAfiEntries {
        rib_type: TableDumpV2Type::RibIpv4Unicast,
        sequence_number: 0,
        prefix: NetworkPrefix::new(prefix.parse().unwrap(), None),
        rib_entries: entries
            .into_iter()
            .map(|(peer_index, attributes)| RibEntry {
                peer_index,
                originated_time: 1,
                path_id: None,
                attributes,
            })
            .collect(),
    };
    record(2, TableDumpV2Message::RibAfi(rib))
}

fn attrs(path: AsPath, as4: Option<AsPath>) -> Attributes {
    let mut a = Attributes::default();
    a.add_attr(AttributeValue::Origin(Origin::IGP).into());
    a.add_attr(AttributeValue::AsPath(path).into());
    a.add_attr(AttributeValue::NextHop("192.0.2.1".parse().unwrap()).into());
    if let Some(as4) = as4 {
        a.add_attr(AttributeValue::As4Path(as4).into());
    }
    a
}

#[test]
fn as_set_counts_one_hop_and_as4_path_is_merged() {
    let set = AsPath::from_segments(vec![
        AsPathSegment::sequence([64510]),
        AsPathSegment::set([64540, 64530, 64535]),
    ]);
    // A 2-octet speaker's path, kept by the collector: AS_TRANS stands in for 4200000001.
    let trans = AsPath::from_sequence([64510, 23456, 64520]);
    let as4 = AsPath::from_sequence([4_200_000_001, 64520]);
    // AS4_PATH longer than AS_PATH: ignored (RFC 6793 §4.2.3).
    let long_as4 = AsPath::from_sequence([1, 2, 3, 4]);
    let confed = AsPath::from_segments(vec![
        AsPathSegment::ConfedSequence([65001, 65002].iter().map(|a| Asn::new_32bit(*a)).collect()),
        AsPathSegment::sequence([64510]),
    ]);
    let bytes = [
        peer_table(&[("192.0.2.1", 64501)]),
        rib_v4("100.64.1.0/24", vec![(0, attrs(set, None))]),
        rib_v4("100.64.2.0/24", vec![(0, attrs(trans.clone(), Some(as4)))]),
        rib_v4("100.64.3.0/24", vec![(0, attrs(trans, Some(long_as4)))]),
        rib_v4("100.64.4.0/24", vec![(0, attrs(confed, None))]),
        rib_v4(
            "100.64.5.0/24",
            vec![(0, attrs(AsPath::from_sequence([64501, 64501, 64510]), None))],
        ),
        rib_v4(
            "100.64.6.0/24",
            vec![(0, attrs(AsPath::from_sequence([64501]), None))],
        ),
    ]
    .concat();
    assert_eq!(
        lines(&load_ok(&bytes, &by_asn(64501))),
        [
            "100.64.1.0/24 64510 64530",
            "100.64.2.0/24 64510 4200000001 64520",
            "100.64.3.0/24 64510 23456 64520",
            "100.64.4.0/24 64510",
            "100.64.5.0/24 64510",
            "100.64.6.0/24",
        ]
    );
}

#[test]
fn several_selected_peers_give_the_shortest_path_then_the_first_peer() {
    let bytes = [
        peer_table(&[
            ("192.0.2.1", 64501),
            ("2001:db8::1", 64501),
            ("192.0.2.9", 64999),
        ]),
        rib_v4(
            "100.64.1.0/24",
            vec![
                (0, attrs(AsPath::from_sequence([64510, 64520]), None)),
                (1, attrs(AsPath::from_sequence([64530]), None)),
                (2, attrs(AsPath::new(), None)),
            ],
        ),
        rib_v4(
            "100.64.2.0/24",
            vec![
                (1, attrs(AsPath::from_sequence([64531]), None)),
                (0, attrs(AsPath::from_sequence([64511]), None)),
            ],
        ),
        // The same prefix again in a later record (a second table): the better path wins
        // across records too.
        rib_v4(
            "100.64.1.0/24",
            vec![(0, attrs(AsPath::from_sequence([64532, 64533]), None))],
        ),
        rib_v4("100.64.0.0/24", vec![(1, attrs(AsPath::new(), None))]),
    ]
    .concat();
    let load = load(&bytes, &by_asn(64501), OWN_ASN).unwrap();
    assert_eq!(
        lines(&load.view),
        [
            "100.64.0.0/24",
            "100.64.1.0/24 64530",
            "100.64.2.0/24 64511"
        ]
    );
    assert_eq!(
        load.stats.peers,
        ["192.0.2.1 AS64501", "2001:db8::1 AS64501"]
    );
    assert_eq!(load.stats.entries, 6);
}

#[test]
fn corrupt_entries_are_skipped_with_their_reason() {
    let good = rib_v4(
        "100.64.1.0/24",
        vec![(0, attrs(AsPath::from_sequence([64510]), None))],
    );
    // The same record with its AS_PATH attribute claiming 200 bytes.
    let mut overrun = rib_v4(
        "100.64.2.0/24",
        vec![(0, attrs(AsPath::from_sequence([64511]), None))],
    );
    let at = overrun
        .windows(3)
        .position(|w| w == [0x40, 0x02, 0x06])
        .expect("AS_PATH attribute header");
    overrun[at + 2] = 200;
    // An entry with no AS_PATH at all.
    let mut no_path = Attributes::default();
    no_path.add_attr(AttributeValue::Origin(Origin::IGP).into());
    let missing = rib_v4("100.64.3.0/24", vec![(0, no_path)]);
    let bytes = [peer_table(&[("192.0.2.1", 64501)]), overrun, missing, good].concat();
    let load = load(&bytes, &by_asn(64501), OWN_ASN).unwrap();
    assert_eq!(lines(&load.view), ["100.64.1.0/24 64510"]);
    let reasons: Vec<(usize, &str)> = load
        .skipped
        .iter()
        .map(|s| (s.record, s.reason.as_str()))
        .collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert_eq!(reasons[0].0, 2);
    assert!(
        reasons[0]
            .1
            .starts_with("100.64.2.0/24: attribute 2 says 200 bytes"),
        "{reasons:?}"
    );
    assert_eq!(reasons[1], (3, "100.64.3.0/24: no AS_PATH attribute"));
    // Invalid prefixes in a RIB record header.
    let mut r = Cursor::new(&[100, 64, 1]);
    assert_eq!(
        read_prefix(&mut r, 17, false),
        Some(Err("100.64.1.0/17 has host bits set".to_owned()))
    );
    assert_eq!(
        read_prefix(&mut Cursor::new(&[0; 5]), 33, false),
        Some(Err("prefix length 33 is longer than 32".to_owned()))
    );
}
