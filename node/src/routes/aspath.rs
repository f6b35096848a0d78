//! [P] AS paths as BGP carries them (segments) -> the flat path a [`RouteView`] stores, whose
//! length is the hop count.
//!
//! How hops are counted, as BGP best-path selection counts them (RFC 4271 §9.1.2.2 a):
//! - every ASN of an AS_SEQUENCE is one hop (prepends included: they are the operator's way
//!   of making a path look longer, and BGP counts them too);
//! - an AS_SET (left by aggregation) is one hop whatever its size; the view stores its
//!   lowest ASN in its place, so the path's length stays its hop count and the choice does
//!   not depend on the order the set was encoded in;
//! - confederation segments (RFC 5065) are zero hops and are dropped;
//! - leading copies of the POP's own ASN are dropped: the POP's router adds its own AS when it
//!   announces to an external peer (RFC 4271 §5.1.2), and the POP is zero hops from itself.
//!   A path that is only the POP's own ASN is the POP's own network (0 hops), as an empty
//!   path in a route file is.
//!
//! [`RouteView`]: super::RouteView

/// One AS_PATH segment type (RFC 4271 §4.3, RFC 5065 §3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SegmentKind {
    /// AS_SET (1).
    Set,
    /// AS_SEQUENCE (2).
    Sequence,
    /// AS_CONFED_SEQUENCE (3) or AS_CONFED_SET (4).
    Confed,
}

impl SegmentKind {
    /// The kind of a wire segment type, if it is one.
    pub fn from_wire(code: u8) -> Option<Self> {
        match code {
            1 => Some(Self::Set),
            2 => Some(Self::Sequence),
            3 | 4 => Some(Self::Confed),
            _ => None,
        }
    }
}

/// One AS_PATH segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Its type.
    pub kind: SegmentKind,
    /// Its AS numbers, in wire order.
    pub asns: Vec<u32>,
}

impl Segment {
    /// Number of AS numbers the segment counts for in a path's length: RFC 4271 §9.1.2.2 a
    /// (an AS_SET counts 1) and RFC 5065 §5.3 (confederation segments count 0), which is also
    /// how RFC 6793 §4.2.3 counts when it merges AS4_PATH.
    pub fn hops(&self) -> usize {
        match self.kind {
            SegmentKind::Sequence => self.asns.len(),
            SegmentKind::Set => usize::from(!self.asns.is_empty()),
            SegmentKind::Confed => 0,
        }
    }
}

/// Number of hops of a whole path (see [`Segment::hops`]).
pub fn hops(path: &[Segment]) -> usize {
    path.iter().map(Segment::hops).sum()
}

/// The AS path of a route received over a 2-octet session (or recorded from one), rebuilt
/// from its AS_PATH (with AS_TRANS standing in for 4-octet ASNs) and AS4_PATH, per RFC 6793
/// §4.2.3:
///
/// - if AS_PATH counts fewer AS numbers than AS4_PATH, AS4_PATH is ignored;
/// - otherwise the path is the leading AS numbers of AS_PATH (as many as AS_PATH has more
///   than AS4_PATH), followed by AS4_PATH. A sequence that straddles the cut is cut inside;
///   confederation segments count zero and are kept when they lead or sit next to the kept
///   part.
pub fn merge_as4_path(as_path: &[Segment], as4_path: &[Segment]) -> Vec<Segment> {
    let (total, tail) = (hops(as_path), hops(as4_path));
    if total < tail {
        return as_path.to_vec();
    }
    let mut leading = total - tail;
    let mut merged = Vec::with_capacity(as_path.len() + as4_path.len());
    for segment in as_path {
        if leading == 0 {
            // A confederation segment right after the kept part still belongs to it.
            if segment.kind == SegmentKind::Confed {
                merged.push(segment.clone());
                continue;
            }
            break;
        }
        let n = segment.hops();
        if n <= leading {
            merged.push(segment.clone());
            leading -= n;
        } else {
            // Only a sequence can count more than the one AS number still wanted.
            merged.push(Segment {
                kind: SegmentKind::Sequence,
                asns: segment.asns[..leading].to_vec(),
            });
            leading = 0;
        }
    }
    merged.extend(as4_path.iter().cloned());
    merged
}

/// Builds a flat path from segments, in order (nearest AS first).
#[derive(Debug, Default)]
pub struct PathBuilder {
    asns: Vec<u32>,
}

impl PathBuilder {
    /// Appends one segment.
    pub fn push(&mut self, kind: SegmentKind, asns: &[u32]) {
        match kind {
            SegmentKind::Sequence => self.asns.extend_from_slice(asns),
            SegmentKind::Set => {
                if let Some(lowest) = asns.iter().min() {
                    self.asns.push(*lowest);
                }
            }
            SegmentKind::Confed => {}
        }
    }

    /// Appends one segment given as an iterator of AS numbers.
    pub fn push_asns(&mut self, kind: SegmentKind, asns: impl Iterator<Item = u32>) {
        match kind {
            SegmentKind::Sequence => self.asns.extend(asns),
            SegmentKind::Set => {
                if let Some(lowest) = asns.min() {
                    self.asns.push(lowest);
                }
            }
            SegmentKind::Confed => {}
        }
    }

    /// Appends every segment of a path.
    pub fn extend(&mut self, path: &[Segment]) {
        for segment in path {
            self.push(segment.kind, &segment.asns);
        }
    }

    /// The path with leading copies of `own_asn` removed.
    pub fn finish(self, own_asn: u32) -> Box<[u32]> {
        let skip = self.asns.iter().take_while(|a| **a == own_asn).count();
        self.asns[skip..].into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq(asns: &[u32]) -> Segment {
        Segment {
            kind: SegmentKind::Sequence,
            asns: asns.to_vec(),
        }
    }

    fn set(asns: &[u32]) -> Segment {
        Segment {
            kind: SegmentKind::Set,
            asns: asns.to_vec(),
        }
    }

    fn confed(asns: &[u32]) -> Segment {
        Segment {
            kind: SegmentKind::Confed,
            asns: asns.to_vec(),
        }
    }

    fn flat(path: &[Segment], own: u32) -> Vec<u32> {
        let mut b = PathBuilder::default();
        b.extend(path);
        b.finish(own).into_vec()
    }

    #[test]
    fn sets_count_one_hop_confederations_none_and_own_asn_is_dropped() {
        let path = [
            confed(&[65001, 65002]),
            seq(&[64501, 64501, 64510, 64510]),
            set(&[64530, 64520, 64525]),
        ];
        assert_eq!(hops(&path), 5);
        assert_eq!(flat(&path, 64501), [64510, 64510, 64520]);
        assert_eq!(flat(&[seq(&[64501])], 64501), Vec::<u32>::new());
        // Only leading copies: the own ASN further down (a loop BGP would have refused) stays.
        assert_eq!(flat(&[seq(&[64510, 64501])], 64501), [64510, 64501]);
    }

    #[test]
    fn as4_path_merge_follows_rfc_6793() {
        const T: u32 = 23456;
        let cases: Vec<(Vec<Segment>, Vec<Segment>, Vec<Segment>)> = vec![
            // AS_TRANS replaced by the real ASN; the leading 2-octet ASN kept.
            (
                vec![seq(&[64510, T, 64520])],
                vec![seq(&[4_200_000_001, 64520])],
                vec![seq(&[64510]), seq(&[4_200_000_001, 64520])],
            ),
            // AS4_PATH longer than AS_PATH: ignored.
            (
                vec![seq(&[64510, T])],
                vec![seq(&[1, 2, 3])],
                vec![seq(&[64510, T])],
            ),
            // Same length: AS4_PATH wholly; a leading confederation segment stays.
            (
                vec![confed(&[65001]), seq(&[T, T])],
                vec![seq(&[4_200_000_001, 4_200_000_002])],
                vec![confed(&[65001]), seq(&[4_200_000_001, 4_200_000_002])],
            ),
            // An AS_SET counts one; the cut falls after it.
            (
                vec![seq(&[64510]), set(&[64511, 64512]), seq(&[T])],
                vec![seq(&[4_200_000_001])],
                vec![seq(&[64510]), set(&[64511, 64512]), seq(&[4_200_000_001])],
            ),
        ];
        for (as_path, as4, want) in cases {
            let merged = merge_as4_path(&as_path, &as4);
            assert_eq!(merged, want, "{as_path:?} + {as4:?}");
            // bgpkit-parser implements the same section: the flattened paths agree.
            let to_bgpkit = |p: &[Segment]| {
                bgpkit_parser::models::AsPath::from_segments(
                    p.iter()
                        .map(|s| match s.kind {
                            SegmentKind::Sequence => {
                                bgpkit_parser::models::AsPathSegment::sequence(&s.asns)
                            }
                            SegmentKind::Set => bgpkit_parser::models::AsPathSegment::set(&s.asns),
                            SegmentKind::Confed => {
                                bgpkit_parser::models::AsPathSegment::ConfedSequence(
                                    s.asns.iter().map(|a| (*a).into()).collect(),
                                )
                            }
                        })
                        .collect::<Vec<_>>(),
                )
            };
            let theirs = bgpkit_parser::models::AsPath::merge_aspath_as4path(
                &to_bgpkit(&as_path),
                &to_bgpkit(&as4),
            );
            assert_eq!(theirs.route_len(), hops(&merged));
        }
    }
}
