//! A read-only BGP-4 speaker: it learns the own POP's route view from the POP's router and
//! never announces a route.
//!
//! - [`wire`] [P]: messages and their errors (RFC 4271, 4760, 6793, 7606, 4724 End-of-RIB).
//! - [`rib`] [P]: the peer's routes, UPDATE by UPDATE.
//! - [`session`] [E]: the session over TCP (active or passive), timers, reconnection with
//!   backoff, and publication of views at most every `publish_interval`.

pub mod rib;
pub mod session;
pub mod wire;
