//! Sparrow's wire types: what nodes and the operator CLI exchange.
//!
//! This is the only crate whose types are serialized. Compatibility rule: a field is never
//! removed or re-typed within one [`PROTOCOL_VERSION`]; new optional fields may be added to
//! the JSON forms (`#[serde(default)]`).

pub mod api;
pub mod frame;
pub mod views;

/// Version of the node-to-node and CLI-to-node protocol.
pub const PROTOCOL_VERSION: u16 = 1;
