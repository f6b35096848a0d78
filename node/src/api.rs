//! [E] The operator API: `proto::api::Request` / `proto::api::Response` as JSON.
//!
//! - Locally, newline-delimited JSON over a Unix socket created with mode 0600 in a folder
//!   of mode 0700 that the node's user owns: file permissions decide who may drive the
//!   node. A folder that someone else owns, or that others may write, is refused.
//! - Remotely, over the node's cluster QUIC endpoint (ALPN `sparrow-api/1`), one request
//!   and its response per bidirectional stream, for operators whose certificate names
//!   `sparrow://CLUSTER/operator/NAME` (see [`crate::cluster::endpoint`]). Every change an
//!   operator makes is logged with their name.
//!
//! A drain is carried by the drained POP's own node: a clustered node applies drains of its
//! own POP only, and answers a drain of another POP with [`Response::Redirect`] naming that
//! POP's node (the CLI follows it with an operator certificate). After applying one it waits
//! a few gossip rounds for every live peer to confirm the new state (its `drained` key for a
//! POP, `drained_svc` for a service at a POP), and reports who did and who did not.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context as _;
use hickory_proto::rr::LowerName;
use ipnet::IpNet;
use sparrow_proto::api::{
    AdminReport, PopReport, Request, Response, ServiceReport, StatusReport, ViewReport,
};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument as _, debug, info, warn};

use crate::cluster::endpoint::Service;
use crate::cluster::node::ClusterHandle;
use crate::cluster::state::{AdminBy, HotState, Mode, PeerView};
use crate::config::{self, Target};
use crate::pki::Identity;
use crate::policy::AdminState;
use crate::snapshot::Snapshot;
use crate::state::Change;
use crate::state::owner::StateHandle;

/// Longest a drain waits for every live peer to confirm it.
const CONFIRM_WAIT: Duration = Duration::from_secs(5);

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
    pub state: StateHandle,
    /// Its cluster membership, if clustered.
    pub cluster: Option<Arc<ClusterHandle>>,
    /// Reloads its config, when it was started from a file.
    pub reloader: Option<Arc<crate::sources::Reloader>>,
    /// Where take-over requests go (the process that owns the sockets), if it allows them.
    pub takeover: Option<tokio::sync::mpsc::Sender<UnixStream>>,
}

/// Binds the API socket at `path`, refusing to take over the socket of a node that is still
/// running. Its folder is made (mode 0700) if missing; an existing folder must belong to
/// this process's user and be writable by it alone, or another local user could put their
/// own socket in the operator's way.
pub async fn bind(path: &Path) -> anyhow::Result<UnixListener> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        secure_dir(dir)?;
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

/// Makes `dir` (mode 0700) or checks that the existing one is this user's own and that no
/// one else may write to it.
fn secure_dir(dir: &Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, PermissionsExt as _};
        match std::fs::DirBuilder::new().mode(0o700).create(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // A parent is missing: make the parents as usual, this folder 0700.
                if let Some(parent) = dir.parent() {
                    std::fs::create_dir_all(parent)
                        .with_context(|| format!("cannot create {}", parent.display()))?;
                }
                std::fs::DirBuilder::new()
                    .mode(0o700)
                    .create(dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
            }
            Err(e) => return Err(e).with_context(|| format!("cannot create {}", dir.display())),
        }
        let meta = std::fs::symlink_metadata(dir)
            .with_context(|| format!("cannot inspect {}", dir.display()))?;
        anyhow::ensure!(
            meta.is_dir(),
            "{} is not a folder (a link?); refusing to put the API socket there",
            dir.display()
        );
        // SAFETY: geteuid takes no argument and cannot fail.
        let me = unsafe { libc::geteuid() };
        anyhow::ensure!(
            meta.uid() == me,
            "{} belongs to uid {}, not to this node's user (uid {me}); refusing to put the API socket there",
            dir.display(),
            meta.uid()
        );
        let mode = meta.permissions().mode() & 0o777;
        anyhow::ensure!(
            mode & 0o022 == 0,
            "{} may be written by group or others (mode {mode:o}), who could replace the API socket; make it 0700 or remove it",
            dir.display()
        );
    }
    #[cfg(not(unix))]
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(())
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
    let uid = stream.peer_cred().ok().map(|c| c.uid());
    let who = match uid {
        Some(uid) => format!("local uid {uid}"),
        None => "the local API".to_owned(),
    };
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read.take(MAX_REQUEST as u64 * 16)).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let response = match serde_json::from_str::<Request>(&line) {
            Ok(Request::TakeOver) => {
                // SAFETY: geteuid has no preconditions.
                let own = uid == Some(unsafe { libc::geteuid() });
                match (&cx.takeover, own) {
                    (Some(tx), true) => {
                        let read = lines.into_inner().into_inner().into_inner();
                        match read.reunite(write) {
                            Ok(stream) => {
                                info!(by = %who, "a new process asks to take over this node's sockets");
                                let _ = tx.send(stream).await;
                            }
                            Err(e) => warn!(error = %e, "take-over request lost"),
                        }
                        return;
                    }
                    (Some(_), false) => Response::Error {
                        message: "only a process of the node's own user may take over its sockets"
                            .to_owned(),
                    },
                    (None, _) => Response::Error {
                        message:
                            "this node cannot hand over its sockets (not started by `sparrow node`)"
                                .to_owned(),
                    },
                }
            }
            Ok(request) => {
                debug!(?request, "operator request");
                handle(&cx, request, &who).await
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

/// The operator API as a service of the cluster endpoint (ALPN `sparrow-api/1`).
pub fn quic_service(cx: ApiContext) -> Service {
    Arc::new(move |conn, id| {
        let cx = cx.clone();
        Box::pin(serve_quic(conn, id, cx).instrument(tracing::Span::current()))
    })
}

/// Serves the requests of operator `id` on QUIC connection `conn` until it closes.
pub async fn serve_quic(conn: quinn::Connection, id: Identity, cx: ApiContext) {
    let from = conn.remote_address();
    let who = id.name.clone();
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
    let conn = tokio::time::timeout(Duration::from_secs(10), connecting)
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
    let snap = cx.state.snapshot.load_full();
    match request {
        Request::Status => Response::Status(status_with(
            &snap,
            cx.cluster.as_deref(),
            Some(cx.state.ready.borrow().clone()),
        )),
        Request::Explain { client, name } => match explain(&snap, &client, name.as_deref()) {
            Ok(e) => Response::Explanation(e),
            Err(message) => Response::Error { message },
        },
        Request::SetAdmin {
            pop,
            drained,
            service: None,
        } => set_admin(cx, &snap, &pop, drained, who).await,
        Request::SetAdmin {
            pop,
            drained,
            service: Some(service),
        } => set_service_admin(cx, &snap, &pop, &service, drained, who).await,
        Request::TakeOver => Response::Error {
            message: "a take-over is asked on the node's local API socket only".to_owned(),
        },
        Request::Reload => {
            let Some(reloader) = &cx.reloader else {
                return Response::Error {
                    message: "this node was not started from a config file".to_owned(),
                };
            };
            info!(by = %who, "reload asked");
            match reloader.reload().await {
                Ok(outcome) => {
                    let message =
                        match (outcome.changes.is_empty(), outcome.needs_restart.is_empty()) {
                            (true, true) => "reloaded: nothing changed".to_owned(),
                            (_, true) => format!("reloaded: {}", outcome.changes.join(", ")),
                            (true, false) => format!(
                                "reloaded; these apply only after a restart: {}",
                                outcome.needs_restart.join(", ")
                            ),
                            (false, false) => format!(
                                "reloaded: {}; these apply only after a restart: {}",
                                outcome.changes.join(", "),
                                outcome.needs_restart.join(", ")
                            ),
                        };
                    Response::Reloaded(sparrow_proto::api::ReloadReport {
                        changes: outcome.changes,
                        needs_restart: outcome.needs_restart,
                        message,
                    })
                }
                Err(e) => Response::Error {
                    message: format!("{e}"),
                },
            }
        }
    }
}

/// Drains or undrains `pop`: on a standalone node any POP (for its own answers), on a
/// clustered node its own POP only (for every node's answers); others are redirected.
async fn set_admin(
    cx: &ApiContext,
    snap: &Snapshot,
    pop: &str,
    drained: bool,
    who: &str,
) -> Response {
    let Some(index) = snap.config.pops.iter().position(|p| p.name == pop) else {
        return Response::Error {
            message: format!("no POP is named `{pop}`"),
        };
    };
    let own = snap.config.node.pop;
    let state = if drained {
        AdminState::Drained
    } else {
        AdminState::Active
    };
    if snap.config.cluster.is_some() && index != own {
        let node = snap.peers[index].addr.map(|a| a.to_string());
        let message = match &node {
            Some(addr) => format!(
                "{pop}'s admin state is held by {pop}'s own node ({addr}): send it there with an operator certificate (`sparrow drain {pop} --remote {addr} ...`), or run the command on that node"
            ),
            None => format!(
                "{pop}'s admin state is held by {pop}'s own node, which this node has not met: send it there with an operator certificate, or run the command on that node"
            ),
        };
        return Response::Redirect {
            pop: pop.to_owned(),
            node,
            message,
        };
    }
    let by = AdminBy {
        who: who.to_owned(),
        at_ms: crate::clock::unix_ms(),
    };
    info!(pop = %pop, by = %who, state = state.as_str(), "operator sets admin state");
    if !cx
        .state
        .send(Change::Admin {
            pop: index,
            state,
            by: by.clone(),
        })
        .await
    {
        return Response::Error {
            message: "the node is shutting down".to_owned(),
        };
    }
    let pop_name = pop.to_owned();
    let (confirmed, unconfirmed) = confirm(
        cx,
        |snap| snap.pop_status[index].admin == state,
        |peer| peer.drained.contains(&pop_name) == drained,
    )
    .await;
    let verb = if drained { "drained" } else { "undrained" };
    let message = confirmation_message(
        &format!("{pop} {verb}"),
        snap.config.cluster.is_some(),
        &confirmed,
        &unconfirmed,
    );
    Response::AdminSet(AdminReport {
        pop: pop.to_owned(),
        admin: state.as_str().to_owned(),
        by: who.to_owned(),
        confirmed,
        unconfirmed,
        message,
    })
}

/// Drains or undrains service `service` at `pop`, under the same rule as a POP's drain: a
/// standalone node any POP, a clustered node its own POP's services only (its peers read
/// them from its `svc_drained` key).
async fn set_service_admin(
    cx: &ApiContext,
    snap: &Snapshot,
    pop: &str,
    service: &str,
    drained: bool,
    who: &str,
) -> Response {
    let Some(index) = snap.config.pops.iter().position(|p| p.name == pop) else {
        return Response::Error {
            message: format!("no POP is named `{pop}`"),
        };
    };
    let wanted = service.trim_end_matches('.').to_ascii_lowercase();
    let Some(geo) =
        snap.config.geo.iter().position(|g| {
            g.service == wanted || g.name.to_string().trim_end_matches('.') == wanted
        })
    else {
        return Response::Error {
            message: format!("no service is named `{service}`"),
        };
    };
    if !snap.config.geo[geo].pops.contains(&index) {
        return Response::Error {
            message: format!("POP `{pop}` does not serve `{service}`"),
        };
    }
    let own = snap.config.node.pop;
    if snap.config.cluster.is_some() && index != own {
        let node = snap.peers[index].addr.map(|a| a.to_string());
        return Response::Redirect {
            pop: pop.to_owned(),
            message: format!(
                "{pop}'s services are held by {pop}'s own node{}: run the command there",
                node.as_deref()
                    .map_or_else(String::new, |a| format!(" ({a})"))
            ),
            node,
        };
    }
    let state = if drained {
        AdminState::Drained
    } else {
        AdminState::Active
    };
    let by = AdminBy {
        who: who.to_owned(),
        at_ms: crate::clock::unix_ms(),
    };
    let name = snap.config.geo[geo].service.clone();
    info!(pop = %pop, service = %name, by = %who, state = state.as_str(), "operator sets a service's admin state");
    if !cx
        .state
        .send(Change::ServiceAdmin {
            pop: index,
            service: geo,
            state,
            by,
        })
        .await
    {
        return Response::Error {
            message: "the node is shutting down".to_owned(),
        };
    }
    // This node's answers hold it once its snapshot does; every live peer confirms it in
    // its `drained_svc` key, naming the pair as this node's config does.
    let pair = format!("{pop}/{name}");
    let (confirmed, unconfirmed) = confirm(
        cx,
        |snap| {
            // A reload may have changed the geo names meanwhile: look the name up again.
            snap.config
                .geo
                .iter()
                .position(|g| g.service == name)
                .is_some_and(|g| snap.services[index].is_drained(g) == drained)
        },
        |peer| peer.drained_services.contains(&pair) == drained,
    )
    .await;
    let verb = if drained { "drained" } else { "undrained" };
    let message = confirmation_message(
        &format!("{pop} {verb} for {name}"),
        snap.config.cluster.is_some(),
        &confirmed,
        &unconfirmed,
    );
    Response::AdminSet(AdminReport {
        pop: pair,
        admin: state.as_str().to_owned(),
        by: who.to_owned(),
        confirmed,
        unconfirmed,
        message,
    })
}

/// The sentence a drain's report ends with: `what` ("nyc drained", "nyc drained for api"),
/// then who holds it.
fn confirmation_message(
    what: &str,
    clustered: bool,
    confirmed: &[String],
    unconfirmed: &[String],
) -> String {
    let wait = CONFIRM_WAIT.as_secs();
    if !clustered {
        if unconfirmed.is_empty() {
            format!("{what} (standalone: this node's answers)")
        } else {
            format!("{what}, not in this node's answers within {wait}s")
        }
    } else if unconfirmed.is_empty() {
        format!(
            "{what} cluster-wide: held by {} of {} live nodes",
            confirmed.len(),
            confirmed.len()
        )
    } else {
        format!(
            "{what}; held by {} of {} live nodes, not confirmed within {wait}s by: {}",
            confirmed.len(),
            confirmed.len() + unconfirmed.len(),
            unconfirmed.join(", ")
        )
    }
}

/// Waits (up to [`CONFIRM_WAIT`]) until this node's answers hold a change (`here`) and
/// every live peer says it does (`peer`, on what the peer publishes); returns the nodes that
/// do and those that do not.
async fn confirm(
    cx: &ApiContext,
    here: impl Fn(&Snapshot) -> bool,
    peer: impl Fn(&HotState) -> bool,
) -> (Vec<String>, Vec<String>) {
    let deadline = tokio::time::Instant::now() + CONFIRM_WAIT;
    loop {
        let (yes, no) = confirmations(&cx.state.snapshot.load_full(), &here, &peer);
        if no.is_empty() || tokio::time::Instant::now() >= deadline {
            return (yes, no);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Who holds a change now: this node if `here` says its snapshot does, each live peer if
/// `peer` says its published state does. Returns (nodes that do, nodes that do not), by POP.
fn confirmations(
    snap: &Snapshot,
    here: &impl Fn(&Snapshot) -> bool,
    peer: &impl Fn(&HotState) -> bool,
) -> (Vec<String>, Vec<String>) {
    let names: Vec<&str> = snap.config.pops.iter().map(|p| p.name.as_str()).collect();
    let peers = snap.config.cluster.is_some().then_some(&snap.peers[..]);
    holders(&names, snap.config.node.pop, here(snap), peers, peer)
}

/// [`confirmations`] on its parts: POP `names`, the own POP, whether it holds the change,
/// and the peers (`None`: a standalone node, which has none to ask).
fn holders(
    names: &[&str],
    own: usize,
    here: bool,
    peers: Option<&[PeerView]>,
    peer: &impl Fn(&HotState) -> bool,
) -> (Vec<String>, Vec<String>) {
    let mut yes = Vec::new();
    let mut no = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let holds = if i == own {
            here
        } else {
            match peers.and_then(|p| p.get(i)) {
                Some(p) if p.alive => p.known.as_ref().is_some_and(peer),
                _ => continue,
            }
        };
        if holds {
            yes.push((*name).to_owned());
        } else {
            no.push((*name).to_owned());
        }
    }
    (yes, no)
}

/// The node's view of the cluster.
pub fn status(snap: &Snapshot, cluster: Option<&ClusterHandle>) -> StatusReport {
    status_with(snap, cluster, None)
}

/// [`status`], with the node's readiness.
pub fn status_with(
    snap: &Snapshot,
    cluster: Option<&ClusterHandle>,
    ready: Option<crate::state::owner::Readiness>,
) -> StatusReport {
    let cfg = &snap.config;
    let now_ms = crate::clock::unix_ms();
    let own_digest = cfg.answer_digest();
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
        .map(|(i, (p, s))| {
            let peer = &snap.peers[i];
            let digest = if i == cfg.node.pop {
                Some(own_digest)
            } else {
                peer.known.as_ref().and_then(|k| k.config)
            };
            PopReport {
                name: p.name.clone(),
                this_node: i == cfg.node.pop,
                live: s.live,
                healthy: s.healthy,
                admin: s.admin.as_str().to_owned(),
                load: s.load,
                addresses: p
                    .v4
                    .iter()
                    .map(ToString::to_string)
                    .chain(p.v6.iter().map(ToString::to_string))
                    .collect(),
                view: snap.view_info(i).map(|v| view_report(v, now_ms)),
                admin_by: snap.admin_by[i].as_ref().map(AdminBy::to_value),
                node: peer.addr.map(|a| a.to_string()),
                config_digest: digest.map(|d| format!("{d:016x}")),
                config_differs: digest.is_some_and(|d| d != own_digest),
                services: service_reports(snap, i),
            }
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
        config_digest: Some(format!("{own_digest:016x}")),
        ready: ready.as_ref().is_none_or(|r| r.ready),
        ready_reason: ready.map_or_else(|| "ready".to_owned(), |r| r.reason),
    }
}

/// Every service POP `pop` serves, and its state there.
fn service_reports(snap: &Snapshot, pop: usize) -> Vec<ServiceReport> {
    let status = &snap.pop_status[pop];
    let services = &snap.services[pop];
    snap.config
        .geo
        .iter()
        .enumerate()
        .filter(|(_, g)| g.pops.contains(&pop))
        .map(|(geo, g)| {
            let healthy = !services.is_down(geo);
            let drained = services.is_drained(geo);
            ServiceReport {
                name: g.service.clone(),
                healthy,
                admin: if drained { "drained" } else { "active" }.to_owned(),
                serving: status.live
                    && status.healthy
                    && status.admin == AdminState::Active
                    && healthy
                    && !drained,
                targets: match &g.targets[pop] {
                    Target::Addresses { v4, v6 } => v4
                        .iter()
                        .map(ToString::to_string)
                        .chain(v6.iter().map(ToString::to_string))
                        .collect(),
                    Target::Cname(name) => vec![format!("CNAME {name}")],
                },
            }
        })
        .collect()
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
        Some(n) => config::parse_name(n, snap.config.zones.default_origin())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_drain_is_confirmed_by_this_node_and_every_live_peer_that_says_so() {
        let names = ["ams", "nyc", "syd", "lhr"];
        let peer = |known: Option<&[&str]>, alive: bool| PeerView {
            known: known.map(|pairs| HotState {
                drained_services: pairs.iter().map(|p| (*p).to_owned()).collect(),
                ..HotState::up()
            }),
            alive,
            addr: None,
        };
        // nyc's node drained nyc's api: ams says so, syd not yet, lhr is down (not asked).
        let peers = [
            peer(Some(&["nyc/api"]), true),
            peer(None, true),
            peer(Some(&["nyc/cdn"]), true),
            peer(None, false),
        ];
        let says = |k: &HotState| k.drained_services.iter().any(|p| p == "nyc/api");
        let (yes, no) = holders(&names, 1, true, Some(&peers), &says);
        assert_eq!(yes, ["ams", "nyc"]);
        assert_eq!(no, ["syd"]);
        assert_eq!(
            confirmation_message("nyc drained for api", true, &yes, &no),
            format!(
                "nyc drained for api; held by 2 of 3 live nodes, not confirmed within {}s by: syd",
                CONFIRM_WAIT.as_secs()
            )
        );
        // An undrain is confirmed by peers that no longer list it.
        let (yes, no) = holders(&names, 1, true, Some(&peers), &|k: &HotState| !says(k));
        assert_eq!(yes, ["nyc", "syd"]);
        assert_eq!(no, ["ams"]);
        // A peer that has said nothing yet (alive, no state) has not confirmed.
        let silent = [peer(None, true), peer(None, true)];
        let (yes, no) = holders(&names[..2], 0, true, Some(&silent), &says);
        assert_eq!(yes, ["ams"]);
        assert_eq!(no, ["nyc"]);
        // Standalone: this node only.
        let (yes, no) = holders(&names, 1, true, None, &says);
        assert_eq!(yes, ["nyc"]);
        assert!(no.is_empty());
        assert_eq!(
            confirmation_message("nyc drained for api", false, &yes, &no),
            "nyc drained for api (standalone: this node's answers)"
        );
        let (yes, no) = holders(&names, 1, false, None, &says);
        assert_eq!(
            confirmation_message("nyc drained", false, &yes, &no),
            format!(
                "nyc drained, not in this node's answers within {}s",
                CONFIRM_WAIT.as_secs()
            )
        );
        let all = ["ams".to_owned(), "nyc".to_owned(), "syd".to_owned()];
        assert_eq!(
            confirmation_message("nyc drained for api", true, &all, &[]),
            "nyc drained for api cluster-wide: held by 3 of 3 live nodes"
        );
    }
}
