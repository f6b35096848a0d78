//! [P] Static zone data: SOA, apex NS and the records that are not geo-balanced, of each
//! zone a node serves ([`Zones`]).
//!
//! A zone is held whole in memory. It is authoritative for everything at or below its origin
//! except below a delegation (NS below the apex): there it refers ([`Found::Referral`]) and
//! keeps only glue (A and AAAA); other data below a cut is refused at load time, as a
//! geo name there is. Wildcards (RFC 4592) answer for names that do not exist below their
//! closest encloser.

use std::hash::{Hash, Hasher};

// hashbrown's default hasher (foldhash): the keys are the zone's own names, never the
// queries', so a fast unkeyed-looking hash risks no flooding, and queries look names up
// without cloning them (`KeyRef`).
use hashbrown::{Equivalent, HashMap, HashSet};
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};

/// A borrowed `(name, type)` key, hashed as the owned tuple is.
struct KeyRef<'a>(&'a LowerName, RecordType);

impl Hash for KeyRef<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.hash(state);
        self.1.hash(state);
    }
}

impl Equivalent<(LowerName, RecordType)> for KeyRef<'_> {
    fn equivalent(&self, key: &(LowerName, RecordType)) -> bool {
        *self.0 == key.0 && self.1 == key.1
    }
}

/// The zone's static data, ready to answer from.
#[derive(Debug)]
pub struct Zone {
    origin: LowerName,
    origin_name: Name,
    soa: Record,
    negative_soa: Record,
    rrsets: HashMap<(LowerName, RecordType), Vec<Record>>,
    /// Every owner name, geo name, and the empty non-terminals between them and the origin.
    names: HashSet<LowerName>,
    /// The types at each owner name, in increasing type code (ANY answers the first).
    types: HashMap<LowerName, Vec<RecordType>>,
    /// Delegation points: names below the apex that own NS records.
    cuts: HashSet<LowerName>,
    /// [`suffix_hash`] of every cut, so that a query's name is checked against the cuts
    /// without building its ancestors' names (only a hit does).
    cut_hashes: HashSet<u64>,
    /// Whether any owner name is a wildcard (saves the closest-encloser search otherwise).
    wildcards: bool,
}

/// The hash of the root, where [`suffix_hash`] starts.
const SUFFIX_SEED: u64 = 0xcbf2_9ce4_8422_2325;

/// The hash of a name given that of its parent and its first label (FNV-1a over the
/// lower-cased label and its length): a name's hash is its labels', folded from the right.
fn suffix_hash(parent: u64, label: &[u8]) -> u64 {
    let step = |h: u64, b: u8| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    // INVARIANT: labels are at most 63 bytes.
    let h = step(parent, label.len() as u8);
    label.iter().fold(h, |h, b| step(h, b.to_ascii_lowercase()))
}

/// Where a name stands in a zone, for a query of some type.
#[derive(Debug, PartialEq)]
pub enum Found<'z> {
    /// Below a delegation (or at it, for any type but DS): refer to its name servers.
    Referral(&'z [Record]),
    /// The name exists (records, a geo name, or an empty non-terminal).
    Exact,
    /// The name does not exist; the wildcard `*.<closest encloser>` answers for it.
    Wildcard(LowerName),
    /// The name does not exist and no wildcard covers it.
    NxDomain,
}

impl Zone {
    /// The zone origin, lower-cased.
    pub fn origin(&self) -> &LowerName {
        &self.origin
    }

    /// The zone origin as configured.
    pub fn origin_name(&self) -> &Name {
        &self.origin_name
    }

    /// Whether `name` is at or below the origin.
    pub fn contains(&self, name: &LowerName) -> bool {
        self.origin.zone_of(name)
    }

    /// Whether `name` exists in the zone (owns records, is a geo name, or is an empty
    /// non-terminal above one).
    pub fn name_exists(&self, name: &LowerName) -> bool {
        self.names.contains(name)
    }

    /// Where `name` (in the zone) stands for a query of type `qtype`: the highest cut at or
    /// above it (for DS, strictly above it: DS belongs to the parent side), else whether it
    /// exists, else the wildcard that covers it.
    pub fn find(&self, name: &LowerName, qtype: RecordType) -> Found<'_> {
        if let Some(ns) = self.cut_above(name, qtype) {
            return Found::Referral(ns);
        }
        if self.names.contains(name) {
            return Found::Exact;
        }
        if self.wildcards {
            let origin_labels = self.origin.num_labels();
            let mut ce = name.base_name();
            while ce.num_labels() > origin_labels && !self.names.contains(&ce) {
                ce = ce.base_name();
            }
            if let Ok(source) = ce.prepend_label("*") {
                let source = LowerName::new(&source);
                if self.names.contains(&source) {
                    return Found::Wildcard(source);
                }
            }
        }
        Found::NxDomain
    }

    /// The NS records of the cut closest to the origin at or above `name` (at `name` only if
    /// `qtype` is not DS).
    fn cut_above(&self, name: &LowerName, qtype: RecordType) -> Option<&[Record]> {
        if self.cuts.is_empty() {
            return None;
        }
        let origin_labels = usize::from(self.origin.num_labels());
        let labels = usize::from(name.num_labels());
        let last = if qtype == RecordType::DS {
            labels.checked_sub(1)?
        } else {
            labels
        };
        // Suffixes from the origin down, hashed label by label from the right.
        let mut hash = SUFFIX_SEED;
        for (n, label) in name.iter().rev().enumerate().take(last) {
            hash = suffix_hash(hash, label);
            if n < origin_labels || !self.cut_hashes.contains(&hash) {
                continue;
            }
            let at = LowerName::new(&name.trim_to(n + 1));
            if self.cuts.contains(&at) {
                return self.rrset(&at, RecordType::NS);
            }
        }
        None
    }

    /// Every name that exists in the zone ([`Self::name_exists`]), in no order.
    pub fn names(&self) -> impl Iterator<Item = &LowerName> {
        self.names.iter()
    }

    /// The types of the record sets at `name`, in increasing type code.
    pub fn types_at(&self, name: &LowerName) -> &[RecordType] {
        self.types.get(name).map_or(&[], Vec::as_slice)
    }

    /// The records of one type at one name.
    pub fn rrset(&self, name: &LowerName, rtype: RecordType) -> Option<&[Record]> {
        self.rrsets.get(&KeyRef(name, rtype)).map(Vec::as_slice)
    }

    /// All record sets at a name (for ANY queries), in a stable order.
    pub fn rrsets_at(&self, name: &LowerName) -> Vec<&[Record]> {
        self.types_at(name)
            .iter()
            .filter_map(|t| self.rrset(name, *t))
            .collect()
    }

    /// The apex SOA as served to SOA queries.
    pub fn soa(&self) -> &Record {
        &self.soa
    }

    /// The SOA for negative answers, its TTL capped by MINIMUM (RFC 2308 section 3).
    pub fn negative_soa(&self) -> &Record {
        &self.negative_soa
    }

    /// Every static record, in a stable order (owner, type, then as listed).
    pub fn records(&self) -> Vec<&Record> {
        let mut sets: Vec<(&(LowerName, RecordType), &Vec<Record>)> = self.rrsets.iter().collect();
        sets.sort_by(|(a, _), (b, _)| a.0.cmp(&b.0).then(u16::from(a.1).cmp(&u16::from(b.1))));
        sets.into_iter().flat_map(|(_, r)| r.iter()).collect()
    }

    /// Number of static records.
    pub fn record_count(&self) -> usize {
        self.rrsets.values().map(Vec::len).sum()
    }
}

/// Collects records and checks them into a [`Zone`].
#[derive(Debug)]
pub struct ZoneBuilder {
    origin: Name,
    lower_origin: LowerName,
    soa: Option<Record>,
    rrsets: HashMap<(LowerName, RecordType), Vec<Record>>,
    names: HashSet<LowerName>,
    /// Geo names (checked against the cuts when the zone is built).
    geo_names: Vec<LowerName>,
    /// Names holding records other than CNAME: the CNAME check in one look-up, not a scan
    /// of every set (which made a zone of n records cost n² to load).
    with_other_data: HashSet<LowerName>,
}

impl ZoneBuilder {
    /// Starts a zone at `origin` (a fully qualified name).
    pub fn new(origin: Name) -> Self {
        let lower_origin = LowerName::from(&origin);
        let mut names = HashSet::new();
        names.insert(lower_origin.clone());
        Self {
            origin,
            lower_origin,
            soa: None,
            rrsets: HashMap::new(),
            names,
            geo_names: Vec::new(),
            with_other_data: HashSet::new(),
        }
    }

    /// The zone origin.
    pub fn origin(&self) -> &LowerName {
        &self.lower_origin
    }

    /// The zone origin as configured.
    pub fn origin_name(&self) -> &Name {
        &self.origin
    }

    /// Adds one record. Refuses records outside the zone, a second SOA and CNAMEs beside
    /// other data (data below a delegation is checked by [`Self::build`]).
    pub fn add(&mut self, record: Record) -> Result<(), String> {
        let owner = LowerName::from(&record.name);
        let rtype = record.record_type();
        if !self.lower_origin.zone_of(&owner) {
            return Err(format!(
                "{} is outside the zone {}",
                record.name, self.origin
            ));
        }
        match rtype {
            RecordType::SOA if owner != self.lower_origin => {
                return Err(format!("SOA at {} is not at the zone apex", record.name));
            }
            RecordType::SOA if self.soa.is_some() => {
                return Err("the zone has a second SOA record".to_owned());
            }
            RecordType::SOA => {
                self.soa = Some(record);
                self.reserve_name(&owner);
                return Ok(());
            }
            _ => {}
        }
        let has_cname = self
            .rrsets
            .contains_key(&(owner.clone(), RecordType::CNAME));
        let has_other = self.with_other_data.contains(&owner);
        let cname_conflict = match rtype {
            RecordType::CNAME => has_other || has_cname || owner == self.lower_origin,
            _ => has_cname,
        };
        if cname_conflict {
            return Err(format!(
                "{}: a CNAME cannot stand beside other records at the same name (RFC 1034 3.6.2)",
                record.name
            ));
        }
        self.reserve_name(&owner);
        if rtype != RecordType::CNAME && !has_other {
            self.with_other_data.insert(owner.clone());
        }
        // Most sets hold one record: a first push into an empty Vec reserves four.
        let set = self
            .rrsets
            .entry((owner, rtype))
            .or_insert_with(|| Vec::with_capacity(1));
        if !set.iter().any(|r| r.data == record.data) {
            set.push(record);
        }
        Ok(())
    }

    /// Marks `name` and the names between it and the origin as existing (for names that are
    /// answered by other means, such as geo names).
    pub fn reserve_name(&mut self, name: &LowerName) {
        let mut name = name.clone();
        while self.lower_origin.zone_of(&name) && self.names.insert(name.clone()) {
            name = name.base_name();
        }
    }

    /// Marks `name` as a geo name of this zone (it must not be a wildcard, and not at or
    /// below a delegation: [`Self::build`] checks).
    pub fn add_geo_name(&mut self, name: &LowerName) -> Result<(), String> {
        if name.is_wildcard() {
            return Err(format!("geo name {name} cannot be a wildcard"));
        }
        self.reserve_name(name);
        self.geo_names.push(name.clone());
        Ok(())
    }

    /// Whether the zone already has A, AAAA or CNAME records at `name`.
    pub fn has_address_records(&self, name: &LowerName) -> bool {
        [RecordType::A, RecordType::AAAA, RecordType::CNAME]
            .iter()
            .any(|t| self.rrsets.contains_key(&(name.clone(), *t)))
    }

    /// Checks that the zone is complete (an SOA, at least one NS) and freezes it.
    pub fn build(self) -> Result<Zone, String> {
        let soa = self.soa.ok_or_else(|| {
            "the zone has no SOA record ([zone.soa] or in the zone file)".to_owned()
        })?;
        if !self
            .rrsets
            .contains_key(&(self.lower_origin.clone(), RecordType::NS))
        {
            return Err(
                "the zone has no NS record at the apex (zone.ns or in the zone file)".to_owned(),
            );
        }
        let minimum = match &soa.data {
            RData::SOA(s) => s.minimum,
            _ => soa.ttl,
        };
        let mut negative_soa = soa.clone();
        negative_soa.ttl = soa.ttl.min(minimum);
        let mut rrsets = self.rrsets;
        rrsets.insert(
            (self.lower_origin.clone(), RecordType::SOA),
            vec![soa.clone()],
        );
        let cuts: HashSet<LowerName> = rrsets
            .keys()
            .filter(|(name, t)| *t == RecordType::NS && *name != self.lower_origin)
            .map(|(name, _)| name.clone())
            .collect();
        // Below a cut only glue; at a cut only NS, DS and glue (RFC 1034 4.2.1).
        let origin_labels = usize::from(self.lower_origin.num_labels());
        let below_cut = |name: &LowerName| {
            (origin_labels + 1..=usize::from(name.num_labels()))
                .map(|n| LowerName::new(&name.trim_to(n)))
                .find(|at| cuts.contains(at))
        };
        let mut keys: Vec<&(LowerName, RecordType)> = rrsets.keys().collect();
        keys.sort_by(|a, b| a.0.cmp(&b.0).then(u16::from(a.1).cmp(&u16::from(b.1))));
        for (name, t) in keys {
            let glue = matches!(t, RecordType::A | RecordType::AAAA);
            let at_cut_ok = matches!(t, RecordType::NS | RecordType::DS) || glue;
            if let Some(cut) = below_cut(name)
                && !glue
                && !(cut == *name && at_cut_ok)
            {
                return Err(format!(
                    "{name} {t}: below the delegation at {cut}, only glue (A, AAAA) is allowed"
                ));
            }
        }
        for geo in &self.geo_names {
            if let Some(cut) = below_cut(geo) {
                return Err(format!(
                    "geo name {geo} is at or below the delegation at {cut}"
                ));
            }
        }
        let mut types: HashMap<LowerName, Vec<RecordType>> = HashMap::new();
        for (name, t) in rrsets.keys() {
            types.entry(name.clone()).or_default().push(*t);
        }
        for list in types.values_mut() {
            list.sort_by_key(|t| u16::from(*t));
        }
        let wildcards = self.names.iter().any(|n| n.is_wildcard());
        let cut_hashes = cuts
            .iter()
            .map(|cut| cut.iter().rev().fold(SUFFIX_SEED, suffix_hash))
            .collect();
        Ok(Zone {
            origin: self.lower_origin,
            origin_name: self.origin,
            soa,
            negative_soa,
            rrsets,
            names: self.names,
            types,
            cuts,
            cut_hashes,
            wildcards,
        })
    }
}

/// Every zone a node serves. A name belongs to the zone with the longest origin that
/// contains it: a lookup hashes the name's suffixes label by label ([`suffix_hash`]) and
/// checks the origins of that hash, so it costs the name's labels, not the zones' number.
#[derive(Debug)]
pub struct Zones {
    /// Longest origin first (most labels), then by origin.
    zones: Vec<Zone>,
    /// The zones (indices) by their origin's [`suffix_hash`].
    by_hash: HashMap<u64, Vec<usize>>,
    /// The origin of the first zone configured: relative names (geo names, `sparrow
    /// explain`) are taken against it.
    default_origin: Name,
}

impl Zones {
    /// The zones in config order (at least one), which must have distinct origins (the
    /// config checks).
    pub fn new(mut zones: Vec<Zone>) -> Self {
        let default_origin = zones
            .first()
            .map_or_else(Name::root, |z| z.origin_name().clone());
        zones.sort_by(|a, b| {
            b.origin
                .num_labels()
                .cmp(&a.origin.num_labels())
                .then_with(|| a.origin.cmp(&b.origin))
        });
        let mut by_hash: HashMap<u64, Vec<usize>> = HashMap::new();
        for (i, z) in zones.iter().enumerate() {
            let hash = z.origin.iter().rev().fold(SUFFIX_SEED, suffix_hash);
            by_hash.entry(hash).or_default().push(i);
        }
        Self {
            zones,
            by_hash,
            default_origin,
        }
    }

    /// The origin relative names are taken against (the first zone configured).
    pub fn default_origin(&self) -> &Name {
        &self.default_origin
    }

    /// The zone `name` belongs to: the one with the longest origin at or above it.
    pub fn find(&self, name: &LowerName) -> Option<&Zone> {
        let origin_of = |hash: u64, labels: usize| {
            self.by_hash.get(&hash)?.iter().find_map(|&i| {
                let z = &self.zones[i];
                (usize::from(z.origin.num_labels()) == labels && z.contains(name)).then_some(z)
            })
        };
        // The root, then each suffix down to the name; the last origin found is the longest.
        let mut hash = SUFFIX_SEED;
        let mut found = origin_of(hash, 0);
        for (n, label) in name.iter().rev().enumerate() {
            hash = suffix_hash(hash, label);
            found = origin_of(hash, n + 1).or(found);
        }
        found
    }

    /// The zone whose origin is `origin`.
    pub fn get(&self, origin: &LowerName) -> Option<&Zone> {
        self.zones.iter().find(|z| z.origin() == origin)
    }

    /// Every zone, longest origin first.
    pub fn iter(&self) -> impl Iterator<Item = &Zone> {
        self.zones.iter()
    }

    /// Number of static records of every zone.
    pub fn record_count(&self) -> usize {
        self.zones.iter().map(Zone::record_count).sum()
    }

    /// The origins, as configured, in order (longest first), for messages.
    pub fn describe(&self) -> String {
        let names: Vec<String> = self
            .zones
            .iter()
            .map(|z| z.origin_name().to_string())
            .collect();
        names.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use hickory_proto::rr::rdata::{NS, SOA};

    use super::*;

    fn zone(origin: &str) -> Zone {
        let origin = Name::from_str(origin).unwrap();
        let ns = Name::from_str("ns.example.").unwrap();
        let mut b = ZoneBuilder::new(origin.clone());
        let soa = SOA::new(ns.clone(), ns.clone(), 1, 1, 1, 1, 1);
        b.add(Record::from_rdata(origin.clone(), 60, RData::SOA(soa)))
            .unwrap();
        b.add(Record::from_rdata(origin, 60, RData::NS(NS(ns))))
            .unwrap();
        b.build().unwrap()
    }

    #[test]
    fn a_name_belongs_to_the_longest_origin_containing_it() {
        let zones = Zones::new(
            [
                "example.org.",
                ".",
                "a.b.example.org.",
                "org.",
                "example.net.",
            ]
            .into_iter()
            .map(zone)
            .collect(),
        );
        assert_eq!(zones.default_origin().to_string(), "example.org.");
        for (name, origin) in [
            ("example.org.", "example.org."),
            ("www.example.org.", "example.org."),
            ("b.example.org.", "example.org."),
            ("a.b.example.org.", "a.b.example.org."),
            ("x.y.a.b.example.org.", "a.b.example.org."),
            ("other.org.", "org."),
            ("org.", "org."),
            ("example.com.", "."),
            (".", "."),
            ("WWW.Example.NET.", "example.net."),
        ] {
            let name = LowerName::from(&Name::from_str(name).unwrap());
            assert_eq!(
                zones.find(&name).map(|z| z.origin().to_string()),
                Some(origin.to_owned()),
                "{name}"
            );
        }
        let without_root = Zones::new(vec![zone("example.org.")]);
        let other = LowerName::from(&Name::from_str("example.com.").unwrap());
        assert!(without_root.find(&other).is_none());
    }
}
