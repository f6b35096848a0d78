//! \[E\] The runner as an operator: requests to a node's operator API over its Unix socket
//! (newline-delimited JSON, as `sparrow status` and `sparrow drain` send them). Both
//! backends reach their nodes this way, the in-process one and real processes in network
//! namespaces alike (a Unix socket is a file, not bound to a network namespace).

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use sparrow_proto::api::{Request, Response};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::UnixStream;

/// Sends `request` to the API socket at `path` and reads the response, within `timeout`.
pub async fn call(path: &Path, request: &Request, timeout: Duration) -> anyhow::Result<Response> {
    tokio::time::timeout(timeout, exchange(path, request))
        .await
        .with_context(|| format!("{}: no response within {timeout:?}", path.display()))?
}

async fn exchange(path: &Path, request: &Request) -> anyhow::Result<Response> {
    let stream = UnixStream::connect(path)
        .await
        .with_context(|| format!("cannot connect to {}", path.display()))?;
    let (read, mut write) = stream.into_split();
    let mut line = serde_json::to_string(request)?;
    line.push('\n');
    write.write_all(line.as_bytes()).await?;
    let mut reply = String::new();
    BufReader::new(read).read_line(&mut reply).await?;
    serde_json::from_str(&reply).with_context(|| format!("bad API response {reply:?}"))
}
