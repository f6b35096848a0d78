//! [P] Text formats of route data.
//!
//! - Route views: one `PREFIX AS_PATH...` per line (`100.64.1.0/24 64510 64520`), nearest AS
//!   first; an empty path means the POP's own network (0 hops).
//! - Static map, Super Sparrow's `ssrs.routes`: one `PREFIX ASN` per line, the ASN naming a POP.
//!
//! Both accept blank lines and `#` comments (whole-line or trailing). A bad line is skipped and
//! reported, never guessed at: a prefix with host bits set, an AS number that does not parse,
//! or a prefix listed twice (the first one stays).

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use ipnet::IpNet;

use super::view::{RouteView, Skipped, StaticMap};

/// Parses a route view file. Returns the view and the lines it skipped.
pub fn parse_route_view(text: &str) -> (RouteView, Vec<Skipped>) {
    let mut parser = LineParser::default();
    for (line, fields) in lines(text) {
        let result = prefix(fields[0]).and_then(|net| Ok((net, parse_path(&fields[1..])?)));
        parser.accept(line, result);
    }
    let (entries, skipped) = parser.finish();
    (RouteView::new(entries), skipped)
}

/// Parses a static map file; `pop_of` maps an ASN to the index of the POP it names.
pub fn parse_static_map(
    text: &str,
    pop_of: impl Fn(u32) -> Option<usize>,
) -> (StaticMap, Vec<Skipped>) {
    let mut parser = LineParser::default();
    for (line, fields) in lines(text) {
        let result = match fields[..] {
            [net, asn] => prefix(net).and_then(|net| {
                let asn = parse_asn(asn)?;
                let pop =
                    pop_of(asn).ok_or_else(|| format!("AS{asn} is not the ASN of any POP"))?;
                Ok((net, pop))
            }),
            _ => Err(format!(
                "expected `PREFIX ASN`, found {} fields",
                fields.len()
            )),
        };
        parser.accept(line, result);
    }
    let (entries, skipped) = parser.finish();
    (StaticMap::new(entries), skipped)
}

/// Non-empty lines with comments removed, split on white space, with 1-based line numbers.
fn lines(text: &str) -> impl Iterator<Item = (usize, Vec<&str>)> {
    text.lines().enumerate().filter_map(|(i, raw)| {
        let content = raw.split('#').next().unwrap_or("");
        let fields: Vec<&str> = content.split_whitespace().collect();
        (!fields.is_empty()).then_some((i + 1, fields))
    })
}

fn prefix(s: &str) -> Result<IpNet, String> {
    let net: IpNet = s
        .parse()
        .map_err(|_| format!("`{s}` is not a prefix (want ADDRESS/LENGTH)"))?;
    if net.network() != net.addr() {
        return Err(format!(
            "`{s}` has host bits set (did you mean {}?)",
            net.trunc()
        ));
    }
    Ok(net)
}

fn parse_asn(s: &str) -> Result<u32, String> {
    let digits = s
        .strip_prefix("AS")
        .or_else(|| s.strip_prefix("as"))
        .unwrap_or(s);
    digits
        .parse()
        .map_err(|_| format!("`{s}` is not an AS number"))
}

fn parse_path(fields: &[&str]) -> Result<Box<[u32]>, String> {
    fields.iter().map(|f| parse_asn(f)).collect()
}

/// Collects entries, skipping bad lines and duplicate prefixes.
struct LineParser<T> {
    entries: Vec<(IpNet, T)>,
    first_line: HashMap<IpNet, usize>,
    skipped: Vec<Skipped>,
}

impl<T> Default for LineParser<T> {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
            first_line: HashMap::new(),
            skipped: Vec::new(),
        }
    }
}

impl<T> LineParser<T> {
    fn accept(&mut self, line: usize, result: Result<(IpNet, T), String>) {
        let reason = match result {
            Ok((net, value)) => match self.first_line.entry(net) {
                Entry::Vacant(slot) => {
                    slot.insert(line);
                    self.entries.push((net, value));
                    return;
                }
                Entry::Occupied(first) => {
                    format!("{net} is listed already on line {}", first.get())
                }
            },
            Err(reason) => reason,
        };
        self.skipped.push(Skipped { line, reason });
    }

    fn finish(self) -> (Vec<(IpNet, T)>, Vec<Skipped>) {
        (self.entries, self.skipped)
    }
}
