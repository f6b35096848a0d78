//! The cluster: chitchat gossip carried over QUIC with mutual TLS, one link per peer.
//!
//! - [`core`] [P]: the follower: from what the links show to the peer table, view pulls
//!   and events (a `quinn-proto`-shaped state machine).
//! - [`mesh`] [E]: one two-member chitchat per peer, so a node's state is written by that
//!   node only; discovery through seeds and hints.
//! - [`endpoint`] [E]: the node's one QUIC endpoint; accepts gossip, view pulls and the
//!   operator API (told apart by ALPN) from authenticated peers.
//! - [`view_cache`] [E]: pulled views kept on disk (`state_dir`) and loaded at start.
//! - [`view_sync`] [E]: serves the own POP's route view and pulls peers' views over QUIC.
//! - [`node`] [E]: starts the endpoint and the mesh and runs the follower loop, which
//!   hands changes to the node's state owner.
//! - [`state`] [P]: the gossiped keys and the rules from cluster state to answers
//!   (liveness, health, admin, the partition rule).
//! - [`tls`] [E]: rustls/quinn configs that trust only the cluster CA and check the peer's
//!   `sparrow://CLUSTER/node/NAME` identity.
//! - [`transport`] [E]: chitchat's `Transport` over QUIC.
//! - [`views`] [P]: which peers' route views to pull and when (gossip announces, QUIC moves).
//!
//! chitchat is pinned to 0.11: from 0.12 on, the envelope a `Transport` receives cannot be
//! serialized outside the crate (quickwit-oss/chitchat#207), so no byte-carrying transport
//! such as QUIC can be written against it.

pub mod core;
pub mod endpoint;
pub mod mesh;
pub mod node;
pub mod state;
pub mod tls;
pub mod transport;
pub mod view_cache;
pub mod view_sync;
pub mod views;
