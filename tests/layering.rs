//! The house keeps its shape: four wings with arrows one way, and no import cycle anywhere.
//!
//! Reads every module of the library under `src/` (the load generator in `src/bin/` is a
//! separate crate) and checks two invariants, naming the file and the path when one breaks:
//!
//! 1. **Wings.** Each top-level module has a rank: `log`, `config`, `error` (0) < `codec`,
//!    `auth` (1) < `hub` (2) < `transport` (3) < `net` (4). A module may refer to its own wing
//!    or to a wing of strictly lower rank — never one above it, never a sibling of its rank.
//!    A top-level module with no rank fails the test (add it to `RANKS` on purpose).
//! 2. **No cycle.** Between the files themselves (each file is a module), the graph of
//!    references is acyclic, inside a wing too.
//! 3. **No god file.** No source file (the load generator's included) has more than
//!    [`MAX_FILE_LINES`] lines outside its tests.
//!
//! A reference is any path through `crate::` (a `use`, grouped `use crate::{a, b::{c}}`
//! included, or a full path in code), `$crate::` (macros) or `super::`. Comments, string
//! literals and `#[cfg(test)]` items are ignored; `mod x;` declarations are not references.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Each top-level module's wing and the wing's rank. `log`, `config`, `names` and `error` together
/// are the base every wing stands on.
const RANKS: &[(&str, &str, u8)] = &[
    ("log", "base", 0),
    ("config", "base", 0),
    ("names", "base", 0),
    ("error", "base", 0),
    ("codec", "codec", 1),
    ("auth", "auth", 1),
    ("hub", "hub", 2),
    ("transport", "transport", 3),
    ("net", "net", 4),
];

/// Macros exported at the crate root (`#[macro_export]` in `log.rs`).
const ROOT_MACROS: &[&str] = &["log", "error", "warn", "info", "debug"];

/// The wing and rank of a top-level module.
fn wing(top: &str) -> Option<(&'static str, u8)> {
    RANKS
        .iter()
        .find(|(m, _, _)| *m == top)
        .map(|&(_, w, r)| (w, r))
}

fn rank(top: &str) -> Option<u8> {
    wing(top).map(|(_, r)| r)
}

/// A module of the library: its path (`["net", "worker", "read"]`) and its file.
struct Module {
    path: Vec<String>,
    file: PathBuf,
    code: String,
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            if p.file_name().is_some_and(|n| n == "bin") && p.parent() == Some(src().as_path()) {
                continue;
            }
            collect(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn module_path(file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src()).expect("under src/");
    let mut parts: Vec<String> = rel
        .iter()
        .map(|c| c.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().expect("a file name");
    match last.as_str() {
        "lib.rs" | "mod.rs" => {}
        name => parts.push(name.trim_end_matches(".rs").to_string()),
    }
    parts
}

fn modules() -> Vec<Module> {
    let mut files = Vec::new();
    collect(&src(), &mut files);
    files
        .into_iter()
        .filter(|f| f.file_name().is_some_and(|n| n != "main.rs"))
        .map(|file| {
            let text = fs::read_to_string(&file).expect("read a source file");
            Module {
                path: module_path(&file),
                code: strip_test_items(&strip_comments_and_strings(&text)),
                file,
            }
        })
        .collect()
}

/// Replaces comments and the contents of string and char literals with spaces, keeping
/// line structure, so neither can look like a path.
fn strip_comments_and_strings(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        let rest = &b[i..];
        if rest.starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if rest.starts_with(b"/*") {
            let mut depth = 0;
            while i < b.len() {
                if b[i..].starts_with(b"/*") {
                    depth += 1;
                    i += 2;
                } else if b[i..].starts_with(b"*/") {
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
        } else if rest.starts_with(b"r#\"") || rest.starts_with(b"r\"") {
            // Raw string: r"..." or r#"..."#.
            let hashes = rest[1..].iter().take_while(|&&c| c == b'#').count();
            i += 2 + hashes;
            let close: Vec<u8> = std::iter::once(b'"')
                .chain(std::iter::repeat_n(b'#', hashes))
                .collect();
            while i < b.len() && !b[i..].starts_with(&close) {
                if b[i] == b'\n' {
                    out.push('\n');
                }
                i += 1;
            }
            i += close.len();
            out.push_str("\"\"");
        } else if b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    i += 1;
                } else if b[i] == b'\n' {
                    out.push('\n');
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else if b[i] == b'\'' && i + 2 < b.len() && (b[i + 2] == b'\'' || b[i + 1] == b'\\') {
            // A char literal ('x', '\n', '\''); lifetimes ('a) are left alone.
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
            let ch = text[i..].chars().next().expect("a char at a boundary");
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

/// Removes every item marked `#[cfg(test)]` (the attribute through the end of the item:
/// its `;` or its balanced `{ }` block).
fn strip_test_items(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    let mut rest = code;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let item = &rest[at..];
        let mut depth = 0usize;
        let mut end = item.len();
        for (i, c) in item.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        end = i + 1;
                        break;
                    }
                }
                ';' if depth == 0 => {
                    end = i + 1;
                    break;
                }
                _ => {}
            }
        }
        rest = &item[end..];
    }
    out.push_str(rest);
    out
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Reads one `use` tree after `crate::` (`a::b`, `{a, b::{c, d}}`, `a::*`) into full paths.
fn use_tree(s: &str, prefix: &[String], out: &mut Vec<Vec<String>>) -> usize {
    let mut i = 0;
    let mut path = prefix.to_vec();
    let b = s.as_bytes();
    loop {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if i < b.len() && b[i] == b'{' {
            i += 1;
            loop {
                while i < b.len() && (b[i].is_ascii_whitespace() || b[i] == b',') {
                    i += 1;
                }
                if i >= b.len() || b[i] == b'}' {
                    return i + 1;
                }
                i += use_tree(&s[i..], &path, out);
            }
        }
        let start = i;
        while i < b.len() && (is_ident(b[i] as char) || b[i] == b'*') {
            i += 1;
        }
        let seg = &s[start..i];
        if !seg.is_empty() && seg != "*" && seg != "self" {
            path.push(seg.to_string());
        }
        let after = s[i..].trim_start();
        if let Some(tail) = after.strip_prefix("::") {
            i = s.len() - tail.len();
            continue;
        }
        out.push(path);
        // Skip an `as name` rename.
        let skipped = s.len() - after.len();
        if let Some(tail) = after.strip_prefix("as ") {
            let tail = tail.trim_start();
            let n = tail.find(|c: char| !is_ident(c)).unwrap_or(tail.len());
            return s.len() - tail.len() + n;
        }
        return skipped;
    }
}

/// Every path a module's code names through `crate::`, `$crate::` or `super::`, made
/// absolute.
fn references(m: &Module, is_dir_module: bool) -> Vec<(Vec<String>, String)> {
    let code = &m.code;
    let mut found = Vec::new();
    let mut i = 0;
    while i < code.len() {
        let rest = &code[i..];
        let prev = code[..i].chars().next_back();
        let boundary = !prev.is_some_and(|c| is_ident(c) || c == ':');
        let (base, len): (Vec<String>, usize) = if boundary && rest.starts_with("crate::") {
            (Vec::new(), "crate::".len())
        } else if rest.starts_with("$crate::") {
            (Vec::new(), "$crate::".len())
        } else if boundary && rest.starts_with("super::") {
            // `super` of a file module is its parent; of a `mod.rs`, the parent of its dir.
            let mut base = m.path.clone();
            let mut n = 0;
            let mut r = rest;
            while let Some(t) = r.strip_prefix("super::") {
                n += 1;
                r = t;
            }
            let up = if is_dir_module { n + 1 } else { n };
            for _ in 0..up.min(base.len()) {
                base.pop();
            }
            (base, rest.len() - r.len())
        } else {
            let step = rest.chars().next().map_or(1, char::len_utf8);
            i += step;
            continue;
        };
        let mut paths = Vec::new();
        let used = use_tree(&rest[len..], &base, &mut paths);
        let line = code[..i].matches('\n').count() + 1;
        let text: String = rest[..(len + used).min(rest.len())]
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        for p in paths {
            found.push((p, format!("line {line}: {text}")));
        }
        i += len + used.max(1);
    }
    found
}

/// The module a path lands in: its longest prefix that is a module file.
fn target(path: &[String], known: &BTreeSet<Vec<String>>) -> Option<Vec<String>> {
    if path.len() == 1 && ROOT_MACROS.contains(&path[0].as_str()) {
        return Some(vec!["log".to_string()]);
    }
    (1..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|p| known.contains(p))
}

#[test]
fn wings_point_down_and_nothing_cycles() {
    let mods = modules();
    assert!(
        mods.len() > 30,
        "found only {} modules under src/",
        mods.len()
    );
    let known: BTreeSet<Vec<String>> = mods.iter().map(|m| m.path.clone()).collect();
    let mut problems = Vec::new();
    let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for m in &mods {
        let Some(top) = m.path.first() else {
            continue; // lib.rs: declares the wings
        };
        let Some((own_wing, own)) = wing(top) else {
            problems.push(format!(
                "{}: top-level module `{top}` has no rank in tests/layering.rs",
                m.file.display()
            ));
            continue;
        };
        let is_dir = m.file.file_name().is_some_and(|n| n == "mod.rs");
        for (path, text) in references(m, is_dir) {
            let Some(to) = target(&path, &known) else {
                continue;
            };
            let Some((to_wing, to_rank)) = to.first().and_then(|t| wing(t)) else {
                continue;
            };
            if to_wing != own_wing && to_rank >= own {
                problems.push(format!(
                    "{}: `{own_wing}` (rank {own}) imports `{}` from `{to_wing}` (rank {to_rank}): {text}",
                    m.file.display(),
                    path.join("::")
                ));
            }
            if to != m.path {
                edges.entry(m.path.clone()).or_default().insert(to);
            }
        }
    }
    if let Some(cycle) = find_cycle(&edges) {
        let names: Vec<String> = cycle.iter().map(|p| p.join("::")).collect();
        problems.push(format!("import cycle: {}", names.join(" → ")));
    }
    assert!(problems.is_empty(), "\n{}\n", problems.join("\n"));
}

/// A cycle in the module graph, if any, as the list of modules around it.
fn find_cycle(edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Option<Vec<Vec<String>>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Active,
        Done,
    }
    fn visit(
        n: &Vec<String>,
        edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        marks: &mut BTreeMap<Vec<String>, Mark>,
        stack: &mut Vec<Vec<String>>,
    ) -> Option<Vec<Vec<String>>> {
        marks.insert(n.clone(), Mark::Active);
        stack.push(n.clone());
        for next in edges.get(n).into_iter().flatten() {
            match marks.get(next) {
                Some(Mark::Active) => {
                    let from = stack.iter().position(|s| s == next).unwrap_or(0);
                    let mut cycle = stack[from..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                Some(Mark::Done) => {}
                None => {
                    if let Some(c) = visit(next, edges, marks, stack) {
                        return Some(c);
                    }
                }
            }
        }
        stack.pop();
        marks.insert(n.clone(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for n in edges.keys() {
        if !marks.contains_key(n) {
            if let Some(c) = visit(n, edges, &mut marks, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

/// Most lines of non-test code in one source file: a file a reviewer can read in a sitting.
const MAX_FILE_LINES: usize = 500;

#[test]
fn no_source_file_is_over_the_bound() {
    let mut files = Vec::new();
    collect_all(&src(), &mut files);
    let mut over = Vec::new();
    for f in &files {
        let text = fs::read_to_string(f).expect("read a source file");
        let code = strip_test_items(&text);
        let lines = code.lines().count();
        if lines > MAX_FILE_LINES {
            over.push(format!("{}: {lines} lines of non-test code", f.display()));
        }
    }
    assert!(files.len() > 50, "found only {} files", files.len());
    assert!(
        over.is_empty(),
        "over {MAX_FILE_LINES} lines (split by responsibility):\n{}",
        over.join("\n")
    );
}

/// Every `.rs` file under `dir`, the load generator's included.
fn collect_all(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display())) {
        let p = e.expect("directory entry").path();
        if p.is_dir() {
            collect_all(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

// The checker checks itself: each rule must catch what it is for.

fn module(path: &str, file: &str, code: &str) -> Module {
    Module {
        path: path.split("::").map(String::from).collect(),
        file: PathBuf::from(file),
        code: strip_test_items(&strip_comments_and_strings(code)),
    }
}

fn refs(m: &Module) -> Vec<String> {
    references(m, false)
        .into_iter()
        .map(|(p, _)| p.join("::"))
        .collect()
}

#[test]
fn grouped_nested_and_full_paths_are_all_seen() {
    let m = module(
        "transport::ws",
        "src/transport/ws.rs",
        "use crate::{hub::{engine::Answer, msg}, codec::frame as f};\n\
         fn x() { crate::net::sys::open(); let s = \"crate::net::no\"; }\n\
         // crate::net::comment\n\
         #[cfg(test)]\nmod tests { use crate::net::in_test; }\n\
         use super::cx::Cx;",
    );
    assert_eq!(
        refs(&m),
        vec![
            "hub::engine::Answer",
            "hub::msg",
            "codec::frame",
            "net::sys::open",
            "transport::cx::Cx"
        ]
    );
}

#[test]
fn an_upward_import_and_a_cycle_are_caught() {
    let known: BTreeSet<Vec<String>> = [vec!["hub".to_string()], vec!["net".to_string()]]
        .into_iter()
        .collect();
    let m = module("hub", "src/hub/mod.rs", "use crate::net::Worker;");
    let (path, _) = &references(&m, true)[0];
    let to = target(path, &known).expect("a known module");
    assert!(
        rank(&to[0]) > rank("hub"),
        "net is above hub: must be refused"
    );
    let mut edges = BTreeMap::new();
    edges.insert(
        vec!["a".to_string()],
        [vec!["b".to_string()]].into_iter().collect(),
    );
    edges.insert(
        vec!["b".to_string()],
        [vec!["a".to_string()]].into_iter().collect(),
    );
    assert!(find_cycle(&edges).is_some());
    edges.remove(&vec!["b".to_string()]);
    assert!(find_cycle(&edges).is_none());
}
