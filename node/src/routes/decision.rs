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

use super::lpm::{Key, NONE, RangeTable};
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

/// Where a column of a table being built takes its hops from.
#[derive(Clone, Copy)]
enum Source<'a> {
    /// The same column of the table being replaced.
    Old,
    /// A view (or no view: no route anywhere).
    New(Option<&'a HopRanges>),
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
        let sources: Vec<Source<'_>> = views.iter().map(|v| Source::New(*v)).collect();
        let static_of = |map: &StaticMap, value: u32| match value {
            NONE => NO_STATIC,
            i => map
                .entries
                .get(i as usize)
                .and_then(|(_, pop)| static_column(*pop))
                .map_or(NO_STATIC, |c| c as u16),
        };
        let mut rows = Rows::new(columns);
        let v4 = merge(
            None,
            &sources,
            |v| &v.v4,
            static_map.map(|m| (&m.v4, m)),
            &static_of,
            &mut rows,
        );
        let v6 = merge(
            None,
            &sources,
            |v| &v.v6,
            static_map.map(|m| (&m.v6, m)),
            &static_of,
            &mut rows,
        );
        Self {
            columns,
            v4,
            v6,
            rows: rows.bytes.into(),
        }
    }

    /// The same table with the views of some columns replaced: `(column, view)` pairs, `None`
    /// for "no view". Costs one pass over this table's ranges and the new views' ranges,
    /// whatever the number of columns; the result keeps no trace of the replaced views.
    pub fn with_columns(&self, replace: &[(usize, Option<&HopRanges>)]) -> Self {
        let mut sources: Vec<Source<'_>> = vec![Source::Old; self.columns];
        for &(column, view) in replace {
            sources[column] = Source::New(view);
        }
        let mut rows = Rows::new(self.columns);
        let keep_static = |_: &(), _: u32| NO_STATIC;
        let v4 = merge(
            Some((&self.v4, self)),
            &sources,
            |v| &v.v4,
            None::<(&RangeTable<u32>, &())>,
            &keep_static,
            &mut rows,
        );
        let v6 = merge(
            Some((&self.v6, self)),
            &sources,
            |v| &v.v6,
            None::<(&RangeTable<u128>, &())>,
            &keep_static,
            &mut rows,
        );
        Self {
            columns: self.columns,
            v4,
            v6,
            rows: rows.bytes.into(),
        }
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

/// Merges the ranges of one family into a table of row ids: each column from its source,
/// the static column from `static_map` or, when there is an old table, from the old table.
fn merge<'a, K: Key, S>(
    old: Option<(&RangeTable<K>, &DecisionTable)>,
    sources: &[Source<'a>],
    family: impl Fn(&'a HopRanges) -> &'a RangeTable<K>,
    static_map: Option<(&RangeTable<K>, &S)>,
    static_of: &impl Fn(&S, u32) -> u16,
    rows: &mut Rows,
) -> RangeTable<K> {
    let new: Vec<Option<&RangeTable<K>>> = sources
        .iter()
        .map(|s| match s {
            Source::New(Some(v)) => Some(family(v)),
            _ => None,
        })
        .collect();
    // Every table starts a range at zero; the merged table has a range wherever any input
    // starts one. Walking the inputs side by side, the next start is the least of their next
    // starts: O(inputs) memory and O(ranges x inputs) time, with no list of all starts (which
    // would hold a hundred full tables' worth of addresses at a time).
    // The columns that do not come from the old table, with their new view (if any).
    let replaced: Vec<(usize, Option<&RangeTable<K>>)> = sources
        .iter()
        .enumerate()
        .filter(|(_, s)| matches!(s, Source::New(_)))
        .map(|(column, _)| (column, new[column]))
        .collect();
    let static_table = static_map.map(|(t, _)| t);
    let old_table = old.map(|(t, _)| t);
    let mut cursors = vec![0usize; new.len()];
    let mut static_cursor = 0usize;
    let mut old_cursor = 0usize;
    let mut row = vec![0u8; sources.len() + 2];
    let mut out = Vec::new();
    let mut start = K::ZERO;
    loop {
        let old_row = old.map(|(t, table)| table.row_bytes(advance(t, &mut old_cursor, start)));
        if let Some(r) = old_row {
            // Columns kept from the old table, and its static column, in one copy.
            row.copy_from_slice(r);
        }
        for &(column, table) in &replaced {
            row[column] = match table {
                Some(t) => hop_byte(advance(t, &mut cursors[column], start)),
                None => NO_ROUTE,
            };
        }
        let n = row.len();
        match (static_map, old_row) {
            (Some((table, m)), _) => {
                let s = static_of(m, advance(table, &mut static_cursor, start));
                row[n - 2..].copy_from_slice(&s.to_le_bytes());
            }
            // Copied with the old row.
            (None, Some(_)) => {}
            (None, None) => row[n - 2..].copy_from_slice(&NO_STATIC.to_le_bytes()),
        }
        out.push((start, rows.intern(&row)));
        // Every cursor now sits on the range holding `start`: the next start is the least
        // start after it.
        let next = replaced
            .iter()
            .filter_map(|&(column, t)| t.and_then(|t| t.start(cursors[column] + 1)))
            .chain(static_table.and_then(|t| t.start(static_cursor + 1)))
            .chain(old_table.and_then(|t| t.start(old_cursor + 1)))
            .min();
        match next {
            Some(n) => start = n,
            None => break,
        }
    }
    RangeTable::from_ranges(out)
}

/// The hop byte of a [`HopRanges`] value.
fn hop_byte(value: u32) -> u8 {
    match value {
        NONE => NO_ROUTE,
        // Paths of 255 hops or more saturate just below "no route".
        hops => u8::try_from(hops).unwrap_or(NO_ROUTE - 1).min(NO_ROUTE - 1),
    }
}

/// Moves `cursor` to the range of `table` that holds `start`; returns its value.
fn advance<K: Key>(table: &RangeTable<K>, cursor: &mut usize, start: K) -> u32 {
    while table.start(*cursor + 1).is_some_and(|next| next <= start) {
        *cursor += 1;
    }
    table.value(*cursor)
}
