//! The bounded fuzz run of CI: every target replays its kept corpus, then runs mutated
//! inputs for `SPARROW_FUZZ_MS` milliseconds (default 2000; the targets run two at a time,
//! so the whole run stays well under a minute). A crash fails the test with the path of
//! the input that caused it.

use std::time::Duration;

fn check(name: &str) {
    let target = sparrow_fuzz::target(name).expect("target exists");
    let corpus = sparrow_fuzz::corpus(name).expect("kept corpus");
    assert!(!corpus.is_empty(), "no kept corpus for {name}");
    let ms = std::env::var("SPARROW_FUZZ_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let seed = sparrow_fuzz::seed_from_env();
    let crash_dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("fuzz-crashes");
    let limit = sparrow_fuzz::Limit {
        inputs: u64::MAX,
        time: Duration::from_millis(ms),
    };
    let r = sparrow_fuzz::run(target, &corpus, seed, limit, &crash_dir);
    eprintln!(
        "{name}: seed {seed:#x}, {} inputs in {:?}, slowest {:?}",
        r.inputs, r.elapsed, r.slowest
    );
    assert!(r.inputs > corpus.len() as u64, "no mutated input ran");
    assert!(
        r.crashes.is_empty(),
        "{name} crashed (SPARROW_SEED={seed:#x} replays): {:?}",
        r.crashes
    );
}

#[test]
fn every_target_has_a_test_here() {
    let source = include_str!("fuzz.rs");
    for t in sparrow_fuzz::TARGETS {
        assert!(source.contains(&format!("fn {}()", t.name)), "{}", t.name);
    }
}

#[test]
fn dns_message() {
    check("dns_message");
}

#[test]
fn ecs_option() {
    check("ecs_option");
}

#[test]
fn gossip_frame() {
    check("gossip_frame");
}

#[test]
fn gossip_values() {
    check("gossip_values");
}

#[test]
fn view_transfer() {
    check("view_transfer");
}

#[test]
fn view_frame() {
    check("view_frame");
}

#[test]
fn bgp_message() {
    check("bgp_message");
}

#[test]
fn mrt() {
    check("mrt");
}

#[test]
fn config() {
    check("config");
}

#[test]
fn zone_file() {
    check("zone_file");
}

#[test]
fn zone_text() {
    check("zone_text");
}

#[test]
fn route_text() {
    check("route_text");
}
