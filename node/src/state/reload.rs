//! [P] What a new config changes for a running node, and what it cannot change live.
//!
//! A reload is all or nothing: the new config was validated whole before it gets here, and
//! [`plan`] refuses it whole if it changes what a running node cannot (the POP list, which
//! everything is indexed by; the node's own POP; joining or leaving a cluster). Settings that
//! only take effect at start (listen addresses, sockets, the cluster identity and
//! certificates, the state folder) keep their running values and are named in
//! [`ReloadPlan::needs_restart`]; everything else applies, atomically for answers.

use crate::config::Config;
use crate::routes::RouteView;

/// What a reload does.
#[derive(Debug)]
pub struct ReloadPlan {
    /// The config to run from now on: the new one, with the restart-only settings of the
    /// running one.
    pub config: Config,
    /// What changed and applies now (for the reply and the log).
    pub changes: Vec<String>,
    /// What changed but waits for a restart (kept as it runs).
    pub needs_restart: Vec<String>,
    /// Whether the decision tables must be built again (geo names, the static map or a
    /// route file changed); otherwise the running tables stay.
    pub rebuild_tables: bool,
}

/// Plans the reload from `old` (running) to `new` (just loaded and validated).
pub fn plan(old: &Config, mut new: Config) -> Result<ReloadPlan, String> {
    let names = |c: &Config| c.pops.iter().map(|p| p.name.clone()).collect::<Vec<_>>();
    if names(old) != names(&new) {
        return Err(format!(
            "the POP list changed ({} -> {}): every node indexes its state by it; restart the node to apply",
            names(old).join(" "),
            names(&new).join(" ")
        ));
    }
    if old.node.pop != new.node.pop {
        return Err("the node's own POP changed: restart the node to apply".to_owned());
    }
    if old.cluster.is_some() != new.cluster.is_some() {
        return Err("`[cluster]` was added or removed: restart the node to apply".to_owned());
    }
    let mut needs_restart = Vec::new();
    let mut keep = |what: &str, differs: bool| {
        if differs {
            needs_restart.push(what.to_owned());
        }
        differs
    };
    if keep("[node] listen", old.node.listen != new.node.listen) {
        new.node.listen = old.node.listen.clone();
    }
    if keep(
        "[node] api_socket",
        old.node.api_socket != new.node.api_socket,
    ) {
        new.node.api_socket = old.node.api_socket.clone();
    }
    if keep(
        "[node] metrics_listen",
        old.node.metrics_listen != new.node.metrics_listen,
    ) {
        new.node.metrics_listen = old.node.metrics_listen;
    }
    if keep("[node] state_dir", old.node.state_dir != new.node.state_dir) {
        new.node.state_dir = old.node.state_dir.clone();
    }
    if keep(
        "[node] tcp_idle_timeout_secs",
        old.node.tcp_idle_timeout != new.node.tcp_idle_timeout,
    ) {
        new.node.tcp_idle_timeout = old.node.tcp_idle_timeout;
    }
    // The DNS server's settings are read when it starts.
    if keep(
        "[node] dns_workers",
        old.node.dns_workers != new.node.dns_workers,
    ) {
        new.node.dns_workers = old.node.dns_workers;
    }
    if keep(
        "[node] tcp_max_connections",
        old.node.tcp_max_connections != new.node.tcp_max_connections,
    ) {
        new.node.tcp_max_connections = old.node.tcp_max_connections;
    }
    if keep("[node.rrl]", old.node.rrl != new.node.rrl) {
        new.node.rrl = old.node.rrl;
    }
    if let (Some(o), Some(n)) = (&old.cluster, &mut new.cluster) {
        if keep("[cluster] id", o.id != n.id) {
            n.id = o.id.clone();
        }
        if keep("[cluster] listen", o.listen != n.listen) {
            n.listen = o.listen;
        }
        if keep("[cluster] seeds", o.seeds != n.seeds) {
            n.seeds = o.seeds.clone();
        }
        if keep(
            "[cluster] ca, cert and key",
            o.ca_pem != n.ca_pem || o.cert_pem != n.cert_pem || o.key_pem != n.key_pem,
        ) {
            n.ca_pem = o.ca_pem.clone();
            n.cert_pem = o.cert_pem.clone();
            n.key_pem = o.key_pem.clone();
        }
        if keep(
            "[cluster] gossip_interval_ms",
            o.gossip_interval != n.gossip_interval,
        ) {
            n.gossip_interval = o.gossip_interval;
        }
    }
    let mut changes = Vec::new();
    let mut note = |what: String, differs: bool| {
        if differs {
            changes.push(what);
        }
    };
    for zone in new.zones.iter() {
        note(
            format!("zone {}", zone.origin_name()),
            old.zones
                .get(zone.origin())
                .is_none_or(|o| o.records() != zone.records()),
        );
    }
    for zone in old.zones.iter() {
        note(
            format!("zone {} (removed)", zone.origin_name()),
            new.zones.get(zone.origin()).is_none(),
        );
    }
    for (o, n) in old.pops.iter().zip(&new.pops) {
        note(
            format!("POP {}", n.name),
            o.asn != n.asn
                || o.v4 != n.v4
                || o.v6 != n.v6
                || o.preference != n.preference
                || o.weight != n.weight
                || o.admin != n.admin,
        );
        note(
            format!("route view of {}", n.name),
            !same_view(o.route_view.as_deref(), n.route_view.as_deref()),
        );
    }
    let geo = |c: &Config| {
        c.geo
            .iter()
            .map(|g| (g.name.to_string(), g.ttl, g.answers, g.pops.clone()))
            .collect::<Vec<_>>()
    };
    note("geo names".to_owned(), geo(old) != geo(&new));
    let static_map = |c: &Config| c.static_map.as_ref().map(|m| m.entries().to_vec());
    note("static map".to_owned(), static_map(old) != static_map(&new));
    note("probes".to_owned(), old.node.probes != new.node.probes);
    note("load probe".to_owned(), old.node.load != new.node.load);
    note(
        "own route view source".to_owned(),
        old.node.own_view.describe() != new.node.own_view.describe(),
    );
    note(
        "load_high_water".to_owned(),
        old.node.load_high_water != new.node.load_high_water,
    );
    note(
        "max_udp_payload".to_owned(),
        old.node.max_udp_payload != new.node.max_udp_payload,
    );
    if let (Some(o), Some(n)) = (&old.cluster, &new.cluster) {
        note("[cluster] quorum".to_owned(), o.quorum != n.quorum);
        note(
            "[cluster] local_only_ttl".to_owned(),
            o.local_only_ttl != n.local_only_ttl,
        );
        note("revoked certificates".to_owned(), o.revoked != n.revoked);
    }
    let pop_lists = |c: &Config| c.geo.iter().map(|g| g.pops.clone()).collect::<Vec<_>>();
    let views_changed = old
        .pops
        .iter()
        .zip(&new.pops)
        .any(|(o, n)| !same_view(o.route_view.as_deref(), n.route_view.as_deref()));
    let rebuild_tables =
        pop_lists(old) != pop_lists(&new) || static_map(old) != static_map(&new) || views_changed;
    new.digest = new.compute_digest();
    Ok(ReloadPlan {
        config: new,
        changes,
        needs_restart,
        rebuild_tables,
    })
}

/// Whether two route views hold the same routes.
fn same_view(a: Option<&RouteView>, b: Option<&RouteView>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => a.len() == b.len() && a.entries().eq(b.entries()),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::Disk;

    fn load(edit: impl Fn(String) -> String) -> Config {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../deploy/examples/single-node/sparrow.toml");
        let text = edit(std::fs::read_to_string(&path).unwrap());
        Config::from_str(&text, &path, &Disk).unwrap().config
    }

    #[test]
    fn live_settings_apply_restart_only_ones_wait_and_the_pop_list_cannot_change() {
        let old = load(|t| t);
        let same = plan(&old, load(|t| t)).unwrap();
        assert!(
            same.changes.is_empty() && same.needs_restart.is_empty(),
            "{same:?}"
        );
        assert!(!same.rebuild_tables);
        // An address and the listen address change: the first applies, the second waits.
        let new = load(|t| {
            t.replace("198.51.100.10", "198.51.100.11")
                .replace("127.0.0.1:5301", "127.0.0.1:5399")
        });
        let p = plan(&old, new).unwrap();
        assert_eq!(p.changes, ["POP nyc"]);
        assert_eq!(p.needs_restart, ["[node] listen"]);
        assert_eq!(p.config.node.listen, old.node.listen, "kept as it runs");
        assert!(!p.rebuild_tables);
        assert_ne!(p.config.answer_digest(), old.answer_digest());
        // nyc's route file names another file: the tables are built again.
        let p = plan(
            &old,
            load(|t| t.replace("views/nyc.routes", "views/syd.routes")),
        )
        .unwrap();
        assert!(p.rebuild_tables);
        assert_eq!(p.changes, ["route view of nyc"]);
        // The static map dropped: the tables are built again.
        let p = plan(
            &old,
            load(|t| t.replace("[static_map]\nfile = \"ssrs.routes\"", "")),
        )
        .unwrap();
        assert!(
            p.rebuild_tables && p.changes == ["static map"],
            "{:?}",
            p.changes
        );
        // A POP renamed: refused whole.
        let e = plan(
            &old,
            load(|t| t.replace("name = \"syd\"", "name = \"akl\"")),
        )
        .unwrap_err();
        assert!(e.contains("POP list changed"), "{e}");
    }
}
