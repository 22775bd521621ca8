//! `kafkit new` writes a service crate into another team's workspace, and
//! that crate builds and passes its own test against Tansu and the registry.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn kafkit(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_kafkit"))
        .args(args)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn a_new_service_builds_and_passes_its_own_test() {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let workspace = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("new-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&workspace).unwrap();
    // Another team's workspace, with kafkit's dev profile and lock file so
    // the build reuses what the suite compiled.
    std::fs::write(
        workspace.join("Cargo.toml"),
        "[workspace]\nresolver = \"3\"\nmembers = [\"billing\"]\n\n[profile.dev]\ndebug = \"line-tables-only\"\n\n[profile.dev.package.\"*\"]\ndebug = false\n",
    )
    .unwrap();
    std::fs::create_dir_all(workspace.join("billing/src")).unwrap();
    std::fs::write(
        workspace.join("billing/Cargo.toml"),
        "[package]\nname = \"billing\"\nversion = \"0.1.0\"\nedition = \"2024\"\n",
    )
    .unwrap();
    std::fs::write(workspace.join("billing/src/lib.rs"), "").unwrap();
    std::fs::copy(source.join("Cargo.lock"), workspace.join("Cargo.lock")).unwrap();

    let dir = workspace.to_string_lossy().into_owned();
    let out = kafkit(&[
        "new",
        "shipping-notes",
        "--dir",
        &dir,
        "--kafkit-path",
        &source.to_string_lossy(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("added to the members"),
        "{}",
        text(&out.stdout)
    );
    let manifest = std::fs::read_to_string(workspace.join("Cargo.toml")).unwrap();
    assert!(
        manifest.contains("members = [\"billing\", \"shipping-notes\"]"),
        "{manifest}"
    );
    let crate_dir = workspace.join("shipping-notes");
    for file in [
        "schemas/shipping_notes_requested.avsc",
        "schemas/shipping_notes_completed.avsc",
        "src/events.rs",
        "src/handler.rs",
        "src/lib.rs",
        "src/main.rs",
        "tests/service.rs",
    ] {
        assert!(crate_dir.join(file).is_file(), "{file}");
    }
    let main = std::fs::read_to_string(crate_dir.join("src/main.rs")).unwrap();
    assert!(main.lines().count() <= 10, "{main}");

    // A second time, or a name that is not a crate name, is refused with why.
    let again = kafkit(&["new", "shipping-notes", "--dir", &dir]);
    assert!(!again.status.success());
    assert!(
        text(&again.stderr).contains("exists already"),
        "{}",
        text(&again.stderr)
    );
    let bad = kafkit(&["new", "Shipping_Notes", "--dir", &dir]);
    assert!(!bad.status.success());
    assert!(
        text(&bad.stderr).contains("is not a service name"),
        "{}",
        text(&bad.stderr)
    );

    // The generated crate builds and its test passes against Tansu.
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| source.join("target"));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let test = Command::new(cargo)
        .args(["test", "--offline", "-p", "shipping-notes"])
        .current_dir(&workspace)
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .unwrap();
    let (stdout, stderr) = (text(&test.stdout), text(&test.stderr));
    assert!(test.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("test requests_are_completed_or_dead_lettered ... ok"),
        "{stdout}"
    );
    std::fs::remove_dir_all(&workspace).unwrap();
}
