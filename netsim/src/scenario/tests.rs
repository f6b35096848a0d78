use super::*;

fn scenarios_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios")
}

#[test]
fn every_shipped_scenario_parses_and_the_suite_is_complete() {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(scenarios_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let s = Scenario::load(&path).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(
                path.file_stem().unwrap().to_str().unwrap(),
                s.name,
                "file name and scenario name differ"
            );
            assert!(
                s.cluster.pops.len() >= 5,
                "{}: namespaces need 5 nodes",
                s.name
            );
            assert!(!s.description.is_empty());
            names.push(s.name);
        }
    }
    names.sort();
    assert_eq!(
        names,
        [
            "asymmetric-cut",
            "cluster-restart",
            "crash-restart",
            "flapping-link",
            "isolated-node",
            "loss-20",
            "majority-loss",
            "restarts",
            "rolling-restart",
            "service-down",
            "split-brain",
        ]
    );
}

#[test]
fn the_example_scenario_is_typed_as_written() {
    let s = Scenario::load(&scenarios_dir().join("split-brain.toml")).unwrap();
    assert_eq!(s.duration, Duration::from_secs(100));
    assert_eq!(
        s.topology,
        TopologyChoice {
            ases: 500,
            seed: Some(1)
        }
    );
    assert_eq!(
        s.cluster.pops[4].request.place,
        Placement::Region(Region::Oc)
    );
    assert_eq!(
        s.cluster.config["cluster"]["gossip_interval_ms"].as_integer(),
        Some(200)
    );
    assert_eq!(s.workload.choose, Choose::Uniform);
    assert_eq!((s.workload.resolvers, s.workload.ecs), (20, 0.8));
    assert_eq!(
        s.events[0].action,
        Action::Partition {
            sets: vec![vec![0, 1], vec![2, 3, 4]]
        }
    );
    assert_eq!(s.events[1].action, Action::Heal);
    assert_eq!(s.events[1].at, Duration::from_secs(60));
    assert_eq!(
        s.expect.local_only,
        [
            LocalOnly::During {
                pops: vec![0, 1],
                after: 0,
                until: Some(1),
                within: Duration::from_secs(2)
            },
            LocalOnly::Never {
                pops: vec![2, 3, 4]
            }
        ]
    );
    assert_eq!(s.expect.detection_bound, Some(Duration::from_secs(5)));
    assert!(s.expect.no_servfail && s.expect.no_timeout);
}

const BASE: &str = r#"name = "t"
duration = "60s"
[topology]
ases = 50
[[cluster.pop]]
name = "fra"
[[cluster.pop]]
name = "nyc"
[[cluster.pop]]
name = "syd"
[workload]
qps = 10
clients = 5
"#;

fn parse(extra: &str) -> Result<Scenario> {
    Scenario::from_str(&format!("{BASE}{extra}"), Path::new("s.toml"))
}

#[test]
fn minimal_scenario_takes_defaults() {
    let s = parse("").unwrap();
    assert_eq!(s.workload.resolvers, DEFAULT_RESOLVERS);
    assert_eq!(s.workload.ecs, DEFAULT_ECS);
    assert!(s.events.is_empty() && s.expect.local_only.is_empty());
    assert!(s.expect.no_servfail && s.expect.no_timeout);
    assert_eq!(s.expect.settle, None);
    // Known site names place themselves.
    assert_eq!(
        s.cluster.pops[2].request.place,
        Placement::Region(Region::Oc)
    );
}

#[test]
fn bad_scenarios_are_refused_with_line_column_and_reason() {
    // Line numbers count from the start of BASE (13 lines) plus the extra text.
    let cases: &[(&str, &str)] = &[
        ("colour = \"red\"\n", "s.toml:14:1: unknown field `colour`"),
        (
            "[[event]]\nat = \"5s\"\nkind = \"explode\"\n",
            "s.toml:16:8: unknown event kind `explode`",
        ),
        (
            "[[event]]\nat = \"5s\"\nkind = \"crash\"\npops = [\"fra\"]\npercent = 3\n",
            "s.toml:18:11: `percent` does not apply to a `crash` event",
        ),
        (
            "[[event]]\nat = \"5s\"\nkind = \"crash\"\npops = [\"lhr\"]\n",
            "s.toml:17:9: no POP is named `lhr`",
        ),
        (
            "[[event]]\nat = \"5s\"\nkind = \"crash\"\n",
            "s.toml:14:1: a `crash` event needs `pops`",
        ),
        (
            "[[event]]\nat = \"5 parsecs\"\nkind = \"heal\"\n",
            "s.toml:15:6: `5 parsecs` is not a duration",
        ),
        (
            "[[event]]\nat = \"61s\"\nkind = \"heal\"\n",
            "s.toml:15:6: the event is after the end",
        ),
        (
            "[[event]]\nat = \"1s\"\nkind = \"partition\"\nsets = [[\"fra\"], [\"nyc\"]]\n",
            "s.toml:17:8: POP `syd` is in no set",
        ),
        (
            "[[event]]\nat = \"1s\"\nkind = \"partition\"\nsets = [[\"fra\", \"nyc\"], [\"nyc\", \"syd\"]]\n",
            "s.toml:17:26: POP `nyc` is in two sets",
        ),
        (
            "[[event]]\nat = \"1s\"\nkind = \"cut\"\nfrom = [\"fra\"]\nto = [\"fra\"]\n",
            "s.toml:18:6: a POP cannot be cut from itself",
        ),
        (
            "[[event]]\nat = \"1s\"\nkind = \"loss\"\npercent = 120\n",
            "s.toml:17:11: percent is from 0 to 100",
        ),
        (
            "[[event]]\nat = \"1s\"\nkind = \"loss\"\npercent = 5\nlinks = [[\"fra\"]]\n",
            "s.toml:18:10: a link is a pair of POPs",
        ),
        (
            "[[event]]\nat = \"50s\"\nkind = \"flap\"\ndown = \"5s\"\nup = \"5s\"\ncycles = 2\n",
            "s.toml:14:1: the flap lasts past the end",
        ),
        (
            "[[event]]\nat = \"1s\"\nlabel = \"x\"\nkind = \"heal\"\n[[event]]\nat = \"2s\"\nlabel = \"x\"\nkind = \"heal\"\n",
            "s.toml:20:9: label `x` is already used on line 16",
        ),
        (
            "[[expect.local_only]]\npops = [\"fra\"]\nafter = \"nothing\"\nwithin = \"5s\"\n",
            "s.toml:16:9: no event is labelled `nothing`",
        ),
        (
            "[[expect.local_only]]\npops = [\"fra\"]\nnever = true\nwithin = \"5s\"\n",
            "s.toml:17:10: `never = true` takes no",
        ),
        (
            "[[cluster.pop]]\nname = \"fra\"\nregion = \"eu\"\n",
            "s.toml:15:8: POP name `fra` is already used on line 6",
        ),
        (
            "[[cluster.pop]]\nname = \"x1\"\n",
            "s.toml:15:8: POP `x1` needs `region` or `asn`",
        ),
        (
            "[[cluster.pop]]\nname = \"x1\"\nregion = \"mars\"\n",
            "s.toml:16:10: unknown region `mars`",
        ),
        (
            "[[cluster.service]]\nname = \"api.v2\"\ntargets = \"cname\"\n",
            "s.toml:15:8: service name `api.v2` must be one DNS label",
        ),
        (
            "[[cluster.service]]\nname = \"WWW\"\ntargets = \"cname\"\n",
            "s.toml:15:8: service `WWW` is declared twice",
        ),
        (
            "[[cluster.service]]\nname = \"api\"\ntargets = \"mx\"\n",
            "s.toml:16:11: targets must be \"addresses\" or \"cname\", not \"mx\"",
        ),
        (
            "[[event]]\nat = \"5s\"\nkind = \"service-down\"\npops = [\"fra\"]\n",
            "s.toml:14:1: a `service-down` event needs `service`",
        ),
        (
            "[[event]]\nat = \"5s\"\nkind = \"service-down\"\nservice = \"api\"\npops = [\"fra\"]\n",
            "s.toml:17:11: no service is named `api`; services: www",
        ),
        (
            "[[event]]\nat = \"5s\"\nkind = \"crash\"\nservice = \"www\"\npops = [\"fra\"]\n",
            "s.toml:17:11: `service` does not apply to a `crash` event",
        ),
        (
            "[expect]\nunchanged = [\"www\", \"www\"]\n",
            "s.toml:15:21: service `www` is listed twice",
        ),
        (
            "[[event]]\nat = \"5s\"\nkind = \"service-down\"\nservice = \"www\"\npops = [\"fra\"]\n\
             [expect]\nunchanged = [\"www\"]\n",
            "s.toml:20:14: service `www` goes down on line 14: its answers change",
        ),
        (
            "[[event]]\nat = \"5s\"\nlabel = \"c\"\nkind = \"crash\"\npops = [\"fra\"]\n\
             [[expect.failover]]\nservice = \"www\"\nafter = \"c\"\nwithin = \"2s\"\n",
            "s.toml:21:9: `failover` follows a `service-down` event",
        ),
        (
            "[[event]]\nat = \"5s\"\nlabel = \"d\"\nkind = \"service-down\"\nservice = \"www\"\npops = [\"fra\"]\n\
             [[event]]\nat = \"9s\"\nlabel = \"u\"\nkind = \"service-up\"\nservice = \"www\"\npops = [\"nyc\"]\n\
             [[expect.failover]]\nservice = \"www\"\nafter = \"d\"\nuntil = \"u\"\nwithin = \"2s\"\n",
            "s.toml:29:9: `until` names the `service-up` of the same service and POPs",
        ),
    ];
    for &(extra, want) in cases {
        let err = parse(extra).expect_err(extra).to_string();
        assert!(err.starts_with(want), "{extra}\n got: {err}\nwant: {want}");
    }
    let err = Scenario::from_str("name = \"t\"\n", Path::new("s.toml")).unwrap_err();
    assert!(
        err.to_string().starts_with("s.toml:1:1: missing field"),
        "{err}"
    );
}

#[test]
fn a_flap_expands_into_link_down_and_up_events() {
    let s = parse(
        "[[event]]\nat = \"10s\"\nkind = \"flap\"\nlinks = [[\"fra\", \"nyc\"]]\ndown = \"1s\"\nup = \"2s\"\ncycles = 2\n\
         [[event]]\nat = \"12s\"\nkind = \"crash\"\npops = [\"syd\"]\n",
    )
    .unwrap();
    let got: Vec<(u64, &str)> = s
        .expanded_events()
        .iter()
        .map(|e| (e.at.as_secs(), e.action.kind()))
        .collect();
    assert_eq!(
        got,
        [
            (10, "link-down"),
            (11, "link-up"),
            (12, "crash"),
            (13, "link-down"),
            (14, "link-up"),
        ]
    );
    let Action::Flap { links, .. } = &s.events[0].action else {
        panic!("not a flap");
    };
    assert!(links.contains(1, 0) && !links.contains(0, 2));
    assert!(Links::All.contains(0, 2) && !Links::All.contains(1, 1));
}

#[test]
fn services_their_faults_and_their_expectations_are_typed_as_written() {
    let s = Scenario::load(&scenarios_dir().join("service-down.toml")).unwrap();
    let services: Vec<(&str, Targets)> = s
        .cluster
        .services
        .iter()
        .map(|v| (v.name.as_str(), v.targets))
        .collect();
    assert_eq!(
        services,
        [
            ("www", Targets::PopAddresses),
            ("api", Targets::Addresses),
            ("cdn", Targets::Cname)
        ]
    );
    assert_eq!(
        s.events[0].action,
        Action::ServiceDown {
            pops: vec![0],
            service: 1
        }
    );
    assert_eq!(s.events[0].action.kind(), "service-down");
    assert_eq!(
        s.events[1].action,
        Action::ServiceUp {
            pops: vec![0],
            service: 1
        }
    );
    assert_eq!(s.expect.unchanged, [0, 2]);
    assert_eq!(
        s.expect.failover,
        [Failover {
            service: 1,
            after: 0,
            until: Some(1),
            within: Duration::from_secs(2)
        }]
    );
    // Without services a scenario serves `www` alone.
    let plain = parse("").unwrap();
    assert_eq!(plain.cluster.services.len(), 1);
    assert_eq!(plain.cluster.services[0].name, WWW);
}
