//! The `sparrow` binary as operators run it: exit codes, messages, `explain`, and a node
//! started and stopped the way systemd does.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn sparrow() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sparrow"))
}

/// A child process that is killed (and reaped) when dropped, so a failing test leaves no
/// node running behind it.
struct Reaped(std::process::Child);

impl std::ops::Deref for Reaped {
    type Target = std::process::Child;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Reaped {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// Waits (at most `within`) for `child` to exit; panics with `what` if it does not.
fn wait_exit(
    child: &mut std::process::Child,
    within: Duration,
    what: &str,
) -> std::process::ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        assert!(started.elapsed() < within, "{what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples/single-node/sparrow.toml")
}

/// A copy of the example folder in a temporary folder, with the config replaced by `text`.
fn example_copy(text: &str) -> PathBuf {
    let src = example();
    static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("sparrow-cli-{}-{n}", std::process::id()));
    std::fs::create_dir_all(dir.join("views")).unwrap();
    for file in [
        "example.net.zone",
        "ssrs.routes",
        "views/ams.routes",
        "views/nyc.routes",
        "views/syd.routes",
    ] {
        std::fs::copy(src.parent().unwrap().join(file), dir.join(file)).unwrap();
    }
    let path = dir.join("sparrow.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn refused_config_exits_2_naming_file_line_and_reason() {
    let text = std::fs::read_to_string(example())
        .unwrap()
        .replace("pop = \"ams\"", "pop = \"lhr\"");
    let path = example_copy(&text);
    for sub in ["node", "check", "explain"] {
        let mut cmd = sparrow();
        cmd.args([sub, "--config"]).arg(&path);
        if sub == "explain" {
            cmd.arg("100.64.1.1");
        }
        let out = cmd.output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{sub}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let want = format!("error: config refused: {}:", path.display());
        assert!(stderr.starts_with(&want), "{sub}: {stderr}");
        assert!(
            stderr.contains(": no POP is named `lhr`"),
            "{sub}: {stderr}"
        );
    }
    let out = sparrow()
        .args(["check", "--config", "/nonexistent/sparrow.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("/nonexistent/sparrow.toml: cannot read config")
    );
}

#[test]
fn check_summarises_a_good_config() {
    let out = sparrow()
        .arg("check")
        .arg("--config")
        .arg(example())
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.contains(
            "ok: zone example.net. (12 static records), 3 POPs, 1 geo names, own POP ams"
        ),
        "{stdout}"
    );
}

#[test]
fn check_json_describes_the_config_or_why_it_was_refused() {
    let out = sparrow()
        .args(["check", "--json", "--config"])
        .arg(example())
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["zone"], "example.net.");
    assert_eq!(v["static_records"], 12);
    assert_eq!(v["pops"], serde_json::json!(["ams", "nyc", "syd"]));
    assert_eq!(v["own_pop"], "ams");
    assert_eq!(v["geo_names"], serde_json::json!(["www.example.net."]));
    assert_eq!(v["clustered"], false);
    assert_eq!(v["warnings"], serde_json::json!([]));

    let text = std::fs::read_to_string(example())
        .unwrap()
        .replace("pop = \"ams\"", "pop = \"lhr\"");
    let path = example_copy(&text);
    let out = sparrow()
        .args(["check", "--json", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], false);
    let error = v["error"].as_str().unwrap();
    assert!(
        error.starts_with(&format!("{}:", path.display())),
        "{error}"
    );
    assert!(error.contains("no POP is named `lhr`"), "{error}");
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("error: config refused: "));
}

#[test]
fn explain_names_every_pop_and_why_the_winner_won() {
    let out = sparrow()
        .args(["explain", "--config"])
        .arg(example())
        .arg("100.64.2.0/24")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let want = "\
www.example.net. for client 100.64.2.0 (decision block 100.64.2.0/24)
rank  pop      asn      hops  route                  as path                        state
1     nyc      AS64502  1     100.64.2.0/24          64497                          eligible
2     ams      AS64501  3     100.64.2.0/24          64510 64520 64497              eligible
3     syd      AS64503  4     100.64.2.0/24          64540 64530 64520 64497        eligible
nyc wins: fewest AS hops (1 against 3 for the next POP)
answer (1 POP): A 198.51.100.10, AAAA 2001:db8:b::10
";
    assert_eq!(text, want);
}

#[test]
fn explain_json_is_machine_readable() {
    let out = sparrow()
        .args(["explain", "--json", "--name", "www", "--config"])
        .arg(example())
        .arg("100.64.5.9")
        .output()
        .unwrap();
    assert!(out.status.success());
    let e: sparrow_proto::api::Explanation = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(e.ranking, ["syd", "ams", "nyc"]);
    assert_eq!(e.rule.as_deref(), Some("static_map"));
    assert_eq!(e.static_map.as_ref().unwrap().pop, "syd");
    assert_eq!(e.block, "100.64.5.0/24");
    let ams = e.pops.iter().find(|p| p.pop == "ams").unwrap();
    assert_eq!(ams.route.as_ref().unwrap().hops, 1);
    assert_eq!(ams.rank, Some(2));
    let out = sparrow()
        .args(["explain", "--name", "ftp", "--config"])
        .arg(example())
        .arg("100.64.5.9")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn node_serves_on_a_free_port_and_stops_cleanly_on_sigterm() {
    let text = std::fs::read_to_string(example())
        .unwrap()
        .replace("[zone]", "api_socket = \"api.sock\"\n\n[zone]");
    let config = example_copy(&text);
    let mut child = sparrow()
        .args(["node", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .stderr(Stdio::piped())
        .spawn()
        .map(Reaped)
        .unwrap();
    // Read the log on a thread so a silent node cannot hang the test.
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut addr = None;
    let mut log = String::new();
    while addr.is_none() {
        let Ok(line) = rx.recv_timeout(Duration::from_secs(20)) else {
            let _ = child.kill();
            break;
        };
        log.push_str(&line);
        log.push('\n');
        if line.contains("serving DNS") {
            // `udp=127.0.0.1:PORT tcp=127.0.0.1:PORT`
            addr = line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("udp="))
                .map(|a| a.parse::<std::net::SocketAddr>().unwrap());
        }
    }
    let addr = addr.unwrap_or_else(|| panic!("no `serving DNS` line in:\n{log}"));
    // A real query through the real binary.
    let out = Command::new("dig")
        .arg(format!("@{}", addr.ip()))
        .args([
            "-p",
            &addr.port().to_string(),
            "+short",
            "+time=5",
            "www.example.net",
            "A",
            "+subnet=100.64.3.0/24",
        ])
        .output()
        .expect("dig must be installed (scripts/test installs it)");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "203.0.113.10");
    // SIGTERM, as systemd stops it.
    let status = Command::new("kill")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let exit = wait_exit(
        &mut child,
        Duration::from_secs(10),
        "node did not stop on SIGTERM",
    );
    assert!(exit.success(), "exit status {exit}");
}

#[test]
fn cert_bootstraps_a_cluster_pki_and_never_overwrites() {
    let dir = std::env::temp_dir().join(format!("sparrow-cli-pki-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let run = |args: &[&str]| {
        let out = sparrow()
            .arg("cert")
            .args(args)
            .arg("--dir")
            .arg(&dir)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (code, text) = run(&["node", "ams"]);
    assert_eq!(code, Some(1));
    assert!(text.contains("run `sparrow cert ca` first"), "{text}");
    let (code, text) = run(&["ca", "--cluster", "example"]);
    assert_eq!(code, Some(0), "{text}");
    let (code, text) = run(&["node", "ams", "--san", "127.0.0.1"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("(sparrow://example/node/ams, serial "),
        "{text}"
    );
    // The serial printed is the one revocation lists name.
    let serial = text
        .split("serial ")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .unwrap()
        .to_owned();
    let der = sparrow_node::pki::cert_der(&std::fs::read_to_string(dir.join("ams.pem")).unwrap())
        .unwrap();
    assert_eq!(sparrow_node::pki::serial_of(&der).unwrap(), serial);
    let (code, text) = run(&["operator", "alice"]);
    assert!(
        text.contains("(sparrow://example/operator/alice, serial "),
        "{text}"
    );
    assert_eq!(code, Some(0));
    // Refusals exit 2, as the README documents: existing files, names that cannot be.
    let (code, text) = run(&["ca", "--cluster", "example"]);
    assert_eq!(code, Some(2));
    assert!(text.contains("exists; not overwriting it"), "{text}");
    let (code, text) = run(&["node", "Bad_Name"]);
    assert_eq!(code, Some(2));
    assert!(
        text.contains("`Bad_Name` must be 1-63 lower-case"),
        "{text}"
    );
    let other = dir.join("other");
    let out = sparrow()
        .args(["cert", "ca", "--cluster", "Bad_Name", "--dir"])
        .arg(&other)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(!other.exists());
    for f in [
        "ca.pem",
        "ca.key",
        "ams.pem",
        "ams.key",
        "alice.pem",
        "alice.key",
    ] {
        assert!(dir.join(f).exists(), "{f}");
    }
}

#[test]
fn demo_runs_a_three_node_cluster_that_answers_alike() {
    let api = std::env::temp_dir().join(format!("sparrow-demo-{}/api.sock", std::process::id()));
    let mut child = sparrow()
        .args(["demo", "--port", "0", "--api-socket"])
        .arg(&api)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map(Reaped)
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    // The printed dig commands name the three nodes' ports.
    let mut ports: Vec<u16> = Vec::new();
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(30)) {
        if line.starts_with("Stop with") {
            break;
        }
        if let Some(port) = line.split("-p ").nth(1).and_then(|r| r.split(' ').next()) {
            let port: u16 = port.parse().unwrap();
            if !ports.contains(&port) {
                ports.push(port);
            }
        }
    }
    assert_eq!(ports.len(), 3, "demo did not print three nodes");
    let ask = |port: u16, subnet: &str| {
        let out = Command::new("dig")
            .args(["@127.0.0.1", "-p", &port.to_string(), "+short", "+time=5"])
            .args(["www.example.net", "A", &format!("+subnet={subnet}")])
            .output()
            .expect("dig must be installed (scripts/test installs it)");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    // Once the cluster has formed, every node answers alike, from the whole cluster.
    let deadline = Instant::now() + Duration::from_secs(20);
    let want = [
        ("100.64.1.0/24", "192.0.2.10"),
        ("100.64.2.0/24", "198.51.100.10"),
        ("100.64.3.0/24", "203.0.113.10"),
        ("100.64.5.0/24", "203.0.113.10"),
    ];
    loop {
        let all = want
            .iter()
            .all(|(subnet, ip)| ports.iter().all(|&p| ask(p, subnet) == *ip));
        if all {
            break;
        }
        assert!(Instant::now() < deadline, "demo nodes never agreed");
        std::thread::sleep(Duration::from_millis(200));
    }
    // The operator commands reach the demo's ams node.
    let out = sparrow()
        .args(["status", "--socket"])
        .arg(&api)
        .output()
        .unwrap();
    let status = String::from_utf8_lossy(&out.stdout);
    assert!(
        status.starts_with(
            "node ams of cluster demo: cluster (3 nodes alive, 2 needed for cluster answers)"
        ),
        "{status}"
    );
    let _ = child.kill();
    let _ = child.wait();
}

/// Starts `sparrow node` on `config` with a free DNS port; returns the child and its port.
#[test]
fn json_logs_are_one_object_per_line_with_the_fields_as_keys() {
    let mut child = sparrow()
        .args([
            "--log-format",
            "json",
            "node",
            "--listen",
            "127.0.0.1:0",
            "--config",
        ])
        .arg(example())
        .stderr(Stdio::piped())
        .spawn()
        .map(Reaped)
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let serving = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("node did not say it serves DNS");
        let v: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {line}"));
        assert!(v["timestamp"].is_string(), "no timestamp: {line}");
        assert!(v["level"].is_string(), "no level: {line}");
        if v["fields"]["message"] == "serving DNS" {
            break v;
        }
    };
    // Structured fields stay fields, not text inside the message.
    let udp: std::net::SocketAddr = serving["fields"]["udp"]
        .as_str()
        .expect("udp field")
        .parse()
        .unwrap();
    assert_ne!(udp.port(), 0);
    assert_eq!(serving["level"], "INFO");
}

fn start_node(config: &Path) -> (Reaped, std::net::SocketAddr) {
    let (child, addr, _) = start_node_logging(config, "");
    (child, addr)
}

/// [`start_node`], also returning the value of `key=` in the first log line that has it.
fn start_node_logging(config: &Path, key: &str) -> (Reaped, std::net::SocketAddr, Option<String>) {
    start_node_as(sparrow(), config, key)
}

/// [`start_node_logging`] with `command` (`sparrow()` with more settings, such as its
/// environment) instead of `sparrow()`.
fn start_node_as(
    mut command: Command,
    config: &Path,
    key: &str,
) -> (Reaped, std::net::SocketAddr, Option<String>) {
    let mut child = command
        .args(["node", "--listen", "127.0.0.1:0", "--config"])
        .arg(config)
        .stderr(Stdio::piped())
        .spawn()
        .map(Reaped)
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    // Keep reading after start-up: a closed pipe would break the node's logging.
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut addr = None;
    let mut api = false;
    let mut value = None;
    let want = format!("{key}=");
    while addr.is_none() || !api || (!key.is_empty() && value.is_none()) {
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("node did not start");
        api |= line.contains("operator API");
        if let Some(a) = line.split_whitespace().find_map(|w| w.strip_prefix("udp=")) {
            addr = Some(a.parse().unwrap());
        }
        if !key.is_empty()
            && value.is_none()
            && let Some(v) = line.split_whitespace().find_map(|w| w.strip_prefix(&want))
        {
            value = Some(v.to_owned());
        }
    }
    (child, addr.unwrap(), value)
}

#[test]
fn operators_drive_a_clustered_node_over_quic_with_their_certificate() {
    let text = std::fs::read_to_string(example())
        .unwrap()
        .replace("[zone]", "api_socket = \"api/sparrow.sock\"\n\n[zone]")
        + "\n[cluster]\nid = \"example\"\nlisten = \"127.0.0.1:0\"\nseeds = []\nquorum = 1\n\
         ca = \"pki/ca.pem\"\ncert = \"pki/ams.pem\"\nkey = \"pki/ams.key\"\n";
    let config = example_copy(&text);
    let dir = config.parent().unwrap().to_owned();
    let cert = |pki: &str, args: &[&str]| {
        let out = sparrow()
            .arg("cert")
            .args(args)
            .arg("--dir")
            .arg(dir.join(pki))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    cert("pki", &["ca", "--cluster", "example"]);
    cert("pki", &["node", "ams"]);
    cert("pki", &["operator", "alice"]);
    // Another CA that names the same cluster: its operator must get nowhere.
    cert("rogue", &["ca", "--cluster", "example"]);
    cert("rogue", &["operator", "mallory"]);
    let (mut child, _dns, gossip) = start_node_logging(&config, "gossip");
    let gossip = gossip.expect("the node logs its cluster address");
    let as_operator = |pki: &str, name: &str, args: &[&str]| {
        let out = sparrow()
            .args(args)
            .args(["--remote", &gossip, "--ca"])
            .arg(dir.join("pki/ca.pem"))
            .arg("--cert")
            .arg(dir.join(format!("{pki}/{name}.pem")))
            .arg("--key")
            .arg(dir.join(format!("{pki}/{name}.key")))
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, status, err) = as_operator("pki", "alice", &["status"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        status.starts_with("node ams of cluster example"),
        "{status}"
    );
    // A drain is carried by the drained POP's own node: this node holds ams's.
    let (code, out, err) = as_operator("pki", "alice", &["drain", "ams", "--json"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("ams drained cluster-wide"), "{out}");
    let (_, json, _) = as_operator("pki", "alice", &["status", "--json"]);
    let report: sparrow_proto::api::StatusReport = serde_json::from_str(&json).unwrap();
    assert_eq!(report.pops[0].admin, "drained");
    assert!(
        report.pops[0]
            .admin_by
            .as_deref()
            .is_some_and(|b| b.starts_with("alice@")),
        "{json}"
    );
    let (code, explained, _) = as_operator("pki", "alice", &["explain", "100.64.1.0/24"]);
    assert_eq!(code, Some(0));
    assert!(explained.contains("drained"), "{explained}");
    // nyc's is held by nyc's node, which is not running: refused (exit 2) with the reason.
    let (code, _, err) = as_operator("pki", "alice", &["drain", "nyc"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("held by nyc's own node"), "{err}");
    // A node certificate is not an operator's; another CA's operator fails the handshake.
    let (code, _, err) = as_operator("pki", "ams", &["status"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("need an operator certificate"), "{err}");
    let (code, _, err) = as_operator("rogue", "mallory", &["undrain", "ams"]);
    assert_eq!(code, Some(1), "{err}");
    let (_, json, _) = as_operator("pki", "alice", &["status", "--json"]);
    let report: sparrow_proto::api::StatusReport = serde_json::from_str(&json).unwrap();
    assert_eq!(
        report.pops[0].admin, "drained",
        "the rogue undrain must not land"
    );
    // The four flags can come from the environment instead, set once per shell.
    let with_env = |args: &[&str]| {
        sparrow()
            .args(args)
            .env("SPARROW_REMOTE", &gossip)
            .env("SPARROW_CA", dir.join("pki/ca.pem"))
            .env("SPARROW_CERT", dir.join("pki/alice.pem"))
            .env("SPARROW_KEY", dir.join("pki/alice.key"))
            .output()
            .unwrap()
    };
    let out = with_env(&["undrain", "ams"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let out = with_env(&["status", "--json"]);
    let report: sparrow_proto::api::StatusReport = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report.pops[0].admin, "active");
    // An explicit --socket with SPARROW_REMOTE set is refused as both flags would be.
    let out = with_env(&["status", "--socket", "/nonexistent.sock"]);
    assert_eq!(out.status.code(), Some(2));
    // A binary swap: the new process takes the cluster socket over too, so operators (and
    // peers) reach it at the same address once the old one is gone.
    let mut new = sparrow()
        .args(["node", "--take-over", "--config"])
        .arg(&config)
        .stderr(Stdio::null())
        .spawn()
        .map(Reaped)
        .unwrap();
    let exit = wait_exit(
        &mut child,
        Duration::from_secs(20),
        "the old process did not hand over",
    );
    assert!(exit.success(), "old process: {exit}");
    let (code, status, err) = as_operator("pki", "alice", &["status"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        status.starts_with("node ams of cluster example"),
        "{status}"
    );
    let _ = new.kill();
    let _ = new.wait();
}

#[test]
fn status_drain_and_explain_drive_the_running_node_over_its_socket() {
    let text = std::fs::read_to_string(example())
        .unwrap()
        .replace("[zone]", "api_socket = \"api/sparrow.sock\"\n\n[zone]");
    let config = example_copy(&text);
    let socket = config.parent().unwrap().join("api/sparrow.sock");
    let (mut child, addr) = start_node(&config);
    let cli = |args: &[&str]| {
        let out = sparrow()
            .args(args)
            .arg("--socket")
            .arg(&socket)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let dig = |subnet: &str| {
        let out = Command::new("dig")
            .args([
                "@127.0.0.1",
                "-p",
                &addr.port().to_string(),
                "+short",
                "+time=5",
            ])
            .args(["www.example.net", "A", &format!("+subnet={subnet}")])
            .output()
            .expect("dig must be installed");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let status = cli(&["status"]);
    assert!(status.starts_with("node ams: standalone"), "{status}");
    // SPARROW_SOCKET stands for --socket.
    let out = sparrow()
        .arg("status")
        .env("SPARROW_SOCKET", &socket)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), status);
    assert!(
        status.contains("nyc      up    healthy   active"),
        "{status}"
    );
    assert_eq!(dig("100.64.2.0/24"), "198.51.100.10");
    assert_eq!(
        cli(&["drain", "nyc"]).trim(),
        "nyc drained (standalone: this node's answers)"
    );
    assert_eq!(dig("100.64.2.0/24"), "192.0.2.10");
    let explained = cli(&["explain", "100.64.2.0/24"]);
    assert!(
        explained.contains("AS64502  1     100.64.2.0/24"),
        "{explained}"
    );
    assert!(explained.contains("drained"), "{explained}");
    let json: sparrow_proto::api::StatusReport =
        serde_json::from_str(&cli(&["status", "--json"])).unwrap();
    assert_eq!(json.pops[1].admin, "drained");
    assert_eq!(
        cli(&["undrain", "nyc"]).trim(),
        "nyc undrained (standalone: this node's answers)"
    );
    assert_eq!(dig("100.64.2.0/24"), "198.51.100.10");
    // Mistakes are refused with a reason.
    let out = sparrow()
        .args(["drain", "lhr", "--socket"])
        .arg(&socket)
        .output()
        .unwrap();
    // Refused by the node: exit code 2, as a refused config.
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no POP is named `lhr`"));
    // The socket is the node's own: owner-only.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&socket).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let _ = child.wait();
    let out = sparrow()
        .args(["status", "--socket"])
        .arg(&socket)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is the node running?"));
}

#[test]
fn reload_applies_a_new_config_whole_or_refuses_it_whole() {
    let original = std::fs::read_to_string(example())
        .unwrap()
        .replace("[zone]", "api_socket = \"api/sparrow.sock\"\n\n[zone]");
    let config = example_copy(&original);
    let socket = config.parent().unwrap().join("api/sparrow.sock");
    let (mut child, addr) = start_node(&config);
    let reload = || {
        sparrow()
            .args(["reload", "--socket"])
            .arg(&socket)
            .output()
            .unwrap()
    };
    let dig = |name: &str, subnet: &str| {
        let out = Command::new("dig")
            .args([
                "@127.0.0.1",
                "-p",
                &addr.port().to_string(),
                "+short",
                "+time=5",
            ])
            .args([name, "A", &format!("+subnet={subnet}")])
            .output()
            .expect("dig must be installed");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let nyc_client = "100.64.2.0/24";
    assert_eq!(dig("www.example.net", nyc_client), "198.51.100.10");
    assert_eq!(dig("new.example.net", nyc_client), "");

    // A new address for nyc, a new static record and a new listen address: the first two
    // apply, the third waits for a restart and says so.
    let changed = original
        .replace(
            "addresses = [\"198.51.100.10\", \"2001:db8:b::10\"]",
            "addresses = [\"198.51.100.20\", \"2001:db8:b::20\"]",
        )
        .replace(
            "[[zone.record]]\nname = \"ns2\"",
            "[[zone.record]]\nname = \"new\"\ntype = \"A\"\ndata = \"192.0.2.99\"\n\n[[zone.record]]\nname = \"ns2\"",
        )
        .replace("127.0.0.1:5301", "127.0.0.1:5399");
    assert_ne!(changed, original);
    std::fs::write(&config, &changed).unwrap();
    let out = reload();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("zone example.net"), "{said}");
    assert!(said.contains("POP nyc"), "{said}");
    assert!(
        said.contains("these apply only after a restart: [node] listen"),
        "{said}"
    );
    // The reply comes once answers use the new config.
    assert_eq!(dig("www.example.net", nyc_client), "198.51.100.20");
    assert_eq!(dig("new.example.net", nyc_client), "192.0.2.99");

    // A broken config is refused whole, naming file, line and reason; nothing changes.
    let broken = changed.replace("ttl = 30", "ttl = \"thirty\"");
    std::fs::write(&config, &broken).unwrap();
    let out = reload();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    let line = broken
        .lines()
        .position(|l| l.contains("\"thirty\""))
        .unwrap()
        + 1;
    assert!(
        err.contains(&format!("sparrow.toml:{line}:")),
        "no file:line in {err}"
    );
    assert_eq!(dig("www.example.net", nyc_client), "198.51.100.20");
    assert_eq!(dig("new.example.net", nyc_client), "192.0.2.99");

    // So is a config a running node cannot take: the POP list is what its state is indexed by.
    let fewer = changed.replace(
        "[[pop]]\nname = \"syd\"\nasn = 64503\naddresses = [\"203.0.113.10\", \"2001:db8:c::10\"]\nroute_view = \"views/syd.routes\"\n",
        "",
    );
    assert_ne!(fewer, changed);
    std::fs::write(&config, &fewer).unwrap();
    let out = reload();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("the POP list changed"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(dig("www.example.net", nyc_client), "198.51.100.20");

    // SIGHUP reloads as `sparrow reload` does (the outcome goes to the log).
    std::fs::write(
        &config,
        original.replace(
            "addresses = [\"198.51.100.10\", \"2001:db8:b::10\"]",
            "addresses = [\"198.51.100.30\", \"2001:db8:b::30\"]",
        ),
    )
    .unwrap();
    let status = Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = dig("www.example.net", nyc_client);
        if got == "198.51.100.30" {
            break;
        }
        assert!(Instant::now() < deadline, "SIGHUP did not reload: {got}");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The record added by the first reload went with the SIGHUP's config.
    assert_eq!(dig("new.example.net", nyc_client), "");
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let _ = child.wait();
}

#[test]
fn under_systemd_the_node_says_ready_reloading_and_stopping() {
    use std::os::unix::net::UnixDatagram;
    let config = example_copy(&std::fs::read_to_string(example()).unwrap());
    let notify = config.parent().unwrap().join("notify.sock");
    let listener = UnixDatagram::bind(&notify).unwrap();
    listener
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut child = sparrow()
        .args(["node", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .env("NOTIFY_SOCKET", &notify)
        .env("WATCHDOG_USEC", "400000")
        .stderr(Stdio::null())
        .spawn()
        .map(Reaped)
        .unwrap();
    let mut buf = vec![0u8; 4096];
    // Reads messages until one has `want`; returns every message read.
    let mut until = |want: &str| {
        let mut seen = Vec::new();
        loop {
            let n = listener
                .recv(&mut buf)
                .unwrap_or_else(|e| panic!("no {want} from the node ({e}); saw {seen:?}"));
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            let done = msg.lines().any(|l| l == want || l.starts_with(want));
            seen.push(msg);
            if done {
                return seen;
            }
        }
    };
    let seen = until("READY=1");
    let ready = seen.last().unwrap();
    assert!(ready.contains("STATUS=ready"), "{ready}");
    // The watchdog is pinged (every half of WATCHDOG_USEC) while the node's state answers.
    until("WATCHDOG=1");
    until("WATCHDOG=1");
    // SIGHUP: RELOADING=1 with the monotonic time, then READY=1 again.
    Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .unwrap();
    let reloading = until("RELOADING=1");
    assert!(
        reloading.last().unwrap().contains("MONOTONIC_USEC="),
        "{reloading:?}"
    );
    until("READY=1");
    Command::new("kill")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    until("STOPPING=1");
    assert!(child.wait().unwrap().success());
}

/// A DNS query for `www.example.net A` with id `id`, as bytes.
fn query_bytes(id: u16) -> Vec<u8> {
    let mut q = Vec::with_capacity(40);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x00, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]); // no RD; one question
    for label in ["www", "example", "net"] {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]); // root, A, IN
    q
}

#[test]
fn a_new_process_takes_over_the_sockets_and_not_one_query_is_lost() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let text = std::fs::read_to_string(example())
        .unwrap()
        .replace("[zone]", "api_socket = \"api.sock\"\n\n[zone]");
    let config = example_copy(&text);
    let socket = config.parent().unwrap().join("api.sock");
    let (mut old, addr) = start_node(&config);

    // Four clients, each asking one query after another (2 s to answer each) until told to
    // stop: every query must be answered, by one process or the other.
    let stop = Arc::new(AtomicBool::new(false));
    let (answered, lost) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let clients: Vec<_> = (0..4u16)
        .map(|c| {
            let (stop, answered, lost) = (stop.clone(), answered.clone(), lost.clone());
            std::thread::spawn(move || {
                let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
                udp.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                let mut id = c.wrapping_mul(16_000);
                let mut buf = [0u8; 1500];
                while !stop.load(Ordering::Relaxed) {
                    id = id.wrapping_add(1);
                    udp.send_to(&query_bytes(id), addr).unwrap();
                    loop {
                        match udp.recv(&mut buf) {
                            Ok(n) if n >= 12 && buf[..2] == id.to_be_bytes() => {
                                assert_eq!(buf[3] & 0x0f, 0, "rcode of query {id}");
                                answered.fetch_add(1, Ordering::Relaxed);
                                break;
                            }
                            Ok(_) => continue, // a late answer to an earlier query
                            Err(_) => {
                                lost.fetch_add(1, Ordering::Relaxed);
                                break;
                            }
                        }
                    }
                }
            })
        })
        .collect();
    let wait_for = |count: u64| {
        let start = Instant::now();
        while answered.load(Ordering::Relaxed) < count {
            assert!(start.elapsed() < Duration::from_secs(30), "queries stalled");
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    wait_for(200);

    let mut new = sparrow()
        .args(["node", "--take-over", "--config"])
        .arg(&config)
        .stderr(Stdio::piped())
        .spawn()
        .map(Reaped)
        .unwrap();
    let stderr = new.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut log = String::new();
    let taken = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("the new process did not take over:\n{log}"));
        log.push_str(&line);
        log.push('\n');
        if line.contains("serving DNS (taken over)") {
            break line;
        }
    };
    assert!(
        taken.contains(&format!("udp={addr}")),
        "the new process serves the old one's socket: {taken}"
    );
    // The old process exits by itself, successfully, once the new one serves.
    let exit = wait_exit(
        &mut old,
        Duration::from_secs(20),
        "the old process did not exit after the take-over",
    );
    assert!(exit.success(), "old process: {exit}");
    // The new process answers alone now, on the same port, and holds the API socket.
    let before = answered.load(Ordering::Relaxed);
    wait_for(before + 200);
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    // The old process stops each UDP worker only after the batch in its hands is answered,
    // and the new one reads the very same sockets (the whole SO_REUSEPORT group).
    assert_eq!(
        lost.load(Ordering::Relaxed),
        0,
        "queries lost over the take-over"
    );
    let out = sparrow()
        .args(["status", "--socket"])
        .arg(&socket)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("node ams: standalone"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Without a running node there is nothing to take over: a clear error.
    let _ = new.kill();
    let _ = new.wait();
    let out = sparrow()
        .args(["node", "--take-over", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no running node to take over"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The commit `build.rs` should have found: this checkout's HEAD, or `None` outside git.
fn checkout_commit() -> Option<String> {
    let out = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8(out.stdout).unwrap().trim().to_owned())
}

#[test]
fn version_names_the_commit_and_build_date_as_the_metric_does() {
    let out = sparrow().arg("--version").output().unwrap();
    assert!(out.status.success());
    let line = String::from_utf8(out.stdout).unwrap();
    let version = env!("CARGO_PKG_VERSION");
    let rest = line
        .trim_end()
        .strip_prefix(&format!("sparrow {version} (commit "))
        .unwrap_or_else(|| panic!("{line}"));
    let (commit, date) = rest
        .strip_suffix(')')
        .and_then(|r| r.split_once(", built "))
        .unwrap_or_else(|| panic!("{line}"));
    if let Some(head) = checkout_commit() {
        assert_eq!(commit, head, "{line}");
    }
    let d: Vec<&str> = date.split('-').collect();
    assert!(
        d.len() == 3 && d[0].len() == 4 && d[1].len() == 2 && d[2].len() == 2,
        "{line}"
    );
    assert!(d.iter().all(|p| p.bytes().all(|b| b.is_ascii_digit())));

    // The running node reports the same in `sparrow_build_info`.
    let config = sparrow_node::config::load(&example()).unwrap().config;
    let snapshot = std::sync::Arc::new(arc_swap::ArcSwap::from_pointee(
        sparrow_node::snapshot::Snapshot::from_config(config),
    ));
    let text = sparrow_node::metrics::Metrics::new(&snapshot).render();
    let want = format!("sparrow_build_info{{version=\"{version}\",commit=\"{commit}\"}} 1");
    assert!(text.lines().any(|l| l == want), "no `{want}` in:\n{text}");
    assert!(text.contains("# TYPE sparrow_build info"), "{text}");
}

/// Compiles `node/build.rs` on its own and runs it in `cwd` with `env`; returns the
/// `rustc-env` values it prints.
fn run_build_script(cwd: &Path, env: &[(&str, &str)]) -> Vec<String> {
    let dir = std::env::temp_dir().join(format!("sparrow-buildrs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let exe = dir.join("build-script");
    if !exe.exists() {
        let status = Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into()))
            .args(["--edition", "2024", "-o"])
            .arg(&exe)
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("build.rs"))
            .status()
            .unwrap();
        assert!(status.success());
    }
    let mut cmd = Command::new(&exe);
    cmd.current_dir(cwd)
        .env_remove("SPARROW_COMMIT")
        .env_remove("SOURCE_DATE_EPOCH")
        // No git repository above `cwd` counts: as in an unpacked tarball.
        .env("GIT_CEILING_DIRECTORIES", cwd.parent().unwrap());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("cargo:rustc-env=").map(str::to_owned))
        .collect()
}

#[test]
fn build_info_comes_from_a_tarball_without_git_too() {
    let tarball = std::env::temp_dir().join(format!("sparrow-tarball-{}", std::process::id()));
    std::fs::create_dir_all(&tarball).unwrap();
    // 2026-12-02 00:00:00 UTC, and a leap day.
    let got = run_build_script(&tarball, &[("SOURCE_DATE_EPOCH", "1796169600")]);
    assert_eq!(
        got,
        ["SPARROW_COMMIT=unknown", "SPARROW_BUILD_DATE=2026-12-02"]
    );
    let got = run_build_script(
        &tarball,
        &[
            ("SOURCE_DATE_EPOCH", "951782400"),
            ("SPARROW_COMMIT", "0123abcd"),
        ],
    );
    assert_eq!(
        got,
        ["SPARROW_COMMIT=0123abcd", "SPARROW_BUILD_DATE=2000-02-29"]
    );
    // Without SOURCE_DATE_EPOCH: the day of the build.
    let got = run_build_script(&tarball, &[]);
    assert!(got[1].starts_with("SPARROW_BUILD_DATE=20"), "{got:?}");
    std::fs::remove_dir_all(&tarball).unwrap();
    // The compiled build script (this test is its only user).
    let _ = std::fs::remove_dir_all(
        std::env::temp_dir().join(format!("sparrow-buildrs-{}", std::process::id())),
    );
}

#[test]
fn completions_load_in_bash_and_name_every_subcommand() {
    let out = sparrow().args(["completions", "bash"]).output().unwrap();
    assert!(out.status.success());
    let script = String::from_utf8(out.stdout).unwrap();
    let dir = std::env::temp_dir().join(format!("sparrow-compl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("sparrow.bash");
    std::fs::write(&file, &script).unwrap();
    // bash loads it, registers it for `sparrow`, and completes as a user types.
    let complete = |words: &[&str]| -> Vec<String> {
        let line = words.join(" ");
        let cur = words.last().unwrap();
        let prev = words[words.len() - 2];
        let out = Command::new("bash")
            .arg("-c")
            .arg(format!(
                "source {} && complete -p sparrow >/dev/null && COMP_WORDS=({line}) && \
                 COMP_CWORD={} && _sparrow sparrow '{cur}' {prev} && printf '%s\\n' \"${{COMPREPLY[@]}}\"",
                file.display(),
                words.len() - 1
            ))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut got: Vec<String> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect();
        got.sort();
        got
    };
    assert_eq!(complete(&["sparrow", "re"]), ["reload"]);
    assert_eq!(complete(&["sparrow", "cert", "o"]), ["operator"]);
    let shells: Vec<String> = complete(&["sparrow", "completions", "''"])
        .into_iter()
        .filter(|w| !w.starts_with('-'))
        .collect();
    assert_eq!(shells, ["bash", "elvish", "fish", "powershell", "zsh"]);
    assert!(complete(&["sparrow", "status", "--"]).contains(&"--socket".to_owned()));
    for (shell, head) in [("zsh", "#compdef sparrow"), ("fish", "complete -c sparrow")] {
        let out = sparrow().args(["completions", shell]).output().unwrap();
        assert!(out.status.success());
        assert!(
            String::from_utf8_lossy(&out.stdout).contains(head),
            "{shell}"
        );
    }
    let out = sparrow().args(["completions", "tcsh"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn man_pages_cover_every_subcommand_and_render() {
    let dir = std::env::temp_dir().join(format!("sparrow-man-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let out = sparrow().args(["man", "--dir"]).arg(&dir).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for page in [
        "sparrow.1",
        "sparrow-node.1",
        "sparrow-reload.1",
        "sparrow-cert-ca.1",
        "sparrow-completions.1",
    ] {
        assert!(dir.join(page).is_file(), "no {page}");
    }
    let top = std::fs::read_to_string(dir.join("sparrow.1")).unwrap();
    assert!(top.contains(".TH sparrow 1"), "{top}");
    // The printed page is the folder's sparrow.1.
    let out = sparrow().arg("man").output().unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), top);
    // man renders the reload page from its clap doc, without warnings.
    let out = Command::new("man")
        .args(["--warnings", "-l", "-Tutf8"])
        .arg(dir.join("sparrow-reload.1"))
        .env("MANWIDTH", "200")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("The same as SIGHUP"), "{text}");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// GET `path` from `addr` over HTTP/1.0 with `accept`; the response's head and body.
fn http_get(addr: &str, path: &str, accept: Option<&str>) -> (String, String) {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    let accept = accept
        .map(|a| format!("Accept: {a}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: localhost\r\n{accept}\r\n"
    )
    .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    (head.to_owned(), body.to_owned())
}

#[test]
fn metrics_in_the_prometheus_text_format_pass_promtool_and_openmetrics_stays_the_default() {
    let text = std::fs::read_to_string(example()).unwrap().replace(
        "[zone]",
        "api_socket = \"api/sparrow.sock\"\nmetrics_listen = \"127.0.0.1:0\"\n\n[zone]",
    );
    let config = example_copy(&text);
    let (mut child, _dns, metrics) = start_node_logging(&config, "addr");
    let metrics = metrics.expect("the node logs its metrics address");
    // What Prometheus asks for: OpenMetrics first.
    let (head, body) = http_get(
        &metrics,
        "/metrics",
        Some("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"),
    );
    assert!(head.contains("application/openmetrics-text"), "{head}");
    assert!(body.ends_with("# EOF\n"));
    let (head, default) = http_get(&metrics, "/metrics", None);
    assert!(head.contains("application/openmetrics-text"), "{head}");
    assert!(default.contains("# HELP sparrow_dns_queries DNS queries answered"));
    // What `curl -H 'Accept: text/plain' ... | promtool check metrics` reads.
    let (head, body) = http_get(&metrics, "/metrics", Some("text/plain"));
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    assert!(body.contains("# TYPE sparrow_dns_queries_total counter"));
    assert!(body.contains("# TYPE sparrow_build_info gauge"));
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is missing: scripts/test installs it (Debian package prometheus)");
    use std::io::Write as _;
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success() && said.is_empty(), "promtool: {said}");
    let _ = child.kill();
    let _ = child.wait();
}

/// libfaketime, which shifts a process's wall clock (`scripts/test` installs it).
fn libfaketime() -> PathBuf {
    let found = std::fs::read_dir("/usr/lib")
        .unwrap()
        .filter_map(Result::ok)
        .map(|d| d.path().join("faketime/libfaketime.so.1"))
        .find(|p| p.exists());
    found.expect("libfaketime is installed (scripts/test installs the libfaketime package)")
}

#[test]
fn a_node_whose_clock_is_a_day_fast_can_neither_pin_a_drain_nor_stay_out_after_it_is_fixed() {
    // One PKI for both nodes and the operator.
    let pki = std::env::temp_dir().join(format!("sparrow-skew-pki-{}", std::process::id()));
    let cert = |args: &[&str]| {
        let out = sparrow()
            .arg("cert")
            .args(args)
            .arg("--dir")
            .arg(&pki)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    cert(&["ca", "--cluster", "example"]);
    cert(&["node", "ams"]);
    cert(&["node", "nyc"]);
    cert(&["operator", "alice"]);
    let config = |pop: &str, seeds: &str| {
        let text = std::fs::read_to_string(example())
            .unwrap()
            .replace("pop = \"ams\"", &format!("pop = \"{pop}\""))
            .replace("[zone]", "api_socket = \"api/sparrow.sock\"\n\n[zone]")
            + &format!(
                "\n[cluster]\nid = \"example\"\nlisten = \"127.0.0.1:0\"\nseeds = [{seeds}]\n\
                 gossip_interval_ms = 100\nca = \"{0}/ca.pem\"\ncert = \"{0}/{pop}.pem\"\n\
                 key = \"{0}/{pop}.key\"\n",
                pki.display()
            );
        example_copy(&text)
    };
    // ams's clock runs a day ahead (its monotonic clock, which timers use, is left alone).
    let skewed = || {
        let mut command = sparrow();
        command
            .env("LD_PRELOAD", libfaketime())
            .env("FAKETIME", "+1d")
            .env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
        command
    };
    let ams_config = config("ams", "");
    let (mut ams, _, ams_gossip) = start_node_as(skewed(), &ams_config, "gossip");
    let ams_gossip = ams_gossip.expect("ams logs its cluster address");
    let nyc_config = config("nyc", &format!("\"{ams_gossip}\""));
    let (_nyc, _, nyc_gossip) = start_node_logging(&nyc_config, "gossip");
    let nyc_gossip = nyc_gossip.expect("nyc logs its cluster address");

    let operator = |remote: &str, args: &[&str]| {
        let out = sparrow()
            .args(args)
            .args(["--remote", remote, "--ca"])
            .arg(pki.join("ca.pem"))
            .arg("--cert")
            .arg(pki.join("alice.pem"))
            .arg("--key")
            .arg(pki.join("alice.key"))
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let status = |remote: &str| {
        let (code, json, err) = operator(remote, &["status", "--json"]);
        (code == Some(0))
            .then(|| serde_json::from_str::<sparrow_proto::api::StatusReport>(&json).ok())
            .flatten()
            .ok_or(err)
    };
    // Waits until both nodes see both POPs live with these admin states.
    let settled = |nodes: [&str; 2], admin: [&str; 2], what: &str| {
        let started = Instant::now();
        loop {
            let both = nodes.map(status);
            let held = both.iter().all(|s| {
                s.as_ref().is_ok_and(|s| {
                    s.alive == 2
                        && s.pops[..2]
                            .iter()
                            .zip(admin)
                            .all(|(p, a)| p.live && p.admin == a)
                })
            });
            if held {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "{what}: {both:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    settled(
        [&ams_gossip, &nyc_gossip],
        ["active", "active"],
        "the cluster forms",
    );

    // Drains through nyc: nyc's own lands there, ams's goes to ams's node, stamped by its
    // clock a day ahead.
    for pop in ["nyc", "ams"] {
        let (code, out, err) = operator(&nyc_gossip, &["drain", pop]);
        assert_eq!(code, Some(0), "drain {pop}: {out}{err}");
    }
    settled(
        [&ams_gossip, &nyc_gossip],
        ["drained", "drained"],
        "both drains are held by both nodes",
    );
    let ams_view = status(&nyc_gossip).unwrap();
    let stamp: u64 = ams_view.pops[0]
        .admin_by
        .as_deref()
        .and_then(|b| b.strip_prefix("alice@"))
        .and_then(|ms| ms.parse().ok())
        .expect("who drained ams and when");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert!(
        stamp > now + 23 * 3_600_000,
        "ams stamps with its fast clock: {stamp} vs {now}"
    );
    // Undrains through the other node each: neither clock decides, both lift.
    for (via, pop) in [(&ams_gossip, "nyc"), (&nyc_gossip, "ams")] {
        let (code, out, err) = operator(via, &["undrain", pop]);
        assert_eq!(code, Some(0), "undrain {pop}: {out}{err}");
        assert!(out.contains("undrained"), "{out}");
    }
    settled(
        [&ams_gossip, &nyc_gossip],
        ["active", "active"],
        "both undrains are held by both nodes",
    );

    // ams's clock is fixed and it restarts: its new incarnation's generation (its start
    // time) is a day older than the one nyc last saw. nyc takes it back all the same.
    let _ = ams.kill();
    let _ = ams.wait();
    // (It comes back on another port, so it is seeded with nyc's address.) Its router has
    // learned one more route meanwhile: a new view, versioned a day below the last.
    let routes = ams_config.parent().unwrap().join("views/ams.routes");
    let text = std::fs::read_to_string(&routes).unwrap() + "100.64.9.0/24 64496\n";
    std::fs::write(&routes, text).unwrap();
    let text = std::fs::read_to_string(&ams_config).unwrap();
    let text = text.replace("seeds = []", &format!("seeds = [\"{nyc_gossip}\"]"));
    std::fs::write(&ams_config, text).unwrap();
    let (_ams, _, ams_gossip) = start_node_logging(&ams_config, "gossip");
    let ams_gossip = ams_gossip.expect("ams logs its cluster address");
    settled(
        [&ams_gossip, &nyc_gossip],
        ["active", "active"],
        "ams is back after its clock went back a day",
    );
    // And nyc answers from the view ams now announces, versioned by the right clock,
    // not from the one versioned a day ahead.
    let version = |remote: &str| {
        status(remote).ok().and_then(|s| {
            let v = s.pops[0].view.as_ref()?;
            Some((v.prefixes, v.version?))
        })
    };
    let started = Instant::now();
    while !(version(&nyc_gossip).is_some_and(|(n, v)| n == 8 && v < now + 3_600_000)
        && version(&nyc_gossip) == version(&ams_gossip))
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "nyc holds ams's view {:?}, ams announces {:?}",
            version(&nyc_gossip),
            version(&ams_gossip)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = std::fs::remove_dir_all(&pki);
}
