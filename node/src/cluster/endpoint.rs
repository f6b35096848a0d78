//! [E] The node's one QUIC endpoint, on the cluster address: it dials peers and accepts
//! connections for gossip, route-view pulls and the operator API, told apart by ALPN.
//!
//! Every incoming connection is authenticated before anything it sends is read: rustls
//! checks the chain against the cluster CA, then [`ClusterTls::check_connection`] checks
//! the `sparrow://` identity and the role the negotiated protocol requires (nodes for gossip
//! and views, operators for the API). A refused peer is logged, counted and disconnected.

use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};

use tracing::{Instrument as _, debug, warn};

use super::tls::{ALPN_API, ALPN_GOSSIP, ALPN_VIEWS, ClusterTls};
use super::transport::{self, Faults, GossipInbox, REFUSED, TransportStats};
use super::view_sync::ViewServer;
use crate::api::ApiContext;

/// Binds the cluster endpoint on `socket` (bound by the caller).
pub fn bind(tls: &ClusterTls, socket: std::net::UdpSocket) -> anyhow::Result<quinn::Endpoint> {
    let mut transport = quinn::TransportConfig::default();
    // Peers keep connections open between gossip rounds; a dead peer is noticed by the
    // failure detector, not by QUIC, so the idle timeout only reclaims forgotten ones.
    transport.max_idle_timeout(Some(quinn::IdleTimeout::from(quinn::VarInt::from_u32(
        30_000,
    ))));
    transport.keep_alive_interval(Some(std::time::Duration::from_secs(10)));
    let mut server = tls.server_config()?;
    server.transport_config(Arc::new(transport));
    Ok(quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        Some(server),
        socket,
        Arc::new(quinn::TokioRuntime),
    )?)
}

/// What the endpoint hands accepted connections to.
pub struct Handlers {
    /// Gossip messages go to chitchat through this.
    pub gossip: GossipInbox,
    /// Serves this node's route view.
    pub views: Arc<ViewServer>,
    /// The operator API, once the node is up (connections before that are refused).
    pub api: OnceLock<ApiContext>,
    /// Counters.
    pub stats: Arc<TransportStats>,
    /// Fault injection (tests, simulations): cut peers are refused here too.
    pub faults: Faults,
}

/// Accepts connections on `endpoint` until it closes.
pub async fn accept_loop(endpoint: quinn::Endpoint, tls: Arc<ClusterTls>, handlers: Arc<Handlers>) {
    while let Some(incoming) = endpoint.accept().await {
        if handlers.faults.drops_from(incoming.remote_address()) {
            incoming.ignore();
            continue;
        }
        tokio::spawn(
            accept(incoming, tls.clone(), handlers.clone()).instrument(tracing::Span::current()),
        );
    }
}

/// Whether a QUIC error code carries a TLS alert (RFC 9001 §4.8: 0x0100 to 0x01ff).
fn is_crypto(code: quinn::TransportErrorCode) -> bool {
    (0x100..0x200).contains(&u64::from(code))
}

async fn accept(incoming: quinn::Incoming, tls: Arc<ClusterTls>, handlers: Arc<Handlers>) {
    let from = incoming.remote_address();
    let refused = || handlers.stats.peers_refused.fetch_add(1, Ordering::Relaxed);
    let conn = match incoming.await {
        Ok(c) => c,
        // A TLS alert: the certificate or the protocol did not check out.
        Err(quinn::ConnectionError::TransportError(e)) if is_crypto(e.code) => {
            refused();
            warn!(peer = %from, error = %e, "cluster handshake refused");
            return;
        }
        Err(quinn::ConnectionError::ConnectionClosed(c)) if is_crypto(c.error_code) => {
            refused();
            warn!(peer = %from, error = %c, "cluster handshake refused by the peer");
            return;
        }
        Err(e) => {
            // Timed out, reset or abandoned: a network or load problem, not a refusal.
            debug!(peer = %from, error = %e, "cluster handshake did not complete");
            return;
        }
    };
    let (id, alpn) = match tls.check_connection(&conn) {
        Ok(checked) => checked,
        Err(e) => {
            refused();
            warn!(peer = %from, error = %e, "cluster peer refused");
            conn.close(REFUSED.into(), b"refused");
            return;
        }
    };
    debug!(peer = %from, identity = %id, protocol = %String::from_utf8_lossy(alpn), "cluster connection");
    match alpn {
        ALPN_GOSSIP => {
            transport::serve_gossip(conn, id, handlers.gossip.clone(), handlers.stats.clone())
                .await;
        }
        ALPN_VIEWS => handlers.views.serve(conn, id).await,
        ALPN_API => match handlers.api.get() {
            Some(cx) => crate::api::serve_quic(conn, id, cx.clone()).await,
            None => conn.close(REFUSED.into(), b"starting"),
        },
        _ => conn.close(REFUSED.into(), b"unknown protocol"),
    }
}
