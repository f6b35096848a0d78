//! DNS: the hickory-server handler [E] and the pure answer logic behind it [P]. The query
//! counters' interface lives here ([`QueryObserver`]), so that the answer path knows nothing
//! of the metrics that implement it.

pub mod answer;
pub mod cookie;
pub mod ecs;
pub mod fast;
pub mod handler;
pub mod notify;
pub mod rrl;
pub mod table;
pub mod tcp;
pub mod tsig;
pub mod udp;
pub mod wire;
pub mod xfr;
pub mod zone;
pub mod zonefile;

#[cfg(test)]
#[path = "shaping/tests.rs"]
mod shaping_tests;
#[cfg(test)]
mod tests;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

/// Transport of a DNS query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DnsTransport {
    /// UDP.
    Udp,
    /// TCP.
    Tcp,
}

/// What counts the queries answered (the metrics); called on the answer path, so an
/// implementation must cost a few atomic additions at most.
pub trait QueryObserver: Send + Sync {
    /// One query answered.
    fn query(&self, transport: DnsTransport, qtype: RecordType, rcode: ResponseCode);
    /// One geo answer for service `service` (index into `config.geo`) whose first POP is
    /// `pop`; `ecs` if the query carried a client subnet, `local_only` if the node answered
    /// partitioned.
    fn geo_answer(&self, service: usize, pop: usize, ecs: bool, local_only: bool);
    /// One UDP response held back by response rate limiting: dropped, or `slipped` (sent
    /// truncated instead).
    fn rate_limited(&self, slipped: bool);
}
