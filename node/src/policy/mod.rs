//! [P] Answer policy: which POPs a client is sent to, best first.
//!
//! `rank` is a total, deterministic function of its input: no clock, no randomness, no I/O.
//! Everything the decision depends on is a field of [`PolicyInput`].
//!
//! # The algorithm
//!
//! 1. **Eligibility.** A candidate POP is eligible when it is live, healthy and not drained.
//!    If no candidate is eligible, all of them are treated as eligible ("fail open"): a DNS
//!    answer pointing at a possibly degraded POP beats no answer, and it is what operators of
//!    gdnsd and Route 53 expect. The ranking says so ([`Ranking::failed_open`]).
//!    Then, among eligible POPs, those loaded above the high-water mark are skipped, unless
//!    all of them are (then load does not exclude any).
//! 2. **Order.** Eligible POPs are sorted by this key, first difference wins:
//!    1. the POP named by the static map for the client's prefix (operator override);
//!    2. a canary POP whose share takes this client: each canary POP takes the clients
//!       whose stable draw for it (client block, POP name, a salt) falls below its share,
//!       so the same blocks go to it on every node and a larger share keeps the smaller
//!       one's clients; while the POP is eligible;
//!    3. the name's failover groups: POPs of an earlier group first, and when the name sets
//!       a hop limit, every POP within it (with a route of at most `max_hops` hops) before
//!       any POP beyond it; without groups every POP is in the first group;
//!    4. POPs with a route to the client before POPs without one;
//!    5. fewer AS hops;
//!    6. lower load, in steps of 10% (so that nearly equal loads still tie and the rules
//!       below share clients); unknown load counts as 0;
//!    7. among POPs without a route, the node's own POP first (Super Sparrow's `--self`: a
//!       client that reaches this DNS server can probably reach this POP);
//!    8. lower preference;
//!    9. weighted rendezvous hashing of the client's block: each POP scores
//!       `-ln(u) / weight` with `u` a stable hash of (client block, POP name) in (0, 1);
//!       the lowest score wins, and between equal scores the higher `u` (so among POPs of
//!       equal weight the order is that of `u` alone, and the answer path skips the
//!       logarithm). Equal POPs share clients in proportion to their weights, a
//!       client keeps its POP as long as that POP stays eligible, and removing a POP moves
//!       only its own clients;
//!    10. the POP index, so the order is total even on a hash collision.
//!
//! [`explain`] runs the same code and keeps its intermediate results as data.

#[cfg(test)]
mod tests;

use std::cmp::Ordering;

/// Whether the operator lets a POP be handed out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AdminState {
    /// Handed out normally.
    Active,
    /// Never handed out while any other POP can be.
    Drained,
}

impl AdminState {
    /// The word for it in gossip, status and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Drained => "drained",
        }
    }
}

/// One POP as the policy sees it for one client.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    /// Index of the POP (its identity in the config).
    pub pop: usize,
    /// Stable hash of the POP's name (see [`stable_hash`]), for rendezvous hashing.
    pub name_hash: u64,
    /// AS hops from the POP to the client, if the POP's view has a route.
    pub hops: Option<u8>,
    /// Operator state.
    pub admin: AdminState,
    /// Whether the node believes the POP is up.
    pub live: bool,
    /// Whether the POP passes its health checks.
    pub healthy: bool,
    /// Lower wins among equally near POPs.
    pub preference: u16,
    /// Share among equally near POPs of equal preference.
    pub weight: u32,
    /// Load from 0.0 (idle) to 1.0 (full), if the POP publishes one.
    pub load: Option<f32>,
    /// Its failover group for this name (0 first; at most [`MAX_GROUPS`] - 1).
    pub group: u8,
    /// Its canary share for this name, in 2^-32 (0: not a canary): the clients whose
    /// [`canary_draw`] is below it go to this POP first.
    pub canary: u32,
}

/// Salt of the canary draw, so a POP's canary clients are not its rendezvous favourites.
const CANARY_SALT: u64 = 0x6361_6e61_7279_2121;

/// A client's canary draw for a POP: 32 stable random bits.
pub fn canary_draw(client_hash: u64, name_hash: u64) -> u32 {
    // INVARIANT: a 53-bit draw shifted right by 21 fits in 32 bits.
    u32::try_from(draw(client_hash, name_hash ^ CANARY_SALT) >> 21).expect("32 bits")
}

/// Whether a POP with canary share `canary` takes this client.
fn canary_hit(canary: u32, client_hash: u64, name_hash: u64) -> bool {
    canary != 0 && canary_draw(client_hash, name_hash) < canary
}

/// Most failover groups a name may have: the group and the hop-limit bit share a byte of
/// the sort key.
pub const MAX_GROUPS: usize = 128;

/// The failover tier of a POP `hops` away in group `group`: its group, and every POP beyond
/// the hop limit (or without a route, when there is a limit) after every POP within it.
fn tier(group: u8, hops: u8, max_hops: Option<u8>) -> u8 {
    let beyond = max_hops.is_some_and(|m| hops == NO_ROUTE || hops > m);
    (u8::from(beyond) << 7) | (group & 0x7F)
}

/// Everything one decision depends on.
#[derive(Clone, Debug)]
pub struct PolicyInput<'a> {
    /// POPs that may serve the name.
    pub candidates: &'a [Candidate],
    /// The node's own POP.
    pub own_pop: usize,
    /// The POP the static map names for the client, if any.
    pub static_pop: Option<usize>,
    /// Stable hash of the client's block (see [`stable_hash`]).
    pub client_hash: u64,
    /// POPs loaded above this are skipped unless all eligible POPs are.
    pub high_water: f32,
    /// The name's hop limit: POPs farther (or without a route) come after every POP within
    /// it, whatever their group.
    pub max_hops: Option<u8>,
}

/// POPs in the order they should be handed out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ranking {
    /// POP indexes, best first. Empty only when there is no candidate at all.
    pub order: Vec<usize>,
    /// True when no candidate was eligible and all were ranked anyway.
    pub failed_open: bool,
}

/// Why a candidate was not eligible.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Exclusion {
    /// The operator drained it.
    Drained,
    /// The node believes it is down.
    Down,
    /// It fails its health checks.
    Unhealthy,
    /// Loaded above the high-water mark while other eligible POPs are not.
    Overloaded,
}

/// Why the winner beat the runner-up: the first criterion on which they differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "rule")]
pub enum Reason {
    /// It was the only POP ranked.
    OnlyCandidate,
    /// The static map names it for this client.
    StaticMap,
    /// It is a canary POP and this client falls in its share.
    Canary,
    /// An earlier failover tier: an earlier group, or within the hop limit while the
    /// runner-up is beyond it (tiers: group, plus 128 beyond the limit).
    FailoverGroup {
        /// Winner's tier.
        winner: u8,
        /// Runner-up's tier.
        runner_up: u8,
    },
    /// It has a route to the client and the runner-up has none.
    OnlyRoute,
    /// Equally near, less loaded (load in tenths).
    LessLoaded {
        /// Winner's load step (0-10).
        winner: u8,
        /// Runner-up's load step (0-10).
        runner_up: u8,
    },
    /// Fewer AS hops.
    FewerHops {
        /// Winner's hops.
        winner: u8,
        /// Runner-up's hops.
        runner_up: u8,
    },
    /// No POP has a route, and it is the node's own POP.
    OwnPop,
    /// Equally near, lower preference.
    Preference {
        /// Winner's preference.
        winner: u16,
        /// Runner-up's preference.
        runner_up: u16,
    },
    /// Equally near and preferred: the client's block hashes to it.
    ClientHash,
}

/// One candidate's verdict.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    /// The POP.
    pub pop: usize,
    /// Why it was not eligible (empty when eligible).
    pub excluded: Vec<Exclusion>,
    /// Its position in the ranking (0 = winner), if ranked.
    pub rank: Option<usize>,
    /// Its rendezvous score for this client (lower wins among equals).
    pub score: f64,
}

/// The decision, kept as data (feeds `sparrow explain`).
#[derive(Clone, Debug, PartialEq)]
pub struct Explanation {
    /// The ranking `rank` returns for the same input.
    pub ranking: Ranking,
    /// One verdict per candidate, in input order.
    pub verdicts: Vec<Verdict>,
    /// Why the first POP won, if any POP was ranked.
    pub reason: Option<Reason>,
}

/// Ranks the candidates. See the module documentation for the rules.
pub fn rank(input: &PolicyInput<'_>) -> Ranking {
    let (keys, failed_open) = ranked_keys(input);
    Ranking {
        order: keys.iter().map(|k| k.pop).collect(),
        failed_open,
    }
}

/// The first `k` POPs of [`rank`]'s order that `accept` takes (e.g. the POPs that have an
/// address of the family asked for), in that order; `failed_open` as [`rank`] says it.
///
/// This is the answer path: it orders POPs by the cheap part of the sort key first and
/// computes rendezvous scores only for the POPs tied where the answer is decided, so with a
/// hundred candidates a query pays for a few logarithms, not a hundred, and never sorts
/// POPs it will not hand out. The policy tests check it against [`rank`] on every case.
pub fn rank_first(input: &PolicyInput<'_>, k: usize, accept: impl Fn(usize) -> bool) -> Ranking {
    let any_eligible = input.candidates.iter().any(is_eligible);
    let any_unloaded = input
        .candidates
        .iter()
        .any(|c| is_eligible(c) && !is_overloaded(c, input));
    let failed_open = !any_eligible && !input.candidates.is_empty();
    let mut remaining: Vec<(u64, &Candidate)> = input
        .candidates
        .iter()
        .filter(|c| !any_eligible || is_eligible(c))
        .filter(|c| !any_unloaded || !is_overloaded(c, input))
        .filter(|c| accept(c.pop))
        .map(|c| (SortKey::new_unscored(input, c).primary(), c))
        .collect();
    let mut order = Vec::with_capacity(k.min(remaining.len()));
    let mut group: Vec<(Score, usize)> = Vec::new();
    while order.len() < k && !remaining.is_empty() {
        // INVARIANT: `remaining` is not empty.
        let best = remaining.iter().map(|&(p, _)| p).min().expect("not empty");
        group.clear();
        remaining.retain(|&(p, c)| {
            if p == best {
                group.push((score(input.client_hash, c), c.pop));
            }
            p != best
        });
        group.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
        order.extend(group.iter().map(|&(_, pop)| pop).take(k - order.len()));
    }
    Ranking { order, failed_open }
}

/// The hop byte of a candidate without a route, in the rows [`Prepared::rank_first`] takes.
pub const NO_ROUTE: u8 = u8::MAX;

/// What of a ranking does not depend on the client, computed once per snapshot for one list
/// of candidates and one filter (e.g. "has an IPv4 address"): which of them may be ranked
/// at all (eligibility and the load filter look only at POP state) and the
/// client-independent part of each one's sort key. The answer path then ranks a client
/// from its row of hops alone, without building candidates: [`Prepared::rank_first`] gives
/// what [`rank_first`] gives for the same input and filter (the policy tests check it on
/// every case and on thousands of random clusters).
#[derive(Clone, Debug)]
pub struct Prepared {
    failed_open: bool,
    /// Every kept candidate has the same weight: ties are broken by the hash draw alone.
    uniform_weight: bool,
    /// The name's hop limit.
    max_hops: Option<u8>,
    /// Some kept candidate is not in the first group, or there is a hop limit, or a canary:
    /// the failover tier or the canary bit is part of the key (and the nearest-POP shortcut
    /// does not apply).
    tiered: bool,
    kept: Vec<PreparedCandidate>,
    /// Per column of the candidate list: 0 if its candidate is kept, 0xFF if not, so that
    /// `hop | mask` is the hop byte of a kept candidate and [`NO_ROUTE`] for the others.
    mask: Vec<u8>,
    /// Per column: the index of its candidate in `kept` (u32::MAX if not kept).
    kept_at: Vec<u32>,
}

/// 40 bytes: the answer path reads a hundred of them per query.
#[derive(Clone, Copy, Debug)]
struct PreparedCandidate {
    name_hash: u64,
    /// `load << 17 | preference`: the key bits of a POP with a route, but for its hops.
    routed: u32,
    /// `not_own << 16 | load << 17 | preference`: the key of the POP when it has no route,
    /// but for the no-route bit (33) and the static-map bit.
    unrouted: u32,
    /// Position in the candidate list (the column of the decision table).
    column: u32,
    pop: u32,
    weight: u32,
    eligible: bool,
    group: u8,
    canary: u32,
}

/// Key bit: the POP is not the static map's choice (or not eligible to be).
const NOT_STATIC: u64 = 1 << 44;
/// Key bit: the POP is not a canary taking this client (or not eligible to be).
const NOT_CANARY: u64 = 1 << 43;
/// Key shift of the failover tier.
const TIER_SHIFT: u32 = 35;

impl Prepared {
    /// Prepares `candidates` (their `hops` are ignored: they come per client), keeping only
    /// those `accept` takes, as [`rank_first`]'s filter does: eligibility and the load
    /// filter still look at every candidate.
    pub fn new(
        candidates: &[Candidate],
        own_pop: usize,
        high_water: f32,
        max_hops: Option<u8>,
        accept: impl Fn(usize) -> bool,
    ) -> Self {
        let input = PolicyInput {
            candidates,
            own_pop,
            static_pop: None,
            client_hash: 0,
            high_water,
            max_hops,
        };
        let any_eligible = candidates.iter().any(is_eligible);
        let any_unloaded = candidates
            .iter()
            .any(|c| is_eligible(c) && !is_overloaded(c, &input));
        let kept = candidates
            .iter()
            .enumerate()
            .filter(|(_, c)| !any_eligible || is_eligible(c))
            .filter(|(_, c)| !any_unloaded || !is_overloaded(c, &input))
            .filter(|(_, c)| accept(c.pop))
            .map(|(column, c)| {
                let base = (u32::from(load_step(c.load)) << 17) | u32::from(c.preference);
                PreparedCandidate {
                    name_hash: c.name_hash,
                    routed: base,
                    unrouted: (u32::from(c.pop != own_pop) << 16) | base,
                    // INVARIANT: POP and candidate counts are far below 2^32 (a config
                    // names them one by one).
                    column: u32::try_from(column).expect("fewer than 2^32 candidates"),
                    pop: u32::try_from(c.pop).expect("fewer than 2^32 POPs"),
                    weight: c.weight,
                    eligible: is_eligible(c),
                    group: c.group,
                    canary: c.canary,
                }
            })
            .collect::<Vec<PreparedCandidate>>();
        let mut mask = vec![0xFF; candidates.len()];
        let mut kept_at = vec![u32::MAX; candidates.len()];
        for (i, c) in kept.iter().enumerate() {
            mask[c.column as usize] = 0;
            // INVARIANT: fewer than 2^32 candidates (checked above).
            kept_at[c.column as usize] = i as u32;
        }
        Self {
            failed_open: !any_eligible && !candidates.is_empty(),
            uniform_weight: kept.windows(2).all(|w| w[0].weight == w[1].weight),
            max_hops,
            tiered: max_hops.is_some() || kept.iter().any(|c| c.group != 0 || c.canary != 0),
            kept,
            mask,
            kept_at,
        }
    }

    /// The answer for one POP when no static map applies and some kept POP has a route (else
    /// `None`, and the general pass decides). The fewest hops decide first, so the row's
    /// bytes are scanned for their least value (a loop over bytes, which compiles to vector
    /// instructions) and only the POPs at that value have their keys compared: the
    /// `(hops, load, preference)` order of the key, without visiting every candidate.
    fn nearest(&self, hops: &[u8], client_hash: u64) -> Option<usize> {
        let hops = hops.get(..self.mask.len())?;
        let fewest = hops
            .iter()
            .zip(&self.mask)
            .map(|(&h, &m)| h | m)
            .min()
            .filter(|&h| h != NO_ROUTE)?;
        const TIES: usize = 64;
        let mut ties = [0u32; TIES];
        let mut tied = 0;
        let mut best = u32::MAX;
        for (column, (&h, &m)) in hops.iter().zip(&self.mask).enumerate() {
            if h | m != fewest {
                continue;
            }
            let at = self.kept_at[column];
            // The rest of the key: load, then preference (the own-POP bit is for POPs
            // without a route).
            let routed = self.kept[at as usize].routed;
            if routed < best {
                best = routed;
                tied = 0;
            }
            if routed == best {
                if tied == TIES {
                    return None;
                }
                ties[tied] = at;
                tied += 1;
            }
        }
        let tied = ties[..tied].iter().map(|&i| &self.kept[i as usize]);
        self.tie_winner(tied, client_hash)
    }

    /// The first of `tied` (POPs with equal keys) by rendezvous score, then POP index.
    fn tie_winner<'a>(
        &self,
        tied: impl Iterator<Item = &'a PreparedCandidate>,
        client_hash: u64,
    ) -> Option<usize> {
        let pop = if self.uniform_weight {
            // Equal weights: the higher draw wins, then the lower POP index.
            tied.map(|c| (draw(client_hash, c.name_hash), std::cmp::Reverse(c.pop)))
                .max()
                .map(|(_, std::cmp::Reverse(pop))| pop)
        } else {
            tied.map(|c| (Score::new(draw(client_hash, c.name_hash), c.weight), c.pop))
                .min_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)))
                .map(|(_, pop)| pop)
        }?;
        Some(pop as usize)
    }

    /// [`rank_first`] for a client whose hops per column are `hops` ([`NO_ROUTE`] for none:
    /// a decision-table row as it is) and whose static-map POP is `static_pop`, with the
    /// filter given to [`Prepared::new`].
    pub fn rank_first(
        &self,
        hops: &[u8],
        static_pop: Option<usize>,
        client_hash: u64,
        k: usize,
    ) -> Ranking {
        let mut order = Vec::new();
        let failed_open = self.rank_first_into(hops, static_pop, client_hash, k, &mut order);
        Ranking { order, failed_open }
    }

    /// [`Self::rank_first`] writing the order into `order` (cleared first) and returning
    /// `failed_open`: the DNS server's workers keep one `order` each, so answering for one
    /// POP allocates nothing.
    pub fn rank_first_into(
        &self,
        hops: &[u8],
        static_pop: Option<usize>,
        client_hash: u64,
        k: usize,
        order: &mut Vec<usize>,
    ) -> bool {
        order.clear();
        // u32::MAX is no POP's index (there are fewer, see `new`).
        let static_pop = static_pop.map_or(u32::MAX, |p| u32::try_from(p).unwrap_or(u32::MAX));
        // The packed key of `SortKey::primary`, without branches.
        let primary = |c: &PreparedCandidate| {
            let h = hops[c.column as usize];
            let key = if h == NO_ROUTE {
                (1 << 33) | u64::from(c.unrouted)
            } else {
                (u64::from(h) << 25) | u64::from(c.routed)
            };
            let tier = u64::from(tier(c.group, h, self.max_hops)) << TIER_SHIFT;
            let canary = c.eligible && canary_hit(c.canary, client_hash, c.name_hash);
            key | tier
                | (NOT_CANARY * u64::from(!canary))
                | (NOT_STATIC * u64::from(!(c.pop == static_pop && c.eligible)))
        };
        let score = |c: &PreparedCandidate| Score::new(draw(client_hash, c.name_hash), c.weight);
        if k == 1
            && static_pop == u32::MAX
            && !self.tiered
            && let Some(winner) = self.nearest(hops, client_hash)
        {
            order.push(winner);
            return self.failed_open;
        }
        if k == 1 {
            // One POP for a static-map or unrouted client (the rest took `nearest`): the
            // least key, then the rendezvous draw among the POPs that share it.
            let best = self.kept.iter().map(primary).min();
            let tied = self.kept.iter().filter(|c| Some(primary(c)) == best);
            order.extend(self.tie_winner(tied, client_hash));
            return self.failed_open;
        }
        let mut remaining: Vec<(u64, &PreparedCandidate)> =
            self.kept.iter().map(|c| (primary(c), c)).collect();
        let mut group: Vec<(Score, usize)> = Vec::new();
        while order.len() < k && !remaining.is_empty() {
            // INVARIANT: `remaining` is not empty.
            let best = remaining.iter().map(|&(p, _)| p).min().expect("not empty");
            group.clear();
            remaining.retain(|&(p, c)| {
                if p == best {
                    group.push((score(c), c.pop as usize));
                }
                p != best
            });
            group.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
            order.extend(group.iter().map(|&(_, pop)| pop).take(k - order.len()));
        }
        self.failed_open
    }
}

/// Ranks the candidates and says why, with the same code as [`rank`].
pub fn explain(input: &PolicyInput<'_>) -> Explanation {
    let (keys, failed_open) = ranked_keys(input);
    let verdicts = input
        .candidates
        .iter()
        .map(|c| Verdict {
            pop: c.pop,
            excluded: exclusions(c, input, &keys),
            rank: keys.iter().position(|k| k.pop == c.pop),
            score: score(input.client_hash, c).value,
        })
        .collect();
    let reason = match keys.as_slice() {
        [] => None,
        [_] => Some(Reason::OnlyCandidate),
        [winner, runner_up, ..] => Some(winner.reason_over(runner_up)),
    };
    Explanation {
        ranking: Ranking {
            order: keys.iter().map(|k| k.pop).collect(),
            failed_open,
        },
        verdicts,
        reason,
    }
}

fn exclusions(c: &Candidate, input: &PolicyInput<'_>, ranked: &[SortKey]) -> Vec<Exclusion> {
    let mut out = Vec::new();
    if is_eligible(c) && is_overloaded(c, input) && !ranked.iter().any(|k| k.pop == c.pop) {
        out.push(Exclusion::Overloaded);
    }
    if c.admin == AdminState::Drained {
        out.push(Exclusion::Drained);
    }
    if !c.live {
        out.push(Exclusion::Down);
    }
    if !c.healthy {
        out.push(Exclusion::Unhealthy);
    }
    out
}

fn is_eligible(c: &Candidate) -> bool {
    c.admin == AdminState::Active && c.live && c.healthy
}

fn is_overloaded(c: &Candidate, input: &PolicyInput<'_>) -> bool {
    c.load.is_some_and(|l| l > input.high_water)
}

fn ranked_keys(input: &PolicyInput<'_>) -> (Vec<SortKey>, bool) {
    let any_eligible = input.candidates.iter().any(is_eligible);
    let any_unloaded = input
        .candidates
        .iter()
        .any(|c| is_eligible(c) && !is_overloaded(c, input));
    let mut keys: Vec<SortKey> = input
        .candidates
        .iter()
        .filter(|c| !any_eligible || is_eligible(c))
        .filter(|c| !any_unloaded || !is_overloaded(c, input))
        .map(|c| SortKey::new(input, c))
        .collect();
    keys.sort_unstable_by(SortKey::cmp);
    (keys, !any_eligible && !input.candidates.is_empty())
}

/// The ordering key of a candidate; fields compare in declaration order.
#[derive(Clone, Copy, Debug)]
struct SortKey {
    not_static: bool,
    not_canary: bool,
    tier: u8,
    no_route: bool,
    hops: u8,
    load: u8,
    not_own: bool,
    preference: u16,
    score: Score,
    pop: usize,
}

impl SortKey {
    fn new(input: &PolicyInput<'_>, c: &Candidate) -> Self {
        Self {
            score: score(input.client_hash, c),
            ..Self::new_unscored(input, c)
        }
    }

    /// The key without the rendezvous score (which costs a logarithm).
    fn new_unscored(input: &PolicyInput<'_>, c: &Candidate) -> Self {
        Self {
            // The static map overrides only while its POP is eligible, not when failing open.
            not_static: !(input.static_pop == Some(c.pop) && is_eligible(c)),
            not_canary: !(is_eligible(c) && canary_hit(c.canary, input.client_hash, c.name_hash)),
            tier: tier(c.group, c.hops.unwrap_or(NO_ROUTE), input.max_hops),
            no_route: c.hops.is_none(),
            hops: c.hops.unwrap_or(0),
            load: load_step(c.load),
            // The own-POP rule applies only among POPs that have no route.
            not_own: c.hops.is_none() && c.pop != input.own_pop,
            preference: c.preference,
            score: Score::UNSCORED,
            pop: c.pop,
        }
    }

    /// The fields before the score, packed so that integer order is their tuple order.
    fn primary(&self) -> u64 {
        (u64::from(self.not_static) << 44)
            | (u64::from(self.not_canary) << 43)
            | (u64::from(self.tier) << TIER_SHIFT)
            | (u64::from(self.no_route) << 33)
            | (u64::from(self.hops) << 25)
            | (u64::from(self.load) << 17)
            | (u64::from(self.not_own) << 16)
            | u64::from(self.preference)
    }

    fn cmp(&self, other: &Self) -> Ordering {
        (
            self.not_static,
            self.not_canary,
            self.tier,
            self.no_route,
            self.hops,
            self.load,
            self.not_own,
            self.preference,
        )
            .cmp(&(
                other.not_static,
                other.not_canary,
                other.tier,
                other.no_route,
                other.hops,
                other.load,
                other.not_own,
                other.preference,
            ))
            .then_with(|| self.score.cmp(&other.score))
            .then_with(|| self.pop.cmp(&other.pop))
    }

    fn reason_over(&self, other: &Self) -> Reason {
        if self.not_static != other.not_static {
            Reason::StaticMap
        } else if self.not_canary != other.not_canary {
            Reason::Canary
        } else if self.tier != other.tier {
            Reason::FailoverGroup {
                winner: self.tier,
                runner_up: other.tier,
            }
        } else if self.no_route != other.no_route {
            Reason::OnlyRoute
        } else if self.hops != other.hops {
            Reason::FewerHops {
                winner: self.hops,
                runner_up: other.hops,
            }
        } else if self.load != other.load {
            Reason::LessLoaded {
                winner: self.load,
                runner_up: other.load,
            }
        } else if self.not_own != other.not_own {
            Reason::OwnPop
        } else if self.preference != other.preference {
            Reason::Preference {
                winner: self.preference,
                runner_up: other.preference,
            }
        } else {
            Reason::ClientHash
        }
    }
}

/// Load in tenths, 0 to 10; unknown load is 0.
fn load_step(load: Option<f32>) -> u8 {
    load.map_or(0, |l| (l.clamp(0.0, 1.0) * 10.0).floor() as u8)
}

/// Weighted rendezvous score of a candidate for a client.
fn score(client_hash: u64, c: &Candidate) -> Score {
    Score::new(draw(client_hash, c.name_hash), c.weight)
}

/// The rendezvous draw of a POP for a client: 53 stable random bits.
fn draw(client_hash: u64, name_hash: u64) -> u64 {
    mix64(client_hash ^ name_hash) >> 11
}

/// A rendezvous score: `value = -ln(u) / weight` with `u` the draw as a float in (0, 1);
/// lower wins, and between equal values the higher draw. `-ln` is monotone, so among
/// candidates of equal weight this order is the draws' order alone: the answer path
/// ([`Prepared::rank_first`]) compares draws and skips the logarithm.
#[derive(Clone, Copy, Debug)]
struct Score {
    value: f64,
    draw: u64,
}

impl Score {
    /// Placeholder in keys that are compared before scores matter.
    const UNSCORED: Self = Self {
        value: 0.0,
        draw: 0,
    };

    fn new(draw: u64, weight: u32) -> Self {
        // Never 0, so ln is finite.
        let u = (draw as f64 + 0.5) / (1u64 << 53) as f64;
        Self {
            value: -u.ln() / f64::from(weight.max(1)),
            draw,
        }
    }

    fn cmp(&self, other: &Self) -> Ordering {
        self.value
            .total_cmp(&other.value)
            .then(other.draw.cmp(&self.draw))
    }
}

/// A hash that is the same on every node, build and platform (FNV-1a, then a 64-bit
/// finaliser). Used for the POP names and the client blocks that rendezvous hashing mixes.
pub fn stable_hash(bytes: &[u8]) -> u64 {
    let mut h = StableHasher::default();
    h.write(bytes);
    h.finish()
}

/// [`stable_hash`] over bytes that arrive in pieces: the result depends only on the
/// concatenation.
#[derive(Clone, Copy, Debug)]
pub struct StableHasher(u64);

impl Default for StableHasher {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl StableHasher {
    /// Adds bytes.
    pub fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    /// The hash of everything written.
    pub fn finish(self) -> u64 {
        mix64(self.0)
    }
}

/// The MurmurHash3 64-bit finaliser: spreads every input bit over the output.
fn mix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}
