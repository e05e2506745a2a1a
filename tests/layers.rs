//! The module graph stays acyclic and layered: a module imports only from layers below its own.
//! Read from the sources (every `crate::<module>` path outside comments), so an upward import or
//! a cycle fails here, naming the file and the edge, before it sets in.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The library's top-level modules, lowest layer first. A module may import from any module of a
/// lower layer, never from its own layer or above.
const LAYERS: &[&[&str]] = &[
    &["model"],
    &["config"],
    &["planner"],
    &["machine"],
    &["run"],
    &["lock"],
    &["ports", "store_layout", "report", "events", "metrics", "journal", "sd_notify"],
    &["telemetry", "wire"],
    &["adapters"],
    &["coordinator", "agent"],
    &["cli"],
];

/// An import edge: the importing file, its top-level module, and the module it names.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Edge {
    file: String,
    from: String,
    to: String,
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// The modules a source text names through `crate::`, comments left out.
fn crate_paths(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines().map(str::trim_start).filter(|l| !l.starts_with("//")) {
        let mut rest = line;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                let inner = group.split('}').next().unwrap_or_default();
                out.extend(inner.split(',').filter_map(|p| first_ident(p.trim())));
            } else if let Some(id) = first_ident(rest) {
                out.insert(id);
            }
        }
    }
    out
}

fn first_ident(s: &str) -> Option<String> {
    let id: String = s.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
    (!id.is_empty() && id != "self").then_some(id)
}

/// Every cross-module edge of the crate rooted at `src`: a file's module is its first path
/// component below `src` (`src/adapters/docker/mod.rs` is `adapters`).
fn edges(src: &Path) -> Vec<Edge> {
    let mut out = Vec::new();
    for file in rust_files(src) {
        let rel = file.strip_prefix(src).unwrap();
        let from = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        if from == "lib" || from == "main" {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        for to in crate_paths(&text).into_iter().filter(|to| *to != from) {
            out.push(Edge { file: rel.display().to_string(), from: from.clone(), to });
        }
    }
    out
}

/// The edges that break the layering, each as a sentence.
fn upward(edges: &[Edge], layers: &[&[&str]]) -> Vec<String> {
    let rank: BTreeMap<&str, usize> =
        layers.iter().enumerate().flat_map(|(i, l)| l.iter().map(move |m| (*m, i))).collect();
    let mut bad = Vec::new();
    for e in edges {
        match (rank.get(e.from.as_str()), rank.get(e.to.as_str())) {
            (Some(f), Some(t)) if t < f => {}
            (Some(_), Some(_)) => bad.push(format!(
                "{}: `{}` imports `{}`, which is not in a lower layer",
                e.file, e.from, e.to
            )),
            (None, _) => bad.push(format!(
                "{}: module `{}` has no layer: add it to LAYERS in tests/layers.rs",
                e.file, e.from
            )),
            (_, None) => bad.push(format!(
                "{}: imports `{}`, which has no layer: add it to LAYERS in tests/layers.rs",
                e.file, e.to
            )),
        }
    }
    bad
}

/// One cycle among the modules, if there is any (as `a -> b -> a`).
fn cycle(edges: &[Edge]) -> Option<String> {
    let mut graph: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for e in edges {
        graph.entry(&e.from).or_default().insert(&e.to);
    }
    fn visit<'a>(
        n: &'a str,
        g: &BTreeMap<&'a str, BTreeSet<&'a str>>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> Option<String> {
        if let Some(at) = path.iter().position(|p| *p == n) {
            let mut c = path[at..].to_vec();
            c.push(n);
            return Some(c.join(" -> "));
        }
        if !done.insert(n) {
            return None;
        }
        path.push(n);
        let found = g.get(n).into_iter().flatten().find_map(|m| visit(m, g, path, done));
        path.pop();
        found
    }
    let mut done = BTreeSet::new();
    graph.keys().find_map(|n| visit(n, &graph, &mut Vec::new(), &mut done))
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn the_library_imports_only_from_lower_layers() {
    let e = edges(&root().join("src"));
    assert!(e.len() > 50, "the sources were read ({} edges)", e.len());
    let bad = upward(&e, LAYERS);
    assert!(bad.is_empty(), "the module graph is not layered:\n{}", bad.join("\n"));
    assert_eq!(cycle(&e), None);
}

#[test]
fn the_lab_has_no_module_cycle() {
    let e = edges(&root().join("xtask/src"));
    assert!(!e.is_empty(), "the lab's sources were read");
    assert_eq!(cycle(&e), None, "xtask's modules import each other in a cycle");
}

#[test]
fn an_upward_import_and_a_cycle_are_caught() {
    let text = "//! see crate::cli\nuse crate::model::X;\nuse crate::{planner::Y, run};\nfn f() { crate::ports::g() }\n";
    assert_eq!(crate_paths(text), ["model", "planner", "ports", "run"].map(String::from).into());
    let edge = |from: &str, to: &str| Edge {
        file: format!("{from}.rs"),
        from: from.into(),
        to: to.into(),
    };
    let e = [edge("machine", "model"), edge("machine", "planner"), edge("planner", "machine")];
    let bad = upward(&e, LAYERS);
    assert_eq!(bad, ["planner.rs: `planner` imports `machine`, which is not in a lower layer"]);
    assert_eq!(cycle(&e).as_deref(), Some("machine -> planner -> machine"));
    assert_eq!(
        upward(&[edge("newmod", "model")], LAYERS).len(),
        1,
        "a module without a layer is named"
    );
}
