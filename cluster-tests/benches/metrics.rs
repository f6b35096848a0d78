//! Cost of the metrics on the DNS path: what `DnsHandler` adds per query when the metrics
//! endpoint is on (one query counter, one geo-answer counter). Run with
//! `cargo bench -p sparrow-node --bench metrics`.

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use criterion::{Criterion, criterion_group, criterion_main};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use sparrow_node::dns::{DnsTransport, QueryObserver as _};
use sparrow_node::metrics::Metrics;
use sparrow_node::snapshot::Snapshot;

fn bench(c: &mut Criterion) {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples/single-node/sparrow.toml");
    let config = sparrow_node::config::load(&path).unwrap().config;
    let snapshot = Arc::new(ArcSwap::from_pointee(Snapshot::from_config(config)));
    let metrics = Metrics::new(&snapshot);
    let dns = metrics.dns();
    c.bench_function("metrics/count_geo_query", |b| {
        b.iter(|| {
            dns.query(
                black_box(DnsTransport::Udp),
                black_box(RecordType::A),
                black_box(ResponseCode::NoError),
            );
            dns.geo_answer(
                black_box(0),
                black_box(1),
                black_box(true),
                black_box(false),
            );
        });
    });
    c.bench_function("metrics/render", |b| b.iter(|| black_box(metrics.render())));
}

criterion_group!(benches, bench);
criterion_main!(benches);
