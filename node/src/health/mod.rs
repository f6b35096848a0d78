//! Health of this node's own POP: probes [E] of its services and rise/fall hysteresis [P].
//!
//! The POP is healthy while every probe is up. A change is logged and handed to the caller,
//! which publishes it (today: into the node's snapshot, so answers stop or resume handing
//! out the POP).

pub mod http;
pub mod load;
pub mod probe;
pub mod spec;
pub mod state;

pub use self::spec::{HttpTarget, HttpsTrust, LoadKind, LoadProbe, Probe, ProbeKind};

use std::sync::{Arc, Mutex};

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use self::state::{Health, Hysteresis, Outcome};

/// What watches the probes' checks (the metrics): told of every check as it ends.
pub trait ProbeObserver: Send + Sync {
    /// Health probe `probe` (its index in the config) ended a check with `outcome` after
    /// `took`; after hysteresis it is `up`.
    fn checked(&self, probe: usize, outcome: &Outcome, took: std::time::Duration, up: bool);
    /// The load probe ended a reading, good or not, after `took`.
    fn load_read(&self, ok: bool, took: std::time::Duration);
}

/// A probe observer, shared.
pub type Observer = Arc<dyn ProbeObserver>;

/// Runs every probe until `shutdown`; calls `on_change(healthy)` whenever the POP's health
/// (all probes up) changes. Every check is recorded in `metrics`, when given (probe `i` of
/// `probes` is its probe `i`).
pub async fn monitor(
    probes: Vec<Probe>,
    metrics: Option<Observer>,
    on_change: impl Fn(bool) + Send + Sync + 'static,
    shutdown: CancellationToken,
) {
    let health = Arc::new(Mutex::new(vec![Health::Up; probes.len()]));
    let on_change = Arc::new(on_change);
    let mut tasks = tokio::task::JoinSet::new();
    for (slot, probe) in probes.into_iter().enumerate() {
        let (health, on_change, shutdown) = (health.clone(), on_change.clone(), shutdown.clone());
        let metrics = metrics.clone();
        tasks.spawn(async move {
            let prober = probe::Prober::new(&probe.kind);
            let mut hysteresis = Hysteresis::new(probe.rise, probe.fall);
            let mut ticker = tokio::time::interval(probe.interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticker.tick() => {}
                    () = shutdown.cancelled() => return,
                }
                let started = Instant::now();
                let outcome = prober.check(probe.timeout).await;
                if let Outcome::Warning(message) = &outcome {
                    info!(probe = %probe.name, message = %message, "probe warning");
                }
                let changed = hysteresis.record(&outcome);
                if let Some(m) = &metrics {
                    m.checked(
                        slot,
                        &outcome,
                        started.elapsed(),
                        hysteresis.health() == Health::Up,
                    );
                }
                let Some(changed) = changed else {
                    continue;
                };
                match (changed, &outcome) {
                    (Health::Down, Outcome::Failed(reason)) => {
                        warn!(probe = %probe.name, reason = %reason, "probe down");
                    }
                    _ => info!(probe = %probe.name, "probe up"),
                }
                let (before, after) = {
                    // INVARIANT: the lock is never held across an await or a panic.
                    let mut h = health.lock().expect("health lock poisoned");
                    let before = h.iter().all(|s| *s == Health::Up);
                    h[slot] = changed;
                    (before, h.iter().all(|s| *s == Health::Up))
                };
                if before != after {
                    on_change(after);
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

/// Reads the own POP's load every interval until `shutdown`; calls `on_change(load)` when the
/// reading changes (`None` when it cannot be read).
pub async fn monitor_load(
    probe: LoadProbe,
    metrics: Option<Observer>,
    on_change: impl Fn(Option<f32>) + Send + Sync + 'static,
    shutdown: CancellationToken,
) {
    let reader = load::LoadReader::new(&probe.kind);
    let mut last: Option<f32> = None;
    let mut ticker = tokio::time::interval(probe.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = shutdown.cancelled() => return,
        }
        let started = Instant::now();
        let result = reader.measure(probe.timeout).await;
        if let Some(m) = &metrics {
            m.load_read(result.is_ok(), started.elapsed());
        }
        let reading = match result {
            Ok(l) => Some(l),
            Err(e) => {
                if last.is_some() {
                    warn!(error = %e, "load probe failed; load unknown");
                }
                None
            }
        };
        if reading != last {
            last = reading;
            on_change(reading);
        }
    }
}
