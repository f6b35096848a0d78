//! Route views moving between real nodes: announced in gossip, pulled over QUIC.

use std::sync::Arc;
use std::time::Duration;

use sparrow_cluster_tests::{TestNode, TestPki, eventually};
use sparrow_node::cluster::state::Mode;
use sparrow_node::routes::{OwnView, parse_route_view};

use crate::cluster::{answer, start_with};

const SETTLE: Duration = Duration::from_secs(20);

/// Removes every `route_view` line but the node's own: each node knows only its POP's view,
/// as in production where only the own router is reachable.
fn own_view_only(pop: &str, text: String) -> String {
    text.lines()
        .filter(|l| !l.starts_with("route_view") || l.contains(&format!("views/{pop}.routes")))
        .map(|l| format!("{l}\n"))
        .collect()
}

async fn agree(nodes: &[TestNode], subnet: &'static str, want: &'static str) -> bool {
    for n in nodes {
        if answer(n, subnet).await.0 != [want] {
            return false;
        }
    }
    true
}

#[tokio::test]
async fn nodes_that_know_only_their_own_view_pull_the_others_and_agree() {
    let pki = TestPki::new("test");
    let nodes = start_with(&pki, own_view_only).await;
    for n in &nodes {
        let c = &n.snapshot.load().config;
        let configured: Vec<bool> = c.pops.iter().map(|p| p.route_view.is_some()).collect();
        let own_only: Vec<bool> = (0..3).map(|i| i == c.node.pop).collect();
        assert_eq!(
            configured,
            own_only,
            "{} is configured with its own view only",
            c.own_pop().name
        );
    }
    // The answers of the single-node example, on every node, once the views have moved.
    let cases = [
        ("100.64.1.0/24", "192.0.2.10"),
        ("100.64.2.0/24", "198.51.100.10"),
        ("100.64.3.0/24", "203.0.113.10"),
        ("100.64.5.0/24", "203.0.113.10"),
    ];
    for (subnet, want) in cases {
        assert!(
            eventually(SETTLE, || agree(&nodes, subnet, want)).await,
            "{subnet} should go to {want} everywhere"
        );
    }
    for n in &nodes {
        let s = n.snapshot.load();
        assert!(matches!(s.mode, Mode::Cluster { alive: 3 }));
        for (i, pop) in s.config.pops.iter().enumerate() {
            let info = s.view_info(i).expect("every view held");
            let own = i == s.config.node.pop;
            assert_eq!(
                info.source.starts_with("pulled from"),
                !own,
                "{}: {:?}",
                pop.name,
                info
            );
            assert!(info.version.is_some() && info.digest.is_some());
        }
        let stats = n.cluster.as_ref().unwrap().view_stats();
        assert!(stats.pulled.load(std::sync::atomic::Ordering::Relaxed) >= 2);
    }
    // Every node holds the same digest for each POP: the owner's.
    let digests = |n: &TestNode| {
        let s = n.snapshot.load();
        (0..3)
            .map(|i| s.view_info(i).and_then(|v| v.digest))
            .collect::<Vec<_>>()
    };
    assert_eq!(digests(&nodes[0]), digests(&nodes[1]));
    assert_eq!(digests(&nodes[0]), digests(&nodes[2]));
    for n in nodes {
        n.stop().await.unwrap();
    }
}

#[tokio::test]
async fn a_changed_view_reaches_every_node_and_staleness_is_shown() {
    let pki = TestPki::new("test");
    let nodes = start_with(&pki, own_view_only).await;
    assert!(eventually(SETTLE, || agree(&nodes, "100.64.2.0/24", "198.51.100.10")).await);
    // nyc's router now reaches 100.64.2.0/24 only through a long path: ams (3 hops) wins.
    let (view, _) = parse_route_view("100.64.0.0/16 64510 64511 64512 64513 64514 64515\n");
    // As nyc's view source would hand it over.
    assert!(
        nodes[1]
            .state
            .send(sparrow_node::state::Change::OwnView(OwnView {
                view: Some(Arc::new(view)),
                source: "test".into(),
                stale_since_ms: Some(1_764_500_000_000),
            }))
            .await
    );
    assert!(
        eventually(SETTLE, || agree(&nodes, "100.64.2.0/24", "192.0.2.10")).await,
        "the new nyc view did not reach every node"
    );
    for n in &nodes {
        let info = n.snapshot.load().view_info(1).cloned().unwrap();
        assert_eq!(info.prefixes, 1);
        assert_eq!(info.stale_since_ms, Some(1_764_500_000_000), "{info:?}");
    }
    for n in nodes {
        n.stop().await.unwrap();
    }
}

#[tokio::test]
async fn a_peer_that_speaks_garbage_on_the_view_protocol_is_disconnected() {
    let pki = TestPki::new("test");
    let nodes = start_with(&pki, |_, t| t).await;
    let target = nodes[0].cluster.as_ref().unwrap().local_addr();
    // A peer with a valid certificate of a POP of the cluster (syd's), speaking garbage.
    let tls = pki.tls(&pki.node("syd"));
    let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let client = tls
        .client_config(sparrow_node::cluster::tls::ALPN_VIEWS)
        .unwrap();
    for payload in [b"GET / HTTP/1.1\r\n\r\n".to_vec(), {
        // The right preamble, then a frame that announces 4 GiB.
        let mut p = sparrow_proto::frame::preamble(sparrow_proto::views::MAGIC).to_vec();
        p.extend([0xff; 4]);
        p
    }] {
        let conn = endpoint
            .connect_with(client.clone(), target, "sparrow-node")
            .unwrap()
            .await
            .unwrap();
        let (mut send, _recv) = conn.open_bi().await.unwrap();
        send.write_all(&payload).await.unwrap();
        send.finish().unwrap();
        let reason = tokio::time::timeout(Duration::from_secs(10), conn.closed())
            .await
            .expect("peer not disconnected");
        assert!(
            matches!(reason, quinn::ConnectionError::ApplicationClosed(ref c) if c.error_code == 2u32.into()),
            "{reason:?}"
        );
    }
    // A well-formed request for a POP the node does not serve is refused, not dropped.
    let conn = endpoint
        .connect_with(client.clone(), target, "sparrow-node")
        .unwrap()
        .await
        .unwrap();
    let builder = sparrow_node::state::builder::Builder::start("test-builder").unwrap();
    let stats = sparrow_node::cluster::view_sync::ViewStats::default();
    let fetch = |pop: &'static str| {
        sparrow_node::cluster::view_sync::fetch(
            &endpoint, &client, &builder, &stats, target, pop, 0,
        )
    };
    // Pulling nyc's view from ams's node: refused by the puller itself, since a view is only
    // ever taken from its own POP's node.
    let err = fetch("nyc").await.unwrap_err();
    assert!(err.to_string().contains("is node ams, not nyc"), "{err:#}");
    let pulled = fetch("ams").await.unwrap();
    assert_eq!(pulled.header.prefixes, pulled.view.prefixes());
    drop(conn);
    for n in nodes {
        n.stop().await.unwrap();
    }
}

#[tokio::test]
async fn a_restarted_node_answers_from_the_views_it_kept_and_pulls_none_again() {
    let pki = TestPki::new("test");
    let with_state = |pop: &str, text: String| {
        own_view_only(pop, text).replacen("[zone]", "state_dir = \"state\"\n\n[zone]", 1)
    };
    let mut configs = Vec::new();
    let mut nodes = Vec::new();
    for (config, socket) in sparrow_cluster_tests::example_cluster_with(&pki, with_state) {
        nodes.push(TestNode::start_clustered(&config, socket).await.unwrap());
        configs.push(config);
    }
    assert!(eventually(SETTLE, || agree(&nodes, "100.64.2.0/24", "198.51.100.10")).await);
    assert!(eventually(SETTLE, || agree(&nodes, "100.64.3.0/24", "203.0.113.10")).await);
    let views = configs[0].parent().unwrap().join("state/views");
    assert!(views.join("nyc.view").exists() && views.join("syd.view").exists());
    assert!(
        !views.join("ams.view").exists(),
        "the own view is not kept as pulled"
    );
    let gossip = nodes[0].cluster.as_ref().unwrap().local_addr();
    nodes.remove(0).stop().await.unwrap();
    let mut socket = None;
    assert!(
        eventually(SETTLE, || {
            socket = std::net::UdpSocket::bind(gossip).ok();
            std::future::ready(socket.is_some())
        })
        .await
    );
    let ams = TestNode::start_clustered(&configs[0], socket.unwrap())
        .await
        .unwrap();
    // The kept views load first (nothing is pulled before they are in): wait for exactly
    // that, then check that no pull went before them.
    let kept = |pop: usize| {
        ams.snapshot
            .load()
            .view_info(pop)
            .is_some_and(|i| i.source.starts_with("kept from the last run"))
    };
    assert!(
        eventually(SETTLE, || std::future::ready(kept(1) && kept(2))).await,
        "kept views loaded"
    );
    let stats = ams.cluster.as_ref().unwrap().view_stats();
    assert_eq!(stats.pulled.load(std::sync::atomic::Ordering::Relaxed), 0);
    assert!(
        ams.snapshot.load().view(1).is_none(),
        "only hops are kept of a pulled view"
    );
    nodes.insert(0, ams);
    assert!(eventually(SETTLE, || agree(&nodes, "100.64.2.0/24", "198.51.100.10")).await);
    // The digests announced match the kept ones: nothing was pulled again.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let stats = nodes[0].cluster.as_ref().unwrap().view_stats();
    assert_eq!(stats.pulled.load(std::sync::atomic::Ordering::Relaxed), 0);
    for n in nodes {
        n.stop().await.unwrap();
    }
}
