//! [P] Which peers' route views to pull, and when: a state machine fed with what gossip
//! announces and what fetches return, polled for the next fetch. Time is an argument.
//!
//! Gossip carries each node's announcement of its own POP's view (version, digest, counts;
//! see [`super::state::ViewAnnouncement`]). For every other POP the catalog compares the
//! announcement of a live node with the view this node holds, and asks for a fetch when the
//! digests differ. At most [`MAX_IN_FLIGHT`] fetches run at once; a failed fetch is retried
//! after an exponential backoff ([`RETRY_MIN`] doubling up to [`RETRY_MAX`]), so a peer that
//! keeps sending bad views costs little. A POP whose node is down is not fetched from: its
//! last view stays in use until its node is back and announces another.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::state::ViewAnnouncement;

/// Fetches running at once (each may move a full table).
pub const MAX_IN_FLIGHT: usize = 4;
/// First retry delay after a failed fetch.
pub const RETRY_MIN: Duration = Duration::from_millis(250);
/// Longest retry delay.
pub const RETRY_MAX: Duration = Duration::from_secs(30);

/// A fetch to start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fetch {
    /// POP index.
    pub pop: usize,
    /// Its node's cluster address.
    pub addr: SocketAddr,
    /// The digest announced.
    pub digest: u64,
}

#[derive(Clone, Copy, Debug, Default)]
struct Slot {
    /// What the POP's node announces while it is alive.
    announced: Option<(SocketAddr, ViewAnnouncement)>,
    /// Digest of the view held (pulled), if any.
    held: Option<u64>,
    /// A fetch is running.
    in_flight: bool,
    /// Failures in a row.
    failures: u32,
    /// No fetch before this.
    retry_at: Option<Instant>,
}

/// Per-POP pull state; the own POP is never fetched.
#[derive(Debug)]
pub struct ViewCatalog {
    own: usize,
    slots: Vec<Slot>,
}

impl ViewCatalog {
    /// A catalog for `pops` POPs, `own` being this node's.
    pub fn new(pops: usize, own: usize) -> Self {
        Self {
            own,
            slots: vec![Slot::default(); pops],
        }
    }

    /// This node already holds the view with `digest` for POP `pop` (kept from its last run).
    pub fn held(&mut self, pop: usize, digest: u64) {
        self.set_held(pop, Some(digest));
    }

    /// This node holds the view with `digest` for POP `pop`, or (`None`) none: after a reload
    /// rebuilt the tables from the config and the kept views, what they did not restore is
    /// pulled again.
    pub fn set_held(&mut self, pop: usize, digest: Option<u64>) {
        if pop != self.own
            && let Some(slot) = self.slots.get_mut(pop)
        {
            if slot.held != digest {
                slot.failures = 0;
                slot.retry_at = None;
            }
            slot.held = digest;
        }
    }

    /// What POP `pop`'s node announces now: `None` when it is not alive or announces no view.
    pub fn announce(&mut self, pop: usize, announced: Option<(SocketAddr, ViewAnnouncement)>) {
        if pop != self.own
            && let Some(slot) = self.slots.get_mut(pop)
        {
            if slot.announced.map(|(_, a)| a.digest) != announced.map(|(_, a)| a.digest) {
                // Something new: whatever failed before may work now.
                slot.failures = 0;
                slot.retry_at = None;
            }
            slot.announced = announced;
        }
    }

    /// The next fetch to start, if one is due; it counts as running from now on.
    pub fn poll_fetch(&mut self, now: Instant) -> Option<Fetch> {
        if self.slots.iter().filter(|s| s.in_flight).count() >= MAX_IN_FLIGHT {
            return None;
        }
        let (pop, slot) = self.slots.iter_mut().enumerate().find(|(_, s)| {
            let wanted = s.announced.is_some_and(|(_, a)| Some(a.digest) != s.held);
            wanted && !s.in_flight && s.retry_at.is_none_or(|t| t <= now)
        })?;
        let (addr, a) = slot.announced?;
        slot.in_flight = true;
        Some(Fetch {
            pop,
            addr,
            digest: a.digest,
        })
    }

    /// A fetch of POP `pop` ended: with the digest of the view now held, or failed.
    pub fn fetched(&mut self, now: Instant, pop: usize, result: Result<u64, ()>) {
        let Some(slot) = self.slots.get_mut(pop) else {
            return;
        };
        slot.in_flight = false;
        match result {
            Ok(digest) => {
                slot.held = Some(digest);
                slot.failures = 0;
                slot.retry_at = None;
            }
            Err(()) => {
                slot.failures = slot.failures.saturating_add(1);
                slot.retry_at = Some(now + backoff(slot.failures));
            }
        }
    }

    /// When a backed-off fetch becomes due, if any is waiting.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.slots
            .iter()
            .filter(|s| !s.in_flight && s.announced.is_some_and(|(_, a)| Some(a.digest) != s.held))
            .filter_map(|s| s.retry_at)
            .min()
    }

    /// Failed fetches in a row for POP `pop` (for status).
    pub fn failures(&self, pop: usize) -> u32 {
        self.slots.get(pop).map_or(0, |s| s.failures)
    }
}

/// Delay before retry number `failures` (1-based).
pub fn backoff(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    (RETRY_MIN * 2u32.pow(doublings)).min(RETRY_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ann(digest: u64) -> ViewAnnouncement {
        ViewAnnouncement {
            version: digest,
            digest,
            prefixes: 10,
            stale_since_ms: None,
        }
    }

    fn addr(i: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 7300 + i))
    }

    #[test]
    fn fetches_what_differs_once_and_never_the_own_pop() {
        let t0 = Instant::now();
        let mut c = ViewCatalog::new(3, 0);
        c.announce(0, Some((addr(0), ann(1))));
        c.announce(1, Some((addr(1), ann(5))));
        assert_eq!(
            c.poll_fetch(t0),
            Some(Fetch {
                pop: 1,
                addr: addr(1),
                digest: 5
            })
        );
        // Running: not asked again; nothing else to do.
        assert_eq!(c.poll_fetch(t0), None);
        c.fetched(t0, 1, Ok(5));
        assert_eq!(c.poll_fetch(t0), None);
        // The same announcement again changes nothing; a new digest is fetched.
        c.announce(1, Some((addr(1), ann(5))));
        assert_eq!(c.poll_fetch(t0), None);
        c.announce(1, Some((addr(1), ann(6))));
        assert_eq!(c.poll_fetch(t0).map(|f| f.digest), Some(6));
    }

    #[test]
    fn a_view_kept_from_the_last_run_is_not_pulled_again_unless_it_changed() {
        let t0 = Instant::now();
        let mut c = ViewCatalog::new(3, 0);
        c.held(1, 5);
        c.held(0, 9);
        c.announce(1, Some((addr(1), ann(5))));
        c.announce(2, Some((addr(2), ann(7))));
        assert_eq!(c.poll_fetch(t0).map(|f| f.pop), Some(2));
        assert_eq!(c.poll_fetch(t0), None);
        c.announce(1, Some((addr(1), ann(6))));
        assert_eq!(c.poll_fetch(t0).map(|f| f.pop), Some(1));
    }

    #[test]
    fn failures_back_off_exponentially_and_a_new_announcement_resets_them() {
        let t0 = Instant::now();
        let mut c = ViewCatalog::new(2, 0);
        c.announce(1, Some((addr(1), ann(9))));
        let mut at = t0;
        for failures in 1..=10u32 {
            assert!(c.poll_fetch(at).is_some(), "due after failure {failures}");
            c.fetched(at, 1, Err(()));
            assert_eq!(c.failures(1), failures);
            let wait = backoff(failures);
            assert_eq!(c.poll_timeout(), Some(at + wait));
            assert_eq!(c.poll_fetch(at + wait - Duration::from_millis(1)), None);
            at += wait;
        }
        assert_eq!(backoff(1), RETRY_MIN);
        assert_eq!(backoff(10), RETRY_MAX);
        assert_eq!(backoff(u32::MAX), RETRY_MAX);
        // The node announces another view: tried at once.
        c.announce(1, Some((addr(1), ann(10))));
        assert_eq!(c.failures(1), 0);
        assert!(c.poll_fetch(at).is_some());
    }

    #[test]
    fn dead_nodes_are_not_fetched_from_and_concurrency_is_bounded() {
        let t0 = Instant::now();
        let pops = MAX_IN_FLIGHT + 3;
        let mut c = ViewCatalog::new(pops, 0);
        for p in 1..pops {
            c.announce(p, Some((addr(p as u16), ann(p as u64))));
        }
        let started: Vec<usize> = std::iter::from_fn(|| c.poll_fetch(t0).map(|f| f.pop)).collect();
        assert_eq!(started.len(), MAX_IN_FLIGHT);
        // One finishes: one more may start.
        c.fetched(t0, started[0], Ok(started[0] as u64));
        assert!(c.poll_fetch(t0).is_some());
        // A POP whose node died is left alone, and its held view is kept.
        let mut c = ViewCatalog::new(2, 0);
        c.announce(1, Some((addr(1), ann(3))));
        let _ = c.poll_fetch(t0);
        c.fetched(t0, 1, Ok(3));
        c.announce(1, None);
        assert_eq!(c.poll_fetch(t0), None);
        assert_eq!(c.poll_timeout(), None);
        // Back with the same view: nothing to fetch.
        c.announce(1, Some((addr(1), ann(3))));
        assert_eq!(c.poll_fetch(t0), None);
    }

    #[test]
    fn any_order_of_announcements_and_results_ends_holding_what_is_announced() {
        // A small exhaustive walk: three digests announced in every order, each fetch
        // answering with what was announced when it started.
        let t0 = Instant::now();
        let orders = [
            [1u64, 2, 3],
            [1, 3, 2],
            [2, 1, 3],
            [2, 3, 1],
            [3, 1, 2],
            [3, 2, 1],
        ];
        for order in orders {
            for finish_between in [false, true] {
                let mut c = ViewCatalog::new(2, 0);
                let mut running: Option<Fetch> = None;
                for d in order {
                    c.announce(1, Some((addr(1), ann(d))));
                    if running.is_none() {
                        running = c.poll_fetch(t0);
                    }
                    if finish_between && let Some(f) = running.take() {
                        c.fetched(t0, 1, Ok(f.digest));
                    }
                }
                while let Some(f) = running.take().or_else(|| c.poll_fetch(t0)) {
                    c.fetched(t0, 1, Ok(f.digest));
                }
                assert_eq!(
                    c.slots[1].held,
                    Some(order[2]),
                    "{order:?} {finish_between}"
                );
            }
        }
    }
}
