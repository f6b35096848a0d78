//! [E] chitchat's `Transport` over QUIC: every gossip message travels in a mutually
//! authenticated QUIC connection (see [`super::tls`]), one unidirectional stream per message.
//!
//! Gossip is built for lossy datagrams, and this transport keeps that contract: `send`
//! never waits for a peer. Each peer gets a task with a small queue that dials, reconnects
//! with backoff and drops messages when the peer is slow or unreachable, as the network
//! would. A node's outgoing connections leave from the endpoint bound to its gossip address,
//! so the address a message arrives from is the sender's gossip address, which is what
//! chitchat replies to.
//!
//! The endpoint's accept loop ([`super::endpoint`]) authenticates peers; a gossip peer that
//! sends a message that does not decode or is too large is disconnected and logged, and
//! nothing it sent reaches chitchat.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_trait::async_trait;
use chitchat::transport::{Socket, Transport};
use chitchat::{ChitchatMessage, Deserializable, Serializable};
use tokio::sync::{Mutex, mpsc};
use tracing::{debug, warn};

use super::tls::{ALPN_GOSSIP, ClusterTls};
use crate::pki::Identity;

/// Largest gossip message accepted (chitchat's own bound for a UDP datagram).
pub const MAX_MESSAGE: usize = 65_507;
/// Messages queued per peer before new ones are dropped.
const PEER_QUEUE: usize = 64;
/// Messages received and not yet taken by chitchat before new ones are dropped.
const RECV_QUEUE: usize = 1024;
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

/// Gossip over QUIC on the node's cluster endpoint (see [`super::endpoint`]).
pub struct QuicTransport {
    endpoint: quinn::Endpoint,
    client: quinn::ClientConfig,
    incoming: Mutex<Option<mpsc::Receiver<(SocketAddr, ChitchatMessage)>>>,
    stats: Arc<TransportStats>,
    faults: Faults,
}

/// Where the endpoint's accept loop delivers gossip messages it received.
pub type GossipInbox = mpsc::Sender<(SocketAddr, ChitchatMessage)>;

impl QuicTransport {
    /// A transport that sends from `endpoint` with `tls`'s gossip client config and receives
    /// what the endpoint's accept loop puts into the returned [`GossipInbox`].
    pub fn new(
        endpoint: quinn::Endpoint,
        tls: &ClusterTls,
        stats: Arc<TransportStats>,
        faults: Faults,
    ) -> anyhow::Result<(Self, GossipInbox)> {
        let (tx, rx) = mpsc::channel(RECV_QUEUE);
        let transport = Self {
            endpoint,
            client: tls.client_config(ALPN_GOSSIP)?,
            incoming: Mutex::new(Some(rx)),
            stats,
            faults,
        };
        Ok((transport, tx))
    }
}

#[async_trait]
impl Transport for QuicTransport {
    async fn open(&self, listen_addr: SocketAddr) -> anyhow::Result<Box<dyn Socket>> {
        let incoming = self
            .incoming
            .lock()
            .await
            .take()
            .context("the gossip transport was opened already")?;
        let local = self.endpoint.local_addr()?;
        anyhow::ensure!(
            local == listen_addr,
            "cluster endpoint is bound to {local}, chitchat listens on {listen_addr}"
        );
        Ok(Box::new(QuicSocket {
            endpoint: self.endpoint.clone(),
            client: self.client.clone(),
            local,
            peers: HashMap::new(),
            incoming,
            stats: self.stats.clone(),
            faults: self.faults.clone(),
        }))
    }
}

struct QuicSocket {
    endpoint: quinn::Endpoint,
    client: quinn::ClientConfig,
    local: SocketAddr,
    peers: HashMap<SocketAddr, mpsc::Sender<Vec<u8>>>,
    incoming: mpsc::Receiver<(SocketAddr, ChitchatMessage)>,
    stats: Arc<TransportStats>,
    faults: Faults,
}

#[async_trait]
impl Socket for QuicSocket {
    async fn send(&mut self, to: SocketAddr, msg: ChitchatMessage) -> anyhow::Result<()> {
        if self.faults.drops_to(to) {
            return Ok(());
        }
        let mut bytes = Vec::with_capacity(msg.serialized_len());
        msg.serialize(&mut bytes);
        let queue = self.peers.entry(to).or_insert_with(|| {
            let (tx, rx) = mpsc::channel(PEER_QUEUE);
            tokio::spawn(peer_sender(
                self.endpoint.clone(),
                self.client.clone(),
                to,
                rx,
                self.stats.clone(),
            ));
            tx
        });
        if let Some(delay) = self.faults.delay_to(to) {
            // A slow link: the message joins the peer's queue later, without holding up
            // gossip to anyone else.
            let queue = queue.clone();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                if queue.try_send(bytes).is_err() {
                    debug!(peer = %to, "gossip queue full, delayed message dropped");
                }
            });
            return Ok(());
        }
        if queue.try_send(bytes).is_err() {
            debug!(peer = %to, "gossip queue full, message dropped");
        }
        Ok(())
    }

    async fn recv(&mut self) -> anyhow::Result<(SocketAddr, ChitchatMessage)> {
        loop {
            let (from, msg) = self
                .incoming
                .recv()
                .await
                .with_context(|| format!("gossip endpoint {} closed", self.local))?;
            if !self.faults.drops_from(from) {
                return Ok((from, msg));
            }
        }
    }
}

/// The longest a sender waits before dialling an unreachable peer again. Short, because
/// the cluster is blind to a peer until a connection is back: after a partition heals, a
/// node leaves local-only mode only once it hears a quorum again. A failed dial costs one
/// QUIC Initial packet.
const MAX_RECONNECT_BACKOFF: Duration = Duration::from_secs(1);

/// Sends the messages queued for one peer, one uni stream each, over a connection it keeps.
async fn peer_sender(
    endpoint: quinn::Endpoint,
    client: quinn::ClientConfig,
    peer: SocketAddr,
    mut queue: mpsc::Receiver<Vec<u8>>,
    stats: Arc<TransportStats>,
) {
    let mut conn: Option<quinn::Connection> = None;
    let mut wire_seen = 0u64;
    let mut backoff = Duration::from_millis(100);
    let mut retry_at = tokio::time::Instant::now();
    while let Some(bytes) = queue.recv().await {
        if conn.as_ref().is_some_and(|c| c.close_reason().is_some()) {
            conn = None;
        }
        if conn.is_none() {
            if tokio::time::Instant::now() < retry_at {
                continue; // Still backing off: drop, as a lossy network would.
            }
            match connect(&endpoint, &client, peer).await {
                Ok(c) => {
                    backoff = Duration::from_millis(100);
                    wire_seen = 0;
                    conn = Some(c);
                }
                Err(e) => {
                    debug!(peer = %peer, error = %e, "cannot reach gossip peer");
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
                debug!(peer = %peer, error = %e, "gossip send failed; reconnecting");
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

/// Hands the gossip messages of an authenticated node to chitchat until it goes away; a
/// message that is too large or does not decode disconnects the peer.
pub(crate) async fn serve_gossip(
    conn: quinn::Connection,
    id: Identity,
    tx: GossipInbox,
    stats: Arc<TransportStats>,
) {
    let from = conn.remote_address();
    debug!(peer = %from, identity = %id, "gossip peer connected");
    let mut wire_seen = 0u64;
    while let Ok(mut stream) = conn.accept_uni().await {
        // What this side sent: acknowledgements of the peer's messages, mostly.
        count_wire(&conn, &mut wire_seen, &stats);
        let bytes = match stream.read_to_end(MAX_MESSAGE).await {
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
                if tx.try_send((from, msg)).is_err() {
                    debug!(peer = %from, "gossip receive queue full, message dropped");
                }
            }
            Ok(_) | Err(_) => {
                warn!(peer = %from, identity = %id, len = bytes.len(), "malformed gossip message; peer disconnected");
                conn.close(BAD_MESSAGE.into(), b"bad message");
                return;
            }
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

    #[tokio::test]
    async fn a_delayed_link_holds_messages_back_and_other_peers_are_not_slowed() {
        // Two real transports on loopback: what arrives, and when, is measured at the
        // receiving endpoint's inbox.
        let ca = crate::pki::new_ca(
            "t",
            time::OffsetDateTime::now_utc() - time::Duration::minutes(5),
            30,
        )
        .unwrap();
        let tls_of = |name: &str| {
            let id = Identity {
                cluster: "t".into(),
                role: crate::pki::Role::Node,
                name: name.into(),
            };
            let cert = crate::pki::issue(
                &ca,
                &id,
                &[],
                time::OffsetDateTime::now_utc() - time::Duration::minutes(5),
                30,
            )
            .unwrap();
            Arc::new(ClusterTls::from_pem("t", &ca.cert, &cert.cert, &cert.key).unwrap())
        };
        let start = |name: &str| {
            let tls = tls_of(name);
            let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            let endpoint = super::super::endpoint::bind(&tls, socket).unwrap();
            let stats = Arc::new(TransportStats::default());
            let faults = Faults::default();
            let (transport, inbox) =
                QuicTransport::new(endpoint.clone(), &tls, stats.clone(), faults.clone()).unwrap();
            let handlers = Arc::new(super::super::endpoint::Handlers {
                gossip: inbox,
                views: Arc::new(super::super::view_sync::ViewServer::new(name)),
                api: std::sync::OnceLock::new(),
                stats,
                faults: faults.clone(),
            });
            tokio::spawn(super::super::endpoint::accept_loop(
                endpoint.clone(),
                tls,
                handlers,
            ));
            (endpoint.local_addr().unwrap(), transport, faults)
        };
        let (a_addr, a, a_faults) = start("a");
        let (b_addr, b, _) = start("b");
        let (c_addr, c, _) = start("c");
        let mut a_sock = a.open(a_addr).await.unwrap();
        let mut b_sock = b.open(b_addr).await.unwrap();
        let mut c_sock = c.open(c_addr).await.unwrap();
        let msg = || ChitchatMessage::BadCluster;
        // Warm both connections up, so the handshake is not part of what is measured.
        a_sock.send(b_addr, msg()).await.unwrap();
        a_sock.send(c_addr, msg()).await.unwrap();
        b_sock.recv().await.unwrap();
        c_sock.recv().await.unwrap();
        a_faults.set_delay(b_addr, Duration::from_millis(1000), Duration::ZERO);
        let sent = tokio::time::Instant::now();
        a_sock.send(b_addr, msg()).await.unwrap();
        a_sock.send(c_addr, msg()).await.unwrap();
        let (from, _) = c_sock.recv().await.unwrap();
        assert_eq!(from, a_addr);
        assert!(
            sent.elapsed() < Duration::from_millis(800),
            "{:?}",
            sent.elapsed()
        );
        let (from, _) = b_sock.recv().await.unwrap();
        assert_eq!(from, a_addr);
        assert!(
            sent.elapsed() >= Duration::from_millis(1000),
            "{:?}",
            sent.elapsed()
        );
    }
}
