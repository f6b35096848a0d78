//! [P] The UDP fast path: a query's bytes in, a response's bytes out, for the queries
//! [`wire::parse`] takes. Same answers as the hickory path (`handler`), byte for byte; no
//! allocation for geo and static names once a worker's buffers have grown.

use std::net::IpAddr;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{LowerName, Record, RecordType};

use super::answer::{self, Client, Sink};
use super::cookie::{self, Cookie};
use super::wire::{self, Encoder, HEADER_LEN, Head};
use crate::snapshot::Snapshot;

/// What one worker reuses from query to query.
#[derive(Debug, Default)]
pub struct Worker {
    encoder: Encoder,
    scratch: answer::Scratch,
    names: wire::NameMemo,
}

/// A query the fast path answered: what the metrics and the log need.
#[derive(Debug)]
pub struct Answered {
    /// The question's name.
    pub qname: LowerName,
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
    /// to the hickory path. `cookies`: the cookie secret and the time in seconds since the
    /// Unix epoch (`None`: cookies are not answered).
    pub fn respond(
        &mut self,
        snap: &Snapshot,
        msg: &[u8],
        resolver: IpAddr,
        cookies: Option<([u8; 16], u32)>,
    ) -> Option<Answered> {
        self.respond_inner(snap, msg, resolver, cookies, false)
    }

    /// [`Self::respond`], the response truncated whatever its size (TC, no records): what
    /// rate limiting lets through (`dns::rrl`, slip).
    pub fn respond_truncated(
        &mut self,
        snap: &Snapshot,
        msg: &[u8],
        resolver: IpAddr,
        cookies: Option<([u8; 16], u32)>,
    ) -> Option<Answered> {
        self.respond_inner(snap, msg, resolver, cookies, true)
    }

    fn respond_inner(
        &mut self,
        snap: &Snapshot,
        msg: &[u8],
        resolver: IpAddr,
        cookies: Option<([u8; 16], u32)>,
        force_truncation: bool,
    ) -> Option<Answered> {
        let q = wire::parse(msg)?;
        let qname = self.names.get(q.qname)?;
        let client_cookie = match q.edns.and_then(|e| e.cookie).map(cookie::parse) {
            None => None,
            Some(Cookie::Client { client, server }) => Some((client, server)),
            // FORMERR, from the hickory path.
            Some(Cookie::Malformed) => return None,
        };
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
        let limit = usize::from(payload.unwrap_or(512));
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
        self.encoder.begin(q.question);
        let mut sink = Encode {
            encoder: &mut self.encoder,
            answers: 0,
            authority: 0,
            additional: 0,
            failed: false,
            room: limit.saturating_sub(opt_len),
            overflow: false,
        };
        let outcome = answer::answer(snap, &qname, q.qtype, client, &mut self.scratch, &mut sink);
        if sink.failed {
            return None;
        }
        let (answers, authority, additional) = (sink.answers, sink.authority, sink.additional);
        let overflow = sink.overflow;
        let write_opt = |encoder: &mut Encoder| {
            if payload.is_some() {
                // The node's own payload size, as Knot says; the client's bounds the
                // response (`limit`).
                encoder.opt(max, outcome.rcode, dnssec_ok, |e| {
                    if let Some(nsid) = nsid {
                        e.option(wire::NSID_OPTION, &[nsid]);
                    }
                    if let (Some(scope), Some(subnet)) = (outcome.ecs_scope, subnet) {
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
        let truncated = force_truncation || overflow || self.encoder.bytes().len() > limit;
        if truncated {
            // Truncated answers carry no records: the client retries over TCP anyway, and
            // a partial answer would only amplify.
            self.encoder.truncate(HEADER_LEN + q.question.len());
            write_opt(&mut self.encoder);
        }
        self.encoder.head(&Head {
            id: q.id,
            rd: q.rd,
            aa: outcome.authoritative,
            tc: truncated,
            rcode: outcome.rcode,
            answers: if truncated { 0 } else { answers },
            authority: if truncated { 0 } else { authority },
            additional: if truncated { 0 } else { additional } + u16::from(payload.is_some()),
        });
        Some(Answered {
            qname,
            qtype: q.qtype,
            rcode: outcome.rcode,
            geo_pop: outcome.geo_pop,
            geo_service: outcome.geo_service,
            ecs: subnet.is_some(),
            truncated,
            cookie_valid,
        })
    }
}
