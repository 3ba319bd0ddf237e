//! Every relative link of the repository's Markdown (README.md, docs/*.md, deploy/README.md and
//! the others) names a file or directory that exists, and every `#anchor`, in the same page or
//! in `file.md#anchor`, names a heading of the target page, by GitHub's rules for heading ids:
//! the heading's text lowercased, every character that is not a letter, a digit, `-`, `_` or a
//! space dropped, spaces turned into `-`; a repeated id gets `-1`, `-2`, ... in page order.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

/// `text` with the lines of fenced code blocks (```` ``` ```` or `~~~`) emptied, so that line
/// numbers stay and nothing inside a code block is read as a heading or a link.
fn without_fences(text: &str) -> Vec<&str> {
    let mut fence: Option<&str> = None;
    text.lines()
        .map(|line| {
            let trimmed = line.trim_start();
            match fence {
                Some(marker) => {
                    if trimmed.starts_with(marker) {
                        fence = None;
                    }
                    ""
                }
                None if trimmed.starts_with("```") || trimmed.starts_with("~~~") => {
                    fence = Some(&trimmed[..3]);
                    ""
                }
                None => line,
            }
        })
        .collect()
}

/// `text` with the content of every code span removed (the backticks too); newlines are kept.
/// A code span may cross a line break, as in Markdown; an unmatched backtick run is literal.
fn without_code_spans(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '`' {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        let run = chars[i..].iter().take_while(|&&c| c == '`').count();
        // The closing run: exactly `run` backticks.
        let mut j = i + run;
        let mut close = None;
        while j < chars.len() {
            // A code span ends with its paragraph.
            if chars[j] == '\n' && chars.get(j + 1) == Some(&'\n') {
                break;
            }
            if chars[j] == '`' {
                let other = chars[j..].iter().take_while(|&&c| c == '`').count();
                if other == run {
                    close = Some(j);
                    break;
                }
                j += other;
            } else {
                j += 1;
            }
        }
        match close {
            Some(end) => {
                out.extend(chars[i..end + run].iter().filter(|&&c| c == '\n'));
                i = end + run;
            }
            None => {
                out.extend(std::iter::repeat_n('`', run));
                i += run;
            }
        }
    }
    out
}

/// The rendered text of a heading's source: code spans keep their content without the backticks,
/// links keep their text.
fn heading_text(source: &str) -> String {
    let mut text = source.replace('`', "");
    while let Some(open) = text.find("](") {
        let Some(close) = text[open..].find(')') else { break };
        text.replace_range(open + 1..open + close + 1, "");
    }
    text.replace(['[', ']'], "")
}

/// GitHub's id for a heading text (github-slugger, without its duplicate numbering).
pub fn slug(heading: &str) -> String {
    heading
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | ' '))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The ids of every heading of a Markdown text (ATX headings outside code blocks), duplicates
/// numbered `-1`, `-2`, ... as GitHub numbers them.
pub fn anchors(markdown: &str) -> BTreeSet<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut ids = BTreeSet::new();
    for line in without_fences(markdown) {
        let hashes = line.chars().take_while(|&c| c == '#').count();
        if !(1..=6).contains(&hashes) || !line[hashes..].starts_with(' ') {
            continue;
        }
        let source = line[hashes..].trim().trim_end_matches('#').trim_end();
        let base = slug(&heading_text(source));
        let mut id = base.clone();
        while ids.contains(&id) {
            let n = seen.entry(base.clone()).or_insert(0);
            *n += 1;
            id = format!("{base}-{n}");
        }
        ids.insert(id);
    }
    ids
}

/// The inline link targets of a Markdown text, `[text](target)` (images too), outside code
/// blocks and code spans: (line number, target without its optional title).
pub fn links(markdown: &str) -> Vec<(usize, String)> {
    let text = without_code_spans(&without_fences(markdown).join("\n"));
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(at) = text[from..].find("](") {
        let start = from + at + 2;
        let Some(length) = text[start..].find([')', '\n']) else { break };
        let target = text[start..start + length].trim();
        let target = target.split_once(" \"").map_or(target, |(t, _)| t).trim_matches(['<', '>']);
        let line = text[..start].matches('\n').count() + 1;
        found.push((line, target.to_string()));
        from = start + length;
    }
    found
}

/// `path` with `.` and `..` resolved lexically.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// What is wrong with the relative links of `text`, the content of `file`: a target that does
/// not exist, or an anchor that no heading of the target Markdown file (or of `text` itself, for
/// `#anchor`) has. Links with a scheme (`https:`, `mailto:`) are not checked.
pub fn broken_links(file: &Path, text: &str) -> Vec<String> {
    let dir = file.parent().unwrap_or(Path::new("."));
    let mut broken = Vec::new();
    for (line, target) in links(text) {
        if target.contains("://") || target.starts_with("mailto:") || target.is_empty() {
            continue;
        }
        let (path, anchor) = target.split_once('#').map_or((target.as_str(), None), |(p, a)| (p, Some(a)));
        let where_ = format!("{}:{line}: ({target})", file.display());
        let (resolved, headings) = if path.is_empty() {
            (file.to_path_buf(), Some(anchors(text)))
        } else {
            let resolved = normalize(&dir.join(path));
            if !resolved.exists() {
                broken.push(format!("{where_}: {} does not exist", resolved.display()));
                continue;
            }
            let markdown = resolved.extension().is_some_and(|e| e == "md");
            (resolved.clone(), markdown.then(|| anchors(&std::fs::read_to_string(&resolved).unwrap_or_default())))
        };
        // Anchors into other kinds of files (`#L10` of a source file) are GitHub's, not headings.
        if let (Some(anchor), Some(headings)) = (anchor, headings) {
            if !headings.contains(anchor) {
                broken.push(format!("{where_}: {} has no heading with the id `{anchor}`", resolved.display()));
            }
        }
    }
    broken
}

/// Every Markdown file of the repository (README.md, docs/*.md, deploy/README.md, ...).
fn markdown_files() -> Vec<PathBuf> {
    harness::paths::repository_files()
        .into_iter()
        .filter(|path| path.extension().is_some_and(|e| e == "md"))
        .collect()
}

#[test]
fn every_relative_link_and_anchor_of_the_markdown_resolves() {
    let root = harness::paths::repo_root();
    let files = markdown_files();
    for required in ["README.md", "docs/configuration.md", "deploy/README.md"] {
        assert!(files.contains(&root.join(required)), "{required} is checked: {files:?}");
    }
    let mut broken = Vec::new();
    let mut checked = 0;
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        checked += links(&text).len();
        broken.extend(broken_links(file, &text));
    }
    assert!(broken.is_empty(), "broken links: {broken:#?}");
    assert!(checked > 30, "only {checked} links found");
}

/// README links to every page of docs/, so none is an orphan.
#[test]
fn readme_links_to_every_page_of_docs() {
    let root = harness::paths::repo_root();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let targets: BTreeSet<String> = links(&readme).into_iter().map(|(_, t)| t.split('#').next().unwrap_or("").to_string()).collect();
    for file in markdown_files() {
        if file.parent() == Some(root.join("docs").as_path()) {
            let relative = file.strip_prefix(&root).unwrap().display().to_string();
            assert!(targets.contains(&relative), "README.md does not link to {relative}: {targets:?}");
        }
    }
}

#[test]
fn github_heading_ids() {
    assert_eq!(slug(&heading_text("`token_source`: `kubernetes_token_request`")), "token_source-kubernetes_token_request");
    assert_eq!(slug(&heading_text("RBAC self-check (`rbac_check`)")), "rbac-self-check-rbac_check");
    assert_eq!(slug(&heading_text("From `make image` to a pinned digest")), "from-make-image-to-a-pinned-digest");
    assert_eq!(
        slug(&heading_text("`check FILE...`: will the plugin start, and what is risky?")),
        "check-file-will-the-plugin-start-and-what-is-risky"
    );
    assert_eq!(slug(&heading_text("Where the cost is (cost model)")), "where-the-cost-is-cost-model");
    assert_eq!(slug(&heading_text("See [the guide](docs/a.md) now")), "see-the-guide-now");
    let ids = anchors("# Usage\n\n```sh\n# Usage\n```\n\n## Usage\n### Usage ##\n## Usage-1\n");
    let expected: BTreeSet<String> = ["usage", "usage-1", "usage-2", "usage-1-1"].map(String::from).into();
    assert_eq!(ids, expected);
}

/// The check fails on what it is there to catch: a missing file, a missing heading in another
/// page, a missing heading in the same page; and it passes good links, and ignores links in code.
#[test]
fn the_link_check_catches_broken_links_and_anchors() {
    let file = harness::paths::repo_root().join("docs/example.md");
    let text = "# Example\n\n\
        Good: [refusals](configuration.md#refusals), [deploy](../deploy/README.md), [up](#example),\n\
        [README](../README.md#two-commands), [a site](https://example.com/#x), [code](../src/lib.rs#L1).\n\
        Broken: [gone](missing.md), [no heading](configuration.md#no-such-heading),\n\
        [no heading here](#nowhere), [old README anchor](../README.md#configuration-reference).\n\
        Not links: `[x](missing-in-code.md)`, and\n\n```text\n[y](missing-in-a-block.md)\n```\n";
    let broken = broken_links(&file, text);
    assert_eq!(broken.len(), 4, "{broken:#?}");
    for needle in ["missing.md does not exist", "`no-such-heading`", "`nowhere`", "`configuration-reference`"] {
        assert!(broken.iter().any(|b| b.contains(needle)), "{needle} not reported: {broken:#?}");
    }
    assert!(broken[0].contains("docs/example.md:5:"), "line numbers: {broken:#?}");
}
