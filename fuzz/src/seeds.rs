//! The seeds of the kept corpus: valid inputs of every target, made with the node's own
//! encoders and the example's files, so that mutations start from what parsers accept.
//! `sparrow-fuzz seed` writes them to `fuzz/corpus/`.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;

use chitchat::Serializable as _;
use hickory_proto::op::{Edns, Message, Query};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsOption};
use hickory_proto::rr::{Name, RecordType};
use sparrow_node::bgp::wire;
use sparrow_node::cluster::state::{HotState, ViewAnnouncement};
use sparrow_node::routes::transfer;
use sparrow_proto::frame;
use sparrow_proto::views::{Route4, Route6, ViewFrame, ViewHeader, ViewRequest};

/// The single-node example's config.
pub const EXAMPLE_CONFIG: &str = include_str!("../../deploy/examples/single-node/sparrow.toml");
/// A zone file with every syntax the zone-file parser reads (and one error).
pub const RICH_ZONE: &str = r#"$ORIGIN example.net.
$TTL 1h
@ IN SOA ns1 hostmaster ( 1 7200 3600 ; comment
        1209600 300 )
  IN NS ns1
ns1 300 IN A 192.0.2.53
    600 IN AAAA 2001:db8::53
txt TXT "a; b" "\"q\"" \065
mx MX 10 mail
srv SRV 1 2 3 t
rp RP a.b. c.d.
uri URI 10 1 "ftp://a"
eui EUI48 00-00-5e-00-53-2a
gen TYPE65534 \# 3 abcdef
a CLASS1 A \# 4 c0000201
caa CAA 0 issue "ca.example"
bad IN A 192.0.2.1 extra
"#;

/// Its zone file.
pub const EXAMPLE_ZONE: &str = include_str!("../../deploy/examples/single-node/example.net.zone");
const AMS: &str = include_str!("../../deploy/examples/single-node/views/ams.routes");
const NYC: &str = include_str!("../../deploy/examples/single-node/views/nyc.routes");
const SYD: &str = include_str!("../../deploy/examples/single-node/views/syd.routes");
const SSRS: &str = include_str!("../../deploy/examples/single-node/ssrs.routes");
const AMS_MRT: &[u8] = include_bytes!("../../deploy/examples/single-node/views/ams.mrt");
const BIRD_MRT: &[u8] = include_bytes!("../../node/src/routes/mrt/bird-2.0.12-master.mrt");

/// A file of the example's folder, by its path relative to the config.
pub fn example_file(name: &str) -> Option<&'static str> {
    Some(match name {
        "views/ams.routes" => AMS,
        "views/nyc.routes" => NYC,
        "views/syd.routes" => SYD,
        "ssrs.routes" => SSRS,
        "example.net.zone" => EXAMPLE_ZONE,
        _ => return None,
    })
}

/// Every seed of target `name`.
pub fn seeds(name: &str) -> Vec<Vec<u8>> {
    match name {
        "dns_message" => dns_queries(),
        "ecs_option" => vec![
            vec![0, 1, 24, 0, 100, 64, 1],
            vec![0, 2, 48, 0, 0x20, 0x01, 0x0d, 0xb8, 0xff, 0x01],
            vec![0, 1, 0, 0],
            vec![0, 1, 32, 0, 192, 0, 2, 1],
        ],
        "gossip_frame" => gossip_frames(),
        "gossip_values" => gossip_values(),
        "view_transfer" => view_transfers(),
        "view_frame" => view_frames(),
        "bgp_message" => bgp_messages(),
        "mrt" => vec![AMS_MRT.to_vec(), BIRD_MRT.to_vec()],
        "config" => {
            let cluster = format!(
                "{EXAMPLE_CONFIG}\n[cluster]\nid = \"test\"\nlisten = \"127.0.0.1:7946\"\n\
                 seeds = [\"127.0.0.1:7946\"]\nca = \"ca.pem\"\ncert = \"node.pem\"\nkey = \"node.key\"\n\
                 revoked = [\"01:ab\"]\n"
            );
            vec![EXAMPLE_CONFIG.into(), cluster.into_bytes()]
        }
        "zone_file" => vec![EXAMPLE_ZONE.into()],
        "zone_text" => vec![EXAMPLE_ZONE.into(), RICH_ZONE.into()],
        "route_text" => vec![AMS.into(), NYC.into(), SYD.into(), SSRS.into()],
        _ => Vec::new(),
    }
}

fn dns_queries() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for (name, rtype, subnet) in [
        ("www.example.net.", RecordType::A, Some("100.64.1.0/24")),
        (
            "www.example.net.",
            RecordType::AAAA,
            Some("2001:db8:ff01::/48"),
        ),
        ("example.net.", RecordType::SOA, None),
    ] {
        let mut m = Message::query();
        m.metadata.id = 0x5353;
        m.queries.push(Query::query(
            name.parse::<Name>().expect("seed name"),
            rtype,
        ));
        let mut edns = Edns::new();
        edns.set_max_payload(1232);
        if let Some(net) = subnet {
            let net: ipnet::IpNet = net.parse().expect("seed subnet");
            edns.options_mut()
                .insert(EdnsOption::Subnet(ClientSubnet::from(net)));
        }
        m.edns = Some(edns);
        out.push(m.to_vec().expect("seed query encodes"));
    }
    out
}

fn gossip_frames() -> Vec<Vec<u8>> {
    let id = chitchat::ChitchatId::new(
        "ams".to_owned(),
        1_764_500_000,
        SocketAddr::from((Ipv4Addr::LOCALHOST, 7946)),
    );
    // Magic 45139, protocol version 0, then the message type.
    let start = |kind: u8| {
        let mut b = 45_139u16.to_le_bytes().to_vec();
        b.extend([0, kind]);
        b
    };
    // SYN: a digest of one node (heartbeat, last GC version, max version), the cluster id.
    let mut syn = start(0);
    1u16.serialize(&mut syn);
    id.serialize(&mut syn);
    for v in [42u64, 0, 7] {
        v.serialize(&mut syn);
    }
    "test".serialize(&mut syn);
    let mut empty_syn = start(0);
    0u16.serialize(&mut empty_syn);
    "test".serialize(&mut empty_syn);
    vec![syn, empty_syn, start(3)]
}

fn gossip_values() -> Vec<Vec<u8>> {
    let lines = |s: &HotState| {
        s.to_keys()
            .into_iter()
            .map(|(k, v)| format!("{k}={v}\n"))
            .collect::<String>()
            .into_bytes()
    };
    let full = HotState {
        load: Some(0.4),
        view: Some(ViewAnnouncement {
            version: 1_764_500_000_000,
            digest: 0x0123_4567_89ab_cdef,
            prefixes: 1_000_000,
            stale_since_ms: Some(1_764_500_000_000),
        }),
        config: Some(7),
        drained: vec!["nyc".into(), "syd".into()],
        peers: vec![("nyc".into(), SocketAddr::from((Ipv4Addr::LOCALHOST, 7947)))],
        ..HotState::up()
    };
    vec![lines(&HotState::up()), lines(&full)]
}

fn view_transfers() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for text in [
        AMS,
        NYC,
        "",
        "2001:db8::/32 64500 64501\n10.0.0.0/8 64500\n",
    ] {
        let (view, _) = sparrow_node::routes::parse_route_view(text);
        out.push(transfer::stream_bytes(&transfer::encode(
            &view,
            1_764_500_000_000,
        )));
    }
    let mut refused = frame::preamble(sparrow_proto::views::MAGIC).to_vec();
    refused.extend(frame::encode(&ViewFrame::Refused {
        reason: "no view yet".into(),
    }));
    out.push(refused);
    out
}

fn view_frames() -> Vec<Vec<u8>> {
    let body = |bytes: Vec<u8>| bytes[frame::LEN_BYTES..].to_vec();
    vec![
        body(frame::encode(&ViewRequest {
            pop: "ams".into(),
            digest: 0x0123_4567_89ab_cdef,
        })),
        body(frame::encode(&ViewFrame::Header(ViewHeader {
            version: 1_764_500_000_000,
            digest: 1,
            prefixes: 3,
        }))),
        body(frame::encode(&ViewFrame::V4(vec![
            Route4 {
                gap: 0x6440_0100,
                len: 24,
                hops: 3,
            },
            Route4 {
                gap: 0x100,
                len: 24,
                hops: 2,
            },
        ]))),
        body(frame::encode(&ViewFrame::V6(vec![Route6 {
            gap_hi: 0x2001_0db8_0000_0000,
            lo: 0,
            len: 32,
            hops: 1,
        }]))),
        body(frame::encode(&ViewFrame::End)),
    ]
}

fn bgp_messages() -> Vec<Vec<u8>> {
    let open = wire::LocalOpen {
        asn: 65_000,
        hold_time: 90,
        router_id: Ipv4Addr::new(192, 0, 2, 53),
    }
    .encode();
    // ORIGIN IGP, AS_PATH (4-octet) 64501 64496, NEXT_HOP 192.0.2.1; 100.64.1.0/24 and
    // 100.64.2.0/24; then one withdrawn.
    let mut update = vec![0, 0, 0, 24];
    update.extend([0x40, 1, 1, 0, 0x40, 2, 10, 2, 2]);
    update.extend(64_501u32.to_be_bytes());
    update.extend(64_496u32.to_be_bytes());
    update.extend([0x40, 3, 4, 192, 0, 2, 1]);
    update.extend([24, 100, 64, 1, 24, 100, 64, 2]);
    let withdraw = [0, 4, 24, 100, 64, 1, 0, 0];
    vec![
        open,
        wire::keepalive(),
        wire::message(2, &update),
        wire::message(2, &withdraw),
        wire::end_of_rib(wire::Family::Ipv6Unicast),
        wire::Notification::new(6, 1).encode(),
    ]
}

/// Writes every target's seeds under `dir/TARGET/seed-N` (replacing earlier seeds; other
/// files, such as kept crashes, stay).
pub fn write_corpus(dir: &Path) -> std::io::Result<usize> {
    let mut n = 0;
    for t in crate::TARGETS {
        let folder = dir.join(t.name);
        std::fs::create_dir_all(&folder)?;
        for (i, seed) in seeds(t.name).iter().enumerate() {
            std::fs::write(folder.join(format!("seed-{i:02}")), seed)?;
            n += 1;
        }
    }
    Ok(n)
}
