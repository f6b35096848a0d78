use super::*;
use crate::topology::TopologySpec;

fn topo() -> Topology {
    Topology::generate(TopologySpec::new(300, 2)).unwrap()
}

#[test]
fn requests_parse_from_the_command_line_forms() {
    let cases: &[(&str, Result<PopRequest, &str>)] = &[
        (
            "ams=AS3320",
            Ok(PopRequest {
                name: "ams".into(),
                place: Placement::Asn(3320),
            }),
        ),
        (
            "ams=3320",
            Ok(PopRequest {
                name: "ams".into(),
                place: Placement::Asn(3320),
            }),
        ),
        (
            "x-1@oc",
            Ok(PopRequest {
                name: "x-1".into(),
                place: Placement::Region(Region::Oc),
            }),
        ),
        (
            "syd",
            Ok(PopRequest {
                name: "syd".into(),
                place: Placement::Region(Region::Oc),
            }),
        ),
        ("ams=ASx", Err("`ASx` is not an AS number")),
        ("ams@mars", Err("unknown region `mars`")),
        ("paris", Err("`paris` is not a known site")),
        ("a b@eu", Err("POP name `a b` must be")),
    ];
    for (s, want) in cases {
        match (PopRequest::parse(s), want) {
            (Ok(got), Ok(want)) => assert_eq!(&got, want, "{s}"),
            (Err(got), Err(want)) => assert!(got.starts_with(want), "{s}: {got}"),
            (got, want) => panic!("{s}: got {got:?}, want {want:?}"),
        }
    }
}

#[test]
fn automatic_names_cover_the_regions_then_count_on() {
    let r = PopRequest::auto(20);
    assert_eq!(r[0].name, "fra");
    assert_eq!(r[4].name, "syd");
    assert_eq!(r[16].name, "pop17");
    let regions: HashSet<Placement> = r[..8].iter().map(|p| p.place).collect();
    assert_eq!(regions.len(), 8);
}

#[test]
fn placement_honours_asns_and_regions_and_prefers_multihomed_dual_stack_stubs() {
    let t = topo();
    let target = t.ases[7].asn;
    let mut requests = PopRequest::auto(5);
    requests.push(PopRequest {
        name: "fixed".into(),
        place: Placement::Asn(target),
    });
    let pops = place(&t, &requests, 9).unwrap();
    assert_eq!(pops, place(&t, &requests, 9).unwrap(), "deterministic");
    assert_eq!(pops[5].as_index, 7);
    let by_as = t.prefixes_by_as();
    for (p, r) in pops.iter().zip(&requests) {
        let a = &t.ases[p.as_index as usize];
        assert_eq!(p.asn, a.asn);
        if let Placement::Region(region) = r.place {
            assert_eq!(a.region, region, "{p}");
            assert_eq!(a.tier, Tier::Stub, "{p}");
            assert!(a.providers.len() >= 2, "{p}");
        }
        assert_eq!(p.addresses.len(), 2, "{p}: one IPv4 and one IPv6 address");
        for addr in &p.addresses {
            assert!(by_as[p.as_index as usize].iter().any(|n| n.contains(addr)));
        }
    }
    let ases: HashSet<u32> = pops.iter().map(|p| p.as_index).collect();
    assert_eq!(ases.len(), pops.len(), "one AS per POP");
}

#[test]
fn placement_errors_are_reported() {
    let t = topo();
    let a = |name: &str, asn| PopRequest {
        name: name.into(),
        place: Placement::Asn(asn),
    };
    let asn = t.ases[3].asn;
    assert_eq!(place(&t, &[], 1), Err(PlaceError::Empty));
    assert_eq!(
        place(&t, &[a("x", asn), a("x", t.ases[4].asn)], 1),
        Err(PlaceError::DuplicateName("x".into()))
    );
    assert_eq!(
        place(&t, &[a("x", asn), a("y", asn)], 1),
        Err(PlaceError::SameAs("x".into(), "y".into(), asn))
    );
    assert_eq!(
        place(&t, &[a("x", 64_500)], 1),
        Err(PlaceError::NoSuchAs {
            pop: "x".into(),
            asn: 64_500
        })
    );
    // More POPs than ASes: the last ones find no free AS.
    let small = Topology::generate(TopologySpec::new(20, 1)).unwrap();
    assert_eq!(
        place(&small, &PopRequest::auto(21), 1),
        Err(PlaceError::Full("pop21".into()))
    );
}
