//! Services (issue #10): the services example answered over real DNS (`dig` and hickory's
//! client), a service drained through the operator API, and a cluster in which one node's
//! service probe withdraws that POP from that service on every node.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hickory_proto::rr::RecordType;
use sparrow_cluster_tests::{
    Ask, TestNode, TestPki, cluster_of, eventually, scrape, services_config, variant_of,
};
use sparrow_node::cluster::state::Mode;
use sparrow_proto::api::{Request, Response};

use crate::{answers, dig};

/// Service indexes in the example: www, api, cdn; POPs ams, nyc, syd.
const API: usize = 1;
const AMS: usize = 0;

/// What `server` answers to `name`'s `rtype` query for `subnet`: the answer records' data.
async fn ask(server: SocketAddr, name: &str, rtype: RecordType, subnet: &str) -> Vec<String> {
    let r = Ask::new(name, rtype)
        .subnet(subnet)
        .send(server)
        .await
        .unwrap();
    answers(&r)
}

#[tokio::test]
async fn the_services_example_answers_each_service_from_its_own_targets_and_health() {
    let config = variant_of(&services_config(), |t| {
        t.replacen("[zone]", "metrics_listen = \"127.0.0.1:0\"\n\n[zone]", 1)
    });
    let node = TestNode::start(&config).await.unwrap();
    // ams's api probe fails at its first check (fall = 1): wait for exactly that.
    assert!(
        eventually(Duration::from_secs(10), || async {
            node.snapshot.load().services[AMS].is_down(API)
        })
        .await,
        "ams's api probe never went down"
    );
    let server = node.addr;
    let (www, api, cdn, api_tcp, api_v6, https) = tokio::task::spawn_blocking(move || {
        (
            dig(server, &["www.example.net", "A", "+subnet=100.64.1.0/24"]),
            dig(server, &["api.example.net", "A", "+subnet=100.64.1.0/24"]),
            dig(server, &["cdn.example.net", "A", "+subnet=100.64.3.0/24"]),
            dig(
                server,
                &["api.example.net", "A", "+subnet=100.64.1.0/24", "+tcp"],
            ),
            dig(
                server,
                &["api.example.net", "AAAA", "+subnet=100.64.1.0/24"],
            ),
            dig(
                server,
                &["api.example.net", "HTTPS", "+subnet=100.64.1.0/24"],
            ),
        )
    })
    .await
    .unwrap();
    // www: ams, healthy for www. api: ams's api is down, nyc is next nearest.
    assert!(
        www.contains("www.example.net.\t30\tIN\tA\t192.0.2.10"),
        "{www}"
    );
    assert!(
        api.contains("api.example.net.\t30\tIN\tA\t198.51.100.20"),
        "{api}"
    );
    assert!(!api.contains("192.0.2.20"), "{api}");
    assert!(api.contains("CLIENT-SUBNET: 100.64.1.0/24/24"), "{api}");
    assert!(
        api_tcp.contains("api.example.net.\t30\tIN\tA\t198.51.100.20"),
        "{api_tcp}"
    );
    // The steered HTTPS record: nyc's hints, the same scope.
    assert!(
        https
            .contains("api.example.net.\t30\tIN\tHTTPS\t1 . alpn=\"h2,h3\" ipv4hint=198.51.100.20"),
        "{https}"
    );
    assert!(https.contains("CLIENT-SUBNET: 100.64.1.0/24/24"), "{https}");
    // api has no IPv6 target: NODATA with the SOA.
    assert!(api_v6.contains("status: NOERROR"), "{api_v6}");
    assert!(api_v6.contains("ANSWER: 0"), "{api_v6}");
    // cdn: syd's CNAME for a client near syd, scoped to the decision block.
    assert!(
        cdn.contains("cdn.example.net.\t30\tIN\tCNAME\tsyd.cdn.example.com."),
        "{cdn}"
    );
    assert!(cdn.contains("CLIENT-SUBNET: 100.64.3.0/24/24"), "{cdn}");
    assert!(
        cdn.contains("status: NOERROR") && cdn.contains(" aa"),
        "{cdn}"
    );

    // The same through hickory's client, for every service at each client.
    for (subnet, want) in [
        (
            "100.64.1.0/24",
            ["192.0.2.10", "198.51.100.20", "CNAME ams.cdn.example.com."],
        ),
        (
            "100.64.2.0/24",
            [
                "198.51.100.10",
                "198.51.100.20",
                "CNAME nyc.cdn.example.com.",
            ],
        ),
        (
            "100.64.3.0/24",
            ["203.0.113.10", "203.0.113.20", "CNAME syd.cdn.example.com."],
        ),
    ] {
        for (name, want) in ["www", "api", "cdn"].into_iter().zip(want) {
            let got = ask(
                server,
                &format!("{name}.example.net."),
                RecordType::A,
                subnet,
            )
            .await;
            assert_eq!(got, [want], "{name} for {subnet}");
        }
    }

    // Status shows every service per POP; metrics count them.
    let status = sparrow_node::api::status(&node.snapshot.load(), None);
    let ams_api = status.pops[AMS]
        .services
        .iter()
        .find(|s| s.name == "api")
        .unwrap();
    assert!(!ams_api.healthy && !ams_api.serving, "{ams_api:?}");
    assert_eq!(ams_api.targets, ["192.0.2.20"]);
    assert!(status.pops[AMS].healthy, "the POP itself stays healthy");
    let ams_www = status.pops[AMS]
        .services
        .iter()
        .find(|s| s.name == "www")
        .unwrap();
    assert!(ams_www.serving);
    let text = sparrow_node::cli::render::status(&status);
    assert!(
        text.contains("ams      api          failing   active   no"),
        "{text}"
    );
    let scraped = scrape(node.metrics.unwrap()).await.unwrap();
    assert_eq!(
        scraped.value(r#"sparrow_service_state{service="api",pop="ams",state="serving"}"#),
        0.0
    );
    assert_eq!(
        scraped.value(r#"sparrow_service_state{service="www",pop="ams",state="serving"}"#),
        1.0
    );
    assert_eq!(
        scraped.value(r#"sparrow_service_state{service="cdn",pop="syd",state="healthy"}"#),
        1.0
    );
    // api went to nyc three times over dig (A over UDP and TCP, HTTPS) and twice over
    // hickory; its AAAA query (NODATA) handed out no POP. cdn went to syd once each way.
    assert_eq!(
        scraped.value(r#"sparrow_service_answers_total{service="api",pop="nyc"}"#),
        5.0
    );
    assert_eq!(
        scraped.value(r#"sparrow_service_answers_total{service="api",pop="ams"}"#),
        0.0
    );
    assert_eq!(
        scraped.value(r#"sparrow_service_answers_total{service="cdn",pop="syd"}"#),
        2.0
    );
    node.stop().await.unwrap();
}

#[tokio::test]
async fn a_service_drained_through_the_api_moves_that_service_only() {
    let dir = std::env::temp_dir().join(format!("sparrow-svc-drain-{}", std::process::id()));
    let socket = dir.join("api.sock");
    let config = variant_of(&services_config(), |t| {
        t.replacen(
            "[zone]",
            &format!("api_socket = \"{}\"\n\n[zone]", socket.display()),
            1,
        )
    });
    let node = TestNode::start(&config).await.unwrap();
    let server = node.addr;
    assert!(
        eventually(Duration::from_secs(10), || async {
            ask(server, "api.example.net.", RecordType::A, "100.64.1.0/24").await
                == ["198.51.100.20"]
        })
        .await
    );
    let set = |drained: bool, service: Option<&str>| Request::SetAdmin {
        pop: "nyc".to_owned(),
        drained,
        service: service.map(str::to_owned),
    };
    let r = sparrow_node::api::call(&socket, &set(true, Some("api")))
        .await
        .unwrap();
    let Response::AdminSet(report) = r else {
        panic!("{r:?}")
    };
    assert_eq!(report.pop, "nyc/api");
    assert_eq!(report.admin, "drained");
    // The reply comes once answers hold it: no waiting needed. ams's api is down and
    // nyc's drained: syd. www (nyc for 100.64.2.0/24) is untouched.
    assert_eq!(
        ask(server, "api.example.net.", RecordType::A, "100.64.1.0/24").await,
        ["203.0.113.20"]
    );
    assert_eq!(
        ask(server, "www.example.net.", RecordType::A, "100.64.2.0/24").await,
        ["198.51.100.10"]
    );
    assert_eq!(
        ask(server, "api.example.net.", RecordType::A, "100.64.2.0/24").await,
        ["203.0.113.20"]
    );
    // Unknown services are refused by name.
    let r = sparrow_node::api::call(&socket, &set(true, Some("mail")))
        .await
        .unwrap();
    assert!(
        matches!(&r, Response::Error { message } if message.contains("no service is named `mail`")),
        "{r:?}"
    );
    // Undrained: nyc again.
    sparrow_node::api::call(&socket, &set(false, Some("api")))
        .await
        .unwrap();
    assert_eq!(
        ask(server, "api.example.net.", RecordType::A, "100.64.2.0/24").await,
        ["198.51.100.20"]
    );
    node.stop().await.unwrap();
}

/// Failover bound of the cluster: a service state published by its POP's node is in every
/// node's answers within this.
const FAILOVER: Duration = Duration::from_secs(2);

#[tokio::test]
async fn a_service_probe_failing_on_one_node_withdraws_that_service_on_every_node() {
    let flag = std::env::temp_dir().join(format!("sparrow-svc-flag-{}", std::process::id()));
    std::fs::write(&flag, "up").unwrap();
    let pki = TestPki::new("test");
    let configs = cluster_of(&services_config(), &pki, |pop, text| {
        // ams's api probe follows the flag; the other POPs' api probes pass.
        let command = if pop == "ams" {
            format!("[\"sh\", \"-c\", \"test -e {} || exit 2\"]", flag.display())
        } else {
            "[\"true\"]".to_owned()
        };
        assert!(
            text.contains("command = [\"false\"]"),
            "the example's probe changed"
        );
        text.replace("[\"false\"]", &command)
    });
    let mut nodes = Vec::new();
    for (config, socket) in configs {
        nodes.push(TestNode::start_clustered(&config, socket).await.unwrap());
    }
    let all = |subnet: &'static str, name: &'static str, want: &'static str| {
        let nodes = &nodes;
        move || async move {
            for n in nodes {
                let got = ask(n.addr, name, RecordType::A, subnet).await;
                if got != [want] {
                    return false;
                }
            }
            true
        }
    };
    assert!(
        eventually(Duration::from_secs(20), || async {
            nodes
                .iter()
                .all(|n| n.snapshot.load().mode == Mode::Cluster { alive: 3 })
        })
        .await,
        "cluster did not form"
    );
    assert!(
        eventually(
            Duration::from_secs(20),
            all("100.64.1.0/24", "api.example.net.", "192.0.2.20")
        )
        .await,
        "not every node hands out ams's api"
    );
    std::fs::remove_file(&flag).unwrap();
    // ams's own node withdraws it first (its probe: 200 ms, fall 1)...
    assert!(
        eventually(Duration::from_secs(5), || async {
            nodes[AMS].snapshot.load().services[AMS].is_down(API)
        })
        .await
    );
    let withdrawn = Instant::now();
    // ... and every node within the failover bound.
    assert!(
        eventually(
            FAILOVER,
            all("100.64.1.0/24", "api.example.net.", "198.51.100.20")
        )
        .await,
        "ams's api still handed out somewhere {FAILOVER:?} after its node withdrew it"
    );
    let took = withdrawn.elapsed();
    println!("service withdrawal reached every node in {took:?}");
    // The other services at ams stay, on every node.
    assert!(all("100.64.1.0/24", "www.example.net.", "192.0.2.10")().await);
    assert!(
        all(
            "100.64.1.0/24",
            "cdn.example.net.",
            "CNAME ams.cdn.example.com."
        )()
        .await
    );
    for n in &nodes {
        let snap = n.snapshot.load();
        assert!(snap.pop_status[AMS].healthy && snap.pop_status[AMS].live);
    }
    // Recovery comes back the same way.
    std::fs::write(&flag, "up").unwrap();
    assert!(
        eventually(
            Duration::from_secs(10),
            all("100.64.1.0/24", "api.example.net.", "192.0.2.20")
        )
        .await,
        "ams's api not handed out again"
    );
    let _ = std::fs::remove_file(&flag);
    for n in nodes {
        n.stop().await.unwrap();
    }
}

#[tokio::test]
async fn a_service_drain_is_confirmed_by_every_live_node_or_names_those_that_did_not() {
    let dir = std::env::temp_dir().join(format!("sparrow-svc-confirm-{}", std::process::id()));
    let socket = |pop: &str| dir.join(format!("{pop}.sock"));
    let pki = TestPki::new("test");
    let configs = cluster_of(&services_config(), &pki, |pop, text| {
        // Every api probe passes. syd runs a config in which the API service is named
        // `gw`: it cannot confirm a drain of `api` (as a node not yet given a new config).
        let text = text.replace("[\"false\"]", "[\"true\"]").replacen(
            "[zone]",
            &format!("api_socket = \"{}\"\n\n[zone]", socket(pop).display()),
            1,
        );
        if pop == "syd" {
            text.replacen("name = \"api\"", "name = \"gw\"", 1)
                .replacen("service = \"api\"", "service = \"gw\"", 1)
        } else {
            text
        }
    });
    let mut nodes = Vec::new();
    for (config, socket) in configs {
        nodes.push(TestNode::start_clustered(&config, socket).await.unwrap());
    }
    assert!(
        eventually(Duration::from_secs(20), || async {
            nodes
                .iter()
                .all(|n| n.snapshot.load().mode == Mode::Cluster { alive: 3 })
        })
        .await,
        "cluster did not form"
    );
    // What every node (or the first `n`) answers for a client near nyc.
    let answers_near_nyc = |name: &'static str, n: usize| {
        let nodes = &nodes;
        async move {
            let mut out = Vec::new();
            for node in &nodes[..n] {
                out.push(ask(node.addr, name, RecordType::A, "100.64.2.0/24").await);
            }
            out
        }
    };
    let nyc_cdn = vec!["CNAME nyc.cdn.example.com.".to_owned()];
    assert!(
        eventually(Duration::from_secs(20), || async {
            answers_near_nyc("cdn.example.net.", 3).await == vec![nyc_cdn.clone(); 3]
        })
        .await,
        "not every node hands out nyc's cdn"
    );
    let set = |service: &str, drained: bool| {
        let request = Request::SetAdmin {
            pop: "nyc".to_owned(),
            drained,
            service: Some(service.to_owned()),
        };
        let path = socket("nyc");
        async move {
            match sparrow_node::api::call(&path, &request).await.unwrap() {
                Response::AdminSet(mut report) => {
                    report.confirmed.sort();
                    report
                }
                other => panic!("{other:?}"),
            }
        }
    };
    // nyc's node drains nyc's cdn; the reply comes once every live node holds it.
    let report = set("cdn", true).await;
    assert_eq!(report.pop, "nyc/cdn");
    assert_eq!(report.confirmed, ["ams", "nyc", "syd"], "{report:?}");
    assert!(report.unconfirmed.is_empty(), "{report:?}");
    assert_eq!(
        report.message,
        "nyc drained for cdn cluster-wide: held by 3 of 3 live nodes"
    );
    // Confirmed, so no node hands out nyc's cdn any more, and nyc's www stays.
    for got in answers_near_nyc("cdn.example.net.", 3).await {
        assert!(got.len() == 1 && got != nyc_cdn, "{got:?}");
    }
    assert_eq!(
        answers_near_nyc("www.example.net.", 3).await,
        vec![vec!["198.51.100.10".to_owned()]; 3]
    );
    let report = set("cdn", false).await;
    assert_eq!(report.confirmed, ["ams", "nyc", "syd"], "{report:?}");
    assert_eq!(
        report.message,
        "nyc undrained for cdn cluster-wide: held by 3 of 3 live nodes"
    );
    assert_eq!(
        answers_near_nyc("cdn.example.net.", 3).await,
        vec![nyc_cdn.clone(); 3]
    );
    // syd does not know `api`: the drain holds on ams and nyc, and the reply names syd.
    let report = set("api", true).await;
    assert_eq!(report.confirmed, ["ams", "nyc"], "{report:?}");
    assert_eq!(report.unconfirmed, ["syd"], "{report:?}");
    assert!(
        report
            .message
            .starts_with("nyc drained for api; held by 2 of 3 live nodes, not confirmed within")
            && report.message.ends_with("s by: syd"),
        "{report:?}"
    );
    for got in answers_near_nyc("api.example.net.", 2).await {
        assert!(got.len() == 1 && got != ["198.51.100.20"], "{got:?}");
    }
    for n in nodes {
        n.stop().await.unwrap();
    }
}
