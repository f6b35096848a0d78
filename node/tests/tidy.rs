//! Keeps the layering of `node/src` honest, by reading the code rather than trusting review:
//!
//! - every module says what it is in its first doc line: `[P]` pure (no sockets, clocks,
//!   threads, randomness or file system; time and randomness come in as arguments) or `[E]`
//!   an edge (a `mod.rs` that only declares submodules needs no mark);
//! - pure modules contain none of the tokens that mark I/O, time or randomness;
//! - pure modules import only pure modules (real `use` trees and `crate::`/`super::`/`self::`
//!   paths, resolved to the file that defines them);
//! - the module import graph has no cycle.
//!
//! `SPARROW_IMPORT_GRAPH=1 cargo test -p sparrow-node --test tidy -- --nocapture` prints the
//! graph (`scripts/import-graph` does that). A failure here means a module grew an edge or a
//! type sits in the wrong place: move the effect to an `[E]` module and pass the value in, or
//! move the shared type down to the module both sides already depend on.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Tokens that mark I/O, time or randomness in pure code.
const FORBIDDEN: &[&str] = &[
    "tokio::",
    "std::net::UdpSocket",
    "std::net::TcpStream",
    "std::net::TcpListener",
    "Instant::now",
    "SystemTime::now",
    "std::thread",
    "rand::",
    "std::fs",
    "std::process",
    "std::env",
    "libc::",
];

/// The sanctioned exceptions, each for a reason:
/// - `config::load` reads the config files (through a bounded, regular-files-only reader,
///   which opens with `libc::O_NONBLOCK` so that a FIFO cannot make it wait) and nothing
///   else in `config` does;
/// - `routes::huge` advises the kernel to back the big tables with huge pages (no I/O, no
///   clock, no value depends on it).
const ALLOWED: &[(&str, &str)] = &[
    ("config/mod.rs", "std::fs"),
    ("config/mod.rs", "libc::"),
    ("routes/huge.rs", "libc::"),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Pure,
    Edge,
    /// A `mod.rs` (or `lib.rs`, `main.rs`) without a mark: declarations only.
    Neutral,
}

struct Module {
    path: Vec<String>,
    file: String,
    kind: Kind,
    /// Non-test code with comments and string literals blanked out.
    code: String,
}

fn rust_files(path: &Path, out: &mut Vec<PathBuf>) {
    if path.is_dir() {
        let mut entries: Vec<_> = std::fs::read_dir(path)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for e in entries {
            rust_files(&e, out);
        }
    } else if path.extension().is_some_and(|e| e == "rs") {
        out.push(path.to_owned());
    }
}

/// Blanks comments and the contents of string and char literals, keeping line breaks.
fn strip(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if c == b'/' && b.get(i + 1) == Some(&b'*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                    depth += 1;
                    i += 2;
                } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    if b[i] == b'\n' {
                        out.push('\n');
                    }
                    i += 1;
                }
            }
        } else if c == b'r' && matches!(b.get(i + 1), Some(b'"') | Some(b'#')) && raw_start(b, i) {
            // Raw string r"..." or r#"..."#.
            let mut j = i + 1;
            let mut hashes = 0;
            while b[j] == b'#' {
                hashes += 1;
                j += 1;
            }
            j += 1;
            loop {
                if j >= b.len() {
                    break;
                }
                if b[j] == b'"' && (0..hashes).all(|k| b.get(j + 1 + k) == Some(&b'#')) {
                    j += 1 + hashes;
                    break;
                }
                if b[j] == b'\n' {
                    out.push('\n');
                }
                j += 1;
            }
            out.push_str("\"\"");
            i = j;
        } else if c == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    i += 1;
                }
                if i < b.len() && b[i] == b'\n' {
                    out.push('\n');
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == b'\'' && is_char_literal(b, i) {
            i += 1;
            while i < b.len() && b[i] != b'\'' {
                if b[i] == b'\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("' '");
        } else {
            out.push(c as char);
            i += 1;
        }
    }
    out
}

fn raw_start(b: &[u8], i: usize) -> bool {
    // `r` starts a raw string only when it is not part of an identifier.
    let before = i.checked_sub(1).map(|k| b[k]);
    if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_') {
        return false;
    }
    let mut j = i + 1;
    while j < b.len() && b[j] == b'#' {
        j += 1;
    }
    j < b.len() && b[j] == b'"'
}

fn is_char_literal(b: &[u8], i: usize) -> bool {
    // 'x' or '\n' or '\u{..}', not a lifetime ('a).
    match (b.get(i + 1), b.get(i + 2)) {
        (Some(b'\\'), _) => true,
        (Some(_), Some(b'\'')) => true,
        _ => {
            // A multi-byte UTF-8 character.
            b.get(i + 1).is_some_and(|c| *c >= 0x80)
        }
    }
}

/// The code of a file without its test module(s): everything from the first
/// `#[cfg(test)]` item that is a `mod` on.
fn non_test(code: &str) -> &str {
    let mut search = 0;
    while let Some(at) = code[search..].find("#[cfg(test)]") {
        let at = search + at;
        let rest = code[at + "#[cfg(test)]".len()..].trim_start();
        if rest.starts_with("mod ") || rest.starts_with("pub(crate) mod ") {
            // `#[cfg(test)] mod tests;` declares a file that is excluded anyway; only an inline
            // test module ends the code.
            let line_end = rest.find('\n').unwrap_or(rest.len());
            if !rest[..line_end].trim_end().ends_with(';') {
                return &code[..at];
            }
        }
        search = at + 1;
    }
    code
}

fn load(src: &Path) -> Vec<Module> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut modules = Vec::new();
    for file in files {
        let rel = file
            .strip_prefix(src)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        let stem = rel.trim_end_matches(".rs");
        let mut path: Vec<String> = stem.split('/').map(str::to_owned).collect();
        let last = path.last().cloned().unwrap_or_default();
        // Test files, whatever their depth, are test code.
        if last == "tests" {
            continue;
        }
        if matches!(last.as_str(), "mod" | "lib" | "main") {
            path.pop();
        }
        let text = std::fs::read_to_string(&file).unwrap();
        let first_doc = text
            .lines()
            .find(|l| l.starts_with("//!"))
            .unwrap_or_default();
        let kind = if first_doc.contains("[P]") && !first_doc.contains("[E]") {
            Kind::Pure
        } else if first_doc.contains("[E]") {
            Kind::Edge
        } else {
            Kind::Neutral
        };
        let stripped = strip(&text);
        let code = non_test(&stripped).to_owned();
        modules.push(Module {
            path,
            file: rel,
            kind,
            code,
        });
    }
    modules
}

/// The identifiers of a `::`-separated path starting at byte `at` of `code`, and where it
/// ends.
fn read_path(code: &[u8], mut at: usize) -> (Vec<String>, usize) {
    let mut segs = Vec::new();
    loop {
        while at < code.len() && code[at].is_ascii_whitespace() {
            at += 1;
        }
        let start = at;
        while at < code.len() && (code[at].is_ascii_alphanumeric() || code[at] == b'_') {
            at += 1;
        }
        if start == at {
            break;
        }
        segs.push(String::from_utf8_lossy(&code[start..at]).into_owned());
        let mut k = at;
        while k < code.len() && code[k].is_ascii_whitespace() {
            k += 1;
        }
        if code.get(k) == Some(&b':') && code.get(k + 1) == Some(&b':') {
            at = k + 2;
            let mut m = at;
            while m < code.len() && code[m].is_ascii_whitespace() {
                m += 1;
            }
            if code.get(m) == Some(&b'{') || code.get(m) == Some(&b'*') {
                at = m;
                break;
            }
        } else {
            break;
        }
    }
    (segs, at)
}

/// Expands a `use` tree starting at `at` (after `use`) into full paths.
fn use_tree(code: &[u8], at: usize, prefix: &[String], out: &mut Vec<Vec<String>>) -> usize {
    let (segs, mut at) = read_path(code, at);
    let mut full: Vec<String> = prefix.to_vec();
    for s in segs {
        if s == "self" && !full.is_empty() {
            continue;
        }
        full.push(s);
    }
    while at < code.len() && code[at].is_ascii_whitespace() {
        at += 1;
    }
    if code.get(at) == Some(&b'{') {
        at += 1;
        loop {
            while at < code.len() && (code[at].is_ascii_whitespace() || code[at] == b',') {
                at += 1;
            }
            if at >= code.len() || code[at] == b'}' {
                return at + 1;
            }
            at = use_tree(code, at, &full, out);
        }
    }
    if code.get(at) == Some(&b'*') {
        at += 1;
    }
    out.push(full);
    // Skip `as name`.
    at
}

fn is_ident_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// Every path this module names that may lead into the crate.
fn paths_of(m: &Module) -> Vec<Vec<String>> {
    let code = m.code.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < code.len() {
        let word_start = i == 0 || !is_ident_byte(code[i - 1]);
        if word_start
            && code[i..].starts_with(b"use")
            && !code.get(i + 3).is_some_and(|c| is_ident_byte(*c))
        {
            let end = use_tree(code, i + 3, &[], &mut out);
            i = end.max(i + 3);
            continue;
        }
        if word_start {
            for root in ["crate", "super", "self"] {
                let r = root.as_bytes();
                if code[i..].starts_with(r) {
                    let mut k = i + r.len();
                    while k < code.len() && code[k].is_ascii_whitespace() {
                        k += 1;
                    }
                    if code[k..].starts_with(b"::") {
                        let (segs, _) = read_path(code, i);
                        out.push(segs);
                    }
                }
            }
        }
        i += 1;
    }
    out
}

/// The module a path resolves to, from module `from` (the longest known module prefix).
fn resolve(
    from: &[String],
    is_mod_file: bool,
    path: &[String],
    known: &BTreeSet<Vec<String>>,
) -> Option<Vec<String>> {
    let _ = is_mod_file;
    let mut base: Vec<String>;
    let mut rest: &[String] = path;
    match path.first().map(String::as_str) {
        Some("crate") => {
            base = Vec::new();
            rest = &path[1..];
        }
        Some("self") => {
            base = from.to_vec();
            rest = &path[1..];
        }
        Some("super") => {
            base = from.to_vec();
            while rest.first().map(String::as_str) == Some("super") {
                base.pop();
                rest = &rest[1..];
            }
        }
        Some(first) => {
            // A child module of this one, named without `self::` (2018 paths).
            let mut child = from.to_vec();
            child.push(first.to_owned());
            if !known.contains(&child) {
                return None;
            }
            base = from.to_vec();
        }
        None => return None,
    }
    let mut best = None;
    let mut cur = base.clone();
    if known.contains(&cur) {
        best = Some(cur.clone());
    }
    for seg in rest {
        cur.push(seg.clone());
        if known.contains(&cur) {
            best = Some(cur.clone());
        }
    }
    best
}

struct Graph {
    modules: Vec<Module>,
    edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
}

fn graph() -> Graph {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let modules = load(&src);
    let known: BTreeSet<Vec<String>> = modules.iter().map(|m| m.path.clone()).collect();
    let mut edges = BTreeMap::new();
    for m in &modules {
        let mut deps = BTreeSet::new();
        for p in paths_of(m) {
            if let Some(target) = resolve(&m.path, m.file.ends_with("mod.rs"), &p, &known)
                && target != m.path
                && !target.is_empty()
            {
                // A module's own submodule declarations and re-exports are not imports of
                // the submodule's parent by the child; an edge from a parent to its child is
                // recorded like any other.
                deps.insert(target);
            }
        }
        edges.insert(m.path.clone(), deps);
    }
    Graph { modules, edges }
}

fn name(p: &[String]) -> String {
    if p.is_empty() {
        "crate".to_owned()
    } else {
        p.join("::")
    }
}

/// Strongly connected components with more than one module (Tarjan).
fn cycles(edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Vec<Vec<Vec<String>>> {
    struct T<'a> {
        edges: &'a BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        index: BTreeMap<&'a Vec<String>, usize>,
        low: BTreeMap<&'a Vec<String>, usize>,
        stack: Vec<&'a Vec<String>>,
        on: BTreeSet<&'a Vec<String>>,
        next: usize,
        out: Vec<Vec<Vec<String>>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a Vec<String>) {
        t.index.insert(v, t.next);
        t.low.insert(v, t.next);
        t.next += 1;
        t.stack.push(v);
        t.on.insert(v);
        if let Some(ws) = t.edges.get(v) {
            for w in ws {
                let Some((w, _)) = t.edges.get_key_value(w) else {
                    continue;
                };
                if !t.index.contains_key(w) {
                    visit(t, w);
                    let lw = t.low[w];
                    let lv = t.low[v];
                    t.low.insert(v, lv.min(lw));
                } else if t.on.contains(w) {
                    let iw = t.index[w];
                    let lv = t.low[v];
                    t.low.insert(v, lv.min(iw));
                }
            }
        }
        if t.low[v] == t.index[v] {
            let mut scc = Vec::new();
            loop {
                let w = t.stack.pop().unwrap();
                t.on.remove(w);
                scc.push(w.clone());
                if w == v {
                    break;
                }
            }
            if scc.len() > 1 {
                scc.sort();
                t.out.push(scc);
            }
        }
    }
    let mut t = T {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in edges.keys() {
        if !t.index.contains_key(v) {
            visit(&mut t, v);
        }
    }
    t.out
}

#[test]
fn every_module_says_whether_it_is_pure() {
    let g = graph();
    let unmarked: Vec<&str> = g
        .modules
        .iter()
        .filter(|m| m.kind == Kind::Neutral)
        .filter(|m| {
            let is_decl_file =
                m.file.ends_with("mod.rs") || m.file == "lib.rs" || m.file == "main.rs";
            // A mod.rs with code of its own must say what it is.
            !is_decl_file || m.code.contains("fn ")
        })
        .map(|m| m.file.as_str())
        .collect();
    assert!(
        unmarked.is_empty(),
        "modules without a [P]/[E] mark in their first doc line: {unmarked:?}"
    );
}

#[test]
fn pure_modules_do_no_io() {
    let g = graph();
    let mut violations = Vec::new();
    for m in g.modules.iter().filter(|m| m.kind == Kind::Pure) {
        for (n, line) in m.code.lines().enumerate() {
            for pattern in FORBIDDEN {
                if line.contains(pattern) && !ALLOWED.contains(&(m.file.as_str(), *pattern)) {
                    violations.push(format!("{}:{}: `{pattern}`", m.file, n + 1));
                }
            }
        }
    }
    assert!(
        violations.is_empty(),
        "I/O, time or randomness in pure modules:\n{}",
        violations.join("\n")
    );
}

#[test]
fn pure_modules_import_only_pure_modules() {
    let g = graph();
    let kind: BTreeMap<&Vec<String>, Kind> = g.modules.iter().map(|m| (&m.path, m.kind)).collect();
    let mut violations = Vec::new();
    for m in g.modules.iter().filter(|m| m.kind == Kind::Pure) {
        for dep in &g.edges[&m.path] {
            if kind.get(dep) == Some(&Kind::Edge) {
                violations.push(format!(
                    "{} ({}) imports {} [E]",
                    name(&m.path),
                    m.file,
                    name(dep)
                ));
            }
        }
    }
    assert!(
        violations.is_empty(),
        "pure modules importing edges:\n{}",
        violations.join("\n")
    );
}

#[test]
fn the_module_import_graph_has_no_cycle() {
    let g = graph();
    if std::env::var_os("SPARROW_IMPORT_GRAPH").is_some() {
        println!("digraph node_src {{");
        for m in &g.modules {
            let mark = match m.kind {
                Kind::Pure => "[P]",
                Kind::Edge => "[E]",
                Kind::Neutral => "",
            };
            println!(
                "  \"{}\" [label=\"{} {mark}\"];",
                name(&m.path),
                name(&m.path)
            );
        }
        for (from, deps) in &g.edges {
            for to in deps {
                println!("  \"{}\" -> \"{}\";", name(from), name(to));
            }
        }
        println!("}}");
    }
    let found = cycles(&g.edges);
    let render: Vec<String> = found
        .iter()
        .map(|c| {
            let members: Vec<String> = c.iter().map(|p| name(p)).collect();
            let inner: Vec<String> = c
                .iter()
                .flat_map(|from| {
                    g.edges[from]
                        .iter()
                        .filter(|to| c.contains(to))
                        .map(move |to| format!("    {} -> {}", name(from), name(to)))
                })
                .collect();
            format!(
                "{} modules: {}\n{}",
                c.len(),
                members.join(", "),
                inner.join("\n")
            )
        })
        .collect();
    assert!(
        found.is_empty(),
        "import cycles in node/src:\n{}",
        render.join("\n")
    );
}

#[test]
fn the_import_reader_sees_use_trees_and_paths() {
    let m = Module {
        path: vec!["a".into(), "b".into()],
        file: "a/b.rs".into(),
        kind: Kind::Pure,
        code: strip(
            "use crate::x::{self, y::{Z, W}};\nuse super::c;\nfn f() { crate::q::r(); let s = \"crate::no\"; }\n// crate::nope\n",
        ),
    };
    let paths: Vec<String> = paths_of(&m).iter().map(|p| p.join("::")).collect();
    assert_eq!(
        paths,
        [
            "crate::x",
            "crate::x::y::Z",
            "crate::x::y::W",
            "super::c",
            "crate::q::r"
        ]
    );
    assert_eq!(
        non_test("fn a() {}\n#[cfg(test)]\nmod tests;\nfn b() {}\n#[cfg(test)]\nmod tests {\n}"),
        "fn a() {}\n#[cfg(test)]\nmod tests;\nfn b() {}\n"
    );
}
