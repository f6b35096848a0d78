//! UPDATE, OPEN and header handling on message bytes written out from the RFCs, field by
//! field, and checked against `bgpkit-parser` where both decode the same thing.

use bytes::Bytes;

use super::*;
use crate::bgp::rib::Rib;

/// ORIGIN IGP: flags 0x40 (well-known transitive), type 1, length 1, value 0.
const ORIGIN_IGP: [u8; 4] = [0x40, 1, 1, 0];
/// NEXT_HOP 192.0.2.1: flags 0x40, type 3, length 4.
const NEXT_HOP: [u8; 7] = [0x40, 3, 4, 192, 0, 2, 1];

/// AS_PATH with one AS_SEQUENCE of 4-octet ASNs: flags 0x40, type 2, length, then segment
/// type 2, count, ASNs.
fn as_path4(asns: &[u32]) -> Vec<u8> {
    let mut v = vec![0x40, 2, (2 + 4 * asns.len()) as u8, 2, asns.len() as u8];
    for a in asns {
        v.extend_from_slice(&a.to_be_bytes());
    }
    v
}

/// The same with 2-octet ASNs (a session without the 4-octet AS capability).
fn as_path2(asns: &[u16]) -> Vec<u8> {
    let mut v = vec![0x40, 2, (2 + 2 * asns.len()) as u8, 2, asns.len() as u8];
    for a in asns {
        v.extend_from_slice(&a.to_be_bytes());
    }
    v
}

/// An UPDATE body: withdrawn routes length + withdrawn, path attributes length + attributes,
/// NLRI.
fn body(withdrawn: &[u8], attrs: &[u8], nlri: &[u8]) -> Vec<u8> {
    let mut b = (withdrawn.len() as u16).to_be_bytes().to_vec();
    b.extend_from_slice(withdrawn);
    b.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
    b.extend_from_slice(attrs);
    b.extend_from_slice(nlri);
    b
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn flat(path: &[Segment]) -> Vec<u32> {
    let mut b = crate::routes::aspath::PathBuilder::default();
    b.extend(path);
    b.finish(0).into_vec()
}

/// bgpkit-parser's reading of the same UPDATE body: (announced, withdrawn, AS path).
fn bgpkit(body: &[u8], four_octet: bool) -> (Vec<IpNet>, Vec<IpNet>, Option<Vec<u32>>) {
    use bgpkit_parser::models::AsnLength;
    let len = if four_octet {
        AsnLength::Bits32
    } else {
        AsnLength::Bits16
    };
    let u = bgpkit_parser::parser::bgp::messages::parse_bgp_update_message(
        Bytes::copy_from_slice(body),
        false,
        &len,
    )
    .unwrap();
    let mut announced: Vec<IpNet> = u.announced_prefixes.iter().map(|p| p.prefix).collect();
    let mut withdrawn: Vec<IpNet> = u.withdrawn_prefixes.iter().map(|p| p.prefix).collect();
    if let Some(n) = u.attributes.get_reachable_nlri() {
        announced.extend(n.prefixes.iter().map(|p| p.prefix));
    }
    if let Some(n) = u.attributes.get_unreachable_nlri() {
        withdrawn.extend(n.prefixes.iter().map(|p| p.prefix));
    }
    let path = u
        .attributes
        .effective_as_path()
        .and_then(|p| p.to_u32_vec_opt(false));
    (announced, withdrawn, path)
}

#[test]
fn ipv4_announcement_with_a_4_octet_path() {
    // NLRI: 100.64.1.0/24 = length 24, then 3 octets; 100.64.0.0/15 = length 15, 2 octets.
    let nlri = [24, 100, 64, 1, 15, 100, 64];
    let attrs = [
        &ORIGIN_IGP[..],
        &as_path4(&[64510, 4_200_000_001]),
        &NEXT_HOP,
    ]
    .concat();
    let b = body(&[], &attrs, &nlri);
    let u = parse_update(&b, true).unwrap();
    assert_eq!(u.announced, [net("100.64.1.0/24"), net("100.64.0.0/15")]);
    assert_eq!(flat(&u.path), [64510, 4_200_000_001]);
    assert_eq!(u.withdrawn, []);
    assert_eq!(u.end_of_rib, None);
    assert_eq!(u.treat_as_withdraw, None);
    let (announced, withdrawn, path) = bgpkit(&b, true);
    assert_eq!(
        (announced, withdrawn),
        (u.announced.clone(), u.withdrawn.clone())
    );
    assert_eq!(path.unwrap(), flat(&u.path));
}

#[test]
fn withdrawal_and_implicit_withdrawal_in_the_rib() {
    let mut rib = Rib::new(64501);
    // The POP's router (AS 64501) prepends itself; the RIB drops it.
    let attrs = [
        &ORIGIN_IGP[..],
        &as_path4(&[64501, 64510, 64520]),
        &NEXT_HOP,
    ]
    .concat();
    let a = parse_update(&body(&[], &attrs, &[24, 100, 64, 1, 24, 100, 64, 2]), true).unwrap();
    assert_eq!(rib.apply(&a).announced, 2);
    assert_eq!(rib.get(&net("100.64.1.0/24")), Some(&[64510, 64520][..]));
    // Implicit withdraw: the same prefix announced again replaces its path.
    let attrs = [&ORIGIN_IGP[..], &as_path4(&[64501, 64530]), &NEXT_HOP].concat();
    let b = parse_update(&body(&[], &attrs, &[24, 100, 64, 1]), true).unwrap();
    rib.apply(&b);
    assert_eq!(rib.get(&net("100.64.1.0/24")), Some(&[64530][..]));
    assert_eq!(rib.len(), 2);
    // Withdrawn routes: 100.64.2.0/24, and one never announced (counts nothing).
    let w = body(&[24, 100, 64, 2, 24, 100, 64, 99], &[], &[]);
    let c = parse_update(&w, true).unwrap();
    assert_eq!(c.withdrawn, [net("100.64.2.0/24"), net("100.64.99.0/24")]);
    assert_eq!(c.end_of_rib, None, "a withdrawal is not End-of-RIB");
    assert_eq!(bgpkit(&w, true).1, c.withdrawn);
    assert_eq!(rib.apply(&c).withdrawn, 1);
    assert_eq!(rib.len(), 1);
    // A prefix both withdrawn and announced in one UPDATE ends up announced.
    let attrs = [&ORIGIN_IGP[..], &as_path4(&[64501, 64540]), &NEXT_HOP].concat();
    let d = parse_update(&body(&[24, 100, 64, 1], &attrs, &[24, 100, 64, 1]), true).unwrap();
    rib.apply(&d);
    assert_eq!(rib.get(&net("100.64.1.0/24")), Some(&[64540][..]));
}

#[test]
fn as_set_counts_one_hop() {
    // AS_PATH: AS_SEQUENCE (64510), then AS_SET {64530, 64520} (segment type 1).
    let mut path = vec![0x40, 2, 16, 2, 1];
    path.extend_from_slice(&64510u32.to_be_bytes());
    path.extend_from_slice(&[1, 2]);
    path.extend_from_slice(&64530u32.to_be_bytes());
    path.extend_from_slice(&64520u32.to_be_bytes());
    let attrs = [&ORIGIN_IGP[..], &path, &NEXT_HOP].concat();
    let u = parse_update(&body(&[], &attrs, &[16, 100, 64]), true).unwrap();
    assert_eq!(u.path[1].kind, SegmentKind::Set);
    let mut rib = Rib::new(64501);
    rib.apply(&u);
    // Two hops: the sequence's one ASN and the set (stored as its lowest ASN).
    assert_eq!(rib.get(&net("100.64.0.0/16")), Some(&[64510, 64520][..]));
}

#[test]
fn as_trans_and_as4_path_from_a_2_octet_session() {
    // AS_PATH (2-octet): 64510 23456 64520; AS4_PATH (flags 0xc0 optional transitive, type
    // 17): 4200000001 64520.
    let mut as4 = vec![0xc0, 17, 10, 2, 2];
    as4.extend_from_slice(&4_200_000_001u32.to_be_bytes());
    as4.extend_from_slice(&64520u32.to_be_bytes());
    let attrs = [
        &ORIGIN_IGP[..],
        &as_path2(&[64510, 23456, 64520]),
        &NEXT_HOP,
        &as4,
    ]
    .concat();
    let b = body(&[], &attrs, &[24, 100, 64, 1]);
    let u = parse_update(&b, false).unwrap();
    assert_eq!(flat(&u.path), [64510, 4_200_000_001, 64520]);
    assert_eq!(bgpkit(&b, false).2.unwrap(), flat(&u.path));
    // On a 4-octet session AS4_PATH means nothing (RFC 6793 §4.1) and is ignored.
    let attrs4 = [
        &ORIGIN_IGP[..],
        &as_path4(&[64510, 23456, 64520]),
        &NEXT_HOP,
        &as4,
    ]
    .concat();
    let u4 = parse_update(&body(&[], &attrs4, &[24, 100, 64, 1]), true).unwrap();
    assert_eq!(flat(&u4.path), [64510, 23456, 64520]);
    // An AGGREGATOR naming a 2-octet AS other than AS_TRANS: AS4_PATH is ignored (§4.2.3).
    let aggregator = [0xc0, 7, 6, 0xfb, 0xf2, 192, 0, 2, 9]; // AS 64498, 192.0.2.9
    let attrs = [&attrs[..], &aggregator].concat();
    let v = parse_update(&body(&[], &attrs, &[24, 100, 64, 1]), false).unwrap();
    assert_eq!(flat(&v.path), [64510, 23456, 64520]);
    // A malformed AS4_PATH (segment count past its end) is discarded, the route kept.
    let bad_as4 = [0xc0, 17, 6, 2, 3, 0, 0, 0xfb, 0xf2];
    let attrs = [
        &ORIGIN_IGP[..],
        &as_path2(&[64510, 23456]),
        &NEXT_HOP,
        &bad_as4,
    ]
    .concat();
    let w = parse_update(&body(&[], &attrs, &[24, 100, 64, 1]), false).unwrap();
    assert_eq!(w.treat_as_withdraw, None);
    assert_eq!(flat(&w.path), [64510, 23456]);
}

/// MP_REACH_NLRI for IPv6 unicast: flags 0x80 (optional), type 14, length; AFI 2, SAFI 1,
/// next hop length 16, next hop 2001:db8::1, reserved 0, NLRI.
fn mp_reach_v6(nlri: &[u8]) -> Vec<u8> {
    let mut v = vec![0x80, 14, (21 + nlri.len()) as u8, 0, 2, 1, 16];
    v.extend_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
    v.push(0);
    v.extend_from_slice(nlri);
    v
}

/// MP_UNREACH_NLRI for IPv6 unicast: flags 0x80, type 15, length; AFI 2, SAFI 1, NLRI.
fn mp_unreach_v6(nlri: &[u8]) -> Vec<u8> {
    let mut v = vec![0x80, 15, (3 + nlri.len()) as u8, 0, 2, 1];
    v.extend_from_slice(nlri);
    v
}

#[test]
fn ipv6_mp_reach_and_mp_unreach() {
    // 2001:db8:ff01::/48: length 48, six octets.
    let p48 = [48, 0x20, 0x01, 0x0d, 0xb8, 0xff, 0x01];
    // 2001:db8::/32: length 32, four octets.
    let p32 = [32, 0x20, 0x01, 0x0d, 0xb8];
    let reach = mp_reach_v6(&[&p48[..], &p32].concat());
    let attrs = [&ORIGIN_IGP[..], &as_path4(&[64510]), &reach].concat();
    let b = body(&[], &attrs, &[]);
    let u = parse_update(&b, true).unwrap();
    assert_eq!(
        u.announced,
        [net("2001:db8:ff01::/48"), net("2001:db8::/32")]
    );
    assert_eq!(flat(&u.path), [64510]);
    assert_eq!(
        u.treat_as_withdraw, None,
        "NEXT_HOP is not needed with MP_REACH_NLRI only"
    );
    assert_eq!(bgpkit(&b, true).0, u.announced);
    let w = body(&[], &mp_unreach_v6(&p48), &[]);
    let u = parse_update(&w, true).unwrap();
    assert_eq!(u.withdrawn, [net("2001:db8:ff01::/48")]);
    assert_eq!(u.end_of_rib, None);
    assert_eq!(bgpkit(&w, true).1, u.withdrawn);
}

#[test]
fn end_of_rib_is_not_a_withdrawal() {
    let mut rib = Rib::new(64501);
    let attrs = [&ORIGIN_IGP[..], &as_path4(&[64510]), &NEXT_HOP].concat();
    rib.apply(&parse_update(&body(&[], &attrs, &[24, 100, 64, 1]), true).unwrap());
    let reach = mp_reach_v6(&[32, 0x20, 0x01, 0x0d, 0xb8]);
    let attrs6 = [&ORIGIN_IGP[..], &as_path4(&[64510]), &reach].concat();
    rib.apply(&parse_update(&body(&[], &attrs6, &[]), true).unwrap());
    // IPv4: an UPDATE with nothing in it (RFC 4724 §2).
    let v4 = parse_update(&end_of_rib(Family::Ipv4Unicast)[HEADER_LEN..], true).unwrap();
    assert_eq!(v4.end_of_rib, Some(Family::Ipv4Unicast));
    // IPv6: an MP_UNREACH_NLRI with no prefix and nothing else.
    let v6 = parse_update(&end_of_rib(Family::Ipv6Unicast)[HEADER_LEN..], true).unwrap();
    assert_eq!(v6.end_of_rib, Some(Family::Ipv6Unicast));
    assert_eq!(v6.withdrawn, []);
    let families = [Family::Ipv4Unicast, Family::Ipv6Unicast];
    rib.apply(&v4);
    assert!(!rib.complete(&families));
    rib.apply(&v6);
    assert!(rib.complete(&families));
    assert_eq!(rib.len(), 2, "End-of-RIB withdrew nothing");
}

#[track_caller]
fn reset(body: &[u8]) -> (u8, u8) {
    let n = parse_update(body, true).unwrap_err();
    (n.code, n.subcode)
}

#[track_caller]
fn withdrawn_because(body: &[u8]) -> String {
    let u = parse_update(body, true).unwrap();
    assert_eq!(u.announced, [], "announced despite the error");
    assert!(!u.withdrawn.is_empty(), "nothing withdrawn");
    u.treat_as_withdraw.unwrap()
}

#[test]
fn malformed_attribute_lengths() {
    let nlri = [24, 100, 64, 1];
    let good = [&ORIGIN_IGP[..], &as_path4(&[64510]), &NEXT_HOP].concat();
    // Withdrawn routes length past the end of the message: Malformed Attribute List.
    let mut b = body(&[], &good, &nlri);
    b[1] = 200;
    assert_eq!(reset(&b), (3, 1));
    // Total path attribute length past the end: Malformed Attribute List.
    let mut b = body(&[], &good, &nlri);
    b[3] = 200;
    assert_eq!(reset(&b), (3, 1));
    // AS_PATH's own length running past the attribute section: Malformed Attribute List.
    let mut overrun = good.clone();
    overrun[6] = 60;
    assert_eq!(reset(&body(&[], &overrun, &nlri)), (3, 1));
    // Two bytes left where an attribute header needs three.
    let cut = [&good[..], &[0x40, 1]].concat();
    assert_eq!(reset(&body(&[], &cut, &nlri)), (3, 1));
    // ORIGIN of length 2: treat-as-withdraw (RFC 7606 §7.1).
    let origin2 = [&[0x40, 1, 2, 0, 0][..], &as_path4(&[64510]), &NEXT_HOP].concat();
    assert!(withdrawn_because(&body(&[], &origin2, &nlri)).contains("ORIGIN"));
    // An AS_PATH segment claiming more ASes than the attribute holds: treat-as-withdraw.
    let mut seg = as_path4(&[64510]);
    seg[4] = 3;
    let attrs = [&ORIGIN_IGP[..], &seg, &NEXT_HOP].concat();
    assert!(withdrawn_because(&body(&[], &attrs, &nlri)).contains("AS_PATH"));
    // NEXT_HOP of 5 bytes: treat-as-withdraw.
    let nh5 = [
        &ORIGIN_IGP[..],
        &as_path4(&[64510]),
        &[0x40, 3, 5, 192, 0, 2, 1, 0],
    ]
    .concat();
    assert!(withdrawn_because(&body(&[], &nh5, &nlri)).contains("NEXT_HOP"));
    // No NEXT_HOP with classic NLRI: missing well-known attribute, treat-as-withdraw.
    let no_nh = [&ORIGIN_IGP[..], &as_path4(&[64510])].concat();
    assert!(withdrawn_because(&body(&[], &no_nh, &nlri)).contains("NEXT_HOP"));
    // ORIGIN flagged optional: treat-as-withdraw (RFC 7606 §3 c).
    let flags = [&[0xc0, 1, 1, 0][..], &as_path4(&[64510]), &NEXT_HOP].concat();
    assert!(withdrawn_because(&body(&[], &flags, &nlri)).contains("flags"));
    // A malformed LOCAL_PREF (3 bytes) is discarded; the route stays.
    let lp = [&good[..], &[0x40, 5, 3, 0, 0, 100]].concat();
    let u = parse_update(&body(&[], &lp, &nlri), true).unwrap();
    assert_eq!(u.announced, [net("100.64.1.0/24")]);
    // NLRI of length 33: Invalid Network Field.
    assert_eq!(reset(&body(&[], &good, &[33, 100, 64, 1, 0, 0])), (3, 10));
    // NLRI cut inside a prefix: Invalid Network Field.
    assert_eq!(reset(&body(&[], &good, &[24, 100, 64])), (3, 10));
    // MP_REACH_NLRI with an IPv6 next hop of 5 bytes: the NLRI cannot be found.
    let mut reach = mp_reach_v6(&[]);
    reach[6] = 5;
    let attrs = [&ORIGIN_IGP[..], &as_path4(&[64510]), &reach].concat();
    assert_eq!(reset(&body(&[], &attrs, &[])), (3, 9));
    // MP_REACH_NLRI twice: Malformed Attribute List (RFC 7606 §3 g).
    let twice = [
        &ORIGIN_IGP[..],
        &as_path4(&[64510]),
        &mp_reach_v6(&[]),
        &mp_reach_v6(&[]),
    ]
    .concat();
    assert_eq!(reset(&body(&[], &twice, &[])), (3, 1));
    // An unknown well-known attribute (type 99, optional bit clear).
    let unknown = [&good[..], &[0x40, 99, 1, 0]].concat();
    assert_eq!(reset(&body(&[], &unknown, &nlri)), (3, 2));
    // An unknown optional attribute is passed over.
    let optional = [&good[..], &[0xc0, 99, 1, 0]].concat();
    assert!(parse_update(&body(&[], &optional, &nlri), true).is_ok());
}

fn header_of(len: u16, kind: u8) -> [u8; HEADER_LEN] {
    let mut h = [0xff; HEADER_LEN];
    h[16..18].copy_from_slice(&len.to_be_bytes());
    h[18] = kind;
    h
}

#[test]
fn message_header_errors() {
    assert_eq!(header(&header_of(19, KEEPALIVE)), Ok((KEEPALIVE, 19)));
    let mut bad_marker = header_of(19, KEEPALIVE);
    bad_marker[3] = 0;
    assert_eq!(header(&bad_marker).unwrap_err(), Notification::new(1, 1));
    // Bad Message Length carries the length field as data.
    assert_eq!(
        header(&header_of(4097, UPDATE)).unwrap_err(),
        Notification::with_data(1, 2, [0x10, 0x01])
    );
    assert_eq!(header(&header_of(20, KEEPALIVE)).unwrap_err().subcode, 2);
    assert_eq!(header(&header_of(22, UPDATE)).unwrap_err().subcode, 2);
    // Bad Message Type carries the type.
    assert_eq!(
        header(&header_of(19, 9)).unwrap_err(),
        Notification::with_data(1, 3, [9])
    );
}

fn local() -> LocalOpen {
    LocalOpen {
        asn: 65000,
        hold_time: 90,
        router_id: Ipv4Addr::new(192, 0, 2, 53),
    }
}

/// An OPEN as BIRD 2 sends it: version 4, AS 64501, hold 240, id 10.0.0.2, capabilities
/// multiprotocol IPv4 and IPv6 unicast, route refresh (2), graceful restart (64), 4-octet AS.
fn bird_open(version: u8, asn: u32, hold: u16) -> Vec<u8> {
    let mut caps = vec![
        1, 4, 0, 1, 0, 1, 1, 4, 0, 2, 0, 1, 2, 0, 64, 2, 0, 120, 65, 4,
    ];
    caps.extend_from_slice(&asn.to_be_bytes());
    let mut b = vec![version];
    b.extend_from_slice(&u16::try_from(asn).unwrap_or(23456).to_be_bytes());
    b.extend_from_slice(&hold.to_be_bytes());
    b.extend_from_slice(&[10, 0, 0, 2]);
    b.push((caps.len() + 2) as u8);
    b.extend_from_slice(&[2, caps.len() as u8]);
    b.extend_from_slice(&caps);
    b
}

#[test]
fn open_negotiation() {
    let open = Open::parse(&bird_open(4, 64501, 240)).unwrap();
    let n = negotiate(&open, &local(), 64501).unwrap();
    assert_eq!(n.hold_time, 90, "the smaller hold time");
    assert!(n.four_octet && n.end_of_rib);
    assert_eq!(n.families, [Family::Ipv4Unicast, Family::Ipv6Unicast]);
    // bgpkit-parser reads the same OPEN.
    let theirs = bgpkit_parser::parser::bgp::messages::parse_bgp_open_message(&mut Bytes::from(
        bird_open(4, 64501, 240),
    ))
    .unwrap();
    assert_eq!(theirs.hold_time, 240);
    // A 4-octet ASN arrives as AS_TRANS in My AS and in full in the capability.
    let open = Open::parse(&bird_open(4, 4_200_000_001, 90)).unwrap();
    assert_eq!(open.my_as, 23456);
    assert!(negotiate(&open, &local(), 4_200_000_001).is_ok());
    // Bad Peer AS, with the received My AS as data.
    let e = negotiate(
        &Open::parse(&bird_open(4, 64501, 90)).unwrap(),
        &local(),
        64502,
    );
    assert_eq!(
        e.unwrap_err(),
        Notification::with_data(2, 2, 64501u16.to_be_bytes())
    );
    // Unsupported Version Number, with the version we speak.
    assert_eq!(
        Open::parse(&bird_open(3, 64501, 90)).unwrap_err(),
        Notification::with_data(2, 1, [0, 4])
    );
    // Unacceptable Hold Time.
    let e = negotiate(
        &Open::parse(&bird_open(4, 64501, 2)).unwrap(),
        &local(),
        64501,
    );
    assert_eq!(e.unwrap_err(), Notification::new(2, 6));
    // An optional parameter other than capabilities.
    let mut b = bird_open(4, 64501, 90);
    b[10] = 1;
    assert_eq!(Open::parse(&b).unwrap_err().subcode, 4);
    // Our OPEN parses as an OPEN with what we mean.
    let ours = local().encode();
    assert_eq!(
        header(ours[..HEADER_LEN].try_into().unwrap()),
        Ok((OPEN, ours.len()))
    );
    let back = Open::parse(&ours[HEADER_LEN..]).unwrap();
    assert_eq!(back.as4, Some(65000));
    assert_eq!(
        back.families,
        Some(vec![Family::Ipv4Unicast, Family::Ipv6Unicast])
    );
    assert!(back.graceful_restart);
}

#[test]
fn notification_round_trip_and_names() {
    let n = Notification::with_data(3, 1, [1, 2]);
    let bytes = n.encode();
    assert_eq!(
        header(bytes[..HEADER_LEN].try_into().unwrap()),
        Ok((NOTIFICATION, 23))
    );
    assert_eq!(Notification::parse(&bytes[HEADER_LEN..]), n);
    assert_eq!(
        n.to_string(),
        "UPDATE Message Error (3/1) Malformed Attribute List"
    );
}

// See: issue 9 (fuzzing). An UPDATE body shorter than its two length fields indexed past
// its end (the session's header check kept it unreachable from the wire).
#[test]
fn r9_update_bodies_too_short_for_their_length_fields_are_refused() {
    for body in [&[][..], &[0], &[0, 0], &[0, 0, 0], &[0, 1, 24]] {
        assert!(parse_update(body, true).is_err(), "{body:?}");
        assert!(parse_update(body, false).is_err(), "{body:?}");
    }
}
