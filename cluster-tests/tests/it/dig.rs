//! The example queried with `dig`, the client operators use: the README's commands.

use sparrow_cluster_tests::{TestNode, example_config};

use crate::dig;

#[tokio::test]
async fn dig_sees_tailored_answers_with_ecs_scope_over_udp_and_tcp() {
    let node = TestNode::start(&example_config()).await.unwrap();
    let server = node.addr;
    let (udp, tcp, v6, nx) = tokio::task::spawn_blocking(move || {
        (
            dig(server, &["www.example.net", "A", "+subnet=100.64.2.0/24"]),
            dig(
                server,
                &["www.example.net", "A", "+subnet=100.64.3.0/24", "+tcp"],
            ),
            dig(
                server,
                &["www.example.net", "AAAA", "+subnet=2001:db8:ff01::/48"],
            ),
            dig(server, &["nope.example.net", "A"]),
        )
    })
    .await
    .unwrap();
    assert!(udp.contains("status: NOERROR"), "{udp}");
    assert!(udp.contains(" aa"), "authoritative: {udp}");
    assert!(
        udp.contains("www.example.net.\t30\tIN\tA\t198.51.100.10"),
        "{udp}"
    );
    assert!(udp.contains("CLIENT-SUBNET: 100.64.2.0/24/24"), "{udp}");
    assert!(
        tcp.contains("www.example.net.\t30\tIN\tA\t203.0.113.10"),
        "{tcp}"
    );
    assert!(tcp.contains("CLIENT-SUBNET: 100.64.3.0/24/24"), "{tcp}");
    assert!(v6.contains("IN\tAAAA\t2001:db8:a::10"), "{v6}");
    assert!(v6.contains("CLIENT-SUBNET: 2001:db8:ff01::/48/48"), "{v6}");
    assert!(nx.contains("status: NXDOMAIN"), "{nx}");
    assert!(
        nx.contains("IN\tSOA\tns1.example.net. hostmaster.example.net."),
        "{nx}"
    );
    node.stop().await.unwrap();
}
