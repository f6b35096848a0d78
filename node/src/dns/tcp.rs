//! [E] DNS over TCP (RFC 7766): queries answered in order on each connection, by the fast
//! path (`dns::fast`) when it takes them and else by the hickory path
//! ([`DnsHandler::respond`]); pipelined queries are read and their responses written in
//! batches. Connections are closed after an idle timeout, and at
//! most `limit` of them open: when a new one would pass the limit, the connection idle the
//! longest is closed first (and logged); if every connection is busy, the new one is.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_server::net::xfer::Protocol;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::handler::DnsHandler;
use super::{DnsTransport, fast, udp, xfr};

/// Shortest time between two log lines about closed connections (the rest are counted).
const LOG_EVERY: Duration = Duration::from_secs(10);

/// The open connections.
#[derive(Default)]
struct Table {
    next_id: u64,
    open: HashMap<u64, Conn>,
    /// Connections closed for the limit since the last log line, and when that was.
    evicted: u64,
    refused: u64,
    logged: Option<Instant>,
}

struct Conn {
    peer: SocketAddr,
    /// When the connection last finished a response (or opened).
    idle_since: Instant,
    /// Whether a query is being answered.
    busy: bool,
    close: CancellationToken,
}

/// How a new connection was let in.
enum Admit {
    Yes(u64, CancellationToken),
    /// Every connection is busy.
    Full,
}

impl Table {
    fn admit(&mut self, peer: SocketAddr, limit: usize, now: Instant) -> Admit {
        if self.open.len() >= limit {
            let oldest = self
                .open
                .iter()
                .filter(|(_, c)| !c.busy)
                .min_by_key(|(id, c)| (c.idle_since, **id))
                .map(|(id, _)| *id);
            let Some(id) = oldest else {
                self.refused += 1;
                self.log(now, limit);
                return Admit::Full;
            };
            if let Some(c) = self.open.remove(&id) {
                debug!(peer = %c.peer, idle_ms = now.duration_since(c.idle_since).as_millis(), "closing the oldest idle TCP connection");
                c.close.cancel();
            }
            self.evicted += 1;
            self.log(now, limit);
        }
        let id = self.next_id;
        self.next_id += 1;
        let close = CancellationToken::new();
        self.open.insert(
            id,
            Conn {
                peer,
                idle_since: now,
                busy: false,
                close: close.clone(),
            },
        );
        Admit::Yes(id, close)
    }

    fn log(&mut self, now: Instant, limit: usize) {
        if self
            .logged
            .is_some_and(|t| now.duration_since(t) < LOG_EVERY)
        {
            return;
        }
        warn!(
            limit,
            closed_idle = self.evicted,
            refused_all_busy = self.refused,
            "DNS TCP connection limit reached: the oldest idle connections were closed"
        );
        self.evicted = 0;
        self.refused = 0;
        self.logged = Some(now);
    }

    fn set_busy(&mut self, id: u64, busy: bool, now: Instant) {
        if let Some(c) = self.open.get_mut(&id) {
            c.busy = busy;
            if !busy {
                c.idle_since = now;
            }
        }
    }
}

/// Serves DNS over TCP on `listener` until `shutdown`; connections idle for
/// `idle_timeout` are closed, and at most `limit` are open at once.
pub async fn serve(
    handler: DnsHandler,
    listener: TcpListener,
    idle_timeout: Duration,
    limit: usize,
    shutdown: CancellationToken,
) {
    let table = Arc::new(Mutex::new(Table::default()));
    let mut conns = JoinSet::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    debug!(error = %e, "cannot accept a DNS TCP connection");
                    // Out of descriptors, most likely: let some close.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        // INVARIANT: the lock is held for table updates only, never across an await.
        let admit = table
            .lock()
            .expect("tcp table")
            .admit(peer, limit, Instant::now());
        let Admit::Yes(id, close) = admit else {
            continue;
        };
        let (handler, table, shutdown) = (handler.clone(), table.clone(), shutdown.clone());
        conns.spawn(async move {
            tokio::select! {
                () = connection(&handler, stream, peer, idle_timeout, &table, id) => {}
                () = close.cancelled() => {}
                () = shutdown.cancelled() => {}
            }
            table.lock().expect("tcp table").open.remove(&id);
        });
        while conns.try_join_next().is_some() {}
    }
    conns.shutdown().await;
}

/// Most response bytes gathered before they are written: the answers to pipelined queries
/// go out together, and a flood of queries for large answers never holds more than this.
const WRITE_BATCH: usize = 64 * 1024;
/// Bytes asked of the socket per read when no longer message is waiting.
const READ_CHUNK: usize = 4096;

/// Answers the queries of one connection, in order, until the peer closes it, it stays
/// idle for `idle_timeout`, or it sends something that is not a DNS message. Every query
/// already read is answered before the next read, and their responses are written
/// together: a client that pipelines queries costs a read and a write per batch, not per
/// query. A message must arrive whole within `idle_timeout` of its first byte, responses
/// must be taken within it too, and at most one message (64 KiB) is buffered.
async fn connection(
    handler: &DnsHandler,
    mut stream: TcpStream,
    peer: SocketAddr,
    idle_timeout: Duration,
    table: &Mutex<Table>,
    id: u64,
) {
    let _ = stream.set_nodelay(true);
    let mut input: Vec<u8> = Vec::with_capacity(READ_CHUNK);
    let mut out: Vec<u8> = Vec::with_capacity(READ_CHUNK);
    let mut fast = fast::Worker::default();
    let mut deadline = tokio::time::Instant::now() + idle_timeout;
    loop {
        let (complete, wanted) = complete_messages(&input);
        if complete > 0 {
            table
                .lock()
                .expect("tcp table")
                .set_busy(id, true, Instant::now());
            let mut at = 0;
            while at < complete {
                let len = usize::from(u16::from_be_bytes([input[at], input[at + 1]]));
                let message = &input[at + 2..at + 2 + len];
                at += 2 + len;
                if xfr::transfer_type(message).is_some() {
                    // A transfer's messages go out as they are framed (it can be long).
                    for bytes in transfer(handler, message, peer) {
                        if !frame(&mut out, &bytes)
                            || !flush(&mut stream, &mut out, WRITE_BATCH, idle_timeout).await
                        {
                            return;
                        }
                    }
                } else if !answer(handler, &mut fast, message, peer, &mut out)
                    || !flush(&mut stream, &mut out, WRITE_BATCH, idle_timeout).await
                {
                    return;
                }
            }
            if !flush(&mut stream, &mut out, 1, idle_timeout).await {
                return;
            }
            input.drain(..complete);
            table
                .lock()
                .expect("tcp table")
                .set_busy(id, false, Instant::now());
            // Idle from now on, or the next message started (at most) now.
            deadline = tokio::time::Instant::now() + idle_timeout;
        }
        input.reserve(wanted.max(READ_CHUNK));
        match tokio::time::timeout_at(deadline, stream.read_buf(&mut input)).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => return,
        }
    }
}

/// Writes `out` within `timeout` and empties it, once it holds `at_least` bytes; `false`
/// if the write fails or times out. A client that stops reading its responses is thus
/// disconnected instead of holding its connection (and a slot of the limit) busy.
async fn flush(
    stream: &mut TcpStream,
    out: &mut Vec<u8>,
    at_least: usize,
    timeout: Duration,
) -> bool {
    if out.is_empty() || out.len() < at_least {
        return true;
    }
    // Most writes fit the socket's buffer at once: no timer for those.
    let written = match stream.try_write(out) {
        Ok(n) => n,
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => 0,
        Err(_) => return false,
    };
    let sent = written == out.len()
        || matches!(
            tokio::time::timeout(timeout, stream.write_all(&out[written..])).await,
            Ok(Ok(()))
        );
    out.clear();
    sent
}

/// Of the bytes read so far, how many make whole length-prefixed messages, and how many
/// more the next message needs (at least 2 when not even its length has arrived).
fn complete_messages(input: &[u8]) -> (usize, usize) {
    let mut at = 0;
    loop {
        let rest = &input[at..];
        if rest.len() < 2 {
            return (at, 2 - rest.len());
        }
        let need = 2 + usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        if rest.len() < need {
            return (at, need - rest.len());
        }
        at += need;
    }
}

/// Appends to `out` the length-prefixed response to query `message` from `peer`: the fast
/// path's when it takes the query, else the hickory path's. `false`: a response too large
/// for TCP, so the connection closes.
fn answer(
    handler: &DnsHandler,
    fast: &mut fast::Worker,
    message: &[u8],
    peer: SocketAddr,
    out: &mut Vec<u8>,
) -> bool {
    let snap = handler.snapshot().load();
    let cookies = handler.cookie_context(&snap);
    if let Some(a) = fast.respond_tcp(&snap, message, peer.ip(), cookies) {
        if let Some(m) = handler.metrics() {
            udp::count(m.as_ref(), DnsTransport::Tcp, &a, &snap);
        }
        debug!(
            %peer,
            name = %a.qname,
            qtype = %a.qtype,
            ecs = a.ecs,
            rcode = %a.rcode,
            precomputed = a.precomputed,
            "TCP query"
        );
        return frame(out, fast.response());
    }
    match handler.respond(message, peer, Protocol::Tcp) {
        Some(bytes) => frame(out, &bytes),
        None => true,
    }
}

/// Appends `bytes` to `out` with its 2-byte length; `false` if it is too long for that.
fn frame(out: &mut Vec<u8>, bytes: &[u8]) -> bool {
    let Ok(len) = u16::try_from(bytes.len()) else {
        return false;
    };
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
    true
}

/// The messages answering a zone transfer query (`dns::xfr`), logged.
fn transfer(handler: &DnsHandler, message: &[u8], peer: SocketAddr) -> Vec<Vec<u8>> {
    let config = handler.snapshot().load().config.clone();
    match xfr::respond(
        message,
        peer.ip(),
        true,
        &config,
        crate::clock::unix_ms() / 1000,
    ) {
        Some(xfr::Outcome::Transfer(messages)) => {
            info!(%peer, messages = messages.len(), "zone transfer");
            messages
        }
        Some(xfr::Outcome::Refused(code, m)) => {
            info!(%peer, rcode = %code, "zone transfer refused");
            vec![m]
        }
        None => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_idle_connection_makes_room_and_busy_ones_are_kept() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let peer: SocketAddr = "192.0.2.1:1000".parse().unwrap();
        let mut table = Table::default();
        let mut tokens = Vec::new();
        for i in 0..3 {
            let Admit::Yes(id, close) = table.admit(peer, 3, at(i)) else {
                panic!("room for three");
            };
            tokens.push((id, close));
        }
        // The first is busy: the second, idle the longest, goes.
        table.set_busy(tokens[0].0, true, at(10));
        assert!(matches!(table.admit(peer, 3, at(20)), Admit::Yes(..)));
        assert!(!tokens[0].1.is_cancelled());
        assert!(tokens[1].1.is_cancelled());
        assert!(!tokens[2].1.is_cancelled());
        assert_eq!(table.open.len(), 3);
        // All busy: the newcomer is refused and nobody is closed.
        let ids: Vec<u64> = table.open.keys().copied().collect();
        for id in &ids {
            table.set_busy(*id, true, at(30));
        }
        assert!(matches!(table.admit(peer, 3, at(40)), Admit::Full));
        assert_eq!(table.open.len(), 3);
        assert_eq!(table.refused, 1, "counted until the next log line");
    }

    /// A query for `www.example.net A` over TCP (length-prefixed).
    fn query(id: u8) -> Vec<u8> {
        let mut m = vec![0, 33, 0, id, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in ["www", "example", "net"] {
            m.push(label.len() as u8);
            m.extend(label.as_bytes());
        }
        m.extend([0, 0, 1, 0, 1]);
        m
    }

    async fn ask(stream: &mut TcpStream, id: u8) -> std::io::Result<Vec<u8>> {
        stream.write_all(&query(id)).await?;
        let mut len = [0u8; 2];
        stream.read_exact(&mut len).await?;
        let mut response = vec![0; usize::from(u16::from_be_bytes(len))];
        stream.read_exact(&mut response).await?;
        Ok(response)
    }

    /// The single-node example served over TCP on a port of 127.0.0.1.
    async fn server(
        idle: Duration,
        limit: usize,
    ) -> (SocketAddr, CancellationToken, tokio::task::JoinHandle<()>) {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../deploy/examples/single-node/sparrow.toml");
        let config = crate::config::load(&path).unwrap().config;
        let snap = crate::snapshot::Snapshot::from_config(config);
        let handler = DnsHandler::new(Arc::new(arc_swap::ArcSwap::from_pointee(snap)));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(serve(handler, listener, idle, limit, shutdown.clone()));
        (addr, shutdown, server)
    }

    async fn read_response(stream: &mut TcpStream) -> Vec<u8> {
        let mut len = [0u8; 2];
        stream.read_exact(&mut len).await.unwrap();
        let mut response = vec![0; usize::from(u16::from_be_bytes(len))];
        stream.read_exact(&mut response).await.unwrap();
        response
    }

    #[tokio::test]
    async fn pipelined_queries_are_answered_in_order_and_a_split_one_when_it_is_whole() {
        let (addr, shutdown, server) = server(Duration::from_secs(30), 10).await;
        let mut stream = TcpStream::connect(addr).await.unwrap();
        // Three whole queries and the first 5 bytes of a fourth in one write.
        let mut bytes: Vec<u8> = (1..=3).flat_map(query).collect();
        let fourth = query(4);
        bytes.extend(&fourth[..5]);
        stream.write_all(&bytes).await.unwrap();
        for id in 1..=3 {
            let r = read_response(&mut stream).await;
            assert_eq!(r[1], id, "responses in the order of the queries");
            assert_eq!(r[3] & 0x0f, 0, "NOERROR");
            assert_eq!(u16::from_be_bytes([r[6], r[7]]), 1, "one answer");
        }
        // The rest of the fourth, in two writes; then a fifth.
        stream.write_all(&fourth[5..9]).await.unwrap();
        stream.write_all(&fourth[9..]).await.unwrap();
        assert_eq!(read_response(&mut stream).await[1], 4);
        stream.write_all(&query(5)).await.unwrap();
        assert_eq!(read_response(&mut stream).await[1], 5);
        shutdown.cancel();
        server.await.unwrap();
    }

    #[tokio::test]
    async fn a_message_trickled_slower_than_the_idle_timeout_is_cut_off() {
        let (addr, shutdown, server) = server(Duration::from_millis(300), 10).await;
        let stream = TcpStream::connect(addr).await.unwrap();
        let (mut rx, mut tx) = stream.into_split();
        // A 100-byte message announced, then a byte every 50 ms: every read comes well
        // within the timeout, but the message is never whole within it.
        let trickle = tokio::spawn(async move {
            let _ = tx.write_all(&[0, 100]).await;
            for _ in 0..200 {
                if tx.write_all(&[0]).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(8), rx.read_to_end(&mut rest)).await;
        assert!(
            matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
            "closed before the message could be whole: {closed:?}"
        );
        trickle.abort();
        shutdown.cancel();
        server.await.unwrap();
    }

    #[tokio::test]
    async fn a_client_that_never_reads_its_responses_is_disconnected() {
        let (addr, shutdown, server) = server(Duration::from_millis(300), 10).await;
        // A small receive buffer, so that unread responses fill it soon.
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let stream = socket.connect(addr).await.unwrap();
        let (_rx, mut tx) = stream.into_split();
        let queries: Vec<u8> = (0..1000).flat_map(|i| query((i % 250) as u8)).collect();
        // Queries until the server hangs up: it stops reading while its responses cannot
        // be written, and must give up on the connection within the timeout.
        let sent = tokio::time::timeout(Duration::from_secs(20), async {
            let mut batches = 0u64;
            while tx.write_all(&queries).await.is_ok() {
                batches += 1;
            }
            batches
        })
        .await;
        assert!(
            sent.is_ok(),
            "the connection stayed open with its responses unread"
        );
        shutdown.cancel();
        server.await.unwrap();
    }

    #[tokio::test]
    async fn past_the_limit_the_oldest_idle_connection_is_closed() {
        let (addr, shutdown, server) = server(Duration::from_secs(30), 2).await;
        let mut first = TcpStream::connect(addr).await.unwrap();
        assert_eq!(ask(&mut first, 1).await.unwrap()[1], 1);
        let mut second = TcpStream::connect(addr).await.unwrap();
        assert_eq!(ask(&mut second, 2).await.unwrap()[1], 2);
        let mut third = TcpStream::connect(addr).await.unwrap();
        assert_eq!(ask(&mut third, 3).await.unwrap()[1], 3);
        // The first, idle the longest, was closed; the second still answers.
        let mut rest = Vec::new();
        assert_eq!(first.read_to_end(&mut rest).await.unwrap(), 0);
        assert_eq!(ask(&mut second, 4).await.unwrap()[1], 4);
        shutdown.cancel();
        server.await.unwrap();
    }
}
