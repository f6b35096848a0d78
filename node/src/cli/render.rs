//! [P] Text rendering of operator API responses.

use std::fmt::Write;

use sparrow_proto::api::Explanation;

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
