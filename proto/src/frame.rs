//! Framing of Sparrow's binary streams: every message is `u32` length (little endian) then
//! the message in bincode 2 (standard config: little endian, variable-length integers).
//!
//! A stream opens with a 6-byte preamble: a 4-byte magic naming the protocol and the
//! [`crate::PROTOCOL_VERSION`], so a peer speaking something else is caught at the first
//! bytes instead of by a confusing decode error.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Bytes of the length prefix.
pub const LEN_BYTES: usize = 4;
/// Bytes of the stream preamble.
pub const PREAMBLE_BYTES: usize = 6;

/// Why bytes were refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// The preamble names another protocol.
    BadMagic,
    /// The preamble names another protocol version.
    BadVersion(u16),
    /// A frame announced more bytes than the limit.
    TooLarge {
        /// Announced length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A frame that does not decode as the expected message (or has bytes left over).
    Malformed(String),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::BadMagic => write!(f, "not a Sparrow stream (bad magic)"),
            Self::BadVersion(v) => write!(
                f,
                "protocol version {v}, this node speaks {}",
                crate::PROTOCOL_VERSION
            ),
            Self::TooLarge { len, max } => write!(f, "frame of {len} bytes, limit {max}"),
            Self::Malformed(e) => write!(f, "malformed frame: {e}"),
        }
    }
}

impl std::error::Error for FrameError {}

fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// Most bytes one decoded message may claim, allocations included. bincode sizes a string or
/// byte buffer by the length the bytes announce *before* reading it, so without a limit a
/// 9-byte body announcing a string of 2^56 bytes aborts the process (found by fuzzing, see
/// `r9_a_string_length_past_the_limit_is_refused_not_allocated`). No message comes near it:
/// a chunk of `views::CHUNK` IPv6 routes claims under 1 MiB.
pub const DECODE_LIMIT: usize = 16 << 20;

fn decode_config() -> bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Varint,
    bincode::config::Limit<DECODE_LIMIT>,
> {
    bincode::config::standard().with_limit::<DECODE_LIMIT>()
}

/// The preamble of a stream of protocol `magic`.
pub fn preamble(magic: [u8; 4]) -> [u8; PREAMBLE_BYTES] {
    let v = crate::PROTOCOL_VERSION.to_le_bytes();
    [magic[0], magic[1], magic[2], magic[3], v[0], v[1]]
}

/// Checks a received preamble against protocol `magic`.
pub fn check_preamble(magic: [u8; 4], bytes: [u8; PREAMBLE_BYTES]) -> Result<(), FrameError> {
    if bytes[..4] != magic {
        return Err(FrameError::BadMagic);
    }
    match u16::from_le_bytes([bytes[4], bytes[5]]) {
        crate::PROTOCOL_VERSION => Ok(()),
        other => Err(FrameError::BadVersion(other)),
    }
}

/// `message` as one frame: length prefix and body.
pub fn encode<T: Serialize>(message: &T) -> Vec<u8> {
    let mut out = vec![0; LEN_BYTES];
    // INVARIANT: encoding into a Vec fails only for types serde cannot represent in bincode
    // (maps with unknown length, which these messages do not use).
    bincode::serde::encode_into_std_write(message, &mut out, config())
        .expect("bincode can encode every protocol message");
    let len = u32::try_from(out.len() - LEN_BYTES).expect("frame larger than 4 GiB");
    out[..LEN_BYTES].copy_from_slice(&len.to_le_bytes());
    out
}

/// The body length announced by a length prefix, checked against `max`.
pub fn body_len(prefix: [u8; LEN_BYTES], max: usize) -> Result<usize, FrameError> {
    let len = u32::from_le_bytes(prefix) as usize;
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    Ok(len)
}

/// Decodes a frame body (without its length prefix); every byte must be used.
pub fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, FrameError> {
    let (value, used) = bincode::serde::decode_from_slice(body, decode_config())
        .map_err(|e| FrameError::Malformed(e.to_string()))?;
    if used != body.len() {
        return Err(FrameError::Malformed(format!(
            "{} bytes left over",
            body.len() - used
        )));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    // See: issue 9 (fuzzing). A view request whose name announces 0x0123456789abcdef bytes
    // made the view server allocate that much, and abort.
    #[test]
    fn r9_a_string_length_past_the_limit_is_refused_not_allocated() {
        let body = [253, 0xef, 0xcd, 0xab, 0x89, 0x67, 0x45, 0x23, 0x01];
        assert!(matches!(
            decode::<crate::views::ViewRequest>(&body),
            Err(FrameError::Malformed(_))
        ));
        let refused = [4, 253, 0, 0, 0, 0, 0, 0, 0, 0x10];
        assert!(matches!(
            decode::<crate::views::ViewFrame>(&refused),
            Err(FrameError::Malformed(_))
        ));
        // Within the limit, a length that the body does not hold is refused too.
        let short = [252, 0, 0, 0x10, 0];
        assert!(decode::<crate::views::ViewRequest>(&short).is_err());
    }
}
