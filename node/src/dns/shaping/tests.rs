//! Answer shaping on the multi-zone example (`deploy/examples/multi-zone/`): zones chosen
//! by the longest origin, wildcards, delegations, CNAMEs, ANY and additional-section
//! addresses, as Knot shapes them.

use std::path::Path;
use std::str::FromStr;

use hickory_proto::rr::{LowerName, Name, Record, RecordType};

use super::answer::{Client, plan};
use crate::config::{Config, Disk};
use crate::snapshot::Snapshot;

/// The multi-zone example, `edit`ed.
fn example(edit: impl Fn(String) -> String) -> Snapshot {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples/multi-zone/sparrow.toml");
    let text = edit(std::fs::read_to_string(&path).unwrap());
    Snapshot::from_config(Config::from_str(&text, &path, &Disk).unwrap().config)
}

fn records<'r>(rs: impl Iterator<Item = &'r Record>) -> String {
    rs.map(|r| format!("{} {} {}", r.name, r.record_type(), r.data))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The response to `name`/`qtype` from a resolver in syd's view (100.64.3.0/24), as
/// `RCODE aa=AA [answer] [authority] [additional]`.
fn ask(snap: &Snapshot, name: &str, qtype: RecordType) -> String {
    let client = Client {
        resolver: "100.64.3.7".parse().unwrap(),
        subnet: None,
    };
    let name = LowerName::from(&Name::from_str(name).unwrap());
    let p = plan(snap, &name, qtype, client);
    format!(
        "{} aa={} [{}] [{}] [{}]",
        p.rcode,
        p.authoritative,
        records(p.answers.iter().map(AsRef::as_ref)),
        records(p.authority.iter().copied()),
        records(p.additional.iter().flat_map(|a| a.records))
    )
}

const ORG_SOA: &str =
    "example.org. SOA ns1.example.org. hostmaster.example.org. 2026120201 86400 7200 3600000 60";

#[test]
fn the_multi_zone_example_copies_the_single_node_example_files() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples");
    for file in [
        "example.net.zone",
        "ssrs.routes",
        "views/ams.routes",
        "views/nyc.routes",
        "views/syd.routes",
    ] {
        assert_eq!(
            std::fs::read(dir.join("single-node").join(file)).unwrap(),
            std::fs::read(dir.join("multi-zone").join(file)).unwrap(),
            "{file}"
        );
    }
}

#[test]
fn each_zone_answers_with_its_own_soa_and_outside_names_are_refused() {
    let snap = example(|t| t);
    assert_eq!(
        ask(&snap, "nothing.example.org.", RecordType::A),
        format!("Non-Existent Domain aa=true [] [{ORG_SOA}] []")
    );
    let net = ask(&snap, "nothing.example.net.", RecordType::A);
    assert!(net.contains("[example.net. SOA ns1.example.net."), "{net}");
    assert_eq!(
        ask(&snap, "www.example.com.", RecordType::A),
        "Query Refused aa=false [] [] []"
    );
    // Geo names in either zone.
    assert_eq!(
        ask(&snap, "cdn.example.org.", RecordType::A),
        "No Error aa=true [cdn.example.org. A 203.0.113.10] [] []"
    );
    assert_eq!(
        ask(&snap, "www.example.net.", RecordType::A),
        "No Error aa=true [www.example.net. A 203.0.113.10] [] []"
    );
}

#[test]
fn a_zone_below_another_takes_its_names() {
    let snap = example(|t| {
        t.replacen(
            "[[pop]]",
            "[[zone]]\norigin = \"deep.example.org.\"\nns = [\"ns1.example.org.\"]\n\
             [zone.soa]\nmname = \"ns1.example.org.\"\nrname = \"hostmaster\"\nserial = 7\n\
             [[zone.record]]\nname = \"x\"\ntype = \"TXT\"\ndata = \"deep\"\n\n[[pop]]",
            1,
        )
    });
    assert_eq!(
        ask(&snap, "x.deep.example.org.", RecordType::TXT),
        "No Error aa=true [x.deep.example.org. TXT deep] [] []"
    );
    let nx = ask(&snap, "y.deep.example.org.", RecordType::TXT);
    assert!(nx.contains("[deep.example.org. SOA"), "{nx}");
}

#[test]
fn wildcards_answer_for_names_that_do_not_exist_below_their_closest_encloser() {
    let snap = example(|t| t);
    for name in ["foo.apps.example.org.", "a.b.apps.example.org."] {
        assert_eq!(
            ask(&snap, name, RecordType::A),
            format!("No Error aa=true [{name} A 192.0.2.80] [] []")
        );
        // Another type at the wildcard: NODATA.
        assert_eq!(
            ask(&snap, name, RecordType::TXT),
            format!("No Error aa=true [] [{ORG_SOA}] []")
        );
    }
    // apps itself exists (an empty non-terminal): NODATA, not the wildcard.
    assert_eq!(
        ask(&snap, "apps.example.org.", RecordType::A),
        format!("No Error aa=true [] [{ORG_SOA}] []")
    );
    // The wildcard asked for by name answers as itself.
    assert_eq!(
        ask(&snap, "*.apps.example.org.", RecordType::A),
        "No Error aa=true [*.apps.example.org. A 192.0.2.80] [] []"
    );
}

#[test]
fn delegations_refer_with_glue_and_without_aa() {
    let snap = example(|t| t);
    let referral = "No Error aa=false [] [sub.example.org. NS ns.sub.example.org.] \
                    [ns.sub.example.org. A 192.0.2.81]";
    for (name, qtype) in [
        ("x.sub.example.org.", RecordType::A),
        ("sub.example.org.", RecordType::NS),
        ("sub.example.org.", RecordType::A),
        ("ns.sub.example.org.", RecordType::A),
        ("deeper.x.sub.example.org.", RecordType::ANY),
    ] {
        assert_eq!(ask(&snap, name, qtype), referral, "{name} {qtype}");
    }
    // DS belongs to the parent side of the cut: NODATA here.
    assert_eq!(
        ask(&snap, "sub.example.org.", RecordType::DS),
        format!("No Error aa=true [] [{ORG_SOA}] []")
    );
}

#[test]
fn cnames_are_answered_as_asked_and_followed_across_zones() {
    let snap = example(|t| {
        t.replacen(
            "[[pop]]",
            "[[zone.record]]\nname = \"alias.example.org.\"\ntype = \"CNAME\"\ndata = \"mail.example.net.\"\n\n\
             [[zone.record]]\nname = \"to-cdn.example.org.\"\ntype = \"CNAME\"\ndata = \"cdn\"\n\n\
             [[zone.record]]\nname = \"to-sub.example.org.\"\ntype = \"CNAME\"\ndata = \"x.sub\"\n\n[[pop]]",
            1,
        )
    });
    // CNAME asked at its owner: the CNAME, no SOA.
    assert_eq!(
        ask(&snap, "alias.example.org.", RecordType::CNAME),
        "No Error aa=true [alias.example.org. CNAME mail.example.net.] [] []"
    );
    // Followed into example.net.
    assert_eq!(
        ask(&snap, "alias.example.org.", RecordType::A),
        "No Error aa=true [alias.example.org. CNAME mail.example.net., mail.example.net. A 192.0.2.25] [] []"
    );
    // Into a geo name: the client's answer.
    assert_eq!(
        ask(&snap, "to-cdn.example.org.", RecordType::A),
        "No Error aa=true [to-cdn.example.org. CNAME cdn.example.org., cdn.example.org. A 203.0.113.10] [] []"
    );
    // Into a delegation: the chain, then the referral.
    assert_eq!(
        ask(&snap, "to-sub.example.org.", RecordType::A),
        "No Error aa=true [to-sub.example.org. CNAME x.sub.example.org.] \
         [sub.example.org. NS ns.sub.example.org.] [ns.sub.example.org. A 192.0.2.81]"
    );
    // Into example.net.'s missing names: NXDOMAIN with example.net.'s SOA (RFC 6604).
    let snap = example(|t| {
        t.replacen(
            "[[pop]]",
            "[[zone.record]]\nname = \"gone.example.org.\"\ntype = \"CNAME\"\ndata = \"gone.example.net.\"\n\n[[pop]]",
            1,
        )
    });
    let out = ask(&snap, "gone.example.org.", RecordType::A);
    assert!(
        out.starts_with("Non-Existent Domain aa=true [gone.example.org. CNAME gone.example.net.] [example.net. SOA"),
        "{out}"
    );
}

#[test]
fn ns_mx_and_srv_targets_get_their_addresses_in_additional() {
    let snap = example(|t| t);
    assert_eq!(
        ask(&snap, "example.org.", RecordType::MX),
        "No Error aa=true [example.org. MX 10 mail.example.org.] [] [mail.example.org. A 192.0.2.25]"
    );
    assert_eq!(
        ask(&snap, "example.org.", RecordType::NS),
        "No Error aa=true [example.org. NS ns1.example.org.] [] [ns1.example.org. A 192.0.2.53]"
    );
    assert_eq!(
        ask(&snap, "example.net.", RecordType::MX),
        "No Error aa=true [example.net. MX 10 mail.example.net.] [] \
         [mail.example.net. A 192.0.2.25, mail.example.net. AAAA 2001:db8:a::25]"
    );
    assert_eq!(
        ask(&snap, "_sip._udp.example.net.", RecordType::SRV),
        "No Error aa=true [_sip._udp.example.net. SRV 10 60 5060 sip.example.net.] [] \
         [sip.example.net. A 192.0.2.60]"
    );
    // A target that is a geo name: what the client would get for it.
    let snap = example(|t| {
        t.replacen(
            "[[pop]]",
            "[[zone.record]]\nname = \"media.example.org.\"\ntype = \"MX\"\ndata = \"5 cdn\"\n\n[[pop]]",
            1,
        )
    });
    assert_eq!(
        ask(&snap, "media.example.org.", RecordType::MX),
        "No Error aa=true [media.example.org. MX 5 cdn.example.org.] [] \
         [cdn.example.org. A 203.0.113.10, cdn.example.org. AAAA 2001:db8:c::10]"
    );
}

#[test]
fn a_geo_target_in_additional_narrows_the_ecs_scope_to_its_decision() {
    let snap = example(|t| {
        t.replacen(
            "[[pop]]",
            "[[zone.record]]\nname = \"media.example.org.\"\ntype = \"MX\"\ndata = \"5 cdn\"\n\n[[pop]]",
            1,
        )
    });
    let ask = |name: &str, subnet: &str| {
        let client = Client {
            resolver: "192.0.2.200".parse().unwrap(),
            subnet: Some(subnet.parse().unwrap()),
        };
        let name = LowerName::from(&Name::from_str(name).unwrap());
        let p = plan(&snap, &name, RecordType::MX, client);
        let additional: Vec<String> = p
            .additional
            .iter()
            .flat_map(|a| a.records)
            .map(|r| r.data.to_string())
            .collect();
        (additional, p.ecs_scope)
    };
    // The static MX alone does not depend on the client: scope 0.
    assert_eq!(
        ask("example.org.", "100.64.3.0/24"),
        (vec!["192.0.2.25".to_owned()], Some(0))
    );
    // Its target's addresses do: the decision's block.
    assert_eq!(
        ask("media.example.org.", "100.64.3.0/24"),
        (
            vec!["203.0.113.10".to_owned(), "2001:db8:c::10".to_owned()],
            Some(24)
        )
    );
    assert_eq!(
        ask("media.example.org.", "100.64.2.0/24"),
        (
            vec!["198.51.100.10".to_owned(), "2001:db8:b::10".to_owned()],
            Some(24)
        )
    );
}

#[test]
fn any_gets_the_first_record_set_of_the_name() {
    let snap = example(|t| t);
    // Apex: NS (2) comes before SOA (6) and MX (15), as Knot 3.2 answers.
    assert_eq!(
        ask(&snap, "example.org.", RecordType::ANY),
        "No Error aa=true [example.org. NS ns1.example.org.] [] [ns1.example.org. A 192.0.2.53]"
    );
    assert_eq!(
        ask(&snap, "foo.apps.example.org.", RecordType::ANY),
        "No Error aa=true [foo.apps.example.org. A 192.0.2.80] [] []"
    );
    assert_eq!(
        ask(&snap, "apps.example.org.", RecordType::ANY),
        format!("No Error aa=true [] [{ORG_SOA}] []")
    );
}
