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
        let (hops, prefix, path) = match &p.route {
            Some(r) => {
                let path: Vec<String> = r.as_path.iter().map(u32::to_string).collect();
                (r.hops.to_string(), r.prefix.clone(), path.join(" "))
            }
            None => ("-".to_owned(), "no route".to_owned(), String::new()),
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
    let _ = writeln!(
        out,
        "node {}{cluster}: {} ({} of {} needed alive)",
        s.pop, s.mode, s.alive, s.quorum
    );
    let _ = writeln!(
        out,
        "{:<8} {:<5} {:<9} {:<8} addresses",
        "pop", "live", "health", "admin"
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
    if s.cluster.is_some() {
        let _ = writeln!(
            out,
            "gossip: {} bytes sent, {} received",
            s.gossip_bytes_sent, s.gossip_bytes_received
        );
    }
    out
}
