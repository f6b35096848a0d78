//! [E] Route views over QUIC (ALPN `sparrow-views/1`, messages in `proto::views`): each node
//! serves its own POP's view, encoded once per change, and pulls peers' views when gossip
//! announces a digest it does not hold ([`super::views::ViewCatalog`] decides when).
//!
//! A requester that sends something other than a view request is disconnected and logged. A
//! transfer that fails any check of [`crate::routes::transfer::Incoming`] (order, counts,
//! digest, and bytes within what its header announced) is cut off at once, dropped whole,
//! logged, and retried later with backoff; the view in use stays as it was.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use arc_swap::ArcSwapOption;
use sparrow_proto::frame;
use sparrow_proto::views::{MAGIC, ViewFrame, ViewHeader, ViewRequest};
use tracing::{debug, warn};

use super::transport::{BAD_MESSAGE, connect_to};
use crate::pki::Identity;
use crate::routes::HopRanges;
use crate::routes::transfer::{EncodedView, Incoming};
use crate::state::builder::Builder;

/// Largest view request (a POP name and a digest).
const MAX_REQUEST: usize = 1024;
/// Longest a requester may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest a whole pull may take (a full table is ~10 MB).
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(120);

/// Counters of view transfers.
#[derive(Debug, Default)]
pub struct ViewStats {
    /// Views served to peers.
    pub served: AtomicU64,
    /// Bytes of views served.
    pub bytes_served: AtomicU64,
    /// Views pulled from peers and accepted.
    pub pulled: AtomicU64,
    /// Pulls that failed or were refused.
    pub pull_failures: AtomicU64,
    /// Bytes read by pulls, accepted or not.
    pub bytes_pulled: AtomicU64,
}

/// Serves this node's own POP's view.
#[derive(Debug)]
pub struct ViewServer {
    pop: String,
    current: ArcSwapOption<EncodedView>,
    /// Counters.
    pub stats: ViewStats,
}

impl ViewServer {
    /// A server for POP `pop`'s view, with no view yet.
    pub fn new(pop: &str) -> Self {
        Self {
            pop: pop.to_owned(),
            current: ArcSwapOption::empty(),
            stats: ViewStats::default(),
        }
    }

    /// Serves `view` from now on (`None`: refuses requests).
    pub fn set(&self, view: Option<Arc<EncodedView>>) {
        self.current.store(view);
    }

    /// Answers the view requests of node `id` on `conn`, one per bidirectional stream.
    pub async fn serve(&self, conn: quinn::Connection, id: Identity) {
        let from = conn.remote_address();
        while let Ok((mut send, mut recv)) = conn.accept_bi().await {
            let request = tokio::time::timeout(REQUEST_TIMEOUT, read_request(&mut recv)).await;
            let request = match request {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => {
                    warn!(peer = %from, identity = %id, error = %e, "bad view request; peer disconnected");
                    conn.close(BAD_MESSAGE.into(), b"bad request");
                    return;
                }
                Err(_) => {
                    warn!(peer = %from, identity = %id, "view request timed out; peer disconnected");
                    conn.close(BAD_MESSAGE.into(), b"timeout");
                    return;
                }
            };
            if let Err(e) = self.answer(&mut send, &request).await {
                debug!(peer = %from, error = %e, "view transfer cut short");
            }
        }
    }

    async fn answer(
        &self,
        send: &mut quinn::SendStream,
        request: &ViewRequest,
    ) -> anyhow::Result<()> {
        send.write_all(&frame::preamble(MAGIC)).await?;
        let view = self.current.load_full();
        let view = match view {
            Some(v) if request.pop == self.pop => v,
            _ => {
                let reason = if request.pop == self.pop {
                    format!("this node has no view of {} yet", self.pop)
                } else {
                    format!(
                        "this node serves {}'s view, not {}'s",
                        self.pop, request.pop
                    )
                };
                send.write_all(&frame::encode(&ViewFrame::Refused { reason }))
                    .await?;
                send.finish()?;
                return Ok(());
            }
        };
        send.write_all(&frame::encode(&ViewFrame::Header(view.header)))
            .await?;
        for f in &view.frames {
            send.write_all(f).await?;
        }
        send.finish()?;
        self.stats.served.fetch_add(1, Ordering::Relaxed);
        self.stats
            .bytes_served
            .fetch_add(view.body_bytes() as u64, Ordering::Relaxed);
        Ok(())
    }
}

async fn read_request(recv: &mut quinn::RecvStream) -> anyhow::Result<ViewRequest> {
    read_preamble(recv).await?;
    let body = read_frame(recv, MAX_REQUEST)
        .await?
        .context("stream ended before the request")?;
    Ok(frame::decode(&body)?)
}

async fn read_preamble(recv: &mut quinn::RecvStream) -> anyhow::Result<()> {
    let mut preamble = [0u8; frame::PREAMBLE_BYTES];
    recv.read_exact(&mut preamble).await?;
    Ok(frame::check_preamble(MAGIC, preamble)?)
}

/// Reads one frame body; `None` at a clean end of stream.
async fn read_frame(recv: &mut quinn::RecvStream, max: usize) -> anyhow::Result<Option<Vec<u8>>> {
    let mut len = [0u8; frame::LEN_BYTES];
    match recv.read_exact(&mut len).await {
        Ok(()) => {}
        Err(quinn::ReadExactError::FinishedEarly(0)) => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let mut body = vec![0; frame::body_len(len, max)?];
    recv.read_exact(&mut body).await?;
    Ok(Some(body))
}

/// A failed pull that had received more than this gives its freed memory back to the
/// system at once (see [`crate::memory::release_free`]).
const RELEASE_AFTER: usize = 1 << 20;

/// A view pulled from its owner: what it says, the view, and the bytes as received (the
/// form [`crate::routes::transfer::decode_stream`] reads back from a cache file).
#[derive(Debug)]
pub struct Pulled {
    /// Version, digest and size.
    pub header: ViewHeader,
    /// The view.
    pub view: HopRanges,
    /// The transfer as received.
    pub bytes: Vec<u8>,
}

/// Pulls POP `pop`'s view from the node at `addr` (which announced `digest`); that node
/// must be certified as `pop`'s: a view is only ever taken from its own POP's node.
///
/// The transfer streams into [`Incoming`], which checks each frame as it comes and holds
/// no more than the header's announcement allows ([`sparrow_proto::views::max_body_bytes`],
/// never more than [`sparrow_proto::views::MAX_TRANSFER`]): a peer that sends more, or
/// anything that fails a check, is cut off at once (its connection closed with
/// [`BAD_MESSAGE`]) and the pull fails. The view is built on the node's `builder`. Bytes
/// received are counted in `stats`.
pub async fn fetch(
    endpoint: &quinn::Endpoint,
    client: &quinn::ClientConfig,
    builder: &Builder,
    stats: &ViewStats,
    addr: SocketAddr,
    pop: &str,
    digest: u64,
) -> anyhow::Result<Pulled> {
    let conn = connect_to(endpoint, client, addr, pop).await?;
    let mut received = 0;
    let result = tokio::time::timeout(
        FETCH_TIMEOUT,
        pull(&conn, pop, digest, stats, &mut received),
    )
    .await
    .unwrap_or_else(|_| Err(anyhow::anyhow!("view transfer timed out")));
    let incoming = match result {
        Ok(incoming) => {
            conn.close(0u32.into(), b"done");
            incoming
        }
        Err(e) => {
            // Whatever went wrong, the peer hears no more from this pull.
            conn.close(BAD_MESSAGE.into(), b"bad view transfer");
            if received > RELEASE_AFTER {
                // What the failed pull held is freed; hand it back rather than keep it.
                let _ = tokio::task::spawn_blocking(crate::memory::release_free).await;
            }
            return Err(e.context(format!("view transfer from {addr} cut off")));
        }
    };
    // Building the lookup table of a full view takes a fraction of a second of CPU: keep it
    // off the async workers.
    builder
        .run(move || {
            let (header, view, bytes) =
                incoming.finish().context("transfer ended without a view")?;
            Ok(Pulled {
                header,
                view,
                bytes,
            })
        })
        .await?
}

/// Runs one pull on `conn`; `received` counts the bytes read, whatever the outcome.
async fn pull(
    conn: &quinn::Connection,
    pop: &str,
    digest: u64,
    stats: &ViewStats,
    received: &mut usize,
) -> anyhow::Result<Incoming> {
    let (mut send, mut recv) = conn.open_bi().await?;
    send.write_all(&frame::preamble(MAGIC)).await?;
    send.write_all(&frame::encode(&ViewRequest {
        pop: pop.to_owned(),
        digest,
    }))
    .await?;
    send.finish()?;
    let mut count = |n: usize| {
        *received += n;
        stats.bytes_pulled.fetch_add(n as u64, Ordering::Relaxed);
    };
    read_preamble(&mut recv).await?;
    let first = read_frame(&mut recv, Incoming::MAX_FIRST_FRAME)
        .await?
        .context("stream ended before the header")?;
    count(frame::PREAMBLE_BYTES + frame::LEN_BYTES + first.len());
    let mut incoming = Incoming::open(&first)?;
    loop {
        let mut len = [0u8; frame::LEN_BYTES];
        recv.read_exact(&mut len)
            .await
            .context("transfer cut short")?;
        count(len.len());
        let body = incoming.frame_body(len)?;
        recv.read_exact(body).await.context("transfer cut short")?;
        count(body.len());
        if incoming.push()? {
            break;
        }
    }
    // Nothing may follow `End`.
    let mut extra = [0u8; 1];
    if recv.read(&mut extra).await?.is_some() {
        anyhow::bail!("data after the end of the transfer");
    }
    Ok(incoming)
}
