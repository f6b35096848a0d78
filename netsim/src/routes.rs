//! \[P\] Interdomain routing over a [`Topology`] under the Gao–Rexford rules, and the route
//! view each POP's router would hold.
//!
//! The rules (Gao and Rexford, "Stable Internet routing without global coordination", 2001):
//! - **Export (valley-free):** a route learnt from a customer, or the AS's own prefix, is
//!   exported to everyone; a route learnt from a peer or a provider only to customers.
//! - **Preference:** a customer route over a peer route over a provider route; then the
//!   shorter AS path; then the neighbour with the lower AS number (a deterministic stand-in
//!   for the router-id and other tie-breaks of the BGP decision process).
//!
//! With an acyclic customer->provider graph these rules have one stable outcome, which a
//! breadth-first search per destination finds in three phases, O(ASes + links) each:
//! 1. customer routes climb from the destination up provider links, level by level;
//! 2. peer routes: one peer hop from any AS holding its own or a customer route;
//! 3. provider routes descend customer links from every AS holding any route, shortest first
//!    (a bucket queue, since the sources start at different lengths).
//!
//! [`Routes`] is the outcome for one destination at every AS; [`PopViews`] runs every
//! destination and keeps, for each POP, the path to every AS (what its router would hold),
//! together with the path's latency from the link latencies.

#[cfg(test)]
mod tests;

use std::fmt::Write as _;
use std::io;

use ipnet::IpNet;

use crate::topology::Topology;

/// Where a route was learnt, in order of preference.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Class {
    /// The AS's own prefix.
    Own,
    /// Learnt from a customer.
    Customer,
    /// Learnt from a peer.
    Peer,
    /// Learnt from a provider.
    Provider,
}

const NONE: u8 = u8::MAX;

impl Class {
    fn code(self) -> u8 {
        self as u8
    }

    fn from_code(c: u8) -> Option<Self> {
        match c {
            0 => Some(Self::Own),
            1 => Some(Self::Customer),
            2 => Some(Self::Peer),
            3 => Some(Self::Provider),
            _ => None,
        }
    }
}

/// The route every AS selects towards one destination AS.
#[derive(Clone, Debug)]
pub struct Routes {
    dest: u32,
    class: Vec<u8>,
    hops: Vec<u16>,
    next: Vec<u32>,
    /// Scratch: frontier lists and length buckets, kept to reuse their allocations.
    frontier: Vec<u32>,
    buckets: Vec<Vec<u32>>,
}

impl Routes {
    /// The routes of every AS towards `dest`.
    pub fn compute(topo: &Topology, dest: u32) -> Self {
        let mut r = Self {
            dest,
            class: Vec::new(),
            hops: Vec::new(),
            next: Vec::new(),
            frontier: Vec::new(),
            buckets: Vec::new(),
        };
        r.recompute(topo, dest);
        r
    }

    /// Recomputes for another destination, reusing the allocations.
    pub fn recompute(&mut self, topo: &Topology, dest: u32) {
        let n = topo.ases.len();
        self.dest = dest;
        self.class.clear();
        self.class.resize(n, NONE);
        self.hops.clear();
        self.hops.resize(n, 0);
        self.next.clear();
        self.next.resize(n, u32::MAX);
        let asn = |i: u32| topo.ases[i as usize].asn;
        let d = dest as usize;
        self.class[d] = Class::Own.code();
        self.next[d] = dest;

        // Phase 1: customer routes, up the provider links one level at a time. `holders`
        // collects every AS with its own or a customer route, for phase 2.
        let mut holders = vec![dest];
        let mut frontier = std::mem::take(&mut self.frontier);
        frontier.clear();
        frontier.push(dest);
        let mut level = 0u16;
        while !frontier.is_empty() {
            let mut next_frontier = Vec::new();
            for &u in &frontier {
                for &p in &topo.ases[u as usize].providers {
                    let pi = p as usize;
                    if self.class[pi] == NONE {
                        self.class[pi] = Class::Customer.code();
                        self.hops[pi] = level + 1;
                        self.next[pi] = u;
                        next_frontier.push(p);
                    } else if self.class[pi] == Class::Customer.code()
                        && self.hops[pi] == level + 1
                        && asn(u) < asn(self.next[pi])
                    {
                        self.next[pi] = u;
                    }
                }
            }
            holders.extend_from_slice(&next_frontier);
            frontier = next_frontier;
            level += 1;
        }
        self.frontier = frontier;

        // Phase 2: peer routes, one peer hop from a holder; only ASes without a customer
        // route take one.
        for &u in &holders {
            let len = self.hops[u as usize] + 1;
            for &q in &topo.ases[u as usize].peers {
                let qi = q as usize;
                if self.class[qi] == NONE
                    || (self.class[qi] == Class::Peer.code()
                        && (len, asn(u)) < (self.hops[qi], asn(self.next[qi])))
                {
                    self.class[qi] = Class::Peer.code();
                    self.hops[qi] = len;
                    self.next[qi] = u;
                }
            }
        }

        // Phase 3: provider routes down the customer links, shortest first.
        for b in &mut self.buckets {
            b.clear();
        }
        for i in 0..n {
            if self.class[i] != NONE {
                self.bucket(self.hops[i]).push(i as u32);
            }
        }
        let mut len = 0usize;
        while len < self.buckets.len() {
            let bucket = std::mem::take(&mut self.buckets[len]);
            for &u in &bucket {
                let new_len = len as u16 + 1;
                for &c in &topo.ases[u as usize].customers {
                    let ci = c as usize;
                    if self.class[ci] == NONE {
                        self.class[ci] = Class::Provider.code();
                        self.hops[ci] = new_len;
                        self.next[ci] = u;
                        self.bucket(new_len).push(c);
                    } else if self.class[ci] == Class::Provider.code()
                        && self.hops[ci] == new_len
                        && asn(u) < asn(self.next[ci])
                    {
                        self.next[ci] = u;
                    }
                }
            }
            self.buckets[len] = bucket;
            len += 1;
        }
    }

    fn bucket(&mut self, len: u16) -> &mut Vec<u32> {
        let len = usize::from(len);
        if self.buckets.len() <= len {
            self.buckets.resize_with(len + 1, Vec::new);
        }
        &mut self.buckets[len]
    }

    /// The destination AS.
    pub fn dest(&self) -> u32 {
        self.dest
    }

    /// The class and AS-hop count of `from`'s route, if it has one.
    pub fn route(&self, from: u32) -> Option<(Class, u16)> {
        let i = from as usize;
        Class::from_code(self.class[i]).map(|c| (c, self.hops[i]))
    }

    /// The neighbour `from` sends traffic to (itself for the destination).
    pub fn next_hop(&self, from: u32) -> Option<u32> {
        (self.class[from as usize] != NONE).then(|| self.next[from as usize])
    }

    /// `from`'s AS path as AS indices, nearest first, ending with the destination; empty for
    /// the destination itself, `None` without a route.
    pub fn path(&self, from: u32) -> Option<Vec<u32>> {
        let mut out = Vec::new();
        self.walk(from, |x| out.push(x))?;
        Some(out)
    }

    /// Calls `f` with each AS of `from`'s path in order; `None` without a route.
    fn walk(&self, from: u32, mut f: impl FnMut(u32)) -> Option<()> {
        self.next_hop(from)?;
        let mut x = from;
        // A path never has more ASes than the topology; the bound only guards a bug.
        for _ in 0..self.class.len() {
            if x == self.dest {
                return Some(());
            }
            x = self.next[x as usize];
            f(x);
        }
        // INVARIANT: next-hop pointers decrease the hop count by one at every step.
        unreachable!("routing loop towards AS index {}", self.dest)
    }
}

/// Every POP's route view: for each POP (placed in an AS), the AS path and its latency to
/// every AS of the topology.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PopViews {
    /// The AS index of each POP.
    pub pop_ases: Vec<u32>,
    views: Vec<View>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct View {
    /// Path of destination AS `d`: `asns[starts[d]..starts[d + 1]]` (AS numbers).
    starts: Vec<u32>,
    asns: Vec<u32>,
    /// One-way latency of the path to each destination AS, in microseconds.
    latency_us: Vec<u32>,
}

impl PopViews {
    /// Runs routing to every destination and keeps the paths of the POPs in `pop_ases`.
    /// Uses every available core; the result does not depend on how many there are.
    pub fn compute(topo: &Topology, pop_ases: &[u32]) -> Self {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self::compute_with_threads(topo, pop_ases, threads)
    }

    /// As [`PopViews::compute`] on `threads` threads (at least one).
    pub fn compute_with_threads(topo: &Topology, pop_ases: &[u32], threads: usize) -> Self {
        let n = topo.ases.len();
        let threads = threads.clamp(1, n.max(1));
        let chunk = n.div_ceil(threads);
        let parts: Vec<Vec<View>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let range = (t * chunk).min(n)..((t + 1) * chunk).min(n);
                    s.spawn(move || views_for(topo, pop_ases, range))
                })
                .collect();
            handles
                .into_iter()
                // INVARIANT: `views_for` does not panic on a valid topology; a panic there is
                // a bug worth propagating.
                .map(|h| h.join().expect("routing thread panicked"))
                .collect()
        });
        let mut views: Vec<View> = vec![View::default(); pop_ases.len()];
        for part in parts {
            for (view, piece) in views.iter_mut().zip(part) {
                let base = view.asns.len() as u32;
                if view.starts.is_empty() {
                    view.starts.push(0);
                }
                view.starts
                    .extend(piece.starts.iter().skip(1).map(|&s| s + base));
                view.asns.extend_from_slice(&piece.asns);
                view.latency_us.extend_from_slice(&piece.latency_us);
            }
        }
        Self {
            pop_ases: pop_ases.to_vec(),
            views,
        }
    }

    /// Number of POPs.
    pub fn len(&self) -> usize {
        self.views.len()
    }

    /// Whether there is no POP.
    pub fn is_empty(&self) -> bool {
        self.views.is_empty()
    }

    /// POP `pop`'s AS path (AS numbers, nearest first) to AS index `dest`; empty for its
    /// own AS.
    pub fn path(&self, pop: usize, dest: u32) -> &[u32] {
        let v = &self.views[pop];
        let d = dest as usize;
        &v.asns[v.starts[d] as usize..v.starts[d + 1] as usize]
    }

    /// AS hops from POP `pop` to AS index `dest`.
    pub fn hops(&self, pop: usize, dest: u32) -> usize {
        self.path(pop, dest).len()
    }

    /// One-way latency along POP `pop`'s path to AS index `dest`, in microseconds.
    pub fn latency_us(&self, pop: usize, dest: u32) -> u32 {
        self.views[pop].latency_us[dest as usize]
    }

    /// POP `pop`'s route view: every prefix of the topology with the AS path its router
    /// holds, in the topology's prefix order. This is the one source of every output format
    /// (text here; an MRT writer takes the same pairs).
    pub fn view_entries<'a>(
        &'a self,
        topo: &'a Topology,
        pop: usize,
    ) -> impl Iterator<Item = (IpNet, &'a [u32])> + 'a {
        topo.prefixes
            .iter()
            .map(move |&(net, owner)| (net, self.path(pop, owner)))
    }

    /// Writes POP `pop`'s view in the node's route-view text format (`PREFIX AS_PATH...`,
    /// nearest AS first, an empty path for the POP's own prefixes) after a comment
    /// `header` (each line gets a `# `).
    pub fn write_text(
        &self,
        topo: &Topology,
        pop: usize,
        header: &str,
        out: &mut impl io::Write,
    ) -> io::Result<()> {
        let mut line = String::with_capacity(64);
        for h in header.lines() {
            writeln!(out, "# {h}")?;
        }
        writeln!(
            out,
            "# PREFIX AS_PATH...   nearest AS first; AS hops = path length."
        )?;
        for (net, path) in self.view_entries(topo, pop) {
            line.clear();
            let _ = write!(line, "{net}");
            for asn in path {
                let _ = write!(line, " {asn}");
            }
            line.push('\n');
            out.write_all(line.as_bytes())?;
        }
        Ok(())
    }

    /// [`PopViews::write_text`] into a `String`.
    pub fn text(&self, topo: &Topology, pop: usize, header: &str) -> String {
        let mut out = Vec::new();
        // INVARIANT: writing into a Vec never fails, and the text is ASCII.
        self.write_text(topo, pop, header, &mut out)
            .expect("writing to memory");
        String::from_utf8(out).expect("route views are ASCII")
    }
}

/// The POPs' paths to the destinations in `range`, as one partial [`View`] per POP.
fn views_for(topo: &Topology, pop_ases: &[u32], range: std::ops::Range<usize>) -> Vec<View> {
    let mut views: Vec<View> = pop_ases
        .iter()
        .map(|_| View {
            starts: vec![0],
            asns: Vec::new(),
            latency_us: Vec::new(),
        })
        .collect();
    let Some(first) = range.clone().next() else {
        return views;
    };
    let mut routes = Routes::compute(topo, first as u32);
    for d in range {
        if d != first {
            routes.recompute(topo, d as u32);
        }
        for (view, &pop) in views.iter_mut().zip(pop_ases) {
            let mut prev = pop;
            let mut latency = 0u32;
            let reached = routes.walk(pop, |x| {
                view.asns.push(topo.ases[x as usize].asn);
                latency += topo.latency_us(prev, x);
                prev = x;
            });
            // INVARIANT: the customer->provider graph is acyclic and reaches the tier-1
            // clique, so every AS has a route to every destination.
            assert!(reached.is_some(), "AS index {pop} has no route to {d}");
            view.starts.push(view.asns.len() as u32);
            view.latency_us.push(latency);
        }
    }
    views
}
