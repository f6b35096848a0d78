//! [P] DNS Cookies (RFC 7873), with server cookies made as RFC 9018 says, so that every node
//! of a cluster sharing the secret accepts every other's: version 1, three reserved bytes,
//! a timestamp, and SipHash-2-4 over the client cookie, those eight bytes and the client's
//! address.
//!
//! The server never requires a cookie: a query with a client cookie gets a fresh server
//! cookie beside its answer; one with a valid server cookie also proves its source address
//! (no spoofing), which the response rate limit takes into account (`dns::rrl`).

use std::net::IpAddr;

/// Length of a client cookie.
pub const CLIENT_LEN: usize = 8;
/// Length of a server cookie made here (RFC 9018).
pub const SERVER_LEN: usize = 16;
/// A server cookie older than this is not valid (RFC 9018 §4.3: one hour).
const MAX_AGE: u32 = 3600;
/// Nor one stamped further than this in the future (RFC 9018 §4.3: five minutes).
const MAX_AHEAD: u32 = 300;

/// What a query's COOKIE option holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cookie<'a> {
    /// A length no cookie has (RFC 7873 §5.2.2: FORMERR).
    Malformed,
    /// A client cookie, and the server cookie if one came (8 to 32 bytes, unchecked).
    Client {
        /// The client cookie.
        client: [u8; CLIENT_LEN],
        /// The server cookie, if any.
        server: Option<&'a [u8]>,
    },
}

/// What answering DNS cookies needs: the server secret, and a clock (seconds since the
/// Unix epoch) read only for a query that carries a cookie.
#[derive(Clone, Copy, Debug)]
pub struct Context {
    /// The server secret.
    pub secret: [u8; 16],
    /// The clock.
    pub clock: fn() -> u32,
}

/// Reads the data of a COOKIE option.
pub fn parse(data: &[u8]) -> Cookie<'_> {
    match data.len() {
        CLIENT_LEN => Cookie::Client {
            client: client_of(data),
            server: None,
        },
        16..=40 => Cookie::Client {
            client: client_of(data),
            server: Some(&data[CLIENT_LEN..]),
        },
        _ => Cookie::Malformed,
    }
}

fn client_of(data: &[u8]) -> [u8; CLIENT_LEN] {
    let mut c = [0; CLIENT_LEN];
    c.copy_from_slice(&data[..CLIENT_LEN]);
    c
}

/// The server cookie for `client` from `addr` at `now` (seconds since the Unix epoch).
pub fn server_cookie(
    secret: &[u8; 16],
    client: &[u8; CLIENT_LEN],
    addr: IpAddr,
    now: u32,
) -> [u8; SERVER_LEN] {
    let mut cookie = [0; SERVER_LEN];
    cookie[0] = 1;
    cookie[4..8].copy_from_slice(&now.to_be_bytes());
    let hash = hash(secret, client, &cookie[..8], addr);
    cookie[8..].copy_from_slice(&hash);
    cookie
}

/// Whether `server` is a cookie this secret made for `client` from `addr`, stamped at most an
/// hour before `now` and at most five minutes after (serial number arithmetic, RFC 1982).
pub fn is_valid(
    secret: &[u8; 16],
    client: &[u8; CLIENT_LEN],
    server: &[u8],
    addr: IpAddr,
    now: u32,
) -> bool {
    let Ok(server) = <&[u8; SERVER_LEN]>::try_from(server) else {
        return false;
    };
    if server[..4] != [1, 0, 0, 0] {
        return false;
    }
    let stamp = u32::from_be_bytes([server[4], server[5], server[6], server[7]]);
    let age = now.wrapping_sub(stamp);
    let ahead = stamp.wrapping_sub(now);
    if age > MAX_AGE && ahead > MAX_AHEAD {
        return false;
    }
    hash(secret, client, &server[..8], addr) == server[8..]
}

fn hash(secret: &[u8; 16], client: &[u8; CLIENT_LEN], head: &[u8], addr: IpAddr) -> [u8; 8] {
    let mut input = [0u8; CLIENT_LEN + 8 + 16];
    input[..CLIENT_LEN].copy_from_slice(client);
    input[CLIENT_LEN..CLIENT_LEN + 8].copy_from_slice(head);
    let len = match addr.to_canonical() {
        IpAddr::V4(a) => {
            input[16..20].copy_from_slice(&a.octets());
            20
        }
        IpAddr::V6(a) => {
            input[16..32].copy_from_slice(&a.octets());
            32
        }
    };
    siphash24(secret, &input[..len]).to_le_bytes()
}

/// SipHash-2-4 (Aumasson and Bernstein), as RFC 9018 uses it.
fn siphash24(key: &[u8; 16], data: &[u8]) -> u64 {
    let k0 = u64::from_le_bytes([
        key[0], key[1], key[2], key[3], key[4], key[5], key[6], key[7],
    ]);
    let k1 = u64::from_le_bytes([
        key[8], key[9], key[10], key[11], key[12], key[13], key[14], key[15],
    ]);
    let mut v = [
        k0 ^ 0x736f_6d65_7073_6575,
        k1 ^ 0x646f_7261_6e64_6f6d,
        k0 ^ 0x6c79_6765_6e65_7261,
        k1 ^ 0x7465_6462_7974_6573,
    ];
    fn round(v: &mut [u64; 4]) {
        v[0] = v[0].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(13) ^ v[0];
        v[0] = v[0].rotate_left(32);
        v[2] = v[2].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(16) ^ v[2];
        v[0] = v[0].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(21) ^ v[0];
        v[2] = v[2].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(17) ^ v[2];
        v[2] = v[2].rotate_left(32);
    }
    let mut chunks = data.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let m = u64::from_le_bytes(word);
        v[3] ^= m;
        round(&mut v);
        round(&mut v);
        v[0] ^= m;
    }
    let rest = chunks.remainder();
    let mut last = [0u8; 8];
    last[..rest.len()].copy_from_slice(rest);
    // INVARIANT: a DNS cookie's input is a few dozen bytes.
    last[7] = data.len() as u8;
    let m = u64::from_le_bytes(last);
    v[3] ^= m;
    round(&mut v);
    round(&mut v);
    v[0] ^= m;
    v[2] ^= 0xff;
    for _ in 0..4 {
        round(&mut v);
    }
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    const SECRET: &str = "e5e973e5a6b2a43f48e7dc849e37bfcf";

    #[test]
    fn siphash_matches_the_reference_vector() {
        // The paper's vector: key 00..0f, message 00..0e.
        let key: [u8; 16] = std::array::from_fn(|i| i as u8);
        let data: Vec<u8> = (0..15).collect();
        assert_eq!(siphash24(&key, &data), 0xa129_ca61_49be_45e5);
    }

    #[test]
    fn server_cookies_match_rfc_9018_appendix_a() {
        let secret: [u8; 16] = hex(SECRET).try_into().unwrap();
        let client: [u8; 8] = hex("2464c4abcf10c957").try_into().unwrap();
        let addr: IpAddr = "198.51.100.100".parse().unwrap();
        // A.1, learning a new server cookie; A.2, the same client 40 minutes later.
        for (now, want) in [
            (1_559_731_985, "010000005cf79f111f8130c3eee29480"),
            (1_559_734_385, "010000005cf7a871d4a564a1442aca77"),
        ] {
            let cookie = server_cookie(&secret, &client, addr, now);
            assert_eq!(cookie.to_vec(), hex(want));
            assert!(is_valid(&secret, &client, &cookie, addr, now));
        }
    }

    #[test]
    fn cookies_are_refused_when_old_early_forged_or_for_another_client() {
        let secret = [7u8; 16];
        let client = [1u8; 8];
        let addr: IpAddr = "192.0.2.1".parse().unwrap();
        let now = 1_000_000;
        let cookie = server_cookie(&secret, &client, addr, now);
        assert!(is_valid(&secret, &client, &cookie, addr, now + MAX_AGE));
        assert!(!is_valid(
            &secret,
            &client,
            &cookie,
            addr,
            now + MAX_AGE + 1
        ));
        assert!(is_valid(&secret, &client, &cookie, addr, now - MAX_AHEAD));
        assert!(!is_valid(
            &secret,
            &client,
            &cookie,
            addr,
            now - MAX_AHEAD - 1
        ));
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(!is_valid(&secret, &client, &cookie, other, now));
        assert!(!is_valid(&secret, &[2; 8], &cookie, addr, now));
        assert!(!is_valid(&[8; 16], &client, &cookie, addr, now));
        let mut forged = cookie;
        forged[15] ^= 1;
        assert!(!is_valid(&secret, &client, &forged, addr, now));
        assert!(!is_valid(&secret, &client, &cookie[..8], addr, now));
    }

    #[test]
    fn option_lengths_other_than_8_and_16_to_40_are_malformed() {
        for len in 0..=48 {
            let data = vec![0u8; len];
            let malformed = parse(&data) == Cookie::Malformed;
            assert_eq!(malformed, !(len == 8 || (16..=40).contains(&len)), "{len}");
        }
    }
}
