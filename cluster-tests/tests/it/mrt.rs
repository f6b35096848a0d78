//! The own POP's view from an MRT dump (`[node.mrt]`): loaded with the config, reloaded when
//! the file changes, kept (marked stale) when a new dump is refused.

use std::time::Duration;

use hickory_proto::rr::RecordType;
use sparrow_cluster_tests::{Ask, TestNode, eventually, example_variant};
use sparrow_netsim::mrt::{MrtPeer, rib_dump};

use crate::answers;

fn dump(paths: &[(&str, &[u32])]) -> Vec<u8> {
    let routes: Vec<(ipnet::IpNet, Vec<u32>)> = paths
        .iter()
        .map(|(p, path)| (p.parse().unwrap(), path.to_vec()))
        .collect();
    let peer = MrtPeer {
        ip: "192.0.2.1".parse().unwrap(),
        asn: 64501,
        bgp_id: "192.0.2.1".parse().unwrap(),
    };
    rib_dump(&[(peer, &routes)], 1_700_000_000)
}

#[tokio::test]
async fn an_mrt_dump_is_reloaded_when_it_changes_and_a_bad_one_is_refused() {
    let config = example_variant(|t| {
        t.replacen(
            "[zone]",
            "[node.mrt]\nfile = \"views/ams.mrt\"\npeer = \"192.0.2.1\"\npoll_interval_ms = 100\n\n[zone]",
            1,
        )
    });
    let file = config.parent().unwrap().join("views/ams.mrt");
    // The router (AS 64501, the POP's own, which does not count) is two hops from
    // 100.64.2.0/24.
    std::fs::write(&file, dump(&[("100.64.2.0/24", &[64501, 64510, 64497])])).unwrap();
    let (node, log) = TestNode::start_watching_views(&config).await.unwrap();
    let ask = || async {
        answers(
            &Ask::new("www.example.net.", RecordType::A)
                .subnet("100.64.2.0/24")
                .send(node.addr)
                .await
                .unwrap(),
        )
    };
    // nyc is 1 hop away.
    assert_eq!(ask().await, ["198.51.100.10"]);
    // The router now reaches it directly (its own network): ams wins.
    std::fs::write(&file, dump(&[("100.64.2.0/24", &[64501])])).unwrap();
    assert!(
        eventually(Duration::from_secs(10), || async {
            ask().await == ["192.0.2.10"]
        })
        .await,
        "new dump not loaded"
    );
    // A corrupt dump is refused: the view stays and is marked stale.
    std::fs::write(&file, b"not an MRT dump").unwrap();
    assert!(
        eventually(Duration::from_secs(10), || async {
            log.lock()
                .unwrap()
                .last()
                .is_some_and(|v| v.stale_since_ms.is_some())
        })
        .await,
        "bad dump not reported"
    );
    assert_eq!(ask().await, ["192.0.2.10"]);
    let stale = log.lock().unwrap().last().unwrap().clone();
    assert_eq!(stale.view.map(|v| v.len()), Some(1));
    assert!(stale.source.starts_with("mrt "), "{}", stale.source);
    node.stop().await.unwrap();
}
