//! [P] `RawConfig` -> `Config`: every semantic check, each error with file, line and reason.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::path::{Path, PathBuf};

use std::sync::Arc;
use std::time::Duration;

use hickory_proto::rr::rdata::SOA;
use hickory_proto::rr::{LowerName, Name, RData, Record};
use toml::Spanned;

use super::raw::{
    RawBgp, RawCluster, RawConfig, RawGeo, RawLoad, RawMrt, RawPop, RawProbe, RawRrl, RawZone,
    RawZones,
};
use super::transfer;
use super::*;
use crate::dns::zone::{ZoneBuilder, Zones};
use crate::dns::zonefile;
use crate::health::spec::{self as health, ExitCodes, Probe, ProbeKind};
use crate::pki::identity as pki;
use crate::routes::{self, describe_skipped};

impl Config {
    /// Parses and validates config `text` read from `origin`. Relative paths in it resolve
    /// against `origin`'s folder and are read through `files`.
    pub fn from_str(
        text: &str,
        origin: &Path,
        files: &dyn FileSource,
    ) -> Result<Loaded, ConfigError> {
        validate(text, origin, files)
    }
}

pub(super) fn validate(
    text: &str,
    origin: &Path,
    files: &dyn FileSource,
) -> Result<Loaded, ConfigError> {
    let mut cx = Cx {
        text,
        origin,
        dir: origin.parent().unwrap_or(Path::new("")).to_owned(),
        files,
        max_file: DEFAULT_MAX_FILE_BYTES,
    };
    let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError {
        file: origin.to_owned(),
        position: e.span().map(|s| cx.position(s.start)),
        reason: e.message().trim_end().to_owned(),
    })?;
    if let Some(mib) = &raw.node.max_file_mib {
        if *mib.get_ref() == 0 {
            return Err(cx.error(Some(mib.span()), "max_file_mib must be positive"));
        }
        cx.max_file = mib.get_ref().saturating_mul(1 << 20);
    }
    let cx = cx;
    let mut warnings = Vec::new();

    // `[node.mrt]` and `[node.bgp]` replace the own POP's route file, which is then not read.
    let own_replaced = raw.node.mrt.is_some() || raw.node.bgp.is_some();
    let mut pops = raw
        .pops
        .iter()
        .map(|p| {
            let replaced = own_replaced && p.get_ref().name.get_ref() == raw.node.pop.get_ref();
            cx.pop(p, replaced, &mut warnings)
        })
        .collect::<Result<Vec<_>, _>>()?;
    if pops.is_empty() {
        return Err(cx.error(None, "no POP is configured (add a [[pop]] table)"));
    }
    cx.check_unique(&raw.pops, |p| &p.name, "POP name")?;
    cx.check_unique(&raw.pops, |p| &p.asn, "POP ASN")?;
    let names: Vec<String> = pops.iter().map(|p| p.name.clone()).collect();
    let pop_index = |name: &Spanned<String>| {
        names
            .iter()
            .position(|p| p == name.get_ref())
            .ok_or_else(|| {
                cx.error(
                    Some(name.span()),
                    format!("no POP is named `{}`", name.get_ref()),
                )
            })
    };

    let mut node = NodeSettings {
        pop: pop_index(&raw.node.pop)?,
        listen: cx.listen(&raw.node.listen)?,
        tcp_idle_timeout: raw
            .node
            .tcp_idle_timeout_secs
            .as_ref()
            .map_or(DEFAULT_TCP_IDLE_TIMEOUT, |s| {
                Duration::from_secs(*s.get_ref())
            }),
        max_udp_payload: match &raw.node.max_udp_payload {
            None => DEFAULT_MAX_UDP_PAYLOAD,
            Some(p) if *p.get_ref() < 512 => {
                return Err(cx.error(Some(p.span()), "max_udp_payload must be at least 512"));
            }
            Some(p) => *p.get_ref(),
        },
        dns_workers: match &raw.node.dns_workers {
            None => None,
            Some(w) if (1..=MAX_DNS_WORKERS).contains(w.get_ref()) => Some(*w.get_ref()),
            Some(w) => {
                return Err(cx.error(
                    Some(w.span()),
                    format!("dns_workers must be from 1 to {MAX_DNS_WORKERS}"),
                ));
            }
        },
        tcp_max_connections: match &raw.node.tcp_max_connections {
            None => DEFAULT_TCP_MAX_CONNECTIONS,
            Some(n) if *n.get_ref() > 0 => *n.get_ref(),
            Some(n) => {
                return Err(cx.error(Some(n.span()), "tcp_max_connections must be at least 1"));
            }
        },
        cookie_secret: match &raw.node.cookie_secret {
            None => None,
            Some(hex) => Some(parse_secret(hex.get_ref()).ok_or_else(|| {
                cx.error(
                    Some(hex.span()),
                    "cookie_secret must be 32 hexadecimal digits (16 bytes)",
                )
            })?),
        },
        nsid: zones::nsid(
            raw.node.nsid.as_ref().map(Spanned::get_ref),
            raw.node.pop.get_ref(),
        )
        .map_err(|reason| cx.error(raw.node.nsid.as_ref().map(Spanned::span), reason))?,
        rrl: match &raw.node.rrl {
            None => None,
            Some(r) => Some(rrl(&cx, r.get_ref())?),
        },
        probes: raw
            .node
            .probes
            .iter()
            .enumerate()
            .map(|(i, p)| cx.probe(i, p))
            .collect::<Result<_, _>>()?,
        api_socket: raw.node.api_socket.as_ref().map(|p| cx.dir.join(p)),
        state_dir: raw.node.state_dir.as_ref().map(|p| cx.dir.join(p)),
        max_file_bytes: cx.max_file,
        ready_timeout: raw
            .node
            .ready_timeout_secs
            .as_ref()
            .map_or(DEFAULT_READY_TIMEOUT, |s| Duration::from_secs(*s.get_ref())),
        load_high_water: match &raw.node.load_high_water {
            None => health::DEFAULT_HIGH_WATER,
            Some(h) if (0.0..=1.0).contains(h.get_ref()) => *h.get_ref(),
            Some(h) => {
                return Err(cx.error(Some(h.span()), "load_high_water must be from 0.0 to 1.0"));
            }
        },
        load: match &raw.node.load {
            None => None,
            Some(l) => Some(cx.load(l)?),
        },
        metrics_listen: match &raw.node.metrics_listen {
            None => None,
            Some(a) => Some(cx.metrics_listen(a, &mut warnings)?),
        },
        own_view: OwnViewSource::File(None),
    };
    node.own_view = match (&raw.node.mrt, &raw.node.bgp) {
        (Some(_), Some(bgp)) => {
            return Err(cx.error(
                Some(bgp.span()),
                "node.mrt and node.bgp are two sources of the same view: keep one",
            ));
        }
        (Some(mrt), None) => {
            let own = &mut pops[node.pop];
            let (source, view) = cx.mrt(mrt, own.asn, &own.name, &mut warnings)?;
            own.route_view = Some(Arc::new(view));
            OwnViewSource::Mrt(source)
        }
        (None, Some(bgp)) => OwnViewSource::Bgp(cx.bgp(bgp)?),
        (None, None) => OwnViewSource::File(
            raw.pops
                .iter()
                .find(|p| p.get_ref().name.get_ref() == raw.node.pop.get_ref())
                .and_then(|p| p.get_ref().route_view.as_ref())
                .map(|f| cx.dir.join(f.get_ref())),
        ),
    };

    let mut zones = cx.zones(&raw.zone)?;
    // Relative geo names are taken against the first zone configured (INVARIANT: `builders`
    // refuses a config without zones).
    let origin_name = zones[0].origin_name().clone();
    let geo = raw
        .geo
        .iter()
        .map(|g| cx.geo(g, &origin_name, &mut zones, pops.len(), &pop_index))
        .collect::<Result<Vec<_>, _>>()?;
    for (i, g) in geo.iter().enumerate() {
        if let Some(first) = geo[..i].iter().position(|other| other.name == g.name) {
            let (line, _) = cx.position(raw.geo[first].get_ref().name.span().start);
            return Err(cx.error(
                Some(raw.geo[i].get_ref().name.span()),
                format!("geo name {} is already used on line {line}", g.name),
            ));
        }
    }
    let zones = zones
        .into_iter()
        .zip(&raw.zone.0)
        .map(|(b, z)| {
            b.build()
                .map_err(|reason| cx.error(Some(z.origin.span()), reason))
        })
        .collect::<Result<Vec<_>, _>>()?;
    // Each zone's transfer settings, by origin, in config order.
    let transfers = zones
        .iter()
        .zip(&raw.zone.0)
        .map(|(zone, z)| {
            let settings = transfer::validate(z, &raw.tsig_keys, &|span, r| cx.error(span, r))?;
            Ok((zone.origin().clone(), settings))
        })
        .collect::<Result<Vec<_>, ConfigError>>()?;
    let zones = Zones::new(zones);
    let mut geo = geo;
    services::targets(&cx, &raw.geo, &mut geo, &pops, &origin_name, &pop_index)?;
    services::static_conflicts(&cx, &raw.geo, &geo, &zones, &raw.zone.0)?;
    services::probes(&cx, &raw.node.probes, &mut node.probes, &geo)?;

    let static_map = match &raw.static_map {
        None => None,
        Some(sm) => {
            let (path, text) = cx.read(&sm.file, "static map")?;
            let (map, skipped) =
                routes::parse_static_map(&text, |asn| pops.iter().position(|p| p.asn == asn));
            if !skipped.is_empty() {
                warnings.push(format!(
                    "{}: static map loaded partially: {} lines loaded, {}",
                    path.display(),
                    map.len(),
                    describe_skipped(&skipped)
                ));
            }
            Some(Arc::new(map))
        }
    };

    let cluster = match &raw.cluster {
        None => None,
        Some(c) => Some(cx.cluster(c, &pops[node.pop].name, pops.len())?),
    };

    let mut config = Config {
        origin: origin.to_owned(),
        node,
        zones,
        pops,
        geo,
        static_map,
        cluster,
        transfers,
        digest: 0,
    };
    config.digest = config.compute_digest();
    Ok(Loaded { config, warnings })
}

/// The validation context: the source text (for line numbers) and where files come from.
pub(super) struct Cx<'a> {
    text: &'a str,
    origin: &'a Path,
    dir: PathBuf,
    files: &'a dyn FileSource,
    /// Largest file read.
    max_file: u64,
}

impl Cx<'_> {
    pub(super) fn position(&self, offset: usize) -> (usize, usize) {
        line_col(self.text, offset)
    }

    pub(super) fn error(
        &self,
        span: Option<Range<usize>>,
        reason: impl Into<String>,
    ) -> ConfigError {
        ConfigError {
            file: self.origin.to_owned(),
            position: span.map(|s| self.position(s.start)),
            reason: reason.into(),
        }
    }

    /// Reads a file named in the config, relative to the config's folder.
    pub(super) fn read(
        &self,
        name: &Spanned<String>,
        what: &str,
    ) -> Result<(PathBuf, String), ConfigError> {
        let path = self.dir.join(name.get_ref());
        let text = self.files.read(&path, self.max_file).map_err(|e| {
            self.error(
                Some(name.span()),
                format!("cannot read {what} {}: {e}", path.display()),
            )
        })?;
        Ok((path, text))
    }

    fn check_unique<T, K: PartialEq + fmt::Display>(
        &self,
        items: &[Spanned<T>],
        key: impl Fn(&T) -> &Spanned<K>,
        what: &str,
    ) -> Result<(), ConfigError> {
        for (i, item) in items.iter().enumerate() {
            let k = key(item.get_ref());
            if let Some(first) = items[..i]
                .iter()
                .find(|other| key(other.get_ref()).get_ref() == k.get_ref())
            {
                let (line, _) = self.position(key(first.get_ref()).span().start);
                return Err(self.error(
                    Some(k.span()),
                    format!("{what} `{}` is already used on line {line}", k.get_ref()),
                ));
            }
        }
        Ok(())
    }

    /// A domain name: absolute if it ends with a dot, `@` for `base`, else relative to `base`.
    pub(super) fn name(&self, s: &Spanned<String>, base: &Name) -> Result<Name, ConfigError> {
        parse_name(s.get_ref(), base).map_err(|reason| self.error(Some(s.span()), reason))
    }

    fn listen(
        &self,
        listen: &Spanned<Vec<Spanned<String>>>,
    ) -> Result<Vec<SocketAddr>, ConfigError> {
        if listen.get_ref().is_empty() {
            return Err(self.error(
                Some(listen.span()),
                "node.listen needs at least one address",
            ));
        }
        listen
            .get_ref()
            .iter()
            .map(|a| {
                a.get_ref().parse().map_err(|_| {
                    self.error(
                        Some(a.span()),
                        format!(
                            "`{}` is not an ADDRESS:PORT (IPv6 as [::1]:53)",
                            a.get_ref()
                        ),
                    )
                })
            })
            .collect()
    }

    fn pop(
        &self,
        raw: &Spanned<RawPop>,
        replaced: bool,
        warnings: &mut Vec<String>,
    ) -> Result<Pop, ConfigError> {
        let p = raw.get_ref();
        let name = p.name.get_ref();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(self.error(
                Some(p.name.span()),
                format!("POP name `{name}` must be letters, digits, `-` or `_`"),
            ));
        }
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for a in p.addresses.get_ref() {
            match a.get_ref().parse::<IpAddr>() {
                Ok(IpAddr::V4(ip)) => v4.push(ip),
                Ok(IpAddr::V6(ip)) => v6.push(ip),
                Err(_) => {
                    return Err(self.error(
                        Some(a.span()),
                        format!("`{}` is not an IP address", a.get_ref()),
                    ));
                }
            }
        }
        if v4.is_empty() && v6.is_empty() {
            return Err(self.error(
                Some(p.addresses.span()),
                format!("POP `{name}` has no answer address"),
            ));
        }
        let weight = match &p.weight {
            None => DEFAULT_WEIGHT,
            Some(w) if *w.get_ref() == 0 => {
                return Err(self.error(
                    Some(w.span()),
                    "weight must be at least 1 (drain a POP with admin = \"drained\")",
                ));
            }
            Some(w) => *w.get_ref(),
        };
        let admin = match p.admin.as_ref().map(|a| (a.get_ref().as_str(), a.span())) {
            None | Some(("active", _)) => AdminState::Active,
            Some(("drained", _)) => AdminState::Drained,
            Some((other, span)) => {
                return Err(self.error(
                    Some(span),
                    format!("admin must be \"active\" or \"drained\", not \"{other}\""),
                ));
            }
        };
        let mut route_view_path = None;
        let route_view = match &p.route_view {
            None => None,
            Some(_) if replaced => None,
            Some(file) => {
                let (path, text) = self.read(file, "route view")?;
                let (view, skipped) = routes::parse_route_view(&text);
                if !skipped.is_empty() {
                    warnings.push(format!(
                        "{}: route view of POP {name} loaded partially: {} routes loaded, {}",
                        path.display(),
                        view.len(),
                        describe_skipped(&skipped)
                    ));
                }
                route_view_path = Some(path);
                Some(Arc::new(view))
            }
        };
        Ok(Pop {
            name: name.clone(),
            asn: *p.asn.get_ref(),
            v4,
            v6,
            preference: p.preference.unwrap_or(DEFAULT_PREFERENCE),
            weight,
            admin,
            route_view,
            route_view_path,
        })
    }

    /// `[node.mrt]`: the source, and the view the dump holds now.
    fn mrt(
        &self,
        raw: &Spanned<RawMrt>,
        own_asn: u32,
        own_pop: &str,
        warnings: &mut Vec<String>,
    ) -> Result<(MrtSource, RouteView), ConfigError> {
        let m = raw.get_ref();
        let ip = match &m.peer {
            None => None,
            Some(p) => Some(p.get_ref().parse::<IpAddr>().map_err(|_| {
                self.error(
                    Some(p.span()),
                    format!("`{}` is not an IP address", p.get_ref()),
                )
            })?),
        };
        let asn = m.peer_asn.as_ref().map(|a| *a.get_ref());
        if ip.is_none() && asn.is_none() {
            return Err(self.error(
                Some(raw.span()),
                "node.mrt needs `peer` (its address in the dump) and/or `peer_asn`",
            ));
        }
        let poll_interval = match &m.poll_interval_ms {
            None => DEFAULT_MRT_POLL_INTERVAL,
            Some(ms) if *ms.get_ref() == 0 => {
                return Err(self.error(Some(ms.span()), "poll_interval_ms must be positive"));
            }
            Some(ms) => Duration::from_millis(*ms.get_ref()),
        };
        let path = self.dir.join(m.file.get_ref());
        let bytes = self.files.read_bytes(&path, self.max_file).map_err(|e| {
            self.error(
                Some(m.file.span()),
                format!("cannot read MRT dump {}: {e}", path.display()),
            )
        })?;
        let peer = PeerSelector { ip, asn };
        let load = routes::mrt::load(&bytes, &peer, own_asn).map_err(|e| {
            let span = match e {
                routes::mrt::MrtError::UnknownPeer { .. } => m
                    .peer
                    .as_ref()
                    .map(Spanned::span)
                    .or_else(|| m.peer_asn.as_ref().map(Spanned::span)),
                _ => None,
            };
            self.error(
                Some(span.unwrap_or_else(|| m.file.span())),
                format!("{}: {e}", path.display()),
            )
        })?;
        if !load.skipped.is_empty() {
            warnings.push(format!(
                "{}: route view of POP {own_pop} loaded partially: {} routes loaded, {}",
                path.display(),
                load.view.len(),
                routes::mrt::describe_skipped(&load.skipped)
            ));
        }
        let source = MrtSource {
            path,
            peer,
            poll_interval,
        };
        Ok((source, load.view))
    }

    /// `[node.bgp]`.
    fn bgp(&self, raw: &Spanned<RawBgp>) -> Result<BgpConfig, ConfigError> {
        let b = raw.get_ref();
        let nonzero_asn = |a: &Spanned<u32>, key: &str| {
            if *a.get_ref() == 0 {
                Err(self.error(Some(a.span()), format!("{key} must not be 0")))
            } else {
                Ok(*a.get_ref())
            }
        };
        let router_id = match b.router_id.get_ref().parse::<Ipv4Addr>() {
            Ok(id) if !id.is_unspecified() => id,
            _ => {
                return Err(self.error(
                    Some(b.router_id.span()),
                    format!(
                        "router_id `{}` must be a non-zero IPv4 address (RFC 6286)",
                        b.router_id.get_ref()
                    ),
                ));
            }
        };
        let peer = b.peer.get_ref().parse::<IpAddr>().map_err(|_| {
            self.error(
                Some(b.peer.span()),
                format!("`{}` is not an IP address", b.peer.get_ref()),
            )
        })?;
        let listen = match &b.listen {
            None => None,
            Some(l) => Some(l.get_ref().parse::<SocketAddr>().map_err(|_| {
                self.error(
                    Some(l.span()),
                    format!(
                        "`{}` is not an ADDRESS:PORT (IPv6 as [::]:179)",
                        l.get_ref()
                    ),
                )
            })?),
        };
        let mode = match b.mode.as_ref().map(|m| (m.get_ref().as_str(), m.span())) {
            None | Some(("active", _)) => {
                if let Some(l) = &b.listen {
                    return Err(self.error(
                        Some(l.span()),
                        "listen is for mode = \"passive\" (active mode connects to the peer)",
                    ));
                }
                BgpMode::Active
            }
            Some(("passive", _)) => {
                if let Some(p) = &b.peer_port {
                    return Err(self.error(
                        Some(p.span()),
                        "peer_port is for mode = \"active\" (in passive mode the peer connects)",
                    ));
                }
                BgpMode::Passive(listen.unwrap_or_else(|| {
                    SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), DEFAULT_BGP_PORT)
                }))
            }
            Some((other, span)) => {
                return Err(self.error(
                    Some(span),
                    format!("mode must be \"active\" or \"passive\", not \"{other}\""),
                ));
            }
        };
        let hold_time = match &b.hold_time_secs {
            None => DEFAULT_BGP_HOLD_TIME,
            // RFC 4271 §4.2: zero (no keepalives) or at least three seconds.
            Some(h) if matches!(*h.get_ref(), 1 | 2) => {
                return Err(self.error(
                    Some(h.span()),
                    "hold_time_secs must be 0 or at least 3 (RFC 4271)",
                ));
            }
            Some(h) => *h.get_ref(),
        };
        let ms = |v: &Option<Spanned<u64>>, key: &str, default: Duration| match v {
            None => Ok(default),
            Some(ms) if *ms.get_ref() == 0 => {
                Err(self.error(Some(ms.span()), format!("{key} must be positive")))
            }
            Some(ms) => Ok(Duration::from_millis(*ms.get_ref())),
        };
        let retry_min = ms(&b.retry_min_ms, "retry_min_ms", DEFAULT_BGP_RETRY_MIN)?;
        let retry_max = ms(&b.retry_max_ms, "retry_max_ms", DEFAULT_BGP_RETRY_MAX)?;
        if retry_max < retry_min {
            let span = b.retry_max_ms.as_ref().or(b.retry_min_ms.as_ref());
            return Err(self.error(
                span.map(Spanned::span),
                "retry_max_ms must not be below retry_min_ms",
            ));
        }
        Ok(BgpConfig {
            local_asn: nonzero_asn(&b.local_asn, "local_asn")?,
            router_id,
            peer,
            peer_port: b
                .peer_port
                .as_ref()
                .map_or(DEFAULT_BGP_PORT, |p| *p.get_ref()),
            peer_asn: nonzero_asn(&b.peer_asn, "peer_asn")?,
            mode,
            hold_time,
            retry_min,
            retry_max,
            publish_interval: ms(
                &b.publish_interval_ms,
                "publish_interval_ms",
                DEFAULT_BGP_PUBLISH_INTERVAL,
            )?,
            max_prefixes: match &b.max_prefixes {
                None => DEFAULT_BGP_MAX_PREFIXES,
                Some(n) if *n.get_ref() == 0 => {
                    return Err(self.error(Some(n.span()), "max_prefixes must be positive"));
                }
                Some(n) => *n.get_ref(),
            },
            max_prefix_action: match b
                .max_prefix_action
                .as_ref()
                .map(|a| (a.get_ref().as_str(), a.span()))
            {
                None | Some(("refuse", _)) => MaxPrefixAction::Refuse,
                Some(("hold", _)) => MaxPrefixAction::Hold,
                Some((other, span)) => {
                    return Err(self.error(
                        Some(span),
                        format!("max_prefix_action `{other}` is neither \"refuse\" nor \"hold\""),
                    ));
                }
            },
        })
    }

    fn cluster(
        &self,
        raw: &Spanned<RawCluster>,
        own_pop: &str,
        pops: usize,
    ) -> Result<ClusterConfig, ConfigError> {
        let c = raw.get_ref();
        let listen = c.listen.get_ref().parse().map_err(|_| {
            self.error(
                Some(c.listen.span()),
                format!("`{}` is not an ADDRESS:PORT", c.listen.get_ref()),
            )
        })?;
        let (_, ca_pem) = self.read(&c.ca, "cluster CA")?;
        let (cert_path, cert_pem) = self.read(&c.cert, "node certificate")?;
        let (_, key_pem) = self.read(&c.key, "node key")?;
        // The certificate must name this node of this cluster, or peers will refuse it.
        let want = pki::Identity {
            cluster: c.id.get_ref().clone(),
            role: pki::Role::Node,
            name: own_pop.to_owned(),
        };
        let found = pki::cert_der(&cert_pem).and_then(|der| pki::identity_of(&der));
        match found {
            Ok(id) if id == want => {}
            Ok(id) => {
                return Err(self.error(
                    Some(c.cert.span()),
                    format!("{} names {id}, this node is {want}", cert_path.display()),
                ));
            }
            Err(e) => {
                return Err(
                    self.error(Some(c.cert.span()), format!("{}: {e}", cert_path.display()))
                );
            }
        }
        let quorum = match &c.quorum {
            None => default_quorum(pops),
            Some(q) if *q.get_ref() == 0 || *q.get_ref() > pops => {
                return Err(self.error(
                    Some(q.span()),
                    format!("quorum must be between 1 and the number of POPs ({pops})"),
                ));
            }
            Some(q) => *q.get_ref(),
        };
        let gossip_interval = match &c.gossip_interval_ms {
            None => DEFAULT_GOSSIP_INTERVAL,
            Some(ms) if *ms.get_ref() == 0 => {
                return Err(self.error(Some(ms.span()), "gossip_interval_ms must be positive"));
            }
            Some(ms) => Duration::from_millis(*ms.get_ref()),
        };
        Ok(ClusterConfig {
            id: c.id.get_ref().clone(),
            listen,
            seeds: c.seeds.iter().map(|s| s.get_ref().clone()).collect(),
            ca_pem,
            cert_pem,
            key_pem,
            quorum,
            local_only_ttl: c.local_only_ttl.unwrap_or(DEFAULT_LOCAL_ONLY_TTL),
            gossip_interval,
            revoked: self.revoked(&c.revoked)?,
        })
    }

    /// Revoked certificate serial numbers, in the form [`pki::serial_of`] gives.
    fn revoked(&self, serials: &[Spanned<String>]) -> Result<Vec<String>, ConfigError> {
        serials
            .iter()
            .map(|s| {
                let text = s.get_ref();
                let digits = text.trim().trim_start_matches("0x").replace(':', "");
                if digits.is_empty() || digits.len() > 40 || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
                    return Err(self.error(
                        Some(s.span()),
                        format!("`{text}` is not a certificate serial number (hex, as `sparrow cert` prints it)"),
                    ));
                }
                Ok(pki::normalize_serial(text))
            })
            .collect()
    }

    /// The metrics endpoint's address. Anything but loopback is allowed, with a warning:
    /// the metrics name the POPs, their state and the traffic, and the endpoint has no
    /// authentication of its own.
    fn metrics_listen(
        &self,
        addr: &Spanned<String>,
        warnings: &mut Vec<String>,
    ) -> Result<SocketAddr, ConfigError> {
        let parsed: SocketAddr = addr.get_ref().parse().map_err(|_| {
            self.error(
                Some(addr.span()),
                format!(
                    "metrics_listen `{}` is not an ADDRESS:PORT (IPv6 as [::1]:9153)",
                    addr.get_ref()
                ),
            )
        })?;
        if !parsed.ip().is_loopback() {
            let (line, col) = self.position(addr.span().start);
            warnings.push(format!(
                "{}:{line}:{col}: metrics_listen {parsed} is not a loopback address: anyone who can reach it can read the metrics",
                self.origin.display()
            ));
        }
        Ok(parsed)
    }

    /// An HTTP(S) probe target: `url` (`http://` or `https://`), an optional `host`
    /// override (Host header, and for https the name the certificate must carry) and an
    /// optional `ca` file (PEM) that https checks trust instead of the system roots.
    fn http_target(
        &self,
        url: &Spanned<String>,
        host: Option<&Spanned<String>>,
        ca: Option<&Spanned<String>>,
    ) -> Result<health::HttpTarget, ConfigError> {
        let text = url.get_ref();
        let at_url = |reason: String| self.error(Some(url.span()), reason);
        let uri: hyper::Uri = text
            .parse()
            .map_err(|e| at_url(format!("`{text}` is not a URL: {e}")))?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => {
                return Err(at_url(format!(
                    "`{text}` is not an http:// or https:// URL"
                )));
            }
        };
        let authority = uri
            .authority()
            .filter(|a| !a.host().is_empty())
            .ok_or_else(|| at_url(format!("`{text}` has no host")))?;
        if authority.as_str().contains('@') {
            return Err(at_url(format!(
                "`{text}`: credentials in probe URLs are not supported"
            )));
        }
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        let dial = format!("{}:{port}", authority.host());
        let (header, name_host) = match host {
            None => (authority.as_str().to_owned(), authority.host().to_owned()),
            Some(h) => {
                let parsed: hyper::http::uri::Authority = h.get_ref().parse().map_err(|_| {
                    self.error(
                        Some(h.span()),
                        format!("host `{}` is not HOST or HOST:PORT", h.get_ref()),
                    )
                })?;
                if parsed.as_str().contains('@') {
                    return Err(self.error(Some(h.span()), "host cannot hold credentials"));
                }
                (parsed.as_str().to_owned(), parsed.host().to_owned())
            }
        };
        let tls = if https {
            let server_name = name_host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned();
            let span = host.map_or(url.span(), Spanned::span);
            rustls::pki_types::ServerName::try_from(server_name.as_str()).map_err(|_| {
                self.error(
                    Some(span),
                    format!("`{server_name}` is not a DNS name or IP address for TLS"),
                )
            })?;
            let ca = match ca {
                None => None,
                Some(file) => Some(self.ca_file(file)?),
            };
            Some(health::HttpsTrust { server_name, ca })
        } else {
            if let Some(file) = ca {
                return Err(self.error(Some(file.span()), "`ca` applies to https:// URLs only"));
            }
            None
        };
        Ok(health::HttpTarget {
            url: text.clone(),
            authority: dial,
            host: header,
            path: uri.path_and_query().map_or("/", |p| p.as_str()).to_owned(),
            tls,
        })
    }

    /// The DER certificates of a PEM file named by a probe's `ca`.
    fn ca_file(&self, file: &Spanned<String>) -> Result<Vec<Vec<u8>>, ConfigError> {
        let (path, text) = self.read(file, "probe CA")?;
        let mut certs = Vec::new();
        for block in x509_parser::pem::Pem::iter_from_buffer(text.as_bytes()) {
            let bad = |reason: String| {
                self.error(Some(file.span()), format!("{}: {reason}", path.display()))
            };
            let block = block.map_err(|e| bad(format!("not PEM: {e}")))?;
            if block.label != "CERTIFICATE" {
                continue;
            }
            block
                .parse_x509()
                .map_err(|e| bad(format!("not an X.509 certificate: {e}")))?;
            certs.push(block.contents);
        }
        if certs.is_empty() {
            return Err(self.error(
                Some(file.span()),
                format!("{}: no PEM certificate in the file", path.display()),
            ));
        }
        Ok(certs)
    }

    fn load(&self, raw: &Spanned<RawLoad>) -> Result<health::LoadProbe, ConfigError> {
        let l = raw.get_ref();
        let missing = |what: &str| {
            self.error(
                Some(raw.span()),
                format!("a {} load probe needs `{what}`", l.kind.get_ref()),
            )
        };
        let kind = match l.kind.get_ref().as_str() {
            "exec" => match &l.command {
                Some(argv) if !argv.is_empty() => health::LoadKind::Exec { argv: argv.clone() },
                _ => return Err(missing("command")),
            },
            "file" => health::LoadKind::File {
                path: self
                    .dir
                    .join(l.path.as_ref().ok_or_else(|| missing("path"))?),
            },
            "http" => {
                let url = l.url.as_ref().ok_or_else(|| missing("url"))?;
                health::LoadKind::Http {
                    target: self.http_target(url, l.host.as_ref(), l.ca.as_ref())?,
                    field: l.field.clone().ok_or_else(|| missing("field"))?,
                }
            }
            other => {
                return Err(self.error(
                    Some(l.kind.span()),
                    format!("load kind must be \"exec\", \"http\" or \"file\", not \"{other}\""),
                ));
            }
        };
        let interval = l
            .interval_ms
            .map_or(health::DEFAULT_INTERVAL, Duration::from_millis);
        let timeout = l
            .timeout_ms
            .map_or(health::DEFAULT_TIMEOUT.min(interval), Duration::from_millis);
        if interval.is_zero() || timeout.is_zero() || timeout > interval {
            return Err(self.error(
                Some(raw.span()),
                "a load probe needs 0 < timeout_ms <= interval_ms",
            ));
        }
        Ok(health::LoadProbe {
            kind,
            interval,
            timeout,
        })
    }

    fn probe(&self, index: usize, raw: &Spanned<RawProbe>) -> Result<Probe, ConfigError> {
        let p = raw.get_ref();
        let at = |span: Range<usize>, reason: String| self.error(Some(span), reason);
        let need = |field: &Option<Spanned<String>>, name: &str| {
            field.as_ref().map(|f| f.get_ref().clone()).ok_or_else(|| {
                at(
                    raw.span(),
                    format!("a {} probe needs `{name}`", p.kind.get_ref()),
                )
            })
        };
        let kind = match p.kind.get_ref().as_str() {
            "tcp" => ProbeKind::Tcp {
                target: need(&p.target, "target")?,
            },
            "http" => {
                let url = p
                    .url
                    .as_ref()
                    .ok_or_else(|| at(raw.span(), "an http probe needs `url`".to_owned()))?;
                ProbeKind::Http {
                    target: self.http_target(url, p.host.as_ref(), p.ca.as_ref())?,
                    expect_status: p.expect_status.unwrap_or(200),
                    body_contains: p.body_contains.clone(),
                }
            }
            "exec" => match &p.command {
                Some(c) if !c.get_ref().is_empty() => ProbeKind::Exec {
                    argv: c.get_ref().clone(),
                    exit_codes: self.exit_codes(p.exit_codes.as_ref())?,
                },
                Some(c) => return Err(at(c.span(), "command is empty".to_owned())),
                None => return Err(at(raw.span(), "an exec probe needs `command`".to_owned())),
            },
            other => {
                return Err(at(
                    p.kind.span(),
                    format!("probe kind must be \"tcp\", \"http\" or \"exec\", not \"{other}\""),
                ));
            }
        };
        if let Some(e) = &p.exit_codes
            && !matches!(kind, ProbeKind::Exec { .. })
        {
            return Err(at(
                e.span(),
                format!(
                    "exit_codes applies to exec probes only, not to a {} probe",
                    p.kind.get_ref()
                ),
            ));
        }
        let ms = |v: &Option<Spanned<u64>>, default: Duration| {
            v.as_ref()
                .map_or(default, |v| Duration::from_millis(*v.get_ref()))
        };
        let interval = ms(&p.interval_ms, health::DEFAULT_INTERVAL);
        let timeout = ms(&p.timeout_ms, health::DEFAULT_TIMEOUT.min(interval));
        if interval.is_zero() || timeout.is_zero() || timeout > interval {
            let span = p
                .timeout_ms
                .as_ref()
                .or(p.interval_ms.as_ref())
                .map_or(raw.span(), Spanned::span);
            return Err(at(
                span,
                "a probe needs 0 < timeout_ms <= interval_ms".to_owned(),
            ));
        }
        Ok(Probe {
            name: p
                .name
                .clone()
                .unwrap_or_else(|| format!("{}#{}", p.kind.get_ref(), index + 1)),
            kind,
            interval,
            timeout,
            rise: p.rise.unwrap_or(health::DEFAULT_RISE).max(1),
            fall: p.fall.unwrap_or(health::DEFAULT_FALL).max(1),
            // Set by `services::probes` once the geo names are known.
            service: None,
        })
    }

    /// An exec probe's `exit_codes`: how its exit code is read (default: Nagios').
    fn exit_codes(&self, raw: Option<&Spanned<String>>) -> Result<ExitCodes, ConfigError> {
        let Some(raw) = raw else {
            return Ok(ExitCodes::default());
        };
        ExitCodes::from_name(raw.get_ref()).ok_or_else(|| {
            self.error(
                Some(raw.span()),
                format!(
                    "exit_codes must be \"nagios\" or \"plain\", not \"{}\"",
                    raw.get_ref()
                ),
            )
        })
    }

    /// The zones' builders, in config order, with their static data; origins must differ.
    fn zones(&self, raw: &RawZones) -> Result<Vec<ZoneBuilder>, ConfigError> {
        if raw.0.is_empty() {
            return Err(self.error(None, "no zone is configured (add a [zone] table)"));
        }
        let mut zones: Vec<ZoneBuilder> = Vec::with_capacity(raw.0.len());
        for z in &raw.0 {
            let origin = self.name(&z.origin, &Name::root())?;
            let lower = LowerName::from(&origin);
            if zones.iter().any(|b| *b.origin() == lower) {
                return Err(self.error(
                    Some(z.origin.span()),
                    format!("zone {origin} is configured twice"),
                ));
            }
            zones.push(self.zone(z, &origin)?);
        }
        Ok(zones)
    }

    fn zone(&self, raw: &RawZone, origin: &Name) -> Result<ZoneBuilder, ConfigError> {
        let ttl = raw.ttl.as_ref().map_or(DEFAULT_TTL, |t| *t.get_ref());
        let mut zone = ZoneBuilder::new(origin.clone());
        if let Some(file) = &raw.file {
            let (path, text) = self.read(file, "zone file")?;
            let file_name = path.display().to_string();
            // Records go into the zone as they are read; the first that does not fit there
            // (a CNAME beside other data, a second SOA...) is reported with its line.
            let mut refused: Option<String> = None;
            zonefile::parse_each(&text, origin, |line, record| {
                if refused.is_none()
                    && let Err(reason) = zone.add(record)
                {
                    refused = Some(format!("{file_name}:{line}: {reason}"));
                }
            })
            .map_err(|e| self.error(Some(file.span()), e.render(&file_name)))?;
            if let Some(reason) = refused {
                return Err(self.error(Some(file.span()), reason));
            }
        }
        if let Some(soa) = &raw.soa {
            let s = soa.get_ref();
            let at = |name: &str| {
                parse_name(name, origin).map_err(|reason| self.error(Some(soa.span()), reason))
            };
            let to_i32 = |v: u32| i32::try_from(v).unwrap_or(i32::MAX);
            let record = Record::from_rdata(
                origin.clone(),
                s.ttl.unwrap_or(ttl),
                RData::SOA(SOA::new(
                    at(&s.mname)?,
                    at(&s.rname)?,
                    s.serial,
                    to_i32(s.refresh.unwrap_or(DEFAULT_SOA_REFRESH)),
                    to_i32(s.retry.unwrap_or(DEFAULT_SOA_RETRY)),
                    to_i32(s.expire.unwrap_or(DEFAULT_SOA_EXPIRE)),
                    s.minimum.unwrap_or(DEFAULT_SOA_MINIMUM),
                )),
            );
            zone.add(record)
                .map_err(|reason| self.error(Some(soa.span()), reason))?;
        }
        for ns in &raw.ns {
            let target = self.name(ns, origin)?;
            let record = Record::from_rdata(
                origin.clone(),
                ttl,
                RData::NS(hickory_proto::rr::rdata::NS(target)),
            );
            zone.add(record)
                .map_err(|reason| self.error(Some(ns.span()), reason))?;
        }
        for rec in &raw.records {
            let r = rec.get_ref();
            let err = |reason: String| self.error(Some(rec.span()), reason);
            let owner = parse_name(&r.name, origin).map_err(err)?;
            let line = format!(
                "{owner} {} IN {} {}\n",
                r.ttl.unwrap_or(ttl),
                r.rtype,
                r.data
            );
            let records = parse_zone_text(&line, origin)
                .map_err(|e| err(format!("record {} {} `{}`: {e}", r.name, r.rtype, r.data)))?;
            for record in records {
                zone.add(record).map_err(err)?;
            }
        }
        Ok(zone)
    }

    fn geo(
        &self,
        raw: &Spanned<RawGeo>,
        origin: &Name,
        zones: &mut [ZoneBuilder],
        pop_count: usize,
        pop_index: &dyn Fn(&Spanned<String>) -> Result<usize, ConfigError>,
    ) -> Result<GeoName, ConfigError> {
        let g = raw.get_ref();
        let name = self.name(&g.name, origin)?;
        let lower = LowerName::from(&name);
        let Some(zone) = zones::zone_of(zones, &lower) else {
            return Err(self.error(
                Some(g.name.span()),
                format!(
                    "geo name {name} is outside every zone ({})",
                    zones
                        .iter()
                        .map(|z| z.origin_name().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        };
        if zone.has_address_records(&lower) {
            return Err(self.error(
                Some(g.name.span()),
                format!("{name} is a geo name and also has static A, AAAA or CNAME records"),
            ));
        }
        zone.add_geo_name(&lower)
            .map_err(|reason| self.error(Some(g.name.span()), reason))?;
        // A service is named relative to the first zone (`api`), where relative geo names
        // are; in any other zone by its full name (`cdn.example.org`), so names stay unique.
        let service_origin = if zone.origin_name() == origin {
            origin.clone()
        } else {
            Name::root()
        };
        let answers = match &g.answers {
            None => DEFAULT_ANSWERS,
            Some(a) if *a.get_ref() == 0 => {
                return Err(self.error(Some(a.span()), "answers must be at least 1"));
            }
            Some(a) => *a.get_ref(),
        };
        let pops = match &g.pops {
            None => (0..pop_count).collect(),
            Some(list) if list.is_empty() => {
                return Err(
                    self.error(Some(g.name.span()), format!("geo name {name} lists no POP"))
                );
            }
            Some(list) => {
                let mut pops = list.iter().map(pop_index).collect::<Result<Vec<_>, _>>()?;
                pops.sort_unstable();
                pops.dedup();
                pops
            }
        };
        Ok(GeoName {
            service: services::service_name(&name, &service_origin),
            name,
            ttl: g.ttl.as_ref().map_or(DEFAULT_GEO_TTL, |t| *t.get_ref()),
            answers,
            pops,
            // Set by `services::targets` once the POPs are known.
            targets: Vec::new(),
            when_down: WhenDown::FailOpen,
            groups: Vec::new(),
            max_hops: None,
            weights: Vec::new(),
            canary: Vec::new(),
            https: None,
        })
    }
}

/// One inline record's text (`[[zone.record]]`), strictly (`dns::zonefile`).
fn parse_zone_text(text: &str, origin: &Name) -> Result<Vec<Record>, String> {
    zonefile::parse(text, origin).map_err(|e| {
        let reasons: Vec<String> = e.errors.into_iter().map(|e| e.reason).collect();
        reasons.join("; ")
    })
}

/// A zone file, in one linear pass; every error (up to a cap) as `file:line: reason`.
/// 32 hexadecimal digits as 16 bytes.
fn parse_secret(hex: &str) -> Option<[u8; 16]> {
    if hex.len() != 32 || !hex.is_ascii() {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// `[node.rrl]`: a rate of at least one, prefixes within their family.
fn rrl(cx: &Cx<'_>, r: &RawRrl) -> Result<RrlSettings, ConfigError> {
    let rate = *r.responses_per_second.get_ref();
    if rate == 0 {
        return Err(cx.error(
            Some(r.responses_per_second.span()),
            "responses_per_second must be at least 1",
        ));
    }
    let prefix = |p: &Option<Spanned<u8>>, default: u8, max: u8, what: &str| match p {
        None => Ok(default),
        Some(p) if *p.get_ref() <= max => Ok(*p.get_ref()),
        Some(p) => Err(cx.error(Some(p.span()), format!("{what} must be from 0 to {max}"))),
    };
    Ok(RrlSettings {
        responses_per_second: rate,
        slip: r.slip.unwrap_or(DEFAULT_RRL_SLIP),
        ipv4_prefix: prefix(&r.ipv4_prefix, DEFAULT_RRL_IPV4_PREFIX, 32, "ipv4_prefix")?,
        ipv6_prefix: prefix(&r.ipv6_prefix, DEFAULT_RRL_IPV6_PREFIX, 128, "ipv6_prefix")?,
    })
}
