//! \[P\] Placing POPs in a [`Topology`]: in an AS the operator names, or in an AS of a region
//! chosen by the seed.
//!
//! A company's POP usually sits in a datacenter with its own AS, multihomed to two or three
//! regional transit providers; automatic placement therefore prefers multihomed stubs of the
//! region that originate both IPv4 and IPv6 (their first prefixes give the POP's addresses).

#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::rng;
use crate::topology::{Region, Tier, Topology};

/// Where to put a POP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Placement {
    /// In the AS with this number.
    Asn(u32),
    /// In an AS of this region, chosen by the seed.
    Region(Region),
}

/// A POP to place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PopRequest {
    /// Its name (letters, digits, `-`, `_`), as in the node config.
    pub name: String,
    /// Where.
    pub place: Placement,
}

impl PopRequest {
    /// Parses `NAME=ASN` (`ams=AS3320` or `ams=3320`), `NAME@REGION` (`ams@eu`) or a bare
    /// `NAME` of [`SITES`] (placed in the site's region).
    pub fn parse(s: &str) -> Result<Self, String> {
        let (name, place) = if let Some((name, asn)) = s.split_once('=') {
            let digits = asn
                .strip_prefix("AS")
                .or_else(|| asn.strip_prefix("as"))
                .unwrap_or(asn);
            let asn = digits
                .parse()
                .map_err(|_| format!("`{asn}` is not an AS number (in `{s}`)"))?;
            (name, Placement::Asn(asn))
        } else if let Some((name, region)) = s.split_once('@') {
            let r = Region::from_slug(region).ok_or_else(|| {
                format!(
                    "unknown region `{region}` (in `{s}`); regions: {}",
                    region_list()
                )
            })?;
            (name, Placement::Region(r))
        } else {
            let region = SITES
                .iter()
                .find(|&&(site, _)| site == s)
                .map(|&(_, r)| r)
                .ok_or_else(|| {
                    format!(
                        "`{s}` is not a known site: write NAME=ASN or NAME@REGION (regions: {})",
                        region_list()
                    )
                })?;
            (s, Placement::Region(region))
        };
        check_name(name)?;
        Ok(Self {
            name: name.to_owned(),
            place,
        })
    }

    /// `count` POPs named after [`SITES`] in order (then `pop17`, `pop18`, ... cycling through
    /// the regions), one per site's region.
    pub fn auto(count: usize) -> Vec<Self> {
        (0..count)
            .map(|i| match SITES.get(i) {
                Some(&(name, region)) => Self {
                    name: name.to_owned(),
                    place: Placement::Region(region),
                },
                None => Self {
                    name: format!("pop{}", i + 1),
                    place: Placement::Region(Region::ALL[i % Region::ALL.len()]),
                },
            })
            .collect()
    }
}

/// Site names for automatically named POPs, with their regions: spread over the world first,
/// then a second POP in the large markets.
pub const SITES: &[(&str, Region)] = &[
    ("fra", Region::Eu),
    ("nyc", Region::NaEast),
    ("sjc", Region::NaWest),
    ("sin", Region::AsSouth),
    ("syd", Region::Oc),
    ("gru", Region::Sa),
    ("nrt", Region::AsEast),
    ("jnb", Region::Af),
    ("ams", Region::Eu),
    ("iad", Region::NaEast),
    ("lax", Region::NaWest),
    ("hkg", Region::AsEast),
    ("bom", Region::AsSouth),
    ("lhr", Region::Eu),
    ("ord", Region::NaEast),
    ("scl", Region::Sa),
];

fn region_list() -> String {
    Region::ALL
        .iter()
        .map(|r| r.slug())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Checks a POP name as the node's config does: letters, digits, `-` or `_`.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(format!(
            "POP name `{name}` must be letters, digits, `-` or `_`"
        ));
    }
    Ok(())
}

/// A placed POP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pop {
    /// Its name.
    pub name: String,
    /// Index of its AS in the topology.
    pub as_index: u32,
    /// Its AS number.
    pub asn: u32,
    /// Where it serves (the answers a node gives for it): one address in its AS's first
    /// IPv4 prefix and one in its first IPv6 prefix, if it has one.
    pub addresses: Vec<IpAddr>,
}

/// Why POPs cannot be placed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlaceError {
    /// Two POPs with one name.
    #[error("POP name `{0}` is used twice")]
    DuplicateName(String),
    /// The AS does not exist in the topology.
    #[error("POP {pop}: AS{asn} is not in the topology")]
    NoSuchAs {
        /// The POP.
        pop: String,
        /// The AS asked for.
        asn: u32,
    },
    /// Two POPs in one AS (the node requires one ASN per POP).
    #[error("POPs {0} and {1} are both in AS{2}; each POP needs an AS of its own")]
    SameAs(String, String, u32),
    /// No free AS left.
    #[error("no free AS left for POP {0}")]
    Full(String),
    /// No POP at all.
    #[error("no POP to place")]
    Empty,
}

/// Places `requests` in `topo`. Explicit ASes are honoured first; region placements then
/// take, in request order, a free AS of the region chosen by `seed` and the POP's name.
pub fn place(topo: &Topology, requests: &[PopRequest], seed: u64) -> Result<Vec<Pop>, PlaceError> {
    if requests.is_empty() {
        return Err(PlaceError::Empty);
    }
    let mut names = HashSet::new();
    for r in requests {
        if !names.insert(r.name.as_str()) {
            return Err(PlaceError::DuplicateName(r.name.clone()));
        }
    }
    let by_as = topo.prefixes_by_as();
    let mut taken: Vec<Option<&str>> = vec![None; topo.ases.len()];
    let mut chosen: Vec<Option<u32>> = vec![None; requests.len()];
    for (k, r) in requests.iter().enumerate() {
        if let Placement::Asn(asn) = r.place {
            let i = topo.index_of(asn).ok_or_else(|| PlaceError::NoSuchAs {
                pop: r.name.clone(),
                asn,
            })?;
            if let Some(other) = taken[i as usize] {
                return Err(PlaceError::SameAs(other.to_owned(), r.name.clone(), asn));
            }
            taken[i as usize] = Some(&r.name);
            chosen[k] = Some(i);
        }
    }
    for (k, r) in requests.iter().enumerate() {
        let Placement::Region(region) = r.place else {
            continue;
        };
        let key = rng::hash(&[seed, name_key(&r.name)]);
        let i = pick(topo, &by_as, &taken, region, key)
            .ok_or_else(|| PlaceError::Full(r.name.clone()))?;
        taken[i as usize] = Some(&r.name);
        chosen[k] = Some(i);
    }
    Ok(requests
        .iter()
        .zip(chosen)
        .map(|(r, i)| {
            // INVARIANT: both loops above set every entry or returned an error.
            let i = i.expect("every POP placed");
            Pop {
                name: r.name.clone(),
                as_index: i,
                asn: topo.ases[i as usize].asn,
                addresses: topo.host_addresses(i),
            }
        })
        .collect())
}

/// A free AS for a POP in `region`, by preference: a multihomed stub with IPv4 and IPv6, any
/// stub with both, any AS of the region with both, any free AS with IPv4 anywhere. Among
/// the best candidates, `key` picks one.
fn pick(
    topo: &Topology,
    by_as: &[Vec<IpNet>],
    taken: &[Option<&str>],
    region: Region,
    key: u64,
) -> Option<u32> {
    let dual = |i: usize| {
        by_as[i].iter().any(|n| matches!(n, IpNet::V4(_)))
            && by_as[i].iter().any(|n| matches!(n, IpNet::V6(_)))
    };
    let tests: [&dyn Fn(usize) -> bool; 4] = [
        &|i| {
            let a = &topo.ases[i];
            a.region == region && a.tier == Tier::Stub && a.providers.len() >= 2 && dual(i)
        },
        &|i| topo.ases[i].region == region && topo.ases[i].tier == Tier::Stub && dual(i),
        &|i| topo.ases[i].region == region && dual(i),
        &|i| !by_as[i].is_empty(),
    ];
    for test in tests {
        let candidates: Vec<u32> = (0..topo.ases.len())
            .filter(|&i| taken[i].is_none() && test(i))
            .map(|i| i as u32)
            .collect();
        if !candidates.is_empty() {
            return Some(candidates[(key % candidates.len() as u64) as usize]);
        }
    }
    None
}

fn name_key(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

impl fmt::Display for Pop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (AS{})", self.name, self.asn)
    }
}
