//! The DNS path's metrics cost no allocation: every label set is registered at start, and
//! counting a query only adds to atomics. Checked with an allocator that counts the
//! allocations of the calling thread.

use std::cell::Cell;
use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use sparrow_node::dns::{DnsTransport, QueryObserver as _};
use sparrow_node::metrics::Metrics;
use sparrow_node::snapshot::Snapshot;

mod common;

use common::ALLOCATIONS;

#[test]
fn counting_queries_and_geo_answers_allocates_nothing() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples/single-node/sparrow.toml");
    let config = sparrow_node::config::load(&path).unwrap().config;
    let snapshot = Arc::new(ArcSwap::from_pointee(Snapshot::from_config(config)));
    let metrics = Metrics::new(&snapshot);
    let dns = metrics.dns();

    let before = ALLOCATIONS.with(Cell::get);
    for i in 0..1000u32 {
        let (transport, qtype) = if i % 2 == 0 {
            (DnsTransport::Udp, RecordType::A)
        } else {
            (DnsTransport::Tcp, RecordType::AAAA)
        };
        dns.query(transport, qtype, ResponseCode::NoError);
        dns.query(DnsTransport::Udp, RecordType::MX, ResponseCode::NXDomain);
        dns.geo_answer(0, 1, i % 2 == 0, i % 4 == 0);
    }
    let allocated = ALLOCATIONS.with(Cell::get) - before;
    assert_eq!(allocated, 0, "the DNS path's metrics allocated");

    // The counter does count: rendering the exposition allocates.
    let before = ALLOCATIONS.with(Cell::get);
    let text = metrics.render();
    assert!(
        ALLOCATIONS.with(Cell::get) > before,
        "the counting allocator saw nothing"
    );
    for line in [
        "sparrow_dns_queries_total{transport=\"udp\",qtype=\"A\",rcode=\"NOERROR\"} 500",
        "sparrow_dns_queries_total{transport=\"tcp\",qtype=\"AAAA\",rcode=\"NOERROR\"} 500",
        "sparrow_dns_queries_total{transport=\"udp\",qtype=\"other\",rcode=\"NXDOMAIN\"} 1000",
        "sparrow_geo_answers_total{pop=\"nyc\",ecs=\"true\"} 500",
        "sparrow_geo_answers_total{pop=\"nyc\",ecs=\"false\"} 500",
        "sparrow_local_only_answers_total 250",
        "sparrow_service_answers_total{service=\"www\",pop=\"nyc\"} 1000",
        "sparrow_service_answers_total{service=\"www\",pop=\"ams\"} 0",
    ] {
        assert!(text.lines().any(|l| l == line), "no `{line}` in:\n{text}");
    }
}
