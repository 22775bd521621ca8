//! The repository's documents hold together: the README stays short, every
//! relative link and `#anchor` in the README, `docs/` and the crates'
//! READMEs resolves, every page in `docs/` is linked from the README, and
//! every `docs/*.md` the code cites exists.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The README is read in five minutes; the rest lives in `docs/`.
const README_MAX_LINES: usize = 200;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the kafkit crate sits in the workspace")
        .to_path_buf()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Markdown files whose links are checked.
fn documents() -> Vec<PathBuf> {
    let root = root();
    let mut files = vec![root.join("README.md")];
    for dir in [
        root.join("docs"),
        root.join("docs/contracts"),
        root.clone(),
        root.join("examples"),
    ] {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if dir.starts_with(root.join("docs")) {
                if path.extension().is_some_and(|e| e == "md") {
                    files.push(path);
                }
            } else if path.join("README.md").is_file() && path.join("Cargo.toml").is_file() {
                files.push(path.join("README.md"));
            }
        }
    }
    files.sort();
    files.dedup();
    files
}

/// Lines outside fenced code blocks.
fn prose(text: &str) -> impl Iterator<Item = &str> {
    let mut fenced = false;
    text.lines().filter(move |line| {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            return false;
        }
        !fenced
    })
}

/// The targets of `[text](target)` links in the prose.
fn links(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for line in prose(text) {
        let mut rest = line;
        while let Some(at) = rest.find("](") {
            rest = &rest[at + 2..];
            if let Some(end) = rest.find(')') {
                found.push(rest[..end].to_owned());
                rest = &rest[end..];
            }
        }
    }
    found
}

/// GitHub's anchor for a heading: lower case, punctuation dropped, spaces
/// turned into hyphens.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

fn anchors(text: &str) -> BTreeSet<String> {
    prose(text)
        .filter(|line| line.starts_with('#'))
        .map(|line| slug(line.trim_start_matches('#')))
        .collect()
}

#[test]
fn the_readme_is_short() {
    let lines = read(&root().join("README.md")).lines().count();
    assert!(
        lines <= README_MAX_LINES,
        "README.md has {lines} lines; at most {README_MAX_LINES}: move the detail to docs/"
    );
}

#[test]
fn every_relative_link_and_anchor_resolves() {
    let mut broken = Vec::new();
    let mut checked = 0;
    for document in documents() {
        let text = read(&document);
        for link in links(&text) {
            if link.contains("://") || link.starts_with("mailto:") {
                continue;
            }
            checked += 1;
            let (path, anchor) = link.split_once('#').unwrap_or((link.as_str(), ""));
            let target = if path.is_empty() {
                document.clone()
            } else {
                document.parent().expect("a file has a folder").join(path)
            };
            if !target.exists() {
                broken.push(format!("{}: {link}: no such file", document.display()));
                continue;
            }
            if !anchor.is_empty() && !anchors(&read(&target)).contains(anchor) {
                broken.push(format!("{}: {link}: no such heading", document.display()));
            }
        }
    }
    assert!(
        checked > 20,
        "only {checked} links found: the scan is broken"
    );
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn every_page_in_docs_is_linked_from_the_readme() {
    let root = root();
    let linked: BTreeSet<String> = links(&read(&root.join("README.md")))
        .into_iter()
        .filter_map(|l| {
            l.strip_prefix("docs/")
                .map(|p| p.split('#').next().unwrap_or(p).to_owned())
        })
        .collect();
    let pages: BTreeSet<String> = std::fs::read_dir(root.join("docs"))
        .expect("docs/ exists")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".md"))
        .collect();
    let orphans: Vec<_> = pages.difference(&linked).collect();
    assert!(
        orphans.is_empty(),
        "pages the README does not link: {orphans:?}"
    );
}

#[test]
fn every_document_the_code_cites_exists() {
    let root = root();
    let mut cited = BTreeSet::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("readable").flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if path.is_dir() {
                if !name.starts_with('.') && name != "target" {
                    stack.push(path);
                }
            } else if [".rs", ".sh", ".toml", ".yml", ".yaml"]
                .iter()
                .any(|ext| name.ends_with(ext))
            {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                let mut rest = text.as_str();
                while let Some(at) = rest.find("docs/") {
                    rest = &rest[at + 5..];
                    let page: String = rest
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                        .collect();
                    if let Some(page) = page
                        .strip_suffix('.')
                        .or(Some(&page))
                        .filter(|p| p.ends_with(".md"))
                    {
                        cited.insert((page.to_owned(), path.clone()));
                    }
                }
            }
        }
    }
    assert!(
        !cited.is_empty(),
        "the code cites no docs/ page: the scan is broken"
    );
    let missing: Vec<_> = cited
        .iter()
        .filter(|(page, _)| !root.join("docs").join(page).is_file())
        .map(|(page, file)| format!("{}: docs/{page}", file.display()))
        .collect();
    assert!(
        missing.is_empty(),
        "cited pages missing:\n{}",
        missing.join("\n")
    );
}

#[test]
fn slugs_follow_github() {
    assert_eq!(slug(" Settings and operations"), "settings-and-operations");
    assert_eq!(
        slug("Dead letters: `kafkit dlq`"),
        "dead-letters-kafkit-dlq"
    );
    assert_eq!(
        slug("Pipelined, in order, and never past an unsettled record"),
        "pipelined-in-order-and-never-past-an-unsettled-record"
    );
}
