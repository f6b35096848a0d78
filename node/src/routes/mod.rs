//! [P] Route views: what one POP's router knows about the Internet, as longest-prefix-match
//! tables, and the operator's static map.
//!
//! A [`RouteView`] answers "how many AS hops from this POP to that client?" together with the
//! route that decided it. It is immutable; a changed view is a new value.

pub mod aspath;
pub mod decision;
pub mod huge;
pub mod lpm;
pub mod mrt;
#[cfg(test)]
mod tests;
mod text;
pub mod transfer;
pub mod view;

pub use self::decision::{DecisionTable, Row};
pub use self::lpm::Hit;
pub use self::text::{parse_route_view, parse_static_map};
pub use self::view::{
    HopRanges, Lookup, OwnView, PrefixTable, RouteEntries, RouteLookup, RouteView, Skipped,
    StaticMap, describe_skipped, enclosing_block,
};
