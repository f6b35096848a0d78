//! [P] The cluster follower: from what the gossip links show to what the node needs, as a
//! state machine in the shape of `quinn-proto` (inputs are events and `now`, outputs are
//! actions and the next deadline; no sockets, no clocks).
//!
//! Inputs:
//! - [`Follower::handle_members`]: every incarnation of every peer the links know, with its
//!   liveness and its published keys (read from chitchat by [`super::mesh`]);
//! - [`Follower::handle_held`]: the digests of the views kept from the last run, once they
//!   are loaded (until then nothing is pulled, so nothing is pulled twice);
//! - [`Follower::handle_fetched`]: a view pull ended;
//! - [`Follower::handle_timeout`]: a pull's backoff may have ended.
//!
//! Rules decided here:
//! - a peer is known only through its own link, and only under a configured POP name (the
//!   mesh refuses other names before anything reaches this core);
//! - of several incarnations of one peer (a restart), the live one wins, then the newest
//!   generation; a new incarnation is recognised as soon as its link shows it;
//! - an incarnation that has published nothing yet is "not heard yet", not an error; keys
//!   that do not parse make the POP count as unknown (down), logged once per incarnation;
//! - which views to pull, when, and from whom ([`super::views::ViewCatalog`]): only from
//!   the POP's own node, by the digest it announces.
//!
//! Outputs ([`Follower::poll_action`]): the peer table for the node state, view pulls to
//! start, changes of a pulled view's staleness, and events to log (peer up, down, new
//! incarnation, unreadable state).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Instant;

use super::state::{HotState, PeerView};
use super::views::{Fetch, ViewCatalog};

/// One incarnation of a peer as its link shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct Member {
    /// The peer's POP.
    pub pop: usize,
    /// Its incarnation (unix ms at its start).
    pub generation: u64,
    /// Its cluster address.
    pub addr: SocketAddr,
    /// Whether its link's failure detector believes it alive.
    pub alive: bool,
    /// Its keys: `None` while it has published none yet, else parsed or why not.
    pub state: Option<Result<HotState, String>>,
}

/// Something worth a log line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A peer is heard alive (again).
    PeerUp {
        /// The POP.
        pop: usize,
        /// Its incarnation.
        generation: u64,
    },
    /// A peer is no longer heard.
    PeerDown {
        /// The POP.
        pop: usize,
    },
    /// A peer restarted: a newer incarnation took the place of the one known.
    NewIncarnation {
        /// The POP.
        pop: usize,
        /// The incarnation before.
        before: u64,
        /// The new one.
        after: u64,
    },
    /// A peer's keys do not parse; its POP counts as unknown.
    Unreadable {
        /// The POP.
        pop: usize,
        /// Why.
        error: String,
    },
}

/// What the follower asks of its edge.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// The peer table changed: hand it to the node state.
    Peers(Vec<PeerView>),
    /// Start pulling a view.
    Fetch(Fetch),
    /// A pulled view's source went stale (`Some(since)`) or fresh again (`None`), as its
    /// owner announces without a new view.
    ViewStale {
        /// The POP.
        pop: usize,
        /// Stale since (unix ms), if stale.
        stale_since_ms: Option<u64>,
    },
    /// Log this.
    Log(Event),
}

/// The incarnation followed for one POP.
#[derive(Clone, Debug, Default)]
struct Slot {
    generation: Option<u64>,
    alive: bool,
    /// The generation whose unreadable keys were logged.
    warned: Option<u64>,
}

/// See the module doc.
#[derive(Debug)]
pub struct Follower {
    own: usize,
    slots: Vec<Slot>,
    peers: Vec<PeerView>,
    catalog: ViewCatalog,
    /// Kept views are known (loaded, or there are none): pulls may start.
    held_known: bool,
    actions: VecDeque<Action>,
}

impl Follower {
    /// A follower for a cluster of `pops` POPs, this node being `own`'s.
    pub fn new(pops: usize, own: usize) -> Self {
        Self {
            own,
            slots: vec![Slot::default(); pops],
            peers: vec![PeerView::default(); pops],
            catalog: ViewCatalog::new(pops, own),
            held_known: false,
            actions: VecDeque::new(),
        }
    }

    /// The views this node holds are known: `held[pop]` is the digest of the one held for
    /// each POP (at start, those kept from the last run; after a reload that rebuilt the
    /// tables, those it restored). Pulls may start from now on, for what is not held.
    pub fn handle_held(&mut self, now: Instant, held: &[Option<u64>]) {
        for (pop, digest) in held.iter().enumerate() {
            self.catalog.set_held(pop, *digest);
        }
        self.held_known = true;
        self.poll_fetches(now);
    }

    /// Every incarnation of every peer the links show now.
    pub fn handle_members(&mut self, now: Instant, members: &[Member]) {
        let pops = self.slots.len();
        let mut chosen: Vec<Option<&Member>> = vec![None; pops];
        for m in members {
            if m.pop >= pops || m.pop == self.own {
                continue;
            }
            let better = match chosen[m.pop] {
                None => true,
                Some(c) => (m.alive, m.generation) > (c.alive, c.generation),
            };
            if better {
                chosen[m.pop] = Some(m);
            }
        }
        let mut peers = self.peers.clone();
        for (pop, member) in chosen.into_iter().enumerate() {
            if pop == self.own {
                continue;
            }
            let slot = &mut self.slots[pop];
            let Some(m) = member else {
                if slot.alive {
                    self.actions.push_back(Action::Log(Event::PeerDown { pop }));
                }
                slot.alive = false;
                peers[pop].alive = false;
                self.catalog.announce(pop, None);
                continue;
            };
            if let Some(before) = slot.generation
                && before < m.generation
            {
                self.actions.push_back(Action::Log(Event::NewIncarnation {
                    pop,
                    before,
                    after: m.generation,
                }));
            }
            let is_new = slot.generation != Some(m.generation);
            if m.alive && (!slot.alive || is_new) {
                self.actions.push_back(Action::Log(Event::PeerUp {
                    pop,
                    generation: m.generation,
                }));
            } else if !m.alive && slot.alive {
                self.actions.push_back(Action::Log(Event::PeerDown { pop }));
            }
            slot.generation = Some(m.generation);
            slot.alive = m.alive;
            let known = match &m.state {
                // A new incarnation that has said nothing yet: what the old one said stays
                // until it speaks (a restart is not a change of state).
                None if is_new => None,
                None => peers[pop].known.clone(),
                Some(Ok(s)) => Some(s.clone()),
                Some(Err(e)) => {
                    if slot.warned != Some(m.generation) {
                        slot.warned = Some(m.generation);
                        self.actions.push_back(Action::Log(Event::Unreadable {
                            pop,
                            error: e.clone(),
                        }));
                    }
                    None
                }
            };
            // A view whose owner says it went stale (or fresh) without a new one.
            if let (Some(old), Some(new)) = (
                peers[pop].known.as_ref().and_then(|k| k.view),
                known.as_ref().and_then(|k| k.view),
            ) && old.digest == new.digest
                && old.stale_since_ms != new.stale_since_ms
            {
                self.actions.push_back(Action::ViewStale {
                    pop,
                    stale_since_ms: new.stale_since_ms,
                });
            }
            let announced = known
                .as_ref()
                .and_then(|k| k.view)
                .filter(|_| m.alive)
                .map(|a| (m.addr, a));
            self.catalog.announce(pop, announced);
            peers[pop] = PeerView {
                known,
                alive: m.alive,
                addr: Some(m.addr),
            };
        }
        if peers != self.peers {
            self.peers = peers;
            self.actions.push_back(Action::Peers(self.peers.clone()));
        }
        self.poll_fetches(now);
    }

    /// A pull of POP `pop`'s view ended: with the digest of the view now held, or failed.
    pub fn handle_fetched(&mut self, now: Instant, pop: usize, result: Result<u64, ()>) {
        self.catalog.fetched(now, pop, result);
        self.poll_fetches(now);
    }

    /// Time passed: backed-off pulls may be due.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.poll_fetches(now);
    }

    fn poll_fetches(&mut self, now: Instant) {
        if !self.held_known {
            return;
        }
        while let Some(f) = self.catalog.poll_fetch(now) {
            self.actions.push_back(Action::Fetch(f));
        }
    }

    /// The next thing to do.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`Self::handle_timeout`] is next due, if anything waits.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.held_known {
            self.catalog.poll_timeout()
        } else {
            None
        }
    }

    /// Failed pulls in a row for POP `pop` (for logs).
    pub fn failures(&self, pop: usize) -> u32 {
        self.catalog.failures(pop)
    }

    /// What is known of each peer now.
    pub fn peers(&self) -> &[PeerView] {
        &self.peers
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::cluster::state::ViewAnnouncement;

    fn addr(i: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 7300 + i))
    }

    fn state(digest: Option<u64>) -> HotState {
        HotState {
            view: digest.map(|d| ViewAnnouncement {
                version: d,
                digest: d,
                prefixes: 1,
                stale_since_ms: None,
            }),
            ..HotState::up()
        }
    }

    fn member(pop: usize, generation: u64, alive: bool, digest: Option<u64>) -> Member {
        Member {
            pop,
            generation,
            addr: addr(pop as u16),
            alive,
            state: Some(Ok(state(digest))),
        }
    }

    fn drain(f: &mut Follower) -> Vec<Action> {
        std::iter::from_fn(|| f.poll_action()).collect()
    }

    fn logs(actions: &[Action]) -> Vec<Event> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Log(e) => Some(e.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn peers_come_up_go_down_and_the_table_follows() {
        let t0 = Instant::now();
        let mut f = Follower::new(3, 0);
        f.handle_held(t0, &[]);
        f.handle_members(t0, &[member(1, 10, true, None), member(2, 20, false, None)]);
        let a = drain(&mut f);
        assert_eq!(
            logs(&a),
            [Event::PeerUp {
                pop: 1,
                generation: 10
            }]
        );
        let table = f.peers();
        assert!(table[1].alive && table[1].known.is_some());
        assert!(!table[2].alive && table[2].known.is_some());
        // Nothing changed: nothing to do.
        f.handle_members(t0, &[member(1, 10, true, None), member(2, 20, false, None)]);
        assert!(drain(&mut f).is_empty());
        // nyc dies; its link forgets it entirely later.
        f.handle_members(t0, &[member(1, 10, false, None)]);
        let a = drain(&mut f);
        assert_eq!(logs(&a), [Event::PeerDown { pop: 1 }]);
        assert!(matches!(a.last(), Some(Action::Peers(p)) if !p[1].alive));
    }

    #[test]
    fn a_new_incarnation_wins_at_once_and_its_silence_is_not_an_error() {
        let t0 = Instant::now();
        let mut f = Follower::new(2, 0);
        f.handle_held(t0, &[]);
        f.handle_members(t0, &[member(1, 10, true, Some(5))]);
        assert!(matches!(
            drain(&mut f)[..],
            [.., Action::Fetch(Fetch { digest: 5, .. })]
        ));
        f.handle_fetched(t0, 1, Ok(5));
        // Restarted: the old incarnation still looks alive for a moment, the new one is
        // alive and has said nothing yet.
        let fresh = Member {
            state: None,
            ..member(1, 11, true, None)
        };
        f.handle_members(t0, &[member(1, 10, true, Some(5)), fresh]);
        let a = drain(&mut f);
        assert_eq!(
            logs(&a),
            [
                Event::NewIncarnation {
                    pop: 1,
                    before: 10,
                    after: 11
                },
                Event::PeerUp {
                    pop: 1,
                    generation: 11
                }
            ]
        );
        assert!(f.peers()[1].alive);
        assert_eq!(f.peers()[1].known, None, "not heard yet, no warning");
        // It speaks.
        f.handle_members(t0, &[member(1, 11, true, Some(6))]);
        let a = drain(&mut f);
        assert!(a.iter().any(|x| matches!(
            x,
            Action::Fetch(Fetch {
                pop: 1,
                digest: 6,
                ..
            })
        )));
        // An older incarnation never takes over again, even if it looks alive.
        f.handle_members(
            t0,
            &[member(1, 10, false, Some(5)), member(1, 11, true, Some(6))],
        );
        assert!(logs(&drain(&mut f)).is_empty());
    }

    #[test]
    fn unreadable_keys_count_as_unknown_and_are_logged_once_per_incarnation() {
        let t0 = Instant::now();
        let mut f = Follower::new(2, 0);
        f.handle_held(t0, &[]);
        let bad = |generation| Member {
            state: Some(Err("bad `health` value".into())),
            ..member(1, generation, true, None)
        };
        f.handle_members(t0, &[bad(1)]);
        f.handle_members(t0, &[bad(1)]);
        let a = drain(&mut f);
        let unreadable = logs(&a)
            .into_iter()
            .filter(|e| matches!(e, Event::Unreadable { .. }))
            .count();
        assert_eq!(unreadable, 1);
        assert_eq!(f.peers()[1].known, None);
        f.handle_members(t0, &[bad(2)]);
        assert!(
            logs(&drain(&mut f))
                .iter()
                .any(|e| matches!(e, Event::Unreadable { .. }))
        );
    }

    #[test]
    fn nothing_is_pulled_before_the_kept_views_are_known_and_a_kept_view_is_not_pulled_again() {
        let t0 = Instant::now();
        let mut f = Follower::new(3, 0);
        f.handle_members(
            t0,
            &[member(1, 1, true, Some(7)), member(2, 1, true, Some(8))],
        );
        assert!(!drain(&mut f).iter().any(|a| matches!(a, Action::Fetch(_))));
        assert_eq!(f.poll_timeout(), None);
        f.handle_held(t0, &[None, Some(7), None]);
        let fetches: Vec<usize> = drain(&mut f)
            .into_iter()
            .filter_map(|a| match a {
                Action::Fetch(x) => Some(x.pop),
                _ => None,
            })
            .collect();
        assert_eq!(fetches, [2]);
        // A failed pull is retried after its backoff, through handle_timeout.
        f.handle_fetched(t0, 2, Err(()));
        let due = f.poll_timeout().unwrap();
        assert!(due > t0);
        f.handle_timeout(due - Duration::from_millis(1));
        assert!(drain(&mut f).is_empty());
        f.handle_timeout(due);
        assert!(matches!(
            drain(&mut f)[..],
            [Action::Fetch(Fetch { pop: 2, .. })]
        ));
    }

    #[test]
    fn a_view_going_stale_without_a_new_one_is_reported_and_the_own_pop_is_ignored() {
        let t0 = Instant::now();
        let mut f = Follower::new(2, 0);
        f.handle_held(t0, &[]);
        f.handle_members(
            t0,
            &[member(1, 1, true, Some(3)), member(0, 1, true, Some(1))],
        );
        drain(&mut f);
        let mut stale = member(1, 1, true, Some(3));
        if let Some(Ok(s)) = &mut stale.state {
            s.view.as_mut().unwrap().stale_since_ms = Some(99);
        }
        f.handle_members(t0, &[stale]);
        let a = drain(&mut f);
        assert!(a.contains(&Action::ViewStale {
            pop: 1,
            stale_since_ms: Some(99)
        }));
        assert!(f.peers()[0].known.is_none(), "the own POP is never a peer");
    }
}
