//! [P] A route view as the frames of a transfer between nodes (`proto::views`), and back as
//! the [`HopRanges`] the receiver keeps (prefixes and AS hops; paths stay with the owner).
//!
//! [`encode`] runs once per view change on the owner (the frames are then served as they
//! are); [`ViewDecoder`] checks every frame a peer sends as it arrives: order, bounds, path
//! references, counts and finally the digest. A view that fails any check is dropped whole:
//! a half-received or tampered view never reaches answers.

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use sparrow_proto::frame::{self, FrameError};
use sparrow_proto::views::{
    CHUNK, FrameRoutes, MAGIC, MAX_FRAME, MAX_PREFIXES, Route4, Route6, RouteCursor, ViewFrame,
    ViewHeader, max_body_bytes, read_routes,
};

use std::io::Read;

use super::decision::HopSource;
use super::lpm::Flattener;
use super::view::{HopRanges, RouteView};
use crate::policy::StableHasher;

/// A view ready to send: its header and the framed bytes that follow it.
#[derive(Debug)]
pub struct EncodedView {
    /// Version, digest and counts.
    pub header: ViewHeader,
    /// Every frame after the header, length prefix included, `End` last.
    pub frames: Vec<Vec<u8>>,
}

impl EncodedView {
    /// Bytes on the wire after the header.
    pub fn body_bytes(&self) -> usize {
        self.frames.iter().map(Vec::len).sum()
    }
}

/// Why a received view was dropped.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TransferError {
    /// A frame did not decode.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The owner refused to send the view.
    #[error("peer refused: {0}")]
    Refused(String),
    /// A frame came where it may not (e.g. a second header).
    #[error("unexpected {0} frame")]
    Unexpected(&'static str),
    /// More prefixes than the header announced, or than any view may hold.
    #[error("more {what} than announced ({announced})")]
    TooMany {
        /// What there was too much of.
        what: &'static str,
        /// What the header said.
        announced: u64,
    },
    /// A route is not in strictly increasing (address, length) order.
    #[error("routes out of order at {0}")]
    OutOfOrder(IpNet),
    /// A route with host bits set or an impossible length.
    #[error("invalid prefix {0}")]
    BadPrefix(String),
    /// `End` came before everything announced did.
    #[error("transfer ended with {got} of {announced} {what}")]
    Short {
        /// What was short.
        what: &'static str,
        /// Received.
        got: u64,
        /// Announced.
        announced: u64,
    },
    /// The peer sent more bytes than its header leaves room for.
    #[error(
        "peer sent more than its header allows ({prefixes} prefixes: at most {limit} bytes after it)"
    )]
    Oversize {
        /// Prefixes announced.
        prefixes: u64,
        /// Bytes allowed after the header ([`sparrow_proto::views::max_body_bytes`]).
        limit: u64,
    },
    /// The bytes could not be read (a view kept on disk).
    #[error("read failed: {0}")]
    Read(String),
    /// The bytes received do not hash to the announced digest.
    #[error("digest {got:016x} does not match the announced {announced:016x}")]
    Digest {
        /// Computed.
        got: u64,
        /// Announced.
        announced: u64,
    },
}

/// Encodes `view` as version `version`: its prefixes with their AS hops.
pub fn encode(view: &RouteView, version: u64) -> EncodedView {
    let mut v4: Vec<(u32, u8, u8)> = Vec::new();
    let mut v6: Vec<(u128, u8, u8)> = Vec::new();
    for (net, path) in view.entries() {
        let hops = RouteView::hops_of(path);
        match net {
            IpNet::V4(n) => v4.push((u32::from(n.network()), n.prefix_len(), hops)),
            IpNet::V6(n) => v6.push((u128::from(n.network()), n.prefix_len(), hops)),
        }
    }
    v4.sort_unstable_by_key(|&(a, l, _)| (a, l));
    v6.sort_unstable_by_key(|&(a, l, _)| (a, l));
    let mut frames = Vec::new();
    frames.extend(v4.chunks(CHUNK).map(|c| {
        let mut prev = 0u32;
        let routes = c
            .iter()
            .map(|&(addr, len, hops)| {
                let gap = addr - prev;
                prev = addr;
                Route4 { gap, len, hops }
            })
            .collect();
        frame::encode(&ViewFrame::V4(routes))
    }));
    frames.extend(v6.chunks(CHUNK).map(|c| {
        let mut prev = 0u64;
        let routes = c
            .iter()
            .map(|&(addr, len, hops)| {
                let hi = (addr >> 64) as u64;
                let gap_hi = hi - prev;
                prev = hi;
                Route6 {
                    gap_hi,
                    lo: addr as u64,
                    len,
                    hops,
                }
            })
            .collect();
        frame::encode(&ViewFrame::V6(routes))
    }));
    let mut hasher = StableHasher::default();
    for f in &frames {
        hasher.write(f);
    }
    frames.push(frame::encode(&ViewFrame::End));
    EncodedView {
        header: ViewHeader {
            version,
            digest: hasher.finish(),
            prefixes: view.len() as u64,
        },
        frames,
    }
}

/// The checks every received view goes through, frame by frame, whether its routes are
/// collected ([`ViewDecoder`]) or streamed ([`ViewStream`]): bounds, order, counts, digest.
#[derive(Debug)]
struct Checks {
    header: ViewHeader,
    hasher: StableHasher,
    routes: u64,
    /// The last route's `(is IPv6, address, length)`.
    last: Option<(bool, u128, u8)>,
}

impl Checks {
    fn new(header: ViewHeader) -> Result<Self, TransferError> {
        if header.prefixes > MAX_PREFIXES {
            return Err(TransferError::TooMany {
                what: "prefixes",
                announced: MAX_PREFIXES,
            });
        }
        Ok(Self {
            header,
            hasher: StableHasher::default(),
            routes: 0,
            last: None,
        })
    }

    /// Decodes the body of a frame (without its length prefix) and adds it to the digest.
    fn frame(&mut self, body: &[u8]) -> Result<ViewFrame, TransferError> {
        let message: ViewFrame = frame::decode(body)?;
        if !matches!(message, ViewFrame::End) {
            self.digest(body);
        }
        Ok(message)
    }

    /// Opens the body of a frame for reading in place and adds it to the digest.
    fn frame_in_place(&mut self, body: &[u8]) -> Result<FrameRoutes, TransferError> {
        let message = read_routes(body)?;
        if !matches!(message, FrameRoutes::Other(ViewFrame::End)) {
            self.digest(body);
        }
        Ok(message)
    }

    fn digest(&mut self, body: &[u8]) {
        // INVARIANT: bodies are bounded by MAX_FRAME, far below 4 GiB.
        self.hasher.write(&(body.len() as u32).to_le_bytes());
        self.hasher.write(body);
    }

    /// Checks the next IPv4 route of a chunk (`prev`: the previous address in the chunk);
    /// returns its network address and length.
    fn v4(&mut self, prev: &mut u32, r: &Route4) -> Result<(u32, u8), TransferError> {
        let addr = prev
            .checked_add(r.gap)
            .ok_or_else(|| TransferError::BadPrefix("IPv4 address past the end".into()))?;
        *prev = addr;
        let host = u32::MAX.checked_shr(u32::from(r.len)).unwrap_or(0);
        if r.len > 32 || addr & host != 0 {
            return Err(TransferError::BadPrefix(format!(
                "{}/{}",
                Ipv4Addr::from(addr),
                r.len
            )));
        }
        self.route((false, u128::from(addr), r.len), || {
            IpNet::V4(Ipv4Net::new(Ipv4Addr::from(addr), r.len).unwrap_or_default())
        })?;
        Ok((addr, r.len))
    }

    /// Checks the next IPv6 route of a chunk, as [`Self::v4`].
    fn v6(&mut self, prev: &mut u64, r: &Route6) -> Result<(u128, u8), TransferError> {
        let hi = prev
            .checked_add(r.gap_hi)
            .ok_or_else(|| TransferError::BadPrefix("IPv6 address past the end".into()))?;
        *prev = hi;
        let addr = (u128::from(hi) << 64) | u128::from(r.lo);
        let host = u128::MAX.checked_shr(u32::from(r.len)).unwrap_or(0);
        if r.len > 128 || addr & host != 0 {
            return Err(TransferError::BadPrefix(format!(
                "{}/{}",
                Ipv6Addr::from(addr),
                r.len
            )));
        }
        self.route((true, addr, r.len), || {
            IpNet::V6(Ipv6Net::new(Ipv6Addr::from(addr), r.len).unwrap_or_default())
        })?;
        Ok((addr, r.len))
    }

    /// Checks that a route comes strictly after the previous one and within the count.
    fn route(
        &mut self,
        key: (bool, u128, u8),
        net: impl FnOnce() -> IpNet,
    ) -> Result<(), TransferError> {
        if self.last.is_some_and(|last| last >= key) {
            return Err(TransferError::OutOfOrder(net()));
        }
        self.last = Some(key);
        if self.routes >= self.header.prefixes {
            return Err(TransferError::TooMany {
                what: "prefixes",
                announced: self.header.prefixes,
            });
        }
        self.routes += 1;
        Ok(())
    }

    /// At `End`: everything announced came, and the digest matches.
    fn end(&self) -> Result<(), TransferError> {
        if self.routes != self.header.prefixes {
            return Err(TransferError::Short {
                what: "prefixes",
                got: self.routes,
                announced: self.header.prefixes,
            });
        }
        let digest = self.hasher.finish();
        if digest != self.header.digest {
            return Err(TransferError::Digest {
                got: digest,
                announced: self.header.digest,
            });
        }
        Ok(())
    }
}

/// Rebuilds a view from the frames that follow a header, checking each as it comes.
#[derive(Debug)]
pub struct ViewDecoder {
    checks: Checks,
    v4: Vec<(u32, u8, u32)>,
    v6: Vec<(u128, u8, u32)>,
    /// `End` has been read and checked.
    ended: bool,
}

impl ViewDecoder {
    /// Starts decoding the view `header` announces.
    pub fn new(header: ViewHeader) -> Result<Self, TransferError> {
        Ok(Self {
            checks: Checks::new(header)?,
            v4: Vec::new(),
            v6: Vec::new(),
            ended: false,
        })
    }

    /// Takes the body of the next frame (without its length prefix). Returns the view once
    /// `End` arrives and everything checks out.
    pub fn push(&mut self, body: &[u8]) -> Result<Option<HopRanges>, TransferError> {
        Ok(if self.push_frame(body)? {
            self.finish()
        } else {
            None
        })
    }

    /// [`Self::push`] without building the view: whether `End` has arrived and everything
    /// checks out, after which [`Self::finish`] builds it. Checking a frame is cheap (it can
    /// run as the frame arrives); building the view is not (it runs where heavy work goes).
    pub fn push_frame(&mut self, body: &[u8]) -> Result<bool, TransferError> {
        match self.checks.frame(body)? {
            ViewFrame::V4(routes) => {
                let mut prev = 0u32;
                for r in &routes {
                    let (addr, len) = self.checks.v4(&mut prev, r)?;
                    self.v4.push((addr, len, u32::from(r.hops)));
                }
            }
            ViewFrame::V6(routes) => {
                let mut prev = 0u64;
                for r in &routes {
                    let (addr, len) = self.checks.v6(&mut prev, r)?;
                    self.v6.push((addr, len, u32::from(r.hops)));
                }
            }
            ViewFrame::End => {
                self.checks.end()?;
                self.ended = true;
                return Ok(true);
            }
            ViewFrame::Header(_) => return Err(TransferError::Unexpected("second header")),
            ViewFrame::Refused { .. } => {
                return Err(TransferError::Unexpected("refusal inside a transfer"));
            }
        }
        Ok(false)
    }

    /// The view, once [`Self::push_frame`] has returned `true` (`None` before, and after
    /// it has been taken).
    pub fn finish(&mut self) -> Option<HopRanges> {
        if !std::mem::take(&mut self.ended) {
            return None;
        }
        Some(HopRanges::from_parts(
            std::mem::take(&mut self.v4),
            std::mem::take(&mut self.v6),
        ))
    }
}

/// A transfer as it arrives from its owner, frame by frame (sans-IO: the caller reads the
/// bytes into the room this gives it). Every frame goes through [`ViewDecoder`]'s checks as
/// it comes, and the header sets a byte budget ([`max_body_bytes`] of the prefixes it
/// announces): a length prefix that goes past it is refused before its body is read, so a
/// peer lying about sizes makes its puller hold at most what its own header allows.
#[derive(Debug)]
pub struct Incoming {
    header: ViewHeader,
    decoder: ViewDecoder,
    /// Bytes still allowed after the header.
    left: u64,
    /// The transfer as received (preamble, header, frames): the form kept on disk.
    bytes: Vec<u8>,
    /// Where the body of the frame being read starts in `bytes`.
    body: usize,
}

impl Incoming {
    /// Largest first frame: a header, or a refusal and its reason.
    pub const MAX_FIRST_FRAME: usize = 1024;

    /// Starts a transfer from the body of its first frame (after the preamble).
    pub fn open(first: &[u8]) -> Result<Self, TransferError> {
        let header = match frame::decode::<ViewFrame>(first)? {
            ViewFrame::Header(h) => h,
            ViewFrame::Refused { reason } => return Err(TransferError::Refused(reason)),
            _ => return Err(TransferError::Unexpected("data without a header")),
        };
        let decoder = ViewDecoder::new(header)?;
        let mut bytes = Vec::with_capacity(frame::PREAMBLE_BYTES + frame::LEN_BYTES + first.len());
        bytes.extend_from_slice(&frame::preamble(MAGIC));
        // INVARIANT: the first frame is at most MAX_FIRST_FRAME bytes.
        bytes.extend_from_slice(&(first.len() as u32).to_le_bytes());
        bytes.extend_from_slice(first);
        Ok(Self {
            header,
            decoder,
            left: max_body_bytes(header.prefixes),
            body: bytes.len(),
            bytes,
        })
    }

    /// The header: version, digest, prefixes announced.
    pub fn header(&self) -> ViewHeader {
        self.header
    }

    /// Bytes received and held so far.
    pub fn received(&self) -> usize {
        self.bytes.len()
    }

    /// Takes the next frame's length prefix and returns the room to read its body into;
    /// refuses a frame that does not fit the budget or [`MAX_FRAME`].
    pub fn frame_body(
        &mut self,
        prefix: [u8; frame::LEN_BYTES],
    ) -> Result<&mut [u8], TransferError> {
        let whole = u64::from(u32::from_le_bytes(prefix)) + frame::LEN_BYTES as u64;
        if whole > self.left {
            return Err(TransferError::Oversize {
                prefixes: self.header.prefixes,
                limit: max_body_bytes(self.header.prefixes),
            });
        }
        let len = frame::body_len(prefix, MAX_FRAME)?;
        self.left -= whole;
        // Grow by doubling, but never past what the budget still allows.
        let need = self.bytes.len() + frame::LEN_BYTES + len;
        if need > self.bytes.capacity() {
            // INVARIANT: the budget is at most MAX_TRANSFER, far below usize::MAX.
            let cap = (self.bytes.capacity() * 2).min(need + self.left as usize);
            self.bytes.reserve_exact(cap.max(need) - self.bytes.len());
        }
        self.bytes.extend_from_slice(&prefix);
        self.body = self.bytes.len();
        self.bytes.resize(need, 0);
        Ok(&mut self.bytes[self.body..])
    }

    /// Checks the frame whose body was just read; `true` once `End` has come and the whole
    /// transfer checks out.
    pub fn push(&mut self) -> Result<bool, TransferError> {
        self.decoder.push_frame(&self.bytes[self.body..])
    }

    /// The header, the view (built here: the heavy part) and the bytes as received, once
    /// [`Self::push`] has returned `true`.
    pub fn finish(mut self) -> Option<(ViewHeader, HopRanges, Vec<u8>)> {
        let view = self.decoder.finish()?;
        Some((self.header, view, self.bytes))
    }
}

/// A transfer read frame by frame from a byte stream (a view kept on disk), its routes
/// handed out as hop ranges, IPv4 then IPv6, as they are read: the form in which decision
/// tables are built from many views at once ([`crate::routes::DecisionTable::with_sources`])
/// without holding any of them whole (one frame's bytes, read in place). Every frame is
/// checked as [`ViewDecoder`] checks it; the counts and the digest can only be checked at
/// `End`, after the last range, so a caller must not use what it built from a stream until
/// the stream has ended without an error.
#[derive(Debug)]
pub struct ViewStream<R> {
    reader: R,
    checks: Checks,
    /// The body of the frame being read (reused).
    body: Vec<u8>,
    /// Where the routes of `body` are read from, and of which family (`None`: no routes
    /// left in it).
    routes: Option<(bool, RouteCursor)>,
    /// The previous address in the frame, per family.
    prev4: u32,
    prev6: u64,
    /// `End` has been read and checked.
    ended: bool,
    /// A read failed: every later one fails too.
    failed: bool,
    flat4: Flattener<u32>,
    flat6: Flattener<u128>,
}

impl<R: Read> ViewStream<R> {
    /// Reads the preamble and the header.
    pub fn open(mut reader: R) -> Result<Self, TransferError> {
        let mut preamble = [0u8; frame::PREAMBLE_BYTES];
        read_exact(&mut reader, &mut preamble, "end of data in the preamble")?;
        frame::check_preamble(MAGIC, preamble)?;
        let mut body = Vec::new();
        read_frame(&mut reader, &mut body)?;
        let header = match frame::decode::<ViewFrame>(&body)? {
            ViewFrame::Header(h) => h,
            ViewFrame::Refused { reason } => return Err(TransferError::Refused(reason)),
            _ => return Err(TransferError::Unexpected("data without a header")),
        };
        Ok(Self {
            reader,
            checks: Checks::new(header)?,
            body,
            routes: None,
            prev4: 0,
            prev6: 0,
            ended: false,
            failed: false,
            flat4: Flattener::default(),
            flat6: Flattener::default(),
        })
    }

    /// The header: version, digest, prefixes announced.
    pub fn header(&self) -> ViewHeader {
        self.checks.header
    }

    /// Reads and checks the next frame, leaving its routes (if any) to read; `End` is
    /// checked here.
    fn next_frame(&mut self) -> Result<(), TransferError> {
        read_frame(&mut self.reader, &mut self.body)?;
        self.routes = match self.checks.frame_in_place(&self.body)? {
            FrameRoutes::V4(cursor) => {
                self.prev4 = 0;
                Some((false, cursor))
            }
            FrameRoutes::V6(cursor) => {
                self.prev6 = 0;
                Some((true, cursor))
            }
            FrameRoutes::Other(ViewFrame::End) => {
                self.checks.end()?;
                self.ended = true;
                None
            }
            FrameRoutes::Other(ViewFrame::Header(_)) => {
                return Err(TransferError::Unexpected("second header"));
            }
            FrameRoutes::Other(_) => {
                return Err(TransferError::Unexpected("refusal inside a transfer"));
            }
        };
        Ok(())
    }

    /// The next route of the current frame, or of the next ones, while they are of family
    /// `v6`; `None` at the first frame of the other family (kept for later) or at `End`.
    fn next_route(&mut self, v6: bool) -> Result<Option<(u128, u8, u8)>, TransferError> {
        loop {
            match &mut self.routes {
                Some((false, cursor)) => match cursor.next_v4(&self.body)? {
                    Some(r) if !v6 => {
                        let (addr, len) = self.checks.v4(&mut self.prev4, &r)?;
                        return Ok(Some((u128::from(addr), len, r.hops)));
                    }
                    // IPv4 after IPv6: the order check refuses it.
                    Some(r) => {
                        self.checks.v4(&mut self.prev4, &r)?;
                    }
                    None => self.routes = None,
                },
                Some((true, cursor)) => {
                    if !v6 {
                        // The first IPv6 frame: the IPv4 routes are over.
                        return Ok(None);
                    }
                    match cursor.next_v6(&self.body)? {
                        Some(r) => {
                            let (addr, len) = self.checks.v6(&mut self.prev6, &r)?;
                            return Ok(Some((addr, len, r.hops)));
                        }
                        None => self.routes = None,
                    }
                }
                None if self.ended => return Ok(None),
                None => self.next_frame()?,
            }
        }
    }
}

impl<R: Read> HopSource for ViewStream<R> {
    type Error = TransferError;

    fn next_v4(&mut self) -> Result<Option<(u32, u32)>, TransferError> {
        self.fused(Self::read_v4)
    }

    fn next_v6(&mut self) -> Result<Option<(u128, u32)>, TransferError> {
        self.fused(Self::read_v6)
    }
}

impl<R: Read> ViewStream<R> {
    /// Runs `read`, unless an earlier read failed: the reader then stands anywhere in a
    /// frame, and nothing read after it may pass for a view (found by fuzzing: reading on
    /// after an error could end "cleanly").
    fn fused<T>(
        &mut self,
        read: impl FnOnce(&mut Self) -> Result<T, TransferError>,
    ) -> Result<T, TransferError> {
        if self.failed {
            return Err(TransferError::Unexpected("read after an error"));
        }
        let result = read(self);
        self.failed = result.is_err();
        result
    }

    fn read_v4(&mut self) -> Result<Option<(u32, u32)>, TransferError> {
        loop {
            if let Some(range) = self.flat4.next_final() {
                return Ok(Some(range));
            }
            if self.flat4.is_closed() {
                return Ok(None);
            }
            match self.next_route(false)? {
                // INVARIANT: IPv4 routes carry 32-bit addresses.
                Some((addr, len, hops)) => self.flat4.prefix(addr as u32, len, u32::from(hops)),
                None => self.flat4.close(),
            }
        }
    }

    fn read_v6(&mut self) -> Result<Option<(u128, u32)>, TransferError> {
        // IPv6 routes come after every IPv4 route: read past any the caller skipped.
        while self.read_v4()?.is_some() {}
        loop {
            if let Some(range) = self.flat6.next_final() {
                return Ok(Some(range));
            }
            if self.flat6.is_closed() {
                return Ok(None);
            }
            match self.next_route(true)? {
                Some((addr, len, hops)) => self.flat6.prefix(addr, len, u32::from(hops)),
                None => {
                    self.flat6.close();
                    self.body = Vec::new();
                }
            }
        }
    }
}

/// Reads exactly `buf.len()` bytes; the end of the data is `eof`.
fn read_exact(
    reader: &mut impl Read,
    buf: &mut [u8],
    eof: &'static str,
) -> Result<(), TransferError> {
    reader.read_exact(buf).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => TransferError::Unexpected(eof),
        _ => TransferError::Read(e.to_string()),
    })
}

/// Reads one frame's length prefix and body into `body`.
fn read_frame(reader: &mut impl Read, body: &mut Vec<u8>) -> Result<(), TransferError> {
    let mut len = [0u8; frame::LEN_BYTES];
    read_exact(reader, &mut len, "end of data in a frame length")?;
    let len = frame::body_len(len, MAX_FRAME)?;
    body.resize(len, 0);
    read_exact(reader, body, "end of data in a frame")
}

/// A whole transfer as one buffer (preamble, header, frames through `End`): the form a node
/// keeps a pulled view in on disk. Returns the header and the view, checked as a pull is.
pub fn decode_stream(bytes: &[u8]) -> Result<(ViewHeader, HopRanges), TransferError> {
    let rest = bytes
        .split_at_checked(frame::PREAMBLE_BYTES)
        .ok_or(TransferError::Unexpected("end of data in the preamble"))?;
    // INVARIANT: split_at_checked gave exactly PREAMBLE_BYTES.
    frame::check_preamble(MAGIC, rest.0.try_into().expect("preamble length"))?;
    let mut rest = rest.1;
    let mut next = || -> Result<&[u8], TransferError> {
        let (len, tail) = rest
            .split_at_checked(frame::LEN_BYTES)
            .ok_or(TransferError::Unexpected("end of data in a frame length"))?;
        // INVARIANT: split_at_checked gave exactly LEN_BYTES.
        let len = frame::body_len(len.try_into().expect("length prefix"), MAX_FRAME)?;
        let (body, tail) = tail
            .split_at_checked(len)
            .ok_or(TransferError::Unexpected("end of data in a frame"))?;
        rest = tail;
        Ok(body)
    };
    let header = match frame::decode::<ViewFrame>(next()?)? {
        ViewFrame::Header(h) => h,
        ViewFrame::Refused { reason } => return Err(TransferError::Refused(reason)),
        _ => return Err(TransferError::Unexpected("data without a header")),
    };
    let mut decoder = ViewDecoder::new(header)?;
    loop {
        if let Some(view) = decoder.push(next()?)? {
            return Ok((header, view));
        }
    }
}

/// The stream [`decode_stream`] reads: what the owner sends for `view`.
pub fn stream_bytes(view: &EncodedView) -> Vec<u8> {
    let mut out = Vec::with_capacity(view.body_bytes() + 64);
    out.extend_from_slice(&frame::preamble(MAGIC));
    out.extend_from_slice(&frame::encode(&ViewFrame::Header(view.header)));
    for f in &view.frames {
        out.extend_from_slice(f);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::parse_route_view;

    const VIEW: &str = "\
        100.64.2.0/24 64497\n\
        10.0.0.0/8 64510 64520\n\
        100.64.1.0/24 64510 64520\n\
        2001:db8:ff02::/48 64497\n\
        192.0.2.0/24\n";

    fn decode_all(e: &EncodedView) -> Result<HopRanges, TransferError> {
        let mut d = ViewDecoder::new(e.header)?;
        for f in &e.frames {
            if let Some(view) = d.push(&f[frame::LEN_BYTES..])? {
                return Ok(view);
            }
        }
        panic!("no End frame");
    }

    /// Every address the test looks at: inside, around and between the prefixes of VIEW.
    const PROBES: [&str; 9] = [
        "100.64.2.7",
        "100.64.1.255",
        "100.64.3.0",
        "10.1.2.3",
        "11.0.0.0",
        "192.0.2.200",
        "2001:db8:ff02::1",
        "2001:db8:ff03::1",
        "0.0.0.0",
    ];

    #[test]
    fn a_view_survives_the_trip_as_hops_and_encodes_the_same_whatever_its_order() {
        let (view, _) = parse_route_view(VIEW);
        let e = encode(&view, 7);
        assert_eq!(e.header.version, 7);
        assert_eq!(e.header.prefixes, 5);
        let back = decode_all(&e).unwrap();
        assert_eq!(back.prefixes(), 5);
        for probe in PROBES {
            let addr = probe.parse().unwrap();
            let want = view.lookup(addr).entry.map(|(_, p)| RouteView::hops_of(p));
            assert_eq!(back.hops(addr), want, "{probe}");
        }
        // The same routes in another order: the same bytes and digest.
        let reversed: String = VIEW.lines().rev().map(|l| format!("{l}\n")).collect();
        let e2 = encode(&parse_route_view(&reversed).0, 7);
        assert_eq!(e2.header, e.header);
        assert_eq!(e2.frames, e.frames);
        // A different hop count: a different digest. Another path of the same length is
        // the same view as far as answers go: the same digest.
        let longer = VIEW.replace("100.64.2.0/24 64497", "100.64.2.0/24 64497 64496");
        assert_ne!(
            encode(&parse_route_view(&longer).0, 7).header.digest,
            e.header.digest
        );
        let other = VIEW.replace("100.64.2.0/24 64497", "100.64.2.0/24 64499");
        assert_eq!(
            encode(&parse_route_view(&other).0, 7).header.digest,
            e.header.digest
        );
    }

    #[test]
    fn a_whole_stream_decodes_and_any_truncation_or_flipped_byte_is_refused() {
        let (view, _) = parse_route_view(VIEW);
        let e = encode(&view, 3);
        let bytes = stream_bytes(&e);
        let (header, hops) = decode_stream(&bytes).unwrap();
        assert_eq!(header, e.header);
        assert_eq!(hops.hops("100.64.2.9".parse().unwrap()), Some(1));
        for cut in 0..bytes.len() {
            assert!(decode_stream(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x40;
            // A flipped byte never yields a view that differs from the one sent.
            if let Ok((h, v)) = decode_stream(&bad) {
                assert_eq!(h.digest, e.header.digest, "byte {i}");
                assert_eq!(v.prefixes(), 5, "byte {i}");
            }
        }
    }

    #[test]
    fn empty_and_large_views_round_trip() {
        let empty = encode(&RouteView::new(Vec::new()), 1);
        assert_eq!(empty.frames.len(), 1);
        assert_eq!(decode_all(&empty).unwrap().prefixes(), 0);
        let text: String = (0..100_000u32)
            .map(|i| format!("{}/32 {} {}\n", Ipv4Addr::from(i << 8), i % 7, i % 1000))
            .collect();
        let (view, _) = parse_route_view(&text);
        let e = encode(&view, 1);
        assert!(e.frames.len() > 3, "chunked");
        let back = decode_all(&e).unwrap();
        assert_eq!(back.prefixes(), 100_000);
        assert_eq!(back.hops(Ipv4Addr::from(99_999u32 << 8).into()), Some(2));
    }

    /// What a pull ends with: the header, the view and the bytes as received.
    type Received = Result<(ViewHeader, HopRanges, Vec<u8>), TransferError>;

    /// Feeds a whole stream (preamble, header, frames) to [`Incoming`] as a puller reads
    /// it; returns the result and the most bytes it held (length, capacity) at any point.
    fn pull(stream: &[u8]) -> (Received, usize) {
        let mut held = 0;
        let result = (|| {
            let rest = &stream[frame::PREAMBLE_BYTES..];
            let len = frame::body_len(rest[..4].try_into().unwrap(), Incoming::MAX_FIRST_FRAME)?;
            let mut incoming = Incoming::open(&rest[4..4 + len])?;
            let mut rest = &rest[4 + len..];
            loop {
                let (prefix, tail) = rest
                    .split_at_checked(4)
                    .ok_or(TransferError::Unexpected("cut"))?;
                let body = incoming.frame_body(prefix.try_into().unwrap())?;
                let (got, tail) = tail
                    .split_at_checked(body.len())
                    .ok_or(TransferError::Unexpected("cut"))?;
                body.copy_from_slice(got);
                rest = tail;
                held = held.max(incoming.bytes.capacity());
                if incoming.push()? {
                    assert!(rest.is_empty(), "bytes after End");
                    return Ok(incoming.finish().expect("ended"));
                }
            }
        })();
        (result, held)
    }

    #[test]
    fn an_owners_transfer_fits_its_budget_and_arrives_as_sent() {
        let mut texts = vec![String::new(), VIEW.to_owned()];
        // Widest routes: IPv6 host routes far apart (9-byte integers everywhere).
        texts.push(
            (0..3000u128)
                .map(|i| {
                    format!(
                        "{}/128 64500\n",
                        Ipv6Addr::from(u128::MAX - i * (u128::MAX / 4000))
                    )
                })
                .collect(),
        );
        texts.push(
            (0..70_000u32)
                .map(|i| {
                    format!(
                        "{}/32 {}\n",
                        Ipv4Addr::from(i.wrapping_mul(2_654_435_761)),
                        i % 5
                    )
                })
                .collect(),
        );
        for text in texts {
            let (view, _) = parse_route_view(&text);
            let e = encode(&view, 9);
            let bytes = stream_bytes(&e);
            assert!(e.body_bytes() as u64 <= max_body_bytes(e.header.prefixes));
            let (result, held) = pull(&bytes);
            let (header, hops, kept) = result.unwrap();
            assert_eq!(header, e.header);
            assert_eq!(hops.prefixes(), view.len() as u64);
            assert_eq!(kept, bytes, "kept as received");
            assert!(held <= bytes.len() - 6 - 4 + max_body_bytes(e.header.prefixes) as usize);
        }
    }

    #[test]
    fn a_peer_sending_more_than_its_header_allows_is_refused_before_the_excess_is_read() {
        let (view, _) = parse_route_view(VIEW);
        let honest = encode(&view, 1);
        let budget = max_body_bytes(honest.header.prefixes);
        let start = |frames: &[Vec<u8>]| {
            let mut out = frame::preamble(MAGIC).to_vec();
            out.extend(frame::encode(&ViewFrame::Header(honest.header)));
            for f in frames {
                out.extend(f);
            }
            out
        };
        let big = (0..100_000u32)
            .map(|i| Route4 {
                gap: u32::from(i > 0) << 8,
                len: 24,
                hops: 1,
            })
            .collect();
        let cases = [
            // One frame far larger than five prefixes can take.
            vec![frame::encode(&ViewFrame::V4(big))],
            // Empty chunks without end: each is small, together they are not.
            vec![frame::encode(&ViewFrame::V4(vec![])); 1000],
            // A length prefix announcing the largest frame, and nothing behind it.
            vec![((MAX_FRAME - 1) as u32).to_le_bytes().to_vec()],
        ];
        for frames in cases {
            let bytes = start(&frames);
            let (result, held) = pull(&bytes);
            assert_eq!(
                result.unwrap_err(),
                TransferError::Oversize {
                    prefixes: 5,
                    limit: budget
                }
            );
            assert!(
                held as u64 <= 64 + budget,
                "held {held} of a budget of {budget}"
            );
        }
        // More prefixes than announced within the budget: the count check refuses it.
        let fewer = ViewHeader {
            prefixes: 4,
            ..honest.header
        };
        let mut bytes = frame::preamble(MAGIC).to_vec();
        bytes.extend(frame::encode(&ViewFrame::Header(fewer)));
        for f in &honest.frames {
            bytes.extend(f);
        }
        assert!(matches!(
            pull(&bytes).0,
            Err(TransferError::TooMany { .. } | TransferError::Oversize { .. })
        ));
    }

    // See: issue 9 (fuzzing). A stream read on after an error could end as if whole.
    #[test]
    fn r9_a_stream_read_on_after_an_error_keeps_failing() {
        let (view, _) = parse_route_view(VIEW);
        let mut bytes = stream_bytes(&encode(&view, 1));
        // The first frame after the header announces 3.5 GB.
        let first = frame::PREAMBLE_BYTES
            + frame::encode(&ViewFrame::Header(encode(&view, 1).header)).len();
        bytes[first..first + 4].copy_from_slice(&0xd155_0bddu32.to_le_bytes());
        let mut stream = ViewStream::open(&bytes[..]).unwrap();
        assert!(matches!(stream.next_v4(), Err(TransferError::Frame(_))));
        assert!(stream.next_v6().is_err());
        assert!(stream.next_v4().is_err());
    }

    /// Re-frames `message` as a frame body.
    fn body(message: &ViewFrame) -> Vec<u8> {
        frame::encode(message)[frame::LEN_BYTES..].to_vec()
    }

    #[test]
    fn tampered_transfers_are_refused() {
        let (view, _) = parse_route_view(VIEW);
        let e = encode(&view, 1);
        let header = e.header;
        let frames: Vec<Vec<u8>> = e
            .frames
            .iter()
            .map(|f| f[frame::LEN_BYTES..].to_vec())
            .collect();
        let run = |header: ViewHeader, frames: &[Vec<u8>]| -> Result<HopRanges, TransferError> {
            let mut d = ViewDecoder::new(header)?;
            for f in frames {
                if let Some(v) = d.push(f)? {
                    return Ok(v);
                }
            }
            panic!("no End");
        };
        assert!(run(header, &frames).is_ok());
        // Wrong digest.
        let wrong = ViewHeader {
            digest: header.digest ^ 1,
            ..header
        };
        assert!(matches!(
            run(wrong, &frames),
            Err(TransferError::Digest { .. })
        ));
        // Fewer prefixes announced than sent; more announced than sent.
        let fewer = ViewHeader {
            prefixes: 4,
            ..header
        };
        assert!(matches!(
            run(fewer, &frames),
            Err(TransferError::TooMany {
                what: "prefixes",
                ..
            })
        ));
        let more = ViewHeader {
            prefixes: 6,
            ..header
        };
        assert!(matches!(
            run(more, &frames),
            Err(TransferError::Short {
                what: "prefixes",
                ..
            })
        ));
        // Absurd sizes are refused before anything is allocated.
        let huge = ViewHeader {
            prefixes: u64::MAX,
            ..header
        };
        assert!(ViewDecoder::new(huge).is_err());
        // Routes out of order, host bits, impossible lengths.
        // One route per chunk, so each gap is the whole address.
        let r = |gap: u32, len: u8| Route4 { gap, len, hops: 1 };
        let h = ViewHeader {
            version: 1,
            digest: 0,
            prefixes: 2,
        };
        let bad = [
            (
                vec![vec![r(0x0a00_0000, 8)], vec![r(0x0900_0000, 8)]],
                "out of order",
            ),
            (vec![vec![r(0x0a00_0000, 8), r(0, 8)]], "out of order"),
            (vec![vec![r(0x0a00_0001, 8)]], "invalid prefix"),
            (vec![vec![r(0x0a00_0000, 33)]], "invalid prefix"),
            (
                vec![vec![r(0xf000_0000, 8), r(0x2000_0000, 8)]],
                "past the end",
            ),
        ];
        for (chunks, want) in bad {
            let mut frames: Vec<Vec<u8>> = chunks
                .into_iter()
                .map(|c| body(&ViewFrame::V4(c)))
                .collect();
            frames.push(body(&ViewFrame::End));
            let e = run(h, &frames).unwrap_err().to_string();
            assert!(e.contains(want), "{e}");
        }
        // IPv4 after IPv6 is out of order too.
        let v6 = ViewFrame::V6(vec![Route6 {
            gap_hi: 1 << 56,
            lo: 0,
            len: 8,
            hops: 1,
        }]);
        let frames = [body(&v6), body(&ViewFrame::V4(vec![r(0x0a00_0000, 8)]))];
        assert!(matches!(run(h, &frames), Err(TransferError::OutOfOrder(_))));
        let frames = [body(&ViewFrame::Header(h))];
        assert_eq!(
            run(h, &frames).unwrap_err(),
            TransferError::Unexpected("second header")
        );
        assert!(matches!(
            run(h, &[vec![200, 1, 2]]),
            Err(TransferError::Frame(_))
        ));
    }
}
