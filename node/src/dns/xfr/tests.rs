use std::net::IpAddr;
use std::path::Path;
use std::str::FromStr;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::SOA;
use hickory_proto::rr::{Name, RData, Record, RecordType};

use hickory_proto::rr::rdata::tsig::TsigError;

use super::{MESSAGE_BUDGET, Outcome, respond, split, transfer_type};
use crate::config::{Config, Disk, TsigKey};
use crate::dns::tsig::{self, Signer};

/// The time the tests run at (seconds since the Unix epoch).
const NOW: u64 = 1_800_000_000;

/// `[[tsig_key]]` tables: xfr-key (secret "secret") and other-key.
const KEYS: &str = "\n[[tsig_key]]\nname = \"xfr-key\"\nalgorithm = \"hmac-sha256\"\nsecret = \"c2VjcmV0\"\n\
                    \n[[tsig_key]]\nname = \"other-key\"\nalgorithm = \"hmac-sha256\"\nsecret = \"b3RoZXI=\"\n";

/// The single-node example with `extra` lines added to its `[zone]` table.
/// The example's one zone.
fn example_net(config: &Config) -> &crate::dns::zone::Zone {
    config.zones.iter().next().expect("a zone")
}

fn config(extra: &str) -> Config {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples/single-node/sparrow.toml");
    let text = std::fs::read_to_string(&path).expect("example config");
    let text = text.replace(
        "ns = [\"ns1\", \"ns2\"]\n",
        &format!("ns = [\"ns1\", \"ns2\"]\n{extra}\n"),
    ) + KEYS;
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
    let Some(Outcome::Transfer(messages)) = respond(&q, ip("127.0.0.1"), true, &config, NOW) else {
        panic!("transfer refused");
    };
    let records = answers(&messages);
    let soa = example_net(&config).soa();
    assert_eq!(&records[0], soa);
    assert_eq!(records.last(), Some(soa));
    let middle = &records[1..records.len() - 1];
    assert!(middle.iter().all(|r| r.record_type() != RecordType::SOA));
    assert_eq!(
        middle.len(),
        example_net(&config).record_count() - 1 + 2,
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
    let from_v6 = respond(&q, ip("2001:db8:1::1"), true, &config, NOW);
    assert!(matches!(from_v6, Some(Outcome::Transfer(_))));
}

#[test]
fn others_are_refused_and_udp_gets_notimp() {
    let config = config("allow_transfer = [\"127.0.0.1\"]");
    let q = query("example.net.", RecordType::AXFR, None);
    assert_eq!(
        rcode(respond(&q, ip("127.0.0.2"), true, &config, NOW)),
        ResponseCode::Refused
    );
    assert_eq!(
        rcode(respond(&q, ip("127.0.0.1"), false, &config, NOW)),
        ResponseCode::NotImp
    );
    let other_zone = query("example.org.", RecordType::AXFR, None);
    assert_eq!(
        rcode(respond(&other_zone, ip("127.0.0.1"), true, &config, NOW)),
        ResponseCode::NotAuth
    );
    let below = query("www.example.net.", RecordType::AXFR, None);
    assert_eq!(
        rcode(respond(&below, ip("127.0.0.1"), true, &config, NOW)),
        ResponseCode::NotAuth
    );
    let nobody = self::config("");
    assert_eq!(
        rcode(respond(&q, ip("127.0.0.1"), true, &nobody, NOW)),
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
        let Some(Outcome::Transfer(messages)) = respond(&q, ip("127.0.0.1"), true, &config, NOW)
        else {
            panic!("refused");
        };
        let records = answers(&messages);
        assert_eq!(&records[0], example_net(&config).soa());
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

fn key(name: &str, secret: &[u8]) -> TsigKey {
    TsigKey {
        name: Name::from_str(name).unwrap(),
        algorithm: hickory_proto::rr::rdata::tsig::TsigAlgorithm::HmacSha256,
        secret: secret.to_vec(),
    }
}

fn signed(q: &[u8], key: &TsigKey, at: u64) -> Vec<u8> {
    Signer::request(key, at).sign(q, None, Vec::new()).unwrap()
}

/// The TSIG error of an answer, and whether it carries a MAC.
fn tsig_of(answer: &[u8]) -> (Option<TsigError>, bool) {
    let sig = tsig::signature(answer).expect("the answer carries a TSIG record");
    (sig.tsig.error, !sig.tsig.mac.is_empty())
}

#[test]
fn a_signed_query_gets_every_message_signed_and_bad_ones_get_notauth_with_the_tsig_error() {
    let config = config("allow_transfer = [\"127.0.0.1\"]\ntransfer_tsig = \"xfr-key\"");
    let q = query("example.net.", RecordType::AXFR, None);
    let xfr_key = key("xfr-key.", b"secret");

    let Some(Outcome::Transfer(messages)) = respond(
        &signed(&q, &xfr_key, NOW),
        ip("127.0.0.1"),
        true,
        &config,
        NOW,
    ) else {
        panic!("a query signed with the transfer key is served");
    };
    assert!(messages.iter().all(|m| tsig_of(m) == (None, true)));
    assert_eq!(answers(&messages).first(), Some(example_net(&config).soa()));

    let refused = |q: &[u8]| match respond(q, ip("127.0.0.1"), true, &config, NOW) {
        Some(Outcome::Refused(code, m)) => (code, m),
        other => panic!("{other:?}"),
    };
    let (code, _) = refused(&q);
    assert_eq!(
        code,
        ResponseCode::Refused,
        "unsigned, where a key is required"
    );
    let (code, m) = refused(&signed(&q, &key("other-key.", b"other"), NOW));
    assert_eq!(
        code,
        ResponseCode::Refused,
        "a known key, not the transfer key"
    );
    assert_eq!(tsig_of(&m), (None, true), "answered signed with that key");
    let (code, m) = refused(&signed(&q, &key("nokey.", b"secret"), NOW));
    assert_eq!(
        (code, tsig_of(&m)),
        (ResponseCode::NotAuth, (Some(TsigError::BadKey), false))
    );
    let (code, m) = refused(&signed(&q, &key("xfr-key.", b"wrong"), NOW));
    assert_eq!(
        (code, tsig_of(&m)),
        (ResponseCode::NotAuth, (Some(TsigError::BadSig), false))
    );
    let (code, m) = refused(&signed(&q, &xfr_key, NOW - 1000));
    assert_eq!(
        (code, tsig_of(&m)),
        (ResponseCode::NotAuth, (Some(TsigError::BadTime), true))
    );
    let sig = tsig::signature(&m).unwrap();
    assert_eq!(
        sig.tsig.other,
        NOW.to_be_bytes()[2..].to_vec(),
        "the server's time"
    );
    assert_eq!(sig.tsig.time, NOW - 1000, "signed with the request's time");

    let mut tampered = signed(&q, &xfr_key, NOW);
    tampered[13] ^= 0x20;
    let (code, m) = refused(&tampered);
    assert_eq!(
        (code, tsig_of(&m)),
        (ResponseCode::NotAuth, (Some(TsigError::BadSig), false))
    );
}
