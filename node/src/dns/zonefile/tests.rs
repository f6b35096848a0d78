use std::str::FromStr;

use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_proto::serialize::txt::Parser;

use super::{MAX_ERRORS, ZoneFileError, parse, parse_file};

fn origin() -> Name {
    Name::from_str("example.net.").expect("name")
}

fn ok(text: &str) -> Vec<Record> {
    match parse(text, &origin()) {
        Ok(r) => r,
        Err(e) => panic!("{}", e.render("zone")),
    }
}

fn errors(text: &str) -> Vec<ZoneFileError> {
    match parse(text, &origin()) {
        Ok(r) => panic!("parsed: {r:?}"),
        Err(e) => e.errors,
    }
}

fn one(text: &str) -> Record {
    let mut r = ok(text);
    assert_eq!(r.len(), 1, "{r:?}");
    r.remove(0)
}

#[test]
fn directives_inheritance_parentheses_and_comments() {
    let records = ok(r#"; a comment line
$TTL 1h
@ IN SOA ns1 hostmaster ( 2026120201 ; serial
        7200 3600
        1209600 300 )
  IN NS ns1.example.net.
ns1 300 IN A 192.0.2.53
    IN 600 AAAA 2001:db8::53   ; owner inherited, class before TTL
$ORIGIN sub.example.net.
www A 192.0.2.1
txt TXT "a string; with a semicolon" "and \"quotes\"" \065\066
"#);
    let text: Vec<String> = records[..5].iter().map(|r| r.to_string()).collect();
    assert_eq!(
        text,
        [
            "example.net. 3600 IN SOA ns1.example.net. hostmaster.example.net. 2026120201 7200 3600 1209600 300",
            "example.net. 3600 IN NS ns1.example.net.",
            "ns1.example.net. 300 IN A 192.0.2.53",
            "ns1.example.net. 600 IN AAAA 2001:db8::53",
            "www.sub.example.net. 3600 IN A 192.0.2.1",
        ]
    );
}

#[test]
fn txt_strings_keep_quotes_semicolons_and_escapes() {
    let r = one("t 60 TXT \"a; b\" \"and \\\"q\\\"\" \\065\\066 \"\\\\\"\n");
    let RData::TXT(txt) = &r.data else {
        panic!("{r:?}");
    };
    let strings: Vec<&[u8]> = txt.txt_data.iter().map(|s| &s[..]).collect();
    assert_eq!(strings, [&b"a; b"[..], b"and \"q\"", b"AB", b"\\"]);
}

#[test]
fn without_ttl_directive_the_last_ttl_carries_over() {
    let r = ok("a 60 A 192.0.2.1\nb A 192.0.2.2\n");
    assert_eq!(r[1].ttl, 60);
    let e = errors("a A 192.0.2.1\n");
    assert!(e[0].reason.contains("no TTL"), "{e:?}");
}

#[test]
fn the_example_zone_parses_as_hickory_parses_it() {
    let text = include_str!("../../../../deploy/examples/single-node/example.net.zone");
    let mut ours: Vec<String> = ok(text).iter().map(|r| r.to_string()).collect();
    let (_, sets) = Parser::new(text, None, Some(origin()))
        .parse()
        .expect("hickory parses the example");
    let mut theirs: Vec<String> = sets
        .values()
        .flat_map(|s| s.records_without_rrsigs().map(|r| r.to_string()))
        .collect();
    ours.sort();
    theirs.sort();
    assert_eq!(ours, theirs);
}

#[test]
fn strict_errors_name_their_lines_and_all_are_reported() {
    let e = errors(
        "$TTL 300
foo IN A 192.0.2.1 extra
garbage
ok IN A 192.0.2.2
bar CH TXT \"chaos\"
baz 99999999999 IN A 192.0.2.3
qux 1x IN A 192.0.2.3
  IN BOGUS 1
out.example.org. IN A 192.0.2.4
a IN A 300.1.1.1
b IN MX mail
c IN TXT \"unterminated
d IN A 192.0.2.5 )
$INCLUDE other.zone
e IN TYPE65534 \\# 3 abcd
@ IN SOA a b 1 2 3 4 5
@ IN SOA a b 1 2 3 4 5
f IN RRSIG A 8 2 300 ...
g IN A ( 192.0.2.6
",
    );
    let got: Vec<String> = e
        .iter()
        .map(|e| format!("{}: {}", e.line, e.reason))
        .collect();
    assert_eq!(
        got,
        [
            "2: foo.example.net. A: trailing data: 2 fields where 1 are expected",
            "3: garbage.example.net.: no type",
            "5: class CH: only IN is served",
            "6: bad TTL `99999999999`",
            "7: bad TTL `1x`",
            "8: unknown type BOGUS",
            "9: out.example.org. is outside the zone example.net.",
            "10: a.example.net. A: bad IPv4 address `300.1.1.1`",
            "11: b.example.net. MX: 1 fields where 2 are expected",
            "12: unterminated quoted string",
            "13: `)` without `(`",
            "14: $INCLUDE is not supported: a zone is one file",
            "15: e.example.net. TYPE65534: `\\#` announces 3 octets but has 2",
            "17: a second SOA record",
            "18: RRSIG: DNSSEC signatures and keys are not served (Sparrow does not sign)",
            "19: `(` is never closed"
        ]
    );
}

#[test]
fn errors_are_capped_and_counted() {
    let text: String = (0..50).map(|i| format!("n{i} 60 IN A bad\n")).collect();
    let e = parse(&text, &origin()).expect_err("bad");
    assert_eq!(e.errors.len(), MAX_ERRORS);
    assert_eq!(e.total, 50);
    let rendered = e.render("z.zone");
    assert!(rendered.starts_with("z.zone:1: n0.example.net. A: bad IPv4 address `bad`\n"));
    assert!(
        rendered.ends_with("z.zone: 30 more errors not shown"),
        "{rendered}"
    );
    assert_eq!(
        parse_file("x 60 IN A 1.2.3.4 5\n", "f", &origin()).expect_err("bad"),
        "f:1: x.example.net. A: trailing data: 2 fields where 1 are expected"
    );
}

#[test]
fn a_bad_last_line_of_a_large_file_is_found() {
    let mut text = String::from("$TTL 300\n");
    for i in 0..100_000 {
        text.push_str(&format!("h{i} IN A 192.0.2.{}\n", i % 250));
    }
    text.push_str("last IN A 192.0.2.1 extra\n");
    let e = errors(&text);
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].line, 100_002);
}

/// Each pair: a type's text form, and the same data in RFC 3597 generic syntax.
#[test]
fn text_and_generic_forms_agree() {
    let pairs = [
        ("A 192.0.2.1", "A \\# 4 c0000201"),
        ("TYPE1 192.0.2.1", "CLASS1 TYPE1 \\# 4 C0 00 02 01"),
        (
            "MX 10 mail.example.net.",
            "MX \\# 20 000a 046d61696c076578616d706c65036e657400",
        ),
        ("DNAME a.b.", "DNAME \\# 5 0161016200"),
        ("RP a.b. c.d.", "TYPE17 \\# 10 0161016200 0163016400"),
        ("AFSDB 1 a.b.", "TYPE18 \\# 7 0001 0161016200"),
        ("KX 5 a.b.", "TYPE36 \\# 7 0005 0161016200"),
        (
            "SPF \"v=spf1 -all\"",
            "TYPE99 \\# 12 0b763d73706631202d616c6c",
        ),
        (
            "URI 10 1 \"ftp://a\"",
            "TYPE256 \\# 11 000a 0001 6674703a2f2f61",
        ),
        ("EUI48 00-00-5e-00-53-2a", "TYPE108 \\# 6 00005e00532a"),
        (
            "EUI64 00-00-5e-ef-10-00-00-2a",
            "TYPE109 \\# 8 00005eef1000002a",
        ),
        (
            "DHCID AAIBY2/AuCccgoJbsaxcQc9TUapptP69lOjxfNuVAA2kjEA=",
            "DHCID \\# 35 0002 01 636fc0b8271c82825bb1ac5c41cf5351aa69b4febd94e8f17cdb95000da48c40",
        ),
        (
            "ZONEMD 2026120201 1 1 000102030405060708090a0b",
            "TYPE63 \\# 18 78c42409 01 01 000102030405060708090a0b",
        ),
        (
            "DS 60485 5 1 2BB183AF5F22588179A53B0A98631FAD1A292118",
            "DS \\# 24 ec45 05 01 2bb183af5f22588179a53b0a98631fad1a292118",
        ),
        ("HINFO \"PC\" \"Linux\"", "HINFO \\# 9 02504305 4c696e7578"),
        (
            "CAA 0 issue \"ca.example\"",
            "CAA \\# 17 00 05 6973737565 63612e6578616d706c65",
        ),
    ];
    for (text, generic) in pairs {
        let a = one(&format!("x 60 IN {text}\n"));
        let b = one(&format!("x 60 {generic}\n"));
        assert_eq!(a.data, b.data, "{text} / {generic}");
        assert_eq!(a.record_type(), b.record_type(), "{text}");
    }
}

#[test]
fn unknown_types_in_generic_syntax_are_kept_as_bytes() {
    let r = one("x 60 IN TYPE65534 \\# 3 abcdef\n");
    assert_eq!(r.record_type(), RecordType::Unknown(65534));
    match &r.data {
        RData::Unknown { rdata, .. } => assert_eq!(rdata.anything, vec![0xab, 0xcd, 0xef]),
        other => panic!("{other:?}"),
    }
    let empty = one("x 60 IN TYPE65534 \\# 0\n");
    assert_eq!(empty.record_type(), RecordType::Unknown(65534));
    let e = errors("x 60 IN LOC 52 22 23.000 N 4 53 32.000 E -2.00m\n");
    assert!(e[0].reason.contains("generic syntax"), "{e:?}");
    let e = errors("x 60 IN A \\# 3 c00002\n");
    assert!(e[0].reason.contains("no valid A data"), "{e:?}");
}

#[test]
fn hickory_types_get_their_field_counts_checked() {
    one("x 60 IN SSHFP 1 1 dd465c09cfa51fb45020cc83316fff21b9ec74ac\n");
    one(
        "x 60 IN TLSA 3 1 1 ( 0c72ac70b745ac19998811b131d662c9 ac69dbdbe7cb23e5b514b56664c5d3d6 )\n",
    );
    one("x 60 IN NAPTR 100 10 \"S\" \"SIP+D2U\" \"\" _sip._udp.example.net.\n");
    let e = errors("x 60 IN HINFO \"PC\" \"Linux\" extra\n");
    assert!(e[0].reason.contains("trailing data"), "{e:?}");
}

#[test]
fn escaped_and_multibyte_characters_in_names_stay_whole() {
    let r = one("a\\ b 60 IN TXT \"caf\u{e9}\"\n");
    assert_eq!(r.name.num_labels(), 3);
    let e = errors("\\\u{e9} 60 IN A 192.0.2.1 x\n");
    assert_eq!(e[0].line, 1);
}
