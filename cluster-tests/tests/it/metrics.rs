//! The metrics endpoint of real nodes, scraped with a real HTTP client after real DNS
//! queries: counters move by exactly what was sent, and the state gauges follow the node.

use std::time::Duration;

use hickory_proto::rr::RecordType;
use sparrow_cluster_tests::{
    Ask, Scraped, TestNode, eventually, example_cluster, example_variant, http_get, scrape,
};

use crate::answers;

const SETTLE: Duration = Duration::from_secs(20);

/// `[node]` lines that turn the endpoint on (any free port) and add probes whose outcomes
/// are known: one passing, one warning, and a load of 0.5 read from a file.
fn with_metrics_and_probes(text: String, load_file: &std::path::Path) -> String {
    let extra = format!(
        "metrics_listen = \"127.0.0.1:0\"\n\
         [[node.probe]]\nname = \"web\"\nkind = \"exec\"\ncommand = [\"/bin/sh\", \"-c\", \"exit 0\"]\ninterval_ms = 100\ntimeout_ms = 100\n\
         [[node.probe]]\nname = \"disk\"\nkind = \"exec\"\ncommand = [\"/bin/sh\", \"-c\", \"echo 'DISK WARNING'; exit 1\"]\ninterval_ms = 100\ntimeout_ms = 100\n\
         [node.load]\nkind = \"file\"\npath = \"{}\"\ninterval_ms = 100\ntimeout_ms = 100\n\n[zone]",
        load_file.display()
    );
    text.replacen("[zone]", &extra, 1)
}

fn queries(t: &str, qtype: &str, rcode: &str) -> String {
    format!("sparrow_dns_queries_total{{transport=\"{t}\",qtype=\"{qtype}\",rcode=\"{rcode}\"}}")
}

fn geo(pop: &str, ecs: bool) -> String {
    format!("sparrow_geo_answers_total{{pop=\"{pop}\",ecs=\"{ecs}\"}}")
}

fn pop_state(pop: &str, state: &str) -> String {
    format!("sparrow_pop_state{{pop=\"{pop}\",state=\"{state}\"}}")
}

#[tokio::test]
async fn a_standalone_node_counts_exactly_what_it_answered() {
    let load_file =
        std::env::temp_dir().join(format!("sparrow-metrics-load-{}", std::process::id()));
    std::fs::write(&load_file, "0.5\n").unwrap();
    let config = example_variant(|t| with_metrics_and_probes(t, &load_file));
    let node = TestNode::start(&config).await.unwrap();
    let addr = node.metrics.expect("metrics endpoint bound");
    assert!(addr.ip().is_loopback() && addr.port() != 0);

    // Before any query: every label set exists, at zero.
    let before = scrape(addr).await.unwrap();
    for t in ["udp", "tcp"] {
        for q in ["A", "AAAA", "other"] {
            for r in ["NOERROR", "NXDOMAIN", "REFUSED", "FORMERR", "SERVFAIL"] {
                assert_eq!(before.value(&queries(t, q, r)), 0.0);
            }
        }
    }
    for pop in ["ams", "nyc", "syd"] {
        assert_eq!(before.value(&geo(pop, true)), 0.0);
        assert_eq!(before.value(&geo(pop, false)), 0.0);
    }
    assert_eq!(before.value("sparrow_mode{mode=\"standalone\"}"), 1.0);
    assert_eq!(before.value("sparrow_mode{mode=\"cluster\"}"), 0.0);
    assert_eq!(before.value("sparrow_mode{mode=\"local_only\"}"), 0.0);
    assert_eq!(before.value("sparrow_members_alive"), 1.0);
    assert_eq!(before.value("sparrow_partitions_total"), 0.0);
    assert_eq!(
        before.get("sparrow_gossip_sent_bytes_total"),
        None,
        "a standalone node has no gossip"
    );

    // Wait for the load probe's first reading, so that every query below sees the same
    // state, and for both health probes' first checks (the exec one can take a while on a
    // busy machine).
    assert!(
        eventually(Duration::from_secs(10), || async {
            let m = scrape(addr).await.unwrap();
            m.get("sparrow_pop_load_ratio{pop=\"ams\"}") == Some(0.5)
                && m.get("sparrow_probe_checks_total{probe=\"web\",outcome=\"ok\"}")
                    .is_some_and(|v| v >= 1.0)
                && m.get("sparrow_probe_checks_total{probe=\"disk\",outcome=\"warning\"}")
                    .is_some_and(|v| v >= 1.0)
        })
        .await,
        "load or probe checks never reported"
    );

    // nyc is 1 hop from 100.64.2.0/24 and 2001:db8:ff02::/48 (the README's walk-through).
    for _ in 0..3 {
        let r = Ask::new("www.example.net.", RecordType::A)
            .subnet("100.64.2.0/24")
            .send(node.addr)
            .await
            .unwrap();
        assert_eq!(answers(&r), ["198.51.100.10"]);
    }
    for _ in 0..2 {
        let r = Ask::new("www.example.net.", RecordType::AAAA)
            .subnet("2001:db8:ff02::/48")
            .tcp()
            .send(node.addr)
            .await
            .unwrap();
        assert_eq!(answers(&r), ["2001:db8:b::10"]);
    }
    // No ECS: the resolver (127.0.0.1) decides; no POP has a route to it, and which POP it
    // gets (loads differ) is the policy's business: the counter must follow the answer.
    let r = Ask::new("www.example.net.", RecordType::A)
        .send(node.addr)
        .await
        .unwrap();
    let no_ecs_pop = match answers(&r).as_slice() {
        [a] if a == "192.0.2.10" => "ams",
        [a] if a == "198.51.100.10" => "nyc",
        [a] if a == "203.0.113.10" => "syd",
        other => panic!("unexpected answer {other:?}"),
    };
    Ask::new("nope.example.net.", RecordType::A)
        .send(node.addr)
        .await
        .unwrap();
    Ask::new("www.example.org.", RecordType::A)
        .send(node.addr)
        .await
        .unwrap();
    Ask::new("example.net.", RecordType::SOA)
        .tcp()
        .send(node.addr)
        .await
        .unwrap();

    let after = scrape(addr).await.unwrap();
    let mut expected = vec![
        (queries("udp", "A", "NOERROR"), 4.0),
        (queries("tcp", "AAAA", "NOERROR"), 2.0),
        (queries("udp", "A", "NXDOMAIN"), 1.0),
        (queries("udp", "A", "REFUSED"), 1.0),
        (queries("tcp", "other", "NOERROR"), 1.0),
        (geo("nyc", true), 5.0),
        (geo(no_ecs_pop, false), 1.0),
    ];
    // Everything else stayed at zero.
    for t in ["udp", "tcp"] {
        for q in ["A", "AAAA", "other"] {
            for r in [
                "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "BADVERS",
                "other",
            ] {
                let s = queries(t, q, r);
                if !expected.iter().any(|(e, _)| *e == s) {
                    expected.push((s, 0.0));
                }
            }
        }
    }
    for pop in ["ams", "nyc", "syd"] {
        for ecs in [true, false] {
            let s = geo(pop, ecs);
            if !expected.iter().any(|(e, _)| *e == s) {
                expected.push((s, 0.0));
            }
        }
    }
    expected.push(("sparrow_local_only_answers_total".to_owned(), 0.0));
    for (series, want) in &expected {
        assert_eq!(after.value(series), *want, "{series}");
    }

    // State, read at scrape time.
    for pop in ["ams", "nyc", "syd"] {
        assert_eq!(after.value(&pop_state(pop, "live")), 1.0);
        assert_eq!(after.value(&pop_state(pop, "healthy")), 1.0);
        assert_eq!(after.value(&pop_state(pop, "drained")), 0.0);
        assert_eq!(after.value(&pop_state(pop, "overloaded")), 0.0);
    }
    assert_eq!(
        after.get("sparrow_pop_load_ratio{pop=\"nyc\"}"),
        None,
        "unknown load"
    );
    // Probes: the passing one and the warning one are both up; outcomes by kind.
    assert_eq!(after.value("sparrow_probe_up{probe=\"web\"}"), 1.0);
    assert_eq!(after.value("sparrow_probe_up{probe=\"disk\"}"), 1.0);
    assert!(after.value("sparrow_probe_checks_total{probe=\"web\",outcome=\"ok\"}") >= 1.0);
    assert_eq!(
        after.value("sparrow_probe_checks_total{probe=\"web\",outcome=\"failed\"}"),
        0.0
    );
    assert!(after.value("sparrow_probe_checks_total{probe=\"disk\",outcome=\"warning\"}") >= 1.0);
    assert_eq!(
        after.value("sparrow_probe_checks_total{probe=\"disk\",outcome=\"ok\"}"),
        0.0
    );
    let took = after.value("sparrow_probe_last_check_duration_seconds{probe=\"web\"}");
    assert!(took > 0.0 && took < 1.0, "{took}");
    assert!(after.value("sparrow_load_probe_checks_total{outcome=\"ok\"}") >= 1.0);
    assert!(
        after
            .0
            .contains("# HELP sparrow_dns_queries DNS queries answered")
    );
    assert!(
        after
            .0
            .contains("# UNIT sparrow_probe_last_check_duration_seconds seconds")
    );

    // Overload shows at the next reading, and a failed reading makes the load unknown.
    std::fs::write(&load_file, "0.95\n").unwrap();
    assert!(
        eventually(Duration::from_secs(10), || async {
            scrape(addr)
                .await
                .unwrap()
                .get(&pop_state("ams", "overloaded"))
                == Some(1.0)
        })
        .await
    );
    std::fs::remove_file(&load_file).unwrap();
    assert!(
        eventually(Duration::from_secs(10), || async {
            let m = scrape(addr).await.unwrap();
            m.get("sparrow_pop_load_ratio{pop=\"ams\"}").is_none()
                && m.value("sparrow_load_probe_checks_total{outcome=\"failed\"}") >= 1.0
        })
        .await
    );

    // Only /metrics is served.
    let (status, _, _) = http_get(addr, "/").await.unwrap();
    assert_eq!(status, 404);
    node.stop().await.unwrap();
}

async fn all(nodes: &[TestNode], check: impl Fn(&Scraped) -> bool) -> bool {
    for n in nodes {
        if !check(&scrape(n.metrics.unwrap()).await.unwrap()) {
            return false;
        }
    }
    true
}

#[tokio::test]
async fn a_cluster_reports_members_gossip_and_partitions() {
    let mut nodes = Vec::new();
    // syd runs a zone with another serial: a change not rolled out everywhere.
    for (config, socket) in example_cluster(|pop, t| {
        let t = t.replacen("[zone]", "metrics_listen = \"127.0.0.1:0\"\n\n[zone]", 1);
        if pop == "syd" {
            t.replacen("serial = 2026112101", "serial = 2026112102", 1)
        } else {
            t
        }
    }) {
        nodes.push(TestNode::start_clustered(&config, socket).await.unwrap());
    }
    let in_cluster = |m: &Scraped| {
        m.get("sparrow_mode{mode=\"cluster\"}") == Some(1.0)
            && m.get("sparrow_members_alive") == Some(3.0)
    };
    assert!(
        eventually(SETTLE, || all(&nodes, in_cluster)).await,
        "the cluster did not form"
    );
    for n in &nodes {
        let m = scrape(n.metrics.unwrap()).await.unwrap();
        assert_eq!(m.value("sparrow_mode{mode=\"standalone\"}"), 0.0);
        assert_eq!(m.value("sparrow_mode{mode=\"local_only\"}"), 0.0);
        assert!(m.value("sparrow_gossip_sent_bytes_total") > 0.0);
        assert!(m.value("sparrow_gossip_received_bytes_total") > 0.0);
        assert_eq!(m.value("sparrow_gossip_peers_refused_total"), 0.0);
        assert_eq!(m.value("sparrow_partitions_total"), 0.0);
        for pop in ["ams", "nyc", "syd"] {
            assert_eq!(m.value(&pop_state(pop, "live")), 1.0);
            assert_eq!(
                m.value(&format!("sparrow_view_stale{{pop=\"{pop}\"}}")),
                0.0
            );
            assert!(m.value(&format!("sparrow_view_prefixes{{pop=\"{pop}\"}}")) >= 7.0);
        }
        assert!(m.value("sparrow_gossip_wire_sent_bytes_total") > 0.0);
        assert_eq!(m.value("sparrow_view_pull_failures_total"), 0.0);
    }
    // Each node flags the peers whose config differs from its own, once it has their keys.
    let differs =
        |m: &Scraped, pop: &str| m.get(&format!("sparrow_pop_config_differs{{pop=\"{pop}\"}}"));
    let flagged = |i: usize| {
        let node = &nodes[i];
        async move {
            let m = scrape(node.metrics.unwrap()).await.unwrap();
            match i {
                0 => differs(&m, "nyc") == Some(0.0) && differs(&m, "syd") == Some(1.0),
                1 => differs(&m, "ams") == Some(0.0) && differs(&m, "syd") == Some(1.0),
                _ => differs(&m, "ams") == Some(1.0) && differs(&m, "nyc") == Some(1.0),
            }
        }
    };
    for i in 0..3 {
        assert!(
            eventually(SETTLE, || flagged(i)).await,
            "node {i} does not flag exactly syd's config as different"
        );
        let m = scrape(nodes[i].metrics.unwrap()).await.unwrap();
        assert_eq!(
            differs(&m, ["ams", "nyc", "syd"][i]),
            None,
            "a node never flags itself"
        );
    }
    // Every node pulls its peers' views (their digests differ from the files' views, which
    // have none) and serves its own.
    let pulled = |m: &Scraped| {
        m.get("sparrow_views_pulled_total") == Some(2.0)
            && m.get("sparrow_views_served_total")
                .is_some_and(|v| v >= 2.0)
    };
    assert!(
        eventually(SETTLE, || all(&nodes, pulled)).await,
        "views not pulled"
    );

    // Cut ams off from both others: it counts one partition and its local-only answers.
    let gossip = |n: &TestNode| n.snapshot.load().config.cluster.as_ref().unwrap().listen;
    let cut = |on: bool| {
        for (a, b) in [(0, 1), (0, 2)] {
            let (a, b) = (&nodes[a], &nodes[b]);
            a.cluster.as_ref().unwrap().faults.cut(gossip(b), on);
            b.cluster.as_ref().unwrap().faults.cut(gossip(a), on);
        }
    };
    cut(true);
    let ams = nodes[0].metrics.unwrap();
    assert!(
        eventually(SETTLE, || async {
            scrape(ams)
                .await
                .unwrap()
                .get("sparrow_mode{mode=\"local_only\"}")
                == Some(1.0)
        })
        .await,
        "ams did not report the partition"
    );
    let m = scrape(ams).await.unwrap();
    assert_eq!(m.value("sparrow_members_alive"), 1.0);
    assert_eq!(m.value("sparrow_partitions_total"), 1.0);
    assert_eq!(m.value("sparrow_mode{mode=\"cluster\"}"), 0.0);
    for _ in 0..2 {
        Ask::new("www.example.net.", RecordType::A)
            .subnet("100.64.2.0/24")
            .send(nodes[0].addr)
            .await
            .unwrap();
    }
    let m = scrape(ams).await.unwrap();
    assert_eq!(m.value("sparrow_local_only_answers_total"), 2.0);
    assert_eq!(m.value(&geo("ams", true)), 2.0, "local-only hands out ams");
    cut(false);
    assert!(
        eventually(SETTLE, || all(&nodes, in_cluster)).await,
        "the cluster did not heal"
    );
    assert_eq!(
        scrape(ams).await.unwrap().value("sparrow_partitions_total"),
        1.0,
        "healing is not another partition"
    );
    for n in nodes {
        n.stop().await.unwrap();
    }
}

#[tokio::test]
async fn ready_waits_for_the_cluster_and_every_live_peers_view() {
    let mut configs = example_cluster(|_, t| {
        t.replacen(
            "[zone]",
            "metrics_listen = \"127.0.0.1:0\"\nready_timeout_secs = 600\n\n[zone]",
            1,
        )
    })
    .into_iter();
    let (config, socket) = configs.next().unwrap();
    let ams = TestNode::start_clustered(&config, socket).await.unwrap();
    let ready = |node: &TestNode| {
        let addr = node.metrics.unwrap();
        async move { http_get(addr, "/ready").await.unwrap() }
    };
    // Alone, ams answers (local-only) but is not ready: a load balancer or systemd waits.
    let (status, _, body) = ready(&ams).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.starts_with("waiting for peers"), "{body}");
    assert!(!ams.state.ready.borrow().ready);

    let (config, socket) = configs.next().unwrap();
    let nyc = TestNode::start_clustered(&config, socket).await.unwrap();
    for node in [&ams, &nyc] {
        assert!(
            eventually(SETTLE, || async { ready(node).await.0 == 200 }).await,
            "not ready: {}",
            ready(node).await.2
        );
        // Ready means the peer's view is in: answers for its clients come from it.
        let (_, _, body) = ready(node).await;
        assert!(body.starts_with("ready: own view in"), "{body}");
    }
    let snap = ams.snapshot.load();
    let nyc_index = snap
        .config
        .pops
        .iter()
        .position(|p| p.name == "nyc")
        .unwrap();
    assert!(
        snap.view_info(nyc_index).and_then(|v| v.digest).is_some(),
        "ams said ready without nyc's view"
    );
    drop(snap);
    nyc.stop().await.unwrap();
    ams.stop().await.unwrap();
}
