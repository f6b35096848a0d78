//! [P] Precomputed responses: what the UDP fast path sends for the common questions, keyed
//! by the question name's wire form, so that a hit needs no `Name` at all.
//!
//! The table is built once per configuration (`dns::fast::build_table`) by running
//! `dns::answer::answer` for every name of every zone and every type there (and A, AAAA),
//! and encoding what it gives with the fast path's own encoder after a question of that
//! name; so it cannot disagree with the answer path. It keeps only what is the same for
//! every client:
//!
//! - a *static* entry: the response code, AA, the section counts and the encoded records
//!   (answer, authority, additional) as they follow the question. The question always
//!   starts at offset 12 and compression pointers only point into it or into these bytes,
//!   so the bytes are valid after any question of the same name and type;
//! - a *geo* entry (A or AAAA at a geo name): the name's index; its records are encoded per
//!   POP and family (with the normal and the local-only TTL), each record's owner a pointer
//!   to the question, and the decision still runs per query.
//!
//! Keys are lower-case: the encoder compresses against the question as sent, case and all
//! (as hickory does), so only a question sent in lower case can take the table's bytes;
//! others go the answer path.

use std::fmt;

use hashbrown::HashMap;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

/// A response's sections after the question, encoded.
#[derive(Debug)]
pub struct Fragment {
    /// Response code.
    pub rcode: ResponseCode,
    /// AA.
    pub authoritative: bool,
    /// Records in the answer, authority and additional sections.
    pub counts: [u16; 3],
    /// The records, as they follow the question.
    pub bytes: Box<[u8]>,
}

/// What the table knows of one question.
#[derive(Debug)]
pub enum Entry {
    /// The response, the same for every client.
    Static(Fragment),
    /// A or AAAA (`family` 0 or 1) at geo name `geo`: the decision picks the POPs, whose
    /// records are [`AnswerTable::geo_records`].
    Geo {
        /// Index into `config.geo`.
        geo: usize,
        /// 0 for A, 1 for AAAA.
        family: usize,
    },
}

/// The encoded A or AAAA records of one POP for one geo name.
#[derive(Debug, Default)]
pub struct Encoded {
    /// How many records `bytes` holds.
    pub records: u16,
    /// The records, each owned by a pointer to the question.
    pub bytes: Box<[u8]>,
}

/// Per geo name: `[local_only][family][pop]`.
pub type GeoEncoded = [[Vec<Encoded>; 2]; 2];

/// The precomputed responses of one configuration.
#[derive(Default)]
pub struct AnswerTable {
    /// hashbrown's (foldhash), as `dns::zone`: the keys are the config's names.
    names: HashMap<Box<[u8]>, Vec<(RecordType, Entry)>>,
    geo: Vec<Option<GeoEncoded>>,
}

impl fmt::Debug for AnswerTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AnswerTable")
            .field("names", &self.names.len())
            .field("entries", &self.len())
            .finish()
    }
}

impl AnswerTable {
    /// The entry for `qname` (wire form, lower case) and `qtype`.
    pub fn get(&self, qname: &[u8], qtype: RecordType) -> Option<&Entry> {
        self.names
            .get(qname)?
            .iter()
            .find(|(t, _)| *t == qtype)
            .map(|(_, e)| e)
    }

    /// The encoded records of `pop` for geo name `geo` and `family` (0: A, 1: AAAA), with
    /// the local-only TTL if `local_only`; `None` if the table has none.
    pub fn geo_records(
        &self,
        geo: usize,
        local_only: bool,
        family: usize,
        pop: usize,
    ) -> Option<&Encoded> {
        self.geo
            .get(geo)?
            .as_ref()?
            .get(usize::from(local_only))?
            .get(family)?
            .get(pop)
    }

    /// Adds `entry` for `qname` (wire form, lower case) and `qtype`; a second entry for
    /// the same question replaces the first.
    pub fn insert(&mut self, qname: &[u8], qtype: RecordType, entry: Entry) {
        match self.names.get_mut(qname) {
            Some(entries) => {
                entries.retain(|(t, _)| *t != qtype);
                entries.push((qtype, entry));
            }
            None => {
                self.names.insert(qname.into(), vec![(qtype, entry)]);
            }
        }
    }

    /// Sets the encoded records of geo name `geo`: `[local_only][family][pop]`.
    pub fn set_geo(&mut self, geo: usize, records: GeoEncoded) {
        if self.geo.len() <= geo {
            self.geo.resize_with(geo + 1, || None);
        }
        self.geo[geo] = Some(records);
    }

    /// Questions the table answers.
    pub fn len(&self) -> usize {
        self.names.values().map(Vec::len).sum()
    }

    /// Whether the table answers nothing.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fragment(n: u8) -> Entry {
        Entry::Static(Fragment {
            rcode: ResponseCode::NoError,
            authoritative: true,
            counts: [1, 0, 0],
            bytes: Box::new([n]),
        })
    }

    fn byte(e: Option<&Entry>) -> Option<u8> {
        match e? {
            Entry::Static(f) => Some(f.bytes[0]),
            Entry::Geo { .. } => None,
        }
    }

    #[test]
    fn entries_are_found_by_name_and_type_and_replaced_by_a_second_insert() {
        let mut t = AnswerTable::default();
        let www = b"\x03www\x07example\x03net\x00";
        t.insert(www, RecordType::A, fragment(1));
        t.insert(www, RecordType::TXT, fragment(2));
        t.insert(www, RecordType::A, fragment(3));
        assert_eq!(byte(t.get(www, RecordType::A)), Some(3));
        assert_eq!(byte(t.get(www, RecordType::TXT)), Some(2));
        assert!(t.get(www, RecordType::MX).is_none());
        assert!(
            t.get(b"\x03WWW\x07example\x03net\x00", RecordType::A)
                .is_none()
        );
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn geo_records_of_unknown_names_or_pops_are_none() {
        let mut t = AnswerTable::default();
        let pop = |n: u8| Encoded {
            records: 1,
            bytes: Box::new([n]),
        };
        t.set_geo(1, [[vec![pop(1)], vec![pop(2)]], [vec![pop(3)], vec![]]]);
        let bytes = |g, l, f, p| t.geo_records(g, l, f, p).map(|e| e.bytes.to_vec());
        assert_eq!(bytes(1, false, 0, 0), Some(vec![1]));
        assert_eq!(bytes(1, false, 1, 0), Some(vec![2]));
        assert_eq!(bytes(1, true, 0, 0), Some(vec![3]));
        assert_eq!(bytes(1, true, 1, 0), None);
        assert_eq!(bytes(0, false, 0, 0), None);
        assert_eq!(bytes(1, false, 0, 5), None);
    }
}
