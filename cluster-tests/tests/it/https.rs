//! HTTPS health and load probes against a local rustls server whose certificate comes from
//! a test CA: probes are configured through a real config file (so `ca` and `host` go
//! through validation) and run with the node's probe code.

use std::time::Duration;

use hickory_proto::rr::RecordType;
use sparrow_cluster_tests::{Ask, HttpsServer, TestNode, WebPki, eventually, example_variant};
use sparrow_node::health::probe::check;
use sparrow_node::health::state::Outcome;
use sparrow_node::health::{LoadKind, load};

use crate::answers;

const T: Duration = Duration::from_secs(5);

fn ok(body: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// The health probes and load probe of the example config with `node_lines` added to its
/// `[node]` table, the given files written beside it.
fn configure(node_lines: &str, files: &[(&str, &str)]) -> sparrow_node::config::Config {
    let path = example_variant(|t| t.replacen("[zone]", &format!("{node_lines}\n[zone]"), 1));
    let dir = path.parent().unwrap();
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
    sparrow_node::config::load(&path)
        .unwrap_or_else(|e| panic!("{e}"))
        .config
}

fn probe(url: &str, extra: &str) -> String {
    format!("[[node.probe]]\nkind = \"http\"\nurl = \"{url}\"\n{extra}\n")
}

async fn run(config: &sparrow_node::config::Config, i: usize) -> Outcome {
    check(&config.node.probes[i].kind, T).await
}

#[tokio::test]
async fn https_probes_trust_only_the_configured_ca_and_check_status_and_body() {
    let pki = WebPki::new();
    let other = WebPki::new();
    let (cert, key) = pki.server(&["localhost", "127.0.0.1"]);
    let server = HttpsServer::start(&cert, &key, &ok("status: up"))
        .await
        .unwrap();
    let url = format!("https://{}/health", server.addr);
    let files = [
        ("web-ca.pem", pki.ca_pem.as_str()),
        ("other-ca.pem", other.ca_pem.as_str()),
    ];
    let config = configure(
        &[
            probe(&url, "ca = \"web-ca.pem\"\nbody_contains = \"status: up\""),
            probe(&url, "ca = \"other-ca.pem\""),
            // The system roots do not know the test CA either.
            probe(&url, ""),
            probe(
                &url,
                "ca = \"web-ca.pem\"\nhost = \"localhost\"\nbody_contains = \"status: down\"",
            ),
            probe(&url, "ca = \"web-ca.pem\"\nhost = \"elsewhere.example\""),
            probe(&url, "ca = \"web-ca.pem\"\nexpect_status = 204"),
        ]
        .concat(),
        &files,
    );
    // Right CA, by IP address (the certificate names 127.0.0.1), body matches.
    assert_eq!(run(&config, 0).await, Outcome::Ok);
    // Another CA: the handshake fails, so the probe is down.
    let e = run(&config, 1).await;
    assert!(
        matches!(&e, Outcome::Failed(m) if m.contains("TLS handshake") && m.contains("UnknownIssuer")),
        "{e:?}"
    );
    // (On a machine without ca-certificates there are no system roots at all.)
    let e = run(&config, 2).await;
    assert!(
        matches!(&e, Outcome::Failed(m) if m.contains("UnknownIssuer") || m.contains("no system root certificates")),
        "{e:?}"
    );
    // The host override is the name checked (localhost is in the certificate) and sent.
    assert_eq!(
        run(&config, 3).await,
        Outcome::Failed("body does not contain \"status: down\"".into())
    );
    let e = run(&config, 4).await;
    assert!(
        matches!(&e, Outcome::Failed(m) if m.contains("not valid for name")),
        "{e:?}"
    );
    assert_eq!(
        run(&config, 5).await,
        Outcome::Failed("status 200, expected 204".into())
    );
    // The server answers 503 now.
    server.set_response("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(
        run(&config, 0).await,
        Outcome::Failed("status 503, expected 200".into())
    );
}

#[tokio::test]
async fn https_probes_read_chunked_bodies() {
    let pki = WebPki::new();
    let (cert, key) = pki.server(&["127.0.0.1"]);
    // "status: up" split over three chunks, with a chunk extension and a trailer.
    let chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
                   4\r\nstat\r\n5;ext=1\r\nus: u\r\n1\r\np\r\n0\r\nX-Trailer: 1\r\n\r\n";
    let server = HttpsServer::start(&cert, &key, chunked).await.unwrap();
    let url = format!("https://{}/health", server.addr);
    let config = configure(
        &probe(&url, "ca = \"ca.pem\"\nbody_contains = \"status: up\""),
        &[("ca.pem", &pki.ca_pem)],
    );
    assert_eq!(run(&config, 0).await, Outcome::Ok);
    // A chunked body that ends early is a failure, not a partial match.
    server.set_response(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nstat\r\n40\r\nus: up",
    );
    let e = run(&config, 0).await;
    assert!(
        matches!(&e, Outcome::Failed(m) if m.contains("reading the body")),
        "{e:?}"
    );
}

#[tokio::test]
async fn the_load_probe_reads_a_json_field_over_https() {
    let pki = WebPki::new();
    let (cert, key) = pki.server(&["localhost"]);
    let doc = r#"{"lb":{"load":0.42,"name":"edge-1"}}"#;
    let server = HttpsServer::start(&cert, &key, &ok(doc)).await.unwrap();
    let load_of = |field: &str, extra: &str| {
        configure(
            &format!(
                "[node.load]\nkind = \"http\"\nurl = \"https://{}/stats\"\nfield = \"{field}\"\n{extra}\n",
                server.addr
            ),
            &[("ca.pem", &pki.ca_pem)],
        )
        .node
        .load
        .unwrap()
        .kind
    };
    let measure = |kind: LoadKind| async move { load::measure(&kind, T).await };
    let kind = load_of("lb.load", "ca = \"ca.pem\"\nhost = \"localhost\"");
    assert!(matches!(&kind, LoadKind::Http { target, .. } if target.tls.is_some()));
    assert_eq!(measure(kind).await, Ok(0.42));
    assert!(
        measure(load_of("lb.name", "ca = \"ca.pem\"\nhost = \"localhost\""))
            .await
            .unwrap_err()
            .contains("is not a number")
    );
    // Without the host override the certificate (for localhost) does not match 127.0.0.1.
    let e = measure(load_of("lb.load", "ca = \"ca.pem\""))
        .await
        .unwrap_err();
    assert!(e.contains("not valid for name \"127.0.0.1\""), "{e}");
}

#[tokio::test]
async fn a_node_withdraws_its_pop_when_its_https_probe_fails() {
    let pki = WebPki::new();
    let (cert, key) = pki.server(&["127.0.0.1"]);
    let server = HttpsServer::start(&cert, &key, &ok("ok")).await.unwrap();
    let config = example_variant(|t| {
        t.replacen(
            "[zone]",
            &format!(
                "{}interval_ms = 200\ntimeout_ms = 200\nrise = 1\nfall = 1\n\n[zone]",
                probe(
                    &format!("https://{}/health", server.addr),
                    "ca = \"web-ca.pem\"\nbody_contains = \"ok\""
                )
            ),
            1,
        )
    });
    std::fs::write(config.parent().unwrap().join("web-ca.pem"), &pki.ca_pem).unwrap();
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
    assert!(
        eventually(T, || async {
            server.served.load(std::sync::atomic::Ordering::Relaxed) > 0
        })
        .await
    );
    assert_eq!(
        ask().await,
        ["192.0.2.10"],
        "ams, 1 hop away, while its probe passes"
    );
    server.set_response("HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n");
    assert!(
        eventually(Duration::from_secs(10), || async {
            ask().await == ["198.51.100.10"]
        })
        .await,
        "ams still handed out while its HTTPS probe fails"
    );
    server.set_response(&ok("ok"));
    assert!(
        eventually(Duration::from_secs(10), || async {
            ask().await == ["192.0.2.10"]
        })
        .await,
        "ams not handed out again"
    );
    node.stop().await.unwrap();
}
