//! The node state as a pure state machine: changes in, effects out, no sockets or clocks.

use std::path::Path;
use std::sync::Arc;

use super::*;
use crate::cluster::state::{HotState, PeerView};
use crate::config::Disk;
use crate::routes::parse_route_view;
use crate::routes::transfer;

fn config(edit: impl Fn(String) -> String) -> Arc<Config> {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples/single-node/sparrow.toml");
    let text = edit(std::fs::read_to_string(&path).unwrap());
    Arc::new(Config::from_str(&text, &path, &Disk).unwrap().config)
}

/// The example as a clustered node (the PKI is made on the spot, as the demo does).
fn clustered() -> Arc<Config> {
    let gossip: Vec<std::net::SocketAddr> = (0..3)
        .map(|i| format!("127.0.0.1:{}", 7300 + i).parse().unwrap())
        .collect();
    let mut configs = crate::demo::configs(0, &gossip).unwrap();
    Arc::new(configs.remove(0))
}

fn by(who: &str) -> AdminBy {
    AdminBy {
        who: who.into(),
        at_ms: 1,
    }
}

fn ask(s: &Snapshot, client: &str) -> usize {
    s.route(0, client.parse().unwrap()).ranking.order[0]
}

/// Runs every build the effects ask for, as the owner would, until none is left.
fn settle(state: &mut NodeState, mut fx: Effects) -> Effects {
    while let Some(job) = fx.build.take() {
        let tables = job.run(state.config());
        let next = state.apply(Change::Built(tables), 10);
        fx.publish = next.publish.or(fx.publish);
        fx.build = next.build;
        fx.events.extend(next.events);
    }
    fx
}

#[test]
fn a_standalone_node_is_a_cluster_of_one_through_the_same_derivation() {
    let mut s = NodeState::new(config(|t| t), vec![None; 3], false);
    assert_eq!(s.snapshot().mode, Mode::Standalone);
    assert!(s.snapshot().pop_status.iter().all(|p| p.live && p.healthy));
    let fx = s.apply(Change::Health(false), 1);
    assert_eq!(fx.events, [Event::OwnHealth(false)]);
    let snap = fx.publish.expect("published");
    assert!(!snap.pop_status[0].healthy);
    assert!(
        fx.announce.is_none(),
        "nothing to announce without a cluster"
    );
    // The same verdict again changes nothing.
    let fx = s.apply(Change::Health(false), 2);
    assert!(fx.publish.is_none() && fx.events.is_empty());
    // A standalone operator drains any POP; it is kept on disk.
    let fx = s.apply(
        Change::Admin {
            pop: 1,
            state: AdminState::Drained,
            by: by("alice"),
        },
        3,
    );
    assert!(fx.persist_admin);
    let snap = fx.publish.unwrap();
    assert_eq!(snap.pop_status[1].admin, AdminState::Drained);
    assert_eq!(snap.admin_by[1], Some(by("alice")));
    assert_eq!(
        s.admin_records()[1].as_ref().unwrap().state,
        AdminState::Drained
    );
}

#[test]
fn a_clustered_node_takes_each_pop_from_its_own_node_and_drains_only_its_own() {
    let mut s = NodeState::new(clustered(), vec![None; 3], false);
    // Nobody heard yet: local-only.
    assert_eq!(
        s.snapshot().mode,
        Mode::LocalOnly {
            alive: 1,
            quorum: 2
        }
    );
    let hot = s.initial_announcement();
    assert_eq!(hot.config, Some(s.config().answer_digest()));
    let nyc = HotState {
        admin: AdminState::Drained,
        admin_by: Some(by("bob")),
        ..HotState::up()
    };
    let peers = vec![
        PeerView::default(),
        PeerView {
            known: Some(nyc),
            alive: true,
            addr: None,
        },
        PeerView {
            known: Some(HotState::up()),
            alive: true,
            addr: None,
        },
    ];
    let fx = s.apply(Change::Peers(peers), 1);
    let snap = fx.publish.unwrap();
    assert_eq!(snap.mode, Mode::Cluster { alive: 3 });
    assert_eq!(snap.pop_status[1].admin, AdminState::Drained);
    assert_eq!(snap.admin_by[1], Some(by("bob")));
    assert!(fx.events.contains(&Event::Mode {
        before: Mode::LocalOnly {
            alive: 1,
            quorum: 2
        },
        after: Mode::Cluster { alive: 3 }
    }));
    // The own state announced says which POPs this node treats as drained.
    assert_eq!(fx.announce.unwrap().drained, ["nyc"]);
    // Another POP's admin state is not this node's to set.
    let fx = s.apply(
        Change::Admin {
            pop: 2,
            state: AdminState::Drained,
            by: by("mallory"),
        },
        2,
    );
    assert!(matches!(&fx.events[..], [Event::Refused(_)]));
    assert!(fx.publish.is_none() && !fx.persist_admin);
    // Its own it is: answers change, the cluster is told, the disk keeps it.
    let fx = s.apply(
        Change::Admin {
            pop: 0,
            state: AdminState::Drained,
            by: by("alice"),
        },
        3,
    );
    assert!(fx.persist_admin);
    let hot = fx.announce.unwrap();
    assert_eq!(hot.admin, AdminState::Drained);
    assert_eq!(hot.admin_by, Some(by("alice")));
    assert_eq!(hot.drained, ["ams", "nyc"]);
}

#[test]
fn a_kept_admin_state_survives_a_restart_unless_the_config_changed_since() {
    let kept = vec![
        Some(AdminRecord {
            state: AdminState::Drained,
            by: by("alice"),
            config_admin: AdminState::Active,
        }),
        None,
        Some(AdminRecord {
            state: AdminState::Drained,
            by: by("alice"),
            // The config said drained then; it says active now: the edit is newer.
            config_admin: AdminState::Drained,
        }),
    ];
    let s = NodeState::new(config(|t| t), kept, false);
    assert_eq!(s.snapshot().pop_status[0].admin, AdminState::Drained);
    assert_eq!(s.snapshot().pop_status[2].admin, AdminState::Active);
}

#[test]
fn view_changes_during_a_build_wait_and_go_in_on_top_of_it() {
    let mut s = NodeState::new(config(|t| t), vec![None; 3], false);
    let far = Arc::new(parse_route_view("100.64.0.0/16 1 2 3 4 5 6\n").0);
    // ams's own view now puts 100.64.1.0/24 far away: nyc (3 hops) wins.
    let fx = s.apply(
        Change::OwnView(OwnView {
            view: Some(far.clone()),
            source: "bgp 192.0.2.1".into(),
            stale_since_ms: None,
        }),
        100,
    );
    let first = fx.build.expect("a build");
    assert!(s.is_building());
    // While it runs, nyc's view is pulled: it waits.
    let (nyc_view, _) = parse_route_view("100.64.2.0/24 9 9 9 9 9 9 9\n");
    let encoded = transfer::encode(&nyc_view, 5);
    let hops = transfer::decode_stream(&transfer::stream_bytes(&encoded))
        .unwrap()
        .1;
    let info = ViewInfo {
        version: Some(5),
        digest: Some(encoded.header.digest),
        prefixes: 1,
        source: "pulled from nyc".into(),
        stale_since_ms: None,
    };
    let fx = s.apply(Change::Pulled(vec![(1, Arc::new(hops), info.clone())]), 101);
    assert!(fx.build.is_none(), "one build at a time");
    // The first build lands; the pull goes in next, on top of it.
    let tables = first.run(s.config());
    let fx = s.apply(Change::Built(tables), 102);
    let snap = fx.publish.clone().unwrap();
    assert!(Arc::ptr_eq(snap.view(0).unwrap(), &far));
    assert_eq!(
        ask(&snap, "100.64.1.9"),
        1,
        "nyc is nearest without ams's route"
    );
    let fx = settle(&mut s, fx);
    let snap = fx.publish.unwrap();
    assert!(
        Arc::ptr_eq(snap.view(0).unwrap(), &far),
        "the own view stays"
    );
    assert_eq!(snap.view_info(1), Some(&info));
    // nyc is 7 hops from 100.64.2.0/24 now: syd (4) wins there.
    assert_eq!(ask(&snap, "100.64.2.9"), 2);
    assert!(!s.is_building());
}

#[test]
fn the_kept_views_load_is_the_first_build_and_changes_meanwhile_go_on_top() {
    let mut s = NodeState::new(clustered(), vec![None; 3], true);
    assert!(s.is_building());
    let own = Arc::new(parse_route_view("100.64.1.0/24 9 9 9 9 9 9\n").0);
    let fx = s.apply(
        Change::OwnView(OwnView {
            view: Some(own.clone()),
            source: "mrt".into(),
            stale_since_ms: None,
        }),
        50,
    );
    assert!(fx.build.is_none(), "waits for the kept views");
    let (_, version) = fx.encode.expect("the own view is encoded for peers");
    assert_eq!(version, 50);
    // No kept views after all.
    let base = s.snapshot().tables().clone();
    let streamed = base.build_streamed(
        s.config(),
        &[],
        |_, _| unreachable!(),
        |_, _| unreachable!(),
    );
    let fx = s.apply(Change::Kept(streamed), 51);
    let fx = settle(&mut s, fx);
    let snap = fx.publish.unwrap();
    assert!(Arc::ptr_eq(snap.view(0).unwrap(), &own));
    // The encoding of an older version is dropped; the current one is served and announced.
    let fx = s.apply(
        Change::OwnViewEncoded {
            version: 49,
            encoded: Some(Arc::new(transfer::encode(&own, 49))),
        },
        52,
    );
    assert!(fx.serve.is_none());
    let encoded = Arc::new(transfer::encode(&own, 50));
    let fx = s.apply(
        Change::OwnViewEncoded {
            version: 50,
            encoded: Some(encoded.clone()),
        },
        53,
    );
    assert!(fx.serve.is_some());
    let a = fx.announce.unwrap().view.unwrap();
    assert_eq!((a.version, a.digest), (50, encoded.header.digest));
    // Gone stale: announced as stale, answers unchanged, nothing rebuilt.
    let fx = s.apply(
        Change::OwnView(OwnView {
            view: Some(own.clone()),
            source: "mrt".into(),
            stale_since_ms: Some(60),
        }),
        60,
    );
    assert!(fx.build.is_none() && fx.encode.is_none());
    assert_eq!(fx.announce.unwrap().view.unwrap().stale_since_ms, Some(60));
    assert_eq!(
        fx.publish.unwrap().view_info(0).unwrap().stale_since_ms,
        Some(60)
    );
}

#[test]
fn a_reload_publishes_the_new_config_at_once_or_when_its_tables_are_built() {
    let mut s = NodeState::new(config(|t| t), vec![None; 3], false);
    let old = s.snapshot().clone();
    // A new address for nyc: no table to build, the next snapshot has it.
    let plan = reload::plan(
        s.config(),
        Arc::into_inner(config(|t| t.replace("198.51.100.10", "198.51.100.11"))).unwrap(),
    )
    .unwrap();
    assert!(!plan.rebuild_tables);
    let (fx, applied) = s.reload(plan);
    assert!(applied && fx.reload.is_none());
    let snap = fx.publish.expect("the new config is published");
    assert_eq!(
        snap.config.pops[1].v4,
        ["198.51.100.11".parse::<std::net::Ipv4Addr>().unwrap()]
    );
    assert!(snap.tables().same_as(old.tables()), "the tables are shared");
    assert!(!s.is_reloading());

    // A geo name's TTL and nyc's route view change: the tables are built first, and
    // answers keep the running config until they land.
    let plan = reload::plan(
        s.config(),
        Arc::into_inner(config(|t| {
            t.replace("198.51.100.10", "198.51.100.11")
                .replace("ttl = 30", "ttl = 31")
                .replace("views/nyc.routes", "views/syd.routes")
        }))
        .unwrap(),
    )
    .unwrap();
    assert!(plan.rebuild_tables);
    let (fx, applied) = s.reload(plan);
    assert!(!applied && fx.publish.is_none());
    let job = fx.reload.expect("a build is asked for");
    assert!(s.is_reloading());
    // A health change meanwhile goes into the running config.
    let fx = s.apply(Change::Health(false), 5);
    assert_eq!(fx.publish.unwrap().config.geo[0].ttl, 30);
    let tables = Tables::from_config(&job.config);
    let fx = s.apply(
        Change::Reloaded {
            config: job.config.clone(),
            tables,
            held: vec![None; 3],
        },
        6,
    );
    let snap = fx.publish.expect("published with the new tables");
    assert_eq!(snap.config.geo[0].ttl, 31);
    assert!(!snap.pop_status[0].healthy, "the health change stands");
    assert!(!s.is_reloading());
}
