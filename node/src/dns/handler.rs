//! [E] The hickory-server `RequestHandler`: decode what the library leaves to us (ECS), read
//! the current snapshot, ask `answer::plan`, encode.

use std::sync::Arc;

use arc_swap::ArcSwap;
use hickory_proto::op::{Edns, Header, HeaderCounts, LowerQuery, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsCode, EdnsOption};
use hickory_proto::rr::{DNSClass, RecordType};
use hickory_server::net::runtime::Time;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use tracing::{debug, warn};

use super::answer::{self, Client};
use super::ecs;
use super::{DnsTransport, QueryObserver};
use crate::snapshot::Snapshot;

/// Answers DNS queries from the current [`Snapshot`].
#[derive(Clone)]
pub struct DnsHandler {
    snapshot: Arc<ArcSwap<Snapshot>>,
    metrics: Option<Arc<dyn QueryObserver>>,
}

impl DnsHandler {
    /// A handler reading whatever snapshot `snapshot` holds at the time of each query.
    pub fn new(snapshot: Arc<ArcSwap<Snapshot>>) -> Self {
        Self {
            snapshot,
            metrics: None,
        }
    }

    /// The same handler, counting every query in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<dyn QueryObserver>) -> Self {
        self.metrics = Some(metrics);
        self
    }
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
        // RFC 6891: answer with an OPT record when the query had one. Its payload size also
        // bounds the UDP response (the library truncates, setting TC, past it).
        let mut edns = request.edns.as_ref().map(|req| {
            let mut e = Edns::new();
            e.set_max_payload(
                req.max_payload()
                    .clamp(512, snap.config.node.max_udp_payload),
            );
            e
        });
        let mut builder = MessageResponseBuilder::from_message_request(request);
        let result = match check(request) {
            Err(code) => {
                if let Some(m) = &self.metrics {
                    let qtype = request
                        .request_info()
                        .map_or(RecordType::Unknown(0), |i| i.query.query_type());
                    m.query(transport(request), qtype, code);
                }
                if let Some(e) = &edns {
                    builder.edns(e);
                }
                let response = builder.error_msg(&request.metadata, code);
                response_handle.send_response(response).await
            }
            Ok((query, client)) => {
                let plan = answer::plan(&snap, query.name(), query.query_type(), client);
                if let Some(m) = &self.metrics {
                    m.query(transport(request), query.query_type(), plan.rcode);
                    if let Some(pop) = plan.geo_pop {
                        m.geo_answer(pop, client.subnet.is_some(), snap.mode.is_local_only());
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
                metadata.authoritative = plan.authoritative;
                metadata.response_code = plan.rcode;
                if let Some(e) = &edns {
                    builder.edns(e);
                }
                let response = builder.build(
                    metadata,
                    plan.answers.iter().copied(),
                    plan.authority.iter().copied(),
                    std::iter::empty(),
                    std::iter::empty(),
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

/// Checks what the library leaves to us; returns the question and the client, or the error
/// code to answer with.
fn check(request: &Request) -> Result<(&LowerQuery, Client), ResponseCode> {
    if request.metadata.op_code != OpCode::Query {
        return Err(ResponseCode::NotImp);
    }
    if request.edns.as_ref().is_some_and(|e| e.version() > 0) {
        return Err(ResponseCode::BADVERS);
    }
    // Exactly one question.
    let info = request.request_info().map_err(|_| ResponseCode::FormErr)?;
    let subnet = request_subnet(request).map_err(|e| {
        debug!(src = %request.src(), error = %e, "malformed client subnet");
        ResponseCode::FormErr
    })?;
    if info.query.query_class() != DNSClass::IN {
        return Err(ResponseCode::Refused);
    }
    let client = Client {
        resolver: request.src().ip().to_canonical(),
        subnet: subnet.map(|s| s.net),
    };
    Ok((info.query, client))
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
