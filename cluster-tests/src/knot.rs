//! A real Knot DNS (`knotd`, Debian's `knot`) started by a test, in its own folder (config,
//! storage, run directory, control socket, log), on a port of loopback; killed on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context as _;

/// A running `knotd`.
pub struct Knot {
    dir: PathBuf,
    /// The port it serves DNS on (UDP and TCP, 127.0.0.1).
    pub port: u16,
    child: Option<Child>,
}

impl Knot {
    /// Starts `knotd` on 127.0.0.1:`port` with `zones`: the `remote`, `acl` and `zone`
    /// sections of a Knot config (its own syntax); `server`, `database` and `template` are
    /// written here, pointing into a new folder.
    pub async fn start(port: u16, zones: &str) -> anyhow::Result<Self> {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "sparrow-knot-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir)?;
        let d = dir.display();
        let config = format!(
            "server:\n    rundir: \"{d}\"\n    listen: 127.0.0.1@{port}\n\n\
             database:\n    storage: \"{d}\"\n\n\
             log:\n  - target: stderr\n    any: info\n\n\
             template:\n  - id: default\n    storage: \"{d}\"\n    zonefile-sync: -1\n    journal-content: none\n\n\
             {zones}"
        );
        std::fs::write(dir.join("knot.conf"), config)?;
        let log = std::fs::File::create(dir.join("knot.log"))?;
        let child = Command::new(program("knotd")?)
            .arg("-c")
            .arg(dir.join("knot.conf"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("cannot start knotd (scripts/test installs knot)")?;
        let mut knot = Self {
            dir,
            port,
            child: Some(child),
        };
        for _ in 0..200 {
            if knot.knotc(&["status"]).is_ok() {
                return Ok(knot);
            }
            if let Some(status) = knot
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                anyhow::bail!("knotd exited with {status}: {}", knot.log());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anyhow::bail!("knotd did not open its control socket: {}", knot.log())
    }

    /// Its folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("knot.log")).unwrap_or_default()
    }

    /// Runs `knotc` against it.
    pub fn knotc(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = Command::new(program("knotc")?)
            .arg("-c")
            .arg(self.dir.join("knot.conf"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .context("cannot run knotc")?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        anyhow::ensure!(
            out.status.success(),
            "knotc {args:?}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(text)
    }

    /// `kdig +short` of `name` `rtype` asked of this Knot over UDP.
    pub fn ask(&self, name: &str, rtype: &str) -> anyhow::Result<String> {
        let out = Command::new("kdig")
            .args([
                "@127.0.0.1",
                "-p",
                &self.port.to_string(),
                "+short",
                "+norec",
                "+time=2",
                "+retry=0",
                name,
                rtype,
            ])
            .stdin(Stdio::null())
            .output()
            .context("cannot run kdig (knot-dnsutils)")?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// The serial of `zone`'s SOA as this Knot serves it, if it serves the zone.
    pub fn serial(&self, zone: &str) -> Option<u32> {
        let soa = self.ask(zone, "SOA").ok()?;
        soa.split_whitespace().nth(2)?.parse().ok()
    }

    /// Waits until it serves `zone` with `serial`.
    pub async fn wait_serial(
        &self,
        zone: &str,
        serial: u32,
        within: Duration,
    ) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let got = self.serial(zone);
            if got == Some(serial) {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                anyhow::bail!(
                    "Knot serves {zone} with serial {got:?}, not {serial}, after {within:?}:\n{}",
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Knot {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The path of a program installed in `/usr/sbin` or found on `PATH`.
fn program(name: &str) -> anyhow::Result<PathBuf> {
    let sbin = Path::new("/usr/sbin").join(name);
    if sbin.exists() {
        return Ok(sbin);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.exists())
        .with_context(|| format!("{name} is not installed"))
}
