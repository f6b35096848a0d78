//! [P] Zone transfer settings: `[zone] allow_transfer`, `notify`, `transfer_tsig`, and the
//! `[[tsig_key]]` tables they name.
//!
//! A transfer (AXFR or IXFR over TCP) is served to a client whose address is in
//! `allow_transfer` and, when `transfer_tsig` names a key, whose query is signed with that
//! key; both must hold. NOTIFY goes to every `notify` address when the serial changes, signed
//! with the same key. No `allow_transfer`: no transfers.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;

use hickory_proto::rr::Name;
use hickory_proto::rr::rdata::tsig::TsigAlgorithm;
use ipnet::IpNet;
use toml::Spanned;

use super::raw::{RawTsigKey, RawZone};

/// The port NOTIFY goes to when an address names none.
pub(crate) const DEFAULT_NOTIFY_PORT: u16 = 53;

/// Who may transfer the zone and who is told of a new serial.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TransferSettings {
    /// Client prefixes allowed to transfer the zone (empty: nobody).
    pub allow: Vec<IpNet>,
    /// Secondaries notified of a new serial.
    pub notify: Vec<SocketAddr>,
    /// The key transfer queries must be signed with, and NOTIFY is signed with.
    pub tsig: Option<TsigKey>,
    /// Every `[[tsig_key]]`: a query signed with one of them is verified and answered
    /// signed (and still needs its address allowed, and the `tsig` key if one is set).
    pub keys: Vec<TsigKey>,
}

impl TransferSettings {
    /// Whether `client`'s address may transfer the zone (its key is checked apart).
    pub fn allows(&self, client: IpAddr) -> bool {
        let client = client.to_canonical();
        self.allow.iter().any(|net| net.contains(&client))
    }
}

/// A TSIG key (RFC 8945).
#[derive(Clone, PartialEq, Eq)]
pub struct TsigKey {
    /// The key's name, as both sides spell it.
    pub name: Name,
    /// HMAC-SHA1, -SHA256, -SHA384 or -SHA512.
    pub algorithm: TsigAlgorithm,
    /// The shared secret.
    pub secret: Vec<u8>,
}

impl fmt::Debug for TsigKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The secret never goes into logs.
        f.debug_struct("TsigKey")
            .field("name", &self.name)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

/// Checks the transfer fields of `[zone]` against the `[[tsig_key]]` tables.
/// `error` makes the config's error for a span and a reason.
pub(crate) fn validate<E>(
    zone: &RawZone,
    keys: &[Spanned<RawTsigKey>],
    error: &dyn Fn(Option<Range<usize>>, String) -> E,
) -> Result<TransferSettings, E> {
    let mut parsed: Vec<TsigKey> = Vec::new();
    for k in keys {
        let key = tsig_key(k.get_ref(), error)?;
        if parsed.iter().any(|p| p.name == key.name) {
            return Err(error(
                Some(k.get_ref().name.span()),
                format!("a second tsig_key named {}", key.name),
            ));
        }
        parsed.push(key);
    }
    let allow = zone
        .allow_transfer
        .iter()
        .map(|a| {
            let text = a.get_ref().trim();
            text.parse::<IpNet>()
                .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
                .map(|n| n.trunc())
                .map_err(|_| {
                    error(
                        Some(a.span()),
                        format!("allow_transfer: `{text}` is not an address or prefix"),
                    )
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let notify = zone
        .notify
        .iter()
        .map(|n| {
            let text = n.get_ref().trim();
            text.parse::<SocketAddr>()
                .or_else(|_| {
                    text.parse::<IpAddr>()
                        .map(|ip| SocketAddr::new(ip, DEFAULT_NOTIFY_PORT))
                })
                .map_err(|_| {
                    error(
                        Some(n.span()),
                        format!("notify: `{text}` is not an address or address:port"),
                    )
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let tsig = match &zone.transfer_tsig {
        None => None,
        Some(name) => {
            let wanted = key_name(name.get_ref()).map_err(|r| error(Some(name.span()), r))?;
            let key = parsed.iter().find(|k| k.name == wanted).ok_or_else(|| {
                error(
                    Some(name.span()),
                    format!("transfer_tsig: no [[tsig_key]] is named {wanted}"),
                )
            })?;
            Some(key.clone())
        }
    };
    Ok(TransferSettings {
        allow,
        notify,
        tsig,
        keys: parsed,
    })
}

fn key_name(text: &str) -> Result<Name, String> {
    let mut name = Name::from_ascii(text).map_err(|e| format!("bad key name `{text}`: {e}"))?;
    name.set_fqdn(true);
    Ok(name.to_lowercase())
}

fn tsig_key<E>(
    k: &RawTsigKey,
    error: &dyn Fn(Option<Range<usize>>, String) -> E,
) -> Result<TsigKey, E> {
    let name = key_name(k.name.get_ref()).map_err(|r| error(Some(k.name.span()), r))?;
    let algorithm = match k.algorithm.get_ref().to_ascii_lowercase().as_str() {
        "hmac-sha1" => TsigAlgorithm::HmacSha1,
        "hmac-sha256" => TsigAlgorithm::HmacSha256,
        "hmac-sha384" => TsigAlgorithm::HmacSha384,
        "hmac-sha512" => TsigAlgorithm::HmacSha512,
        other => {
            return Err(error(
                Some(k.algorithm.span()),
                format!(
                    "tsig algorithm `{other}`: use hmac-sha256, hmac-sha384, hmac-sha512 or hmac-sha1"
                ),
            ));
        }
    };
    let secret = data_encoding::BASE64
        .decode(k.secret.get_ref().trim().as_bytes())
        .map_err(|e| {
            error(
                Some(k.secret.span()),
                format!("tsig secret: bad base64: {e}"),
            )
        })?;
    if secret.is_empty() {
        return Err(error(
            Some(k.secret.span()),
            "tsig secret: empty".to_owned(),
        ));
    }
    Ok(TsigKey {
        name,
        algorithm,
        secret,
    })
}
