use super::*;
use crate::scenario::Scenario;

fn sim(seed: u64) -> Sim {
    Sim::generate(150, seed, &PopRequest::auto(3)).unwrap()
}

/// Everything a folder holds, as text.
fn outputs(s: &Sim, layout: &Layout) -> Vec<String> {
    let mut out: Vec<String> = (0..s.pops.len())
        .flat_map(|i| [node_config(s, layout, i), s.views.text(&s.topology, i, "h")])
        .collect();
    out.push(s.truth.to_text("h"));
    out.push(s.topology.to_text());
    out.push(describe(s, layout));
    out
}

#[test]
fn same_seed_gives_byte_identical_output() {
    let layout = Layout::loopback(3, 5301, Some(7301), "netsim");
    let a = outputs(&sim(77), &layout);
    assert_eq!(a, outputs(&sim(77), &layout));
    let b = outputs(&sim(78), &layout);
    assert!(
        a.iter().zip(&b).all(|(x, y)| x != y),
        "another seed, other output"
    );
}

#[test]
fn node_config_has_the_example_shape_and_takes_overrides() {
    let s = sim(1);
    let mut layout = Layout::loopback(3, 5301, Some(7301), "lab");
    let text = node_config(&s, &layout, 1);
    let doc: Table = toml::from_str(&text).unwrap();
    assert_eq!(doc["node"]["pop"].as_str(), Some("nyc"));
    assert_eq!(doc["node"]["listen"][0].as_str(), Some("127.0.0.1:5302"));
    assert_eq!(doc["pop"].as_array().unwrap().len(), 3);
    // A clustered node reads its own view; the others come from their nodes.
    assert_eq!(
        doc["pop"][1]["route_view"].as_str(),
        Some("views/nyc.routes")
    );
    assert!(doc["pop"][2].get("route_view").is_none());
    let standalone = Layout::loopback(3, 5301, None, "lab");
    let alone: Table = toml::from_str(&node_config(&s, &standalone, 1)).unwrap();
    assert_eq!(
        alone["pop"][2]["route_view"].as_str(),
        Some("views/sjc.routes")
    );
    assert_eq!(doc["geo"][0]["name"].as_str(), Some(GEO_NAME));
    let c = &doc["cluster"];
    assert_eq!(c["id"].as_str(), Some("lab"));
    assert_eq!(c["listen"].as_str(), Some("127.0.0.1:7302"));
    let seeds: Vec<&str> = c["seeds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(seeds, ["127.0.0.1:7301", "127.0.0.1:7303"]);
    assert_eq!(c["cert"].as_str(), Some("pki/nyc.pem"));
    // Sections come in the example's order.
    let node = text.find("[node]").unwrap();
    let cluster = text.find("[cluster]").unwrap();
    assert!(node < text.find("[[pop]]").unwrap() && text.find("[[geo]]").unwrap() < cluster);

    let over: Table =
        toml::from_str("cluster = { gossip_interval_ms = 100 }\nnode = { load_high_water = 0.5 }")
            .unwrap();
    let mine: Table = toml::from_str("cluster = { gossip_interval_ms = 50 }").unwrap();
    layout.overrides = vec![vec![over.clone()], vec![over, mine], vec![]];
    let doc: Table = toml::from_str(&node_config(&s, &layout, 1)).unwrap();
    assert_eq!(doc["cluster"]["gossip_interval_ms"].as_integer(), Some(50));
    assert_eq!(
        doc["cluster"]["id"].as_str(),
        Some("lab"),
        "merged, not replaced"
    );
    assert_eq!(doc["node"]["load_high_water"].as_float(), Some(0.5));
    let doc: Table = toml::from_str(&node_config(&s, &layout, 2)).unwrap();
    assert!(doc["node"].get("load_high_water").is_none());

    let standalone = Layout::loopback(3, 5301, None, "lab");
    assert!(!node_config(&s, &standalone, 0).contains("[cluster]"));
}

#[test]
fn a_scenario_gives_its_pops_and_size() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/split-brain.toml");
    let sc = Scenario::load(&path).unwrap();
    let requests: Vec<PopRequest> = sc.cluster.pops.iter().map(|p| p.request.clone()).collect();
    let s = Sim::generate(sc.topology.ases, 3, &requests).unwrap();
    assert_eq!(s.topology.ases.len(), 500);
    let names: Vec<&str> = s.pops.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["fra", "nyc", "sjc", "sin", "syd"]);
}

#[test]
fn pki_commands_name_every_node() {
    let s = sim(1);
    let layout = Layout::loopback(3, 5301, Some(7301), "lab");
    let cmds = pki_commands(&s, layout.cluster.as_ref().unwrap());
    assert_eq!(cmds[0].join(" "), "cert ca --cluster lab --dir pki");
    assert_eq!(cmds[2].join(" "), "cert node nyc --san 127.0.0.1 --dir pki");
    assert_eq!(cmds.len(), 4);
}
