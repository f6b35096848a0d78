//! [P] `sparrow explain`: the decision for one client as data, built by the same code path as
//! the DNS answer (`Snapshot::gather` + `policy::explain`).

use std::net::IpAddr;

use ipnet::IpNet;

use sparrow_proto::api::{Explanation, PopVerdict, RouteMatch, StaticMatch};

use crate::config::WhenDown;
use crate::policy::{self, Exclusion, Reason};
use crate::routes::RouteView;
use crate::snapshot::{Gathered, Snapshot};

/// Explains the answer to `client` for geo name `geo`.
pub fn explain(snap: &Snapshot, geo: usize, client: IpAddr) -> Explanation {
    let cfg = &snap.config;
    let client = client.to_canonical();
    let g = snap.gather(geo, client);
    let e = policy::explain(&snap.policy_input(&g));
    // The decision came from the decision table; the routes behind it, for display, come
    // from each POP's own view.
    let route_of = |pop: usize| snap.view(pop).and_then(|view| view.lookup(client).entry);
    let static_hit = cfg
        .static_map
        .as_deref()
        .and_then(|map| map.lookup(client).entry);
    let pop_name = |i: usize| cfg.pops[i].name.clone();
    let pops = e
        .verdicts
        .iter()
        .map(|v| {
            let pop = &cfg.pops[v.pop];
            let route = route_of(v.pop);
            PopVerdict {
                hops: g
                    .candidates
                    .iter()
                    .find(|c| c.pop == v.pop)
                    .and_then(|c| c.hops),
                pop: pop.name.clone(),
                asn: pop.asn,
                route: route.map(|(prefix, path)| RouteMatch {
                    prefix: prefix.to_string(),
                    as_path: path.to_vec(),
                    hops: RouteView::hops_of(path),
                }),
                eligible: v.excluded.is_empty(),
                excluded: v
                    .excluded
                    .iter()
                    .map(|x| exclusion(snap, geo, v.pop, *x))
                    .collect(),
                rank: v.rank.map(|r| r + 1),
                preference: pop.preference,
                weight: cfg.geo[geo].weights[v.pop],
            }
        })
        .collect();
    let geo_name = &cfg.geo[geo];
    let count = usize::from(geo_name.answers);
    let mut addresses = Vec::new();
    let types: &[hickory_proto::rr::RecordType] = if geo_name.is_cname() {
        // Both columns hold the same CNAME.
        &[hickory_proto::rr::RecordType::A]
    } else {
        &[
            hickory_proto::rr::RecordType::A,
            hickory_proto::rr::RecordType::AAAA,
        ]
    };
    for &rtype in types {
        addresses.extend(
            e.ranking
                .order
                .iter()
                .map(|&pop| snap.geo_records(geo, pop, rtype))
                .filter(|r| !r.is_empty())
                .take(count)
                .flatten()
                .map(|r| format!("{} {}", r.record_type(), r.data)),
        );
    }
    // Every POP down for this name, and it does not fail open: its `when_down` answer.
    let when_down = match (&geo_name.when_down, e.ranking.failed_open) {
        (WhenDown::NoData, true) => Some("answering NODATA (when_down = \"nodata\")"),
        (WhenDown::Fallback(_), true) => Some("answering its fallback (when_down = \"fallback\")"),
        _ => None,
    };
    if when_down.is_some() {
        addresses = types
            .iter()
            .flat_map(|&t| snap.geo_fallback(geo, t))
            .map(|r| format!("{} {}", r.record_type(), r.data))
            .collect();
    }
    let winner = e.ranking.order.first().map(|&i| pop_name(i));
    let reason = match (&winner, e.reason) {
        (Some(w), Some(r)) => format!("{w} wins: {}", sentence(r, &g, static_hit, snap)),
        _ => "no POP can serve this name".to_owned(),
    };
    Explanation {
        name: geo_name.name.to_string(),
        client: client.to_string(),
        block: g.block.to_string(),
        static_map: static_hit.map(|(prefix, pop)| StaticMatch {
            prefix: prefix.to_string(),
            pop: pop_name(*pop),
        }),
        pops,
        ranking: e.ranking.order.iter().map(|&i| pop_name(i)).collect(),
        answers: geo_name.answers,
        rule: e.reason.map(|r| rule_name(r).to_owned()),
        reason: match (when_down, e.ranking.failed_open) {
            (Some(what), _) => format!("no POP can serve {}: {what}", geo_name.service),
            (None, true) => {
                format!("{reason} (no POP is eligible: failing open, all POPs considered)")
            }
            (None, false) => reason,
        },
        failed_open: e.ranking.failed_open,
        addresses,
        service: geo_name.service.clone(),
    }
}

/// Why POP `pop` is out for service `geo`: the POP's own state, or (when the POP itself is
/// fine on that count) the service's at the POP.
fn exclusion(snap: &Snapshot, geo: usize, pop: usize, x: Exclusion) -> String {
    let (status, service) = (&snap.pop_status[pop], &snap.services[pop]);
    let name = &snap.config.geo[geo].service;
    match x {
        Exclusion::Drained
            if status.admin != policy::AdminState::Drained && service.is_drained(geo) =>
        {
            format!("{name} drained here")
        }
        Exclusion::Unhealthy if status.healthy && service.is_down(geo) => {
            format!("{name} unhealthy here")
        }
        _ => exclusion_name(x).to_owned(),
    }
}

fn exclusion_name(x: Exclusion) -> &'static str {
    match x {
        Exclusion::Drained => "drained",
        Exclusion::Down => "down",
        Exclusion::Unhealthy => "unhealthy",
        Exclusion::Overloaded => "overloaded",
    }
}

fn rule_name(r: Reason) -> &'static str {
    match r {
        Reason::OnlyCandidate => "only_candidate",
        Reason::StaticMap => "static_map",
        Reason::FailoverGroup { .. } => "failover_group",
        Reason::Canary => "canary",
        Reason::OnlyRoute => "only_route",
        Reason::FewerHops { .. } => "fewer_hops",
        Reason::LessLoaded { .. } => "less_loaded",
        Reason::OwnPop => "own_pop",
        Reason::Preference { .. } => "preference",
        Reason::ClientHash => "client_hash",
    }
}

fn sentence(
    r: Reason,
    g: &Gathered,
    static_hit: Option<&(IpNet, usize)>,
    snap: &Snapshot,
) -> String {
    match r {
        Reason::OnlyCandidate => "it is the only POP that can serve this name".to_owned(),
        Reason::StaticMap => match static_hit {
            Some((prefix, _)) => format!("the static map sends {prefix} to it"),
            None => "the static map names it".to_owned(),
        },
        Reason::Canary => format!(
            "it is a canary for this name and the client block {} falls in its share",
            g.block
        ),
        Reason::FailoverGroup { winner, runner_up } if winner < 128 && runner_up >= 128 => {
            "the next POP is beyond the name's max_hops (or has no route)".to_owned()
        }
        Reason::FailoverGroup { winner, runner_up } => format!(
            "an earlier failover group ({} against {} for the next POP)",
            (winner & 0x7F) + 1,
            (runner_up & 0x7F) + 1
        ),
        Reason::OnlyRoute => "it has a route to the client and the next POP has none".to_owned(),
        Reason::FewerHops { winner, runner_up } => {
            format!("fewest AS hops ({winner} against {runner_up} for the next POP)")
        }
        Reason::LessLoaded { winner, runner_up } => format!(
            "as near as the next POP and less loaded ({}% against {}%, in steps of 10%)",
            u32::from(winner) * 10,
            u32::from(runner_up) * 10
        ),
        Reason::OwnPop => format!(
            "no POP has a route to the client, and {} is this node's own POP",
            snap.config.own_pop().name
        ),
        Reason::Preference { winner, runner_up } => format!(
            "as near as the next POP, and a lower preference ({winner} against {runner_up})"
        ),
        Reason::ClientHash => format!(
            "as near and as preferred as the next POP; the hash of the client block {} picks it",
            g.block
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::{Config, Disk};

    fn services(edit: impl Fn(String) -> String) -> Snapshot {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples/services/sparrow.toml");
        let text = edit(std::fs::read_to_string(&path).unwrap());
        Snapshot::from_config(Config::from_str(&text, &path, &Disk).unwrap().config)
    }

    #[test]
    fn a_service_down_at_a_pop_is_named_and_an_all_down_name_says_its_answer() {
        let (api, client) = (1, "100.64.1.9".parse().unwrap());
        let snap = services(|t| {
            t.replacen(
                "name = \"api\"\nttl = 30\n",
                "name = \"api\"\nttl = 30\nwhen_down = \"nodata\"\n",
                1,
            )
        });
        let e = explain(&snap.with_service_down(0, api, true), api, client);
        assert_eq!(e.service, "api");
        assert_eq!(e.ranking, ["nyc", "syd"]);
        assert_eq!(e.pops[0].excluded, ["api unhealthy here"]);
        assert_eq!(e.addresses, ["A 198.51.100.20"]);
        let all = (0..3).fold(snap, |s, pop| s.with_service_down(pop, api, true));
        let e = explain(&all, api, client);
        assert!(e.failed_open);
        assert_eq!(
            e.reason,
            "no POP can serve api: answering NODATA (when_down = \"nodata\")"
        );
        assert!(e.addresses.is_empty());
        // The POP itself unhealthy is said as before.
        let e = explain(&all.with_health(0, false), 0, client);
        assert_eq!(e.pops[0].excluded, ["unhealthy"]);
    }
}
