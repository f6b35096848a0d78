//! A generated world ([`Sim`]: topology, POPs, their route views, ground truth) and the
//! ready-to-run cluster folder made from it.
//!
//! [`Sim::generate`] and [`node_config`] are pure \[P\]; [`write_folder`] \[E\] is the only
//! function here that touches the disk. The node configs have the shape of
//! `deploy/examples/single-node/sparrow.toml` (one `[[pop]]` per POP, each with its route
//! view, one geo name `www.example.net`) plus a `[cluster]` table as in the README's
//! "A cluster", unless the folder is for standalone nodes.
//!
//! Folder layout:
//! - `POP.toml`: the node config of each POP;
//! - `views/POP.routes`: each POP's route view (`PREFIX AS_PATH...`);
//! - `truth.txt`: ground truth per client prefix ([`Truth::to_text`]);
//! - `topology.txt`: the ASes and links ([`Topology::to_text`]);
//! - `netsim.txt`: the seed and the POPs' placement and addresses;
//! - `run/`: where the nodes put their operator API sockets;
//! - `pki/`: the cluster's certificates, made by `sparrow cert` (see `make-pki.sh`).

#[cfg(test)]
mod tests;

use std::fmt::Write as _;
use std::io::{self, BufWriter, Write as _};
use std::net::SocketAddr;
use std::path::Path;

use toml::{Table, Value};

use crate::pops::{self, PlaceError, Pop, PopRequest};
use crate::routes::PopViews;
use crate::topology::{SpecError, Topology, TopologySpec};
use crate::truth::Truth;

/// The geo name every generated config serves (`www` in [`ZONE`]).
pub const GEO_NAME: &str = "www";
/// The zone of the generated configs.
pub const ZONE: &str = "example.net.";
/// TTL of geo answers in the generated configs.
pub const GEO_TTL: u32 = 30;

/// A generated world.
#[derive(Clone, Debug)]
pub struct Sim {
    /// The seed everything came from.
    pub seed: u64,
    /// The Internet.
    pub topology: Topology,
    /// The POPs, in the order asked for.
    pub pops: Vec<Pop>,
    /// Each POP's route view.
    pub views: PopViews,
    /// Ground truth per client prefix.
    pub truth: Truth,
}

/// Why a world cannot be generated.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The topology spec is out of range.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// The POPs cannot be placed.
    #[error(transparent)]
    Place(#[from] PlaceError),
}

impl Sim {
    /// Generates a topology of `ases` ASes from `seed`, places `requests` in it and derives
    /// the views and the truth.
    pub fn generate(ases: usize, seed: u64, requests: &[PopRequest]) -> Result<Self, SimError> {
        Self::from_spec(TopologySpec::new(ases, seed), seed, requests)
    }

    /// As [`Sim::generate`] from a full topology spec; `seed` drives the placement.
    pub fn from_spec(
        spec: TopologySpec,
        seed: u64,
        requests: &[PopRequest],
    ) -> Result<Self, SimError> {
        let topology = Topology::generate(spec)?;
        let pops = pops::place(&topology, requests, seed)?;
        let pop_ases: Vec<u32> = pops.iter().map(|p| p.as_index).collect();
        let views = PopViews::compute(&topology, &pop_ases);
        let truth = Truth::compute(&topology, &pops, &views);
        Ok(Self {
            seed,
            topology,
            pops,
            views,
            truth,
        })
    }
}

/// How the nodes of a folder are reached.
#[derive(Clone, Debug)]
pub struct Layout {
    /// DNS address of each POP's node, in POP order.
    pub dns: Vec<SocketAddr>,
    /// The cluster, or `None` for standalone nodes (each answers from all views alone).
    pub cluster: Option<ClusterLayout>,
    /// Config overrides per POP, applied in order (cluster-wide ones first), merged key by
    /// key into the generated config. Empty: none.
    pub overrides: Vec<Vec<Table>>,
}

/// The cluster part of a [`Layout`].
#[derive(Clone, Debug)]
pub struct ClusterLayout {
    /// Cluster id (certificates name it).
    pub id: String,
    /// Gossip address of each POP's node, in POP order.
    pub gossip: Vec<SocketAddr>,
}

impl Layout {
    /// Nodes on 127.0.0.1: DNS on `dns_port`, `dns_port + 1`, ..., gossip likewise from
    /// `gossip_port` (no cluster when `None`).
    pub fn loopback(pops: usize, dns_port: u16, gossip_port: Option<u16>, id: &str) -> Self {
        let at = |base: u16, i: usize| SocketAddr::from(([127, 0, 0, 1], base + i as u16));
        Self {
            dns: (0..pops).map(|i| at(dns_port, i)).collect(),
            cluster: gossip_port.map(|g| ClusterLayout {
                id: id.to_owned(),
                gossip: (0..pops).map(|i| at(g, i)).collect(),
            }),
            overrides: Vec::new(),
        }
    }
}

/// The node config of POP `pop` as TOML text.
pub fn node_config(sim: &Sim, layout: &Layout, pop: usize) -> String {
    let name = &sim.pops[pop].name;
    let mut doc = Table::new();
    doc.insert(
        "node".into(),
        table([
            ("pop", name.as_str().into()),
            ("listen", array([layout.dns[pop].to_string().into()])),
            ("api_socket", format!("run/{name}.sock").into()),
        ]),
    );
    doc.insert("zone".into(), zone());
    doc.insert(
        "pop".into(),
        Value::Array(
            sim.pops
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let mut t = table([
                        ("name", p.name.as_str().into()),
                        ("asn", i64::from(p.asn).into()),
                        (
                            "addresses",
                            array(p.addresses.iter().map(|a| a.to_string().into())),
                        ),
                    ]);
                    // In a cluster a node reads only its own POP's view, as in production:
                    // the others are pulled from their nodes (and a node keeps only their
                    // hops). A standalone node needs every view.
                    if (layout.cluster.is_none() || i == pop)
                        && let Value::Table(t) = &mut t
                    {
                        t.insert(
                            "route_view".into(),
                            format!("views/{}.routes", p.name).into(),
                        );
                    }
                    t
                })
                .collect(),
        ),
    );
    doc.insert(
        "geo".into(),
        array([table([
            ("name", GEO_NAME.into()),
            ("ttl", i64::from(GEO_TTL).into()),
            ("answers", 1.into()),
        ])]),
    );
    if let Some(c) = &layout.cluster {
        let seeds = c
            .gossip
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != pop)
            .map(|(_, a)| a.to_string().into());
        doc.insert(
            "cluster".into(),
            table([
                ("id", c.id.as_str().into()),
                ("listen", c.gossip[pop].to_string().into()),
                ("seeds", array(seeds)),
                ("ca", "pki/ca.pem".into()),
                ("cert", format!("pki/{name}.pem").into()),
                ("key", format!("pki/{name}.key").into()),
            ]),
        );
    }
    for o in layout.overrides.get(pop).into_iter().flatten() {
        merge(&mut doc, o);
    }
    let mut out = format!(
        "# Node config of POP {name}, generated by sparrow-netsim (seed {}).\n\
         # Keys as in deploy/examples/single-node/sparrow.toml; relative paths resolve\n\
         # against this file's folder.\n",
        sim.seed
    );
    // Sections in the order of the example config, then anything an override added.
    let mut keys: Vec<&String> = doc.keys().collect();
    let order = ["node", "zone", "pop", "geo", "static_map", "cluster"];
    keys.sort_by_key(|k| order.iter().position(|o| o == k).unwrap_or(order.len()));
    for k in keys {
        let mut one = Table::new();
        one.insert(k.clone(), doc[k].clone());
        // INVARIANT: a table of strings, integers, floats, booleans, arrays and tables
        // always serializes.
        let text = toml::to_string(&one).expect("TOML tables serialize");
        out.push('\n');
        out.push_str(&text);
    }
    out
}

/// The zone every generated node serves: `example.net.` with two name servers in
/// documentation space (never inside a generated prefix).
fn zone() -> Value {
    let record = |name: &str, data: &str| {
        table([
            ("name", name.into()),
            ("type", "A".into()),
            ("data", data.into()),
        ])
    };
    table([
        ("origin", ZONE.into()),
        ("ttl", 3600.into()),
        ("ns", array(["ns1".into(), "ns2".into()])),
        (
            "soa",
            table([
                ("mname", "ns1".into()),
                ("rname", "hostmaster".into()),
                ("serial", 1.into()),
                ("minimum", 60.into()),
            ]),
        ),
        (
            "record",
            array([record("ns1", "192.0.2.53"), record("ns2", "198.51.100.53")]),
        ),
    ])
}

fn table<const N: usize>(entries: [(&str, Value); N]) -> Value {
    Value::Table(
        entries
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
    )
}

fn array(items: impl IntoIterator<Item = Value>) -> Value {
    Value::Array(items.into_iter().collect())
}

/// Merges `over` into `base`: tables merge key by key, anything else replaces.
pub fn merge(base: &mut Table, over: &Table) {
    for (k, v) in over {
        match (base.get_mut(k), v) {
            (Some(Value::Table(b)), Value::Table(o)) => merge(b, o),
            _ => {
                base.insert(k.clone(), v.clone());
            }
        }
    }
}

/// The commands that make the folder's PKI with `sparrow cert` (run from the folder).
pub fn pki_commands(sim: &Sim, cluster: &ClusterLayout) -> Vec<Vec<String>> {
    let mut out = vec![vec![
        "cert".into(),
        "ca".into(),
        "--cluster".into(),
        cluster.id.clone(),
        "--dir".into(),
        "pki".into(),
    ]];
    for (p, addr) in sim.pops.iter().zip(&cluster.gossip) {
        out.push(vec![
            "cert".into(),
            "node".into(),
            p.name.clone(),
            "--san".into(),
            addr.ip().to_string(),
            "--dir".into(),
            "pki".into(),
        ]);
    }
    out
}

/// A summary of the world and the layout, for `netsim.txt`.
pub fn describe(sim: &Sim, layout: &Layout) -> String {
    let t = &sim.topology;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Generated by sparrow-netsim. Regenerate with: netsim gen --seed {} --ases {} --pops {}",
        sim.seed,
        t.ases.len(),
        sim.pops
            .iter()
            .map(|p| format!("{}=AS{}", p.name, p.asn))
            .collect::<Vec<_>>()
            .join(",")
    );
    let _ = writeln!(out, "seed {}", sim.seed);
    let _ = writeln!(
        out,
        "topology {} ASes, {} links, {} prefixes ({} client prefixes with truth)",
        t.ases.len(),
        t.link_count(),
        t.prefixes.len(),
        sim.truth.entries.len()
    );
    for (i, p) in sim.pops.iter().enumerate() {
        let a = &t.ases[p.as_index as usize];
        let addrs: Vec<String> = p.addresses.iter().map(ToString::to_string).collect();
        let _ = write!(
            out,
            "pop {} AS{} {} {} dns {}",
            p.name,
            p.asn,
            a.region,
            addrs.join(","),
            layout.dns[i]
        );
        if let Some(c) = &layout.cluster {
            let _ = write!(out, " gossip {}", c.gossip[i]);
        }
        out.push('\n');
    }
    out
}

/// Writes the cluster folder of `sim` with `layout` into `dir` (created if missing; files
/// of the same names are replaced, others left alone).
pub fn write_folder(sim: &Sim, layout: &Layout, dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir.join("views"))?;
    std::fs::create_dir_all(dir.join("run"))?;
    let header = format!(
        "Generated by sparrow-netsim (seed {}): {} ASes.",
        sim.seed,
        sim.topology.ases.len()
    );
    for (i, p) in sim.pops.iter().enumerate() {
        let mut f = BufWriter::new(std::fs::File::create(
            dir.join("views").join(format!("{}.routes", p.name)),
        )?);
        sim.views.write_text(
            &sim.topology,
            i,
            &format!("Route view of POP {} (AS{}). {header}", p.name, p.asn),
            &mut f,
        )?;
        f.flush()?;
        std::fs::write(
            dir.join(format!("{}.toml", p.name)),
            node_config(sim, layout, i),
        )?;
    }
    std::fs::write(dir.join("truth.txt"), sim.truth.to_text(&header))?;
    std::fs::write(dir.join("topology.txt"), sim.topology.to_text())?;
    std::fs::write(dir.join("netsim.txt"), describe(sim, layout))?;
    if let Some(c) = &layout.cluster {
        let mut script = String::from(
            "#!/bin/sh\n# Makes the cluster's PKI with `sparrow cert`; run from this folder.\nset -e\n",
        );
        for cmd in pki_commands(sim, c) {
            let _ = writeln!(script, "\"${{SPARROW:-sparrow}}\" {}", cmd.join(" "));
        }
        let path = dir.join("make-pki.sh");
        std::fs::write(&path, script)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
        }
    }
    Ok(())
}
