//! DNS: the hickory-server handler [E] and the pure answer logic behind it [P].

pub mod answer;
pub mod ecs;
pub mod handler;
pub mod zone;
