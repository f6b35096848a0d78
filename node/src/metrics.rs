//! [E] Prometheus metrics and the HTTP endpoint that serves them (`[node] metrics_listen`,
//! off unless configured).
//!
//! Three sources, each read the cheapest way:
//! - the DNS path bumps counters ([`DnsMetrics`]) whose label sets were all registered at
//!   start: a query costs one or two relaxed atomic additions, with no allocation, lock or
//!   hash lookup;
//! - the probes record each check ([`ProbeMetrics`]);
//! - everything the node *believes* (mode, members alive, each POP's state and load) and
//!   the gossip transport's counters are read at scrape time from the current snapshot and
//!   [`TransportStats`], so they are never mirrored and never stale.
//!
//! Exposition is OpenMetrics text (`prometheus-client`), served by hyper over HTTP/1.1 at
//! `/metrics`.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arc_swap::ArcSwap;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{ALLOW, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric as _};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::cluster::state::Mode;
use crate::cluster::transport::TransportStats;
use crate::dns::{DnsTransport, QueryObserver};
use crate::health::ProbeObserver;
use crate::health::state::Outcome;
use crate::policy::AdminState;
use crate::snapshot::Snapshot;
use crate::state::owner::Readiness;

/// Content type of the OpenMetrics text exposition. (`prometheus-client` ends registered
/// metrics' help texts with a period; the scrape-time ones below are written with one.)
const CONTENT_TYPE_OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Content type of the Prometheus text format, served to clients that ask for it.
const CONTENT_TYPE_PROMETHEUS: &str = "text/plain; version=0.0.4; charset=utf-8";
/// Scrapes served at once; more connections are closed at once (a scraper needs one).
const MAX_CONNECTIONS: usize = 16;
/// Time a client has to send its request headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(2);
/// Connections from one host at once.
const MAX_PER_SOURCE: usize = 4;
/// Longest a connection stays open, keep-alive included (a scrape takes milliseconds).
const CONNECTION_LIFETIME: Duration = Duration::from_secs(5);

/// A label set: (name, value) pairs.
type Labels = Vec<(&'static str, String)>;

/// Label values of [`DnsTransport`], in its index order.
const TRANSPORTS: [&str; 2] = ["udp", "tcp"];
/// Query type classes: the two that geo names answer, and the rest.
const QTYPES: [&str; 3] = ["A", "AAAA", "other"];
/// Response codes the node sends, and a bucket for any other.
const RCODES: [&str; 8] = [
    "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "BADVERS", "other",
];

fn qtype_index(qtype: RecordType) -> usize {
    match qtype {
        RecordType::A => 0,
        RecordType::AAAA => 1,
        _ => 2,
    }
}

fn rcode_index(rcode: ResponseCode) -> usize {
    match rcode {
        ResponseCode::NoError => 0,
        ResponseCode::FormErr => 1,
        ResponseCode::ServFail => 2,
        ResponseCode::NXDomain => 3,
        ResponseCode::NotImp => 4,
        ResponseCode::Refused => 5,
        ResponseCode::BADVERS => 6,
        _ => 7,
    }
}

/// Counters of the DNS path, every label set registered up front.
#[derive(Debug)]
pub struct DnsMetrics {
    /// Indexed by `(transport * QTYPES + qtype) * RCODES + rcode`.
    queries: Vec<Counter>,
    /// Per POP index: [without ECS, with ECS].
    geo: Vec<[Counter; 2]>,
    local_only: Counter,
    /// [dropped, slipped] by response rate limiting.
    rate_limited: [Counter; 2],
}

impl QueryObserver for DnsMetrics {
    /// Counts one answered query.
    #[inline]
    fn query(&self, transport: DnsTransport, qtype: RecordType, rcode: ResponseCode) {
        let t = match transport {
            DnsTransport::Udp => 0,
            DnsTransport::Tcp => 1,
        };
        let i = (t * QTYPES.len() + qtype_index(qtype)) * RCODES.len() + rcode_index(rcode);
        self.queries[i].inc();
    }

    /// Counts one geo answer whose first POP is `pop`.
    #[inline]
    fn geo_answer(&self, pop: usize, ecs: bool, local_only: bool) {
        // A POP index past the registered ones cannot happen while the POP list is fixed at
        // start; if a reload ever adds POPs, their answers go uncounted rather than panic.
        if let Some(c) = self.geo.get(pop) {
            c[usize::from(ecs)].inc();
        }
        if local_only {
            self.local_only.inc();
        }
    }

    /// Counts one response held back by rate limiting.
    #[inline]
    fn rate_limited(&self, slipped: bool) {
        self.rate_limited[usize::from(slipped)].inc();
    }
}

/// Counters and gauges of one probe's checks.
#[derive(Debug)]
struct CheckSeries {
    /// Absent for the load probe, which has no up/down state.
    up: Option<Gauge>,
    ok: Counter,
    warning: Option<Counter>,
    failed: Counter,
    duration: Gauge<f64, AtomicU64>,
}

/// What the probes record: per health probe (same index as `config.node.probes`) and for
/// the load probe.
#[derive(Debug)]
pub struct ProbeMetrics {
    probes: Vec<CheckSeries>,
    load: Option<CheckSeries>,
}

impl ProbeObserver for ProbeMetrics {
    /// Records one check of health probe `probe`: its outcome, how long it took, and the
    /// probe's state after it (hysteresis applied).
    fn checked(&self, probe: usize, outcome: &Outcome, took: Duration, up: bool) {
        let Some(s) = self.probes.get(probe) else {
            return;
        };
        match outcome {
            Outcome::Ok => s.ok.inc(),
            Outcome::Warning(_) => s.warning.as_ref().map_or(0, Counter::inc),
            Outcome::Failed(_) => s.failed.inc(),
        };
        s.duration.set(took.as_secs_f64());
        if let Some(g) = &s.up {
            g.set(i64::from(up));
        }
    }

    /// Records one reading of the load probe.
    fn load_read(&self, ok: bool, took: Duration) {
        if let Some(s) = &self.load {
            if ok {
                s.ok.inc()
            } else {
                s.failed.inc()
            };
            s.duration.set(took.as_secs_f64());
        }
    }
}

/// Everything the endpoint serves.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    dns: Arc<DnsMetrics>,
    probes: Arc<ProbeMetrics>,
    gossip: Arc<OnceLock<ClusterCounters>>,
}

/// The counters of a node's cluster membership.
#[derive(Debug)]
struct ClusterCounters {
    transport: Arc<TransportStats>,
    views: Arc<crate::cluster::view_sync::ViewServer>,
}

impl Metrics {
    /// Registers every metric of the node whose state `snapshot` holds: a label set per POP,
    /// per probe and per (transport, query type, response code).
    pub fn new(snapshot: &Arc<ArcSwap<Snapshot>>) -> Self {
        let config = snapshot.load().config.clone();
        let mut registry = Registry::default();

        let queries = Family::<Labels, Counter>::default();
        let mut query_counters = Vec::new();
        for transport in TRANSPORTS {
            for qtype in QTYPES {
                for rcode in RCODES {
                    let labels = vec![
                        ("transport", transport.to_owned()),
                        ("qtype", qtype.to_owned()),
                        ("rcode", rcode.to_owned()),
                    ];
                    query_counters.push(queries.get_or_create(&labels).clone());
                }
            }
        }
        registry.register(
            "sparrow_dns_queries",
            "DNS queries answered, by transport (udp, tcp), query type (A, AAAA, other) and response code",
            queries,
        );

        let geo = Family::<Labels, Counter>::default();
        let geo_counters = config
            .pops
            .iter()
            .map(|p| {
                [false, true].map(|ecs| {
                    let labels = vec![("pop", p.name.clone()), ("ecs", ecs.to_string())];
                    geo.get_or_create(&labels).clone()
                })
            })
            .collect();
        registry.register(
            "sparrow_geo_answers",
            "Geo answers, by the POP handed out first and whether the query carried EDNS Client Subnet",
            geo,
        );
        let local_only = Counter::default();
        registry.register(
            "sparrow_local_only_answers",
            "Geo answers given while partitioned (local-only mode)",
            local_only.clone(),
        );

        let limited = Family::<Labels, Counter>::default();
        let rate_limited = ["dropped", "slipped"].map(|action| {
            limited
                .get_or_create(&vec![("action", action.to_owned())])
                .clone()
        });
        registry.register(
            "sparrow_dns_rate_limited",
            "UDP responses held back by response rate limiting ([node.rrl]): dropped, or slipped (sent truncated)",
            limited,
        );

        registry.register(
            "sparrow_build",
            "Version and commit of the running binary",
            Info::new(vec![
                ("version", crate::build_info::VERSION.to_owned()),
                ("commit", crate::build_info::COMMIT.to_owned()),
            ]),
        );

        let probes = ProbeMetrics {
            probes: register_probes(&mut registry, &config.node.probes),
            load: config
                .node
                .load
                .as_ref()
                .map(|_| register_load_probe(&mut registry)),
        };
        let gossip = Arc::new(OnceLock::new());
        registry.register_collector(Box::new(StateCollector {
            snapshot: snapshot.clone(),
            gossip: gossip.clone(),
        }));
        Self {
            registry,
            dns: Arc::new(DnsMetrics {
                queries: query_counters,
                geo: geo_counters,
                local_only,
                rate_limited,
            }),
            probes: Arc::new(probes),
            gossip,
        }
    }

    /// The counters the DNS handler bumps.
    pub fn dns(&self) -> Arc<DnsMetrics> {
        self.dns.clone()
    }

    /// The counters the probes bump.
    pub fn probes(&self) -> Arc<ProbeMetrics> {
        self.probes.clone()
    }

    /// Reports the counters of `cluster` (gossip transport, route-view transfers) from now on
    /// (once; later calls are ignored).
    pub fn set_cluster(&self, cluster: &crate::cluster::node::ClusterHandle) {
        let _ = self.gossip.set(ClusterCounters {
            transport: cluster.stats.clone(),
            views: cluster.view_server(),
        });
    }

    /// The OpenMetrics text exposition of every metric, as of now.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // INVARIANT: encoding into a String only fails if a collector fails, and ours
        // write only through the encoder.
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("metrics encode into a String");
        out
    }
}

fn register_probes(registry: &mut Registry, probes: &[crate::health::Probe]) -> Vec<CheckSeries> {
    let up = Family::<Labels, Gauge>::default();
    let checks = Family::<Labels, Counter>::default();
    let duration = Family::<Labels, Gauge<f64, AtomicU64>>::default();
    let series = probes
        .iter()
        .map(|p| {
            let probe = || vec![("probe", p.name.clone())];
            let outcome = |o: &str| {
                let mut l = probe();
                l.push(("outcome", o.to_owned()));
                checks.get_or_create(&l).clone()
            };
            let s = CheckSeries {
                up: Some(up.get_or_create(&probe()).clone()),
                ok: outcome("ok"),
                warning: Some(outcome("warning")),
                failed: outcome("failed"),
                duration: duration.get_or_create(&probe()).clone(),
            };
            // Probes start up, as the hysteresis does.
            if let Some(g) = &s.up {
                g.set(1);
            }
            s
        })
        .collect();
    registry.register(
        "sparrow_probe_up",
        "Whether each health probe of the own POP is up (1) or down (0), after rise/fall",
        up,
    );
    registry.register(
        "sparrow_probe_checks",
        "Health probe checks, by probe and outcome (ok, warning, failed)",
        checks,
    );
    registry.register_with_unit(
        "sparrow_probe_last_check_duration",
        "How long each health probe's last check took",
        Unit::Seconds,
        duration,
    );
    series
}

fn register_load_probe(registry: &mut Registry) -> CheckSeries {
    let checks = Family::<Labels, Counter>::default();
    let outcome = |o: &str| {
        checks
            .get_or_create(&vec![("outcome", o.to_owned())])
            .clone()
    };
    let s = CheckSeries {
        up: None,
        ok: outcome("ok"),
        warning: None,
        failed: outcome("failed"),
        duration: Gauge::default(),
    };
    registry.register(
        "sparrow_load_probe_checks",
        "Load probe readings, by outcome (ok, failed: the load is then unknown)",
        checks,
    );
    registry.register_with_unit(
        "sparrow_load_probe_last_check_duration",
        "How long the load probe's last reading took",
        Unit::Seconds,
        s.duration.clone(),
    );
    s
}

/// Which part of a view a gauge shows.
#[derive(Clone, Copy)]
enum ViewField {
    Prefixes,
    Age,
    Stale,
}

/// Reads what the node believes at scrape time.
#[derive(Debug)]
struct StateCollector {
    snapshot: Arc<ArcSwap<Snapshot>>,
    gossip: Arc<OnceLock<ClusterCounters>>,
}

impl Collector for StateCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let snap = self.snapshot.load();
        let config = &snap.config;

        let mut m = encoder.encode_descriptor(
            "sparrow_mode",
            "The node's mode: 1 for the current one (standalone, cluster, local_only), 0 for the others.",
            None,
            MetricType::Gauge,
        )?;
        for (mode, on) in [
            ("standalone", matches!(snap.mode, Mode::Standalone)),
            ("cluster", matches!(snap.mode, Mode::Cluster { .. })),
            ("local_only", snap.mode.is_local_only()),
        ] {
            ConstGauge::new(i64::from(on)).encode(m.encode_family(&[("mode", mode)])?)?;
        }

        let partitions = ConstCounter::new(snap.partitions);
        partitions.encode(encoder.encode_descriptor(
            "sparrow_partitions",
            "Times the node went from cluster answers to local-only (partitioned).",
            None,
            partitions.metric_type(),
        )?)?;

        let alive = match snap.mode {
            Mode::Standalone => 1,
            Mode::Cluster { alive } | Mode::LocalOnly { alive, .. } => alive,
        };
        let alive = ConstGauge::new(alive as i64);
        alive.encode(encoder.encode_descriptor(
            "sparrow_members_alive",
            "Cluster nodes this node sees alive, itself included (1 when standalone).",
            None,
            alive.metric_type(),
        )?)?;

        let high_water = config.node.load_high_water;
        let mut m = encoder.encode_descriptor(
            "sparrow_pop_state",
            "Each POP's state as this node sees it: live, healthy, drained, overloaded (above load_high_water); 1 if so.",
            None,
            MetricType::Gauge,
        )?;
        for (pop, s) in config.pops.iter().zip(&snap.pop_status) {
            for (state, on) in [
                ("live", s.live),
                ("healthy", s.healthy),
                ("drained", s.admin == AdminState::Drained),
                ("overloaded", s.load.is_some_and(|l| l > high_water)),
            ] {
                let labels = [("pop", pop.name.as_str()), ("state", state)];
                ConstGauge::new(i64::from(on)).encode(m.encode_family(&labels)?)?;
            }
        }

        let mut m = encoder.encode_descriptor(
            "sparrow_pop_load_ratio",
            "Each POP's load, 0.0 to 1.0, as last published (absent while unknown).",
            None,
            MetricType::Gauge,
        )?;
        for (pop, s) in config.pops.iter().zip(&snap.pop_status) {
            if let Some(load) = s.load {
                // Loads are f32: round to 6 digits so 0.95 reads 0.95, not 0.949999988.
                let load = (f64::from(load) * 1e6).round() / 1e6;
                ConstGauge::new(load).encode(m.encode_family(&[("pop", pop.name.as_str())])?)?;
            }
        }

        let own_digest = config.answer_digest();
        let mut m = encoder.encode_descriptor(
            "sparrow_pop_config_differs",
            "1 for each live peer whose answer-deciding config (zone, POPs, geo names, static map) differs from this node's: a change not rolled out everywhere.",
            None,
            MetricType::Gauge,
        )?;
        for (i, (pop, peer)) in config.pops.iter().zip(snap.peers.iter()).enumerate() {
            if i == config.node.pop || !peer.present() {
                continue;
            }
            let Some(digest) = peer.known.as_ref().and_then(|k| k.config) else {
                continue;
            };
            ConstGauge::new(i64::from(digest != own_digest))
                .encode(m.encode_family(&[("pop", pop.name.as_str())])?)?;
        }

        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        for (name, help, unit, value) in [
            (
                "sparrow_view_prefixes",
                "Prefixes in each POP's route view as this node holds it (absent: no view).",
                None,
                ViewField::Prefixes,
            ),
            (
                "sparrow_view_age",
                "Seconds since each POP's route view was built at its source (absent: unknown).",
                Some(&Unit::Seconds),
                ViewField::Age,
            ),
            (
                "sparrow_view_stale",
                "1 while a POP's view source is not current (e.g. its BGP session is down).",
                None,
                ViewField::Stale,
            ),
        ] {
            let mut m = encoder.encode_descriptor(name, help, unit, MetricType::Gauge)?;
            for (i, pop) in config.pops.iter().enumerate() {
                let Some(v) = snap.view_info(i) else {
                    continue;
                };
                let value = match value {
                    ViewField::Prefixes => Some(v.prefixes as i64),
                    ViewField::Age => v
                        .version
                        .map(|ms| (now_ms.saturating_sub(ms) / 1000) as i64),
                    ViewField::Stale => Some(i64::from(v.stale_since_ms.is_some())),
                };
                if let Some(value) = value {
                    ConstGauge::new(value)
                        .encode(m.encode_family(&[("pop", pop.name.as_str())])?)?;
                }
            }
        }

        if let Some(counters) = self.gossip.get() {
            let (stats, views) = (&counters.transport, &counters.views.stats);
            for (name, help, unit, value) in [
                (
                    "sparrow_gossip_wire_sent",
                    "Bytes of QUIC datagrams sent on gossip connections (handshakes, acknowledgements and encryption included).",
                    Some(&Unit::Bytes),
                    &stats.wire_bytes_sent,
                ),
                (
                    "sparrow_views_served",
                    "Route views this node served to peers.",
                    None,
                    &views.served,
                ),
                (
                    "sparrow_views_sent",
                    "Bytes of route views served to peers.",
                    Some(&Unit::Bytes),
                    &views.bytes_served,
                ),
                (
                    "sparrow_views_pulled",
                    "Route views pulled from peers and accepted.",
                    None,
                    &views.pulled,
                ),
                (
                    "sparrow_view_pull_failures",
                    "Route-view pulls that failed or were refused (the view in use stays).",
                    None,
                    &views.pull_failures,
                ),
            ] {
                let c = ConstCounter::new(value.load(Ordering::Relaxed));
                c.encode(encoder.encode_descriptor(name, help, unit, c.metric_type())?)?;
            }
            for (name, help, unit, value) in [
                (
                    "sparrow_gossip_sent",
                    "Bytes of gossip sent to peers.",
                    Some(&Unit::Bytes),
                    &stats.bytes_sent,
                ),
                (
                    "sparrow_gossip_received",
                    "Bytes of gossip received from peers and accepted.",
                    Some(&Unit::Bytes),
                    &stats.bytes_received,
                ),
                (
                    "sparrow_gossip_peers_refused",
                    "Gossip peers refused at or after the TLS handshake (wrong CA, cluster or role).",
                    None,
                    &stats.peers_refused,
                ),
            ] {
                let c = ConstCounter::new(value.load(Ordering::Relaxed));
                c.encode(encoder.encode_descriptor(name, help, unit, c.metric_type())?)?;
            }
        }
        Ok(())
    }
}

/// How often at most the endpoint warns that it refused or cut connections.
const REFUSALS_WARN_EVERY: Duration = Duration::from_secs(60);

/// Connections the endpoint refused or cut. Each is logged at debug (a line per connection
/// would let a flood of them flood the log too); a warning with the count goes out at the
/// first and then at most every [`REFUSALS_WARN_EVERY`].
#[derive(Default)]
struct Refusals(std::sync::Mutex<(u64, Option<tokio::time::Instant>)>);

impl Refusals {
    fn note(&self, why: &'static str) {
        // INVARIANT: the lock is held for a counter update only.
        let mut state = self.0.lock().expect("refusals lock");
        state.0 += 1;
        let now = tokio::time::Instant::now();
        if state
            .1
            .is_none_or(|last| now.duration_since(last) >= REFUSALS_WARN_EVERY)
        {
            warn!(
                connections = state.0,
                latest = why,
                "metrics endpoint refused or cut slow or surplus connections (scrapes within the limits are served)"
            );
            *state = (0, Some(now));
        }
    }
}

/// Serves `/metrics` on `listener` (bound by the caller) until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    ready: Option<tokio::sync::watch::Receiver<Readiness>>,
    shutdown: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let refusals = Arc::new(Refusals::default());
    let per_source: Arc<std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>> =
        Arc::default();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, most likely: wait rather than spin.
                    warn!(error = %e, "metrics endpoint accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => return,
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            debug!(peer = %peer, "too many metrics connections; closed");
            refusals.note("too many connections");
            continue;
        };
        // One host holds a few of the slots at most, so it cannot take them all.
        {
            // INVARIANT: the lock is held for a map update only.
            let mut counts = per_source.lock().expect("per-source lock");
            let n = counts.entry(peer.ip()).or_default();
            if *n >= MAX_PER_SOURCE {
                debug!(peer = %peer, "too many metrics connections from this host; closed");
                refusals.note("too many connections from one host");
                continue;
            }
            *n += 1;
        }
        let release = {
            let per_source = per_source.clone();
            let ip = peer.ip();
            move || {
                // INVARIANT: see above.
                let mut counts = per_source.lock().expect("per-source lock");
                if let Some(n) = counts.get_mut(&ip) {
                    *n -= 1;
                    if *n == 0 {
                        counts.remove(&ip);
                    }
                }
            }
        };
        let (metrics, ready, shutdown) = (metrics.clone(), ready.clone(), shutdown.clone());
        let refusals = refusals.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _release = Defer(Some(release));
            let service = hyper::service::service_fn(move |request| {
                let response = respond(&metrics, ready.as_ref(), &request);
                async move { Ok::<_, Infallible>(response) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            // A connection may live this long, however slowly its client reads or writes:
            // a few slow clients cannot hold every slot for long.
            let result = tokio::select! {
                r = conn.as_mut() => r,
                () = tokio::time::sleep(CONNECTION_LIFETIME) => {
                    debug!(peer = %peer, "metrics connection open too long; closed");
                    refusals.note("connection open too long");
                    return;
                }
                () = shutdown.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                if e.is_timeout() {
                    refusals.note("request headers too slow");
                }
                debug!(peer = %peer, error = %e, "metrics connection ended with an error");
            }
        });
    }
}

/// Runs a closure when dropped (a connection's slot is given back however it ends).
struct Defer<F: FnOnce()>(Option<F>);

impl<F: FnOnce()> Drop for Defer<F> {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f();
        }
    }
}

fn respond<B>(
    metrics: &Metrics,
    ready: Option<&tokio::sync::watch::Receiver<Readiness>>,
    request: &Request<B>,
) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, body: String| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = status;
        r
    };
    if request.uri().path() == "/ready" && matches!(*request.method(), Method::GET | Method::HEAD) {
        // 200 once the node is ready, 503 with what it waits for until then.
        let state = ready.map(|r| r.borrow().clone()).unwrap_or(Readiness {
            ready: true,
            reason: "ready".to_owned(),
        });
        let status = if state.ready {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        return reply(status, format!("{}\n", state.reason));
    }
    if request.uri().path() != "/metrics" {
        return reply(
            StatusCode::NOT_FOUND,
            "metrics are at /metrics, readiness at /ready\n".to_owned(),
        );
    }
    match *request.method() {
        // OpenMetrics unless the client asks for the Prometheus text format and not for
        // OpenMetrics (`promtool check metrics` reads only the former).
        Method::GET | Method::HEAD if wants_prometheus_text(request) => {
            let mut r = reply(StatusCode::OK, prometheus_text(&metrics.render()));
            r.headers_mut().insert(
                CONTENT_TYPE,
                hyper::header::HeaderValue::from_static(CONTENT_TYPE_PROMETHEUS),
            );
            r
        }
        Method::GET | Method::HEAD => {
            let mut r = reply(StatusCode::OK, metrics.render());
            r.headers_mut().insert(
                CONTENT_TYPE,
                hyper::header::HeaderValue::from_static(CONTENT_TYPE_OPENMETRICS),
            );
            r
        }
        _ => {
            let mut r = reply(
                StatusCode::METHOD_NOT_ALLOWED,
                "GET or HEAD /metrics\n".to_owned(),
            );
            r.headers_mut()
                .insert(ALLOW, hyper::header::HeaderValue::from_static("GET, HEAD"));
            r
        }
    }
}

/// Whether `request` accepts the Prometheus text format (`text/plain`) and not OpenMetrics.
fn wants_prometheus_text<B>(request: &Request<B>) -> bool {
    let accept = request
        .headers()
        .get_all(hyper::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(",");
    accept.contains("text/plain") && !accept.contains("application/openmetrics-text")
}

/// The Prometheus text format (0.0.4) of an OpenMetrics exposition: counters are described
/// under their `_total` name, an info metric becomes a gauge named `_info`, `# UNIT` and
/// `# EOF` go (the units are in the names already).
fn prometheus_text(openmetrics: &str) -> String {
    let mut renamed = std::collections::HashMap::new();
    for line in openmetrics.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        match rest.split_once(' ') {
            Some((name, "counter")) => renamed.insert(name, (format!("{name}_total"), "counter")),
            Some((name, "info")) => renamed.insert(name, (format!("{name}_info"), "gauge")),
            _ => None,
        };
    }
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let described = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| line.strip_prefix(p).map(|rest| (p, rest)));
        match described.and_then(|(p, rest)| {
            let (name, text) = rest.split_once(' ')?;
            let (new_name, kind) = renamed.get(name)?;
            Some(if p == "# TYPE " {
                format!("# TYPE {new_name} {kind}")
            } else {
                format!("# HELP {new_name} {text}")
            })
        }) {
            Some(rewritten) => out.push_str(&rewritten),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod text_format_tests {
    use super::prometheus_text;

    #[test]
    fn prometheus_text_describes_counters_and_info_under_their_sample_names() {
        let open = "# HELP sparrow_build Version and commit of the running binary.\n\
                    # TYPE sparrow_build info\n\
                    sparrow_build_info{version=\"0.1.0\",commit=\"abc\"} 1\n\
                    # HELP sparrow_dns_queries DNS queries answered.\n\
                    # TYPE sparrow_dns_queries counter\n\
                    sparrow_dns_queries_total{transport=\"udp\"} 3\n\
                    # HELP sparrow_probe_last_check_duration_seconds How long.\n\
                    # TYPE sparrow_probe_last_check_duration_seconds gauge\n\
                    # UNIT sparrow_probe_last_check_duration_seconds seconds\n\
                    sparrow_probe_last_check_duration_seconds{probe=\"web\"} 0.5\n\
                    # EOF\n";
        let want = "# HELP sparrow_build_info Version and commit of the running binary.\n\
                    # TYPE sparrow_build_info gauge\n\
                    sparrow_build_info{version=\"0.1.0\",commit=\"abc\"} 1\n\
                    # HELP sparrow_dns_queries_total DNS queries answered.\n\
                    # TYPE sparrow_dns_queries_total counter\n\
                    sparrow_dns_queries_total{transport=\"udp\"} 3\n\
                    # HELP sparrow_probe_last_check_duration_seconds How long.\n\
                    # TYPE sparrow_probe_last_check_duration_seconds gauge\n\
                    sparrow_probe_last_check_duration_seconds{probe=\"web\"} 0.5\n";
        assert_eq!(prometheus_text(open), want);
    }
}
