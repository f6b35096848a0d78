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

#[test]
fn debian_package_installs_runs_and_purges_cleanly_in_a_clean_root() {
    // Root, mmdebstrap, dig and cargo-deb are needed (scripts/test installs them), and the
    // Debian mirror on the first run (the root is cached under target/pkg-test/); a machine
    // without them fails here rather than skipping.
    for tool in ["mmdebstrap", "dig", "cargo-deb", "unshare", "setpriv"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool} >/dev/null")])
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            found,
            "`{tool}` is missing: run scripts/test, which installs it"
        );
    }
    let exe = Path::new(env!("CARGO_BIN_EXE_sparrow"));
    // target/debug/sparrow -> target
    let target = exe.parent().unwrap().parent().unwrap();
    let started = std::time::Instant::now();
    let out = Command::new(deploy("debian/build-deb"))
        .arg("--binary")
        .arg(exe)
        .arg("--fast")
        .env("CARGO_TARGET_DIR", target)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "build-deb: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deb = stdout.lines().last().unwrap().trim().to_owned();
    assert!(deb.ends_with(".deb") && Path::new(&deb).is_file(), "{deb}");
    let built = started.elapsed();
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
        "package built in {:.1} s, installed, run and purged in {:.1} s",
        built.as_secs_f64(),
        (started.elapsed() - built).as_secs_f64()
    );
}
