//! A node probing its own POP stops handing it out while the probes fail, and hands it out
//! again when they pass, without operator action.

use std::time::Duration;

use hickory_proto::rr::RecordType;
use sparrow_cluster_tests::{Ask, TestNode, eventually, example_variant};

use crate::answers;

#[tokio::test]
async fn a_failing_probe_withdraws_the_own_pop_and_recovery_restores_it() {
    let flag = std::env::temp_dir().join(format!("sparrow-health-{}", std::process::id()));
    std::fs::write(&flag, "up").unwrap();
    let probe = format!(
        "[[node.probe]]\nname = \"web\"\nkind = \"exec\"\ncommand = [\"/bin/sh\", \"-c\", \"test -e {} || exit 2\"]\ninterval_ms = 300\ntimeout_ms = 300\nrise = 2\nfall = 2\n\n[zone]",
        flag.display()
    );
    let config = example_variant(|t| t.replacen("[zone]", &probe, 1));
    let node = TestNode::start(&config).await.unwrap();
    let ask = || async {
        answers(
            &Ask::new("www.example.net.", RecordType::A)
                .subnet("100.64.1.0/24")
                .send(node.addr)
                .await
                .unwrap(),
        )
    };
    // ams is 1 hop from this client, nyc 3.
    assert_eq!(ask().await, ["192.0.2.10"]);
    std::fs::remove_file(&flag).unwrap();
    assert!(
        eventually(Duration::from_secs(10), || async {
            ask().await == ["198.51.100.10"]
        })
        .await,
        "ams still handed out while its probe fails"
    );
    assert!(!node.snapshot.load().pop_status[0].healthy);
    std::fs::write(&flag, "up").unwrap();
    assert!(
        eventually(Duration::from_secs(10), || async {
            ask().await == ["192.0.2.10"]
        })
        .await,
        "ams not handed out again after recovery"
    );
    node.stop().await.unwrap();
}
