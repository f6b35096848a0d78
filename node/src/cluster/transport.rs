//! [E] chitchat's `Transport` over QUIC, one gossip link at a time: every gossip message
//! travels in a mutually authenticated QUIC connection (see [`super::tls`]), one
//! unidirectional stream per message.
//!
//! Gossip is built for lossy datagrams, and this transport keeps that contract: `send`
//! never waits for a peer. Each link has a sender task with a small queue that dials its
//! peer, checks that the server is certified as that peer, reconnects with backoff and drops
//! messages when the peer is slow or unreachable, as the network would. A node's outgoing
//! connections leave from the endpoint bound to its cluster address, so the address a
//! connection arrives from is the sender's cluster address.
//!
//! The endpoint's accept loop ([`super::endpoint`]) authenticates peers; a gossip peer that
//! sends a message that does not decode or is too large is disconnected and logged, and
//! nothing it sent reaches chitchat. [`Faults`] injects cuts, loss and delay for tests and
//! simulations.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_trait::async_trait;
use chitchat::transport::{Socket, Transport};
use chitchat::{ChitchatMessage, Deserializable, Serializable};
use tokio::sync::{mpsc, watch};
use tracing::{debug, warn};

use crate::pki::Identity;

/// Largest gossip message accepted (chitchat's own bound for a UDP datagram).
pub const MAX_MESSAGE: usize = 65_507;
/// Messages queued per peer before new ones are dropped.
pub const PEER_QUEUE: usize = 64;
/// Messages received from a peer and not yet taken by its link before new ones are dropped.
pub const RECV_QUEUE: usize = 256;
/// Server name sent in the handshake; peers are checked by identity, not by name.
const SERVER_NAME: &str = "sparrow-node";
/// Longest wait for a QUIC handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Connection error code for a peer refused after the handshake.
pub(crate) const REFUSED: u32 = 1;
/// Connection error code for a peer that sent a bad message.
pub(crate) const BAD_MESSAGE: u32 = 2;

/// Counters of what the transport moved (for metrics).
#[derive(Debug, Default)]
pub struct TransportStats {
    /// Bytes of gossip sent.
    pub bytes_sent: std::sync::atomic::AtomicU64,
    /// Bytes of gossip received and accepted.
    pub bytes_received: std::sync::atomic::AtomicU64,
    /// Peers refused at or after the handshake.
    pub peers_refused: std::sync::atomic::AtomicU64,
    /// UDP payload bytes of the QUIC datagrams sent on gossip connections (both the
    /// connections this node dialled and those it accepted): gossip's cost on the wire,
    /// handshakes, acknowledgements and retransmissions included.
    pub wire_bytes_sent: std::sync::atomic::AtomicU64,
}

/// Adds what `conn` sent on the wire since `seen` (its last reading) to `stats`.
fn count_wire(conn: &quinn::Connection, seen: &mut u64, stats: &TransportStats) {
    let now = conn.stats().udp_tx.bytes;
    stats.wire_bytes_sent.fetch_add(
        now.saturating_sub(*seen),
        std::sync::atomic::Ordering::Relaxed,
    );
    *seen = now;
}

/// Fault injection at the transport, for partition tests and simulations: cuts (both ways
/// or one way), random loss of gossip messages (to every peer or per peer) and added delay
/// per peer. Empty unless a test or a simulation fills it; a node in production never does.
#[derive(Clone, Debug, Default)]
pub struct Faults(Arc<std::sync::Mutex<FaultState>>);

#[derive(Debug, Default)]
struct FaultState {
    /// Messages to these peers are dropped.
    to: std::collections::HashSet<SocketAddr>,
    /// Messages from these peers are dropped.
    from: std::collections::HashSet<SocketAddr>,
    /// Share of gossip messages sent that are dropped, 0.0 to 1.0.
    loss: f64,
    /// State of the generator behind `loss` (SplitMix64).
    rng: u64,
    /// Share of gossip messages to each of these peers that are dropped, on top of `loss`.
    peer_loss: HashMap<SocketAddr, f64>,
    /// Delay (and jitter, plus or minus) added to gossip messages to each of these peers.
    delay: HashMap<SocketAddr, (Duration, Duration)>,
}

impl FaultState {
    /// The next number of the generator, uniform in [0, 1).
    fn next_unit(&mut self) -> f64 {
        // SplitMix64: a tiny, seedable generator is all loss and jitter need.
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

impl Faults {
    fn with<R>(&self, f: impl FnOnce(&mut FaultState) -> R) -> R {
        // INVARIANT: the lock is never held across an await or a panic.
        f(&mut self.0.lock().expect("fault state lock poisoned"))
    }

    /// Cuts (or, with `false`, restores) traffic with `peer`, both ways.
    pub fn cut(&self, peer: SocketAddr, cut: bool) {
        self.cut_to(peer, cut);
        self.cut_from(peer, cut);
    }

    /// Cuts (or restores) traffic from this node to `peer` only: one half of an asymmetric
    /// partition.
    pub fn cut_to(&self, peer: SocketAddr, cut: bool) {
        self.with(|s| toggle(&mut s.to, peer, cut));
    }

    /// Cuts (or restores) traffic from `peer` to this node only.
    pub fn cut_from(&self, peer: SocketAddr, cut: bool) {
        self.with(|s| toggle(&mut s.from, peer, cut));
    }

    /// Drops this share (0.0 to 1.0) of the gossip messages this node sends, at random from
    /// `seed`, as a lossy network would.
    pub fn set_loss(&self, share: f64, seed: u64) {
        self.with(|s| {
            s.loss = share.clamp(0.0, 1.0);
            s.rng = seed;
        });
    }

    /// Whether traffic with `peer` is cut in either direction (a QUIC exchange needs both).
    pub fn is_cut(&self, peer: SocketAddr) -> bool {
        self.with(|s| s.to.contains(&peer) || s.from.contains(&peer))
    }

    /// Drops this share (0.0 to 1.0; 0 ends it) of the gossip messages to `peer` only, on
    /// top of [`Faults::set_loss`], drawn from the same seeded generator: loss on one link.
    pub fn set_peer_loss(&self, peer: SocketAddr, share: f64) {
        self.with(|s| {
            if share > 0.0 {
                s.peer_loss.insert(peer, share.min(1.0));
            } else {
                s.peer_loss.remove(&peer);
            }
        });
    }

    /// Holds every gossip message to `peer` back for `delay`, plus or minus up to `jitter`
    /// (uniform, from the seeded generator), as a long or congested link would; a zero
    /// delay ends it. Messages may overtake each other under jitter, as on a real network.
    pub fn set_delay(&self, peer: SocketAddr, delay: Duration, jitter: Duration) {
        self.with(|s| {
            if delay.is_zero() {
                s.delay.remove(&peer);
            } else {
                s.delay.insert(peer, (delay, jitter.min(delay)));
            }
        });
    }

    /// Ends every fault: cuts, loss (global and per peer) and delays.
    pub fn clear(&self) {
        self.with(|s| {
            let rng = s.rng;
            *s = FaultState {
                rng,
                ..FaultState::default()
            };
        });
    }

    /// Whether the next message to `peer` is lost (cut, or unlucky under loss).
    pub fn drops_to(&self, peer: SocketAddr) -> bool {
        self.with(|s| {
            if s.to.contains(&peer) {
                return true;
            }
            let share = s.peer_loss.get(&peer).copied().unwrap_or(0.0);
            // Independent losses: the message survives both or is lost.
            let lost = 1.0 - (1.0 - s.loss) * (1.0 - share);
            lost > 0.0 && s.next_unit() < lost
        })
    }

    /// How long the next message to `peer` is held back, if its link has a delay.
    pub fn delay_to(&self, peer: SocketAddr) -> Option<Duration> {
        self.with(|s| {
            let (delay, jitter) = *s.delay.get(&peer)?;
            if jitter.is_zero() {
                return Some(delay);
            }
            let offset = jitter.as_secs_f64() * (2.0 * s.next_unit() - 1.0);
            Some(Duration::from_secs_f64(
                (delay.as_secs_f64() + offset).max(0.0),
            ))
        })
    }

    /// Whether messages from `peer` are dropped.
    pub fn drops_from(&self, peer: SocketAddr) -> bool {
        self.with(|s| s.from.contains(&peer))
    }
}

fn toggle(set: &mut std::collections::HashSet<SocketAddr>, peer: SocketAddr, on: bool) {
    if on {
        set.insert(peer);
    } else {
        set.remove(&peer);
    }
}

/// The chitchat transport of one gossip link: the link's chitchat instance talks to one
/// peer only (see [`super::mesh`]). What it sends goes to that peer's node over a QUIC
/// connection this node dials; what it receives is what that peer's own authenticated
/// connection carried, handed in by the mesh.
pub struct LinkTransport {
    socket: std::sync::Mutex<Option<LinkSocket>>,
}

impl LinkTransport {
    /// A transport sending through `sender` (the link's peer sender queue) and receiving
    /// from `inbox`.
    pub fn new(
        peer: watch::Receiver<SocketAddr>,
        sender: mpsc::Sender<Vec<u8>>,
        inbox: mpsc::Receiver<ChitchatMessage>,
        faults: Faults,
    ) -> Self {
        Self {
            socket: std::sync::Mutex::new(Some(LinkSocket {
                peer,
                sender,
                inbox,
                faults,
            })),
        }
    }
}

#[async_trait]
impl Transport for LinkTransport {
    async fn open(&self, _listen_addr: SocketAddr) -> anyhow::Result<Box<dyn Socket>> {
        // INVARIANT: the lock is held for a take only.
        let socket = self
            .socket
            .lock()
            .expect("link transport lock poisoned")
            .take()
            .context("the link transport was opened already")?;
        Ok(Box::new(socket))
    }
}

struct LinkSocket {
    /// The peer's cluster address (what the link dials; it follows the peer's moves).
    peer: watch::Receiver<SocketAddr>,
    sender: mpsc::Sender<Vec<u8>>,
    inbox: mpsc::Receiver<ChitchatMessage>,
    faults: Faults,
}

#[async_trait]
impl Socket for LinkSocket {
    async fn send(&mut self, _to: SocketAddr, msg: ChitchatMessage) -> anyhow::Result<()> {
        // Whatever address chitchat names, a link only ever talks to its one peer.
        let peer = *self.peer.borrow();
        if self.faults.drops_to(peer) {
            return Ok(());
        }
        let mut bytes = Vec::with_capacity(msg.serialized_len());
        msg.serialize(&mut bytes);
        if let Some(delay) = self.faults.delay_to(peer) {
            // A slow link: the message joins the peer's queue later, without holding up
            // anything else.
            let queue = self.sender.clone();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                if queue.try_send(bytes).is_err() {
                    debug!(peer = %peer, "gossip queue full, delayed message dropped");
                }
            });
            return Ok(());
        }
        if self.sender.try_send(bytes).is_err() {
            debug!(peer = %peer, "gossip queue full, message dropped");
        }
        Ok(())
    }

    async fn recv(&mut self) -> anyhow::Result<(SocketAddr, ChitchatMessage)> {
        loop {
            let msg = self.inbox.recv().await.context("gossip link closed")?;
            let peer = *self.peer.borrow();
            if !self.faults.drops_from(peer) {
                return Ok((peer, msg));
            }
        }
    }
}

/// The longest a sender waits before dialling an unreachable peer again. Short, because
/// the node is blind to a peer until a connection is back: after a partition heals, a node
/// leaves local-only mode only once it hears a quorum again. A failed dial costs one QUIC
/// Initial packet.
const MAX_RECONNECT_BACKOFF: Duration = Duration::from_secs(1);

/// What a peer sender is told besides messages.
#[derive(Debug)]
pub enum SenderControl {
    /// The peer connected to us anew (it may have restarted): drop the connection held
    /// and dial again, at once.
    Redial,
    /// A connection to the peer made elsewhere (by discovery, which dialled it to learn
    /// whose address it is): used if the sender holds none, so that a new link sends at
    /// once instead of after a second handshake.
    Adopt(quinn::Connection),
    /// The peer spoke to us: if the sender is backing off after failed dials, dial again at
    /// the next message instead of waiting out the backoff. A live connection is kept.
    Wake,
}

/// Sends the messages queued for one peer, one uni stream each, over a connection it keeps
/// to the address `peer` holds. The server must be certified as `expect` (a node of the
/// cluster named so); anyone else at that address is hung up on.
pub async fn peer_sender(
    endpoint: quinn::Endpoint,
    client: quinn::ClientConfig,
    peer: watch::Receiver<SocketAddr>,
    expect: String,
    mut queue: mpsc::Receiver<Vec<u8>>,
    mut control: mpsc::Receiver<SenderControl>,
    stats: Arc<TransportStats>,
) {
    let mut conn: Option<quinn::Connection> = None;
    let mut wire_seen = 0u64;
    let mut backoff = Duration::from_millis(100);
    let mut retry_at = tokio::time::Instant::now();
    loop {
        let bytes = tokio::select! {
            m = queue.recv() => match m {
                Some(b) => b,
                None => return,
            },
            c = control.recv() => match c {
                Some(SenderControl::Redial) => {
                    if let Some(c) = conn.take() {
                        c.close(0u32.into(), b"peer reconnected");
                    }
                    retry_at = tokio::time::Instant::now();
                    backoff = Duration::from_millis(100);
                    continue;
                }
                Some(SenderControl::Adopt(c)) => {
                    let held = conn.as_ref().is_some_and(|c| c.close_reason().is_none());
                    if held || c.remote_address() != *peer.borrow() {
                        c.close(0u32.into(), b"already connected");
                    } else {
                        backoff = Duration::from_millis(100);
                        wire_seen = 0;
                        conn = Some(c);
                    }
                    continue;
                }
                Some(SenderControl::Wake) => {
                    if conn.as_ref().is_none_or(|c| c.close_reason().is_some()) {
                        retry_at = tokio::time::Instant::now();
                        backoff = Duration::from_millis(100);
                    }
                    continue;
                }
                None => return,
            },
        };
        if conn.as_ref().is_some_and(|c| c.close_reason().is_some()) {
            conn = None;
        }
        let addr = *peer.borrow();
        if conn.as_ref().is_some_and(|c| c.remote_address() != addr) {
            conn = None;
        }
        if conn.is_none() {
            if tokio::time::Instant::now() < retry_at {
                continue; // Still backing off: drop, as a lossy network would.
            }
            match connect_to(&endpoint, &client, addr, &expect).await {
                Ok(c) => {
                    backoff = Duration::from_millis(100);
                    wire_seen = 0;
                    conn = Some(c);
                }
                Err(e) => {
                    debug!(peer = %addr, node = %expect, error = %e, "cannot reach gossip peer");
                    retry_at = tokio::time::Instant::now() + backoff;
                    backoff = (backoff * 2).min(MAX_RECONNECT_BACKOFF);
                    continue;
                }
            }
        }
        let Some(c) = &conn else { continue };
        let sent = async {
            let mut stream = c.open_uni().await?;
            stream.write_all(&bytes).await?;
            stream.finish()?;
            anyhow::Ok(())
        };
        let result = sent.await;
        count_wire(c, &mut wire_seen, &stats);
        match result {
            Ok(()) => {
                stats
                    .bytes_sent
                    .fetch_add(bytes.len() as u64, std::sync::atomic::Ordering::Relaxed);
            }
            Err(e) => {
                debug!(peer = %addr, error = %e, "gossip send failed; reconnecting");
                conn = None;
            }
        }
    }
}

/// Dials `peer` on `endpoint` with `client` (which picks the protocol), within a bound.
pub(crate) async fn connect(
    endpoint: &quinn::Endpoint,
    client: &quinn::ClientConfig,
    peer: SocketAddr,
) -> anyhow::Result<quinn::Connection> {
    let connecting = endpoint.connect_with(client.clone(), peer, SERVER_NAME)?;
    Ok(tokio::time::timeout(HANDSHAKE_TIMEOUT, connecting)
        .await
        .context("handshake timed out")??)
}

/// Dials `peer` and checks that the server is certified as node `expect`.
pub(crate) async fn connect_to(
    endpoint: &quinn::Endpoint,
    client: &quinn::ClientConfig,
    peer: SocketAddr,
    expect: &str,
) -> anyhow::Result<quinn::Connection> {
    let conn = connect(endpoint, client, peer).await?;
    let name = peer_name(&conn)?;
    if name != expect {
        conn.close(REFUSED.into(), b"not the node dialled");
        anyhow::bail!("{peer} is node {name}, not {expect}");
    }
    Ok(conn)
}

/// The node name the server of `conn` is certified as (its chain and role were checked in
/// the handshake).
pub(crate) fn peer_name(conn: &quinn::Connection) -> anyhow::Result<String> {
    let chain = conn
        .peer_identity()
        .and_then(|any| {
            any.downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
                .ok()
        })
        .context("peer sent no certificate")?;
    let leaf = chain.first().context("peer sent no certificate")?;
    Ok(crate::pki::identity_of(leaf)?.name)
}

/// Streams of one gossip connection read at once: a message whose packet was lost waits
/// for its retransmission without holding up the ones behind it (gossip does not need
/// order, and head-of-line blocking under loss would look like a silent peer).
const CONCURRENT_STREAMS: usize = 16;

/// Reads the gossip messages of peer `id` from `conn` until it goes away and hands each to
/// `deliver`; a message that is too large or does not decode disconnects the peer.
pub(crate) async fn receive_gossip(
    conn: &quinn::Connection,
    id: &Identity,
    stats: &TransportStats,
    mut deliver: impl FnMut(ChitchatMessage),
) {
    use futures_util::StreamExt as _;
    let from = conn.remote_address();
    let mut wire_seen = 0u64;
    let mut reading = futures_util::stream::FuturesUnordered::new();
    let mut accepting = true;
    loop {
        tokio::select! {
            accepted = conn.accept_uni(), if accepting && reading.len() < CONCURRENT_STREAMS => {
                match accepted {
                    Ok(mut stream) => {
                        // What this side sent: acknowledgements of the peer's messages, mostly.
                        count_wire(conn, &mut wire_seen, stats);
                        reading.push(async move { stream.read_to_end(MAX_MESSAGE).await });
                    }
                    Err(e) => {
                        debug!(peer = %from, identity = %id, error = %e, "gossip connection closed");
                        accepting = false;
                    }
                }
            }
            Some(read) = reading.next() => {
                let bytes = match read {
                    Ok(b) => b,
                    Err(quinn::ReadToEndError::Read(quinn::ReadError::ConnectionLost(e))) => {
                        // The peer went away (shut down, restarted): nothing it did wrong.
                        debug!(peer = %from, identity = %id, error = %e, "gossip connection closed");
                        return;
                    }
                    Err(e) => {
                        warn!(peer = %from, identity = %id, error = %e, "oversized or broken gossip message; peer disconnected");
                        conn.close(BAD_MESSAGE.into(), b"bad message");
                        return;
                    }
                };
                let mut buf = bytes.as_slice();
                match ChitchatMessage::deserialize(&mut buf) {
                    Ok(msg) if buf.is_empty() => {
                        stats
                            .bytes_received
                            .fetch_add(bytes.len() as u64, std::sync::atomic::Ordering::Relaxed);
                        deliver(msg);
                    }
                    Ok(_) | Err(_) => {
                        warn!(peer = %from, identity = %id, len = bytes.len(), "malformed gossip message; peer disconnected");
                        conn.close(BAD_MESSAGE.into(), b"bad message");
                        return;
                    }
                }
            }
            else => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_cut_one_way_or_both_and_lose_the_share_asked_for() {
        let f = Faults::default();
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        assert!(!f.drops_to(a) && !f.drops_from(a) && !f.is_cut(a));
        f.cut_to(a, true);
        assert!(f.drops_to(a) && !f.drops_from(a) && f.is_cut(a));
        f.cut_to(a, false);
        f.cut_from(a, true);
        assert!(!f.drops_to(a) && f.drops_from(a) && f.is_cut(a));
        f.cut(a, false);
        assert!(!f.is_cut(a));
        f.set_loss(0.2, 42);
        let lost = (0..100_000).filter(|_| f.drops_to(a)).count();
        assert!((19_000..21_000).contains(&lost), "{lost}");
        // The same seed loses the same messages.
        let pattern = |seed| {
            f.set_loss(0.5, seed);
            (0..64).map(|_| f.drops_to(a)).collect::<Vec<_>>()
        };
        assert_eq!(pattern(7), pattern(7));
        assert_ne!(pattern(7), pattern(8));
        f.set_loss(0.0, 0);
        assert!((0..1000).all(|_| !f.drops_to(a)));
    }

    #[test]
    fn faults_lose_and_delay_per_peer_and_clear_ends_everything() {
        let f = Faults::default();
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:2".parse().unwrap();
        f.set_loss(0.0, 9);
        f.set_peer_loss(a, 0.3);
        let lost_a = (0..100_000).filter(|_| f.drops_to(a)).count();
        let lost_b = (0..100_000).filter(|_| f.drops_to(b)).count();
        assert!((29_000..31_000).contains(&lost_a), "{lost_a}");
        assert_eq!(lost_b, 0);
        // Global and per-peer loss combine as independent losses: 1 - 0.8 * 0.7 = 0.44.
        f.set_loss(0.2, 9);
        let lost = (0..100_000).filter(|_| f.drops_to(a)).count();
        assert!((43_000..45_000).contains(&lost), "{lost}");
        assert_eq!(f.delay_to(a), None);
        f.set_delay(a, Duration::from_millis(50), Duration::ZERO);
        assert_eq!(f.delay_to(a), Some(Duration::from_millis(50)));
        assert_eq!(f.delay_to(b), None);
        f.set_delay(a, Duration::from_millis(50), Duration::from_millis(10));
        let delays: Vec<Duration> = (0..1000).filter_map(|_| f.delay_to(a)).collect();
        assert_eq!(delays.len(), 1000);
        assert!(delays.iter().all(|d| (40..=60).contains(&d.as_millis())));
        assert!(
            delays.iter().any(|d| d.as_millis() < 45) && delays.iter().any(|d| d.as_millis() > 55)
        );
        f.cut(b, true);
        f.clear();
        assert!(!f.is_cut(b) && f.delay_to(a).is_none());
        assert!((0..1000).all(|_| !f.drops_to(a) && !f.drops_to(b)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_delayed_link_holds_messages_back_and_other_links_are_not_slowed() {
        let faults = Faults::default();
        let b: SocketAddr = "127.0.0.1:2".parse().unwrap();
        let c: SocketAddr = "127.0.0.1:3".parse().unwrap();
        let open = |peer: SocketAddr| {
            let (_addr_tx, addr_rx) = watch::channel(peer);
            let (queue_tx, queue_rx) = mpsc::channel(PEER_QUEUE);
            let (_inbox_tx, inbox_rx) = mpsc::channel(RECV_QUEUE);
            let t = LinkTransport::new(addr_rx, queue_tx, inbox_rx, faults.clone());
            (t, queue_rx, _addr_tx, _inbox_tx)
        };
        let (to_b, mut b_queue, _b_addr, _b_inbox) = open(b);
        let (to_c, mut c_queue, _c_addr, _c_inbox) = open(c);
        let mut b_sock = to_b.open(b).await.unwrap();
        let mut c_sock = to_c.open(c).await.unwrap();
        assert!(to_b.open(b).await.is_err(), "a link opens once");
        faults.set_delay(b, Duration::from_millis(1000), Duration::ZERO);
        let sent = tokio::time::Instant::now();
        // Whatever address chitchat names, a link sends to its peer only.
        b_sock.send(c, ChitchatMessage::BadCluster).await.unwrap();
        c_sock.send(b, ChitchatMessage::BadCluster).await.unwrap();
        assert!(c_queue.recv().await.is_some());
        assert_eq!(
            sent.elapsed(),
            Duration::ZERO,
            "the other link is not slowed"
        );
        assert!(b_queue.try_recv().is_err());
        assert!(b_queue.recv().await.is_some());
        assert_eq!(sent.elapsed(), Duration::from_millis(1000));
        // A cut link sends nothing and hears nothing.
        faults.cut(c, true);
        c_sock.send(c, ChitchatMessage::BadCluster).await.unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(c_queue.try_recv().is_err());
    }
}
