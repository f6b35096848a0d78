//! [P] Route views and prefix tables: the values the rest of `routes` builds and reads (a
//! POP's [`RouteView`], its hops as [`HopRanges`], the operator's [`StaticMap`]).

use std::net::IpAddr;

use ipnet::IpNet;

use super::lpm::{Hit, NONE, RangeTable};

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
    summarize_skipped(skipped, 5, |s| format!("line {}: {}", s.line, s.reason))
}

/// `N skipped (first; second; ...; and M more)`, with the first `shown` items described.
pub(crate) fn summarize_skipped<T>(
    skipped: &[T],
    shown: usize,
    describe: impl Fn(&T) -> String,
) -> String {
    let first: Vec<String> = skipped.iter().take(shown).map(describe).collect();
    let more = skipped.len().saturating_sub(shown);
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
    pub(super) entries: Box<[(IpNet, T)]>,
    pub(super) v4: RangeTable<u32>,
    pub(super) v6: RangeTable<u128>,
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
///
/// Compact: a full table is 1.25 M prefixes, and a heap box per AS path cost more than the
/// paths themselves. The paths are interned into one arena and each prefix holds the id of
/// its path; prefixes and path ids sit in two flat arrays (BENCHMARKS.md, "Full scale").
#[derive(Clone, Debug)]
pub struct RouteView {
    nets: Box<[IpNet]>,
    /// Per prefix (same index as `nets`): the id of its path.
    path_ids: Box<[u32]>,
    /// Path `i` is `arena[path_starts[i] .. path_starts[i + 1]]`.
    path_starts: Box<[u32]>,
    arena: Box<[u32]>,
    v4: RangeTable<u32>,
    v6: RangeTable<u128>,
}

/// The result of a [`RouteView`] lookup.
#[derive(Clone, Copy, Debug)]
pub struct RouteLookup<'a> {
    /// The most specific prefix covering the address, and its AS path, if any.
    pub entry: Option<(IpNet, &'a [u32])>,
    /// Addresses around the queried one (same family) for which the lookup is the same.
    pub span: Hit,
}

/// Every prefix of a [`RouteView`] with its AS path, in the order the view was built from.
#[derive(Clone, Debug)]
pub struct RouteEntries<'a> {
    view: &'a RouteView,
    next: usize,
}

impl<'a> Iterator for RouteEntries<'a> {
    type Item = (IpNet, &'a [u32]);

    fn next(&mut self) -> Option<Self::Item> {
        let view = self.view;
        let net = *view.nets.get(self.next)?;
        let path = view.path(view.path_ids[self.next]);
        self.next += 1;
        Some((net, path))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.view.nets.len() - self.next;
        (left, Some(left))
    }
}

impl ExactSizeIterator for RouteEntries<'_> {}

impl Default for RouteView {
    fn default() -> Self {
        Self::new(Vec::new())
    }
}

impl RouteView {
    /// Builds the view. Prefixes must be distinct and carry no host bits.
    pub fn new(entries: Vec<(IpNet, Box<[u32]>)>) -> Self {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        let mut nets = Vec::with_capacity(entries.len());
        let mut path_ids = Vec::with_capacity(entries.len());
        let mut paths = PathInterner::default();
        for (i, (net, path)) in entries.into_iter().enumerate() {
            // INVARIANT: tables hold far fewer than u32::MAX entries (a full table is ~1.3 M).
            let index = u32::try_from(i).expect("route view larger than u32::MAX entries");
            match net {
                IpNet::V4(n) => v4.push((u32::from(n.network()), n.prefix_len(), index)),
                IpNet::V6(n) => v6.push((u128::from(n.network()), n.prefix_len(), index)),
            }
            nets.push(net);
            path_ids.push(paths.intern(&path));
        }
        let (path_starts, arena) = paths.finish();
        Self {
            nets: nets.into(),
            path_ids: path_ids.into(),
            path_starts,
            arena,
            v4: RangeTable::build(v4),
            v6: RangeTable::build(v6),
        }
    }

    fn path(&self, id: u32) -> &[u32] {
        let id = id as usize;
        &self.arena[self.path_starts[id] as usize..self.path_starts[id + 1] as usize]
    }

    /// Longest-prefix match of `addr`.
    pub fn lookup(&self, addr: IpAddr) -> RouteLookup<'_> {
        let span = match addr {
            IpAddr::V4(a) => self.v4.lookup(u32::from(a)),
            IpAddr::V6(a) => self.v6.lookup(u128::from(a)),
        };
        let entry = match span.value {
            NONE => None,
            i => self
                .nets
                .get(i as usize)
                .map(|net| (*net, self.path(self.path_ids[i as usize]))),
        };
        RouteLookup { entry, span }
    }

    /// Every prefix with its AS path, in the order the view was built from.
    pub fn entries(&self) -> RouteEntries<'_> {
        RouteEntries {
            view: self,
            next: 0,
        }
    }

    /// Number of prefixes.
    pub fn len(&self) -> usize {
        self.nets.len()
    }

    /// Whether the view holds no prefix.
    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    /// Number of flattened ranges across both families (a measure of memory use).
    pub fn ranges(&self) -> usize {
        self.v4.ranges() + self.v6.ranges()
    }

    /// Distinct AS paths (a measure of memory use).
    pub fn distinct_paths(&self) -> usize {
        self.path_starts.len() - 1
    }
}

/// Interns AS paths into one arena while a [`RouteView`] is built.
struct PathInterner {
    starts: Vec<u32>,
    arena: Vec<u32>,
    ids: hashbrown::HashTable<u32>,
    hasher: hashbrown::DefaultHashBuilder,
}

impl Default for PathInterner {
    fn default() -> Self {
        Self {
            starts: vec![0],
            arena: Vec::new(),
            ids: hashbrown::HashTable::new(),
            hasher: hashbrown::DefaultHashBuilder::default(),
        }
    }
}

impl PathInterner {
    fn get<'a>(starts: &[u32], arena: &'a [u32], id: u32) -> &'a [u32] {
        &arena[starts[id as usize] as usize..starts[id as usize + 1] as usize]
    }

    fn intern(&mut self, path: &[u32]) -> u32 {
        use std::hash::BuildHasher as _;
        let hash = self.hasher.hash_one(path);
        let (starts, arena) = (&self.starts, &self.arena);
        if let Some(&id) = self
            .ids
            .find(hash, |&id| Self::get(starts, arena, id) == path)
        {
            return id;
        }
        // INVARIANT: at most one path per prefix, and prefixes are far fewer than u32::MAX;
        // a full table's paths hold a few million AS numbers.
        let id = u32::try_from(self.starts.len() - 1).expect("paths fit in u32");
        self.arena.extend_from_slice(path);
        let end = u32::try_from(self.arena.len()).expect("AS path arena fits in u32");
        self.starts.push(end);
        let (starts, arena, hasher) = (&self.starts, &self.arena, &self.hasher);
        self.ids.insert_unique(hash, id, |&id| {
            hasher.hash_one(Self::get(starts, arena, id))
        });
        id
    }

    fn finish(self) -> (Box<[u32]>, Box<[u32]>) {
        (self.starts.into(), self.arena.into())
    }
}

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
        HopRanges::new(self.entries().map(|(net, path)| (net, Self::hops_of(path))))
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

/// The largest aligned prefix around `addr` that lies inside `lo ..= hi` (its length is
/// returned): the block of clients sure to get the same lookup results as `addr`.
///
/// `bits` is the address width (32 or 128); `addr`, `lo` and `hi` are widened addresses with
/// `lo <= addr <= hi`. In closed form, on the answer path: the block with `h` host bits
/// starts at or after `lo` exactly when `h` is at most the highest bit where `addr` and `lo`
/// differ, or at most `lo`'s trailing zeros; its end, mirrored (complemented), likewise
/// against `hi`.
pub fn enclosing_block(addr: u128, lo: u128, hi: u128, bits: u8) -> u8 {
    debug_assert!(lo <= addr && addr <= hi);
    let width_max = if bits == 128 {
        u128::MAX
    } else {
        (1u128 << bits) - 1
    };
    // Most host bits a block around `a` can have and still start at or after `bound`
    // (`bound <= a`).
    let host_bits = |a: u128, bound: u128| -> u32 {
        let below_difference = match a ^ bound {
            0 => 0,
            d => 127 - d.leading_zeros(),
        };
        below_difference.max(bound.trailing_zeros())
    };
    let h = host_bits(addr, lo)
        .min(host_bits(!addr & width_max, !hi & width_max))
        .min(u32::from(bits));
    // INVARIANT: h <= bits <= 128.
    bits - h as u8
}
