//! [P] Longest-prefix match over an immutable set of prefixes, flattened into ranges.
//!
//! A route view never changes in place: a new view is built whole and swapped in. That lets
//! us trade the pointer-chasing of a trie for a sorted array of range starts: the prefixes
//! (which nest but never partially overlap) are flattened into disjoint address ranges, each
//! carrying the index of the most specific prefix that covers it. A lookup is one binary
//! search, and it also yields the range around the address in which the answer is constant,
//! which is exactly what the EDNS Client Subnet scope needs.
//!
//! Memory is two `u32`-sized words per range boundary (IPv4) and at most two boundaries per
//! prefix, before adjacent ranges with the same value are merged.

/// An address as an unsigned integer of its width (`u32` for IPv4, `u128` for IPv6).
pub trait Key: Copy + Ord + std::fmt::Debug + Send + Sync + 'static {
    /// Address width in bits.
    const BITS: u8;
    /// The all-zero address.
    const ZERO: Self;
    /// The all-ones address.
    const MAX: Self;
    /// `self + 1`, or `None` at `MAX`.
    fn succ(self) -> Option<Self>;
    /// The last address of the prefix starting at `self` with length `len`.
    fn last_of(self, len: u8) -> Self;
    /// Widens to `u128` (the form ranges are reported in).
    fn widen(self) -> u128;
    /// Narrows a widened address back (the bits above the width are dropped).
    fn narrow(wide: u128) -> Self;
}

macro_rules! impl_key {
    ($t:ty, $bits:expr) => {
        impl Key for $t {
            const BITS: u8 = $bits;
            const ZERO: Self = 0;
            const MAX: Self = <$t>::MAX;
            fn succ(self) -> Option<Self> {
                self.checked_add(1)
            }
            fn last_of(self, len: u8) -> Self {
                // No host bits at full length (the shift would overflow).
                <$t>::MAX
                    .checked_shr(u32::from(len))
                    .map_or(self, |host| self | host)
            }
            fn widen(self) -> u128 {
                u128::from(self)
            }
            fn narrow(wide: u128) -> Self {
                wide as $t
            }
        }
    };
}
impl_key!(u32, 32);
impl_key!(u128, 128);

/// Value stored for addresses that no prefix covers.
pub const NONE: u32 = u32::MAX;

/// The result of a lookup: the covering prefix's value (or [`NONE`]) and the inclusive range
/// of addresses around the queried one that share this value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hit {
    /// Index given to the most specific covering prefix, or [`NONE`].
    pub value: u32,
    /// First address of the constant range (widened to `u128`).
    pub lo: u128,
    /// Last address of the constant range (widened to `u128`).
    pub hi: u128,
}

/// Ranges per block of the first-level index: 32 `(u32, u32)` pairs are four cache lines.
const BLOCK: usize = 32;

/// A flattened longest-prefix-match table.
///
/// Lookups search a small first-level index (the start of every [`BLOCK`]-th range, a few
/// hundred KiB at full-table size, so it stays in cache) and then one block of ranges, where
/// each start sits beside its value: a full-table lookup touches a handful of cache lines
/// instead of the ~20 of a plain binary search over two arrays.
#[derive(Clone, Debug)]
pub struct RangeTable<K: Key> {
    /// `(start, value)`: starts strictly increasing, the first one zero; the value applies
    /// up to the next start.
    ranges: Box<[(K, u32)]>,
    /// `ranges[i * BLOCK].0` for every block `i`.
    summary: Box<[K]>,
}

impl<K: Key> Default for RangeTable<K> {
    fn default() -> Self {
        Builder::default().finish()
    }
}

impl<K: Key> RangeTable<K> {
    /// Builds the table from `(network, prefix_len, value)` triples.
    ///
    /// The network must have no bits set past `prefix_len` and the prefixes must be distinct;
    /// callers (the route file parsers) guarantee both and report what they dropped. `value`
    /// must not be [`NONE`].
    pub fn build(mut prefixes: Vec<(K, u8, u32)>) -> Self {
        // Parents sort before their children: same start, shorter length first.
        prefixes.sort_unstable_by_key(|&(start, len, _)| (start, len));
        let mut flat = Flattener::default();
        for (start, len, value) in prefixes {
            flat.prefix(start, len, value);
        }
        flat.close();
        flat.out.finish()
    }

    /// Finds the most specific prefix covering `addr` and the range sharing its answer.
    pub fn lookup(&self, addr: K) -> Hit {
        // INVARIANT: summary[0] == ranges[0].0 == ZERO, so both searches find a start <= addr.
        let block = self.summary.partition_point(|&s| s <= addr) - 1;
        let first = block * BLOCK;
        let end = (first + BLOCK).min(self.ranges.len());
        let i = first + self.ranges[first..end].partition_point(|&(s, _)| s <= addr) - 1;
        let hi = match self.ranges.get(i + 1) {
            Some(&(next, _)) => next.widen() - 1,
            None => K::MAX.widen(),
        };
        let (lo, value) = self.ranges[i];
        Hit {
            value,
            lo: lo.widen(),
            hi,
        }
    }

    /// Builds a table from `(start, value)` ranges with strictly increasing starts, the first
    /// one zero. Adjacent ranges with the same value merge.
    pub fn from_ranges(ranges: impl IntoIterator<Item = (K, u32)>) -> Self {
        let mut out = Builder::default();
        for (start, value) in ranges {
            out.push_next(start, value);
        }
        out.finish()
    }

    /// The ranges, in address order: `(start, value)`.
    pub fn iter(&self) -> std::iter::Copied<std::slice::Iter<'_, (K, u32)>> {
        self.ranges.iter().copied()
    }

    /// Start of range `i`, if there is one.
    pub fn start(&self, i: usize) -> Option<K> {
        self.ranges.get(i).map(|&(s, _)| s)
    }

    /// Value of range `i` (which must exist).
    pub fn value(&self, i: usize) -> u32 {
        self.ranges[i].1
    }

    /// Number of ranges (a measure of memory use).
    pub fn ranges(&self) -> usize {
        self.ranges.len()
    }
}

/// Ranges a [`Flattener`] hands out before it drops them from its buffer.
const COMPACT_AFTER: usize = 256;

/// Turns prefixes, given in `(start, length)` order, into the ranges of
/// [`RangeTable::build`], as they come: the ranges that no later prefix can change are
/// handed out at once, so a view read from a stream never needs its whole list of prefixes
/// (or of ranges) in memory. [`RangeTable::build`] runs through the same code.
#[derive(Debug)]
pub(crate) struct Flattener<K: Key> {
    /// Open prefixes, outermost first: (last address, value).
    open: Vec<(K, u32)>,
    out: Builder<K>,
    /// Ranges of `out` already handed out by [`Self::next_final`].
    taken: usize,
    closed: bool,
}

impl<K: Key> Default for Flattener<K> {
    fn default() -> Self {
        Self {
            open: Vec::new(),
            out: Builder::default(),
            taken: 0,
            closed: false,
        }
    }
}

impl<K: Key> Flattener<K> {
    /// Adds the next prefix: strictly after the previous one in `(start, length)` order, no
    /// bits set past `len`, `value` not [`NONE`].
    pub(crate) fn prefix(&mut self, start: K, len: u8, value: u32) {
        debug_assert_ne!(value, NONE);
        debug_assert!(!self.closed);
        self.close_until(Some(start));
        self.out.push(start, value);
        self.open.push((start.last_of(len), value));
    }

    /// Ends the input: every open prefix closes.
    pub(crate) fn close(&mut self) {
        self.close_until(None);
        self.closed = true;
    }

    /// Whether [`Self::close`] was called.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed
    }

    /// The next range that no later prefix can change, if there is one yet.
    ///
    /// A new prefix only ever changes the last range built (a more specific prefix at the
    /// same start overrides its value) and, through that, may merge it into the one before;
    /// so all but the last two ranges are final, and all of them once the input is closed.
    pub(crate) fn next_final(&mut self) -> Option<(K, u32)> {
        let keep = if self.closed { 0 } else { 2 };
        let ranges = &mut self.out.ranges;
        if self.taken + keep >= ranges.len() {
            // Drop what was handed out, now and then, so the buffer stays short.
            if self.taken >= COMPACT_AFTER && !self.closed {
                ranges.drain(..self.taken);
                self.taken = 0;
            }
            return None;
        }
        self.taken += 1;
        Some(ranges[self.taken - 1])
    }

    /// Pops every open prefix that ends before `next` (all of them for `None`), starting the
    /// range that follows each one with the value of the prefix that encloses it.
    fn close_until(&mut self, next: Option<K>) {
        while let Some(&(last, _)) = self.open.last() {
            if next.is_some_and(|n| n <= last) {
                break;
            }
            self.open.pop();
            if let Some(after) = last.succ() {
                let outer = self.open.last().map_or(NONE, |&(_, v)| v);
                self.out.push(after, outer);
            }
        }
    }
}

#[derive(Debug)]
struct Builder<K: Key> {
    ranges: Vec<(K, u32)>,
}

impl<K: Key> Default for Builder<K> {
    fn default() -> Self {
        Self {
            ranges: vec![(K::ZERO, NONE)],
        }
    }
}

impl<K: Key> Builder<K> {
    fn push(&mut self, start: K, value: u32) {
        // INVARIANT: the builder always holds at least one range.
        let last = self.ranges.len() - 1;
        if self.ranges[last].0 == start {
            // A more specific prefix (or the end of one) at the same address wins.
            self.ranges[last].1 = value;
            // Merging with the range before may now be possible.
            if last > 0 && self.ranges[last - 1].1 == value {
                self.ranges.pop();
            }
        } else if self.ranges[last].1 != value {
            self.ranges.push((start, value));
        }
    }

    /// Appends a range that starts after every range so far (or replaces the first one, at
    /// zero), merging it into the last one if their values are equal.
    fn push_next(&mut self, start: K, value: u32) {
        // INVARIANT: the builder always holds at least one range.
        let last = self.ranges.len() - 1;
        debug_assert!(start > self.ranges[last].0 || (start == K::ZERO && last == 0));
        if self.ranges[last].0 == start {
            self.ranges[last].1 = value;
        } else if self.ranges[last].1 != value {
            self.ranges.push((start, value));
        }
    }

    fn finish(self) -> RangeTable<K> {
        let summary = self.ranges.iter().step_by(BLOCK).map(|&(s, _)| s).collect();
        RangeTable {
            ranges: self.ranges.into_boxed_slice(),
            summary,
        }
    }
}

/// Collects ranges given in address order into a [`RangeTable`], merging neighbours with the
/// same value (what a decision-table merge builds its output with).
#[derive(Debug)]
pub(crate) struct RangeCollector<K: Key>(Builder<K>);

impl<K: Key> Default for RangeCollector<K> {
    fn default() -> Self {
        Self(Builder::default())
    }
}

impl<K: Key> RangeCollector<K> {
    /// A collector with room for about `expected` ranges (e.g. those of the table it
    /// replaces), so a rebuild seldom grows its buffer.
    pub(crate) fn with_capacity(expected: usize) -> Self {
        let mut builder = Builder::default();
        super::huge::reserve_huge(&mut builder.ranges, expected + expected / 16);
        Self(builder)
    }

    /// Appends the range starting at `start` (after every range so far; the first at zero).
    pub(crate) fn push(&mut self, start: K, value: u32) {
        // Decision tables (what collectors build) live in huge pages; see `with_capacity`.
        super::huge::reserve_huge(&mut self.0.ranges, 1);
        self.0.push_next(start, value);
    }

    /// The table.
    pub(crate) fn finish(self) -> RangeTable<K> {
        self.0.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(s: &str) -> u32 {
        u32::from(s.parse::<std::net::Ipv4Addr>().unwrap())
    }

    fn table(prefixes: &[(&str, u8)]) -> RangeTable<u32> {
        RangeTable::build(
            prefixes
                .iter()
                .enumerate()
                .map(|(i, &(a, l))| (v4(a), l, i as u32))
                .collect(),
        )
    }

    /// Reference: scan every prefix, keep the longest that covers the address.
    fn naive(prefixes: &[(u32, u8)], addr: u32) -> u32 {
        let mut best: Option<(u8, u32)> = None;
        for (i, &(net, len)) in prefixes.iter().enumerate() {
            if addr >= net && addr <= net.last_of(len) && best.is_none_or(|(bl, _)| len > bl) {
                best = Some((len, i as u32));
            }
        }
        best.map_or(NONE, |(_, i)| i)
    }

    #[test]
    fn empty_table_covers_everything_with_none() {
        let t = RangeTable::<u32>::build(vec![]);
        assert_eq!(
            t.lookup(v4("10.0.0.1")),
            Hit {
                value: NONE,
                lo: 0,
                hi: u128::from(u32::MAX)
            }
        );
    }

    #[test]
    fn most_specific_prefix_wins_and_range_is_tight() {
        let t = table(&[("10.0.0.0", 8), ("10.1.0.0", 16), ("10.1.2.0", 24)]);
        let hit = t.lookup(v4("10.1.2.3"));
        assert_eq!(hit.value, 2);
        assert_eq!(
            (hit.lo, hit.hi),
            (v4("10.1.2.0").into(), v4("10.1.2.255").into())
        );
        let hit = t.lookup(v4("10.1.3.0"));
        assert_eq!(hit.value, 1);
        assert_eq!(
            (hit.lo, hit.hi),
            (v4("10.1.3.0").into(), v4("10.1.255.255").into())
        );
        let hit = t.lookup(v4("10.0.0.0"));
        assert_eq!(hit.value, 0);
        assert_eq!(
            (hit.lo, hit.hi),
            (v4("10.0.0.0").into(), v4("10.0.255.255").into())
        );
        assert_eq!(t.lookup(v4("11.0.0.0")).value, NONE);
        assert_eq!(t.lookup(v4("9.255.255.255")).value, NONE);
    }

    #[test]
    fn default_route_and_host_route_at_the_edges() {
        let t = table(&[("0.0.0.0", 0), ("255.255.255.255", 32), ("0.0.0.0", 32)]);
        assert_eq!(t.lookup(0).value, 2);
        assert_eq!(t.lookup(1).value, 0);
        assert_eq!(t.lookup(u32::MAX).value, 1);
        assert_eq!(t.lookup(u32::MAX - 1).value, 0);
    }

    #[test]
    fn children_ending_with_their_parent_close_cleanly() {
        let t = table(&[("10.0.0.0", 8), ("10.255.0.0", 16), ("10.255.255.0", 24)]);
        assert_eq!(t.lookup(v4("10.255.255.255")).value, 2);
        assert_eq!(t.lookup(v4("11.0.0.0")).value, NONE);
        assert_eq!(t.lookup(v4("10.255.254.0")).value, 1);
    }

    #[test]
    fn many_blocks_match_naive_scan() {
        // Enough ranges for hundreds of index blocks, with nesting.
        let mut next = crate::testrng::xorshift(0x2545_F491_4F6C_DD1D_u64);
        let mut prefixes: Vec<(u32, u8)> = Vec::new();
        while prefixes.len() < 6000 {
            let len = 8 + (next() % 17) as u8;
            let net = (next() as u32) & !u32::MAX.checked_shr(u32::from(len)).unwrap_or(0);
            if !prefixes.contains(&(net, len)) {
                prefixes.push((net, len));
            }
        }
        let t = RangeTable::build(
            prefixes
                .iter()
                .enumerate()
                .map(|(i, &(n, l))| (n, l, i as u32))
                .collect(),
        );
        assert!(t.ranges() > 20 * BLOCK, "only {} ranges", t.ranges());
        for &(net, len) in prefixes.iter().step_by(7) {
            for addr in [net, net.last_of(len), net.wrapping_sub(1), next() as u32] {
                assert_eq!(
                    t.lookup(addr).value,
                    naive(&prefixes, addr),
                    "addr {addr:#x}"
                );
            }
        }
    }

    #[test]
    fn matches_naive_scan_on_pseudo_random_tables() {
        // A fixed xorshift sequence: reproducible, no external randomness.
        let mut next = crate::testrng::xorshift(0x9E37_79B9_7F4A_7C15_u64);
        for _ in 0..200 {
            let mut prefixes: Vec<(u32, u8)> = Vec::new();
            for _ in 0..(next() % 40) {
                // Cluster addresses in a small space so that prefixes nest often.
                let len = (next() % 33) as u8;
                let addr = (next() as u32) & 0xFF00_0000 | (next() as u32 & 0x0003_0F0F);
                let net = addr & !u32::MAX.checked_shr(u32::from(len)).unwrap_or(0);
                if !prefixes.contains(&(net, len)) {
                    prefixes.push((net, len));
                }
            }
            let t = RangeTable::build(
                prefixes
                    .iter()
                    .enumerate()
                    .map(|(i, &(n, l))| (n, l, i as u32))
                    .collect(),
            );
            for &(net, len) in &prefixes {
                for addr in [
                    net,
                    net.last_of(len),
                    net.wrapping_sub(1),
                    net.last_of(len).wrapping_add(1),
                ] {
                    let hit = t.lookup(addr);
                    assert_eq!(
                        hit.value,
                        naive(&prefixes, addr),
                        "addr {addr:#x} in {prefixes:?}"
                    );
                    // Every address of the reported range has the same answer.
                    for probe in [hit.lo, hit.hi, (hit.lo + hit.hi) / 2] {
                        assert_eq!(naive(&prefixes, probe as u32), hit.value);
                    }
                }
            }
        }
    }
}
