//! Route-view transfer between nodes (QUIC, ALPN [`ALPN`]).
//!
//! Gossip carries only each POP's view *announcement* (version, digest, prefix count): a few
//! dozen bytes. A node that sees an announcement it does not hold opens a bidirectional
//! stream to the POP's node and sends, framed as [`crate::frame`] describes, the preamble
//! with [`MAGIC`] and one [`ViewRequest`]. The owner answers with the preamble and
//! [`ViewFrame`]s: `Header`, then `V4` and `V6` chunks of routes (prefix and AS hops), then
//! `End`; or a single `Refused`. AS paths do not travel: answers need only hops, and a full
//! table's paths for every POP would not fit a node's memory budget; the POP's own node
//! keeps them.
//!
//! The digest in the header is a stable 64-bit hash of every frame after the header up to
//! `End`, exactly as sent, so the receiver checks what it got before using it. Routes are
//! sorted by address then length, so the same view always encodes to the same bytes and the
//! same digest on every node.

use serde::{Deserialize, Serialize};

/// ALPN protocol id of route-view pulls.
pub const ALPN: &[u8] = b"sparrow-views/1";
/// Stream magic.
pub const MAGIC: [u8; 4] = *b"SPVW";
/// Largest frame accepted (a chunk never comes near it).
pub const MAX_FRAME: usize = 8 << 20;
/// Routes per `V4`/`V6` chunk and paths per `Paths` chunk.
pub const CHUNK: usize = 32 * 1024;
/// Largest view accepted, in prefixes (a full table is ~1.3 M; headroom for growth).
pub const MAX_PREFIXES: u64 = 8_000_000;

/// Most bytes one route takes in a chunk: an IPv6 route with both halves of its address
/// at the widest integer marker (9 bytes each), its length and its hops.
pub const MAX_ROUTE_BYTES: u64 = 20;
/// Most bytes of a chunk besides its routes: length prefix, variant, route count.
pub const MAX_FRAME_OVERHEAD: u64 = 4 + 1 + 9;
/// Largest transfer a puller reads after the header, whatever the header says (a full table
/// is ~7 MB; [`MAX_PREFIXES`] IPv6 routes at their widest stay below it).
pub const MAX_TRANSFER: u64 = 256 << 20;

/// The most bytes that may follow the header of a transfer announcing `prefixes`: every
/// route at its widest, in chunks of [`CHUNK`] plus one partial chunk per family, then
/// `End`; never more than [`MAX_TRANSFER`]. An owner's transfer always fits (a test
/// checks it against the encoder); a puller stops reading at the first frame past it.
pub fn max_body_bytes(prefixes: u64) -> u64 {
    let frames = prefixes.div_ceil(CHUNK as u64).saturating_add(3);
    prefixes
        .saturating_mul(MAX_ROUTE_BYTES)
        .saturating_add(frames.saturating_mul(MAX_FRAME_OVERHEAD))
        .min(MAX_TRANSFER)
}

/// Asks for a POP's route view.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewRequest {
    /// The POP whose view is wanted (the node serves its own POP's).
    pub pop: String,
    /// The digest the requester saw announced; the owner sends its current view either way,
    /// and the header says which it is.
    pub digest: u64,
}

/// What a view announcement and a transfer header say about a view.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewHeader {
    /// Version: the owner's unix time (ms) when the view was built, strictly increasing.
    pub version: u64,
    /// Stable hash of the encoded routes (see the module doc).
    pub digest: u64,
    /// Prefixes in the view.
    pub prefixes: u64,
}

/// One route of an IPv4 chunk. Addresses are delta-coded: a route's network address is the
/// previous route's in the same chunk (0 for the first) plus `gap`, so sorted routes cost
/// two or three bytes of address instead of five.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route4 {
    /// Network address minus the previous route's.
    pub gap: u32,
    /// Prefix length.
    pub len: u8,
    /// AS hops (AS path length) from the POP.
    pub hops: u8,
}

/// One route of an IPv6 chunk: the upper 64 bits of the address delta-coded as in
/// [`Route4`], the lower 64 bits as they are (zero for every prefix up to /64, which is all
/// a full table holds).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route6 {
    /// Upper 64 bits of the network address minus the previous route's.
    pub gap_hi: u64,
    /// Lower 64 bits of the network address.
    pub lo: u64,
    /// Prefix length.
    pub len: u8,
    /// AS hops (AS path length) from the POP.
    pub hops: u8,
}

/// A frame of the owner's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ViewFrame {
    /// First frame of a transfer.
    Header(ViewHeader),
    /// IPv4 routes.
    V4(Vec<Route4>),
    /// IPv6 routes.
    V6(Vec<Route6>),
    /// Last frame of a transfer.
    End,
    /// No transfer: why (e.g. this node has no view of that POP).
    Refused {
        /// Why.
        reason: String,
    },
}

/// A frame body read in place: a `V4` or `V6` chunk's routes are read one at a time with
/// [`RouteCursor`], without building the `Vec` that [`crate::frame::decode`] builds; any
/// other frame is decoded whole. A node that merges a hundred views at once holds each
/// one's frame bytes this way, not a decoded copy three times their size.
#[derive(Debug)]
pub enum FrameRoutes {
    /// IPv4 routes, to read with [`RouteCursor::next_v4`].
    V4(RouteCursor),
    /// IPv6 routes, to read with [`RouteCursor::next_v6`].
    V6(RouteCursor),
    /// Any other frame, decoded.
    Other(ViewFrame),
}

/// Where a reader of a chunk's routes stands in the frame body (see [`FrameRoutes`]). It
/// reads exactly what bincode 2's standard configuration writes for [`ViewFrame`] and what
/// [`crate::frame::decode`] accepts: variable-length integers (one byte up to 250, else a
/// marker byte 251, 252 or 253 and then 2, 4 or 8 little-endian bytes), `u8` as one byte,
/// and every byte of the body used.
#[derive(Debug)]
pub struct RouteCursor {
    pos: usize,
    left: u64,
}

/// Opens a frame body (without its length prefix) for reading in place.
pub fn read_routes(body: &[u8]) -> Result<FrameRoutes, crate::frame::FrameError> {
    let mut pos = 0;
    let variant = varint(body, &mut pos, 252)?;
    let kind = match variant {
        1 | 2 => variant,
        _ => return crate::frame::decode(body).map(FrameRoutes::Other),
    };
    let left = varint(body, &mut pos, 253)?;
    let cursor = RouteCursor { pos, left };
    Ok(if kind == 1 {
        FrameRoutes::V4(cursor)
    } else {
        FrameRoutes::V6(cursor)
    })
}

fn malformed(what: &str) -> crate::frame::FrameError {
    crate::frame::FrameError::Malformed(what.to_owned())
}

/// Reads a variable-length integer whose widest accepted marker is `widest` (252: a `u32`,
/// 253: a `u64`), as bincode 2 does.
#[inline]
fn varint(body: &[u8], pos: &mut usize, widest: u8) -> Result<u64, crate::frame::FrameError> {
    let first = *body
        .get(*pos)
        .ok_or_else(|| malformed("unexpected end of frame"))?;
    *pos += 1;
    let width = match first {
        0..=250 => return Ok(u64::from(first)),
        251 => 2,
        252 if widest >= 252 => 4,
        253 if widest >= 253 => 8,
        _ => return Err(malformed("invalid integer marker")),
    };
    let bytes = body
        .get(*pos..*pos + width)
        .ok_or_else(|| malformed("unexpected end of frame"))?;
    *pos += width;
    let mut le = [0u8; 8];
    le[..width].copy_from_slice(bytes);
    Ok(u64::from_le_bytes(le))
}

#[inline]
fn byte(body: &[u8], pos: &mut usize) -> Result<u8, crate::frame::FrameError> {
    let b = *body
        .get(*pos)
        .ok_or_else(|| malformed("unexpected end of frame"))?;
    *pos += 1;
    Ok(b)
}

impl RouteCursor {
    /// Checks that the last route was read and the body holds nothing after it.
    fn done(&self, body: &[u8]) -> Result<(), crate::frame::FrameError> {
        match body.len() - self.pos.min(body.len()) {
            0 => Ok(()),
            n => Err(crate::frame::FrameError::Malformed(format!(
                "{n} bytes left over"
            ))),
        }
    }

    /// The next IPv4 route of `body` (the body [`read_routes`] opened), `None` after the last.
    #[inline]
    pub fn next_v4(&mut self, body: &[u8]) -> Result<Option<Route4>, crate::frame::FrameError> {
        if self.left == 0 {
            return self.done(body).map(|()| None);
        }
        self.left -= 1;
        // INVARIANT: `varint` with widest 252 returns at most u32::MAX.
        let gap = u32::try_from(varint(body, &mut self.pos, 252)?).expect("u32 varint");
        let len = byte(body, &mut self.pos)?;
        let hops = byte(body, &mut self.pos)?;
        Ok(Some(Route4 { gap, len, hops }))
    }

    /// The next IPv6 route of `body`, `None` after the last.
    #[inline]
    pub fn next_v6(&mut self, body: &[u8]) -> Result<Option<Route6>, crate::frame::FrameError> {
        if self.left == 0 {
            return self.done(body).map(|()| None);
        }
        self.left -= 1;
        let gap_hi = varint(body, &mut self.pos, 253)?;
        let lo = varint(body, &mut self.pos, 253)?;
        let len = byte(body, &mut self.pos)?;
        let hops = byte(body, &mut self.pos)?;
        Ok(Some(Route6 {
            gap_hi,
            lo,
            len,
            hops,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame;

    #[test]
    fn frames_round_trip_with_pinned_sizes() {
        let request = ViewRequest {
            pop: "nyc".into(),
            digest: 0x0123_4567_89ab_cdef,
        };
        let bytes = frame::encode(&request);
        // 4 length + 1 string length + 3 + 9 (u64 varint over 2^32).
        assert_eq!(bytes.len(), 17);
        assert_eq!(
            frame::decode::<ViewRequest>(&bytes[frame::LEN_BYTES..]),
            Ok(request)
        );

        let chunk = ViewFrame::V4(vec![
            Route4 {
                gap: 0x6440_0100,
                len: 24,
                hops: 3,
            },
            Route4 {
                gap: 0x100,
                len: 24,
                hops: 2,
            },
        ]);
        let bytes = frame::encode(&chunk);
        // 4 length + 1 variant + 1 count + (5 gap + 1 length + 1 hops) + (3 + 1 + 1).
        assert_eq!(bytes.len(), 18);
        assert_eq!(
            frame::decode::<ViewFrame>(&bytes[frame::LEN_BYTES..]),
            Ok(chunk)
        );
        assert_eq!(
            bytes,
            [
                14, 0, 0, 0, 1, 2, 252, 0, 1, 64, 100, 24, 3, 251, 0, 1, 24, 2
            ],
            "the wire format changed: bump PROTOCOL_VERSION"
        );
    }

    #[test]
    fn the_byte_budget_grows_with_the_announcement_and_stops_at_the_cap() {
        // An empty view: a partial chunk per family (none sent) and End.
        assert_eq!(max_body_bytes(0), 3 * MAX_FRAME_OVERHEAD);
        assert_eq!(max_body_bytes(1), MAX_ROUTE_BYTES + 4 * MAX_FRAME_OVERHEAD);
        let full = max_body_bytes(CHUNK as u64);
        assert_eq!(
            full,
            CHUNK as u64 * MAX_ROUTE_BYTES + 4 * MAX_FRAME_OVERHEAD
        );
        assert!(max_body_bytes(MAX_PREFIXES) < MAX_TRANSFER);
        assert_eq!(max_body_bytes(u64::MAX), MAX_TRANSFER);
        // The widest route really takes MAX_ROUTE_BYTES.
        let widest = ViewFrame::V6(vec![Route6 {
            gap_hi: u64::MAX,
            lo: u64::MAX,
            len: 128,
            hops: 255,
        }]);
        let one = frame::encode(&widest).len() as u64;
        let none = frame::encode(&ViewFrame::V6(vec![])).len() as u64;
        assert_eq!(one - none, MAX_ROUTE_BYTES);
        // A chunk's overhead with the widest count a chunk may have is within the bound.
        assert!(none + 2 <= MAX_FRAME_OVERHEAD);
    }

    #[test]
    fn bad_input_is_refused_not_misread() {
        assert!(frame::decode::<ViewFrame>(&[42]).is_err());
        assert!(frame::decode::<ViewFrame>(&[]).is_err());
        let mut bytes = frame::encode(&ViewFrame::End);
        bytes.push(0);
        assert!(matches!(
            frame::decode::<ViewFrame>(&bytes[frame::LEN_BYTES..]),
            Err(frame::FrameError::Malformed(_))
        ));
        assert_eq!(
            frame::body_len([0, 0, 0, 1], MAX_FRAME),
            Err(frame::FrameError::TooLarge {
                len: 1 << 24,
                max: MAX_FRAME
            })
        );
        assert_eq!(frame::check_preamble(MAGIC, frame::preamble(MAGIC)), Ok(()));
        assert_eq!(
            frame::check_preamble(MAGIC, *b"SPGW\x01\x00"),
            Err(frame::FrameError::BadMagic)
        );
        assert_eq!(
            frame::check_preamble(MAGIC, *b"SPVW\x02\x00"),
            Err(frame::FrameError::BadVersion(2))
        );
    }

    /// Every route of a body read in place, or the first error.
    fn in_place(body: &[u8]) -> Result<ViewFrame, frame::FrameError> {
        match read_routes(body)? {
            FrameRoutes::V4(mut c) => {
                let mut routes = Vec::new();
                while let Some(r) = c.next_v4(body)? {
                    routes.push(r);
                }
                Ok(ViewFrame::V4(routes))
            }
            FrameRoutes::V6(mut c) => {
                let mut routes = Vec::new();
                while let Some(r) = c.next_v6(body)? {
                    routes.push(r);
                }
                Ok(ViewFrame::V6(routes))
            }
            FrameRoutes::Other(f) => Ok(f),
        }
    }

    #[test]
    fn routes_read_in_place_are_what_bincode_decodes_and_bad_bytes_fail_alike() {
        let mut state = 0x9E37_79B9_7F4A_7C15_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        // Integers of every width, so that every marker shows up.
        let wide = |next: &mut dyn FnMut() -> u64| match next() % 4 {
            0 => next() % 251,
            1 => next() % 65_536,
            2 => next() % (1 << 32),
            _ => next(),
        };
        let mut frames = vec![ViewFrame::End, ViewFrame::V4(vec![]), ViewFrame::V6(vec![])];
        for _ in 0..60 {
            let n = (next() % 40) as usize;
            frames.push(ViewFrame::V4(
                (0..n)
                    .map(|_| Route4 {
                        gap: wide(&mut next) as u32,
                        len: next() as u8,
                        hops: next() as u8,
                    })
                    .collect(),
            ));
            frames.push(ViewFrame::V6(
                (0..n)
                    .map(|_| Route6 {
                        gap_hi: wide(&mut next),
                        lo: wide(&mut next),
                        len: next() as u8,
                        hops: next() as u8,
                    })
                    .collect(),
            ));
        }
        for f in &frames {
            let bytes = frame::encode(f);
            let body = &bytes[frame::LEN_BYTES..];
            assert_eq!(in_place(body).as_ref(), Ok(f));
            // Cut short, one byte changed, one byte too many: the same verdict as bincode.
            let mut variants: Vec<Vec<u8>> =
                (0..body.len()).map(|cut| body[..cut].to_vec()).collect();
            for i in 0..body.len() {
                for flip in [0x01, 0x80, 0xff] {
                    let mut b = body.to_vec();
                    b[i] ^= flip;
                    variants.push(b);
                }
            }
            let mut longer = body.to_vec();
            longer.push(0);
            variants.push(longer);
            for b in variants {
                let reference = frame::decode::<ViewFrame>(&b);
                match (in_place(&b), reference) {
                    (Ok(a), Ok(r)) => assert_eq!(a, r, "{b:?}"),
                    (Err(_), Err(_)) => {}
                    (a, r) => panic!("{b:?}: in place {a:?}, bincode {r:?}"),
                }
            }
        }
    }
}
