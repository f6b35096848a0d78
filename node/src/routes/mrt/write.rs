//! [P] Writing MRT RIB dumps (TABLE_DUMP_V2, RFC 6396) with `bgpkit-parser`'s models and
//! encoder: the loader's tests, netsim's generated worlds and the benchmarks write the dumps
//! the loader reads. (It lives beside the loader, not in netsim, so that the node's own tests
//! can use it without the node depending on netsim.)
//!
//! The layout is what a collector writes: one PEER_INDEX_TABLE naming every peer, then one
//! RIB_IPV4_UNICAST or RIB_IPV6_UNICAST record per prefix (IPv4 first, each family in
//! address order), holding one entry per peer that has a route to it. Entries carry ORIGIN,
//! a 4-octet AS_PATH (one AS_SEQUENCE), and NEXT_HOP (IPv4) or the abbreviated MP_REACH_NLRI
//! that RFC 6396 §4.3.4 prescribes for IPv6 (next-hop length and address only).
//!
//! Paths are written as given: a generated POP view lists the ASes after the POP, so a dump
//! of it looks like the POP router's own table dump (BIRD's `mrt dump`), whose peers are the
//! router's neighbours.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use bgpkit_parser::models::{
    AsPath, Asn, AttrFlags, AttrRaw, Attribute, AttributeValue, Attributes, CommonHeader,
    EntryType, MrtMessage, NetworkPrefix, Origin, Peer, PeerIndexTable, RibAfiEntries, RibEntry,
    TableDumpV2Message, TableDumpV2Type,
};
use ipnet::IpNet;

/// A peer of a dump.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MrtPeer {
    /// Its address (the key of the PEER_INDEX_TABLE).
    pub ip: IpAddr,
    /// Its AS number.
    pub asn: u32,
    /// Its BGP identifier.
    pub bgp_id: Ipv4Addr,
}

/// Next hops written in the entries (documentation addresses; never routed).
const NEXT_HOP_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const NEXT_HOP_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);

/// One peer's routes: `(prefix, AS path)`, nearest AS first.
pub type PeerRoutes<'a> = &'a [(IpNet, Vec<u32>)];

/// A TABLE_DUMP_V2 dump of `routes`, one list of `(prefix, AS path)` per peer of `peers`
/// (same order), stamped `timestamp` (Unix seconds). Prefixes need not be sorted or shared
/// between peers.
///
/// # Panics
///
/// If there are more than 65,535 peers, more than 65,535 entries for one prefix, or a path
/// longer than 255 ASes: limits of the format that generated data never reaches.
pub fn rib_dump(peers: &[(MrtPeer, PeerRoutes<'_>)], timestamp: u32) -> Vec<u8> {
    let mut table = PeerIndexTable {
        collector_bgp_id: Ipv4Addr::new(192, 0, 2, 254),
        view_name: String::new(),
        ..PeerIndexTable::default()
    };
    // Keyed by (is IPv6, prefix) so IPv4 comes first; values are (peer index, path).
    type Entries<'p> = Vec<(u16, &'p [u32])>;
    let mut by_prefix: BTreeMap<(bool, IpNet), Entries<'_>> = BTreeMap::new();
    for (peer, routes) in peers {
        let bgp_peer = Peer::new(peer.bgp_id, peer.ip, Asn::new_32bit(peer.asn));
        // INVARIANT: generated dumps have far fewer than 65,535 peers.
        let index = table.add_peer(bgp_peer).expect("more than 65,535 peers");
        for (prefix, path) in *routes {
            by_prefix
                .entry((prefix.addr().is_ipv6(), *prefix))
                .or_default()
                .push((index, path));
        }
    }
    let mut out = Vec::new();
    let message = TableDumpV2Message::PeerIndexTable(table);
    write_record(
        &mut out,
        timestamp,
        1,
        &MrtMessage::TableDumpV2Message(message),
    );
    for (sequence, ((v6, prefix), entries)) in by_prefix.into_iter().enumerate() {
        let (subtype, rib_type) = if v6 {
            (4, TableDumpV2Type::RibIpv6Unicast)
        } else {
            (2, TableDumpV2Type::RibIpv4Unicast)
        };
        let rib = RibAfiEntries {
            rib_type,
            // The field is 32 bits wide; a dump of over 4 G prefixes wraps, as collectors do.
            sequence_number: sequence as u32,
            prefix: NetworkPrefix::new(prefix, None),
            rib_entries: entries
                .into_iter()
                .map(|(peer_index, path)| RibEntry {
                    peer_index,
                    originated_time: timestamp,
                    path_id: None,
                    attributes: attributes(path, v6),
                })
                .collect(),
        };
        let message = MrtMessage::TableDumpV2Message(TableDumpV2Message::RibAfi(rib));
        write_record(&mut out, timestamp, subtype, &message);
    }
    out
}

fn attributes(path: &[u32], v6: bool) -> Attributes {
    let mut attrs = Attributes::default();
    attrs.add_attr(AttributeValue::Origin(Origin::IGP).into());
    attrs.add_attr(AttributeValue::AsPath(AsPath::from_sequence(path)).into());
    if v6 {
        // RFC 6396 §4.3.4: in a RIB entry, MP_REACH_NLRI holds only the next hop's length and
        // address; bgpkit-parser's NLRI encoder writes the full UPDATE form, so write it raw.
        let mut value = vec![16];
        value.extend_from_slice(&NEXT_HOP_V6.octets());
        attrs.add_attr(Attribute {
            value: AttributeValue::Raw(AttrRaw {
                code: 14,
                bytes: value.into(),
            }),
            flag: AttrFlags::OPTIONAL,
        });
    } else {
        attrs.add_attr(AttributeValue::NextHop(IpAddr::V4(NEXT_HOP_V4)).into());
    }
    attrs
}

fn write_record(out: &mut Vec<u8>, timestamp: u32, subtype: u16, message: &MrtMessage) {
    // INVARIANT: the records built above are within every limit of the format (see
    // `rib_dump`'s panics).
    let body = message
        .encode(subtype)
        .expect("MRT record out of the format's limits");
    let header = CommonHeader {
        timestamp,
        microsecond_timestamp: None,
        entry_type: EntryType::TABLE_DUMP_V2,
        entry_subtype: subtype,
        // INVARIANT: a record is at most 65,535 entries of a few hundred bytes.
        length: u32::try_from(body.len()).expect("MRT record over 4 GiB"),
    };
    out.extend_from_slice(&header.encode());
    out.extend_from_slice(&body);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dump_parses_back_with_bgpkit_parser() {
        let a = MrtPeer {
            ip: "192.0.2.1".parse().unwrap(),
            asn: 64501,
            bgp_id: Ipv4Addr::new(192, 0, 2, 1),
        };
        let b = MrtPeer {
            ip: "2001:db8::2".parse().unwrap(),
            asn: 4_200_000_000,
            bgp_id: Ipv4Addr::new(192, 0, 2, 2),
        };
        let ra = vec![
            ("100.64.0.0/16".parse().unwrap(), vec![64510, 64520]),
            ("2001:db8:1::/48".parse().unwrap(), vec![64510]),
        ];
        let rb = vec![("100.64.0.0/16".parse().unwrap(), vec![4_200_000_001])];
        let bytes = rib_dump(&[(a, &ra), (b, &rb)], 1_700_000_000);
        let mut reader = &bytes[..];
        let mut records = Vec::new();
        while let Ok(r) = bgpkit_parser::parse_mrt_record(&mut reader) {
            records.push(r);
        }
        assert!(reader.is_empty(), "unread bytes");
        assert_eq!(records.len(), 3, "peer table + two prefixes");
        let MrtMessage::TableDumpV2Message(TableDumpV2Message::PeerIndexTable(t)) =
            &records[0].message
        else {
            panic!("first record is not a PEER_INDEX_TABLE");
        };
        assert_eq!(t.id_peer_map.len(), 2);
        let MrtMessage::TableDumpV2Message(TableDumpV2Message::RibAfi(rib)) = &records[1].message
        else {
            panic!("second record is not a RIB");
        };
        assert_eq!(rib.prefix.prefix.to_string(), "100.64.0.0/16");
        let paths: Vec<Vec<u32>> = rib
            .rib_entries
            .iter()
            .map(|e| {
                e.attributes
                    .as_path()
                    .unwrap()
                    .to_u32_vec_opt(false)
                    .unwrap()
            })
            .collect();
        assert_eq!(paths, [vec![64510, 64520], vec![4_200_000_001]]);
        let MrtMessage::TableDumpV2Message(TableDumpV2Message::RibAfi(rib6)) = &records[2].message
        else {
            panic!("third record is not a RIB");
        };
        assert_eq!(rib6.rib_type, TableDumpV2Type::RibIpv6Unicast);
        let nlri = rib6.rib_entries[0].attributes.get_reachable_nlri().unwrap();
        assert_eq!(
            nlri.next_hop.map(|n| n.addr()),
            Some(IpAddr::V6(NEXT_HOP_V6))
        );
        assert_eq!(nlri.prefixes[0].prefix.to_string(), "2001:db8:1::/48");
    }
}
