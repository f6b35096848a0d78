//! Health of this node's own POP: probes [E] of its services and rise/fall hysteresis [P].
//!
//! The POP is healthy while every probe of the whole POP is up; a service (a geo name) is
//! up at the POP while every probe attached to it (`service = "api"`) is. A change is logged
//! and handed to the caller, which publishes it (into the node's snapshot, so answers stop
//! or resume handing out the POP, or the POP for that service only).

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
/// (all probes without a service up) changes, and `on_services(down)` whenever the set of
/// services with a probe down changes (service indexes, sorted). Every check is recorded in
/// `metrics`, when given (probe `i` of `probes` is its probe `i`).
pub async fn monitor(
    probes: Vec<Probe>,
    metrics: Option<Observer>,
    on_change: impl Fn(bool) + Send + Sync + 'static,
    on_services: impl Fn(Vec<usize>) + Send + Sync + 'static,
    shutdown: CancellationToken,
) {
    let services: Arc<[Option<usize>]> = probes.iter().map(|p| p.service).collect();
    let health = Arc::new(Mutex::new(vec![Health::Up; probes.len()]));
    let on_change = Arc::new(on_change);
    let on_services = Arc::new(on_services);
    let mut tasks = tokio::task::JoinSet::new();
    for (slot, probe) in probes.into_iter().enumerate() {
        let (health, on_change, shutdown) = (health.clone(), on_change.clone(), shutdown.clone());
        let (services, on_services) = (services.clone(), on_services.clone());
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
                    let before = verdict(&h, &services);
                    h[slot] = changed;
                    (before, verdict(&h, &services))
                };
                if before.0 != after.0 {
                    on_change(after.0);
                }
                if before.1 != after.1 {
                    on_services(after.1);
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

/// Runs every probe once, at the same time, without hysteresis: the POP's health and the
/// services with a probe down, as one look from this machine (`sparrow explain --config`).
pub async fn check_once(probes: &[Probe]) -> (bool, Vec<usize>) {
    let checks = probes.iter().map(|p| async move {
        let outcome = probe::Prober::new(&p.kind).check(p.timeout).await;
        if matches!(outcome, Outcome::Failed(_)) {
            Health::Down
        } else {
            Health::Up
        }
    });
    let health = futures_util::future::join_all(checks).await;
    let services: Vec<Option<usize>> = probes.iter().map(|p| p.service).collect();
    verdict(&health, &services)
}

/// The POP's health (its own probes all up) and the services with a probe down (sorted),
/// from every probe's health and the service each checks.
fn verdict(health: &[Health], services: &[Option<usize>]) -> (bool, Vec<usize>) {
    let pop = health
        .iter()
        .zip(services)
        .all(|(h, s)| s.is_some() || *h == Health::Up);
    let mut down: Vec<usize> = health
        .iter()
        .zip(services)
        .filter(|(h, _)| **h == Health::Down)
        .filter_map(|(_, s)| *s)
        .collect();
    down.sort_unstable();
    down.dedup();
    (pop, down)
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

#[cfg(test)]
mod tests {
    use super::state::Health::{Down, Up};
    use super::verdict;

    #[test]
    fn a_service_probe_withdraws_its_service_only_and_pop_probes_the_pop() {
        let services = [None, Some(1), Some(1), Some(0)];
        assert_eq!(verdict(&[Up, Up, Up, Up], &services), (true, vec![]));
        assert_eq!(verdict(&[Up, Down, Up, Up], &services), (true, vec![1]));
        assert_eq!(
            verdict(&[Up, Down, Down, Down], &services),
            (true, vec![0, 1])
        );
        assert_eq!(verdict(&[Down, Up, Up, Up], &services), (false, vec![]));
        assert_eq!(verdict(&[], &[]), (true, vec![]));
    }
}
