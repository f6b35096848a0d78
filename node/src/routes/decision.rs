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

use std::collections::HashMap;
use std::net::IpAddr;

use super::lpm::{Key, NONE, RangeTable};
use super::{Hit, RouteView, StaticMap};

/// Hop byte meaning "no route".
const NO_ROUTE: u8 = u8::MAX;
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

    /// The candidate the static map names for the client, if any.
    pub fn static_column(&self) -> Option<usize> {
        let n = self.bytes.len();
        let v = u16::from_le_bytes([self.bytes[n - 2], self.bytes[n - 1]]);
        (v != NO_STATIC).then_some(usize::from(v))
    }
}

impl DecisionTable {
    /// Builds the table for candidates whose views are `views` (in candidate order; `None`
    /// for a POP without a view). `static_column` maps a static map value (a POP index) to
    /// the candidate column it names, if that POP is a candidate.
    pub fn build(
        views: &[Option<&RouteView>],
        static_map: Option<&StaticMap>,
        static_column: impl Fn(usize) -> Option<usize>,
    ) -> Self {
        let columns = views.len();
        assert!(columns < usize::from(NO_STATIC), "too many candidate POPs");
        let mut rows = Rows::new(columns);
        let hop_of = |view: &RouteView, value: u32| match value {
            NONE => NO_ROUTE,
            i => view.entries.get(i as usize).map_or(NO_ROUTE, |(_, path)| {
                // Paths of 255 hops or more saturate just below "no route".
                u8::try_from(path.len())
                    .unwrap_or(NO_ROUTE - 1)
                    .min(NO_ROUTE - 1)
            }),
        };
        let static_of = |map: &StaticMap, value: u32| match value {
            NONE => NO_STATIC,
            i => map
                .entries
                .get(i as usize)
                .and_then(|(_, pop)| static_column(*pop))
                .map_or(NO_STATIC, |c| c as u16),
        };
        let v4 = merge(
            &views
                .iter()
                .map(|v| v.map(|v| (&v.v4, v)))
                .collect::<Vec<_>>(),
            static_map.map(|m| (&m.v4, m)),
            &hop_of,
            &static_of,
            &mut rows,
        );
        let v6 = merge(
            &views
                .iter()
                .map(|v| v.map(|v| (&v.v6, v)))
                .collect::<Vec<_>>(),
            static_map.map(|m| (&m.v6, m)),
            &hop_of,
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

/// Interned rows.
struct Rows {
    stride: usize,
    bytes: Vec<u8>,
    ids: HashMap<Box<[u8]>, u32>,
}

impl Rows {
    fn new(columns: usize) -> Self {
        Self {
            stride: columns + 2,
            bytes: Vec::new(),
            ids: HashMap::new(),
        }
    }

    fn intern(&mut self, row: &[u8]) -> u32 {
        if let Some(&id) = self.ids.get(row) {
            return id;
        }
        // INVARIANT: at most one row per range, and ranges are far fewer than u32::MAX.
        let id = u32::try_from(self.bytes.len() / self.stride).expect("rows fit in u32");
        self.bytes.extend_from_slice(row);
        self.ids.insert(row.into(), id);
        id
    }
}

/// Merges the ranges of several tables of one family into a table of row ids.
fn merge<K: Key, V, S>(
    views: &[Option<(&RangeTable<K>, &V)>],
    static_map: Option<(&RangeTable<K>, &S)>,
    hop_of: &impl Fn(&V, u32) -> u8,
    static_of: &impl Fn(&S, u32) -> u16,
    rows: &mut Rows,
) -> RangeTable<K> {
    let tables: Vec<&RangeTable<K>> = views
        .iter()
        .flatten()
        .map(|(t, _)| *t)
        .chain(static_map.map(|(t, _)| t))
        .collect();
    let mut starts: Vec<K> = tables
        .iter()
        .flat_map(|t| t.iter().map(|(s, _)| s))
        .collect();
    // Every table starts a range at zero; with no table at all, one range covers everything.
    starts.push(K::ZERO);
    starts.sort_unstable();
    starts.dedup();
    // One cursor per table: the index of the range holding the current start.
    let mut cursors = vec![0usize; tables.len()];
    let mut row = vec![0u8; views.len() + 2];
    let mut out = Vec::with_capacity(starts.len());
    for start in starts {
        let mut t = 0;
        for (column, view) in views.iter().enumerate() {
            row[column] = match view {
                None => NO_ROUTE,
                Some((table, v)) => {
                    let value = advance(table, &mut cursors[t], start);
                    t += 1;
                    hop_of(v, value)
                }
            };
        }
        let s = match static_map {
            None => NO_STATIC,
            Some((table, m)) => static_of(m, advance(table, &mut cursors[t], start)),
        };
        let n = row.len();
        row[n - 2..].copy_from_slice(&s.to_le_bytes());
        out.push((start, rows.intern(&row)));
    }
    RangeTable::from_ranges(out)
}

/// Moves `cursor` to the range of `table` that holds `start`; returns its value.
fn advance<K: Key>(table: &RangeTable<K>, cursor: &mut usize, start: K) -> u32 {
    while table.start(*cursor + 1).is_some_and(|next| next <= start) {
        *cursor += 1;
    }
    table.value(*cursor)
}
