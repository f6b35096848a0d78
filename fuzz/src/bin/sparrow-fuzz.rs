//! `sparrow-fuzz seed`: writes the seed corpus to `fuzz/corpus/`.
//! `sparrow-fuzz run [TARGET...] [--inputs N] [--secs S]`: the long run; prints one line per
//! target (inputs, time, inputs per second, slowest input, crashes) and exits 1 on a crash.
//! The seed is printed; `SPARROW_SEED` replays a run.

use std::process::ExitCode;
use std::time::Duration;

#[allow(clippy::print_stdout)]
fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("seed") => match sparrow_fuzz::seeds::write_corpus(&sparrow_fuzz::corpus_dir()) {
            Ok(n) => {
                println!(
                    "wrote {n} seeds to {}",
                    sparrow_fuzz::corpus_dir().display()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        Some("run") => run(&args[1..]),
        _ => {
            eprintln!("usage: sparrow-fuzz seed | run [TARGET...] [--inputs N] [--secs S]");
            ExitCode::from(2)
        }
    }
}

#[allow(clippy::print_stdout)]
fn run(args: &[String]) -> ExitCode {
    let mut names = Vec::new();
    let mut limit = sparrow_fuzz::Limit {
        inputs: u64::MAX,
        time: Duration::from_secs(u64::MAX / 4),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let value = |v: Option<&String>| v.and_then(|v| v.replace('_', "").parse::<u64>().ok());
        match a.as_str() {
            "--inputs" => match value(it.next()) {
                Some(n) => limit.inputs = n,
                None => return usage(),
            },
            "--secs" => match value(it.next()) {
                Some(s) => limit.time = Duration::from_secs(s),
                None => return usage(),
            },
            name => names.push(name.to_owned()),
        }
    }
    let targets: Vec<sparrow_fuzz::Target> = if names.is_empty() {
        sparrow_fuzz::TARGETS.to_vec()
    } else {
        let mut out = Vec::new();
        for n in &names {
            match sparrow_fuzz::target(n) {
                Some(t) => out.push(t),
                None => {
                    eprintln!("error: no target {n}");
                    return ExitCode::from(2);
                }
            }
        }
        out
    };
    let seed = sparrow_fuzz::seed_from_env();
    println!("seed {seed:#x} (SPARROW_SEED={seed:#x} replays this run)");
    let crash_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/fuzz-crashes");
    let mut crashed = false;
    for t in targets {
        let corpus = match sparrow_fuzz::corpus(t.name) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("error: corpus of {}: {e}", t.name);
                return ExitCode::FAILURE;
            }
        };
        let r = sparrow_fuzz::run(t, &corpus, seed, limit, &crash_dir);
        println!(
            "{:<14} {:>12} inputs in {:>8.1} s ({:>9.0}/s), slowest {:>8.2} ms, {} crashes",
            r.target,
            r.inputs,
            r.elapsed.as_secs_f64(),
            r.inputs as f64 / r.elapsed.as_secs_f64().max(1e-9),
            r.slowest.as_secs_f64() * 1e3,
            r.crashes.len()
        );
        for c in &r.crashes {
            println!("  crash: {}", c.display());
            crashed = true;
        }
    }
    if crashed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn usage() -> ExitCode {
    eprintln!("usage: sparrow-fuzz run [TARGET...] [--inputs N] [--secs S]");
    ExitCode::from(2)
}
