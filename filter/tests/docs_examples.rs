//! The documentation's examples are part of the product: every ```json block in the README must be valid
//! JSON, and every block fenced as ```json config must be accepted by the plugin's configuration parser
//! exactly as a user would paste it.

use tollgate::config::Config;

const README: &str = include_str!("../../README.md");

/// (info string, body, line number) of each fenced block.
fn fenced_blocks(doc: &str) -> Vec<(String, String, usize)> {
    let mut out = Vec::new();
    let mut open: Option<(String, String, usize)> = None;
    for (n, line) in doc.lines().enumerate() {
        let trimmed = line.trim_start();
        if let Some(info) = trimmed.strip_prefix("```") {
            match open.take() {
                Some(block) => out.push(block),
                None => open = Some((info.trim().to_string(), String::new(), n + 1)),
            }
        } else if let Some((_, body, _)) = open.as_mut() {
            body.push_str(line);
            body.push('\n');
        }
    }
    assert!(open.is_none(), "unterminated code fence in README");
    out
}

#[test]
fn every_json_block_is_valid_json() {
    for (info, body, line) in fenced_blocks(README) {
        if info.split_whitespace().next() == Some("json") {
            if let Err(e) = serde_json::from_str::<serde_json::Value>(&body) {
                panic!("README line {line}: invalid JSON: {e}\n{body}");
            }
        }
    }
}

#[test]
fn every_config_example_is_accepted() {
    let configs: Vec<_> = fenced_blocks(README)
        .into_iter()
        .filter(|(info, _, _)| info == "json config")
        .collect();
    assert!(
        !configs.is_empty(),
        "the README shows at least one configuration"
    );
    for (_, body, line) in configs {
        if let Err(e) = Config::parse(body.as_bytes()) {
            panic!("README line {line}: configuration example rejected: {e:?}\n{body}");
        }
    }
}
