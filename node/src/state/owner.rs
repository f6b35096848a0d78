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

/// How the rest of the node reaches its state: changes go in through `changes`; answers,
/// the API and metrics read `snapshot`.
#[derive(Clone)]
pub struct StateHandle {
    /// Where changes go.
    pub changes: mpsc::Sender<Change>,
    /// What answers are computed from (written by the owner only).
    pub snapshot: Arc<ArcSwap<Snapshot>>,
}

impl StateHandle {
    /// Sends `change` to the owner; false if the node is shutting down.
    pub async fn send(&self, change: Change) -> bool {
        self.changes.send(change).await.is_ok()
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
    /// Told the digests of the kept views once they are loaded (clustered nodes).
    pub held: Option<oneshot::Sender<Vec<Option<u64>>>>,
}

/// Starts the owner of `state` until `shutdown`. With a `state_dir` and a cluster, the
/// views kept from the last run load first (on the builder thread); changes that come
/// meanwhile go on top of them.
pub fn start(
    state: NodeState,
    parts: OwnerParts,
    shutdown: CancellationToken,
) -> (StateHandle, JoinHandle<()>) {
    let snapshot = Arc::new(ArcSwap::new(state.snapshot().clone()));
    let (tx, rx) = mpsc::channel(QUEUE);
    let handle = StateHandle {
        changes: tx,
        snapshot: snapshot.clone(),
    };
    let task = tokio::spawn(
        run(state, rx, snapshot, parts, shutdown).instrument(tracing::Span::current()),
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

fn save_admin(
    dir: &Path,
    names: &[String],
    records: &[Option<AdminRecord>],
) -> std::io::Result<()> {
    let kept: std::collections::BTreeMap<&str, KeptAdmin> = names
        .iter()
        .zip(records)
        .filter_map(|(n, r)| {
            let r = r.as_ref()?;
            Some((
                n.as_str(),
                KeptAdmin {
                    state: r.state,
                    by: r.by.who.clone(),
                    at_ms: r.by.at_ms,
                    config_admin: r.config_admin,
                },
            ))
        })
        .collect();
    let text = serde_json::to_string_pretty(&kept).map_err(std::io::Error::other)?;
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{ADMIN_FILE}.tmp"));
    std::fs::write(&tmp, text)?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(tmp, dir.join(ADMIN_FILE))
}

async fn run(
    mut state: NodeState,
    mut rx: mpsc::Receiver<Change>,
    snapshot: Arc<ArcSwap<Snapshot>>,
    mut parts: OwnerParts,
    shutdown: CancellationToken,
) {
    let config = state.config().clone();
    let names: Vec<String> = config.pops.iter().map(|p| p.name.clone()).collect();
    let mut build: Option<oneshot::Receiver<Tables>> = None;
    let mut kept: Option<oneshot::Receiver<(crate::snapshot::StreamedViews, Vec<Option<u64>>)>> =
        None;
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
            if let Some(held) = parts.held.take() {
                let _ = held.send(vec![None; names.len()]);
            }
        }
    }
    let mut encoding: Option<(u64, oneshot::Receiver<EncodedView>)> = None;
    // The own view the config names (a route file, or the MRT dump read with the config) is
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
        );
    }
    loop {
        let change = tokio::select! {
            c = rx.recv() => match c {
                Some(c) => c,
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
                        if let Some(tx) = parts.held.take() {
                            let _ = tx.send(held);
                        }
                        Change::Kept(streamed)
                    }
                    Err(_) => {
                        error!("loading the kept views failed; they will be pulled again");
                        if let Some(tx) = parts.held.take() {
                            let _ = tx.send(vec![None; names.len()]);
                        }
                        Change::Built(state.snapshot().tables().clone())
                    }
                }
            }
            encoded = async { (&mut encoding.as_mut().expect("guarded").1).await }, if encoding.is_some() => {
                let (version, _) = encoding.take().expect("guarded");
                Change::OwnViewEncoded {
                    version,
                    encoded: encoded.ok().map(Arc::new),
                }
            }
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
        );
    }
}

fn perform(
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
    if fx.persist_admin
        && let Some(dir) = &parts.state_dir
        && let Err(e) = save_admin(dir, names, state.admin_records())
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
        Event::Refused(why) => warn!(reason = %why, "change refused"),
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
