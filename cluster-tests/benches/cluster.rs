//! Whole-cluster measurements with real nodes (real QUIC on loopback, real DNS queries), for
//! BENCHMARKS.md. Not a criterion bench: each case runs a cluster for seconds or minutes.
//!
//! ```sh
//! cargo bench -p sparrow-cluster-tests --bench cluster -- failover [KILLS]
//! cargo bench -p sparrow-cluster-tests --bench cluster -- loss [SHARE] [SECONDS]
//! cargo bench -p sparrow-cluster-tests --bench cluster -- gossip [NODES,...] [SECONDS]
//! cargo bench -p sparrow-cluster-tests --bench cluster -- propagate [NODES]
//! cargo bench -p sparrow-cluster-tests --bench cluster -- failed-pull [PREFIXES]
//! ```
//!
//! Every cluster runs with production settings (gossip every 200 ms, chitchat's failure
//! detector with Sparrow's config) on 127.0.0.1, all nodes in this one process.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chitchat::transport::{Socket, Transport, UdpTransport};
use chitchat::{ChitchatMessage, Serializable as _};
use hickory_proto::rr::RecordType;
use sparrow_cluster_tests::{Ask, TestNode, TestPki, eventually, synthetic_cluster};
use sparrow_node::cluster::state::Mode;

const SETTLE: Duration = Duration::from_secs(60);

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let arg = |i: usize| args.get(i).map(String::as_str);
    match arg(0) {
        Some("failover") => failover(arg(1).map_or(20, |k| k.parse().expect("KILLS"))).await,
        Some("loss") => {
            loss(
                arg(1).map_or(0.2, |s| s.parse().expect("SHARE")),
                arg(2).map_or(120, |s| s.parse().expect("SECONDS")),
            )
            .await;
        }
        Some("gossip") => {
            let sizes: Vec<usize> = arg(1)
                .unwrap_or("3,10,30")
                .split(',')
                .map(|n| n.parse().expect("NODES"))
                .collect();
            gossip(&sizes, arg(2).map_or(30, |s| s.parse().expect("SECONDS"))).await;
        }
        Some("propagate") => propagate(arg(1).map_or(20, |n| n.parse().expect("NODES"))).await,
        Some("failed-pull") => {
            failed_pull(arg(1).map_or(1_000_000, |n| n.parse().expect("PREFIXES"))).await;
        }
        _ => eprintln!(
            "usage: cluster (failover [KILLS] | loss [SHARE] [SECONDS] | gossip [N,N,...] [SECONDS] | propagate [NODES] | failed-pull [PREFIXES])"
        ),
    }
}

async fn start(n: usize) -> (Vec<TestNode>, Vec<std::path::PathBuf>) {
    let pki = TestPki::new("bench");
    let mut nodes = Vec::new();
    let mut configs = Vec::new();
    for (config, socket) in synthetic_cluster(&pki, n, None) {
        nodes.push(
            TestNode::start_clustered(&config, socket)
                .await
                .expect("node starts"),
        );
        configs.push(config);
    }
    let all_in = |nodes: &[TestNode]| {
        nodes
            .iter()
            .all(|node| node.snapshot.load().mode == Mode::Cluster { alive: n })
    };
    assert!(
        eventually(SETTLE, || std::future::ready(all_in(&nodes))).await,
        "cluster of {n} did not form"
    );
    (nodes, configs)
}

async fn answer(node: &TestNode, subnet: &str) -> Option<String> {
    let r = Ask::new("www.example.net.", RecordType::A)
        .subnet(subnet)
        .send(node.addr)
        .await
        .ok()?;
    r.answers.first().map(|a| a.data.to_string())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = (p * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank]
}

/// Kills the node of POP p01 `kills` times; each time measures from the kill to the moment
/// no surviving node hands out p01's address for a client block p01 serves, then restarts
/// it and waits until every node hands it out again.
async fn failover(kills: usize) {
    let (mut nodes, configs) = start(3).await;
    let victim_addr = "198.18.0.1";
    // A block the hash gives to p01.
    let mut block = None;
    for b in 64..128 {
        let subnet = format!("100.{b}.1.0/24");
        if answer(&nodes[0], &subnet).await.as_deref() == Some(victim_addr) {
            block = Some(subnet);
            break;
        }
    }
    let block = block.expect("p01 serves some block");
    let gossip = nodes[1].cluster.as_ref().expect("clustered").local_addr();
    let mut samples = Vec::new();
    for kill in 0..kills {
        let everyone_hands_it_out = || async {
            for n in &nodes {
                if answer(n, &block).await.as_deref() != Some(victim_addr) {
                    return false;
                }
            }
            true
        };
        assert!(
            eventually(SETTLE, everyone_hands_it_out).await,
            "p01 back in answers"
        );
        // Let the failure detector see a steady heartbeat after the restart.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let victim = nodes.remove(1);
        // A crash, not a goodbye: from now on not one packet leaves or reaches the victim
        // (as when its machine dies); then its tasks are stopped.
        let handle = |n: &TestNode| n.cluster.clone().expect("clustered");
        let victim_gossip = handle(&victim).local_addr();
        let t0 = Instant::now();
        for n in &nodes {
            handle(n).faults.cut(victim_gossip, true);
            handle(&victim).faults.cut(handle(n).local_addr(), true);
        }
        victim.stop().await.expect("victim stops");
        loop {
            let mut any = false;
            for n in &nodes {
                any |= answer(n, &block).await.as_deref() == Some(victim_addr);
            }
            if !any {
                break;
            }
            assert!(t0.elapsed() < SETTLE, "p01 never left the answers");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let took = t0.elapsed().as_secs_f64();
        println!("kill {:>2}: {took:.3} s", kill + 1);
        samples.push(took);
        let socket = loop {
            if let Ok(s) = std::net::UdpSocket::bind(gossip) {
                break s;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        for n in &nodes {
            handle(n).faults.cut(victim_gossip, false);
        }
        nodes.insert(
            1,
            TestNode::start_clustered(&configs[1], socket)
                .await
                .expect("restart"),
        );
    }
    samples.sort_by(f64::total_cmp);
    println!(
        "failover over {} kills: median {:.3} s, p90 {:.3} s, p99 {:.3} s, worst {:.3} s, best {:.3} s",
        samples.len(),
        percentile(&samples, 0.5),
        percentile(&samples, 0.9),
        percentile(&samples, 0.99),
        samples[samples.len() - 1],
        samples[0]
    );
    for n in nodes {
        let _ = n.stop().await;
    }
}

/// Runs three nodes with `share` of every gossip message lost for `secs` seconds and
/// counts false deaths: a node seeing a live peer as dead, or leaving cluster mode.
async fn loss(share: f64, secs: u64) {
    let (nodes, _) = start(3).await;
    for (i, n) in nodes.iter().enumerate() {
        n.cluster
            .as_ref()
            .expect("clustered")
            .faults
            .set_loss(share, 0x5eed + i as u64);
    }
    let t0 = Instant::now();
    let mut deaths = 0u32;
    let mut mode_changes = 0u32;
    let mut last: Vec<Vec<bool>> = nodes
        .iter()
        .map(|n| {
            n.snapshot
                .load()
                .pop_status
                .iter()
                .map(|s| s.live)
                .collect()
        })
        .collect();
    let mut last_mode: Vec<bool> = vec![true; nodes.len()];
    let mut samples = 0u64;
    while t0.elapsed() < Duration::from_secs(secs) {
        for (i, n) in nodes.iter().enumerate() {
            let s = n.snapshot.load();
            for (j, st) in s.pop_status.iter().enumerate() {
                if last[i][j] && !st.live {
                    deaths += 1;
                    println!(
                        "{:>7.2} s: node {i} saw POP {j} die",
                        t0.elapsed().as_secs_f64()
                    );
                }
                last[i][j] = st.live;
            }
            let in_cluster = matches!(s.mode, Mode::Cluster { .. });
            if in_cluster != last_mode[i] {
                mode_changes += 1;
            }
            last_mode[i] = in_cluster;
        }
        samples += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let sent: u64 = nodes
        .iter()
        .map(|n| {
            n.cluster
                .as_ref()
                .map_or(0, |c| c.stats.bytes_sent.load(Ordering::Relaxed))
        })
        .sum();
    println!(
        "loss {:.0}% for {secs} s on 3 nodes: {deaths} false deaths, {mode_changes} mode changes ({samples} samples every 20 ms; {sent} gossip bytes sent)",
        share * 100.0
    );
    for n in nodes {
        let _ = n.stop().await;
    }
}

/// Gossip cost per node at each cluster size: Sparrow's QUIC transport (payload and wire
/// bytes) beside chitchat's own UDP transport carrying the same keys, in the same run.
async fn gossip(sizes: &[usize], secs: u64) {
    println!("| nodes | transport | payload bytes/s per node | wire bytes/s per node |");
    println!("|---:|---|---:|---:|");
    for &n in sizes {
        let (nodes, _) = start(n).await;
        // Let the first full-state exchanges pass: measure the steady state.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let read = |nodes: &[TestNode]| -> (u64, u64) {
            nodes.iter().fold((0, 0), |(p, w), node| {
                let c = node.cluster.as_ref().expect("clustered");
                (
                    p + c.stats.bytes_sent.load(Ordering::Relaxed),
                    w + c.stats.wire_bytes_sent.load(Ordering::Relaxed),
                )
            })
        };
        let (p0, w0) = read(&nodes);
        let t0 = Instant::now();
        tokio::time::sleep(Duration::from_secs(secs)).await;
        let (p1, w1) = read(&nodes);
        let per = |bytes: u64| bytes as f64 / t0.elapsed().as_secs_f64() / n as f64;
        println!(
            "| {n} | Sparrow QUIC (mutual TLS) | {:.0} | {:.0} |",
            per(p1 - p0),
            per(w1 - w0)
        );
        // The same keys and settings over chitchat's UDP transport.
        let keys: Vec<Vec<(String, String)>> = nodes.iter().map(published_keys).collect();
        for node in nodes {
            let _ = node.stop().await;
        }
        let bytes = Arc::new(AtomicU64::new(0));
        let mut handles = Vec::new();
        let mut seed: Option<SocketAddr> = None;
        for (i, kv) in keys.into_iter().enumerate() {
            let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
            let addr = socket.local_addr().expect("addr");
            drop(socket);
            let config = chitchat::ChitchatConfig {
                chitchat_id: chitchat::ChitchatId::new(format!("p{i:02}"), 1, addr),
                cluster_id: "bench".into(),
                gossip_interval: Duration::from_millis(200),
                listen_addr: addr,
                seed_nodes: seed.iter().map(ToString::to_string).collect(),
                failure_detector_config: chitchat::FailureDetectorConfig {
                    initial_interval: Duration::from_millis(200),
                    ..Default::default()
                },
                marked_for_deletion_grace_period: Duration::from_secs(3600),
                catchup_callback: None,
                extra_liveness_predicate: None,
            };
            seed.get_or_insert(addr);
            let transport = Counting {
                inner: UdpTransport,
                bytes: bytes.clone(),
            };
            handles.push(
                chitchat::spawn_chitchat(config, kv, &transport)
                    .await
                    .expect("chitchat over UDP"),
            );
        }
        let live = |handles: &[chitchat::ChitchatHandle]| {
            let handles: Vec<_> = handles
                .iter()
                .map(chitchat::ChitchatHandle::chitchat)
                .collect();
            async move {
                for h in handles {
                    if h.lock().await.live_nodes().count() != n {
                        return false;
                    }
                }
                true
            }
        };
        assert!(
            eventually(SETTLE, || live(&handles)).await,
            "UDP cluster of {n} did not form"
        );
        tokio::time::sleep(Duration::from_secs(5)).await;
        let b0 = bytes.load(Ordering::Relaxed);
        let t0 = Instant::now();
        tokio::time::sleep(Duration::from_secs(secs)).await;
        let b1 = bytes.load(Ordering::Relaxed);
        let per = (b1 - b0) as f64 / t0.elapsed().as_secs_f64() / n as f64;
        println!("| {n} | chitchat UDP (no encryption) | {per:.0} | {per:.0} |");
        for h in handles {
            let _ = h.shutdown().await;
        }
    }
}

/// The key-value pairs a Sparrow node publishes in gossip.
fn published_keys(node: &TestNode) -> Vec<(String, String)> {
    let s = node.snapshot.load();
    let own = s.config.node.pop;
    let status = s.pop_status[own];
    let view = s
        .view_info(own)
        .map(|v| sparrow_node::cluster::state::ViewAnnouncement {
            version: v.version.unwrap_or(0),
            digest: v.digest.unwrap_or(0),
            prefixes: v.prefixes,
            stale_since_ms: None,
        });
    sparrow_node::cluster::state::HotState {
        healthy: status.healthy,
        admin: status.admin,
        load: status.load,
        view,
        ..sparrow_node::cluster::state::HotState::up()
    }
    .to_keys()
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// chitchat's UDP transport, counting the bytes of every message sent.
struct Counting {
    inner: UdpTransport,
    bytes: Arc<AtomicU64>,
}

#[async_trait]
impl Transport for Counting {
    async fn open(&self, listen_addr: SocketAddr) -> anyhow::Result<Box<dyn Socket>> {
        Ok(Box::new(CountingSocket {
            inner: self.inner.open(listen_addr).await?,
            bytes: self.bytes.clone(),
        }))
    }
}

struct CountingSocket {
    inner: Box<dyn Socket>,
    bytes: Arc<AtomicU64>,
}

#[async_trait]
impl Socket for CountingSocket {
    async fn send(&mut self, to: SocketAddr, msg: ChitchatMessage) -> anyhow::Result<()> {
        self.bytes
            .fetch_add(msg.serialized_len() as u64, Ordering::Relaxed);
        self.inner.send(to, msg).await
    }

    async fn recv(&mut self) -> anyhow::Result<(SocketAddr, ChitchatMessage)> {
        self.inner.recv().await
    }
}

/// A full table (1,000,000 IPv4 + 250,000 IPv6 prefixes) becomes POP p01's view; measures
/// how long until every other node of an `n`-node cluster answers from it, and, meanwhile,
/// how long load changes of p02 take to reach every node (beside the same measure before).
async fn propagate(n: usize) {
    let (nodes, _) = start(n).await;
    let mut before = Vec::new();
    for round in 0..10 {
        before.push(load_latency(&nodes, round).await);
    }
    let prefixes = sparrow_netsim::fulltable::prefixes(sparrow_netsim::fulltable::TableSpec {
        v4_prefixes: 1_000_000,
        v6_prefixes: sparrow_netsim::fulltable::FULL_V6,
        seed: 2026,
    });
    let view = sparrow_node::routes::RouteView::new(
        sparrow_netsim::fulltable::pop_view_entries(&prefixes, 1, 2026)
            .into_iter()
            .map(|(net, path)| (net, path.into_boxed_slice()))
            .collect(),
    );
    drop(prefixes);
    let old_digest = nodes[1].snapshot.load().view_info(1).and_then(|v| v.digest);
    let t0 = Instant::now();
    nodes[1]
        .state
        .send(sparrow_node::state::Change::OwnView(
            sparrow_node::routes::OwnView {
                view: Some(Arc::new(view)),
                source: "bench full table".into(),
                stale_since_ms: None,
            },
        ))
        .await;
    // Announced once encoded: its digest shows in the node's own view description.
    while nodes[1].snapshot.load().view_info(1).and_then(|v| v.digest) == old_digest
        || nodes[1]
            .snapshot
            .load()
            .view_info(1)
            .and_then(|v| v.digest)
            .is_none()
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let announced = t0.elapsed().as_secs_f64();
    let digest = nodes[1].snapshot.load().view_info(1).and_then(|v| v.digest);
    let mut during = Vec::new();
    let mut round = 10;
    let arrived = loop {
        let all = nodes
            .iter()
            .all(|node| node.snapshot.load().view_info(1).and_then(|v| v.digest) == digest);
        if all {
            break t0.elapsed().as_secs_f64();
        }
        assert!(
            t0.elapsed() < Duration::from_secs(300),
            "the view never reached every node"
        );
        during.push(load_latency(&nodes, round).await);
        round += 1;
    };
    let stats = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        format!(
            "median {:.3} s, worst {:.3} s over {} changes",
            percentile(v, 0.5),
            v[v.len() - 1],
            v.len()
        )
    };
    println!(
        "{n} nodes: p01's full view encoded and announced in {announced:.2} s; every node answers from it {arrived:.2} s after the change"
    );
    println!(
        "load of p02 reaching every node, before: {}",
        stats(&mut before)
    );
    if during.is_empty() {
        println!(
            "load of p02 reaching every node, during the transfer: (transfer too quick to sample)"
        );
    } else {
        println!(
            "load of p02 reaching every node, during the transfer: {}",
            stats(&mut during)
        );
    }
    for node in nodes {
        let _ = node.stop().await;
    }
}

/// Sets p02's load to a value that depends on `round`; returns how long until every node has
/// it.
async fn load_latency(nodes: &[TestNode], round: u32) -> f64 {
    let value = 0.1 + f32::from(u8::try_from(round % 8).unwrap_or(0)) / 10.0;
    nodes[2]
        .state
        .send(sparrow_node::state::Change::Load(Some(value)))
        .await;
    let t0 = Instant::now();
    loop {
        // Gossip carries the load with three decimals.
        let seen = nodes.iter().all(|node| {
            node.snapshot.load().pop_status[2]
                .load
                .is_some_and(|l| (l - value).abs() < 0.001)
        });
        if seen {
            return t0.elapsed().as_secs_f64();
        }
        if t0.elapsed() > SETTLE {
            return f64::NAN;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Rounds of failed pulls in [`failed_pull`].
const ROUNDS: u64 = 3;

/// Resident memory of this process in KiB (`VmRSS`), and its peak (`VmHWM`).
fn rss_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Memory of two nodes (ams, nyc) that pull syd's view from a node that announces
/// `prefixes` routes, sends 90% of them as real routes and then ends the stream without an
/// `End`, three times each: resident memory before, after each round of failed pulls, and
/// the peak. All three run in this process (the server's buffers count too).
async fn failed_pull(prefixes: u64) {
    use sparrow_cluster_tests::{GossipNode, example_cluster_with};
    use sparrow_node::cluster::state::{HotState, ViewAnnouncement};
    use sparrow_proto::frame;
    use sparrow_proto::views::{MAGIC, Route4, ViewFrame, ViewHeader};

    let pki = TestPki::new("test");
    let mut nodes = Vec::new();
    for (config, socket) in example_cluster_with(&pki, |_, t| t).into_iter().take(2) {
        nodes.push(
            TestNode::start_clustered(&config, socket)
                .await
                .expect("node starts"),
        );
    }
    let both = || async {
        nodes
            .iter()
            .all(|n| n.snapshot.load().mode == Mode::Cluster { alive: 2 })
    };
    assert!(eventually(SETTLE, both).await, "ams and nyc form a cluster");
    sparrow_node::memory::release_free();
    let before = rss_kib();
    let header = ViewHeader {
        version: 1,
        digest: 0x0bad_0bad,
        prefixes,
    };
    let announced = HotState {
        view: Some(ViewAnnouncement {
            version: header.version,
            digest: header.digest,
            prefixes,
            stale_since_ms: None,
        }),
        ..HotState::up()
    };
    let keys = announced
        .to_keys()
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    // Real, sorted /24s in chunks of `CHUNK`, up to 90% of what the header announces; then
    // the stream ends without an `End`.
    // Six whole sends (three per puller, give or take); later pulls get nothing (the
    // connection is dropped).
    let served = Arc::new(AtomicU64::new(0));
    let serve: sparrow_node::cluster::endpoint::Service = Arc::new({
        let served = served.clone();
        move |conn: quinn::Connection, _id| {
            let served = served.clone();
            Box::pin(async move {
                // One stream per connection: a node dials anew for every pull.
                if let Ok((mut send, mut recv)) = conn.accept_bi().await {
                    if served.load(Ordering::Relaxed) >= 2 * ROUNDS {
                        conn.close(0u32.into(), b"no more");
                        return;
                    }
                    let _ = recv.read_to_end(1024).await;
                    let mut out = frame::preamble(MAGIC).to_vec();
                    out.extend(frame::encode(&ViewFrame::Header(header)));
                    let mut sent = 0u64;
                    let mut ok = send.write_all(&out).await.is_ok();
                    while ok && sent < prefixes * 9 / 10 {
                        let n = (sparrow_proto::views::CHUNK as u64).min(prefixes * 9 / 10 - sent);
                        let chunk: Vec<Route4> = (0..n)
                            .map(|i| Route4 {
                                gap: if i == 0 {
                                    0x0100_0000 + ((sent as u32) << 8)
                                } else {
                                    256
                                },
                                len: 24,
                                hops: 3,
                            })
                            .collect();
                        ok = send
                            .write_all(&frame::encode(&ViewFrame::V4(chunk)))
                            .await
                            .is_ok();
                        sent += n;
                    }
                    // The stream ends without an `End`: delivered whole, then the puller
                    // gives up.
                    let _ = send.finish();
                    let _ = tokio::time::timeout(Duration::from_secs(30), conn.closed()).await;
                    served.fetch_add(1, Ordering::Relaxed);
                }
            })
        }
    });
    let started = Instant::now();
    let _liar = GossipNode::start_serving(
        "syd",
        &["ams", "nyc", "syd"],
        pki.tls(&pki.node("syd")),
        &[nodes[0].cluster.as_ref().expect("clustered").local_addr()],
        keys,
        Duration::from_millis(100),
        serve,
    )
    .await
    .expect("syd starts");
    let mib = |kib: u64| kib as f64 / 1024.0;
    let mut line = format!(
        "failed-pull prefixes={prefixes} sent={} per pull: RSS before {:.1} MiB",
        prefixes * 9 / 10,
        mib(before.0)
    );
    for round in 1..=ROUNDS {
        assert!(
            eventually(SETTLE, || async {
                served.load(Ordering::Relaxed) >= 2 * round
            })
            .await,
            "round {round}: two more whole sends"
        );
        // Let the failed pulls hand back what they held.
        tokio::time::sleep(Duration::from_secs(1)).await;
        line += &format!(", after round {round} {:.1} MiB", mib(rss_kib().0));
    }
    println!(
        "{line}, peak {:.1} MiB; {} s",
        mib(rss_kib().1),
        started.elapsed().as_secs()
    );
    for n in nodes {
        n.stop().await.expect("node stops");
    }
}
