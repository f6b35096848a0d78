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

use super::lpm::Hit;
use super::lpm::{Key, NONE, RangeCollector, RangeTable};
use super::view::{HopRanges, StaticMap};

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

    /// The same table with some columns replaced by parts merged on their own
    /// ([`PartMerge`], possibly on other threads): `(columns, chunks)` per part, the part's
    /// columns in the order of its sources. Fails with the index of the first part whose
    /// chunks failed, and its error.
    pub fn with_parts<E, I: Iterator<Item = Result<PartChunk, E>>>(
        &self,
        parts: Vec<(Vec<usize>, I)>,
    ) -> Result<Self, (usize, E)> {
        let mut cursors: Vec<PartCursor<I>> = parts
            .into_iter()
            .map(|(columns, chunks)| PartCursor {
                chunks,
                row: vec![NO_ROUTE; columns.len()],
                columns,
                chunk: PartChunk::default(),
                at: 0,
                stash: None,
                done: false,
            })
            .collect();
        let mut rows = Rows::new(self.columns, self.rows.len());
        let v4 = merge_parts(self, &self.v4, &mut cursors, false, &mut rows)?;
        let v6 = merge_parts(self, &self.v6, &mut cursors, true, &mut rows)?;
        Ok(Self {
            columns: self.columns,
            v4,
            v6,
            rows: rows.bytes.into_boxed_slice(),
        })
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
    /// Rows of `columns` hop columns; `expected` bytes of them (e.g. the size of the table
    /// being replaced) are allocated at once, so a rebuild seldom grows its buffer.
    fn new(columns: usize, expected: usize) -> Self {
        let mut bytes = Vec::new();
        super::huge::reserve_huge(&mut bytes, expected + expected / 16);
        Self {
            stride: columns + 2,
            bytes,
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
        super::huge::reserve_huge(&mut self.bytes, row.len());
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
    let mut rows = Rows::new(columns, old.map_or(0, |t| t.rows.len()));
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
        rows: rows.bytes.into_boxed_slice(),
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
    fn new(slots: usize) -> Self {
        Self {
            next: vec![K::MAX; slots],
            value: vec![NONE; slots],
            more: vec![false; slots],
        }
    }

    #[inline]
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

    #[inline]
    fn starts_at(&self, slot: usize, start: K) -> bool {
        self.next[slot] == start && self.more[slot]
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

/// The ranges of a [`RangeTable`], in order.
type RangeIter<'t, K> = std::iter::Copied<std::slice::Iter<'t, (K, u32)>>;

/// How a static map value becomes the static column's value.
type StaticOf<'f> = dyn Fn(u32) -> u16 + 'f;

/// A merged range: its start and row.
type MergedRange<'r, K> = (K, &'r [u8]);

/// The merge of one family, range by range: each replaced column from its source, the
/// other columns and the static column from the old table, or the static column from the
/// static map (without an old table).
///
/// Every input starts a range at zero; the merged table has a range wherever any input
/// starts one. Walking the inputs side by side, the next start is the least of their next
/// starts, and only the inputs starting a range there change the row: O(inputs) memory and
/// O(ranges x inputs) time, with no list of all starts (which would hold a hundred full
/// tables' worth of addresses at a time).
struct Merge<'t, K: Key> {
    /// Slots 0..n: the replaced columns; n: the old table; n + 1: the static map.
    cursors: Cursors<K>,
    /// The replaced columns' current hops (slot order).
    hops: Vec<u8>,
    row: Vec<u8>,
    /// Start of the next merged range; `None` when done.
    start: Option<K>,
    old: Option<(RangeIter<'t, K>, &'t DecisionTable)>,
    statics: Option<(RangeIter<'t, K>, &'t StaticOf<'t>)>,
}

impl<'t, K: Key> Merge<'t, K> {
    /// Starts the merge; `stride` is the row's length (the static column's two bytes last,
    /// if `with_static`).
    fn new<S: HopSource>(
        stride: usize,
        with_static: bool,
        old: Option<(&'t RangeTable<K>, &'t DecisionTable)>,
        replaced: &mut [(usize, Option<S>)],
        next_of: &impl Fn(&mut S) -> Result<Option<(K, u32)>, S::Error>,
        static_map: Option<StaticRanges<'t, K>>,
    ) -> Result<Self, (usize, S::Error)> {
        let n = replaced.len();
        let mut merge = Self {
            cursors: Cursors::new(n + 2),
            hops: vec![NO_ROUTE; n],
            row: vec![NO_ROUTE; stride],
            start: Some(K::ZERO),
            old: old.map(|(t, table)| (t.iter(), table)),
            statics: static_map.map(|(t, f)| (t.iter(), f)),
        };
        if with_static {
            merge.row[stride - 2..].copy_from_slice(&NO_STATIC.to_le_bytes());
        }
        // Each input's first range (at zero) goes in as if it started there.
        for (slot, (_, source)) in replaced.iter_mut().enumerate() {
            if let Some(source) = source {
                let first = next_of(source).map_err(|e| (slot, e))?;
                merge.cursors.set(slot, first);
            }
        }
        let old_first = merge.old.as_mut().and_then(|(it, _)| it.next());
        merge.cursors.set(n, old_first);
        let static_first = merge.statics.as_mut().and_then(|(it, _)| it.next());
        merge.cursors.set(n + 1, static_first);
        Ok(merge)
    }

    /// The next merged range: its start and row; `None` after the last.
    fn next<S: HopSource>(
        &mut self,
        replaced: &mut [(usize, Option<S>)],
        next_of: &impl Fn(&mut S) -> Result<Option<(K, u32)>, S::Error>,
    ) -> Result<Option<MergedRange<'_, K>>, (usize, S::Error)> {
        let Some(start) = self.start else {
            return Ok(None);
        };
        let n = replaced.len();
        let (old_slot, static_slot) = (n, n + 1);
        if self.cursors.starts_at(old_slot, start) {
            // INVARIANT: only an old table fills the old slot.
            let (ranges, table) = self.old.as_mut().expect("old table");
            self.row
                .copy_from_slice(table.row_bytes(self.cursors.value[old_slot]));
            let next = ranges.next();
            self.cursors.set(old_slot, next);
            // The old row brought the old hops of the replaced columns: put theirs back.
            for (slot, (column, _)) in replaced.iter().enumerate() {
                self.row[*column] = self.hops[slot];
            }
        }
        for (slot, (column, source)) in replaced.iter_mut().enumerate() {
            if self.cursors.starts_at(slot, start) {
                let hop = hop_byte(self.cursors.value[slot]);
                self.hops[slot] = hop;
                self.row[*column] = hop;
                // INVARIANT: only a slot with a source has more ranges.
                let source = source.as_mut().expect("a slot with ranges has a source");
                let next = next_of(source).map_err(|e| (slot, e))?;
                self.cursors.set(slot, next);
            }
        }
        if self.cursors.starts_at(static_slot, start) {
            // INVARIANT: only a static map fills the static slot.
            let (ranges, static_of) = self.statics.as_mut().expect("static map");
            let s = static_of(self.cursors.value[static_slot]);
            let stride = self.row.len();
            self.row[stride - 2..].copy_from_slice(&s.to_le_bytes());
            let next = ranges.next();
            self.cursors.set(static_slot, next);
        }
        self.start = self.cursors.least();
        Ok(Some((start, &self.row)))
    }
}

/// Merges one family into a table of row ids (see [`Merge`]).
fn merge<K: Key, S: HopSource>(
    old: Option<(&RangeTable<K>, &DecisionTable)>,
    replaced: &mut [(usize, Option<S>)],
    next_of: impl Fn(&mut S) -> Result<Option<(K, u32)>, S::Error>,
    static_map: Option<StaticRanges<'_, K>>,
    rows: &mut Rows,
) -> Result<RangeTable<K>, (usize, S::Error)> {
    let mut out = RangeCollector::with_capacity(old.map_or(0, |(t, _)| t.ranges()));
    let mut merge = Merge::new(rows.stride, true, old, replaced, &next_of, static_map)?;
    while let Some((start, row)) = merge.next(replaced, &next_of)? {
        out.push(start, rows.intern(row));
    }
    Ok(out.finish())
}

/// Ranges per [`PartChunk`].
const CHUNK_RANGES: usize = 4096;

/// Some of the replaced columns merged on their own, so that several parts of a large
/// replacement can be merged at once (on as many cores) and their rows put together by
/// [`DecisionTable::with_parts`]. Yields the part's merged ranges in chunks: IPv4, then
/// IPv6.
pub struct PartMerge<S> {
    sources: Vec<(usize, Option<S>)>,
    v4: Option<Merge<'static, u32>>,
    v6: Option<Merge<'static, u128>>,
    /// The IPv4 ranges are over.
    v4_done: bool,
}

/// A run of a part's merged ranges, in address order: each range's start and the part's
/// hop bytes over it.
#[derive(Debug, Default)]
pub struct PartChunk {
    /// IPv6 ranges (else IPv4).
    v6: bool,
    starts: Vec<u128>,
    /// `starts.len()` rows of the part's width.
    hops: Vec<u8>,
    /// The part's last chunk.
    last: bool,
}

impl<S: HopSource> PartMerge<S> {
    /// A part made of these sources (their columns numbered 0.. in this order).
    pub fn new(sources: Vec<S>) -> Self {
        Self {
            sources: sources
                .into_iter()
                .enumerate()
                .map(|(i, s)| (i, Some(s)))
                .collect(),
            v4: None,
            v6: None,
            v4_done: false,
        }
    }

    /// The next chunk of merged ranges. Fails with the index of the first source that
    /// failed (in the order given to [`Self::new`]) and its error.
    pub fn next_chunk(&mut self) -> Result<PartChunk, (usize, S::Error)> {
        let width = self.sources.len();
        let mut chunk = PartChunk::default();
        if !self.v4_done {
            if self.v4.is_none() {
                self.v4 = Some(Merge::new(
                    width,
                    false,
                    None,
                    &mut self.sources,
                    &S::next_v4,
                    None,
                )?);
            }
            // INVARIANT: set just above.
            let merge = self.v4.as_mut().expect("IPv4 merge");
            while chunk.starts.len() < CHUNK_RANGES {
                match merge.next(&mut self.sources, &S::next_v4)? {
                    Some((start, row)) => {
                        chunk.starts.push(u128::from(start));
                        chunk.hops.extend_from_slice(row);
                    }
                    None => {
                        self.v4_done = true;
                        self.v4 = None;
                        break;
                    }
                }
            }
            if !chunk.starts.is_empty() {
                return Ok(chunk);
            }
        }
        chunk.v6 = true;
        if self.v6.is_none() {
            self.v6 = Some(Merge::new(
                width,
                false,
                None,
                &mut self.sources,
                &S::next_v6,
                None,
            )?);
        }
        // INVARIANT: set just above.
        let merge = self.v6.as_mut().expect("IPv6 merge");
        while chunk.starts.len() < CHUNK_RANGES {
            match merge.next(&mut self.sources, &S::next_v6)? {
                Some((start, row)) => {
                    chunk.starts.push(start);
                    chunk.hops.extend_from_slice(row);
                }
                None => {
                    chunk.last = true;
                    break;
                }
            }
        }
        Ok(chunk)
    }
}

impl PartChunk {
    /// Whether this is the part's last chunk.
    pub fn is_last(&self) -> bool {
        self.last
    }
}

/// A part's chunks as the final merge reads them: the row in force, and the chunk holding
/// the ranges after it.
struct PartCursor<I> {
    chunks: I,
    columns: Vec<usize>,
    /// The part's hops over the range in force.
    row: Vec<u8>,
    chunk: PartChunk,
    /// Index in `chunk` of the next range.
    at: usize,
    /// A chunk of the next family, read while finishing this one.
    stash: Option<PartChunk>,
    done: bool,
}

impl<E, I: Iterator<Item = Result<PartChunk, E>>> PartCursor<I> {
    /// Start of the next range of family `v6`, reading a chunk if needed; `None` when the
    /// family is over for this part.
    fn peek(&mut self, v6: bool) -> Result<Option<u128>, E> {
        while self.at >= self.chunk.starts.len() {
            let next = match self.stash.take() {
                Some(c) => c,
                None if self.done => return Ok(None),
                None => match self.chunks.next() {
                    Some(c) => c?,
                    None => {
                        self.done = true;
                        return Ok(None);
                    }
                },
            };
            self.done = next.last;
            if next.v6 != v6 {
                self.stash = Some(next);
                return Ok(None);
            }
            (self.chunk, self.at) = (next, 0);
        }
        Ok(Some(self.chunk.starts[self.at]))
    }

    /// Moves onto the next range (which [`Self::peek`] found).
    fn step(&mut self) {
        let width = self.columns.len();
        self.row
            .copy_from_slice(&self.chunk.hops[self.at * width..(self.at + 1) * width]);
        self.at += 1;
    }
}

/// Puts the rows of parts together with the old table's, one family (see
/// [`DecisionTable::with_parts`]).
fn merge_parts<K: Key, E, I: Iterator<Item = Result<PartChunk, E>>>(
    old: &DecisionTable,
    old_ranges: &RangeTable<K>,
    parts: &mut [PartCursor<I>],
    v6: bool,
    rows: &mut Rows,
) -> Result<RangeTable<K>, (usize, E)> {
    let mut row = vec![0u8; rows.stride];
    let mut out = RangeCollector::with_capacity(old_ranges.ranges());
    let mut old_at = 0usize;
    let mut nexts: Vec<Option<u128>> = Vec::with_capacity(parts.len());
    for (i, part) in parts.iter_mut().enumerate() {
        // A part with no range of this family has no route there.
        part.row.fill(NO_ROUTE);
        nexts.push(part.peek(v6).map_err(|e| (i, e))?);
    }
    let mut start: u128 = 0;
    loop {
        while old_ranges
            .start(old_at + 1)
            .is_some_and(|s| s.widen() <= start)
        {
            old_at += 1;
        }
        row.copy_from_slice(old.row_bytes(old_ranges.value(old_at)));
        for (i, part) in parts.iter_mut().enumerate() {
            if nexts[i] == Some(start) {
                part.step();
                nexts[i] = part.peek(v6).map_err(|e| (i, e))?;
            }
            for (&column, &hop) in part.columns.iter().zip(&part.row) {
                row[column] = hop;
            }
        }
        out.push(K::narrow(start), rows.intern(&row));
        let next = nexts
            .iter()
            .flatten()
            .copied()
            .chain(old_ranges.start(old_at + 1).map(Key::widen))
            .min();
        match next {
            Some(n) => start = n,
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
