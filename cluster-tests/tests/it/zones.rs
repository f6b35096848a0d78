//! The multi-zone example (`deploy/examples/multi-zone/`) queried with `dig`: the answers
//! its comments and the README promise, over UDP and TCP.

use sparrow_cluster_tests::{TestNode, multi_zone_config as multi_zone, variant_of};

use crate::dig;

/// The section of dig's output that starts with `title` (up to the next blank line).
fn section<'a>(out: &'a str, title: &str) -> Vec<&'a str> {
    out.lines()
        .skip_while(|l| !l.starts_with(&format!(";; {title} SECTION:")))
        .skip(1)
        .take_while(|l| !l.is_empty())
        .collect()
}

#[tokio::test]
async fn the_multi_zone_example_answers_as_its_readme_says_over_udp_and_tcp() {
    let node = TestNode::start(&multi_zone()).await.unwrap();
    let server = node.addr;
    let outputs = tokio::task::spawn_blocking(move || {
        let mut outputs = Vec::new();
        for transport in ["+notcp", "+tcp"] {
            let q = |args: &[&str]| dig(server, &[args, &[transport]].concat());
            outputs.push((
                transport,
                q(&["foo.apps.example.org", "A"]),
                q(&["x.sub.example.org", "A"]),
                q(&["example.org", "MX"]),
                q(&["cdn.example.org", "A", "+subnet=100.64.3.0/24"]),
                q(&["example.org", "SOA", "+nsid", "+dnssec"]),
                q(&["id.server", "CH", "TXT"]),
                q(&["www.example.com", "A"]),
                q(&["www.example.net", "A", "+subnet=100.64.2.0/24"]),
            ));
        }
        outputs
    })
    .await
    .unwrap();
    for (transport, wild, referral, mx, cdn, soa, id, outside, www) in outputs {
        assert!(wild.contains("status: NOERROR"), "{transport} {wild}");
        assert_eq!(
            section(&wild, "ANSWER"),
            ["foo.apps.example.org.\t3600\tIN\tA\t192.0.2.80"],
            "{transport} {wild}"
        );
        // A referral: no AA, the NS in authority, the glue in additional.
        assert!(referral.contains("flags: qr;"), "{transport} {referral}");
        assert!(section(&referral, "ANSWER").is_empty(), "{referral}");
        assert_eq!(
            section(&referral, "AUTHORITY"),
            ["sub.example.org.\t3600\tIN\tNS\tns.sub.example.org."],
            "{transport} {referral}"
        );
        assert_eq!(
            section(&referral, "ADDITIONAL"),
            ["ns.sub.example.org.\t3600\tIN\tA\t192.0.2.81"],
            "{transport} {referral}"
        );
        assert!(mx.contains("flags: qr aa;"), "{transport} {mx}");
        assert_eq!(
            section(&mx, "ANSWER"),
            ["example.org.\t\t3600\tIN\tMX\t10 mail.example.org."],
            "{transport} {mx}"
        );
        assert_eq!(
            section(&mx, "ADDITIONAL"),
            ["mail.example.org.\t3600\tIN\tA\t192.0.2.25"],
            "{transport} {mx}"
        );
        assert_eq!(
            section(&cdn, "ANSWER"),
            ["cdn.example.org.\t30\tIN\tA\t203.0.113.10"],
            "{transport} {cdn}"
        );
        assert!(cdn.contains("CLIENT-SUBNET: 100.64.3.0/24/24"), "{cdn}");
        assert!(
            soa.contains("; NSID: 61 6d 73 (\"ams\")"),
            "{transport} {soa}"
        );
        assert!(soa.contains("; EDNS: version: 0, flags: do;"), "{soa}");
        assert_eq!(
            section(&id, "ANSWER"),
            ["id.server.\t\t0\tCH\tTXT\t\"ams\""],
            "{transport} {id}"
        );
        assert!(outside.contains("status: REFUSED"), "{transport} {outside}");
        assert_eq!(
            section(&www, "ANSWER"),
            ["www.example.net.\t30\tIN\tA\t198.51.100.10"],
            "{transport} {www}"
        );
    }
    node.stop().await.unwrap();
}

#[tokio::test]
async fn an_unknown_opcode_gets_notimp_echoing_rd_but_not_cd() {
    let node = TestNode::start(&multi_zone()).await.unwrap();
    let server = node.addr;
    let out = tokio::task::spawn_blocking(move || {
        dig(server, &["example.org", "SOA", "+opcode=3", "+rec", "+cd"])
    })
    .await
    .unwrap();
    assert!(out.contains("status: NOTIMP"), "{out}");
    assert!(out.contains("flags: qr rd;"), "{out}");
    node.stop().await.unwrap();
}

#[tokio::test]
async fn a_zone_added_or_removed_by_a_reload_is_served_or_refused_at_once() {
    // Start with example.net alone: example.org's table and its geo name cut out.
    let config = variant_of(&multi_zone(), |t| {
        let start = t.find("[[zone]]\norigin = \"example.org.\"").unwrap();
        let end = t.find("[[pop]]").unwrap();
        let mut one = t.clone();
        one.replace_range(start..end, "");
        one.replacen(
            "[[geo]]\nname = \"cdn.example.org.\"\nttl = 30\nanswers = 1\n",
            "",
            1,
        )
    });
    let one_zone = std::fs::read_to_string(&config).unwrap();
    let node = TestNode::start(&config).await.unwrap();
    let server = node.addr;
    let ask = move || {
        tokio::task::spawn_blocking(move || {
            (
                dig(server, &["foo.apps.example.org", "A"]),
                dig(server, &["cdn.example.org", "A", "+subnet=100.64.3.0/24"]),
            )
        })
    };
    let (wild, cdn) = ask().await.unwrap();
    assert!(wild.contains("status: REFUSED"), "{wild}");
    assert!(cdn.contains("status: REFUSED"), "{cdn}");
    // The shipped config: both zones.
    std::fs::copy(multi_zone(), &config).unwrap();
    node.reload().await.unwrap();
    let (wild, cdn) = ask().await.unwrap();
    assert_eq!(
        section(&wild, "ANSWER"),
        ["foo.apps.example.org.\t3600\tIN\tA\t192.0.2.80"],
        "{wild}"
    );
    assert_eq!(
        section(&cdn, "ANSWER"),
        ["cdn.example.org.\t30\tIN\tA\t203.0.113.10"],
        "{cdn}"
    );
    // And back: example.org is refused again.
    std::fs::write(&config, one_zone).unwrap();
    node.reload().await.unwrap();
    let (wild, cdn) = ask().await.unwrap();
    assert!(wild.contains("status: REFUSED"), "{wild}");
    assert!(cdn.contains("status: REFUSED"), "{cdn}");
    node.stop().await.unwrap();
}

#[tokio::test]
async fn the_multi_zone_example_transfers_example_org_to_127_0_0_1_only() {
    let node = TestNode::start(&multi_zone()).await.unwrap();
    let server = node.addr;
    let (org, net) = tokio::task::spawn_blocking(move || {
        (
            dig(server, &["example.org", "AXFR"]),
            dig(server, &["example.net", "AXFR"]),
        )
    })
    .await
    .unwrap();
    // The static zone between two SOAs, with its wildcard, delegation and glue, and the geo
    // name cdn with this node's own POP's address (README "Zone transfers").
    let records: Vec<&str> = org
        .lines()
        .filter(|l| !l.starts_with(';') && !l.trim().is_empty())
        .collect();
    assert!(
        records.first().is_some_and(|r| r.contains("\tSOA\t")),
        "{org}"
    );
    assert!(
        records.last().is_some_and(|r| r.contains("\tSOA\t")),
        "{org}"
    );
    for want in [
        "*.apps.example.org.\t3600\tIN\tA\t192.0.2.80",
        "sub.example.org.\t3600\tIN\tNS\tns.sub.example.org.",
        "ns.sub.example.org.\t3600\tIN\tA\t192.0.2.81",
        "cdn.example.org.\t30\tIN\tA\t192.0.2.10",
    ] {
        assert!(records.contains(&want), "{want} in\n{org}");
    }
    // example.net allows no transfer.
    assert!(net.contains("Transfer failed"), "{net}");
    node.stop().await.unwrap();
}
