//! Sparrow node: an authoritative DNS server that answers geo-balanced names with the POP
//! nearest the client in BGP AS hops.
//!
//! Modules marked [P] are pure (no sockets, clocks or tokio; `tests/tidy.rs` checks); [E] are
//! edges.
//! - [`config`] [P]: strict TOML config, validated into `Config`.
//! - [`routes`] [P]: route views and the static map (longest-prefix-match tables), from
//!   route files and MRT dumps.
//! - [`bgp`]: a read-only BGP speaker: `wire`, `rib` [P]; `session` [E].
//! - [`policy`] [P]: which POPs a client gets, best first, and why.
//! - [`snapshot`] [P]: the immutable state answers are computed from.
//! - [`state`]: the node's state and its one writer: [`state::NodeState`] [P] folds typed
//!   changes in; [`state::owner`] [E] applies them and publishes snapshots;
//!   [`state::builder`] [E] is the node's builder thread.
//! - [`dns`]: `answer`, `ecs`, `zone` [P]; `handler` [E] (hickory-server).
//! - [`explain`] [P]: a decision as data for `sparrow explain`.
//! - [`cli`] [E]: the `sparrow` command line; `cli::render` [P].
//! - [`cluster`]: one chitchat link per peer over QUIC with mutual TLS [E]; the follower
//!   core and the derivation of POP status [P].
//! - [`clock`] [E]: the wall clock, read in one place.
//! - [`sdnotify`] [E]: systemd's notify protocol (readiness, status, watchdog).
//! - [`health`]: probes [E] of the own POP's services, rise/fall hysteresis [P].
//! - [`pki`] [E]: `sparrow cert` (cluster CA, node and operator certificates) and the
//!   `sparrow://` identities peers check.
//! - [`demo`] [E]: `sparrow demo`, a three-node cluster in one process, no files.
//! - [`api`] [E]: the operator API (JSON lines over a Unix socket).
//! - [`metrics`] [E]: Prometheus metrics and their HTTP endpoint.
//! - [`memory`] [E]: freed memory handed back to the system after big rebuilds.
//! - [`sources`] [E]: the tasks that feed the state from the config (probes, the own
//!   view's source) and config reloads.
//! - [`viewsource`] [E]: the MRT dump watcher that keeps the own POP's view current.
//! - [`app`] [E]: binds sockets, runs the server, owns shutdown.
//! - [`build_info`] [P]: version, commit and build date of this binary.

pub mod api;
pub mod app;
pub mod bgp;
pub mod build_info;
pub mod cli;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod demo;
pub mod dns;
pub mod explain;
pub mod handover;
pub mod health;
pub mod memory;
pub mod metrics;
pub mod pki;
pub mod policy;
pub mod routes;
pub mod sdnotify;
pub mod snapshot;
pub mod sources;
pub mod state;
#[cfg(test)]
pub(crate) mod testrng;
pub mod viewsource;
