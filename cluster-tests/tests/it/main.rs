//! Integration tests: real nodes on loopback, real DNS clients.

mod bgp;
mod cluster;
mod dig;
mod dns;
mod gossip;
mod health;
mod hostile;
mod https;
mod knot;
mod metrics;
mod mrt;
mod netsim;
mod services;
mod views;
mod xfr;
mod zones;

use hickory_proto::op::DnsResponse;
use hickory_proto::rr::RData;
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};

/// The A/AAAA/CNAME data of the answer section, as text.
pub(crate) fn answers(r: &DnsResponse) -> Vec<String> {
    r.answers
        .iter()
        .map(|rec| match &rec.data {
            RData::A(a) => a.to_string(),
            RData::AAAA(a) => a.to_string(),
            other => format!("{} {other}", rec.record_type()),
        })
        .collect()
}

/// The ECS option of a response: (source subnet, scope prefix length).
pub(crate) fn ecs(r: &DnsResponse) -> Option<(String, u8)> {
    match r.edns.as_ref()?.option(EdnsCode::Subnet)? {
        EdnsOption::Subnet(s) => Some((
            format!("{}/{}", s.addr(), s.source_prefix()),
            s.scope_prefix(),
        )),
        _ => None,
    }
}

/// `dig` at `server` with `args` (no recursion, one try of at most 5 s): its output.
pub(crate) fn dig(server: std::net::SocketAddr, args: &[&str]) -> String {
    let out = std::process::Command::new("dig")
        .arg(format!("@{}", server.ip()))
        .args([
            "-p",
            &server.port().to_string(),
            "+norec",
            "+time=5",
            "+tries=1",
        ])
        .args(args)
        .output()
        .expect("dig must be installed (scripts/test installs bind9-dnsutils)");
    assert!(
        out.status.success(),
        "dig failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}
