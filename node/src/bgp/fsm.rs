//! [P] The BGP session as a state machine (RFC 4271 §8), for a speaker that only listens:
//! inputs are events and `now`, outputs are actions and the next deadline, in the shape of
//! `quinn-proto`. The TCP connection, the clock and the view builds are the edge's
//! ([`super::session`]).
//!
//! States are RFC 4271's: Idle, Connect (active mode: dialling), Active (passive mode:
//! waiting for the router), OpenSent, OpenConfirm, Established. Timers are the RFC's
//! ConnectRetry (here: the backoff before the next attempt, starting at `retry_min` and
//! doubling up to `retry_max`, back to `retry_min` once a session reached Established),
//! Hold and Keepalive (a third of the hold time), plus two of Sparrow's: the publish timer
//! (a changed RIB becomes a view at most every `publish_interval`) and the initial-table
//! wait (End-of-RIB for every family when the peer promised the markers, else
//! [`SYNC_QUIET`] without an UPDATE, at most [`SYNC_TIMEOUT`]).
//!
//! What ends a session: the peer's NOTIFICATION or a closed connection (nothing sent), a
//! malformed message, an unexpected message for the state, an expired hold timer, too many
//! prefixes with [`MaxPrefixAction::Refuse`] (each answered with the NOTIFICATION RFC 4271
//! §6 names), or the node stopping (Cease, administrative shutdown). A session that ends
//! after its initial table was in publishes the RIB's last changes, then marks the view
//! stale; the view stays in use until a new session has synced.
//!
//! Collisions (RFC 4271 §6.8): a read-only speaker runs one connection at a time. In passive
//! mode a second connection from the router while one is open is refused with Cease,
//! "connection collision resolution" (RFC 4486 subcode 7); the router tries again after its
//! own ConnectRetry, by which time the hold timer has ended a dead session.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use ipnet::IpNet;

use super::rib::Rib;
use super::wire::{self, Family, LocalOpen, Negotiated, Notification, err};
use crate::config::{BgpConfig, BgpMode, MaxPrefixAction};

/// Hold time before the peer's OPEN has told us its own (RFC 4271 §8.2.2 suggests 4 minutes).
pub const OPEN_HOLD: Duration = Duration::from_secs(240);
/// Without End-of-RIB markers, the initial table counts as complete after this long without
/// an UPDATE.
pub const SYNC_QUIET: Duration = Duration::from_secs(3);
/// The longest wait for End-of-RIB markers before the table counts as complete anyway.
pub const SYNC_TIMEOUT: Duration = Duration::from_secs(300);
/// Cease subcode: maximum number of prefixes reached (RFC 4486).
pub const CEASE_MAX_PREFIXES: u8 = 1;
/// Cease subcode: connection collision resolution (RFC 4486).
pub const CEASE_COLLISION: u8 = 7;
/// FSM error subcode: unexpected message in OpenSent (RFC 6608).
pub const FSM_IN_OPEN_SENT: u8 = 1;

/// The session's state (RFC 4271 §8.2.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum State {
    /// Not trying (between attempts, or stopped).
    Idle,
    /// Dialling the router (active mode).
    Connect,
    /// Waiting for the router to connect (passive mode).
    Active,
    /// Our OPEN sent, the router's awaited.
    OpenSent,
    /// OPENs exchanged, the router's KEEPALIVE awaited.
    OpenConfirm,
    /// Routes flow.
    Established,
}

/// What happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// Start (RFC events 1 and 4: ManualStart, and its passive form).
    Start,
    /// The node stops (event 2, ManualStop).
    Stop,
    /// The TCP connection is up: dialled, or accepted from the router (events 16, 17).
    Connected,
    /// Dialling failed (event 18).
    ConnectFailed(String),
    /// The connection closed or failed (event 18 in the connected states).
    Closed(String),
    /// Another connection from the router arrived (event 19, TcpConnection_Valid, while this
    /// session holds one).
    Incoming,
    /// A whole message: its type and body (events 19 to 28 by type).
    Message(u8, Vec<u8>),
    /// The reader found a bad header (event 21, BGPHeaderErr); the notification to send.
    BadHeader(Notification),
    /// A view the session asked for was built and handed over.
    Published,
}

/// How a session ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum End {
    /// The node stopped (a Cease was sent).
    Stopped,
    /// The peer sent this NOTIFICATION.
    Received(Notification),
    /// We sent this NOTIFICATION.
    Sent(Notification),
    /// The connection closed or failed, or could not be made.
    Closed(String),
}

/// Something worth a log line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The session reached Established.
    Established(Negotiated),
    /// A session ended (or an attempt failed); the next attempt is in `retry_in` (`None`:
    /// stopped).
    Ended {
        /// Why.
        end: End,
        /// The state it ended in.
        state: State,
        /// When the next attempt is.
        retry_in: Option<Duration>,
    },
    /// The initial table is in (`markers`: by End-of-RIB, else by quiet or timeout).
    Synced {
        /// Routes.
        routes: usize,
        /// Whether End-of-RIB markers ended it.
        markers: bool,
    },
    /// A malformed UPDATE was treated as a withdrawal (RFC 7606).
    TreatAsWithdraw {
        /// Why.
        reason: String,
        /// Prefixes withdrawn.
        prefixes: usize,
    },
    /// The router sent more prefixes than allowed; with `hold`, new ones are ignored.
    MaxPrefixes {
        /// The limit.
        limit: u64,
        /// Whether the session is kept (ignoring new prefixes).
        hold: bool,
    },
    /// A second connection from the router was refused.
    CollisionRefused,
    /// An End-of-RIB marker.
    EndOfRib(Family),
}

/// What the edge must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Dial the router (active mode) or accept its next connection (passive mode).
    Connect,
    /// Write these bytes to the connection.
    Send(Vec<u8>),
    /// Refuse the extra connection with these bytes (a NOTIFICATION), then close it.
    RefuseIncoming(Vec<u8>),
    /// Close the connection (after the bytes sent before it).
    Close,
    /// Build a view from these routes and publish it (then report [`Input::Published`]).
    Publish(Vec<(IpNet, Box<[u32]>)>),
    /// Publish the last view again, marked stale since now (after the builds asked for
    /// before it).
    MarkStale,
    /// Log this.
    Log(Event),
}

/// Timers (deadlines) of a session.
#[derive(Clone, Copy, Debug, Default)]
struct Timers {
    retry: Option<Instant>,
    hold: Option<Instant>,
    keepalive: Option<Instant>,
    publish: Option<Instant>,
}

/// See the module doc.
#[derive(Debug)]
pub struct Session {
    mode: BgpMode,
    local: LocalOpen,
    peer_asn: u32,
    own_asn: u32,
    retry_min: Duration,
    retry_max: Duration,
    publish_interval: Duration,
    max_prefixes: u64,
    max_action: MaxPrefixAction,
    state: State,
    timers: Timers,
    backoff: Duration,
    negotiated: Option<Negotiated>,
    rib: Rib,
    synced: bool,
    dirty: bool,
    /// A view build is running.
    building: bool,
    /// A view was ever published (so there is one to mark stale).
    published_once: bool,
    /// The last view handed over is marked stale already.
    stale: bool,
    /// Max-prefix hold logged this session.
    held: bool,
    established_at: Option<Instant>,
    last_update: Option<Instant>,
    actions: VecDeque<Action>,
}

impl Session {
    /// A session with the router `config` names, for a POP whose AS number is `own_asn`.
    pub fn new(config: &BgpConfig, own_asn: u32) -> Self {
        Self {
            mode: config.mode,
            local: LocalOpen {
                asn: config.local_asn,
                hold_time: config.hold_time,
                router_id: config.router_id,
            },
            peer_asn: config.peer_asn,
            own_asn,
            retry_min: config.retry_min,
            retry_max: config.retry_max,
            publish_interval: config.publish_interval,
            max_prefixes: config.max_prefixes,
            max_action: config.max_prefix_action,
            state: State::Idle,
            timers: Timers::default(),
            backoff: config.retry_min,
            negotiated: None,
            rib: Rib::new(own_asn),
            synced: false,
            dirty: false,
            building: false,
            published_once: false,
            stale: false,
            held: false,
            established_at: None,
            last_update: None,
            actions: VecDeque::new(),
        }
    }

    /// The state now.
    pub fn state(&self) -> State {
        self.state
    }

    /// The routes of the current session.
    pub fn rib(&self) -> &Rib {
        &self.rib
    }

    /// Feeds one input.
    pub fn handle(&mut self, now: Instant, input: Input) {
        use State::*;
        match (self.state, input) {
            (_, Input::Published) => {
                self.building = false;
                self.published_once = true;
                self.stale = false;
            }
            (Idle, Input::Start) => self.attempt(now),
            (_, Input::Start) => {}
            (Idle, Input::Stop) => self.timers = Timers::default(),
            (Connect | Active, Input::Stop) => {
                self.timers = Timers::default();
                self.state = Idle;
                self.actions.push_back(Action::Close);
            }
            (OpenSent | OpenConfirm | Established, Input::Stop) => {
                self.send(Notification::new(err::CEASE, err::ADMIN_SHUTDOWN));
                self.end(now, End::Stopped);
            }
            (Connect | Active, Input::Connected) => {
                self.actions.push_back(Action::Send(self.local.encode()));
                self.state = OpenSent;
                self.timers.hold = Some(now + OPEN_HOLD);
                self.timers.retry = None;
            }
            // A connection when none was asked for: refused, nothing else changes.
            (Idle | OpenSent | OpenConfirm | Established, Input::Connected) => {}
            (Connect | Active, Input::ConnectFailed(why)) => self.end(now, End::Closed(why)),
            (_, Input::ConnectFailed(_)) => {}
            (OpenSent | OpenConfirm | Established, Input::Closed(why)) => {
                self.end(now, End::Closed(why));
            }
            (_, Input::Closed(_)) => {}
            (OpenSent | OpenConfirm | Established, Input::Incoming) => {
                let cease = Notification::new(err::CEASE, CEASE_COLLISION);
                self.actions
                    .push_back(Action::RefuseIncoming(cease.encode()));
                self.log(Event::CollisionRefused);
            }
            (_, Input::Incoming) => {}
            (OpenSent | OpenConfirm | Established, Input::BadHeader(n)) => self.fail(now, n),
            (_, Input::BadHeader(_)) => {}
            (OpenSent | OpenConfirm | Established, Input::Message(wire::NOTIFICATION, body)) => {
                self.end(now, End::Received(Notification::parse(&body)));
            }
            (OpenSent, Input::Message(wire::OPEN, body)) => self.open(now, &body),
            (OpenSent, Input::Message(..)) => {
                self.fail(now, Notification::new(err::FSM, FSM_IN_OPEN_SENT));
            }
            (OpenConfirm, Input::Message(wire::KEEPALIVE, _)) => self.established(now),
            (OpenConfirm, Input::Message(..)) => {
                self.fail(now, Notification::new(err::FSM, err::FSM_IN_OPEN_CONFIRM));
            }
            (Established, Input::Message(wire::KEEPALIVE | wire::ROUTE_REFRESH, _)) => {
                self.restart_hold(now);
            }
            (Established, Input::Message(wire::UPDATE, body)) => self.update(now, &body),
            (Established, Input::Message(..)) => {
                self.fail(now, Notification::new(err::FSM, err::FSM_IN_ESTABLISHED));
            }
            (_, Input::Message(..)) => {}
        }
    }

    /// Time passed: runs every timer that is due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let due = |t: Option<Instant>| t.is_some_and(|t| t <= now);
        if due(self.timers.retry) {
            self.timers.retry = None;
            if self.state == State::Idle {
                self.attempt(now);
            }
        }
        if due(self.timers.hold) {
            self.timers.hold = None;
            self.fail(now, Notification::new(err::HOLD_TIMER, 0));
            return;
        }
        if due(self.timers.keepalive) {
            self.actions.push_back(Action::Send(wire::keepalive()));
            self.timers.keepalive = self.keepalive_every().map(|d| now + d);
        }
        if due(self.timers.publish) {
            self.timers.publish = Some(now + self.publish_interval);
            self.publish_tick(now);
        }
    }

    /// The next action for the edge.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`Self::handle_timeout`] is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let t = self.timers;
        [t.retry, t.hold, t.keepalive, t.publish]
            .into_iter()
            .flatten()
            .min()
    }

    fn log(&mut self, e: Event) {
        self.actions.push_back(Action::Log(e));
    }

    fn send(&mut self, n: Notification) {
        self.actions.push_back(Action::Send(n.encode()));
    }

    /// Dials (active) or waits to be dialled (passive).
    fn attempt(&mut self, _now: Instant) {
        self.state = match self.mode {
            BgpMode::Active => State::Connect,
            BgpMode::Passive(_) => State::Active,
        };
        self.actions.push_back(Action::Connect);
    }

    /// Sends `n` and ends the session with it.
    fn fail(&mut self, now: Instant, n: Notification) {
        self.send(n.clone());
        self.end(now, End::Sent(n));
    }

    /// Ends the connection (or the attempt) and schedules the next attempt.
    fn end(&mut self, now: Instant, end: End) {
        let state = self.state;
        if self.synced && self.dirty {
            // The session's last changes are the last good view (builds run in order, so
            // this one lands after any still running, and the stale mark after it).
            self.building = true;
            self.dirty = false;
            self.actions.push_back(Action::Publish(self.rib.entries()));
        }
        if (self.published_once || self.building) && !self.stale {
            self.actions.push_back(Action::MarkStale);
            self.stale = true;
        }
        if state != State::Idle {
            self.actions.push_back(Action::Close);
        }
        if self.established_at.is_some() {
            self.backoff = self.retry_min;
        }
        self.timers = Timers::default();
        self.state = State::Idle;
        self.negotiated = None;
        self.established_at = None;
        self.synced = false;
        self.dirty = false;
        self.held = false;
        self.rib = Rib::new(self.own_asn);
        let retry_in = if end == End::Stopped {
            None
        } else {
            let wait = self.backoff;
            self.timers.retry = Some(now + wait);
            self.backoff = (self.backoff * 2).min(self.retry_max);
            Some(wait)
        };
        self.log(Event::Ended {
            end,
            state,
            retry_in,
        });
    }

    fn open(&mut self, now: Instant, body: &[u8]) {
        let negotiated = wire::Open::parse(body)
            .and_then(|open| wire::negotiate(&open, &self.local, self.peer_asn));
        match negotiated {
            Ok(n) => {
                self.actions.push_back(Action::Send(wire::keepalive()));
                self.state = State::OpenConfirm;
                let hold = Duration::from_secs(u64::from(n.hold_time));
                self.timers.hold = Some(now + if hold.is_zero() { OPEN_HOLD } else { hold });
                self.negotiated = Some(n);
                self.timers.keepalive = self.keepalive_every().map(|d| now + d);
            }
            Err(n) => self.fail(now, n),
        }
    }

    fn keepalive_every(&self) -> Option<Duration> {
        let hold = self.negotiated.as_ref()?.hold_time;
        (hold > 0).then(|| Duration::from_secs(u64::from(hold)) / 3)
    }

    fn restart_hold(&mut self, now: Instant) {
        let hold = self.negotiated.as_ref().map_or(0, |n| n.hold_time);
        self.timers.hold = (hold > 0).then(|| now + Duration::from_secs(u64::from(hold)));
    }

    fn established(&mut self, now: Instant) {
        self.state = State::Established;
        self.established_at = Some(now);
        self.last_update = None;
        self.restart_hold(now);
        self.timers.publish = Some(now + self.publish_interval);
        if let Some(n) = self.negotiated.clone() {
            self.log(Event::Established(n));
        }
    }

    fn update(&mut self, now: Instant, body: &[u8]) {
        self.restart_hold(now);
        let four_octet = self.negotiated.as_ref().is_some_and(|n| n.four_octet);
        let update = match wire::parse_update(body, four_octet) {
            Ok(u) => u,
            Err(n) => return self.fail(now, n),
        };
        if let Some(why) = &update.treat_as_withdraw {
            self.log(Event::TreatAsWithdraw {
                reason: why.clone(),
                prefixes: update.withdrawn.len(),
            });
        }
        let mut update = update;
        let fresh = update
            .announced
            .iter()
            .filter(|p| self.rib.get(p).is_none())
            .count() as u64;
        let after = self.rib.len() as u64 + fresh;
        if fresh > 0 && after.saturating_sub(update.withdrawn.len() as u64) > self.max_prefixes {
            match self.max_action {
                MaxPrefixAction::Refuse => {
                    self.log(Event::MaxPrefixes {
                        limit: self.max_prefixes,
                        hold: false,
                    });
                    let mut data = vec![0, 1, 1];
                    data.extend_from_slice(
                        &u32::try_from(self.max_prefixes)
                            .unwrap_or(u32::MAX)
                            .to_be_bytes(),
                    );
                    return self.fail(
                        now,
                        Notification::with_data(err::CEASE, CEASE_MAX_PREFIXES, data),
                    );
                }
                MaxPrefixAction::Hold => {
                    if !self.held {
                        self.held = true;
                        self.log(Event::MaxPrefixes {
                            limit: self.max_prefixes,
                            hold: true,
                        });
                    }
                    // Withdrawals first make room; new prefixes past the limit are ignored,
                    // paths of prefixes already held still change.
                    let room = self
                        .max_prefixes
                        .saturating_sub(self.rib.len() as u64)
                        .saturating_add(update.withdrawn.len() as u64);
                    let mut allowed = room;
                    let rib = &self.rib;
                    update.announced.retain(|p| {
                        if rib.get(p).is_some() {
                            return true;
                        }
                        if allowed > 0 {
                            allowed -= 1;
                            true
                        } else {
                            false
                        }
                    });
                }
            }
        }
        let applied = self.rib.apply(&update);
        self.dirty |= applied.announced + applied.withdrawn > 0;
        self.last_update = Some(now);
        if let Some(family) = update.end_of_rib {
            self.log(Event::EndOfRib(family));
            let families = self
                .negotiated
                .as_ref()
                .map(|n| n.families.clone())
                .unwrap_or_default();
            if !self.synced && self.rib.complete(&families) {
                self.synced = true;
                self.log(Event::Synced {
                    routes: self.rib.len(),
                    markers: true,
                });
                self.publish(now);
            }
        }
    }

    fn publish_tick(&mut self, now: Instant) {
        if self.state != State::Established {
            self.timers.publish = None;
            return;
        }
        if !self.synced {
            let markers = self.negotiated.as_ref().is_some_and(|n| n.end_of_rib);
            let since = self.last_update.or(self.established_at).unwrap_or(now);
            let started = self.established_at.unwrap_or(now);
            let quiet = !markers && now.saturating_duration_since(since) >= SYNC_QUIET;
            if quiet || now.saturating_duration_since(started) >= SYNC_TIMEOUT {
                self.synced = true;
                self.dirty = true;
                self.log(Event::Synced {
                    routes: self.rib.len(),
                    markers: false,
                });
            }
        }
        if self.synced && self.dirty {
            self.publish(now);
        }
    }

    /// Hands the RIB over as a view, unless a build is still running (then the next tick
    /// tries again).
    fn publish(&mut self, _now: Instant) {
        if self.building {
            return;
        }
        self.building = true;
        self.dirty = false;
        self.stale = false;
        self.actions.push_back(Action::Publish(self.rib.entries()));
    }
}

#[cfg(test)]
mod tests;
