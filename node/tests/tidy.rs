//! Keeps the pure core pure: modules marked [P] may not touch sockets, clocks, threads,
//! randomness or the file system. A failure here means a decision module grew an edge; move
//! that code to an [E] module and pass the value in.

use std::path::{Path, PathBuf};

/// Files and folders (relative to `node/src`) that must stay pure.
const PURE: &[&str] = &[
    "config",
    "routes",
    "policy",
    "snapshot.rs",
    "explain.rs",
    "dns/answer.rs",
    "dns/ecs.rs",
    "dns/zone.rs",
    "cli/render.rs",
    "health/spec.rs",
    "cluster/state.rs",
    "cluster/views.rs",
    "health/state.rs",
    "bgp/wire.rs",
    "bgp/rib.rs",
];

/// Patterns that mark I/O, time or randomness.
const FORBIDDEN: &[&str] = &[
    "tokio::",
    "std::net::UdpSocket",
    "std::net::TcpStream",
    "std::net::TcpListener",
    "Instant::now",
    "SystemTime::now",
    "std::thread",
    "rand::",
    "std::fs",
    "std::process",
    "std::env",
];

/// The one sanctioned exception: `config::load` and `config::Disk` read the config files.
const ALLOWED: &[(&str, &str)] = &[("config/mod.rs", "std::fs")];

fn rust_files(path: &Path, out: &mut Vec<PathBuf>) {
    if path.is_dir() {
        for entry in std::fs::read_dir(path).unwrap() {
            rust_files(&entry.unwrap().path(), out);
        }
    } else if path.extension().is_some_and(|e| e == "rs") {
        out.push(path.to_owned());
    }
}

#[test]
fn pure_modules_do_no_io() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    for p in PURE {
        let path = src.join(p);
        assert!(
            path.exists(),
            "{} listed as pure but missing",
            path.display()
        );
        rust_files(&path, &mut files);
    }
    let mut violations = Vec::new();
    for file in &files {
        let rel = file
            .strip_prefix(&src)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        // Tests may use whatever they need.
        if rel.ends_with("tests.rs") {
            continue;
        }
        let text = std::fs::read_to_string(file).unwrap();
        let code = text
            .split("#[cfg(test)]\nmod tests {")
            .next()
            .unwrap_or(&text);
        for (n, line) in code.lines().enumerate() {
            let line = line.split("//").next().unwrap_or("");
            for pattern in FORBIDDEN {
                if line.contains(pattern) && !ALLOWED.contains(&(rel.as_str(), *pattern)) {
                    violations.push(format!("{rel}:{}: `{pattern}`", n + 1));
                }
            }
        }
    }
    assert!(
        violations.is_empty(),
        "I/O in pure modules:\n{}",
        violations.join("\n")
    );
}
