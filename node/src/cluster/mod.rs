//! The cluster: chitchat gossip carried over QUIC with mutual TLS.
//!
//! - [`node`] [E]: runs chitchat for the node and keeps its snapshot up to date.
//! - [`state`] [P]: the gossiped keys and the rules from cluster state to answers
//!   (liveness, health, admin, the partition rule).
//! - [`tls`] [E]: rustls/quinn configs that trust only the cluster CA and check the peer's
//!   `sparrow://CLUSTER/node/NAME` identity.
//! - [`transport`] [E]: chitchat's `Transport` over QUIC.
//!
//! chitchat is pinned to 0.11: from 0.12 on, the envelope a `Transport` receives cannot be
//! serialized outside the crate (quickwit-oss/chitchat#207), so no byte-carrying transport
//! such as QUIC can be written against it.

pub mod node;
pub mod state;
pub mod tls;
pub mod transport;
