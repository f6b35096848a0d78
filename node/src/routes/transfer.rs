//! [P] A route view as the frames of a transfer between nodes (`proto::views`), and back.
//!
//! [`encode`] runs once per view change on the owner (the frames are then served as they
//! are); [`ViewDecoder`] checks every frame a peer sends as it arrives: order, bounds, path
//! references, counts and finally the digest. A view that fails any check is dropped whole:
//! a half-received or tampered view never reaches answers.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use sparrow_proto::frame::{self, FrameError};
use sparrow_proto::views::{CHUNK, MAX_PREFIXES, Route4, Route6, ViewFrame, ViewHeader};

use super::RouteView;
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
    /// A frame came where it may not (e.g. paths after routes, or a second header).
    #[error("unexpected {0} frame")]
    Unexpected(&'static str),
    /// More prefixes or paths than the header announced, or than any view may hold.
    #[error("more {what} than announced ({announced})")]
    TooMany {
        /// `prefixes` or `paths`.
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
    /// A route refers to a path that was not sent.
    #[error("route {prefix} refers to path {index} of {paths}")]
    BadPath {
        /// The route.
        prefix: IpNet,
        /// The index it names.
        index: u32,
        /// Paths received.
        paths: usize,
    },
    /// `End` came before everything announced did.
    #[error("transfer ended with {got} of {announced} {what}")]
    Short {
        /// `prefixes` or `paths`.
        what: &'static str,
        /// Received.
        got: u64,
        /// Announced.
        announced: u64,
    },
    /// The bytes received do not hash to the announced digest.
    #[error("digest {got:016x} does not match the announced {announced:016x}")]
    Digest {
        /// Computed.
        got: u64,
        /// Announced.
        announced: u64,
    },
}

/// Encodes `view` as version `version`.
pub fn encode(view: &RouteView, version: u64) -> EncodedView {
    let mut routes: Vec<&(IpNet, Box<[u32]>)> = view.entries().iter().collect();
    routes.sort_unstable_by_key(|(net, _)| sort_key(net));
    let mut path_ids: HashMap<&[u32], u32> = HashMap::new();
    let mut paths: Vec<Vec<u32>> = Vec::new();
    let mut v4 = Vec::new();
    let mut v6 = Vec::new();
    for (net, path) in routes {
        let next = u32::try_from(paths.len()).expect("fewer than 2^32 distinct paths");
        let id = *path_ids.entry(path).or_insert_with(|| {
            paths.push(path.to_vec());
            next
        });
        match net {
            IpNet::V4(n) => v4.push(Route4 {
                addr: u32::from(n.network()),
                len: n.prefix_len(),
                path: id,
            }),
            IpNet::V6(n) => v6.push(Route6 {
                addr: u128::from(n.network()),
                len: n.prefix_len(),
                path: id,
            }),
        }
    }
    let mut frames = Vec::new();
    frames.extend(
        paths
            .chunks(CHUNK)
            .map(|c| frame::encode(&ViewFrame::Paths(c.to_vec()))),
    );
    frames.extend(
        v4.chunks(CHUNK)
            .map(|c| frame::encode(&ViewFrame::V4(c.to_vec()))),
    );
    frames.extend(
        v6.chunks(CHUNK)
            .map(|c| frame::encode(&ViewFrame::V6(c.to_vec()))),
    );
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
            paths: paths.len() as u64,
        },
        frames,
    }
}

/// Sort order of routes on the wire: IPv4 first, then by address, then by length.
fn sort_key(net: &IpNet) -> (bool, u128, u8) {
    match net {
        IpNet::V4(n) => (false, u128::from(u32::from(n.network())), n.prefix_len()),
        IpNet::V6(n) => (true, u128::from(n.network()), n.prefix_len()),
    }
}

/// Rebuilds a view from the frames that follow a header, checking each as it comes.
#[derive(Debug)]
pub struct ViewDecoder {
    header: ViewHeader,
    hasher: StableHasher,
    paths: Vec<Box<[u32]>>,
    entries: Vec<(IpNet, Box<[u32]>)>,
    last: Option<(bool, u128, u8)>,
}

impl ViewDecoder {
    /// Starts decoding the view `header` announces.
    pub fn new(header: ViewHeader) -> Result<Self, TransferError> {
        if header.prefixes > MAX_PREFIXES {
            return Err(TransferError::TooMany {
                what: "prefixes",
                announced: MAX_PREFIXES,
            });
        }
        if header.paths > header.prefixes {
            return Err(TransferError::TooMany {
                what: "paths",
                announced: header.prefixes,
            });
        }
        Ok(Self {
            header,
            hasher: StableHasher::default(),
            paths: Vec::new(),
            // INVARIANT: bounded by MAX_PREFIXES above.
            entries: Vec::with_capacity(header.prefixes as usize),
            last: None,
        })
    }

    /// Takes the body of the next frame (without its length prefix). Returns the view once
    /// `End` arrives and everything checks out.
    pub fn push(&mut self, body: &[u8]) -> Result<Option<RouteView>, TransferError> {
        let message: ViewFrame = frame::decode(body)?;
        if !matches!(message, ViewFrame::End) {
            // INVARIANT: bodies are bounded by MAX_FRAME, far below 4 GiB.
            self.hasher.write(&(body.len() as u32).to_le_bytes());
            self.hasher.write(body);
        }
        match message {
            ViewFrame::Paths(paths) => {
                if !self.entries.is_empty() {
                    return Err(TransferError::Unexpected("paths after routes"));
                }
                if (self.paths.len() + paths.len()) as u64 > self.header.paths {
                    return Err(TransferError::TooMany {
                        what: "paths",
                        announced: self.header.paths,
                    });
                }
                self.paths
                    .extend(paths.into_iter().map(Vec::into_boxed_slice));
            }
            ViewFrame::V4(routes) => {
                for r in routes {
                    let net = Ipv4Net::new(Ipv4Addr::from(r.addr), r.len).map_err(|_| {
                        TransferError::BadPrefix(format!("{}/{}", Ipv4Addr::from(r.addr), r.len))
                    })?;
                    self.route(IpNet::V4(net), r.path)?;
                }
            }
            ViewFrame::V6(routes) => {
                for r in routes {
                    let net = Ipv6Net::new(Ipv6Addr::from(r.addr), r.len).map_err(|_| {
                        TransferError::BadPrefix(format!("{}/{}", Ipv6Addr::from(r.addr), r.len))
                    })?;
                    self.route(IpNet::V6(net), r.path)?;
                }
            }
            ViewFrame::End => return self.finish().map(Some),
            ViewFrame::Header(_) => return Err(TransferError::Unexpected("second header")),
            ViewFrame::Refused { .. } => {
                return Err(TransferError::Unexpected("refusal inside a transfer"));
            }
        }
        Ok(None)
    }

    fn route(&mut self, net: IpNet, path: u32) -> Result<(), TransferError> {
        if net.trunc() != net {
            return Err(TransferError::BadPrefix(net.to_string()));
        }
        let key = sort_key(&net);
        if self.last.is_some_and(|last| last >= key) {
            return Err(TransferError::OutOfOrder(net));
        }
        self.last = Some(key);
        if self.entries.len() as u64 >= self.header.prefixes {
            return Err(TransferError::TooMany {
                what: "prefixes",
                announced: self.header.prefixes,
            });
        }
        let Some(p) = self.paths.get(path as usize) else {
            return Err(TransferError::BadPath {
                prefix: net,
                index: path,
                paths: self.paths.len(),
            });
        };
        self.entries.push((net, p.clone()));
        Ok(())
    }

    fn finish(&mut self) -> Result<RouteView, TransferError> {
        let short = |what, got: usize, announced| TransferError::Short {
            what,
            got: got as u64,
            announced,
        };
        if self.paths.len() as u64 != self.header.paths {
            return Err(short("paths", self.paths.len(), self.header.paths));
        }
        if self.entries.len() as u64 != self.header.prefixes {
            return Err(short("prefixes", self.entries.len(), self.header.prefixes));
        }
        let got = self.hasher.finish();
        if got != self.header.digest {
            return Err(TransferError::Digest {
                got,
                announced: self.header.digest,
            });
        }
        Ok(RouteView::new(std::mem::take(&mut self.entries)))
    }
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

    fn decode_all(e: &EncodedView) -> Result<RouteView, TransferError> {
        let mut d = ViewDecoder::new(e.header)?;
        for f in &e.frames {
            if let Some(view) = d.push(&f[frame::LEN_BYTES..])? {
                return Ok(view);
            }
        }
        panic!("no End frame");
    }

    fn sorted(view: &RouteView) -> Vec<String> {
        let mut v: Vec<String> = view
            .entries()
            .iter()
            .map(|(n, p)| format!("{n} {p:?}"))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_view_survives_the_trip_and_encodes_the_same_whatever_its_order() {
        let (view, _) = parse_route_view(VIEW);
        let e = encode(&view, 7);
        assert_eq!(e.header.version, 7);
        assert_eq!(e.header.prefixes, 5);
        // Two routes share 64497, two 64510 64520; 192.0.2.0/24 has the empty path.
        assert_eq!(e.header.paths, 3);
        let back = decode_all(&e).unwrap();
        assert_eq!(sorted(&back), sorted(&view));
        // The same routes in another order: the same bytes and digest.
        let reversed: String = VIEW.lines().rev().map(|l| format!("{l}\n")).collect();
        let e2 = encode(&parse_route_view(&reversed).0, 7);
        assert_eq!(e2.header, e.header);
        assert_eq!(e2.frames, e.frames);
        // A different path: a different digest.
        let changed = VIEW.replace("100.64.2.0/24 64497", "100.64.2.0/24 64497 64496");
        assert_ne!(
            encode(&parse_route_view(&changed).0, 7).header.digest,
            e.header.digest
        );
    }

    #[test]
    fn empty_and_large_views_round_trip() {
        let empty = encode(&RouteView::new(Vec::new()), 1);
        assert_eq!(empty.frames.len(), 1);
        assert_eq!(decode_all(&empty).unwrap().len(), 0);
        let text: String = (0..100_000u32)
            .map(|i| format!("{}/32 {} {}\n", Ipv4Addr::from(i << 8), i % 7, i % 1000))
            .collect();
        let (view, _) = parse_route_view(&text);
        let e = encode(&view, 1);
        assert!(e.frames.len() > 4, "chunked");
        assert_eq!(decode_all(&e).unwrap().len(), 100_000);
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
        let run = |header: ViewHeader, frames: &[Vec<u8>]| -> Result<RouteView, TransferError> {
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
        // Routes out of order, host bits, a path that was never sent, paths after routes.
        let paths = body(&ViewFrame::Paths(vec![vec![1]]));
        let r = |addr: u32, len: u8, path: u32| Route4 { addr, len, path };
        let h = ViewHeader {
            version: 1,
            digest: 0,
            prefixes: 2,
            paths: 1,
        };
        let bad = [
            (
                vec![r(0x0a00_0000, 8, 0), r(0x0900_0000, 8, 0)],
                "out of order",
            ),
            (vec![r(0x0a00_0001, 8, 0)], "invalid prefix"),
            (vec![r(0x0a00_0000, 33, 0)], "invalid prefix"),
            (vec![r(0x0a00_0000, 8, 5)], "refers to path 5"),
        ];
        for (routes, want) in bad {
            let frames = [
                paths.clone(),
                body(&ViewFrame::V4(routes)),
                body(&ViewFrame::End),
            ];
            let e = run(h, &frames).unwrap_err().to_string();
            assert!(e.contains(want), "{e}");
        }
        let frames = [
            body(&ViewFrame::V4(vec![])),
            paths.clone(),
            body(&ViewFrame::End),
        ];
        assert!(run(h, &frames).is_err());
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
