use std::net::IpAddr;
use std::path::Path;
use std::str::FromStr;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::SOA;
use hickory_proto::rr::{Name, RData, Record, RecordType};

use super::{MESSAGE_BUDGET, Outcome, respond, split, transfer_type};
use crate::config::{Config, Disk};

/// The single-node example with `extra` lines added to its `[zone]` table.
fn config(extra: &str) -> Config {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples/single-node/sparrow.toml");
    let text = std::fs::read_to_string(&path).expect("example config");
    let text = text.replace(
        "ns = [\"ns1\", \"ns2\"]\n",
        &format!("ns = [\"ns1\", \"ns2\"]\n{extra}\n"),
    );
    Config::from_str(&text, &path, &Disk)
        .expect("config loads")
        .config
}

fn query(name: &str, rtype: RecordType, serial: Option<u32>) -> Vec<u8> {
    let mut m = Message::new(0x1234, MessageType::Query, OpCode::Query);
    m.add_query(Query::query(Name::from_str(name).unwrap(), rtype));
    if let Some(serial) = serial {
        let soa = SOA::new(Name::root(), Name::root(), serial, 0, 0, 0, 0);
        m.add_authority(Record::from_rdata(
            Name::from_str(name).unwrap(),
            0,
            RData::SOA(soa),
        ));
    }
    m.to_vec().unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn answers(messages: &[Vec<u8>]) -> Vec<Record> {
    messages
        .iter()
        .flat_map(|m| {
            let m = Message::from_vec(m).unwrap();
            assert_eq!(m.metadata.id, 0x1234);
            assert!(m.metadata.authoritative);
            assert_eq!(m.metadata.response_code, ResponseCode::NoError);
            m.answers
        })
        .collect()
}

fn rcode(outcome: Option<Outcome>) -> ResponseCode {
    match outcome {
        Some(Outcome::Refused(code, m)) => {
            let m = Message::from_vec(&m).unwrap();
            assert_eq!(m.metadata.response_code, code);
            assert_eq!(m.queries.len(), 1, "the question is echoed");
            code
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn transfer_queries_are_recognised_on_the_wire() {
    let axfr = query("example.net.", RecordType::AXFR, None);
    assert_eq!(transfer_type(&axfr), Some(RecordType::AXFR));
    assert_eq!(
        transfer_type(&query("example.net.", RecordType::IXFR, Some(1))),
        Some(RecordType::IXFR)
    );
    assert_eq!(
        transfer_type(&query("example.net.", RecordType::SOA, None)),
        None
    );
    let mut response = axfr.clone();
    response[2] |= 0x80;
    assert_eq!(transfer_type(&response), None, "a response is no query");
    assert_eq!(transfer_type(&axfr[..axfr.len() - 3]), None);
}

#[test]
fn an_allowed_client_gets_the_zone_between_two_soas_with_its_own_pop_for_geo_names() {
    let config = config("allow_transfer = [\"127.0.0.1\", \"2001:db8::/32\"]");
    let q = query("example.net.", RecordType::AXFR, None);
    let Some(Outcome::Transfer(messages)) = respond(&q, ip("127.0.0.1"), true, &config) else {
        panic!("transfer refused");
    };
    let records = answers(&messages);
    let soa = config.zone.soa();
    assert_eq!(&records[0], soa);
    assert_eq!(records.last(), Some(soa));
    let middle = &records[1..records.len() - 1];
    assert!(middle.iter().all(|r| r.record_type() != RecordType::SOA));
    assert_eq!(
        middle.len(),
        config.zone.record_count() - 1 + 2,
        "every static record but the SOA, and www's A and AAAA"
    );
    let www: Vec<String> = middle
        .iter()
        .filter(|r| r.name.to_string() == "www.example.net.")
        .map(|r| r.to_string())
        .collect();
    assert_eq!(
        www,
        [
            "www.example.net. 30 IN A 192.0.2.10",
            "www.example.net. 30 IN AAAA 2001:db8:a::10"
        ],
        "the own POP (ams), the geo name's TTL"
    );
    let from_v6 = respond(&q, ip("2001:db8:1::1"), true, &config);
    assert!(matches!(from_v6, Some(Outcome::Transfer(_))));
}

#[test]
fn others_are_refused_and_udp_gets_notimp() {
    let config = config("allow_transfer = [\"127.0.0.1\"]");
    let q = query("example.net.", RecordType::AXFR, None);
    assert_eq!(
        rcode(respond(&q, ip("127.0.0.2"), true, &config)),
        ResponseCode::Refused
    );
    assert_eq!(
        rcode(respond(&q, ip("127.0.0.1"), false, &config)),
        ResponseCode::NotImp
    );
    let other_zone = query("example.org.", RecordType::AXFR, None);
    assert_eq!(
        rcode(respond(&other_zone, ip("127.0.0.1"), true, &config)),
        ResponseCode::NotAuth
    );
    let below = query("www.example.net.", RecordType::AXFR, None);
    assert_eq!(
        rcode(respond(&below, ip("127.0.0.1"), true, &config)),
        ResponseCode::NotAuth
    );
    let nobody = self::config("");
    assert_eq!(
        rcode(respond(&q, ip("127.0.0.1"), true, &nobody)),
        ResponseCode::Refused,
        "no allow_transfer: no transfers"
    );
}

#[test]
fn ixfr_sends_the_soa_alone_to_a_current_client_and_the_whole_zone_to_an_old_one() {
    let config = config("allow_transfer = [\"127.0.0.1\"]");
    let serial = 2026112101;
    for (theirs, whole) in [(serial, false), (serial + 5, false), (serial - 1, true)] {
        let q = query("example.net.", RecordType::IXFR, Some(theirs));
        let Some(Outcome::Transfer(messages)) = respond(&q, ip("127.0.0.1"), true, &config) else {
            panic!("refused");
        };
        let records = answers(&messages);
        assert_eq!(&records[0], config.zone.soa());
        assert_eq!(records.len() > 1, whole, "client serial {theirs}");
    }
}

#[test]
fn large_zones_are_split_into_messages_within_the_budget() {
    let soa = Record::from_rdata(
        Name::from_str("example.net.").unwrap(),
        60,
        RData::SOA(SOA::new(Name::root(), Name::root(), 1, 2, 3, 4, 5)),
    );
    let many: Vec<Record> = (0..5000u32)
        .map(|i| {
            Record::from_rdata(
                Name::from_str(&format!("host-{i}.example.net.")).unwrap(),
                60,
                RData::A(hickory_proto::rr::rdata::A(std::net::Ipv4Addr::from(i))),
            )
        })
        .collect();
    let mut records: Vec<&Record> = vec![&soa];
    records.extend(many.iter());
    records.push(&soa);
    let q = Message::from_vec(&query("example.net.", RecordType::AXFR, None)).unwrap();
    let messages = split(&q, &q.queries[0], &records, MESSAGE_BUDGET).unwrap();
    assert!(messages.len() > 3, "{}", messages.len());
    assert!(messages.iter().all(|m| m.len() <= MESSAGE_BUDGET));
    let got = answers(&messages);
    assert_eq!(got.len(), records.len());
    assert!(got.iter().zip(&records).all(|(a, b)| a == *b), "in order");
    let first = Message::from_vec(&messages[0]).unwrap();
    let second = Message::from_vec(&messages[1]).unwrap();
    assert_eq!(first.queries.len(), 1);
    assert!(second.queries.is_empty(), "the question in the first only");
}
