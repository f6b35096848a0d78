//! The artifacts under `deploy/` as an operator installs them: the systemd unit checked by
//! systemd's own tools (`systemd-analyze verify` and `security`), and the unit and the
//! packaged config agreeing on paths; the Debian package of this build installed into a clean
//! Debian root, run there, removed and purged (`deploy/debian/test-package`).

use std::path::{Path, PathBuf};
use std::process::Command;

/// Highest `systemd-analyze security` exposure the unit may have (0 best, 10 worst; systemd
/// calls up to 2.0 "OK"). The unit scores 1.7 with systemd 252.
const MAX_EXPOSURE: f64 = 2.0;

fn deploy(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(path)
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sparrow-deploy-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn systemd_analyze() -> Command {
    let found = Command::new("systemd-analyze").arg("--version").output();
    assert!(
        found.is_ok_and(|o| o.status.success()),
        "systemd-analyze is missing: apt-get install systemd (scripts/test does)"
    );
    Command::new("systemd-analyze")
}

/// Every `Key=value` of the unit's `[Service]` section, in order (keys may repeat).
fn service_settings() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(deploy("systemd/sparrow.service")).unwrap();
    let mut section = "";
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line;
        } else if section == "[Service]"
            && !line.starts_with('#')
            && let Some((k, v)) = line.split_once('=')
        {
            out.push((k.to_owned(), v.to_owned()));
        }
    }
    out
}

fn setting(key: &str) -> String {
    let all: Vec<String> = service_settings()
        .into_iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v)
        .collect();
    assert_eq!(all.len(), 1, "{key}: {all:?}");
    all.into_iter().next().unwrap()
}

#[test]
fn systemd_unit_verifies_and_scores_as_hardened() {
    let dir = temp_dir("unit");
    // verify runs every command of the unit and `man` for each Documentation= page: point
    // them at this build (the unit names /usr/bin/sparrow, where the package puts it).
    let man = dir.join("man");
    let out = Command::new(env!("CARGO_BIN_EXE_sparrow"))
        .args(["man", "--dir"])
        .arg(man.join("man1"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = std::fs::read_to_string(deploy("systemd/sparrow.service")).unwrap();
    assert!(text.contains("/usr/bin/sparrow "));
    let unit = dir.join("sparrow.service");
    std::fs::write(
        &unit,
        text.replace(
            "/usr/bin/sparrow ",
            &format!("{} ", env!("CARGO_BIN_EXE_sparrow")),
        ),
    )
    .unwrap();
    let out = systemd_analyze()
        .arg("verify")
        .arg(&unit)
        .env("MANPATH", &man)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.is_empty(), "{stderr}");

    let out = systemd_analyze()
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(deploy("systemd/sparrow.service"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let score: f64 = stdout
        .lines()
        .find_map(|l| l.split_once("Overall exposure level for sparrow.service: "))
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{stdout}"));
    eprintln!("systemd-analyze security: exposure {score} (at most {MAX_EXPOSURE})");
    assert!(score <= MAX_EXPOSURE, "exposure {score}:\n{stdout}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn systemd_unit_runs_the_node_unprivileged_as_notify_with_watchdog_and_reload() {
    assert_eq!(setting("Type"), "notify");
    let watchdog = setting("WatchdogSec");
    assert!(watchdog.ends_with('s') && watchdog != "0s", "{watchdog}");
    assert_eq!(setting("User"), "sparrow");
    assert_eq!(setting("AmbientCapabilities"), "CAP_NET_BIND_SERVICE");
    assert_eq!(setting("CapabilityBoundingSet"), "CAP_NET_BIND_SERVICE");
    assert_eq!(setting("NoNewPrivileges"), "yes");
    assert_eq!(setting("ProtectSystem"), "strict");
    assert_eq!(
        setting("ExecStart"),
        "/usr/bin/sparrow node --config /etc/sparrow/sparrow.toml"
    );
    assert_eq!(
        setting("ExecStartPre"),
        "/usr/bin/sparrow -q check --config /etc/sparrow/sparrow.toml"
    );
    let reload = setting("ExecReload");
    let socket = reload
        .strip_prefix("/usr/bin/sparrow reload --socket ")
        .unwrap_or_else(|| panic!("{reload}"));

    // The packaged config puts the socket and the state where the unit made room for them
    // (ProtectSystem=strict leaves nothing else writable), and the CLI looks there.
    let config = sparrow_node::config::load(&deploy("debian/sparrow.toml"))
        .unwrap()
        .config;
    let runtime = Path::new("/run").join(setting("RuntimeDirectory"));
    let state = Path::new("/var/lib").join(setting("StateDirectory"));
    assert_eq!(config.node.api_socket.as_deref(), Some(Path::new(socket)));
    assert_eq!(Path::new(socket).parent(), Some(runtime.as_path()));
    assert_eq!(socket, sparrow_node::cli::SYSTEMD_SOCKET);
    assert_eq!(config.node.state_dir.as_deref(), Some(state.as_path()));
    // Port 53 is what CAP_NET_BIND_SERVICE is for; readiness is served for probes.
    assert!(config.node.listen.iter().all(|a| a.port() == 53));
    assert!(
        config
            .node
            .metrics_listen
            .is_some_and(|a| a.ip().is_loopback())
    );
}

/// Fails unless every one of `tools` is on PATH: scripts/test installs them, and a machine
/// without them fails rather than skipping.
fn require(tools: &[&str]) {
    for tool in tools {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool} >/dev/null")])
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            found,
            "`{tool}` is missing: run scripts/test, which installs it"
        );
    }
}

/// The target folder of this build (target/debug/sparrow -> target).
fn target_dir() -> PathBuf {
    let exe = Path::new(env!("CARGO_BIN_EXE_sparrow"));
    exe.parent().unwrap().parent().unwrap().to_owned()
}

/// The Debian package of this build, made once for the tests that need it.
fn test_deb() -> PathBuf {
    static DEB: std::sync::Mutex<Option<PathBuf>> = std::sync::Mutex::new(None);
    let mut deb = DEB
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(d) = deb.as_ref() {
        return d.clone();
    }
    require(&["cargo-deb"]);
    let started = std::time::Instant::now();
    let out = Command::new(deploy("debian/build-deb"))
        .arg("--binary")
        .arg(env!("CARGO_BIN_EXE_sparrow"))
        .arg("--fast")
        .env("CARGO_TARGET_DIR", target_dir())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "build-deb: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = PathBuf::from(stdout.lines().last().unwrap().trim());
    assert!(
        path.extension().is_some_and(|e| e == "deb") && path.is_file(),
        "{}",
        path.display()
    );
    eprintln!("package built in {:.1} s", started.elapsed().as_secs_f64());
    *deb = Some(path.clone());
    path
}

#[test]
fn debian_package_installs_runs_and_purges_cleanly_in_a_clean_root() {
    // Root and, on the first run, the Debian mirror are needed too (the root is cached under
    // target/pkg-test/).
    require(&["mmdebstrap", "dig", "unshare", "setpriv"]);
    let deb = test_deb();
    let started = std::time::Instant::now();
    let out = Command::new(deploy("debian/test-package"))
        .arg(&deb)
        .output()
        .unwrap();
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{log}");
    assert!(log.trim_end().ends_with("test-package: ok"), "{log}");
    eprintln!(
        "package installed, run and purged in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn container_image_builds_from_debian_packages_and_serves_unprivileged() {
    require(&["mmdebstrap", "buildah", "podman", "dig", "unshare"]);
    let deb = test_deb();
    // The test's images stay in a store of their own under target/.
    let store = target_dir().join("pkg-test/containers");
    let storage = format!(
        "--root {} --runroot {} --storage-driver vfs",
        store.join("root").display(),
        store.join("run").display()
    );
    let started = std::time::Instant::now();
    let out = Command::new(deploy("container/build-image"))
        .arg(&deb)
        .env("SPARROW_CONTAINERS_STORAGE", &storage)
        .env("SPARROW_IMAGE", "localhost/sparrow:test")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "build-image: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.lines().last(), Some("localhost/sparrow:test"));
    let built = started.elapsed();
    // The image's own file system, as its user with no capability; `podman run` itself needs
    // a host that lets crun set rlimits (deploy/container/test-image without --rootfs).
    let out = Command::new(deploy("container/test-image"))
        .args(["--rootfs", "localhost/sparrow:test"])
        .env("SPARROW_CONTAINERS_STORAGE", &storage)
        .output()
        .unwrap();
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Each build is a few hundred MB in the vfs store: keep none of them.
    let _ = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "podman {storage} rmi -f localhost/sparrow:test && podman {storage} image prune -f"
        ))
        .output();
    assert!(out.status.success(), "{log}");
    assert!(log.trim_end().ends_with("test-image: ok"), "{log}");
    eprintln!(
        "image built in {:.1} s, checked and run in {:.1} s",
        built.as_secs_f64(),
        (started.elapsed() - built).as_secs_f64()
    );
}

/// A tool of the Python virtual environment scripts/test makes (`target/k8s-venv`).
fn venv_tool(name: &str) -> PathBuf {
    let exe = Path::new(env!("CARGO_BIN_EXE_sparrow"));
    let tool = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("k8s-venv/bin")
        .join(name);
    assert!(
        tool.is_file(),
        "no {}: run scripts/test, which makes it (python3 -m venv, pip install kubernetes-validate)",
        tool.display()
    );
    tool
}

/// Every document of every manifest under deploy/k8s/, as JSON.
fn k8s_documents() -> Vec<serde_json::Value> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(deploy("k8s"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    let out = Command::new(venv_tool("kubernetes-validate"))
        .args(["--strict", "--quiet", "--kubernetes-version", "1.30.0"])
        .args(&files)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(venv_tool("python"))
        .args([
            "-c",
            "import json, sys, yaml\n\
             print(json.dumps([d for f in sys.argv[1:] for d in yaml.safe_load_all(open(f))]))",
        ])
        .args(&files)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn k8s_object<'a>(docs: &'a [serde_json::Value], kind: &str, name: &str) -> &'a serde_json::Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

#[test]
fn kubernetes_manifests_validate_and_agree_with_the_config_they_carry() {
    let docs = k8s_documents();
    let set = k8s_object(&docs, "StatefulSet", "sparrow-ams");
    let pop = set["metadata"]["labels"]["sparrow-dns.org/pop"]
        .as_str()
        .unwrap();
    let pod = &set["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let volume = |name: &str| {
        pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no volume {name}"))
    };
    let mount = |name: &str| -> PathBuf {
        let m = container["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == name)
            .unwrap_or_else(|| panic!("no mount {name}"));
        PathBuf::from(m["mountPath"].as_str().unwrap())
    };
    let port = |name: &str| {
        container["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("no port {name}"))["containerPort"]
            .as_u64()
            .unwrap()
    };

    // The ConfigMap's files as the pod sees them, the Secret's as `sparrow cert` makes them.
    let dir = temp_dir("k8s");
    let config_map = volume("config")["configMap"]["name"].as_str().unwrap();
    let conf = dir.join("conf");
    std::fs::create_dir_all(&conf).unwrap();
    for (file, text) in k8s_object(&docs, "ConfigMap", config_map)["data"]
        .as_object()
        .unwrap()
    {
        std::fs::write(conf.join(file), text.as_str().unwrap()).unwrap();
    }
    let toml_text = std::fs::read_to_string(conf.join("sparrow.toml")).unwrap();
    let raw: toml::Table = toml_text.parse().unwrap();
    let cluster_id = raw["cluster"]["id"].as_str().unwrap();
    let pki = dir.join("pki");
    for args in [vec!["ca", "--cluster", cluster_id], vec!["node", pop]] {
        let out = Command::new(env!("CARGO_BIN_EXE_sparrow"))
            .arg("cert")
            .args(&args)
            .arg("--dir")
            .arg(&pki)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = Command::new(env!("CARGO_BIN_EXE_sparrow"))
        .args(["check", "--json", "--config"])
        .arg(conf.join("sparrow.toml"))
        .output()
        .unwrap();
    let check: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(out.status.success(), "{check}");
    assert_eq!(check["own_pop"], pop);
    assert_eq!(check["clustered"], true);
    // The one warning is the metrics endpoint off loopback, which the kubelet's probes need.
    let warnings = check["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].as_str().unwrap().contains("metrics_listen"),
        "{warnings:?}"
    );

    // The pod gives the node what its config names: mounts, ports, socket, state.
    let config = sparrow_node::config::load(&conf.join("sparrow.toml"))
        .unwrap()
        .config;
    let rel = |p: &str| mount("config").join(p);
    assert_eq!(
        rel(raw["cluster"]["ca"].as_str().unwrap())
            .parent()
            .unwrap()
            .file_name(),
        mount("pki").file_name()
    );
    assert_eq!(
        volume("pki")["secret"]["secretName"],
        format!("sparrow-pki-{pop}")
    );
    assert_eq!(
        config.node.state_dir.as_deref(),
        Some(mount("state").as_path())
    );
    let socket = config.node.api_socket.clone().unwrap();
    assert!(socket.starts_with(mount("run")) && socket.parent() != Some(&mount("run")));
    assert_eq!(container["env"][0]["name"], "SPARROW_SOCKET");
    assert_eq!(container["env"][0]["value"], socket.display().to_string());
    assert!(
        config
            .node
            .listen
            .iter()
            .all(|a| u64::from(a.port()) == port("dns-udp"))
    );
    assert_eq!(port("dns-udp"), port("dns-tcp"));
    assert_eq!(
        u64::from(config.cluster.as_ref().unwrap().listen.port()),
        port("gossip")
    );
    assert_eq!(
        u64::from(config.node.metrics_listen.unwrap().port()),
        port("metrics")
    );
    for probe in ["startupProbe", "readinessProbe", "livenessProbe"] {
        assert_eq!(container[probe]["httpGet"]["path"], "/ready", "{probe}");
        assert_eq!(container[probe]["httpGet"]["port"], "metrics", "{probe}");
    }
    // The startup probe outlasts the node's longest wait for readiness.
    let ready_wait = config.node.ready_timeout.as_secs();
    let startup = &container["startupProbe"];
    assert!(
        startup["periodSeconds"].as_u64().unwrap() * startup["failureThreshold"].as_u64().unwrap()
            > ready_wait
    );
    // Unprivileged: not root, no capability, nothing writable but the volumes.
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        container["securityContext"]["capabilities"]["drop"][0],
        "ALL"
    );
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(
        container["securityContext"]["allowPrivilegeEscalation"],
        false
    );
    assert_eq!(set["spec"]["replicas"], 1);
    // DNS on 53 over UDP and TCP; one budget over every POP's node.
    let dns = k8s_object(&docs, "Service", &format!("sparrow-{pop}-dns"));
    let mut protocols: Vec<&str> = dns["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            assert_eq!(p["port"], 53);
            p["protocol"].as_str().unwrap()
        })
        .collect();
    protocols.sort();
    assert_eq!(protocols, ["TCP", "UDP"]);
    let pdb = k8s_object(&docs, "PodDisruptionBudget", "sparrow");
    assert_eq!(pdb["spec"]["maxUnavailable"], 1);
    assert_eq!(
        pdb["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"],
        set["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"]
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
