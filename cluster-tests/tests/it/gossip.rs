//! Gossip over QUIC with mutual TLS: real chitchat instances, real QUIC on loopback.

use std::time::Duration;

use sparrow_cluster_tests::{GossipNode, TestPki, eventually};
use sparrow_node::pki::Role;

const CONVERGE: Duration = Duration::from_secs(20);

/// The POPs of the test cluster (an intruder names none of them).
const POPS: &[&str] = &["ams", "nyc", "syd"];

async fn good_cluster(pki: &TestPki, names: &[&str]) -> Vec<GossipNode> {
    let mut nodes: Vec<GossipNode> = Vec::new();
    for name in names {
        let seeds: Vec<_> = nodes.first().map(|n| n.addr).into_iter().collect();
        let node = GossipNode::start(name, POPS, pki.tls(&pki.node(name)), &seeds)
            .await
            .unwrap();
        nodes.push(node);
    }
    nodes
}

async fn all_see(nodes: &[GossipNode], want: &[&str]) -> bool {
    for n in nodes {
        if n.live().await != want {
            return false;
        }
    }
    true
}

#[tokio::test]
async fn nodes_of_one_cluster_converge_over_quic() {
    let pki = TestPki::new("test");
    let nodes = good_cluster(&pki, &["ams", "nyc", "syd"]).await;
    assert!(
        eventually(CONVERGE, || all_see(&nodes, &["ams", "nyc", "syd"])).await,
        "membership did not converge"
    );
    // State flows everywhere, including between the two non-seed nodes.
    assert_eq!(
        nodes[1].value_from("syd", "pop").await.as_deref(),
        Some("syd")
    );
    assert_eq!(
        nodes[2].value_from("nyc", "pop").await.as_deref(),
        Some("nyc")
    );
    for n in &nodes {
        let sent = n
            .stats
            .bytes_sent
            .load(std::sync::atomic::Ordering::Relaxed);
        assert!(sent > 0, "{} sent nothing over QUIC", n.addr);
        assert_eq!(
            n.stats
                .peers_refused
                .load(std::sync::atomic::Ordering::Relaxed),
            0
        );
    }
}

/// A node with credentials the cluster must refuse tries to join through `nodes[0]`.
async fn intruder_is_refused(pki: &TestPki, intruder: sparrow_node::cluster::tls::ClusterTls) {
    let nodes = good_cluster(pki, &["ams", "nyc"]).await;
    let bad = GossipNode::start("evil", &["ams", "nyc", "evil"], intruder, &[nodes[0].addr])
        .await
        .unwrap();
    assert!(eventually(CONVERGE, || all_see(&nodes, &["ams", "nyc"])).await);
    // Give the intruder many gossip rounds: it must stay out, and learn nothing.
    assert!(
        eventually(Duration::from_secs(10), || async {
            nodes[0]
                .stats
                .peers_refused
                .load(std::sync::atomic::Ordering::Relaxed)
                > 0
        })
        .await,
        "the seed never refused the intruder"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        all_see(&nodes, &["ams", "nyc"]).await,
        "intruder became a member"
    );
    for n in &nodes {
        assert_eq!(
            n.value_from("evil", "pop").await,
            None,
            "intruder state accepted"
        );
    }
    assert_eq!(bad.live().await, ["evil"], "intruder learned the cluster");
    assert_eq!(bad.value_from("ams", "pop").await, None);
}

#[tokio::test]
async fn a_node_of_another_ca_cannot_join() {
    let pki = TestPki::new("test");
    let other = TestPki::new("test");
    // Signed by another CA (and trusting it): refused by the cluster's CA check.
    intruder_is_refused(&pki, other.tls(&other.node("evil"))).await;
}

#[tokio::test]
async fn a_node_trusting_our_ca_with_a_foreign_certificate_cannot_join() {
    let pki = TestPki::new("test");
    let other = TestPki::new("test");
    let foreign = other.node("evil");
    let tls = sparrow_node::cluster::tls::ClusterTls::from_pem(
        "test",
        &pki.ca.cert,
        &foreign.cert,
        &foreign.key,
    )
    .unwrap();
    intruder_is_refused(&pki, tls).await;
}

#[tokio::test]
async fn a_certificate_of_another_cluster_cannot_join() {
    let pki = TestPki::new("test");
    // Same CA, but the certificate names cluster "other".
    let cert = pki.issue_as("other", Role::Node, "evil");
    intruder_is_refused(&pki, pki.tls(&cert)).await;
}

#[tokio::test]
async fn an_operator_certificate_cannot_join_as_a_node() {
    let pki = TestPki::new("test");
    let cert = pki.issue_as("test", Role::Operator, "evil");
    intruder_is_refused(&pki, pki.tls(&cert)).await;
}

#[tokio::test]
async fn a_malformed_or_oversized_message_disconnects_the_peer_and_gossip_goes_on() {
    let pki = TestPki::new("test");
    let nodes = good_cluster(&pki, &["ams", "nyc"]).await;
    assert!(eventually(CONVERGE, || all_see(&nodes, &["ams", "nyc"])).await);
    // A peer with a valid node certificate (of a POP of the cluster) that speaks garbage.
    let tls = pki.tls(&pki.node("syd"));
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut endpoint = quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        None,
        socket,
        std::sync::Arc::new(quinn::TokioRuntime),
    )
    .unwrap();
    endpoint.set_default_client_config(
        tls.client_config(sparrow_node::cluster::tls::ALPN_GOSSIP)
            .unwrap(),
    );
    for payload in [b"not a chitchat message".to_vec(), vec![0u8; 100_000]] {
        let conn = endpoint
            .connect(nodes[0].addr, "sparrow-node")
            .unwrap()
            .await
            .unwrap();
        let mut stream = conn.open_uni().await.unwrap();
        // The oversized one may be cut off mid-write: that is the point.
        let _ = stream.write_all(&payload).await;
        let _ = stream.finish();
        let reason = tokio::time::timeout(Duration::from_secs(5), conn.closed())
            .await
            .expect("peer not disconnected");
        assert!(
            matches!(reason, quinn::ConnectionError::ApplicationClosed(ref c) if c.error_code == 2u32.into()),
            "{reason:?}"
        );
    }
    // The cluster keeps gossiping: a new key reaches the other node.
    nodes[0]
        .set(vec![
            ("pop".to_owned(), "ams".to_owned()),
            ("health".to_owned(), "ok".to_owned()),
        ])
        .await;
    assert!(
        eventually(CONVERGE, || async {
            nodes[1].value_from("ams", "health").await.as_deref() == Some("ok")
        })
        .await
    );
}

#[tokio::test]
async fn a_node_with_an_expired_certificate_of_our_ca_cannot_join() {
    let pki = TestPki::new("test");
    let id = sparrow_node::pki::Identity {
        cluster: "test".into(),
        role: Role::Node,
        name: "evil".into(),
    };
    // Valid for one day, ten days ago.
    let issued = time::OffsetDateTime::now_utc() - time::Duration::days(10);
    let expired = sparrow_node::pki::issue(&pki.ca, &id, &[], issued, 1).unwrap();
    intruder_is_refused(&pki, pki.tls(&expired)).await;
}
