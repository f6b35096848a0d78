//! The single-node example answered over UDP and TCP by hickory's client: every case the
//! README walks through, both families, with and without ECS, and every negative answer.

use std::net::UdpSocket;
use std::time::Duration;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{RData, RecordType};
use hickory_proto::serialize::binary::BinDecodable;
use sparrow_cluster_tests::{Ask, TestNode, example_config, example_variant};

use crate::{answers, ecs};

async fn example() -> TestNode {
    TestNode::start(&example_config())
        .await
        .expect("example node starts")
}

#[tokio::test]
async fn geo_answers_follow_as_hops_static_map_and_own_pop() {
    let node = example().await;
    // (client subnet, query type, expected answer, expected ECS scope)
    let cases = [
        ("100.64.1.0/24", RecordType::A, "192.0.2.10", 24), // 1 hop from ams
        ("100.64.2.0/24", RecordType::A, "198.51.100.10", 24), // 1 hop from nyc
        ("100.64.3.0/24", RecordType::A, "203.0.113.10", 24), // 1 hop from syd
        ("100.64.4.0/24", RecordType::A, "198.51.100.10", 24), // ams/nyc tie: the hash picks nyc
        ("100.64.5.0/24", RecordType::A, "203.0.113.10", 24), // static map wins over ams
        ("100.99.0.0/16", RecordType::A, "192.0.2.10", 11), // no route: own POP
        ("100.64.2.0/24", RecordType::AAAA, "2001:db8:b::10", 24),
        ("2001:db8:ff01::/48", RecordType::AAAA, "2001:db8:a::10", 48),
        ("2001:db8:ff02::/48", RecordType::AAAA, "2001:db8:b::10", 48),
        ("2001:db8:ff02::/48", RecordType::A, "198.51.100.10", 48),
        ("2001:db8:ff02:77::/64", RecordType::A, "198.51.100.10", 48),
        ("100.64.2.128/25", RecordType::A, "198.51.100.10", 24),
    ];
    for (subnet, rtype, want, scope) in cases {
        let r = Ask::new("www.example.net.", rtype)
            .subnet(subnet)
            .send(node.addr)
            .await
            .unwrap();
        assert_eq!(r.metadata.response_code, ResponseCode::NoError, "{subnet}");
        assert!(r.metadata.authoritative, "{subnet}: AA");
        assert_eq!(answers(&r), [want], "{subnet} {rtype}");
        assert_eq!(r.answers[0].ttl, 30, "geo TTL");
        // The option is echoed with the client's own source and a scope.
        let net: ipnet::IpNet = subnet.parse().unwrap();
        assert_eq!(ecs(&r), Some((net.to_string(), scope)), "{subnet}");
    }
    node.stop().await.unwrap();
}

#[tokio::test]
async fn without_ecs_the_resolver_address_decides_and_no_option_is_returned() {
    let node = example().await;
    // The resolver is 127.0.0.1, which no view routes: the own POP answers.
    let r = Ask::new("www.example.net.", RecordType::A)
        .send(node.addr)
        .await
        .unwrap();
    assert_eq!(answers(&r), ["192.0.2.10"]);
    assert_eq!(ecs(&r), None);
    assert!(r.edns.is_some(), "an OPT record answers an OPT record");
    let r = Ask::new("www.example.net.", RecordType::AAAA)
        .no_edns()
        .send(node.addr)
        .await
        .unwrap();
    assert_eq!(answers(&r), ["2001:db8:a::10"]);
    assert!(r.edns.is_none(), "no OPT record without one in the query");
    node.stop().await.unwrap();
}

#[tokio::test]
async fn without_ecs_the_resolver_address_decides_over_both_families() {
    // Give nyc a 1-hop route to the IPv4 loopback and syd one to the IPv6 loopback.
    let config = example_variant(|t| t);
    let views = config.parent().unwrap().join("views");
    let append = |file: &str, line: &str| {
        let path = views.join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, format!("{text}{line}\n")).unwrap();
    };
    append("nyc.routes", "127.0.0.0/8 64497");
    append("syd.routes", "::1/128 64498");
    for (listen, want) in [
        ("127.0.0.1:0", "198.51.100.10"),
        ("[::1]:0", "203.0.113.10"),
    ] {
        let node = TestNode::start_on(&config, listen.parse().unwrap())
            .await
            .unwrap();
        for ask in [
            Ask::new("www.example.net.", RecordType::A),
            Ask::new("www.example.net.", RecordType::A).tcp(),
        ] {
            let r = ask.send(node.addr).await.unwrap();
            assert_eq!(
                answers(&r),
                [want],
                "resolver on {listen} over {:?}",
                ask.transport
            );
            assert_eq!(ecs(&r), None);
        }
        // With ECS, the subnet decides, whatever the resolver's address.
        let r = Ask::new("www.example.net.", RecordType::A)
            .subnet("100.64.1.0/24")
            .send(node.addr)
            .await
            .unwrap();
        assert_eq!(answers(&r), ["192.0.2.10"]);
        node.stop().await.unwrap();
    }
}

#[tokio::test]
async fn ecs_source_zero_means_no_tailoring_and_scope_zero() {
    let node = example().await;
    let r = Ask::new("www.example.net.", RecordType::A)
        .subnet("0.0.0.0/0")
        .send(node.addr)
        .await
        .unwrap();
    assert_eq!(answers(&r), ["192.0.2.10"]);
    assert_eq!(ecs(&r), Some(("0.0.0.0/0".to_owned(), 0)));
    node.stop().await.unwrap();
}

#[tokio::test]
async fn tcp_gives_the_same_answers_as_udp() {
    let node = example().await;
    for subnet in [
        "100.64.1.0/24",
        "100.64.2.0/24",
        "100.64.3.0/24",
        "2001:db8:ff02::/48",
    ] {
        let udp = Ask::new("www.example.net.", RecordType::A).subnet(subnet);
        let tcp = udp.clone().tcp();
        let (u, t) = (
            udp.send(node.addr).await.unwrap(),
            tcp.send(node.addr).await.unwrap(),
        );
        assert_eq!(answers(&u), answers(&t), "{subnet}");
        assert_eq!(ecs(&u), ecs(&t), "{subnet}");
    }
    node.stop().await.unwrap();
}

#[tokio::test]
async fn negative_answers_carry_the_soa() {
    let node = example().await;
    // (name, type, rcode)
    let cases = [
        ("nope.example.net.", RecordType::A, ResponseCode::NXDomain),
        (
            "a.b.mail.example.net.",
            RecordType::A,
            ResponseCode::NXDomain,
        ),
        ("www.example.net.", RecordType::MX, ResponseCode::NoError),
        ("www.example.net.", RecordType::TXT, ResponseCode::NoError),
        ("mail.example.net.", RecordType::TXT, ResponseCode::NoError),
        ("_udp.example.net.", RecordType::A, ResponseCode::NoError), // empty non-terminal
    ];
    for (name, rtype, rcode) in cases {
        for ask in [Ask::new(name, rtype), Ask::new(name, rtype).tcp()] {
            let r = ask.send(node.addr).await.unwrap();
            assert_eq!(r.metadata.response_code, rcode, "{name} {rtype}");
            assert!(r.metadata.authoritative, "{name}");
            assert!(r.answers.is_empty(), "{name} {rtype}: {:?}", r.answers);
            assert_eq!(r.authorities.len(), 1, "{name}");
            let soa = &r.authorities[0];
            assert_eq!(soa.record_type(), RecordType::SOA);
            assert_eq!(soa.ttl, 60, "negative TTL is the SOA minimum");
        }
    }
    node.stop().await.unwrap();
}

#[tokio::test]
async fn names_outside_the_zone_are_refused() {
    let node = example().await;
    for name in ["www.example.org.", "example.", "."] {
        let r = Ask::new(name, RecordType::A).send(node.addr).await.unwrap();
        assert_eq!(r.metadata.response_code, ResponseCode::Refused, "{name}");
        assert!(!r.metadata.authoritative);
        assert!(r.answers.is_empty() && r.authorities.is_empty());
    }
    node.stop().await.unwrap();
}

#[tokio::test]
async fn static_records_and_cnames_into_geo_names() {
    let node = example().await;
    let ask = |name: &str, t| Ask::new(name, t);
    let r = ask("example.net.", RecordType::SOA)
        .send(node.addr)
        .await
        .unwrap();
    assert_eq!(r.answers.len(), 1);
    let r = ask("example.net.", RecordType::NS)
        .send(node.addr)
        .await
        .unwrap();
    assert_eq!(answers(&r), ["NS ns1.example.net.", "NS ns2.example.net."]);
    let r = ask("example.net.", RecordType::MX)
        .send(node.addr)
        .await
        .unwrap();
    assert_eq!(answers(&r), ["MX 10 mail.example.net."]);
    let r = ask("ns2.example.net.", RecordType::A)
        .send(node.addr)
        .await
        .unwrap();
    assert_eq!(answers(&r), ["198.51.100.53"]);
    let r = ask("_sip._udp.example.net.", RecordType::SRV)
        .send(node.addr)
        .await
        .unwrap();
    assert_eq!(answers(&r), ["SRV 10 60 5060 sip.example.net."]);
    // A CNAME into the geo name is followed, and the geo part is tailored.
    let r = ask("api.example.net.", RecordType::A)
        .subnet("100.64.2.0/24")
        .send(node.addr)
        .await
        .unwrap();
    assert_eq!(answers(&r), ["CNAME www.example.net.", "198.51.100.10"]);
    assert_eq!(ecs(&r), Some(("100.64.2.0/24".to_owned(), 24)));
    // Asking for the CNAME itself does not follow it, and is not tailored.
    let r = ask("api.example.net.", RecordType::CNAME)
        .subnet("100.64.2.0/24")
        .send(node.addr)
        .await
        .unwrap();
    assert_eq!(answers(&r), ["CNAME www.example.net."]);
    assert_eq!(ecs(&r), Some(("100.64.2.0/24".to_owned(), 0)));
    // Names are case-insensitive.
    let r = ask("WwW.ExAmPlE.NeT.", RecordType::A)
        .subnet("100.64.3.0/24")
        .send(node.addr)
        .await
        .unwrap();
    assert_eq!(answers(&r), ["203.0.113.10"]);
    node.stop().await.unwrap();
}

/// Builds a wire-format query for www.example.net A carrying `options` in its OPT record.
fn raw_query(id: u16, edns_version: u8, options: &[u8]) -> Vec<u8> {
    let mut m = id.to_be_bytes().to_vec();
    m.extend([0x00, 0x00, 0, 1, 0, 0, 0, 0, 0, 1]);
    for label in ["www", "example", "net"] {
        m.push(label.len() as u8);
        m.extend(label.as_bytes());
    }
    m.extend([0, 0, 1, 0, 1]);
    m.extend([0, 0, 41, 0x04, 0xd0, 0, edns_version, 0, 0]);
    m.extend((options.len() as u16).to_be_bytes());
    m.extend(options);
    m
}

fn exchange_raw(server: std::net::SocketAddr, query: &[u8]) -> Message {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    socket.send_to(query, server).unwrap();
    let mut buf = [0u8; 4096];
    let (n, _) = socket.recv_from(&mut buf).unwrap();
    Message::from_bytes(&buf[..n]).unwrap()
}

fn ecs_option(family: u16, source: u8, addr: &[u8]) -> Vec<u8> {
    let mut data = family.to_be_bytes().to_vec();
    data.extend([source, 0]);
    data.extend(addr);
    let mut v = 8u16.to_be_bytes().to_vec();
    v.extend((data.len() as u16).to_be_bytes());
    v.extend(data);
    v
}

#[tokio::test]
async fn malformed_client_subnet_gets_formerr_and_the_node_keeps_serving() {
    let node = example().await;
    let server = node.addr;
    let bad = [
        ecs_option(1, 24, &[100, 64, 2, 0]), // an octet too many
        ecs_option(1, 20, &[100, 64, 31]),   // bits past the source prefix
        ecs_option(3, 0, &[]),               // unknown family
        ecs_option(1, 33, &[1, 2, 3, 4, 5]), // source longer than IPv4
        ecs_option(1, 24, &[100, 64]),       // an octet short
    ];
    let results = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        for (i, option) in bad.iter().enumerate() {
            let r = exchange_raw(server, &raw_query(0x100 + i as u16, 0, option));
            out.push((r.metadata.id, r.metadata.response_code));
        }
        // A well-formed option through the same raw path is answered.
        let good = exchange_raw(
            server,
            &raw_query(0x200, 0, &ecs_option(1, 24, &[100, 64, 2])),
        );
        (out, good)
    })
    .await
    .unwrap();
    let (out, good) = results;
    for (i, (id, rcode)) in out.iter().enumerate() {
        assert_eq!(*id, 0x100 + i as u16);
        assert_eq!(*rcode, ResponseCode::FormErr, "case {i}");
    }
    assert_eq!(good.metadata.response_code, ResponseCode::NoError);
    assert!(matches!(good.answers[0].data, RData::A(a) if a.to_string() == "198.51.100.10"));
    node.stop().await.unwrap();
}

#[tokio::test]
async fn unknown_edns_version_gets_badvers() {
    let node = example().await;
    let server = node.addr;
    let r = tokio::task::spawn_blocking(move || exchange_raw(server, &raw_query(7, 1, &[])))
        .await
        .unwrap();
    // RCODE 16 is BADVERS in a response carrying OPT (RFC 6891; the decoder names it BADSIG).
    assert_eq!(u16::from(r.metadata.response_code), 16);
    assert!(r.edns.is_some(), "BADVERS travels in the OPT record");
    node.stop().await.unwrap();
}

#[tokio::test]
async fn large_answers_truncate_over_udp_and_come_whole_over_tcp() {
    let config = example_variant(|text| {
        let mut extra = String::new();
        for i in 0..60 {
            extra.push_str(&format!(
                "[[zone.record]]\nname = \"big\"\ntype = \"TXT\"\ndata = \"\\\"record {i} padding padding padding\\\"\"\n\n"
            ));
        }
        text.replacen("[[pop]]", &format!("{extra}[[pop]]"), 1)
    });
    let node = TestNode::start(&config).await.unwrap();
    let udp = Ask::new("big.example.net.", RecordType::TXT)
        .send(node.addr)
        .await
        .unwrap();
    assert!(udp.metadata.truncation, "TC set over UDP");
    assert!(udp.answers.len() < 60);
    let tcp = Ask::new("big.example.net.", RecordType::TXT)
        .tcp()
        .send(node.addr)
        .await
        .unwrap();
    assert!(!tcp.metadata.truncation);
    assert_eq!(tcp.answers.len(), 60);
    let no_edns = Ask::new("big.example.net.", RecordType::TXT)
        .no_edns()
        .send(node.addr)
        .await
        .unwrap();
    assert!(no_edns.metadata.truncation, "512-byte limit without EDNS");
    node.stop().await.unwrap();
}

#[tokio::test]
async fn more_answers_list_pops_in_rank_order_and_drained_pops_are_skipped() {
    let config = example_variant(|t| t.replace("answers = 1 ", "answers = 2 "));
    let node = TestNode::start(&config).await.unwrap();
    let r = Ask::new("www.example.net.", RecordType::A)
        .subnet("100.64.2.0/24")
        .send(node.addr)
        .await
        .unwrap();
    assert_eq!(
        answers(&r),
        ["198.51.100.10", "192.0.2.10"],
        "nyc (1 hop), ams (3)"
    );
    node.stop().await.unwrap();

    let config = example_variant(|t| {
        t.replace(
            "route_view = \"views/nyc.routes\"",
            "route_view = \"views/nyc.routes\"\nadmin = \"drained\"",
        )
    });
    let node = TestNode::start(&config).await.unwrap();
    for (subnet, want) in [
        ("100.64.2.0/24", "192.0.2.10"),
        ("2001:db8:ff02::/48", "192.0.2.10"),
    ] {
        let r = Ask::new("www.example.net.", RecordType::A)
            .subnet(subnet)
            .send(node.addr)
            .await
            .unwrap();
        assert_eq!(answers(&r), [want], "{subnet}: nyc is drained, ams is next");
    }
    node.stop().await.unwrap();
}
