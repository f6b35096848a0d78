//! [E] The operator API: `proto::api::Request` / `proto::api::Response` as JSON.
//!
//! - Locally, newline-delimited JSON over a Unix socket created with mode 0600: file
//!   permissions decide who may drive the node.
//! - Remotely, over the node's cluster QUIC endpoint (ALPN `sparrow-api/1`), one request
//!   and its response per bidirectional stream, for operators whose certificate names
//!   `sparrow://CLUSTER/operator/NAME` (see [`crate::cluster::endpoint`]). Every change an
//!   operator makes is logged with their name.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::Context as _;
use arc_swap::ArcSwap;
use hickory_proto::rr::LowerName;
use ipnet::IpNet;
use sparrow_proto::api::{PopReport, Request, Response, StatusReport, ViewReport};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::cluster::node::ClusterHandle;
use crate::cluster::state::Mode;
use crate::config::{self, AdminState};
use crate::pki::Identity;
use crate::snapshot::Snapshot;

/// Largest request line accepted.
const MAX_REQUEST: usize = 64 * 1024;

/// Where the API listens when the config does not say: `$XDG_RUNTIME_DIR/sparrow/api.sock`,
/// else `/tmp/sparrow/api.sock`.
pub fn default_socket() -> PathBuf {
    std::env::var_os("XDG_RUNTIME_DIR")
        .map_or_else(std::env::temp_dir, PathBuf::from)
        .join("sparrow")
        .join("api.sock")
}

/// What the API acts on.
#[derive(Clone)]
pub struct ApiContext {
    /// The node's state.
    pub snapshot: Arc<ArcSwap<Snapshot>>,
    /// Its cluster membership, if clustered.
    pub cluster: Option<Arc<ClusterHandle>>,
}

/// Binds the API socket at `path` (its folder created 0700), refusing to take over the
/// socket of a node that is still running.
pub async fn bind(path: &Path) -> anyhow::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
        }
    }
    if path.exists() {
        if UnixStream::connect(path).await.is_ok() {
            anyhow::bail!("{} is in use by a running node", path.display());
        }
        std::fs::remove_file(path)
            .with_context(|| format!("cannot remove stale socket {}", path.display()))?;
    }
    let listener =
        UnixListener::bind(path).with_context(|| format!("cannot bind {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(listener)
}

/// Serves API requests on `listener` until `shutdown`.
pub async fn serve(listener: UnixListener, cx: ApiContext, shutdown: CancellationToken) {
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    warn!(error = %e, "operator API accept failed");
                    continue;
                }
            },
            () = shutdown.cancelled() => return,
        };
        tokio::spawn(connection(stream, cx.clone()));
    }
}

async fn connection(stream: UnixStream, cx: ApiContext) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read.take(MAX_REQUEST as u64 * 16)).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let response = match serde_json::from_str::<Request>(&line) {
            Ok(request) => {
                debug!(?request, "operator request");
                handle(&cx, request, "the local API").await
            }
            Err(e) if line.len() > MAX_REQUEST => Response::Error {
                message: format!("request too large: {e}"),
            },
            Err(e) => Response::Error {
                message: format!("bad request: {e}"),
            },
        };
        let Ok(mut text) = serde_json::to_string(&response) else {
            return;
        };
        text.push('\n');
        if write.write_all(text.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// Serves the requests of operator `id` on QUIC connection `conn` until it closes.
pub async fn serve_quic(conn: quinn::Connection, id: Identity, cx: ApiContext) {
    let from = conn.remote_address();
    let who = format!("operator {} from {from}", id.name);
    info!(operator = %id.name, peer = %from, "operator connected over QUIC");
    while let Ok((mut send, mut recv)) = conn.accept_bi().await {
        let response = match recv.read_to_end(MAX_REQUEST).await {
            Ok(bytes) => match serde_json::from_slice::<Request>(&bytes) {
                Ok(request) => {
                    debug!(?request, operator = %id.name, "operator request");
                    handle(&cx, request, &who).await
                }
                Err(e) => Response::Error {
                    message: format!("bad request: {e}"),
                },
            },
            Err(e) => {
                warn!(operator = %id.name, peer = %from, error = %e, "oversized or broken API request; disconnected");
                conn.close(2u32.into(), b"bad request");
                return;
            }
        };
        let Ok(text) = serde_json::to_vec(&response) else {
            return;
        };
        if send.write_all(&text).await.is_err() || send.finish().is_err() {
            return;
        }
    }
}

/// Sends one request to the node at `addr` over QUIC as the operator `tls` holds the
/// certificate of, and reads the response.
pub async fn call_quic(
    addr: std::net::SocketAddr,
    tls: &crate::cluster::tls::ClusterTls,
    request: &Request,
) -> anyhow::Result<Response> {
    let bind: std::net::SocketAddr = if addr.is_ipv6() {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    };
    let endpoint = quinn::Endpoint::client(bind)?;
    let client = tls.client_config(crate::cluster::tls::ALPN_API)?;
    let connecting = endpoint.connect_with(client, addr, "sparrow-node")?;
    let conn = tokio::time::timeout(std::time::Duration::from_secs(10), connecting)
        .await
        .with_context(|| format!("no answer from {addr} within 10 s"))?
        .with_context(|| format!("cannot connect to {addr}"))?;
    let (mut send, mut recv) = conn.open_bi().await?;
    send.write_all(&serde_json::to_vec(request)?).await?;
    send.finish()?;
    let bytes = recv
        .read_to_end(16 * 1024 * 1024)
        .await
        .context("the node closed the connection without answering")?;
    conn.close(0u32.into(), b"done");
    endpoint.wait_idle().await;
    Ok(serde_json::from_slice(&bytes)?)
}

async fn handle(cx: &ApiContext, request: Request, who: &str) -> Response {
    let snap = cx.snapshot.load_full();
    match request {
        Request::Status => Response::Status(status(&snap, cx.cluster.as_deref())),
        Request::Explain { client, name } => match explain(&snap, &client, name.as_deref()) {
            Ok(e) => Response::Explanation(e),
            Err(message) => Response::Error { message },
        },
        Request::SetAdmin { pop, drained } => {
            let Some(index) = snap.config.pops.iter().position(|p| p.name == pop) else {
                return Response::Error {
                    message: format!("no POP is named `{pop}`"),
                };
            };
            let admin = if drained {
                AdminState::Drained
            } else {
                AdminState::Active
            };
            match &cx.cluster {
                Some(cluster) => cluster.set_admin(&pop, admin).await,
                None => {
                    cx.snapshot.rcu(|s| s.with_admin(index, admin));
                }
            }
            let verb = if drained { "drained" } else { "undrained" };
            info!(pop = %pop, by = %who, "{verb} by an operator");
            Response::Done {
                message: if cx.cluster.is_some() {
                    format!("{pop} {verb} cluster-wide")
                } else {
                    format!("{pop} {verb}")
                },
            }
        }
    }
}

/// The node's view of the cluster.
pub fn status(snap: &Snapshot, cluster: Option<&ClusterHandle>) -> StatusReport {
    let cfg = &snap.config;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let (mode, alive, quorum) = match snap.mode {
        Mode::Standalone => ("standalone", 1, 1),
        Mode::Cluster { alive } => (
            "cluster",
            alive,
            cfg.cluster.as_ref().map_or(1, |c| c.quorum),
        ),
        Mode::LocalOnly { alive, quorum } => ("local-only", alive, quorum),
    };
    let pops = cfg
        .pops
        .iter()
        .zip(&snap.pop_status)
        .enumerate()
        .map(|(i, (p, s))| PopReport {
            name: p.name.clone(),
            this_node: i == cfg.node.pop,
            live: s.live,
            healthy: s.healthy,
            admin: match s.admin {
                AdminState::Active => "active".to_owned(),
                AdminState::Drained => "drained".to_owned(),
            },
            load: s.load,
            addresses: p
                .v4
                .iter()
                .map(ToString::to_string)
                .chain(p.v6.iter().map(ToString::to_string))
                .collect(),
            view: snap.view_info(i).map(|v| view_report(v, now_ms)),
        })
        .collect();
    let (sent, received) = cluster.map_or((0, 0), |c| {
        (
            c.stats.bytes_sent.load(Ordering::Relaxed),
            c.stats.bytes_received.load(Ordering::Relaxed),
        )
    });
    let (views_pulled, view_pull_failures) = cluster.map_or((0, 0), |c| {
        let v = c.view_stats();
        (
            v.pulled.load(Ordering::Relaxed),
            v.pull_failures.load(Ordering::Relaxed),
        )
    });
    StatusReport {
        pop: cfg.own_pop().name.clone(),
        cluster: cfg.cluster.as_ref().map(|c| c.id.clone()),
        mode: mode.to_owned(),
        alive,
        quorum,
        pops,
        gossip_bytes_sent: sent,
        gossip_bytes_received: received,
        views_pulled,
        view_pull_failures,
    }
}

fn view_report(v: &crate::snapshot::ViewInfo, now_ms: u64) -> ViewReport {
    let secs_since = |ms: u64| now_ms.saturating_sub(ms) / 1000;
    ViewReport {
        prefixes: v.prefixes,
        version: v.version,
        digest: v.digest.map(|d| format!("{d:016x}")),
        age_secs: v.version.map(secs_since),
        source: v.source.clone(),
        stale_secs: v.stale_since_ms.map(secs_since),
    }
}

/// Explains the answer for `client` (an address or subnet) and geo name `name`.
pub fn explain(
    snap: &Snapshot,
    client: &str,
    name: Option<&str>,
) -> Result<sparrow_proto::api::Explanation, String> {
    let addr = client
        .parse::<IpAddr>()
        .or_else(|_| client.parse::<IpNet>().map(|n| n.network()))
        .map_err(|_| format!("`{client}` is not an IP address or subnet"))?;
    let geo = match name {
        None if snap.config.geo.is_empty() => return Err("the config has no geo name".into()),
        None => 0,
        Some(n) => config::parse_name(n, snap.config.zone.origin_name())
            .ok()
            .and_then(|name| snap.geo_index(&LowerName::from(&name)))
            .ok_or_else(|| format!("`{n}` is not a geo name of this node"))?,
    };
    Ok(crate::explain::explain(snap, geo, addr))
}

/// Sends one request to the API at `path` and reads the response.
pub async fn call(path: &Path, request: &Request) -> anyhow::Result<Response> {
    let stream = UnixStream::connect(path).await.with_context(|| {
        format!(
            "cannot reach the node's API at {} (is the node running? --socket sets the path)",
            path.display()
        )
    })?;
    let (read, mut write) = stream.into_split();
    let mut text = serde_json::to_string(request)?;
    text.push('\n');
    write.write_all(text.as_bytes()).await?;
    let mut lines = BufReader::new(read).lines();
    let line = lines
        .next_line()
        .await?
        .context("the node closed the connection without answering")?;
    Ok(serde_json::from_str(&line)?)
}
