use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};

use super::*;

/// Files served from memory.
#[derive(Default)]
struct Files(HashMap<PathBuf, String>);

impl Files {
    fn with(mut self, path: &str, text: &str) -> Self {
        self.0.insert(PathBuf::from(path), text.to_owned());
        self
    }
}

impl FileSource for Files {
    fn read(&self, path: &Path, _max: u64) -> io::Result<String> {
        self.0
            .get(path)
            .cloned()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "No such file or directory"))
    }
}

const MINIMAL: &str = r#"
[node]
pop = "ams"
listen = ["127.0.0.1:5301"]

[zone]
origin = "example.net"
ns = ["ns1.example.net."]

[zone.soa]
mname = "ns1"
rname = "hostmaster"
serial = 1

[[pop]]
name = "ams"
asn = 64501
addresses = ["192.0.2.10"]

[[geo]]
name = "www"
"#;

fn load_text(text: &str, files: &Files) -> Result<Loaded, ConfigError> {
    Config::from_str(text, Path::new("/etc/sparrow/sparrow.toml"), files)
}

/// Loads MINIMAL with `from` replaced by `to`, expecting a refusal; returns its message.
#[track_caller]
fn refused(from: &str, to: &str) -> String {
    assert!(MINIMAL.contains(from), "{from} not in MINIMAL");
    let text = MINIMAL.replacen(from, to, 1);
    match load_text(&text, &Files::default()) {
        Ok(_) => panic!("accepted: {text}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn minimal_config_loads_with_documented_defaults() {
    let loaded = load_text(MINIMAL, &Files::default()).unwrap();
    let c = loaded.config;
    assert!(loaded.warnings.is_empty());
    assert_eq!(c.zones.default_origin().to_string(), "example.net.");
    assert_eq!(c.geo[0].name.to_string(), "www.example.net.");
    assert_eq!(c.geo[0].ttl, DEFAULT_GEO_TTL);
    assert_eq!(c.geo[0].answers, DEFAULT_ANSWERS);
    assert_eq!(c.geo[0].pops, [0]);
    assert_eq!(c.pops[0].preference, DEFAULT_PREFERENCE);
    assert_eq!(c.pops[0].weight, DEFAULT_WEIGHT);
    assert_eq!(c.pops[0].admin, AdminState::Active);
    assert_eq!(c.node.max_udp_payload, DEFAULT_MAX_UDP_PAYLOAD);
    assert_eq!(c.node.tcp_idle_timeout, DEFAULT_TCP_IDLE_TIMEOUT);
    assert_eq!(c.node.dns_workers, None);
    assert_eq!(c.node.tcp_max_connections, DEFAULT_TCP_MAX_CONNECTIONS);
    assert_eq!(c.node.cookie_secret, None);
    assert_eq!(c.node.rrl, None);
    assert_eq!(
        c.zones.iter().next().unwrap().negative_soa().ttl,
        DEFAULT_SOA_MINIMUM
    );
}

#[test]
fn errors_name_file_line_column_and_reason() {
    let cases = [
        (
            "pop = \"ams\"",
            "pop = \"lhr\"",
            "/etc/sparrow/sparrow.toml:3:7: no POP is named `lhr`",
        ),
        (
            "listen = [\"127.0.0.1:5301\"]",
            "listen = [\"localhost\"]",
            "/etc/sparrow/sparrow.toml:4:11: `localhost` is not an ADDRESS:PORT (IPv6 as [::1]:53)",
        ),
        (
            "listen = [\"127.0.0.1:5301\"]",
            "listen = []",
            "/etc/sparrow/sparrow.toml:4:10: node.listen needs at least one address",
        ),
        (
            "addresses = [\"192.0.2.10\"]",
            "addresses = [\"192.0.2.300\"]",
            "/etc/sparrow/sparrow.toml:18:14: `192.0.2.300` is not an IP address",
        ),
        (
            "addresses = [\"192.0.2.10\"]",
            "addresses = []",
            "/etc/sparrow/sparrow.toml:18:13: POP `ams` has no answer address",
        ),
        (
            "name = \"www\"",
            "name = \"www.example.org.\"",
            "/etc/sparrow/sparrow.toml:21:8: geo name www.example.org. is outside every zone (example.net.)",
        ),
        (
            "name = \"ams\"",
            "name = \"ams pop\"",
            "/etc/sparrow/sparrow.toml:16:8: POP name `ams pop` must be letters, digits, `-` or `_`",
        ),
        (
            "listen = [\"127.0.0.1:5301\"]",
            "listen = [\"127.0.0.1:5301\"]\ndns_workers = 0",
            "/etc/sparrow/sparrow.toml:5:15: dns_workers must be from 1 to 256",
        ),
        (
            "listen = [\"127.0.0.1:5301\"]",
            "listen = [\"127.0.0.1:5301\"]\ncookie_secret = \"00112233\"",
            "/etc/sparrow/sparrow.toml:5:17: cookie_secret must be 32 hexadecimal digits (16 bytes)",
        ),
        (
            "listen = [\"127.0.0.1:5301\"]",
            "listen = [\"127.0.0.1:5301\"]\nrrl = { responses_per_second = 10, ipv6_prefix = 129 }",
            "/etc/sparrow/sparrow.toml:5:50: ipv6_prefix must be from 0 to 128",
        ),
        (
            "serial = 1",
            "serial = \"one\"",
            "/etc/sparrow/sparrow.toml:13:10: invalid type: string \"one\", expected u32",
        ),
    ];
    for (from, to, want) in cases {
        assert_eq!(refused(from, to), want);
    }
}

#[test]
fn unknown_keys_are_refused_with_their_line() {
    let e = refused("serial = 1", "serial = 1\nserail = 2");
    assert!(
        e.starts_with("/etc/sparrow/sparrow.toml:14:1: unknown field `serail`"),
        "{e}"
    );
}

#[test]
fn semantic_refusals() {
    let with_geo = |geo: &str| refused("[[geo]]\nname = \"www\"", geo);
    assert!(
        with_geo("[[geo]]\nname = \"www\"\nanswers = 0").contains("answers must be at least 1")
    );
    assert!(
        with_geo("[[geo]]\nname = \"www\"\npops = [\"lhr\"]").contains("no POP is named `lhr`")
    );
    assert!(with_geo("[[geo]]\nname = \"www\"\npops = []").contains("lists no POP"));
    let e = with_geo("[[geo]]\nname = \"www\"\n[[geo]]\nname = \"WWW.example.net.\"");
    assert!(
        e.to_lowercase()
            .contains(":23:8: geo name www.example.net. is already used on line 21"),
        "{e}"
    );
    let dup_pop = "[[pop]]\nname = \"ams\"\nasn = 64502\naddresses = [\"192.0.2.11\"]\n\n[[geo]]";
    assert!(refused("[[geo]]", dup_pop).contains("POP name `ams` is already used on line 16"));
    let dup_asn = "[[pop]]\nname = \"nyc\"\nasn = 64501\naddresses = [\"192.0.2.11\"]\n\n[[geo]]";
    assert!(refused("[[geo]]", dup_asn).contains("POP ASN `64501` is already used"));
    assert!(
        refused("asn = 64501", "asn = 64501\nweight = 0").contains("weight must be at least 1")
    );
    assert!(refused("asn = 64501", "asn = 64501\nadmin = \"off\"").contains("admin must be"));
    assert!(
        refused(
            "[zone.soa]\nmname = \"ns1\"\nrname = \"hostmaster\"\nserial = 1\n",
            ""
        )
        .contains("the zone has no SOA record")
    );
    assert!(refused("ns = [\"ns1.example.net.\"]", "").contains("no NS record at the apex"));
    let static_a = "[[zone.record]]\nname = \"www\"\ntype = \"A\"\ndata = \"192.0.2.1\"\n\n[[pop]]";
    assert!(refused("[[pop]]", static_a).contains("is a geo name and also has static"));
    let bad_rdata = "[[zone.record]]\nname = \"mail\"\ntype = \"MX\"\ndata = \"mail\"\n\n[[pop]]";
    let e = refused("[[pop]]", bad_rdata);
    assert!(
        e.starts_with("/etc/sparrow/sparrow.toml:15:1: record mail MX `mail`"),
        "{e}"
    );
    let occluded = "[[zone.record]]\nname = \"sub\"\ntype = \"NS\"\ndata = \"ns.other.org.\"\n\n\
                    [[zone.record]]\nname = \"x.sub\"\ntype = \"TXT\"\ndata = \"x\"\n\n[[pop]]";
    let e = refused("[[pop]]", occluded);
    assert!(
        e.contains("x.sub.example.net. TXT: below the delegation at sub.example.net., only glue"),
        "{e}"
    );
    let geo_below_cut =
        "[[zone.record]]\nname = \"www\"\ntype = \"NS\"\ndata = \"ns.other.org.\"\n\n[[pop]]";
    let e = refused("[[pop]]", geo_below_cut);
    assert!(
        e.contains("geo name www.example.net. is at or below the delegation at www.example.net."),
        "{e}"
    );
    let outside =
        "[[zone.record]]\nname = \"www.example.org.\"\ntype = \"TXT\"\ndata = \"x\"\n\n[[pop]]";
    assert!(refused("[[pop]]", outside).contains("outside the zone"));
    let cname = "[[zone.record]]\nname = \"mail\"\ntype = \"CNAME\"\ndata = \"www\"\n\n[[zone.record]]\nname = \"mail\"\ntype = \"TXT\"\ndata = \"x\"\n\n[[pop]]";
    assert!(refused("[[pop]]", cname).contains("CNAME cannot stand beside other records"));
}

#[test]
fn a_record_a_zone_file_cannot_hold_is_refused_with_its_file_and_line() {
    let text = MINIMAL.replace(
        "origin = \"example.net\"",
        "origin = \"example.net\"\nfile = \"zone.db\"",
    );
    let load =
        |zone: &str| match load_text(&text, &Files::default().with("/etc/sparrow/zone.db", zone)) {
            Ok(_) => panic!("accepted: {zone}"),
            Err(e) => e.to_string(),
        };
    // A CNAME beside other data, both orders; a second SOA; a record outside the zone.
    let e = load("mail 60 IN A 192.0.2.25\n; a comment\n\nmail 60 IN CNAME www\n");
    assert!(
        e.contains(
            "/etc/sparrow/zone.db:4: mail.example.net.: a CNAME cannot stand beside other records"
        ),
        "{e}"
    );
    let e = load("$TTL 60\nalias CNAME www\nalias (\n  TXT \"x\" )\n");
    assert!(
        e.contains("/etc/sparrow/zone.db:3: alias.example.net.: a CNAME"),
        "{e}"
    );
    let e = load("@ 60 IN SOA ns1 hostmaster 1 2 3 4 5\n@ 60 IN SOA ns1 hostmaster 2 2 3 4 5\n");
    assert!(
        e.contains("/etc/sparrow/zone.db:2: a second SOA record"),
        "{e}"
    );
    let e = load("$TTL 60\nok TXT \"x\"\nwww.example.org. TXT \"y\"\n");
    assert!(
        e.contains("/etc/sparrow/zone.db:3: www.example.org. is outside the zone"),
        "{e}"
    );
}

#[test]
fn unreadable_files_refuse_the_config_at_the_line_naming_them() {
    let e = refused(
        "addresses = [\"192.0.2.10\"]",
        "addresses = [\"192.0.2.10\"]\nroute_view = \"views/ams.routes\"",
    );
    assert_eq!(
        e,
        "/etc/sparrow/sparrow.toml:19:14: cannot read route view /etc/sparrow/views/ams.routes: No such file or directory"
    );
    let e = refused("[[geo]]", "[static_map]\nfile = \"ssrs.routes\"\n\n[[geo]]");
    assert!(
        e.contains(":21:8: cannot read static map /etc/sparrow/ssrs.routes"),
        "{e}"
    );
    let e = refused(
        "origin = \"example.net\"",
        "origin = \"example.net\"\nfile = \"zone.db\"",
    );
    assert!(
        e.contains(":8:8: cannot read zone file /etc/sparrow/zone.db"),
        "{e}"
    );
}

#[test]
fn relative_paths_resolve_against_the_config_folder_and_bad_lines_warn() {
    let text = MINIMAL
        .replacen(
            "addresses = [\"192.0.2.10\"]",
            "addresses = [\"192.0.2.10\"]\nroute_view = \"views/ams.routes\"",
            1,
        )
        .replacen(
            "[[geo]]",
            "[static_map]\nfile = \"ssrs.routes\"\n\n[[geo]]",
            1,
        );
    let files = Files::default()
        .with(
            "/etc/sparrow/views/ams.routes",
            "100.64.1.0/24 64496\nbogus line\n",
        )
        .with(
            "/etc/sparrow/ssrs.routes",
            "100.64.5.0/24 64501\n100.64.6.0/24 1\n",
        );
    let loaded = load_text(&text, &files).unwrap();
    assert_eq!(loaded.config.pops[0].route_view.as_ref().unwrap().len(), 1);
    assert_eq!(loaded.config.static_map.as_ref().unwrap().len(), 1);
    assert_eq!(
        loaded.warnings,
        [
            "/etc/sparrow/views/ams.routes: route view of POP ams loaded partially: 1 routes loaded, 1 skipped (line 2: `bogus` is not a prefix (want ADDRESS/LENGTH))",
            "/etc/sparrow/ssrs.routes: static map loaded partially: 1 lines loaded, 1 skipped (line 2: AS1 is not the ASN of any POP)",
        ]
    );
}

#[test]
fn zone_file_errors_name_the_bad_line() {
    let text = MINIMAL.replacen(
        "origin = \"example.net\"",
        "origin = \"example.net\"\nfile = \"zone.db\"",
        1,
    );
    let zone =
        "$TTL 300\nmail IN A 192.0.2.25\nbad IN A not-an-address\nfoo IN A 192.0.2.1 extra\n";
    let e = load_text(&text, &Files::default().with("/etc/sparrow/zone.db", zone)).unwrap_err();
    // Every error of the file, each on its line (issue #11).
    assert_eq!(
        e.reason,
        "/etc/sparrow/zone.db:3: bad.example.net. A: bad IPv4 address `not-an-address`\n\
         /etc/sparrow/zone.db:4: foo.example.net. A: trailing data: 2 fields where 1 are expected"
    );
}

/// Every config shipped in deploy/ (found by walking the folder).
fn deploy_configs() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "toml") {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy"),
        &mut out,
    );
    assert!(!out.is_empty(), "no config found under deploy/");
    out
}

#[test]
fn every_deploy_config_loads_without_warnings() {
    for path in deploy_configs() {
        let loaded = load(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(loaded.warnings, Vec::<String>::new(), "{}", path.display());
    }
}

#[test]
fn an_unknown_key_in_any_table_of_any_deploy_config_is_refused() {
    for path in deploy_configs() {
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        // After every table header, and at the very top.
        let mut spots = vec![0];
        spots.extend(
            lines
                .iter()
                .enumerate()
                .filter(|(_, l)| l.trim_start().starts_with('['))
                .map(|(i, _)| i + 1),
        );
        for at in spots {
            let mut injected = lines.clone();
            injected.insert(at, "sparrow_unknown_key = 1");
            let e = Config::from_str(&injected.join("\n"), &path, &Disk).unwrap_err();
            let want = format!("{}:{}:", path.display(), at + 1);
            assert!(
                e.to_string().starts_with(&want) && e.reason.contains("unknown field"),
                "injected at line {}: {e}",
                at + 1
            );
        }
    }
}

#[test]
fn probes_parse_with_defaults_and_refuse_what_they_cannot_do() {
    let with = |probe: &str| MINIMAL.replacen("[zone]", &format!("{probe}\n[zone]"), 1);
    let text = with(
        "[[node.probe]]\nkind = \"tcp\"\ntarget = \"127.0.0.1:80\"\n\
         [[node.probe]]\nname = \"web\"\nkind = \"http\"\nurl = \"http://www.internal/health?full=1\"\nbody_contains = \"ok\"\ninterval_ms = 1000\nrise = 1\n\
         [[node.probe]]\nkind = \"exec\"\ncommand = [\"/usr/lib/nagios/plugins/check_load\", \"-w\", \"5\"]\ntimeout_ms = 500\n",
    );
    let c = load_text(&text, &Files::default()).unwrap().config;
    let p = &c.node.probes;
    assert_eq!(p.len(), 3);
    assert_eq!(p[0].name, "tcp#1");
    assert_eq!(
        p[0].kind,
        crate::health::ProbeKind::Tcp {
            target: "127.0.0.1:80".into()
        }
    );
    assert_eq!(
        (p[0].interval, p[0].timeout, p[0].rise, p[0].fall),
        (
            crate::health::spec::DEFAULT_INTERVAL,
            crate::health::spec::DEFAULT_TIMEOUT,
            crate::health::spec::DEFAULT_RISE,
            crate::health::spec::DEFAULT_FALL,
        )
    );
    assert_eq!(
        p[1].kind,
        crate::health::ProbeKind::Http {
            target: crate::health::HttpTarget {
                url: "http://www.internal/health?full=1".into(),
                authority: "www.internal:80".into(),
                host: "www.internal".into(),
                path: "/health?full=1".into(),
                tls: None,
            },
            expect_status: 200,
            body_contains: Some("ok".into()),
        }
    );
    assert_eq!(
        (p[1].name.as_str(), p[1].rise, p[1].timeout.as_millis()),
        ("web", 1, 1000)
    );
    assert_eq!(
        p[2].kind,
        crate::health::ProbeKind::Exec {
            argv: vec![
                "/usr/lib/nagios/plugins/check_load".into(),
                "-w".into(),
                "5".into()
            ],
            exit_codes: crate::health::spec::ExitCodes::Nagios,
        }
    );
    let plain = load_text(
        &with("[[node.probe]]\nkind = \"exec\"\ncommand = [\"false\"]\nexit_codes = \"plain\"\n"),
        &Files::default(),
    )
    .unwrap()
    .config;
    assert_eq!(
        plain.node.probes[0].kind,
        crate::health::ProbeKind::Exec {
            argv: vec!["false".into()],
            exit_codes: crate::health::spec::ExitCodes::Plain,
        }
    );
    let refused = |probe: &str| {
        load_text(&with(probe), &Files::default())
            .unwrap_err()
            .to_string()
    };
    assert!(refused("[[node.probe]]\nkind = \"tcp\"").contains("a tcp probe needs `target`"));
    assert!(refused("[[node.probe]]\nkind = \"icmp\"").contains("probe kind must be"));
    assert!(refused("[[node.probe]]\nkind = \"exec\"\ncommand = []").contains("command is empty"));
    // Refused with the line and column of the value.
    let line = |probe: &str| {
        let text = with(probe);
        let at = text.find("exit_codes").unwrap();
        format!("sparrow.toml:{}:14: ", text[..at].matches('\n').count() + 1)
    };
    let bad_mode = "[[node.probe]]\nkind = \"exec\"\ncommand = [\"false\"]\nexit_codes = \"posix\"";
    assert!(
        refused(bad_mode).contains(&format!(
            "{}exit_codes must be \"nagios\" or \"plain\", not \"posix\"",
            line(bad_mode)
        )),
        "{}",
        refused(bad_mode)
    );
    let not_exec =
        "[[node.probe]]\nkind = \"tcp\"\ntarget = \"127.0.0.1:1\"\nexit_codes = \"plain\"";
    assert!(
        refused(not_exec).contains(&format!(
            "{}exit_codes applies to exec probes only, not to a tcp probe",
            line(not_exec)
        )),
        "{}",
        refused(not_exec)
    );
    assert!(
        refused("[[node.probe]]\nkind = \"http\"\nurl = \"ftp://x/\"")
            .contains("is not an http:// or https:// URL")
    );
    assert!(
        refused("[[node.probe]]\nkind = \"http\"\nurl = \"http://x/\"\nca = \"ca.pem\"")
            .contains("`ca` applies to https:// URLs only")
    );
    assert!(
        refused(
            "[[node.probe]]\nkind = \"tcp\"\ntarget = \"a:1\"\ninterval_ms = 100\ntimeout_ms = 200"
        )
        .contains("0 < timeout_ms <= interval_ms")
    );
    let e = refused("[[node.probe]]\nkind = \"tcp\"\ntarget = \"a:1\"\nport = 1");
    assert!(e.contains("unknown field `port`"), "{e}");
}

#[test]
fn cluster_section_checks_the_certificate_names_this_node() {
    let now = time::OffsetDateTime::now_utc();
    let ca = crate::pki::new_ca("prod", now, 1).unwrap();
    let issue = |cluster: &str, name: &str| {
        let id = crate::pki::Identity {
            cluster: cluster.into(),
            role: crate::pki::Role::Node,
            name: name.into(),
        };
        crate::pki::issue(&ca, &id, &[], now, 1).unwrap()
    };
    let section = |extra: &str| {
        format!(
            "{MINIMAL}\n[cluster]\nid = \"prod\"\nlisten = \"127.0.0.1:7300\"\nseeds = [\"127.0.0.1:7301\"]\nca = \"ca.pem\"\ncert = \"node.pem\"\nkey = \"node.key\"\n{extra}"
        )
    };
    let files = |cert: &crate::pki::Pem| {
        Files::default()
            .with("/etc/sparrow/ca.pem", &ca.cert)
            .with("/etc/sparrow/node.pem", &cert.cert)
            .with("/etc/sparrow/node.key", &cert.key)
    };
    let good = issue("prod", "ams");
    let c = load_text(&section(""), &files(&good)).unwrap().config;
    let cluster = c.cluster.unwrap();
    assert_eq!(cluster.quorum, 1, "a majority of one POP");
    assert_eq!(cluster.local_only_ttl, DEFAULT_LOCAL_ONLY_TTL);
    assert_eq!(cluster.gossip_interval, DEFAULT_GOSSIP_INTERVAL);
    assert_eq!(cluster.seeds, ["127.0.0.1:7301"]);
    let e = load_text(&section(""), &files(&issue("prod", "nyc")))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("names sparrow://prod/node/nyc, this node is sparrow://prod/node/ams"),
        "{e}"
    );
    let e = load_text(&section(""), &files(&issue("test", "ams")))
        .unwrap_err()
        .to_string();
    assert!(e.contains("names sparrow://test/node/ams"), "{e}");
    let e = load_text(&section("quorum = 2\n"), &files(&good))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("quorum must be between 1 and the number of POPs (1)"),
        "{e}"
    );
    let e = load_text(&section(""), &Files::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("cannot read cluster CA /etc/sparrow/ca.pem"),
        "{e}"
    );
}

#[test]
fn load_probes_and_the_high_water_mark_parse_and_refuse_nonsense() {
    let with = |extra: &str| MINIMAL.replacen("[zone]", &format!("{extra}\n[zone]"), 1);
    let c = load_text(
        &with("load_high_water = 0.8\n[node.load]\nkind = \"http\"\nurl = \"http://lb:8080/stats\"\nfield = \"cpu.load\"\n"),
        &Files::default(),
    )
    .unwrap()
    .config;
    assert_eq!(c.node.load_high_water, 0.8);
    assert_eq!(
        c.node.load.unwrap().kind,
        crate::health::LoadKind::Http {
            target: crate::health::HttpTarget {
                url: "http://lb:8080/stats".into(),
                authority: "lb:8080".into(),
                host: "lb:8080".into(),
                path: "/stats".into(),
                tls: None,
            },
            field: "cpu.load".into(),
        }
    );
    let c = load_text(
        &with("[node.load]\nkind = \"file\"\npath = \"load\"\n"),
        &Files::default(),
    )
    .unwrap()
    .config;
    assert_eq!(
        c.node.load.unwrap().kind,
        crate::health::LoadKind::File {
            path: "/etc/sparrow/load".into()
        }
    );
    let refused = |extra: &str| {
        load_text(&with(extra), &Files::default())
            .unwrap_err()
            .to_string()
    };
    assert!(refused("load_high_water = 1.5").contains("from 0.0 to 1.0"));
    assert!(refused("[node.load]\nkind = \"http\"\nurl = \"http://x/\"").contains("needs `field`"));
    assert!(refused("[node.load]\nkind = \"snmp\"").contains("load kind must be"));
}

#[test]
fn https_probes_take_a_ca_file_and_a_host_override() {
    let with = |probe: &str| MINIMAL.replacen("[zone]", &format!("{probe}\n[zone]"), 1);
    let now = time::OffsetDateTime::now_utc();
    let ca = crate::pki::new_ca("probes", now, 1).unwrap();
    let files = Files::default()
        .with("/etc/sparrow/web-ca.pem", &ca.cert)
        .with("/etc/sparrow/key.pem", &ca.key);
    let text = with(
        "[[node.probe]]\nkind = \"http\"\nurl = \"https://192.0.2.10:8443/health\"\nca = \"web-ca.pem\"\nhost = \"www.example.net\"\n\
         [[node.probe]]\nkind = \"http\"\nurl = \"https://[2001:db8::1]/\"\n\
         [node.load]\nkind = \"http\"\nurl = \"https://lb.internal/stats\"\nfield = \"load\"\nca = \"web-ca.pem\"\n",
    );
    let c = load_text(&text, &files).unwrap().config;
    let der = crate::pki::cert_der(&ca.cert).unwrap();
    let crate::health::ProbeKind::Http { target, .. } = &c.node.probes[0].kind else {
        panic!("not http: {:?}", c.node.probes[0].kind);
    };
    assert_eq!(
        *target,
        crate::health::HttpTarget {
            url: "https://192.0.2.10:8443/health".into(),
            authority: "192.0.2.10:8443".into(),
            host: "www.example.net".into(),
            path: "/health".into(),
            tls: Some(crate::health::HttpsTrust {
                server_name: "www.example.net".into(),
                ca: Some(vec![der.clone()]),
            }),
        }
    );
    let crate::health::ProbeKind::Http { target, .. } = &c.node.probes[1].kind else {
        panic!("not http");
    };
    assert_eq!(
        (target.authority.as_str(), target.host.as_str()),
        ("[2001:db8::1]:443", "[2001:db8::1]")
    );
    assert_eq!(
        target.tls,
        Some(crate::health::HttpsTrust {
            server_name: "2001:db8::1".into(),
            ca: None,
        })
    );
    let Some(crate::health::LoadProbe {
        kind: crate::health::LoadKind::Http { target, .. },
        ..
    }) = &c.node.load
    else {
        panic!("not an http load probe");
    };
    assert_eq!(target.tls.as_ref().unwrap().ca, Some(vec![der]));

    let refused = |probe: &str| load_text(&with(probe), &files).unwrap_err().to_string();
    let e = refused("[[node.probe]]\nkind = \"http\"\nurl = \"https://x/\"\nca = \"nope.pem\"");
    assert!(
        e.starts_with("/etc/sparrow/sparrow.toml:")
            && e.contains("cannot read probe CA /etc/sparrow/nope.pem"),
        "{e}"
    );
    let e = refused("[[node.probe]]\nkind = \"http\"\nurl = \"https://x/\"\nca = \"key.pem\"");
    assert!(e.contains("key.pem: no PEM certificate in the file"), "{e}");
    let e = refused("[[node.probe]]\nkind = \"http\"\nurl = \"https://x/\"\nhost = \"a b\"");
    assert!(e.contains("host `a b` is not HOST or HOST:PORT"), "{e}");
    let e = refused("[[node.probe]]\nkind = \"http\"\nurl = \"http://user:pw@x/\"");
    assert!(
        e.contains("credentials in probe URLs are not supported"),
        "{e}"
    );
}

#[test]
fn the_documented_metrics_listen_line_loads_when_uncommented() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples/single-node/sparrow.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let line = "# metrics_listen = \"127.0.0.1:9153\"";
    assert!(
        text.contains(line),
        "the example no longer documents metrics_listen"
    );
    let text = text.replacen(line, &line[2..], 1);
    let loaded = Config::from_str(&text, &path, &Disk).unwrap();
    assert_eq!(
        loaded.config.node.metrics_listen,
        Some("127.0.0.1:9153".parse().unwrap())
    );
    assert!(loaded.warnings.is_empty());
}

#[test]
fn metrics_listen_is_off_by_default_and_warns_off_loopback() {
    let c = load_text(MINIMAL, &Files::default()).unwrap();
    assert_eq!(c.config.node.metrics_listen, None);
    let with = |line: &str| MINIMAL.replacen("[zone]", &format!("{line}\n[zone]"), 1);
    let loaded = load_text(
        &with("metrics_listen = \"127.0.0.1:9153\""),
        &Files::default(),
    )
    .unwrap();
    assert_eq!(
        loaded.config.node.metrics_listen,
        Some("127.0.0.1:9153".parse().unwrap())
    );
    assert!(loaded.warnings.is_empty());
    let loaded = load_text(&with("metrics_listen = \"[::]:9153\""), &Files::default()).unwrap();
    assert_eq!(loaded.warnings.len(), 1);
    assert!(
        loaded.warnings[0].starts_with(
            "/etc/sparrow/sparrow.toml:6:18: metrics_listen [::]:9153 is not a loopback address"
        ),
        "{}",
        loaded.warnings[0]
    );
    let e = refused("[zone]", "metrics_listen = \"localhost:9153\"\n[zone]");
    assert!(
        e.starts_with(
            "/etc/sparrow/sparrow.toml:6:18: metrics_listen `localhost:9153` is not an ADDRESS:PORT"
        ),
        "{e}"
    );
}

/// The example config with the commented table `header` (`[node.mrt]`) uncommented.
fn example_with(header: &str) -> (PathBuf, String) {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples/single-node/sparrow.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut out = Vec::new();
    let mut inside = false;
    for line in text.lines() {
        if line == format!("# {header}") {
            inside = true;
        } else if inside && !line.starts_with("# ") {
            inside = false;
        }
        out.push(if inside { &line[2..] } else { line });
    }
    assert!(out.contains(&header), "{header} not in the example");
    (path, out.join("\n"))
}

#[test]
fn the_example_mrt_source_gives_the_same_view_as_the_route_file() {
    let (path, text) = example_with("[node.mrt]");
    let loaded = Config::from_str(&text, &path, &Disk).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(loaded.warnings, Vec::<String>::new());
    let c = loaded.config;
    let OwnViewSource::Mrt(source) = &c.node.own_view else {
        panic!("not an MRT source: {:?}", c.node.own_view);
    };
    assert_eq!(source.poll_interval, DEFAULT_MRT_POLL_INTERVAL);
    assert!(
        c.node
            .own_view
            .describe()
            .ends_with("views/ams.mrt peer 192.0.2.1 AS64501")
    );
    let from_file = load(&path).unwrap().config;
    let entries = |c: &Config| {
        let mut e: Vec<String> = c.pops[0]
            .route_view
            .as_ref()
            .unwrap()
            .entries()
            .map(|(n, p)| format!("{n} {p:?}"))
            .collect();
        e.sort();
        e
    };
    assert_eq!(entries(&c), entries(&from_file));
    assert_eq!(entries(&c).len(), 7);
}

#[test]
fn the_example_bgp_source_parses_with_the_documented_defaults() {
    let (path, text) = example_with("[node.bgp]");
    let c = Config::from_str(&text, &path, &Disk)
        .unwrap_or_else(|e| panic!("{e}"))
        .config;
    let OwnViewSource::Bgp(b) = &c.node.own_view else {
        panic!("not a BGP source: {:?}", c.node.own_view);
    };
    assert_eq!((b.local_asn, b.peer_asn), (64501, 64501));
    assert_eq!(b.peer, "192.0.2.1".parse::<IpAddr>().unwrap());
    assert_eq!(b.mode, BgpMode::Active);
    assert_eq!(b.peer_port, DEFAULT_BGP_PORT);
    assert_eq!(b.hold_time, DEFAULT_BGP_HOLD_TIME);
    assert_eq!(b.retry_min, DEFAULT_BGP_RETRY_MIN);
    assert_eq!(b.retry_max, DEFAULT_BGP_RETRY_MAX);
    assert_eq!(b.publish_interval, DEFAULT_BGP_PUBLISH_INTERVAL);
    assert_eq!(c.node.own_view.describe(), "bgp 192.0.2.1 AS64501");
    // The own POP's route file is replaced: no view until the session brings one.
    assert!(c.pops[0].route_view.is_none());
    assert!(c.pops[1].route_view.is_some());
}

#[test]
fn unknown_keys_in_the_view_source_tables_are_refused() {
    for header in ["[node.mrt]", "[node.bgp]"] {
        let (path, text) = example_with(header);
        let at = text.lines().position(|l| l == header).unwrap() + 1;
        let mut lines: Vec<&str> = text.lines().collect();
        lines.insert(at, "sparrow_unknown_key = 1");
        let e = Config::from_str(&lines.join("\n"), &path, &Disk).unwrap_err();
        assert!(
            e.to_string()
                .starts_with(&format!("{}:{}:", path.display(), at + 1))
                && e.reason.contains("unknown field"),
            "{header}: {e}"
        );
    }
}

/// Files served from memory, as bytes (MRT dumps are binary).
#[derive(Default)]
struct BinFiles(HashMap<PathBuf, Vec<u8>>);

impl FileSource for BinFiles {
    fn read(&self, path: &Path, _max: u64) -> io::Result<String> {
        String::from_utf8(self.read_bytes(path, u64::MAX)?).map_err(io::Error::other)
    }

    fn read_bytes(&self, path: &Path, _max: u64) -> io::Result<Vec<u8>> {
        self.0
            .get(path)
            .cloned()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "No such file or directory"))
    }
}

#[test]
fn view_sources_refuse_what_they_cannot_use() {
    let routes = vec![("100.64.0.0/16".parse().unwrap(), vec![64501u32, 64510])];
    let peer = crate::routes::mrt::write::MrtPeer {
        ip: "192.0.2.1".parse().unwrap(),
        asn: 64501,
        bgp_id: "192.0.2.1".parse().unwrap(),
    };
    let dump = crate::routes::mrt::write::rib_dump(&[(peer, &routes)], 1);
    let mut files = BinFiles::default();
    files
        .0
        .insert(PathBuf::from("/etc/sparrow/ams.mrt"), dump.clone());
    let with = |table: &str| MINIMAL.replacen("[zone]", &format!("{table}\n[zone]"), 1);
    // The own POP's route file is not read when a source replaces it (it does not exist).
    let text = with("[node.mrt]\nfile = \"ams.mrt\"\npeer_asn = 64501\n").replacen(
        "addresses = [\"192.0.2.10\"]",
        "addresses = [\"192.0.2.10\"]\nroute_view = \"missing.routes\"",
        1,
    );
    let c = Config::from_str(&text, Path::new("/etc/sparrow/sparrow.toml"), &files)
        .unwrap()
        .config;
    let view = c.pops[0].route_view.as_ref().unwrap();
    assert_eq!(view.entries().next().unwrap().1, [64510], "own ASN dropped");
    let refused_with = |table: &str| {
        Config::from_str(&with(table), Path::new("/etc/sparrow/sparrow.toml"), &files)
            .map(|_| ())
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        refused_with("[node.mrt]\nfile = \"ams.mrt\"\npeer = \"192.0.2.9\"\n"),
        "/etc/sparrow/sparrow.toml:8:8: /etc/sparrow/ams.mrt: peer 192.0.2.9 is not in the dump; its peers are: 192.0.2.1 AS64501"
    );
    assert!(
        refused_with("[node.mrt]\nfile = \"ams.mrt\"\n").contains(":6:1: node.mrt needs `peer`"),
    );
    assert!(
        refused_with("[node.mrt]\nfile = \"nope.mrt\"\npeer_asn = 1\n")
            .contains(":7:8: cannot read MRT dump /etc/sparrow/nope.mrt")
    );
    let bgp = "[node.bgp]\nlocal_asn = 65000\nrouter_id = \"192.0.2.53\"\npeer = \"192.0.2.1\"\npeer_asn = 64501\n";
    let passive = format!("{bgp}mode = \"passive\"\nlisten = \"127.0.0.1:1179\"\n");
    let c = Config::from_str(
        &with(&passive),
        Path::new("/etc/sparrow/sparrow.toml"),
        &files,
    )
    .unwrap()
    .config;
    let OwnViewSource::Bgp(b) = &c.node.own_view else {
        panic!("not BGP");
    };
    assert_eq!(b.mode, BgpMode::Passive("127.0.0.1:1179".parse().unwrap()));
    for (extra, reason) in [
        (
            "mode = \"both\"\n",
            "mode must be \"active\" or \"passive\"",
        ),
        (
            "hold_time_secs = 2\n",
            "hold_time_secs must be 0 or at least 3",
        ),
        (
            "listen = \"[::]:179\"\n",
            "listen is for mode = \"passive\"",
        ),
        (
            "mode = \"passive\"\npeer_port = 1179\n",
            "peer_port is for mode = \"active\"",
        ),
        (
            "retry_min_ms = 5000\nretry_max_ms = 1000\n",
            "retry_max_ms must not be below",
        ),
        (
            "publish_interval_ms = 0\n",
            "publish_interval_ms must be positive",
        ),
    ] {
        let e = refused_with(&format!("{bgp}{extra}"));
        assert!(e.contains(reason), "{extra}: {e}");
    }
    let e = refused_with(&bgp.replace("192.0.2.53", "0.0.0.0"));
    assert!(
        e.contains(":8:13: router_id `0.0.0.0` must be a non-zero IPv4"),
        "{e}"
    );
    let e = refused_with(&format!(
        "[node.mrt]\nfile = \"ams.mrt\"\npeer_asn = 64501\n{bgp}"
    ));
    assert!(e.contains("node.mrt and node.bgp are two sources"), "{e}");
}

#[test]
fn only_regular_files_within_the_limit_are_read_and_nothing_waits() {
    use std::sync::mpsc;
    let dir = std::env::temp_dir().join(format!("sparrow-read-limited-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let fifo = dir.join("fifo");
    let _ = std::fs::remove_file(&fifo);
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo takes a NUL-terminated path and a mode.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let big = dir.join("big");
    std::fs::write(&big, vec![b'x'; 2000]).unwrap();
    let small = dir.join("small");
    std::fs::write(&small, "ok\n").unwrap();
    let cases: Vec<(PathBuf, &str)> = vec![
        ("/dev/zero".into(), "not a regular file"),
        (fifo, "not a regular file"),
        (dir.clone(), "not a regular file"),
        (big, "larger than the limit of 1000 bytes"),
    ];
    for (path, want) in cases {
        // On a thread, so that a read that waits (a FIFO without a writer) fails the test
        // instead of hanging it.
        let (tx, rx) = mpsc::channel();
        let p = path.clone();
        std::thread::spawn(move || {
            let _ = tx.send(read_limited(&p, 1000));
        });
        let result = rx
            .recv_timeout(Duration::from_secs(5))
            .unwrap_or_else(|_| panic!("reading {} did not return", path.display()));
        let err = result.unwrap_err().to_string();
        assert!(err.contains(want), "{}: {err}", path.display());
    }
    assert_eq!(read_limited(&small, 1000).unwrap(), "ok\n");
}

/// MINIMAL with its `[zone]` written as `[[zone]]`, and a second zone, example.org.
fn two_zones() -> String {
    MINIMAL
        .replacen("[zone]", "[[zone]]", 1)
        .replacen(
            "[[pop]]",
            "[[zone]]\norigin = \"example.org.\"\nns = [\"ns1.example.net.\"]\n\
             [zone.soa]\nmname = \"ns1.example.net.\"\nrname = \"hostmaster\"\nserial = 2\n\n[[pop]]",
            1,
        )
}

#[test]
fn zone_tables_give_several_zones_and_geo_names_go_to_the_zone_containing_them() {
    let text = two_zones().replacen(
        "[[geo]]\nname = \"www\"",
        "[[geo]]\nname = \"www\"\n[[geo]]\nname = \"cdn.example.org.\"",
        1,
    );
    let c = load_text(&text, &Files::default()).unwrap().config;
    let origins: Vec<String> = c
        .zones
        .iter()
        .map(|z| z.origin_name().to_string())
        .collect();
    assert_eq!(origins, ["example.net.", "example.org."]);
    // Relative names are in the first zone configured.
    assert_eq!(c.zones.default_origin().to_string(), "example.net.");
    assert_eq!(c.geo[1].name.to_string(), "cdn.example.org.");
    // Each zone has its own SOA.
    let serials: Vec<String> = c.zones.iter().map(|z| z.soa().data.to_string()).collect();
    assert!(serials[1].contains(" 2 "), "{serials:?}");
}

#[test]
fn a_zone_configured_twice_is_refused_at_its_second_origin() {
    let text = two_zones().replacen("origin = \"example.org.\"", "origin = \"Example.NET.\"", 1);
    let e = load_text(&text, &Files::default()).unwrap_err().to_string();
    assert!(
        e.contains(":16:10: zone example.net. is configured twice"),
        "{e}"
    );
}

#[test]
fn nsid_is_the_pop_name_unless_set_or_turned_off() {
    let nsid = |line: &str| {
        let text = MINIMAL.replacen("[zone]", &format!("{line}\n[zone]"), 1);
        load_text(&text, &Files::default()).map(|l| l.config.node.nsid)
    };
    assert_eq!(nsid("").unwrap(), Some(b"ams".to_vec()));
    assert_eq!(nsid("nsid = true").unwrap(), Some(b"ams".to_vec()));
    assert_eq!(nsid("nsid = false").unwrap(), None);
    assert_eq!(nsid("nsid = \"ams-1\"").unwrap(), Some(b"ams-1".to_vec()));
    let e = nsid("nsid = \"\"").unwrap_err().to_string();
    assert!(e.contains(":6:8: nsid must be 1 to 255 bytes"), "{e}");
}

#[test]
fn transfer_settings_are_checked_and_name_their_line() {
    let zone = "ns = [\"ns1.example.net.\"]";
    let key =
        "\n[[tsig_key]]\nname = \"xfr-key\"\nalgorithm = \"hmac-sha256\"\nsecret = \"c2VjcmV0\"\n";
    let ok = MINIMAL.replace(
        zone,
        "ns = [\"ns1.example.net.\"]\nallow_transfer = [\"127.0.0.1\", \"2001:db8::/32\"]\n\
         notify = [\"192.0.2.1\", \"[2001:db8::1]:5353\"]\ntransfer_tsig = \"XFR-key.\"",
    ) + key;
    let config = load_text(&ok, &Files::default()).unwrap().config;
    let t = config.transfers[0].1.clone();
    assert!(t.allows("127.0.0.1".parse().unwrap()));
    assert!(t.allows("::ffff:127.0.0.1".parse().unwrap()));
    assert!(t.allows("2001:db8:5::1".parse().unwrap()));
    assert!(!t.allows("127.0.0.2".parse().unwrap()));
    assert_eq!(
        t.notify,
        [
            "192.0.2.1:53".parse().unwrap(),
            "[2001:db8::1]:5353".parse().unwrap()
        ]
    );
    let key_used = t.tsig.unwrap();
    assert_eq!(key_used.name.to_string(), "xfr-key.");
    assert_eq!(key_used.secret, b"secret");
    assert!(
        !format!("{key_used:?}").contains("secret: "),
        "no secret in logs"
    );

    assert_eq!(
        refused(
            zone,
            "ns = [\"ns1.example.net.\"]\nallow_transfer = [\"10.0.0.0/33\"]"
        ),
        "/etc/sparrow/sparrow.toml:9:19: allow_transfer: `10.0.0.0/33` is not an address or prefix"
    );
    assert_eq!(
        refused(zone, "ns = [\"ns1.example.net.\"]\nnotify = [\"ns2\"]"),
        "/etc/sparrow/sparrow.toml:9:11: notify: `ns2` is not an address or address:port"
    );
    assert_eq!(
        refused(
            zone,
            "ns = [\"ns1.example.net.\"]\ntransfer_tsig = \"nokey\""
        ),
        "/etc/sparrow/sparrow.toml:9:17: transfer_tsig: no [[tsig_key]] is named nokey."
    );
    let bad_secret = MINIMAL.to_owned() + &key.replace("c2VjcmV0", "not base64!");
    let e = load_text(&bad_secret, &Files::default()).unwrap_err();
    assert!(e.to_string().contains("tsig secret: bad base64"), "{e}");
    let bad_alg = MINIMAL.to_owned() + &key.replace("hmac-sha256", "hmac-md5");
    let e = load_text(&bad_alg, &Files::default()).unwrap_err();
    assert!(e.to_string().contains("tsig algorithm `hmac-md5`"), "{e}");
}
