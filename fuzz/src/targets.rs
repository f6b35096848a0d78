//! One function per fuzz target: the parser a node runs on those bytes, as the node calls
//! it. Each returns whatever the bytes are; a panic is a bug.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chitchat::Deserializable as _;
use sparrow_node::bgp::wire;
use sparrow_node::config::{Config, FileSource};
use sparrow_node::routes::decision::HopSource as _;
use sparrow_node::routes::mrt::{self, PeerSelector};
use sparrow_node::routes::transfer::{self, Incoming, ViewStream};
use sparrow_proto::frame;
use sparrow_proto::views::{self, FrameRoutes, ViewFrame, ViewRequest};

/// A DNS query as it arrives on UDP or TCP: decoded by hickory, and its ECS option found
/// and checked by the node's own strict reader (`dns::ecs`).
pub fn dns_message(data: &[u8]) {
    let _ = hickory_proto::op::Message::from_vec(data);
    let _ = sparrow_node::dns::ecs::find_in_query(data);
}

/// An EDNS Client Subnet option's data (RFC 7871).
pub fn ecs_option(data: &[u8]) {
    let _ = sparrow_node::dns::ecs::parse_option(data);
}

/// A gossip message as a peer's QUIC stream delivers it (chitchat's wire format), with the
/// transport's rule that every byte must be used.
pub fn gossip_frame(data: &[u8]) {
    let mut buf = data;
    let _ = chitchat::ChitchatMessage::deserialize(&mut buf);
}

/// The values a peer publishes about its POP (`key=value` lines), read as a node reads
/// them from a link.
pub fn gossip_values(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let keys: BTreeMap<&str, &str> = text.lines().filter_map(|l| l.split_once('=')).collect();
    let _ = sparrow_node::cluster::state::HotState::from_keys(|k| keys.get(k).copied());
}

/// A whole view transfer (preamble, header, frames), read the three ways a node reads one:
/// as a pull streams it in, as a kept view is checked, and as kept views are merged. When
/// two of them accept the bytes they must agree on the view.
pub fn view_transfer(data: &[u8]) {
    let pulled = pull(data);
    let kept = transfer::decode_stream(data);
    if let (Some((h1, v1)), Ok((h2, v2))) = (&pulled, &kept) {
        assert_eq!(h1, h2, "a pull and a kept view read different headers");
        assert_eq!(
            v1,
            &v2.prefixes(),
            "a pull and a kept view read different views"
        );
    }
    if let Ok(mut stream) = ViewStream::open(data) {
        // As the node's readers do: stop at the first error.
        let ok = (|| {
            while stream.next_v4()?.is_some() {}
            while stream.next_v6()?.is_some() {}
            Ok::<(), transfer::TransferError>(())
        })()
        .is_ok();
        // A stream that ends cleanly was a whole, checked transfer. (Reading on after an
        // error fails too: `r9_a_stream_read_on_after_an_error_keeps_failing`.)
        if ok {
            assert!(
                kept.is_ok(),
                "a streamed view passed where a kept one failed"
            );
        }
    }
}

/// The transfer as [`Incoming`] takes it: `(header, prefixes)` if it is accepted.
fn pull(data: &[u8]) -> Option<(views::ViewHeader, u64)> {
    let rest = data.get(frame::PREAMBLE_BYTES..)?;
    frame::check_preamble(views::MAGIC, data[..frame::PREAMBLE_BYTES].try_into().ok()?).ok()?;
    let len = frame::body_len(rest.get(..4)?.try_into().ok()?, Incoming::MAX_FIRST_FRAME).ok()?;
    let mut incoming = Incoming::open(rest.get(4..4 + len)?).ok()?;
    let mut rest = &rest[4 + len..];
    loop {
        let (prefix, tail) = rest.split_at_checked(frame::LEN_BYTES)?;
        let body = incoming.frame_body(prefix.try_into().ok()?).ok()?;
        let (got, tail) = tail.split_at_checked(body.len())?;
        body.copy_from_slice(got);
        rest = tail;
        if incoming.push().ok()? {
            break;
        }
    }
    if !rest.is_empty() {
        return None;
    }
    let (header, view, _) = incoming.finish()?;
    Some((header, view.prefixes()))
}

/// One frame body of the view protocol: a request as a server reads it, a frame as bincode
/// decodes it, and a chunk read in place, which must agree with bincode.
pub fn view_frame(data: &[u8]) {
    let _ = frame::decode::<ViewRequest>(data);
    let decoded = frame::decode::<ViewFrame>(data);
    let in_place = views::read_routes(data).and_then(|f| match f {
        FrameRoutes::V4(mut c) => {
            let mut routes = Vec::new();
            while let Some(r) = c.next_v4(data)? {
                routes.push(r);
            }
            Ok(ViewFrame::V4(routes))
        }
        FrameRoutes::V6(mut c) => {
            let mut routes = Vec::new();
            while let Some(r) = c.next_v6(data)? {
                routes.push(r);
            }
            Ok(ViewFrame::V6(routes))
        }
        FrameRoutes::Other(f) => Ok(f),
    });
    match (decoded, in_place) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "read in place differs from bincode"),
        (Err(_), Err(_)) => {}
        (a, b) => panic!("bincode says {a:?}, read in place says {b:?}"),
    }
}

/// A BGP message from the router: the header, then the body as each kind's parser reads
/// it (OPEN, UPDATE with and without 4-octet AS numbers, NOTIFICATION).
pub fn bgp_message(data: &[u8]) {
    if let Some(header) = data.get(..wire::HEADER_LEN) {
        let _ = wire::header(header.try_into().expect("header length"));
    }
    let body = data.get(wire::HEADER_LEN..).unwrap_or(data);
    let _ = wire::Open::parse(body);
    let _ = wire::parse_update(body, true);
    let _ = wire::parse_update(body, false);
    let _ = wire::Notification::parse(body);
}

/// An MRT RIB dump (plain, gzip or bzip2), as `[node.mrt]` reads it.
pub fn mrt(data: &[u8]) {
    let peer = PeerSelector {
        ip: None,
        asn: Some(64_501),
    };
    let _ = mrt::load(data, &peer, 64_501);
}

/// The single-node example's files, served from memory; `zone` replaces its zone file.
struct Example {
    zone: Option<String>,
}

const EXAMPLE_DIR: &str = "/fuzz/example";

impl FileSource for Example {
    fn read(&self, path: &Path, max: u64) -> std::io::Result<String> {
        let name = path.strip_prefix(EXAMPLE_DIR).unwrap_or(path);
        let text = match name.to_str() {
            Some("example.net.zone") => self
                .zone
                .clone()
                .unwrap_or_else(|| crate::seeds::EXAMPLE_ZONE.to_owned()),
            Some(other) => crate::seeds::example_file(other)
                .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))?
                .to_owned(),
            None => return Err(std::io::ErrorKind::NotFound.into()),
        };
        if text.len() as u64 > max {
            return Err(std::io::ErrorKind::InvalidData.into());
        }
        Ok(text)
    }
}

fn example_path() -> PathBuf {
    Path::new(EXAMPLE_DIR).join("sparrow.toml")
}

/// A config file (TOML, then every check of `config::validate`), naming the example's files.
pub fn config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = Config::from_str(&text, &example_path(), &Example { zone: None });
}

/// A zone file, named by the example's config.
pub fn zone_file(data: &[u8]) {
    let zone = String::from_utf8_lossy(data).into_owned();
    let _ = Config::from_str(
        crate::seeds::EXAMPLE_CONFIG,
        &example_path(),
        &Example { zone: Some(zone) },
    );
}

/// A zone file read by the zone-file parser alone (`dns::zonefile`), with what its errors
/// promise: at most `MAX_ERRORS` kept, in line order, each on a line of the text.
pub fn zone_text(data: &[u8]) {
    use sparrow_node::dns::zonefile;
    let text = String::from_utf8_lossy(data);
    let origin = hickory_proto::rr::Name::from_ascii("example.net.").expect("a valid name");
    if let Err(e) = zonefile::parse(&text, &origin) {
        assert!(e.errors.len() <= zonefile::MAX_ERRORS && e.total >= e.errors.len());
        assert!(!e.errors.is_empty());
        let lines = text.split('\n').count();
        assert!(e.errors.windows(2).all(|w| w[0].line <= w[1].line));
        assert!(e.errors.iter().all(|e| e.line >= 1 && e.line <= lines));
    }
}

/// A route view or static map in Super Sparrow's `prefix ASN...` text.
pub fn route_text(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (view, _) = sparrow_node::routes::parse_route_view(&text);
    let _ = transfer::encode(&view, 1);
    let _ = sparrow_node::routes::parse_static_map(&text, |asn| Some(asn as usize % 3));
}
