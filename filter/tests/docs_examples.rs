//! The documentation's examples are part of the product: every ```json block in the README and in `docs/`
//! must be valid JSON, and every block fenced as ```json config must be accepted by the plugin's
//! configuration parser exactly as a user would paste it.

use std::path::{Path, PathBuf};
use tollgate::config::Config;

/// README.md and every `docs/*.md`, as (path relative to the repository, text).
fn documents() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut paths = vec![PathBuf::from("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("docs/ exists")
        .map(|e| e.expect("a docs/ entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .map(|p| Path::new("docs").join(p.file_name().expect("a file name")))
        .collect();
    docs.sort();
    paths.extend(docs);
    paths
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(root.join(&p))
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p.display().to_string(), text)
        })
        .collect()
}

/// (info string, body, line number) of each fenced block.
fn fenced_blocks(name: &str, doc: &str) -> Vec<(String, String, usize)> {
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
    assert!(open.is_none(), "unterminated code fence in {name}");
    out
}

#[test]
fn every_json_block_is_valid_json() {
    for (name, doc) in documents() {
        for (info, body, line) in fenced_blocks(&name, &doc) {
            if info.split_whitespace().next() == Some("json") {
                if let Err(e) = serde_json::from_str::<serde_json::Value>(&body) {
                    panic!("{name} line {line}: invalid JSON: {e}\n{body}");
                }
            }
        }
    }
}

#[test]
fn every_config_example_is_accepted() {
    let mut in_readme = 0;
    for (name, doc) in documents() {
        for (info, body, line) in fenced_blocks(&name, &doc) {
            if info != "json config" {
                continue;
            }
            if name == "README.md" {
                in_readme += 1;
            }
            if let Err(e) = Config::parse(body.as_bytes()) {
                panic!("{name} line {line}: configuration example rejected: {e:?}\n{body}");
            }
        }
    }
    assert!(in_readme > 0, "the README shows at least one configuration");
}
