//! [P] RFC 1035 zone files, read in one linear pass.
//!
//! Every error carries its line, and a file's errors are all reported (up to
//! [`MAX_ERRORS`]): a bad entry is skipped and the next one parsed. The syntax is strict:
//! trailing data after a record's fields, an unknown class or type, a bad TTL, a record
//! outside the zone or a second SOA are errors, not warnings.
//!
//! - Directives: `$ORIGIN` (relative to the current origin) and `$TTL`. `$INCLUDE` is refused:
//!   files are read through the node's bounded `FileSource` and a zone is one file.
//! - Entries: an owner (`@`, absolute or relative; a line starting with a blank inherits the
//!   previous owner), then TTL and class in either order, then the type and its data.
//!   Parentheses join lines, `;` starts a comment, `"..."` quotes, `\X` and `\DDD` escape.
//! - TTL: seconds or BIND units (`1h30m`), at most 2^31 - 1 (RFC 2181 section 8); an entry
//!   without one takes `$TTL`, else the last TTL given.
//! - Class: `IN` or `CLASS1`, and nothing else.
//! - Types: every type hickory reads as text (A, AAAA, NS, CNAME, PTR, MX, SOA, SRV, TXT,
//!   CAA, CERT, CSYNC, HINFO, HTTPS, SVCB, NAPTR, OPENPGPKEY, SSHFP, TLSA, SMIMEA, ANAME),
//!   and here also DNAME, RP, AFSDB, KX, SPF, URI, EUI48, EUI64, DHCID, ZONEMD, DS and CDS
//!   (kept as their wire bytes). Any type, known or not, in RFC 3597 generic syntax:
//!   `TYPE65534 \# 3 abcdef`, `LOC \# 16 ...`; when hickory can decode the type, the bytes
//!   must decode. Meta types (OPT, TSIG, AXFR...) and DNSSEC signatures and keys are refused.
//!
//! The common types (A, AAAA, NS, CNAME, PTR, MX, SOA, SRV, TXT) are parsed here; the others
//! go to hickory's parser one record at a time, after their field count is checked.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use hickory_proto::rr::rdata::{A, AAAA, ANAME, CNAME, MX, NS, NULL, PTR, SOA, SRV, TXT};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecoder, BinEncodable, Restrict};
use hickory_proto::serialize::txt::{Parser, parse_ttl};

/// How many errors of one file are reported; the rest are counted.
pub const MAX_ERRORS: usize = 20;

/// The largest TTL (RFC 2181 section 8).
const MAX_TTL: u32 = 0x7fff_ffff;

/// One error: its line (1-based) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneFileError {
    /// The line of the entry (its first line, for entries joined by parentheses).
    pub line: usize,
    /// What is wrong, in lower case.
    pub reason: String,
}

/// The errors of a file: the first [`MAX_ERRORS`], and how many there were in all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneFileErrors {
    /// The first errors, in line order.
    pub errors: Vec<ZoneFileError>,
    /// Every error found, including those not kept.
    pub total: usize,
}

impl ZoneFileErrors {
    /// One `file:line: reason` line per error, and a last line counting those left out.
    pub fn render(&self, file: &str) -> String {
        let mut out: Vec<String> = self
            .errors
            .iter()
            .map(|e| format!("{file}:{}: {}", e.line, e.reason))
            .collect();
        if self.total > self.errors.len() {
            out.push(format!(
                "{file}: {} more errors not shown",
                self.total - self.errors.len()
            ));
        }
        out.join("\n")
    }
}

/// Parses a zone file for the zone `origin` (also the initial `$ORIGIN`), naming errors
/// `file:line: reason`, one per line.
pub fn parse_file(text: &str, file: &str, origin: &Name) -> Result<Vec<Record>, String> {
    parse(text, origin).map_err(|e| e.render(file))
}

/// Parses a zone file for the zone `origin` (also the initial `$ORIGIN`).
pub fn parse(text: &str, origin: &Name) -> Result<Vec<Record>, ZoneFileErrors> {
    let mut records = Vec::new();
    parse_each(text, origin, |_, record| records.push(record))?;
    Ok(records)
}

/// Parses a zone file for the zone `origin`, giving `each` every record with the line of
/// its entry (for errors found after parsing, such as a geo name's conflicts).
pub fn parse_each(
    text: &str,
    origin: &Name,
    mut each: impl FnMut(usize, Record),
) -> Result<(), ZoneFileErrors> {
    let mut origin = origin.clone();
    origin.set_fqdn(true);
    let mut state = State {
        zone: origin.clone(),
        origin,
        default_ttl: None,
        last_ttl: None,
        owner: None,
        soa_seen: false,
    };
    let mut lexer = Lexer {
        src: text,
        pos: 0,
        line: 1,
    };
    let mut errors = Vec::new();
    let mut total = 0;
    let mut entry = Entry::default();
    while let Some(lexed) = lexer.next_entry(&mut entry) {
        let result = lexed.and_then(|()| state.entry(&entry));
        match result {
            Ok(Some(record)) => each(entry.line, record),
            Ok(None) => {}
            Err(e) => {
                total += 1;
                if errors.len() < MAX_ERRORS {
                    errors.push(e);
                }
            }
        }
    }
    if total > 0 {
        return Err(ZoneFileErrors { errors, total });
    }
    Ok(())
}

/// One token of an entry.
#[derive(Debug, Clone, Copy)]
struct Token<'a> {
    /// The text, without its quotes; escapes are kept.
    text: &'a str,
    quoted: bool,
}

/// One entry: a line, or lines joined by parentheses.
#[derive(Debug, Default)]
struct Entry<'a> {
    line: usize,
    /// The entry's first line starts with a blank: the owner is the previous one.
    blank_start: bool,
    tokens: Vec<Token<'a>>,
}

struct Lexer<'a> {
    src: &'a str,
    pos: usize,
    line: usize,
}

fn err(line: usize, reason: impl Into<String>) -> ZoneFileError {
    ZoneFileError {
        line,
        reason: reason.into(),
    }
}

impl<'a> Lexer<'a> {
    /// Reads the next entry into `out`; `None` at the end of the text. After an error the
    /// rest of the entry's line is skipped.
    fn next_entry(&mut self, out: &mut Entry<'a>) -> Option<Result<(), ZoneFileError>> {
        let bytes = self.src.as_bytes();
        out.tokens.clear();
        out.line = self.line;
        out.blank_start = matches!(bytes.get(self.pos), Some(b' ' | b'\t'));
        let mut depth = 0usize;
        let mut open_line = 0;
        while let Some(&b) = bytes.get(self.pos) {
            match b {
                b'\n' => {
                    self.pos += 1;
                    self.line += 1;
                    if depth == 0 {
                        if !out.tokens.is_empty() {
                            return Some(Ok(()));
                        }
                        out.line = self.line;
                        out.blank_start = matches!(bytes.get(self.pos), Some(b' ' | b'\t'));
                    }
                }
                b' ' | b'\t' | b'\r' => self.pos += 1,
                b';' => {
                    while bytes.get(self.pos).is_some_and(|&c| c != b'\n') {
                        self.pos += 1;
                    }
                }
                b'(' => {
                    if depth == 0 {
                        open_line = self.line;
                    }
                    depth += 1;
                    self.pos += 1;
                }
                b')' => {
                    if depth == 0 {
                        let line = self.line;
                        self.skip_line();
                        return Some(Err(err(line, "`)` without `(`")));
                    }
                    depth -= 1;
                    self.pos += 1;
                }
                b'"' => {
                    let start = self.pos + 1;
                    let mut i = start;
                    loop {
                        match bytes.get(i) {
                            Some(b'"') => break,
                            Some(b'\\') if i + 1 < bytes.len() && bytes[i + 1] != b'\n' => i += 2,
                            Some(b'\n') | None => {
                                let line = self.line;
                                self.pos = i;
                                self.skip_line();
                                return Some(Err(err(line, "unterminated quoted string")));
                            }
                            Some(_) => i += 1,
                        }
                    }
                    out.tokens.push(Token {
                        text: &self.src[start..i],
                        quoted: true,
                    });
                    self.pos = i + 1;
                }
                _ => {
                    let start = self.pos;
                    let mut i = start;
                    while let Some(&c) = bytes.get(i) {
                        match c {
                            b' ' | b'\t' | b'\r' | b'\n' | b';' | b'(' | b')' | b'"' => break,
                            b'\\' if i + 1 < bytes.len() && bytes[i + 1] != b'\n' => {
                                // A multi-byte character after the backslash stays whole.
                                i += 1;
                                i += utf8_len(bytes[i]);
                            }
                            _ => i += 1,
                        }
                    }
                    let i = i.min(bytes.len());
                    out.tokens.push(Token {
                        text: &self.src[start..i],
                        quoted: false,
                    });
                    self.pos = i;
                }
            }
        }
        if depth > 0 {
            return Some(Err(err(open_line, "`(` is never closed")));
        }
        if out.tokens.is_empty() {
            None
        } else {
            Some(Ok(()))
        }
    }

    /// Moves to the start of the next line.
    fn skip_line(&mut self) {
        let bytes = self.src.as_bytes();
        while let Some(&c) = bytes.get(self.pos) {
            self.pos += 1;
            if c == b'\n' {
                self.line += 1;
                return;
            }
        }
    }
}

/// The length of the UTF-8 character starting with `first`.
fn utf8_len(first: u8) -> usize {
    match first {
        0xf0.. => 4,
        0xe0.. => 3,
        0xc0.. => 2,
        _ => 1,
    }
}

/// What carries over from one entry to the next.
struct State {
    zone: Name,
    origin: Name,
    default_ttl: Option<u32>,
    last_ttl: Option<u32>,
    owner: Option<Name>,
    soa_seen: bool,
}

impl State {
    fn entry(&mut self, entry: &Entry<'_>) -> Result<Option<Record>, ZoneFileError> {
        let line = entry.line;
        let e = |reason: String| err(line, reason);
        let tokens = &entry.tokens;
        let first = tokens[0];
        if !entry.blank_start && !first.quoted && first.text.starts_with('$') {
            self.directive(first.text, &tokens[1..]).map_err(e)?;
            return Ok(None);
        }
        let mut rest = tokens.iter();
        let owner = if entry.blank_start {
            self.owner.clone().ok_or_else(|| {
                e("the entry starts with a blank but no owner came before".to_owned())
            })?
        } else {
            rest.next();
            let owner = self.name(first).map_err(e)?;
            self.owner = Some(owner.clone());
            owner
        };
        let mut ttl = None;
        let mut class = false;
        let rtype = loop {
            let Some(t) = rest.next() else {
                return Err(e(format!("{owner}: no type")));
            };
            if t.quoted {
                return Err(e(format!("\"{}\" is not a TTL, class or type", t.text)));
            }
            if t.text.starts_with(|c: char| c.is_ascii_digit()) {
                if ttl.is_some() {
                    return Err(e(format!("a second TTL `{}`", t.text)));
                }
                ttl = Some(parse_ttl_value(t.text).map_err(e)?);
                continue;
            }
            let upper = t.text.to_ascii_uppercase();
            match upper.as_str() {
                "IN" | "CLASS1" if !class => class = true,
                "IN" | "CLASS1" => return Err(e(format!("a second class `{}`", t.text))),
                "CH" | "HS" | "CS" | "NONE" | "ANY" => {
                    return Err(e(format!("class {upper}: only IN is served")));
                }
                _ if upper.starts_with("CLASS") => {
                    return Err(e(format!("class {upper}: only IN is served")));
                }
                _ => break parse_type(&upper).map_err(e)?,
            }
        };
        let ttl = match ttl {
            Some(t) => {
                self.last_ttl = Some(t);
                t
            }
            None => self.default_ttl.or(self.last_ttl).ok_or_else(|| {
                e(format!(
                    "{owner}: no TTL (give one, or set $TTL before the first record)"
                ))
            })?,
        };
        let fields: Vec<Token<'_>> = rest.copied().collect();
        let data = rdata(rtype, &fields, &self.origin)
            .map_err(|reason| e(format!("{owner} {}: {reason}", type_name(rtype))))?;
        if !self.zone.zone_of(&owner) {
            return Err(e(format!("{owner} is outside the zone {}", self.zone)));
        }
        if rtype == RecordType::SOA {
            if owner != self.zone {
                return Err(e(format!("SOA at {owner} is not at the zone apex")));
            }
            if self.soa_seen {
                return Err(e("a second SOA record".to_owned()));
            }
            self.soa_seen = true;
        }
        let mut record = Record::from_rdata(owner, ttl, data);
        record.dns_class = DNSClass::IN;
        Ok(Some(record))
    }

    fn directive(&mut self, name: &str, args: &[Token<'_>]) -> Result<(), String> {
        let upper = name.to_ascii_uppercase();
        let one = || match args {
            [t] if !t.quoted => Ok(t.text),
            _ => Err(format!("{upper} takes one argument")),
        };
        match upper.as_str() {
            "$ORIGIN" => {
                self.origin = parse_name(one()?, &self.origin)?;
                Ok(())
            }
            "$TTL" => {
                self.default_ttl = Some(parse_ttl_value(one()?)?);
                Ok(())
            }
            "$INCLUDE" => Err("$INCLUDE is not supported: a zone is one file".to_owned()),
            _ => Err(format!("unknown directive {name}")),
        }
    }

    fn name(&self, t: Token<'_>) -> Result<Name, String> {
        if t.quoted {
            return Err(format!("\"{}\": a name cannot be quoted", t.text));
        }
        parse_name(t.text, &self.origin)
    }
}

/// A name, `@` for the origin, relative names completed by it. `\X` and `\DDD` escapes put
/// any octet in a label (`a\.b` is one label).
fn parse_name(text: &str, origin: &Name) -> Result<Name, String> {
    if text == "@" {
        return Ok(origin.clone());
    }
    let bad = |e: &dyn std::fmt::Display| format!("bad name `{text}`: {e}");
    let name = match Name::from_ascii(text) {
        Ok(name) if !text.contains('\\') => name,
        _ => raw_name(text).map_err(|e| bad(&e))?,
    };
    if name.is_fqdn() {
        Ok(name)
    } else {
        name.append_domain(origin).map_err(|e| bad(&e))
    }
}

/// A name from its presentation form, label by label, as raw octets.
fn raw_name(text: &str) -> Result<Name, String> {
    if text == "." {
        return Ok(Name::root());
    }
    let mut labels: Vec<Vec<u8>> = Vec::new();
    let mut label = Vec::new();
    let mut fqdn = false;
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' => {
                let (octet, used) = unescape_one(&b[i..])?;
                label.push(octet);
                i += used;
                continue;
            }
            b'.' if label.is_empty() => return Err("an empty label".to_owned()),
            b'.' => {
                labels.push(std::mem::take(&mut label));
                fqdn = i + 1 == b.len();
            }
            c => label.push(c),
        }
        i += 1;
    }
    if !label.is_empty() {
        labels.push(label);
    }
    let mut name = Name::from_labels(labels).map_err(|e| e.to_string())?;
    name.set_fqdn(fqdn);
    Ok(name)
}

/// The octet an escape at the start of `b` stands for, and the bytes it takes.
fn unescape_one(b: &[u8]) -> Result<(u8, usize), String> {
    if let Some(d) = b.get(1..4).filter(|d| d.iter().all(u8::is_ascii_digit)) {
        let v = u32::from(d[0] - b'0') * 100 + u32::from(d[1] - b'0') * 10 + u32::from(d[2] - b'0');
        let octet = u8::try_from(v).map_err(|_| format!("escape \\{v} is above 255"))?;
        Ok((octet, 4))
    } else if let Some(&c) = b.get(1) {
        Ok((c, 2))
    } else {
        Err("a lone `\\` at the end".to_owned())
    }
}

fn parse_ttl_value(text: &str) -> Result<u32, String> {
    match parse_ttl(text) {
        Ok(t) if t <= MAX_TTL => Ok(t),
        Ok(_) => Err(format!("TTL {text} is above 2147483647 (RFC 2181)")),
        Err(_) => Err(format!("bad TTL `{text}`")),
    }
}

/// Types kept as wire bytes: hickory has no text form for them.
const EXTRA_TYPES: &[(&str, u16)] = &[
    ("RP", 17),
    ("AFSDB", 18),
    ("LOC", 29),
    ("KX", 36),
    ("APL", 42),
    ("IPSECKEY", 45),
    ("DHCID", 49),
    ("ZONEMD", 63),
    ("SPF", 99),
    ("EUI48", 108),
    ("EUI64", 109),
    ("URI", 256),
];

/// A type's mnemonic, `TYPEnnn` for one without.
fn type_name(rtype: RecordType) -> String {
    match rtype {
        RecordType::Unknown(code) => EXTRA_TYPES
            .iter()
            .find(|(_, c)| *c == code)
            .map_or_else(|| format!("TYPE{code}"), |(n, _)| (*n).to_owned()),
        known => known.to_string(),
    }
}

/// A type mnemonic or `TYPEnnn`, upper case; data types only.
fn parse_type(upper: &str) -> Result<RecordType, String> {
    let rtype = if let Some(code) = upper.strip_prefix("TYPE") {
        RecordType::from(
            code.parse::<u16>()
                .map_err(|_| format!("unknown type {upper}"))?,
        )
    } else if let Some((_, code)) = EXTRA_TYPES.iter().find(|(n, _)| *n == upper) {
        RecordType::from(*code)
    } else {
        RecordType::from_str(upper).map_err(|_| format!("unknown type {upper}"))?
    };
    let code = u16::from(rtype);
    match rtype {
        RecordType::RRSIG
        | RecordType::NSEC
        | RecordType::NSEC3
        | RecordType::NSEC3PARAM
        | RecordType::DNSKEY
        | RecordType::CDNSKEY
        | RecordType::SIG
        | RecordType::KEY => Err(format!(
            "{upper}: DNSSEC signatures and keys are not served (Sparrow does not sign)"
        )),
        _ if code == 0 || code == 41 || (128..=255).contains(&code) => {
            Err(format!("{upper} is a meta type, not zone data"))
        }
        _ => Ok(rtype),
    }
}

/// The data of one record from its fields.
fn rdata(rtype: RecordType, f: &[Token<'_>], origin: &Name) -> Result<RData, String> {
    if let Some(first) = f.first()
        && !first.quoted
        && first.text == "\\#"
    {
        return generic(rtype, &f[1..]);
    }
    let name = |t: Token<'_>| {
        if t.quoted {
            Err(format!("\"{}\": a name cannot be quoted", t.text))
        } else {
            parse_name(t.text, origin)
        }
    };
    let code = u16::from(rtype);
    let unknown = |bytes: Vec<u8>| -> Result<RData, String> {
        Ok(RData::Unknown {
            code: rtype,
            rdata: if bytes.is_empty() {
                NULL::new()
            } else {
                NULL::with(bytes)
            },
        })
    };
    match rtype {
        RecordType::A => {
            let [t] = fields(f)?;
            Ok(RData::A(A(number::<Ipv4Addr>(t, "IPv4 address")?)))
        }
        RecordType::AAAA => {
            let [t] = fields(f)?;
            Ok(RData::AAAA(AAAA(number::<Ipv6Addr>(t, "IPv6 address")?)))
        }
        RecordType::NS => Ok(RData::NS(NS(name(fields::<1>(f)?[0])?))),
        RecordType::CNAME => Ok(RData::CNAME(CNAME(name(fields::<1>(f)?[0])?))),
        RecordType::PTR => Ok(RData::PTR(PTR(name(fields::<1>(f)?[0])?))),
        RecordType::ANAME => Ok(RData::ANAME(ANAME(name(fields::<1>(f)?[0])?))),
        RecordType::MX => {
            let [p, n] = fields(f)?;
            Ok(RData::MX(MX::new(number(p, "preference")?, name(n)?)))
        }
        RecordType::SRV => {
            let [p, w, port, n] = fields(f)?;
            Ok(RData::SRV(SRV::new(
                number(p, "priority")?,
                number(w, "weight")?,
                number(port, "port")?,
                name(n)?,
            )))
        }
        RecordType::SOA => {
            let [m, r, serial, refresh, retry, expire, minimum] = fields(f)?;
            let interval = |t: Token<'_>| -> Result<i32, String> {
                let v = parse_ttl_value(t.text)?;
                Ok(i32::try_from(v).unwrap_or(i32::MAX))
            };
            Ok(RData::SOA(SOA::new(
                name(m)?,
                name(r)?,
                number(serial, "serial")?,
                interval(refresh)?,
                interval(retry)?,
                interval(expire)?,
                parse_ttl_value(minimum.text)?,
            )))
        }
        RecordType::TXT => {
            let strings = char_strings(f)?;
            Ok(RData::TXT(TXT::from_bytes(
                strings.iter().map(Vec::as_slice).collect(),
            )))
        }
        RecordType::DNAME => unknown(name(fields::<1>(f)?[0])?.to_bytes().map_err(str_err)?),
        RecordType::DS | RecordType::CDS => {
            let [tag, alg, digest_type, rest @ ..] = f else {
                return Err("needs key tag, algorithm, digest type and digest".to_owned());
            };
            let mut out = number::<u16>(*tag, "key tag")?.to_be_bytes().to_vec();
            out.push(number(*alg, "algorithm")?);
            out.push(number(*digest_type, "digest type")?);
            out.extend(hex(rest)?);
            unknown(out)
        }
        _ => match code {
            // RP: mailbox and TXT owner.
            17 => {
                let [mbox, txt] = fields(f)?;
                let mut out = name(mbox)?.to_bytes().map_err(str_err)?;
                out.extend(name(txt)?.to_bytes().map_err(str_err)?);
                unknown(out)
            }
            // AFSDB (subtype) and KX (preference): a number and a name.
            18 | 36 => {
                let [n, target] = fields(f)?;
                let mut out = number::<u16>(n, "number")?.to_be_bytes().to_vec();
                out.extend(name(target)?.to_bytes().map_err(str_err)?);
                unknown(out)
            }
            // SPF: TXT's form.
            99 => {
                let mut out = Vec::new();
                for s in char_strings(f)? {
                    out.push(s.len() as u8);
                    out.extend(s);
                }
                unknown(out)
            }
            // URI: priority, weight, target (RFC 7553).
            256 => {
                let [p, w, target] = fields(f)?;
                let mut out = number::<u16>(p, "priority")?.to_be_bytes().to_vec();
                out.extend(number::<u16>(w, "weight")?.to_be_bytes());
                let target = unescape(target.text)?;
                if target.is_empty() {
                    return Err("empty target".to_owned());
                }
                out.extend(target);
                unknown(out)
            }
            // EUI48, EUI64: hex pairs joined by `-` (RFC 7043).
            108 | 109 => {
                let [t] = fields(f)?;
                let want = if code == 108 { 6 } else { 8 };
                let parts: Vec<&str> = t.text.split('-').collect();
                if parts.len() != want || parts.iter().any(|p| p.len() != 2) {
                    return Err(format!("`{}` is not {want} hex pairs joined by -", t.text));
                }
                unknown(hex_str(&parts.concat())?)
            }
            // DHCID: base64.
            49 => unknown(base64(f)?),
            // ZONEMD: serial, scheme, hash algorithm, digest (RFC 8976).
            63 => {
                let [serial, scheme, alg, rest @ ..] = f else {
                    return Err("needs serial, scheme, algorithm and digest".to_owned());
                };
                let mut out = number::<u32>(*serial, "serial")?.to_be_bytes().to_vec();
                out.push(number(*scheme, "scheme")?);
                out.push(number(*alg, "hash algorithm")?);
                let digest = hex(rest)?;
                if digest.len() < 12 {
                    return Err("digest shorter than 12 octets".to_owned());
                }
                out.extend(digest);
                unknown(out)
            }
            _ => with_hickory(rtype, f, origin),
        },
    }
}

/// Types left to hickory's text parser, after a check of their field count (hickory ignores
/// fields beyond those it needs).
fn with_hickory(rtype: RecordType, f: &[Token<'_>], origin: &Name) -> Result<RData, String> {
    let (min, max) = match rtype {
        RecordType::HINFO => (2, 2),
        RecordType::CAA => (3, 3),
        RecordType::NAPTR => (6, 6),
        RecordType::SSHFP => (3, usize::MAX),
        RecordType::TLSA | RecordType::SMIMEA | RecordType::CERT => (4, usize::MAX),
        RecordType::CSYNC => (2, usize::MAX),
        RecordType::OPENPGPKEY => (1, usize::MAX),
        RecordType::SVCB | RecordType::HTTPS => (2, usize::MAX),
        _ => {
            return Err(format!(
                "no text form is supported; write it in RFC 3597 generic syntax: {} \\# LENGTH HEX",
                type_name(rtype)
            ));
        }
    };
    if f.len() < min || f.len() > max {
        return Err(field_count(min, max, f.len()));
    }
    let mut text = format!("@ 0 IN {rtype}");
    for t in f {
        text.push(' ');
        if t.quoted {
            text.push('"');
            text.push_str(t.text);
            text.push('"');
        } else {
            text.push_str(t.text);
        }
    }
    text.push('\n');
    let (_, sets) = Parser::new(text, None, Some(origin.clone()))
        .parse()
        .map_err(|e| e.to_string())?;
    sets.into_values()
        .flat_map(|set| set.records_without_rrsigs().cloned().collect::<Vec<_>>())
        .next()
        .map(|r| r.data)
        .ok_or_else(|| "no data".to_owned())
}

/// RFC 3597 section 5: `\# LENGTH HEX...`, decoded when hickory knows the type.
fn generic(rtype: RecordType, f: &[Token<'_>]) -> Result<RData, String> {
    let Some((len, rest)) = f.split_first() else {
        return Err("`\\#` needs a length".to_owned());
    };
    let len: u16 = number(*len, "length")?;
    let bytes = hex(rest)?;
    if bytes.len() != usize::from(len) {
        return Err(format!(
            "`\\#` announces {len} octets but has {}",
            bytes.len()
        ));
    }
    let mut decoder = BinDecoder::new(&bytes);
    let data = RData::read(&mut decoder, rtype, Restrict::new(len))
        .map_err(|e| format!("the octets are no valid {} data: {e}", type_name(rtype)))?;
    if !decoder.is_empty() {
        return Err(format!(
            "the octets are no valid {} data: trailing octets",
            type_name(rtype)
        ));
    }
    Ok(data)
}

/// Exactly `N` fields.
fn fields<'a, const N: usize>(f: &[Token<'a>]) -> Result<[Token<'a>; N], String> {
    <[Token<'a>; N]>::try_from(f).map_err(|_| field_count(N, N, f.len()))
}

fn field_count(min: usize, max: usize, got: usize) -> String {
    match (min == max, got > max) {
        (true, true) => format!("trailing data: {got} fields where {max} are expected"),
        (true, false) => format!("{got} fields where {max} are expected"),
        (false, true) => format!("trailing data: {got} fields where at most {max} are expected"),
        (false, false) => format!("{got} fields where at least {min} are expected"),
    }
}

fn number<T: FromStr>(t: Token<'_>, what: &str) -> Result<T, String> {
    if t.quoted {
        return Err(format!("\"{}\": a {what} cannot be quoted", t.text));
    }
    t.text
        .parse()
        .map_err(|_| format!("bad {what} `{}`", t.text))
}

fn str_err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// Character-strings (TXT, SPF): each field one string of at most 255 octets.
fn char_strings(f: &[Token<'_>]) -> Result<Vec<Vec<u8>>, String> {
    if f.is_empty() {
        return Err("no string".to_owned());
    }
    f.iter()
        .map(|t| {
            let s = unescape(t.text)?;
            if s.len() > 255 {
                Err(format!("a string of {} octets (at most 255)", s.len()))
            } else {
                Ok(s)
            }
        })
        .collect()
}

/// `\X` is X and `\DDD` the octet DDD (RFC 1035 section 5.1).
fn unescape(text: &str) -> Result<Vec<u8>, String> {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' {
            let (octet, used) = unescape_one(&b[i..])?;
            out.push(octet);
            i += used;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Ok(out)
}

/// Hex digits, possibly split into several fields.
fn hex(f: &[Token<'_>]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    for t in f {
        if t.quoted {
            return Err(format!("\"{}\": hex cannot be quoted", t.text));
        }
        out.extend(hex_str(t.text)?);
    }
    Ok(out)
}

fn hex_str(text: &str) -> Result<Vec<u8>, String> {
    if !text.len().is_multiple_of(2) {
        return Err(format!("`{text}`: an odd number of hex digits"));
    }
    text.as_bytes()
        .chunks(2)
        .map(|pair| {
            std::str::from_utf8(pair)
                .ok()
                .and_then(|p| u8::from_str_radix(p, 16).ok())
                .ok_or_else(|| format!("`{text}` is not hex"))
        })
        .collect()
}

fn base64(f: &[Token<'_>]) -> Result<Vec<u8>, String> {
    let joined: String = f.iter().map(|t| t.text).collect();
    data_encoding::BASE64
        .decode(joined.as_bytes())
        .map_err(|e| format!("bad base64: {e}"))
}

#[cfg(test)]
mod tests;
