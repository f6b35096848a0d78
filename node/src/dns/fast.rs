//! [P] The fast path: a query's bytes in, a response's bytes out, for the queries
//! [`wire::parse`] takes. Same answers as the hickory path (`handler`), byte for byte; no
//! allocation for geo and static names once a worker's buffers have grown.
//!
//! A question in the config's [`AnswerTable`] (built here, [`build_table`]) is answered
//! from its precomputed bytes: one hash lookup of the name's wire form, then the decision
//! for a geo name; any other goes through [`answer::answer`] and the encoder.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{LowerName, Record, RecordType};

use super::answer::{self, Client, Sink};
use super::cookie::{self, Cookie};
use super::table::{AnswerTable, Encoded, Entry, Fragment};
use super::wire::{self, Encoder, HEADER_LEN, Head, Query};
use crate::snapshot::Snapshot;

/// What one worker reuses from query to query.
#[derive(Debug, Default)]
pub struct Worker {
    encoder: Encoder,
    scratch: answer::Scratch,
    names: wire::NameMemo,
    /// The POP order of a geo answer from the table.
    order: Vec<usize>,
}

/// A question's name as sent (wire form); displayed decoded and lower-cased.
#[derive(Clone, Copy, Debug)]
pub struct QName<'m>(pub &'m [u8]);

impl fmt::Display for QName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match wire::lower_name(self.0) {
            Some(name) => name.fmt(f),
            None => f.write_str("?"),
        }
    }
}

/// A query the fast path answered: what the metrics and the log need.
#[derive(Debug)]
pub struct Answered<'m> {
    /// The question's name.
    pub qname: QName<'m>,
    /// The question's type.
    pub qtype: RecordType,
    /// The response code sent.
    pub rcode: ResponseCode,
    /// For a geo answer, the POP first in it.
    pub geo_pop: Option<usize>,
    /// For a geo answer, its service.
    pub geo_service: Option<usize>,
    /// Whether the query carried a client subnet.
    pub ecs: bool,
    /// Whether the response was truncated (TC, no records).
    pub truncated: bool,
    /// Whether the query carried a valid server cookie (its source is not spoofed).
    pub cookie_valid: bool,
    /// Whether the records came precomputed from the [`AnswerTable`].
    pub precomputed: bool,
}

/// How large a response may be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Size {
    /// As the client's EDNS payload size (or 512) allows.
    Udp,
    /// Truncated whatever its size (rate limiting's slip).
    Truncated,
    /// Up to 65,535 bytes, every additional set included (TCP).
    Tcp,
}

/// A response apart from its OPT record: what the answer path or the table gave.
#[derive(Clone, Copy, Debug)]
struct Done {
    rcode: ResponseCode,
    authoritative: bool,
    ecs_scope: Option<u8>,
    geo_pop: Option<usize>,
    geo_service: Option<usize>,
    /// Records in the answer, authority and additional sections.
    counts: [u16; 3],
    /// A required additional set (glue) did not fit: the response goes out truncated.
    overflow: bool,
    /// Whether it came from the [`AnswerTable`].
    precomputed: bool,
}

/// Encodes records as [`answer::answer`] hands them over; remembers a record it cannot
/// encode.
struct Encode<'e> {
    encoder: &'e mut Encoder,
    answers: u16,
    authority: u16,
    additional: u16,
    failed: bool,
    /// The largest message before the OPT record (additional sets that would pass it are
    /// left out).
    room: usize,
    /// A required additional set did not fit: the response is truncated.
    overflow: bool,
}

impl Encode<'_> {
    fn push(&mut self, r: &Record, owner: Option<&LowerName>) -> bool {
        if !self.failed && self.encoder.record(r, owner).is_none() {
            self.failed = true;
        }
        !self.failed
    }
}

impl<'a> Sink<'a> for Encode<'_> {
    fn answer(&mut self, record: &'a Record, owner: Option<&LowerName>) {
        if self.push(record, owner) {
            self.answers += 1;
        }
    }
    fn authority(&mut self, record: &'a Record) {
        if self.push(record, None) {
            self.authority += 1;
        }
    }
    fn additional(&mut self, set: &'a [Record], required: bool) {
        let mark = self.encoder.mark();
        for r in set {
            if !self.push(r, None) {
                return;
            }
        }
        if self.encoder.bytes().len() <= self.room {
            // INVARIANT: a set is a few records.
            self.additional += set.len() as u16;
        } else if required {
            self.overflow = true;
        } else {
            self.encoder.rewind(mark);
        }
    }
}

impl Worker {
    /// The response written by the last [`Self::respond`] that returned `Some`.
    pub fn response(&self) -> &[u8] {
        self.encoder.bytes()
    }

    /// Answers `msg` from `resolver` over UDP if the fast path takes it; `None` leaves it
    /// to the hickory path. `cookies`: the cookie secret and the clock (`None`: cookies are
    /// not answered); the clock is read only for a query with a cookie.
    pub fn respond<'m>(
        &mut self,
        snap: &Snapshot,
        msg: &'m [u8],
        resolver: IpAddr,
        cookies: Option<cookie::Context>,
    ) -> Option<Answered<'m>> {
        self.respond_inner(snap, msg, resolver, cookies, Size::Udp)
    }

    /// [`Self::respond`] for a query that came over TCP: the response may take up to
    /// 65,535 bytes whatever the client's EDNS payload size, and every additional set goes
    /// in (as the hickory path answers over TCP).
    pub fn respond_tcp<'m>(
        &mut self,
        snap: &Snapshot,
        msg: &'m [u8],
        resolver: IpAddr,
        cookies: Option<cookie::Context>,
    ) -> Option<Answered<'m>> {
        self.respond_inner(snap, msg, resolver, cookies, Size::Tcp)
    }

    /// [`Self::respond`], the response truncated whatever its size (TC, no records): what
    /// rate limiting lets through (`dns::rrl`, slip).
    pub fn respond_truncated<'m>(
        &mut self,
        snap: &Snapshot,
        msg: &'m [u8],
        resolver: IpAddr,
        cookies: Option<cookie::Context>,
    ) -> Option<Answered<'m>> {
        self.respond_inner(snap, msg, resolver, cookies, Size::Truncated)
    }

    fn respond_inner<'m>(
        &mut self,
        snap: &Snapshot,
        msg: &'m [u8],
        resolver: IpAddr,
        cookies: Option<cookie::Context>,
        size: Size,
    ) -> Option<Answered<'m>> {
        let q = wire::parse(msg)?;
        let client_cookie = match q.edns.and_then(|e| e.cookie).map(cookie::parse) {
            None => None,
            Some(Cookie::Client { client, server }) => Some((client, server)),
            // FORMERR, from the hickory path.
            Some(Cookie::Malformed) => return None,
        };
        let cookies = client_cookie.and(cookies).map(|c| (c.secret, (c.clock)()));
        let cookie_valid = match (client_cookie, cookies) {
            (Some((client, Some(server))), Some((secret, now))) => {
                cookie::is_valid(&secret, &client, server, resolver, now)
            }
            _ => false,
        };
        let subnet = q.edns.and_then(|e| e.subnet);
        let client = Client {
            resolver: resolver.to_canonical(),
            subnet: subnet.map(|s| s.net),
        };
        let max = snap.config.node.max_udp_payload;
        let payload = q.edns.map(|e| e.payload.clamp(512, max));
        let dnssec_ok = q.edns.is_some_and(|e| e.dnssec_ok);
        let nsid = match (&snap.config.node.nsid, q.edns.is_some_and(|e| e.nsid)) {
            (Some(nsid), true) => Some(nsid.as_slice()),
            _ => None,
        };
        let limit = match size {
            Size::Tcp => usize::from(u16::MAX),
            Size::Udp | Size::Truncated => usize::from(payload.unwrap_or(512)),
        };
        // The OPT record's size (an answer with additional records is never REFUSED, so
        // it has the ECS option whenever the query had one).
        let opt_len = match payload {
            None => 0,
            Some(_) => {
                11 + nsid.map_or(0, |n| 4 + n.len())
                    + subnet.map_or(0, |s| 8 + usize::from(s.net.prefix_len()).div_ceil(8))
                    + if client_cookie.is_some() && cookies.is_some() {
                        4 + 8 + 16
                    } else {
                        0
                    }
            }
        };
        // Over TCP no additional set is left out: only a message past 64 KiB is truncated.
        let room = match size {
            Size::Tcp => usize::MAX,
            Size::Udp | Size::Truncated => limit.saturating_sub(opt_len),
        };
        let done = match self.write_precomputed(snap, &q, client, room) {
            Some(done) => done,
            None => self.write_answered(snap, &q, client, room)?,
        };
        let write_opt = |encoder: &mut Encoder| {
            if payload.is_some() {
                // The node's own payload size, as Knot says; the client's bounds the
                // response (`limit`).
                encoder.opt(max, done.rcode, dnssec_ok, |e| {
                    if let Some(nsid) = nsid {
                        e.option(wire::NSID_OPTION, &[nsid]);
                    }
                    if let (Some(scope), Some(subnet)) = (done.ecs_scope, subnet) {
                        let mut data = [0; 20];
                        let n = wire::ecs_data(&subnet, scope, &mut data);
                        e.option(super::ecs::OPTION_CODE, &[&data[..n]]);
                    }
                    if let (Some((client, _)), Some((secret, now))) = (client_cookie, cookies) {
                        let server = cookie::server_cookie(&secret, &client, resolver, now);
                        e.option(wire::COOKIE_OPTION, &[&client, &server]);
                    }
                });
            }
        };
        write_opt(&mut self.encoder);
        let truncated =
            size == Size::Truncated || done.overflow || self.encoder.bytes().len() > limit;
        if truncated {
            // Truncated answers carry no records: the client retries over TCP anyway, and
            // a partial answer would only amplify.
            self.encoder.truncate(HEADER_LEN + q.question.len());
            write_opt(&mut self.encoder);
        }
        let [answers, authority, additional] = if truncated { [0; 3] } else { done.counts };
        self.encoder.head(&Head {
            id: q.id,
            rd: q.rd,
            aa: done.authoritative,
            tc: truncated,
            rcode: done.rcode,
            answers,
            authority,
            additional: additional + u16::from(payload.is_some()),
        });
        Some(Answered {
            qname: QName(q.qname),
            qtype: q.qtype,
            rcode: done.rcode,
            geo_pop: done.geo_pop,
            geo_service: done.geo_service,
            ecs: subnet.is_some(),
            truncated,
            cookie_valid,
            precomputed: done.precomputed,
        })
    }

    /// Writes the question and its records from the config's [`AnswerTable`], if it has
    /// them; `None` leaves the query to [`Self::write_answered`].
    /// `room`: the largest message before the OPT record; a response that would pass it
    /// takes the answer path, which leaves out additional sets that do not fit.
    fn write_precomputed(
        &mut self,
        snap: &Snapshot,
        q: &Query<'_>,
        client: Client,
        room: usize,
    ) -> Option<Done> {
        // The table's bytes compress against a lower-case question (see `dns::table`).
        if q.qname.iter().any(u8::is_ascii_uppercase) {
            return None;
        }
        let table = prepare(snap);
        match table.get(q.qname, q.qtype)? {
            Entry::Static(f) => {
                if HEADER_LEN + q.question.len() + f.bytes.len() > room {
                    return None;
                }
                self.encoder.begin_unseeded(q.question);
                self.encoder.extend(&f.bytes);
                Some(Done {
                    rcode: f.rcode,
                    authoritative: f.authoritative,
                    ecs_scope: answer::ecs_scope(None, client),
                    geo_pop: None,
                    geo_service: None,
                    counts: f.counts,
                    overflow: false,
                    precomputed: true,
                })
            }
            &Entry::Geo { geo, family } => {
                let count = usize::from(snap.config.geo[geo].answers);
                let (block, _) = snap.route_first_into(
                    geo,
                    client.decision_address(),
                    count,
                    q.qtype,
                    &mut self.order,
                );
                // No POP has an address of the family: NODATA, the answer path's.
                let first = *self.order.first()?;
                let local_only = snap.mode.is_local_only();
                self.encoder.begin_unseeded(q.question);
                let mut answers = 0;
                for &pop in &self.order {
                    let e = table.geo_records(geo, local_only, family, pop)?;
                    self.encoder.extend(&e.bytes);
                    answers += e.records;
                }
                Some(Done {
                    rcode: ResponseCode::NoError,
                    authoritative: true,
                    ecs_scope: answer::ecs_scope(Some(block.prefix_len()), client),
                    geo_pop: Some(first),
                    geo_service: Some(geo),
                    counts: [answers, 0, 0],
                    overflow: false,
                    precomputed: true,
                })
            }
        }
    }

    /// Writes the question and its records through [`answer::answer`]; `None` if a record
    /// cannot be encoded here (the hickory path's).
    fn write_answered(
        &mut self,
        snap: &Snapshot,
        q: &Query<'_>,
        client: Client,
        room: usize,
    ) -> Option<Done> {
        let qname = self.names.get(q.qname)?;
        self.encoder.begin(q.question);
        let mut sink = Encode {
            encoder: &mut self.encoder,
            answers: 0,
            authority: 0,
            additional: 0,
            failed: false,
            room,
            overflow: false,
        };
        let outcome = answer::answer(snap, &qname, q.qtype, client, &mut self.scratch, &mut sink);
        if sink.failed {
            return None;
        }
        Some(Done {
            rcode: outcome.rcode,
            authoritative: outcome.authoritative,
            ecs_scope: outcome.ecs_scope,
            geo_pop: outcome.geo_pop,
            geo_service: outcome.geo_service,
            counts: [sink.answers, sink.authority, sink.additional],
            overflow: sink.overflow,
            precomputed: false,
        })
    }
}

/// The config's [`AnswerTable`], built on first use; the state owner calls this before it
/// publishes a snapshot of a new config, so that no query waits for the build.
pub fn prepare(snap: &Snapshot) -> &AnswerTable {
    snap.answer_table().get_or_init(|| build_table(snap))
}

/// Types asked of every name (browsers ask HTTPS beside A and AAAA): kept in the table
/// even where the name has none (NODATA), beside the types each name has.
const ALWAYS_ASKED: [RecordType; 3] = [RecordType::A, RecordType::AAAA, RecordType::HTTPS];

/// Geo answers whose POPs together hold more records than this stay on the answer path:
/// the encoder compresses only the first 120 names of a message (as hickory), so beyond
/// that a record's bytes would depend on how many came before it.
const MAX_GEO_RECORDS: usize = 64;

/// The precomputed responses of `snap`'s config (see [`AnswerTable`]): for every name of
/// every zone, each type at it and those of [`ALWAYS_ASKED`], what [`answer::answer`] gives, if it is the
/// same for every client and encodable here; for every geo name, its records per POP.
pub fn build_table(snap: &Snapshot) -> AnswerTable {
    let mut table = AnswerTable::default();
    let mut encoder = Encoder::default();
    let mut scratch = answer::Scratch::default();
    // Any client: a response that depends on it is not kept.
    let client = Client {
        resolver: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        subnet: None,
    };
    let mut question = Vec::new();
    for zone in snap.config.zones.iter() {
        for name in zone.names() {
            let geo = snap.geo_index(name).is_some();
            let mut types = zone.types_at(name).to_vec();
            types.extend(ALWAYS_ASKED);
            types.sort_by_key(|t| u16::from(*t));
            types.dedup();
            for qtype in types {
                if geo && matches!(qtype, RecordType::A | RecordType::AAAA) {
                    continue;
                }
                if !write_question(name, qtype, &mut question) {
                    break;
                }
                encoder.begin(&question);
                // No size limit here: a response that does not fit a client's room takes
                // the answer path (`write_precomputed`).
                let mut sink = Encode {
                    encoder: &mut encoder,
                    answers: 0,
                    authority: 0,
                    additional: 0,
                    failed: false,
                    room: usize::MAX,
                    overflow: false,
                };
                let outcome = answer::answer(snap, name, qtype, client, &mut scratch, &mut sink);
                if sink.failed || sink.overflow || outcome.tailored {
                    continue;
                }
                let counts = [sink.answers, sink.authority, sink.additional];
                let fragment = Fragment {
                    rcode: outcome.rcode,
                    authoritative: outcome.authoritative,
                    counts,
                    bytes: encoder.bytes()[HEADER_LEN + question.len()..].into(),
                };
                table.insert(
                    &question[..question.len() - 4],
                    qtype,
                    Entry::Static(fragment),
                );
            }
        }
    }
    for (geo, g) in snap.config.geo.iter().enumerate() {
        let name = LowerName::from(&g.name);
        // Services with a CNAME per POP (chains may continue in the node's zones) or with
        // their own answer when every POP is down take the answer path.
        if snap.config.zones.find(&name).is_none()
            || g.is_cname()
            || !matches!(g.when_down, crate::config::WhenDown::FailOpen)
        {
            continue;
        }
        // [local_only][family]: every POP's records, if all could be encoded.
        let encoded = [false, true].map(|local_only| {
            [RecordType::A, RecordType::AAAA].map(|qtype| {
                if !write_question(&name, qtype, &mut question) {
                    return None;
                }
                let pops = 0..snap.config.pops.len();
                let records: Vec<&[Record]> = pops
                    .map(|pop| snap.geo_records_of(geo, pop, qtype, local_only))
                    .collect();
                if records.iter().map(|r| r.len()).sum::<usize>() > MAX_GEO_RECORDS {
                    return None;
                }
                records
                    .into_iter()
                    .map(|r| encode_geo(&mut encoder, &question, r))
                    .collect::<Option<Vec<Encoded>>>()
            })
        });
        for (family, qtype) in [RecordType::A, RecordType::AAAA].into_iter().enumerate() {
            if encoded.iter().all(|e| e[family].is_some())
                && write_question(&name, qtype, &mut question)
            {
                let wire = &question[..question.len() - 4];
                table.insert(wire, qtype, Entry::Geo { geo, family });
            }
        }
        table.set_geo(geo, encoded.map(|e| e.map(Option::unwrap_or_default)));
    }
    table
}

/// `name` (lower-cased), `qtype` and class IN as a question in wire form, into `out`;
/// false if the name cannot be written (no such name is in a config).
fn write_question(name: &LowerName, qtype: RecordType, out: &mut Vec<u8>) -> bool {
    out.clear();
    for label in name.iter() {
        let Ok(len) = u8::try_from(label.len()) else {
            return false;
        };
        out.push(len);
        out.extend(label.iter().map(u8::to_ascii_lowercase));
    }
    out.push(0);
    out.extend_from_slice(&u16::from(qtype).to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes());
    true
}

/// `records` encoded after `question`, if each one's owner is a pointer to the question
/// (so that their bytes do not depend on what precedes them); else `None`, and answers
/// that need them take the answer path.
fn encode_geo(encoder: &mut Encoder, question: &[u8], records: &[Record]) -> Option<Encoded> {
    encoder.begin(question);
    let start = encoder.bytes().len();
    for r in records {
        let at = encoder.bytes().len();
        encoder.record(r, None)?;
        let pointer = (0xC000 | HEADER_LEN as u16).to_be_bytes();
        if encoder.bytes().get(at..at + 2) != Some(&pointer[..]) {
            return None;
        }
    }
    Some(Encoded {
        records: u16::try_from(records.len()).ok()?,
        bytes: encoder.bytes()[start..].into(),
    })
}
