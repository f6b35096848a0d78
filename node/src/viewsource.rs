//! [E] Sources of the own POP's route view that keep running after start-up: the MRT dump
//! watcher (here) and the BGP session ([`crate::bgp::session`]).
//!
//! The MRT watcher checks the dump's size and modification time every `poll_interval`. A
//! change is loaded once two checks in a row agree on the new size and time, so a dump that
//! is still being written is not read half-way. A dump that cannot be read or loaded keeps the
//! last good view, published again marked stale until a good dump replaces it; a partial
//! load is published, with its skipped entries counted in the log.
//!
//! Building a full view and the decision tables over it takes a good fraction of a CPU
//! second. [`background`] runs that work on one thread of lower CPU priority than the DNS
//! threads, so answers go first and a view waits when the CPU is short (measured in
//! BENCHMARKS.md, "BGP churn").

use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock, mpsc};
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use tokio::sync::oneshot;

use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::config::MrtSource;
use crate::routes::mrt;
use crate::routes::{OwnView, RouteView};
use crate::snapshot::Snapshot;

/// The callback that receives views.
pub type Publish = Arc<dyn Fn(OwnView) + Send + Sync>;

/// Nice value of the view builder thread: below the DNS threads (0), above idle (19), so a
/// build still progresses, at about a tenth of a busy core, when DNS takes the rest.
const BUILDER_NICE: libc::c_int = 10;

/// Jobs at least this long free enough memory (old decision tables, a replaced view) to
/// be worth handing back to the system afterwards (`memory::release_free`).
const RELEASE_AFTER: std::time::Duration = std::time::Duration::from_millis(50);

type Job = Box<dyn FnOnce() + Send>;

/// Runs `job` on the view builder thread (one per process, jobs in order); the receiver
/// gets its result.
pub fn background<T: Send + 'static>(
    job: impl FnOnce() -> T + Send + 'static,
) -> oneshot::Receiver<T> {
    static BUILDER: OnceLock<Mutex<mpsc::Sender<Job>>> = OnceLock::new();
    let (tx, rx) = oneshot::channel();
    let job: Job = Box::new(move || {
        let _ = tx.send(job());
    });
    let builder = BUILDER.get_or_init(|| {
        let (jobs, queue) = mpsc::channel::<Job>();
        let spawned = std::thread::Builder::new()
            .name("sparrow-views".to_owned())
            .spawn(move || {
                lower_priority();
                for job in queue {
                    let started = std::time::Instant::now();
                    // A panicking build loses that view, not the builder.
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                    // A long job rebuilt tables over full views and freed the old ones:
                    // that memory goes back to the system instead of staying in RSS.
                    if started.elapsed() >= RELEASE_AFTER {
                        crate::memory::release_free();
                    }
                }
            });
        if let Err(e) = spawned {
            error!(error = %e, "cannot start the view builder thread");
        }
        Mutex::new(jobs)
    });
    // INVARIANT: the lock only guards a send, which does not panic.
    if let Err(mpsc::SendError(job)) = builder.lock().expect("builder lock").send(job) {
        // No builder thread: build here rather than lose the view.
        job();
    }
    rx
}

#[cfg(target_os = "linux")]
fn lower_priority() {
    // SAFETY: gettid and setpriority take and return plain integers; on Linux, PRIO_PROCESS
    // with a thread id changes that thread only.
    let result = unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, BUILDER_NICE)
    };
    if result != 0 {
        warn!(error = %std::io::Error::last_os_error(), "cannot lower the view builder's priority");
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority() {}

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

/// Unix time now, in milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Watches `source` until `shutdown`; `current` is the view loaded with the config.
pub async fn watch_mrt(
    source: MrtSource,
    own_asn: u32,
    describe: String,
    current: Option<Arc<RouteView>>,
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
                    stale = mark_stale(&describe, &last, &publish).await;
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
        let loaded = background(move || {
            let bytes = std::fs::read(&p).map_err(|e| format!("cannot read: {e}"))?;
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
                let (publish, describe) = (publish.clone(), describe.clone());
                let _ = background(move || {
                    publish(OwnView {
                        view: Some(view),
                        source: describe,
                        stale_since_ms: None,
                    });
                })
                .await;
            }
            Err(reason) => {
                error!(file = %path.display(), reason = %reason, "MRT dump refused; last view kept, marked stale");
                if !stale {
                    stale = mark_stale(&describe, &last, &publish).await;
                }
            }
        }
    }
}

/// Publishes `last` again, marked stale since now; returns true.
async fn mark_stale(describe: &str, last: &Option<Arc<RouteView>>, publish: &Publish) -> bool {
    let view = OwnView {
        view: last.clone(),
        source: describe.to_owned(),
        stale_since_ms: Some(now_ms()),
    };
    let publish = publish.clone();
    let _ = background(move || publish(view)).await;
    true
}

/// Applies `rebuild` (a change of views: seconds of CPU at full scale) to the snapshot in
/// `current` and installs the result, keeping POP states and mode that changed while it ran;
/// if another view change landed meanwhile, rebuilds again from that one. Unlike
/// `ArcSwap::rcu`, the expensive part is not redone for every cheap change that races it.
pub fn swap_views(current: &ArcSwap<Snapshot>, rebuild: impl Fn(&Snapshot) -> Snapshot) {
    loop {
        let base = current.load_full();
        let rebuilt = rebuild(&base);
        loop {
            let now = current.load_full();
            if !now.same_tables(&base) {
                break; // Another view change won: start over from it.
            }
            let next = Arc::new(now.with_tables_of(&rebuilt));
            let previous = current.compare_and_swap(&now, next);
            if Arc::ptr_eq(&*previous, &now) {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::config::{AdminState, Config, Disk};
    use crate::routes::parse_route_view;

    fn example() -> Snapshot {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../deploy/examples/single-node/sparrow.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        Snapshot::from_config(Config::from_str(&text, &path, &Disk).unwrap().config)
    }

    #[test]
    fn a_view_rebuild_keeps_state_changes_that_raced_it_and_restarts_after_another_rebuild() {
        let current = ArcSwap::from_pointee(example());
        let (view, _) = parse_route_view("100.64.0.0/16 1 2 3 4 5 6\n");
        let view = Arc::new(view);
        let calls = AtomicUsize::new(0);
        swap_views(&current, |base| {
            // While the first rebuild runs, an operator drains syd (a cheap change).
            if calls.fetch_add(1, Ordering::Relaxed) == 0 {
                current.store(Arc::new(current.load().with_admin(2, AdminState::Drained)));
            }
            base.with_view(1, Some(view.clone()))
        });
        let s = current.load();
        // One rebuild was enough: the drain did not touch the tables.
        assert_eq!(calls.load(Ordering::Relaxed), 1);
        assert_eq!(s.pop_status[2].admin, AdminState::Drained);
        assert!(Arc::ptr_eq(s.view(1).unwrap(), &view));

        // A view change that lands during a rebuild makes it start over from it.
        let other = Arc::new(parse_route_view("100.64.0.0/16 1\n").0);
        let calls = AtomicUsize::new(0);
        swap_views(&current, |base| {
            if calls.fetch_add(1, Ordering::Relaxed) == 0 {
                current.store(Arc::new(current.load().with_view(2, Some(other.clone()))));
            }
            base.with_view(0, None)
        });
        let s = current.load();
        assert_eq!(calls.load(Ordering::Relaxed), 2);
        assert!(
            Arc::ptr_eq(s.view(2).unwrap(), &other),
            "the racing change is kept"
        );
        assert!(s.view(0).is_none(), "and this one applied on top of it");
    }
}
