//! Conformance against Knot DNS: one zone covering every feature of the authoritative server
//! (`cluster-tests/conformance/`), served by a Sparrow node and by `knotd` (Debian's `knot`,
//! started here on a free loopback port with its own rundir and storage), asked the same
//! queries over UDP and TCP. Response code, opcode, flags, EDNS (version, DO, NSID) and the
//! three sections must be the same, except for the geo name, whose answers are the client's
//! nearest POP on Sparrow and a static stand-in on Knot ([`MAY_DIFFER`]).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use hickory_proto::op::Message;
use hickory_proto::rr::rdata::opt::EdnsCode;
use sparrow_cluster_tests::TestNode;

fn conformance() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("conformance")
}

/// Names whose answers may differ, and why.
const MAY_DIFFER: &[(&str, &str)] = &[(
    "cdn.example.org.",
    "a geo name: Sparrow answers the POP nearest the client, Knot a static stand-in \
     (the own POP's addresses)",
)];

/// A query, built byte by byte so that every field is the test's.
#[derive(Clone, Debug)]
struct Q {
    name: &'static str,
    qtype: u16,
    class: u16,
    opcode: u8,
    rd: bool,
    cd: bool,
    /// (version, DO, NSID)
    edns: Option<(u8, bool, bool)>,
}

const A: u16 = 1;
const NS: u16 = 2;
const CNAME: u16 = 5;
const SOA: u16 = 6;
const MX: u16 = 15;
const TXT: u16 = 16;
const AAAA: u16 = 28;
const SRV: u16 = 33;
const DS: u16 = 43;
const ANY: u16 = 255;

impl Q {
    fn new(name: &'static str, qtype: u16) -> Self {
        Self {
            name,
            qtype,
            class: 1,
            opcode: 0,
            rd: false,
            cd: false,
            edns: Some((0, false, false)),
        }
    }

    fn bytes(&self, id: u16) -> Vec<u8> {
        let mut flags: u16 = u16::from(self.opcode) << 11;
        if self.rd {
            flags |= 0x0100;
        }
        if self.cd {
            flags |= 0x0010;
        }
        let mut m = id.to_be_bytes().to_vec();
        m.extend(flags.to_be_bytes());
        m.extend([0, 1, 0, 0, 0, 0, 0, u8::from(self.edns.is_some())]);
        for label in self.name.split('.').filter(|l| !l.is_empty()) {
            m.push(label.len() as u8);
            m.extend(label.as_bytes());
        }
        m.push(0);
        m.extend(self.qtype.to_be_bytes());
        m.extend(self.class.to_be_bytes());
        if let Some((version, dnssec_ok, nsid)) = self.edns {
            m.extend([0, 0, 41]);
            m.extend(1232u16.to_be_bytes());
            m.extend([0, version, if dnssec_ok { 0x80 } else { 0 }, 0]);
            let options: &[u8] = if nsid { &[0, 3, 0, 0] } else { &[] };
            m.extend((options.len() as u16).to_be_bytes());
            m.extend(options);
        }
        m
    }
}

/// The queries both servers are asked.
fn queries() -> Vec<Q> {
    let mut qs = Vec::new();
    for (name, types) in [
        ("example.org.", &[SOA, NS, MX, TXT, A, AAAA, ANY, CNAME][..]),
        ("ns1.example.org.", &[A, AAAA, ANY, MX]),
        ("mail2.example.org.", &[A, AAAA]),
        ("foo.apps.example.org.", &[A, AAAA, TXT, ANY, CNAME]),
        ("a.b.apps.example.org.", &[A, TXT]),
        ("apps.example.org.", &[A, ANY]),
        ("*.apps.example.org.", &[A, TXT]),
        ("q.w.example.org.", &[A, AAAA, CNAME, ANY]),
        ("sub.example.org.", &[NS, A, DS, ANY]),
        ("x.sub.example.org.", &[A, MX, ANY]),
        ("ns.sub.example.org.", &[A, AAAA]),
        ("other.example.org.", &[NS, A, DS]),
        ("deep.x.other.example.org.", &[TXT]),
        ("alias.example.org.", &[A, AAAA, CNAME, MX, ANY]),
        ("chain.example.org.", &[A, CNAME]),
        ("to-wild.example.org.", &[A, TXT]),
        ("dangling.example.org.", &[A, CNAME]),
        ("out.example.org.", &[A]),
        ("to-sub.example.org.", &[A]),
        ("_sip._tcp.example.org.", &[SRV, A]),
        ("sip.example.org.", &[A, AAAA]),
        ("ent.example.org.", &[TXT, A]),
        ("b.ent.example.org.", &[TXT]),
        ("a.b.ent.example.org.", &[TXT, A]),
        ("nope.example.org.", &[A, MX]),
        ("nope.nope.example.org.", &[A]),
        ("example.com.", &[A, SOA]),
        ("cdn.example.org.", &[A, AAAA, ANY, TXT]),
    ] {
        for &qtype in types {
            qs.push(Q::new(name, qtype));
        }
    }
    // Large answers, with and without EDNS (512 bytes).
    for (name, qtype) in [
        ("many.example.org.", MX),
        ("x.deleg.example.org.", A),
        ("x.far.example.org.", A),
    ] {
        qs.push(Q::new(name, qtype));
        qs.push(Q {
            edns: None,
            ..Q::new(name, qtype)
        });
    }
    // Header and EDNS handling.
    let soa = Q::new("example.org.", SOA);
    qs.push(Q {
        edns: None,
        ..soa.clone()
    });
    qs.push(Q {
        edns: Some((0, true, false)),
        ..soa.clone()
    });
    qs.push(Q {
        edns: Some((0, false, true)),
        ..soa.clone()
    });
    qs.push(Q {
        edns: Some((0, true, true)),
        ..Q::new("nope.example.org.", A)
    });
    qs.push(Q {
        rd: true,
        cd: true,
        ..Q::new("mail.example.org.", A)
    });
    qs.push(Q {
        edns: Some((1, false, false)),
        ..soa.clone()
    });
    qs.push(Q {
        opcode: 3,
        rd: true,
        cd: true,
        ..soa.clone()
    });
    qs.push(Q {
        opcode: 3,
        edns: None,
        ..soa.clone()
    });
    // CHAOS: the node's identity.
    for name in ["id.server.", "hostname.bind.", "foo.server."] {
        qs.push(Q {
            class: 3,
            ..Q::new(name, TXT)
        });
    }
    qs.push(Q {
        class: 3,
        ..Q::new("id.server.", A)
    });
    qs
}

/// Messages that are not plain queries (RFC 6891 6.1.1: one OPT, in additional), by name.
fn malformed() -> Vec<(&'static str, Vec<u8>)> {
    let with_edns = Q::new("example.org.", SOA).bytes(0x4242);
    let without = Q {
        edns: None,
        ..Q::new("example.org.", SOA)
    }
    .bytes(0x4242);
    let opt = with_edns[without.len()..].to_vec();
    let mut two_opts = with_edns.clone();
    two_opts[11] = 2;
    two_opts.extend(&opt);
    let mut opt_in_answer = without.clone();
    opt_in_answer[7] = 1;
    opt_in_answer.extend(&opt);
    let cut_short = with_edns[..with_edns.len() - 2].to_vec();
    let mut no_question = with_edns[..12].to_vec();
    no_question[5] = 0;
    no_question.extend(&opt);
    let mut unknown_option = without.clone();
    unknown_option[11] = 1;
    unknown_option.extend([0, 0, 41, 4, 0xd0, 0, 0, 0, 0, 0, 8, 0xfd, 0xe9, 0, 4]);
    unknown_option.extend(b"abcd");
    let mut z_bits = with_edns.clone();
    let flags = z_bits.len() - 5;
    z_bits[flags] = 0x7f;
    z_bits[flags + 1] = 0xff;
    let mut trailing = with_edns.clone();
    trailing.extend(b"xyz");
    let payload = |size: u16| {
        let mut m = with_edns.clone();
        let at = m.len() - 8;
        m[at..at + 2].copy_from_slice(&size.to_be_bytes());
        m
    };
    let mut class_any = without.clone();
    let class = class_any.len() - 1;
    class_any[class] = 255;
    vec![
        ("two OPT records", two_opts),
        ("an OPT record in the answer section", opt_in_answer),
        ("an OPT record cut short", cut_short),
        ("no question", no_question),
        ("an unknown EDNS option", unknown_option),
        ("the EDNS Z bits set", z_bits),
        ("class ANY", class_any),
        ("bytes after the last record", trailing),
        ("an EDNS payload size of 100", payload(100)),
        ("an EDNS payload size of 4096", payload(4096)),
    ]
}

/// Sends `query` to `server` and returns the response's bytes.
fn exchange(server: SocketAddr, query: &[u8], tcp: bool) -> std::io::Result<Vec<u8>> {
    let timeout = Some(Duration::from_secs(5));
    if tcp {
        let mut s = TcpStream::connect(server)?;
        s.set_read_timeout(timeout)?;
        let mut framed = (query.len() as u16).to_be_bytes().to_vec();
        framed.extend(query);
        s.write_all(&framed)?;
        let mut len = [0; 2];
        s.read_exact(&mut len)?;
        let mut out = vec![0; usize::from(u16::from_be_bytes(len))];
        s.read_exact(&mut out)?;
        Ok(out)
    } else {
        let s = UdpSocket::bind("127.0.0.1:0")?;
        s.set_read_timeout(timeout)?;
        s.send_to(query, server)?;
        let mut buf = vec![0; 65535];
        let n = s.recv(&mut buf)?;
        buf.truncate(n);
        Ok(buf)
    }
}

/// What is compared of a response, one line per item, records sorted within a section
/// (the order inside a section carries no meaning).
fn describe(bytes: &[u8]) -> String {
    let m = match Message::from_vec(bytes) {
        Ok(m) => m,
        Err(e) => return format!("undecodable: {e}"),
    };
    let h = &m.metadata;
    let mut out = format!(
        "rcode {} opcode {:?} aa={} tc={} rd={} ra={} ad={} cd={}\n",
        h.response_code,
        h.op_code,
        h.authoritative,
        h.truncation,
        h.recursion_desired,
        h.recursion_available,
        h.authentic_data,
        h.checking_disabled
    );
    match &m.edns {
        None => out.push_str("no EDNS\n"),
        Some(e) => out.push_str(&format!(
            "EDNS version {} do={} payload {} nsid {:?}\n",
            e.version(),
            e.flags().dnssec_ok,
            e.max_payload(),
            e.option(EdnsCode::NSID).map(|o| format!("{o:?}"))
        )),
    }
    out.push_str(&format!("question {:?}\n", m.queries));
    for (title, records) in [
        ("answer", &m.answers),
        ("authority", &m.authorities),
        ("additional", &m.additionals),
    ] {
        let mut lines: Vec<String> = records.iter().map(|r| r.to_string()).collect();
        lines.sort();
        out.push_str(&format!("{title}: {}\n", lines.join(" | ")));
    }
    out
}

/// A `knotd` serving `zone` (with `extra` appended) on a free loopback port.
struct Knot {
    child: Child,
    addr: SocketAddr,
    dir: PathBuf,
}

impl Knot {
    fn start(zone: &str) -> Self {
        let knotd = ["/usr/sbin/knotd", "/usr/bin/knotd"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("knotd is not installed (scripts/test installs Debian's knot)");
        let dir = std::env::temp_dir().join(format!("sparrow-knot-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("storage")).unwrap();
        std::fs::create_dir_all(dir.join("run")).unwrap();
        std::fs::write(dir.join("storage/example.org.zone"), zone).unwrap();
        let addr = free_port();
        let conf = format!(
            "server:\n    rundir: \"{run}\"\n    listen: {ip}@{port}\n    identity: \"ams\"\n    \
             nsid: \"ams\"\n    version: \"\"\ndatabase:\n    storage: \"{storage}\"\n\
             template:\n  - id: default\n    storage: \"{storage}\"\n    semantic-checks: on\n\
             zone:\n  - domain: example.org\n    file: \"example.org.zone\"\n",
            run = dir.join("run").display(),
            storage = dir.join("storage").display(),
            ip = addr.ip(),
            port = addr.port(),
        );
        std::fs::write(dir.join("knot.conf"), conf).unwrap();
        let log = std::fs::File::create(dir.join("knotd.log")).unwrap();
        let child = Command::new(knotd)
            .arg("-c")
            .arg(dir.join("knot.conf"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start knotd");
        let mut knot = Self { child, addr, dir };
        // Ready when it answers the zone's SOA with AA.
        let probe = Q::new("example.org.", SOA).bytes(1);
        for _ in 0..200 {
            if let Ok(bytes) = exchange_quick(addr, &probe)
                && Message::from_vec(&bytes).is_ok_and(|m| m.metadata.authoritative)
            {
                return knot;
            }
            if let Ok(Some(status)) = knot.child.try_wait() {
                panic!("knotd exited ({status}): {}", knot.log());
            }
        }
        panic!("knotd did not serve the zone: {}", knot.log());
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("knotd.log")).unwrap_or_default()
    }
}

impl Drop for Knot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A UDP exchange that gives up after 50 ms (knotd starting).
fn exchange_quick(server: SocketAddr, query: &[u8]) -> std::io::Result<Vec<u8>> {
    let s = UdpSocket::bind("127.0.0.1:0")?;
    s.set_read_timeout(Some(Duration::from_millis(50)))?;
    s.send_to(query, server)?;
    let mut buf = vec![0; 65535];
    let n = s.recv(&mut buf)?;
    buf.truncate(n);
    Ok(buf)
}

/// A loopback port free for both UDP and TCP at the time of asking.
fn free_port() -> SocketAddr {
    loop {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = udp.local_addr().unwrap();
        if TcpListener::bind(addr).is_ok() {
            return addr;
        }
    }
}

#[tokio::test]
async fn sparrow_answers_as_knot_does_over_udp_and_tcp() {
    let dir = conformance();
    let zone = std::fs::read_to_string(dir.join("example.org.zone")).unwrap();
    // Knot has no geo names: cdn gets the own POP's addresses, as Sparrow's config gives.
    let knot_zone = format!("{zone}cdn 30 IN A 192.0.2.10\ncdn 30 IN AAAA 2001:db8:a::10\n");
    let node = TestNode::start(&dir.join("sparrow.toml")).await.unwrap();
    let sparrow = node.addr;
    let (differences, allowed, compared) = tokio::task::spawn_blocking(move || {
        let knot = Knot::start(&knot_zone);
        let (mut differences, mut allowed, mut compared) = (Vec::new(), Vec::new(), 0);
        for (i, q) in queries().iter().enumerate() {
            for tcp in [false, true] {
                let bytes = q.bytes(i as u16);
                let ours = describe(&exchange(sparrow, &bytes, tcp).expect("sparrow answers"));
                let theirs = describe(&exchange(knot.addr, &bytes, tcp).expect("knot answers"));
                compared += 1;
                if ours == theirs {
                    continue;
                }
                let report = format!(
                    "{q:?} over {}\n--- sparrow\n{ours}--- knot\n{theirs}",
                    if tcp { "TCP" } else { "UDP" }
                );
                match MAY_DIFFER.iter().find(|(name, _)| *name == q.name) {
                    Some((_, why)) => allowed.push(format!("{report}(allowed: {why})")),
                    None => differences.push(report),
                }
            }
        }
        for (what, bytes) in malformed() {
            for tcp in [false, true] {
                let ours = describe(&exchange(sparrow, &bytes, tcp).expect("sparrow answers"));
                let theirs = describe(&exchange(knot.addr, &bytes, tcp).expect("knot answers"));
                compared += 1;
                if ours != theirs {
                    differences.push(format!(
                        "{what} over {}\n--- sparrow\n{ours}--- knot\n{theirs}",
                        if tcp { "TCP" } else { "UDP" }
                    ));
                }
            }
        }
        (differences, allowed, compared)
    })
    .await
    .unwrap();
    for a in &allowed {
        eprintln!("{a}\n");
    }
    assert!(
        differences.is_empty(),
        "{} of {compared} responses differ from Knot's:\n\n{}",
        differences.len(),
        differences.join("\n")
    );
    assert_eq!(
        compared,
        2 * (queries().len() + malformed().len()),
        "every query over UDP and TCP"
    );
    node.stop().await.unwrap();
}
