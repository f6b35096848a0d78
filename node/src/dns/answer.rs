//! [P] What to answer: (query, client, snapshot) -> [`ResponsePlan`].
//!
//! The plan borrows every record from the snapshot; the edge only encodes it.

use std::net::IpAddr;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{LowerName, RData, Record, RecordType};
use ipnet::IpNet;

use crate::snapshot::Snapshot;

/// Longest CNAME chain followed inside the zone before giving up (a loop, most likely).
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
    fn decision_address(&self) -> IpAddr {
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
    /// Whether to set AA (everything in the zone; not REFUSED).
    pub authoritative: bool,
    /// Answer section.
    pub answers: Vec<&'a Record>,
    /// Authority section (the SOA of negative answers).
    pub authority: Vec<&'a Record>,
    /// ECS SCOPE PREFIX-LENGTH to return, when the query carried ECS.
    pub ecs_scope: Option<u8>,
}

impl<'a> ResponsePlan<'a> {
    fn refused() -> Self {
        Self {
            rcode: ResponseCode::Refused,
            authoritative: false,
            answers: Vec::new(),
            authority: Vec::new(),
            ecs_scope: None,
        }
    }
}

/// Plans the response to `qname`/`qtype` for `client`.
pub fn plan<'a>(
    snap: &'a Snapshot,
    qname: &LowerName,
    qtype: RecordType,
    client: Client,
) -> ResponsePlan<'a> {
    let zone = &snap.config.zone;
    if !zone.contains(qname) {
        return ResponsePlan::refused();
    }
    let mut answers: Vec<&Record> = Vec::new();
    // The most specific decision block that shaped the answer, for the ECS scope.
    let mut scope: Option<u8> = None;
    let mut name = qname.clone();
    for _ in 0..=MAX_CNAME_CHAIN {
        if let Some(geo) = snap.geo_index(&name)
            && matches!(qtype, RecordType::A | RecordType::AAAA | RecordType::ANY)
        {
            let (records, block_len) = geo_answer(snap, geo, qtype, client);
            answers.extend(records);
            scope = Some(block_len);
        }
        if qtype == RecordType::ANY {
            answers.extend(zone.rrsets_at(&name).into_iter().flatten());
            break;
        }
        if let Some(records) = zone.rrset(&name, qtype) {
            answers.extend(records);
            break;
        }
        match zone.rrset(&name, RecordType::CNAME) {
            Some([cname]) if qtype != RecordType::CNAME => {
                answers.push(cname);
                let RData::CNAME(target) = &cname.data else {
                    break;
                };
                let target = LowerName::from(&target.0);
                if !zone.contains(&target) {
                    // Out of zone: the resolver follows it.
                    return positive(answers, scope, client);
                }
                name = target;
            }
            _ => break,
        }
    }
    if answers
        .last()
        .is_some_and(|r| r.record_type() != RecordType::CNAME)
    {
        return positive(answers, scope, client);
    }
    // Nothing (more) at `name`: NODATA if it exists, NXDOMAIN if not (RFC 6604 for chains).
    let rcode = if zone.name_exists(&name) {
        ResponseCode::NoError
    } else {
        ResponseCode::NXDomain
    };
    ResponsePlan {
        rcode,
        authoritative: true,
        answers,
        authority: vec![zone.negative_soa()],
        ecs_scope: ecs_scope(scope, client),
    }
}

fn positive<'a>(answers: Vec<&'a Record>, scope: Option<u8>, client: Client) -> ResponsePlan<'a> {
    ResponsePlan {
        rcode: ResponseCode::NoError,
        authoritative: true,
        answers,
        authority: Vec::new(),
        ecs_scope: ecs_scope(scope, client),
    }
}

/// The ECS scope: the decision block's length when the answer depended on the client, 0
/// when it did not or the client asked for no tailoring (source /0, RFC 7871 7.1.2).
fn ecs_scope(scope: Option<u8>, client: Client) -> Option<u8> {
    match client.subnet {
        None => None,
        Some(net) if net.prefix_len() == 0 => Some(0),
        Some(_) => Some(scope.unwrap_or(0)),
    }
}

/// The A/AAAA records of the best POPs for the client, and the decision block's length.
fn geo_answer(
    snap: &Snapshot,
    geo: usize,
    qtype: RecordType,
    client: Client,
) -> (Vec<&Record>, u8) {
    let routed = snap.route(geo, client.decision_address());
    let count = usize::from(snap.config.geo[geo].answers);
    let types: &[RecordType] = match qtype {
        RecordType::ANY => &[RecordType::A, RecordType::AAAA],
        RecordType::A => &[RecordType::A],
        _ => &[RecordType::AAAA],
    };
    let mut records = Vec::new();
    for &t in types {
        records.extend(
            routed
                .ranking
                .order
                .iter()
                .map(|&pop| snap.geo_records(geo, pop, t))
                .filter(|r| !r.is_empty())
                .take(count)
                .flatten(),
        );
    }
    (records, routed.block.prefix_len())
}
