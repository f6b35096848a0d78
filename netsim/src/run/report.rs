//! \[P\] What a run shows: the per-query log, the summary (availability, wrong answers and
//! convergence per event, local-only time per node, mapping quality beside the baselines)
//! and the check of the scenario's expectations. Everything here is computed from what the
//! run recorded (queries, status samples, node starts and stops) and the plan; the runner
//! writes what it returns.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use serde::Serialize;

use super::client::{ATTEMPT_TIMEOUT, Attempt, Reply};
use super::plan::{NetState, Plan};
use crate::folder::Sim;
use crate::scenario::{Action, Failover, LocalOnly, Scenario};
use crate::truth;

/// One query of the workload and what became of it.
#[derive(Clone, Debug)]
pub struct QueryRecord {
    /// Index into the plan's queries.
    pub query: usize,
    /// Planned time.
    pub at: Duration,
    /// Client index.
    pub client: usize,
    /// The geo name asked for (index into [`Plan::services`]).
    pub service: usize,
    /// What the resolver tried, in order.
    pub attempts: Vec<Attempt>,
    /// The POP of the final answer, if there was one.
    pub pop: Option<usize>,
}

impl QueryRecord {
    /// The last attempt (every query makes at least one).
    fn last(&self) -> Option<&Attempt> {
        self.attempts.last()
    }

    /// `NOERROR`, `SERVFAIL`, `timeout`...: the outcome of the last attempt.
    pub fn outcome(&self) -> String {
        self.last()
            .map_or_else(|| "none".into(), |a| a.reply.outcome())
    }

    /// Whether the client got an address of a POP.
    fn answered(&self) -> bool {
        self.pop.is_some()
    }
}

/// One reading of a node's status through its operator API.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// When.
    pub at: Duration,
    /// Which node.
    pub node: usize,
    /// Whether it answered local-only.
    pub local_only: bool,
    /// Nodes it saw alive, itself included.
    pub alive: usize,
    /// Per POP: live, healthy and active as this node sees it.
    pub usable: Vec<bool>,
    /// Per POP, then per service at it: whether this node hands the POP out for the service.
    pub serving: Vec<bool>,
}

/// A node stopped or started by the runner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeEvent {
    /// When.
    pub at: Duration,
    /// Which node.
    pub node: usize,
    /// Started (true) or stopped.
    pub up: bool,
}

/// The summary of a run (`summary.json`).
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    /// Scenario name.
    pub scenario: String,
    /// The run's seed.
    pub seed: u64,
    /// `inproc` or `netns`.
    pub backend: String,
    /// Factor applied to the timeline.
    pub time_scale: f64,
    /// Length of the workload, seconds.
    pub duration_s: f64,
    /// Nodes.
    pub nodes: usize,
    /// Queries sent.
    pub queries: usize,
    /// Share of queries that got a POP's address (after failover).
    pub availability: f64,
    /// Final outcomes by kind (`NOERROR`, `SERVFAIL`, `timeout`, ...).
    pub outcomes: BTreeMap<String, usize>,
    /// Queries answered only after failing over to the resolver's second node.
    pub failovers: usize,
    /// Per event of the timeline.
    pub events: Vec<EventSummary>,
    /// Seconds after the last event until the last answer that differs from the no-fault
    /// answer (0: none differed).
    pub settled_after_s: Option<f64>,
    /// Seconds each node spent answering local-only, by POP.
    pub local_only_s: BTreeMap<String, f64>,
    /// Per geo name: its queries and how many answers differ from the no-fault answers.
    pub services: Vec<ServiceSummary>,
    /// Per `failover` expectation: how the service left the failed POP and came back.
    pub failovers_by_service: Vec<FailoverSummary>,
    /// Mapping quality: Sparrow's answers and the baselines on the same queries.
    pub mapping: Mapping,
    /// What the backend could not do (e.g. a kernel without netem cannot add delay).
    pub notes: Vec<String>,
}

/// What happened around one event.
#[derive(Clone, Debug, Serialize)]
pub struct EventSummary {
    /// Seconds from the start.
    pub at_s: f64,
    /// Kind and label.
    pub event: String,
    /// Queries sent from this event until the next one.
    pub queries: usize,
    /// Share of them answered.
    pub availability: f64,
    /// Answers naming a POP that was down, drained or unheard of by the answering node,
    /// within the detection bound after the event.
    pub wrong_during: usize,
    /// The same, later than the detection bound after the event.
    pub wrong_after: usize,
    /// Answers that differ from the no-fault answer, in the whole window.
    pub differ_from_no_fault: usize,
    /// The longest a node went on handing out a POP after it became unusable for that node
    /// (the measured detection time, to hold against the detection bound); `None`: no such
    /// answer.
    pub last_wrong_s: Option<f64>,
    /// Seconds until every node's status (mode, which POPs it can hand out) stopped
    /// changing; `None` if it was still changing at the next event.
    pub converged_after_s: Option<f64>,
}

/// One geo name over the whole run.
#[derive(Clone, Debug, Serialize)]
pub struct ServiceSummary {
    /// The name relative to the zone.
    pub name: String,
    /// Queries for it.
    pub queries: usize,
    /// Share of them answered with a POP.
    pub availability: f64,
    /// Answers that differ from the no-fault answer of the same client and node.
    pub differ_from_no_fault: usize,
    /// Answers the oracle does not allow for the health in force when they were asked
    /// ([`truth::expected`], [`truth::owed`]); changes take a moment to travel, so this
    /// counts the moments after a fault too.
    pub off_oracle: usize,
}

/// How a service left a POP where it failed, and came back.
#[derive(Clone, Debug, Serialize)]
pub struct FailoverSummary {
    /// The service.
    pub service: String,
    /// The POPs where it failed.
    pub pops: Vec<String>,
    /// Seconds from the start: the failure and the recovery.
    pub down_at_s: f64,
    /// When the service came back, if it did.
    pub up_at_s: Option<f64>,
    /// Answers while it was down that sent a client elsewhere than its no-fault POP.
    pub moved: usize,
    /// The latest answer naming a failed POP, in seconds after the failure (`None`: none).
    pub last_failed_answer_s: Option<f64>,
    /// The latest answer that was not the no-fault answer, in seconds after the recovery
    /// (`None`: none).
    pub back_after_s: Option<f64>,
}

/// Mapping quality on the run's answered queries.
#[derive(Clone, Debug, Serialize)]
pub struct Mapping {
    /// Queries scored (those answered with a POP).
    pub answers: usize,
    /// Sparrow's answers.
    pub sparrow: Quality,
    /// Sparrow's answers to queries through resolvers that send ECS.
    pub sparrow_ecs: Quality,
    /// Sparrow's answers to queries through resolvers that do not.
    pub sparrow_no_ecs: Quality,
    /// Round robin over the POPs, query by query.
    pub round_robin: Quality,
    /// The POP nearest by position (the client's with ECS, else the resolver's).
    pub geoip: Quality,
}

/// Shares of answers that are the ground truth's POP.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Quality {
    /// Answers scored.
    pub answers: usize,
    /// Share at the fewest AS hops.
    pub by_hops: f64,
    /// Share at the lowest latency.
    pub by_latency: f64,
}

/// `summary.json`: the summary and the unmet expectations.
#[derive(Serialize)]
pub struct SummaryFile<'a> {
    /// The summary.
    pub summary: &'a Summary,
    /// Unmet expectations (empty: passed).
    pub failures: &'a [String],
}

/// The no-fault answers: (client, node, service) -> POP.
pub type Baseline = HashMap<(usize, usize, usize), Option<usize>>;

/// The no-fault answer to `r` from the node of attempt `a`.
fn no_fault(baseline: &Baseline, r: &QueryRecord, a: &Attempt) -> Option<usize> {
    baseline
        .get(&(r.client, a.node, r.service))
        .copied()
        .flatten()
}

/// The POPs the oracle allows node `a.node` to answer `r` with in `state`.
fn oracle(plan: &Plan, state: &NetState, r: &QueryRecord, a: &Attempt) -> Vec<usize> {
    let client = &plan.clients[r.client];
    let hops: Vec<Option<usize>> = if plan.resolvers[client.resolver].ecs {
        client.hops.iter().copied().map(Some).collect()
    } else {
        // The node decides by the resolver's address, which no view routes.
        vec![None; state.n]
    };
    truth::expected(&hops, &state.usable_for_service(a.node, r.service), a.node)
}

/// Whether `r`'s answer is the one the oracle owes it in `state`.
fn owed_in(plan: &Plan, state: &NetState, baseline: &Baseline, r: &QueryRecord) -> bool {
    match (r.last(), r.pop) {
        (Some(a), Some(pop)) => {
            truth::owed(pop, no_fault(baseline, r, a), &oracle(plan, state, r, a))
        }
        _ => true,
    }
}

/// The detection bound used for "during" when the scenario gives none.
const DEFAULT_BOUND: Duration = Duration::from_secs(10);
/// A status that changed within this of the window's end has not shown it is stable.
const STABLE: Duration = Duration::from_secs(1);

/// The summary of a run.
#[allow(clippy::too_many_arguments)]
pub fn summarize(
    scenario: &Scenario,
    sim: &Sim,
    plan: &Plan,
    seed: u64,
    backend: &str,
    records: &[QueryRecord],
    samples: &[Sample],
    baseline: &Baseline,
) -> Summary {
    let n = sim.pops.len();
    let mut outcomes = BTreeMap::new();
    for r in records {
        *outcomes.entry(r.outcome()).or_insert(0) += 1;
    }
    let answered = records.iter().filter(|r| r.answered()).count();
    let bound = scenario.expect.detection_bound.unwrap_or(DEFAULT_BOUND);
    let events = plan
        .steps
        .iter()
        .enumerate()
        .map(|(k, step)| {
            let end = plan.steps.get(k + 1).map_or(plan.duration, |s| s.at);
            let window: Vec<&QueryRecord> = records
                .iter()
                .filter(|r| r.at >= step.at && r.at < end)
                .collect();
            let mut wrong_during = 0;
            let mut wrong_after = 0;
            let mut differ = 0;
            let mut last_wrong: Option<Duration> = None;
            for r in &window {
                let (Some(a), Some(pop)) = (r.last(), r.pop) else {
                    continue;
                };
                if is_wrong(plan, r) {
                    if let Some(since) = plan.unusable_since(a.node, pop, r.service, a.sent) {
                        let late = a.sent.saturating_sub(since);
                        last_wrong = Some(last_wrong.map_or(late, |l| l.max(late)));
                    }
                    if a.sent < step.at + bound {
                        wrong_during += 1;
                    } else {
                        wrong_after += 1;
                    }
                }
                if no_fault(baseline, r, a) != Some(pop) {
                    differ += 1;
                }
            }
            EventSummary {
                at_s: secs(step.at),
                event: step.name(),
                queries: window.len(),
                availability: share(window.iter().filter(|r| r.answered()).count(), window.len()),
                wrong_during,
                wrong_after,
                differ_from_no_fault: differ,
                last_wrong_s: last_wrong.map(secs),
                converged_after_s: converged(samples, n, step.at, end).map(secs),
            }
        })
        .collect();
    let settled_after_s = plan.steps.last().map(|last| {
        records
            .iter()
            .filter(|r| r.at >= last.at)
            .filter_map(|r| {
                let a = r.last()?;
                let pop = r.pop?;
                (no_fault(baseline, r, a) != Some(pop))
                    .then(|| secs(a.sent.saturating_sub(last.at)))
            })
            .fold(0.0, f64::max)
    });
    Summary {
        scenario: scenario.name.clone(),
        seed,
        backend: backend.to_owned(),
        time_scale: plan.time_scale,
        duration_s: secs(plan.duration),
        nodes: n,
        queries: records.len(),
        availability: share(answered, records.len()),
        outcomes,
        failovers: records
            .iter()
            .filter(|r| r.attempts.len() > 1 && r.answered())
            .count(),
        events,
        settled_after_s,
        local_only_s: local_only_time(sim, samples),
        services: services(plan, records, baseline),
        failovers_by_service: scenario
            .expect
            .failover
            .iter()
            .filter_map(|f| failover_summary(sim, plan, f, records, baseline))
            .collect(),
        mapping: mapping(sim, plan, records),
        notes: Vec::new(),
    }
}

/// Whether `r`'s answer named a POP that was unusable for its name at the answering node
/// when it was asked, while some POP was usable (with none, failing open is the documented
/// answer).
pub fn is_wrong(plan: &Plan, r: &QueryRecord) -> bool {
    let (Some(a), Some(pop)) = (r.last(), r.pop) else {
        return false;
    };
    plan.state_at(a.sent)
        .unusable_for_service(a.node, pop, r.service)
        && !fail_open(plan, r, a)
}

/// Whether the answering node had no usable POP at all for the name (the policy then fails
/// open and any answer is the documented one).
fn fail_open(plan: &Plan, r: &QueryRecord, a: &Attempt) -> bool {
    let s = plan.state_at(a.sent);
    (0..s.n).all(|p| s.unusable_for_service(a.node, p, r.service))
}

/// Per geo name: queries, answers, answers off the no-fault answers and off the oracle.
fn services(plan: &Plan, records: &[QueryRecord], baseline: &Baseline) -> Vec<ServiceSummary> {
    plan.services
        .iter()
        .enumerate()
        .map(|(s, name)| {
            let mine: Vec<&QueryRecord> = records.iter().filter(|r| r.service == s).collect();
            let answered: Vec<(&QueryRecord, &Attempt, usize)> = mine
                .iter()
                .filter_map(|r| Some((*r, r.last()?, r.pop?)))
                .collect();
            ServiceSummary {
                name: name.clone(),
                queries: mine.len(),
                availability: share(answered.len(), mine.len()),
                differ_from_no_fault: answered
                    .iter()
                    .filter(|(r, a, pop)| no_fault(baseline, r, a) != Some(*pop))
                    .count(),
                off_oracle: answered
                    .iter()
                    .filter(|(r, a, _)| !owed_in(plan, plan.state_at(a.sent), baseline, r))
                    .count(),
            }
        })
        .collect()
}

/// The plan's step of scenario event `event`, and the state before it.
fn step_and_before(plan: &Plan, event: usize) -> Option<(Duration, &NetState)> {
    let k = plan.steps.iter().position(|s| s.event == event)?;
    let before = if k == 0 {
        &plan.initial
    } else {
        &plan.states[k - 1]
    };
    Some((plan.steps[k].at, before))
}

/// What became of a `failover` expectation's service: answers moved while it was down, the
/// last answer naming a failed POP, the last answer off the no-fault one after it was up.
fn failover_summary(
    sim: &Sim,
    plan: &Plan,
    f: &Failover,
    records: &[QueryRecord],
    baseline: &Baseline,
) -> Option<FailoverSummary> {
    let (down_at, _) = step_and_before(plan, f.after)?;
    let up_at = f
        .until
        .and_then(|u| step_and_before(plan, u))
        .map(|(t, _)| t);
    let k = plan.steps.iter().position(|s| s.event == f.after)?;
    let failed: Vec<usize> = match &plan.steps[k].action {
        Action::ServiceDown { pops, .. } => pops.clone(),
        _ => Vec::new(),
    };
    let mut moved = 0;
    let mut last_failed = None::<Duration>;
    let mut back = None::<Duration>;
    for r in records.iter().filter(|r| r.service == f.service) {
        let (Some(a), Some(pop)) = (r.last(), r.pop) else {
            continue;
        };
        let down = a.sent >= down_at && up_at.is_none_or(|u| a.sent < u);
        if down && no_fault(baseline, r, a) != Some(pop) {
            moved += 1;
        }
        if down && failed.contains(&pop) {
            let late = a.sent - down_at;
            last_failed = Some(last_failed.map_or(late, |l| l.max(late)));
        }
        if let Some(u) = up_at
            && a.sent >= u
            && no_fault(baseline, r, a) != Some(pop)
        {
            let late = a.sent - u;
            back = Some(back.map_or(late, |l| l.max(late)));
        }
    }
    Some(FailoverSummary {
        service: plan.services[f.service].clone(),
        pops: failed.iter().map(|&p| sim.pops[p].name.clone()).collect(),
        down_at_s: secs(down_at),
        up_at_s: up_at.map(secs),
        moved,
        last_failed_answer_s: last_failed.map(secs),
        back_after_s: back.map(secs),
    })
}

/// When every node's status stopped changing after `from` (before `end`), as a delay
/// after `from`; zero if no node's status changed.
fn converged(samples: &[Sample], n: usize, from: Duration, end: Duration) -> Option<Duration> {
    let mut latest = Duration::ZERO;
    for node in 0..n {
        let before = samples.iter().rfind(|s| s.node == node && s.at < from);
        let window: Vec<&Sample> = samples
            .iter()
            .filter(|s| s.node == node && s.at >= from && s.at < end)
            .collect();
        let Some(last) = window.last() else { continue };
        let key = |s: &Sample| (s.local_only, s.usable.clone(), s.serving.clone());
        // The first sample of the final unbroken run of the last state.
        let start = window
            .iter()
            .rposition(|s| key(s) != key(last))
            .map_or(0, |k| k + 1);
        let changed = start > 0 || before.is_some_and(|b| key(b) != key(last));
        if !changed {
            continue;
        }
        if end.saturating_sub(window[start].at) < STABLE {
            // Still changing when the window closed.
            return None;
        }
        latest = latest.max(window[start].at.saturating_sub(from));
    }
    Some(latest)
}

fn local_only_time(sim: &Sim, samples: &[Sample]) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for (i, p) in sim.pops.iter().enumerate() {
        let mine: Vec<&Sample> = samples.iter().filter(|s| s.node == i).collect();
        let total: f64 = mine
            .windows(2)
            .filter(|w| w[0].local_only)
            // A gap (the node was down) counts at most one second.
            .map(|w| secs(w[1].at - w[0].at).min(1.0))
            .sum();
        out.insert(p.name.clone(), (total * 10.0).round() / 10.0);
    }
    out
}

fn mapping(sim: &Sim, plan: &Plan, records: &[QueryRecord]) -> Mapping {
    let n = sim.pops.len();
    let mut q = [Tally::default(); 5];
    let mut answers = 0;
    for r in records {
        let Some(pop) = r.pop else { continue };
        answers += 1;
        let client = &plan.clients[r.client];
        let resolver = &plan.resolvers[client.resolver];
        let e = &sim.truth.entries[client.entry];
        let geo = if resolver.ecs {
            e.by_geo
        } else {
            resolver.geo_pop
        };
        let right = |p: usize| (e.by_hops.contains(&p), e.by_latency.contains(&p));
        q[0].add(right(pop));
        q[if resolver.ecs { 1 } else { 2 }].add(right(pop));
        q[3].add(right(r.query % n));
        q[4].add(right(geo));
    }
    Mapping {
        answers,
        sparrow: q[0].quality(),
        sparrow_ecs: q[1].quality(),
        sparrow_no_ecs: q[2].quality(),
        round_robin: q[3].quality(),
        geoip: q[4].quality(),
    }
}

#[derive(Clone, Copy, Default)]
struct Tally {
    answers: usize,
    hops: usize,
    latency: usize,
}

impl Tally {
    fn add(&mut self, (hops, latency): (bool, bool)) {
        self.answers += 1;
        self.hops += usize::from(hops);
        self.latency += usize::from(latency);
    }

    fn quality(self) -> Quality {
        Quality {
            answers: self.answers,
            by_hops: share(self.hops, self.answers),
            by_latency: share(self.latency, self.answers),
        }
    }
}

fn share(part: usize, whole: usize) -> f64 {
    if whole == 0 {
        return 0.0;
    }
    (part as f64 / whole as f64 * 10_000.0).round() / 10_000.0
}

fn secs(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}

/// Whether node `i` was up during all of `[from, to]`, by the runner's stops and starts.
fn up_throughout(events: &[NodeEvent], i: usize, from: Duration, to: Duration) -> bool {
    let mut up = true;
    for e in events.iter().filter(|e| e.node == i) {
        if e.at <= from {
            up = e.up;
        } else if e.at <= to && !e.up {
            return false;
        }
    }
    up
}

/// The scenario's expectations against the run; one sentence per unmet one.
#[allow(clippy::too_many_arguments)]
pub fn check(
    scenario: &Scenario,
    sim: &Sim,
    plan: &Plan,
    records: &[QueryRecord],
    samples: &[Sample],
    node_events: &[NodeEvent],
    baseline: &Baseline,
) -> Vec<String> {
    let name = |i: usize| sim.pops[i].name.as_str();
    let client = |r: &QueryRecord| plan.clients[r.client].subnet;
    let mut out = Vec::new();
    let x = &scenario.expect;
    let attempts = || {
        records
            .iter()
            .flat_map(|r| r.attempts.iter().map(move |a| (r, a)))
    };
    if x.no_servfail {
        let bad: Vec<_> = attempts()
            .filter(|(_, a)| matches!(a.reply, Reply::Answer { rcode, .. } if rcode == ResponseCode::ServFail))
            .collect();
        if let Some((r, a)) = bad.first() {
            out.push(format!(
                "no_servfail: {} SERVFAIL answers; the first at {:.1} s from {} for {}",
                bad.len(),
                secs(a.sent),
                name(a.node),
                client(r)
            ));
        }
    }
    if x.no_timeout {
        let bad: Vec<_> = attempts()
            .filter(|(_, a)| matches!(a.reply, Reply::Timeout | Reply::Unreachable))
            .filter(|(_, a)| up_throughout(node_events, a.node, a.sent, a.sent + ATTEMPT_TIMEOUT))
            .collect();
        if let Some((r, a)) = bad.first() {
            out.push(format!(
                "no_timeout: {} queries to nodes that were up went unanswered (timeout or port unreachable); the first at {:.1} s to {} for {}",
                bad.len(),
                secs(a.sent),
                name(a.node),
                client(r)
            ));
        }
    }
    let errors = attempts()
        .filter(|(_, a)| matches!(a.reply, Reply::Error(_)))
        .count();
    if let Some((_, a)) = attempts().find(|(_, a)| matches!(a.reply, Reply::Error(_))) {
        out.push(format!(
            "the client failed {errors} times to send or read a query (first: {:?} at {:.1} s)",
            a.reply,
            secs(a.sent)
        ));
    }
    if let Some(bound) = x.detection_bound {
        let mut bad = Vec::new();
        for r in records {
            let (Some(a), Some(pop)) = (r.last(), r.pop) else {
                continue;
            };
            if fail_open(plan, r, a) {
                continue;
            }
            if let Some(since) = plan.unusable_since(a.node, pop, r.service, a.sent)
                && a.sent > since + bound
            {
                bad.push((r, a, pop, since));
            }
        }
        if let Some((r, a, pop, since)) = bad.first() {
            out.push(format!(
                "detection_bound: {} answers named a POP unusable for longer than {:?}; the first: {} handed out {} to {} at {:.1} s, unusable since {:.1} s",
                bad.len(),
                bound,
                name(a.node),
                name(*pop),
                client(r),
                secs(a.sent),
                secs(*since)
            ));
        }
    }
    if let (Some(settle), Some(last)) = (x.settle, plan.steps.last()) {
        let from = last.at + settle;
        let checked: Vec<&QueryRecord> = records.iter().filter(|r| r.at >= from).collect();
        let bad: Vec<_> = checked
            .iter()
            .filter_map(|r| {
                let a = r.last()?;
                let want = no_fault(baseline, r, a);
                (r.pop != want).then_some((r, a, want))
            })
            .collect();
        if checked.is_empty() {
            out.push(format!(
                "settle: no query after {:.1} s to check (the run is too short)",
                secs(from)
            ));
        } else if let Some((r, a, want)) = bad.first() {
            out.push(format!(
                "settle: {} of {} answers after {:.1} s differ from the no-fault answers; the first: {} answered {} for {}, not {}",
                bad.len(),
                checked.len(),
                secs(from),
                name(a.node),
                r.pop.map_or("nothing", name),
                client(r),
                want.map_or("nothing", name)
            ));
        }
    }
    let step_of = |event: usize| plan.steps.iter().find(|s| s.event == event).map(|s| s.at);
    for lo in &x.local_only {
        match lo {
            LocalOnly::Never { pops } => {
                for &p in pops {
                    if let Some(s) = samples.iter().find(|s| s.node == p && s.local_only) {
                        out.push(format!(
                            "local_only: {} must never answer local-only, but did at {:.1} s (saw {} nodes alive)",
                            name(p),
                            secs(s.at),
                            s.alive
                        ));
                    }
                }
            }
            LocalOnly::During {
                pops,
                after,
                until,
                within,
            } => {
                let Some(t_after) = step_of(*after) else {
                    continue;
                };
                let t_until = until.and_then(step_of);
                for &p in pops {
                    let mine = || samples.iter().filter(|s| s.node == p);
                    let entered = mine().find(|s| s.at >= t_after && s.local_only);
                    match entered {
                        Some(s) if s.at <= t_after + *within => {}
                        Some(s) => out.push(format!(
                            "local_only: {} entered local-only {:.1} s after the event at {:.1} s, later than {:?}",
                            name(p),
                            secs(s.at - t_after),
                            secs(t_after),
                            within
                        )),
                        None => out.push(format!(
                            "local_only: {} never answered local-only after the event at {:.1} s",
                            name(p),
                            secs(t_after)
                        )),
                    }
                    let hold_end = t_until.unwrap_or(plan.duration);
                    if let Some(s) = mine()
                        .find(|s| s.at >= t_after + *within && s.at < hold_end && !s.local_only)
                    {
                        out.push(format!(
                            "local_only: {} left local-only at {:.1} s, before the event at {:.1} s",
                            name(p),
                            secs(s.at),
                            secs(hold_end)
                        ));
                    }
                    if let Some(t_u) = t_until {
                        let next = plan
                            .steps
                            .iter()
                            .find(|s| s.at > t_u)
                            .map_or(plan.duration, |s| s.at);
                        if let Some(s) =
                            mine().find(|s| s.at >= t_u + *within && s.at < next && s.local_only)
                        {
                            out.push(format!(
                                "local_only: {} still answered local-only at {:.1} s, more than {:?} after the event at {:.1} s",
                                name(p),
                                secs(s.at),
                                within,
                                secs(t_u)
                            ));
                        }
                    }
                }
            }
        }
    }
    for &s in &x.unchanged {
        let checked: Vec<(&QueryRecord, &Attempt, usize)> = records
            .iter()
            .filter(|r| r.service == s)
            .filter_map(|r| Some((r, r.last()?, r.pop?)))
            .collect();
        let bad: Vec<_> = checked
            .iter()
            .filter(|(r, a, pop)| no_fault(baseline, r, a) != Some(*pop))
            .collect();
        let service = &plan.services[s];
        if checked.is_empty() {
            out.push(format!("unchanged: no answer for {service} to check"));
        } else if let Some((r, a, pop)) = bad.first() {
            out.push(format!(
                "unchanged: {} of {} answers for {service} differ from the no-fault answers; the first at {:.1} s: {} answered {} for {}, not {}",
                bad.len(),
                checked.len(),
                secs(a.sent),
                name(a.node),
                name(*pop),
                client(r),
                no_fault(baseline, r, a).map_or("nothing", name)
            ));
        }
    }
    for f in &x.failover {
        out.extend(check_failover(sim, plan, f, records, baseline));
    }
    for rj in &x.rejoin {
        let Some(t_restart) = step_of(rj.after) else {
            continue;
        };
        let deadline = t_restart + rj.within;
        for &p in &rj.pops {
            // The restarted node: in cluster answers, seeing every POP usable.
            let back = samples.iter().find(|s| {
                s.node == p && s.at >= t_restart && !s.local_only && s.usable.iter().all(|&u| u)
            });
            match back {
                Some(s) if s.at <= deadline => {}
                Some(s) => out.push(format!(
                    "rejoin: {} answered from the whole cluster {:.1} s after its restart at {:.1} s, later than {:?}",
                    name(p),
                    secs(s.at - t_restart),
                    secs(t_restart),
                    rj.within
                )),
                None => out.push(format!(
                    "rejoin: {} never answered from the whole cluster after its restart at {:.1} s",
                    name(p),
                    secs(t_restart)
                )),
            }
            // Every other node that is up meanwhile: sees the restarted POP usable again.
            let others: std::collections::BTreeSet<usize> = samples
                .iter()
                .filter(|s| s.node != p && s.at >= t_restart && s.at <= deadline)
                .map(|s| s.node)
                .collect();
            for o in others {
                let seen = samples
                    .iter()
                    .find(|s| s.node == o && s.at >= t_restart && s.usable.get(p) == Some(&true));
                if seen.is_none_or(|s| s.at > deadline) {
                    out.push(format!(
                        "rejoin: {} did not see {} usable within {:?} of its restart at {:.1} s",
                        name(o),
                        name(p),
                        rj.within,
                        secs(t_restart)
                    ));
                }
            }
        }
    }
    out
}

/// A `failover` expectation against the run: the oracle's answers from `within` after the
/// failure until the recovery, the no-fault answers from `within` after the recovery, and
/// within `within` of either the answer before or the answer after.
fn check_failover(
    sim: &Sim,
    plan: &Plan,
    f: &Failover,
    records: &[QueryRecord],
    baseline: &Baseline,
) -> Vec<String> {
    let name = |i: usize| sim.pops[i].name.as_str();
    let service = &plan.services[f.service];
    let Some((down_at, before_down)) = step_and_before(plan, f.after) else {
        return Vec::new();
    };
    let up = f.until.and_then(|u| step_and_before(plan, u));
    // The recovery's window ends at the next step after it, or at the end of the run.
    let end = up.map_or(plan.duration, |(u, _)| {
        plan.steps
            .iter()
            .find(|s| s.at > u)
            .map_or(plan.duration, |s| s.at)
    });
    let mut bad_down = Vec::new();
    let mut bad_up = Vec::new();
    let mut moved = 0;
    for r in records.iter().filter(|r| r.service == f.service) {
        let (Some(a), Some(pop)) = (r.last(), r.pop) else {
            continue;
        };
        let t = a.sent;
        if t < down_at || t >= end {
            continue;
        }
        let now = plan.state_at(t);
        let owed_now = owed_in(plan, now, baseline, r);
        match up {
            Some((u, before_up)) if t >= u => {
                let ok = if t < u + f.within {
                    owed_now || owed_in(plan, before_up, baseline, r)
                } else {
                    no_fault(baseline, r, a) == Some(pop)
                };
                if !ok {
                    bad_up.push((r, a, pop));
                }
            }
            _ => {
                let ok = if t < down_at + f.within {
                    owed_now || owed_in(plan, before_down, baseline, r)
                } else {
                    owed_now
                };
                if !ok {
                    bad_down.push((r, a, pop));
                }
                if t >= down_at + f.within && no_fault(baseline, r, a) != Some(pop) {
                    moved += 1;
                }
            }
        }
    }
    let mut out = Vec::new();
    if let Some((r, a, pop)) = bad_down.first() {
        out.push(format!(
            "failover: {} answers for {service} after it went down at {:.1} s were not the oracle's (the nearest POPs where it is up, a client keeping its POP while it can); the first at {:.1} s: {} answered {} for {}, no-fault answer {}",
            bad_down.len(),
            secs(down_at),
            secs(a.sent),
            name(a.node),
            name(*pop),
            plan.clients[r.client].subnet,
            no_fault(baseline, r, a).map_or("nothing", name)
        ));
    }
    if moved == 0 {
        out.push(format!(
            "failover: no answer for {service} moved while it was down: no client had a failed POP as its answer, so the run shows nothing"
        ));
    }
    if let (Some((r, a, pop)), Some((u, _))) = (bad_up.first(), up) {
        out.push(format!(
            "failover: {} answers for {service} after it came back at {:.1} s were not the no-fault answers (allowed delay {:?}); the first at {:.1} s: {} answered {} for {}, not {}",
            bad_up.len(),
            secs(u),
            f.within,
            secs(a.sent),
            name(a.node),
            name(*pop),
            plan.clients[r.client].subnet,
            no_fault(baseline, r, a).map_or("nothing", name)
        ));
    }
    out
}

/// The summary for people: availability, each event, local-only time, mapping quality.
pub fn render(s: &Summary) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} ({} backend, {} nodes, seed {}, time scale {}): {} queries over {:.0} s, availability {:.2}%, {} failovers",
        s.scenario,
        s.backend,
        s.nodes,
        s.seed,
        s.time_scale,
        s.queries,
        s.duration_s,
        s.availability * 100.0,
        s.failovers
    );
    let outcomes: Vec<String> = s.outcomes.iter().map(|(k, v)| format!("{k} {v}")).collect();
    let _ = writeln!(out, "outcomes: {}", outcomes.join(", "));
    let _ = writeln!(
        out,
        "{:>7}  {:<24} {:>7} {:>8} {:>7} {:>7} {:>10} {:>7} {:>10}",
        "at",
        "event",
        "queries",
        "answered",
        "wrong<b",
        "wrong>b",
        "last wrong",
        "differ",
        "converged"
    );
    for e in &s.events {
        let _ = writeln!(
            out,
            "{:>6.1}s  {:<24} {:>7} {:>7.2}% {:>7} {:>7} {:>10} {:>7} {:>10}",
            e.at_s,
            e.event,
            e.queries,
            e.availability * 100.0,
            e.wrong_during,
            e.wrong_after,
            e.last_wrong_s
                .map_or_else(|| "-".to_owned(), |c| format!("{c:.1} s")),
            e.differ_from_no_fault,
            e.converged_after_s
                .map_or_else(|| "no".to_owned(), |c| format!("{c:.1} s"))
        );
    }
    if let Some(t) = s.settled_after_s {
        let _ = writeln!(
            out,
            "answers equal the no-fault answers from {t:.1} s after the last event"
        );
    }
    if s.services.len() > 1 {
        let _ = writeln!(
            out,
            "{:<16} {:>7} {:>8} {:>15} {:>10}",
            "name", "queries", "answered", "differ/no-fault", "off-oracle"
        );
        for n in &s.services {
            let _ = writeln!(
                out,
                "{:<16} {:>7} {:>7.2}% {:>15} {:>10}",
                n.name,
                n.queries,
                n.availability * 100.0,
                n.differ_from_no_fault,
                n.off_oracle
            );
        }
    }
    for f in &s.failovers_by_service {
        let _ = writeln!(
            out,
            "{} down at {} from {:.1} s: {} answers moved; a failed POP last handed out {}; no-fault answers again {}",
            f.service,
            f.pops.join(","),
            f.down_at_s,
            f.moved,
            f.last_failed_answer_s
                .map_or_else(|| "never".to_owned(), |t| format!("{t:.1} s after")),
            match (f.up_at_s, f.back_after_s) {
                (None, _) => "(it stayed down)".to_owned(),
                (Some(u), None) => format!("at once after {u:.1} s"),
                (Some(u), Some(b)) => format!("{b:.1} s after {u:.1} s"),
            }
        );
    }
    let lo: Vec<String> = s
        .local_only_s
        .iter()
        .filter(|&(_, &t)| t > 0.0)
        .map(|(p, t)| format!("{p} {t:.1} s"))
        .collect();
    let _ = writeln!(
        out,
        "local-only: {}",
        if lo.is_empty() {
            "none".to_owned()
        } else {
            lo.join(", ")
        }
    );
    for note in &s.notes {
        let _ = writeln!(out, "note: {note}");
    }
    let m = &s.mapping;
    let q = |name: &str, q: &Quality| {
        format!(
            "{name:<16} {:>6} {:>8.1}% {:>10.1}%\n",
            q.answers,
            q.by_hops * 100.0,
            q.by_latency * 100.0
        )
    };
    let _ = write!(
        out,
        "mapping          answers  by hops  by latency\n{}{}{}{}{}",
        q("sparrow", &m.sparrow),
        q("  with ECS", &m.sparrow_ecs),
        q("  without ECS", &m.sparrow_no_ecs),
        q("round robin", &m.round_robin),
        q("geoip", &m.geoip)
    );
    out
}

/// The per-query log as text.
pub fn queries_text(sim: &Sim, plan: &Plan, records: &[QueryRecord]) -> String {
    let names = |v: &[usize]| {
        v.iter()
            .map(|&p| sim.pops[p].name.as_str())
            .collect::<Vec<_>>()
            .join(",")
    };
    let mut out = String::from(
        "# time_ms\tclient\tresolver\tecs\tnode\tanswer\tpop\ttruth_hops\ttruth_latency\toutcome\tattempts\tname\n",
    );
    for r in records {
        let c = &plan.clients[r.client];
        let e = &sim.truth.entries[c.entry];
        let resolver = &plan.resolvers[c.resolver];
        let last = r.last();
        let answer = last.map_or_else(String::new, |a| match &a.reply {
            Reply::Answer { cname: Some(c), .. } => c.clone(),
            Reply::Answer { addresses, .. } => addresses
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(","),
            _ => "-".into(),
        });
        let trail: Vec<String> = r
            .attempts
            .iter()
            .map(|a| {
                format!(
                    "{}@{}:{}",
                    sim.pops[a.node].name,
                    a.sent.as_millis(),
                    a.reply.outcome()
                )
            })
            .collect();
        let _ = writeln!(
            out,
            "{}\t{}\tr{:02}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
            last.map_or(r.at, |a| a.sent).as_millis(),
            c.subnet,
            c.resolver,
            if resolver.ecs { "ecs" } else { "-" },
            last.map_or("-", |a| sim.pops[a.node].name.as_str()),
            if answer.is_empty() { "-" } else { &answer },
            r.pop.map_or("-", |p| sim.pops[p].name.as_str()),
            names(&e.by_hops),
            names(&e.by_latency),
            r.outcome(),
            trail.join(" "),
            plan.services.get(r.service).map_or("-", String::as_str)
        );
    }
    out
}

#[cfg(test)]
mod tests;
