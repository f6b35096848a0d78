//! [E] TLS for cluster traffic: QUIC with mutual authentication, trusting only the cluster CA,
//! and accepting only peers whose certificate names a member of this cluster
//! (`sparrow://CLUSTER/ROLE/NAME`, see [`crate::pki`]).
//!
//! One QUIC endpoint per node carries three protocols, told apart by ALPN: gossip
//! ([`ALPN_GOSSIP`]) and route-view pulls ([`ALPN_VIEWS`]) between nodes, and the operator
//! API ([`ALPN_API`]) for operators. [`required_role`] says who may speak which.
//!
//! Both directions check the chain with webpki and then the identity. The client side does
//! not check a DNS name (peers are dialled by address): the `sparrow://` identity takes its
//! place, and a client only ever accepts a *node* of its own cluster as the server.

use std::sync::Arc;

use anyhow::Context as _;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::pki::{self, Identity, Role};

/// ALPN of Sparrow's gossip over QUIC.
pub const ALPN_GOSSIP: &[u8] = b"sparrow-gossip/1";
/// ALPN of route-view pulls.
pub const ALPN_VIEWS: &[u8] = sparrow_proto::views::ALPN;
/// ALPN of the operator API over QUIC.
pub const ALPN_API: &[u8] = b"sparrow-api/1";

/// The role a peer's certificate must name to speak protocol `alpn`; `None` for an unknown
/// protocol.
pub fn required_role(alpn: &[u8]) -> Option<Role> {
    match alpn {
        ALPN_GOSSIP | ALPN_VIEWS => Some(Role::Node),
        ALPN_API => Some(Role::Operator),
        _ => None,
    }
}

/// Who may be a peer beyond "certified by the cluster CA": the node names of the cluster's
/// POPs, and the serial numbers of revoked certificates. Shared by every verifier of a
/// node and replaced whole on reload, so a revocation takes effect at the next handshake.
#[derive(Debug, Default)]
pub struct Admission {
    /// Node names that may connect (every configured POP); empty: any (operators' tools).
    pub nodes: Vec<String>,
    /// Revoked serial numbers (as [`crate::pki::serial_of`] writes them).
    pub revoked: std::collections::BTreeSet<String>,
}

/// This node's credentials and what it trusts.
#[derive(Debug)]
pub struct ClusterTls {
    /// The cluster id peers must carry.
    pub cluster: String,
    roots: Arc<RootCertStore>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    provider: Arc<CryptoProvider>,
    admission: Arc<std::sync::RwLock<Arc<Admission>>>,
}

impl ClusterTls {
    /// From a node's cluster config: its CA, certificate and key, the POPs that may be
    /// peers (`names`) and the revoked serials.
    pub fn from_config(
        cluster: &crate::config::ClusterConfig,
        names: &[String],
    ) -> anyhow::Result<Self> {
        let tls = Self::from_pem(
            &cluster.id,
            &cluster.ca_pem,
            &cluster.cert_pem,
            &cluster.key_pem,
        )?;
        tls.admit(Admission {
            nodes: names.to_vec(),
            revoked: cluster.revoked.iter().cloned().collect(),
        });
        Ok(tls)
    }

    /// Replaces who may be a peer (on reload); connections made from now on are checked
    /// against it.
    pub fn admit(&self, admission: Admission) {
        // INVARIANT: the lock is held for an assignment only.
        *self.admission.write().expect("admission lock") = Arc::new(admission);
    }

    /// Who may be a peer now.
    pub fn admission(&self) -> Arc<Admission> {
        // INVARIANT: the lock is held for a clone only.
        self.admission.read().expect("admission lock").clone()
    }

    /// A secret derived from this node's private key (the same across restarts, different
    /// for every node): the key of the endpoint's stateless resets.
    pub fn reset_secret(&self) -> [u8; 32] {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(b"sparrow stateless reset key\0");
        ctx.update(self.key.secret_der());
        let digest = ctx.finish();
        let mut out = [0u8; 32];
        out.copy_from_slice(digest.as_ref());
        out
    }

    /// From PEM text: the cluster CA, this node's certificate (chain) and key.
    pub fn from_pem(cluster: &str, ca: &str, cert: &str, key: &str) -> anyhow::Result<Self> {
        let mut roots = RootCertStore::empty();
        for der in pem_certs(ca).context("cluster CA")? {
            roots.add(der).context("cluster CA certificate")?;
        }
        let chain = pem_certs(cert).context("node certificate")?;
        let key = PrivateKeyDer::try_from(pem_block(key, "PRIVATE KEY").context("node key")?)
            .map_err(|e| anyhow::anyhow!("node key: {e}"))?;
        Ok(Self {
            cluster: cluster.to_owned(),
            roots: Arc::new(roots),
            chain,
            key,
            provider: Arc::new(rustls::crypto::ring::default_provider()),
            admission: Arc::new(std::sync::RwLock::new(Arc::new(Admission::default()))),
        })
    }

    /// Server side of every protocol: client certificates must chain to the cluster CA (the
    /// role is checked per protocol once the connection is up).
    pub fn server_config(&self) -> anyhow::Result<quinn::ServerConfig> {
        let verifier =
            WebPkiClientVerifier::builder_with_provider(self.roots.clone(), self.provider.clone())
                .build()?;
        let mut tls = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.chain.clone(), self.key.clone_key())?;
        tls.alpn_protocols = vec![ALPN_GOSSIP.to_vec(), ALPN_VIEWS.to_vec(), ALPN_API.to_vec()];
        let quic = quinn::crypto::rustls::QuicServerConfig::try_from(tls)?;
        Ok(quinn::ServerConfig::with_crypto(Arc::new(quic)))
    }

    /// Client side of protocol `alpn`: the server's certificate must chain to the cluster CA
    /// and name a node of this cluster.
    pub fn client_config(&self, alpn: &[u8]) -> anyhow::Result<quinn::ClientConfig> {
        let verifier = Arc::new(NodeVerifier {
            roots: self.roots.clone(),
            cluster: self.cluster.clone(),
            admission: self.admission.clone(),
            algs: self.provider.signature_verification_algorithms,
        });
        let mut tls = rustls::ClientConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_auth_cert(self.chain.clone(), self.key.clone_key())?;
        tls.alpn_protocols = vec![alpn.to_vec()];
        let quic = quinn::crypto::rustls::QuicClientConfig::try_from(Arc::new(tls))?;
        let mut client = quinn::ClientConfig::new(Arc::new(quic));
        client.transport_config(transport_config());
        Ok(client)
    }

    /// Checks that a peer's certificate (already chained to the CA by rustls) names a member
    /// of this cluster with role `role`; returns its identity.
    pub fn check_peer(&self, chain: &[CertificateDer<'_>], role: Role) -> anyhow::Result<Identity> {
        check_identity(&self.cluster, &self.admission(), chain, role)
    }

    /// The identity of a connected peer speaking protocol `alpn` (negotiated in the
    /// handshake), checked against the role the protocol requires.
    pub fn check_connection(
        &self,
        conn: &quinn::Connection,
    ) -> anyhow::Result<(Identity, &'static [u8])> {
        let alpn = conn
            .handshake_data()
            .and_then(|d| d.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
            .and_then(|d| d.protocol)
            .context("peer negotiated no protocol")?;
        let (alpn, role) = [ALPN_GOSSIP, ALPN_VIEWS, ALPN_API]
            .into_iter()
            .find(|a| **a == *alpn)
            .and_then(|a| Some((a, required_role(a)?)))
            .context("peer negotiated an unknown protocol")?;
        let chain = conn
            .peer_identity()
            .and_then(|any| any.downcast::<Vec<CertificateDer<'static>>>().ok())
            .context("peer sent no certificate")?;
        Ok((self.check_peer(&chain, role)?, alpn))
    }
}

/// The transport settings of every cluster connection (both directions).
pub fn transport_config() -> Arc<quinn::TransportConfig> {
    let mut transport = quinn::TransportConfig::default();
    // Peers keep connections open between gossip rounds; a dead peer is noticed by the
    // failure detector, not by QUIC, so the idle timeout only reclaims forgotten ones.
    transport.max_idle_timeout(Some(quinn::IdleTimeout::from(quinn::VarInt::from_u32(
        10_000,
    ))));
    transport.keep_alive_interval(Some(std::time::Duration::from_secs(3)));
    Arc::new(transport)
}

fn check_identity(
    cluster: &str,
    admission: &Admission,
    chain: &[CertificateDer<'_>],
    role: Role,
) -> anyhow::Result<Identity> {
    let leaf = chain.first().context("peer sent no certificate")?;
    let id = pki::identity_of(leaf)?;
    anyhow::ensure!(
        id.cluster == cluster,
        "peer {id} belongs to another cluster than {cluster}"
    );
    anyhow::ensure!(id.role == role, "peer {id} is not a {}", role.as_str());
    let serial = pki::serial_of(leaf)?;
    anyhow::ensure!(
        !admission.revoked.contains(&serial),
        "peer {id} holds revoked certificate {serial}"
    );
    anyhow::ensure!(
        role != Role::Node || admission.nodes.is_empty() || admission.nodes.contains(&id.name),
        "peer {id} is certified for a name that is no POP of this cluster"
    );
    Ok(id)
}

/// Verifies a server certificate by chain and `sparrow://` identity instead of DNS name.
#[derive(Debug)]
struct NodeVerifier {
    roots: Arc<RootCertStore>,
    cluster: String,
    admission: Arc<std::sync::RwLock<Arc<Admission>>>,
    algs: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for NodeVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let cert = rustls::server::ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            self.algs.all,
        )?;
        // INVARIANT: the lock is held for a clone only.
        let admission = self.admission.read().expect("admission lock").clone();
        check_identity(
            &self.cluster,
            &admission,
            std::slice::from_ref(end_entity),
            Role::Node,
        )
        .map_err(|e| rustls::Error::General(e.to_string()))?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

fn pem_certs(pem: &str) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs: Vec<_> = x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes())
        .filter_map(Result::ok)
        .filter(|p| p.label == "CERTIFICATE")
        .map(|p| CertificateDer::from(p.contents))
        .collect();
    anyhow::ensure!(!certs.is_empty(), "no CERTIFICATE block in the PEM text");
    Ok(certs)
}

fn pem_block(pem: &str, label_suffix: &str) -> anyhow::Result<Vec<u8>> {
    x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes())
        .filter_map(Result::ok)
        .find(|p| p.label.ends_with(label_suffix))
        .map(|p| p.contents)
        .with_context(|| format!("no {label_suffix} block in the PEM text"))
}
