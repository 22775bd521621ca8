//! Every crate's dependencies are used where they are declared: a
//! `[dependencies]` entry is named in the crate's `src/` (one named only by
//! its tests belongs in `[dev-dependencies]`), and a `[dev-dependencies]`
//! entry in its tests, benches, examples or test modules. A text check, in
//! the spirit of `cargo machete`, with no tool to install; the few entries
//! needed without being named say why below.

use std::path::{Path, PathBuf};

/// (crate, dependency, why it is there although no code names it).
const NEEDED_UNNAMED: &[(&str, &str, &str)] = &[];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the kafkit crate sits in the workspace")
        .to_path_buf()
}

/// The workspace's member folders, from the root manifest.
fn members(root: &Path) -> Vec<String> {
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).expect("root manifest");
    let line = manifest
        .lines()
        .find(|l| l.trim_start().starts_with("members"))
        .expect("a members line");
    line.split('"')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// Dependency names by table (`dependencies`, `dev-dependencies`, ...).
fn declared(manifest: &str) -> Vec<(String, String)> {
    let mut table = String::new();
    let mut found = Vec::new();
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            table = line.trim_matches(['[', ']']).to_owned();
            continue;
        }
        if !table.ends_with("dependencies") || line.is_empty() || line.starts_with('#') {
            continue;
        }
        let name = line.split(['=', '.']).next().unwrap_or_default().trim();
        if !name.is_empty() {
            found.push((table.clone(), name.to_owned()));
        }
    }
    found
}

/// Whether `ident` appears as a whole identifier in any `.rs` file under `paths`.
fn named_in(paths: &[PathBuf], ident: &str) -> bool {
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    let mut stack: Vec<PathBuf> = paths.iter().filter(|p| p.exists()).cloned().collect();
    while let Some(path) = stack.pop() {
        if path.is_dir() {
            for entry in std::fs::read_dir(&path).expect("readable").flatten() {
                stack.push(entry.path());
            }
            continue;
        }
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let mut from = 0;
        while let Some(at) = text[from..].find(ident) {
            let start = from + at;
            let end = start + ident.len();
            let before = text[..start].chars().next_back();
            let after = text[end..].chars().next();
            if !before.is_some_and(is_ident) && !after.is_some_and(is_ident) {
                return true;
            }
            from = end;
        }
    }
    false
}

#[test]
fn every_dependency_is_used_where_it_is_declared() {
    let root = root();
    let mut wrong = Vec::new();
    let mut checked = 0;
    for member in members(&root) {
        let dir = root.join(&member);
        let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).expect("member manifest");
        let src = vec![dir.join("src"), dir.join("build.rs")];
        let tests = vec![dir.join("tests"), dir.join("benches"), dir.join("examples")];
        for (table, name) in declared(&manifest) {
            checked += 1;
            if NEEDED_UNNAMED
                .iter()
                .any(|(c, d, _)| *c == member && *d == name)
            {
                continue;
            }
            let ident = name.replace('-', "_");
            let in_src = named_in(&src, &ident);
            let in_tests = named_in(&tests, &ident);
            match table.as_str() {
                "dependencies" if !in_src && in_tests => wrong.push(format!(
                    "{member}: {name} is used by tests only: move it to [dev-dependencies]"
                )),
                "dependencies" | "build-dependencies" if !in_src => {
                    wrong.push(format!("{member}: {name} is not used: remove it"));
                }
                "dev-dependencies" if !in_src && !in_tests => {
                    wrong.push(format!(
                        "{member}: dev-dependency {name} is not used: remove it"
                    ));
                }
                _ => {}
            }
        }
    }
    assert!(
        checked > 50,
        "only {checked} dependencies read: the scan is broken"
    );
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn the_scan_reads_every_form_of_entry() {
    let manifest = "[package]\nname = \"x\"\n\n[dependencies]\nanyhow.workspace = true\nhttp-body-util = \"0.1\"\ntokio = { version = \"1\" }\n# a comment\n\n[dev-dependencies]\nproptest = \"1\"\n\n[lints]\nworkspace = true\n";
    let found = declared(manifest);
    let names: Vec<_> = found.iter().map(|(t, n)| format!("{t}:{n}")).collect();
    assert_eq!(
        names,
        [
            "dependencies:anyhow",
            "dependencies:http-body-util",
            "dependencies:tokio",
            "dev-dependencies:proptest"
        ]
    );
}
