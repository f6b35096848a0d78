//! [P] Response rate limiting (RRL) over UDP, per source prefix, as Knot and NSD do it: each
//! prefix (/24 and /56 by default) may receive `responses_per_second` responses (a second's
//! worth in a burst); past that, responses are dropped, except every `slip`-th, which goes
//! out truncated (TC, no records) so that a real client behind a spoofed flood still gets
//! through over TCP. Queries with a valid server cookie are not limited (`dns::cookie`).
//! Both UDP paths are limited alike: the fast path truncates its own answers, [`slipped`]
//! cuts down a response of the hickory path.
//!
//! The table has a fixed number of buckets, indexed by a hash of the prefix; a prefix that
//! lands on a bucket held by another takes it over (starting with a full allowance), so
//! memory stays bounded whatever the sources. Time comes in as an argument.

use std::net::IpAddr;
use std::sync::Mutex;

use crate::config::RrlSettings;

/// Buckets in the table (a power of two).
const BUCKETS: usize = 1 << 14;

/// What to do with one response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Send it.
    Send,
    /// Send it truncated: TC, no records.
    Slip,
    /// Send nothing.
    Drop,
}

#[derive(Clone, Copy, Default)]
struct Bucket {
    /// The prefix (address bits past the prefix length cleared, IPv4 mapped into IPv6
    /// space), plus one so that 0 means free.
    key: u128,
    /// Allowance left, in thousandths of a response.
    tokens: u64,
    /// When the allowance was last refilled.
    at_ms: u64,
    /// Responses refused since the prefix was last under its rate.
    refused: u32,
}

/// The limiter shared by the UDP workers.
pub struct Limiter {
    settings: RrlSettings,
    buckets: Box<[Mutex<Bucket>]>,
}

impl Limiter {
    /// An empty table with `settings`.
    pub fn new(settings: RrlSettings) -> Self {
        Self {
            settings,
            buckets: (0..BUCKETS).map(|_| Mutex::default()).collect(),
        }
    }

    /// The verdict on one more response to `addr` at `now_ms` (any monotonic milliseconds).
    pub fn check(&self, addr: IpAddr, now_ms: u64) -> Verdict {
        let key = self.prefix(addr);
        let capacity = u64::from(self.settings.responses_per_second) * 1000;
        let index = (fold(key).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 50) as usize % BUCKETS;
        // INVARIANT: nothing panics while a bucket is locked.
        let mut b = self.buckets[index].lock().expect("rrl bucket");
        if b.key != key {
            *b = Bucket {
                key,
                tokens: capacity,
                at_ms: now_ms,
                refused: 0,
            };
        }
        let elapsed = now_ms.saturating_sub(b.at_ms);
        b.tokens =
            (b.tokens + elapsed * u64::from(self.settings.responses_per_second)).min(capacity);
        b.at_ms = now_ms.max(b.at_ms);
        if b.tokens >= 1000 {
            b.tokens -= 1000;
            b.refused = 0;
            return Verdict::Send;
        }
        b.refused = b.refused.wrapping_add(1);
        match self.settings.slip {
            0 => Verdict::Drop,
            slip if b.refused.is_multiple_of(slip) => Verdict::Slip,
            _ => Verdict::Drop,
        }
    }

    fn prefix(&self, addr: IpAddr) -> u128 {
        let (bits, len) = match addr.to_canonical() {
            IpAddr::V4(a) => (
                u128::from(a.to_ipv6_mapped()),
                96 + u32::from(self.settings.ipv4_prefix),
            ),
            IpAddr::V6(a) => (u128::from(a), u32::from(self.settings.ipv6_prefix)),
        };
        let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
        (bits & mask).wrapping_add(1)
    }
}

/// `response` as a slipped response: its header with TC set, its question, and its OPT
/// record if it has one; no answer, authority or other additional records. For responses
/// made by the hickory path (the fast path truncates its own). `None` if `response` is not a
/// well-formed message.
pub fn slipped(response: &[u8]) -> Option<Vec<u8>> {
    const HEADER: usize = 12;
    let count = |at: usize| -> Option<usize> {
        Some(usize::from(u16::from_be_bytes(
            response.get(at..at + 2)?.try_into().ok()?,
        )))
    };
    // The end of the name starting at `at`.
    let name_end = |mut at: usize| -> Option<usize> {
        loop {
            let len = *response.get(at)?;
            match len {
                0 => return Some(at + 1),
                l if l & 0xC0 == 0xC0 => return Some(at + 2),
                l if l < 64 => at += 1 + usize::from(l),
                _ => return None,
            }
        }
    };
    let (qd, an, ns, ar) = (count(4)?, count(6)?, count(8)?, count(10)?);
    let mut at = HEADER;
    for _ in 0..qd {
        at = name_end(at)? + 4;
    }
    let question_end = at;
    let mut opt = None;
    for i in 0..an + ns + ar {
        let start = at;
        let fixed = name_end(at)?;
        let rtype = count(fixed)?;
        let rdlen = count(fixed + 8)?;
        at = fixed + 10 + rdlen;
        if i >= an + ns && rtype == 41 {
            opt = Some(start..at);
        }
    }
    if at > response.len() || question_end > response.len() {
        return None;
    }
    let mut out = Vec::with_capacity(question_end + opt.as_ref().map_or(0, |o| o.len()));
    out.extend_from_slice(&response[..question_end]);
    out[2] |= 0x02;
    out[6..10].fill(0);
    out[10..12].copy_from_slice(&u16::from(opt.is_some()).to_be_bytes());
    if let Some(opt) = opt {
        out.extend_from_slice(&response[opt]);
    }
    Some(out)
}

fn fold(key: u128) -> u64 {
    // INVARIANT: truncations on purpose, a hash.
    (key as u64) ^ ((key >> 64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(rate: u32, slip: u32) -> Limiter {
        Limiter::new(RrlSettings {
            responses_per_second: rate,
            slip,
            ipv4_prefix: 24,
            ipv6_prefix: 56,
        })
    }

    fn run(l: &Limiter, addr: &str, n: usize, now_ms: u64) -> Vec<Verdict> {
        let addr: IpAddr = addr.parse().unwrap();
        (0..n).map(|_| l.check(addr, now_ms)).collect()
    }

    #[test]
    fn a_prefix_gets_its_rate_then_every_slip_th_response_truncated() {
        use Verdict::*;
        let l = limiter(5, 2);
        let first = run(&l, "192.0.2.1", 10, 0);
        assert_eq!(
            first,
            [Send, Send, Send, Send, Send, Drop, Slip, Drop, Slip, Drop]
        );
        // The same /24 shares the allowance; another /24 has its own.
        assert_eq!(run(&l, "192.0.2.200", 1, 0), [Slip]);
        assert_eq!(run(&l, "192.0.3.1", 1, 0), [Send]);
        // 400 ms later: two more responses' worth.
        assert_eq!(run(&l, "192.0.2.7", 3, 400), [Send, Send, Drop]);
        // A second later the full burst is back, and no more.
        assert_eq!(
            run(&l, "192.0.2.7", 6, 10_000)[..6],
            [Send, Send, Send, Send, Send, Drop]
        );
    }

    #[test]
    fn slip_zero_drops_all_and_slip_one_truncates_all() {
        assert!(
            run(&limiter(1, 0), "2001:db8::1", 5, 0)[1..]
                .iter()
                .all(|v| *v == Verdict::Drop)
        );
        assert!(
            run(&limiter(1, 1), "2001:db8::1", 5, 0)[1..]
                .iter()
                .all(|v| *v == Verdict::Slip)
        );
    }

    #[test]
    fn a_slipped_response_keeps_header_question_and_opt_only() {
        use hickory_proto::op::{Edns, Message, MessageType, Query};
        use hickory_proto::rr::{Name, RData, Record, RecordType, rdata};
        use std::str::FromStr;
        let name = Name::from_str("www.example.net.").unwrap();
        let mut m = Message::new(
            0x1234,
            MessageType::Response,
            hickory_proto::op::OpCode::Query,
        );
        m.metadata.authoritative = true;
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(name.clone(), RecordType::TXT));
        for i in 0..3 {
            m.add_answer(Record::from_rdata(
                name.clone(),
                60,
                RData::TXT(rdata::TXT::new(vec![format!("record {i}")])),
            ));
        }
        m.add_authority(Record::from_rdata(
            name.clone(),
            60,
            RData::TXT(rdata::TXT::new(vec!["authority".to_owned()])),
        ));
        let mut edns = Edns::new();
        edns.set_max_payload(1232);
        m.set_edns(edns);
        let bytes = m.to_vec().unwrap();
        let got = Message::from_vec(&slipped(&bytes).unwrap()).unwrap();
        assert!(got.metadata.truncation);
        assert!(got.metadata.authoritative && got.metadata.recursion_desired);
        assert_eq!(got.metadata.id, 0x1234);
        assert_eq!(got.queries, m.queries);
        assert!(got.answers.is_empty() && got.authorities.is_empty());
        assert_eq!(got.edns.as_ref().map(Edns::max_payload), Some(1232));
        // Without EDNS: header and question only. Cut short: refused.
        m.edns = None;
        let bytes = m.to_vec().unwrap();
        let plain = slipped(&bytes).unwrap();
        assert_eq!(plain.len(), 12 + 17 + 4);
        assert!(slipped(&bytes[..bytes.len() - 1]).is_none());
        assert!(slipped(&bytes[..5]).is_none());
    }

    #[test]
    fn ipv6_prefixes_are_56_bits_and_mapped_ipv4_is_ipv4() {
        let l = limiter(1, 0);
        assert_eq!(run(&l, "2001:db8:0:ff::1", 1, 0), [Verdict::Send]);
        assert_eq!(run(&l, "2001:db8:0:22::2", 1, 0), [Verdict::Drop]);
        assert_eq!(run(&l, "2001:db8:0:100::1", 1, 0), [Verdict::Send]);
        assert_eq!(run(&l, "198.51.100.1", 1, 0), [Verdict::Send]);
        assert_eq!(run(&l, "::ffff:198.51.100.9", 1, 0), [Verdict::Drop]);
    }
}
