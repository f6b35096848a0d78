//! [P] TSIG (RFC 8945) for zone transfers and NOTIFY: a request's signature checked, the
//! responses signed, with HMAC-SHA1/256/384/512 from `ring`.
//!
//! hickory 0.26 has the TSIG record and its digest layout without the `dnssec` features, but
//! its signer and verifier come only with them (and with a second crypto build); `ring` is
//! already here, so the digest is assembled here as RFC 8945 section 4.3 lays it out.
//!
//! - A request signed with an unknown key gets NOTAUTH with TSIG error BADKEY, a wrong MAC
//!   (or one shorter than the algorithm's: truncation is not accepted) NOTAUTH with BADSIG,
//!   both unsigned (section 5.2); a time outside the fudge NOTAUTH with BADTIME, signed,
//!   the server's time in Other Data (section 5.2.3).
//! - Responses to a valid request are all signed: the first over the request's MAC, each
//!   next one over the previous MAC and the timers only (section 5.3.1).
//! - Time arrives as an argument (seconds since the Unix epoch).

use hickory_proto::op::{Header, Message, Query, ResponseCode};
use hickory_proto::rr::rdata::tsig::{TSIG, TsigAlgorithm, TsigError};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncodable, BinEncoder};
use ring::hmac;

use crate::config::TsigKey;

/// Fudge of the responses' TSIG (RFC 8945 section 10 recommends 300 s).
pub const FUDGE: u16 = 300;

/// A request's TSIG, separated from the request.
#[derive(Debug)]
pub struct Signature {
    /// The key's name as the request spells it.
    pub key_name: Name,
    /// The TSIG record's data.
    pub tsig: TSIG,
    /// The request as signed: its header with the original ID and one additional record
    /// fewer, and everything before the TSIG record.
    unsigned: Vec<u8>,
}

/// Splits the TSIG record off the end of `msg`; `None` when the message has none (or does
/// not decode).
pub fn signature(msg: &[u8]) -> Option<Signature> {
    let mut decoder = BinDecoder::new(msg);
    let Header {
        mut metadata,
        mut counts,
    } = Header::read(&mut decoder).ok()?;
    if counts.additionals == 0 {
        return None;
    }
    let start = msg.len() - decoder.len();
    for _ in 0..counts.queries {
        Query::read(&mut decoder).ok()?;
    }
    let before = usize::from(counts.answers)
        + usize::from(counts.authorities)
        + usize::from(counts.additionals)
        - 1;
    for _ in 0..before {
        Record::<RData>::read(&mut decoder).ok()?;
    }
    let end = msg.len() - decoder.len();
    let record = Record::<RData>::read(&mut decoder).ok()?;
    if !decoder.is_empty() || record.record_type() != RecordType::TSIG {
        return None;
    }
    let RData::TSIG(tsig) = record.data else {
        return None;
    };
    counts.additionals -= 1;
    metadata.id = tsig.oid;
    let mut unsigned = Vec::with_capacity(msg.len());
    let mut encoder = BinEncoder::new(&mut unsigned);
    Header { metadata, counts }.emit(&mut encoder).ok()?;
    unsigned.extend_from_slice(&msg[start..end]);
    Some(Signature {
        key_name: record.name,
        tsig,
        unsigned,
    })
}

/// What a signed request is worth.
#[derive(Debug)]
pub enum Verdict {
    /// Valid: sign the responses with this.
    Valid(Signer),
    /// Invalid: answer NOTAUTH with this TSIG error (`signer` set for BADTIME, whose
    /// answer is signed).
    Invalid {
        /// The TSIG error.
        error: TsigError,
        /// Signs the error answer (BADTIME only).
        signer: Option<Signer>,
        /// The TSIG record the unsigned error answer carries.
        record: Option<Vec<u8>>,
    },
}

/// Checks `sig` against `keys` at time `now`.
pub fn verify(sig: &Signature, keys: &[TsigKey], now: u64) -> Verdict {
    let name = sig.key_name.to_lowercase();
    let key = keys
        .iter()
        .find(|k| k.name == name && k.algorithm == sig.tsig.algorithm);
    let unsigned_error = |error: TsigError| Verdict::Invalid {
        error,
        signer: None,
        record: record_bytes(
            &sig.key_name,
            &TSIG::new(
                sig.tsig.algorithm.clone(),
                sig.tsig.time,
                sig.tsig.fudge,
                Vec::new(),
                sig.tsig.oid,
                Some(error),
                Vec::new(),
            ),
        ),
    };
    let Some(key) = key else {
        return unsigned_error(TsigError::BadKey);
    };
    let Some(alg) = algorithm(&key.algorithm) else {
        return unsigned_error(TsigError::BadKey);
    };
    let hkey = hmac::Key::new(alg, &key.secret);
    let Some(vars) = variables(&sig.tsig, &sig.key_name) else {
        return unsigned_error(TsigError::BadSig);
    };
    let mut data = sig.unsigned.clone();
    data.extend_from_slice(&vars);
    if sig.tsig.mac.len() != alg.digest_algorithm().output_len()
        || hmac::verify(&hkey, &data, &sig.tsig.mac).is_err()
    {
        return unsigned_error(TsigError::BadSig);
    }
    let signer = Signer {
        key: key.clone(),
        prior_mac: sig.tsig.mac.clone(),
        first: true,
        time: now,
    };
    if now.abs_diff(sig.tsig.time) > u64::from(sig.tsig.fudge) {
        // Signed with the request's time, the server's in Other Data (section 5.2.3).
        return Verdict::Invalid {
            error: TsigError::BadTime,
            signer: Some(Signer {
                time: sig.tsig.time,
                ..signer
            }),
            record: None,
        };
    }
    Verdict::Valid(signer)
}

/// Signs a sequence of messages: the answers to one request, or one request.
#[derive(Debug, Clone)]
pub struct Signer {
    key: TsigKey,
    /// The request's MAC, then each signed answer's (empty: signing a request).
    prior_mac: Vec<u8>,
    first: bool,
    time: u64,
}

impl Signer {
    /// The key it signs with.
    pub fn key(&self) -> &TsigKey {
        &self.key
    }

    /// A signer of a request (a NOTIFY) at time `now`.
    pub fn request(key: &TsigKey, now: u64) -> Self {
        Self {
            key: key.clone(),
            prior_mac: Vec::new(),
            first: true,
            time: now,
        }
    }

    /// `msg` (encoded, without TSIG) signed: its TSIG record appended and ARCOUNT raised.
    /// `error` and `other` fill the TSIG's fields (BADTIME).
    pub fn sign(
        &mut self,
        msg: &[u8],
        error: Option<TsigError>,
        other: Vec<u8>,
    ) -> Option<Vec<u8>> {
        let alg = algorithm(&self.key.algorithm)?;
        if msg.len() < 12 {
            return None;
        }
        let id = u16::from_be_bytes([msg[0], msg[1]]);
        let mut tsig = TSIG::new(
            self.key.algorithm.clone(),
            self.time,
            FUDGE,
            Vec::new(),
            id,
            error,
            other,
        );
        let mut data = Vec::with_capacity(msg.len() + 128);
        if !self.prior_mac.is_empty() {
            data.extend_from_slice(&u16::try_from(self.prior_mac.len()).ok()?.to_be_bytes());
            data.extend_from_slice(&self.prior_mac);
        }
        data.extend_from_slice(msg);
        if self.first {
            data.extend_from_slice(&variables(&tsig, &self.key.name)?);
        } else {
            data.extend_from_slice(&time48(self.time));
            data.extend_from_slice(&FUDGE.to_be_bytes());
        }
        let mac = hmac::sign(&hmac::Key::new(alg, &self.key.secret), &data)
            .as_ref()
            .to_vec();
        tsig = tsig.set_mac(mac.clone());
        self.prior_mac = mac;
        self.first = false;
        append_record(msg, &record_bytes(&self.key.name, &tsig)?)
    }
}

/// The TSIG variables of the digest (RFC 8945 section 4.3.3). A `BinEncoder` writes from
/// the start of its buffer, so they are encoded apart and appended.
fn variables(tsig: &TSIG, key_name: &Name) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut encoder = BinEncoder::new(&mut out);
    tsig.emit_tsig_for_mac(&mut encoder, key_name).ok()?;
    Some(out)
}

/// `msg` with `record` appended as its last additional record.
pub fn append_record(msg: &[u8], record: &[u8]) -> Option<Vec<u8>> {
    let count = u16::from_be_bytes([*msg.get(10)?, *msg.get(11)?]).checked_add(1)?;
    let mut out = Vec::with_capacity(msg.len() + record.len());
    out.extend_from_slice(msg);
    out[10..12].copy_from_slice(&count.to_be_bytes());
    out.extend_from_slice(record);
    Some(out)
}

/// A TSIG record on the wire: owner, TYPE 250, CLASS ANY, TTL 0, data.
fn record_bytes(key_name: &Name, tsig: &TSIG) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut encoder = BinEncoder::new(&mut out);
    // A fresh encoder: nothing to compress against.
    key_name.emit(&mut encoder).ok()?;
    encoder.emit_u16(u16::from(RecordType::TSIG)).ok()?;
    encoder.emit_u16(u16::from(DNSClass::ANY)).ok()?;
    encoder.emit_u32(0).ok()?;
    let place = encoder.place::<u16>().ok()?;
    tsig.emit(&mut encoder).ok()?;
    let len = u16::try_from(encoder.len_since_place(&place)).ok()?;
    place.replace(&mut encoder, len).ok()?;
    Some(out)
}

/// An error answer to `query` with `rcode`, the question echoed (unsigned: the caller signs
/// it or appends the error's TSIG record).
pub fn error_answer(query: &Message, rcode: ResponseCode) -> Option<Vec<u8>> {
    let mut m = Message::error_msg(query.metadata.id, query.metadata.op_code, rcode);
    m.queries = query.queries.clone();
    m.metadata.recursion_desired = query.metadata.recursion_desired;
    m.to_vec().ok()
}

fn time48(t: u64) -> [u8; 6] {
    let b = t.to_be_bytes();
    [b[2], b[3], b[4], b[5], b[6], b[7]]
}

/// The server's time for BADTIME's Other Data.
pub fn other_time(now: u64) -> Vec<u8> {
    time48(now).to_vec()
}

fn algorithm(a: &TsigAlgorithm) -> Option<hmac::Algorithm> {
    match a {
        TsigAlgorithm::HmacSha1 => Some(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY),
        TsigAlgorithm::HmacSha256 => Some(hmac::HMAC_SHA256),
        TsigAlgorithm::HmacSha384 => Some(hmac::HMAC_SHA384),
        TsigAlgorithm::HmacSha512 => Some(hmac::HMAC_SHA512),
        _ => None,
    }
}
