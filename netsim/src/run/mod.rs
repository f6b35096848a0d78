//! Running a scenario: real Sparrow nodes under the scenario's faults, real DNS queries from
//! its clients through their resolvers, and a report of what happened against what the
//! scenario expects.
//!
//! - [`plan`] \[P\]: the timeline, the network state after each step, resolvers, clients and
//!   the queries, all from the seed;
//! - [`inproc`] \[E\]: nodes in this process, faults at their QUIC transport;
//! - [`netns`] \[E\]: `sparrow` processes in Linux network namespaces, faults from `tc netem`
//!   and nftables;
//! - [`client`] \[E\]: the DNS client and the resolvers' failover; [`api`] \[E\]: the runner
//!   as an operator (status, drain) over the nodes' API sockets;
//! - [`report`] \[P\]: the per-query log, the summary and the expectations;
//!   [`svg`] \[P\]: the timeline picture; [`targets`] \[P\]: each geo name's answer at each
//!   POP.
//!
//! A run: generate the world, write the cluster folder (configs, views, PKI), start the
//! nodes, wait for the cluster to form, ask every client's resolver's nodes once for every
//! geo name (the no-fault answers), then play the workload and the timeline together while a monitor
//! polls every node's status, and finally write the outputs and check the expectations.

pub mod api;
pub mod client;
pub mod inproc;
pub mod netns;
pub mod plan;
pub mod report;
pub mod svg;
pub mod targets;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use hickory_proto::rr::RecordType;
use sparrow_proto::api::{Request, Response};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use toml::{Table, Value};

use self::client::{ATTEMPT_TIMEOUT, Attempt, Reply};
use self::plan::{NetState, Plan};
use self::report::{NodeEvent, QueryRecord, Sample};
use self::targets::AnswerMap;
use crate::folder::{self, ClusterLayout, Layout, Sim};
use crate::pops::PopRequest;
use crate::scenario::{Action, Scenario};
use crate::topology::TopologySpec;

/// Which backend runs the nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendKind {
    /// Nodes in this process, faults at the transport.
    InProc,
    /// `sparrow` processes in network namespaces, faults in the kernel.
    Netns,
}

/// How to run a scenario.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// The run's seed.
    pub seed: u64,
    /// The backend.
    pub backend: BackendKind,
    /// Where the outputs go (created if missing).
    pub out: PathBuf,
    /// Every time of the timeline is multiplied by this (1.0: as written).
    pub time_scale: f64,
    /// The `sparrow` binary (netns backend); default: next to this executable.
    pub sparrow: Option<PathBuf>,
}

/// What a run produced.
#[derive(Debug)]
pub struct Outcome {
    /// The summary (also written as `summary.json`).
    pub summary: report::Summary,
    /// Unmet expectations, one sentence each (empty: the run passed).
    pub failures: Vec<String>,
}

/// Cluster id of the generated configs and certificates.
const CLUSTER_ID: &str = "netsim";
/// How long the cluster may take to form before the run gives up.
const FORM_TIMEOUT: Duration = Duration::from_secs(90);

/// Runs `scenario` with `opts`; `cancel` stops it early (the nodes are torn down either
/// way). Errors are failures of the machinery (a node that does not start, a namespace that
/// cannot be made); unmet expectations are in [`Outcome::failures`].
pub async fn run(
    scenario: &Scenario,
    opts: &RunOptions,
    cancel: CancellationToken,
) -> anyhow::Result<Outcome> {
    let requests: Vec<PopRequest> = scenario
        .cluster
        .pops
        .iter()
        .map(|p| p.request.clone())
        .collect();
    let topo_seed = scenario.topology.seed.unwrap_or(opts.seed);
    let sim = Sim::from_spec(
        TopologySpec::new(scenario.topology.ases, topo_seed),
        opts.seed,
        &requests,
    )?;
    let mut plan = plan::plan(scenario, &sim, opts.seed, opts.time_scale)?;
    if opts.backend == BackendKind::Netns {
        plan = plan.with_two_way_cuts();
    }
    std::fs::create_dir_all(&opts.out)
        .with_context(|| format!("cannot create {}", opts.out.display()))?;
    let folder = WorkDir(work_dir()?);
    let work = folder.0.as_path();
    let n = sim.pops.len();
    let names: Vec<String> = sim.pops.iter().map(|p| p.name.clone()).collect();
    // The backend decides the addresses; the folder is written with them.
    let (mut nodes, api): (Nodes, Vec<PathBuf>) = match opts.backend {
        BackendKind::InProc => {
            let bound = inproc::Bound::loopback(n).await?;
            let layout = layout(
                scenario,
                &plan,
                &sim,
                work,
                bound.dns_addrs()?,
                bound.gossip_addrs()?,
            );
            let configs = write_world(&sim, &layout, work)?;
            let api = names.iter().map(|p| inproc::api_socket(work, p)).collect();
            let nodes = inproc::InProc::start(configs, names.clone(), bound, opts.seed).await?;
            (Nodes::InProc(nodes), api)
        }
        BackendKind::Netns => {
            let sparrow = netns::find_sparrow(opts.sparrow.as_deref())?;
            let net = netns::Netns::create(n)?;
            let layout = layout(
                scenario,
                &plan,
                &sim,
                work,
                net.dns_addrs(),
                net.gossip_addrs(),
            );
            let configs = write_world(&sim, &layout, work)?;
            let api = names.iter().map(|p| inproc::api_socket(work, p)).collect();
            let mut net = net;
            net.start_all(&sparrow, configs, &opts.out.join("logs"))?;
            (Nodes::Netns(Box::new(net)), api)
        }
    };
    eprintln!(
        "netsim: {} nodes of {} up (work folder {}); waiting for the cluster to form",
        n,
        scenario.name,
        work.display()
    );
    let answers = AnswerMap::new(&sim, &scenario.cluster.services);
    let result = drive(&sim, &plan, &answers, opts, &mut nodes, &api, work, cancel).await;
    let notes = nodes.notes();
    nodes.shutdown().await;
    let (records, samples, node_events, baseline) = result?;
    let backend = match opts.backend {
        BackendKind::InProc => "inproc",
        BackendKind::Netns => "netns",
    };
    let mut summary = report::summarize(
        scenario, &sim, &plan, opts.seed, backend, &records, &samples, &baseline,
    );
    summary.notes = notes;
    let failures = report::check(
        scenario,
        &sim,
        &plan,
        &records,
        &samples,
        &node_events,
        &baseline,
    );
    std::fs::write(
        opts.out.join("queries.tsv"),
        report::queries_text(&sim, &plan, &records),
    )
    .context("cannot write the query log")?;
    std::fs::write(
        opts.out.join("summary.json"),
        serde_json::to_string_pretty(&report::SummaryFile {
            summary: &summary,
            failures: &failures,
        })?,
    )?;
    std::fs::write(
        opts.out.join("timeline.svg"),
        svg::timeline(scenario, &sim, &plan, &records, &samples),
    )?;
    Ok(Outcome { summary, failures })
}

/// The run's folder of cluster files, removed when the run ends, however it ends.
struct WorkDir(PathBuf);

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A folder for the cluster's files, short enough for Unix socket paths.
fn work_dir() -> anyhow::Result<PathBuf> {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "sn-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("fail"))?;
    std::fs::create_dir_all(dir.join("svc"))?;
    std::fs::create_dir_all(dir.join("load"))?;
    Ok(dir)
}

/// The nodes' addresses and config overrides: the scenario's, then its geo names and the
/// probes the timeline needs (an exec health probe that fails while `fail/POP` exists; for
/// a service that goes down anywhere, an exec probe attached to that service on every node
/// that fails while `svc/POP.SERVICE` exists; a file load probe that reads `load/POP`), so
/// that probe failures, service failures and load spikes go through real probes.
fn layout(
    scenario: &Scenario,
    plan: &Plan,
    sim: &Sim,
    work: &Path,
    dns: Vec<SocketAddr>,
    gossip: Vec<SocketAddr>,
) -> Layout {
    let n = sim.pops.len();
    let mut probed = vec![false; n];
    let mut loaded = vec![false; n];
    let mut services: Vec<usize> = Vec::new();
    for s in &plan.steps {
        match &s.action {
            Action::ProbeFail { pops } | Action::ProbeRecover { pops } => {
                pops.iter().for_each(|&p| probed[p] = true);
            }
            Action::Load { pops, .. } => pops.iter().for_each(|&p| loaded[p] = true),
            Action::ServiceDown { service, .. } | Action::ServiceUp { service, .. }
                if !services.contains(service) =>
            {
                services.push(*service);
            }
            _ => {}
        }
    }
    services.sort_unstable();
    let geo = AnswerMap::new(sim, &scenario.cluster.services).geo_config(sim);
    let overrides = (0..n)
        .map(|i| {
            let name = &sim.pops[i].name;
            let mut node = Table::new();
            let mut probes = Vec::new();
            if probed[i] {
                let probe = fault_probe("netsim", &work.join("fail").join(name), 500, 400);
                probes.push(Value::Table(probe));
            }
            for &s in &services {
                let service = &scenario.cluster.services[s].name;
                let file = work.join("svc").join(format!("{name}.{service}"));
                let mut probe = fault_probe(&format!("netsim-{service}"), &file, 200, 200);
                probe.insert("service".into(), service.as_str().into());
                probes.push(Value::Table(probe));
            }
            if !probes.is_empty() {
                node.insert("probe".into(), Value::Array(probes));
            }
            if loaded[i] {
                let path = work.join("load").join(name);
                let _ = std::fs::write(&path, "0.0\n");
                let mut load = Table::new();
                load.insert("kind".into(), "file".into());
                load.insert("path".into(), path.display().to_string().into());
                load.insert("interval_ms".into(), 500.into());
                node.insert("load".into(), Value::Table(load));
            }
            let mut mine = Table::new();
            if !node.is_empty() {
                mine.insert("node".into(), Value::Table(node));
            }
            if scenario.cluster.services.len() > 1 {
                mine.insert("geo".into(), geo.clone());
            }
            vec![
                scenario.cluster.config.clone(),
                scenario.cluster.pops[i].config.clone(),
                mine,
            ]
        })
        .collect();
    Layout {
        dns,
        cluster: Some(ClusterLayout {
            id: CLUSTER_ID.into(),
            gossip,
        }),
        overrides,
    }
}

/// An exec probe that is CRITICAL while `file` exists, probing every `interval_ms`; two
/// results in a row change its verdict.
fn fault_probe(name: &str, file: &Path, interval_ms: i64, timeout_ms: i64) -> Table {
    let mut probe = Table::new();
    probe.insert("name".into(), name.into());
    probe.insert("kind".into(), "exec".into());
    probe.insert(
        "command".into(),
        Value::Array(vec![
            "/bin/sh".into(),
            "-c".into(),
            // Nagios codes: 2 is CRITICAL (1 would be a WARNING, still up).
            format!("test ! -e '{}' || exit 2", file.display()).into(),
        ]),
    );
    probe.insert("interval_ms".into(), interval_ms.into());
    probe.insert("timeout_ms".into(), timeout_ms.into());
    probe.insert("rise".into(), 2.into());
    probe.insert("fall".into(), 2.into());
    probe
}

/// Writes the cluster folder and its PKI (made with `sparrow cert`'s code); returns the
/// config path of each node.
fn write_world(sim: &Sim, layout: &Layout, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    folder::write_folder(sim, layout, dir)
        .with_context(|| format!("cannot write {}", dir.display()))?;
    let now = time::OffsetDateTime::now_utc() - time::Duration::minutes(5);
    let ca = sparrow_node::pki::new_ca(CLUSTER_ID, now, 30)?;
    let pki = dir.join("pki");
    std::fs::create_dir_all(&pki)?;
    std::fs::write(pki.join("ca.pem"), &ca.cert)?;
    let mut configs = Vec::new();
    for p in &sim.pops {
        let id = sparrow_node::pki::Identity {
            cluster: CLUSTER_ID.into(),
            role: sparrow_node::pki::Role::Node,
            name: p.name.clone(),
        };
        let cert = sparrow_node::pki::issue(&ca, &id, &[], now, 30)?;
        std::fs::write(pki.join(format!("{}.pem", p.name)), &cert.cert)?;
        std::fs::write(pki.join(format!("{}.key", p.name)), &cert.key)?;
        configs.push(dir.join(format!("{}.toml", p.name)));
    }
    Ok(configs)
}

/// The nodes of a run, whichever backend holds them.
enum Nodes {
    InProc(inproc::InProc),
    Netns(Box<netns::Netns>),
}

impl Nodes {
    fn dns_addr(&self, i: usize) -> SocketAddr {
        match self {
            Self::InProc(n) => n.dns_addr(i),
            Self::Netns(n) => n.dns_addr(i),
        }
    }

    /// Where client sockets bind.
    fn client_bind(&self) -> SocketAddr {
        match self {
            Self::InProc(_) => SocketAddr::from(([127, 0, 0, 1], 0)),
            Self::Netns(_) => SocketAddr::from(([0, 0, 0, 0], 0)),
        }
    }

    async fn crash(&mut self, i: usize) {
        match self {
            Self::InProc(n) => n.crash(i).await,
            Self::Netns(n) => n.crash(i),
        }
    }

    async fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        match self {
            Self::InProc(n) => n.restart(i).await,
            Self::Netns(n) => n.restart(i),
        }
    }

    fn set_network(&mut self, state: &NetState) -> anyhow::Result<()> {
        match self {
            Self::InProc(n) => {
                n.set_network(state);
                Ok(())
            }
            Self::Netns(n) => n.set_network(state),
        }
    }

    fn notes(&self) -> Vec<String> {
        match self {
            Self::InProc(_) => Vec::new(),
            Self::Netns(n) => n.notes().to_vec(),
        }
    }

    async fn shutdown(&mut self) {
        match self {
            Self::InProc(n) => n.shutdown().await,
            Self::Netns(n) => n.shutdown(),
        }
    }
}

type Driven = (
    Vec<QueryRecord>,
    Vec<Sample>,
    Vec<NodeEvent>,
    report::Baseline,
);

/// Forms the cluster, takes the no-fault answers, then plays the workload and the timeline.
#[allow(clippy::too_many_arguments)]
async fn drive(
    sim: &Sim,
    plan: &Plan,
    answers: &AnswerMap,
    opts: &RunOptions,
    nodes: &mut Nodes,
    api: &[PathBuf],
    work: &Path,
    cancel: CancellationToken,
) -> anyhow::Result<Driven> {
    let n = sim.pops.len();
    let formed = Instant::now();
    loop {
        let mut all = true;
        for path in api {
            let ok = matches!(
                api::call(path, &Request::Status, Duration::from_secs(2)).await,
                // Formed: every node in cluster mode, seeing every node alive and every POP
                // live, healthy, active and with a view. A node that has just heard of a
                // peer treats its POP as down until the peer's keys arrive, so `alive`
                // alone comes too early for the no-fault answers.
                Ok(Response::Status(s)) if s.mode == "cluster"
                    && s.alive == n
                    && s.pops.iter().all(|p| p.live && p.healthy && p.admin == "active" && p.view.is_some()
                        && p.services.iter().all(|v| v.serving))
            );
            all &= ok;
            if !ok {
                break;
            }
        }
        if all {
            break;
        }
        if formed.elapsed() > FORM_TIMEOUT {
            anyhow::bail!("the cluster did not form within {FORM_TIMEOUT:?}");
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(200)) => {}
            () = cancel.cancelled() => anyhow::bail!("cancelled"),
        }
    }
    eprintln!(
        "netsim: cluster formed in {:.1} s; taking the no-fault answers",
        formed.elapsed().as_secs_f64()
    );
    let dns: Vec<SocketAddr> = (0..n).map(|i| nodes.dns_addr(i)).collect();
    let bind = nodes.client_bind();
    let baseline = baseline(plan, answers, &dns, bind).await;
    let missing = baseline.values().filter(|v| v.is_none()).count();
    if missing > 0 {
        anyhow::bail!(
            "{missing} no-fault answers missing: the cluster does not answer before any fault"
        );
    }
    eprintln!(
        "netsim: running {} queries over {:.0} s, {} events (time scale {})",
        plan.queries.len(),
        plan.duration.as_secs_f64(),
        plan.steps.len(),
        opts.time_scale
    );
    let t0 = Instant::now();
    let up = Arc::new(Mutex::new(vec![true; n]));
    let stop = CancellationToken::new();
    let monitor = tokio::spawn(monitor(api.to_vec(), up.clone(), t0, stop.clone()));
    let workload = tokio::spawn(workload(
        plan.clone(),
        answers.clone(),
        dns,
        bind,
        t0,
        stop.clone(),
    ));
    let mut node_events = Vec::new();
    let mut current = plan.initial.clone();
    let mut failure = None;
    for (k, step) in plan.steps.iter().enumerate() {
        tokio::select! {
            () = tokio::time::sleep_until(t0 + step.at) => {}
            () = cancel.cancelled() => { failure = Some(anyhow::anyhow!("cancelled")); break; }
        }
        let next = &plan.states[k];
        eprintln!("netsim: {:>6.1} s  {}", step.at.as_secs_f64(), step.name());
        if let Err(e) = apply(
            nodes,
            api,
            work,
            sim,
            plan,
            &current,
            next,
            &step.action,
            &up,
            t0,
            &mut node_events,
        )
        .await
        {
            failure = Some(e);
            break;
        }
        current = next.clone();
    }
    if failure.is_none() {
        tokio::select! {
            () = tokio::time::sleep_until(t0 + plan.duration + ATTEMPT_TIMEOUT * 2) => {}
            () = cancel.cancelled() => failure = Some(anyhow::anyhow!("cancelled")),
        }
    }
    stop.cancel();
    let records = workload.await.context("the workload panicked")?;
    let samples = monitor.await.context("the monitor panicked")?;
    if let Some(e) = failure {
        return Err(e);
    }
    Ok((records, samples, node_events, baseline))
}

/// Carries out one step: nodes crash or restart, the network changes, probe and load files
/// change, an operator drains.
#[allow(clippy::too_many_arguments)]
async fn apply(
    nodes: &mut Nodes,
    api: &[PathBuf],
    work: &Path,
    sim: &Sim,
    plan: &Plan,
    before: &NetState,
    after: &NetState,
    action: &Action,
    up: &Mutex<Vec<bool>>,
    t0: Instant,
    events: &mut Vec<NodeEvent>,
) -> anyhow::Result<()> {
    for i in 0..after.n {
        if after.crashed[i] && !before.crashed[i] {
            set_up(up, i, false);
            events.push(NodeEvent {
                at: t0.elapsed(),
                node: i,
                up: false,
            });
            nodes.crash(i).await;
        }
    }
    for (i, path) in api.iter().enumerate().take(after.n) {
        if !after.crashed[i] && before.crashed[i] {
            nodes.restart(i).await?;
            // A process takes a moment to bind its sockets: the node counts as up (queries to
            // it must be answered) once it answers its operator API, as a load balancer
            // waits for a restarted server.
            let started = Instant::now();
            while !matches!(
                api::call(path, &Request::Status, Duration::from_millis(500)).await,
                Ok(Response::Status(_))
            ) {
                anyhow::ensure!(
                    started.elapsed() < RESTART_TIMEOUT,
                    "{} did not answer within {RESTART_TIMEOUT:?} of its restart",
                    sim.pops[i].name
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            events.push(NodeEvent {
                at: t0.elapsed(),
                node: i,
                up: true,
            });
            set_up(up, i, true);
        }
    }
    nodes.set_network(after)?;
    for (i, p) in sim.pops.iter().enumerate() {
        let fail = work.join("fail").join(&p.name);
        if after.probe_failing[i] && !before.probe_failing[i] {
            std::fs::write(&fail, "failing\n")?;
        } else if !after.probe_failing[i] && before.probe_failing[i] {
            std::fs::remove_file(&fail)?;
        }
        for &(s, pop) in after.service_down.difference(&before.service_down) {
            if pop == i {
                std::fs::write(service_file(work, sim, &plan.services, s, pop), "failing\n")?;
            }
        }
        for &(s, pop) in before.service_down.difference(&after.service_down) {
            if pop == i {
                std::fs::remove_file(service_file(work, sim, &plan.services, s, pop))?;
            }
        }
        if after.load[i] != before.load[i] {
            std::fs::write(
                work.join("load").join(&p.name),
                format!("{}\n", after.load[i]),
            )?;
        }
    }
    if let Action::Drain { pops } | Action::Undrain { pops } = action {
        let drained = matches!(action, Action::Drain { .. });
        // A drain is carried by the drained POP's own node: the operator asks that node.
        for &p in pops {
            anyhow::ensure!(
                !after.crashed[p],
                "cannot drain {}: its node is down (a drain is held by the POP's own node)",
                sim.pops[p].name
            );
            let request = Request::SetAdmin {
                pop: sim.pops[p].name.clone(),
                drained,
                service: None,
            };
            match api::call(&api[p], &request, Duration::from_secs(10)).await? {
                Response::AdminSet(_) | Response::Done { .. } => {}
                other => anyhow::bail!("drain of {} refused: {other:?}", sim.pops[p].name),
            }
        }
    }
    Ok(())
}

/// The file whose presence fails service `s`'s probe at POP `pop` (see [`layout`]).
fn service_file(work: &Path, sim: &Sim, services: &[String], s: usize, pop: usize) -> PathBuf {
    work.join("svc")
        .join(format!("{}.{}", sim.pops[pop].name, services[s]))
}

/// The longest a restarted node may take to answer its API.
const RESTART_TIMEOUT: Duration = Duration::from_secs(15);

fn set_up(up: &Mutex<Vec<bool>>, i: usize, value: bool) {
    // INVARIANT: the lock is never held across an await or a panic.
    up.lock().expect("up lock poisoned")[i] = value;
}

/// The no-fault answer of each (client, node, service) a resolver may ask: its primary and
/// its secondary, with or without ECS as its resolver does, for every geo name.
async fn baseline(
    plan: &Plan,
    answers: &AnswerMap,
    dns: &[SocketAddr],
    bind: SocketAddr,
) -> report::Baseline {
    use futures_util::StreamExt as _;
    let mut asks = Vec::new();
    for (c, client) in plan.clients.iter().enumerate() {
        let r = &plan.resolvers[client.resolver];
        for node in [r.primary, r.secondary] {
            for s in 0..plan.services.len() {
                asks.push((c, node, s, r.ecs.then_some(client.subnet)));
            }
        }
    }
    futures_util::stream::iter(asks)
        .map(|(c, node, s, subnet)| async move {
            let mut pop = None;
            // A lost datagram is not a wrong answer: ask up to three times.
            for attempt in 0..3u16 {
                let reply = client::ask(
                    bind,
                    dns[node],
                    &answers.qname(s),
                    RecordType::A,
                    subnet,
                    (c as u16)
                        .wrapping_mul(7)
                        .wrapping_add(s as u16 * 3)
                        .wrapping_add(attempt),
                    ATTEMPT_TIMEOUT,
                )
                .await;
                if let Reply::Answer { .. } = &reply {
                    pop = answers.pop_of(s, &reply);
                    break;
                }
            }
            ((c, node, s), pop)
        })
        .buffer_unordered(32)
        .collect()
        .await
}

/// Sends the plan's queries at their times, each through its client's resolver (primary,
/// then secondary on a timeout or SERVFAIL), and collects what happened.
async fn workload(
    plan: Plan,
    answers: AnswerMap,
    dns: Vec<SocketAddr>,
    bind: SocketAddr,
    t0: Instant,
    stop: CancellationToken,
) -> Vec<QueryRecord> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let plan = Arc::new(plan);
    let answers = Arc::new(answers);
    let sender = {
        let plan = plan.clone();
        async move {
            for (q, &(at, c)) in plan.queries.iter().enumerate() {
                tokio::select! {
                    () = tokio::time::sleep_until(t0 + at) => {}
                    () = stop.cancelled() => return,
                }
                let (plan, answers, dns, tx) =
                    (plan.clone(), answers.clone(), dns.clone(), tx.clone());
                tokio::spawn(async move {
                    let client = &plan.clients[c];
                    let r = &plan.resolvers[client.resolver];
                    let subnet = r.ecs.then_some(client.subnet);
                    let service = plan.service_of(q);
                    let qname = answers.qname(service);
                    let mut attempts = Vec::new();
                    for node in [r.primary, r.secondary] {
                        let sent = t0.elapsed();
                        let reply = client::ask(
                            bind,
                            dns[node],
                            &qname,
                            RecordType::A,
                            subnet,
                            q as u16,
                            ATTEMPT_TIMEOUT,
                        )
                        .await;
                        let retry = match &reply {
                            Reply::Timeout | Reply::Unreachable | Reply::Error(_) => true,
                            Reply::Answer { rcode, .. } => {
                                *rcode == hickory_proto::op::ResponseCode::ServFail
                            }
                        };
                        attempts.push(Attempt { node, sent, reply });
                        if !retry {
                            break;
                        }
                    }
                    let answered = attempts
                        .last()
                        .and_then(|a| answers.pop_of(service, &a.reply));
                    let _ = tx.send(QueryRecord {
                        query: q,
                        at,
                        client: c,
                        service,
                        attempts,
                        pop: answered,
                    });
                });
            }
        }
    };
    // The sender owns `tx`; the channel closes when it and every query task are done.
    sender.await;
    let mut out = Vec::with_capacity(plan.queries.len());
    while let Some(r) = rx.recv().await {
        out.push(r);
    }
    out.sort_by_key(|r| r.query);
    out
}

/// Polls every node that is up for its status, as an operator's dashboard would.
async fn monitor(
    api: Vec<PathBuf>,
    up: Arc<Mutex<Vec<bool>>>,
    t0: Instant,
    stop: CancellationToken,
) -> Vec<Sample> {
    // Larger clusters are polled less often, so that the monitor stays a small load.
    let every = Duration::from_millis((250 + 10 * api.len() as u64).min(1000));
    let mut out = Vec::new();
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.cancelled() => return out,
        }
        // INVARIANT: the lock is never held across an await or a panic.
        let up_now = up.lock().expect("up lock poisoned").clone();
        let polls =
            api.iter()
                .enumerate()
                .filter(|&(i, _)| up_now[i])
                .map(|(i, path)| async move {
                    let at = t0.elapsed();
                    match api::call(path, &Request::Status, Duration::from_millis(500)).await {
                        Ok(Response::Status(s)) => Some(Sample {
                            at,
                            node: i,
                            local_only: s.mode == "local-only",
                            alive: s.alive,
                            usable: s
                                .pops
                                .iter()
                                .map(|p| p.live && p.healthy && p.admin == "active")
                                .collect(),
                            serving: s
                                .pops
                                .iter()
                                .flat_map(|p| p.services.iter().map(|v| v.serving))
                                .collect(),
                        }),
                        _ => None,
                    }
                });
        out.extend(
            futures_util::future::join_all(polls)
                .await
                .into_iter()
                .flatten(),
        );
    }
}
