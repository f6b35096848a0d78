//! [P] What to answer: (query, client, snapshot) -> [`ResponsePlan`].
//!
//! The plan borrows every record from the snapshot; the edge only encodes it.

use std::borrow::Cow;
use std::net::IpAddr;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};
use ipnet::IpNet;

use super::zone::{Found, Zone};
use crate::config::WhenDown;
use crate::snapshot::Snapshot;

/// Longest CNAME chain followed inside the node's zones before giving up (a loop, most
/// likely).
const MAX_CNAME_CHAIN: usize = 8;

/// Who the answer is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Client {
    /// The address the query came from (the resolver).
    pub resolver: IpAddr,
    /// The EDNS Client Subnet of the query, if it carried one.
    pub subnet: Option<IpNet>,
}

impl Client {
    /// The address answers are tailored to: the client subnet, unless absent or `/0` (the
    /// resolver asks that no client data be used, RFC 7871 7.1.2), then the resolver.
    pub fn decision_address(&self) -> IpAddr {
        match self.subnet {
            Some(net) if net.prefix_len() > 0 => net.addr(),
            _ => self.resolver,
        }
    }
}

/// The response to send.
#[derive(Debug, PartialEq)]
pub struct ResponsePlan<'a> {
    /// Response code.
    pub rcode: ResponseCode,
    /// Whether to set AA (everything in a zone but referrals; not REFUSED).
    pub authoritative: bool,
    /// Answer section (owned where a wildcard gave the record the query's name).
    pub answers: Vec<Cow<'a, Record>>,
    /// Authority section (the SOA of negative answers, the NS of a referral).
    pub authority: Vec<&'a Record>,
    /// Additional section (addresses of NS, MX and SRV targets; not the OPT record), in
    /// sets that are sent whole or not at all.
    pub additional: Vec<Additional<'a>>,
    /// ECS SCOPE PREFIX-LENGTH to return, when the query carried ECS.
    pub ecs_scope: Option<u8>,
    /// For a geo answer: the POP whose addresses come first (what metrics count).
    pub geo_pop: Option<usize>,
    /// For a geo answer: its service (index into `config.geo`), with `geo_pop`.
    pub geo_service: Option<usize>,
}

/// Where [`answer`] puts the records of a response, section after section: a
/// [`ResponsePlan`] collects them; the UDP fast path encodes them as they come.
pub trait Sink<'a> {
    /// The next record of the answer section; `owner`, if given, replaces the record's
    /// own name (a wildcard's record answers with the query's name, RFC 4592 3.3.1).
    fn answer(&mut self, record: &'a Record, owner: Option<&LowerName>);
    /// The next record of the authority section.
    fn authority(&mut self, record: &'a Record);
    /// The next records of the additional section: sent whole if they fit; if not, left
    /// out, unless `required` (glue below a cut), which truncates the response (RFC 1034
    /// 4.3.2 step 3b, RFC 2181 9: the other addresses are optional).
    fn additional(&mut self, set: &'a [Record], required: bool);
}

/// A set of records of the additional section.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Additional<'a> {
    /// The records.
    pub records: &'a [Record],
    /// Whether a response without them must be truncated (glue below a cut).
    pub required: bool,
}

/// A response apart from its records (which went to a [`Sink`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Response code.
    pub rcode: ResponseCode,
    /// Whether to set AA.
    pub authoritative: bool,
    /// ECS SCOPE PREFIX-LENGTH to return, when the query carried ECS.
    pub ecs_scope: Option<u8>,
    /// For a geo answer: the POP whose addresses come first.
    pub geo_pop: Option<usize>,
    /// For a geo answer: its service (index into `config.geo`), with `geo_pop`.
    pub geo_service: Option<usize>,
    /// Whether a geo decision shaped the response (its records, or only its ECS scope): a
    /// response that is not tailored is the same for every client (`dns::table`).
    pub tailored: bool,
}

/// Memory [`answer`] reuses between queries (the POP order of a geo answer).
#[derive(Debug, Default)]
pub struct Scratch {
    order: Vec<usize>,
}

struct Collect<'a> {
    answers: Vec<Cow<'a, Record>>,
    authority: Vec<&'a Record>,
    additional: Vec<Additional<'a>>,
}

impl<'a> Sink<'a> for Collect<'a> {
    fn answer(&mut self, record: &'a Record, owner: Option<&LowerName>) {
        self.answers.push(match owner {
            None => Cow::Borrowed(record),
            Some(owner) => {
                let mut r = record.clone();
                r.name = Name::from(owner.clone());
                Cow::Owned(r)
            }
        });
    }
    fn authority(&mut self, record: &'a Record) {
        self.authority.push(record);
    }
    fn additional(&mut self, records: &'a [Record], required: bool) {
        self.additional.push(Additional { records, required });
    }
}

/// Plans the response to `qname`/`qtype` for `client`.
pub fn plan<'a>(
    snap: &'a Snapshot,
    qname: &LowerName,
    qtype: RecordType,
    client: Client,
) -> ResponsePlan<'a> {
    let mut sink = Collect {
        answers: Vec::new(),
        authority: Vec::new(),
        additional: Vec::new(),
    };
    let outcome = answer(
        snap,
        qname,
        qtype,
        client,
        &mut Scratch::default(),
        &mut sink,
    );
    ResponsePlan {
        rcode: outcome.rcode,
        authoritative: outcome.authoritative,
        answers: sink.answers,
        authority: sink.authority,
        additional: sink.additional,
        ecs_scope: outcome.ecs_scope,
        geo_pop: outcome.geo_pop,
        geo_service: outcome.geo_service,
    }
}

/// How the search for the answer ended.
enum End<'a> {
    /// Records in the answer section; nothing in authority.
    Positive,
    /// The name exists (in `zone`) without records of the type.
    NoData,
    /// The name does not exist in `zone`.
    NxDomain,
    /// The name is at or below a delegation: its NS records.
    Referral(&'a [Record]),
}

/// The response to `qname`/`qtype` for `client`: its records go to `sink`, the rest is
/// returned. [`plan`] is this with the records collected; the answer path for geo and
/// static names allocates nothing once `scratch` has grown (wildcards, delegations and
/// names that do not exist may).
///
/// As Knot answers (RFC 1034 4.3.2, RFC 2181, RFC 4592, RFC 8482): the zone is the one
/// with the longest origin containing the name; a delegation refers (AA clear, its NS in
/// authority, glue in additional); CNAMEs are followed through every zone of the node; ANY
/// gets the first record set of the name (lowest type code; at a geo name its addresses);
/// the targets of NS, MX and SRV answers get their addresses from the same zone in
/// additional (a geo name's: the client's answer).
pub fn answer<'a>(
    snap: &'a Snapshot,
    qname: &LowerName,
    qtype: RecordType,
    client: Client,
    scratch: &mut Scratch,
    sink: &mut impl Sink<'a>,
) -> Outcome {
    let zones = &snap.config.zones;
    let Some(mut zone) = zones.find(qname) else {
        return Outcome {
            rcode: ResponseCode::Refused,
            authoritative: false,
            ecs_scope: None,
            geo_pop: None,
            geo_service: None,
            tailored: false,
        };
    };
    // The most specific decision block that shaped the answer, for the ECS scope.
    let mut scope: Option<u8> = None;
    let mut geo_pop: Option<usize> = None;
    // Whether the answer section has records (a CNAME chain keeps AA on a referral).
    let mut answered = false;
    // The records whose targets get addresses in additional, and their zone.
    let mut extra: Option<(&'a Zone, &'a [Record])> = None;
    let mut geo_service: Option<usize> = None;
    let mut name = qname.clone();
    let mut end = End::NoData;
    for _ in 0..=MAX_CNAME_CHAIN {
        if let Some(geo) = snap.geo_index(&name)
            && geo_answers(snap, geo, qtype)
        {
            // ANY: the first family a POP has addresses of.
            let families: &[RecordType] = match qtype {
                RecordType::ANY => &[RecordType::A, RecordType::AAAA],
                _ => std::slice::from_ref(&qtype),
            };
            let mut emitted = false;
            let mut cname = None;
            for &family in families {
                let (block_len, first) = geo_answer(snap, geo, family, client, scratch, &mut |r| {
                    emitted = true;
                    if let RData::CNAME(target) = &r.data {
                        cname = Some(&target.0);
                    }
                    sink.answer(r, None);
                });
                scope = Some(block_len);
                if geo_pop.is_none() && first.is_some() {
                    (geo_pop, geo_service) = (first, Some(geo));
                }
                if emitted {
                    break;
                }
            }
            // A CNAME service: its POP's CNAME is followed as a static one would be.
            if let Some(target) = cname {
                answered = true;
                if matches!(qtype, RecordType::CNAME | RecordType::ANY) {
                    end = End::Positive;
                    break;
                }
                let target = LowerName::from(target);
                match zones.find(&target) {
                    // Out of the node's zones: the resolver follows it.
                    None => {
                        end = End::Positive;
                        break;
                    }
                    Some(z) => {
                        zone = z;
                        name = target;
                        continue;
                    }
                }
            }
            // INVARIANT: a geo name has no static A, AAAA or CNAME (the config refuses
            // them), so for A and AAAA there is nothing more to look up.
            if emitted {
                end = End::Positive;
                break;
            }
            if qtype != RecordType::ANY {
                end = End::NoData;
                break;
            }
        }
        let source = match zone.find(&name, qtype) {
            Found::Referral(ns) => {
                end = End::Referral(ns);
                extra = Some((zone, ns));
                break;
            }
            Found::NxDomain => {
                end = End::NxDomain;
                break;
            }
            Found::Exact => None,
            Found::Wildcard(source) => Some(source),
        };
        let at = source.as_ref().unwrap_or(&name);
        let owner = source.as_ref().map(|_| &name);
        let rtype = match qtype {
            RecordType::ANY => match zone.types_at(at).first() {
                Some(t) => *t,
                None => {
                    end = End::NoData;
                    break;
                }
            },
            t => t,
        };
        if let Some(records) = zone.rrset(at, rtype) {
            for r in records {
                sink.answer(r, owner);
            }
            if matches!(rtype, RecordType::NS | RecordType::MX | RecordType::SRV) {
                extra = Some((zone, records));
            }
            end = End::Positive;
            break;
        }
        match zone.rrset(at, RecordType::CNAME) {
            Some([cname]) if qtype != RecordType::CNAME => {
                sink.answer(cname, owner);
                answered = true;
                let RData::CNAME(target) = &cname.data else {
                    end = End::Positive;
                    break;
                };
                let target = LowerName::from(&target.0);
                match zones.find(&target) {
                    // Out of the node's zones: the resolver follows it.
                    None => {
                        end = End::Positive;
                        break;
                    }
                    Some(z) => {
                        zone = z;
                        name = target;
                    }
                }
            }
            _ => {
                end = End::NoData;
                break;
            }
        }
    }
    let (rcode, authoritative) = match end {
        End::Positive => (ResponseCode::NoError, true),
        End::NoData => {
            sink.authority(zone.negative_soa());
            (ResponseCode::NoError, true)
        }
        End::NxDomain => {
            sink.authority(zone.negative_soa());
            (ResponseCode::NXDomain, true)
        }
        End::Referral(ns) => {
            for r in ns {
                sink.authority(r);
            }
            (ResponseCode::NoError, answered)
        }
    };
    // A referral's cut: glue below it is required.
    let cut = match end {
        End::Referral(ns) => ns.first().map(|r| LowerName::from(&r.name)),
        _ => None,
    };
    if let Some((zone, records)) = extra {
        for r in records {
            let target = match &r.data {
                RData::NS(ns) => &ns.0,
                RData::MX(mx) => &mx.exchange,
                RData::SRV(srv) => &srv.target,
                _ => continue,
            };
            let target = LowerName::from(target);
            if !zone.contains(&target) {
                continue;
            }
            if let Some(geo) = snap.geo_index(&target) {
                // A CNAME service gives no addresses (and an NS, MX or SRV target must not
                // be an alias, RFC 2181 10.3).
                if snap.config.geo[geo].is_cname() {
                    continue;
                }
                let (block_len, _) =
                    geo_answer(snap, geo, RecordType::ANY, client, scratch, &mut |r| {
                        sink.additional(std::slice::from_ref(r), false);
                    });
                scope = Some(scope.map_or(block_len, |s| s.max(block_len)));
                continue;
            }
            let required = cut.as_ref().is_some_and(|cut| cut.zone_of(&target));
            for t in [RecordType::A, RecordType::AAAA] {
                if let Some(set) = zone.rrset(&target, t) {
                    sink.additional(set, required);
                }
            }
        }
    }
    Outcome {
        rcode,
        authoritative,
        ecs_scope: ecs_scope(scope, client),
        geo_pop,
        geo_service,
        tailored: scope.is_some(),
    }
}

/// The ECS scope: the decision block's length when the answer depended on the client, 0
/// when it did not or the client asked for no tailoring (source /0, RFC 7871 7.1.2).
pub fn ecs_scope(scope: Option<u8>, client: Client) -> Option<u8> {
    match client.subnet {
        None => None,
        Some(net) if net.prefix_len() == 0 => Some(0),
        Some(_) => Some(scope.unwrap_or(0)),
    }
}

/// Whether geo name `geo` answers `qtype` from its POPs: A, AAAA and ANY, CNAME for a
/// CNAME service, HTTPS for a name with `[geo.https]`.
fn geo_answers(snap: &Snapshot, geo: usize, qtype: RecordType) -> bool {
    match qtype {
        RecordType::A | RecordType::AAAA | RecordType::ANY => true,
        RecordType::CNAME => snap.config.geo[geo].is_cname(),
        RecordType::HTTPS => snap.config.geo[geo].https.is_some(),
        _ => false,
    }
}

/// Gives `emit` the A/AAAA records of the best POPs for the client (for a CNAME service,
/// the best POP's CNAME); returns the decision block's length and the POP whose records
/// come first (if any POP has records of the type).
fn geo_answer<'a>(
    snap: &'a Snapshot,
    geo: usize,
    qtype: RecordType,
    client: Client,
    scratch: &mut Scratch,
    emit: &mut impl FnMut(&'a Record),
) -> (u8, Option<usize>) {
    let count = usize::from(snap.config.geo[geo].answers);
    let types: &[RecordType] = match qtype {
        // Both columns of a CNAME service hold the same CNAME: one is the answer.
        _ if snap.config.geo[geo].is_cname() => &[RecordType::A],
        RecordType::HTTPS => &[RecordType::HTTPS],
        RecordType::ANY => &[RecordType::A, RecordType::AAAA],
        RecordType::A => &[RecordType::A],
        _ => &[RecordType::AAAA],
    };
    let mut block_len = 0;
    let mut first = None;
    for &t in types {
        // The best `count` POPs that have an address of this family.
        let (block, failed_open) =
            snap.route_first_into(geo, client.decision_address(), count, t, &mut scratch.order);
        block_len = block.prefix_len();
        // Every POP down for this name: its `when_down` answer, unless it fails open.
        if failed_open {
            match snap.config.geo[geo].when_down {
                WhenDown::FailOpen => {}
                WhenDown::NoData => continue,
                WhenDown::Fallback(_) => {
                    snap.geo_fallback(geo, t).iter().for_each(&mut *emit);
                    continue;
                }
            }
        }
        first = first.or(scratch.order.first().copied());
        for &pop in &scratch.order {
            for r in snap.geo_records(geo, pop, t) {
                emit(r);
            }
        }
    }
    (block_len, first)
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::str::FromStr;
    use std::sync::Arc;

    use hickory_proto::rr::Name;

    use super::*;
    use crate::config::{Config, Disk};

    /// The single-node example with `extra` TOML inserted before the first POP.
    fn snapshot(extra: &str) -> Snapshot {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../deploy/examples/single-node/sparrow.toml");
        let text = std::fs::read_to_string(&path).unwrap().replacen(
            "[[pop]]",
            &format!("{extra}\n[[pop]]"),
            1,
        );
        Snapshot::from_config(Config::from_str(&text, &path, &Disk).unwrap().config)
    }

    fn ask(snap: &Snapshot, name: &str, qtype: RecordType, subnet: Option<&str>) -> String {
        let client = Client {
            resolver: "192.0.2.200".parse().unwrap(),
            subnet: subnet.map(|s| s.parse().unwrap()),
        };
        let name = LowerName::from(&Name::from_str(name).unwrap());
        let p = plan(snap, &name, qtype, client);
        let records: Vec<String> = p
            .answers
            .iter()
            .map(|r| format!("{} {}", r.record_type(), r.data))
            .collect();
        format!(
            "{} aa={} [{}] auth={} scope={:?}",
            p.rcode,
            p.authoritative,
            records.join(", "),
            p.authority.len(),
            p.ecs_scope
        )
    }

    /// The services example: www (0), api (1) and cdn (2) over ams (0), nyc (1), syd (2).
    fn services() -> Snapshot {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples/services/sparrow.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        Snapshot::from_config(Config::from_str(&text, &path, &Disk).unwrap().config)
    }

    #[test]
    fn each_service_answers_with_its_own_targets() {
        let snap = services();
        let ask = |name, qtype, subnet| ask(&snap, name, qtype, Some(subnet));
        let (a, aaaa) = (RecordType::A, RecordType::AAAA);
        assert_eq!(
            ask("www.example.net.", a, "100.64.1.0/24"),
            "No Error aa=true [A 192.0.2.10] auth=0 scope=Some(24)"
        );
        assert_eq!(
            ask("api.example.net.", a, "100.64.1.0/24"),
            "No Error aa=true [A 192.0.2.20] auth=0 scope=Some(24)"
        );
        assert_eq!(
            ask("api.example.net.", a, "100.64.2.0/24"),
            "No Error aa=true [A 198.51.100.20] auth=0 scope=Some(24)"
        );
        // api has no IPv6 target anywhere.
        assert_eq!(
            ask("api.example.net.", aaaa, "100.64.1.0/24"),
            "No Error aa=true [] auth=1 scope=Some(24)"
        );
        // A CNAME per POP, out of the zone: the resolver follows it.
        for qtype in [a, aaaa, RecordType::CNAME, RecordType::ANY] {
            assert_eq!(
                ask("cdn.example.net.", qtype, "100.64.3.0/24"),
                "No Error aa=true [CNAME syd.cdn.example.com.] auth=0 scope=Some(24)",
                "{qtype}"
            );
        }
        assert_eq!(
            ask("cdn.example.net.", RecordType::TXT, "100.64.3.0/24"),
            "No Error aa=true [] auth=1 scope=Some(0)"
        );
        assert_eq!(
            ask("cdn.example.net.", a, "100.64.1.0/24"),
            "No Error aa=true [CNAME ams.cdn.example.com.] auth=0 scope=Some(24)"
        );
    }

    #[test]
    fn https_records_are_steered_like_addresses_with_the_pops_hints() {
        let snap = services();
        let https = |snap: &Snapshot, subnet| {
            ask(snap, "api.example.net.", RecordType::HTTPS, Some(subnet))
        };
        assert_eq!(
            https(&snap, "100.64.1.0/24"),
            "No Error aa=true [HTTPS 1 . alpn=h2,h3, ipv4hint=192.0.2.20,] auth=0 scope=Some(24)"
        );
        assert_eq!(
            https(&snap.with_service_down(0, 1, true), "100.64.1.0/24"),
            "No Error aa=true [HTTPS 1 . alpn=h2,h3, ipv4hint=198.51.100.20,] auth=0 scope=Some(24)"
        );
        // Names without [geo.https] have none (NODATA, not tailored).
        assert_eq!(
            ask(
                &snap,
                "www.example.net.",
                RecordType::HTTPS,
                Some("100.64.1.0/24")
            ),
            "No Error aa=true [] auth=1 scope=Some(0)"
        );
        // A per-POP target name, a port and both families' hints (hickory's rendering; the
        // wire form is checked with dig in the integration tests).
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples/services/sparrow.toml");
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace("# port = 8443", "port = 8443")
            .replace(
                "addresses = [\"198.51.100.20\"]",
                "addresses = [\"198.51.100.20\", \"2001:db8:b::20\"]\nhttps_target = \"nyc.edge.example.org.\"",
            );
        let snap = Snapshot::from_config(Config::from_str(&text, &path, &Disk).unwrap().config);
        assert_eq!(
            https(&snap, "100.64.2.0/24"),
            "No Error aa=true [HTTPS 1 nyc.edge.example.org. alpn=h2,h3, port=8443 ipv4hint=198.51.100.20, ipv6hint=2001:db8:b::20,] auth=0 scope=Some(24)"
        );
    }

    #[test]
    fn a_service_down_or_drained_at_a_pop_moves_that_service_only() {
        let (www, api, cdn) = (0, 1, 2);
        let (ams, syd) = (0, 2);
        let base = services();
        let answers = |snap: &Snapshot, subnet| {
            ["www", "api", "cdn"].map(|n| {
                ask(
                    snap,
                    &format!("{n}.example.net."),
                    RecordType::A,
                    Some(subnet),
                )
            })
        };
        let before = answers(&base, "100.64.1.0/24");
        // ams's api gateway fails its probe: api goes to the next nearest POP (nyc, 3
        // hops against syd's 5); www and cdn stay at ams.
        let down = base.with_service_down(ams, api, true);
        let after = answers(&down, "100.64.1.0/24");
        assert_eq!(
            after[1],
            "No Error aa=true [A 198.51.100.20] auth=0 scope=Some(24)"
        );
        assert_eq!((&after[0], &after[2]), (&before[0], &before[2]));
        // Back up: as before.
        assert_eq!(
            answers(&down.with_service_down(ams, api, false), "100.64.1.0/24"),
            before
        );
        // syd's cdn drained: clients near syd get the next nearest POP's CNAME (nyc, 4
        // hops against ams's 5); syd still serves www and api.
        let mut services = base.services.to_vec();
        services[syd].drained = vec![cdn];
        let drained = base.with_services(services);
        let near_syd = answers(&drained, "100.64.3.0/24");
        assert_eq!(
            near_syd[2],
            "No Error aa=true [CNAME nyc.cdn.example.com.] auth=0 scope=Some(24)"
        );
        assert_eq!(
            near_syd[0],
            "No Error aa=true [A 203.0.113.10] auth=0 scope=Some(24)"
        );
        assert_eq!(
            near_syd[1],
            "No Error aa=true [A 203.0.113.20] auth=0 scope=Some(24)"
        );
        // A service down at every POP fails open for that service (as a POP would), while
        // the others are untouched.
        let all = [0, 1, 2]
            .into_iter()
            .fold(base.clone(), |s, pop| s.with_service_down(pop, www, true));
        assert_eq!(answers(&all, "100.64.1.0/24"), before);
    }

    #[test]
    fn failover_groups_and_the_hop_limit_steer_one_service() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples/services/sparrow.toml");
        let with = |settings: &str| {
            let text = std::fs::read_to_string(&path).unwrap().replacen(
                "name = \"api\"\nttl = 30\n",
                &format!("name = \"api\"\nttl = 30\n{settings}\n"),
                1,
            );
            Snapshot::from_config(Config::from_str(&text, &path, &Disk).unwrap().config)
        };
        let api =
            |snap: &Snapshot, subnet| ask(snap, "api.example.net.", RecordType::A, Some(subnet));
        // "Americas and Asia first, then the rest": a client 1 hop from ams gets nyc
        // (3 hops); ams serves only when both are down.
        let grouped = with("groups = [[\"nyc\", \"syd\"]]");
        assert_eq!(
            api(&grouped, "100.64.1.0/24"),
            "No Error aa=true [A 198.51.100.20] auth=0 scope=Some(24)"
        );
        let both_down = grouped
            .with_service_down(1, 1, true)
            .with_service_down(2, 1, true);
        assert_eq!(
            api(&both_down, "100.64.1.0/24"),
            "No Error aa=true [A 192.0.2.20] auth=0 scope=Some(24)"
        );
        // www is not grouped: ams.
        assert_eq!(
            ask(
                &grouped,
                "www.example.net.",
                RecordType::A,
                Some("100.64.1.0/24")
            ),
            "No Error aa=true [A 192.0.2.10] auth=0 scope=Some(24)"
        );
        // With a hop limit of 3, nyc (3 hops from 100.64.1.0/24) stays preferred, but for
        // 100.64.3.0/24 nyc is 4 hops away: syd, the next group, within the limit, wins.
        let limited = with("groups = [[\"nyc\"], [\"syd\"]]\nmax_hops = 3");
        assert_eq!(
            api(&limited, "100.64.1.0/24"),
            "No Error aa=true [A 198.51.100.20] auth=0 scope=Some(24)"
        );
        assert_eq!(
            api(&limited, "100.64.3.0/24"),
            "No Error aa=true [A 203.0.113.20] auth=0 scope=Some(24)"
        );
        // Without the limit, group order alone: nyc.
        let strict = with("groups = [[\"nyc\"], [\"syd\"]]");
        assert_eq!(
            api(&strict, "100.64.3.0/24"),
            "No Error aa=true [A 198.51.100.20] auth=0 scope=Some(24)"
        );
    }

    #[test]
    fn a_canary_share_of_one_takes_every_client_of_its_name_only() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples/services/sparrow.toml");
        let text = std::fs::read_to_string(&path).unwrap().replacen(
            "[[geo.target]]\npop = \"syd\"\naddresses = [\"203.0.113.20\"]\n",
            "[[geo.target]]\npop = \"syd\"\naddresses = [\"203.0.113.20\"]\ncanary = 1.0\n",
            1,
        );
        let snap = Snapshot::from_config(Config::from_str(&text, &path, &Disk).unwrap().config);
        for subnet in ["100.64.1.0/24", "100.64.2.0/24", "2001:db8:ff01::/48"] {
            assert_eq!(
                ask(&snap, "api.example.net.", RecordType::A, Some(subnet)),
                format!(
                    "No Error aa=true [A 203.0.113.20] auth=0 scope=Some({})",
                    if subnet.contains(':') { 48 } else { 24 }
                ),
                "{subnet}"
            );
        }
        assert_eq!(
            ask(
                &snap,
                "www.example.net.",
                RecordType::A,
                Some("100.64.1.0/24")
            ),
            "No Error aa=true [A 192.0.2.10] auth=0 scope=Some(24)"
        );
        // A canary down is no canary: the nearest again.
        assert_eq!(
            ask(
                &snap.with_service_down(2, 1, true),
                "api.example.net.",
                RecordType::A,
                Some("100.64.2.0/24")
            ),
            "No Error aa=true [A 198.51.100.20] auth=0 scope=Some(24)"
        );
    }

    #[test]
    fn when_every_pop_is_down_for_a_name_its_when_down_answers() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples/services/sparrow.toml");
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replacen(
                "name = \"api\"\nttl = 30\n",
                "name = \"api\"\nttl = 30\nwhen_down = \"nodata\"\n",
                1,
            )
            .replacen(
                "name = \"cdn\"\nttl = 30\n",
                "name = \"cdn\"\nttl = 30\nfallback = { cname = \"sorry.example.org.\" }\n",
                1,
            )
            .replacen(
                "name = \"www\"\nttl = 30\n",
                "name = \"www\"\nttl = 30\nfallback = { addresses = [\"192.0.2.99\"] }\n",
                1,
            );
        let base = Snapshot::from_config(Config::from_str(&text, &path, &Disk).unwrap().config);
        let (www, api, cdn) = (0, 1, 2);
        let down = |snap: &Snapshot, geo| {
            (0..3).fold(snap.clone(), |s, pop| s.with_service_down(pop, geo, true))
        };
        let a = |snap: &Snapshot, name: &str| ask(snap, name, RecordType::A, Some("100.64.1.0/24"));
        // With one POP up, the names answer as ever.
        let one_up = down(&base, api).with_service_down(2, api, false);
        assert_eq!(
            a(&one_up, "api.example.net."),
            "No Error aa=true [A 203.0.113.20] auth=0 scope=Some(24)"
        );
        // api: NODATA (and the SOA), while the other names are untouched.
        let api_down = down(&base, api);
        assert_eq!(
            a(&api_down, "api.example.net."),
            "No Error aa=true [] auth=1 scope=Some(24)"
        );
        assert_eq!(
            a(&api_down, "www.example.net."),
            "No Error aa=true [A 192.0.2.10] auth=0 scope=Some(24)"
        );
        // cdn: its fallback CNAME, for every type a CNAME service answers.
        let cdn_down = down(&base, cdn);
        for qtype in [RecordType::A, RecordType::AAAA, RecordType::CNAME] {
            assert_eq!(
                ask(&cdn_down, "cdn.example.net.", qtype, Some("100.64.3.0/24")),
                "No Error aa=true [CNAME sorry.example.org.] auth=0 scope=Some(24)"
            );
        }
        // www: the fallback's addresses of the family asked; none of the other: NODATA.
        // Drained POPs count as down too.
        let drained = [0, 1, 2].into_iter().fold(base.clone(), |s, pop| {
            s.with_admin(pop, crate::policy::AdminState::Drained)
        });
        assert_eq!(
            a(&drained, "www.example.net."),
            "No Error aa=true [A 192.0.2.99] auth=0 scope=Some(24)"
        );
        assert_eq!(
            ask(
                &drained,
                "www.example.net.",
                RecordType::AAAA,
                Some("100.64.1.0/24")
            ),
            "No Error aa=true [] auth=1 scope=Some(24)"
        );
        // The default fails open: every POP ranked as if up (see the test above), here www
        // with the whole POP unhealthy but a fallback only for the name that has one.
        let all_www = down(&base, www);
        assert_eq!(
            a(&all_www, "www.example.net."),
            "No Error aa=true [A 192.0.2.99] auth=0 scope=Some(24)"
        );
        let unchanged = services();
        let all_www = down(&unchanged, www);
        assert_eq!(
            a(&all_www, "www.example.net."),
            "No Error aa=true [A 192.0.2.10] auth=0 scope=Some(24)"
        );
    }

    #[test]
    fn cname_loops_end_with_the_chain_and_no_error() {
        let snap = snapshot(
            "[[zone.record]]\nname = \"a\"\ntype = \"CNAME\"\ndata = \"b\"\n\
             [[zone.record]]\nname = \"b\"\ntype = \"CNAME\"\ndata = \"a\"\n",
        );
        let out = ask(&snap, "a.example.net.", RecordType::A, None);
        assert!(
            out.starts_with("No Error aa=true [CNAME b.example.net., CNAME a.example.net."),
            "{out}"
        );
        assert!(out.ends_with("auth=1 scope=None"), "{out}");
    }

    #[test]
    fn cnames_out_of_the_zone_are_left_to_the_resolver() {
        let snap = snapshot(
            "[[zone.record]]\nname = \"cdn\"\ntype = \"CNAME\"\ndata = \"edge.cdn.example.org.\"\n",
        );
        assert_eq!(
            ask(
                &snap,
                "cdn.example.net.",
                RecordType::A,
                Some("100.64.1.0/24")
            ),
            "No Error aa=true [CNAME edge.cdn.example.org.] auth=0 scope=Some(0)"
        );
    }

    #[test]
    fn cname_to_a_missing_name_is_nxdomain_with_the_chain() {
        let snap = snapshot("[[zone.record]]\nname = \"old\"\ntype = \"CNAME\"\ndata = \"gone\"\n");
        assert_eq!(
            ask(&snap, "old.example.net.", RecordType::A, None),
            "Non-Existent Domain aa=true [CNAME gone.example.net.] auth=1 scope=None"
        );
    }

    #[test]
    fn any_at_a_geo_name_gives_its_first_record_set_the_tailored_addresses() {
        let snap = snapshot("[[zone.record]]\nname = \"www\"\ntype = \"TXT\"\ndata = \"hello\"\n");
        assert_eq!(
            ask(
                &snap,
                "www.example.net.",
                RecordType::ANY,
                Some("100.64.3.0/24")
            ),
            "No Error aa=true [A 203.0.113.10] auth=0 scope=Some(24)"
        );
        assert_eq!(
            ask(
                &snap,
                "www.example.net.",
                RecordType::TXT,
                Some("100.64.3.0/24")
            ),
            "No Error aa=true [TXT hello] auth=0 scope=Some(0)"
        );
    }

    #[test]
    fn each_family_is_answered_by_the_nearest_pop_that_has_an_address_of_it() {
        // nyc, nearest to 100.64.2.0/24, has no IPv6 address: AAAA goes to the next nearest
        // POP that has one (ams, 3 hops; syd is 4), A still to nyc.
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../deploy/examples/single-node/sparrow.toml");
        let text = std::fs::read_to_string(&path).unwrap().replace(
            "[\"198.51.100.10\", \"2001:db8:b::10\"]",
            "[\"198.51.100.10\"]",
        );
        assert!(!text.contains("2001:db8:b::10"), "example changed");
        let snap = Snapshot::from_config(Config::from_str(&text, &path, &Disk).unwrap().config);
        let www = "www.example.net.";
        assert_eq!(
            ask(&snap, www, RecordType::A, Some("100.64.2.0/24")),
            "No Error aa=true [A 198.51.100.10] auth=0 scope=Some(24)"
        );
        assert_eq!(
            ask(&snap, www, RecordType::AAAA, Some("100.64.2.0/24")),
            "No Error aa=true [AAAA 2001:db8:a::10] auth=0 scope=Some(24)"
        );
    }

    #[test]
    fn a_geo_name_without_addresses_of_the_family_is_nodata() {
        // www served by ams alone, and ams has no IPv6 address.
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../deploy/examples/single-node/sparrow.toml");
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace("[\"192.0.2.10\", \"2001:db8:a::10\"]", "[\"192.0.2.10\"]")
            .replace("answers = 1 ", "answers = 1\npops = [\"ams\"] ");
        let snap = Snapshot::from_config(Config::from_str(&text, &path, &Disk).unwrap().config);
        assert_eq!(
            ask(
                &snap,
                "www.example.net.",
                RecordType::AAAA,
                Some("100.64.2.0/24")
            ),
            "No Error aa=true [] auth=1 scope=Some(24)"
        );
        assert_eq!(
            ask(
                &snap,
                "www.example.net.",
                RecordType::A,
                Some("100.64.2.0/24")
            ),
            "No Error aa=true [A 192.0.2.10] auth=0 scope=Some(24)"
        );
    }

    #[test]
    fn a_replaced_route_view_changes_answers_and_its_scope() {
        let snap = snapshot("");
        let nyc = 1;
        let ask_a = |s: &Snapshot, subnet| ask(s, "www.example.net.", RecordType::A, Some(subnet));
        assert_eq!(
            ask_a(&snap, "100.64.2.0/24"),
            "No Error aa=true [A 198.51.100.10] auth=0 scope=Some(24)"
        );
        // nyc's router now sees only a /16 around the client, 6 hops away: ams (3) wins,
        // and the scope follows the new routes.
        let (view, skipped) = crate::routes::parse_route_view("100.64.0.0/16 1 2 3 4 5 6\n");
        assert!(skipped.is_empty());
        let next = snap.with_view(nyc, Some(Arc::new(view)));
        assert_eq!(
            ask_a(&next, "100.64.2.0/24"),
            "No Error aa=true [A 192.0.2.10] auth=0 scope=Some(24)"
        );
        // Without any view, nyc has no route: ams and syd both have one and ams is nearer.
        let none = snap.with_view(nyc, None);
        assert_eq!(
            ask_a(&none, "100.64.2.0/24"),
            "No Error aa=true [A 192.0.2.10] auth=0 scope=Some(24)"
        );
        assert!(none.view(nyc).is_none());
        // The old snapshot is untouched.
        assert_eq!(
            ask_a(&snap, "100.64.2.0/24"),
            "No Error aa=true [A 198.51.100.10] auth=0 scope=Some(24)"
        );
    }

    #[test]
    fn the_prepared_answer_path_agrees_with_the_full_ranking_in_every_state() {
        use crate::policy::AdminState;
        let base = snapshot("");
        let states = [
            base.clone(),
            base.with_admin(1, AdminState::Drained),
            base.with_health(0, false).with_load(2, Some(0.95)),
            base.with_load(0, Some(0.5)).with_load(1, Some(0.1)),
            base.with_admin(0, AdminState::Drained)
                .with_admin(1, AdminState::Drained)
                .with_admin(2, AdminState::Drained),
            base.with_service_down(0, 0, true),
            base.with_service_down(1, 0, true)
                .with_service_down(0, 0, true)
                .with_load(2, Some(0.95)),
        ];
        for (n, snap) in states.iter().enumerate() {
            for third in 0..=255u8 {
                for client in [
                    format!("100.64.{third}.9"),
                    format!("2001:db8:ff{third:02x}::1"),
                    format!("{third}.1.2.3"),
                ] {
                    let addr = client.parse().unwrap();
                    let full = snap.route(0, addr);
                    for (k, rtype) in
                        (1..=3).flat_map(|k| [(k, RecordType::A), (k, RecordType::AAAA)])
                    {
                        let first = snap.route_first(0, addr, k, rtype);
                        let want: Vec<usize> = full
                            .ranking
                            .order
                            .iter()
                            .copied()
                            .filter(|&pop| !snap.geo_records(0, pop, rtype).is_empty())
                            .take(k)
                            .collect();
                        assert_eq!(
                            first.ranking.order, want,
                            "state {n} client {client} k={k} {rtype}"
                        );
                        assert_eq!(first.block, full.block);
                        assert_eq!(first.ranking.failed_open, full.ranking.failed_open);
                    }
                }
            }
        }
    }
}
