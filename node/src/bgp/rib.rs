//! [P] The routes one BGP peer has sent: prefix -> AS path, kept as UPDATEs come.
//!
//! "Best path per prefix" is simple with one peer and no ADD-PATH (RFC 7911, not negotiated):
//! the peer sends at most one path per prefix, its own best, so the best path is the last
//! one it announced. An announcement of a prefix already held replaces its path (implicit
//! withdraw, RFC 4271 §3.1); a withdrawal removes it; an End-of-RIB marker withdraws nothing
//! and only records that the peer's initial table for a family is complete.
//!
//! Paths are stored flattened (see [`crate::routes::aspath`]): the view needs hop counts, and
//! the POP's own ASN at the front is removed once, here.

use std::collections::{BTreeSet, HashMap};

use ipnet::IpNet;

use super::wire::{Family, Update};
use crate::routes::RouteView;
use crate::routes::aspath::PathBuilder;

/// What one UPDATE changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// Prefixes announced (new or with a replaced path).
    pub announced: usize,
    /// Prefixes removed by a withdrawal (withdrawals of prefixes not held count nothing).
    pub withdrawn: usize,
}

/// One peer's routes.
#[derive(Debug)]
pub struct Rib {
    own_asn: u32,
    routes: HashMap<IpNet, Box<[u32]>>,
    end_of_rib: BTreeSet<Family>,
}

impl Rib {
    /// An empty RIB for a POP whose AS number is `own_asn`.
    pub fn new(own_asn: u32) -> Self {
        Self {
            own_asn,
            routes: HashMap::new(),
            end_of_rib: BTreeSet::new(),
        }
    }

    /// Applies one UPDATE: withdrawals first, then announcements, so a prefix listed in both
    /// ends up announced (RFC 4271 §4.3 asks senders not to, and receivers to let the
    /// announcement win).
    pub fn apply(&mut self, update: &Update) -> Applied {
        let mut applied = Applied::default();
        for prefix in &update.withdrawn {
            if self.routes.remove(prefix).is_some() {
                applied.withdrawn += 1;
            }
        }
        if !update.announced.is_empty() {
            let mut builder = PathBuilder::default();
            builder.extend(&update.path);
            let path = builder.finish(self.own_asn);
            for prefix in &update.announced {
                self.routes.insert(*prefix, path.clone());
                applied.announced += 1;
            }
        }
        if let Some(family) = update.end_of_rib {
            self.end_of_rib.insert(family);
        }
        applied
    }

    /// Whether an End-of-RIB marker has come for every one of `families`.
    pub fn complete(&self, families: &[Family]) -> bool {
        families.iter().all(|f| self.end_of_rib.contains(f))
    }

    /// Number of prefixes held.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// Whether no prefix is held.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// The path held for `prefix`.
    pub fn get(&self, prefix: &IpNet) -> Option<&[u32]> {
        self.routes.get(prefix).map(|p| &**p)
    }

    /// A copy of every route, for building a view away from the session.
    pub fn entries(&self) -> Vec<(IpNet, Box<[u32]>)> {
        self.routes
            .iter()
            .map(|(prefix, path)| (*prefix, path.clone()))
            .collect()
    }

    /// The routes as a view.
    pub fn view(&self) -> RouteView {
        RouteView::new(self.entries())
    }
}
