//! Fuzz targets for every parser that takes bytes from outside a node (DNS queries and
//! their ECS option, gossip frames and values, view transfers, BGP messages, MRT dumps,
//! config, zone and route files), and a runner that works on stable Rust.
//!
//! Only the stable toolchain is available to this project, and libFuzzer needs nightly's
//! sanitizer flags, so the runner is coverage-free: it replays the kept corpus
//! (`fuzz/corpus/TARGET/`, written by `sparrow-fuzz seed`) and then feeds each target inputs
//! made by stacking random mutations (bit flips, interesting integers, inserted, deleted
//! and duplicated ranges, splices of two corpus entries) onto corpus entries. The seed is
//! printed and taken from `SPARROW_SEED`, so any run can be replayed. A target passes an
//! input when it returns: parsers must refuse bad bytes with an error, never panic (every
//! `expect` in them claims an invariant, and the fuzzer tests the claim). Some targets
//! also check a property across two parsers of the same bytes.
//!
//! `cargo test -p sparrow-fuzz` runs every target for a bounded time (CI);
//! `cargo run --release -p sparrow-fuzz -- run --inputs N` is the long run BENCHMARKS.md
//! records. A crash is written under `target/fuzz-crashes/` and becomes a file of the
//! corpus (`crash-*`) and a regression test beside the code it found. An input that aborts
//! the process (a failed allocation cannot be caught) is found by replaying the printed seed
//! with `SPARROW_FUZZ_TRACE=FILE`, which holds each input while it runs.

pub mod seeds;
pub mod targets;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A fuzz target: a name (its corpus folder) and what runs one input.
#[derive(Clone, Copy)]
pub struct Target {
    /// Name, also the corpus folder's.
    pub name: &'static str,
    /// Runs one input; panics on a bug.
    pub run: fn(&[u8]),
}

/// Every target.
pub const TARGETS: &[Target] = &[
    Target {
        name: "dns_message",
        run: targets::dns_message,
    },
    Target {
        name: "ecs_option",
        run: targets::ecs_option,
    },
    Target {
        name: "gossip_frame",
        run: targets::gossip_frame,
    },
    Target {
        name: "gossip_values",
        run: targets::gossip_values,
    },
    Target {
        name: "view_transfer",
        run: targets::view_transfer,
    },
    Target {
        name: "view_frame",
        run: targets::view_frame,
    },
    Target {
        name: "bgp_message",
        run: targets::bgp_message,
    },
    Target {
        name: "mrt",
        run: targets::mrt,
    },
    Target {
        name: "config",
        run: targets::config,
    },
    Target {
        name: "zone_file",
        run: targets::zone_file,
    },
    Target {
        name: "zone_text",
        run: targets::zone_text,
    },
    Target {
        name: "route_text",
        run: targets::route_text,
    },
];

/// The target called `name`.
pub fn target(name: &str) -> Option<Target> {
    TARGETS.iter().copied().find(|t| t.name == name)
}

/// The kept corpus folder.
pub fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus")
}

/// Every input kept for `target`, sorted by file name.
pub fn corpus(target: &str) -> std::io::Result<Vec<Vec<u8>>> {
    let dir = corpus_dir().join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    files.sort();
    files.iter().map(std::fs::read).collect()
}

/// SplitMix64-seeded xorshift: fast, reproducible, no dependency.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Self((z ^ (z >> 31)) | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number below `n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// Integers that sit on parsers' boundaries: zero, sign bits, all ones, bincode's
/// variable-length markers, BGP's and DNS's length limits.
const INTERESTING: &[u64] = &[
    0,
    1,
    0x7f,
    0x80,
    0xff,
    250,
    251,
    252,
    253,
    254,
    0x7fff,
    0x8000,
    0xffff,
    4096,
    65_535,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    u64::MAX,
];

/// Changes `input` by one to four random mutations; `other` is another corpus entry to
/// splice from.
pub fn mutate(rng: &mut Rng, input: &mut Vec<u8>, other: &[u8]) {
    for _ in 0..1 + rng.below(4) {
        let len = input.len();
        match rng.below(9) {
            0 if len > 0 => {
                let i = rng.below(len);
                input[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                input[i] = rng.next_u64() as u8;
            }
            2 if len > 0 => {
                // An interesting integer, 1, 2, 4 or 8 bytes, either byte order.
                let width = 1 << rng.below(4);
                let i = rng.below(len);
                let value = INTERESTING[rng.below(INTERESTING.len())];
                let bytes = if rng.below(2) == 0 {
                    value.to_le_bytes()
                } else {
                    value.to_be_bytes()
                };
                let bytes = if rng.below(2) == 0 {
                    &bytes[..width]
                } else {
                    &bytes[8 - width..]
                };
                for (k, b) in bytes.iter().enumerate() {
                    if let Some(slot) = input.get_mut(i + k) {
                        *slot = *b;
                    }
                }
            }
            3 => {
                let i = rng.below(len + 1);
                let n = 1 + rng.below(16);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
                input.splice(i..i, bytes);
            }
            4 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(64));
                input.drain(i..i + n);
            }
            5 if len > 0 => {
                // Duplicate a range (repeated records, frames, lines).
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(256));
                let copy = input[i..i + n].to_vec();
                let at = rng.below(len + 1);
                input.splice(at..at, copy);
            }
            6 if !other.is_empty() => {
                // Splice: the start of this input, the rest of another.
                let cut = rng.below(len + 1);
                let from = rng.below(other.len());
                input.truncate(cut);
                input.extend_from_slice(&other[from..]);
            }
            7 if len > 0 => {
                input.truncate(rng.below(len));
            }
            _ => {
                let i = rng.below(len + 1);
                input.insert(i, INTERESTING[rng.below(INTERESTING.len())] as u8);
            }
        }
    }
    // Keep inputs small enough for many per second (the largest seed is a few kB).
    input.truncate(1 << 16);
}

/// How long a run goes on.
#[derive(Debug, Clone, Copy)]
pub struct Limit {
    /// Stop after this many inputs (corpus included).
    pub inputs: u64,
    /// Stop after this long.
    pub time: Duration,
}

/// What a run did.
#[derive(Debug)]
pub struct Report {
    /// Target name.
    pub target: &'static str,
    /// Inputs run, corpus included.
    pub inputs: u64,
    /// Corpus entries replayed first.
    pub corpus: usize,
    /// How long it took.
    pub elapsed: Duration,
    /// The slowest input's time.
    pub slowest: Duration,
    /// Inputs that panicked, as written under `crash_dir`.
    pub crashes: Vec<PathBuf>,
}

/// Runs `target` over `corpus` and then mutations of it from `seed`, within `limit`; every
/// input that panics is written to `crash_dir` (up to ten, then the run stops).
pub fn run(
    target: Target,
    corpus: &[Vec<u8>],
    seed: u64,
    limit: Limit,
    crash_dir: &Path,
) -> Report {
    let started = Instant::now();
    let mut rng = Rng::new(seed ^ name_hash(target.name));
    let mut report = Report {
        target: target.name,
        inputs: 0,
        corpus: corpus.len(),
        elapsed: Duration::ZERO,
        slowest: Duration::ZERO,
        crashes: Vec::new(),
    };
    let empty = vec![Vec::new()];
    let pool = if corpus.is_empty() { &empty } else { corpus };
    let mut input = Vec::new();
    let trace = std::env::var_os("SPARROW_FUZZ_TRACE").map(PathBuf::from);
    loop {
        let n = report.inputs as usize;
        if n < corpus.len() {
            input.clear();
            input.extend_from_slice(&corpus[n]);
        } else {
            if report.inputs >= limit.inputs
                || (n.is_multiple_of(64) && started.elapsed() >= limit.time)
                || report.crashes.len() >= 10
            {
                break;
            }
            // Mostly fresh mutations of a corpus entry; sometimes keep stacking on the last.
            if rng.below(4) != 0 {
                input.clear();
                input.extend_from_slice(&pool[rng.below(pool.len())]);
            }
            let other = &pool[rng.below(pool.len())];
            mutate(&mut rng, &mut input, other);
        }
        if let Some(path) = &trace {
            // An input that aborts (a failed allocation) cannot be caught: keep each one
            // where it survives the process.
            let _ = std::fs::write(path, &input);
        }
        let one = Instant::now();
        let outcome = std::panic::catch_unwind(|| (target.run)(&input));
        report.slowest = report.slowest.max(one.elapsed());
        report.inputs += 1;
        if outcome.is_err() {
            let path = crash_dir.join(format!("{}-{seed:016x}-{}.bin", target.name, report.inputs));
            let _ = std::fs::create_dir_all(crash_dir);
            let _ = std::fs::write(&path, &input);
            report.crashes.push(path);
        }
    }
    report.elapsed = started.elapsed();
    report
}

/// A stable hash of a target's name, so that each target gets its own stream of inputs.
fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// The seed of a run: `SPARROW_SEED` if set, else one from the clock (printed by callers).
pub fn seed_from_env() -> u64 {
    std::env::var("SPARROW_SEED")
        .ok()
        .and_then(|s| {
            let s = s.trim();
            s.strip_prefix("0x")
                .map_or_else(|| s.parse().ok(), |h| u64::from_str_radix(h, 16).ok())
        })
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        })
}
