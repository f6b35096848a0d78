//! A read-only BGP-4 speaker: it learns the own POP's route view from the POP's router and
//! never announces a route.
//!
//! - [`wire`] [P]: messages and their errors (RFC 4271, 4760, 6793, 7606, 4724 End-of-RIB).
//! - [`rib`] [P]: the peer's routes, UPDATE by UPDATE.
//! - [`fsm`] [P]: the session as a state machine (RFC 4271 §8): events and `now` in,
//!   actions and deadlines out; every state and event in one table test.
//! - [`session`] [E]: the TCP connection (active or passive), the clock and the view builds
//!   around [`fsm::Session`].

pub mod fsm;
pub mod rib;
pub mod session;
pub mod wire;
