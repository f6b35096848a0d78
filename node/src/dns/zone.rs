//! [P] Static zone data: SOA, apex NS and the records that are not geo-balanced.
//!
//! Sparrow serves one zone and holds it whole in memory. It is authoritative for everything at
//! or below the origin; delegations (NS below the apex) and wildcards are refused at load time
//! rather than half supported.

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

    /// The records of one type at one name.
    pub fn rrset(&self, name: &LowerName, rtype: RecordType) -> Option<&[Record]> {
        self.rrsets.get(&KeyRef(name, rtype)).map(Vec::as_slice)
    }

    /// All record sets at a name (for ANY queries), in a stable order.
    pub fn rrsets_at(&self, name: &LowerName) -> Vec<&[Record]> {
        let mut sets: Vec<(RecordType, &[Record])> = self
            .rrsets
            .iter()
            .filter(|((owner, _), _)| owner == name)
            .map(|((_, t), records)| (*t, records.as_slice()))
            .collect();
        sets.sort_by_key(|(t, _)| u16::from(*t));
        sets.into_iter().map(|(_, r)| r).collect()
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
            with_other_data: HashSet::new(),
        }
    }

    /// Adds one record. Refuses records outside the zone, a second SOA, delegations,
    /// wildcards and CNAMEs beside other data.
    pub fn add(&mut self, record: Record) -> Result<(), String> {
        let owner = LowerName::from(&record.name);
        let rtype = record.record_type();
        if !self.lower_origin.zone_of(&owner) {
            return Err(format!(
                "{} is outside the zone {}",
                record.name, self.origin
            ));
        }
        if record.name.is_wildcard() {
            return Err(format!(
                "{}: wildcard records are not supported",
                record.name
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
            RecordType::NS if owner != self.lower_origin => {
                return Err(format!(
                    "NS at {} would delegate a subzone; delegations are not supported",
                    record.name
                ));
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
        Ok(Zone {
            origin: self.lower_origin,
            origin_name: self.origin,
            soa,
            negative_soa,
            rrsets,
            names: self.names,
        })
    }
}
