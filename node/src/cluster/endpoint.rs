//! [E] The node's one QUIC endpoint, on the cluster address: it dials peers and accepts
//! connections for gossip, route-view pulls and the operator API, told apart by ALPN.
//!
//! Every incoming connection is authenticated before anything it sends is read: rustls
//! checks the chain against the cluster CA, then [`ClusterTls::check_connection`] checks
//! the `sparrow://` identity and the role the negotiated protocol requires (nodes for gossip
//! and views, operators for the API). A refused peer is logged, counted and disconnected.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tracing::{Instrument as _, debug, warn};

use super::tls::{ALPN_API, ALPN_GOSSIP, ALPN_VIEWS, ClusterTls};
use super::transport::{Faults, REFUSED, TransportStats};
use super::view_sync::ViewServer;
use crate::pki::Identity;

/// What serves the connections of one protocol: called with each authenticated connection
/// and its peer's identity, it runs until the connection is done.
pub type Service = Arc<
    dyn Fn(quinn::Connection, Identity) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync,
>;

/// Binds the cluster endpoint on `socket` (bound by the caller).
///
/// Its stateless-reset key is derived from the node's private key, so it is the same after
/// a restart: a peer still holding a connection to this node's previous incarnation gets a
/// stateless reset on its next packet and dials again at once, instead of talking into the
/// void until its idle timeout.
pub fn bind(tls: &ClusterTls, socket: std::net::UdpSocket) -> anyhow::Result<quinn::Endpoint> {
    let mut server = tls.server_config()?;
    server.transport_config(super::tls::transport_config());
    let reset_key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &tls.reset_secret());
    let config = quinn::EndpointConfig::new(Arc::new(reset_key));
    Ok(quinn::Endpoint::new(
        config,
        Some(server),
        socket,
        Arc::new(quinn::TokioRuntime),
    )?)
}

/// What the endpoint hands accepted connections to.
pub struct Handlers {
    /// Gossip links.
    pub gossip: Service,
    /// Route-view pulls: a node's [`ViewServer`] ([`serve_views`]).
    pub views: Service,
    /// The operator API, once the node is up (connections before and after are refused).
    pub api: std::sync::Mutex<Option<Service>>,
    /// Counters.
    pub stats: Arc<TransportStats>,
    /// Fault injection (tests, simulations): cut peers are refused here too.
    pub faults: Faults,
    /// Every authenticated connection peers made to this node, of every protocol, with the
    /// serial of the certificate it was admitted with (to close them when it is revoked).
    open: std::sync::Mutex<Vec<(quinn::Connection, String)>>,
}

impl Handlers {
    /// Handlers for gossip and view pulls; the API is served once set.
    pub fn new(
        gossip: Service,
        views: Service,
        stats: Arc<TransportStats>,
        faults: Faults,
    ) -> Self {
        Self {
            gossip,
            views,
            api: std::sync::Mutex::new(None),
            stats,
            faults,
            open: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// Closes every open connection (gossip, view pulls, operator API) whose certificate's
    /// serial is in `revoked`, and logs each.
    pub fn close_revoked(&self, revoked: &std::collections::BTreeSet<String>) {
        // INVARIANT: the lock is held to walk the list only.
        let mut open = self.open.lock().expect("open connections lock");
        open.retain(|(c, _)| c.close_reason().is_none());
        open.retain(|(c, serial)| {
            if !revoked.contains(serial) {
                return true;
            }
            warn!(peer = %c.remote_address(), serial = %serial, "certificate revoked; connection closed");
            c.close(REFUSED.into(), b"certificate revoked");
            false
        });
    }

    fn track(&self, conn: &quinn::Connection, serial: String) {
        // INVARIANT: the lock is held to update the list only.
        let mut open = self.open.lock().expect("open connections lock");
        open.retain(|(c, _)| c.close_reason().is_none());
        open.push((conn.clone(), serial));
    }
}

/// The service of route-view pulls answered by `server`.
pub fn serve_views(server: Arc<ViewServer>) -> Service {
    Arc::new(move |conn, id| {
        let server = server.clone();
        Box::pin(async move { server.serve(conn, id).await })
    })
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

/// The serial number of the certificate `conn`'s peer presented (lower-case hex).
fn leaf_serial(conn: &quinn::Connection) -> Option<String> {
    let chain = conn
        .peer_identity()?
        .downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
        .ok()?;
    crate::pki::serial_of(chain.first()?).ok()
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
    // Tracked before it is checked: a revocation that lands between the two is either seen
    // by the check or closes the tracked connection.
    if let Some(serial) = leaf_serial(&conn) {
        handlers.track(&conn, serial);
    }
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
        ALPN_GOSSIP => (handlers.gossip)(conn, id).await,
        ALPN_VIEWS => (handlers.views)(conn, id).await,
        ALPN_API => {
            // INVARIANT: the lock is held for a clone only.
            let api = handlers.api.lock().expect("api lock").clone();
            match api {
                Some(api) => api(conn, id).await,
                None => conn.close(REFUSED.into(), b"starting"),
            }
        }
        _ => conn.close(REFUSED.into(), b"unknown protocol"),
    }
}
