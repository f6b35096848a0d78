//! Zone transfers out of a real node (`dns::xfr`): `dig axfr` from an allowed and a denied
//! address, NOTIMP over UDP, and a real Knot secondary that transfers the zone, then gets a
//! NOTIFY and the new serial after a reload.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use sparrow_cluster_tests::bird::free_port;
use sparrow_cluster_tests::knot::Knot;
use sparrow_cluster_tests::{Ask, TestNode, example_variant};

const SERIAL: u32 = 2026112101;

/// The example, its zone transferable by `allow` and notifying `notify`.
fn transfer_config(allow: &str, notify: &str) -> std::path::PathBuf {
    example_variant(|text| {
        text.replace(
            "ns = [\"ns1\", \"ns2\"]\n",
            &format!("ns = [\"ns1\", \"ns2\"]\nallow_transfer = [{allow}]\nnotify = [{notify}]\n"),
        )
    })
}

/// `dig` from `source` (an address of loopback) to `server`, with `args`.
fn dig_from(source: &str, server: SocketAddr, args: &[&str]) -> String {
    let out = Command::new("dig")
        .args(["-b", source, &format!("@{}", server.ip())])
        .args(["-p", &server.port().to_string(), "+time=5", "+tries=1"])
        .args(args)
        .output()
        .expect("dig must be installed (scripts/test installs bind9-dnsutils)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn dig_axfr_gets_the_zone_from_an_allowed_address_and_is_refused_from_others() {
    let config = transfer_config("\"127.0.0.1\"", "");
    let node = TestNode::start(&config).await.unwrap();
    let server = node.addr;
    let (allowed, ixfr, denied) = tokio::task::spawn_blocking(move || {
        (
            dig_from("127.0.0.1", server, &["example.net", "AXFR"]),
            dig_from(
                "127.0.0.1",
                server,
                &["example.net", &format!("IXFR={}", SERIAL - 1)],
            ),
            dig_from("127.0.0.2", server, &["example.net", "AXFR"]),
        )
    })
    .await
    .unwrap();
    // dig's records, fields joined by one space.
    let records = |out: &str| -> Vec<String> {
        out.lines()
            .filter(|l| !l.starts_with(';') && !l.trim().is_empty())
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect()
    };
    let soa = format!(
        "example.net. 3600 IN SOA ns1.example.net. hostmaster.example.net. {SERIAL} 86400 7200 3600000 60"
    );
    let got = records(&allowed);
    assert_eq!(got.first(), Some(&soa), "{allowed}");
    assert_eq!(got.last(), Some(&soa), "{allowed}");
    assert_eq!(got.iter().filter(|r| **r == soa).count(), 2, "{allowed}");
    for want in [
        "example.net. 3600 IN NS ns1.example.net.",
        "mail.example.net. 3600 IN A 192.0.2.25",
        "_sip._udp.example.net. 3600 IN SRV 10 60 5060 sip.example.net.",
        // The geo name: the own POP's (ams) addresses, its TTL.
        "www.example.net. 30 IN A 192.0.2.10",
        "www.example.net. 30 IN AAAA 2001:db8:a::10",
    ] {
        assert!(got.iter().any(|r| r == want), "{want} missing: {allowed}");
    }
    assert_eq!(
        records(&ixfr),
        got,
        "IXFR from an older serial: the whole zone, AXFR-style"
    );
    assert!(denied.contains("Transfer failed"), "{denied}");
    assert!(!denied.contains("192.0.2.25"), "{denied}");

    let udp = Ask::new("example.net.", RecordType::AXFR)
        .no_edns()
        .send(server)
        .await
        .unwrap();
    assert_eq!(udp.response_code, ResponseCode::NotImp);
    assert!(udp.answers.is_empty());
    node.stop().await.unwrap();
}

#[tokio::test]
async fn a_knot_secondary_transfers_the_zone_and_follows_a_reload_through_notify() {
    knot_secondary(false).await;
}

#[tokio::test]
async fn a_knot_secondary_with_a_tsig_key_transfers_and_accepts_the_signed_notify() {
    knot_secondary(true).await;
}

/// A Knot secondary of the node; with `tsig`, Knot signs its transfer queries and accepts
/// only NOTIFY signed with the key, and the node requires the key for transfers.
async fn knot_secondary(tsig: bool) {
    let knot_port = free_port();
    let config = transfer_config("\"127.0.0.1\"", &format!("\"127.0.0.1:{knot_port}\""));
    if tsig {
        let text = std::fs::read_to_string(&config).unwrap().replace(
            "\nallow_transfer =",
            "\ntransfer_tsig = \"xfr-key\"\nallow_transfer =",
        ) + &format!(
            "\n[[tsig_key]]\nname = \"xfr-key\"\nalgorithm = \"hmac-sha256\"\nsecret = \"{SECRET}\"\n"
        );
        std::fs::write(&config, text).unwrap();
    }
    let node = TestNode::start(&config).await.unwrap();
    let (key_section, key) = if tsig {
        (
            format!("key:\n  - id: xfr-key\n    algorithm: hmac-sha256\n    secret: {SECRET}\n\n"),
            "    key: xfr-key\n",
        )
    } else {
        (String::new(), "")
    };
    let zones = format!(
        "{key_section}remote:\n  - id: sparrow\n    address: 127.0.0.1@{}\n{key}\n\
         acl:\n  - id: notify_from_sparrow\n    address: 127.0.0.1\n{key}    action: notify\n\n\
         zone:\n  - domain: example.net.\n    master: sparrow\n    acl: notify_from_sparrow\n",
        node.addr.port()
    );
    let knot = Knot::start(knot_port, &zones).await.unwrap();
    knot.wait_serial("example.net.", SERIAL, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(knot.ask("mail.example.net.", "A").unwrap(), "192.0.2.25");
    assert_eq!(knot.ask("www.example.net.", "A").unwrap(), "192.0.2.10");

    // A new serial and a new record; the example's SOA refresh (a day) is far off, so only
    // the NOTIFY sent after the reload brings them to Knot.
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace(&SERIAL.to_string(), &(SERIAL + 1).to_string()),
    )
    .unwrap();
    let zone_file = config.with_file_name("example.net.zone");
    let mut zone = std::fs::read_to_string(&zone_file).unwrap();
    zone.push_str("new        IN A     192.0.2.99\n");
    std::fs::write(&zone_file, zone).unwrap();
    node.reload().await.unwrap();
    knot.wait_serial("example.net.", SERIAL + 1, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(knot.ask("new.example.net.", "A").unwrap(), "192.0.2.99");
    assert!(
        knot.log().contains("notify, incoming, remote 127.0.0.1"),
        "{}",
        knot.log()
    );
    node.stop().await.unwrap();
}

/// base64 of "secretsecretsecretsecret".
const SECRET: &str = "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0";

#[tokio::test]
async fn a_tsig_signed_transfer_verifies_in_dig_and_kdig_and_bad_keys_get_notauth() {
    let config = example_variant(|text| {
        text.replace(
            "ns = [\"ns1\", \"ns2\"]\n",
            "ns = [\"ns1\", \"ns2\"]\nallow_transfer = [\"127.0.0.1\"]\ntransfer_tsig = \"xfr-key\"\n",
        ) + &format!(
            "\n[[tsig_key]]\nname = \"xfr-key\"\nalgorithm = \"hmac-sha256\"\nsecret = \"{SECRET}\"\n"
        )
    });
    // Enough records for several messages: each one's MAC chains to the one before.
    let zone_file = config.with_file_name("example.net.zone");
    let mut zone = std::fs::read_to_string(&zone_file).unwrap();
    for i in 0..3000 {
        zone.push_str(&format!("host-{i} IN A 192.0.2.{}\n", i % 250));
    }
    std::fs::write(&zone_file, zone).unwrap();
    let node = TestNode::start(&config).await.unwrap();
    let server = node.addr;
    let port = server.port().to_string();
    let key = format!("hmac-sha256:xfr-key:{SECRET}");
    let wrong = "hmac-sha256:xfr-key:d3JvbmdzZWNyZXR3cm9uZ3NlY3JldA==".to_owned();
    let unknown = format!("hmac-sha256:other-key:{SECRET}");
    let (signed, unsigned, bad_mac, bad_key, kdig) = tokio::task::spawn_blocking(move || {
        let kdig = Command::new("kdig")
            .args(["@127.0.0.1", "-p", &port, "-y", &key, "example.net", "AXFR"])
            .output()
            .expect("kdig (knot-dnsutils)");
        (
            dig_from("127.0.0.1", server, &["-y", &key, "example.net", "AXFR"]),
            dig_from("127.0.0.1", server, &["example.net", "AXFR"]),
            dig_from("127.0.0.1", server, &["-y", &wrong, "example.net", "AXFR"]),
            dig_from(
                "127.0.0.1",
                server,
                &["-y", &unknown, "example.net", "AXFR"],
            ),
            String::from_utf8_lossy(&kdig.stdout).into_owned()
                + &String::from_utf8_lossy(&kdig.stderr),
        )
    })
    .await
    .unwrap();
    let records = signed
        .lines()
        .filter(|l| !l.starts_with(';') && !l.trim().is_empty())
        .count();
    // The zone's SOA twice, 3 NS-and-apex records... at least the 3000 added.
    assert!(records > 3000, "{records} records: {signed}");
    assert!(!signed.contains("Transfer failed"), "{signed}");
    assert!(!signed.to_lowercase().contains("tsig verify"), "{signed}");
    // ";; XFR size: 3015 records (messages 7, bytes 102056)"
    let messages: usize = signed
        .split("(messages ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(messages > 1, "several signed messages: {signed}");
    assert!(kdig.contains("host-2999.example.net."), "{kdig}");
    // kdig checks each message's TSIG and warns when one fails.
    assert!(kdig.contains(" NOERROR 0\n"), "signed answers: {kdig}");
    assert!(!kdig.contains("WARNING"), "{kdig}");
    assert!(unsigned.contains("Transfer failed"), "{unsigned}");
    // NOTAUTH, and the TSIG error in an unsigned TSIG record (RFC 8945 section 5.2).
    for (what, out, error) in [
        ("wrong secret", &bad_mac, " BADSIG "),
        ("unknown key", &bad_key, " BADKEY "),
    ] {
        assert!(out.contains(error), "{what}: {out}");
        assert!(!out.contains("host-1.example.net."), "{what}: {out}");
    }
    node.stop().await.unwrap();
}
