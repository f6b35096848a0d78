//! [E] The hickory path: hickory-server's `RequestHandler` (decode what the library leaves
//! to us, ECS; read the current snapshot; ask `answer::plan`) and [`DnsHandler::respond`],
//! which runs a message through hickory's parser, that handler and hickory's encoder as
//! hickory's server would, for what the UDP fast path leaves and for TCP.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use futures_util::FutureExt as _;
use hickory_proto::ProtoError;
use hickory_proto::op::MessageType;
use hickory_proto::op::{Edns, Header, HeaderCounts, LowerQuery, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::rdata::TXT;
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsCode, EdnsOption};
use hickory_proto::rr::{DNSClass, LowerName, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncodable, BinEncoder};
use hickory_server::net::NetError;
use hickory_server::net::runtime::{Time, TokioTime};
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::{MessageResponse, MessageResponseBuilder, Queries};
use tracing::{debug, warn};

use super::answer::{self, Client};
use super::cookie::{self, Cookie};
use super::{DnsTransport, QueryObserver};
use super::{ecs, wire};
use crate::snapshot::Snapshot;

/// Answers DNS queries from the current [`Snapshot`].
#[derive(Clone)]
pub struct DnsHandler {
    snapshot: Arc<ArcSwap<Snapshot>>,
    metrics: Option<Arc<dyn QueryObserver>>,
    /// The cookie secret when the config gives none, drawn at start (`None`: the system's
    /// random source failed, and cookies are not answered).
    random_secret: Option<[u8; 16]>,
    /// Seconds since the Unix epoch (cookie timestamps).
    clock: fn() -> u32,
}

/// Seconds since the Unix epoch, as a DNS cookie stamps them (mod 2^32).
fn unix_seconds() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        // INVARIANT: truncated on purpose; cookie stamps use serial arithmetic.
        .map_or(0, |d| d.as_secs() as u32)
}

impl DnsHandler {
    /// A handler reading whatever snapshot `snapshot` holds at the time of each query.
    pub fn new(snapshot: Arc<ArcSwap<Snapshot>>) -> Self {
        use ring::rand::SecureRandom as _;
        let mut secret = [0u8; 16];
        let random_secret = match ring::rand::SystemRandom::new().fill(&mut secret) {
            Ok(()) => Some(secret),
            Err(_) => {
                warn!("no random source: DNS cookies are answered only with a cookie_secret");
                None
            }
        };
        Self {
            snapshot,
            metrics: None,
            random_secret,
            clock: unix_seconds,
        }
    }

    /// The same handler with another clock (tests).
    pub fn with_clock(mut self, clock: fn() -> u32) -> Self {
        self.clock = clock;
        self
    }

    /// The cookie secret and the clock, for answering cookies from `snap`; `None`: cookies
    /// are not answered.
    pub fn cookie_context(&self, snap: &Snapshot) -> Option<cookie::Context> {
        let secret = snap.config.node.cookie_secret.or(self.random_secret)?;
        Some(cookie::Context {
            secret,
            clock: self.clock,
        })
    }

    /// The same handler, counting every query in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<dyn QueryObserver>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Where the snapshot answers come from.
    pub fn snapshot(&self) -> &Arc<ArcSwap<Snapshot>> {
        &self.snapshot
    }

    /// What counts the queries, if anything does.
    pub fn metrics(&self) -> Option<&Arc<dyn QueryObserver>> {
        self.metrics.as_ref()
    }

    /// The response to `msg` from `src` over `protocol` (UDP or TCP), as hickory's server
    /// gives it (FORMERR for a query that does not decode), except that nothing answers a
    /// response, decodable or not (hickory's server sends FORMERR to undecodable ones), encoded as the fast path encodes (`dns::wire`): the
    /// question's name seeded for compression, and an answer too large for UDP sent as
    /// TC with no records. `None`: no response.
    pub fn respond(&self, msg: &[u8], src: SocketAddr, protocol: Protocol) -> Option<Vec<u8>> {
        let mut decoder = BinDecoder::new(msg);
        let header = Header::read(&mut decoder).ok()?;
        if header.metadata.message_type == MessageType::Response {
            // Never answer responses, not even with FORMERR (reflection).
            return None;
        }
        if protocol == Protocol::Udp && super::xfr::transfer_type(msg).is_some() {
            // NOTIMP: zone transfers are served over TCP only (`dns::xfr`).
            let config = &self.snapshot.load().config;
            return super::xfr::respond(
                msg,
                src.ip(),
                false,
                config,
                crate::clock::unix_ms() / 1000,
            )?
            .into_messages()
            .pop();
        }
        let mut capture = Capture {
            protocol,
            question: Arc::from(&[][..]),
            qcount: 0,
            udp_limit: 512,
            out: Arc::new(Mutex::new(None)),
        };
        // Bytes after the last record make the message malformed (hickory's parser ignores
        // them; Knot answers FORMERR).
        let decoded = match wire::message_len(msg) {
            Some(len) if len != msg.len() => Err("bytes after the last record".to_owned()),
            _ => Request::from_bytes(msg.to_vec(), src, protocol).map_err(|e| e.to_string()),
        };
        match decoded {
            Ok(request) => {
                capture.question = Arc::from(request.queries.as_bytes());
                // INVARIANT: the count was read from a 16-bit field.
                capture.qcount = request.queries.len() as u16;
                capture.udp_limit =
                    udp_limit(&request, self.snapshot.load().config.node.max_udp_payload);
                // The handler never waits: its response goes into `capture` at once.
                self.handle_request::<_, TokioTime>(&request, capture.clone())
                    .now_or_never()?;
            }
            Err(e) => {
                debug!(%src, error = %e, "undecodable query");
                // The question echoed if it decodes (the rest did not), as Knot does.
                let queries = Queries::read(&mut decoder, usize::from(header.counts.queries))
                    .or_else(|_| Queries::read(&mut BinDecoder::new(&[]), 0))
                    .ok()?;
                let mut metadata = header.metadata;
                metadata.checking_disabled = false;
                let response = MessageResponseBuilder::new(&queries, None)
                    .error_msg(&metadata, ResponseCode::FormErr);
                capture
                    .clone()
                    .send_response(response)
                    .now_or_never()?
                    .ok()?;
            }
        }
        // INVARIANT: the lock is only held for a store or a take.
        capture.out.lock().expect("capture lock").take()
    }
}

/// A `ResponseHandler` that encodes the response into memory (see [`DnsHandler::respond`]).
#[derive(Clone)]
struct Capture {
    protocol: Protocol,
    /// The request's question section as sent, and its number of questions.
    question: Arc<[u8]>,
    qcount: u16,
    /// The largest UDP response ([`udp_limit`]).
    udp_limit: usize,
    out: Arc<Mutex<Option<Vec<u8>>>>,
}

#[async_trait::async_trait]
impl ResponseHandler for Capture {
    async fn send_response<'a>(
        &mut self,
        response: MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
        >,
    ) -> Result<ResponseInfo, NetError> {
        let limit = match self.protocol {
            Protocol::Udp => self.udp_limit,
            _ => usize::from(u16::MAX),
        };
        let (info, bytes) = encode(response, limit, &self.question, self.qcount);
        // INVARIANT: the lock is only held for a store or a take.
        *self.out.lock().expect("capture lock") = Some(bytes);
        Ok(info)
    }
}

/// Encodes `response` with hickory's encoder (as hickory's own response handle does, with
/// the compression seed and the truncation rule of [`DnsHandler::respond`]); SERVFAIL if
/// it cannot be encoded.
fn encode<'a>(
    response: MessageResponse<
        '_,
        'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
    >,
    limit: usize,
    question: &[u8],
    qcount: u16,
) -> (ResponseInfo, Vec<u8>) {
    let metadata = *response.metadata();
    let edns = response.edns().cloned();
    let mut bytes = Vec::with_capacity(512);
    let full = {
        let mut encoder = BinEncoder::new(&mut bytes);
        if qcount > 0 {
            seed_question(&mut encoder, question);
        }
        response.destructive_emit(&mut encoder)
    };
    let result = match full {
        Ok(info) if bytes.len() <= limit => Ok(info),
        Ok(_) => {
            bytes.clear();
            truncated(&mut bytes, metadata, question, qcount, edns)
        }
        Err(e) => Err(e),
    };
    match result {
        Ok(info) => (info, bytes),
        Err(e) => {
            warn!(error = %e, "cannot encode a response");
            let mut failed = Metadata::new(metadata.id, MessageType::Response, OpCode::Query);
            failed.response_code = ResponseCode::ServFail;
            let header = Header {
                metadata: failed,
                counts: HeaderCounts::default(),
            };
            bytes.clear();
            let _ = header.emit(&mut BinEncoder::new(&mut bytes));
            (ResponseInfo::from(header), bytes)
        }
    }
}

/// Seeds `encoder`'s compression table with the suffixes of the question's name, as
/// `dns::wire` does: hickory stores the question with its type and class, which no name
/// matches, so without this no answer would point at the question.
fn seed_question(encoder: &mut BinEncoder<'_>, question: &[u8]) {
    let mut starts = [0usize; 128];
    let mut labels = 0;
    let mut pos = 0;
    loop {
        let Some(&len) = question.get(pos) else {
            return;
        };
        if len == 0 {
            break;
        }
        if len > 63 || labels == starts.len() {
            // A pointer or a malformed name: no seed.
            return;
        }
        starts[labels] = wire::HEADER_LEN + pos;
        labels += 1;
        pos += 1 + usize::from(len);
    }
    let end = wire::HEADER_LEN + pos;
    let mut room = vec![0u8; end];
    room[wire::HEADER_LEN..].copy_from_slice(&question[..pos]);
    if encoder.emit_vec(&room).is_err() {
        return;
    }
    for &start in &starts[..labels] {
        encoder.store_label_pointer(start, end);
    }
    // Back to the start, without `trim` (which would drop the candidates): the response
    // writes the same header room and question over these bytes.
    encoder.set_offset(0);
}

/// Header, question and OPT record (with its options), TC set: what an answer too large
/// for UDP becomes.
fn truncated(
    bytes: &mut Vec<u8>,
    metadata: Metadata,
    question: &[u8],
    qcount: u16,
    edns: Option<Edns>,
) -> Result<ResponseInfo, ProtoError> {
    let mut encoder = BinEncoder::new(bytes);
    let mut metadata = metadata;
    metadata.truncation = true;
    let header = Header {
        metadata,
        counts: HeaderCounts {
            queries: qcount,
            answers: 0,
            authorities: 0,
            additionals: u16::from(edns.is_some()),
        },
    };
    header.emit(&mut encoder)?;
    encoder.emit_vec(question)?;
    if let Some(mut edns) = edns {
        edns.set_rcode_high(metadata.response_code.high());
        Record::from(&edns).emit(&mut encoder)?;
    }
    Ok(ResponseInfo::from(header))
}

/// The largest UDP response to `request`: the payload size its OPT record offers, within
/// 512 (RFC 6891 6.2.5) and the node's `max_udp_payload`; 512 without EDNS.
fn udp_limit(request: &Request, max: u16) -> usize {
    request
        .edns
        .as_ref()
        .map_or(512, |e| usize::from(e.max_payload().clamp(512, max)))
}

/// The additional records to send: every set if the response fits the UDP limit with them
/// all (or goes over TCP); else, set by set in order, those with which it still fits. A
/// required set that does not fit gives them all back, so that the response is truncated
/// (`encode`). The UDP fast path does the same as it encodes (`fast`).
fn additional_that_fits<'a>(
    request: &Request,
    max: u16,
    edns: Option<&Edns>,
    metadata: Metadata,
    answers: &[&Record],
    plan: &answer::ResponsePlan<'a>,
) -> Vec<&'a Record> {
    let all: Vec<&'a Record> = plan.additional.iter().flat_map(|a| a.records).collect();
    if request.protocol() != Protocol::Udp || all.is_empty() {
        return all;
    }
    let limit = udp_limit(request, max);
    let question = request.queries.as_bytes();
    let len = |additional: &[&Record]| {
        let mut builder = MessageResponseBuilder::from_message_request(request);
        if let Some(e) = edns {
            builder.edns(e);
        }
        let response = builder.build(
            metadata,
            answers.iter().copied(),
            plan.authority.iter().copied(),
            std::iter::empty(),
            additional.iter().copied(),
        );
        let mut bytes = Vec::with_capacity(512);
        let mut encoder = BinEncoder::new(&mut bytes);
        if !request.queries.is_empty() {
            seed_question(&mut encoder, question);
        }
        match response.destructive_emit(&mut encoder) {
            Ok(_) => bytes.len(),
            Err(_) => usize::MAX,
        }
    };
    if len(&all) <= limit {
        return all;
    }
    let mut chosen: Vec<&'a Record> = Vec::with_capacity(all.len());
    for set in &plan.additional {
        let before = chosen.len();
        chosen.extend(set.records);
        if len(&chosen) > limit {
            if set.required {
                return all;
            }
            chosen.truncate(before);
        }
    }
    chosen
}

/// The transport label of a request (only UDP and TCP sockets are served).
fn transport(request: &Request) -> DnsTransport {
    match request.protocol() {
        Protocol::Udp => DnsTransport::Udp,
        _ => DnsTransport::Tcp,
    }
}

#[async_trait::async_trait]
impl RequestHandler for DnsHandler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let snap = self.snapshot.load();
        // RFC 6891: answer with an OPT record when the query had one, saying the node's own
        // payload size (as Knot does); the client's bounds the response (`udp_limit`).
        let max = snap.config.node.max_udp_payload;
        let mut edns = request.edns.as_ref().map(|req| {
            let mut e = Edns::new();
            e.set_max_payload(max);
            // DO copied (RFC 3225 3).
            e.set_dnssec_ok(req.flags().dnssec_ok);
            // NSID asked (RFC 5001 2.1): the configured identity, if any.
            if let (Some(nsid), Some(_)) = (&snap.config.node.nsid, req.option(EdnsCode::NSID)) {
                e.options_mut()
                    .insert(EdnsOption::Unknown(NSID_OPTION, nsid.clone()));
            }
            e
        });
        let mut builder = MessageResponseBuilder::from_message_request(request);
        let result = match check(request, snap.config.node.nsid.is_some()) {
            Err(Checked::Chaos(make)) => {
                if let Some(m) = &self.metrics {
                    m.query(transport(request), RecordType::TXT, ResponseCode::NoError);
                }
                if let Some(e) = &edns {
                    builder.edns(e);
                }
                let mut metadata = Metadata::response_from_request(&request.metadata);
                metadata.checking_disabled = false;
                let record = make(&snap);
                let response = builder.build(
                    metadata,
                    std::iter::once(&record),
                    std::iter::empty(),
                    std::iter::empty(),
                    std::iter::empty(),
                );
                response_handle.send_response(response).await
            }
            Err(Checked::Error(code)) => {
                if let Some(m) = &self.metrics {
                    let qtype = request
                        .request_info()
                        .map_or(RecordType::Unknown(0), |i| i.query.query_type());
                    m.query(transport(request), qtype, code);
                }
                if let Some(e) = &edns {
                    builder.edns(e);
                }
                // RD echoed, CD never (see `fast`), as Knot answers.
                let mut request_metadata = request.metadata;
                request_metadata.checking_disabled = false;
                let response = builder.error_msg(&request_metadata, code);
                response_handle.send_response(response).await
            }
            Ok((query, client, client_cookie)) => {
                let plan = answer::plan(&snap, query.name(), query.query_type(), client);
                if let Some(m) = &self.metrics {
                    m.query(transport(request), query.query_type(), plan.rcode);
                    if let (Some(service), Some(pop)) = (plan.geo_service, plan.geo_pop) {
                        let ecs = client.subnet.is_some();
                        m.geo_answer(service, pop, ecs, snap.mode.is_local_only());
                    }
                }
                if let (Some(e), Some(scope), Some(net)) =
                    (edns.as_mut(), plan.ecs_scope, client.subnet)
                {
                    // Echo FAMILY, SOURCE PREFIX-LENGTH and ADDRESS exactly (RFC 7871 7.2.1).
                    e.options_mut().insert(EdnsOption::Subnet(ClientSubnet::new(
                        net.addr(),
                        net.prefix_len(),
                        scope,
                    )));
                }
                // A fresh server cookie for every cookie (RFC 7873 5.2.3-5.2.5), after ECS.
                if let (Some(e), Some(client_cookie), Some(cx)) =
                    (edns.as_mut(), client_cookie, self.cookie_context(&snap))
                {
                    let (secret, now) = (cx.secret, (cx.clock)());
                    let server =
                        cookie::server_cookie(&secret, &client_cookie, request.src().ip(), now);
                    let mut data = client_cookie.to_vec();
                    data.extend_from_slice(&server);
                    e.options_mut()
                        .insert(EdnsOption::Unknown(wire::COOKIE_OPTION, data));
                }
                debug!(
                    src = %request.src(),
                    name = %query.name(),
                    qtype = %query.query_type(),
                    client_subnet = ?client.subnet,
                    rcode = %plan.rcode,
                    answers = plan.answers.len(),
                    "query"
                );
                let mut metadata = Metadata::response_from_request(&request.metadata);
                metadata.checking_disabled = false;
                metadata.authoritative = plan.authoritative;
                metadata.response_code = plan.rcode;
                if let Some(e) = &edns {
                    builder.edns(e);
                }
                let answers: Vec<&Record> = plan.answers.iter().map(AsRef::as_ref).collect();
                let additional =
                    additional_that_fits(request, max, edns.as_ref(), metadata, &answers, &plan);
                let response = builder.build(
                    metadata,
                    answers.iter().copied(),
                    plan.authority.iter().copied(),
                    std::iter::empty(),
                    additional.iter().copied(),
                );
                response_handle.send_response(response).await
            }
        };
        result.unwrap_or_else(|e| {
            warn!(src = %request.src(), error = %e, "failed to send response");
            let mut metadata = Metadata::response_from_request(&request.metadata);
            metadata.response_code = ResponseCode::ServFail;
            ResponseInfo::from(Header {
                metadata,
                counts: HeaderCounts::default(),
            })
        })
    }
}

/// EDNS option code of NSID (RFC 5001).
const NSID_OPTION: u16 = 3;

/// What [`check`] answers itself.
enum Checked {
    /// An error code.
    Error(ResponseCode),
    /// `id.server` or `hostname.bind` CH TXT: the record, made from the snapshot.
    Chaos(fn(&Snapshot) -> Record),
}

impl From<ResponseCode> for Checked {
    fn from(code: ResponseCode) -> Self {
        Self::Error(code)
    }
}

/// The CH TXT record naming the node, as Knot answers `id.server` (TTL 0, no AA).
fn chaos_id(snap: &Snapshot, name: &str) -> Record {
    let text = snap.config.node.nsid.clone().unwrap_or_default();
    // INVARIANT: both names are constants that parse.
    let name = Name::from_ascii(name).expect("a chaos name");
    let mut r = Record::from_rdata(name, 0, RData::TXT(TXT::from_bytes(vec![&text[..]])));
    r.dns_class = DNSClass::CH;
    r
}

/// Checks what the library leaves to us; returns the question and the client, or what to
/// answer instead.
/// `chaos`: whether `id.server` and `hostname.bind` CH TXT are answered.
fn check(
    request: &Request,
    chaos: bool,
) -> Result<(&LowerQuery, Client, Option<[u8; 8]>), Checked> {
    if request.metadata.op_code != OpCode::Query {
        return Err(ResponseCode::NotImp.into());
    }
    if request.edns.as_ref().is_some_and(|e| e.version() > 0) {
        return Err(ResponseCode::BADVERS.into());
    }
    // Exactly one question.
    let info = request.request_info().map_err(|_| ResponseCode::FormErr)?;
    let subnet = request_subnet(request).map_err(|e| {
        debug!(src = %request.src(), error = %e, "malformed client subnet");
        ResponseCode::FormErr
    })?;
    let client_cookie =
        match ecs::first_option(request.as_slice(), wire::COOKIE_OPTION).map(cookie::parse) {
            None => None,
            Some(Cookie::Client { client, .. }) => Some(client),
            // RFC 7873 5.2.2.
            Some(Cookie::Malformed) => return Err(ResponseCode::FormErr.into()),
        };
    if chaos
        && info.query.query_class() == DNSClass::CH
        && info.query.query_type() == RecordType::TXT
    {
        let name = info.query.name();
        // The answer is the node's identity: off with NSID.
        let id = |n: &str| Name::from_ascii(n).is_ok_and(|n| LowerName::new(&n) == *name);
        if id("id.server.") {
            return Err(Checked::Chaos(|s| chaos_id(s, "id.server.")));
        }
        if id("hostname.bind.") {
            return Err(Checked::Chaos(|s| chaos_id(s, "hostname.bind.")));
        }
    }
    // QCLASS * (RFC 1035 3.2.5) is answered from IN, the one class served, as Knot does.
    if !matches!(info.query.query_class(), DNSClass::IN | DNSClass::ANY) {
        return Err(ResponseCode::Refused.into());
    }
    let client = Client {
        resolver: request.src().ip().to_canonical(),
        subnet: subnet.map(|s| s.net),
    };
    Ok((info.query, client, client_cookie))
}

/// The query's client subnet, strictly checked on the wire bytes.
fn request_subnet(request: &Request) -> Result<Option<ecs::ClientSubnet>, ecs::EcsError> {
    let has_ecs = request
        .edns
        .as_ref()
        .is_some_and(|e| e.option(EdnsCode::Subnet).is_some());
    if has_ecs {
        ecs::find_in_query(request.as_slice())
    } else {
        Ok(None)
    }
}
