//! A node learning a full table over BGP, then DNS answer rate with and without BGP churn.
//!
//! Setup: the example config, with nyc's and syd's route files replaced by generated full
//! views (1,000,000 IPv4 + 250,000 IPv6 prefixes each, `sparrow-netsim`) and ams's view
//! coming from a passive BGP session (`[node.bgp]`, `publish_interval_ms` from
//! `SPARROW_PUBLISH_MS`, default the config default of 1000). A feeder in this process plays
//! the ams router over real TCP: OPEN, the full table as UPDATEs encoded by `bgpkit-parser`
//! (prefixes sharing a path packed into one message), End-of-RIB.
//!
//! Measured:
//! 1. time from the first UPDATE to the node answering from the full BGP view;
//! 2. DNS answers per second from a closed-loop UDP client (64 queries outstanding, ECS
//!    subnets drawn from the table), alternating 15 s phases without churn and with churn of
//!    1,000 UPDATEs a second (each announces one prefix with a new path, or withdraws one and
//!    announces it back), `ROUNDS` rounds; medians reported.
//!
//! Run with `cargo bench -p sparrow-cluster-tests --bench bgp_churn` (about 3 minutes; the
//! seed is printed and can be set with `SPARROW_SEED`). Without `--bench` it runs a small
//! table and short phases, as a smoke test.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr, UdpSocket};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bgpkit_parser::models::{
    AsPath, AsnLength, AttrFlags, Attribute, AttributeValue, Attributes, BgpMessage,
    BgpUpdateMessage, NetworkPrefix, Nlri, Origin,
};
use hickory_proto::op::{Edns, Message, Query};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsOption};
use hickory_proto::rr::{Name, RecordType};
use ipnet::IpNet;
use sparrow_cluster_tests::bird::free_port;
use sparrow_cluster_tests::{TestNode, example_variant};
use sparrow_netsim::fulltable::{self, TableSpec};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

const DEFAULT_SEED: u64 = 2026;
const OWN_ASN: u32 = 64501;

struct Plan {
    v4: usize,
    v6: usize,
    phase: Duration,
    rounds: usize,
}

const BENCH: Plan = Plan {
    v4: 1_000_000,
    v6: fulltable::FULL_V6,
    phase: Duration::from_secs(15),
    rounds: 3,
};
const SMOKE: Plan = Plan {
    v4: 20_000,
    v6: 5_000,
    phase: Duration::from_secs(2),
    rounds: 1,
};

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let plan = if bench { BENCH } else { SMOKE };
    let seed = sparrow_cluster_tests::env_or("SPARROW_SEED", DEFAULT_SEED);
    let publish_ms: u64 = sparrow_cluster_tests::env_or("SPARROW_PUBLISH_MS", 1000);
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(run(plan, seed, publish_ms));
}

async fn run(plan: Plan, seed: u64, publish_ms: u64) {
    let prefixes = fulltable::prefixes(TableSpec {
        v4_prefixes: plan.v4,
        v6_prefixes: plan.v6,
        seed,
    });
    eprintln!(
        "seed {seed}: {} prefixes per view, publish interval {publish_ms} ms",
        prefixes.len()
    );
    let port = free_port();
    let config = example_variant(|t| {
        t.replacen(
            "[zone]",
            &format!(
                "[node.bgp]\nlocal_asn = 65000\nrouter_id = \"192.0.2.53\"\npeer = \"127.0.0.1\"\n\
                 peer_asn = {OWN_ASN}\nmode = \"passive\"\nlisten = \"127.0.0.1:{port}\"\n\
                 publish_interval_ms = {publish_ms}\n\n[zone]"
            ),
            1,
        )
    });
    let dir = config.parent().expect("config folder");
    for (pop, name) in [(1, "nyc"), (2, "syd")] {
        std::fs::write(
            dir.join(format!("views/{name}.routes")),
            fulltable::pop_view(&prefixes, pop, seed),
        )
        .expect("write view");
    }
    let started = Instant::now();
    let (node, log) = TestNode::start_watching_views(&config).await.expect("node");
    eprintln!(
        "node up with two full route files in {:.1?}",
        started.elapsed()
    );

    let ams = fulltable::pop_view_entries(&prefixes, 0, seed);
    let mut feeder = Feeder::connect(port).await;
    let started = Instant::now();
    feeder.send_table(&ams).await;
    let total = prefixes.len();
    loop {
        let len = node.snapshot.load().view(0).map_or(0, |v| v.len());
        if len == total {
            break;
        }
        feeder.keepalive().await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let full_table = started.elapsed();
    eprintln!("full table over BGP to the node answering from it: {full_table:.2?}");

    let queries = Arc::new(queries(&prefixes, seed));
    let mut quiet = Vec::new();
    let mut churned = Vec::new();
    let mut sent_total = 0;
    let mut views_total = 0;
    let views = || log.lock().expect("view log").len();
    for round in 0..plan.rounds {
        quiet.push(measure(node.addr, &queries, plan.phase, &mut feeder, None).await);
        let mut churn = Churn::new(&ams, seed + round as u64);
        let before = views();
        let qps = measure(
            node.addr,
            &queries,
            plan.phase,
            &mut feeder,
            Some(&mut churn),
        )
        .await;
        let published = views() - before;
        sent_total += churn.sent;
        views_total += published;
        churned.push(qps);
        eprintln!(
            "round {}: {:.0} answers/s quiet, {:.0} answers/s with {:.0} UPDATEs/s, {published} views published",
            round + 1,
            quiet[round],
            qps,
            churn.sent as f64 / plan.phase.as_secs_f64()
        );
    }
    let (q, c) = (median(&mut quiet), median(&mut churned));
    println!(
        "full table via BGP: {full_table:.2?}; DNS quiet {q:.0}/s, with churn {c:.0}/s: {:+.1}% \
         ({sent_total} UPDATEs sent, {views_total} views published in {:.0} s of churn)",
        (c / q - 1.0) * 100.0,
        plan.phase.as_secs_f64() * plan.rounds as f64
    );
    node.stop().await.expect("stop");
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// A queries for the geo name with ECS subnets (/24 and /56) around routed addresses.
fn queries(prefixes: &[IpNet], seed: u64) -> Vec<Vec<u8>> {
    fulltable::sample_addresses(prefixes, 4096, seed)
        .into_iter()
        .enumerate()
        .map(|(i, addr)| {
            let (subnet, rtype) = match addr {
                IpAddr::V4(_) => (IpNet::new(addr, 24).expect("len").trunc(), RecordType::A),
                IpAddr::V6(_) => (IpNet::new(addr, 56).expect("len").trunc(), RecordType::AAAA),
            };
            let mut m = Message::query();
            m.metadata.id = i as u16;
            m.queries.push(Query::query(
                Name::from_str("www.example.net.").expect("name"),
                rtype,
            ));
            let mut edns = Edns::new();
            edns.set_max_payload(1232);
            edns.options_mut()
                .insert(EdnsOption::Subnet(ClientSubnet::from(subnet)));
            m.edns = Some(edns);
            m.to_vec().expect("encode query")
        })
        .collect()
}

/// Answers per second over `phase`, with `churn` sending 1,000 UPDATEs a second if given.
async fn measure(
    server: SocketAddr,
    queries: &Arc<Vec<Vec<u8>>>,
    phase: Duration,
    feeder: &mut Feeder,
    mut churn: Option<&mut Churn<'_>>,
) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU64::new(0));
    let client = {
        let (stop, answered, queries) = (stop.clone(), answered.clone(), queries.clone());
        std::thread::spawn(move || udp_client(server, &queries, &stop, &answered))
    };
    let start = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let mut last_keepalive = Instant::now();
    while start.elapsed() < phase {
        tick.tick().await;
        if let Some(c) = churn.as_deref_mut() {
            // 10 UPDATEs every 10 ms: 1,000 a second.
            let due = ((start.elapsed().as_secs_f64() * 1000.0) as usize).saturating_sub(c.sent);
            let batch = c.next(due.min(100));
            feeder.write(&batch).await;
        }
        if last_keepalive.elapsed() > Duration::from_secs(3) {
            feeder.keepalive().await;
            last_keepalive = Instant::now();
        }
    }
    let elapsed = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    let _ = client.join();
    answered.load(Ordering::Relaxed) as f64 / elapsed.as_secs_f64()
}

/// Keeps 64 queries outstanding; counts answers.
fn udp_client(server: SocketAddr, queries: &[Vec<u8>], stop: &AtomicBool, answered: &AtomicU64) {
    const OUTSTANDING: usize = 64;
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind client");
    socket.connect(server).expect("connect");
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let mut next = 0;
    let mut send = |socket: &UdpSocket| {
        let _ = socket.send(&queries[next % queries.len()]);
        next += 1;
    };
    for _ in 0..OUTSTANDING {
        send(&socket);
    }
    let mut buf = [0u8; 1500];
    while !stop.load(Ordering::Relaxed) {
        match socket.recv(&mut buf) {
            Ok(_) => {
                answered.fetch_add(1, Ordering::Relaxed);
                send(&socket);
            }
            // Lost queries: top the window up again.
            Err(_) => {
                for _ in 0..OUTSTANDING {
                    send(&socket);
                }
            }
        }
    }
}

/// UPDATEs for churn: cycles through the table, giving each prefix a new path, and every
/// tenth one a withdrawal followed (ten UPDATEs later) by its announcement.
struct Churn<'a> {
    table: &'a [(IpNet, Vec<u32>)],
    at: usize,
    sent: usize,
    withdrawn: Vec<(IpNet, Vec<u32>)>,
}

impl<'a> Churn<'a> {
    fn new(table: &'a [(IpNet, Vec<u32>)], seed: u64) -> Self {
        Self {
            table,
            at: (seed as usize * 7919) % table.len(),
            sent: 0,
            withdrawn: Vec::new(),
        }
    }

    fn next(&mut self, n: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for _ in 0..n {
            self.sent += 1;
            if self.sent % 10 == 5
                && let Some((prefix, path)) = self.withdrawn.pop()
            {
                out.extend(announce(&[prefix], &path));
                continue;
            }
            let (prefix, path) = &self.table[self.at % self.table.len()];
            self.at += 104_729;
            if self.sent.is_multiple_of(10) {
                out.extend(withdraw(*prefix));
                self.withdrawn.push((*prefix, path.clone()));
            } else {
                let mut longer = path.clone();
                longer.push(64999);
                out.extend(announce(&[*prefix], &longer));
            }
        }
        out
    }
}

fn update_bytes(update: BgpUpdateMessage) -> Vec<u8> {
    BgpMessage::Update(update)
        .encode(AsnLength::Bits32)
        .expect("encode UPDATE")
        .to_vec()
}

/// One UPDATE announcing `prefixes` (one family) with the router's AS before `path`.
fn announce(prefixes: &[IpNet], path: &[u32]) -> Vec<u8> {
    let full: Vec<u32> = std::iter::once(OWN_ASN)
        .chain(path.iter().copied())
        .collect();
    let mut attrs = Attributes::default();
    attrs.add_attr(AttributeValue::Origin(Origin::IGP).into());
    attrs.add_attr(AttributeValue::AsPath(AsPath::from_sequence(full)).into());
    let nets: Vec<NetworkPrefix> = prefixes
        .iter()
        .map(|p| NetworkPrefix::new(*p, None))
        .collect();
    let mut update = BgpUpdateMessage {
        withdrawn_prefixes: Vec::new(),
        attributes: attrs,
        announced_prefixes: Vec::new(),
    };
    if prefixes[0].addr().is_ipv4() {
        update
            .attributes
            .add_attr(AttributeValue::NextHop("192.0.2.1".parse().expect("ip")).into());
        update.announced_prefixes = nets;
    } else {
        let nh: IpAddr = "2001:db8::1".parse::<Ipv6Addr>().expect("ip").into();
        let mut nlri = Nlri::new_reachable(nets[0], Some(nh));
        nlri.prefixes = nets;
        update.attributes.add_attr(Attribute {
            value: AttributeValue::MpReachNlri(nlri),
            flag: AttrFlags::OPTIONAL | AttrFlags::EXTENDED,
        });
    }
    update_bytes(update)
}

fn withdraw(prefix: IpNet) -> Vec<u8> {
    let p = NetworkPrefix::new(prefix, None);
    let mut update = BgpUpdateMessage {
        withdrawn_prefixes: Vec::new(),
        attributes: Attributes::default(),
        announced_prefixes: Vec::new(),
    };
    if prefix.addr().is_ipv4() {
        update.withdrawn_prefixes.push(p);
    } else {
        update.attributes.add_attr(Attribute {
            value: AttributeValue::MpUnreachNlri(Nlri::new_unreachable(p)),
            flag: AttrFlags::OPTIONAL | AttrFlags::EXTENDED,
        });
    }
    update_bytes(update)
}

/// The ams router, as far as Sparrow can tell.
struct Feeder {
    stream: TcpStream,
}

impl Feeder {
    async fn connect(port: u16) -> Self {
        let mut stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect to the node's BGP port");
        // OPEN: version 4, AS 64501, hold 90, id 10.0.0.1; capabilities MP IPv4 and IPv6
        // unicast, 4-octet AS, graceful restart (End-of-RIB will come).
        let mut caps = vec![1, 4, 0, 1, 0, 1, 1, 4, 0, 2, 0, 1, 64, 2, 0, 0, 65, 4];
        caps.extend_from_slice(&OWN_ASN.to_be_bytes());
        let mut body = vec![4];
        body.extend_from_slice(&(OWN_ASN as u16).to_be_bytes());
        body.extend_from_slice(&90u16.to_be_bytes());
        body.extend_from_slice(&[10, 0, 0, 1, (caps.len() + 2) as u8, 2, caps.len() as u8]);
        body.extend_from_slice(&caps);
        stream
            .write_all(&sparrow_node::bgp::wire::message(1, &body))
            .await
            .expect("send OPEN");
        let mut header = [0u8; 19];
        stream.read_exact(&mut header).await.expect("node's OPEN");
        let len = usize::from(u16::from_be_bytes([header[16], header[17]]));
        let mut rest = vec![0; len - 19];
        stream.read_exact(&mut rest).await.expect("node's OPEN");
        stream
            .write_all(&sparrow_node::bgp::wire::keepalive())
            .await
            .expect("send KEEPALIVE");
        stream
            .read_exact(&mut header)
            .await
            .expect("node's KEEPALIVE");
        Self { stream }
    }

    async fn write(&mut self, bytes: &[u8]) {
        if !bytes.is_empty() {
            self.stream.write_all(bytes).await.expect("send to node");
        }
    }

    async fn keepalive(&mut self) {
        self.write(&sparrow_node::bgp::wire::keepalive()).await;
    }

    /// The table, prefixes sharing a path packed together, then End-of-RIB for both families.
    async fn send_table(&mut self, table: &[(IpNet, Vec<u32>)]) {
        let mut by_path: HashMap<(bool, &[u32]), Vec<IpNet>> = HashMap::new();
        for (prefix, path) in table {
            by_path
                .entry((prefix.addr().is_ipv6(), path.as_slice()))
                .or_default()
                .push(*prefix);
        }
        let mut out = Vec::new();
        for ((v6, path), prefixes) in by_path {
            // At most ~3,000 bytes of NLRI per message (4,096 is the limit).
            let per = if v6 { 300 } else { 700 };
            for chunk in prefixes.chunks(per) {
                out.extend(announce(chunk, path));
            }
            if out.len() > 1 << 20 {
                self.write(&out).await;
                out.clear();
            }
        }
        out.extend(sparrow_node::bgp::wire::end_of_rib(
            sparrow_node::bgp::wire::Family::Ipv4Unicast,
        ));
        out.extend(sparrow_node::bgp::wire::end_of_rib(
            sparrow_node::bgp::wire::Family::Ipv6Unicast,
        ));
        self.write(&out).await;
    }
}
