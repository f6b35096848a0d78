//! [P] The decision table: every candidate POP's AS-hop distance and the static map, merged
//! into one longest-prefix-match table over the whole address space.
//!
//! Answering from N separate views costs N lookups per query. Views change rarely and
//! queries are many, so the snapshot precomputes, for each range of addresses on which no
//! view and no static map entry changes, one *row*: the hops of each candidate POP and the
//! static map's choice. Rows are interned (a full table has far fewer distinct rows than
//! prefixes), and adjacent ranges with the same row merge. A query then costs one lookup,
//! whatever the number of POPs, and the range it lands in is exactly the set of clients that
//! get the same decision: the ECS scope.

use std::hash::BuildHasher as _;
use std::net::IpAddr;

use super::lpm::{Key, NONE, RangeCollector, RangeTable};
use super::{Hit, HopRanges, StaticMap};

/// Hop byte meaning "no route".
const NO_ROUTE: u8 = crate::policy::NO_ROUTE;
/// Static-column value meaning "the static map names no candidate".
const NO_STATIC: u16 = u16::MAX;

/// The decision inputs that vary by client, for one list of candidate POPs.
#[derive(Clone, Debug)]
pub struct DecisionTable {
    columns: usize,
    v4: RangeTable<u32>,
    v6: RangeTable<u128>,
    /// Row-major: `columns` hop bytes, then the static column as two little-endian bytes.
    rows: Box<[u8]>,
}

/// One row of a [`DecisionTable`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Row<'a> {
    bytes: &'a [u8],
}

impl Row<'_> {
    /// AS hops from candidate `column` to the client, if its view has a route.
    pub fn hops(&self, column: usize) -> Option<u8> {
        Some(self.bytes[column]).filter(|&h| h != NO_ROUTE)
    }

    /// Every candidate's hop byte, in column order ([`crate::policy::NO_ROUTE`]: no route).
    pub fn hop_bytes(&self) -> &[u8] {
        &self.bytes[..self.bytes.len() - 2]
    }

    /// The candidate the static map names for the client, if any.
    pub fn static_column(&self) -> Option<usize> {
        let n = self.bytes.len();
        let v = u16::from_le_bytes([self.bytes[n - 2], self.bytes[n - 1]]);
        (v != NO_STATIC).then_some(usize::from(v))
    }
}

/// A column's hops as ranges in address order, read as they come: `(start, value)` as in a
/// [`RangeTable`] of [`HopRanges`] (the first range at zero; the value is a hop count or
/// [`NONE`]), all IPv4 ranges first, then all IPv6 ones. A view in memory
/// ([`HopRanges::source`]) and a view read from a stream
/// ([`super::transfer::ViewStream`]) are both sources.
pub trait HopSource {
    /// Why reading failed.
    type Error;
    /// The next IPv4 range, `None` after the last.
    fn next_v4(&mut self) -> Result<Option<(u32, u32)>, Self::Error>;
    /// The next IPv6 range, `None` after the last; called once `next_v4` has given `None`.
    fn next_v6(&mut self) -> Result<Option<(u128, u32)>, Self::Error>;
}

/// The ranges of a [`HopRanges`] as a [`HopSource`].
#[derive(Debug)]
pub struct TableSource<'a> {
    v4: std::iter::Copied<std::slice::Iter<'a, (u32, u32)>>,
    v6: std::iter::Copied<std::slice::Iter<'a, (u128, u32)>>,
}

impl HopRanges {
    /// This view's ranges, to build a decision table from.
    pub fn source(&self) -> TableSource<'_> {
        TableSource {
            v4: self.v4.iter(),
            v6: self.v6.iter(),
        }
    }
}

impl HopSource for TableSource<'_> {
    type Error = std::convert::Infallible;

    fn next_v4(&mut self) -> Result<Option<(u32, u32)>, Self::Error> {
        Ok(self.v4.next())
    }

    fn next_v6(&mut self) -> Result<Option<(u128, u32)>, Self::Error> {
        Ok(self.v6.next())
    }
}

/// Unwraps the result of a merge that cannot fail.
fn infallible<T>(r: Result<T, (usize, std::convert::Infallible)>) -> T {
    match r {
        Ok(t) => t,
        Err((_, never)) => match never {},
    }
}

impl DecisionTable {
    /// Builds the table for candidates whose views are `views` (in candidate order; `None`
    /// for a POP without a view). `static_column` maps a static map value (a POP index) to
    /// the candidate column it names, if that POP is a candidate.
    pub fn build(
        views: &[Option<&HopRanges>],
        static_map: Option<&StaticMap>,
        static_column: impl Fn(usize) -> Option<usize>,
    ) -> Self {
        let columns = views.len();
        assert!(columns < usize::from(NO_STATIC), "too many candidate POPs");
        let static_of = |value: u32| match (value, static_map) {
            (NONE, _) | (_, None) => NO_STATIC,
            (i, Some(map)) => map
                .entries
                .get(i as usize)
                .and_then(|(_, pop)| static_column(*pop))
                .map_or(NO_STATIC, |c| c as u16),
        };
        let mut sources: Vec<(usize, Option<TableSource<'_>>)> = views
            .iter()
            .enumerate()
            .map(|(column, v)| (column, v.map(HopRanges::source)))
            .collect();
        let statics = static_map.map(|m| (&m.v4, &m.v6));
        infallible(assemble(
            columns,
            None,
            &mut sources,
            statics.map(|(v4, v6)| (v4, v6, &static_of as &dyn Fn(u32) -> u16)),
        ))
    }

    /// The same table with the views of some columns replaced: `(column, view)` pairs, `None`
    /// for "no view". Costs one pass over this table's ranges and the new views' ranges,
    /// whatever the number of columns; the result keeps no trace of the replaced views.
    pub fn with_columns(&self, replace: &[(usize, Option<&HopRanges>)]) -> Self {
        let mut sources: Vec<(usize, Option<TableSource<'_>>)> = replace
            .iter()
            .map(|&(column, v)| (column, v.map(HopRanges::source)))
            .collect();
        infallible(assemble(self.columns, Some(self), &mut sources, None))
    }

    /// The same table with the views of some columns replaced by views read as they come
    /// (`(column, source)` pairs): one pass over this table and every source at once, so
    /// however many views come in, none is ever held whole. Fails with the index (into
    /// `replace`) of the first source that failed, and its error; nothing is built then.
    pub fn with_sources<S: HopSource>(
        &self,
        replace: Vec<(usize, S)>,
    ) -> Result<Self, (usize, S::Error)> {
        let mut sources: Vec<(usize, Option<S>)> =
            replace.into_iter().map(|(c, s)| (c, Some(s))).collect();
        assemble(self.columns, Some(self), &mut sources, None)
    }

    fn row_bytes(&self, id: u32) -> &[u8] {
        let stride = self.columns + 2;
        let start = id as usize * stride;
        &self.rows[start..start + stride]
    }

    /// The row for `addr` and the range of addresses sharing it.
    pub fn lookup(&self, addr: IpAddr) -> (Row<'_>, Hit) {
        let hit = match addr {
            IpAddr::V4(a) => self.v4.lookup(u32::from(a)),
            IpAddr::V6(a) => self.v6.lookup(u128::from(a)),
        };
        let stride = self.columns + 2;
        let start = hit.value as usize * stride;
        (
            Row {
                bytes: &self.rows[start..start + stride],
            },
            hit,
        )
    }

    /// Every range of both families with its row's bytes: `(is IPv6, start, row)`; two
    /// tables that answer alike dump alike.
    #[cfg(test)]
    pub(crate) fn dump(&self) -> Vec<(bool, u128, Vec<u8>)> {
        let v4 = self.v4.iter().map(|(s, id)| (false, u128::from(s), id));
        let v6 = self.v6.iter().map(|(s, id)| (true, s, id));
        v4.chain(v6)
            .map(|(v6, start, id)| (v6, start, self.row_bytes(id).to_vec()))
            .collect()
    }

    /// Distinct rows (a measure of memory use).
    pub fn row_count(&self) -> usize {
        self.rows.len() / (self.columns + 2)
    }

    /// Ranges over both families (a measure of memory use).
    pub fn ranges(&self) -> usize {
        self.v4.ranges() + self.v6.ranges()
    }
}

/// Interned rows. The index holds only row ids and hashes the bytes in place, so each row is
/// stored once (a hundred POPs' full tables make rows of a hundred bytes, millions of them).
struct Rows {
    stride: usize,
    bytes: Vec<u8>,
    ids: hashbrown::HashTable<u32>,
    hasher: hashbrown::DefaultHashBuilder,
}

impl Rows {
    fn new(columns: usize) -> Self {
        Self {
            stride: columns + 2,
            bytes: Vec::new(),
            ids: hashbrown::HashTable::new(),
            hasher: hashbrown::DefaultHashBuilder::default(),
        }
    }

    fn row(bytes: &[u8], stride: usize, id: u32) -> &[u8] {
        &bytes[id as usize * stride..(id as usize + 1) * stride]
    }

    fn intern(&mut self, row: &[u8]) -> u32 {
        let hash = self.hasher.hash_one(row);
        let (bytes, stride) = (&self.bytes, self.stride);
        if let Some(&id) = self
            .ids
            .find(hash, |&id| Self::row(bytes, stride, id) == row)
        {
            return id;
        }
        // INVARIANT: at most one row per range, and ranges are far fewer than u32::MAX.
        let id = u32::try_from(self.bytes.len() / self.stride).expect("rows fit in u32");
        self.bytes.extend_from_slice(row);
        let (bytes, hasher) = (&self.bytes, &self.hasher);
        self.ids.insert_unique(hash, id, |&id| {
            hasher.hash_one(Self::row(bytes, stride, id))
        });
        id
    }
}

/// The static map's ranges per family, and how a static map value becomes the static
/// column's value.
type Statics<'a> = (
    &'a RangeTable<u32>,
    &'a RangeTable<u128>,
    &'a dyn Fn(u32) -> u16,
);

/// One family of the static map, and how its values become the static column's.
type StaticRanges<'a, K> = (&'a RangeTable<K>, &'a dyn Fn(u32) -> u16);

/// Builds a table of `columns` columns, both families: the columns of `replaced` from their
/// sources (`None`: no route anywhere), the others and the static column from `old`, or
/// the static column from `statics` when there is no old table.
fn assemble<S: HopSource>(
    columns: usize,
    old: Option<&DecisionTable>,
    replaced: &mut [(usize, Option<S>)],
    statics: Option<Statics<'_>>,
) -> Result<DecisionTable, (usize, S::Error)> {
    debug_assert!(old.is_none() || statics.is_none());
    let mut rows = Rows::new(columns);
    let v4 = merge(
        old.map(|t| (&t.v4, t)),
        replaced,
        S::next_v4,
        statics.map(|(t, _, f)| (t, f)),
        &mut rows,
    )?;
    let v6 = merge(
        old.map(|t| (&t.v6, t)),
        replaced,
        S::next_v6,
        statics.map(|(_, t, f)| (t, f)),
        &mut rows,
    )?;
    Ok(DecisionTable {
        columns,
        v4,
        v6,
        rows: rows.bytes.into(),
    })
}

/// Where the sources of a merge stand: per source, the start of its next range (`K::MAX`
/// once it has none, see `more`) and that range's value.
struct Cursors<K> {
    next: Vec<K>,
    value: Vec<u32>,
    more: Vec<bool>,
}

impl<K: Key> Cursors<K> {
    fn set(&mut self, slot: usize, range: Option<(K, u32)>) {
        match range {
            Some((start, value)) => {
                self.next[slot] = start;
                self.value[slot] = value;
                self.more[slot] = true;
            }
            None => {
                self.next[slot] = K::MAX;
                self.more[slot] = false;
            }
        }
    }

    /// The least start of a next range, if any source has one.
    fn least(&self) -> Option<K> {
        let least = *self.next.iter().min()?;
        // K::MAX is both "no range left" and a start a host route can have.
        (least != K::MAX
            || self
                .next
                .iter()
                .zip(&self.more)
                .any(|(&n, &m)| m && n == least))
        .then_some(least)
    }
}

/// Merges the ranges of one family into a table of row ids: each replaced column from its
/// source, the other columns and the static column from the old table, or the static
/// column from `static_map` (without an old table).
///
/// Every input starts a range at zero; the merged table has a range wherever any input
/// starts one. Walking the inputs side by side, the next start is the least of their next
/// starts, and only the inputs starting a range there change the row: O(inputs) memory and
/// O(ranges x inputs) time, with no list of all starts (which would hold a hundred full
/// tables' worth of addresses at a time).
fn merge<K: Key, S: HopSource>(
    old: Option<(&RangeTable<K>, &DecisionTable)>,
    replaced: &mut [(usize, Option<S>)],
    next_of: impl Fn(&mut S) -> Result<Option<(K, u32)>, S::Error>,
    static_map: Option<StaticRanges<'_, K>>,
    rows: &mut Rows,
) -> Result<RangeTable<K>, (usize, S::Error)> {
    let n = replaced.len();
    // Slots 0..n: the replaced columns; n: the old table; n + 1: the static map.
    let (old_slot, static_slot) = (n, n + 1);
    let mut cursors = Cursors {
        next: vec![K::MAX; n + 2],
        value: vec![NONE; n + 2],
        more: vec![false; n + 2],
    };
    let mut old_ranges = old.map(|(t, _)| t.iter());
    let mut static_ranges = static_map.map(|(t, _)| t.iter());
    let mut row = vec![0u8; rows.stride];
    let stride = rows.stride;
    let set_static = |row: &mut [u8], s: u16| row[stride - 2..].copy_from_slice(&s.to_le_bytes());
    set_static(&mut row, NO_STATIC);
    // Each input's first range (at zero) goes in as if it started there.
    for (slot, (column, source)) in replaced.iter_mut().enumerate() {
        row[*column] = NO_ROUTE;
        if let Some(source) = source {
            let first = next_of(source).map_err(|e| (slot, e))?;
            cursors.set(slot, first);
        }
    }
    cursors.set(old_slot, old_ranges.as_mut().and_then(Iterator::next));
    cursors.set(static_slot, static_ranges.as_mut().and_then(Iterator::next));
    let mut hops = vec![NO_ROUTE; n];
    let mut out = RangeCollector::default();
    let mut start = K::ZERO;
    loop {
        // Move every input whose next range starts at `start` onto it.
        let old_moved = cursors.more[old_slot] && cursors.next[old_slot] == start;
        if old_moved {
            let (_, table) = old.expect("only an old table fills the old slot");
            row.copy_from_slice(table.row_bytes(cursors.value[old_slot]));
            cursors.set(old_slot, old_ranges.as_mut().and_then(Iterator::next));
            // The old row brought the old hops of the replaced columns: put theirs back.
            for (slot, (column, _)) in replaced.iter().enumerate() {
                row[*column] = hops[slot];
            }
        }
        for slot in 0..n {
            if cursors.more[slot] && cursors.next[slot] == start {
                hops[slot] = hop_byte(cursors.value[slot]);
                row[replaced[slot].0] = hops[slot];
                let (_, source) = &mut replaced[slot];
                // INVARIANT: only a slot with a source has more ranges.
                let source = source.as_mut().expect("a slot with ranges has a source");
                let next = next_of(source).map_err(|e| (slot, e))?;
                cursors.set(slot, next);
            }
        }
        if cursors.more[static_slot] && cursors.next[static_slot] == start {
            let (_, static_of) = static_map.expect("only a static map fills the static slot");
            set_static(&mut row, static_of(cursors.value[static_slot]));
            cursors.set(static_slot, static_ranges.as_mut().and_then(Iterator::next));
        }
        out.push(start, rows.intern(&row));
        match cursors.least() {
            Some(next) => start = next,
            None => break,
        }
    }
    Ok(out.finish())
}

/// The hop byte of a [`HopRanges`] value.
fn hop_byte(value: u32) -> u8 {
    match value {
        NONE => NO_ROUTE,
        // Paths of 255 hops or more saturate just below "no route".
        hops => u8::try_from(hops).unwrap_or(NO_ROUTE - 1).min(NO_ROUTE - 1),
    }
}
