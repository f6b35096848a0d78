//! [P] Text rendering of operator API responses.

use std::fmt::Write;

use sparrow_proto::api::{Explanation, StatusReport};

/// Renders an explanation as a table an operator reads at a glance.
pub fn explanation(e: &Explanation) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} for client {} (decision block {})",
        e.name, e.client, e.block
    );
    if let Some(s) = &e.static_map {
        let _ = writeln!(out, "static map: {} -> {}", s.prefix, s.pop);
    }
    let _ = writeln!(
        out,
        "{:<5} {:<8} {:<8} {:<5} {:<22} {:<30} state",
        "rank", "pop", "asn", "hops", "route", "as path"
    );
    let mut pops: Vec<_> = e.pops.iter().collect();
    pops.sort_by_key(|p| (p.rank.is_none(), p.rank));
    for p in pops {
        let (hops, prefix, path) = match (&p.route, p.hops) {
            (Some(r), _) => {
                let path: Vec<String> = r.as_path.iter().map(u32::to_string).collect();
                (r.hops.to_string(), r.prefix.clone(), path.join(" "))
            }
            // A view pulled from the POP's node: hops only, the paths stay there.
            (None, Some(h)) => (
                h.to_string(),
                "(pulled: hops only)".to_owned(),
                format!("(held by {}'s node)", p.pop),
            ),
            (None, None) => ("-".to_owned(), "no route".to_owned(), String::new()),
        };
        let state = if p.eligible {
            "eligible".to_owned()
        } else {
            p.excluded.join(", ")
        };
        let rank = p.rank.map_or("-".to_owned(), |r| r.to_string());
        let _ = writeln!(
            out,
            "{rank:<5} {:<8} {:<8} {hops:<5} {prefix:<22} {path:<30} {state}",
            p.pop,
            format!("AS{}", p.asn),
        );
    }
    let _ = writeln!(out, "{}", e.reason);
    let _ = writeln!(
        out,
        "answer ({} POP{}): {}",
        e.answers,
        if e.answers == 1 { "" } else { "s" },
        if e.addresses.is_empty() {
            "no address".to_owned()
        } else {
            e.addresses.join(", ")
        }
    );
    out
}

/// Renders a node's status: its mode, then one line per POP.
pub fn status(s: &StatusReport) -> String {
    let mut out = String::new();
    let cluster = s
        .cluster
        .as_deref()
        .map_or_else(String::new, |c| format!(" of cluster {c}"));
    if s.cluster.is_some() {
        let _ = writeln!(
            out,
            "node {}{cluster}: {} ({} node{} alive, {} needed for cluster answers)",
            s.pop,
            s.mode,
            s.alive,
            if s.alive == 1 { "" } else { "s" },
            s.quorum
        );
    } else {
        let _ = writeln!(out, "node {}: {}", s.pop, s.mode);
    }
    if !s.ready && !s.ready_reason.is_empty() {
        let _ = writeln!(out, "not ready: {}", s.ready_reason);
    }
    let _ = writeln!(
        out,
        "{:<8} {:<5} {:<9} {:<8} {:<5} addresses",
        "pop", "live", "health", "admin", "load"
    );
    for p in &s.pops {
        let name = if p.this_node {
            format!("{}*", p.name)
        } else {
            p.name.clone()
        };
        let load = p
            .load
            .map_or_else(|| "-".to_owned(), |l| format!("{:.0}%", l * 100.0));
        let _ = writeln!(
            out,
            "{name:<8} {:<5} {:<9} {:<8} {load:<5} {}",
            if p.live { "up" } else { "down" },
            if p.healthy { "healthy" } else { "failing" },
            p.admin,
            p.addresses.join(", ")
        );
    }
    for p in s.pops.iter().filter(|p| p.admin_by.is_some()) {
        let by = p.admin_by.as_deref().unwrap_or_default();
        let (who, at) = by.rsplit_once('@').unwrap_or((by, ""));
        let _ = writeln!(out, "{} {} by {who} (unix ms {at})", p.name, p.admin);
    }
    if s.pops.iter().any(|p| !p.services.is_empty()) {
        let _ = writeln!(out, "services:");
        let _ = writeln!(
            out,
            "{:<8} {:<12} {:<9} {:<8} {:<8} targets",
            "pop", "service", "health", "admin", "answers"
        );
        for p in &s.pops {
            for v in &p.services {
                let _ = writeln!(
                    out,
                    "{:<8} {:<12} {:<9} {:<8} {:<8} {}",
                    p.name,
                    v.name,
                    if v.healthy { "healthy" } else { "failing" },
                    v.admin,
                    if v.serving { "yes" } else { "no" },
                    v.targets.join(", ")
                );
            }
        }
    }
    let differs: Vec<&str> = s
        .pops
        .iter()
        .filter(|p| p.config_differs)
        .map(|p| p.name.as_str())
        .collect();
    if !differs.is_empty() {
        let _ = writeln!(
            out,
            "config differs from this node's on: {} (a change not rolled out everywhere?)",
            differs.join(", ")
        );
    }
    let _ = writeln!(out, "route views:");
    let _ = writeln!(out, "{:<8} {:>9} {:>8}  source", "pop", "prefixes", "age");
    for p in &s.pops {
        match &p.view {
            None => {
                let _ = writeln!(out, "{:<8} {:>9} {:>8}  no view", p.name, "-", "-");
            }
            Some(v) => {
                let age = v.age_secs.map_or_else(|| "-".to_owned(), duration);
                let stale = v
                    .stale_secs
                    .map_or_else(String::new, |s| format!(" (STALE for {})", duration(s)));
                let _ = writeln!(
                    out,
                    "{:<8} {:>9} {:>8}  {}{stale}",
                    p.name, v.prefixes, age, v.source
                );
            }
        }
    }
    if s.cluster.is_some() {
        let _ = writeln!(
            out,
            "gossip: {} bytes sent, {} received; views: {} pulled, {} failed pulls",
            s.gossip_bytes_sent, s.gossip_bytes_received, s.views_pulled, s.view_pull_failures
        );
    }
    out
}

/// `42s`, `7m12s`, `3h05m`, `2d04h`.
fn duration(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m{:02}s", secs / 60, secs % 60),
        3600..86_400 => format!("{}h{:02}m", secs / 3600, secs % 3600 / 60),
        _ => format!("{}d{:02}h", secs / 86_400, secs % 86_400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use sparrow_proto::api::{PopReport, ViewReport};

    use super::*;

    #[test]
    fn status_shows_every_pop_its_load_and_its_route_view() {
        let pop = |name: &str, this_node, load, view| PopReport {
            name: name.into(),
            this_node,
            live: name != "syd",
            healthy: true,
            admin: "active".into(),
            load,
            addresses: vec!["192.0.2.10".into()],
            view,
            admin_by: None,
            node: None,
            config_digest: None,
            config_differs: name == "nyc",
            services: Vec::new(),
        };
        let view = |source: &str, age, stale| {
            Some(ViewReport {
                prefixes: 1_250_000,
                version: Some(1),
                digest: Some("00ff".into()),
                age_secs: Some(age),
                source: source.into(),
                stale_secs: stale,
            })
        };
        let s = StatusReport {
            pop: "ams".into(),
            cluster: Some("example".into()),
            mode: "cluster".into(),
            alive: 2,
            quorum: 2,
            pops: vec![
                pop(
                    "ams",
                    true,
                    Some(0.25),
                    view("bgp 192.0.2.1 AS64500", 75, Some(3700)),
                ),
                pop("nyc", false, None, view("pulled from nyc", 4000, None)),
                pop("syd", false, None, None),
            ],
            gossip_bytes_sent: 10,
            gossip_bytes_received: 20,
            views_pulled: 1,
            view_pull_failures: 0,
            config_digest: None,
            ready: true,
            ready_reason: "every live POP's view held".into(),
        };
        assert_eq!(
            status(&s),
            "\
node ams of cluster example: cluster (2 nodes alive, 2 needed for cluster answers)
pop      live  health    admin    load  addresses
ams*     up    healthy   active   25%   192.0.2.10
nyc      up    healthy   active   -     192.0.2.10
syd      down  healthy   active   -     192.0.2.10
config differs from this node's on: nyc (a change not rolled out everywhere?)
route views:
pop       prefixes      age  source
ams        1250000    1m15s  bgp 192.0.2.1 AS64500 (STALE for 1h01m)
nyc        1250000    1h06m  pulled from nyc
syd              -        -  no view
gossip: 10 bytes sent, 20 received; views: 1 pulled, 0 failed pulls
"
        );
        assert_eq!(duration(0), "0s");
        assert_eq!(duration(59), "59s");
        assert_eq!(duration(86_400 * 2 + 3600 * 4), "2d04h");
    }
}
