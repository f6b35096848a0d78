//! The two UDP paths against each other: for every query of a corpus, the fast path
//! (`fast`) and the hickory path (`DnsHandler::respond`) must send the same bytes and count
//! the same metrics, and the fast path must take every query it is meant to.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use hickory_server::net::xfer::Protocol;

use super::fast;
use super::handler::DnsHandler;
use super::{DnsTransport, QueryObserver};
use crate::config::{Config, Disk};
use crate::policy::AdminState;
use crate::snapshot::Snapshot;

/// The single-node example, `edit`ed.
fn example(edit: impl Fn(String) -> String) -> Snapshot {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples/single-node/sparrow.toml");
    let text = edit(std::fs::read_to_string(&path).unwrap());
    Snapshot::from_config(Config::from_str(&text, &path, &Disk).unwrap().config)
}

/// The services example (its probes are not run: every service starts healthy).
fn services() -> Snapshot {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples/services/sparrow.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    Snapshot::from_config(Config::from_str(&text, &path, &Disk).unwrap().config)
}

/// The example with a name `big` of 60 TXT records (too large for UDP) and the given
/// `max_udp_payload`.
fn big(max_udp_payload: u16) -> Snapshot {
    example(|t| {
        let mut extra = format!("max_udp_payload = {max_udp_payload}\n");
        extra.push_str("[zone]\n");
        let t = t.replacen("[zone]\n", &extra, 1);
        let mut records = String::new();
        for i in 0..60 {
            records.push_str(&format!(
                "[[zone.record]]\nname = \"big\"\ntype = \"TXT\"\ndata = \"record {i} padding padding\"\n\n"
            ));
        }
        t.replacen("[[pop]]", &format!("{records}[[pop]]"), 1)
    })
}

/// Records what a path counts.
#[derive(Default)]
struct Recorder(Mutex<Vec<String>>);

impl QueryObserver for Recorder {
    fn query(&self, transport: DnsTransport, qtype: RecordType, rcode: ResponseCode) {
        self.0
            .lock()
            .unwrap()
            .push(format!("query {transport:?} {qtype} {rcode}"));
    }
    fn geo_answer(&self, service: usize, pop: usize, ecs: bool, local_only: bool) {
        self.0
            .lock()
            .unwrap()
            .push(format!("geo {service} {pop} {ecs} {local_only}"));
    }
    fn rate_limited(&self, slipped: bool) {
        self.0
            .lock()
            .unwrap()
            .push(format!("rate limited {slipped}"));
    }
}

impl Recorder {
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut self.0.lock().unwrap())
    }
}

/// A query in wire form.
#[derive(Clone, Debug)]
struct Query {
    id: u16,
    flags: u16,
    name: String,
    qtype: u16,
    /// (payload, version, options)
    edns: Option<(u16, u8, Vec<u8>)>,
}

impl Query {
    fn new(name: &str, qtype: RecordType) -> Self {
        Self {
            id: 0x1234,
            flags: 0x0100,
            name: name.to_owned(),
            qtype: u16::from(qtype),
            edns: None,
        }
    }

    fn edns(mut self, payload: u16, options: Vec<u8>) -> Self {
        self.edns = Some((payload, 0, options));
        self
    }

    fn bytes(&self) -> Vec<u8> {
        let mut m = self.id.to_be_bytes().to_vec();
        m.extend(self.flags.to_be_bytes());
        m.extend([0, 1, 0, 0, 0, 0, 0, u8::from(self.edns.is_some())]);
        for label in self.name.split('.').filter(|l| !l.is_empty()) {
            m.push(label.len() as u8);
            m.extend(label.as_bytes());
        }
        m.push(0);
        m.extend(self.qtype.to_be_bytes());
        m.extend(1u16.to_be_bytes());
        if let Some((payload, version, options)) = &self.edns {
            m.extend([0, 0, 41]);
            m.extend(payload.to_be_bytes());
            m.extend([0, *version, 0, 0]);
            m.extend((options.len() as u16).to_be_bytes());
            m.extend(options);
        }
        m
    }
}

fn ecs(family: u16, source: u8, addr: &[u8]) -> Vec<u8> {
    let mut v = 8u16.to_be_bytes().to_vec();
    v.extend(((4 + addr.len()) as u16).to_be_bytes());
    v.extend(family.to_be_bytes());
    v.extend([source, 0]);
    v.extend(addr);
    v
}

/// The tests' time (seconds since the Unix epoch).
const NOW: u32 = 1_800_000_000;

/// Runs `query` from `src` through both paths; returns whether the fast path took it.
fn both(snap: Snapshot, query: &[u8], src: SocketAddr) -> (bool, Vec<u8>) {
    let (answered, bytes) = both_answered(snap, query, src);
    (answered.is_some(), bytes)
}

/// [`both`], with what the fast path says of the query.
fn both_answered(
    snap: Snapshot,
    query: &[u8],
    src: SocketAddr,
) -> (Option<fast::Answered<'_>>, Vec<u8>) {
    let recorder = Arc::new(Recorder::default());
    let handler = DnsHandler::new(Arc::new(ArcSwap::from_pointee(snap)))
        .with_metrics(recorder.clone())
        .with_clock(|| NOW);
    let (tcp, _) = both_over(&handler, &recorder, query, src, DnsTransport::Tcp);
    let udp = both_over(&handler, &recorder, query, src, DnsTransport::Udp);
    assert_eq!(
        tcp.is_some(),
        udp.0.is_some(),
        "the fast path takes {query:?} over both transports or neither"
    );
    udp
}

/// [`both_answered`] over one transport.
fn both_over<'q>(
    handler: &DnsHandler,
    recorder: &Recorder,
    query: &'q [u8],
    src: SocketAddr,
    transport: DnsTransport,
) -> (Option<fast::Answered<'q>>, Vec<u8>) {
    let protocol = match transport {
        DnsTransport::Udp => Protocol::Udp,
        DnsTransport::Tcp => Protocol::Tcp,
    };
    let hickory = handler.respond(query, src, protocol);
    let hickory_counts = recorder.take();
    let snap = handler.snapshot().load();
    let mut worker = fast::Worker::default();
    let cookies = handler.cookie_context(&snap);
    let answered = match transport {
        DnsTransport::Udp => worker.respond(&snap, query, src.ip(), cookies),
        DnsTransport::Tcp => worker.respond_tcp(&snap, query, src.ip(), cookies),
    };
    match answered {
        None => (None, hickory.unwrap_or_default()),
        Some(a) => {
            super::udp::count(recorder, transport, &a, &snap);
            let fast = worker.response().to_vec();
            assert_eq!(
                Some(&fast),
                hickory.as_ref(),
                "fast path (left) and hickory path (right) differ over {transport:?} for {query:?} from {src}: {:?}",
                Message::from_vec(&fast).map(|m| m.to_string())
            );
            assert_eq!(recorder.take(), hickory_counts, "metrics for {query:?}");
            (Some(a), fast)
        }
    }
}

fn snapshots() -> Vec<(&'static str, Snapshot)> {
    let base = example(|t| t);
    vec![
        ("example", base.clone()),
        ("nyc drained", base.with_admin(1, AdminState::Drained)),
        ("ams unhealthy", base.with_health(0, false)),
        (
            "two answers",
            example(|t| t.replace("answers = 1 ", "answers = 2 ")),
        ),
        ("services", services()),
        (
            "services, syd drained",
            services().with_admin(2, AdminState::Drained),
        ),
    ]
}

#[test]
fn fast_and_hickory_paths_send_the_same_bytes_and_count_the_same() {
    let names = [
        "www.example.net.",
        "WwW.ExAmple.NET.",
        "api.example.net.",
        "cdn.example.net.",
        "mail.example.net.",
        "example.net.",
        "nothing.example.net.",
        "_sip._udp.example.net.",
        "www.example.org.",
    ];
    let qtypes = [
        RecordType::A,
        RecordType::AAAA,
        RecordType::ANY,
        RecordType::TXT,
        RecordType::MX,
        RecordType::SOA,
        RecordType::NS,
        RecordType::CNAME,
        RecordType::SRV,
        RecordType::CAA,
        RecordType::HTTPS,
    ];
    let subnets: Vec<Option<Vec<u8>>> = vec![
        None,
        Some(ecs(1, 24, &[100, 64, 1])),
        Some(ecs(1, 24, &[100, 64, 2])),
        Some(ecs(1, 24, &[100, 64, 3])),
        Some(ecs(1, 22, &[100, 64, 4])),
        Some(ecs(1, 24, &[100, 64, 5])),
        Some(ecs(1, 32, &[100, 64, 3, 77])),
        Some(ecs(1, 16, &[10, 9])),
        Some(ecs(1, 0, &[])),
        Some(ecs(2, 48, &[0x20, 0x01, 0x0d, 0xb8, 0xff, 0x02])),
        Some(ecs(2, 56, &[0x20, 0x01, 0x0d, 0xb8, 0xff, 0x01, 0x00])),
        Some(ecs(2, 0, &[])),
    ];
    let resolvers: [IpAddr; 4] = [
        "192.0.2.200".parse().unwrap(),
        "100.64.3.7".parse().unwrap(),
        "::ffff:100.64.1.9".parse().unwrap(),
        "2001:db8:ff02::53".parse().unwrap(),
    ];
    let (mut cases, mut fast) = (0, 0);
    for (what, snap) in snapshots() {
        for name in names {
            for qtype in qtypes {
                for edns in [None, Some(100), Some(512), Some(1232), Some(4096)] {
                    for subnet in &subnets {
                        if edns.is_none() && subnet.is_some() {
                            continue;
                        }
                        for (r, resolver) in resolvers.iter().enumerate() {
                            let mut q = Query::new(name, qtype);
                            q.id = cases as u16;
                            // RD and CD both ways.
                            q.flags = [0x0100, 0x0000, 0x0110, 0x0010][r];
                            if let Some(payload) = edns {
                                q = q.edns(payload, subnet.clone().unwrap_or_default());
                            }
                            let src = SocketAddr::new(*resolver, 53000);
                            let (took, _) = both(snap.clone(), &q.bytes(), src);
                            // SRV and HTTPS data (the services example's steered api)
                            // are the hickory path's.
                            let srv = name == "_sip._udp.example.net."
                                && matches!(qtype, RecordType::SRV | RecordType::ANY);
                            let https = what.starts_with("services")
                                && name == "api.example.net."
                                && qtype == RecordType::HTTPS;
                            let expected = !srv && !https;
                            assert_eq!(
                                took, expected,
                                "{what}: {name} {qtype} {edns:?} {subnet:?}"
                            );
                            cases += 1;
                            fast += usize::from(took);
                        }
                    }
                }
            }
        }
    }
    assert!(fast > cases * 3 / 4, "{fast} of {cases} on the fast path");
}

#[test]
fn both_paths_agree_on_several_zones_wildcards_delegations_and_additional_records() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples/multi-zone/sparrow.toml");
    let text = std::fs::read_to_string(&path).unwrap().replacen(
        "[[pop]]",
        "[[zone.record]]\nname = \"alias.example.org.\"\ntype = \"CNAME\"\ndata = \"mail.example.net.\"\n\n\
         [[zone.record]]\nname = \"media.example.org.\"\ntype = \"MX\"\ndata = \"5 cdn\"\n\n\
         [[zone.record]]\nname = \"*.w.example.org.\"\ntype = \"CNAME\"\ndata = \"alias\"\n\n[[pop]]",
        1,
    );
    let snap = Snapshot::from_config(Config::from_str(&text, &path, &Disk).unwrap().config);
    let names = [
        "example.org.",
        "foo.apps.example.org.",
        "A.B.Apps.Example.ORG.",
        "apps.example.org.",
        "x.sub.example.org.",
        "sub.example.org.",
        "ns.sub.example.org.",
        "cdn.example.org.",
        "alias.example.org.",
        "media.example.org.",
        "q.w.example.org.",
        "www.example.net.",
        "example.net.",
        "nothing.example.org.",
        "example.com.",
    ];
    let qtypes = [
        RecordType::A,
        RecordType::AAAA,
        RecordType::ANY,
        RecordType::MX,
        RecordType::NS,
        RecordType::CNAME,
        RecordType::DS,
        RecordType::TXT,
    ];
    let src: SocketAddr = "100.64.3.7:53000".parse().unwrap();
    let nsid = [0, 3, 0, 0];
    let (mut cases, mut fast) = (0, 0);
    for name in names {
        for qtype in qtypes {
            for options in [
                None,
                Some(vec![]),
                Some(ecs(1, 24, &[100, 64, 1])),
                Some(nsid.to_vec()),
                Some([&nsid[..], &ecs(1, 24, &[100, 64, 2])].concat()),
            ] {
                for flags in [0x0100, 0x0010] {
                    let mut q = Query::new(name, qtype);
                    q.flags = flags;
                    if let Some(options) = options.clone() {
                        q = q.edns(1232, options);
                    }
                    let mut bytes = q.bytes();
                    // Where the OPT record's flags start, if any; DO set on every other.
                    let flags_at = q.edns.as_ref().map(|e| bytes.len() - e.2.len() - 4);
                    if let Some(at) = flags_at
                        && cases % 2 == 0
                    {
                        bytes[at] |= 0x80;
                    }
                    let (took, response) = both(snap.clone(), &bytes, src);
                    let m = Message::from_vec(&response).unwrap();
                    if let (Some(e), Some(at)) = (&m.edns, flags_at) {
                        assert_eq!(e.flags().dnssec_ok, bytes[at] & 0x80 != 0, "DO copied");
                    }
                    cases += 1;
                    fast += usize::from(took);
                }
            }
        }
    }
    assert_eq!(fast, cases, "every one of these is the fast path's");
}

#[test]
fn additional_records_that_do_not_fit_are_left_out_but_missing_glue_truncates() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples/multi-zone/sparrow.toml");
    let mut records = String::new();
    let mut add = |name: &str, rtype: &str, data: &str| {
        records.push_str(&format!(
            "[[zone.record]]\nname = \"{name}\"\ntype = \"{rtype}\"\ndata = \"{data}\"\n\n"
        ));
    };
    for i in 1..=30 {
        add("many.example.org.", "MX", &format!("{i} m{i}.example.org."));
        add(&format!("m{i}.example.org."), "A", &format!("192.0.2.{i}"));
        add(
            &format!("m{i}.example.org."),
            "AAAA",
            &format!("2001:db8::{i}"),
        );
        // A delegation whose glue cannot all fit in 512 bytes, one whose servers are
        // elsewhere in the zone (optional addresses).
        add(
            "deleg.example.org.",
            "NS",
            &format!("ns{i}.deleg.example.org."),
        );
        add(
            &format!("ns{i}.deleg.example.org."),
            "A",
            &format!("192.0.2.{i}"),
        );
        if i <= 12 {
            add("other.example.org.", "NS", &format!("m{i}.example.org."));
        }
    }
    let text = std::fs::read_to_string(&path).unwrap().replacen(
        "[[pop]]",
        &format!("{records}[[pop]]"),
        1,
    );
    let snap = Snapshot::from_config(Config::from_str(&text, &path, &Disk).unwrap().config);
    let src: SocketAddr = "100.64.3.7:53000".parse().unwrap();
    let nsid = [0, 3, 0, 0];
    let cookie = [0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8];
    for (name, qtype) in [
        ("many.example.org.", RecordType::MX),
        ("x.deleg.example.org.", RecordType::A),
        ("x.other.example.org.", RecordType::A),
        ("example.org.", RecordType::NS),
    ] {
        for edns in [None, Some(512), Some(1232), Some(4096)] {
            for options in [
                vec![],
                nsid.to_vec(),
                [&ecs(1, 24, &[100, 64, 2])[..], &cookie].concat(),
                [&nsid[..], &ecs(2, 56, &[0x20, 1, 0xd, 0xb8, 0xff, 1, 0])].concat(),
            ] {
                if edns.is_none() && !options.is_empty() {
                    continue;
                }
                let mut q = Query::new(name, qtype);
                if let Some(p) = edns {
                    q = q.edns(p, options.clone());
                }
                let (took, bytes) = both(snap.clone(), &q.bytes(), src);
                assert!(took, "{name} {edns:?}");
                let m = Message::from_vec(&bytes).unwrap();
                let limit = usize::from(edns.map_or(512, |p| p.clamp(512, 1232)));
                assert!(bytes.len() <= limit, "{name} {edns:?}: {}", bytes.len());
                let what = format!("{name} {edns:?} {options:?}");
                match name {
                    // 30 MX fit in 1232 bytes with some of their addresses, not in 512.
                    "many.example.org." if limit >= 1232 => {
                        assert!(!m.metadata.truncation, "{what}");
                        assert_eq!(m.answers.len(), 30, "{what}");
                        assert!(!m.additionals.is_empty(), "{what}");
                        assert!(m.additionals.len() < 60, "{what}");
                    }
                    // The glue below the cut is required: it does not all fit in 512.
                    "x.deleg.example.org." if limit < 1232 => {
                        assert!(m.metadata.truncation, "{what}");
                    }
                    "x.deleg.example.org." => {
                        assert!(!m.metadata.truncation, "{what}");
                        assert_eq!(m.additionals.len(), 30, "{what}");
                    }
                    // Servers elsewhere in the zone: their addresses are optional.
                    "x.other.example.org." => {
                        assert!(!m.metadata.truncation, "{what}");
                        assert_eq!(m.authorities.len(), 12, "{what}");
                        assert!(!m.additionals.is_empty(), "{what}");
                    }
                    _ => {}
                }
            }
        }
    }
}

#[test]
fn too_large_answers_are_truncated_without_records_on_both_paths() {
    let src: SocketAddr = "192.0.2.200:53000".parse().unwrap();
    for max in [512, 1232, 4096] {
        for edns in [None, Some(512), Some(1232), Some(4096), Some(65535)] {
            let mut q = Query::new("big.example.net.", RecordType::TXT);
            if let Some(p) = edns {
                q = q.edns(p, ecs(1, 24, &[100, 64, 2]));
            }
            let (took, bytes) = both(big(max), &q.bytes(), src);
            assert!(took, "fast path for max {max} edns {edns:?}");
            let m = Message::from_vec(&bytes).unwrap();
            let limit = edns.map_or(512, |p| p.clamp(512, max));
            assert!(bytes.len() <= usize::from(limit));
            // 60 records of ~40 bytes: never fits in 512 or 1232, fits in 4096.
            let fits = limit >= 4096;
            assert_eq!(m.metadata.truncation, !fits, "max {max} edns {edns:?}");
            let want = if fits { 60 } else { 0 };
            assert_eq!(m.answers.len(), want, "max {max} edns {edns:?}");
            assert_eq!(m.edns.is_some(), edns.is_some());
        }
    }
}

#[test]
fn the_answer_owner_points_at_the_question() {
    let src: SocketAddr = "192.0.2.200:53000".parse().unwrap();
    let q = Query::new("www.example.net.", RecordType::A).edns(1232, ecs(1, 24, &[100, 64, 2]));
    let (took, bytes) = both(example(|t| t), &q.bytes(), src);
    assert!(took);
    let question_end = 12 + 17 + 4;
    // The answer's owner: a pointer to offset 12.
    assert_eq!(bytes[question_end..question_end + 2], [0xC0, 12]);
    let m = Message::from_vec(&bytes).unwrap();
    assert_eq!(m.answers[0].data.to_string(), "198.51.100.10");
}

#[test]
fn queries_the_fast_path_leaves_get_hickorys_answers() {
    let src: SocketAddr = "192.0.2.200:53000".parse().unwrap();
    let snap = example(|t| t);
    let rcode = |bytes: &[u8]| Message::from_vec(bytes).unwrap().metadata.response_code;
    let www = Query::new("www.example.net.", RecordType::A);
    // Malformed ECS (host bits), EDNS version 1, a malformed cookie, opcode STATUS, class
    // CH, two questions.
    let bad_ecs = www.clone().edns(1232, ecs(1, 20, &[10, 1, 17])).bytes();
    let mut v1 = www.clone().edns(1232, vec![]);
    v1.edns.as_mut().unwrap().1 = 1;
    let cookie = www
        .clone()
        .edns(1232, vec![0, 10, 0, 5, 1, 2, 3, 4, 5])
        .bytes();
    let mut status = www.clone();
    status.flags = 2 << 11;
    let mut chaos = www.bytes();
    let at = chaos.len() - 1;
    chaos[at] = 3;
    let mut two = www.bytes();
    two[5] = 2;
    two.extend_from_slice(&www.bytes()[12..]);
    let mut trailing = www.clone().edns(1232, vec![]).bytes();
    trailing.extend(b"xyz");
    for (query, want) in [
        (bad_ecs, Some(ResponseCode::FormErr)),
        (v1.bytes(), Some(ResponseCode::BADVERS)),
        (cookie, Some(ResponseCode::FormErr)),
        (status.bytes(), Some(ResponseCode::NotImp)),
        (chaos, Some(ResponseCode::Refused)),
        (two, Some(ResponseCode::FormErr)),
        (trailing, Some(ResponseCode::FormErr)),
        (vec![0x12, 0x34, 0x81, 0, 0, 0], None),
        // A question count with no question: FORMERR to a query, nothing to a response.
        (
            vec![0x12, 0x34, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0],
            Some(ResponseCode::FormErr),
        ),
        (vec![0x12, 0x34, 0x81, 0, 0, 1, 0, 0, 0, 0, 0, 0], None),
    ] {
        let (took, bytes) = both(snap.clone(), &query, src);
        assert!(!took, "{query:?}");
        match want {
            None => assert!(bytes.is_empty()),
            // BADVERS's high bits travel in the OPT record; the header holds its low bits.
            Some(ResponseCode::BADVERS) => {
                assert_eq!(bytes[3] & 0x0F, ResponseCode::BADVERS.low())
            }
            Some(code) => assert_eq!(rcode(&bytes), code, "{query:?}"),
        }
    }
}

#[test]
fn cookies_are_answered_the_same_on_both_paths() {
    const SECRET: [u8; 16] = [0x5a; 16];
    let snap = example(|t| {
        t.replacen(
            "[zone]\n",
            "cookie_secret = \"5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a\"\n[zone]\n",
            1,
        )
    });
    let client = [1, 2, 3, 4, 5, 6, 7, 8];
    let option = |data: &[u8]| {
        let mut o = vec![0, 10];
        o.extend((data.len() as u16).to_be_bytes());
        o.extend(data);
        o
    };
    for resolver in ["192.0.2.200", "100.64.3.7", "2001:db8:ff02::53"] {
        let ip: IpAddr = resolver.parse().unwrap();
        let src = SocketAddr::new(ip, 53000);
        let valid = super::cookie::server_cookie(&SECRET, &client, ip, NOW - 100);
        let stale = super::cookie::server_cookie(&SECRET, &client, ip, NOW - 4000);
        let mut forged = valid;
        forged[9] ^= 0xff;
        let with = |server: &[u8]| [&client[..], server].concat();
        // (option data, the fast path takes it, the server cookie is valid)
        let cookies: [(Vec<u8>, bool, bool); 6] = [
            (client.to_vec(), true, false),
            (with(&valid), true, true),
            (with(&stale), true, false),
            (with(&forged), true, false),
            (with(&[0; 8]), true, false),
            (client[..5].to_vec(), false, false),
        ];
        for (name, qtype) in [
            ("www.example.net.", RecordType::A),
            ("www.example.net.", RecordType::AAAA),
            ("mail.example.net.", RecordType::MX),
            ("nothing.example.net.", RecordType::A),
        ] {
            for subnet in [None, Some(ecs(1, 24, &[100, 64, 2]))] {
                for (cookie, fast, is_valid) in &cookies {
                    let mut options = subnet.clone().unwrap_or_default();
                    options.extend(option(cookie));
                    let q = Query::new(name, qtype).edns(1232, options);
                    let query = q.bytes();
                    let (answered, bytes) = both_answered(snap.clone(), &query, src);
                    assert_eq!(answered.is_some(), *fast, "{name} {cookie:?}");
                    let m = Message::from_vec(&bytes).unwrap();
                    if !fast {
                        assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
                        continue;
                    }
                    assert_eq!(answered.unwrap().cookie_valid, *is_valid, "{cookie:?}");
                    // The response's cookie: the client's, then a fresh, valid server cookie.
                    let opt = bytes.len() - 4 - 8 - 16;
                    assert_eq!(bytes[opt..opt + 4], [0, 10, 0, 24]);
                    assert_eq!(bytes[opt + 4..opt + 12], client);
                    let server = &bytes[opt + 12..];
                    assert!(super::cookie::is_valid(&SECRET, &client, server, ip, NOW));
                    assert_eq!(server[4..8], NOW.to_be_bytes());
                }
            }
        }
    }
}

/// Every name of every zone of `snap` (and each geo name), in lower case and with its
/// first letter upper-cased, for many types, EDNS sizes and client subnets, through both
/// paths (which must agree). Returns (questions the fast path took, those it answered from
/// the precomputed table); a question sent with a capital never comes from the table.
fn every_name(what: &str, snap: &Snapshot, src: SocketAddr) -> (usize, usize) {
    let mut names: Vec<String> = snap
        .config
        .zones
        .iter()
        .flat_map(|z| z.names().map(|n| n.to_string()))
        .chain(snap.config.geo.iter().map(|g| g.name.to_string()))
        .collect();
    names.sort();
    names.dedup();
    let qtypes = [
        RecordType::A,
        RecordType::AAAA,
        RecordType::ANY,
        RecordType::NS,
        RecordType::SOA,
        RecordType::MX,
        RecordType::TXT,
        RecordType::CNAME,
        RecordType::PTR,
        RecordType::DS,
        RecordType::CAA,
        RecordType::HTTPS,
    ];
    let edns: [Option<(u16, Vec<u8>)>; 7] = [
        None,
        Some((512, vec![])),
        Some((1232, ecs(1, 24, &[100, 64, 1]))),
        Some((1232, ecs(1, 24, &[100, 64, 2]))),
        Some((4096, ecs(1, 24, &[100, 64, 3]))),
        Some((1232, ecs(2, 48, &[0x20, 0x01, 0x0d, 0xb8, 0xff, 0x02]))),
        Some((1232, ecs(1, 0, &[]))),
    ];
    let (mut took, mut precomputed) = (0, 0);
    for name in &names {
        let mut capital = name.clone();
        capital[..1].make_ascii_uppercase();
        // A name whose first letter is no letter (`*`) is asked once.
        let forms = if capital == *name {
            vec![(false, name)]
        } else {
            vec![(false, name), (true, &capital)]
        };
        for (cased, name) in forms {
            for qtype in qtypes {
                for e in &edns {
                    let mut q = Query::new(name, qtype);
                    if let Some((payload, options)) = e {
                        q = q.edns(*payload, options.clone());
                    }
                    let bytes = q.bytes();
                    let (answered, _) = both_answered(snap.clone(), &bytes, src);
                    let Some(a) = answered else { continue };
                    took += 1;
                    if a.precomputed {
                        assert!(!cased, "{what}: {name} {qtype} from the table");
                        precomputed += 1;
                    }
                }
            }
        }
    }
    (took, precomputed)
}

#[test]
fn the_precomputed_table_sends_the_answer_paths_bytes_for_every_name_of_every_zone() {
    let src: SocketAddr = "100.64.3.7:53000".parse().unwrap();
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples/multi-zone/sparrow.toml");
    let multi = Snapshot::from_config(
        Config::from_str(&std::fs::read_to_string(&path).unwrap(), &path, &Disk)
            .unwrap()
            .config,
    );
    let mut cases = snapshots();
    cases.push(("multi-zone", multi));
    cases.push(("big", big(1232)));
    for (what, snap) in cases {
        let (took, precomputed) = every_name(what, &snap, src);
        // The table holds the types each name has and A, AAAA, HTTPS: 3 or more of the 12
        // types asked, in lower case only (half of the questions).
        assert!(precomputed * 8 > took, "{what}: {precomputed} of {took}");
    }
}

#[test]
fn geo_answers_from_the_table_carry_the_local_only_ttl_when_partitioned() {
    use crate::cluster::state::Mode;
    use crate::snapshot::Tables;
    let gossip: Vec<SocketAddr> = (0..3)
        .map(|i| format!("127.0.0.1:{}", 7300 + i).parse().unwrap())
        .collect();
    let config = Arc::new(crate::demo::configs(0, &gossip).unwrap().remove(0));
    let local_ttl = config.cluster.as_ref().unwrap().local_only_ttl;
    let clustered = Snapshot::new(config.clone(), Tables::from_config(&config));
    let partitioned = clustered.with_status(
        clustered.pop_status.clone(),
        clustered.admin_by.clone(),
        Mode::LocalOnly {
            alive: 1,
            quorum: 2,
        },
    );
    let src: SocketAddr = "100.64.3.7:53000".parse().unwrap();
    for (what, snap, local_only) in [
        ("clustered", clustered, false),
        ("local-only", partitioned, true),
    ] {
        let (took, precomputed) = every_name(what, &snap, src);
        assert!(precomputed * 8 > took, "{what}: {precomputed} of {took}");
        for g in &snap.config.geo {
            let q = Query::new(&g.name.to_string(), RecordType::A).edns(1232, vec![]);
            let query = q.bytes();
            let (a, bytes) = both_answered(snap.clone(), &query, src);
            assert!(a.unwrap().precomputed, "{what}: {}", g.name);
            let m = Message::from_vec(&bytes).unwrap();
            assert!(local_ttl < g.ttl, "the two TTLs must differ for this test");
            let want = if local_only {
                g.ttl.min(local_ttl)
            } else {
                g.ttl
            };
            assert!(!m.answers.is_empty(), "{what}: {}", g.name);
            for r in &m.answers {
                assert_eq!(r.ttl, want, "{what}: {}", g.name);
            }
        }
    }
}

#[test]
fn geo_and_static_names_in_lower_case_come_from_the_table() {
    let src: SocketAddr = "192.0.2.200:53000".parse().unwrap();
    let snap = example(|t| t);
    for (name, qtype, subnet, table) in [
        ("www.example.net.", RecordType::A, true, true),
        ("www.example.net.", RecordType::AAAA, false, true),
        ("mail.example.net.", RecordType::A, false, true),
        ("mail.example.net.", RecordType::AAAA, true, true),
        ("mail.example.net.", RecordType::HTTPS, false, true),
        ("www.example.net.", RecordType::HTTPS, true, true),
        ("example.net.", RecordType::SOA, false, true),
        ("example.net.", RecordType::MX, true, true),
        // Tailored (ANY at a geo name), no such name, mixed case: the answer path.
        ("www.example.net.", RecordType::ANY, true, false),
        ("nothing.example.net.", RecordType::A, false, false),
        ("WWW.example.net.", RecordType::A, true, false),
    ] {
        let options = if subnet {
            ecs(1, 24, &[100, 64, 2])
        } else {
            vec![]
        };
        let q = Query::new(name, qtype).edns(1232, options);
        let query = q.bytes();
        let (a, _) = both_answered(snap.clone(), &query, src);
        assert_eq!(a.unwrap().precomputed, table, "{name} {qtype}");
    }
}

#[test]
fn snapshots_of_one_config_share_one_table_and_a_new_config_gets_its_own() {
    let snap = example(|t| t);
    let table = fast::prepare(&snap);
    assert!(!table.is_empty());
    // Health, admin and mode changes keep the config: the same table, not rebuilt.
    for derived in [
        snap.with_health(0, false),
        snap.with_admin(1, AdminState::Drained),
    ] {
        assert!(derived.answer_table().get().is_some(), "filled already");
        assert!(std::ptr::eq(fast::prepare(&derived), table));
    }
    // Another config (one more record): another table, which has the record.
    let other = example(|t| {
        t.replacen(
            "[[pop]]",
            "[[zone.record]]\nname = \"new\"\ntype = \"TXT\"\ndata = \"x\"\n\n[[pop]]",
            1,
        )
    });
    assert!(other.answer_table().get().is_none());
    let new = b"\x03new\x07example\x03net\x00";
    assert!(fast::prepare(&other).get(new, RecordType::TXT).is_some());
    assert!(table.get(new, RecordType::TXT).is_none());
}
