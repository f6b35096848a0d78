//! [E] DNS over UDP: one thread per worker, each with its own `SO_REUSEPORT` socket, reading
//! and writing packets in batches (`recvmmsg`/`sendmmsg` on Linux). A packet goes to the
//! fast path (`dns::fast`) when it takes it, else to the hickory path
//! ([`DnsHandler::respond`]). No task per query, no allocation per fast-path query.

use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hickory_server::net::xfer::Protocol;
use socket2::{Domain, Socket, Type};
use tracing::{debug, warn};

use super::fast;
use super::handler::DnsHandler;
use super::rrl::{self, Verdict};
use super::{DnsTransport, QueryObserver};
use crate::config::RrlSettings;
use crate::snapshot::Snapshot;

/// Packets read (and answered) per system call at most.
const BATCH: usize = 32;
/// Largest query read; longer ones are dropped (no query needs more).
const MAX_QUERY: usize = 4096;
/// How often a blocked worker looks at the stop flag.
const STOP_POLL: Duration = Duration::from_millis(100);

/// A UDP socket bound to `addr` with `SO_REUSEPORT` set, so that more workers can bind
/// beside it ([`spawn`]); nonblocking, as tokio wants it.
pub fn bind_reuseport(addr: SocketAddr) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, None)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    #[cfg(unix)]
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// The number of workers when the config names none: the cores this process may use.
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// Running UDP workers; [`Self::stop`] ends them.
pub struct Workers {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Workers {
    /// Tells every worker to stop, and waits until they have (each finishes the batch in
    /// hand, so queries read are answered).
    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// Response rate limiting shared by every worker, with the epoch of its clock.
pub struct Rrl {
    limiter: rrl::Limiter,
    epoch: Instant,
}

impl Rrl {
    /// A limiter with `settings`, its clock starting now.
    pub fn new(settings: RrlSettings) -> Self {
        Self {
            limiter: rrl::Limiter::new(settings),
            epoch: Instant::now(),
        }
    }

    fn check(&self, addr: IpAddr) -> Verdict {
        // INVARIANT: milliseconds since start fit in 64 bits.
        let now_ms = self.epoch.elapsed().as_millis() as u64;
        self.limiter.check(addr, now_ms)
    }
}

/// Serves UDP on `sockets` (one address's group, bound by [`bind_reuseport`]) with at least
/// `workers` threads, one per socket: sockets are bound beside the first until there are
/// `workers`.
pub fn spawn(
    handler: &DnsHandler,
    mut sockets: Vec<UdpSocket>,
    workers: usize,
    rrl: Option<Arc<Rrl>>,
) -> io::Result<Workers> {
    // Sockets handed over by an older process each get a worker, even beyond `workers`:
    // a socket of the group that nobody reads would hold its share of the queries.
    let addr = sockets
        .first()
        .ok_or_else(|| io::Error::other("no UDP socket to serve"))?
        .local_addr()?;
    while sockets.len() < workers {
        sockets.push(bind_reuseport(addr)?);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    for (i, socket) in sockets.into_iter().enumerate() {
        socket.set_nonblocking(false)?;
        socket.set_read_timeout(Some(STOP_POLL))?;
        let handler = handler.clone();
        let stop = stop.clone();
        let rrl = rrl.clone();
        threads.push(
            std::thread::Builder::new()
                .name(format!("dns-udp-{i}"))
                .spawn(move || run(&socket, &handler, rrl.as_deref(), &stop))?,
        );
    }
    Ok(Workers { stop, threads })
}

/// Whether a response may go to `src` (as hickory's server checks).
fn can_answer(src: SocketAddr) -> bool {
    src.port() != 0
        && match src.ip() {
            IpAddr::V4(a) => !a.is_unspecified() && !a.is_broadcast(),
            IpAddr::V6(a) => !a.is_unspecified(),
        }
}

/// One worker's loop.
fn run(socket: &UdpSocket, handler: &DnsHandler, rrl: Option<&Rrl>, stop: &AtomicBool) {
    let mut batch = Batch::new();
    let mut fast = fast::Worker::default();
    while !stop.load(Ordering::Relaxed) {
        let n = match batch.receive(socket) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                continue;
            }
            Err(e) => {
                warn!(error = %e, "cannot receive on the DNS UDP socket");
                std::thread::sleep(STOP_POLL);
                continue;
            }
        };
        let snap = handler.snapshot().load();
        let cookies = handler.cookie_context(&snap);
        for i in 0..n {
            let Some((query, src, out)) = batch.slot(i) else {
                continue;
            };
            if !can_answer(src) {
                continue;
            }
            let cx = Cx {
                handler,
                snap: &snap,
                cookies,
                rrl,
            };
            answer(&cx, &mut fast, query, src, out);
        }
        if let Err(e) = batch.send(socket, n) {
            debug!(error = %e, "cannot send DNS responses");
        }
    }
}

/// What answering a batch needs besides the packets.
struct Cx<'a> {
    handler: &'a DnsHandler,
    snap: &'a Snapshot,
    cookies: Option<super::cookie::Context>,
    rrl: Option<&'a Rrl>,
}

/// Answers one query into `out` (left empty: no response).
fn answer(cx: &Cx<'_>, fast: &mut fast::Worker, query: &[u8], src: SocketAddr, out: &mut Vec<u8>) {
    out.clear();
    let Some(a) = fast.respond(cx.snap, query, src.ip(), cx.cookies) else {
        // The hickory path (which counts its own queries): limited as the fast path is.
        let Some(bytes) = cx.handler.respond(query, src, Protocol::Udp) else {
            return;
        };
        match cx.rrl.map_or(Verdict::Send, |r| r.check(src.ip())) {
            Verdict::Send => *out = bytes,
            Verdict::Slip => {
                limited(cx, true);
                if let Some(slipped) = rrl::slipped(&bytes) {
                    *out = slipped;
                }
            }
            Verdict::Drop => limited(cx, false),
        }
        return;
    };
    if let Some(m) = cx.handler.metrics() {
        count(m.as_ref(), DnsTransport::Udp, &a, cx.snap);
    }
    // A valid server cookie proves the source: no limit.
    let verdict = match cx.rrl {
        Some(r) if !a.cookie_valid => r.check(src.ip()),
        _ => Verdict::Send,
    };
    debug!(
        %src,
        name = %a.qname,
        qtype = %a.qtype,
        ecs = a.ecs,
        rcode = %a.rcode,
        truncated = a.truncated,
        precomputed = a.precomputed,
        rrl = ?verdict,
        "query"
    );
    match verdict {
        Verdict::Send => out.extend_from_slice(fast.response()),
        Verdict::Slip => {
            limited(cx, true);
            if fast
                .respond_truncated(cx.snap, query, src.ip(), cx.cookies)
                .is_some()
            {
                out.extend_from_slice(fast.response());
            }
        }
        Verdict::Drop => limited(cx, false),
    }
}

fn limited(cx: &Cx<'_>, slipped: bool) {
    if let Some(m) = cx.handler.metrics() {
        m.rate_limited(slipped);
    }
}

/// Counts a fast-path answer as the hickory path counts its own.
pub fn count(
    m: &dyn QueryObserver,
    transport: DnsTransport,
    a: &fast::Answered<'_>,
    snap: &Snapshot,
) {
    m.query(transport, a.qtype, a.rcode);
    if let (Some(service), Some(pop)) = (a.geo_service, a.geo_pop) {
        m.geo_answer(service, pop, a.ecs, snap.mode.is_local_only());
    }
}

#[cfg(target_os = "linux")]
use linux::Batch;

#[cfg(target_os = "linux")]
mod linux {
    //! Batched receive and send with `recvmmsg`/`sendmmsg`.

    use std::io;
    use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
    use std::os::fd::AsRawFd;

    use super::{BATCH, MAX_QUERY};

    /// Buffers of one worker, reused for every batch. The headers point into the boxes
    /// (whose contents never move) from construction on; a receive only resets what the
    /// kernel wrote into the slots the last one used.
    pub(super) struct Batch {
        queries: Box<[[u8; MAX_QUERY]]>,
        responses: Vec<Vec<u8>>,
        addrs: Box<[libc::sockaddr_storage]>,
        iovecs: Box<[libc::iovec]>,
        headers: Box<[libc::mmsghdr]>,
        send_iovecs: Box<[libc::iovec]>,
        send_headers: Box<[libc::mmsghdr]>,
        /// Slots the last receive filled.
        used: usize,
    }

    // SAFETY: the raw pointers in the iovecs and headers point into this struct's own
    // boxes, and the struct is used by one thread at a time.
    unsafe impl Send for Batch {}

    impl Batch {
        pub(super) fn new() -> Self {
            let mut b = Self {
                queries: vec![[0; MAX_QUERY]; BATCH].into_boxed_slice(),
                responses: (0..BATCH).map(|_| Vec::with_capacity(1232)).collect(),
                addrs: zeroed(),
                iovecs: zeroed(),
                headers: zeroed(),
                send_iovecs: zeroed(),
                send_headers: zeroed(),
                used: BATCH,
            };
            for i in 0..BATCH {
                b.iovecs[i] = libc::iovec {
                    iov_base: b.queries[i].as_mut_ptr().cast(),
                    iov_len: MAX_QUERY,
                };
                let h = &mut b.headers[i].msg_hdr;
                h.msg_name = (&raw mut b.addrs[i]).cast();
                h.msg_iov = &raw mut b.iovecs[i];
                h.msg_iovlen = 1;
                let h = &mut b.send_headers[i].msg_hdr;
                h.msg_iov = &raw mut b.send_iovecs[i];
                h.msg_iovlen = 1;
            }
            b
        }

        /// Blocks until at least one packet is there (or the read timeout passes); returns
        /// how many were read.
        pub(super) fn receive(&mut self, socket: &UdpSocket) -> io::Result<usize> {
            for h in &mut self.headers[..self.used] {
                h.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
                h.msg_hdr.msg_flags = 0;
                h.msg_len = 0;
            }
            // SAFETY: every header points at buffers of this struct that outlive the call,
            // with their true lengths.
            let n = unsafe {
                libc::recvmmsg(
                    socket.as_raw_fd(),
                    self.headers.as_mut_ptr(),
                    BATCH as libc::c_uint,
                    libc::MSG_WAITFORONE,
                    std::ptr::null_mut(),
                )
            };
            if n < 0 {
                self.used = 0;
                return Err(io::Error::last_os_error());
            }
            self.used = n as usize;
            Ok(self.used)
        }

        /// Query `i` of the last batch, its source, and the buffer for its response (left
        /// empty: none); `None` if it was cut (longer than any query) or its source is not IP.
        pub(super) fn slot(&mut self, i: usize) -> Option<(&[u8], SocketAddr, &mut Vec<u8>)> {
            let h = &self.headers[i];
            if h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
                return None;
            }
            let src = sockaddr(&self.addrs[i])?;
            Some((
                &self.queries[i][..h.msg_len as usize],
                src,
                &mut self.responses[i],
            ))
        }

        /// Sends the non-empty responses of the first `n` packets, each to its query's
        /// source, and empties them.
        pub(super) fn send(&mut self, socket: &UdpSocket, n: usize) -> io::Result<()> {
            let mut count = 0;
            for i in 0..n {
                if self.responses[i].is_empty() {
                    continue;
                }
                self.send_iovecs[count] = libc::iovec {
                    iov_base: self.responses[i].as_mut_ptr().cast(),
                    iov_len: self.responses[i].len(),
                };
                let h = &mut self.send_headers[count].msg_hdr;
                h.msg_name = (&raw mut self.addrs[i]).cast();
                h.msg_namelen = self.headers[i].msg_hdr.msg_namelen;
                count += 1;
            }
            let mut sent = 0;
            let mut result = Ok(());
            while sent < count {
                // SAFETY: send headers `sent..count` point at this struct's buffers, filled
                // above.
                let r = unsafe {
                    libc::sendmmsg(
                        socket.as_raw_fd(),
                        self.send_headers[sent..].as_mut_ptr(),
                        (count - sent) as libc::c_uint,
                        0,
                    )
                };
                if r < 0 {
                    let e = io::Error::last_os_error();
                    if e.kind() == io::ErrorKind::Interrupted {
                        continue;
                    }
                    // Skip the message that failed (an unreachable client), send the rest.
                    sent += 1;
                    result = Err(e);
                } else {
                    sent += r as usize;
                }
            }
            for r in &mut self.responses[..n] {
                r.clear();
            }
            result
        }
    }

    /// `BATCH` all-zero values of a C struct.
    fn zeroed<T>() -> Box<[T]> {
        // SAFETY: only used for sockaddr_storage, iovec and mmsghdr, for which all-zero
        // bytes are a valid value.
        (0..BATCH).map(|_| unsafe { std::mem::zeroed() }).collect()
    }

    fn sockaddr(s: &libc::sockaddr_storage) -> Option<SocketAddr> {
        match i32::from(s.ss_family) {
            libc::AF_INET => {
                // SAFETY: the family says this storage holds a sockaddr_in.
                let a: &libc::sockaddr_in =
                    unsafe { &*(s as *const _ as *const libc::sockaddr_in) };
                Some(SocketAddr::V4(SocketAddrV4::new(
                    u32::from_be(a.sin_addr.s_addr).into(),
                    u16::from_be(a.sin_port),
                )))
            }
            libc::AF_INET6 => {
                // SAFETY: the family says this storage holds a sockaddr_in6.
                let a: &libc::sockaddr_in6 =
                    unsafe { &*(s as *const _ as *const libc::sockaddr_in6) };
                Some(SocketAddr::V6(SocketAddrV6::new(
                    a.sin6_addr.s6_addr.into(),
                    u16::from_be(a.sin6_port),
                    u32::from_be(a.sin6_flowinfo),
                    a.sin6_scope_id,
                )))
            }
            _ => None,
        }
    }
}

#[cfg(not(target_os = "linux"))]
use portable::Batch;

#[cfg(not(target_os = "linux"))]
mod portable {
    //! One packet per system call where `recvmmsg` is missing.

    use std::io;
    use std::net::{SocketAddr, UdpSocket};

    use super::MAX_QUERY;

    pub(super) struct Batch {
        query: Vec<u8>,
        len: usize,
        src: Option<SocketAddr>,
        response: Vec<u8>,
    }

    impl Batch {
        pub(super) fn new() -> Self {
            Self {
                query: vec![0; MAX_QUERY],
                len: 0,
                src: None,
                response: Vec::with_capacity(1232),
            }
        }

        pub(super) fn receive(&mut self, socket: &UdpSocket) -> io::Result<usize> {
            let (len, src) = socket.recv_from(&mut self.query)?;
            self.len = len;
            self.src = Some(src);
            Ok(1)
        }

        pub(super) fn slot(&mut self, _: usize) -> Option<(&[u8], SocketAddr, &mut Vec<u8>)> {
            Some((&self.query[..self.len], self.src?, &mut self.response))
        }

        pub(super) fn send(&mut self, socket: &UdpSocket, _: usize) -> io::Result<()> {
            let result = match self.src {
                Some(src) if !self.response.is_empty() => {
                    socket.send_to(&self.response, src).map(drop)
                }
                _ => Ok(()),
            };
            self.response.clear();
            result
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use arc_swap::ArcSwap;

    use super::*;
    use crate::config::{Config, Disk};

    const SECRET: [u8; 16] = [0x5a; 16];

    /// A query for `www.example.net A` with ID `id`, EDNS, and `cookie` (option data) if any.
    fn query(id: u16, cookie: Option<&[u8]>) -> Vec<u8> {
        let mut m = id.to_be_bytes().to_vec();
        m.extend([1, 0, 0, 1, 0, 0, 0, 0, 0, 1]);
        for label in ["www", "example", "net"] {
            m.push(label.len() as u8);
            m.extend(label.as_bytes());
        }
        m.extend([0, 0, 1, 0, 1, 0, 0, 41, 4, 208, 0, 0, 0, 0]);
        let options = cookie.map_or_else(Vec::new, |c| {
            let mut o = vec![0, 10, 0, c.len() as u8];
            o.extend(c);
            o
        });
        m.extend((options.len() as u16).to_be_bytes());
        m.extend(options);
        m
    }

    #[test]
    fn rate_limited_responses_drop_or_slip_and_valid_cookies_pass() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../deploy/examples/single-node/sparrow.toml");
        let text = std::fs::read_to_string(&path).unwrap().replacen(
            "[zone]\n",
            "cookie_secret = \"5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a\"\n\
             rrl = { responses_per_second = 1, slip = 2 }\n[zone]\n",
            1,
        );
        let config = Config::from_str(&text, &path, &Disk).unwrap().config;
        let rrl = config.node.rrl.map(|r| Arc::new(Rrl::new(r)));
        let snap = Arc::new(ArcSwap::from_pointee(Snapshot::from_config(config)));
        let metrics = crate::metrics::Metrics::new(&snap);
        let handler = DnsHandler::new(snap).with_metrics(metrics.dns());
        let server = bind_reuseport("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = server.local_addr().unwrap();
        let workers = spawn(&handler, vec![server], 1, rrl).unwrap();

        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let client_cookie = [9u8; 8];
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as u32;
        let ip = client.local_addr().unwrap().ip();
        let server_cookie = crate::dns::cookie::server_cookie(&SECRET, &client_cookie, ip, now);
        let valid = [&client_cookie[..], &server_cookie].concat();
        // Five queries from one /24 at once (a rate of one a second), then two with a valid
        // server cookie, which no limit holds back.
        for id in 1..=5 {
            client.send_to(&query(id, None), addr).unwrap();
        }
        // Two more of type ANY, which the hickory path answers: limited alike.
        for id in 8..=9 {
            let mut any = query(id, None);
            any[30] = 255;
            client.send_to(&any, addr).unwrap();
        }
        for id in 6..=7 {
            client.send_to(&query(id, Some(&valid)), addr).unwrap();
        }
        let mut got = Vec::new();
        let mut buf = [0u8; 1500];
        while got.last().is_none_or(|&(id, _, _)| id != 7) {
            let (n, _) = client.recv_from(&mut buf).unwrap();
            let id = u16::from_be_bytes([buf[0], buf[1]]);
            let tc = buf[2] & 0x02 != 0;
            let answers = u16::from_be_bytes([buf[6], buf[7]]);
            got.push((id, tc, answers));
            assert!(n > 12);
        }
        workers.stop();
        // 1 answered; 2 dropped, 3 slips (TC, no records), 4 dropped, 5 slips, 8 dropped,
        // 9 slips; 6 and 7 pass.
        assert_eq!(
            got,
            [
                (1, false, 1),
                (3, true, 0),
                (5, true, 0),
                (9, true, 0),
                (6, false, 1),
                (7, false, 1)
            ]
        );
        let text = metrics.render();
        for (action, n) in [("dropped", 3), ("slipped", 3)] {
            let line = format!("sparrow_dns_rate_limited_total{{action=\"{action}\"}} {n}");
            assert!(text.contains(&line), "{line} in\n{text}");
        }
    }
}
