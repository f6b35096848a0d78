//! `netsim`: generate a simulated Internet and a ready-to-run Sparrow cluster folder from it,
//! check scenario files, run them against real nodes, and score answers against ground
//! truth.
//!
//! Exit codes: 0 success, 1 runtime failure (a file cannot be written, `sparrow cert`
//! failed, a node or a namespace did not start), 2 bad input (command line, scenario file,
//! truth file), 3 a scenario run's expectations were not met.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use ipnet::IpNet;
use sparrow_netsim::folder::{self, Layout, Sim};
use sparrow_netsim::pops::PopRequest;
use sparrow_netsim::run::{BackendKind, RunOptions};
use sparrow_netsim::scenario::Scenario;
use sparrow_netsim::topology::TopologySpec;
use sparrow_netsim::truth::{Score, Truth};

/// Sparrow's network simulator.
#[derive(Debug, Parser)]
#[command(name = "netsim", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate a topology, place POPs and write a ready-to-run cluster folder.
    Gen {
        /// Seed of every random choice (default: `SPARROW_SEED`, else a fresh one). Printed,
        /// so a run can be replayed.
        #[arg(long)]
        seed: Option<u64>,
        /// Number of ASes (default: the scenario's, else 1000).
        #[arg(long)]
        ases: Option<usize>,
        /// POPs: a count (`5`: placed by region, named after sites) or a comma-separated list
        /// of `NAME=ASN`, `NAME@REGION` or a site name (`fra,nyc@na-east,syd=AS1234`).
        #[arg(long)]
        pops: Option<String>,
        /// Take the topology size, the POPs and the config overrides from a scenario file.
        #[arg(long)]
        scenario: Option<PathBuf>,
        /// Folder to write (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// DNS port of the first node on 127.0.0.1; the others take the next ones.
        #[arg(long, default_value_t = 5301)]
        dns_port: u16,
        /// Gossip port of the first node on 127.0.0.1; the others take the next ones.
        #[arg(long, default_value_t = 7301)]
        gossip_port: u16,
        /// Standalone nodes (no `[cluster]` table; each answers from every view alone).
        #[arg(long)]
        standalone: bool,
        /// Cluster id written into the configs and certificates.
        #[arg(long, default_value = "netsim")]
        cluster_id: String,
        /// Make the PKI too, by running `sparrow cert` (this binary, or `sparrow` on PATH).
        #[arg(long, value_name = "SPARROW")]
        make_pki: Option<Option<PathBuf>>,
    },
    /// Check scenario files; print what each holds.
    Check {
        /// The files.
        #[arg(required = true)]
        scenarios: Vec<PathBuf>,
    },
    /// Run a scenario against real nodes, write its outputs and check its expectations.
    Run {
        /// The scenario file.
        scenario: PathBuf,
        /// Seed of the run (default: `SPARROW_SEED`, else the scenario's, else a fresh one).
        /// Printed, so a failure can be replayed.
        #[arg(long)]
        seed: Option<u64>,
        /// Where the nodes run: `inproc` (this process, faults at the transport) or `netns`
        /// (`sparrow` processes in network namespaces; needs root, iproute2, nftables).
        #[arg(long, value_enum, default_value_t = BackendArg::Inproc)]
        backend: BackendArg,
        /// Folder of the outputs (default: `netsim-out/NAME-SEED`).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Multiply every time of the timeline by this (e.g. 0.5 for a run half as long;
        /// expectations such as the detection bound are not scaled).
        #[arg(long, default_value_t = 1.0)]
        time_scale: f64,
        /// The `sparrow` binary for `--backend netns` (default: next to this one).
        #[arg(long)]
        sparrow: Option<PathBuf>,
    },
    /// Score answers against a truth file; without answers, score the baselines.
    Score {
        /// A `truth.txt` written by `netsim gen`.
        #[arg(long)]
        truth: PathBuf,
        /// Answers, one `CLIENT POP` per line (client prefix or subnet, POP name).
        #[arg(long)]
        answers: Option<PathBuf>,
    },
}

/// Backends of `netsim run`.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum BackendArg {
    Inproc,
    Netns,
}

/// Failures are bad input (exit 2), the machine's (exit 1), or a run whose expectations
/// were not met (exit 3).
enum Failure {
    Input(anyhow::Error),
    Runtime(anyhow::Error),
    Expectations,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Gen {
            seed,
            ases,
            pops,
            scenario,
            out,
            dns_port,
            gossip_port,
            standalone,
            cluster_id,
            make_pki,
        } => generate(GenArgs {
            seed,
            ases,
            pops,
            scenario,
            out,
            dns_port,
            gossip_port: (!standalone).then_some(gossip_port),
            cluster_id,
            make_pki,
        }),
        Command::Check { scenarios } => check(&scenarios),
        Command::Run {
            scenario,
            seed,
            backend,
            out,
            time_scale,
            sparrow,
        } => run(&scenario, seed, backend, out, time_scale, sparrow),
        Command::Score { truth, answers } => score(&truth, answers.as_deref()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Input(e)) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
        Err(Failure::Runtime(e)) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
        Err(Failure::Expectations) => ExitCode::from(3),
    }
}

fn run(
    path: &Path,
    seed: Option<u64>,
    backend: BackendArg,
    out: Option<PathBuf>,
    time_scale: f64,
    sparrow: Option<PathBuf>,
) -> Result<(), Failure> {
    let scenario = Scenario::load(path).map_err(|e| Failure::Input(e.into()))?;
    if !(time_scale > 0.0 && time_scale.is_finite()) {
        return Err(Failure::Input(anyhow::anyhow!(
            "--time-scale must be a positive number"
        )));
    }
    let seed = pick_seed(seed, scenario.seed)?;
    eprintln!("netsim: seed {seed} (replay with --seed {seed} or SPARROW_SEED={seed})");
    let out = out
        .unwrap_or_else(|| PathBuf::from("netsim-out").join(format!("{}-{seed}", scenario.name)));
    std::fs::create_dir_all(&out)
        .with_context(|| format!("cannot create {}", out.display()))
        .map_err(Failure::Runtime)?;
    // The nodes' logs (one process, many nodes: each line names its POP) go to a file, so
    // that the terminal shows the run.
    let log = std::fs::File::create(out.join("nodes.log"))
        .with_context(|| format!("cannot write {}", out.join("nodes.log").display()))
        .map_err(Failure::Runtime)?;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,hickory_server=warn,hickory_proto=warn,quinn=warn")
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(std::sync::Mutex::new(log))
        .init();
    let opts = RunOptions {
        seed,
        backend: match backend {
            BackendArg::Inproc => BackendKind::InProc,
            BackendArg::Netns => BackendKind::Netns,
        },
        out: out.clone(),
        time_scale,
        sparrow,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Runtime(e.into()))?;
    let outcome = runtime
        .block_on(async {
            let cancel = tokio_util::sync::CancellationToken::new();
            let on_signal = cancel.clone();
            tokio::spawn(async move {
                if tokio::signal::ctrl_c().await.is_ok() {
                    eprintln!("netsim: interrupted; tearing down");
                    on_signal.cancel();
                }
            });
            sparrow_netsim::run::run(&scenario, &opts, cancel).await
        })
        .map_err(Failure::Runtime)?;
    print!("{}", sparrow_netsim::run::report::render(&outcome.summary));
    println!(
        "outputs: {}/{{queries.tsv,summary.json,timeline.svg,nodes.log}}",
        out.display()
    );
    if outcome.failures.is_empty() {
        println!(
            "PASS {}: every expectation met (seed {seed})",
            scenario.name
        );
        Ok(())
    } else {
        println!(
            "FAIL {}: {} expectations not met (seed {seed}):",
            scenario.name,
            outcome.failures.len()
        );
        for f in &outcome.failures {
            println!("  - {f}");
        }
        Err(Failure::Expectations)
    }
}

struct GenArgs {
    seed: Option<u64>,
    ases: Option<usize>,
    pops: Option<String>,
    scenario: Option<PathBuf>,
    out: PathBuf,
    dns_port: u16,
    gossip_port: Option<u16>,
    cluster_id: String,
    make_pki: Option<Option<PathBuf>>,
}

/// The seed: the flag, else `SPARROW_SEED`, else the scenario's, else a fresh one.
fn pick_seed(flag: Option<u64>, scenario: Option<u64>) -> Result<u64, Failure> {
    if let Some(s) = flag {
        return Ok(s);
    }
    if let Ok(s) = std::env::var("SPARROW_SEED") {
        return s
            .trim()
            .parse()
            .with_context(|| format!("SPARROW_SEED=`{s}` is not a number"))
            .map_err(Failure::Input);
    }
    if let Some(s) = scenario {
        return Ok(s);
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    Ok(nanos ^ u64::from(std::process::id()).rotate_left(32))
}

fn generate(args: GenArgs) -> Result<(), Failure> {
    let scenario = args
        .scenario
        .as_deref()
        .map(Scenario::load)
        .transpose()
        .map_err(|e| Failure::Input(e.into()))?;
    let seed = pick_seed(args.seed, scenario.as_ref().and_then(|s| s.seed))?;
    eprintln!("netsim: seed {seed} (replay with --seed {seed} or SPARROW_SEED={seed})");
    let (requests, overrides) = match (&args.pops, &scenario) {
        (Some(p), _) => (parse_pops(p).map_err(Failure::Input)?, Vec::new()),
        (None, Some(s)) => (
            s.cluster.pops.iter().map(|p| p.request.clone()).collect(),
            s.cluster
                .pops
                .iter()
                .map(|p| vec![s.cluster.config.clone(), p.config.clone()])
                .collect(),
        ),
        (None, None) => (PopRequest::auto(5), Vec::new()),
    };
    let ases = args
        .ases
        .or(scenario.as_ref().map(|s| s.topology.ases))
        .unwrap_or(1000);
    let topo_seed = scenario
        .as_ref()
        .and_then(|s| s.topology.seed)
        .unwrap_or(seed);
    let started = std::time::Instant::now();
    let sim = Sim::from_spec(TopologySpec::new(ases, topo_seed), seed, &requests)
        .map_err(|e| Failure::Input(e.into()))?;
    let generated = started.elapsed();
    let mut layout = Layout::loopback(
        sim.pops.len(),
        args.dns_port,
        args.gossip_port,
        &args.cluster_id,
    );
    layout.overrides = overrides;
    folder::write_folder(&sim, &layout, &args.out)
        .with_context(|| format!("cannot write {}", args.out.display()))
        .map_err(Failure::Runtime)?;
    print!("{}", folder::describe(&sim, &layout));
    println!(
        "generated in {:.2} s; written to {}",
        generated.as_secs_f64(),
        args.out.display()
    );
    if let (Some(sparrow), Some(c)) = (args.make_pki, &layout.cluster) {
        let sparrow = sparrow.unwrap_or_else(|| PathBuf::from("sparrow"));
        // The commands run inside the folder: a relative path with a folder in it must be
        // made absolute first (a bare name is looked up on PATH as usual).
        let sparrow = if sparrow.is_relative() && sparrow.components().count() > 1 {
            std::env::current_dir()
                .map_err(|e| Failure::Runtime(e.into()))?
                .join(sparrow)
        } else {
            sparrow
        };
        for cmd in folder::pki_commands(&sim, c) {
            let status = std::process::Command::new(&sparrow)
                .args(&cmd)
                .current_dir(&args.out)
                .status()
                .with_context(|| format!("cannot run {}", sparrow.display()))
                .map_err(Failure::Runtime)?;
            if !status.success() {
                return Err(Failure::Runtime(anyhow::anyhow!(
                    "`{} {}` failed ({status})",
                    sparrow.display(),
                    cmd.join(" ")
                )));
            }
        }
    } else if layout.cluster.is_some() {
        println!(
            "make the PKI before starting the nodes: (cd {} && ./make-pki.sh)",
            args.out.display()
        );
    }
    Ok(())
}

fn parse_pops(s: &str) -> anyhow::Result<Vec<PopRequest>> {
    if let Ok(n) = s.trim().parse::<usize>() {
        if n == 0 {
            bail!("--pops 0: at least one POP");
        }
        return Ok(PopRequest::auto(n));
    }
    s.split(',')
        .map(|p| PopRequest::parse(p.trim()).map_err(anyhow::Error::msg))
        .collect()
}

fn check(files: &[PathBuf]) -> Result<(), Failure> {
    let mut failed = 0;
    for f in files {
        match Scenario::load(f) {
            Ok(s) => println!(
                "{}: {}: {} POPs, {} ASes, {} events over {}",
                f.display(),
                s.name,
                s.cluster.pops.len(),
                s.topology.ases,
                s.events.len(),
                humantime::format_duration(s.duration)
            ),
            Err(e) => {
                eprintln!("{e}");
                failed += 1;
            }
        }
    }
    if failed > 0 {
        return Err(Failure::Input(anyhow::anyhow!(
            "{failed} of {} scenario files refused",
            files.len()
        )));
    }
    Ok(())
}

fn score(truth_path: &Path, answers: Option<&Path>) -> Result<(), Failure> {
    let read = |p: &Path| {
        std::fs::read_to_string(p)
            .with_context(|| format!("cannot read {}", p.display()))
            .map_err(Failure::Input)
    };
    let (truth, skipped) = Truth::parse(&read(truth_path)?)
        .map_err(|e| Failure::Input(anyhow::anyhow!("{}: {e}", truth_path.display())))?;
    if !skipped.is_empty() {
        eprintln!(
            "{}: {} lines skipped (first: line {}: {})",
            truth_path.display(),
            skipped.len(),
            skipped[0].line,
            skipped[0].reason
        );
    }
    let clients: Vec<IpNet> = truth.entries.iter().map(|e| e.client).collect();
    let show = |what: &str, s: Score| println!("{what:<12} {s}");
    if let Some(path) = answers {
        let mut given = Vec::new();
        for (i, line) in read(path)?.lines().enumerate() {
            let content = line.split('#').next().unwrap_or("").trim();
            if content.is_empty() {
                continue;
            }
            let parsed = content
                .split_once(char::is_whitespace)
                .and_then(|(c, p)| Some((c.parse::<IpNet>().ok()?, truth.pop_index(p.trim())?)));
            match parsed {
                Some(a) => given.push(a),
                None => {
                    return Err(Failure::Input(anyhow::anyhow!(
                        "{}:{}: expected `CLIENT_PREFIX POP_NAME`",
                        path.display(),
                        i + 1
                    )));
                }
            }
        }
        show("answers", truth.score(given.iter().copied()));
        let asked: Vec<IpNet> = given.iter().map(|&(c, _)| c).collect();
        show("round robin", truth.score(truth.round_robin(&asked)));
        show("geoip", truth.score(truth.geoip(&asked)));
    } else {
        show("round robin", truth.score(truth.round_robin(&clients)));
        show("geoip", truth.score(truth.geoip(&clients)));
        // The best an AS-hop server can do by latency: any POP of the fewest hops.
        let hops_best: Vec<(IpNet, usize)> = truth
            .entries
            .iter()
            .map(|e| (e.client, e.by_hops[0]))
            .collect();
        show("fewest hops", truth.score(hops_best));
    }
    Ok(())
}
