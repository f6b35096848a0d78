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
}
