//! [P] Route views: what one POP's router knows about the Internet, as longest-prefix-match
//! tables, and the operator's static map.
//!
//! A [`RouteView`] answers "how many AS hops from this POP to that client?" together with the
//! route that decided it. It is immutable; a changed view is a new value.

pub mod aspath;
pub mod decision;
pub mod lpm;
pub mod mrt;
#[cfg(test)]
mod tests;
mod text;
pub mod transfer;

use std::net::IpAddr;

use ipnet::IpNet;

pub use self::decision::{DecisionTable, Row};
pub use self::lpm::Hit;
use self::lpm::{NONE, RangeTable};
pub use self::text::{parse_route_view, parse_static_map};

/// A line of an input file that was not loaded, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    /// 1-based line number in the file.
    pub line: usize,
    /// What was wrong with it.
    pub reason: String,
}

/// Summarises skipped lines for a log message: the count and the first few line numbers.
pub fn describe_skipped(skipped: &[Skipped]) -> String {
    const SHOWN: usize = 5;
    let first: Vec<String> = skipped
        .iter()
        .take(SHOWN)
        .map(|s| format!("line {}: {}", s.line, s.reason))
        .collect();
    let more = skipped.len().saturating_sub(SHOWN);
    let tail = if more > 0 {
        format!("; and {more} more")
    } else {
        String::new()
    };
    format!("{} skipped ({}{tail})", skipped.len(), first.join("; "))
}

/// A set of prefixes with one value each, searchable by longest prefix match in both families.
#[derive(Clone, Debug)]
pub struct PrefixTable<T> {
    entries: Box<[(IpNet, T)]>,
    v4: RangeTable<u32>,
    v6: RangeTable<u128>,
}

impl<T> Default for PrefixTable<T> {
    fn default() -> Self {
        Self {
            entries: Box::new([]),
            v4: RangeTable::default(),
            v6: RangeTable::default(),
        }
    }
}

/// The result of a [`PrefixTable`] lookup.
#[derive(Clone, Copy, Debug)]
pub struct Lookup<'a, T> {
    /// The most specific entry covering the address, if any.
    pub entry: Option<&'a (IpNet, T)>,
    /// Addresses around the queried one (same family) for which the lookup is the same.
    pub span: Hit,
}

impl<T> PrefixTable<T> {
    /// Builds the table. Prefixes must be distinct and carry no host bits.
    pub fn new(entries: Vec<(IpNet, T)>) -> Self {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for (i, (net, _)) in entries.iter().enumerate() {
            // INVARIANT: tables hold far fewer than u32::MAX entries (a full table is ~1.3 M).
            let index = u32::try_from(i).expect("prefix table larger than u32::MAX entries");
            match net {
                IpNet::V4(n) => v4.push((u32::from(n.network()), n.prefix_len(), index)),
                IpNet::V6(n) => v6.push((u128::from(n.network()), n.prefix_len(), index)),
            }
        }
        Self {
            entries: entries.into(),
            v4: RangeTable::build(v4),
            v6: RangeTable::build(v6),
        }
    }

    /// Longest-prefix match of `addr`.
    pub fn lookup(&self, addr: IpAddr) -> Lookup<'_, T> {
        let span = match addr {
            IpAddr::V4(a) => self.v4.lookup(u32::from(a)),
            IpAddr::V6(a) => self.v6.lookup(u128::from(a)),
        };
        let entry = match span.value {
            NONE => None,
            i => self.entries.get(i as usize),
        };
        Lookup { entry, span }
    }

    /// Every prefix with its value, in the order the table was built from.
    pub fn entries(&self) -> &[(IpNet, T)] {
        &self.entries
    }

    /// Number of prefixes.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the table holds no prefix.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Number of flattened ranges across both families (a measure of memory use).
    pub fn ranges(&self) -> usize {
        self.v4.ranges() + self.v6.ranges()
    }
}

/// One POP's view of the Internet: prefix -> AS path.
pub type RouteView = PrefixTable<Box<[u32]>>;

/// A POP's view reduced to what answers need: AS hops per address range, longest prefix
/// match already applied. This is what a node keeps of a peer's view (the AS paths stay with
/// the POP's own node) and what decision tables are built from.
#[derive(Clone, Debug, Default)]
pub struct HopRanges {
    /// IPv4 ranges; the value is the hop count (`lpm::NONE`: no route).
    pub(crate) v4: RangeTable<u32>,
    /// IPv6 ranges, likewise.
    pub(crate) v6: RangeTable<u128>,
    /// Prefixes the view was built from.
    prefixes: u64,
}

impl HopRanges {
    /// Builds from `(prefix, hops)` pairs; prefixes must be distinct and carry no host bits.
    pub fn new(routes: impl IntoIterator<Item = (IpNet, u8)>) -> Self {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for (net, hops) in routes {
            match net {
                IpNet::V4(n) => v4.push((u32::from(n.network()), n.prefix_len(), u32::from(hops))),
                IpNet::V6(n) => v6.push((u128::from(n.network()), n.prefix_len(), u32::from(hops))),
            }
        }
        Self::from_parts(v4, v6)
    }

    /// Builds from `(network, length, hops)` triples per family (the transfer decoder's form).
    pub fn from_parts(v4: Vec<(u32, u8, u32)>, v6: Vec<(u128, u8, u32)>) -> Self {
        let prefixes = (v4.len() + v6.len()) as u64;
        Self {
            v4: RangeTable::build(v4),
            v6: RangeTable::build(v6),
            prefixes,
        }
    }

    /// AS hops to `addr`, if the view has a route.
    pub fn hops(&self, addr: IpAddr) -> Option<u8> {
        let value = match addr {
            IpAddr::V4(a) => self.v4.lookup(u32::from(a)).value,
            IpAddr::V6(a) => self.v6.lookup(u128::from(a)).value,
        };
        (value != NONE).then(|| u8::try_from(value).unwrap_or(u8::MAX))
    }

    /// Prefixes the view was built from.
    pub fn prefixes(&self) -> u64 {
        self.prefixes
    }

    /// Ranges over both families (a measure of memory use).
    pub fn ranges(&self) -> usize {
        self.v4.ranges() + self.v6.ranges()
    }
}

impl RouteView {
    /// The view's hops per range (what decision tables and peers need of it).
    pub fn hop_ranges(&self) -> HopRanges {
        HopRanges::new(
            self.entries
                .iter()
                .map(|(net, path)| (*net, Self::hops_of(path))),
        )
    }
}

/// The own POP's route view as its source has it now: what a view source (a route file, an
/// MRT dump, a BGP session) hands to the node, which puts it in the snapshot and announces
/// it to the cluster.
#[derive(Clone, Debug)]
pub struct OwnView {
    /// The view (`None`: the source has none yet).
    pub view: Option<std::sync::Arc<RouteView>>,
    /// Where it comes from, for status and logs (`file views/ams.routes`,
    /// `bgp 192.0.2.1 AS64500`).
    pub source: String,
    /// Unix time (ms) since which the source has not been current, e.g. the BGP session is
    /// down and this is the last good view; `None` while it is current.
    pub stale_since_ms: Option<u64>,
}

/// The operator's static map (Super Sparrow's `ssrs.routes`): prefix -> index of a POP.
pub type StaticMap = PrefixTable<usize>;

impl RouteView {
    /// AS-hop distance of an entry found by [`PrefixTable::lookup`].
    pub fn hops_of(path: &[u32]) -> u8 {
        u8::try_from(path.len()).unwrap_or(u8::MAX)
    }
}

/// The smallest aligned prefix around `addr` that lies inside `lo ..= hi`: the block of
/// clients sure to get the same lookup results as `addr`.
///
/// `bits` is the address width (32 or 128); `addr`, `lo` and `hi` are widened addresses with
/// `lo <= addr <= hi`.
pub fn enclosing_block(addr: u128, lo: u128, hi: u128, bits: u8) -> u8 {
    debug_assert!(lo <= addr && addr <= hi);
    let width_max = if bits == 128 {
        u128::MAX
    } else {
        (1u128 << bits) - 1
    };
    for len in 0..bits {
        let host = width_max >> len;
        let start = addr & !host & width_max;
        if start >= lo && start | host <= hi {
            return len;
        }
    }
    bits
}
