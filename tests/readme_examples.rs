//! Every ```json block in README.md is a plugin configuration the filter accepts, so the
//! documentation cannot drift from the validator.

use kiali_header_auth::config::FilterConfig;

fn json_blocks(markdown: &str) -> Vec<String> {
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
    assert!(current.is_none(), "unterminated ```json block in README.md");
    blocks
}

#[test]
fn every_json_example_in_the_readme_is_a_valid_configuration() {
    let readme = std::fs::read_to_string(harness::paths::repo_root().join("README.md")).unwrap();
    let blocks = json_blocks(&readme);
    assert!(blocks.len() >= 6, "expected the configuration examples, found {}", blocks.len());
    for block in &blocks {
        if let Err(error) = FilterConfig::from_json(block.as_bytes()) {
            panic!("README example does not validate: {error}\n{block}");
        }
    }
}

#[test]
fn every_refusal_reason_and_metric_is_documented() {
    let readme = std::fs::read_to_string(harness::paths::repo_root().join("README.md")).unwrap();
    for reason in kiali_header_auth::refusal::Reason::ALL {
        assert!(readme.contains(&format!("`{}`", reason.as_str())), "{} undocumented", reason.as_str());
    }
    for failure in kiali_header_auth::token::response::FetchFailure::ALL {
        assert!(readme.contains(&format!("`{}`", failure.as_str())), "{} undocumented", failure.as_str());
    }
    for preset in kiali_header_auth::config::PRESET_NAMES {
        assert!(readme.contains(&format!("`{preset}`")), "preset {preset} undocumented");
    }
}
