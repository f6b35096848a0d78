//! [E] Upgrades without a lost query: a new process takes the running node's sockets.
//!
//! `sparrow node --take-over` connects to the running node's API socket (the config's) and
//! asks for its sockets. The running node leaves the cluster (its peers stop handing out its
//! POP at once), stops everything but its DNS server, and passes every socket it listens on
//! (DNS UDP and TCP, the cluster socket, the metrics listener, the API listener) over the
//! Unix socket (`SCM_RIGHTS`, the hand-off gdnsd's and HAProxy's reloads use). The two
//! processes then share the very same sockets, so no query that reaches the machine is
//! lost: what one process has not read, the other reads. Once the new process serves DNS it
//! says so, and the old one stops reading, answers what it has in flight, and exits.
//!
//! Only a process of the node's own user may ask (the API socket's folder and mode already
//! say so; the peer's credentials are checked again here), and only over the local socket.

use std::net::SocketAddr;
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd, RawFd};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use sendfd::{RecvWithFd as _, SendWithFd as _};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{TcpListener, UnixListener, UnixStream};

/// Longest the old process keeps serving after handing over, waiting for the new one to
/// say it serves (a new process that cannot start leaves the old one serving until then).
pub const SERVING_WAIT: Duration = Duration::from_secs(120);
/// The line the new process sends once it serves DNS on the sockets.
const SERVING: &str = "serving";
/// Most sockets a hand-off carries (a UDP group and TCP per DNS address, three more).
const MAX_FDS: usize = 253;

/// One DNS address in a hand-off.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct DnsAddress {
    /// The address.
    pub addr: SocketAddr,
    /// How many UDP sockets (one `SO_REUSEPORT` group, one per worker) come first; then
    /// its TCP listener.
    pub udp: usize,
}

/// What travels with the sockets: which is which, in the order of the descriptors.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct Description {
    /// Each DNS address's sockets.
    pub dns: Vec<DnsAddress>,
    /// Then the cluster socket, if clustered.
    pub gossip: bool,
    /// Then the metrics listener, if served.
    pub metrics: bool,
    /// Then the API listener.
    pub api: bool,
}

impl Description {
    fn fds(&self) -> usize {
        self.dns.iter().map(|d| d.udp + 1).sum::<usize>()
            + usize::from(self.gossip)
            + usize::from(self.metrics)
            + usize::from(self.api)
    }
}

/// The sockets a running node hands over (duplicates of its own descriptors).
#[derive(Default)]
pub struct Sockets {
    /// DNS: (address, its UDP group, TCP) per address.
    pub dns: Vec<(SocketAddr, Vec<OwnedFd>, OwnedFd)>,
    /// The cluster socket.
    pub gossip: Option<OwnedFd>,
    /// The metrics listener.
    pub metrics: Option<OwnedFd>,
    /// The API listener.
    pub api: Option<OwnedFd>,
}

/// Duplicates `fd` (close-on-exec) so that it outlives the object that owns it.
pub fn dup(fd: &impl std::os::fd::AsFd) -> anyhow::Result<OwnedFd> {
    fd.as_fd()
        .try_clone_to_owned()
        .context("cannot duplicate a socket for a hand-off")
}

/// Sends `sockets` to the process at the other end of `stream` (a take-over request on the
/// API socket); returns the stream, on which that process says when it serves.
pub async fn hand_over(stream: UnixStream, sockets: Sockets) -> anyhow::Result<StdUnixStream> {
    let desc = Description {
        dns: sockets
            .dns
            .iter()
            .map(|(addr, udp, _)| DnsAddress {
                addr: *addr,
                udp: udp.len(),
            })
            .collect(),
        gossip: sockets.gossip.is_some(),
        metrics: sockets.metrics.is_some(),
        api: sockets.api.is_some(),
    };
    let mut fds: Vec<RawFd> = Vec::new();
    for (_, udp, tcp) in &sockets.dns {
        fds.extend(udp.iter().map(|u| u.as_raw_fd()));
        fds.push(tcp.as_raw_fd());
    }
    fds.extend(
        [&sockets.gossip, &sockets.metrics, &sockets.api]
            .into_iter()
            .flatten()
            .map(|f| f.as_raw_fd()),
    );
    anyhow::ensure!(
        fds.len() <= MAX_FDS,
        "{} sockets are more than one hand-off carries ({MAX_FDS}): fewer DNS addresses or workers",
        fds.len()
    );
    let mut text = serde_json::to_vec(&desc)?;
    text.push(b'\n');
    let stream = stream.into_std()?;
    stream.set_nonblocking(false)?;
    tokio::task::spawn_blocking(move || {
        stream.set_write_timeout(Some(Duration::from_secs(10)))?;
        let sent = stream.send_with_fd(&text, &fds)?;
        anyhow::ensure!(sent == text.len(), "hand-off message cut short");
        // The sockets stay open in this process until it exits: `sockets` drops here, the
        // DNS server and the new process hold their own descriptors.
        drop(sockets);
        Ok(stream)
    })
    .await?
}

/// Waits (at most [`SERVING_WAIT`]) for the new process to say it serves DNS; `false` if
/// it hung up or fell silent first.
pub async fn wait_serving(stream: StdUnixStream) -> bool {
    let Ok(()) = stream.set_nonblocking(true) else {
        return false;
    };
    let Ok(stream) = UnixStream::from_std(stream) else {
        return false;
    };
    let mut lines = BufReader::new(stream).lines();
    matches!(
        tokio::time::timeout(SERVING_WAIT, lines.next_line()).await,
        Ok(Ok(Some(line))) if line == SERVING
    )
}

/// The sockets a new process took over, and the line back to the old process.
pub struct Inherited {
    /// DNS sockets (the UDP group, TCP), as bound by the old process.
    pub dns: Vec<(Vec<std::net::UdpSocket>, TcpListener)>,
    /// The cluster socket.
    pub gossip: Option<std::net::UdpSocket>,
    /// The metrics listener.
    pub metrics: Option<TcpListener>,
    /// The API listener.
    pub api: Option<UnixListener>,
    back: StdUnixStream,
}

impl Inherited {
    /// Tells the old process this one serves DNS now: it stops, and exits.
    pub async fn serving(self) {
        let mut stream = match self
            .back
            .set_nonblocking(true)
            .and_then(|()| UnixStream::from_std(self.back))
        {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot tell the old process to stop; it stops after its bound");
                return;
            }
        };
        let _ = stream.write_all(format!("{SERVING}\n").as_bytes()).await;
        let _ = stream.shutdown().await;
    }
}

/// Asks the node whose API listens at `api` for its sockets.
pub async fn take_over(api: &Path) -> anyhow::Result<Inherited> {
    let path = api.to_owned();
    tokio::task::spawn_blocking(move || take_over_blocking(&path)).await?
}

fn take_over_blocking(api: &Path) -> anyhow::Result<Inherited> {
    let stream = StdUnixStream::connect(api).with_context(|| {
        format!(
            "no running node to take over at {} (is it running with this config?)",
            api.display()
        )
    })?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut request = serde_json::to_vec(&sparrow_proto::api::Request::TakeOver)?;
    request.push(b'\n');
    std::io::Write::write_all(&mut &stream, &request)?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut raw = [-1 as RawFd; MAX_FDS];
    let (n, count) = stream
        .recv_with_fd(&mut buf, &mut raw)
        .context("the running node did not hand over its sockets")?;
    // SAFETY: the kernel installed these descriptors in this process for us alone.
    let mut fds: std::collections::VecDeque<OwnedFd> = raw[..count]
        .iter()
        .map(|&fd| unsafe { OwnedFd::from_raw_fd(fd) })
        .collect();
    for fd in &fds {
        // SAFETY: fcntl on a descriptor this process owns.
        unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    let text = std::str::from_utf8(&buf[..n]).context("hand-off message is not text")?;
    let desc: Description = match serde_json::from_str(text.trim_end()) {
        Ok(d) => d,
        Err(_) => {
            // The running node refused (an API error reply), or is of another version.
            anyhow::bail!(
                "the running node refused the take-over: {}",
                text.trim_end()
            );
        }
    };
    anyhow::ensure!(
        desc.fds() == count,
        "the hand-off names {} sockets but carried {count}",
        desc.fds()
    );
    let mut next = || fds.pop_front().expect("counted above");
    let mut dns = Vec::new();
    for d in &desc.dns {
        anyhow::ensure!(d.udp > 0, "the hand-off names no UDP socket for {}", d.addr);
        let mut group = Vec::new();
        for _ in 0..d.udp {
            let udp = std::net::UdpSocket::from(next());
            udp.set_nonblocking(true)?;
            group.push(udp);
        }
        let tcp = std::net::TcpListener::from(next());
        tcp.set_nonblocking(true)?;
        dns.push((group, TcpListener::from_std(tcp)?));
    }
    let gossip = desc.gossip.then(|| std::net::UdpSocket::from(next()));
    let metrics = match desc.metrics {
        true => {
            let l = std::net::TcpListener::from(next());
            l.set_nonblocking(true)?;
            Some(TcpListener::from_std(l)?)
        }
        false => None,
    };
    let api_listener = match desc.api {
        true => {
            let l = std::os::unix::net::UnixListener::from(next());
            l.set_nonblocking(true)?;
            Some(UnixListener::from_std(l)?)
        }
        false => None,
    };
    stream.set_read_timeout(None)?;
    Ok(Inherited {
        dns,
        gossip,
        metrics,
        api: api_listener,
        back: stream,
    })
}
