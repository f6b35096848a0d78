//! [E] systemd's notify protocol (`sd_notify(3)`): with `Type=notify` the unit is started
//! once the node says READY=1 (its own view in, cluster joined, its peers' views held, or
//! its `ready_timeout_secs` passed), STATUS= says what it waits for, and with `WatchdogSec=`
//! the node pings WATCHDOG=1 while its state owner answers, so a stuck node is restarted.
//!
//! Hand-written: the protocol is one datagram of `KEY=VALUE` lines to the socket in
//! `$NOTIFY_SOCKET`; a crate would add more than it saves.

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::state::owner::StateHandle;

/// Where to notify systemd, and how often to ping its watchdog.
#[derive(Clone, Debug)]
pub struct Notifier {
    socket: PathBuf,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// The notifier systemd asks for in the environment (`NOTIFY_SOCKET`, `WATCHDOG_USEC`
    /// for this process); `None` when not started by systemd with `Type=notify`.
    pub fn from_env() -> Option<Self> {
        let socket = PathBuf::from(std::env::var_os("NOTIFY_SOCKET")?);
        let for_me = std::env::var("WATCHDOG_PID")
            .ok()
            .and_then(|p| p.parse::<u32>().ok())
            .is_none_or(|p| p == std::process::id());
        let watchdog = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|u| u.parse::<u64>().ok())
            .filter(|&u| u > 0 && for_me)
            .map(Duration::from_micros);
        Some(Self { socket, watchdog })
    }

    /// Sends `message` (`KEY=VALUE` lines); failures are logged, never fatal.
    pub fn send(&self, message: &str) {
        if let Err(e) = self.try_send(message) {
            warn!(socket = %self.socket.display(), error = %e, "cannot notify systemd");
        }
    }

    fn try_send(&self, message: &str) -> std::io::Result<()> {
        let sock = UnixDatagram::unbound()?;
        let text = self.socket.to_string_lossy();
        if let Some(name) = text.strip_prefix('@') {
            #[cfg(target_os = "linux")]
            {
                use std::os::linux::net::SocketAddrExt as _;
                let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
                sock.send_to_addr(message.as_bytes(), &addr)?;
                return Ok(());
            }
            #[cfg(not(target_os = "linux"))]
            return Err(std::io::Error::other(format!("abstract socket @{name}")));
        }
        sock.send_to(message.as_bytes(), &self.socket)?;
        Ok(())
    }

    /// Tells systemd the node's readiness as it changes, and pings the watchdog while the
    /// state owner answers, until `shutdown`.
    pub async fn follow(self, state: StateHandle, shutdown: CancellationToken) {
        let mut ready = state.ready.clone();
        let mut said_ready = false;
        let ping_every = self.watchdog.map(|w| w / 2);
        let mut tick = tokio::time::interval(ping_every.unwrap_or(Duration::from_secs(3600)));
        let mut changed_since = true;
        loop {
            if changed_since {
                changed_since = false;
                let now = ready.borrow_and_update().clone();
                if now.ready && !said_ready {
                    said_ready = true;
                    self.send(&format!("READY=1\nSTATUS={}", now.reason));
                } else {
                    self.send(&format!("STATUS={}", now.reason));
                }
            }
            tokio::select! {
                changed = ready.changed() => match changed {
                    Ok(()) => changed_since = true,
                    Err(_) => return,
                },
                _ = tick.tick(), if ping_every.is_some() => {
                    // Pinged only while the owner answers within half the watchdog time.
                    let within = ping_every.unwrap_or(Duration::from_secs(1));
                    if state.ping(within).await {
                        self.send("WATCHDOG=1");
                    } else {
                        debug!("state owner did not answer; watchdog not pinged");
                    }
                }
                () = shutdown.cancelled() => return,
            }
        }
    }
}

/// `CLOCK_MONOTONIC` in microseconds, as `RELOADING=1` wants it beside.
pub fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into a plain struct owned by this frame.
    unsafe {
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts);
    }
    (ts.tv_sec as u64) * 1_000_000 + (ts.tv_nsec as u64) / 1_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_reach_the_notify_socket() {
        let dir = std::env::temp_dir().join(format!("sparrow-notify-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        let listener = UnixDatagram::bind(&path).unwrap();
        let n = Notifier {
            socket: path,
            watchdog: None,
        };
        n.send("READY=1\nSTATUS=ready");
        let mut buf = [0u8; 256];
        let len = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1\nSTATUS=ready");
        assert!(monotonic_usec() > 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
