//! [P] The UDP fast path's wire format: a strict parser for the common query, and an encoder
//! that writes a response into a buffer the caller keeps, allocation-free once warm.
//!
//! The parser takes only what the fast path answers: one question of class IN, no records
//! but one OPT of version 0 whose options it understands, nothing after. Anything else is
//! left to hickory's parser (the caller falls through), which stays the parser of record.
//!
//! The encoder produces exactly the bytes hickory's encoder produces for the same message
//! (`dns::fast` tests that on a corpus), with one difference on hickory's side made good
//! there: hickory stores the question for name compression with its type and class
//! attached, so no later name ever matches it. Both paths therefore seed the compression
//! table with the question name's suffixes first (see `handler::seed_question`), and the
//! answer's owner name becomes a pointer to the question, as in every other server.

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{LowerName, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};

use super::ecs;

/// Length of the DNS header.
pub const HEADER_LEN: usize = 12;
/// OPT's record type.
const OPT: u16 = 41;
/// EDNS option code of DNS Cookies (RFC 7873).
pub const COOKIE_OPTION: u16 = 10;
/// EDNS option code of NSID (RFC 5001).
pub const NSID_OPTION: u16 = 3;
/// Compression candidates hickory keeps per message (`COMPRESSION_CANDIDATE_LIMIT`).
const CANDIDATE_LIMIT: usize = 64;
/// Names hickory compresses per message (`COMPRESSED_NAME_LIMIT`); later ones are written
/// whole.
const COMPRESSED_NAME_LIMIT: usize = 120;
/// Stored candidates only point below this offset (a pointer holds 14 bits).
const POINTER_LIMIT: usize = 0x3FFF;

/// A query the fast path answers, borrowed from the received bytes.
#[derive(Debug)]
pub struct Query<'m> {
    /// Message ID.
    pub id: u16,
    /// Recursion desired (echoed).
    pub rd: bool,
    /// The question as sent: name, type, class.
    pub question: &'m [u8],
    /// The question's name in wire form (labels and the final zero), as sent.
    pub qname: &'m [u8],
    /// The question's type.
    pub qtype: RecordType,
    /// The OPT record, if the query had one.
    pub edns: Option<QueryEdns<'m>>,
}

/// What the fast path reads from a query's OPT record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueryEdns<'m> {
    /// The requestor's UDP payload size.
    pub payload: u16,
    /// The client subnet (RFC 7871), strictly checked.
    pub subnet: Option<ecs::ClientSubnet>,
    /// The COOKIE option's data (RFC 7873), unchecked.
    pub cookie: Option<&'m [u8]>,
    /// The DO bit (RFC 3225), copied into the response.
    pub dnssec_ok: bool,
    /// Whether the query asks for the NSID (RFC 5001: an empty option).
    pub nsid: bool,
}

fn u16_at(msg: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*msg.get(at)?, *msg.get(at + 1)?]))
}

/// Parses `msg` if the fast path can answer it; `None` leaves it to hickory.
pub fn parse(msg: &[u8]) -> Option<Query<'_>> {
    let header: &[u8; HEADER_LEN] = msg.get(..HEADER_LEN)?.try_into().ok()?;
    let word = |i: usize| u16::from_be_bytes([header[2 * i], header[2 * i + 1]]);
    let flags = word(1);
    // QR clear, OPCODE QUERY.
    if flags & 0xF800 != 0 {
        return None;
    }
    let counts = (word(2), word(3), word(4), word(5));
    let (1, 0, 0, additional @ (0 | 1)) = counts else {
        return None;
    };
    // The name: plain labels only (no pointers), then type and class.
    let mut pos = HEADER_LEN;
    loop {
        let len = usize::from(*msg.get(pos)?);
        if len > 63 {
            return None;
        }
        pos += 1 + len;
        if len == 0 {
            break;
        }
    }
    if pos - HEADER_LEN > 255 {
        return None;
    }
    let qtype = u16_at(msg, pos)?;
    let qclass = u16_at(msg, pos + 2)?;
    // Meta types and OPT are hickory's; class IN only.
    if qclass != 1 || qtype == 0 || qtype == OPT || (128..255).contains(&qtype) {
        return None;
    }
    let question = msg.get(HEADER_LEN..pos + 4)?;
    let qname = &msg[HEADER_LEN..pos];
    pos += 4;
    let edns = if additional == 1 {
        let (edns, end) = parse_opt(msg, pos)?;
        pos = end;
        Some(edns)
    } else {
        None
    };
    if pos != msg.len() {
        return None;
    }
    Some(Query {
        id: word(0),
        rd: flags & 0x0100 != 0,
        question,
        qname,
        qtype: RecordType::from(qtype),
        edns,
    })
}

/// The OPT record at `pos`: root owner, version 0, options ECS (valid, once), COOKIE
/// (once) and NSID (empty, once) only.
fn parse_opt(msg: &[u8], pos: usize) -> Option<(QueryEdns<'_>, usize)> {
    if *msg.get(pos)? != 0 || u16_at(msg, pos + 1)? != OPT {
        return None;
    }
    let payload = u16_at(msg, pos + 3)?;
    // TTL: extended RCODE, VERSION, flags; a version above 0 gets BADVERS from hickory's side.
    if *msg.get(pos + 6)? != 0 {
        return None;
    }
    let rdlen = usize::from(u16_at(msg, pos + 9)?);
    let end = pos + 11 + rdlen;
    let mut options = msg.get(pos + 11..end)?;
    let mut edns = QueryEdns {
        payload,
        subnet: None,
        cookie: None,
        dnssec_ok: *msg.get(pos + 7)? & 0x80 != 0,
        nsid: false,
    };
    while !options.is_empty() {
        let code = u16_at(options, 0)?;
        let len = usize::from(u16_at(options, 2)?);
        let data = options.get(4..4 + len)?;
        match code {
            ecs::OPTION_CODE if edns.subnet.is_none() => {
                edns.subnet = Some(ecs::parse_option(data).ok()?);
            }
            COOKIE_OPTION if edns.cookie.is_none() => edns.cookie = Some(data),
            NSID_OPTION if !edns.nsid && data.is_empty() => edns.nsid = true,
            _ => return None,
        }
        options = &options[4 + len..];
    }
    Some((edns, end))
}

/// The length of the message at the start of `msg`, walking its names and records' lengths
/// only (no data checked); `None` if it ends inside a name or a record.
pub fn message_len(msg: &[u8]) -> Option<usize> {
    let count = |at: usize| u16_at(msg, at).map(usize::from);
    let (questions, records) = (count(4)?, count(6)? + count(8)? + count(10)?);
    let skip_name = |mut pos: usize| -> Option<usize> {
        loop {
            let len = *msg.get(pos)?;
            match len {
                0 => return Some(pos + 1),
                // A pointer ends the name.
                0xC0..=0xFF => return msg.get(pos + 1).map(|_| pos + 2),
                1..=63 => pos += 1 + usize::from(len),
                _ => return None,
            }
        }
    };
    let mut pos = HEADER_LEN;
    for _ in 0..questions {
        pos = skip_name(pos)? + 4;
    }
    for _ in 0..records {
        pos = skip_name(pos)? + 8;
        pos += 2 + usize::from(u16_at(msg, pos)?);
    }
    (pos <= msg.len()).then_some(pos)
}

/// Decodes a name in wire form (as [`parse`] checked it: plain labels), lower-cased.
pub fn lower_name(wire: &[u8]) -> Option<LowerName> {
    LowerName::read(&mut BinDecoder::new(wire)).ok()
}

/// Names decoded lately, so that a name asked again and again is decoded once: a
/// direct-mapped table keyed by the name's wire form, compared without regard to case.
#[derive(Debug, Default)]
pub struct NameMemo {
    slots: Vec<Option<(Box<[u8]>, LowerName)>>,
}

/// Slots of a [`NameMemo`].
const MEMO_SLOTS: usize = 64;

impl NameMemo {
    /// The lower-cased name of `wire` (a name [`parse`] checked).
    pub fn get(&mut self, wire: &[u8]) -> Option<LowerName> {
        if self.slots.is_empty() {
            self.slots.resize(MEMO_SLOTS, None);
        }
        // FNV-1a over the lower-cased bytes.
        let hash = wire.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b.to_ascii_lowercase())).wrapping_mul(0x0100_0000_01b3)
        });
        // INVARIANT: the modulo keeps the index in range.
        let slot = &mut self.slots[(hash % MEMO_SLOTS as u64) as usize];
        if let Some((key, name)) = slot
            && key.eq_ignore_ascii_case(wire)
        {
            return Some(name.clone());
        }
        let name = lower_name(wire)?;
        *slot = Some((wire.into(), name.clone()));
        Some(name)
    }
}

/// The header fields of a response.
#[derive(Clone, Copy, Debug)]
pub struct Head {
    /// Message ID.
    pub id: u16,
    /// RD, echoed. CD is never set, as Knot answers: Sparrow does no DNSSEC, so the bit
    /// (a Z bit to RFC 1035) means nothing here; RFC 4035 3.1.6's copy is for
    /// security-aware servers.
    pub rd: bool,
    /// AA.
    pub aa: bool,
    /// TC.
    pub tc: bool,
    /// Response code (its low four bits go in the header).
    pub rcode: ResponseCode,
    /// Records in the answer section.
    pub answers: u16,
    /// Records in the authority section.
    pub authority: u16,
    /// Records in the additional section.
    pub additional: u16,
}

/// The name-compression table of one message, built as hickory builds it.
#[derive(Debug, Default)]
struct Names {
    /// The stored candidates' label bytes, one after the other.
    arena: Vec<u8>,
    /// Candidates in the order stored: (offset in the message, range in `arena`); a
    /// candidate without a range never matches (hickory's question entry).
    entries: Vec<(u16, u32, u32)>,
    /// Names written so far in compressed mode.
    compressed: usize,
}

impl Names {
    fn clear(&mut self) {
        self.arena.clear();
        self.entries.clear();
        self.compressed = 0;
    }

    /// Stores `out[start..end]` as a candidate at `start`, if hickory would (`out.len()` is
    /// the encoder's offset at that moment).
    fn store(&mut self, out: &[u8], start: usize, end: usize) {
        if out.len() < POINTER_LIMIT && self.entries.len() < CANDIDATE_LIMIT {
            let from = self.arena.len();
            self.arena.extend_from_slice(&out[start..end]);
            // INVARIANT: start < out.len() < POINTER_LIMIT, and the arena holds at most
            // CANDIDATE_LIMIT names of at most 255 bytes.
            self.entries
                .push((start as u16, from as u32, self.arena.len() as u32));
        }
    }

    /// A candidate that never matches (occupies a slot, as hickory's question entry does).
    fn store_dead(&mut self, out: &[u8], start: usize) {
        if out.len() < POINTER_LIMIT && self.entries.len() < CANDIDATE_LIMIT {
            // INVARIANT: start < POINTER_LIMIT.
            self.entries.push((start as u16, 0, 0));
        }
    }

    fn find(&self, labels: &[u8]) -> Option<u16> {
        self.entries
            .iter()
            .find(|&&(_, from, to)| to > from && &self.arena[from as usize..to as usize] == labels)
            .map(|&(at, _, _)| at)
    }
}

/// A point of a message an [`Encoder`] can go back to ([`Encoder::rewind`]).
#[derive(Clone, Copy, Debug)]
pub struct Mark {
    out: usize,
    entries: usize,
    arena: usize,
    compressed: usize,
}

/// Writes a response into a buffer it keeps between messages.
#[derive(Debug, Default)]
pub struct Encoder {
    out: Vec<u8>,
    names: Names,
    /// Where each label of the name being written starts.
    label_starts: Vec<usize>,
}

impl Encoder {
    /// The message written so far.
    pub fn bytes(&self) -> &[u8] {
        &self.out
    }

    /// Starts a response to `query`: room for the header, the question as sent, and the
    /// compression table seeded with the question name's suffixes.
    pub fn begin(&mut self, question: &[u8]) {
        self.out.clear();
        self.names.clear();
        self.out.extend_from_slice(&[0; HEADER_LEN]);
        self.out.extend_from_slice(question);
        let name_end = HEADER_LEN + question.len() - 5;
        let mut at = HEADER_LEN;
        let out = std::mem::take(&mut self.out);
        while at < name_end {
            self.names.store(&out[..name_end], at, name_end);
            at += 1 + usize::from(out[at]);
        }
        self.out = out;
        // hickory then stores the whole question (type and class included) as one more
        // candidate, which no name can match.
        self.names.store_dead(&self.out, HEADER_LEN);
    }

    /// Where the message is now.
    pub fn mark(&self) -> Mark {
        Mark {
            out: self.out.len(),
            entries: self.names.entries.len(),
            arena: self.names.arena.len(),
            compressed: self.names.compressed,
        }
    }

    /// Back to `mark`, the compression table too: as if nothing had been written since
    /// (what hickory's encoder gives for the message without those records).
    pub fn rewind(&mut self, mark: Mark) {
        self.out.truncate(mark.out);
        self.names.entries.truncate(mark.entries);
        self.names.arena.truncate(mark.arena);
        self.names.compressed = mark.compressed;
    }

    /// Starts a response to `query` that names nothing after the question (its records
    /// come encoded, [`Self::extend`]): room for the header and the question as sent, no
    /// compression table.
    pub fn begin_unseeded(&mut self, question: &[u8]) {
        self.out.clear();
        self.names.clear();
        self.out.extend_from_slice(&[0; HEADER_LEN]);
        self.out.extend_from_slice(question);
    }

    /// Appends bytes encoded beforehand (`dns::table`).
    pub fn extend(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }

    /// Cuts the message back to `len` bytes (header and question kept). Only for dropping
    /// records before the OPT record is written; the compression table keeps its entries,
    /// which then point at nothing the OPT record can use.
    pub fn truncate(&mut self, len: usize) {
        self.out.truncate(len);
    }

    /// Writes the header over the room left by [`Self::begin`].
    pub fn head(&mut self, h: &Head) {
        let mut flags: u16 = 0x8000 | u16::from(h.rcode.low());
        for (bit, on) in [(0x0400, h.aa), (0x0200, h.tc), (0x0100, h.rd)] {
            if on {
                flags |= bit;
            }
        }
        let mut header = [0u8; HEADER_LEN];
        for (i, v) in [h.id, flags, 1, h.answers, h.authority, h.additional]
            .into_iter()
            .enumerate()
        {
            header[2 * i..2 * i + 2].copy_from_slice(&v.to_be_bytes());
        }
        self.out[..HEADER_LEN].copy_from_slice(&header);
    }

    /// Writes `labels` as a name, compressed as hickory compresses.
    fn name<'l>(&mut self, labels: impl Iterator<Item = &'l [u8]>) -> Option<()> {
        let compression = self.names.compressed < COMPRESSED_NAME_LIMIT;
        let start = self.out.len();
        self.label_starts.clear();
        for label in labels {
            if label.len() > 63 {
                return None;
            }
            self.label_starts.push(self.out.len());
            // INVARIANT: checked above.
            self.out.push(label.len() as u8);
            self.out.extend_from_slice(label);
        }
        let last = self.out.len();
        if compression {
            self.names.compressed += 1;
        }
        for i in 0..self.label_starts.len() {
            let at = self.label_starts[i];
            if compression
                && let Some(loc) = self.names.find(&self.out[at..last])
                && loc & 0xC000 == 0
            {
                self.out.truncate(at);
                self.out.extend_from_slice(&(0xC000 | loc).to_be_bytes());
                return Some(());
            }
            let (out, names) = (&self.out, &mut self.names);
            names.store(out, at, last);
        }
        self.out.push(0);
        (self.out.len() - start <= 255).then_some(())
    }

    /// Writes one record, under `owner` instead of its own name if given; `None` if its
    /// data is of a type the fast path does not encode (the message is then unusable and
    /// the caller falls through).
    pub fn record(&mut self, r: &Record, owner: Option<&LowerName>) -> Option<()> {
        match owner {
            Some(owner) => self.name(owner.iter())?,
            None => self.name(r.name.iter())?,
        }
        self.u16(u16::from(r.record_type()));
        self.u16(u16::from(r.dns_class));
        self.out.extend_from_slice(&r.ttl.to_be_bytes());
        let len_at = self.out.len();
        self.u16(0);
        match &r.data {
            RData::A(a) => self.out.extend_from_slice(&a.0.octets()),
            RData::AAAA(a) => self.out.extend_from_slice(&a.0.octets()),
            RData::CNAME(n) => self.name(n.0.iter())?,
            RData::NS(n) => self.name(n.0.iter())?,
            RData::PTR(n) => self.name(n.0.iter())?,
            RData::MX(mx) => {
                self.u16(mx.preference);
                self.name(mx.exchange.iter())?;
            }
            RData::SOA(soa) => {
                self.name(soa.mname.iter())?;
                self.name(soa.rname.iter())?;
                for v in [soa.serial, soa.refresh as u32, soa.retry as u32] {
                    self.out.extend_from_slice(&v.to_be_bytes());
                }
                self.out
                    .extend_from_slice(&(soa.expire as u32).to_be_bytes());
                self.out.extend_from_slice(&soa.minimum.to_be_bytes());
            }
            RData::TXT(txt) => {
                for s in txt.txt_data.iter() {
                    let len = u8::try_from(s.len()).ok()?;
                    self.out.push(len);
                    self.out.extend_from_slice(s);
                }
            }
            _ => return None,
        }
        let len = u16::try_from(self.out.len() - len_at - 2).ok()?;
        self.out[len_at..len_at + 2].copy_from_slice(&len.to_be_bytes());
        Some(())
    }

    /// Writes the OPT record: `payload`, extended RCODE from `rcode`, the DO bit, and the
    /// options `options` writes (each with [`Self::option`]).
    pub fn opt(
        &mut self,
        payload: u16,
        rcode: ResponseCode,
        dnssec_ok: bool,
        options: impl FnOnce(&mut Self),
    ) {
        // The root name: hickory counts it as a compressed name.
        if self.names.compressed < COMPRESSED_NAME_LIMIT {
            self.names.compressed += 1;
        }
        let flags: u32 = if dnssec_ok { 0x8000 } else { 0 };
        let [t0, t1] = OPT.to_be_bytes();
        let [p0, p1] = payload.max(512).to_be_bytes();
        let [f0, f1, f2, f3] = ((u32::from(rcode.high()) << 24) | flags).to_be_bytes();
        // Owner (root), TYPE, CLASS (payload), TTL (extended RCODE, version, flags), RDLEN
        // (filled in below): one copy.
        self.out
            .extend_from_slice(&[0, t0, t1, p0, p1, f0, f1, f2, f3, 0, 0]);
        let len_at = self.out.len() - 2;
        options(self);
        // INVARIANT: the options written are a few dozen bytes.
        let len = (self.out.len() - len_at - 2) as u16;
        self.out[len_at..len_at + 2].copy_from_slice(&len.to_be_bytes());
    }

    /// Writes one EDNS option (inside [`Self::opt`]).
    pub fn option(&mut self, code: u16, parts: &[&[u8]]) {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let [c0, c1] = code.to_be_bytes();
        // INVARIANT: options are built from a few short parts.
        let [l0, l1] = (len as u16).to_be_bytes();
        self.out.extend_from_slice(&[c0, c1, l0, l1]);
        for p in parts {
            self.out.extend_from_slice(p);
        }
    }

    fn u16(&mut self, v: u16) {
        self.out.extend_from_slice(&v.to_be_bytes());
    }
}

/// The ECS option's data for the response: FAMILY, SOURCE PREFIX-LENGTH and ADDRESS as
/// in the query (RFC 7871 7.2.1), and `scope`; written into `buf`, returning the length.
pub fn ecs_data(subnet: &ecs::ClientSubnet, scope: u8, buf: &mut [u8; 20]) -> usize {
    let (family, octets, len): (u16, [u8; 16], usize) = match subnet.net.addr() {
        std::net::IpAddr::V4(a) => {
            let mut o = [0; 16];
            o[..4].copy_from_slice(&a.octets());
            (1, o, 4)
        }
        std::net::IpAddr::V6(a) => (2, a.octets(), 16),
    };
    let source = subnet.net.prefix_len();
    let n = usize::from(source).div_ceil(8).min(len);
    buf[..2].copy_from_slice(&family.to_be_bytes());
    buf[2] = source;
    buf[3] = scope;
    buf[4..4 + n].copy_from_slice(&octets[..n]);
    4 + n
}
