//! Sparrow netsim: seeded, deterministic network data for tests and benchmarks.
//!
//! Everything here is pure: no sockets, no clocks and no randomness from the OS. Every
//! generator takes a `u64` seed, and the same seed gives the same output on every machine and
//! every run, so a failing case is reproduced by its seed alone. Callers should print the seed
//! they used (and may take it from `SPARROW_SEED`); this crate never reads the environment.
//!
//! What is simulated so far:
//! - [`fulltable`]: full BGP tables (prefix set with the real table's length mix and nesting)
//!   and per-POP route views of them in Sparrow's text format, at today's scale.
//! - [`mrt`]: the same views as MRT RIB dumps (TABLE_DUMP_V2), as routers and collectors
//!   write them.
//!
//! What is not (yet): AS topology, link faults, the in-memory cluster transport.

pub mod fulltable;
pub mod mrt;
mod rng;
