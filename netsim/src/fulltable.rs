//! \[P\] Full BGP tables at today's scale: a prefix set shaped like the real Internet table, and
//! the route view each POP would see of it, in Sparrow's text format.
//!
//! Why synthetic: a real table dump is tens of megabytes, licensed per collector, and changes
//! daily; a seeded generator gives the same million prefixes on every machine, in a second,
//! with no file to ship. What makes it "realistic" is what a longest-prefix-match table and
//! the answer path are sensitive to:
//! - the prefix-length mix (how many ranges a table flattens into, how deep lookups go),
//!   taken from the RIPE/route-views length histograms of 2024–2025 ([`V4_LENGTH_MIX`],
//!   [`V6_LENGTH_MIX`]);
//! - nesting: about half the real table is more-specifics of other announced prefixes
//!   (deaggregation for traffic engineering, customers of an LIR), which is what makes the
//!   range flattening non-trivial;
//! - address space: only routable space (no RFC 1918, loopback, multicast, documentation or
//!   benchmarking ranges; IPv6 only from the RIR blocks of 2000::/3), so the reserved ranges
//!   are guaranteed to have no route ([`unrouted_addresses`]);
//! - AS paths of 1–9 hops with the observed mean of about 4, correlated between POPs as in
//!   reality: the origin AS and the ASes near it are properties of the prefix, while the
//!   POP's own upstreams and its distance to a region differ from POP to POP.
//!
//! Not modelled: AS-path prepending (it would inflate hop counts), more-specifics longer
//! than /24 and /48 (filtered by nearly every network, so absent from real full tables),
//! and any relation between a prefix's length and its path.

#[cfg(test)]
mod tests;

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::rng::{self, FastSet, Rng};

/// IPv4 prefixes in a full table as of 2025 (about 1.04 million, growing ~3% a year).
pub const FULL_V4: usize = 1_040_000;
/// IPv6 prefixes in a full table as of 2025 (about 250,000, growing ~10% a year).
pub const FULL_V6: usize = 250_000;

/// Largest IPv4 table [`prefixes`] accepts: twice today's. The length mix scales every
/// length alike, and at about 3.5 times today's the /16s alone would outnumber the routable
/// /16s.
pub const MAX_V4: usize = 2 * FULL_V4;
/// Largest IPv6 table [`prefixes`] accepts: twice today's, which fills about a fifth of
/// the /20s of the RIR blocks.
pub const MAX_V6: usize = 2 * FULL_V6;

/// IPv4 prefix lengths and their share of the table, in parts per million (sum 1,000,000).
///
/// About 60% /24, 8% /23, 9% /22, 6% /21, 5% /20 and the remaining 12% spread over /8–/19:
/// a few dozen /8–/10 and about as many /16 as the real table (some 14,000). The real table
/// has more /22 and fewer /19; keeping short prefixes few keeps the covered share of
/// routable space near the real ~75%, which leaves room for the non-nested /24s.
pub const V4_LENGTH_MIX: &[(u8, u32)] = &[
    (8, 15),
    (9, 15),
    (10, 40),
    (11, 100),
    (12, 300),
    (13, 700),
    (14, 1_500),
    (15, 2_500),
    (16, 14_000),
    (17, 14_000),
    (18, 26_000),
    (19, 60_830),
    (20, 50_000),
    (21, 60_000),
    (22, 90_000),
    (23, 80_000),
    (24, 600_000),
];

/// IPv6 prefix lengths and their share of the table, in parts per million (sum 1,000,000).
///
/// Half /48 (end sites, PI), 15% /32 (the standard LIR allocation), then /44, /40, /36, /29
/// and the rest; nothing longer than /48.
pub const V6_LENGTH_MIX: &[(u8, u32)] = &[
    (20, 500),
    (22, 500),
    (24, 1_000),
    (26, 1_000),
    (27, 1_000),
    (28, 5_000),
    (29, 30_000),
    (30, 4_000),
    (31, 3_000),
    (32, 150_000),
    (33, 8_000),
    (34, 6_000),
    (35, 6_000),
    (36, 30_000),
    (37, 5_000),
    (38, 10_000),
    (39, 5_000),
    (40, 60_000),
    (41, 5_000),
    (42, 15_000),
    (43, 8_000),
    (44, 80_000),
    (45, 12_000),
    (46, 30_000),
    (47, 20_000),
    (48, 504_000),
];

/// What table to generate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableSpec {
    /// Number of IPv4 prefixes (at most [`MAX_V4`]).
    pub v4_prefixes: usize,
    /// Number of IPv6 prefixes (at most [`MAX_V6`]).
    pub v6_prefixes: usize,
    /// Seed of every random choice; the same spec always gives the same table.
    pub seed: u64,
}

impl TableSpec {
    /// Today's full table: [`FULL_V4`] IPv4 and [`FULL_V6`] IPv6 prefixes.
    pub const fn full(seed: u64) -> Self {
        Self {
            v4_prefixes: FULL_V4,
            v6_prefixes: FULL_V6,
            seed,
        }
    }
}

/// Generates the distinct prefixes of a table: IPv4 first, then IPv6, each sorted by address
/// and then length (parents before their more-specifics), as in a RIB dump.
///
/// The two families come from independent streams of the seed, so changing the number of
/// IPv6 prefixes leaves the IPv4 ones as they were, and the other way round.
///
/// # Panics
///
/// If the spec asks for more than [`MAX_V4`] or [`MAX_V6`] prefixes.
pub fn prefixes(spec: TableSpec) -> Vec<IpNet> {
    assert!(
        spec.v4_prefixes <= MAX_V4 && spec.v6_prefixes <= MAX_V6,
        "table too large: at most {MAX_V4} IPv4 and {MAX_V6} IPv6 prefixes, got {spec:?}"
    );
    let mut out = Vec::with_capacity(spec.v4_prefixes + spec.v6_prefixes);
    for family in [Family::V4, Family::V6] {
        let count = match family {
            Family::V4 => spec.v4_prefixes,
            Family::V6 => spec.v6_prefixes,
        };
        let mut rng = Rng::new(rng::hash(&[spec.seed, u64::from(family.bits())]));
        out.extend(
            generate(family, count, &mut rng)
                .into_iter()
                .map(|(net, len)| family.to_net(net, len)),
        );
    }
    out
}

/// The AS path one POP sees for `prefix`, nearest AS first; its length is the AS-hop count.
///
/// A pure function of its arguments, so a prefix keeps its path whatever else is in the
/// table. Paths for the same `seed` and different `pop`s are correlated: they share the
/// origin AS and the transit ASes next to it, and their lengths differ by a per-POP,
/// per-region bias plus a little per-prefix jitter. No AS appears twice in a path.
pub fn as_path(prefix: IpNet, pop: u32, seed: u64) -> Vec<u32> {
    let mut path = Vec::with_capacity(9);
    as_path_into(prefix, pop, seed, &mut path);
    path
}

/// The route view of POP number `pop`: every prefix with its [`as_path`].
pub fn pop_view_entries(prefixes: &[IpNet], pop: u32, seed: u64) -> Vec<(IpNet, Vec<u32>)> {
    prefixes
        .iter()
        .map(|&net| (net, as_path(net, pop, seed)))
        .collect()
}

/// The route view of POP number `pop` as the text of a route-view file, one
/// `PREFIX ASN ASN ...` line per prefix after a comment header.
///
/// Use the same `seed` for every POP of a simulation (that is what correlates their paths)
/// and a different `pop` number for each.
pub fn pop_view(prefixes: &[IpNet], pop: u32, seed: u64) -> String {
    // About 40 bytes a line for a /24 with a 4-hop path.
    let mut text = String::with_capacity(prefixes.len() * 44 + 200);
    push_fmt(
        &mut text,
        format_args!(
            "# Route view of simulated POP {pop} (sparrow-netsim fulltable, seed {seed}).\n\
             # PREFIX AS_PATH...   nearest AS first; AS hops = path length.\n"
        ),
    );
    let mut path = Vec::with_capacity(9);
    for &net in prefixes {
        as_path_into(net, pop, seed, &mut path);
        push_fmt(&mut text, format_args!("{net}"));
        for asn in &path {
            push_fmt(&mut text, format_args!(" {asn}"));
        }
        text.push('\n');
    }
    text
}

/// `count` client addresses, each a random host inside a random prefix of `prefixes`, so that
/// every one of them has a route. Empty when `prefixes` is.
pub fn sample_addresses(prefixes: &[IpNet], count: usize, seed: u64) -> Vec<IpAddr> {
    if prefixes.is_empty() {
        return Vec::new();
    }
    let mut rng = Rng::new(seed);
    (0..count)
        .map(|_| {
            let net = prefixes[rng.below(prefixes.len() as u64) as usize];
            let host = (u128::from(rng.next_u64()) << 64) | u128::from(rng.next_u64());
            match net {
                IpNet::V4(n) => {
                    let bits = u32::from(n.network()) | (host as u32 & u32::from(n.hostmask()));
                    IpAddr::V4(Ipv4Addr::from(bits))
                }
                IpNet::V6(n) => {
                    let bits = u128::from(n.network()) | (host & u128::from(n.hostmask()));
                    IpAddr::V6(Ipv6Addr::from(bits))
                }
            }
        })
        .collect()
}

/// `count` addresses that no generated table covers, alternating IPv4 from the benchmarking
/// range 198.18.0.0/15 (RFC 2544) and IPv6 from the documentation range 2001:db8::/32.
pub fn unrouted_addresses(count: usize, seed: u64) -> Vec<IpAddr> {
    let mut rng = Rng::new(seed);
    (0..count)
        .map(|i| {
            let bits = rng.next_u64();
            if i % 2 == 0 {
                let low = bits as u32 & 0x0001_FFFF;
                IpAddr::V4(Ipv4Addr::from(0xC612_0000 | low))
            } else {
                let low = u128::from(bits) | (u128::from(rng.next_u64()) << 64);
                let low = low & (u128::MAX >> 32);
                IpAddr::V6(Ipv6Addr::from(0x2001_0db8_u128 << 96 | low))
            }
        })
        .collect()
}

/// Share of prefixes placed inside an existing shorter one, in parts per million; the others
/// are placed where no shorter prefix covers them. About half the real table is
/// more-specifics of other announced prefixes (Huston, "More Specifics in BGP", 2017).
const V4_NEST_CHANCE: u32 = 500_000;
/// As [`V4_NEST_CHANCE`]; somewhat fewer in IPv6, where deaggregation is less common.
const V6_NEST_CHANCE: u32 = 450_000;
/// A more-specific is at most this many bits longer than its parent: a /24 goes inside a
/// /16–/23 (a carved-out customer block), not inside a /8.
const V4_NEST_WINDOW: u8 = 8;
/// As [`V4_NEST_WINDOW`]; a /48 inside its LIR's /32 is the typical IPv6 case.
const V6_NEST_WINDOW: u8 = 16;
/// Tries to find a free slot inside a parent before placing the prefix elsewhere.
const NEST_TRIES: usize = 4;
/// Tries to find uncovered space for a prefix that is not a more-specific. The short
/// prefixes cover about 70% of routable space at full scale, so a handful of tries suffices;
/// past this (only in tables far larger than today's) the prefix may land inside another.
const UNCOVERED_TRIES: usize = 64;
/// Tries of random placement before giving up; with the size limits the expected number is
/// below 2, so running out means a bug.
const PLACE_TRIES: usize = 1_000_000;

/// Reserved IPv4 space that must carry no route (network, length).
const V4_RESERVED: &[(u32, u8)] = &[
    (0x0000_0000, 8),  // 0.0.0.0/8 "this network"
    (0x0A00_0000, 8),  // 10.0.0.0/8 private
    (0x6440_0000, 10), // 100.64.0.0/10 carrier-grade NAT
    (0x7F00_0000, 8),  // 127.0.0.0/8 loopback
    (0xA9FE_0000, 16), // 169.254.0.0/16 link local
    (0xAC10_0000, 12), // 172.16.0.0/12 private
    (0xC000_0000, 24), // 192.0.0.0/24 IETF protocol assignments
    (0xC000_0200, 24), // 192.0.2.0/24 documentation
    (0xC058_6300, 24), // 192.88.99.0/24 6to4 relay anycast
    (0xC0A8_0000, 16), // 192.168.0.0/16 private
    (0xC612_0000, 15), // 198.18.0.0/15 benchmarking
    (0xC633_6400, 24), // 198.51.100.0/24 documentation
    (0xCB00_7100, 24), // 203.0.113.0/24 documentation
    (0xE000_0000, 3),  // 224.0.0.0/3 multicast and class E
];

/// Reserved IPv6 space inside the RIR blocks below that must carry no route.
const V6_RESERVED: &[(u128, u8)] = &[
    (0x2001_0000 << 96, 23), // 2001::/23 IETF protocol assignments (Teredo, ORCHID, ...)
    (0x2001_0db8 << 96, 32), // 2001:db8::/32 documentation
];

/// Where IPv6 prefixes come from: the RIR blocks of 2000::/3 that hold nearly all of today's
/// routes (network, length, weight in percent).
const V6_SPACE: &[(u128, u8, u64)] = &[
    (0x2001 << 112, 16, 10), // early allocations of all RIRs
    (0x2400 << 112, 12, 20), // APNIC
    (0x2600 << 112, 12, 30), // ARIN
    (0x2800 << 112, 12, 8),  // LACNIC
    (0x2a00 << 112, 12, 30), // RIPE NCC
    (0x2c00 << 112, 12, 2),  // AFRINIC
];

/// An address family, with addresses held as `u128` in the low `bits()` bits.
#[derive(Clone, Copy, Debug)]
enum Family {
    V4,
    V6,
}

impl Family {
    fn bits(self) -> u8 {
        match self {
            Self::V4 => 32,
            Self::V6 => 128,
        }
    }

    fn mix(self) -> &'static [(u8, u32)] {
        match self {
            Self::V4 => V4_LENGTH_MIX,
            Self::V6 => V6_LENGTH_MIX,
        }
    }

    fn nest(self) -> (u32, u8) {
        match self {
            Self::V4 => (V4_NEST_CHANCE, V4_NEST_WINDOW),
            Self::V6 => (V6_NEST_CHANCE, V6_NEST_WINDOW),
        }
    }

    /// The network mask of a prefix of length `len`.
    fn mask(self, len: u8) -> u128 {
        let all = u128::MAX >> (128 - u32::from(self.bits()));
        all & !all.checked_shr(u32::from(len)).unwrap_or(0)
    }

    /// A random address of the family's routable space (reserved ranges are filtered later).
    fn draw(self, rng: &mut Rng) -> u128 {
        match self {
            Self::V4 => u128::from(rng.next_u64() as u32),
            Self::V6 => {
                let total: u64 = V6_SPACE.iter().map(|&(_, _, w)| w).sum();
                let mut pick = rng.below(total);
                let &(net, len, _) = V6_SPACE
                    .iter()
                    .find(|&&(_, _, w)| {
                        let hit = pick < w;
                        pick = pick.saturating_sub(w);
                        hit
                    })
                    .unwrap_or(&V6_SPACE[0]);
                let random = (u128::from(rng.next_u64()) << 64) | u128::from(rng.next_u64());
                net | (random & !self.mask(len))
            }
        }
    }

    /// Whether the prefix overlaps reserved space (contains it or lies inside it).
    fn is_reserved(self, net: u128, len: u8) -> bool {
        let overlaps = |r: u128, rlen: u8| {
            let m = self.mask(len.min(rlen));
            net & m == r & m
        };
        match self {
            Self::V4 => V4_RESERVED
                .iter()
                .any(|&(r, rlen)| overlaps(u128::from(r), rlen)),
            Self::V6 => V6_RESERVED.iter().any(|&(r, rlen)| overlaps(r, rlen)),
        }
    }

    fn to_net(self, net: u128, len: u8) -> IpNet {
        // INVARIANT: `generate` only makes lengths from the mix tables, all within the width.
        match self {
            Self::V4 => Ipv4Net::new(Ipv4Addr::from(net as u32), len)
                .expect("IPv4 length at most 32")
                .into(),
            Self::V6 => Ipv6Net::new(Ipv6Addr::from(net), len)
                .expect("IPv6 length at most 128")
                .into(),
        }
    }
}

/// How many prefixes of each length a table of `count` gets, shortest first. Exact shares
/// rounded down; the most common length takes the remainder.
fn quotas(mix: &[(u8, u32)], count: usize) -> Vec<(u8, usize)> {
    let mut quotas: Vec<(u8, usize)> = mix
        .iter()
        .map(|&(len, ppm)| (len, (count as u128 * u128::from(ppm) / 1_000_000) as usize))
        .collect();
    let assigned: usize = quotas.iter().map(|&(_, n)| n).sum();
    let top = mix
        .iter()
        .enumerate()
        .max_by_key(|&(_, &(_, ppm))| ppm)
        .map_or(0, |(i, _)| i);
    if let Some(q) = quotas.get_mut(top) {
        q.1 += count - assigned;
    }
    quotas.sort_unstable_by_key(|&(len, _)| len);
    quotas
}

/// Places `count` distinct prefixes of `family`, shortest lengths first so that more-specifics
/// have parents to go into. Returns them sorted by (network, length).
fn generate(family: Family, count: usize, rng: &mut Rng) -> Vec<(u128, u8)> {
    let mut placed = Placed::new(family, count);
    for (len, n) in quotas(family.mix(), count) {
        for _ in 0..n {
            let net = place(&placed, len, rng);
            placed.insert(net, len);
        }
    }
    let mut all: Vec<(u128, u8)> = placed.seen.into_iter().collect();
    all.sort_unstable();
    all
}

/// A free, routable network for a new prefix of length `len`: inside an existing shorter
/// prefix with the family's nesting chance, in space no shorter prefix covers otherwise.
fn place(placed: &Placed, len: u8, rng: &mut Rng) -> u128 {
    let family = placed.family;
    let (chance, window) = family.nest();
    let shift = u32::from(family.bits() - len);
    let nested = rng.chance(chance);
    if nested {
        for _ in 0..NEST_TRIES {
            let Some((parent, plen)) = placed.pick_parent(len, window, rng) else {
                break;
            };
            let child = parent | u128::from(rng.below(1 << (len - plen))) << shift;
            if !placed.contains(child, len) {
                return child;
            }
        }
    }
    for attempt in 0..PLACE_TRIES {
        let net = family.draw(rng) & family.mask(len);
        if !family.is_reserved(net, len)
            && !placed.contains(net, len)
            && (nested || attempt >= UNCOVERED_TRIES || !placed.is_covered(net, len))
        {
            return net;
        }
    }
    // INVARIANT: the size limits keep every length far from filling its space.
    unreachable!("no free /{len} found in {PLACE_TRIES} tries")
}

/// The prefixes placed so far, indexed for the questions placement asks.
struct Placed {
    family: Family,
    seen: FastSet<(u128, u8)>,
    by_len: Vec<Vec<u128>>,
    /// IPv4 only: one bit per /24, set when a placed prefix covers it. Prefixes are placed
    /// shortest first and never partly overlap, so whether a new prefix lies inside another
    /// is one bit test instead of a hash lookup per shorter length. Empty for IPv6, whose
    /// space is too large for a bitmap and sparse enough for the lookups.
    covered_24s: Vec<u64>,
}

impl Placed {
    fn new(family: Family, count: usize) -> Self {
        Self {
            family,
            seen: FastSet::with_capacity_and_hasher(count, Default::default()),
            by_len: vec![Vec::new(); usize::from(family.bits()) + 1],
            covered_24s: match family {
                Family::V4 => vec![0; (1 << 24) / 64],
                Family::V6 => Vec::new(),
            },
        }
    }

    fn contains(&self, net: u128, len: u8) -> bool {
        self.seen.contains(&(net, len))
    }

    fn insert(&mut self, net: u128, len: u8) {
        self.seen.insert((net, len));
        self.by_len[usize::from(len)].push(net);
        if let Family::V4 = self.family {
            // INVARIANT: IPv4 lengths in the mix are at most /24.
            let first = (net >> 8) as usize;
            for slot in first..first + (1 << (24 - len)) {
                self.covered_24s[slot / 64] |= 1 << (slot % 64);
            }
        }
    }

    /// Whether a prefix not placed yet would lie inside a placed one.
    fn is_covered(&self, net: u128, len: u8) -> bool {
        match self.family {
            Family::V4 => {
                let slot = (net >> 8) as usize;
                self.covered_24s[slot / 64] & (1 << (slot % 64)) != 0
            }
            Family::V6 => (1..len).any(|l| {
                !self.by_len[usize::from(l)].is_empty()
                    && self.contains(net & self.family.mask(l), l)
            }),
        }
    }

    /// A random placed prefix between 1 and `window` bits shorter than `len`, each equally
    /// likely, with its length.
    fn pick_parent(&self, len: u8, window: u8, rng: &mut Rng) -> Option<(u128, u8)> {
        let lengths = len.saturating_sub(window).max(1)..len;
        let total: usize = lengths
            .clone()
            .map(|l| self.by_len[usize::from(l)].len())
            .sum();
        if total == 0 {
            return None;
        }
        let mut pick = rng.below(total as u64) as usize;
        for l in lengths {
            let nets = &self.by_len[usize::from(l)];
            if pick < nets.len() {
                return Some((nets[pick], l));
            }
            pick -= nets.len();
        }
        None
    }
}

/// AS-hop counts of real paths as seen from a well-connected network, per mille for 1..=9
/// hops (mean about 4.2; route-views and RIPE RIS path-length statistics).
const HOPS_PER_MILLE: [u64; 9] = [10, 80, 250, 300, 200, 90, 40, 20, 10];
/// A POP is nearer to or farther from a whole region (a /8, or an RIR block for IPv6) than
/// the average POP, by one hop: per mille for -1, 0 and +1.
const REGION_BIAS_PER_MILLE: [u64; 3] = [300, 400, 300];
/// And its path to each single prefix may differ by one more hop: per mille for -1, 0, +1.
const JITTER_PER_MILLE: [u64; 3] = [200, 600, 200];
/// Transit ASes come from the 16-bit private range (RFC 6996).
const TRANSIT_ASNS: (u32, u32) = (64_512, 65_534);
/// Origin ASes come from the 32-bit private range, about as many as the real Internet has.
const ORIGIN_ASNS: (u32, u64) = (4_200_000_000, 75_000);
/// Upstream transit providers per POP.
const UPSTREAMS: u64 = 4;

/// Writes the path of [`as_path`] into `path` (cleared first), reusing its allocation.
fn as_path_into(prefix: IpNet, pop: u32, seed: u64, path: &mut Vec<u32>) {
    let (family, net, len, org_bits) = match prefix {
        IpNet::V4(n) => (
            4,
            u128::from(u32::from(n.network())) << 96,
            n.prefix_len(),
            20,
        ),
        IpNet::V6(n) => (6, u128::from(n.network()), n.prefix_len(), 40),
    };
    let prefix_key = rng::hash(&[seed, family, (net >> 64) as u64, net as u64, u64::from(len)]);
    let pop = u64::from(pop);
    // A region: the /8 of IPv4 space, the /12 (roughly an RIR block) of IPv6.
    let region = (net >> if family == 4 { 120 } else { 116 }) as u64;
    let base = 1 + pick(&HOPS_PER_MILLE, prefix_key) as i64;
    let bias = pick(
        &REGION_BIAS_PER_MILLE,
        rng::hash(&[seed, pop, family, region]),
    ) as i64
        - 1;
    let jitter = pick(&JITTER_PER_MILLE, rng::hash(&[prefix_key, pop])) as i64 - 1;
    let hops = (base + bias + jitter).clamp(1, 9) as usize;
    // The origin: neighbouring more-specifics (same /20, same /40) belong to one network.
    let org = net >> (128 - org_bits);
    let origin = ORIGIN_ASNS.0 + (rng::hash(&[seed, family, org as u64]) % ORIGIN_ASNS.1) as u32;
    // Built from the origin outwards, then reversed: the transits on the origin's side depend
    // on the prefix only, so all POPs share them; the last one added is the POP's upstream.
    path.clear();
    path.push(origin);
    let mut salt = 0u64;
    while path.len() < hops {
        let h = if path.len() == hops - 1 {
            let which = rng::hash(&[prefix_key, pop, 1]) % UPSTREAMS;
            rng::hash(&[seed, pop, which, salt])
        } else {
            rng::hash(&[prefix_key, path.len() as u64, salt])
        };
        let asn = TRANSIT_ASNS.0 + (h % u64::from(TRANSIT_ASNS.1 - TRANSIT_ASNS.0 + 1)) as u32;
        if path.contains(&asn) {
            salt += 1;
        } else {
            path.push(asn);
        }
    }
    path.reverse();
}

/// Index drawn from a per-mille table by a hash.
fn pick(per_mille: &[u64], hash: u64) -> usize {
    let total: u64 = per_mille.iter().sum();
    let mut x = hash % total;
    for (i, &p) in per_mille.iter().enumerate() {
        if x < p {
            return i;
        }
        x -= p;
    }
    per_mille.len() - 1
}

/// Appends formatted text to a `String`.
fn push_fmt(text: &mut String, args: std::fmt::Arguments<'_>) {
    // INVARIANT: formatting into a String never fails.
    text.write_fmt(args).expect("writing to a String");
}
