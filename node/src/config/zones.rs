//! [P] The zones of a config: `[zone]` (one zone, as configs always wrote it) or `[[zone]]`
//! (several), each with its own SOA, NS and static data; geo names go to the zone with the
//! longest origin that contains them. Also `node.nsid`.

use hickory_proto::rr::LowerName;

use super::raw::RawNsid;
use crate::dns::zone::ZoneBuilder;

/// Longest NSID payload accepted (RFC 5001 sets no limit; a TXT string holds 255 bytes).
const MAX_NSID: usize = 255;

/// What NSID answers (`None`: off) for the own POP `pop`, or why it cannot.
pub(super) fn nsid(raw: Option<&RawNsid>, pop: &str) -> Result<Option<Vec<u8>>, String> {
    let text = match raw {
        None | Some(RawNsid::On(true)) => pop.to_owned(),
        Some(RawNsid::On(false)) => return Ok(None),
        Some(RawNsid::Text(t)) => t.clone(),
    };
    if text.is_empty() || text.len() > MAX_NSID {
        return Err(format!(
            "nsid must be 1 to {MAX_NSID} bytes (or false to turn it off)"
        ));
    }
    Ok(Some(text.into_bytes()))
}

/// The builder of the zone `name` belongs to: the longest origin at or above it.
pub(super) fn zone_of<'z>(
    zones: &'z mut [ZoneBuilder],
    name: &LowerName,
) -> Option<&'z mut ZoneBuilder> {
    zones
        .iter_mut()
        .filter(|z| z.origin().zone_of(name))
        .max_by_key(|z| z.origin().num_labels())
}
