//! Zonemaster (Debian `zonemaster-cli`), the checker registries run on a zone before they
//! delegate it, against the single-node example served by `sparrow node`.
//!
//! The test bed is a network namespace with nothing but loopback, so nothing Zonemaster
//! sends can leave it: Knot serves a root, `net.` (delegating `example.net.` to ns1 and ns2
//! with glue) and the reverse zone of the name servers' addresses; Sparrow serves
//! `example.net.` on ns1's and ns2's addresses, port 53; Zonemaster starts from that root
//! (`--hints`). Every ERROR and WARNING it reports must be in [`FORCED`]: what the test bed
//! forces, each with its reason.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Findings the test bed forces, by Zonemaster tag, with why.
const FORCED: &[(&str, &str)] = &[(
    "NAMESERVER_IP_PRIVATE_NETWORK",
    "the example's name servers are at documentation addresses (RFC 5737), as examples must be",
)];

/// The name servers of the example, as its config gives them.
const NS: [(&str, &str); 2] = [("ns1", "192.0.2.53"), ("ns2", "198.51.100.53")];
/// The test bed's root server.
const ROOT: &str = "192.0.2.254";

/// A network namespace, deleted (with what runs in it) when dropped.
struct Netns {
    name: String,
    children: Vec<Child>,
}

impl Netns {
    fn new(name: String) -> Self {
        let _ = Command::new("ip").args(["netns", "del", &name]).status();
        run(Command::new("ip").args(["netns", "add", &name]));
        let ns = Self {
            name,
            children: Vec::new(),
        };
        run(ns.exec("ip").args(["link", "set", "lo", "up"]));
        for addr in NS.iter().map(|(_, a)| *a).chain([ROOT]) {
            run(ns
                .exec("ip")
                .args(["addr", "add", &format!("{addr}/32"), "dev", "lo"]));
        }
        ns
    }

    fn exec(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }

    fn spawn(&mut self, mut command: Command, log: &Path) {
        let log = std::fs::File::create(log).unwrap();
        let child = command
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.children.push(child);
    }

    /// Waits until `server` answers `name SOA` with a record.
    fn wait_answer(&self, server: &str, name: &str, log: &Path) {
        let started = Instant::now();
        loop {
            let out = self
                .exec("dig")
                .args(["+short", "+norec", "+time=1", "+tries=1"])
                .arg(format!("@{server}"))
                .args([name, "SOA"])
                .output()
                .unwrap();
            if out.status.success() && !out.stdout.is_empty() {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "{server} never answered {name} SOA:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

fn run(command: &mut Command) {
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples/single-node")
}

/// Knot's config and zones for the root, `net.` and the reverse zone, in `dir`.
fn knot_files(dir: &Path) -> PathBuf {
    let soa =
        "IN SOA a.root-servers.net. hostmaster.root-servers.net. 2026120201 1800 900 604800 86400";
    let zones = [
        (
            ".",
            format!(
                ". {soa}\n. IN NS a.root-servers.net.\nnet. IN NS a.root-servers.net.\n\
                 in-addr.arpa. IN NS a.root-servers.net.\na.root-servers.net. IN A {ROOT}\n"
            ),
        ),
        (
            "net.",
            format!(
                "net. {soa}\nnet. IN NS a.root-servers.net.\na.root-servers.net. IN A {ROOT}\n\
                 example.net. 172800 IN NS ns1.example.net.\n\
                 example.net. 172800 IN NS ns2.example.net.\n\
                 ns1.example.net. 172800 IN A {}\nns2.example.net. 172800 IN A {}\n",
                NS[0].1, NS[1].1
            ),
        ),
        ("in-addr.arpa.", {
            let mut z = format!("in-addr.arpa. {soa}\nin-addr.arpa. IN NS a.root-servers.net.\n");
            for (name, addr) in NS {
                let rev: Vec<&str> = addr.split('.').rev().collect();
                z += &format!(
                    "{}.in-addr.arpa. IN PTR {name}.example.net.\n",
                    rev.join(".")
                );
            }
            z
        }),
    ];
    let mut conf = format!(
        "server:\n    listen: {ROOT}@53\n    rundir: {0}/run\n\
         log:\n  - target: stderr\n    any: info\n\
         database:\n    storage: {0}/db\n\
         template:\n  - id: default\n    storage: {0}\n    semantic-checks: on\n\
         zone:\n",
        dir.display()
    );
    for (i, (origin, text)) in zones.iter().enumerate() {
        let file = format!("zone{i}.zone");
        std::fs::write(dir.join(&file), format!("$TTL 86400\n{text}")).unwrap();
        conf += &format!("  - domain: \"{origin}\"\n    file: {file}\n");
    }
    for sub in ["run", "db"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    let path = dir.join("knot.conf");
    std::fs::write(&path, conf).unwrap();
    path
}

/// A copy of the single-node example in `dir`, serving on the name servers' addresses.
fn sparrow_files(dir: &Path) -> PathBuf {
    let conf = dir.join("sparrow");
    std::fs::create_dir_all(conf.join("views")).unwrap();
    for file in [
        "example.net.zone",
        "ssrs.routes",
        "views/ams.routes",
        "views/nyc.routes",
        "views/syd.routes",
    ] {
        std::fs::copy(example().join(file), conf.join(file)).unwrap();
    }
    let listen = NS
        .iter()
        .map(|(_, a)| format!("\"{a}:53\""))
        .collect::<Vec<_>>()
        .join(", ");
    let text = std::fs::read_to_string(example().join("sparrow.toml"))
        .unwrap()
        .replace(
            "listen = [\"127.0.0.1:5301\"]",
            &format!(
                "listen = [{listen}]\napi_socket = \"{}\"",
                dir.join("api.sock").display()
            ),
        );
    let path = conf.join("sparrow.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn zonemaster_finds_nothing_wrong_with_the_example_zone_beyond_the_test_bed() {
    let dir = std::env::temp_dir().join(format!("sparrow-zonemaster-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut ns = Netns::new(format!("sparrow-zm-{}", std::process::id()));

    let knot_log = dir.join("knot.log");
    let mut knotd = ns.exec("knotd");
    knotd.arg("-c").arg(knot_files(&dir));
    ns.spawn(knotd, &knot_log);
    ns.wait_answer(ROOT, ".", &knot_log);

    let sparrow_log = dir.join("sparrow.log");
    let mut node = ns.exec(env!("CARGO_BIN_EXE_sparrow"));
    node.args(["node", "--config"]).arg(sparrow_files(&dir));
    ns.spawn(node, &sparrow_log);
    for (_, addr) in NS {
        ns.wait_answer(addr, "example.net", &sparrow_log);
    }

    let hints = dir.join("hints");
    std::fs::write(
        &hints,
        format!(". 3600000 NS a.root-servers.net.\na.root-servers.net. 3600000 A {ROOT}\n"),
    )
    .unwrap();
    let out = ns
        .exec("zonemaster-cli")
        .arg("--hints")
        .arg(&hints)
        .args([
            "--raw",
            "--json",
            "--level",
            "WARNING",
            "--no-ipv6",
            "example.net",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "zonemaster-cli failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let findings: Vec<serde_json::Value> = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("zonemaster-cli's JSON: {e}: {stdout}"));
    let tag = |f: &serde_json::Value| f["tag"].as_str().unwrap_or_default().to_owned();
    let unexpected: Vec<&serde_json::Value> = findings
        .iter()
        .filter(|f| !FORCED.iter().any(|(t, _)| *t == tag(f)))
        .collect();
    assert!(
        unexpected.is_empty(),
        "Zonemaster reports, beyond what the test bed forces:\n{}\nSparrow's log:\n{}",
        unexpected
            .iter()
            .map(|f| f.to_string())
            .collect::<Vec<_>>()
            .join("\n"),
        std::fs::read_to_string(&sparrow_log).unwrap_or_default()
    );
    // It did look: the documentation addresses of both name servers are reported.
    let forced = findings
        .iter()
        .filter(|f| tag(f) == "NAMESERVER_IP_PRIVATE_NETWORK")
        .count();
    assert_eq!(forced, NS.len(), "{stdout}");
    drop(ns);
    let _ = std::fs::remove_dir_all(&dir);
}
