//! [E] The owner of a node's state: the one task that applies [`Change`]s to the
//! [`NodeState`] and carries out what follows (publishing snapshots, running builds on the
//! node's builder thread, announcing the own state to the cluster, serving the own view,
//! keeping operators' admin states on disk, logging). Nothing else writes the snapshot.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument as _, error, info, warn};

use super::builder::Builder;
use super::{AdminRecord, Change, Effects, Event, NodeState};
use crate::cluster::state::{AdminBy, HotState, Mode};
use crate::cluster::view_sync::ViewServer;
use crate::policy::AdminState;
use crate::routes::transfer::{self, EncodedView};
use crate::snapshot::{Snapshot, Tables};

/// Changes queued for the owner before senders wait.
const QUEUE: usize = 1024;

/// Whether a node is ready to serve as a member of its cluster, and why not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Readiness {
    /// Ready: load balancers, systemd and Kubernetes may send it traffic.
    pub ready: bool,
    /// What it waits for, or how it became ready.
    pub reason: String,
}

/// What a reload did.
#[derive(Clone, Debug)]
pub struct ReloadOutcome {
    /// What changed and applies now.
    pub changes: Vec<String>,
    /// What changed but waits for a restart.
    pub needs_restart: Vec<String>,
    /// The config the node runs from now on (compare with the one before to restart
    /// probes and the own view source).
    pub config: Arc<crate::config::Config>,
    /// The one before.
    pub previous: Arc<crate::config::Config>,
}

/// Requests to the owner besides changes.
pub enum Control {
    /// Apply a new config (validated whole); the reply comes once answers use it.
    Reload {
        /// The config.
        config: Box<crate::config::Config>,
        /// The outcome, or why it was refused.
        reply: oneshot::Sender<Result<ReloadOutcome, String>>,
    },
    /// Answer at once (the watchdog's proof that the owner is not stuck).
    Ping(oneshot::Sender<()>),
}

/// How the rest of the node reaches its state: changes go in through `changes`; answers,
/// the API and metrics read `snapshot`; `ready` says whether the node is ready.
#[derive(Clone)]
pub struct StateHandle {
    /// Where changes go.
    pub changes: mpsc::Sender<Change>,
    /// Requests (reload, ping).
    pub control: mpsc::Sender<Control>,
    /// What answers are computed from (written by the owner only).
    pub snapshot: Arc<ArcSwap<Snapshot>>,
    /// Readiness, as the owner sees it after each change.
    pub ready: watch::Receiver<Readiness>,
}

impl StateHandle {
    /// Sends `change` to the owner; false if the node is shutting down.
    pub async fn send(&self, change: Change) -> bool {
        self.changes.send(change).await.is_ok()
    }

    /// Reloads `config`: the outcome once answers use it, or why it was refused.
    pub async fn reload(&self, config: crate::config::Config) -> Result<ReloadOutcome, String> {
        let (reply, rx) = oneshot::channel();
        let request = Control::Reload {
            config: Box::new(config),
            reply,
        };
        if self.control.send(request).await.is_err() {
            return Err("the node is shutting down".to_owned());
        }
        rx.await
            .unwrap_or_else(|_| Err("the node is shutting down".to_owned()))
    }

    /// Whether the owner answers within `within`.
    pub async fn ping(&self, within: std::time::Duration) -> bool {
        let (tx, rx) = oneshot::channel();
        if self.control.send(Control::Ping(tx)).await.is_err() {
            return false;
        }
        matches!(tokio::time::timeout(within, rx).await, Ok(Ok(())))
    }
}

/// What the owner works with besides the state.
pub struct OwnerParts {
    /// The node's builder thread.
    pub builder: Builder,
    /// Where the own state is announced (clustered nodes).
    pub announce: Option<watch::Sender<HotState>>,
    /// Serves the own view to peers (clustered nodes).
    pub views: Option<Arc<ViewServer>>,
    /// Where operators' admin states and kept views live, if anywhere.
    pub state_dir: Option<PathBuf>,
    /// Told the digests of the views held (clustered nodes): at start once the kept views
    /// are loaded, and after a reload that rebuilt the tables.
    pub held: Option<mpsc::Sender<Vec<Option<u64>>>>,
    /// The longest wait for readiness: ready after it whatever is missing (logged).
    pub ready_wait: std::time::Duration,
}

/// Starts the owner of `state` until `shutdown`. With a `state_dir` and a cluster, the
/// views kept from the last run load first (on the builder thread); changes that come
/// meanwhile go on top of them.
pub fn start(
    state: NodeState,
    parts: OwnerParts,
    shutdown: CancellationToken,
) -> (StateHandle, JoinHandle<()>) {
    // The fast path's table, built before any query needs it.
    crate::dns::fast::prepare(state.snapshot());
    let snapshot = Arc::new(ArcSwap::new(state.snapshot().clone()));
    let (tx, rx) = mpsc::channel(QUEUE);
    let (control_tx, control_rx) = mpsc::channel(16);
    let (ready_tx, ready_rx) = watch::channel(Readiness {
        ready: false,
        reason: "starting".to_owned(),
    });
    let handle = StateHandle {
        changes: tx,
        control: control_tx,
        snapshot: snapshot.clone(),
        ready: ready_rx,
    };
    let task = tokio::spawn(
        run(state, rx, control_rx, snapshot, ready_tx, parts, shutdown)
            .instrument(tracing::Span::current()),
    );
    (handle, task)
}

/// Loads the admin states operators set, kept in `state_dir`, for the POPs of `names`.
pub fn load_admin(state_dir: Option<&Path>, names: &[String]) -> Vec<Option<AdminRecord>> {
    let mut out = vec![None; names.len()];
    let Some(dir) = state_dir else {
        return out;
    };
    let path = dir.join(ADMIN_FILE);
    let text = match crate::config::read_limited(&path, ADMIN_MAX_BYTES) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return out,
        Err(e) => {
            warn!(file = %path.display(), error = %e, "cannot read the kept admin states; using the config's");
            return out;
        }
    };
    let kept: std::collections::BTreeMap<String, KeptAdmin> = match serde_json::from_str(&text) {
        Ok(k) => k,
        Err(e) => {
            warn!(file = %path.display(), error = %e, "kept admin states do not parse; using the config's");
            return out;
        }
    };
    for (name, k) in kept {
        if let Some(i) = names.iter().position(|n| *n == name) {
            out[i] = Some(AdminRecord {
                state: k.state,
                by: AdminBy {
                    who: k.by,
                    at_ms: k.at_ms,
                },
                config_admin: k.config_admin,
            });
        }
    }
    out
}

/// Loads the services' admin states operators set, kept in `state_dir` (keys `POP/service`
/// in the same file), for the POPs and services of `config`.
pub fn load_service_admin(
    state_dir: Option<&Path>,
    config: &crate::config::Config,
) -> std::collections::BTreeMap<(usize, usize), AdminRecord> {
    let mut out = std::collections::BTreeMap::new();
    let Some(dir) = state_dir else {
        return out;
    };
    // Errors were logged by `load_admin`, which reads the same file first.
    let Ok(text) = crate::config::read_limited(&dir.join(ADMIN_FILE), ADMIN_MAX_BYTES) else {
        return out;
    };
    let Ok(kept) = serde_json::from_str::<std::collections::BTreeMap<String, KeptAdmin>>(&text)
    else {
        return out;
    };
    for (key, k) in kept {
        let Some((pop, service)) = key.split_once('/') else {
            continue;
        };
        let pop = config.pops.iter().position(|p| p.name == pop);
        let service = config.geo.iter().position(|g| g.service == service);
        if let (Some(pop), Some(service)) = (pop, service) {
            out.insert(
                (pop, service),
                AdminRecord {
                    state: k.state,
                    by: AdminBy {
                        who: k.by,
                        at_ms: k.at_ms,
                    },
                    config_admin: k.config_admin,
                },
            );
        }
    }
    out
}

/// File of operators' admin states under `state_dir`.
const ADMIN_FILE: &str = "admin.json";
/// Largest admin file read (a few hundred bytes per POP).
const ADMIN_MAX_BYTES: u64 = 1 << 20;

#[derive(serde::Serialize, serde::Deserialize)]
struct KeptAdmin {
    state: AdminState,
    by: String,
    at_ms: u64,
    config_admin: AdminState,
}

fn save_admin(dir: &Path, names: &[String], state: &NodeState) -> std::io::Result<()> {
    let keep = |r: &AdminRecord| KeptAdmin {
        state: r.state,
        by: r.by.who.clone(),
        at_ms: r.by.at_ms,
        config_admin: r.config_admin,
    };
    let mut kept: std::collections::BTreeMap<String, KeptAdmin> = names
        .iter()
        .zip(state.admin_records())
        .filter_map(|(n, r)| Some((n.clone(), keep(r.as_ref()?))))
        .collect();
    let config = state.config();
    for (&(pop, service), r) in state.service_admin_records() {
        let key = format!("{}/{}", config.pops[pop].name, config.geo[service].service);
        kept.insert(key, keep(r));
    }
    let text = serde_json::to_string_pretty(&kept).map_err(std::io::Error::other)?;
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{ADMIN_FILE}.tmp"));
    std::fs::write(&tmp, text)?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(tmp, dir.join(ADMIN_FILE))
}

/// Builds of a reloaded config: its tables from its files, and the kept views over them.
type ReloadBuild = (Arc<crate::config::Config>, Tables, Vec<Option<u64>>);

/// A reload waiting for its tables: who asked, and what to tell them.
struct PendingReload {
    build: oneshot::Receiver<ReloadBuild>,
    reply: oneshot::Sender<Result<ReloadOutcome, String>>,
    outcome: ReloadOutcome,
}

#[allow(clippy::too_many_arguments)]
async fn run(
    mut state: NodeState,
    mut rx: mpsc::Receiver<Change>,
    mut control: mpsc::Receiver<Control>,
    snapshot: Arc<ArcSwap<Snapshot>>,
    ready: watch::Sender<Readiness>,
    mut parts: OwnerParts,
    shutdown: CancellationToken,
) {
    let started = tokio::time::Instant::now();
    let config = state.config().clone();
    let names: Vec<String> = config.pops.iter().map(|p| p.name.clone()).collect();
    let mut build: Option<oneshot::Receiver<Tables>> = None;
    let mut kept: Option<oneshot::Receiver<(crate::snapshot::StreamedViews, Vec<Option<u64>>)>> =
        None;
    let mut reloading: Option<PendingReload> = None;
    // The views kept from the last run: the first build.
    match (&config.cluster, &config.node.state_dir) {
        (Some(_), Some(dir)) if state.is_building() => {
            let (dir, cfg, tables) = (
                dir.join("views"),
                config.clone(),
                state.snapshot().tables().clone(),
            );
            kept = Some(
                parts
                    .builder
                    .run(move || crate::cluster::view_cache::load(&dir, &cfg, &tables)),
            );
        }
        _ => {
            if let Some(held) = &parts.held {
                let _ = held.send(vec![None; names.len()]).await;
            }
        }
    }
    let mut encoding: Option<(u64, oneshot::Receiver<EncodedView>)> = None;
    // The own view the config names (a route file, or the MRT dump read with it) is
    // the first one peers pull, until the live source (if any) replaces it.
    let own = config.node.pop;
    if config.cluster.is_some()
        && let Some(view) = state.snapshot().view(own).cloned()
    {
        let first = Change::OwnView(crate::routes::OwnView {
            view: Some(view),
            source: config.node.own_view.describe(),
            stale_since_ms: None,
        });
        let fx = state.apply(first, crate::clock::unix_ms());
        perform(
            &state,
            fx,
            &snapshot,
            &mut parts,
            &mut build,
            &mut encoding,
            &names,
        )
        .await;
    }
    let mut latched = false;
    loop {
        if !latched {
            latched = update_readiness(&state, &ready, started, parts.ready_wait);
        }
        let ready_deadline = (!latched).then(|| started + parts.ready_wait);
        let change = tokio::select! {
            c = rx.recv() => match c {
                Some(c) => c,
                None => return,
            },
            request = control.recv() => match request {
                Some(Control::Ping(reply)) => {
                    let _ = reply.send(());
                    continue;
                }
                Some(Control::Reload { config, reply }) => {
                    if reloading.is_some() {
                        let _ = reply.send(Err("a reload is running; try again when it is done".to_owned()));
                        continue;
                    }
                    let previous = state.config().clone();
                    let plan = match super::reload::plan(&previous, *config) {
                        Ok(p) => p,
                        Err(e) => {
                            warn!(reason = %e, "reload refused; the running config stays");
                            let _ = reply.send(Err(e));
                            continue;
                        }
                    };
                    let mut outcome = ReloadOutcome {
                        changes: plan.changes.clone(),
                        needs_restart: plan.needs_restart.clone(),
                        config: previous.clone(),
                        previous,
                    };
                    let (fx, applied) = state.reload(plan);
                    let job = fx.reload.as_ref().map(|j| j.config.clone());
                    // The reply goes once answers use the new config (or its build runs).
                    perform(&state, fx, &snapshot, &mut parts, &mut build, &mut encoding, &names).await;
                    if applied {
                        outcome.config = state.config().clone();
                        let _ = reply.send(Ok(outcome));
                    } else if let Some(cfg) = job {
                        let dir = state.config().node.state_dir.clone();
                        let build = parts.builder.run(move || reload_tables(cfg, dir));
                        reloading = Some(PendingReload { build, reply, outcome });
                    }
                    continue;
                }
                None => return,
            },
            built = async { build.as_mut().expect("guarded").await }, if build.is_some() => {
                build = None;
                match built {
                    Ok(tables) => Change::Built(tables),
                    Err(_) => {
                        error!("a table rebuild failed; answers keep the tables in use");
                        Change::Built(state.snapshot().tables().clone())
                    }
                }
            }
            loaded = async { kept.as_mut().expect("guarded").await }, if kept.is_some() => {
                kept = None;
                match loaded {
                    Ok((streamed, held)) => {
                        if let Some(tx) = &parts.held {
                            let _ = tx.send(held).await;
                        }
                        Change::Kept(streamed)
                    }
                    Err(_) => {
                        error!("loading the kept views failed; they will be pulled again");
                        if let Some(tx) = &parts.held {
                            let _ = tx.send(vec![None; names.len()]).await;
                        }
                        Change::Built(state.snapshot().tables().clone())
                    }
                }
            }
            done = async { (&mut reloading.as_mut().expect("guarded").build).await }, if reloading.is_some() => {
                let PendingReload { reply, mut outcome, .. } = reloading.take().expect("guarded");
                match done {
                    Ok((config, tables, held)) => {
                        outcome.config = config.clone();
                        let fx = state.apply(Change::Reloaded { config, tables, held }, crate::clock::unix_ms());
                        perform(&state, fx, &snapshot, &mut parts, &mut build, &mut encoding, &names).await;
                        let _ = reply.send(Ok(outcome));
                    }
                    Err(_) => {
                        error!("building the reloaded config's tables failed; the running config stays");
                        let _ = reply.send(Err("building the new tables failed; the running config stays".to_owned()));
                    }
                }
                continue;
            }
            encoded = async { (&mut encoding.as_mut().expect("guarded").1).await }, if encoding.is_some() => {
                let (version, _) = encoding.take().expect("guarded");
                Change::OwnViewEncoded {
                    version,
                    encoded: encoded.ok().map(Arc::new),
                }
            }
            () = async {
                match ready_deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            } => continue,
            () = shutdown.cancelled() => return,
        };
        let fx = state.apply(change, crate::clock::unix_ms());
        perform(
            &state,
            fx,
            &snapshot,
            &mut parts,
            &mut build,
            &mut encoding,
            &names,
        )
        .await;
    }
}

/// The tables of a reloaded `config`: from its files, with the views kept in `state_dir`.
fn reload_tables(config: Arc<crate::config::Config>, state_dir: Option<PathBuf>) -> ReloadBuild {
    let tables = Tables::from_config(&config);
    let mut held = vec![None; config.pops.len()];
    let tables = match (&config.cluster, state_dir) {
        (Some(_), Some(dir)) => {
            let (streamed, kept) =
                crate::cluster::view_cache::load(&dir.join("views"), &config, &tables);
            held = kept;
            tables.with_streamed(&streamed)
        }
        _ => tables,
    };
    (config, tables, held)
}

/// Publishes readiness; returns true once the node is ready (which then holds: readiness
/// does not flap with every view change).
fn update_readiness(
    state: &NodeState,
    ready: &watch::Sender<Readiness>,
    started: tokio::time::Instant,
    wait: std::time::Duration,
) -> bool {
    let now = match state.readiness() {
        Ok(()) => Readiness {
            ready: true,
            reason: "ready: own view in, cluster joined, every live peer's view held".to_owned(),
        },
        Err(why) if started.elapsed() >= wait => Readiness {
            ready: true,
            reason: format!("ready after waiting {}s (still {why})", wait.as_secs()),
        },
        Err(why) => Readiness {
            ready: false,
            reason: why,
        },
    };
    if now.ready {
        if now.reason.starts_with("ready after") {
            warn!(reason = %now.reason, "ready without everything in");
        } else {
            info!(reason = %now.reason, "ready");
        }
    }
    let done = now.ready;
    ready.send_if_modified(|r| {
        if *r == now {
            false
        } else {
            *r = now;
            true
        }
    });
    done
}

async fn perform(
    state: &NodeState,
    fx: Effects,
    snapshot: &ArcSwap<Snapshot>,
    parts: &mut OwnerParts,
    build: &mut Option<oneshot::Receiver<Tables>>,
    encoding: &mut Option<(u64, oneshot::Receiver<EncodedView>)>,
    names: &[String],
) {
    for event in &fx.events {
        log_event(event);
    }
    if let Some(next) = fx.publish {
        // A new config's fast-path table is built here, not by the first query after it.
        crate::dns::fast::prepare(&next);
        snapshot.store(next);
    }
    if let Some(job) = fx.build {
        let config = state.config().clone();
        *build = Some(parts.builder.run(move || job.run(&config)));
    }
    if let Some((view, version)) = fx.encode {
        // A newer version replaces an encoding still running: its result is dropped.
        *encoding = Some((
            version,
            parts.builder.run(move || transfer::encode(&view, version)),
        ));
    }
    if let (Some(encoded), Some(server)) = (fx.serve, &parts.views) {
        server.set(encoded);
    }
    if let (Some(hot), Some(tx)) = (fx.announce, &parts.announce) {
        tx.send_replace(hot);
    }
    if let (Some(held), Some(tx)) = (fx.held, &parts.held) {
        let _ = tx.send(held).await;
    }
    if fx.persist_admin
        && let Some(dir) = &parts.state_dir
        && let Err(e) = save_admin(dir, names, state)
    {
        warn!(dir = %dir.display(), error = %e, "cannot keep the admin states on disk; they hold until a restart");
    }
}

fn log_event(event: &Event) {
    match event {
        Event::Mode { before, after } => log_mode_change(*before, *after),
        Event::OwnHealth(true) => info!("own POP healthy again: handed out"),
        Event::OwnHealth(false) => warn!("own POP unhealthy: withdrawn from answers"),
        Event::Admin { pop, state, by } => {
            info!(pop = %pop, by = %by, state = state.as_str(), "admin state set by an operator");
        }
        Event::PeerAdmin { pop, state, by } => {
            info!(pop = %pop, by = by.as_deref().unwrap_or("its config"), state = state.as_str(), "admin state changed at the POP's node");
        }
        Event::OwnView {
            source,
            routes,
            stale_since_ms,
        } => match stale_since_ms {
            None => info!(source = %source, routes, "own route view updated"),
            Some(since) => {
                warn!(source = %source, routes, stale_since_ms = since, "own route view stale");
            }
        },
        Event::ServiceHealth {
            service,
            healthy: true,
        } => info!(service = %service, "own POP's service healthy again: handed out"),
        Event::ServiceHealth {
            service,
            healthy: false,
        } => warn!(service = %service, "own POP's service unhealthy: withdrawn from its answers"),
        Event::ServiceAdmin {
            pop,
            service,
            state,
            by,
        } => {
            info!(pop = %pop, service = %service, by = %by, state = state.as_str(), "service admin state set by an operator");
        }
        Event::Refused(why) => warn!(reason = %why, "change refused"),
        Event::Reloaded => info!("reloaded config in answers"),
    }
}

fn log_mode_change(before: Mode, after: Mode) {
    match (before, after) {
        (Mode::Standalone, Mode::LocalOnly { alive, quorum }) => {
            info!(
                alive,
                quorum, "waiting for peers: answering local-only until a quorum is seen"
            );
            return;
        }
        (Mode::Standalone, Mode::Cluster { alive }) => {
            info!(alive, "answering from the whole cluster");
            return;
        }
        _ => {}
    }
    match (before.is_local_only(), after) {
        (false, Mode::LocalOnly { alive, quorum }) => warn!(
            alive,
            quorum, "partitioned: fewer nodes alive than the quorum; answering local-only"
        ),
        (true, Mode::Cluster { alive }) => {
            info!(alive, "quorum regained: answering from the whole cluster");
        }
        _ => {}
    }
}
