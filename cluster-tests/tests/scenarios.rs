//! The scenario suite: every scenario shipped in `netsim/scenarios/` runs against real nodes
//! (the in-process backend), and split brain, 20% loss, restarts and a failed service also
//! as real `sparrow` processes in network namespaces. A test fails on any unmet expectation and prints every
//! scenario's summary and failures.
//!
//! Timelines run at half speed ([`TIME_SCALE`]): events still lie 10 s or more apart, more
//! than the detection bound and the local-only `within` of the scenarios, which are not
//! scaled. The seed is printed and can be set with `SPARROW_SEED`, so a failure replays
//! (`netsim run FILE --seed N --time-scale 0.5`).
//!
//! A binary of its own, so that its clusters do not share the 2-core machine with the other
//! integration tests; within it, the two tests take turns.

use std::path::{Path, PathBuf};

use sparrow_netsim::run::{self, BackendKind, RunOptions};
use sparrow_netsim::scenario::Scenario;
use tokio_util::sync::CancellationToken;

/// Factor of every scenario time in CI.
const TIME_SCALE: f64 = 0.5;
/// In-process scenarios run this many at a time. The machine has 2 cores, shared: more
/// clusters at once leave too little headroom, and a node starved of CPU for a couple of
/// gossip rounds is declared dead by its peers, which no scenario expects.
const AT_ONCE: usize = 2;

/// The two tests take turns: each runs several clusters at once already.
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn seed() -> u64 {
    let seed = sparrow_cluster_tests::env_or("SPARROW_SEED", 20_261_130);
    eprintln!("scenario suite seed {seed} (replay with SPARROW_SEED={seed})");
    seed
}

fn scenarios() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../netsim/scenarios");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

/// Where a scenario's outputs go: `target/netsim-suite/BACKEND/NAME`.
fn out_dir(backend: &str, name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/netsim-suite")
        .join(backend)
        .join(name)
}

/// Runs `files` with `backend`, `at_once` at a time; returns one report per scenario and
/// the failures (machinery errors and unmet expectations), each naming its scenario.
/// `files` in waves of `at_once`, each wave holding as few scenarios that restart nodes as
/// can be: starting a node is the heaviest thing a scenario does, and two restart-heavy
/// scenarios side by side on two cores measure the machine, not the cluster.
fn waves(files: &[PathBuf], at_once: usize) -> Vec<Vec<PathBuf>> {
    let restarts = |f: &PathBuf| {
        Scenario::load(f)
            .unwrap()
            .events
            .iter()
            .filter(|e| matches!(e.action, sparrow_netsim::scenario::Action::Restart { .. }))
            .count()
    };
    let mut heavy: Vec<(usize, PathBuf)> = Vec::new();
    let mut light = Vec::new();
    for f in files {
        match restarts(f) {
            0 => light.push(f.clone()),
            n => heavy.push((n, f.clone())),
        }
    }
    // The heaviest first, each beside a light one while there are any.
    heavy.sort_by_key(|h| std::cmp::Reverse(h.0));
    let mut order = Vec::new();
    let mut heavy = heavy.into_iter().map(|(_, f)| f);
    let mut light = light.into_iter();
    loop {
        let (h, l) = (heavy.next(), light.next());
        if h.is_none() && l.is_none() {
            break;
        }
        order.extend(h);
        order.extend(l);
    }
    order
        .chunks(at_once.max(1))
        .map(<[PathBuf]>::to_vec)
        .collect()
}

async fn run_suite(
    files: &[PathBuf],
    backend: BackendKind,
    at_once: usize,
    sparrow: Option<PathBuf>,
) -> (String, Vec<String>) {
    let seed = seed();
    let label = match backend {
        BackendKind::InProc => "inproc",
        BackendKind::Netns => "netns",
    };
    let mut report = String::new();
    let mut failures = Vec::new();
    for wave in waves(files, at_once) {
        let runs = wave.iter().map(|file| {
            let sparrow = sparrow.clone();
            async move {
                let scenario = Scenario::load(file).unwrap();
                let opts = RunOptions {
                    seed,
                    backend,
                    out: out_dir(label, &scenario.name),
                    time_scale: TIME_SCALE,
                    sparrow,
                };
                let outcome = run::run(&scenario, &opts, CancellationToken::new()).await;
                (scenario.name, opts.out, outcome)
            }
        });
        for (name, out, outcome) in futures_util::future::join_all(runs).await {
            match outcome {
                Ok(o) => {
                    report.push_str(&run::report::render(&o.summary));
                    report.push_str(&format!("outputs in {}\n\n", out.display()));
                    failures.extend(o.failures.iter().map(|f| format!("{name}: {f}")));
                }
                Err(e) => failures.push(format!("{name}: the run failed: {e:#}")),
            }
        }
    }
    (report, failures)
}

// Four workers for ten nodes: each real node would have a runtime of its own, and under
// contention the scheduler shares CPU time by thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_shipped_scenario_meets_its_expectations_in_process() {
    let _turn = TURN.lock().await;
    let files = scenarios();
    assert_eq!(files.len(), 11, "the suite has eleven scenarios: {files:?}");
    let (report, failures) = run_suite(&files, BackendKind::InProc, AT_ONCE, None).await;
    eprintln!("{report}");
    assert!(
        failures.is_empty(),
        "{report}\nunmet:\n{}",
        failures.join("\n")
    );
}

/// The `sparrow` binary, built if missing (this test binary does not build other
/// packages' binaries by itself).
fn sparrow_binary() -> PathBuf {
    let status = std::process::Command::new(env!("CARGO"))
        .args(["build", "-p", "sparrow-node", "--bin", "sparrow"])
        .status()
        .expect("cannot run cargo to build sparrow");
    assert!(status.success(), "building sparrow failed");
    let exe = std::env::current_exe().unwrap();
    // target/debug/deps/scenarios-HASH -> target/debug/sparrow
    let sparrow = exe.parent().unwrap().parent().unwrap().join("sparrow");
    assert!(sparrow.is_file(), "no {}", sparrow.display());
    sparrow
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_brain_loss_restarts_and_a_failed_service_meet_their_expectations_in_network_namespaces()
 {
    let _turn = TURN.lock().await;
    // Root, iproute2 and nftables are needed (scripts/test installs the packages); a
    // machine without them fails here rather than skipping.
    for tool in ["ip", "tc", "nft"] {
        let found = std::process::Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            found,
            "`{tool}` is missing: run scripts/test, which installs it"
        );
    }
    let sparrow = sparrow_binary();
    let files: Vec<PathBuf> = scenarios()
        .into_iter()
        .filter(|f| {
            let name = f.file_stem().unwrap().to_string_lossy();
            ["split-brain", "loss-20", "restarts", "service-down"].contains(&name.as_ref())
        })
        .collect();
    assert_eq!(files.len(), 4);
    let (report, failures) = run_suite(&files, BackendKind::Netns, 2, Some(sparrow)).await;
    eprintln!("{report}");
    assert!(
        failures.is_empty(),
        "{report}\nunmet:\n{}",
        failures.join("\n")
    );
    // Nothing of the runs is left behind.
    let left = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .unwrap();
    let mine = format!("sn{}r", std::process::id());
    assert!(
        !String::from_utf8_lossy(&left.stdout).contains(&mine),
        "namespaces left behind: {}",
        String::from_utf8_lossy(&left.stdout)
    );
}

/// Not a shipped scenario: the event kinds the suite does not use (probe failure, drain, load
/// spike) on three nodes, to show they go through the real probes and the operator API.
const PROBES_DRAIN_LOAD: &str = r#"
name = "probes-drain-load"
duration = "60s"
[topology]
ases = 300
seed = 1
[cluster]
config = { cluster = { gossip_interval_ms = 200 } }
[[cluster.pop]]
name = "fra"
region = "eu"
[[cluster.pop]]
name = "nyc"
region = "na-east"
[[cluster.pop]]
name = "sin"
region = "as-south"
[workload]
qps = 60
clients = 300
resolvers = 10
ecs = 1.0
[[event]]
at = "10s"
kind = "probe-fail"
pops = ["nyc"]
[[event]]
at = "20s"
kind = "probe-recover"
pops = ["nyc"]
[[event]]
at = "25s"
kind = "drain"
pops = ["sin"]
[[event]]
at = "35s"
kind = "undrain"
pops = ["sin"]
[[event]]
at = "40s"
label = "spike"
kind = "load"
pops = ["fra"]
load = 0.95
[expect]
detection_bound = "5s"
[[expect.local_only]]
pops = ["fra", "nyc", "sin"]
never = true
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_failure_drain_and_load_spike_go_through_real_probes_and_the_api() {
    let _turn = TURN.lock().await;
    let scenario =
        Scenario::from_str(PROBES_DRAIN_LOAD, Path::new("probes-drain-load.toml")).unwrap();
    let opts = RunOptions {
        seed: seed(),
        backend: BackendKind::InProc,
        out: out_dir("inproc", &scenario.name),
        time_scale: TIME_SCALE,
        sparrow: None,
    };
    let outcome = run::run(&scenario, &opts, CancellationToken::new())
        .await
        .unwrap();
    let report = run::report::render(&outcome.summary);
    eprintln!("{report}");
    // The detection bound covers the failing probe and the drain.
    assert!(
        outcome.failures.is_empty(),
        "{report}\n{:#?}",
        outcome.failures
    );
    let e = &outcome.summary.events;
    assert_eq!(e.len(), 5);
    // Nobody lost an answer, and the failing probe, the drain and the spike each moved
    // clients away (every POP is some clients' nearest).
    for ev in e {
        assert_eq!(ev.availability, 1.0, "{report}");
    }
    for k in [0, 2, 4] {
        assert!(e[k].differ_from_no_fault > 0, "{report}");
    }
    // Above the high-water mark (0.9), fra is not handed out once its load probe has read
    // the file and gossip has carried it: check the query log past the bound.
    let log = std::fs::read_to_string(opts.out.join("queries.tsv")).unwrap();
    let spike_ms = (e[4].at_s * 1000.0) as u64 + 5_000;
    let late: Vec<&str> = log
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.split('\t').next().unwrap().parse::<u64>().unwrap() > spike_ms)
        .collect();
    assert!(late.len() > 100, "{} queries after the spike", late.len());
    let to_fra = late
        .iter()
        .filter(|l| l.split('\t').nth(6) == Some("fra"))
        .count();
    assert_eq!(to_fra, 0, "fra handed out {to_fra} times while loaded");
}
