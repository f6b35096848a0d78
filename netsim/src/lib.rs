//! Sparrow netsim: a seeded, simulated Internet for Sparrow's tests, benchmarks and
//! partition scenarios.
//!
//! The generators are pure: no sockets, no clocks and no randomness from the OS. Every one
//! takes a `u64` seed, and the same seed gives the same output on every machine and every
//! run, so a failing case is reproduced by its seed alone. Callers print the seed they used
//! (and may take it from `SPARROW_SEED`, as the `netsim` binary does); the library never
//! reads the environment.
//!
//! What is simulated:
//! - [`fulltable`]: full BGP tables (prefix set with the real table's length mix and nesting)
//!   and per-POP route views of them in Sparrow's text format, at today's scale;
//! - [`topology`]: an AS-level Internet (tier-1 clique, transit tiers, multihomed stubs,
//!   peering, positions, link latencies, prefixes per AS);
//! - [`routes`]: Gao–Rexford routing over it and each POP's route view;
//! - [`pops`]: POP placement; [`truth`]: ground truth per client prefix, the round-robin and
//!   GeoIP baselines, scoring, and the oracle of a geo name's answer under per-service
//!   health;
//! - [`scenario`]: scenario files (cluster, workload, fault timeline, expectations);
//! - [`folder`]: a generated world and the ready-to-run cluster folder made from it;
//! - [`mrt`]: the per-POP views of [`fulltable`] as MRT RIB dumps (TABLE_DUMP_V2), as routers
//!   and collectors write them;
//! - [`run`]: running a scenario against real nodes (in this process, or as `sparrow`
//!   processes in network namespaces) with real DNS clients, and its report.
//!
//! The data modules above know nothing of the node; only [`run`] uses `sparrow-node`.

pub mod folder;
pub mod fulltable;
pub mod mrt;
pub mod pops;
mod rng;
pub mod routes;
pub mod run;
pub mod scenario;
pub mod topology;
pub mod truth;
