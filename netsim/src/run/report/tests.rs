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
        cname: None,
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
        service: 0,
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
        .flat_map(|c| (0..n).map(move |x| ((c, x, 0), Some(pop))))
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
                serving: Vec::new(),
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
        base.insert((c, 2, 0), Some(2));
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
        cname: None,
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
    base.insert((0, 3, 0), Some(2));
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
    assert_eq!(fields.len(), 12);
    assert_eq!(fields[0], "1000");
    assert_eq!(fields[1], p.clients[0].subnet.to_string());
    assert_eq!(fields[4], "fra");
    assert_eq!(
        fields[5].parse::<IpAddr>().unwrap(),
        sim.pops[0].addresses[0]
    );
    assert_eq!(fields[9], "NOERROR");
    assert_eq!(fields[10], "fra@1000:NOERROR");
    assert_eq!(fields[11], "www");
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

/// The service-down scenario on its own world, planned with seed 7 at full time: api
/// (service 1) down at fra (POP 0) from 15 s to 35 s.
fn services_world() -> (Scenario, Sim, Plan) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/service-down.toml");
    let s = Scenario::load(&path).unwrap();
    let requests: Vec<PopRequest> = s.cluster.pops.iter().map(|p| p.request.clone()).collect();
    let sim = Sim::generate(s.topology.ases, 1, &requests).unwrap();
    let p = plan::plan(&s, &sim, 7, 1.0).unwrap();
    (s, sim, p)
}

/// What node `node` owes client `c` for `service` at `secs`, by the oracle, a client
/// keeping its no-fault POP while it may.
fn owed_answer(p: &Plan, c: usize, node: usize, service: usize, secs: u64) -> usize {
    let client = &p.clients[c];
    let hops: Vec<Option<usize>> = if p.resolvers[client.resolver].ecs {
        client.hops.iter().copied().map(Some).collect()
    } else {
        vec![None; 5]
    };
    let all = truth::expected(&hops, &[true; 5], node)[0];
    let now = p.state_at(Duration::from_secs(secs));
    let allowed = truth::expected(&hops, &now.usable_for_service(node, service), node);
    if allowed.contains(&all) {
        all
    } else {
        allowed[0]
    }
}

/// Every client's no-fault answers by the oracle, for every node and service.
fn oracle_baseline(p: &Plan) -> Baseline {
    let mut b = Baseline::new();
    for c in 0..p.clients.len() {
        for x in 0..5 {
            for s in 0..3 {
                b.insert((c, x, s), Some(owed_answer(p, c, x, s, 0)));
            }
        }
    }
    b
}

/// Queries of every service from every client at `secs` (through its resolver's primary),
/// answered as `answer(client, node, service)` says.
fn queries_at(
    sim: &Sim,
    p: &Plan,
    secs: u64,
    answer: impl Fn(usize, usize, usize) -> usize,
) -> Vec<QueryRecord> {
    let mut out = Vec::new();
    for c in 0..p.clients.len() {
        let node = p.resolvers[p.clients[c].resolver].primary;
        for s in 0..3 {
            let mut r = record(sim, out.len(), c, secs, node, 0);
            r.service = s;
            r.pop = Some(answer(c, node, s));
            out.push(r);
        }
    }
    out
}

/// A run whose every answer is the oracle's, with `late` seconds of fra still handed out
/// for api after it went down.
fn service_run(sim: &Sim, p: &Plan, late: u64) -> Vec<QueryRecord> {
    let mut out = Vec::new();
    for secs in [5, 14, 16, 20, 30, 36, 40, 45] {
        out.extend(queries_at(sim, p, secs, |c, x, s| {
            if (15..15 + late).contains(&secs) {
                owed_answer(p, c, x, s, 0)
            } else {
                owed_answer(p, c, x, s, secs)
            }
        }));
    }
    out
}

#[test]
fn a_service_that_fails_over_by_the_oracle_and_leaves_the_others_alone_passes() {
    let (s, sim, p) = services_world();
    let base = oracle_baseline(&p);
    let records = service_run(&sim, &p, 0);
    let failures = check(&s, &sim, &p, &records, &[], &[], &base);
    assert_eq!(failures, Vec::<String>::new());
    let summary = summarize(&s, &sim, &p, 7, "inproc", &records, &[], &base);
    let names: Vec<(&str, usize, usize)> = summary
        .services
        .iter()
        .map(|n| (n.name.as_str(), n.differ_from_no_fault, n.off_oracle))
        .collect();
    let moved = summary.failovers_by_service[0].moved;
    assert!(moved > 0, "some clients had fra as api's answer");
    assert_eq!(names, [("www", 0, 0), ("api", moved, 0), ("cdn", 0, 0)]);
    assert_eq!(summary.failovers_by_service[0].last_failed_answer_s, None);
    assert_eq!(summary.failovers_by_service[0].back_after_s, None);
    assert!(render(&summary).contains("api down at fra from 15.0 s"));
}

#[test]
fn another_name_moving_a_slow_failover_and_a_slow_return_are_each_reported() {
    let (s, sim, p) = services_world();
    let base = oracle_baseline(&p);
    // A node that withdraws the whole POP when one service fails: www and cdn move too.
    let mut records = service_run(&sim, &p, 0);
    for r in &mut records {
        if r.service != 1 && (15..35).contains(&r.at.as_secs()) {
            let (c, x) = (r.client, r.attempts[0].node);
            r.pop = Some(owed_answer(&p, c, x, 1, r.at.as_secs()));
        }
    }
    let failures = check(&s, &sim, &p, &records, &[], &[], &base);
    let has = |what: &str| failures.iter().any(|f| f.starts_with(what));
    assert!(
        has("unchanged: ") && failures.iter().any(|f| f.contains("for www differ")),
        "{failures:#?}"
    );
    assert!(
        failures.iter().any(|f| f.contains("for cdn differ")),
        "{failures:#?}"
    );
    // fra handed out for api 6 s after it went down: later than `within` (2 s).
    let failures = check(&s, &sim, &p, &service_run(&sim, &p, 6), &[], &[], &base);
    assert!(
        failures
            .iter()
            .any(|f| f.starts_with("failover: ") && f.contains("after it went down at 15.0 s")),
        "{failures:#?}"
    );
    assert!(
        failures.iter().any(|f| f.starts_with("detection_bound: ")),
        "{failures:#?}"
    );
    // Within `within`, the answer before is fine.
    let failures = check(&s, &sim, &p, &service_run(&sim, &p, 2), &[], &[], &base);
    assert_eq!(failures, Vec::<String>::new());
    // Clients not back on fra 5 s after api came back.
    let mut records = service_run(&sim, &p, 0);
    for r in &mut records {
        if r.service == 1 && r.at.as_secs() == 40 {
            r.pop = Some(owed_answer(&p, r.client, r.attempts[0].node, 1, 20));
        }
    }
    let failures = check(&s, &sim, &p, &records, &[], &[], &base);
    assert!(
        failures
            .iter()
            .any(|f| f.starts_with("failover: ") && f.contains("after it came back at 35.0 s")),
        "{failures:#?}"
    );
    // Nobody moved: the run shows nothing.
    let records: Vec<QueryRecord> = service_run(&sim, &p, 0)
        .into_iter()
        .filter(|r| r.service != 1)
        .collect();
    let failures = check(&s, &sim, &p, &records, &[], &[], &base);
    assert!(
        failures
            .iter()
            .any(|f| f.contains("moved while it was down")),
        "{failures:#?}"
    );
}
