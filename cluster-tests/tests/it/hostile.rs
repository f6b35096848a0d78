//! Hostile peers and hostile input against real nodes on loopback (issue 9): each attack is
//! refused or bounded, logged, and the answers of the nodes under attack do not change.
//!
//! Attacks tested elsewhere: another CA, an expired certificate, another cluster, an
//! operator certificate and garbage on gossip (`gossip.rs`); garbage on the view protocol
//! (`views.rs`); drains carried by the drained POP's own node (`cluster.rs`); malformed BGP
//! and a prefix flood (`bgp.rs`); malformed ECS (`dns.rs`); a bad MRT dump (`mrt.rs`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sparrow_cluster_tests::{
    GossipNode, TestNode, TestPki, eventually, example_cluster_with, example_variant, logged,
};
use sparrow_node::cluster::state::{HotState, Mode, ViewAnnouncement};
use sparrow_node::policy::AdminState;
use sparrow_proto::frame;
use sparrow_proto::views::{MAGIC, Route4, ViewFrame, ViewHeader};

use crate::cluster::answer;

const SETTLE: Duration = Duration::from_secs(20);

/// Clients whose answers the attacks must not change: ams's and nyc's (syd's node is the
/// one the attacker holds, or is down).
const SUBNETS: [&str; 2] = ["100.64.1.0/24", "100.64.2.0/24"];

/// ams's and nyc's nodes of the example cluster with certificates from `pki` (syd's node is
/// not started), `edit` applied to each config, once both are in the cluster.
async fn ams_and_nyc(pki: &TestPki, edit: impl Fn(&str, String) -> String) -> Vec<TestNode> {
    let mut nodes = Vec::new();
    for (config, socket) in example_cluster_with(pki, edit).into_iter().take(2) {
        nodes.push(TestNode::start_clustered(&config, socket).await.unwrap());
    }
    let both = || async {
        nodes
            .iter()
            .all(|n| n.snapshot.load().mode == Mode::Cluster { alive: 2 })
    };
    assert!(eventually(SETTLE, both).await, "ams and nyc form a cluster");
    nodes
}

/// What each node answers each of [`SUBNETS`].
async fn answers_of(nodes: &[TestNode]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for n in nodes {
        for s in SUBNETS {
            out.push(answer(n, s).await.0);
        }
    }
    out
}

fn gossip_addr(node: &TestNode) -> std::net::SocketAddr {
    node.cluster.as_ref().unwrap().local_addr()
}

fn refused(node: &TestNode) -> u64 {
    node.cluster
        .as_ref()
        .unwrap()
        .stats
        .peers_refused
        .load(Ordering::Relaxed)
}

/// Per pull of a lying view server: bytes it got out, and how its writing ended.
type Sent = Arc<Mutex<Vec<(u64, Option<String>)>>>;

/// A view service that answers every pull with a header announcing one prefix, then sends
/// up to 300 MB of chunks; records, per pull, the bytes it got out and how its writing ended.
fn lying_views(header: ViewHeader, sent: Sent) -> sparrow_node::cluster::endpoint::Service {
    Arc::new(move |conn: quinn::Connection, _id| {
        let sent = sent.clone();
        Box::pin(async move {
            // About 1 MB of routes per frame.
            let chunk = frame::encode(&ViewFrame::V4(vec![
                Route4 {
                    gap: 0,
                    len: 0,
                    hops: 0
                };
                350_000
            ]));
            while let Ok((mut send, mut recv)) = conn.accept_bi().await {
                let _ = recv.read_to_end(1024).await;
                let mut start = frame::preamble(MAGIC).to_vec();
                start.extend(frame::encode(&ViewFrame::Header(header)));
                let mut result = send.write_all(&start).await;
                let mut written = 0u64;
                while result.is_ok() && written < 300 << 20 {
                    result = send.write_all(&chunk).await;
                    if result.is_ok() {
                        written += chunk.len() as u64;
                    }
                }
                // INVARIANT: the lock is held for a push only.
                sent.lock()
                    .unwrap()
                    .push((written, result.err().map(|e| e.to_string())));
            }
        })
    })
}

#[tokio::test]
async fn a_view_server_sending_more_than_it_announced_is_cut_off_at_once() {
    let pki = TestPki::new("test");
    let nodes = ams_and_nyc(&pki, |_, t| t).await;
    let before = answers_of(&nodes).await;
    let syd_view = |n: &TestNode| n.snapshot.load().view_info(2).and_then(|v| v.digest);
    let held: Vec<_> = nodes.iter().map(syd_view).collect();
    // syd's node, holding syd's certificate, announces a one-prefix view and sends 300 MB.
    let header = ViewHeader {
        version: 1,
        digest: 0x5eed_1e55_0bad_f00d,
        prefixes: 1,
    };
    let announced = HotState {
        view: Some(ViewAnnouncement {
            version: header.version,
            digest: header.digest,
            prefixes: header.prefixes,
            stale_since_ms: None,
        }),
        ..HotState::up()
    };
    let keys = announced
        .to_keys()
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    let sent = Arc::new(Mutex::new(Vec::new()));
    let _liar = GossipNode::start_serving(
        "syd",
        &["ams", "nyc", "syd"],
        pki.tls(&pki.node("syd")),
        &[gossip_addr(&nodes[0])],
        keys,
        Duration::from_millis(100),
        lying_views(header, sent.clone()),
    )
    .await
    .unwrap();
    let stats = |n: &TestNode| {
        let s = n.cluster.as_ref().unwrap().view_stats();
        (
            s.pull_failures.load(Ordering::Relaxed),
            s.bytes_pulled.load(Ordering::Relaxed),
        )
    };
    assert!(
        eventually(SETTLE, || async { nodes.iter().all(|n| stats(n).0 >= 1) }).await,
        "both nodes pulled from the liar and failed"
    );
    assert!(
        eventually(SETTLE, || async {
            logged(&[
                "route view pull failed",
                "syd",
                "more than its header allows",
            ])
        })
        .await,
        "the cut-off is logged"
    );
    for n in &nodes {
        // Everything either node ever pulled (the liar's attempts and each other's small
        // views): a few kilobytes, not the 300 MB offered.
        let (_, bytes) = stats(n);
        assert!(bytes < 64 << 10, "pulled {bytes} bytes");
        assert_eq!(n.snapshot.load().mode, Mode::Cluster { alive: 3 });
    }
    // The liar was stopped at once: its writes failed after what QUIC's flow control let it
    // buffer, far from the 300 MB it meant to send.
    assert!(
        eventually(SETTLE, || async { !sent.lock().unwrap().is_empty() }).await,
        "the liar's writing ended"
    );
    for (written, error) in sent.lock().unwrap().iter() {
        assert!(*written < 64 << 20, "the liar got {written} bytes out");
        assert!(error.is_some(), "the liar wrote everything");
    }
    assert_eq!(answers_of(&nodes).await, before);
    assert_eq!(nodes.iter().map(syd_view).collect::<Vec<_>>(), held);
    for n in nodes {
        n.stop().await.unwrap();
    }
}

#[tokio::test]
async fn nodes_certified_for_no_pop_or_with_a_revoked_certificate_are_refused() {
    let pki = TestPki::new("test");
    // A certificate of syd's issued to someone who has since lost it: revoked.
    let stolen = pki.node("syd");
    let serial =
        sparrow_node::pki::serial_of(&sparrow_node::pki::cert_der(&stolen.cert).unwrap()).unwrap();
    let revoke = format!("revoked = [\"{serial}\"]\n");
    let nodes = ams_and_nyc(&pki, |_, t| t + &revoke).await;
    let before = answers_of(&nodes).await;
    let seed = [gossip_addr(&nodes[0])];
    // A node certified by the cluster's CA for a name that is no POP.
    let evil = GossipNode::start(
        "evil",
        &["ams", "nyc", "evil"],
        pki.tls(&pki.node("evil")),
        &seed,
    )
    .await
    .unwrap();
    assert!(
        eventually(SETTLE, || async {
            logged(&["cluster peer refused", "evil", "no POP of this cluster"])
        })
        .await,
        "the no-POP node is refused and logged"
    );
    let after_evil = refused(&nodes[0]);
    assert!(after_evil > 0);
    // The holder of the revoked certificate, as syd.
    let thief = GossipNode::start("syd", &["ams", "nyc", "syd"], pki.tls(&stolen), &seed)
        .await
        .unwrap();
    assert!(
        eventually(SETTLE, || async {
            logged(&["cluster peer refused", "revoked certificate", &serial])
        })
        .await,
        "the revoked certificate is refused and logged"
    );
    assert!(refused(&nodes[0]) > after_evil);
    // Neither got in, nor learned anything: syd stays down, the answers stay.
    for n in &nodes {
        assert_eq!(n.snapshot.load().mode, Mode::Cluster { alive: 2 });
    }
    assert_eq!(evil.live().await, ["evil"]);
    assert_eq!(thief.live().await, ["syd"]);
    assert_eq!(answers_of(&nodes).await, before);
    for n in nodes {
        n.stop().await.unwrap();
    }
}

#[tokio::test]
async fn a_node_certified_for_one_pop_cannot_speak_for_another() {
    let pki = TestPki::new("test");
    let nodes = ams_and_nyc(&pki, |_, t| t).await;
    let before = answers_of(&nodes).await;
    // syd's certificate in the wrong hands, gossiping as nyc: nyc drained and failing.
    let lie = HotState {
        healthy: false,
        admin: AdminState::Drained,
        drained: vec!["ams".to_owned(), "nyc".to_owned()],
        ..HotState::up()
    };
    let keys = lie
        .to_keys()
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    let _impostor = GossipNode::start_with_keys(
        "nyc",
        &["ams", "nyc", "syd"],
        pki.tls(&pki.node("syd")),
        &[gossip_addr(&nodes[0])],
        keys,
        Duration::from_millis(100),
    )
    .await
    .unwrap();
    assert!(
        eventually(SETTLE, || async {
            logged(&["state of another node", "peer=syd", "other=nyc"])
        })
        .await,
        "the impostor's link is dropped and logged"
    );
    // Over many gossip rounds, nothing it says about nyc (or ams) is believed.
    let unchanged = || async { answers_of(&nodes).await == before };
    for _ in 0..10 {
        assert!(unchanged().await);
        for n in &nodes {
            let s = n.snapshot.load();
            let ams_nyc = &s.pop_status[..2];
            assert!(
                ams_nyc
                    .iter()
                    .all(|p| p.live && p.healthy && p.admin == AdminState::Active),
                "{ams_nyc:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for n in nodes {
        n.stop().await.unwrap();
    }
}

/// The example with the operator API socket at `socket`.
fn with_api_socket(socket: &std::path::Path) -> std::path::PathBuf {
    let line = format!("[node]\napi_socket = \"{}\"\n", socket.display());
    example_variant(|t| t.replacen("[node]\n", &line, 1))
}

#[tokio::test]
async fn an_api_socket_folder_another_user_owns_or_may_write_is_refused() {
    let base = std::env::temp_dir().join(format!("sparrow-api-{}", std::process::id()));
    std::fs::create_dir_all(&base).unwrap();
    let me = {
        use std::os::unix::fs::MetadataExt as _;
        std::fs::metadata(&base).unwrap().uid()
    };
    // A folder someone else made first: as root, one given to nobody; otherwise /tmp
    // (root's).
    let (foreign, owner) = if me == 0 {
        let dir = base.join("foreign");
        std::fs::create_dir_all(&dir).unwrap();
        std::os::unix::fs::chown(&dir, Some(65_534), Some(65_534)).unwrap();
        (dir, 65_534)
    } else {
        (std::path::PathBuf::from("/tmp"), 0)
    };
    let err = TestNode::start(&with_api_socket(&foreign.join("api.sock")))
        .await
        .err()
        .expect("refused");
    let text = format!("{err:#}");
    assert!(text.contains(&format!("belongs to uid {owner}")), "{text}");
    assert!(!foreign.join("api.sock").exists());
    // This user's own folder, but others may write to it.
    let open = base.join("open");
    std::fs::create_dir_all(&open).unwrap();
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    let err = TestNode::start(&with_api_socket(&open.join("api.sock")))
        .await
        .err()
        .expect("refused");
    assert!(
        format!("{err:#}").contains("may be written by group or others"),
        "{err:#}"
    );
    // A folder the node makes itself is fine.
    let fresh = base.join("fresh").join("sparrow");
    let node = TestNode::start(&with_api_socket(&fresh.join("api.sock")))
        .await
        .unwrap();
    assert!(fresh.join("api.sock").exists());
    node.stop().await.unwrap();
}

#[tokio::test]
async fn devices_fifos_and_oversized_files_named_in_a_config_are_refused() {
    let example = example_variant(|t| t);
    let dir = example.parent().unwrap().to_owned();
    let fifo = dir.join("views/fifo.routes");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    // 2 MiB of valid route lines, with a limit of 1 MiB.
    let big = dir.join("views/big.routes");
    let line = "100.64.9.0/24 64510\n";
    std::fs::write(&big, line.repeat((2 << 20) / line.len() + 1)).unwrap();
    let cases = [
        (
            "route_view = \"views/nyc.routes\"",
            "route_view = \"/dev/zero\"",
            "/dev/zero",
            "not a regular file",
        ),
        (
            "file = \"example.net.zone\"",
            "file = \"views/fifo.routes\"",
            "fifo.routes",
            "not a regular file",
        ),
        (
            "route_view = \"views/syd.routes\"",
            "route_view = \"views/big.routes\"",
            "big.routes",
            "larger than the limit of 1048576 bytes",
        ),
    ];
    let config = dir.join("sparrow.toml");
    let good = std::fs::read_to_string(&config).unwrap();
    let limited = good.replacen("[node]\n", "[node]\nmax_file_mib = 1\n", 1);
    for (from, to, file, reason) in cases {
        let bad = limited.replacen(from, to, 1);
        assert_ne!(bad, limited);
        std::fs::write(&config, &bad).unwrap();
        // Refused at start, at once (not after reading without end).
        let started = tokio::time::timeout(Duration::from_secs(10), TestNode::start(&config))
            .await
            .expect("refused within 10 s");
        let err = format!("{:#}", started.err().expect("refused"));
        assert!(err.contains(file) && err.contains(reason), "{err}");
    }
    // A running node told to reload such a config keeps its own, and its answers.
    std::fs::write(&config, &limited).unwrap();
    let node = TestNode::start(&config).await.unwrap();
    let before = answers_of(std::slice::from_ref(&node)).await;
    for (from, to, file, reason) in cases {
        std::fs::write(&config, limited.replacen(from, to, 1)).unwrap();
        let reloaded = tokio::time::timeout(Duration::from_secs(10), node.reload())
            .await
            .expect("refused within 10 s");
        let err = format!("{:#}", reloaded.expect_err("refused"));
        assert!(err.contains(file) && err.contains(reason), "{err}");
        assert_eq!(answers_of(std::slice::from_ref(&node)).await, before);
    }
    node.stop().await.unwrap();
}

#[tokio::test]
async fn slow_metrics_clients_cannot_keep_scrapes_out() {
    use tokio::io::AsyncWriteExt as _;
    let config = example_variant(|t| {
        t.replacen("[node]\n", "[node]\nmetrics_listen = \"127.0.0.1:0\"\n", 1)
    });
    let node = TestNode::start(&config).await.unwrap();
    let metrics = node.metrics.unwrap();
    // 40 connections from two other hosts of the loopback network, each sending half a
    // request and then nothing: more than every slot the endpoint has.
    let mut slow = Vec::new();
    for i in 0..40u8 {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket
            .bind(format!("127.0.0.{}:0", 2 + i % 2).parse().unwrap())
            .unwrap();
        if let Ok(mut stream) = socket.connect(metrics).await {
            let _ = stream
                .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
                .await;
            slow.push(stream);
        }
    }
    // Meanwhile a scraper gets every one of its scrapes, each quickly.
    let scrapes = Arc::new(AtomicU64::new(0));
    for _ in 0..10 {
        let started = tokio::time::Instant::now();
        sparrow_cluster_tests::scrape(metrics).await.unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
        scrapes.fetch_add(1, Ordering::Relaxed);
    }
    assert_eq!(scrapes.load(Ordering::Relaxed), 10);
    assert!(
        logged(&["metrics endpoint refused or cut", "from one host"]),
        "the refusals are logged"
    );
    // The slow connections are closed within the header timeout.
    for mut s in slow {
        let mut buf = [0u8; 256];
        let closed = tokio::time::timeout(Duration::from_secs(10), async {
            use tokio::io::AsyncReadExt as _;
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "a slow client kept its connection");
    }
    node.stop().await.unwrap();
}

#[tokio::test]
async fn revoking_certificates_on_reload_closes_their_open_connections() {
    let pki = TestPki::new("test");
    let mut nodes = Vec::new();
    let mut configs = Vec::new();
    // ams serves the operator API (on a socket, and so over QUIC to operators).
    let api = std::env::temp_dir().join(format!("sparrow-revoke-{}", std::process::id()));
    let api_socket = api.join("api.sock");
    let edit = |pop: &str, t: String| match pop {
        "ams" => t.replacen(
            "[node]\n",
            &format!("[node]\napi_socket = \"{}\"\n", api_socket.display()),
            1,
        ),
        _ => t,
    };
    for (config, socket) in example_cluster_with(&pki, edit) {
        nodes.push(TestNode::start_clustered(&config, socket).await.unwrap());
        configs.push(config);
    }
    let all_three = || async {
        nodes
            .iter()
            .all(|n| n.snapshot.load().mode == Mode::Cluster { alive: 3 })
    };
    assert!(eventually(SETTLE, all_three).await, "the cluster forms");
    let ams = gossip_addr(&nodes[0]);

    // An operator holds an API connection to ams open.
    let operator = pki.issue_as("test", sparrow_node::pki::Role::Operator, "alice");
    let operator_tls = pki.tls(&operator);
    let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let client = operator_tls
        .client_config(sparrow_node::cluster::tls::ALPN_API)
        .unwrap();
    let conn = endpoint
        .connect_with(client, ams, "sparrow-node")
        .unwrap()
        .await
        .expect("the operator connects");
    let status =
        sparrow_node::api::call_quic(ams, &operator_tls, &sparrow_proto::api::Request::Status)
            .await;
    assert!(
        status.is_ok(),
        "the operator's API works before: {status:?}"
    );

    // ams's operator revokes syd's node certificate and alice's, and reloads.
    let serial_of = |pem: &str| {
        sparrow_node::pki::serial_of(&sparrow_node::pki::cert_der(pem).unwrap()).unwrap()
    };
    let syd_cert = std::fs::read_to_string(configs[2].parent().unwrap().join("node.pem")).unwrap();
    let (syd, alice) = (serial_of(&syd_cert), serial_of(&operator.cert));
    let text = std::fs::read_to_string(&configs[0]).unwrap();
    // The [cluster] table is the config's last.
    std::fs::write(
        &configs[0],
        text + &format!("revoked = [\"{syd}\", \"{alice}\"]\n"),
    )
    .unwrap();
    nodes[0].reload().await.expect("the reload is taken");

    // The operator's open connection is closed at once, as the node says why.
    let closed = tokio::time::timeout(Duration::from_secs(5), conn.closed())
        .await
        .expect("the revoked operator's connection is closed");
    assert!(
        matches!(&closed, quinn::ConnectionError::ApplicationClosed(c) if c.reason.as_ref() == b"certificate revoked"),
        "{closed:?}"
    );
    assert!(logged(&["certificate revoked; connection closed", &alice]));
    // syd's connections to ams are closed and it cannot come back: ams counts it down
    // while nyc, which did not revoke it, still has all three.
    assert!(
        eventually(SETTLE, || async {
            nodes[0].snapshot.load().mode == Mode::Cluster { alive: 2 }
                && logged(&["certificate revoked; connection closed", &syd])
        })
        .await,
        "ams drops syd"
    );
    let refused_before = refused(&nodes[0]);
    assert!(
        eventually(SETTLE, || async { refused(&nodes[0]) > refused_before }).await,
        "syd dialing again is refused"
    );
    assert_eq!(nodes[0].snapshot.load().mode, Mode::Cluster { alive: 2 });
    // A new API connection with alice's certificate is refused at the handshake.
    let again =
        sparrow_node::api::call_quic(ams, &operator_tls, &sparrow_proto::api::Request::Status)
            .await;
    assert!(again.is_err(), "{again:?}");
    for n in nodes {
        n.stop().await.unwrap();
    }
    let _ = std::fs::remove_dir_all(&api);
}
