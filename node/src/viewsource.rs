//! [E] Sources of the own POP's route view that keep running after start-up: the MRT dump
//! watcher (here) and the BGP session ([`crate::bgp::session`]).
//!
//! The MRT watcher checks the dump's size and modification time every `poll_interval`. A
//! change is loaded once two checks in a row agree on the new size and time, so a dump that
//! is still being written is not read half-way. A dump that cannot be read or loaded keeps the
//! last good view, published again marked stale until a good dump replaces it; a partial
//! load is published, with its skipped entries counted in the log.
//!
//! Loading a dump and building its view takes a good fraction of a CPU second: it runs on
//! the node's builder thread ([`crate::state::builder`]), below the DNS threads.

use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::config::MrtSource;
use crate::routes::mrt;
use crate::routes::{OwnView, RouteView};
use crate::state::builder::Builder;

/// The callback that receives views.
pub type Publish = Arc<dyn Fn(OwnView) + Send + Sync>;

/// What identifies a version of a file without reading it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
}

fn stamp(path: &Path) -> std::io::Result<Stamp> {
    let meta = std::fs::metadata(path)?;
    Ok(Stamp {
        len: meta.len(),
        modified: meta.modified().ok(),
    })
}

/// Watches `source` until `shutdown`; `current` is the view loaded with the config. Dumps
/// are read (up to `max_bytes`) and loaded on `builder`.
#[allow(clippy::too_many_arguments)]
pub async fn watch_mrt(
    source: MrtSource,
    own_asn: u32,
    describe: String,
    current: Option<Arc<RouteView>>,
    max_bytes: u64,
    builder: Builder,
    publish: Publish,
    shutdown: CancellationToken,
) {
    let path = source.path.clone();
    let mut known = stamp(&path).ok();
    let mut pending: Option<Stamp> = None;
    let mut last = current;
    let mut stale = false;
    let mut ticker = tokio::time::interval(source.poll_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = shutdown.cancelled() => return,
        }
        let now = match stamp(&path) {
            Ok(s) => s,
            Err(e) => {
                if !stale {
                    warn!(file = %path.display(), error = %e, "MRT dump unreadable; last view kept, marked stale");
                    stale = mark_stale(&describe, &last, &publish);
                }
                pending = None;
                continue;
            }
        };
        if Some(now) == known {
            pending = None;
            continue;
        }
        if pending != Some(now) {
            // Changed since the last check: wait for one more check to agree.
            pending = Some(now);
            continue;
        }
        known = Some(now);
        pending = None;
        let (p, peer) = (path.clone(), source.peer.clone());
        let loaded = builder
            .run(move || {
                let bytes = crate::config::read_bytes_limited(&p, max_bytes)
                    .map_err(|e| format!("cannot read: {e}"))?;
                mrt::load(&bytes, &peer, own_asn).map_err(|e| e.to_string())
            })
            .await
            .unwrap_or_else(|_| Err("loader failed".to_owned()));
        match loaded {
            Ok(load) => {
                if load.skipped.is_empty() {
                    info!(file = %path.display(), routes = load.view.len(), "MRT dump reloaded");
                } else {
                    warn!(
                        file = %path.display(),
                        routes = load.view.len(),
                        skipped = %mrt::describe_skipped(&load.skipped),
                        "MRT dump reloaded partially"
                    );
                }
                let view = Arc::new(load.view);
                last = Some(view.clone());
                stale = false;
                publish(OwnView {
                    view: Some(view),
                    source: describe.clone(),
                    stale_since_ms: None,
                });
            }
            Err(reason) => {
                error!(file = %path.display(), reason = %reason, "MRT dump refused; last view kept, marked stale");
                if !stale {
                    stale = mark_stale(&describe, &last, &publish);
                }
            }
        }
    }
}

/// Publishes `last` again, marked stale since now; returns true.
fn mark_stale(describe: &str, last: &Option<Arc<RouteView>>, publish: &Publish) -> bool {
    publish(OwnView {
        view: last.clone(),
        source: describe.to_owned(),
        stale_since_ms: Some(crate::clock::unix_ms()),
    });
    true
}
