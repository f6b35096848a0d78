//! [P] `RawConfig`: the serde mirror of the TOML file. Unknown keys are refused; fields that
//! get semantic checks keep their source span so errors can name the line.

use std::fmt;

use serde::Deserialize;
use serde::de::value::MapAccessDeserializer;
use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    pub(crate) node: RawNode,
    /// `[zone]` (one zone) or `[[zone]]` (several): see `config::zones`.
    pub(crate) zone: RawZones,
    #[serde(default, rename = "pop")]
    pub(crate) pops: Vec<Spanned<RawPop>>,
    #[serde(default, rename = "geo")]
    pub(crate) geo: Vec<Spanned<RawGeo>>,
    #[serde(default)]
    pub(crate) static_map: Option<RawStaticMap>,
    #[serde(default)]
    pub(crate) cluster: Option<Spanned<RawCluster>>,
    /// TSIG keys for zone transfers and NOTIFY (`config/transfer.rs`).
    #[serde(default, rename = "tsig_key")]
    pub(crate) tsig_keys: Vec<Spanned<RawTsigKey>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTsigKey {
    pub(crate) name: Spanned<String>,
    pub(crate) algorithm: Spanned<String>,
    pub(crate) secret: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCluster {
    pub(crate) id: Spanned<String>,
    pub(crate) listen: Spanned<String>,
    #[serde(default)]
    pub(crate) seeds: Vec<Spanned<String>>,
    pub(crate) ca: Spanned<String>,
    pub(crate) cert: Spanned<String>,
    pub(crate) key: Spanned<String>,
    #[serde(default)]
    pub(crate) quorum: Option<Spanned<usize>>,
    #[serde(default)]
    pub(crate) local_only_ttl: Option<u32>,
    #[serde(default)]
    pub(crate) gossip_interval_ms: Option<Spanned<u64>>,
    #[serde(default)]
    pub(crate) revoked: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNode {
    pub(crate) pop: Spanned<String>,
    pub(crate) listen: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    pub(crate) tcp_idle_timeout_secs: Option<Spanned<u64>>,
    #[serde(default)]
    pub(crate) max_udp_payload: Option<Spanned<u16>>,
    #[serde(default)]
    pub(crate) dns_workers: Option<Spanned<usize>>,
    #[serde(default)]
    pub(crate) tcp_max_connections: Option<Spanned<usize>>,
    #[serde(default)]
    pub(crate) cookie_secret: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) rrl: Option<Spanned<RawRrl>>,
    #[serde(default)]
    pub(crate) nsid: Option<Spanned<RawNsid>>,
    #[serde(default, rename = "probe")]
    pub(crate) probes: Vec<Spanned<RawProbe>>,
    #[serde(default)]
    pub(crate) api_socket: Option<String>,
    #[serde(default)]
    pub(crate) state_dir: Option<String>,
    #[serde(default)]
    pub(crate) max_file_mib: Option<Spanned<u64>>,
    #[serde(default)]
    pub(crate) ready_timeout_secs: Option<Spanned<u64>>,
    #[serde(default)]
    pub(crate) load_high_water: Option<Spanned<f32>>,
    #[serde(default)]
    pub(crate) load: Option<Spanned<RawLoad>>,
    #[serde(default)]
    pub(crate) metrics_listen: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) mrt: Option<Spanned<RawMrt>>,
    #[serde(default)]
    pub(crate) bgp: Option<Spanned<RawBgp>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRrl {
    pub(crate) responses_per_second: Spanned<u32>,
    #[serde(default)]
    pub(crate) slip: Option<u32>,
    #[serde(default)]
    pub(crate) ipv4_prefix: Option<Spanned<u8>>,
    #[serde(default)]
    pub(crate) ipv6_prefix: Option<Spanned<u8>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMrt {
    pub(crate) file: Spanned<String>,
    #[serde(default)]
    pub(crate) peer: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) peer_asn: Option<Spanned<u32>>,
    #[serde(default)]
    pub(crate) poll_interval_ms: Option<Spanned<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBgp {
    pub(crate) local_asn: Spanned<u32>,
    pub(crate) router_id: Spanned<String>,
    pub(crate) peer: Spanned<String>,
    pub(crate) peer_asn: Spanned<u32>,
    #[serde(default)]
    pub(crate) peer_port: Option<Spanned<u16>>,
    #[serde(default)]
    pub(crate) mode: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) listen: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) hold_time_secs: Option<Spanned<u16>>,
    #[serde(default)]
    pub(crate) retry_min_ms: Option<Spanned<u64>>,
    #[serde(default)]
    pub(crate) retry_max_ms: Option<Spanned<u64>>,
    #[serde(default)]
    pub(crate) publish_interval_ms: Option<Spanned<u64>>,
    #[serde(default)]
    pub(crate) max_prefixes: Option<Spanned<u64>>,
    #[serde(default)]
    pub(crate) max_prefix_action: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLoad {
    pub(crate) kind: Spanned<String>,
    #[serde(default)]
    pub(crate) command: Option<Vec<String>>,
    #[serde(default)]
    pub(crate) url: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) field: Option<String>,
    #[serde(default)]
    pub(crate) host: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) ca: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) path: Option<String>,
    #[serde(default)]
    pub(crate) interval_ms: Option<u64>,
    #[serde(default)]
    pub(crate) timeout_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawProbe {
    #[serde(default)]
    pub(crate) name: Option<String>,
    pub(crate) kind: Spanned<String>,
    #[serde(default)]
    pub(crate) target: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) url: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) command: Option<Spanned<Vec<String>>>,
    /// How an exec probe's exit code is read: "nagios" (default) or "plain".
    #[serde(default)]
    pub(crate) exit_codes: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) expect_status: Option<u16>,
    #[serde(default)]
    pub(crate) body_contains: Option<String>,
    #[serde(default)]
    pub(crate) host: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) ca: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) interval_ms: Option<Spanned<u64>>,
    #[serde(default)]
    pub(crate) timeout_ms: Option<Spanned<u64>>,
    #[serde(default)]
    pub(crate) rise: Option<u32>,
    #[serde(default)]
    pub(crate) fall: Option<u32>,
    #[serde(default)]
    pub(crate) service: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawZone {
    pub(crate) origin: Spanned<String>,
    #[serde(default)]
    pub(crate) ttl: Option<Spanned<u32>>,
    #[serde(default)]
    pub(crate) file: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) soa: Option<Spanned<RawSoa>>,
    #[serde(default)]
    pub(crate) ns: Vec<Spanned<String>>,
    #[serde(default, rename = "record")]
    pub(crate) records: Vec<Spanned<RawRecord>>,
    /// Zone transfers (`config/transfer.rs`): who may transfer the zone, who is notified
    /// of a new serial, and the TSIG key both must use.
    #[serde(default)]
    pub(crate) allow_transfer: Vec<Spanned<String>>,
    #[serde(default)]
    pub(crate) notify: Vec<Spanned<String>>,
    #[serde(default)]
    pub(crate) transfer_tsig: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSoa {
    pub(crate) mname: String,
    pub(crate) rname: String,
    pub(crate) serial: u32,
    #[serde(default)]
    pub(crate) refresh: Option<u32>,
    #[serde(default)]
    pub(crate) retry: Option<u32>,
    #[serde(default)]
    pub(crate) expire: Option<u32>,
    #[serde(default)]
    pub(crate) minimum: Option<u32>,
    #[serde(default)]
    pub(crate) ttl: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRecord {
    pub(crate) name: String,
    #[serde(rename = "type")]
    pub(crate) rtype: String,
    #[serde(default)]
    pub(crate) ttl: Option<u32>,
    pub(crate) data: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPop {
    pub(crate) name: Spanned<String>,
    pub(crate) asn: Spanned<u32>,
    pub(crate) addresses: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    pub(crate) preference: Option<u16>,
    #[serde(default)]
    pub(crate) weight: Option<Spanned<u32>>,
    #[serde(default)]
    pub(crate) admin: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) route_view: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGeo {
    pub(crate) name: Spanned<String>,
    #[serde(default)]
    pub(crate) ttl: Option<Spanned<u32>>,
    #[serde(default)]
    pub(crate) answers: Option<Spanned<u8>>,
    #[serde(default)]
    pub(crate) pops: Option<Vec<Spanned<String>>>,
    #[serde(default, rename = "target")]
    pub(crate) targets: Vec<Spanned<RawTarget>>,
    #[serde(default)]
    pub(crate) when_down: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) fallback: Option<Spanned<RawFallback>>,
    #[serde(default)]
    pub(crate) groups: Option<Spanned<Vec<Vec<Spanned<String>>>>>,
    #[serde(default)]
    pub(crate) max_hops: Option<Spanned<u8>>,
    #[serde(default)]
    pub(crate) https: Option<Spanned<RawHttps>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawStaticMap {
    pub(crate) file: Spanned<String>,
}

/// `[zone]` or `[[zone]]`, in config order.
#[derive(Debug)]
pub(crate) struct RawZones(pub(crate) Vec<RawZone>);

impl<'de> Deserialize<'de> for RawZones {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct OneOrMany;
        impl<'de> Visitor<'de> for OneOrMany {
            type Value = RawZones;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a [zone] table or [[zone]] tables")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawZones, A::Error> {
                RawZone::deserialize(MapAccessDeserializer::new(map)).map(|z| RawZones(vec![z]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawZones, A::Error> {
                let mut zones = Vec::new();
                while let Some(z) = seq.next_element::<RawZone>()? {
                    zones.push(z);
                }
                Ok(RawZones(zones))
            }
        }
        d.deserialize_any(OneOrMany)
    }
}

/// `node.nsid`: `true` (the default: the own POP's name), `false` (off) or a string.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum RawNsid {
    On(bool),
    Text(String),
}

/// A service's target at one POP (`[[geo.target]]`): its own addresses, or a CNAME.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTarget {
    pub(crate) pop: Spanned<String>,
    #[serde(default)]
    pub(crate) addresses: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    pub(crate) cname: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) weight: Option<Spanned<u32>>,
    #[serde(default)]
    pub(crate) canary: Option<Spanned<f64>>,
    #[serde(default)]
    pub(crate) https_target: Option<Spanned<String>>,
}

/// What a service answers when every POP is down for it (`[geo.fallback]`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFallback {
    #[serde(default)]
    pub(crate) addresses: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    pub(crate) cname: Option<Spanned<String>>,
}

/// Steered HTTPS records of a geo name (`[geo.https]`, RFC 9460 ServiceMode).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHttps {
    #[serde(default)]
    pub(crate) priority: Option<Spanned<u16>>,
    #[serde(default)]
    pub(crate) alpn: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    pub(crate) port: Option<u16>,
}
