//! \[P\] A seeded AS-level Internet: who buys transit from whom, who peers with whom, where each
//! network sits on the globe, and which prefixes it originates.
//!
//! The shape follows what measurement studies (CAIDA's AS relationships, PeeringDB) report of
//! the real graph, scaled to the size asked for:
//! - a **tier-1 clique**: a handful of transit-free networks spread over the large regions,
//!   all peering with each other, none buying transit;
//! - **transit providers in two tiers**: tier 2 (about 2% of ASes) buys from 2–3 tier-1s and
//!   peers widely inside its region and a little across; tier 3 (about 12%) buys from 1–3
//!   tier-2s (sometimes a tier-1) and peers at its region's exchange points;
//! - **stubs** (the rest, about 85%): one provider for 40%, two for 45%, three for 15% (so
//!   most are multihomed), mostly a regional tier-3; a few peer with a neighbour (content
//!   networks at an exchange).
//!
//! Providers are picked in the buyer's own region most of the time and with preferential
//! attachment (a provider with many customers attracts more), which gives the heavy-tailed
//! degree distribution of the real graph. Providers are always in a higher tier than their
//! customers, so the customer->provider graph has no cycle and every AS reaches the tier-1
//! clique: with valley-free routing, every AS then reaches every other.
//!
//! Positions are synthetic: each AS sits near one of a few regional hubs (Frankfurt, New York,
//! San Jose, São Paulo, Tokyo, Singapore, Sydney, Johannesburg). A link's latency is the
//! great-circle distance at the speed of light in fibre, inflated for real cable routes, plus
//! a small fixed cost per hop.
//!
//! Prefixes come from [`crate::fulltable`] (the real table's length mix and nesting), so a
//! topology of tens of thousands of ASes carries a realistic share of the full table. Each AS
//! gets at least one IPv4 prefix; transit networks and about 40% of stubs also originate
//! IPv6. Large networks originate more prefixes (a heavy-tailed count per AS), and a
//! more-specific is originated either by the owner of the covering prefix (traffic
//! engineering) or by one of its customers (provider-assigned space), as in the real table.

#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::fulltable::{self, TableSpec};
use crate::rng::{self, Rng};

/// Smallest topology [`TopologySpec::new`] accepts: enough for every tier to exist.
pub const MIN_ASES: usize = 20;
/// Largest topology: about today's Internet.
pub const MAX_ASES: usize = 100_000;

/// IPv4 prefixes per AS on average (the real table: about 1.04 M prefixes over 75,000 ASes).
pub const V4_PER_AS: usize = 13;
/// IPv6 prefixes per AS on average, in tenths (the real table: about 250,000 over 75,000).
pub const V6_PER_AS_TENTHS: usize = 33;

/// What topology to generate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TopologySpec {
    /// Number of ASes, from [`MIN_ASES`] to [`MAX_ASES`].
    pub ases: usize,
    /// IPv4 prefixes in the whole topology; at least two per AS.
    pub v4_prefixes: usize,
    /// IPv6 prefixes in the whole topology.
    pub v6_prefixes: usize,
    /// Seed of every random choice.
    pub seed: u64,
}

impl TopologySpec {
    /// `ases` ASes with the real table's prefixes per AS ([`V4_PER_AS`], [`V6_PER_AS_TENTHS`]),
    /// capped at what [`fulltable`] can place.
    pub fn new(ases: usize, seed: u64) -> Self {
        Self {
            ases,
            v4_prefixes: (ases * V4_PER_AS).min(fulltable::MAX_V4),
            v6_prefixes: (ases * V6_PER_AS_TENTHS / 10).min(fulltable::MAX_V6),
            seed,
        }
    }
}

/// Why a spec cannot be generated.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpecError {
    /// Too few or too many ASes.
    #[error("a topology has from {MIN_ASES} to {MAX_ASES} ASes, not {0}")]
    Size(usize),
    /// Not enough IPv4 prefixes for every AS to get one, or more than can be placed.
    #[error(
        "{v4} IPv4 prefixes for {ases} ASes: need from 2 per AS to {}",
        fulltable::MAX_V4
    )]
    V4 {
        /// Prefixes asked for.
        v4: usize,
        /// ASes asked for.
        ases: usize,
    },
    /// More IPv6 prefixes than can be placed.
    #[error("{0} IPv6 prefixes: at most {max}", max = fulltable::MAX_V6)]
    V6(usize),
}

/// A region of the globe, with the hub its networks gather around.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Region {
    /// Europe (hub: Frankfurt).
    Eu,
    /// North America, east (New York).
    NaEast,
    /// North America, west (San Jose).
    NaWest,
    /// South America (São Paulo).
    Sa,
    /// East Asia (Tokyo).
    AsEast,
    /// South and south-east Asia (Singapore).
    AsSouth,
    /// Oceania (Sydney).
    Oc,
    /// Africa (Johannesburg).
    Af,
}

impl Region {
    /// Every region, in a fixed order.
    pub const ALL: [Self; 8] = [
        Self::Eu,
        Self::NaEast,
        Self::NaWest,
        Self::Sa,
        Self::AsEast,
        Self::AsSouth,
        Self::Oc,
        Self::Af,
    ];

    /// The name used in scenario files and on the command line.
    pub fn slug(self) -> &'static str {
        match self {
            Self::Eu => "eu",
            Self::NaEast => "na-east",
            Self::NaWest => "na-west",
            Self::Sa => "sa",
            Self::AsEast => "as-east",
            Self::AsSouth => "as-south",
            Self::Oc => "oc",
            Self::Af => "af",
        }
    }

    /// The region named `slug`.
    pub fn from_slug(slug: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.slug() == slug)
    }

    /// The hub's position (latitude, longitude in degrees).
    pub fn hub(self) -> Position {
        let (lat, lon) = match self {
            Self::Eu => (50.1, 8.7),
            Self::NaEast => (40.7, -74.0),
            Self::NaWest => (37.3, -121.9),
            Self::Sa => (-23.5, -46.6),
            Self::AsEast => (35.7, 139.7),
            Self::AsSouth => (1.35, 103.8),
            Self::Oc => (-33.9, 151.2),
            Self::Af => (-26.2, 28.0),
        };
        Position { lat, lon }
    }

    /// Share of the world's ASes in the region, in percent (roughly the RIR statistics).
    fn weight(self) -> u64 {
        match self {
            Self::Eu => 32,
            Self::NaEast => 15,
            Self::NaWest => 10,
            Self::Sa => 12,
            Self::AsEast => 12,
            Self::AsSouth => 10,
            Self::Oc => 4,
            Self::Af => 5,
        }
    }

    /// How far networks scatter around the hub, in degrees.
    fn spread(self) -> f64 {
        match self {
            Self::NaEast | Self::NaWest | Self::Eu => 6.0,
            _ => 8.0,
        }
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.slug())
    }
}

/// A point on the globe, in degrees.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Position {
    /// Latitude, -90 to 90.
    pub lat: f64,
    /// Longitude, -180 to 180.
    pub lon: f64,
}

impl Position {
    /// Great-circle distance in kilometres (haversine).
    pub fn distance_km(self, other: Self) -> f64 {
        const EARTH_RADIUS_KM: f64 = 6371.0;
        let (p1, p2) = (self.lat.to_radians(), other.lat.to_radians());
        let dp = p2 - p1;
        let dl = (other.lon - self.lon).to_radians();
        let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
        2.0 * EARTH_RADIUS_KM * a.sqrt().min(1.0).asin()
    }
}

/// Light in fibre covers about 200 km per millisecond.
const FIBRE_KM_PER_MS: f64 = 200.0;
/// Cables do not follow great circles; real paths are about 1.5 times longer.
const ROUTE_INFLATION: f64 = 1.5;
/// Every AS hop costs a little (exchange fabric, router hops inside the networks).
const PER_HOP_US: u32 = 200;

/// One-way latency of a link between two positions, in microseconds.
pub fn link_latency_us(a: Position, b: Position) -> u32 {
    let ms = a.distance_km(b) * ROUTE_INFLATION / FIBRE_KM_PER_MS;
    PER_HOP_US + (ms * 1000.0).round() as u32
}

/// The role of an AS in the hierarchy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Tier {
    /// Transit-free, in the clique.
    One,
    /// Large transit provider.
    Two,
    /// Regional transit provider.
    Three,
    /// Originates prefixes, provides transit to no one.
    Stub,
}

impl Tier {
    /// Lower-case name, for files.
    pub fn name(self) -> &'static str {
        match self {
            Self::One => "tier1",
            Self::Two => "tier2",
            Self::Three => "tier3",
            Self::Stub => "stub",
        }
    }
}

/// One AS.
#[derive(Clone, Debug, PartialEq)]
pub struct As {
    /// Its AS number (unique, public-looking, never AS_TRANS or a reserved number).
    pub asn: u32,
    /// Its role.
    pub tier: Tier,
    /// Where it is.
    pub region: Region,
    /// Its position near the region's hub.
    pub pos: Position,
    /// Neighbours it buys transit from (AS indices, sorted).
    pub providers: Vec<u32>,
    /// Neighbours it sells transit to (AS indices, sorted).
    pub customers: Vec<u32>,
    /// Settlement-free peers (AS indices, sorted).
    pub peers: Vec<u32>,
}

/// How two ASes are related, seen from the first one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Rel {
    /// The other one is my customer.
    Customer,
    /// We peer.
    Peer,
    /// The other one is my provider.
    Provider,
}

/// A generated topology. ASes are referred to by index into [`Topology::ases`].
#[derive(Clone, Debug, PartialEq)]
pub struct Topology {
    /// The spec it was made from.
    pub spec: TopologySpec,
    /// The ASes; indices are stable for a spec.
    pub ases: Vec<As>,
    /// Every originated prefix with the index of its origin AS, IPv4 first, each family sorted
    /// by (address, length) so that a prefix comes before its more-specifics.
    pub prefixes: Vec<(IpNet, u32)>,
}

impl Topology {
    /// Generates the topology of `spec`. The same spec gives the same topology everywhere.
    pub fn generate(spec: TopologySpec) -> Result<Self, SpecError> {
        if !(MIN_ASES..=MAX_ASES).contains(&spec.ases) {
            return Err(SpecError::Size(spec.ases));
        }
        if spec.v4_prefixes < 2 * spec.ases || spec.v4_prefixes > fulltable::MAX_V4 {
            return Err(SpecError::V4 {
                v4: spec.v4_prefixes,
                ases: spec.ases,
            });
        }
        if spec.v6_prefixes > fulltable::MAX_V6 {
            return Err(SpecError::V6(spec.v6_prefixes));
        }
        let mut rng = Rng::new(rng::hash(&[spec.seed, 0x7090]));
        let mut builder = Builder::new(spec.ases, &mut rng);
        builder.link(&mut rng);
        let mut ases = builder.ases;
        for a in &mut ases {
            a.providers.sort_unstable();
            a.customers.sort_unstable();
            a.peers.sort_unstable();
        }
        let prefixes = assign_prefixes(&ases, spec, &mut rng);
        Ok(Self {
            spec,
            ases,
            prefixes,
        })
    }

    /// How `a` is related to `b`, if they are neighbours.
    pub fn rel(&self, a: u32, b: u32) -> Option<Rel> {
        let x = &self.ases[a as usize];
        if x.customers.binary_search(&b).is_ok() {
            Some(Rel::Customer)
        } else if x.peers.binary_search(&b).is_ok() {
            Some(Rel::Peer)
        } else if x.providers.binary_search(&b).is_ok() {
            Some(Rel::Provider)
        } else {
            None
        }
    }

    /// One-way latency of the link between neighbours `a` and `b`, in microseconds.
    pub fn latency_us(&self, a: u32, b: u32) -> u32 {
        link_latency_us(self.ases[a as usize].pos, self.ases[b as usize].pos)
    }

    /// The index of the AS numbered `asn`.
    pub fn index_of(&self, asn: u32) -> Option<u32> {
        self.ases
            .iter()
            .position(|a| a.asn == asn)
            .map(|i| i as u32)
    }

    /// Number of links (each counted once).
    pub fn link_count(&self) -> usize {
        self.ases
            .iter()
            .map(|a| a.customers.len() * 2 + a.peers.len())
            .sum::<usize>()
            / 2
    }

    /// The prefixes each AS originates, by AS index.
    pub fn prefixes_by_as(&self) -> Vec<Vec<IpNet>> {
        let mut out = vec![Vec::new(); self.ases.len()];
        for &(net, owner) in &self.prefixes {
            out[owner as usize].push(net);
        }
        out
    }

    /// The topology as text: one `AS` line per AS and one `LINK` line per link, for people
    /// and for other tools (`netsim gen` writes it as `topology.txt`).
    pub fn to_text(&self) -> String {
        use fmt::Write as _;
        let mut counts = vec![(0usize, 0usize); self.ases.len()];
        for &(net, owner) in &self.prefixes {
            match net {
                IpNet::V4(_) => counts[owner as usize].0 += 1,
                IpNet::V6(_) => counts[owner as usize].1 += 1,
            }
        }
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# sparrow-netsim topology: {} ASes, {} links, {} prefixes, seed {}.\n\
             # AS ASN TIER REGION LAT LON V4_PREFIXES V6_PREFIXES\n\
             # LINK ASN ASN RELATION LATENCY_US   (c2p: the first is a customer of the second)",
            self.ases.len(),
            self.link_count(),
            self.prefixes.len(),
            self.spec.seed
        );
        for (a, (v4, v6)) in self.ases.iter().zip(&counts) {
            let _ = writeln!(
                out,
                "AS {} {} {} {:.3} {:.3} {v4} {v6}",
                a.asn,
                a.tier.name(),
                a.region,
                a.pos.lat,
                a.pos.lon
            );
        }
        for (i, a) in self.ases.iter().enumerate() {
            let i = i as u32;
            for &p in &a.providers {
                let _ = writeln!(
                    out,
                    "LINK {} {} c2p {}",
                    a.asn,
                    self.ases[p as usize].asn,
                    self.latency_us(i, p)
                );
            }
            for &q in a.peers.iter().filter(|&&q| q > i) {
                let _ = writeln!(
                    out,
                    "LINK {} {} p2p {}",
                    a.asn,
                    self.ases[q as usize].asn,
                    self.latency_us(i, q)
                );
            }
        }
        out
    }

    /// A host address inside the first prefix of each family that AS `index` originates,
    /// skipping the network address: where a POP in this AS would serve from.
    pub fn host_addresses(&self, index: u32) -> Vec<IpAddr> {
        let mut out: Vec<IpAddr> = Vec::new();
        for want_v4 in [true, false] {
            let first = self
                .prefixes
                .iter()
                .find(|&&(net, owner)| owner == index && matches!(net, IpNet::V4(_)) == want_v4);
            if let Some(&(net, _)) = first {
                out.push(nth_host(net, 10));
            }
        }
        out
    }
}

/// The `n`th address of `net` (wrapping inside the prefix).
fn nth_host(net: IpNet, n: u128) -> IpAddr {
    match net {
        IpNet::V4(v) => {
            let size = 1u128 << (32 - v.prefix_len());
            let off = (n % size) as u32;
            IpAddr::V4((u32::from(v.network()) + off).into())
        }
        IpNet::V6(v) => {
            let size = 1u128.checked_shl(128 - u32::from(v.prefix_len()));
            let off = size.map_or(n, |s| n % s);
            IpAddr::V6((u128::from(v.network()) + off).into())
        }
    }
}

/// Tier sizes for `n` ASes: (tier 1, tier 2, tier 3); the rest are stubs.
fn tier_sizes(n: usize) -> (usize, usize, usize) {
    let t1 = ((n as f64).powf(0.25).round() as usize + 1).clamp(4, 16);
    let t2 = (n / 50).max(3);
    let t3 = (n * 12 / 100).max(4);
    (t1, t2, t3)
}

/// Regions of the tier-1s, in order: the large markets first, as in reality.
const TIER1_REGIONS: [Region; 4] = [Region::Eu, Region::NaEast, Region::NaWest, Region::AsEast];

/// Chance (per million) that a buyer looks for a provider in its own region.
const SAME_REGION_PROVIDER: u32 = 800_000;
/// Chance (per million) that a provider is picked by preferential attachment (the provider
/// end of a random existing customer link) rather than uniformly.
const PREFERENTIAL: u32 = 600_000;
/// Chance (per million) that two tier-2s of one region peer; across regions.
const T2_PEER_SAME: u32 = 500_000;
const T2_PEER_OTHER: u32 = 80_000;
/// Exchange-point peers per tier-3 (upper bound, uniform 0..=).
const T3_MAX_PEERS: u64 = 4;
/// Chance (per million) that a stub peers with anyone (content networks at an exchange).
const STUB_PEERS: u32 = 60_000;

struct Builder {
    ases: Vec<As>,
    links: HashSet<(u32, u32)>,
    /// Indices by (tier, region): members, and one entry per customer link (for
    /// preferential attachment).
    members: Vec<Vec<Vec<u32>>>,
    endpoints: Vec<Vec<Vec<u32>>>,
}

fn tier_slot(t: Tier) -> usize {
    match t {
        Tier::One => 0,
        Tier::Two => 1,
        Tier::Three => 2,
        Tier::Stub => 3,
    }
}

fn region_slot(r: Region) -> usize {
    Region::ALL.iter().position(|&x| x == r).unwrap_or(0)
}

impl Builder {
    fn new(n: usize, rng: &mut Rng) -> Self {
        let (t1, t2, t3) = tier_sizes(n);
        let asns = draw_asns(n, rng);
        let mut ases = Vec::with_capacity(n);
        for (i, asn) in asns.into_iter().enumerate() {
            let tier = if i < t1 {
                Tier::One
            } else if i < t1 + t2 {
                Tier::Two
            } else if i < t1 + t2 + t3 {
                Tier::Three
            } else {
                Tier::Stub
            };
            // Position of the AS inside its tier.
            let k = match tier {
                Tier::One => i,
                Tier::Two => i - t1,
                Tier::Three => i - t1 - t2,
                Tier::Stub => i - t1 - t2 - t3,
            };
            let region = match tier {
                Tier::One => TIER1_REGIONS[k % TIER1_REGIONS.len()],
                // The first networks of each transit tier cover every region, so that every
                // region has regional transit even in tiny topologies.
                Tier::Two | Tier::Three if k < Region::ALL.len() => Region::ALL[k],
                _ => draw_region(rng),
            };
            let hub = region.hub();
            let s = region.spread();
            let pos = Position {
                lat: (hub.lat + (unit(rng) * 2.0 - 1.0) * s).clamp(-89.0, 89.0),
                lon: wrap_lon(hub.lon + (unit(rng) * 2.0 - 1.0) * s),
            };
            ases.push(As {
                asn,
                tier,
                region,
                pos,
                providers: Vec::new(),
                customers: Vec::new(),
                peers: Vec::new(),
            });
        }
        let mut members = vec![vec![Vec::new(); Region::ALL.len()]; 4];
        for (i, a) in ases.iter().enumerate() {
            members[tier_slot(a.tier)][region_slot(a.region)].push(i as u32);
        }
        Self {
            ases,
            links: HashSet::new(),
            endpoints: vec![vec![Vec::new(); Region::ALL.len()]; 4],
            members,
        }
    }

    fn linked(&self, a: u32, b: u32) -> bool {
        self.links.contains(&(a.min(b), a.max(b)))
    }

    fn add_transit(&mut self, customer: u32, provider: u32) {
        self.links
            .insert((customer.min(provider), customer.max(provider)));
        self.ases[customer as usize].providers.push(provider);
        self.ases[provider as usize].customers.push(customer);
        let p = &self.ases[provider as usize];
        self.endpoints[tier_slot(p.tier)][region_slot(p.region)].push(provider);
    }

    fn add_peering(&mut self, a: u32, b: u32) {
        if a == b || self.linked(a, b) {
            return;
        }
        self.links.insert((a.min(b), a.max(b)));
        self.ases[a as usize].peers.push(b);
        self.ases[b as usize].peers.push(a);
    }

    fn link(&mut self, rng: &mut Rng) {
        let n = self.ases.len() as u32;
        let t1: Vec<u32> = (0..n)
            .filter(|&i| self.ases[i as usize].tier == Tier::One)
            .collect();
        for (k, &a) in t1.iter().enumerate() {
            for &b in &t1[k + 1..] {
                self.add_peering(a, b);
            }
        }
        for i in 0..n {
            let (tier, region) = {
                let a = &self.ases[i as usize];
                (a.tier, a.region)
            };
            let (count, choices): (u64, &[(Tier, u32)]) = match tier {
                Tier::One => continue,
                Tier::Two => (2 + rng.below(2), &[(Tier::One, 1_000_000)]),
                Tier::Three => (
                    1 + rng.below(3),
                    &[(Tier::Two, 800_000), (Tier::One, 200_000)],
                ),
                Tier::Stub => (
                    match rng.below(100) {
                        0..40 => 1,
                        40..85 => 2,
                        _ => 3,
                    },
                    &[
                        (Tier::Three, 700_000),
                        (Tier::Two, 250_000),
                        (Tier::One, 50_000),
                    ],
                ),
            };
            for _ in 0..count {
                for _try in 0..8 {
                    let p = self.pick_provider(region, choices, rng);
                    if let Some(p) = p.filter(|&p| p != i && !self.linked(i, p)) {
                        self.add_transit(i, p);
                        break;
                    }
                }
            }
            // INVARIANT: tier 1 always has members and nothing links before this loop but
            // the clique, so every non-tier-1 AS gets at least one provider here.
            if self.ases[i as usize].providers.is_empty() {
                let p = t1[rng.below(t1.len() as u64) as usize];
                self.add_transit(i, p);
            }
        }
        self.peer(rng);
    }

    /// A provider of one of the tiers in `choices` (weights per million), in `region` most of
    /// the time.
    fn pick_provider(&self, region: Region, choices: &[(Tier, u32)], rng: &mut Rng) -> Option<u32> {
        let mut x = rng.below(1_000_000) as u32;
        let tier = choices
            .iter()
            .find(|&&(_, w)| {
                let hit = x < w;
                x = x.saturating_sub(w);
                hit
            })
            .map_or(choices[0].0, |&(t, _)| t);
        let t = tier_slot(tier);
        let r = if rng.chance(SAME_REGION_PROVIDER)
            && !self.members[t][region_slot(region)].is_empty()
        {
            region_slot(region)
        } else {
            let nonempty: Vec<usize> = (0..Region::ALL.len())
                .filter(|&r| !self.members[t][r].is_empty())
                .collect();
            *nonempty.get(rng.below(nonempty.len().max(1) as u64) as usize)?
        };
        let ends = &self.endpoints[t][r];
        let pool = if !ends.is_empty() && rng.chance(PREFERENTIAL) {
            ends
        } else {
            &self.members[t][r]
        };
        pool.get(rng.below(pool.len().max(1) as u64) as usize)
            .copied()
    }

    fn peer(&mut self, rng: &mut Rng) {
        let n = self.ases.len() as u32;
        let t2: Vec<u32> = (0..n)
            .filter(|&i| self.ases[i as usize].tier == Tier::Two)
            .collect();
        for (k, &a) in t2.iter().enumerate() {
            for &b in &t2[k + 1..] {
                let same = self.ases[a as usize].region == self.ases[b as usize].region;
                if rng.chance(if same { T2_PEER_SAME } else { T2_PEER_OTHER }) {
                    self.add_peering(a, b);
                }
            }
        }
        for i in 0..n {
            let (tier, region) = {
                let a = &self.ases[i as usize];
                (a.tier, a.region)
            };
            let r = region_slot(region);
            let (count, pool_tiers): (u64, &[usize]) = match tier {
                Tier::Three => (rng.below(T3_MAX_PEERS + 1), &[2]),
                Tier::Stub if rng.chance(STUB_PEERS) => (1 + rng.below(2), &[2, 3]),
                _ => continue,
            };
            for _ in 0..count {
                let t = pool_tiers[rng.below(pool_tiers.len() as u64) as usize];
                let pool = &self.members[t][r];
                if pool.is_empty() {
                    continue;
                }
                let q = pool[rng.below(pool.len() as u64) as usize];
                self.add_peering(i, q);
            }
        }
    }
}

/// `n` distinct AS numbers that look like public ones: 1–64495 and 131072–399999, never
/// AS_TRANS (23456).
fn draw_asns(n: usize, rng: &mut Rng) -> Vec<u32> {
    let mut seen = HashSet::with_capacity(n);
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let x = 1 + rng.below(399_999) as u32;
        if x == 23_456 || (64_496..131_072).contains(&x) || !seen.insert(x) {
            continue;
        }
        out.push(x);
    }
    out
}

fn draw_region(rng: &mut Rng) -> Region {
    let total: u64 = Region::ALL.iter().map(|r| r.weight()).sum();
    let mut x = rng.below(total);
    for r in Region::ALL {
        if x < r.weight() {
            return r;
        }
        x -= r.weight();
    }
    Region::Eu
}

/// A uniform value in [0, 1).
fn unit(rng: &mut Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

fn wrap_lon(lon: f64) -> f64 {
    if lon > 180.0 {
        lon - 360.0
    } else if lon < -180.0 {
        lon + 360.0
    } else {
        lon
    }
}

/// Relative prefix counts by tier; multiplied by a heavy-tailed factor per AS.
fn prefix_weight(tier: Tier) -> f64 {
    match tier {
        Tier::One => 60.0,
        Tier::Two => 30.0,
        Tier::Three => 8.0,
        Tier::Stub => 1.0,
    }
}

/// Chance (per million) that a stub originates IPv6; transit networks always do.
const STUB_V6: u32 = 400_000;
/// Chance (per million) that a more-specific is originated by a customer of the covering
/// prefix's origin rather than by that origin itself.
const NESTED_TO_CUSTOMER: u32 = 400_000;

/// Assigns the prefixes of a [`fulltable`] table to ASes. See the module doc.
fn assign_prefixes(ases: &[As], spec: TopologySpec, rng: &mut Rng) -> Vec<(IpNet, u32)> {
    let table = fulltable::prefixes(TableSpec {
        v4_prefixes: spec.v4_prefixes,
        v6_prefixes: spec.v6_prefixes,
        seed: rng::hash(&[spec.seed, 0xF17E]),
    });
    // Heavy-tailed weights (Pareto-like, as in the real table where the median AS announces a
    // few prefixes and a few hundred ASes announce thousands): tier base times 1/u, capped so
    // that one AS cannot take everything.
    let weights: Vec<f64> = ases
        .iter()
        .map(|a| prefix_weight(a.tier) * (1.0 / (unit(rng) + 1e-3)).min(500.0))
        .collect();
    let v6_ok: Vec<bool> = ases
        .iter()
        .map(|a| a.tier != Tier::Stub || rng.chance(STUB_V6))
        .collect();
    let mut out = Vec::with_capacity(table.len());
    for v4 in [true, false] {
        let family: Vec<IpNet> = table
            .iter()
            .copied()
            .filter(|n| matches!(n, IpNet::V4(_)) == v4)
            .collect();
        let eligible: Vec<u32> = (0..ases.len() as u32)
            .filter(|&i| v4 || v6_ok[i as usize])
            .collect();
        assign_family(ases, &family, &eligible, &weights, rng, &mut out);
    }
    out
}

/// Assigns one family's sorted prefixes: each eligible AS first gets one top-level prefix
/// (while they last), then the others go by weight, more-specifics to the covering prefix's
/// origin or one of its customers.
fn assign_family(
    ases: &[As],
    family: &[IpNet],
    eligible: &[u32],
    weights: &[f64],
    rng: &mut Rng,
    out: &mut Vec<(IpNet, u32)>,
) {
    let mut cumulative = Vec::with_capacity(eligible.len());
    let mut total = 0.0;
    for &i in eligible {
        total += weights[i as usize];
        cumulative.push(total);
    }
    let by_weight = |rng: &mut Rng| {
        let x = unit(rng) * total;
        let k = cumulative
            .partition_point(|&c| c <= x)
            .min(eligible.len() - 1);
        eligible[k]
    };
    // Eligible ASes in a random order, each to receive one top-level prefix first.
    let mut guaranteed = eligible.to_vec();
    for k in (1..guaranteed.len()).rev() {
        guaranteed.swap(k, rng.below(k as u64 + 1) as usize);
    }
    let mut guaranteed = guaranteed.into_iter();
    // Enclosing prefixes of the current one with their owners (the table is sorted, so a
    // prefix's more-specifics follow it).
    let mut stack: Vec<(IpNet, u32)> = Vec::new();
    for &net in family {
        while stack.last().is_some_and(|&(p, _)| !p.contains(&net)) {
            stack.pop();
        }
        let owner = match stack.last() {
            Some(&(_, parent)) => {
                let customers = &ases[parent as usize].customers;
                if !customers.is_empty() && rng.chance(NESTED_TO_CUSTOMER) {
                    customers[rng.below(customers.len() as u64) as usize]
                } else {
                    parent
                }
            }
            None => match guaranteed.next() {
                Some(i) => i,
                None => by_weight(rng),
            },
        };
        stack.push((net, owner));
        out.push((net, owner));
    }
}
