//! Real nodes from configs that `sparrow-netsim` generated: their DNS answers match the
//! simulated Internet's ground truth by AS hops.
//!
//! The seed is printed and can be set with `SPARROW_SEED`, so a failure replays.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hickory_proto::rr::RecordType;
use sparrow_cluster_tests::{Ask, TestNode, TestPki, eventually};
use sparrow_netsim::folder::{self, ClusterLayout, Layout, Sim};
use sparrow_netsim::pops::PopRequest;
use sparrow_netsim::truth::Entry;

use crate::{answers, ecs};

/// The seed of this run: `SPARROW_SEED`, else a fixed one so that CI is repeatable.
fn seed() -> u64 {
    let seed = sparrow_cluster_tests::env_or("SPARROW_SEED", 20_261_121);
    eprintln!("netsim seed {seed} (replay with SPARROW_SEED={seed})");
    seed
}

fn temp_dir(what: &str) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    std::env::temp_dir().join(format!(
        "sparrow-netsim-{what}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ))
}

/// Every `step`th truth entry, so a test asks a few hundred clients of both families.
fn sample(sim: &Sim, count: usize) -> Vec<&Entry> {
    let step = (sim.truth.entries.len() / count).max(1);
    sim.truth.entries.iter().step_by(step).collect()
}

/// The POP index whose IPv4 address `node` answers for `entry`'s client subnet.
async fn answered_pop(sim: &Sim, node: SocketAddr, entry: &Entry) -> usize {
    let client = entry.client.to_string();
    let r = Ask::new(
        &format!("{}.{}", folder::GEO_NAME, folder::ZONE),
        RecordType::A,
    )
    .subnet(&client)
    .send(node)
    .await
    .unwrap();
    assert_eq!(ecs(&r).map(|(s, _)| s), Some(client.clone()));
    let got = answers(&r);
    assert_eq!(got.len(), 1, "{client}: {got:?}");
    sim.pops
        .iter()
        .position(|p| p.addresses.iter().any(|a| a.to_string() == got[0]))
        .unwrap_or_else(|| panic!("{client}: {} is no POP's address", got[0]))
}

fn describe(sim: &Sim, e: &Entry, got: usize) -> String {
    let names: Vec<&str> = e
        .by_hops
        .iter()
        .map(|&p| sim.pops[p].name.as_str())
        .collect();
    format!(
        "client {} (AS{}): answered {}, fewest hops ({}) from {names:?}",
        e.client, e.origin, sim.pops[got].name, e.hops
    )
}

#[tokio::test]
async fn a_generated_standalone_node_answers_the_ground_truth_by_hops() {
    let sim = Sim::generate(300, seed(), &PopRequest::auto(5)).unwrap();
    let dir = temp_dir("standalone");
    let layout = Layout {
        dns: vec!["127.0.0.1:0".parse().unwrap(); sim.pops.len()],
        cluster: None,
        overrides: Vec::new(),
    };
    folder::write_folder(&sim, &layout, &dir).unwrap();
    let node = TestNode::start(&dir.join("fra.toml")).await.unwrap();
    let entries = sample(&sim, 400);
    let mut answered = vec![0usize; sim.pops.len()];
    let mut v6 = 0;
    for e in &entries {
        let got = answered_pop(&sim, node.addr, e).await;
        assert!(e.by_hops.contains(&got), "{}", describe(&sim, e, got));
        answered[got] += 1;
        v6 += usize::from(e.client.addr().is_ipv6());
    }
    // The sample is not trivial: both families, and every POP wins some clients.
    assert!(v6 > 0 && v6 < entries.len(), "{v6} of {}", entries.len());
    assert!(
        answered.iter().all(|&n| n > 0),
        "answers per POP: {answered:?}"
    );
    node.stop().await.unwrap();
}

#[tokio::test]
async fn a_generated_cluster_forms_and_every_node_answers_the_ground_truth() {
    let sim = Sim::generate(200, seed(), &PopRequest::auto(3)).unwrap();
    let dir = temp_dir("cluster");
    let sockets: Vec<std::net::UdpSocket> = (0..3)
        .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect();
    let layout = Layout {
        dns: vec!["127.0.0.1:0".parse().unwrap(); 3],
        cluster: Some(ClusterLayout {
            id: "netsim".into(),
            gossip: sockets.iter().map(|s| s.local_addr().unwrap()).collect(),
        }),
        overrides: Vec::new(),
    };
    folder::write_folder(&sim, &layout, &dir).unwrap();
    // The PKI that `make-pki.sh` would make with `sparrow cert`, made with the same code.
    let pki = TestPki::new("netsim");
    std::fs::create_dir_all(dir.join("pki")).unwrap();
    std::fs::write(dir.join("pki/ca.pem"), &pki.ca.cert).unwrap();
    for p in &sim.pops {
        let cert = pki.node(&p.name);
        std::fs::write(dir.join(format!("pki/{}.pem", p.name)), &cert.cert).unwrap();
        std::fs::write(dir.join(format!("pki/{}.key", p.name)), &cert.key).unwrap();
    }
    let mut nodes = Vec::new();
    for (p, socket) in sim.pops.iter().zip(sockets) {
        let config = dir.join(format!("{}.toml", p.name));
        nodes.push(TestNode::start_clustered(&config, socket).await.unwrap());
    }
    // What the assertion below needs: every node in cluster mode holding every POP's view
    // (not only the cluster formed: views are pulled after it forms).
    let refs: Vec<&TestNode> = nodes.iter().collect();
    let settled = eventually(Duration::from_secs(60), || {
        std::future::ready(sparrow_cluster_tests::views_settled(&refs))
    })
    .await;
    assert!(
        settled,
        "the generated cluster did not form or pull every view"
    );
    for e in sample(&sim, 60) {
        let first = answered_pop(&sim, nodes[0].addr, e).await;
        assert!(e.by_hops.contains(&first), "{}", describe(&sim, e, first));
        for n in &nodes[1..] {
            assert_eq!(answered_pop(&sim, n.addr, e).await, first, "nodes disagree");
        }
    }
    for n in nodes {
        n.stop().await.unwrap();
    }
}
