//! Real nodes forming a cluster over QUIC gossip: shared health and admin state, failure
//! detection, and partitions.

use std::time::Duration;

use hickory_proto::rr::RecordType;
use sparrow_cluster_tests::{Ask, TestNode, TestPki, eventually, example_cluster_with};
use sparrow_node::cluster::state::Mode;

use crate::{answers, ecs};

const SETTLE: Duration = Duration::from_secs(20);

async fn start(edit: impl Fn(&str, String) -> String) -> Vec<TestNode> {
    start_with(&TestPki::new("test"), edit).await
}

/// The example's three nodes with certificates from `pki`, `edit` applied to each config.
pub(crate) async fn start_with(
    pki: &TestPki,
    edit: impl Fn(&str, String) -> String,
) -> Vec<TestNode> {
    let mut nodes = Vec::new();
    for (config, socket) in example_cluster_with(pki, edit) {
        nodes.push(TestNode::start_clustered(&config, socket).await.unwrap());
    }
    nodes
}

/// What `node` answers for `subnet`'s A query: (addresses, TTL).
pub(crate) async fn answer(node: &TestNode, subnet: &str) -> (Vec<String>, u32) {
    let r = Ask::new("www.example.net.", RecordType::A)
        .subnet(subnet)
        .send(node.addr)
        .await
        .unwrap();
    assert_eq!(
        ecs(&r).map(|(s, _)| s),
        Some(subnet.parse::<ipnet::IpNet>().unwrap().to_string())
    );
    (answers(&r), r.answers.first().map_or(0, |a| a.ttl))
}

async fn all_in_cluster(nodes: &[&TestNode], alive: usize) -> bool {
    nodes
        .iter()
        .all(|n| n.snapshot.load().mode == Mode::Cluster { alive })
}

#[tokio::test]
async fn every_node_gives_the_same_answer_and_a_killed_node_leaves_every_answer() {
    let mut nodes = start(|_, t| t).await;
    let refs: Vec<&TestNode> = nodes.iter().collect();
    assert!(
        eventually(SETTLE, || all_in_cluster(&refs, 3)).await,
        "cluster did not form"
    );
    for subnet in [
        "100.64.1.0/24",
        "100.64.2.0/24",
        "100.64.3.0/24",
        "100.64.4.0/24",
        "100.64.5.0/24",
    ] {
        // Awaited rather than sampled once: see the synthetic-cluster test below.
        let all_agree = || async {
            let first = answer(&nodes[0], subnet).await;
            for n in &nodes[1..] {
                if answer(n, subnet).await != first {
                    return false;
                }
            }
            true
        };
        assert!(
            eventually(SETTLE, all_agree).await,
            "nodes disagree on {subnet}"
        );
    }
    assert_eq!(
        answer(&nodes[0], "100.64.2.0/24").await.0,
        ["198.51.100.10"]
    );
    // Kill nyc: the survivors keep a quorum (2 of 3) and stop handing nyc out.
    let nyc = nodes.remove(1);
    nyc.stop().await.unwrap();
    let refs: Vec<&TestNode> = nodes.iter().collect();
    assert!(
        eventually(SETTLE, || async {
            let mut ok = true;
            for n in &nodes {
                ok &= answer(n, "100.64.2.0/24").await.0 == ["192.0.2.10"];
            }
            ok
        })
        .await,
        "a node still hands out the dead POP"
    );
    assert!(all_in_cluster(&refs, 2).await);
    for n in nodes {
        n.stop().await.unwrap();
    }
}

#[tokio::test]
async fn a_node_that_shuts_down_says_so_and_is_dropped_before_its_link_fails() {
    let nodes = start(|_, t| t).await;
    let refs: Vec<&TestNode> = nodes.iter().collect();
    assert!(
        eventually(SETTLE, || all_in_cluster(&refs, 3)).await,
        "cluster did not form"
    );
    assert_eq!(
        answer(&nodes[0], "100.64.2.0/24").await.0,
        ["198.51.100.10"]
    );
    // nyc says goodbye but keeps running: its links stay up, yet ams and syd stop handing
    // nyc out and count two members, on the strength of the goodbye alone.
    nodes[1].leave().await;
    let dropped = |n: &TestNode| {
        let snap = n.snapshot.load();
        let nyc = &snap.peers[1];
        nyc.alive
            && nyc.known.as_ref().is_some_and(|k| k.leaving)
            && !snap.pop_status[1].live
            && snap.mode == Mode::Cluster { alive: 2 }
    };
    for n in [&nodes[0], &nodes[2]] {
        assert!(
            eventually(SETTLE, || async { dropped(n) }).await,
            "the goodbye did not reach {}",
            n.addr
        );
        assert_eq!(answer(n, "100.64.2.0/24").await.0, ["192.0.2.10"]);
    }
    for n in nodes {
        n.stop().await.unwrap();
    }
}

#[tokio::test]
async fn a_pop_drained_on_its_node_is_drained_everywhere() {
    let nodes = start(|pop, t| {
        if pop == "nyc" {
            t.replace(
                "route_view = \"views/nyc.routes\"",
                "route_view = \"views/nyc.routes\"\nadmin = \"drained\"",
            )
        } else {
            t
        }
    })
    .await;
    let refs: Vec<&TestNode> = nodes.iter().collect();
    assert!(eventually(SETTLE, || all_in_cluster(&refs, 3)).await);
    assert!(
        eventually(SETTLE, || async {
            answer(&nodes[0], "100.64.2.0/24").await.0 == ["192.0.2.10"]
                && answer(&nodes[2], "100.64.2.0/24").await.0 == ["192.0.2.10"]
        })
        .await,
        "nyc is still handed out by other nodes"
    );
    for n in nodes {
        n.stop().await.unwrap();
    }
}

#[tokio::test]
async fn a_failing_probe_on_one_node_withdraws_its_pop_everywhere() {
    let flag = std::env::temp_dir().join(format!("sparrow-cluster-probe-{}", std::process::id()));
    std::fs::write(&flag, "up").unwrap();
    let probe = format!(
        "[[node.probe]]\nkind = \"exec\"\ncommand = [\"/bin/sh\", \"-c\", \"test -e {} || exit 2\"]\ninterval_ms = 300\ntimeout_ms = 300\nrise = 2\nfall = 2\n\n[zone]",
        flag.display()
    );
    let nodes = start(|pop, t| {
        if pop == "syd" {
            t.replacen("[zone]", &probe, 1)
        } else {
            t
        }
    })
    .await;
    let refs: Vec<&TestNode> = nodes.iter().collect();
    assert!(eventually(SETTLE, || all_in_cluster(&refs, 3)).await);
    assert_eq!(answer(&nodes[0], "100.64.3.0/24").await.0, ["203.0.113.10"]);
    std::fs::remove_file(&flag).unwrap();
    // syd's clients go to nyc (4 hops), from every node.
    assert!(
        eventually(SETTLE, || async {
            answer(&nodes[0], "100.64.3.0/24").await.0 == ["198.51.100.10"]
                && answer(&nodes[1], "100.64.3.0/24").await.0 == ["198.51.100.10"]
        })
        .await,
        "syd still handed out while its probe fails"
    );
    std::fs::write(&flag, "up").unwrap();
    assert!(
        eventually(SETTLE, || async {
            answer(&nodes[0], "100.64.3.0/24").await.0 == ["203.0.113.10"]
        })
        .await,
        "syd not handed out again after recovery"
    );
    for n in nodes {
        n.stop().await.unwrap();
    }
}

#[tokio::test]
async fn a_cut_off_node_answers_local_only_and_rejoins_when_the_partition_heals() {
    let nodes = start(|_, t| t).await;
    let refs: Vec<&TestNode> = nodes.iter().collect();
    assert!(eventually(SETTLE, || all_in_cluster(&refs, 3)).await);
    let gossip = |n: &TestNode| n.snapshot.load().config.cluster.as_ref().unwrap().listen;
    let (ams, nyc, syd) = (&nodes[0], &nodes[1], &nodes[2]);
    // Cut ams off from both others, both ways, at the transport.
    let cut = |on: bool| {
        for (a, b) in [(ams, nyc), (ams, syd)] {
            a.cluster.as_ref().unwrap().faults.cut(gossip(b), on);
            b.cluster.as_ref().unwrap().faults.cut(gossip(a), on);
        }
    };
    cut(true);
    assert!(
        eventually(SETTLE, || async {
            ams.snapshot.load().mode
                == Mode::LocalOnly {
                    alive: 1,
                    quorum: 2,
                }
        })
        .await,
        "ams did not notice the partition"
    );
    // Local-only: ams hands out only itself, with the short TTL, even for nyc's clients.
    assert_eq!(
        answer(ams, "100.64.2.0/24").await,
        (vec!["192.0.2.10".to_owned()], 10)
    );
    assert_eq!(
        answer(ams, "100.64.3.0/24").await,
        (vec!["192.0.2.10".to_owned()], 10)
    );
    // The majority side keeps answering from the cluster and drops ams.
    let majority = [nyc, syd];
    assert!(eventually(SETTLE, || all_in_cluster(&majority, 2)).await);
    assert_eq!(answer(nyc, "100.64.1.0/24").await.0, ["198.51.100.10"]);
    cut(false);
    assert!(
        eventually(SETTLE, || all_in_cluster(&refs, 3)).await,
        "the cluster did not heal by itself"
    );
    assert_eq!(
        answer(ams, "100.64.2.0/24").await,
        (vec!["198.51.100.10".to_owned()], 30)
    );
    assert_eq!(answer(nyc, "100.64.1.0/24").await.0, ["192.0.2.10"]);
    for n in nodes {
        n.stop().await.unwrap();
    }
}

#[tokio::test]
async fn a_drain_is_applied_by_the_pops_own_node_and_confirmed_by_every_live_node() {
    use sparrow_proto::api::{Request, Response};
    let dir = std::env::temp_dir().join(format!("sparrow-drain-{}", std::process::id()));
    let socket = |pop: &str| dir.join(format!("{pop}.sock"));
    let nodes = start(|pop, t| {
        t.replacen(
            "[zone]",
            &format!("api_socket = \"{}\"\n\n[zone]", socket(pop).display()),
            1,
        )
    })
    .await;
    let refs: Vec<&TestNode> = nodes.iter().collect();
    assert!(eventually(SETTLE, || all_in_cluster(&refs, 3)).await);
    let everywhere = |want: &'static str| {
        let nodes = &nodes;
        move || async move {
            let mut ok = true;
            for n in nodes {
                ok &= answer(n, "100.64.2.0/24").await.0 == [want];
            }
            ok
        }
    };
    assert!(eventually(SETTLE, everywhere("198.51.100.10")).await);
    let set = |pop: &str, via: &str, drained: bool| {
        let request = Request::SetAdmin {
            pop: pop.to_owned(),
            drained,
            service: None,
        };
        let path = socket(via);
        async move { sparrow_node::api::call(&path, &request).await.unwrap() }
    };
    // ams's node does not hold nyc's admin state: it says where it is.
    let nyc_addr = nodes[1].cluster.as_ref().unwrap().local_addr().to_string();
    match set("nyc", "ams", true).await {
        Response::Redirect { pop, node, .. } => {
            assert_eq!(pop, "nyc");
            assert_eq!(node, Some(nyc_addr));
        }
        other => panic!("{other:?}"),
    }
    assert!(everywhere("198.51.100.10")().await, "nothing changed");
    // nyc's node drains nyc, and every live node confirms it before the answer comes.
    match set("nyc", "nyc", true).await {
        Response::AdminSet(report) => {
            assert_eq!(report.admin, "drained");
            let mut confirmed = report.confirmed.clone();
            confirmed.sort();
            assert_eq!(confirmed, ["ams", "nyc", "syd"], "{report:?}");
            assert!(report.unconfirmed.is_empty(), "{report:?}");
            assert!(report.message.contains("cluster-wide"), "{report:?}");
        }
        other => panic!("{other:?}"),
    }
    assert!(
        everywhere("192.0.2.10")().await,
        "confirmed, so every node answers without nyc already"
    );
    // Every node shows who drained it.
    for n in &nodes {
        let by = n.snapshot.load().admin_by[1].clone().expect("admin_by");
        assert!(by.who.starts_with("local uid"), "{by:?}");
    }
    match set("nyc", "nyc", false).await {
        Response::AdminSet(report) => assert_eq!(report.confirmed.len(), 3, "{report:?}"),
        other => panic!("{other:?}"),
    }
    assert!(everywhere("198.51.100.10")().await);
    for n in nodes {
        n.stop().await.unwrap();
    }
}

#[tokio::test]
async fn a_restarted_node_rejoins_and_is_handed_out_again() {
    let mut nodes = Vec::new();
    let mut configs = Vec::new();
    for (config, socket) in example_cluster_with(&TestPki::new("test"), |_, t| t) {
        nodes.push(TestNode::start_clustered(&config, socket).await.unwrap());
        configs.push(config);
    }
    let refs: Vec<&TestNode> = nodes.iter().collect();
    assert!(eventually(SETTLE, || all_in_cluster(&refs, 3)).await);
    let gossip = nodes[1]
        .snapshot
        .load()
        .config
        .cluster
        .as_ref()
        .unwrap()
        .listen;
    // A graceful restart: nyc says goodbye first (as on SIGTERM); its next incarnation
    // must be counted again all the same.
    let nyc = nodes.remove(1);
    nyc.leave().await;
    nyc.stop().await.unwrap();
    assert!(
        eventually(SETTLE, || async {
            answer(&nodes[0], "100.64.2.0/24").await.0 == ["192.0.2.10"]
        })
        .await,
        "the stopped node is still handed out"
    );
    // Same config, same gossip address, a new process generation. In one process the old
    // endpoint lets go of the port once its last task has seen the close (a real restart is
    // a new process, whose port is free at once).
    let mut socket = None;
    assert!(
        eventually(SETTLE, || {
            socket = std::net::UdpSocket::bind(gossip).ok();
            std::future::ready(socket.is_some())
        })
        .await
    );
    let socket = socket.unwrap();
    nodes.insert(
        1,
        TestNode::start_clustered(&configs[1], socket)
            .await
            .unwrap(),
    );
    let refs: Vec<&TestNode> = nodes.iter().collect();
    assert!(
        eventually(SETTLE, || all_in_cluster(&refs, 3)).await,
        "the restarted node did not rejoin"
    );
    for n in &nodes {
        assert!(
            eventually(SETTLE, || async {
                answer(n, "100.64.2.0/24").await.0 == ["198.51.100.10"]
            })
            .await,
            "nyc not handed out again"
        );
    }
    for n in nodes {
        n.stop().await.unwrap();
    }
}

#[tokio::test]
async fn load_shifts_answers_between_equally_near_pops_and_away_from_overloaded_ones() {
    let dir = std::env::temp_dir().join(format!("sparrow-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = |pop: &str| dir.join(format!("{pop}.load"));
    let set = |pop: &str, load: &str| std::fs::write(file(pop), load).unwrap();
    // Without load the hash gives 100.64.4.0/24 to nyc: start with nyc the busier.
    set("ams", "0.1");
    set("nyc", "0.8");
    set("syd", "0.2");
    let nodes = start(|pop, t| {
        let load = format!(
            "[node.load]\nkind = \"file\"\npath = \"{}\"\ninterval_ms = 100\ntimeout_ms = 100\n\n[zone]",
            file(pop).display()
        );
        t.replacen("[zone]", &load, 1)
    })
    .await;
    let refs: Vec<&TestNode> = nodes.iter().collect();
    assert!(eventually(SETTLE, || all_in_cluster(&refs, 3)).await);
    let agree = |subnet: &'static str, want: &'static str| {
        let nodes = &nodes;
        move || async move {
            let mut ok = true;
            for n in nodes {
                ok &= answer(n, subnet).await.0 == [want];
            }
            ok
        }
    };
    // ams and nyc are both 2 hops from 100.64.4.0/24: the less loaded wins.
    assert!(
        eventually(SETTLE, agree("100.64.4.0/24", "192.0.2.10")).await,
        "ams (10%) should win"
    );
    set("ams", "0.8");
    set("nyc", "0.1");
    assert!(
        eventually(SETTLE, agree("100.64.4.0/24", "198.51.100.10")).await,
        "nyc (10%) should win"
    );
    // syd above the high-water mark: its own clients go to the next nearest, nyc.
    assert!(eventually(SETTLE, agree("100.64.3.0/24", "203.0.113.10")).await);
    set("syd", "0.95");
    assert!(
        eventually(SETTLE, agree("100.64.3.0/24", "198.51.100.10")).await,
        "overloaded syd still handed out"
    );
    let status = sparrow_node::api::status(&nodes[0].snapshot.load(), None);
    assert_eq!(status.pops[2].load, Some(0.95));
    for n in nodes {
        n.stop().await.unwrap();
    }
}

#[tokio::test]
async fn a_synthetic_cluster_of_five_forms_and_shares_clients_among_equals() {
    let pki = TestPki::new("test");
    let mut nodes = Vec::new();
    for (config, socket) in sparrow_cluster_tests::synthetic_cluster(&pki, 5, Some(100)) {
        nodes.push(TestNode::start_clustered(&config, socket).await.unwrap());
    }
    let refs: Vec<&TestNode> = nodes.iter().collect();
    assert!(eventually(SETTLE, || all_in_cluster(&refs, 5)).await);
    // Every POP is as near as the others to each /16 of 100.64.0.0/10: rendezvous hashing spreads the
    // blocks over all of them, and every node picks the same POP for the same block.
    // (Agreement is awaited, not sampled once: on a loaded test machine a node may briefly
    // miss a peer's heartbeats and exclude it, which is the failure detector doing its job.)
    let mut seen = std::collections::BTreeSet::new();
    for block in 64..128u32 {
        let subnet: &'static str = Box::leak(format!("100.{block}.1.0/24").into_boxed_str());
        let agreed = std::sync::Mutex::new(None);
        let all_agree = || {
            let (nodes, agreed) = (&nodes, &agreed);
            async move {
                let first = answer(&nodes[0], subnet).await.0;
                for n in &nodes[1..] {
                    if answer(n, subnet).await.0 != first {
                        return false;
                    }
                }
                *agreed.lock().unwrap() = Some(first);
                true
            }
        };
        assert!(
            eventually(SETTLE, all_agree).await,
            "nodes disagree on {subnet}"
        );
        seen.insert(agreed.into_inner().unwrap().unwrap());
    }
    assert_eq!(seen.len(), 5, "{seen:?}");
    for n in nodes {
        n.stop().await.unwrap();
    }
}
