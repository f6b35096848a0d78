//! \[E\] The namespaces backend: real `sparrow` processes, one per Linux network namespace,
//! joined by veth pairs to a bridge that this run creates; the runner's clients reach the
//! nodes through the bridge from the root namespace.
//!
//! Faults are the kernel's, set in each node's namespace on what it sends to each peer (one
//! direction of a link; the clients' traffic is never touched):
//! - cuts: an nftables rule that drops packets to the peer (a QUIC connection then fails in
//!   both directions, since its handshake needs both);
//! - loss: an nftables rule that drops that share of them at random (`numgen random`);
//! - delay and jitter: a `tc netem` queue in an HTB class per peer, matched by the peer's
//!   address. Kernels built without `sch_netem` (the CI machine's, for one) cannot delay
//!   packets: the run then says so in its notes and applies the other faults.
//!
//! Crashes are `SIGKILL`.
//!
//! Everything is named after the run (`sn<pid>r<k>`: `…n<i>` namespaces, `…b` the bridge)
//! and torn down at the end, on error and on drop (a panic); at creation, leftovers of runs
//! whose process is gone are removed. Needs root (CAP_NET_ADMIN), iproute2 and nftables.

use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context as _, bail};

use super::plan::NetState;

/// DNS port of every node (each has a namespace of its own, so a fixed port is free).
const DNS_PORT: u16 = 53;
/// Gossip port of every node.
const GOSSIP_PORT: u16 = 7300;
/// Largest cluster this backend builds (one /24 per run; HTB class ids).
const MAX_NODES: usize = 200;

/// The namespaces of one run.
pub struct Netns {
    id: String,
    namespaces: Vec<String>,
    bridge: String,
    addrs: Vec<Ipv4Addr>,
    applied: NetState,
    /// Whether the kernel has `tc netem` (delay and jitter).
    netem: bool,
    /// What this backend could not do, for the summary.
    notes: Vec<String>,
    children: Vec<Option<Child>>,
    sparrow: PathBuf,
    configs: Vec<PathBuf>,
    logs: PathBuf,
    torn_down: bool,
}

/// The `sparrow` binary: `explicit`, else beside this executable (or one folder up, where
/// cargo puts binaries for test executables in `deps/`).
pub fn find_sparrow(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(p) = explicit {
        anyhow::ensure!(p.is_file(), "{} is not a file", p.display());
        return Ok(p.to_owned());
    }
    let exe = std::env::current_exe().context("cannot find this executable")?;
    for dir in exe.ancestors().skip(1).take(2) {
        let candidate = dir.join("sparrow");
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    bail!(
        "no `sparrow` binary next to {}: build it (cargo build -p sparrow-node) or pass --sparrow PATH",
        exe.display()
    )
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {cmd:?} (is iproute2/nftables installed?)"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Runs `program args` with `input` on its standard input.
fn run_with_input(program: &str, args: &[&str], input: &str) -> anyhow::Result<()> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {program} (is iproute2/nftables installed?)"))?;
    child
        .stdin
        .take()
        .context("no stdin")?
        .write_all(input.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "{program} {} failed ({}): {}\ninput:\n{input}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    run(Command::new("ip").args(args))
}

fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// The pid of the run that named `name` (`sn<pid>r...`), if it is one of ours.
fn owner(name: &str) -> Option<u32> {
    let rest = name.strip_prefix("sn")?;
    let (pid, tail) = rest.split_once('r')?;
    tail.chars().next()?.is_ascii_digit().then_some(())?;
    pid.parse().ok()
}

/// Removes namespaces and bridges of earlier runs whose process is gone.
pub fn clean_stale() {
    let list = |args: &[&str]| {
        Command::new("ip")
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    };
    for line in list(&["netns", "list"]).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        if owner(name).is_some_and(|pid| !pid_alive(pid)) {
            eprintln!("netsim: removing namespace {name} of an earlier run");
            let _ = ip(&["netns", "del", name]);
        }
    }
    for line in list(&["-o", "link", "show", "type", "bridge"]).lines() {
        // "12: sn123r0b: <...>"
        let name = line.split(':').nth(1).map(str::trim).unwrap_or("");
        if owner(name).is_some_and(|pid| !pid_alive(pid)) {
            eprintln!("netsim: removing bridge {name} of an earlier run");
            let _ = ip(&["link", "del", name]);
        }
    }
}

impl Netns {
    /// Creates the bridge and `n` namespaces with their links, queues and filter tables.
    pub fn create(n: usize) -> anyhow::Result<Self> {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        anyhow::ensure!(
            (1..=MAX_NODES).contains(&n),
            "the namespaces backend runs 1 to {MAX_NODES} nodes"
        );
        clean_stale();
        let k = COUNTER.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let id = format!("sn{pid}r{}", k % 10);
        // A /24 of the benchmarking range (RFC 2544, 198.18.0.0/15), picked from the pid and
        // the run so that concurrent runs do not share one.
        let net = (pid as usize).wrapping_mul(31).wrapping_add(k) % 512;
        let (b, c) = (18 + (net / 256) as u8, (net % 256) as u8);
        let addrs: Vec<Ipv4Addr> = (0..n)
            .map(|i| Ipv4Addr::new(198, b, c, i as u8 + 1))
            .collect();
        let mut me = Self {
            namespaces: (0..n).map(|i| format!("{id}n{i}")).collect(),
            bridge: format!("{id}b"),
            id,
            addrs,
            applied: NetState::healthy(n),
            netem: false,
            notes: Vec::new(),
            children: (0..n).map(|_| None).collect(),
            sparrow: PathBuf::new(),
            configs: Vec::new(),
            logs: PathBuf::new(),
            torn_down: false,
        };
        if let Err(e) = me.build(b, c) {
            me.shutdown();
            return Err(e.context(
                "cannot build the namespaces (the netns backend needs root, iproute2 and nftables)",
            ));
        }
        Ok(me)
    }

    fn build(&mut self, b: u8, c: u8) -> anyhow::Result<()> {
        let br = &self.bridge;
        ip(&["link", "add", br, "type", "bridge"])?;
        ip(&["addr", "add", &format!("198.{b}.{c}.254/24"), "dev", br])?;
        ip(&["link", "set", br, "up"])?;
        for (i, ns) in self.namespaces.iter().enumerate() {
            let veth = format!("{}v{i}", self.id);
            ip(&["netns", "add", ns])?;
            ip(&[
                "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", ns,
            ])?;
            ip(&["link", "set", &veth, "master", br, "up"])?;
            ip(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{}/24", self.addrs[i]),
                "dev",
                "eth0",
            ])?;
            ip(&["-n", ns, "link", "set", "eth0", "up"])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
            if i == 0 {
                // Probe for netem once: add and remove a queue on the first node's link.
                self.netem = run(Command::new("ip").args([
                    "netns", "exec", ns, "tc", "qdisc", "add", "dev", "eth0", "root", "netem",
                    "delay", "1ms",
                ]))
                .is_ok();
                if self.netem {
                    run(Command::new("ip").args([
                        "netns", "exec", ns, "tc", "qdisc", "del", "dev", "eth0", "root",
                    ]))?;
                }
            }
            if self.netem {
                let mut tc = String::from(
                    "qdisc add dev eth0 root handle 1: htb default 1\n\
                     class add dev eth0 parent 1: classid 1:1 htb rate 10gbit\n",
                );
                for (j, peer) in self.addrs.iter().enumerate().filter(|&(j, _)| j != i) {
                    let cls = class(j);
                    tc.push_str(&format!(
                        "class add dev eth0 parent 1: classid 1:{cls:x} htb rate 10gbit\n\
                         qdisc add dev eth0 parent 1:{cls:x} handle {cls:x}: netem delay 0ms\n\
                         filter add dev eth0 parent 1: protocol ip prio 1 u32 match ip dst {peer}/32 flowid 1:{cls:x}\n"
                    ));
                }
                run_with_input("ip", &["netns", "exec", ns, "tc", "-batch", "-"], &tc)?;
            }
            run_with_input(
                "ip",
                &["netns", "exec", ns, "nft", "-f", "-"],
                "table inet netsim {\n  chain out {\n    type filter hook output priority 0; policy accept;\n  }\n}\n",
            )?;
        }
        Ok(())
    }

    /// Where node `i` serves DNS.
    pub fn dns_addr(&self, i: usize) -> SocketAddr {
        SocketAddr::from((self.addrs[i], DNS_PORT))
    }

    /// DNS addresses, in node order.
    pub fn dns_addrs(&self) -> Vec<SocketAddr> {
        (0..self.addrs.len()).map(|i| self.dns_addr(i)).collect()
    }

    /// Gossip addresses, in node order.
    pub fn gossip_addrs(&self) -> Vec<SocketAddr> {
        self.addrs
            .iter()
            .map(|&a| SocketAddr::from((a, GOSSIP_PORT)))
            .collect()
    }

    /// Starts `sparrow node --config CONFIG` in each namespace; logs go to `logs/POP.log`.
    pub fn start_all(
        &mut self,
        sparrow: &Path,
        configs: Vec<PathBuf>,
        logs: &Path,
    ) -> anyhow::Result<()> {
        std::fs::create_dir_all(logs)?;
        self.sparrow = sparrow.to_owned();
        self.configs = configs;
        self.logs = logs.to_owned();
        for i in 0..self.namespaces.len() {
            self.restart(i)?;
        }
        Ok(())
    }

    /// Starts node `i` (nothing if it runs).
    pub fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        if self.children[i].is_some() {
            return Ok(());
        }
        let config = &self.configs[i];
        let name = config
            .file_stem()
            .map_or_else(|| format!("node{i}"), |s| s.to_string_lossy().into_owned());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.logs.join(format!("{name}.log")))?;
        let child = Command::new("ip")
            .args(["netns", "exec", &self.namespaces[i]])
            .arg(&self.sparrow)
            .arg("node")
            .arg("--config")
            .arg(config)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {}", self.sparrow.display()))?;
        self.children[i] = Some(child);
        Ok(())
    }

    /// Kills node `i` with SIGKILL (nothing if it is down).
    pub fn crash(&mut self, i: usize) {
        if let Some(mut child) = self.children[i].take() {
            // `ip netns exec` execs the program, so the child is `sparrow` itself.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// What this backend could not do in this run (empty: everything asked was done).
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// Makes the kernel's faults those of `state` (nftables cuts and loss, netem delays),
    /// changing only what differs from what was applied.
    pub fn set_network(&mut self, state: &NetState) -> anyhow::Result<()> {
        let n = state.n;
        for a in 0..n {
            let ns = &self.namespaces[a];
            let row = |s: &NetState| {
                (0..n)
                    .map(|b| (s.cut[a * n + b], s.loss[a * n + b]))
                    .collect::<Vec<_>>()
            };
            if row(state) != row(&self.applied) {
                let mut rules = String::from("flush chain inet netsim out\n");
                for b in (0..n).filter(|&b| b != a) {
                    let k = a * n + b;
                    let to = self.addrs[b];
                    if state.cut[k] {
                        rules.push_str(&format!("add rule inet netsim out ip daddr {to} drop\n"));
                    } else if state.loss[k] > 0.0 {
                        let per_10k = (state.loss[k] * 10_000.0).round() as u32;
                        rules.push_str(&format!(
                            "add rule inet netsim out ip daddr {to} numgen random mod 10000 < {per_10k} drop\n"
                        ));
                    }
                }
                run_with_input("ip", &["netns", "exec", ns, "nft", "-f", "-"], &rules)?;
            }
            let mut tc = String::new();
            for b in (0..n).filter(|&b| b != a) {
                let k = a * n + b;
                if state.delay[k] == self.applied.delay[k] {
                    continue;
                }
                let (delay, jitter) = state.delay[k];
                if !self.netem {
                    if delay.is_zero() {
                        continue;
                    }
                    let note = format!(
                        "delay not applied: this kernel has no tc netem (CONFIG_NET_SCH_NETEM), so links kept their latency (asked: {delay:?} +/- {jitter:?})"
                    );
                    if !self.notes.contains(&note) {
                        eprintln!("netsim: {note}");
                        self.notes.push(note);
                    }
                    continue;
                }
                let cls = class(b);
                tc.push_str(&format!(
                    "qdisc change dev eth0 parent 1:{cls:x} handle {cls:x}: netem delay {}us {}us\n",
                    delay.as_micros(),
                    jitter.as_micros(),
                ));
            }
            if !tc.is_empty() {
                run_with_input("ip", &["netns", "exec", ns, "tc", "-batch", "-"], &tc)?;
            }
        }
        self.applied = state.clone();
        Ok(())
    }

    /// Kills every node and removes the namespaces and the bridge (once).
    pub fn shutdown(&mut self) {
        if self.torn_down {
            return;
        }
        self.torn_down = true;
        for i in 0..self.children.len() {
            self.crash(i);
        }
        for ns in &self.namespaces {
            let _ = ip(&["netns", "del", ns]);
        }
        let _ = ip(&["link", "del", &self.bridge]);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The HTB class (and netem handle) of traffic to peer `j`.
fn class(j: usize) -> usize {
    0x10 + j
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_our_runs_are_recognised_and_others_are_not() {
        assert_eq!(owner("sn1234r0n3"), Some(1234));
        assert_eq!(owner("sn1234r7b"), Some(1234));
        assert_eq!(owner("snapshot"), None);
        assert_eq!(owner("eth0"), None);
        assert_eq!(owner("sn12rx"), None);
    }

    /// Needs root and iproute2, as the namespaces backend does (CI has both).
    #[test]
    fn leftovers_of_a_run_whose_process_is_gone_are_removed_and_others_kept() {
        // A pid that no process has (the largest pids are free on a test machine).
        let dead = (4_000_000..4_194_304)
            .rev()
            .find(|&p| !pid_alive(p))
            .unwrap();
        let stale = format!("sn{dead}r9n0");
        let ours = format!("sn{}r9n0", std::process::id());
        ip(&["netns", "add", &stale]).unwrap();
        ip(&["netns", "add", &ours]).unwrap();
        clean_stale();
        let list = String::from_utf8(
            Command::new("ip")
                .args(["netns", "list"])
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap();
        let _ = ip(&["netns", "del", &ours]);
        let _ = ip(&["netns", "del", &stale]);
        assert!(!list.contains(&stale), "{list}");
        assert!(list.contains(&ours), "{list}");
    }
}
