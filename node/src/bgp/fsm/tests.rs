//! The session's state machine, every state against every event RFC 4271 §8 lists for a
//! speaker that only listens, as one table; then the timings (hold, keepalive, retry
//! backoff, initial table, publishing) and the prefix limit.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use super::*;
use crate::config::BgpConfig;

const PEER_ASN: u32 = 64500;

fn config(mode: BgpMode) -> BgpConfig {
    BgpConfig {
        local_asn: 64501,
        router_id: Ipv4Addr::new(192, 0, 2, 53),
        peer: "192.0.2.1".parse().unwrap(),
        peer_port: 179,
        peer_asn: PEER_ASN,
        mode,
        hold_time: 9,
        retry_min: Duration::from_secs(1),
        retry_max: Duration::from_secs(8),
        publish_interval: Duration::from_secs(1),
        max_prefixes: 3,
        max_prefix_action: MaxPrefixAction::Refuse,
    }
}

fn passive() -> BgpMode {
    BgpMode::Passive("127.0.0.1:1179".parse().unwrap())
}

/// The body of the router's OPEN (AS `asn`, hold 9 s, 4-octet AS, no graceful restart).
fn open_from(asn: u32) -> Vec<u8> {
    let msg = LocalOpen {
        asn,
        hold_time: 9,
        router_id: Ipv4Addr::new(192, 0, 2, 1),
    }
    .encode();
    // The router's OPEN carries the graceful restart capability too (it sends End-of-RIB).
    msg[wire::HEADER_LEN..].to_vec()
}

/// An UPDATE announcing `prefixes` (IPv4 /8s, first octets) with AS path 64500 64496.
fn update(prefixes: &[u8]) -> Vec<u8> {
    let mut attrs = vec![0x40, 1, 1, 0];
    attrs.extend_from_slice(&[0x40, 2, 10, 2, 2]);
    attrs.extend_from_slice(&PEER_ASN.to_be_bytes());
    attrs.extend_from_slice(&64496u32.to_be_bytes());
    attrs.extend_from_slice(&[0x40, 3, 4, 192, 0, 2, 1]);
    let mut b = vec![0, 0];
    b.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
    b.extend_from_slice(&attrs);
    for p in prefixes {
        b.extend_from_slice(&[8, *p]);
    }
    b
}

/// The End-of-RIB marker of `family`, as an UPDATE body.
fn end_of_rib(family: Family) -> Vec<u8> {
    wire::end_of_rib(family)[wire::HEADER_LEN..].to_vec()
}

/// The router's OPEN without the graceful restart capability: it will send no End-of-RIB.
fn open_without_markers() -> Vec<u8> {
    let mut o = open_from(PEER_ASN);
    let at = o
        .windows(4)
        .position(|w| w == [64, 2, 0, 0])
        .expect("graceful restart capability");
    o.drain(at..at + 4);
    o[9] -= 4; // optional parameters length
    o[11] -= 4; // the capabilities parameter's length
    o
}

fn notification(code: u8, sub: u8) -> Vec<u8> {
    vec![code, sub]
}

/// Renders what a session did, briefly.
fn render(actions: &[Action]) -> String {
    let parts: Vec<String> = actions
        .iter()
        .map(|a| match a {
            Action::Connect => "connect".to_owned(),
            Action::Send(bytes) => match bytes.get(18) {
                Some(&wire::OPEN) => "send OPEN".to_owned(),
                Some(&wire::KEEPALIVE) => "send KEEPALIVE".to_owned(),
                Some(&wire::NOTIFICATION) => {
                    format!("send NOTIFICATION {}/{}", bytes[19], bytes[20])
                }
                other => format!("send {other:?}"),
            },
            Action::RefuseIncoming(bytes) => format!("refuse incoming {}/{}", bytes[19], bytes[20]),
            Action::Close => "close".to_owned(),
            Action::Publish(routes) => format!("publish {}", routes.len()),
            Action::MarkStale => "mark stale".to_owned(),
            Action::Log(Event::Ended { retry_in, .. }) => match retry_in {
                Some(d) => format!("ended, retry in {}s", d.as_secs()),
                None => "ended".to_owned(),
            },
            Action::Log(e) => format!(
                "log {}",
                format!("{e:?}").split([' ', '(', '{']).next().unwrap_or("")
            ),
        })
        .collect();
    if parts.is_empty() {
        "-".to_owned()
    } else {
        parts.join(", ")
    }
}

fn drain(s: &mut Session) -> Vec<Action> {
    std::iter::from_fn(|| s.poll_action()).collect()
}

/// A session driven to `state` at `t0` (its actions so far drained).
fn at(state: State, t0: Instant) -> Session {
    let mode = if state == State::Active {
        passive()
    } else {
        BgpMode::Active
    };
    let mut s = Session::new(&config(mode), 64501);
    let steps: &[Input] = match state {
        State::Idle => &[],
        State::Connect | State::Active => &[Input::Start],
        State::OpenSent => &[Input::Start, Input::Connected],
        State::OpenConfirm => &[
            Input::Start,
            Input::Connected,
            Input::Message(wire::OPEN, open_from(PEER_ASN)),
        ],
        State::Established => &[
            Input::Start,
            Input::Connected,
            Input::Message(wire::OPEN, open_from(PEER_ASN)),
            Input::Message(wire::KEEPALIVE, vec![]),
        ],
    };
    for i in steps {
        s.handle(t0, i.clone());
    }
    assert_eq!(s.state(), state);
    drain(&mut s);
    s
}

/// An event of the table: an input, or a timer running out.
#[derive(Clone)]
enum Ev {
    In(&'static str, Input),
    HoldTimer,
    KeepaliveTimer,
    RetryTimer,
}

fn events() -> Vec<Ev> {
    vec![
        Ev::In("Start", Input::Start),
        Ev::In("Stop", Input::Stop),
        Ev::In("TcpConnected", Input::Connected),
        Ev::In("TcpConnectFails", Input::ConnectFailed("refused".into())),
        Ev::In("TcpClosed", Input::Closed("reset".into())),
        Ev::In("Collision", Input::Incoming),
        Ev::In("OPEN", Input::Message(wire::OPEN, open_from(PEER_ASN))),
        Ev::In("OPEN bad AS", Input::Message(wire::OPEN, open_from(65000))),
        Ev::In(
            "OPEN bad version",
            Input::Message(wire::OPEN, {
                let mut o = open_from(PEER_ASN);
                o[0] = 3;
                o
            }),
        ),
        Ev::In("KEEPALIVE", Input::Message(wire::KEEPALIVE, vec![])),
        Ev::In("UPDATE", Input::Message(wire::UPDATE, update(&[10]))),
        Ev::In("UPDATE malformed", Input::Message(wire::UPDATE, vec![0, 9])),
        Ev::In(
            "ROUTE-REFRESH",
            Input::Message(wire::ROUTE_REFRESH, vec![0, 1, 0, 1]),
        ),
        Ev::In(
            "NOTIFICATION",
            Input::Message(wire::NOTIFICATION, notification(6, 2)),
        ),
        Ev::In(
            "HeaderError",
            Input::BadHeader(Notification::new(err::HEADER, err::BAD_TYPE)),
        ),
        Ev::HoldTimer,
        Ev::KeepaliveTimer,
        Ev::RetryTimer,
    ]
}

fn name(e: &Ev) -> &'static str {
    match e {
        Ev::In(n, _) => n,
        Ev::HoldTimer => "HoldTimer expires",
        Ev::KeepaliveTimer => "KeepaliveTimer expires",
        Ev::RetryTimer => "ConnectRetryTimer expires",
    }
}

#[test]
fn every_state_against_every_event() {
    let t0 = Instant::now();
    let mut table = String::new();
    for state in [
        State::Idle,
        State::Connect,
        State::Active,
        State::OpenSent,
        State::OpenConfirm,
        State::Established,
    ] {
        for ev in events() {
            let mut s = at(state, t0);
            match &ev {
                Ev::In(_, input) => s.handle(t0, input.clone()),
                Ev::HoldTimer => s.handle_timeout(t0 + OPEN_HOLD),
                // Keepalives are every 3 s (a third of the hold time of 9).
                Ev::KeepaliveTimer => s.handle_timeout(t0 + Duration::from_secs(3)),
                Ev::RetryTimer => {
                    // Only Idle between attempts has one: make one, then let it run out.
                    if state == State::Idle {
                        s.handle(t0, Input::Start);
                        s.handle(t0, Input::ConnectFailed("refused".into()));
                        drain(&mut s);
                    }
                    s.handle_timeout(t0 + Duration::from_secs(1));
                }
            }
            let actions = render(&drain(&mut s));
            table.push_str(&format!(
                "{:<12} {:<26} -> {:<12} {actions}\n",
                format!("{state:?}"),
                name(&ev),
                format!("{:?}", s.state())
            ));
        }
    }
    let expected = include_str!("fsm_table.txt");
    if table != expected {
        // Shows the whole table, so a changed rule is read in its context.
        panic!("the state table changed; new table:\n{table}");
    }
}

#[test]
fn a_session_syncs_publishes_keeps_alive_and_backs_off() {
    let t0 = Instant::now();
    let mut s = Session::new(&config(BgpMode::Active), 64501);
    for i in [
        Input::Start,
        Input::Connected,
        Input::Message(wire::OPEN, open_without_markers()),
        Input::Message(wire::KEEPALIVE, vec![]),
    ] {
        s.handle(t0, i);
    }
    assert_eq!(s.state(), State::Established);
    drain(&mut s);
    // No End-of-RIB promised: the table counts as complete 3 s after the last UPDATE.
    s.handle(t0, Input::Message(wire::UPDATE, update(&[10, 11])));
    let mut t = t0;
    let mut published = None;
    while t < t0 + Duration::from_secs(6) && published.is_none() {
        t = s.poll_timeout().unwrap();
        s.handle_timeout(t);
        for a in drain(&mut s) {
            if let Action::Publish(routes) = a {
                published = Some((t, routes.len()));
            }
        }
    }
    let (when, routes) = published.expect("published");
    assert_eq!(routes, 2);
    assert!(when >= t0 + SYNC_QUIET && when <= t0 + SYNC_QUIET + Duration::from_secs(1));
    // While that view builds, changes wait; then at most one view per publish interval.
    s.handle(when, Input::Message(wire::UPDATE, update(&[12])));
    s.handle_timeout(when + Duration::from_secs(1));
    assert!(
        !drain(&mut s)
            .iter()
            .any(|a| matches!(a, Action::Publish(_)))
    );
    s.handle(when, Input::Published);
    s.handle_timeout(when + Duration::from_secs(2));
    assert!(drain(&mut s).contains(&Action::Publish(s.rib().entries())));
    // The peer goes silent: keepalives go out every 3 s, then the hold timer (9 s) ends it.
    let silent = when + Duration::from_secs(2);
    let mut sent_keepalives = 0;
    let mut ended = None;
    while ended.is_none() {
        let t = s.poll_timeout().unwrap();
        s.handle_timeout(t);
        for a in drain(&mut s) {
            match a {
                Action::Send(b) if b[18] == wire::KEEPALIVE => sent_keepalives += 1,
                Action::Log(Event::Ended { end, retry_in, .. }) => ended = Some((t, end, retry_in)),
                _ => {}
            }
        }
    }
    let (t_end, end, retry_in) = ended.unwrap();
    assert_eq!(end, End::Sent(Notification::new(err::HOLD_TIMER, 0)));
    assert!(t_end - silent <= Duration::from_secs(9));
    assert!(sent_keepalives >= 2, "{sent_keepalives}");
    // The session had reached Established: the backoff starts over at retry_min.
    assert_eq!(retry_in, Some(Duration::from_secs(1)));
    // Attempts that fail double the wait up to retry_max.
    let mut waits = Vec::new();
    for _ in 0..6 {
        let now = s.poll_timeout().unwrap();
        s.handle_timeout(now);
        s.handle(now, Input::ConnectFailed("refused".into()));
        for a in drain(&mut s) {
            if let Action::Log(Event::Ended {
                retry_in: Some(w), ..
            }) = a
            {
                waits.push(w.as_secs());
            }
        }
    }
    assert_eq!(waits, [2, 4, 8, 8, 8, 8]);
}

#[test]
fn end_of_rib_completes_the_initial_table_at_once_and_a_session_end_marks_the_view_stale() {
    let t0 = Instant::now();
    let mut s = at(State::Established, t0);
    s.handle(t0, Input::Message(wire::UPDATE, update(&[10])));
    s.handle(
        t0,
        Input::Message(wire::UPDATE, end_of_rib(Family::Ipv4Unicast)),
    );
    assert!(
        !drain(&mut s)
            .iter()
            .any(|a| matches!(a, Action::Publish(_))),
        "IPv6 to come"
    );
    s.handle(
        t0,
        Input::Message(wire::UPDATE, end_of_rib(Family::Ipv6Unicast)),
    );
    let a = drain(&mut s);
    assert!(a.contains(&Action::Publish(s.rib().entries())), "{a:?}");
    assert!(
        a.iter()
            .any(|x| matches!(x, Action::Log(Event::Synced { markers: true, .. })))
    );
    s.handle(t0, Input::Published);
    // A change after it, then the router resets: the change is published, then the view
    // is marked stale, and the session closes.
    s.handle(t0, Input::Message(wire::UPDATE, update(&[11])));
    s.handle(t0, Input::Message(wire::NOTIFICATION, notification(6, 4)));
    let a = render(&drain(&mut s));
    assert_eq!(a, "publish 2, mark stale, close, ended, retry in 1s");
}

#[test]
fn too_many_prefixes_end_the_session_or_are_held_as_configured() {
    let t0 = Instant::now();
    let mut s = at(State::Established, t0);
    s.handle(t0, Input::Message(wire::UPDATE, update(&[10, 11, 12])));
    assert_eq!(s.rib().len(), 3);
    s.handle(t0, Input::Message(wire::UPDATE, update(&[13])));
    let a = render(&drain(&mut s));
    assert_eq!(
        a,
        "log MaxPrefixes, send NOTIFICATION 6/1, close, ended, retry in 1s"
    );
    // Held: new prefixes past the limit are ignored, the session and its routes stay.
    let mut held = Session::new(
        &BgpConfig {
            max_prefix_action: MaxPrefixAction::Hold,
            ..config(BgpMode::Active)
        },
        64501,
    );
    for i in [
        Input::Start,
        Input::Connected,
        Input::Message(wire::OPEN, open_from(PEER_ASN)),
        Input::Message(wire::KEEPALIVE, vec![]),
        Input::Message(wire::UPDATE, update(&[10, 11])),
        Input::Message(wire::UPDATE, update(&[12, 13, 14])),
        Input::Message(wire::UPDATE, update(&[15])),
    ] {
        held.handle(t0, i);
    }
    assert_eq!(held.state(), State::Established);
    assert_eq!(held.rib().len(), 3);
    let logs = drain(&mut held)
        .into_iter()
        .filter(|a| matches!(a, Action::Log(Event::MaxPrefixes { hold: true, .. })))
        .count();
    assert_eq!(logs, 1, "logged once per session");
}
