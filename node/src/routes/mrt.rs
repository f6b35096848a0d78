//! [P] MRT RIB dumps (TABLE_DUMP_V2, RFC 6396) -> one POP's route view.
//!
//! A dump holds the routes of one or more BGP peers: a collector (RouteViews, RIPE RIS, a GoBGP
//! or BIRD box) records every peer it has, a router that dumps its own table (BIRD's `mrt
//! dump`, OpenBGPD's `dump table`) records its neighbours. The config names the peer whose
//! routes make the POP's view, by address and/or AS number ([`PeerSelector`]); every peer that
//! matches contributes, so one router seen over an IPv4 and an IPv6 session is one selector.
//!
//! The bytes may be plain, gzip or bzip2 (found by their magic bytes, not the file name).
//! Records are framed and the PEER_INDEX_TABLE parsed by `bgpkit-parser`, and so are the path
//! attributes of the entries that belong to the selected peers (the other peers' entries are
//! skipped unparsed, which is what makes a 50-peer collector dump cheap).
//!
//! What is in the view: per prefix, the selected peer's AS path, flattened as
//! [`super::aspath`] says (AS_SET = 1 hop, confederations 0, AS4_PATH merged per RFC 6793,
//! leading copies of the POP's own ASN dropped). When two selected peers (or an ADD-PATH
//! dump) give one prefix several paths, the one with the fewest hops wins, then the lowest
//! peer index: deterministic, and the path BGP would most likely have chosen.
//!
//! Quirks of real dumps this handles:
//! - several PEER_INDEX_TABLEs in one file (BIRD writes one per table, e.g. `master4` and
//!   `master6`); each RIB record refers to the latest one before it;
//! - a blank placeholder peer (`0.0.0.0`, AS 0) at index 0 (BIRD);
//! - record types other than IPv4/IPv6 unicast RIBs (multicast, RIB_GENERIC, BGP4MP updates)
//!   are counted and ignored.
//!
//! Bad input loses nothing silently: an entry whose attributes do not parse, or whose prefix
//! is invalid, is skipped and counted with the reason; a truncated or corrupt record stops the
//! load there (MRT has no way to find the next record boundary) and is reported with how much
//! of the file was left unread. A file with no PEER_INDEX_TABLE, or none that names the
//! selected peer, is refused.

use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::net::IpAddr;

use bgpkit_parser::models::{
    AsPath, AsPathSegment, AsnLength, AttributeValue, EntryType, PeerIndexTable, TableDumpV2Message,
};
use bgpkit_parser::parser::bgp::attributes::parse_attributes;
use bgpkit_parser::{ParserError, chunk_mrt_record, parse_table_dump_v2_message};
use bytes::Bytes;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use super::aspath::{PathBuilder, Segment, SegmentKind, merge_as4_path};
use super::view::RouteView;

#[cfg(test)]
mod tests;
pub mod write;

/// TABLE_DUMP_V2 subtypes (RFC 6396 §4.3, RFC 8050 for ADD-PATH).
const PEER_INDEX_TABLE: u16 = 1;
const RIB_IPV4_UNICAST: u16 = 2;
const RIB_IPV6_UNICAST: u16 = 4;
const RIB_IPV4_UNICAST_ADDPATH: u16 = 8;
const RIB_IPV6_UNICAST_ADDPATH: u16 = 10;

/// Which peers of a dump make the view. At least one field is set (the config ensures it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerSelector {
    /// The peer's address as the dump records it.
    pub ip: Option<IpAddr>,
    /// The peer's AS number.
    pub asn: Option<u32>,
}

impl PeerSelector {
    fn matches(&self, ip: IpAddr, asn: u32) -> bool {
        self.ip.is_none_or(|want| want == ip) && self.asn.is_none_or(|want| want == asn)
    }
}

impl fmt::Display for PeerSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.ip, self.asn) {
            (Some(ip), Some(asn)) => write!(f, "{ip} AS{asn}"),
            (Some(ip), None) => write!(f, "{ip}"),
            (None, Some(asn)) => write!(f, "AS{asn}"),
            (None, None) => write!(f, "any peer"),
        }
    }
}

/// A dump that cannot give a view at all.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MrtError {
    /// The gzip or bzip2 layer is broken before any record could be read.
    #[error("cannot decompress ({format}): {reason}")]
    Decompress {
        /// `gzip` or `bzip2`.
        format: &'static str,
        /// What the decoder said.
        reason: String,
    },
    /// No PEER_INDEX_TABLE: not a TABLE_DUMP_V2 RIB dump (or its first record is corrupt).
    #[error("not an MRT TABLE_DUMP_V2 RIB dump: {0}")]
    NotRibDump(String),
    /// The selected peer is not in the dump.
    #[error("peer {wanted} is not in the dump; its peers are: {}", present.join(", "))]
    UnknownPeer {
        /// The selector, as configured.
        wanted: String,
        /// Every peer of every PEER_INDEX_TABLE, as `ADDRESS ASNUMBER`.
        present: Vec<String>,
    },
}

/// Something in the dump that was not loaded, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    /// 1-based number of the MRT record it was in.
    pub record: usize,
    /// What was wrong.
    pub reason: String,
}

/// Counts of what a load read, for logs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MrtStats {
    /// MRT records read.
    pub records: usize,
    /// RIB entries of the selected peers that were used.
    pub entries: usize,
    /// Records of types that do not feed a unicast view (multicast, RIB_GENERIC, BGP4MP...).
    pub ignored_records: usize,
    /// The selected peers, as `ADDRESS ASNUMBER`.
    pub peers: Vec<String>,
}

/// A loaded dump.
#[derive(Debug)]
pub struct MrtLoad {
    /// The view.
    pub view: RouteView,
    /// What was skipped, one item per entry or record.
    pub skipped: Vec<Skipped>,
    /// What was read.
    pub stats: MrtStats,
}

/// Summarises skipped items for a log message: the count and the first few.
pub fn describe_skipped(skipped: &[Skipped]) -> String {
    super::view::summarize_skipped(skipped, 3, |s| format!("record {}: {}", s.record, s.reason))
}

/// Loads the view of the peers `peer` selects from an MRT dump (plain, gzip or bzip2).
/// `own_asn` is the POP's AS number (see [`super::aspath`]).
pub fn load(bytes: &[u8], peer: &PeerSelector, own_asn: u32) -> Result<MrtLoad, MrtError> {
    let (format, reader): (&'static str, Box<dyn Read + '_>) = match bytes {
        [0x1f, 0x8b, ..] => ("gzip", Box::new(flate2::read::MultiGzDecoder::new(bytes))),
        [b'B', b'Z', b'h', ..] => ("bzip2", Box::new(bzip2::read::MultiBzDecoder::new(bytes))),
        _ => ("plain", Box::new(bytes)),
    };
    let mut latch = Latch {
        inner: reader,
        read: 0,
        error: None,
    };
    let mut loader = Loader::new(peer, own_asn);
    loader.run(&mut latch)?;
    if let Some(e) = latch.error {
        if latch.read == 0 {
            return Err(MrtError::Decompress {
                format,
                reason: e.to_string(),
            });
        }
        let record = loader.stats.records + 1;
        loader.skip(
            record,
            format!(
                "{format} stream broken after {} bytes: {e}; the rest of the file was not read",
                latch.read
            ),
        );
    }
    loader.finish()
}

/// A reader that ends at the first error of the one it wraps and keeps the error: a gzip or
/// bzip2 stream that breaks mid-way then looks like a file cut there, and the load reports
/// the decoder's reason (the MRT framing would only see an early end).
struct Latch<R> {
    inner: R,
    read: usize,
    error: Option<std::io::Error>,
}

impl<R: Read> Read for Latch<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.error.is_some() {
            return Ok(0);
        }
        match self.inner.read(buf) {
            Ok(n) => {
                self.read += n;
                Ok(n)
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => Err(e),
            Err(e) => {
                self.error = Some(e);
                Ok(0)
            }
        }
    }
}

/// A selected peer of the current PEER_INDEX_TABLE.
#[derive(Clone, Copy)]
struct Selected {
    /// Order of the peer across all tables, for deterministic tie-breaks.
    rank: u32,
}

struct Loader<'a> {
    peer: &'a PeerSelector,
    own_asn: u32,
    /// Peer index -> selection, for the current PEER_INDEX_TABLE.
    current: HashMap<u16, Selected>,
    seen_table: bool,
    present: Vec<String>,
    next_rank: u32,
    /// Per prefix, the best path of its record.
    routes: Vec<Route>,
    skipped: Vec<Skipped>,
    stats: MrtStats,
}

impl<'a> Loader<'a> {
    fn new(peer: &'a PeerSelector, own_asn: u32) -> Self {
        Self {
            peer,
            own_asn,
            current: HashMap::new(),
            seen_table: false,
            present: Vec::new(),
            next_rank: 0,
            routes: Vec::new(),
            skipped: Vec::new(),
            stats: MrtStats::default(),
        }
    }

    fn run(&mut self, mut reader: impl Read) -> Result<(), MrtError> {
        loop {
            let record_no = self.stats.records + 1;
            let raw = match chunk_mrt_record(&mut reader) {
                Ok(raw) => raw,
                Err(e) if matches!(e.error, ParserError::EofExpected) => return Ok(()),
                Err(e) => {
                    let unread = std::io::copy(&mut reader, &mut std::io::sink()).unwrap_or(0);
                    let rest = if unread > 0 {
                        format!("; the remaining {unread} bytes were not read")
                    } else {
                        String::new()
                    };
                    self.skip(
                        record_no,
                        format!("truncated or corrupt record: {}{rest}", e.error),
                    );
                    return Ok(());
                }
            };
            self.stats.records = record_no;
            let header = raw.common_header;
            if header.entry_type != EntryType::TABLE_DUMP_V2 {
                self.stats.ignored_records += 1;
                continue;
            }
            match header.entry_subtype {
                PEER_INDEX_TABLE => {
                    match parse_table_dump_v2_message(PEER_INDEX_TABLE, raw.message_bytes) {
                        Ok(TableDumpV2Message::PeerIndexTable(table)) => self.peer_table(&table),
                        // The parser returns the message of the subtype it was asked for.
                        Ok(_) => {}
                        Err(e) => {
                            // The RIB records that follow refer to this table: without it they
                            // cannot be attributed, so they are skipped (as unknown peers).
                            self.current.clear();
                            self.skip(record_no, format!("corrupt PEER_INDEX_TABLE: {e}"));
                        }
                    }
                }
                sub @ (RIB_IPV4_UNICAST
                | RIB_IPV6_UNICAST
                | RIB_IPV4_UNICAST_ADDPATH
                | RIB_IPV6_UNICAST_ADDPATH) => {
                    if !self.seen_table {
                        return Err(MrtError::NotRibDump(format!(
                            "record {record_no} is a RIB record before any PEER_INDEX_TABLE"
                        )));
                    }
                    self.rib(record_no, sub, raw.message_bytes);
                }
                _ => self.stats.ignored_records += 1,
            }
        }
    }

    fn skip(&mut self, record: usize, reason: String) {
        self.skipped.push(Skipped { record, reason });
    }

    fn peer_table(&mut self, table: &PeerIndexTable) {
        self.seen_table = true;
        self.current.clear();
        let mut indexes: Vec<u16> = table.id_peer_map.keys().copied().collect();
        indexes.sort_unstable();
        for index in indexes {
            let p = &table.id_peer_map[&index];
            let asn = p.peer_asn.to_u32();
            let name = format!("{} AS{asn}", p.peer_ip);
            if self.peer.matches(p.peer_ip, asn) {
                self.current.insert(
                    index,
                    Selected {
                        rank: self.next_rank,
                    },
                );
                self.next_rank += 1;
                if !self.stats.peers.contains(&name) {
                    self.stats.peers.push(name.clone());
                }
            }
            if !self.present.contains(&name) {
                self.present.push(name);
            }
        }
    }

    /// One RIB_IPV4/6_UNICAST record: sequence, prefix, entries (RFC 6396 §4.3.2).
    fn rib(&mut self, record: usize, subtype: u16, body: Bytes) {
        let v6 = matches!(subtype, RIB_IPV6_UNICAST | RIB_IPV6_UNICAST_ADDPATH);
        let add_path = matches!(subtype, RIB_IPV4_UNICAST_ADDPATH | RIB_IPV6_UNICAST_ADDPATH);
        let mut r = Cursor::new(&body);
        let header = (|| {
            r.take(4)?; // sequence number
            let len = r.u8()?;
            let prefix = read_prefix(&mut r, len, v6)?;
            Some((prefix, r.u16()?))
        })();
        let Some((prefix, count)) = header else {
            self.skip(record, "RIB record shorter than its header".to_owned());
            return;
        };
        let prefix = match prefix {
            Ok(p) => p,
            Err(reason) => {
                self.skip(record, format!("{reason} ({count} entries)"));
                return;
            }
        };
        let mut best: Option<Best> = None;
        for n in 0..count {
            let entry = (|| {
                let index = r.u16()?;
                r.take(4)?; // originated time
                if add_path {
                    r.take(4)?;
                }
                let len = usize::from(r.u16()?);
                Some((index, r.take(len)?))
            })();
            let Some((index, attrs)) = entry else {
                if let Some(b) = best.take() {
                    self.routes.push((prefix, b.key, b.path));
                }
                let lost = count - n;
                self.skip(
                    record,
                    format!(
                        "{prefix}: record ends inside entry {} of {count}; {lost} entries lost",
                        n + 1
                    ),
                );
                return;
            };
            let Some(selected) = self.current.get(&index).copied() else {
                continue;
            };
            match self.entry_path(&body, attrs) {
                Ok(path) => self.offer(&mut best, path, selected.rank),
                Err(reason) => self.skip(record, format!("{prefix}: {reason}")),
            }
        }
        if let Some(b) = best {
            self.routes.push((prefix, b.key, b.path));
        }
    }

    /// The flattened AS path of one entry's attributes (`range` within `body`).
    ///
    /// Only AS_PATH and AS4_PATH are handed to `bgpkit-parser` (each attribute on its own,
    /// zero-copy): the view needs nothing else, and collector dumps carry long community
    /// lists that would cost more to decode than the path.
    fn entry_path(
        &self,
        body: &Bytes,
        range: std::ops::Range<usize>,
    ) -> Result<Box<[u32]>, String> {
        let start = range.start;
        let found = find_paths(&body[range])?;
        let parse = |at: std::ops::Range<usize>, code: u8| {
            let attr = body.slice(start + at.start..start + at.end);
            let parsed = parse_attributes(attr, &AsnLength::Bits32, false, None, None, None)
                .map_err(|e| format!("attributes do not parse: {e}"))?;
            let path = parsed.into_attributes_iter().find_map(|a| match a.value {
                AttributeValue::AsPath(p) | AttributeValue::As4Path(p) => Some(p),
                _ => None,
            });
            path.ok_or_else(|| {
                let name = if code == 2 { "AS_PATH" } else { "AS4_PATH" };
                format!("malformed {name}")
            })
        };
        let as_path = parse(found.as_path.ok_or("no AS_PATH attribute")?, 2)?;
        let mut builder = PathBuilder::default();
        match found.as4_path {
            None => {
                for segment in &as_path.segments {
                    let (kind, asns) = segment_of(segment);
                    builder.push_asns(kind, asns.iter().map(|a| a.to_u32()));
                }
            }
            Some(at) => {
                // RFC 6793 §6: a malformed AS4_PATH is discarded, AS_PATH stands alone.
                let merged = match parse(at, 17) {
                    Ok(as4) => merge_as4_path(&segments_of(&as_path), &segments_of(&as4)),
                    Err(_) => segments_of(&as_path),
                };
                builder.extend(&merged);
            }
        }
        Ok(builder.finish(self.own_asn))
    }

    /// Keeps `path` for `prefix` if it beats what this record offered before.
    fn offer(&mut self, best: &mut Option<Best>, path: Box<[u32]>, rank: u32) {
        self.stats.entries += 1;
        let key = (path.len(), rank);
        if best.as_ref().is_none_or(|b| key < b.key) {
            *best = Some(Best { key, path });
        }
    }

    fn finish(self) -> Result<MrtLoad, MrtError> {
        if !self.seen_table {
            let reason = match self.skipped.first() {
                Some(s) => s.reason.clone(),
                None if self.stats.records == 0 => "the file is empty".to_owned(),
                None => "it has no PEER_INDEX_TABLE".to_owned(),
            };
            return Err(MrtError::NotRibDump(reason));
        }
        if self.stats.peers.is_empty() {
            return Err(MrtError::UnknownPeer {
                wanted: self.peer.to_string(),
                present: self.present,
            });
        }
        // A dump has one record per prefix, so a prefix seen twice is rare (two tables in one
        // file); then the best path wins as within a record.
        let mut routes = self.routes;
        if !routes.is_sorted_by(|a, b| a.0 < b.0) {
            routes.sort_by_key(|r| (r.0, r.1));
            routes.dedup_by_key(|r| r.0);
        }
        let entries = routes
            .into_iter()
            .map(|(prefix, _, path)| (prefix, path))
            .collect();
        Ok(MrtLoad {
            view: RouteView::new(entries),
            skipped: self.skipped,
            stats: self.stats,
        })
    }
}

/// A prefix, the key its path won with (hops, peer rank), and the path.
type Route = (IpNet, (usize, u32), Box<[u32]>);

/// The best path a record gave so far.
struct Best {
    key: (usize, u32),
    path: Box<[u32]>,
}

fn segment_of(segment: &AsPathSegment) -> (SegmentKind, &[bgpkit_parser::models::Asn]) {
    match segment {
        AsPathSegment::AsSequence(v) => (SegmentKind::Sequence, v),
        AsPathSegment::AsSet(v) => (SegmentKind::Set, v),
        AsPathSegment::ConfedSequence(v) | AsPathSegment::ConfedSet(v) => (SegmentKind::Confed, v),
    }
}

fn segments_of(path: &AsPath) -> Vec<Segment> {
    path.segments
        .iter()
        .map(|s| {
            let (kind, asns) = segment_of(s);
            Segment {
                kind,
                asns: asns.iter().map(|a| a.to_u32()).collect(),
            }
        })
        .collect()
}

/// Where AS_PATH and AS4_PATH are in an attribute section (each range covers the whole
/// attribute, header included).
#[derive(Default)]
struct PathAttributes {
    as_path: Option<std::ops::Range<usize>>,
    as4_path: Option<std::ops::Range<usize>>,
}

/// Checks that the attributes tile their section exactly (flags, type, 1- or 2-octet length,
/// value) and finds the path attributes. `bgpkit-parser` stops quietly at an attribute that
/// overruns the section; an entry like that is skipped here instead, with the reason.
fn find_paths(attrs: &[u8]) -> Result<PathAttributes, String> {
    let mut found = PathAttributes::default();
    let mut at = 0;
    while at < attrs.len() {
        let Some(&[flags, code]) = attrs.get(at..at + 2) else {
            return Err(format!(
                "attribute section ends inside an attribute header at byte {at}"
            ));
        };
        let (len, header) = if flags & 0x10 != 0 {
            match attrs.get(at + 2..at + 4) {
                Some(&[hi, lo]) => (usize::from(u16::from_be_bytes([hi, lo])), 4),
                _ => return Err(format!("attribute {code} has a truncated length")),
            }
        } else {
            match attrs.get(at + 2) {
                Some(&len) => (usize::from(len), 3),
                None => return Err(format!("attribute {code} has a truncated length")),
            }
        };
        if at + header + len > attrs.len() {
            return Err(format!(
                "attribute {code} says {len} bytes, {} remain",
                attrs.len() - at - header
            ));
        }
        let range = at..at + header + len;
        match code {
            2 if found.as_path.is_none() => found.as_path = Some(range),
            17 if found.as4_path.is_none() => found.as4_path = Some(range),
            _ => {}
        }
        at += header + len;
    }
    Ok(found)
}

/// Reads a prefix of `len` bits in its minimal encoding (RFC 6396 §4.3.2: as in BGP NLRI).
/// `Err` is a prefix that was read but is invalid (length too long, host bits set).
fn read_prefix(r: &mut Cursor<'_>, len: u8, v6: bool) -> Option<Result<IpNet, String>> {
    let width = if v6 { 128 } else { 32 };
    if len > width {
        return Some(Err(format!("prefix length {len} is longer than {width}")));
    }
    let octets = usize::from(len).div_ceil(8);
    let range = r.take(octets)?;
    let mut addr = [0u8; 16];
    addr[..octets].copy_from_slice(&r.bytes[range]);
    let net = if v6 {
        Ipv6Net::new(std::net::Ipv6Addr::from(addr), len).map(IpNet::V6)
    } else {
        let a = [addr[0], addr[1], addr[2], addr[3]];
        Ipv4Net::new(std::net::Ipv4Addr::from(a), len).map(IpNet::V4)
    };
    let net = match net {
        Ok(n) => n,
        Err(e) => return Some(Err(e.to_string())),
    };
    if net.addr() != net.network() {
        return Some(Err(format!("{net} has host bits set")));
    }
    Some(Ok(net))
}

/// A read position in a byte slice; every read is bounds-checked.
struct Cursor<'b> {
    bytes: &'b [u8],
    at: usize,
}

impl<'b> Cursor<'b> {
    fn new(bytes: &'b [u8]) -> Self {
        Self { bytes, at: 0 }
    }

    /// Consumes `n` bytes; returns their range.
    fn take(&mut self, n: usize) -> Option<std::ops::Range<usize>> {
        let end = self.at.checked_add(n).filter(|e| *e <= self.bytes.len())?;
        let range = self.at..end;
        self.at = end;
        Some(range)
    }

    fn u8(&mut self) -> Option<u8> {
        let r = self.take(1)?;
        Some(self.bytes[r.start])
    }

    fn u16(&mut self) -> Option<u16> {
        let r = self.take(2)?;
        Some(u16::from_be_bytes([
            self.bytes[r.start],
            self.bytes[r.start + 1],
        ]))
    }
}
