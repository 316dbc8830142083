//! The layering of `src/`, checked on the source text:
//! - proxy-wasm is used only under `src/wasm/`;
//! - no module of the core uses a host (`host`, `wasm`, `envoy_native`);
//! - no two modules use each other, directly or through others.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Every `.rs` file under `src/`, with its module path (`decide::cache`).
fn modules() -> BTreeMap<String, String> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    walk(&root, &mut files);
    files
        .into_iter()
        .map(|f| {
            let rel = f.strip_prefix(&root).unwrap().with_extension("");
            let mut parts: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
                parts.pop();
            }
            (parts.join("::"), fs::read_to_string(&f).unwrap())
        })
        .collect()
}

/// The source without comments, re-exports and `#[cfg(test)]` modules at
/// the end of a file (tests may reach anywhere).
fn code(text: &str) -> String {
    let body = match text.find("#[cfg(test)]\nmod tests") {
        Some(at) => &text[..at],
        None => text,
    };
    // A `pub use` re-exports: it shapes the surface and adds no dependency.
    body.lines()
        .filter(|l| !l.trim_start().starts_with("pub use"))
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The modules `module` refers to by a `crate::`, `super::` or child path.
fn uses(module: &str, text: &str, all: &BTreeMap<String, String>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = text.as_bytes();
    // Byte ranges of inline `mod name { ... }` blocks: in them, `super::`
    // is the file's own module.
    let mut inline = Vec::new();
    let mut from = 0;
    while let Some(at) = text[from..].find("mod ").map(|a| a + from) {
        from = at + 4;
        let head = &text[from..];
        let name_len = head
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(head.len());
        if head[name_len..].trim_start().starts_with('{') {
            let open = from + name_len + head[name_len..].find('{').unwrap();
            let mut depth = 0;
            let mut end = text.len();
            for (i, c) in text[open..].char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            end = open + i;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            inline.push(open..end);
        }
    }
    let is_ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b':';
    let mut i = 0;
    while i < bytes.len() {
        if (i == 0 || !is_ident(bytes[i - 1])) && bytes[i].is_ascii_alphabetic() {
            let start = i;
            while i < bytes.len() && is_ident(bytes[i]) {
                i += 1;
            }
            let path = &text[start..i];
            let mut segs: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
            let base: Vec<String> = match segs.first() {
                Some(&"crate") => {
                    segs.remove(0);
                    Vec::new()
                }
                Some(&"super") => {
                    let mut b: Vec<String> = module.split("::").map(String::from).collect();
                    if inline.iter().any(|r| r.contains(&start)) {
                        segs.remove(0);
                    }
                    while segs.first() == Some(&"super") {
                        segs.remove(0);
                        b.pop();
                    }
                    b
                }
                Some(first) if segs.len() > 1 => {
                    let child = if module.is_empty() {
                        first.to_string()
                    } else {
                        format!("{module}::{first}")
                    };
                    if !all.contains_key(&child) {
                        continue;
                    }
                    module
                        .split("::")
                        .filter(|s| !s.is_empty())
                        .map(String::from)
                        .collect()
                }
                _ => continue,
            };
            // The longest module prefix of the path.
            let mut target = None;
            let mut cur = base.clone();
            if all.contains_key(&cur.join("::")) {
                target = Some(cur.join("::"));
            }
            for s in segs {
                cur.push(s.to_string());
                let name = cur.join("::");
                if all.contains_key(&name) {
                    target = Some(name);
                } else {
                    break;
                }
            }
            if let Some(t) = target
                && t != module
                && !t.is_empty()
            {
                out.insert(t);
            }
        } else {
            i += 1;
        }
    }
    out
}

#[test]
fn proxy_wasm_only_under_wasm() {
    for (module, text) in modules() {
        if module == "wasm" || module.starts_with("wasm::") {
            continue;
        }
        assert!(
            !code(&text).contains("proxy_wasm"),
            "src module {module} uses proxy_wasm; only src/wasm/ may"
        );
    }
}

#[test]
fn core_uses_no_host() {
    let all = modules();
    let hosts = ["host", "wasm", "envoy_native"];
    let is_host = |m: &str| {
        hosts
            .iter()
            .any(|h| m == *h || m.starts_with(&format!("{h}::")))
    };
    for (module, text) in &all {
        if is_host(module) || module.is_empty() {
            continue;
        }
        for used in uses(module, &code(text), &all) {
            assert!(
                !is_host(&used),
                "core module {module} uses host module {used}"
            );
        }
    }
}

#[test]
fn no_import_cycles() {
    let all = modules();
    let graph: BTreeMap<String, BTreeSet<String>> = all
        .iter()
        .filter(|(m, _)| !m.is_empty())
        .map(|(m, t)| (m.clone(), uses(m, &code(t), &all)))
        .collect();
    // Modules that reach each other through `use` form a cycle.
    let reach = |from: &str| {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.to_string()];
        while let Some(m) = todo.pop() {
            for n in graph.get(&m).into_iter().flatten() {
                if seen.insert(n.clone()) {
                    todo.push(n.clone());
                }
            }
        }
        seen
    };
    let reaches: BTreeMap<&String, BTreeSet<String>> =
        graph.keys().map(|m| (m, reach(m))).collect();
    let mut cycles = BTreeSet::new();
    for (m, r) in &reaches {
        if r.contains(*m) {
            let group: Vec<&String> = r.iter().filter(|n| reaches[n].contains(*m)).collect();
            let direct: Vec<String> = group
                .iter()
                .flat_map(|n| {
                    graph[*n]
                        .iter()
                        .filter(|d| group.contains(d))
                        .map(move |d| format!("{n} -> {d}"))
                })
                .collect();
            cycles.insert(direct.join(", "));
        }
    }
    assert!(
        cycles.is_empty(),
        "import cycles:\n{}",
        cycles.into_iter().collect::<Vec<_>>().join("\n")
    );
}
