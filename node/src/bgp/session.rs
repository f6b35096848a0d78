//! [E] The BGP session with the POP's router, for as long as the node runs: the TCP
//! connection, the clock and the view builds around the pure [`super::fsm::Session`], which
//! decides everything else (see its doc for the states, timers and what ends a session).
//!
//! In passive mode only the configured peer may connect: anyone else is refused with a
//! NOTIFICATION (Cease, connection rejected) and logged. Views are built on the node's
//! builder thread ([`crate::state::builder`], lower CPU priority than DNS), in order; a view
//! marked stale is the last one built, published again with the time its source stopped
//! being current.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ipnet::IpNet;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::fsm::{Action, End, Event, Input, Session, State};
use super::wire::{self, Notification, err};
use crate::config::{BgpConfig, BgpMode};
use crate::routes::{OwnView, RouteView};
use crate::state::builder::Builder;

/// Time given to a TCP connection attempt.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Messages read ahead of the session.
const READ_AHEAD: usize = 64;

/// The callback that receives views.
pub type Publish = Arc<dyn Fn(OwnView) + Send + Sync>;

/// What the reader task hands over.
enum Read {
    Message(u8, Vec<u8>),
    Bad(Notification),
    Closed(String),
}

type Connecting = Pin<Box<dyn Future<Output = std::io::Result<TcpStream>> + Send>>;

/// Runs the session until `shutdown`. `listener` is the bound socket in passive mode.
pub async fn run(
    config: BgpConfig,
    own_asn: u32,
    source: String,
    listener: Option<TcpListener>,
    builder: Builder,
    publish: Publish,
    shutdown: CancellationToken,
) {
    let listener = listener.map(Arc::new);
    let mut session = Session::new(&config, own_asn);
    let mut views = Views {
        source,
        builder,
        publish,
        last: Arc::new(Mutex::new(None)),
        stale_since_ms: None,
    };
    let (read_tx, mut read_rx) = mpsc::channel::<(u64, Read)>(READ_AHEAD);
    let (built_tx, mut built_rx) = mpsc::channel::<()>(4);
    // The connection: its write half and a number, so that what an old reader queued is
    // told apart from the current connection's.
    let mut conn: Option<(OwnedWriteHalf, tokio::task::JoinHandle<()>, u64)> = None;
    let mut serial = 0u64;
    let mut connecting: Option<Connecting> = None;
    let mut extra: Option<TcpStream> = None;
    let now = || Instant::now().into_std();
    session.handle(now(), Input::Start);
    loop {
        while let Some(action) = session.poll_action() {
            match action {
                Action::Connect => {
                    connecting = Some(Box::pin(connect(config.clone(), listener.clone())));
                }
                Action::Send(bytes) => {
                    if let Some((write, _, _)) = &mut conn
                        && let Err(e) = write.write_all(&bytes).await
                    {
                        debug!(error = %e, "BGP write failed");
                    }
                }
                Action::RefuseIncoming(bytes) => {
                    if let Some(mut stream) = extra.take() {
                        let _ = stream.write_all(&bytes).await;
                        let _ = stream.shutdown().await;
                    }
                }
                Action::Close => {
                    if let Some((mut write, reader, _)) = conn.take() {
                        reader.abort();
                        let _ = write.shutdown().await;
                    }
                    connecting = None;
                }
                Action::Publish(entries) => views.publish(entries, built_tx.clone()),
                Action::MarkStale => views.mark_stale(),
                Action::Log(event) => log_event(&config, &event),
            }
        }
        if shutdown.is_cancelled() && session.state() == State::Idle {
            return;
        }
        let deadline = session.poll_timeout();
        let passive_listener = match (&config.mode, &listener, &conn) {
            (BgpMode::Passive(_), Some(l), Some(_)) => Some(l.clone()),
            _ => None,
        };
        let input = tokio::select! {
            done = async { connecting.as_mut().expect("guarded").await }, if connecting.is_some() => {
                connecting = None;
                match done {
                    Ok(stream) => {
                        let _ = stream.set_nodelay(true);
                        serial += 1;
                        let (mut rd, write) = stream.into_split();
                        let (tx, id) = (read_tx.clone(), serial);
                        let reader = tokio::spawn(async move {
                            loop {
                                let item = read_message(&mut rd).await;
                                let last = !matches!(item, Read::Message(..));
                                if tx.send((id, item)).await.is_err() || last {
                                    return;
                                }
                            }
                        });
                        conn = Some((write, reader, serial));
                        Input::Connected
                    }
                    Err(e) => Input::ConnectFailed(e.to_string()),
                }
            }
            item = read_rx.recv() => match item {
                Some((id, _)) if conn.as_ref().is_none_or(|c| c.2 != id) => continue,
                Some((_, Read::Message(kind, body))) => Input::Message(kind, body),
                Some((_, Read::Bad(n))) => Input::BadHeader(n),
                Some((_, Read::Closed(why))) => Input::Closed(why),
                None => return,
            },
            accepted = async { passive_listener.as_ref().expect("guarded").accept().await }, if passive_listener.is_some() => {
                match accepted {
                    Ok((stream, from)) if is_peer(&config, from) => {
                        extra = Some(stream);
                        Input::Incoming
                    }
                    Ok((stream, from)) => {
                        reject_stranger(stream, from, &config).await;
                        continue;
                    }
                    Err(e) => {
                        debug!(error = %e, "BGP accept failed");
                        continue;
                    }
                }
            }
            Some(()) = built_rx.recv() => Input::Published,
            () = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            } => {
                session.handle_timeout(now());
                continue;
            }
            () = shutdown.cancelled() => {
                if session.state() == State::Idle {
                    return;
                }
                Input::Stop
            }
        };
        session.handle(now(), input);
    }
}

fn is_peer(config: &BgpConfig, from: SocketAddr) -> bool {
    from.ip().to_canonical() == config.peer.to_canonical()
}

async fn reject_stranger(mut stream: TcpStream, from: SocketAddr, config: &BgpConfig) {
    warn!(from = %from, peer = %config.peer, "BGP connection from a stranger refused");
    let cease = Notification::new(err::CEASE, err::CONNECTION_REJECTED);
    let _ = stream.write_all(&cease.encode()).await;
    let _ = stream.shutdown().await;
}

/// The next TCP connection with the peer: dialled (active), or accepted from it (passive;
/// strangers are refused and logged).
async fn connect(
    config: BgpConfig,
    listener: Option<Arc<TcpListener>>,
) -> std::io::Result<TcpStream> {
    match (config.mode, listener) {
        (BgpMode::Active, _) => {
            let addr = SocketAddr::new(config.peer, config.peer_port);
            tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
                .await
                .map_err(|_| {
                    std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out")
                })?
        }
        (BgpMode::Passive(_), Some(listener)) => loop {
            let (stream, from) = listener.accept().await?;
            if is_peer(&config, from) {
                return Ok(stream);
            }
            reject_stranger(stream, from, &config).await;
        },
        (BgpMode::Passive(addr), None) => Err(std::io::Error::other(format!(
            "passive BGP without a listener on {addr}"
        ))),
    }
}

/// Reads one framed message.
async fn read_message(rd: &mut (impl tokio::io::AsyncRead + Unpin)) -> Read {
    let mut header = [0u8; wire::HEADER_LEN];
    if let Err(e) = rd.read_exact(&mut header).await {
        return Read::Closed(match e.kind() {
            std::io::ErrorKind::UnexpectedEof => "connection closed".to_owned(),
            _ => e.to_string(),
        });
    }
    let (kind, len) = match wire::header(&header) {
        Ok(h) => h,
        Err(n) => return Read::Bad(n),
    };
    let mut body = vec![0u8; len - wire::HEADER_LEN];
    if let Err(e) = rd.read_exact(&mut body).await {
        return Read::Closed(format!("connection lost inside a message: {e}"));
    }
    Read::Message(kind, body)
}

/// Builds and hands views to the node, in order, on the builder thread.
struct Views {
    source: String,
    builder: Builder,
    publish: Publish,
    /// The view last handed over (set by the build that handed it).
    last: Arc<Mutex<Option<Arc<RouteView>>>>,
    /// Stale since (unix ms), while the source is not current.
    stale_since_ms: Option<u64>,
}

impl Views {
    /// Builds a view of `entries` and publishes it; `built` is told when it is done.
    fn publish(&mut self, entries: Vec<(IpNet, Box<[u32]>)>, built: mpsc::Sender<()>) {
        self.stale_since_ms = None;
        let (publish, source, last) =
            (self.publish.clone(), self.source.clone(), self.last.clone());
        drop(self.builder.run(move || {
            let view = Arc::new(RouteView::new(entries));
            // INVARIANT: the lock is held for an assignment only and never across a panic.
            *last.lock().expect("view lock poisoned") = Some(view.clone());
            publish(OwnView {
                view: Some(view),
                source,
                stale_since_ms: None,
            });
            let _ = built.try_send(());
        }));
    }

    /// Publishes the last view again, marked stale since now (once per outage), after the
    /// builds already asked for.
    fn mark_stale(&mut self) {
        if self.stale_since_ms.is_some() {
            return;
        }
        let now = crate::clock::unix_ms();
        self.stale_since_ms = Some(now);
        let (publish, source, last) =
            (self.publish.clone(), self.source.clone(), self.last.clone());
        drop(self.builder.run(move || {
            // INVARIANT: see `publish`.
            let view = last.lock().expect("view lock poisoned").clone();
            if let Some(view) = view {
                publish(OwnView {
                    view: Some(view),
                    source,
                    stale_since_ms: Some(now),
                });
            }
        }));
    }
}

fn log_event(config: &BgpConfig, event: &Event) {
    match event {
        Event::Established(n) => info!(
            peer = %config.peer,
            peer_asn = config.peer_asn,
            peer_id = %n.peer_id,
            hold_time = n.hold_time,
            four_octet = n.four_octet,
            families = ?n.families,
            "BGP session established"
        ),
        Event::Ended {
            end,
            state,
            retry_in,
        } => {
            let connecting = matches!(state, State::Connect | State::Active);
            let state = format!("{state:?}");
            match end {
                End::Stopped => info!(peer = %config.peer, "BGP session closed: node stopping"),
                End::Received(n) => {
                    warn!(peer = %config.peer, notification = %n, state, retry_in = ?retry_in, "BGP session closed by the peer");
                }
                End::Sent(n) => {
                    warn!(peer = %config.peer, notification = %n, state, retry_in = ?retry_in, "BGP session reset");
                }
                End::Closed(why) if connecting => {
                    debug!(peer = %config.peer, reason = %why, retry_in = ?retry_in, "BGP connection failed");
                }
                End::Closed(why) => {
                    warn!(peer = %config.peer, reason = %why, state, retry_in = ?retry_in, "BGP session lost");
                }
            }
        }
        Event::Synced { routes, markers } => {
            if *markers {
                info!(routes, "BGP initial table complete (End-of-RIB)");
            } else {
                info!(routes, "BGP initial table complete (no End-of-RIB)");
            }
        }
        Event::TreatAsWithdraw { reason, prefixes } => warn!(
            peer = %config.peer,
            reason = %reason,
            prefixes,
            "malformed UPDATE treated as withdrawal (RFC 7606)"
        ),
        Event::MaxPrefixes { limit, hold: false } => warn!(
            peer = %config.peer,
            limit,
            "BGP peer sent more prefixes than max_prefixes: session refused; the last view stays, stale"
        ),
        Event::MaxPrefixes { limit, hold: true } => warn!(
            peer = %config.peer,
            limit,
            "BGP peer sent more prefixes than max_prefixes: new prefixes ignored until some are withdrawn"
        ),
        Event::CollisionRefused => {
            warn!(peer = %config.peer, "second BGP connection from the peer refused (collision)");
        }
        Event::EndOfRib(family) => debug!(%family, "End-of-RIB"),
    }
}
