//! [P] Services: a geo name's targets per POP (`[[geo.target]]`) and the probes attached to
//! one service (`service = "api"` in `[[node.probe]]`), checked once POPs and geo names are
//! known. A POP without a target answers with its own addresses, so configs without targets
//! keep their meaning.

use std::net::IpAddr;

use hickory_proto::rr::{LowerName, Name, RecordType};
use toml::Spanned;

use super::raw::{RawGeo, RawProbe, RawTarget, RawZone};
use super::validate::Cx;
use super::{ConfigError, GeoName, HttpsRecord, Pop, Target, WhenDown, parse_name};
use crate::dns::zone::Zones;
use crate::dns::zonefile;
use crate::health::spec::Probe;
use crate::policy::{MAX_GROUPS, NO_ROUTE};

/// The service name of geo name `name` in zone `origin`: the name relative to the origin
/// (`api`), `@` for the apex.
pub(super) fn service_name(name: &Name, origin: &Name) -> String {
    let labels = name.num_labels().saturating_sub(origin.num_labels());
    if labels == 0 {
        return "@".to_owned();
    }
    name.iter()
        .take(usize::from(labels))
        .map(|l| String::from_utf8_lossy(l).to_ascii_lowercase())
        .collect::<Vec<_>>()
        .join(".")
}

/// Fills every geo name's targets: its `[[geo.target]]` tables, and the POP's own addresses
/// for the POPs that have none.
pub(super) fn targets(
    cx: &Cx<'_>,
    raw: &[Spanned<RawGeo>],
    geo: &mut [GeoName],
    pops: &[Pop],
    origin: &Name,
    pop_index: &dyn Fn(&Spanned<String>) -> Result<usize, ConfigError>,
) -> Result<(), ConfigError> {
    for (g, r) in geo.iter_mut().zip(raw) {
        let r = r.get_ref();
        let mut set: Vec<Option<Target>> = vec![None; pops.len()];
        let mut seen = vec![false; pops.len()];
        let mut https_targets: Vec<Option<Name>> = vec![None; pops.len()];
        g.weights = pops.iter().map(|p| p.weight).collect();
        g.canary = vec![0; pops.len()];
        for t in &r.targets {
            let pop = pop_index(&t.get_ref().pop)?;
            if !g.pops.contains(&pop) {
                return Err(cx.error(
                    Some(t.get_ref().pop.span()),
                    format!("POP `{}` does not serve {}", pops[pop].name, g.name),
                ));
            }
            if seen[pop] {
                return Err(cx.error(
                    Some(t.get_ref().pop.span()),
                    format!("{} has two targets at POP `{}`", g.name, pops[pop].name),
                ));
            }
            seen[pop] = true;
            let raw = t.get_ref();
            if raw.addresses.is_some() || raw.cname.is_some() {
                set[pop] = Some(target(cx, t, origin)?);
            }
            if let Some(name) = &raw.https_target {
                if r.https.is_none() {
                    return Err(
                        cx.error(Some(name.span()), "https_target needs a [geo.https] table")
                    );
                }
                https_targets[pop] = Some(cx.name(name, origin)?);
            }
            if let Some(w) = &raw.weight {
                if *w.get_ref() == 0 {
                    return Err(cx.error(
                        Some(w.span()),
                        "weight must be at least 1 (drain it with `sparrow drain POP --service`)",
                    ));
                }
                g.weights[pop] = *w.get_ref();
            }
            if let Some(c) = &raw.canary {
                let share = *c.get_ref();
                if !(share > 0.0 && share <= 1.0) {
                    return Err(cx.error(
                        Some(c.span()),
                        "canary is a share of clients: above 0.0, at most 1.0",
                    ));
                }
                // The share in 2^-32, at least one client hash in 2^32.
                g.canary[pop] = ((share * f64::from(u32::MAX)) as u32).max(1);
            }
        }
        let cnames = set
            .iter()
            .filter(|t| matches!(t, Some(Target::Cname(_))))
            .count();
        if cnames > 0 {
            if let Some(&missing) = g.pops.iter().find(|&&p| set[p].is_none()) {
                return Err(cx.error(
                    Some(r.name.span()),
                    format!(
                        "{} answers with a CNAME, so every POP it lists needs one: `{}` has none",
                        g.name, pops[missing].name
                    ),
                ));
            }
            if cnames != g.pops.len() {
                return Err(cx.error(
                    Some(r.name.span()),
                    format!("{} mixes CNAME and address targets: keep one kind", g.name),
                ));
            }
            if g.answers != 1 {
                return Err(cx.error(
                    r.answers.as_ref().map(Spanned::span),
                    format!(
                        "{} answers with a CNAME, which names one POP: answers must be 1",
                        g.name
                    ),
                ));
            }
        }
        g.targets = set
            .into_iter()
            .zip(pops)
            .map(|(t, p)| {
                t.unwrap_or_else(|| Target::Addresses {
                    v4: p.v4.clone(),
                    v6: p.v6.clone(),
                })
            })
            .collect();
        g.when_down = when_down(cx, r, g, origin)?;
        g.https = match &r.https {
            None => None,
            Some(h) if g.is_cname() => {
                return Err(cx.error(
                    Some(h.span()),
                    format!(
                        "{} answers with a CNAME: it cannot answer HTTPS records too",
                        g.name
                    ),
                ));
            }
            Some(h) => {
                let h = h.get_ref();
                let priority = match &h.priority {
                    None => 1,
                    Some(p) if *p.get_ref() == 0 => {
                        return Err(cx.error(
                            Some(p.span()),
                            "priority must be at least 1 (an alias has no per-POP answer)",
                        ));
                    }
                    Some(p) => *p.get_ref(),
                };
                let alpn = h
                    .alpn
                    .as_ref()
                    .map_or_else(Vec::new, |a| a.get_ref().clone());
                if let Some(a) = &h.alpn
                    && a.get_ref().iter().any(|id| id.is_empty() || id.len() > 255)
                {
                    return Err(cx.error(Some(a.span()), "an alpn id is 1 to 255 bytes"));
                }
                Some(HttpsRecord {
                    priority,
                    alpn,
                    port: h.port,
                    targets: https_targets,
                })
            }
        };
        g.groups = groups(cx, r, g, pops, pop_index)?;
        g.max_hops = match &r.max_hops {
            Some(m) if *m.get_ref() == NO_ROUTE => {
                return Err(cx.error(Some(m.span()), format!("max_hops must be below {NO_ROUTE}")));
            }
            m => m.as_ref().map(|m| *m.get_ref()),
        };
    }
    Ok(())
}

/// Each POP's failover group: its position in `groups`, and one more for the POPs the list
/// leaves out.
fn groups(
    cx: &Cx<'_>,
    r: &RawGeo,
    g: &GeoName,
    pops: &[Pop],
    pop_index: &dyn Fn(&Spanned<String>) -> Result<usize, ConfigError>,
) -> Result<Vec<u8>, ConfigError> {
    let Some(list) = &r.groups else {
        return Ok(vec![0; pops.len()]);
    };
    if list.get_ref().len() >= MAX_GROUPS {
        return Err(cx.error(
            Some(list.span()),
            format!("at most {} failover groups", MAX_GROUPS - 1),
        ));
    }
    // INVARIANT: fewer than MAX_GROUPS (128) groups, checked above.
    let rest = u8::try_from(list.get_ref().len()).expect("fewer than 128 groups");
    let mut out: Vec<Option<u8>> = vec![None; pops.len()];
    for (i, group) in list.get_ref().iter().enumerate() {
        if group.is_empty() {
            return Err(cx.error(
                Some(list.span()),
                format!("failover group {} is empty", i + 1),
            ));
        }
        for name in group {
            let pop = pop_index(name)?;
            if !g.pops.contains(&pop) {
                return Err(cx.error(
                    Some(name.span()),
                    format!("POP `{}` does not serve {}", pops[pop].name, g.name),
                ));
            }
            if out[pop].is_some() {
                return Err(cx.error(
                    Some(name.span()),
                    format!("POP `{}` is in two failover groups", pops[pop].name),
                ));
            }
            // INVARIANT: i < rest < 128.
            out[pop] = Some(u8::try_from(i).expect("fewer than 128 groups"));
        }
    }
    Ok(out.into_iter().map(|g| g.unwrap_or(rest)).collect())
}

/// `when_down` and `[geo.fallback]`: a fallback alone implies `when_down = "fallback"`.
fn when_down(cx: &Cx<'_>, r: &RawGeo, g: &GeoName, origin: &Name) -> Result<WhenDown, ConfigError> {
    let word = r
        .when_down
        .as_ref()
        .map(|w| (w.get_ref().as_str(), w.span()));
    match (word, &r.fallback) {
        (None | Some(("fail-open", _)), None) => Ok(WhenDown::FailOpen),
        (Some(("nodata", _)), None) => Ok(WhenDown::NoData),
        (None | Some(("fallback", _)), Some(f)) => {
            let raw = f.get_ref();
            let target = targets_of(
                cx,
                f.span(),
                raw.addresses.as_ref(),
                raw.cname.as_ref(),
                origin,
            )?;
            if matches!(target, Target::Cname(_)) != g.is_cname() {
                return Err(cx.error(
                    Some(f.span()),
                    format!(
                        "{}'s fallback must be of the kind of its targets ({})",
                        g.name,
                        if g.is_cname() { "a CNAME" } else { "addresses" }
                    ),
                ));
            }
            Ok(WhenDown::Fallback(target))
        }
        (Some(("fallback", span)), None) => Err(cx.error(
            Some(span),
            "when_down = \"fallback\" needs a [geo.fallback] table",
        )),
        (Some(("fail-open" | "nodata", span)), Some(_)) => Err(cx.error(
            Some(span),
            "a [geo.fallback] table goes with when_down = \"fallback\" only",
        )),
        (Some((other, span)), _) => Err(cx.error(
            Some(span),
            format!("when_down must be \"fail-open\", \"nodata\" or \"fallback\", not \"{other}\""),
        )),
    }
}

fn target(cx: &Cx<'_>, raw: &Spanned<RawTarget>, origin: &Name) -> Result<Target, ConfigError> {
    let t = raw.get_ref();
    targets_of(
        cx,
        raw.span(),
        t.addresses.as_ref(),
        t.cname.as_ref(),
        origin,
    )
}

/// A target from its `addresses` or its `cname` (exactly one), relative names against
/// `origin`; errors point into `span` (the table) when no field is to blame.
fn targets_of(
    cx: &Cx<'_>,
    span: std::ops::Range<usize>,
    addresses: Option<&Spanned<Vec<Spanned<String>>>>,
    cname: Option<&Spanned<String>>,
    origin: &Name,
) -> Result<Target, ConfigError> {
    match (addresses, cname) {
        (Some(list), None) => {
            let (mut v4, mut v6) = (Vec::new(), Vec::new());
            for a in list.get_ref() {
                match a.get_ref().parse::<IpAddr>() {
                    Ok(IpAddr::V4(ip)) => v4.push(ip),
                    Ok(IpAddr::V6(ip)) => v6.push(ip),
                    Err(_) => {
                        return Err(cx.error(
                            Some(a.span()),
                            format!("`{}` is not an IP address", a.get_ref()),
                        ));
                    }
                }
            }
            if v4.is_empty() && v6.is_empty() {
                return Err(cx.error(Some(list.span()), "a target needs at least one address"));
            }
            Ok(Target::Addresses { v4, v6 })
        }
        (None, Some(cname)) => Ok(Target::Cname(cx.name(cname, origin)?)),
        _ => Err(cx.error(Some(span), "a target has either `addresses` or `cname`")),
    }
}

/// Refuses static records that a geo name's own answers contradict: any record at the name
/// of a CNAME service (a CNAME cannot stand beside other data, RFC 1034 3.6.2), and a static
/// HTTPS record at a name that answers steered HTTPS records. (A, AAAA and CNAME records at
/// any geo name are refused as the geo names are read.) The error names where the record
/// is: its `[[zone.record]]` table, or its zone file and line.
pub(super) fn static_conflicts(
    cx: &Cx<'_>,
    raw: &[Spanned<RawGeo>],
    geo: &[GeoName],
    zones: &Zones,
    raw_zones: &[RawZone],
) -> Result<(), ConfigError> {
    for (g, r) in geo.iter().zip(raw) {
        let name = LowerName::from(&g.name);
        // INVARIANT: every geo name is in a zone (checked as geo names are read).
        let Some(zone) = zones.find(&name) else {
            continue;
        };
        let clashes = |t: RecordType| g.is_cname() || (t == RecordType::HTTPS && g.https.is_some());
        let types: Vec<RecordType> = zone
            .types_at(&name)
            .iter()
            .copied()
            .filter(|&t| clashes(t))
            .collect();
        if types.is_empty() {
            continue;
        }
        let geo_span = r.get_ref().name.span();
        if g.is_cname() && name == *zone.origin() {
            let types: Vec<String> = types.iter().map(ToString::to_string).collect();
            return Err(cx.error(
                Some(geo_span),
                format!(
                    "{} is its zone's apex, which holds the zone's {} records: a geo name there \
                     cannot answer with a CNAME (RFC 1034 3.6.2)",
                    g.name,
                    types.join(", ")
                ),
            ));
        }
        let geo_line = cx.position(geo_span.start).0;
        let reason = |t: RecordType| {
            let (answering, why) = if g.is_cname() {
                (
                    "answering with a CNAME",
                    ", and a CNAME cannot stand beside other data (RFC 1034 3.6.2)",
                )
            } else {
                (
                    "answering HTTPS records itself ([geo.https])",
                    ", which would hide it",
                )
            };
            format!(
                "{} has a static {t} record, but it is a geo name {answering} (line {}){why}",
                g.name, geo_line
            )
        };
        let raw_zone = raw_zones.iter().find_map(|z| {
            let origin = cx.name(&z.origin, &Name::root()).ok()?;
            (LowerName::from(&origin) == *zone.origin()).then_some((z, origin))
        });
        if let Some((z, origin)) = raw_zone {
            for rec in &z.records {
                let rr = rec.get_ref();
                let owner = parse_name(&rr.name, &origin).map(|n| LowerName::from(&n));
                let rtype = rr.rtype.to_ascii_uppercase().parse::<RecordType>();
                if owner.is_ok_and(|o| o == name)
                    && let Ok(t) = rtype
                    && types.contains(&t)
                {
                    return Err(cx.error(Some(rec.span()), reason(t)));
                }
            }
            // Read again for the line (an error path only); if that fails, the error below
            // still names the geo name and the type.
            if let Some(file) = &z.file
                && let Ok((path, text)) = cx.read(file, "zone file")
            {
                let mut found = None;
                // INVARIANT: the file parsed when the zone was built; errors cannot occur.
                let _ = zonefile::parse_each(&text, &origin, |line, record| {
                    let t = record.record_type();
                    if found.is_none()
                        && LowerName::from(&record.name) == name
                        && types.contains(&t)
                    {
                        found = Some((line, t));
                    }
                });
                if let Some((line, t)) = found {
                    return Err(cx.error(
                        Some(file.span()),
                        format!("{}:{line}: {}", path.display(), reason(t)),
                    ));
                }
            }
        }
        return Err(cx.error(Some(geo_span), reason(types[0])));
    }
    Ok(())
}

/// Ties each probe that names a `service` to that geo name.
pub(super) fn probes(
    cx: &Cx<'_>,
    raw: &[Spanned<RawProbe>],
    probes: &mut [Probe],
    geo: &[GeoName],
) -> Result<(), ConfigError> {
    for (probe, r) in probes.iter_mut().zip(raw) {
        let Some(service) = &r.get_ref().service else {
            continue;
        };
        let wanted = service.get_ref().trim_end_matches('.').to_ascii_lowercase();
        let found = geo.iter().position(|g| {
            g.service == wanted || g.name.to_string().trim_end_matches('.') == wanted
        });
        match found {
            Some(i) => probe.service = Some(i),
            None => {
                let known: Vec<&str> = geo.iter().map(|g| g.service.as_str()).collect();
                return Err(cx.error(
                    Some(service.span()),
                    format!(
                        "no geo name is the service `{}` (services: {})",
                        service.get_ref(),
                        known.join(", ")
                    ),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::path::Path;

    use crate::config::{Config, FileSource, Target};

    struct NoFiles;

    impl FileSource for NoFiles {
        fn read(&self, _: &Path, _: u64) -> io::Result<String> {
            Err(io::Error::new(io::ErrorKind::NotFound, "no files here"))
        }
    }

    const BASE: &str = r#"
[node]
pop = "ams"
listen = ["127.0.0.1:5301"]

[zone]
origin = "example.net"
ns = ["ns1.example.net."]

[zone.soa]
mname = "ns1"
rname = "hostmaster"
serial = 1

[[pop]]
name = "ams"
asn = 64501
addresses = ["192.0.2.10", "2001:db8::10"]

[[pop]]
name = "nyc"
asn = 64502
addresses = ["198.51.100.10"]

[[geo]]
name = "www"
"#;

    fn load(extra: &str) -> Result<Config, String> {
        let text = format!("{BASE}{extra}");
        Config::from_str(&text, Path::new("/etc/sparrow/sparrow.toml"), &NoFiles)
            .map(|l| l.config)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn targets_default_to_the_pops_addresses_and_replace_them_where_given() {
        let c = load(
            "[[geo]]\nname = \"api\"\n[[geo.target]]\npop = \"nyc\"\naddresses = [\"198.51.100.20\", \"2001:db8:b::20\"]\n\
             [[geo]]\nname = \"cdn.example.net.\"\n\
             [[geo.target]]\npop = \"ams\"\ncname = \"ams.cdn.example.com.\"\n\
             [[geo.target]]\npop = \"nyc\"\ncname = \"edge-nyc\"\n\
             [[node.probe]]\nkind = \"tcp\"\ntarget = \"127.0.0.1:1\"\nservice = \"API\"\n\
             [[node.probe]]\nkind = \"tcp\"\ntarget = \"127.0.0.1:1\"\n",
        )
        .unwrap();
        let services: Vec<&str> = c.geo.iter().map(|g| g.service.as_str()).collect();
        assert_eq!(services, ["www", "api", "cdn"]);
        let www = &c.geo[0];
        assert!(!www.is_cname());
        assert_eq!(
            www.targets[0],
            Target::Addresses {
                v4: c.pops[0].v4.clone(),
                v6: c.pops[0].v6.clone()
            }
        );
        let api = &c.geo[1];
        assert_eq!(api.targets[0], www.targets[0]);
        assert_eq!(
            api.targets[1],
            Target::Addresses {
                v4: vec!["198.51.100.20".parse().unwrap()],
                v6: vec!["2001:db8:b::20".parse().unwrap()]
            }
        );
        let cdn = &c.geo[2];
        assert!(cdn.is_cname());
        assert_eq!(
            cdn.targets[1],
            Target::Cname("edge-nyc.example.net.".parse().unwrap())
        );
        assert_eq!(c.node.probes[0].service, Some(1));
        assert_eq!(api.when_down, crate::config::WhenDown::FailOpen);
        assert_eq!(
            (api.groups.as_slice(), api.max_hops),
            ([0, 0].as_slice(), None)
        );
        let grouped = load("max_hops = 3\ngroups = [[\"nyc\"]]\n").unwrap();
        assert_eq!(
            grouped.geo[0].groups,
            [1, 0],
            "ams, unlisted, comes after nyc"
        );
        assert_eq!(grouped.geo[0].max_hops, Some(3));
        // A target with neither addresses nor a CNAME keeps the POP's addresses: it sets
        // the POP's weight or canary share for this name only.
        let weighted = load(
            "[[geo]]\nname = \"api\"\n[[geo.target]]\npop = \"nyc\"\nweight = 300\ncanary = 0.5\n",
        )
        .unwrap();
        let api = &weighted.geo[1];
        assert_eq!(api.targets[1], weighted.geo[0].targets[1]);
        assert_eq!(
            (api.weights.as_slice(), weighted.geo[0].weights.as_slice()),
            ([100, 300].as_slice(), [100, 100].as_slice())
        );
        assert_eq!(api.canary, [0, u32::MAX / 2]);
        assert_eq!(c.node.probes[1].service, None);
        // Targets change what answers are: the digest peers compare changes with them.
        let other = load(
            "[[geo]]\nname = \"api\"\n[[geo.target]]\npop = \"nyc\"\naddresses = [\"198.51.100.21\"]\n",
        )
        .unwrap();
        let same = load(
            "[[geo]]\nname = \"api\"\n[[geo.target]]\npop = \"nyc\"\naddresses = [\"198.51.100.20\"]\n",
        )
        .unwrap();
        assert_ne!(other.answer_digest(), same.answer_digest());
    }

    /// Files served from memory.
    struct MemFiles(&'static str, &'static str);

    impl FileSource for MemFiles {
        fn read(&self, path: &Path, _: u64) -> io::Result<String> {
            if path == Path::new(self.0) {
                Ok(self.1.to_owned())
            } else {
                Err(io::Error::new(io::ErrorKind::NotFound, "no such file"))
            }
        }
    }

    /// The 1-based line of the first `needle` in `text`.
    fn line_of(text: &str, needle: &str) -> usize {
        text[..text.find(needle).unwrap()].matches('\n').count() + 1
    }

    const CDN: &str = "[[geo]]\nname = \"cdn\"\n\
        [[geo.target]]\npop = \"ams\"\ncname = \"ams.cdn.example.com.\"\n\
        [[geo.target]]\npop = \"nyc\"\ncname = \"nyc.cdn.example.com.\"\n";

    #[test]
    fn static_records_beside_a_cname_service_are_refused_with_where_they_are() {
        // In [[zone.record]]: the record's own line, and the geo name's.
        let text = format!(
            "{BASE}{CDN}[[zone.record]]\nname = \"cdn\"\ntype = \"TXT\"\ndata = \"\\\"v=spf1 -all\\\"\"\n"
        );
        let e = load(&text[BASE.len()..]).unwrap_err();
        assert_eq!(
            e,
            format!(
                "/etc/sparrow/sparrow.toml:{}:1: cdn.example.net. has a static TXT record, but it \
                 is a geo name answering with a CNAME (line {}), and a CNAME cannot stand beside \
                 other data (RFC 1034 3.6.2)",
                line_of(&text, "[[zone.record]]"),
                line_of(&text, "name = \"cdn\""),
            )
        );
        // In the zone file: that file and its line.
        let with_file = format!(
            "{}{CDN}",
            BASE.replacen(
                "origin = \"example.net\"",
                "origin = \"example.net\"\nfile = \"example.net.zone\"",
                1
            )
        );
        let zone = "$TTL 300\nmail IN A 192.0.2.25\ncdn IN MX 10 mail\n";
        let e = Config::from_str(
            &with_file,
            Path::new("/etc/sparrow/sparrow.toml"),
            &MemFiles("/etc/sparrow/example.net.zone", zone),
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            e,
            format!(
                "/etc/sparrow/sparrow.toml:{}:8: /etc/sparrow/example.net.zone:3: \
                 cdn.example.net. has a static MX record, but it is a geo name answering with \
                 a CNAME (line {}), and a CNAME cannot stand beside other data (RFC 1034 3.6.2)",
                line_of(&with_file, "file ="),
                line_of(&with_file, "name = \"cdn\""),
            )
        );
        // At the apex: the SOA and NS are there.
        let apex = CDN.replacen("name = \"cdn\"", "name = \"@\"", 1);
        let e = load(&apex).unwrap_err();
        assert!(
            e.contains(
                "example.net. is its zone's apex, which holds the zone's NS, SOA records: a geo \
                 name there cannot answer with a CNAME (RFC 1034 3.6.2)"
            ),
            "{e}"
        );
        // A static HTTPS record beside a name answering steered HTTPS records.
        let e = load(
            "[[geo]]\nname = \"api\"\nhttps = { alpn = [\"h2\"] }\n\
             [[zone.record]]\nname = \"api\"\ntype = \"HTTPS\"\ndata = \"1 . alpn=h3\"\n",
        )
        .unwrap_err();
        assert!(
            e.contains(
                "api.example.net. has a static HTTPS record, but it is a geo name answering \
                 HTTPS records itself ([geo.https]) (line 28), which would hide it"
            ),
            "{e}"
        );
        // At the apex too (which an address service may be).
        let e = load(
            "[[geo]]\nname = \"@\"\nhttps = {}\n\
             [[zone.record]]\nname = \"@\"\ntype = \"HTTPS\"\ndata = \"1 . alpn=h3\"\n",
        )
        .unwrap_err();
        assert!(
            e.contains("example.net. has a static HTTPS record, but it is a geo name answering"),
            "{e}"
        );
        // What stays allowed: other data beside an address service, records below a CNAME
        // service's name, and a static HTTPS record beside a name without [geo.https].
        load(
            "[[zone.record]]\nname = \"www\"\ntype = \"TXT\"\ndata = \"hello\"\n\
             [[zone.record]]\nname = \"www\"\ntype = \"HTTPS\"\ndata = \"1 . alpn=h3\"\n",
        )
        .unwrap();
        load(&format!(
            "{CDN}[[zone.record]]\nname = \"_acme-challenge.cdn\"\ntype = \"TXT\"\ndata = \"x\"\n"
        ))
        .unwrap();
    }

    #[test]
    fn bad_targets_and_service_probes_are_refused_with_their_line() {
        let api = "[[geo]]\nname = \"api\"\n";
        let cases = [
            (
                format!("{api}[[geo.target]]\npop = \"fra\"\naddresses = [\"192.0.2.1\"]\n"),
                "sparrow.toml:30:7: no POP is named `fra`",
            ),
            (
                "[[geo]]\nname = \"api\"\npops = [\"ams\"]\n[[geo.target]]\npop = \"nyc\"\naddresses = [\"192.0.2.1\"]\n".to_owned(),
                "sparrow.toml:31:7: POP `nyc` does not serve api.example.net.",
            ),
            (
                format!("{api}[[geo.target]]\npop = \"ams\"\naddresses = [\"192.0.2.1\"]\n[[geo.target]]\npop = \"ams\"\naddresses = [\"192.0.2.2\"]\n"),
                "sparrow.toml:33:7: api.example.net. has two targets at POP `ams`",
            ),
            (
                format!("{api}[[geo.target]]\npop = \"ams\"\naddresses = [\"nope\"]\n"),
                "sparrow.toml:31:14: `nope` is not an IP address",
            ),
            (
                format!("{api}[[geo.target]]\npop = \"ams\"\naddresses = []\n"),
                "sparrow.toml:31:13: a target needs at least one address",
            ),
            (
                format!("{api}[[geo.target]]\npop = \"ams\"\nweight = 0\n"),
                "sparrow.toml:31:10: weight must be at least 1",
            ),
            (
                format!("{api}[[geo.target]]\npop = \"ams\"\ncanary = 1.5\n"),
                "sparrow.toml:31:10: canary is a share of clients: above 0.0, at most 1.0",
            ),
            (
                format!("{api}[[geo.target]]\npop = \"ams\"\naddresses = [\"192.0.2.1\"]\ncname = \"x.example.com.\"\n"),
                "a target has either `addresses` or `cname`",
            ),
            (
                format!("{api}[[geo.target]]\npop = \"ams\"\ncname = \"x.example.com.\"\n"),
                "sparrow.toml:28:8: api.example.net. answers with a CNAME, so every POP it lists needs one: `nyc` has none",
            ),
            (
                "[[geo]]\nname = \"api\"\nanswers = 2\n[[geo.target]]\npop = \"ams\"\ncname = \"a.example.com.\"\n[[geo.target]]\npop = \"nyc\"\ncname = \"n.example.com.\"\n".to_owned(),
                "sparrow.toml:29:11: api.example.net. answers with a CNAME, which names one POP: answers must be 1",
            ),
            (
                format!("{api}[[geo.target]]\npop = \"ams\"\ncname = \"a.example.com.\"\n[[geo.target]]\npop = \"nyc\"\naddresses = [\"192.0.2.1\"]\n"),
                "api.example.net. mixes CNAME and address targets: keep one kind",
            ),
            (
                format!("{api}when_down = \"later\"\n"),
                "sparrow.toml:29:13: when_down must be \"fail-open\", \"nodata\" or \"fallback\", not \"later\"",
            ),
            (
                format!("{api}when_down = \"fallback\"\n"),
                "sparrow.toml:29:13: when_down = \"fallback\" needs a [geo.fallback] table",
            ),
            (
                format!("{api}when_down = \"nodata\"\n[geo.fallback]\naddresses = [\"192.0.2.9\"]\n"),
                "sparrow.toml:29:13: a [geo.fallback] table goes with when_down = \"fallback\" only",
            ),
            (
                format!("{api}[geo.fallback]\ncname = \"sorry.example.org.\"\n"),
                "api.example.net.'s fallback must be of the kind of its targets (addresses)",
            ),
            (
                format!("{api}[[geo.target]]\npop = \"ams\"\nhttps_target = \"x\"\n"),
                "sparrow.toml:31:16: https_target needs a [geo.https] table",
            ),
            (
                format!("{api}[geo.https]\npriority = 0\n"),
                "sparrow.toml:30:12: priority must be at least 1",
            ),
            (
                format!("{api}https = {{ alpn = [\"\"] }}\n"),
                "an alpn id is 1 to 255 bytes",
            ),
            (
                format!("{api}https = {{}}\n[[geo.target]]\npop = \"ams\"\ncname = \"a.example.com.\"\n[[geo.target]]\npop = \"nyc\"\ncname = \"n.example.com.\"\n"),
                "api.example.net. answers with a CNAME: it cannot answer HTTPS records too",
            ),
            (
                "groups = [[\"ams\"], [\"ams\", \"nyc\"]]\n".to_owned(),
                "sparrow.toml:27:21: POP `ams` is in two failover groups",
            ),
            (
                "groups = [[\"ams\"], []]\n".to_owned(),
                "sparrow.toml:27:10: failover group 2 is empty",
            ),
            (
                "groups = [[\"lhr\"]]\n".to_owned(),
                "sparrow.toml:27:12: no POP is named `lhr`",
            ),
            (
                "pops = [\"ams\"]\ngroups = [[\"nyc\"]]\n".to_owned(),
                "sparrow.toml:28:12: POP `nyc` does not serve www.example.net.",
            ),
            (
                "max_hops = 255\n".to_owned(),
                "sparrow.toml:27:12: max_hops must be below 255",
            ),
            (
                format!("{api}[geo.fallback]\n"),
                "a target has either `addresses` or `cname`",
            ),
            (
                "[[node.probe]]\nkind = \"tcp\"\ntarget = \"127.0.0.1:1\"\nservice = \"mail\"\n"
                    .to_owned(),
                "sparrow.toml:30:11: no geo name is the service `mail` (services: www)",
            ),
        ];
        for (extra, want) in cases {
            let e = load(&extra).unwrap_err();
            assert!(e.contains(want), "{extra}\ngot:  {e}\nwant: {want}");
        }
    }
}
