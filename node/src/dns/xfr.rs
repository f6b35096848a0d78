//! [P] Zone transfers out (AXFR, RFC 5936; IXFR, RFC 1995) of the static zone.
//!
//! - Over TCP only; over UDP both get NOTIMP (as Knot answers AXFR over UDP).
//! - Who: a client whose address is in `[zone] allow_transfer` and, when `transfer_tsig`
//!   names a key, whose query is signed with it (`config::transfer`); others get REFUSED, a
//!   name that is not the zone's apex NOTAUTH. A signed query is checked first (`dns::tsig`:
//!   NOTAUTH with BADKEY, BADSIG or BADTIME), and every answer to a valid one is signed.
//! - IXFR: no history is kept, so a client whose serial is older gets the whole zone in
//!   AXFR form (RFC 1995 section 4), and one whose serial is ours or newer gets the SOA alone
//!   (section 2: it is up to date).
//! - What: the SOA, every static record, then the SOA again, split into messages of at most
//!   [`MESSAGE_BUDGET`] octets (well under TCP's 64 KiB), the question in the first only.
//! - Geo names: each carries the answer the node gives when cut off from its cluster, the
//!   addresses of its own POP (or, for a name the own POP does not serve, of the first POP
//!   of the name that has addresses of that family) with the geo name's TTL. A secondary
//!   thus answers as a Sparrow node in local-only mode would: never NXDOMAIN for a name the
//!   zone has, never a health-dependent answer frozen until the next serial. A change of
//!   POP addresses reaches secondaries only with a new serial, like any edit.

use std::net::IpAddr;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME};
use hickory_proto::rr::{DNSClass, LowerName, RData, Record, RecordType};
use hickory_proto::serialize::binary::BinEncodable;

use super::tsig::{self, Verdict};
use crate::config::{Config, Target, TransferSettings, TsigKey};

/// Largest transfer message sent: 16 KiB, as Knot sends them; each is still far below
/// TCP's 65,535, and a secondary can store records while the rest come.
pub const MESSAGE_BUDGET: usize = 16 * 1024;

/// The type of the only question of `msg` when it is an AXFR or IXFR query, read from the
/// wire without decoding the whole message (TCP handles every query through here).
pub fn transfer_type(msg: &[u8]) -> Option<RecordType> {
    // A query (QR clear, opcode 0) with one question.
    if msg.len() < 12 || msg[2] & 0xf8 != 0 || msg[4..6] != [0, 1] {
        return None;
    }
    let mut pos = 12;
    loop {
        let len = usize::from(*msg.get(pos)?);
        if len == 0 {
            pos += 1;
            break;
        }
        if len & 0xc0 != 0 {
            return None;
        }
        pos += 1 + len;
    }
    match u16::from_be_bytes([*msg.get(pos)?, *msg.get(pos + 1)?]) {
        251 => Some(RecordType::IXFR),
        252 => Some(RecordType::AXFR),
        _ => None,
    }
}

/// How a transfer query ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The zone, in these messages.
    Transfer(Vec<Vec<u8>>),
    /// One error response (REFUSED, NOTAUTH, NOTIMP, FORMERR).
    Refused(ResponseCode, Vec<u8>),
}

impl Outcome {
    /// The messages to send, in order.
    pub fn into_messages(self) -> Vec<Vec<u8>> {
        match self {
            Self::Transfer(m) => m,
            Self::Refused(_, m) => vec![m],
        }
    }
}

/// The answer to `msg` (a message [`transfer_type`] recognised), from `client` over TCP when
/// `tcp`, from `config`'s zone, at `now` (seconds since the Unix epoch, for TSIG).
pub fn respond(
    msg: &[u8],
    client: IpAddr,
    tcp: bool,
    config: &Config,
    now: u64,
) -> Option<Outcome> {
    let query = Message::from_vec(msg).ok()?;
    let question = query.queries.first()?.clone();
    let mut signer = None;
    if let Some(sig) = tsig::signature(msg) {
        match tsig::verify(&sig, config.tsig_keys(), now) {
            Verdict::Valid(s) => signer = Some(s),
            Verdict::Invalid {
                error,
                signer: Some(mut s),
                ..
            } => {
                let answer = tsig::error_answer(&query, ResponseCode::NotAuth)?;
                let signed = s.sign(&answer, Some(error), tsig::other_time(now))?;
                return Some(Outcome::Refused(ResponseCode::NotAuth, signed));
            }
            Verdict::Invalid {
                record,
                signer: None,
                ..
            } => {
                let answer = tsig::error_answer(&query, ResponseCode::NotAuth)?;
                let answer = match record {
                    Some(r) => tsig::append_record(&answer, &r)?,
                    None => answer,
                };
                return Some(Outcome::Refused(ResponseCode::NotAuth, answer));
            }
        }
    }
    // The zone: the one whose apex is asked for (NOTAUTH otherwise, below).
    let zone = config.zones.get(&LowerName::from(question.name()));
    let no_settings = TransferSettings::default();
    let settings = zone
        .and_then(|z| config.transfer_of(z.origin()))
        .unwrap_or(&no_settings);
    let key_ok = match (&settings.tsig, &signer) {
        (None, _) => true,
        (Some(required), Some(s)) => s.key().name == required.name,
        (Some(_), None) => false,
    };
    let mut error = |code: ResponseCode| {
        let answer = tsig::error_answer(&query, code)?;
        let answer = match &mut signer {
            Some(s) => s.sign(&answer, None, Vec::new())?,
            None => answer,
        };
        Some(Outcome::Refused(code, answer))
    };
    if !tcp {
        return error(ResponseCode::NotImp);
    }
    if question.query_class() != DNSClass::IN {
        return error(ResponseCode::Refused);
    }
    let Some(zone) = zone else {
        return error(ResponseCode::NotAuth);
    };
    if !settings.allows(client) || !key_ok {
        return error(ResponseCode::Refused);
    }
    let soa = zone.soa();
    let up_to_date = question.query_type() == RecordType::IXFR && client_is_current(&query, soa);
    let mut records: Vec<&Record> = vec![soa];
    let geo = geo_records(config, zone.origin());
    if !up_to_date {
        records.extend(
            zone.records()
                .into_iter()
                .filter(|r| r.record_type() != RecordType::SOA),
        );
        records.extend(geo.iter());
        records.push(soa);
    }
    let mut messages = split(&query, &question, &records, MESSAGE_BUDGET)?;
    if let Some(s) = &mut signer {
        messages = messages
            .iter()
            .map(|m| s.sign(m, None, Vec::new()))
            .collect::<Option<Vec<_>>>()?;
    }
    Some(Outcome::Transfer(messages))
}

/// Whether an IXFR query's SOA (authority section) has our serial or a newer one.
fn client_is_current(query: &Message, ours: &Record) -> bool {
    let (Some(ours), Some(theirs)) = (serial(ours), query.authorities.iter().find_map(serial))
    else {
        return false;
    };
    // RFC 1982: theirs >= ours.
    theirs.wrapping_sub(ours) < 0x8000_0000
}

/// The records of the geo names of zone `origin` in a transfer: the own POP's targets (its
/// addresses for the name, or its CNAME; see the module doc).
pub fn geo_records(config: &Config, origin: &LowerName) -> Vec<Record> {
    let own = config.node.pop;
    let mut out = Vec::new();
    let in_zone = |name: &hickory_proto::rr::Name| {
        config
            .zones
            .find(&LowerName::from(name))
            .is_some_and(|z| z.origin() == origin)
    };
    for g in config.geo.iter().filter(|g| in_zone(&g.name)) {
        let pick = |has: &dyn Fn(usize) -> bool| {
            if g.pops.contains(&own) && has(own) {
                Some(own)
            } else {
                g.pops.iter().copied().find(|p| has(*p))
            }
        };
        // A CNAME service: the own POP's CNAME (or the first POP's that serves the name).
        if let Some(p) = pick(&|p| matches!(g.targets[p], Target::Cname(_)))
            && let Target::Cname(target) = &g.targets[p]
        {
            out.push(Record::from_rdata(
                g.name.clone(),
                g.ttl,
                RData::CNAME(CNAME(target.clone())),
            ));
            continue;
        }
        let v4 = |p: usize| match &g.targets[p] {
            Target::Addresses { v4, .. } => v4.as_slice(),
            Target::Cname(_) => &[],
        };
        let v6 = |p: usize| match &g.targets[p] {
            Target::Addresses { v6, .. } => v6.as_slice(),
            Target::Cname(_) => &[],
        };
        if let Some(p) = pick(&|p| !v4(p).is_empty()) {
            for ip in v4(p) {
                out.push(Record::from_rdata(g.name.clone(), g.ttl, RData::A(A(*ip))));
            }
        }
        if let Some(p) = pick(&|p| !v6(p).is_empty()) {
            for ip in v6(p) {
                out.push(Record::from_rdata(
                    g.name.clone(),
                    g.ttl,
                    RData::AAAA(AAAA(*ip)),
                ));
            }
        }
    }
    out
}

/// `records` as transfer messages of at most `budget` octets each (a record larger than
/// the budget goes alone). A record's size alone, uncompressed, bounds what it adds to a
/// message, so the sum of those bounds keeps each message within the budget.
fn split(
    query: &Message,
    question: &Query,
    records: &[&Record],
    budget: usize,
) -> Option<Vec<Vec<u8>>> {
    let question_len = question.to_bytes().ok()?.len();
    let new_message = |first: bool| {
        let mut m = Message::new(query.metadata.id, MessageType::Response, OpCode::Query);
        m.metadata.authoritative = true;
        m.metadata.response_code = ResponseCode::NoError;
        if first {
            m.add_query(question.clone());
        }
        m
    };
    let mut out = Vec::new();
    let mut current = new_message(true);
    let mut size = 12 + question_len;
    for record in records {
        let len = record.to_bytes().ok()?.len();
        if !current.answers.is_empty() && size + len > budget {
            out.push(current.to_vec().ok()?);
            current = new_message(false);
            size = 12;
        }
        size += len;
        current.add_answer((*record).clone());
    }
    out.push(current.to_vec().ok()?);
    Some(out)
}

/// A NOTIFY (RFC 1996 section 3.7) for the zone whose SOA is `soa`: the apex's SOA in the
/// question, and the SOA itself in the answer as a hint; signed with `key` if given.
pub fn notify_message(id: u16, soa: &Record, key: Option<&TsigKey>, now: u64) -> Option<Vec<u8>> {
    let mut m = Message::new(id, MessageType::Query, OpCode::Notify);
    m.metadata.authoritative = true;
    let mut question = Query::query(soa.name.clone(), RecordType::SOA);
    question.set_query_class(DNSClass::IN);
    m.add_query(question);
    m.add_answer(soa.clone());
    let bytes = m.to_vec().ok()?;
    match key {
        Some(key) => tsig::Signer::request(key, now).sign(&bytes, None, Vec::new()),
        None => Some(bytes),
    }
}

/// Whether `response` acknowledges the NOTIFY `id` (a NOTIFY response, any code; the code
/// is returned).
pub fn notify_ack(response: &[u8], id: u16) -> Option<ResponseCode> {
    let m = Message::from_vec(response).ok()?;
    let ok = m.metadata.id == id
        && m.metadata.message_type == MessageType::Response
        && m.metadata.op_code == OpCode::Notify;
    ok.then_some(m.metadata.response_code)
}

/// The serial of an SOA record.
pub fn serial(soa: &Record) -> Option<u32> {
    match &soa.data {
        RData::SOA(s) => Some(s.serial),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
