//! Route views from real BGP: a real BIRD 2 peers with a real node, announces, changes and
//! withdraws routes, goes away and comes back; BIRD's MRT dump gives the same view as its
//! BGP session; a malformed UPDATE from a raw TCP peer gets a NOTIFICATION.
//!
//! Addresses: the example's POP ams is AS 64501; its "router" is a BIRD in AS 64501, and
//! Sparrow peers with it from AS 65000. The router prepends its own AS to what it sends
//! Sparrow, which Sparrow does not count (see `routes::aspath`), so the paths below are the
//! router's view: nearest AS first, as in the example's route files.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::rr::RecordType;
use sparrow_cluster_tests::bird::{Bird, free_port};
use sparrow_cluster_tests::{Ask, TestNode, ViewLog, eventually, example_variant};
use sparrow_node::routes::mrt::{self, PeerSelector};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::answers;

const AMS_V4: &str = "192.0.2.10";
const NYC_V4: &str = "198.51.100.10";
const SYD_V4: &str = "203.0.113.10";
const AMS_V6: &str = "2001:db8:a::10";
const NYC_V6: &str = "2001:db8:b::10";

/// A prefix and its AS path (nearest first).
type Route<'a> = (&'a str, &'a [u32]);

/// BIRD export filter lines that give `prefix` the AS path `path` (nearest first) behind
/// the router's own AS: prepends in reverse order.
fn prepends(routes: &[(&str, &[u32])]) -> String {
    let mut out = String::new();
    for (prefix, path) in routes {
        out.push_str(&format!("  if net = {prefix} then {{"));
        for asn in path.iter().rev() {
            out.push_str(&format!(" bgp_path.prepend({asn});"));
        }
        out.push_str(" }\n");
    }
    out
}

/// Static routes for `routes` and filters that export them with their paths.
fn routes_and_filters(routes: &[(&str, &[u32])]) -> String {
    let (v4, v6): (Vec<Route<'_>>, Vec<Route<'_>>) =
        routes.iter().copied().partition(|(p, _)| !p.contains(':'));
    let statics = |list: &[(&str, &[u32])]| {
        list.iter()
            .map(|(p, _)| format!("route {p} blackhole;"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    format!(
        "protocol static s4 {{ ipv4; {} }}\n\
         protocol static s6 {{ ipv6; {} }}\n\
         filter out4 {{\n{}  accept;\n}}\n\
         filter out6 {{\n{}  accept;\n}}\n",
        statics(&v4),
        statics(&v6),
        prepends(&v4),
        prepends(&v6),
    )
}

/// The ams router: AS 64501 on 127.0.0.1:`port`, waiting for Sparrow (AS 65000) to connect.
fn router_config(port: u16, routes: &[(&str, &[u32])]) -> String {
    format!(
        "router id 10.0.0.1;\nlog stderr all;\nprotocol device {{}}\n{}\
         protocol bgp sparrow {{\n\
           local 127.0.0.1 port {port} as 64501;\n\
           neighbor 127.0.0.1 as 65000;\n\
           passive on; multihop;\n\
           hold time 9; keepalive time 3;\n\
           ipv4 {{ import none; export filter out4; next hop address 192.0.2.1; }};\n\
           ipv6 {{ import none; export filter out6; next hop address 2001:db8::1; }};\n\
         }}\n",
        routes_and_filters(routes)
    )
}

/// The example with the own POP's view from a BGP session (`[node.bgp]`).
fn bgp_node_config(bgp: &str) -> std::path::PathBuf {
    example_variant(|t| {
        t.replacen(
            "[zone]",
            &format!(
                "[node.bgp]\nlocal_asn = 65000\nrouter_id = \"192.0.2.53\"\npeer_asn = 64501\n\
                 hold_time_secs = 9\nretry_min_ms = 200\nretry_max_ms = 1000\n\
                 publish_interval_ms = 200\n{bgp}\n\n[zone]"
            ),
            1,
        )
    })
}

async fn answer(node: &TestNode, rtype: RecordType, subnet: &str) -> Vec<String> {
    match Ask::new("www.example.net.", rtype)
        .subnet(subnet)
        .send(node.addr)
        .await
    {
        Ok(r) => answers(&r),
        Err(e) => vec![format!("error: {e}")],
    }
}

/// Waits until every `(type, subnet, answer)` holds; panics with what was answered.
async fn answers_become(node: &TestNode, want: &[(RecordType, &str, &str)], what: &str) {
    let ok = eventually(Duration::from_secs(30), || async {
        for (rtype, subnet, a) in want {
            if answer(node, *rtype, subnet).await != [*a] {
                return false;
            }
        }
        true
    })
    .await;
    if !ok {
        let mut got = Vec::new();
        for (rtype, subnet, a) in want {
            got.push(format!(
                "{subnet} {rtype}: want {a}, got {:?}",
                answer(node, *rtype, subnet).await
            ));
        }
        panic!("{what}:\n{}", got.join("\n"));
    }
}

/// The own POP's view as sorted `PREFIX PATH...` lines.
fn own_view(node: &TestNode) -> Vec<String> {
    node.snapshot
        .load()
        .view(0)
        .map(|v| lines(v.entries()))
        .unwrap_or_default()
}

fn lines<'a>(entries: impl Iterator<Item = (ipnet::IpNet, &'a [u32])>) -> Vec<String> {
    let mut out: Vec<String> = entries
        .map(|(net, path)| {
            std::iter::once(net.to_string())
                .chain(path.iter().map(u32::to_string))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    out.sort();
    out
}

fn want(routes: &[(&str, &[u32])]) -> Vec<String> {
    let mut out: Vec<String> = routes
        .iter()
        .map(|(p, path)| {
            std::iter::once(p.to_string())
                .chain(path.iter().map(u32::to_string))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    out.sort();
    out
}

fn last_stale(log: &ViewLog) -> Option<Option<u64>> {
    log.lock().unwrap().last().map(|v| v.stale_since_ms)
}

/// Phase 1: paths of several lengths; ams is nearest for .1 and ff01, nyc for .2 and ff02,
/// syd for .3; only ams routes .6.
const PHASE1: &[(&str, &[u32])] = &[
    ("100.64.1.0/24", &[64496]),
    ("100.64.2.0/24", &[64510, 64520, 64497]),
    ("100.64.3.0/24", &[64510, 64530, 64540, 64550, 64498]),
    ("100.64.6.0/24", &[64510, 64511]),
    ("2001:db8:ff01::/48", &[64496]),
    ("2001:db8:ff02::/48", &[64510, 64520, 64497]),
];

/// Phase 2: .1 and ff01 withdrawn (nyc is then nearest), .2 and ff02 changed to the
/// router's own network (0 hops: ams wins), .3 unchanged, .6 lengthened.
const PHASE2: &[(&str, &[u32])] = &[
    ("100.64.2.0/24", &[]),
    ("100.64.3.0/24", &[64510, 64530, 64540, 64550, 64498]),
    ("100.64.6.0/24", &[64510, 64511, 64512, 64513]),
    ("2001:db8:ff02::/48", &[]),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bird_session_feeds_the_view_and_dns_answers_follow() {
    let port = free_port();
    let mut bird = Bird::start("ams", &router_config(port, PHASE1))
        .await
        .unwrap();
    let config = bgp_node_config(&format!("peer = \"127.0.0.1\"\npeer_port = {port}"));
    let (node, log) = TestNode::start_watching_views(&config).await.unwrap();
    bird.wait_established("sparrow", Duration::from_secs(30))
        .await
        .unwrap();

    answers_become(
        &node,
        &[
            (RecordType::A, "100.64.1.0/24", AMS_V4),
            (RecordType::A, "100.64.2.0/24", NYC_V4),
            (RecordType::A, "100.64.3.0/24", SYD_V4),
            (RecordType::A, "100.64.6.0/24", AMS_V4),
            (RecordType::AAAA, "2001:db8:ff01::/48", AMS_V6),
            (RecordType::AAAA, "2001:db8:ff02::/48", NYC_V6),
        ],
        "answers from BIRD's first table",
    )
    .await;
    assert_eq!(own_view(&node), want(PHASE1));
    assert_eq!(last_stale(&log), Some(None));

    // BIRD withdraws some routes and changes others.
    bird.reconfigure(&router_config(port, PHASE2)).unwrap();
    answers_become(
        &node,
        &[
            (RecordType::A, "100.64.1.0/24", NYC_V4),
            (RecordType::A, "100.64.2.0/24", AMS_V4),
            (RecordType::A, "100.64.3.0/24", SYD_V4),
            (RecordType::AAAA, "2001:db8:ff01::/48", NYC_V6),
            (RecordType::AAAA, "2001:db8:ff02::/48", AMS_V6),
        ],
        "answers after BIRD's withdrawals and changes",
    )
    .await;
    assert!(
        eventually(Duration::from_secs(10), || async {
            own_view(&node) == want(PHASE2)
        })
        .await,
        "view {:?}",
        own_view(&node)
    );

    // BIRD dies: the view is kept, marked stale, and the node keeps answering from it.
    bird.kill();
    assert!(
        eventually(Duration::from_secs(30), || async {
            matches!(last_stale(&log), Some(Some(_)))
        })
        .await,
        "view not marked stale after BIRD stopped"
    );
    assert_eq!(own_view(&node), want(PHASE2));
    answers_become(
        &node,
        &[
            (RecordType::A, "100.64.2.0/24", AMS_V4),
            (RecordType::AAAA, "2001:db8:ff02::/48", AMS_V6),
        ],
        "answers while BIRD is down",
    )
    .await;

    // BIRD comes back: the session is re-established and the view is current again.
    bird.restart().await.unwrap();
    bird.wait_established("sparrow", Duration::from_secs(30))
        .await
        .unwrap();
    assert!(
        eventually(Duration::from_secs(30), || async {
            last_stale(&log) == Some(None)
        })
        .await,
        "view still stale after BIRD came back"
    );
    assert_eq!(own_view(&node), want(PHASE2));
    node.stop().await.unwrap();
}

/// BIRD as an upstream (AS 64510 on 127.0.0.2) feeding the ams router.
fn upstream_config(port: u16, router_port: u16, routes: &[(&str, &[u32])]) -> String {
    format!(
        "router id 10.0.0.2;\nlog stderr all;\nprotocol device {{}}\n{}\
         protocol bgp rtr {{\n\
           local 127.0.0.2 port {port} as 64510;\n\
           neighbor 127.0.0.1 port {router_port} as 64501;\n\
           multihop; hold time 9; keepalive time 3;\n\
           ipv4 {{ import none; export filter out4; next hop address 192.0.2.2; }};\n\
           ipv6 {{ import none; export filter out6; next hop address 2001:db8::2; }};\n\
         }}\n",
        routes_and_filters(routes)
    )
}

/// The ams router between the upstream and Sparrow (passive, on 127.0.0.3).
fn middle_router_config(port: u16, upstream_port: u16, sparrow_port: u16) -> String {
    format!(
        "router id 10.0.0.1;\nlog stderr all;\nprotocol device {{}}\n\
         protocol bgp upstream {{\n\
           local 127.0.0.1 port {port} as 64501;\n\
           neighbor 127.0.0.2 port {upstream_port} as 64510;\n\
           passive on; multihop; hold time 9; keepalive time 3;\n\
           ipv4 {{ import all; export none; }};\n\
           ipv6 {{ import all; export none; }};\n\
         }}\n\
         protocol bgp sparrow {{\n\
           local 127.0.0.1 as 64501;\n\
           neighbor 127.0.0.3 port {sparrow_port} as 65000;\n\
           multihop; hold time 9; keepalive time 3;\n\
           ipv4 {{ import none; export all; next hop address 192.0.2.1; }};\n\
           ipv6 {{ import none; export all; next hop address 2001:db8::1; }};\n\
         }}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bird_mrt_dump_gives_the_same_view_as_its_bgp_session() {
    let (up_port, router_port, sparrow_port) = (free_port(), free_port(), free_port());
    let routes: &[(&str, &[u32])] = &[
        ("100.64.1.0/24", &[]),
        ("100.64.2.0/24", &[64520, 64497]),
        ("100.64.3.0/24", &[64530, 64540, 64550, 64498]),
        ("100.64.0.0/16", &[64599]),
        ("2001:db8:ff01::/48", &[]),
        ("2001:db8:ff02::/48", &[64520, 64497]),
    ];
    // Sparrow listens on 127.0.0.3 and accepts only the router (127.0.0.1).
    let config = bgp_node_config(&format!(
        "peer = \"127.0.0.1\"\nmode = \"passive\"\nlisten = \"127.0.0.3:{sparrow_port}\""
    ));
    let (node, _log) = TestNode::start_watching_views(&config).await.unwrap();
    let router = Bird::start(
        "router",
        &middle_router_config(router_port, up_port, sparrow_port),
    )
    .await
    .unwrap();
    let upstream = Bird::start("upstream", &upstream_config(up_port, router_port, routes))
        .await
        .unwrap();
    upstream
        .wait_established("rtr", Duration::from_secs(30))
        .await
        .unwrap();
    router
        .wait_established("sparrow", Duration::from_secs(30))
        .await
        .unwrap();
    // Through the router, every path starts with the upstream's AS.
    let expected: Vec<(String, Vec<u32>)> = routes
        .iter()
        .map(|(p, path)| {
            (
                p.to_string(),
                std::iter::once(64510).chain(path.iter().copied()).collect(),
            )
        })
        .collect();
    let expected: Vec<String> = {
        let r: Vec<(&str, &[u32])> = expected
            .iter()
            .map(|(p, path)| (p.as_str(), path.as_slice()))
            .collect();
        want(&r)
    };
    assert!(
        eventually(Duration::from_secs(30), || async {
            own_view(&node) == expected
        })
        .await,
        "BGP view {:?}",
        own_view(&node)
    );

    let dump = router.dir().join("master.mrt");
    let bytes = router.mrt_dump(&dump).await.unwrap();
    let upstream_peer = PeerSelector {
        ip: Some("127.0.0.2".parse().unwrap()),
        asn: Some(64510),
    };
    let load = mrt::load(&bytes, &upstream_peer, 64501).unwrap();
    assert_eq!(load.skipped, []);
    assert_eq!(lines(load.view.entries()), expected, "MRT view");

    // The same dump through the config: a node with [node.mrt] answers as the BGP node does.
    let mrt_config = example_variant(|t| {
        t.replacen(
            "[zone]",
            &format!(
                "[node.mrt]\nfile = \"{}\"\npeer = \"127.0.0.2\"\n\n[zone]",
                dump.display()
            ),
            1,
        )
    });
    let mrt_node = TestNode::start(&mrt_config).await.unwrap();
    assert_eq!(own_view(&mrt_node), expected);
    for (rtype, subnet) in [
        (RecordType::A, "100.64.1.0/24"),
        (RecordType::A, "100.64.2.0/24"),
        (RecordType::A, "100.64.3.0/24"),
        (RecordType::AAAA, "2001:db8:ff01::/48"),
        (RecordType::AAAA, "2001:db8:ff02::/48"),
    ] {
        assert_eq!(
            answer(&node, rtype, subnet).await,
            answer(&mrt_node, rtype, subnet).await,
            "{subnet}"
        );
    }
    mrt_node.stop().await.unwrap();
    node.stop().await.unwrap();
}

/// An OPEN from AS 64501 with the 4-octet AS capability (RFC 4271 §4.2, RFC 6793).
fn raw_open() -> Vec<u8> {
    let caps = [65, 4, 0, 0, 0xfb, 0xf5];
    let mut body = vec![
        4,
        0xfb,
        0xf5,
        0,
        9,
        10,
        0,
        0,
        1,
        (caps.len() + 2) as u8,
        2,
        caps.len() as u8,
    ];
    body.extend_from_slice(&caps);
    sparrow_node::bgp::wire::message(1, &body)
}

async fn read_message(stream: &mut tokio::net::TcpStream) -> (u8, Vec<u8>) {
    let mut header = [0u8; 19];
    tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut header))
        .await
        .expect("no message within 10 s")
        .expect("connection closed");
    let len = usize::from(u16::from_be_bytes([header[16], header[17]]));
    let mut body = vec![0; len - 19];
    stream.read_exact(&mut body).await.unwrap();
    (header[18], body)
}

#[tokio::test]
async fn a_malformed_update_gets_a_notification_and_dns_keeps_answering() {
    let port = free_port();
    let config = bgp_node_config(&format!(
        "peer = \"127.0.0.1\"\nmode = \"passive\"\nlisten = \"127.0.0.1:{port}\""
    ));
    let (node, _log) = TestNode::start_watching_views(&config).await.unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut peer = tokio::net::TcpStream::connect(addr).await.unwrap();
    peer.write_all(&raw_open()).await.unwrap();
    let (kind, _) = read_message(&mut peer).await;
    assert_eq!(kind, 1, "Sparrow's OPEN");
    peer.write_all(&sparrow_node::bgp::wire::keepalive())
        .await
        .unwrap();
    let (kind, _) = read_message(&mut peer).await;
    assert_eq!(kind, 4, "Sparrow's KEEPALIVE");
    // An UPDATE whose AS_PATH attribute claims 60 bytes in a 14-byte attribute section:
    // withdrawn length 0; attribute length 14: ORIGIN (40 01 01 00), AS_PATH (40 02 3c ...);
    // NLRI 100.64.1.0/24.
    let body = [
        0, 0, 0, 14, 0x40, 1, 1, 0, 0x40, 2, 60, 2, 1, 0, 0, 0xfb, 0xfe, 0, 24, 100, 64, 1,
    ];
    peer.write_all(&sparrow_node::bgp::wire::message(2, &body))
        .await
        .unwrap();
    let (kind, notification) = read_message(&mut peer).await;
    assert_eq!(kind, 3, "a NOTIFICATION");
    assert_eq!(
        &notification[..2],
        [3, 1],
        "UPDATE Message Error / Malformed Attribute List"
    );
    // Then the connection is closed.
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), peer.read_to_end(&mut rest)).await;
    assert!(matches!(closed, Ok(Ok(0))), "{closed:?} {rest:?}");
    // The node serves on: ams is 1 hop from 100.64.1.0/24 in no view now (its view comes from
    // BGP and has nothing), so nyc (3 hops) answers.
    assert_eq!(
        answer(&node, RecordType::A, "100.64.1.0/24").await,
        [NYC_V4]
    );
    // A stranger is refused with a Cease (Connection Rejected) before any OPEN.
    let stranger = tokio::net::TcpSocket::new_v4().unwrap();
    stranger.bind("127.0.0.9:0".parse().unwrap()).unwrap();
    let mut stranger = stranger.connect(addr).await.unwrap();
    let (kind, body) = read_message(&mut stranger).await;
    assert_eq!((kind, &body[..2]), (3, &[6u8, 5][..]));
    node.stop().await.unwrap();
}

/// An UPDATE announcing the /24s `nets` (first three octets) with AS path `path` (4-octet
/// ASNs) and next hop 192.0.2.1.
fn raw_update(path: &[u32], nets: impl Iterator<Item = [u8; 3]>) -> Vec<u8> {
    let mut as_path = vec![2, path.len() as u8];
    for asn in path {
        as_path.extend(asn.to_be_bytes());
    }
    let mut attrs = vec![0x40, 1, 1, 0, 0x40, 2, as_path.len() as u8];
    attrs.extend(as_path);
    attrs.extend([0x40, 3, 4, 192, 0, 2, 1]);
    let mut body = vec![0, 0];
    body.extend((attrs.len() as u16).to_be_bytes());
    body.extend(attrs);
    for net in nets {
        body.push(24);
        body.extend(net);
    }
    sparrow_node::bgp::wire::message(2, &body)
}

#[tokio::test]
async fn a_prefix_flood_past_max_prefixes_is_refused_and_the_last_view_stays() {
    let port = free_port();
    let config = bgp_node_config(&format!(
        "peer = \"127.0.0.1\"\nmode = \"passive\"\nlisten = \"127.0.0.1:{port}\"\n\
         max_prefixes = 100\nmax_prefix_action = \"refuse\""
    ));
    let (node, log) = TestNode::start_watching_views(&config).await.unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut peer = tokio::net::TcpStream::connect(addr).await.unwrap();
    peer.write_all(&raw_open()).await.unwrap();
    assert_eq!(read_message(&mut peer).await.0, 1, "Sparrow's OPEN");
    peer.write_all(&sparrow_node::bgp::wire::keepalive())
        .await
        .unwrap();
    assert_eq!(read_message(&mut peer).await.0, 4, "Sparrow's KEEPALIVE");
    // Ten routes, 100.64.1.0/24 among them one hop away: ams answers it.
    let first = (1..=10u8).map(|i| [100, 64, i]);
    peer.write_all(&raw_update(&[64501, 64496], first))
        .await
        .unwrap();
    answers_become(
        &node,
        &[(RecordType::A, "100.64.1.0/24", AMS_V4)],
        "first routes",
    )
    .await;
    // Then 150 more: 160 is past the limit of 100.
    let flood = (0..150u8).map(|i| [100, 65, i]);
    peer.write_all(&raw_update(&[64501, 64496], flood))
        .await
        .unwrap();
    // Keepalives may come first.
    let (kind, notification) = loop {
        let (kind, body) = read_message(&mut peer).await;
        if kind != 4 {
            break (kind, body);
        }
    };
    assert_eq!(kind, 3, "a NOTIFICATION");
    assert_eq!(
        &notification[..2],
        [6, 1],
        "Cease / Maximum Number of Prefixes Reached"
    );
    assert!(
        eventually(Duration::from_secs(10), || async {
            sparrow_cluster_tests::logged(&["more prefixes than max_prefixes", "refused"])
        })
        .await,
        "the refusal is logged"
    );
    // No view past the limit was ever handed to the node; the last good one stays, stale.
    assert!(
        eventually(Duration::from_secs(10), || async {
            last_stale(&log).is_some_and(|s| s.is_some())
        })
        .await,
        "the last view is marked stale"
    );
    for v in log.lock().unwrap().iter() {
        assert!(
            v.view.as_ref().is_none_or(|v| v.len() <= 100),
            "{}",
            v.source
        );
    }
    assert_eq!(
        answer(&node, RecordType::A, "100.64.1.0/24").await,
        [AMS_V4]
    );
    node.stop().await.unwrap();
}
