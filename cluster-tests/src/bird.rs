//! A real BIRD 2 routing daemon for tests: started on loopback with its own config, control
//! socket and pid file in a fresh temporary folder, stopped (killed) when dropped.
//!
//! BIRD cannot bind port 0, so tests pick ports with [`free_port`] (bind 127.0.0.1:0, read
//! the port, release it) and write them into its config. Waits poll `birdc` (never fixed
//! sleeps). `scripts/test` installs the `bird2` package when it is missing; a test that needs
//! BIRD fails, not skips, without it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context as _;

/// A port free on 127.0.0.1 right now (TCP), for a daemon that cannot take port 0.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address").port()
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
        .with_context(|| {
            format!("`{name}` not found: install Debian's bird2 (scripts/test does it)")
        })
}

/// A running BIRD.
pub struct Bird {
    dir: PathBuf,
    config: PathBuf,
    socket: PathBuf,
    child: Option<Child>,
}

impl Bird {
    /// Starts BIRD with `config` (BIRD's own syntax) in a new folder named after `name`.
    pub async fn start(name: &str, config: &str) -> anyhow::Result<Self> {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "sparrow-bird-{name}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir)?;
        let mut bird = Self {
            config: dir.join("bird.conf"),
            socket: dir.join("bird.ctl"),
            dir,
            child: None,
        };
        std::fs::write(&bird.config, config)?;
        bird.spawn().await?;
        Ok(bird)
    }

    /// The folder holding its config, socket, pid file and log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    async fn spawn(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("bird.log"))?;
        let _ = std::fs::remove_file(&self.socket);
        let child = Command::new(program("bird")?)
            .arg("-f")
            .arg("-c")
            .arg(&self.config)
            .arg("-s")
            .arg(&self.socket)
            .arg("-P")
            .arg(self.dir.join("bird.pid"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("cannot start bird")?;
        self.child = Some(child);
        // Ready when its control socket answers.
        for _ in 0..200 {
            if self.birdc(&["show", "status"]).is_ok() {
                return Ok(());
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                anyhow::bail!("bird exited with {status}: {}", self.log());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anyhow::bail!("bird did not open its control socket: {}", self.log())
    }

    /// Its log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("bird.log")).unwrap_or_default()
    }

    /// Runs `birdc` with `args`; returns its output, or an error if it failed.
    pub fn birdc(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = Command::new(program("birdc")?)
            .arg("-s")
            .arg(&self.socket)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .context("cannot run birdc")?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() || text.contains("Unable to connect") {
            anyhow::bail!(
                "birdc {args:?}: {text}{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(text)
    }

    /// Waits until BGP protocol `protocol` is Established.
    pub async fn wait_established(&self, protocol: &str, within: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let out = self.birdc(&["show", "protocols", protocol])?;
            if out.contains("Established") {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                anyhow::bail!(
                    "{protocol} not Established within {within:?}: {out}\n{}",
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Replaces the config and tells BIRD to load it (`birdc configure`).
    pub fn reconfigure(&self, config: &str) -> anyhow::Result<()> {
        std::fs::write(&self.config, config)?;
        let out = self.birdc(&["configure"])?;
        anyhow::ensure!(out.contains("Reconfigured"), "birdc configure: {out}");
        Ok(())
    }

    /// Writes an MRT RIB dump of every table (`mrt dump table "master*"`) to `file` and
    /// returns its bytes once BIRD has finished writing it.
    pub async fn mrt_dump(&self, file: &Path) -> anyhow::Result<Vec<u8>> {
        let _ = std::fs::remove_file(file);
        let cmd = format!("mrt dump table \"master*\" to \"{}\"", file.display());
        self.birdc(&[&cmd])?;
        // BIRD writes in the background: wait until the size holds still.
        let mut last = None;
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let len = std::fs::metadata(file).map(|m| m.len()).ok();
            if len.is_some() && len == last {
                return Ok(std::fs::read(file)?);
            }
            last = len;
        }
        anyhow::bail!("no MRT dump at {}: {}", file.display(), self.log())
    }

    /// Kills BIRD (as a crash or power loss would: no NOTIFICATION to its peers).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops BIRD cleanly (`birdc down`: its sessions are closed with a Cease).
    pub async fn stop(&mut self) {
        let _ = self.birdc(&["down"]);
        if let Some(mut child) = self.child.take() {
            for _ in 0..100 {
                if child.try_wait().ok().flatten().is_some() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts BIRD again with its current config.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        self.spawn().await
    }
}

impl Drop for Bird {
    fn drop(&mut self) {
        self.kill();
    }
}
