//! [E] The tasks that feed a node's state from its config's settings: the own POP's health
//! and load probes and the own route view's source (route file, MRT dump watcher, BGP
//! session); and [`Reloader`], which re-reads the config and restarts exactly those of them
//! whose settings changed.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument as _, info, warn};

use crate::bgp;
use crate::cluster::node::ClusterHandle;
use crate::config::{BgpMode, Config, OwnViewSource};
use crate::health;
use crate::routes::OwnView;
use crate::state::Change;
use crate::state::builder::Builder;
use crate::state::owner::{self, StateHandle};
use crate::viewsource;

/// A callback that sees every own view the view source publishes.
pub type ViewTap = Arc<dyn Fn(&OwnView) + Send + Sync>;

/// The tasks that run from a config's settings (probes, the own view's source) and what
/// they need to start again when a reload changes those settings.
pub struct Sources {
    probes: CancellationToken,
    view: CancellationToken,
    observer: Option<health::Observer>,
    builder: Builder,
    tap: Option<ViewTap>,
    run_probes: bool,
    shutdown: CancellationToken,
}

impl Sources {
    /// Sources that run until `shutdown`; nothing starts until asked.
    pub fn new(
        builder: Builder,
        observer: Option<health::Observer>,
        tap: Option<ViewTap>,
        run_probes: bool,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            probes: shutdown.child_token(),
            view: shutdown.child_token(),
            observer,
            builder,
            tap,
            run_probes,
            shutdown,
        }
    }

    /// (Re)starts the probes `config` names (if this node runs probes), stopping those
    /// that ran.
    pub fn start_probes(&mut self, config: &Config, state: &StateHandle) {
        self.probes.cancel();
        self.probes = self.shutdown.child_token();
        if self.run_probes {
            spawn_probes(config, state, self.observer.clone(), &self.probes);
        }
    }

    /// (Re)starts the own view's source `config` names, stopping the one that ran.
    pub async fn start_view(&mut self, config: &Config, state: &StateHandle) -> anyhow::Result<()> {
        self.view.cancel();
        self.view = self.shutdown.child_token();
        spawn_own_view(
            config,
            state,
            self.builder.clone(),
            self.tap.clone(),
            &self.view,
        )
        .await
    }
}

/// Reloads a node's config from its file: validated whole first, refused whole with the
/// reason if anything is wrong (the running config stays), otherwise applied atomically
/// for answers; what only a restart changes is named.
pub struct Reloader {
    path: PathBuf,
    state: StateHandle,
    cluster: Option<Arc<ClusterHandle>>,
    sources: tokio::sync::Mutex<Sources>,
}

/// Why a reload did not apply.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The new config is refused (`file:line:col: reason`).
    #[error("config refused: {0}")]
    Config(#[from] crate::config::ConfigError),
    /// The new config cannot apply to the running node.
    #[error("{0}")]
    Refused(String),
    /// The new config applies, but the own view's new source did not start.
    #[error(
        "the config applied, but its own view's source did not start ({0}); answers keep the view the node had"
    )]
    Source(String),
}

impl Reloader {
    /// A reloader of the config at `path`, restarting `sources` as settings change.
    pub fn new(
        path: PathBuf,
        state: StateHandle,
        cluster: Option<Arc<ClusterHandle>>,
        sources: Sources,
    ) -> Self {
        Self {
            path,
            state,
            cluster,
            sources: tokio::sync::Mutex::new(sources),
        }
    }

    /// Re-reads the config file and every file it names, and applies it.
    pub async fn reload(&self) -> Result<owner::ReloadOutcome, ReloadError> {
        let path = self.path.clone();
        let loaded = tokio::task::spawn_blocking(move || crate::config::load(&path))
            .await
            .map_err(|e| ReloadError::Refused(format!("loading the config failed: {e}")))??;
        for w in &loaded.warnings {
            warn!("{w}");
        }
        let outcome = self
            .state
            .reload(loaded.config)
            .await
            .map_err(ReloadError::Refused)?;
        let (old, new) = (&outcome.previous, &outcome.config);
        let mut sources = self.sources.lock().await;
        if let (Some(cluster), Some(c)) = (&self.cluster, &new.cluster) {
            let names = new.pops.iter().map(|p| p.name.clone()).collect();
            cluster.admit(names, c.revoked.iter().cloned().collect());
        }
        if old.node.probes != new.node.probes || old.node.load != new.node.load {
            sources.start_probes(new, &self.state);
        }
        let view_source = |c: &Config| format!("{:?}", c.node.own_view);
        if view_source(old) != view_source(new) {
            sources
                .start_view(new, &self.state)
                .await
                .map_err(|e| ReloadError::Source(format!("{e:#}")))?;
        }
        info!(
            changes = ?outcome.changes,
            needs_restart = ?outcome.needs_restart,
            "config reloaded"
        );
        crate::dns::notify::on_reload(old, new, &sources.shutdown);
        Ok(outcome)
    }
}

/// Starts the own POP's health and load probes, each bridged to the state owner through a
/// watch (only the latest verdict matters; none is lost to a full queue).
pub(crate) fn spawn_probes(
    config: &Config,
    state: &StateHandle,
    observer: Option<health::Observer>,
    shutdown: &CancellationToken,
) {
    if !config.node.probes.is_empty() {
        let (tx, rx) = watch::channel(true);
        let (svc_tx, svc_rx) = watch::channel(Vec::new());
        tokio::spawn(
            health::monitor(
                config.node.probes.clone(),
                observer.clone(),
                move |healthy| {
                    tx.send_replace(healthy);
                },
                move |down| {
                    svc_tx.send_replace(down);
                },
                shutdown.clone(),
            )
            .instrument(tracing::Span::current()),
        );
        bridge(rx, state.clone(), Change::Health);
        // Probes start up, and so do the services they check (after a reload too): the
        // bridge sends that first, then every change, in order.
        let mut svc_rx = svc_rx;
        svc_rx.mark_changed();
        bridge(svc_rx, state.clone(), Change::ServicesDown);
    } else {
        // No probe (or none any more, after a reload): the POP is healthy.
        let state = state.clone();
        tokio::spawn(async move {
            state.send(Change::Health(true)).await
                && state.send(Change::ServicesDown(Vec::new())).await
        });
    }
    if let Some(probe) = config.node.load.clone() {
        let (tx, rx) = watch::channel(None);
        tokio::spawn(
            health::monitor_load(
                probe,
                observer,
                move |load| {
                    tx.send_replace(load);
                },
                shutdown.clone(),
            )
            .instrument(tracing::Span::current()),
        );
        bridge(rx, state.clone(), Change::Load);
    } else {
        let state = state.clone();
        tokio::spawn(async move { state.send(Change::Load(None)).await });
    }
}

/// Hands every new value of `rx` to the state owner as `change(value)`.
fn bridge<T: Clone + Send + Sync + 'static>(
    mut rx: watch::Receiver<T>,
    state: StateHandle,
    change: fn(T) -> Change,
) {
    tokio::spawn(
        async move {
            while rx.changed().await.is_ok() {
                let value = rx.borrow_and_update().clone();
                if !state.send(change(value)).await {
                    return;
                }
            }
        }
        .instrument(tracing::Span::current()),
    );
}

/// Starts the source of the own POP's route view when it runs on its own (`[node.mrt]`:
/// the dump watcher; `[node.bgp]`: the BGP session, whose listener is bound here in passive
/// mode). A route file needs nothing.
async fn spawn_own_view(
    config: &Config,
    state: &StateHandle,
    builder: Builder,
    tap: Option<ViewTap>,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let own = config.own_pop();
    let describe = config.node.own_view.describe();
    let (tx, rx) = watch::channel(None::<OwnView>);
    let publish: viewsource::Publish = Arc::new(move |v: OwnView| {
        if let Some(tap) = &tap {
            tap(&v);
        }
        tx.send_replace(Some(v));
    });
    match &config.node.own_view {
        OwnViewSource::File(_) => return Ok(()),
        OwnViewSource::Mrt(source) => {
            tokio::spawn(
                viewsource::watch_mrt(
                    source.clone(),
                    own.asn,
                    describe,
                    own.route_view.clone(),
                    config.node.max_file_bytes,
                    builder,
                    publish,
                    shutdown.clone(),
                )
                .instrument(tracing::Span::current()),
            );
        }
        OwnViewSource::Bgp(bgp_config) => {
            let listener = match bgp_config.mode {
                BgpMode::Active => None,
                BgpMode::Passive(addr) => Some(
                    TcpListener::bind(addr)
                        .await
                        .with_context(|| format!("cannot bind BGP listener {addr}"))?,
                ),
            };
            tokio::spawn(
                bgp::session::run(
                    bgp_config.clone(),
                    own.asn,
                    describe,
                    listener,
                    builder,
                    publish,
                    shutdown.clone(),
                )
                .instrument(tracing::Span::current()),
            );
        }
    }
    // Only the latest view matters: a view replaced before the owner took it is skipped.
    let mut rx = rx;
    let state = state.clone();
    tokio::spawn(
        async move {
            while rx.changed().await.is_ok() {
                let latest = rx.borrow_and_update().clone();
                if let Some(v) = latest
                    && !state.send(Change::OwnView(v)).await
                {
                    return;
                }
            }
        }
        .instrument(tracing::Span::current()),
    );
    Ok(())
}
