//! \[E\] The client side of a run: a small DNS client over UDP (hickory-proto encodes and
//! decodes the messages) and a stub resolver that asks its node first and fails over to its
//! second node on a timeout, as resolvers do with the servers of a zone.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr as _;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, Query, ResponseCode};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsOption};
use hickory_proto::rr::{Name, RData, RecordType};
use ipnet::IpNet;
use tokio::net::UdpSocket;

/// How long a resolver waits for one server before it tries the next (BIND and Unbound
/// start near 800 ms to 1 s for a server without a known round-trip time).
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(1000);

/// What one attempt at one server gave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// A response: its code, the addresses or CNAME of its answer section and their TTL.
    Answer {
        /// Response code.
        rcode: ResponseCode,
        /// A/AAAA addresses answered.
        addresses: Vec<IpAddr>,
        /// The target of the answer section's first CNAME (absolute, as sent).
        cname: Option<String>,
        /// TTL of the first answer record (0 without one).
        ttl: u32,
    },
    /// No response within the timeout.
    Timeout,
    /// The server's host said nothing listens there (ICMP port unreachable): the node is
    /// down. Resolvers move on at once, as on a timeout.
    Unreachable,
    /// The query could not be sent or the response not read (a local error).
    Error(String),
}

impl Reply {
    /// `NOERROR`, `SERVFAIL`, ... , `timeout` or `error`.
    pub fn outcome(&self) -> String {
        match self {
            Self::Answer { rcode, .. } => match *rcode {
                ResponseCode::NoError => "NOERROR".to_owned(),
                ResponseCode::ServFail => "SERVFAIL".to_owned(),
                ResponseCode::NXDomain => "NXDOMAIN".to_owned(),
                ResponseCode::Refused => "REFUSED".to_owned(),
                ResponseCode::FormErr => "FORMERR".to_owned(),
                other => format!("RCODE{}", u16::from(other)),
            },
            Self::Timeout => "timeout".to_owned(),
            Self::Unreachable => "unreachable".to_owned(),
            Self::Error(_) => "error".to_owned(),
        }
    }
}

/// One attempt: which node was asked, when (from the start of the run) and what came back.
#[derive(Clone, Debug)]
pub struct Attempt {
    /// Node index.
    pub node: usize,
    /// When it was sent.
    pub sent: Duration,
    /// What came back.
    pub reply: Reply,
}

/// Asks `server` for `name`/`rtype` over UDP, with `subnet` as EDNS Client Subnet if given,
/// from a fresh socket bound to `bind` (port 0), waiting at most `timeout`.
pub async fn ask(
    bind: SocketAddr,
    server: SocketAddr,
    name: &str,
    rtype: RecordType,
    subnet: Option<IpNet>,
    id: u16,
    timeout: Duration,
) -> Reply {
    match tokio::time::timeout(timeout, exchange(bind, server, name, rtype, subnet, id)).await {
        Ok(Ok(r)) => r,
        Ok(Err(e))
            if e.downcast_ref::<std::io::Error>().map(std::io::Error::kind)
                == Some(std::io::ErrorKind::ConnectionRefused) =>
        {
            Reply::Unreachable
        }
        Ok(Err(e)) => Reply::Error(format!("{e:#}")),
        Err(_) => Reply::Timeout,
    }
}

async fn exchange(
    bind: SocketAddr,
    server: SocketAddr,
    name: &str,
    rtype: RecordType,
    subnet: Option<IpNet>,
    id: u16,
) -> anyhow::Result<Reply> {
    let mut message = Message::query();
    message.metadata.id = id;
    message.metadata.recursion_desired = false;
    message
        .queries
        .push(Query::query(Name::from_str(name)?, rtype));
    let mut edns = Edns::new();
    edns.set_max_payload(1232);
    if let Some(net) = subnet {
        edns.options_mut()
            .insert(EdnsOption::Subnet(ClientSubnet::from(net)));
    }
    message.edns = Some(edns);
    let bytes = message.to_vec()?;
    let socket = UdpSocket::bind(bind).await?;
    socket.connect(server).await?;
    socket.send(&bytes).await?;
    let mut buf = vec![0u8; 4096];
    loop {
        let len = socket.recv(&mut buf).await?;
        // A stray datagram (wrong id) is ignored, as a resolver ignores spoofed answers.
        let Ok(response) = Message::from_vec(&buf[..len]) else {
            continue;
        };
        if response.metadata.id != id {
            continue;
        }
        let addresses: Vec<IpAddr> = response
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::A(a) => Some(IpAddr::V4(a.0)),
                RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                _ => None,
            })
            .collect();
        let cname = response.answers.iter().find_map(|r| match &r.data {
            RData::CNAME(c) => Some(c.0.to_ascii()),
            _ => None,
        });
        return Ok(Reply::Answer {
            rcode: response.metadata.response_code,
            addresses,
            cname,
            ttl: response.answers.first().map_or(0, |r| r.ttl),
        });
    }
}
