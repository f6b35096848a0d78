//! [E] The HTTP(S) client of health and load probes: hyper's HTTP/1.1 client over a fresh
//! TCP connection per check, wrapped in rustls for `https://` URLs.
//!
//! A new connection per check is deliberate: a probe must find out whether a client can
//! connect now, which a pooled keep-alive connection would hide. Redirects are not
//! followed (a 301 is a status like any other), and at most [`MAX_BODY`] bytes of a body
//! are read. hyper's connection-level client is used rather than reqwest because a probe
//! dials an address and must choose the Host header and TLS server name itself (reqwest
//! takes both from the URL), and has no use for a pool, redirects or proxies.

use std::sync::Arc;

use http_body_util::{BodyExt as _, Empty};
use hyper::body::Bytes;
use hyper::header::{ACCEPT, HOST, USER_AGENT};
use hyper_util::rt::TokioIo;
use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::spec::{HttpTarget, HttpsTrust, MAX_BODY};

/// What a `GET` brought back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fetched {
    /// Status code.
    pub status: u16,
    /// The body's first [`MAX_BODY`] bytes (empty when the body was not asked for).
    pub body: Vec<u8>,
    /// Whether the body was longer than what was kept.
    pub truncated: bool,
}

/// A client for one target; its TLS settings (roots, server name) are prepared once.
pub struct HttpClient {
    target: HttpTarget,
    /// For https: the connector and the name to check, or why there is none.
    tls: Option<Result<(tokio_rustls::TlsConnector, ServerName<'static>), String>>,
}

impl HttpClient {
    /// A client for `target`. Loads the system roots now when the target is https and
    /// names no CA of its own; a failure there fails every check, with the reason.
    pub fn new(target: &HttpTarget) -> Self {
        Self {
            target: target.clone(),
            tls: target.tls.as_ref().map(connector),
        }
    }

    /// `GET`s the target once, reading the body only if `want_body`.
    pub async fn get(&self, want_body: bool) -> Result<Fetched, String> {
        let t = &self.target;
        let fetched = async {
            let tcp = TcpStream::connect(&t.authority)
                .await
                .map_err(|e| format!("connect {}: {e}", t.authority))?;
            // Probes are tiny request/response exchanges: do not wait to fill packets.
            let _ = tcp.set_nodelay(true);
            match &self.tls {
                None => exchange(tcp, t, want_body).await,
                Some(Err(e)) => Err(e.clone()),
                Some(Ok((connector, name))) => {
                    let tls = connector
                        .connect(name.clone(), tcp)
                        .await
                        .map_err(|e| format!("TLS handshake: {e}"))?;
                    exchange(tls, t, want_body).await
                }
            }
        };
        fetched.await.map_err(|e| format!("GET {}: {e}", t.url))
    }
}

/// Sends the request on an open connection and reads the response.
async fn exchange<S>(io: S, t: &HttpTarget, want_body: bool) -> Result<Fetched, String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| e.to_string())?;
    // The connection is driven by its own task while this one reads the response; the
    // guard stops it when the check ends, timed out or not.
    let _driver = AbortOnDrop(tokio::spawn(conn));
    let request = hyper::Request::get(&t.path)
        .header(HOST, &t.host)
        .header(
            USER_AGENT,
            concat!("sparrow-probe/", env!("CARGO_PKG_VERSION")),
        )
        .header(ACCEPT, "*/*")
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("bad request: {e}"))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let mut fetched = Fetched {
        status,
        body: Vec::new(),
        truncated: false,
    };
    if !want_body {
        return Ok(fetched);
    }
    let mut body = response.into_body();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| format!("reading the body: {e}"))?;
        let Ok(data) = frame.into_data() else {
            continue; // Trailers.
        };
        let room = MAX_BODY - fetched.body.len();
        if data.len() > room {
            fetched.body.extend_from_slice(&data[..room]);
            fetched.truncated = true;
            break;
        }
        fetched.body.extend_from_slice(&data);
    }
    Ok(fetched)
}

/// Aborts a task when dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The rustls connector and server name for `trust`.
fn connector(
    trust: &HttpsTrust,
) -> Result<(tokio_rustls::TlsConnector, ServerName<'static>), String> {
    let name = ServerName::try_from(trust.server_name.clone())
        .map_err(|e| format!("`{}` is not a TLS server name: {e}", trust.server_name))?;
    let roots = match &trust.ca {
        Some(ders) => {
            let mut roots = RootCertStore::empty();
            for der in ders {
                roots
                    .add(CertificateDer::from(der.clone()))
                    .map_err(|e| format!("probe CA: {e}"))?;
            }
            roots
        }
        None => system_roots()?,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS settings: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((tokio_rustls::TlsConnector::from(Arc::new(config)), name))
}

/// The operating system's trust anchors (on Debian, the `ca-certificates` bundle).
fn system_roots() -> Result<RootCertStore, String> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let why = found
            .errors
            .first()
            .map_or_else(|| "none found".to_owned(), ToString::to_string);
        return Err(format!(
            "no system root certificates ({why}); install ca-certificates or give the probe a `ca`"
        ));
    }
    Ok(roots)
}
