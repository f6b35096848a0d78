//! [P] EDNS Client Subnet (RFC 7871): strict parsing of the option from the raw query.
//!
//! The DNS library decodes ECS leniently (it accepts surplus address octets and keeps address
//! bits past the source prefix). RFC 7871 section 6 asks an authoritative server to refuse
//! such options with FORMERR, so Sparrow reads the option from the query's wire bytes and
//! checks it here.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// EDNS option code of Client Subnet.
pub const OPTION_CODE: u16 = 8;
const OPT_TYPE: u16 = 41;

/// Why an ECS option was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EcsError {
    /// Fewer than the four fixed octets.
    #[error("ECS option shorter than its fixed part")]
    Truncated,
    /// FAMILY is neither 1 (IPv4) nor 2 (IPv6).
    #[error("ECS family {0} is not IPv4 (1) or IPv6 (2)")]
    UnknownFamily(u16),
    /// SOURCE PREFIX-LENGTH longer than the address.
    #[error("ECS source prefix /{0} is longer than the address")]
    SourceTooLong(u8),
    /// ADDRESS is not exactly ceil(SOURCE PREFIX-LENGTH / 8) octets.
    #[error("ECS address has {got} octets, /{source_len} needs {want}")]
    AddressLength {
        /// Octets present.
        got: usize,
        /// Octets required.
        want: usize,
        /// The source prefix length.
        source_len: u8,
    },
    /// ADDRESS has bits set past SOURCE PREFIX-LENGTH.
    #[error("ECS address has bits set past /{0}")]
    HostBits(u8),
    /// More than one ECS option in the query.
    #[error("more than one ECS option")]
    Duplicate,
}

/// A validated client subnet from a query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientSubnet {
    /// The subnet (address truncated to the source prefix length).
    pub net: IpNet,
}

/// Parses the payload of an ECS option (everything after OPTION-LENGTH).
pub fn parse_option(data: &[u8]) -> Result<ClientSubnet, EcsError> {
    let [f0, f1, source_len, _scope, address @ ..] = data else {
        return Err(EcsError::Truncated);
    };
    let family = u16::from_be_bytes([*f0, *f1]);
    let width: u8 = match family {
        1 => 32,
        2 => 128,
        other => return Err(EcsError::UnknownFamily(other)),
    };
    let source_len = *source_len;
    if source_len > width {
        return Err(EcsError::SourceTooLong(source_len));
    }
    let want = usize::from(source_len).div_ceil(8);
    if address.len() != want {
        return Err(EcsError::AddressLength {
            got: address.len(),
            want,
            source_len,
        });
    }
    let mut octets = [0u8; 16];
    octets[..want].copy_from_slice(address);
    let addr = if width == 32 {
        IpAddr::V4(Ipv4Addr::new(octets[0], octets[1], octets[2], octets[3]))
    } else {
        IpAddr::V6(Ipv6Addr::from(octets))
    };
    // INVARIANT: source_len <= width was checked above.
    let net = IpNet::new(addr, source_len).expect("prefix length checked against family");
    if net.network() != addr {
        return Err(EcsError::HostBits(source_len));
    }
    Ok(ClientSubnet { net })
}

/// Finds the ECS option of a query in its wire form and parses it.
///
/// Returns `Ok(None)` when the query has no OPT record or no ECS option. The message is
/// expected to have been decoded once already (so it is well formed); a structure that does
/// not parse here is treated as having no option.
pub fn find_in_query(message: &[u8]) -> Result<Option<ClientSubnet>, EcsError> {
    let Some(options) = opt_rdata(message) else {
        return Ok(None);
    };
    let mut found = None;
    let mut rest = options;
    while let [c0, c1, l0, l1, tail @ ..] = rest {
        let len = usize::from(u16::from_be_bytes([*l0, *l1]));
        let Some((data, next)) = tail.split_at_checked(len) else {
            return Ok(None);
        };
        if u16::from_be_bytes([*c0, *c1]) == OPTION_CODE {
            if found.is_some() {
                return Err(EcsError::Duplicate);
            }
            found = Some(parse_option(data)?);
        }
        rest = next;
    }
    Ok(found)
}

/// The data of the first option with `code` in a query's OPT record, if any (the message
/// decoded once already, as for [`find_in_query`]).
pub fn first_option(message: &[u8], code: u16) -> Option<&[u8]> {
    let mut rest = opt_rdata(message)?;
    while let [c0, c1, l0, l1, tail @ ..] = rest {
        let len = usize::from(u16::from_be_bytes([*l0, *l1]));
        let (data, next) = tail.split_at_checked(len)?;
        if u16::from_be_bytes([*c0, *c1]) == code {
            return Some(data);
        }
        rest = next;
    }
    None
}

/// The RDATA of the OPT record in the additional section, if any.
fn opt_rdata(msg: &[u8]) -> Option<&[u8]> {
    let count = |i: usize| {
        Some(usize::from(u16::from_be_bytes([
            *msg.get(i)?,
            *msg.get(i + 1)?,
        ])))
    };
    let (qd, an, ns, ar) = (count(4)?, count(6)?, count(8)?, count(10)?);
    let mut pos = 12;
    for _ in 0..qd {
        pos = skip_name(msg, pos)? + 4;
    }
    for i in 0..an + ns + ar {
        pos = skip_name(msg, pos)?;
        let rtype = u16::from_be_bytes([*msg.get(pos)?, *msg.get(pos + 1)?]);
        let rdlen = usize::from(u16::from_be_bytes([*msg.get(pos + 8)?, *msg.get(pos + 9)?]));
        let rdata = msg.get(pos + 10..pos + 10 + rdlen)?;
        if rtype == OPT_TYPE && i >= an + ns {
            return Some(rdata);
        }
        pos += 10 + rdlen;
    }
    None
}

/// Returns the position after the (possibly compressed) name starting at `pos`.
fn skip_name(msg: &[u8], mut pos: usize) -> Option<usize> {
    loop {
        let len = *msg.get(pos)?;
        match len {
            0 => return Some(pos + 1),
            l if l & 0xC0 == 0xC0 => return Some(pos + 2),
            l if l & 0xC0 != 0 => return None,
            l => pos += 1 + usize::from(l),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opt(family: u16, source: u8, scope: u8, addr: &[u8]) -> Vec<u8> {
        let mut v = family.to_be_bytes().to_vec();
        v.extend([source, scope]);
        v.extend(addr);
        v
    }

    #[test]
    fn accepts_well_formed_options() {
        let ok = |data: Vec<u8>, want: &str| {
            assert_eq!(
                parse_option(&data).unwrap().net,
                want.parse::<IpNet>().unwrap()
            );
        };
        ok(opt(1, 24, 0, &[100, 64, 2]), "100.64.2.0/24");
        ok(opt(1, 32, 0, &[1, 2, 3, 4]), "1.2.3.4/32");
        ok(opt(1, 0, 0, &[]), "0.0.0.0/0");
        ok(opt(1, 20, 0, &[10, 1, 16]), "10.1.16.0/20");
        ok(
            opt(2, 48, 0, &[0x20, 0x01, 0x0d, 0xb8, 0xff, 0x02]),
            "2001:db8:ff02::/48",
        );
        ok(opt(2, 0, 0, &[]), "::/0");
        // A non-zero SCOPE in a query is tolerated (the RFC only says it MUST be 0).
        ok(opt(1, 24, 16, &[100, 64, 2]), "100.64.2.0/24");
    }

    #[test]
    fn refuses_malformed_options() {
        let err = |data: Vec<u8>| parse_option(&data).unwrap_err();
        assert_eq!(err(vec![0, 1, 24]), EcsError::Truncated);
        assert_eq!(err(opt(3, 0, 0, &[])), EcsError::UnknownFamily(3));
        assert_eq!(
            err(opt(1, 33, 0, &[1, 2, 3, 4, 5])),
            EcsError::SourceTooLong(33)
        );
        assert_eq!(err(opt(2, 129, 0, &[0; 17])), EcsError::SourceTooLong(129));
        assert_eq!(
            err(opt(1, 24, 0, &[100, 64, 2, 0])),
            EcsError::AddressLength {
                got: 4,
                want: 3,
                source_len: 24
            }
        );
        assert_eq!(
            err(opt(1, 24, 0, &[100, 64])),
            EcsError::AddressLength {
                got: 2,
                want: 3,
                source_len: 24
            }
        );
        assert_eq!(err(opt(1, 20, 0, &[10, 1, 17])), EcsError::HostBits(20));
    }

    /// A query for `www.example.net A` with an OPT record carrying `options`.
    fn query_with(options: &[u8]) -> Vec<u8> {
        let mut m = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1];
        for label in ["www", "example", "net"] {
            m.push(label.len() as u8);
            m.extend(label.as_bytes());
        }
        m.extend([0, 0, 1, 0, 1]);
        m.extend([0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0]);
        m.extend((options.len() as u16).to_be_bytes());
        m.extend(options);
        m
    }

    fn ecs_option(data: &[u8]) -> Vec<u8> {
        let mut v = OPTION_CODE.to_be_bytes().to_vec();
        v.extend((data.len() as u16).to_be_bytes());
        v.extend(data);
        v
    }

    #[test]
    fn finds_the_option_in_a_query() {
        let cookie = [0u8, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8];
        let mut options = cookie.to_vec();
        options.extend(ecs_option(&opt(1, 24, 0, &[100, 64, 2])));
        let found = find_in_query(&query_with(&options)).unwrap().unwrap();
        assert_eq!(found.net, "100.64.2.0/24".parse::<IpNet>().unwrap());
        assert_eq!(find_in_query(&query_with(&cookie)).unwrap(), None);
        let mut two = ecs_option(&opt(1, 24, 0, &[100, 64, 2]));
        two.extend(ecs_option(&opt(1, 24, 0, &[100, 64, 3])));
        assert_eq!(find_in_query(&query_with(&two)), Err(EcsError::Duplicate));
        let bad = ecs_option(&opt(1, 24, 0, &[100, 64, 2, 9]));
        assert!(find_in_query(&query_with(&bad)).is_err());
    }

    #[test]
    fn never_panics_on_truncated_messages() {
        let full = query_with(&ecs_option(&opt(1, 24, 0, &[100, 64, 2])));
        for len in 0..full.len() {
            let _ = find_in_query(&full[..len]);
        }
    }
}
