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
}

/// Peers cut off by fault injection: messages to and from them are dropped, as a network
/// partition would. Empty unless a test or a simulation fills it.
#[derive(Clone, Debug, Default)]
pub struct Faults(Arc<std::sync::Mutex<std::collections::HashSet<SocketAddr>>>);

impl Faults {
    /// Cuts (or, with `false`, restores) traffic with `peer`, both ways.
    pub fn cut(&self, peer: SocketAddr, cut: bool) {
        // INVARIANT: the lock is never held across an await or a panic.
        let mut set = self.0.lock().expect("fault set lock poisoned");
        if cut {
            set.insert(peer);
        } else {
            set.remove(&peer);
        }
    }

    /// Whether traffic with `peer` is cut.
    pub fn is_cut(&self, peer: SocketAddr) -> bool {
        self.0
            .lock()
            .expect("fault set lock poisoned")
            .contains(&peer)
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
        if self.faults.is_cut(to) {
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
            if !self.faults.is_cut(from) {
                return Ok((from, msg));
            }
        }
    }
}

/// Sends the messages queued for one peer, one uni stream each, over a connection it keeps.
async fn peer_sender(
    endpoint: quinn::Endpoint,
    client: quinn::ClientConfig,
    peer: SocketAddr,
    mut queue: mpsc::Receiver<Vec<u8>>,
    stats: Arc<TransportStats>,
) {
    let mut conn: Option<quinn::Connection> = None;
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
                    conn = Some(c);
                }
                Err(e) => {
                    debug!(peer = %peer, error = %e, "cannot reach gossip peer");
                    retry_at = tokio::time::Instant::now() + backoff;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
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
        match sent.await {
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
    while let Ok(mut stream) = conn.accept_uni().await {
        let bytes = match stream.read_to_end(MAX_MESSAGE).await {
            Ok(b) => b,
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
