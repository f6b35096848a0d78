use std::net::IpAddr;
use std::path::Path;

use super::*;
use crate::pops::PopRequest;
use crate::run::client::Attempt;
use crate::run::plan;

/// The split-brain scenario on its own world, planned with seed 7 at full time.
fn world() -> (Scenario, Sim, Plan) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/split-brain.toml");
    let s = Scenario::load(&path).unwrap();
    let requests: Vec<PopRequest> = s.cluster.pops.iter().map(|p| p.request.clone()).collect();
    let sim = Sim::generate(s.topology.ases, 1, &requests).unwrap();
    let p = plan::plan(&s, &sim, 7, 1.0).unwrap();
    (s, sim, p)
}

fn answer(sim: &Sim, pop: usize) -> Reply {
    Reply::Answer {
        rcode: ResponseCode::NoError,
        addresses: vec![sim.pops[pop].addresses[0]],
        ttl: 30,
    }
}

/// A query of client `c` at `secs`, answered by `node` with `pop`.
fn record(sim: &Sim, q: usize, c: usize, secs: u64, node: usize, pop: usize) -> QueryRecord {
    let at = Duration::from_secs(secs);
    QueryRecord {
        query: q,
        at,
        client: c,
        attempts: vec![Attempt {
            node,
            sent: at,
            reply: answer(sim, pop),
        }],
        pop: Some(pop),
    }
}

/// Every client's no-fault answer from every node: `pop`.
fn baseline_all(plan: &Plan, n: usize, pop: usize) -> Baseline {
    (0..plan.clients.len())
        .flat_map(|c| (0..n).map(move |x| ((c, x), Some(pop))))
        .collect()
}

/// Status samples every second for every node: local-only on the minority side during
/// the partition (20 s to 60 s) and a node's usable POPs as the partition leaves them.
fn samples(plan: &Plan, end: u64, minority_leaves_at: u64) -> Vec<Sample> {
    let mut out = Vec::new();
    for t in 0..end {
        let at = Duration::from_secs(t);
        let state = plan.state_at(at);
        for node in 0..5 {
            let split = (20..minority_leaves_at).contains(&t);
            out.push(Sample {
                at,
                node,
                local_only: split && node < 2,
                alive: if split { state.heard_by(node) } else { 5 },
                usable: (0..5).map(|p| !state.unusable_for(node, p)).collect(),
            });
        }
    }
    out
}

#[test]
fn a_clean_run_meets_every_expectation() {
    let (s, sim, p) = world();
    // fra (0) answers its own POP throughout; sjc (2) answers sjc.
    let records: Vec<QueryRecord> = (0..100)
        .map(|k| {
            record(
                &sim,
                k,
                k % 7,
                k as u64,
                if k % 2 == 0 { 0 } else { 2 },
                if k % 2 == 0 { 0 } else { 2 },
            )
        })
        .collect();
    let mut base = baseline_all(&p, 5, 0);
    for c in 0..p.clients.len() {
        base.insert((c, 2), Some(2));
    }
    let failures = check(&s, &sim, &p, &records, &samples(&p, 100, 60), &[], &base);
    assert_eq!(failures, Vec::<String>::new());
}

#[test]
fn servfail_timeouts_late_dead_answers_and_unsettled_answers_are_each_reported() {
    let (s, sim, p) = world();
    let mut records = Vec::new();
    // SERVFAIL from nyc at 5 s.
    let mut r = record(&sim, 0, 0, 5, 1, 1);
    r.attempts[0].reply = Reply::Answer {
        rcode: ResponseCode::ServFail,
        addresses: vec![],
        ttl: 0,
    };
    r.pop = None;
    records.push(r);
    // A timeout from sjc, which was up all along.
    let mut r = record(&sim, 1, 1, 6, 2, 2);
    r.attempts[0].reply = Reply::Timeout;
    r.pop = None;
    records.push(r);
    // sin hands out fra 15 s into the partition: unusable for sin since 20 s, bound 5 s.
    records.push(record(&sim, 2, 2, 35, 3, 0));
    // Within the bound it is only a "wrong during".
    records.push(record(&sim, 3, 3, 23, 3, 0));
    // After heal + settle (70 s), sjc answers sin where the no-fault answer is sjc.
    records.push(record(&sim, 4, 4, 90, 2, 3));
    let base = baseline_all(&p, 5, 2);
    let failures = check(&s, &sim, &p, &records, &samples(&p, 100, 60), &[], &base);
    let has = |what: &str| failures.iter().any(|f| f.starts_with(what));
    assert!(has("no_servfail: 1 SERVFAIL"), "{failures:#?}");
    assert!(has("no_timeout: 1 queries"), "{failures:#?}");
    assert!(has("detection_bound: 1 answers"), "{failures:#?}");
    assert!(has("settle: 1 of 1 answers"), "{failures:#?}");
    assert_eq!(failures.len(), 4, "{failures:#?}");
    let summary = summarize(&s, &sim, &p, 7, "inproc", &records, &[], &base);
    assert_eq!(summary.events[0].wrong_during, 1);
    assert_eq!(summary.events[0].wrong_after, 1);
    // fra went on being handed out by sin 15 s after sin lost it.
    assert_eq!(summary.events[0].last_wrong_s, Some(15.0));
    assert_eq!(summary.outcomes["SERVFAIL"], 1);
    assert_eq!(summary.outcomes["timeout"], 1);
    assert!((summary.availability - 0.6).abs() < 1e-9);
}

#[test]
fn a_timeout_from_a_crashed_node_is_no_failure() {
    let (s, sim, p) = world();
    let mut r = record(&sim, 0, 0, 6, 2, 2);
    r.attempts[0].reply = Reply::Timeout;
    r.attempts.push(Attempt {
        node: 3,
        sent: Duration::from_secs(7),
        reply: answer(&sim, 2),
    });
    let down = [
        NodeEvent {
            at: Duration::from_secs(5),
            node: 2,
            up: false,
        },
        NodeEvent {
            at: Duration::from_secs(9),
            node: 2,
            up: true,
        },
    ];
    let mut base = baseline_all(&p, 5, 2);
    base.insert((0, 3), Some(2));
    let failures = check(
        &s,
        &sim,
        &p,
        &[r.clone()],
        &samples(&p, 100, 60),
        &down,
        &base,
    );
    assert!(
        !failures.iter().any(|f| f.starts_with("no_timeout")),
        "{failures:#?}"
    );
    // Without the crash, the same timeout is a failure.
    let failures = check(&s, &sim, &p, &[r], &samples(&p, 100, 60), &[], &base);
    assert!(failures.iter().any(|f| f.starts_with("no_timeout")));
}

#[test]
fn local_only_held_too_long_or_entered_by_the_majority_is_reported() {
    let (s, sim, p) = world();
    let base = baseline_all(&p, 5, 0);
    // The minority stays local-only until 75 s: more than 5 s after the heal at 60 s.
    let failures = check(&s, &sim, &p, &[], &samples(&p, 100, 75), &[], &base);
    assert!(
        failures
            .iter()
            .any(|f| f.contains("still answered local-only")),
        "{failures:#?}"
    );
    // A majority node (sin) answering local-only at 30 s breaks `never`.
    let mut with_sin = samples(&p, 100, 60);
    with_sin
        .iter_mut()
        .filter(|x| x.node == 3 && x.at == Duration::from_secs(30))
        .for_each(|x| x.local_only = true);
    let failures = check(&s, &sim, &p, &[], &with_sin, &[], &base);
    assert!(
        failures
            .iter()
            .any(|f| f.starts_with("local_only: sin must never")),
        "{failures:#?}"
    );
}

#[test]
fn convergence_is_the_last_status_change_after_an_event() {
    let (_, _, p) = world();
    let mut samples = samples(&p, 100, 60);
    // Samples say the state changed at the event; make node 4 settle 3 s late.
    for x in samples
        .iter_mut()
        .filter(|x| x.node == 4 && (20..23).contains(&x.at.as_secs()))
    {
        x.usable = vec![true; 5];
    }
    assert_eq!(
        converged(
            &samples,
            5,
            Duration::from_secs(20),
            Duration::from_secs(60)
        ),
        Some(Duration::from_secs(3))
    );
    // Nothing changes between 40 s and 50 s.
    assert_eq!(
        converged(
            &samples,
            5,
            Duration::from_secs(40),
            Duration::from_secs(50)
        ),
        Some(Duration::ZERO)
    );
    // A change in the last second of a window has not shown it is stable.
    assert_eq!(
        converged(
            &samples,
            5,
            Duration::from_secs(10),
            Duration::from_secs(20)
        ),
        Some(Duration::ZERO)
    );
    assert_eq!(
        converged(
            &samples,
            5,
            Duration::from_secs(10),
            Duration::from_millis(20_500)
        ),
        None
    );
}

#[test]
fn the_query_log_has_one_line_per_query_with_the_truth_beside_the_answer() {
    let (_, sim, p) = world();
    let records = vec![record(&sim, 0, 0, 1, 0, 0), record(&sim, 1, 1, 2, 1, 1)];
    let text = queries_text(&sim, &p, &records);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3);
    assert!(lines[0].starts_with("# time_ms\tclient"));
    let fields: Vec<&str> = lines[1].split('\t').collect();
    assert_eq!(fields.len(), 11);
    assert_eq!(fields[0], "1000");
    assert_eq!(fields[1], p.clients[0].subnet.to_string());
    assert_eq!(fields[4], "fra");
    assert_eq!(
        fields[5].parse::<IpAddr>().unwrap(),
        sim.pops[0].addresses[0]
    );
    assert_eq!(fields[9], "NOERROR");
    assert_eq!(fields[10], "fra@1000:NOERROR");
}

#[test]
fn the_timeline_marks_wrong_answers_and_local_only_spans_and_names_the_node_asked() {
    let (s, sim, p) = world();
    // sin (3) hands out fra (0) 15 s into the partition: wrong; fra answering fra at 5 s is not.
    let records = vec![record(&sim, 0, 0, 35, 3, 0), record(&sim, 1, 1, 5, 0, 0)];
    let svg = crate::run::svg::timeline(&s, &sim, &p, &records, &samples(&p, 100, 60));
    assert_eq!(svg.matches(r#"class="wrong""#).count(), 1, "{svg}");
    // Nodes 0 and 1 answer local-only from 20 s to 60 s: one strip under each row whose
    // resolver asks one of them first.
    let rows = p.resolvers.iter().filter(|r| r.primary < 2).count();
    assert!(rows > 0);
    assert_eq!(svg.matches(r#"class="local-only""#).count(), rows, "{svg}");
    let first = &sim.pops[p.resolvers[0].primary].name;
    assert!(svg.contains(&format!(", asks {first}</text>")), "{svg}");
    assert!(svg.contains("wrong answer") && svg.contains("first node local-only"));
}
