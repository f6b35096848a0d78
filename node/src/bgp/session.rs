//! [E] The BGP session with the POP's router, over TCP, for as long as the node runs.
//!
//! States as RFC 4271 §8 has them, minus what a speaker that never announces needs not:
//! connect (active) or accept from the configured peer only (passive), OpenSent, OpenConfirm,
//! Established. A session that ends (the peer's NOTIFICATION, a malformed message answered
//! with ours, hold timer expiry, a closed connection) is re-established after a backoff that
//! starts at `retry_min` and doubles up to `retry_max`; it starts over from `retry_min` once
//! a session has reached Established.
//!
//! Views: each session has its own [`Rib`]. Its first view is published once the peer's
//! initial table is in (End-of-RIB for every family, when the peer sent the graceful restart
//! capability that promises them; otherwise after [`SYNC_QUIET`] without an UPDATE), so a
//! reconnection never publishes a half-sent table. After that a changed RIB is published at
//! most every `publish_interval`. Views are built on the view builder thread
//! ([`crate::viewsource::background`], lower CPU priority than DNS), one at a time, and the
//! callback runs there too (it rebuilds the node's decision tables). When a session ends, the
//! last view stays and is published again marked stale (since when), until a new session has
//! synced.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::sync::oneshot;
use tokio::time::{Instant, sleep, sleep_until};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::rib::Rib;
use super::wire::{self, LocalOpen, Negotiated, Notification, err};
use crate::config::{BgpConfig, BgpMode};
use crate::routes::{OwnView, RouteView};
use crate::viewsource::background;

/// Hold time before the peer's OPEN has told us its own (RFC 4271 §8.2.2 suggests 4 minutes).
const OPEN_HOLD: Duration = Duration::from_secs(240);
/// Time given to a TCP connection attempt.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Without End-of-RIB markers, the initial table counts as complete after this long without
/// an UPDATE.
pub const SYNC_QUIET: Duration = Duration::from_secs(3);
/// The longest wait for End-of-RIB markers before the table counts as complete anyway.
pub const SYNC_TIMEOUT: Duration = Duration::from_secs(300);
/// Messages read ahead of the session loop.
const READ_AHEAD: usize = 64;

/// The callback that receives views.
pub type Publish = Arc<dyn Fn(OwnView) + Send + Sync>;

/// Runs the session until `shutdown`. `listener` is the bound socket in passive mode.
pub async fn run(
    config: BgpConfig,
    own_asn: u32,
    source: String,
    listener: Option<TcpListener>,
    publish: Publish,
    shutdown: CancellationToken,
) {
    let mut publisher = Publisher::new(source, publish);
    let mut backoff = config.retry_min;
    loop {
        let stream = tokio::select! {
            s = connection(&config, listener.as_ref()) => s,
            () = shutdown.cancelled() => return,
        };
        match stream {
            Ok(stream) => {
                let peer = stream.peer_addr().ok();
                let mut session = Session {
                    config: &config,
                    own_asn,
                    publisher: &mut publisher,
                    established: false,
                };
                let end = session.run(stream, &shutdown).await;
                let established = session.established;
                publisher.mark_stale().await;
                match &end {
                    End::Shutdown => return,
                    End::Received(n) => {
                        warn!(?peer, notification = %n, "BGP session closed by the peer")
                    }
                    End::Sent(n) => warn!(?peer, notification = %n, "BGP session reset"),
                    End::Closed(why) => warn!(?peer, reason = %why, "BGP session lost"),
                }
                if established {
                    backoff = config.retry_min;
                }
            }
            Err(e) => {
                publisher.mark_stale().await;
                debug!(peer = %config.peer, error = %e, "BGP connection failed");
            }
        }
        info!(peer = %config.peer, retry_in = ?backoff, "BGP session down; retrying");
        tokio::select! {
            () = sleep(backoff) => {}
            () = shutdown.cancelled() => return,
        }
        backoff = (backoff * 2).min(config.retry_max);
    }
}

/// The next TCP connection with the peer.
async fn connection(
    config: &BgpConfig,
    listener: Option<&TcpListener>,
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
            let (mut stream, from) = listener.accept().await?;
            if from.ip().to_canonical() == config.peer.to_canonical() {
                return Ok(stream);
            }
            warn!(from = %from, peer = %config.peer, "BGP connection from a stranger refused");
            let cease = Notification::new(err::CEASE, err::CONNECTION_REJECTED);
            let _ = stream.write_all(&cease.encode()).await;
        },
        (BgpMode::Passive(addr), None) => Err(std::io::Error::other(format!(
            "passive BGP without a listener on {addr}"
        ))),
    }
}

/// How a session ended.
enum End {
    /// The node is shutting down (a Cease was sent).
    Shutdown,
    /// The peer sent this NOTIFICATION.
    Received(Notification),
    /// We sent this NOTIFICATION.
    Sent(Notification),
    /// The connection closed or failed.
    Closed(String),
}

/// A message read off the connection, or why reading stopped.
enum Incoming {
    Message(u8, Vec<u8>),
    Bad(Notification),
    Closed(String),
}

struct Session<'a> {
    config: &'a BgpConfig,
    own_asn: u32,
    publisher: &'a mut Publisher,
    established: bool,
}

impl Session<'_> {
    async fn run(&mut self, stream: TcpStream, shutdown: &CancellationToken) -> End {
        let _ = stream.set_nodelay(true);
        let (mut rd, mut wr) = stream.into_split();
        let (tx, mut rx) = mpsc::channel(READ_AHEAD);
        let reader = tokio::spawn(async move {
            loop {
                let item = read_message(&mut rd).await;
                let last = !matches!(item, Incoming::Message(..));
                if tx.send(item).await.is_err() || last {
                    return;
                }
            }
        });
        let end = self.exchange(&mut wr, &mut rx, shutdown).await;
        reader.abort();
        if let End::Sent(n) | End::Received(n) = &end {
            debug!(notification = ?n, "session end");
        }
        let _ = wr.shutdown().await;
        end
    }

    async fn exchange(
        &mut self,
        wr: &mut OwnedWriteHalf,
        rx: &mut mpsc::Receiver<Incoming>,
        shutdown: &CancellationToken,
    ) -> End {
        let local = LocalOpen {
            asn: self.config.local_asn,
            hold_time: self.config.hold_time,
            router_id: self.config.router_id,
        };
        if let Err(e) = wr.write_all(&local.encode()).await {
            return End::Closed(format!("cannot send OPEN: {e}"));
        }
        // OpenSent: the peer's OPEN.
        let deadline = Instant::now() + OPEN_HOLD;
        let negotiated = match next(rx, deadline, shutdown).await {
            Next::Message(wire::OPEN, body) => {
                match wire::Open::parse(&body)
                    .and_then(|open| wire::negotiate(&open, &local, self.config.peer_asn))
                {
                    Ok(n) => n,
                    Err(n) => return send(wr, n).await,
                }
            }
            Next::Message(_, _) => {
                return send(wr, Notification::new(err::FSM, 1)).await;
            }
            other => return self.end_of(wr, other).await,
        };
        if let Err(e) = wr.write_all(&wire::keepalive()).await {
            return End::Closed(format!("cannot send KEEPALIVE: {e}"));
        }
        // OpenConfirm: the peer's KEEPALIVE.
        let hold = Duration::from_secs(u64::from(negotiated.hold_time));
        let deadline = Instant::now() + if hold.is_zero() { OPEN_HOLD } else { hold };
        match next(rx, deadline, shutdown).await {
            Next::Message(wire::KEEPALIVE, _) => {}
            Next::Message(_, _) => {
                return send(wr, Notification::new(err::FSM, err::FSM_IN_OPEN_CONFIRM)).await;
            }
            other => return self.end_of(wr, other).await,
        }
        self.established = true;
        info!(
            peer = %self.config.peer,
            peer_asn = self.config.peer_asn,
            peer_id = %negotiated.peer_id,
            hold_time = negotiated.hold_time,
            four_octet = negotiated.four_octet,
            families = ?negotiated.families,
            "BGP session established"
        );
        self.established(wr, rx, shutdown, &negotiated).await
    }

    async fn established(
        &mut self,
        wr: &mut OwnedWriteHalf,
        rx: &mut mpsc::Receiver<Incoming>,
        shutdown: &CancellationToken,
        negotiated: &Negotiated,
    ) -> End {
        let hold = Duration::from_secs(u64::from(negotiated.hold_time));
        let far = Duration::from_secs(86_400 * 365);
        let mut hold_deadline = Instant::now() + if hold.is_zero() { far } else { hold };
        let keepalive_every = if hold.is_zero() { far } else { hold / 3 };
        let mut keepalive =
            tokio::time::interval_at(Instant::now() + keepalive_every, keepalive_every);
        let mut publish = tokio::time::interval(self.config.publish_interval);
        publish.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let started = Instant::now();
        let mut last_update = started;
        let mut rib = Rib::new(self.own_asn);
        let mut synced = false;
        let mut dirty = false;
        loop {
            tokio::select! {
                item = rx.recv() => {
                    let (kind, body) = match item {
                        Some(Incoming::Message(kind, body)) => (kind, body),
                        Some(Incoming::Bad(n)) => return send(wr, n).await,
                        Some(Incoming::Closed(why)) => return self.closed(&rib, synced, dirty, why).await,
                        None => return self.closed(&rib, synced, dirty, "reader stopped".to_owned()).await,
                    };
                    if !hold.is_zero() {
                        hold_deadline = Instant::now() + hold;
                    }
                    match kind {
                        wire::KEEPALIVE | wire::ROUTE_REFRESH => {}
                        wire::UPDATE => {
                            let update = match wire::parse_update(&body, negotiated.four_octet) {
                                Ok(u) => u,
                                Err(n) => return send(wr, n).await,
                            };
                            if let Some(why) = &update.treat_as_withdraw {
                                warn!(
                                    peer = %self.config.peer,
                                    reason = %why,
                                    prefixes = update.withdrawn.len(),
                                    "malformed UPDATE treated as withdrawal (RFC 7606)"
                                );
                            }
                            let applied = rib.apply(&update);
                            dirty |= applied.announced + applied.withdrawn > 0;
                            last_update = Instant::now();
                            if let Some(family) = update.end_of_rib {
                                debug!(%family, routes = rib.len(), "End-of-RIB");
                                if !synced && rib.complete(&negotiated.families) {
                                    synced = true;
                                    info!(routes = rib.len(), "BGP initial table complete (End-of-RIB)");
                                    dirty = !self.publisher.publish(&rib);
                                }
                            }
                        }
                        wire::NOTIFICATION => return End::Received(Notification::parse(&body)),
                        _ => {
                            let n = Notification::new(err::FSM, err::FSM_IN_ESTABLISHED);
                            return send(wr, n).await;
                        }
                    }
                }
                () = sleep_until(hold_deadline) => {
                    let _ = self.closed(&rib, synced, dirty, String::new()).await;
                    return send(wr, Notification::new(err::HOLD_TIMER, 0)).await;
                }
                _ = keepalive.tick() => {
                    if let Err(e) = wr.write_all(&wire::keepalive()).await {
                        return self.closed(&rib, synced, dirty, format!("cannot send KEEPALIVE: {e}")).await;
                    }
                }
                _ = publish.tick() => {
                    if !synced {
                        let quiet = !negotiated.end_of_rib && last_update.elapsed() >= SYNC_QUIET;
                        if quiet || started.elapsed() >= SYNC_TIMEOUT {
                            synced = true;
                            info!(routes = rib.len(), "BGP initial table complete (no End-of-RIB)");
                            dirty = true;
                        }
                    }
                    if synced && dirty {
                        dirty = !self.publisher.publish(&rib);
                    }
                }
                () = shutdown.cancelled() => {
                    let _ = send(wr, Notification::new(err::CEASE, err::ADMIN_SHUTDOWN)).await;
                    return End::Shutdown;
                }
            }
        }
    }

    /// The connection is gone: a synced RIB with unpublished changes is the last good view.
    async fn closed(&mut self, rib: &Rib, synced: bool, dirty: bool, why: String) -> End {
        if synced && dirty {
            self.publisher.wait().await;
            self.publisher.publish(rib);
        }
        End::Closed(why)
    }

    async fn end_of(&mut self, wr: &mut OwnedWriteHalf, next: Next) -> End {
        match next {
            Next::Message(..) => End::Closed("unexpected message".to_owned()),
            Next::Bad(n) => send(wr, n).await,
            Next::Closed(why) => End::Closed(why),
            Next::Expired => send(wr, Notification::new(err::HOLD_TIMER, 0)).await,
            Next::Shutdown => {
                let _ = send(wr, Notification::new(err::CEASE, err::ADMIN_SHUTDOWN)).await;
                End::Shutdown
            }
        }
    }
}

enum Next {
    Message(u8, Vec<u8>),
    Bad(Notification),
    Closed(String),
    Expired,
    Shutdown,
}

/// The next message before `deadline`.
async fn next(
    rx: &mut mpsc::Receiver<Incoming>,
    deadline: Instant,
    shutdown: &CancellationToken,
) -> Next {
    tokio::select! {
        item = rx.recv() => match item {
            Some(Incoming::Message(kind, body)) if kind == wire::NOTIFICATION => {
                Next::Closed(format!("peer sent {}", Notification::parse(&body)))
            }
            Some(Incoming::Message(kind, body)) => Next::Message(kind, body),
            Some(Incoming::Bad(n)) => Next::Bad(n),
            Some(Incoming::Closed(why)) => Next::Closed(why),
            None => Next::Closed("reader stopped".to_owned()),
        },
        () = sleep_until(deadline) => Next::Expired,
        () = shutdown.cancelled() => Next::Shutdown,
    }
}

/// Sends `n` and ends the session with it.
async fn send(wr: &mut OwnedWriteHalf, n: Notification) -> End {
    let _ = wr.write_all(&n.encode()).await;
    End::Sent(n)
}

/// Reads one framed message.
async fn read_message(rd: &mut (impl tokio::io::AsyncRead + Unpin)) -> Incoming {
    let mut header = [0u8; wire::HEADER_LEN];
    if let Err(e) = rd.read_exact(&mut header).await {
        return Incoming::Closed(match e.kind() {
            std::io::ErrorKind::UnexpectedEof => "connection closed".to_owned(),
            _ => e.to_string(),
        });
    }
    let (kind, len) = match wire::header(&header) {
        Ok(h) => h,
        Err(n) => return Incoming::Bad(n),
    };
    let mut body = vec![0u8; len - wire::HEADER_LEN];
    if let Err(e) = rd.read_exact(&mut body).await {
        return Incoming::Closed(format!("connection lost inside a message: {e}"));
    }
    Incoming::Message(kind, body)
}

/// Hands views to the node: one build at a time, stale marking, source string.
struct Publisher {
    source: String,
    publish: Publish,
    /// The view last handed over (set by the build that handed it).
    last: Arc<Mutex<Option<Arc<RouteView>>>>,
    stale_since_ms: Option<u64>,
    building: Option<oneshot::Receiver<()>>,
}

impl Publisher {
    fn new(source: String, publish: Publish) -> Self {
        Self {
            source,
            publish,
            last: Arc::new(Mutex::new(None)),
            stale_since_ms: None,
            building: None,
        }
    }

    /// Starts publishing the RIB as the current view, unless a build is still running;
    /// returns whether it started.
    fn publish(&mut self, rib: &Rib) -> bool {
        if let Some(b) = &mut self.building
            && matches!(b.try_recv(), Err(oneshot::error::TryRecvError::Empty))
        {
            return false;
        }
        self.stale_since_ms = None;
        let entries = rib.entries();
        let (publish, source, last) =
            (self.publish.clone(), self.source.clone(), self.last.clone());
        self.building = Some(background(move || {
            let view = Arc::new(RouteView::new(entries));
            // INVARIANT: the lock is held for an assignment only and never across a panic.
            *last.lock().expect("view lock poisoned") = Some(view.clone());
            publish(OwnView {
                view: Some(view),
                source,
                stale_since_ms: None,
            });
        }));
        true
    }

    /// Waits for a running build.
    async fn wait(&mut self) {
        if let Some(b) = self.building.take() {
            let _ = b.await;
        }
    }

    /// Publishes the last view again, marked stale since now (or since it first went stale).
    async fn mark_stale(&mut self) {
        self.wait().await;
        if self.stale_since_ms.is_some() {
            return;
        }
        // INVARIANT: see `publish`.
        let Some(view) = self.last.lock().expect("view lock poisoned").clone() else {
            return;
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        self.stale_since_ms = Some(now);
        let (publish, source) = (self.publish.clone(), self.source.clone());
        let _ = background(move || {
            publish(OwnView {
                view: Some(view),
                source,
                stale_since_ms: Some(now),
            });
        })
        .await;
    }
}
