//! [P] BGP-4 messages on the wire (RFC 4271 §4), as far as a speaker that only listens needs
//! them: framing, OPEN with the capabilities it negotiates (multiprotocol RFC 4760, 4-octet
//! AS RFC 6793, graceful restart RFC 4724 as a receiver of End-of-RIB), KEEPALIVE,
//! NOTIFICATION, and the decoding of UPDATE into prefixes and an AS path.
//!
//! Every error is classified as RFC 4271 §6 and RFC 7606 ask, because the class decides what
//! the session does:
//! - **session reset**: a [`Notification`] with the error code and subcode to send before
//!   closing: bad marker, length or type (Message Header Error); OPEN errors; an UPDATE whose
//!   lengths do not add up or whose attributes do not tile the attribute section (Malformed
//!   Attribute List), unparseable NLRI (Invalid Network Field), a broken or repeated
//!   MP_REACH_NLRI / MP_UNREACH_NLRI (Optional Attribute Error), an unknown well-known
//!   attribute (Unrecognized Well-known Attribute);
//! - **treat-as-withdraw** (RFC 7606 §2): the NLRI could be located but the attributes that
//!   give them meaning are wrong (malformed ORIGIN, AS_PATH, NEXT_HOP, MED, COMMUNITIES, a
//!   missing mandatory attribute, wrong flags on a well-known attribute): the prefixes
//!   announced are withdrawn instead, and [`Update::treat_as_withdraw`] says why;
//! - **attribute discard**: a malformed attribute Sparrow does not need (LOCAL_PREF,
//!   ATOMIC_AGGREGATE, AGGREGATOR, AS4_PATH, AS4_AGGREGATOR per RFC 6793 §6) is ignored.
//!
//! `bgpkit-parser` (used for MRT dumps) also parses BGP messages, but it is built to read
//! archives leniently: it logs and keeps going where a live session must pick a
//! NOTIFICATION (an attribute overrunning its section is dropped with a log line, a bad
//! marker is a warning), and it has no session side (OPEN negotiation, timers). This codec is
//! small because a read-only speaker interprets only the attributes listed above; the tests
//! check its decoding against `bgpkit-parser` on the same bytes.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::routes::aspath::{Segment, SegmentKind, merge_as4_path};

/// Length of the message header: marker, length, type.
pub const HEADER_LEN: usize = 19;
/// Largest message without the extended message capability (RFC 4271 §4.1).
pub const MAX_LEN: usize = 4096;
/// Stand-in for a 4-octet AS number in 2-octet fields (RFC 6793 §9).
pub const AS_TRANS: u32 = 23456;

/// Message types (RFC 4271 §4.1, RFC 2918).
pub const OPEN: u8 = 1;
/// UPDATE.
pub const UPDATE: u8 = 2;
/// NOTIFICATION.
pub const NOTIFICATION: u8 = 3;
/// KEEPALIVE.
pub const KEEPALIVE: u8 = 4;
/// ROUTE-REFRESH (RFC 2918); Sparrow never asks for it and ignores it.
pub const ROUTE_REFRESH: u8 = 5;

/// An address family Sparrow learns routes for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    /// AFI 1, SAFI 1.
    Ipv4Unicast,
    /// AFI 2, SAFI 1.
    Ipv6Unicast,
}

impl Family {
    fn from_afi_safi(afi: u16, safi: u8) -> Option<Self> {
        match (afi, safi) {
            (1, 1) => Some(Self::Ipv4Unicast),
            (2, 1) => Some(Self::Ipv6Unicast),
            _ => None,
        }
    }

    fn afi(self) -> u16 {
        match self {
            Self::Ipv4Unicast => 1,
            Self::Ipv6Unicast => 2,
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Ipv4Unicast => "ipv4 unicast",
            Self::Ipv6Unicast => "ipv6 unicast",
        })
    }
}

/// A NOTIFICATION (RFC 4271 §4.5): the error that ends a session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notification {
    /// Error code.
    pub code: u8,
    /// Error subcode.
    pub subcode: u8,
    /// Data, as the subcode defines it.
    pub data: Vec<u8>,
}

/// Error codes and subcodes used here (RFC 4271 §4.5, §6; RFC 6608; RFC 4486).
pub mod err {
    /// Message Header Error.
    pub const HEADER: u8 = 1;
    /// Connection Not Synchronized (bad marker).
    pub const NOT_SYNCHRONIZED: u8 = 1;
    /// Bad Message Length.
    pub const BAD_LENGTH: u8 = 2;
    /// Bad Message Type.
    pub const BAD_TYPE: u8 = 3;
    /// OPEN Message Error.
    pub const OPEN: u8 = 2;
    /// Unsupported Version Number.
    pub const BAD_VERSION: u8 = 1;
    /// Bad Peer AS.
    pub const BAD_PEER_AS: u8 = 2;
    /// Bad BGP Identifier.
    pub const BAD_BGP_ID: u8 = 3;
    /// Unsupported Optional Parameter.
    pub const UNSUPPORTED_PARAMETER: u8 = 4;
    /// Unacceptable Hold Time.
    pub const BAD_HOLD_TIME: u8 = 6;
    /// UPDATE Message Error.
    pub const UPDATE: u8 = 3;
    /// Malformed Attribute List.
    pub const MALFORMED_ATTRIBUTE_LIST: u8 = 1;
    /// Unrecognized Well-known Attribute.
    pub const UNRECOGNIZED_WELL_KNOWN: u8 = 2;
    /// Optional Attribute Error.
    pub const OPTIONAL_ATTRIBUTE: u8 = 9;
    /// Invalid Network Field.
    pub const INVALID_NETWORK: u8 = 10;
    /// Hold Timer Expired.
    pub const HOLD_TIMER: u8 = 4;
    /// Finite State Machine Error.
    pub const FSM: u8 = 5;
    /// Receive Unexpected Message in OpenConfirm State (RFC 6608).
    pub const FSM_IN_OPEN_CONFIRM: u8 = 2;
    /// Receive Unexpected Message in Established State (RFC 6608).
    pub const FSM_IN_ESTABLISHED: u8 = 3;
    /// Cease.
    pub const CEASE: u8 = 6;
    /// Administrative Shutdown (RFC 4486).
    pub const ADMIN_SHUTDOWN: u8 = 2;
    /// Connection Rejected (RFC 4486).
    pub const CONNECTION_REJECTED: u8 = 5;
}

impl Notification {
    /// A notification without data.
    pub fn new(code: u8, subcode: u8) -> Self {
        Self {
            code,
            subcode,
            data: Vec::new(),
        }
    }

    /// With data.
    pub fn with_data(code: u8, subcode: u8, data: impl Into<Vec<u8>>) -> Self {
        Self {
            code,
            subcode,
            data: data.into(),
        }
    }

    /// Decodes a NOTIFICATION body (a short one is kept as far as it goes).
    pub fn parse(body: &[u8]) -> Self {
        Self {
            code: body.first().copied().unwrap_or(0),
            subcode: body.get(1).copied().unwrap_or(0),
            data: body.get(2..).unwrap_or_default().to_vec(),
        }
    }

    /// The whole message.
    pub fn encode(&self) -> Vec<u8> {
        let mut body = vec![self.code, self.subcode];
        // Data beyond what fits in one message is cut (it is informational).
        body.extend_from_slice(&self.data[..self.data.len().min(MAX_LEN - HEADER_LEN - 2)]);
        message(NOTIFICATION, &body)
    }
}

impl fmt::Display for Notification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let code = match self.code {
            1 => "Message Header Error",
            2 => "OPEN Message Error",
            3 => "UPDATE Message Error",
            4 => "Hold Timer Expired",
            5 => "Finite State Machine Error",
            6 => "Cease",
            _ => "unknown error",
        };
        let sub = match (self.code, self.subcode) {
            (1, 1) => "Connection Not Synchronized",
            (1, 2) => "Bad Message Length",
            (1, 3) => "Bad Message Type",
            (2, 1) => "Unsupported Version Number",
            (2, 2) => "Bad Peer AS",
            (2, 3) => "Bad BGP Identifier",
            (2, 4) => "Unsupported Optional Parameter",
            (2, 6) => "Unacceptable Hold Time",
            (3, 1) => "Malformed Attribute List",
            (3, 2) => "Unrecognized Well-known Attribute",
            (3, 3) => "Missing Well-known Attribute",
            (3, 4) => "Attribute Flags Error",
            (3, 5) => "Attribute Length Error",
            (3, 9) => "Optional Attribute Error",
            (3, 10) => "Invalid Network Field",
            (3, 11) => "Malformed AS_PATH",
            (5, 1) => "Unexpected Message in OpenSent",
            (5, 2) => "Unexpected Message in OpenConfirm",
            (5, 3) => "Unexpected Message in Established",
            (6, 2) => "Administrative Shutdown",
            (6, 4) => "Administrative Reset",
            (6, 5) => "Connection Rejected",
            (6, 6) => "Other Configuration Change",
            _ => "",
        };
        write!(f, "{code} ({}/{})", self.code, self.subcode)?;
        if !sub.is_empty() {
            write!(f, " {sub}")?;
        }
        Ok(())
    }
}

/// A whole message of `kind` around `body`.
pub fn message(kind: u8, body: &[u8]) -> Vec<u8> {
    let len = HEADER_LEN + body.len();
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(&[0xff; 16]);
    // INVARIANT: callers build bodies of at most MAX_LEN - HEADER_LEN bytes.
    out.extend_from_slice(
        &u16::try_from(len)
            .expect("BGP message too long")
            .to_be_bytes(),
    );
    out.push(kind);
    out.extend_from_slice(body);
    out
}

/// A KEEPALIVE.
pub fn keepalive() -> Vec<u8> {
    message(KEEPALIVE, &[])
}

/// Checks a message header; returns the type and the total length of the message.
pub fn header(h: &[u8; HEADER_LEN]) -> Result<(u8, usize), Notification> {
    if h[..16] != [0xff; 16] {
        return Err(Notification::new(err::HEADER, err::NOT_SYNCHRONIZED));
    }
    let len = usize::from(u16::from_be_bytes([h[16], h[17]]));
    let kind = h[18];
    let bad_len = || Notification::with_data(err::HEADER, err::BAD_LENGTH, [h[16], h[17]].to_vec());
    let min = match kind {
        OPEN => 29,
        UPDATE => 23,
        NOTIFICATION => 21,
        KEEPALIVE => 19,
        ROUTE_REFRESH => 23,
        _ => return Err(Notification::with_data(err::HEADER, err::BAD_TYPE, [kind])),
    };
    if !(min..=MAX_LEN).contains(&len) || (kind == KEEPALIVE && len != HEADER_LEN) {
        return Err(bad_len());
    }
    Ok((kind, len))
}

/// What Sparrow says in its OPEN.
#[derive(Clone, Debug)]
pub struct LocalOpen {
    /// Its AS number.
    pub asn: u32,
    /// Hold time proposed (seconds).
    pub hold_time: u16,
    /// BGP identifier.
    pub router_id: Ipv4Addr,
}

impl LocalOpen {
    /// The OPEN message: version 4, capabilities multiprotocol IPv4 and IPv6 unicast, 4-octet
    /// AS, and graceful restart with no family (RFC 4724 §3: "I understand End-of-RIB";
    /// Sparrow has no forwarding state to preserve).
    pub fn encode(&self) -> Vec<u8> {
        let mut caps = Vec::new();
        for afi in [1u16, 2] {
            caps.extend_from_slice(&[1, 4]);
            caps.extend_from_slice(&afi.to_be_bytes());
            caps.extend_from_slice(&[0, 1]);
        }
        caps.extend_from_slice(&[65, 4]);
        caps.extend_from_slice(&self.asn.to_be_bytes());
        caps.extend_from_slice(&[64, 2, 0, 0]);
        let my_as = u16::try_from(self.asn).unwrap_or(AS_TRANS as u16);
        let mut body = vec![4];
        body.extend_from_slice(&my_as.to_be_bytes());
        body.extend_from_slice(&self.hold_time.to_be_bytes());
        body.extend_from_slice(&self.router_id.octets());
        // One optional parameter: capabilities (type 2).
        body.push(u8::try_from(caps.len() + 2).unwrap_or(u8::MAX));
        body.push(2);
        body.push(u8::try_from(caps.len()).unwrap_or(u8::MAX));
        body.extend_from_slice(&caps);
        message(OPEN, &body)
    }
}

/// A received OPEN.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Open {
    /// The 2-octet "My Autonomous System" field.
    pub my_as: u16,
    /// Hold time proposed.
    pub hold_time: u16,
    /// BGP identifier.
    pub bgp_id: Ipv4Addr,
    /// The AS number in the 4-octet AS capability, if sent.
    pub as4: Option<u32>,
    /// Families of the multiprotocol capabilities (`None`: no such capability was sent,
    /// which means IPv4 unicast, RFC 4760 §1).
    pub families: Option<Vec<Family>>,
    /// Whether the graceful restart capability was sent (the peer then sends End-of-RIB).
    pub graceful_restart: bool,
}

impl Open {
    /// Decodes an OPEN body (after the header).
    pub fn parse(body: &[u8]) -> Result<Self, Notification> {
        let bad_len = || Notification::new(err::HEADER, err::BAD_LENGTH);
        let malformed = || Notification::new(err::OPEN, 0);
        if body.len() < 10 {
            return Err(bad_len());
        }
        if body[0] != 4 {
            // The data is the highest version we support (RFC 4271 §6.2).
            return Err(Notification::with_data(err::OPEN, err::BAD_VERSION, [0, 4]));
        }
        let my_as = u16::from_be_bytes([body[1], body[2]]);
        let hold_time = u16::from_be_bytes([body[3], body[4]]);
        let bgp_id = Ipv4Addr::new(body[5], body[6], body[7], body[8]);
        let params_len = usize::from(body[9]);
        if 10 + params_len != body.len() {
            return Err(bad_len());
        }
        let mut open = Self {
            my_as,
            hold_time,
            bgp_id,
            as4: None,
            families: None,
            graceful_restart: false,
        };
        let mut params = &body[10..];
        while !params.is_empty() {
            let [kind, len, rest @ ..] = params else {
                return Err(malformed());
            };
            let len = usize::from(*len);
            if rest.len() < len {
                return Err(malformed());
            }
            if *kind != 2 {
                return Err(Notification::with_data(
                    err::OPEN,
                    err::UNSUPPORTED_PARAMETER,
                    [*kind],
                ));
            }
            open.capabilities(&rest[..len])?;
            params = &rest[len..];
        }
        Ok(open)
    }

    fn capabilities(&mut self, mut caps: &[u8]) -> Result<(), Notification> {
        while !caps.is_empty() {
            let [code, len, rest @ ..] = caps else {
                return Err(Notification::new(err::OPEN, 0));
            };
            let len = usize::from(*len);
            let Some(value) = rest.get(..len) else {
                return Err(Notification::new(err::OPEN, 0));
            };
            match (*code, value) {
                (1, [a0, a1, _, safi]) => {
                    let families = self.families.get_or_insert_with(Vec::new);
                    if let Some(f) = Family::from_afi_safi(u16::from_be_bytes([*a0, *a1]), *safi) {
                        families.push(f);
                    }
                }
                (65, [a, b, c, d]) => self.as4 = Some(u32::from_be_bytes([*a, *b, *c, *d])),
                (64, _) => self.graceful_restart = true,
                // Capabilities Sparrow does not use are ignored (RFC 5492 §3).
                _ => {}
            }
            caps = &rest[len..];
        }
        Ok(())
    }
}

/// What a session runs with once both OPENs are exchanged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Negotiated {
    /// Hold time in seconds (0: no hold timer, no keepalives).
    pub hold_time: u16,
    /// Whether AS numbers are 4 octets in AS_PATH (both sides sent the capability).
    pub four_octet: bool,
    /// Families both sides can carry.
    pub families: Vec<Family>,
    /// Whether the peer will send End-of-RIB markers.
    pub end_of_rib: bool,
    /// The peer's BGP identifier.
    pub peer_id: Ipv4Addr,
}

/// Checks a received OPEN against the configured peer (RFC 4271 §6.2) and negotiates.
pub fn negotiate(
    open: &Open,
    local: &LocalOpen,
    peer_asn: u32,
) -> Result<Negotiated, Notification> {
    let asn = open.as4.unwrap_or(u32::from(open.my_as));
    if asn != peer_asn {
        return Err(Notification::with_data(
            err::OPEN,
            err::BAD_PEER_AS,
            open.my_as.to_be_bytes(),
        ));
    }
    if matches!(open.hold_time, 1 | 2) {
        return Err(Notification::new(err::OPEN, err::BAD_HOLD_TIME));
    }
    // RFC 6286 §2.2: zero is never valid; the same identifier as ours only within one AS.
    if open.bgp_id.is_unspecified() || (asn == local.asn && open.bgp_id == local.router_id) {
        return Err(Notification::new(err::OPEN, err::BAD_BGP_ID));
    }
    let families = match &open.families {
        None => vec![Family::Ipv4Unicast],
        Some(f) => {
            let mut f = f.clone();
            f.sort_unstable();
            f.dedup();
            f
        }
    };
    Ok(Negotiated {
        hold_time: open.hold_time.min(local.hold_time),
        four_octet: open.as4.is_some(),
        families,
        end_of_rib: open.graceful_restart,
        peer_id: open.bgp_id,
    })
}

/// A decoded UPDATE.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Update {
    /// Prefixes withdrawn (both families; including those treated as withdrawn).
    pub withdrawn: Vec<IpNet>,
    /// Prefixes announced with `path`.
    pub announced: Vec<IpNet>,
    /// Their AS path (AS4_PATH merged when the session is 2-octet).
    pub path: Vec<Segment>,
    /// The End-of-RIB marker of a family (RFC 4724 §2): not a withdrawal.
    pub end_of_rib: Option<Family>,
    /// Why the announced prefixes were withdrawn instead (RFC 7606 treat-as-withdraw).
    pub treat_as_withdraw: Option<String>,
}

/// Decodes an UPDATE body (after the header). `four_octet`: the session's AS number size.
pub fn parse_update(body: &[u8], four_octet: bool) -> Result<Update, Notification> {
    let malformed_list = || Notification::new(err::UPDATE, err::MALFORMED_ATTRIBUTE_LIST);
    // The header check keeps shorter bodies from the session; the parser holds on its own.
    let [w0, w1, ..] = *body else {
        return Err(malformed_list());
    };
    let wlen = usize::from(u16::from_be_bytes([w0, w1]));
    let attrs_at = 2 + wlen + 2;
    if attrs_at > body.len() {
        return Err(malformed_list());
    }
    let alen = usize::from(u16::from_be_bytes([body[2 + wlen], body[3 + wlen]]));
    if attrs_at + alen > body.len() {
        return Err(malformed_list());
    }
    let mut update = Update {
        withdrawn: nlri(&body[2..2 + wlen], Family::Ipv4Unicast)?,
        ..Update::default()
    };
    let attrs = Attributes::parse(&body[attrs_at..attrs_at + alen], four_octet)?;
    let classic = nlri(&body[attrs_at + alen..], Family::Ipv4Unicast)?;

    if let Some((family, prefixes)) = &attrs.mp_unreach {
        if prefixes.is_empty() && wlen == 0 && classic.is_empty() && attrs.only_mp_unreach {
            update.end_of_rib = Some(*family);
        }
        update.withdrawn.extend(prefixes);
    }
    if wlen == 0 && alen == 0 && classic.is_empty() {
        update.end_of_rib = Some(Family::Ipv4Unicast);
    }
    let mut announced = classic;
    let has_classic = !announced.is_empty();
    if let Some((_, prefixes)) = &attrs.mp_reach {
        announced.extend(prefixes);
    }
    if announced.is_empty() {
        return Ok(update);
    }
    // RFC 7606 §3 d: a missing mandatory attribute withdraws what the UPDATE announces.
    let missing = [
        (attrs.origin, "ORIGIN"),
        (attrs.as_path.is_some(), "AS_PATH"),
        (attrs.next_hop || !has_classic, "NEXT_HOP"),
    ]
    .into_iter()
    .find(|(present, _)| !present);
    let problem = match (attrs.treat_as_withdraw, missing) {
        (Some(why), _) => Some(why),
        (None, Some((_, name))) => Some(format!("missing well-known attribute {name}")),
        (None, None) => None,
    };
    match problem {
        Some(why) => {
            update.withdrawn.extend(announced);
            update.treat_as_withdraw = Some(why);
        }
        None => {
            let as_path = attrs.as_path.unwrap_or_default();
            update.path = match attrs.as4_path {
                // RFC 6793 §4.2.3: an AGGREGATOR naming a 2-octet AS other than AS_TRANS means
                // an old speaker aggregated after AS4_PATH was formed: ignore AS4_PATH.
                Some(as4) if !four_octet && attrs.aggregator_as.is_none_or(|a| a == AS_TRANS) => {
                    merge_as4_path(&as_path, &as4)
                }
                _ => as_path,
            };
            update.announced = announced;
        }
    }
    Ok(update)
}

/// What the path attributes of one UPDATE say, for Sparrow's purposes.
#[derive(Default)]
struct Attributes {
    origin: bool,
    as_path: Option<Vec<Segment>>,
    as4_path: Option<Vec<Segment>>,
    next_hop: bool,
    aggregator_as: Option<u32>,
    mp_reach: Option<(Family, Vec<IpNet>)>,
    mp_unreach: Option<(Family, Vec<IpNet>)>,
    /// MP_UNREACH_NLRI is the only attribute (an End-of-RIB shape).
    only_mp_unreach: bool,
    treat_as_withdraw: Option<String>,
}

/// Attribute flags (RFC 4271 §4.3).
const OPTIONAL: u8 = 0x80;
const TRANSITIVE: u8 = 0x40;
const EXTENDED: u8 = 0x10;

impl Attributes {
    fn parse(mut section: &[u8], four_octet: bool) -> Result<Self, Notification> {
        let malformed_list = || Notification::new(err::UPDATE, err::MALFORMED_ATTRIBUTE_LIST);
        let mut a = Self::default();
        let mut seen = [false; 256];
        let mut count = 0;
        while !section.is_empty() {
            // RFC 7606 §4 would allow treat-as-withdraw here, but an MP_REACH_NLRI may hide in
            // the bytes that cannot be framed, so the NLRI cannot be located for sure (§5.3).
            let [flags, code, rest @ ..] = section else {
                return Err(malformed_list());
            };
            let (len, rest) = if flags & EXTENDED != 0 {
                let [hi, lo, rest @ ..] = rest else {
                    return Err(malformed_list());
                };
                (usize::from(u16::from_be_bytes([*hi, *lo])), rest)
            } else {
                let [len, rest @ ..] = rest else {
                    return Err(malformed_list());
                };
                (usize::from(*len), rest)
            };
            let Some(value) = rest.get(..len) else {
                return Err(malformed_list());
            };
            let whole = &section[..section.len() - rest.len() + len];
            section = &rest[len..];
            count += 1;
            let first = !std::mem::replace(&mut seen[usize::from(*code)], true);
            if !first {
                // RFC 7606 §3 g: repeated MP attributes reset the session; others after the
                // first are discarded.
                if matches!(code, 14 | 15) {
                    return Err(malformed_list());
                }
                continue;
            }
            a.attribute(*flags, *code, value, whole, four_octet)?;
        }
        a.only_mp_unreach = count == 1 && a.mp_unreach.is_some();
        Ok(a)
    }

    fn withdraw(&mut self, why: String) {
        self.treat_as_withdraw.get_or_insert(why);
    }

    fn attribute(
        &mut self,
        flags: u8,
        code: u8,
        value: &[u8],
        whole: &[u8],
        four_octet: bool,
    ) -> Result<(), Notification> {
        let well_known = flags & (OPTIONAL | TRANSITIVE) == TRANSITIVE;
        let optional = flags & OPTIONAL != 0;
        let asn_size = if four_octet { 4 } else { 2 };
        match code {
            1..=3 if !well_known => {
                // RFC 7606 §3 c: wrong flags make the attribute malformed.
                self.withdraw(format!("attribute {code} has flags {flags:#04x}"));
            }
            1 => match value {
                [0..=2] => self.origin = true,
                _ => self.withdraw(format!("malformed ORIGIN {value:02x?}")),
            },
            2 => match segments(value, asn_size) {
                Ok(path) => self.as_path = Some(path),
                Err(why) => self.withdraw(format!("malformed AS_PATH: {why}")),
            },
            3 => match value.len() {
                4 => self.next_hop = true,
                n => self.withdraw(format!("NEXT_HOP of {n} bytes")),
            },
            4 if value.len() != 4 => {
                self.withdraw(format!("MULTI_EXIT_DISC of {} bytes", value.len()));
            }
            8 if !value.len().is_multiple_of(4) => {
                self.withdraw(format!("COMMUNITIES of {} bytes", value.len()));
            }
            9 if value.len() != 4 => self.withdraw("malformed ORIGINATOR_ID".to_owned()),
            10 if !value.len().is_multiple_of(4) => {
                self.withdraw("malformed CLUSTER_LIST".to_owned())
            }
            7 => {
                if let (false, [a, b, _, _, _, _]) = (four_octet, value) {
                    self.aggregator_as = Some(u32::from(u16::from_be_bytes([*a, *b])));
                }
            }
            14 | 15 => {
                let optional_error = || {
                    Notification::with_data(err::UPDATE, err::OPTIONAL_ATTRIBUTE, whole.to_vec())
                };
                if !optional {
                    return Err(optional_error());
                }
                let parsed = if code == 14 {
                    mp_reach(value)
                } else {
                    mp_unreach(value)
                };
                match parsed {
                    Err(MpError::Malformed) => return Err(optional_error()),
                    Err(MpError::Nlri(n)) => return Err(n),
                    Ok(None) => {}
                    Ok(Some(found)) if code == 14 => self.mp_reach = Some(found),
                    Ok(Some(found)) => self.mp_unreach = Some(found),
                }
            }
            17 if !four_octet => {
                // RFC 6793 §6: a malformed AS4_PATH is discarded; AS_PATH stands alone.
                if let Ok(path) = segments(value, 4) {
                    self.as4_path = Some(path);
                }
            }
            // LOCAL_PREF, ATOMIC_AGGREGATE, AS4_AGGREGATOR and the rest are not needed; a
            // malformed one is discarded, which for these is what RFC 7606 §7 asks.
            4..=255 if optional => {}
            5 | 6 | 4 | 8..=10 => {}
            _ => {
                return Err(Notification::with_data(
                    err::UPDATE,
                    err::UNRECOGNIZED_WELL_KNOWN,
                    whole.to_vec(),
                ));
            }
        }
        Ok(())
    }
}

enum MpError {
    /// The attribute's structure is wrong: Optional Attribute Error.
    Malformed,
    /// Its NLRI do not parse.
    Nlri(Notification),
}

/// MP_REACH_NLRI (RFC 4760 §3): AFI, SAFI, next hop, reserved, NLRI. `None` for a family
/// Sparrow does not carry.
fn mp_reach(value: &[u8]) -> Result<Option<(Family, Vec<IpNet>)>, MpError> {
    let [a0, a1, safi, nh_len, rest @ ..] = value else {
        return Err(MpError::Malformed);
    };
    let Some(family) = Family::from_afi_safi(u16::from_be_bytes([*a0, *a1]), *safi) else {
        return Ok(None);
    };
    let nh_len = usize::from(*nh_len);
    // RFC 7606 §7.11: a next hop of the wrong length hides where the NLRI start.
    let ok = match family {
        Family::Ipv4Unicast => matches!(nh_len, 4 | 16 | 32),
        Family::Ipv6Unicast => matches!(nh_len, 16 | 32),
    };
    if !ok || rest.len() < nh_len + 1 {
        return Err(MpError::Malformed);
    }
    let prefixes = nlri(&rest[nh_len + 1..], family).map_err(MpError::Nlri)?;
    Ok(Some((family, prefixes)))
}

/// MP_UNREACH_NLRI (RFC 4760 §4): AFI, SAFI, withdrawn NLRI.
fn mp_unreach(value: &[u8]) -> Result<Option<(Family, Vec<IpNet>)>, MpError> {
    let [a0, a1, safi, rest @ ..] = value else {
        return Err(MpError::Malformed);
    };
    let Some(family) = Family::from_afi_safi(u16::from_be_bytes([*a0, *a1]), *safi) else {
        return Ok(None);
    };
    let prefixes = nlri(rest, family).map_err(MpError::Nlri)?;
    Ok(Some((family, prefixes)))
}

/// AS_PATH / AS4_PATH segments (RFC 4271 §4.3, RFC 6793): type, count, ASNs. A segment of an
/// unknown type or of zero length, or one that overruns the attribute, is malformed
/// (RFC 7606 §7.2).
fn segments(mut value: &[u8], asn_size: usize) -> Result<Vec<Segment>, String> {
    let mut out = Vec::new();
    while !value.is_empty() {
        let [kind, count, rest @ ..] = value else {
            return Err("segment header cut short".to_owned());
        };
        let kind =
            SegmentKind::from_wire(*kind).ok_or_else(|| format!("unknown segment type {kind}"))?;
        if *count == 0 {
            return Err("empty segment".to_owned());
        }
        let n = usize::from(*count) * asn_size;
        let Some(asns) = rest.get(..n) else {
            return Err(format!("segment of {count} ASes overruns the attribute"));
        };
        let asns = asns
            .chunks_exact(asn_size)
            .map(|c| match *c {
                [a, b] => u32::from(u16::from_be_bytes([a, b])),
                [a, b, c, d] => u32::from_be_bytes([a, b, c, d]),
                _ => 0,
            })
            .collect();
        out.push(Segment { kind, asns });
        value = &rest[n..];
    }
    Ok(out)
}

/// NLRI: a list of (length in bits, prefix in as few octets as hold it). Any error is an
/// Invalid Network Field: the list cannot be read past it.
pub fn nlri(mut bytes: &[u8], family: Family) -> Result<Vec<IpNet>, Notification> {
    let invalid = || Notification::new(err::UPDATE, err::INVALID_NETWORK);
    let width = match family {
        Family::Ipv4Unicast => 32,
        Family::Ipv6Unicast => 128,
    };
    let mut out = Vec::new();
    while let [len, rest @ ..] = bytes {
        if *len > width {
            return Err(invalid());
        }
        let octets = usize::from(*len).div_ceil(8);
        let Some(addr) = rest.get(..octets) else {
            return Err(invalid());
        };
        let mut full = [0u8; 16];
        full[..octets].copy_from_slice(addr);
        let net = match family {
            Family::Ipv4Unicast => {
                let a = Ipv4Addr::new(full[0], full[1], full[2], full[3]);
                Ipv4Net::new(a, *len).map(IpNet::V4)
            }
            Family::Ipv6Unicast => Ipv6Net::new(Ipv6Addr::from(full), *len).map(IpNet::V6),
        }
        .map_err(|_| invalid())?;
        // Bits past the length are ignored by the receiver (RFC 4271 §4.3 says they are
        // irrelevant); the prefix is stored without them.
        out.push(net.trunc());
        bytes = &rest[octets..];
    }
    Ok(out)
}

/// The family an End-of-RIB marker is for, as bytes (for tests and for logs).
pub fn end_of_rib(family: Family) -> Vec<u8> {
    match family {
        Family::Ipv4Unicast => message(UPDATE, &[0, 0, 0, 0]),
        Family::Ipv6Unicast => {
            let afi = family.afi().to_be_bytes();
            message(UPDATE, &[0, 0, 0, 6, OPTIONAL, 15, 3, afi[0], afi[1], 1])
        }
    }
}

#[cfg(test)]
mod tests;
