//! Every ```json block in README.md and docs/*.md is a plugin configuration the filter accepts,
//! so the documentation cannot drift from the validator; every refusal reason, fetch failure and
//! preset is documented; and every relative link and `#anchor` of the repository's Markdown
//! resolves (`links`).

use std::path::PathBuf;

use kiali_header_auth::config::FilterConfig;

#[path = "readme_examples/links.rs"]
mod links;

/// README.md and every docs/*.md, in that order: the documentation the examples live in.
fn documentation() -> Vec<(PathBuf, String)> {
    let root = harness::paths::repo_root();
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("docs/")
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    std::iter::once(root.join("README.md"))
        .chain(docs)
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            (path, text)
        })
        .collect()
}

fn json_blocks(markdown: &str, file: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        let trimmed = line.trim();
        match &mut current {
            None if trimmed == "```json" => current = Some(String::new()),
            Some(block) if trimmed == "```" => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
            None => {}
        }
    }
    assert!(current.is_none(), "unterminated ```json block in {file}");
    blocks
}

#[test]
fn every_json_example_in_the_documentation_is_a_valid_configuration() {
    let mut count = 0;
    for (path, text) in documentation() {
        let file = path.display().to_string();
        for block in json_blocks(&text, &file) {
            count += 1;
            if let Err(error) = FilterConfig::from_json(block.as_bytes()) {
                panic!("{file}: example does not validate: {error}\n{block}");
            }
        }
    }
    assert!(count >= 6, "expected the configuration examples, found {count}");
}

#[test]
fn every_refusal_reason_and_metric_is_documented() {
    let docs: String = documentation().into_iter().map(|(_, text)| text).collect();
    for reason in kiali_header_auth::refusal::Reason::ALL {
        assert!(docs.contains(&format!("`{}`", reason.as_str())), "{} undocumented", reason.as_str());
    }
    for failure in kiali_header_auth::token::response::FetchFailure::ALL {
        assert!(docs.contains(&format!("`{}`", failure.as_str())), "{} undocumented", failure.as_str());
    }
    for preset in kiali_header_auth::config::PRESET_NAMES {
        assert!(docs.contains(&format!("`{preset}`")), "preset {preset} undocumented");
    }
}
