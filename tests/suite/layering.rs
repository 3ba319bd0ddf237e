//! `src/` has no import cycle between its top-level modules (issue 22): the shared predicates
//! live in the leaf `names`, the pure layers (config, identity, rbac, token) import only
//! downward, and the adapters form one line (`abi` -> `http`/`root` -> `vm_state` -> ...).
//! Read from the source the way a reviewer would: every `crate::<module>` path outside tests
//! and comments is an edge.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

type Graph = BTreeMap<String, BTreeSet<String>>;

fn top_module(relative: &Path) -> Option<String> {
    let first = relative.components().next()?.as_os_str().to_str()?.to_string();
    let name = first.strip_suffix(".rs").unwrap_or(&first).to_string();
    let is_test = relative.file_stem().is_some_and(|stem| stem == "tests");
    (name != "lib" && !is_test).then_some(name)
}

/// The code of a file without its `#[cfg(test)]` tail and without comment lines.
fn code_of(text: &str) -> String {
    let code = text.split("#[cfg(test)]").next().unwrap_or_default();
    code.lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn edges_in(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        let name: String = rest.chars().take_while(|c| c.is_ascii_lowercase() || *c == '_' || c.is_ascii_digit()).collect();
        if !name.is_empty() {
            out.insert(name);
        }
    }
    out
}

fn source_graph(src: &Path) -> Graph {
    let mut graph = Graph::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|ext| ext != "rs") {
                continue;
            }
            let Some(module) = top_module(path.strip_prefix(src).unwrap()) else {
                continue;
            };
            let code = code_of(&std::fs::read_to_string(&path).unwrap());
            let targets = graph.entry(module.clone()).or_default();
            targets.extend(edges_in(&code).into_iter().filter(|target| *target != module));
        }
    }
    graph
}

/// A cycle through `start`, as the path of modules, if any.
fn cycle_through(graph: &Graph, start: &str) -> Option<Vec<String>> {
    let mut stack = vec![(start.to_string(), vec![start.to_string()])];
    let mut seen = BTreeSet::new();
    while let Some((node, path)) = stack.pop() {
        for next in graph.get(&node).into_iter().flatten() {
            if next == start {
                let mut cycle = path.clone();
                cycle.push(start.to_string());
                return Some(cycle);
            }
            if seen.insert(next.clone()) {
                let mut longer = path.clone();
                longer.push(next.clone());
                stack.push((next.clone(), longer));
            }
        }
    }
    None
}

fn cycles(graph: &Graph) -> Vec<Vec<String>> {
    graph.keys().filter_map(|module| cycle_through(graph, module)).collect()
}

#[test]
fn src_has_no_import_cycle() {
    let src = harness::paths::repo_root().join("src");
    let graph = source_graph(&src);
    assert!(graph.len() > 10, "read the modules of src/: {graph:?}");
    assert!(graph["http"].contains("identity"), "edges are read: {graph:?}");
    let found = cycles(&graph);
    assert!(found.is_empty(), "import cycles in src/: {found:?}\n{graph:#?}");
}

#[test]
fn the_leaf_imports_nothing_from_the_crate() {
    let graph = source_graph(&harness::paths::repo_root().join("src"));
    assert_eq!(graph.get("names"), Some(&BTreeSet::new()));
}

#[test]
fn a_cycle_is_found() {
    let code = "use crate::b::X;\n// use crate::c::Y;\n#[cfg(test)]\nuse crate::d::Z;";
    assert_eq!(edges_in(&code_of(code)), BTreeSet::from(["b".to_string()]));
    let mut graph = Graph::new();
    graph.insert("a".into(), BTreeSet::from(["b".into()]));
    graph.insert("b".into(), BTreeSet::from(["c".into()]));
    graph.insert("c".into(), BTreeSet::from(["a".into()]));
    assert_eq!(cycle_through(&graph, "a"), Some(vec!["a".into(), "b".into(), "c".into(), "a".into()]));
    graph.get_mut("c").unwrap().clear();
    assert!(cycles(&graph).is_empty());
}
