//! \[P\] Ground truth per client prefix, the two baselines of the issue, scoring, and the
//! oracle of a geo name's answer when some POPs may not be handed out for it ([`expected`],
//! [`owed`]).
//!
//! For every prefix of the topology (a client network), the truth holds:
//! - the POPs at the fewest AS hops, as the POPs' own route views count them: a node that
//!   breaks ties by its own rules (rendezvous hashing, load) is right with any of them;
//! - the POP with the lowest latency along its chosen AS path (sum of the link latencies from
//!   the POP's AS to the client's origin AS; the path the POP's router uses, which is the one
//!   its answers travel);
//! - the POP a GeoIP-only server would pick: the nearest by great-circle distance between
//!   the client's origin AS and the POP's AS (a best case for GeoIP: its database is exact).
//!
//! Each entry also names a client subnet to ask with: the first /24 (IPv4) or /48 (IPv6) of
//! the prefix that no more-specific of the table overlaps, so a query for it is decided by
//! this prefix's routes. A prefix entirely covered by more-specifics decides no query and has
//! no entry (the count is kept in [`Truth::covered`]).

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fmt::{self, Write as _};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::pops::Pop;
use crate::routes::PopViews;
use crate::topology::Topology;

/// The truth for one client prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The routed prefix.
    pub prefix: IpNet,
    /// The client subnet to ask with (inside `prefix`, overlapping no more-specific).
    pub client: IpNet,
    /// The origin AS number.
    pub origin: u32,
    /// The fewest AS hops from any POP.
    pub hops: usize,
    /// The POPs (indices) at that many hops, ascending.
    pub by_hops: Vec<usize>,
    /// The lowest one-way latency from any POP along its path, in microseconds.
    pub latency_us: u32,
    /// The POPs (indices) with that latency, ascending (almost always one).
    pub by_latency: Vec<usize>,
    /// The POP nearest by geographic position (GeoIP's answer); ties to the lower index.
    pub by_geo: usize,
}

/// Ground truth for every client prefix of a topology and POP set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Truth {
    /// POP names, by index.
    pub pops: Vec<String>,
    /// One entry per client prefix, in the topology's prefix order.
    pub entries: Vec<Entry>,
    /// Prefixes left out because more-specifics cover them entirely.
    pub covered: usize,
}

/// One line that [`Truth::parse`] skipped, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    /// 1-based line number.
    pub line: usize,
    /// What was wrong.
    pub reason: String,
}

impl Truth {
    /// Computes the truth for `pops` (in the order of `views`).
    pub fn compute(topo: &Topology, pops: &[Pop], views: &PopViews) -> Self {
        let mut entries = Vec::with_capacity(topo.prefixes.len());
        let mut covered = 0;
        for (k, &(prefix, origin)) in topo.prefixes.iter().enumerate() {
            let more_specifics = topo.prefixes[k + 1..]
                .iter()
                .map(|&(n, _)| n)
                .take_while(|n| prefix.contains(n));
            let Some(client) = free_block(prefix, more_specifics) else {
                covered += 1;
                continue;
            };
            entries.push(entry(topo, pops, views, prefix, client, origin));
        }
        Self {
            pops: pops.iter().map(|p| p.name.clone()).collect(),
            entries,
            covered,
        }
    }

    /// The index of the POP named `name`.
    pub fn pop_index(&self, name: &str) -> Option<usize> {
        self.pops.iter().position(|p| p == name)
    }

    /// Round robin, the first baseline: query `i` of `clients` goes to POP `i mod n`.
    pub fn round_robin(&self, clients: &[IpNet]) -> Vec<(IpNet, usize)> {
        let n = self.pops.len().max(1);
        clients
            .iter()
            .enumerate()
            .map(|(i, &c)| (c, i % n))
            .collect()
    }

    /// The GeoIP baseline: each client goes to the POP nearest its position. Clients the
    /// truth does not know are left out.
    pub fn geoip(&self, clients: &[IpNet]) -> Vec<(IpNet, usize)> {
        let index = self.index();
        clients
            .iter()
            .filter_map(|c| index.get(c).map(|&k| (*c, self.entries[k].by_geo)))
            .collect()
    }

    /// Scores answers, each a (client prefix or client subnet, answered POP index), against
    /// the truth.
    pub fn score(&self, answers: impl IntoIterator<Item = (IpNet, usize)>) -> Score {
        let index = self.index();
        let mut s = Score::default();
        for (client, pop) in answers {
            s.answers += 1;
            let Some(&k) = index.get(&client) else {
                s.unknown += 1;
                continue;
            };
            let e = &self.entries[k];
            s.right_by_hops += usize::from(e.by_hops.contains(&pop));
            s.right_by_latency += usize::from(e.by_latency.contains(&pop));
        }
        s
    }

    /// Entries by prefix and by client subnet.
    fn index(&self) -> HashMap<IpNet, usize> {
        let mut m = HashMap::with_capacity(self.entries.len() * 2);
        for (k, e) in self.entries.iter().enumerate() {
            m.insert(e.prefix, k);
            m.insert(e.client, k);
        }
        m
    }

    /// The truth as text: a `POPS` line, then one line per entry:
    /// `PREFIX CLIENT ORIGIN HOPS POPS_BY_HOPS LATENCY_US POPS_BY_LATENCY POP_BY_GEO`, POP
    /// lists comma-separated. [`Truth::parse`] reads it back.
    pub fn to_text(&self, header: &str) -> String {
        let mut out = String::with_capacity(self.entries.len() * 64 + 256);
        for h in header.lines() {
            let _ = writeln!(out, "# {h}");
        }
        let _ = writeln!(
            out,
            "# PREFIX CLIENT_SUBNET ORIGIN_AS MIN_HOPS POPS_AT_MIN_HOPS MIN_LATENCY_US \
             POPS_AT_MIN_LATENCY NEAREST_POP_BY_POSITION\n\
             # {} prefixes entirely covered by more-specifics have no line.",
            self.covered
        );
        let _ = writeln!(out, "POPS {}", self.pops.join(" "));
        let names = |v: &[usize]| {
            v.iter()
                .map(|&i| self.pops[i].as_str())
                .collect::<Vec<_>>()
                .join(",")
        };
        for e in &self.entries {
            let _ = writeln!(
                out,
                "{} {} {} {} {} {} {} {}",
                e.prefix,
                e.client,
                e.origin,
                e.hops,
                names(&e.by_hops),
                e.latency_us,
                names(&e.by_latency),
                self.pops[e.by_geo]
            );
        }
        out
    }

    /// Parses [`Truth::to_text`]'s format. Bad lines are skipped and reported; a missing or
    /// repeated `POPS` line is an error.
    pub fn parse(text: &str) -> Result<(Self, Vec<Skipped>), String> {
        let mut pops: Option<Vec<String>> = None;
        let mut entries = Vec::new();
        let mut skipped = Vec::new();
        let mut covered = 0;
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let content = raw.split('#').next().unwrap_or("").trim();
            if content.is_empty() {
                if let Some(n) = raw
                    .trim_start_matches(['#', ' '])
                    .strip_suffix(" prefixes entirely covered by more-specifics have no line.")
                {
                    covered = n.parse().unwrap_or(0);
                }
                continue;
            }
            if let Some(names) = content.strip_prefix("POPS") {
                if pops.is_some() {
                    return Err(format!("line {line}: a second POPS line"));
                }
                pops = Some(names.split_whitespace().map(str::to_owned).collect());
                continue;
            }
            let Some(names) = &pops else {
                return Err(format!("line {line}: an entry before the POPS line"));
            };
            match parse_entry(content, names) {
                Ok(e) => entries.push(e),
                Err(reason) => skipped.push(Skipped { line, reason }),
            }
        }
        let pops = pops.ok_or("no POPS line")?;
        Ok((
            Self {
                pops,
                entries,
                covered,
            },
            skipped,
        ))
    }
}

fn parse_entry(content: &str, names: &[String]) -> Result<Entry, String> {
    let f: Vec<&str> = content.split_whitespace().collect();
    let [
        prefix,
        client,
        origin,
        hops,
        by_hops,
        latency,
        by_latency,
        by_geo,
    ] = f[..]
    else {
        return Err(format!("expected 8 fields, found {}", f.len()));
    };
    let net = |s: &str| {
        s.parse::<IpNet>()
            .map_err(|_| format!("`{s}` is not a prefix"))
    };
    let num = |s: &str| {
        s.parse::<u64>()
            .map_err(|_| format!("`{s}` is not a number"))
    };
    let pop = |s: &str| {
        names
            .iter()
            .position(|n| n == s)
            .ok_or_else(|| format!("`{s}` is not in the POPS line"))
    };
    let list = |s: &str| s.split(',').map(pop).collect::<Result<Vec<_>, _>>();
    let too_big = |_| "number out of range".to_owned();
    Ok(Entry {
        prefix: net(prefix)?,
        client: net(client)?,
        origin: num(origin)?.try_into().map_err(too_big)?,
        hops: num(hops)?.try_into().map_err(too_big)?,
        by_hops: list(by_hops)?,
        latency_us: num(latency)?.try_into().map_err(too_big)?,
        by_latency: list(by_latency)?,
        by_geo: pop(by_geo)?,
    })
}

fn entry(
    topo: &Topology,
    pops: &[Pop],
    views: &PopViews,
    prefix: IpNet,
    client: IpNet,
    origin: u32,
) -> Entry {
    let hops: Vec<usize> = (0..pops.len()).map(|p| views.hops(p, origin)).collect();
    let latency: Vec<u32> = (0..pops.len())
        .map(|p| views.latency_us(p, origin))
        .collect();
    let min_hops = hops.iter().copied().min().unwrap_or(0);
    let min_latency = latency.iter().copied().min().unwrap_or(0);
    let at = topo.ases[origin as usize].pos;
    let by_geo = (0..pops.len())
        .map(|p| (topo.ases[pops[p].as_index as usize].pos.distance_km(at), p))
        .min_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)))
        .map_or(0, |(_, p)| p);
    Entry {
        prefix,
        client,
        origin: topo.ases[origin as usize].asn,
        hops: min_hops,
        by_hops: (0..pops.len()).filter(|&p| hops[p] == min_hops).collect(),
        latency_us: min_latency,
        by_latency: (0..pops.len())
            .filter(|&p| latency[p] == min_latency)
            .collect(),
        by_geo,
    }
}

/// The oracle of one geo name's answer to one client: the POPs a node may answer with.
///
/// `hops` holds each POP's AS hops to the client as its route view counts them (`None`: no
/// route, as for a query without ECS from an address no view covers), `usable` whether the
/// POP may be handed out for this name by the answering node (up, heard of, not drained,
/// and this name's service healthy there) and `own` is the answering node's POP. It follows
/// the node's policy (`node/src/policy/mod.rs`) for a name without static map, canaries,
/// groups, hop limit, loads or weights, as netsim configures them: usable POPs only (all of
/// them when none is: fail open), routed before unrouted, fewest hops, and among unrouted
/// POPs the node's own first. The node picks one POP of the set by rendezvous hashing of
/// the client's block, so a client keeps its POP as long as that POP stays in the set
/// ([`owed`]).
pub fn expected(hops: &[Option<usize>], usable: &[bool], own: usize) -> Vec<usize> {
    let any = usable.iter().any(|&u| u);
    let eligible: Vec<usize> = (0..hops.len())
        .filter(|&p| !any || usable.get(p).copied().unwrap_or(false))
        .collect();
    let best = eligible.iter().filter_map(|&p| hops[p]).min();
    match best {
        Some(h) => eligible
            .into_iter()
            .filter(|&p| hops[p] == Some(h))
            .collect(),
        None if eligible.contains(&own) => vec![own],
        None => eligible,
    }
}

/// Whether `answer` is the one owed to a client whose no-fault answer was `no_fault`, when
/// the oracle allows `expected` ([`expected`]): the no-fault answer if it is still allowed
/// (rendezvous hashing keeps a client's POP while it is eligible, so nobody else moves),
/// else any allowed POP.
pub fn owed(answer: usize, no_fault: Option<usize>, expected: &[usize]) -> bool {
    match no_fault {
        Some(n) if expected.contains(&n) => answer == n,
        _ => expected.contains(&answer),
    }
}

/// The first /24 (IPv4) or /48 (IPv6) block of `prefix` (or `prefix` itself when longer)
/// that none of its `more_specifics` (sorted by address) overlaps.
pub fn free_block(prefix: IpNet, more_specifics: impl Iterator<Item = IpNet>) -> Option<IpNet> {
    let (width, block_len) = match prefix {
        IpNet::V4(_) => (32u32, 24u8),
        IpNet::V6(_) => (128, 48),
    };
    let len = prefix.prefix_len().max(block_len);
    let size = 1u128 << (width - u32::from(len));
    let (start, end) = bounds(prefix);
    let mut cursor = start;
    for m in more_specifics {
        let (ms, me) = bounds(m);
        if ms >= cursor.saturating_add(size) {
            break;
        }
        if me >= cursor {
            // Past this more-specific, aligned up to the next block.
            cursor = (me / size + 1).saturating_mul(size);
            if cursor == 0 || cursor > end {
                return None;
            }
        }
    }
    if cursor.checked_add(size - 1)? > end {
        return None;
    }
    Some(match prefix {
        IpNet::V4(_) => Ipv4Net::new((cursor as u32).into(), len).ok()?.into(),
        IpNet::V6(_) => Ipv6Net::new(cursor.into(), len).ok()?.into(),
    })
}

/// First and last address of a prefix, as integers.
fn bounds(net: IpNet) -> (u128, u128) {
    match net {
        IpNet::V4(n) => (
            u128::from(u32::from(n.network())),
            u128::from(u32::from(n.broadcast())),
        ),
        IpNet::V6(n) => (u128::from(n.network()), u128::from(n.broadcast())),
    }
}

/// How many answers were right.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Score {
    /// Answers scored.
    pub answers: usize,
    /// Answers for clients the truth does not know (not counted as right).
    pub unknown: usize,
    /// Answers naming a POP at the fewest AS hops.
    pub right_by_hops: usize,
    /// Answers naming the POP of lowest latency.
    pub right_by_latency: usize,
}

impl Score {
    /// Share of answers right by AS hops, 0.0 to 1.0 (0 without answers).
    pub fn share_by_hops(&self) -> f64 {
        ratio(self.right_by_hops, self.answers)
    }

    /// Share of answers right by latency.
    pub fn share_by_latency(&self) -> f64 {
        ratio(self.right_by_latency, self.answers)
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

impl fmt::Display for Score {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} answers: {:.1}% right by AS hops, {:.1}% right by latency",
            self.answers,
            100.0 * self.share_by_hops(),
            100.0 * self.share_by_latency()
        )?;
        if self.unknown > 0 {
            write!(f, " ({} for clients without truth)", self.unknown)?;
        }
        Ok(())
    }
}
